//! Filters, transforms, ordering keys and `jq:` dedup keys, end to end: expressions run
//! in the sandbox processes of the real binary, deliveries reach a real receiver.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestServer;
use crate::support::binary::run_forebay;
use crate::support::receiver::Receiver;

async fn post_json(server: &TestServer, source: &str, body: Value) -> String {
    server
        .post_for_id(
            source,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
}

fn delivery_of<'a>(event: &'a Value, route: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["route"] == route)
        .unwrap_or_else(|| panic!("no delivery on route {route}: {event}"))
}

#[tokio::test]
async fn a_filter_delivers_what_matches_and_marks_the_rest_filtered() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.stripe]
        [destinations.billing]
        kind = "http"
        url = "{}"
        [[routes]]
        name = "invoices"
        source = "stripe"
        destination = "billing"
        filter = '.body.type | startswith("invoice.")'
        "#,
        receiver.url
    ))
    .await;
    let skipped = post_json(&server, "stripe", json!({"type": "customer.created"})).await;
    let sent = post_json(
        &server,
        "stripe",
        json!({"type": "invoice.paid", "id": "in_1"}),
    )
    .await;

    let got = receiver.next().await;
    assert_eq!(got.header("webhook-id"), sent);
    assert_eq!(
        serde_json::from_slice::<Value>(&got.body).unwrap(),
        json!({"type": "invoice.paid", "id": "in_1"}),
        "no transform: the raw body goes out"
    );
    server.wait_for_deliveries(&sent, "delivered").await;
    let filtered = server.wait_for_deliveries(&skipped, "filtered").await;
    assert_eq!(filtered["deliveries"][0]["attempts"], 0);
}

#[tokio::test]
async fn a_transform_reshapes_the_body_and_a_split_gets_one_delivery_per_output() {
    let mut receiver = Receiver::start(&[]).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let server = TestServer::start(&format!(
        r#"
        [sources.batch]
        [destinations.hook]
        kind = "http"
        url = "{}"
        sign = {{ secret = "{secret}" }}
        [[routes]]
        name = "items"
        source = "batch"
        destination = "hook"
        transform = '.body.items[] | {{sku: .sku, source: .source}} | .source = "batch"'
        "#,
        receiver.url
    ))
    .await;
    let id = post_json(
        &server,
        "batch",
        json!({"items": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]}),
    )
    .await;

    let mut got = BTreeMap::new();
    for _ in 0..3 {
        let r = receiver.next().await;
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("idempotency-key"), r.header("webhook-id"));
        crate::deliver::assert_signed(&r, secret);
        got.insert(
            r.header("webhook-id").to_owned(),
            serde_json::from_slice::<Value>(&r.body).unwrap(),
        );
    }
    let expected: BTreeMap<String, Value> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, sku)| {
            (
                format!("{id}.{}", i + 1),
                json!({"sku": sku, "source": "batch"}),
            )
        })
        .collect();
    assert_eq!(
        got, expected,
        "the n-th output is part n: webhook-id {id}.n"
    );

    let event = server.wait_for_deliveries(&id, "delivered").await;
    assert_eq!(event["deliveries"].as_array().unwrap().len(), 3);
    let mut parts = Vec::new();
    for d in event["deliveries"].as_array().unwrap() {
        let shown = server
            .admin_json(&format!("/api/v1/deliveries/{}", d["id"].as_str().unwrap()))
            .await;
        parts.push((shown["part"].as_i64().unwrap(), shown["webhook_id"].clone()));
        assert!(shown["payload"]["body"].as_str().unwrap().contains("sku"));
    }
    parts.sort_by_key(|p| p.0);
    assert_eq!(
        parts,
        vec![
            (1, json!(format!("{id}.1"))),
            (2, json!(format!("{id}.2"))),
            (3, json!(format!("{id}.3")))
        ]
    );
}

