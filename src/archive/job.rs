//! The archive's round, run by the maintenance leader at start and every
//! [`ARCHIVE_EVERY`]: first the uploads a crash abandoned are deleted and forgotten, then
//! objects are written from the oldest archivable events on, each noted in the store's
//! manifest before it is uploaded and its events removed once it is (see
//! [`crate::store::archive`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::location::Location;
use super::object;
use crate::admin::json::EventJson;
use crate::clock::Clock;
use crate::store::Store;
use crate::store::archive::{ArchiveObject, ArchiveStep};
use crate::store::seal::Sealer;

/// Time between two rounds.
pub const ARCHIVE_EVERY: Duration = Duration::from_secs(60);

/// Events read from the store at a time (each whole: a page of large bodies is large).
const PAGE: usize = 100;
/// Most events in one object, and most bytes of NDJSON before compression: an object is
/// built in memory (sealing takes it whole).
const OBJECT_EVENTS: usize = 10_000;
const OBJECT_BYTES: usize = 32 << 20;
/// Most objects one round writes; the rest waits for the next round.
const ROUND_OBJECTS: usize = 100;
/// An upload noted this long ago and never finished was abandoned (a process died, or
/// lost leadership while a slow upload ran).
const ABANDONED_AFTER_MS: i64 = 10 * 60_000;

pub struct Archiver {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub location: Location,
    /// Events received longer ago than this go.
    pub after: Duration,
    /// Seals objects with the active key (as the store seals its blobs).
    pub sealer: Arc<Sealer>,
}

/// What a round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub objects: usize,
    pub events: usize,
    pub bytes: u64,
    /// Abandoned uploads cleaned up.
    pub abandoned: usize,
}

