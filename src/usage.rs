//! Watching a response as it passes: time to first token and the upstream's token usage.
//!
//! Usage is read from what the provider reports, never estimated: OpenAI's `usage` object (in a
//! JSON body, or in the final chunk of a stream sent with `stream_options.include_usage`),
//! Anthropic's (`usage` in a Messages body; `message_start` and `message_delta` events in a
//! stream) and Bedrock's (`usage` in a Converse body; the `metadata` event of a stream). SSE is
//! scanned line by line across arbitrary chunk boundaries; Bedrock's binary event stream is
//! decoded into events of the same kind (named by their type).

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::translate::eventstream::{self, Decoder};
use crate::translate::sse::{Event, Framer};

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
    // Bedrock
    #[serde(rename = "inputTokens")]
    bedrock_input: Option<u64>,
    #[serde(rename = "outputTokens")]
    bedrock_output: Option<u64>,
    #[serde(rename = "cacheReadInputTokens")]
    bedrock_cache_read: Option<u64>,
    #[serde(rename = "cacheWriteInputTokens")]
    bedrock_cache_write: Option<u64>,
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
        if let Some(n) = raw.prompt_tokens.or(raw.input_tokens).or(raw.bedrock_input) {
            self.prompt = n;
        }
        if let Some(n) = raw
            .completion_tokens
            .or(raw.output_tokens)
            .or(raw.bedrock_output)
        {
            self.completion = n;
        }
        if let Some(n) = raw
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(raw.cache_read_input_tokens)
            .or(raw.bedrock_cache_read)
        {
            self.cache_read = n;
        }
        if let Some(n) = raw.cache_creation_input_tokens.or(raw.bedrock_cache_write) {
            self.cache_write = n;
        }
    }

    /// Reads usage from one JSON document (a response body or an SSE event's data); returns
    /// whether it had any.
    fn merge_json(&mut self, json: &[u8]) -> bool {
        serde_json::from_slice::<WithUsage>(json).is_ok_and(|doc| self.merge_doc(&doc))
    }

    fn merge_doc(&mut self, doc: &WithUsage) -> bool {
        let inner = doc.message.as_ref().and_then(|m| m.usage.as_ref());
        self.merge_each([doc.usage.as_ref(), inner])
    }

    /// Applies a document's usage and its message's (Anthropic's `message_start`); returns
    /// whether there was any.
    fn merge_each(&mut self, raws: [Option<&RawUsage>; 2]) -> bool {
        let mut found = false;
        for raw in raws.into_iter().flatten() {
            self.merge(raw);
            found = true;
        }
        found
    }
}

/// What a traced response says of itself: its id, the model that answered, why it ended
/// (one reason per choice). Read only when asked for (`ResponseWatch::facts`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Facts {
    pub id: Option<String>,
    pub model: Option<String>,
    pub finish_reasons: Vec<String>,
}

/// The fields of every API that `Facts` are read from.
#[derive(Debug, Default, Deserialize)]
struct FactsDoc {
    id: Option<String>,
    model: Option<String>,
    object: Option<String>,
    status: Option<String>,
    choices: Option<Vec<ChoiceDoc>>,
    // Anthropic: the body, `message_delta`'s `delta`; Bedrock: the body, `messageStop`.
    stop_reason: Option<String>,
    #[serde(rename = "stopReason")]
    bedrock_stop: Option<String>,
    delta: Option<Box<FactsDoc>>,
    /// Anthropic's `message_start`.
    message: Option<Box<FactsDoc>>,
    /// The Responses API's stream events.
    response: Option<Box<FactsDoc>>,
    usage: Option<RawUsage>,
}

#[derive(Debug, Default, Deserialize)]
struct ChoiceDoc {
    finish_reason: Option<String>,
}

impl Facts {
    /// Reads what one JSON document (a body or an event's data) says.
    fn read(&mut self, json: &[u8]) {
        if let Ok(doc) = serde_json::from_slice::<FactsDoc>(json) {
            self.merge(doc);
        }
    }

    /// Reads what a JSON body says, its usage included (into `usage`: whether it had any).
    fn read_with_usage(&mut self, json: &[u8], usage: &mut Usage) -> bool {
        let Ok(doc) = serde_json::from_slice::<FactsDoc>(json) else {
            return false;
        };
        let inner = doc.message.as_ref().and_then(|m| m.usage.as_ref());
        let found = usage.merge_each([doc.usage.as_ref(), inner]);
        self.merge(doc);
        found
    }

