//! A source's `redact` rule end to end: redacted before storing (and so delivered that
//! way), or stored and delivered whole and redacted once every delivery succeeded, on
//! SQLite (sealed too) and PostgreSQL; JSON and form bodies; rejected requests.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::binary::{Process, spawn_serve};
use crate::support::postgres::Schema;
use crate::support::receiver::Receiver;
use crate::support::server::TestServer;

const RULE: &str =
    r#"redact = { headers = ["x-api-key"], json = ["/data/object/card", "/items/*/secret"] }"#;

/// Source `shop` with `rule` (and `verify`), routed to the receiver, retried after 1 s.
fn config(receiver: &str, rule: &str, verify: &str) -> String {
    format!(
        "[sources.shop]\n{rule}\n{verify}\n\
         [destinations.app]\nkind = \"http\"\nurl = \"{receiver}\"\nretry = {{ schedule = [\"1s\"] }}\n\
         [[routes]]\nsource = \"shop\"\ndestination = \"app\"\n"
    )
}

const BODY: &str = r#"{"id": "o-1", "data": {"object": {"card": "4242 4242", "amount": 7}}, "items": [{"secret": 1, "n": 1}, {"n": 2}]}"#;
const REDACTED_BODY: &str = r#"{"id": "o-1", "data": {"object": {"card": "[redacted]", "amount": 7}}, "items": [{"secret": "[redacted]", "n": 1}, {"n": 2}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_before_storing_is_what_is_stored_and_delivered() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&config(&receiver.url, RULE, "")).await;
    let id = server
        .post_for_id(
            "shop",
            &[
                ("content-type", "application/json"),
                ("x-api-key", "key-123"),
            ],
            BODY,
        )
        .await;
    let sent = receiver.next().await;
    assert_eq!(String::from_utf8_lossy(&sent.body), REDACTED_BODY);
    assert_eq!(sent.header("x-api-key"), "[redacted]");
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["body"], REDACTED_BODY, "the rest keeps its bytes");
    assert_eq!(event["headers"]["x-api-key"], "[redacted]");
    assert_eq!(
        event["redacted"],
        json!(["header:x-api-key", "/data/object/card", "/items/*/secret"])
    );
    assert_eq!(event["redaction_pending"], false);
    // The dashboard's event page says so too.
    let page = server
        .client
        .get(server.admin_url(&format!("/events/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            r#"<dd id="redacted"><code>header:x-api-key</code> <code>/data/object/card</code>"#
        ),
        "{page}"
    );

    // A form body: the same pointers name bracket fields.
    let form = "id=o-2&data%5Bobject%5D%5Bcard%5D=4242&data[object][amount]=7";
    let id = server
        .post_for_id(
            "shop",
            &[("content-type", "application/x-www-form-urlencoded")],
            form,
        )
        .await;
    receiver.next().await;
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(
        event["body"],
        "id=o-2&data%5Bobject%5D%5Bcard%5D=%5Bredacted%5D&data[object][amount]=7"
    );
    assert_eq!(event["redacted"], json!(["/data/object/card"]));

    // Nothing to take out: stored as it came.
    let id = server
        .post_for_id(
            "shop",
            &[("content-type", "application/json")],
            r#"{"id":"o-3"}"#,
        )
        .await;
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["body"], r#"{"id":"o-3"}"#);
    assert_eq!(event["redacted"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_are_redacted_at_once() {
    let receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&config(
        &receiver.url,
        &RULE.replace("}", ", when = \"delivered\" }"),
        "verify = { kind = \"bearer\", token = \"right\" }",
    ))
    .await;
    let r = server
        .post(
            "shop",
            &[
                ("authorization", "Bearer wrong"),
                ("content-type", "application/json"),
                ("x-api-key", "key-123"),
            ],
            BODY,
        )
        .await;
    assert_eq!(r.status(), 401);
    let rejected = server.rejected_of("shop").await;
    let id = rejected[0]["id"].as_str().unwrap();
    let shown = server.admin_json(&format!("/api/v1/rejected/{id}")).await;
    assert_eq!(shown["body"], REDACTED_BODY);
    assert_eq!(shown["headers"]["x-api-key"], "[redacted]");
    server.stop().await;
}

/// Posts `BODY` with a key header; returns the event id.
async fn post_whole(p: &Process) -> String {
    let r = crate::support::client()
        .post(format!("http://{}/in/shop", p.ingest))
        .header("content-type", "application/json")
        .header("x-api-key", "key-123")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    answer["id"].as_str().unwrap().to_owned()
}

/// Waits (at most 15 s) until the event's redaction no longer waits; returns the event.
async fn redacted_event(p: &Process, id: &str) -> Value {
    let started = tokio::time::Instant::now();
    loop {
        let event = p.admin_json(&format!("/api/v1/events/{id}")).await;
        if event["redaction_pending"] == false {
            return event;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still waiting: {event}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `when = "delivered"`: the handler gets the whole event, the store keeps it whole
/// while a delivery waits (a failing first attempt), then redacts it.
async fn redacted_once_delivered(config: &std::path::Path, mut receiver: Receiver) {
    let server = spawn_serve(config);
    let id = post_whole(&server).await;
    let first = receiver.next().await;
    assert_eq!(String::from_utf8_lossy(&first.body), BODY);
    assert_eq!(
        first.header("x-api-key"),
        "key-123",
        "the handler gets it whole"
    );
    let waiting = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(
        waiting["body"], BODY,
        "kept whole while a delivery waits: {waiting}"
    );
    assert_eq!(waiting["redaction_pending"], true);
    let retried = receiver.next().await;
    assert_eq!(
        String::from_utf8_lossy(&retried.body),
        BODY,
        "the retry too"
    );
    let event = redacted_event(&server, &id).await;
    assert_eq!(event["body"], REDACTED_BODY);
    assert_eq!(event["headers"]["x-api-key"], "[redacted]");
    assert_eq!(
        event["redacted"],
        json!(["header:x-api-key", "/data/object/card", "/items/*/secret"])
    );
}

fn delivered_rule() -> String {
    RULE.replace("}", ", when = \"delivered\" }")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_once_delivered_on_a_sealed_sqlite_store() {
    let receiver = Receiver::start(&[500]).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[storage.encryption]\nkeys = {{ k1 = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\" }}\nactive = \"k1\"\n{}",
        config(&receiver.url, &delivered_rule(), "")
    );
    let config = crate::support::binary::write_config(dir.path(), &extra);
    redacted_once_delivered(&config, receiver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_once_delivered_on_postgres() {
    let receiver = Receiver::start(&[500]).await;
    let schema = Schema::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(dir.path(), &config(&receiver.url, &delivered_rule(), ""));
    redacted_once_delivered(&config, receiver).await;
}

#[test]
fn a_rule_that_names_nothing_or_no_pointer_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"redact = { json = ["data/card"] }"#,
            "sources.shop.redact.json[0]: \"data/card\" is not a JSON pointer",
        ),
        (
            r#"redact = { headers = ["x api"] }"#,
            "sources.shop.redact.headers[0]: \"x api\" is not a header name",
        ),
        (
            r#"redact = { headers = ["x"], when = "later" }"#,
            "sources.shop.redact.when: \"later\" is not a choice",
        ),
        (
            r#"redact = { }"#,
            "sources.shop.redact: names nothing to redact",
        ),
        (
            "dedup_key = \"json:/data/object/card\"\nredact = { json = [\"/data/*/card\"] }",
            "sources.shop.dedup_key: the dedup key would keep the field /data/*/card",
        ),
    ];
    for (rule, expected) in cases {
        let config =
            crate::support::binary::write_config(dir.path(), &format!("[sources.shop]\n{rule}\n"));
        let out = crate::support::binary::run_forebay(
            &["check", "--config", config.to_str().unwrap()],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{rule}: {stderr}"
        );
    }
}
