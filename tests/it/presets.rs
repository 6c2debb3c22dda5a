//! Provider presets end to end: a provider's published example is stored with the
//! provider's id as its dedup key, a tampered or stale one is answered 401, and Slack's
//! `url_verification` handshake is answered with its challenge and not stored, and the
//! real `forebay send` signs for every preset so that a real server accepts it. (Every
//! preset's examples are checked in `src/ingest/verify/presets/tests.rs`.)

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::TestServer;
use crate::support::binary::run_forebay;

const SOURCES: &str = r#"
[sources.shop]
verify = { kind = "shopify", secret = "test_secret_key" }
[sources.slack]
verify = { kind = "slack", secret = "8f742231b10e8888abcd99yyyzzz85a5" }
[sources.paddle]
verify = { kind = "paddle", secret = ["pdl_old", "pdl_ntfset_new"] }
[sources.twilio]
verify = { kind = "twilio", secret = "12345", public_url = "https://mycompany.com/myapp.php" }
"#;

fn hex_hmac(key: &str, msg: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn post(
    server: &TestServer,
    source: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = server.post(source, &headers, body.to_owned()).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn events(server: &TestServer, source: &str) -> Vec<Value> {
    server
        .admin_json(&format!("/api/v1/events?source={source}&limit=100"))
        .await["data"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn shopifys_published_example_is_stored_under_its_webhook_id() {
    let server = TestServer::start(SOURCES).await;
    // Shopify/shopify-app-js, shopify-api `lib/webhooks/__tests__/validate.test.ts`.
    let headers = [
        (
            "X-Shopify-Hmac-Sha256",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=".to_owned(),
        ),
        ("X-Shopify-Webhook-Id", "123456789".to_owned()),
    ];
    let (status, text) = post(&server, "shop", &headers, r#"{"foo": "bar"}"#).await;
    assert_eq!(status, 200, "{text}");
    // A redelivery with the same webhook id is a duplicate, not a second event.
    let (status, _) = post(&server, "shop", &headers, r#"{"foo": "bar"}"#).await;
    assert_eq!(status, 200);
    let stored = events(&server, "shop").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let id = stored[0]["id"].as_str().unwrap();
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["dedup_key"], "123456789", "{event}");

    let (status, text) = post(&server, "shop", &headers, r#"{"foo": "baz"}"#).await;
    assert_eq!(status, 401, "{text}");
}

#[tokio::test]
async fn slack_url_verification_is_answered_and_not_stored() {
    let server = TestServer::start(SOURCES).await;
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let signed = |body: &str, ts: i64| {
        vec![
            (
                "X-Slack-Signature",
                format!("v0={}", hex_hmac(secret, &format!("v0:{ts}:{body}"))),
            ),
            ("X-Slack-Request-Timestamp", ts.to_string()),
            ("Content-Type", "application/json".to_owned()),
        ]
    };
    let t = now();
    let handshake = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let (status, text) = post(&server, "slack", &signed(handshake, t), handshake).await;
    assert_eq!(status, 200);
    assert_eq!(text, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    assert!(events(&server, "slack").await.is_empty());

    // Unsigned, the handshake is just a rejected request.
    let (status, _) = post(&server, "slack", &[], handshake).await;
    assert_eq!(status, 401);

    // An event is stored under Slack's event_id; a stale one is refused.
    let event =
        r#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention"}}"#;
    let (status, text) = post(&server, "slack", &signed(event, t), event).await;
    assert_eq!(status, 200, "{text}");
    let stored = events(&server, "slack").await;
    assert_eq!(stored.len(), 1);
    let id = stored[0]["id"].as_str().unwrap();
    let detail = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(detail["dedup_key"], "Ev08MFMKH6");
    let (status, _) = post(&server, "slack", &signed(event, t - 600), event).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn paddle_rotation_and_staleness() {
    let server = TestServer::start(SOURCES).await;
    let body = r#"{"event_id":"evt_01h8bzakzx3hm2fmen703n5q45","event_type":"transaction.paid"}"#;
    let header = |secret: &str, ts: i64| {
        vec![(
            "Paddle-Signature",
            format!("ts={ts};h1={}", hex_hmac(secret, &format!("{ts}:{body}"))),
        )]
    };
    let t = now();
    let (status, text) = post(&server, "paddle", &header("pdl_ntfset_new", t), body).await;
    assert_eq!(status, 200, "{text}");
    let (status, _) = post(&server, "paddle", &header("pdl_other", t), body).await;
    assert_eq!(status, 401);
    let (status, _) = post(&server, "paddle", &header("pdl_ntfset_new", t - 3600), body).await;
    assert_eq!(status, 401);
    let stored = events(&server, "paddle").await;
    assert_eq!(stored.len(), 1);
    let id = stored[0]["id"].as_str().unwrap();
    let detail = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(detail["dedup_key"], "evt_01h8bzakzx3hm2fmen703n5q45");
    let rejected = server.admin_json("/api/v1/rejected?source=paddle").await;
    let reasons: Vec<&str> = rejected["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"no signature matched any configured secret"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("timestamp is 3600s in the past")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn twilios_documented_example_passes_with_its_query_string() {
    let server = TestServer::start(SOURCES).await;
    // Twilio, "Webhooks security", "Validating requests": the URL Twilio was given is
    // https://mycompany.com/myapp.php?foo=1&bar=2; forebay sees the query string on
    // the request and the rest in `public_url`.
    let body = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    let send = |query: &'static str, sig: &'static str| {
        reqwest::Client::new()
            .post(server.ingest_url(&format!("/in/twilio?{query}")))
            .header("X-Twilio-Signature", sig)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = send("foo=1&bar=2", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = send("foo=1&bar=3", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(events(&server, "twilio").await.len(), 1);
}

/// The `verify` table of a source for each preset, as its sender's secret would be.
fn preset_source(kind: &str) -> String {
    let extra = match kind {
        "svix" | "clerk" | "resend" | "openai" => {
            return format!(
                r#"verify = {{ kind = "{kind}", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}"#
            );
        }
        "square" | "twilio" | "hubspot" | "trello" => {
            format!(r#", public_url = "https://hooks.example.com/in/{kind}""#)
        }
        "meta" => r#", verify_token = "meta-verify""#.to_owned(),
        "postmark" => {
            return r#"verify = { kind = "postmark", username = "pm", password = ["pm-new", "pm-old"] }"#
                .to_owned();
        }
        _ => String::new(),
    };
    format!(r#"verify = {{ kind = "{kind}", secret = ["{kind}-new", "{kind}-old"]{extra} }}"#)
}

#[tokio::test]
async fn forebay_send_signs_for_every_preset() {
    let kinds: Vec<&str> = forebay::ingest::verify::presets::PRESETS
        .iter()
        .map(|p| p.name)
        .collect();
    let config: String = kinds
        .iter()
        .map(|kind| format!("[sources.{kind}]\n{}\n", preset_source(kind)))
        .collect();
    let server = TestServer::start(&config).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("forebay.toml");
    std::fs::write(&config_path, &config).unwrap();
    let body = r#"{"id":"evt_send","event_id":"evt_send","type":"test"}"#;
    // Linear's timestamp is in the body: the sender puts a current one there.
    let linear = format!(
        r#"{{"action":"create","webhookTimestamp":{}}}"#,
        now() * 1000
    );
    let to = format!("http://{}", server.ingest);
    for kind in kinds {
        let file = dir.path().join(format!("{kind}.json"));
        std::fs::write(&file, if kind == "linear" { &linear } else { body }).unwrap();
        let args: Vec<String> = [
            "send",
            kind,
            file.to_str().unwrap(),
            "-c",
            config_path.to_str().unwrap(),
            "--to",
            &to,
            "--json",
        ]
        .map(str::to_owned)
        .into();
        // Off the runtime's thread: the server answers on it.
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_forebay(&args, &[])
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{kind}: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["status"], 200, "{kind}: {report}");
        assert_eq!(report["warning"], Value::Null, "{kind}: {report}");
        assert_eq!(report["kind"], kind, "{kind}: {report}");
    }
}
