//! A recording HTTP receiver: answers each request with the next scripted status (200
//! once the script is used up) and hands every request to the test, in arrival order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};
use tokio::sync::mpsc;

/// One request as the receiver saw it.
#[derive(Debug)]
pub struct Recorded {
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
}

pub struct Receiver {
    pub url: String,
    seen: mpsc::UnboundedReceiver<Recorded>,
}

impl Receiver {
    /// Starts a receiver on port 0 that answers `script` in order, then 200.
    pub async fn start(script: &[u16]) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            seen: tx,
        };
        let app = Router::new().fallback(record).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen: rx }
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
    let status = shared
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .unwrap_or(200);
    let _ = shared.seen.send(Recorded {
        method,
        uri,
        headers,
        body,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, format!("answered {status}")).into_response()
}
