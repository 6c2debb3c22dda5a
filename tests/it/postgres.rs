//! forebay on PostgreSQL, end to end with the real binary: one process receives, stores
//! and delivers; several processes share one schema (ingest and delivery roles apart,
//! one killed mid-run); connections cut under load.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::binary::{spawn_serve, spawn_serve_logging_to, spawn_serve_with};
use crate::support::postgres::Schema;
use crate::support::receiver::Receiver;

fn routes_to(url: &str, extra_destination: &str) -> String {
    format!(
        "[sources.load]\n\
         [destinations.d]\nkind = \"http\"\nurl = \"{url}\"\n{extra_destination}\n\
         [[routes]]\nsource = \"load\"\ndestination = \"d\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_receives_stores_and_delivers() {
    let mut receiver = Receiver::start(&[]).await;
    let schema = Schema::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(dir.path(), &routes_to(&receiver.url, ""));
    let process = spawn_serve(&config);
    let client = crate::support::client();

    let mut acked = BTreeSet::new();
    for n in 0..20 {
        let r = client
            .post(format!("http://{}/in/load", process.ingest))
            .header("content-type", "application/json")
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let json: Value = r.json().await.expect("json");
        acked.insert(json["id"].as_str().expect("id").to_owned());
    }
    // A repeat of the same body is a duplicate of the first event, not a new delivery.
    let again = client
        .post(format!("http://{}/in/load", process.ingest))
        .header("content-type", "application/json")
        .body(r#"{"n":0}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("json");
    assert!(acked.contains(again["id"].as_str().expect("id")));

    let mut delivered = BTreeSet::new();
    while delivered.len() < acked.len() {
        let r = receiver.next().await;
        delivered.insert(r.header("webhook-id").to_owned());
    }
    assert_eq!(delivered, acked);

    // The event is stored, and its delivery recorded as delivered, in the database.
    let id = acked.iter().next().unwrap();
    let mut shown = Value::Null;
    for _ in 0..50 {
        shown = client
            .get(format!("http://{}/api/v1/events/{id}", process.admin))
            .send()
            .await
            .expect("get event")
            .json()
            .await
            .expect("json");
        if shown.to_string().contains("\"delivered\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(shown.to_string().contains("\"delivered\""), "{shown}");
    drop(process);
}

/// Posts `body` to one ingest process, retrying a 503 (the store may be briefly out of
/// reach in the outage test); returns the acknowledged event id.
async fn post_until_acked(
    client: &reqwest::Client,
    ingest: std::net::SocketAddr,
    body: String,
) -> (String, usize) {
    let mut refusals = 0;
    loop {
        let answer = client
            .post(format!("http://{ingest}/in/load"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == 200 => {
                let json: Value = r.json().await.expect("json");
                return (json["id"].as_str().expect("id").to_owned(), refusals);
            }
            Ok(r) => {
                assert_eq!(r.status(), 503, "only 503 while the store is out of reach");
                assert!(
                    r.headers().contains_key("retry-after"),
                    "503 carries Retry-After"
                );
                refusals += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("ingest unreachable: {e}"),
        }
    }
}

/// Checks each key's arrivals: in order from 0 to `per_key - 1`, a repeat allowed only
/// right after itself (a send whose worker died is sent again before the next).
fn assert_in_order_per_key(arrivals: &[(String, u64)], keys: &[String], per_key: u64) {
    for k in keys {
        let seqs: Vec<u64> = arrivals
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(seqs.first(), Some(&0), "key {k}: {seqs:?}");
        assert_eq!(seqs.last(), Some(&(per_key - 1)), "key {k}: {seqs:?}");
        for w in seqs.windows(2) {
            assert!(
                w[1] == w[0] || w[1] == w[0] + 1,
                "key {k} out of order: {seqs:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_and_two_delivery_processes_share_one_database() {
    const MAX_CONCURRENCY: usize = 3;
    const KEYS: usize = 6;
    const PER_KEY: u64 = 12;
    let rule = std::sync::Arc::new(|_: &axum::body::Bytes| 200);
    let mut receiver =
        Receiver::start_with_rule(rule, std::time::Duration::from_millis(20), "key").await;
    let schema = Schema::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(
        dir.path(),
        &format!(
            "[sources.load]\n\
             [destinations.d]\nkind = \"http\"\nurl = \"{}\"\nmax_concurrency = {MAX_CONCURRENCY}\n\
             [[routes]]\nsource = \"load\"\ndestination = \"d\"\n\
             transform = '{{key: .body.key, seq: .body.seq}}'\nordering_key = '.body.key'\n",
            receiver.url
        ),
    );
    let ingest = [
        spawn_serve_with(&config, &["--role", "ingest"]),
        spawn_serve_with(&config, &["--role", "ingest"]),
    ];
    let mut victim = Some(spawn_serve_with(&config, &["--role", "deliver"]));
    let survivor = spawn_serve_with(&config, &["--role", "deliver"]);
    let client = crate::support::client();

    // One sender per key posts its events in order, alternating between the ingest
    // processes, each only after the previous one was acknowledged: receive order per
    // key is then seq order, whichever process took it.
    let keys: Vec<String> = (0..KEYS).map(|k| format!("k{k}")).collect();
    let mut senders = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        let (client, key) = (client.clone(), key.clone());
        let addrs = [ingest[0].ingest, ingest[1].ingest];
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for seq in 0..PER_KEY {
                let body = format!(r#"{{"key":"{key}","seq":{seq}}}"#);
                let (id, _) = post_until_acked(&client, addrs[(k + seq as usize) % 2], body).await;
                acked.push(id);
            }
            acked
        }));
    }
    // Meanwhile, kill one delivery process mid-run; the maintenance leader sees its
    // presence lock gone, ends its leases after a 10 s grace, and the other process
    // sends what it held (the bound below is well under the 60 s lease).
    let mut arrivals: Vec<(String, u64)> = Vec::new();
    let mut delivered = BTreeSet::new();
    while delivered.len() < KEYS * PER_KEY as usize {
        let r = receiver
            .next_within(std::time::Duration::from_secs(30))
            .await;
        let v: Value = serde_json::from_slice(&r.body).expect("json body");
        arrivals.push((
            v["key"].as_str().expect("key").to_owned(),
            v["seq"].as_u64().expect("seq"),
        ));
        delivered.insert(r.header("webhook-id").to_owned());
        if arrivals.len() == 20
            && let Some(v) = victim.take()
        {
            v.signal(libc::SIGKILL);
            drop(v);
        }
    }
    assert!(victim.is_none(), "a delivery process was killed mid-run");
    let mut acked = BTreeSet::new();
    for s in senders {
        acked.extend(s.await.expect("sender"));
    }
    assert_eq!(acked.len(), KEYS * PER_KEY as usize);

    assert_eq!(delivered, acked, "every acknowledged event was delivered");
    assert!(
        receiver.peak_in_flight() <= MAX_CONCURRENCY,
        "max_concurrency holds across processes: peak {}",
        receiver.peak_in_flight()
    );
    assert_eq!(
        receiver.peak_in_flight_per_group(),
        1,
        "one in flight per key"
    );
    assert_in_order_per_key(&arrivals, &keys, PER_KEY);

    // The overview of any process counts the events both ingest processes stored, once
    // each has written its tally (every 2 s).
    let admin = survivor.admin;
    let counted = within(std::time::Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            let a: Value = client
                .get(format!("http://{admin}/api/v1/activity?window=1h"))
                .send()
                .await
                .expect("activity")
                .json()
                .await
                .expect("activity json");
            let events: u64 = a["sources"][0]["events"]
                .as_array()
                .map_or(0, |b| b.iter().filter_map(Value::as_u64).sum());
            events == KEYS as u64 * PER_KEY
        }
    })
    .await;
    assert!(
        counted,
        "the cluster's activity counts every stored event once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_under_load_lose_nothing_acknowledged_and_recover() {
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 40;
    let mut receiver = Receiver::start(&[]).await;
    let schema = std::sync::Arc::new(Schema::fresh());
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(dir.path(), &routes_to(&receiver.url, ""));
    let process = spawn_serve(&config);
    let client = crate::support::client();

    // Cut every connection the process holds, again and again, while senders post.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cutter = {
        let (schema, stop) = (schema.clone(), stop.clone());
        tokio::spawn(async move {
            let mut cut = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                cut += schema.cut_connections().await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            cut
        })
    };
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (client, ingest) = (client.clone(), process.ingest);
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refusals = 0;
            for n in 0..PER_SENDER {
                let (id, refused) =
                    post_until_acked(&client, ingest, format!(r#"{{"s":{s},"n":{n}}}"#)).await;
                acked.push(id);
                refusals += refused;
            }
            (acked, refusals)
        }));
    }
    let mut acked = BTreeSet::new();
    let mut refusals = 0;
    for s in senders {
        let (ids, refused) = s.await.expect("sender");
        acked.extend(ids);
        refusals += refused;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let cut = cutter.await.expect("cutter");
    assert!(cut > 0, "connections were cut");
    assert_eq!(
        acked.len(),
        SENDERS * PER_SENDER,
        "every request was acknowledged in the end"
    );

    // No 2xx without a commit: every acknowledged id is in the database.
    let (db, conn) =
        tokio_postgres::connect(&crate::support::postgres::url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(conn);
    let ids: Vec<String> = acked.iter().cloned().collect();
    let stored: i64 = db
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.events WHERE id = ANY($1)",
                schema.0
            ),
            &[&ids],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        stored as usize,
        acked.len(),
        "an acknowledged event is missing"
    );

    // The delivery engine backed off during the cuts and resumed by itself.
    let mut delivered = BTreeSet::new();
    while !acked.is_subset(&delivered) {
        let r = receiver
            .next_within(std::time::Duration::from_secs(30))
            .await;
        delivered.insert(r.header("webhook-id").to_owned());
    }
    eprintln!("cut {cut} connections; {refusals} requests answered 503 on the way");
    drop(process);
}

