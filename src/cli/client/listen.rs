//! `forebay listen --to URL`: follows a forebay's stream of events and forwards each one
//! to a local handler, in order, one at a time, the way `replay --from` sends them.
//!
//! - **Resuming.** After each event the handler accepted, its id is saved in the state
//!   file (per server and source). The next run asks the stream for everything after it
//!   (`Last-Event-ID`), so events that arrived while listen was stopped come first. On
//!   the very first run the newest stored event is taken as the starting point (and
//!   saved at once), so listen starts with events that arrive from then on.
//! - **Server restarts.** The stream reconnects with backoff (0.5 s doubling to 30 s)
//!   and resumes after the last event forwarded.
//! - **Handler failures** (no answer, or not 2xx) are printed and the same event is sent
//!   again after 1 s, 2 s, 4 s, … (at most 30 s), `--attempts` times in all (5 by
//!   default). If it still fails, listen stops with exit code 5 and the state file still
//!   points before that event (or names it, when there was nothing before), so the next
//!   run starts with it: an event is never skipped. Ctrl-C (or SIGTERM) stops listen
//!   between sends, never in the middle of one.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::api::Api;
use super::connection::Connection;
use super::error::CliError;
use super::events::path_part;
use super::forward::{Forwarder, HandlerArgs, Outcome, Prepared, prepare};
use super::listen_state::{Resume, StateFile};
use super::output;
use super::sse::{Follower, Status};

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub handler: HandlerArgs,
    /// Only events of this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Where to remember the last event forwarded (per server and source).
    #[arg(long, value_name = "FILE", default_value = ".forebay-listen")]
    pub state: PathBuf,
    /// Tries per event before listen gives up and stops (exit 5), leaving that event to
    /// the next run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn run(args: ListenArgs) -> Result<(), CliError> {
    let api = args.connection.api()?;
    let forwarder = Forwarder::new(&args.handler, None)?;
    let key = StateFile::key(api.base(), args.source.as_deref());
    let mut state = StateFile::load(&args.state, key)?;
    // An event the handler did not take last time, when there was nothing to resume after.
    let mut first = match state.resume().cloned() {
        Some(Resume::At(id)) => Some(
            api.get(&format!("/api/v1/events/{}", path_part(&id)), &Vec::new())
                .await
                .map_err(|e| gone(e, &args.state))?,
        ),
        Some(Resume::After(_)) => None,
        None => {
            start_from_newest(&api, &mut state, args.source.as_deref()).await?;
            None
        }
    };
    let after = match state.resume() {
        Some(Resume::After(id) | Resume::At(id)) => Some(id.clone()),
        None => None,
    };
    let to = forwarder.url().to_owned();
    let mut follower = Follower::new(
        &api,
        args.source.clone(),
        after,
        move |status| match status {
            Status::Connected { url, resumed_after } => eprintln!(
                "listening to {url}, forwarding to {to}{}",
                resumed_after
                    .map(|id| format!(" (resuming after {id})"))
                    .unwrap_or_default()
            ),
            other => super::tail::report(other),
        },
    );
    let mut stop = std::pin::pin!(super::interrupted());
    loop {
        let event = match first.take() {
            Some(event) => event,
            None => tokio::select! {
                event = follower.next() => event.map_err(|e| gone(e, &args.state))?,
                _ = &mut stop => return Ok(()),
            },
        };
        let event = prepare(&event).map_err(|reason| CliError::BadAnswer {
            url: api.url("/api/v1/stream", &Vec::new()),
            reason: format!("an event that cannot be forwarded: {reason}"),
        })?;
        let mut attempt = 1;
        loop {
            let (outcome, took) = forwarder.send(&event, attempt).await;
            print(&event, attempt, &outcome, took, args.connection.json)?;
            if outcome.ok() {
                state.save(&event.id)?;
                break;
            }
            if attempt >= args.attempts {
                state.save_not_taken(&event.id)?;
                return Err(CliError::NotDelivered(format!(
                    "the handler did not take {} after {attempt} attempts (last: {}); stopping here, the next `forebay listen` starts with it",
                    event.id,
                    outcome.describe()
                )));
            }
            let wait = Duration::from_secs(1 << (attempt - 1).min(5)).min(Duration::from_secs(30));
            eprintln!("{}: trying again in {}s", event.id, wait.as_secs());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => {
                    state.save_not_taken(&event.id)?;
                    eprintln!("stopped; {} was not taken yet and is sent first next time", event.id);
                    return Ok(());
                }
            }
            attempt += 1;
        }
    }
}

/// A resume point the server no longer has (purged by retention, or another server's):
/// says how to start over.
fn gone(error: CliError, state: &std::path::Path) -> CliError {
    match error {
        CliError::Refused {
            status: 404,
            code,
            message,
        } if code == "resume_event_not_found" || code == "event_not_found" => CliError::Refused {
            status: 404,
            message: format!(
                "{message}; to start again from new events, remove this server's entry from {} (or the file)",
                state.display()
            ),
            code,
        },
        other => other,
    }
}

/// First run: start after the newest stored event, and remember that at once, so events
/// that arrive from now on are never missed, even across a reconnect.
async fn start_from_newest(
    api: &Api,
    state: &mut StateFile,
    source: Option<&str>,
) -> Result<(), CliError> {
    let query = vec![
        ("source", source.unwrap_or_default().to_owned()),
        ("limit", "1".to_owned()),
    ];
    let newest = api.get("/api/v1/events", &query).await?;
    match newest["data"][0]["id"].as_str() {
        Some(id) => state.save(id),
        None => Ok(()),
    }
}

fn print(
    event: &Prepared,
    attempt: u32,
    outcome: &Outcome,
    took: Duration,
    json: bool,
) -> Result<(), CliError> {
    if json {
        let mut line = json!({
            "event_id": event.id,
            "source": event.source,
            "attempt": attempt,
            "ok": outcome.ok(),
            "ms": took.as_millis() as u64,
        });
        match outcome {
            Outcome::Status(s, _) => line["status"] = json!(s),
            Outcome::Failed(e) => line["error"] = json!(e),
        }
        return output::print_json(&line, false);
    }
    let retry = if attempt > 1 {
        format!(", attempt {attempt}")
    } else {
        String::new()
    };
    output::say(format!(
        "{}  {}  -> {} ({} ms){retry}",
        event.id,
        event.source,
        outcome.describe(),
        took.as_millis(),
    ))
}
