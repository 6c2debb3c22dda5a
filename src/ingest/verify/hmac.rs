//! The generic `hmac` kind, for senders without a built-in verifier: one signature in
//! one header, a chosen hash and encoding, an optional prefix, and optionally a signed
//! timestamp with a template saying what exactly was signed.
//!
//! The `signed` template is parsed once at build time into [`Part`]s, so a typo in it is
//! a configuration error, not a rejection of every request.
//!
//! Most presets (`presets.rs`) are this verifier with fixed settings. A few of their
//! senders need what the `hmac` kind does not offer in the TOML (yet): a header holding
//! a list of signatures (`v1=...,v2=...`), a signed timestamp inside the JSON body
//! (Linear), a secret to decode before use (WooCommerce), and HubSpot's partly decoded
//! URL; those are the [`Settings`] fields after `tolerance`, except `public_url` and
//! `timestamp_format`, which the `hmac` kind takes too (with `{method}`, for senders
//! like HubSpot and Twitch).

use std::time::Duration;

use base64::Engine as _;
use http::HeaderName;

use super::config::{
    BuildError, HmacAlgorithm, OneOrMany, SignatureEncoding, TimestampFormat,
    check_tolerance_setting, resolve_secrets,
};
use super::mac::{
    BASE64_LENIENT, check_tolerance, expected_macs, matches_any, parse_unix_secs, required_header,
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
    #[error(
        "unknown placeholder `{{{name}}}`; use {{body}}, {{timestamp}}, {{method}}, {{url}} (with `public_url`) or {{header:Name}}"
    )]
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
    /// The URL the sender posted to (only with a `public_url`).
    Url,
    /// The request method, e.g. `POST` (HubSpot signs it).
    Method,
    /// The body's zlib CRC-32 as an unsigned decimal number (PayPal signs it). Only the
    /// `certificate` kind accepts it.
    BodyCrc32,
}

/// The `hmac` settings, borrowed from [`super::VerifyConfig::Hmac`] or a preset.
#[derive(Clone, Copy)]
pub(super) struct Settings<'c> {
    pub secret: &'c OneOrMany<SecretRef>,
    pub header: &'c str,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    pub prefix: Option<&'c str>,
    /// The signature may also come without `prefix` (Mollie's SDK strips it when there).
    pub prefix_optional: bool,
    pub timestamp_header: Option<&'c str>,
    pub signed: Option<&'c str>,
    pub tolerance: Duration,
    /// The header holds a list of signatures split by this character (CircleCI's
    /// `v1=...,v2=...`): every entry starting with `prefix` is tried, others are skipped.
    pub list_separator: Option<char>,
    /// A second header whose signature is also tried (Box sends one made with its
    /// primary key and one with its secondary key; either passes).
    pub secondary_header: Option<&'c str>,
    /// A JSON pointer to a signing time in Unix milliseconds inside the (signed) body,
    /// checked against `tolerance` (Linear's `/webhookTimestamp`).
    pub body_timestamp_ms: Option<&'c str>,
    pub key: KeyDecoding,
    /// The source's URL as the sender sees it (Square signs it): `{url}` in the
    /// template, followed by the request's query string when it has one.
    pub public_url: Option<&'c str>,
    /// How the timestamp header writes the signing time.
    pub timestamp_format: TimestampFormat,
    /// How `{url}` is written before it is signed.
    pub url_form: UrlForm,
}

/// How `{url}` is written in the signed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlForm {
    /// As the sender posts to it.
    AsSent,
    /// With the percent-escapes of HubSpot's v3 table decoded (`%3A` to `:`, `%2F` to
    /// `/`, ...; "Validating requests", v3), as HubSpot signs it.
    HubSpotDecoded,
}

/// The escapes HubSpot's v3 signature decodes in the request URI, and nothing else.
const HUBSPOT_DECODED: [(&str, char); 12] = [
    ("3A", ':'),
    ("2F", '/'),
    ("3F", '?'),
    ("40", '@'),
    ("21", '!'),
    ("24", '$'),
    ("27", '\''),
    ("28", '('),
    ("29", ')'),
    ("2A", '*'),
    ("2C", ','),
    ("3B", ';'),
];

impl UrlForm {
    pub(super) fn apply(self, url: String) -> String {
        match self {
            UrlForm::AsSent => url,
            UrlForm::HubSpotDecoded => {
                let mut out = String::with_capacity(url.len());
                let mut rest = url.as_str();
                while let Some(i) = rest.find('%') {
                    out.push_str(&rest[..i]);
                    let escape = rest.get(i + 1..i + 3).and_then(|hex| {
                        HUBSPOT_DECODED
                            .iter()
                            .find(|(code, _)| code.eq_ignore_ascii_case(hex))
                    });
                    match escape {
                        Some((_, ch)) => {
                            out.push(*ch);
                            rest = &rest[i + 3..];
                        }
                        None => {
                            out.push('%');
                            rest = &rest[i + 1..];
                        }
                    }
                }
                out.push_str(rest);
                out
            }
        }
    }
}

