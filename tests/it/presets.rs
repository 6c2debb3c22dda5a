//! Provider presets end to end: a provider's published example is stored with the
//! provider's id as its dedup key, a tampered or stale one is answered 401, and Slack's
//! `url_verification` handshake is answered with its challenge and not stored, and the
//! real `forebay send` signs for every preset so that a real server accepts it, Discord's
//! PING is answered and not stored. (Every preset's examples are checked in
//! `src/ingest/verify/presets/tests.rs`.)

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::TestServer;
use crate::support::binary::run_forebay;

/// A generated key pair, written as the provider writes keys: the public key for the
/// server's `public_key`, the private one for `forebay send`'s `signing_key`.
struct KeyPair {
    public: String,
    private: String,
}

impl KeyPair {
    /// Discord (hex), Telnyx (base64) or SendGrid (base64 DER) keys from a fixed seed.
    fn of(kind: &str) -> Self {
        use base64::Engine;
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let seed = [0x42; 32];
        match kind {
            "discord" => {
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                Self {
                    public: hex::encode(key.verifying_key().as_bytes()),
                    private: hex::encode(seed),
                }
            }
            "telnyx" => {
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                Self {
                    public: b64(key.verifying_key().as_bytes()),
                    private: b64(&seed),
                }
            }
            _ => {
                let key = p256::ecdsa::SigningKey::from_slice(&seed).unwrap();
                Self {
                    public: b64(key.verifying_key().to_public_key_der().unwrap().as_bytes()),
                    private: b64(key.to_pkcs8_der().unwrap().as_bytes()),
                }
            }
        }
    }
}

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
    // 3600 s, or a second more when the clock ticks between signing and receiving.
    assert!(
        reasons.iter().any(|r| {
            r.strip_prefix("timestamp is ")
                .and_then(|rest| rest.split_once("s in the past"))
                .and_then(|(secs, _)| secs.parse::<i64>().ok())
                .is_some_and(|secs| (3600..=3601).contains(&secs))
        }),
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
        "discord" | "telnyx" | "sendgrid" => {
            let keys = KeyPair::of(kind);
            return format!(
                r#"verify = {{ kind = "{kind}", public_key = {:?}, signing_key = {:?} }}"#,
                keys.public, keys.private
            );
        }
        // Svix's Ed25519 (`v1a`) signing, with the Standard Webhooks reference key pair.
        "svix" => {
            return r#"verify = { kind = "svix", public_key = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=", signing_key = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=" }"#.to_owned();
        }
        "clerk" | "resend" | "openai" | "render" | "replicate" | "lithic" => {
            return format!(
                r#"verify = {{ kind = "{kind}", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }}"#
            );
        }
        "square" | "twilio" | "hubspot" | "trello" | "messagebird" | "monday" | "plivo"
        | "mandrill" => {
            format!(r#", public_url = "https://hooks.example.com/in/{kind}""#)
        }
        "meta" => r#", verify_token = "meta-verify""#.to_owned(),
        // A certificate and key of our own: PayPal's private key is PayPal's.
        "paypal" => {
            let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ingest/verify/testdata");
            return format!(
                r#"verify = {{ kind = "paypal", certificate = "file:{testdata}/rsa-cert.pem", signing_key = "file:{testdata}/rsa-private.pem", webhook_id = "WH-TEST-1" }}"#
            );
        }
        "postmark" | "chargebee" | "bandwidth" => {
            return format!(
                r#"verify = {{ kind = "{kind}", username = "u", password = ["{kind}-new", "{kind}-old"] }}"#
            );
        }
        // Adyen's HMAC key is hex.
        "adyen" => {
            return r#"verify = { kind = "adyen", secret = ["0a1b2c3d4e5f", "f5e4d3c2b1a0"] }"#
                .to_owned();
        }
        // Airtable's secret is base64 of the key.
        "airtable" => {
            return r#"verify = { kind = "airtable", secret = ["YWlydGFibGUtbmV3", "YWlydGFibGUtb2xk"] }"#
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
        let payload = match kind {
            "linear" => linear.as_str(),
            // Adyen signs inside each notification item.
            "adyen" => {
                r#"{"live":"false","notificationItems":[{"NotificationRequestItem":{"pspReference":"8816","amount":{"currency":"EUR","value":1000},"eventCode":"AUTHORISATION","merchantAccountCode":"Test","merchantReference":"order-1","success":"true"}}]}"#
            }
            _ => body,
        };
        std::fs::write(&file, payload).unwrap();
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

#[tokio::test]
async fn discord_ping_is_answered_and_interactions_are_stored_under_their_id() {
    use ed25519_dalek::Signer;
    let keys = KeyPair::of("discord");
    let server = TestServer::start(&format!(
        "[sources.discord]\nverify = {{ kind = \"discord\", public_key = {:?} }}\n",
        keys.public
    ))
    .await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let signed = |body: &str, ts: i64| {
        let sig = key.sign(format!("{ts}{body}").as_bytes());
        vec![
            ("X-Signature-Ed25519", hex::encode(sig.to_bytes())),
            ("X-Signature-Timestamp", ts.to_string()),
            ("Content-Type", "application/json".to_owned()),
        ]
    };
    let t = now();
    let ping = r#"{"id":"1183461953148715029","application_id":"1183461620351451136","type":1,"token":"t","version":1}"#;
    let r = server
        .post(
            "discord",
            &signed(ping, t)
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
            ping.to_owned(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(r.text().await.unwrap(), r#"{"type":1}"#);
    assert!(events(&server, "discord").await.is_empty());
    // Discord checks that an endpoint refuses a bad signature.
    let mut forged = signed(ping, t);
    forged[0].1 = hex::encode([0u8; 64]);
    let (status, _) = post(&server, "discord", &forged, ping).await;
    assert_eq!(status, 401);

    let command = r#"{"id":"1183461953148715030","type":2,"data":{"name":"ping"}}"#;
    let (status, text) = post(&server, "discord", &signed(command, t), command).await;
    assert_eq!(status, 200, "{text}");
    let (status, _) = post(&server, "discord", &signed(command, t - 600), command).await;
    assert_eq!(status, 401);
    let stored = events(&server, "discord").await;
    assert_eq!(stored.len(), 1);
    let id = stored[0]["id"].as_str().unwrap();
    let detail = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(detail["dedup_key"], "1183461953148715030");
}

#[tokio::test]
async fn a_malformed_public_key_stops_the_configuration_with_the_format_expected() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::binary::write_config(
        dir.path(),
        "[sources.mail]\nverify = { kind = \"sendgrid\", public_key = \"MFkw-not-a-key\" }\n",
    );
    let out = tokio::task::spawn_blocking(move || {
        run_forebay(&["check", "-c", config.to_str().unwrap()], &[])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("sources.mail.verify")
            && stderr.contains("`public_key`: not a P-256 public key"),
        "{stderr}"
    );
}
