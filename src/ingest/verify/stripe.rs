//! Stripe webhook signatures.
//!
//! Stripe sends `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`,
//! where each `v1` is HMAC-SHA256, keyed with the endpoint secret exactly as shown
//! (`whsec_...`, prefix included), over `{t}.{raw body}`. Several `v1` entries appear
//! while Stripe rolls a secret; any one matching passes. `v0` is a test-mode-only legacy
//! scheme and is ignored, as are unknown keys (Stripe's SDKs do the same).
//!
//! The same layout, a header of `key=value` pairs holding a timestamp and one or more
//! signatures of `{timestamp}<joiner>{body}`, is used by Calendly and Mux (Stripe's own
//! keys under another header name) and by Paddle (`ts=...;h1=...`, `{ts}:{body}`), so
//! the parser takes a [`Format`] and those presets reuse this verifier.

use std::time::Duration;

use serde::Deserialize;

use super::config::{
    BuildError, HmacAlgorithm, OneOrMany, check_tolerance_setting, resolve_secrets,
};
use super::mac::{check_tolerance, expected_macs, matches_any, parse_unix_secs, required_header};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

/// One sender's layout of the signature header. The messages are spelled out (rather
/// than formatted) because a rejection's problem text is static.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Format {
    pub header: &'static str,
    /// Between the `key=value` pairs.
    pub separator: char,
    pub timestamp_key: &'static str,
    pub signature_key: &'static str,
    /// Between the timestamp and the body in the signed text.
    pub joiner: &'static str,
    pub no_timestamp: &'static str,
    pub no_signature: &'static str,
    pub bad_timestamp: &'static str,
    pub two_timestamps: &'static str,
    /// The timestamp is in milliseconds (WorkOS, Sanity), not seconds.
    pub millis: bool,
    pub encoding: SignatureText,
    /// No `key=`: the first entry is the timestamp, the others signatures (Recurly's
    /// `<ms>,<hex>[,<hex>]`).
    pub positional: bool,
}

/// How the signatures of a `key=value` header are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SignatureText {
    Hex,
    /// URL-safe base64 without padding (Sanity).
    Base64Url,
}

impl SignatureText {
    pub(super) fn decode(self, text: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        match self {
            SignatureText::Hex => hex::decode(text).ok(),
            SignatureText::Base64Url => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .ok(),
        }
    }

    pub(super) fn encode(self, signature: &[u8]) -> String {
        use base64::Engine as _;
        match self {
            SignatureText::Hex => hex::encode(signature),
            SignatureText::Base64Url => {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
            }
        }
    }
}

/// `Stripe-Signature: t=...,v1=...`, signing `{t}.{body}`.
pub(super) const STRIPE: Format = stripe_like("Stripe-Signature");

/// Stripe's layout under another header name (Calendly, Mux).
pub(super) const fn stripe_like(header: &'static str) -> Format {
    Format {
        header,
        separator: ',',
        timestamp_key: "t",
        signature_key: "v1",
        joiner: ".",
        no_timestamp: "has no t= timestamp",
        no_signature: "has no v1= signature",
        bad_timestamp: "t= is not a whole number of seconds",
        two_timestamps: "has more than one t= timestamp",
        millis: false,
        encoding: SignatureText::Hex,
        positional: false,
    }
}

/// Stripe's layout with the time in milliseconds: WorkOS (`t=..., v1=...`, hex) and
/// Sanity (`t=...,v1=...`, unpadded base64url).
pub(super) const fn stripe_like_ms(header: &'static str, encoding: SignatureText) -> Format {
    Format {
        bad_timestamp: "t= is not a whole number of milliseconds",
        millis: true,
        encoding,
        ..stripe_like(header)
    }
}

/// Paddle Billing: `Paddle-Signature: ts=...;h1=...[;h1=...]`, signing `{ts}:{body}`.
pub(super) const PADDLE: Format = Format {
    header: "Paddle-Signature",
    separator: ';',
    timestamp_key: "ts",
    signature_key: "h1",
    joiner: ":",
    no_timestamp: "has no ts= timestamp",
    no_signature: "has no h1= signature",
    bad_timestamp: "ts= is not a whole number of seconds",
    two_timestamps: "has more than one ts= timestamp",
    millis: false,
    encoding: SignatureText::Hex,
    positional: false,
};

