//! Replay jobs: created running, advanced a step at a time (each step's deliveries and
//! progress together), finished, or cancelled (what waits is discarded).

use std::sync::Arc;

use super::fixtures::{LEASE, attempt, claim, event_on, insert, state_of};
use crate::id;
use crate::store::{
    AfterAttempt, Claim, NewReplay, ReplayDelivery, ReplayStep, ReplayWrite, Store,
};

fn create(id: &str, at: i64) -> ReplayWrite {
    ReplayWrite::Create(NewReplay {
        id: id.to_owned(),
        filter: r#"{"source":"s"}"#.into(),
        destination: Some("d".into()),
        rate: Some("5/s".into()),
        created_at_ms: at,
    })
}

/// A step that queues one delivery to `d` per event.
fn step(replay_id: &str, events: &[&str], now_ms: i64) -> ReplayStep {
    ReplayStep {
        replay_id: replay_id.to_owned(),
        cursor: events.last().map(|e| (*e).to_owned()),
        scanned: events.len() as i64,
        matched: events.len() as i64,
        deliveries: events
            .iter()
            .map(|e| ReplayDelivery {
                id: id::new(id::DELIVERY),
                event_id: (*e).to_owned(),
                route: crate::replay::DIRECT_ROUTE.into(),
                destination: "d".into(),
                needs_preparing: false,
                priority: 0,
            })
            .collect(),
        now_ms,
        finish: None,
    }
}

/// Events of source `s` with no routes of their own (so every delivery is the job's).
async fn events(store: &dyn Store, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            insert(
                store,
                event_on("s", &format!("k{i}"), 1_000 + i as i64, 1, &[]),
            )
            .await,
        );
    }
    ids
}

pub async fn a_replay_queues_marked_deliveries_and_records_its_progress(store: Arc<dyn Store>) {
    let e = events(&*store, 3).await;
    let job = id::new(id::REPLAY);
    assert_eq!(
        store.write_replay(create(&job, 10_000)).await.unwrap(),
        Some(true)
    );
    let fresh = store.get_replay(&job).await.unwrap().unwrap();
    assert_eq!(fresh.state, "running");
    assert_eq!(fresh.filter, r#"{"source":"s"}"#);
    assert_eq!(fresh.destination.as_deref(), Some("d"));
    assert_eq!(fresh.rate.as_deref(), Some("5/s"));
    assert_eq!(fresh.cursor, None);
    assert_eq!((fresh.scanned, fresh.matched, fresh.queued), (0, 0, 0));
    assert_eq!((fresh.created_at_ms, fresh.updated_at_ms), (10_000, 10_000));
    assert_eq!((fresh.finished_at_ms, fresh.error), (None, None));
    assert!(fresh.deliveries.is_empty());

    // Step one: the first event matched out of two scanned.
    let mut first = step(&job, &[&e[0]], 11_000);
    first.scanned = 2;
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(first))
            .await
            .unwrap(),
        Some(true)
    );
    let claimed = store.claim_deliveries(claim(11_000)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event_id, e[0]);
    assert_eq!(claimed[0].replay_id.as_deref(), Some(job.as_str()));
    assert_eq!(claimed[0].body, b"body of k0");

    // Step two queues the other two; the last, empty step ends the job and keeps the
    // cursor where it was.
    let second = step(&job, &[&e[1], &e[2]], 12_000);
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(second))
            .await
            .unwrap(),
        Some(true)
    );
    let mut last = step(&job, &[], 13_000);
    last.finish = Some(("done", None));
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(last))
            .await
            .unwrap(),
        Some(false)
    );
    let done = store.get_replay(&job).await.unwrap().unwrap();
    assert_eq!(done.state, "done");
    assert_eq!(done.cursor.as_deref(), Some(e[2].as_str()));
    assert_eq!((done.scanned, done.matched, done.queued), (4, 3, 3));
    assert_eq!(
        (done.updated_at_ms, done.finished_at_ms),
        (13_000, Some(13_000))
    );
    let mut per_state = done.deliveries.clone();
    per_state.sort();
    assert_eq!(
        per_state,
        [("in_flight".to_owned(), 1), ("pending".to_owned(), 2)]
    );

    // A finished job takes no more steps.
    let late = step(&job, &[&e[0]], 14_000);
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(late))
            .await
            .unwrap(),
        Some(false)
    );
    let after = store.get_replay(&job).await.unwrap().unwrap();
    assert_eq!(after.queued, 3);
    assert_eq!(after.deliveries.iter().map(|(_, n)| n).sum::<i64>(), 3);

    // A job that fails keeps its error.
    let failing = id::new(id::REPLAY);
    store.write_replay(create(&failing, 15_000)).await.unwrap();
    let mut broken = step(&failing, &[], 16_000);
    broken.finish = Some(("failed", Some("the filter does not compile".into())));
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(broken))
            .await
            .unwrap(),
        Some(false)
    );
    let failed = store.get_replay(&failing).await.unwrap().unwrap();
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.error.as_deref(), Some("the filter does not compile"));
    assert_eq!(failed.finished_at_ms, Some(16_000));

    let unknown = id::new(id::REPLAY);
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(step(&unknown, &[], 1)))
            .await
            .unwrap(),
        None
    );
    assert!(store.get_replay(&unknown).await.unwrap().is_none());
}

