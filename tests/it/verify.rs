//! Every built-in verifier end to end: a correctly signed request is stored, a wrong one
//! is answered 401 and kept as rejected with its reason. (Each scheme's documented
//! provider examples are checked in the unit tests beside the verifier.)

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::TestServer;

const SOURCES: &str = r#"
[sources.stripe]
verify = { kind = "stripe", secret = ["whsec_old", "whsec_stripe"] }
[sources.github]
verify = { kind = "github", secret = "gh-secret" }
[sources.sw]
verify = { kind = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
[sources.custom]
verify = { kind = "hmac", header = "X-Sig", algorithm = "sha256", encoding = "base64", prefix = "v=", secret = "c-secret" }
[sources.basic]
verify = { kind = "basic", username = "u", password = "p" }
[sources.bearer]
verify = { kind = "bearer", token = "tok" }
"#;

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn expect(
    server: &TestServer,
    source: &str,
    headers: &[(&str, String)],
    body: &str,
    status: u16,
) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = server.post(source, &headers, body.to_owned()).await;
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{source}: {text}");
}

#[tokio::test]
async fn each_verifier_accepts_the_right_signature_and_rejects_the_wrong_one() {
    let server = TestServer::start(SOURCES).await;
    let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;
    let t = now();

    let stripe_sig = |secret: &str, t: i64| {
        let sig = hex::encode(hmac_sha256(
            secret.as_bytes(),
            format!("{t}.{body}").as_bytes(),
        ));
        format!("t={t},v1={sig}")
    };
    expect(
        &server,
        "stripe",
        &[("stripe-signature", stripe_sig("whsec_stripe", t))],
        body,
        200,
    )
    .await;
    expect(
        &server,
        "stripe",
        &[("stripe-signature", stripe_sig("whsec_old", t))],
        body,
        200,
    )
    .await;
    expect(
        &server,
        "stripe",
        &[("stripe-signature", stripe_sig("whsec_wrong", t))],
        body,
        401,
    )
    .await;
    expect(
        &server,
        "stripe",
        &[("stripe-signature", stripe_sig("whsec_stripe", t - 600))],
        body,
        401,
    )
    .await;
    expect(&server, "stripe", &[], body, 401).await;

    let gh = format!(
        "sha256={}",
        hex::encode(hmac_sha256(b"gh-secret", body.as_bytes()))
    );
    expect(
        &server,
        "github",
        &[("x-hub-signature-256", gh.clone())],
        body,
        200,
    )
    .await;
    expect(
        &server,
        "github",
        &[("x-hub-signature-256", gh)],
        "tampered",
        401,
    )
    .await;

    let key = B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let sw_sig = |id: &str, t: i64| {
        format!(
            "v1,{}",
            B64.encode(hmac_sha256(&key, format!("{id}.{t}.{body}").as_bytes()))
        )
    };
    let sw = |id: &str, t: i64| {
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", t.to_string()),
            ("webhook-signature", sw_sig(id, t)),
        ]
    };
    expect(&server, "sw", &sw("msg_1", t), body, 200).await;
    expect(&server, "sw", &sw("msg_2", t - 3600), body, 401).await;
    let mut forged = sw("msg_3", t);
    forged[0].1 = "msg_other".into();
    expect(&server, "sw", &forged, body, 401).await;

    let custom = format!(
        "v={}",
        B64.encode(hmac_sha256(b"c-secret", body.as_bytes()))
    );
    expect(&server, "custom", &[("x-sig", custom)], body, 200).await;
    expect(&server, "custom", &[("x-sig", "v=AAAA".into())], body, 401).await;

    expect(
        &server,
        "basic",
        &[("authorization", format!("Basic {}", B64.encode("u:p")))],
        body,
        200,
    )
    .await;
    expect(
        &server,
        "basic",
        &[("authorization", format!("Basic {}", B64.encode("u:x")))],
        body,
        401,
    )
    .await;
    expect(
        &server,
        "bearer",
        &[("authorization", "Bearer tok".into())],
        body,
        200,
    )
    .await;
    expect(
        &server,
        "bearer",
        &[("authorization", "Bearer tok2".into())],
        body,
        401,
    )
    .await;

    // Every 401 was kept with a reason; every 200 became an event.
    let rejected = server.admin_json("/api/v1/rejected?limit=100").await;
    let reasons: Vec<(String, String)> = rejected["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 9, "{reasons:?}");
    assert!(reasons.iter().all(|(_, reason)| !reason.is_empty()));
    let events = server.admin_json("/api/v1/events?limit=100").await;
    let sources: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    // Stripe was sent twice with one event id: the second is a duplicate.
    assert_eq!(sources.len(), 6, "{sources:?}");
}

