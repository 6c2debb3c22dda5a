//! `[sources.NAME.verify]` as written in the TOML, and [`VerifyConfig::build`], which
//! resolves its secrets once at load time into a [`Verifier`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::value::SeqAccessDeserializer;
use serde::de::{self, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::certificate::{self, CertificateAlgorithm};
use super::hmac::TemplateError;
use super::jwt::{BodyHash, JwtAlgorithm};
use super::presets::{self, KeyUse, Preset};
use super::{Verifier, basic, bearer, github, hmac, jwt, standard_webhooks, stripe};
use crate::config::secret::{Secret, SecretError, SecretRef};

/// How a source checks that a request comes from its sender.
///
/// Deserialized by hand (below): `kind` picks either one of these variants, read as an
/// internally tagged enum would be, or a provider from the preset table
/// ([`presets::PRESETS`]), read as [`PresetConfig`]. The `remote = "Self"` attribute
/// makes the derived code an inherent `VerifyConfig::deserialize` for the built-in kinds.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(
    remote = "Self",
    tag = "kind",
    rename_all = "kebab-case",
    deny_unknown_fields
)]
pub enum VerifyConfig {
    /// Accept every request unchecked. Only for senders on a trusted network.
    #[default]
    None,
    /// Stripe: the `Stripe-Signature` header (`t=...,v1=...`), HMAC-SHA256 over
    /// `{t}.{body}`.
    Stripe {
        /// The endpoint's signing secret as Stripe shows it (`whsec_...`), or a list of
        /// them while rolling a secret: a request passes when any one matches.
        secret: OneOrMany<SecretRef>,
        /// How far the signed timestamp may be from the time forebay received the
        /// request, e.g. `"5m"`. Older (or newer) requests are rejected as replays.
        #[serde(default = "default_tolerance", deserialize_with = "duration")]
        tolerance: Duration,
    },
    /// GitHub: the `X-Hub-Signature-256` header (`sha256=<hex>`), HMAC-SHA256 over the
    /// body. The legacy SHA-1 `X-Hub-Signature` header is not accepted.
    Github {
        /// The webhook's secret as entered in GitHub, or a list of them while changing
        /// it: a request passes when any one matches.
        secret: OneOrMany<SecretRef>,
    },
    /// Standard Webhooks (also Svix and the providers built on it): `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature` headers (or their `svix-` twins),
    /// signatures over `{id}.{timestamp}.{body}`: `v1` (HMAC-SHA256, with `secret`)
    /// and/or `v1a` (Ed25519, with `public_key`). At least one of the two is required.
    StandardWebhooks {
        /// The signing secret as the provider shows it (`whsec_` followed by base64;
        /// the prefix may be left out), or a list of them while rotating.
        #[serde(default = "no_values")]
        secret: OneOrMany<SecretRef>,
        /// The sender's Ed25519 public key (`whpk_` followed by base64), or a list of
        /// them while rotating. Not a secret, but may come from `env:` or `file:`.
        #[serde(default)]
        public_key: Option<OneOrMany<SecretRef>>,
        /// The private key (`whsk_` followed by base64) matching `public_key`. Only
        /// `forebay send` reads it, to sign `v1a`; the server never does.
        #[serde(default)]
        signing_key: Option<SecretRef>,
        /// How far `webhook-timestamp` may be from the receive time, e.g. `"5m"`.
        #[serde(default = "default_tolerance", deserialize_with = "duration")]
        tolerance: Duration,
    },
    /// Any HMAC signature in one header, for senders without a built-in kind.
    Hmac {
        /// The shared secret (used as raw bytes), or a list of them while rotating.
        secret: OneOrMany<SecretRef>,
        /// The header that carries the signature, e.g. `"X-Signature"`.
        header: String,
        /// The hash: `"sha1"`, `"sha256"` (default) or `"sha512"`.
        #[serde(default)]
        algorithm: HmacAlgorithm,
        /// How the signature is written: `"hex"` (default) or `"base64"`.
        #[serde(default)]
        encoding: SignatureEncoding,
        /// Text before the signature in the header, e.g. `"sha256="`; matched without
        /// regard to case and removed before decoding.
        #[serde(default)]
        prefix: Option<String>,
        /// The header that carries the signing time in Unix seconds, if the sender signs
        /// one. Setting it turns on the `tolerance` check.
        #[serde(default)]
        timestamp_header: Option<String>,
        /// What is signed, with placeholders `{body}`, `{timestamp}`, `{method}`,
        /// `{url}` (needs `public_url`) and `{header:Name}` (`{{` and `}}` for literal
        /// braces). Default: `"{body}"`, or `"{timestamp}.{body}"` when
        /// `timestamp_header` is set.
        #[serde(default)]
        signed: Option<String>,
        /// How `timestamp_header` writes the time: `"unix"` seconds (default),
        /// `"unix-ms"` milliseconds, or `"rfc3339"` (`2023-07-19T14:56:51.634Z`).
        #[serde(default)]
        timestamp_format: TimestampFormat,
        /// The source's URL as the sender posts to it, without a query string: what
        /// `{url}` stands for (the request's own query string is appended).
        #[serde(default)]
        public_url: Option<String>,
        /// How far the signed timestamp may be from the receive time, e.g. `"5m"`.
        /// Only used with `timestamp_header`.
        #[serde(default = "default_tolerance", deserialize_with = "duration")]
        tolerance: Duration,
    },
    /// A JSON Web Token in a header (`Authorization: Bearer <jwt>` by default), signed
    /// with a shared secret (`HS256`, ...) or the sender's private key (`RS256`,
    /// `ES256`, `EdDSA`, ...).
    Jwt {
        /// The header that carries the token; a leading `Bearer ` is removed.
        #[serde(default = "default_jwt_header")]
        header: String,
        /// The token's `alg`: `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`,
        /// `PS256`, `PS384`, `PS512`, `ES256`, `ES384` or `EdDSA`; or a list of those
        /// that take the same keys (`["HS256", "HS512"]`). Tokens with another `alg`
        /// are refused.
        algorithm: OneOrMany<JwtAlgorithm>,
        /// For `HS*`: the shared secret (its bytes), or a list while rotating.
        #[serde(default = "no_values")]
        secret: OneOrMany<SecretRef>,
        /// For the others: the sender's public key as a PEM `PUBLIC KEY` block
        /// (usually `"file:..."`), or a list of them while rotating.
        #[serde(default)]
        public_key: Option<OneOrMany<SecretRef>>,
        /// For the others, instead of `public_key`: a JWKS document (`"file:jwks.json"`),
        /// read at load; a token's `kid` picks the key.
        #[serde(default)]
        jwks: Option<SecretRef>,
        /// The private key (PEM `PRIVATE KEY`, PKCS#8) matching a public key. Only
        /// `forebay send` reads it, to sign as the sender; the server never does.
        #[serde(default)]
        signing_key: Option<SecretRef>,
        /// When set, `iss` must be exactly this.
        #[serde(default)]
        issuer: Option<String>,
        /// When set, `aud` must be this (or a list that contains it).
        #[serde(default)]
        audience: Option<String>,
        /// Claims that must be present, e.g. `["exp", "jti"]`.
        #[serde(default)]
        required_claims: Vec<String>,
        /// A claim that carries a hash of the body, which ties the token to it:
        /// `{ claim = "sha256" }`, with `algorithm` (`"sha256"` or `"sha512"`) and
        /// `encoding` (`"hex"`, `"base64"` or `"base64url"`).
        #[serde(default)]
        body_hash: Option<BodyHash>,
        /// How far clocks may differ when `exp`, `nbf` and `iat` are checked.
        #[serde(default = "default_leeway", deserialize_with = "duration")]
        leeway: Duration,
        /// When set, `iat` is required and at most this old (e.g. `"5m"`): replays of a
        /// captured request are refused even while its token has not expired.
        #[serde(default, deserialize_with = "optional_duration")]
        max_age: Option<Duration>,
        /// A token without `exp` is refused unless `max_age` is set (default `true`):
        /// one that never expires would pass forever.
        #[serde(default = "yes")]
        require_exp: bool,
    },
    /// A signature made with the private key of a certificate the operator pins (PEM),
    /// over a template of the request (PayPal's kind of scheme).
    Certificate {
        /// The sender's signing certificate as a PEM `CERTIFICATE` block (usually
        /// `"file:..."`), or a list while it rotates.
        certificate: OneOrMany<SecretRef>,
        /// `"rsa-sha256"` (default; Java's `SHA256withRSA`), `"rsa-sha512"`,
        /// `"rsa-pss-sha256"`, `"ecdsa-p256-sha256"`, `"ecdsa-p384-sha384"` (DER
        /// signatures) or `"ed25519"`.
        #[serde(default)]
        algorithm: CertificateAlgorithm,
        /// The header that carries the signature.
        header: String,
        /// `"base64"` (default) or `"hex"`.
        #[serde(default = "base64_encoding")]
        encoding: SignatureEncoding,
        /// What is signed: `{body}` or `{body_crc32}` (the zlib CRC-32 as a decimal
        /// number; only with a `timestamp_header`), with `{timestamp}`, `{header:Name}`,
        /// `{method}` and `{url}` as for the `hmac` kind, e.g.
        /// `"{header:X-Id}|{timestamp}|{body}"`.
        signed: String,
        /// The header with the signing time, if the sender signs one; turns on the
        /// `tolerance` check.
        #[serde(default)]
        timestamp_header: Option<String>,
        #[serde(default)]
        timestamp_format: TimestampFormat,
        #[serde(default = "default_tolerance", deserialize_with = "duration")]
        tolerance: Duration,
        /// The URL the sender posts to, without a query string: what `{url}` stands for.
        #[serde(default)]
        public_url: Option<String>,
        /// The certificate's private key (PEM `PRIVATE KEY`, PKCS#8). Only `forebay send`
        /// reads it.
        #[serde(default)]
        signing_key: Option<SecretRef>,
    },
    /// HTTP Basic authentication: `Authorization: Basic base64(username:password)`.
    Basic {
        /// The expected user name (not secret; must not contain `:`).
        username: String,
        /// The expected password, or a list of them while changing it.
        password: OneOrMany<SecretRef>,
    },
    /// A bearer token: `Authorization: Bearer <token>`.
    Bearer {
        /// The expected token, or a list of them while rotating.
        token: OneOrMany<SecretRef>,
    },
    /// A named provider (`shopify`, `slack`, `paddle`, ...): see `presets.rs`.
    #[serde(skip)]
    Preset(PresetConfig),
}