    fn merge(&mut self, doc: FactsDoc) {
        if self.id.is_none() {
            self.id = doc.id;
        }
        if self.model.is_none() {
            self.model = doc.model;
        }
        let reasons: Vec<String> = doc
            .choices
            .into_iter()
            .flatten()
            .filter_map(|c| c.finish_reason)
            .chain(doc.stop_reason)
            .chain(doc.bedrock_stop)
            .chain(
                doc.status
                    .filter(|_| doc.object.as_deref() == Some("response")),
            )
            .collect();
        if !reasons.is_empty() {
            self.finish_reasons = reasons;
        }
        for inner in [doc.delta, doc.message, doc.response].into_iter().flatten() {
            self.merge(*inner);
        }
    }

    /// Whether a stream event may say something not yet known: the first event (the id and
    /// model), and the one that says why the answer ended (most events are content alone,
    /// and OpenAI's carry `"finish_reason":null` until the last).
    fn wanted(&self, data: &str) -> bool {
        self.model.is_none()
            || [
                "_reason\":\"",
                "_reason\": \"",
                "Reason\":\"",
                "\"response.completed\"",
                "\"response.incomplete\"",
                "\"response.failed\"",
            ]
            .iter()
            .any(|needle| data.contains(needle))
    }
}

/// Largest non-streamed body kept whole; a larger one is passed on unread (and uncounted).
const MAX_JSON_BODY: usize = 8 << 20;

/// What a piece of the response body amounts to, for whoever rewrites it (translation).
#[derive(Debug)]
pub enum Piece {
    /// SSE: the events this piece completed (maybe none).
    Events(Vec<Event>),
    /// A body held whole: not complete yet.
    Held,
    /// A body held whole, complete: its bytes and, when asked for, its parsed JSON.
    Whole(Vec<u8>, Option<Value>),
    /// Anything else: the piece as it came.
    Raw,
}

/// Follows one response and reads it once: when its first byte and first token went out, how
/// many bytes, the usage the upstream reported, and its body as SSE events or one document,
/// handed on to translation.
#[derive(Debug, Default)]
pub struct ResponseWatch {
    pub status: Option<u16>,
    pub first_byte: Option<Instant>,
    /// First SSE event with data when streaming, else the first body byte.
    pub first_token: Option<Instant>,
    pub bytes_out: u64,
    pub usage: Option<Usage>,
    /// The upstream's `retry-after`, if its answer had one.
    pub retry_after: Option<std::time::Duration>,
    /// The stream's final event went by (`data: [DONE]`, Anthropic's `message_stop`): what
    /// the client needed has been sent, whenever the body itself ends.
    pub ended: bool,
    /// What the response says of itself, read when set (a traced request).
    pub facts: Option<Box<Facts>>,
    mode: Mode,
}

#[derive(Debug, Default)]
enum Mode {
    #[default]
    Other,
    /// Held whole; `parse`: the whole document is wanted as JSON (for translation).
    Whole {
        buf: Vec<u8>,
        parse: bool,
    },
    Sse(Framer),
    /// Bedrock's binary event stream (`application/vnd.amazon.eventstream`), decoded into
    /// events; after a decoding error nothing more is read.
    Frames(Decoder, bool),
}

