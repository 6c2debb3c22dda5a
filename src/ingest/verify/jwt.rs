//! A JSON Web Token in a header (RFC 7519, signed as a JWS in compact form, RFC 7515):
//! the `jwt` kind, and the providers that sign this way (Netlify, Vonage, monday.com).
//!
//! A token is `base64url(header).base64url(claims).base64url(signature)`. The token's
//! `alg` must be the configured `algorithm` (so `none`, or an `HS256` token made with an
//! RSA public key as its secret, never passes), and the signature must match one of the
//! configured keys: shared secrets for `HS*`, public keys (PEM or a JWKS file) for the
//! others, tried by `kid` when the token names one. Only then are the claims read:
//! `exp` and `nbf` with `leeway`, `iat` against `max_age` when set, `iss` and `aud` when
//! configured, any `required_claims`, and the body-hash claim (`body_hash`), which is
//! what ties the token to this request's body: without it a token proves only who sent
//! the request, not what they sent.
//!
//! All checks use the request's receive time, as every other scheme does. Nothing is
//! fetched at runtime: a JWKS is read from a file at load (and on reload).

mod keys;
mod sign;
#[cfg(test)]
mod tests;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::{BuildError, FieldAt, OneOrMany, resolve_secrets};
use super::mac::{ct_eq, required_header};
use super::rejection::Rejection;
use crate::config::secret::SecretRef;
use crate::ingest::request::Unverified;

pub(super) use keys::{Key, Material};
pub(super) use sign::TokenSigner;

/// The signature algorithms the `jwt` kind accepts, named as in a token's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "HS384")]
    Hs384,
    #[serde(rename = "HS512")]
    Hs512,
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "RS384")]
    Rs384,
    #[serde(rename = "RS512")]
    Rs512,
    #[serde(rename = "PS256")]
    Ps256,
    #[serde(rename = "PS384")]
    Ps384,
    #[serde(rename = "PS512")]
    Ps512,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "ES384")]
    Es384,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl JwtAlgorithm {
    /// The name a token's `alg` carries.
    pub fn name(self) -> &'static str {
        use JwtAlgorithm::*;
        match self {
            Hs256 => "HS256",
            Hs384 => "HS384",
            Hs512 => "HS512",
            Rs256 => "RS256",
            Rs384 => "RS384",
            Rs512 => "RS512",
            Ps256 => "PS256",
            Ps384 => "PS384",
            Ps512 => "PS512",
            Es256 => "ES256",
            Es384 => "ES384",
            EdDsa => "EdDSA",
        }
    }

    /// Whether the key is a shared secret rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::Hs256 | JwtAlgorithm::Hs384 | JwtAlgorithm::Hs512
        )
    }

    /// `ring`'s verification algorithm for keys given as a point (EC, Ed25519); RSA
    /// keys use [`rsa_params`].
    fn point_algorithm(self) -> Option<&'static dyn VerificationAlgorithm> {
        use JwtAlgorithm::*;
        match self {
            Es256 => Some(&signature::ECDSA_P256_SHA256_FIXED),
            Es384 => Some(&signature::ECDSA_P384_SHA384_FIXED),
            EdDsa => Some(&signature::ED25519),
            _ => None,
        }
    }

    /// The HMAC of `parts` under `key`, for the `HS*` ones.
    pub(super) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        fn run<M: hmac::Mac + hmac::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
            let mut mac = <M as hmac::KeyInit>::new_from_slice(key).ok()?;
            for part in parts {
                mac.update(part);
            }
            Some(mac.finalize().into_bytes().to_vec())
        }
        match self {
            JwtAlgorithm::Hs256 => run::<hmac::Hmac<sha2::Sha256>>(key, parts),
            JwtAlgorithm::Hs384 => run::<hmac::Hmac<sha2::Sha384>>(key, parts),
            JwtAlgorithm::Hs512 => run::<hmac::Hmac<sha2::Sha512>>(key, parts),
            _ => None,
        }
    }
}