/// The `kind`s with a variant of their own, as written in the TOML.
const BUILT_IN: [&str; 9] = [
    "none",
    "stripe",
    "github",
    "standard-webhooks",
    "hmac",
    "jwt",
    "certificate",
    "basic",
    "bearer",
];

/// A provider preset's settings: which provider, its secret(s) and, where the provider
/// signs a timestamp, the tolerance.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetConfig {
    pub preset: &'static Preset,
    /// The provider's signing secret, or a list of them while rotating. An empty list
    /// for presets verified with a public key only (`discord`, `sendgrid`) and for a
    /// Standard Webhooks preset given only a `public_key`.
    pub secret: OneOrMany<SecretRef>,
    /// The provider's public key(s), for presets that verify with one: required by
    /// `discord`, `telnyx` and `sendgrid`, optional (`v1a`) for the Standard Webhooks
    /// presets; PayPal's pinned `certificate`.
    pub public_key: Option<OneOrMany<SecretRef>>,
    /// The private key matching `public_key`, read only by `forebay send` (and tests)
    /// to sign as the provider would; the server never reads it.
    pub signing_key: Option<SecretRef>,
    /// How far the signed timestamp may be from the receive time; `None`: the preset's
    /// default. Only accepted for presets that sign a timestamp.
    pub tolerance: Option<Duration>,
    /// The source's URL as the sender posts to it (Square and Twilio sign it), without
    /// a query string. Required by, and only accepted for, presets that sign the URL.
    pub public_url: Option<String>,
    /// Keys only a few presets take.
    pub extras: PresetExtras,
}

