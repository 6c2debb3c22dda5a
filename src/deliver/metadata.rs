//! What every outgoing message says about itself, whatever carries it (HTTP headers,
//! NATS headers, AMQP properties, Redis stream fields): forebay's own metadata, and
//! which of the sender's headers go along.

use super::sign::Signer;
use crate::store::ClaimedDelivery;

/// forebay's own metadata for one attempt of `d`, stamped `now_secs`: `webhook-id` (the
/// event id, with `.n` for a split's parts: the same on every retry and replay, so it
/// is the idempotency key), `webhook-timestamp`, `idempotency-key`, `forebay-source`,
/// `forebay-attempt`, `forebay-replay` for a replay, and `webhook-signature` when the
/// destination signs.
pub fn ours(
    d: &ClaimedDelivery,
    now_secs: i64,
    signer: Option<&Signer>,
) -> Vec<(&'static str, String)> {
    let webhook_id = d.webhook_id();
    let mut ours = vec![
        ("webhook-timestamp", now_secs.to_string()),
        ("idempotency-key", webhook_id.clone()),
        ("forebay-source", d.source.clone()),
        ("forebay-attempt", d.attempt.to_string()),
    ];
    if let Some(replay) = &d.replay_id {
        ours.push(("forebay-replay", replay.clone()));
    }
    if let Some(signer) = signer {
        ours.push((
            "webhook-signature",
            signer.sign(&webhook_id, now_secs, d.outgoing_body()),
        ));
    }
    ours.insert(0, ("webhook-id", webhook_id));
    ours
}

/// Whether a header of the original request goes along: not the transport's (the
/// outgoing message has its own), not the sender's credentials for forebay, and not a
/// sender's own Standard Webhooks signature (it covers the sender's message id, not the
/// id sent here, so it could never verify).
pub fn forwardable(name: &str) -> bool {
    !matches!(
        name,
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "proxy-connection"
            | "webhook-signature"
    ) && !crate::ingest::request::is_credential(name)
}
