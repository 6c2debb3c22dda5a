//! Dedup at the door: repeats are answered with the original id and create no delivery.

use crate::support::TestServer;

const ROUTED: &str = r#"
[destinations.sink]
kind = "http"
url = "http://127.0.0.1:9/hook"
"#;

use crate::support::server::event_id as id_of;

#[tokio::test]
async fn same_body_is_a_duplicate_of_the_first() {
    let server = TestServer::start(&format!(
        "[sources.plain]\n{ROUTED}\n[[routes]]\nsource = \"plain\"\ndestination = \"sink\"\n"
    ))
    .await;
    let first = id_of(server.post("plain", &[], "same").await).await;
    let again = id_of(server.post("plain", &[], "same").await).await;
    let third = id_of(server.post("plain", &[], "same").await).await;
    let other = id_of(server.post("plain", &[], "different").await).await;
    assert_eq!(first, again);
    assert_eq!(first, third);
    assert_ne!(first, other);

    let e = server.admin_json(&format!("/api/v1/events/{first}")).await;
    assert_eq!(e["duplicates"], 2);
    assert!(e["dedup_key"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        e["deliveries"].as_array().unwrap().len(),
        1,
        "no delivery for repeats"
    );
    let list = server.admin_json("/api/v1/events?source=plain").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn configured_header_and_json_keys() {
    let server = TestServer::start(
        r#"
        [sources.by-header]
        dedup_key = "header:X-Request-Id"
        [sources.by-json]
        dedup_key = "json:/data/id"
        "#,
    )
    .await;
    let a = id_of(
        server
            .post("by-header", &[("x-request-id", "r1")], "one")
            .await,
    )
    .await;
    let b = id_of(
        server
            .post("by-header", &[("x-request-id", "r1")], "two")
            .await,
    )
    .await;
    let c = id_of(
        server
            .post("by-header", &[("x-request-id", "r2")], "one")
            .await,
    )
    .await;
    assert_eq!(a, b, "same header value, different bodies: duplicate");
    assert_ne!(a, c);
    let e = server.admin_json(&format!("/api/v1/events/{a}")).await;
    assert_eq!(e["dedup_key"], "r1");

    let x = id_of(
        server
            .post("by-json", &[], r#"{"data":{"id":"o-7"},"at":1}"#)
            .await,
    )
    .await;
    let y = id_of(
        server
            .post("by-json", &[], r#"{"data":{"id":"o-7"},"at":2}"#)
            .await,
    )
    .await;
    assert_eq!(x, y);
    // Keys are per source: the same key on another source is a new event.
    let z = id_of(
        server
            .post("by-header", &[("x-request-id", "o-7")], "z")
            .await,
    )
    .await;
    assert_ne!(x, z);
}

#[tokio::test]
async fn provider_id_is_the_default_key() {
    let server = TestServer::start(
        r#"
        [sources.gh]
        verify = { kind = "github", secret = "It's a Secret to Everybody" }
        "#,
    )
    .await;
    // GitHub's documented example signature of "Hello, World!".
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let headers = [("x-hub-signature-256", sig), ("x-github-delivery", "d-1")];
    let a = id_of(server.post("gh", &headers, "Hello, World!").await).await;
    let b = id_of(server.post("gh", &headers, "Hello, World!").await).await;
    assert_eq!(a, b);
    let e = server.admin_json(&format!("/api/v1/events/{a}")).await;
    assert_eq!(e["dedup_key"], "d-1");
    assert_eq!(e["duplicates"], 1);
}

#[tokio::test]
async fn duplicates_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), "[sources.s]\n").await;
    let first = id_of(server.post("s", &[], "persisted").await).await;
    server.stop().await;
    let server = TestServer::start_in(dir.path(), "[sources.s]\n").await;
    let again = id_of(server.post("s", &[], "persisted").await).await;
    assert_eq!(first, again);
    let e = server.admin_json(&format!("/api/v1/events/{first}")).await;
    assert_eq!(e["body"], "persisted");
    assert_eq!(e["duplicates"], 1);
}