/// Keys only a few presets take (see `Preset::keys`); `None` where not given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PresetExtras {
    /// Meta: the Verify Token entered beside the callback URL, checked on the
    /// subscription GET.
    pub verify_token: Option<OneOrMany<SecretRef>>,
    /// Okta: the header that carries the secret (default `Authorization`).
    pub header: Option<String>,
    /// Postmark: the Basic authentication user name.
    pub username: Option<String>,
    /// GitLab: the webhook's signing token (`whsec_…`), for its Standard Webhooks
    /// signature.
    pub signing_token: Option<OneOrMany<SecretRef>>,
    /// PayPal: the webhook's id in the developer dashboard, which PayPal signs.
    pub webhook_id: Option<String>,
}

/// Every key a preset may take, read before the preset's own list is applied.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnyPresetKeys {
    secret: Option<OneOrMany<SecretRef>>,
    password: Option<OneOrMany<SecretRef>>,
    #[serde(default, deserialize_with = "optional_duration")]
    tolerance: Option<Duration>,
    public_url: Option<String>,
    verify_token: Option<OneOrMany<SecretRef>>,
    header: Option<String>,
    username: Option<String>,
    signing_token: Option<OneOrMany<SecretRef>>,
    certificate: Option<OneOrMany<SecretRef>>,
    webhook_id: Option<String>,
    signing_key: Option<SecretRef>,
}

