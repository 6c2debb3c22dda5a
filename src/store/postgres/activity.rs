//! The activity counters on PostgreSQL (see `store::activity`): each process adds its
//! tally in one statement, read a window at a time.

use deadpool_postgres::Client;

use crate::store::StoreError;
use crate::store::activity::{ActivityCount, Counted};

/// Adds `counts` (sorted, as the tally hands them over: processes adding to the same
/// counters lock them in one order) and trims the slots before `trim_before`.
pub(super) async fn add(
    c: &Client,
    counts: &[ActivityCount],
    trim_before: i64,
) -> Result<(), StoreError> {
    let slots: Vec<i64> = counts.iter().map(|c| c.slot).collect();
    let whats: Vec<&str> = counts.iter().map(|c| c.what.as_str()).collect();
    let names: Vec<&str> = counts.iter().map(|c| c.name.as_str()).collect();
    let numbers: Vec<i64> = counts.iter().map(|c| c.count).collect();
    let upsert = c
        .prepare_cached(
            "INSERT INTO activity AS a (slot, what, name, count)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT (slot, what, name) DO UPDATE SET count = a.count + excluded.count",
        )
        .await?;
    c.execute(&upsert, &[&slots, &whats, &names, &numbers])
        .await?;
    let trim = c
        .prepare_cached("DELETE FROM activity WHERE slot < $1")
        .await?;
    c.execute(&trim, &[&trim_before]).await?;
    Ok(())
}

/// The counters of the slots `[first, end)`.
pub(super) async fn counts(
    c: &Client,
    first: i64,
    end: i64,
) -> Result<Vec<ActivityCount>, StoreError> {
    let read = c
        .prepare_cached(
            "SELECT slot, what, name, count FROM activity WHERE slot >= $1 AND slot < $2",
        )
        .await?;
    let rows = c.query(&read, &[&first, &end]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            // A kind this binary does not know (written by a newer one) is left out.
            Counted::parse(r.get(1)).map(|what| ActivityCount {
                slot: r.get(0),
                what,
                name: r.get(2),
                count: r.get(3),
            })
        })
        .collect())
}
