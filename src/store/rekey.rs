//! Resealing stored blobs with the active key (`forebay rekey`), for both backends:
//! which tables hold sealed blobs, and what one row becomes.
//!
//! A rekey walks each table in id order, a bounded batch per transaction, and rewrites
//! only the rows whose blobs are not as the active key would leave them (sealed with
//! another key, or plain when a key is active, or sealed when none is). Each row is
//! rewritten only if its blobs are still the ones read (compare and set), so a rekey
//! running beside ingest, delivery and retention never undoes their writes, and a crash
//! leaves every row either as it was or resealed, both of which open.

use super::seal::{Field, OpenError, Place, Sealer};

/// A table with sealed blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedTable {
    /// Events' headers and bodies.
    Events,
    /// Duplicates' headers.
    Duplicates,
    /// Rejected requests' headers and (cut) bodies.
    Rejected,
    /// Attempts' response headers and bodies.
    Attempts,
    /// Deliveries' transformed payloads.
    Payloads,
}

impl SealedTable {
    pub const ALL: [SealedTable; 5] = [
        SealedTable::Events,
        SealedTable::Duplicates,
        SealedTable::Rejected,
        SealedTable::Attempts,
        SealedTable::Payloads,
    ];

    /// The SQL table and its blob columns: the first decides whether the row is sealed
    /// (headers, or the payload), the second (a body) goes with it.
    pub fn columns(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self {
            SealedTable::Events => ("events", "headers", Some("body")),
            SealedTable::Duplicates => ("duplicates", "headers", None),
            SealedTable::Rejected => ("rejected", "headers", Some("body")),
            SealedTable::Attempts => ("attempts", "response_headers", Some("response_body")),
            SealedTable::Payloads => ("deliveries", "payload", None),
        }
    }

    /// `SELECT` of one batch after a cursor, in the backend's placeholders: `p(1)` the
    /// cursor, `p(2)` the most rows, `p(3)` the most bytes (the batch stops at the row
    /// that passes it, so a batch holds at least one row however large). Columns: id,
    /// the first blob, the second (or NULL), and for payloads the event id, route and
    /// part. `types` names the backend's blob, text and integer types, for NULLs the
    /// driver reads as typed.
    pub fn select_batch(self, p: fn(usize) -> String, types: [&str; 3]) -> String {
        let [blob, text, int] = types;
        let (table, first, second) = self.columns();
        let size = match second {
            Some(second) => format!("coalesce(length({first}), 0) + coalesce(length({second}), 0)"),
            None => format!("coalesce(length({first}), 0)"),
        };
        let second = second.map_or(format!("CAST(NULL AS {blob})"), |s| format!("t.{s}"));
        let (extra, only) = match self {
            SealedTable::Payloads => (
                format!("t.event_id, t.route, CAST(t.part AS {int})"),
                " AND payload IS NOT NULL",
            ),
            _ => (
                format!("CAST(NULL AS {text}), CAST(NULL AS {text}), CAST(NULL AS {int})"),
                "",
            ),
        };
        // The sizes come from the rows' headers (no blob is read to add them up); only
        // the rows within the budget are read whole.
        format!(
            "SELECT t.id, t.{first}, {second}, {extra}
             FROM {table} AS t
             JOIN (SELECT id, sum({size}) OVER (ORDER BY id) - {size} AS before
                   FROM {table} WHERE id > {}{only} ORDER BY id LIMIT {}) AS w
               ON w.id = t.id
             WHERE w.before < {}
             ORDER BY t.id",
            p(1),
            p(2),
            p(3)
        )
    }

    /// `UPDATE` of one row, if its blobs are still the ones read: `p(1)` the id, `p(2)`
    /// the first blob read, `p(3)` the new first blob, and for the tables with a second,
    /// `p(4)` the new second and `p(5)` the second read (a redaction may have changed a
    /// body and nothing else meanwhile).
    pub fn update_row(self, p: fn(usize) -> String) -> String {
        let (table, first, second) = self.columns();
        let (set_second, same_second) = second.map_or((String::new(), String::new()), |s| {
            (format!(", {s} = {}", p(4)), format!(" AND {s} = {}", p(5)))
        });
        format!(
            "UPDATE {table} SET {first} = {}{set_second} WHERE id = {} AND {first} = {}{same_second}",
            p(3),
            p(1),
            p(2)
        )
    }

