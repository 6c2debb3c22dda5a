//! The wire format between the server and a sandbox process, over the child's stdin/stdout.
//!
//! Every message is one frame: a `u32` big-endian length, then that many payload bytes.
//!
//! - Server → child, once at start: [`Init`] as JSON (the program texts and the memory limit).
//! - Child → server, once: [`Answer::Ready`], which carries a magic string so that a wrong
//!   executable (say, a test harness) is recognised instead of misread.
//! - Then, one at a time: server → child a [`Request`]: `u32` program index, `u32` output cap,
//!   the input as JSON text; child → server an [`Answer`]: a tag byte, then
//!   - `O`: the outputs, each as compact JSON text, separated by `\n` (compact JSON never
//!     contains a raw newline, and keeping each output its own text keeps nesting depth per
//!     output, not per answer);
//!   - `E`: the expression failed, UTF-8 message;
//!   - `T`: the expression produced more outputs than the cap.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest frame either side accepts. Outputs are bounded by the child's memory limit
/// well before this; the cap only stops a garbled length from allocating gigabytes.
pub const MAX_FRAME: usize = 1 << 30;

/// Sent by the child after it compiled the programs; a different string is a different
/// protocol (or not a sandbox at all).
pub const MAGIC: &[u8] = b"forebay-jq-sandbox/1";

/// The first frame a child reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Init {
    pub programs: Vec<String>,
    pub max_memory_bytes: u64,
}

/// One evaluation.
#[derive(Debug, PartialEq)]
pub struct Request<'a> {
    pub program: u32,
    pub max_outputs: u32,
    /// The input value as JSON text.
    pub input: &'a [u8],
}

impl<'a> Request<'a> {
    /// The whole frame, length prefix included, ready for one `write_all`.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(12 + self.input.len());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&self.program.to_be_bytes());
        frame.extend_from_slice(&self.max_outputs.to_be_bytes());
        frame.extend_from_slice(self.input);
        set_length(&mut frame);
        frame
    }

    pub fn decode(payload: &'a [u8]) -> Result<Self, ProtocolError> {
        let (head, input) = payload
            .split_first_chunk::<8>()
            .ok_or(ProtocolError("request shorter than its header"))?;
        let [p0, p1, p2, p3, m0, m1, m2, m3] = *head;
        Ok(Request {
            program: u32::from_be_bytes([p0, p1, p2, p3]),
            max_outputs: u32::from_be_bytes([m0, m1, m2, m3]),
            input,
        })
    }
}

/// The child's reply to [`Init`] or to a [`Request`].
#[derive(Debug, PartialEq)]
pub enum Answer {
    Ready,
    /// Compact JSON texts separated by `\n`; empty for no outputs.
    Outputs(Vec<u8>),
    Failed(String),
    TooManyOutputs,
}

impl Answer {
    /// The whole frame, length prefix included.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut frame = vec![0; 4];
        match self {
            Answer::Ready => {
                frame.push(b'R');
                frame.extend_from_slice(MAGIC);
            }
            Answer::Outputs(lines) => {
                frame.push(b'O');
                frame.extend_from_slice(lines);
            }
            Answer::Failed(message) => {
                frame.push(b'E');
                frame.extend_from_slice(message.as_bytes());
            }
            Answer::TooManyOutputs => frame.push(b'T'),
        }
        set_length(&mut frame);
        frame
    }

    pub fn decode(mut payload: Vec<u8>) -> Result<Self, ProtocolError> {
        let Some(&tag) = payload.first() else {
            return Err(ProtocolError("empty answer"));
        };
        let rest = &payload[1..];
        match tag {
            b'R' if rest == MAGIC => Ok(Answer::Ready),
            b'R' => Err(ProtocolError("sandbox speaks another protocol version")),
            b'O' => {
                payload.remove(0);
                Ok(Answer::Outputs(payload))
            }
            b'E' => Ok(Answer::Failed(String::from_utf8_lossy(rest).into_owned())),
            b'T' if rest.is_empty() => Ok(Answer::TooManyOutputs),
            _ => Err(ProtocolError("unknown answer tag")),
        }
    }
}

/// A frame that does not follow this protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sandbox protocol error: {0}")]
pub struct ProtocolError(&'static str);

/// Frames a payload that is not a [`Request`] or [`Answer`] (the [`Init`] JSON).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    set_length(&mut frame);
    frame
}

/// Writes the payload length (everything after the 4-byte prefix) into the prefix.
fn set_length(frame: &mut [u8]) {
    // Payloads over 4 GiB cannot be framed; MAX_FRAME rejects them on the reading side, and
    // saturating keeps the length wrong-but-rejected rather than wrapped-and-misread.
    let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&len.to_be_bytes());
}

fn check_length(prefix: [u8; 4], max: usize) -> io::Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            ProtocolError("frame longer than the limit"),
        ));
    }
    Ok(len)
}

/// Reads one frame's payload; `None` at a clean end of stream (between frames).
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0; 4];
    match reader.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0; check_length(prefix, MAX_FRAME)?];
    reader.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// Writes a prepared frame and flushes it.
pub fn write_frame(writer: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    writer.write_all(frame)?;
    writer.flush()
}

/// Reads one frame's payload of at most `max` bytes; an end of stream anywhere is an
/// `UnexpectedEof` error, since the server reads only when it expects an answer.
pub async fn read_frame_async(
    reader: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut prefix = [0; 4];
    reader.read_exact(&mut prefix).await?;
    let mut payload = vec![0; check_length(prefix, max)?];
    reader.read_exact(&mut payload).await?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &[u8]) -> Vec<u8> {
        read_frame(&mut &frame[..]).unwrap().unwrap()
    }

    #[test]
    fn requests_round_trip() {
        let request = Request {
            program: 3,
            max_outputs: 1000,
            input: br#"{"a":1}"#,
        };
        let frame = request.to_frame();
        assert_eq!(Request::decode(&payload(&frame)).unwrap(), request);
    }

    #[test]
    fn answers_round_trip() {
        for answer in [
            Answer::Ready,
            Answer::Outputs(b"1\n\"x\"".to_vec()),
            Answer::Outputs(Vec::new()),
            Answer::Failed("boom".into()),
            Answer::TooManyOutputs,
        ] {
            let frame = answer.to_frame();
            assert_eq!(Answer::decode(payload(&frame)).unwrap(), answer);
        }
    }

    #[test]
    fn garbage_is_rejected_not_misread() {
        // What a test harness prints when it is started by mistake.
        let text = b"\nrunning 0 tests\n";
        assert!(read_frame(&mut &text[..]).is_err());
        assert!(Answer::decode(b"Rsomething-else".to_vec()).is_err());
        assert!(Answer::decode(Vec::new()).is_err());
        assert!(Request::decode(b"short").is_err());
    }

    #[test]
    fn clean_eof_between_frames_is_none() {
        assert!(read_frame(&mut &b""[..]).unwrap().is_none());
    }
}
