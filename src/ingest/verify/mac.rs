//! Helpers shared by the schemes: HMAC over several byte slices, constant-time
//! comparison, reading headers without panicking, and the timestamp tolerance check.

use std::time::Duration;

use ::hmac::{Hmac, KeyInit, Mac};
use base64::engine::general_purpose::{self, GeneralPurpose};
use subtle::ConstantTimeEq;

use super::config::HmacAlgorithm;
use super::rejection::{Rejection, Skew};
use crate::config::secret::Secret;
use crate::ingest::request::Unverified;

/// Standard-alphabet base64 that accepts input with or without `=` padding: senders
/// differ, and padding carries no information.
pub(super) const BASE64_LENIENT: GeneralPurpose = general_purpose::STANDARD_PAD_INDIFFERENT;

/// HMAC of the concatenation of `parts` under `key`. Feeding the parts one by one
/// avoids copying the body into a `{timestamp}.{body}` buffer.
pub(super) fn hmac(algorithm: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    match algorithm {
        HmacAlgorithm::Sha1 => mac_with::<Hmac<sha1::Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => mac_with::<Hmac<sha2::Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => mac_with::<Hmac<sha2::Sha512>>(key, parts),
    }
}

pub(super) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    hmac(HmacAlgorithm::Sha256, key, parts)
}

/// The HMAC of `parts` under each of `secrets` (several while a sender rotates), to
/// compare a received signature against with [`matches_any`].
pub(super) fn expected_macs(
    algorithm: HmacAlgorithm,
    secrets: &[Secret],
    parts: &[&[u8]],
) -> Vec<Vec<u8>> {
    secrets
        .iter()
        .filter_map(|s| hmac(algorithm, s.expose(), parts))
        .collect()
}

fn mac_with<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    // HMAC takes keys of any length, so this never fails; a `None` is treated by the
    // callers as "no match" rather than unwrapped.
    let mut mac = <M as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().to_vec())
}

/// Constant-time equality. Lengths are compared first (a digest's length is public).
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `candidate` equals any of `expected`, in constant time per comparison.
pub(super) fn matches_any(expected: &[Vec<u8>], candidate: &[u8]) -> bool {
    // No early exit: which secret matched is not revealed through timing.
    expected
        .iter()
        .fold(false, |found, e| ct_eq(e, candidate) | found)
}

/// The first value of header `name`, as text. Absent gives `MissingHeader`; present but
/// not visible ASCII (which no scheme here produces) gives `MalformedHeader`.
pub(super) fn required_header<'r>(req: &'r Unverified, name: &str) -> Result<&'r str, Rejection> {
    let value = req
        .headers
        .get(name)
        .ok_or_else(|| Rejection::missing(name))?;
    value
        .to_str()
        .map_err(|_| Rejection::malformed(name, "contains bytes that are not visible ASCII"))
}

/// A Unix timestamp in whole seconds: ASCII digits only (no sign, no fraction, no
/// spaces), so the text that was signed is exactly the number that is checked.
pub(super) fn parse_unix_secs(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Rejects a signed timestamp further than `tolerance` from the receive time.
pub(super) fn check_tolerance(
    received_at_secs: i64,
    signed_at_secs: i64,
    tolerance: Duration,
) -> Result<(), Rejection> {
    let off_by_secs = received_at_secs.abs_diff(signed_at_secs);
    let tolerance_secs = tolerance.as_secs();
    if off_by_secs <= tolerance_secs {
        return Ok(());
    }
    let skew = if signed_at_secs < received_at_secs {
        Skew::Past
    } else {
        Skew::Future
    };
    Err(Rejection::TimestampOutsideTolerance {
        skew,
        off_by_secs,
        tolerance_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stripe-node SDK's crypto-provider conformance vectors
    /// (`stripe/stripe-node`, `test/crypto/helpers.ts`): HMAC-SHA256 hex with the
    /// secret `test_secret`. They pin our HMAC helper to an implementation Stripe tests.
    #[test]
    fn hmac_sha256_matches_stripe_node_crypto_vectors() {
        let cases: [(&str, &str); 3] = [
            (
                "",
                "f7f9bd47fb987337b5796fdc1fdb9ba221d0d5396814bfcaf9521f43fd8927fd",
            ),
            (
                r#"{"obj1":"hello","obj2":"world"}"#,
                "bebb1a643997f419b315ddba19e6f5411e1ce7f810ba6d3617ce72823092f363",
            ),
            (
                "\u{1F600}",
                "837da296d05c4fe31f61d5d7ead035099d9585a5bcde87de952012a78f0b0c43",
            ),
        ];
        for (payload, expected) in cases {
            let mac = hmac_sha256(b"test_secret", &[payload.as_bytes()]).unwrap();
            assert_eq!(hex::encode(mac), expected, "payload {payload:?}");
        }
    }

    #[test]
    fn parts_are_concatenated() {
        let whole = hmac_sha256(b"k", &[b"123.body"]).unwrap();
        let split = hmac_sha256(b"k", &[b"123", b".", b"body"]).unwrap();
        assert_eq!(whole, split);
    }

    #[test]
    fn timestamps_are_digits_only() {
        assert_eq!(parse_unix_secs("1674087231"), Some(1_674_087_231));
        for bad in [
            "",
            "-5",
            "+5",
            " 5",
            "5 ",
            "1.5",
            "99999999999999999999",
            "abc",
        ] {
            assert_eq!(parse_unix_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tolerance_is_inclusive_and_reports_direction() {
        let five_min = Duration::from_secs(300);
        assert!(check_tolerance(1000, 700, five_min).is_ok());
        assert!(check_tolerance(1000, 1300, five_min).is_ok());
        assert_eq!(
            check_tolerance(1000, 699, five_min),
            Err(Rejection::TimestampOutsideTolerance {
                skew: Skew::Past,
                off_by_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check_tolerance(1000, 1301, five_min).map_err(|r| r.to_string()),
            Err("timestamp is 301s in the future, outside the 300s tolerance".to_owned())
        );
        // Extreme values must not overflow.
        assert!(check_tolerance(i64::MAX, 0, five_min).is_err());
        assert!(check_tolerance(i64::MIN, i64::MAX, five_min).is_err());
    }

    #[test]
    fn matches_any_needs_one_equal_entry() {
        let expected = vec![vec![1, 2, 3], vec![4, 5, 6]];
        assert!(matches_any(&expected, &[4, 5, 6]));
        assert!(!matches_any(&expected, &[4, 5]));
        assert!(!matches_any(&expected, &[]));
        assert!(!matches_any(&[], &[1, 2, 3]));
    }
}
