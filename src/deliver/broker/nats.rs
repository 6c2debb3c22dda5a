//! NATS JetStream: a publish with headers, done when the stream's ack comes back. The
//! webhook id goes in `Nats-Msg-Id`, so JetStream's duplicate window drops a retry of
//! what it already holds (the ack then says `duplicate`); a replay adds its own id to
//! it, since a replay is asked for to be published again.

use async_nats::jetstream::{self, context::PublishErrorKind};
use tokio::sync::OnceCell;

use super::{Message, describe};

#[derive(Debug)]
pub struct NatsPublisher {
    url: String,
    /// Connected at the first publish; the client reconnects by itself after that.
    context: OnceCell<jetstream::Context>,
}

impl NatsPublisher {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            context: OnceCell::new(),
        }
    }

    async fn context(&self) -> Result<&jetstream::Context, String> {
        self.context
            .get_or_try_init(|| async {
                let client = async_nats::connect(self.url.as_str())
                    .await
                    .map_err(|e| describe("cannot connect to NATS", &e))?;
                Ok(jetstream::new(client))
            })
            .await
    }

    /// Drains the connection, if one was made: nothing is left unsent, since every
    /// publish waited for its ack.
    pub async fn close(&self) {
        if let Some(js) = self.context.get() {
            let _ = js.client().drain().await;
        }
    }

    /// Publishes and waits for the ack; the receipt names the stream and sequence.
    pub async fn publish(&self, m: &Message<'_>) -> Result<String, String> {
        let js = self.context().await?;
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &m.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        headers.insert("Nats-Msg-Id", m.dedup_id.as_str());
        let ack = js
            .publish_with_headers(m.name.clone(), headers, m.body.to_vec().into())
            .await
            .map_err(|e| describe("NATS publish failed", &e))?
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::StreamNotFound => format!(
                    "no JetStream stream covers subject {:?}: add one whose subjects match it (nats stream add)",
                    m.name
                ),
                _ => describe("JetStream did not acknowledge", &e),
            })?;
        Ok(format!(
            "stream {} sequence {}{}",
            ack.stream,
            ack.sequence,
            if ack.duplicate {
                " (a duplicate it already had)"
            } else {
                ""
            }
        ))
    }
}
