//! The public HTTP path: forebay's ingest router (`ingest::router(IngestState::new(..))`
//! behind the header-limit layer, as `server::run` builds it) on a SQLite store in a
//! temporary directory, with a demo configuration of a few sources (no verification,
//! GitHub with a JSON response template, Stripe with a JSON-pointer dedup key, Slack's
//! and Meta's handshakes, a bearer token with a tiny `max_body`, a `jq:` dedup key).
//! Each input is one request, sent in process with `tower::ServiceExt::oneshot`: a
//! fuzzer-chosen method, path (mostly `/in/{source}`), query, headers and body, the body
//! optionally in chunks and optionally signed as the source's sender would.
//!
//! Input: a raw HTTP request (`common/raw_request.rs`) with these instructions:
//! - `X-Fuzz-Sign: 1`: sign as the sender of the source in the path would, now (headers
//!   above the line are seen by the signer, those below replace the signed ones).
//! - `X-Fuzz-Chunk: N`: send the body in chunks of N bytes.
//!
//! Checked: no panic, no `500`, and an answer within the request's deadline.
//!
//! The harness is built once. The store is replaced every `ROTATE` requests so its file
//! (in /dev/shm when there is one) stays small. `jq:` dedup keys run in sandbox
//! processes of this very executable: `init` turns it into one when started as such.

#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::middleware::from_fn_with_state;
use bytes::Bytes;
use forebay::config::Config;
use forebay::header_limits::{self, HeaderLimits};
use forebay::ingest::verify::VerifyConfig;
use forebay::ingest::verify::sign_as::{Message, Signer};
use forebay::ingest::{self, IngestState};
use forebay::routing::Programs;
use forebay::store::Store;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::{Corpus, fuzz_target};
use tokio::sync::Notify;
use tower::ServiceExt;

#[path = "common/raw_request.rs"]
mod raw_request;

/// Requests per store before it is closed and a fresh one opened.
const ROTATE: u64 = 20_000;

