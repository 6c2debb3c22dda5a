//! The client commands, as a user runs them: the real `forebay` binary against a real
//! server on port 0 and a recording receiver.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout};

use crate::support::TestServer;
use crate::support::binary::run_forebay;
use crate::support::receiver::Receiver;

/// Runs the binary to its end with a clean environment (off the runtime's threads, so the
/// in-process server keeps serving).
async fn forebay(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_forebay(&args, &envs)
    })
    .await
    .expect("forebay ran")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing what the command said when it differs.
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(o), stderr(o)))
}

/// `--server URL` for `server`.
fn admin(server: &TestServer) -> String {
    format!("http://{}", server.admin)
}

const ARCHIVE: &str = r#"
[sources.a]
methods = ["POST", "PUT"]
[sources.b]
"#;

#[tokio::test]
async fn export_then_replay_from_file_delivers_every_event_byte_identical() {
    let server = TestServer::start(ARCHIVE).await;
    let binary: Vec<u8> = vec![0x00, 0xff, 0xfe, 0x80, b'\n', 0xc3, 0x28, 0x01];
    let form = "name=J%C3%B6rg&tags=a&tags=b&empty=";
    let json_body = r#"{"type": "push",  "n": 1}"#; // odd spacing survives
    let sent = [
        (
            server
                .post_for_id(
                    "a",
                    &[
                        ("content-type", "application/json"),
                        ("x-github-event", "push"),
                        ("authorization", "Bearer for-forebay-only"),
                    ],
                    json_body,
                )
                .await,
            "POST",
            json_body.as_bytes().to_vec(),
            "application/json",
        ),
        (
            {
                let r = server
                    .client
                    .put(server.ingest_url("/in/a"))
                    .header("content-type", "application/octet-stream")
                    .header("x-custom", "bin")
                    .body(binary.clone())
                    .send()
                    .await
                    .unwrap();
                crate::support::server::event_id(r).await
            },
            "PUT",
            binary.clone(),
            "application/octet-stream",
        ),
        (
            server
                .post_for_id(
                    "a",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    form,
                )
                .await,
            "POST",
            form.as_bytes().to_vec(),
            "application/x-www-form-urlencoded",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let file_arg = file.to_str().unwrap();
    let out = forebay(
        &[
            "export",
            "--server",
            &admin(&server),
            "--source",
            "a",
            "--output",
            file_arg,
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("exported 3 events"),
        "{}",
        stderr(&out)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: Vec<&str> = lines.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let ids: Vec<&str> = sent.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(exported, ids, "oldest first");

    let mut receiver = Receiver::start(&[]).await;
    let out = forebay(
        &[
            "replay",
            "--from",
            file_arg,
            "--to",
            &receiver.url,
            "-H",
            "X-Extra: yes",
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("sent 3 events"), "{}", stdout(&out));
    assert!(stdout(&out).contains("2xx: 3"), "{}", stdout(&out));
    for (id, method, body, content_type) in &sent {
        let got = receiver.next().await;
        assert_eq!(got.header("webhook-id"), id);
        assert_eq!(got.method.as_str(), *method, "{id}");
        assert_eq!(&got.body[..], &body[..], "{id}: body byte for byte");
        assert_eq!(got.header("content-type"), *content_type);
        assert_eq!(got.header("forebay-replay"), "file");
        assert_eq!(got.header("forebay-source"), "a");
        assert_eq!(got.header("x-extra"), "yes");
        assert!(
            got.headers.get("authorization").is_none(),
            "credentials stay behind"
        );
    }

    // One handler failure: reported by event, exit 5, the others still sent.
    let mut failing = Receiver::start(&[200, 503]).await;
    let out = forebay(
        &["replay", "--from", file_arg, "--to", &failing.url, "--json"],
        &[],
    )
    .await;
    assert_exit(&out, 5);
    let summary = json(&out);
    assert_eq!(summary["sent"], 3);
    assert_eq!(summary["by_class"]["2xx"], 2);
    assert_eq!(summary["by_class"]["5xx"], 1);
    assert_eq!(summary["failed"][0]["event"], ids[1]);
    for _ in 0..3 {
        failing.next().await;
    }
}

#[tokio::test]
async fn export_to_stdout_streams_ndjson() {
    let server = TestServer::start(ARCHIVE).await;
    for n in 0..3 {
        server.post_for_id("b", &[], format!("line {n}")).await;
    }
    let out = forebay(&["export", "--server", &admin(&server)], &[]).await;
    assert_exit(&out, 0);
    let bodies: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(bodies, ["line 0", "line 1", "line 2"]);
    assert!(stderr(&out).contains("exported 3 events"));
}

/// A long-running `forebay` command (listen, tail, replay) with its output read line by
/// line.
struct Running {
    child: Child,
    stderr: Lines<BufReader<ChildStderr>>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Running {
    fn spawn(args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_forebay"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn forebay");
        Self {
            stderr: BufReader::new(child.stderr.take().unwrap()).lines(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        }
    }

    /// The first stderr line that contains `text`.
    async fn wait_for(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.stderr.next_line().await.expect("stderr") {
                if line.contains(text) {
                    return line;
                }
            }
            panic!("forebay ended without saying {text:?}");
        });
        found
            .await
            .unwrap_or_else(|_| panic!("no {text:?} within 20s"))
    }

    async fn stdout_line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("a line within 20s")
            .expect("stdout")
            .expect("a line before the end")
    }

    /// Ctrl-C.
    fn interrupt(&self) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    }

    /// Waits for the exit: its code, and the rest of stdout and stderr.
    async fn exit(mut self) -> (Option<i32>, String, String) {
        tokio::time::timeout(Duration::from_secs(20), async {
            let (mut out, mut err) = (String::new(), String::new());
            while let Some(line) = self.stdout.next_line().await.expect("stdout") {
                out.push_str(&line);
                out.push('\n');
            }
            while let Some(line) = self.stderr.next_line().await.expect("stderr") {
                err.push_str(&line);
                err.push('\n');
            }
            let status = self.child.wait().await.expect("wait");
            (status.code(), out, err)
        })
        .await
        .expect("forebay exits within 20s")
    }

    /// Ctrl-C, then the exit code.
    async fn stop(self) -> Option<i32> {
        self.interrupt();
        self.exit().await.0
    }
}

/// Starts `forebay listen` and waits until it follows the stream; returns that line too.
async fn listen(
    server: &TestServer,
    to: &str,
    state: &std::path::Path,
    extra: &[&str],
) -> (Running, String) {
    let server = admin(server);
    let state = state.to_str().unwrap();
    let mut args = vec!["listen", "--server", &server, "--to", to, "--state", state];
    args.extend_from_slice(extra);
    let mut running = Running::spawn(&args);
    let line = running.wait_for("listening to").await;
    (running, line)
}

#[tokio::test]
async fn listen_delivers_events_sent_while_it_was_stopped_exactly_once() {
    let server = TestServer::start(ARCHIVE).await;
    // An event from before listen ever ran is not replayed to the new handler.
    server.post_for_id("a", &[], "old").await;
    let mut receiver = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".forebay-listen");

    let (running, _) = listen(&server, &receiver.url, &state, &[]).await;
    let mut first = Vec::new();
    for n in 0..2 {
        first.push(server.post_for_id("a", &[], format!("live {n}")).await);
    }
    for id in &first {
        let got = receiver.next().await;
        assert_eq!(got.header("webhook-id"), id);
    }
    assert_eq!(running.stop().await, Some(0));

    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(server.post_for_id("b", &[], format!("missed {n}")).await);
    }
    let (running, connected) = listen(&server, &receiver.url, &state, &[]).await;
    assert!(
        connected.contains(&first[1]),
        "resumes after the last one: {connected}"
    );
    for (n, id) in missed.iter().enumerate() {
        let got = receiver.next().await;
        assert_eq!(got.header("webhook-id"), id, "the missed ones, in order");
        assert_eq!(&got.body[..], format!("missed {n}").as_bytes());
    }
    // Nothing twice: the next request is the next new event.
    let after = server.post_for_id("a", &[], "after").await;
    assert_eq!(receiver.next().await.header("webhook-id"), after);
    assert_eq!(running.stop().await, Some(0));
}

