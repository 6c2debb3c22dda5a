//! Signing a payload the way a source's sender would, so that `forebay send` and tests
//! can exercise verification end to end.
//!
//! [`Signer::new`] takes a source's [`VerifyConfig`] (the one the server builds its
//! verifier from, checked the same way, so a configuration the server refuses is refused
//! here with the same message) and resolves the first secret of each list: during a
//! rotation that is the new one, and the server still accepts it. [`Signer::sign`] is
//! then a pure function of a [`Message`] (body, timestamp, id, the caller's own headers)
//! to the headers to set.
//!
//! Adding a kind: one arm in [`Signer::new`] and, unless it is HMAC-shaped, one in
//! [`Signer::sign`]. Presets (`presets.rs`) need no signing code: an HMAC-shaped one is
//! signed by `Signer::from_hmac` from the very `hmac::Settings` its verifier is built
//! from (header, algorithm, encoding, prefix, timestamp header, signed template with
//! `{header:Name}`, key decoding), the others by the Stripe-layout or Standard Webhooks
//! signer. Schemes verified with a public key (Discord, SendGrid, Standard Webhooks
//! `v1a`) sign with the verify table's `signing_key`, which only this module reads: the
//! sender's private key, which only exists for a self-made key pair (tests, or a
//! staging source fed by `forebay send`). A preset that reads a timestamp from the body
//! (Linear) cannot have it set here: the body must already carry a current one. Mailgun
//! signs inside the body: [`Signer::sign_body`] returns the body to send, to call
//! before [`Signer::sign`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use ed25519_dalek::SigningKey as Ed25519SigningKey;
use ed25519_dalek::ed25519::signature::MultipartSigner;

use super::Verifier;
use super::asymmetric::{Layout, PrivateKey};
use super::certificate::{self, Certificate};
use super::config::{
    BuildError, HmacAlgorithm, OneOrMany, SignatureEncoding, TimestampFormat, VerifyConfig,
    resolve_secrets,
};
use super::hmac::{self, Part, UrlForm};
use super::jwt::{Jwt, TokenSigner};
use super::keys::{self, Format as KeyFormat};
use super::mac;
use super::presets::Scheme as PresetScheme;
use super::stripe::{Format, STRIPE};
use crate::config::secret::{Secret, SecretRef};

const GITHUB_SIGNATURE_256: HeaderName = HeaderName::from_static("x-hub-signature-256");
const GITHUB_SIGNATURE_SHA1: HeaderName = HeaderName::from_static("x-hub-signature");
const GITHUB_DELIVERY: HeaderName = HeaderName::from_static("x-github-delivery");
const GITHUB_EVENT: HeaderName = HeaderName::from_static("x-github-event");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// What a sender signs, besides its secret.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The body, byte for byte as it will be sent.
    pub body: &'a [u8],
    /// The signing time in Unix seconds, sent by the schemes that sign one. The server
    /// checks it against its own clock and the source's `tolerance`.
    pub timestamp: u64,
    /// The message's id, for the schemes that send one (GitHub `X-GitHub-Delivery`,
    /// Standard Webhooks `webhook-id`) and for `{header:Name}` values of an `hmac`
    /// template that `headers` does not hold.
    pub id: &'a str,
    /// Headers the caller sends anyway. Where a scheme reads a header it does not
    /// compute (an id, an event name, a `{header:Name}` value), the caller's value wins
    /// and is what gets signed; signatures and timestamps are always computed.
    pub headers: &'a HeaderMap,
}

