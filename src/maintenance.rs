//! Background maintenance: retention, releasing the claims of processes that died, and
//! writing this process's activity tally.
//!
//! Every `forebay serve` process runs this loop, whatever its role; the store decides
//! which one does the work ([`Store::lead_maintenance`]): on SQLite the one owner, on
//! PostgreSQL the holder of the schema's maintenance lock, which passes to another
//! process when its holder dies. The leader, every second, ends the leases of dead
//! processes' claims and applies the `redact` rules (`when = "delivered"`) of events
//! whose deliveries have all finished; and every [`PURGE_EVERY`] (and at start) removes
//! what retention no longer keeps, in bounded passes so that ingest never waits long
//! behind it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{RetentionConfig, Source};
use crate::ingest::redact::Redaction;
use crate::store::redaction::RedactionWrite;
use crate::store::{Cutoffs, Purge, Purged, Store};

/// Time between two rounds of retention.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Time between two looks for dead processes' claims (and for leadership).
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// How much later than its retention an event goes (see `purge_at`).
const CLOCK_MARGIN_MS: i64 = 60_000;

/// Most rows of each kind one pass removes (one transaction).
const PASS_LIMIT: usize = 1000;

/// Most passes in one round; the rest waits for the next round, so a first purge of a
/// large backlog does not monopolise the store.
const MAX_PASSES: usize = 100;

/// How long each source's data is kept, and the default for sources no longer configured.
#[derive(Debug, Clone)]
pub struct Retention {
    pub sources: BTreeMap<String, RetentionConfig>,
    pub others: RetentionConfig,
}

impl Retention {
    pub fn of(sources: &BTreeMap<String, Arc<Source>>, others: RetentionConfig) -> Self {
        Self {
            sources: sources
                .iter()
                .map(|(name, s)| (name.clone(), s.retention))
                .collect(),
            others,
        }
    }

    /// One pass's cutoffs at `now_ms`.
    pub fn purge_at(&self, now_ms: i64) -> Purge {
        let cutoffs = |r: &RetentionConfig| Cutoffs {
            // A minute's margin: dedup reads the ingesting process's clock, and an
            // event kept exactly as long as the dedup window must outlive it there too.
            events: r.events.cutoff_ms(now_ms).map(|c| c - CLOCK_MARGIN_MS),
            attempts: r.attempts.cutoff_ms(now_ms),
            rejected: r.rejected.cutoff_ms(now_ms),
        };
        Purge {
            sources: self
                .sources
                .iter()
                .map(|(name, r)| (name.clone(), cutoffs(r)))
                .collect(),
            others: cutoffs(&self.others),
            limit: PASS_LIMIT,
            attempts_after: BTreeMap::new(),
        }
    }
}

pub struct Maintenance {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The retention in force, read at each pass (a reload may change it).
    pub retention: Arc<dyn Fn() -> Retention + Send + Sync>,
}

/// Most events one redaction pass rewrites (one transaction).
const REDACT_LIMIT: usize = 200;

