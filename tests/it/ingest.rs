//! The ingest listener's answers: every status of SPEC section 4, raw bodies, caps.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestServer;

const DEMO: &str = r#"
[sources.demo]
max_body = "1KiB"
"#;

#[tokio::test]
async fn accepts_and_answers_with_the_event_id() {
    let server = TestServer::start(DEMO).await;
    let r = server
        .post(
            "demo",
            &[("content-type", "application/json")],
            r#"{"hello":1}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("evt_"), "{body}");

    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["source"], "demo");
    assert_eq!(event["method"], "POST");
    assert_eq!(event["path"], "/in/demo");
    assert_eq!(event["body"], r#"{"hello":1}"#);
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert!(
        event["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
}

#[tokio::test]
async fn stores_raw_bytes_of_any_content_type() {
    let server = TestServer::start(DEMO).await;
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "application/x-www-form-urlencoded",
            b"a=1&b=%20two".to_vec(),
        ),
        ("application/xml", b"<x a='1'>\n  <y/>\n</x>".to_vec()),
        ("text/plain", "caf\u{e9} \u{2603}".as_bytes().to_vec()),
        (
            "application/octet-stream",
            vec![0, 159, 146, 150, 255, 0, 10],
        ),
    ];
    for (content_type, bytes) in cases {
        let r = server
            .client
            .post(server.ingest_url("/in/demo?x=1&y=two"))
            .header("content-type", content_type)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{content_type}");
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
        assert_eq!(event["query"], "x=1&y=two");
        let stored = match (event["body"].as_str(), event["body_base64"].as_str()) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(b64)) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap()
            }
            other => panic!("neither body nor body_base64: {other:?}"),
        };
        assert_eq!(stored, bytes, "{content_type}");
        assert_eq!(event["body_size"], bytes.len());
    }
}

