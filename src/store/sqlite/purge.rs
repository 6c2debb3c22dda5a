//! Retention on SQLite: the bounded `DELETE`s of [`crate::store::retention`], run by the
//! writer in one transaction. Deliveries, attempts and duplicates of a purged event go
//! with it (`ON DELETE CASCADE`).

use rusqlite::{Connection, params};

use crate::store::retention::{
    Kind, Purge, Purged, SOURCE_TABLES, delete_replays_sql, distinct_sources_sql, id_bound,
};

/// One pass of `purge`: at most `purge.limit` rows of each kind.
pub(super) fn purge(conn: &Connection, purge: &Purge) -> rusqlite::Result<Purged> {
    let mut stored: Vec<String> = Vec::new();
    for table in SOURCE_TABLES {
        let mut stmt = conn.prepare_cached(&distinct_sources_sql(table))?;
        for source in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let source = source?;
            if !stored.contains(&source) {
                stored.push(source);
            }
        }
    }
    let mut purged = Purged::default();
    for (source, cutoffs) in purge.scopes(&stored) {
        for kind in Kind::ALL {
            let Some(cutoff) = kind.cutoff(&cutoffs) else {
                continue;
            };
            let room = purge.limit.saturating_sub(*kind.tally(&mut purged)) as i64;
            let bound = id_bound(kind.id_prefix(), cutoff);
            let mut stmt = conn.prepare_cached(&kind.delete_sql('?'))?;
            if kind == Kind::Attempts {
                let after = purge.attempts_after.get(source).map_or("", String::as_str);
                let ids = stmt
                    .query_map(params![source, bound, cutoff, room, after], |r| {
                        r.get::<_, String>(0)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                purged.attempts += ids.len();
                if let Some(last) = ids.into_iter().max() {
                    purged.attempts_upto.insert(source.to_owned(), last);
                }
            } else {
                *kind.tally(&mut purged) += stmt.execute(params![source, bound, cutoff, room])?;
            }
        }
    }
    if let Some(cutoff) = purge.others.events {
        purged.replays = conn
            .prepare_cached(&delete_replays_sql('?'))?
            .execute(params![cutoff, purge.limit as i64])?;
    }
    Ok(purged)
}
