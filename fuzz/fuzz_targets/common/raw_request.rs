//! The input format of the request targets: an HTTP/1.1 request as sent on the wire, so
//! seeds are readable and libFuzzer's text mutations make sense:
//!
//! ```text
//! POST /in/github?x=1 HTTP/1.1
//! X-GitHub-Event: push
//! X-Fuzz-Sign: 1700000000
//! X-Request-Id: r1
//!
//! {"body":"bytes"}
//! ```
//!
//! Everything after the blank line is the body, whatever `Content-Length` says. Header
//! names starting `X-Fuzz-` are instructions to the harness, not headers (each target
//! documents its own).

use http::{HeaderName, HeaderValue, Method};

/// Most header lines read.
const MAX_HEADERS: usize = 64;

pub struct RawRequest<'a> {
    pub method: Method,
    /// The request target as written: path and query string.
    pub target: &'a str,
    /// In order, `X-Fuzz-` lines included.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: &'a [u8],
}

impl RawRequest<'_> {
    /// The first value of a harness instruction (`x-fuzz-…`), as text.
    pub fn instruction(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
            .map(str::trim)
    }
}

pub fn is_instruction(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-fuzz-")
}

/// `None` for anything that is not a complete request head.
pub fn parse(data: &[u8]) -> Option<RawRequest<'_>> {
    let mut buf = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut buf);
    let httparse::Status::Complete(head) = req.parse(data).ok()? else {
        return None;
    };
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let target = req.path?;
    let headers = req
        .headers
        .iter()
        .map(|h| {
            Some((
                HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                HeaderValue::from_bytes(h.value).ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(RawRequest {
        method,
        target,
        headers,
        body: &data[head..],
    })
}
