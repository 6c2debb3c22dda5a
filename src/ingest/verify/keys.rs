//! Public and private keys of the asymmetric schemes (Discord, Telnyx and Standard
//! Webhooks `v1a`: Ed25519; SendGrid: ECDSA P-256), read from configuration in the format each
//! provider shows them.
//!
//! A public key is not a secret, but it is read through [`SecretRef`] all the same, so
//! it may come from `env:` or `file:` like a secret. A key that cannot be read is a
//! [`BuildError::Key`] naming the key and the expected format, never showing the value.
//! Private keys (`signing_key`) are only ever read by `sign_as`, for `forebay send` and
//! tests: the server never needs them.

use base64::Engine as _;
use ed25519_dalek::{SigningKey as Ed25519SigningKey, VerifyingKey as Ed25519Key};
use p256::ecdsa::{SigningKey as P256SigningKey, VerifyingKey as P256Key};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

use super::config::{BuildError, FieldAt, OneOrMany, resolve_secrets};
use super::mac::BASE64_LENIENT;
use crate::config::secret::SecretRef;

/// How a provider writes its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Discord: the application's public key as 64 hex digits; the private key as the
    /// 32-byte seed (64 hex digits) or seed and public key (128, libsodium's layout).
    DiscordHex,
    /// Standard Webhooks: `whpk_<base64>` public and `whsk_<base64>` private (a 32-byte
    /// seed); the prefixes may be left out.
    StandardWebhooks,
    /// Telnyx: the account's public key as the base64 of its 32 bytes (Mission
    /// Control's "Public Key"); the private key, for tests, as the base64 of the
    /// 32-byte seed.
    Telnyx,
    /// SendGrid: the "Verification Key", base64 of a DER SubjectPublicKeyInfo
    /// (`MFkw...`), or a PEM `PUBLIC KEY` block; the private key as PKCS#8, base64 DER
    /// or PEM `PRIVATE KEY`.
    SendGrid,
}

impl Format {
    fn public_expected(self) -> &'static str {
        match self {
            Format::DiscordHex => {
                "an Ed25519 public key as 64 hex digits (Discord's application \"Public Key\")"
            }
            Format::StandardWebhooks => {
                "an Ed25519 public key as `whpk_` followed by the base64 of 32 bytes"
            }
            Format::Telnyx => {
                "an Ed25519 public key as the base64 of its 32 bytes (Telnyx's \"Public Key\", 44 characters)"
            }
            Format::SendGrid => {
                "a P-256 public key as base64 DER (SendGrid's \"Verification Key\", starting `MFkw`) or a PEM PUBLIC KEY block"
            }
        }
    }

    fn private_expected(self) -> &'static str {
        match self {
            Format::DiscordHex => {
                "an Ed25519 private key as 64 hex digits (the seed) or 128 (seed and public key)"
            }
            Format::StandardWebhooks => {
                "an Ed25519 private key as `whsk_` followed by the base64 of the 32-byte seed"
            }
            Format::Telnyx => "an Ed25519 private key as the base64 of its 32-byte seed",
            Format::SendGrid => {
                "a P-256 private key as PKCS#8, base64 DER or a PEM PRIVATE KEY block (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)"
            }
        }
    }
}

/// Every Ed25519 public key of `field`, in `format`.
pub(super) fn ed25519_public(
    field: &'static str,
    refs: &OneOrMany<SecretRef>,
    format: Format,
) -> Result<Vec<Ed25519Key>, BuildError> {
    resolve_secrets(field, refs)?
        .into_iter()
        .map(|(at, key)| {
            parse_ed25519_public(key.expose(), format).ok_or(BuildError::Key {
                at,
                expected: format.public_expected(),
            })
        })
        .collect()
}

/// Every P-256 public key of `field`, in SendGrid's format.
pub(super) fn p256_public(
    field: &'static str,
    refs: &OneOrMany<SecretRef>,
) -> Result<Vec<P256Key>, BuildError> {
    resolve_secrets(field, refs)?
        .into_iter()
        .map(|(at, key)| {
            parse_p256_public(key.expose()).ok_or(BuildError::Key {
                at,
                expected: Format::SendGrid.public_expected(),
            })
        })
        .collect()
}

/// The Ed25519 private key of `signing_key`.
pub(super) fn ed25519_private(
    key: &SecretRef,
    format: Format,
) -> Result<Ed25519SigningKey, BuildError> {
    let (at, text) = signing_key_text(key)?;
    parse_ed25519_private(&text, format).ok_or(BuildError::Key {
        at,
        expected: format.private_expected(),
    })
}

/// The P-256 private key of `signing_key`.
pub(super) fn p256_private(key: &SecretRef) -> Result<P256SigningKey, BuildError> {
    let (at, text) = signing_key_text(key)?;
    parse_p256_private(&text).ok_or(BuildError::Key {
        at,
        expected: Format::SendGrid.private_expected(),
    })
}

