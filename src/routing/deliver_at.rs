//! What a route's `deliver_at` expression may give, and the instant it means: seconds
//! since the Unix epoch (a number, fractions allowed), an RFC 3339 time (`Z` or an
//! offset such as `+02:00`), or `null` for no delay. An instant in the past is due at
//! once; one more than [`crate::config::MAX_DELAY`] ahead is refused, since it is far
//! likelier a mistake (milliseconds given for seconds) than a wish.

use serde_json::Value;

use crate::config::MAX_DELAY;

/// The due time `value` asks for, in ms since the epoch, checked against `now_ms`.
pub fn due_ms(value: Option<&Value>, now_ms: i64) -> Result<Option<i64>, String> {
    let at = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => {
            let secs = n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "{n} is not a time; give seconds since the Unix epoch or an RFC 3339 time"
                    )
                })?;
            (secs * 1000.0).round() as i64
        }
        Some(Value::String(text)) => rfc3339_ms(text)?,
        Some(other) => {
            return Err(format!(
                "gave {}, not a time; give seconds since the Unix epoch, an RFC 3339 time, or null for no delay",
                kind(other)
            ));
        }
    };
    let max_ms = i64::try_from(MAX_DELAY.as_millis()).unwrap_or(i64::MAX);
    if at > now_ms.saturating_add(max_ms) {
        let hint = if matches!(value, Some(Value::Number(_))) {
            " (milliseconds where seconds are wanted?)"
        } else {
            ""
        };
        return Err(format!(
            "{} is more than 365 days ahead{hint}; a delivery may be delayed by at most 365 days",
            crate::clock::rfc3339(at.min(253_402_300_799_000))
        ));
    }
    Ok(Some(at))
}

/// An RFC 3339 time in ms since the epoch.
fn rfc3339_ms(text: &str) -> Result<i64, String> {
    crate::clock::parse_rfc3339_ms(text).ok_or_else(|| {
        format!(
            "{text:?} is not an RFC 3339 time; write it like \"2026-12-07T15:00:00Z\" or \"2026-12-07T16:00:00+01:00\""
        )
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        Value::Null => "null",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    #[test]
    fn numbers_are_seconds_and_strings_rfc3339_with_any_offset() {
        assert_eq!(due_ms(None, NOW), Ok(None));
        assert_eq!(due_ms(Some(&json!(null)), NOW), Ok(None));
        assert_eq!(
            due_ms(Some(&json!(1_780_000_030)), NOW),
            Ok(Some(NOW + 30_000))
        );
        assert_eq!(
            due_ms(Some(&json!(1_780_000_000.25)), NOW),
            Ok(Some(NOW + 250))
        );
        let utc = due_ms(Some(&json!("2026-05-28T20:26:40Z")), NOW);
        assert_eq!(utc, Ok(Some(NOW)));
        assert_eq!(
            due_ms(Some(&json!("2026-05-28T22:26:40.500+02:00")), NOW),
            Ok(Some(NOW + 500))
        );
        assert_eq!(
            due_ms(Some(&json!("2026-05-28T15:26:40-05:00")), NOW),
            Ok(Some(NOW))
        );
        // The past is due at once: the caller need not care.
        assert_eq!(due_ms(Some(&json!(0)), NOW), Ok(Some(0)));
    }

    #[test]
    fn what_is_not_a_time_or_too_far_ahead_is_refused_with_the_fix() {
        let err = |v: Value| due_ms(Some(&v), NOW).unwrap_err();
        assert!(err(json!(true)).contains("gave a boolean, not a time"));
        assert!(err(json!("tomorrow")).contains("is not an RFC 3339 time"));
        assert!(err(json!("2026-05-28T20:26:40+25:00")).contains("is not an RFC 3339 time"));
        assert!(err(json!(-5)).contains("is not a time"));
        let ms = err(json!(NOW));
        assert!(ms.contains("more than 365 days ahead"), "{ms}");
        assert!(
            ms.contains("milliseconds where seconds are wanted?"),
            "{ms}"
        );
        assert!(err(json!("2100-01-01T00:00:00Z")).contains("more than 365 days ahead"));
    }
}
