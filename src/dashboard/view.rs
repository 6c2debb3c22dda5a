//! What every page shares: the frame around it (navigation, the CSRF token for its
//! forms), rendering a template into a response, the error page, and turning stored
//! values into text people read.

use askama::Template;
use axum::extract::{FromRequestParts, Query};
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::session::Session;
use crate::admin::json::BodyJson;
use crate::http_error::ApiError;

/// The frame of a page: which tab is lit, and what its forms carry.
pub struct Frame {
    pub tab: &'static str,
    pub csrf: String,
    /// A token is configured, so there is a session to log out of.
    pub logout: bool,
}

impl Frame {
    pub fn new(tab: &'static str, session: &Session, logout: bool) -> Self {
        Self {
            tab,
            csrf: session.csrf.clone(),
            logout,
        }
    }
}

/// Query parameters that only shape a page (the filters shown again in its form, the
/// notice of the last action, where to go after login): when they do not parse (a
/// parameter given twice, `n=abc`), the page shows its defaults instead of refusing.
/// What a page looks up goes through the admin API's own parameters, which answer
/// such mistakes with a message.
pub struct Lenient<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequestParts<S> for Lenient<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let parsed = Query::<T>::try_from_uri(&parts.uri).map(|q| q.0);
        Ok(Self(parsed.unwrap_or_default()))
    }
}

/// Renders `page`, or the error page when a template cannot render (a bug).
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>forebay</title><p>This page could not be shown; the log says why.</p>"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// A page saying what went wrong and what to do.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message,
        },
    )
}

/// The admin API's error, shown as a page (same status, same message).
pub fn api_error(e: ApiError) -> Response {
    error_page(e.status, &e.message)
}

/// A posted form whose names may repeat (`id=…&id=…`), which serde's form decoding
/// does not take.
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, trimmed, unless it is empty.
    pub fn one(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A body for reading: pretty JSON when it is JSON, the text as it came otherwise, and
/// base64 (said so) when it is not text.
pub fn body_text(body: Option<&BodyJson>) -> (String, &'static str) {
    match body {
        None => (String::new(), "none"),
        Some(BodyJson::Base64(b64)) => (b64.clone(), "base64"),
        Some(BodyJson::Text(text)) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) if text.trim_start().starts_with(['{', '[']) => (
                serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.clone()),
                "json",
            ),
            _ => (text.clone(), "text"),
        },
    }
}

/// Headers as `(name, value)` lines, from the API's JSON shape (a string, or a list
/// when the header came more than once).
pub fn header_lines(headers: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for (name, value) in headers {
        match value {
            serde_json::Value::Array(values) => {
                for v in values {
                    lines.push((name.clone(), plain(v)));
                }
            }
            other => lines.push((name.clone(), plain(other))),
        }
    }
    lines
}

fn plain(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A byte count for people: `512 B`, `4.0 KiB`, `1.5 MiB`.
pub fn size(bytes: i64) -> String {
    bytesize::ByteSize::b(u64::try_from(bytes).unwrap_or(0))
        .display()
        .iec()
        .to_string()
}

/// An RFC 3339 time as shown in tables: to the second, UTC, without the `T`.
pub fn when(rfc3339: &str) -> String {
    rfc3339
        .get(..19)
        .map_or_else(|| rfc3339.to_owned(), |t| t.replace('T', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_shown_as_pretty_json_text_or_base64() {
        let json = BodyJson::Text("{\"a\":1}".into());
        assert_eq!(body_text(Some(&json)), ("{\n  \"a\": 1\n}".into(), "json"));
        let number = BodyJson::Text("42".into());
        assert_eq!(
            body_text(Some(&number)).1,
            "text",
            "only objects and arrays"
        );
        let form = BodyJson::Text("a=1&b=2".into());
        assert_eq!(body_text(Some(&form)), ("a=1&b=2".into(), "text"));
        assert_eq!(
            body_text(Some(&BodyJson::Base64("AAE=".into()))).1,
            "base64"
        );
        assert_eq!(when("2026-12-05T13:58:01.123Z"), "2026-12-05 13:58:01");
        assert_eq!(size(1536), "1.5 KiB");
    }
}
