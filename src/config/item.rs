//! Reading one configuration item (a table, a source, a destination, a route) and
//! reporting every bad key in it, not just the first one serde stops at.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::Value;

use super::ConfigErrors;
use super::env::{Applied, at_or_below};
use super::model::{
    Broker, BrokerDestination, BrokerSettings, DestinationConfig, ExecDestination, HttpDestination,
    KafkaBroker, NatsBroker, RabbitmqBroker, RedisBroker,
};

/// Most attempts at one item. Each attempt after the first follows an error (one key
/// recorded and removed, or one override re-read as text), so this only bounds the work
/// on a pathological file; a real one never comes close.
const MAX_ROUNDS: usize = 64;

/// One step of a key path inside an item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .map(|segment| match segment {
            Segment::Seq { index } => Step::Index(*index),
            Segment::Map { key } | Segment::Enum { variant: key } => Step::Key(key.clone()),
            // TOML keys are always strings; a `?` step matches no key, so nothing is removed.
            Segment::Unknown => Step::Key("?".to_owned()),
        })
        .collect()
}

/// `item.a.b[0]`, spelled as serde_path_to_error spells paths.
fn full_path(item: &str, at: &[Step]) -> String {
    let mut path = item.to_owned();
    for step in at {
        match step {
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

fn get<'v>(value: &'v Value, at: &[Step]) -> Option<&'v Value> {
    at.iter().try_fold(value, |v, step| match (step, v) {
        (Step::Key(k), Value::Table(t)) => t.get(k),
        (Step::Index(i), Value::Array(a)) => a.get(*i),
        _ => None,
    })
}

fn get_mut<'v>(value: &'v mut Value, at: &[Step]) -> Option<&'v mut Value> {
    at.iter().try_fold(value, |v, step| match (step, v) {
        (Step::Key(k), Value::Table(t)) => t.get_mut(k),
        (Step::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    })
}

/// Removes the key named by `at`, or the list holding the entry `at` names (removing
/// one entry would shift the indices of later errors); returns the removed key's path.
fn remove(value: &mut Value, at: &[Step]) -> Option<Vec<Step>> {
    let last_key = at.iter().rposition(|s| matches!(s, Step::Key(_)))?;
    let Step::Key(key) = &at[last_key] else {
        return None;
    };
    let parent = get_mut(value, &at[..last_key])?.as_table_mut()?;
    parent.remove(key)?;
    Some(at[..=last_key].to_vec())
}

/// Deserializes `value` as `T`, recording an error at `path` (plus the inner path) for
/// every bad key, not just the first: serde stops at the first error, so after each one
/// the offending key is removed from a copy and the item is read again, until it reads
/// cleanly or an error names no removable key (such as a required field missing from
/// the item itself). A type error on a value an override set is retried with the
/// override's plain text first (the rule is in `env.rs`).
pub(super) fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    path: &str,
    overrides: &[Applied],
    errors: &mut ConfigErrors,
) -> Option<T> {
    let mut value = value;
    let mut removed: Vec<Vec<Step>> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) if removed.is_empty() => return Some(v),
            // Read only after removing bad keys: the errors are recorded, the value is not usable.
            Ok(_) => return None,
            Err(e) => e,
        };
        let mut at = steps(error.path());
        let mut message = error.into_inner().message().trim_end().to_owned();

        if message.starts_with("invalid type:") && reread_as_text(&mut value, path, &at, overrides)
        {
            continue;
        }
        if let Some(field) = missing_field(&message) {
            let mut missing = at.clone();
            missing.push(Step::Key(field.to_owned()));
            if removed.contains(&missing) {
                // We removed it for its own error: say nothing more, but drop the table
                // that needs it so the keys after it are still read.
                match remove(&mut value, &at) {
                    Some(gone) => {
                        removed.push(gone);
                        continue;
                    }
                    None => return None,
                }
            }
        }
        if let Some((key, expected)) = unknown_field(&message) {
            // serde_path_to_error names the unknown key itself in a plain struct, but only
            // the enclosing item inside an internally tagged enum: find where it is.
            at = locate_key(&value, &at, key, expected).unwrap_or_else(|| {
                let mut at = at.clone();
                at.push(Step::Key(key.to_owned()));
                at
            });
            message = format!("unknown key; {expected}");
        }
        errors.push(full_path(path, &at), message);
        match remove(&mut value, &at) {
            Some(gone) => removed.push(gone),
            None => return None,
        }
    }
    // Never silent: the caller fails this item, so say why.
    errors.push(
        path,
        "too many mistakes in this table to list them all; fix the ones above and check again",
    );
    None
}

/// Puts back as plain text every override value at or below the error's place that was
/// read as another TOML type; false when there was none left to re-read.
fn reread_as_text(value: &mut Value, item: &str, at: &[Step], overrides: &[Applied]) -> bool {
    let place = full_path(item, at);
    let item_keys: Vec<&str> = item.split('.').collect();
    let mut changed = false;
    for o in overrides {
        let Some(text) = &o.text else { continue };
        if !at_or_below(&o.path(), &place) || o.keys.len() <= item_keys.len() {
            continue;
        }
        let (head, inside) = o.keys.split_at(item_keys.len());
        if head.iter().zip(&item_keys).any(|(a, b)| a != b) {
            continue;
        }
        let inside: Vec<Step> = inside.iter().map(|k| Step::Key(k.clone())).collect();
        if let Some(v) = get_mut(value, &inside)
            && !v.is_str()
        {
            *v = Value::String(text.clone());
            changed = true;
        }
    }
    changed
}