#[tokio::test]
async fn listen_stops_on_a_handler_that_keeps_failing_and_starts_with_that_event_next_time() {
    let server = TestServer::start(ARCHIVE).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut failing = Receiver::start(&[500, 500]).await;
    let (running, _) = listen(&server, &failing.url, &state, &["--attempts", "2"]).await;
    let id = server.post_for_id("a", &[], "x").await;
    for attempt in ["1", "2"] {
        let got = failing.next().await;
        assert_eq!(got.header("webhook-id"), id);
        assert_eq!(got.header("forebay-attempt"), attempt);
    }
    let (code, out, err) = running.exit().await;
    assert_eq!(code, Some(5), "{out}\n{err}");
    assert!(out.contains("-> 500"), "{out}");
    assert!(
        err.contains("the next `forebay listen` starts with it"),
        "{err}"
    );

    // The next run starts with the event that was not taken.
    let mut receiver = Receiver::start(&[]).await;
    let (running, _) = listen(&server, &receiver.url, &state, &[]).await;
    assert_eq!(receiver.next().await.header("webhook-id"), id);
    assert_eq!(running.stop().await, Some(0));
}

#[tokio::test]
async fn events_list_show_filters_and_errors() {
    let server = TestServer::start(ARCHIVE).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            server
                .post_for_id(
                    "a",
                    &[("content-type", "application/json"), ("x-n", "v")],
                    format!(r#"{{"n":{n}}}"#),
                )
                .await,
        );
    }
    let other = server.post_for_id("b", &[], "plain").await;
    let s = admin(&server);

    let out = forebay(&["events", "list", "--server", &s], &[]).await;
    assert_exit(&out, 0);
    let table = stdout(&out);
    assert!(table.starts_with("ID"), "{table}");
    for id in ids.iter().chain([&other]) {
        assert!(table.contains(id.as_str()), "{table}");
    }

    let out = forebay(
        &[
            "events", "list", "--server", &s, "--source", "a", "--limit", "2", "--json",
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    let page = json(&out);
    let listed: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = page["next_cursor"].as_str().expect("more to come");
    let out = forebay(
        &[
            "events", "list", "--server", &s, "--source", "a", "--cursor", cursor, "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(json(&out)["data"][0]["id"], ids[0].as_str());

    let out = forebay(&["events", "list", "--server", &s, "--all", "--json"], &[]).await;
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 4, "NDJSON, one event a line");
    for line in stdout(&out).lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }

    let out = forebay(
        &[
            "events",
            "list",
            "--server",
            &s,
            "--where",
            ".body.n == 1",
            "--since",
            "1h",
            "--json",
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["data"].as_array().unwrap().len(), 1);
    let out = forebay(
        &["events", "list", "--server", &s, "--until", "1h", "--json"],
        &[],
    )
    .await;
    assert_eq!(json(&out)["data"].as_array().unwrap().len(), 0);
    let out = forebay(
        &["events", "list", "--server", &s, "--since", "yesterday"],
        &[],
    )
    .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("span ago"), "{}", stderr(&out));

    let out = forebay(&["events", "show", &ids[1], "--server", &s], &[]).await;
    assert_exit(&out, 0);
    let shown = stdout(&out);
    assert!(shown.contains("\"n\": 1"), "pretty JSON body: {shown}");
    assert!(shown.contains("x-n: v"), "{shown}");
    let out = forebay(&["events", "show", &ids[1], "--server", &s, "--json"], &[]).await;
    assert_eq!(json(&out)["body"], r#"{"n":1}"#);

    let out = forebay(&["events", "show", "evt_nope", "--server", &s], &[]).await;
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("event_not_found"), "{}", stderr(&out));

    let out = forebay(&["events", "list", "--server", "http://127.0.0.1:1"], &[]).await;
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("cannot reach the admin API at http://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_token_is_asked_for_and_taken_from_the_environment() {
    let server = TestServer::start("[server]\nadmin_token = \"s3cret\"\n[sources.a]\n").await;
    let s = admin(&server);
    let out = forebay(&["events", "list", "--server", &s], &[]).await;
    assert_exit(&out, 4);
    assert!(
        stderr(&out).contains("pass --token or set FOREBAY_TOKEN"),
        "{}",
        stderr(&out)
    );
    let out = forebay(&["events", "list", "--server", &s, "--token", "wrong"], &[]).await;
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("not accepted"), "{}", stderr(&out));
    let out = forebay(
        &["events", "list", "--json"],
        &[("FOREBAY_SERVER", &s), ("FOREBAY_TOKEN", "s3cret")],
    )
    .await;
    assert_exit(&out, 0);
    assert!(json(&out)["data"].is_array());
}

#[tokio::test]
async fn the_configuration_gives_address_and_token() {
    let server = TestServer::start("[server]\nadmin_token = \"from-file\"\n[sources.a]\n").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("forebay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nadmin_listen = \"{}\"\nadmin_token = \"from-file\"\n[storage]\nurl = \"sqlite://{}\"\n",
            server.admin,
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let out = forebay(
        &["events", "list", "--json", "-c", config.to_str().unwrap()],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    let out = forebay(&["events", "list", "-c", "/nonexistent/forebay.toml"], &[]).await;
    assert_exit(&out, 1);
}

const FAILING_ONCE: &str = r#"
[sources.shop]
[destinations.app]
kind = "http"
url = "{url}"
retry = { schedule = [] }
[[routes]]
source = "shop"
destination = "app"
"#;

#[tokio::test]
async fn deliveries_and_the_dead_letter_queue() {
    // The first two sends fail (dead at once: no retries), the rest succeed.
    let mut receiver = Receiver::start(&[500, 500]).await;
    let server = TestServer::start(&FAILING_ONCE.replace("{url}", &receiver.url)).await;
    let s = admin(&server);
    let first = server.post_for_id("shop", &[], "one").await;
    let event = server.wait_for_deliveries(&first, "dead").await;
    let dead = event["deliveries"][0]["id"].as_str().unwrap().to_owned();
    receiver.next().await;

    let out = forebay(
        &["deliveries", "list", "--state", "dead", "--server", &s],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&dead) && stdout(&out).contains("shop-app"),
        "{}",
        stdout(&out)
    );
    let out = forebay(&["deliveries", "show", &dead, "--server", &s], &[]).await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("answered 500"),
        "the attempt log: {}",
        stdout(&out)
    );
    let out = forebay(
        &["deliveries", "show", &dead, "--server", &s, "--json"],
        &[],
    )
    .await;
    assert_eq!(json(&out)["attempt_log"][0]["status"], 500);
    let out = forebay(&["deliveries", "show", "dlv_nope", "--server", &s], &[]).await;
    assert_exit(&out, 4);

    let out = forebay(&["dlq", "list", "--server", &s, "--json"], &[]).await;
    assert_eq!(json(&out)["data"][0]["id"], dead.as_str());
    let out = forebay(&["dlq", "retry", "--server", &s], &[]).await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));
    let out = forebay(
        &["dlq", "retry", "--route", "shop-app", "--server", &s],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).trim(), "retried 1 dead delivery");
    receiver.next().await; // the second 500: dead again
    server.wait_for_deliveries(&first, "dead").await;
    let out = forebay(&["dlq", "retry", &dead, "--server", &s], &[]).await;
    assert_exit(&out, 0);
    receiver.next().await; // 200
    server.wait_for_deliveries(&first, "delivered").await;
    let out = forebay(&["deliveries", "retry", &dead, "--server", &s], &[]).await;
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));

    let out = forebay(&["dlq", "discard", "--all", "--server", &s, "--json"], &[]).await;
    assert_exit(&out, 0);
    assert_eq!(json(&out)["discarded"], 0);
    let out = forebay(&["dlq", "discard", &dead, "--server", &s], &[]).await;
    assert_exit(&out, 4);
}

