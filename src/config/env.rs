//! `FOREBAY_*` environment overrides, applied to the parsed TOML before validation.
//!
//! `FOREBAY_SERVER__ADMIN_LISTEN=127.0.0.1:9000` sets `server.admin_listen`: the prefix is
//! dropped, `__` separates keys, names are matched case-insensitively and `_` matches `-`
//! (so `FOREBAY_SOURCES__MY_SHOP__MAX_BODY` reaches `[sources.my-shop]`). Variables without
//! `__` (such as `FOREBAY_CONFIG` or secrets named by `env:`) are not overrides.
//!
//! What an override may reach:
//! - any key of `[server]` and `[storage]`, existing or new;
//! - any key inside a source or destination the file defines. An override never creates a
//!   source or destination: a typo such as `FOREBAY_SOURCES__STRIPPE__MAX_BODY` would
//!   otherwise open a new, unverified public endpoint, so it is an error instead;
//! - not `[[routes]]` (an array: entries have no stable name to address), nor anything
//!   inside a list or below a key whose value is not a table. Those are errors that name
//!   the variable, never silently skipped.
//!
//! How the value is read: as a TOML value (`8`, `true`, `["a", "b"]`, `"quoted"`); text
//! that is not TOML (`10s`, `0.0.0.0:8080`) is taken as it is. Where the file already
//! has text at that key, unquoted input stays text. Otherwise, if the key turns out not
//! to take the TOML type (a type error when the table is read, see `load.rs`), the input
//! is read again as plain text. So `FOREBAY_SERVER__ADMIN_TOKEN=12345` is the token
//! `"12345"`, while `FOREBAY_SERVER__MAX_HEADERS=200` stays the number 200. Quote the
//! value (`'"8"'`) to force text.

use toml::{Table, Value};

use super::errors::ConfigErrors;

pub const PREFIX: &str = "FOREBAY_";

/// One override that took effect: which variable set which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The variable as given, e.g. `FOREBAY_SERVER__ADMIN_LISTEN`.
    pub var: String,
    /// The keys it set, as spelled in the table, e.g. `["server", "admin_listen"]`.
    pub keys: Vec<String>,
    /// How many leading `keys` the file already had; the rest the override created.
    pub existed: usize,
    /// The input as plain text, kept when it was read as another TOML type, so the
    /// loader can fall back to it when the key wants text.
    pub text: Option<String>,
}

impl Applied {
    /// The key path it set, e.g. `server.admin_listen`.
    pub fn path(&self) -> String {
        self.keys.join(".")
    }

    /// Whether an error reported at `path` is about a value this override put there: the
    /// key it set or anything inside it, or a key it created on the way (such as an
    /// unknown top-level table).
    pub fn explains(&self, path: &str) -> bool {
        if at_or_below(path, &self.path()) {
            return true;
        }
        (self.existed..self.keys.len()).any(|i| self.keys[..=i].join(".") == path)
    }
}

/// Whether `path` is `ancestor` or a key inside it (`a.b` and `a[0]` are inside `a`).
pub fn at_or_below(path: &str, ancestor: &str) -> bool {
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

/// Applies every override in `vars` to `table`, in name order; records an error for
/// each one that cannot be applied and returns the ones that were.
pub fn apply_overrides<I, K, V>(
    table: &mut Table,
    vars: I,
    errors: &mut ConfigErrors,
) -> Vec<Applied>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let var = k.as_ref();
            let rest = var.strip_prefix(PREFIX)?;
            rest.contains("__")
                .then(|| (var.to_owned(), v.as_ref().to_owned()))
        })
        .collect();
    // Deterministic order whatever the environment's.
    vars.sort();
    let mut applied = Vec::new();
    for (var, raw) in vars {
        match set_path(table, &var, &raw) {
            Ok(a) => applied.push(a),
            Err(message) => errors.push("", message),
        }
    }
    applied
}

