//! The admin API's read access: one event, pages of events, rejected requests, the token.

use serde_json::Value;

use crate::support::TestServer;

const TWO_SOURCES: &str = r#"
[sources.a]
[sources.b]

[destinations.sink]
kind = "http"
url = "http://127.0.0.1:9/hook"

[[routes]]
source = "a"
destination = "sink"

[[routes]]
name = "a-again"
source = "a"
destination = "sink"
"#;

async fn post_id(server: &TestServer, source: &str, body: &str) -> String {
    server.post_for_id(source, &[], body.to_owned()).await
}

#[tokio::test]
async fn event_has_its_fields_and_one_pending_delivery_per_route() {
    let server = TestServer::start_ingest_only(TWO_SOURCES).await;
    let id = post_id(&server, "a", r#"{"n":1}"#).await;
    let e = server.admin_json(&format!("/api/v1/events/{id}")).await;
    for key in [
        "id",
        "source",
        "received_at",
        "method",
        "path",
        "query",
        "headers",
        "dedup_key",
        "duplicates",
        "body",
    ] {
        assert!(e.get(key).is_some(), "missing {key} in {e}");
    }
    assert!(e["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["duplicates"], 0);
    let deliveries = e["deliveries"].as_array().unwrap();
    let routes: Vec<&str> = deliveries
        .iter()
        .map(|d| d["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["a-sink", "a-again"]);
    assert!(
        deliveries
            .iter()
            .all(|d| d["state"] == "pending" && d["destination"] == "sink")
    );
    assert!(
        deliveries
            .iter()
            .all(|d| d["id"].as_str().unwrap().starts_with("dlv_"))
    );

    // A source without routes archives its events, with no deliveries.
    let id = post_id(&server, "b", "x").await;
    let e = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(e["deliveries"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn lists_newest_first_with_cursor_and_source_filter() {
    let server = TestServer::start(TWO_SOURCES).await;
    let mut a_ids = Vec::new();
    for i in 0..5 {
        a_ids.push(post_id(&server, "a", &format!("a{i}")).await);
        post_id(&server, "b", &format!("b{i}")).await;
    }
    a_ids.reverse();

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = server
            .admin_json(&format!("/api/v1/events?source=a&limit=2&cursor={cursor}"))
            .await;
        for e in page["data"].as_array().unwrap() {
            assert_eq!(e["source"], "a");
            assert!(e.get("body").is_none(), "listings leave bodies out");
            seen.push(e["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, a_ids);

    let all = server.admin_json("/api/v1/events?limit=500").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 10);
    assert!(all.get("next_cursor").is_none());
}

#[tokio::test]
async fn bad_queries_get_400_and_unknown_ids_404() {
    let server = TestServer::start(TWO_SOURCES).await;
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=many", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("cursor=zzz", "invalid_cursor"),
    ] {
        let r = server
            .client
            .get(server.admin_url(&format!("/api/v1/events?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    for id in ["evt_0192f3c4a1b27000800000000000abcd", "not-an-id"] {
        let r = server
            .client
            .get(server.admin_url(&format!("/api/v1/events/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "event_not_found"
        );
    }
}

#[tokio::test]
async fn token_is_required_when_configured() {
    let server = TestServer::start(&format!(
        "[server]\nadmin_token = \"s3cret\"\n{TWO_SOURCES}"
    ))
    .await;
    let url = server.admin_url("/api/v1/events");
    let r = server.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = server
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .client
        .get(&url)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn rejected_requests_are_listed_with_their_reason() {
    let server = TestServer::start(
        r#"
        [sources.locked]
        verify = { kind = "bearer", token = "right" }
        "#,
    )
    .await;
    let r = server
        .post("locked", &[("authorization", "Bearer wrong")], "payload")
        .await;
    assert_eq!(r.status(), 401);
    let list = server.admin_json("/api/v1/rejected?source=locked").await;
    let id = list["data"][0]["id"].as_str().unwrap();
    assert!(id.starts_with("rej_"));
    let rejected = server.admin_json(&format!("/api/v1/rejected/{id}")).await;
    assert_eq!(rejected["body"], "payload");
    assert_eq!(rejected["headers"]["authorization"], "Bearer wrong");
    assert!(!rejected["reason"].as_str().unwrap().is_empty());
    // Never an event.
    let events = server.admin_json("/api/v1/events").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn rejected_bodies_are_cut_and_shown_one_at_a_time() {
    let server = TestServer::start(
        r#"
        [storage]
        url = "sqlite://{db}"
        rejected_body_limit = "16B"
        [sources.locked]
        verify = { kind = "bearer", token = "right" }
        "#,
    )
    .await;
    let body = "0123456789abcdefghijklmnopqrstuvwxyz";
    assert_eq!(server.post("locked", &[], body).await.status(), 401);
    let list = server.admin_json("/api/v1/rejected").await;
    let item = &list["data"][0];
    assert!(item.get("body").is_none(), "listings leave bodies out");
    assert_eq!(item["body_size"], body.len());
    let id = item["id"].as_str().unwrap();
    let one = server.admin_json(&format!("/api/v1/rejected/{id}")).await;
    assert_eq!(one["body"], &body[..16]);
    assert_eq!(one["body_size"], body.len());
    let r = server
        .client
        .get(server.admin_url("/api/v1/rejected/rej_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn every_error_is_json() {
    let server =
        TestServer::start(&format!("[server]\nadmin_token = \"tok\"\n{TWO_SOURCES}")).await;
    let get = |path: &str| server.client.get(server.admin_url(path)).bearer_auth("tok");
    for (request, status, code) in [
        (get("/api/v1/events?limit=1&limit=2"), 400, "invalid_query"),
        (get("/api/v1/events/%FF"), 400, "invalid_path"),
        (get("/api/v1/nothing"), 404, "not_found"),
        (
            server
                .client
                .post(server.admin_url("/api/v1/events"))
                .bearer_auth("tok"),
            405,
            "method_not_allowed",
        ),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
    }
    // The scheme name is case-insensitive.
    let r = server
        .client
        .get(server.admin_url("/api/v1/events"))
        .header("authorization", "bearer tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
