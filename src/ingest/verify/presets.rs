//! Providers as data: `verify = { kind = "shopify", secret = "..." }`.
//!
//! Most webhook senders sign "some text, in some header, in some encoding". Each entry
//! of [`PRESETS`] says which, over one of the verifiers: the generic `hmac` one
//! (`hmac.rs`), the `t=...,v1=...` one (`stripe.rs`, which also reads Paddle's
//! `ts=...;h1=...`), Standard Webhooks (`standard_webhooks.rs`), or, for the schemes
//! that really differ, their own (`twilio.rs`, and `asymmetric.rs` for Discord and
//! SendGrid, checked with the provider's public key). An entry also names the
//! provider's own delivery id (the dedup key when the source sets none), the default
//! timestamp tolerance where a timestamp is signed, and any challenge the provider
//! sends (Slack's `url_verification`, Discord's PING). A new HMAC-shaped provider is a new entry here, a row in
//! `docs/verifiers.md` and a case with its published example in `presets/tests.rs`
//! (a test fails until both exist); no code. `forebay send` signs for every entry
//! through `sign_as`, from the same settings.

use std::time::Duration;

use super::asymmetric::{self, Asymmetric, Layout};
use super::config::{BuildError, HmacAlgorithm, OneOrMany, PresetConfig, SignatureEncoding};
use super::hmac::{self, KeyDecoding};
use super::rejection::Rejection;
use super::standard_webhooks::StandardWebhooks;
use super::stripe::{Format, PADDLE, Stripe, stripe_like};
use super::twilio::Twilio;
use super::{Answer, Verified};
use crate::config::secret::SecretRef;
use crate::ingest::request::Unverified;

/// One provider's scheme and habits.
#[derive(Debug, PartialEq)]
pub struct Preset {
    /// The `kind` users write.
    pub name: &'static str,
    pub(super) scheme: Scheme,
    pub(super) dedup: ProviderId,
    /// The default `tolerance` for schemes that sign a timestamp; `None` for those that
    /// do not, where a `tolerance` key is refused rather than silently ignored.
    pub(super) tolerance: Option<Duration>,
    pub(super) challenge: Challenge,
}

#[derive(Debug, PartialEq)]
pub(super) enum Scheme {
    Hmac(Shape),
    /// A header of `key=value` pairs with a timestamp and signatures (Stripe's layout).
    Timestamped(&'static Format),
    StandardWebhooks,
    /// URL and sorted form parameters, HMAC-SHA1 (`twilio.rs`); needs `public_url`.
    Twilio,
    /// A signature over `{timestamp}{body}` made with the provider's private key,
    /// checked with its public key (`asymmetric.rs`): Discord, SendGrid.
    Asymmetric(&'static Layout),
}

/// Whether a preset's sender signs with a private key, checked with a `public_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyUse {
    /// HMAC with a shared `secret` only.
    None,
    /// A `public_key` instead of a `secret`.
    Required,
    /// A `secret`, a `public_key` or both (Standard Webhooks `v1` and `v1a`).
    Optional,
}

/// The generic HMAC verifier's settings, fixed for a provider. See [`hmac::Settings`].
#[derive(Debug, PartialEq)]
pub(super) struct Shape {
    pub header: &'static str,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    pub prefix: Option<&'static str>,
    pub timestamp_header: Option<&'static str>,
    pub signed: Option<&'static str>,
    pub list_separator: Option<char>,
    pub body_timestamp_ms: Option<&'static str>,
    pub key: KeyDecoding,
    /// The template has `{url}`: the source needs a `public_url`.
    pub public_url: bool,
}

/// Where the provider puts its own id of a delivery, the same on every retry.
#[derive(Debug, PartialEq)]
pub(super) enum ProviderId {
    /// None documented: dedup falls back to the body hash.
    None,
    /// The first of these headers that is present and not empty.
    Header(&'static [&'static str]),
    /// A string or number at this JSON pointer in the body.
    Json(&'static str),
}

/// A provider request that is answered at once instead of being stored as an event.
#[derive(Debug, PartialEq)]
pub(super) enum Challenge {
    None,
    /// Slack's Events API `url_verification`: a (signed) JSON body with
    /// `"type": "url_verification"` is answered with its `challenge`.
    SlackUrlVerification,
    /// Discord's interactions PING (`{"type": 1}`), answered `{"type": 1}`.
    DiscordPing,
}

impl Shape {
    /// These settings with the user's secret and tolerance: what the verifier and the
    /// signer (`sign_as`) are both built from.
    pub(super) fn settings<'c>(
        &self,
        secret: &'c OneOrMany<SecretRef>,
        tolerance: Duration,
        public_url: Option<&'c str>,
    ) -> hmac::Settings<'c> {
        hmac::Settings {
            secret,
            header: self.header,
            algorithm: self.algorithm,
            encoding: self.encoding,
            prefix: self.prefix,
            timestamp_header: self.timestamp_header,
            signed: self.signed,
            tolerance,
            list_separator: self.list_separator,
            body_timestamp_ms: self.body_timestamp_ms,
            key: self.key,
            public_url: public_url.filter(|_| self.public_url),
        }
    }
}

