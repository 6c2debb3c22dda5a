//! Human-friendly values in configuration: durations (`"10s"`, `"7d"`), byte sizes
//! (`"1MiB"`) and rates (`"50/s"`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration written as text, e.g. `"500ms"`, `"30s"`, `"5m"`, `"7d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    /// The longest duration a setting may have.
    pub const MAX: Span = Span(Duration::from_secs(100 * 365 * 86_400));

    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let span = humantime::parse_duration(text.trim()).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write it like \"500ms\", \"30s\", \"5m\" or \"7d\""
            ))
        })?;
        // Timers add durations to the current instant; a century is longer than any
        // setting needs and far from overflowing.
        if span > Span::MAX.0 {
            return Err(de::Error::custom(format!(
                "duration {text:?} is longer than 100 years; give a realistic value"
            )));
        }
        Ok(Span(span))
    }
}

/// How long stored data is kept: a duration (`"30d"`), or `"forever"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    For(Span),
    Forever,
}

impl Keep {
    /// The receive time before which data is purged at `now_ms`; `None` keeps it all.
    pub fn cutoff_ms(self, now_ms: i64) -> Option<i64> {
        match self {
            Keep::For(span) => Some(now_ms.saturating_sub(span.as_millis_i64())),
            Keep::Forever => None,
        }
    }

    /// Whether data kept this long outlives `span`.
    pub fn outlasts(self, span: Span) -> bool {
        match self {
            Keep::For(kept) => kept >= span,
            Keep::Forever => true,
        }
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::For(span) => write!(f, "{}", humantime::format_duration(span.0)),
            Keep::Forever => f.write_str("forever"),
        }
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().eq_ignore_ascii_case("forever") {
            return Ok(Keep::Forever);
        }
        let span = Span::deserialize(de::value::StrDeserializer::<D::Error>::new(&text))
            .map_err(|e| de::Error::custom(format!("{e}, or \"forever\"")))?;
        if span.0.is_zero() {
            return Err(de::Error::custom(
                "\"0s\" would purge data as soon as it is stored; give a duration like \"30d\", or \"forever\"",
            ));
        }
        Ok(Keep::For(span))
    }
}

/// A size in bytes, written as text (`"512KiB"`, `"5MiB"`) or as a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, so that a wrong value is described
        // ("invalid size -1") instead of "did not match any variant".
        d.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

fn invalid_size<E: de::Error>(shown: impl fmt::Display) -> E {
    E::custom(format!(
        "invalid size {shown}; write it like \"512KiB\" or \"5MiB\""
    ))
}

impl<'de> de::Visitor<'de> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size like \"512KiB\" or \"5MiB\", or a number of bytes")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
        Ok(Size(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
        u64::try_from(n).map(Size).map_err(|_| invalid_size(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Size, E> {
        Err(invalid_size(n))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Size, E> {
        Err(invalid_size(b))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Size, E> {
        text.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|e| {
                E::custom(format!(
                    "invalid size {text:?} ({e}); write it like \"512KiB\" or \"5MiB\""
                ))
            })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Size, A::Error> {
        Err(invalid_size("(a list)"))
    }

    // TOML dates arrive here too, as a one-key map.
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Size, A::Error> {
        Err(invalid_size("(a table or date)"))
    }
}

/// A rate limit: `N/s`, `N/m` or `N/h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// governor's quota for it: one start per `per / count`, and `burst` at once after a
    /// quiet period. `None` for a count of 0, which validation refuses.
    pub fn quota(self, burst: std::num::NonZeroU32) -> Option<governor::Quota> {
        let period = self.per.checked_div(self.count)?;
        governor::Quota::with_period(period.max(Duration::from_nanos(1)))
            .map(|q| q.allow_burst(burst))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("invalid rate {text:?}; write it like \"50/s\", \"600/m\" or \"1000/h\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "rate {text:?} allows nothing; use a count of at least 1"
            ));
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder<T> {
        v: T,
    }

    fn parse<T: for<'de> Deserialize<'de>>(v: &str) -> Result<T, String> {
        toml::from_str::<Holder<T>>(&format!("v = {v}"))
            .map(|h| h.v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(parse::<Span>("\"30s\"").unwrap(), Span::secs(30));
        assert_eq!(parse::<Span>("\"7d\"").unwrap(), Span::secs(7 * 86400));
        let err = parse::<Span>("\"soon\"").unwrap_err();
        assert!(err.contains("write it like"), "{err}");
        let err = parse::<Span>("\"9300000000000000000s\"").unwrap_err();
        assert!(err.contains("longer than 100 years"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse::<Size>("\"5MiB\"").unwrap(), Size::mib(5));
        assert_eq!(parse::<Size>("1024").unwrap(), Size(1024));
        assert!(
            parse::<Size>("\"lots\"")
                .unwrap_err()
                .contains("invalid size")
        );
    }

    #[test]
    fn wrong_sizes_say_how_to_write_one() {
        for (input, shown) in [
            ("-1", "-1"),
            ("1.5", "1.5"),
            ("true", "true"),
            ("[1]", "(a list)"),
            ("{ a = 1 }", "(a table or date)"),
            ("1979-05-27", "(a table or date)"),
        ] {
            let err = parse::<Size>(input).unwrap_err();
            assert!(
                err.contains(&format!(
                    "invalid size {shown}; write it like \"512KiB\" or \"5MiB\""
                )),
                "{input}: {err}"
            );
        }
        assert_eq!(parse::<Size>("0").unwrap(), Size(0));
    }

    #[test]
    fn retention_periods() {
        assert_eq!(
            parse::<Keep>("\"30d\""),
            Ok(Keep::For(Span::secs(30 * 86_400)))
        );
        assert_eq!(parse::<Keep>("\"forever\""), Ok(Keep::Forever));
        let zero = parse::<Keep>("\"0s\"").unwrap_err();
        assert!(zero.contains("as soon as it is stored"), "{zero}");
        let bad = parse::<Keep>("\"a while\"").unwrap_err();
        assert!(bad.contains("or \"forever\""), "{bad}");
        assert_eq!(Keep::For(Span::secs(1)).cutoff_ms(5_000), Some(4_000));
        assert_eq!(Keep::Forever.cutoff_ms(5_000), None);
        assert!(Keep::Forever.outlasts(Span::MAX));
        assert!(!Keep::For(Span::secs(1)).outlasts(Span::secs(2)));
    }

    #[test]
    fn rates() {
        let r = parse::<Rate>("\"50/s\"").unwrap();
        assert_eq!((r.count, r.per), (50, Duration::from_secs(1)));
        assert_eq!(parse::<Rate>("\"10/h\"").unwrap().to_string(), "10/h");
        assert!(parse::<Rate>("\"0/s\"").unwrap_err().contains("at least 1"));
        assert!(
            parse::<Rate>("\"5/d\"")
                .unwrap_err()
                .contains("write it like")
        );
    }
}
