//! An event list's filters (`EventQuery`) as SQL, shared by both backends. Only the
//! filters given go into the statement: a planner that cannot see the values (SQLite
//! plans before binding; PostgreSQL may reuse a generic plan) cannot seek with
//! `(? IS NULL OR id < ?)`, so a page far back in time, or of one source, would read
//! every newer row to get there.

use super::EventQuery;
use crate::id;

/// Ids start with their creation time (UUIDv7), so a time range also bounds the ids:
/// that lets the primary key do the work. Ingest stamps `received_at` with its id's own
/// time, so the bound is exact; a second of slack covers events stored before it did
/// (stamped a moment before their id was made), and `received_at` itself decides. The
/// slack is what a page at a moment reads past it: a second of traffic, not a minute.
const SLACK_MS: i64 = 1_000;

/// A value the statement binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// `SELECT … FROM events {clause} ORDER BY id {order} LIMIT {limit}`, with `params`
/// bound in order.
#[derive(Debug, PartialEq, Eq)]
pub struct EventList {
    pub clause: String,
    pub order: &'static str,
    pub limit: String,
    pub params: Vec<Param>,
}

/// The statement's parts for `q`; `placeholder(n)` writes the n-th parameter (`?n`,
/// `$n`).
pub fn event_list(q: &EventQuery, placeholder: fn(usize) -> String) -> EventList {
    let (order, past) = if q.oldest_first {
        ("ASC", ">")
    } else {
        ("DESC", "<")
    };
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let mut add = |condition: String, value: Param| {
        params.push(value);
        conditions.push(condition.replacen('?', &placeholder(params.len()), 1));
    };
    if let Some(source) = &q.source {
        add("source = ?".into(), Param::Text(source.clone()));
    }
    if let Some(ms) = q.since_ms {
        add("received_at >= ?".into(), Param::Int(ms));
        add(
            "id >= ?".into(),
            Param::Text(id::at_time(id::EVENT, ms - SLACK_MS)),
        );
    }
    if let Some(ms) = q.until_ms {
        add("received_at < ?".into(), Param::Int(ms));
        add(
            "id < ?".into(),
            Param::Text(id::at_time(id::EVENT, ms + SLACK_MS)),
        );
    }
    if let Some(key) = &q.dedup_key {
        add("dedup_key = ?".into(), Param::Text(key.clone()));
    }
    if let Some(state) = &q.status {
        add(
            "EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = events.id AND d.state = ?)"
                .into(),
            Param::Text(state.clone()),
        );
    }
    if let Some(cursor) = &q.cursor {
        add(format!("id {past} ?"), Param::Text(cursor.clone()));
    }
    params.push(Param::Int(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    EventList {
        clause: if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        },
        order,
        limit: placeholder(params.len()),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_filters_given_are_in_the_statement() {
        let dollar = |n: usize| format!("${n}");
        let q = EventQuery {
            limit: 50,
            ..EventQuery::default()
        };
        let all = event_list(&q, dollar);
        assert_eq!(
            (all.clause.as_str(), all.order, all.limit.as_str()),
            ("", "DESC", "$1")
        );
        assert_eq!(all.params, [Param::Int(50)]);

        let q = EventQuery {
            source: Some("shop".into()),
            until_ms: Some(1_000_000),
            cursor: Some("evt_c".into()),
            oldest_first: true,
            limit: 10,
            ..EventQuery::default()
        };
        let some = event_list(&q, |n| format!("?{n}"));
        assert_eq!(
            some.clause,
            "WHERE source = ?1 AND received_at < ?2 AND id < ?3 AND id > ?4"
        );
        assert_eq!((some.order, some.limit.as_str()), ("ASC", "?5"));
        assert_eq!(
            some.params,
            [
                Param::Text("shop".into()),
                Param::Int(1_000_000),
                Param::Text(id::at_time(id::EVENT, 1_000_000 + SLACK_MS)),
                Param::Text("evt_c".into()),
                Param::Int(10),
            ]
        );
    }
}
