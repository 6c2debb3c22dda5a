//! Adyen's standard notifications: the signature travels in each notification item,
//! `notificationItems[].NotificationRequestItem.additionalData.hmacSignature`, the
//! base64 HMAC-SHA256 of eight of the item's fields joined with `:`:
//! `pspReference:originalReference:merchantAccountCode:merchantReference:amount.value:amount.currency:eventCode:success`
//! (an absent field is empty), keyed with the HMAC key from Adyen's Customer Area, given
//! in hex. Every item of a batch must carry a valid signature.
//!
//! Only those fields are signed, not the body: the rest of an item (`eventDate`,
//! `reason`, the other `additionalData`) is not covered, and nothing signed says when,
//! so a captured notification stays valid; deduplication on the body is what refuses
//! its replay.

#[cfg(test)]
mod tests;

use base64::Engine as _;
use serde_json::Value;

use super::config::{BuildError, HmacAlgorithm, OneOrMany, resolve_secrets};
use super::mac::{BASE64_LENIENT, expected_macs, hmac_sha256, matches_any};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

#[derive(Debug, Clone)]
pub struct Adyen {
    /// The hex-decoded HMAC keys.
    keys: Vec<Secret>,
}

/// The fields of an item that are signed, in order; `value` and `currency` are read
/// from `amount`.
const SIGNED_FIELDS: [&str; 8] = [
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
];

impl Adyen {
    pub(super) fn build(secret: &OneOrMany<SecretRef>) -> Result<Self, BuildError> {
        let keys = resolve_secrets("secret", secret)?
            .into_iter()
            .map(|(at, text)| {
                hex_key(&text).ok_or(BuildError::Key {
                    at,
                    expected: "the HMAC key as Adyen's Customer Area shows it (64 hex digits)",
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|_| Rejection::body_field("notificationItems", "the body is not JSON"))?;
        let items = items(&body).ok_or_else(|| {
            Rejection::body_field(
                "notificationItems",
                "is missing or empty: Adyen sends a list of NotificationRequestItem objects",
            )
        })?;
        for item in items {
            let item = item.get("NotificationRequestItem").ok_or_else(|| {
                Rejection::body_field(
                    "notificationItems",
                    "has an entry without NotificationRequestItem",
                )
            })?;
            let signature = item
                .pointer("/additionalData/hmacSignature")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Rejection::body_field(
                        "additionalData.hmacSignature",
                        "is missing: turn on HMAC signatures for the webhook in Adyen's Customer Area",
                    )
                })?;
            let signature = BASE64_LENIENT.decode(signature).map_err(|_| {
                Rejection::body_field("additionalData.hmacSignature", "is not base64")
            })?;
            let expected = expected_macs(
                HmacAlgorithm::Sha256,
                &self.keys,
                &[signed_text(item).as_bytes()],
            );
            if !matches_any(&expected, &signature) {
                return Err(Rejection::NoSignatureMatched);
            }
        }
        Ok(())
    }
}

/// The key an HMAC is made with: the configured hex, decoded.
pub(super) fn hex_key(text: &Secret) -> Option<Secret> {
    hex::decode(text.expose().trim_ascii())
        .ok()
        .filter(|key| !key.is_empty())
        .map(Secret::from_bytes)
}

fn items(body: &Value) -> Option<&Vec<Value>> {
    body.get("notificationItems")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
}

/// The eight fields of `item`, joined with `:` as Adyen signs them (no escaping).
pub(super) fn signed_text(item: &Value) -> String {
    let text = |value: Option<&Value>| match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    };
    SIGNED_FIELDS
        .iter()
        .map(|field| match *field {
            "value" | "currency" => text(item.get("amount").and_then(|a| a.get(field))),
            _ => text(item.get(field)),
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// `body` with every item's `additionalData.hmacSignature` set as Adyen would set it
/// under `key` (hex-decoded); `None` when it is not a notification body. For
/// `forebay send` and tests.
pub(super) fn sign_body(key: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let mut body: Value = serde_json::from_slice(body).ok()?;
    let items = body.get_mut("notificationItems")?.as_array_mut()?;
    if items.is_empty() {
        return None;
    }
    for item in items {
        let item = item.get_mut("NotificationRequestItem")?;
        let signature = hmac_sha256(key, &[signed_text(item).as_bytes()])?;
        let data = item
            .as_object_mut()?
            .entry("additionalData")
            .or_insert_with(|| Value::Object(Default::default()));
        data.as_object_mut()?.insert(
            "hmacSignature".into(),
            base64::engine::general_purpose::STANDARD
                .encode(signature)
                .into(),
        );
    }
    serde_json::to_vec(&body).ok()
}
