//! The delivery engine: claims due deliveries from the store under a lease, sends them to
//! their destinations, and records every attempt with the delivery's next state.
//!
//! - [`worker`]: the loop that claims, sends and records, woken by ingest commits and by
//!   the next due time, never by polling.
//! - [`http`], [`exec`]: the destination kinds. [`sign`]: Standard Webhooks signatures.
//! - [`retry`]: when to try again, and when to give up.
//!
//! - [`limits`]: per-destination `max_concurrency` and `rate_limit`.
//!
//! - [`pause`]: paused routes and destinations.
//!
//! - [`breaker`]: the circuit breaker.
//!
//! Still to come (issue 3): filters and transforms, per-key ordering, the admin API for
//! deliveries.

pub mod breaker;
pub mod exec;
pub mod http;
pub mod limits;
mod outcome;
pub mod pause;
pub mod retry;
pub mod sign;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use outcome::Sent;
pub use worker::Worker;

use crate::config::{Config, DestinationConfig};
use crate::store::ClaimedDelivery;
use retry::RetryPolicy;

/// A destination ready to send to.
#[derive(Debug)]
pub struct Destination {
    pub name: String,
    target: Target,
    pub retry: RetryPolicy,
    pub limits: limits::Limits,
    pub breaker: breaker::Breaker,
}

#[derive(Debug)]
enum Target {
    Http(http::HttpTarget),
    Exec(exec::ExecTarget),
}

impl Destination {
    /// Sends one delivery; `now_secs` stamps the outbound request.
    pub async fn send(&self, d: &ClaimedDelivery, now_secs: i64) -> Sent {
        match &self.target {
            Target::Http(t) => t.send(d, now_secs).await,
            Target::Exec(t) => t.send(d).await,
        }
    }

    /// How long one attempt may take.
    pub fn timeout(&self) -> Duration {
        match &self.target {
            Target::Http(t) => t.timeout(),
            Target::Exec(t) => t.timeout(),
        }
    }
}

/// Builds every configured destination (their settings were validated at load).
pub fn destinations(config: &Config) -> Result<BTreeMap<String, Arc<Destination>>, String> {
    let mut out = BTreeMap::new();
    for (name, cfg) in &config.destinations {
        let breaker_cfg = match cfg {
            DestinationConfig::Http(h) => &h.breaker,
            DestinationConfig::Exec(e) => &e.breaker,
        };
        let breaker = breaker::Breaker::new(breaker_cfg.failures, breaker_cfg.cooldown.0);
        let (target, retry, limits) = match cfg {
            DestinationConfig::Http(h) => {
                let signer = match &h.sign {
                    None => None,
                    Some(sign) => {
                        let secret = sign
                            .secret
                            .resolve()
                            .map_err(|e| format!("destinations.{name}.sign.secret: {e}"))?;
                        Some(
                            sign::Signer::from_secret(secret.expose())
                                .map_err(|e| format!("destinations.{name}.sign.secret: {e}"))?,
                        )
                    }
                };
                let target = http::HttpTarget::new(h, signer)
                    .map_err(|e| format!("destinations.{name}: {e}"))?;
                (
                    Target::Http(target),
                    RetryPolicy::from_config(&h.retry),
                    limits::Limits::new(h.max_concurrency, h.rate_limit),
                )
            }
            DestinationConfig::Exec(e) => (
                Target::Exec(exec::ExecTarget::new(e)),
                RetryPolicy::from_config(&e.retry),
                limits::Limits::new(e.max_concurrency, e.rate_limit),
            ),
        };
        out.insert(
            name.clone(),
            Arc::new(Destination {
                name: name.clone(),
                target,
                retry,
                limits,
                breaker,
            }),
        );
    }
    Ok(out)
}
