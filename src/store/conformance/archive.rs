//! The cold archive's side of the store: which events are archivable, and the manifest's
//! steps, under which an object's events leave the store only once it is written.

use std::sync::Arc;

use super::fixtures::{HOUR_MS, attempt_at, event_at, event_on, insert};
use crate::store::archive::{ArchiveObject, ArchiveStep};
use crate::store::{AfterAttempt, Store};

fn object(name: &str, first: &str, last: &str, at: i64) -> ArchiveObject {
    ArchiveObject {
        name: name.to_owned(),
        state: "uploading".to_owned(),
        first_id: first.to_owned(),
        last_id: last.to_owned(),
        first_at_ms: at,
        last_at_ms: at,
        events: 2,
        bytes: 100,
        sealed_with: None,
        created_at_ms: at,
    }
}

pub async fn archiving_takes_old_finished_events_and_removes_them_only_when_done(
    store: Arc<dyn Store>,
) {
    let now = crate::clock::now_ms();
    let old = now - 10 * HOUR_MS;
    let first = event_at(&*store, "a", "k1", old).await;
    attempt_at(&*store, "a", old, AfterAttempt::Delivered).await;
    let dead = event_at(&*store, "a", "k2", old + 1).await;
    attempt_at(&*store, "a", old + 1, AfterAttempt::Dead).await;
    let second = event_at(&*store, "b", "k3", old + 2).await;
    attempt_at(&*store, "b", old + 2, AfterAttempt::Delivered).await;
    // Delivered, but its `redact` rule (`when = "delivered"`) has not been applied yet:
    // the archive waits for the redacted event.
    let mut unredacted = event_on("d", "k5", old + 3, 1, &[("r", "d")]);
    unredacted.id = crate::id::new_at(crate::id::EVENT, old + 3);
    unredacted.pending_rule = Some(r#"{"headers":["x-secret"]}"#.to_owned());
    insert(&*store, unredacted).await;
    attempt_at(&*store, "d", old + 3, AfterAttempt::Delivered).await;
    let recent = event_at(&*store, "c", "k4", now).await;
    attempt_at(&*store, "c", now, AfterAttempt::Delivered).await;

    // Before an hour ago, nothing waiting: the two delivered old events, whole (not the
    // one whose redaction waits).
    let before = now - HOUR_MS;
    let found = store.archivable(before, "", 10).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|e| e.request.id.as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert_eq!(found[0].request.body.as_deref(), Some(&b"body of k1"[..]));
    assert_eq!(found[0].deliveries.len(), 1);
    assert_eq!(store.archivable(before, &first, 10).await.unwrap().len(), 1);

    // Noted, then written: the events leave the store.
    let name = "events/one.ndjson.zst";
    store
        .archive_step(ArchiveStep::Begin(object(name, &first, &second, old)))
        .await
        .unwrap();
    let uploading = store.list_archive("uploading", None, 10).await.unwrap();
    assert_eq!(uploading.len(), 1);
    assert_eq!(uploading[0], object(name, &first, &second, old));
    assert!(
        store.get_event(&first).await.unwrap().is_some(),
        "still here while uploading"
    );
    let finish = || ArchiveStep::Finish {
        name: name.to_owned(),
        ids: vec![first.clone(), dead.clone(), second.clone()],
    };
    assert_eq!(store.archive_step(finish()).await.unwrap(), Some(2));
    assert!(store.get_event(&first).await.unwrap().is_none());
    assert!(store.get_event(&second).await.unwrap().is_none());
    assert!(
        store.get_event(&dead).await.unwrap().is_some(),
        "a dead letter named by mistake stays"
    );
    assert!(store.get_event(&recent).await.unwrap().is_some());
    let done = store.list_archive("done", None, 10).await.unwrap();
    assert_eq!((done.len(), done[0].state.as_str()), (1, "done"));
    assert!(
        store
            .list_archive("uploading", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Finished once: a second finish (a process that lost the race) does nothing.
    assert_eq!(store.archive_step(finish()).await.unwrap(), None);

    // An upload abandoned by a crash: marked so once (after which it cannot finish),
    // its events staying in the store; a finished upload cannot be marked.
    let abandoned = "events/two.ndjson.zst";
    store
        .archive_step(ArchiveStep::Begin(object(abandoned, &recent, &recent, now)))
        .await
        .unwrap();
    let abandon = |name: &str| ArchiveStep::Abandon(name.to_owned());
    assert_eq!(
        store.archive_step(abandon(abandoned)).await.unwrap(),
        Some(0)
    );
    assert_eq!(store.archive_step(abandon(abandoned)).await.unwrap(), None);
    assert_eq!(
        store.archive_step(abandon(name)).await.unwrap(),
        None,
        "done stays done"
    );
    assert_eq!(
        store
            .list_archive("abandoned", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .archive_step(ArchiveStep::Finish {
                name: abandoned.to_owned(),
                ids: vec![recent.clone()],
            })
            .await
            .unwrap(),
        None,
        "an abandoned upload removes nothing"
    );
    assert!(store.get_event(&recent).await.unwrap().is_some());
    store
        .archive_step(ArchiveStep::Forget(abandoned.to_owned()))
        .await
        .unwrap();
    assert!(
        store
            .list_archive("abandoned", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Listing pages newest first by name.
    let page = store
        .list_archive("done", Some("events/zzz".to_owned()), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert!(
        store
            .list_archive("done", Some(name.to_owned()), 10)
            .await
            .unwrap()
            .is_empty()
    );
}
