//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses the threshold, so
//! every thousandth commit or so would copy megabytes into the database file (and fsync
//! it) before its group hears back: a latency spike for senders. The writer turns that
//! off and nudges this thread instead, which checkpoints on its own connection in
//! `PASSIVE` mode (never blocking the writer or readers). When idle it sleeps on its
//! channel and costs nothing.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Least time between two checkpoints: enough to batch many commits into one copy.
const MIN_INTERVAL: Duration = Duration::from_millis(1000);

/// The writer's handle: `nudge` after a commit, drop to stop the thread.
pub(super) struct Checkpointer {
    nudges: SyncSender<()>,
}

impl Checkpointer {
    pub(super) fn start(path: PathBuf, busy_timeout: Duration) -> std::io::Result<Self> {
        let (nudges, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("forebay-sqlite-checkpoint".into())
            .spawn(move || run(path, busy_timeout, rx))?;
        Ok(Self { nudges })
    }

    /// Asks for a checkpoint soon; never blocks.
    pub(super) fn nudge(&self) {
        match self.nudges.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

fn run(path: PathBuf, busy_timeout: Duration, rx: Receiver<()>) {
    let conn = match Connection::open(&path).and_then(|c| {
        c.busy_timeout(busy_timeout)?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the checkpoint connection; the WAL will only shrink at shutdown");
            return;
        }
    };
    let mut last = Instant::now() - MIN_INTERVAL;
    loop {
        match rx.recv() {
            Ok(()) => {}
            Err(_) => return, // the writer is gone
        }
        let wait = MIN_INTERVAL.saturating_sub(last.elapsed());
        if !wait.is_zero() {
            // Let more commits pile up behind this nudge; a closed channel ends the thread.
            if let Err(RecvTimeoutError::Disconnected) = rx.recv_timeout(wait) {
                return;
            }
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry after the next commit");
        }
        last = Instant::now();
    }
}
