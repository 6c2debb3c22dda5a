//! The admin API for finding and following events: search filters, export, the live
//! stream, sources with live state, and replay jobs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestServer;
use crate::support::receiver::Receiver;

async fn post(server: &TestServer, source: &str, body: Value) -> String {
    server
        .post_for_id(
            source,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of a search, following `next_cursor`.
async fn all_pages(server: &TestServer, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = server
            .admin_json(&format!("/api/v1/events?{query}&limit=2{cursor}"))
            .await;
        out.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

async fn error_code(server: &TestServer, path: &str) -> (u16, String) {
    let r = server
        .client
        .get(server.admin_url(path))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn events_are_found_by_source_time_status_dedup_key_and_a_jq_predicate() {
    let server = TestServer::start_ingest_only(
        r#"
        [sources.shop]
        dedup_key = "json:/id"
        [sources.other]
        [destinations.hook]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        [[routes]]
        source = "shop"
        destination = "hook"
        "#,
    )
    .await;
    let a = post(
        &server,
        "shop",
        json!({"id": "a", "type": "invoice.paid", "n": 1}),
    )
    .await;
    let b = post(
        &server,
        "shop",
        json!({"id": "b", "type": "customer.created", "n": 2}),
    )
    .await;
    let c = post(
        &server,
        "other",
        json!({"id": "c", "type": "invoice.paid", "n": 3}),
    )
    .await;
    // A millisecond past c's receipt (c was answered, so it was received by now), and
    // d comes later still.
    let middle = forebay::clock::rfc3339(forebay::clock::now_ms() + 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let d = post(
        &server,
        "shop",
        json!({"id": "d", "type": "invoice.voided", "n": 4}),
    )
    .await;

    assert_eq!(
        all_pages(&server, "").await,
        [&*d, &*c, &*b, &*a],
        "newest first"
    );
    assert_eq!(all_pages(&server, "order=asc").await, [&*a, &*b, &*c, &*d]);
    assert_eq!(all_pages(&server, "source=shop").await, [&*d, &*b, &*a]);
    assert_eq!(
        all_pages(&server, &format!("until={middle}")).await,
        [&*c, &*b, &*a]
    );
    assert_eq!(all_pages(&server, &format!("since={middle}")).await, [&*d]);
    assert_eq!(all_pages(&server, "dedup_key=b").await, [&*b]);
    // Only the shop events have a delivery (ingest-only: it stays pending).
    assert_eq!(
        all_pages(&server, "status=pending&order=asc").await,
        [&*a, &*b, &*d]
    );
    assert!(all_pages(&server, "status=delivered").await.is_empty());
    let q = urlencode(r#".body.type | startswith("invoice.")"#);
    assert_eq!(all_pages(&server, &format!("q={q}")).await, [&*d, &*c, &*a]);
    let q = urlencode(".body.n > 1 and .source == \"shop\"");
    assert_eq!(
        all_pages(&server, &format!("q={q}&order=asc")).await,
        [&*b, &*d]
    );

    // Bodies only when asked for.
    let page = server.admin_json("/api/v1/events?limit=1").await;
    assert!(page["data"][0].get("body").is_none());
    let page = server
        .admin_json("/api/v1/events?limit=1&include_body=true")
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(page["data"][0]["body"].as_str().unwrap()).unwrap()["id"],
        "d"
    );

    for (path, status, code) in [
        ("/api/v1/events?since=yesterday", 400, "invalid_time"),
        ("/api/v1/events?status=lost", 400, "invalid_status"),
        ("/api/v1/events?q=.body.%5B", 400, "invalid_q"),
        ("/api/v1/events?order=up", 400, "invalid_order"),
        ("/api/v1/events?include_body=yes", 400, "invalid_query"),
        ("/api/v1/events?cursor=nope", 400, "invalid_cursor"),
    ] {
        assert_eq!(
            error_code(&server, path).await,
            (status, code.to_owned()),
            "{path}"
        );
    }
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn export_streams_every_matching_event_with_its_body_as_ndjson() {
    let server = TestServer::start_ingest_only("[sources.shop]\n[sources.other]").await;
    let mut posted = Vec::new();
    for n in 0..450 {
        posted.push(post(&server, "shop", json!({"n": n})).await);
    }
    post(&server, "other", json!({"n": "not me"})).await;
    let binary = server
        .post(
            "shop",
            &[("content-type", "application/octet-stream")],
            vec![0xff, 0x00, 0x80],
        )
        .await;
    posted.push(crate::support::server::event_id(binary).await);

    let r = server
        .client
        .get(server.admin_url("/api/v1/export?source=shop"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: Vec<&str> = lines.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(exported, posted, "oldest first, every page");
    assert_eq!(lines[7]["body"], json!({"n": 7}).to_string());
    assert_eq!(lines[450]["body_base64"], "/wCA");
    assert_eq!(
        lines[450]["headers"]["content-type"],
        "application/octet-stream"
    );
}

/// Reads server-sent events until `n` event ids have arrived.
async fn read_events(response: &mut reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    let mut buffer = String::new();
    while got.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                }
                if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(v).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                got.push((id, data));
            }
        }
    }
    got
}

#[tokio::test]
async fn the_stream_sends_new_events_and_resumes_after_the_last_one_seen() {
    let server = TestServer::start_ingest_only("[sources.shop]\n[sources.other]").await;
    let before = post(&server, "shop", json!({"n": 0})).await;
    let mut live = server
        .client
        .get(server.admin_url("/api/v1/stream?source=shop"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let first = post(&server, "shop", json!({"n": 1})).await;
    post(&server, "other", json!({"n": "elsewhere"})).await;
    let second = post(&server, "shop", json!({"n": 2})).await;
    let got = read_events(&mut live, 2).await;
    assert_eq!(got[0].0, first, "only events after the connection opened");
    assert_eq!(got[1].0, second);
    assert_eq!(got[1].1["body"], json!({"n": 2}).to_string());
    drop(live);

    // Offline for a while: resuming after `before` catches up on both.
    let third = post(&server, "shop", json!({"n": 3})).await;
    let mut resumed = server
        .client
        .get(server.admin_url("/api/v1/stream?source=shop"))
        .header("last-event-id", &before)
        .send()
        .await
        .unwrap();
    let got = read_events(&mut resumed, 3).await;
    let got: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(got, [&*first, &*second, &*third]);

    let (status, code) = error_code(
        &server,
        "/api/v1/stream?after=evt_0190000000007000800000000000000",
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "resume_event_not_found"));
    let (status, code) = error_code(&server, "/api/v1/stream?source=nope").await;
    assert_eq!((status, code.as_str()), (404, "unknown_source"));
}

#[tokio::test]
async fn sources_routes_and_destinations_show_live_backlogs() {
    let server = TestServer::start_ingest_only(
        r#"
        [sources.shop]
        verify = { kind = "bearer", token = "t0k3n" }
        [destinations.hook]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        [[routes]]
        name = "orders"
        source = "shop"
        destination = "hook"
        filter = '.body.ok'
        "#,
    )
    .await;
    for n in 0..3 {
        let r = server
            .post(
                "shop",
                &[
                    ("authorization", "Bearer t0k3n"),
                    ("content-type", "application/json"),
                ],
                json!({"n": n}).to_string(),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let sources = server.admin_json("/api/v1/sources").await;
    assert_eq!(
        sources["data"][0],
        json!({"name": "shop", "verify": "bearer", "methods": ["POST", "PUT", "PATCH"],
               "max_body": 5242880, "dedup_window": 604800,
               "retention": {"events": 2592000, "attempts": 2592000, "rejected": 259200},
               "routes": ["orders"]})
    );
    let routes = server.admin_json("/api/v1/routes").await;
    assert_eq!(routes["data"][0]["backlog"], 3);
    assert_eq!(routes["data"][0]["filter"], ".body.ok");
    assert_eq!(routes["data"][0]["transform"], Value::Null);
    let destinations = server.admin_json("/api/v1/destinations").await;
    assert_eq!(destinations["data"][0]["backlog"], 3);
    assert_eq!(destinations["data"][0]["dead"], 0);
}

async fn replay_until_finished(server: &TestServer, id: &str) -> Value {
    for _ in 0..500 {
        let job = server.admin_json(&format!("/api/v1/replays/{id}")).await;
        if job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("replay {id} never finished");
}

async fn start_replay(server: &TestServer, body: Value) -> reqwest::Response {
    server
        .client
        .post(server.admin_url("/api/v1/replays"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replay_job_sends_matching_events_again_marked_as_replays() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{0}"
        [destinations.audit]
        kind = "http"
        url = "{0}"
        [[routes]]
        source = "shop"
        destination = "hook"
        "#,
        receiver.url
    ))
    .await;
    let mut events = Vec::new();
    for n in 0..5 {
        events.push(
            post(
                &server,
                "shop",
                json!({"n": n, "kind": if n % 2 == 0 { "even" } else { "odd" }}),
            )
            .await,
        );
        let first = receiver.next().await;
        assert!(first.headers.get("forebay-replay").is_none());
    }

    // The even ones, again, through their routes, at 20/s.
    let r = start_replay(
        &server,
        json!({"source": "shop", "q": ".body.kind == \"even\"", "rate": "20/s"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["state"], "running");
    let replay_id = job["id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let got = receiver.next().await;
        assert_eq!(got.header("forebay-replay"), replay_id);
        seen.push(got.header("webhook-id").to_owned());
    }
    assert_eq!(
        seen,
        [&*events[0], &*events[2], &*events[4]],
        "the events' own ids"
    );
    let job = replay_until_finished(&server, &replay_id).await;
    assert_eq!(job["state"], "done");
    assert_eq!(job["matched"], 3);
    assert_eq!(job["queued"], 3);
    assert_eq!(job["scanned"], 5);

    // Named events, to one destination.
    let r = start_replay(
        &server,
        json!({"event_ids": [events[1]], "destination": "audit"}),
    )
    .await;
    let job: Value = r.json().await.unwrap();
    let got = receiver.next().await;
    assert_eq!(got.header("webhook-id"), events[1]);
    let job = replay_until_finished(&server, job["id"].as_str().unwrap()).await;
    assert_eq!(job["queued"], 1);
    let listed = server.admin_json("/api/v1/replays").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    for (body, code) in [
        (json!({}), "filter_required"),
        (json!({"source": "shop", "rate": "fast"}), "invalid_rate"),
        (
            json!({"source": "shop", "destination": "nowhere"}),
            "unknown_destination",
        ),
        (json!({"event_ids": ["evt_x"]}), "invalid_body"),
        (json!({"source": "shop", "colour": "blue"}), "invalid_body"),
    ] {
        let r = start_replay(&server, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
    }
}

#[tokio::test]
async fn a_cancelled_replay_stops_and_discards_what_it_had_not_sent() {
    let server = TestServer::start(
        r#"
        [sources.shop]
        [destinations.held]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        [[routes]]
        source = "shop"
        destination = "held"
        "#,
    )
    .await;
    // The destination is paused: replayed deliveries wait, and can be discarded.
    assert_eq!(
        server
            .admin_post("/api/v1/destinations/held/pause")
            .await
            .status(),
        200
    );
    for n in 0..3 {
        post(&server, "shop", json!({"n": n})).await;
    }
    let r = start_replay(&server, json!({"all": true, "rate": "1/m"})).await;
    let job: Value = r.json().await.unwrap();
    let replay_id = job["id"].as_str().unwrap().to_owned();
    // The first step queues one delivery at once; the next would wait a minute.
    for _ in 0..500 {
        let job = server
            .admin_json(&format!("/api/v1/replays/{replay_id}"))
            .await;
        if job["queued"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = server
        .admin_post(&format!("/api/v1/replays/{replay_id}/cancel"))
        .await;
    assert_eq!(cancelled.status(), 200);
    let job: Value = cancelled.json().await.unwrap();
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["queued"], 1);
    assert_eq!(job["deliveries"], json!({"discarded": 1}));
    let r = server
        .admin_post("/api/v1/replays/rpl_0190000000007000800000000000000/cancel")
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn shutdown_ends_open_streams_instead_of_waiting_for_them() {
    let server = TestServer::start_ingest_only("[sources.shop]").await;
    let mut live = server
        .client
        .get(server.admin_url("/api/v1/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited on the open stream");
    // The stream ended cleanly rather than hanging.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = live.chunk().await {}
    })
    .await;
    assert!(rest.is_ok());
}

#[tokio::test]
async fn cancelling_a_job_that_queued_everything_discards_what_was_not_sent() {
    let server = TestServer::start(
        r#"
        [sources.shop]
        [destinations.held]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        [[routes]]
        source = "shop"
        destination = "held"
        "#,
    )
    .await;
    server.admin_post("/api/v1/destinations/held/pause").await;
    post(&server, "shop", json!({"n": 1})).await;
    let r = start_replay(&server, json!({"all": true})).await;
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let done = replay_until_finished(&server, &id).await;
    assert_eq!(done["state"], "done");
    let cancelled: Value = server
        .admin_post(&format!("/api/v1/replays/{id}/cancel"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["deliveries"], json!({"discarded": 1}));
}
