//! The PostgreSQL store: the conformance suite on a fresh schema per check, and what
//! only this backend does (several stores on one schema, as several processes would
//! be; migrations racing; an unreachable database).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::test_support::{SchemaGuard, open_with, schema_name, url};
use super::{PostgresOptions, PostgresStore};
use crate::id;
use crate::store::conformance::Fresh;
use crate::store::conformance::fixtures::{HOUR_MS, attempt, claim, event};
use crate::store::{
    AfterAttempt, Cluster, ClusterLimit, EventQuery, Inserted, Store, StoreError, StreamPosition,
};

/// A store on a schema of its own, dropped after the check.
struct FreshSchema;

#[async_trait]
impl Fresh for FreshSchema {
    type Guard = SchemaGuard;

    async fn fresh(&self) -> (Arc<dyn Store>, SchemaGuard) {
        let (store, guard) = open_with(PostgresOptions::default()).await;
        (store, guard)
    }
}

mod conformance {
    use super::FreshSchema;
    use crate::store::conformance::conformance_tests;
    conformance_tests!(FreshSchema);
}

/// The whole suite again on a store that seals what it stores: every read must open
/// what every write sealed.
mod sealed_conformance {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::{PostgresOptions, SchemaGuard, open_with};
    use crate::store::Store;
    use crate::store::conformance::{Fresh, conformance_tests, sealing};

    struct SealedSchema;

    #[async_trait]
    impl Fresh for SealedSchema {
        type Guard = SchemaGuard;

        async fn fresh(&self) -> (Arc<dyn Store>, SchemaGuard) {
            let (store, guard) = open_with(PostgresOptions {
                keys: sealing::suite_keys(),
                ..PostgresOptions::default()
            })
            .await;
            (store, guard)
        }
    }

    conformance_tests!(SealedSchema);
}

/// One schema, opened again with other keys.
struct PostgresReopen(String);

#[async_trait]
impl crate::store::conformance::sealing::Reopen for PostgresReopen {
    async fn open(&self, keys: crate::store::seal::Keys) -> Result<Arc<dyn Store>, StoreError> {
        let options = PostgresOptions {
            schema: Some(self.0.clone()),
            keys,
            ..PostgresOptions::default()
        };
        Ok(PostgresStore::open(&url(), options).await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_a_rekey_moves_every_table() {
    let schema = schema_name();
    let _guard = SchemaGuard(schema.clone());
    crate::store::conformance::sealing::keys_rotate_and_a_rekey_moves_every_table(&PostgresReopen(
        schema,
    ))
    .await;
}

/// Opens another store on `schema`, as a second process would.
async fn another(schema: &str) -> Arc<PostgresStore> {
    PostgresStore::open(
        &url(),
        PostgresOptions {
            schema: Some(schema.to_owned()),
            ..PostgresOptions::default()
        },
    )
    .await
    .expect("a second store opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_at_once_migrate_once() {
    let schema = schema_name();
    let _guard = SchemaGuard(schema.clone());
    let opens = (0..6).map(|_| {
        let schema = schema.clone();
        tokio::spawn(async move { another(&schema).await })
    });
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.expect("open task"));
    }
    for s in &stores {
        s.ready().await.expect("every store is ready");
    }
    for s in stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_sent_to_different_processes_make_one_event() {
    let (a, guard) = open_with(PostgresOptions::default()).await;
    let b = another(&guard.0).await;
    let at = 10 * HOUR_MS;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store: Arc<PostgresStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .insert_event(event("s", &format!("k{}", i % 5), at + i, HOUR_MS))
                .await
        }));
    }
    let mut originals = std::collections::BTreeMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let inserted = t.await.expect("task").expect("insert");
        originals
            .entry(i % 5)
            .or_insert_with(Vec::new)
            .push(inserted.event_id().to_owned());
    }
    for ids in originals.values() {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "one event per key: {ids:?}"
        );
    }
    let stored = a
        .list_events(EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(stored.len(), 5);
    assert_eq!(stored.iter().map(|e| e.duplicates).sum::<i64>(), 35);
    b.close().await;
    a.close().await;
}

