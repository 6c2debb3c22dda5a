//! A recording HTTP receiver: answers each request with the next scripted status (200
//! once the script is used up) and hands every request to the test, in arrival order.

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
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<VecDeque<u16>>>,
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
}

impl Receiver {
    /// Starts a receiver on port 0 that answers `script` in order, then 200.
    pub async fn start(script: &[u16]) -> Self {
        Self::start_slow(script, Duration::ZERO).await
    }

    /// Like [`Receiver::start`], but each answer takes `delay` (to measure concurrency).
    pub async fn start_slow(script: &[u16], delay: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let peak = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
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
        }
    }

    /// The most requests that were in progress at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The next request, waiting for it (bounded, so a missing delivery fails the test).
    pub async fn next(&mut self) -> Recorded {
        tokio::time::timeout(Duration::from_secs(20), self.seen.recv())
            .await
            .expect("a delivery within 20s")
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
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = shared
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .unwrap_or(200);
    let _ = shared.seen.send(Recorded {
        at,
        method,
        uri,
        headers,
        body,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, format!("answered {status}")).into_response()
}