/// Why a message cannot be signed so that the server would accept it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// A header the scheme sends or signs would not arrive intact. Never shows the
    /// value: it may be a credential.
    #[error("cannot send header {name}: {problem}")]
    Header { name: String, problem: &'static str },
    /// HMAC takes keys of any length, so this is not expected; it is an error rather
    /// than a panic because the key comes from the configuration.
    #[error("cannot compute the HMAC with the configured secret")]
    Mac,
    /// A token cannot be made as the source asks (a claim only the sender knows).
    #[error("cannot sign: {0}")]
    Token(String),
    /// The scheme signs inside the body, and this body has no room for it.
    #[error("cannot sign this body: {problem}")]
    Body { problem: &'static str },
}

/// Signs messages for one source, as its sender would. Built from the source's
/// [`VerifyConfig`]; never prints its secrets.
#[derive(Clone)]
pub struct Signer {
    scheme: Scheme,
    /// The `kind` as written in the TOML.
    kind: &'static str,
}

#[derive(Clone)]
enum Scheme {
    None,
    /// Stripe's `t=...,v1=...` layout, or another sender's variant of it.
    Timestamped {
        secret: Secret,
        format: &'static Format,
    },
    Github {
        secret: Secret,
    },
    /// The decoded HMAC key (not the `whsec_…` text) for a `v1` entry and the Ed25519
    /// key for a `v1a` entry; at least one is set.
    StandardWebhooks {
        key: Option<Secret>,
        ed25519: Option<Ed25519SigningKey>,
    },
    Hmac(HmacSigner),
    /// Signed as a form POST to `public_url` (no query string), in this header.
    Twilio {
        secret: Secret,
        public_url: String,
        header: &'static str,
    },
    /// Signed as a form POST to `public_url`, with the message id as the nonce.
    Plivo {
        secret: Secret,
        public_url: String,
    },
    /// `username:password`, ready to encode.
    Basic {
        pair: Secret,
    },
    Bearer {
        token: Secret,
    },
    /// Discord or SendGrid, with the sender's private key (`signing_key`).
    Asymmetric {
        layout: &'static Layout,
        key: PrivateKey,
    },
    /// The secret as it is, in a header (Okta).
    Token {
        header: HeaderName,
        token: Secret,
    },
    /// `X-Gitlab-Token` and/or a Standard Webhooks signature with the decoded key.
    Gitlab {
        token: Option<Secret>,
        key: Option<Secret>,
    },
    /// Signed inside the body: see [`Signer::sign_body`].
    Mailgun {
        key: Secret,
    },
    /// Signed inside each notification item (the hex-decoded key).
    Adyen {
        key: Secret,
    },
    /// A JSON Web Token in a header.
    Jwt(TokenSigner),
    /// A signature with a certificate's private key (`certificate`, PayPal).
    Certificate(CertificateSigner),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kind", &self.kind_name())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for a source with this `verify` section. Resolves the secrets (`env:`,
    /// `file:`) as loading the configuration does.
    pub fn new(config: &VerifyConfig) -> Result<Self, BuildError> {
        config.build()?;
        let scheme = match config {
            VerifyConfig::None => Scheme::None,
            VerifyConfig::Stripe { secret, .. } => Scheme::Timestamped {
                secret: first_secret("secret", secret)?,
                format: &STRIPE,
            },
            VerifyConfig::Github { secret } => Scheme::Github {
                secret: first_secret("secret", secret)?,
            },
            VerifyConfig::StandardWebhooks {
                secret,
                public_key,
                signing_key,
                ..
            } => standard_webhooks_scheme(
                "standard-webhooks",
                secret,
                public_key.as_ref(),
                signing_key.as_ref(),
            )?,
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
            } => {
                return Self::from_hmac(&hmac::Settings {
                    algorithm: *algorithm,
                    encoding: *encoding,
                    prefix: prefix.as_deref(),
                    timestamp_header: timestamp_header.as_deref(),
                    signed: signed.as_deref(),
                    tolerance: *tolerance,
                    timestamp_format: *timestamp_format,
                    public_url: super::presets::checked_public_url(public_url.as_deref())?,
                    ..hmac::Settings::plain(secret, header)
                });
            }
            VerifyConfig::Basic { username, password } => Scheme::Basic {
                pair: basic_pair(username, password)?,
            },
            VerifyConfig::Bearer { token } => Scheme::Bearer {
                token: first_secret("token", token)?,
            },
            VerifyConfig::Jwt { signing_key, .. } => match config.build()? {
                Verifier::Jwt(verifier) => {
                    Scheme::Jwt(TokenSigner::build(&verifier, signing_key.as_ref())?)
                }
                _ => unreachable!("a `jwt` section builds a `jwt` verifier"),
            },
            VerifyConfig::Certificate { signing_key, .. } => {
                match config.build()? {
                    Verifier::Certificate(verifier) => Scheme::Certificate(
                        CertificateSigner::build(verifier, signing_key.as_ref(), "certificate")?,
                    ),
                    _ => unreachable!("a `certificate` section builds a `certificate` verifier"),
                }
            }
            VerifyConfig::Preset(p) => {
                let kind = p.preset.name;
                let scheme = match &p.preset.scheme {
                    PresetScheme::Hmac(shape) => {
                        let tolerance = p.preset.tolerance_or_default(p.tolerance);
                        let public_url =
                            super::presets::checked_public_url(p.public_url.as_deref())?;
                        let settings = shape.settings(&p.secret, tolerance, public_url);
                        return Ok(Self {
                            kind,
                            ..Self::from_hmac(&settings)?
                        });
                    }
                    PresetScheme::Timestamped(format) => Scheme::Timestamped {
                        secret: first_secret("secret", &p.secret)?,
                        format,
                    },
                    PresetScheme::StandardWebhooks => standard_webhooks_scheme(
                        kind,
                        &p.secret,
                        p.public_key.as_ref(),
                        p.signing_key.as_ref(),
                    )?,
                    PresetScheme::Twilio(layout) => Scheme::Twilio {
                        secret: first_secret("secret", &p.secret)?,
                        public_url: p.public_url.clone().unwrap_or_default(),
                        header: layout.header,
                    },
                    PresetScheme::Plivo => Scheme::Plivo {
                        secret: first_secret("secret", &p.secret)?,
                        public_url: p.public_url.clone().unwrap_or_default(),
                    },
                    PresetScheme::Asymmetric(layout) => {
                        let signing_key = p
                            .signing_key
                            .as_ref()
                            .ok_or(BuildError::NoSigningKey { kind })?;
                        let public_key = p.public_key.as_ref().ok_or(BuildError::NoSecrets {
                            field: "public_key",
                        })?;
                        Scheme::Asymmetric {
                            layout,
                            key: PrivateKey::build(layout, signing_key, public_key)?,
                        }
                    }
                    PresetScheme::HeaderToken(default) => Scheme::Token {
                        header: header_name(
                            "header",
                            p.extras.header.as_deref().unwrap_or(default),
                        )?,
                        token: first_secret("secret", &p.secret)?,
                    },
                    PresetScheme::Gitlab => Scheme::Gitlab {
                        token: match p.secret.as_slice() {
                            [] => None,
                            _ => Some(first_secret("secret", &p.secret)?),
                        },
                        key: p
                            .extras
                            .signing_token
                            .as_ref()
                            .map(|refs| first_hmac_key("signing_token", refs))
                            .transpose()?,
                    },
                    PresetScheme::Basic => {
                        let username = p.extras.username.as_deref().unwrap_or_default();
                        Scheme::Basic {
                            pair: basic_pair(username, &p.secret)?,
                        }
                    }
                    PresetScheme::Mailgun => Scheme::Mailgun {
                        key: first_secret("secret", &p.secret)?,
                    },
                    PresetScheme::Adyen => Scheme::Adyen {
                        // The verifier's build decoded the same secret.
                        key: super::adyen::hex_key(&first_secret("secret", &p.secret)?)
                            .ok_or(BuildError::NoSecrets { field: "secret" })?,
                    },
                    PresetScheme::Certificate(shape) => {
                        let tolerance = p.preset.tolerance_or_default(p.tolerance);
                        let verifier = shape.build(p, tolerance)?;
                        Scheme::Certificate(CertificateSigner::build(
                            verifier,
                            p.signing_key.as_ref(),
                            kind,
                        )?)
                    }
                    PresetScheme::Jwt(shape) => {
                        let tolerance = p.preset.tolerance_or_default(p.tolerance);
                        let public_url =
                            super::presets::checked_public_url(p.public_url.as_deref())?;
                        let verifier =
                            Jwt::build(shape.settings(&p.secret, tolerance, public_url)?)?;
                        Scheme::Jwt(TokenSigner::build(&verifier, None)?)
                    }
                };
                return Ok(Self { scheme, kind });
            }
        };
        let kind = match scheme {
            Scheme::None => "none",
            Scheme::Timestamped { .. } => "stripe",
            Scheme::Github { .. } => "github",
            Scheme::StandardWebhooks { .. } => "standard-webhooks",
            Scheme::Hmac(_) => "hmac",
            Scheme::Twilio { .. } => "twilio",
            Scheme::Plivo { .. } => "plivo",
            Scheme::Basic { .. } => "basic",
            Scheme::Bearer { .. } => "bearer",
            Scheme::Jwt(_) => "jwt",
            Scheme::Certificate(_) => "certificate",
            // Only presets build these, and they return above with their own name.
            Scheme::Asymmetric { .. }
            | Scheme::Token { .. }
            | Scheme::Gitlab { .. }
            | Scheme::Mailgun { .. }
            | Scheme::Adyen { .. } => "preset",
        };
        Ok(Self { scheme, kind })
    }

    /// A signer for the generic `hmac` scheme, or any preset expressed as its settings:
    /// pass the same `hmac::Settings` the verifier is built from.
    pub(super) fn from_hmac(settings: &hmac::Settings<'_>) -> Result<Self, BuildError> {
        Ok(Self {
            scheme: Scheme::Hmac(HmacSigner::build(settings)?),
            kind: "hmac",
        })
    }

    /// The `kind` this signer signs for, as written in the TOML.
    pub fn kind_name(&self) -> &'static str {
        self.kind
    }

    /// The body to send instead of `message.body`, for a scheme that signs inside the
    /// body (Mailgun: a `signature` object, or form fields, with `message.id` as the
    /// token); `None`: send the body as it is. Call it before [`Signer::sign`], and sign
    /// the body it returns.
    pub fn sign_body(&self, message: &Message<'_>) -> Result<Option<Vec<u8>>, SignError> {
        match &self.scheme {
            Scheme::Mailgun { key } => super::mailgun::sign_body(
                key.expose(),
                message.timestamp,
                message.id,
                message.body,
            )
            .map(Some)
            .ok_or(SignError::Body {
                problem: "Mailgun's signature goes into a JSON object or form fields; send one of those",
            }),
            Scheme::Adyen { key } => super::adyen::sign_body(key.expose(), message.body)
                .map(Some)
                .ok_or(SignError::Body {
                    problem: "Adyen signs inside `notificationItems[].NotificationRequestItem`; send a notification body",
                }),
            _ => Ok(None),
        }
    }

    /// The headers to set on top of `message.headers` (one value per name: insert each,
    /// replacing the caller's) so that the source's verifier accepts `message.body`.
    pub fn sign(&self, message: &Message<'_>) -> Result<HeaderMap, SignError> {
        let mut out = HeaderMap::new();
        let timestamp = message.timestamp.to_string();
        match &self.scheme {
            Scheme::None => {}
            Scheme::Timestamped { secret, format } => {
                let timestamp = if format.millis {
                    message.timestamp.saturating_mul(1000).to_string()
                } else {
                    timestamp.clone()
                };
                // Stripe keys the HMAC with the secret as shown, `whsec_` included.
                let sig = mac_of(
                    HmacAlgorithm::Sha256,
                    secret,
                    &[timestamp.as_bytes(), format.joiner.as_bytes(), message.body],
                )?;
                let value = if format.positional {
                    format!(
                        "{timestamp}{}{}",
                        format.separator,
                        format.encoding.encode(&sig)
                    )
                } else {
                    format!(
                        "{}={timestamp}{}{}={}",
                        format.timestamp_key,
                        format.separator,
                        format.signature_key,
                        format.encoding.encode(&sig)
                    )
                };
                insert_named(&mut out, format.header, &value)?;
            }
            Scheme::Github { secret } => {
                let sha256 = mac_of(HmacAlgorithm::Sha256, secret, &[message.body])?;
                let value = format!("sha256={}", hex::encode(sha256));
                out.insert(
                    GITHUB_SIGNATURE_256,
                    text_value(&GITHUB_SIGNATURE_256, &value)?,
                );
                // GitHub sends the legacy SHA-1 header beside it whenever a secret is
                // set; forebay ignores it, a handler behind it might not.
                let sha1 = mac_of(HmacAlgorithm::Sha1, secret, &[message.body])?;
                let value = format!("sha1={}", hex::encode(sha1));
                out.insert(
                    GITHUB_SIGNATURE_SHA1,
                    text_value(&GITHUB_SIGNATURE_SHA1, &value)?,
                );
                default_header(&mut out, message, GITHUB_DELIVERY, message.id)?;
                default_header(&mut out, message, GITHUB_EVENT, "ping")?;
            }
            Scheme::StandardWebhooks { key, ed25519 } => {
                sign_standard_webhooks(
                    key.as_ref(),
                    ed25519.as_ref(),
                    message,
                    &timestamp,
                    &mut out,
                )?;
            }
            Scheme::Token { header, token } => {
                out.insert(header.clone(), secret_value(header, token)?);
            }
            Scheme::Gitlab { token, key } => {
                if let Some(token) = token {
                    let name = HeaderName::from_static("x-gitlab-token");
                    let value = secret_value(&name, token)?;
                    out.insert(name, value);
                }
                if let Some(key) = key {
                    sign_standard_webhooks(Some(key), None, message, &timestamp, &mut out)?;
                }
            }
            // The signature is in the body (`sign_body`).
            Scheme::Mailgun { .. } | Scheme::Adyen { .. } => {}
            Scheme::Hmac(signer) => signer.sign(message, &timestamp, &mut out)?,
            Scheme::Plivo { secret, public_url } => {
                let sig = super::plivo::sign(secret.expose(), public_url, message.body, message.id)
                    .ok_or(SignError::Mac)?;
                insert_named(&mut out, super::plivo::SIGNATURE, &sig)?;
                insert_named(&mut out, super::plivo::NONCE, message.id)?;
            }
            Scheme::Twilio {
                secret,
                public_url,
                header,
            } => {
                let sig = super::twilio::sign(secret.expose(), public_url, message.body)
                    .ok_or(SignError::Mac)?;
                insert_named(&mut out, header, &STANDARD.encode(sig))?;
            }
            Scheme::Basic { pair } => {
                let value = format!("Basic {}", STANDARD.encode(pair.expose()));
                let mut value = text_value(&header::AUTHORIZATION, &value)?;
                value.set_sensitive(true);
                out.insert(header::AUTHORIZATION, value);
            }
            Scheme::Asymmetric { layout, key } => {
                let sig = key.sign(
                    layout.algorithm,
                    &[timestamp.as_bytes(), layout.joiner.as_bytes(), message.body],
                );
                insert_named(&mut out, layout.timestamp_header, &timestamp)?;
                insert_named(&mut out, layout.signature_header, &sig)?;
            }
            Scheme::Certificate(signer) => signer.sign(message, &mut out)?,
            Scheme::Jwt(signer) => {
                let token = signer
                    .token(message.body, message.timestamp, message.id)
                    .map_err(|e| SignError::Token(e.to_string()))?;
                let name = header_name("header", signer.header()).map_err(|_| {
                    header_error(&header::AUTHORIZATION, "is not a valid header name")
                })?;
                let value = if name == header::AUTHORIZATION {
                    format!("Bearer {token}")
                } else {
                    token
                };
                let mut value = text_value(&name, &value)?;
                value.set_sensitive(true);
                out.insert(name, value);
            }
            Scheme::Bearer { token } => {
                let mut value = b"Bearer ".to_vec();
                value.extend_from_slice(token.expose());
                let mut value = HeaderValue::from_bytes(&value)
                    .ok()
                    .filter(|v| v.to_str().is_ok())
                    .ok_or_else(|| {
                        header_error(&header::AUTHORIZATION, "the token is not visible ASCII")
                    })?;
                value.set_sensitive(true);
                out.insert(header::AUTHORIZATION, value);
            }
        }
        Ok(out)
    }
}

