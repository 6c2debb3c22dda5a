//! What the cold archive (`[storage.archive]`, see [`crate::archive`]) asks of a store:
//! the next events to archive, and the manifest of the objects written, which makes an
//! upload and the removal of its events safe against a crash between the two.
//!
//! An object is noted `uploading` before it is written; once it is, one transaction marks
//! it `done` and removes its events. A crash in between leaves the note: a later round
//! marks it `abandoned` (only if it is still `uploading`, so an upload that finished
//! meanwhile is left alone, and one marked abandoned can no longer finish), deletes the
//! object (its events are all still in the store) and forgets the note. So every event is
//! in the store or in a `done` object, never in neither.

use super::retention::NO_WAITING_DELIVERY;

/// One object of the archive, as the manifest keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveObject {
    /// Its name under the archive's location.
    pub name: String,
    /// `uploading` until its events have left the store, then `done`.
    pub state: String,
    pub first_id: String,
    pub last_id: String,
    /// Receive times of its first and last events (ms since the Unix epoch).
    pub first_at_ms: i64,
    pub last_at_ms: i64,
    pub events: i64,
    /// The object's size.
    pub bytes: i64,
    /// The key it is sealed with, when encryption is on.
    pub sealed_with: Option<String>,
    pub created_at_ms: i64,
}

/// A change to the manifest.
#[derive(Debug, Clone)]
pub enum ArchiveStep {
    /// About to upload this object (state `uploading`).
    Begin(ArchiveObject),
    /// The object is written: mark it done and remove `ids` from the store (those that
    /// still have no waiting delivery), if it is still `uploading`.
    Finish { name: String, ids: Vec<String> },
    /// An upload left unfinished: mark it `abandoned` if it is still `uploading` (after
    /// which it cannot finish); the caller then deletes the object.
    Abandon(String),
    /// An upload that did not happen, or an abandoned one whose object is deleted:
    /// forget it.
    Forget(String),
}

/// The ids of archivable events: received before parameter 1, after id parameter 2 and
/// below id parameter 4 (the [`super::retention::id_bound`] of parameter 1, so the walk
/// stops at the cutoff instead of reading every newer event), none of their deliveries
/// waiting and no redaction waiting for them (the archive gets the redacted event), oldest
/// first, at most parameter 3. The same text on both backends but for the sigil and
/// `also`, a backend's own condition on `e` (`TRUE` for none).
pub fn archivable_ids_sql(sigil: char, also: &str) -> String {
    format!(
        "SELECT e.id FROM events AS e
         WHERE e.received_at < {sigil}1 AND e.id > {sigil}2 AND e.id < {sigil}4
           AND NOT e.redaction_pending AND {NO_WAITING_DELIVERY} AND {also}
         ORDER BY e.id LIMIT {sigil}3"
    )
}

/// Whether an archive object is sealed with key parameter 1: a rekey does not reseal
/// objects (they are written once), so their key is never retired.
pub fn names_key_sql(sigil: char) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM archive_objects
                        WHERE sealed_with = {sigil}1 AND state <> 'abandoned')"
    )
}

/// The manifest's columns, in [`ArchiveObject`]'s order.
pub const COLUMNS: &str = "name, state, first_id, last_id, first_at, last_at, events, bytes, \
                           sealed_with, created_at";

/// Objects in state parameter 1, newest first, before name parameter 2 (`NULL`: from the
/// newest), at most parameter 3.
pub fn list_sql(sigil: char) -> String {
    format!(
        "SELECT {COLUMNS} FROM archive_objects
         WHERE state = {sigil}1 AND (CAST({sigil}2 AS TEXT) IS NULL OR name < {sigil}2)
         ORDER BY name DESC LIMIT {sigil}3"
    )
}