    /// Whether any row's first blob is sealed with a key: `p(1)` the length of the
    /// sealed prefix naming it, `p(2)` that prefix ([`Sealer::prefix_of`]).
    pub fn names_key(self, p: fn(usize) -> String) -> String {
        let (table, first, _) = self.columns();
        format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE substr({first}, 1, {}) = {})",
            p(1),
            p(2)
        )
    }

    /// `SELECT count(*)` of the rows a pass looks at.
    pub fn count(self) -> String {
        let (table, ..) = self.columns();
        match self {
            SealedTable::Payloads => {
                format!("SELECT count(*) FROM {table} WHERE payload IS NOT NULL")
            }
            _ => format!("SELECT count(*) FROM {table}"),
        }
    }
}

/// Most rows one batch looks at.
pub const BATCH_ROWS: usize = 500;
/// Most blob bytes one batch reads (past the first row): large bodies make small batches,
/// so no batch holds much memory, or the writer, for long.
pub const BATCH_BYTES: i64 = 8 << 20;

/// One row's blobs as read.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub id: String,
    pub first: Vec<u8>,
    pub second: Option<Vec<u8>>,
    /// Payloads: the event, route and part the blob is bound to.
    pub event_id: Option<String>,
    pub route: Option<String>,
    pub part: Option<i64>,
}

/// A row to rewrite: its id, the blobs as read (the compare of compare and set), and
/// the new blobs.
#[derive(Debug, Clone)]
pub struct Resealed {
    pub id: String,
    pub read: Vec<u8>,
    pub read_second: Option<Vec<u8>>,
    pub first: Vec<u8>,
    pub second: Option<Vec<u8>>,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealStep {
    /// Rows looked at.
    pub scanned: usize,
    /// Rows rewritten.
    pub resealed: usize,
    /// Rows whose blobs do not open (left as they are), with the first reason.
    pub unreadable: usize,
    pub first_error: Option<String>,
    /// The last id looked at: the next batch starts after it; `None` when the batch was
    /// empty, so the table is done.
    pub last: Option<String>,
}

/// What retiring keys did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retired {
    /// No row is sealed with these any more.
    pub retired: Vec<String>,
    /// Rows are still sealed with these (not the active key): kept.
    pub still_used: Vec<String>,
}

/// What `row` of `table` becomes under the active key, or `None` when it already is.
pub fn reseal_row(
    sealer: &Sealer,
    table: SealedTable,
    row: &SealedRow,
) -> Result<Option<Resealed>, OpenError> {
    if sealer.is_current(Sealer::key_of(&row.first)) {
        return Ok(None);
    }
    let (first_field, second_field) = match table {
        SealedTable::Events | SealedTable::Duplicates | SealedTable::Rejected => {
            (Field::RequestHeaders, Field::RequestBody)
        }
        SealedTable::Attempts => (Field::ResponseHeaders, Field::ResponseBody),
        SealedTable::Payloads => (Field::Payload, Field::Payload),
    };
    let place = |field| match table {
        SealedTable::Payloads => Place::payload(
            row.event_id.as_deref().unwrap_or(""),
            row.route.as_deref().unwrap_or(""),
            row.part.unwrap_or(0),
        ),
        _ => Place::new(field, &row.id),
    };
    let sealed = Sealer::is_sealed(&row.first);
    let open = |field, blob: &[u8]| {
        if sealed {
            sealer.open(place(field), blob.to_vec())
        } else {
            Ok(blob.to_vec())
        }
    };
    let first = open(first_field, &row.first)?;
    let second = row
        .second
        .as_deref()
        .map(|b| open(second_field, b))
        .transpose()?;
    Ok(Some(Resealed {
        id: row.id.clone(),
        read: row.first.clone(),
        read_second: row.second.clone(),
        first: sealer.seal(place(first_field), &first),
        second: second.map(|b| sealer.seal(place(second_field), &b)),
    }))
}

