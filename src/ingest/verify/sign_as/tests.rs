//! Every signer against its verifier, in process: what a signer makes passes, a tampered
//! body or a wrong secret does not, and the providers' documented examples come out
//! byte for byte.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::super::test_support::{outcome, request};
use super::super::{Rejection, Skew, Verifier, VerifyConfig};
use super::{Message, SignError, Signer};

const BODY: &[u8] = b"{\"id\":\"evt_1\",\"text\":\"caf\xc3\xa9 \\u00e9\"}\n";
const NOW: u64 = 1_700_000_000;
const ID: &str = "018f3c1e-7b5a-7c3e-9a1b-2c3d4e5f6a7b";

/// The `verify = { ... }` inline table as a config.
fn config(inline: &str) -> VerifyConfig {
    #[derive(Deserialize)]
    struct Source {
        verify: VerifyConfig,
    }
    toml::from_str::<Source>(&format!("verify = {{ {inline} }}"))
        .expect("test config parses")
        .verify
}

fn verifier(inline: &str) -> Verifier {
    config(inline).build().expect("test config builds")
}

fn signer(inline: &str) -> Signer {
    Signer::new(&config(inline)).expect("signer builds")
}

fn sign_with(signer: &Signer, caller: &HeaderMap, body: &[u8], at: u64, id: &str) -> HeaderMap {
    signer
        .sign(&Message {
            body,
            timestamp: at,
            id,
            headers: caller,
        })
        .expect("signs")
}

/// Sends `body` with the caller's headers overlaid by `signed` to `verifier`, received at
/// `now`.
fn deliver(
    verifier: &Verifier,
    caller: &HeaderMap,
    signed: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<(), Rejection> {
    let mut req = request(&[], body, now as i64);
    req.headers = caller.clone();
    for (name, value) in signed {
        req.headers.insert(name.clone(), value.clone());
    }
    outcome(verifier, req)
}

fn text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .expect("text")
        .to_owned()
}

fn caller(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect()
}

