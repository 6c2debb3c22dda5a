//! Encryption at rest, the same on every backend: a store opened again with other keys
//! refuses a changed or missing key by its id, reads data sealed with an older key,
//! and a rekey moves every table to the active key (or back to plain), after which the
//! old keys are retired and may go.
//!
//! These checks reopen one store with different keys, so a backend runs them with a
//! [`Reopen`] of its own rather than through [`super::Fresh`]. The whole conformance
//! suite also runs on a sealed store of each backend (`sealed_conformance`), which is
//! what shows every read opens what every write sealed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;

use super::fixtures::{LEASE, attempt, claim, event, prepared, request, waiting};
use crate::id;
use crate::store::rekey::{Retired, SealedTable};
use crate::store::seal::{KeyBytes, Keys};
use crate::store::{AfterAttempt, Inserted, NewRejected, Preparation, Store, StoreError};

/// Opens one store (one SQLite file, one PostgreSQL schema) again and again.
#[async_trait]
pub trait Reopen: Send + Sync {
    async fn open(&self, keys: Keys) -> Result<Arc<dyn Store>, StoreError>;
}

/// Keys `k1`, `k2`, … with bytes `[n; 32]`, `active` among them.
pub fn keys(ids: &[(&str, u8)], active: Option<&str>) -> Keys {
    Keys {
        keys: ids
            .iter()
            .map(|(id, byte)| ((*id).to_owned(), KeyBytes([*byte; 32])))
            .collect::<BTreeMap<_, _>>(),
        active: active.map(str::to_owned),
    }
}

/// The keys the sealed conformance suite runs with.
pub fn suite_keys() -> Keys {
    keys(&[("suite", 7)], Some("suite"))
}

/// What a backend's own test looks for where the store keeps its data: it must be there
/// in a plain store (so the test can see it) and nowhere in a sealed one.
pub const MARKERS: [&[u8]; 2] = [b"4242-marker-body", b"marker-header-value"];

/// Stores an event whose body and headers carry [`MARKERS`], and reads it back in the
/// clear; returns its id.
pub async fn store_marked(store: &dyn Store) -> String {
    let mut e = event("s", "k", 1, 3_600_000);
    e.body = Bytes::from_static(b"{\"card\":\"4242-marker-body\"}");
    e.headers = b"x-token: marker-header-value\r\n".to_vec();
    let id = e.id.clone();
    store.insert_event(e).await.unwrap();
    let stored = store.get_event(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.request.body.as_deref(),
        Some(&b"{\"card\":\"4242-marker-body\"}"[..])
    );
    id
}

/// What the check stores, to read back after each reopening.
struct Stored {
    event: String,
    split: String,
    rejected: String,
    delivery_with_attempt: String,
    parts: Vec<String>,
}

