//! Amazon's event-stream framing (`application/vnd.amazon.eventstream`), what Bedrock's
//! ConverseStream answers in: binary messages, each
//!
//! ```text
//! total length u32 | headers length u32 | prelude CRC32 (of the 8 bytes before it)
//! headers | payload | message CRC32 (of everything before it)
//! ```
//!
//! big-endian, CRC-32/IEEE. A header is a name (u8 length), a type byte and a value. The prelude's
//! CRC is checked before its length is trusted, and a message may be at most [`MAX_MESSAGE`]
//! bytes, so a corrupt or hostile length fails at once instead of holding the stream.

use bytes::{Buf, Bytes, BytesMut};

/// The content type of an event stream.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// Largest message accepted (Bedrock's are a few KiB; a whole tool input is one delta).
pub const MAX_MESSAGE: usize = 16 << 20;
const PRELUDE: usize = 12;
const MIN_MESSAGE: usize = PRELUDE + 4;

/// One decoded message: an event or an exception, named, with its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `:message-type`: `event` or `exception` (or `error`).
    pub kind: String,
    /// `:event-type` of an event, `:exception-type` of an exception (`:error-code` of an error).
    pub name: String,
    pub payload: Bytes,
}

impl Message {
    pub fn is_event(&self) -> bool {
        self.kind == "event"
    }
}

/// Why a stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("an event-stream message's prelude checksum does not match")]
    PreludeChecksum,
    #[error("an event-stream message's checksum does not match")]
    MessageChecksum,
    #[error("an event-stream message of {0} bytes is longer than allowed")]
    TooLong(usize),
    #[error("an event-stream message is malformed: {0}")]
    Malformed(&'static str),
}

/// Reads messages out of a byte stream that arrives in pieces of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: BytesMut,
    failed: bool,
}

