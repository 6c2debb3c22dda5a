//! Broker destinations: each delivery is published to NATS JetStream, RabbitMQ, a Redis
//! stream or a Kafka topic, and the attempt succeeds only once the broker has
//! acknowledged it (a JetStream publish ack, a RabbitMQ publisher confirm, the `XADD`
//! reply, Kafka's `acks=all`).
//!
//! The message is the outgoing body (the transform's output, or the raw body) with the
//! same metadata an HTTP delivery carries in its headers ([`super::metadata`]): as NATS
//! headers, AMQP properties and headers, Redis stream fields, or Kafka headers. One connection per
//! destination, made at the first publish, shared by its concurrent publishes, and made
//! again after it breaks; a publish that cannot be made or is not acknowledged within
//! the destination's `timeout` is a failed attempt, retried like any other.

#[cfg(feature = "kafka")]
mod kafka;
mod nats;
mod rabbitmq;
mod redis;

use std::time::Duration;

use super::Sent;
use super::sign::Signer;
use crate::config::{Broker, BrokerDestination};
use crate::store::ClaimedDelivery;

/// One outgoing message, whatever the broker.
pub struct Message<'a> {
    /// The subject, routing key or stream, with its placeholders filled in.
    pub name: String,
    /// The webhook id: AMQP's `message_id`, the same on every retry and replay.
    pub id: String,
    /// What a broker's own duplicate window goes by (JetStream's `Nats-Msg-Id`): the
    /// webhook id, and for a replay the webhook id and the replay's id, so a replay is
    /// published again instead of being dropped as a retry of what the broker holds.
    pub dedup_id: String,
    /// `content-type`, forebay's metadata, then the sender's forwarded headers.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// The route's ordering key, if it has one: a Kafka record's key.
    pub key: Option<String>,
}

#[derive(Debug)]
enum Publisher {
    Nats(nats::NatsPublisher),
    Rabbitmq(rabbitmq::RabbitmqPublisher),
    Redis(redis::RedisPublisher),
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaPublisher),
}

#[derive(Debug)]
pub struct BrokerTarget {
    publisher: Publisher,
    name: NameTemplate,
    timeout: Duration,
    signer: Option<Signer>,
}

