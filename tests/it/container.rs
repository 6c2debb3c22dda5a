//! The container image: built by `scripts/image` from the binary under test (the
//! Containerfile's final stage), run with Podman, sent an event through its ingest
//! listener, read back through its admin API, probed by `forebay health` inside it,
//! and stopped with SIGTERM. Podman keeps its images and containers in the test's own
//! directory (vfs storage), so nothing is shared with other tests or the machine.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

/// Podman's storage and runtime settings for this test, in `dir`. The runtime is runc
/// with cgroupfs and no default ulimits: what also works inside an unprivileged VM
/// (crun refuses cgroup v1 hybrids; raising limits needs a capability).
fn podman_env(dir: &Path) -> Vec<(&'static str, String)> {
    let storage = dir.join("storage.conf");
    std::fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("graph").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    let containers = dir.join("containers.conf");
    std::fs::write(
        &containers,
        "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    vec![
        ("CONTAINERS_STORAGE_CONF", storage.display().to_string()),
        ("CONTAINERS_CONF", containers.display().to_string()),
    ]
}

fn run(env: &[(&'static str, String)], program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("{program} (scripts/test installs podman): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn the_image_serves_stores_answers_its_health_check_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let env = podman_env(dir.path());
    let tag = format!("localhost/forebay-test:{}", std::process::id());
    let root = env!("CARGO_MANIFEST_DIR");
    run(
        &env,
        &format!("{root}/scripts/image"),
        &[env!("CARGO_BIN_EXE_forebay"), &tag],
    );

    // What the image says about itself.
    let inspect = run(&env, "podman", &["image", "inspect", &tag]);
    let image: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let config = &image[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "not root");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{config}");
    assert!(config["ExposedPorts"]["8081/tcp"].is_object(), "{config}");
    assert!(config["Volumes"]["/data"].is_object(), "{config}");
    let health = image[0]["Healthcheck"]["Test"].to_string();
    assert!(
        health.contains("forebay") && health.contains("health"),
        "{health}"
    );

    // Its store on a volume the container's user owns.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65532), Some(65532)).expect("chown (run as root)");
    let token = "container-test-token";
    let started = run(
        &env,
        "podman",
        &[
            "run",
            "-d",
            "--network",
            "host",
            "-v",
            &format!("{}:/data", data.display()),
            "-e",
            &format!("FOREBAY_ADMIN_TOKEN={token}"),
            "-e",
            "FOREBAY_SERVER__INGEST_LISTEN=127.0.0.1:0",
            "-e",
            "FOREBAY_SERVER__ADMIN_LISTEN=127.0.0.1:0",
            &tag,
        ],
    );
    let container = text(&started);

    // The ports it got, from the line it prints once it listens.
    let mut listening = None;
    for _ in 0..400 {
        let logs = run(&env, "podman", &["logs", &container]);
        let all = format!("{}\n{}", text(&logs), String::from_utf8_lossy(&logs.stderr));
        if let Some(line) = all.lines().find(|l| l.starts_with("forebay listening:")) {
            listening = Some(line.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = listening.expect("the container's forebay starts listening");
    let url = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .to_owned()
    };
    let (ingest, admin) = (url("ingest="), url("admin="));

    let client = crate::support::client();
    let answer: Value = client
        .post(format!("{ingest}/in/demo"))
        .body(r#"{"from":"outside the container"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().expect("an event id").to_owned();
    let event: Value = client
        .get(format!("{admin}/api/v1/events/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["source"], "demo", "{event}");
    assert_eq!(
        event["body"], r#"{"from":"outside the container"}"#,
        "{event}"
    );

    // The image's own probe, run inside it.
    let probe = run(
        &env,
        "podman",
        &[
            "exec",
            &container,
            "/usr/local/bin/forebay",
            "health",
            "--url",
            &format!("{ingest}/readyz"),
        ],
    );
    assert!(text(&probe).starts_with("ready"), "{}", text(&probe));

    // SIGTERM drains and exits 0; the store stays on the volume.
    run(&env, "podman", &["stop", "-t", "20", &container]);
    let state = run(
        &env,
        "podman",
        &["inspect", "--format", "{{.State.ExitCode}}", &container],
    );
    assert_eq!(text(&state), "0", "a clean exit on SIGTERM");
    assert!(data.join("forebay.db").exists());
    run(&env, "podman", &["rm", &container]);
    run(&env, "podman", &["rmi", &tag]);
}