/// The generic `hmac` scheme, with its settings checked and its template parsed.
#[derive(Clone)]
struct HmacSigner {
    key: Secret,
    header: HeaderName,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    /// Empty when none is configured.
    prefix: String,
    timestamp_header: Option<HeaderName>,
    template: Vec<Part>,
    /// Empty unless the scheme signs its URL; sent to without a query string.
    public_url: String,
    timestamp_format: TimestampFormat,
    url_form: UrlForm,
}

impl HmacSigner {
    fn build(s: &hmac::Settings<'_>) -> Result<Self, BuildError> {
        // The verifier's own checks (header names, template, tolerance, secrets): what
        // it would refuse is refused here, with its message.
        hmac::GenericHmac::build(*s)?;
        let header = header_name("header", s.header)?;
        let timestamp_header = s
            .timestamp_header
            .map(|name| header_name("timestamp_header", name))
            .transpose()?;
        let default = if timestamp_header.is_some() {
            "{timestamp}.{body}"
        } else {
            "{body}"
        };
        Ok(Self {
            // The verifier's build above decoded the same secret.
            key: s
                .key
                .apply(first_secret("secret", s.secret)?)
                .ok_or(BuildError::NoSecrets { field: "secret" })?,
            header,
            algorithm: s.algorithm,
            encoding: s.encoding,
            prefix: s.prefix.unwrap_or_default().to_owned(),
            timestamp_header,
            template: hmac::parse_template_with(
                s.signed.unwrap_or(default),
                s.timestamp_header.is_some(),
                s.public_url.is_some(),
            )?,
            public_url: s.public_url.unwrap_or_default().to_owned(),
            timestamp_format: s.timestamp_format,
            url_form: s.url_form,
        })
    }

