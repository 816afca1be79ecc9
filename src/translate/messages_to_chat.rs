//! An Anthropic Messages client in front of an OpenAI-interface upstream: the request goes out
//! as chat completions, the answer (JSON or SSE) comes back as Messages.

use serde_json::{json, Map, Value};

use super::limits::{self, openai::*};
use super::names::ToolNames;
use super::sse::{self, Event};
use super::target::{effort_for, Target};

/// Translates a Messages request body into a chat-completions request for `target`; tool
/// names too long for OpenAI are shortened into `names`.
pub fn request(msg: &Value, target: &Target, names: &mut ToolNames) -> Result<Value, String> {
    let (obj, list) = super::with_messages(msg)?;
    let mut messages: Vec<Value> = Vec::new();
    match obj.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}));
        }
        Some(Value::Array(blocks)) => {
            let text = join_text(blocks);
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        _ => {}
    }
    for (i, m) in list.iter().enumerate() {
        let from = messages.len();
        match m.get("role").and_then(Value::as_str) {
            Some("user") => user(&mut messages, m.get("content"), target)?,
            Some("assistant") => messages.push(assistant(m.get("content"), names)),
            // Claude Code puts its environment in a `system` turn between the others (2.1.x):
            // a system message where it stands, as chat takes them.
            Some("system") => {
                let text = match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(blocks)) => join_text(blocks),
                    _ => String::new(),
                };
                if !text.is_empty() {
                    messages.push(json!({"role": "system", "content": text}));
                }
            }
            other => {
                return Err(format!(
                    "unsupported message role `{}`",
                    other.unwrap_or("none")
                ))
            }
        }
        if let Some(n) = overlong(&messages[from..]) {
            return Err(format!(
                "`messages[{i}]`: {n} characters of text in one piece, over the {CONTENT_MAX} an OpenAI-interface provider takes"
            ));
        }
    }
    if let Some(n) = overlong(&messages) {
        return Err(format!(
            "`system`: {n} characters, over the {CONTENT_MAX} an OpenAI-interface provider takes in one message"
        ));
    }

    let reasoning = target.reasoning();
    let mut out = Map::new();
    out.insert("model".into(), target.model.into());
    out.insert("messages".into(), messages.into());
    if let Some(v) = obj.get("max_tokens").filter(|v| !v.is_null()) {
        let key = if target.max_completion_tokens() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(key.into(), v.clone());
    }
    // Reasoning models refuse sampling settings other than their own (temperature 1).
    for key in ["temperature", "top_p"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            if !reasoning || (key == "temperature" && v.as_f64() == Some(1.0)) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    if let Some(stops) = obj.get("stop_sequences").and_then(Value::as_array) {
        if !stops.is_empty() && !reasoning {
            if stops.len() > STOP_MAX {
                return Err(format!(
                    "`stop_sequences`: {} sequences, but `{}` (an OpenAI-interface provider) takes at most {STOP_MAX}",
                    stops.len(),
                    target.model
                ));
            }
            out.insert("stop".into(), stops.clone().into());
        }
    }
    // Claude's thinking budget becomes a reasoning model's effort (target::EFFORT_BUDGETS).
    if let Some(budget) = obj
        .get("thinking")
        .filter(|t| t["type"] == "enabled")
        .map(|t| t["budget_tokens"].as_u64().unwrap_or(0))
    {
        if reasoning {
            out.insert("reasoning_effort".into(), effort_for(budget).into());
        }
    }
    if obj.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), true.into());
        // The Messages client expects usage at the end of a stream.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                let name = names.fit(t["name"].as_str().unwrap_or_default(), TOOL_NAME_MAX);
                let mut f = json!({"name": name, "parameters": t["input_schema"]});
                if let Some(d) = t.get("description") {
                    f["description"] = d.clone();
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        if tools.len() > TOOLS_MAX {
            return Err(format!(
                "`tools`: {} tools, but `{}` (an OpenAI-interface provider) takes at most {TOOLS_MAX}",
                tools.len(),
                target.model
            ));
        }
        if !tools.is_empty() {
            out.insert("tools".into(), tools.into());
        }
    }
    if let Some(choice) = obj.get("tool_choice") {
        let mapped = match choice["type"].as_str() {
            Some("auto") => Some(json!("auto")),
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => {
                let name = names.fit(choice["name"].as_str().unwrap_or_default(), TOOL_NAME_MAX);
                Some(json!({"type": "function", "function": {"name": name}}))
            }
            _ => None,
        };
        if let Some(mapped) = mapped {
            out.insert("tool_choice".into(), mapped);
        }
        if choice["disable_parallel_tool_use"] == true {
            out.insert("parallel_tool_calls".into(), false.into());
        }
    }
    // OpenAI now names the end user `safety_identifier`; the compatible APIs know `user`.
    if let Some(user) = obj
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        let key = if target.prefix == "openai" {
            "safety_identifier"
        } else {
            "user"
        };
        out.insert(key.into(), limits::user_id(user, USER_MAX).into());
    }
    Ok(Value::Object(out))
}