impl ResponseWatch {
    /// Whether the response is an SSE stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.mode, Mode::Sse(_) | Mode::Frames(..))
    }

    /// The part of an SSE event held back, waiting for its end (empty when none).
    pub fn partial_event(&self) -> &[u8] {
        match &self.mode {
            Mode::Sse(f) => f.pending(),
            _ => &[],
        }
    }

    /// The response header: decides how the body is read. `whole`: a translator wants the body
    /// whole and parsed, whatever its type (an error body is re-shaped even when it is text).
    pub fn header(&mut self, status: u16, content_type: Option<&str>, whole: bool) {
        self.status = Some(status);
        let content_type = content_type.unwrap_or("").to_ascii_lowercase();
        self.mode = if content_type.starts_with("text/event-stream") && !(whole && status >= 400) {
            Mode::Sse(Framer::default())
        } else if content_type.starts_with(eventstream::CONTENT_TYPE) && status < 400 {
            Mode::Frames(Decoder::default(), false)
        } else if whole || content_type.contains("json") {
            Mode::Whole {
                buf: Vec::new(),
                parse: whole,
            }
        } else {
            Mode::Other
        };
    }

    /// A piece of the response body (`end`: the last); returns what it amounts to.
    pub fn body(&mut self, chunk: &[u8], end: bool, now: Instant) -> Piece {
        if !chunk.is_empty() {
            self.bytes_out += chunk.len() as u64;
            self.first_byte.get_or_insert(now);
        }
        match &mut self.mode {
            Mode::Other => {
                if !chunk.is_empty() {
                    self.first_token.get_or_insert(now);
                }
                Piece::Raw
            }
            Mode::Whole { buf, parse } => {
                if !chunk.is_empty() {
                    self.first_token.get_or_insert(now);
                }
                if buf.len() + chunk.len() > MAX_JSON_BODY && !*parse {
                    self.mode = Mode::Other;
                    return Piece::Raw;
                }
                buf.extend_from_slice(chunk);
                if !end {
                    return Piece::Held;
                }
                let (buf, parse) = (std::mem::take(buf), *parse);
                self.mode = Mode::Other;
                let mut usage = Usage::default();
                let doc = if parse {
                    let doc: Option<Value> = serde_json::from_slice(&buf).ok();
                    let found = doc.as_ref().is_some_and(|v| {
                        WithUsage::deserialize(v).is_ok_and(|w| usage.merge_doc(&w))
                    });
                    if found {
                        self.usage = Some(usage);
                    }
                    if let (Some(facts), Some(v)) = (self.facts.as_mut(), doc.as_ref()) {
                        if let Ok(d) = FactsDoc::deserialize(v) {
                            facts.merge(d);
                        }
                    }
                    doc
                } else {
                    // Traced, one parse reads both the usage and the facts.
                    let found = match self.facts.as_mut() {
                        Some(facts) => facts.read_with_usage(&buf, &mut usage),
                        None => usage.merge_json(&buf),
                    };
                    if found {
                        self.usage = Some(usage);
                    }
                    None
                };
                Piece::Whole(buf, doc)
            }
            Mode::Frames(decoder, failed) => {
                let events = frames(decoder, failed, chunk, end);
                if !events.is_empty() {
                    self.first_token.get_or_insert(now);
                }
                for event in &events {
                    match event.name.as_deref() {
                        Some("metadata") => {
                            self.ended = true;
                            let mut usage = Usage::default();
                            if usage.merge_json(event.data.as_bytes()) {
                                self.usage = Some(usage);
                            }
                        }
                        Some(name) if name.ends_with("Exception") => self.ended = true,
                        Some("messageStop") => {
                            if let Some(facts) = self.facts.as_mut() {
                                facts.read(event.data.as_bytes());
                            }
                        }
                        _ => {}
                    }
                }
                Piece::Events(events)
            }
            Mode::Sse(framer) => {
                let mut events = framer.push(chunk);
                if end {
                    events.extend(framer.finish());
                }
                if !events.is_empty() {
                    self.first_token.get_or_insert(now);
                }
                for event in &events {
                    if is_final(event) {
                        self.ended = true;
                    }
                    if let Some(facts) = self.facts.as_mut().filter(|f| f.wanted(&event.data)) {
                        facts.read(event.data.as_bytes());
                    }
                    // Only events that mention usage are parsed.
                    if event.data.contains("\"usage\"") {
                        let usage = self.usage.get_or_insert_with(Usage::default);
                        if !usage.merge_json(event.data.as_bytes()) && *usage == Usage::default() {
                            self.usage = None;
                        }
                    }
                }
                Piece::Events(events)
            }
        }
    }
}

/// The events of a piece of Bedrock's event stream: each message as an event named by its
/// `:event-type` (an exception by its `:exception-type`). A stream that cannot be decoded, or
/// ends inside a message, ends with an `internalServerException` of the gateway's own.
fn frames(decoder: &mut Decoder, failed: &mut bool, chunk: &[u8], end: bool) -> Vec<Event> {
    if *failed {
        return Vec::new();
    }
    let mut events: Vec<Event> = match decoder.push(chunk) {
        Ok(messages) => messages
            .into_iter()
            .map(|m| Event {
                name: Some(m.name),
                data: String::from_utf8_lossy(&m.payload).into_owned(),
            })
            .collect(),
        Err(e) => {
            *failed = true;
            return vec![broken(&format!(
                "the upstream's event stream is corrupt: {e}"
            ))];
        }
    };
    if end && decoder.pending() > 0 {
        *failed = true;
        events.push(broken("the upstream's event stream ended inside a message"));
    }
    events
}

fn broken(message: &str) -> Event {
    Event {
        name: Some("internalServerException".into()),
        data: serde_json::json!({ "message": message }).to_string(),
    }
}

