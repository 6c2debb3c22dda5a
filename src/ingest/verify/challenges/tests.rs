//! Each challenge answered as its provider documents it, refused where it should be,
//! and never answered for a request that is not one; plus the preset-only schemes
//! (GitLab's signing token, Okta's header, Mailgun's form body, HubSpot's URL).

use http::{HeaderMap, Method, StatusCode};

use super::super::sign_as::{Message, Signer};
use super::super::test_support::{build, outcome, parse, request};
use super::super::{Answer, Rejection, Verifier, VerifyConfig};
use crate::ingest::request::Unverified;

fn get(query: &str) -> Unverified {
    let mut req = request(&[], b"", 1_700_000_000);
    req.method = Method::GET;
    req.query = Some(query.to_owned());
    req
}

fn config(inline: &str) -> VerifyConfig {
    parse(inline).expect("test config parses")
}

fn config_error(inline: &str) -> String {
    parse(inline).expect_err("config is refused")
}

fn text(answer: &Answer) -> &str {
    std::str::from_utf8(&answer.body).expect("UTF-8 answer")
}

/// Signs `body` as the source's sender at `at`, then verifies and asks for an answer.
fn signed_answer(v: &Verifier, cfg: &str, body: &str, extra: &[(&str, &str)]) -> Option<Answer> {
    let signer = Signer::new(&config(cfg)).unwrap();
    let mut req = request(&[], body.as_bytes(), 1_700_000_000);
    for (name, value) in extra {
        req.headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let signed = signer
        .sign(&Message {
            body: body.as_bytes(),
            timestamp: 1_700_000_000,
            id: "msg_1",
            headers: &req.headers,
        })
        .unwrap();
    req.headers.extend(signed);
    let verified = v.verify(req).expect("signed request verifies");
    v.answer(&verified)
}

const META: &str =
    r#"kind = "meta", secret = "app-secret", verify_token = ["new-token", "meatyhamhock"]"#;

#[test]
fn meta_subscription_is_answered_with_the_challenge() {
    let v = build(META);
    // The sample request of Meta's "Getting started" (Graph API webhooks).
    let answer = v
        .challenge(&get(
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
        ))
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(text(&answer), "1158201444");
    assert_eq!(answer.content_type, Some("text/plain; charset=utf-8"));
    // Query values are percent-decoded.
    let answer = v
        .challenge(&get(
            "hub.verify_token=new-token&hub.mode=subscribe&hub.challenge=a%20b",
        ))
        .unwrap()
        .unwrap();
    assert_eq!(text(&answer), "a b");
    assert!(v.answers_challenges_on(&Method::GET));
    assert!(!v.answers_challenges_on(&Method::HEAD));
}

#[test]
fn meta_refuses_a_wrong_token_and_ignores_other_gets() {
    let v = build(META);
    for (query, problem) in [
        (
            "hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess",
            "hub.verify_token does not match the configured `verify_token`; enter the same value in Meta's webhook settings",
        ),
        (
            "hub.mode=subscribe&hub.challenge=1",
            "hub.verify_token is missing",
        ),
        (
            "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock",
            "hub.mode is not `subscribe`",
        ),
        (
            "hub.mode=subscribe&hub.verify_token=meatyhamhock",
            "hub.challenge is missing",
        ),
    ] {
        assert_eq!(
            v.challenge(&get(query)),
            Some(Err(Rejection::ChallengeRefused { problem })),
            "{query}"
        );
    }
    // Not a challenge at all: the caller answers 405.
    assert_eq!(v.challenge(&get("a=1")), None);
    let mut no_query = get("");
    no_query.query = None;
    assert_eq!(v.challenge(&no_query), None);
    // A POST is an event, whatever its query says.
    let mut post = get("hub.mode=subscribe&hub.challenge=1&hub.verify_token=meatyhamhock");
    post.method = Method::POST;
    assert_eq!(v.challenge(&post), None);
    // `verify_token` is required, and only Meta takes it.
    let err = config_error(r#"kind = "meta", secret = "s""#);
    assert!(err.contains("missing field `verify_token`"), "{err}");
    let err = config_error(r#"kind = "github", secret = "s", verify_token = "t""#);
    assert!(err.contains("unknown field `verify_token`"), "{err}");
    let err = config_error(r#"kind = "meta", secret = "s", verify_token = "t", tolerance = "5m""#);
    assert!(
        err.contains("unknown field `tolerance`, expected one of `secret`, `verify_token`"),
        "{err}"
    );
}

#[test]
fn twitter_crc_is_answered_with_the_hmac_of_the_token() {
    // Consumer secret and crc_token from X DevRel's CRC sample code (linked from
    // "Securing webhooks"); the sample prints no output, so the expected token was
    // computed with Python's hmac module: base64(HMAC-SHA256(secret, crc_token)).
    let v = build(
        r#"kind = "twitter", secret = ["z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu", "old"]"#,
    );
    let answer = v
        .challenge(&get("crc_token=9b4507b3-9040-4669-9ca3-6b94edb50553"))
        .unwrap()
        .unwrap();
    assert_eq!(answer.content_type, Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"response_token": "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="})
    );
    assert_eq!(
        v.challenge(&get("crc_token=")),
        Some(Err(Rejection::ChallengeRefused {
            problem: "crc_token is empty"
        }))
    );
    assert_eq!(v.challenge(&get("token=1")), None);
}

#[test]
fn twitter_crc_cannot_be_used_to_sign_an_event() {
    // The CRC answer is the HMAC of the token under the key that signs events' bodies:
    // asked for a token that is an event body, it would sign that event.
    let cfg = r#"kind = "twitter", secret = "consumer-secret""#;
    let v = build(cfg);
    let body = r#"{"for_user_id":"1","tweet_create_events":[]}"#;
    let encoded: String = form_urlencoded::byte_serialize(body.as_bytes()).collect();
    assert!(matches!(
        v.challenge(&get(&format!("crc_token={encoded}"))),
        Some(Err(Rejection::ChallengeRefused { .. }))
    ));
    let long = "a".repeat(257);
    assert!(matches!(
        v.challenge(&get(&format!("crc_token={long}"))),
        Some(Err(Rejection::ChallengeRefused { .. }))
    ));
    // A token-like body, signed as a CRC answer would sign it, is not an event.
    let signer = Signer::new(&config(cfg)).unwrap();
    let token = "9b4507b3-9040-4669-9ca3-6b94edb50553";
    let mut req = request(&[], token.as_bytes(), 1_700_000_000);
    req.headers = signer
        .sign(&Message {
            id: "msg_1",
            body: token.as_bytes(),
            headers: &HeaderMap::new(),
            timestamp: 1_700_000_000,
        })
        .unwrap();
    assert!(matches!(
        outcome(&v, req.clone()),
        Err(Rejection::BodyField { .. })
    ));
    // The same signature over a JSON object is an event.
    let mut event = request(&[], body.as_bytes(), 1_700_000_000);
    event.headers = signer
        .sign(&Message {
            id: "msg_1",
            body: body.as_bytes(),
            headers: &HeaderMap::new(),
            timestamp: 1_700_000_000,
        })
        .unwrap();
    assert_eq!(outcome(&v, event), Ok(()));
}

#[test]
fn dropbox_and_okta_echo_their_challenges() {
    let dropbox = build(r#"kind = "dropbox", secret = "s""#);
    let answer = dropbox
        .challenge(&get("challenge=W0vVtgU2rMlqy7k"))
        .unwrap()
        .unwrap();
    assert_eq!(text(&answer), "W0vVtgU2rMlqy7k");
    assert_eq!(answer.content_type, Some("text/plain; charset=utf-8"));
    assert_eq!(
        answer.headers,
        vec![(
            http::HeaderName::from_static("x-content-type-options"),
            http::HeaderValue::from_static("nosniff")
        )]
    );
    assert_eq!(dropbox.challenge(&get("list_folder=1")), None);

    let okta = build(r#"kind = "okta", secret = "s""#);
    let mut req = get("");
    req.headers.insert(
        "X-Okta-Verification-Challenge",
        http::HeaderValue::from_static("Y0Fw-0cyVh9QgYN3bC6Iw5vmpi8dSPjCt7OwbCkd"),
    );
    let answer = okta.challenge(&req).unwrap().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"verification": "Y0Fw-0cyVh9QgYN3bC6Iw5vmpi8dSPjCt7OwbCkd"})
    );
    assert_eq!(okta.challenge(&get("")), None);
}

#[test]
fn trello_head_is_answered_empty() {
    let v = build(
        r#"kind = "trello", secret = "s", public_url = "https://hooks.example.com/in/trello""#,
    );
    let mut head = get("");
    head.method = Method::HEAD;
    assert!(v.answers_challenges_on(&Method::HEAD));
    let answer = v.challenge(&head).unwrap().unwrap();
    assert_eq!((answer.status, answer.content_type), (StatusCode::OK, None));
    assert!(answer.body.is_empty());
    assert_eq!(v.challenge(&get("")), None);
}

fn asana_handshake(secret: &str) -> Unverified {
    let mut req = request(&[("X-Hook-Secret", secret.as_bytes())], b"", 1_700_000_000);
    req.method = Method::POST;
    req.query = Some("verify_token=ours".to_owned());
    req
}

#[test]
fn asana_handshake_is_taken_while_no_secret_is_configured_or_when_it_matches() {
    // The X-Hook-Secret example of Asana's "Establish a webhook".
    let value = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";
    let fresh = build(r#"kind = "asana", verify_token = "ours""#);
    let answer = fresh.challenge(&asana_handshake(value)).unwrap().unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[0].0, "x-hook-secret");
    assert_eq!(answer.headers[0].1, value);
    let notice = answer.notice.expect("the operator is told what to do");
    assert!(
        notice.contains("copy this request's X-Hook-Secret"),
        "{notice}"
    );
    // Anyone else's handshake (a secret of their choosing for the operator to copy)
    // does not carry the verify_token, and is refused.
    for query in [None, Some("verify_token=theirs")] {
        let mut foreign = asana_handshake("attacker-chosen");
        foreign.query = query.map(str::to_owned);
        assert!(matches!(
            fresh.challenge(&foreign),
            Some(Err(Rejection::ChallengeRefused { .. }))
        ));
    }
    // Without a secret, the verify_token is required.
    let err = config(r#"kind = "asana""#).build().unwrap_err().to_string();
    assert!(err.contains("give `verify_token`"), "{err}");
    // Until the secret is configured, events are refused with the reason.
    let event = request(&[("X-Hook-Signature", b"00")], b"{}", 1_700_000_000);
    assert_eq!(fresh.challenge(&event), None);
    assert!(matches!(
        outcome(&fresh, event),
        Err(Rejection::NotConfigured { .. })
    ));

    // Only Asana may wait for its secret: an empty list elsewhere is still an error.
    let err = config(r#"kind = "shopify", secret = []"#)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`secret` is an empty list; give at least one value"
    );

    let configured = build(&format!(r#"kind = "asana", secret = ["other", "{value}"]"#));
    let answer = configured
        .challenge(&asana_handshake(value))
        .unwrap()
        .unwrap();
    assert_eq!(answer.notice, None);
    assert!(matches!(
        configured.challenge(&asana_handshake("a-new-webhook")),
        Some(Err(Rejection::ChallengeRefused { .. }))
    ));
    assert!(matches!(
        configured.challenge(&asana_handshake("")),
        Some(Err(Rejection::ChallengeRefused { .. }))
    ));
}

#[test]
fn zoom_url_validation_is_answered_with_the_encrypted_token() {
    // The validation body of Zoom's "Using webhooks"; a third-party test (a Go project,
    // recomputed with Python's hmac module) gives this encryptedToken for the secret
    // token `secretValueTest`.
    let cfg = r#"kind = "zoom", secret = "secretValueTest""#;
    let v = build(cfg);
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let answer = signed_answer(&v, cfg, body, &[]).expect("answered");
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff",
        })
    );
    let event = r#"{"event":"meeting.started","payload":{"object":{"id":"1"}}}"#;
    assert_eq!(signed_answer(&v, cfg, event, &[]), None);
}

#[test]
fn twitch_verification_is_answered_and_revocation_is_an_event() {
    let cfg = r#"kind = "twitch", secret = "twitch-webhook-secret""#;
    let v = build(cfg);
    let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow"}}"#;
    let answer = signed_answer(
        &v,
        cfg,
        body,
        &[(
            "Twitch-Eventsub-Message-Type",
            "webhook_callback_verification",
        )],
    )
    .expect("answered");
    assert_eq!(text(&answer), "pogchamp-kappa-360noscope-vohiyo");
    assert_eq!(answer.content_type, Some("text/plain; charset=utf-8"));
    for kind in ["revocation", "notification"] {
        assert_eq!(
            signed_answer(&v, cfg, body, &[("Twitch-Eventsub-Message-Type", kind)]),
            None,
            "{kind}"
        );
    }
    // The RFC 3339 timestamp is checked like any other: stale is refused.
    let mut req = request(
        &[
            ("Twitch-Eventsub-Message-Id", b"m"),
            ("Twitch-Eventsub-Message-Timestamp", b"yesterday"),
            ("Twitch-Eventsub-Message-Signature", b"sha256=00"),
        ],
        body.as_bytes(),
        1_700_000_000,
    );
    req.method = Method::POST;
    assert_eq!(
        outcome(&v, req),
        Err(Rejection::MalformedHeader {
            name: "Twitch-Eventsub-Message-Timestamp".into(),
            problem: "is not an RFC 3339 time"
        })
    );
}

#[test]
fn xero_intent_to_receive_is_answered_empty_and_events_are_not() {
    let cfg = r#"kind = "xero", secret = "xero-key""#;
    let v = build(cfg);
    // The validation body of Xero's "Configuring your server".
    let itr =
        r#"{"events":[],"lastEventSequence":0,"firstEventSequence":0,"entropy":"S0m3r4Nd0mt3xt"}"#;
    let answer = signed_answer(&v, cfg, itr, &[]).expect("answered");
    assert_eq!((answer.status, answer.content_type), (StatusCode::OK, None));
    assert!(answer.body.is_empty());
    let event = r#"{"events":[{"eventType":"Update"}],"firstEventSequence":1}"#;
    assert_eq!(signed_answer(&v, cfg, event, &[]), None);
}

#[test]
fn gitlab_token_and_signing_token() {
    let token_only = build(r#"kind = "gitlab", secret = ["new", "old-token"]"#);
    let with = |headers: &[(&str, &[u8])]| request(headers, b"{}", 1_700_000_000);
    assert_eq!(
        outcome(&token_only, with(&[("X-Gitlab-Token", b"old-token")])),
        Ok(())
    );
    assert_eq!(
        outcome(&token_only, with(&[("X-Gitlab-Token", b"old-tokeN")])),
        Err(Rejection::BadCredentials)
    );
    assert_eq!(
        outcome(&token_only, with(&[])),
        Err(Rejection::MissingHeader {
            name: "X-Gitlab-Token".into()
        })
    );
    // The signing token is Standard Webhooks (GitLab MR !230944): the specification's
    // reference vector (libraries/go/webhook_test.go TestWebhookSign) applies.
    let signed =
        build(r#"kind = "gitlab", signing_token = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#);
    let sw: [(&str, &[u8]); 3] = [
        ("webhook-id", b"msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", b"1614265330"),
        (
            "webhook-signature",
            b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(outcome(&signed, request(&sw, body, 1_614_265_330)), Ok(()));
    assert!(matches!(
        outcome(&signed, request(&sw, body, 1_614_265_330 + 301)),
        Err(Rejection::TimestampOutsideTolerance { .. })
    ));
    assert_eq!(
        signed.provider_dedup_key(&request(&sw, body, 0)).as_deref(),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
    // The signed `webhook-id` wins over the unsigned `Idempotency-Key`: a captured
    // request replayed under a new key is still a duplicate.
    let mut replayed = sw.to_vec();
    replayed.push(("Idempotency-Key", b"fresh-key-chosen-by-a-replayer"));
    assert_eq!(
        signed
            .provider_dedup_key(&request(&replayed, body, 0))
            .as_deref(),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
    // Both configured: both are required.
    let both = build(
        r#"kind = "gitlab", secret = "t", signing_token = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw""#,
    );
    assert!(outcome(&both, request(&sw, body, 1_614_265_330)).is_err());
    let mut all = sw.to_vec();
    all.push(("X-Gitlab-Token", b"t"));
    assert_eq!(outcome(&both, request(&all, body, 1_614_265_330)), Ok(()));
    // Neither: a build error that says what to give.
    let err = config(r#"kind = "gitlab""#)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("give `secret`"), "{err}");
    assert!(err.contains("`signing_token`"), "{err}");
}

#[test]
fn okta_reads_the_configured_header() {
    let v = build(r#"kind = "okta", secret = "s3cret", header = "X-Okta-Auth""#);
    let req = request(&[("X-Okta-Auth", b"s3cret")], b"{}", 0);
    assert_eq!(outcome(&v, req), Ok(()));
    let req = request(&[("Authorization", b"s3cret")], b"{}", 0);
    assert_eq!(
        outcome(&v, req),
        Err(Rejection::MissingHeader {
            name: "X-Okta-Auth".into()
        })
    );
    let err = config(r#"kind = "okta", secret = "s", header = "Bad Header""#)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid HTTP header name"), "{err}");
}

#[test]
fn mailgun_reads_form_bodies_and_signs_into_the_body() {
    let cfg = r#"kind = "mailgun", secret = "mailgun-signing-key""#;
    let v = build(cfg);
    // The JSON case's values as form fields (hand-computed, see presets/tests.rs).
    let form = "recipient=a%40example.com&timestamp=1700000000&token=e0b5477167110d68991efc6b9f89f0a11066af27834600e123&signature=c79b7b312f6a86cac22c27fc28725cc5e988732b11ba732e65a9df64ad329613";
    let req = request(&[], form.as_bytes(), 1_700_000_000);
    assert_eq!(
        v.provider_dedup_key(&req).as_deref(),
        Some("e0b5477167110d68991efc6b9f89f0a11066af27834600e123")
    );
    assert_eq!(outcome(&v, req), Ok(()));
    let forged = form.replace("token=e0", "token=f0");
    assert_eq!(
        outcome(&v, request(&[], forged.as_bytes(), 1_700_000_000)),
        Err(Rejection::NoSignatureMatched)
    );
    // A subaccount's event: `parent-signature` under the primary account's key passes.
    let parent = r#"{"signature":{"timestamp":"1700000000","token":"e0b5477167110d68991efc6b9f89f0a11066af27834600e123","signature":"00","parent-signature":"c79b7b312f6a86cac22c27fc28725cc5e988732b11ba732e65a9df64ad329613"}}"#;
    assert_eq!(
        outcome(&v, request(&[], parent.as_bytes(), 1_700_000_000)),
        Ok(())
    );
    assert!(matches!(
        outcome(&v, request(&[], b"{\"event-data\":{}}", 1_700_000_000)),
        Err(Rejection::BodyField { .. })
    ));
    // `sign_as` puts the signature into JSON objects and form bodies.
    let signer = Signer::new(&config(cfg)).unwrap();
    for body in [
        r#"{"event-data":{"event":"opened"}}"#,
        "recipient=a%40b.c",
        "",
    ] {
        let message = Message {
            body: body.as_bytes(),
            timestamp: 1_700_000_000,
            id: "tok_1",
            headers: &HeaderMap::new(),
        };
        let signed = signer.sign_body(&message).unwrap().expect("a new body");
        let req = request(&[], &signed, 1_700_000_000);
        assert_eq!(v.provider_dedup_key(&req).as_deref(), Some("tok_1"));
        assert_eq!(outcome(&v, req), Ok(()), "{body}");
    }
    let array = Message {
        body: b"[1]",
        timestamp: 0,
        id: "t",
        headers: &HeaderMap::new(),
    };
    assert!(signer.sign_body(&array).is_err());
}

#[test]
fn hubspot_decodes_its_table_of_escapes_in_the_url() {
    // hand-computed with Python's hmac module: base64(HMAC-SHA256(secret, "POST" +
    // "https://hooks.example.com/in/hubspot?portal=62515&email=a@b.com,c/d%20e" + body +
    // "1700000000123")): `%40`, `%2C` and `%2F` decoded as HubSpot's v3 table says,
    // `%20` (not in the table) kept.
    let v = build(
        r#"kind = "hubspot", secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", public_url = "https://hooks.example.com/in/hubspot""#,
    );
    let body = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    let mut req = request(
        &[
            (
                "X-HubSpot-Signature-v3",
                b"2ba7mH/t5RtBjbCIOm/ELGw/xvSVLSE4gj+0ymKCivE=",
            ),
            ("X-HubSpot-Request-Timestamp", b"1700000000123"),
        ],
        body.as_bytes(),
        1_700_000_000,
    );
    req.query = Some("portal=62515&email=a%40b.com%2Cc%2fd%20e".into());
    assert_eq!(outcome(&v, req.clone()), Ok(()));
    // The method is signed.
    req.method = Method::PUT;
    assert_eq!(outcome(&v, req), Err(Rejection::NoSignatureMatched));
    // The generic kind takes `{method}`, `{url}` and the millisecond format too.
    let generic = build(
        r#"kind = "hmac", secret = "k", header = "X-Sig", encoding = "base64", timestamp_header = "X-Ts", timestamp_format = "unix-ms", signed = "{method}{url}{body}{timestamp}", public_url = "https://h.example/in/x""#,
    );
    let signer = Signer::new(&config(
        r#"kind = "hmac", secret = "k", header = "X-Sig", encoding = "base64", timestamp_header = "X-Ts", timestamp_format = "unix-ms", signed = "{method}{url}{body}{timestamp}", public_url = "https://h.example/in/x""#,
    ))
    .unwrap();
    let signed = signer
        .sign(&Message {
            body: b"{}",
            timestamp: 1_700_000_000,
            id: "i",
            headers: &HeaderMap::new(),
        })
        .unwrap();
    assert_eq!(signed["x-ts"], "1700000000000");
    let mut req = request(&[], b"{}", 1_700_000_000);
    req.headers.extend(signed);
    assert_eq!(outcome(&generic, req), Ok(()));
    // A `public_url` that no template uses is a mistake, not a silent no-op.
    let err = config(
        r#"kind = "hmac", secret = "k", header = "X-Sig", public_url = "https://h.example/in/x""#,
    )
    .build()
    .unwrap_err()
    .to_string();
    assert!(err.contains("`signed` has no {url}"), "{err}");
}

#[test]
fn postmark_is_basic_authentication() {
    let v = build(r#"kind = "postmark", username = "postmark", password = ["new", "pm-password"]"#);
    let ok = request(
        &[("Authorization", b"Basic cG9zdG1hcms6cG0tcGFzc3dvcmQ=")],
        b"{}",
        0,
    );
    assert_eq!(outcome(&v, ok), Ok(()));
    let err = config_error(r#"kind = "postmark", password = "p""#);
    assert!(err.contains("missing field `username`"), "{err}");
    let err = config_error(r#"kind = "postmark", username = "u", secret = "p""#);
    assert!(err.contains("unknown field `secret`"), "{err}");
}
