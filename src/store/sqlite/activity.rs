//! The dashboard's recent-activity counts on SQLite (see `store::activity`).

use rusqlite::{Connection, params};

use crate::id;
use crate::store::StoreError;
use crate::store::activity::{Activity, DestinationActivity, FAILED_ATTEMPT_SQL, Window};

pub(super) fn activity(conn: &Connection, window: Window) -> Result<Activity, StoreError> {
    let (since, until) = (window.since_ms(), window.until_ms);
    let mut activity = Activity::default();
    let mut events = conn.prepare_cached(
        "SELECT source, (received_at - ?1) / ?2 AS bucket, count(*) FROM events
         WHERE id >= ?3 AND id < ?4 AND received_at >= ?1 AND received_at < ?5
         GROUP BY source, bucket",
    )?;
    let rows = events.query_map(
        params![
            since,
            window.bucket_ms,
            id::at_time(id::EVENT, since),
            id::at_time(id::EVENT, until),
            until
        ],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    for row in rows {
        let (source, bucket, count) = row?;
        let at = since + bucket * window.bucket_ms;
        activity.add_events(&window, source, at, count.max(0) as u64);
    }
    let mut deliveries = conn.prepare_cached(
        "SELECT state, count(*) FROM deliveries WHERE id >= ?1 AND id < ?2
         GROUP BY state ORDER BY state",
    )?;
    let rows = deliveries.query_map(
        params![
            id::at_time(id::DELIVERY, since),
            id::at_time(id::DELIVERY, until)
        ],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
    )?;
    activity.deliveries = rows.collect::<Result<_, _>>()?;
    let mut attempts = conn.prepare_cached(&format!(
        "SELECT d.destination, count(*), sum({FAILED_ATTEMPT_SQL})
         FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE a.id >= ?1 AND a.id < ?2
         GROUP BY d.destination ORDER BY d.destination"
    ))?;
    let rows = attempts.query_map(
        params![
            id::at_time(id::ATTEMPT, since),
            id::at_time(id::ATTEMPT, until)
        ],
        |r| {
            Ok(DestinationActivity {
                destination: r.get(0)?,
                attempts: r.get::<_, i64>(1)?.max(0) as u64,
                failed: r.get::<_, i64>(2)?.max(0) as u64,
            })
        },
    )?;
    activity.destinations = rows.collect::<Result<_, _>>()?;
    Ok(activity)
}
