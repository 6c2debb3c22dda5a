//! `forebay rekey`: starts the server's rekey job (`POST /api/v1/rekey`), which moves
//! every stored body and header to the active key of `[storage] encryption` (or back to
//! plain when none is active), and follows it with a progress bar. A job already
//! running is followed instead of started again.
//!
//! Exit code 0 when the job is done; 5 when it ended with rows it could not open (left
//! as they were, and no key retired). Ctrl-C stops following; the job goes on in the
//! server.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::api::Api;
use super::connection::Connection;
use super::error::CliError;
use super::output::{self, text};

const POLL: Duration = Duration::from_millis(250);
const PATH: &str = "/api/v1/rekey";

#[derive(Debug, clap::Args)]
pub struct RekeyArgs {
    /// Print the job and return instead of following it.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn run(args: RekeyArgs) -> Result<(), CliError> {
    let api = args.connection.api()?;
    let json = args.connection.json;
    let job = match api.post(PATH, &Vec::new(), None).await {
        Ok(job) => job,
        Err(CliError::Refused { code, .. }) if code == "rekey_running" => {
            eprintln!("a rekey is already running in the server; following it");
            api.get(PATH, &Vec::new()).await?
        }
        Err(e) => return Err(e),
    };
    if args.no_wait {
        return output::print_json(&job, true);
    }
    let Some(job) = follow(&api, json, super::interrupted()).await? else {
        eprintln!("stopped following; the rekey goes on in the server (GET {PATH} shows it)");
        return Ok(());
    };
    if json {
        output::print_json(&job, true)?;
    } else {
        output::say(summary(&job))?;
    }
    match text(&job, "state") {
        "done" => Ok(()),
        _ => Err(CliError::NotDelivered(format!(
            "the rekey ended {}: {}",
            text(&job, "state"),
            text(&job, "error")
        ))),
    }
}

/// Polls the job until it ends; `None` on Ctrl-C.
async fn follow(
    api: &Api,
    json: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<Value>, CliError> {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} rekey [{bar:30}] {pos}/{len} rows  {msg} ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        let job = api.get(PATH, &Vec::new()).await?;
        bar.set_length(sum(&job, "total"));
        bar.set_position(sum(&job, "scanned"));
        bar.set_message(format!("resealed {}", sum(&job, "resealed")));
        if text(&job, "state") != "running" {
            bar.finish_and_clear();
            return Ok(Some(job));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut stop => {
                bar.finish_and_clear();
                return Ok(None);
            }
        }
    }
}

/// One figure summed over the job's tables.
fn sum(job: &Value, key: &str) -> u64 {
    job["tables"].as_array().map_or(0, |tables| {
        tables.iter().filter_map(|t| t[key].as_u64()).sum()
    })
}

fn summary(job: &Value) -> String {
    let to = match job["active_key"].as_str() {
        Some(key) => format!("key {key}"),
        None => "plain (no active key)".to_owned(),
    };
    let retired = job["retired_keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut line = format!(
        "rekey {}: {} rows looked at, {} moved to {to}",
        text(job, "state"),
        sum(job, "scanned"),
        sum(job, "resealed"),
    );
    let unreadable = sum(job, "unreadable");
    if unreadable > 0 {
        line.push_str(&format!(
            "; {unreadable} do not open and were left as they were"
        ));
    }
    if !retired.is_empty() {
        line.push_str(&format!(
            "; retired {retired} (no data is sealed with it any more: it may leave the configuration)"
        ));
    }
    line
}
