//! Routes' expressions at work: filters, transforms and ordering keys run on each
//! delivery before it can be sent, and `jq:` and `js:` dedup keys run on each request before it
//! is stored. Every expression (jq or JavaScript) runs in the [`crate::expr::Sandbox`],
//! never on the async runtime, under a deadline and an output cap. Deliveries are
//! prepared many at a time: every filter of a batch in one round of the sandbox, then
//! every ordering key and transform of what passed in a second.
//!
//! - [`input`]: the object the expressions see.
//! - [`prepare`]: the task that prepares waiting deliveries in receive order.

pub mod deliver_at;
pub mod input;
pub mod prepare;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::config::Config;
use crate::expr::{EvalError, Expr, Limits, Sandbox};
use crate::ingest::dedup::DedupRule;
use crate::store::{EventInput, Preparation, Prepared};

/// Sandbox processes; each evaluates one expression at a time, and a batch is shared
/// among them.
const SANDBOX_PROCESSES: usize = 2;

/// Every expression of a configuration, compiled into one sandbox.
pub struct Programs {
    /// The routes' expressions.
    sandbox: Sandbox,
    /// The `jq:` and `js:` dedup keys, on the ingest path: never behind a batch of deliveries.
    dedup_sandbox: Sandbox,
    routes: HashMap<String, RoutePrograms>,
    dedup: HashMap<String, usize>,
    /// Per route, how many deliveries in a row ran past the time limit.
    timeouts: Mutex<HashMap<String, u32>>,
    /// Routes that reached their `pause_after_timeouts`, with the count, to be paused.
    runaway: Mutex<Vec<(String, u32)>>,
}

/// A route's expressions, as indexes into the sandbox's programs.
#[derive(Debug, Clone, Copy, Default)]
struct RoutePrograms {
    filter: Option<usize>,
    transform: Option<usize>,
    ordering_key: Option<usize>,
    deliver_at: Option<usize>,
    debounce_key: Option<usize>,
    /// `debounce.window` in ms, with `debounce_key`.
    debounce_window_ms: i64,
    /// `pause_after_timeouts` (0: never).
    pause_after: u32,
    /// The route has an expression to run ([`crate::config::Route::needs_preparing`]).
    prepares: bool,
}

impl Programs {
    /// Collects the expressions of `config`'s routes and `jq:` and `js:` dedup keys.
    pub fn new(config: &Config) -> Arc<Programs> {
        Self::with_limits(config, Limits::default())
    }

    pub fn with_limits(config: &Config, limits: Limits) -> Arc<Programs> {
        let mut exprs: Vec<Expr> = Vec::new();
        let mut add = |e: &Option<Expr>| {
            e.as_ref().map(|e| {
                exprs.push(e.clone());
                exprs.len() - 1
            })
        };
        let mut dedup_exprs: Vec<Expr> = Vec::new();
        let mut routes = HashMap::new();
        for route in &config.routes {
            routes.insert(
                route.name.clone(),
                RoutePrograms {
                    filter: add(&route.filter),
                    transform: add(&route.transform),
                    ordering_key: add(&route.ordering_key),
                    deliver_at: add(&route.deliver_at),
                    debounce_key: add(&route.debounce_key),
                    debounce_window_ms: route.debounce_window_ms().unwrap_or(0),
                    pause_after: route.config.pause_after_timeouts,
                    prepares: route.needs_preparing(),
                },
            );
        }
        let mut dedup = HashMap::new();
        for (name, source) in &config.sources {
            if let DedupRule::Expr(expr) = &source.dedup {
                dedup_exprs.push(expr.clone());
                dedup.insert(name.clone(), dedup_exprs.len() - 1);
            }
        }
        Arc::new(Programs {
            sandbox: Sandbox::new(exprs, limits, SANDBOX_PROCESSES),
            dedup_sandbox: Sandbox::new(dedup_exprs, limits, SANDBOX_PROCESSES),
            routes,
            dedup,
            timeouts: Mutex::new(HashMap::new()),
            runaway: Mutex::new(Vec::new()),
        })
    }