#[test]
fn a_postgres_url_is_checked_when_the_config_loads() {
    let parse = |storage: &str| {
        forebay::Config::parse(
            &format!("[storage]\n{storage}\n"),
            std::iter::empty::<(&str, &str)>(),
        )
    };
    let ok = parse(
        "url = \"postgres://forebay@db.internal:5432/forebay\"\nschema = \"hooks\"\npool_size = 8",
    )
    .expect("a PostgreSQL URL loads");
    assert_eq!(
        ok.storage.backend,
        forebay::config::Backend::Postgres {
            url: "postgres://forebay@db.internal:5432/forebay".into(),
            schema: Some("hooks".into()),
            pool_size: 8,
        }
    );
    for (storage, key, hint) in [
        (
            "url = \"postgres://forebay@db:notaport/forebay\"",
            "storage.url",
            "postgres://USER",
        ),
        (
            "url = \"postgres://forebay@db:5432\"",
            "storage.url",
            "names no database",
        ),
        (
            "url = \"postgres://u@h/db\"\nschema = \"Bad-Name\"",
            "storage.schema",
            "plain schema name",
        ),
        (
            "url = \"postgres://u@h/db\"\npool_size = 1",
            "storage.pool_size",
            "at least 2",
        ),
    ] {
        let message = parse(storage).expect_err(storage).to_string();
        assert!(
            message.contains(key) && message.contains(hint),
            "{storage}: {message}"
        );
    }
}

