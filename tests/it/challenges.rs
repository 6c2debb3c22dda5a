//! Provider challenges over real HTTP: each is answered as its provider expects and not
//! stored as an event; a refused one is `403` and kept as a rejected request; a GET that
//! is no challenge stays `405`. (The unit tests beside `challenges.rs` cover the cases;
//! `presets.rs` checks that `forebay send` signs for every preset.)

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use crate::support::{TestServer, hmac_sha256, unix_now};

const SOURCES: &str = r#"
[sources.meta]
verify = { kind = "meta", secret = "meta-app-secret", verify_token = "meatyhamhock" }
[sources.twitter]
verify = { kind = "twitter", secret = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu" }
[sources.dropbox]
verify = { kind = "dropbox", secret = "dropbox-app-secret" }
[sources.nylas]
verify = { kind = "nylas", secret = "nylas-webhook-secret" }
[sources.okta]
verify = { kind = "okta", secret = "okta-secret" }
[sources.trello]
verify = { kind = "trello", secret = "trello-secret", public_url = "https://hooks.example.com/in/trello" }
[sources.asana]
verify = { kind = "asana", verify_token = "ours" }
[sources.zoom]
verify = { kind = "zoom", secret = "secretValueTest" }
[sources.twitch]
verify = { kind = "twitch", secret = "twitch-webhook-secret" }
[sources.xero]
verify = { kind = "xero", secret = "xero-webhooks-key" }
[sources.gitlab]
verify = { kind = "gitlab", secret = "gitlab-token" }
[sources.github]
verify = { kind = "github", secret = "gh" }
"#;

fn mac(key: &str, msg: &str) -> Vec<u8> {
    hmac_sha256(key.as_bytes(), msg.as_bytes())
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> reqwest::Response {
    let mut req = server
        .client
        .request(method, server.ingest_url(path))
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    req.send().await.expect("request sent")
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    send(server, reqwest::Method::GET, path, &[], "").await
}

/// POSTs `body` to `/in/{source}` with `headers`.
async fn post(
    server: &TestServer,
    source: &str,
    headers: &[(&str, String)],
    body: &str,
) -> reqwest::Response {
    let path = format!("/in/{source}");
    send(server, reqwest::Method::POST, &path, headers, body).await
}

#[tokio::test]
async fn get_challenges_are_answered_and_other_gets_are_405() {
    let server = TestServer::start(SOURCES).await;

    // Meta's sample subscription request ("Getting started", Graph API webhooks).
    let r = get(
        &server,
        "/in/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    let r = get(
        &server,
        "/in/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess",
    )
    .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "challenge_refused");
    let reasons = server.rejected_of("meta").await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0]["reason"]
            .as_str()
            .unwrap()
            .contains("hub.verify_token does not match"),
        "{reasons:?}"
    );

    // X's CRC, with the consumer secret and token of X DevRel's sample code.
    let r = get(
        &server,
        "/in/twitter?crc_token=9b4507b3-9040-4669-9ca3-6b94edb50553",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["response_token"],
        "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="
    );

    let r = get(&server, "/in/dropbox?challenge=W0vVtgU2rMlqy7k").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.unwrap(), "W0vVtgU2rMlqy7k");

    // Nylas checks a new webhook destination the same way.
    let r = get(
        &server,
        "/in/nylas?challenge=bc609b38-c81f-47fb-a275-1d9bd61a968b",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "bc609b38-c81f-47fb-a275-1d9bd61a968b"
    );

    let r = send(
        &server,
        reqwest::Method::GET,
        "/in/okta",
        &[(
            "X-Okta-Verification-Challenge",
            "Y0Fw-0cyVh9QgYN3".to_owned(),
        )],
        "",
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"verification": "Y0Fw-0cyVh9QgYN3"})
    );

    let r = send(&server, reqwest::Method::HEAD, "/in/trello", &[], "").await;
    assert_eq!(r.status(), 200);

    // Not challenges: 405, naming what the source accepts.
    for path in ["/in/meta?x=1", "/in/dropbox", "/in/okta", "/in/trello"] {
        let r = get(&server, path).await;
        assert_eq!(r.status(), 405, "{path}");
        assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("accepts POST"), "{message}");
        assert!(message.contains("challenges"), "{message}");
    }
    let r = get(&server, "/in/github").await;
    assert_eq!(r.status(), 405);
    let r = send(&server, reqwest::Method::HEAD, "/in/meta", &[], "").await;
    assert_eq!(r.status(), 405);

    // Nothing above became an event.
    for source in ["meta", "twitter", "dropbox", "nylas", "okta", "trello"] {
        assert!(server.events_of(source).await.is_empty(), "{source}");
    }

    // Meta's events are signed POSTs as usual.
    let body = r#"{"object":"page","entry":[]}"#;
    let sig = format!("sha256={}", hex::encode(mac("meta-app-secret", body)));
    let r = post(&server, "meta", &[("X-Hub-Signature-256", sig)], body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(server.events_of("meta").await.len(), 1);
}

