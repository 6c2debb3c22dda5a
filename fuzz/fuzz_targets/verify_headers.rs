//! Every verifier kind forebay has (the built-in kinds and every entry of
//! `presets::PRESETS`, each with fixed secrets) against fuzzer-chosen requests: method,
//! query string, receive time, headers (signature, timestamp and id headers, any other)
//! and body. Optionally each request is first signed the way that kind's sender would
//! (`sign_as::Signer`), at a fuzzer-chosen time, then has headers replaced, so the
//! fuzzer starts from requests that pass and mutates them.
//!
//! Input: a raw HTTP request (`common/raw_request.rs`) with these instructions:
//! - `X-Fuzz-Sign: SECS`: sign for every kind at Unix time SECS. Headers above this line
//!   are sent and seen by the signer (`{header:Name}`); those below replace the signed
//!   ones afterwards.
//! - `X-Fuzz-Received: MS`: the receive time, ms since the epoch (default: half a second
//!   after the signing time, else 1700000000500).
//! - `X-Fuzz-Id: ID`: the message id the signer sends (default `msg_fuzz_1`).
//!
//! Checked: no verifier, challenge, dedup or signer code panics (overflow checks on), a
//! rejection hands the request back untouched, and a request signed by a kind's own
//! signer, left alone and received at signing time, passes that kind's verifier.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use bytes::Bytes;
use forebay::ingest::dedup::DedupRule;
use forebay::ingest::request::Unverified;
use forebay::ingest::verify::sign_as::{Message, Signer};
use forebay::ingest::verify::{Verifier, VerifyConfig, presets::PRESETS};
use http::{HeaderMap, Method};
use libfuzzer_sys::{Corpus, fuzz_target};

#[path = "common/raw_request.rs"]
mod raw_request;

/// One configured source: its `verify` table, verifier and sender's signer.
struct Kind {
    inline: String,
    verifier: Verifier,
    signer: Option<Signer>,
}

fn kinds() -> &'static [Kind] {
    static KINDS: OnceLock<Vec<Kind>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut inlines: Vec<String> = BUILT_IN.iter().map(|s| s.to_string()).collect();
        for preset in PRESETS {
            inlines.extend(preset_tables(preset.name));
        }
        let kinds: Vec<Kind> = inlines
            .into_iter()
            .map(|inline| {
                let config = parse(&inline);
                let verifier = config
                    .build()
                    .unwrap_or_else(|e| panic!("{inline}: does not build: {e}"));
                Kind {
                    signer: Signer::new(&config).ok(),
                    verifier,
                    inline,
                }
            })
            .collect();
        for preset in PRESETS {
            assert!(kinds.iter().any(|k| k.verifier.kind_name() == preset.name));
        }
        kinds
    })
}

fn parse(inline: &str) -> VerifyConfig {
    #[derive(serde::Deserialize)]
    struct Source {
        verify: VerifyConfig,
    }
    toml::from_str::<Source>(&format!("verify = {{ {inline} }}"))
        .unwrap_or_else(|e| panic!("{inline}: {e}"))
        .verify
}

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_PUBLIC: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";
const SW_SIGNING: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
/// Ed25519, seed `sha256("forebay discord test key")` (as in presets/tests.rs).
const DISCORD_PUBLIC: &str = "e9cbfdfe588ba78faa28f9e8a54060c6abd71ee984456c533cbe99a69cd11f28";
const DISCORD_SIGNING: &str = "dff4b09725b35811fb20d96a5e404f23eaeb8720172271c8edf2b521547891e2";

