//! Retention: old data goes in bounded passes, per source, and nothing still waiting
//! for delivery goes with it.

use std::sync::Arc;

use super::fixtures::{
    HOUR_MS, attempt, attempt_at, claim_to, event_at, event_on, request, state_of,
};
use crate::id;
use crate::store::{
    AfterAttempt, Cutoffs, Inserted, NewRejected, NewReplay, Purge, Purged, ReplayDelivery,
    ReplayStep, ReplayWrite, Store,
};

const DAY_MS: i64 = 24 * HOUR_MS;

/// Repeats passes until one comes back short, as the maintenance loop does.
async fn purge_all(store: &dyn Store, purge: &Purge) -> (Purged, usize) {
    let (mut total, mut passes) = (Purged::default(), 0);
    let mut purge = purge.clone();
    loop {
        let purged = store.purge(&purge).await.unwrap();
        total.add(&purged);
        purge.after(&purged);
        passes += 1;
        if !purged.is_full(purge.limit) {
            return (total, passes);
        }
    }
}

pub async fn retention_purges_old_finished_data_per_source_and_keeps_waiting_work(
    store: Arc<dyn Store>,
) {
    let now = crate::clock::now_ms();
    let old = now - 40 * DAY_MS;
    let recent = now - DAY_MS;

    // Source a: one old event of each fate, and a recent delivered one.
    let a_delivered = event_at(&*store, "a", "a1", old).await;
    let a_delivered_dlv = attempt_at(&*store, "a", old, AfterAttempt::Delivered).await;
    let a_dead = event_at(&*store, "a", "a2", old).await;
    attempt_at(&*store, "a", old, AfterAttempt::Dead).await;
    let a_retrying = event_at(&*store, "a", "a3", old).await;
    attempt_at(&*store, "a", old, AfterAttempt::RetryAt(now + HOUR_MS)).await;
    let a_pending = event_at(&*store, "a", "a4", old).await;
    let a_recent = event_at(&*store, "b-recent", "a5", recent).await;
    // Source b keeps events forever, attempts for a week.
    let b_old = event_at(&*store, "b", "b1", old).await;
    let b_dlv = attempt_at(&*store, "b", old, AfterAttempt::Delivered).await;
    // Source gone is no longer configured: the default for others applies.
    let gone = event_at(&*store, "gone", "g1", old).await;
    attempt_at(&*store, "gone", old, AfterAttempt::Delivered).await;
    let second_gone = event_at(&*store, "gone", "g2", old + 1).await;
    attempt_at(&*store, "gone", old + 1, AfterAttempt::Delivered).await;
    // The newest event is never purged (SQLite would hand its rowid out again): it
    // waits anyway.
    event_at(&*store, "a", "a6", recent).await;
    // Rejected requests: an old and a recent one of a.
    let mut rejected_ids = Vec::new();
    for at in [old, recent] {
        let rejected = NewRejected::new(
            request("a", "r", at),
            id::new_at(id::REJECTED, at),
            "bad signature".to_owned(),
            64,
        );
        rejected_ids.push(rejected.id.clone());
        store.insert_rejected(rejected).await.unwrap();
    }

    let thirty_days = Cutoffs {
        events: Some(now - 30 * DAY_MS),
        attempts: Some(now - 30 * DAY_MS),
        rejected: Some(now - 3 * DAY_MS),
    };
    let purge = Purge {
        sources: vec![
            ("a".to_owned(), thirty_days),
            ("b-recent".to_owned(), thirty_days),
            (
                "b".to_owned(),
                Cutoffs {
                    events: None,
                    attempts: Some(now - 7 * DAY_MS),
                    rejected: None,
                },
            ),
        ],
        others: thirty_days,
        // One row of each kind per pass: the walk must resume where it stopped.
        limit: 1,
        attempts_after: Default::default(),
    };
    let (purged, passes) = purge_all(&*store, &purge).await;
    assert_eq!(
        (purged.events, purged.rejected),
        (3, 1),
        "a's delivered event and gone's two events; a's old rejected request"
    );
    // b's attempt; gone's go with their events, or before them when a pass has room
    // for attempts but not for events.
    assert!((1..=3).contains(&purged.attempts), "{purged:?}");
    assert!(passes >= 3, "one event per pass: {passes} passes");

    let exists = |id: String| {
        let store = store.clone();
        async move { store.get_event(&id).await.unwrap().is_some() }
    };
    assert!(
        !exists(a_delivered.clone()).await,
        "old and delivered: purged"
    );
    assert!(
        store
            .get_delivery(&a_delivered_dlv)
            .await
            .unwrap()
            .is_none(),
        "its delivery went with it"
    );
    assert!(exists(a_dead).await, "a dead letter waits for the user");
    assert!(exists(a_retrying).await, "a retrying delivery waits");
    assert!(exists(a_pending).await, "a pending delivery waits");
    assert!(exists(a_recent).await, "recent: kept");
    assert!(exists(b_old).await, "b keeps events forever");
    let b = store
        .get_delivery(&b_dlv)
        .await
        .unwrap()
        .expect("b's delivery");
    assert!(b.attempt_log.is_empty(), "b's old attempt purged");
    assert_eq!(state_of(&*store, &b_dlv).await, ("delivered".to_owned(), 1));
    assert!(!exists(gone).await && !exists(second_gone).await);
    assert!(
        store
            .get_rejected(&rejected_ids[0])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_rejected(&rejected_ids[1])
            .await
            .unwrap()
            .is_some()
    );

    // Nothing more is due: a second round removes nothing.
    assert_eq!(store.purge(&purge).await.unwrap(), Purged::default());

    // A purged event no longer counts for dedup, however long the window: its key is
    // new again.
    let repeat = store
        .insert_event(event_on("a", "a1", now, 100 * DAY_MS, &[("r", "a")]))
        .await
        .unwrap();
    assert!(matches!(repeat, Inserted::New { .. }), "{repeat:?}");
}

