//! A recording HTTP receiver: answers each request with the next scripted status (200
//! once the script is used up) and hands every request to the test, in arrival order.
//! The scripted status [`HANG`] answers nothing for a minute (past any test timeout).
//! [`reset_listener`] is a port that resets every connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};
use tokio::sync::mpsc;

/// One request as the receiver saw it.
#[derive(Debug)]
pub struct Recorded {
    pub at: Instant,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The body as JSON (panics when it is not).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// In a script: hang instead of answering.
pub const HANG: u16 = 0;

/// Decides a request's status from its body (for tests where arrival order is not fixed).
pub type Rule = Arc<dyn Fn(&Bytes) -> u16 + Send + Sync>;

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<VecDeque<u16>>>,
    rule: Option<Rule>,
    /// Sent as `Retry-After` with every 429 and 503.
    retry_after: Option<&'static str>,
    /// Requests in progress per value of this top-level field of a JSON body, and the
    /// most at once of any value.
    group_by: Option<&'static str>,
    groups: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    group_peak: Arc<AtomicUsize>,
    seen: mpsc::UnboundedSender<Recorded>,
    /// How long each answer takes.
    delay: Duration,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

pub struct Receiver {
    pub url: String,
    seen: mpsc::UnboundedReceiver<Recorded>,
    peak: Arc<AtomicUsize>,
    group_peak: Arc<AtomicUsize>,
}

impl Receiver {
    /// Starts a receiver on port 0 that answers `script` in order, then 200.
    pub async fn start(script: &[u16]) -> Self {
        Self::start_slow(script, Duration::ZERO).await
    }

    /// Like [`Receiver::start`], but each answer takes `delay` (to measure concurrency).
    pub async fn start_slow(script: &[u16], delay: Duration) -> Self {
        Self::launch(script, delay, None, None, None).await
    }

    /// Like [`Receiver::start`], with `Retry-After: {retry_after}` on 429s and 503s.
    pub async fn start_with_retry_after(script: &[u16], retry_after: &'static str) -> Self {
        Self::launch(script, Duration::ZERO, None, None, Some(retry_after)).await
    }

    /// A receiver whose answers come from `rule`, each taking `delay`, that counts the
    /// requests in progress per value of the JSON body's field `group_by`.
    pub async fn start_with_rule(rule: Rule, delay: Duration, group_by: &'static str) -> Self {
        Self::launch(&[], delay, Some(rule), Some(group_by), None).await
    }

    async fn launch(
        script: &[u16],
        delay: Duration,
        rule: Option<Rule>,
        group_by: Option<&'static str>,
        retry_after: Option<&'static str>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let peak = Arc::new(AtomicUsize::new(0));
        let group_peak = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            rule,
            retry_after,
            group_by,
            groups: Arc::default(),
            group_peak: group_peak.clone(),
            seen: tx,
            delay,
            in_flight: Arc::new(AtomicUsize::new(0)),
            peak: peak.clone(),
        };
        let app = Router::new().fallback(record).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            seen: rx,
            peak,
            group_peak,
        }
    }

    /// The most requests in progress at once with one value of the `group_by` field.
    pub fn peak_in_flight_per_group(&self) -> usize {
        self.group_peak.load(Ordering::SeqCst)
    }

    /// The most requests that were in progress at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The next request, waiting for it (bounded, so a missing delivery fails the test).
    pub async fn next(&mut self) -> Recorded {
        self.next_within(Duration::from_secs(20)).await
    }

    /// [`Receiver::next`] with a bound of the test's choosing (a lease to run out, say).
    pub async fn next_within(&mut self, bound: Duration) -> Recorded {
        tokio::time::timeout(bound, self.seen.recv())
            .await
            .unwrap_or_else(|_| panic!("a delivery within {bound:?}"))
            .expect("receiver running")
    }
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(now, Ordering::SeqCst);
    let group = shared.group_by.map(|name| {
        let key = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get(name).map(|k| k.to_string()))
            .unwrap_or_default();
        let mut groups = shared.groups.lock().unwrap();
        let n = groups.entry(key.clone()).or_default();
        *n += 1;
        shared.group_peak.fetch_max(*n, Ordering::SeqCst);
        key
    });
    // A request whose sender went away (a killed process) stops here, its handler
    // dropped mid-sleep: the guard still counts it finished.
    let finished = Finished {
        shared: shared.clone(),
        group,
    };
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    drop(finished);
    let status = match &shared.rule {
        Some(rule) => rule(&body),
        None => shared
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or(200),
    };
    let _ = shared.seen.send(Recorded {
        at,
        method,
        uri,
        headers,
        body,
    });
    if status == HANG {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, format!("answered {status}")).into_response();
    if let Some(after) = shared.retry_after
        && matches!(status.as_u16(), 429 | 503)
    {
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static(after));
    }
    response
}

/// Counts a request as no longer in progress when dropped.
struct Finished {
    shared: Shared,
    group: Option<String>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(key) = &self.group
            && let Ok(mut groups) = self.shared.groups.lock()
            && let Some(n) = groups.get_mut(key)
        {
            *n -= 1;
        }
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A URL whose server accepts each connection, reads the request, and resets the
/// connection (RST) without answering.
pub async fn reset_listener() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            // Linger 0: closing sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    url
}
