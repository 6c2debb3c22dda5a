//! Standard Webhooks (standardwebhooks.com), also sent by Svix and the providers built
//! on it.
//!
//! Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
//! space-separated list of `<version>,<base64>` entries. A `v1` entry is HMAC-SHA256 of
//! `{id}.{timestamp}.{raw body}`, keyed with the base64-decoded secret (`whsec_<base64>`).
//! Other versions (`v1a`, Ed25519) are skipped here. Svix's `svix-id`,
//! `svix-timestamp` and `svix-signature` names are accepted as a set when no
//! `webhook-*` header is present.

use std::time::Duration;

use base64::Engine as _;

use super::config::{BuildError, OneOrMany, check_tolerance_setting, resolve_secrets};
use super::mac::{
    BASE64_LENIENT, check_tolerance, hmac_sha256, matches_any, parse_unix_secs, required_header,
};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

const SECRET_PREFIX: &str = "whsec_";

/// The three header names of one family.
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const STANDARD: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    /// Decoded key bytes, not the `whsec_...` text.
    keys: Vec<Secret>,
    tolerance: Duration,
}

impl StandardWebhooks {
    pub(super) fn build(
        secret: &OneOrMany<SecretRef>,
        tolerance: Duration,
    ) -> Result<Self, BuildError> {
        check_tolerance_setting(tolerance)?;
        let keys = resolve_secrets("secret", secret)?
            .into_iter()
            .map(|(at, s)| {
                let text = s.expose();
                let encoded = text.strip_prefix(SECRET_PREFIX.as_bytes()).unwrap_or(text);
                let key = BASE64_LENIENT
                    .decode(encoded)
                    .map_err(|source| BuildError::SecretNotBase64 { at, source })?;
                if key.is_empty() {
                    return Err(BuildError::SecretDecodesEmpty { at });
                }
                Ok(Secret::from_bytes(key))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys, tolerance })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let names = names_for(req);
        let id = required_header(req, names.id)?;
        if id.is_empty() {
            return Err(Rejection::malformed(names.id, "is empty"));
        }
        // The spec forbids `.` in the id: with one, `{id}.{timestamp}.{body}` could be
        // split differently from how the sender meant it.
        if id.contains('.') {
            return Err(Rejection::malformed(names.id, "contains `.`"));
        }
        let timestamp_text = required_header(req, names.timestamp)?;
        let timestamp = parse_unix_secs(timestamp_text).ok_or_else(|| {
            Rejection::malformed(names.timestamp, "is not a whole number of seconds")
        })?;
        let signatures = required_header(req, names.signature)?;

        let expected: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter_map(|k| {
                hmac_sha256(
                    k.expose(),
                    &[
                        id.as_bytes(),
                        b".",
                        timestamp_text.as_bytes(),
                        b".",
                        &req.body,
                    ],
                )
            })
            .collect();
        let mut saw_v1 = false;
        let mut matched = false;
        for entry in signatures.split_ascii_whitespace() {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            saw_v1 = true;
            // An entry that is not base64 cannot match; another entry may still.
            if let Ok(sig) = BASE64_LENIENT.decode(encoded) {
                matched |= matches_any(&expected, &sig);
            }
        }
        if !saw_v1 {
            return Err(Rejection::malformed(
                names.signature,
                "has no v1 signature (only v1, HMAC-SHA256, is supported)",
            ));
        }
        if !matched {
            return Err(Rejection::NoSignatureMatched);
        }
        check_tolerance(req.received_at_secs(), timestamp, self.tolerance)
    }
}

/// The `webhook-*` names unless only `svix-*` headers are present. Choosing one family
/// for all three keeps error messages about the headers the sender actually used.
fn names_for(req: &Unverified) -> &'static Names {
    let has = |n: &Names| {
        [n.id, n.timestamp, n.signature]
            .iter()
            .any(|h| req.headers.contains_key(*h))
    };
    if !has(&STANDARD) && has(&SVIX) {
        &SVIX
    } else {
        &STANDARD
    }
}