pub async fn a_replay_step_skips_events_retention_removed_meanwhile(store: Arc<dyn Store>) {
    let now = crate::clock::now_ms();
    let old = now - 40 * DAY_MS;
    let gone = event_at(&*store, "s", "gone", old).await;
    attempt_at(&*store, "s", old, AfterAttempt::Delivered).await;
    let kept = event_at(&*store, "s", "kept", now - DAY_MS).await;
    attempt_at(&*store, "s", now - DAY_MS, AfterAttempt::Delivered).await;
    let job = id::new(id::REPLAY);
    store
        .write_replay(ReplayWrite::Create(NewReplay {
            id: job.clone(),
            filter: r#"{"source":"s"}"#.into(),
            destination: Some("s".into()),
            rate: None,
            created_at_ms: now,
        }))
        .await
        .unwrap();
    // The job has read both events; retention removes the old one before its step.
    let purge = super::fixtures::purge_events_before("s", now - 30 * DAY_MS);
    assert_eq!(store.purge(&purge).await.unwrap().events, 1);
    let step = ReplayStep {
        replay_id: job.clone(),
        cursor: Some(kept.clone()),
        scanned: 2,
        matched: 2,
        deliveries: [&gone, &kept]
            .iter()
            .map(|e| ReplayDelivery {
                id: id::new(id::DELIVERY),
                event_id: (*e).clone(),
                route: crate::replay::DIRECT_ROUTE.into(),
                destination: "s".into(),
                needs_preparing: false,
                priority: 0,
            })
            .collect(),
        now_ms: now,
        finish: None,
    };
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(step))
            .await
            .unwrap(),
        Some(true),
        "the job goes on"
    );
    let replay = store.get_replay(&job).await.unwrap().unwrap();
    assert_eq!((replay.state.as_str(), replay.queued), ("running", 1));
    let queued = store.get_event(&kept).await.unwrap().unwrap();
    assert_eq!(
        queued.deliveries.len(),
        2,
        "the kept event got its replay delivery"
    );
}

