//! GitHub webhook signatures.
//!
//! GitHub sends `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body keyed
//! with the webhook secret. GitHub signs no timestamp, so there is no tolerance check;
//! `X-GitHub-Delivery` is the id used for dedup.
//!
//! The legacy `X-Hub-Signature` (HMAC-SHA1) header is deliberately not accepted, even
//! when the SHA-256 one is absent: GitHub sends both whenever a secret is set (its docs
//! keep SHA-1 "only for legacy purposes"), so falling back would only open a downgrade
//! path. A sender that truly only signs with SHA-1 can use the generic `hmac` kind
//! (`header = "X-Hub-Signature"`, `algorithm = "sha1"`, `prefix = "sha1="`).

use super::config::{BuildError, HmacAlgorithm, OneOrMany, resolve_secrets};
use super::mac::{expected_macs, matches_any, required_header};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

const SIGNATURE: &str = "X-Hub-Signature-256";
const DELIVERY: &str = "X-GitHub-Delivery";

#[derive(Debug, Clone)]
pub struct Github {
    secrets: Vec<Secret>,
}

impl Github {
    pub(super) fn build(secret: &OneOrMany<SecretRef>) -> Result<Self, BuildError> {
        let secrets = resolve_secrets("secret", secret)?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        Ok(Self { secrets })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let header = required_header(req, SIGNATURE)?;
        let hex_sig = header
            .trim()
            .strip_prefix("sha256=")
            .ok_or_else(|| Rejection::malformed(SIGNATURE, "does not start with sha256="))?;
        let sig = hex::decode(hex_sig)
            .map_err(|_| Rejection::malformed(SIGNATURE, "is not hex after sha256="))?;
        let expected = expected_macs(HmacAlgorithm::Sha256, &self.secrets, &[&req.body]);
        if matches_any(&expected, &sig) {
            Ok(())
        } else {
            Err(Rejection::NoSignatureMatched)
        }
    }
}

/// GitHub's delivery GUID, the same on every redelivery of one event.
pub(super) fn delivery_id(req: &Unverified) -> Option<String> {
    req.header(DELIVERY)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{build, outcome, request};
    use super::super::{Rejection, Verifier};

    // GitHub Docs, "Validating webhook deliveries", section "Testing the webhook payload
    // validation": with secret "It's a Secret to Everybody" and payload "Hello, World!"
    // the header must be exactly this.
    const SECRET: &str = "It's a Secret to Everybody";
    const PAYLOAD: &str = "Hello, World!";
    const DOCUMENTED: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn github(secret: &str) -> Verifier {
        build(&format!(r#"kind = "github", secret = {secret}"#))
    }

    fn check(v: &Verifier, headers: &[(&str, &[u8])], body: &str) -> Result<(), Rejection> {
        // GitHub signs no timestamp: any receive time passes.
        outcome(v, request(headers, body.as_bytes(), 4_000_000_000))
    }

    #[test]
    fn documented_example_passes() {
        let v = github(&format!("{SECRET:?}"));
        let headers: [(&str, &[u8]); 1] = [("X-Hub-Signature-256", DOCUMENTED.as_bytes())];
        assert_eq!(check(&v, &headers, PAYLOAD), Ok(()));
        // Header names are case-insensitive on the wire.
        let lower: [(&str, &[u8]); 1] = [("x-hub-signature-256", DOCUMENTED.as_bytes())];
        assert_eq!(check(&v, &lower, PAYLOAD), Ok(()));
        // Hex digits in upper case decode to the same bytes.
        let upper = DOCUMENTED.to_uppercase().replace("SHA256=", "sha256=");
        let upper: [(&str, &[u8]); 1] = [("X-Hub-Signature-256", upper.as_bytes())];
        assert_eq!(check(&v, &upper, PAYLOAD), Ok(()));
    }

    #[test]
    fn tampered_body_and_wrong_secret_fail() {
        let headers: [(&str, &[u8]); 1] = [("X-Hub-Signature-256", DOCUMENTED.as_bytes())];
        let v = github(&format!("{SECRET:?}"));
        assert_eq!(
            check(&v, &headers, "Hello, World?"),
            Err(Rejection::NoSignatureMatched)
        );
        let wrong = github(r#""It's a Secret to Nobody""#);
        assert_eq!(
            check(&wrong, &headers, PAYLOAD),
            Err(Rejection::NoSignatureMatched)
        );
    }

    #[test]
    fn rotation_second_secret_matches() {
        let v = github(&format!(r#"["the new secret", {SECRET:?}]"#));
        let headers: [(&str, &[u8]); 1] = [("X-Hub-Signature-256", DOCUMENTED.as_bytes())];
        assert_eq!(check(&v, &headers, PAYLOAD), Ok(()));
    }

    #[test]
    fn legacy_sha1_header_alone_is_not_enough() {
        // HMAC-SHA1 of the documented example, as GitHub would send it.
        let v = github(&format!("{SECRET:?}"));
        let headers: [(&str, &[u8]); 1] = [(
            "X-Hub-Signature",
            b"sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )];
        assert_eq!(
            check(&v, &headers, PAYLOAD),
            Err(Rejection::MissingHeader {
                name: "X-Hub-Signature-256".into()
            })
        );
    }

    #[test]
    fn malformed_headers_are_named_and_never_panic() {
        let v = github(&format!("{SECRET:?}"));
        let cases: [(&[u8], &str); 7] = [
            (b"", "does not start with sha256="),
            (
                b"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                "does not start with sha256=",
            ),
            (
                b"sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
                "does not start with sha256=",
            ),
            (b"sha256=xyz", "is not hex after sha256="),
            (b"sha256=abc", "is not hex after sha256="),
            (
                b"sha256=\xc3\xa9",
                "contains bytes that are not visible ASCII",
            ),
            (b"sha256= 75 71", "is not hex after sha256="),
        ];
        for (raw, problem) in cases {
            let headers: [(&str, &[u8]); 1] = [("X-Hub-Signature-256", raw)];
            assert_eq!(
                check(&v, &headers, PAYLOAD),
                Err(Rejection::MalformedHeader {
                    name: "X-Hub-Signature-256".into(),
                    problem
                }),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // Well-formed but the wrong length: no match, no panic.
        let short: [(&str, &[u8]); 1] = [("X-Hub-Signature-256", b"sha256=7571")];
        assert_eq!(
            check(&v, &short, PAYLOAD),
            Err(Rejection::NoSignatureMatched)
        );
        let empty: [(&str, &[u8]); 1] = [("X-Hub-Signature-256", b"sha256=")];
        assert_eq!(
            check(&v, &empty, PAYLOAD),
            Err(Rejection::NoSignatureMatched)
        );
    }

    #[test]
    fn dedup_key_is_the_delivery_id() {
        let v = github(&format!("{SECRET:?}"));
        let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
        let req = request(&[("X-GitHub-Delivery", id.as_bytes())], b"{}", 0);
        assert_eq!(v.provider_dedup_key(&req), Some(id.to_owned()));
        assert_eq!(v.provider_dedup_key(&request(&[], b"{}", 0)), None);
    }
}