/// Reseals a batch as read: the rows to rewrite, and the step's counts (but `resealed`,
/// which the write decides).
pub fn reseal_batch(
    sealer: &Sealer,
    table: SealedTable,
    rows: &[SealedRow],
) -> (Vec<Resealed>, ResealStep) {
    let mut step = ResealStep {
        scanned: rows.len(),
        last: rows.last().map(|r| r.id.clone()),
        ..ResealStep::default()
    };
    let mut out = Vec::new();
    for row in rows {
        match reseal_row(sealer, table, row) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => {
                step.unreadable += 1;
                step.first_error
                    .get_or_insert_with(|| format!("{} {}: {e}", table.columns().0, row.id));
            }
        }
    }
    (out, step)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::seal::{KeyBytes, Keys};

    fn sealer(active: Option<&str>) -> Sealer {
        Sealer::new(&Keys {
            keys: BTreeMap::from([
                ("k1".to_owned(), KeyBytes([1; 32])),
                ("k2".to_owned(), KeyBytes([2; 32])),
            ]),
            active: active.map(str::to_owned),
        })
    }

    const EVT: &str = "evt_0190a1b2c3d4e5f60718293a4b5c6d7e";

    #[test]
    fn a_row_moves_to_the_active_key_and_back_to_plain() {
        let k1 = sealer(Some("k1"));
        let row = SealedRow {
            id: EVT.into(),
            first: k1.seal(Place::new(Field::RequestHeaders, EVT), b"a: b\r\n"),
            second: Some(k1.seal(Place::new(Field::RequestBody, EVT), b"{}")),
            event_id: None,
            route: None,
            part: None,
        };
        assert!(
            reseal_row(&k1, SealedTable::Events, &row)
                .unwrap()
                .is_none()
        );
        let k2 = sealer(Some("k2"));
        let moved = reseal_row(&k2, SealedTable::Events, &row).unwrap().unwrap();
        assert_eq!(Sealer::key_of(&moved.first), Some("k2"));
        assert_eq!(moved.read, row.first);
        let (h, b) = k2
            .open_request(EVT, moved.first.clone(), moved.second.clone())
            .unwrap();
        assert_eq!((h, b), (b"a: b\r\n".to_vec(), Some(b"{}".to_vec())));
        let plain = sealer(None);
        let opened = reseal_row(&plain, SealedTable::Events, &row)
            .unwrap()
            .unwrap();
        assert_eq!(opened.first, b"a: b\r\n");
        assert_eq!(opened.second.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn payloads_keep_their_event_route_and_part() {
        let k1 = sealer(Some("k1"));
        let row = SealedRow {
            id: "dlv_0190a1b2c3d4e5f60718293a4b5c6d7e".into(),
            first: br#"{"x":1}"#.to_vec(),
            second: None,
            event_id: Some(EVT.into()),
            route: Some("r".into()),
            part: Some(2),
        };
        let sealed = reseal_row(&k1, SealedTable::Payloads, &row)
            .unwrap()
            .unwrap();
        let opened = k1
            .open_payload(EVT, "r", Some(2), Some(sealed.first))
            .unwrap()
            .unwrap();
        assert_eq!(opened, br#"{"x":1}"#);
    }

    #[test]
    fn a_batch_counts_what_does_not_open_and_says_where_to_go_on() {
        let k1 = sealer(Some("k1"));
        let damaged = SealedRow {
            id: EVT.into(),
            first: sealer(Some("k2")).seal(Place::new(Field::RequestHeaders, "evt_other"), b""),
            second: None,
            event_id: None,
            route: None,
            part: None,
        };
        let (rows, step) = reseal_batch(&k1, SealedTable::Duplicates, &[damaged]);
        assert!(rows.is_empty());
        assert_eq!((step.scanned, step.unreadable), (1, 1));
        assert_eq!(step.last.as_deref(), Some(EVT));
        assert!(step.first_error.unwrap().starts_with("duplicates evt_"));
        let (_, done) = reseal_batch(&k1, SealedTable::Duplicates, &[]);
        assert_eq!(done.last, None);
    }

    #[test]
    fn statements_name_each_tables_columns() {
        let p = |n: usize| format!("?{n}");
        assert_eq!(
            SealedTable::Attempts.update_row(p),
            "UPDATE attempts SET response_headers = ?3, response_body = ?4 WHERE id = ?1 AND response_headers = ?2 AND response_body = ?5"
        );
        assert_eq!(
            SealedTable::Duplicates.update_row(p),
            "UPDATE duplicates SET headers = ?3 WHERE id = ?1 AND headers = ?2"
        );
        let payloads = SealedTable::Payloads.select_batch(p, ["BLOB", "TEXT", "INTEGER"]);
        assert!(
            payloads.contains("t.event_id, t.route, CAST(t.part AS INTEGER)")
                && payloads.contains("WHERE id > ?1 AND payload IS NOT NULL ORDER BY id LIMIT ?2")
                && payloads.contains("WHERE w.before < ?3"),
            "{payloads}"
        );
    }
}