const fn shape(
    header: &'static str,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: Option<&'static str>,
) -> Shape {
    Shape {
        header,
        algorithm,
        encoding,
        prefix,
        timestamp_header: None,
        signed: None,
        list_separator: None,
        body_timestamp_ms: None,
        key: KeyDecoding::Raw,
        public_url: false,
    }
}

const fn body_hmac(name: &'static str, shape: Shape, dedup: ProviderId) -> Preset {
    Preset {
        name,
        scheme: Scheme::Hmac(shape),
        dedup,
        tolerance: None,
        challenge: Challenge::None,
    }
}

const fn standard_webhooks(name: &'static str) -> Preset {
    Preset {
        name,
        scheme: Scheme::StandardWebhooks,
        dedup: ProviderId::Header(&["webhook-id", "svix-id"]),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    }
}

/// SPEC section 5's default, used unless the provider's own SDK enforces another window.
const FIVE_MINUTES: Duration = Duration::from_secs(300);

use HmacAlgorithm::{Sha1, Sha256};
use SignatureEncoding::{Base64, Hex};

/// Every preset, in the order the docs list them. Sources and published examples are
/// in `docs/provider-signatures.md`; what each verifies is in `docs/verifiers.md`.
pub static PRESETS: &[Preset] = &[
    body_hmac(
        "shopify",
        shape("X-Shopify-Hmac-Sha256", Sha256, Base64, None),
        ProviderId::Header(&["X-Shopify-Webhook-Id"]),
    ),
    Preset {
        name: "slack",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("X-Slack-Request-Timestamp"),
            signed: Some("v0:{timestamp}:{body}"),
            ..shape("X-Slack-Signature", Sha256, Hex, Some("v0="))
        }),
        dedup: ProviderId::Json("/event_id"),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::SlackUrlVerification,
    },
    body_hmac(
        "square",
        Shape {
            signed: Some("{url}{body}"),
            public_url: true,
            ..shape("X-Square-HmacSha256-Signature", Sha256, Base64, None)
        },
        ProviderId::Json("/event_id"),
    ),
    Preset {
        name: "twilio",
        scheme: Scheme::Twilio,
        dedup: ProviderId::Header(&["I-Twilio-Idempotency-Token"]),
        tolerance: None,
        challenge: Challenge::None,
    },
    body_hmac(
        "gitea",
        shape("X-Gitea-Signature", Sha256, Hex, None),
        ProviderId::Header(&["X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery"]),
    ),
    body_hmac(
        "bitbucket",
        shape("X-Hub-Signature", Sha256, Hex, Some("sha256=")),
        ProviderId::Header(&["X-Request-UUID", "X-Request-Id"]),
    ),
    body_hmac(
        "razorpay",
        shape("X-Razorpay-Signature", Sha256, Hex, None),
        ProviderId::Header(&["X-Razorpay-Event-Id"]),
    ),
    body_hmac(
        "circleci",
        Shape {
            list_separator: Some(','),
            ..shape("circleci-signature", Sha256, Hex, Some("v1="))
        },
        ProviderId::Json("/id"),
    ),
    body_hmac(
        // One `v1=` entry per active secret while PagerDuty rotates.
        "pagerduty",
        Shape {
            list_separator: Some(','),
            ..shape("X-PagerDuty-Signature", Sha256, Hex, Some("v1="))
        },
        ProviderId::Header(&["X-Webhook-Id"]),
    ),
    body_hmac(
        "lemonsqueezy",
        shape("X-Signature", Sha256, Hex, None),
        ProviderId::None,
    ),
    body_hmac(
        "sentry",
        shape("Sentry-Hook-Signature", Sha256, Hex, None),
        ProviderId::Header(&["Request-ID"]),
    ),
    body_hmac(
        "typeform",
        shape("Typeform-Signature", Sha256, Base64, Some("sha256=")),
        ProviderId::Json("/event_id"),
    ),
    body_hmac(
        "intercom",
        shape("X-Hub-Signature", Sha1, Hex, Some("sha1=")),
        ProviderId::Json("/id"),
    ),
    body_hmac(
        "vercel",
        shape("x-vercel-signature", Sha1, Hex, None),
        ProviderId::Json("/id"),
    ),
    body_hmac(
        "launchdarkly",
        shape("X-LD-Signature", Sha256, Hex, None),
        ProviderId::Json("/_id"),
    ),
    body_hmac(
        "woocommerce",
        Shape {
            key: KeyDecoding::WordPressEntities,
            ..shape("X-WC-Webhook-Signature", Sha256, Base64, None)
        },
        ProviderId::Header(&["X-WC-Webhook-Delivery-ID"]),
    ),
    Preset {
        name: "linear",
        scheme: Scheme::Hmac(Shape {
            body_timestamp_ms: Some("/webhookTimestamp"),
            ..shape("Linear-Signature", Sha256, Hex, None)
        }),
        dedup: ProviderId::Header(&["Linear-Delivery"]),
        // Linear's SDK (`LinearWebhookClient.verify`) rejects beyond one minute.
        tolerance: Some(Duration::from_secs(60)),
        challenge: Challenge::None,
    },
    Preset {
        name: "paddle",
        scheme: Scheme::Timestamped(&PADDLE),
        dedup: ProviderId::Json("/event_id"),
        // Paddle's SDK defaults to 5 s; a gateway needs room for clock skew, and
        // `tolerance = "5s"` restores the SDK's window.
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "calendly",
        scheme: Scheme::Timestamped(&CALENDLY),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "mux",
        scheme: Scheme::Timestamped(&MUX),
        dedup: ProviderId::Json("/id"),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    standard_webhooks("svix"),
    standard_webhooks("clerk"),
    standard_webhooks("resend"),
    standard_webhooks("openai"),
    Preset {
        name: "discord",
        scheme: Scheme::Asymmetric(&asymmetric::DISCORD),
        // The interaction's id (a snowflake), the same on a redelivery.
        dedup: ProviderId::Json("/id"),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::DiscordPing,
    },
    Preset {
        name: "sendgrid",
        scheme: Scheme::Asymmetric(&asymmetric::SENDGRID),
        // A body is a batch of events, each with its own `sg_event_id`: no single id,
        // so dedup falls back to the body hash (a redelivered batch is the same bytes).
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
];

static CALENDLY: Format = stripe_like("Calendly-Webhook-Signature");
static MUX: Format = stripe_like("Mux-Signature");

/// The preset of this `kind`, if there is one.
pub fn find(kind: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == kind)
}

