//! `server.max_headers` and `server.max_header_bytes`, answered in JSON like every other
//! error of both listeners.
//!
//! hyper's own limits answer with an empty 431 and no way to shape it, so hyper is given
//! [`HEADROOM`] times the configured limits and this layer holds requests to the
//! configured ones, answering 431 with the usual error body. Only a request far past
//! them (more than [`HEADROOM`] times, or past 100 headers while the limit is under
//! 100) meets hyper's bare 431: hyper stops reading it there, which bounds the memory a
//! hostile head can take per connection.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::http_error::ApiError;

/// How far past the configured limits hyper itself reads before giving up.
pub const HEADROOM: usize = 4;

/// The header count hyper parses into memory on the stack; past it, hyper allocates and
/// initialises room for its whole limit on every request (about 12 KiB at 4 × 100).
const HYPER_INLINE_HEADERS: usize = 100;

/// hyper refuses a read buffer smaller than this.
const HYPER_MIN_BUF: usize = 8192;

/// The configured limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

impl HeaderLimits {
    /// The header count hyper is given: [`HEADROOM`] times the limit, but no more than
    /// hyper holds on the stack while the limit is below that, so a request costs no
    /// allocation for its header list.
    pub fn hyper_max_headers(&self) -> usize {
        let roomy = self.max_headers.saturating_mul(HEADROOM);
        if self.max_headers < HYPER_INLINE_HEADERS {
            roomy.min(HYPER_INLINE_HEADERS)
        } else {
            roomy
        }
    }

    /// The read buffer hyper is given (it holds the request line and headers).
    pub fn hyper_max_buf(&self) -> usize {
        self.max_header_bytes
            .saturating_mul(HEADROOM)
            .max(HYPER_MIN_BUF)
    }
}

/// The head as sent on the wire: `METHOD target HTTP/1.1\r\n`, then `name: value\r\n`
/// per header. The request line counts too, or a 100 KiB query string would pass.
fn wire_bytes<B>(req: &http::Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let request_line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request_line + headers
}

/// The layer: a request past either limit is answered 431 and never reaches a handler.
pub async fn enforce(State(limits): State<HeaderLimits>, req: Request, next: Next) -> Response {
    let count = req.headers().len();
    if count > limits.max_headers {
        return too_large(format!(
            "the request has {count} headers; at most {} are accepted (server.max_headers)",
            limits.max_headers
        ));
    }
    let bytes = wire_bytes(&req);
    if bytes > limits.max_header_bytes {
        return too_large(format!(
            "the request line and headers take {bytes} bytes; at most {} are accepted (server.max_header_bytes)",
            limits.max_header_bytes
        ));
    }
    next.run(req).await
}

fn too_large(message: String) -> Response {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        format!("{message}; send fewer or smaller headers, or raise the limit"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_headers: usize) -> HeaderLimits {
        HeaderLimits {
            max_headers,
            max_header_bytes: 32 << 10,
        }
    }

    #[test]
    fn hyper_keeps_the_header_list_on_the_stack_below_100() {
        assert_eq!(limits(20).hyper_max_headers(), 80);
        assert_eq!(limits(64).hyper_max_headers(), 100);
        assert_eq!(limits(99).hyper_max_headers(), 100);
        // An operator who raised the limit past 100 gets the full headroom.
        assert_eq!(limits(100).hyper_max_headers(), 400);
        assert_eq!(limits(200).hyper_max_headers(), 800);
    }
}
