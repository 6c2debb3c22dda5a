//! Providers as data: `verify = { kind = "shopify", secret = "..." }`.
//!
//! Most webhook senders sign "some text, in some header, in some encoding". Each entry
//! of [`PRESETS`] says which, over one of the verifiers: the generic `hmac` one
//! (`hmac.rs`), the `t=...,v1=...` one (`stripe.rs`, which also reads Paddle's
//! `ts=...;h1=...`), Standard Webhooks (`standard_webhooks.rs`), Basic authentication
//! (Postmark), or, for the few schemes that really differ, their own (`twilio.rs`,
//! `mailgun.rs`, `token.rs` for GitLab and Okta, and `asymmetric.rs` for Discord and
//! SendGrid, checked with the provider's public key). An entry also names the
//! provider's own delivery id (the dedup key when the source sets none), the default
//! timestamp tolerance where a timestamp is signed, and any challenge the provider sends
//! (Slack's `url_verification`, Discord's PING, Meta's `hub.challenge`, ...: answered in
//! `challenges.rs`). A preset that takes keys besides `secret`, `tolerance` and
//! `public_url` lists them in `Preset::keys`. A new HMAC-shaped provider is a new entry here, a row in
//! `docs/verifiers.md` and a case with its published example in `presets/tests.rs`
//! (a test fails until both exist); no code. `forebay send` signs for every entry
//! through `sign_as`, from the same settings.

use std::time::Duration;

use http::Method;

