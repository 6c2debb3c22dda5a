//! `exec` destinations: run a command (no shell) with the payload on stdin and the
//! delivery's metadata in `FOREBAY_*` variables; exit code 0 is success; killed at the
//! timeout; output captured (4 KiB).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::outcome::{Sent, capture};
use crate::config::model::ExecDestination;
use crate::store::ClaimedDelivery;

#[derive(Debug, Clone)]
pub struct ExecTarget {
    command: String,
    args: Vec<String>,
    timeout: Duration,
}

impl ExecTarget {
    pub fn new(cfg: &ExecDestination) -> Self {
        Self {
            command: cfg.command.clone(),
            args: cfg.args.clone(),
            timeout: cfg.timeout.0,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn send(&self, d: &ClaimedDelivery) -> Sent {
        let content_type = d.content_type().unwrap_or_default();
        let mut command = Command::new(&self.command);
        for name in crate::service_manager::ENVIRONMENT {
            command.env_remove(name);
        }
        let spawned = command
            .args(&self.args)
            .env("FOREBAY_EVENT_ID", &d.event_id)
            .env("FOREBAY_WEBHOOK_ID", d.webhook_id())
            .env("FOREBAY_REPLAY", d.replay_id.as_deref().unwrap_or(""))
            .env("FOREBAY_DELIVERY_ID", &d.id)
            .env("FOREBAY_SOURCE", &d.source)
            .env("FOREBAY_ROUTE", &d.route)
            .env("FOREBAY_ATTEMPT", d.attempt.to_string())
            .env("FOREBAY_CONTENT_TYPE", content_type)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                return Sent {
                    error: Some(format!("cannot start {:?}: {e}", self.command)),
                    ..Sent::default()
                };
            }
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let body = d.outgoing_body().to_vec();
        let run = async move {
            // A command that does not read its stdin must not block the run.
            let feed = async move {
                if let Some(mut stdin) = stdin {
                    let _ = stdin.write_all(&body).await;
                }
            };
            let (_, out, err, status) =
                tokio::join!(feed, drain(stdout), drain(stderr), child.wait());
            (out, err, status)
        };
        match tokio::time::timeout(self.timeout, run).await {
            // Dropping the future drops the child, which kill_on_drop kills.
            Err(_) => Sent {
                error: Some(format!(
                    "killed after the {}s timeout",
                    self.timeout.as_secs_f64()
                )),
                ..Sent::default()
            },
            Ok((out, err, Err(e))) => Sent {
                error: Some(format!("cannot wait for {:?}: {e}", self.command)),
                response_body: joined(out, err),
                ..Sent::default()
            },
            Ok((out, err, Ok(status))) => {
                let code = status.code();
                Sent {
                    ok: status.success(),
                    status: code.and_then(|c| u16::try_from(c).ok()),
                    error: (!status.success()).then(|| match code {
                        Some(c) => format!("exited with code {c}"),
                        None => "killed by a signal".to_owned(),
                    }),
                    retry_after: None,
                    response_headers: Vec::new(),
                    response_body: joined(out, err),
                }
            }
        }
    }
}

/// Reads a pipe to its end (so the child never blocks on a full pipe), keeping the start.
async fn drain<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        capture(&mut kept, &buf[..n]);
    }
    kept
}

fn joined(mut out: Vec<u8>, err: Vec<u8>) -> Vec<u8> {
    capture(&mut out, &err);
    out
}