impl Maintenance {
    /// Adds this process's activity tally to the store every
    /// [`crate::store::activity_tally::FLUSH_EVERY`] until `stop` (closing the store
    /// writes the rest).
    pub async fn write_activity(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(crate::store::activity_tally::FLUSH_EVERY) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = store.flush_activity().await {
                // Kept in memory: the next round writes them.
                crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot write the activity counts; trying again shortly");
            }
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut next_purge = self.clock.now_ms();
        loop {
            if *stop.borrow() {
                return;
            }
            let leads = self.store.lead_maintenance().await;
            if leads {
                self.release_dead_claims().await;
                self.redact_delivered().await;
                if self.clock.now_ms() >= next_purge {
                    self.purge_round(&stop).await;
                    next_purge = self.clock.now_ms() + PURGE_EVERY.as_millis() as i64;
                }
            } else {
                // Whoever takes over later purges at once: it has not purged lately.
                next_purge = next_purge.min(self.clock.now_ms());
            }
            // Only a leader waits for the next round on the clock (a test's manual clock
            // may jump past it); a non-leader's round is never due, and waiting on a past
            // instant would spin.
            let round = async {
                if leads {
                    self.clock.sleep_until(next_purge).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(RELEASE_EVERY) => {}
                () = round => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn release_dead_claims(&self) {
        match self.store.release_dead_claims(self.clock.now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                deliveries = n,
                "released the claims of a forebay process that stopped without finishing them; they are sent again now"
            ),
            Err(e) => {
                tracing::debug!(error = %crate::error_chain::Chain(&e), "cannot look for dead processes' claims; trying again shortly")
            }
        }
    }

    /// Redacts the events whose rule waited for their deliveries, now all finished, in
    /// passes of [`REDACT_LIMIT`] until none is left, each with the rule it came in
    /// under (kept with it: the leader may run another configuration). A rule that
    /// matches nothing in the event leaves it as it is, waiting no more.
    async fn redact_delivered(&self) {
        loop {
            let due = match self.store.redactions_due(REDACT_LIMIT).await {
                Ok(due) if due.is_empty() => return,
                Ok(due) => due,
                Err(e) => {
                    crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot read the events waiting to be redacted; trying again shortly");
                    return;
                }
            };
            let count = due.len();
            let mut applied = 0;
            let writes: Vec<RedactionWrite> = due
                .into_iter()
                .map(|d| {
                    let rule = d.rule.as_deref().map(Redaction::from_stored);
                    let done = match rule {
                        Some(Ok(rule)) => rule.apply(&d.headers, &d.body),
                        Some(Err(e)) => {
                            crate::throttled!(warn, event = %d.event_id, error = %e, "an event's redact rule does not read back; redacting its whole body");
                            Some(crate::ingest::redact::Redacted::everything(&d.headers))
                        }
                        None => None,
                    };
                    match done {
                        Some(r) => {
                            applied += 1;
                            RedactionWrite {
                                event_id: d.event_id,
                                redacted: Some((r.headers, r.body)),
                                fields: r.fields,
                            }
                        }
                        None => RedactionWrite {
                            event_id: d.event_id,
                            redacted: None,
                            fields: Vec::new(),
                        },
                    }
                })
                .collect();
            if let Err(e) = self.store.finish_redactions(writes).await {
                crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot write redacted events; trying again shortly");
                return;
            }
            crate::metrics::redacted("delivered", applied);
            if count < REDACT_LIMIT {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Passes until one comes back short (nothing more is due) or the round's budget is
    /// spent.
    async fn purge_round(&self, stop: &watch::Receiver<bool>) -> Purged {
        let mut total = Purged::default();
        // Where each source's attempt walk goes on from, pass to pass in this round.
        let mut cursors = Purge::default();
        for _ in 0..MAX_PASSES {
            if *stop.borrow() {
                break;
            }
            let mut purge = (self.retention)().purge_at(self.clock.now_ms());
            purge.attempts_after = cursors.attempts_after.clone();
            match self.store.purge(&purge).await {
                Ok(purged) => {
                    crate::metrics::purged(&purged);
                    total.add(&purged);
                    cursors.after(&purged);
                    if !purged.is_full(purge.limit) {
                        break;
                    }
                    // Let queued commits through between two passes.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain::Chain(&e), "retention pass failed; trying again next round");
                    break;
                }
            }
        }
        if !total.is_empty() {
            tracing::info!(
                events = total.events,
                attempts = total.attempts,
                rejected = total.rejected,
                replays = total.replays,
                "retention removed old data"
            );
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Keep, Span};

    #[test]
    fn cutoffs_follow_each_source_and_events_keep_a_minute_more() {
        let day = |n: u64| Keep::For(Span::secs(n * 86_400));
        let retention = Retention {
            sources: BTreeMap::from([(
                "stripe".to_owned(),
                RetentionConfig {
                    events: day(90),
                    attempts: day(30),
                    rejected: Keep::Forever,
                },
            )]),
            others: RetentionConfig::default(),
        };
        let now = 1_000 * 86_400_000;
        let purge = retention.purge_at(now);
        let stripe = purge.sources[0].1;
        assert_eq!(purge.sources[0].0, "stripe");
        assert_eq!(stripe.events, Some(now - 90 * 86_400_000 - 60_000));
        assert_eq!(stripe.attempts, Some(now - 30 * 86_400_000));
        assert_eq!(stripe.rejected, None);
        assert_eq!(purge.others.events, Some(now - 30 * 86_400_000 - 60_000));
        assert_eq!(purge.others.rejected, Some(now - 3 * 86_400_000));
        assert_eq!(purge.limit, PASS_LIMIT);
    }
}
