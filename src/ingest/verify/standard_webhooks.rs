//! Standard Webhooks (standardwebhooks.com), also sent by Svix and the providers built
//! on it.
//!
//! Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
//! space-separated list of `<version>,<base64>` entries, each over
//! `{id}.{timestamp}.{raw body}`. A `v1` entry is HMAC-SHA256 keyed with the
//! base64-decoded secret (`whsec_<base64>`); a `v1a` entry is an Ed25519 signature,
//! checked with the sender's public key (`whpk_<base64>`). A source configures a
//! `secret`, a `public_key` or both, and entries of a version it has no key for are
//! skipped. Svix's `svix-id`, `svix-timestamp` and `svix-signature` names are accepted
//! as a set when no `webhook-*` header is present.

use std::time::Duration;

use base64::Engine as _;

use super::asymmetric::{PublicKeys, Signature};
use super::config::{BuildError, OneOrMany, check_tolerance_setting, resolve_secrets};
use super::keys::{self, Format};
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
    /// Decoded HMAC key bytes, not the `whsec_...` text; empty when only public keys
    /// are configured.
    keys: Vec<Secret>,
    /// Ed25519 public keys for `v1a` entries; none when only secrets are configured.
    public_keys: PublicKeys,
    tolerance: Duration,
}

impl StandardWebhooks {
    /// `secret` may be an empty list when `public_key` is given, and `public_key`
    /// absent when `secret` is not empty.
    pub(super) fn build(
        secret: &OneOrMany<SecretRef>,
        public_key: Option<&OneOrMany<SecretRef>>,
        tolerance: Duration,
    ) -> Result<Self, BuildError> {
        check_tolerance_setting(tolerance)?;
        let public_keys = match public_key {
            Some(refs) => keys::ed25519_public("public_key", refs, Format::StandardWebhooks)?,
            None => Vec::new(),
        };
        let public_keys = PublicKeys::Ed25519(public_keys);
        if secret.as_slice().is_empty() && public_key.is_none() {
            return Err(BuildError::NoKeys);
        }
        let keys = if secret.as_slice().is_empty() {
            Vec::new()
        } else {
            hmac_keys(secret)?
        };
        Ok(Self {
            keys,
            public_keys,
            tolerance,
        })
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

        let signed: [&[u8]; 5] = [
            id.as_bytes(),
            b".",
            timestamp_text.as_bytes(),
            b".",
            &req.body,
        ];
        let expected: Vec<Vec<u8>> = self
            .keys
            .iter()
            .filter_map(|k| hmac_sha256(k.expose(), &signed))
            .collect();
        let mut saw_usable = false;
        let mut matched = false;
        for (version, encoded) in entries(signatures) {
            let hmac = version == "v1" && !self.keys.is_empty();
            let ed25519 = version == "v1a" && !self.public_keys.is_empty();
            if !(hmac || ed25519) {
                continue;
            }
            saw_usable = true;
            // An entry that is not base64 cannot match; another entry may still.
            let Ok(sig) = BASE64_LENIENT.decode(encoded) else {
                continue;
            };
            if hmac {
                matched |= matches_any(&expected, &sig);
            } else if let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) {
                matched |= self
                    .public_keys
                    .any_verifies(&Signature::Ed25519(sig), &signed);
            }
        }
        if !saw_usable {
            let problem = match (self.keys.is_empty(), self.public_keys.is_empty()) {
                (false, true) => "has no v1 signature (only v1, HMAC-SHA256, is supported)",
                (true, false) => {
                    "has no v1a signature (this source has only a public key, for v1a Ed25519)"
                }
                _ => "has no v1 (HMAC-SHA256) or v1a (Ed25519) signature",
            };
            return Err(Rejection::malformed(names.signature, problem));
        }
        if !matched {
            return Err(Rejection::NoSignatureMatched);
        }
        check_tolerance(req.received_at_secs(), timestamp, self.tolerance)
    }
}

