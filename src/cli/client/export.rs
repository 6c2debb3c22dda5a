//! `forebay export`: `GET /api/v1/export` (NDJSON, oldest first, one full event per line)
//! streamed to stdout or a file as it arrives, never held in memory. A file is written
//! under a temporary name and renamed at the end, so a cut export never looks complete.
//! The server reports an error after the first line as a last line `{"error": …}`: that
//! line is not written, and the export fails with its message.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::connection::Connection;
use super::error::CliError;
use super::filters::EventFilter;

/// How an error line starts (an event line starts with `{"id"`).
const ERROR_START: &[u8] = b"{\"error\"";
/// Most of an error line kept.
const MAX_ERROR_LINE: usize = 64 << 10;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filter: EventFilter,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Read the cold archive at this URL (`s3://BUCKET/PREFIX` or `file:///DIR`, as in
    /// `[storage.archive] to`) instead of asking a server; the keys of sealed objects,
    /// and the S3 settings of the configured archive, come from --config.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn run(args: ExportArgs) -> Result<(), CliError> {
    if let Some(from) = &args.from {
        return from_archive(&args, from).await;
    }
    let api = args.connection.api()?;
    let (response, url) = api
        .open("/api/v1/export", &args.filter.query(), &[])
        .await?;
    write_out(args.output.as_deref(), async |sink, write_error| {
        copy(response, &url, sink, write_error).await
    })
    .await
}

/// `--from URL`: every archived event, in receive order.
async fn from_archive(args: &ExportArgs, from: &str) -> Result<(), CliError> {
    if !super::archived::is_archive_url(from) {
        return Err(CliError::Usage(format!(
            "--from {from:?} is not an archive; write s3://BUCKET/PREFIX or file:///DIR, as in [storage.archive] to"
        )));
    }
    if !args.filter.query().is_empty() {
        return Err(CliError::Usage(
            "--from reads the whole archive: leave out --source, --since, --until, --status, --dedup-key and --where (filter its lines with jq instead)".to_owned(),
        ));
    }
    let archive = super::archived::Archived::open(from, args.connection.config.as_deref())?;
    write_out(args.output.as_deref(), async |sink, write_error| {
        archive
            .copy(sink, write_error)
            .await
            .map(|(_, lines)| lines)
    })
    .await
}

/// Runs `fill` on stdout, or on a file written under a temporary name and renamed once
/// complete; reports how many events it wrote.
async fn write_out(
    output: Option<&Path>,
    fill: impl AsyncFnOnce(&mut dyn Write, &dyn Fn(std::io::Error) -> CliError) -> Result<u64, CliError>,
) -> Result<(), CliError> {
    match output {
        None => {
            let count = fill(&mut std::io::stdout().lock(), &|e| {
                super::output::stdout_error(e)
            })
            .await?;
            eprintln!("exported {count} events");
            Ok(())
        }
        Some(path) => {
            let partial = partial_name(path);
            let file = std::fs::File::create(&partial)
                .map_err(|e| CliError::io(format!("cannot create {}", partial.display()), e))?;
            let mut sink = std::io::BufWriter::new(file);
            let write_error = |e| CliError::io(format!("cannot write {}", partial.display()), e);
            let copied = fill(&mut sink, &write_error).await.and_then(|count| {
                sink.into_inner()
                    .map_err(|e| write_error(e.into_error()))?
                    .sync_all()
                    .map_err(write_error)?;
                Ok(count)
            });
            let count = match copied {
                Ok(count) => count,
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            };
            std::fs::rename(&partial, path).map_err(|e| {
                CliError::io(
                    format!("cannot rename {} to {}", partial.display(), path.display()),
                    e,
                )
            })?;
            eprintln!("exported {count} events to {}", path.display());
            Ok(())
        }
    }
}