    /// The routes whose expressions ran past their time limit on `pause_after_timeouts`
    /// deliveries in a row since the last call, with that count: to be paused.
    pub fn take_runaway(&self) -> Vec<(String, u32)> {
        std::mem::take(&mut *self.runaway.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts each evaluated job's timeouts in a row per route, in receive order.
    fn count_timeouts(&self, jobs: &[(&str, String, &EventInput)], timed_out: &[Option<bool>]) {
        let mut counts = self.timeouts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut runaway = self.runaway.lock().unwrap_or_else(PoisonError::into_inner);
        for ((route, _, _), timed_out) in jobs.iter().zip(timed_out) {
            let (Some(timed_out), Some(programs)) = (timed_out, self.routes.get(*route)) else {
                continue;
            };
            let count = counts.entry((*route).to_owned()).or_insert(0);
            *count = if *timed_out { *count + 1 } else { 0 };
            if programs.pause_after > 0
                && *count >= programs.pause_after
                && !runaway.iter().any(|(r, _)| r == route)
            {
                runaway.push(((*route).to_owned(), *count));
                *count = 0;
            }
        }
    }

    /// The key a source's `jq:` or `js:` dedup rule gives `event`: the first output as text (a
    /// string as it is, anything else as JSON). `None` when the source has no such rule,
    /// or the expression gives nothing, `null`, or fails (the caller then falls back to
    /// the provider's id or the body hash: an event is never refused for its key).
    pub async fn dedup_key(&self, source: &str, event: &EventInput) -> Option<String> {
        let program = *self.dedup.get(source)?;
        match self
            .dedup_sandbox
            .run(program, input::to_value(event))
            .await
        {
            Ok(outputs) => outputs.into_iter().next().and_then(key_text),
            Err(e) => {
                // Not the message: jq quotes the values it failed on, which come from
                // the request. `forebay test-route` shows it.
                tracing::warn!(
                    source,
                    event = %event.id,
                    error = kind(&e),
                    "the dedup key expression failed; using the default key"
                );
                None
            }
        }
    }

    /// Runs `route`'s filter, transform and ordering key on `event`.
    pub async fn prepare(&self, route: &str, delivery_id: String, event: &EventInput) -> Prepared {
        let mut prepared = self.prepare_many(&[(route, delivery_id, event)]).await;
        prepared.pop().unwrap_or_else(|| Prepared {
            delivery_id: String::new(),
            event_id: event.id.clone(),
            route: route.to_owned(),
            ordering_key: None,
            deliver_at_ms: None,
            debounce_key: None,
            outcome: Preparation::Failed("nothing was prepared".into()),
        })
    }

    /// [`Programs::prepare`] for each `(route, delivery id, event)`, in order: all filters
    /// in one batch, then the ordering keys, `deliver_at`s and transforms of what passed
    /// in another.
    ///
    /// A route whose expression just ran past its time limit gets one job prepared (its
    /// oldest) per batch until one does not, and once one of its expressions runs past
    /// the limit in a batch, its later jobs there are not evaluated: those jobs are left
    /// out of the result and stay unprepared for the next batch. A route's prepared jobs
    /// are always its oldest, and a runaway expression costs about one time limit per
    /// batch, not one per delivery, until `pause_after_timeouts` pauses the route.
    pub async fn prepare_many(&self, jobs: &[(&str, String, &EventInput)]) -> Vec<Prepared> {
        let mut left_out = self.suspects_beyond_their_first(jobs);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new(); jobs.len()];
        let mut programs = vec![RoutePrograms::default(); jobs.len()];
        // For each job whose expressions ran: whether one ran past the time limit.
        let mut timed_out: Vec<Option<bool>> = vec![None; jobs.len()];
        for (i, (route, _, event)) in jobs.iter().enumerate() {
            if left_out[i] {
                continue;
            }
            match self.routes.get(*route) {
                // A route a reload took away: sending its deliveries without the filter
                // and transform they were queued for could send what the route would have
                // kept back.
                None => {
                    outcomes[i] = Some(Outcome::only(Preparation::Failed(format!(
                        "route {route:?} is no longer configured, so its filter and transform cannot run; configure it again and retry this delivery from the dead-letter queue"
                    ))));
                }
                Some(p) if !p.prepares => {
                    outcomes[i] = Some(Outcome::only(Preparation::Raw));
                }
                Some(p) => {
                    programs[i] = *p;
                    timed_out[i] = Some(false);
                    inputs[i] = serde_json::to_vec(&input::to_value(event)).unwrap_or_default();
                }
            }
        }

        // Delivered when the filter yields `true` (any of its outputs); `false`, `null`,
        // other values and no output at all filter the event out.
        let open = |outcomes: &[Option<_>], left_out: &[bool], i: usize| {
            outcomes[i].is_none() && !left_out[i]
        };
        let filters: Vec<(usize, usize)> = (0..jobs.len())
            .filter(|&i| open(&outcomes, &left_out, i))
            .filter_map(|i| programs[i].filter.map(|p| (i, p)))
            .collect();
        let results = self.run_stage(&filters, &inputs).await;
        leave_out_after_skips(jobs, &filters, &results, &mut left_out);
        for (&(i, _), result) in filters.iter().zip(results) {
            if left_out[i] {
                continue;
            }
            if matches!(result, Err(EvalError::Timeout(_))) {
                timed_out[i] = Some(true);
            }
            match result {
                Ok(outputs) if outputs.iter().any(|v| v == &Value::Bool(true)) => {}
                Ok(_) => outcomes[i] = Some(Outcome::only(Preparation::Filtered)),
                Err(e) => {
                    outcomes[i] = Some(Outcome::only(Preparation::Failed(format!("filter: {e}"))))
                }
            }
        }

        let mut second: Vec<(usize, usize)> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        for i in (0..jobs.len()).filter(|&i| open(&outcomes, &left_out, i)) {
            let p = &programs[i];
            for (program, slot) in [
                (p.ordering_key, Slot::Key),
                (p.deliver_at, Slot::DeliverAt),
                (p.debounce_key, Slot::DebounceKey),
                (p.transform, Slot::Transform),
            ] {
                if let Some(program) = program {
                    second.push((i, program));
                    slots.push(slot);
                }
            }
        }
        let results = self.run_stage(&second, &inputs).await;
        leave_out_after_skips(jobs, &second, &results, &mut left_out);
        let mut keys: Vec<Option<Result<Option<String>, String>>> = vec![None; jobs.len()];
        let mut due: Vec<Option<Result<Option<i64>, String>>> = vec![None; jobs.len()];
        let mut debounce: Vec<Option<Result<Option<String>, String>>> = vec![None; jobs.len()];
        let mut bodies: Vec<Option<Result<Preparation, String>>> = vec![None; jobs.len()];
        let now_ms = crate::clock::now_ms();
        for ((&(i, _), slot), result) in second.iter().zip(&slots).zip(results) {
            if left_out[i] {
                continue;
            }
            if matches!(result, Err(EvalError::Timeout(_))) {
                timed_out[i] = Some(true);
            }
            // A key is the first output as text; `null` or none is no key.
            let key = |result: Result<Vec<Value>, EvalError>, what: &str| {
                result
                    .map(|outputs| outputs.into_iter().next().and_then(key_text))
                    .map_err(|e| format!("{what}: {e}"))
            };
            match slot {
                Slot::Key => keys[i] = Some(key(result, "ordering_key")),
                Slot::DeliverAt => {
                    due[i] = Some(
                        result
                            .map_err(|e| e.to_string())
                            .and_then(|outputs| deliver_at::due_ms(outputs.first(), now_ms))
                            .map_err(|e| format!("deliver_at: {e}")),
                    )
                }
                Slot::DebounceKey => debounce[i] = Some(key(result, "debounce.key")),
                Slot::Transform => {
                    bodies[i] = Some(
                        result
                            .map(transformed)
                            .map_err(|e| format!("transform: {e}")),
                    )
                }
            }
        }
        for i in 0..jobs.len() {
            if outcomes[i].is_some() || left_out[i] {
                continue;
            }
            let key = keys[i].take().unwrap_or(Ok(None));
            let at = due[i].take().unwrap_or(Ok(None));
            let debounce_key = debounce[i].take().unwrap_or(Ok(None));
            let body = bodies[i].take().unwrap_or(Ok(Preparation::Raw));
            outcomes[i] = Some(match (key, at, debounce_key, body) {
                (Ok(ordering_key), Ok(deliver_at_ms), Ok(debounce_key), Ok(preparation)) => {
                    // A debounced delivery waits out its window from its event's
                    // arrival, for a later one with its key.
                    let deliver_at_ms = match &debounce_key {
                        Some(_) => Some(
                            jobs[i]
                                .2
                                .received_at_ms
                                .saturating_add(programs[i].debounce_window_ms),
                        ),
                        None => deliver_at_ms,
                    };
                    Outcome {
                        ordering_key,
                        deliver_at_ms,
                        debounce_key,
                        preparation,
                    }
                }
                (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
                    Outcome::only(Preparation::Failed(e))
                }
            });
        }

        for (i, left) in left_out.iter().enumerate() {
            if *left {
                timed_out[i] = None;
            }
        }
        self.count_timeouts(jobs, &timed_out);
        jobs.iter()
            .zip(outcomes)
            .zip(left_out)
            .filter(|(_, left)| !left)
            .map(|(((route, delivery_id, event), outcome), _)| {
                let outcome = outcome
                    .unwrap_or_else(|| Outcome::only(Preparation::Failed("not prepared".into())));
                Prepared {
                    delivery_id: delivery_id.clone(),
                    event_id: event.id.clone(),
                    route: (*route).to_owned(),
                    ordering_key: outcome.ordering_key,
                    deliver_at_ms: outcome.deliver_at_ms,
                    debounce_key: outcome.debounce_key,
                    outcome: outcome.preparation,
                }
            })
            .collect()
    }

    /// Which jobs to leave for a later batch: all but the first of a route whose last
    /// evaluation ran past its time limit.
    fn suspects_beyond_their_first(&self, jobs: &[(&str, String, &EventInput)]) -> Vec<bool> {
        let counts = self.timeouts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashSet::new();
        jobs.iter()
            .map(|(route, _, _)| counts.get(*route).is_some_and(|n| *n > 0) && !seen.insert(*route))
            .collect()
    }

    /// Runs each `(job, program)` on that job's input, in one batch; a program that runs
    /// past its time limit is not run again in it.
    async fn run_stage(
        &self,
        stage: &[(usize, usize)],
        inputs: &[Vec<u8>],
    ) -> Vec<Result<Vec<Value>, EvalError>> {
        if stage.is_empty() {
            return Vec::new();
        }
        let items: Vec<(usize, &[u8])> = stage
            .iter()
            .map(|&(i, program)| (program, inputs[i].as_slice()))
            .collect();
        self.sandbox.run_many_until_timeout(&items).await
    }
}

/// Which of a route's expressions a second-round evaluation was.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Key,
    DeliverAt,
    DebounceKey,
    Transform,
}