#[tokio::test]
async fn asana_handshake_is_echoed_and_kept_for_the_operator() {
    let server = TestServer::start(SOURCES).await;
    let secret = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";
    let r = send(
        &server,
        reqwest::Method::POST,
        "/in/asana?verify_token=ours",
        &[("X-Hook-Secret", secret.to_owned())],
        "",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-hook-secret"], secret);
    // The operator reads the secret back from the admin API.
    let kept = server.rejected_of("asana").await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let id = kept[0]["id"].as_str().unwrap();
    let detail = server.admin_json(&format!("/api/v1/rejected/{id}")).await;
    assert!(detail.to_string().contains(secret), "{detail}");
    assert!(
        detail["reason"]
            .as_str()
            .unwrap()
            .contains("copy this request's X-Hook-Secret"),
        "{detail}"
    );
    // Until `secret` is configured, events are refused, with the reason.
    let body = r#"{"events":[]}"#;
    let sig = hex::encode(mac(secret, body));
    let r = post(&server, "asana", &[("X-Hook-Signature", sig)], body).await;
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    assert!(text.contains("no `secret` is configured yet"), "{text}");
    assert!(server.events_of("asana").await.is_empty());
}

#[tokio::test]
async fn signed_handshakes_are_answered_and_not_stored() {
    let server = TestServer::start(SOURCES).await;
    let t = unix_now();

    // Zoom's url_validation body ("Using webhooks"); the encryptedToken for the secret
    // token `secretValueTest` as a third-party test has it (recomputed).
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let zoom = |body: &str, t: i64| {
        vec![
            (
                "x-zm-signature",
                format!(
                    "v0={}",
                    hex::encode(mac("secretValueTest", &format!("v0:{t}:{body}")))
                ),
            ),
            ("x-zm-request-timestamp", t.to_string()),
        ]
    };
    let r = post(&server, "zoom", &zoom(body, t), body).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff",
        })
    );
    // Stale, the validation is refused like any request.
    let r = post(&server, "zoom", &zoom(body, t - 600), body).await;
    assert_eq!(r.status(), 401);
    assert!(server.events_of("zoom").await.is_empty());

    // Twitch: the verification is answered with its challenge; a notification stored
    // under its message id.
    let stamp = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let twitch = |id: &str, kind: &str, body: &str| {
        let sig = hex::encode(mac("twitch-webhook-secret", &format!("{id}{stamp}{body}")));
        vec![
            ("Twitch-Eventsub-Message-Id", id.to_owned()),
            ("Twitch-Eventsub-Message-Timestamp", stamp.clone()),
            ("Twitch-Eventsub-Message-Type", kind.to_owned()),
            ("Twitch-Eventsub-Message-Signature", format!("sha256={sig}")),
        ]
    };
    let verification = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{}}"#;
    let r = post(
        &server,
        "twitch",
        &twitch("m-1", "webhook_callback_verification", verification),
        verification,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.unwrap(), "pogchamp-kappa-360noscope-vohiyo");
    let event = r#"{"subscription":{"type":"channel.follow"},"event":{}}"#;
    let r = post(
        &server,
        "twitch",
        &twitch("m-2", "notification", event),
        event,
    )
    .await;
    assert_eq!(r.status(), 200);
    let events = server.events_of("twitch").await;
    assert_eq!(events.len(), 1);
    let id = events[0]["id"].as_str().unwrap();
    let detail = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(detail["dedup_key"], "m-2");

    // Xero's intent to receive: 200 with no body to good signatures, 401 to bad ones.
    let itr =
        r#"{"events":[],"lastEventSequence":0,"firstEventSequence":0,"entropy":"S0m3r4Nd0mt3xt"}"#;
    let good = B64.encode(mac("xero-webhooks-key", itr));
    let r = post(&server, "xero", &[("x-xero-signature", good)], itr).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let bad = B64.encode(mac("another-key", itr));
    let r = post(&server, "xero", &[("x-xero-signature", bad)], itr).await;
    assert_eq!(r.status(), 401);
    assert!(server.events_of("xero").await.is_empty());
    // A real event is stored, and answered with no body too: Xero wants none.
    let event = r#"{"events":[{"resourceId":"717f2bfc","eventType":"Update"}],"firstEventSequence":1,"lastEventSequence":1,"entropy":"x"}"#;
    let sig = B64.encode(mac("xero-webhooks-key", event));
    let r = post(&server, "xero", &[("x-xero-signature", sig)], event).await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("content-type"));
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(server.events_of("xero").await.len(), 1);
}

#[tokio::test]
async fn gitlab_token_is_checked_and_idempotency_key_dedups() {
    let server = TestServer::start(SOURCES).await;
    let headers = |token: &str| {
        vec![
            ("X-Gitlab-Token", token.to_owned()),
            ("Idempotency-Key", "f6a7b8c9-retry-safe".to_owned()),
            ("X-Gitlab-Event", "Push Hook".to_owned()),
        ]
    };
    let body = r#"{"object_kind":"push"}"#;
    for _ in 0..2 {
        let r = post(&server, "gitlab", &headers("gitlab-token"), body).await;
        assert_eq!(r.status(), 200);
    }
    let events = server.events_of("gitlab").await;
    assert_eq!(events.len(), 1, "a retry is a duplicate");
    let r = post(&server, "gitlab", &headers("guess"), body).await;
    assert_eq!(r.status(), 401);
    let reasons = server.rejected_of("gitlab").await;
    assert_eq!(reasons[0]["reason"], "credentials do not match");
}
