//! Redis Streams: an `XADD` of the body and one field per header, done when Redis
//! answers with the entry's id. Redis has no duplicate window: a retry after a lost
//! reply adds the entry again, and consumers tell repeats apart by `webhook-id`.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Message, describe};

pub struct RedisPublisher {
    client: redis::Client,
    maxlen: Option<u64>,
    /// Connected at the first publish; the manager reconnects by itself after that.
    connection: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL, which may carry a password.
        f.debug_struct("RedisPublisher")
            .field("maxlen", &self.maxlen)
            .finish_non_exhaustive()
    }
}

impl RedisPublisher {
    pub fn new(url: &str, maxlen: Option<u64>) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| describe("not a Redis URL", &e))?;
        Ok(Self {
            client,
            maxlen,
            connection: OnceCell::new(),
        })
    }

    /// Adds the entry; the receipt is its id.
    pub async fn publish(&self, m: &Message<'_>) -> Result<String, String> {
        let mut connection = self
            .connection
            .get_or_try_init(|| async {
                // One try here: the attempt fails at once and is retried on the
                // destination's schedule, instead of waiting out its timeout.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_max_delay(std::time::Duration::from_secs(2));
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| describe("cannot connect to Redis", &e))
            })
            .await?
            .clone();
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&m.name);
        if let Some(maxlen) = self.maxlen {
            xadd.arg("MAXLEN").arg("~").arg(maxlen);
        }
        xadd.arg("*").arg("body").arg(m.body);
        for (name, value) in &m.headers {
            xadd.arg(name).arg(value);
        }
        let id: String = xadd
            .query_async(&mut connection)
            .await
            .map_err(|e| describe("Redis XADD failed", &e))?;
        Ok(format!("entry {id}"))
    }
}