#[tokio::test]
async fn rejection_reason_is_answered_and_stored_without_secrets() {
    let server = TestServer::start(SOURCES).await;
    let r = server
        .post("github", &[("x-hub-signature-256", "sha256=00")], "x")
        .await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "verification_failed");
    let rejected = server.admin_json("/api/v1/rejected?source=github").await;
    let reason = rejected["data"][0]["reason"].as_str().unwrap();
    assert!(!reason.contains("gh-secret"), "{reason}");
    assert!(body["error"]["message"].as_str().unwrap().contains(reason));
}

/// The `jwt` kind on a real server: `forebay send` makes an RS256 token the server
/// accepts; a token over another body, or with a forged signature, is refused and kept
/// with a reason that names the claim or the signature, never the token.
#[tokio::test]
async fn jwt_tokens_are_verified_end_to_end() {
    let testdata = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ingest/verify/testdata");
    let verify = format!(
        r#"{{ kind = "jwt", algorithm = "RS256", public_key = "file:{testdata}/rsa-public.pem", signing_key = "file:{testdata}/rsa-private.pem", issuer = "orders", body_hash = {{ claim = "sha256" }}, max_age = "5m" }}"#
    );
    let server = TestServer::start(&format!("[sources.orders]\nverify = {verify}\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("forebay.toml");
    std::fs::write(&config, format!("[sources.orders]\nverify = {verify}\n")).unwrap();
    let body_file = dir.path().join("body.json");
    let body = r#"{"id":"ord_1","total":42}"#;
    std::fs::write(&body_file, body).unwrap();
    let to = format!("http://{}", server.ingest);
    let args = [
        "send",
        "orders",
        body_file.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "--to",
        &to,
        "--json",
    ]
    .map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::binary::run_forebay(&args, &[])
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(server.events_of("orders").await.len(), 1);

    // The same token over another body: the body-hash claim refuses it.
    let verify_config: forebay::ingest::verify::VerifyConfig =
        toml::from_str::<toml::Table>(&format!("verify = {verify}")).unwrap()["verify"]
            .clone()
            .try_into()
            .unwrap();
    let signer = forebay::ingest::verify::sign_as::Signer::new(&verify_config).unwrap();
    let headers = signer
        .sign(&forebay::ingest::verify::sign_as::Message {
            body: body.as_bytes(),
            timestamp: now() as u64,
            id: "msg_1",
            headers: &http::HeaderMap::new(),
        })
        .unwrap();
    let token = headers["authorization"].to_str().unwrap().to_owned();
    expect(
        &server,
        "orders",
        &[("authorization", token.clone())],
        r#"{"id":"ord_1","total":4200}"#,
        401,
    )
    .await;
    // A forged signature.
    let (signed, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", "A".repeat(342));
    expect(&server, "orders", &[("authorization", forged)], body, 401).await;
    expect(
        &server,
        "orders",
        &[("authorization", token.clone())],
        body,
        200,
    )
    .await;

    let rejected = server.rejected_of("orders").await;
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"token claim sha256: is not the hash of the body that arrived (the body was changed on the way, or re-serialised)"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"no signature matched any configured secret"),
        "{reasons:?}"
    );
    assert!(reasons.iter().all(|r| !r.contains(signed)), "{reasons:?}");
}