/// The built-in kinds, the generic `hmac` in a few shapes.
const BUILT_IN: &[&str] = &[
    r#"kind = "none""#,
    r#"kind = "stripe", secret = ["whsec_fuzz_new", "whsec_fuzz_old"], tolerance = "5m""#,
    r#"kind = "github", secret = ["gh-new", "gh-old"]"#,
    r#"kind = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", public_key = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=", signing_key = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=""#,
    r#"kind = "standard-webhooks", secret = ["whsec_bmV3LWtleQ==", "whsec_b2xkLWtleQ=="]"#,
    r#"kind = "hmac", secret = ["k-new", "k-old"], header = "X-Signature""#,
    r#"kind = "hmac", secret = "k", header = "X-Signature", algorithm = "sha512", encoding = "base64", prefix = "sha512=", timestamp_header = "X-Timestamp", signed = "{timestamp}.{method}.{url}.{header:X-Event-Id}.{body}", public_url = "https://hooks.example.com/in/h""#,
    r#"kind = "hmac", secret = "k", header = "X-Signature", algorithm = "sha1", timestamp_header = "X-Timestamp", timestamp_format = "rfc3339", tolerance = "1m""#,
    r#"kind = "hmac", secret = "k", header = "X-Signature", timestamp_header = "X-Timestamp", timestamp_format = "unix-ms", signed = "{{{timestamp}}}{body}""#,
    r#"kind = "basic", username = "fuzz", password = ["pw-new", "pw-old"]"#,
    r#"kind = "bearer", token = ["t-new", "t-old"]"#,
];

