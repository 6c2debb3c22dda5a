//! `forebay replay`: replays stored events through their routes (or to one destination)
//! as a job in the server (`POST /api/v1/replays`), following it with a progress bar; or,
//! with `--from FILE --to URL`, replays an export against a handler with no server
//! (`replay_file.rs`).
//!
//! The job is followed until its queuing is over and none of its deliveries is still
//! pending or being sent (deliveries held by a paused destination or an open breaker
//! keep it waiting; the bar shows them as `waiting`). Exit code 0 when the job is `done`
//! and every delivery was delivered (or filtered); 5 when the job failed or was
//! cancelled, or some deliveries are dead or waiting for a retry.
//!
//! Ctrl-C while the job is still queuing asks whether to cancel it (on a terminal;
//! otherwise it cancels, saying so): cancelling stops the queuing and discards the
//! deliveries not yet sent (exit 5); not cancelling leaves the job running in the server
//! (exit 0). Ctrl-C once everything is queued stops following (exit 0): the deliveries go
//! on in the server. `--no-wait` prints the job and returns at once.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use super::api::Api;
use super::connection::Connection;
use super::error::CliError;
use super::events::path_part;
use super::filters::EventFilter;
use super::forward::HandlerArgs;
use super::output::{self, text};
use super::prompt;
use crate::config::Rate;

const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filter: EventFilter,
    /// Replay this event (`evt_…`); may be repeated.
    #[arg(
        long = "event",
        value_name = "ID",
        conflicts_with_all = ["source", "since", "until", "status", "dedup_key", "query"]
    )]
    pub events: Vec<String>,
    /// Replay every stored event.
    #[arg(long)]
    pub all: bool,
    /// Send only to this destination instead of through the events' routes.
    #[arg(long)]
    pub destination: Option<String>,
    /// At most this many events per second, minute or hour: `50/s`, `600/m`, `1000/h`.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<Rate>,
    /// Start without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the job and return instead of following it.
    #[arg(long)]
    pub no_wait: bool,
    /// Replay the events of an export file (from `forebay export`; `-` for stdin), or of
    /// the cold archive at a URL (`s3://BUCKET/PREFIX`, `file:///DIR`; keys and settings
    /// from --config), against --to, with no server.
    #[arg(
        long,
        value_name = "FILE|URL",
        requires = "to",
        conflicts_with_all = ["source", "since", "until", "status", "dedup_key", "query", "events", "all", "destination", "no_wait"]
    )]
    pub from: Option<PathBuf>,
    /// With --from: the handler's URL.
    #[arg(long, value_name = "URL", requires = "from")]
    pub to: Option<String>,
    /// With --from: an extra request header (`Name: value`), overriding the event's; may
    /// be repeated.
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        requires = "from"
    )]
    pub headers: Vec<String>,
    /// With --from: how many events may be in flight at once [default: 1, in file order].
    #[arg(long, requires = "from", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: Option<u64>,
    /// With --from: how long the handler may take to answer [default: 30s].
    #[arg(long, requires = "from", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub connection: Connection,
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    text.parse()
}

pub async fn run(args: ReplayArgs) -> Result<(), CliError> {
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        return super::replay_file::run(super::replay_file::FileReplay {
            from,
            config: args.connection.config.as_deref(),
            handler: HandlerArgs {
                to: to.clone(),
                headers: args.headers.clone(),
                timeout: args.timeout.unwrap_or(Duration::from_secs(30)),
            },
            rate: args.rate,
            concurrency: args.concurrency.unwrap_or(1) as usize,
            json: args.connection.json,
        })
        .await;
    }
    if !args.filter.is_set() && args.events.is_empty() && !args.all {
        return Err(CliError::Usage(
            "say which events to replay: filters (--source, --since, --until, --status, --dedup-key, --where), --event ID, or --all for every stored event; or --from FILE --to URL to replay an export".to_owned(),
        ));
    }
    let api = args.connection.api()?;
    let what = describe(&args);
    if !args.yes {
        if !prompt::interactive() {
            return Err(CliError::Usage(format!(
                "this sends {what} again; pass --yes to start it without a prompt"
            )));
        }
        if !prompt::confirm(&format!("Send {what} again?")) {
            return Err(CliError::Usage("not started".to_owned()));
        }
    }
    let job = api
        .post("/api/v1/replays", &Vec::new(), Some(&body(&args)))
        .await?;
    let id = text(&job, "id").to_owned();
    if args.no_wait {
        return if args.connection.json {
            output::print_json(&job, true)
        } else {
            output::say(&id)
        };
    }
    let stop = super::interrupted();
    if !args.connection.json {
        eprintln!("replay {id} started: {what}; Ctrl-C to cancel it");
    }
    let followed = follow(&api, &id, args.connection.json, stop).await?;
    finish(followed, args.connection.json)
}

/// The request body: the filters, event ids, `all`, destination and rate.
fn body(args: &ReplayArgs) -> Value {
    let mut body: Map<String, Value> = args.filter.json();
    if !args.events.is_empty() {
        body.insert("event_ids".into(), json!(args.events));
    }
    if args.all {
        body.insert("all".into(), json!(true));
    }
    if let Some(d) = &args.destination {
        body.insert("destination".into(), json!(d));
    }
    if let Some(rate) = &args.rate {
        body.insert("rate".into(), json!(rate.to_string()));
    }
    Value::Object(body)
}

