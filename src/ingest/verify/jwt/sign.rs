//! Making a token the way a `jwt` source's sender would, for `forebay send` and tests:
//! the configured algorithm, the first secret (or the `signing_key`, checked to belong
//! to one of the configured public keys, whose `kid` the token then names), and the
//! claims the verifier asks for.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use serde_json::{Map, Value, json};

use super::{Jwt, JwtAlgorithm, Material, verify_with};
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::verify::config::BuildError;
use crate::ingest::verify::keys::{self, pkcs8};

/// How long a token made here lives: long enough for a slow first attempt.
const LIFETIME_SECS: u64 = 300;

/// Signs tokens for one `jwt` source.
#[derive(Clone)]
pub(in crate::ingest::verify) struct TokenSigner {
    verifier: Jwt,
    key: PrivateKey,
    /// The `kid` of the JWKS key the signing key belongs to, if it has one.
    kid: Option<String>,
}

#[derive(Clone)]
enum PrivateKey {
    Hmac(Secret),
    /// PKCS#8 DER, parsed again for each signature (`ring`'s key pairs are not `Clone`;
    /// signing happens once per `forebay send`).
    Pkcs8(Vec<u8>),
}

/// Why a token cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::ingest::verify) enum TokenError {
    #[error(
        "the source requires the claim {0:?}, whose value `forebay send` cannot know; send to a source without it in `required_claims`"
    )]
    Claim(String),
    #[error("the signing key could not sign")]
    Key,
}

impl TokenSigner {
    /// A signer for `verifier`'s tokens; `signing_key` is needed unless it uses `HS*`.
    pub(in crate::ingest::verify) fn build(
        verifier: &Jwt,
        signing_key: Option<&SecretRef>,
    ) -> Result<Self, BuildError> {
        let algorithm = verifier.algorithm();
        if algorithm.is_hmac() {
            let secret = verifier
                .keys()
                .iter()
                .find_map(|key| match &key.material {
                    Material::Hmac(secret) => Some(secret.clone()),
                    _ => None,
                })
                .ok_or(BuildError::NoSecrets { field: "secret" })?;
            return Ok(Self {
                verifier: verifier.clone(),
                key: PrivateKey::Hmac(secret),
                kid: None,
            });
        }
        let signing_key = signing_key.ok_or(BuildError::NoSigningKey { kind: "jwt" })?;
        // The key must belong to a configured public key, or the server would refuse
        // every token made with it: found by verifying a probe signature.
        let (der, signature) =
            keys::pkcs8_signing_key(signing_key, private_expected(algorithm), |der, message| {
                sign_with(algorithm, der, message)
            })?;
        let matching = verifier
            .keys()
            .iter()
            .find(|key| verify_with(algorithm, &key.material, keys::PROBE, &signature))
            .ok_or(BuildError::SigningKeyMismatch)?;
        Ok(Self {
            verifier: verifier.clone(),
            key: PrivateKey::Pkcs8(der),
            kid: matching.kid.clone(),
        })
    }

    /// The header the token goes in.
    pub(in crate::ingest::verify) fn header(&self) -> &str {
        self.verifier.header()
    }

    /// A token for `body`, issued (and valid from) `timestamp`, with `id` as its `jti`.
    pub(in crate::ingest::verify) fn token(
        &self,
        body: &[u8],
        timestamp: u64,
        id: &str,
    ) -> Result<String, TokenError> {
        let algorithm = self.verifier.algorithm();
        let wanted = self.verifier.claims();
        let mut header = Map::new();
        header.insert("alg".into(), algorithm.name().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), kid.clone().into());
        }
        let mut claims = Map::new();
        claims.insert("iat".into(), timestamp.into());
        claims.insert("nbf".into(), timestamp.into());
        claims.insert("exp".into(), timestamp.saturating_add(LIFETIME_SECS).into());
        claims.insert("jti".into(), id.into());
        if let Some(issuer) = &wanted.issuer {
            claims.insert("iss".into(), issuer.clone().into());
        }
        if let Some(audience) = &wanted.audience {
            claims.insert("aud".into(), audience.clone().into());
        }
        if let Some(body_hash) = &wanted.body_hash {
            claims.insert(body_hash.claim.clone(), body_hash.of(body).into());
        }
        if let Some(url_hash) = &wanted.url_hash {
            // `forebay send` posts to the URL without a query string.
            let digest = <sha2::Sha256 as sha2::Digest>::digest(url_hash.public_url.as_bytes());
            claims.insert(url_hash.claim.into(), hex::encode(digest).into());
        }
        if let Some(unknown) = wanted.required.iter().find(|c| !claims.contains_key(*c)) {
            return Err(TokenError::Claim(unknown.clone()));
        }
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(json!(claims).to_string())
        );
        let signature = match &self.key {
            PrivateKey::Hmac(secret) => algorithm.hmac(secret.expose(), &[signed.as_bytes()]),
            PrivateKey::Pkcs8(der) => sign_with(algorithm, der, signed.as_bytes()),
        }
        .ok_or(TokenError::Key)?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

fn private_expected(algorithm: JwtAlgorithm) -> &'static str {
    use JwtAlgorithm::*;
    match algorithm {
        Es256 => {
            "a P-256 private key as a PEM PRIVATE KEY block (PKCS#8: `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)"
        }
        Es384 => {
            "a P-384 private key as a PEM PRIVATE KEY block (PKCS#8: `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`)"
        }
        EdDsa => {
            "an Ed25519 private key as a PEM PRIVATE KEY block (PKCS#8: `openssl genpkey -algorithm ed25519`)"
        }
        _ => {
            "an RSA private key of 2048 bits or more as a PEM PRIVATE KEY block (PKCS#8: `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`)"
        }
    }
}

/// The signature of `message` with the PKCS#8 key `der`; `None` when the key is not
/// one `algorithm` signs with.
fn sign_with(algorithm: JwtAlgorithm, der: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    use JwtAlgorithm::*;
    match algorithm {
        Hs256 | Hs384 | Hs512 => None,
        Rs256 => pkcs8::rsa(der, &signature::RSA_PKCS1_SHA256, message),
        Rs384 => pkcs8::rsa(der, &signature::RSA_PKCS1_SHA384, message),
        Rs512 => pkcs8::rsa(der, &signature::RSA_PKCS1_SHA512, message),
        Ps256 => pkcs8::rsa(der, &signature::RSA_PSS_SHA256, message),
        Ps384 => pkcs8::rsa(der, &signature::RSA_PSS_SHA384, message),
        Ps512 => pkcs8::rsa(der, &signature::RSA_PSS_SHA512, message),
        Es256 => pkcs8::ecdsa(der, &signature::ECDSA_P256_SHA256_FIXED_SIGNING, message),
        Es384 => pkcs8::ecdsa(der, &signature::ECDSA_P384_SHA384_FIXED_SIGNING, message),
        EdDsa => pkcs8::ed25519(der, message),
    }
}