    fn sign(
        &self,
        message: &Message<'_>,
        timestamp: &str,
        out: &mut HeaderMap,
    ) -> Result<(), SignError> {
        let secs = timestamp.parse().unwrap_or_default();
        let timestamp = &hmac::format_timestamp(self.timestamp_format, secs).ok_or_else(|| {
            let name = self.timestamp_header.as_ref().unwrap_or(&self.header);
            header_error(name, "the timestamp is after the year 9999")
        })?;
        let url = self.url_form.apply(self.public_url.clone());
        let signed = fill_template(&self.template, message, timestamp, &url, out)?;
        let sig = mac_of(self.algorithm, &self.key, &[&signed])?;
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(sig),
            SignatureEncoding::Base64 => STANDARD.encode(sig),
        };
        let value = format!("{}{encoded}", self.prefix);
        let value = HeaderValue::from_str(&value)
            .ok()
            .filter(|v| v.to_str().is_ok())
            .ok_or_else(|| {
                header_error(&self.header, "the configured prefix is not visible ASCII")
            })?;
        out.insert(self.header.clone(), value);
        if let Some(name) = &self.timestamp_header {
            out.insert(name.clone(), text_value(name, timestamp)?);
        }
        Ok(())
    }
}

/// Sets a header named by one of the layouts' constants: an invalid name is an error,
/// not a panic.
fn insert_named(out: &mut HeaderMap, name: &str, value: &str) -> Result<(), SignError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| SignError::Header {
        name: name.to_owned(),
        problem: "is not a valid header name",
    })?;
    let value = text_value(&name, value)?;
    out.insert(name, value);
    Ok(())
}

