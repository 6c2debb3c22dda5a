//! The keys of the `jwt` kind, read once at load: shared secrets for `HS*`, and public
//! keys for the others, from PEM `PUBLIC KEY` blocks (SubjectPublicKeyInfo) or a JWKS
//! document (RFC 7517). Each key is checked against the configured algorithm here, so a
//! P-256 key under `RS256` is a configuration error, not a request that never verifies.
//!
//! Public keys end up in the forms `ring` verifies with: RSA as PKCS#1 DER or as its
//! modulus and exponent, EC as the uncompressed point, Ed25519 as its 32 bytes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use spki::der::Decode as _;
use spki::der::asn1::ObjectIdentifier;
use spki::{ObjectIdentifier as Oid, SubjectPublicKeyInfoRef};

use super::JwtAlgorithm;
use crate::config::secret::Secret;

/// One key that may have signed a token.
#[derive(Clone)]
pub(in crate::ingest::verify) struct Key {
    /// The JWKS `kid`: when a token names one, only keys with that id are tried.
    pub kid: Option<String>,
    pub material: Material,
}

#[derive(Clone)]
pub(in crate::ingest::verify) enum Material {
    /// An `HS*` secret, used as its bytes.
    Hmac(Secret),
    /// An RSA public key from a JWK: big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An RSA public key from PEM: PKCS#1 `RSAPublicKey` DER.
    RsaDer(Vec<u8>),
    /// An EC point (uncompressed, `04 || x || y`) or an Ed25519 key (32 bytes).
    Point(Vec<u8>),
}

/// What kind of key an algorithm needs, for matching and for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    fn of(algorithm: JwtAlgorithm) -> Option<Family> {
        use JwtAlgorithm::*;
        match algorithm {
            Hs256 | Hs384 | Hs512 => None,
            Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512 => Some(Family::Rsa),
            Es256 => Some(Family::P256),
            Es384 => Some(Family::P384),
            EdDsa => Some(Family::Ed25519),
        }
    }

    fn pem_expected(self) -> &'static str {
        match self {
            Family::Rsa => "an RSA public key as a PEM PUBLIC KEY block (`openssl pkey -pubout`)",
            Family::P256 => "a P-256 public key as a PEM PUBLIC KEY block (`openssl pkey -pubout`)",
            Family::P384 => "a P-384 public key as a PEM PUBLIC KEY block (`openssl pkey -pubout`)",
            Family::Ed25519 => {
                "an Ed25519 public key as a PEM PUBLIC KEY block (`openssl pkey -pubout`)"
            }
        }
    }

    fn jwk_expected(self) -> &'static str {
        match self {
            Family::Rsa => "`kty` \"RSA\" with `n` and `e`",
            Family::P256 => "`kty` \"EC\", `crv` \"P-256\", `x` and `y`",
            Family::P384 => "`kty` \"EC\", `crv` \"P-384\", `x` and `y`",
            Family::Ed25519 => "`kty` \"OKP\", `crv` \"Ed25519\" and `x`",
        }
    }
}

/// Whether two algorithms verify with the same keys, so one source may accept both.
pub(super) fn same_keys(a: JwtAlgorithm, b: JwtAlgorithm) -> bool {
    Family::of(a) == Family::of(b)
}

/// What a PEM text could not give, as a sentence for `BuildError::Key`.
pub(super) fn pem_expected(algorithm: JwtAlgorithm) -> &'static str {
    Family::of(algorithm).map_or("a secret", Family::pem_expected)
}

const RSA_ENCRYPTION: Oid = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: Oid = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: Oid = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: Oid = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: Oid = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A PEM `PUBLIC KEY` block for `algorithm`; `None` when it is not one, or is a key of
/// another kind.
pub(super) fn from_pem(text: &[u8], algorithm: JwtAlgorithm) -> Option<Material> {
    let family = Family::of(algorithm)?;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(text).ok()?;
    let spki = SubjectPublicKeyInfoRef::from_der(der.as_ref()).ok()?;
    let key = spki.subject_public_key.as_bytes()?;
    let oid = spki.algorithm.oid;
    let curve = spki
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    match family {
        // PKCS#1 `RSAPublicKey`, which `ring` reads (and checks) itself.
        Family::Rsa if oid == RSA_ENCRYPTION => Some(Material::RsaDer(key.to_vec())),
        Family::P256 if oid == EC_PUBLIC_KEY && curve == Some(PRIME256V1) => {
            point(key, 65).map(Material::Point)
        }
        Family::P384 if oid == EC_PUBLIC_KEY && curve == Some(SECP384R1) => {
            point(key, 97).map(Material::Point)
        }
        Family::Ed25519 if oid == ED25519 && key.len() == 32 => Some(Material::Point(key.to_vec())),
        _ => None,
    }
}

