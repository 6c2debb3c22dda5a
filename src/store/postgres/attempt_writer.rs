//! Group commit for attempt records: one task per process takes every queued
//! `record_attempt` and commits them in one transaction, with one NOTIFY, then answers
//! each; up to [`GROUPS_IN_FLIGHT`] groups commit at once, each on its own connection. Sends finish many at a time under load, so one commit (and one WAL flush) serves
//! all of them, where a transaction per attempt made COMMIT most of PostgreSQL's work.
//!
//! An attempt is queued only once it was made, and its caller is answered only after
//! COMMIT returned, so nothing is recorded before it happened and a caller told "done"
//! can rely on it. A group holds at most one record per delivery: a second one (a late
//! report racing a newer claim's, in one process) waits until the groups in flight have
//! committed. An attempt is numbered one past the delivery's count when its group
//! commits; two reports of one delivery committing at once (from two processes) can
//! share a number, as they always could.
//!
//! If the group fails for a reason of its own, it is committed again one record per
//! transaction, so one bad record cannot spoil its neighbours. If the database is
//! unreachable every record of the group fails: the worker logs it, and the delivery is
//! sent again when its lease ends (at least once, never lost).

use std::collections::HashSet;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::writer::GroupError;
use crate::store::{AttemptRecord, StoreError};

/// Work for the attempt writer.
pub(super) enum Op {
    Record(Box<AttemptRecord>, oneshot::Sender<Result<(), StoreError>>),
    /// Commit everything queued before this, then stop.
    Close(oneshot::Sender<()>),
}

type Queued = (Box<AttemptRecord>, oneshot::Sender<Result<(), StoreError>>);

pub(super) struct AttemptWriter {
    pub(super) pool: Pool,
    /// Notified once per group: other processes may now start what these attempts
    /// held back (a cluster-wide concurrency slot, the next delivery of a key, a retry).
    pub(super) channel: String,
    pub(super) rx: mpsc::Receiver<Op>,
    pub(super) max_batch: usize,
}

/// Groups committing at once, each on its own connection: a record waits for the
/// group being committed only when both are busy, not for every group ahead of it.
const GROUPS_IN_FLIGHT: usize = 2;

/// What a group's commit needs, shared by the groups in flight.
struct Committer {
    pool: Pool,
    channel: String,
}

impl AttemptWriter {
    /// Runs until a `Close` op arrives or every sender is gone.
    pub(super) async fn run(mut self) {
        let committer = Arc::new(Committer {
            pool: self.pool.clone(),
            channel: self.channel.clone(),
        });
        let in_flight = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
        let all = GROUPS_IN_FLIGHT as u32;
        // A record held over from the last group (its delivery was already in it).
        let mut held: Vec<Queued> = Vec::new();
        let mut close = None;
        loop {
            if held.is_empty() && close.is_none() {
                match self.rx.recv().await {
                    Some(Op::Record(a, reply)) => held.push((a, reply)),
                    Some(Op::Close(reply)) => close = Some(reply),
                    None => break,
                }
            } else if !held.is_empty() {
                // A second record of a delivery goes after its first has committed.
                drop(in_flight.acquire_many(all).await);
            }
            // While both groups are busy, records gather for the next one.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let mut batch: Vec<Queued> = Vec::with_capacity(self.max_batch);
            let mut in_group = HashSet::new();
            let mut later = Vec::new();
            for (a, reply) in held.drain(..) {
                if batch.len() < self.max_batch && in_group.insert(a.delivery_id.clone()) {
                    batch.push((a, reply));
                } else {
                    later.push((a, reply));
                }
            }
            held = later;
            while close.is_none() && batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(Op::Record(a, reply)) => {
                        if in_group.insert(a.delivery_id.clone()) {
                            batch.push((a, reply));
                        } else {
                            held.push((a, reply));
                        }
                    }
                    Ok(Op::Close(reply)) => close = Some(reply),
                    Err(_) => break,
                }
            }
            let committer = committer.clone();
            tokio::spawn(async move {
                committer.commit(&mut batch).await;
                drop(permit);
            });
            if held.is_empty() && close.is_some() {
                break;
            }
        }
        // Every group in flight is answered before the writer says it is closed.
        drop(in_flight.acquire_many(all).await);
        if let Some(reply) = close {
            let _ = reply.send(());
        }
    }
}

impl Committer {
    async fn commit(&self, batch: &mut Vec<Queued>) {
        if batch.is_empty() {
            return;
        }
        let size = batch.len();
        let records: Vec<&AttemptRecord> = batch.iter().map(|(a, _)| &**a).collect();
        match self.transact(&records).await {
            Ok(stored) => {
                crate::metrics::commit_batch(size);
                for ((a, reply), stored) in batch.drain(..).zip(stored) {
                    let _ = reply.send(if stored { Ok(()) } else { Err(missing(&a)) });
                }
            }
            Err(GroupError::Write(e)) if size > 1 => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), size, "an attempt record failed; committing the group one by one");
                for (a, reply) in batch.drain(..) {
                    let answer = match self.transact(&[&*a]).await {
                        Ok(stored) if stored.first() == Some(&true) => Ok(()),
                        Ok(_) => Err(missing(&a)),
                        Err(GroupError::Write(e)) => Err(StoreError::Database(Box::new(e))),
                        Err(GroupError::Store(e)) => Err(StoreError::Commit(e)),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(GroupError::Write(e)) => {
                let e: Arc<dyn std::error::Error + Send + Sync> = Arc::new(e);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Commit(e.clone())));
                }
            }
            Err(GroupError::Store(e)) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Commit(e.clone())));
                }
            }
        }
    }

    /// Writes `records` in one transaction with one NOTIFY; per record, whether its
    /// delivery was still stored.
    async fn transact(&self, records: &[&AttemptRecord]) -> Result<Vec<bool>, GroupError> {
        let client = super::pool::HandRun::new(
            self.pool
                .get()
                .await
                .map_err(|e| GroupError::Store(Arc::new(e)))?,
        );
        let stored =
            super::write_deliveries::record_attempts(&client, records, &self.channel).await;
        Ok(client.end(stored).await?)
    }
}

fn missing(a: &AttemptRecord) -> StoreError {
    StoreError::Corrupt(format!(
        "an attempt for delivery {} which is not stored",
        a.delivery_id
    ))
}
