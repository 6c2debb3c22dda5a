//! An error with its causes on one line, `a: b: c`, for logs and terminal messages:
//! many errors (the store's, reqwest's) leave the cause to `source()`, and a log line
//! that says only "database error" names neither the problem nor the fix.

use std::fmt;

/// Displays an error followed by each of its sources.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("database error")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_the_error() {
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(Chain(&e).to_string(), "database error: connection refused");
    }
}
