//! Encryption at rest end to end: a server with `[storage] encryption` serves and
//! delivers in the clear while its file holds nothing readable; a wrong or missing key
//! stops the start with the key's id; `forebay rekey` moves a running server's data to
//! a new key (also across a SIGKILL in the middle), after which the old key may go.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::binary::{Process, run_forebay, spawn_serve, write_config};
use crate::support::receiver::Receiver;
use crate::support::server::TestServer;

const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn encryption(keys: &[(&str, &str)], active: Option<&str>) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(id, k)| format!("{id} = \"{k}\""))
        .collect();
    let active = active.map_or(String::new(), |a| format!("active = \"{a}\"\n"));
    format!(
        "[storage.encryption]\nkeys = {{ {} }}\n{active}",
        keys.join(", ")
    )
}

/// Whether `needle` is anywhere in the database's files.
fn on_disk(db: &Path, needle: &[u8]) -> bool {
    ["", "-wal"].iter().any(|suffix| {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_store_serves_and_delivers_in_the_clear_and_keeps_nothing_readable() {
    let mut receiver = Receiver::start(&[200]).await;
    let server = TestServer::start(&format!(
        "{}\n[sources.shop]\n\
         [destinations.app]\nkind = \"http\"\nurl = \"{}\"\n\
         [[routes]]\nsource = \"shop\"\ndestination = \"app\"\n\
         transform = '{{order: .body.order, card: .body.card}}'\n",
        encryption(&[("k1", K1)], Some("k1")),
        receiver.url
    ))
    .await;
    let body = r#"{"order":"o-77","card":"4242-4242-marker"}"#;
    let id = server
        .post_for_id(
            "shop",
            &[
                ("content-type", "application/json"),
                ("x-shop-token", "header-marker-value"),
            ],
            body,
        )
        .await;
    let delivered = receiver.next().await;
    assert_eq!(
        delivered.body_json(),
        serde_json::json!({"order": "o-77", "card": "4242-4242-marker"})
    );
    server.wait_for_deliveries(&id, "delivered").await;

    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    assert_eq!(event["body"], body);
    assert_eq!(event["body_size"], body.len());
    assert_eq!(event["headers"]["x-shop-token"], "header-marker-value");
    // Search opens bodies as it scans them.
    let found = server
        .admin_json("/api/v1/events?q=.body.card%20%3D%3D%20%224242-4242-marker%22")
        .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1, "{found}");

    let db = server.db_path.clone();
    server.stop().await;
    for marker in [&b"4242-4242-marker"[..], b"header-marker-value", b"o-77"] {
        assert!(
            !on_disk(&db, marker),
            "{:?} is on disk in the clear",
            String::from_utf8_lossy(marker)
        );
    }
}

#[tokio::test]
async fn a_changed_or_missing_key_stops_the_start_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("{}\n[sources.s]\n", encryption(&[("k1", K1)], Some("k1"))),
    );
    {
        let server = spawn_serve(&config);
        // The first start records k1; a sealed event is stored under it (answered 200).
        assert_eq!(server.post_numbered("s", 1).await.len(), 1);
        stop(server);
    }
    let attempts = [
        (
            encryption(&[("k1", K2)], Some("k1")),
            "storage.encryption.keys.k1 is not the key",
        ),
        (
            encryption(&[("k2", K2)], Some("k2")),
            "sealed with key \"k1\"",
        ),
        (String::new(), "sealed with key \"k1\""),
        (
            encryption(&[("k1", "c2hvcnQ=")], Some("k1")),
            "storage.encryption.keys.k1: the key is 5 bytes, not 32",
        ),
    ];
    for (section, expected) in attempts {
        let config = write_config(dir.path(), &format!("{section}\n[sources.s]\n"));
        let out = run_forebay(&["serve", "--config", config.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {section:?}");
        assert!(
            stderr.contains(expected),
            "{section:?}: expected {expected:?} in {stderr}"
        );
    }
}

#[tokio::test]
async fn keygen_prints_a_key_the_configuration_takes() {
    let out = run_forebay(&["keygen"], &[]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.trim().len(), 44, "{key:?}");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[storage.encryption]\nkeys = { new = \"env:FB_TEST_KEY\" }\nactive = \"new\"\n",
    );
    let out = run_forebay(
        &["check", "--config", config.to_str().unwrap()],
        &[("FB_TEST_KEY", key.trim())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Posts `count` unique bodies, 16 at a time; returns the bodies by event id.
async fn post_many(p: &Process, count: usize) -> BTreeMap<String, String> {
    let client = crate::support::client();
    let url = format!("http://{}/in/s", p.ingest);
    let mut stored = BTreeMap::new();
    for first in (0..count).step_by(16) {
        let mut sends = tokio::task::JoinSet::new();
        for n in first..(first + 16).min(count) {
            let body = format!(r#"{{"n":{n},"secret":"s-{n}-marker"}}"#);
            let request = client.post(&url).body(body.clone()).send();
            sends.spawn(async move {
                let r = request.await.unwrap();
                assert_eq!(r.status(), 200);
                let answer: Value = r.json().await.unwrap();
                (answer["id"].as_str().unwrap().to_owned(), body)
            });
        }
        stored.extend(sends.join_all().await);
    }
    stored
}

/// Every stored event, read back through the export, by id.
async fn exported(p: &Process) -> BTreeMap<String, String> {
    let text = crate::support::client()
        .get(format!("http://{}/api/v1/export", p.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|line| {
            let e: Value = serde_json::from_str(line).unwrap();
            (
                e["id"].as_str().unwrap().to_owned(),
                e["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Stops the server gracefully (its WAL is checkpointed and cut to nothing) and waits.
fn stop(mut p: Process) {
    p.signal(libc::SIGTERM);
    let status = p.child.wait().expect("wait for forebay");
    assert!(status.success(), "forebay stopped with {status}");
}

/// Runs `forebay rekey` against the server, asserts it succeeded, returns what it said.
fn rekey_cli(p: &Process) -> String {
    let server = format!("http://{}", p.admin);
    let out = run_forebay(&["rekey", "--server", &server], &[]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_moves_a_running_servers_data_across_a_sigkill_and_the_old_key_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("forebay.db");
    let config = |section: String| write_config(dir.path(), &format!("{section}\n[sources.s]\n"));

    // Stored plain, before encryption was turned on.
    let server = spawn_serve(&config(String::new()));
    let mut stored = post_many(&server, 200).await;
    drop(server);
    assert!(on_disk(&db, b"s-7-marker"), "plain before encryption");

    // On with k1: new data sealed, and a rekey seals the old.
    let server = spawn_serve(&config(encryption(&[("k1", K1)], Some("k1"))));
    stored.extend(post_many(&server, 3000).await);
    let said = rekey_cli(&server);
    assert!(
        said.contains("rekey done: ") && said.contains("200 moved to key k1"),
        "{said}"
    );
    assert_eq!(exported(&server).await, stored);
    stop(server);
    assert_eq!(rows_not_under(&db, "k1"), 0, "every row sealed with k1");

    // Rotated to k2; SIGKILL while the rekey is part way through.
    let rotated = config(encryption(&[("k1", K1), ("k2", K2)], Some("k2")));
    let server = spawn_serve(&rotated);
    let rekey = format!("http://{}/api/v1/rekey", server.admin);
    let started = crate::support::client().post(&rekey).send().await.unwrap();
    assert_eq!(started.status(), 202);
    let part_way = loop {
        let job = server.admin_json("/api/v1/rekey").await;
        let events = &job["tables"][0];
        assert_eq!(job["state"], "running", "finished before the kill: {job}");
        if events["resealed"].as_u64().unwrap() > 0 {
            break job;
        }
    };
    server.signal(libc::SIGKILL);
    drop(server);
    let resealed = part_way["tables"][0]["resealed"].as_u64().unwrap();
    assert!(resealed < 3200, "the kill came part way: {part_way}");

    // After the crash every event reads back, under either key; the rekey finishes.
    let server = spawn_serve(&rotated);
    assert_eq!(exported(&server).await, stored);
    let said = rekey_cli(&server);
    assert!(said.contains("retired k1"), "{said}");
    stop(server);

    assert_eq!(rows_not_under(&db, "k2"), 0, "every row sealed with k2");

    // k1 may leave the configuration now.
    let server = spawn_serve(&config(encryption(&[("k2", K2)], Some("k2"))));
    assert_eq!(exported(&server).await, stored);
}

/// Events whose stored headers are not sealed with key `id` (the sealed form starts
/// with NUL, a version byte, the id's length and the id).
fn rows_not_under(db: &Path, id: &str) -> i64 {
    let mut prefix = vec![0x00, 0x01, id.len() as u8];
    prefix.extend_from_slice(id.as_bytes());
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM events WHERE substr(headers, 1, ?1) <> ?2",
            rusqlite::params![prefix.len() as i64, prefix],
            |r| r.get(0),
        )
        .unwrap()
}