#[tokio::test]
async fn a_failing_or_runaway_expression_sends_its_delivery_dead_and_stalls_nothing_else() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{0}"
        [destinations.other]
        kind = "http"
        url = "{0}"
        [[routes]]
        name = "boom"
        source = "shop"
        destination = "hook"
        transform = 'if .body.n == 1 then error("no n=1 please") else . end'
        [[routes]]
        name = "spin"
        source = "shop"
        destination = "hook"
        filter = 'def f: f; f'
        [[routes]]
        name = "deep"
        source = "shop"
        destination = "hook"
        transform = 'def f: [f]; f'
        [[routes]]
        name = "plain"
        source = "shop"
        destination = "other"
        "#,
        receiver.url
    ))
    .await;
    let id = post_json(&server, "shop", json!({"n": 1})).await;
    // The plain route is not held up by the others.
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-id"), id);

    for _ in 0..500 {
        let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
        let states: Vec<&str> = ["boom", "spin", "deep", "plain"]
            .iter()
            .map(|r| delivery_of(&event, r)["state"].as_str().unwrap())
            .collect();
        if states == ["dead", "dead", "dead", "delivered"] {
            let error = |route: &str| {
                delivery_of(&event, route)["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let boom = server
                .admin_json(&format!("/api/v1/deliveries/{}", error("boom")))
                .await;
            assert!(
                boom["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("no n=1 please"),
                "{boom}"
            );
            let spin = server
                .admin_json(&format!("/api/v1/deliveries/{}", error("spin")))
                .await;
            assert!(
                spin["last_error"].as_str().unwrap().contains("time limit"),
                "{spin}"
            );
            let deep = server
                .admin_json(&format!("/api/v1/deliveries/{}", error("deep")))
                .await;
            assert!(
                deep["last_error"].as_str().unwrap().contains("crashed"),
                "{deep}"
            );
            // The sandbox recovers: the next event goes through the same routes.
            let next = post_json(&server, "shop", json!({"n": 2})).await;
            for _ in 0..2 {
                let r = receiver.next().await;
                assert_eq!(r.header("webhook-id"), next);
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the expressions' deliveries never all ended");
}

#[tokio::test]
async fn an_ordering_key_sends_one_at_a_time_per_key_in_receive_order_and_a_failing_head_blocks_only_its_key()
 {
    // The first attempt of a:3 and the first two of b:5 fail; everything else succeeds.
    let failures: Arc<Mutex<HashMap<String, u32>>> = Arc::new(Mutex::new(HashMap::from([
        ("a:3".to_owned(), 1),
        ("b:5".to_owned(), 2),
    ])));
    let rule_failures = failures.clone();
    let rule = Arc::new(move |body: &axum::body::Bytes| {
        let v: Value = serde_json::from_slice(body).unwrap();
        let key = format!("{}:{}", v["customer"].as_str().unwrap(), v["seq"]);
        let mut left = rule_failures.lock().unwrap();
        match left.get_mut(&key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                500
            }
            _ => 200,
        }
    });
    let mut receiver = Receiver::start_with_rule(rule, Duration::from_millis(15), "customer").await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{}"
        max_concurrency = 8
        retry = {{ schedule = ["150ms", "150ms", "150ms"] }}
        [[routes]]
        source = "shop"
        destination = "hook"
        transform = '{{customer: .body.customer, seq: .body.seq}}'
        ordering_key = '.body.customer'
        "#,
        receiver.url
    ))
    .await;
    let customers = ["a", "b", "c"];
    const PER_KEY: u64 = 8;
    for seq in 0..PER_KEY {
        for c in customers {
            post_json(&server, "shop", json!({"customer": c, "seq": seq})).await;
        }
    }

    let total = customers.len() * PER_KEY as usize + 3;
    // (customer, seq) in arrival order.
    let mut arrivals: Vec<(String, u64)> = Vec::new();
    for _ in 0..total {
        let r = receiver.next().await;
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        arrivals.push((
            v["customer"].as_str().unwrap().to_owned(),
            v["seq"].as_u64().unwrap(),
        ));
    }
    assert!(
        failures.lock().unwrap().values().all(|n| *n == 0),
        "every scripted failure was answered"
    );
    assert_eq!(
        receiver.peak_in_flight_per_group(),
        1,
        "one in flight per key"
    );
    assert!(
        receiver.peak_in_flight() > 1,
        "different keys go in parallel"
    );
    for c in customers {
        let seqs: Vec<u64> = arrivals
            .iter()
            .filter(|(k, _)| k == c)
            .map(|(_, s)| *s)
            .collect();
        let mut expected: Vec<u64> = (0..PER_KEY).collect();
        // A failed head is sent again before anything after it.
        match c {
            "a" => expected.insert(3, 3),
            "b" => {
                expected.insert(5, 5);
                expected.insert(5, 5);
            }
            _ => {}
        }
        assert_eq!(seqs, expected, "customer {c}: {arrivals:?}");
    }
    // While a:3 waited for its retry, the other keys went on.
    let a3_failed = arrivals
        .iter()
        .position(|a| a.0 == "a" && a.1 == 3)
        .unwrap();
    let a3_sent = arrivals
        .iter()
        .rposition(|a| a.0 == "a" && a.1 == 3)
        .unwrap();
    assert!(
        arrivals[a3_failed + 1..a3_sent]
            .iter()
            .any(|(k, _)| k != "a"),
        "other keys were blocked by a:3: {arrivals:?}"
    );
}

#[tokio::test]
async fn a_jq_dedup_key_drops_a_second_event_with_the_same_key() {
    let server = TestServer::start(
        r#"
        [sources.shop]
        dedup_key = "jq:.body.meta.delivery_id"
        "#,
    )
    .await;
    let first = post_json(
        &server,
        "shop",
        json!({"meta": {"delivery_id": "d-1"}, "n": 1}),
    )
    .await;
    let again = post_json(
        &server,
        "shop",
        json!({"meta": {"delivery_id": "d-1"}, "n": 2}),
    )
    .await;
    let other = post_json(
        &server,
        "shop",
        json!({"meta": {"delivery_id": "d-2"}, "n": 1}),
    )
    .await;
    assert_eq!(first, again, "same key: the original id");
    assert_ne!(first, other);
    let event = server.admin_json(&format!("/api/v1/events/{first}")).await;
    assert_eq!(event["dedup_key"], "d-1");
    assert_eq!(event["duplicates"], 1);
    // No key (null): the body hash decides, so an identical body is still a duplicate.
    let a = post_json(&server, "shop", json!({"n": 3})).await;
    let b = post_json(&server, "shop", json!({"n": 3})).await;
    assert_eq!(a, b);
    let shown = server.admin_json(&format!("/api/v1/events/{a}")).await;
    assert!(shown["dedup_key"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn check_names_the_route_and_key_of_an_expression_that_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forebay.toml");
    std::fs::write(
        &path,
        r#"
        [sources.shop]
        dedup_key = "jq:.body.[oops"
        [destinations.hook]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        [[routes]]
        name = "orders"
        source = "shop"
        destination = "hook"
        filter = '.body.type | no_such_function'
        transform = '{a: .body'
        "#,
    )
    .unwrap();
    let out = run_forebay(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "sources.shop.dedup_key: the jq expression does not compile",
        "routes[0].filter: the filter of route \"orders\" does not compile",
        "no_such_function",
        "routes[0].transform: the transform of route \"orders\" does not compile",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

fn test_route_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("forebay.toml");
    std::fs::write(
        &path,
        r#"
        [sources.batch]
        [destinations.hook]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        [[routes]]
        name = "items"
        source = "batch"
        destination = "hook"
        filter = '.body.kind == "batch"'
        transform = '.body.customer as $c | .body.items[] | {sku: .sku, customer: $c}'
        ordering_key = '.body.customer'
        "#,
    )
    .unwrap();
    path
}

#[test]
fn test_route_prints_what_a_file_would_become() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_route_config(dir.path());
    let payload = dir.path().join("payload.json");
    std::fs::write(
        &payload,
        r#"{"kind":"batch","customer":"cus_9","items":[{"sku":"a"},{"sku":"b"}]}"#,
    )
    .unwrap();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "test-route",
            "-c",
            config.to_str().unwrap(),
            "--route",
            "items",
            "--file",
            payload.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let owned = args(extra);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        run_forebay(&refs, &[])
    };

    let out = run(&["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "deliver");
    assert_eq!(report["ordering_key"], "cus_9");
    assert_eq!(
        report["deliveries"],
        json!([
            {"webhook_id": "evt_test.1", "body": {"sku": "a", "customer": "cus_9"}},
            {"webhook_id": "evt_test.2", "body": {"sku": "b", "customer": "cus_9"}},
        ])
    );

    let human = run(&[]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("2 delivery(ies) to hook"), "{text}");
    assert!(text.contains("--- webhook-id: evt_test.2"), "{text}");
    assert!(text.contains("ordering key: cus_9"), "{text}");

    std::fs::write(&payload, r#"{"kind":"single"}"#).unwrap();
    let filtered = run(&["--json"]);
    assert_eq!(filtered.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&filtered.stdout).unwrap();
    assert_eq!(report["outcome"], "filtered");

    std::fs::write(&payload, r#"{"kind":"batch","items":3}"#).unwrap();
    let failed = run(&["--json"]);
    assert_eq!(failed.status.code(), Some(4), "an expression error exits 4");
    let report: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(report["outcome"], "failed");
    assert!(
        report["error"].as_str().unwrap().starts_with("transform: "),
        "{report}"
    );

    let missing = run_forebay(
        &[
            "test-route",
            "-c",
            config.to_str().unwrap(),
            "--route",
            "nope",
            "--file",
            payload.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("the routes are: items"));
}

#[tokio::test]
async fn test_route_runs_an_edited_route_on_a_stored_event() {
    // The server stores events (no routes); test-route fetches one through the admin API
    // and runs the route from the file on it.
    let server = TestServer::start("[sources.batch]").await;
    let id = post_json(
        &server,
        "batch",
        json!({"kind": "batch", "customer": "cus_1", "items": [{"sku": "z"}]}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_route_config(dir.path());
    let admin = format!("http://{}", server.admin);
    let event = id.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_forebay(
            &[
                "test-route",
                "-c",
                config.to_str().unwrap(),
                "--route",
                "items",
                "--event",
                &event,
                "--server",
                &admin,
                "--json",
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["event_id"], id);
    assert_eq!(
        report["deliveries"],
        json!([{"webhook_id": id, "body": {"sku": "z", "customer": "cus_1"}}]),
        "one output keeps the event id"
    );
}
