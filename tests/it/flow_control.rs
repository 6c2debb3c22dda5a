//! Flow control on routes: `delay` and `deliver_at` hold the first attempt (walked on a
//! [`ManualClock`], so the due time is exact), and `priority` decides who goes first when
//! a destination is held back, on SQLite and on PostgreSQL.

use std::sync::Arc;

use serde_json::Value;

use crate::support::TestServer;
use crate::support::postgres::{Schema, url};
use crate::support::receiver::Receiver;
use forebay::clock::{Clock, ManualClock};

fn ms(rfc3339: &Value) -> i64 {
    let time = humantime::parse_rfc3339(rfc3339.as_str().expect("a timestamp")).unwrap();
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The event's deliveries once `ready` holds for each of them (shown one by one).
async fn deliveries_once(
    server: &TestServer,
    event_id: &str,
    ready: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    for _ in 0..500 {
        let event = server
            .admin_json(&format!("/api/v1/events/{event_id}"))
            .await;
        let mut shown = Vec::new();
        for d in event["deliveries"].as_array().cloned().unwrap_or_default() {
            let id = d["id"].as_str().unwrap();
            shown.push(server.admin_json(&format!("/api/v1/deliveries/{id}")).await);
        }
        if !shown.is_empty() && shown.iter().all(&ready) {
            return shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the deliveries of {event_id} never got there");
}

/// The delivery `id` once it has left `pending`, with its attempt log.
async fn after_first_attempt(server: &TestServer, id: &str) -> Value {
    for _ in 0..500 {
        let d = server.admin_json(&format!("/api/v1/deliveries/{id}")).await;
        if d["attempts"] == 1 && d["state"] != "in_flight" {
            return d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("delivery {id} was never attempted");
}

#[tokio::test]
async fn a_delay_holds_the_first_attempt_until_its_time_on_the_engine_clock() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start(&[]).await;
    let config = format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{}"
        [[routes]]
        source = "shop"
        destination = "hook"
        delay = "30s"
        "#,
        receiver.url
    );
    let server = TestServer::start_with_clock(&config, clock.clone()).await;
    let id = server
        .post_for_id("shop", &[("content-type", "application/json")], "{}")
        .await;
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    let received = ms(&event["received_at"]);
    let delivery_id = event["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let d = server
        .admin_json(&format!("/api/v1/deliveries/{delivery_id}"))
        .await;
    assert_eq!(d["state"], "pending");
    assert_eq!(ms(&d["next_attempt_at"]), received + 30_000);

    // Past its receive time and up to a millisecond short of due, nothing goes out; at
    // due time it does, and its first attempt starts exactly then.
    clock.advance_to(received + 29_999);
    tokio::task::yield_now().await;
    clock.advance_to(received + 30_000);
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-id"), id);
    let d = after_first_attempt(&server, &delivery_id).await;
    assert_eq!(d["state"], "delivered");
    assert_eq!(ms(&d["attempt_log"][0]["started_at"]), received + 30_000);
}

#[tokio::test]
async fn deliver_at_from_jq_or_javascript_sets_each_first_attempt_and_a_bad_one_is_dead() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start(&[]).await;
    let config = format!(
        r#"
        [sources.shop]
        [destinations.jq]
        kind = "http"
        url = "{url}"
        [destinations.js]
        kind = "http"
        url = "{url}"
        [[routes]]
        name = "by-jq"
        source = "shop"
        destination = "jq"
        deliver_at = '.body.send_at'
        [[routes]]
        name = "by-js"
        source = "shop"
        destination = "js"
        deliver_at = {{ js = "export default (e) => typeof e.body.send_at === 'number' ? new Date(e.body.send_at * 1000 + 500).toISOString() : e.body.send_at" }}
        "#,
        url = receiver.url
    );
    let server = TestServer::start_with_clock(&config, clock.clone()).await;
    let send_at = forebay::clock::now_ms() / 1000 + 120;
    let id = server
        .post_for_id(
            "shop",
            &[("content-type", "application/json")],
            format!(r#"{{"send_at": {send_at}}}"#),
        )
        .await;
    // Prepared: the due time is no longer the receive time.
    let deliveries =
        deliveries_once(&server, &id, |d| d["next_attempt_at"] != d["created_at"]).await;
    let due = |route: &str| {
        let d = deliveries.iter().find(|d| d["route"] == route).unwrap();
        (
            d["id"].as_str().unwrap().to_owned(),
            ms(&d["next_attempt_at"]),
        )
    };
    let (jq_id, jq_due) = due("by-jq");
    let (js_id, js_due) = due("by-js");
    assert_eq!(jq_due, send_at * 1000, "seconds since the epoch");
    assert_eq!(js_due, send_at * 1000 + 500, "an RFC 3339 time");

    // What is not a time sends the delivery to the dead letters, saying why.
    let bad = server
        .post_for_id(
            "shop",
            &[("content-type", "application/json")],
            r#"{"send_at": "tomorrow"}"#,
        )
        .await;
    for d in deliveries_once(&server, &bad, |d| d["state"] == "dead").await {
        let error = d["last_error"].as_str().unwrap();
        assert!(
            error.starts_with("deliver_at: ") && error.contains("is not an RFC 3339 time"),
            "{error}"
        );
    }

    clock.advance_to(send_at * 1000);
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-id"), id);
    let d = after_first_attempt(&server, &jq_id).await;
    assert_eq!(ms(&d["attempt_log"][0]["started_at"]), send_at * 1000);
    clock.advance_to(send_at * 1000 + 500);
    receiver.next().await;
    let d = after_first_attempt(&server, &js_id).await;
    assert_eq!(ms(&d["attempt_log"][0]["started_at"]), send_at * 1000 + 500);
    assert!(clock.now_ms() >= send_at * 1000 + 500);
}

fn priorities(url: &str, storage: &str) -> String {
    format!(
        r#"
        {storage}
        [sources.bulk]
        [sources.urgent]
        [destinations.hook]
        kind = "http"
        url = "{url}"
        max_concurrency = 1
        [[routes]]
        source = "bulk"
        destination = "hook"
        [[routes]]
        source = "urgent"
        destination = "hook"
        priority = 9
        "#
    )
}

/// With the destination paused, bulk events come in first and urgent ones after; once
/// it resumes, one at a time, the urgent ones go first.
async fn urgent_goes_first(server: &TestServer, receiver: &mut Receiver) {
    let paused = server.admin_post("/api/v1/destinations/hook/pause").await;
    assert!(paused.status().is_success(), "{}", paused.status());
    let mut bulk = Vec::new();
    let mut urgent = Vec::new();
    for n in 0..3 {
        let body = format!(r#"{{"n": {n}}}"#);
        bulk.push(server.post_for_id("bulk", &[], body).await);
    }
    for n in 0..3 {
        let body = format!(r#"{{"n": {n}}}"#);
        urgent.push(server.post_for_id("urgent", &[], body).await);
    }
    let routes = server.admin_json("/api/v1/routes").await;
    let shown = routes["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "urgent")
        .unwrap()
        .clone();
    assert_eq!(shown["priority"], 9);
    let resumed = server.admin_post("/api/v1/destinations/hook/resume").await;
    assert!(resumed.status().is_success(), "{}", resumed.status());
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(receiver.next().await.header("webhook-id").to_owned());
    }
    let expected: Vec<String> = urgent.into_iter().chain(bulk).collect();
    assert_eq!(order, expected, "urgent first, each kind in receive order");
}

#[tokio::test]
async fn priority_goes_first_when_the_destination_is_held_back() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&priorities(&receiver.url, "")).await;
    urgent_goes_first(&server, &mut receiver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_goes_first_when_the_destination_is_held_back_on_postgres() {
    let mut receiver = Receiver::start(&[]).await;
    let schema = Schema::fresh();
    let storage = format!(
        "[storage]\nurl = \"{}\"\nschema = \"{}\"\n",
        url(),
        schema.0
    );
    let server = TestServer::start(&priorities(&receiver.url, &storage)).await;
    urgent_goes_first(&server, &mut receiver).await;
}

#[test]
fn flow_control_mistakes_are_refused_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "priority = 10",
            "routes[0].priority: priority 10 is out of range; use 0 (the default, lowest) to 9 (highest)",
        ),
        (
            "delay = \"soon\"",
            "routes[0].delay: invalid duration \"soon\"",
        ),
        (
            "delay = \"400d\"",
            "routes[0].delay: a delay may be at most 365 days",
        ),
        (
            "delay = \"5s\"\ndeliver_at = '.body.at'",
            "routes[0].delay: route \"shop-hook\" has both `delay` and `deliver_at`; keep one of them",
        ),
        (
            "debounce = { key = '.body.id', window = \"0s\" }",
            "routes[0].debounce.window: a debounce window must be more than 0",
        ),
        (
            "debounce = { key = '.body.id' }",
            "routes[0].debounce: missing field `window`",
        ),
        (
            "debounce = { key = '.body.id', window = \"5s\" }\ndelay = \"1s\"",
            "routes[0].debounce: route \"shop-hook\" has `debounce` and `delay` or `deliver_at`",
        ),
        (
            "deliver_at = '.body.at |'",
            "routes[0].deliver_at: the deliver_at of route \"shop-hook\" does not compile",
        ),
    ];
    for (line, expected) in cases {
        let path = dir.path().join("forebay.toml");
        std::fs::write(
            &path,
            format!(
                "[sources.shop]\n[destinations.hook]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\
                 [[routes]]\nsource = \"shop\"\ndestination = \"hook\"\n{line}\n"
            ),
        )
        .unwrap();
        let err = forebay::config::Config::load(&path, std::iter::empty::<(&str, &str)>())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{line}: {err}");
    }
}

#[tokio::test]
async fn debounce_sends_the_last_of_a_burst_per_key_once_the_window_is_quiet() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start(&[]).await;
    let config = format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{}"
        [[routes]]
        source = "shop"
        destination = "hook"
        debounce = {{ key = '.body.order', window = "5s" }}
        "#,
        receiver.url
    );
    let server = TestServer::start_with_clock(&config, clock.clone()).await;
    let json = [("content-type", "application/json")];
    let mut burst = Vec::new();
    for n in 0..3 {
        let body = format!(r#"{{"order": "o_1", "n": {n}}}"#);
        burst.push(server.post_for_id("shop", &json, body).await);
    }
    let other = server
        .post_for_id("shop", &json, r#"{"order": "o_2", "n": 0}"#)
        .await;
    let unkeyed = server.post_for_id("shop", &json, r#"{"n": 0}"#).await;

    // Each of the burst is superseded by the next, and the last waits out the window
    // from its own arrival; another key is not touched; no key, no wait.
    for (early, next) in burst.iter().zip(&burst[1..]) {
        let d = deliveries_once(&server, early, |d| d["state"] == "superseded").await;
        let why = d[0]["last_error"].as_str().unwrap();
        assert!(why.contains(next.as_str()), "{why}");
    }
    let last = server
        .admin_json(&format!("/api/v1/events/{}", burst[2]))
        .await;
    let received = ms(&last["received_at"]);
    let last = deliveries_once(&server, &burst[2], |d| {
        d["next_attempt_at"] != d["created_at"]
    })
    .await;
    assert_eq!(ms(&last[0]["next_attempt_at"]), received + 5_000);
    assert_eq!(last[0]["state"], "pending");
    let other_due =
        deliveries_once(&server, &other, |d| d["next_attempt_at"] != d["created_at"]).await;
    let other_due = ms(&other_due[0]["next_attempt_at"]);

    clock.advance_to(forebay::clock::now_ms());
    let got = receiver.next().await;
    assert_eq!(
        got.header("webhook-id"),
        unkeyed,
        "not debounced: sent at once"
    );
    clock.advance_to(received + 5_000);
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-id"), burst[2], "the last of the burst");
    clock.advance_to(other_due);
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-id"), other, "one per key");
    server.wait_for_deliveries(&burst[2], "delivered").await;
}

fn batching(url: &str, storage: &str) -> String {
    format!(
        r#"
        {storage}
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{url}"
        retry = {{ schedule = ["10s"] }}
        [[routes]]
        source = "shop"
        destination = "hook"
        batch = {{ max_events = 3, max_wait = "2s" }}
        "#
    )
}

/// The webhook ids in a batch call's array.
fn members(body: &Value) -> Vec<String> {
    body.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| e["webhook_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Four events: the first three go at once as a full batch, the fourth once it has
/// waited `max_wait`; each event's delivery records the call as its attempt.
async fn full_batches_go_at_once_and_the_rest_after_max_wait(storage: &str) {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start(&[]).await;
    let server =
        TestServer::start_with_clock(&batching(&receiver.url, storage), clock.clone()).await;
    let json = [("content-type", "application/json")];
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            server
                .post_for_id("shop", &json, format!(r#"{{"n": {n}}}"#))
                .await,
        );
    }
    let last = server
        .admin_json(&format!("/api/v1/events/{}", ids[3]))
        .await;
    let last_received = ms(&last["received_at"]);
    clock.advance_to(last_received);

    let call = receiver.next().await;
    assert!(
        call.header("webhook-id").starts_with("bat_"),
        "{}",
        call.header("webhook-id")
    );
    assert_eq!(call.header("content-type"), "application/json");
    let body = call.body_json();
    assert_eq!(
        members(&body),
        ids[..3].to_vec(),
        "the oldest three, in receive order"
    );
    assert_eq!(body[1]["body"], serde_json::json!({"n": 1}));
    assert_eq!(body[1]["source"], "shop");

    clock.advance_to(last_received + 1_999);
    tokio::task::yield_now().await;
    clock.advance_to(last_received + 2_000);
    let call = receiver.next().await;
    assert_eq!(members(&call.body_json()), ids[3..].to_vec());
    for id in &ids {
        let event = server.wait_for_deliveries(id, "delivered").await;
        assert_eq!(event["deliveries"][0]["attempts"], 1, "{event}");
    }
}

#[tokio::test]
async fn full_batches_go_at_once_and_the_rest_after_max_wait_on_sqlite() {
    full_batches_go_at_once_and_the_rest_after_max_wait("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_batches_go_at_once_and_the_rest_after_max_wait_on_postgres() {
    let schema = Schema::fresh();
    let storage = format!(
        "[storage]\nurl = \"{}\"\nschema = \"{}\"\n",
        url(),
        schema.0
    );
    full_batches_go_at_once_and_the_rest_after_max_wait(&storage).await;
}

#[tokio::test]
async fn a_failed_batch_is_retried_whole_with_the_same_webhook_id() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start(&[500]).await;
    let server = TestServer::start_with_clock(&batching(&receiver.url, ""), clock.clone()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(server.post_for_id("shop", &[], format!("plain {n}")).await);
    }
    clock.advance_to(forebay::clock::now_ms());
    let first = receiver.next().await;
    assert_eq!(first.body_json()[0]["body"], "plain 0", "text stays text");
    // Every member failed with the call, and is due again at the same time.
    let mut due = Vec::new();
    for id in &ids {
        let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
        let delivery = event["deliveries"][0]["id"].as_str().unwrap().to_owned();
        let d = after_first_attempt(&server, &delivery).await;
        assert_eq!(d["state"], "retrying", "{d}");
        assert_eq!(d["attempt_log"][0]["status"], 500);
        due.push(ms(&d["next_attempt_at"]));
    }
    assert!(due.iter().all(|t| *t == due[0]), "{due:?}");
    clock.advance_to(due[0]);
    let again = receiver.next().await;
    assert_eq!(again.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(again.header("forebay-attempt"), "2");
    assert_eq!(members(&again.body_json()), ids);
    for id in &ids {
        server.wait_for_deliveries(id, "delivered").await;
    }
}