fn set_path(table: &mut Table, var: &str, raw: &str) -> Result<Applied, String> {
    let rest = var.strip_prefix(PREFIX).unwrap_or(var);
    let segments: Vec<&str> = rest.split("__").collect();
    if segments.iter().any(|s| s.is_empty()) || segments.len() < 2 {
        return Err(format!(
            "{var} has an empty key name (`__` twice in a row, or at the end); write overrides like FOREBAY_SERVER__ADMIN_LISTEN"
        ));
    }
    // The variable that would set the first `n` keys, for "set this one instead" hints.
    let var_for = |n: usize| format!("{PREFIX}{}", segments[..n].join("__"));

    let mut current = table;
    let mut keys: Vec<String> = Vec::new();
    let mut existed = None;
    for (depth, segment) in segments.iter().enumerate() {
        let key = matching_key(current, segment).map_err(|(a, b)| {
            let within = if keys.is_empty() {
                "the file".to_owned()
            } else {
                format!("[{}]", keys.join("."))
            };
            format!("{var} could mean `{a}` or `{b}` in {within}; rename one of them in the file")
        })?;
        if depth == 0 {
            check_top_level(current, var, &key, segments[1])?;
        }
        let exists = current.contains_key(&key);
        if !exists && existed.is_none() {
            existed = Some(depth);
        }
        keys.push(key.clone());

        if depth + 1 == segments.len() {
            let (value, text) = parse_value(raw, current.get(&key));
            current.insert(key, value);
            return Ok(Applied {
                var: var.to_owned(),
                existed: existed.unwrap_or(keys.len()),
                keys,
                text,
            });
        }
        let entry = current
            .entry(key)
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(t) => t,
            Value::Array(_) => {
                return Err(format!(
                    "{var} reaches into {}, which is a list; overrides cannot address list entries, so set the whole list with {} (e.g. '[\"a\", \"b\"]') or change it in the file",
                    keys.join("."),
                    var_for(depth + 1)
                ));
            }
            other => {
                return Err(format!(
                    "{var} reaches below {}, which is {}, not a table, so it has no key `{}`; set {} itself instead",
                    keys.join("."),
                    type_name(other),
                    segments[depth + 1].to_ascii_lowercase(),
                    var_for(depth + 1)
                ));
            }
        };
    }
    // Unreachable: the loop returns at the last segment, and there are at least two.
    Err(format!("{var} names no key"))
}

/// Rules for the first key: routes are out of reach, and sources and destinations must
/// already exist (`name` is the variable's second key).
fn check_top_level(table: &Table, var: &str, key: &str, name: &str) -> Result<(), String> {
    if normalise(key) == "routes" {
        return Err(format!(
            "{var}: routes cannot be overridden from the environment (they are a list with no names to address); change [[routes]] in the file"
        ));
    }
    let kind = match normalise(key).as_str() {
        "sources" => "source",
        "destinations" => "destination",
        _ => return Ok(()),
    };
    let defined = match table.get(key) {
        // Anything else is reported as "not a table" by the caller.
        // An ambiguous name is reported as such by the caller.
        Some(Value::Table(items)) => {
            matching_key(items, name).map_or(true, |k| items.contains_key(&k))
        }
        Some(_) => true,
        None => false,
    };
    if defined {
        return Ok(());
    }
    let name = name.to_ascii_lowercase();
    Err(format!(
        "{var} names {kind} `{name}`, which the file does not define; define [{key}.{name}] in the file"
    ))
}

/// The existing key that `segment` names, else `segment` in lower case; two existing
/// keys that both match (`my-shop` and `my_shop`) are an error, not a coin toss.
fn matching_key(table: &Table, segment: &str) -> Result<String, (String, String)> {
    let wanted = normalise(segment);
    let mut found = table.keys().filter(|k| normalise(k) == wanted);
    match (found.next(), found.next()) {
        (Some(a), Some(b)) => Err((a.clone(), b.clone())),
        (Some(a), None) => Ok(a.clone()),
        (None, _) => Ok(segment.to_ascii_lowercase()),
    }
}