fn signing_key_text(key: &SecretRef) -> Result<(FieldAt, Vec<u8>), BuildError> {
    let at = FieldAt {
        field: "signing_key",
        item: None,
    };
    key.resolve()
        .map(|s| (at, s.expose().to_vec()))
        .map_err(|source| BuildError::Secret { at, source })
}

fn parse_ed25519_public(text: &[u8], format: Format) -> Option<Ed25519Key> {
    let bytes = match format {
        Format::DiscordHex => hex::decode(text.trim_ascii()).ok()?,
        Format::StandardWebhooks => base64_after(text, b"whpk_")?,
        Format::Telnyx => base64_after(text, b"")?,
        Format::SendGrid => return None,
    };
    Ed25519Key::from_bytes(&bytes.try_into().ok()?).ok()
}

fn parse_ed25519_private(text: &[u8], format: Format) -> Option<Ed25519SigningKey> {
    let bytes = match format {
        Format::DiscordHex => hex::decode(text.trim_ascii()).ok()?,
        Format::StandardWebhooks => base64_after(text, b"whsk_")?,
        Format::Telnyx => base64_after(text, b"")?,
        Format::SendGrid => return None,
    };
    match bytes.len() {
        32 => Some(Ed25519SigningKey::from_bytes(&bytes.try_into().ok()?)),
        // Checks that the second half is the first half's public key.
        64 => Ed25519SigningKey::from_keypair_bytes(&bytes.try_into().ok()?).ok(),
        _ => None,
    }
}

fn parse_p256_public(text: &[u8]) -> Option<P256Key> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if text.starts_with("-----BEGIN") {
        return P256Key::from_public_key_pem(text).ok();
    }
    P256Key::from_public_key_der(&base64_after(text.as_bytes(), b"")?).ok()
}

fn parse_p256_private(text: &[u8]) -> Option<P256SigningKey> {
    let text = std::str::from_utf8(text).ok()?.trim();
    if text.starts_with("-----BEGIN") {
        return P256SigningKey::from_pkcs8_pem(text).ok();
    }
    P256SigningKey::from_pkcs8_der(&base64_after(text.as_bytes(), b"")?).ok()
}

/// What a probe signature is made over, to find which configured public key (or
/// certificate) a `signing_key` belongs to.
pub(super) const PROBE: &[u8] = b"forebay: which configured key is this?";

/// The PKCS#8 `signing_key` (a PEM `PRIVATE KEY`) as DER, with its signature of
/// [`PROBE`] made by `sign`; `expected` names the format when it is not one `sign`
/// takes. Only `forebay send` and tests read private keys.
pub(super) fn pkcs8_signing_key(
    signing_key: &SecretRef,
    expected: &'static str,
    sign: impl Fn(&[u8], &[u8]) -> Option<Vec<u8>>,
) -> Result<(Vec<u8>, Vec<u8>), BuildError> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject as _;
    let (at, text) = signing_key_text(signing_key)?;
    PrivatePkcs8KeyDer::from_pem_slice(&text)
        .ok()
        .map(|der| der.secret_pkcs8_der().to_vec())
        .and_then(|der| sign(&der, PROBE).map(|probe| (der, probe)))
        .ok_or(BuildError::Key { at, expected })
}

/// Signing with a PKCS#8 private key (DER) through `ring`, for `forebay send` and tests
/// of the `jwt` and `certificate` kinds. `None` when the key is not of the kind asked.
pub(super) mod pkcs8 {
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

    pub fn rsa(
        der: &[u8],
        padding: &'static dyn signature::RsaEncoding,
        message: &[u8],
    ) -> Option<Vec<u8>> {
        let pair = RsaKeyPair::from_pkcs8(der).ok()?;
        let mut out = vec![0; pair.public().modulus_len()];
        pair.sign(padding, &SystemRandom::new(), message, &mut out)
            .ok()?;
        Some(out)
    }

    pub fn ecdsa(
        der: &[u8],
        algorithm: &'static signature::EcdsaSigningAlgorithm,
        message: &[u8],
    ) -> Option<Vec<u8>> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(algorithm, der, &rng).ok()?;
        Some(pair.sign(&rng, message).ok()?.as_ref().to_vec())
    }

    pub fn ed25519(der: &[u8], message: &[u8]) -> Option<Vec<u8>> {
        // openssl writes PKCS#8 v1 (no public key inside), which the checked
        // constructor refuses.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()?;
        Some(pair.sign(message).as_ref().to_vec())
    }
}

