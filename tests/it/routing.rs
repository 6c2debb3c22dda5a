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
            // Recursion without end overflows the sandbox's stack (a crash), or, on a
            // machine busy enough that it cannot get that deep within the limit, runs
            // past the time limit: stopped and reported either way.
            let deep_error = deep["last_error"].as_str().unwrap();
            assert!(
                deep_error.contains("crashed") || deep_error.contains("time limit"),
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
    dedup_key_drops_a_second_event_with_the_same_key(r#"dedup_key = "jq:.body.meta.delivery_id""#)
        .await;
}

#[tokio::test]
async fn a_javascript_dedup_key_drops_a_second_event_with_the_same_key() {
    dedup_key_drops_a_second_event_with_the_same_key(
        r#"dedup_key = "js:export default (e) => e.body.meta?.delivery_id ?? null""#,
    )
    .await;
}

async fn dedup_key_drops_a_second_event_with_the_same_key(rule: &str) {
    let server = TestServer::start(&format!("[sources.shop]\n{rule}\n")).await;
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

/// JavaScript filters, transforms and ordering keys, inline and from a file beside the
/// configuration, on the same path as jq: a split, a drop, a failure with its place in
/// the source, a loop stopped at the time limit.
#[tokio::test]
async fn javascript_routes_filter_split_key_and_fail_like_jq_ones() {
    let mut receiver = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("split.js");
    std::fs::write(
        &module,
        "// One delivery per line item, with the order's customer.\n\
         export default (event) => {\n\
         \x20 const { customer, items } = event.body;\n\
         \x20 return items.map((item) => ({ sku: item.sku.toUpperCase(), customer }));\n\
         };\n",
    )
    .unwrap();
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{url}"
        [[routes]]
        name = "items"
        source = "shop"
        destination = "hook"
        filter = {{ js = "export default (e) => e.body.kind === 'order'" }}
        transform = {{ js_file = "{module}" }}
        ordering_key = {{ js = "export default (e) => e.body.customer" }}
        [[routes]]
        name = "spin"
        source = "shop"
        destination = "hook"
        transform = {{ js = "export default () => {{ for (;;) {{}} }}" }}
        "#,
        url = receiver.url,
        module = module.display(),
    ))
    .await;
    let order = post_json(
        &server,
        "shop",
        json!({"kind": "order", "customer": "cus_7", "items": [{"sku": "a"}, {"sku": "b"}]}),
    )
    .await;
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let r = receiver.next().await;
        got.insert(
            r.header("webhook-id").to_owned(),
            serde_json::from_slice::<Value>(&r.body).unwrap(),
        );
    }
    assert_eq!(
        got,
        BTreeMap::from([
            (
                format!("{order}.1"),
                json!({"sku": "A", "customer": "cus_7"})
            ),
            (
                format!("{order}.2"),
                json!({"sku": "B", "customer": "cus_7"})
            ),
        ])
    );
    let spin = loop {
        let event = server.admin_json(&format!("/api/v1/events/{order}")).await;
        let spin = delivery_of(&event, "spin");
        if spin["state"] == "dead" {
            break spin["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let spin = server
        .admin_json(&format!("/api/v1/deliveries/{spin}"))
        .await;
    assert!(
        spin["last_error"].as_str().unwrap().contains("time limit"),
        "{spin}"
    );

    // Not an order: filtered on "items". Without items, the module throws, and the error
    // names the file, line and column.
    let note = post_json(&server, "shop", json!({"kind": "note"})).await;
    let broken = post_json(&server, "shop", json!({"kind": "order", "customer": "c"})).await;
    for _ in 0..500 {
        let note = server.admin_json(&format!("/api/v1/events/{note}")).await;
        let broken = server.admin_json(&format!("/api/v1/events/{broken}")).await;
        let (note, broken) = (delivery_of(&note, "items"), delivery_of(&broken, "items"));
        if note["state"] == "filtered" && broken["state"] == "dead" {
            let shown = server
                .admin_json(&format!(
                    "/api/v1/deliveries/{}",
                    broken["id"].as_str().unwrap()
                ))
                .await;
            let error = shown["last_error"].as_str().unwrap();
            assert!(error.starts_with("transform: TypeError: "), "{error}");
            assert!(
                error.contains(&format!("(at {}:4:", module.display())),
                "{error}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the note was never filtered or the broken order never went dead");
}

#[test]
fn check_names_a_javascript_module_that_does_not_load_and_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("transforms")).unwrap();
    std::fs::write(
        dir.path().join("transforms/late.js"),
        "export default (e) => {\n  return e.body.\n};\n",
    )
    .unwrap();
    let path = dir.path().join("forebay.toml");
    std::fs::write(
        &path,
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        [[routes]]
        name = "late"
        source = "shop"
        destination = "hook"
        transform = { js_file = "transforms/late.js" }
        [[routes]]
        name = "missing"
        source = "shop"
        destination = "hook"
        transform = { js_file = "transforms/nope.js" }
        [[routes]]
        name = "value"
        source = "shop"
        destination = "hook"
        filter = { js = "export default 42" }
        [[routes]]
        name = "python"
        source = "shop"
        destination = "hook"
        ordering_key = { python = "x" }
        "#,
    )
    .unwrap();
    // Run from elsewhere: js_file is relative to the configuration's directory.
    let out = run_forebay(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "routes[0].transform: the transform of route \"late\" does not compile: SyntaxError: ",
        "(at transforms/late.js:3:",
        "routes[1].transform: the transform of route \"missing\" does not compile: cannot read js_file ",
        "relative to the configuration file's directory",
        "routes[2].filter: the filter of route \"value\" does not compile: the default export of routes[2].filter is a number, not a function",
        "routes[3].ordering_key",
        "unknown key `python`; an expression is a jq string, or a table with one of `jq`, `js`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// A route whose transform keeps running past its time limit is paused after
/// `pause_after_timeouts` deliveries in a row, with the reason in the API and a metric;
/// its later deliveries wait unprepared (no time limit spent on them) while other routes
/// go on, and a resume clears the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_expression_keeps_timing_out_is_paused_with_the_reason() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{}"
        [[routes]]
        name = "spin"
        source = "shop"
        destination = "hook"
        transform = {{ js = "export default () => {{ for (;;) {{}} }}" }}
        pause_after_timeouts = 2
        [[routes]]
        name = "plain"
        source = "shop"
        destination = "hook"
        "#,
        receiver.url
    ))
    .await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(post_json(&server, "shop", json!({"n": n})).await);
    }
    let route = loop {
        let routes = server.admin_json("/api/v1/routes").await;
        let spin = routes["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "spin")
            .unwrap()
            .clone();
        if spin["paused"] == true {
            break spin;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reason = route["paused_reason"].as_str().unwrap();
    assert!(
        reason.contains("ran past their time limit on 2 deliveries in a row"),
        "{reason}"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("forebay_route_paused{route=\"spin\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "forebay_routes_paused_total{route=\"spin\",reason=\"expression_timeouts\"} 1"
        ),
        "{metrics}"
    );

    // Later events: the plain route delivers them; the paused one leaves them waiting,
    // unprepared, instead of spending a time limit on each.
    let later = post_json(&server, "shop", json!({"n": 9})).await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(receiver.next().await.header("webhook-id").to_owned());
    }
    assert!(seen.contains(&later), "{seen:?}");
    // Only as many deliveries as it took to pause the route spent the time limit: after
    // the first, one a batch, and not the rest of a batch once one timed out.
    let mut states = Vec::new();
    for id in ids.iter().chain([&later]) {
        let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
        states.push(
            delivery_of(&event, "spin")["state"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        states,
        [
            "dead", "dead", "pending", "pending", "pending", "pending", "pending"
        ],
        "the oldest two went dead, the rest wait"
    );

    let resumed = server.admin_post("/api/v1/routes/spin/resume").await;
    assert!(resumed.status().is_success());
    let routes = server.admin_json("/api/v1/routes").await;
    let spin = routes["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "spin")
        .unwrap();
    assert_eq!(spin["paused"], false);
    assert_eq!(spin["paused_reason"], Value::Null);
}