use super::adyen::Adyen;
use super::asymmetric::{self, Asymmetric, Layout};
use super::basic::Basic;
use super::certificate::{self, Certificate, CertificateAlgorithm};
use super::challenges::{self, ChallengeKeys};
use super::config::{
    BuildError, HmacAlgorithm, OneOrMany, PresetConfig, SignatureEncoding, TimestampFormat,
    resolve_all,
};
use super::hmac::{self, KeyDecoding, UrlForm};
use super::jwt::{self, BodyHash, BodyHashAlgorithm, BodyHashEncoding, Jwt, JwtAlgorithm};
use super::mailgun::Mailgun;
use super::plivo::Plivo;
use super::rejection::Rejection;
use super::standard_webhooks::StandardWebhooks;
use super::stripe::{Format, PADDLE, RECURLY, SignatureText, Stripe, stripe_like, stripe_like_ms};
use super::token::HeaderToken;
use super::twilio::{self, FormLayout, Twilio};
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
    /// URL and sorted form parameters, HMAC-SHA1 (`twilio.rs`), in this sender's header;
    /// needs `public_url`.
    Twilio(&'static FormLayout),
    /// URL, sorted parameters and a nonce, HMAC-SHA256 (`plivo.rs`); needs `public_url`.
    Plivo,
    /// A signature over `{timestamp}{body}` made with the provider's private key,
    /// checked with its public key (`asymmetric.rs`): Discord, SendGrid.
    Asymmetric(&'static Layout),
    /// The secret itself in a header, by default this one (Okta; `token.rs`).
    HeaderToken(&'static str),
    /// GitLab: `X-Gitlab-Token` and/or, with a `signing_token`, a Standard Webhooks
    /// signature.
    Gitlab,
    /// HTTP Basic authentication (Postmark): `username` and `password`.
    Basic,
    /// The signature inside the body (`mailgun.rs`).
    Mailgun,
    /// A signature of eight fields inside each notification item (`adyen.rs`).
    Adyen,
    /// A JSON Web Token in a header, signed with the shared secret (`jwt.rs`).
    Jwt(JwtShape),
    /// A signature made with a pinned certificate's key over a template
    /// (`certificate.rs`): PayPal.
    Certificate(CertificateShape),
}

/// A certificate preset's fixed settings; the source gives the `certificate` and the
/// values the template names (PayPal's `webhook_id`).
#[derive(Debug, PartialEq)]
pub(super) struct CertificateShape {
    pub header: &'static str,
    pub algorithm: CertificateAlgorithm,
    /// The signed text, with `{webhook_id}` for the configured webhook id.
    pub signed: &'static str,
    pub timestamp_header: &'static str,
    pub timestamp_format: TimestampFormat,
    /// A header that must name the algorithm (`PAYPAL-AUTH-ALGO: SHA256withRSA`).
    pub algorithm_header: (&'static str, &'static str),
}

impl CertificateShape {
    /// The verifier, with the configured certificate(s), webhook id and tolerance.
    pub(super) fn build(
        &self,
        config: &PresetConfig,
        tolerance: Duration,
    ) -> Result<Certificate, BuildError> {
        let certificate = config.public_key.as_ref().ok_or(BuildError::NoSecrets {
            field: "certificate",
        })?;
        let webhook_id = config.extras.webhook_id.as_deref().unwrap_or_default();
        if webhook_id.is_empty() || webhook_id.contains(|c: char| c.is_whitespace()) {
            return Err(BuildError::Needs(
                "`webhook_id` must be the webhook's id as the developer dashboard shows it (e.g. \"8PT597110X687430LKGECATA\"), not the id of an event",
            ));
        }
        // Braces in the id are literal, not placeholders.
        let escaped = webhook_id.replace('{', "{{").replace('}', "}}");
        let signed = self.signed.replace("{webhook_id}", &escaped);
        Certificate::build(certificate::Settings {
            certificate,
            algorithm: self.algorithm,
            header: self.header,
            encoding: SignatureEncoding::Base64,
            signed: &signed,
            timestamp_header: Some(self.timestamp_header),
            timestamp_format: self.timestamp_format,
            tolerance,
            public_url: None,
            algorithm_header: Some(self.algorithm_header),
        })
    }
}

/// A JWT preset's fixed settings; the source gives the `secret` (and `public_url` where
/// the token covers the URL or names it as its audience).
#[derive(Debug, PartialEq)]
pub(super) struct JwtShape {
    pub header: &'static str,
    /// The `HS*` algorithms the provider's SDK accepts.
    pub algorithms: &'static [JwtAlgorithm],
    pub issuer: Option<&'static str>,
    /// The claim with the hex SHA-256 of the body.
    pub body_hash: Option<&'static str>,
    /// An empty body comes without the body-hash claim (MessageBird).
    pub empty_body_unhashed: bool,
    /// The claim with the hex SHA-256 of `public_url` and the query string.
    pub url_hash: Option<&'static str>,
    /// `aud` must be the source's `public_url` (monday.com).
    pub audience_is_public_url: bool,
    pub required: &'static [&'static str],
    /// What the preset's `tolerance` sets: the `max_age` of `iat` (tokens without an
    /// expiry: Vonage), else the leeway on `exp` and `nbf`.
    pub tolerance_is_max_age: bool,
    /// The provider's tokens always carry `exp`: one without it is refused.
    pub expiry_required: bool,
}

impl JwtShape {
    /// The verifier's settings, with the user's secret, tolerance and URL.
    pub(super) fn settings<'c>(
        &'c self,
        secret: &'c OneOrMany<SecretRef>,
        tolerance: Duration,
        public_url: Option<&str>,
    ) -> Result<jwt::Settings<'c>, BuildError> {
        let needs_url = self.url_hash.is_some() || self.audience_is_public_url;
        let public_url = match (needs_url, public_url) {
            (true, None) => {
                return Err(BuildError::PublicUrl {
                    problem: "is required: the URL entered at the sender, which the token covers",
                });
            }
            (_, url) => url,
        };
        let (leeway, max_age) = if self.tolerance_is_max_age {
            (Duration::from_secs(60), Some(tolerance))
        } else {
            (tolerance, None)
        };
        Ok(jwt::Settings {
            header: self.header,
            algorithms: self.algorithms,
            secret,
            public_key: None,
            jwks: None,
            claims: jwt::Claims {
                issuer: self.issuer.map(str::to_owned),
                audience: public_url
                    .filter(|_| self.audience_is_public_url)
                    .map(str::to_owned),
                required: self.required.iter().map(|c| (*c).to_owned()).collect(),
                body_hash: self.body_hash.map(|claim| BodyHash {
                    claim: claim.to_owned(),
                    algorithm: BodyHashAlgorithm::Sha256,
                    encoding: BodyHashEncoding::Hex,
                }),
                empty_body_unhashed: self.empty_body_unhashed,
                url_hash: self
                    .url_hash
                    .zip(public_url)
                    .map(|(claim, url)| jwt::UrlHash {
                        claim,
                        public_url: url.to_owned(),
                    }),
                leeway,
                max_age,
                expiry_required: self.expiry_required,
            },
        })
    }
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
    /// The signature may also come without `prefix` (Mollie).
    pub prefix_optional: bool,
    pub timestamp_header: Option<&'static str>,
    pub signed: Option<&'static str>,
    pub list_separator: Option<char>,
    /// A second header with a signature by the second key (Box).
    pub secondary_header: Option<&'static str>,
    pub body_timestamp_ms: Option<&'static str>,
    pub key: KeyDecoding,
    /// The template has `{url}`: the source needs a `public_url`.
    pub public_url: bool,
    pub timestamp_format: TimestampFormat,
    pub url_form: UrlForm,
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
    /// As `Json` for a JSON body, else this field of a form-encoded body (Mailgun).
    JsonOrForm(&'static str, &'static str),
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
    /// Meta's subscription GET: `hub.mode=subscribe`, `hub.verify_token` (checked
    /// against `verify_token`) and `hub.challenge`, echoed as text.
    MetaSubscribe,
    /// X/Twitter's CRC GET: `crc_token`, answered with its HMAC under the secret.
    TwitterCrc,
    /// Zoom's signed `endpoint.url_validation` POST: `plainToken` and its HMAC.
    ZoomUrlValidation,
    /// Twitch EventSub's signed `webhook_callback_verification`: `challenge` as text.
    TwitchVerification,
    /// Dropbox's (and Nylas's) GET `?challenge=`, echoed as text with
    /// `X-Content-Type-Options`.
    DropboxEcho,
    /// Okta's one-time GET with `X-Okta-Verification-Challenge`, echoed as JSON.
    OktaVerification,
    /// Asana's handshake POST with `X-Hook-Secret`, echoed in the same header.
    AsanaHandshake,
    /// Xero's "intent to receive": a signed POST with no events, answered `200` with
    /// no body.
    XeroIntentToReceive,
    /// Trello's HEAD when a webhook is created, answered `200`.
    TrelloHead,
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
            prefix_optional: self.prefix_optional,
            timestamp_header: self.timestamp_header,
            signed: self.signed,
            tolerance,
            list_separator: self.list_separator,
            secondary_header: self.secondary_header,
            body_timestamp_ms: self.body_timestamp_ms,
            key: self.key,
            public_url: public_url.filter(|_| self.public_url),
            timestamp_format: self.timestamp_format,
            url_form: self.url_form,
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
        prefix_optional: false,
        timestamp_header: None,
        signed: None,
        list_separator: None,
        secondary_header: None,
        body_timestamp_ms: None,
        key: KeyDecoding::Raw,
        public_url: false,
        timestamp_format: TimestampFormat::Unix,
        url_form: UrlForm::AsSent,
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

