//! Graceful shutdown of the real binary: a request already being read when SIGTERM
//! arrives is still committed and answered; then the process exits cleanly.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::ingest::read_head;
use crate::support::binary::{spawn_serve, write_config};

#[tokio::test]
async fn sigterm_finishes_requests_already_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[sources.demo]\n");
    let mut process = spawn_serve(&config);

    // Start a request and wait until the server is reading its body: hyper sends
    // "100 Continue" exactly when the handler first asks for the body.
    let mut stream = TcpStream::connect(process.ingest).await.unwrap();
    stream
        .write_all(
            b"POST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let head = within(read_head(&mut stream)).await;
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");

    process.signal(libc::SIGTERM);
    // Shutdown has begun once the listener refuses new connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(process.ingest).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still open after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stream.write_all(b"hello world").await.unwrap();
    let head = within(read_head(&mut stream)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let status = within(tokio::task::spawn_blocking(move || {
        let status = process.child.wait().unwrap();
        drop(process);
        status
    }))
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");

    // The event is there after a restart.
    let process = spawn_serve(&config);
    let client = crate::support::client();
    let list: Value = client
        .get(format!("http://{}/api/v1/events", process.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["data"][0]["id"].as_str().unwrap();
    let event: Value = client
        .get(format!("http://{}/api/v1/events/{id}", process.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["body"], "hello world");
}

/// Fails the test instead of hanging when the server does not answer.
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("no answer within 30s")
}