fn normalise(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "text",
        Value::Integer(_) => "a number",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// Reads `raw` as a TOML value, returning it with the plain-text fallback when it was
/// read as something other than text (the module doc gives the rule).
fn parse_value(raw: &str, existing: Option<&Value>) -> (Value, Option<String>) {
    let parsed = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(Value::String(s)) => (Value::String(s), None),
        // A numeric-looking secret or address where the file has text stays text.
        Some(_) if matches!(existing, Some(Value::String(_))) => {
            (Value::String(raw.to_owned()), None)
        }
        Some(v) => (v, Some(raw.to_owned())),
        None => (Value::String(raw.to_owned()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(file: &str, vars: &[(&str, &str)]) -> (Table, Vec<Applied>, Vec<String>) {
        let mut t: Table = file.parse().unwrap();
        let mut errors = ConfigErrors::default();
        let applied = apply_overrides(&mut t, vars.iter().copied(), &mut errors);
        let errors = errors.iter().map(|e| e.to_string()).collect();
        (t, applied, errors)
    }

    #[test]
    fn overrides_reach_nested_keys_and_keep_text_as_text() {
        let (t, applied, errors) = apply(
            r#"
            [server]
            admin_token = "x"
            [sources.my-shop]
            max_body = 10
            "#,
            &[
                ("FOREBAY_SERVER__ADMIN_TOKEN", "12345"),
                ("FOREBAY_SOURCES__MY_SHOP__MAX_BODY", "20"),
                ("FOREBAY_STORAGE__MAX_BATCH", "64"),
                ("FOREBAY_CONFIG", "ignored.toml"),
                ("OTHER__THING", "ignored"),
            ],
        );
        assert!(errors.is_empty(), "{errors:?}");
        let set: Vec<(String, &str)> = applied.iter().map(|a| (a.path(), a.var.as_str())).collect();
        assert_eq!(
            set,
            [
                (
                    "server.admin_token".to_owned(),
                    "FOREBAY_SERVER__ADMIN_TOKEN"
                ),
                (
                    "sources.my-shop.max_body".to_owned(),
                    "FOREBAY_SOURCES__MY_SHOP__MAX_BODY"
                ),
                ("storage.max_batch".to_owned(), "FOREBAY_STORAGE__MAX_BATCH"),
            ]
        );
        assert_eq!(t["server"]["admin_token"].as_str(), Some("12345"));
        assert_eq!(t["sources"]["my-shop"]["max_body"].as_integer(), Some(20));
        assert_eq!(t["storage"]["max_batch"].as_integer(), Some(64));
        // The file had no [storage]: the override created it, and may fall back to text.
        assert_eq!(applied[2].existed, 0);
        assert_eq!(applied[2].text.as_deref(), Some("64"));
        assert_eq!(applied[0].text, None);
    }

    #[test]
    fn overrides_that_cannot_apply_are_errors_naming_the_variable() {
        let file = r#"
            [server]
            admin_listen = "127.0.0.1:8081"
            [sources.stripe]
            [destinations.d]
            kind = "http"
            url = "http://x"
            retry = { schedule = ["5s"] }
            [[routes]]
            source = "stripe"
            destination = "d"
        "#;
        let cases: &[(&str, &str)] = &[
            (
                "FOREBAY_ROUTES__0__NAME",
                "FOREBAY_ROUTES__0__NAME: routes cannot be overridden from the environment",
            ),
            (
                "FOREBAY_SERVER__ADMIN_LISTEN__PORT",
                "FOREBAY_SERVER__ADMIN_LISTEN__PORT reaches below server.admin_listen, which is text, not a table, so it has no key `port`; set FOREBAY_SERVER__ADMIN_LISTEN itself instead",
            ),
            (
                "FOREBAY_DESTINATIONS__D__RETRY__SCHEDULE__0",
                "which is a list; overrides cannot address list entries, so set the whole list with FOREBAY_DESTINATIONS__D__RETRY__SCHEDULE",
            ),
            (
                "FOREBAY_SOURCES__STRIPPE__MAX_BODY",
                "FOREBAY_SOURCES__STRIPPE__MAX_BODY names source `strippe`, which the file does not define; define [sources.strippe] in the file",
            ),
            (
                "FOREBAY_DESTINATIONS__ARCHIVE__URL",
                "FOREBAY_DESTINATIONS__ARCHIVE__URL names destination `archive`, which the file does not define; define [destinations.archive] in the file",
            ),
            ("FOREBAY_SERVER____X", "empty key name"),
            ("FOREBAY_SERVER__", "empty key name"),
        ];
        for (var, expected) in cases {
            let before: Table = file.parse().unwrap();
            let (t, applied, errors) = apply(file, &[(var, "1")]);
            assert!(applied.is_empty(), "{var}: {applied:?}");
            assert_eq!(errors.len(), 1, "{var}: {errors:?}");
            assert!(errors[0].contains(expected), "{var}: {errors:?}");
            assert_eq!(t, before, "{var} changed the table");
        }
    }

    #[test]
    fn overrides_may_add_keys_inside_defined_items_but_not_new_items() {
        let (t, applied, errors) = apply(
            "[sources.my-shop]\n",
            &[
                ("FOREBAY_SOURCES__MY_SHOP__DEDUP_WINDOW", "1h"),
                ("FOREBAY_SOURCES__NEW__MAX_BODY", "1"),
            ],
        );
        assert_eq!(applied.len(), 1);
        assert_eq!(t["sources"]["my-shop"]["dedup_window"].as_str(), Some("1h"));
        assert!(t["sources"].get("new").is_none());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("names source `new`"), "{errors:?}");
        // Without any [sources] at all, the same.
        let (t, _, errors) = apply("", &[("FOREBAY_SOURCES__A__MAX_BODY", "1")]);
        assert!(t.get("sources").is_none());
        assert!(errors[0].contains("define [sources.a]"), "{errors:?}");
    }

    #[test]
    fn ambiguous_names_are_errors() {
        let (_, applied, errors) = apply(
            "[sources.my-shop]\n[sources.my_shop]\n",
            &[("FOREBAY_SOURCES__MY_SHOP__MAX_BODY", "1")],
        );
        assert!(applied.is_empty());
        assert!(
            errors[0].contains("could mean `my-shop` or `my_shop` in [sources]"),
            "{errors:?}"
        );
    }

    #[test]
    fn explains_the_key_set_and_the_keys_created() {
        let (_, applied, _) = apply(
            "[server]\n",
            &[
                ("FOREBAY_SERVER__ADMIN_LISTEN", "x"),
                ("FOREBAY_SERVR__PORT", "1"),
            ],
        );
        let listen = &applied[0];
        assert!(listen.explains("server.admin_listen"));
        assert!(!listen.explains("server"));
        assert!(!listen.explains("server.admin_listener"));
        let servr = &applied[1];
        assert!(servr.explains("servr"));
        assert!(servr.explains("servr.port"));
    }
}
