//! The object filters, transforms and `jq:` and `js:` dedup keys see (SPEC section 7):
//! `{id, source, received_at, method, path, query, headers, body}`.
//!
//! - `received_at` is RFC 3339 UTC with milliseconds.
//! - `query` and form bodies are objects of decoded parameters; a name given more than
//!   once maps to the array of its values, in order.
//! - `headers` is an object with lower-case names; repeated headers are joined with `, `.
//!   The sender's credentials for forebay (`Authorization`, `Proxy-Authorization`,
//!   `Cookie`, `X-Gitlab-Token`, `verif-hash`, `x-vapi-secret`:
//!   [`crate::ingest::request::CREDENTIAL_HEADERS`]) are left out: expressions have no
//!   use for them, and their errors are
//!   logged and shown.
//! - `body` is the parsed JSON when the content type is JSON (`application/json` or
//!   `…+json`) and the body parses, an object for `application/x-www-form-urlencoded`,
//!   else the body as a string (bytes that are not UTF-8 become U+FFFD).

use serde_json::{Map, Value};

use crate::store::EventInput;

/// The input object for `event`.
pub fn to_value(event: &EventInput) -> Value {
    let content_type = event
        .headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    let mut object = Map::new();
    object.insert("id".into(), Value::String(event.id.clone()));
    object.insert("source".into(), Value::String(event.source.clone()));
    object.insert(
        "received_at".into(),
        Value::String(crate::clock::rfc3339(event.received_at_ms)),
    );
    object.insert("method".into(), Value::String(event.method.clone()));
    object.insert("path".into(), Value::String(event.path.clone()));
    object.insert(
        "query".into(),
        Value::Object(form_object(event.query.as_deref().unwrap_or("").as_bytes())),
    );
    let headers: Vec<(String, Vec<u8>)> = event
        .headers
        .iter()
        .filter(|(name, _)| !crate::ingest::request::is_credential(name))
        .cloned()
        .collect();
    object.insert(
        "headers".into(),
        Value::Object(crate::store::headers::to_json(&headers)),
    );
    object.insert("body".into(), body_value(&content_type, &event.body));
    Value::Object(object)
}

fn body_value(content_type: &str, body: &[u8]) -> Value {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if (essence == "application/json" || essence.ends_with("+json"))
        && let Ok(value) = serde_json::from_slice(body)
    {
        return value;
    }
    if essence == "application/x-www-form-urlencoded" {
        return Value::Object(form_object(body));
    }
    Value::String(String::from_utf8_lossy(body).into_owned())
}

/// `a=1&b=2&b=3` as `{"a": "1", "b": ["2", "3"]}`.
fn form_object(encoded: &[u8]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in form_urlencoded::parse(encoded) {
        let value = Value::String(value.into_owned());
        match map.get_mut(name.as_ref()) {
            None => {
                map.insert(name.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => {
                let first = first.take();
                map.insert(name.into_owned(), Value::Array(vec![first, value]));
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(content_type: &str, body: &[u8], query: Option<&str>) -> EventInput {
        EventInput {
            id: "evt_1".into(),
            source: "shop".into(),
            received_at_ms: 1_700_000_000_123,
            method: "POST".into(),
            path: "/in/shop".into(),
            query: query.map(str::to_owned),
            headers: vec![
                ("content-type".into(), content_type.as_bytes().to_vec()),
                ("x-tag".into(), b"a".to_vec()),
                ("x-tag".into(), b"b".to_vec()),
                ("authorization".into(), b"Bearer s3cr3t".to_vec()),
                ("cookie".into(), b"session=s3cr3t".to_vec()),
            ],
            body: body.to_vec(),
        }
    }

    #[test]
    fn json_bodies_are_parsed_and_the_envelope_is_complete() {
        let value = to_value(&event(
            "application/json; charset=utf-8",
            br#"{"type":"order.paid","n":12345678901234567890}"#,
            Some("x=1&y=2&y=3"),
        ));
        assert_eq!(
            value,
            json!({
                "id": "evt_1",
                "source": "shop",
                "received_at": "2023-11-14T22:13:20.123Z",
                "method": "POST",
                "path": "/in/shop",
                "query": {"x": "1", "y": ["2", "3"]},
                "headers": {"content-type": "application/json; charset=utf-8", "x-tag": "a, b"},
                "body": {"type": "order.paid", "n": 12345678901234567890u64},
            })
        );
        let vendor = to_value(&event("application/vnd.api+json", b"[1]", None));
        assert_eq!(vendor["body"], json!([1]));
        assert_eq!(vendor["query"], json!({}));
    }

    #[test]
    fn forms_become_objects_and_anything_else_a_string() {
        let form = to_value(&event(
            "application/x-www-form-urlencoded",
            b"From=%2B15551234567&Body=hi+there",
            None,
        ));
        assert_eq!(
            form["body"],
            json!({"From": "+15551234567", "Body": "hi there"})
        );
        let broken = to_value(&event("application/json", b"{not json", None));
        assert_eq!(broken["body"], json!("{not json"));
        let bytes = to_value(&event("application/octet-stream", &[0x66, 0xff], None));
        assert_eq!(bytes["body"], json!("f\u{fffd}"));
    }
}