/// Two delivery processes draining a backlog under load, one killed with SIGKILL while
/// it holds sends (claimed and recorded in batches): every acknowledged event is
/// delivered, and no delivery is ever sent twice by live processes. The only repeats
/// allowed are of what the dead process held, sent once more by the survivor after the
/// 10 s grace for dead claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_process_killed_under_load_loses_nothing_and_live_ones_never_send_twice() {
    const SENDERS: usize = 16;
    const PER_SENDER: usize = 60;
    const EVENTS: usize = SENDERS * PER_SENDER;
    let mut receiver = Receiver::start_slow(&[], std::time::Duration::from_millis(2)).await;
    let schema = Schema::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(
        dir.path(),
        &routes_to(&receiver.url, "max_concurrency = 32"),
    );
    let ingest = spawn_serve_with(&config, &["--role", "ingest"]);
    let mut victim = Some(spawn_serve_with(&config, &["--role", "deliver"]));
    let _survivor = spawn_serve_with(&config, &["--role", "deliver"]);
    let client = crate::support::client();

    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (client, addr) = (client.clone(), ingest.ingest);
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..PER_SENDER {
                let body = format!(r#"{{"s":{s},"n":{n}}}"#);
                acked.push(post_until_acked(&client, addr, body).await.0);
            }
            acked
        }));
    }
    let mut copies: std::collections::BTreeMap<String, Vec<std::time::Instant>> =
        Default::default();
    let mut killed_at = None;
    let mut arrivals = 0;
    while copies.len() < EVENTS {
        let r = receiver
            .next_within(std::time::Duration::from_secs(30))
            .await;
        arrivals += 1;
        copies
            .entry(r.header("webhook-id").to_owned())
            .or_default()
            .push(r.at);
        if arrivals == EVENTS / 4
            && let Some(v) = victim.take()
        {
            v.signal(libc::SIGKILL);
            drop(v);
            killed_at = Some(std::time::Instant::now());
        }
    }
    let killed_at = killed_at.expect("a delivery process was killed mid-run");
    let mut acked = BTreeSet::new();
    for s in senders {
        acked.extend(s.await.expect("sender"));
    }
    let delivered: BTreeSet<String> = copies.keys().cloned().collect();
    assert_eq!(delivered, acked, "every acknowledged event was delivered");
    let repeats: Vec<_> = copies.iter().filter(|(_, at)| at.len() > 1).collect();
    for (id, at) in &repeats {
        assert_eq!(at.len(), 2, "{id} was sent {} times", at.len());
        assert!(
            at[0] <= killed_at + std::time::Duration::from_secs(1),
            "{id}: its first copy came after the kill, from a live process"
        );
        assert!(
            at[1] >= at[0] + std::time::Duration::from_secs(5),
            "{id}: sent twice {:?} apart, by live processes",
            at[1] - at[0]
        );
    }
    eprintln!(
        "killed under load: {EVENTS} acknowledged, all delivered; {} sent again after the kill",
        repeats.len()
    );
}