impl BrokerTarget {
    pub fn new(cfg: &BrokerDestination, signer: Option<Signer>) -> Result<Self, String> {
        let (publisher, name) = match &cfg.broker {
            Broker::Nats(n) => (
                Publisher::Nats(nats::NatsPublisher::new(&n.url)),
                &n.subject,
            ),
            Broker::Rabbitmq(r) => (
                Publisher::Rabbitmq(rabbitmq::RabbitmqPublisher::new(&r.url, &r.exchange)),
                &r.routing_key,
            ),
            Broker::Redis(r) => (
                Publisher::Redis(redis::RedisPublisher::new(&r.url, r.maxlen)?),
                &r.stream,
            ),
            #[cfg(feature = "kafka")]
            Broker::Kafka(k) => (
                Publisher::Kafka(kafka::KafkaPublisher::new(
                    &k.brokers,
                    cfg.settings.timeout.0,
                )),
                &k.topic,
            ),
            #[cfg(not(feature = "kafka"))]
            Broker::Kafka(_) => {
                return Err(
                    "this forebay was built without Kafka: build it with the cargo feature `kafka` (on by default)"
                        .to_owned(),
                );
            }
        };
        Ok(Self {
            publisher,
            name: NameTemplate::parse(name)?,
            timeout: cfg.settings.timeout.0,
            signer,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Closes the broker connection cleanly, at shutdown once no send is in flight.
    pub async fn close(&self) {
        match &self.publisher {
            Publisher::Nats(p) => p.close().await,
            Publisher::Rabbitmq(p) => p.close().await,
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.close().await,
            // Dropping the connection is all Redis needs: no session state to end.
            Publisher::Redis(_) => {}
        }
    }

    /// Publishes `d` once and waits for the broker's acknowledgement, at most `timeout`.
    pub async fn send(&self, d: &ClaimedDelivery, now_secs: i64) -> Sent {
        let message = self.message(d, now_secs);
        let published = match &self.publisher {
            Publisher::Nats(p) => tokio::time::timeout(self.timeout, p.publish(&message)).await,
            Publisher::Rabbitmq(p) => tokio::time::timeout(self.timeout, p.publish(&message)).await,
            Publisher::Redis(p) => tokio::time::timeout(self.timeout, p.publish(&message)).await,
            // Bounded by `timeout` itself, with Kafka's own reason for a record that
            // timed out.
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => Ok(p.publish(&message).await),
        };
        match published {
            Ok(Ok(receipt)) => Sent {
                ok: true,
                response_body: receipt.into_bytes(),
                ..Sent::default()
            },
            Ok(Err(error)) => Sent {
                error: Some(error),
                ..Sent::default()
            },
            Err(_) => Sent {
                error: Some(format!(
                    "timeout: the broker did not acknowledge within {}",
                    humantime::format_duration(self.timeout)
                )),
                ..Sent::default()
            },
        }
    }

    fn message<'a>(&self, d: &'a ClaimedDelivery, now_secs: i64) -> Message<'a> {
        let mut headers = Vec::with_capacity(8 + d.headers.len());
        if let Some(content_type) = d.content_type() {
            headers.push(("content-type".to_owned(), content_type));
        }
        for (name, value) in super::metadata::ours(d, now_secs, self.signer.as_ref()) {
            headers.push((name.to_owned(), value));
        }
        for (name, value) in &d.headers {
            // Only text values: every broker's headers here are strings.
            if name != "content-type"
                && super::metadata::forwardable(name)
                && !headers.iter().any(|(n, _)| n == name)
                && let Ok(value) = std::str::from_utf8(value)
            {
                headers.push((name.clone(), value.to_owned()));
            }
        }
        let id = d.webhook_id();
        Message {
            name: self.name.render(d),
            dedup_id: match &d.replay_id {
                Some(replay) => format!("{id}/{replay}"),
                None => id.clone(),
            },
            id,
            headers,
            body: d.outgoing_body(),
            key: d.ordering_key.clone(),
        }
    }
}

/// A subject, routing key or stream name with `{source}`, `{route}` and `{destination}`
/// placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Source,
    Route,
    Destination,
}

impl NameTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!(
                    "{text:?} has a `{{` without its `}}`; placeholders are {{source}}, {{route}} and {{destination}}"
                ));
            };
            parts.push(match &rest[open + 1..open + close] {
                "source" => Part::Source,
                "route" => Part::Route,
                "destination" => Part::Destination,
                other => {
                    return Err(format!(
                        "{text:?} has an unknown placeholder {{{other}}}; use {{source}}, {{route}} or {{destination}}"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    pub fn render(&self, d: &ClaimedDelivery) -> String {
        let mut out = String::new();
        for part in &self.0 {
            out.push_str(match part {
                Part::Text(text) => text,
                Part::Source => &d.source,
                Part::Route => &d.route,
                Part::Destination => &d.destination,
            });
        }
        out
    }
}

/// An error and its causes on one line, for the attempt's record.
fn describe(what: &str, e: &(dyn std::error::Error + 'static)) -> String {
    format!("{what}: {}", crate::error_chain::Chain(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_unknown_ones_refused() {
        let t = NameTemplate::parse("webhooks.{source}.{route}-{destination}").unwrap();
        let d = ClaimedDelivery {
            id: "dlv_1".into(),
            event_id: "evt_1".into(),
            route: "r".into(),
            destination: "d".into(),
            attempt: 1,
            lease_until_ms: 0,
            source: "stripe".into(),
            received_at_ms: 0,
            headers: Vec::new(),
            body: Vec::new(),
            payload: None,
            part: None,
            replay_id: None,
            ordering_key: None,
        };
        assert_eq!(t.render(&d), "webhooks.stripe.r-d");
        assert_eq!(NameTemplate::parse("plain").unwrap().render(&d), "plain");
        let e = NameTemplate::parse("a.{sauce}").unwrap_err();
        assert!(e.contains("unknown placeholder {sauce}"), "{e}");
        let e = NameTemplate::parse("a.{source").unwrap_err();
        assert!(e.contains("without its `}`"), "{e}");
    }
}
