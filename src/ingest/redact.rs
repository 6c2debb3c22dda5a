//! Redaction: a source's `redact` rule takes header values and body fields out of what
//! is stored, replacing each with `[redacted]`.
//!
//! Bodies stay as received everywhere else: only the bytes of a redacted value change
//! (the value's span is found with borrowed `RawValue`s, so the rest of a JSON document
//! keeps its exact bytes, spacing and key order), and the result is still valid JSON, or
//! a valid form. Fields are JSON pointers (RFC 6901), with `*` for every member of an
//! object or element of an array. For `application/x-www-form-urlencoded` bodies the same
//! pointer names a field in bracket notation: `/customer/email` is `customer[email]`,
//! `/items/*/card` every `items[N][card]`. A body that is neither is left alone (its
//! headers are still redacted).

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

/// A source's `redact` rule, checked at load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redaction {
    /// Header names, lower case.
    pub headers: Vec<String>,
    pub fields: Vec<Pointer>,
    /// When the stored event loses them: at once (`stored`), or once every delivery of
    /// the event has succeeded (`delivered`), so handlers get the whole payload.
    pub when: When,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum When {
    #[default]
    Stored,
    Delivered,
}

/// A JSON pointer, as written and as segments (`~1` and `~0` unescaped; `*` matches any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub text: String,
    segments: Vec<String>,
}

impl Pointer {
    /// Parses `/a/b~1c/*`; the empty pointer (the whole body) is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: start it with `/`, e.g. \"/data/object/card\""
            ));
        };
        let segments = rest
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect::<Vec<_>>();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} has an empty segment; name each key, e.g. \"/data/object/card\""
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// Whether redacting at this pointer takes out what `other` points to (the same
    /// place, or something inside it).
    pub fn covers(&self, other: &Pointer) -> bool {
        self.segments.len() <= other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(mine, theirs)| mine == "*" || theirs == "*" || mine == theirs)
    }

    fn matches(&self, path: &[Cow<'_, str>]) -> bool {
        self.segments.len() == path.len()
            && self
                .segments
                .iter()
                .zip(path)
                .all(|(want, got)| want == "*" || want == got)
    }
}

/// What redaction made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub headers: Vec<u8>,
    pub body: Vec<u8>,
    /// What was redacted: `header:NAME` and the pointers that matched, in rule order.
    pub fields: Vec<String>,
}

impl Redacted {
    /// Nothing kept of the body, for a rule that cannot be read back: failing closed.
    pub fn everything(headers: &[u8]) -> Self {
        Self {
            headers: headers.to_vec(),
            body: REDACTED.as_bytes().to_vec(),
            fields: vec!["body".to_owned()],
        }
    }
}

