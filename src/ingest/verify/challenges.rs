//! Provider challenges: requests that prove an endpoint is reachable and is really the
//! subscriber's, answered at once and never stored as events.
//!
//! Two kinds. Unsigned ones come before any secret is in use and are answered from the
//! request alone or a configured token: Meta's subscription GET, X/Twitter's CRC GET,
//! Dropbox's and Okta's GETs, Asana's handshake POST (Trello's HEAD needs no code).
//! Signed ones are ordinary deliveries that pass verification first and are then
//! answered instead of stored: Zoom's `endpoint.url_validation`, Twitch's
//! `webhook_callback_verification`, Xero's "intent to receive" (and Slack's
//! `url_verification`, in `presets.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::Answer;
use super::mac::{hmac_sha256, matches_any};
use super::rejection::Rejection;
use crate::config::secret::Secret;
use crate::ingest::request::Unverified;

/// What a preset's challenge needs of its configuration, resolved at build time.
#[derive(Debug, Clone, Default)]
pub(super) struct ChallengeKeys {
    /// The secret a challenge answer is computed with (Twitter, Zoom).
    pub key: Option<Secret>,
    /// SHA-256 digests of the tokens a challenge must carry (Meta's `verify_token`,
    /// Asana's configured secrets), compared in constant time.
    pub tokens: Vec<Vec<u8>>,
    /// Digests of the `verify_token` an Asana handshake's URL must carry while no
    /// `secret` is configured, so that only the operator's own webhook is answered.
    pub url_tokens: Vec<Vec<u8>>,
}

/// The digest a token is kept and compared as (see `basic.rs` for why).
pub(super) fn digest(token: &[u8]) -> Vec<u8> {
    Sha256::digest(token).to_vec()
}

/// The first value of a query parameter, decoded.
fn query_param(req: &Unverified, name: &str) -> Option<String> {
    let query = req.query.as_deref()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn refused(problem: &'static str) -> Option<Result<Answer, Rejection>> {
    Some(Err(Rejection::ChallengeRefused { problem }))
}

/// Meta (Graph API webhooks, "Getting started"): `GET ?hub.mode=subscribe&
/// hub.verify_token=…&hub.challenge=…`, answered with the challenge when the token is
/// the configured `verify_token`. Without `hub.mode` it is not a challenge at all.
pub(super) fn meta_subscribe(
    req: &Unverified,
    keys: &ChallengeKeys,
) -> Option<Result<Answer, Rejection>> {
    let mode = query_param(req, "hub.mode")?;
    if mode != "subscribe" {
        return refused("hub.mode is not `subscribe`");
    }
    let Some(token) = query_param(req, "hub.verify_token") else {
        return refused("hub.verify_token is missing");
    };
    if !matches_any(&keys.tokens, &digest(token.as_bytes())) {
        return refused(
            "hub.verify_token does not match the configured `verify_token`; enter the same value in Meta's webhook settings",
        );
    }
    match query_param(req, "hub.challenge") {
        Some(challenge) => Some(Ok(Answer::text(challenge))),
        None => refused("hub.challenge is missing"),
    }
}

/// X/Twitter (Account Activity API, "Securing webhooks"): `GET ?crc_token=…`, answered
/// `{"response_token": "sha256=<base64 HMAC-SHA256(consumer secret, crc_token)>"}`.
///
/// Anyone may ask, and X signs events with the same key over the body alone, so the
/// answer would sign any body an asker chose as its token. Two rules close that: a
/// token is answered only when it looks like one (at most [`CRC_TOKEN_MAX`] characters
/// of letters, digits and `-_=+/.:`), and an event's body must be a JSON object
/// ([`twitter_body_is_an_object`]), which no such token can be.
pub(super) fn twitter_crc(
    req: &Unverified,
    keys: &ChallengeKeys,
) -> Option<Result<Answer, Rejection>> {
    let token = query_param(req, "crc_token")?;
    if token.is_empty() {
        return refused("crc_token is empty");
    }
    let token_like = |c: char| c.is_ascii_alphanumeric() || "-_=+/.:".contains(c);
    if token.len() > CRC_TOKEN_MAX || !token.chars().all(token_like) {
        return refused(
            "crc_token does not look like one X sends (letters, digits and -_=+/.:, at most 256)",
        );
    }
    let key = keys.key.as_ref()?;
    let mac = hmac_sha256(key.expose(), &[token.as_bytes()])?;
    let response = format!("sha256={}", STANDARD.encode(mac));
    Some(Ok(Answer::json(
        &serde_json::json!({ "response_token": response }),
    )))
}

/// The longest `crc_token` answered.
const CRC_TOKEN_MAX: usize = 256;

/// X's events are JSON objects; any other body is refused, so no answer to a CRC can
/// ever sign an event (see [`twitter_crc`]).
pub(super) fn twitter_body_is_an_object(req: &Unverified) -> Result<(), Rejection> {
    match req.body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(Rejection::BodyField {
            field: "(body)".to_owned(),
            problem: "X sends events as JSON objects; this body is not one",
        }),
    }
}

