//! Group commit for ingest: one task takes every queued `insert_event` and
//! `insert_rejected` (up to `max_batch`) and commits them in one transaction on one
//! pooled connection. Answers go out only after COMMIT has returned.
//!
//! If a write fails for a reason of its own (the server names an error for it), the group
//! is rolled back and committed again one write per transaction, so one bad request
//! cannot spoil its neighbours. If the database is unreachable (no connection, the
//! connection cut mid-group) every write of the group fails with
//! [`StoreError::Commit`], whose `is_unavailable()` makes ingest answer 503 with
//! Retry-After; whether a cut COMMIT landed is unknown, so the sender is never told it
//! did (its retry then dedups against the stored event).

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::write_events::insert_group;
use crate::store::{Inserted, NewEvent, NewRejected, StoreError};

/// Work for the writer.
pub(super) enum Op {
    Write(Write),
    /// Commit everything queued before this, then stop.
    Close(oneshot::Sender<()>),
}

/// A write and the channel that awaits its answer.
pub(super) enum Write {
    Event(Box<NewEvent>, oneshot::Sender<Result<Inserted, StoreError>>),
    Rejected(Box<NewRejected>, oneshot::Sender<Result<(), StoreError>>),
}

type Shared = Arc<dyn std::error::Error + Send + Sync>;

impl Write {
    fn answer(self, inserted: Option<Inserted>) {
        match self {
            Write::Event(event, reply) => {
                // The body (and the ingest memory it holds) is released before the answer.
                drop(event);
                let _ = reply.send(inserted.ok_or(StoreError::Closed));
            }
            Write::Rejected(rejected, reply) => {
                drop(rejected);
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn fail(self, e: &Shared) {
        match self {
            Write::Event(event, reply) => {
                drop(event);
                let _ = reply.send(Err(StoreError::Commit(e.clone())));
            }
            Write::Rejected(rejected, reply) => {
                drop(rejected);
                let _ = reply.send(Err(StoreError::Commit(e.clone())));
            }
        }
    }
}

/// Why a group did not commit.
pub(super) enum GroupError {
    /// The server refused one of the writes (possibly only that write's fault).
    Write(tokio_postgres::Error),
    /// No connection, or the connection failed: the store's fault.
    Store(Shared),
}

impl From<tokio_postgres::Error> for GroupError {
    fn from(e: tokio_postgres::Error) -> Self {
        let store_fault = e.is_closed()
            || e.as_db_error().is_none_or(|db| {
                let code = db.code().code();
                // 08: connection exceptions, 57: operator intervention (terminated,
                // shutting down), 53: out of resources (disk full, too many connections).
                code.starts_with("08") || code.starts_with("57") || code.starts_with("53")
            });
        if store_fault {
            GroupError::Store(Arc::new(e))
        } else {
            GroupError::Write(e)
        }
    }
}

/// Where a group's transaction failed.
enum Failed {
    BeforeCommit(GroupError),
    Commit(GroupError),
}

pub(super) struct Writer {
    pub(super) pool: Pool,
    /// Notified in each group, so other processes' engines hear of the new events.
    pub(super) channel: String,
    pub(super) rx: mpsc::Receiver<Op>,
    pub(super) max_batch: usize,
}

impl Writer {
    /// Runs until a `Close` op arrives or every sender is gone.
    pub(super) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.rx.recv().await {
            let mut close = None;
            match first {
                Op::Write(w) => batch.push(w),
                Op::Close(reply) => close = Some(reply),
            }
            while close.is_none() && batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(Op::Write(w)) => batch.push(w),
                    Ok(Op::Close(reply)) => close = Some(reply),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch).await;
            if let Some(reply) = close {
                let _ = reply.send(());
                return;
            }
        }
    }

    async fn commit(&self, batch: &mut Vec<Write>) {
        if batch.is_empty() {
            return;
        }
        let size = batch.len();
        match self.transact(batch).await {
            Ok(outcomes) => {
                crate::metrics::commit_batch(size);
                let mut outcomes = outcomes.into_iter();
                for w in batch.drain(..) {
                    let outcome = match w {
                        Write::Event(..) => outcomes.next(),
                        Write::Rejected(..) => None,
                    };
                    w.answer(outcome);
                }
            }
            Err(GroupError::Write(e)) if size > 1 => {
                crate::throttled!(warn, error = %crate::error_chain::Chain(&e), size, "a write failed; committing the group one by one");
                let writes: Vec<Write> = std::mem::take(batch);
                for w in writes {
                    let mut one = vec![w];
                    match self.transact(&one).await {
                        Ok(mut outcomes) => {
                            let w = one.remove(0);
                            w.answer(outcomes.pop());
                        }
                        Err(GroupError::Write(e)) => {
                            crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "a write failed on its own; answering 503");
                            let e: Shared = Arc::new(e);
                            one.remove(0).fail(&e);
                        }
                        Err(GroupError::Store(e)) => {
                            crate::throttled!(error, error = %crate::error_chain::Chain(&e), "commit failed; the write was not stored");
                            one.remove(0).fail(&e);
                        }
                    }
                }
            }
            Err(GroupError::Write(e)) => {
                crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "a write failed; answering 503");
                let e: Shared = Arc::new(e);
                batch.drain(..).for_each(|w| w.fail(&e));
            }
            Err(GroupError::Store(e)) => {
                crate::throttled!(error, error = %crate::error_chain::Chain(&e), size, "commit failed; nothing in the group was stored");
                batch.drain(..).for_each(|w| w.fail(&e));
            }
        }
    }

    /// Applies `batch` in one transaction: outcomes of its events, in order. A pooled
    /// connection may have died since its last use (the server restarted, or cut it);
    /// that shows before COMMIT is sent, when nothing can have been stored, so the group
    /// is tried again on another connection, a few times. A failure of COMMIT itself is
    /// never retried here: the group may have landed.
    async fn transact(&self, batch: &[Write]) -> Result<Vec<Inserted>, GroupError> {
        const TRIES: usize = 3;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.transact_once(batch).await {
                Err(Failed::BeforeCommit(GroupError::Store(e))) if tries < TRIES => {
                    tracing::debug!(error = %crate::error_chain::Chain(&e), "a connection failed before COMMIT; trying another");
                }
                Err(Failed::BeforeCommit(e) | Failed::Commit(e)) => return Err(e),
                Ok(outcomes) => return Ok(outcomes),
            }
        }
    }

    async fn transact_once(&self, batch: &[Write]) -> Result<Vec<Inserted>, Failed> {
        let before = |e: tokio_postgres::Error| Failed::BeforeCommit(e.into());
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| Failed::BeforeCommit(GroupError::Store(Arc::new(e))))?;
        let tx = client.transaction().await.map_err(before)?;
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for w in batch {
            match w {
                Write::Event(e, _) => events.push(&**e),
                Write::Rejected(r, _) => rejected.push(&**r),
            }
        }
        let outcomes = insert_group(&tx, &events, &rejected, &self.channel)
            .await
            .map_err(before)?;
        tx.commit().await.map_err(|e| Failed::Commit(e.into()))?;
        Ok(outcomes)
    }
}