/// A JWT preset's defaults: HS256 in `header`, no claims checked but the times.
const fn jwt_shape(header: &'static str) -> JwtShape {
    JwtShape {
        header,
        algorithms: &[JwtAlgorithm::Hs256],
        issuer: None,
        body_hash: None,
        empty_body_unhashed: false,
        url_hash: None,
        audience_is_public_url: false,
        required: &[],
        tolerance_is_max_age: false,
        expiry_required: false,
    }
}

/// SPEC section 5's default, used unless the provider's own SDK enforces another window.
const FIVE_MINUTES: Duration = Duration::from_secs(300);

use HmacAlgorithm::{Sha1, Sha256, Sha512};
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
        scheme: Scheme::Twilio(&twilio::TWILIO),
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
    body_hmac(
        // Keyed with the account's secret API key: Paystack has no separate webhook secret.
        "paystack",
        shape("x-paystack-signature", Sha512, Hex, None),
        ProviderId::None,
    ),
    body_hmac(
        "gocardless",
        shape("Webhook-Signature", Sha256, Hex, None),
        // A batch of events; a retry resends the same batch.
        ProviderId::Json("/events/0/id"),
    ),
    body_hmac(
        "checkoutcom",
        shape("Cko-Signature", Sha256, Hex, None),
        ProviderId::None,
    ),
    body_hmac(
        // The top-level `id` and `attempt_number` change per delivery; the event's do not.
        "coinbase",
        shape("X-CC-Webhook-Signature", Sha256, Hex, None),
        ProviderId::Json("/event/id"),
    ),
    body_hmac(
        "calcom",
        shape("X-Cal-Signature-256", Sha256, Hex, None),
        ProviderId::None,
    ),
    body_hmac(
        // The Webhooks (Actions) destination; with batching on, Segment signs only the
        // first event of the array, which this check cannot accept.
        "segment",
        shape("X-Signature", Sha1, Hex, None),
        ProviderId::Json("/messageId"),
    ),
    body_hmac(
        "onfido",
        shape("X-SHA2-Signature", Sha256, Hex, None),
        ProviderId::None,
    ),
    body_hmac(
        // One header per active Connect key (`-1`, `-2`, ...); the first key is checked.
        "docusign",
        shape("X-DocuSign-Signature-1", Sha256, Base64, None),
        ProviderId::None,
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
    Preset {
        name: "meta",
        scheme: Scheme::Hmac(shape("X-Hub-Signature-256", Sha256, Hex, Some("sha256="))),
        // No delivery id: message ids sit deep in batched `entry` arrays.
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::MetaSubscribe,
    },
    Preset {
        name: "twitter",
        scheme: Scheme::Hmac(shape(
            "x-twitter-webhooks-signature",
            Sha256,
            Base64,
            Some("sha256="),
        )),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::TwitterCrc,
    },
    Preset {
        name: "gitlab",
        scheme: Scheme::Gitlab,
        // `Idempotency-Key` (GitLab 17.4+) is the same on every retry, as is the
        // Standard Webhooks `webhook-id` GitLab sets to it. `webhook-id` comes first:
        // with a `signing_token` it is the one that is signed, so a captured request
        // replayed under a new `Idempotency-Key` is still a duplicate.
        dedup: ProviderId::Header(&["webhook-id", "Idempotency-Key", "X-Gitlab-Event-UUID"]),
        // Only the `signing_token` signature has a timestamp (default five minutes).
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        name: "hubspot",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("X-HubSpot-Request-Timestamp"),
            timestamp_format: TimestampFormat::UnixMs,
            signed: Some("{method}{url}{body}{timestamp}"),
            public_url: true,
            url_form: UrlForm::HubSpotDecoded,
            ..shape("X-HubSpot-Signature-v3", Sha256, Base64, None)
        }),
        // A batch of events; a retry resends the same batch.
        dedup: ProviderId::Json("/0/eventId"),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "zoom",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("x-zm-request-timestamp"),
            signed: Some("v0:{timestamp}:{body}"),
            ..shape("x-zm-signature", Sha256, Hex, Some("v0="))
        }),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::ZoomUrlValidation,
    },
    Preset {
        name: "twitch",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("Twitch-Eventsub-Message-Timestamp"),
            timestamp_format: TimestampFormat::Rfc3339,
            signed: Some("{header:Twitch-Eventsub-Message-Id}{timestamp}{body}"),
            ..shape(
                "Twitch-Eventsub-Message-Signature",
                Sha256,
                Hex,
                Some("sha256="),
            )
        }),
        dedup: ProviderId::Header(&["Twitch-Eventsub-Message-Id"]),
        // Twitch: "make sure the value in the timestamp header isn't older than 10
        // minutes".
        tolerance: Some(Duration::from_secs(600)),
        challenge: Challenge::TwitchVerification,
    },
    Preset {
        name: "okta",
        scheme: Scheme::HeaderToken("Authorization"),
        // The System Log event's uuid, the same when Okta redelivers the batch.
        dedup: ProviderId::Json("/data/events/0/uuid"),
        tolerance: None,
        challenge: Challenge::OktaVerification,
    },
    Preset {
        name: "dropbox",
        scheme: Scheme::Hmac(shape("X-Dropbox-Signature", Sha256, Hex, None)),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::DropboxEcho,
    },
    Preset {
        name: "asana",
        scheme: Scheme::Hmac(shape("X-Hook-Signature", Sha256, Hex, None)),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::AsanaHandshake,
    },
    Preset {
        name: "mailgun",
        scheme: Scheme::Mailgun,
        // Mailgun's docs: cache the token and refuse a repeat.
        dedup: ProviderId::JsonOrForm("/signature/token", "token"),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "postmark",
        scheme: Scheme::Basic,
        dedup: ProviderId::Json("/MessageID"),
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        name: "xero",
        scheme: Scheme::Hmac(shape("x-xero-signature", Sha256, Base64, None)),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::XeroIntentToReceive,
    },
    Preset {
        name: "trello",
        scheme: Scheme::Hmac(Shape {
            signed: Some("{body}{url}"),
            public_url: true,
            ..shape("X-Trello-Webhook", Sha1, Base64, None)
        }),
        dedup: ProviderId::Json("/action/id"),
        tolerance: None,
        challenge: Challenge::TrelloHead,
    },
    Preset {
        name: "webflow",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("x-webflow-timestamp"),
            timestamp_format: TimestampFormat::UnixMs,
            signed: Some("{timestamp}:{body}"),
            ..shape("x-webflow-signature", Sha256, Hex, None)
        }),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "zendesk",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("X-Zendesk-Webhook-Signature-Timestamp"),
            timestamp_format: TimestampFormat::Rfc3339,
            signed: Some("{timestamp}{body}"),
            ..shape("X-Zendesk-Webhook-Signature", Sha256, Base64, None)
        }),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "frameio",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("X-Frameio-Request-Timestamp"),
            signed: Some("v0:{timestamp}:{body}"),
            ..shape("X-Frameio-Signature", Sha256, Hex, Some("v0="))
        }),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "customerio",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("X-CIO-Timestamp"),
            signed: Some("v0:{timestamp}:{body}"),
            ..shape("X-CIO-Signature", Sha256, Hex, None)
        }),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "persona",
        scheme: Scheme::Timestamped(&PERSONA),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        name: "nylas",
        scheme: Scheme::Hmac(shape("x-nylas-signature", Sha256, Hex, None)),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::DropboxEcho,
    },
    Preset {
        // The secret hash chosen in Flutterwave's dashboard, sent as it is (v3).
        name: "flutterwave",
        scheme: Scheme::HeaderToken("verif-hash"),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        // The server URL's secret, sent as it is.
        name: "vapi",
        scheme: Scheme::HeaderToken("x-vapi-secret"),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
    standard_webhooks("svix"),
    standard_webhooks("clerk"),
    standard_webhooks("resend"),
    standard_webhooks("openai"),
    standard_webhooks("render"),
    standard_webhooks("replicate"),
    standard_webhooks("lithic"),
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
    Preset {
        // Deploy and form notifications with a "JWS secret token": a JWS in
        // `X-Webhook-Signature` whose `sha256` claim is the body's hash. Nothing in the
        // token says when it was made, so there is no tolerance.
        name: "netlify",
        scheme: Scheme::Jwt(JwtShape {
            issuer: Some("netlify"),
            body_hash: Some("sha256"),
            ..jwt_shape("X-Webhook-Signature")
        }),
        // A deploy's `id` repeats for each of its states: the body hash is the key.
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        // Signed webhooks (Messages API; Voice with signed callbacks): `Authorization:
        // Bearer <jwt>` with the account's signature secret. The token has `iat` but no
        // `exp`: the tolerance is how old `iat` may be. Its `payload_hash` is not
        // checked: Vonage's own sample hashes re-serialised JSON, not the bytes sent.
        name: "vonage",
        scheme: Scheme::Jwt(JwtShape {
            tolerance_is_max_age: true,
            ..jwt_shape("Authorization")
        }),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        // `MessageBird-Signature-JWT`: HS256 (or HS384/HS512) with the signing key,
        // `iss` MessageBird, `nbf`/`exp` a minute apart, the hashes of the URL it
        // posted to and of the body (left out for an empty one). The SDKs allow 1 to
        // 5 seconds of clock skew.
        name: "messagebird",
        scheme: Scheme::Jwt(JwtShape {
            algorithms: &[
                JwtAlgorithm::Hs256,
                JwtAlgorithm::Hs384,
                JwtAlgorithm::Hs512,
            ],
            issuer: Some("MessageBird"),
            body_hash: Some("payload_hash"),
            empty_body_unhashed: true,
            url_hash: Some("url_hash"),
            // As the Go SDK, which reads a missing `nbf` or `exp` as 0.
            required: &["jti", "nbf"],
            expiry_required: true,
            ..jwt_shape("MessageBird-Signature-JWT")
        }),
        dedup: ProviderId::None,
        tolerance: Some(Duration::from_secs(5)),
        challenge: Challenge::None,
    },
    Preset {
        // monday.com apps: `Authorization: <jwt>` signed with the app's Signing Secret
        // (Client Secret for lifecycle events), `aud` the endpoint, `exp` checked. The
        // token does not cover the body.
        name: "monday",
        scheme: Scheme::Jwt(JwtShape {
            audience_is_public_url: true,
            expiry_required: true,
            ..jwt_shape("Authorization")
        }),
        dedup: ProviderId::None,
        tolerance: Some(Duration::from_secs(60)),
        challenge: Challenge::None,
    },
    Preset {
        // API v2 webhooks: Ed25519 over `{telnyx-timestamp}|{body}` with the account's
        // public key; the SDKs allow 300 s either way.
        name: "telnyx",
        scheme: Scheme::Asymmetric(&asymmetric::TELNYX),
        dedup: ProviderId::Json("/data/id"),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        // Offline verification: SHA256withRSA over `{transmission id}|{transmission
        // time}|{webhook id}|{CRC-32 of the body}`, with PayPal's certificate pinned
        // (its `PAYPAL-CERT-URL` is never fetched). PayPal retries for three days and
        // does not say whether a retry is signed anew, so the default tolerance spans
        // them. A CRC-32 is no hash: another body with the same CRC would pass, so the
        // dedup key is the signed transmission id, and each signature counts once.
        name: "paypal",
        scheme: Scheme::Certificate(CertificateShape {
            header: "PAYPAL-TRANSMISSION-SIG",
            algorithm: CertificateAlgorithm::RsaSha256,
            signed: "{header:PAYPAL-TRANSMISSION-ID}|{timestamp}|{webhook_id}|{body_crc32}",
            timestamp_header: "PAYPAL-TRANSMISSION-TIME",
            timestamp_format: TimestampFormat::Rfc3339,
            algorithm_header: ("PAYPAL-AUTH-ALGO", "SHA256withRSA"),
        }),
        dedup: ProviderId::Header(&["PAYPAL-TRANSMISSION-ID"]),
        tolerance: Some(Duration::from_secs(3 * 24 * 3600 + 3600)),
        challenge: Challenge::None,
    },
    Preset {
        // `WorkOS-Signature: t=<ms>, v1=<hex>` over `{t}.{body}`; the SDKs allow 180 s.
        name: "workos",
        scheme: Scheme::Timestamped(&WORKOS),
        dedup: ProviderId::Json("/id"),
        tolerance: Some(Duration::from_secs(180)),
        challenge: Challenge::None,
    },
    Preset {
        // `sanity-webhook-signature: t=<ms>,v1=<base64url>` over `{t}.{body}`. Sanity's
        // toolkit checks no age; forebay's default applies.
        name: "sanity",
        scheme: Scheme::Timestamped(&SANITY),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        // Webhooks v2: base64 HMAC-SHA256 of the body followed by
        // `box-delivery-timestamp`, in `box-signature-primary` (primary key) and
        // `box-signature-secondary` (secondary key); the SDKs allow 10 minutes.
        name: "box",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("box-delivery-timestamp"),
            timestamp_format: TimestampFormat::Rfc3339,
            signed: Some("{body}{timestamp}"),
            secondary_header: Some("box-signature-secondary"),
            ..shape("box-signature-primary", Sha256, Base64, None)
        }),
        dedup: ProviderId::Header(&["box-delivery-id"]),
        tolerance: Some(Duration::from_secs(600)),
        challenge: Challenge::None,
    },
    Preset {
        // `X-Airtable-Content-MAC: hmac-sha256=<hex>` of the body, keyed with the
        // base64-decoded `macSecretBase64` shown when the webhook is created. The body
        // is only a ping: the payloads are fetched from Airtable's API.
        name: "airtable",
        scheme: Scheme::Hmac(Shape {
            key: KeyDecoding::Base64,
            ..shape("X-Airtable-Content-MAC", Sha256, Hex, Some("hmac-sha256="))
        }),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        // `X-Hmac-Signature: hmac-sha256-hex=<hex>` of the body; EasyPost keys the HMAC
        // with the secret in Unicode NFKD form.
        name: "easypost",
        scheme: Scheme::Hmac(Shape {
            key: KeyDecoding::Nfkd,
            ..shape("X-Hmac-Signature", Sha256, Hex, Some("hmac-sha256-hex="))
        }),
        dedup: ProviderId::Json("/id"),
        tolerance: None,
        challenge: Challenge::None,
    },
    body_hmac(
        // Next-gen webhooks: `X-Mollie-Signature: sha256=<hex>` of the body (the prefix
        // may be absent). Classic webhooks are unsigned: verify those with `none` and
        // fetch the payment.
        "mollie",
        Shape {
            prefix_optional: true,
            ..shape("X-Mollie-Signature", Sha256, Hex, Some("sha256="))
        },
        ProviderId::Json("/id"),
    ),
    body_hmac(
        // Jira Cloud admin webhooks with a secret: `X-Hub-Signature: sha256=<hex>`.
        "jira",
        shape("X-Hub-Signature", Sha256, Hex, Some("sha256=")),
        ProviderId::Header(&["X-Atlassian-Webhook-Identifier"]),
    ),
    Preset {
        // Conversation API callbacks: base64 HMAC-SHA256 of `{body}.{nonce}.{timestamp}`
        // in `x-sinch-webhook-signature`.
        name: "sinch",
        scheme: Scheme::Hmac(Shape {
            timestamp_header: Some("x-sinch-webhook-signature-timestamp"),
            signed: Some("{body}.{header:x-sinch-webhook-signature-nonce}.{timestamp}"),
            ..shape("x-sinch-webhook-signature", Sha256, Base64, None)
        }),
        dedup: ProviderId::None,
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        // HTTP Basic authentication set on the webhook (Chargebee has no signature).
        name: "chargebee",
        scheme: Scheme::Basic,
        dedup: ProviderId::Json("/id"),
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        // HTTP Basic authentication set on the application or subscription (Bandwidth
        // has no signature).
        name: "bandwidth",
        scheme: Scheme::Basic,
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        // Standard notifications: each item's `additionalData.hmacSignature` signs
        // eight of its fields with the hex HMAC key; nothing signed says when.
        name: "adyen",
        scheme: Scheme::Adyen,
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        // `recurly-signature: <ms>,<hex>[,<hex>]` over `{ms}.{body}`; the SDK allows
        // 5 minutes.
        name: "recurly",
        scheme: Scheme::Timestamped(&RECURLY),
        dedup: ProviderId::Json("/id"),
        tolerance: Some(FIVE_MINUTES),
        challenge: Challenge::None,
    },
    Preset {
        // V3 signatures: `X-Plivo-Signature-V3` over the URL, the sorted parameters and
        // `X-Plivo-Signature-V3-Nonce`, with the Auth Token. Nothing signed says when.
        name: "plivo",
        scheme: Scheme::Plivo,
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
    Preset {
        // Mailchimp Transactional: `X-Mandrill-Signature`, base64 HMAC-SHA1 with the
        // webhook's key of the URL as entered and the sorted form fields, as Twilio.
        name: "mandrill",
        scheme: Scheme::Twilio(&twilio::MANDRILL),
        dedup: ProviderId::None,
        tolerance: None,
        challenge: Challenge::None,
    },
];

