//! Kafka: a record produced with `acks=all` by an idempotent producer, done when the
//! partition leader reports it written to every in-sync replica. The ordering key, when
//! the route has one, is the record's key, so one key's records share a partition and
//! stay in order. Kafka has no message id: a retry after a lost acknowledgement adds
//! the record again (the idempotent producer only covers librdkafka's own resends), and
//! consumers tell repeats apart by the `webhook-id` header.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::OnceCell;

use super::Message;

pub struct KafkaPublisher {
    brokers: String,
    timeout: Duration,
    /// Made at the first publish; librdkafka keeps its connections up after that.
    producer: OnceCell<FutureProducer>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    pub fn new(brokers: &[String], timeout: Duration) -> Self {
        Self {
            brokers: brokers.join(","),
            timeout,
            producer: OnceCell::new(),
        }
    }

    fn producer(&self) -> Result<&FutureProducer, String> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer);
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // librdkafka gives up on a record at the destination's timeout, so an
            // attempt that failed here is not still being resent behind our back.
            .set("message.timeout.ms", self.timeout.as_millis().to_string())
            .set("client.id", "forebay")
            // Each publish waits for its acknowledgement, so only the destination's
            // `max_concurrency` records are ever queued: waiting `linger.ms` (5 ms by
            // default) for more would cap it at that many per 5 ms. Batches still form
            // from what queues while a request is in flight.
            .set("linger.ms", "0")
            .create()
            .map_err(|e| format!("cannot make a Kafka producer: {e}"))?;
        // Another publish may have made one meanwhile; either will do.
        let _ = self.producer.set(producer);
        Ok(self.producer.get().expect("set above"))
    }

    /// Produces the record and waits for its acknowledgement; the receipt names the
    /// partition and offset.
    pub async fn publish(&self, m: &Message<'_>) -> Result<String, String> {
        let producer = self.producer()?;
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (name, value) in &m.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(&m.name).payload(m.body).headers(headers);
        if let Some(key) = &m.key {
            record = record.key(key.as_bytes());
        }
        // librdkafka checks its message timeouts about once a second, so it may report
        // one late: the bound here is exact, with the same clear reason.
        let delivered = tokio::time::timeout(
            self.timeout,
            producer.send(record, Timeout::After(Duration::ZERO)),
        )
        .await
        .map_err(|_| self.not_acknowledged(&m.name))?
        .map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => {
                self.not_acknowledged(&m.name)
            }
            e => format!("Kafka produce failed: {e}"),
        })?;
        Ok(format!(
            "topic {} partition {} offset {}",
            m.name, delivered.partition, delivered.offset
        ))
    }

    fn not_acknowledged(&self, topic: &str) -> String {
        format!(
            "Kafka did not acknowledge within {}: check that brokers {:?} are reachable and topic {topic:?} exists",
            humantime::format_duration(self.timeout),
            self.brokers,
        )
    }

    /// Waits (bounded) for records still queued in librdkafka; none should be, since
    /// every publish waited for its acknowledgement.
    pub async fn close(&self) {
        if let Some(producer) = self.producer.get() {
            let producer = producer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                producer.flush(Timeout::After(Duration::from_secs(1)))
            })
            .await;
        }
    }
}
