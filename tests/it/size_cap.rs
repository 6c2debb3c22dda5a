//! The size cap end to end, on SQLite and on PostgreSQL: past `storage.max_size` the
//! oldest delivered events go; when only dead letters are left, ingest answers 507 and
//! stores nothing; discarding the dead letters makes room again.

use std::time::{Duration, Instant};

use crate::support::binary::{Process, spawn_serve_with_env};
use crate::support::postgres::Schema;
use crate::support::receiver::Receiver;

/// Small enough to pass in a few seconds of posting.
const CAP: &str = "2MiB";
const CAP_BYTES: f64 = 2.0 * 1024.0 * 1024.0;

/// `shop` is delivered to `receiver`; `held` goes to a port nothing listens on and, with
/// no retries (and no breaker holding it back), is dead at its first attempt.
fn config(receiver: &str) -> String {
    format!(
        r#"
        [sources.shop]
        [sources.held]
        [destinations.ok]
        kind = "http"
        url = "{receiver}"
        [destinations.down]
        kind = "http"
        url = "http://127.0.0.1:9/"
        retry = {{ schedule = [] }}
        breaker = {{ failures = 1000000 }}
        [[routes]]
        source = "shop"
        destination = "ok"
        [[routes]]
        source = "held"
        destination = "down"
        "#
    )
}

/// A 4 KiB body unlike any other (so neither dedup nor compression shrinks it).
fn body(n: usize) -> String {
    let noise: String = (0..110)
        .map(|_| uuid::Uuid::now_v7().simple().to_string())
        .collect();
    format!("{{\"n\":{n},\"noise\":\"{noise}\"}}")
}

/// Posts event `n` to `source` (the request is made at once; awaiting sends it).
fn post(
    client: &reqwest::Client,
    p: &Process,
    source: &str,
    n: usize,
) -> impl Future<Output = reqwest::Response> + Send + 'static {
    let send = client
        .post(format!("http://{}/in/{source}", p.ingest))
        .header("content-type", "application/json")
        .body(body(n))
        .send();
    async move { send.await.expect("post") }
}

/// Posts 16 events to `source` at once (so that their commits are grouped), numbered
/// from `first`: the ids of those stored, in receive order, and the answers of those
/// refused (status and JSON body).
async fn post_wave(
    client: &reqwest::Client,
    p: &Process,
    source: &str,
    first: usize,
) -> (
    Vec<String>,
    Vec<(reqwest::StatusCode, serde_json::Value, bool)>,
) {
    let mut sends = tokio::task::JoinSet::new();
    for n in first..first + 16 {
        let request = post(client, p, source, n);
        sends.spawn(async move {
            let r = request.await;
            let status = r.status();
            let retry_after = r.headers().contains_key("retry-after");
            (
                status,
                r.json::<serde_json::Value>().await.unwrap(),
                retry_after,
            )
        });
    }
    let (mut stored, mut refused) = (Vec::new(), Vec::new());
    for (status, answer, retry_after) in sends.join_all().await {
        if status == 200 {
            stored.push(answer["id"].as_str().unwrap().to_owned());
        } else {
            refused.push((status, answer, retry_after));
        }
    }
    stored.sort();
    (stored, refused)
}

/// The value of an unlabelled metric or one labelled `label`, 0 when absent.
async fn metric(p: &Process, name: &str, label: &str) -> f64 {
    let text = crate::support::client()
        .get(format!("http://{}/metrics", p.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let matches = series == name || series == format!("{name}{{{label}}}");
            matches.then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

async fn exists(p: &Process, id: &str) -> bool {
    let r = crate::support::client()
        .get(format!("http://{}/api/v1/events/{id}", p.admin))
        .send()
        .await
        .unwrap();
    r.status() == 200
}

/// Polls `check` until it holds, at most 30 s (the cap's job looks every second).
async fn until<F: AsyncFn() -> bool>(what: &str, check: F) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < give_up, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn capped(p: Process, sqlite: bool) {
    // Delivered traffic of twice the cap: never refused, the oldest events go.
    // One client: each new one reads the system's root certificates.
    let client = crate::support::client();
    let mut shop = Vec::new();
    for first in (0..1024).step_by(16) {
        let (stored, refused) = post_wave(&client, &p, "shop", first).await;
        assert_eq!(refused, [], "delivered events never fill the store");
        shop.extend(stored);
    }
    shop.sort();
    until("old delivered events evicted", async || {
        metric(&p, "forebay_evicted_total", "kind=\"events\"").await > 0.0
            && !exists(&p, &shop[0]).await
    })
    .await;
    assert!(exists(&p, shop.last().unwrap()).await, "the newest stays");
    until("the store back under its cap", async || {
        metric(&p, "forebay_store_used_bytes", "").await <= CAP_BYTES
    })
    .await;
    assert_eq!(metric(&p, "forebay_store_max_bytes", "").await, CAP_BYTES);
    if sqlite {
        // Incremental vacuum hands the freed pages back.
        until("free pages given back", async || {
            metric(&p, "forebay_store_allocated_bytes", "").await <= CAP_BYTES
        })
        .await;
    }

    // Dead letters may not go: they fill the store, and then ingest refuses.
    let mut held = Vec::new();
    let (status, answer, retry_after) = 'fill: {
        for first in (0..2048).step_by(16) {
            let (stored, mut refused) = post_wave(&client, &p, "held", first).await;
            held.extend(stored);
            if let Some(refusal) = refused.pop() {
                break 'fill refusal;
            }
        }
        panic!("2048 dead letters of 4 KiB never filled a {CAP} store");
    };
    held.sort();
    assert!(held.len() > 100, "only {} accepted", held.len());
    assert_eq!(status, 507, "{answer}");
    assert!(retry_after);
    assert_eq!(answer["error"]["code"], "store_full", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("2.0 MiB") && message.contains("storage.max_size"),
        "{message}"
    );
    assert_eq!(metric(&p, "forebay_store_full", "").await, 1.0);
    for id in [&held[0], held.last().unwrap()] {
        assert!(exists(&p, id).await, "a dead letter is kept: {id}");
    }

    // Discarded, they may go: the store takes events again.
    let r = crate::support::client()
        .post(format!("http://{}/api/v1/dlq/discard", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    until("ingest accepting again", async || {
        post(&client, &p, "held", 0).await.status() == 200
    })
    .await;
    assert_eq!(metric(&p, "forebay_store_full", "").await, 0.0);
    assert!(!exists(&p, &held[0]).await, "the oldest discarded one went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_sqlite_store_evicts_delivered_events_and_refuses_only_when_nothing_may_go() {
    let receiver = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::binary::write_config(dir.path(), &config(&receiver.url));
    let p = spawn_serve_with_env(&config, &[("FOREBAY_STORAGE__MAX_SIZE", CAP)]);
    capped(p, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_postgres_store_evicts_delivered_events_and_refuses_only_when_nothing_may_go() {
    let receiver = Receiver::start(&[]).await;
    let schema = Schema::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(dir.path(), &config(&receiver.url));
    let p = spawn_serve_with_env(&config, &[("FOREBAY_STORAGE__MAX_SIZE", CAP)]);
    capped(p, false).await;
}

#[test]
fn a_cap_too_small_for_the_store_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::binary::write_config(dir.path(), "[sources.a]\n");
    let out = crate::support::binary::run_forebay(
        &["check", "--config", config.to_str().unwrap()],
        &[("FOREBAY_STORAGE__MAX_SIZE", "64KiB")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("storage.max_size") && stderr.contains("1MiB"),
        "{stderr}"
    );
}
