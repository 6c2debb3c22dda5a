//! RabbitMQ: a persistent message (`delivery_mode` 2) on a channel in confirm mode,
//! done when the broker confirms it. Published `mandatory`, so a message no queue takes
//! comes back and fails the attempt instead of vanishing; an exchange that does not
//! exist closes the channel, which the next publish opens again.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::sync::Arc;

use tokio::sync::Mutex;

use super::{Message, describe};

pub struct RabbitmqPublisher {
    url: String,
    exchange: String,
    /// The connection and its confirming channel, made again when either closed.
    open: Mutex<Option<(Arc<Connection>, Channel)>>,
}

impl std::fmt::Debug for RabbitmqPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RabbitmqPublisher")
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

impl RabbitmqPublisher {
    pub fn new(url: &str, exchange: &str) -> Self {
        Self {
            url: url.to_owned(),
            exchange: exchange.to_owned(),
            open: Mutex::new(None),
        }
    }

    /// A channel in confirm mode, on the open connection or a new one.
    async fn channel(&self) -> Result<Channel, String> {
        let mut open = self.open.lock().await;
        if let Some((connection, channel)) = &*open {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
            if connection.status().connected() {
                let channel = confirming(connection).await?;
                *open = Some((Arc::clone(connection), channel.clone()));
                return Ok(channel);
            }
        }
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(|e| describe("cannot connect to RabbitMQ", &e))?;
        let channel = confirming(&connection).await?;
        *open = Some((Arc::new(connection), channel.clone()));
        Ok(channel)
    }

    /// Closes the connection with a reply code the broker logs as a normal close.
    pub async fn close(&self) {
        if let Some((connection, _)) = self.open.lock().await.take() {
            let _ = connection.close(200, "forebay is stopping".into()).await;
        }
    }

    /// Publishes and waits for the broker's confirm.
    pub async fn publish(&self, m: &Message<'_>) -> Result<String, String> {
        let channel = self.channel().await?;
        let mut headers = FieldTable::default();
        let mut content_type = None;
        for (name, value) in &m.headers {
            if name == "content-type" {
                content_type = Some(value.as_str());
            } else {
                headers.insert(
                    ShortString::from(name.as_str()),
                    AMQPValue::LongString(value.as_str().into()),
                );
            }
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(m.id.as_str().into())
            .with_headers(headers);
        if let Some(content_type) = content_type {
            properties = properties.with_content_type(content_type.into());
        }
        let confirm = channel
            .basic_publish(
                self.exchange.as_str().into(),
                m.name.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                m.body,
                properties,
            )
            .await
            .map_err(|e| describe("RabbitMQ publish failed", &e))?
            .await
            .map_err(|e| describe("RabbitMQ did not confirm", &e))?;
        if confirm.is_nack() {
            return Err("RabbitMQ refused the message (nack)".to_owned());
        }
        if let Some(returned) = confirm.take_message() {
            return Err(format!(
                "RabbitMQ returned the message: no queue is bound to exchange {:?} with routing key {:?} ({} {})",
                self.exchange, m.name, returned.reply_code, returned.reply_text
            ));
        }
        Ok("confirmed".to_owned())
    }
}

async fn confirming(connection: &Connection) -> Result<Channel, String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| describe("cannot open a RabbitMQ channel", &e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| describe("cannot put the RabbitMQ channel in confirm mode", &e))?;
    Ok(channel)
}