/// A round carries, per source, the last attempt a pass removed: the next pass walks on
/// from there, so attempts kept below it (their delivery still retrying) are not walked
/// again; one whose delivery finishes meanwhile goes in the next round, which starts
/// from the beginning.
pub async fn attempt_retention_walks_on_from_the_last_removed_attempt(store: Arc<dyn Store>) {
    let now = crate::clock::now_ms();
    let old = now - 40 * DAY_MS;
    // Two old events of source c, each with one delivery to destination c.
    event_at(&*store, "c", "c1", old).await;
    let kept = attempt_at(&*store, "c", old, AfterAttempt::RetryAt(old + 1)).await;
    event_at(&*store, "c", "c2", old + 1).await;
    let claimed = store
        .claim_deliveries(claim_to("c", old + 2))
        .await
        .unwrap();
    let done = claimed
        .iter()
        .find(|d| d.id != kept)
        .expect("the second delivery");
    let mut record = attempt(done, old + 2, Some(200), AfterAttempt::Delivered);
    record.id = id::new_at(id::ATTEMPT, old + 2);
    store.record_attempt(record).await.unwrap();
    let retry = claimed.iter().find(|d| d.id == kept).expect("the retry");

    let cutoffs = Cutoffs {
        events: None,
        attempts: Some(now - 30 * DAY_MS),
        rejected: None,
    };
    let mut purge = Purge {
        sources: vec![("c".to_owned(), cutoffs)],
        others: Cutoffs::default(),
        limit: 10,
        attempts_after: Default::default(),
    };
    let first = store.purge(&purge).await.unwrap();
    assert_eq!(
        first.attempts, 1,
        "the delivered one's; the retrying one's is kept"
    );
    assert!(first.attempts_upto.contains_key("c"));

    // The kept attempt's delivery now finishes, with an attempt of today.
    let mut today = attempt(retry, now, Some(200), AfterAttempt::Delivered);
    today.id = id::new_at(id::ATTEMPT, now);
    store.record_attempt(today).await.unwrap();
    purge.after(&first);
    let same_round = store.purge(&purge).await.unwrap();
    assert_eq!(same_round.attempts, 0, "below the cursor: not walked again");
    purge.attempts_after.clear();
    let next_round = store.purge(&purge).await.unwrap();
    assert_eq!(next_round.attempts, 1, "a new round walks from the start");
    let log = store
        .get_delivery(&kept)
        .await
        .unwrap()
        .unwrap()
        .attempt_log;
    assert_eq!(log.len(), 1, "today's attempt is kept: {log:?}");
}

/// Finished replay jobs go after `[storage] retention.events`, counted from when they
/// finished; a running one stays.
pub async fn finished_replay_jobs_are_purged_after_the_retention(store: Arc<dyn Store>) {
    let now = crate::clock::now_ms();
    let old = now - 40 * DAY_MS;
    let create = |id: &str, at: i64| {
        ReplayWrite::Create(NewReplay {
            id: id.to_owned(),
            filter: "{}".into(),
            destination: None,
            rate: None,
            created_at_ms: at,
        })
    };
    let (finished_long_ago, finished_lately, running) = (
        id::new_at(id::REPLAY, old),
        id::new_at(id::REPLAY, old + 1),
        id::new_at(id::REPLAY, old + 2),
    );
    for job in [&finished_long_ago, &finished_lately, &running] {
        store.write_replay(create(job, old)).await.unwrap();
    }
    for (job, at) in [(&finished_long_ago, old), (&finished_lately, now)] {
        store
            .write_replay(ReplayWrite::Cancel {
                id: job.clone(),
                now_ms: at,
            })
            .await
            .unwrap();
    }
    let purge = Purge {
        sources: Vec::new(),
        others: Cutoffs {
            events: Some(now - 30 * DAY_MS),
            ..Cutoffs::default()
        },
        limit: 10,
        attempts_after: Default::default(),
    };
    assert_eq!(store.purge(&purge).await.unwrap().replays, 1);
    assert!(
        store
            .get_replay(&finished_long_ago)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_replay(&finished_lately).await.unwrap().is_some());
    assert!(store.get_replay(&running).await.unwrap().is_some());
}
