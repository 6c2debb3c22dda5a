//! `forebay send SOURCE FILE`: posts a file's bytes to an ingest endpoint, signed the way
//! the source's sender would sign them (with the source's own `verify` settings and the
//! first of its secrets), so that verification can be tested end to end.
//!
//! The signing itself is [`crate::ingest::verify::sign_as`]; this file reads the inputs,
//! sends, and reports.
//!
//! Exit codes: 0 the server accepted the payload (2xx); 1 nothing was sent (invalid
//! configuration, unknown source, unreadable FILE, a bad `--header` or `--to`, or a
//! payload that cannot be signed); 3 no usable answer (the server cannot be reached, the
//! request timed out, or it answered neither 2xx nor 4xx); 4 the server refused it (4xx),
//! with its message.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::{Value, json};

use crate::config::{Config, Source};
use crate::ingest::request::Unverified;
use crate::ingest::verify::VerifyConfig;
use crate::ingest::verify::sign_as::{Message, Signer};

/// Most bytes of the server's answer that are read and shown.
const ANSWER_LIMIT: usize = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The source to send to (`[sources.NAME]`); its `verify` section says how to sign.
    pub source: String,
    /// The file holding the body, sent byte for byte.
    pub file: PathBuf,
    /// Base URL of forebay's ingest listener; the payload goes to `URL/in/SOURCE`.
    /// Default: `http://` and `server.ingest_listen` (0.0.0.0 and :: become loopback).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// An extra request header, `Name: value`; may be repeated. Headers the scheme reads
    /// but does not compute (`X-GitHub-Event`, `webhook-id`, an hmac template's
    /// `{header:Name}`) are signed with the value given here; signatures and timestamps
    /// are always computed.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The body's Content-Type (default: application/json when FILE is JSON, else
    /// application/octet-stream).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Sign with this Unix time in seconds instead of now, e.g. to check that a stale
    /// request is refused.
    #[arg(long, value_name = "SECS")]
    pub timestamp: Option<u64>,
    /// The message id, for schemes that send one (`X-GitHub-Delivery`, `webhook-id`).
    /// Default: a new UUID. Sending one id twice tests dedup.
    #[arg(long)]
    pub id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Everything needed to send, settled before anything goes on the wire.
struct Prepared {
    url: reqwest::Url,
    kind: &'static str,
    body: Vec<u8>,
    headers: HeaderMap,
    /// The headers the signer set, to show.
    signed: HeaderMap,
    /// Set when the signed request does not pass the loaded configuration's verifier.
    warning: Option<String>,
}

/// How the exchange ended.
enum Outcome {
    Answered {
        status: u16,
        reason: String,
        answer: Answer,
    },
    Unreachable(String),
}

/// The server's answer, as far as it is understood.
enum Answer {
    /// `{"id": "evt_…"}`.
    EventId(String),
    /// `{"error": {"code": …, "message": …}}`.
    Error {
        code: String,
        message: String,
    },
    Json(Value),
    Text(String),
}

pub async fn run(config_path: &Path, config: &Config, args: SendArgs) -> ExitCode {
    let prepared = match prepare(config_path, config, &args) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("forebay send: {message}");
            return ExitCode::from(1);
        }
    };
    if let Some(warning) = &prepared.warning
        && !args.json
    {
        eprintln!("warning: {warning}");
    }
    let outcome = post(&prepared).await;
    if args.json {
        println!("{:#}", json_report(&args.source, &prepared, &outcome));
    } else {
        print_report(&prepared, &outcome);
    }
    match outcome {
        Outcome::Answered { status, .. } if (200..300).contains(&status) => ExitCode::SUCCESS,
        Outcome::Answered { status, .. } if (400..500).contains(&status) => ExitCode::from(4),
        _ => ExitCode::from(3),
    }
}

