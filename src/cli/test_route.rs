//! `forebay test-route`: runs a route's filter, transform and ordering key, from the
//! configuration file as it is now, on a stored event (fetched from a running server's
//! admin API) or on a payload in a file, and prints what would be delivered.
//!
//! Exit codes: 0 the route ran (delivered or filtered); 1 invalid configuration or no
//! such route; 3 the event or file cannot be read; 4 an expression failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use serde_json::{Value, json};

use crate::config::Config;
use crate::routing::Programs;
use crate::store::{EventInput, Preparation};

#[derive(Debug, clap::Args)]
pub struct TestRouteArgs {
    /// The route to run (its `name`, or `{source}-{destination}`).
    #[arg(long)]
    pub route: String,
    /// A stored event id (`evt_…`), fetched from the server's admin API.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub event: Option<String>,
    /// A file holding a request body, as the sender would post it.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A request header for `--file` (`Name: value`); may be repeated.
    #[arg(long = "header", short = 'H', requires = "file")]
    pub headers: Vec<String>,
    /// The admin API to fetch `--event` from (default: `server.admin_listen` of the
    /// configuration).
    #[arg(long, env = "FOREBAY_SERVER")]
    pub server: Option<String>,
    /// Bearer token for the admin API (default: `server.admin_token`).
    #[arg(long, env = "FOREBAY_TOKEN")]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config_path: &Path, config: &Config, args: TestRouteArgs) -> ExitCode {
    let Some(route) = config.routes.iter().find(|r| r.name == args.route) else {
        let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "{}: no route named {:?}; the routes are: {}",
            config_path.display(),
            args.route,
            if names.is_empty() {
                "(none)".to_owned()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::from(1);
    };
    let event = match (&args.event, &args.file) {
        (Some(id), _) => fetch_event(config, &args, id).await,
        (None, Some(file)) => read_file(file, &route.source, &args.headers),
        (None, None) => Err("pass --event ID or --file FILE".to_owned()),
    };
    let event = match event {
        Ok(e) => e,
        Err(message) => {
            eprintln!("forebay test-route: {message}");
            return ExitCode::from(3);
        }
    };
    let programs = Programs::new(config);
    let prepared = programs.prepare(&route.name, String::new(), &event).await;
    let webhook_id = |n: Option<usize>| match n {
        Some(n) => format!("{}.{n}", event.id),
        None => event.id.clone(),
    };
    let (outcome, deliveries, error) = match &prepared.outcome {
        Preparation::Raw => (
            "deliver",
            vec![(webhook_id(None), body_value(&event.body, true))],
            None,
        ),
        Preparation::Bodies(bodies) => (
            "deliver",
            bodies
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let n = (bodies.len() > 1).then_some(i + 1);
                    (webhook_id(n), body_value(b, true))
                })
                .collect(),
            None,
        ),
        Preparation::Filtered => ("filtered", Vec::new(), None),
        Preparation::Failed(e) => ("failed", Vec::new(), Some(e.clone())),
    };
    // When the first attempt would be due: the route's `deliver_at`, or its `delay`
    // after the event was received.
    let first_attempt_at = prepared.deliver_at_ms.or_else(|| {
        route
            .config
            .delay
            .map(|_| event.received_at_ms.saturating_add(route.delay_ms()))
    });
    let first_attempt_text = first_attempt_at.map(crate::clock::rfc3339);
    if args.json {
        let report = json!({
            "route": route.name,
            "source": route.source,
            "destination": route.destination,
            "event_id": event.id,
            "outcome": outcome,
            "ordering_key": prepared.ordering_key,
            "first_attempt_at": first_attempt_text,
            "priority": route.config.priority,
            "deliveries": deliveries.iter().map(|(id, body)| json!({"webhook_id": id, "body": body})).collect::<Vec<_>>(),
            "error": error,
        });
        println!("{report:#}");
    } else {
        println!(
            "route {} ({} -> {}), event {}",
            route.name, route.source, route.destination, event.id
        );
        if let Some(key) = &prepared.ordering_key {
            println!("ordering key: {key}");
        }
        if let Some(at) = &first_attempt_text {
            println!("first attempt at: {at}");
        }
        if route.config.priority > 0 {
            println!("priority: {}", route.config.priority);
        }
        match outcome {
            "filtered" => println!(
                "filtered: the filter did not yield true, or the transform had no output; nothing would be delivered"
            ),
            "failed" => println!(
                "failed: {}; the delivery would go to the dead-letter queue",
                error.as_deref().unwrap_or("")
            ),
            _ => {
                println!(
                    "{} delivery(ies) to {}:",
                    deliveries.len(),
                    route.destination
                );
                for (id, body) in &deliveries {
                    println!("--- webhook-id: {id}");
                    match body {
                        Value::String(s) if prepared.outcome == Preparation::Raw => println!("{s}"),
                        other => println!("{other:#}"),
                    }
                }
            }
        }
    }
    if error.is_some() {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// A body for display: JSON when it parses (and `parse` is set), else text.
fn body_value(bytes: &[u8], parse: bool) -> Value {
    if parse && let Ok(v) = serde_json::from_slice(bytes) {
        return v;
    }
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn read_file(path: &Path, source: &str, headers: &[String]) -> Result<EventInput, String> {
    let body = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut pairs = Vec::new();
    for h in headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!(
                "--header {h:?} has no `:`; write it as `Name: value`"
            ));
        };
        pairs.push((
            name.trim().to_ascii_lowercase(),
            value.trim().as_bytes().to_vec(),
        ));
    }
    if !pairs.iter().any(|(n, _)| n == "content-type") {
        // Most webhooks are JSON; a file that parses as JSON is taken as such.
        let guess = if serde_json::from_slice::<Value>(&body).is_ok() {
            "application/json"
        } else {
            "text/plain"
        };
        pairs.push(("content-type".into(), guess.as_bytes().to_vec()));
    }
    Ok(EventInput {
        id: "evt_test".into(),
        source: source.to_owned(),
        received_at_ms: crate::clock::now_ms(),
        method: "POST".into(),
        path: format!("/in/{source}"),
        query: None,
        headers: pairs,
        body,
    })
}

