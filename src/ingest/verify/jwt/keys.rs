//! The keys of the `jwt` kind, read once at load: shared secrets for `HS*`, and public
//! keys for the others, from PEM `PUBLIC KEY` blocks (SubjectPublicKeyInfo) or a JWKS
//! document (RFC 7517). Each key is checked against the configured algorithm here, so a
//! P-256 key under `RS256` is a configuration error, not a request that never verifies.
//!
//! Public keys end up in the forms `ring` verifies with: RSA as its modulus and
//! exponent (2048 to 8192 bits, checked here rather than on every request), EC as the uncompressed point, Ed25519 as its 32 bytes.

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
    /// The JWKS `alg`: when set, the key verifies only tokens of that algorithm
    /// (RFC 7517 section 4.4).
    pub alg: Option<JwtAlgorithm>,
    pub material: Material,
}

#[derive(Clone)]
pub(in crate::ingest::verify) enum Material {
    /// An `HS*` secret, used as its bytes.
    Hmac(Secret),
    /// An RSA public key: big-endian modulus and exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
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
        Family::Rsa if oid == RSA_ENCRYPTION => rsa_parts(key),
        Family::P256 if oid == EC_PUBLIC_KEY && curve == Some(PRIME256V1) => {
            p256_point(key).map(Material::Point)
        }
        Family::P384 if oid == EC_PUBLIC_KEY && curve == Some(SECP384R1) => {
            point(key, 97).map(Material::Point)
        }
        Family::Ed25519 if oid == ED25519 => ed25519_point(key).map(Material::Point),
        _ => None,
    }
}

/// An uncompressed EC point of `len` bytes.
fn point(key: &[u8], len: usize) -> Option<Vec<u8>> {
    (key.len() == len && key[0] == 0x04).then(|| key.to_vec())
}

/// An uncompressed P-256 point that is on the curve.
fn p256_point(key: &[u8]) -> Option<Vec<u8>> {
    let key = point(key, 65)?;
    p256::PublicKey::from_sec1_bytes(&key).ok()?;
    Some(key)
}

/// An Ed25519 key that decodes to a curve point.
fn ed25519_point(key: &[u8]) -> Option<Vec<u8>> {
    let bytes: [u8; 32] = key.try_into().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
    Some(key.to_vec())
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_parts(der: &[u8]) -> Option<Material> {
    use spki::der::{Decode as _, Reader as _, SliceReader, asn1::UintRef};
    let mut reader = SliceReader::new(der).ok()?;
    let (n, e) = reader
        .sequence(|seq| Ok::<_, spki::der::Error>((UintRef::decode(seq)?, UintRef::decode(seq)?)))
        .ok()?;
    rsa_material(n.as_bytes().to_vec(), e.as_bytes().to_vec())
}

/// An RSA key `ring` verifies with: 2048 to 8192 bits, an odd exponent above 1.
fn rsa_material(n: Vec<u8>, e: Vec<u8>) -> Option<Material> {
    let (n, e) = (without_leading_zeros(n), without_leading_zeros(e));
    // After the zeros are gone the first byte is not zero (or there is none).
    let bits = (n.len() * 8).saturating_sub(n.first().map_or(0, |b| b.leading_zeros() as usize));
    let odd_above_one = e.last().is_some_and(|b| b & 1 == 1) && e != [1];
    ((2048..=8192).contains(&bits) && odd_above_one && e.len() <= 4)
        .then_some(Material::Rsa { n, e })
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
    /// Members of private keys: a JWKS that has them is a secret file, not a sender's
    /// public keys.
    #[serde(default)]
    d: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    k: Option<serde::de::IgnoredAny>,
}

/// Why a JWKS document gave no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::ingest::verify) enum JwksError {
    #[error("is not a JWKS document ({0}); expected {{\"keys\": [...]}}")]
    NotJwks(String),
    #[error(
        "key {index} holds private or secret key material (`d` or `k`); give the sender's public keys only"
    )]
    PrivateKey { index: usize },
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
    // The position only: serde's message could quote the file.
    let jwks: Jwks = serde_json::from_slice(text)
        .map_err(|e| JwksError::NotJwks(format!("line {}, column {}", e.line(), e.column())))?;
    let mut keys = Vec::new();
    for (i, jwk) in jwks.keys.iter().enumerate() {
        if jwk.d.is_some() || jwk.k.is_some() {
            return Err(JwksError::PrivateKey { index: i + 1 });
        }
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
            (Family::Rsa, "RSA", _) => rsa_material(b64(&jwk.n, "n")?, b64(&jwk.e, "e")?)
                .ok_or_else(|| bad("not an RSA key of 2048 to 8192 bits"))?,
            (Family::P256, "EC", Some("P-256")) | (Family::P384, "EC", Some("P-384")) => {
                let size = if family == Family::P256 { 32 } else { 48 };
                let (x, y) = (b64(&jwk.x, "x")?, b64(&jwk.y, "y")?);
                if x.len() != size || y.len() != size {
                    return Err(bad("`x` or `y` has the wrong length for the curve"));
                }
                let point = [&[0x04], &x[..], &y[..]].concat();
                if family == Family::P256 && p256_point(&point).is_none() {
                    return Err(bad("(`x`, `y`) is not a point on P-256"));
                }
                Material::Point(point)
            }
            (Family::Ed25519, "OKP", Some("Ed25519")) => Material::Point(
                ed25519_point(&b64(&jwk.x, "x")?)
                    .ok_or_else(|| bad("`x` is not an Ed25519 public key"))?,
            ),
            _ => continue,
        };
        keys.push(Key {
            kid: jwk.kid.clone(),
            alg: jwk.alg.as_deref().and_then(algorithm_of_name),
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

fn algorithm_of_name(alg: &str) -> Option<JwtAlgorithm> {
    serde_json::from_value(serde_json::Value::from(alg)).ok()
}

fn family_of_name(alg: &str) -> Option<Family> {
    Family::of(algorithm_of_name(alg)?)
}

/// `ring` wants big-endian integers without leading zero bytes, which some JWKS writers
/// keep (a sign byte).
fn without_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}
