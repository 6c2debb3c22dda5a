//! How results are printed: borderless tables for people, JSON for scripts, and the
//! small formatting helpers the commands share.

use std::io::Write;

use comfy_table::{Table, presets};
use serde_json::Value;

use super::error::CliError;

/// A table with these column titles, in the style of `kubectl get`.
pub fn table(titles: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(titles.to_vec());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Prints a table without trailing blanks.
pub fn print_table(table: &Table) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end()).map_err(stdout_error)?;
    }
    Ok(())
}

/// Prints table rows without their header row (the rows of a page after the first).
pub fn print_rows(table: &Table) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    for line in table.lines().skip(1) {
        writeln!(out, "{}", line.trim_end()).map_err(stdout_error)?;
    }
    Ok(())
}

/// One JSON value: indented for `show`-style answers, compact for NDJSON.
pub fn print_json(value: &Value, pretty: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let written = if pretty {
        writeln!(out, "{value:#}")
    } else {
        writeln!(out, "{value}")
    };
    written.and_then(|()| out.flush()).map_err(stdout_error)
}

/// A line for people on stdout.
pub fn say(line: impl std::fmt::Display) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

pub fn stdout_error(e: std::io::Error) -> CliError {
    CliError::io("cannot write to stdout", e)
}

/// A string field, or `""`.
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A field as people read it: text as is, `null` or absent as `-`, the rest as JSON.
pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `1.2 KiB`.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        bytesize::ByteSize::b(bytes).display().iec().to_string()
    }
}

/// `2 delivered, 1 dead` from an event's `deliveries` (`-` when it has none).
pub fn delivery_summary(deliveries: Option<&Value>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for d in deliveries.and_then(Value::as_array).into_iter().flatten() {
        let state = text(d, "state").to_owned();
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Text cut to `max` characters (with `…`), on one line.
pub fn short(text: &str, max: usize) -> String {
    let line: String = text.replace(['\r', '\n'], " ");
    if line.chars().count() <= max {
        line
    } else {
        let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A body for people: pretty JSON when it parses, else the text; binary as base64 with
/// a note.
pub fn body_for_people(v: &Value) -> String {
    if let Some(text) = v.get("body").and_then(Value::as_str) {
        if let Ok(json) = serde_json::from_str::<Value>(text)
            && (json.is_object() || json.is_array())
        {
            return format!("{json:#}");
        }
        return text.to_owned();
    }
    if let Some(b64) = v.get("body_base64").and_then(Value::as_str) {
        return format!("(not UTF-8 text; base64:)\n{b64}");
    }
    "(no body)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_and_sizes() {
        let d = json!([{"state": "delivered"}, {"state": "dead"}, {"state": "delivered"}]);
        assert_eq!(delivery_summary(Some(&d)), "2 delivered, 1 dead");
        assert_eq!(delivery_summary(Some(&json!([]))), "-");
        assert_eq!(size(12), "12 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(short("a\nbcdef", 4), "a b…");
    }

    #[test]
    fn bodies_for_people() {
        assert_eq!(
            body_for_people(&json!({"body": "{\"a\":1}"})),
            "{\n  \"a\": 1\n}"
        );
        assert_eq!(body_for_people(&json!({"body": "a=1"})), "a=1");
        assert!(body_for_people(&json!({"body_base64": "AAE="})).contains("AAE="));
    }
}