impl AnyPresetKeys {
    fn given(&self) -> Vec<&'static str> {
        let present = [
            ("secret", self.secret.is_some()),
            ("password", self.password.is_some()),
            ("tolerance", self.tolerance.is_some()),
            ("public_url", self.public_url.is_some()),
            ("verify_token", self.verify_token.is_some()),
            ("header", self.header.is_some()),
            ("username", self.username.is_some()),
            ("signing_token", self.signing_token.is_some()),
            ("certificate", self.certificate.is_some()),
            ("webhook_id", self.webhook_id.is_some()),
            ("signing_key", self.signing_key.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(key, given)| given.then_some(key))
            .collect()
    }
}

/// Reads a preset that lists its keys ([`Preset::keys`]): unknown and missing keys are
/// reported in serde's words, as for the other presets.
fn preset_with_keys<E: de::Error>(
    preset: &'static Preset,
    keys: presets::Keys,
    table: toml::Value,
    relay: impl Fn(toml::de::Error) -> E,
) -> Result<PresetConfig, E> {
    let any = AnyPresetKeys::deserialize(table).map_err(relay)?;
    let allowed: Vec<&'static str> = keys.required.iter().chain(keys.optional).copied().collect();
    let given = any.given();
    if let Some(unknown) = given.iter().find(|key| !allowed.contains(key)) {
        let expected: Vec<String> = allowed.iter().map(|key| format!("`{key}`")).collect();
        return Err(E::custom(format!(
            "unknown field `{unknown}`, expected one of {}",
            expected.join(", ")
        )));
    }
    if let Some(missing) = keys.required.iter().find(|key| !given.contains(key)) {
        return Err(E::missing_field(missing));
    }
    Ok(PresetConfig {
        preset,
        // A preset whose secret is optional (Asana before its handshake, GitLab with
        // only a signing token) gets an empty list, which its build accepts.
        secret: any
            .secret
            .or(any.password)
            .unwrap_or(OneOrMany::Many(Vec::new())),
        // A pinned certificate is the sender's public key.
        public_key: any.certificate,
        signing_key: any.signing_key,
        tolerance: any.tolerance,
        public_url: any.public_url,
        extras: PresetExtras {
            verify_token: any.verify_token,
            header: any.header,
            username: any.username,
            signing_token: any.signing_token,
            webhook_id: any.webhook_id,
        },
    })
}

/// Every valid `kind`: the built-in ones, then the presets. Listed in full when a
/// `kind` is unknown.
fn all_kinds() -> &'static [&'static str] {
    static ALL: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        BUILT_IN
            .iter()
            .copied()
            .chain(presets::PRESETS.iter().map(|p| p.name))
            .collect()
    });
    &ALL
}

impl<'de> Deserialize<'de> for VerifyConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Buffered as a TOML table (the configuration's own format) so that `kind` can
        // be read before choosing how to read the rest. Errors keep serde's wording
        // ("missing field", "unknown field ..., expected ..."), which the loader turns
        // into key paths.
        let mut table = toml::Table::deserialize(d)?;
        let kind = match table.get("kind") {
            None => return Err(de::Error::missing_field("kind")),
            Some(toml::Value::String(kind)) => kind.clone(),
            Some(_) => {
                return Err(de::Error::custom(
                    "`kind` must be a string, e.g. \"github\"",
                ));
            }
        };
        let relay = |e: toml::de::Error| <D::Error as de::Error>::custom(e.message().trim_end());
        if BUILT_IN.contains(&kind.as_str()) {
            return VerifyConfig::deserialize(toml::Value::Table(table)).map_err(relay);
        }
        let Some(preset) = presets::find(&kind) else {
            return Err(de::Error::unknown_variant(&kind, all_kinds()));
        };
        table.remove("kind");
        let table = toml::Value::Table(table);
        if let Some(keys) = preset.keys() {
            return preset_with_keys(preset, keys, table, relay).map(VerifyConfig::Preset);
        }
        let mut public_key = None;
        let mut signing_key = None;
        let (secret, tolerance, public_url) = match preset.public_key_use() {
            KeyUse::Required => {
                let keyed = KeyPreset::deserialize(table).map_err(relay)?;
                public_key = Some(keyed.public_key);
                signing_key = keyed.signing_key;
                (no_values(), keyed.tolerance, None)
            }
            KeyUse::Optional => {
                let either = EitherPreset::deserialize(table).map_err(relay)?;
                public_key = either.public_key;
                signing_key = either.signing_key;
                (either.secret, either.tolerance, None)
            }
            KeyUse::None if preset.needs_public_url() => {
                let signed_url = UrlPreset::deserialize(table).map_err(relay)?;
                (signed_url.secret, None, Some(signed_url.public_url))
            }
            KeyUse::None if preset.signs_timestamp() => {
                let timed = TimedPreset::deserialize(table).map_err(relay)?;
                (timed.secret, timed.tolerance, None)
            }
            KeyUse::None => {
                let untimed = UntimedPreset::deserialize(table).map_err(relay)?;
                (untimed.secret, None, None)
            }
        };
        Ok(VerifyConfig::Preset(PresetConfig {
            preset,
            secret,
            public_key,
            signing_key,
            tolerance,
            public_url,
            extras: PresetExtras::default(),
        }))
    }
}

