//! The baseline for ingest benchmarks: a bare hyper server that reads the request body
//! and answers 200 without storing anything, on the same runtime settings as forebay.
//!
//! Usage: `cargo run --release --example bare-server -- 127.0.0.1:18090 [DELAY_MS]`
//! (with a delay, it stands for a handler that takes that long to answer).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

async fn answer(
    req: Request<Incoming>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as forebay must, so the comparison is fair.
    let _ = req.into_body().collect().await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"id":"evt_0"}"#)))
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let delay = Duration::from_millis(
        std::env::args()
            .nth(2)
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0),
    );
    let listener = TcpListener::bind(&addr).await?;
    println!("bare server listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| answer(req, delay)),
                )
                .await;
        });
    }
}