/// Copies the export's event lines to `sink` as they arrive; returns how many.
async fn copy(
    mut response: reqwest::Response,
    url: &str,
    sink: &mut dyn Write,
    write_error: &dyn Fn(std::io::Error) -> CliError,
) -> Result<u64, CliError> {
    let mut lines = LineSplitter::default();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                return Err(CliError::BadAnswer {
                    url: url.to_owned(),
                    reason: format!(
                        "the export was cut after {} events: {}",
                        lines.count,
                        super::error::root_cause(&e)
                    ),
                });
            }
        };
        lines.push(&chunk, sink).map_err(write_error)?;
        if lines.error_done
            && let Some(error) = lines.error(url)
        {
            return Err(error);
        }
    }
    if let Some(error) = lines.error(url) {
        return Err(error);
    }
    if !lines.at_line_start() {
        return Err(CliError::BadAnswer {
            url: url.to_owned(),
            reason: "the export ended in the middle of a line".to_owned(),
        });
    }
    sink.flush().map_err(write_error)?;
    Ok(lines.count)
}

/// Passes event lines through, holding back the start of each line until it is known not
/// to be the server's error line.
#[derive(Default)]
struct LineSplitter {
    /// The start of the current line, not written yet (at most `ERROR_START.len()` bytes).
    head: Vec<u8>,
    /// The current line was found to be an event and its start is written.
    passing: bool,
    /// The error line, once one starts.
    error: Option<Vec<u8>>,
    error_done: bool,
    count: u64,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8], sink: &mut dyn Write) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let end = bytes
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| i + 1);
            let (segment, rest) = bytes.split_at(end);
            bytes = rest;
            let ends_line = segment.last() == Some(&b'\n');
            if let Some(error) = &mut self.error {
                if error.len() < MAX_ERROR_LINE {
                    error.extend_from_slice(segment);
                }
                self.error_done |= ends_line;
                continue;
            }
            if self.passing {
                sink.write_all(segment)?;
            } else {
                self.head.extend_from_slice(segment);
                if self.head.starts_with(ERROR_START) {
                    self.error = Some(std::mem::take(&mut self.head));
                    self.error_done = ends_line;
                    continue;
                }
                if self.head.len() >= ERROR_START.len() || ends_line {
                    sink.write_all(&self.head)?;
                    self.head.clear();
                    self.passing = true;
                }
            }
            if ends_line {
                self.passing = false;
                self.count += 1;
            }
        }
        Ok(())
    }

    fn at_line_start(&self) -> bool {
        !self.passing && self.head.is_empty()
    }

    /// The server's error, if its line has started.
    fn error(&self, url: &str) -> Option<CliError> {
        let line = self.error.as_ref()?;
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        let text = |k: &str| v["error"][k].as_str().unwrap_or("").to_owned();
        Some(CliError::BadAnswer {
            url: url.to_owned(),
            reason: format!(
                "the server stopped the export after {} events: {}: {}",
                self.count,
                text("code"),
                text("message")
            ),
        })
    }
}

/// `events.ndjson` → `.events.ndjson.partial` beside it.
fn partial_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".to_owned());
    path.with_file_name(format!(".{name}.partial"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_events_and_stops_at_the_error_line() {
        let wire = b"{\"id\":\"evt_1\"}\n{\"id\":\"evt_2\"}\n{\"error\":{\"code\":\"store_unavailable\",\"message\":\"m\"}}\n";
        for split in 0..wire.len() {
            let mut out = Vec::new();
            let mut lines = LineSplitter::default();
            lines.push(&wire[..split], &mut out).unwrap();
            lines.push(&wire[split..], &mut out).unwrap();
            assert_eq!(
                out, b"{\"id\":\"evt_1\"}\n{\"id\":\"evt_2\"}\n",
                "split at {split}"
            );
            assert_eq!(lines.count, 2);
            assert!(lines.error_done);
            let e = lines.error("u").expect("the error").to_string();
            assert!(
                e.contains("store_unavailable") && e.contains("after 2 events"),
                "{e}"
            );
        }
        let mut out = Vec::new();
        let mut lines = LineSplitter::default();
        lines.push(b"{}\n{\"id\"", &mut out).unwrap();
        assert!(lines.error("u").is_none() && !lines.at_line_start());
    }
}
