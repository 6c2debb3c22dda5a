//! The rekey job: moves every stored blob to the active key (or back to plain when no
//! key is active) while the server goes on serving (`POST /api/v1/rekey`,
//! `forebay rekey`).
//!
//! One job at a time per process. It counts the rows of each table with sealed blobs,
//! then walks the tables in id order, a bounded batch per transaction (500 rows or
//! 8 MiB of blobs, whichever comes first), resealing only
//! what is not already under the active key (`store::rekey`), so running it again, or
//! after a crash, picks up where the data stands. When a whole pass found nothing it
//! could not open, the keys other than the active one are recorded as retired: they
//! may then leave the configuration.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::clock::now_ms;
use crate::store::Store;
use crate::store::rekey::{BATCH_ROWS, SealedTable};

/// One table's progress.
#[derive(Debug, Clone, Serialize)]
pub struct TableProgress {
    pub table: SealedTable,
    /// Rows in the table when the job started (more may arrive; they are sealed already).
    pub total: u64,
    pub scanned: u64,
    pub resealed: u64,
    /// Rows whose blobs do not open; left as they are.
    pub unreadable: u64,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RekeyStatus {
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// The key data is being moved to (`null`: to plain).
    pub active_key: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub tables: Vec<TableProgress>,
    /// Keys no data is sealed with any more, retired at the end.
    pub retired_keys: Vec<String>,
    pub error: Option<String>,
}

/// Why a job did not start.
#[derive(Debug, thiserror::Error)]
#[error("a rekey is already running; follow it with GET /api/v1/rekey")]
pub struct AlreadyRunning;

/// The process's rekey job, if one has run.
#[derive(Default)]
pub struct Rekeyer {
    job: Arc<Mutex<Option<RekeyStatus>>>,
}

impl Rekeyer {
    /// The current (or last) job.
    pub fn status(&self) -> Option<RekeyStatus> {
        self.job.lock().ok().and_then(|j| j.clone())
    }

    /// Starts a job moving the data of `store` to `active_key`, unless one is running.
    pub fn start(
        &self,
        store: Arc<dyn Store>,
        active_key: Option<String>,
    ) -> Result<RekeyStatus, AlreadyRunning> {
        let status = RekeyStatus {
            state: "running",
            active_key,
            started_at_ms: now_ms(),
            finished_at_ms: None,
            tables: SealedTable::ALL
                .iter()
                .map(|&table| TableProgress {
                    table,
                    total: 0,
                    scanned: 0,
                    resealed: 0,
                    unreadable: 0,
                })
                .collect(),
            retired_keys: Vec::new(),
            error: None,
        };
        {
            let mut job = self.job.lock().map_err(|_| AlreadyRunning)?;
            if job.as_ref().is_some_and(|j| j.state == "running") {
                return Err(AlreadyRunning);
            }
            *job = Some(status.clone());
        }
        let job = self.job.clone();
        tokio::spawn(async move {
            let outcome = run(store.as_ref(), &job).await;
            let update = |f: &mut dyn FnMut(&mut RekeyStatus)| {
                if let Ok(mut j) = job.lock()
                    && let Some(j) = j.as_mut()
                {
                    f(j);
                }
            };
            match outcome {
                Ok(retired) => {
                    tracing::info!(retired = ?retired, "rekey done");
                    update(&mut |j| {
                        j.state = "done";
                        j.retired_keys = retired.clone();
                        j.finished_at_ms = Some(now_ms());
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "rekey failed");
                    update(&mut |j| {
                        j.state = "failed";
                        j.error = Some(error.clone());
                        j.finished_at_ms = Some(now_ms());
                    });
                }
            }
        });
        Ok(status)
    }
}

/// Walks every table; returns the keys retired at the end.
async fn run(store: &dyn Store, job: &Mutex<Option<RekeyStatus>>) -> Result<Vec<String>, String> {
    let progress = |i: usize, f: &dyn Fn(&mut TableProgress)| {
        if let Ok(mut j) = job.lock()
            && let Some(j) = j.as_mut()
        {
            f(&mut j.tables[i]);
        }
    };
    let failed = |what: &str, e: crate::store::StoreError| {
        format!("{what}: {}", crate::error_chain::Chain(&e))
    };
    for (i, &table) in SealedTable::ALL.iter().enumerate() {
        let total = store
            .count_sealable(table)
            .await
            .map_err(|e| failed("counting rows", e))?;
        progress(i, &|p| p.total = total);
    }
    let mut unreadable = None;
    for (i, &table) in SealedTable::ALL.iter().enumerate() {
        let mut after = String::new();
        loop {
            let step = store
                .reseal(table, after.clone(), BATCH_ROWS)
                .await
                .map_err(|e| failed("resealing", e))?;
            progress(i, &|p| {
                p.scanned += step.scanned as u64;
                p.resealed += step.resealed as u64;
                p.unreadable += step.unreadable as u64;
                // Rows added since the count are part of the walk too.
                p.total = p.total.max(p.scanned);
            });
            if let Some(e) = step.first_error {
                unreadable.get_or_insert(e);
            }
            match step.last {
                Some(last) => after = last,
                None => break,
            }
            // A batch is a transaction: let the rest of the server run between them.
            tokio::task::yield_now().await;
        }
    }
    if let Some(e) = unreadable {
        return Err(format!(
            "some stored blobs do not open, so they were left as they are and no key was retired (the first: {e}); every readable row has been resealed"
        ));
    }
    let keys = store
        .retire_keys()
        .await
        .map_err(|e| failed("retiring the old keys", e))?;
    if !keys.still_used.is_empty() {
        return Err(format!(
            "rows sealed with {} were written after the rekey passed them (a process with another `active` key?), so {} stays; give every process the same keys and run the rekey again",
            keys.still_used.join(", "),
            if keys.still_used.len() == 1 {
                "it"
            } else {
                "they"
            }
        ));
    }
    Ok(keys.retired)
}