async fn fill(store: &dyn Store) -> Stored {
    let t0 = 1_000_000;
    let mut plain = event("s", "plain", t0, 60_000);
    plain.headers.extend_from_slice(b"x-secret: card 4242\r\n");
    let event_id = plain.id.clone();
    store.insert_event(plain).await.unwrap();
    // A repeat within the window: a duplicate row with the request's headers.
    let repeat = event("s", "plain", t0 + 1, 60_000);
    assert!(matches!(
        store.insert_event(repeat).await.unwrap(),
        Inserted::Duplicate { .. }
    ));
    let split = waiting("split", t0 + 2);
    let split_id = split.id.clone();
    store.insert_event(split).await.unwrap();
    let waiting = store.unprepared(10, &[]).await.unwrap();
    store
        .prepare(
            vec![prepared(
                &waiting[0],
                None,
                Preparation::Bodies(vec![br#"{"part":1}"#.to_vec(), br#"{"part":2}"#.to_vec()]),
            )],
            t0 + 3,
        )
        .await
        .unwrap();
    let mut req = request("s", "denied", t0 + 4);
    req.headers
        .insert("x-signature", HeaderValue::from_static("wrong"));
    req.body = Bytes::from_static(b"rejected body");
    let rejected = NewRejected::new(req, id::new(id::REJECTED), "bad signature".into(), 1024);
    let rejected_id = rejected.id.clone();
    store.insert_rejected(rejected).await.unwrap();
    let claimed = store.claim_deliveries(claim(t0 + 5)).await.unwrap();
    let first = claimed
        .iter()
        .find(|d| d.event_id == event_id)
        .expect("the plain event's delivery is claimed");
    store
        .record_attempt(attempt(first, t0 + 5, Some(500), AfterAttempt::Dead))
        .await
        .unwrap();
    let mut parts: Vec<String> = claimed
        .iter()
        .filter(|d| d.event_id == split_id)
        .map(|d| d.id.clone())
        .collect();
    parts.sort();
    assert_eq!(parts.len(), 2, "both parts of the split are claimed");
    Stored {
        event: event_id,
        split: split_id,
        rejected: rejected_id,
        delivery_with_attempt: first.id.clone(),
        parts,
    }
}

/// Reads back everything [`fill`] stored, in the clear; `round` (1, 2, …) sets a claim
/// time past the leases of the rounds before.
async fn read_back(store: &dyn Store, s: &Stored, round: i64) {
    let e = store.get_event(&s.event).await.unwrap().expect("the event");
    assert_eq!(e.request.body.as_deref(), Some(&b"body of plain"[..]));
    assert_eq!(e.request.body_size, 13);
    assert_eq!(
        e.request.headers,
        vec![("x-secret".to_owned(), b"card 4242".to_vec())]
    );
    assert_eq!(e.duplicates, 1);
    let listed = store
        .list_events(crate::store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        listed.iter().all(|e| e.request.body_size == 13),
        "sizes as received in listings: {:?}",
        listed
            .iter()
            .map(|e| e.request.body_size)
            .collect::<Vec<_>>()
    );
    let r = store
        .get_rejected(&s.rejected)
        .await
        .unwrap()
        .expect("the rejected request");
    assert_eq!(r.request.body.as_deref(), Some(&b"rejected body"[..]));
    assert_eq!(
        r.request.headers,
        vec![("x-signature".to_owned(), b"wrong".to_vec())]
    );
    let d = store
        .get_delivery(&s.delivery_with_attempt)
        .await
        .unwrap()
        .expect("the delivery");
    assert_eq!(d.attempt_log.len(), 1);
    assert_eq!(d.attempt_log[0].response_body, b"nope");
    assert_eq!(
        d.attempt_log[0].response_headers,
        vec![("content-type".to_owned(), b"text/plain".to_vec())]
    );
    for (i, part) in s.parts.iter().enumerate() {
        let d = store.get_delivery(part).await.unwrap().expect("a part");
        assert_eq!(d.event_id, s.split);
        let expected = format!(r#"{{"part":{}}}"#, d.part.unwrap_or(0));
        assert_eq!(
            d.payload.as_deref(),
            Some(expected.as_bytes()),
            "part {i} ({part})"
        );
    }
    // Claims open what they send: the parts' leases end, and they come again.
    let again = store
        .claim_deliveries(claim(1_000_000 + round * 10 * LEASE))
        .await
        .unwrap();
    assert_eq!(
        again.iter().filter(|d| d.event_id == s.split).count(),
        2,
        "the parts' leases have ended"
    );
    for d in again.iter().filter(|d| d.event_id == s.split) {
        let expected = format!(r#"{{"part":{}}}"#, d.part.unwrap_or(0));
        assert_eq!(d.payload.as_deref(), Some(expected.as_bytes()));
        assert_eq!(d.body, b"body of split");
    }
}

/// Runs a whole rekey pass; returns the rows rewritten per table.
async fn rekey(store: &dyn Store) -> BTreeMap<&'static str, usize> {
    let mut resealed = BTreeMap::new();
    for table in SealedTable::ALL {
        let mut after = String::new();
        loop {
            // Batches of 2, so the walk goes on from a cursor.
            let step = store.reseal(table, after.clone(), 2).await.unwrap();
            assert_eq!(step.unreadable, 0, "{:?}", step.first_error);
            *resealed.entry(table.columns().0).or_default() += step.resealed;
            match step.last {
                Some(last) => after = last,
                None => break,
            }
        }
    }
    resealed
}

fn expect_keys_error(opened: Result<Arc<dyn Store>, StoreError>, needle: &str) {
    match opened {
        Err(e @ StoreError::Keys(_)) => {
            assert!(e.to_string().contains(needle), "{e} should name {needle}")
        }
        Err(other) => panic!("expected a key error naming {needle}, got {other}"),
        Ok(_) => panic!("opened with keys that do not fit (expected {needle})"),
    }
}

pub async fn keys_rotate_and_a_rekey_moves_every_table(reopen: &dyn Reopen) {
    let all_rows = BTreeMap::from([
        ("deliveries", 2),
        ("duplicates", 1),
        ("events", 2),
        ("attempts", 1),
        ("rejected", 1),
    ]);
    let store = reopen.open(keys(&[("k1", 1)], Some("k1"))).await.unwrap();
    let stored = fill(store.as_ref()).await;
    read_back(store.as_ref(), &stored, 1).await;
    let nothing = rekey(store.as_ref()).await;
    assert!(
        nothing.values().all(|n| *n == 0),
        "all sealed with the active key already: {nothing:?}"
    );
    store.close().await;

    // k1 left out, or changed under its id: refused at start, by name.
    expect_keys_error(
        reopen.open(keys(&[("k2", 2)], Some("k2"))).await,
        "sealed with key \"k1\"",
    );
    expect_keys_error(
        reopen.open(keys(&[("k1", 9), ("k2", 2)], Some("k2"))).await,
        "storage.encryption.keys.k1",
    );
    expect_keys_error(reopen.open(Keys::default()).await, "\"k1\"");

    // Rotated: k1 still opens what it sealed; a rekey moves everything to k2.
    let store = reopen
        .open(keys(&[("k1", 1), ("k2", 2)], Some("k2")))
        .await
        .unwrap();
    read_back(store.as_ref(), &stored, 2).await;
    // Retiring before the rekey keeps k1: rows still name it.
    assert_eq!(
        store.retire_keys().await.unwrap(),
        Retired {
            retired: Vec::new(),
            still_used: vec!["k1".to_owned()]
        }
    );
    assert_eq!(rekey(store.as_ref()).await, all_rows);
    assert!(rekey(store.as_ref()).await.values().all(|n| *n == 0));
    assert_eq!(
        store.retire_keys().await.unwrap().retired,
        vec!["k1".to_owned()]
    );
    read_back(store.as_ref(), &stored, 3).await;
    store.close().await;

    // k1 may go now; with no active key a rekey opens everything again.
    let store = reopen.open(keys(&[("k2", 2)], Some("k2"))).await.unwrap();
    read_back(store.as_ref(), &stored, 4).await;
    store.close().await;
    let store = reopen.open(keys(&[("k2", 2)], None)).await.unwrap();
    assert_eq!(rekey(store.as_ref()).await, all_rows);
    assert_eq!(
        store.retire_keys().await.unwrap(),
        Retired {
            retired: vec!["k2".to_owned()],
            still_used: Vec::new()
        }
    );
    store.close().await;
    let store = reopen.open(Keys::default()).await.unwrap();
    read_back(store.as_ref(), &stored, 5).await;
    // And on again: plain rows are sealed by a rekey, a retired id comes back to use.
    store.close().await;
    let store = reopen.open(keys(&[("k2", 2)], Some("k2"))).await.unwrap();
    assert_eq!(rekey(store.as_ref()).await, all_rows);
    read_back(store.as_ref(), &stored, 6).await;
    store.close().await;
    expect_keys_error(reopen.open(Keys::default()).await, "\"k2\"");
}
