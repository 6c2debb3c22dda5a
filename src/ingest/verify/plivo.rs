//! Plivo's V3 request signatures (the `plivo` preset).
//!
//! `X-Plivo-Signature-V3` is base64 HMAC-SHA256, keyed with the account's Auth Token,
//! of `{canonical URL}.{X-Plivo-Signature-V3-Nonce}`. The canonical URL is the URL Plivo
//! called without its query string, then:
//! - for a GET, `?` and every parameter (the query's and the callback's) as `name=value`
//!   joined with `&`, names sorted;
//! - for a POST, `?`, the query's parameters as `name=value` joined with `&`, a `.` when
//!   there were some, and the form parameters as `namevalue` with no separators, names
//!   sorted (values of a repeated name sorted too); nothing after the URL when there
//!   are no parameters at all.
//!
//! Values are the decoded ones. The header may carry several signatures separated by
//! commas (any one passes). Nothing signed says when: dedup on the body is what refuses
//! a replay. The URL is the source's `public_url` (as entered at Plivo) plus the query
//! string of the request as received, as for Twilio.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use base64::Engine as _;
use http::Method;

use super::config::{BuildError, HmacAlgorithm, OneOrMany, resolve_all};
use super::mac::{BASE64_LENIENT, expected_macs, hmac_sha256, matches_any, required_header};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

pub(super) const SIGNATURE: &str = "X-Plivo-Signature-V3";
pub(super) const NONCE: &str = "X-Plivo-Signature-V3-Nonce";

#[derive(Debug, Clone)]
pub struct Plivo {
    secrets: Vec<Secret>,
    public_url: String,
}

impl Plivo {
    pub(super) fn build(
        secret: &OneOrMany<SecretRef>,
        public_url: &str,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            secrets: resolve_all("secret", secret)?,
            public_url: public_url.to_owned(),
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let header = required_header(req, SIGNATURE)?;
        let nonce = required_header(req, NONCE)?;
        let signatures: Vec<Vec<u8>> = header
            .split(',')
            .filter_map(|sig| BASE64_LENIENT.decode(sig.trim()).ok())
            .filter(|sig| !sig.is_empty())
            .collect();
        if signatures.is_empty() {
            return Err(Rejection::malformed(SIGNATURE, "has no base64 signature"));
        }
        let form = if req.method == Method::GET {
            Vec::new()
        } else {
            pairs(&req.body)
        };
        let query = pairs(req.query.as_deref().unwrap_or_default().as_bytes());
        let signed = canonical(&self.public_url, &req.method, &query, &form, nonce);
        let expected = expected_macs(HmacAlgorithm::Sha256, &self.secrets, &[signed.as_bytes()]);
        let matched = signatures
            .iter()
            .fold(false, |found, sig| matches_any(&expected, sig) | found);
        if matched {
            Ok(())
        } else {
            Err(Rejection::NoSignatureMatched)
        }
    }
}

/// Decoded `name=value` pairs of a query string or form body.
fn pairs(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// Names sorted, and the values of each name sorted.
fn sorted(pairs: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in pairs {
        map.entry(name).or_default().push(value);
    }
    for values in map.values_mut() {
        values.sort_unstable();
    }
    map
}

fn joined_with_equals<'a>(map: &BTreeMap<&'a str, Vec<&'a str>>) -> String {
    map.iter()
        .flat_map(|(name, values)| values.iter().map(move |value| format!("{name}={value}")))
        .collect::<Vec<_>>()
        .join("&")
}

/// What Plivo signs for a request to `url` (without a query string).
pub(super) fn canonical(
    url: &str,
    method: &Method,
    query: &[(String, String)],
    form: &[(String, String)],
    nonce: &str,
) -> String {
    let mut out = url.to_owned();
    if method == Method::GET {
        let all: Vec<(String, String)> = query.iter().chain(form).cloned().collect();
        if !all.is_empty() {
            out.push('?');
            out.push_str(&joined_with_equals(&sorted(&all)));
        }
    } else {
        if !query.is_empty() || !form.is_empty() {
            out.push('?');
        }
        if !query.is_empty() {
            out.push_str(&joined_with_equals(&sorted(query)));
            if !form.is_empty() {
                out.push('.');
            }
        }
        for (name, values) in sorted(form) {
            for value in values {
                out.push_str(name);
                out.push_str(value);
            }
        }
    }
    out.push('.');
    out.push_str(nonce);
    out
}

/// The `X-Plivo-Signature-V3` of a form POST of `body` to `url` with `nonce`, for
/// `forebay send` and tests.
pub(super) fn sign(key: &[u8], url: &str, body: &[u8], nonce: &str) -> Option<String> {
    let signed = canonical(url, &Method::POST, &[], &pairs(body), nonce);
    hmac_sha256(key, &[signed.as_bytes()])
        .map(|sig| base64::engine::general_purpose::STANDARD.encode(sig))
}