/// The text a `signed` template stands for, as the sender makes it: `{header:Name}`
/// takes the caller's header, else the message id (which is then sent in that header).
fn fill_template(
    template: &[Part],
    message: &Message<'_>,
    timestamp: &str,
    url: &str,
    out: &mut HeaderMap,
) -> Result<Vec<u8>, SignError> {
    certificate::fill_template(template, message.body, |part| match part {
        Part::Timestamp => Ok(timestamp.as_bytes().to_vec()),
        Part::Url => Ok(url.as_bytes().to_vec()),
        // `forebay send` posts.
        Part::Method => Ok(b"POST".to_vec()),
        Part::Header(name) => {
            // The parser checked the name.
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| SignError::Header {
                name: name.clone(),
                problem: "is not a valid header name",
            })?;
            let value = match message.headers.get(&name) {
                Some(given) => visible_text(&name, given)?.to_owned(),
                None => {
                    out.insert(name.clone(), text_value(&name, message.id)?);
                    message.id.to_owned()
                }
            };
            Ok(value.into_bytes())
        }
        Part::Literal(_) | Part::Body | Part::BodyCrc32 => Ok(Vec::new()),
    })
}

/// Signs as a `certificate` source's sender: the template filled in as the verifier
/// reads it, signed with the `signing_key` that belongs to one of its certificates.
#[derive(Clone)]
struct CertificateSigner {
    verifier: Certificate,
    /// PKCS#8 DER.
    key: Vec<u8>,
}