/// One process on a schema of its own, routing source `load` to `url`, its log
/// written to a file (in the directory returned last, which must outlive it).
fn logged_process(
    url: &str,
) -> (
    Schema,
    std::path::PathBuf,
    crate::support::binary::Process,
    tempfile::TempDir,
) {
    let schema = Schema::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = schema.write_config(dir.path(), &routes_to(url, ""));
    let log = dir.path().join("forebay.log");
    let process = spawn_serve_logging_to(&config, &log);
    (schema, log, process, dir)
}

/// While the store refuses every write, each request is answered 503 with Retry-After,
/// but the log gets a line per kind of failure and window, not one per request (which
/// on a full disk would fill the disk further); the process recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_is_logged_once_per_window_not_once_per_request() {
    const REQUESTS: usize = 300;
    let receiver = Receiver::start(&[]).await;
    let (schema, log, process, _dir) = logged_process(&receiver.url);
    let client = crate::support::client();
    let post = |n: usize| {
        client
            .post(format!("http://{}/in/load", process.ingest))
            .body(format!(r#"{{"n":{n}}}"#))
            .send()
    };
    assert_eq!(post(0).await.unwrap().status(), 200);

    // Every insert into events now fails, as on a full disk.
    schema.refuse_inserts("events").await;
    let mut refused = 0;
    for n in 1..=REQUESTS {
        let r = post(n).await.unwrap();
        assert_eq!(r.status(), 503, "request {n}");
        assert!(r.headers().contains_key("retry-after"));
        refused += 1;
    }

    // Space is back: the next request is stored.
    schema.allow_inserts("events").await;
    assert_eq!(post(REQUESTS + 1).await.unwrap().status(), 200);
    drop(process);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains("No space left on device")),
        "the failure is logged: {text}"
    );
    // A few kinds of line (the group, the write, the answer), each once per 10 s.
    assert!(
        lines.len() <= 12,
        "{refused} refused requests made {} log lines:\n{text}",
        lines.len()
    );
}

/// Polls `check` every 20 ms for at most `bound`; true once it held.
async fn within<F, Fut>(bound: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// An attempt made while the store cannot record it is recorded once the store is back,
/// well before its lease (60 s) would end and send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_cannot_be_recorded_is_recorded_when_the_store_is_back() {
    let mut receiver = Receiver::start(&[]).await;
    let (schema, log, process, _dir) = logged_process(&receiver.url);
    let client = crate::support::client();

    schema.refuse_inserts("attempts").await;
    let r = client
        .post(format!("http://{}/in/load", process.ingest))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    receiver
        .next_within(std::time::Duration::from_secs(30))
        .await;
    let retrying = within(std::time::Duration::from_secs(30), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot record an attempt yet; trying again")
    })
    .await;
    assert!(retrying, "the record failed and is being tried again");

    schema.allow_inserts("attempts").await;
    let delivered = || async {
        process
            .admin_json("/api/v1/deliveries?state=delivered")
            .await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let recorded = within(std::time::Duration::from_secs(20), || async {
        delivered().await.len() == 1
    })
    .await;
    assert!(
        recorded,
        "the attempt was recorded without waiting for its lease"
    );
    assert_eq!(delivered().await[0]["attempts"], 1);
    drop(process);
}
