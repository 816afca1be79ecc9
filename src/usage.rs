//! Watching a response as it passes: time to first token and the upstream's token usage.
//!
//! Usage is read from what the provider reports, never estimated: OpenAI's `usage` object (in a
//! JSON body, or in the final chunk of a stream sent with `stream_options.include_usage`) and
//! Anthropic's (`usage` in a Messages body; `message_start` and `message_delta` events in a
//! stream). SSE is scanned line by line across arbitrary chunk boundaries.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Tokens the upstream reported for one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// The usage fields of both APIs; absent ones stay `None`.
#[derive(Debug, Default, Deserialize)]
struct RawUsage {
    // OpenAI
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    // Anthropic
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct WithUsage {
    usage: Option<RawUsage>,
    /// Anthropic's `message_start` carries the usage inside `message`.
    message: Option<Box<WithUsage>>,
}

impl Usage {
    /// Applies reported fields over what is known (Anthropic streams report in two events,
    /// and `message_delta`'s `output_tokens` is cumulative).
    fn merge(&mut self, raw: &RawUsage) {
        if let Some(n) = raw.prompt_tokens.or(raw.input_tokens) {
            self.prompt = n;
        }
        if let Some(n) = raw.completion_tokens.or(raw.output_tokens) {
            self.completion = n;
        }
        if let Some(n) = raw
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(raw.cache_read_input_tokens)
        {
            self.cache_read = n;
        }
        if let Some(n) = raw.cache_creation_input_tokens {
            self.cache_write = n;
        }
    }

    /// Reads usage from one JSON document (a response body or an SSE event's data); returns
    /// whether it had any.
    fn merge_json(&mut self, json: &[u8]) -> bool {
        let Ok(doc) = serde_json::from_slice::<WithUsage>(json) else {
            return false;
        };
        let mut found = false;
        for raw in [
            doc.usage.as_ref(),
            doc.message.as_ref().and_then(|m| m.usage.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            self.merge(raw);
            found = true;
        }
        found
    }
}

/// Largest non-streamed body kept to read its usage; larger ones are passed on uncounted.
const MAX_JSON_BODY: usize = 8 << 20;
/// Longest SSE line kept while waiting for its end.
const MAX_SSE_LINE: usize = 1 << 20;

/// Follows one response: when its first byte and first token went out, how many bytes, and the
/// usage the upstream reported.
#[derive(Debug, Default)]
pub struct ResponseWatch {
    pub status: Option<u16>,
    pub first_byte: Option<Instant>,
    /// First SSE `data:` event when streaming, else the first body byte.
    pub first_token: Option<Instant>,
    pub bytes_out: u64,
    pub usage: Option<Usage>,
    /// The upstream's `retry-after`, if its answer had one.
    pub retry_after: Option<std::time::Duration>,
    mode: Mode,
    /// An SSE event has lines but not yet its closing blank line.
    open_event: bool,
}

#[derive(Debug, Default)]
enum Mode {
    #[default]
    Other,
    Json(Vec<u8>),
    Sse(Vec<u8>),
}

impl ResponseWatch {
    /// Whether the response is an SSE stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.mode, Mode::Sse(_))
    }

    /// Whether the stream stopped inside an event (a line or an event not yet ended).
    pub fn mid_event(&self) -> bool {
        match &self.mode {
            Mode::Sse(line) => !line.is_empty() || self.open_event,
            _ => false,
        }
    }

    /// The response header: decides how the body is read.
    pub fn header(&mut self, status: u16, content_type: Option<&str>) {
        self.status = Some(status);
        let content_type = content_type.unwrap_or("").to_ascii_lowercase();
        self.mode = if content_type.starts_with("text/event-stream") {
            Mode::Sse(Vec::new())
        } else if content_type.contains("json") {
            Mode::Json(Vec::new())
        } else {
            Mode::Other
        };
    }

    /// A piece of the response body, as it goes to the client.
    pub fn body(&mut self, chunk: &[u8], now: Instant) {
        if chunk.is_empty() {
            return;
        }
        self.bytes_out += chunk.len() as u64;
        self.first_byte.get_or_insert(now);
        self.mode = match std::mem::take(&mut self.mode) {
            Mode::Other => {
                self.first_token.get_or_insert(now);
                Mode::Other
            }
            Mode::Json(mut buf) => {
                self.first_token.get_or_insert(now);
                if buf.len() + chunk.len() > MAX_JSON_BODY {
                    Mode::Other
                } else {
                    buf.extend_from_slice(chunk);
                    Mode::Json(buf)
                }
            }
            Mode::Sse(mut line) => {
                let mut rest = chunk;
                while let Some(end) = rest.iter().position(|b| *b == b'\n') {
                    line.extend_from_slice(&rest[..end]);
                    rest = &rest[end + 1..];
                    self.sse_line(&line, now);
                    line.clear();
                }
                if line.len() + rest.len() > MAX_SSE_LINE {
                    line.clear();
                } else {
                    line.extend_from_slice(rest);
                }
                Mode::Sse(line)
            }
        };
    }

