//! The delivery engine: claims due deliveries from the store under a lease, sends them to
//! their destinations, and records every attempt with the delivery's next state.
//!
//! - [`worker`]: the loop that claims, sends and records, woken by ingest commits and by
//!   the next due time, never by polling.
//! - [`http`], [`exec`], [`broker`] (NATS JetStream, RabbitMQ, Redis Streams): the
//!   destination kinds. [`metadata`]: what every message says about itself. [`sign`]:
//!   Standard Webhooks signatures.
//! - [`retry`]: when to try again, and when to give up.
//! - [`batch`]: a route's `batch`, many events to a call.
//!
//! - [`limits`]: per-destination `max_concurrency` and `rate_limit`.
//!
//! - [`pause`]: paused routes and destinations.
//!
//! - [`breaker`]: the circuit breaker.

pub mod batch;
pub mod breaker;
pub mod broker;
pub mod exec;
pub mod http;
pub mod limits;
pub mod metadata;
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
    /// Shared so that a reload which keeps the limits keeps counting the sends under way.
    pub limits: Arc<limits::Limits>,
    /// Shared so that a reload which keeps the breaker's settings keeps its state.
    pub breaker: Arc<breaker::Breaker>,
    /// The key it signs with, read when it was built (a reload compares it: the
    /// configuration names a secret's file or variable, not its value).
    signed_with: Option<sign::Signer>,
}

#[derive(Debug)]
enum Target {
    Http(http::HttpTarget),
    Exec(exec::ExecTarget),
    Broker(broker::BrokerTarget),
}

impl Destination {
    /// True when `fresh`, built from the same configuration, signs with the same key:
    /// then a reload keeps this one, with its connections, limits and breaker.
    pub fn signs_like(&self, fresh: &Destination) -> bool {
        self.signed_with == fresh.signed_with
    }

    /// Takes over `before`'s limits (with the sends it counts as under way) when `was`
    /// and `now` limit alike, and its breaker's state when they configure it alike: a
    /// destination replaced by a reload neither sends past its concurrency while the
    /// old one's sends finish nor forgets that its endpoint is failing.
    pub fn carry_over(
        &mut self,
        before: &Destination,
        was: &DestinationConfig,
        now: &DestinationConfig,
    ) {
        if was.limits() == now.limits() {
            self.limits = before.limits.clone();
        }
        if was.breaker() == now.breaker() {
            self.breaker = before.breaker.clone();
        }
    }

    /// Sends one delivery; `now_secs` stamps the outbound request.
    pub async fn send(&self, d: &ClaimedDelivery, now_secs: i64) -> Sent {
        match &self.target {
            Target::Http(t) => t.send(d, now_secs).await,
            Target::Exec(t) => t.send(d).await,
            Target::Broker(t) => t.send(d, now_secs).await,
        }
    }

    /// Ends the destination's connections cleanly; at shutdown, after the last send.
    pub async fn close(&self) {
        if let Target::Broker(t) = &self.target {
            t.close().await;
        }
    }

    /// How long one attempt may take.
    pub fn timeout(&self) -> Duration {
        match &self.target {
            Target::Http(t) => t.timeout(),
            Target::Exec(t) => t.timeout(),
            Target::Broker(t) => t.timeout(),
        }
    }
}

/// Builds every configured destination (their settings were validated at load).
pub fn destinations(config: &Config) -> Result<BTreeMap<String, Arc<Destination>>, String> {
    let mut out = BTreeMap::new();
    for (name, cfg) in &config.destinations {
        let breaker = Arc::new(breaker::Breaker::new(
            cfg.breaker().failures,
            cfg.breaker().cooldown.0,
        ));
        let signer = match cfg.sign() {
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
        let signed_with = signer.clone();
        let target = match cfg {
            DestinationConfig::Http(h) => Target::Http(
                http::HttpTarget::new(h, signer)
                    .map_err(|e| format!("destinations.{name}: {e}"))?,
            ),
            DestinationConfig::Exec(e) => Target::Exec(exec::ExecTarget::new(e)),
            DestinationConfig::Broker(b) => Target::Broker(
                broker::BrokerTarget::new(b, signer)
                    .map_err(|e| format!("destinations.{name}: {e}"))?,
            ),
        };
        let (max_concurrency, rate_limit) = cfg.limits();
        let (retry, limits) = (
            RetryPolicy::from_config(cfg.retry()),
            Arc::new(limits::Limits::new(max_concurrency, rate_limit)),
        );
        out.insert(
            name.clone(),
            Arc::new(Destination {
                name: name.clone(),
                target,
                retry,
                limits,
                breaker,
                signed_with,
            }),
        );
    }
    Ok(out)
}
