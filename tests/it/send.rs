//! `forebay send`: the real binary signs a file with a source's `verify` settings and a
//! real server on port 0 verifies it, for every built-in verifier kind; a wrong secret
//! or a stale timestamp is refused with the server's message.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use serde_json::Value;

use crate::support::TestServer;
use crate::support::binary::run_forebay;

/// One source per built-in kind. The generic `hmac` one turns every knob.
const SOURCES: &str = r#"
[sources.plain]
verify = { kind = "none" }
[sources.stripe]
verify = { kind = "stripe", secret = ["whsec_new", "whsec_old"] }
[sources.github]
verify = { kind = "github", secret = "gh-secret" }
[sources.sw]
verify = { kind = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
[sources.custom]
verify = { kind = "hmac", secret = "c-secret", header = "X-Sig", algorithm = "sha512", encoding = "base64", prefix = "v1=", timestamp_header = "X-Ts", signed = "{timestamp}:{header:X-Event-Id}:{body}" }
[sources.basic]
verify = { kind = "basic", username = "u", password = "p" }
[sources.bearer]
verify = { kind = "bearer", token = "tok" }
"#;

/// The same sources as a sender with the wrong secrets would have them.
const WRONG: &str = r#"
[sources.plain]
verify = { kind = "none" }
[sources.stripe]
verify = { kind = "stripe", secret = "whsec_stale" }
[sources.github]
verify = { kind = "github", secret = "gh-secreT" }
[sources.sw]
verify = { kind = "standard-webhooks", secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD" }
[sources.custom]
verify = { kind = "hmac", secret = "c-secreT", header = "X-Sig", algorithm = "sha512", encoding = "base64", prefix = "v1=", timestamp_header = "X-Ts", signed = "{timestamp}:{header:X-Event-Id}:{body}" }
[sources.basic]
verify = { kind = "basic", username = "u", password = "P" }
[sources.bearer]
verify = { kind = "bearer", token = "toK" }
"#;

const KINDS: [&str; 7] = [
    "plain", "stripe", "github", "sw", "custom", "basic", "bearer",
];

const BODY: &str = "{\"id\":\"evt_send\",\"note\":\"caf\u{e9} \u{2713}\"}\n";

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// Runs `forebay send` off the runtime's threads (the server answers on them).
async fn send(args: &[&str]) -> Output {
    let args: Vec<String> = std::iter::once("send")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_forebay(&refs, &[])
    })
    .await
    .expect("forebay send ran")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

#[tokio::test]
async fn every_kind_passes_verification_and_the_body_is_stored_byte_for_byte() {
    let server = TestServer::start(SOURCES).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "forebay.toml", SOURCES);
    let file = write(dir.path(), "payload.json", BODY);
    let to = format!("http://{}", server.ingest);
    for source in KINDS {
        let out = send(&[
            source,
            file.to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
            "--to",
            &to,
            "--json",
        ])
        .await;
        let report = json_out(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{source}: {report}\nstderr: {}",
            text(&out.stderr)
        );
        assert_eq!(report["status"], 200, "{source}: {report}");
        assert_eq!(report["warning"], Value::Null, "{source}: {report}");
        let id = report["id"].as_str().expect("an event id");
        let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
        assert_eq!(event["source"], source);
        assert_eq!(event["body"], BODY, "{source}: the body changed on the way");
        assert_eq!(event["headers"]["content-type"], "application/json");
        // Credentials are never shown in the report.
        if matches!(source, "basic" | "bearer") {
            assert_eq!(report["signed_headers"]["authorization"], "<redacted>");
            assert!(!text(&out.stdout).contains("tok"), "{report}");
        }
    }

    // A body that is not text, under the scheme with the most knobs.
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let file = write(dir.path(), "payload.bin", &binary);
    let out = send(&[
        "custom",
        file.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "--to",
        &to,
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = json_out(&out)["id"].as_str().unwrap().to_owned();
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(event["body_base64"].as_str().expect("a binary body"))
        .unwrap();
    assert_eq!(stored, binary);
    assert_eq!(event["headers"]["content-type"], "application/octet-stream");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_the_servers_message() {
    let server = TestServer::start(SOURCES).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "forebay.toml", WRONG);
    let file = write(dir.path(), "payload.json", BODY);
    let to = format!("http://{}", server.ingest);
    for source in KINDS.into_iter().filter(|s| *s != "plain") {
        let out = send(&[
            source,
            file.to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
            "--to",
            &to,
        ])
        .await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{source}: {stderr}");
        let reason = if matches!(source, "basic" | "bearer") {
            "credentials do not match"
        } else {
            "no signature matched any configured secret"
        };
        assert!(
            stderr.contains(&format!("401 Unauthorized: verification failed: {reason}")),
            "{source}: {stderr}"
        );
    }
    let rejected = server.admin_json("/api/v1/rejected").await;
    assert_eq!(
        rejected["data"].as_array().map(Vec::len),
        Some(KINDS.len() - 1)
    );
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_and_a_fresh_one_passes() {
    let server = TestServer::start(SOURCES).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "forebay.toml", SOURCES);
    let file = write(dir.path(), "payload.json", BODY);
    let to = format!("http://{}", server.ingest);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for source in ["stripe", "sw", "custom"] {
        let stale = (now - 3600).to_string();
        let args = [
            source,
            file.to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
            "--to",
            &to,
            "--timestamp",
            &stale,
        ];
        let out = send(&args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{source}: {stderr}");
        assert!(
            stderr.contains("in the past, outside the 300s tolerance"),
            "{source}: {stderr}"
        );
        let fresh = now.to_string();
        let out = send(&[&args[..6], &["--timestamp", &fresh]].concat()).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{source}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn given_headers_and_ids_are_signed_sent_and_used_for_dedup() {
    let server = TestServer::start(SOURCES).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "forebay.toml", SOURCES);
    let file = write(dir.path(), "payload.json", BODY);
    let to = format!("http://{}", server.ingest);
    let base = [
        file.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "--to",
        &to,
    ];

    // GitHub: the delivery id is the dedup key, the event name is the caller's.
    let github = |id: &'static str| {
        let mut args = vec!["github"];
        args.extend(base);
        args.extend(["--id", id, "-H", "X-GitHub-Event: push", "--json"]);
        args
    };
    let first = json_out(&send(&github("72d3162e-cc78-11e3-81ab-4c9367dc0958")).await);
    let again = json_out(&send(&github("72d3162e-cc78-11e3-81ab-4c9367dc0958")).await);
    let other = json_out(&send(&github("0b1c2d3e-cc78-11e3-81ab-4c9367dc0958")).await);
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(again["id"], first["id"], "a redelivery is the same event");
    assert_ne!(other["id"], first["id"]);
    let event = server
        .admin_json(&format!("/api/v1/events/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(event["headers"]["x-github-event"], "push");
    assert_eq!(
        event["headers"]["x-github-delivery"],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(event["dedup_key"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");

    // The hmac template signs X-Event-Id: the caller's value when given.
    let mut args = vec!["custom"];
    args.extend(base);
    args.extend(["-H", "X-Event-Id: order-17", "--json"]);
    let out = send(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = json_out(&out)["id"].as_str().unwrap().to_owned();
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["headers"]["x-event-id"], "order-17");

    // Standard Webhooks refuses an id with `.` before sending anything.
    let mut args = vec!["sw"];
    args.extend(base);
    args.extend(["--id", "msg.1"]);
    let out = send(&args).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("webhook-id"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn the_default_url_is_the_ingest_listener_and_no_server_exits_3() {
    let server = TestServer::start(SOURCES).await;
    let dir = tempfile::tempdir().unwrap();
    // The file a server would run with: all addresses, the test server's port.
    let listen = format!(
        "[server]\ningest_listen = \"0.0.0.0:{}\"\n{SOURCES}",
        server.ingest.port()
    );
    let config = write(dir.path(), "forebay.toml", listen);
    let file = write(dir.path(), "payload.json", BODY);
    let out = send(&[
        "github",
        file.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "POST http://127.0.0.1:{}/in/github",
            server.ingest.port()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("signed as github (x-hub-signature-256"),
        "{stdout}"
    );
    assert!(stdout.contains("200 OK: event evt_"), "{stdout}");

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let to = format!("http://127.0.0.1:{port}");
    let out = send(&[
        "github",
        file.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "--to",
        &to,
    ])
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains(&format!("cannot reach {to}/in/github")),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn mistakes_are_reported_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "forebay.toml", SOURCES);
    let file = write(dir.path(), "payload.json", BODY);
    let (config, file) = (config.to_str().unwrap(), file.to_str().unwrap());
    // No server is needed: nothing gets that far.
    let to = "http://127.0.0.1:9";
    let cases: [(&[&str], &str); 4] = [
        (
            &["shopify", file, "-c", config, "--to", to],
            "no source named \"shopify\"; the sources are: basic, bearer, custom, github, plain, stripe, sw",
        ),
        (
            &[
                "github",
                "/nonexistent/payload.json",
                "-c",
                config,
                "--to",
                to,
            ],
            "cannot read /nonexistent/payload.json",
        ),
        (
            &[
                "github",
                file,
                "-c",
                config,
                "--to",
                to,
                "-H",
                "X-GitHub-Event push",
            ],
            "has no `:`",
        ),
        (
            &["github", file, "-c", config, "--to", "not a url"],
            "is not a URL",
        ),
    ];
    for (args, expected) in cases {
        let out = send(args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