impl CertificateSigner {
    fn build(
        verifier: Certificate,
        signing_key: Option<&SecretRef>,
        kind: &'static str,
    ) -> Result<Self, BuildError> {
        let signing_key = signing_key.ok_or(BuildError::NoSigningKey { kind })?;
        let (key, signature) = keys::pkcs8_signing_key(
            signing_key,
            "a PEM PRIVATE KEY block (PKCS#8) of the algorithm's key type",
            |der, message| certificate::sign_with(verifier.algorithm(), der, message),
        )?;
        if !verifier.any_verifies(keys::PROBE, &signature) {
            return Err(BuildError::SigningKeyMismatch);
        }
        Ok(Self { verifier, key })
    }

    fn sign(&self, message: &Message<'_>, out: &mut HeaderMap) -> Result<(), SignError> {
        let v = &self.verifier;
        let timestamp = match v.timestamp_header() {
            Some((name, format)) => {
                let name = header_name("timestamp_header", name).map_err(|_| SignError::Mac)?;
                let text = hmac::format_timestamp(format, message.timestamp)
                    .ok_or_else(|| header_error(&name, "the timestamp is after the year 9999"))?;
                out.insert(name.clone(), text_value(&name, &text)?);
                text
            }
            None => String::new(),
        };
        if let Some((name, value)) = v.algorithm_header() {
            let name = header_name("header", name).map_err(|_| SignError::Mac)?;
            out.insert(name.clone(), text_value(&name, value)?);
        }
        let url = v.public_url().unwrap_or_default();
        let signed = fill_template(v.template(), message, &timestamp, url, out)?;
        let signature =
            certificate::sign_with(v.algorithm(), &self.key, &signed).ok_or(SignError::Mac)?;
        let encoded = match v.encoding() {
            SignatureEncoding::Hex => hex::encode(signature),
            SignatureEncoding::Base64 => STANDARD.encode(signature),
        };
        let name = header_name("header", v.header()).map_err(|_| SignError::Mac)?;
        out.insert(name.clone(), text_value(&name, &encoded)?);
        Ok(())
    }
}

/// Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
/// for `message`, keyed with the decoded secret.
fn sign_standard_webhooks(
    key: Option<&Secret>,
    ed25519: Option<&Ed25519SigningKey>,
    message: &Message<'_>,
    timestamp: &str,
    out: &mut HeaderMap,
) -> Result<(), SignError> {
    let id = match message.headers.get(&WEBHOOK_ID) {
        Some(given) => visible_text(&WEBHOOK_ID, given)?.to_owned(),
        None => {
            out.insert(WEBHOOK_ID, text_value(&WEBHOOK_ID, message.id)?);
            message.id.to_owned()
        }
    };
    if id.is_empty() {
        return Err(header_error(&WEBHOOK_ID, "the id is empty"));
    }
    if id.contains('.') {
        return Err(header_error(
            &WEBHOOK_ID,
            "the id contains `.`, which Standard Webhooks forbids; choose one without it",
        ));
    }
    let signed: [&[u8]; 5] = [
        id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        message.body,
    ];
    let mut entries = Vec::new();
    if let Some(key) = key {
        let sig = mac_of(HmacAlgorithm::Sha256, key, &signed)?;
        entries.push(format!("v1,{}", STANDARD.encode(sig)));
    }
    if let Some(key) = ed25519 {
        let sig = key.multipart_sign(&signed);
        entries.push(format!("v1a,{}", STANDARD.encode(sig.to_bytes())));
    }
    out.insert(
        WEBHOOK_TIMESTAMP,
        text_value(&WEBHOOK_TIMESTAMP, timestamp)?,
    );
    let value = entries.join(" ");
    out.insert(WEBHOOK_SIGNATURE, text_value(&WEBHOOK_SIGNATURE, &value)?);
    Ok(())
}

