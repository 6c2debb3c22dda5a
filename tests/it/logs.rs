//! The real binary's log at its most verbose (`FOREBAY_LOG=trace`, dependencies included),
//! in both formats: lines about requests and deliveries name their source, destination
//! and ids; no line carries a credential, a secret of the configuration, or a body.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::binary::write_config;
use crate::support::receiver::Receiver;

const AUTHORIZATION: &str = "s3cr3t-auth";
const COOKIE: &str = "s3cr3t-cookie";
const PROXY_AUTHORIZATION: &str = "s3cr3t-proxy";
const VERIFIER_SECRET: &str = "whsec_s3cr3tVerifierKey";
/// `whsec_` and the base64 of `s3cr3t-signing-key`.
const SIGNING_SECRET: &str = "whsec_czNjcjN0LXNpZ25pbmcta2V5";
const ADMIN_TOKEN: &str = "s3cr3t-admin-token";
const WRONG_ADMIN_TOKEN: &str = "s3cr3t-wrong-token";
const BODY: &str = "s3cr3t-body";

/// Text that must never reach the log.
const NEVER: &[&str] = &[
    AUTHORIZATION,
    COOKIE,
    PROXY_AUTHORIZATION,
    VERIFIER_SECRET,
    "s3cr3tVerifierKey",
    SIGNING_SECRET,
    "czNjcjN0LXNpZ25pbmcta2V5",
    ADMIN_TOKEN,
    WRONG_ADMIN_TOKEN,
    BODY,
];

#[derive(Clone, Copy)]
enum Format {
    Human,
    Json,
}

#[tokio::test]
async fn json_logs_name_what_they_are_about_and_hold_no_secrets() {
    let log = run_scenario(Format::Json).await;
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    let field = |line: &Value, name: &str| line["fields"][name].as_str().map(str::to_owned);
    let rejected = lines
        .iter()
        .find(|l| {
            field(l, "source").as_deref() == Some("l_signed") && field(l, "rejected").is_some()
        })
        .unwrap_or_else(|| panic!("no line about the rejected request:\n{log}"));
    assert!(field(rejected, "rejected").unwrap().starts_with("rej_"));
    assert!(field(rejected, "reason").is_some());
    let failed = lines
        .iter()
        .find(|l| field(l, "message").as_deref() == Some("attempt failed"))
        .unwrap_or_else(|| panic!("no line about the failed attempt:\n{log}"));
    assert_eq!(field(failed, "destination").as_deref(), Some("l_hook"));
    assert!(field(failed, "route").is_some());
    assert!(field(failed, "delivery").unwrap().starts_with("dlv_"));
    assert!(field(failed, "event").unwrap().starts_with("evt_"));
}

#[tokio::test]
async fn human_logs_name_what_they_are_about_and_hold_no_secrets() {
    let log = run_scenario(Format::Human).await;
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal"
    );
    assert!(
        log.lines().any(|l| l.contains("rejected a request")
            && l.contains("l_signed")
            && l.contains("rej_")),
        "no line about the rejected request:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("attempt failed")
            && l.contains("l_hook")
            && l.contains("dlv_")
            && l.contains("evt_")),
        "no line about the failed attempt:\n{log}"
    );
}