/// One configuration per built-in kind, and the same kind with another secret.
const KINDS: [(&str, &str, &str); 7] = [
    ("none", r#"kind = "none""#, r#"kind = "none""#),
    (
        "stripe",
        r#"kind = "stripe", secret = "whsec_test_secret""#,
        r#"kind = "stripe", secret = "whsec_other""#,
    ),
    (
        "github",
        r#"kind = "github", secret = "It's a Secret to Everybody""#,
        r#"kind = "github", secret = "It's a Secret to Nobody""#,
    ),
    (
        "standard-webhooks",
        r#"kind = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#,
        r#"kind = "standard-webhooks", secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD""#,
    ),
    (
        "hmac",
        r#"kind = "hmac", secret = "s3cret", header = "X-Signature""#,
        r#"kind = "hmac", secret = "s3cre7", header = "X-Signature""#,
    ),
    (
        "basic",
        r#"kind = "basic", username = "Aladdin", password = "open sesame""#,
        r#"kind = "basic", username = "Aladdin", password = "open sesamE""#,
    ),
    (
        "bearer",
        r#"kind = "bearer", token = "mF_9.B5f-4.1JqM""#,
        r#"kind = "bearer", token = "mF_9.B5f-4.1Jqm""#,
    ),
];

#[test]
fn every_kind_round_trips_and_rejects_a_tampered_body_or_wrong_secret() {
    let none = HeaderMap::new();
    let mut tampered = BODY.to_vec();
    tampered[8] ^= 1;
    for (kind, inline, wrong) in KINDS {
        let s = signer(inline);
        assert_eq!(s.kind_name(), kind);
        let signed = sign_with(&s, &none, BODY, NOW, ID);
        let v = verifier(inline);
        assert_eq!(deliver(&v, &none, &signed, BODY, NOW), Ok(()), "{kind}");
        // Schemes that sign the body refuse another body with the same headers; the
        // others (credentials or nothing) do not look at it.
        let signs_body = !matches!(kind, "none" | "basic" | "bearer");
        let after_tampering = deliver(&v, &none, &signed, &tampered, NOW);
        if signs_body {
            assert_eq!(
                after_tampering,
                Err(Rejection::NoSignatureMatched),
                "{kind}"
            );
        } else {
            assert_eq!(after_tampering, Ok(()), "{kind}");
        }
        let with_wrong_secret = deliver(
            &verifier(inline),
            &none,
            &sign_with(&signer(wrong), &none, BODY, NOW, ID),
            BODY,
            NOW,
        );
        match kind {
            "none" => assert_eq!(with_wrong_secret, Ok(())),
            "basic" | "bearer" => {
                assert_eq!(with_wrong_secret, Err(Rejection::BadCredentials), "{kind}")
            }
            _ => assert_eq!(
                with_wrong_secret,
                Err(Rejection::NoSignatureMatched),
                "{kind}"
            ),
        }
    }
}

#[test]
fn signs_with_the_first_secret_of_a_rotation_list() {
    let none = HeaderMap::new();
    let cases = [
        (
            r#"kind = "stripe", secret = ["whsec_new", "whsec_old"]"#,
            r#"kind = "stripe", secret = "whsec_new""#,
            r#"kind = "stripe", secret = "whsec_old""#,
        ),
        (
            r#"kind = "standard-webhooks", secret = ["whsec_bmV3LWtleQ==", "whsec_b2xkLWtleQ=="]"#,
            r#"kind = "standard-webhooks", secret = "whsec_bmV3LWtleQ==""#,
            r#"kind = "standard-webhooks", secret = "whsec_b2xkLWtleQ==""#,
        ),
        (
            r#"kind = "hmac", header = "X-Sig", secret = ["new", "old"]"#,
            r#"kind = "hmac", header = "X-Sig", secret = "new""#,
            r#"kind = "hmac", header = "X-Sig", secret = "old""#,
        ),
        (
            r#"kind = "bearer", token = ["new", "old"]"#,
            r#"kind = "bearer", token = "new""#,
            r#"kind = "bearer", token = "old""#,
        ),
    ];
    for (rotating, first, second) in cases {
        let signed = sign_with(&signer(rotating), &none, BODY, NOW, ID);
        assert_eq!(
            deliver(&verifier(rotating), &none, &signed, BODY, NOW),
            Ok(()),
            "{rotating}"
        );
        assert_eq!(
            deliver(&verifier(first), &none, &signed, BODY, NOW),
            Ok(()),
            "{first}"
        );
        assert!(
            deliver(&verifier(second), &none, &signed, BODY, NOW).is_err(),
            "{second}"
        );
    }
}

#[test]
fn documented_examples_come_out_byte_for_byte() {
    let none = HeaderMap::new();
    // GitHub Docs, "Validating webhook deliveries" (SHA-1 beside it, as in github.rs).
    let gh = sign_with(
        &signer(r#"kind = "github", secret = "It's a Secret to Everybody""#),
        &none,
        b"Hello, World!",
        NOW,
        ID,
    );
    assert_eq!(
        text(&gh, "X-Hub-Signature-256"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    assert_eq!(
        text(&gh, "X-Hub-Signature"),
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"
    );

    // Standard Webhooks reference libraries (see standard_webhooks.rs): Go and Rust.
    let examples = [
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];
    for (secret, id, ts, payload, signature) in examples {
        let s = signer(&format!(
            r#"kind = "standard-webhooks", secret = {secret:?}"#
        ));
        let headers = sign_with(&s, &none, payload.as_bytes(), ts, id);
        assert_eq!(text(&headers, "webhook-signature"), signature);
        assert_eq!(text(&headers, "webhook-id"), id);
        assert_eq!(text(&headers, "webhook-timestamp"), ts.to_string());
    }

    // Stripe: the value stripe.rs checks against (computed with Python's hmac module).
    let stripe = sign_with(
        &signer(r#"kind = "stripe", secret = "whsec_test_secret""#),
        &none,
        br#"{"id":"evt_test_webhook","object":"event"}"#,
        1_700_000_000,
        ID,
    );
    assert_eq!(
        text(&stripe, "Stripe-Signature"),
        "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
    );

    // Slack, "Verifying requests from Slack", as the generic kind (see hmac/tests.rs).
    let slack = sign_with(
        &signer(
            r#"kind = "hmac", secret = "8f742231b10e8888abcd99yyyzzz85a5", header = "X-Slack-Signature", prefix = "v0=", timestamp_header = "X-Slack-Request-Timestamp", signed = "v0:{timestamp}:{body}""#,
        ),
        &none,
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
        1_531_420_618,
        ID,
    );
    assert_eq!(
        text(&slack, "X-Slack-Signature"),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
    assert_eq!(text(&slack, "X-Slack-Request-Timestamp"), "1531420618");

    // RFC 2202 / RFC 4231 test case 2, every algorithm and encoding.
    let vectors = [
        (
            "sha1",
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            "7/zfauXrL6LSdBbV8YTfnCWafHk=",
        ),
        (
            "sha256",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
        ),
        (
            "sha512",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            "Fkt6e/z4GeLjlfvnO1bgo4e9ZCIugx/WECcM1+olBVSXWL91wFqZSm0DT2X48Ob9yuqxo01Ka0tjbgcKOLznNw==",
        ),
    ];
    for (algorithm, hex, base64) in vectors {
        for (encoding, expected) in [("hex", hex), ("base64", base64)] {
            let s = signer(&format!(
                r#"kind = "hmac", secret = "Jefe", header = "X-Sig", algorithm = {algorithm:?}, encoding = {encoding:?}"#
            ));
            let headers = sign_with(&s, &none, b"what do ya want for nothing?", NOW, ID);
            assert_eq!(text(&headers, "X-Sig"), expected, "{algorithm}/{encoding}");
        }
    }

    // RFC 7617 section 2 and RFC 6750 section 2.1.
    let basic = sign_with(
        &signer(r#"kind = "basic", username = "Aladdin", password = "open sesame""#),
        &none,
        BODY,
        NOW,
        ID,
    );
    assert_eq!(
        text(&basic, "Authorization"),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert!(basic["authorization"].is_sensitive());
    let bearer = sign_with(
        &signer(r#"kind = "bearer", token = "mF_9.B5f-4.1JqM""#),
        &none,
        BODY,
        NOW,
        ID,
    );
    assert_eq!(text(&bearer, "Authorization"), "Bearer mF_9.B5f-4.1JqM");
    assert!(sign_with(&signer(r#"kind = "none""#), &none, BODY, NOW, ID).is_empty());
}

#[test]
fn every_hmac_knob_combination_round_trips() {
    let timestamps = [
        // No timestamp.
        "",
        // A timestamp header with the default template `{timestamp}.{body}`.
        r#", timestamp_header = "X-Ts""#,
        // Slack's layout.
        r#", timestamp_header = "X-Ts", signed = "v0:{timestamp}:{body}""#,
        // Literal braces, a signed header, the body in the middle.
        r#", timestamp_header = "X-Ts", signed = "{{v1}}|{header:X-Event-Id}|{body}|{timestamp}""#,
        // A signed header without a timestamp.
        r#", signed = "{header:X-Event-Id}.{body}""#,
    ];
    let none = HeaderMap::new();
    let mut tampered = BODY.to_vec();
    tampered.push(b' ');
    let mut count = 0;
    for algorithm in ["sha1", "sha256", "sha512"] {
        for encoding in ["hex", "base64"] {
            for prefix in ["", r#", prefix = "sha256=""#, r#", prefix = "v0=""#] {
                for timestamp in timestamps {
                    let inline = format!(
                        r#"kind = "hmac", secret = "k", header = "X-Sig", algorithm = {algorithm:?}, encoding = {encoding:?}{prefix}{timestamp}"#
                    );
                    let s = signer(&inline);
                    let v = verifier(&inline);
                    let signed = sign_with(&s, &none, BODY, NOW, ID);
                    assert_eq!(deliver(&v, &none, &signed, BODY, NOW), Ok(()), "{inline}");
                    assert_eq!(
                        deliver(&v, &none, &signed, &tampered, NOW),
                        Err(Rejection::NoSignatureMatched),
                        "{inline}"
                    );
                    if timestamp.contains("X-Ts") {
                        // The timestamp is signed: moving it breaks the signature.
                        let mut moved = signed.clone();
                        moved.insert("x-ts", HeaderValue::from(NOW + 1));
                        assert_eq!(
                            deliver(&v, &none, &moved, BODY, NOW),
                            Err(Rejection::NoSignatureMatched),
                            "{inline}"
                        );
                    }
                    count += 1;
                }
            }
        }
    }
    assert_eq!(count, 90);
}

#[test]
fn template_headers_are_the_callers_or_else_the_id() {
    let inline =
        r#"kind = "hmac", secret = "k", header = "X-Sig", signed = "{header:X-Event-Id}.{body}""#;
    let s = signer(inline);
    let v = verifier(inline);
    // Not given: the signer sends the id, and signs it.
    let none = HeaderMap::new();
    let signed = sign_with(&s, &none, BODY, NOW, ID);
    assert_eq!(text(&signed, "X-Event-Id"), ID);
    assert_eq!(deliver(&v, &none, &signed, BODY, NOW), Ok(()));
    // Given: the caller's value is signed and left to the caller to send.
    let given = caller(&[("x-event-id", "evt_mine")]);
    let signed = sign_with(&s, &given, BODY, NOW, ID);
    assert!(!signed.contains_key("X-Event-Id"), "{signed:?}");
    assert_eq!(deliver(&v, &given, &signed, BODY, NOW), Ok(()));
    let other = caller(&[("x-event-id", "evt_other")]);
    assert_eq!(
        deliver(&v, &other, &signed, BODY, NOW),
        Err(Rejection::NoSignatureMatched)
    );
}

#[test]
fn ids_and_event_names_default_but_the_callers_win() {
    let gh = signer(r#"kind = "github", secret = "s""#);
    let signed = sign_with(&gh, &HeaderMap::new(), BODY, NOW, ID);
    assert_eq!(text(&signed, "X-GitHub-Delivery"), ID);
    assert_eq!(text(&signed, "X-GitHub-Event"), "ping");
    let given = caller(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]);
    let signed = sign_with(&gh, &given, BODY, NOW, ID);
    assert!(!signed.contains_key("X-GitHub-Event"));
    assert!(!signed.contains_key("X-GitHub-Delivery"));

    let inline = r#"kind = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#;
    let given = caller(&[("webhook-id", "msg_mine")]);
    let signed = sign_with(&signer(inline), &given, BODY, NOW, ID);
    assert!(!signed.contains_key("webhook-id"));
    assert_eq!(
        deliver(&verifier(inline), &given, &signed, BODY, NOW),
        Ok(())
    );
    let req_other = caller(&[("webhook-id", "msg_other")]);
    assert_eq!(
        deliver(&verifier(inline), &req_other, &signed, BODY, NOW),
        Err(Rejection::NoSignatureMatched)
    );
}

#[test]
fn signed_timestamps_are_the_given_ones_and_the_tolerance_applies() {
    let none = HeaderMap::new();
    for inline in [
        r#"kind = "stripe", secret = "whsec_x""#,
        r#"kind = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#,
        r#"kind = "hmac", secret = "k", header = "X-Sig", timestamp_header = "X-Ts""#,
    ] {
        let stale = sign_with(&signer(inline), &none, BODY, NOW - 301, ID);
        assert_eq!(
            deliver(&verifier(inline), &none, &stale, BODY, NOW),
            Err(Rejection::TimestampOutsideTolerance {
                skew: Skew::Past,
                off_by_secs: 301,
                tolerance_secs: 300
            }),
            "{inline}"
        );
        let edge = sign_with(&signer(inline), &none, BODY, NOW + 300, ID);
        assert_eq!(
            deliver(&verifier(inline), &none, &edge, BODY, NOW),
            Ok(()),
            "{inline}"
        );
    }
}

#[test]
fn what_cannot_be_sent_intact_is_an_error_naming_the_header() {
    let none = HeaderMap::new();
    let sign = |inline: &str, id: &str| {
        signer(inline).sign(&Message {
            body: BODY,
            timestamp: NOW,
            id,
            headers: &none,
        })
    };
    let sw = r#"kind = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#;
    let err = sign(sw, "msg.1").unwrap_err();
    assert!(
        matches!(&err, SignError::Header { name, .. } if name == "webhook-id"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`.`"), "{err}");
    assert!(sign(sw, "").is_err());
    assert!(sign(r#"kind = "github", secret = "s""#, "a\nb").is_err());

    let err = sign(r#"kind = "bearer", token = "t\u00f6ken""#, ID).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot send header authorization: the token is not visible ASCII"
    );
    let err = sign(
        r#"kind = "hmac", secret = "k", header = "X-Sig", prefix = "\u00e9=""#,
        ID,
    )
    .unwrap_err();
    assert_eq!(
        err,
        SignError::Header {
            name: "x-sig".into(),
            problem: "the configured prefix is not visible ASCII"
        }
    );
}

#[test]
fn configurations_the_server_refuses_are_refused_with_its_message() {
    for inline in [
        r#"kind = "hmac", secret = "k", header = "X-Sig", signed = "{bdy}""#,
        r#"kind = "hmac", secret = "k", header = "X Sig""#,
        r#"kind = "standard-webhooks", secret = "whsec_***""#,
        r#"kind = "stripe", secret = "whsec_x", tolerance = "0s""#,
        r#"kind = "github", secret = "env:FOREBAY_SIGN_AS_TEST_SURELY_UNSET""#,
        r#"kind = "basic", username = "a:b", password = "p""#,
    ] {
        let cfg = config(inline);
        let expected = cfg.build().unwrap_err().to_string();
        assert_eq!(
            Signer::new(&cfg).unwrap_err().to_string(),
            expected,
            "{inline}"
        );
    }
}

#[test]
fn debug_never_shows_a_secret() {
    let s = signer(r#"kind = "bearer", token = "hunter2""#);
    let shown = format!("{s:?}");
    assert!(shown.contains("bearer"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// Found by `fuzz/fuzz_targets/verify_headers.rs`: an RFC 3339 timestamp past the year
/// 9999 is an error naming the timestamp header, not a panic.
#[test]
fn a_timestamp_rfc3339_cannot_write_is_an_error() {
    let twitch = signer(r#"kind = "twitch", secret = "s""#);
    let none = HeaderMap::new();
    for at in [1_700_000_000_000, u64::MAX] {
        let err = twitch
            .sign(&Message {
                body: BODY,
                timestamp: at,
                id: ID,
                headers: &none,
            })
            .unwrap_err();
        assert_eq!(
            err,
            SignError::Header {
                name: "twitch-eventsub-message-timestamp".into(),
                problem: "the timestamp is after the year 9999",
            }
        );
    }
    assert!(!sign_with(&twitch, &none, BODY, 253_402_300_799, ID).is_empty());
}
