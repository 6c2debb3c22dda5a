//! What several processes on one schema share beyond rows: wake-ups and limits.
//!
//! - **Wake-ups.** Every transaction that gives the delivery engine work (new events,
//!   prepared deliveries, finished attempts, retries, replays) sends `NOTIFY` on the
//!   schema's channel, delivered at its commit. Each process keeps one dedicated
//!   connection (not a pooled one) listening on it, and wakes its engine; after that
//!   connection drops it reconnects with backoff and wakes the engine once, in case a
//!   notification was missed meanwhile.
//! - **Limits.** A destination's `max_concurrency` and `rate_limit` hold for the whole
//!   cluster: the claim transaction, under the destination's advisory lock, counts live
//!   leases (in [`super::claim`]) and takes tokens from a bucket row ([`rate_allowance`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Client, Transaction};
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::tls::Connect;

use crate::store::{Claim, ClusterLimit, StoreError};

/// The channel name for a schema (also sent with `pg_notify`).
pub(super) fn channel(schema: Option<&str>) -> String {
    format!("forebay/{}", schema.unwrap_or("public"))
}

/// The SQL that wakes the other processes when the transaction commits.
pub(super) const NOTIFY: &str = "SELECT pg_notify($1, '')";

pub(super) async fn notify(tx: &Transaction<'_>, channel: &str) -> Result<(), StoreError> {
    let stmt = tx.prepare_cached(NOTIFY).await?;
    tx.execute(&stmt, &[&channel]).await?;
    Ok(())
}

/// The engine's wake-ups and the destinations' limits, once the engine has joined.
#[derive(Default)]
pub(super) struct Shared {
    pub limits: HashMap<String, ClusterLimit>,
    pub wakes: Vec<Arc<Notify>>,
}

impl Shared {
    pub fn wake_all(&self) {
        for w in &self.wakes {
            w.notify_one();
        }
    }
}

/// Listens on `channel` for as long as the returned task lives, waking `shared`'s
/// engine on each notification.
pub(super) fn listen(
    connect: Connect,
    channel: String,
    shared: Arc<Mutex<Shared>>,
) -> tokio::task::JoinHandle<()> {
    let wake = move || {
        if let Ok(s) = shared.lock() {
            s.wake_all();
        }
    };
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match connect.config.connect(connect.tls.clone()).await {
                Ok((client, mut connection)) => {
                    let listening = async {
                        let sql = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
                        client.batch_execute(&sql).await
                    };
                    // The connection must be driven while LISTEN runs: poll both.
                    let mut listening = std::pin::pin!(listening);
                    let mut subscribed = false;
                    loop {
                        tokio::select! {
                            done = &mut listening, if !subscribed => {
                                if done.is_err() { break; }
                                subscribed = true;
                                backoff = Duration::from_millis(100);
                                // Whatever was committed while not listening.
                                wake();
                            }
                            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                                match message {
                                    Some(Ok(AsyncMessage::Notification(_))) => wake(),
                                    Some(Ok(_)) => {}
                                    Some(Err(_)) | None => break,
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot listen for other processes' commits"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

/// How many deliveries this claim may take under its destination's cluster-wide rate
/// limit of `count` per `per_ms`, and, when the rate is what holds it back, how long until
/// the next token. Runs under the destination's claim lock, so no other claim of it
/// interleaves. (The concurrency cap is counted in the claiming statement itself.)
pub(super) async fn rate_allowance(
    client: &Client,
    claim: &Claim,
    count: u32,
    per_ms: i64,
) -> Result<(usize, Option<Duration>), StoreError> {
    let mut allowed = claim.limit;
    let mut retry_in = None;
    let tokens = tokens_now(client, &claim.destination, count, per_ms, claim.now_ms).await?;
    // A hair of slack, so sums of fractions that make a whole token count as one.
    let whole = (tokens + 1e-9).floor().max(0.0) as usize;
    if whole < allowed {
        allowed = whole;
        let ms_per_token = per_ms as f64 / f64::from(count.max(1));
        retry_in = Some(Duration::from_millis(
            ((1.0 - tokens.fract()) * ms_per_token).ceil().max(1.0) as u64,
        ));
    }
    Ok((allowed, retry_in))
}

/// The destination's bucket, refilled up to `now_ms`: one token per `per_ms / count`,
/// holding at most one (starts are spread evenly, no burst: no window of the stated
/// length sees more than the limit, across all processes).
async fn tokens_now(
    tx: &Client,
    destination: &str,
    count: u32,
    per_ms: i64,
    now_ms: i64,
) -> Result<f64, StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO rate_buckets (destination, tokens, updated_at) VALUES ($1, 1, $2)
             ON CONFLICT (destination) DO UPDATE
             SET tokens = least(1.0, rate_buckets.tokens
                     + greatest(0, $2 - rate_buckets.updated_at)::float8 * $3 / $4),
                 updated_at = greatest(rate_buckets.updated_at, $2)
             RETURNING tokens",
        )
        .await?;
    let count = f64::from(count);
    let per_ms = per_ms.max(1) as f64;
    Ok(tx
        .query_one(&stmt, &[&destination, &now_ms, &count, &per_ms])
        .await?
        .get(0))
}

/// Takes `used` tokens from the destination's bucket (after a claim).
pub(super) async fn spend_tokens(
    tx: &Client,
    destination: &str,
    used: usize,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached("UPDATE rate_buckets SET tokens = tokens - $2 WHERE destination = $1")
        .await?;
    tx.execute(&stmt, &[&destination, &(used as f64)]).await?;
    Ok(())
}
