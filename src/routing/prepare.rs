//! The preparer: runs routes' filters, transforms and ordering keys on waiting
//! deliveries, oldest first, and writes each batch in one transaction.
//!
//! Batches are taken in receive order and written whole, so the prepared deliveries of a
//! route are always its oldest: a delivery with an ordering key can never be claimed
//! before an earlier one of its key is known. It runs beside the delivery loop, so a slow
//! expression (up to its deadline) delays only the deliveries waiting to be prepared,
//! never sends already under way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::Programs;
use crate::clock::now_ms;
use crate::store::{Preparation, Prepared, Store};

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
            let batch = match self.store.unprepared(BATCH).await {
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
            // The sandbox's processes bound how many run at once; the rest queue there.
            let mut running = JoinSet::new();
            let current = (self.programs)();
            for u in batch {
                let programs = current.clone();
                running.spawn(async move {
                    match u.unreadable {
                        // Nothing to run the expressions on: set aside with the reason.
                        Some(reason) => Prepared {
                            delivery_id: u.id,
                            event_id: u.event.id,
                            route: u.route,
                            ordering_key: None,
                            outcome: Preparation::Failed(reason),
                        },
                        None => programs.prepare(&u.route, u.id, &u.event).await,
                    }
                });
            }
            // At shutdown a batch under way is dropped (its sandbox processes are killed):
            // nothing of it was written, so the next start prepares it again.
            let prepared = tokio::select! {
                prepared = running.join_all() => prepared,
                _ = stop.changed() => break,
            };
            match self.store.prepare(prepared, now_ms()).await {
                Ok(()) => self.deliver.notify_one(),
                Err(e) => {
                    crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot record prepared deliveries; trying again shortly");
                    tokio::time::sleep(STORE_BACKOFF).await;
                }
            }
        }
    }
}
