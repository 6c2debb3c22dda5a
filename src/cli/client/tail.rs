//! `forebay events tail`: prints new events as they arrive, one line each (or one JSON
//! object per line with `--json`), until Ctrl-C; rides out server restarts.

use serde_json::Value;

use super::connection::Connection;
use super::error::CliError;
use super::output::{self, field};
use super::sse::{Follower, Status};

pub async fn run(connection: &Connection, source: Option<String>) -> Result<(), CliError> {
    let api = connection.api()?;
    let mut follower = Follower::new(&api, source, None, report);
    let mut stop = std::pin::pin!(super::interrupted());
    loop {
        let event = tokio::select! {
            event = follower.next() => event?,
            _ = &mut stop => return Ok(()),
        };
        if connection.json {
            output::print_json(&event, false)?;
        } else {
            output::say(line(&event))?;
        }
    }
}

/// Connection news for people, on stderr (stdout carries only events).
pub fn report(status: Status<'_>) {
    match status {
        Status::Connected {
            url,
            resumed_after: Some(id),
        } => eprintln!("connected to {url}, resuming after {id}"),
        Status::Connected { url, .. } => eprintln!("connected to {url}; waiting for events"),
        Status::Lost { error, retry_in } => {
            eprintln!("{error}; trying again in {:.1}s", retry_in.as_secs_f32())
        }
    }
}

fn line(e: &Value) -> String {
    let query = match e.get("query").and_then(Value::as_str) {
        Some(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    };
    format!(
        "{}  {}  {}  {} {}{query}  {}",
        field(e, "received_at"),
        field(e, "id"),
        field(e, "source"),
        field(e, "method"),
        field(e, "path"),
        output::size(e.get("body_size").and_then(Value::as_u64).unwrap_or(0)),
    )
}