fn describe(args: &ReplayArgs) -> String {
    let mut what = if args.all && !args.filter.is_set() {
        "every stored event".to_owned()
    } else {
        let mut parts = Vec::new();
        if args.filter.is_set() {
            parts.push(args.filter.describe());
        }
        if !args.events.is_empty() {
            parts.push(args.events.join(", "));
        }
        format!("the events matching {}", parts.join("; "))
    };
    match &args.destination {
        Some(d) => what.push_str(&format!(" to destination {d}")),
        None => what.push_str(" through their routes"),
    }
    if let Some(rate) = &args.rate {
        what.push_str(&format!(" at {rate}"));
    }
    what
}

/// Counts of the job's deliveries in these states.
fn count(job: &Value, states: &[&str]) -> u64 {
    states
        .iter()
        .filter_map(|s| job["deliveries"].get(*s).and_then(Value::as_u64))
        .sum()
}

fn number(job: &Value, key: &str) -> u64 {
    job.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The job is over and none of its deliveries is waiting to be sent or being sent.
fn settled(job: &Value) -> bool {
    text(job, "state") != "running" && count(job, &["pending", "in_flight"]) == 0
}

/// How following a job ended.
enum Followed {
    /// Queuing is over and no delivery is waiting.
    Settled(Value),
    /// Ctrl-C, and the job was cancelled.
    Cancelled(Value),
    /// Ctrl-C, and the job goes on in the server (the person said so, or it had queued
    /// everything already); `asked_to_cancel` when a cancel came too late.
    Left { job: Value, asked_to_cancel: bool },
}

/// Polls the job until it settles; Ctrl-C offers to cancel it.
async fn follow(
    api: &Api,
    id: &str,
    json: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Followed, CliError> {
    let path = format!("/api/v1/replays/{}", path_part(id));
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} sent  {msg} ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(id.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        let job = api.get(&path, &Vec::new()).await?;
        let sent = count(
            &job,
            &[
                "delivered",
                "filtered",
                "dead",
                "retrying",
                "discarded",
                "superseded",
            ],
        );
        bar.set_length(
            number(&job, "matched")
                .max(number(&job, "queued"))
                .max(sent),
        );
        bar.set_position(sent);
        bar.set_message(format!(
            "scanned {}, matched {}, queued {}; delivered {}, failing {}, waiting {}",
            number(&job, "scanned"),
            number(&job, "matched"),
            number(&job, "queued"),
            count(&job, &["delivered"]),
            count(&job, &["dead", "retrying"]),
            count(&job, &["pending", "in_flight"]),
        ));
        if settled(&job) {
            bar.finish_and_clear();
            return Ok(Followed::Settled(job));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => continue,
            _ = &mut stop => {}
        }
        if text(&job, "state") != "running" {
            // Everything is queued: cancelling would not take anything back.
            bar.finish_and_clear();
            return Ok(Followed::Left {
                job,
                asked_to_cancel: false,
            });
        }
        // Ctrl-C while queuing: cancel, after asking when someone can answer.
        let cancel = if prompt::interactive() {
            bar.suspend(|| {
                prompt::confirm(&format!(
                    "\nCancel replay {id}? It stops queuing and its deliveries not yet sent are discarded (no: it goes on in the server)."
                ))
            })
        } else {
            eprintln!(
                "interrupted: cancelling replay {id}; its deliveries not yet sent are discarded (use --no-wait to leave a replay running)"
            );
            true
        };
        bar.finish_and_clear();
        if !cancel {
            let job = api.get(&path, &Vec::new()).await?;
            return Ok(Followed::Left {
                job,
                asked_to_cancel: false,
            });
        }
        let job = api
            .post(&format!("{path}/cancel"), &Vec::new(), None)
            .await?;
        return Ok(if text(&job, "state") == "cancelled" {
            Followed::Cancelled(job)
        } else {
            Followed::Left {
                job,
                asked_to_cancel: true,
            }
        });
    }
}

/// Prints how the job ended and picks the exit code.
fn finish(followed: Followed, json: bool) -> Result<(), CliError> {
    let job = match &followed {
        Followed::Settled(job) | Followed::Cancelled(job) | Followed::Left { job, .. } => job,
    };
    let id = text(job, "id");
    let state = text(job, "state");
    if json {
        output::print_json(job, true)?;
    } else {
        let counts = job["deliveries"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no deliveries".to_owned());
        output::say(format!(
            "replay {id} {state}: matched {}, queued {}; {counts}",
            number(job, "matched"),
            number(job, "queued"),
        ))?;
    }
    let waiting = count(job, &["pending", "in_flight"]);
    let failing = count(job, &["dead", "retrying", "discarded"]);
    match followed {
        Followed::Left {
            asked_to_cancel: false,
            ..
        } => {
            eprintln!(
                "replay {id} goes on in the server ({waiting} deliveries waiting); see `forebay deliveries list` or GET /api/v1/replays/{id}"
            );
            Ok(())
        }
        Followed::Left { .. } => Err(CliError::NotDelivered(format!(
            "replay {id} had queued everything before it could be cancelled; its {waiting} waiting deliveries go on in the server"
        ))),
        Followed::Cancelled(_) => Err(CliError::NotDelivered(format!(
            "replay {id} cancelled; deliveries not yet sent were discarded"
        ))),
        Followed::Settled(_) => match state {
            "done" if failing == 0 => Ok(()),
            "done" => Err(CliError::NotDelivered(format!(
                "replay {id}: {failing} deliveries were not delivered (see `forebay deliveries list --state dead` and `--state retrying`)"
            ))),
            "failed" => Err(CliError::NotDelivered(format!(
                "replay {id} failed: {}",
                output::field(job, "error")
            ))),
            other => Err(CliError::NotDelivered(format!("replay {id} {other}"))),
        },
    }
}
