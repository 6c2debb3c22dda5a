//! Crash safety: SIGKILL the real binary at a random moment while many senders post;
//! after each restart every acknowledged event is there, byte for byte.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use serde_json::Value;
use tokio::sync::{Mutex, Notify};

use crate::support::binary::{spawn_serve, write_config};

const ROUNDS: usize = 5;
const SENDERS: usize = 32;

/// A body unique to (round, sender, n); every fourth one is not UTF-8.
fn body_for(round: usize, sender: usize, n: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"round":{round},"sender":{sender},"n":{n},"pad":""#).into_bytes();
    body.extend(std::iter::repeat_n(b'x', (n * 37) % 900));
    body.extend_from_slice(b"\"}");
    if n % 4 == 3 {
        body.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80]);
    }
    body
}

/// A kill point between 20 and 400 acknowledgements, varying from run to run.
fn random_kill_point() -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    20 + nanos % 380
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[sources.load]\n[destinations.d]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n[[routes]]\nsource = \"load\"\ndestination = \"d\"\n",
    );
    let client = crate::support::client();
    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let mut errors_after_kill = 0usize;

    for round in 0..ROUNDS {
        let mut process = spawn_serve(&config);
        let url = format!("http://{}/in/load", process.ingest);
        let kill_at = random_kill_point();
        let count = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(Notify::new());
        let mut senders = Vec::new();
        for sender in 0..SENDERS {
            let (client, url, acked, count, reached) = (
                client.clone(),
                url.clone(),
                acked.clone(),
                count.clone(),
                reached.clone(),
            );
            senders.push(tokio::spawn(async move {
                let mut failures = 0;
                for n in 0..10_000 {
                    let body = body_for(round, sender, n);
                    let answer = client.post(&url).body(body.clone()).send().await;
                    let Ok(r) = answer else {
                        failures += 1;
                        break;
                    };
                    if r.status() != 200 {
                        failures += 1;
                        break;
                    }
                    let Ok(json) = r.json::<Value>().await else {
                        failures += 1;
                        break;
                    };
                    let id = json["id"].as_str().expect("id").to_owned();
                    acked.lock().await.insert(id, body);
                    if count.fetch_add(1, Ordering::SeqCst) + 1 == kill_at {
                        reached.notify_one();
                    }
                }
                failures
            }));
        }
        // Bounded: if every sender failed before the kill point, fail instead of hanging.
        tokio::time::timeout(std::time::Duration::from_secs(120), reached.notified())
            .await
            .unwrap_or_else(|_| panic!("round {round}: {kill_at} acks never arrived"));
        process.child.kill().expect("SIGKILL");
        process.child.wait().unwrap();
        for s in senders {
            errors_after_kill += s.await.unwrap();
        }
        drop(process);

        // Restart and read back everything acknowledged so far, in every round.
        let process = spawn_serve(&config);
        let acked = acked.lock().await;
        for (id, body) in acked.iter() {
            let event: Value = client
                .get(format!("http://{}/api/v1/events/{id}", process.admin))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let stored = match (event["body"].as_str(), event["body_base64"].as_str()) {
                (Some(t), _) => t.as_bytes().to_vec(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                _ => panic!("round {round}: acknowledged event {id} is missing: {event}"),
            };
            assert_eq!(&stored, body, "round {round}: body of {id} differs");
            assert_eq!(
                event["deliveries"].as_array().unwrap().len(),
                1,
                "{id} lost its delivery"
            );
        }
        eprintln!(
            "crash round {round}: killed after {} acks (target {kill_at}); {} acknowledged events verified",
            count.load(Ordering::SeqCst),
            acked.len()
        );
    }
    let total = acked.lock().await.len();
    eprintln!(
        "crash test: {ROUNDS} SIGKILLs, {total} acknowledged events all present and byte-identical; {errors_after_kill} in-flight requests cut off unacknowledged"
    );
    assert!(total >= ROUNDS * 20);
}

/// Delivery across crashes: SIGKILL the server several times while it works through a
/// backlog; every acknowledged event reaches the receiver at least once, and duplicates
/// come only from sends cut off mid-flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_delivered_across_sigkills() {
    const EVENTS: usize = 400;
    const KILLS: usize = 4;
    let mut receiver = crate::support::receiver::Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[sources.load]\n[destinations.hook]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"5s\"\n\
             retry = {{ schedule = [\"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\"] }}\n\
             [[routes]]\nsource = \"load\"\ndestination = \"hook\"\n",
            receiver.url
        ),
    );
    let mut process = spawn_serve(&config);
    let acked = process.post_numbered("load", EVENTS).await;

    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for kill in 0..KILLS {
        // Let a random share of the backlog through, then kill mid-stream.
        let wait_for = 10 + random_kill_point() % 60;
        for _ in 0..wait_for {
            let got = receiver.next().await;
            *received
                .entry(got.header("webhook-id").to_owned())
                .or_default() += 1;
        }
        process.child.kill().expect("SIGKILL");
        process.child.wait().unwrap();
        drop(process);
        eprintln!(
            "delivery crash {kill}: killed after {} sends",
            received.values().sum::<usize>()
        );
        process = spawn_serve(&config);
    }
    while !acked.iter().all(|id| received.contains_key(id)) {
        let got = receiver.next().await;
        *received
            .entry(got.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    let sends: usize = received.values().sum();
    let duplicates = sends - received.len();
    eprintln!(
        "delivery crash test: {KILLS} SIGKILLs, {} acknowledged events all delivered; {sends} sends, {duplicates} duplicates",
        acked.len()
    );
    assert!(
        received.keys().all(|id| acked.contains(id)),
        "only acknowledged events"
    );
    // A duplicate needs a send cut off mid-flight: at most the sends in flight per kill.
    assert!(duplicates <= KILLS * 256, "{duplicates} duplicates");
    drop(process);
}
