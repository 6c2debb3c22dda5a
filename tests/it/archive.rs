//! The cold archive end to end: delivered events older than `after` leave the store for
//! objects in a directory or an S3-compatible server (sealed when encryption is on), the
//! API lists them, and `forebay export --from` and `forebay replay --from` read them back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::binary::{run_forebay, spawn_serve};
use crate::support::postgres::Schema;
use crate::support::receiver::Receiver;
use crate::support::s3::S3;
use crate::support::server::TestServer;
use forebay::clock::ManualClock;

const HOUR_MS: i64 = 3_600_000;
const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

fn routes(receiver: &str) -> String {
    format!(
        "[sources.shop]\n[destinations.hook]\nkind = \"http\"\nurl = \"{receiver}\"\n\
         [[routes]]\nsource = \"shop\"\ndestination = \"hook\"\n"
    )
}

/// Polls the archive's listing until it holds `events` events in all (30 s at most).
async fn archived(list: impl AsyncFn() -> Value, events: i64) -> Vec<Value> {
    for _ in 0..600 {
        let page = list().await;
        let objects = page["data"].as_array().cloned().unwrap_or_default();
        if objects
            .iter()
            .map(|o| o["events"].as_i64().unwrap())
            .sum::<i64>()
            == events
        {
            return objects;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the archive never held {events} events");
}

/// `forebay export --from URL -c CONFIG`: the ids of the lines it printed.
fn export_ids(url: &str, config: &Path) -> Vec<String> {
    let out = run_forebay(
        &[
            "export",
            "--from",
            url,
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_objects_in_a_directory_hold_what_left_the_store_and_replay_from_there() {
    let mut receiver = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let server = TestServer::start_with_clock(
        &format!(
            "[storage.encryption]\nkeys = {{ k1 = \"{KEY}\" }}\nactive = \"k1\"\n\
             [storage.archive]\nafter = \"1h\"\nto = \"file://{}\"\n{}",
            archive.display(),
            routes(&receiver.url)
        ),
        clock.clone(),
    )
    .await;
    let json = [("content-type", "application/json")];
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = server
            .post_for_id("shop", &json, format!(r#"{{"n":{n},"card":"4242"}}"#))
            .await;
        clock.advance_to(forebay::clock::now_ms());
        receiver.next().await;
        server.wait_for_deliveries(&id, "delivered").await;
        ids.push(id);
    }
    // On SQLite the newest event stays until a newer one comes (see the README).
    let newest = server.post_for_id("shop", &json, r#"{"n":5}"#).await;

    // Two hours on, the next round moves the five delivered events out.
    clock.advance_to(forebay::clock::now_ms() + 2 * HOUR_MS);
    let objects = archived(async || server.admin_json("/api/v1/archive").await, 5).await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let object = &objects[0];
    assert_eq!(object["first_id"], ids[0].as_str());
    assert_eq!(object["last_id"], ids[4].as_str());
    assert_eq!(object["sealed_with"], "k1");
    let name = object["name"].as_str().unwrap();
    assert_eq!(
        object["url"],
        format!("file://{}/{name}", archive.display()).as_str()
    );
    for id in &ids {
        let r = server
            .client
            .get(server.admin_url(&format!("/api/v1/events/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id} left the store");
    }
    assert_eq!(
        server.wait_for_deliveries(&newest, "delivered").await["id"],
        newest.as_str()
    );
    let page = server
        .client
        .get(server.admin_url("/archive"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(name) && page.contains("k1"), "{page}");
    let stored = std::fs::read(archive.join(name)).unwrap();
    assert!(
        !stored.windows(4).any(|w| w == b"4242"),
        "sealed: nothing readable in the object"
    );

    // Read back, with the configuration's keys; without them, a clear refusal.
    let url = format!("file://{}", archive.display());
    assert_eq!(export_ids(&url, &server.config_path), ids);
    let no_keys = crate::support::binary::write_config(dir.path(), "[sources.a]\n");
    let keyless = run_forebay(
        &[
            "export",
            "--from",
            &url,
            "--config",
            no_keys.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&keyless.stderr);
    assert!(!keyless.status.success());
    assert!(
        stderr.contains("k1") && stderr.contains("--config"),
        "{stderr}"
    );
    let missing = run_forebay(
        &[
            "export",
            "--from",
            &url,
            "--config",
            "/nonexistent/forebay.toml",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no such file"), "{stderr}");

    // Replayed from the archive to a handler, no server involved.
    let mut handler = Receiver::start(&[]).await;
    let out = run_forebay(
        &[
            "replay",
            "--from",
            &url,
            "--to",
            &handler.url,
            "--config",
            server.config_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in 0..5 {
        let got = handler.next().await;
        assert_eq!(got.body_json()["n"], n);
        assert_eq!(got.header("forebay-replay"), "file");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_archives_to_an_s3_compatible_server() {
    let s3 = S3::start("archive");
    let mut receiver = Receiver::start(&[]).await;
    let schema = Schema::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(
        dir.path(),
        &format!(
            "{}{}",
            s3.archive_config("forebay", "1s"),
            routes(&receiver.url)
        ),
    );
    let first = spawn_serve(&config);
    let ids: Vec<String> = first.post_numbered("shop", 3).await.into_iter().collect();
    for _ in 0..3 {
        receiver.next().await;
    }
    for id in &ids {
        for _ in 0..200 {
            let event = first.admin_json(&format!("/api/v1/events/{id}")).await;
            if event["deliveries"][0]["state"] == "delivered" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    drop(first);
    // A second older than `after`, a new process archives them at its start.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = spawn_serve(&config);
    let objects = archived(async || second.admin_json("/api/v1/archive").await, 3).await;
    let name = objects[0]["name"].as_str().unwrap();
    assert!(
        s3.bucket_dir.join("forebay").join(name).exists(),
        "{name} in the bucket"
    );
    assert_eq!(objects[0]["sealed_with"], Value::Null);
    let url = "s3://archive/forebay";
    assert_eq!(export_ids(url, &config), ids);
}

#[test]
fn an_archive_that_cannot_be_kept_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (archive, expected) in [
        ("after = \"1h\"\nto = \"ftp://x\"", "storage.archive.to"),
        ("after = \"1h\"\nto = \"file://relative\"", "three slashes"),
        (
            "after = \"1h\"\nto = \"s3://b\"\naccess_key_id = \"x\"",
            "set both, or neither",
        ),
        (
            "after = \"60d\"\nto = \"s3://b\"",
            "purged before they are archived",
        ),
    ] {
        let config = crate::support::binary::write_config(
            dir.path(),
            &format!("[storage.archive]\n{archive}\n[sources.a]\n"),
        );
        let out = run_forebay(&["check", "--config", config.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{archive}");
        assert!(stderr.contains(expected), "{archive}: {stderr}");
    }
}
