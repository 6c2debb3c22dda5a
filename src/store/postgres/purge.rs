//! Retention on PostgreSQL: the bounded `DELETE`s of [`crate::store::retention`] in one
//! transaction, run by the process that leads maintenance (see [`super::presence`]).
//! Deliveries, attempts and duplicates of a purged event go with it (`ON DELETE
//! CASCADE`).

use deadpool_postgres::Transaction;

use crate::store::StoreError;
use crate::store::retention::{DISTINCT_SOURCES, Kind, Purge, Purged, id_bound};

/// One pass of `purge`: at most `purge.limit` rows of each kind.
pub(super) async fn purge(tx: &Transaction<'_>, purge: &Purge) -> Result<Purged, StoreError> {
    let mut stored: Vec<String> = Vec::new();
    for sql in DISTINCT_SOURCES {
        for row in tx.query(sql, &[]).await? {
            let source: String = row.get(0);
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
            let bound = id_bound(kind.id_prefix(), cutoff);
            let stmt = tx.prepare_cached(&kind.delete_sql('$')).await?;
            *tally += tx
                .execute(&stmt, &[&source, &bound, &cutoff, &room])
                .await? as usize;
        }
    }
    Ok(purged)
}
