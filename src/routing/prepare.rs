//! The preparer: runs routes' filters, transforms and ordering keys on waiting
//! deliveries, oldest first, and writes each batch in one transaction. A paused route's
//! deliveries wait unprepared; a route whose expressions run past their time limit on
//! `pause_after_timeouts` deliveries in a row is paused here, with the reason, so that a
//! broken expression does not spend its time limit on every event.
//!
//! Batches are taken in receive order and written whole, so the prepared deliveries of a
//! route are always its oldest: a delivery with an ordering key can never be claimed
//! before an earlier one of its key is known. It runs beside the delivery loop, so a slow
//! expression (up to its deadline) delays only the deliveries waiting to be prepared,
//! never sends already under way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::Programs;
use crate::clock::now_ms;
use crate::deliver::pause::Pauses;
use crate::store::{Pausable, Preparation, Prepared, Store};

/// Most deliveries prepared per batch.
const BATCH: usize = 256;
/// Wait after the store fails, before trying again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest nap with nothing to do (a wake-up missed, say).
const MAX_IDLE: Duration = Duration::from_secs(60);

pub struct Preparer {
    pub store: Arc<dyn Store>,
    /// The expressions in force, read for each batch (a reload may change them).
    pub programs: Arc<dyn Fn() -> Arc<Programs> + Send + Sync>,
    /// Paused routes are not prepared; routes are paused here too.
    pub pauses: Arc<Pauses>,
    /// Woken by ingest when it commits deliveries to prepare.
    pub wake: Arc<Notify>,
    /// Woken here when prepared deliveries may be sent.
    pub deliver: Arc<Notify>,
}

impl Preparer {
    /// Prepares until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let batch = match self.store.unprepared(BATCH, &self.pauses.routes()).await {
                Ok(batch) => batch,
                Err(e) => {
                    crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot read deliveries to prepare; trying again shortly");
                    tokio::select! {
                        _ = tokio::time::sleep(STORE_BACKOFF) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(MAX_IDLE) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            // Nothing to run the expressions on: set aside with the reason. The rest go to
            // the sandbox as one batch.
            let current = (self.programs)();
            let mut prepared = Vec::with_capacity(batch.len());
            let mut jobs = Vec::with_capacity(batch.len());
            for u in &batch {
                match &u.unreadable {
                    Some(reason) => prepared.push(Prepared {
                        delivery_id: u.id.clone(),
                        event_id: u.event.id.clone(),
                        route: u.route.clone(),
                        ordering_key: None,
                        deliver_at_ms: None,
                        debounce_key: None,
                        outcome: Preparation::Failed(reason.clone()),
                    }),
                    None => jobs.push((u.route.as_str(), u.id.clone(), &u.event)),
                }
            }
            // At shutdown a batch under way is dropped (its sandbox processes are killed):
            // nothing of it was written, so the next start prepares it again.
            tokio::select! {
                done = current.prepare_many(&jobs) => prepared.extend(done),
                _ = stop.changed() => break,
            }
            match self.store.prepare(prepared, now_ms()).await {
                Ok(()) => self.deliver.notify_one(),
                Err(e) => {
                    crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot record prepared deliveries; trying again shortly");
                    tokio::time::sleep(STORE_BACKOFF).await;
                }
            }
            for (route, count) in current.take_runaway() {
                self.pause_runaway(&route, count).await;
            }
        }
    }

    /// Pauses `route`, whose expressions ran past their time limit `count` times in a row.
    async fn pause_runaway(&self, route: &str, count: u32) {
        let reason = format!(
            "its expressions ran past their time limit on {count} deliveries in a row; fix them (forebay test-route runs one on a stored event), then resume the route and retry its dead deliveries"
        );
        // Counted first, so that whoever sees the pause sees it counted too.
        crate::metrics::route_paused(route, "expression_timeouts");
        // Paused in this process at once, so preparing stops even if the store is down
        // just now; the store keeps it across restarts when it answers.
        self.pauses
            .set(Pausable::Route, route, true, Some(reason.clone()));
        if let Err(e) = self
            .store
            .set_paused(Pausable::Route, route, true, Some(&reason), now_ms())
            .await
        {
            tracing::warn!(route, error = %crate::error_chain::Chain(&e), "cannot record the pause of a route; it is paused until this process stops");
        }
        tracing::warn!(
            route,
            count,
            "route paused: its expressions keep running past their time limit"
        );
    }
}
