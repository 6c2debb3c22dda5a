//! Time as stored (milliseconds since the Unix epoch), and the [`Clock`] the delivery
//! engine reads it from.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Now, in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// An RFC 3339 time in `Z` or with an offset (`2026-12-07T16:00:00+01:00`), as
/// milliseconds since the Unix epoch; `None` when it is not one. humantime reads UTC
/// times only, so an offset is taken off and applied here.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (utc, offset_ms) = match text
        .len()
        .checked_sub(6)
        .and_then(|i| text.get(i..).map(|o| (i, o)))
    {
        // ASCII only: the slices below are then on character boundaries.
        Some((i, offset))
            if offset.is_ascii()
                && matches!(&offset[..1], "+" | "-")
                && offset.as_bytes()[3] == b':' =>
        {
            let two_digits = |pair: &str| {
                pair.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| pair.parse::<i64>().ok())
                    .flatten()
            };
            let (hours, minutes) = (two_digits(&offset[1..3])?, two_digits(&offset[4..6])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            (
                format!("{}Z", &text[..i]),
                sign * (hours * 60 + minutes) * 60_000,
            )
        }
        _ => (text.to_owned(), 0),
    };
    let time = humantime::parse_rfc3339_weak(&utc).ok()?;
    let ms = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(i64::try_from(ms).ok()? - offset_ms)
}

/// [`parse_rfc3339_ms`] for a signed timestamp, where the text checked must be exactly
/// the text signed: only `YYYY-MM-DDTHH:MM:SS`, an optional fraction, then `Z` or
/// `±HH:MM` (no spaces, no lower case, nothing after).
pub fn parse_rfc3339_strict_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let date_time = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_time {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &fraction[n..];
    }
    let zone = rest == b"Z"
        || (rest.len() == 6
            && matches!(rest[0], b'+' | b'-')
            && rest[1..3].iter().all(u8::is_ascii_digit)
            && rest[3] == b':'
            && rest[4..6].iter().all(u8::is_ascii_digit));
    if !zone {
        return None;
    }
    parse_rfc3339_ms(text)
}

/// The delivery engine's time: when a delivery is due, when an attempt started, how long
/// to wait for the next due retry. Production uses [`SystemClock`]; tests drive a
/// [`ManualClock`] to walk a two-day retry schedule in milliseconds.
pub trait Clock: Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolves once this clock reads `at_ms` or later. (An instant, not a duration: a
    /// duration would count from whenever the sleep starts, and the clock may have moved
    /// since the caller read it.)
    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let wait = u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that moves only when told to; sleepers wake when it passes their time.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: watch::Sender::new(start_ms),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.send_modify(|now| *now = now.saturating_add(by));
    }

    /// Moves the clock to `ms`, if that is later than now.
    pub fn advance_to(&self, ms: i64) {
        self.now.send_modify(|now| *now = (*now).max(ms));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nothing will move.
            let _ = now.wait_for(|now| *now >= at_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_ms;

    #[test]
    fn rfc3339_reads_utc_and_offsets() {
        let utc = parse_rfc3339_ms("2020-01-01T07:00:00Z");
        assert_eq!(utc, Some(1_577_862_000_000));
        assert_eq!(parse_rfc3339_ms("2020-01-01T00:00:00-07:00"), utc);
        assert_eq!(parse_rfc3339_ms("2020-01-01T08:30:00+01:30"), utc);
        assert_eq!(
            parse_rfc3339_ms("2020-01-01T07:00:00.250Z"),
            Some(1_577_862_000_250)
        );
        for bad in [
            "",
            "tomorrow",
            "2020-01-01T00:00:00+25:00",
            "2020-01-01T00:00:00-07:0x",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_signed_rfc3339_time_is_read_only_in_its_one_spelling() {
        use super::parse_rfc3339_strict_ms as strict;
        assert_eq!(strict("2020-01-01T00:00:00-07:00"), Some(1_577_862_000_000));
        assert_eq!(
            strict("2023-07-19T14:56:51.634234626Z"),
            parse_rfc3339_ms("2023-07-19T14:56:51.634234626Z")
        );
        for lenient in [
            "2020-01-01 07:00:00Z",
            "2020-01-01t07:00:00z",
            "2020-01-01T07:00:00",
            "2020-01-01T07:00:00Zabcde",
            "2020-01-01T07:00:00Z+01:00",
            "2020-01-01T07:00:00.Z",
            " 2020-01-01T07:00:00Z",
        ] {
            assert_eq!(strict(lenient), None, "{lenient}");
        }
    }

    proptest::proptest! {
        /// Whatever the text (a header, an expression's output), no panic: offsets are
        /// sliced only when they are ASCII.
        #[test]
        fn rfc3339_never_panics(text in proptest::prop_oneof![
            proptest::arbitrary::any::<String>(),
            "2020-01-01T00:00:00[+\\-é]{0,2}[0-9é:]{0,6}",
        ]) {
            let _ = parse_rfc3339_ms(&text);
            let _ = super::parse_rfc3339_strict_ms(&text);
        }
    }
}
