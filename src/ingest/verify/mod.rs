//! Request verification: turns an [`Unverified`] request into a [`Verified`] one, or into
//! a [`Rejected`] one that carries a reason safe to store and show.
//!
//! Layout: [`VerifyConfig`] (what the TOML says, in `config.rs`) is built once at load
//! time into a [`Verifier`], a closed enum with one small struct per scheme, each in its
//! own file (`stripe.rs`, `github.rs`, `standard_webhooks.rs`, `hmac.rs`, `basic.rs`,
//! `bearer.rs`, `jwt.rs` for JSON Web Tokens, `certificate.rs` for signatures checked
//! with a pinned certificate, and `asymmetric.rs` for signatures checked with the
//! sender's public key). Shared HMAC, constant-time and header helpers live in `mac.rs`; reading the
//! public and private keys of the asymmetric schemes (Ed25519, ECDSA P-256), `keys.rs`.
//! Named providers that are one of those schemes with fixed settings (`shopify`,
//! `slack`, `paddle`, `svix`, ...) are data, in `presets.rs`; the few schemes only
//! presets use have their own files (`twilio.rs`, `plivo.rs`, `mailgun.rs`, `adyen.rs`,
//! `token.rs`), and
//! provider challenges (Meta's `hub.challenge`, Twitter's CRC, ...) are in
//! `challenges.rs`.
//!
//! Rules every scheme follows: the signature is checked over the raw body bytes; all
//! secret comparisons are constant-time; several secrets may be active at once
//! (rotation); signed timestamps are checked against the request's receive time
//! (`received_at_ms`), never the wall clock, so tests control time through the request.

mod adyen;
mod asymmetric;
mod basic;
mod bearer;
mod certificate;
mod challenges;
mod config;
mod github;
mod hmac;
mod jwt;
mod keys;
mod mac;
mod mailgun;
mod plivo;
pub mod presets;
mod rejection;
pub mod sign_as;
mod standard_webhooks;
mod stripe;
#[cfg(test)]
mod test_support;
mod token;
mod twilio;

use std::fmt;

use http::{HeaderName, HeaderValue, Method, StatusCode};

pub use certificate::CertificateAlgorithm;
pub use config::{
    BuildError, FieldAt, HmacAlgorithm, OneOrMany, PresetConfig, PresetExtras, SignatureEncoding,
    TimestampFormat, VerifyConfig,
};
pub use hmac::TemplateError;
pub use jwt::{BodyHash, BodyHashAlgorithm, BodyHashEncoding, JwtAlgorithm};
pub use rejection::{Rejection, Skew};

use super::request::Unverified;

/// A request that a verifier has vouched for. Only [`Verifier::verify`] can make one,
/// so holding a `Verified` is proof that the source's check passed.
#[derive(Debug, Clone)]
pub struct Verified(Unverified);

impl Verified {
    /// Private on purpose: the type is the proof.
    fn new(request: Unverified) -> Self {
        Self(request)
    }

    pub fn into_inner(self) -> Unverified {
        self.0
    }

    pub fn request(&self) -> &Unverified {
        &self.0
    }
}

/// A request that failed verification, handed back with the reason so the caller can
/// store it as rejected (never delivered) and answer `401`.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub request: Unverified,
    pub reason: Rejection,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl std::error::Error for Rejected {}

/// What to answer a provider's handshake rather than an event (Slack's
/// `url_verification`, Meta's `hub.challenge`, Twitter's CRC, ...): nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    /// `None`: no body and no `Content-Type` (Xero wants an empty `200`).
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    /// More response headers (Dropbox's `X-Content-Type-Options`, Asana's
    /// `X-Hook-Secret`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Set when the operator has to act (an Asana handshake while no `secret` is
    /// configured): logged as a warning and kept with the rejected requests under this
    /// reason, so the request can be read back from the admin API.
    pub notice: Option<&'static str>,
}

impl Answer {
    /// `200` with `text` as `text/plain`.
    pub(crate) fn text(text: impl Into<Vec<u8>>) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: Some("text/plain; charset=utf-8"),
            body: text.into(),
            headers: Vec::new(),
            notice: None,
        }
    }

    /// `200` with `value` as JSON.
    pub(crate) fn json(value: &serde_json::Value) -> Self {
        Self {
            content_type: Some("application/json"),
            ..Self::text(value.to_string())
        }
    }

    /// `200` with no body at all.
    pub(crate) fn empty() -> Self {
        Self {
            content_type: None,
            ..Self::text(Vec::new())
        }
    }
}

