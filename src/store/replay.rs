//! Replay jobs as the store keeps them: a search filter, where the job has got to, and
//! the deliveries it queued (marked with its id, so they go out as replays).

/// A new replay job, `running` from the start.
#[derive(Debug, Clone)]
pub struct NewReplay {
    pub id: String,
    /// The search filter, as JSON.
    pub filter: String,
    pub destination: Option<String>,
    pub rate: Option<String>,
    pub created_at_ms: i64,
}

/// A replay job and its progress.
#[derive(Debug, Clone)]
pub struct StoredReplay {
    pub id: String,
    /// `running`, `done`, `cancelled` or `failed`.
    pub state: String,
    pub filter: String,
    pub destination: Option<String>,
    pub rate: Option<String>,
    /// The last event looked at; the job resumes after it.
    pub cursor: Option<String>,
    pub scanned: i64,
    pub matched: i64,
    pub queued: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    /// Its deliveries per state (filled when one job is read).
    pub deliveries: Vec<(String, i64)>,
}

/// One step of a running job, written at once: the deliveries it queues and how far it
/// got, so a job resumed after a restart queues nothing twice.
#[derive(Debug, Clone)]
pub struct ReplayStep {
    pub replay_id: String,
    pub cursor: Option<String>,
    pub scanned: i64,
    pub matched: i64,
    pub deliveries: Vec<ReplayDelivery>,
    pub now_ms: i64,
    /// Ends the job: `done` or `failed`, with the error for `failed`.
    pub finish: Option<(&'static str, Option<String>)>,
}

/// A delivery a replay queues.
#[derive(Debug, Clone)]
pub struct ReplayDelivery {
    pub id: String,
    pub event_id: String,
    pub route: String,
    pub destination: String,
    pub needs_preparing: bool,
    /// The route's `priority` (a replay is never delayed: it is sent as soon as the
    /// job's rate allows).
    pub priority: u8,
}

/// The writes of replay jobs.
#[derive(Debug, Clone)]
pub enum ReplayWrite {
    Create(NewReplay),
    /// Applies only while the job is `running` (a cancel wins).
    Advance(ReplayStep),
    /// Stops a running job and discards its deliveries not yet sent (also those of a job
    /// that is `done` queuing but not sending: it becomes `cancelled`).
    Cancel {
        id: String,
        now_ms: i64,
    },
}