/// The ids of `claims` claims of up to `limit` each, made all at once and alternately
/// from two processes' stores.
async fn claim_from_both(
    a: &Arc<PostgresStore>,
    b: &Arc<PostgresStore>,
    claims: usize,
    limit: usize,
) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..claims {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut c = claim(10_000);
            c.limit = limit;
            store.claim_deliveries(c).await.expect("claim")
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("task").into_iter().map(|d| d.id));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_claim_one_delivery() {
    let (a, guard) = open_with(PostgresOptions::default()).await;
    let b = another(&guard.0).await;
    for i in 0..50 {
        a.insert_event(event("s", &format!("k{i}"), 1_000 + i, HOUR_MS))
            .await
            .expect("insert");
    }
    let ids = claim_from_both(&a, &b, 10, 7).await;
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a delivery was claimed twice");
    assert_eq!(ids.len(), 50);
    b.close().await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_refuses_to_open() {
    let (store, guard) = open_with(PostgresOptions::default()).await;
    store.close().await;
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "UPDATE {}.forebay_schema SET version = version + 1",
            guard.0
        ))
        .await
        .expect("bump");
    let opened = PostgresStore::open(
        &url(),
        PostgresOptions {
            schema: Some(guard.0.clone()),
            ..PostgresOptions::default()
        },
    )
    .await;
    match opened {
        Err(StoreError::SchemaTooNew { found, known }) => assert_eq!(found, known + 1),
        Err(e) => panic!("expected SchemaTooNew, got {e}"),
        Ok(_) => panic!("a newer schema opened"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_not_fatal() {
    // Nothing listens on port 1.
    let opened = PostgresStore::open(
        "postgres://root@127.0.0.1:1/test",
        PostgresOptions {
            connect_timeout: Duration::from_millis(500),
            ..PostgresOptions::default()
        },
    )
    .await;
    let Err(e) = opened else {
        panic!("opened a store on a closed port")
    };
    assert!(e.is_unavailable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_answer_errors_then_recover_by_themselves() {
    let (store, guard) = open_with(PostgresOptions::default()).await;
    store
        .insert_event(event("s", "before", 1_000, HOUR_MS))
        .await
        .expect("insert before the cut");
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&format!("forebay/{}", guard.0)],
        )
        .await
        .expect("terminate");
    // The first write on a cut connection may fail (503 at ingest), never claim success
    // without a commit; after it the pool opens new connections by itself.
    let mut stored = 0;
    for i in 0..5 {
        match store
            .insert_event(event("s", &format!("after{i}"), 2_000 + i, HOUR_MS))
            .await
        {
            Ok(Inserted::New { .. }) => stored += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
    assert!(stored >= 4, "the store recovered: {stored} of 5 stored");
    let listed = store
        .list_events(EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), stored + 1);
    store.close().await;
}

/// Two stores on one schema with `limit` on destination `d`, and `events` events queued.
async fn limited_pair(
    limit: ClusterLimit,
    events: i64,
) -> (Arc<PostgresStore>, Arc<PostgresStore>, SchemaGuard) {
    let (a, guard) = open_with(PostgresOptions::default()).await;
    let b = another(&guard.0).await;
    for s in [&a, &b] {
        s.join_cluster(Cluster {
            limits: vec![limit.clone()],
            ..Cluster::default()
        });
    }
    for i in 0..events {
        a.insert_event(event("s", &format!("k{i}"), 1_000 + i, HOUR_MS))
            .await
            .expect("insert");
    }
    (a, b, guard)
}

/// A destination with no cap, rate or order is claimed without its lock, by both
/// processes at once: `SKIP LOCKED` alone still gives each delivery to one claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconstrained_claims_run_side_by_side_and_never_share_a_delivery() {
    let limit = ClusterLimit {
        destination: "d".into(),
        max_in_flight: None,
        rate: None,
        ordered: false,
    };
    let (a, b, _guard) = limited_pair(limit, 200).await;
    let ids = claim_from_both(&a, &b, 16, 20).await;
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a delivery was claimed twice");
    assert_eq!(ids.len(), 200, "all of them, 16 claims of 20");
    b.close().await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_holds_across_processes() {
    let limit = ClusterLimit {
        destination: "d".into(),
        max_in_flight: Some(3),
        rate: None,
        ordered: false,
    };
    let (a, b, _guard) = limited_pair(limit, 10).await;
    let first = a.claim_deliveries(claim(10_000)).await.expect("claim");
    assert_eq!(first.len(), 3, "the limit, not the claim's own 10");
    assert!(
        b.claim_deliveries(claim(10_001))
            .await
            .expect("claim")
            .is_empty()
    );
    a.record_attempt(attempt(
        &first[0],
        10_002,
        Some(200),
        AfterAttempt::Delivered,
    ))
    .await
    .expect("record");
    assert_eq!(
        b.claim_deliveries(claim(10_003))
            .await
            .expect("claim")
            .len(),
        1
    );
    // Leases that ran out (a dead process's) no longer count.
    let later = 10_003 + crate::store::conformance::fixtures::LEASE + 1;
    assert_eq!(
        b.claim_deliveries(claim(later)).await.expect("claim").len(),
        3
    );
    b.close().await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_processes() {
    // 2 per second: one start every 500 ms, no burst.
    let limit = ClusterLimit {
        destination: "d".into(),
        max_in_flight: None,
        rate: Some((2, 1_000)),
        ordered: false,
    };
    let (a, b, _guard) = limited_pair(limit, 10).await;
    assert_eq!(
        a.claim_deliveries(claim(10_000))
            .await
            .expect("claim")
            .len(),
        1
    );
    assert!(
        b.claim_deliveries(claim(10_000))
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        a.claim_deliveries(claim(10_400))
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        b.claim_deliveries(claim(10_500))
            .await
            .expect("claim")
            .len(),
        1
    );
    // A long quiet spell does not save up a burst.
    assert_eq!(
        a.claim_deliveries(claim(20_000))
            .await
            .expect("claim")
            .len(),
        1
    );
    b.close().await;
    a.close().await;
}

/// Polls `check` every 50 ms until it holds, for at most 30 s: what another process's
/// death looks like from here (its session ends, PostgreSQL frees its locks, the
/// leader's grace period passes) comes with no notification to wait on.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which of `stores` lead maintenance now.
async fn leaders(stores: &[Arc<PostgresStore>]) -> Vec<usize> {
    let mut leading = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        if s.lead_maintenance().await {
            leading.push(i);
        }
    }
    leading
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_leads_maintenance_and_another_takes_over_when_it_dies() {
    let (first, guard) = open_with(PostgresOptions::default()).await;
    let mut stores = vec![first, another(&guard.0).await, another(&guard.0).await];
    eventually("a leader is elected", || async {
        leaders(&stores).await.len() == 1
    })
    .await;
    let leader = leaders(&stores).await[0];
    // The leader's process dies: its connections end, and its locks with them.
    drop(stores.remove(leader));
    eventually("another process leads", || async {
        leaders(&stores).await.len() == 1
    })
    .await;
    // A process on another schema leads its own schema, not this one's.
    let (elsewhere, _other) = open_with(PostgresOptions::default()).await;
    eventually("the other schema has its own leader", || async {
        elsewhere.lead_maintenance().await
    })
    .await;
    assert_eq!(leaders(&stores).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_a_process_that_died_are_released_after_a_grace_period() {
    let (survivor, guard) = open_with(PostgresOptions::default()).await;
    let victim = another(&guard.0).await;
    let now = crate::clock::now_ms();
    survivor
        .insert_event(event("s", "k", now, HOUR_MS))
        .await
        .unwrap();
    // The victim claims only once it holds its presence lock, as it would after start.
    eventually("the victim is present", || async {
        victim.presence.owner().is_some()
    })
    .await;
    let claimed = victim.claim_deliveries(claim(now)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        survivor.release_dead_claims(now).await.unwrap(),
        0,
        "a live process keeps its claims"
    );
    assert!(
        survivor
            .claim_deliveries(claim(now))
            .await
            .unwrap()
            .is_empty()
    );

    let key = victim.presence.owner().expect("present");
    drop(victim);
    let (db, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    eventually("the victim's presence lock is gone", || async {
        let held: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
                 AND objid::bigint = $1",
                &[&key],
            )
            .await
            .unwrap()
            .get(0);
        held == 0
    })
    .await;
    // Just gone: within the grace period a blip of a live process's connection looks
    // the same, so nothing is released yet.
    assert_eq!(survivor.release_dead_claims(now).await.unwrap(), 0);
    let gone = std::time::Instant::now();
    eventually("the dead process's claim is released", || async {
        survivor.release_dead_claims(now).await.unwrap() == 1
    })
    .await;
    assert!(gone.elapsed() >= super::presence::GRACE - Duration::from_millis(100));
    // Claimable now, long before the victim's lease would have run out.
    let again = survivor.claim_deliveries(claim(now)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, claimed[0].id);
    assert_eq!(survivor.release_dead_claims(now).await.unwrap(), 0);
}

/// The certificate the local server presents, read from its own settings.
async fn server_certificate() -> String {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT current_setting('ssl'), current_setting('ssl_cert_file')",
            &[],
        )
        .await
        .expect("settings");
    assert_eq!(
        row.get::<_, String>(0),
        "on",
        "these tests need the local PostgreSQL to offer TLS (Debian's default)"
    );
    row.get(1)
}

/// Opens a store on `url` (a fresh schema) and says whether its connection is encrypted.
async fn open_encrypted(url: &str) -> Result<bool, StoreError> {
    let schema = schema_name();
    let _guard = SchemaGuard(schema.clone());
    let store = PostgresStore::open(
        url,
        PostgresOptions {
            schema: Some(schema),
            ..PostgresOptions::default()
        },
    )
    .await?;
    let ssl: bool = store
        .client()
        .await?
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    store.close().await;
    Ok(ssl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_in_the_url_encrypts_and_verifies_the_server_as_libpq_does() {
    let cert = server_certificate().await;
    let with = |host: &str, params: &str| format!("{}?{params}", url().replace("127.0.0.1", host));
    assert!(
        !open_encrypted(&with("127.0.0.1", "sslmode=disable"))
            .await
            .unwrap()
    );
    assert!(
        open_encrypted(&with("127.0.0.1", "sslmode=prefer"))
            .await
            .unwrap()
    );
    assert!(
        open_encrypted(&with("127.0.0.1", "sslmode=require"))
            .await
            .unwrap()
    );
    // The certificate is issued for localhost: verify-full accepts that name only;
    // verify-ca checks the chain alone.
    let root = format!("sslrootcert={cert}");
    for (host, mode) in [("localhost", "verify-full"), ("127.0.0.1", "verify-ca")] {
        assert!(
            open_encrypted(&with(host, &format!("sslmode={mode}&{root}")))
                .await
                .unwrap_or_else(|e| panic!("{mode} to {host}: {e:?}")),
        );
    }
    let wrong_name = open_encrypted(&with("127.0.0.1", &format!("sslmode=verify-full&{root}")))
        .await
        .expect_err("the certificate is not for 127.0.0.1");
    let chain = format!("{:?}", anyhow_chain(&wrong_name));
    assert!(chain.contains("NotValidForName"), "{chain}");
}

/// An error and its sources, for asserting on the cause.
fn anyhow_chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut chain = vec![format!("{e:?}")];
    let mut source = e.source();
    while let Some(s) = source {
        chain.push(format!("{s:?}"));
        source = s.source();
    }
    chain
}

/// The wall clock, counting how often it is read: a loop that reads it thousands of
/// times a second is spinning.
#[derive(Default)]
struct CountingClock(std::sync::atomic::AtomicUsize);

impl crate::clock::Clock for CountingClock {
    fn now_ms(&self) -> i64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::clock::now_ms()
    }

    fn sleep_until(
        &self,
        at_ms: i64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        crate::clock::SystemClock.sleep_until(at_ms)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_does_not_lead_maintenance_waits_quietly() {
    use crate::maintenance::{Maintenance, Retention};
    let (leader, guard) = open_with(PostgresOptions::default()).await;
    eventually("the first store leads", || async {
        leader.lead_maintenance().await
    })
    .await;
    let follower = another(&guard.0).await;
    let clock = Arc::new(CountingClock::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(
        Maintenance {
            store: follower.clone(),
            clock: clock.clone(),
            retention: Arc::new(|| Retention {
                sources: Default::default(),
                others: crate::config::RetentionConfig::default(),
            }),
        }
        .run(stopped),
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(!follower.lead_maintenance().await);
    let reads = clock.0.load(std::sync::atomic::Ordering::SeqCst);
    // One look a second: a handful of clock reads, not one per loop of a spin.
    assert!(reads < 50, "the clock was read {reads} times in 2.5 s");
}

async fn statement_timeout(client: &deadpool_postgres::Client) -> String {
    client
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0)
}

/// A transaction run by hand and abandoned (its future dropped, or a panic) must not
/// hand its open transaction, locks and `SET LOCAL`s to the pool's next user; one that
/// ended, well or badly, leaves its connection clean for reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_hand_run_transaction_never_goes_back_to_the_pool() {
    let (pool, _) = super::pool::build(&url(), None, 1, Duration::from_secs(5)).expect("pool");
    let abandoned = super::pool::HandRun::new(pool.get().await.expect("client"));
    abandoned
        .batch_execute("BEGIN; SET LOCAL statement_timeout = '123ms'")
        .await
        .expect("begin");
    drop(abandoned);
    let next = pool.get().await.expect("client");
    let timeout = statement_timeout(&next).await;
    assert_ne!(
        timeout, "123ms",
        "the abandoned transaction came back from the pool"
    );

    // Finished properly, the connection is reused as usual.
    drop(next);
    let finished = super::pool::HandRun::new(pool.get().await.expect("client"));
    finished
        .batch_execute("BEGIN; SET LOCAL statement_timeout = '123ms'; COMMIT")
        .await
        .expect("transaction");
    finished.end(Ok::<(), ()>(())).await.expect("ended");
    assert_eq!(pool.status().size, 1);

    // One that failed is rolled back before its connection is reused.
    let failed = super::pool::HandRun::new(pool.get().await.expect("client"));
    failed
        .batch_execute("BEGIN; SET LOCAL statement_timeout = '123ms'")
        .await
        .expect("begin");
    assert!(failed.end(Err::<(), ()>(())).await.is_err());
    let reused = pool.get().await.expect("client");
    let timeout = statement_timeout(&reused).await;
    assert_ne!(
        timeout, "123ms",
        "the failed transaction was not rolled back"
    );
    assert_eq!(pool.status().size, 1, "its connection was reused");
}

/// A plain connection to `schema`, as another process mid-transaction would hold.
async fn raw_client(schema: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .await
        .expect("search path");
    client
}

/// Inserts a bare event with `id` and dedup key `key` on `client` (in whatever
/// transaction it has open).
async fn insert_raw_event(client: &tokio_postgres::Client, id: &str, key: &str, at: i64) {
    client
        .execute(
            "INSERT INTO events (id, source, received_at, method, path, headers, body, dedup_key)
             VALUES ($1, 's', $2, 'POST', '/in/s', ''::bytea, 'raw'::bytea, $3)",
            &[&id, &at, &key],
        )
        .await
        .expect("insert");
}

/// The ids of the events after `from`, once `n` show (other checks' transactions,
/// running beside, can hold the stream back a moment), for at most 30 s.
async fn stream_ids_once(store: &PostgresStore, from: StreamPosition, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ids: Vec<String> = store
            .events_after_position(from, None, 10)
            .await
            .expect("read")
            .into_iter()
            .map(|(_, e)| e.request.id)
            .collect();
        if ids.len() >= n || tokio::time::Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Groups of different processes commit side by side, so one that started first can
/// commit last: the live stream holds back what committed after it started until it
/// ends, then gives it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_waits_for_an_open_transaction_and_never_skips_it() {
    let (store, guard) = open_with(PostgresOptions::default()).await;
    let start = store.last_event_position().await.expect("start");
    let open = raw_client(&guard.0).await;
    open.batch_execute("BEGIN").await.expect("begin");
    let slow = id::new(id::EVENT);
    insert_raw_event(&open, &slow, "slow", 10 * HOUR_MS).await;

    let quick = match store
        .insert_event(event("s", "quick", 10 * HOUR_MS, HOUR_MS))
        .await
        .expect("insert")
    {
        Inserted::New { id } => id,
        other => panic!("new expected: {other:?}"),
    };
    assert!(
        store
            .events_after_position(start, None, 10)
            .await
            .expect("read")
            .is_empty(),
        "nothing shows while an older transaction is open"
    );
    // A follower resuming after the quick event (found by search, not given by the
    // stream) must not skip the slow one either.
    let after_quick = store
        .event_position(&quick)
        .await
        .expect("position")
        .expect("stored");

    open.batch_execute("COMMIT").await.expect("commit");
    let seen = stream_ids_once(&store, start, 2).await;
    assert_eq!(
        seen,
        [slow.clone(), quick.clone()],
        "the older transaction's event first"
    );
    let seen = stream_ids_once(&store, after_quick, 1).await;
    assert_eq!(
        seen.first(),
        Some(&slow),
        "resuming after the quick one: {seen:?}"
    );
    store.close().await;
}

/// A schema of version 3 with events in it: upgraded in place, its events still dedup
/// new repeats and still stand first in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_schema_keeps_its_events_their_dedup_and_their_stream_order() {
    let schema = schema_name();
    let guard = SchemaGuard(schema.clone());
    let (pool, _) =
        super::pool::build(&url(), Some(&schema), 1, Duration::from_secs(5)).expect("pool");
    let mut client = pool.get().await.expect("client");
    super::schema::migrate_to(&mut client, Some(&schema), 3)
        .await
        .expect("version 3");
    drop(client);
    let old = raw_client(&schema).await;
    let at = 10 * HOUR_MS;
    let (first, second) = (id::new_at(id::EVENT, at), id::new_at(id::EVENT, at + 1));
    insert_raw_event(&old, &first, "k1", at).await;
    insert_raw_event(&old, &second, "k2", at + 1).await;
    // A later repeat of k1 outside its window was stored as new: the latest counts.
    let third = id::new_at(id::EVENT, at + 2 * HOUR_MS);
    insert_raw_event(&old, &third, "k1", at + 2 * HOUR_MS).await;

    let store = another(&schema).await;
    assert_eq!(
        super::schema::version(&store.client().await.expect("client"))
            .await
            .expect("version"),
        super::schema::VERSION
    );
    let repeat = store
        .insert_event(event("s", "k1", at + 2 * HOUR_MS + 10, HOUR_MS))
        .await
        .expect("insert");
    assert_eq!(
        repeat,
        Inserted::Duplicate {
            original_id: third.clone()
        }
    );
    let repeat = store
        .insert_event(event("s", "k2", at + 10, HOUR_MS))
        .await
        .expect("insert");
    assert_eq!(
        repeat,
        Inserted::Duplicate {
            original_id: second.clone()
        }
    );

    // A follower resuming after the first old event reads the other old ones, then
    // the new.
    let new = store
        .insert_event(event("s", "k3", at + 3 * HOUR_MS, HOUR_MS))
        .await
        .expect("insert");
    let from = store
        .event_position(&first)
        .await
        .expect("position")
        .expect("stored");
    let seen = stream_ids_once(&store, from, 3).await;
    assert_eq!(seen, [second, third, new.event_id().to_owned()]);
    store.close().await;
    drop(guard);
}

/// The migration and retention compute dedup hashes in SQL; ingest in Rust: they agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_hashes_agree_between_rust_and_sql() {
    let (store, _guard) = open_with(PostgresOptions::default()).await;
    let client = store.client().await.expect("client");
    let keys = [("s", "k"), ("stripe", "evt_1"), ("é", "ключ ✓"), ("", "")];
    for (source, key) in keys {
        let sql = format!(
            "SELECT {}",
            crate::store::key_hash::dedup_hash_sql("$1::text", "$2::text")
        );
        let in_sql: i64 = client
            .query_one(&sql, &[&source, &key])
            .await
            .expect("hash")
            .get(0);
        assert_eq!(
            in_sql,
            crate::store::key_hash::dedup_hash(source, key),
            "{source:?}/{key:?}"
        );
    }
    store.close().await;
}

/// A dedup row found under a key's hash but holding another key (a hash collision) is
/// never taken for a match, and is left as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_collision_never_makes_a_distinct_event_a_duplicate() {
    let (store, guard) = open_with(PostgresOptions::default()).await;
    let at = 10 * HOUR_MS;
    let other = match store
        .insert_event(event("s", "other", at, HOUR_MS))
        .await
        .expect("insert")
    {
        Inserted::New { id } => id,
        dup => panic!("new expected: {dup:?}"),
    };
    // Make the row of "other" look like the row of "k"'s hash.
    let raw = raw_client(&guard.0).await;
    raw.execute(
        "UPDATE dedup_keys SET hash = $1 WHERE event_id = $2",
        &[&crate::store::key_hash::dedup_hash("s", "k"), &other],
    )
    .await
    .expect("collide");

    let first = store
        .insert_event(event("s", "k", at + 1, HOUR_MS))
        .await
        .expect("insert");
    assert!(matches!(first, Inserted::New { .. }), "{first:?}");
    let row: (String, String) = raw
        .query_one(
            "SELECT dedup_key, event_id FROM dedup_keys WHERE hash = $1",
            &[&crate::store::key_hash::dedup_hash("s", "k")],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("row");
    assert_eq!(row, ("other".to_owned(), other), "the row is left as it is");
    store.close().await;
}

/// `dedup_keys` rows changed in the current transaction, as PostgreSQL counts them.
async fn dedup_rows_updated(tx: &deadpool_postgres::Transaction<'_>) -> i64 {
    tx.query_one(
        "SELECT coalesce(sum(n_tup_upd), 0)::bigint FROM pg_stat_xact_user_tables
         WHERE relname = 'dedup_keys' AND schemaname = current_schema()",
        &[],
    )
    .await
    .expect("stats")
    .get(0)
}

/// A group writes each new key's row once; a key whose latest event changes within the
/// group (a repeat after its window) is written back, and later repeats find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_writes_back_only_the_keys_whose_latest_event_changed() {
    let (store, _guard) = open_with(PostgresOptions::default()).await;
    let mut client = store.client().await.expect("client");
    let channel = super::cluster::channel(None);
    let at = 10 * HOUR_MS;

    let tx = client.transaction().await.expect("begin");
    let fresh: Vec<_> = (0..5)
        .map(|i| event("s", &format!("k{i}"), at, HOUR_MS))
        .collect();
    let refs: Vec<&_> = fresh.iter().collect();
    let outcomes = super::write_events::insert_group(&tx, &refs, &[], &channel)
        .await
        .expect("group");
    assert!(outcomes.iter().all(|o| matches!(o, Inserted::New { .. })));
    assert_eq!(
        dedup_rows_updated(&tx).await,
        0,
        "new keys are written once"
    );
    tx.commit().await.expect("commit");

    // One key twice in a group, the second past the first's window: both new, and the
    // row ends at the second.
    let tx = client.transaction().await.expect("begin");
    let first = event("s", "again", at, 1_000);
    let second = event("s", "again", at + 5_000, 1_000);
    let outcomes = super::write_events::insert_group(&tx, &[&first, &second], &[], &channel)
        .await
        .expect("group");
    assert!(outcomes.iter().all(|o| matches!(o, Inserted::New { .. })));
    assert_eq!(dedup_rows_updated(&tx).await, 1);
    tx.commit().await.expect("commit");
    let repeat = store
        .insert_event(event("s", "again", at + 5_500, 1_000))
        .await
        .expect("insert");
    assert_eq!(
        repeat,
        Inserted::Duplicate {
            original_id: second.id.clone()
        }
    );
    store.close().await;
}

/// Upgrading to schema 5 counts the last 25 hours of events and attempts from their
/// rows, so the overview does not start empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_counters_begin_with_the_last_days_rows() {
    use crate::store::conformance::fixtures::{
        check_the_activity_backfill, rows_for_the_activity_backfill,
    };
    let (store, guard) = open_with(PostgresOptions::default()).await;
    let schema = guard.0.clone();
    let now = rows_for_the_activity_backfill(&*store).await;
    store.close().await;
    // As a schema of version 4 had it: no counters (nor what later versions added), so
    // that opening it runs versions 5 to the last on a schema with data.
    raw_client(&schema)
        .await
        .batch_execute(
            "DROP TABLE activity; DROP TABLE sealing_keys; DROP TABLE archive_objects; DROP INDEX events_redaction_pending;
             ALTER TABLE events DROP COLUMN redacted, DROP COLUMN redaction_pending,
                                DROP COLUMN redact_rule;
             ALTER TABLE paused DROP COLUMN reason;
             ALTER TABLE deliveries DROP COLUMN priority, DROP COLUMN debounce_key;
             UPDATE forebay_schema SET version = 4",
        )
        .await
        .unwrap();

    let store = another(&schema).await;
    check_the_activity_backfill(&*store, now).await;
    store.close().await;
}

#[tokio::test]
async fn sealed_bodies_and_headers_are_not_stored_in_the_clear() {
    for sealed in [false, true] {
        let (store, guard) = open_with(PostgresOptions {
            keys: if sealed {
                crate::store::conformance::sealing::suite_keys()
            } else {
                crate::store::seal::Keys::default()
            },
            ..PostgresOptions::default()
        })
        .await;
        let id = crate::store::conformance::sealing::store_marked(&*store).await;
        let raw = raw_client(&guard.0).await;
        let row = raw
            .query_one("SELECT headers, body FROM events WHERE id = $1", &[&id])
            .await
            .unwrap();
        let (headers, body): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
        let found = |blob: &[u8], marker: &[u8]| blob.windows(marker.len()).any(|w| w == marker);
        // The control run shows the search would find them in the clear.
        assert_eq!(
            found(&body, b"4242-marker-body"),
            !sealed,
            "sealed: {sealed}"
        );
        assert_eq!(
            found(&headers, b"marker-header-value"),
            !sealed,
            "sealed: {sealed}"
        );
        store.close().await;
    }
}