/// The message id, the same on every retry of one message.
pub(super) fn message_id(req: &Unverified) -> Option<String> {
    [STANDARD.id, SVIX.id]
        .iter()
        .filter_map(|name| req.header(name))
        .map(str::trim)
        .find(|id| !id.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{build, outcome, request};
    use super::super::{BuildError, OneOrMany, Rejection, Skew, Verifier, VerifyConfig};
    use crate::config::secret::SecretRef;

    /// A documented example: secret, message id, timestamp, payload, expected header.
    struct Example {
        secret: &'static str,
        id: &'static str,
        timestamp: i64,
        payload: &'static str,
        signature: &'static str,
    }

    // From the Standard Webhooks reference libraries in the specification repository
    // (github.com/standard-webhooks/standard-webhooks): `libraries/go/webhook_test.go`,
    // `TestWebhookSign`, and `libraries/rust/src/lib.rs`, `test_sign`. Each states the
    // exact `webhook-signature` value the reference signer must produce.
    const GO_EXAMPLE: Example = Example {
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: 1_614_265_330,
        payload: r#"{"test": 2432232314}"#,
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    };
    const RUST_EXAMPLE: Example = Example {
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        timestamp: 1_649_367_553,
        payload: r#"{"email":"test@example.com","username":"test_user"}"#,
        signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    };

    fn verifier(secret: &str) -> Verifier {
        build(&format!(r#"kind = "standard-webhooks", secret = {secret}"#))
    }

    fn headers<'a>(
        family: &str,
        id: &'a str,
        timestamp: &'a str,
        signature: &'a str,
    ) -> Vec<(String, &'a [u8])> {
        vec![
            (format!("{family}-id"), id.as_bytes()),
            (format!("{family}-timestamp"), timestamp.as_bytes()),
            (format!("{family}-signature"), signature.as_bytes()),
        ]
    }

    fn check(
        v: &Verifier,
        headers: &[(String, &[u8])],
        body: &str,
        now: i64,
    ) -> Result<(), Rejection> {
        let borrowed: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        outcome(v, request(&borrowed, body.as_bytes(), now))
    }

    fn check_example(
        e: &Example,
        v: &Verifier,
        family: &str,
        body: &str,
        now: i64,
    ) -> Result<(), Rejection> {
        let ts = e.timestamp.to_string();
        check(v, &headers(family, e.id, &ts, e.signature), body, now)
    }

    #[test]
    fn documented_examples_pass_with_both_header_families() {
        for e in [GO_EXAMPLE, RUST_EXAMPLE] {
            let v = verifier(&format!("{:?}", e.secret));
            assert_eq!(
                check_example(&e, &v, "webhook", e.payload, e.timestamp),
                Ok(())
            );
            assert_eq!(
                check_example(&e, &v, "svix", e.payload, e.timestamp + 60),
                Ok(())
            );
            // The secret without its `whsec_` prefix works too.
            let bare = verifier(&format!("{:?}", &e.secret["whsec_".len()..]));
            assert_eq!(
                check_example(&e, &bare, "webhook", e.payload, e.timestamp),
                Ok(())
            );
        }
    }

    #[test]
    fn tampered_body_wrong_secret_and_moved_metadata_fail() {
        let e = GO_EXAMPLE;
        let v = verifier(&format!("{:?}", e.secret));
        assert_eq!(
            check_example(&e, &v, "webhook", r#"{"test": 2432232315}"#, e.timestamp),
            Err(Rejection::NoSignatureMatched)
        );
        let wrong = verifier(&format!("{:?}", RUST_EXAMPLE.secret));
        assert_eq!(
            check_example(&e, &wrong, "webhook", e.payload, e.timestamp),
            Err(Rejection::NoSignatureMatched)
        );
        // The id and the timestamp are signed too.
        let ts = e.timestamp.to_string();
        let other_id = headers("webhook", "msg_other", &ts, e.signature);
        assert_eq!(
            check(&v, &other_id, e.payload, e.timestamp),
            Err(Rejection::NoSignatureMatched)
        );
        let ts_plus = (e.timestamp + 1).to_string();
        let other_ts = headers("webhook", e.id, &ts_plus, e.signature);
        assert_eq!(
            check(&v, &other_ts, e.payload, e.timestamp),
            Err(Rejection::NoSignatureMatched)
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let e = RUST_EXAMPLE;
        let v = verifier(&format!("{:?}", e.secret));
        assert_eq!(
            check_example(&e, &v, "webhook", e.payload, e.timestamp + 300),
            Ok(())
        );
        assert_eq!(
            check_example(&e, &v, "webhook", e.payload, e.timestamp + 301),
            Err(Rejection::TimestampOutsideTolerance {
                skew: Skew::Past,
                off_by_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            check_example(&e, &v, "webhook", e.payload, e.timestamp - 301),
            Err(Rejection::TimestampOutsideTolerance {
                skew: Skew::Future,
                ..
            })
        ));
    }

    #[test]
    fn rotation_any_secret_and_any_v1_entry() {
        let e = GO_EXAMPLE;
        let v = verifier(&format!("[{:?}, {:?}]", RUST_EXAMPLE.secret, e.secret));
        assert_eq!(
            check_example(&e, &v, "webhook", e.payload, e.timestamp),
            Ok(())
        );
        // Several entries, as during rotation on the sender side: unknown versions,
        // undecodable and wrong v1 entries are skipped, the valid one passes.
        let list = format!(
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== v2,abc v1,!!! v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=  {}",
            e.signature
        );
        let ts = e.timestamp.to_string();
        let single = verifier(&format!("{:?}", e.secret));
        assert_eq!(
            check(
                &single,
                &headers("webhook", e.id, &ts, &list),
                e.payload,
                e.timestamp
            ),
            Ok(())
        );
    }

    #[test]
    fn malformed_headers_are_named_and_never_panic() {
        let e = GO_EXAMPLE;
        let v = verifier(&format!("{:?}", e.secret));
        let ts = e.timestamp.to_string();
        let cases: [(&str, &str, &[u8], &str); 7] = [
            ("webhook-id", "webhook-id", b"", "is empty"),
            ("webhook-id", "webhook-id", b"msg.1", "contains `.`"),
            (
                "webhook-timestamp",
                "webhook-timestamp",
                b"1614265330.5",
                "is not a whole number of seconds",
            ),
            (
                "webhook-timestamp",
                "webhook-timestamp",
                b"",
                "is not a whole number of seconds",
            ),
            (
                "webhook-signature",
                "webhook-signature",
                b"",
                "has no v1 signature (only v1, HMAC-SHA256, is supported)",
            ),
            (
                "webhook-signature",
                "webhook-signature",
                b"v1a,abc v2,def nocomma",
                "has no v1 signature (only v1, HMAC-SHA256, is supported)",
            ),
            (
                "webhook-signature",
                "webhook-signature",
                b"v1,\xff\xfe",
                "contains bytes that are not visible ASCII",
            ),
        ];
        for (replace, name, raw, problem) in cases {
            let mut hs = headers("webhook", e.id, &ts, e.signature);
            for h in &mut hs {
                if h.0 == replace {
                    h.1 = raw;
                }
            }
            assert_eq!(
                check(&v, &hs, e.payload, e.timestamp),
                Err(Rejection::MalformedHeader {
                    name: name.into(),
                    problem
                }),
                "{replace}: {:?}",
                String::from_utf8_lossy(raw)
            );
        }
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let hs: Vec<_> = headers("webhook", e.id, &ts, e.signature)
                .into_iter()
                .filter(|(n, _)| n != missing)
                .collect();
            assert_eq!(
                check(&v, &hs, e.payload, e.timestamp),
                Err(Rejection::MissingHeader {
                    name: missing.into()
                })
            );
        }
        // Only svix headers, one missing: the error names the svix header.
        let hs: Vec<_> = headers("svix", e.id, &ts, e.signature)
            .into_iter()
            .filter(|(n, _)| n != "svix-signature")
            .collect();
        assert_eq!(
            check(&v, &hs, e.payload, e.timestamp),
            Err(Rejection::MissingHeader {
                name: "svix-signature".into()
            })
        );
        assert_eq!(
            check(&v, &[], e.payload, e.timestamp),
            Err(Rejection::MissingHeader {
                name: "webhook-id".into()
            })
        );
    }

    #[test]
    fn bad_secrets_are_build_errors() {
        let build_err = |secret: &str| {
            VerifyConfig::StandardWebhooks {
                secret: OneOrMany::One(SecretRef::new(secret)),
                tolerance: std::time::Duration::from_secs(300),
            }
            .build()
            .unwrap_err()
        };
        let err = build_err("whsec_not*base64");
        assert!(matches!(err, BuildError::SecretNotBase64 { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("`secret`: not valid base64"),
            "{err}"
        );
        assert!(!err.to_string().contains("not*base64"), "{err}");
        assert!(matches!(
            build_err("whsec_"),
            BuildError::SecretDecodesEmpty { .. }
        ));
    }

    #[test]
    fn dedup_key_is_the_message_id() {
        let v = verifier(&format!("{:?}", GO_EXAMPLE.secret));
        let req = request(&[("webhook-id", b"msg_1")], b"{}", 0);
        assert_eq!(v.provider_dedup_key(&req), Some("msg_1".into()));
        let req = request(&[("svix-id", b"msg_2")], b"{}", 0);
        assert_eq!(v.provider_dedup_key(&req), Some("msg_2".into()));
        assert_eq!(v.provider_dedup_key(&request(&[], b"{}", 0)), None);
    }
}