/// The `verify` tables of a preset, as its sender's secrets would be.
fn preset_tables(kind: &str) -> Vec<String> {
    let secret = format!(r#"secret = ["{kind}-new", "{kind}-old"]"#);
    let tables = match kind {
        "discord" => vec![format!(
            r#"public_key = "{DISCORD_PUBLIC}", signing_key = "{DISCORD_SIGNING}""#
        )],
        "sendgrid" => {
            let (public, private) = sendgrid_keys();
            vec![format!(
                r#"public_key = "{public}", signing_key = "{private}""#
            )]
        }
        "svix" | "clerk" | "resend" | "openai" => vec![
            format!(
                r#"secret = "{SW_SECRET}", public_key = "{SW_PUBLIC}", signing_key = "{SW_SIGNING}""#
            ),
            format!(r#"secret = "{SW_SECRET}""#),
        ],
        "square" | "twilio" | "hubspot" | "trello" => vec![format!(
            r#"{secret}, public_url = "https://hooks.example.com/in/{kind}""#
        )],
        "meta" => vec![format!(r#"{secret}, verify_token = "meta-verify""#)],
        "postmark" => vec![r#"username = "pm", password = ["pm-new", "pm-old"]"#.to_owned()],
        "gitlab" => vec![
            format!(r#"{secret}, signing_token = "{SW_SECRET}""#),
            secret.clone(),
        ],
        // Before and after Asana's handshake.
        "asana" => vec![
            secret.clone(),
            r#"verify_token = "asana-verify""#.to_owned(),
        ],
        "okta" => vec![
            secret.clone(),
            format!(r#"{secret}, header = "X-Okta-Secret""#),
        ],
        _ => vec![secret],
    };
    tables
        .into_iter()
        .map(|t| format!(r#"kind = "{kind}", {t}"#))
        .collect()
}

/// A P-256 key pair from a fixed seed, written as SendGrid and `forebay send` take it.
fn sendgrid_keys() -> (String, String) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("a valid scalar");
    let public = key.verifying_key().to_public_key_der().expect("encodes");
    let private = key.to_pkcs8_der().expect("encodes");
    (b64(public.as_bytes()), b64(private.as_bytes()))
}

fuzz_target!(|data: &[u8]| -> Corpus {
    let Some(raw) = raw_request::parse(data) else {
        return Corpus::Reject;
    };
    let number = |name: &str| raw.instruction(name).map(str::parse::<i128>);
    let sign_at = match number("x-fuzz-sign") {
        None => None,
        Some(Ok(secs)) => match u64::try_from(secs) {
            Ok(secs) => Some(secs),
            Err(_) => return Corpus::Reject,
        },
        Some(Err(_)) => return Corpus::Reject,
    };
    let received_at_ms = match number("x-fuzz-received") {
        Some(Ok(ms)) => match i64::try_from(ms) {
            Ok(ms) => ms,
            Err(_) => return Corpus::Reject,
        },
        Some(Err(_)) => return Corpus::Reject,
        None => match sign_at.map(i64::try_from) {
            None => 1_700_000_000_500,
            Some(Ok(secs)) if secs < 1 << 50 => secs * 1000 + 500,
            Some(_) => return Corpus::Reject,
        },
    };
    let id = raw
        .instruction("x-fuzz-id")
        .unwrap_or("msg_fuzz_1")
        .to_owned();
    let (path, query) = match raw.target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (raw.target, None),
    };
    // Sent (and seen by the signer), then set after signing.
    let mut caller = HeaderMap::new();
    let mut overrides = Vec::new();
    let mut signing_seen = false;
    for (name, value) in &raw.headers {
        if name == "x-fuzz-sign" {
            signing_seen = true;
        }
        if raw_request::is_instruction(name) {
            continue;
        }
        if signing_seen {
            overrides.push((name.clone(), value.clone()));
        } else {
            caller.append(name.clone(), value.clone());
        }
    }
    let dedup_rules = [
        DedupRule::Auto,
        DedupRule::parse("header:X-Request-Id").expect("parses"),
        DedupRule::parse("json:/id").expect("parses"),
    ];

    for kind in kinds() {
        let mut headers = caller.clone();
        let mut body = raw.body.to_vec();
        let mut signed = false;
        if let (Some(sign_at), Some(signer)) = (sign_at, &kind.signer) {
            let signed_body = signer.sign_body(&Message {
                body: &body,
                timestamp: sign_at,
                id: &id,
                headers: &caller,
            });
            // A body the scheme cannot sign inside (Mailgun's signature goes into a JSON
            // object or a form; a bare JSON number is neither): `forebay send` refuses
            // it, so it goes out unsigned, and is verified as such.
            let signable = match signed_body {
                Ok(Some(signed_body)) => {
                    body = signed_body;
                    true
                }
                Ok(None) => true,
                Err(_) => false,
            };
            let message = Message {
                body: &body,
                timestamp: sign_at,
                id: &id,
                headers: &caller,
            };
            if let (true, Ok(sig)) = (signable, signer.sign(&message)) {
                for (name, value) in sig {
                    if let Some(name) = name {
                        headers.insert(name, value);
                    }
                }
                signed = true;
            }
        }
        for (name, value) in &overrides {
            headers.insert(name.clone(), value.clone());
        }
        let body = Bytes::from(body);
        let req = Unverified {
            source: "fuzz".into(),
            method: raw.method.clone(),
            path: path.to_owned(),
            query: query.clone(),
            headers,
            body: body.clone(),
            remote_addr: None,
            received_at_ms,
        };
        let v = &kind.verifier;
        let _ = v.answers_challenges_on(&raw.method);
        let _ = v.wants_empty_answer();
        if let Some(challenge) = v.challenge(&req) {
            match challenge {
                Ok(answer) => {
                    let _ = format!("{answer:?}");
                }
                Err(reason) => {
                    let _ = reason.to_string();
                }
            }
        }
        let _ = v.provider_dedup_key(&req);
        match v.verify(req) {
            Ok(verified) => {
                assert_eq!(verified.request().body, body);
                let _ = v.answer(&verified);
                for rule in &dedup_rules {
                    let key = rule.key_for(v, verified.request(), None);
                    assert!(!key.is_empty(), "{}: empty dedup key", kind.inline);
                }
            }
            Err(rejected) => {
                assert_eq!(rejected.request.body, body, "{}", kind.inline);
                let _ = rejected.to_string();
                // What a sender signed itself, untouched and on time, must pass.
                let on_time = sign_at.is_some_and(|secs| {
                    secs < 1 << 40
                        && (0..1000)
                            .contains(&(i128::from(received_at_ms) - i128::from(secs) * 1000))
                });
                let untouched = signed
                    && on_time
                    && overrides.is_empty()
                    && raw.method == Method::POST
                    && query.is_none()
                    && !signs_what_the_signer_cannot(&kind.inline);
                assert!(
                    !untouched,
                    "{}: its own signer's request was rejected: {}",
                    kind.inline, rejected.reason
                );
            }
        }
    }
    Corpus::Keep
});

/// Kinds whose sender signs something the signer takes from the body as it is (Linear's
/// `webhookTimestamp`), needs the body to be of a shape (Twitter: a JSON object), or that
/// refuse everything by design (Asana before its handshake).
fn signs_what_the_signer_cannot(inline: &str) -> bool {
    ["\"linear\"", "\"twitter\"", "\"asana\", verify_token"]
        .iter()
        .any(|k| inline.contains(&format!("kind = {k}")))
}