impl Archiver {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let next = self.clock.now_ms() + ARCHIVE_EVERY.as_millis() as i64;
            if self.store.lead_maintenance().await {
                match self.round(&stop).await {
                    Ok(round) if round.objects > 0 => tracing::info!(
                        objects = round.objects,
                        events = round.events,
                        bytes = round.bytes,
                        to = %self.location.url,
                        "archived old events"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        crate::metrics::archive_failed();
                        crate::throttled!(warn, error = %e, to = %self.location.url, "cannot archive old events; they stay in the store, trying again next round");
                    }
                }
            }
            tokio::select! {
                () = self.clock.sleep_until(next) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One round; see the module documentation.
    pub async fn round(&self, stop: &watch::Receiver<bool>) -> Result<Round, String> {
        let mut round = Round {
            abandoned: self.clean_up().await?,
            ..Round::default()
        };
        let before = self.clock.now_ms() - self.after.as_millis() as i64;
        let mut after = String::new();
        while round.objects < ROUND_OBJECTS && !*stop.borrow() {
            let Some(batch) = self.next_object(before, &after).await? else {
                break;
            };
            after.clone_from(&batch.last_id);
            let (events, bytes) = self.write(batch).await?;
            round.events += events;
            round.bytes += bytes as u64;
            round.objects += 1;
        }
        Ok(round)
    }

    /// Deletes and forgets the uploads a crash left unfinished: each is first marked
    /// abandoned, which succeeds only while it is still uploading (an upload that
    /// finished meanwhile keeps its object), and after which it can no longer finish.
    async fn clean_up(&self) -> Result<usize, String> {
        let manifest =
            |e: crate::store::StoreError| format!("cannot update the archive's manifest: {e}");
        let cutoff = self.clock.now_ms() - ABANDONED_AFTER_MS;
        let mut abandoned = Vec::new();
        for object in self
            .store
            .list_archive("uploading", None, 1000)
            .await
            .map_err(manifest)?
            .into_iter()
            .filter(|o| o.created_at_ms < cutoff)
        {
            let step = ArchiveStep::Abandon(object.name.clone());
            if self
                .store
                .archive_step(step)
                .await
                .map_err(manifest)?
                .is_some()
            {
                abandoned.push(object.name);
            }
        }
        // And those a crash left marked but not yet deleted.
        for object in self
            .store
            .list_archive("abandoned", None, 1000)
            .await
            .map_err(manifest)?
        {
            if !abandoned.contains(&object.name) {
                abandoned.push(object.name);
            }
        }
        for name in &abandoned {
            self.location
                .delete(name)
                .await
                .map_err(|e| format!("cannot delete the abandoned {name}: {e}"))?;
            self.store
                .archive_step(ArchiveStep::Forget(name.clone()))
                .await
                .map_err(manifest)?;
            tracing::info!(object = %self.location.describe(name), "deleted an archive object whose upload a stopped process left unfinished (its events are still in the store)");
        }
        Ok(abandoned.len())
    }

    /// The events of the next object: archivable, after `after`, up to the object's
    /// bounds, as NDJSON.
    async fn next_object(&self, before: i64, after: &str) -> Result<Option<Batch>, String> {
        let mut batch = Batch::default();
        let mut cursor = after.to_owned();
        while batch.ids.len() < OBJECT_EVENTS && batch.ndjson.len() < OBJECT_BYTES {
            let room = PAGE.min(OBJECT_EVENTS - batch.ids.len());
            let events = self
                .store
                .archivable(before, &cursor, room)
                .await
                .map_err(|e| format!("cannot read the events to archive: {e}"))?;
            let short = events.len() < room;
            for event in events {
                if batch.ndjson.len() >= OBJECT_BYTES {
                    // The rest of the page goes into the next object.
                    break;
                }
                if batch.ids.is_empty() {
                    batch.first_at_ms = event.request.received_at_ms;
                }
                batch.last_at_ms = event.request.received_at_ms;
                batch.ids.push(event.request.id.clone());
                let mut line = serde_json::to_vec(&EventJson::from(event))
                    .map_err(|e| format!("cannot write an event as JSON: {e}"))?;
                line.push(b'\n');
                batch.ndjson.extend_from_slice(&line);
            }
            match batch.ids.last() {
                Some(last) => cursor.clone_from(last),
                None => return Ok(None),
            }
            if short || batch.ndjson.len() >= OBJECT_BYTES {
                break;
            }
        }
        batch.first_id = batch.ids[0].clone();
        batch.last_id = cursor;
        Ok(Some(batch))
    }

    /// Notes, uploads and finishes one object; returns how many events left the store,
    /// and the object's size.
    async fn write(&self, batch: Batch) -> Result<(usize, usize), String> {
        let now = self.clock.now_ms();
        let name = Location::object_name(&batch.first_id, &batch.last_id, now);
        let object = object::encode(&batch.ndjson, &self.sealer, &name)
            .map_err(|e| format!("cannot compress an archive object: {e}"))?;
        let noted = ArchiveObject {
            name: name.clone(),
            state: "uploading".to_owned(),
            first_id: batch.first_id.clone(),
            last_id: batch.last_id.clone(),
            first_at_ms: batch.first_at_ms,
            last_at_ms: batch.last_at_ms,
            events: batch.ids.len() as i64,
            bytes: object.len() as i64,
            sealed_with: self.sealer.active().map(str::to_owned),
            created_at_ms: now,
        };
        let manifest =
            |e: crate::store::StoreError| format!("cannot update the archive's manifest: {e}");
        self.store
            .archive_step(ArchiveStep::Begin(noted))
            .await
            .map_err(manifest)?;
        let bytes = object.len();
        if let Err(e) = self.location.put(&name, object).await {
            // Nothing left the store. The note goes (through `abandoned`, so that a part
            // written is deleted first), and the next round tries again.
            let abandon = ArchiveStep::Abandon(name.clone());
            if let Ok(Some(_)) = self.store.archive_step(abandon).await
                && self.location.delete(&name).await.is_ok()
            {
                let forget = ArchiveStep::Forget(name.clone());
                let _ = self.store.archive_step(forget).await;
            }
            return Err(format!(
                "cannot write {}: {e}",
                self.location.describe(&name)
            ));
        }
        let removed = self
            .store
            .archive_step(ArchiveStep::Finish {
                name: name.clone(),
                ids: batch.ids,
            })
            .await
            .map_err(manifest)?;
        match removed {
            Some(removed) => {
                crate::metrics::archived(removed, bytes);
                Ok((removed, bytes))
            }
            None => {
                // Another process took this for abandoned and deleted it meanwhile; the
                // events are still in the store. Delete what was just written again.
                let _ = self.location.delete(&name).await;
                Err(format!(
                    "{} was cleaned up as abandoned while it was written; its events stay in the store",
                    self.location.describe(&name)
                ))
            }
        }
    }
}

#[derive(Default)]
struct Batch {
    ids: Vec<String>,
    first_id: String,
    last_id: String,
    first_at_ms: i64,
    last_at_ms: i64,
    ndjson: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::ArchiveLocation;
    use crate::store::conformance::fixtures::{HOUR_MS, event};
    use crate::store::sqlite::{SqliteOptions, SqliteStore};