/// Recurly: `recurly-signature: <ms>,<hex>[,<hex>…]` (one signature per active key for
/// a day after a key is regenerated), signing `{ms}.{body}`.
pub(super) const RECURLY: Format = Format {
    no_timestamp: "has no timestamp before its signatures",
    no_signature: "has no signature after its timestamp",
    bad_timestamp: "does not start with a whole number of milliseconds",
    positional: true,
    ..stripe_like_ms("recurly-signature", SignatureText::Hex)
};

#[derive(Debug, Clone)]
pub struct Stripe {
    secrets: Vec<Secret>,
    tolerance: Duration,
    format: &'static Format,
}

/// The parts of a `Stripe-Signature` header this verifier uses.
#[derive(Debug)]
pub(super) struct Parsed<'h> {
    /// The timestamp exactly as sent: it is what Stripe signed.
    pub timestamp_text: &'h str,
    pub timestamp: i64,
    pub v1: Vec<&'h str>,
}

impl Stripe {
    pub(super) fn build(
        secret: &OneOrMany<SecretRef>,
        tolerance: Duration,
    ) -> Result<Self, BuildError> {
        Self::build_with(&STRIPE, secret, tolerance)
    }

    pub(super) fn build_with(
        format: &'static Format,
        secret: &OneOrMany<SecretRef>,
        tolerance: Duration,
    ) -> Result<Self, BuildError> {
        check_tolerance_setting(tolerance)?;
        let secrets = resolve_secrets("secret", secret)?
            .into_iter()
            .map(|(at, s)| {
                // Stripe secrets never contain whitespace; one here is a copy-paste slip
                // that would otherwise show up only as "no signature matched".
                if s.expose().iter().any(u8::is_ascii_whitespace) {
                    Err(BuildError::SecretWhitespace { at })
                } else {
                    Ok(s)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            secrets,
            tolerance,
            format,
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let format = self.format;
        let parsed = parse(format, required_header(req, format.header)?)?;
        let expected = expected_macs(
            HmacAlgorithm::Sha256,
            &self.secrets,
            &[
                parsed.timestamp_text.as_bytes(),
                format.joiner.as_bytes(),
                &req.body,
            ],
        );
        // An entry that does not decode cannot match; like Stripe's SDKs, skip it
        // rather than reject the header, since another entry may be valid.
        let matched = parsed
            .v1
            .iter()
            .filter_map(|sig| format.encoding.decode(sig))
            .any(|sig| matches_any(&expected, &sig));
        if !matched {
            return Err(Rejection::NoSignatureMatched);
        }
        check_tolerance(req.received_at_secs(), parsed.timestamp, self.tolerance)
    }
}

/// Splits a signature header laid out as `format` says. Never panics, whatever the text
/// (see the property test in `presets/tests.rs`).
pub(super) fn parse<'h>(format: &Format, header: &'h str) -> Result<Parsed<'h>, Rejection> {
    let name = format.header;
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for (i, element) in header.split(format.separator).enumerate() {
        let (key, value) = match (format.positional, i) {
            (true, 0) => (format.timestamp_key, element.trim()),
            (true, _) => (format.signature_key, element.trim()),
            (false, _) => match element.trim().split_once('=') {
                Some(pair) => pair,
                None => continue,
            },
        };
        if key == format.timestamp_key {
            if timestamp.is_some() {
                // Two timestamps would leave it open which one was signed.
                return Err(Rejection::malformed(name, format.two_timestamps));
            }
            let secs = parse_unix_secs(value)
                .map(|n| if format.millis { n.div_euclid(1000) } else { n })
                .ok_or_else(|| Rejection::malformed(name, format.bad_timestamp))?;
            timestamp = Some((value, secs));
        } else if key == format.signature_key {
            v1.push(value);
        }
    }
    let (timestamp_text, timestamp) =
        timestamp.ok_or_else(|| Rejection::malformed(name, format.no_timestamp))?;
    if v1.is_empty() {
        return Err(Rejection::malformed(name, format.no_signature));
    }
    Ok(Parsed {
        timestamp_text,
        timestamp,
        v1,
    })
}

/// Stripe's event id (`evt_...`), the `id` of the JSON body.
pub(super) fn event_id(req: &Unverified) -> Option<String> {
    #[derive(Deserialize)]
    struct Event {
        id: String,
    }
    serde_json::from_slice::<Event>(&req.body)
        .ok()
        .map(|e| e.id)
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{build, outcome, request};
    use super::super::{Rejection, Skew};

    // Stripe publishes no (secret, payload, header) triple with a fixed expected
    // signature: neither "Check the webhook signatures" (docs.stripe.com/webhooks) nor
    // the official SDK tests (stripe-node `test/Webhook.spec.ts`, stripe-python
    // `tests/test_webhook.py`, stripe-go `webhook/client_test.go`) do; the SDKs build
    // the header with their own signer. So these tests use the SDK tests' constants
    // (secret `whsec_test_secret`, event `evt_test_webhook`) and a signature computed
    // independently of this crate, with Python's `hmac` module, exactly as the Stripe
    // docs describe: hex(HMAC-SHA256(secret, "{t}.{body}")).
    const SECRET: &str = "whsec_test_secret";
    const BODY: &str = r#"{"id":"evt_test_webhook","object":"event"}"#;
    const T: i64 = 1_700_000_000;
    /// `hmac.new(b"whsec_test_secret", b"1700000000." + BODY, sha256).hexdigest()`
    const V1: &str = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
    /// The same with the secret `whsec_rolled_secret`.
    const V1_ROLLED: &str = "73d94cc4a261effeb4192890b5339a177d16f10336f078f81bf5d2bade193da2";

    fn stripe(secret: &str) -> super::super::Verifier {
        build(&format!(r#"kind = "stripe", secret = {secret}"#))
    }

    fn check(
        verifier: &super::super::Verifier,
        header: Option<&[u8]>,
        body: &str,
        now: i64,
    ) -> Result<(), Rejection> {
        let headers: Vec<(&str, &[u8])> = header
            .map(|h| vec![("Stripe-Signature", h)])
            .unwrap_or_default();
        outcome(verifier, request(&headers, body.as_bytes(), now))
    }

    fn header(t: i64, sigs: &[&str]) -> String {
        let mut h = format!("t={t}");
        for s in sigs {
            h.push_str(",v1=");
            h.push_str(s);
        }
        h
    }

    #[test]
    fn valid_signature_passes() {
        let v = stripe(&format!("{SECRET:?}"));
        let h = header(T, &[V1]);
        assert_eq!(check(&v, Some(h.as_bytes()), BODY, T + 10), Ok(()));
        // With the test-mode v0 entry Stripe also sends, and spaces some proxies add.
        let with_v0 = format!(
            "t={T}, v1={V1}, v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
        );
        assert_eq!(check(&v, Some(with_v0.as_bytes()), BODY, T), Ok(()));
    }

    #[test]
    fn tampered_body_wrong_secret_and_bad_entries_fail() {
        let h = header(T, &[V1]);
        let v = stripe(&format!("{SECRET:?}"));
        let tampered = BODY.replace("evt_test_webhook", "evt_test_webhooK");
        assert_eq!(
            check(&v, Some(h.as_bytes()), &tampered, T),
            Err(Rejection::NoSignatureMatched)
        );
        let wrong = stripe(r#""whsec_wrong_secret""#);
        assert_eq!(
            check(&wrong, Some(h.as_bytes()), BODY, T),
            Err(Rejection::NoSignatureMatched)
        );
        // A signature for another timestamp does not match (t is signed).
        let moved = header(T + 1, &[V1]);
        assert_eq!(
            check(&v, Some(moved.as_bytes()), BODY, T),
            Err(Rejection::NoSignatureMatched)
        );
        let garbage = header(T, &["zz", "", &V1[..10]]);
        assert_eq!(
            check(&v, Some(garbage.as_bytes()), BODY, T),
            Err(Rejection::NoSignatureMatched)
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail_after_the_signature_passes() {
        let v = stripe(&format!("{SECRET:?}"));
        let h = header(T, &[V1]);
        assert_eq!(check(&v, Some(h.as_bytes()), BODY, T + 300), Ok(()));
        assert_eq!(
            check(&v, Some(h.as_bytes()), BODY, T + 301),
            Err(Rejection::TimestampOutsideTolerance {
                skew: Skew::Past,
                off_by_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            check(&v, Some(h.as_bytes()), BODY, T - 301),
            Err(Rejection::TimestampOutsideTolerance {
                skew: Skew::Future,
                ..
            })
        ));
        let tight = build(&format!(
            r#"kind = "stripe", secret = {SECRET:?}, tolerance = "10s""#
        ));
        assert!(check(&tight, Some(h.as_bytes()), BODY, T + 11).is_err());
    }

    #[test]
    fn rotation_any_secret_and_any_v1_entry() {
        // Two configured secrets, the second one matches.
        let v = stripe(&format!(r#"["whsec_rolled_secret", {SECRET:?}]"#));
        let h = header(T, &[V1]);
        assert_eq!(check(&v, Some(h.as_bytes()), BODY, T), Ok(()));
        // Stripe rolling its secret: two v1 entries, ours is the second.
        let only_old = stripe(&format!("{SECRET:?}"));
        let both = header(T, &[V1_ROLLED, V1]);
        assert_eq!(check(&only_old, Some(both.as_bytes()), BODY, T), Ok(()));
        let only_new = stripe(r#""whsec_rolled_secret""#);
        assert_eq!(check(&only_new, Some(both.as_bytes()), BODY, T), Ok(()));
    }

    #[test]
    fn malformed_headers_are_named_and_never_panic() {
        let v = stripe(&format!("{SECRET:?}"));
        let cases: [(&[u8], &str); 10] = [
            (b"", "has no t= timestamp"),
            (b"bad_header", "has no t= timestamp"),
            (b"v1=abc", "has no t= timestamp"),
            (b"t=1700000000", "has no v1= signature"),
            (b"t=1700000000,v0=abcd", "has no v1= signature"),
            (b"t=,v1=ab", "t= is not a whole number of seconds"),
            (b"t=-5,v1=ab", "t= is not a whole number of seconds"),
            (
                b"t=99999999999999999999999,v1=ab",
                "t= is not a whole number of seconds",
            ),
            (b"t=1,t=2,v1=ab", "has more than one t= timestamp"),
            (
                b"t=1\xff,v1=ab",
                "contains bytes that are not visible ASCII",
            ),
        ];
        for (raw, problem) in cases {
            assert_eq!(
                check(&v, Some(raw), BODY, T),
                Err(Rejection::MalformedHeader {
                    name: "Stripe-Signature".into(),
                    problem
                }),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(
            check(&v, None, BODY, T),
            Err(Rejection::MissingHeader {
                name: "Stripe-Signature".into()
            })
        );
        let huge = format!("t={T},{}", "v1=00,".repeat(20_000));
        assert_eq!(
            check(&v, Some(huge.as_bytes()), BODY, T),
            Err(Rejection::NoSignatureMatched)
        );
    }

    #[test]
    fn dedup_key_is_the_event_id() {
        let v = stripe(&format!("{SECRET:?}"));
        assert_eq!(
            v.provider_dedup_key(&request(&[], BODY.as_bytes(), T)),
            Some("evt_test_webhook".into())
        );
        for body in ["", "not json", r#"{"id":5}"#, r#"{"id":""}"#, r#"[1]"#] {
            assert_eq!(
                v.provider_dedup_key(&request(&[], body.as_bytes(), T)),
                None,
                "{body}"
            );
        }
    }
}
