//! Delivery queries on PostgreSQL.

use deadpool_postgres::Client;
use tokio_postgres::Row;

use crate::store::headers::decode_stored;
use crate::store::seal::Sealer;
use crate::store::{
    DeliveryCount, DeliveryQuery, EventInput, StoreError, StoredAttempt, StoredDelivery, Unprepared,
};

const COLUMNS: &str = "id, event_id, route, destination, state, attempts, next_attempt_at, \
     created_at, updated_at, last_error, part, ordering_key";

pub(super) async fn list(c: &Client, q: &DeliveryQuery) -> Result<Vec<StoredDelivery>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR route = $2)
           AND ($3::text IS NULL OR destination = $3) AND ($4::text IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5"
    );
    let stmt = c.prepare_cached(&sql).await?;
    let rows = c
        .query(
            &stmt,
            &[
                &q.state,
                &q.route,
                &q.destination,
                &q.before,
                &(q.limit as i64),
            ],
        )
        .await?;
    Ok(rows.iter().map(delivery_row).collect())
}

pub(super) async fn get(
    c: &Client,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<StoredDelivery>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, payload FROM deliveries WHERE id = $1");
    let stmt = c.prepare_cached(&sql).await?;
    let Some(row) = c.query_opt(&stmt, &[&id]).await? else {
        return Ok(None);
    };
    let mut delivery = delivery_row(&row);
    delivery.payload = sealer.open_payload(
        &delivery.event_id,
        &delivery.route,
        delivery.part,
        row.get(12),
    )?;
    let stmt = c
        .prepare_cached(
            "SELECT id, number, started_at, duration_ms, status, error, response_headers,
                    response_body
             FROM attempts WHERE delivery_id = $1 ORDER BY number, started_at",
        )
        .await?;
    for r in c.query(&stmt, &[&id]).await? {
        let attempt_id: String = r.get(0);
        let (headers, body) = sealer.open_response(&attempt_id, r.get(6), r.get(7))?;
        delivery.attempt_log.push(StoredAttempt {
            id: attempt_id,
            number: r.get(1),
            started_at_ms: r.get(2),
            duration_ms: r.get(3),
            status: r.get(4),
            error: r.get(5),
            response_headers: decode_stored(&headers)?,
            response_body: body,
        });
    }
    Ok(Some(delivery))
}

fn delivery_row(r: &Row) -> StoredDelivery {
    StoredDelivery {
        id: r.get(0),
        event_id: r.get(1),
        route: r.get(2),
        destination: r.get(3),
        state: r.get(4),
        attempts: r.get(5),
        next_attempt_at_ms: r.get(6),
        created_at_ms: r.get(7),
        updated_at_ms: r.get(8),
        last_error: r.get(9),
        part: r.get(10),
        ordering_key: r.get(11),
        payload: None,
        attempt_log: Vec::new(),
    }
}

/// The oldest unprepared deliveries, in receive order (position), with their events; none
/// of `skip_routes`.
pub(super) async fn unprepared(
    c: &Client,
    sealer: &Sealer,
    limit: usize,
    skip_routes: &[String],
) -> Result<Vec<Unprepared>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT d.id, d.route, e.id, e.source, e.received_at, e.method, e.path, e.query,
                    e.headers, e.body
             FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
             WHERE NOT d.prepared AND d.state = 'pending' AND d.route <> ALL($2::text[])
             ORDER BY d.position LIMIT $1",
        )
        .await?;
    let mut out = Vec::new();
    for r in c.query(&stmt, &[&(limit as i64), &skip_routes]).await? {
        let u = Unprepared {
            id: r.get(0),
            route: r.get(1),
            event: EventInput {
                id: r.get(2),
                source: r.get(3),
                received_at_ms: r.get(4),
                method: r.get(5),
                path: r.get(6),
                query: r.get(7),
                headers: Vec::new(),
                body: r.get(9),
            },
            unreadable: None,
        };
        out.extend(u.opened(sealer, r.get(8)));
    }
    Ok(out)
}

/// Open and dead deliveries per route, destination and state, through
/// `deliveries_by_state`: the cost follows the backlog and the dead letters.
pub(super) async fn counts(c: &Client) -> Result<Vec<DeliveryCount>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT route, destination, state, count(*) FROM deliveries
             WHERE state IN ('pending', 'in_flight', 'retrying', 'dead')
             GROUP BY route, destination, state ORDER BY route, destination, state",
        )
        .await?;
    Ok(c.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| DeliveryCount {
            route: r.get(0),
            destination: r.get(1),
            state: r.get(2),
            count: r.get::<_, i64>(3).max(0) as u64,
        })
        .collect())
}

/// When, after `after_ms`, the next delivery to one of `destinations` falls due or a
/// lease ends.
pub(super) async fn next_due_ms(
    c: &Client,
    destinations: &[String],
    after_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT min(at) FROM (
                 SELECT min(next_attempt_at) AS at FROM deliveries
                 WHERE destination = ANY($1) AND state IN ('pending', 'retrying')
                   AND next_attempt_at > $2
                 UNION ALL
                 SELECT min(lease_until) FROM deliveries
                 WHERE destination = ANY($1) AND state = 'in_flight' AND lease_until > $2
             ) AS due",
        )
        .await?;
    // Asked each time the engine goes idle: planned once per connection, along the
    // indexes, in a transaction of its own sent in one go.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&destinations, &after_ms];
    let (_, row, _) = tokio::try_join!(
        c.batch_execute(super::pool::BEGIN_INDEX_PLANS),
        c.query_one(&stmt, &params),
        c.batch_execute("COMMIT"),
    )?;
    Ok(row.get(0))
}
