//! Reloading the configuration while serving: `POST /api/v1/reload` on an in-process
//! server, SIGHUP on the real binary, under load, with a file that has errors, and what a
//! reload keeps (a source's rate-limit count).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::TestServer;
use crate::support::binary::{spawn_serve, write_config};
use crate::support::receiver::Receiver;

fn one_route(source: &str, destination: &str, url: &str, header: &str) -> String {
    format!(
        r#"
        [sources.{source}]
        [destinations.{destination}]
        kind = "http"
        url = "{url}"
        headers = {{ x-generation = "{header}" }}
        [[routes]]
        source = "{source}"
        destination = "{destination}"
        "#
    )
}

async fn reload(server: &TestServer) -> (u16, Value) {
    let r = server.admin_post("/api/v1/reload").await;
    let status = r.status().as_u16();
    (status, r.json().await.expect("a JSON answer"))
}

fn metric(text: &str, line_start: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_reload_adds_a_source_route_and_destination_and_says_what_changed() {
    let mut shop_receiver = Receiver::start(&[]).await;
    let mut new_receiver = Receiver::start(&[]).await;
    let before = one_route("shop", "hook", &shop_receiver.url, "1");
    let server = TestServer::start(&before).await;
    assert_eq!(server.post("crm", &[], "{}").await.status(), 404);

    let after = format!(
        "{before}\n{}",
        one_route("crm", "crm-hook", &new_receiver.url, "1")
    );
    server.rewrite_config(&after);
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["generation"], 2);
    let changes: Vec<&str> = answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "source crm added",
            "destination crm-hook added",
            "route crm-crm-hook added"
        ],
        "{answer}"
    );
    assert_eq!(answer["needs_restart"], serde_json::json!([]));

    // The new source takes events and its route delivers them; the old one still does.
    let crm = server.post_for_id("crm", &[], r#"{"lead":1}"#).await;
    let seen = new_receiver.next().await;
    assert_eq!(seen.header("webhook-id"), crm);
    let shop = server.post_for_id("shop", &[], r#"{"order":1}"#).await;
    assert_eq!(shop_receiver.next().await.header("webhook-id"), shop);

    let sources = server.admin_json("/api/v1/sources").await;
    let names: Vec<&str> = sources["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["crm", "shop"]);
    let metrics = server.metrics_text().await;
    assert_eq!(metric(&metrics, "forebay_config_generation "), "2");
    assert_eq!(
        metric(&metrics, "forebay_config_reloads_total{result=\"applied\"}"),
        "1"
    );

    // Taken away again: its URL answers 404, what it stored stays readable.
    server.rewrite_config(&before);
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["generation"], 3);
    assert!(
        answer["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("source crm removed")),
        "{answer}"
    );
    assert_eq!(server.post("crm", &[], "{}").await.status(), 404);
    let event = server.admin_json(&format!("/api/v1/events/{crm}")).await;
    assert_eq!(event["source"], "crm", "{event}");
}

#[tokio::test]
async fn a_file_with_errors_changes_nothing_and_each_error_names_its_key() {
    let receiver = Receiver::start(&[]).await;
    let good = one_route("shop", "hook", &receiver.url, "1");
    let server = TestServer::start(&good).await;
    server.rewrite_config(&format!(
        "{}\n[[routes]]\nsource = \"shop\"\ndestination = \"nowhere\"\n",
        good.replace("[sources.shop]", "[sources.shop]\nmax_body = \"lots\"")
    ));
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_configuration");
    let keys: BTreeSet<&str> = answer["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains("sources.shop.max_body"), "{answer}");
    assert!(
        keys.iter().any(|k| k.starts_with("routes")),
        "the route to a destination that does not exist: {answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the running configuration stays"),
        "{message}"
    );

    // Still generation 1, still serving.
    server.post_for_id("shop", &[], "{}").await;
    let metrics = server.metrics_text().await;
    assert_eq!(metric(&metrics, "forebay_config_generation "), "1");
    assert_eq!(
        metric(&metrics, "forebay_config_reloads_total{result=\"refused\"}"),
        "1"
    );

    // A key fixed at start is reported, and the rest applies.
    server.rewrite_config(&format!(
        "[server]\nmax_connections = 77\n{}",
        good.replace("x-generation = \"1\"", "x-generation = \"2\"")
    ));
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["generation"], 2);
    assert_eq!(
        answer["needs_restart"],
        serde_json::json!(["server.max_connections"])
    );
    assert_eq!(
        answer["changes"],
        serde_json::json!(["destination hook replaced"])
    );
}

/// The new file is checked with the `[server]` that stays in force: a body limit the
/// running in-flight budget cannot hold is refused, even though the file raises the
/// budget (that takes a restart).
#[tokio::test]
async fn a_file_is_checked_against_the_running_server_settings() {
    let server = TestServer::start_ingest_only(
        "[server]\nmax_inflight_bytes = \"1MiB\"\n[sources.shop]\nmax_body = \"512KiB\"\n",
    )
    .await;
    server.rewrite_config(
        "[server]\nmax_inflight_bytes = \"64MiB\"\n[sources.shop]\nmax_body = \"10MiB\"\n",
    );
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 422, "{answer}");
    let error = &answer["error"]["errors"][0];
    assert_eq!(error["key"], "sources.shop.max_body", "{answer}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("running server.max_inflight_bytes") && message.contains("restart"),
        "{message}"
    );
}

