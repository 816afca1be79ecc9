//! Translation between the client's API and the upstream's: OpenAI chat completions ↔ Anthropic
//! Messages ↔ Amazon Bedrock Converse, requests, JSON responses, streams and errors.
//!
//! | client ↓ / upstream → | OpenAI interface          | Anthropic interface       | Bedrock (Converse) |
//! |-----------------------|---------------------------|---------------------------|--------------------|
//! | `/v1/chat/completions`| pass through              | `chat_to_messages`        | `chat_to_converse` |
//! | `/v1/messages`        | `messages_to_chat`        | pass through              | `messages_to_chat`, then `chat_to_converse` |
//! | `/v1/responses`       | native (`openai`, `xai`, `vercel`, Azure) or `responses_to_chat` | `responses_to_chat`, then `chat_to_messages` | `responses_to_chat`, then `chat_to_converse` |
//! | `/v1/completions`, `/v1/embeddings` | pass through | not expressible: 400     | not expressible: 400 |
//!
//! The ChatGPT Codex backend (`chatgpt`) speaks Responses: Responses clients pass under its
//! rules, chat and Messages clients go through `chatgpt::from_chat` and back (`chatgpt`).
//!
//! Every translation goes through chat completions: the client's API to chat, chat to the
//! upstream's, and back the same way ([`Direction::client`], [`Direction::wire`]).
//!
//! Pass-through traffic keeps every byte but `model`. Translated traffic keeps every field the
//! other side can express; the rest (e.g. OpenAI's `n`, `logprobs`; Anthropic's `top_k`) is
//! dropped.

pub mod chat_to_converse;
pub mod chat_to_messages;
pub mod chatgpt;
pub mod count_tokens;
pub mod eventstream;
pub mod limits;
pub mod messages_to_chat;
pub mod names;
pub mod responses_to_chat;
pub mod sse;
pub mod target;

pub use names::ToolNames;
pub use target::Target;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use serde_json::{json, Value};

use crate::catalog::Interface;
use crate::usage::Piece;

/// The client-facing APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completions,
    Embeddings,
    Messages,
    /// Anthropic's `/v1/messages/count_tokens` (Claude Code asks it before long turns).
    CountTokens,
    /// OpenAI's Responses API (Codex CLI, the Agents SDK).
    Responses,
    /// An upstream's own model list (`GET /models`), which the gateway asks wildcard
    /// providers for (models); never a client's path of its own.
    Models,
    /// Amazon Bedrock's Converse (`/model/<id>/converse`, `…/converse-stream`); never a
    /// client's path.
    Converse,
}

impl Api {
    /// The API of a client path, if the gateway forwards it.
    pub fn from_path(path: &str) -> Option<Api> {
        match path {
            "/v1/chat/completions" => Some(Api::Chat),
            "/v1/completions" => Some(Api::Completions),
            "/v1/embeddings" => Some(Api::Embeddings),
            "/v1/messages" => Some(Api::Messages),
            "/v1/messages/count_tokens" => Some(Api::CountTokens),
            "/v1/responses" => Some(Api::Responses),
            _ => None,
        }
    }

    /// The path after the provider's prefix (`/v1` replaced).
    pub fn suffix(self) -> &'static str {
        match self {
            Api::Chat => "/chat/completions",
            Api::Completions => "/completions",
            Api::Embeddings => "/embeddings",
            Api::Messages => "/messages",
            Api::CountTokens => "/messages/count_tokens",
            Api::Responses => "/responses",
            Api::Models => "/models",
            Api::Converse => "/converse",
        }
    }

    /// Whether errors for this client take Anthropic's shape.
    pub fn anthropic(self) -> bool {
        matches!(self, Api::Messages | Api::CountTokens)
    }
}

