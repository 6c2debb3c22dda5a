//! Tests of the generic `hmac` kind: every algorithm × encoding against published HMAC
//! test vectors, prefixes, and timestamped templates against Slack's documented example.

use super::super::test_support::{build, outcome, request};
use super::super::{BuildError, Rejection, Skew, Verifier};
use super::{Part, TemplateError, format_timestamp, parse_template};
use crate::ingest::verify::TimestampFormat;

// RFC 2202 (HMAC-SHA1) and RFC 4231 (HMAC-SHA256/512), test case 2: key "Jefe",
// data "what do ya want for nothing?". The base64 column is the same bytes re-encoded.
const KEY: &str = "Jefe";
const DATA: &str = "what do ya want for nothing?";
const VECTORS: [(&str, &str, &str); 3] = [
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

// Slack, "Verifying requests from Slack": signing secret, timestamp, body and the
// resulting `X-Slack-Signature` of its worked example. Slack signs `v0:{ts}:{body}`.
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: i64 = 1_531_420_618;
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn slack_like(extra: &str) -> Verifier {
    build(&format!(
        r#"kind = "hmac", secret = {SLACK_SECRET:?}, header = "X-Slack-Signature", prefix = "v0=", timestamp_header = "X-Slack-Request-Timestamp", signed = "v0:{{timestamp}}:{{body}}"{extra}"#
    ))
}

fn check(v: &Verifier, headers: &[(&str, &[u8])], body: &str, now: i64) -> Result<(), Rejection> {
    outcome(v, request(headers, body.as_bytes(), now))
}

fn slack_check(v: &Verifier, sig: &str, ts: &str, body: &str, now: i64) -> Result<(), Rejection> {
    check(
        v,
        &[
            ("X-Slack-Signature", sig.as_bytes()),
            ("X-Slack-Request-Timestamp", ts.as_bytes()),
        ],
        body,
        now,
    )
}

#[test]
fn every_algorithm_and_encoding_matches_the_rfc_vectors() {
    for (algorithm, hex, base64) in VECTORS {
        for (encoding, sig) in [("hex", hex), ("base64", base64)] {
            let v = build(&format!(
                r#"kind = "hmac", secret = {KEY:?}, header = "X-Sig", algorithm = {algorithm:?}, encoding = {encoding:?}"#
            ));
            let ok = check(&v, &[("X-Sig", sig.as_bytes())], DATA, 0);
            assert_eq!(ok, Ok(()), "{algorithm}/{encoding}");
            let tampered = check(
                &v,
                &[("X-Sig", sig.as_bytes())],
                "what do ya want for nothing!",
                0,
            );
            assert_eq!(
                tampered,
                Err(Rejection::NoSignatureMatched),
                "{algorithm}/{encoding}"
            );
        }
    }
    // The right value under the wrong algorithm does not pass.
    let v = build(&format!(
        r#"kind = "hmac", secret = {KEY:?}, header = "X-Sig", algorithm = "sha512""#
    ));
    assert_eq!(
        check(&v, &[("X-Sig", VECTORS[1].1.as_bytes())], DATA, 0),
        Err(Rejection::NoSignatureMatched)
    );
}

#[test]
fn base64_padding_is_optional() {
    let v = build(&format!(
        r#"kind = "hmac", secret = {KEY:?}, header = "X-Sig", encoding = "base64""#
    ));
    let unpadded = VECTORS[1].2.trim_end_matches('=');
    assert_eq!(
        check(&v, &[("X-Sig", unpadded.as_bytes())], DATA, 0),
        Ok(())
    );
}

#[test]
fn prefix_is_required_and_case_insensitive() {
    // GitHub Docs, "Validating webhook deliveries": the generic kind set up like GitHub.
    let v = build(
        r#"kind = "hmac", secret = "It's a Secret to Everybody", header = "X-Hub-Signature-256", prefix = "sha256=""#,
    );
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = |s: &'static str| [("X-Hub-Signature-256", s.as_bytes())];
    assert_eq!(check(&v, &h(sig), "Hello, World!", 0), Ok(()));
    let upper = "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(check(&v, &h(upper), "Hello, World!", 0), Ok(()));
    let bare = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let missing_prefix = Rejection::MalformedHeader {
        name: "X-Hub-Signature-256".into(),
        problem: "does not start with the configured prefix",
    };
    assert_eq!(
        check(&v, &h(bare), "Hello, World!", 0),
        Err(missing_prefix.clone())
    );
    // Shorter than the prefix, and a multi-byte character where the prefix would end:
    // neither may panic.
    assert_eq!(
        check(&v, &h("sha"), "Hello, World!", 0),
        Err(missing_prefix.clone())
    );
    let v = build(r#"kind = "hmac", secret = "s", header = "X-Sig", prefix = "ab""#);
    assert!(check(&v, &[("X-Sig", "a\u{e9}ff".as_bytes())], "x", 0).is_err());
}

#[test]
fn timestamped_template_matches_slacks_documented_example() {
    let v = slack_like("");
    let ts = SLACK_TS.to_string();
    assert_eq!(
        slack_check(&v, SLACK_SIG, &ts, SLACK_BODY, SLACK_TS + 60),
        Ok(())
    );
    // Tampered body, moved timestamp, wrong secret.
    let tampered = SLACK_BODY.replace("roadrunner", "coyote");
    assert_eq!(
        slack_check(&v, SLACK_SIG, &ts, &tampered, SLACK_TS),
        Err(Rejection::NoSignatureMatched)
    );
    let moved = (SLACK_TS + 1).to_string();
    assert_eq!(
        slack_check(&v, SLACK_SIG, &moved, SLACK_BODY, SLACK_TS),
        Err(Rejection::NoSignatureMatched)
    );
    let wrong = build(
        r#"kind = "hmac", secret = "not slack's", header = "X-Slack-Signature", prefix = "v0=", timestamp_header = "X-Slack-Request-Timestamp", signed = "v0:{timestamp}:{body}""#,
    );
    assert_eq!(
        slack_check(&wrong, SLACK_SIG, &ts, SLACK_BODY, SLACK_TS),
        Err(Rejection::NoSignatureMatched)
    );
}

#[test]
fn timestamp_tolerance_applies_when_a_timestamp_header_is_set() {
    let v = slack_like(r#", tolerance = "1m""#);
    let ts = SLACK_TS.to_string();
    assert_eq!(
        slack_check(&v, SLACK_SIG, &ts, SLACK_BODY, SLACK_TS + 60),
        Ok(())
    );
    assert_eq!(
        slack_check(&v, SLACK_SIG, &ts, SLACK_BODY, SLACK_TS + 61),
        Err(Rejection::TimestampOutsideTolerance {
            skew: Skew::Past,
            off_by_secs: 61,
            tolerance_secs: 60
        })
    );
    assert_eq!(
        slack_check(&v, SLACK_SIG, "1531420618.0", SLACK_BODY, SLACK_TS),
        Err(Rejection::MalformedHeader {
            name: "X-Slack-Request-Timestamp".into(),
            problem: "is not a whole number of seconds"
        })
    );
    assert_eq!(
        check(
            &v,
            &[("X-Slack-Signature", SLACK_SIG.as_bytes())],
            SLACK_BODY,
            SLACK_TS
        ),
        Err(Rejection::MissingHeader {
            name: "X-Slack-Request-Timestamp".into()
        })
    );
}

#[test]
fn default_template_with_timestamp_is_timestamp_dot_body() {
    // hex(HMAC-SHA256("secret", "1700000000.hello")), computed with Python's hmac module.
    let v =
        build(r#"kind = "hmac", secret = "secret", header = "X-Sig", timestamp_header = "X-Ts""#);
    let sig = "47b1df0ab12338b2685470b0d2b37033add7c3b2bc8172f313e77413f1bb78c8";
    let headers: [(&str, &[u8]); 2] = [("X-Sig", sig.as_bytes()), ("X-Ts", b"1700000000")];
    assert_eq!(check(&v, &headers, "hello", 1_700_000_000), Ok(()));
}

#[test]
fn header_placeholders_are_signed() {
    // hex(HMAC-SHA256("secret", "evt_1|hello")), computed with Python's hmac module.
    let v = build(
        r#"kind = "hmac", secret = "secret", header = "X-Sig", signed = "{header:X-Event-Id}|{body}""#,
    );
    let sig = "22382080b1a0eb92c2a7cb70003e7aa9ed6df3ca7be7dd51d8d1b8e7b4d252b6";
    let ok: [(&str, &[u8]); 2] = [("X-Sig", sig.as_bytes()), ("x-event-id", b"evt_1")];
    assert_eq!(check(&v, &ok, "hello", 0), Ok(()));
    let other: [(&str, &[u8]); 2] = [("X-Sig", sig.as_bytes()), ("X-Event-Id", b"evt_2")];
    assert_eq!(
        check(&v, &other, "hello", 0),
        Err(Rejection::NoSignatureMatched)
    );
    assert_eq!(
        check(&v, &[("X-Sig", sig.as_bytes())], "hello", 0),
        Err(Rejection::MissingHeader {
            name: "X-Event-Id".into()
        })
    );
}

#[test]
fn rotation_second_secret_matches() {
    let v = build(&format!(
        r#"kind = "hmac", secret = ["new", {KEY:?}], header = "X-Sig""#
    ));
    assert_eq!(
        check(&v, &[("X-Sig", VECTORS[1].1.as_bytes())], DATA, 0),
        Ok(())
    );
}

#[test]
fn malformed_signatures_are_named_and_never_panic() {
    let hex = build(&format!(
        r#"kind = "hmac", secret = {KEY:?}, header = "X-Sig""#
    ));
    let b64 = build(&format!(
        r#"kind = "hmac", secret = {KEY:?}, header = "X-Sig", encoding = "base64""#
    ));
    let cases: [(&Verifier, &[u8], &str); 6] = [
        (&hex, b"xyz", "signature is not valid hex"),
        (&hex, b"abc", "signature is not valid hex"),
        (&hex, b"", "signature is empty"),
        (&b64, b"***", "signature is not valid base64"),
        (&b64, b"   ", "signature is empty"),
        (
            &hex,
            b"\x80\x81",
            "contains bytes that are not visible ASCII",
        ),
    ];
    for (v, raw, problem) in cases {
        assert_eq!(
            check(v, &[("X-Sig", raw)], DATA, 0),
            Err(Rejection::MalformedHeader {
                name: "X-Sig".into(),
                problem
            }),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        check(&hex, &[], DATA, 0),
        Err(Rejection::MissingHeader {
            name: "X-Sig".into()
        })
    );
}

#[test]
fn templates_parse_with_escapes() {
    assert_eq!(
        parse_template("{{v0}}:{timestamp}:{body}", true),
        Ok(vec![
            Part::Literal("{v0}:".into()),
            Part::Timestamp,
            Part::Literal(":".into()),
            Part::Body,
        ])
    );
    assert_eq!(
        parse_template("{header:X-Id}.{body}", false),
        Ok(vec![
            Part::Header("X-Id".into()),
            Part::Literal(".".into()),
            Part::Body
        ])
    );
}

#[test]
fn template_mistakes_are_build_errors() {
    let cases: [(&str, bool, TemplateError); 8] = [
        ("{body", false, TemplateError::Unclosed { at: 0 }),
        ("x}{body}", false, TemplateError::UnmatchedClose { at: 1 }),
        (
            "{bdy}",
            false,
            TemplateError::UnknownPlaceholder { name: "bdy".into() },
        ),
        (
            "{header:X Y}{body}",
            false,
            TemplateError::BadHeaderName { name: "X Y".into() },
        ),
        (
            "{timestamp}.{body}",
            false,
            TemplateError::TimestampWithoutHeader,
        ),
        ("{timestamp}", true, TemplateError::NoBody),
        ("{{body}}", false, TemplateError::NoBody),
        ("{body}", true, TemplateError::NoTimestamp),
    ];
    for (template, has_timestamp, expected) in cases {
        assert_eq!(
            parse_template(template, has_timestamp),
            Err(expected),
            "{template}"
        );
    }
    let err = super::super::VerifyConfig::Hmac {
        secret: super::super::OneOrMany::One(crate::config::secret::SecretRef::new("s")),
        header: "X-Sig".into(),
        algorithm: Default::default(),
        encoding: Default::default(),
        prefix: None,
        timestamp_header: None,
        signed: Some("{bdy}".into()),
        tolerance: std::time::Duration::from_secs(300),
        timestamp_format: Default::default(),
        public_url: None,
    }
    .build()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`signed`: unknown placeholder `{bdy}`; use {body}, {timestamp}, {method}, {url} (with `public_url`) or {header:Name}"
    );
}

#[test]
fn bad_header_names_are_build_errors() {
    let err = super::super::VerifyConfig::Hmac {
        secret: super::super::OneOrMany::One(crate::config::secret::SecretRef::new("s")),
        header: "X Sig".into(),
        algorithm: Default::default(),
        encoding: Default::default(),
        prefix: None,
        timestamp_header: None,
        signed: None,
        tolerance: std::time::Duration::from_secs(300),
        timestamp_format: Default::default(),
        public_url: None,
    }
    .build()
    .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::HeaderName {
                field: "header",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Found by `fuzz/fuzz_targets/verify_headers.rs`: signing with an RFC 3339 timestamp
/// past the year 9999 (`forebay send --timestamp`) panicked in `to_string`.
#[test]
fn rfc3339_timestamps_past_the_year_9999_are_refused_not_a_panic() {
    let rfc3339 = |secs| format_timestamp(TimestampFormat::Rfc3339, secs);
    assert_eq!(
        rfc3339(1_700_000_000).as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    assert_eq!(
        rfc3339(253_402_300_799).as_deref(),
        Some("9999-12-31T23:59:59Z")
    );
    assert_eq!(rfc3339(253_402_300_800), None);
    assert_eq!(rfc3339(u64::MAX), None);
    assert_eq!(
        format_timestamp(TimestampFormat::UnixMs, u64::MAX).as_deref(),
        Some("18446744073709551615")
    );
}
