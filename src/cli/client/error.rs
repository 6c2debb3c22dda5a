//! What can go wrong in a client command, and the exit code each kind ends the process
//! with (the table is in `client/mod.rs`).

/// Exit codes of the client commands.
pub mod exit {
    /// A problem with what was asked: a bad flag value, a bulk action without a filter,
    /// an unreadable configuration.
    pub const USAGE: u8 = 1;
    /// The server could not be reached, failed (5xx), answered something that is not the
    /// API; or a local file could not be read or written.
    pub const UNREACHABLE: u8 = 3;
    /// The server refused the request (4xx): no such id, a bad token, a bad filter.
    pub const REFUSED: u8 = 4;
    /// The work ran, but not everything was delivered (replay, listen).
    pub const NOT_DELIVERED: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or the configuration asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    #[error(
        "cannot reach the admin API at {server}: {reason}; is forebay running there? pass --server URL or set FOREBAY_SERVER"
    )]
    Unreachable {
        server: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    /// 401: the token is missing or wrong. (The server's own message speaks of the
    /// HTTP header; the hint speaks of the flags.)
    #[error("the admin API at {server} refused the request (401 unauthorized): {hint}")]
    Unauthorized { server: String, hint: &'static str },
    /// Any other 4xx, with the API's own code and message.
    #[error("the server refused: {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// A 5xx.
    #[error("the server failed: {status} {code}: {message}")]
    ServerFailed {
        status: u16,
        code: String,
        message: String,
    },
    /// A 2xx that is not what the API promises (not JSON, a cut stream…).
    #[error("{url}: {reason}")]
    BadAnswer { url: String, reason: String },
    /// A local file or stream.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The command ran to its end, but some events were not delivered.
    #[error("{0}")]
    NotDelivered(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Unreachable { .. }
            | CliError::ServerFailed { .. }
            | CliError::BadAnswer { .. }
            | CliError::Io { .. } => exit::UNREACHABLE,
            CliError::Unauthorized { .. } | CliError::Refused { .. } => exit::REFUSED,
            CliError::NotDelivered(_) => exit::NOT_DELIVERED,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }

    /// A transport error talking to the admin API at `server`.
    pub fn unreachable(server: &str, source: reqwest::Error) -> Self {
        CliError::Unreachable {
            server: server.to_owned(),
            reason: root_cause(&source),
            source,
        }
    }
}

/// The innermost error of a chain: for a refused connection "Connection refused (os error
/// 111)" instead of reqwest's "error sending request for url (…)".
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = error;
    while let Some(next) = last.source() {
        last = next;
    }
    let text = last.to_string();
    // A timeout's innermost error is often a bare "operation timed out"; say what timed out.
    if let Some(e) = error.downcast_ref::<reqwest::Error>()
        && e.is_timeout()
        && !text.contains("timed out")
    {
        return format!("timed out ({text})");
    }
    text
}
