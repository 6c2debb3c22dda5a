//! Why a request failed verification.
//!
//! These messages are stored with the rejected request and shown in the dashboard and
//! API, so they name headers and amounts but never contain a secret, an expected
//! signature, or the (attacker-controlled) header value itself.

use std::fmt;

/// Which side of the receive time a signed timestamp fell on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skew {
    /// Older than the receive time: a late delivery or a replay.
    Past,
    /// Newer than the receive time: a sender (or receiver) clock running wrong.
    Future,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header the scheme needs is absent.
    #[error("missing header {name}")]
    MissingHeader { name: String },
    /// A header is present but cannot be read as the scheme defines it.
    #[error("malformed header {name}: {problem}")]
    MalformedHeader { name: String, problem: &'static str },
    /// A field of the (signed) body that the scheme needs is absent or unreadable.
    #[error("body field {field}: {problem}")]
    BodyField {
        field: String,
        problem: &'static str,
    },
    /// The signed timestamp is further from the receive time than the tolerance allows.
    #[error("timestamp is {off_by_secs}s in the {skew}, outside the {tolerance_secs}s tolerance")]
    TimestampOutsideTolerance {
        skew: Skew,
        off_by_secs: u64,
        tolerance_secs: u64,
    },
    /// A token's claim (`exp`, `iss`, a body hash, ...) refuses the request, though its
    /// signature matched. The problem names amounts, never the claim's value.
    #[error("token claim {claim}: {problem}")]
    Claim { claim: String, problem: String },
    /// Signatures were present and well formed, but none matched any configured secret.
    #[error("no signature matched any configured secret")]
    NoSignatureMatched,
    /// Basic or bearer credentials were present but are not among the configured ones.
    #[error("credentials do not match")]
    BadCredentials,
    /// A provider's challenge (Meta's verify token, Asana's handshake) was refused.
    #[error("challenge refused: {problem}")]
    ChallengeRefused { problem: &'static str },
    /// The source cannot verify anything yet (an Asana source before its handshake).
    #[error("not ready: {problem}")]
    NotConfigured { problem: &'static str },
}

impl Rejection {
    /// A stable short code for the reason, for storage, metrics and API filters.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::MissingHeader { .. } => "missing_header",
            Rejection::MalformedHeader { .. } => "malformed_header",
            Rejection::BodyField { .. } => "malformed_body",
            Rejection::TimestampOutsideTolerance { .. } => "timestamp_outside_tolerance",
            Rejection::Claim { .. } => "claim_refused",
            Rejection::NoSignatureMatched => "no_signature_matched",
            Rejection::BadCredentials => "bad_credentials",
            Rejection::ChallengeRefused { .. } => "challenge_refused",
            Rejection::NotConfigured { .. } => "not_configured",
        }
    }

    pub(super) fn missing(name: &str) -> Self {
        Rejection::MissingHeader {
            name: name.to_owned(),
        }
    }

    pub(super) fn body_field(field: &str, problem: &'static str) -> Self {
        Rejection::BodyField {
            field: field.to_owned(),
            problem,
        }
    }

    pub(super) fn malformed(name: &str, problem: &'static str) -> Self {
        Rejection::MalformedHeader {
            name: name.to_owned(),
            problem,
        }
    }
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skew::Past => "past",
            Skew::Future => "future",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            Rejection::missing("Stripe-Signature").to_string(),
            "missing header Stripe-Signature"
        );
        assert_eq!(
            Rejection::malformed("webhook-timestamp", "is not a whole number of seconds")
                .to_string(),
            "malformed header webhook-timestamp: is not a whole number of seconds"
        );
        let stale = Rejection::TimestampOutsideTolerance {
            skew: Skew::Past,
            off_by_secs: 412,
            tolerance_secs: 300,
        };
        assert_eq!(
            stale.to_string(),
            "timestamp is 412s in the past, outside the 300s tolerance"
        );
        assert_eq!(stale.kind(), "timestamp_outside_tolerance");
    }
}
