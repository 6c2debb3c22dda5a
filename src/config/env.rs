//! `FOREBAY_*` environment overrides, applied to the parsed TOML before validation.
//!
//! `FOREBAY_SERVER__ADMIN_LISTEN=127.0.0.1:9000` sets `server.admin_listen`: the prefix is
//! dropped, `__` separates keys, names are matched case-insensitively and `_` matches `-`
//! (so `FOREBAY_SOURCES__MY_SHOP__MAX_BODY` reaches `[sources.my-shop]`). Variables without
//! `__` (such as `FOREBAY_CONFIG` or secrets named by `env:`) are not overrides.

use toml::{Table, Value};

pub const PREFIX: &str = "FOREBAY_";

/// Applies every override in `vars` to `table`; returns the key paths it set.
pub fn apply_overrides<I, K, V>(table: &mut Table, vars: I) -> Vec<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.as_ref().strip_prefix(PREFIX)?;
            rest.contains("__")
                .then(|| (rest.to_owned(), v.as_ref().to_owned()))
        })
        .collect();
    // Deterministic order whatever the environment's.
    vars.sort();
    for (key, raw) in vars {
        let segments: Vec<&str> = key.split("__").filter(|s| !s.is_empty()).collect();
        if let Some(path) = set_path(table, &segments, &raw) {
            applied.push(path);
        }
    }
    applied
}

fn set_path(table: &mut Table, segments: &[&str], raw: &str) -> Option<String> {
    let (last, parents) = segments.split_last()?;
    let mut current = table;
    let mut path = Vec::new();
    for segment in parents {
        let key = matching_key(current, segment);
        path.push(key.clone());
        let entry = current
            .entry(key)
            .or_insert_with(|| Value::Table(Table::new()));
        current = entry.as_table_mut()?;
    }
    let key = matching_key(current, last);
    path.push(key.clone());
    let value = parse_value(raw, current.get(&key));
    current.insert(key, value);
    Some(path.join("."))
}

/// The existing key that `segment` names, else `segment` in lower case.
fn matching_key(table: &Table, segment: &str) -> String {
    let wanted = normalise(segment);
    table
        .keys()
        .find(|k| normalise(k) == wanted)
        .cloned()
        .unwrap_or_else(|| segment.to_ascii_lowercase())
}

fn normalise(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// Reads `raw` as a TOML value (`8`, `true`, `["a", "b"]`, `"quoted"`); where the key
/// holds text already, unquoted input stays text, so a numeric-looking secret or
/// address is not turned into a number.
fn parse_value(raw: &str, existing: Option<&Value>) -> Value {
    let parsed = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(Value::String(s)) => Value::String(s),
        Some(_) if matches!(existing, Some(Value::String(_))) => Value::String(raw.to_owned()),
        Some(v) => v,
        None => Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_nested_keys_and_keep_text_as_text() {
        let mut t: Table = r#"
            [server]
            admin_token = "x"
            [sources.my-shop]
            max_body = 10
        "#
        .parse()
        .unwrap();
        let applied = apply_overrides(
            &mut t,
            [
                ("FOREBAY_SERVER__ADMIN_TOKEN", "12345"),
                ("FOREBAY_SOURCES__MY_SHOP__MAX_BODY", "20"),
                ("FOREBAY_STORAGE__MAX_BATCH", "64"),
                ("FOREBAY_CONFIG", "ignored.toml"),
                ("OTHER__THING", "ignored"),
            ],
        );
        assert_eq!(
            applied,
            [
                "server.admin_token",
                "sources.my-shop.max_body",
                "storage.max_batch"
            ]
        );
        assert_eq!(t["server"]["admin_token"].as_str(), Some("12345"));
        assert_eq!(t["sources"]["my-shop"]["max_body"].as_integer(), Some(20));
        assert_eq!(t["storage"]["max_batch"].as_integer(), Some(64));
    }
}
