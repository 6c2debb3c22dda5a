//! Dedup keys (SPEC section 5): the source's configured rule, else the provider's own
//! id, else the SHA-256 of the raw body.

use http::HeaderName;
use sha2::{Digest, Sha256};

use super::request::Unverified;
use super::verify::Verifier;
use crate::expr::Expr;

/// How a source picks the dedup key of a request.
#[derive(Debug, Clone)]
pub enum DedupRule {
    /// The provider's id when the verifier knows one, else the body hash.
    Auto,
    /// `header:NAME`: the value of a header.
    Header(HeaderName),
    /// `json:/pointer`: a string or number at a JSON pointer in the body.
    JsonPointer(String),
    /// `jq:EXPR` or `js:MODULE`: the first output of a jq expression over the event
    /// (SPEC section 7's input object), or what a JavaScript module's default export
    /// returns for it; evaluated in the sandbox before [`DedupRule::key_for`].
    Expr(Expr),
}

impl DedupRule {
    /// Parses a source's `dedup_key` setting.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("header:") {
            return HeaderName::try_from(name.trim())
                .map(DedupRule::Header)
                .map_err(|_| {
                    format!("{name:?} is not a valid header name; write `header:X-Event-Id`")
                });
        }
        if let Some(pointer) = text.strip_prefix("json:") {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(format!(
                    "JSON pointer {pointer:?} must start with `/`; write `json:/data/id`"
                ));
            }
            return Ok(DedupRule::JsonPointer(pointer.to_owned()));
        }
        if let Some(expr) = text.strip_prefix("jq:") {
            return Expr::compile(expr)
                .map(DedupRule::Expr)
                .map_err(|e| format!("the jq expression does not compile: {e}"));
        }
        if let Some(module) = text.strip_prefix("js:") {
            return Expr::js(module, "dedup_key", crate::expr::Role::Value)
                .map(DedupRule::Expr)
                .map_err(|e| format!("the JavaScript module does not load: {e}"));
        }
        Err(format!(
            "unknown dedup key {text:?}; write `header:NAME`, `json:/json/pointer`, `jq:EXPR` or `js:MODULE`"
        ))
    }

    /// The dedup key of `req`. A configured rule that finds nothing falls back to the
    /// provider's id and then to the body hash, so every event still gets a key.
    /// `evaluated` is what a `jq:` or `js:` rule's expression gave (run by the caller, in the
    /// sandbox).
    pub fn key_for(
        &self,
        verifier: &Verifier,
        req: &Unverified,
        evaluated: Option<String>,
    ) -> String {
        let configured = match self {
            DedupRule::Auto => None,
            DedupRule::Expr(_) => evaluated,
            DedupRule::Header(name) => req
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            DedupRule::JsonPointer(pointer) => json_at(&req.body, pointer),
        };
        configured
            .filter(|k| !k.is_empty())
            .or_else(|| verifier.provider_dedup_key(req))
            .unwrap_or_else(|| body_hash(&req.body))
    }
}

fn json_at(body: &[u8], pointer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.pointer(pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `sha256:<hex>` of the raw body.
pub fn body_hash(body: &[u8]) -> String {
    // Into one buffer: `hex::encode` goes character by character through an iterator,
    // which showed in the ingest profile.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in Sha256::digest(body) {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_hash_is_sha256_in_lower_case_hex() {
        assert_eq!(
            body_hash(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            body_hash(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_rules_and_explains_mistakes() {
        assert!(matches!(
            DedupRule::parse("header:X-Request-Id").unwrap(),
            DedupRule::Header(h) if h == "x-request-id"
        ));
        assert!(matches!(
            DedupRule::parse("json:/data/id").unwrap(),
            DedupRule::JsonPointer(p) if p == "/data/id"
        ));
        assert!(matches!(
            DedupRule::parse("jq:.body.meta.id").unwrap(),
            DedupRule::Expr(e) if e.text() == ".body.meta.id"
        ));
        assert!(matches!(
            DedupRule::parse("js:export default (e) => e.body.meta.id").unwrap(),
            DedupRule::Expr(e) if e.language() == crate::expr::Language::Js
        ));
        let js = DedupRule::parse("js:export default (e) => e.body.").unwrap_err();
        assert!(
            js.starts_with("the JavaScript module does not load: SyntaxError: ")
                && js.contains("(at dedup_key:1:"),
            "{js}"
        );
        assert!(
            DedupRule::parse("jq:.body.[")
                .unwrap_err()
                .starts_with("the jq expression does not compile: ")
        );
        assert!(
            DedupRule::parse("json:data")
                .unwrap_err()
                .contains("must start with `/`")
        );
        assert!(
            DedupRule::parse("body")
                .unwrap_err()
                .contains("header:NAME")
        );
    }

    #[test]
    fn finds_values_in_json() {
        assert_eq!(json_at(br#"{"a":{"b":"x"}}"#, "/a/b").as_deref(), Some("x"));
        assert_eq!(json_at(br#"{"n":42}"#, "/n").as_deref(), Some("42"));
        assert_eq!(json_at(b"not json", "/n"), None);
    }
}