/// Parses a timestamp header's value into Unix seconds, in the configured format.
pub(super) fn parse_timestamp(format: TimestampFormat, text: &str) -> Option<i64> {
    match format {
        TimestampFormat::Unix => parse_unix_secs(text),
        TimestampFormat::UnixMs => parse_unix_secs(text).map(|ms| ms.div_euclid(1000)),
        TimestampFormat::Rfc3339 => {
            crate::clock::parse_rfc3339_strict_ms(text).map(|ms| ms.div_euclid(1000))
        }
    }
}

/// Writes Unix seconds as a timestamp header's value in `format` (for signers). `None`
/// for a time RFC 3339 cannot write (after the year 9999).
pub(super) fn format_timestamp(format: TimestampFormat, secs: u64) -> Option<String> {
    match format {
        TimestampFormat::Unix => Some(secs.to_string()),
        TimestampFormat::UnixMs => Some(secs.saturating_mul(1000).to_string()),
        TimestampFormat::Rfc3339 => {
            use std::fmt::Write as _;
            let at = std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs))?;
            let mut text = String::new();
            // humantime refuses (with a formatting error) what has more than 4 year digits.
            write!(text, "{}", humantime::format_rfc3339_seconds(at)).ok()?;
            Some(text)
        }
    }
}

impl<'c> Settings<'c> {
    /// The settings of a plain `hmac` section: no preset-only extras.
    pub(super) fn plain(secret: &'c OneOrMany<SecretRef>, header: &'c str) -> Self {
        Self {
            secret,
            header,
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: None,
            prefix_optional: false,
            timestamp_header: None,
            signed: None,
            tolerance: Duration::from_secs(300),
            list_separator: None,
            secondary_header: None,
            body_timestamp_ms: None,
            key: KeyDecoding::Raw,
            public_url: None,
            timestamp_format: TimestampFormat::Unix,
            url_form: UrlForm::AsSent,
        }
    }
}

/// How the configured secret becomes the HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyDecoding {
    /// The secret's bytes, as they are.
    Raw,
    /// WordPress's `wp_specialchars_decode($secret, ENT_QUOTES)`, which WooCommerce
    /// applies to the stored secret before signing: `&amp;` in a secret copied from its
    /// database or API stands for `&`.
    WordPressEntities,
    /// The secret is base64 of the key (Airtable's `macSecretBase64`).
    Base64,
    /// The secret in Unicode normalization form KD (EasyPost's SDKs normalize it before
    /// keying, so `é` keys as `e` and a combining accent).
    Nfkd,
}

impl KeyDecoding {
    /// The key for `secret`; `None` when it cannot be decoded as this says.
    pub(super) fn apply(self, secret: Secret) -> Option<Secret> {
        match self {
            KeyDecoding::Raw => Some(secret),
            KeyDecoding::WordPressEntities => {
                Some(Secret::from_bytes(wp_specialchars_decode(secret.expose())))
            }
            KeyDecoding::Base64 => BASE64_LENIENT
                .decode(secret.expose().trim_ascii())
                .ok()
                .filter(|key| !key.is_empty())
                .map(Secret::from_bytes),
            KeyDecoding::Nfkd => {
                use unicode_normalization::UnicodeNormalization as _;
                let text = std::str::from_utf8(secret.expose()).ok()?;
                Some(Secret::from_bytes(text.nfkd().collect::<String>()))
            }
        }
    }

    /// What the secret should have been, for the build error.
    pub(super) fn expected(self) -> &'static str {
        match self {
            KeyDecoding::Base64 => "base64 (the `macSecretBase64` shown when the webhook was made)",
            _ => "UTF-8 text",
        }
    }
}

