//! The baseline for the PostgreSQL ingest benchmark: a hyper server that stores each
//! request (the same event and delivery rows forebay writes) in a transaction of its
//! own on a pool of 16 connections, and answers 200 after its COMMIT. This is the
//! "one commit per request" design that group commit is measured against.
//!
//! Usage: `cargo run --release --example one-commit-server -- 127.0.0.1:18096 \
//!         postgres://root@127.0.0.1:5432/test bench_one_commit`

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS events (
        id text PRIMARY KEY, position bigserial, source text NOT NULL,
        received_at bigint NOT NULL, method text NOT NULL, path text NOT NULL,
        headers bytea NOT NULL, body bytea NOT NULL, dedup_key text NOT NULL);
    CREATE INDEX IF NOT EXISTS events_by_dedup_key ON events (source, dedup_key, received_at);
    CREATE TABLE IF NOT EXISTS deliveries (
        id text PRIMARY KEY, event_id text NOT NULL REFERENCES events (id),
        destination text NOT NULL, state text NOT NULL, next_attempt_at bigint NOT NULL);";

async fn answer(pool: Pool, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers: Vec<u8> = req
        .headers()
        .iter()
        .flat_map(|(n, v)| [n.as_str().as_bytes(), b": ", v.as_bytes(), b"\r\n"].concat())
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let stored = async {
        let mut client = pool.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        // Dedup like forebay: the latest event with this key, then the insert.
        let key = format!("{:x}", body.len());
        tx.query(
            "SELECT id FROM events WHERE source = 'bench' AND dedup_key = $1 ORDER BY received_at DESC LIMIT 1",
            &[&key],
        )
        .await
        .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO events (id, source, received_at, method, path, headers, body, dedup_key)
             VALUES ($1, 'bench', $2, 'POST', $3, $4, $5, $6)",
            &[&id, &now, &path, &headers, &&body[..], &id],
        )
        .await
        .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO deliveries (id, event_id, destination, state, next_attempt_at)
             VALUES ($1, $2, 'sink', 'pending', $3)",
            &[&format!("dlv_{}", uuid::Uuid::now_v7().simple()), &id, &now],
        )
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())
    };
    let (status, text) = match stored.await {
        Ok(()) => (StatusCode::OK, format!(r#"{{"id":"{id}"}}"#)),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
    };
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18096".to_owned());
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_owned());
    let schema = args.next().unwrap_or_else(|| "bench_one_commit".to_owned());
    let mut config: tokio_postgres::Config = url.parse()?;
    config.options(format!("-c search_path={schema} -c synchronous_commit=on"));
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(16)
        .runtime(Runtime::Tokio1)
        .build()?;
    {
        let client = pool.get().await?;
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}; {SCHEMA}"))
            .await?;
    }
    let listener = TcpListener::bind(&addr).await?;
    println!("one-commit-per-request server listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(pool.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