/// A secret sent as it is, marked sensitive so that it is never logged.
fn secret_value(name: &HeaderName, secret: &Secret) -> Result<HeaderValue, SignError> {
    let mut value = HeaderValue::from_bytes(secret.expose())
        .ok()
        .filter(|v| v.to_str().is_ok())
        .ok_or_else(|| header_error(name, "the secret is not visible ASCII"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `username:password` with the first password, ready to encode.
fn basic_pair(username: &str, password: &OneOrMany<SecretRef>) -> Result<Secret, BuildError> {
    let password = first_secret("password", password)?;
    let mut pair = username.as_bytes().to_vec();
    pair.push(b':');
    pair.extend_from_slice(password.expose());
    Ok(Secret::from_bytes(pair))
}

/// The first secret of a list: the one a sender signs with during a rotation.
fn first_secret(field: &'static str, refs: &OneOrMany<SecretRef>) -> Result<Secret, BuildError> {
    resolve_secrets(field, refs)?
        .into_iter()
        .next()
        .map(|(_, secret)| secret)
        .ok_or(BuildError::NoSecrets { field })
}

/// The first of Standard Webhooks secrets (`whsec_…`), decoded: the one a sender signs
/// with during a rotation.
fn first_hmac_key(field: &'static str, refs: &OneOrMany<SecretRef>) -> Result<Secret, BuildError> {
    super::standard_webhooks::hmac_keys(refs)?
        .into_iter()
        .next()
        .ok_or(BuildError::NoSecrets { field })
}

/// A Standard Webhooks signer: `v1` with the first secret, if any, and `v1a` with the
/// `signing_key`, if given (it must match a `public_key`).
fn standard_webhooks_scheme(
    kind: &'static str,
    secret: &OneOrMany<SecretRef>,
    public_key: Option<&OneOrMany<SecretRef>>,
    signing_key: Option<&SecretRef>,
) -> Result<Scheme, BuildError> {
    let key = if secret.as_slice().is_empty() {
        None
    } else {
        Some(first_hmac_key("secret", secret)?)
    };
    let ed25519 = match (signing_key, public_key) {
        (Some(private), Some(public)) => {
            let private = keys::ed25519_private(private, KeyFormat::StandardWebhooks)?;
            let public = keys::ed25519_public("public_key", public, KeyFormat::StandardWebhooks)?;
            check_pair(public.contains(&private.verifying_key()))?;
            Some(private)
        }
        // A private key without a public key to check it against: the server would
        // skip its `v1a` entries, so say so rather than sign uselessly.
        (Some(_), None) => return Err(BuildError::SigningKeyMismatch),
        (None, _) => None,
    };
    if key.is_none() && ed25519.is_none() {
        return Err(BuildError::NoSigningKey { kind });
    }
    Ok(Scheme::StandardWebhooks { key, ed25519 })
}

/// Requests signed with a private key whose public key the server does not have would
/// all be refused: a configuration error, found before sending.
fn check_pair(matches: bool) -> Result<(), BuildError> {
    if matches {
        Ok(())
    } else {
        Err(BuildError::SigningKeyMismatch)
    }
}

fn header_name(field: &'static str, name: &str) -> Result<HeaderName, BuildError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError::HeaderName {
        field,
        name: name.to_owned(),
    })
}

fn mac_of(algorithm: HmacAlgorithm, key: &Secret, parts: &[&[u8]]) -> Result<Vec<u8>, SignError> {
    mac::hmac(algorithm, key.expose(), parts).ok_or(SignError::Mac)
}

/// Sets `name` to `value` unless the caller sends it already.
fn default_header(
    out: &mut HeaderMap,
    message: &Message<'_>,
    name: HeaderName,
    value: &str,
) -> Result<(), SignError> {
    if !message.headers.contains_key(&name) {
        let value = text_value(&name, value)?;
        out.insert(name, value);
    }
    Ok(())
}

/// A header value that verifiers can read back as text: visible ASCII only.
fn text_value(name: &HeaderName, text: &str) -> Result<HeaderValue, SignError> {
    HeaderValue::from_str(text)
        .ok()
        .filter(|v| v.to_str().is_ok())
        .ok_or_else(|| header_error(name, "the value is not visible ASCII"))
}

fn visible_text<'v>(name: &HeaderName, value: &'v HeaderValue) -> Result<&'v str, SignError> {
    value
        .to_str()
        .map_err(|_| header_error(name, "the value is not visible ASCII"))
}

fn header_error(name: &HeaderName, problem: &'static str) -> SignError {
    SignError::Header {
        name: name.as_str().to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests;
