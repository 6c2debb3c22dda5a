//! Mailgun: the signature travels in the body, not a header. JSON webhooks carry
//! `{"signature": {"timestamp", "token", "signature"}, "event-data": …}`; form posts
//! (routes, legacy webhooks) the fields `timestamp`, `token` and `signature`. The
//! signature is hex HMAC-SHA256 of `{timestamp}{token}` with the webhook signing key.
//!
//! For a subaccount's domain Mailgun adds `parent-signature`, the same HMAC under the
//! primary account's key; either passes, so one key serves every subaccount.
//!
//! Only the timestamp and token are signed, not the event: the timestamp tolerance and
//! deduplication on the token (Mailgun's docs say to refuse a token seen before) are
//! what stop a captured signature from being reused.

use std::time::Duration;

use super::config::{BuildError, HmacAlgorithm, OneOrMany, check_tolerance_setting, resolve_all};
use super::mac::{check_tolerance, expected_macs, hmac_sha256, matches_any, parse_unix_secs};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

#[derive(Debug, Clone)]
pub struct Mailgun {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

/// The three signature fields, as text.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fields {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
    /// Present for subaccounts' domains (Mailgun, "Securing webhooks").
    pub parent_signature: Option<String>,
}

impl Mailgun {
    pub(super) fn build(
        secret: &OneOrMany<SecretRef>,
        tolerance: Duration,
    ) -> Result<Self, BuildError> {
        check_tolerance_setting(tolerance)?;
        Ok(Self {
            secrets: resolve_all("secret", secret)?,
            tolerance,
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let fields = fields(&req.body).ok_or_else(|| {
            Rejection::body_field(
                "signature",
                "is missing: Mailgun sends `signature.timestamp`, `.token` and `.signature` in JSON, or form fields `timestamp`, `token` and `signature`",
            )
        })?;
        let signed_at = parse_unix_secs(&fields.timestamp).ok_or_else(|| {
            Rejection::body_field("signature.timestamp", "is not a whole number of seconds")
        })?;
        let signature = hex::decode(&fields.signature)
            .map_err(|_| Rejection::body_field("signature.signature", "is not hex"))?;
        // A parent signature that is not hex is no match, not a malformed request.
        let parent = fields
            .parent_signature
            .as_deref()
            .and_then(|sig| hex::decode(sig).ok());
        let expected = expected_macs(
            HmacAlgorithm::Sha256,
            &self.secrets,
            &[fields.timestamp.as_bytes(), fields.token.as_bytes()],
        );
        let parent_matches = parent.is_some_and(|sig| matches_any(&expected, &sig));
        if !(matches_any(&expected, &signature) | parent_matches) {
            return Err(Rejection::NoSignatureMatched);
        }
        check_tolerance(req.received_at_secs(), signed_at, self.tolerance)
    }
}

/// The signature fields of a JSON or form-encoded body (strings or, in JSON, numbers).
pub(super) fn fields(body: &[u8]) -> Option<Fields> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let signature = value.get("signature")?;
        let text = |name: &str| match signature.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        return Some(Fields {
            timestamp: text("timestamp")?,
            token: text("token")?,
            signature: text("signature")?,
            parent_signature: text("parent-signature"),
        });
    }
    let field = |name: &str| {
        form_urlencoded::parse(body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    Some(Fields {
        timestamp: field("timestamp")?,
        token: field("token")?,
        signature: field("signature")?,
        parent_signature: field("parent-signature"),
    })
}

/// `body` with a signature for `timestamp` and `token` put in, as Mailgun would send
/// it: into a JSON object's `signature`, or appended as form fields (in place of any
/// signature fields the form already has: [`fields`] reads the first of each). `None`
/// when the body is JSON but not an object.
pub(super) fn sign_body(key: &[u8], timestamp: u64, token: &str, body: &[u8]) -> Option<Vec<u8>> {
    let timestamp = timestamp.to_string();
    let signature = hex::encode(hmac_sha256(key, &[timestamp.as_bytes(), token.as_bytes()])?);
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) {
        value.as_object_mut()?.insert(
            "signature".to_owned(),
            serde_json::json!({ "timestamp": timestamp, "token": token, "signature": signature }),
        );
        return serde_json::to_vec(&value).ok();
    }
    let mut out = Vec::with_capacity(body.len() + 128);
    for pair in body.split(|b| *b == b'&') {
        let signature_field = form_urlencoded::parse(pair).next().is_some_and(|(key, _)| {
            ["timestamp", "token", "signature", "parent-signature"].contains(&key.as_ref())
        });
        if !pair.is_empty() && !signature_field {
            out.extend_from_slice(pair);
            out.push(b'&');
        }
    }
    let fields = form_urlencoded::Serializer::new(String::new())
        .append_pair("timestamp", &timestamp)
        .append_pair("token", token)
        .append_pair("signature", &signature)
        .finish();
    out.extend_from_slice(fields.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::request;
    use super::*;

    /// Found by `fuzz/fuzz_targets/verify_headers.rs`: a form body that already carried
    /// signature fields (a captured Mailgun post sent again) was signed by appending a
    /// second set, and the verifier, which reads the first, refused it.
    #[test]
    fn signing_a_form_replaces_its_signature_fields() {
        let mailgun = Mailgun {
            secrets: vec![Secret::from_bytes(b"key".to_vec())],
            tolerance: Duration::from_secs(300),
        };
        let old = b"timestamp=1&token=old&signature=00&parent-signature=11&event=opened&";
        let signed = sign_body(b"key", 1_700_000_000, "new", old).unwrap();
        let text = String::from_utf8(signed.clone()).unwrap();
        assert!(text.starts_with("event=opened&timestamp=1700000000&token=new&signature="));
        assert_eq!(text.matches("token=").count(), 1, "{text}");
        assert!(!text.contains("parent-signature"), "{text}");
        assert_eq!(mailgun.check(&request(&[], &signed, 1_700_000_000)), Ok(()));
        // Other fields stay byte for byte, empty pairs are dropped.
        let signed = sign_body(b"key", 1_700_000_000, "t", b"a=%41+b&&tokens=x").unwrap();
        assert!(signed.starts_with(b"a=%41+b&tokens=x&timestamp="));
        assert_eq!(mailgun.check(&request(&[], &signed, 1_700_000_000)), Ok(()));
    }
}
