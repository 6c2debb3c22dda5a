//! Sending a stored event (as the API shows it) to a local handler, for `replay --from`
//! and `listen`: the event's own method, body (byte for byte) and headers, the way an
//! `http` destination would get it from forebay.
//!
//! Headers: the sender's, minus transport headers (`Host`, `Content-Length`,
//! `Connection`, `Transfer-Encoding`, …), its credentials for forebay (`Authorization`,
//! `Cookie`) and its `webhook-signature` (it signs the sender's message id, not the one
//! sent here); then forebay's own: `webhook-id` and `Idempotency-Key` (the event id),
//! `webhook-timestamp` (now), `Forebay-Source`, `Forebay-Attempt`, and
//! `Forebay-Replay: file` for `replay --from`; then every `--header`, which overrides
//! all of them. The URL is used as given: the event's path and query are not added.

use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

use super::error::CliError;

/// What a local handler gets: the flags `replay --from` and `listen` share.
#[derive(Debug, Clone, clap::Args)]
pub struct HandlerArgs {
    /// The handler's URL, e.g. `http://localhost:3000/webhooks`.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// An extra request header (`Name: value`), overriding the event's; may be repeated.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// How long the handler may take to answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// How one send went.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The handler answered (2xx is success).
    Status(u16, String),
    /// No answer: connection refused, timeout…
    Failed(String),
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Status(s, _) if (200..300).contains(s))
    }

    /// `2xx`, `4xx`, `5xx` or `no answer`, for summaries.
    pub fn class(&self) -> String {
        match self {
            Outcome::Status(s, _) => format!("{}xx", s / 100),
            Outcome::Failed(_) => "no answer".to_owned(),
        }
    }

    /// `200`, `500 (body start)` or the error.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Status(s, body) if body.is_empty() => s.to_string(),
            Outcome::Status(s, body) => format!("{s} ({})", super::output::short(body, 80)),
            Outcome::Failed(e) => e.clone(),
        }
    }
}

/// One event, ready to send (decoded once, sent as often as needed).
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub source: String,
    method: Method,
    headers: HeaderMap,
    body: bytes::Bytes,
}

pub struct Forwarder {
    http: reqwest::Client,
    url: reqwest::Url,
    extra: HeaderMap,
    /// `Forebay-Replay` value, if any.
    replay: Option<&'static str>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(args: &HandlerArgs, replay: Option<&'static str>) -> Result<Self, CliError> {
        let url = reqwest::Url::parse(&args.to)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--to {:?} is not an http(s) URL; write it like http://localhost:3000/webhooks",
                    args.to
                ))
            })?;
        let mut extra = HeaderMap::new();
        for h in &args.headers {
            let (name, value) = h
                .split_once(':')
                .and_then(|(n, v)| {
                    Some((
                        HeaderName::try_from(n.trim()).ok()?,
                        HeaderValue::try_from(v.trim()).ok()?,
                    ))
                })
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--header {h:?} is not a header; write it as 'Name: value'"
                    ))
                })?;
            extra.append(name, value);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            url,
            extra,
            replay,
            timeout: args.timeout,
        })
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Sends `event` once as its `attempt`-th try; the time it took comes back too.
    pub async fn send(&self, event: &Prepared, attempt: u32) -> (Outcome, Duration) {
        let started = Instant::now();
        let mut headers = event.headers.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let ours = [
            ("webhook-id", event.id.clone()),
            ("idempotency-key", event.id.clone()),
            ("webhook-timestamp", now.to_string()),
            ("forebay-source", event.source.clone()),
            ("forebay-attempt", attempt.to_string()),
        ];
        for (name, value) in ours {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        if let Some(replay) = self.replay {
            headers.insert(
                HeaderName::from_static("forebay-replay"),
                HeaderValue::from_static(replay),
            );
        }
        for name in self.extra.keys() {
            headers.remove(name);
        }
        for (name, value) in &self.extra {
            headers.append(name.clone(), value.clone());
        }
        let sent = self
            .http
            .request(event.method.clone(), self.url.clone())
            .timeout(self.timeout)
            .headers(headers)
            .body(event.body.clone())
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                // Keep the start of a failure's answer to show; a success's is not needed.
                let body = if (200..300).contains(&status) {
                    String::new()
                } else {
                    super::api::read_capped_prefix(response, 4096).await
                };
                Outcome::Status(status, body)
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                Outcome::Failed(format!("{what}: {}", super::error::root_cause(&e)))
            }
        };
        (outcome, started.elapsed())
    }
}

/// Reads an event as the API shows it (`GET /api/v1/events/{id}`, a line of an export,
/// a stream message).
pub fn prepare(event: &Value) -> Result<Prepared, String> {
    let text = |k: &str| event.get(k).and_then(Value::as_str);
    let id = text("id").ok_or("it has no `id`")?.to_owned();
    let body = match (event.get("body"), event.get("body_base64")) {
        (Some(Value::String(s)), _) => s.as_bytes().to_vec(),
        (_, Some(Value::String(b))) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("{id}: body_base64 is not base64: {e}"))?,
        _ if event.get("body_size").and_then(Value::as_u64).unwrap_or(0) > 0 => {
            return Err(format!(
                "{id} has no body (a listing without bodies? use `forebay export`)"
            ));
        }
        _ => Vec::new(),
    };
    let method = text("method")
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(Method::POST);
    let mut headers = HeaderMap::new();
    for (name, value) in event
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let lower = name.to_ascii_lowercase();
        if !forwardable(&lower) {
            continue;
        }
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::try_from(lower),
            value.as_str().map(HeaderValue::try_from),
        ) {
            headers.append(name, value);
        }
    }
    Ok(Prepared {
        source: text("source").unwrap_or_default().to_owned(),
        id,
        method,
        headers,
        body: body.into(),
    })
}

/// The sender's headers that go on to a handler (the same as for `http` destinations).
fn forwardable(name: &str) -> bool {
    crate::deliver::metadata::forwardable(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_and_headers_as_stored() {
        let e = prepare(&json!({
            "id": "evt_1", "source": "s", "method": "PUT", "body_size": 3,
            "body_base64": "AP8B",
            "headers": {"host": "x", "content-length": "3", "x-github-event": "push",
                        "authorization": "Bearer t", "content-type": "application/octet-stream"}
        }))
        .unwrap();
        assert_eq!(&e.body[..], &[0, 255, 1]);
        assert_eq!(e.method, Method::PUT);
        let names: Vec<&str> = e.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"x-github-event") && names.contains(&"content-type"));
        let listed = prepare(&json!({"id": "evt_2", "body_size": 10})).unwrap_err();
        assert!(listed.contains("export"), "{listed}");
    }
}
