//! The container image: built by `scripts/image` from the binary under test (the
//! Containerfile's final stage), run with Podman on a volume of its own, sent an event
//! through its ingest listener, read back through its admin API, checked by its own
//! HEALTHCHECK, and stopped with SIGTERM. Podman keeps its images, containers and
//! volumes in the test's own directory (vfs storage), so nothing is shared with other
//! tests or the machine, and a guard removes what the test made even when it fails.

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

/// Runs `program` (bounded at 2 minutes), asserting it succeeds.
fn run(env: &[(&'static str, String)], program: &str, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg(program)
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

/// Removes the container and the image when the test ends, passed or not: a container
/// on the host's network must not outlive it.
struct Cleanup {
    env: Vec<(&'static str, String)>,
    container: Option<String>,
    tag: String,
    volume: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let podman = |args: &[&str]| {
            let _ = Command::new("timeout")
                .arg("60")
                .arg("podman")
                .args(args)
                .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                .output();
        };
        if let Some(container) = &self.container {
            podman(&["rm", "-f", "-t", "0", container]);
        }
        podman(&["rmi", "-f", &self.tag]);
        podman(&["volume", "rm", "-f", &self.volume]);
    }
}

/// A port free on loopback now (the container, on the host's network, takes it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn the_image_serves_stores_answers_its_health_check_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let env = podman_env(dir.path());
    let tag = format!("localhost/forebay-test:{}", std::process::id());
    let volume = format!("forebay-test-{}", std::process::id());
    let mut cleanup = Cleanup {
        env: env.clone(),
        container: None,
        tag: tag.clone(),
        volume: volume.clone(),
    };
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

    // Its store on a named volume, which takes /data's owner from the image. The
    // HEALTHCHECK asks the configured ingest listener: ports set for this run.
    let (ingest_port, admin_port) = (free_port(), free_port());
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
            &format!("{volume}:/data"),
            "-e",
            &format!("FOREBAY_ADMIN_TOKEN={token}"),
            "-e",
            &format!("FOREBAY_SERVER__INGEST_LISTEN=127.0.0.1:{ingest_port}"),
            "-e",
            &format!("FOREBAY_SERVER__ADMIN_LISTEN=127.0.0.1:{admin_port}"),
            &tag,
        ],
    );
    let container = text(&started);
    cleanup.container = Some(container.clone());

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
    let (ingest, admin) = (
        format!("http://127.0.0.1:{ingest_port}"),
        format!("http://127.0.0.1:{admin_port}"),
    );
    assert!(
        line.contains(&format!("ingest={ingest} admin={admin}")),
        "{line}"
    );

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

    // The image's own HEALTHCHECK (`forebay health`, run inside it).
    run(&env, "podman", &["healthcheck", "run", &container]);

    // SIGTERM drains and exits 0; the store stays on the volume.
    run(&env, "podman", &["stop", "-t", "20", &container]);
    let state = run(
        &env,
        "podman",
        &["inspect", "--format", "{{.State.ExitCode}}", &container],
    );
    assert_eq!(text(&state), "0", "a clean exit on SIGTERM");
    // The store is on the volume, owned by the image's user.
    let mountpoint = run(
        &env,
        "podman",
        &["volume", "inspect", "--format", "{{.Mountpoint}}", &volume],
    );
    let data = std::path::PathBuf::from(text(&mountpoint));
    let db = std::fs::metadata(data.join("forebay.db")).expect("the store on the volume");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&db), 65532);
}