/// What preparing one delivery came to.
#[derive(Debug, Clone)]
struct Outcome {
    ordering_key: Option<String>,
    deliver_at_ms: Option<i64>,
    debounce_key: Option<String>,
    preparation: Preparation,
}

impl Outcome {
    /// An outcome with no key and no due time: filtered out, failed, or sent as is.
    fn only(preparation: Preparation) -> Self {
        Outcome {
            ordering_key: None,
            deliver_at_ms: None,
            debounce_key: None,
            preparation,
        }
    }
}

/// Marks as left out every job of a route from its first evaluation that was skipped on,
/// so that what a route has prepared stays its oldest.
fn leave_out_after_skips(
    jobs: &[(&str, String, &EventInput)],
    stage: &[(usize, usize)],
    results: &[Result<Vec<Value>, EvalError>],
    left_out: &mut [bool],
) {
    let mut from: HashMap<&str, usize> = HashMap::new();
    for (&(i, _), result) in stage.iter().zip(results) {
        if matches!(result, Err(EvalError::Skipped)) {
            let first = from.entry(jobs[i].0).or_insert(i);
            *first = (*first).min(i);
        }
    }
    for (j, (route, _, _)) in jobs.iter().enumerate() {
        if from.get(route).is_some_and(|first| j >= *first) {
            left_out[j] = true;
        }
    }
}

