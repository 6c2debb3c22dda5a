//! A shared secret sent as it is in a header: GitLab's `X-Gitlab-Token`, Okta's
//! configured authorization header. Not a signature (the body is not covered), so only
//! as good as TLS; compared as SHA-256 digests in constant time, as `bearer.rs` does.

use std::fmt;

use super::config::{BuildError, OneOrMany, resolve_secrets};
use super::mac::{matches_any, required_header};
use super::rejection::Rejection;
use crate::config::secret::SecretRef;
use crate::ingest::request::Unverified;

#[derive(Clone)]
pub struct HeaderToken {
    header: String,
    /// SHA-256 of each accepted value.
    digests: Vec<Vec<u8>>,
}

impl fmt::Debug for HeaderToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderToken")
            .field("header", &self.header)
            .field("tokens", &self.digests.len())
            .finish()
    }
}

impl HeaderToken {
    pub(super) fn build(header: &str, secret: &OneOrMany<SecretRef>) -> Result<Self, BuildError> {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(BuildError::HeaderName {
                field: "header",
                name: header.to_owned(),
            });
        }
        let digests = resolve_secrets("secret", secret)?
            .into_iter()
            .map(|(at, s)| {
                let value = s.expose();
                // Header values lose surrounding whitespace on the way.
                if value.first().is_some_and(u8::is_ascii_whitespace)
                    || value.last().is_some_and(u8::is_ascii_whitespace)
                {
                    return Err(BuildError::SecretWhitespace { at });
                }
                Ok(super::challenges::digest(value))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            header: header.to_owned(),
            digests,
        })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let value = required_header(req, &self.header)?.trim();
        if matches_any(&self.digests, &super::challenges::digest(value.as_bytes())) {
            Ok(())
        } else {
            Err(Rejection::BadCredentials)
        }
    }
}