const ROUTED: &str = r#"
[sources.shop]
[destinations.app]
kind = "http"
url = "{url}"
[[routes]]
source = "shop"
destination = "app"
"#;

#[tokio::test]
async fn a_server_side_replay_runs_to_done_at_its_rate() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&ROUTED.replace("{url}", &receiver.url)).await;
    let s = admin(&server);
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = server.post_for_id("shop", &[], format!("e{n}")).await;
        server.wait_for_deliveries(&id, "delivered").await;
        receiver.next().await;
        ids.push(id);
    }

    let out = forebay(&["replay", "--source", "shop", "--server", &s], &[]).await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = forebay(&["replay", "--yes", "--server", &s], &[]).await;
    assert_exit(&out, 1);

    let out = forebay(
        &[
            "replay", "--source", "shop", "--rate", "20/s", "--yes", "--server", &s,
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(" done: matched 3, queued 3; 3 delivered"),
        "{}",
        stdout(&out)
    );
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let got = receiver.next().await;
        assert!(
            got.header("forebay-replay").starts_with("rpl_"),
            "{:?}",
            got.headers
        );
        replayed.push(got.header("webhook-id").to_owned());
    }
    replayed.sort();
    assert_eq!(replayed, ids);
    let jobs = server.admin_json("/api/v1/replays").await;
    assert_eq!(jobs["data"][0]["rate"], "20/s");

    let out = forebay(
        &[
            "replay",
            "--event",
            &ids[0],
            "--yes",
            "--no-wait",
            "--json",
            "--server",
            &s,
        ],
        &[],
    )
    .await;
    assert_exit(&out, 0);
    assert!(json(&out)["id"].as_str().unwrap().starts_with("rpl_"));
    receiver.next().await;
}

