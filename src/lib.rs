//! forebay: a self-hosted gateway for incoming webhooks.
//!
//! A sender's request is verified, committed durably with one pending delivery per
//! route, and acknowledged in milliseconds; delivery happens later, from the store.
//!
//! - [`config`]: `forebay.toml`, environment overrides, secrets, validation.
//! - [`ingest`]: the public listener: `/in/{source}`, verification ([`ingest::verify`]),
//!   dedup keys, capped body reads.
//! - [`store`]: the [`store::Store`] trait, with SQLite and PostgreSQL implementations.
//! - [`deliver`]: the delivery engine: claims, sends, retries, records attempts.
//! - [`admin`]: the private JSON API under `/api/v1`.
//! - [`dashboard`]: the web UI at `/` on the admin listener, over the admin API's handlers.
//! - [`expr`]: jq and JavaScript expressions, checked at load and evaluated in sandbox
//!   processes.
//! - [`routing`]: routes' filters, transforms and ordering keys at work (the preparer).
//! - [`replay`]: replay jobs, sending stored events again.
//! - [`maintenance`]: retention and releasing dead processes' claims, in the background.
//! - [`live`]: the configuration in force, and reloading it (SIGHUP, `POST /api/v1/reload`).
//! - [`metrics`]: Prometheus metrics, scraped at `/metrics` on the admin listener.
//! - [`server`]: `run(config, listeners, shutdown)`, which wires them together.
//! - [`service_manager`]: readiness, stopping and watchdog notices to systemd.
//! - [`cli`]: the `forebay` command line.

pub mod address_guard;
pub mod admin;
pub mod archive;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod deliver;
pub mod error_chain;
pub mod expr;
pub mod header_limits;
pub mod http_error;
pub mod id;
pub mod ingest;
pub mod live;
pub mod log_throttle;
pub mod maintenance;
pub mod metrics;
pub mod rekey;
pub mod replay;
pub mod routing;
pub mod server;
pub mod service_manager;
pub mod size_cap;
pub mod store;

pub use config::Config;
pub use server::{Listeners, run};