/// A claim that carries a hash of the body: `body_hash = { claim = "sha256" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyHash {
    /// The claim's name, e.g. `"sha256"` (Netlify) or `"payload_hash"` (Vonage).
    pub claim: String,
    /// `"sha256"` (default) or `"sha512"`.
    #[serde(default)]
    pub algorithm: BodyHashAlgorithm,
    /// `"hex"` (default, either case), `"base64"` or `"base64url"`.
    #[serde(default)]
    pub encoding: BodyHashEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyHashAlgorithm {
    #[default]
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyHashEncoding {
    #[default]
    Hex,
    Base64,
    Base64url,
}

impl BodyHash {
    /// The claim's value for `body`, as the sender writes it (hex in lower case).
    pub(super) fn of(&self, body: &[u8]) -> String {
        use sha2::Digest as _;
        let digest = match self.algorithm {
            BodyHashAlgorithm::Sha256 => sha2::Sha256::digest(body).to_vec(),
            BodyHashAlgorithm::Sha512 => sha2::Sha512::digest(body).to_vec(),
        };
        match self.encoding {
            BodyHashEncoding::Hex => hex::encode(digest),
            BodyHashEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
            BodyHashEncoding::Base64url => URL_SAFE_NO_PAD.encode(digest),
        }
    }

    fn matches(&self, claimed: &str, body: &[u8]) -> bool {
        let expected = self.of(body);
        match self.encoding {
            BodyHashEncoding::Hex => {
                ct_eq(expected.as_bytes(), claimed.to_ascii_lowercase().as_bytes())
            }
            BodyHashEncoding::Base64 => ct_eq(expected.as_bytes(), claimed.as_bytes()),
            BodyHashEncoding::Base64url => ct_eq(
                expected.as_bytes(),
                claimed.trim_end_matches('=').as_bytes(),
            ),
        }
    }
}

/// Where the keys come from and what the claims must say, as configured.
pub(super) struct Settings<'c> {
    pub header: &'c str,
    /// One algorithm, or several that take the same keys (`HS256` and `HS512`).
    pub algorithms: &'c [JwtAlgorithm],
    /// `HS*` secrets; an empty list otherwise.
    pub secret: &'c OneOrMany<SecretRef>,
    pub public_key: Option<&'c OneOrMany<SecretRef>>,
    pub jwks: Option<&'c SecretRef>,
    pub claims: Claims,
}

/// What the claims must say, besides the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claims {
    /// `iss` must be this.
    pub issuer: Option<String>,
    /// `aud` must be, or (as a list) contain, this.
    pub audience: Option<String>,
    /// Claims that must be present, whatever their value.
    pub required: Vec<String>,
    pub body_hash: Option<BodyHash>,
    /// A body with no bytes may come without the body-hash claim (MessageBird leaves it
    /// out then); otherwise the claim is always required.
    pub empty_body_unhashed: bool,
    /// A claim with the hex SHA-256 of the URL the request was sent to: the source's
    /// `public_url` and the request's query string (MessageBird's `url_hash`).
    pub url_hash: Option<UrlHash>,
    /// How far past `exp` (or before `nbf`, or `iat` in the future) a token is still
    /// taken: clocks differ.
    pub leeway: Duration,
    /// When set, `iat` is required and may be at most this old: what stops a captured
    /// request from being replayed while its token lives.
    pub max_age: Option<Duration>,
    /// A token without `exp` is refused (unless `max_age` bounds it instead).
    pub expiry_required: bool,
}

/// `url_hash`: the claim and the URL it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UrlHash {
    pub claim: &'static str,
    /// The source's URL as the sender posts to it, without a query string.
    pub public_url: String,
}

/// A source's `jwt` verifier.
#[derive(Clone)]
pub struct Jwt {
    header: String,
    /// Not empty; all take the same keys.
    algorithms: Vec<JwtAlgorithm>,
    keys: Vec<Key>,
    claims: Claims,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys: HS* ones are secrets.
        f.debug_struct("Jwt")
            .field("header", &self.header)
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys.len())
            .field("claims", &self.claims)
            .finish()
    }
}

/// The parts of a token, decoded, before any is trusted.
struct Token<'t> {
    /// The token's `alg`, one of the configured ones.
    algorithm: JwtAlgorithm,
    /// `header.claims`, the bytes that were signed.
    signed: &'t str,
    kid: Option<String>,
    claims: &'t str,
    signature: Vec<u8>,
}