/// The last event of a complete stream: OpenAI's `[DONE]`, Anthropic's `message_stop`.
fn is_final(event: &crate::translate::sse::Event) -> bool {
    event.data.trim() == "[DONE]" || event.name.as_deref() == Some("message_stop")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bedrock's event stream: events named by type, usage from `metadata`; a corrupt or cut
    /// stream ends in the gateway's own exception event, and nothing after a corrupt message.
    #[test]
    fn a_bedrock_stream_is_read_as_events_and_fails_cleanly() {
        use crate::translate::eventstream::{event, CONTENT_TYPE};
        let start = || {
            let mut w = ResponseWatch::default();
            w.header(200, Some(CONTENT_TYPE), true);
            assert!(w.is_stream());
            w
        };
        let names = |p: Piece| match p {
            Piece::Events(events) => events
                .into_iter()
                .map(|e| e.name.unwrap_or_default())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let metadata = event(
            "metadata",
            br#"{"usage":{"inputTokens":10,"outputTokens":5,"cacheReadInputTokens":2}}"#,
        );
        let mut w = start();
        let now = Instant::now();
        assert_eq!(
            names(w.body(&metadata[..7], false, now)),
            Vec::<String>::new()
        );
        assert_eq!(names(w.body(&metadata[7..], true, now)), ["metadata"]);
        assert_eq!(
            w.usage,
            Some(Usage {
                prompt: 10,
                completion: 5,
                cache_read: 2,
                cache_write: 0
            })
        );
        assert!(w.ended);

        let mut corrupt = event("contentBlockDelta", br#"{"delta":{"text":"hi"}}"#);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let mut w = start();
        assert_eq!(
            names(w.body(&corrupt, false, now)),
            ["internalServerException"]
        );
        assert_eq!(names(w.body(&metadata, true, now)), Vec::<String>::new());

        let mut w = start();
        assert_eq!(
            names(w.body(&metadata[..20], true, now)),
            ["internalServerException"]
        );
    }

    fn watch_json(body: &str) -> Option<Usage> {
        let mut w = ResponseWatch::default();
        w.header(200, Some("application/json"), false);
        w.body(body.as_bytes(), true, Instant::now());
        let typed = w.usage;
        // Read for translation (parsed whole): the same usage.
        let mut w = ResponseWatch::default();
        w.header(200, Some("application/json"), true);
        assert!(matches!(
            w.body(body.as_bytes(), true, Instant::now()),
            Piece::Whole(..)
        ));
        assert_eq!(w.usage, typed);
        typed
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
        w.header(200, Some("text/event-stream; charset=utf-8"), false);
        let pieces: Vec<&[u8]> = stream.as_bytes().chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            w.body(piece, i + 1 == pieces.len(), Instant::now());
        }
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
        w.header(200, Some("text/event-stream"), false);
        let t0 = Instant::now();
        w.body(b": keep-alive comment\n\nevent: ping\n", false, t0);
        assert!(w.first_byte.is_some());
        assert!(w.first_token.is_none());
        assert_eq!(w.partial_event(), b"event: ping\n");
        let t1 = Instant::now();
        w.body(b"da", false, t1);
        assert!(w.first_token.is_none(), "not a complete event yet");
        w.body(b"ta: {}\n\n", false, t1);
        assert_eq!(w.first_token, Some(t1));
        assert!(w.partial_event().is_empty());
    }

    #[test]
    fn a_traced_response_tells_its_id_model_and_finish_reasons() {
        let facts = |content_type: &str, body: &str| {
            let mut w = ResponseWatch {
                facts: Some(Box::default()),
                ..ResponseWatch::default()
            };
            w.header(200, Some(content_type), false);
            w.body(body.as_bytes(), true, Instant::now());
            *w.facts.unwrap()
        };
        let sse = "text/event-stream";
        let openai = "data: {\"id\":\"c1\",\"model\":\"gpt-4o-2024\",\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n\
                      data: {\"id\":\"c1\",\"model\":\"gpt-4o-2024\",\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":1}}}\n\n\
                         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":2}}\n\n";
        let responses = "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"gpt-5\",\"status\":\"completed\"}}\n\n";
        let want = |id: &str, model: &str, reason: &str| Facts {
            id: Some(id.into()),
            model: Some(model.into()),
            finish_reasons: vec![reason.into()],
        };
        assert_eq!(facts(sse, openai), want("c1", "gpt-4o-2024", "length"));
        assert_eq!(facts(sse, anthropic), want("msg_1", "claude-x", "tool_use"));
        assert_eq!(facts(sse, responses), want("resp_1", "gpt-5", "completed"));
        let json = r#"{"id":"c2","model":"m","choices":[{"finish_reason":"stop"},{"finish_reason":"length"}]}"#;
        let got = facts("application/json", json);
        assert_eq!(got.finish_reasons, ["stop", "length"]);
        // Untraced, nothing is read.
        let mut w = ResponseWatch::default();
        w.header(200, Some("application/json"), false);
        w.body(json.as_bytes(), true, Instant::now());
        assert!(w.facts.is_none());
    }
}
