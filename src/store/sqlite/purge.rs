//! Retention on SQLite: the bounded `DELETE`s of [`crate::store::retention`], run by the
//! writer in one transaction. Deliveries, attempts and duplicates of a purged event go
//! with it (`ON DELETE CASCADE`).

use rusqlite::{Connection, params};

use crate::store::retention::{Kind, Purge, Purged, SOURCE_TABLES, distinct_sources_sql, id_bound};

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
            let tally = kind.tally(&mut purged);
            let room = purge.limit.saturating_sub(*tally) as i64;
            *tally += conn
                .prepare_cached(&kind.delete_sql('?'))?
                .execute(params![
                    source,
                    id_bound(kind.id_prefix(), cutoff),
                    cutoff,
                    room
                ])?;
        }
    }
    Ok(purged)
}