/// The HMAC keys of `secret`: each `whsec_<base64>` (the prefix may be left out),
/// decoded.
pub(super) fn hmac_keys(secret: &OneOrMany<SecretRef>) -> Result<Vec<Secret>, BuildError> {
    resolve_secrets("secret", secret)?
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
        .collect()
}

/// The `<version>,<signature>` entries of a `webhook-signature` value; anything else
/// in the list is skipped. Never panics (see the property test in `presets/tests.rs`).
pub(super) fn entries(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
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
                public_key: None,
                signing_key: None,
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

    // Standard Webhooks' asymmetric (`v1a`) reference vector: `libraries/go/
    // webhook_asymmetric_test.go`, `TestAsymmetricWebhookSign` (the seed is ASCII
    // "TESTSIGNINGKEYDONOTUSETHISFORANY"). The public key is the seed's, derived with
    // Python's `cryptography`, which also reproduced the signature.
    const V1A_SEED: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
    const V1A_PUBLIC: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";
    const V1A_SIGNATURE: &str = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";

    fn v1a_check(v: &Verifier, signature: &str, body: &str, now: i64) -> Result<(), Rejection> {
        let e = GO_EXAMPLE;
        let ts = e.timestamp.to_string();
        check(v, &headers("webhook", e.id, &ts, signature), body, now)
    }

    #[test]
    fn go_v1a_vector_passes_with_the_derived_public_key() {
        let e = GO_EXAMPLE;
        let v = build(&format!(
            r#"kind = "standard-webhooks", public_key = {V1A_PUBLIC:?}"#
        ));
        assert_eq!(v1a_check(&v, V1A_SIGNATURE, e.payload, e.timestamp), Ok(()));
        // Without the prefix, and under svix-* names.
        let bare = build(&format!(
            r#"kind = "standard-webhooks", public_key = {:?}"#,
            &V1A_PUBLIC["whpk_".len()..]
        ));
        let ts = e.timestamp.to_string();
        assert_eq!(
            check(
                &bare,
                &headers("svix", e.id, &ts, V1A_SIGNATURE),
                e.payload,
                e.timestamp
            ),
            Ok(())
        );
        // Tampered body, moved id, stale, and the Go test's negative entries.
        assert_eq!(
            v1a_check(&v, V1A_SIGNATURE, r#"{"test": 2432232315}"#, e.timestamp),
            Err(Rejection::NoSignatureMatched)
        );
        assert_eq!(
            check(
                &v,
                &headers("webhook", "msg_other", &ts, V1A_SIGNATURE),
                e.payload,
                e.timestamp
            ),
            Err(Rejection::NoSignatureMatched)
        );
        assert!(matches!(
            v1a_check(&v, V1A_SIGNATURE, e.payload, e.timestamp + 301),
            Err(Rejection::TimestampOutsideTolerance {
                skew: Skew::Past,
                ..
            })
        ));
        for bad in ["v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v1a,"] {
            assert_eq!(
                v1a_check(&v, bad, e.payload, e.timestamp),
                Err(Rejection::NoSignatureMatched),
                "{bad}"
            );
        }
        // The Go test's "valid multi sig": v1 and v2 entries around the good one.
        let multi = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {V1A_SIGNATURE} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        );
        assert_eq!(v1a_check(&v, &multi, e.payload, e.timestamp), Ok(()));
        // A public key only: a v1 (HMAC) signature is not usable.
        assert_eq!(
            v1a_check(&v, e.signature, e.payload, e.timestamp),
            Err(Rejection::MalformedHeader {
                name: "webhook-signature".into(),
                problem: "has no v1a signature (this source has only a public key, for v1a Ed25519)"
            })
        );
    }

    #[test]
    fn secret_and_public_key_together_accept_either_entry() {
        let e = GO_EXAMPLE;
        let v = build(&format!(
            r#"kind = "standard-webhooks", secret = {:?}, public_key = [{:?}, {V1A_PUBLIC:?}]"#,
            e.secret, "whpk_0EqyMnQrtKs6E2i9RhXk5tAiSrcaAWuvhSCjMsl3hzc="
        ));
        assert_eq!(v1a_check(&v, V1A_SIGNATURE, e.payload, e.timestamp), Ok(()));
        assert_eq!(v1a_check(&v, e.signature, e.payload, e.timestamp), Ok(()));
        assert_eq!(
            v1a_check(&v, "v2,abc", e.payload, e.timestamp),
            Err(Rejection::MalformedHeader {
                name: "webhook-signature".into(),
                problem: "has no v1 (HMAC-SHA256) or v1a (Ed25519) signature"
            })
        );
        // The aliases take a public key too.
        let svix = build(&format!(r#"kind = "svix", public_key = {V1A_PUBLIC:?}"#));
        assert_eq!(
            v1a_check(&svix, V1A_SIGNATURE, e.payload, e.timestamp),
            Ok(())
        );
    }

    #[test]
    fn sign_as_reproduces_the_v1a_vector() {
        use super::super::sign_as::{Message, Signer};
        let e = GO_EXAMPLE;
        let config = |extra: &str| {
            #[derive(serde::Deserialize)]
            struct Source {
                verify: VerifyConfig,
            }
            toml::from_str::<Source>(&format!(
                "verify = {{ kind = \"standard-webhooks\", public_key = {V1A_PUBLIC:?}{extra} }}"
            ))
            .unwrap()
            .verify
        };
        let sign = |cfg: &VerifyConfig| {
            Signer::new(cfg).map(|signer| {
                signer
                    .sign(&Message {
                        body: e.payload.as_bytes(),
                        timestamp: e.timestamp as u64,
                        id: e.id,
                        headers: &http::HeaderMap::new(),
                    })
                    .unwrap()
            })
        };
        let signed = sign(&config(&format!(", signing_key = {V1A_SEED:?}"))).unwrap();
        assert_eq!(signed["webhook-signature"], V1A_SIGNATURE);
        // With a secret too, both entries are sent (the Go vector's v1 and v1a).
        let both = sign(&config(&format!(
            ", signing_key = {V1A_SEED:?}, secret = {:?}",
            e.secret
        )))
        .unwrap();
        assert_eq!(
            both["webhook-signature"],
            format!("{} {V1A_SIGNATURE}", e.signature).as_str()
        );
        // No private key, or one of another key pair: refused before sending.
        let err = sign(&config("")).unwrap_err();
        assert!(matches!(err, BuildError::NoSigningKey { .. }), "{err}");
        assert!(err.to_string().contains("signing_key"), "{err}");
        let other = ", signing_key = \"whsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"";
        let err = sign(&config(other)).unwrap_err();
        assert!(matches!(err, BuildError::SigningKeyMismatch), "{err}");
        let err = sign(&config(", signing_key = \"whsk_short\"")).unwrap_err();
        assert!(err.to_string().starts_with("`signing_key`: not"), "{err}");
    }

    #[test]
    fn a_source_needs_a_secret_or_a_public_key_and_bad_keys_are_named() {
        let build_err = |inline: &str| {
            #[derive(serde::Deserialize)]
            struct Source {
                verify: VerifyConfig,
            }
            toml::from_str::<Source>(&format!("verify = {{ {inline} }}"))
                .unwrap()
                .verify
                .build()
                .unwrap_err()
        };
        let err = build_err(r#"kind = "standard-webhooks""#);
        assert!(matches!(err, BuildError::NoKeys), "{err}");
        assert!(err.to_string().contains("`public_key`"), "{err}");
        let err = build_err(r#"kind = "openai", secret = []"#);
        assert!(matches!(err, BuildError::NoKeys), "{err}");
        let err = build_err(r#"kind = "standard-webhooks", public_key = "whpk_hunter2""#);
        let text = err.to_string();
        assert!(
            text.starts_with("`public_key`: not an Ed25519 public key"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        let err = build_err(
            r#"kind = "standard-webhooks", public_key = ["whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=", "env:FOREBAY_SW_TEST_SURELY_UNSET"]"#,
        );
        assert!(
            err.to_string().starts_with("`public_key` item 2: "),
            "{err}"
        );
    }
}
