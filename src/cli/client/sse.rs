//! Following `GET /api/v1/stream` (server-sent events): the wire parser, and a follower
//! that reconnects with backoff and resumes after the last event it handed out
//! (`Last-Event-ID`), so nothing is missed while the server restarts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::api::Api;
use super::error::CliError;

/// The server sends a keepalive comment every 15 s; three missed mean the connection is gone.
const IDLE: Duration = Duration::from_secs(45);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lasted this long (or carried an event) was healthy: reconnect at once.
const HEALTHY: Duration = Duration::from_secs(10);
/// Longest line accepted (an event with a large body, base64-encoded, on one line).
const MAX_LINE: usize = 64 << 20;

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// The `text/event-stream` format: `field: value` lines, a blank line ends a message,
/// lines starting with `:` are comments.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The last byte was a `\r` (so a following `\n` ends nothing more).
    after_cr: bool,
    id: Option<String>,
    event: String,
    data: String,
    has_data: bool,
}

impl Parser {
    /// Feeds bytes; returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if let Some(message) = self.line_done(&line) {
                        out.push(message);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        return Err(format!(
                            "a stream line is longer than {} MiB",
                            MAX_LINE >> 20
                        ));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Message> {
        if line.is_empty() {
            let message = Message {
                id: self.id.take(),
                event: std::mem::take(&mut self.event),
                data: std::mem::take(&mut self.data),
            };
            return std::mem::take(&mut self.has_data).then_some(message);
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match name {
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

/// What a follower reports about its connection, for the command to print.
pub enum Status<'a> {
    Connected {
        url: &'a str,
        resumed_after: Option<&'a str>,
    },
    Lost {
        error: &'a CliError,
        retry_in: Duration,
    },
}

/// Follows the stream of events, reconnecting for ever (a refusal such as 401 or an unknown
/// source ends it), resuming after the last event handed out.
pub struct Follower<'a> {
    api: &'a Api,
    source: Option<String>,
    last_id: Option<String>,
    response: Option<(reqwest::Response, Instant, bool)>,
    parser: Parser,
    queue: VecDeque<Value>,
    backoff: Duration,
    report: Box<dyn FnMut(Status<'_>) + Send + 'a>,
}

impl<'a> Follower<'a> {
    pub fn new(
        api: &'a Api,
        source: Option<String>,
        after: Option<String>,
        report: impl FnMut(Status<'_>) + Send + 'a,
    ) -> Self {
        Self {
            api,
            source,
            last_id: after,
            response: None,
            parser: Parser::default(),
            queue: VecDeque::new(),
            backoff: FIRST_BACKOFF,
            report: Box::new(report),
        }
    }

    /// The next event (the full event JSON), connecting or reconnecting as needed.
    pub async fn next(&mut self) -> Result<Value, CliError> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if let Some(id) = event.get("id").and_then(Value::as_str) {
                    self.last_id = Some(id.to_owned());
                }
                return Ok(event);
            }
            let Some((response, since, carried)) = &mut self.response else {
                self.connect().await?;
                continue;
            };
            let lost = match tokio::time::timeout(IDLE, response.chunk()).await {
                Ok(Ok(Some(chunk))) => match self.parser.push(&chunk) {
                    Ok(messages) => {
                        for m in messages.into_iter().filter(|m| m.event == "event") {
                            match serde_json::from_str::<Value>(&m.data) {
                                Ok(event) => self.queue.push_back(event),
                                Err(e) => {
                                    return Err(CliError::BadAnswer {
                                        url: self.api.url("/api/v1/stream", &Vec::new()),
                                        reason: format!("an event that is not JSON: {e}"),
                                    });
                                }
                            }
                        }
                        *carried |= !self.queue.is_empty();
                        None
                    }
                    Err(reason) => Some(reason),
                },
                Ok(Ok(None)) => Some("the server closed the stream".to_owned()),
                Ok(Err(e)) => Some(super::error::root_cause(&e)),
                Err(_) => Some(format!("nothing heard for {}s", IDLE.as_secs())),
            };
            if let Some(reason) = lost {
                let healthy = *carried || since.elapsed() >= HEALTHY;
                self.response = None;
                self.parser = Parser::default();
                if healthy {
                    self.backoff = FIRST_BACKOFF;
                }
                let error = CliError::BadAnswer {
                    url: self.api.url("/api/v1/stream", &Vec::new()),
                    reason,
                };
                self.wait(&error).await;
            }
        }
    }

    /// Connects once it can; a refusal (4xx) is final.
    async fn connect(&mut self) -> Result<(), CliError> {
        loop {
            let query = vec![("source", self.source.clone().unwrap_or_default())];
            let headers: Vec<(&'static str, String)> = self
                .last_id
                .iter()
                .map(|id| ("last-event-id", id.clone()))
                .collect();
            match self.api.open("/api/v1/stream", &query, &headers).await {
                Ok((response, url)) => {
                    (self.report)(Status::Connected {
                        url: &url,
                        resumed_after: self.last_id.as_deref(),
                    });
                    self.response = Some((response, Instant::now(), false));
                    return Ok(());
                }
                Err(e @ (CliError::Refused { .. } | CliError::Unauthorized { .. })) => {
                    return Err(e);
                }
                Err(e) => self.wait(&e).await,
            }
        }
    }

    async fn wait(&mut self, error: &CliError) {
        (self.report)(Status::Lost {
            error,
            retry_in: self.backoff,
        });
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_split_anywhere() {
        let wire = b": keepalive\n\nid: evt_1\nevent: event\ndata: {\"a\":1}\n\nid: evt_2\r\nevent: event\r\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..wire.len() {
            let mut p = Parser::default();
            let mut got = p.push(&wire[..split]).unwrap();
            got.extend(p.push(&wire[split..]).unwrap());
            assert_eq!(
                got,
                vec![
                    Message {
                        id: Some("evt_1".into()),
                        event: "event".into(),
                        data: "{\"a\":1}".into()
                    },
                    Message {
                        id: Some("evt_2".into()),
                        event: "event".into(),
                        data: "x\ny".into()
                    },
                ],
                "split at {split}"
            );
        }
    }
}