impl Preset {
    /// Whether a `tolerance` key is accepted: only where a timestamp is signed.
    pub(super) fn signs_timestamp(&self) -> bool {
        self.tolerance.is_some()
    }

    /// Whether the source must say its `public_url`: the sender signs the URL.
    pub(super) fn needs_public_url(&self) -> bool {
        match &self.scheme {
            Scheme::Hmac(shape) => shape.public_url,
            Scheme::Twilio => true,
            Scheme::Timestamped(_) | Scheme::StandardWebhooks | Scheme::Asymmetric(_) => false,
        }
    }

    /// Whether the source gives a `public_key`, instead of or beside a `secret`.
    pub(super) fn public_key_use(&self) -> KeyUse {
        match &self.scheme {
            Scheme::Asymmetric(_) => KeyUse::Required,
            Scheme::StandardWebhooks => KeyUse::Optional,
            Scheme::Hmac(_) | Scheme::Timestamped(_) | Scheme::Twilio => KeyUse::None,
        }
    }

    /// The configured tolerance, else the preset's.
    pub(super) fn tolerance_or_default(&self, configured: Option<Duration>) -> Duration {
        configured.or(self.tolerance).unwrap_or(FIVE_MINUTES)
    }

    pub(super) fn build(
        &'static self,
        config: &PresetConfig,
    ) -> Result<PresetVerifier, BuildError> {
        let secret = &config.secret;
        let tolerance = self.tolerance_or_default(config.tolerance);
        let check = match &self.scheme {
            Scheme::Hmac(shape) => {
                let public_url = checked_public_url(config.public_url.as_deref())?;
                Check::Hmac(hmac::GenericHmac::build(
                    shape.settings(secret, tolerance, public_url),
                )?)
            }
            Scheme::Timestamped(format) => {
                Check::Timestamped(Stripe::build_with(format, secret, tolerance)?)
            }
            Scheme::StandardWebhooks => Check::StandardWebhooks(StandardWebhooks::build(
                secret,
                config.public_key.as_ref(),
                tolerance,
            )?),
            Scheme::Twilio => {
                let public_url = checked_public_url(config.public_url.as_deref())?.ok_or(
                    BuildError::PublicUrl {
                        problem: "is required: the URL Twilio posts to",
                    },
                )?;
                Check::Twilio(Twilio::build(secret, public_url)?)
            }
            Scheme::Asymmetric(layout) => {
                Check::Asymmetric(Asymmetric::build(layout, required_key(config)?, tolerance)?)
            }
        };
        Ok(PresetVerifier {
            preset: self,
            check,
        })
    }
}