#[tokio::test]
async fn a_source_whose_limits_did_not_change_keeps_counting() {
    let limited = |rate: &str| format!("[sources.shop]\nrate_limit = \"{rate}\"\n");
    let server = TestServer::start_ingest_only(&limited("2/m")).await;
    for _ in 0..2 {
        server.post_for_id("shop", &[], "{}").await;
    }
    // The same limit: a reload does not hand the sender a fresh bucket.
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.post("shop", &[], "{}").await.status(), 429);
    // A new limit starts its own count.
    server.rewrite_config(&limited("3/m"));
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.post("shop", &[], "{}").await.status(), 200);
}

/// Four senders post without pause while the configuration is reloaded over and over,
/// each time replacing the destination (a new header) and adding or removing a second
/// source; the receiver takes 5 ms per request, so sends are under way at every reload:
/// no request fails and every event is delivered, once.
#[tokio::test]
async fn reloading_under_load_fails_no_request_and_loses_no_event() {
    const SENDERS: usize = 4;
    const EACH: usize = 150;
    let mut receiver = Receiver::start_slow(&[], Duration::from_millis(5)).await;
    let generation = |n: usize| {
        let extra = if n % 2 == 1 { "[sources.other]\n" } else { "" };
        format!(
            "{extra}{}",
            one_route("shop", "hook", &receiver.url, &n.to_string())
        )
    };
    let server = std::sync::Arc::new(TestServer::start(&generation(0)).await);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let server = server.clone();
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..EACH {
                let r = server
                    .post("shop", &[], format!(r#"{{"sender":{s},"n":{n}}}"#))
                    .await;
                assert_eq!(r.status(), 200, "request {n} of sender {s}");
                ids.push(crate::support::server::event_id(r).await);
            }
            ids
        }));
    }
    // Reload as fast as reloads finish until every sender is done or has failed (at
    // least 5 times).
    let mut reloads = 0;
    while reloads < 5 || !senders.iter().all(|s| s.is_finished()) {
        reloads += 1;
        server.rewrite_config(&generation(reloads));
        let (status, answer) = reload(&server).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["generation"], reloads + 1);
    }
    let mut posted = BTreeSet::new();
    for sender in senders {
        posted.extend(sender.await.unwrap());
    }
    assert_eq!(posted.len(), SENDERS * EACH);

    let mut delivered = BTreeSet::new();
    let mut generations = BTreeSet::new();
    while delivered.len() < posted.len() {
        let seen = receiver.next().await;
        generations.insert(seen.header("x-generation").to_owned());
        assert!(
            delivered.insert(seen.header("webhook-id").to_owned()),
            "{} delivered twice",
            seen.header("webhook-id")
        );
    }
    assert_eq!(delivered, posted);
    assert!(
        generations.len() > 1,
        "sends went out under more than one generation: {generations:?}"
    );
    // Each delivery is recorded delivered after exactly one attempt: none was sent twice.
    // (The receiver hears a send before its answer is recorded: the last ones may still
    // be in flight for a moment.)
    let mut attempts = Vec::new();
    for _ in 0..250 {
        attempts = deliveries(&server).await;
        if attempts.iter().all(|(state, _)| state == "delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(attempts.len(), posted.len());
    assert!(
        attempts
            .iter()
            .all(|(state, n)| state == "delivered" && *n == 1),
        "{attempts:?}"
    );
}

/// Every delivery's state and attempt count.
async fn deliveries(server: &TestServer) -> Vec<(String, i64)> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = server
            .admin_json(&format!("/api/v1/deliveries?limit=500{cursor}"))
            .await;
        for d in page["data"].as_array().unwrap() {
            all.push((
                d["state"].as_str().unwrap().to_owned(),
                d["attempts"].as_i64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

/// A destination replaced by a reload (a new header) keeps its breaker's state when the
/// breaker's settings are the same, and starts afresh when they change.
#[tokio::test]
async fn a_replaced_destination_keeps_its_open_breaker() {
    let receiver = Receiver::start(&[500]).await;
    let config = |header: &str, failures: u32| {
        format!(
            r#"
            [sources.shop]
            [destinations.hook]
            kind = "http"
            url = "{}"
            headers = {{ x-generation = "{header}" }}
            breaker = {{ failures = {failures}, cooldown = "10m" }}
            retry = {{ schedule = ["10m"] }}
            [[routes]]
            source = "shop"
            destination = "hook"
            "#,
            receiver.url
        )
    };
    let server = TestServer::start(&config("1", 1)).await;
    let id = server.post_for_id("shop", &[], "{}").await;
    server.wait_for_deliveries(&id, "retrying").await;
    let breaker = || async {
        let destinations = server.admin_json("/api/v1/destinations").await;
        destinations["data"][0]["breaker"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(breaker().await, "open");

    server.rewrite_config(&config("2", 1));
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["changes"],
        serde_json::json!(["destination hook replaced"])
    );
    assert_eq!(breaker().await, "open", "the endpoint is still failing");

    server.rewrite_config(&config("2", 3));
    let (status, answer) = reload(&server).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        breaker().await,
        "closed",
        "a breaker with new settings starts closed"
    );
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[sources.shop]\n");
    let process = spawn_serve(&config);
    let client = crate::support::client();
    let post = |source: &'static str| {
        let client = client.clone();
        let url = format!("http://{}/in/{source}", process.ingest);
        async move { client.post(url).body("{}").send().await.unwrap().status() }
    };
    assert_eq!(post("crm").await, 404);

    write_config(dir.path(), "[sources.shop]\n[sources.crm]\n");
    process.signal(libc::SIGHUP);
    // The reload runs in the process; its metric says when it has applied.
    let mut generation = String::new();
    for _ in 0..200 {
        let text = client
            .get(format!("http://{}/metrics", process.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        generation = metric(&text, "forebay_config_generation ");
        if generation == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(generation, "2", "SIGHUP applied the new file");
    assert_eq!(post("crm").await, 200);
    assert_eq!(post("shop").await, 200);
}
