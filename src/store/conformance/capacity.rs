//! The size cap's side of the store: usage that grows with what is stored, eviction of
//! the oldest events nothing waits for (never a waiting or dead one), with the rejected
//! requests of their time, and reclaiming freed space.

use std::sync::Arc;

use super::fixtures::{HOUR_MS, attempt_at, event_at, request};
use crate::id;
use crate::store::capacity::Evict;
use crate::store::{AfterAttempt, NewRejected, Store};

pub async fn eviction_takes_the_oldest_finished_events_and_keeps_waiting_ones(
    store: Arc<dyn Store>,
) {
    let empty = store.usage().await.unwrap();
    assert!(empty.used > 0 && empty.allocated >= empty.used, "{empty:?}");
    let now = crate::clock::now_ms();
    let at = |hours: i64| now - 10 * HOUR_MS + hours * HOUR_MS;
    // In receive order: delivered, dead, retrying, pending, delivered, delivered.
    let first = event_at(&*store, "a", "k1", at(0)).await;
    attempt_at(&*store, "a", at(0), AfterAttempt::Delivered).await;
    let dead = event_at(&*store, "a", "k2", at(1)).await;
    attempt_at(&*store, "a", at(1), AfterAttempt::Dead).await;
    let retrying = event_at(&*store, "a", "k3", at(2)).await;
    attempt_at(&*store, "a", at(2), AfterAttempt::RetryAt(now + HOUR_MS)).await;
    let pending = event_at(&*store, "b", "k4", at(3)).await;
    let second = event_at(&*store, "c", "k5", at(4)).await;
    attempt_at(&*store, "c", at(4), AfterAttempt::Delivered).await;
    let third = event_at(&*store, "c", "k6", at(5)).await;
    attempt_at(&*store, "c", at(5), AfterAttempt::Delivered).await;
    // The newest event is never evicted (SQLite would hand its rowid out again): it
    // waits anyway.
    let newest = event_at(&*store, "d", "k7", at(6)).await;
    // Rejected requests from before the second event and after it.
    let mut rejected = Vec::new();
    for hours in [0, 9] {
        let r = NewRejected::new(
            request("a", "r", at(hours)),
            id::new_at(id::REJECTED, at(hours)),
            "bad signature".to_owned(),
            64,
        );
        rejected.push(r.id.clone());
        store.insert_rejected(r).await.unwrap();
    }
    // Counted in whole pages: a few small rows may fit in the pages already there.
    let filled = store.usage().await.unwrap();
    assert!(filled.used >= empty.used, "{empty:?} then {filled:?}");

    let pass = store
        .evict(&Evict {
            limit: 2,
            after: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        (pass.events, pass.rejected, pass.last.as_deref()),
        (2, 1, Some(second.as_str())),
        "the two oldest delivered events, walking past the waiting ones, and the rejected request from before them"
    );
    let exists = |id: String| {
        let store = store.clone();
        async move { store.get_event(&id).await.unwrap().is_some() }
    };
    assert!(!exists(first.clone()).await && !exists(second.clone()).await);
    for waiting in [&dead, &retrying, &pending, &third] {
        assert!(exists(waiting.clone()).await, "{waiting} kept");
    }
    assert!(store.get_rejected(&rejected[0]).await.unwrap().is_none());
    assert!(store.get_rejected(&rejected[1]).await.unwrap().is_some());

    // The next pass goes on after the cursor: the third event, but not the rejected
    // request received after it.
    let pass = store
        .evict(&Evict {
            limit: 2,
            after: second,
        })
        .await
        .unwrap();
    assert_eq!((pass.events, pass.rejected), (1, 0), "{pass:?}");
    assert!(!exists(third).await);
    // Only waiting and dead events are left: the rejected requests go, oldest first,
    // and then nothing more.
    let from_start = Evict {
        limit: 10,
        after: String::new(),
    };
    let pass = store.evict(&from_start).await.unwrap();
    assert_eq!((pass.events, pass.rejected), (0, 1), "{pass:?}");
    assert!(store.get_rejected(&rejected[1]).await.unwrap().is_none());
    let pass = store.evict(&from_start).await.unwrap();
    assert!(pass.is_empty(), "{pass:?}");
    for waiting in [dead, retrying, pending, newest] {
        assert!(exists(waiting).await);
    }
    store.reclaim(64 * 1024 * 1024).await.unwrap();
    let after = store.usage().await.unwrap();
    assert!(after.allocated >= after.used, "{after:?}");
}