async fn fetch_event(
    config: &Config,
    args: &TestRouteArgs,
    id: &str,
) -> Result<EventInput, String> {
    let server = match &args.server {
        Some(s) => s.trim_end_matches('/').to_owned(),
        None => format!("http://{}", super::reachable(config.server.admin_listen)),
    };
    let token = match (&args.token, &config.server.admin_token) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(secret)) => Some(String::from_utf8_lossy(secret.expose()).into_owned()),
        (None, None) => None,
    };
    let api = super::client::api::Api::new(server, token).map_err(|e| e.to_string())?;
    let v = api
        .get(&format!("/api/v1/events/{id}"), &Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    event_from_json(&v).ok_or_else(|| format!("the answer for {id} is not an event"))
}

/// The event as the admin API shows it (headers are joined per name there).
fn event_from_json(v: &Value) -> Option<EventInput> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let body = match (v.get("body"), v.get("body_base64")) {
        (Some(Value::String(s)), _) => s.as_bytes().to_vec(),
        (_, Some(Value::String(b))) => base64::engine::general_purpose::STANDARD.decode(b).ok()?,
        _ => Vec::new(),
    };
    let received_at_ms = humantime::parse_rfc3339(&text("received_at")?)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    let headers = v
        .get("headers")?
        .as_object()?
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap_or("").as_bytes().to_vec()))
        .collect();
    Some(EventInput {
        id: text("id")?,
        source: text("source")?,
        received_at_ms,
        method: text("method")?,
        path: text("path")?,
        query: text("query"),
        headers,
        body,
    })
}
