//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses the threshold, so
//! every thousandth commit or so would copy megabytes into the database file (and fsync
//! it) before its group hears back: a latency spike for senders. The writer turns that
//! off and nudges this thread instead, which checkpoints on its own connection in
//! `PASSIVE` mode (never blocking the writer or readers). When idle it sleeps on its
//! channel and costs nothing.
//!
//! A checkpoint from here can never let the WAL start over under steady load: the writer
//! has always appended more frames by the time it finishes. So the writer also watches
//! the WAL's length and, past a limit, checkpoints the (by then short) remainder itself
//! between two groups, after which its next transaction rewinds the WAL (see
//! `writer.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Least time between two checkpoints while the WAL is short: enough to fold many
/// commits into one copy.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Most frames the writer copies itself when it rewinds the WAL: a few milliseconds of
/// work for the group that waits behind it.
const WRITER_REMAINDER: usize = 1024;

/// What the writer and this thread know of the WAL.
#[derive(Default)]
pub(super) struct Progress {
    /// Frames in the WAL after the last commit (the writer's WAL hook sets it).
    pub(super) frames: AtomicUsize,
    /// Frames the last checkpoint copied into the database.
    pub(super) copied: AtomicUsize,
}

/// The writer's handle: `nudge` after a commit, drop to stop the thread.
pub(super) struct Checkpointer {
    nudges: SyncSender<()>,
    progress: Arc<Progress>,
    /// WAL length at which the writer rewinds it.
    rewind_frames: usize,
}

impl Checkpointer {
    pub(super) fn start(
        path: PathBuf,
        busy_timeout: Duration,
        rewind_frames: usize,
    ) -> std::io::Result<Self> {
        let (nudges, rx) = std::sync::mpsc::sync_channel(1);
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        std::thread::Builder::new()
            .name("forebay-sqlite-checkpoint".into())
            .spawn(move || run(path, busy_timeout, rx, &shared, rewind_frames / 2))?;
        Ok(Self {
            nudges,
            progress,
            rewind_frames: rewind_frames.max(1),
        })
    }

    pub(super) fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Asks for a checkpoint soon; never blocks.
    pub(super) fn nudge(&self) {
        match self.nudges.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// True when the writer should checkpoint now, between two groups: the WAL is long
    /// and this thread has copied all but a short remainder (or has fallen far behind,
    /// and the WAL must not grow further).
    pub(super) fn writer_should_rewind(&self) -> bool {
        let frames = self.progress.frames.load(Ordering::Relaxed);
        if frames < self.rewind_frames {
            return false;
        }
        let remainder = frames.saturating_sub(self.progress.copied.load(Ordering::Relaxed));
        remainder <= WRITER_REMAINDER || frames >= 4 * self.rewind_frames
    }

    /// The writer rewound the WAL: both counts start over.
    pub(super) fn rewound(&self) {
        self.progress.frames.store(0, Ordering::Relaxed);
        self.progress.copied.store(0, Ordering::Relaxed);
    }
}

fn run(
    path: PathBuf,
    busy_timeout: Duration,
    rx: Receiver<()>,
    progress: &Progress,
    hurry_frames: usize,
) {
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
    loop {
        if rx.recv().is_err() {
            return; // the writer is gone
        }
        // While the WAL is short, let commits pile up behind this nudge (nudges arriving
        // meanwhile are absorbed). Once it is long, keep up instead, so the writer finds
        // little left to copy when it rewinds.
        if progress.frames.load(Ordering::Relaxed) < hurry_frames {
            let until = Instant::now() + MIN_INTERVAL;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(2)) {
            Ok(copied) => progress
                .copied
                .store(usize::try_from(copied).unwrap_or(0), Ordering::Relaxed),
            Err(e) => {
                crate::throttled!(warn, error = %e, "WAL checkpoint failed; will retry after the next commit")
            }
        }
    }
}
