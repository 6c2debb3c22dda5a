//! The `certificate` kind with certificates made for these tests (`testdata/`), and
//! PayPal's published examples beside the preset's case in `presets/tests.rs`.

use super::super::sign_as::{Message, Signer};
use super::super::test_support::{build, outcome, parse, request};
use super::*;
use http::HeaderMap;

const AT: i64 = 1_767_225_600;

fn testdata(name: &str) -> String {
    format!(
        "file:{}/src/ingest/verify/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Signs `body` as the configured sender at `AT`, and returns the request it makes.
fn signed_request(inline: &str, body: &[u8], headers: &[(&str, &str)]) -> Unverified {
    let config = parse(inline).unwrap();
    let mut given = HeaderMap::new();
    for (name, value) in headers {
        given.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let signed = Signer::new(&config)
        .unwrap()
        .sign(&Message {
            body,
            timestamp: AT as u64,
            id: "msg_1",
            headers: &given,
        })
        .unwrap();
    let mut req = request(&[], body, AT);
    for (name, value) in given.iter().chain(signed.iter()) {
        req.headers.insert(name.clone(), value.clone());
    }
    req
}

#[test]
fn rsa_and_ecdsa_certificates_round_trip_and_refuse_changes() {
    for (cert, key, algorithm) in [
        ("rsa-cert.pem", "rsa-private.pem", "rsa-sha256"),
        ("rsa-cert.pem", "rsa-private.pem", "rsa-pss-sha256"),
        ("rsa-cert.pem", "rsa-private.pem", "rsa-sha512"),
        ("p256-cert.pem", "p256-private.pem", "ecdsa-p256-sha256"),
        ("p384-cert.pem", "p384-private.pem", "ecdsa-p384-sha384"),
        ("ed25519-cert.pem", "ed25519-private.pem", "ed25519"),
    ] {
        let inline = format!(
            r#"kind = "certificate", certificate = {:?}, signing_key = {:?}, algorithm = "{algorithm}", header = "X-Signature", timestamp_header = "X-Timestamp", signed = "{{header:X-Id}}|{{timestamp}}|{{body}}""#,
            testdata(cert),
            testdata(key)
        );
        let verifier = build(&inline);
        let body = br#"{"id":"evt_1"}"#;
        let req = signed_request(&inline, body, &[("X-Id", "tx-1")]);
        assert_eq!(outcome(&verifier, req.clone()), Ok(()), "{algorithm}");
        let mut changed = req.clone();
        changed.body = bytes::Bytes::from_static(br#"{"id":"evt_2"}"#);
        assert_eq!(
            outcome(&verifier, changed),
            Err(Rejection::NoSignatureMatched),
            "{algorithm}"
        );
        let mut other_id = req.clone();
        other_id
            .headers
            .insert("x-id", http::HeaderValue::from_static("tx-2"));
        assert_eq!(
            outcome(&verifier, other_id),
            Err(Rejection::NoSignatureMatched),
            "{algorithm}"
        );
        let mut late = req.clone();
        late.received_at_ms += 301_000;
        assert_eq!(
            outcome(&verifier, late).unwrap_err().kind(),
            "timestamp_outside_tolerance",
            "{algorithm}"
        );
    }
}

#[test]
fn body_crc32_is_the_unsigned_decimal_zlib_crc() {
    // zlib's check value for "123456789" is 0xCBF43926.
    let template = parse_template_with("{body_crc32}", false, false).unwrap();
    let filled = fill_template(&template, b"123456789", |_| Ok::<_, ()>(Vec::new())).unwrap();
    assert_eq!(filled, 0xCBF4_3926u32.to_string().as_bytes());
}

/// PayPal's other published example: paypal/PayPal-Python-SDK
/// `test/unit_tests/notifications_test.py` (also in paypal/PayPal-node-SDK
/// `test/notification.js`), signed by the certificate in PayPal-node-SDK
/// `test/mocks/notification.js` (`testdata/paypal-sandbox-2015.pem`).
#[test]
fn paypal_python_sdk_example_verifies() {
    let verifier = build(&format!(
        r#"kind = "paypal", certificate = {:?}, webhook_id = "4JH86294D6297924G""#,
        testdata("paypal-sandbox-2015.pem")
    ));
    let body = include_str!("../testdata/paypal-python-sdk-event.json").trim_end_matches('\n');
    let headers: [(&str, &[u8]); 4] = [
        ("PAYPAL-TRANSMISSION-ID", b"dfb3be50-fd74-11e4-8bf3-77339302725b"),
        ("PAYPAL-TRANSMISSION-TIME", b"2015-05-18T15:45:13Z"),
        ("PAYPAL-AUTH-ALGO", b"SHA256withRSA"),
        ("PAYPAL-TRANSMISSION-SIG", b"thy4/U002quzxFavHPwbfJGcc46E8rc5jzgyeafWm5mICTBdY/8rl7WJpn8JA0GKA+oDTPsSruqusw+XXg5RLAP7ip53Euh9Xu3UbUhQFX7UgwzE2FeYoY6lyRMiiiQLzy9BvHfIzNIVhPad4KnC339dr6y2l+mN8ALgI4GCdIh3/SoJO5wE64Bh/ueWtt8EVuvsvXfda2Le5a2TrOI9vLEzsm9GS79hAR/5oLexNz8UiZr045Mr5ObroH4w4oNfmkTaDk9Rj0G19uvISs5QzgmBpauKr7Nw++JI0pr/v5mFctQkoWJSGfBGzPRXawrvIIVHQ9Wer48GR2g9ZiApWg=="),
    ];
    let at = 1_431_963_913; // 2015-05-18T15:45:13Z
    assert_eq!(
        outcome(&verifier, request(&headers, body.as_bytes(), at)),
        Ok(())
    );
    // The SDK's own negative case: another algorithm named.
    let mut sha1 = headers;
    sha1[2] = ("PAYPAL-AUTH-ALGO", b"SHA1withRSA");
    assert_eq!(
        outcome(&verifier, request(&sha1, body.as_bytes(), at))
            .unwrap_err()
            .kind(),
        "malformed_header"
    );
    // The event's id is not the webhook's id.
    let wrong_id = build(&format!(
        r#"kind = "paypal", certificate = {:?}, webhook_id = "WH-0G2756385H040842W-5Y612302CV158622M""#,
        testdata("paypal-sandbox-2015.pem")
    ));
    assert_eq!(
        outcome(&wrong_id, request(&headers, body.as_bytes(), at)),
        Err(Rejection::NoSignatureMatched)
    );
}

#[test]
fn configuration_mistakes_name_the_fix() {
    let err = |inline: &str| parse(inline).unwrap().build().unwrap_err().to_string();
    let not_a_cert = err(&format!(
        r#"kind = "certificate", certificate = {:?}, header = "X-Sig", signed = "{{body}}""#,
        testdata("rsa-public.pem")
    ));
    assert!(
        not_a_cert.starts_with("`certificate`: not a PEM CERTIFICATE block"),
        "{not_a_cert}"
    );
    let no_body = err(&format!(
        r#"kind = "certificate", certificate = {:?}, header = "X-Sig", signed = "{{method}}""#,
        testdata("rsa-cert.pem")
    ));
    assert!(no_body.contains("{body}"), "{no_body}");
    let crc_untimed = err(&format!(
        r#"kind = "certificate", certificate = {:?}, header = "X-Sig", signed = "{{body_crc32}}""#,
        testdata("rsa-cert.pem")
    ));
    assert!(crc_untimed.contains("`timestamp_header`"), "{crc_untimed}");
    let crc_hmac = err(r#"kind = "hmac", secret = "s", header = "X-Sig", signed = "{body_crc32}""#);
    assert!(
        crc_hmac.contains("only the `certificate` kind"),
        "{crc_hmac}"
    );
    let paypal_event_id = err(&format!(
        r#"kind = "paypal", certificate = {:?}, webhook_id = "WH 1""#,
        testdata("rsa-cert.pem")
    ));
    assert!(
        paypal_event_id.contains("developer dashboard"),
        "{paypal_event_id}"
    );
    let missing = parse(&format!(
        r#"kind = "paypal", certificate = {:?}"#,
        testdata("rsa-cert.pem")
    ))
    .unwrap_err();
    assert!(missing.contains("webhook_id"), "{missing}");
    // A signing key that is not the certificate's.
    let mismatch = Signer::new(
        &parse(&format!(
            r#"kind = "certificate", certificate = {:?}, signing_key = {:?}, header = "X-Sig", signed = "{{body}}""#,
            testdata("rsa-cert.pem"),
            testdata("rsa-other-private.pem")
        ))
        .unwrap(),
    );
    assert!(matches!(mismatch, Err(BuildError::SigningKeyMismatch)));
}
