//! The one HTTP client of the client commands: requests to the admin API with the bearer
//! token, answers read with a cap, and the API's JSON errors turned into [`CliError`]s
//! that say what to do.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use super::error::CliError;

/// Query parameters, in order; empty values are left out.
pub type Query = Vec<(&'static str, String)>;

/// Largest JSON answer read (a page of 500 deliveries, one event with a large body).
const MAX_ANSWER: usize = 64 << 20;
/// A JSON request may take this long (a `q` search scans within the server's budget).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: String, token: Option<String>) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { base, token, http })
    }

    /// The server, as in `http://127.0.0.1:8081`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str, query: &Query) -> String {
        let mut url = format!("{}{path}", self.base);
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (name, value) in query.iter().filter(|(_, v)| !v.is_empty()) {
            pairs.append_pair(name, value);
            any = true;
        }
        if any {
            url.push('?');
            url.push_str(&pairs.finish());
        }
        url
    }

    /// GET, answering JSON.
    pub async fn get(&self, path: &str, query: &Query) -> Result<Value, CliError> {
        let url = self.url(path, query);
        let request = self.request(Method::GET, &url).timeout(REQUEST_TIMEOUT);
        let response = self.send(request).await?;
        read_json(response, &url).await
    }

    /// POST with an optional JSON body, answering JSON.
    pub async fn post(
        &self,
        path: &str,
        query: &Query,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = self.url(path, query);
        let mut request = self.request(Method::POST, &url).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = self.send(request).await?;
        read_json(response, &url).await
    }

    /// GET a streamed answer (NDJSON, server-sent events), its status checked; the caller
    /// reads the body with `chunk()` and bounds its own waits.
    pub async fn open(
        &self,
        path: &str,
        query: &Query,
        headers: &[(&'static str, String)],
    ) -> Result<(Response, String), CliError> {
        let url = self.url(path, query);
        let mut request = self.request(Method::GET, &url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self.send(request).await?;
        Ok((response, url))
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let request = self
            .http
            .request(method, url)
            .header(http::header::ACCEPT, "application/json");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends, and turns transport failures and non-2xx answers into errors.
    async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request
            .send()
            .await
            .map_err(|e| CliError::unreachable(&self.base, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_capped(response, 64 << 10).await.unwrap_or_default();
        let (code, message) = api_error(&body);
        let status = status.as_u16();
        Err(match status {
            401 => CliError::Unauthorized {
                server: self.base.clone(),
                hint: if self.token.is_some() {
                    "the token was not accepted: check --token or FOREBAY_TOKEN against the server's admin_token"
                } else {
                    "pass --token or set FOREBAY_TOKEN (the server's admin_token)"
                },
            },
            400..=499 => CliError::Refused {
                status,
                code,
                message,
            },
            _ => CliError::ServerFailed {
                status,
                code,
                message,
            },
        })
    }
}

/// The API's `{"error": {"code", "message"}}`, or the start of whatever else came.
fn api_error(body: &[u8]) -> (String, String) {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(e) = v.get("error")
    {
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        return (text("code"), text("message"));
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(300).collect();
    (
        "not_the_api".to_owned(),
        format!("answered {text:?}; is --server the admin listener?"),
    )
}

async fn read_json(response: Response, url: &str) -> Result<Value, CliError> {
    let body = read_capped(response, MAX_ANSWER)
        .await
        .map_err(|reason| CliError::BadAnswer {
            url: url.to_owned(),
            reason,
        })?;
    serde_json::from_slice(&body).map_err(|e| CliError::BadAnswer {
        url: url.to_owned(),
        reason: format!("the answer is not JSON ({e}); is --server the admin listener?"),
    })
}

/// The body, refusing more than `cap` bytes.
pub async fn read_capped(mut response: Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the answer was cut: {}", super::error::root_cause(&e)))?
    {
        if body.len() + chunk.len() > cap {
            return Err(format!("the answer is larger than {} MiB", cap >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `cap` bytes of a body as text (for showing a handler's error answer);
/// reading stops there, and a cut body shows what arrived.
pub async fn read_capped_prefix(mut response: Response, cap: usize) -> String {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).trim().to_owned()
}