#[tokio::test]
async fn unknown_source_is_404_and_names_the_fix() {
    let server = TestServer::start(DEMO).await;
    let r = server.post("nope", &[], "{}").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_source");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[sources.nope]")
    );
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let server = TestServer::start(
        r#"
        [sources.demo]
        methods = ["POST"]
        "#,
    )
    .await;
    let r = server
        .client
        .get(server.ingest_url("/in/demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = server
        .client
        .put(server.ingest_url("/in/demo"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn oversized_body_is_413_before_it_is_read() {
    // A long read timeout: if the server waited for the body, the answer would not come.
    let server = TestServer::start(&format!("[server]\nread_timeout = \"60s\"\n{DEMO}")).await;
    let mut stream = TcpStream::connect(server.ingest).await.unwrap();
    stream
        .write_all(b"POST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n")
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream))
        .await
        .expect("413 comes at once, without waiting for the body");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn oversized_streamed_body_is_413() {
    let server = TestServer::start(DEMO).await;
    // Chunked, so no Content-Length announces the size.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'x'; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));
    let r = server
        .client
        .post(server.ingest_url("/in/demo"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
    // Nothing was stored.
    let list = server.admin_json("/api/v1/events").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn store_that_cannot_commit_gets_503_with_retry_after_then_recovers() {
    let server = TestServer::start(&format!(
        "[storage]\nurl = \"sqlite://{{db}}\"\nbusy_timeout = \"100ms\"\nretry_after = \"7s\"\n{DEMO}"
    ))
    .await;
    // Another process holds the write lock: the writer cannot commit.
    let blocker = rusqlite::Connection::open(&server.db_path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = server.post("demo", &[], "while locked").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable");
    blocker.execute_batch("ROLLBACK").unwrap();

    // Nothing half-stored, and the next request commits.
    let r = server.post("demo", &[], "after unlock").await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = server.admin_json("/api/v1/events").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["body"], "after unlock");
}

#[tokio::test]
async fn custom_success_answer() {
    let server = TestServer::start(
        r#"
        [sources.shop]
        response = { status = 202, body = "<ok id='{id}'/>", content_type = "application/xml" }
        "#,
    )
    .await;
    let r = server.post("shop", &[], "x").await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["content-type"], "application/xml");
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("<ok id='evt_") && text.ends_with("'/>"),
        "{text}"
    );
}

/// Checks a 431: JSON, its message holding `names` (the limit to raise).
async fn header_error(r: reqwest::Response, names: &str) {
    assert_eq!(r.status(), 431);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(names), "{body}");
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431_in_json() {
    let server = TestServer::start(&format!(
        "[server]\nmax_headers = 20\nmax_header_bytes = \"8KiB\"\n{DEMO}"
    ))
    .await;
    let mut req = server.client.post(server.ingest_url("/in/demo")).body("x");
    for i in 0..40 {
        req = req.header(format!("x-h{i}"), "v");
    }
    header_error(req.send().await.unwrap(), "server.max_headers").await;

    // One header larger than the whole allowance.
    let big = "v".repeat(20_000);
    let r = server
        .client
        .post(server.ingest_url("/in/demo"))
        .header("x-big", big.as_str())
        .body("x")
        .send()
        .await
        .unwrap();
    header_error(r, "server.max_header_bytes").await;

    // The request line counts: a long query string is no way around the limit.
    let long_query = format!("/in/demo?q={}", "a".repeat(9_000));
    let r = server
        .client
        .post(server.ingest_url(&long_query))
        .body("x")
        .send()
        .await
        .unwrap();
    header_error(r, "request line and headers").await;

    // The admin listener answers the same way.
    let mut req = server.client.get(server.admin_url("/api/v1/sources"));
    for i in 0..40 {
        req = req.header(format!("x-h{i}"), "v");
    }
    header_error(req.send().await.unwrap(), "server.max_headers").await;

    // Far past the limit, hyper stops reading and answers 431 itself.
    let mut stream = TcpStream::connect(server.ingest).await.unwrap();
    let head = format!(
        "POST /in/demo HTTP/1.1\r\nhost: x\r\nx-big: {}\r\ncontent-length: 1\r\n\r\nx",
        "v".repeat(200_000)
    );
    // The server may stop reading (and close) before the whole head is written.
    let _ = stream.write_all(head.as_bytes()).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // Within the caps all is well, and nothing refused was stored.
    assert_eq!(
        server.post("demo", &[("x-ok", "1")], "x").await.status(),
        200
    );
    let events = server.admin_json("/api/v1/events").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1, "{events}");
}

#[tokio::test]
async fn slow_senders_are_cut_off() {
    let server = TestServer::start(&format!("[server]\nread_timeout = \"300ms\"\n{DEMO}")).await;

    // Headers that never finish: the connection is closed.
    let mut stream = TcpStream::connect(server.ingest).await.unwrap();
    stream
        .write_all(b"POST /in/demo HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a stalled head must be cut off");

    // A body that never finishes: 408.
    let mut stream = TcpStream::connect(server.ingest).await.unwrap();
    stream
        .write_all(b"POST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start(DEMO).await;
    for path in ["/healthz", "/readyz"] {
        let r = server
            .client
            .get(server.ingest_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = server
        .client
        .get(server.ingest_url("/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Reads up to the end of a response head.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(_) => head.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn announced_but_unsent_bodies_hold_no_budget() {
    // 64 KiB of budget; ten senders announce 60 KiB each and send nothing.
    let server = TestServer::start(
        "[server]\nmax_inflight_bytes = \"64KiB\"\nread_timeout = \"30s\"\n[sources.demo]\nmax_body = \"60KiB\"\n",
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(server.ingest).await.unwrap();
        s.write_all(
            b"POST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 61440\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        // "100 Continue" means the handler is reading the body: past any reservation.
        let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut s))
            .await
            .expect("100 Continue");
        assert!(head.starts_with("HTTP/1.1 100"), "{head}");
        stalled.push(s);
    }
    // A real sender still gets through: the stalled ones are charged for what they sent.
    let r = server.post("demo", &[], vec![b'y'; 50 * 1024]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn spent_body_budget_is_503_not_memory() {
    let server = TestServer::start(
        "[server]\nmax_inflight_bytes = \"4KiB\"\nread_timeout = \"30s\"\n[sources.demo]\nmax_body = \"3KiB\"\n",
    )
    .await;
    // One sender has sent 2 KiB of a 3 KiB body and stalls: its buffer, allocated to the
    // declared 3 KiB, is what it holds of the budget.
    let mut holder = TcpStream::connect(server.ingest).await.unwrap();
    holder
        .write_all(b"POST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 3072\r\n\r\n")
        .await
        .unwrap();
    holder.write_all(&[b'z'; 2048]).await.unwrap();
    // No signal says when the server has read those bytes, so ask until it has (bounded):
    // a 2 KiB body cannot fit beside them in a 4 KiB budget.
    let mut answer = None;
    for _ in 0..200 {
        let r = server.post("demo", &[], vec![b'y'; 2048]).await;
        if r.status() == 503 {
            answer = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = answer.expect("the budget was never spent");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );
    // Small requests still fit beside the held 3 KiB.
    assert_eq!(server.post("demo", &[], "small").await.status(), 200);
    // Once the first finishes, its share is free again.
    holder.write_all(&[b'z'; 1024]).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut holder))
        .await
        .expect("answered");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        server.post("demo", &[], vec![b'y'; 2048]).await.status(),
        200
    );
}

#[tokio::test]
async fn a_stalled_commit_is_503_after_the_commit_timeout() {
    // The writer waits up to 30s for the lock, but senders hear back after 300ms.
    let server = TestServer::start(&format!(
        "[storage]\nurl = \"sqlite://{{db}}\"\nbusy_timeout = \"30s\"\ncommit_timeout = \"300ms\"\n{DEMO}"
    ))
    .await;
    let blocker = rusqlite::Connection::open(&server.db_path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    let r = server.post("demo", &[], "stalled").await;
    assert_eq!(r.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(10));
    blocker.execute_batch("ROLLBACK").unwrap();
    // The stalled write may land once the lock is gone: the sender's retry is then
    // answered as a duplicate of it, with the same success status.
    let r = server.post("demo", &[], "stalled").await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["body"], "stalled");
    // Landed once: the retry was a duplicate, not a second event.
    assert_eq!(event["duplicates"], 1);
    let list = server.admin_json("/api/v1/events").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_source_names_are_json_404() {
    let server = TestServer::start(DEMO).await;
    let r = server
        .client
        .post(server.ingest_url("/in/%FF%FE"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_source"
    );
}

#[tokio::test]
async fn a_deliver_only_process_turns_senders_away() {
    let server = TestServer::start_as(DEMO, forebay::config::Role::Deliver).await;
    let r = server.post("demo", &[], "x").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_an_ingest_process");
    let r = server
        .client
        .get(server.ingest_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Everything a connection sends back until the server closes it (10 s at most).
async fn exchange(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.ingest).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A request with both Content-Length and Transfer-Encoding is read as chunked (RFC 9112)
/// and its connection closed after one answer, so whatever follows on it (a smuggled
/// second request) is never read; two different Content-Lengths are refused.
#[tokio::test]
async fn requests_that_could_smuggle_another_are_answered_once_and_closed() {
    let server = TestServer::start(DEMO).await;
    let answer = exchange(
        &server,
        b"POST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
          0\r\n\r\nPOST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 8\r\n\r\nsmuggled",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");

    let answer = exchange(
        &server,
        b"POST /in/demo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 8\r\n\r\nsmuggled",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let events = server.admin_json("/api/v1/events?include_body=true").await;
    let events = events["data"].as_array().unwrap();
    assert_eq!(
        events.len(),
        1,
        "only the first request was stored: {events:?}"
    );
    assert_eq!(events[0]["body_size"], 0);
}

/// A source name that could never be configured (a path trick) is 404 with a message
/// about names, not advice to configure it.
#[tokio::test]
async fn a_path_trick_is_no_source() {
    let server = TestServer::start(DEMO).await;
    let answer = exchange(
        &server,
        b"POST /in/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("letters, digits"), "{answer}");
    assert!(!answer.contains("[sources."), "{answer}");
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_for_one_to_close() {
    let server = TestServer::start(&format!("[server]\nmax_connections = 2\n{DEMO}")).await;
    let request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.ingest).await.unwrap();
        stream.write_all(request).await.unwrap();
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    // The kernel takes the third connection, but forebay does not read it yet.
    let mut third = TcpStream::connect(server.ingest).await.unwrap();
    third.write_all(request).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), read_head(&mut third)).await;
    assert!(early.is_err(), "answered past the cap: {early:?}");
    // One closes: the waiting connection is served.
    drop(open.pop());
    let answer = tokio::time::timeout(Duration::from_secs(10), read_head(&mut third))
        .await
        .expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // The admin listener has a cap of its own, untouched by the ingest one.
    let r = server
        .client
        .get(server.admin_url("/api/v1/sources"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_source_past_its_rate_limit_gets_429_before_its_body_is_read() {
    let server = TestServer::start(
        "[sources.limited]\nrate_limit = \"1/m\"\nburst = 2\n[sources.open]\n\
         [sources.per_address]\nrate_limit_per_address = \"1/m\"\n",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(server.post("limited", &[], "{}").await.status(), 200);
    }
    // Past the burst: refused at once, though the body (10 MiB announced) never comes.
    let mut s = TcpStream::connect(server.ingest).await.unwrap();
    s.write_all(b"POST /in/limited HTTP/1.1\r\nhost: x\r\ncontent-length: 10485760\r\n\r\n")
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut s))
        .await
        .expect("an answer without the body");
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap_or_else(|| panic!("no Retry-After in {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let refusing = std::time::Instant::now();
    let mut refused = 1;
    for _ in 0..20 {
        let r = server.post("limited", &[], "{}").await;
        assert_eq!(r.status(), 429);
        let error = r.json::<Value>().await.unwrap()["error"].clone();
        assert_eq!(error["code"], "rate_limited");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("at most 1/m (rate_limit, burst 2)")
                && message.contains("retry after"),
            "{message}"
        );
        refused += 1;
    }
    // Another source is not held back.
    assert_eq!(server.post("open", &[], "{}").await.status(), 200);
    // One address past its own limit.
    assert_eq!(server.post("per_address", &[], "{}").await.status(), 200);
    let r = server.post("per_address", &[], "{}").await;
    assert_eq!(r.status(), 429);
    let message = r.json::<Value>().await.unwrap()["error"]["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("from one address (rate_limit_per_address); 127.0.0.1"),
        "{message}"
    );

    // Every refusal counted; one a second kept with the rejected requests.
    let metrics = server.metrics_text().await;
    let counted = format!(
        "forebay_ingest_rate_limited_total{{source=\"limited\",scope=\"source\"}} {refused}"
    );
    assert!(metrics.contains(&counted), "no {counted} in\n{metrics}");
    // One kept per second the refusals spanned (the first, before the timer, included).
    let seconds = refusing.elapsed().as_secs() as usize;
    let kept = server.rejected_of("limited").await;
    assert!(
        !kept.is_empty() && kept.len() <= seconds + 2 && kept.len() < refused,
        "{} kept of {refused} refusals over {seconds} s",
        kept.len()
    );
    let reason = kept[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("rate limited: "), "{reason}");
}