/// Dropbox (webhooks reference): `GET ?challenge=…`, echoed as plain text with
/// `X-Content-Type-Options: nosniff`, so a browser never runs it.
pub(super) fn dropbox_echo(req: &Unverified) -> Option<Result<Answer, Rejection>> {
    let challenge = query_param(req, "challenge")?;
    let mut answer = Answer::text(challenge);
    answer.headers.push((
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ));
    Some(Ok(answer))
}

/// Okta (event hooks, one-time verification): a GET with
/// `X-Okta-Verification-Challenge`, answered `{"verification": "<value>"}`.
pub(super) fn okta_verification(req: &Unverified) -> Option<Result<Answer, Rejection>> {
    let value = req.header("X-Okta-Verification-Challenge")?;
    Some(Ok(Answer::json(
        &serde_json::json!({ "verification": value }),
    )))
}

const ASANA_SECRET: HeaderName = HeaderName::from_static("x-hook-secret");

/// Asana ("Establish a webhook"): the POST that creates a webhook carries
/// `X-Hook-Secret`, which must come back in the same response header; the secret then
/// signs every event. forebay takes the handshake while no `secret` is configured
/// (answering it, and keeping the request where the operator can read the value) or
/// when it is one of the configured secrets; otherwise it is refused. While no secret
/// is configured, the handshake's URL must carry the source's `verify_token`
/// (`?verify_token=…` in the webhook's target): otherwise anyone could post a
/// handshake with a secret of their own choosing for the operator to copy.
pub(super) fn asana_handshake(
    req: &Unverified,
    keys: &ChallengeKeys,
) -> Option<Result<Answer, Rejection>> {
    let secret = req.headers.get(&ASANA_SECRET)?;
    if secret.is_empty() {
        return refused("X-Hook-Secret is empty");
    }
    let mut answer = Answer::empty();
    answer.headers.push((ASANA_SECRET, secret.clone()));
    if keys.tokens.is_empty() {
        let given = query_param(req, "verify_token").unwrap_or_default();
        if !matches_any(&keys.url_tokens, &digest(given.as_bytes())) {
            return refused(
                "the handshake's URL does not carry the source's verify_token; create the Asana webhook with target …/in/SOURCE?verify_token=VALUE",
            );
        }
        answer.notice = Some(
            "answered Asana's webhook handshake while no `secret` is configured: copy this request's X-Hook-Secret header (GET /api/v1/rejected on the admin listener) into the source's verify `secret` and reload; until then its events are rejected",
        );
    } else if !matches_any(&keys.tokens, &digest(secret.as_bytes())) {
        return refused(
            "X-Hook-Secret is not the configured `secret`; to register a new Asana webhook, remove `secret`, reload, create the webhook, then set `secret` to the new value",
        );
    }
    Some(Ok(answer))
}

/// Zoom ("Validate your webhook endpoint"): a signed `endpoint.url_validation` event is
/// answered `{"plainToken": …, "encryptedToken": <hex HMAC-SHA256(secret token,
/// plainToken)>}`.
pub(super) fn zoom_url_validation(req: &Unverified, keys: &ChallengeKeys) -> Option<Answer> {
    #[derive(serde::Deserialize)]
    struct Validation {
        event: String,
        payload: Payload,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        plain_token: String,
    }
    let validation: Validation = serde_json::from_slice(&req.body).ok()?;
    if validation.event != "endpoint.url_validation" {
        return None;
    }
    let plain = validation.payload.plain_token;
    let mac = hmac_sha256(keys.key.as_ref()?.expose(), &[plain.as_bytes()])?;
    Some(Answer::json(&serde_json::json!({
        "plainToken": plain,
        "encryptedToken": hex::encode(mac),
    })))
}

/// Twitch EventSub ("Handling webhook events"): a signed message of type
/// `webhook_callback_verification` is answered with its `challenge`, as plain text.
/// `revocation` messages are ordinary events.
pub(super) fn twitch_verification(req: &Unverified) -> Option<Answer> {
    #[derive(serde::Deserialize)]
    struct Verification {
        challenge: String,
    }
    if req.header("Twitch-Eventsub-Message-Type")? != "webhook_callback_verification" {
        return None;
    }
    let verification: Verification = serde_json::from_slice(&req.body).ok()?;
    Some(Answer::text(verification.challenge))
}

/// Xero ("Configuring your server", "Intent to receive"): correctly signed test
/// deliveries with no events are answered `200` with no body (Xero wants none) and not
/// stored; wrongly signed ones already got `401`.
pub(super) fn xero_intent_to_receive(req: &Unverified) -> Option<Answer> {
    #[derive(serde::Deserialize)]
    struct Delivery {
        events: Vec<serde::de::IgnoredAny>,
    }
    let delivery: Delivery = serde_json::from_slice(&req.body).ok()?;
    delivery.events.is_empty().then(Answer::empty)
}

#[cfg(test)]
mod tests;
