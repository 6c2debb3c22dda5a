//! Retention on PostgreSQL: the bounded `DELETE`s of [`crate::store::retention`] in one
//! transaction, run by the process that leads maintenance (see [`super::presence`]).
//! Deliveries, attempts and duplicates of a purged event go with it (`ON DELETE
//! CASCADE`).

use deadpool_postgres::Transaction;

use crate::store::StoreError;
use crate::store::retention::{Kind, Purge, Purged, Scope, id_bound};

/// One pass of `purge`: at most `purge.limit` rows of each kind.
pub(super) async fn purge(tx: &Transaction<'_>, purge: &Purge) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    for (scope, cutoffs) in purge.scopes() {
        let clause = match scope {
            Scope::Source(_) => "e.source = ANY({names}::text[])",
            Scope::Others(_) => "e.source <> ALL({names}::text[])",
        };
        let names = scope.names();
        for kind in Kind::ALL {
            let Some(cutoff) = kind.cutoff(&cutoffs) else {
                continue;
            };
            let tally = kind.tally(&mut purged);
            let room = purge.limit.saturating_sub(*tally) as i64;
            let bound = id_bound(kind.id_prefix(), cutoff);
            *tally += tx
                .execute(
                    &kind.delete_sql(clause, '$'),
                    &[&names, &bound, &cutoff, &room],
                )
                .await? as usize;
        }
    }
    Ok(purged)
}