/// `[sources.NAME]` name and its `verify` table (the signer is built from it).
const SOURCES: &[(&str, &str)] = &[
    ("demo", r#"kind = "none""#),
    ("github", r#"kind = "github", secret = "gh-secret""#),
    ("stripe", r#"kind = "stripe", secret = "whsec_fuzz""#),
    ("slack", r#"kind = "slack", secret = "slack-secret""#),
    (
        "meta",
        r#"kind = "meta", secret = "meta-secret", verify_token = "meta-verify""#,
    ),
    ("tiny", r#"kind = "bearer", token = "tiny-token""#),
    ("keyed", r#"kind = "none""#),
];

fn config_text(dir: &std::path::Path) -> String {
    let verify = |name: &str| {
        let (_, inline) = SOURCES.iter().find(|(n, _)| *n == name).expect("a source");
        format!("verify = {{ {inline} }}")
    };
    format!(
        r#"
[server]
ingest_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_inflight_bytes = "8MiB"
max_header_bytes = "16KiB"
max_headers = 40
read_timeout = "2s"

[storage]
url = "sqlite://{db}"
commit_timeout = "5s"
rejected_body_limit = "1KiB"
retry_after = "1s"

[sources.demo]
{demo}
methods = ["POST", "PUT", "PATCH"]
max_body = "64KiB"

[sources.github]
{github}
[sources.github.response]
status = 202
body = '{{"ok":true,"id":"{{id}}"}}'
content_type = "application/json"

[sources.stripe]
{stripe}
dedup_key = "json:/id"
dedup_window = "1h"

[sources.slack]
{slack}

[sources.meta]
{meta}

[sources.tiny]
{tiny}
max_body = "16B"
dedup_key = "header:X-Request-Id"

[sources.keyed]
{keyed}
dedup_key = "jq:.body.id"

[destinations.sink]
kind = "http"
url = "http://127.0.0.1:9/hook"

[[routes]]
source = "demo"
destination = "sink"

[[routes]]
source = "github"
destination = "sink"
filter = '.body.action == "opened"'
"#,
        db = dir.join("forebay.db").display(),
        demo = verify("demo"),
        github = verify("github"),
        stripe = verify("stripe"),
        slack = verify("slack"),
        meta = verify("meta"),
        tiny = verify("tiny"),
        keyed = verify("keyed"),
    )
}

/// One store and the router on it.
struct Harness {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    router: Router,
    served: u64,
}

struct Shared {
    runtime: tokio::runtime::Runtime,
    signers: Vec<(&'static str, Signer)>,
    harness: Mutex<Option<Harness>>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        forebay::metrics::install();
        if debug() {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .try_init();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let signers = SOURCES
            .iter()
            .map(|(name, inline)| {
                #[derive(serde::Deserialize)]
                struct Source {
                    verify: VerifyConfig,
                }
                let config = toml::from_str::<Source>(&format!("verify = {{ {inline} }}"))
                    .expect("the verify table parses")
                    .verify;
                (*name, Signer::new(&config).expect("a signer"))
            })
            .collect();
        Shared {
            runtime,
            signers,
            harness: Mutex::new(None),
        }
    })
}

async fn open() -> Harness {
    let base = ["/dev/shm", "/tmp"]
        .into_iter()
        .find(|d| std::path::Path::new(d).is_dir())
        .unwrap_or("/tmp");
    let dir = tempfile::Builder::new()
        .prefix("forebay-fuzz-")
        .tempdir_in(base)
        .expect("a temporary directory");
    let config = Config::parse(&config_text(dir.path()), Vec::<(String, String)>::new())
        .unwrap_or_else(|e| panic!("the demo configuration does not load: {e}"));
    let store = forebay::server::open_store(&config.storage)
        .await
        .expect("the store opens");
    let state = IngestState::new(
        &config,
        store.clone(),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Programs::new(&config),
    );
    let limits = HeaderLimits {
        max_headers: config.server.max_headers,
        max_header_bytes: config.server.max_header_bytes,
    };
    let router = ingest::router(state).layer(from_fn_with_state(limits, header_limits::enforce));
    Harness {
        dir,
        store,
        router,
        served: 0,
    }
}

fuzz_target!(
    init: {
        if std::env::args().nth(1).as_deref() == Some(forebay::expr::SANDBOX_ARG) {
            // Started by `Programs` as a jq sandbox: be one (it ends the process).
            let _ = forebay::expr::sandbox_main();
            std::process::exit(70);
        }
    },
    |data: &[u8]| -> Corpus {
        let shared = shared();
        let Some(request) = request(shared, data) else {
            return Corpus::Reject;
        };
        let mut slot = shared.harness.lock().unwrap_or_else(|e| e.into_inner());
        shared.runtime.block_on(async {
            if slot.as_ref().is_none_or(|h| h.served >= ROTATE) {
                if let Some(old) = slot.take() {
                    old.store.close().await;
                    drop(old.router);
                    drop(old.dir);
                }
                *slot = Some(open().await);
            }
            let harness = slot.as_mut().expect("a harness");
            harness.served += 1;
            let router = harness.router.clone();
            let answer = tokio::time::timeout(Duration::from_secs(20), async move {
                let response = router.oneshot(request).await.expect("infallible");
                let status = response.status();
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                (status, body)
            })
            .await;
            let (status, body) = answer.unwrap_or_else(|_| panic!("no answer in 20s"));
            let body = body.expect("the answer body reads");
            if debug() {
                eprintln!("{status} {}", String::from_utf8_lossy(&body));
            }
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "500: {}",
                String::from_utf8_lossy(&body)
            );
        });
        Corpus::Keep
    }
);

/// `FOREBAY_FUZZ_DEBUG=1`: print each answer (to check seeds).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FOREBAY_FUZZ_DEBUG").is_some())
}

fn request(shared: &Shared, data: &[u8]) -> Option<Request<Body>> {
    let raw = raw_request::parse(data)?;
    if raw.body.len() > 256 * 1024 {
        return None;
    }
    let mut builder = Request::builder()
        .method(raw.method.clone())
        .uri(raw.target);
    let mut signing = None;
    let mut overrides = Vec::new();
    for (name, value) in &raw.headers {
        if name == "x-fuzz-sign" {
            let source = raw.target.strip_prefix("/in/").map(|rest| {
                let end = rest.find(['?', '/']).unwrap_or(rest.len());
                &rest[..end]
            });
            signing = source.and_then(|s| shared.signers.iter().find(|(name, _)| *name == s));
        }
        if raw_request::is_instruction(name) {
            continue;
        }
        if signing.is_some() {
            overrides.push((name.clone(), value.clone()));
        } else {
            builder = builder.header(name.clone(), value.clone());
        }
    }
    let mut body = raw.body.to_vec();
    if let Some((_, signer)) = signing {
        let caller = builder.headers_ref()?.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        let id = "msg_fuzz_1";
        let signed_body = signer.sign_body(&Message {
            body: &body,
            timestamp: now,
            id,
            headers: &caller,
        });
        if let Ok(Some(signed_body)) = signed_body {
            body = signed_body;
        }
        let message = Message {
            body: &body,
            timestamp: now,
            id,
            headers: &caller,
        };
        if let Ok(signed) = signer.sign(&message) {
            let headers = builder.headers_mut()?;
            for (name, value) in signed {
                if let Some(name) = name {
                    headers.insert(name, value);
                }
            }
        }
    }
    let headers = builder.headers_mut()?;
    for (name, value) in overrides {
        headers.insert(name, value);
    }
    let chunk: usize = raw
        .instruction("x-fuzz-chunk")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let body = if chunk == 0 || body.is_empty() {
        Body::from(body)
    } else {
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    };
    builder.body(body).ok()
}