impl Decoder {
    /// The whole messages `bytes` completes, in order. After an error the stream is not read
    /// on: every later call fails the same way.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, DecodeError> {
        if self.failed {
            return Err(DecodeError::Malformed("the stream already failed"));
        }
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            match self.next() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return Ok(out),
                Err(e) => {
                    self.failed = true;
                    self.buffer.clear();
                    return Err(e);
                }
            }
        }
    }

    /// Bytes of a message begun but not complete (at the stream's end: it was cut short).
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    fn next(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.buffer.len() < PRELUDE {
            return Ok(None);
        }
        let total = be32(&self.buffer[0..4]) as usize;
        let headers_len = be32(&self.buffer[4..8]) as usize;
        if crc(&self.buffer[..8]) != be32(&self.buffer[8..12]) {
            return Err(DecodeError::PreludeChecksum);
        }
        if total > MAX_MESSAGE {
            return Err(DecodeError::TooLong(total));
        }
        if total < MIN_MESSAGE || headers_len > total - MIN_MESSAGE {
            return Err(DecodeError::Malformed("lengths do not fit"));
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let message = self.buffer.split_to(total).freeze();
        if crc(&message[..total - 4]) != be32(&message[total - 4..]) {
            return Err(DecodeError::MessageChecksum);
        }
        let headers = message.slice(PRELUDE..PRELUDE + headers_len);
        let payload = message.slice(PRELUDE + headers_len..total - 4);
        let (mut kind, mut name) = (String::new(), String::new());
        let (mut event, mut exception, mut error) = (None, None, None);
        for (key, value) in parse_headers(headers)? {
            match key.as_str() {
                ":message-type" => kind = value,
                ":event-type" => event = Some(value),
                ":exception-type" => exception = Some(value),
                ":error-code" => error = Some(value),
                _ => {}
            }
        }
        if let Some(n) = match kind.as_str() {
            "event" => event,
            "exception" => exception,
            _ => error.or(exception),
        } {
            name = n;
        }
        Ok(Some(Message {
            kind,
            name,
            payload,
        }))
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// The string headers of a message (other types are read past).
fn parse_headers(mut b: Bytes) -> Result<Vec<(String, String)>, DecodeError> {
    let short = DecodeError::Malformed("a header runs past its block");
    let mut out = Vec::new();
    while b.has_remaining() {
        let name_len = b.get_u8() as usize;
        if b.remaining() < name_len + 1 {
            return Err(short);
        }
        let name = String::from_utf8_lossy(&b.split_to(name_len)).into_owned();
        let kind = b.get_u8();
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            _ => return Err(DecodeError::Malformed("unknown header type")),
        };
        match fixed {
            Some(n) => {
                if b.remaining() < n {
                    return Err(short);
                }
                b.advance(n);
            }
            None => {
                if b.remaining() < 2 {
                    return Err(short);
                }
                let len = b.get_u16() as usize;
                if b.remaining() < len {
                    return Err(short);
                }
                let value = b.split_to(len);
                if kind == 7 {
                    out.push((name, String::from_utf8_lossy(&value).into_owned()));
                }
            }
        }
    }
    Ok(out)
}

/// One message with string `headers` and `payload`, framed (what Bedrock sends; for tests and
/// mock providers).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (PRELUDE + h.len() + payload.len() + 4) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let message_crc = crc(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

/// An event message as Bedrock sends it.
pub fn event(name: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            (":event-type", name),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = include_bytes!("../../tests/fixtures/bedrock/converse-stream-text.bin");
    const TOOLS: &[u8] = include_bytes!("../../tests/fixtures/bedrock/converse-stream-tools.bin");

    fn decode_all(bytes: &[u8]) -> Vec<Message> {
        let mut d = Decoder::default();
        let out = d.push(bytes).unwrap();
        assert_eq!(d.pending(), 0);
        out
    }

    #[test]
    fn the_recorded_streams_decode_whole() {
        let text = decode_all(TEXT);
        assert_eq!(text.len(), 88);
        assert_eq!(text[0].name, "messageStart");
        assert!(text.iter().all(Message::is_event));
        let tools = decode_all(TOOLS);
        assert_eq!(tools.len(), 543);
        let names: Vec<&str> = tools.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"contentBlockStart"));
        assert_eq!(names[names.len() - 2..], ["messageStop", "metadata"]);
    }

    #[test]
    fn a_stream_split_anywhere_decodes_the_same() {
        let whole = decode_all(TEXT);
        // Every split of the first three messages (inside a prelude, a header, a CRC) and a
        // sample of splits across the rest.
        let first_three = {
            let mut d = Decoder::default();
            let mut n = 0;
            TEXT.iter()
                .position(|b| {
                    n += d.push(&[*b]).unwrap().len();
                    n == 3
                })
                .unwrap()
                + 1
        };
        for split in (1..first_three).chain((first_three..TEXT.len()).step_by(97)) {
            let mut d = Decoder::default();
            let mut got = d.push(&TEXT[..split]).unwrap();
            got.extend(d.push(&TEXT[split..]).unwrap());
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn corruption_and_hostile_lengths_fail_at_once() {
        let good = event("messageStart", br#"{"role":"assistant"}"#);
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert_eq!(
            Decoder::default().push(&bad_crc),
            Err(DecodeError::MessageChecksum)
        );
        let mut bad_prelude = good.clone();
        bad_prelude[2] ^= 0x40;
        assert_eq!(
            Decoder::default().push(&bad_prelude[..12]),
            Err(DecodeError::PreludeChecksum),
            "known from the prelude alone"
        );
        // A valid prelude that claims 1 GiB: refused before any of it is awaited.
        let mut huge = Vec::new();
        huge.extend_from_slice(&(1u32 << 30).to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        let c = crc(&huge);
        huge.extend_from_slice(&c.to_be_bytes());
        assert_eq!(
            Decoder::default().push(&huge),
            Err(DecodeError::TooLong(1 << 30))
        );
        // A truncated message is pending, not decoded.
        let mut d = Decoder::default();
        assert_eq!(d.push(&good[..good.len() - 3]), Ok(vec![]));
        assert_eq!(d.pending(), good.len() - 3);
    }

    #[test]
    fn exceptions_are_named_by_their_exception_type() {
        let frame = encode(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"slow down"}"#,
        );
        let m = &Decoder::default().push(&frame).unwrap()[0];
        assert!(!m.is_event());
        assert_eq!(m.name, "throttlingException");
        assert_eq!(&m.payload[..], br#"{"message":"slow down"}"#);
    }
}