static CALENDLY: Format = stripe_like("Calendly-Webhook-Signature");
static MUX: Format = stripe_like("Mux-Signature");
static PERSONA: Format = stripe_like("Persona-Signature");
static WORKOS: Format = stripe_like_ms("WorkOS-Signature", SignatureText::Hex);
static SANITY: Format = stripe_like_ms("sanity-webhook-signature", SignatureText::Base64Url);

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
            Scheme::Twilio(_) | Scheme::Plivo => true,
            Scheme::Jwt(shape) => shape.url_hash.is_some() || shape.audience_is_public_url,
            Scheme::Certificate(_) | Scheme::Adyen => false,
            Scheme::Timestamped(_)
            | Scheme::StandardWebhooks
            | Scheme::Asymmetric(_)
            | Scheme::HeaderToken(_)
            | Scheme::Gitlab
            | Scheme::Basic
            | Scheme::Mailgun => false,
        }
    }

    /// Whether the source gives a `public_key`, instead of or beside a `secret`.
    pub(super) fn public_key_use(&self) -> KeyUse {
        match &self.scheme {
            Scheme::Asymmetric(_) => KeyUse::Required,
            Scheme::StandardWebhooks => KeyUse::Optional,
            Scheme::Hmac(_)
            | Scheme::Timestamped(_)
            | Scheme::Twilio(_)
            | Scheme::Plivo
            | Scheme::HeaderToken(_)
            | Scheme::Gitlab
            | Scheme::Basic
            | Scheme::Mailgun
            | Scheme::Jwt(_)
            | Scheme::Certificate(_)
            | Scheme::Adyen => KeyUse::None,
        }
    }

    /// Whether a changed body fails the check. Not so where a credential is sent as is
    /// (GitLab's token, Okta, Postmark), where only a timestamp and token are signed
    /// (Mailgun) or some fields (Adyen: whitespace is not), or where a token has no
    /// body-hash claim (Vonage, monday.com).
    #[cfg(test)]
    pub(super) fn signs_body(&self) -> bool {
        match &self.scheme {
            Scheme::HeaderToken(_)
            | Scheme::Gitlab
            | Scheme::Basic
            | Scheme::Mailgun
            | Scheme::Adyen => false,
            Scheme::Jwt(shape) => shape.body_hash.is_some(),
            _ => true,
        }
    }

    /// The keys of a preset that takes more than `secret` with `tolerance` or
    /// `public_url`; `None` for the others, read by the shapes in `config.rs`.
    pub(super) fn keys(&self) -> Option<Keys> {
        let keys = |required, optional| Some(Keys { required, optional });
        match (&self.scheme, &self.challenge) {
            (_, Challenge::MetaSubscribe) => keys(&["secret", "verify_token"], &[]),
            // No secret until Asana's handshake has shown it.
            (_, Challenge::AsanaHandshake) => keys(&[], &["secret", "verify_token"]),
            (Scheme::HeaderToken(_), _) => keys(&["secret"], &["header"]),
            (Scheme::Basic, _) => keys(&["username", "password"], &[]),
            (Scheme::Gitlab, _) => keys(&[], &["secret", "signing_token", "tolerance"]),
            (Scheme::Certificate(_), _) => keys(
                &["certificate", "webhook_id"],
                &["tolerance", "signing_key"],
            ),
            _ if self.needs_public_url() && self.signs_timestamp() => {
                keys(&["secret", "public_url"], &["tolerance"])
            }
            _ => None,
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
            // An Asana source before its handshake: see `challenges::asana_handshake`.
            Scheme::Hmac(_)
                if self.challenge == Challenge::AsanaHandshake && secret.as_slice().is_empty() =>
            {
                Check::AwaitingSecret
            }
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
            Scheme::Twilio(layout) => {
                let public_url = checked_public_url(config.public_url.as_deref())?.ok_or(
                    BuildError::PublicUrl {
                        problem: "is required: the URL the provider posts to, exactly as entered there",
                    },
                )?;
                Check::Twilio(Twilio::build(layout, secret, public_url)?)
            }
            Scheme::Plivo => {
                let public_url = checked_public_url(config.public_url.as_deref())?.ok_or(
                    BuildError::PublicUrl {
                        problem: "is required: the URL Plivo calls",
                    },
                )?;
                Check::Plivo(Plivo::build(secret, public_url)?)
            }
            Scheme::Asymmetric(layout) => {
                Check::Asymmetric(Asymmetric::build(layout, required_key(config)?, tolerance)?)
            }
            Scheme::HeaderToken(default) => {
                let header = config.extras.header.as_deref().unwrap_or(default);
                Check::Token(HeaderToken::build(header, secret)?)
            }
            Scheme::Gitlab => {
                let token = (!secret.as_slice().is_empty())
                    .then(|| HeaderToken::build(GITLAB_TOKEN, secret))
                    .transpose()?;
                let signed = config
                    .extras
                    .signing_token
                    .as_ref()
                    .map(|key| StandardWebhooks::build(key, None, tolerance))
                    .transpose()?;
                if token.is_none() && signed.is_none() {
                    return Err(BuildError::Needs(
                        "give `secret` (the webhook's secret token), `signing_token` (its `whsec_…` signing token), or both",
                    ));
                }
                Check::Gitlab { token, signed }
            }
            Scheme::Basic => {
                let username = config.extras.username.as_deref().unwrap_or_default();
                Check::Basic(Basic::build(username, secret)?)
            }
            Scheme::Mailgun => Check::Mailgun(Mailgun::build(secret, tolerance)?),
            Scheme::Jwt(shape) => {
                let public_url = checked_public_url(config.public_url.as_deref())?;
                Check::Jwt(Jwt::build(shape.settings(secret, tolerance, public_url)?)?)
            }
            Scheme::Certificate(shape) => Check::Certificate(shape.build(config, tolerance)?),
            Scheme::Adyen => Check::Adyen(Adyen::build(secret)?),
        };
        Ok(PresetVerifier {
            preset: self,
            check,
            keys: self.challenge_keys(config)?,
        })
    }

    /// What the preset's challenge needs of the configuration.
    fn challenge_keys(&self, config: &PresetConfig) -> Result<ChallengeKeys, BuildError> {
        let digests = |field, refs| -> Result<_, BuildError> {
            Ok(resolve_all(field, refs)?
                .iter()
                .map(|s| challenges::digest(s.expose()))
                .collect())
        };
        Ok(match self.challenge {
            Challenge::MetaSubscribe => ChallengeKeys {
                tokens: match &config.extras.verify_token {
                    Some(tokens) => digests("verify_token", tokens)?,
                    None => Vec::new(),
                },
                ..ChallengeKeys::default()
            },
            Challenge::AsanaHandshake if !config.secret.as_slice().is_empty() => ChallengeKeys {
                tokens: digests("secret", &config.secret)?,
                ..ChallengeKeys::default()
            },
            Challenge::AsanaHandshake => ChallengeKeys {
                url_tokens: match &config.extras.verify_token {
                    Some(tokens) => digests("verify_token", tokens)?,
                    None => {
                        return Err(BuildError::Needs(
                            "give `verify_token` (a random value you also put in the webhook's target URL as ?verify_token=…) until Asana's handshake has shown the `secret`, so that only your own handshake is answered",
                        ));
                    }
                },
                ..ChallengeKeys::default()
            },
            // The sender computes these with its one secret: the first (newest) one.
            Challenge::TwitterCrc | Challenge::ZoomUrlValidation => ChallengeKeys {
                key: resolve_all("secret", &config.secret)?.into_iter().next(),
                ..ChallengeKeys::default()
            },
            _ => ChallengeKeys::default(),
        })
    }
}

