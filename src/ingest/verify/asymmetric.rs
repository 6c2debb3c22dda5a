//! Signatures made with the sender's private key over `{timestamp}{raw body}` (Telnyx:
//! `{timestamp}|{raw body}`), checked with its public key: Discord interactions and
//! Telnyx (Ed25519) and SendGrid's signed Event Webhook (ECDSA P-256 with SHA-256). A
//! [`Layout`] says which headers, joiner and algorithm; the presets `discord`,
//! `telnyx` and `sendgrid` are three of them.
//!
//! - Discord: `X-Signature-Ed25519` (hex, 64 bytes) over `{X-Signature-Timestamp}{body}`,
//!   with the application's public key (hex).
//! - Telnyx: `telnyx-signature-ed25519` (base64, 64 bytes) over
//!   `{telnyx-timestamp}|{body}`, with the account's public key (base64 of 32 bytes).
//! - SendGrid: `X-Twilio-Email-Event-Webhook-Signature` (base64 of a DER signature) over
//!   `{X-Twilio-Email-Event-Webhook-Timestamp}{body}`, with the "Verification Key"
//!   (base64 DER). SendGrid signs without low-S normalisation, and the P-256 verifier
//!   accepts both forms of a signature.
//!
//! Discord's and SendGrid's SDKs do not check the timestamp (Telnyx's allow 5 min
//! either way); forebay does (default 5 min), so that a
//! captured request cannot be replayed later.

use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::ed25519::signature::MultipartVerifier;

use super::config::{BuildError, OneOrMany, check_tolerance_setting};
use super::keys::{self, Format};
use super::mac::{BASE64_LENIENT, check_tolerance, parse_unix_secs, required_header};
use super::rejection::Rejection;
use crate::config::secret::SecretRef;
use crate::ingest::request::Unverified;

/// One provider's headers and algorithm.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub signature_header: &'static str,
    pub timestamp_header: &'static str,
    /// Between the timestamp and the body in the signed text.
    pub joiner: &'static str,
    pub algorithm: Algorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    /// Ed25519, the signature in hex, keys as Discord writes them.
    Ed25519Hex,
    /// Ed25519, the signature and the key in base64, as Telnyx writes them.
    Ed25519Base64,
    /// ECDSA P-256 with SHA-256, the DER signature in base64, keys as SendGrid writes
    /// them.
    P256DerBase64,
}

pub(super) const DISCORD: Layout = Layout {
    signature_header: "X-Signature-Ed25519",
    timestamp_header: "X-Signature-Timestamp",
    joiner: "",
    algorithm: Algorithm::Ed25519Hex,
};

pub(super) const TELNYX: Layout = Layout {
    signature_header: "telnyx-signature-ed25519",
    timestamp_header: "telnyx-timestamp",
    joiner: "|",
    algorithm: Algorithm::Ed25519Base64,
};

pub(super) const SENDGRID: Layout = Layout {
    signature_header: "X-Twilio-Email-Event-Webhook-Signature",
    timestamp_header: "X-Twilio-Email-Event-Webhook-Timestamp",
    joiner: "",
    algorithm: Algorithm::P256DerBase64,
};

#[derive(Debug, Clone)]
pub struct Asymmetric {
    layout: &'static Layout,
    keys: PublicKeys,
    tolerance: Duration,
}

/// Every configured public key (several while the sender rotates).
#[derive(Debug, Clone)]
pub(super) enum PublicKeys {
    Ed25519(Vec<ed25519_dalek::VerifyingKey>),
    P256(Vec<p256::ecdsa::VerifyingKey>),
}

