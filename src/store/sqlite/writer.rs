//! The one writer: a thread that owns the write connection and commits in groups.
//!
//! Requests queue on a bounded channel. The writer takes the first, drains whatever else
//! is already waiting (up to `max_batch`), and commits them all in one transaction: one
//! fsync for the group, so throughput does not depend on the fsync rate. Each request is
//! applied inside its own savepoint, so one bad request cannot spoil its neighbours.
//! Replies go out only after `COMMIT` has returned.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::json_headers;
use crate::id;
use crate::store::{Inserted, NewEvent, NewRejected, StoreError};

/// Work for the writer.
#[allow(
    clippy::large_enum_variant,
    reason = "Close is sent once per process; boxing every write would cost an allocation per request"
)]
pub(super) enum Op {
    Write(Write),
    /// Commit everything queued before this, checkpoint the WAL, then stop.
    Close(oneshot::Sender<()>),
}

pub(super) struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Op>,
    max_batch: usize,
}

impl Writer {
    pub(super) fn new(conn: Connection, rx: mpsc::Receiver<Op>, max_batch: usize) -> Self {
        Self {
            conn,
            rx,
            max_batch,
        }
    }

    /// Runs until a `Close` op arrives or every sender is gone.
    pub(super) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.rx.blocking_recv() {
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
            self.commit(&mut batch);
            if let Some(reply) = close {
                // Ops queued after the close are answered `Closed` when `rx` drops.
                // Leave a compact file behind; a failed checkpoint loses nothing.
                let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Commits `batch` in one transaction and answers every write in it.
    fn commit(&mut self, batch: &mut Vec<Write>) {
        if batch.is_empty() {
            return;
        }
        let size = batch.len();
        let result = (|| -> rusqlite::Result<Vec<Outcome>> {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for w in batch.iter() {
                outcomes.push(apply(&mut tx, w)?);
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        match result {
            Ok(outcomes) => {
                tracing::trace!(size, "group commit");
                for (w, outcome) in batch.drain(..).zip(outcomes) {
                    w.answer(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, size, "group commit failed; nothing in it was stored");
                let e = Arc::new(e);
                for w in batch.drain(..) {
                    w.fail(&e);
                }
            }
        }
    }
}

/// A write and the channel that awaits its answer.
pub(super) enum Write {
    Event(NewEvent, oneshot::Sender<Result<Inserted, StoreError>>),
    Rejected(NewRejected, oneshot::Sender<Result<(), StoreError>>),
}

/// What one write produced inside the transaction; sent only once the commit is durable.
enum Outcome {
    Event(rusqlite::Result<Inserted>),
    Rejected(rusqlite::Result<()>),
}

impl Write {
    fn answer(self, outcome: Outcome) {
        match (self, outcome) {
            (Write::Event(_, reply), Outcome::Event(r)) => {
                let _ = reply.send(r.map_err(StoreError::Database));
            }
            (Write::Rejected(_, reply), Outcome::Rejected(r)) => {
                let _ = reply.send(r.map_err(StoreError::Database));
            }
            // `apply` returns the outcome kind of its write, so this cannot happen;
            // dropping the reply answers `Closed` rather than a wrong result.
            _ => {}
        }
    }

    fn fail(self, e: &Arc<rusqlite::Error>) {
        match self {
            Write::Event(_, reply) => {
                let _ = reply.send(Err(StoreError::Commit(e.clone())));
            }
            Write::Rejected(_, reply) => {
                let _ = reply.send(Err(StoreError::Commit(e.clone())));
            }
        }
    }
}

/// Applies one write in its own savepoint. Errors of the savepoint machinery abort the
/// whole group (`Err`); errors of the write itself are that write's answer.
fn apply(tx: &mut Transaction<'_>, w: &Write) -> rusqlite::Result<Outcome> {
    let mut sp = tx.savepoint()?;
    let (outcome, ok) = match w {
        Write::Event(event, _) => {
            let r = insert_event(&sp, event);
            let ok = r.is_ok();
            (Outcome::Event(r), ok)
        }
        Write::Rejected(rej, _) => {
            let r = insert_rejected(&sp, rej);
            let ok = r.is_ok();
            (Outcome::Rejected(r), ok)
        }
    };
    if !ok {
        sp.rollback()?;
    }
    sp.commit()?;
    Ok(outcome)
}

fn insert_event(conn: &Connection, e: &NewEvent) -> rusqlite::Result<Inserted> {
    let original: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM events
             WHERE source = ?1 AND dedup_key = ?2 AND received_at >= ?3
             ORDER BY received_at LIMIT 1",
        )?
        .query_row(params![e.source, e.dedup_key, e.dedup_since_ms], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(original_id) = original {
        conn.prepare_cached("UPDATE events SET duplicates = duplicates + 1 WHERE id = ?1")?
            .execute(params![original_id])?;
        conn.prepare_cached(
            "INSERT INTO duplicates (id, event_id, received_at, headers, remote_addr)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id::new(id::DUPLICATE),
            original_id,
            e.received_at_ms,
            json_headers(&e.headers),
            e.remote_addr
        ])?;
        return Ok(Inserted::Duplicate { original_id });
    }
    conn.prepare_cached(
        "INSERT INTO events (id, source, received_at, method, path, query, headers, body,
                             remote_addr, dedup_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.id,
        e.source,
        e.received_at_ms,
        e.method,
        e.path,
        e.query,
        json_headers(&e.headers),
        &e.body[..],
        e.remote_addr,
        e.dedup_key
    ])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                 created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
    )?;
    for d in &e.deliveries {
        insert.execute(params![
            d.id,
            e.id,
            d.route,
            d.destination,
            e.received_at_ms
        ])?;
    }
    Ok(Inserted::New { id: e.id.clone() })
}

fn insert_rejected(conn: &Connection, r: &NewRejected) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rejected (id, source, received_at, method, path, query, headers, body,
                               remote_addr, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        r.id,
        r.source,
        r.received_at_ms,
        r.method,
        r.path,
        r.query,
        json_headers(&r.headers),
        &r.body[..],
        r.remote_addr,
        r.reason
    ])?;
    Ok(())
}