impl Jwt {
    pub(super) fn build(s: Settings<'_>) -> Result<Self, BuildError> {
        http::HeaderName::try_from(s.header).map_err(|_| BuildError::HeaderName {
            field: "header",
            name: s.header.to_owned(),
        })?;
        if s.claims.leeway.subsec_nanos() != 0 {
            return Err(BuildError::Needs(
                "`leeway` must be whole seconds (JWT times are), e.g. \"60s\" or \"0s\"",
            ));
        }
        if s.claims.max_age.is_some_and(|age| age.as_secs() == 0) {
            return Err(BuildError::Needs(
                "`max_age` is under a second, which would reject nearly every token; use e.g. \"5m\"",
            ));
        }
        let Some((&first, rest)) = s.algorithms.split_first() else {
            return Err(BuildError::Needs(
                "`algorithm` is an empty list; give the algorithm the sender signs with, e.g. \"HS256\"",
            ));
        };
        if rest.iter().any(|&other| !keys::same_keys(first, other)) {
            return Err(BuildError::Needs(
                "`algorithm` lists algorithms that take different keys; list only HS*, only RS*/PS*, or one of ES256, ES384 and EdDSA",
            ));
        }
        let keys = build_keys(&s, first)?;
        Ok(Self {
            header: s.header.to_owned(),
            algorithms: s.algorithms.to_vec(),
            keys,
            claims: s.claims,
        })
    }

    /// The algorithm tokens made for this source use: the first configured.
    pub(super) fn algorithm(&self) -> JwtAlgorithm {
        self.algorithms[0]
    }

    pub(super) fn header(&self) -> &str {
        &self.header
    }

    pub(super) fn claims(&self) -> &Claims {
        &self.claims
    }

