//! What the broker benchmark needs in each broker, and its removal afterwards: a
//! JetStream stream, a durable RabbitMQ queue, or (Redis) nothing but the key to drop;
//! (Kafka) nothing, the topic is made on first use. Also counts what a broker holds, to
//! check that every delivery landed.
//!
//! Usage: `cargo run --release --example broker-setup -- (create|count|delete) (nats|rabbitmq|redis|kafka) NAME`
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

#[tokio::main(flavor = "current_thread")]
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
                .queue_declare(name.as_str().into(), options, FieldTable::default())
                .await?;
            match action.as_str() {
                "count" => println!("{}", queue.message_count()),
                "delete" => {
                    channel
                        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await?;
                }
                _ => {}
            }
            connection.close(200, "done".into()).await?;
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

/// Records in every partition of a Kafka topic: the sum of the high watermarks.
fn kafka_records(topic: &str) -> Result<i64, Box<dyn std::error::Error>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()?;
    let timeout = std::time::Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut records = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        records += high - low;
    }
    Ok(records)
}