/// Base64 (padded or not) after an optional `prefix`, ignoring surrounding whitespace
/// and line breaks (keys are often pasted wrapped).
fn base64_after(text: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    let text = text.strip_prefix(prefix).unwrap_or(text);
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    BASE64_LENIENT.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // SendGrid's published verification key (sendgrid/sendgrid-nodejs,
    // packages/eventwebhook/src/eventwebhook.spec.js, PUBLIC_KEY).
    const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";

    #[test]
    fn keys_are_read_in_the_providers_formats() {
        let seed = [7u8; 32];
        let signing = Ed25519SigningKey::from_bytes(&seed);
        let public = signing.verifying_key();
        let hex_pub = hex::encode(public.as_bytes());
        assert_eq!(
            parse_ed25519_public(hex_pub.as_bytes(), Format::DiscordHex),
            Some(public)
        );
        assert_eq!(
            parse_ed25519_public(hex_pub.to_uppercase().as_bytes(), Format::DiscordHex),
            Some(public)
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
        for text in [format!("whpk_{b64}"), b64.clone(), format!(" whpk_{b64}\n")] {
            assert_eq!(
                parse_ed25519_public(text.as_bytes(), Format::StandardWebhooks),
                Some(public),
                "{text}"
            );
        }
        // Seed, or seed and public key (libsodium/tweetnacl secret keys).
        let pair = hex::encode(signing.to_keypair_bytes());
        for text in [hex::encode(seed), pair.clone()] {
            let key = parse_ed25519_private(text.as_bytes(), Format::DiscordHex).unwrap();
            assert_eq!(key.verifying_key(), public);
        }
        // A key pair whose halves do not belong together is refused.
        let mismatched = format!("{}{}", &pair[..64], "00".repeat(32));
        assert!(parse_ed25519_private(mismatched.as_bytes(), Format::DiscordHex).is_none());
        let whsk = format!(
            "whsk_{}",
            base64::engine::general_purpose::STANDARD.encode(seed)
        );
        assert!(parse_ed25519_private(whsk.as_bytes(), Format::StandardWebhooks).is_some());

        assert!(parse_p256_public(SENDGRID_KEY.as_bytes()).is_some());
        let wrapped = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &SENDGRID_KEY[..64],
            &SENDGRID_KEY[64..]
        );
        assert_eq!(
            parse_p256_public(wrapped.as_bytes()),
            parse_p256_public(SENDGRID_KEY.as_bytes())
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let bad: [&[u8]; 7] = [
            b"",
            b"zz",
            b"whpk_",
            b"whpk_AAAA",
            // 31 bytes.
            b"00000000000000000000000000000000000000000000000000000000000000",
            b"\xff\xfe",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        ];
        for text in bad {
            for format in [Format::DiscordHex, Format::StandardWebhooks, Format::Telnyx] {
                assert!(parse_ed25519_public(text, format).is_none());
                assert!(parse_ed25519_private(text, format).is_none());
            }
            assert!(parse_p256_public(text).is_none());
            assert!(parse_p256_private(text).is_none());
        }
        // The right length of the wrong kind: a P-256 key is not an Ed25519 one.
        assert!(parse_ed25519_public(SENDGRID_KEY.as_bytes(), Format::StandardWebhooks).is_none());
        assert!(parse_p256_private(SENDGRID_KEY.as_bytes()).is_none());
    }

    #[test]
    fn errors_name_the_key_and_the_format_but_not_the_value() {
        let err = ed25519_public(
            "public_key",
            &OneOrMany::Many(vec![
                SecretRef::new("whpk_AAAA"),
                SecretRef::new("not-a-key-hunter2"),
            ]),
            Format::StandardWebhooks,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("`public_key` item 1: "), "{err}");
        assert!(err.contains("whpk_"), "{err}");
        let err = p256_public("public_key", &OneOrMany::One(SecretRef::new("hunter2")))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("`public_key`: "), "{err}");
        assert!(err.contains("MFkw"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = p256_private(&SecretRef::new("env:FOREBAY_KEYS_TEST_SURELY_UNSET"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("`signing_key`: "), "{err}");
    }

    use proptest::prelude::*;

    proptest! {
        /// Key text from configuration (or an `env:`/`file:`) never panics the
        /// parsers, whatever its bytes: a bad key is an error, reported at load.
        #[test]
        fn key_parsers_never_panic(text in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "(whpk_|whsk_|-----BEGIN PUBLIC KEY-----\n|MFkw)?[A-Za-z0-9+/=\n ]{0,120}"
                .prop_map(String::into_bytes),
            "[0-9a-fA-F]{60,130}".prop_map(String::into_bytes),
        ]) {
            for format in [
                Format::DiscordHex,
                Format::StandardWebhooks,
                Format::Telnyx,
                Format::SendGrid,
            ] {
                let _ = parse_ed25519_public(&text, format);
                let _ = parse_ed25519_private(&text, format);
            }
            let _ = parse_p256_public(&text);
            let _ = parse_p256_private(&text);
        }
    }
}
