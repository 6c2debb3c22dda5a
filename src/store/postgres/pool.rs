//! The connection pool (deadpool-postgres) and the settings every connection gets.

use std::time::Duration;

use super::tls::{self, Connect};
use crate::store::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

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
