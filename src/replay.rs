//! Replay jobs: send stored events again, as a background job with progress.
//!
//! A job pages through the events its search filter matches, oldest first, and queues
//! for each one new delivery per route of the event's source (routes as configured now,
//! so filters and transforms apply again) or one to the named destination. Deliveries
//! carry the job's id and go out with `Forebay-Replay`, under the event's own
//! `webhook-id`. Each step's deliveries and progress commit together, so a job resumed
//! after a restart (jobs still `running` start again with the server) queues nothing
//! twice. `rate` paces the queuing; the destination's own limits still apply.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::admin::search::{Filter, Found};
use crate::clock::now_ms;
use crate::config::Rate;
use crate::id;
use crate::live::Live;
use crate::store::{ReplayDelivery, ReplayStep, ReplayWrite, Store, StoredReplay};

/// The route name of deliveries a replay sends to one named destination.
pub const DIRECT_ROUTE: &str = "(replay)";
/// Most events queued per step when no rate is set.
const STEP: usize = 100;

/// What a job replays: the events a search finds, or the events named.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Selection {
    #[serde(flatten)]
    pub filter: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
}

/// What replay jobs need of the running server.
pub struct Replayer {
    store: Arc<dyn Store>,
    /// The routes in force, read for each step (a reload may change them).
    live: Arc<Live>,
    /// Woken after a step queues deliveries.
    deliver: Arc<Notify>,
    prepare: Arc<Notify>,
}

impl Replayer {
    pub fn new(
        live: Arc<Live>,
        store: Arc<dyn Store>,
        deliver: Arc<Notify>,
        prepare: Arc<Notify>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            live,
            deliver,
            prepare,
        })
    }

    /// Starts the jobs left `running` by the last run.
    pub async fn resume(self: &Arc<Self>) {
        match self.store.list_replays(true, 1000).await {
            Ok(jobs) => {
                for job in jobs {
                    tracing::info!(replay = %job.id, "resuming a replay");
                    self.start(job);
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), "cannot list replays to resume")
            }
        }
    }

    /// Runs `job` in the background until it is done, fails or is cancelled.
    pub fn start(self: &Arc<Self>, job: StoredReplay) {
        let this = self.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            if let Err(error) = this.run(job).await {
                tracing::warn!(replay = %id, %error, "replay failed");
                let step = ReplayStep {
                    replay_id: id,
                    cursor: None,
                    scanned: 0,
                    matched: 0,
                    deliveries: Vec::new(),
                    now_ms: now_ms(),
                    finish: Some(("failed", Some(error))),
                };
                let _ = this.store.write_replay(ReplayWrite::Advance(step)).await;
            }
        });
    }

    async fn run(&self, job: StoredReplay) -> Result<(), String> {
        let selection: Selection = serde_json::from_str(&job.filter)
            .map_err(|e| format!("the stored filter does not decode: {e}"))?;
        let search = selection.filter.compile().map_err(|e| e.message)?;
        let rate: Option<Rate> = job.rate.as_deref().map(str::parse).transpose()?;
        // With a rate, a step is what the rate allows in one period (at least one event),
        // and the job waits the rest of the period after it.
        let (step_size, period) = match rate {
            None => (STEP, None),
            Some(rate) => {
                let size = (rate.count as usize).clamp(1, STEP);
                let per_event = rate.per.as_secs_f64() / f64::from(rate.count);
                (size, Some(Duration::from_secs_f64(per_event * size as f64)))
            }
        };
        let mut cursor = job.cursor.clone();
        loop {
            let started = tokio::time::Instant::now();
            let found = match &selection.event_ids {
                Some(ids) => self.by_id(ids, step_size, cursor.clone()).await?,
                None => search
                    .page(self.store.as_ref(), true, false, step_size, cursor.clone())
                    .await
                    .map_err(|e| e.message)?,
            };
            let running = self.live.current();
            let mut deliveries = Vec::new();
            for event in &found.events {
                let e = &event.request;
                match &job.destination {
                    Some(destination) => deliveries.push(ReplayDelivery {
                        id: id::new(id::DELIVERY),
                        event_id: e.id.clone(),
                        route: DIRECT_ROUTE.to_owned(),
                        destination: destination.clone(),
                        needs_preparing: false,
                        priority: 0,
                    }),
                    None => {
                        for route in running
                            .config
                            .routes
                            .iter()
                            .filter(|r| r.source == e.source)
                        {
                            deliveries.push(ReplayDelivery {
                                id: id::new(id::DELIVERY),
                                event_id: e.id.clone(),
                                route: route.name.clone(),
                                destination: route.destination.clone(),
                                needs_preparing: route.needs_preparing(),
                                priority: route.config.priority,
                            });
                        }
                    }
                }
            }
            let queued_any = !deliveries.is_empty();
            let prepares = deliveries.iter().any(|d| d.needs_preparing);
            let done = found.next_cursor.is_none();
            let step = ReplayStep {
                replay_id: job.id.clone(),
                cursor: found
                    .next_cursor
                    .clone()
                    .or_else(|| found.events.last().map(|e| e.request.id.clone())),
                scanned: found.scanned as i64,
                matched: found.events.len() as i64,
                deliveries,
                now_ms: now_ms(),
                finish: done.then_some(("done", None)),
            };
            let running = self
                .store
                .write_replay(ReplayWrite::Advance(step))
                .await
                .map_err(|e| format!("cannot record progress: {e}"))?;
            if queued_any {
                self.deliver.notify_one();
                if prepares {
                    self.prepare.notify_one();
                }
            }
            if done || running != Some(true) {
                return Ok(()); // finished, or cancelled meanwhile
            }
            cursor = found.next_cursor;
            if let Some(period) = period {
                tokio::time::sleep_until(started + period).await;
            }
        }
    }

    /// The next `limit` of the named events after `cursor` (an index into `ids`, as
    /// text); ids no longer stored are skipped.
    async fn by_id(
        &self,
        ids: &[String],
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Found, String> {
        let start: usize = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
        let end = (start + limit).min(ids.len());
        let mut events = Vec::new();
        for id in &ids[start..end] {
            if let Some(event) = self
                .store
                .get_event(id)
                .await
                .map_err(|e| format!("cannot read {id}: {e}"))?
            {
                events.push(event);
            }
        }
        Ok(Found {
            events,
            next_cursor: (end < ids.len()).then(|| end.to_string()),
            scanned: end - start,
        })
    }
}