/// The keys of a preset verified with the provider's public key (Discord, SendGrid).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPreset {
    public_key: OneOrMany<SecretRef>,
    #[serde(default)]
    signing_key: Option<SecretRef>,
    #[serde(default, deserialize_with = "optional_duration")]
    tolerance: Option<Duration>,
}

/// The keys of a preset verified with a secret, a public key or both (Standard Webhooks).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EitherPreset {
    #[serde(default = "no_values")]
    secret: OneOrMany<SecretRef>,
    #[serde(default)]
    public_key: Option<OneOrMany<SecretRef>>,
    #[serde(default)]
    signing_key: Option<SecretRef>,
    #[serde(default, deserialize_with = "optional_duration")]
    tolerance: Option<Duration>,
}

/// An absent `secret` of a scheme that may do without one.
fn no_values<T>() -> OneOrMany<T> {
    OneOrMany::Many(Vec::new())
}

/// The keys of a preset that signs a timestamp.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimedPreset {
    secret: OneOrMany<SecretRef>,
    #[serde(default, deserialize_with = "optional_duration")]
    tolerance: Option<Duration>,
}

/// The keys of a preset that signs the URL it posts to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlPreset {
    secret: OneOrMany<SecretRef>,
    /// e.g. `"https://hooks.example.com/in/square"`, exactly as entered at the sender.
    public_url: String,
}

/// The keys of a preset that signs no timestamp: no `tolerance`, which would do nothing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UntimedPreset {
    secret: OneOrMany<SecretRef>,
}

/// The hash used by the generic `hmac` kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1, only for senders that offer nothing stronger.
    Sha1,
    /// HMAC-SHA256, what most senders use.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a timestamp header writes the signing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampFormat {
    /// Unix seconds, digits only.
    #[default]
    Unix,
    /// Unix milliseconds, digits only (HubSpot).
    UnixMs,
    /// An RFC 3339 time, e.g. `2023-07-19T14:56:51.634234626Z` (Twitch) or
    /// `2020-01-01T00:00:00-07:00` (Box).
    Rfc3339,
}

impl TimestampFormat {
    /// What a value that does not parse should have been, for the rejection.
    pub(super) fn expected(self) -> &'static str {
        match self {
            TimestampFormat::Unix => "is not a whole number of seconds",
            TimestampFormat::UnixMs => "is not a whole number of milliseconds",
            TimestampFormat::Rfc3339 => "is not an RFC 3339 time",
        }
    }
}

/// How the generic `hmac` kind's signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Hexadecimal digits, either case.
    #[default]
    Hex,
    /// Standard base64 (`+` and `/`), with or without `=` padding.
    Base64,
}

/// One value or a list of them, so that `secret = "..."` and
/// `secret = ["new", "old"]` (during rotation) both read naturally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany<T> {
    /// A single value, `secret = "..."`.
    One(T),
    /// A list, `secret = ["...", "..."]`; any one of them is accepted.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

// Written by hand rather than `#[serde(untagged)]` so that a wrong type gets "expected a
// string or a list of strings" instead of "did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
        }

        d.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

fn default_tolerance() -> Duration {
    Duration::from_secs(5 * 60)
}

fn yes() -> bool {
    true
}

fn base64_encoding() -> SignatureEncoding {
    SignatureEncoding::Base64
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}