/// What happens between a client API and an upstream interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Same API: the body passes with only `model` rewritten.
    PassThrough,
    /// OpenAI chat client, Anthropic Messages upstream.
    ChatToMessages,
    /// Anthropic Messages client, OpenAI chat upstream.
    MessagesToChat,
    /// Responses client, chat-completions upstream without a Responses API of its own.
    ResponsesToChat,
    /// Responses client, Anthropic Messages upstream: through chat, both ways.
    ResponsesToMessages,
    /// OpenAI chat client, Amazon Bedrock (Converse) upstream.
    ChatToConverse,
    /// Anthropic Messages client, Bedrock upstream: through chat, both ways.
    MessagesToConverse,
    /// Responses client, Bedrock upstream: through chat, both ways.
    ResponsesToConverse,
    /// Responses client, the ChatGPT Codex backend: the same API under the backend's rules
    /// (`chatgpt`).
    ResponsesToChatGpt,
    /// OpenAI chat client, the Codex backend: chat to Responses and back.
    ChatToChatGpt,
    /// Anthropic Messages client, the Codex backend: through chat, both ways.
    MessagesToChatGpt,
}

/// The APIs a translation passes between: the client's side, or the upstream's wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Chat,
    Messages,
    Responses,
    Converse,
}

impl Direction {
    /// What happens between `client` and an upstream of `upstream` interface that has (or
    /// not) a Responses API of its own (`native_responses`).
    pub fn between(
        client: Api,
        upstream: Interface,
        native_responses: bool,
    ) -> Result<Direction, String> {
        match (client, upstream) {
            (Api::Responses, Interface::ChatGpt) => Ok(Direction::ResponsesToChatGpt),
            (Api::Chat, Interface::ChatGpt) => Ok(Direction::ChatToChatGpt),
            (Api::Messages, Interface::ChatGpt) => Ok(Direction::MessagesToChatGpt),
            (_, Interface::ChatGpt) => Err(format!(
                "{} is not available for chatgpt providers: the ChatGPT Codex backend serves chat, Messages and Responses clients",
                client.suffix()
            )),
            (Api::Chat, Interface::Bedrock) => Ok(Direction::ChatToConverse),
            (Api::Messages, Interface::Bedrock) => Ok(Direction::MessagesToConverse),
            (Api::Responses, Interface::Bedrock) => Ok(Direction::ResponsesToConverse),
            (_, Interface::Bedrock) => Err(format!(
                "{} is not available for Amazon Bedrock providers",
                client.suffix()
            )),
            (Api::Responses, Interface::Anthropic) => Ok(Direction::ResponsesToMessages),
            (Api::Responses, _) if !native_responses => Ok(Direction::ResponsesToChat),
            (Api::Messages, Interface::AzureOpenAi) => Ok(Direction::MessagesToChat),
            (Api::Chat, Interface::Anthropic) => Ok(Direction::ChatToMessages),
            (Api::Messages, Interface::OpenAi) => Ok(Direction::MessagesToChat),
            (Api::Completions | Api::Embeddings, Interface::Anthropic) => Err(format!(
                "{} is not available for Anthropic-interface providers",
                client.suffix()
            )),
            // Other providers have no such endpoint: the gateway estimates (count_tokens).
            (Api::CountTokens, Interface::OpenAi | Interface::AzureOpenAi) => Err(format!(
                "{} is answered by the gateway for OpenAI-interface providers",
                client.suffix()
            )),
            _ => Ok(Direction::PassThrough),
        }
    }

    /// The API the upstream is spoken to in.
    pub fn upstream_api(self, client: Api) -> Api {
        match self.wire() {
            _ if self == Direction::PassThrough => client,
            Side::Messages => Api::Messages,
            Side::Converse => Api::Converse,
            Side::Responses => Api::Responses,
            Side::Chat => Api::Chat,
        }
    }

    /// The client's side of a translation.
    pub fn client(self) -> Side {
        match self {
            Direction::PassThrough
            | Direction::ChatToMessages
            | Direction::ChatToConverse
            | Direction::ChatToChatGpt => Side::Chat,
            Direction::MessagesToChat
            | Direction::MessagesToConverse
            | Direction::MessagesToChatGpt => Side::Messages,
            Direction::ResponsesToChat
            | Direction::ResponsesToMessages
            | Direction::ResponsesToConverse
            | Direction::ResponsesToChatGpt => Side::Responses,
        }
    }

