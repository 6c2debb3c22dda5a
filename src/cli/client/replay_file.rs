//! `forebay replay --from FILE --to URL`: sends every event of an export (NDJSON, as
//! `forebay export` writes it) to a handler, no server needed. The file is read as it
//! goes, never whole; each event goes out with its own method, its body byte for byte,
//! and its headers (see `forward.rs`), plus `Forebay-Replay: file`.
//!
//! At the end a summary counts the answers by class (2xx, 4xx, 5xx, no answer) and lists
//! the events that failed. Exit code 0 only when every event got a 2xx; 5 when any did
//! not (or a line was not an event, or Ctrl-C stopped it); 3 when the file cannot be read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::task::JoinSet;

use super::error::CliError;
use super::forward::{Forwarder, HandlerArgs, Outcome, prepare};
use super::output;
use crate::config::Rate;

/// Longest line read (an event with a large body, base64-encoded).
const MAX_LINE: u64 = 256 << 20;
/// Failures listed by name at the end (all are counted).
const LISTED: usize = 20;

pub struct FileReplay<'a> {
    /// A file, `-` for stdin, or an archive's URL (see `archived.rs`).
    pub from: &'a Path,
    /// For an archive: the configuration with its keys and settings (`--config`).
    pub config: Option<&'a Path>,
    pub handler: HandlerArgs,
    pub rate: Option<Rate>,
    pub concurrency: usize,
    pub json: bool,
}

#[derive(Default)]
struct Tally {
    /// Lines that were not blank.
    events: u64,
    sent: u64,
    by_class: BTreeMap<String, u64>,
    /// (event id or line, what happened)
    failed: Vec<(String, String)>,
    failed_count: u64,
}

impl Tally {
    fn record(&mut self, id: String, outcome: &Outcome) {
        self.sent += 1;
        *self.by_class.entry(outcome.class()).or_default() += 1;
        if !outcome.ok() {
            self.fail(id, outcome.describe());
        }
    }

    fn fail(&mut self, what: String, why: String) {
        self.failed_count += 1;
        if self.failed.len() < 1000 {
            self.failed.push((what, why));
        }
    }
}

pub async fn run(job: FileReplay<'_>) -> Result<(), CliError> {
    let forwarder = Arc::new(Forwarder::new(&job.handler, Some("file"))?);
    let read_error = |e| CliError::io(format!("cannot read {}", job.from.display()), e);
    // For an archive: the task reading its objects, whose error ends the replay.
    let mut archive_reader = None;
    let (input, total): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) =
        if job.from == Path::new("-") {
            (Box::new(tokio::io::stdin()), None)
        } else if let Some(url) = job
            .from
            .to_str()
            .filter(|f| super::archived::is_archive_url(f))
        {
            let (lines, reading) = super::archived::Archived::open(url, job.config)?.reader();
            archive_reader = Some(reading);
            (Box::new(lines), None)
        } else {
            let total = count_lines(job.from).await.map_err(read_error)?;
            let file = tokio::fs::File::open(job.from).await.map_err(read_error)?;
            (Box::new(file), Some(total))
        };
    let bar = progress(total, job.json);
    let mut reader = BufReader::new(input);
    let interval = job.rate.map(|r| r.per / r.count);
    let mut next_start = tokio::time::Instant::now();
    let mut running: JoinSet<(String, Outcome)> = JoinSet::new();
    let mut tally = Tally::default();
    let mut stop = std::pin::pin!(super::interrupted());
    let mut interrupted = false;
    let mut line_no: u64 = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
            .map_err(read_error)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if n as u64 == MAX_LINE && line.last() != Some(&b'\n') {
            return Err(CliError::Usage(format!(
                "{} line {line_no} is longer than {} MiB; is it an export from `forebay export`?",
                job.from.display(),
                MAX_LINE >> 20
            )));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            bar.inc(1);
            continue;
        }
        tally.events += 1;
        let event = match serde_json::from_slice::<Value>(&line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| prepare(&v))
        {
            Ok(event) => event,
            Err(why) => {
                bar.inc(1);
                tally.fail(format!("line {line_no}"), why);
                continue;
            }
        };
        // Room for one more send, then its start time under the rate.
        while running.len() >= job.concurrency {
            if let Some(Ok((id, outcome))) = running.join_next().await {
                bar.inc(1);
                tally.record(id, &outcome);
                bar.set_message(summary_line(&tally));
            }
        }
        if let Some(interval) = interval {
            tokio::select! {
                _ = tokio::time::sleep_until(next_start) => {}
                _ = &mut stop => { interrupted = true; break; }
            }
            next_start = next_start.max(tokio::time::Instant::now()) + interval;
        } else {
            // Ctrl-C, if it came (without waiting for it).
            tokio::select! {
                biased;
                _ = &mut stop => { interrupted = true; break; }
                _ = std::future::ready(()) => {}
            }
        }
        let forwarder = forwarder.clone();
        running.spawn(async move {
            let (outcome, _) = forwarder.send(&event, 1).await;
            (event.id, outcome)
        });
    }
    while let Some(done) = running.join_next().await {
        if let Ok((id, outcome)) = done {
            bar.inc(1);
            tally.record(id, &outcome);
            bar.set_message(summary_line(&tally));
        }
    }
    bar.finish_and_clear();
    report(&job, &tally, interrupted)?;
    if let Some(reading) = archive_reader {
        match reading.await {
            Ok(Ok(())) => {}
            // The events sent so far are in the report above.
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(CliError::Usage(format!("reading the archive stopped: {e}")));
            }
        }
    }
    if interrupted {
        return Err(CliError::NotDelivered(format!(
            "stopped by Ctrl-C at line {line_no} of {}; the events from there on were not sent",
            total.map_or("?".to_owned(), |t| t.to_string())
        )));
    }
    if tally.failed_count > 0 {
        return Err(CliError::NotDelivered(format!(
            "{} of {} events were not delivered (no 2xx)",
            tally.failed_count, tally.events
        )));
    }
    Ok(())
}

fn summary_line(t: &Tally) -> String {
    t.by_class
        .iter()
        .map(|(class, n)| format!("{class}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn progress(total: Option<u64>, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    let template = if total.is_some() {
        "{spinner} [{bar:30}] {pos}/{len} events  {msg}  ({per_sec}, {eta} left)"
    } else {
        "{spinner} {pos} events  {msg}  ({per_sec})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn report(job: &FileReplay<'_>, t: &Tally, interrupted: bool) -> Result<(), CliError> {
    if job.json {
        let failed: Vec<Value> = t
            .failed
            .iter()
            .map(|(what, why)| json!({"event": what, "error": why}))
            .collect();
        return output::print_json(
            &json!({
                "to": job.handler.to,
                "sent": t.sent,
                "by_class": t.by_class,
                "failed_count": t.failed_count,
                "failed": failed,
                "interrupted": interrupted,
            }),
            true,
        );
    }
    let classes = if t.by_class.is_empty() {
        "nothing sent".to_owned()
    } else {
        summary_line(t)
    };
    output::say(format!(
        "sent {} events to {}: {classes}",
        t.sent, job.handler.to
    ))?;
    for (what, why) in t.failed.iter().take(LISTED) {
        output::say(format!("  failed {what}: {why}"))?;
    }
    if t.failed_count > LISTED as u64 {
        output::say(format!(
            "  … and {} more (--json lists up to 1000)",
            t.failed_count - LISTED as u64
        ))?;
    }
    Ok(())
}

/// Lines in the file (for the progress bar's length), counted as it streams by.
async fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 256 << 10];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}
