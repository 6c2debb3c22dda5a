//! The dashboard's recent-activity counts on PostgreSQL (see `store::activity`).

use deadpool_postgres::Client;

use crate::id;
use crate::store::StoreError;
use crate::store::activity::{Activity, DestinationActivity, FAILED_ATTEMPT_SQL, Window};

pub(super) async fn activity(c: &Client, window: Window) -> Result<Activity, StoreError> {
    let (since, until) = (window.since_ms(), window.until_ms);
    let mut activity = Activity::default();
    let events = c
        .prepare_cached(
            "SELECT source, (received_at - $1) / $2 AS bucket, count(*) FROM events
             WHERE id >= $3 AND id < $4 AND received_at >= $1 AND received_at < $5
             GROUP BY source, bucket",
        )
        .await?;
    let rows = c
        .query(
            &events,
            &[
                &since,
                &window.bucket_ms,
                &id::at_time(id::EVENT, since),
                &id::at_time(id::EVENT, until),
                &until,
            ],
        )
        .await?;
    for row in rows {
        let at = since + row.get::<_, i64>(1) * window.bucket_ms;
        activity.add_events(&window, row.get(0), at, row.get::<_, i64>(2).max(0) as u64);
    }
    let deliveries = c
        .prepare_cached(
            "SELECT state, count(*) FROM deliveries WHERE id >= $1 AND id < $2
             GROUP BY state ORDER BY state",
        )
        .await?;
    activity.deliveries = c
        .query(
            &deliveries,
            &[
                &id::at_time(id::DELIVERY, since),
                &id::at_time(id::DELIVERY, until),
            ],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect();
    let attempts = c
        .prepare_cached(&format!(
            "SELECT d.destination, count(*), sum({FAILED_ATTEMPT_SQL})::bigint
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE a.id >= $1 AND a.id < $2
             GROUP BY d.destination ORDER BY d.destination"
        ))
        .await?;
    activity.destinations = c
        .query(
            &attempts,
            &[
                &id::at_time(id::ATTEMPT, since),
                &id::at_time(id::ATTEMPT, until),
            ],
        )
        .await?
        .iter()
        .map(|r| DestinationActivity {
            destination: r.get(0),
            attempts: r.get::<_, i64>(1).max(0) as u64,
            failed: r.get::<_, i64>(2).max(0) as u64,
        })
        .collect();
    Ok(activity)
}
