//! Routes' expressions at work: filters, transforms and ordering keys run on each
//! delivery before it can be sent, and `jq:` dedup keys run on each request before it
//! is stored. Every expression runs in the [`crate::jq::Sandbox`], never on the async
//! runtime, under a deadline and an output cap.
//!
//! - [`input`]: the object the expressions see.
//! - [`prepare`]: the task that prepares waiting deliveries in receive order.

pub mod input;
pub mod prepare;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::Config;
use crate::ingest::dedup::DedupRule;
use crate::jq::{EvalError, Expr, Limits, Sandbox};
use crate::store::{EventInput, Preparation, Prepared};

/// Sandbox processes; each evaluates one expression at a time.
const SANDBOX_PROCESSES: usize = 2;

/// Every expression of a configuration, compiled into one sandbox.
pub struct Programs {
    sandbox: Sandbox,
    routes: HashMap<String, RoutePrograms>,
    dedup: HashMap<String, usize>,
}

/// A route's expressions, as indexes into the sandbox's programs.
#[derive(Debug, Clone, Copy, Default)]
struct RoutePrograms {
    filter: Option<usize>,
    transform: Option<usize>,
    ordering_key: Option<usize>,
}

impl Programs {
    /// Collects the expressions of `config`'s routes and `jq:` dedup keys.
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
        let mut routes = HashMap::new();
        for route in &config.routes {
            routes.insert(
                route.name.clone(),
                RoutePrograms {
                    filter: add(&route.filter),
                    transform: add(&route.transform),
                    ordering_key: add(&route.ordering_key),
                },
            );
        }
        let mut dedup = HashMap::new();
        for (name, source) in &config.sources {
            if let DedupRule::Jq(expr) = &source.dedup
                && let Some(i) = add(&Some(expr.clone()))
            {
                dedup.insert(name.clone(), i);
            }
        }
        Arc::new(Programs {
            sandbox: Sandbox::new(exprs, limits, SANDBOX_PROCESSES),
            routes,
            dedup,
        })
    }

    /// The key a source's `jq:` dedup rule gives `event`: the first output as text (a
    /// string as it is, anything else as JSON). `None` when the source has no such rule,
    /// or the expression gives nothing, `null`, or fails (the caller then falls back to
    /// the provider's id or the body hash: an event is never refused for its key).
    pub async fn dedup_key(&self, source: &str, event: &EventInput) -> Option<String> {
        let program = *self.dedup.get(source)?;
        match self.sandbox.run(program, input::to_value(event)).await {
            Ok(outputs) => outputs.into_iter().next().and_then(key_text),
            Err(e) => {
                // Not the message: jq quotes the values it failed on, which come from
                // the request. `forebay test-route` shows it.
                tracing::warn!(
                    source,
                    event = %event.id,
                    error = kind(&e),
                    "the jq dedup key failed; using the default key"
                );
                None
            }
        }
    }

    /// Runs `route`'s filter, transform and ordering key on `event`.
    pub async fn prepare(&self, route: &str, delivery_id: String, event: &EventInput) -> Prepared {
        // A route a reload took away: sending its deliveries without the filter and
        // transform they were queued for could send what the route would have kept back.
        let Some(&programs) = self.routes.get(route) else {
            return Prepared {
                delivery_id,
                event_id: event.id.clone(),
                route: route.to_owned(),
                ordering_key: None,
                outcome: Preparation::Failed(format!(
                    "route {route:?} is no longer configured, so its filter and transform cannot run; configure it again and retry this delivery from the dead-letter queue"
                )),
            };
        };
        let (ordering_key, outcome) = match self.evaluate(programs, event).await {
            Ok(done) => done,
            Err(e) => (None, Preparation::Failed(e)),
        };
        Prepared {
            delivery_id,
            event_id: event.id.clone(),
            route: route.to_owned(),
            ordering_key,
            outcome,
        }
    }

    async fn evaluate(
        &self,
        programs: RoutePrograms,
        event: &EventInput,
    ) -> Result<(Option<String>, Preparation), String> {
        let input = input::to_value(event);
        let run = |program: usize, stage: &'static str| {
            let input = input.clone();
            async move {
                self.sandbox
                    .run(program, input)
                    .await
                    .map_err(|e: EvalError| format!("{stage}: {e}"))
            }
        };
        if let Some(filter) = programs.filter {
            // Delivered when the filter yields `true` (any of its outputs); `false`,
            // `null`, other values and no output at all filter the event out.
            let outputs = run(filter, "filter").await?;
            if !outputs.iter().any(|v| v == &Value::Bool(true)) {
                return Ok((None, Preparation::Filtered));
            }
        }
        let ordering_key = match programs.ordering_key {
            None => None,
            Some(program) => run(program, "ordering_key")
                .await?
                .into_iter()
                .next()
                .and_then(key_text),
        };
        let outcome = match programs.transform {
            None => Preparation::Raw,
            Some(transform) => {
                let outputs = run(transform, "transform").await?;
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
        };
        Ok((ordering_key, outcome))
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
        EvalError::Unavailable(_) => "the jq evaluator could not start",
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
