//! Secrets in configuration: a literal, `env:NAME` or `file:/path`.
//!
//! A [`SecretRef`] is what the TOML says; [`SecretRef::resolve`] turns it into the
//! [`Secret`] bytes once, when the configuration loads, so that a missing variable or
//! unreadable file is a configuration error and never a surprise at request time.

use std::fmt;

use serde::Deserialize;

/// A secret as written in the configuration file.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretRef(String);

impl SecretRef {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// Reads the secret from where the reference points.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        if let Some(name) = self.0.strip_prefix("env:") {
            return match std::env::var_os(name) {
                Some(value) if !value.is_empty() => Ok(Secret(value.into_encoded_bytes())),
                _ => Err(SecretError::MissingEnv(name.to_owned())),
            };
        }
        if let Some(path) = self.0.strip_prefix("file:") {
            let bytes = std::fs::read(path).map_err(|source| SecretError::File {
                path: path.to_owned(),
                source,
            })?;
            // Files written by editors and `echo` end in a newline that is not part of the secret.
            let trimmed = bytes.trim_ascii_end().to_vec();
            if trimmed.is_empty() {
                return Err(SecretError::EmptyFile(path.to_owned()));
            }
            return Ok(Secret(trimmed));
        }
        if self.0.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(self.0.as_bytes().to_vec()))
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // References to env or files are safe to show; literals are not.
        if self.0.starts_with("env:") || self.0.starts_with("file:") {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// Resolved secret bytes. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or empty; export it or write the secret inline")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}; check the path and its permissions")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {0} is empty; write the secret into it")]
    EmptyFile(String),
    #[error("secret is empty; give a value, `env:NAME` or `file:/path`")]
    Empty,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_env_and_file_resolve() {
        assert_eq!(SecretRef::new("abc").resolve().unwrap().expose(), b"abc");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\n").unwrap();
        let file = SecretRef::new(format!("file:{}", path.display()));
        assert_eq!(file.resolve().unwrap().expose(), b"from-file");
        let missing = SecretRef::new("env:FOREBAY_TEST_SURELY_UNSET_VARIABLE");
        let err = missing.resolve().unwrap_err().to_string();
        assert!(err.contains("FOREBAY_TEST_SURELY_UNSET_VARIABLE"), "{err}");
    }

    #[test]
    fn debug_never_shows_literals() {
        assert_eq!(format!("{:?}", SecretRef::new("hunter2")), "\"<redacted>\"");
        assert_eq!(
            format!("{:?}", Secret::from_bytes("hunter2")),
            "Secret(<redacted>)"
        );
    }
}