/// An uncompressed EC point of `len` bytes.
fn point(key: &[u8], len: usize) -> Option<Vec<u8>> {
    (key.len() == len && key[0] == 0x04).then(|| key.to_vec())
}

/// A JWKS document, as far as verification reads it.
#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Why a JWKS document gave no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::ingest::verify) enum JwksError {
    #[error("is not a JWKS document ({0}); expected {{\"keys\": [...]}}")]
    NotJwks(String),
    #[error("key {index}: {problem}")]
    BadKey { index: usize, problem: String },
    #[error("has no key for {algorithm} (expected {expected}); check the file and `algorithm`")]
    NoKey {
        algorithm: &'static str,
        expected: &'static str,
    },
}

/// The keys of a JWKS document that `algorithm` can use. Keys of other types, or
/// marked for another algorithm or for encryption, are skipped; a key of the right type
/// that does not decode is an error.
pub(super) fn from_jwks(text: &[u8], algorithm: JwtAlgorithm) -> Result<Vec<Key>, JwksError> {
    let family = Family::of(algorithm).expect("JWKS is only read for public-key algorithms");
    let jwks: Jwks = serde_json::from_slice(text).map_err(|e| JwksError::NotJwks(e.to_string()))?;
    let mut keys = Vec::new();
    for (i, jwk) in jwks.keys.iter().enumerate() {
        // A key marked for another algorithm of the same family (RS512 beside RS256)
        // is still a key of this source.
        let wanted = jwk
            .alg
            .as_deref()
            .is_none_or(|alg| alg == algorithm.name() || family_of_name(alg) == Some(family))
            && jwk.use_.as_deref().is_none_or(|u| u == "sig");
        if !wanted {
            continue;
        }
        let bad = |problem: &str| JwksError::BadKey {
            index: i + 1,
            problem: format!("{problem}; expected {}", family.jwk_expected()),
        };
        let b64 = |field: &Option<String>, name: &str| {
            let text = field
                .as_deref()
                .ok_or_else(|| bad(&format!("no `{name}`")))?;
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| bad(&format!("`{name}` is not base64url")))
        };
        let material = match (family, jwk.kty.as_str(), jwk.crv.as_deref()) {
            (Family::Rsa, "RSA", _) => Material::Rsa {
                n: without_leading_zeros(b64(&jwk.n, "n")?),
                e: without_leading_zeros(b64(&jwk.e, "e")?),
            },
            (Family::P256, "EC", Some("P-256")) | (Family::P384, "EC", Some("P-384")) => {
                let size = if family == Family::P256 { 32 } else { 48 };
                let (x, y) = (b64(&jwk.x, "x")?, b64(&jwk.y, "y")?);
                if x.len() != size || y.len() != size {
                    return Err(bad("`x` or `y` has the wrong length for the curve"));
                }
                Material::Point([&[0x04], &x[..], &y[..]].concat())
            }
            (Family::Ed25519, "OKP", Some("Ed25519")) => {
                let x = b64(&jwk.x, "x")?;
                if x.len() != 32 {
                    return Err(bad("`x` is not 32 bytes"));
                }
                Material::Point(x)
            }
            _ => continue,
        };
        keys.push(Key {
            kid: jwk.kid.clone(),
            material,
        });
    }
    if keys.is_empty() {
        return Err(JwksError::NoKey {
            algorithm: algorithm.name(),
            expected: family.jwk_expected(),
        });
    }
    Ok(keys)
}

fn family_of_name(alg: &str) -> Option<Family> {
    let algorithm: JwtAlgorithm = serde_json::from_value(serde_json::Value::from(alg)).ok()?;
    Family::of(algorithm)
}

/// `ring` wants big-endian integers without leading zero bytes, which some JWKS writers
/// keep (a sign byte).
fn without_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}
