//! Standard Webhooks signatures on outbound requests (`sign = { secret = "whsec_…" }`), so
//! handlers can verify that a delivery came from forebay with any Standard Webhooks library.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A destination's signing key (the decoded bytes of `whsec_…`).
#[derive(Clone, PartialEq, Eq)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    /// From the secret text: `whsec_` followed by base64 (the prefix is optional).
    pub fn from_secret(secret: &[u8]) -> Result<Self, String> {
        let encoded = secret.strip_prefix(b"whsec_").unwrap_or(secret);
        let key = STANDARD.decode(encoded).map_err(|e| {
            format!("not valid base64 after the optional `whsec_` prefix ({e}); generate one with `openssl rand -base64 32` and prefix it with whsec_")
        })?;
        if key.is_empty() {
            return Err("the signing secret is empty".to_owned());
        }
        Ok(Self { key })
    }

    /// The `webhook-signature` value for a message: `v1,<base64 HMAC-SHA256>` of
    /// `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this arm is unreachable in practice.
            Err(_) => return String::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // standard-webhooks/standard-webhooks, libraries/go/webhook_test.go (TestWebhookSign).
        let signer = Signer::from_secret(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(Signer::from_secret(b"whsec_***").is_err());
    }
}