pub async fn cancelling_a_replay_discards_what_waits_and_stops_it(store: Arc<dyn Store>) {
    let e = events(&*store, 4).await;
    let job = id::new(id::REPLAY);
    store.write_replay(create(&job, 10_000)).await.unwrap();
    let queued = step(&job, &[&e[0], &e[1], &e[2]], 10_000);
    store
        .write_replay(ReplayWrite::Advance(queued))
        .await
        .unwrap();
    // One is being sent, one waits for its retry, one has not been tried.
    let two = Claim {
        limit: 2,
        ..claim(10_000)
    };
    let claimed = store.claim_deliveries(two).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store
        .record_attempt(attempt(
            &claimed[1],
            10_000,
            Some(503),
            AfterAttempt::RetryAt(99_000),
        ))
        .await
        .unwrap();

    assert_eq!(
        store
            .write_replay(ReplayWrite::Cancel {
                id: job.clone(),
                now_ms: 11_000
            })
            .await
            .unwrap(),
        Some(false)
    );
    let cancelled = store.get_replay(&job).await.unwrap().unwrap();
    assert_eq!(cancelled.state, "cancelled");
    assert_eq!(cancelled.finished_at_ms, Some(11_000));
    let mut per_state = cancelled.deliveries.clone();
    per_state.sort();
    assert_eq!(
        per_state,
        [("discarded".to_owned(), 2), ("in_flight".to_owned(), 1)]
    );
    assert!(
        store
            .claim_deliveries(claim(10_000 + LEASE - 1))
            .await
            .unwrap()
            .is_empty(),
        "nothing left to send but what is being sent"
    );
    // What was being sent finishes as it goes.
    store
        .record_attempt(attempt(
            &claimed[0],
            11_500,
            Some(200),
            AfterAttempt::Delivered,
        ))
        .await
        .unwrap();
    assert_eq!(state_of(&*store, &claimed[0].id).await.0, "delivered");
    // A step of the job still under way when the cancel came is not applied.
    let late = step(&job, &[&e[3]], 12_000);
    assert_eq!(
        store
            .write_replay(ReplayWrite::Advance(late))
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(store.get_replay(&job).await.unwrap().unwrap().queued, 3);

    // Done queuing but not sending: cancelled, its waiting delivery discarded.
    let unsent = id::new(id::REPLAY);
    store.write_replay(create(&unsent, 20_000)).await.unwrap();
    let mut all_at_once = step(&unsent, &[&e[3]], 20_000);
    all_at_once.finish = Some(("done", None));
    store
        .write_replay(ReplayWrite::Advance(all_at_once))
        .await
        .unwrap();
    store
        .write_replay(ReplayWrite::Cancel {
            id: unsent.clone(),
            now_ms: 21_000,
        })
        .await
        .unwrap();
    let unsent = store.get_replay(&unsent).await.unwrap().unwrap();
    assert_eq!(unsent.state, "cancelled");
    assert_eq!(unsent.deliveries, [("discarded".to_owned(), 1)]);

    // Done and all sent: nothing to cancel, it stays done.
    let finished = id::new(id::REPLAY);
    store.write_replay(create(&finished, 30_000)).await.unwrap();
    let mut nothing = step(&finished, &[], 30_000);
    nothing.finish = Some(("done", None));
    store
        .write_replay(ReplayWrite::Advance(nothing))
        .await
        .unwrap();
    store
        .write_replay(ReplayWrite::Cancel {
            id: finished.clone(),
            now_ms: 31_000,
        })
        .await
        .unwrap();
    let finished = store.get_replay(&finished).await.unwrap().unwrap();
    assert_eq!(finished.state, "done");
    assert_eq!(finished.finished_at_ms, Some(30_000));

    assert_eq!(
        store
            .write_replay(ReplayWrite::Cancel {
                id: id::new(id::REPLAY),
                now_ms: 1
            })
            .await
            .unwrap(),
        None
    );
}

pub async fn replays_are_listed_newest_first_and_running_only_to_resume(store: Arc<dyn Store>) {
    let jobs: Vec<String> = (0..3).map(|_| id::new(id::REPLAY)).collect();
    for (i, job) in jobs.iter().enumerate() {
        store
            .write_replay(create(job, 1_000 + i as i64))
            .await
            .unwrap();
    }
    let mut finish = step(&jobs[1], &[], 2_000);
    finish.finish = Some(("done", None));
    store
        .write_replay(ReplayWrite::Advance(finish))
        .await
        .unwrap();

    let listed = |running_only: bool, limit: usize| {
        let store = store.clone();
        async move {
            store
                .list_replays(running_only, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.id, r.state))
                .collect::<Vec<_>>()
        }
    };
    let entry = |i: usize, state: &str| (jobs[i].clone(), state.to_owned());
    assert_eq!(
        listed(false, 10).await,
        [entry(2, "running"), entry(1, "done"), entry(0, "running")]
    );
    assert_eq!(
        listed(true, 10).await,
        [entry(2, "running"), entry(0, "running")]
    );
    assert_eq!(
        listed(false, 2).await,
        [entry(2, "running"), entry(1, "done")]
    );
}