impl PublicKeys {
    /// The `public_key` value(s), in the format the algorithm's provider writes them.
    fn read(algorithm: Algorithm, refs: &OneOrMany<SecretRef>) -> Result<Self, BuildError> {
        Ok(match algorithm {
            Algorithm::Ed25519Hex | Algorithm::Ed25519Base64 => PublicKeys::Ed25519(
                keys::ed25519_public("public_key", refs, algorithm.key_format())?,
            ),
            Algorithm::P256DerBase64 => PublicKeys::P256(keys::p256_public("public_key", refs)?),
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            PublicKeys::Ed25519(keys) => keys.is_empty(),
            PublicKeys::P256(keys) => keys.is_empty(),
        }
    }

    /// Whether `private` is the private key of one of these.
    pub(super) fn belongs(&self, private: &PrivateKey) -> bool {
        match (self, private) {
            (PublicKeys::Ed25519(keys), PrivateKey::Ed25519(key)) => {
                keys.contains(&key.verifying_key())
            }
            (PublicKeys::P256(keys), PrivateKey::P256(key)) => keys.contains(key.verifying_key()),
            _ => false,
        }
    }

    /// Whether any key verifies `signature` over the concatenation of `message`. Every
    /// key is tried, so which one matched is not revealed.
    pub(super) fn any_verifies(&self, signature: &Signature, message: &[&[u8]]) -> bool {
        match (self, signature) {
            (PublicKeys::Ed25519(keys), Signature::Ed25519(sig)) => {
                keys.iter().fold(false, |found, key| {
                    key.multipart_verify(message, sig).is_ok() | found
                })
            }
            (PublicKeys::P256(keys), Signature::P256(sig)) => {
                keys.iter().fold(false, |found, key| {
                    key.multipart_verify(message, sig).is_ok() | found
                })
            }
            _ => false,
        }
    }
}

/// A sender's private key, for `sign_as`.
#[derive(Clone)]
pub(super) enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl PrivateKey {
    /// The `signing_key` for `layout`, checked against the source's public keys: a
    /// pair that does not match would only produce refused requests.
    pub(super) fn build(
        layout: &'static Layout,
        signing_key: &SecretRef,
        public_key: &OneOrMany<SecretRef>,
    ) -> Result<Self, BuildError> {
        let key = match layout.algorithm {
            Algorithm::Ed25519Hex | Algorithm::Ed25519Base64 => PrivateKey::Ed25519(
                keys::ed25519_private(signing_key, layout.algorithm.key_format())?,
            ),
            Algorithm::P256DerBase64 => PrivateKey::P256(keys::p256_private(signing_key)?),
        };
        if !PublicKeys::read(layout.algorithm, public_key)?.belongs(&key) {
            return Err(BuildError::SigningKeyMismatch);
        }
        Ok(key)
    }

    /// The header value of a signature over the concatenation of `message`, written
    /// as `algorithm` says.
    pub(super) fn sign(&self, algorithm: Algorithm, message: &[&[u8]]) -> String {
        use ed25519_dalek::ed25519::signature::MultipartSigner;
        match self {
            PrivateKey::Ed25519(key) => {
                let signature = key.multipart_sign(message).to_bytes();
                match algorithm {
                    Algorithm::Ed25519Base64 => {
                        base64::engine::general_purpose::STANDARD.encode(signature)
                    }
                    _ => hex::encode(signature),
                }
            }
            PrivateKey::P256(key) => {
                let sig: p256::ecdsa::Signature = key.multipart_sign(message);
                base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
            }
        }
    }
}

/// A signature read from a header, of the algorithm the layout says.
pub(super) enum Signature {
    Ed25519(ed25519_dalek::Signature),
    P256(p256::ecdsa::Signature),
}

impl Algorithm {
    /// How the provider writes its Ed25519 keys.
    fn key_format(self) -> Format {
        match self {
            Algorithm::Ed25519Hex => Format::DiscordHex,
            Algorithm::Ed25519Base64 => Format::Telnyx,
            Algorithm::P256DerBase64 => Format::SendGrid,
        }
    }

    /// The signature in `text`, or why it cannot be one.
    fn decode(self, text: &str) -> Result<Signature, &'static str> {
        match self {
            Algorithm::Ed25519Hex => hex::decode(text)
                .ok()
                .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
                .map(Signature::Ed25519)
                .ok_or("is not 128 hex digits"),
            Algorithm::Ed25519Base64 => BASE64_LENIENT
                .decode(text)
                .ok()
                .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
                .map(Signature::Ed25519)
                .ok_or("is not the base64 of 64 bytes"),
            Algorithm::P256DerBase64 => BASE64_LENIENT
                .decode(text)
                .ok()
                .and_then(|der| p256::ecdsa::Signature::from_der(&der).ok())
                .map(Signature::P256)
                .ok_or("is not a base64 DER-encoded ECDSA signature"),
        }
    }
}

impl Asymmetric {
    pub(super) fn build(
        layout: &'static Layout,
        public_key: &OneOrMany<SecretRef>,
        tolerance: Duration,
    ) -> Result<Self, BuildError> {
        check_tolerance_setting(tolerance)?;
        Ok(Self {
            layout,
            keys: PublicKeys::read(layout.algorithm, public_key)?,
            tolerance,
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let layout = self.layout;
        let signature = required_header(req, layout.signature_header)?;
        let timestamp_text = required_header(req, layout.timestamp_header)?;
        let timestamp = parse_unix_secs(timestamp_text).ok_or_else(|| {
            Rejection::malformed(layout.timestamp_header, "is not a whole number of seconds")
        })?;
        let signature = layout
            .algorithm
            .decode(signature)
            .map_err(|problem| Rejection::malformed(layout.signature_header, problem))?;
        if !self.keys.any_verifies(
            &signature,
            &[
                timestamp_text.as_bytes(),
                layout.joiner.as_bytes(),
                &req.body,
            ],
        ) {
            return Err(Rejection::NoSignatureMatched);
        }
        check_tolerance(req.received_at_secs(), timestamp, self.tolerance)
    }
}