#[tokio::test]
async fn tail_prints_new_events_as_they_arrive() {
    let server = TestServer::start(ARCHIVE).await;
    let mut tail = Running::spawn(&["events", "tail", "--json", "--server", &admin(&server)]);
    tail.wait_for("connected to").await;
    let id = server.post_for_id("b", &[], "hello").await;
    let line = tail.stdout_line().await;
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (event["id"].as_str(), event["body"].as_str()),
        (Some(id.as_str()), Some("hello"))
    );
    assert_eq!(tail.stop().await, Some(0));
}

#[tokio::test]
async fn ctrl_c_cancels_a_replay_that_is_still_queuing() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&ROUTED.replace("{url}", &receiver.url)).await;
    for n in 0..3 {
        let id = server.post_for_id("shop", &[], format!("e{n}")).await;
        server.wait_for_deliveries(&id, "delivered").await;
        receiver.next().await;
    }
    // One event a minute: the job is still queuing when Ctrl-C comes.
    let mut replay = Running::spawn(&[
        "replay",
        "--source",
        "shop",
        "--rate",
        "1/m",
        "--yes",
        "--server",
        &admin(&server),
    ]);
    let started = replay.wait_for("started").await;
    let id = started.split_whitespace().nth(1).unwrap().to_owned();
    assert!(id.starts_with("rpl_"), "{started}");
    replay.interrupt();
    let (code, out, err) = replay.exit().await;
    assert_eq!(code, Some(5), "{out}\n{err}");
    assert!(err.contains("cancelling replay"), "{err}");
    let job = server.admin_json(&format!("/api/v1/replays/{id}")).await;
    assert_eq!(job["state"], "cancelled");
}

#[tokio::test]
async fn health_exits_0_when_the_server_is_ready_and_1_when_nothing_answers() {
    let server = TestServer::start("[sources.shop]\n").await;
    let url = server.ingest_url("/readyz");
    let ready = tokio::task::spawn_blocking(move || run_forebay(&["health", "--url", &url], &[]))
        .await
        .unwrap();
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).starts_with("ready"));

    // Port 9 (discard) on loopback: nothing listens there.
    let down = run_forebay(&["health", "--url", "http://127.0.0.1:9/readyz"], &[]);
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(
        said.contains("not ready: no answer from http://127.0.0.1:9/readyz"),
        "{said}"
    );

    // Without --url, the configuration's ingest listener; a file that is missing says so.
    let missing = run_forebay(&["health", "-c", "/nonexistent/forebay.toml"], &[]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/forebay.toml")
    );
}