/// A tool-use id as OpenAI takes it (`tool_calls[].id`, `tool_call_id`): the call and its
/// result map alike, so they still pair.
fn call_id(id: &Value) -> Value {
    match id.as_str() {
        Some(id) => limits::fit(id, TOOL_CALL_ID_MAX, limits::any_char).into(),
        None => id.clone(),
    }
}

/// The first text OpenAI would refuse as too long (`CONTENT_MAX` per string), as its length
/// in characters.
fn overlong(messages: &[Value]) -> Option<usize> {
    let content = messages.iter().map(|m| &m["content"]);
    let parts = content.clone().filter_map(Value::as_array).flatten();
    content
        .chain(parts.map(|p| &p["text"]))
        .filter_map(Value::as_str)
        .filter(|s| s.len() > CONTENT_MAX)
        .map(|s| s.chars().count())
        .find(|n| *n > CONTENT_MAX)
}

fn join_text(blocks: &[Value]) -> String {
    blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The marker that keeps a tool result's `is_error` in OpenAI's text-only tool message.
pub const TOOL_ERROR: &str = "[tool error] ";

/// A user turn: tool results become `tool` messages (first, as OpenAI expects them right after
/// the assistant's calls), the rest one user message. Images a tool returned cannot go in a
/// `tool` message (text only): they follow in a user message that says whose output they are.
fn user(messages: &mut Vec<Value>, content: Option<&Value>, target: &Target) -> Result<(), String> {
    let blocks = match content {
        Some(Value::String(s)) => {
            messages.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => return Err("a message needs `content`".into()),
    };
    let mut parts = Vec::new();
    let mut tool_images = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
            Some("image") => parts.push(image_part(b)?),
            Some("document") => parts.push(document_part(b, target)?),
            Some("tool_result") => {
                let id = &call_id(&b["tool_use_id"]);
                let mut content = match &b["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(inner) => {
                        let images: Vec<&Value> =
                            inner.iter().filter(|i| i["type"] == "image").collect();
                        if !images.is_empty() {
                            tool_images.push(json!({"type": "text", "text": format!(
                                "[images returned by tool call {}]", id.as_str().unwrap_or_default()
                            )}));
                            for image in images {
                                tool_images.push(image_part(image)?);
                            }
                        }
                        join_text(inner)
                    }
                    _ => String::new(),
                };
                if b["is_error"] == true {
                    content.insert_str(0, TOOL_ERROR);
                }
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            Some(other) => {
                return Err(format!(
                    "unsupported content block `{other}` for this provider"
                ))
            }
            None => return Err("a content block has no type".into()),
        }
    }
    // Tool output images first: they belong to the tool messages just written.
    tool_images.extend(parts);
    let parts = tool_images;
    if !parts.is_empty() {
        let only_text = parts.iter().all(|p| p["type"] == "text");
        let content = if only_text {
            Value::String(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        } else {
            parts.into()
        };
        messages.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

/// An image block as an `image_url` part (a data URL for base64 sources).
fn image_part(b: &Value) -> Result<Value, String> {
    let src = &b["source"];
    let url = match src["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            src["media_type"].as_str().unwrap_or("image/png"),
            src["data"].as_str().unwrap_or("")
        ),
        Some("url") => src["url"].as_str().unwrap_or("").to_owned(),
        _ => return Err("unsupported image source".into()),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A document block: text (plain or as content blocks) becomes text; a base64 PDF becomes a
/// `file` part where the provider takes them. Anything else has no counterpart: an error that
/// says which.
fn document_part(b: &Value, target: &Target) -> Result<Value, String> {
    let src = &b["source"];
    let title = b["title"].as_str();
    let text = match src["type"].as_str() {
        Some("text") => src["data"].as_str().map(str::to_owned),
        Some("content") => match &src["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(inner) => Some(join_text(inner)),
            _ => None,
        },
        _ => None,
    };
    if let Some(text) = text {
        let text = match title {
            Some(t) => format!("{t}\n\n{text}"),
            None => text,
        };
        return Ok(json!({"type": "text", "text": text}));
    }
    let pdf = src["type"] == "base64" && src["media_type"] == "application/pdf";
    if pdf && target.file_parts() {
        return Ok(json!({"type": "file", "file": {
            "filename": title.unwrap_or("document.pdf"),
            "file_data": format!("data:application/pdf;base64,{}", src["data"].as_str().unwrap_or("")),
        }}));
    }
    Err(format!(
        "a `document` block with a {} {} source cannot be sent to `{}` (an OpenAI-interface provider{}); send it as text{}",
        src["media_type"].as_str().unwrap_or("non-text"),
        src["type"].as_str().unwrap_or("unknown"),
        target.model,
        if target.file_parts() { "" } else { " without file inputs" },
        if target.file_parts() { " or as a base64 PDF" } else { "" },
    ))
}

fn assistant(content: Option<&Value>, names: &mut ToolNames) -> Value {
    let blocks = match content {
        Some(Value::String(s)) => return json!({"role": "assistant", "content": s}),
        Some(Value::Array(blocks)) => blocks.as_slice(),
        _ => &[],
    };
    let text = join_text(
        &blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .cloned()
            .collect::<Vec<_>>(),
    );
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| {
            let name = names.fit(b["name"].as_str().unwrap_or_default(), TOOL_NAME_MAX);
            json!({"id": call_id(&b["id"]), "type": "function", "function": {"name": name, "arguments": b["input"].to_string()}})
        })
        .collect();
    let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        m["tool_calls"] = calls.into();
    }
    m
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: Option<&str>) -> Value {
    match finish {
        Some("stop") => "end_turn".into(),
        Some("length") => "max_tokens".into(),
        Some("tool_calls" | "function_call") => "tool_use".into(),
        Some("content_filter") => "refusal".into(),
        Some(_) => "end_turn".into(),
        None => Value::Null,
    }
}

/// OpenAI usage → Anthropic usage (Anthropic's input count excludes cached tokens).
pub fn usage(u: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let cached = n(&u["prompt_tokens_details"]["cached_tokens"]);
    json!({
        "input_tokens": n(&u["prompt_tokens"]).saturating_sub(cached),
        "output_tokens": n(&u["completion_tokens"]),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// Translates a chat completion into a Messages response; shortened tool names get their
/// client's names back. A refusal is the answer's text, with stop reason `refusal`.
pub fn response(chat: &Value, model: &str, names: &ToolNames) -> Value {
    let choice = &chat["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(thinking) = msg["reasoning_content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    if let Some(text) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    let refusal = msg["refusal"].as_str().filter(|t| !t.is_empty());
    if let Some(text) = refusal {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        let name = names.original(call["function"]["name"].as_str().unwrap_or_default());
        content.push(json!({"type": "tool_use", "id": call["id"], "name": name, "input": input}));
    }
    let stop = match refusal {
        Some(_) => "refusal".into(),
        None => stop_reason(choice["finish_reason"].as_str()),
    };
    json!({
        "id": chat["id"],
        "type": "message",
        "role": "assistant",
        "model": chat.get("model").cloned().unwrap_or_else(|| model.into()),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage(&chat["usage"]),
    })
}

/// Which block is open in the Messages stream being written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, by its OpenAI tool-call index.
    Tool(u64),
}

/// OpenAI chat-completion chunks → Anthropic Messages events, one chunk at a time.
#[derive(Debug, Default)]
pub struct StreamState {
    model: String,
    /// Tool names shortened in the request, restored here.
    pub names: ToolNames,
    /// The model refused (OpenAI's `refusal` deltas): the stop reason says so.
    refused: bool,
    started: bool,
    open: Option<Block>,
    next_index: u64,
    stop_reason: Option<Value>,
    usage: Option<Value>,
    done: bool,
}

impl StreamState {
    pub fn new(model: &str) -> StreamState {
        StreamState {
            model: model.to_owned(),
            ..StreamState::default()
        }
    }

    fn start(&mut self, out: &mut String, chunk: &Value) {
        if self.started {
            return;
        }
        self.started = true;
        let model = chunk
            .get("model")
            .cloned()
            .unwrap_or_else(|| self.model.clone().into());
        out.push_str(&sse::named(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": chunk["id"], "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ));
    }

    fn close(&mut self, out: &mut String) {
        if self.open.take().is_some() {
            out.push_str(&sse::named(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next_index - 1}),
            ));
        }
    }

    /// Opens `block` (closing another) and returns its index.
    fn open(&mut self, out: &mut String, block: Block, start: Value) -> u64 {
        if self.open == Some(block) {
            return self.next_index - 1;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some(block);
        out.push_str(&sse::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        index
    }

    /// The Messages events for one chat-completions SSE event.
    pub fn event(&mut self, event: &Event) -> String {
        let mut out = String::new();
        if event.data.trim() == "[DONE]" {
            out.push_str(&self.end());
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else {
            return out;
        };
        if let Some(e) = chunk.get("error") {
            self.done = true;
            out.push_str(&sse::named(
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": e.get("message").cloned().unwrap_or_else(|| e.clone())}}),
            ));
            return out;
        }
        self.start(&mut out, &chunk);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage(u));
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return out;
        };
        let delta = &choice["delta"];
        if let Some(thinking) = delta["reasoning_content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            // The SDKs type a thinking block's signature as a string: always present.
            let i = self.open(
                &mut out,
                Block::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            );
            out.push_str(&sse::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": thinking}}),
            ));
        }
        if let Some(text) = delta["refusal"].as_str().filter(|t| !t.is_empty()) {
            self.refused = true;
            let i = self.open(&mut out, Block::Text, json!({"type": "text", "text": ""}));
            out.push_str(&sse::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let i = self.open(&mut out, Block::Text, json!({"type": "text", "text": ""}));
            out.push_str(&sse::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let tool = call["index"].as_u64().unwrap_or(0);
            let f = &call["function"];
            let i = if self.open == Some(Block::Tool(tool)) {
                self.next_index - 1
            } else {
                let name = self
                    .names
                    .original(f["name"].as_str().unwrap_or_default())
                    .to_owned();
                self.open(
                    &mut out,
                    Block::Tool(tool),
                    json!({"type": "tool_use", "id": call["id"], "name": name, "input": {}}),
                )
            };
            if let Some(args) = f["arguments"].as_str().filter(|a| !a.is_empty()) {
                out.push_str(&sse::named(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.close(&mut out);
            self.stop_reason = Some(if self.refused {
                "refusal".into()
            } else {
                stop_reason(Some(finish))
            });
        }
        out
    }

    /// `message_delta` and `message_stop`, once, at the end of a complete stream.
    pub fn end(&mut self) -> String {
        if self.done {
            return String::new();
        }
        self.done = true;
        let mut out = String::new();
        if !self.started {
            self.start(&mut out, &json!({}));
        }
        self.close(&mut out);
        let usage = self
            .usage
            .clone()
            .unwrap_or_else(|| json!({"output_tokens": 0}));
        out.push_str(&sse::named(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop_reason.clone().unwrap_or_else(|| "end_turn".into()), "stop_sequence": null},
                "usage": usage}),
        ));
        out.push_str(&sse::named(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
        out
    }
}
