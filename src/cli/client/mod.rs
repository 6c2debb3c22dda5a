//! The client commands: `forebay events`, `deliveries`, `dlq`, `export`, `replay`,
//! `listen` and `rekey` talk to a running forebay's admin API (`replay --from FILE --to URL` needs
//! none). One module per job:
//!
//! | module | what lives there |
//! |---|---|
//! | `connection` | `--server`, `--token`, `--config`, `--json`: where the API is |
//! | `api` | the HTTP client: token, capped reads, the API's errors |
//! | `error` | `CliError` and the exit codes |
//! | `filters`, `paging`, `output`, `prompt` | event filters and times, cursor paging, tables and JSON, yes/no questions |
//! | `events`, `tail`, `deliveries`, `dlq`, `export` | the read and act commands |
//! | `replay`, `replay_file` | a server-side replay job; an export file against a URL |
//! | `rekey` | the server's rekey job (encryption at rest), followed with a progress bar |
//! | `listen`, `listen_state`, `sse`, `forward` | following the stream, remembering where, sending to a handler |
//!
//! Tables for people by default; `--json` prints the API's JSON (NDJSON for `--all`
//! listings, `events tail` and `listen`). Messages go to stderr, results to stdout.
//!
//! Exit codes (the same for every client command, and in line with `serve`/`check`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | usage or configuration problem found by forebay (bad time, bulk action without a filter, replay without `--yes` and no terminal, unreadable config) |
//! | 2 | usage error found by the argument parser (unknown flag, missing argument) |
//! | 3 | cannot reach the server, the server failed (5xx) or answered something else, or a local file cannot be read or written |
//! | 4 | the server refused the request (4xx): no such id, missing or wrong token, a filter it rejects, a retry of a delivery in flight |
//! | 5 | the command ran but not everything was done: `replay` (a job failed, cancelled, or with dead or retrying deliveries; `--from` with an answer other than 2xx), `listen` (a handler kept failing), `rekey` (the job failed, or left rows it could not open) |

pub(super) mod api;
mod archived;
mod connection;
mod deliveries;
mod dlq;
pub(super) mod error;
mod events;
mod export;
mod filters;
mod forward;
mod listen;
mod listen_state;
mod output;
mod paging;
mod prompt;
mod rekey;
mod replay;
mod replay_file;
mod sse;
mod tail;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Stored events: list and search, show one, follow new ones.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Deliveries: list, show one with its attempts, retry one.
    Deliveries {
        #[command(subcommand)]
        command: deliveries::DeliveriesCommand,
    },
    /// The dead-letter queue: list, retry, discard.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Write stored events as NDJSON, one full event (body, headers) per line, oldest first.
    Export(Box<export::ExportArgs>),
    /// Send stored events again, as a job in the server with a progress bar; or, with
    /// `--from FILE --to URL`, send an export's events to a handler (no server needed).
    Replay(Box<replay::ReplayArgs>),
    /// Forward a forebay's events to a local handler as they arrive, catching up on those
    /// that arrived while it was stopped.
    Listen(Box<listen::ListenArgs>),
    /// Move every stored body and header to the active key of `[storage] encryption`
    /// (or back to plain when no key is active), as a job in the server with a
    /// progress bar; keys no data needs any more are then retired.
    Rekey(rekey::RekeyArgs),
}

/// Runs a client command and turns its outcome into the exit code.
pub async fn run(command: ClientCommand) -> ExitCode {
    let result = match command {
        ClientCommand::Events { command } => events::run(command).await,
        ClientCommand::Deliveries { command } => deliveries::run(command).await,
        ClientCommand::Dlq { command } => dlq::run(command).await,
        ClientCommand::Export(args) => export::run(*args).await,
        ClientCommand::Replay(args) => replay::run(*args).await,
        ClientCommand::Listen(args) => listen::run(*args).await,
        ClientCommand::Rekey(args) => rekey::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forebay: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed at the call, so
/// a signal that comes before the first poll is not lost to the default action. If they
/// cannot be installed it never resolves (and the default action ends the process).
pub(crate) fn interrupted() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match signals {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}
