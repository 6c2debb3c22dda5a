//! Redactions that waited for their deliveries (`when = "delivered"`), on the embedded
//! store: found on a read connection, written in the writer's group transaction.

use rusqlite::{Connection, params};

use crate::store::StoreError;
use crate::store::redaction::{self, DueRedaction, RedactionWrite};
use crate::store::seal::Sealer;

/// Up to `limit` due redactions, opened.
pub(super) fn due(
    conn: &Connection,
    sealer: &Sealer,
    limit: usize,
) -> Result<Vec<DueRedaction>, StoreError> {
    let sql = redaction::DUE
        .replace("{pending}", "= 1")
        .replace("{limit}", "?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (event_id, rule, headers, body) = row?;
        out.extend(redaction::opened(sealer, event_id, rule, headers, body));
    }
    Ok(out)
}

/// Writes what the redactions came to, each only if its event still waits.
pub(super) fn finish(conn: &Connection, writes: &[RedactionWrite]) -> rusqlite::Result<()> {
    let sql = format!(
        "UPDATE events SET headers = coalesce(?2, headers), body = coalesce(?3, body),
                           redacted = ?4, redaction_pending = 0, redact_rule = NULL
         WHERE id = ?1 AND {}",
        redaction::STILL_DUE.replace("{pending}", "= 1")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut payloads = conn.prepare_cached(
        "UPDATE deliveries SET payload = NULL WHERE event_id = ?1 AND payload IS NOT NULL",
    )?;
    for w in writes {
        let (headers, body) = match &w.redacted {
            Some((h, b)) => (Some(h), Some(b)),
            None => (None, None),
        };
        let done = stmt.execute(params![
            w.event_id,
            headers,
            body,
            redaction::fields_column(&w.fields)
        ])?;
        // What transforms made of the whole event goes too: every delivery has finished.
        if done > 0 && w.redacted.is_some() {
            payloads.execute(params![w.event_id])?;
        }
    }
    Ok(())
}
