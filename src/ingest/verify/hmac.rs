//! The generic `hmac` kind, for senders without a built-in verifier: one signature in
//! one header, a chosen hash and encoding, an optional prefix, and optionally a signed
//! timestamp with a template saying what exactly was signed.
//!
//! The `signed` template is parsed once at build time into [`Part`]s, so a typo in it is
//! a configuration error, not a rejection of every request.

use std::time::Duration;

use base64::Engine as _;
use http::HeaderName;

use super::config::{
    BuildError, HmacAlgorithm, OneOrMany, SignatureEncoding, check_tolerance_setting,
    resolve_secrets,
};
use super::mac::{
    BASE64_LENIENT, check_tolerance, hmac, matches_any, parse_unix_secs, required_header,
};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

/// A mistake in the `signed` template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the `{{` at byte {at} is never closed; write `{{{{` for a literal brace")]
    Unclosed { at: usize },
    #[error("the `}}` at byte {at} has no opening `{{`; write `}}}}` for a literal brace")]
    UnmatchedClose { at: usize },
    #[error("unknown placeholder `{{{name}}}`; use {{body}}, {{timestamp}} or {{header:Name}}")]
    UnknownPlaceholder { name: String },
    #[error("`{{header:{name}}}` does not name a valid HTTP header")]
    BadHeaderName { name: String },
    #[error("uses {{timestamp}} but `timestamp_header` is not set; set it or drop the placeholder")]
    TimestampWithoutHeader,
    #[error("does not contain {{body}}, so the body would not be signed; add it")]
    NoBody,
    #[error(
        "does not contain {{timestamp}}, so the timestamp would not be signed and could be replaced; add it or remove `timestamp_header`"
    )]
    NoTimestamp,
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Literal(String),
    Body,
    Timestamp,
    Header(String),
}

/// The `hmac` settings, borrowed from [`super::VerifyConfig::Hmac`].
pub(super) struct Settings<'c> {
    pub secret: &'c OneOrMany<SecretRef>,
    pub header: &'c str,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    pub prefix: Option<&'c str>,
    pub timestamp_header: Option<&'c str>,
    pub signed: Option<&'c str>,
    pub tolerance: Duration,
}

#[derive(Debug, Clone)]
pub struct GenericHmac {
    secrets: Vec<Secret>,
    header: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: Option<String>,
    timestamp_header: Option<String>,
    template: Vec<Part>,
    tolerance: Duration,
}

impl GenericHmac {
    pub(super) fn build(s: Settings<'_>) -> Result<Self, BuildError> {
        check_header_name("header", s.header)?;
        if let Some(name) = s.timestamp_header {
            check_header_name("timestamp_header", name)?;
            check_tolerance_setting(s.tolerance)?;
        }
        let has_timestamp = s.timestamp_header.is_some();
        let default = if has_timestamp {
            "{timestamp}.{body}"
        } else {
            "{body}"
        };
        let template = parse_template(s.signed.unwrap_or(default), has_timestamp)?;
        let secrets = resolve_secrets("secret", s.secret)?
            .into_iter()
            .map(|(_, secret)| secret)
            .collect();
        Ok(Self {
            secrets,
            header: s.header.to_owned(),
            algorithm: s.algorithm,
            encoding: s.encoding,
            prefix: s.prefix.filter(|p| !p.is_empty()).map(str::to_owned),
            timestamp_header: s.timestamp_header.map(str::to_owned),
            template,
            tolerance: s.tolerance,
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let sig = self.signature(req)?;
        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let text = required_header(req, name)?;
                let secs = parse_unix_secs(text).ok_or_else(|| {
                    Rejection::malformed(name, "is not a whole number of seconds")
                })?;
                Some((text, secs))
            }
            None => None,
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.template.len());
        for part in &self.template {
            parts.push(match part {
                Part::Literal(text) => text.as_bytes(),
                Part::Body => &req.body,
                // Build guarantees `{timestamp}` only appears with a timestamp header.
                Part::Timestamp => timestamp
                    .map(|(text, _)| text.as_bytes())
                    .unwrap_or_default(),
                Part::Header(name) => required_header(req, name)?.as_bytes(),
            });
        }
        let expected: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .filter_map(|s| hmac(self.algorithm, s.expose(), &parts))
            .collect();
        if !matches_any(&expected, &sig) {
            return Err(Rejection::NoSignatureMatched);
        }
        match timestamp {
            Some((_, secs)) => check_tolerance(req.received_at_secs(), secs, self.tolerance),
            None => Ok(()),
        }
    }

    /// The decoded signature from the configured header.
    fn signature(&self, req: &Unverified) -> Result<Vec<u8>, Rejection> {
        let name = self.header.as_str();
        let mut value = required_header(req, name)?.trim();
        if let Some(prefix) = &self.prefix {
            value = value
                .get(..prefix.len())
                .filter(|head| head.eq_ignore_ascii_case(prefix))
                .and_then(|_| value.get(prefix.len()..))
                .ok_or_else(|| {
                    Rejection::malformed(name, "does not start with the configured prefix")
                })?;
        }
        let decoded = match self.encoding {
            SignatureEncoding::Hex => hex::decode(value)
                .map_err(|_| Rejection::malformed(name, "signature is not valid hex")),
            SignatureEncoding::Base64 => BASE64_LENIENT
                .decode(value)
                .map_err(|_| Rejection::malformed(name, "signature is not valid base64")),
        }?;
        if decoded.is_empty() {
            return Err(Rejection::malformed(name, "signature is empty"));
        }
        Ok(decoded)
    }
}

fn check_header_name(field: &'static str, name: &str) -> Result<(), BuildError> {
    HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| BuildError::HeaderName {
            field,
            name: name.to_owned(),
        })
}

/// Parses a `signed` template: `{body}`, `{timestamp}` (only with a timestamp header),
/// `{header:Name}`, and `{{`/`}}` for literal braces. Signers share it (`sign_as`).
pub(super) fn parse_template(
    template: &str,
    has_timestamp: bool,
) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let at = offset + i;
        let after = &rest[i + 1..];
        let consumed = if rest[i..].starts_with("{{") {
            literal.push('{');
            2
        } else if rest[i..].starts_with("}}") {
            literal.push('}');
            2
        } else if rest[i..].starts_with('}') {
            return Err(TemplateError::UnmatchedClose { at });
        } else {
            let end = after.find('}').ok_or(TemplateError::Unclosed { at })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(placeholder(&after[..end], has_timestamp)?);
            end + 2
        };
        rest = &rest[i + consumed..];
        offset = at + consumed;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    if !parts.contains(&Part::Body) {
        return Err(TemplateError::NoBody);
    }
    if has_timestamp && !parts.contains(&Part::Timestamp) {
        return Err(TemplateError::NoTimestamp);
    }
    Ok(parts)
}

fn placeholder(name: &str, has_timestamp: bool) -> Result<Part, TemplateError> {
    match name {
        "body" => Ok(Part::Body),
        "timestamp" if has_timestamp => Ok(Part::Timestamp),
        "timestamp" => Err(TemplateError::TimestampWithoutHeader),
        _ => match name.strip_prefix("header:") {
            Some(header) if HeaderName::from_bytes(header.as_bytes()).is_ok() => {
                Ok(Part::Header(header.to_owned()))
            }
            Some(header) => Err(TemplateError::BadHeaderName {
                name: header.to_owned(),
            }),
            None => Err(TemplateError::UnknownPlaceholder {
                name: name.to_owned(),
            }),
        },
    }
}

#[cfg(test)]
mod tests;