/// `wp_specialchars_decode($text, ENT_QUOTES)` (WordPress `wp-includes/formatting.php`):
/// the named entities `&amp; &lt; &gt; &quot;` and the numeric forms of `& < > " '`
/// (decimal with any leading zeros, or hex with `x` or `X`), in one left-to-right pass,
/// so `&amp;lt;` becomes `&lt;`, not `<`. Nothing else is decoded.
pub(super) fn wp_specialchars_decode(text: &[u8]) -> Vec<u8> {
    const NAMED: [(&[u8], u8); 4] = [
        (b"amp;", b'&'),
        (b"lt;", b'<'),
        (b"gt;", b'>'),
        (b"quot;", b'"'),
    ];
    const DECIMAL: [(&[u8], u8); 5] = [
        (b"39;", b'\''),
        (b"34;", b'"'),
        (b"60;", b'<'),
        (b"62;", b'>'),
        (b"38;", b'&'),
    ];
    const HEX: [(&[u8], u8); 3] = [(b"27;", b'\''), (b"22;", b'"'), (b"26;", b'&')];
    let entity = |rest: &[u8]| -> Option<(u8, usize)> {
        if let Some((name, ch)) = NAMED.iter().find(|(name, _)| rest.starts_with(name)) {
            return Some((*ch, name.len()));
        }
        let digits = rest.strip_prefix(b"#")?;
        let (table, after_x): (&[(&[u8], u8)], &[u8]) = match digits.first() {
            Some(b'x' | b'X') => (&HEX, &digits[1..]),
            _ => (&DECIMAL, digits),
        };
        let zeros = after_x.iter().take_while(|b| **b == b'0').count();
        let tail = &after_x[zeros..];
        table
            .iter()
            .find(|(code, _)| tail.starts_with(code))
            .map(|(code, ch)| (*ch, rest.len() - tail.len() + code.len()))
    };
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'&'
            && let Some((ch, used)) = entity(&text[i + 1..])
        {
            out.push(ch);
            i += 1 + used;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct GenericHmac {
    secrets: Vec<Secret>,
    header: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: Option<String>,
    prefix_optional: bool,
    timestamp_header: Option<String>,
    template: Vec<Part>,
    tolerance: Duration,
    list_separator: Option<char>,
    secondary_header: Option<String>,
    body_timestamp_ms: Option<String>,
    public_url: Option<String>,
    timestamp_format: TimestampFormat,
    url_form: UrlForm,
}

impl GenericHmac {
    pub(super) fn build(s: Settings<'_>) -> Result<Self, BuildError> {
        check_header_name("header", s.header)?;
        if let Some(name) = s.secondary_header {
            check_header_name("secondary_header", name)?;
        }
        if let Some(name) = s.timestamp_header {
            check_header_name("timestamp_header", name)?;
            check_tolerance_setting(s.tolerance)?;
        }
        if s.body_timestamp_ms.is_some() {
            check_tolerance_setting(s.tolerance)?;
        }
        let has_timestamp = s.timestamp_header.is_some();
        let default = if has_timestamp {
            "{timestamp}.{body}"
        } else {
            "{body}"
        };
        let template = parse_template_with(
            s.signed.unwrap_or(default),
            has_timestamp,
            s.public_url.is_some(),
        )?;
        if template.contains(&Part::BodyCrc32) {
            return Err(BuildError::Needs(
                "`signed` has {body_crc32}, which only the `certificate` kind signs (a CRC is no MAC); use {body}",
            ));
        }
        if s.public_url.is_some() && !template.contains(&Part::Url) {
            return Err(BuildError::Needs(
                "`public_url` is set but `signed` has no {url}, so it would not be signed; add {url} or remove `public_url`",
            ));
        }
        let secrets = resolve_secrets("secret", s.secret)?
            .into_iter()
            .map(|(at, secret)| {
                s.key.apply(secret).ok_or(BuildError::Key {
                    at,
                    expected: s.key.expected(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            secrets,
            header: s.header.to_owned(),
            algorithm: s.algorithm,
            encoding: s.encoding,
            prefix: s.prefix.filter(|p| !p.is_empty()).map(str::to_owned),
            prefix_optional: s.prefix_optional,
            timestamp_header: s.timestamp_header.map(str::to_owned),
            template,
            tolerance: s.tolerance,
            list_separator: s.list_separator,
            secondary_header: s.secondary_header.map(str::to_owned),
            body_timestamp_ms: s.body_timestamp_ms.map(str::to_owned),
            public_url: s.public_url.map(str::to_owned),
            timestamp_format: s.timestamp_format,
            url_form: s.url_form,
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let candidates = self.signatures(req)?;
        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let text = required_header(req, name)?;
                let secs = parse_timestamp(self.timestamp_format, text)
                    .ok_or_else(|| Rejection::malformed(name, self.timestamp_format.expected()))?;
                Some((text, secs))
            }
            None => None,
        };
        let url = self.public_url.as_ref().map(|base| {
            let url = match &req.query {
                Some(query) => format!("{base}?{query}"),
                None => base.clone(),
            };
            self.url_form.apply(url)
        });
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
                // Build guarantees `{url}` only appears with a public URL.
                Part::Url => url.as_deref().unwrap_or_default().as_bytes(),
                Part::Method => req.method.as_str().as_bytes(),
                // Build refuses it for HMAC.
                Part::BodyCrc32 => &[],
            });
        }
        let expected = expected_macs(self.algorithm, &self.secrets, &parts);
        // No early exit: every candidate is compared, as `matches_any` does per secret.
        let matched = candidates
            .iter()
            .fold(false, |found, sig| matches_any(&expected, sig) | found);
        if !matched {
            return Err(Rejection::NoSignatureMatched);
        }
        if let Some(secs) = timestamp.map(|(_, secs)| secs) {
            check_tolerance(req.received_at_secs(), secs, self.tolerance)?;
        }
        if let Some(pointer) = &self.body_timestamp_ms {
            let ms = body_millis(&req.body, pointer)?;
            check_tolerance(req.received_at_secs(), ms.div_euclid(1000), self.tolerance)?;
        }
        Ok(())
    }

    /// The decoded signature(s) from the configured header: one, or with a list
    /// separator every entry carrying the prefix (entries that do not decode are
    /// skipped, as another may be valid).
    fn signatures(&self, req: &Unverified) -> Result<Vec<Vec<u8>>, Rejection> {
        let mut found = self.signatures_in(req, &self.header)?;
        // The second signature is a spare: one that does not read is skipped, as the
        // first may be valid.
        if let Some(name) = &self.secondary_header
            && let Ok(more) = self.signatures_in(req, name)
        {
            found.extend(more);
        }
        Ok(found)
    }

    fn signatures_in(&self, req: &Unverified, name: &str) -> Result<Vec<Vec<u8>>, Rejection> {
        let value = required_header(req, name)?.trim();
        let Some(separator) = self.list_separator else {
            let sig = strip_prefix(value, self.prefix.as_deref())
                .or(self.prefix_optional.then_some(value))
                .ok_or_else(|| {
                    Rejection::malformed(name, "does not start with the configured prefix")
                })?;
            return self.decode(name, sig).map(|sig| vec![sig]);
        };
        let entries: Vec<&str> = value
            .split(separator)
            .filter_map(|entry| strip_prefix(entry.trim(), self.prefix.as_deref()))
            .collect();
        if entries.is_empty() {
            return Err(Rejection::malformed(
                name,
                "has no entry with the expected prefix",
            ));
        }
        Ok(entries
            .into_iter()
            .filter_map(|entry| self.decode(name, entry).ok())
            .collect())
    }

    fn decode(&self, name: &str, value: &str) -> Result<Vec<u8>, Rejection> {
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

/// `value` without `prefix` (matched regardless of case); `None` when it lacks it.
/// Never panics, whatever the text (see the property test in `presets/tests.rs`).
pub(super) fn strip_prefix<'v>(value: &'v str, prefix: Option<&str>) -> Option<&'v str> {
    let Some(prefix) = prefix else {
        return Some(value);
    };
    value
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| value.get(prefix.len()..))
}

/// A Unix time in milliseconds at `pointer` in a JSON body (a number, or digits in a
/// string).
fn body_millis(body: &[u8], pointer: &str) -> Result<i64, Rejection> {
    let field = pointer.trim_start_matches('/');
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::body_field(field, "the body is not JSON"))?;
    let found = value
        .pointer(pointer)
        .ok_or_else(|| Rejection::body_field(field, "is missing"))?;
    let millis = match found {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => parse_unix_secs(s),
        _ => None,
    };
    millis.ok_or_else(|| Rejection::body_field(field, "is not a whole number of milliseconds"))
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
/// `{header:Name}`, and `{{`/`}}` for literal braces.
#[cfg(test)]
pub(super) fn parse_template(
    template: &str,
    has_timestamp: bool,
) -> Result<Vec<Part>, TemplateError> {
    parse_template_with(template, has_timestamp, false)
}

/// Parses a `signed` template: `{body}`, `{timestamp}` (only with a timestamp header),
/// `{header:Name}`, `{url}` (only with a public URL, which only presets set), and
/// `{{`/`}}` for literal braces. Signers share it (`sign_as`).
pub(super) fn parse_template_with(
    template: &str,
    has_timestamp: bool,
    has_url: bool,
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
            parts.push(placeholder(&after[..end], has_timestamp, has_url)?);
            end + 2
        };
        rest = &rest[i + consumed..];
        offset = at + consumed;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    if !parts.contains(&Part::Body) && !parts.contains(&Part::BodyCrc32) {
        return Err(TemplateError::NoBody);
    }
    if has_timestamp && !parts.contains(&Part::Timestamp) {
        return Err(TemplateError::NoTimestamp);
    }
    Ok(parts)
}

fn placeholder(name: &str, has_timestamp: bool, has_url: bool) -> Result<Part, TemplateError> {
    match name {
        "body" => Ok(Part::Body),
        "body_crc32" => Ok(Part::BodyCrc32),
        "method" => Ok(Part::Method),
        "url" if has_url => Ok(Part::Url),
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