/// The `public_key` of a preset that requires one (the TOML reader makes sure it is set).
fn required_key(config: &PresetConfig) -> Result<&OneOrMany<SecretRef>, BuildError> {
    config.public_key.as_ref().ok_or(BuildError::NoSecrets {
        field: "public_key",
    })
}

/// Which keys a preset takes (besides `kind`), for those that list them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keys {
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
}

const GITLAB_TOKEN: &str = "X-Gitlab-Token";

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
    keys: ChallengeKeys,
}

#[derive(Debug, Clone)]
enum Check {
    Hmac(hmac::GenericHmac),
    Timestamped(Stripe),
    StandardWebhooks(StandardWebhooks),
    Twilio(Twilio),
    Plivo(Plivo),
    Asymmetric(Asymmetric),
    Token(HeaderToken),
    Gitlab {
        token: Option<HeaderToken>,
        signed: Option<StandardWebhooks>,
    },
    Basic(Basic),
    Mailgun(Mailgun),
    Jwt(Jwt),
    Certificate(Certificate),
    Adyen(Adyen),
    /// No secret yet (Asana before its handshake): every event is refused.
    AwaitingSecret,
}

impl PresetVerifier {
    pub(super) fn name(&self) -> &'static str {
        self.preset.name
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        if self.preset.challenge == Challenge::TwitterCrc {
            challenges::twitter_body_is_an_object(req)?;
        }
        match &self.check {
            Check::Hmac(v) => v.check(req),
            Check::Timestamped(v) => v.check(req),
            Check::StandardWebhooks(v) => v.check(req),
            Check::Twilio(v) => v.check(req),
            Check::Plivo(v) => v.check(req),
            Check::Asymmetric(v) => v.check(req),
            Check::Token(v) => v.check(req),
            Check::Gitlab { token, signed } => {
                if let Some(token) = token {
                    token.check(req)?;
                }
                match signed {
                    Some(signed) => signed.check(req),
                    None => Ok(()),
                }
            }
            Check::Basic(v) => v.check(req),
            Check::Mailgun(v) => v.check(req),
            Check::Jwt(v) => v.check(req),
            Check::Certificate(v) => v.check(req),
            Check::Adyen(v) => v.check(req),
            Check::AwaitingSecret => Err(Rejection::NotConfigured {
                problem: "no `secret` is configured yet; answer Asana's handshake, then copy its X-Hook-Secret into `secret`",
            }),
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
            ProviderId::Json(pointer) => json_id(&req.body, pointer),
            ProviderId::JsonOrForm(pointer, field) => json_id(&req.body, pointer).or_else(|| {
                form_urlencoded::parse(&req.body)
                    .find(|(name, value)| name == field && !value.is_empty())
                    .map(|(_, value)| value.into_owned())
            }),
        }
    }

    pub(super) fn answer(&self, verified: &Verified) -> Option<Answer> {
        let req = verified.request();
        match self.preset.challenge {
            Challenge::SlackUrlVerification => slack_url_verification(&req.body),
            Challenge::DiscordPing => discord_ping(&req.body),
            Challenge::ZoomUrlValidation => challenges::zoom_url_validation(req, &self.keys),
            Challenge::TwitchVerification => challenges::twitch_verification(req),
            Challenge::XeroIntentToReceive => challenges::xero_intent_to_receive(req),
            _ => None,
        }
    }

    /// Xero ("Configuring your server": "There is no body in the response") and Okta
    /// (answers to deliveries "should all be empty") want no body; both also have a
    /// challenge, which is how they are told apart here.
    pub(super) fn wants_empty_answer(&self) -> bool {
        matches!(
            self.preset.challenge,
            Challenge::XeroIntentToReceive | Challenge::OktaVerification
        )
    }

    /// The method of the preset's unsigned challenge, when the source may not take it
    /// for events.
    pub(super) fn challenge_method(&self) -> Option<&'static Method> {
        match self.preset.challenge {
            Challenge::MetaSubscribe
            | Challenge::TwitterCrc
            | Challenge::DropboxEcho
            | Challenge::OktaVerification => Some(&Method::GET),
            Challenge::TrelloHead => Some(&Method::HEAD),
            _ => None,
        }
    }

    pub(super) fn challenge(&self, req: &Unverified) -> Option<Result<Answer, Rejection>> {
        let method = &req.method;
        match self.preset.challenge {
            Challenge::MetaSubscribe if method == Method::GET => {
                challenges::meta_subscribe(req, &self.keys)
            }
            Challenge::TwitterCrc if method == Method::GET => {
                challenges::twitter_crc(req, &self.keys)
            }
            Challenge::DropboxEcho if method == Method::GET => challenges::dropbox_echo(req),
            Challenge::OktaVerification if method == Method::GET => {
                challenges::okta_verification(req)
            }
            Challenge::TrelloHead if method == Method::HEAD => Some(Ok(Answer::empty())),
            Challenge::AsanaHandshake if method == Method::POST => {
                challenges::asana_handshake(req, &self.keys)
            }
            _ => None,
        }
    }
}

/// A string or number at `pointer` in a JSON body.
fn json_id(body: &[u8], pointer: &str) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    match body.pointer(pointer)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
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
    (handshake.kind == "url_verification").then(|| Answer::text(handshake.challenge))
}

/// Discord's two PINGs, neither carrying an `event`: the interactions PING,
/// `{"type": 1}` (other keys allowed), answered `{"type":1}` as JSON; and the Webhook
/// Events PING, `{"type": 0}`, answered `204` with no body ("Webhook Events",
/// "Responding to PING events"). Any other interaction is an event, and so is a Webhook
/// Events delivery, which has `"type": 1` but carries an `event`.
fn discord_ping(body: &[u8]) -> Option<Answer> {
    #[derive(serde::Deserialize)]
    struct Interaction {
        #[serde(rename = "type")]
        kind: u64,
        event: Option<serde::de::IgnoredAny>,
    }
    let interaction: Interaction = serde_json::from_slice(body).ok()?;
    match (interaction.kind, interaction.event) {
        (1, None) => Some(Answer::json(&serde_json::json!({"type": 1}))),
        (0, None) => Some(Answer {
            status: http::StatusCode::NO_CONTENT,
            ..Answer::empty()
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
