//! HTTP Basic authentication (RFC 7617): `Authorization: Basic base64(user:password)`.
//!
//! The configured `user:password` pairs are kept only as SHA-256 digests, and the
//! received credentials are hashed the same way before a constant-time comparison, so
//! the time taken does not depend on how long the configured password is.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::config::{BuildError, OneOrMany, resolve_secrets};
use super::mac::{BASE64_LENIENT, matches_any, required_header};
use super::rejection::Rejection;
use crate::config::secret::SecretRef;
use crate::ingest::request::Unverified;

const AUTHORIZATION: &str = "Authorization";

#[derive(Clone)]
pub struct Basic {
    /// SHA-256 of each accepted `username:password`.
    digests: Vec<Vec<u8>>,
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basic")
            .field("passwords", &self.digests.len())
            .finish()
    }
}

impl Basic {
    pub(super) fn build(
        username: &str,
        password: &OneOrMany<SecretRef>,
    ) -> Result<Self, BuildError> {
        if username.contains(':') {
            return Err(BuildError::UsernameColon);
        }
        let digests = resolve_secrets("password", password)?
            .into_iter()
            .map(|(_, p)| {
                let mut pair = Sha256::new();
                pair.update(username.as_bytes());
                pair.update(b":");
                pair.update(p.expose());
                pair.finalize().to_vec()
            })
            .collect();
        Ok(Self { digests })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let credentials = credentials(required_header(req, AUTHORIZATION)?, Scheme::Basic)?;
        let decoded = BASE64_LENIENT
            .decode(credentials)
            .map_err(|_| Rejection::malformed(AUTHORIZATION, "credentials are not valid base64"))?;
        if matches_any(&self.digests, &Sha256::digest(&decoded)) {
            Ok(())
        } else {
            Err(Rejection::BadCredentials)
        }
    }
}

/// The `Authorization` schemes handled here (shared with `bearer.rs`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Scheme {
    Basic,
    Bearer,
}

/// The credentials after `scheme` in an `Authorization` value. The scheme name is
/// case-insensitive (RFC 9110 section 11.1).
pub(super) fn credentials(value: &str, scheme: Scheme) -> Result<&str, Rejection> {
    let (expected, wrong_scheme) = match scheme {
        Scheme::Basic => ("Basic", "does not use the Basic scheme"),
        Scheme::Bearer => ("Bearer", "does not use the Bearer scheme"),
    };
    let value = value.trim();
    let (name, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !name.eq_ignore_ascii_case(expected) {
        return Err(Rejection::malformed(AUTHORIZATION, wrong_scheme));
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(Rejection::malformed(
            AUTHORIZATION,
            "has no credentials after the scheme",
        ));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::super::test_support::{build, outcome, request};
    use super::super::{BuildError, OneOrMany, Rejection, Verifier, VerifyConfig};
    use crate::config::secret::SecretRef;

    fn basic(password: &str) -> Verifier {
        build(&format!(
            r#"kind = "basic", username = "Aladdin", password = {password}"#
        ))
    }

    fn check(v: &Verifier, authorization: Option<&[u8]>) -> Result<(), Rejection> {
        let headers: Vec<(&str, &[u8])> = authorization
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        outcome(v, request(&headers, b"{}", 0))
    }

    #[test]
    fn rfc_7617_example_passes() {
        // RFC 7617 section 2: user "Aladdin", password "open sesame".
        let v = basic(r#""open sesame""#);
        assert_eq!(
            check(&v, Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
            Ok(())
        );
        assert_eq!(
            check(&v, Some(b"basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
            Ok(())
        );
    }

    #[test]
    fn wrong_user_or_password_fails() {
        let v = basic(r#""open sesame""#);
        let encode = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        for wrong in [
            "Aladdin:open sesamE",
            "aladdin:open sesame",
            "Aladdin:",
            ":open sesame",
            "Aladdin",
        ] {
            assert_eq!(
                check(&v, Some(encode(wrong).as_bytes())),
                Err(Rejection::BadCredentials),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn rotation_second_password_matches() {
        let v = basic(r#"["new password", "open sesame"]"#);
        assert_eq!(
            check(&v, Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
            Ok(())
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        let v = basic(r#""open sesame""#);
        assert_eq!(
            check(&v, None),
            Err(Rejection::MissingHeader {
                name: "Authorization".into()
            })
        );
        let cases: [(&[u8], &str); 5] = [
            (
                b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
                "does not use the Basic scheme",
            ),
            (
                b"QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
                "does not use the Basic scheme",
            ),
            (b"Basic", "has no credentials after the scheme"),
            (b"Basic !!!", "credentials are not valid base64"),
            (b"Basic \xff", "contains bytes that are not visible ASCII"),
        ];
        for (raw, problem) in cases {
            assert_eq!(
                check(&v, Some(raw)),
                Err(Rejection::MalformedHeader {
                    name: "Authorization".into(),
                    problem
                }),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn username_with_colon_is_a_build_error() {
        let err = VerifyConfig::Basic {
            username: "a:b".into(),
            password: OneOrMany::One(SecretRef::new("p")),
        }
        .build()
        .unwrap_err();
        assert!(matches!(err, BuildError::UsernameColon), "{err:?}");
    }

    #[test]
    fn debug_shows_no_credentials() {
        let v = basic(r#""open sesame""#);
        let shown = format!("{v:?}");
        assert!(!shown.contains("sesame"), "{shown}");
        assert_eq!(v.provider_dedup_key(&request(&[], b"{}", 0)), None);
    }
}
