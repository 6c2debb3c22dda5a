//! What the broker benchmark needs in each broker, and its removal afterwards: a
//! JetStream stream, a durable RabbitMQ queue, or (Redis) nothing but the key to drop;
//! (Kafka) nothing, the topic is made on first use. Also counts what a broker holds, to
//! check that every delivery landed.
//!
//! `flood rabbitmq NAME` is the broker's own ceiling, without forebay: 100,000 persistent
//! 1 KiB messages with forebay's properties and headers, published to the queue with
//! confirms, 256 in flight (or the `IN_FLIGHT` environment variable), as fast as it
//! takes them. The queue is a classic one, or a quorum queue with `QUEUE_TYPE=quorum`.
//!
//! Usage: `cargo run --release --example broker-setup -- (create|count|delete|flood) (nats|rabbitmq|redis|kafka) NAME`
//! against the brokers on 127.0.0.1's standard ports. The NATS stream is `NAME` over the
//! subjects `NAME.>`; the queue, the Redis stream and the Kafka topic are `NAME`.

use async_nats::jetstream::{self, stream};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

const NATS: &str = "nats://127.0.0.1:4222";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const REDIS: &str = "redis://127.0.0.1:6379";
const KAFKA: &str = "127.0.0.1:9092";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [action, broker, name] = <[String; 3]>::try_from(args).map_err(|_| {
        "usage: broker-setup (create|count|delete) (nats|rabbitmq|redis|kafka) NAME".to_owned()
    })?;
    match broker.as_str() {
        "nats" => {
            let js = jetstream::new(async_nats::connect(NATS).await?);
            match action.as_str() {
                "create" => {
                    js.create_stream(stream::Config {
                        name: name.clone(),
                        subjects: vec![format!("{name}.>")],
                        ..Default::default()
                    })
                    .await?;
                }
                "count" => {
                    let mut s = js.get_stream(&name).await?;
                    println!("{}", s.info().await?.state.messages);
                }
                _ => {
                    js.delete_stream(&name).await?;
                }
            }
        }
        "rabbitmq" => {
            let connection = Connection::connect(AMQP, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            let options = QueueDeclareOptions {
                durable: true,
                passive: action != "create",
                ..QueueDeclareOptions::default()
            };
            let queue = channel
                .queue_declare(name.as_str().into(), options, queue_arguments()?)
                .await?;
            match action.as_str() {
                "count" => println!("{}", queue.message_count()),
                "flood" => rabbitmq_flood(&connection, &name).await?,
                "delete" => {
                    channel
                        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await?;
                }
                _ => {}
            }
            let _ = connection.close(200, "done".into()).await;
        }
        "redis" => {
            let mut redis = redis::Client::open(REDIS)?
                .get_multiplexed_async_connection()
                .await?;
            match action.as_str() {
                "count" => {
                    let n: u64 = redis::cmd("XLEN")
                        .arg(&name)
                        .query_async(&mut redis)
                        .await?;
                    println!("{n}");
                }
                "delete" => {
                    let _: () = redis::cmd("DEL").arg(&name).query_async(&mut redis).await?;
                }
                _ => {}
            }
        }
        "kafka" => {
            if action == "count" {
                println!("{}", kafka_records(&name)?);
            }
        }
        other => {
            return Err(format!("no broker {other:?}: give nats, rabbitmq, redis or kafka").into());
        }
    }
    Ok(())
}

/// Records in every partition of a Kafka topic, read from the start to the end of each
/// (the test broker's high watermarks run behind what it holds, so they are not used).
fn kafka_records(topic: &str) -> Result<u64, Box<dyn std::error::Error>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", "forebay-bench-count")
        .set("enable.partition.eof", "true")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(10))?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    let count = metadata.topics()[0].partitions().len();
    for p in metadata.topics()[0].partitions() {
        partitions.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    let (mut records, mut ended) = (0, 0);
    while ended < count {
        match consumer.poll(std::time::Duration::from_secs(10)) {
            Some(Ok(_)) => records += 1,
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => return Err(e.into()),
            None => return Err("no record for 10 s before the end of every partition".into()),
        }
    }
    Ok(records)
}

/// The headers forebay puts on a message, with values of the same sizes.
fn headers() -> lapin::types::FieldTable {
    use lapin::types::{AMQPValue, FieldTable, ShortString};
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("webhook-id", "evt_0196a1b2c3d4e5f6a7b8c9d0e1f2a3b4"),
        ("webhook-timestamp", "1796580944"),
        ("idempotency-key", "evt_0196a1b2c3d4e5f6a7b8c9d0e1f2a3b4"),
        ("forebay-source", "bench"),
        ("forebay-attempt", "1"),
        ("user-agent", "wrk"),
    ] {
        headers.insert(ShortString::from(name), AMQPValue::LongString(value.into()));
    }
    headers
}

/// The queue's type (`x-queue-type`): `classic` unless `QUEUE_TYPE` says `quorum` (the
/// replicated type RabbitMQ recommends for data that must not be lost).
fn queue_arguments() -> Result<FieldTable, String> {
    let mut arguments = FieldTable::default();
    match std::env::var("QUEUE_TYPE").as_deref() {
        Err(_) | Ok("classic") => {}
        Ok("quorum") => {
            let quorum = lapin::types::AMQPValue::LongString("quorum".into());
            arguments.insert("x-queue-type".into(), quorum);
        }
        Ok(other) => return Err(format!("QUEUE_TYPE must be classic or quorum, not {other}")),
    }
    Ok(arguments)
}

/// Publishes 100,000 persistent messages with confirms, 256 in flight (or `IN_FLIGHT`), each with the
/// properties and headers forebay sets; prints the rate.
async fn rabbitmq_flood(
    connection: &Connection,
    queue: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    const MESSAGES: usize = 100_000;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let in_flight = std::env::var("IN_FLIGHT").map_or(Ok(256), |n| n.parse())?;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let body = std::sync::Arc::new(vec![b'x'; 1024]);
    let start = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..MESSAGES {
        let permit = slots.clone().acquire_owned().await?;
        let (channel, body, queue) = (channel.clone(), body.clone(), queue.to_owned());
        tasks.spawn(async move {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_message_id("evt_0196a1b2c3d4e5f6a7b8c9d0e1f2a3b4".into())
                        .with_content_type("application/json".into())
                        .with_headers(headers()),
                )
                .await?
                .await?;
            drop(permit);
            Ok::<bool, lapin::Error>(confirm.is_ack())
        });
        while let Some(done) = tasks.try_join_next() {
            assert!(done??, "nack");
        }
    }
    while let Some(done) = tasks.join_next().await {
        assert!(done??, "nack");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{MESSAGES} persistent messages confirmed in {seconds:.1}s: {:.0}/s",
        MESSAGES as f64 / seconds
    );
    Ok(())
}