/// A source's verifier, built from [`VerifyConfig`] with its secrets resolved.
#[derive(Debug, Clone, Default)]
pub enum Verifier {
    /// Accepts everything (for trusted networks and tests).
    #[default]
    None,
    Stripe(stripe::Stripe),
    Github(github::Github),
    StandardWebhooks(standard_webhooks::StandardWebhooks),
    Hmac(hmac::GenericHmac),
    Basic(basic::Basic),
    Bearer(bearer::Bearer),
    Jwt(jwt::Jwt),
    Certificate(certificate::Certificate),
    /// A named provider from the preset table (`shopify`, `slack`, ...).
    Preset(presets::PresetVerifier),
}

impl Verifier {
    /// Checks `req` and either vouches for it or hands it back with the reason.
    #[allow(
        clippy::result_large_err,
        reason = "Ok and Err both carry the whole request; boxing the error would not shrink the Result"
    )]
    pub fn verify(&self, req: Unverified) -> Result<Verified, Rejected> {
        let outcome = match self {
            Verifier::None => Ok(()),
            Verifier::Stripe(v) => v.check(&req),
            Verifier::Github(v) => v.check(&req),
            Verifier::StandardWebhooks(v) => v.check(&req),
            Verifier::Hmac(v) => v.check(&req),
            Verifier::Basic(v) => v.check(&req),
            Verifier::Bearer(v) => v.check(&req),
            Verifier::Jwt(v) => v.check(&req),
            Verifier::Certificate(v) => v.check(&req),
            Verifier::Preset(v) => v.check(&req),
        };
        match outcome {
            Ok(()) => Ok(Verified::new(req)),
            Err(reason) => Err(Rejected {
                request: req,
                reason,
            }),
        }
    }

    /// The provider's own event id, used as the dedup key when the source configures
    /// none (SPEC section 5). `None` when the scheme has no such id or it is absent.
    pub fn provider_dedup_key(&self, req: &Unverified) -> Option<String> {
        match self {
            Verifier::Stripe(_) => stripe::event_id(req),
            Verifier::Github(_) => github::delivery_id(req),
            Verifier::StandardWebhooks(_) => standard_webhooks::message_id(req),
            Verifier::Preset(v) => v.provider_id(req),
            // A token's `jti` is new on every retry, so it would defeat the body-hash
            // fallback rather than help it.
            Verifier::None
            | Verifier::Hmac(_)
            | Verifier::Basic(_)
            | Verifier::Bearer(_)
            | Verifier::Jwt(_)
            | Verifier::Certificate(_) => None,
        }
    }

    /// The `kind` this verifier was configured with, as written in the TOML.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Verifier::None => "none",
            Verifier::Stripe(_) => "stripe",
            Verifier::Github(_) => "github",
            Verifier::StandardWebhooks(_) => "standard-webhooks",
            Verifier::Hmac(_) => "hmac",
            Verifier::Basic(_) => "basic",
            Verifier::Bearer(_) => "bearer",
            Verifier::Jwt(_) => "jwt",
            Verifier::Certificate(_) => "certificate",
            Verifier::Preset(v) => v.name(),
        }
    }

    /// A provider's challenge that comes before any signed event: a GET (Meta's
    /// `hub.challenge`, Twitter's CRC, Dropbox, Okta), Trello's HEAD, Asana's handshake
    /// POST. `None`: not a challenge, verify the request as usual. `Some(Err)`: a
    /// challenge refused (answered `403`, kept as a rejected request).
    pub fn challenge(&self, req: &Unverified) -> Option<Result<Answer, Rejection>> {
        match self {
            Verifier::Preset(v) => v.challenge(req),
            _ => None,
        }
    }

    /// Whether [`Verifier::challenge`] may answer a request with this method even
    /// though the source does not accept it for events (GET and HEAD).
    pub fn answers_challenges_on(&self, method: &Method) -> bool {
        match self {
            Verifier::Preset(v) => v.challenge_method() == Some(method),
            _ => false,
        }
    }

    /// The immediate answer to a verified provider handshake, which is then not stored
    /// as an event; `None` for an ordinary event.
    pub fn answer(&self, verified: &Verified) -> Option<Answer> {
        match self {
            Verifier::Preset(v) => v.answer(verified),
            _ => None,
        }
    }

    /// Whether the sender's docs ask for an empty answer to its events (Xero, Okta):
    /// then a source without a configured `response.body` answers with none.
    pub fn wants_empty_answer(&self) -> bool {
        match self {
            Verifier::Preset(v) => v.wants_empty_answer(),
            _ => false,
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Verifier::None)
    }
}
