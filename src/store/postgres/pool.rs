//! The connection pool (deadpool-postgres) and the settings every connection gets.

use std::time::Duration;

use super::tls::{self, Connect};
use crate::store::StoreError;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

/// Begins a transaction whose statements are planned once per connection (a generic
/// plan), along the indexes only. The delivery engine's statements run hundreds of times
/// a second on a table with many partial indexes, and planning them anew each time (what
/// `plan_cache_mode = force_custom_plan` does, see [`build`]) cost PostgreSQL as much as
/// running them. Their right plan is known (walk the claim index in due order, find rows
/// by id, join by nested loops over them), and with sequential scans, bitmap scans,
/// sorts, hash and merge joins ruled out when the plan is made, a generic plan takes it whatever the tables held at that moment; an empty table
/// cannot leave a sequential scan behind.
pub(super) const BEGIN_INDEX_PLANS: &str = "BEGIN; \
    SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off; \
    SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; \
    SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// A pooled connection on which this process runs a transaction by hand (`BEGIN` …
/// `COMMIT` sent pipelined, not through a `Transaction` that rolls back when dropped).
/// If it is dropped before [`HandRun::end`] (its future cancelled, or a panic), it may
/// still be inside that transaction, holding its locks and `SET LOCAL`s; so it is closed
/// instead of going back to the pool, where the next user would inherit them.
pub(super) struct HandRun(Option<Client>);

impl HandRun {
    pub(super) fn new(client: Client) -> Self {
        Self(Some(client))
    }

    /// Ends the hand-run transaction that came to `result`: on an error whatever was sent
    /// is rolled back (after a failed COMMIT that only warns), then the connection goes
    /// back to the pool.
    pub(super) async fn end<T, E>(mut self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            let _ = self.batch_execute("ROLLBACK").await;
        }
        drop(self.0.take());
        result
    }
}

impl std::ops::Deref for HandRun {
    type Target = Client;

    fn deref(&self) -> &Client {
        // Only `end` and `drop` take it, and both consume the guard.
        self.0
            .as_ref()
            .expect("a HandRun holds its client until it ends")
    }
}

impl Drop for HandRun {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Detached from the pool, and closed when dropped.
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// Builds the pool for `url` (and returns the connection settings, for the dedicated
/// connections of [`super::cluster`] and [`super::presence`]). TLS as `sslmode` in the
/// URL asks ([`tls`]). Connections are opened lazily, each with `search_path`
/// set to `schema` when one is given, and `synchronous_commit = on` whatever the
/// server's default: an acknowledged event must be on the server's disk.
pub fn build(
    url: &str,
    schema: Option<&str>,
    size: usize,
    connect_timeout: Duration,
) -> Result<(Pool, Connect), StoreError> {
    let Connect {
        mut config,
        tls: make_tls,
    } = tls::parse(url).map_err(|e| StoreError::Database(e.into()))?;
    let mut options = config.get_options().unwrap_or("").to_owned();
    if let Some(schema) = schema {
        options.push_str(&format!(" -c search_path={schema}"));
    }
    options.push_str(" -c synchronous_commit=on");
    // Plan each execution of a prepared statement with the table's size at that moment.
    // A generic plan cached while the tables were empty (a new schema) keeps its
    // sequential scans as they grow: ingest on a fresh schema ran at a third of its
    // speed. Planning these statements costs far less than one such scan.
    options.push_str(" -c plan_cache_mode=force_custom_plan");
    // Compiling a plan to machine code pays off for long analytical queries, never for
    // forebay's short ones; and the plans of [`BEGIN_INDEX_PLANS`] carry costs so high
    // (ruled-out paths) that JIT would take hundreds of milliseconds over each of them.
    options.push_str(" -c jit=off");
    config.options(options.trim());
    // Operators (and tests) tell the processes of one schema apart by this name.
    config.application_name(&match schema {
        Some(schema) => format!("forebay/{schema}"),
        None => "forebay".to_owned(),
    });
    config.connect_timeout(connect_timeout);
    // Detects a peer that vanished without closing (a cut network) on idle connections.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    let manager = Manager::from_config(
        config.clone(),
        make_tls.clone(),
        ManagerConfig {
            // Fast: a connection the server closed (or terminated) is noticed as closed
            // and replaced; one that died silently fails its next query, which the
            // caller sees as an unavailable store and retries.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(connect_timeout))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    Ok((
        pool,
        Connect {
            config,
            tls: make_tls,
        },
    ))
}