/// A transform's outputs as the bodies to deliver: none filters the event out.
fn transformed(outputs: Vec<Value>) -> Preparation {
    if outputs.is_empty() {
        Preparation::Filtered
    } else {
        Preparation::Bodies(
            outputs
                .iter()
                .map(|v| serde_json::to_vec(v).unwrap_or_default())
                .collect(),
        )
    }
}

/// A key as text: strings as they are, `null` as no key, anything else as JSON.
fn key_text(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// What went wrong, without the expression's own message (which quotes request data).
pub fn kind(e: &EvalError) -> &'static str {
    match e {
        EvalError::Failed(_) => "the expression raised an error",
        EvalError::Timeout(_) => "the expression ran past its time limit",
        EvalError::TooManyOutputs(_) => "the expression produced too many outputs",
        EvalError::Crashed(_) => "the expression crashed the evaluator",
        EvalError::Unavailable(_) => "the expression sandbox could not start",
        EvalError::Skipped => "the expression ran past its time limit just before",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delivery_of_a_route_no_longer_configured_goes_dead_with_the_reason() {
        let config = Config::parse(
            "[sources.shop]\n[destinations.hook]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\
             [[routes]]\nname = \"paid\"\nsource = \"shop\"\ndestination = \"hook\"\n\
             filter = '.body.paid'\n",
            std::iter::empty::<(&str, &str)>(),
        )
        .expect("valid");
        let event = EventInput {
            id: "evt_1".into(),
            source: "shop".into(),
            received_at_ms: 0,
            method: "POST".into(),
            path: "/in/shop".into(),
            query: None,
            headers: Vec::new(),
            body: br#"{"paid":false}"#.to_vec(),
        };
        // The route was taken away by a reload: not sent unfiltered.
        let prepared = Programs::new(&config)
            .prepare("unpaid-too", "dlv_1".into(), &event)
            .await;
        match prepared.outcome {
            Preparation::Failed(reason) => assert!(
                reason.contains("route \"unpaid-too\" is no longer configured"),
                "{reason}"
            ),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
