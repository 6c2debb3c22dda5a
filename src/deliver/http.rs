//! `http` destinations: one POST (by default) per attempt, with the headers of SPEC
//! section 6, the original body and content type, and the response captured (4 KiB).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use super::outcome::{Sent, capture};
use super::sign::Signer;
use crate::address_guard;
use crate::config::model::HttpDestination;
use crate::store::ClaimedDelivery;
use crate::store::delivery::RESPONSE_CAPTURE;

/// Most redirects followed with `follow_redirects`.
const MAX_REDIRECTS: usize = 5;

/// A configured HTTP destination, ready to send.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    method: Method,
    headers: HeaderMap,
    timeout: Duration,
    signer: Option<Signer>,
    forward_headers: bool,
}

impl HttpTarget {
    pub fn new(cfg: &HttpDestination, signer: Option<Signer>) -> Result<Self, String> {
        // reqwest uses the process-wide rustls provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let deny_private = cfg.deny_private;
        let redirects = if !cfg.follow_redirects {
            reqwest::redirect::Policy::none()
        } else if deny_private {
            // A redirect to an address written out skips name resolution: checked here.
            reqwest::redirect::Policy::custom(|attempt| {
                match address_guard::literal_host(attempt.url()) {
                    Some(ip) if address_guard::is_private(ip) => {
                        attempt.error(address_guard::refusal(&format!("the redirect to {ip}")))
                    }
                    _ if attempt.previous().len() >= MAX_REDIRECTS => attempt.stop(),
                    _ => attempt.follow(),
                }
            })
        } else {
            reqwest::redirect::Policy::limited(MAX_REDIRECTS)
        };
        let mut client = reqwest::Client::builder()
            .redirect(redirects)
            // Deliveries go straight to the handler; a proxy from the environment would
            // reroute every customer's webhook without anyone noticing.
            .no_proxy()
            .pool_max_idle_per_host(64);
        if deny_private {
            client = client.dns_resolver(std::sync::Arc::new(address_guard::PublicOnly));
        }
        let client = client
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("header {name} has a value that is not valid"))?;
            headers.append(name, value);
        }
        Ok(Self {
            client,
            url: cfg.url.clone(),
            method: Method::from_bytes(cfg.method.as_bytes())
                .map_err(|_| format!("{:?} is not an HTTP method", cfg.method))?,
            headers,
            timeout: cfg.timeout.0,
            signer,
            forward_headers: cfg.forward_headers,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `d` once; `now_secs` is the `webhook-timestamp`.
    pub async fn send(&self, d: &ClaimedDelivery, now_secs: i64) -> Sent {
        // Layers, each overriding the one before: the sender's headers, the destination's
        // configured headers, then forebay's own.
        let mut headers = HeaderMap::new();
        for (name, value) in &d.headers {
            let forward = if name == "content-type" {
                d.payload.is_none()
            } else {
                self.forward_headers && super::metadata::forwardable(name)
            };
            if forward
                && let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::from_bytes(value),
                )
            {
                headers.append(name, value);
            }
        }
        if d.payload.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        // A sender's own Standard Webhooks signature covers its message id, not the event
        // id sent here: it could never verify, so only forebay's (if any) goes out.
        headers.remove("webhook-signature");
        for (name, value) in super::metadata::ours(d, now_secs, self.signer.as_ref()) {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let request = self
            .client
            .request(self.method.clone(), &self.url)
            .timeout(self.timeout)
            .headers(headers);
        match request.body(d.outgoing_body().to_vec()).send().await {
            Ok(response) => read_response(response).await,
            Err(e) => Sent {
                error: Some(describe(e)),
                ..Sent::default()
            },
        }
    }
}

async fn read_response(mut response: reqwest::Response) -> Sent {
    let status = response.status();
    let mut sent = Sent {
        ok: status.is_success(),
        status: Some(status.as_u16()),
        error: (!status.is_success()).then(|| format!("HTTP {status}")),
        retry_after: response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
        response_headers: crate::store::headers::encode(response.headers()),
        response_body: Vec::new(),
    };
    // Read no more than the capture needs; the rest is not worth the wait or memory.
    while sent.response_body.len() < RESPONSE_CAPTURE {
        match response.chunk().await {
            Ok(Some(chunk)) => capture(&mut sent.response_body, &chunk),
            Ok(None) | Err(_) => break,
        }
    }
    sent
}

/// A short, stable description of a transport error. The URL is left out: it may hold
/// credentials (`https://user:pass@…`, `?token=…`), and this text is logged and stored.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect not followed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