/// ``missing field `url` `` → `url`.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// ``unknown field `x`, expected one of `a`, `b` `` → (`x`, ``expected one of `a`, `b` ``).
fn unknown_field(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix("unknown field `")?.split_once("`, ")
}

/// Where the unknown `key` is, searching from `at` down. Several tables may hold a key of
/// that name (a valid `timeout` in a destination, an unknown one in its `breaker`): the
/// right one is the table whose other keys the error's `expected` list accounts for,
/// then the shallowest.
fn locate_key(value: &Value, at: &[Step], key: &str, expected: &str) -> Option<Vec<Step>> {
    if matches!(at.last(), Some(Step::Key(k)) if k == key) && get(value, at).is_some() {
        return Some(at.to_vec());
    }
    let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let mut base = at.to_vec();
    while get(value, &base).is_none() {
        base.pop()?;
    }
    let mut best: Option<(usize, usize, Vec<Step>)> = None;
    let mut stack = vec![base];
    while let Some(here) = stack.pop() {
        match get(value, &here) {
            Some(Value::Table(t)) => {
                if t.contains_key(key) {
                    let strays = t
                        .keys()
                        .filter(|k| k.as_str() != key && !expected.contains(&k.as_str()))
                        .count();
                    let mut found = here.clone();
                    found.push(Step::Key(key.to_owned()));
                    let rank = (strays, here.len());
                    if best.as_ref().is_none_or(|(s, d, _)| rank < (*s, *d)) {
                        best = Some((rank.0, rank.1, found));
                    }
                }
                for k in t.keys() {
                    let mut next = here.clone();
                    next.push(Step::Key(k.clone()));
                    stack.push(next);
                }
            }
            Some(Value::Array(a)) => {
                for i in 0..a.len() {
                    let mut next = here.clone();
                    next.push(Step::Index(i));
                    stack.push(next);
                }
            }
            _ => {}
        }
    }
    best.map(|(_, _, found)| found)
}

/// A destination. serde reads an internally tagged enum by buffering the table before it
/// picks the variant, which loses the key path of every error inside (they would all be
/// reported at `destinations.NAME`, and only the first); so the known kinds are read as
/// their own structs here. Any other `kind` (or none) goes through the enum, whose error
/// lists the kinds there are.
pub(super) fn deserialize_destination(
    value: Value,
    path: &str,
    overrides: &[Applied],
    errors: &mut ConfigErrors,
) -> Option<DestinationConfig> {
    if let Value::Table(table) = &value
        && let Some(Value::String(kind)) = table.get("kind")
    {
        let mut fields = table.clone();
        fields.remove("kind");
        let fields = Value::Table(fields);
        match kind.as_str() {
            "http" => {
                return deserialize_at::<HttpDestination>(fields, path, overrides, errors)
                    .map(DestinationConfig::Http);
            }
            "exec" => {
                return deserialize_at::<ExecDestination>(fields, path, overrides, errors)
                    .map(DestinationConfig::Exec);
            }
            "nats" | "rabbitmq" | "redis" | "kafka" => {
                return deserialize_broker(kind, fields, path, overrides, errors);
            }
            _ => {}
        }
        errors.push(
            format!("{path}.kind"),
            format!(
                "unknown destination kind {kind:?}: give one of http, exec, nats, rabbitmq, redis, kafka"
            ),
        );
        return None;
    }
    deserialize_at(value, path, overrides, errors)
}

/// A broker destination: its delivery settings (the keys of [`BrokerSettings::KEYS`])
/// and its broker's own fields are read apart, each refusing keys it does not know,
/// with every error at its own key path.
fn deserialize_broker(
    kind: &str,
    fields: Value,
    path: &str,
    overrides: &[Applied],
    errors: &mut ConfigErrors,
) -> Option<DestinationConfig> {
    let Value::Table(mut own) = fields else {
        return None;
    };
    let mut settings = toml::Table::new();
    for key in BrokerSettings::KEYS {
        if let Some(value) = own.remove(key) {
            settings.insert(key.to_owned(), value);
        }
    }
    let settings =
        deserialize_at::<BrokerSettings>(Value::Table(settings), path, overrides, errors);
    let own = Value::Table(own);
    let broker = match kind {
        "nats" => deserialize_at::<NatsBroker>(own, path, overrides, errors).map(Broker::Nats),
        "rabbitmq" => {
            deserialize_at::<RabbitmqBroker>(own, path, overrides, errors).map(Broker::Rabbitmq)
        }
        "redis" => deserialize_at::<RedisBroker>(own, path, overrides, errors).map(Broker::Redis),
        _ => deserialize_at::<KafkaBroker>(own, path, overrides, errors).map(Broker::Kafka),
    };
    Some(DestinationConfig::Broker(BrokerDestination {
        broker: broker?,
        settings: settings?,
    }))
}
