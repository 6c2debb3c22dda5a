//! Redaction in the store, for both backends: how the `redacted` column holds what a
//! source's `redact` rule took out, and the events that wait for their deliveries to
//! succeed before it does (`when = "delivered"`).

/// Events whose redaction waits and whose deliveries have all finished: none is pending,
/// in flight, retrying or dead (a dead one may still be retried with the whole event).
pub const DUE: &str = "SELECT e.id, e.redact_rule, e.headers, e.body FROM events AS e
     WHERE e.redaction_pending {pending} AND NOT EXISTS (
         SELECT 1 FROM deliveries AS d
         WHERE d.event_id = e.id AND d.state IN ('pending', 'in_flight', 'retrying', 'dead'))
     ORDER BY e.id LIMIT {limit}";

/// The condition a redaction is written under: the event still waits, and no delivery
/// has been queued since (a replay, say), which would be sent the redacted event.
pub const STILL_DUE: &str = "redaction_pending {pending} AND NOT EXISTS (
         SELECT 1 FROM deliveries AS d
         WHERE d.event_id = events.id AND d.state IN ('pending', 'in_flight', 'retrying', 'dead'))";

/// An event whose redaction is due, opened.
#[derive(Debug, Clone)]
pub struct DueRedaction {
    pub event_id: String,
    /// The rule the event came in under, as JSON (`Redaction::to_stored`).
    pub rule: Option<String>,
    /// Headers in wire form.
    pub headers: Vec<u8>,
    pub body: Vec<u8>,
}

/// What a due redaction came to.
#[derive(Debug, Clone)]
pub struct RedactionWrite {
    pub event_id: String,
    /// The redacted headers and body; `None` when the rule matched nothing: the event
    /// stays as it is, and waits no longer.
    pub redacted: Option<(Vec<u8>, Vec<u8>)>,
    pub fields: Vec<String>,
}

/// A due row, opened; `None` (logged) when its blobs do not open here, so one such row
/// does not hold up the others (another process, with the key, redacts it).
pub(crate) fn opened(
    sealer: &super::seal::Sealer,
    event_id: String,
    rule: Option<String>,
    headers: Vec<u8>,
    body: Vec<u8>,
) -> Option<DueRedaction> {
    match sealer.open_request(&event_id, headers, Some(body)) {
        Ok((headers, body)) => Some(DueRedaction {
            event_id,
            rule,
            headers,
            body: body.unwrap_or_default(),
        }),
        Err(e) => {
            crate::throttled!(warn, event = %event_id, error = %e, "cannot open an event to redact; it waits");
            None
        }
    }
}

/// The `redacted` column: a JSON array, or NULL for nothing.
pub fn fields_column(fields: &[String]) -> Option<String> {
    (!fields.is_empty()).then(|| serde_json::to_string(fields).unwrap_or_default())
}

/// The `redacted` column read back (a damaged value reads as nothing).
pub fn fields_from_column(column: Option<String>) -> Vec<String> {
    column
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_round_trips_and_nothing_is_null() {
        let fields = vec!["header:authorization".to_owned(), "/card".to_owned()];
        let column = fields_column(&fields);
        assert_eq!(
            column.as_deref(),
            Some(r#"["header:authorization","/card"]"#)
        );
        assert_eq!(fields_from_column(column), fields);
        assert_eq!(fields_column(&[]), None);
        assert!(fields_from_column(None).is_empty());
    }
}
