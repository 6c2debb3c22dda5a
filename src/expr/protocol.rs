//! The wire format between the server and a sandbox process, over the child's stdin/stdout.
//!
//! Every message is one frame: a `u32` big-endian length, then that many payload bytes.
//!
//! - Server → child, once at start: [`Init`] as JSON (the programs, the memory limit and
//!   the time a JavaScript program may run).
//! - Child → server, once: [`Answer::Ready`], which carries a magic string so that a wrong
//!   executable (say, a test harness) is recognised instead of misread.
//! - Then server → child a [`Batch`]: `u32` output cap, then for each evaluation `u32`
//!   program index, `u32` input length and the input as JSON text. The child evaluates
//!   them in order and sends one [`Answer`] frame per evaluation as soon as it has it (so
//!   the server can tell which evaluation ran past its deadline): a tag byte, then
//!   - `O`: the outputs, each as compact JSON text, separated by `\n` (compact JSON never
//!     contains a raw newline, and keeping each output its own text keeps nesting depth per
//!     output, not per answer);
//!   - `E`: the expression failed, UTF-8 message;
//!   - `T`: the expression produced more outputs than the cap;
//!   - `L`: a JavaScript program was interrupted at its time limit (jq programs are not
//!     interruptible: the server kills their process at the deadline instead);
//!   - `X`: the evaluation failed, UTF-8 message, and the process retires: the server
//!     replaces it before the next evaluation (JavaScript's heap ran full).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Language, Role};

/// The largest frame either side accepts. Outputs are bounded by the child's memory limit
/// well before this; the cap only stops a garbled length from allocating gigabytes.
pub const MAX_FRAME: usize = 1 << 30;

/// Sent by the child after it compiled the programs; a different string is a different
/// protocol (or not a sandbox at all).
pub const MAGIC: &[u8] = b"forebay-expr-sandbox/2";

/// The first frame a child reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Init {
    pub programs: Vec<InitProgram>,
    pub max_memory_bytes: u64,
    /// How long one JavaScript evaluation may run before it is interrupted.
    pub js_time_limit_ms: u64,
}

/// One program as the child compiles it.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitProgram {
    pub language: Language,
    pub role: Role,
    /// The name errors cite (a config key or a file), for JavaScript.
    pub name: String,
    pub text: String,
}

/// Several evaluations in one frame, answered one frame each.
#[derive(Debug, PartialEq)]
pub struct Batch<'a> {
    pub max_outputs: u32,
    /// Program index and input (JSON text) of each evaluation, in order.
    pub items: Vec<(u32, &'a [u8])>,
}

impl<'a> Batch<'a> {
    /// The whole frame, length prefix included, ready for one `write_all`.
    pub fn to_frame(&self) -> Vec<u8> {
        let size: usize = self.items.iter().map(|(_, input)| 8 + input.len()).sum();
        let mut frame = Vec::with_capacity(8 + size);
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&self.max_outputs.to_be_bytes());
        for (program, input) in &self.items {
            frame.extend_from_slice(&program.to_be_bytes());
            // Inputs are capped well below 4 GiB by MAX_FRAME before they get here.
            let len = u32::try_from(input.len()).unwrap_or(u32::MAX);
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(input);
        }
        set_length(&mut frame);
        frame
    }

    pub fn decode(payload: &'a [u8]) -> Result<Self, ProtocolError> {
        let (max_outputs, mut rest) =
            take_u32(payload).ok_or(ProtocolError("batch shorter than its header"))?;
        let mut items = Vec::new();
        while !rest.is_empty() {
            let (program, after) =
                take_u32(rest).ok_or(ProtocolError("evaluation shorter than its header"))?;
            let (len, after) =
                take_u32(after).ok_or(ProtocolError("evaluation shorter than its header"))?;
            let input = after
                .get(..len as usize)
                .ok_or(ProtocolError("input longer than the batch"))?;
            items.push((program, input));
            rest = &after[len as usize..];
        }
        Ok(Batch { max_outputs, items })
    }
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

/// The child's reply to [`Init`] or to one evaluation of a [`Batch`].
#[derive(Debug, PartialEq)]
pub enum Answer {
    Ready,
    /// Compact JSON texts separated by `\n`; empty for no outputs.
    Outputs(Vec<u8>),
    Failed(String),
    TooManyOutputs,
    /// A JavaScript program ran past its time limit and was interrupted.
    TimeLimit,
    /// Failed, and this process is not to be used again.
    Retire(String),
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
            Answer::TimeLimit => frame.push(b'L'),
            Answer::Retire(message) => {
                frame.push(b'X');
                frame.extend_from_slice(message.as_bytes());
            }
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
            b'L' if rest.is_empty() => Ok(Answer::TimeLimit),
            b'X' => Ok(Answer::Retire(String::from_utf8_lossy(rest).into_owned())),
            _ => Err(ProtocolError("unknown answer tag")),
        }
    }
}

#[cfg(test)]
impl Answer {
    /// The outputs as JSON values, or the failure as text (`"too many"`, `"time limit"`,
    /// `"retire: …"`): what the in-process tests of jq and JavaScript compare.
    pub fn into_test_result(self) -> Result<Vec<serde_json::Value>, String> {
        match self {
            Answer::Outputs(lines) if lines.is_empty() => Ok(Vec::new()),
            Answer::Outputs(lines) => Ok(lines
                .split(|b| *b == b'\n')
                .map(|line| serde_json::from_slice(line).expect("an output is JSON"))
                .collect()),
            Answer::Failed(message) => Err(message),
            Answer::TooManyOutputs => Err("too many".into()),
            Answer::TimeLimit => Err("time limit".into()),
            Answer::Retire(message) => Err(format!("retire: {message}")),
            Answer::Ready => Err("ready".into()),
        }
    }
}

/// A frame that does not follow this protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sandbox protocol error: {0}")]
pub struct ProtocolError(&'static str);

/// Frames a payload that is not a [`Batch`] or [`Answer`] (the [`Init`] JSON).
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
    fn batches_round_trip() {
        for batch in [
            Batch {
                max_outputs: 1000,
                items: vec![(3, br#"{"a":1}"#.as_slice()), (0, b"null"), (7, b"")],
            },
            Batch {
                max_outputs: 1,
                items: Vec::new(),
            },
        ] {
            let frame = batch.to_frame();
            assert_eq!(Batch::decode(&payload(&frame)).unwrap(), batch);
        }
    }

    #[test]
    fn answers_round_trip() {
        for answer in [
            Answer::Ready,
            Answer::Outputs(b"1\n\"x\"".to_vec()),
            Answer::Outputs(Vec::new()),
            Answer::Failed("boom".into()),
            Answer::TooManyOutputs,
            Answer::TimeLimit,
            Answer::Retire("heap full".into()),
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
        assert!(Batch::decode(b"sh").is_err());
        // An input that claims more bytes than the batch holds.
        assert!(Batch::decode(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, b'1']).is_err());
        assert!(Batch::decode(&[0, 0, 0, 1, 0, 0, 0]).is_err());
    }

    #[test]
    fn clean_eof_between_frames_is_none() {
        assert!(read_frame(&mut &b""[..]).unwrap().is_none());
    }
}