fn default_jwt_header() -> String {
    "Authorization".to_owned()
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write it like \"30s\" or \"5m\""
        ))
    })
}

/// Which configured value a build error is about: `secret`, or `secret` item 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAt {
    pub field: &'static str,
    /// 1-based position in a list; `None` when a single value was given.
    pub item: Option<usize>,
}

impl fmt::Display for FieldAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            Some(n) => write!(f, "`{}` item {n}", self.field),
            None => write!(f, "`{}`", self.field),
        }
    }
}

/// Why a `verify` section could not be turned into a verifier. The caller prefixes the
/// key path (`sources.NAME.verify`).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{at}: {source}")]
    Secret {
        at: FieldAt,
        #[source]
        source: SecretError,
    },
    #[error("`{field}` is an empty list; give at least one value")]
    NoSecrets { field: &'static str },
    #[error(
        "{at}: not valid base64 after the optional `whsec_` prefix ({source}); copy the signing secret exactly as the provider shows it"
    )]
    SecretNotBase64 {
        at: FieldAt,
        #[source]
        source: base64::DecodeError,
    },
    #[error("{at}: decodes to zero bytes; copy the whole signing secret")]
    SecretDecodesEmpty { at: FieldAt },
    #[error(
        "{at}: contains whitespace, which the provider never puts in a secret; remove the stray space or newline"
    )]
    SecretWhitespace { at: FieldAt },
    #[error("`tolerance` is zero, which would reject nearly every request; use e.g. \"5m\"")]
    ZeroTolerance,
    #[error("`{field}` = {name:?} is not a valid HTTP header name; write it like \"X-Signature\"")]
    HeaderName { field: &'static str, name: String },
    #[error("`signed`: {0}")]
    Template(#[from] TemplateError),
    #[error("{at}: not {expected}; copy the key exactly as the provider shows it")]
    Key { at: FieldAt, expected: &'static str },
    #[error(
        "neither `secret` (HMAC, `whsec_...`) nor `public_key` (Ed25519, `whpk_...`) is set; give the one the sender signs with, or both"
    )]
    NoKeys,
    #[error(
        "kind {kind:?} is verified with the sender's public key, so signing needs its private key: add `signing_key` (e.g. \"env:FOREBAY_SIGNING_KEY\"; only `forebay send` reads it) to this verify table"
    )]
    NoSigningKey { kind: &'static str },
    #[error(
        "`signing_key` does not belong to any `public_key`: the server would refuse what it signs; give the private key of one of the public keys"
    )]
    SigningKeyMismatch,
    #[error("`jwks` {problem}")]
    Jwks { problem: String },
    #[error("`public_url` {problem}")]
    PublicUrl { problem: &'static str },
    #[error(
        "`username` contains `:`, which Basic authentication uses to end the user name; choose a user name without it"
    )]
    UsernameColon,
    /// A key that is needed unless another is given.
    #[error("{0}")]
    Needs(&'static str),
}

/// Reads every secret of a `secret`/`password`/`token` value, keeping its position for
/// error messages.
pub(super) fn resolve_secrets(
    field: &'static str,
    refs: &OneOrMany<SecretRef>,
) -> Result<Vec<(FieldAt, Secret)>, BuildError> {
    let list = refs.as_slice();
    if list.is_empty() {
        return Err(BuildError::NoSecrets { field });
    }
    let many = matches!(refs, OneOrMany::Many(_));
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = FieldAt {
                field,
                item: many.then_some(i + 1),
            };
            r.resolve()
                .map(|secret| (at, secret))
                .map_err(|source| BuildError::Secret { at, source })
        })
        .collect()
}

/// Every secret of a value, without positions: for schemes that use them as they are.
pub(super) fn resolve_all(
    field: &'static str,
    refs: &OneOrMany<SecretRef>,
) -> Result<Vec<Secret>, BuildError> {
    Ok(resolve_secrets(field, refs)?
        .into_iter()
        .map(|(_, secret)| secret)
        .collect())
}

pub(super) fn check_tolerance_setting(tolerance: Duration) -> Result<(), BuildError> {
    // Sub-second tolerances truncate to zero seconds, and timestamps are whole seconds.
    if tolerance.as_secs() == 0 {
        return Err(BuildError::ZeroTolerance);
    }
    Ok(())
}