/// Serves with a verifying source, a signing destination and an admin token; sends
/// credentials, a passing and a failing signature, admin calls with a right and a wrong
/// token; delivers once after a failure; stops; checks the whole log for secrets and
/// returns it.
async fn run_scenario(format: Format) -> String {
    let mut receiver = Receiver::start(&[500]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
            [sources.l_open]
            [sources.l_signed]
            verify = {{ kind = "stripe", secret = "{VERIFIER_SECRET}" }}
            [destinations.l_hook]
            kind = "http"
            url = "{url}"
            sign = {{ secret = "{SIGNING_SECRET}" }}
            retry = {{ schedule = ["20ms"] }}
            [[routes]]
            source = "l_open"
            destination = "l_hook"
            [[routes]]
            source = "l_signed"
            destination = "l_hook"
            "#,
            url = receiver.url
        ),
    );
    // The admin token goes in through the file's [server] table, which write_config owns.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[server]\n",
        &format!("[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut server = Serving::start(&config, format);
    let client = crate::support::client();
    let ingest = |source: &str| format!("http://{}/in/{source}", server.ingest);
    let credentials = [
        ("authorization", format!("Bearer {AUTHORIZATION}")),
        ("cookie", format!("session={COOKIE}")),
        (
            "proxy-authorization",
            format!("Basic {PROXY_AUTHORIZATION}"),
        ),
    ];
    let post = |url: String, extra: Vec<(&'static str, String)>, body: String| {
        let mut request = client.post(url).body(body);
        for (name, value) in credentials.iter().cloned().chain(extra) {
            request = request.header(name, value);
        }
        request.send()
    };
    let body = |n: u32| format!("{{\"marker\":\"{BODY}\",\"n\":{n}}}");

    let r = post(ingest("l_open"), vec![], body(1)).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(ingest("l_open"), vec![], body(1)).await.unwrap();
    assert_eq!(r.status(), 200, "a duplicate");
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = body(2);
    let signature = format!("t={t},v1={}", stripe_signature(VERIFIER_SECRET, t, &signed));
    let r = post(
        ingest("l_signed"),
        vec![("stripe-signature", signature)],
        signed,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let forged = format!("t={t},v1={}", stripe_signature("whsec_guess", t, &body(3)));
    let r = post(
        ingest("l_signed"),
        vec![("stripe-signature", forged)],
        body(3),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(ingest("l_nowhere"), vec![], body(4)).await.unwrap();
    assert_eq!(r.status(), 404);

    let admin = format!("http://{}/api/v1/events", server.admin);
    for (token, status) in [(ADMIN_TOKEN, 200), (WRONG_ADMIN_TOKEN, 401)] {
        let r = client.get(&admin).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), status);
    }
    let metrics = format!("http://{}/metrics", server.admin);
    let r = client
        .get(&metrics)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Two events to deliver: one attempt fails (500) and is retried, then both arrive.
    for _ in 0..3 {
        receiver.next().await;
    }
    let log = server.stop().await;
    for secret in NEVER {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "{secret:?} is in the log:\n{}",
            leaks.join("\n")
        );
    }
    log
}

fn stripe_signature(secret: &str, t: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `forebay serve` with its log on a pipe that a thread drains (a full pipe would block
/// the server's logging).
struct Serving {
    child: Child,
    ingest: SocketAddr,
    admin: SocketAddr,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Serving {
    fn start(config: &std::path::Path, format: Format) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forebay"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .args([
                "--log-format",
                match format {
                    Format::Human => "human",
                    Format::Json => "json",
                },
            ])
            // Only what this test sets: a developer's FOREBAY_* must not change the run.
            .env_clear()
            .env("FOREBAY_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let mut child = command.spawn().expect("spawn forebay");
        let mut stderr = child.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).expect("the log is UTF-8");
            text
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.strip_prefix("http://"))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .parse()
                .expect("address")
        };
        Self {
            ingest: addr("ingest="),
            admin: addr("admin="),
            child,
            log: Some(log),
        }
    }

    /// SIGTERM, wait for the exit, and the whole log. Waits without blocking the
    /// runtime: the receiver in this test answers the last deliveries meanwhile.
    async fn stop(&mut self) -> String {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let mut status = None;
        for _ in 0..1000 {
            status = self.child.try_wait().expect("wait");
            if status.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let status = status.expect("forebay exits within 20s of SIGTERM");
        assert!(status.success(), "forebay exited with {status}");
        let log = self.log.take().expect("log");
        tokio::task::spawn_blocking(move || log.join().expect("log reader"))
            .await
            .expect("log reader task")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