    fn sse_line(&mut self, line: &[u8], now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.open_event = !line.is_empty();
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        self.first_token.get_or_insert(now);
        // Only events that mention usage are parsed.
        if contains(data, b"\"usage\"") {
            let usage = self.usage.get_or_insert_with(Usage::default);
            if !usage.merge_json(data) && *usage == Usage::default() {
                self.usage = None;
            }
        }
    }

    /// The response is complete: a buffered JSON body is read for its usage.
    pub fn end(&mut self) {
        if let Mode::Json(buf) = std::mem::take(&mut self.mode) {
            let mut usage = Usage::default();
            if usage.merge_json(&buf) {
                self.usage = Some(usage);
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch_json(body: &str) -> Option<Usage> {
        let mut w = ResponseWatch::default();
        w.header(200, Some("application/json"));
        w.body(body.as_bytes(), Instant::now());
        w.end();
        w.usage
    }

    #[test]
    fn openai_json_usage() {
        let u = watch_json(
            r#"{"id":"x","usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}}}"#,
        );
        assert_eq!(
            u,
            Some(Usage {
                prompt: 12,
                completion: 3,
                cache_read: 8,
                cache_write: 0
            })
        );
    }

    #[test]
    fn anthropic_json_usage() {
        let u = watch_json(
            r#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2,"cache_creation_input_tokens":1}}"#,
        );
        assert_eq!(
            u,
            Some(Usage {
                prompt: 10,
                completion: 5,
                cache_read: 2,
                cache_write: 1
            })
        );
    }

    #[test]
    fn no_usage_is_none() {
        assert_eq!(watch_json(r#"{"error":{"message":"x"}}"#), None);
        assert_eq!(watch_json("not json"), None);
    }

    /// Feeds `stream` split at every possible pair of boundaries' worth of chunk sizes.
    fn watch_sse(stream: &str, chunk: usize) -> ResponseWatch {
        let mut w = ResponseWatch::default();
        w.header(200, Some("text/event-stream; charset=utf-8"));
        for piece in stream.as_bytes().chunks(chunk) {
            w.body(piece, Instant::now());
        }
        w.end();
        w
    }

    #[test]
    fn openai_stream_usage_across_any_chunking() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n\
                      data: [DONE]\n\n";
        for chunk in 1..stream.len() {
            let w = watch_sse(stream, chunk);
            assert_eq!(
                w.usage,
                Some(Usage {
                    prompt: 7,
                    completion: 2,
                    cache_read: 4,
                    cache_write: 0
                }),
                "chunk size {chunk}"
            );
            assert!(w.first_token.is_some());
            assert_eq!(w.bytes_out, stream.len() as u64);
        }
    }

    #[test]
    fn anthropic_stream_usage() {
        let stream = "event: message_start\r\n\
            data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":1,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}\r\n\r\n\
            event: content_block_delta\r\n\
            data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\r\n\r\n\
            event: message_delta\r\n\
            data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\r\n\r\n\
            event: message_stop\r\n\
            data: {\"type\":\"message_stop\"}\r\n\r\n";
        for chunk in [1, 7, 64, stream.len()] {
            let w = watch_sse(stream, chunk);
            assert_eq!(
                w.usage,
                Some(Usage {
                    prompt: 10,
                    completion: 5,
                    cache_read: 2,
                    cache_write: 1
                }),
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn first_token_waits_for_a_data_event() {
        let mut w = ResponseWatch::default();
        w.header(200, Some("text/event-stream"));
        let t0 = Instant::now();
        w.body(b": keep-alive comment\n\nevent: ping\n", t0);
        assert!(w.first_byte.is_some());
        assert!(w.first_token.is_none());
        let t1 = Instant::now();
        w.body(b"da", t1);
        assert!(w.first_token.is_none(), "not a complete line yet");
        w.body(b"ta: {}\n\n", t1);
        assert_eq!(w.first_token, Some(t1));
    }
}