impl Redaction {
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.fields.is_empty()
    }

    /// Why `dedup` would keep, in the stored dedup key, a value this rule takes out.
    pub fn kept_by(&self, dedup: &crate::ingest::dedup::DedupRule) -> Option<String> {
        use crate::ingest::dedup::DedupRule;
        match dedup {
            DedupRule::Header(name) if self.headers.iter().any(|h| h == name.as_str()) => {
                Some(format!("header {name}"))
            }
            DedupRule::JsonPointer(pointer) => {
                let pointer = Pointer::parse(pointer).ok()?;
                self.fields
                    .iter()
                    .find(|f| f.covers(&pointer))
                    .map(|f| format!("the field {}", f.text))
            }
            _ => None,
        }
    }

    /// The rule as JSON, kept with an event whose redaction waits for its deliveries.
    pub fn to_stored(&self) -> String {
        serde_json::json!({
            "headers": self.headers,
            "json": self.fields.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// A rule kept by [`Redaction::to_stored`].
    pub fn from_stored(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Stored {
            headers: Vec<String>,
            json: Vec<String>,
        }
        let stored: Stored =
            serde_json::from_str(text).map_err(|e| format!("a stored redact rule: {e}"))?;
        Ok(Self {
            headers: stored.headers,
            fields: stored
                .json
                .iter()
                .map(|p| Pointer::parse(p))
                .collect::<Result<_, _>>()?,
            when: When::Delivered,
        })
    }

    /// Applies the rule to an event about to be stored: at once, or (`when =
    /// "delivered"`) marks it to wait for its deliveries, its duplicates' headers
    /// redacted at once all the same (a duplicate is never delivered).
    pub fn apply_to_event(&self, event: &mut crate::store::NewEvent) {
        if self.is_empty() {
            return;
        }
        let Some(r) = self.apply(&event.headers, &event.body) else {
            return;
        };
        match self.when {
            When::Stored => {
                event.headers = r.headers;
                event.body = bytes::Bytes::from(r.body);
                event.redacted = r.fields;
                crate::metrics::redacted("stored", 1);
            }
            When::Delivered => {
                event.pending_rule = Some(self.to_stored());
                if r.fields.iter().any(|f| f.starts_with("header:")) {
                    event.duplicate_headers = Some(r.headers);
                }
            }
        }
    }

    /// Applies the rule to headers in wire form and a body; `None` when nothing matched
    /// (the request is stored as it came).
    pub fn apply(&self, headers: &[u8], body: &[u8]) -> Option<Redacted> {
        let mut fields = Vec::new();
        // Headers that do not decode (never ours) are kept as they are.
        let pairs = crate::store::headers::decode(headers).ok();
        // Read before redacting: a rule may name `content-type` itself.
        let content_type = pairs
            .iter()
            .flatten()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase());
        let headers = match &pairs {
            Some(pairs) => self.redact_headers(pairs, &mut fields),
            None => headers.to_vec(),
        };
        let body = self
            .redact_body(body, content_type.as_deref(), &mut fields)
            .unwrap_or_else(|| body.to_vec());
        if fields.is_empty() {
            return None;
        }
        Some(Redacted {
            headers,
            body,
            fields,
        })
    }

    /// Headers in wire form again, the named ones' values replaced.
    fn redact_headers(&self, pairs: &[(String, Vec<u8>)], fields: &mut Vec<String>) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in pairs {
            let hidden = self.headers.iter().any(|h| h.eq_ignore_ascii_case(name));
            if hidden {
                let field = format!("header:{}", name.to_ascii_lowercase());
                if !fields.contains(&field) {
                    fields.push(field);
                }
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(if hidden { REDACTED.as_bytes() } else { value });
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// The body with its redacted spans replaced; `None` when it is neither JSON nor a
    /// form (and then the caller keeps it as it was).
    fn redact_body(
        &self,
        body: &[u8],
        content_type: Option<&str>,
        fields: &mut Vec<String>,
    ) -> Option<Vec<u8>> {
        if self.fields.is_empty() {
            return Some(body.to_vec());
        }
        let is_form =
            content_type.is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let mut spans: Vec<Range<usize>> = Vec::new();
        let replacement = if is_form {
            for pointer in &self.fields {
                let found = form_spans(body, pointer);
                if !found.is_empty() {
                    fields.push(pointer.text.clone());
                    spans.extend(found);
                }
            }
            "%5Bredacted%5D".to_owned()
        } else {
            // A byte order mark is not JSON, but some senders put one first.
            let text = std::str::from_utf8(body).ok()?;
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            let root: &RawValue = serde_json::from_str(text).ok()?;
            for pointer in &self.fields {
                let mut found = Vec::new();
                json_spans(body, root, &pointer.segments, &mut found);
                if !found.is_empty() {
                    fields.push(pointer.text.clone());
                    spans.extend(found);
                }
            }
            format!("\"{REDACTED}\"")
        };
        Some(splice(body, spans, replacement.as_bytes()))
    }
}

/// `body` with every span replaced; nested spans (a pointer inside a redacted value)
/// fold into the outer one.
fn splice(body: &[u8], mut spans: Vec<Range<usize>>, replacement: &[u8]) -> Vec<u8> {
    spans.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for span in spans {
        if span.start < at {
            continue;
        }
        out.extend_from_slice(&body[at..span.start]);
        out.extend_from_slice(replacement);
        at = span.end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// The byte spans, in `body` (which `value` borrows from), of the values at `segments`
/// below `value`.
fn json_spans(body: &[u8], value: &RawValue, segments: &[String], out: &mut Vec<Range<usize>>) {
    let Some((first, rest)) = segments.split_first() else {
        let start = value.get().as_ptr() as usize - body.as_ptr() as usize;
        out.push(start..start + value.get().len());
        return;
    };
    match value.get().as_bytes().first() {
        Some(b'{') => {
            // Keys serde cannot hold as text (a lone surrogate escape): the object goes
            // whole rather than a named field staying.
            let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(value.get()) else {
                json_spans(body, value, &[], out);
                return;
            };
            for (key, member) in members {
                if first == "*" || *first == key {
                    json_spans(body, member, rest, out);
                }
            }
        }
        Some(b'[') => {
            let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(value.get()) else {
                return;
            };
            for (i, item) in items.into_iter().enumerate() {
                if first == "*" || *first == i.to_string() {
                    json_spans(body, item, rest, out);
                }
            }
        }
        _ => {}
    }
}

/// An object's members in order, repeats kept, values borrowed from the input.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Collect<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Collect<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Collect(std::marker::PhantomData))
    }
}

/// The spans of the values of form fields that `pointer` names in bracket notation.
fn form_spans(body: &[u8], pointer: &Pointer) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    for pair in body.split(|b| *b == b'&') {
        let start = at;
        at += pair.len() + 1;
        let Some(eq) = pair.iter().position(|b| *b == b'=') else {
            continue;
        };
        // The name alone, percent- and `+`-decoded (it holds no `=`).
        let Some((key, _)) = form_urlencoded::parse(&pair[..eq]).next() else {
            continue;
        };
        if pointer.matches(&bracket_path(&key)) {
            out.push(start + eq + 1..start + pair.len());
        }
    }
    out
}

/// `a[b][0]` as `["a", "b", "0"]` (`a[]` has an empty last segment, which no pointer
/// names); a name that is not in bracket notation is one segment.
fn bracket_path(key: &str) -> Vec<Cow<'_, str>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => return vec![Cow::Borrowed(key)],
    };
    let mut path = vec![Cow::Borrowed(head)];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return vec![Cow::Borrowed(key)];
        };
        path.push(Cow::Borrowed(&inner[..end]));
        rest = &inner[end + 1..];
    }
    if !rest.is_empty() {
        return vec![Cow::Borrowed(key)];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(headers: &[&str], fields: &[&str]) -> Redaction {
        Redaction {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            fields: fields.iter().map(|f| Pointer::parse(f).unwrap()).collect(),
            when: When::Stored,
        }
    }

    const JSON: &[u8] = b"content-type: application/json\r\nauthorization: Bearer s3cret\r\n";

    #[test]
    fn json_fields_are_replaced_in_place_and_the_rest_keeps_its_bytes() {
        let body =
            br#"{ "id": "evt_1",  "data": {"object": {"card": {"last4": "4242"}, "amount": 5}},
 "customer": {"email": "a@b.c"}, "items": [{"card": 1}, {"card": "x"}, {"other": 2}]}"#;
        let r = rule(
            &["Authorization"],
            &[
                "/data/object/card",
                "/customer/email",
                "/items/*/card",
                "/missing",
            ],
        )
        .apply(JSON, body)
        .unwrap();
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{ "id": "evt_1",  "data": {"object": {"card": "[redacted]", "amount": 5}},
 "customer": {"email": "[redacted]"}, "items": [{"card": "[redacted]"}, {"card": "[redacted]"}, {"other": 2}]}"#
        );
        assert_eq!(
            r.headers,
            b"content-type: application/json\r\nauthorization: [redacted]\r\n"
        );
        assert_eq!(
            r.fields,
            [
                "header:authorization",
                "/data/object/card",
                "/customer/email",
                "/items/*/card"
            ]
        );
    }

    #[test]
    fn escaped_keys_repeated_keys_and_nested_pointers() {
        let body = br#"{"a/b": {"~k": 1}, "dup": 1, "dup": 2, "x": {"y": {"z": 3}}}"#;
        let r = rule(&[], &["/a~1b/~0k", "/dup", "/x", "/x/y/z"])
            .apply(JSON, body)
            .unwrap();
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"a/b": {"~k": "[redacted]"}, "dup": "[redacted]", "dup": "[redacted]", "x": "[redacted]"}"#
        );
    }

    #[test]
    fn form_fields_use_bracket_names() {
        let form = b"content-type: application/x-www-form-urlencoded\r\n";
        let body =
            b"id=1&customer%5Bemail%5D=a%40b.c&card=4242&items[0][card]=1&items[1][card]=2&note=hi";
        let r = rule(&[], &["/customer/email", "/card", "/items/*/card"])
            .apply(form, body)
            .unwrap();
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "id=1&customer%5Bemail%5D=%5Bredacted%5D&card=%5Bredacted%5D&items[0][card]=%5Bredacted%5D&items[1][card]=%5Bredacted%5D&note=hi"
        );
        assert_eq!(r.fields, ["/customer/email", "/card", "/items/*/card"]);
    }

    #[test]
    fn nothing_matched_keeps_the_request_and_other_bodies_are_left_alone() {
        assert_eq!(
            rule(&["x-api-key"], &["/card"]).apply(JSON, br#"{"id":1}"#),
            None
        );
        let text = b"content-type: text/plain\r\nx-api-key: k\r\n";
        let r = rule(&["x-api-key"], &["/card"])
            .apply(text, b"card=1 not json")
            .unwrap();
        assert_eq!(r.body, b"card=1 not json");
        assert_eq!(r.fields, ["header:x-api-key"]);
    }

    #[test]
    fn a_byte_order_mark_a_redacted_content_type_and_unreadable_keys() {
        let r = rule(&[], &["/card"])
            .apply(JSON, "\u{feff}{\"card\": 1}".as_bytes())
            .unwrap();
        assert_eq!(r.body, "\u{feff}{\"card\": \"[redacted]\"}".as_bytes());
        let form = b"content-type: application/x-www-form-urlencoded\r\n";
        let r = rule(&["content-type"], &["/card"])
            .apply(form, b"card=1")
            .unwrap();
        assert_eq!(
            r.body, b"card=%5Bredacted%5D",
            "the form is still read as a form"
        );
        // A key serde cannot hold as text: the object the pointer goes through goes whole.
        let r = rule(&[], &["/a/card"]).apply(JSON, br#"{"a": {"\ud800": 1, "card": 2}, "b": 3}"#);
        if let Some(r) = r {
            assert_eq!(r.body, br#"{"a": "[redacted]", "b": 3}"#);
        }
    }

    #[test]
    fn a_waiting_rule_reads_back_and_dedup_keys_may_not_keep_what_it_takes() {
        use crate::ingest::dedup::DedupRule;
        let r = rule(&["x-api-key"], &["/data/*/card"]);
        let back = Redaction::from_stored(&r.to_stored()).unwrap();
        assert_eq!(
            (back.headers, back.fields),
            (r.headers.clone(), r.fields.clone())
        );
        assert!(
            r.kept_by(&DedupRule::parse("header:X-Api-Key").unwrap())
                .is_some()
        );
        assert!(
            r.kept_by(&DedupRule::parse("json:/data/object/card").unwrap())
                .is_some()
        );
        assert!(
            r.kept_by(&DedupRule::parse("json:/data/object/card/last4").unwrap())
                .is_some()
        );
        assert!(
            r.kept_by(&DedupRule::parse("json:/data/object/id").unwrap())
                .is_none()
        );
        assert!(r.kept_by(&DedupRule::Auto).is_none());
    }

    #[test]
    fn pointers_must_be_pointers() {
        assert!(Pointer::parse("/a/b").is_ok());
        assert!(
            Pointer::parse("a/b")
                .unwrap_err()
                .contains("start it with `/`")
        );
        assert!(
            Pointer::parse("/a//b")
                .unwrap_err()
                .contains("empty segment")
        );
        assert!(Pointer::parse("").is_err());
    }
}
