//! The event filters shared by `events list`, `export` and `replay`: flags, time
//! arguments (`2h` means two hours ago), and their forms as query parameters and as the
//! JSON body of a replay.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::api::Query;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct EventFilter {
    /// Only events of this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Received at or after this time: RFC 3339 (`2026-11-29T18:00:00Z`), a date
    /// (`2026-11-29`, midnight UTC) or a span ago (`30m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<String>,
    /// Received before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<String>,
    /// Events with at least one delivery in this state (pending, in_flight, retrying,
    /// delivered, dead, filtered, discarded, superseded).
    #[arg(long, value_name = "STATE")]
    pub status: Option<String>,
    /// Events with exactly this dedup key.
    #[arg(long, value_name = "KEY")]
    pub dedup_key: Option<String>,
    /// A jq predicate over `{id, source, received_at, method, path, query, headers, body}`;
    /// events for which it yields true, e.g. `.body.type == "invoice.paid"`.
    #[arg(long = "where", value_name = "JQ")]
    pub query: Option<String>,
}

impl EventFilter {
    fn pairs(&self) -> [(&'static str, Option<&String>); 6] {
        [
            ("source", self.source.as_ref()),
            ("since", self.since.as_ref()),
            ("until", self.until.as_ref()),
            ("status", self.status.as_ref()),
            ("dedup_key", self.dedup_key.as_ref()),
            ("q", self.query.as_ref()),
        ]
    }

    /// True when any filter is set.
    pub fn is_set(&self) -> bool {
        self.pairs().iter().any(|(_, v)| v.is_some())
    }

    /// As query parameters (`--where` is `q`).
    pub fn query(&self) -> Query {
        self.pairs()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.clone())))
            .collect()
    }

    /// As the fields of a replay's JSON body.
    pub fn json(&self) -> Map<String, Value> {
        self.pairs()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), Value::String(v.clone()))))
            .collect()
    }

    /// For people: `source=stripe since=… where=…`.
    pub fn describe(&self) -> String {
        self.pairs()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{}={v}", if k == "q" { "where" } else { k })))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A time argument as RFC 3339 for the API: a span is that long before now; a date is
/// its midnight UTC; anything else with a `T` is passed on for the server to check.
pub fn parse_time(text: &str) -> Result<String, String> {
    parse_time_at(text, SystemTime::now())
}

fn parse_time_at(text: &str, now: SystemTime) -> Result<String, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a time: give RFC 3339 (2026-11-29T18:00:00Z), a date (2026-11-29) or a span ago (30m, 2h, 7d)"
        )
    };
    if text.starts_with(|c: char| c.is_ascii_digit())
        && text.ends_with(|c: char| c.is_ascii_alphabetic())
        && !text.contains(['-', ':'])
    {
        let span = humantime::parse_duration(text).map_err(|_| bad())?;
        let at = now.checked_sub(span).ok_or_else(bad)?;
        return Ok(humantime::format_rfc3339_millis(at).to_string());
    }
    let is_date = text.len() == 10
        && text.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if is_date {
        let midnight = format!("{text}T00:00:00Z");
        humantime::parse_rfc3339(&midnight).map_err(|_| bad())?;
        return Ok(midnight);
    }
    if text.contains('T') || text.contains('t') {
        // Offsets other than `Z` are the server's to read; only the shape is checked here.
        if text.len() >= 19 && text.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
            return Ok(text.to_owned());
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form() {
        let now = humantime::parse_rfc3339("2026-11-29T18:00:00Z").unwrap();
        assert_eq!(
            parse_time_at("2h", now).unwrap(),
            "2026-11-29T16:00:00.000Z"
        );
        assert_eq!(
            parse_time_at("7d", now).unwrap(),
            "2026-11-22T18:00:00.000Z"
        );
        assert_eq!(
            parse_time_at("1h30m", now).unwrap(),
            "2026-11-29T16:30:00.000Z"
        );
        assert_eq!(
            parse_time_at("2026-11-01", now).unwrap(),
            "2026-11-01T00:00:00Z"
        );
        assert_eq!(
            parse_time_at("2026-11-01T10:00:00+01:00", now).unwrap(),
            "2026-11-01T10:00:00+01:00"
        );
        for bad in ["yesterday", "2x", "2026-13-45", "", "12"] {
            let e = parse_time_at(bad, now).unwrap_err();
            assert!(e.contains("span ago"), "{bad}: {e}");
        }
    }

    #[test]
    fn filter_maps_where_to_q() {
        let f = EventFilter {
            source: Some("stripe".into()),
            query: Some(".body.x == 1".into()),
            ..EventFilter::default()
        };
        assert!(f.is_set());
        assert_eq!(
            f.query(),
            vec![
                ("source", "stripe".to_owned()),
                ("q", ".body.x == 1".to_owned())
            ]
        );
        assert_eq!(f.describe(), "source=stripe where=.body.x == 1");
        assert!(!EventFilter::default().is_set());
    }
}