fn prepare(config_path: &Path, config: &Config, args: &SendArgs) -> Result<Prepared, String> {
    let Some(source) = config.sources.get(&args.source) else {
        let names: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        return Err(format!(
            "{}: no source named {:?}; the sources are: {}",
            config_path.display(),
            args.source,
            if names.is_empty() {
                "(none)".to_owned()
            } else {
                names.join(", ")
            }
        ));
    };
    let verify = verify_config(config_path, &args.source)?;
    let signer = Signer::new(&verify).map_err(|e| {
        format!(
            "{}: sources.{}.verify: {e}",
            config_path.display(),
            args.source
        )
    })?;
    let body = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let mut headers = parse_headers(&args.headers)?;
    if let Some(content_type) = &args.content_type {
        let value = HeaderValue::from_str(content_type)
            .map_err(|_| format!("--content-type {content_type:?} is not a valid header value"))?;
        headers.insert(header::CONTENT_TYPE, value);
    } else if !headers.contains_key(header::CONTENT_TYPE) {
        let guess = if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
            "application/json"
        } else {
            "application/octet-stream"
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(guess));
    }
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| u64::try_from(crate::clock::now_ms() / 1000).unwrap_or(0));
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    // A scheme that signs inside the body (Mailgun) sends a body with its signature.
    let body = signer
        .sign_body(&Message {
            body: &body,
            timestamp,
            id: &id,
            headers: &headers,
        })
        .map_err(|e| format!("cannot sign for source {:?}: {e}", args.source))?
        .unwrap_or(body);
    let signed = signer
        .sign(&Message {
            body: &body,
            timestamp,
            id: &id,
            headers: &headers,
        })
        .map_err(|e| format!("cannot sign for source {:?}: {e}", args.source))?;
    for (name, value) in &signed {
        headers.insert(name.clone(), value.clone());
    }
    let warning = self_check(source, &headers, &body, timestamp);
    Ok(Prepared {
        url: url(config, args)?,
        kind: signer.kind_name(),
        body,
        headers,
        signed,
        warning,
    })
}

/// The source's `verify` section as the file writes it. (The loaded [`Config`] holds only
/// the verifier built from it, whose secrets cannot be read back.)
fn verify_config(path: &Path, source: &str) -> Result<VerifyConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not valid TOML: {e}", path.display()))?;
    match table
        .get("sources")
        .and_then(|s| s.get(source))
        .and_then(|s| s.get("verify"))
    {
        None => Ok(VerifyConfig::None),
        Some(verify) => verify
            .clone()
            .try_into()
            .map_err(|e| format!("{}: sources.{source}.verify: {e}", path.display())),
    }
}

/// Runs the loaded configuration's own verifier on what is about to be sent, as if it
/// arrived at the signing time. It can differ from the file's `verify` section when a
/// `FOREBAY_SOURCES__…__VERIFY__…` variable overrides it; the server may also run with
/// another configuration, so a failure here is a warning, not a reason not to send.
fn self_check(source: &Source, headers: &HeaderMap, body: &[u8], timestamp: u64) -> Option<String> {
    let received_at_ms = i64::try_from(timestamp)
        .ok()
        .and_then(|t| t.checked_mul(1000))
        .unwrap_or(i64::MAX);
    let request = Unverified {
        source: source.name.clone(),
        method: http::Method::POST,
        path: format!("/in/{}", source.name),
        query: None,
        headers: headers.clone(),
        body: bytes::Bytes::copy_from_slice(body),
        remote_addr: None,
        received_at_ms,
    };
    source.verifier.verify(request).err().map(|rejected| {
        format!(
            "the signed request does not pass this configuration's verifier ({}); is a FOREBAY_SOURCES__…__VERIFY__… variable overriding the file? sending anyway",
            rejected.reason
        )
    })
}

