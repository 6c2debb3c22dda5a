//! Twilio request signatures (the `twilio` preset), and Mandrill's (`mandrill`), which
//! are the same scheme under `X-Mandrill-Signature`, keyed with the webhook's key.
//!
//! `X-Twilio-Signature` is base64 HMAC-SHA1, keyed with the account's Auth Token, of the
//! URL Twilio posted to (exactly as configured there, query string included) followed,
//! for a form POST, by every parameter as `name` + `value`, names sorted, values of a
//! repeated name sorted, with no separators. For a JSON body Twilio instead adds
//! `bodySHA256=<hex SHA-256 of the body>` to the URL's query and signs the URL alone;
//! the hash must then match the body. As Twilio's own validators do, the URL is tried
//! both with and without the scheme's default port (`:443`, `:80`), since Twilio is not
//! consistent about it. No timestamp is signed.
//!
//! The URL is the source's `public_url` (forebay may sit behind a proxy that changes
//! it) plus the query string of the request as received. Not handled yet: the
//! SHA-256 variant sent with `X-Twilio-Webhooks-Signature-Settings`. Mandrill signs the
//! URL exactly as entered, so its layout tries no port variants and knows no
//! `bodySHA256`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::config::{BuildError, HmacAlgorithm, OneOrMany, resolve_all};
use super::mac::{BASE64_LENIENT, ct_eq, hmac, matches_any, required_header};
use super::rejection::Rejection;
use crate::config::secret::{Secret, SecretRef};
use crate::ingest::request::Unverified;

/// One sender of the URL-and-form-parameters signature.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FormLayout {
    pub header: &'static str,
    /// Twilio's habits: the URL tried with and without the default port, and
    /// `bodySHA256` for JSON bodies.
    pub twilio_quirks: bool,
}

pub(super) const TWILIO: FormLayout = FormLayout {
    header: "X-Twilio-Signature",
    twilio_quirks: true,
};

pub(super) const MANDRILL: FormLayout = FormLayout {
    header: "X-Mandrill-Signature",
    twilio_quirks: false,
};

#[derive(Debug, Clone)]
pub struct Twilio {
    layout: &'static FormLayout,
    secrets: Vec<Secret>,
    public_url: String,
}

impl Twilio {
    pub(super) fn build(
        layout: &'static FormLayout,
        secret: &OneOrMany<SecretRef>,
        public_url: &str,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            layout,
            secrets: resolve_all("secret", secret)?,
            public_url: public_url.to_owned(),
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let name = self.layout.header;
        let header = required_header(req, name)?;
        let sig = BASE64_LENIENT
            .decode(header.trim())
            .map_err(|_| Rejection::malformed(name, "is not valid base64"))?;
        let url = match &req.query {
            Some(query) => format!("{}?{query}", self.public_url),
            None => self.public_url.clone(),
        };
        let body_hash = req
            .query
            .as_deref()
            .filter(|_| self.layout.twilio_quirks)
            .and_then(body_sha256_param);
        let params = match &body_hash {
            Some(expected) => {
                let actual = hex::encode(Sha256::digest(&req.body));
                // Compared as bytes of the lowercase hex Twilio sends.
                if !ct_eq(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
                    return Err(Rejection::body_field(
                        "body",
                        "does not match the bodySHA256 in the URL",
                    ));
                }
                String::new()
            }
            None => sorted_params(&req.body),
        };
        let params = params.as_bytes();
        let urls = if self.layout.twilio_quirks {
            port_variants(&url)
        } else {
            vec![url]
        };
        let expected: Vec<Vec<u8>> = urls
            .iter()
            .flat_map(|candidate| {
                self.secrets.iter().filter_map(move |s| {
                    hmac(
                        HmacAlgorithm::Sha1,
                        s.expose(),
                        &[candidate.as_bytes(), params],
                    )
                })
            })
            .collect();
        if matches_any(&expected, &sig) {
            Ok(())
        } else {
            Err(Rejection::NoSignatureMatched)
        }
    }
}

/// The signature of `body` posted (as a form) to `url`, as Twilio computes it: for
/// `sign_as`.
pub(super) fn sign(key: &[u8], url: &str, body: &[u8]) -> Option<Vec<u8>> {
    let params = sorted_params(body);
    hmac(
        HmacAlgorithm::Sha1,
        key,
        &[url.as_bytes(), params.as_bytes()],
    )
}

/// `name` + `value` of every form parameter: names sorted and each once, then each of
/// its distinct values sorted (twilio-python `RequestValidator.compute_signature`).
fn sorted_params(body: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs.into_iter().map(|(k, v)| k + &v).collect()
}

/// The `bodySHA256` value of a raw query string, if there is one.
fn body_sha256_param(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
}

/// `url` without and with its scheme's default port (`https` 443, `http` 80).
/// Never panics, whatever the text (see the property test in `presets/tests.rs`).
pub(super) fn port_variants(url: &str) -> Vec<String> {
    let (scheme, port) = if let Some(rest) = url.strip_prefix("https://") {
        (("https://", rest), ":443")
    } else if let Some(rest) = url.strip_prefix("http://") {
        (("http://", rest), ":80")
    } else {
        return vec![url.to_owned()];
    };
    let (prefix, rest) = scheme;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let bare = authority.strip_suffix(port).unwrap_or(authority);
    // A host with another explicit port is used as it is.
    let has_other_port = bare.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !bare.ends_with(']')
    });
    if has_other_port {
        return vec![url.to_owned()];
    }
    vec![
        format!("{prefix}{bare}{tail}"),
        format!("{prefix}{bare}{port}{tail}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::port_variants;

    #[test]
    fn default_ports_are_tried_both_ways() {
        assert_eq!(
            port_variants("https://mycompany.com/myapp.php?foo=1"),
            [
                "https://mycompany.com/myapp.php?foo=1",
                "https://mycompany.com:443/myapp.php?foo=1"
            ]
        );
        assert_eq!(port_variants("http://h:80"), ["http://h", "http://h:80"]);
        assert_eq!(port_variants("http://h:1234/x"), ["http://h:1234/x"]);
        assert_eq!(port_variants("ftp://h/x"), ["ftp://h/x"]);
    }
}
