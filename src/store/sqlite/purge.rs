//! Retention on SQLite: the bounded `DELETE`s of [`crate::store::retention`], run by the
//! writer in one transaction. Deliveries, attempts and duplicates of a purged event go
//! with it (`ON DELETE CASCADE`).

use rusqlite::{Connection, params};

use crate::store::retention::{Kind, Purge, Purged, Scope, id_bound};

/// One pass of `purge`: at most `purge.limit` rows of each kind.
pub(super) fn purge(conn: &Connection, purge: &Purge) -> rusqlite::Result<Purged> {
    let mut purged = Purged::default();
    for (scope, cutoffs) in purge.scopes() {
        // Parameter 1: the source's name, or the configured names (a JSON array) for the
        // sources no longer configured.
        let (clause, names) = match scope {
            Scope::Source(name) => ("e.source = {names}", name.to_owned()),
            Scope::Others(_) => (
                "e.source NOT IN (SELECT value FROM json_each({names}))",
                serde_json::Value::from(scope.names()).to_string(),
            ),
        };
        for kind in Kind::ALL {
            let Some(cutoff) = kind.cutoff(&cutoffs) else {
                continue;
            };
            let tally = kind.tally(&mut purged);
            let room = purge.limit.saturating_sub(*tally) as i64;
            *tally += conn.execute(
                &kind.delete_sql(clause, '?'),
                params![names, id_bound(kind.id_prefix(), cutoff), cutoff, room],
            )?;
        }
    }
    Ok(purged)
}