fn parse_headers(raw: &[String]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for h in raw {
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!(
                "--header {h:?} has no `:`; write it as `Name: value`"
            ));
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header {h:?}: {:?} is not a header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header {h:?}: the value is not a valid header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn url(config: &Config, args: &SendArgs) -> Result<reqwest::Url, String> {
    let base = match &args.to {
        Some(to) => to.trim_end_matches('/').to_owned(),
        None => format!("http://{}", super::reachable(config.server.ingest_listen)),
    };
    let text = format!("{base}/in/{}", args.source);
    reqwest::Url::parse(&text)
        .map_err(|e| format!("{text:?} is not a URL ({e}); give --to like http://127.0.0.1:8080"))
}

async fn post(p: &Prepared) -> Outcome {
    // Redirects are answers to report, not to follow: following one would turn the POST
    // into a GET without the payload.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Unreachable(format!("cannot start an HTTP client: {}", chain(&e)));
        }
    };
    let sent = client
        .post(p.url.clone())
        .headers(p.headers.clone())
        .body(p.body.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            // reqwest's own message only repeats the URL; the causes say what went wrong.
            let why = match std::error::Error::source(&e) {
                Some(cause) => chain(cause),
                None => e.to_string(),
            };
            return Outcome::Unreachable(format!(
                "cannot reach {}: {why}; is forebay running there? (set --to)",
                p.url
            ));
        }
    };
    let status = response.status();
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                return Outcome::Unreachable(format!(
                    "{} answered {status} but the answer broke off: {}",
                    p.url,
                    chain(&e)
                ));
            }
        }
    }
    bytes.truncate(ANSWER_LIMIT);
    Outcome::Answered {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_owned(),
        answer: understand(&bytes),
    }
}

fn understand(bytes: &[u8]) -> Answer {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Answer::Text(String::from_utf8_lossy(bytes).trim().to_owned());
    };
    if let Some(id) = value.get("id").and_then(Value::as_str) {
        return Answer::EventId(id.to_owned());
    }
    let error = value.get("error");
    match error.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(message) => Answer::Error {
            code: error
                .and_then(|e| e.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            message: message.to_owned(),
        },
        None => Answer::Json(value),
    }
}

/// An error and its causes, `a: b: c` (reqwest's own message omits the cause).
fn chain(error: &dyn std::error::Error) -> String {
    crate::error_chain::Chain(error).to_string()
}

/// The signed headers for display; credentials are not shown.
fn shown_headers(signed: &HeaderMap) -> Vec<(String, String)> {
    signed
        .iter()
        .map(|(name, value)| {
            let value = if value.is_sensitive() {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

fn print_report(p: &Prepared, outcome: &Outcome) {
    let how = if p.signed.is_empty() {
        format!("unsigned (verify kind {})", p.kind)
    } else {
        let names: Vec<&str> = p.signed.keys().map(HeaderName::as_str).collect();
        format!("signed as {} ({})", p.kind, names.join(", "))
    };
    println!("POST {} with {} bytes, {how}", p.url, p.body.len());
    match outcome {
        Outcome::Unreachable(message) => eprintln!("forebay send: {message}"),
        Outcome::Answered {
            status,
            reason,
            answer,
        } => {
            let line = match answer {
                Answer::EventId(id) => format!("{status} {reason}: event {id}"),
                Answer::Error { message, .. } => format!("{status} {reason}: {message}"),
                Answer::Json(v) => format!("{status} {reason}: {v}"),
                Answer::Text(t) if t.is_empty() => format!("{status} {reason}"),
                Answer::Text(t) => format!("{status} {reason}: {t}"),
            };
            if (200..300).contains(status) {
                println!("{line}");
            } else {
                eprintln!("forebay send: the server answered {line}");
            }
        }
    }
}

fn json_report(source: &str, p: &Prepared, outcome: &Outcome) -> Value {
    let headers: serde_json::Map<String, Value> = shown_headers(&p.signed)
        .into_iter()
        .map(|(n, v)| (n, Value::String(v)))
        .collect();
    let mut report = json!({
        "url": p.url.as_str(),
        "source": source,
        "kind": p.kind,
        "bytes": p.body.len(),
        "signed_headers": headers,
        "warning": p.warning,
        "status": null,
        "id": null,
        "answer": null,
        "error": null,
    });
    match outcome {
        Outcome::Unreachable(message) => report["error"] = json!(message),
        Outcome::Answered { status, answer, .. } => {
            report["status"] = json!(status);
            match answer {
                Answer::EventId(id) => {
                    report["id"] = json!(id);
                    report["answer"] = json!({ "id": id });
                }
                Answer::Error { code, message } => {
                    report["error"] = json!(message);
                    report["answer"] = json!({ "error": { "code": code, "message": message } });
                }
                Answer::Json(v) => report["answer"] = v.clone(),
                Answer::Text(t) => report["answer"] = json!(t),
            }
        }
    }
    report
}
