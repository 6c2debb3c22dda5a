//! Redactions that waited for their deliveries (`when = "delivered"`), on the shared
//! store.

use deadpool_postgres::Client;

use crate::store::StoreError;
use crate::store::redaction::{self, DueRedaction, RedactionWrite};
use crate::store::seal::Sealer;

/// Up to `limit` due redactions, opened.
pub(super) async fn due(
    client: &Client,
    sealer: &Sealer,
    limit: usize,
) -> Result<Vec<DueRedaction>, StoreError> {
    let sql = redaction::DUE
        .replace("{pending}", "")
        .replace("{limit}", "$1");
    let stmt = client.prepare_cached(&sql).await?;
    let mut out = Vec::new();
    for r in client.query(&stmt, &[&(limit as i64)]).await? {
        out.extend(redaction::opened(
            sealer,
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
        ));
    }
    Ok(out)
}

/// Writes what the redactions came to in one transaction, each only if its event still
/// waits.
pub(super) async fn finish(
    client: &mut Client,
    writes: &[RedactionWrite],
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE events SET headers = coalesce($2, headers), body = coalesce($3, body),
                               redacted = $4, redaction_pending = false, redact_rule = NULL
             WHERE id = $1 AND {}",
            redaction::STILL_DUE.replace("{pending}", "")
        ))
        .await?;
    let payloads = tx
        .prepare_cached(
            "UPDATE deliveries SET payload = NULL WHERE event_id = $1 AND payload IS NOT NULL",
        )
        .await?;
    for w in writes {
        let (headers, body) = match &w.redacted {
            Some((h, b)) => (Some(h), Some(b)),
            None => (None, None),
        };
        let done = tx
            .execute(
                &stmt,
                &[
                    &w.event_id,
                    &headers,
                    &body,
                    &redaction::fields_column(&w.fields),
                ],
            )
            .await?;
        // What transforms made of the whole event goes too: every delivery has finished.
        if done > 0 && w.redacted.is_some() {
            tx.execute(&payloads, &[&w.event_id]).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
