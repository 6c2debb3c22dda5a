//! Bearer tokens (RFC 6750): `Authorization: Bearer <token>`.
//!
//! As with Basic, the configured tokens are kept only as SHA-256 digests and compared in
//! constant time with the digest of the received token, so timing reveals neither the
//! configured token's bytes nor its length.

use std::fmt;

use sha2::{Digest, Sha256};

use super::basic::{Scheme, credentials};
use super::config::{BuildError, OneOrMany, resolve_secrets};
use super::mac::{matches_any, required_header};
use super::rejection::Rejection;
use crate::config::secret::SecretRef;
use crate::ingest::request::Unverified;

const AUTHORIZATION: &str = "Authorization";

#[derive(Clone)]
pub struct Bearer {
    /// SHA-256 of each accepted token.
    digests: Vec<Vec<u8>>,
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("tokens", &self.digests.len())
            .finish()
    }
}

impl Bearer {
    pub(super) fn build(token: &OneOrMany<SecretRef>) -> Result<Self, BuildError> {
        let digests = resolve_secrets("token", token)?
            .into_iter()
            .map(|(at, t)| {
                // A token with whitespace could never arrive intact in the header.
                if t.expose().iter().any(u8::is_ascii_whitespace) {
                    return Err(BuildError::SecretWhitespace { at });
                }
                Ok(Sha256::digest(t.expose()).to_vec())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { digests })
    }

    pub(super) fn check(&self, req: &Unverified) -> Result<(), Rejection> {
        let token = credentials(required_header(req, AUTHORIZATION)?, Scheme::Bearer)?;
        if matches_any(&self.digests, &Sha256::digest(token.as_bytes())) {
            Ok(())
        } else {
            Err(Rejection::BadCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{build, outcome, request};
    use super::super::{BuildError, OneOrMany, Rejection, Verifier, VerifyConfig};
    use crate::config::secret::SecretRef;

    // RFC 6750 section 2.1's example token.
    const TOKEN: &str = "mF_9.B5f-4.1JqM";

    fn bearer(token: &str) -> Verifier {
        build(&format!(r#"kind = "bearer", token = {token}"#))
    }

    fn check(v: &Verifier, authorization: Option<&[u8]>) -> Result<(), Rejection> {
        let headers: Vec<(&str, &[u8])> = authorization
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        outcome(v, request(&headers, b"{}", 0))
    }

    #[test]
    fn right_token_passes() {
        let v = bearer(&format!("{TOKEN:?}"));
        assert_eq!(check(&v, Some(b"Bearer mF_9.B5f-4.1JqM")), Ok(()));
        assert_eq!(check(&v, Some(b"bearer  mF_9.B5f-4.1JqM ")), Ok(()));
    }

    #[test]
    fn wrong_token_fails() {
        let v = bearer(&format!("{TOKEN:?}"));
        for wrong in ["mF_9.B5f-4.1Jqm", "mF_9.B5f-4.1JqM2", "mF_9", "x"] {
            let header = format!("Bearer {wrong}");
            assert_eq!(
                check(&v, Some(header.as_bytes())),
                Err(Rejection::BadCredentials),
                "{wrong}"
            );
        }
    }

    #[test]
    fn rotation_second_token_matches() {
        let v = bearer(&format!(r#"["next-token", {TOKEN:?}]"#));
        assert_eq!(check(&v, Some(b"Bearer mF_9.B5f-4.1JqM")), Ok(()));
    }

    #[test]
    fn missing_and_malformed_headers() {
        let v = bearer(&format!("{TOKEN:?}"));
        assert_eq!(
            check(&v, None),
            Err(Rejection::MissingHeader {
                name: "Authorization".into()
            })
        );
        let cases: [(&[u8], &str); 4] = [
            (
                b"Basic bUZfOS5CNWYtNC4xSnFN",
                "does not use the Bearer scheme",
            ),
            (b"mF_9.B5f-4.1JqM", "does not use the Bearer scheme"),
            (b"Bearer ", "has no credentials after the scheme"),
            (
                b"Bearer \xe2\x82\xac",
                "contains bytes that are not visible ASCII",
            ),
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
    fn tokens_with_whitespace_are_build_errors_and_never_printed() {
        let err = VerifyConfig::Bearer {
            token: OneOrMany::Many(vec![SecretRef::new("good"), SecretRef::new("bad token")]),
        }
        .build()
        .unwrap_err();
        assert!(
            matches!(err, BuildError::SecretWhitespace { .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("`token` item 2: "), "{err}");
        assert!(!err.to_string().contains("bad token"), "{err}");
        assert!(!format!("{:?}", bearer(&format!("{TOKEN:?}"))).contains(TOKEN));
    }
}