    pub(super) fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let value = required_header(req, &self.header)?;
        let token = self.parse(value)?;
        if !self.signature_matches(&token) {
            return Err(Rejection::NoSignatureMatched);
        }
        let claims: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(token.claims)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| {
                Rejection::malformed(&self.header, "the token's claims are not a JSON object")
            })?;
        self.check_claims(&claims, req)
    }

    /// Splits and decodes a token, checking its header. Nothing here is trusted yet.
    fn parse<'t>(&self, value: &'t str) -> Result<Token<'t>, Rejection> {
        let malformed = |problem| Rejection::malformed(&self.header, problem);
        let token = strip_bearer(value.trim());
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "is not a JWT (three base64url parts separated by dots)",
            ));
        };
        let header_json: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| malformed("the token's header is not base64url of a JSON object"))?;
        let alg = header_json.get("alg").and_then(Value::as_str);
        let Some(&algorithm) = self.algorithms.iter().find(|a| Some(a.name()) == alg) else {
            return Err(malformed(
                "the token's `alg` is not an algorithm this source is configured with",
            ));
        };
        if header_json.contains_key("crit") {
            return Err(malformed(
                "the token lists `crit` extensions, which forebay does not implement",
            ));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| malformed("the token's signature is not base64url"))?;
        Ok(Token {
            algorithm,
            signed: &token[..header.len() + 1 + claims.len()],
            kid: header_json
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_owned),
            claims,
            signature,
        })
    }

    fn signature_matches(&self, token: &Token<'_>) -> bool {
        // A token that names its key is tried with that key (and with keys that have no
        // id); one that does not is tried with every key.
        let candidates = self.keys.iter().filter(|key| {
            let named = match (&token.kid, &key.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            };
            named && key.alg.is_none_or(|alg| alg == token.algorithm)
        });
        let signed = token.signed.as_bytes();
        let mut found = false;
        for key in candidates {
            // No early exit among secrets: which one matched is not revealed by timing.
            found |= verify_with(token.algorithm, &key.material, signed, &token.signature);
        }
        found
    }

    fn check_claims(&self, claims: &Map<String, Value>, req: &Unverified) -> Result<(), Rejection> {
        self.check_times(claims, req.received_at_secs())?;
        self.check_contents(claims, req)
    }

    /// `exp`, `nbf` and `iat` against the receive time.
    fn check_times(&self, claims: &Map<String, Value>, now: i64) -> Result<(), Rejection> {
        let c = &self.claims;
        let leeway = c.leeway.as_secs();
        let exp = time_claim(claims, "exp")?;
        // RFC 7519 section 4.1.4: not accepted "on or after" the expiry.
        if let Some(exp) = exp
            && now >= exp.saturating_add_unsigned(leeway)
        {
            return Err(claim(
                "exp",
                format!(
                    "the token expired {}s before the request arrived (leeway {leeway}s)",
                    now.abs_diff(exp)
                ),
            ));
        }
        if let Some(nbf) = time_claim(claims, "nbf")?
            && nbf > now.saturating_add_unsigned(leeway)
        {
            return Err(claim(
                "nbf",
                format!(
                    "the token is valid only {}s after the request arrived (leeway {leeway}s); check the sender's clock",
                    nbf.abs_diff(now)
                ),
            ));
        }
        let iat = time_claim(claims, "iat")?;
        if let Some(iat) = iat
            && iat > now.saturating_add_unsigned(leeway)
        {
            return Err(claim(
                "iat",
                format!(
                    "the token was issued {}s after the request arrived (leeway {leeway}s); check the sender's clock",
                    iat.abs_diff(now)
                ),
            ));
        }
        if exp.is_none() && c.expiry_required && c.max_age.is_none() {
            return Err(claim(
                "exp",
                "is missing, so the token would never expire; the sender must set it (or set `max_age`, or `require_exp = false`)".into(),
            ));
        }
        if let Some(max_age) = c.max_age {
            let Some(iat) = iat else {
                return Err(claim("iat", "is missing, and `max_age` needs it".into()));
            };
            let age = now.saturating_sub(iat);
            if age > 0 && age.unsigned_abs() > max_age.as_secs() {
                return Err(claim(
                    "iat",
                    format!(
                        "the token was issued {age}s before the request arrived, more than `max_age` ({}s)",
                        max_age.as_secs()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `iss`, `aud`, the required claims and the URL and body hashes.
    fn check_contents(
        &self,
        claims: &Map<String, Value>,
        req: &Unverified,
    ) -> Result<(), Rejection> {
        let c = &self.claims;
        if let Some(issuer) = &c.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(claim("iss", "is not the configured `issuer`".into()));
        }
        if let Some(audience) = &c.audience {
            let listed = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !listed {
                return Err(claim(
                    "aud",
                    "does not name the configured `audience`".into(),
                ));
            }
        }
        if let Some(missing) = c.required.iter().find(|name| !claims.contains_key(*name)) {
            return Err(claim(
                missing,
                "is missing, and `required_claims` lists it".into(),
            ));
        }
        if let Some(url_hash) = &c.url_hash {
            let url = match &req.query {
                Some(query) => format!("{}?{query}", url_hash.public_url),
                None => url_hash.public_url.clone(),
            };
            let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(url.as_bytes()));
            let claimed = claims.get(url_hash.claim).and_then(Value::as_str);
            if !claimed.is_some_and(|claimed| {
                ct_eq(expected.as_bytes(), claimed.to_ascii_lowercase().as_bytes())
            }) {
                return Err(claim(
                    url_hash.claim,
                    "is not the hash of `public_url` and the request's query string (check `public_url` against the URL entered at the sender)".into(),
                ));
            }
        }
        if let Some(body_hash) = &c.body_hash {
            self.check_body_hash(body_hash, claims.get(&body_hash.claim), &req.body)?;
        }
        Ok(())
    }

    fn check_body_hash(
        &self,
        body_hash: &BodyHash,
        claimed: Option<&Value>,
        body: &[u8],
    ) -> Result<(), Rejection> {
        if claimed.is_none() && body.is_empty() && self.claims.empty_body_unhashed {
            return Ok(());
        }
        let Some(claimed) = claimed.and_then(Value::as_str) else {
            return Err(claim(&body_hash.claim, "is missing or not a string".into()));
        };
        if !body_hash.matches(claimed, body) {
            return Err(claim(
                &body_hash.claim,
                "is not the hash of the body that arrived (the body was changed on the way, or re-serialised)".into(),
            ));
        }
        Ok(())
    }
}

/// A token in `Authorization` usually comes as `Bearer <token>`; a JWT never contains a
/// space, so the scheme word is removed wherever the token is.
fn strip_bearer(value: &str) -> &str {
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
        _ => value,
    }
}

/// Whether `signature` over `signed` was made with `key` under `algorithm`.
pub(super) fn verify_with(
    algorithm: JwtAlgorithm,
    key: &Material,
    signed: &[u8],
    signature: &[u8],
) -> bool {
    // `hmac`, `rsa_params` and `point_algorithm` each answer only for their family, so
    // a key is never used with another family's algorithm.
    match key {
        Material::Hmac(secret) => algorithm
            .hmac(secret.expose(), &[signed])
            .is_some_and(|expected| ct_eq(&expected, signature)),
        Material::Rsa { n, e } => rsa_params(algorithm).is_some_and(|params| {
            RsaPublicKeyComponents { n, e }
                .verify(params, signed, signature)
                .is_ok()
        }),
        Material::Point(point) => algorithm.point_algorithm().is_some_and(|alg| {
            UnparsedPublicKey::new(alg, point)
                .verify(signed, signature)
                .is_ok()
        }),
    }
}

fn rsa_params(algorithm: JwtAlgorithm) -> Option<&'static signature::RsaParameters> {
    use JwtAlgorithm::*;
    Some(match algorithm {
        Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
        Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// A NumericDate claim (seconds, possibly fractional) as whole seconds; `None` when
/// absent.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| claim(name, "is not a number of seconds".into())),
    }
}

fn claim(name: &str, problem: String) -> Rejection {
    Rejection::Claim {
        claim: name.to_owned(),
        problem,
    }
}

/// The configured keys, each checked against the algorithm (`algorithm`, the first
/// configured, stands for them all: they take the same keys).
fn build_keys(s: &Settings<'_>, algorithm: JwtAlgorithm) -> Result<Vec<Key>, BuildError> {
    let given_secret = !s.secret.as_slice().is_empty();
    if algorithm.is_hmac() {
        if s.public_key.is_some() || s.jwks.is_some() {
            return Err(BuildError::Needs(
                "`HS*` algorithms are checked with a shared `secret`, not `public_key` or `jwks`; remove them, or set the algorithm the sender signs with",
            ));
        }
        return Ok(resolve_secrets("secret", s.secret)?
            .into_iter()
            .map(|(_, secret)| Key {
                kid: None,
                alg: None,
                material: Material::Hmac(secret),
            })
            .collect());
    }
    if given_secret {
        return Err(BuildError::Needs(
            "`secret` is only for `HS*` algorithms; an asymmetric algorithm needs the sender's `public_key` (PEM) or `jwks` (a JWKS file)",
        ));
    }
    match (s.public_key, s.jwks) {
        (Some(_), Some(_)) => Err(BuildError::Needs(
            "give either `public_key` or `jwks`, not both",
        )),
        (None, None) => Err(BuildError::Needs(
            "an asymmetric algorithm needs the sender's `public_key` (a PEM PUBLIC KEY, e.g. \"file:sender.pem\") or `jwks` (e.g. \"file:jwks.json\")",
        )),
        (Some(refs), None) => resolve_secrets("public_key", refs)?
            .into_iter()
            .map(|(at, text)| {
                keys::from_pem(text.expose(), algorithm)
                    .map(|material| Key {
                        kid: None,
                        alg: None,
                        material,
                    })
                    .ok_or(BuildError::Key {
                        at,
                        expected: keys::pem_expected(algorithm),
                    })
            })
            .collect(),
        (None, Some(jwks)) => {
            let at = FieldAt {
                field: "jwks",
                item: None,
            };
            let text = jwks
                .resolve()
                .map_err(|source| BuildError::Secret { at, source })?;
            keys::from_jwks(text.expose(), algorithm).map_err(|problem| BuildError::Jwks {
                problem: problem.to_string(),
            })
        }
    }
}