    /// The upstream's side of a translation (its wire API).
    pub fn wire(self) -> Side {
        match self {
            Direction::PassThrough | Direction::MessagesToChat | Direction::ResponsesToChat => {
                Side::Chat
            }
            Direction::ChatToMessages | Direction::ResponsesToMessages => Side::Messages,
            Direction::ChatToConverse
            | Direction::MessagesToConverse
            | Direction::ResponsesToConverse => Side::Converse,
            Direction::ResponsesToChatGpt
            | Direction::ChatToChatGpt
            | Direction::MessagesToChatGpt => Side::Responses,
        }
    }

    /// Whether the upstream is the ChatGPT Codex backend, which only streams.
    pub fn chatgpt(self) -> bool {
        matches!(
            self,
            Direction::ResponsesToChatGpt | Direction::ChatToChatGpt | Direction::MessagesToChatGpt
        )
    }

    /// Whether the client speaks the Responses API through this translation.
    pub fn responses(self) -> bool {
        self.client() == Side::Responses
    }

    /// Translates a request body for `target`.
    pub fn request(self, body: &[u8], target: &Target) -> Result<Translated, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        let mut include_usage = value["stream_options"]["include_usage"] == true;
        let mut names = ToolNames::default();
        let mut echo = responses_to_chat::Echo::default();
        if self == Direction::PassThrough {
            return Err("nothing to translate".into());
        }
        let client_stream = value["stream"] == true;
        if self == Direction::ResponsesToChatGpt {
            return Ok(Translated {
                body: Bytes::from(chatgpt::request(&value, target)?.to_string()),
                include_usage,
                names,
                echo,
                client_stream,
            });
        }
        // The client's API to chat, then chat to the upstream's.
        let chat = match self.client() {
            Side::Messages => messages_to_chat::request(&value, target, &mut names)?,
            Side::Responses => {
                let (mut chat, mut kept) = responses_to_chat::request(&value, target)?;
                // Claude searches the web itself: a `web_search` tool has its counterpart there.
                if self.wire() == Side::Messages {
                    let before = kept.dropped_tools.len();
                    kept.dropped_tools
                        .retain(|t| !matches!(t.as_str(), "web_search" | "web_search_preview"));
                    if kept.dropped_tools.len() < before {
                        chat["web_search_options"] = json!({});
                    }
                }
                echo = kept;
                // The terminal event carries usage: the chat stream in between reports it.
                include_usage = true;
                chat
            }
            _ => value,
        };
        let out = match self.wire() {
            Side::Messages => chat_to_messages::request(&chat, target, &mut names)?,
            Side::Converse => chat_to_converse::request(&chat, target, &mut names)?,
            Side::Responses => chatgpt::request(&chatgpt::from_chat(&chat)?, target)?,
            Side::Chat => chat,
        };
        Ok(Translated {
            body: Bytes::from(out.to_string()),
            include_usage,
            names,
            echo,
            client_stream,
        })
    }
}

/// A translated request, and what its answer's translation needs to know.
#[derive(Debug)]
pub struct Translated {
    pub body: Bytes,
    /// The client asked for stream usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Tool names shortened for the upstream, to restore in the answer.
    pub names: ToolNames,
    /// A Responses request's fields its answer echoes, and how its tools map back.
    pub echo: responses_to_chat::Echo,
    /// Whether the client asked for a stream.
    pub client_stream: bool,
}

/// Anthropic's error `type` for an HTTP status.
/// A chat-completions or Messages request body as an object, and its `messages`; or what the
/// client is told is wrong with it.
fn with_messages(body: &Value) -> Result<(&serde_json::Map<String, Value>, &Vec<Value>), String> {
    let obj = body
        .as_object()
        .ok_or("the request body must be a JSON object")?;
    let list = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be a list")?;
    Ok((obj, list))
}

pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ if status >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error body in Anthropic's shape: the one writer of it.
pub fn anthropic_error(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}})
}

/// OpenAI's error `type` for an HTTP status.
pub fn openai_error_type(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// An error body in OpenAI's shape: the one writer of it.
pub fn openai_error(status: u16, message: &str, param: Option<&str>, code: Option<&str>) -> Value {
    openai_error_of_type(openai_error_type(status), message, param, code)
}

/// Like [`openai_error`], keeping a `type` an upstream gave.
fn openai_error_of_type(
    kind: &str,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// An upstream error body, re-shaped for the client.
fn error_body(direction: Direction, status: u16, body: &[u8], parsed: Option<&Value>) -> Value {
    let raw = || String::from_utf8_lossy(body).trim().to_owned();
    // OpenAI's and Anthropic's `error.message`, Bedrock's top-level `message`.
    let said = |v: &Value| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .or_else(|| v["Message"].as_str())
            // The ChatGPT Codex backend's `{"detail": "…"}`.
            .or_else(|| v["detail"].as_str())
            .map(str::to_owned)
    };
    match direction.client() {
        Side::Messages => {
            let message = parsed.and_then(said).unwrap_or_else(raw);
            anthropic_error(status, &message)
        }
        _ => {
            let e = parsed.map(|v| &v["error"]);
            let message = parsed.and_then(said).unwrap_or_else(raw);
            let kind = e
                .and_then(|e| e["type"].as_str())
                .unwrap_or(openai_error_type(status));
            openai_error_of_type(kind, &message, None, None)
        }
    }
}

/// The response header that names the hosted tools (`web_search`, …) a translated Responses
/// request left out: the upstream has no counterpart, and the model was only offered them.
pub const DROPPED_TOOLS: http::HeaderName =
    http::HeaderName::from_static("x-switchyard-dropped-tools");

/// Rewrites the upstream's response into the client's API: the header in place, then the body
/// as the response watch read it (`usage::Piece`): SSE events one by one, a JSON answer (or any
/// error) whole.
pub struct ResponseTranslator {
    direction: Direction,
    model: String,
    status: u16,
    /// Wire to chat: Anthropic events, Converse events.
    chat_stream: chat_to_messages::StreamState,
    converse_stream: chat_to_converse::StreamState,
    /// Chat to the client: Anthropic events, Responses events.
    messages_stream: messages_to_chat::StreamState,
    responses_stream: responses_to_chat::StreamState,
    /// Between two translations: the chat stream the first writes, read back as events.
    chat_events: sse::Framer,
    /// The ChatGPT Codex backend's stream (`ResponsesToChatGpt`).
    chatgpt: chatgpt::StreamState,
    /// Whether the client asked for a stream (the Codex backend always streams).
    client_stream: bool,
    /// The Codex backend's events as chat chunks (chat and Messages clients).
    chatgpt_chat: chatgpt::ChatStream,
}

impl ResponseTranslator {
    /// For the answer to request `request`, translated for `model`.
    pub fn new(direction: Direction, model: &str, request: &Translated) -> ResponseTranslator {
        let mut chat_stream = chat_to_messages::StreamState::default();
        chat_stream.include_usage = request.include_usage;
        // A Responses client can give Anthropic's thinking back (`encrypted_content`).
        chat_stream.keep_signatures = direction.responses();
        chat_stream.names = request.names.clone();
        let mut messages_stream = messages_to_chat::StreamState::new(model);
        messages_stream.names = request.names.clone();
        let mut converse_stream = chat_to_converse::StreamState::new(model);
        // A client of another API reads the usage from the chat stream in between.
        converse_stream.include_usage = request.include_usage || direction.client() != Side::Chat;
        converse_stream.names = request.names.clone();
        converse_stream.keep_signatures = direction.responses();
        ResponseTranslator {
            direction,
            model: model.to_owned(),
            status: 0,
            chat_stream,
            converse_stream,
            messages_stream,
            responses_stream: responses_to_chat::StreamState::new(request.echo.clone()),
            chat_events: sse::Framer::default(),
            chatgpt: chatgpt::StreamState::default(),
            client_stream: request.client_stream,
            chatgpt_chat: chatgpt::ChatStream::new(
                model,
                request.include_usage || direction.client() != Side::Chat,
            ),
        }
    }

    /// Whether a stream is gathered into one JSON answer (a client that asked for none, of an
    /// upstream that only streams): whoever writes it frames it.
    pub fn gathers(&self) -> bool {
        self.direction.chatgpt() && !self.client_stream
    }

    /// The response header. A translated body has another length, so the upstream's
    /// `content-length` goes; a body sent whole (not `stream`) is JSON and has no length yet:
    /// whoever writes it frames it.
    pub fn header(&mut self, header: &mut ResponseHeader, stream: bool) {
        self.status = header.status.as_u16();
        header.remove_header(&http::header::CONTENT_LENGTH);
        if !stream || self.gathers() {
            header.remove_header(&http::header::TRANSFER_ENCODING);
            let _ = header.insert_header(http::header::CONTENT_TYPE, "application/json");
        } else if self.direction.wire() == Side::Converse {
            // Bedrock's binary event stream becomes server-sent events.
            let _ = header.insert_header(http::header::CONTENT_TYPE, "text/event-stream");
        }
        let dropped = &self.responses_stream.echo.dropped_tools;
        if !dropped.is_empty() {
            let _ = header.insert_header(DROPPED_TOOLS, dropped.join(","));
        }
    }

    /// What the client gets for a piece of the body (`original`: the bytes as they came;
    /// `end`: the last piece).
    pub fn body(&mut self, piece: &Piece, original: Option<Bytes>, end: bool) -> Option<Bytes> {
        match piece {
            Piece::Events(events) if self.direction.chatgpt() => {
                let mut text = String::new();
                for event in events {
                    let out = self.chatgpt.event(event);
                    if !self.client_stream {
                        continue;
                    }
                    if self.direction == Direction::ResponsesToChatGpt {
                        text.push_str(&out);
                    } else {
                        let chat = self.chatgpt_chat.event(event);
                        self.chat_text(&chat, &mut text);
                    }
                }
                // A chat or Messages client that asked for JSON: the final response, in its API.
                if end && self.status < 400 && !self.client_stream && !self.direction.responses() {
                    let chat = chatgpt::to_chat(&self.chatgpt.whole(), &self.model);
                    let names = &self.chat_stream.names;
                    let out = match self.direction.client() {
                        Side::Messages => messages_to_chat::response(&chat, &self.model, names),
                        _ => chat,
                    };
                    text = out.to_string();
                }
                // What the client got, once: kept with its conversation when it completed.
                if end && self.status < 400 && self.direction == Direction::ResponsesToChatGpt {
                    let last = self.chatgpt.whole();
                    if matches!(last["status"].as_str(), Some("completed" | "incomplete")) {
                        self.responses_stream.done = Some(last.clone());
                    }
                    if !self.client_stream {
                        text = last.to_string();
                    }
                }
                (!text.is_empty()).then(|| Bytes::from(text))
            }
            Piece::Events(events) => {
                let mut text = String::new();
                for event in events {
                    match self.direction.wire() {
                        Side::Messages => {
                            let chat = self.chat_stream.event(event);
                            self.chat_text(&chat, &mut text);
                        }
                        Side::Converse => {
                            let chat = self.converse_stream.event(event);
                            self.chat_text(&chat, &mut text);
                        }
                        _ => self.chat_event(event, &mut text),
                    }
                }
                if end && self.status < 400 {
                    if self.direction.wire() == Side::Converse {
                        let chat = self.converse_stream.end();
                        self.chat_text(&chat, &mut text);
                    }
                    if self.direction.responses() {
                        text.push_str(&self.responses_stream.end());
                    }
                }
                (!text.is_empty()).then(|| Bytes::from(text))
            }
            Piece::Held => None,
            Piece::Whole(raw, doc) => Some(self.whole(raw, doc.as_ref())),
            Piece::Raw => original,
        }
    }

    /// Chat chunks the wire's stream became, for the client: as they are to a chat client,
    /// else read back as events and translated again.
    fn chat_text(&mut self, chat: &str, text: &mut String) {
        if self.direction.client() == Side::Chat {
            text.push_str(chat);
            return;
        }
        for event in self.chat_events.push(chat.as_bytes()) {
            self.chat_event(&event, text);
        }
    }

    /// One chat event, in the client's API.
    fn chat_event(&mut self, event: &sse::Event, text: &mut String) {
        match self.direction.client() {
            Side::Messages => text.push_str(&self.messages_stream.event(event)),
            Side::Responses => text.push_str(&self.responses_stream.event(event)),
            _ => {}
        }
    }

    /// A whole answer, translated; a body that is not JSON after all passes unchanged, unless it
    /// is an error, which always takes the client's shape.
    fn whole(&mut self, raw: &[u8], doc: Option<&Value>) -> Bytes {
        let translated = if self.status >= 400 {
            Some(error_body(self.direction, self.status, raw, doc))
        } else {
            doc.map(|v| {
                // A Responses object from the Codex backend, had it not streamed.
                if self.direction == Direction::ResponsesToChatGpt {
                    return v.clone();
                }
                let names = &self.chat_stream.names;
                let chat = match self.direction.wire() {
                    Side::Messages => {
                        let mut chat = chat_to_messages::response(v, names);
                        // A Responses client can give Anthropic's thinking back.
                        if let (true, Some(blocks)) = (
                            self.direction.responses(),
                            chat_to_messages::thinking_blocks(v),
                        ) {
                            chat["choices"][0]["message"]["thinking_blocks"] = blocks;
                        }
                        chat
                    }
                    Side::Converse => {
                        let mut chat = chat_to_converse::response(v, &self.model, names);
                        if let (true, Some(blocks)) = (
                            self.direction.responses(),
                            chat_to_converse::thinking_blocks(v),
                        ) {
                            chat["choices"][0]["message"]["thinking_blocks"] = blocks;
                        }
                        chat
                    }
                    Side::Responses => chatgpt::to_chat(v, &self.model),
                    Side::Chat => v.clone(),
                };
                match self.direction.client() {
                    Side::Messages => messages_to_chat::response(&chat, &self.model, names),
                    Side::Responses => {
                        responses_to_chat::response(&chat, &self.responses_stream.echo)
                    }
                    _ => chat,
                }
            })
        };
        match translated {
            Some(v) => {
                let bytes = Bytes::from(v.to_string());
                if self.status < 400 && self.direction.responses() {
                    self.responses_stream.done = Some(v);
                }
                bytes
            }
            None => Bytes::copy_from_slice(raw),
        }
    }

    /// The Responses object the client got, once the answer is whole (completed or
    /// incomplete), taken once: what the gateway keeps of a conversation (conversations).
    pub fn take_done(&mut self) -> Option<Value> {
        self.responses_stream.done.take()
    }
}

/// Test helpers: a target on the usual provider of each direction's upstream.
#[cfg(test)]
pub fn test_target(direction: Direction, model: &str) -> Target<'_> {
    Target {
        prefix: match direction {
            Direction::ChatToMessages => "anthropic",
            _ => "openai",
        },
        model,
        default_max_tokens: None,
    }
}

#[cfg(test)]
impl Translated {
    pub fn for_test(include_usage: bool) -> Translated {
        Translated {
            body: Bytes::new(),
            include_usage,
            names: ToolNames::default(),
            echo: responses_to_chat::Echo::default(),
            client_stream: true,
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