    /// A crash after an object was written but before its events left the store: the
    /// next round deletes it, and archives the events again; each ends up in exactly one
    /// object, and none is lost.
    #[tokio::test]
    async fn an_upload_abandoned_by_a_crash_is_cleaned_up_and_its_events_archived_again() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        let start = crate::clock::now_ms();
        let clock = Arc::new(ManualClock::new(start));
        let mut ids = Vec::new();
        // Three finished events, and a newer one (the newest event stays, on SQLite).
        for (n, key) in ["a", "b", "c", "newest"].iter().enumerate() {
            let mut e = event("s", key, start + n as i64, HOUR_MS);
            e.id = crate::id::new_at(crate::id::EVENT, start + n as i64);
            e.deliveries.clear();
            ids.push(e.id.clone());
            store.insert_event(e).await.unwrap();
        }
        let archive = dir.path().join("archive");
        let location = Location::open(
            "file:///archive",
            &ArchiveLocation::Directory(archive.clone()),
        )
        .unwrap();
        let sealer = Arc::new(Sealer::default());
        // The crash: noted and written, never finished.
        let name = Location::object_name(&ids[0], &ids[2], start);
        store
            .archive_step(ArchiveStep::Begin(ArchiveObject {
                name: name.clone(),
                state: "uploading".into(),
                first_id: ids[0].clone(),
                last_id: ids[2].clone(),
                first_at_ms: start,
                last_at_ms: start + 2,
                events: 3,
                bytes: 7,
                sealed_with: None,
                created_at_ms: start,
            }))
            .await
            .unwrap();
        location.put(&name, b"partial".to_vec()).await.unwrap();

        let archiver = Archiver {
            store: store.clone(),
            clock: clock.clone(),
            location: location.clone(),
            after: Duration::from_secs(3600),
            sealer: sealer.clone(),
        };
        clock.advance_to(start + 2 * HOUR_MS);
        let (_stop, stopped) = watch::channel(false);
        let round = archiver.round(&stopped).await.unwrap();
        assert_eq!((round.abandoned, round.objects, round.events), (1, 1, 3));

        let mut archived = Vec::new();
        for object in location.list().await.unwrap() {
            let bytes = location.get(&object.name).await.unwrap().to_vec();
            let lines = object::decode(bytes, &sealer, &object.name).unwrap();
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let event: serde_json::Value = serde_json::from_slice(line).unwrap();
                archived.push(event["id"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(archived, ids[..3], "each in one object, in order");
        for id in &ids[..3] {
            assert!(
                store.get_event(id).await.unwrap().is_none(),
                "{id} left the store"
            );
        }
        assert!(store.get_event(&ids[3]).await.unwrap().is_some());
        let done = store.list_archive("done", None, 10).await.unwrap();
        assert_eq!((done.len(), done[0].events), (1, 3));
        // Nothing more is due: a second round writes nothing.
        assert_eq!(archiver.round(&stopped).await.unwrap(), Round::default());
        store.close().await;
    }
}