impl VerifyConfig {
    /// Resolves the secrets and checks the settings, once, at configuration load.
    pub fn build(&self) -> Result<Verifier, BuildError> {
        Ok(match self {
            VerifyConfig::None => Verifier::None,
            VerifyConfig::Stripe { secret, tolerance } => {
                Verifier::Stripe(stripe::Stripe::build(secret, *tolerance)?)
            }
            VerifyConfig::Github { secret } => Verifier::Github(github::Github::build(secret)?),
            VerifyConfig::StandardWebhooks {
                secret,
                public_key,
                tolerance,
                signing_key: _,
            } => Verifier::StandardWebhooks(standard_webhooks::StandardWebhooks::build(
                secret,
                public_key.as_ref(),
                *tolerance,
            )?),
            VerifyConfig::Hmac {
                secret,
                header,
                algorithm,
                encoding,
                prefix,
                timestamp_header,
                signed,
                tolerance,
                timestamp_format,
                public_url,
            } => Verifier::Hmac(hmac::GenericHmac::build(hmac::Settings {
                algorithm: *algorithm,
                encoding: *encoding,
                prefix: prefix.as_deref(),
                timestamp_header: timestamp_header.as_deref(),
                signed: signed.as_deref(),
                tolerance: *tolerance,
                timestamp_format: *timestamp_format,
                public_url: presets::checked_public_url(public_url.as_deref())?,
                ..hmac::Settings::plain(secret, header)
            })?),
            VerifyConfig::Jwt {
                header,
                algorithm,
                secret,
                public_key,
                jwks,
                signing_key: _,
                issuer,
                audience,
                required_claims,
                body_hash,
                leeway,
                max_age,
                require_exp,
            } => Verifier::Jwt(jwt::Jwt::build(jwt::Settings {
                header,
                algorithms: algorithm.as_slice(),
                secret,
                public_key: public_key.as_ref(),
                jwks: jwks.as_ref(),
                claims: jwt::Claims {
                    issuer: issuer.clone(),
                    audience: audience.clone(),
                    required: required_claims.clone(),
                    body_hash: body_hash.clone(),
                    empty_body_unhashed: false,
                    url_hash: None,
                    leeway: *leeway,
                    max_age: *max_age,
                    expiry_required: *require_exp,
                },
            })?),
            VerifyConfig::Certificate {
                certificate,
                algorithm,
                header,
                encoding,
                signed,
                timestamp_header,
                timestamp_format,
                tolerance,
                public_url,
                signing_key: _,
            } => Verifier::Certificate(certificate::Certificate::build(certificate::Settings {
                certificate,
                algorithm: *algorithm,
                header,
                encoding: *encoding,
                signed,
                timestamp_header: timestamp_header.as_deref(),
                timestamp_format: *timestamp_format,
                tolerance: *tolerance,
                public_url: presets::checked_public_url(public_url.as_deref())?,
                algorithm_header: None,
            })?),
            VerifyConfig::Basic { username, password } => {
                Verifier::Basic(basic::Basic::build(username, password)?)
            }
            VerifyConfig::Bearer { token } => Verifier::Bearer(bearer::Bearer::build(token)?),
            // Each scheme checks the tolerance and secrets as it does for its own kind.
            VerifyConfig::Preset(p) => Verifier::Preset(p.preset.build(p)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as the inline table a source would write: `verify = { ... }`.
    fn parse(text: &str) -> Result<VerifyConfig, String> {
        #[derive(Deserialize)]
        struct Source {
            verify: VerifyConfig,
        }
        toml::from_str::<Source>(&format!("verify = {{ {text} }}"))
            .map(|s| s.verify)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn default_is_none() {
        assert_eq!(VerifyConfig::default(), VerifyConfig::None);
        assert_eq!(parse(r#"kind = "none""#).unwrap(), VerifyConfig::None);
        assert!(VerifyConfig::default().build().unwrap().is_none());
    }

    #[test]
    fn secret_is_one_or_many_and_tolerance_defaults_to_five_minutes() {
        let one = parse(r#"kind = "stripe", secret = "whsec_a""#).unwrap();
        assert_eq!(
            one,
            VerifyConfig::Stripe {
                secret: OneOrMany::One(SecretRef::new("whsec_a")),
                tolerance: Duration::from_secs(300),
            }
        );
        let many = parse(
            r#"kind = "standard-webhooks", secret = ["whsec_a", "whsec_b"], tolerance = "90s""#,
        )
        .unwrap();
        assert_eq!(
            many,
            VerifyConfig::StandardWebhooks {
                secret: OneOrMany::Many(vec![SecretRef::new("whsec_a"), SecretRef::new("whsec_b")]),
                public_key: None,
                signing_key: None,
                tolerance: Duration::from_secs(90),
            }
        );
    }

    #[test]
    fn hmac_defaults() {
        let cfg = parse(r#"kind = "hmac", secret = "s", header = "X-Sig""#).unwrap();
        let VerifyConfig::Hmac {
            algorithm,
            encoding,
            prefix,
            timestamp_header,
            signed,
            tolerance,
            ..
        } = cfg
        else {
            panic!("not hmac: {cfg:?}");
        };
        assert_eq!(algorithm, HmacAlgorithm::Sha256);
        assert_eq!(encoding, SignatureEncoding::Hex);
        assert_eq!((prefix, timestamp_header, signed), (None, None, None));
        assert_eq!(tolerance, Duration::from_secs(300));
    }

    #[test]
    fn mistakes_are_reported_with_the_fix() {
        let unknown = parse(r#"kind = "github", secret = "s", tolerence = "5m""#).unwrap_err();
        assert!(unknown.contains("tolerence"), "{unknown}");
        let bad_kind = parse(r#"kind = "gitlub", secret = "s""#).unwrap_err();
        assert!(bad_kind.contains("gitlub"), "{bad_kind}");
        let bad_duration =
            parse(r#"kind = "stripe", secret = "s", tolerance = "5 parsecs""#).unwrap_err();
        assert!(bad_duration.contains("\"5m\""), "{bad_duration}");
        let bad_secret = parse(r#"kind = "github", secret = 42"#).unwrap_err();
        assert!(
            bad_secret.contains("a string or a list of strings"),
            "{bad_secret}"
        );
        let bad_algorithm =
            parse(r#"kind = "hmac", secret = "s", header = "X", algorithm = "md5""#).unwrap_err();
        assert!(bad_algorithm.contains("sha256"), "{bad_algorithm}");
    }

    #[test]
    fn build_errors_name_the_item_and_the_fix() {
        let cfg = VerifyConfig::Github {
            secret: OneOrMany::Many(vec![
                SecretRef::new("fine"),
                SecretRef::new("env:FOREBAY_VERIFY_TEST_SURELY_UNSET"),
            ]),
        };
        let err = cfg.build().unwrap_err().to_string();
        assert!(err.starts_with("`secret` item 2: "), "{err}");
        assert!(err.contains("FOREBAY_VERIFY_TEST_SURELY_UNSET"), "{err}");

        let empty = VerifyConfig::Bearer {
            token: OneOrMany::Many(vec![]),
        };
        assert_eq!(
            empty.build().unwrap_err().to_string(),
            "`token` is an empty list; give at least one value"
        );

        let zero = VerifyConfig::Stripe {
            secret: OneOrMany::One(SecretRef::new("whsec_x")),
            tolerance: Duration::from_millis(500),
        };
        assert!(matches!(zero.build(), Err(BuildError::ZeroTolerance)));
    }

    #[test]
    fn build_never_prints_secrets() {
        let cfg = VerifyConfig::Stripe {
            secret: OneOrMany::One(SecretRef::new("whsec_hunter2 ")),
            tolerance: Duration::from_secs(300),
        };
        let err = cfg.build().unwrap_err().to_string();
        assert!(err.contains("whitespace"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let built = VerifyConfig::Github {
            secret: OneOrMany::One(SecretRef::new("hunter2")),
        }
        .build()
        .unwrap();
        assert!(!format!("{built:?}").contains("hunter2"));
    }

    #[test]
    fn kind_names_match_the_toml() {
        let cases = [
            (r#"kind = "none""#, "none"),
            (r#"kind = "stripe", secret = "whsec_x""#, "stripe"),
            (r#"kind = "github", secret = "x""#, "github"),
            (
                r#"kind = "standard-webhooks", secret = "whsec_eHh4""#,
                "standard-webhooks",
            ),
            (r#"kind = "hmac", secret = "x", header = "X-Sig""#, "hmac"),
            (r#"kind = "basic", username = "u", password = "p""#, "basic"),
            (r#"kind = "bearer", token = "t""#, "bearer"),
            (r#"kind = "jwt", algorithm = "HS256", secret = "t""#, "jwt"),
        ];
        for (text, kind) in cases {
            let verifier = parse(text).unwrap().build().unwrap();
            assert_eq!(verifier.kind_name(), kind, "{text}");
            assert_eq!(verifier.is_none(), kind == "none");
        }
    }
}
