//! forebay as a systemd `Type=notify` service, without systemd: what it sends to a
//! notify socket of the test's own, as systemd would receive it; and the unit file in
//! `contrib/`, checked by `systemd-analyze verify`.

use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::support::binary::{spawn_serve_with_env, write_config};

/// The next notice on `socket` (at most 10 s away).
async fn notice(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .expect("a notice within 10 s")
        .unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[tokio::test]
async fn ready_then_watchdog_then_stopping_and_children_do_not_inherit_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let seen = dir.path().join("child-env.txt");
    let config = write_config(
        dir.path(),
        &format!(
            "[sources.demo]\n[destinations.cmd]\nkind = \"exec\"\ncommand = \"sh\"\n\
             args = [\"-c\", \"env > {}\"]\n\
             [[routes]]\nsource = \"demo\"\ndestination = \"cmd\"\n",
            seen.display()
        ),
    );
    let process = spawn_serve_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let ready = notice(&socket).await;
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready}");
    let status = format!(
        "STATUS=listening: ingest=http://{} admin=http://{}",
        process.ingest, process.admin
    );
    assert!(lines.contains(&status.as_str()), "{ready}");
    // Every half of the 200 ms interval.
    for _ in 0..3 {
        assert_eq!(notice(&socket).await, "WATCHDOG=1\n");
    }

    // An exec destination's command runs without the service's variables.
    let id = process.post_numbered("demo", 1).await;
    let id = id.first().unwrap();
    for _ in 0..500 {
        let event = process.admin_json(&format!("/api/v1/events/{id}")).await;
        if event["deliveries"][0]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let env = std::fs::read_to_string(&seen).expect("the command ran");
    assert!(env.contains("FOREBAY_EVENT_ID="), "{env}");
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert!(!env.contains(&format!("{name}=")), "{name} leaked: {env}");
    }

    process.signal(libc::SIGTERM);
    loop {
        let n = notice(&socket).await;
        if n == "WATCHDOG=1\n" {
            continue;
        }
        assert!(n.lines().any(|l| l == "STOPPING=1"), "{n}");
        break;
    }
    let mut process = process;
    let status = process.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `systemctl reload` (SIGHUP): RELOADING=1 with the monotonic time systemd wants, then
/// READY=1 once the new configuration is in force, and READY=1 too when a file with
/// errors was refused (the service stays up on the configuration it had).
#[tokio::test]
async fn a_reload_is_announced_then_ready_again_whether_it_applied_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let config = write_config(dir.path(), "[sources.shop]\n");
    let process =
        spawn_serve_with_env(&config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    assert!(notice(&socket).await.lines().any(|l| l == "READY=1"));

    write_config(dir.path(), "[sources.shop]\n[sources.crm]\n");
    process.signal(libc::SIGHUP);
    let reloading = notice(&socket).await;
    let lines: Vec<&str> = reloading.lines().collect();
    assert!(lines.contains(&"RELOADING=1"), "{reloading}");
    assert!(
        lines.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    let ready = notice(&socket).await;
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        ready.contains("STATUS=serving configuration generation 2"),
        "{ready}"
    );

    write_config(dir.path(), "[sources.shop]\nmax_body = \"lots\"\n");
    process.signal(libc::SIGHUP);
    assert!(notice(&socket).await.contains("RELOADING=1"));
    let refused = notice(&socket).await;
    assert!(refused.lines().any(|l| l == "READY=1"), "{refused}");
    assert!(
        refused.contains("generation 2 (a reload was refused"),
        "{refused}"
    );
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("contrib/forebay.service")).unwrap();
    // The unit names the installed binary; point it at the one under test.
    let installed = "/usr/local/bin/forebay";
    assert!(unit.contains(installed), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forebay.service");
    std::fs::write(
        &path,
        unit.replace(installed, env!("CARGO_BIN_EXE_forebay")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