/// The `public_key` of a preset that requires one (the TOML reader makes sure it is set).
fn required_key(config: &PresetConfig) -> Result<&OneOrMany<SecretRef>, BuildError> {
    config.public_key.as_ref().ok_or(BuildError::NoSecrets {
        field: "public_key",
    })
}

/// The public URL as the sender signs it: absolute `http(s)`, no query string (the
/// request's own is appended) and no fragment.
pub(super) fn checked_public_url(url: Option<&str>) -> Result<Option<&str>, BuildError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let problem = if !(url.starts_with("https://") || url.starts_with("http://")) {
        Some("must start with https:// or http://")
    } else if url.contains(['?', '#']) {
        Some("must not contain `?` or `#`: the query string is taken from each request")
    } else if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        Some("must not contain spaces")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(BuildError::PublicUrl { problem }),
        None => Ok(Some(url)),
    }
}

/// A preset's verifier, built with its secrets resolved.
#[derive(Debug, Clone)]
pub struct PresetVerifier {
    preset: &'static Preset,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    Hmac(hmac::GenericHmac),
    Timestamped(Stripe),
    StandardWebhooks(StandardWebhooks),
    Twilio(Twilio),
    Asymmetric(Asymmetric),
}

impl PresetVerifier {
    pub(super) fn name(&self) -> &'static str {
        self.preset.name
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        match &self.check {
            Check::Hmac(v) => v.check(req),
            Check::Timestamped(v) => v.check(req),
            Check::StandardWebhooks(v) => v.check(req),
            Check::Twilio(v) => v.check(req),
            Check::Asymmetric(v) => v.check(req),
        }
    }

    pub(super) fn provider_id(&self, req: &Unverified) -> Option<String> {
        match self.preset.dedup {
            ProviderId::None => None,
            ProviderId::Header(names) => names
                .iter()
                .filter_map(|name| req.header(name))
                .map(str::trim)
                .find(|id| !id.is_empty())
                .map(str::to_owned),
            ProviderId::Json(pointer) => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
                match body.pointer(pointer)? {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            }
        }
    }

    pub(super) fn answer(&self, verified: &Verified) -> Option<Answer> {
        match self.preset.challenge {
            Challenge::None => None,
            Challenge::SlackUrlVerification => slack_url_verification(&verified.request().body),
            Challenge::DiscordPing => discord_ping(&verified.request().body),
        }
    }
}

/// Slack's Events API handshake: `{"type": "url_verification", "challenge": "..."}`
/// is answered `200` with the challenge as plain text (one of the three answers Slack
/// accepts). Any other body is an ordinary event.
fn slack_url_verification(body: &[u8]) -> Option<Answer> {
    #[derive(serde::Deserialize)]
    struct Handshake {
        #[serde(rename = "type")]
        kind: String,
        challenge: String,
    }
    let handshake: Handshake = serde_json::from_slice(body).ok()?;
    (handshake.kind == "url_verification").then(|| Answer {
        content_type: "text/plain; charset=utf-8",
        body: handshake.challenge.into_bytes(),
    })
}

/// Discord's interactions PING, `{"type": 1}` (other keys allowed), answered
/// `{"type":1}` as JSON. Any other interaction is an event, and so is a Webhook Events
/// delivery, which also has `"type": 1` but carries an `event`.
fn discord_ping(body: &[u8]) -> Option<Answer> {
    #[derive(serde::Deserialize)]
    struct Interaction {
        #[serde(rename = "type")]
        kind: u64,
        event: Option<serde::de::IgnoredAny>,
    }
    let interaction: Interaction = serde_json::from_slice(body).ok()?;
    (interaction.kind == 1 && interaction.event.is_none()).then(|| Answer {
        content_type: "application/json",
        body: br#"{"type":1}"#.to_vec(),
    })
}

#[cfg(test)]
mod tests;
