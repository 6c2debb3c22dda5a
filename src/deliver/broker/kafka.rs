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
use std::sync::Mutex;

use super::Message;

pub struct KafkaPublisher {
    brokers: String,
    timeout: Duration,
    /// Made at the first publish; librdkafka keeps its connections up after that. Made
    /// again after a fatal error (an idempotent producer that was fenced, or whose
    /// sequence broke after a timed-out record), which no later publish could get past.
    producer: Mutex<Option<FutureProducer>>,
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
            producer: Mutex::new(None),
        }
    }

    /// The producer (a handle on it: librdkafka's own threads do the work).
    fn producer(&self) -> Result<FutureProducer, String> {
        let mut slot = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(producer) = &*slot {
            return Ok(producer.clone());
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
        *slot = Some(producer.clone());
        Ok(producer)
    }

    /// Forgets `failed` if it is still the producer in use, so the next publish makes
    /// a new one.
    fn discard(&self, failed: &FutureProducer) {
        let mut slot = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if slot
            .as_ref()
            .is_some_and(|p| std::ptr::eq(p.client(), failed.client()))
        {
            *slot = None;
        }
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
        let sent = tokio::time::timeout(
            self.timeout,
            producer.send(record, Timeout::After(Duration::ZERO)),
        )
        .await
        .map_err(|_| self.not_acknowledged(&m.name))?;
        let delivered = match sent {
            Ok(delivered) => delivered,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)) => {
                return Err(self.not_acknowledged(&m.name));
            }
            Err((e, _)) => {
                let fatal = producer.client().fatal_error().is_some()
                    || matches!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fatal)
                    );
                if fatal {
                    self.discard(&producer);
                    return Err(format!(
                        "Kafka produce failed: {e} (the producer cannot go on: a new one is made for the next attempt)"
                    ));
                }
                return Err(format!("Kafka produce failed: {e}"));
            }
        };
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
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(producer) = producer {
            let _ = tokio::task::spawn_blocking(move || {
                producer.flush(Timeout::After(Duration::from_secs(1)))
            })
            .await;
        }
    }
}
