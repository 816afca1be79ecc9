//! OpenAI chat completions ↔ Amazon Bedrock's Converse API (`amazon_bedrock/<model-id>`):
//! requests, JSON answers, and ConverseStream events (decoded from their binary frames by
//! `eventstream`, handed over as events named by their type) into chat chunks. Messages and
//! Responses clients reach Bedrock through chat, both ways.
//!
//! What differs (Bedrock's API reference for Converse and ConverseStream):
//! - the model is in the path, not the body; the stream is another path, not a flag;
//! - content is a list of one-key blocks: `text`, `image {format, source {bytes}}`, `toolUse
//!   {toolUseId, name, input}` (an object), `toolResult {toolUseId, content, status}`,
//!   `reasoningContent`; system prompts are `system: [{text}]`;
//! - tools are `toolConfig {tools: [{toolSpec {name, description, inputSchema {json}}}],
//!   toolChoice {auto | any | tool {name}}}`; there is no `none`, and a history holding tool
//!   blocks needs a `toolConfig` even when no tool is offered any more;
//! - `inputTokens` leaves cache reads and writes out (OpenAI's `prompt_tokens` counts them);
//! - text blocks stream without a `contentBlockStart`; `metadata` (usage) follows
//!   `messageStop`; exceptions arrive as frames of their own, mid-stream.

use serde_json::{json, Map, Value};

// Converse, like Anthropic, wants user and assistant turns to alternate: the same joining.
use super::chat_to_messages::{now, push};
use super::sse::{self, Event};
use super::{Target, ToolNames};

/// Image formats Converse takes, by media type.
const IMAGE_FORMATS: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpeg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
];

/// Longest tool name Converse takes (`[a-zA-Z0-9_-]`, like OpenAI's).
const TOOL_NAME_MAX: usize = 64;

/// The tool offered when the history holds tool calls but the request offers no tools:
/// Converse refuses such a history without a `toolConfig`.
const PLACEHOLDER_TOOL: &str = "no_tools_offered";

/// A chat-completions request as a Converse request (for `target`, whose model goes in the
/// path).
pub fn request(chat: &Value, target: &Target, names: &mut ToolNames) -> Result<Value, String> {
    let (obj, list) = super::with_messages(chat)?;
    let thinking = claude_thinking(obj, list, target);
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut has_tool_blocks = false;
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let blocks = match role {
            "system" | "developer" => {
                system.extend(text_blocks(m.get("content")));
                continue;
            }
            "user" => user_blocks(m.get("content")),
            "assistant" => assistant_blocks(m, names, thinking.is_some()),
            "tool" => {
                has_tool_blocks = true;
                Ok(vec![tool_result(m)])
            }
            other => Err(format!("unsupported message role `{other}`")),
        }
        .map_err(|e| format!("`messages[{i}]`: {e}"))?;
        has_tool_blocks |= blocks.iter().any(|b| b.get("toolUse").is_some());
        let role = if role == "assistant" {
            "assistant"
        } else {
            "user"
        };
        push(&mut messages, role, blocks);
    }

    let mut out = Map::new();
    out.insert("messages".into(), messages.into());
    if !system.is_empty() {
        out.insert("system".into(), system.into());
    }
    let mut inference = Map::new();
    if let Some(n) = obj
        .get("max_completion_tokens")
        .or_else(|| obj.get("max_tokens"))
        .and_then(Value::as_u64)
    {
        inference.insert("maxTokens".into(), n.into());
    }
    if let Some(t) = obj.get("temperature").filter(|v| v.is_number()) {
        inference.insert("temperature".into(), t.clone());
    }
    if let Some(p) = obj.get("top_p").filter(|v| v.is_number()) {
        inference.insert("topP".into(), p.clone());
    }
    let stops: Vec<Value> = match obj.get("stop") {
        Some(Value::String(s)) => vec![s.as_str().into()],
        Some(Value::Array(a)) => a.iter().filter(|s| s.is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    if !stops.is_empty() {
        inference.insert("stopSequences".into(), stops.into());
    }
    // Claude thinks through its own request fields; it takes no sampling changes then, and its
    // output limit must leave room above the budget.
    if let Some(budget) = thinking {
        inference.remove("temperature");
        inference.remove("topP");
        let max = inference
            .get("maxTokens")
            .and_then(Value::as_u64)
            .unwrap_or(budget + 4_096)
            .max(budget + 1);
        inference.insert("maxTokens".into(), max.into());
        out.insert(
            "additionalModelRequestFields".into(),
            json!({"thinking": {"type": "enabled", "budget_tokens": budget}}),
        );
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), inference.into());
    }

    let mut tools: Vec<Value> = Vec::new();
    for t in obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = &t["function"];
        let Some(name) = f["name"].as_str() else {
            continue;
        };
        let mut spec = json!({
            "name": names.fit(name, TOOL_NAME_MAX),
            "inputSchema": {"json": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))},
        });
        if let Some(d) = f["description"].as_str().filter(|d| !d.is_empty()) {
            spec["description"] = d.into();
        }
        tools.push(json!({"toolSpec": spec}));
    }
    let choice = match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::Object(c)) => c
            .get("function")
            .and_then(|f| f["name"].as_str())
            .map(|n| json!({"tool": {"name": names.fit(n, TOOL_NAME_MAX)}})),
        // `none` has no counterpart: no choice is sent, and neither are the tools.
        _ => None,
    };
    let offered = !tools.is_empty() && obj.get("tool_choice") != Some(&json!("none"));
    if offered {
        let mut config = json!({"tools": tools});
        if let Some(c) = choice {
            config["toolChoice"] = c;
        }
        out.insert("toolConfig".into(), config);
    } else if has_tool_blocks {
        out.insert(
            "toolConfig".into(),
            json!({"tools": [{"toolSpec": {"name": PLACEHOLDER_TOOL, "description": "Not to be called.", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}),
        );
    }

    if let Some(schema) = obj
        .get("response_format")
        .filter(|f| f["type"] == "json_schema")
        .map(|f| &f["json_schema"])
    {
        let mut structure = json!({
            "schema": schema["schema"].to_string(),
            "name": schema["name"].as_str().unwrap_or("response"),
        });
        if let Some(d) = schema["description"].as_str() {
            structure["description"] = d.into();
        }
        out.insert(
            "outputConfig".into(),
            json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": structure}}}),
        );
    }
    Ok(Value::Object(out))
}

fn text_blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({"text": s})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .filter(|t| !t.is_empty())
            .map(|t| json!({"text": t}))
            .collect(),
        _ => Vec::new(),
    }
}

fn user_blocks(content: Option<&Value>) -> Result<Vec<Value>, String> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_blocks(content));
    };
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        match p["type"].as_str() {
            Some("text") => out.extend(text_blocks(Some(&p["text"]))),
            Some("image_url") => {
                let url = p["image_url"]["url"]
                    .as_str()
                    .or_else(|| p["image_url"].as_str())
                    .unwrap_or_default();
                out.push(image_block(url).map_err(|e| format!("content[{i}]: {e}"))?);
            }
            Some(other) => {
                return Err(format!(
                    "content[{i}]: a `{other}` part cannot be sent to a Bedrock model"
                ))
            }
            None => {}
        }
    }
    Ok(out)
}

/// An image from a base64 data URL: Converse takes image bytes, not URLs.
fn image_block(url: &str) -> Result<Value, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or("Bedrock takes images as base64 data URLs, not links")?;
    let (meta, data) = rest.split_once(',').ok_or("a data URL has no data")?;
    let media = meta
        .strip_suffix(";base64")
        .ok_or("only base64 data URLs are supported")?;
    let format = IMAGE_FORMATS
        .iter()
        .find(|(m, _)| *m == media)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("an image of type `{media}` cannot be sent to a Bedrock model, which takes png, jpeg, gif and webp"))?;
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// Claude on Bedrock's thinking budget, when `reasoning_effort` asks for thinking: as for Claude
/// direct (chat_to_messages), not with a forced tool, and within a tool loop only when the
/// turn's thinking is given back (`thinking_blocks`).
fn claude_thinking(obj: &Map<String, Value>, list: &[Value], target: &Target) -> Option<u64> {
    if !target.model.contains("anthropic.claude") {
        return None;
    }
    super::chat_to_messages::claude_thinks(obj, list)
        .filter(|b| *b >= super::limits::anthropic::MIN_THINKING_BUDGET)
}

/// A Converse answer's reasoning as Anthropic thinking blocks (text and signature), for a client
/// that can give them back (Responses: `encrypted_content`).
pub fn thinking_blocks(converse: &Value) -> Option<Value> {
    let blocks: Vec<Value> = converse["output"]["message"]["content"]
        .as_array()?
        .iter()
        .filter_map(|b| {
            let r = b.get("reasoningContent")?;
            match r.get("redactedContent") {
                Some(data) => Some(json!({"type": "redacted_thinking", "data": data})),
                None => Some(json!({"type": "thinking",
                                    "thinking": r["reasoningText"]["text"],
                                    "signature": r["reasoningText"]["signature"]})),
            }
        })
        .collect();
    (!blocks.is_empty()).then(|| blocks.into())
}

fn assistant_blocks(
    m: &Value,
    names: &mut ToolNames,
    thinking: bool,
) -> Result<Vec<Value>, String> {
    // The turn's thinking, given back first (only with thinking on), as Converse carries it.
    let mut out: Vec<Value> = m["thinking_blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|_| thinking)
        .filter_map(|b| match b["type"].as_str() {
            Some("thinking") => Some(json!({"reasoningContent": {"reasoningText": {
                "text": b["thinking"].as_str()?, "signature": b["signature"].as_str()?}}})),
            Some("redacted_thinking") => {
                Some(json!({"reasoningContent": {"redactedContent": b["data"].as_str()?}}))
            }
            _ => None,
        })
        .collect();
    out.extend(text_blocks(m.get("content")));
    for call in m["tool_calls"].as_array().into_iter().flatten() {
        let f = &call["function"];
        let name = f["name"].as_str().ok_or("a tool call has no name")?;
        // Converse wants the input as an object; an empty argument string is none.
        let input = match f["arguments"].as_str().map(str::trim) {
            None | Some("") => json!({}),
            Some(text) => serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    format!("the arguments of tool call `{name}` are not a JSON object")
                })?,
        };
        out.push(json!({"toolUse": {"toolUseId": call["id"], "name": names.fit(name, TOOL_NAME_MAX), "input": input}}));
    }
    Ok(out)
}

fn tool_result(m: &Value) -> Value {
    let content: Vec<Value> = match m.get("content") {
        Some(Value::String(s)) => vec![json!({"text": s})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .map(|t| json!({"text": t}))
            .collect(),
        _ => Vec::new(),
    };
    let content = if content.is_empty() {
        vec![json!({"text": ""})]
    } else {
        content
    };
    json!({"toolResult": {"toolUseId": m["tool_call_id"], "content": content}})
}

/// A Converse `stopReason` as a chat `finish_reason`.
pub fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("tool_use") => "tool_calls",
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        _ => "stop",
    }
    .into()
}

/// Converse usage as chat usage: cache reads and writes into `prompt_tokens`.
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    let prompt = n("inputTokens") + read + write;
    let completion = n("outputTokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
    })
}

fn new_id() -> String {
    format!(
        "chatcmpl-{:x}",
        now().wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())
    )
}

/// A Converse answer as a chat completion (for `model`).
pub fn response(converse: &Value, model: &str, names: &ToolNames) -> Value {
    let blocks = converse["output"]["message"]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for b in &blocks {
        if let Some(t) = b["text"].as_str() {
            text.push_str(t);
        } else if let Some(u) = b.get("toolUse") {
            let name = names.original(u["name"].as_str().unwrap_or_default());
            calls.push(json!({"id": u["toolUseId"], "type": "function",
                              "function": {"name": name, "arguments": u["input"].to_string()}}));
        } else if let Some(r) = b["reasoningContent"]["reasoningText"]["text"].as_str() {
            reasoning.push_str(r);
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    json!({
        "id": new_id(),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(converse["stopReason"].as_str())}],
        "usage": usage(&converse["usage"]),
    })
}

/// ConverseStream events in, chat chunks out.
#[derive(Debug, Default)]
pub struct StreamState {
    id: String,
    model: String,
    created: u64,
    /// Content-block index → tool-call index, for toolUse blocks.
    tools: Vec<(u64, usize)>,
    /// The finish reason from `messageStop`, sent with the usage from `metadata` after it.
    finish: Option<Value>,
    /// Whether the client asked for a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Tool names shortened in the request, restored here.
    pub names: ToolNames,
    /// Whether reasoning signatures go on as `reasoning_signature` deltas (read by the Responses
    /// translation; a chat client gets none).
    pub keep_signatures: bool,
    done: bool,
}

impl StreamState {
    pub fn new(model: &str) -> StreamState {
        StreamState {
            id: new_id(),
            model: model.to_owned(),
            created: now(),
            ..StreamState::default()
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        sse::data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    }

    fn tool_index(&self, block: u64) -> Option<usize> {
        self.tools
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }

    /// The chat chunks for one ConverseStream event (named by its type; an exception by its
    /// exception type).
    pub fn event(&mut self, event: &Event) -> String {
        if self.done {
            return String::new();
        }
        let name = event.name.as_deref().unwrap_or_default();
        let v: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        match name {
            "messageStart" => self.chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            "contentBlockStart" => {
                let block = v["contentBlockIndex"].as_u64().unwrap_or(0);
                let Some(u) = v["start"].get("toolUse") else {
                    return String::new();
                };
                let index = self.tools.len();
                self.tools.push((block, index));
                let name = self.names.original(u["name"].as_str().unwrap_or_default());
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": u["toolUseId"], "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                )
            }
            "contentBlockDelta" => {
                let block = v["contentBlockIndex"].as_u64().unwrap_or(0);
                let d = &v["delta"];
                if let Some(t) = d["text"].as_str() {
                    self.chunk(json!({"content": t}), Value::Null)
                } else if let Some(input) = d["toolUse"]["input"].as_str() {
                    let index = self.tool_index(block).unwrap_or(0);
                    self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": input}}]}),
                        Value::Null,
                    )
                } else if let Some(t) = d["reasoningContent"]["text"].as_str() {
                    self.chunk(json!({"reasoning_content": t}), Value::Null)
                } else if let (true, Some(sig)) = (
                    self.keep_signatures,
                    d["reasoningContent"]["signature"].as_str(),
                ) {
                    self.chunk(json!({"reasoning_signature": sig}), Value::Null)
                } else {
                    String::new()
                }
            }
            "messageStop" => {
                self.finish = Some(finish_reason(v["stopReason"].as_str()));
                String::new()
            }
            "metadata" => {
                let finish = self.finish.take().unwrap_or_else(|| "stop".into());
                let mut out = self.chunk(json!({}), finish);
                if self.include_usage {
                    out.push_str(&sse::data(&json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage(&v["usage"]),
                    })));
                }
                out.push_str("data: [DONE]\n\n");
                self.done = true;
                out
            }
            // An exception mid-stream: the stream ends with the error, in OpenAI's shape.
            n if n.ends_with("Exception") => {
                self.done = true;
                let message = v["message"].as_str().unwrap_or(n);
                sse::data(
                    &json!({"error": {"message": message, "type": exception_type(n), "param": null, "code": exception_code(n)}}),
                )
            }
            _ => String::new(),
        }
    }

    /// The stream ended: one that stopped without its `metadata` still finishes, once it had
    /// its `messageStop`; one cut before that has nothing more to say (the client sees it cut).
    pub fn end(&mut self) -> String {
        if self.done {
            return String::new();
        }
        let Some(finish) = self.finish.take() else {
            return String::new();
        };
        self.done = true;
        let mut out = self.chunk(json!({}), finish);
        out.push_str("data: [DONE]\n\n");
        out
    }
}

/// The HTTP status of a Bedrock exception (its HTTP errors and its stream's exception frames).
pub fn exception_status(name: &str) -> u16 {
    match name.to_ascii_lowercase().as_str() {
        "validationexception" => 400,
        "accessdeniedexception" => 403,
        "resourcenotfoundexception" => 404,
        "modeltimeoutexception" => 408,
        "modelerrorexception" | "modelstreamerrorexception" => 424,
        "throttlingexception" | "modelnotreadyexception" | "servicequotaexceededexception" => 429,
        "serviceunavailableexception" => 503,
        _ => 500,
    }
}

fn exception_type(name: &str) -> &'static str {
    super::openai_error_type(exception_status(name))
}

fn exception_code(name: &str) -> &'static str {
    match exception_status(name) {
        429 => "rate_limit_exceeded",
        400 => "invalid_request_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::eventstream::Decoder;

    fn target() -> Target<'static> {
        Target {
            prefix: "amazon_bedrock",
            model: "us.amazon.nova-pro-v1:0",
            default_max_tokens: None,
        }
    }

    fn translate(chat: Value) -> Value {
        request(&chat, &target(), &mut ToolNames::default()).unwrap()
    }

    #[test]
    fn a_chat_request_becomes_converse() {
        let out = translate(json!({
            "model": "x", "stream": true, "max_tokens": 100, "temperature": 0.5, "top_p": 0.9,
            "stop": "END",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "look", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "a cat"},
                {"role": "user", "content": "Sure?"}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "description": "Look", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        }));
        assert_eq!(out.get("model"), None);
        assert_eq!(out.get("stream"), None);
        assert_eq!(out["system"], json!([{"text": "Be brief."}]));
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
        );
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": "iVBO"}}}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "look", "input": {}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "a cat"}]}}, {"text": "Sure?"}]}
            ])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "look", "description": "Look", "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"any": {}}})
        );
    }

    #[test]
    fn claude_on_bedrock_thinks_when_asked_and_gets_its_thinking_back_in_a_loop() {
        let claude = Target {
            prefix: "amazon_bedrock",
            model: "us.anthropic.claude-sonnet-4-5-v1:0",
            default_max_tokens: None,
        };
        let ask = |messages: Value| {
            request(
                &json!({"reasoning_effort": "low", "temperature": 0.2, "messages": messages}),
                &claude,
                &mut ToolNames::default(),
            )
            .unwrap()
        };
        let out = ask(json!([{"role": "user", "content": "Think."}]));
        let budget = crate::translate::target::budget_for("low").unwrap();
        assert_eq!(
            out["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": budget}})
        );
        assert_eq!(out["inferenceConfig"], json!({"maxTokens": budget + 4_096}));

        // A tool loop: on only when the turn's thinking comes back, and then first.
        let turn = |thinking: Option<Value>| {
            let mut assistant = json!({"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}]});
            if let Some(blocks) = thinking {
                assistant["thinking_blocks"] = blocks;
            }
            json!([{"role": "user", "content": "go"}, assistant, {"role": "tool", "tool_call_id": "t", "content": "ok"}])
        };
        assert_eq!(ask(turn(None)).get("additionalModelRequestFields"), None);
        let blocks = json!([{"type": "thinking", "thinking": "hmm", "signature": "sig"}]);
        let out = ask(turn(Some(blocks)));
        assert!(out.get("additionalModelRequestFields").is_some());
        assert_eq!(
            out["messages"][1]["content"][0],
            json!({"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}})
        );
        // Another model family thinks by other means: nothing is sent.
        let nova = request(
            &json!({"reasoning_effort": "low", "messages": [{"role": "user", "content": "hi"}]}),
            &target(),
            &mut ToolNames::default(),
        )
        .unwrap();
        assert_eq!(nova.get("additionalModelRequestFields"), None);
    }

    #[test]
    fn reasoning_and_its_signature_come_back_for_a_client_that_keeps_them() {
        let converse = json!({"output": {"message": {"content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
            {"text": "hi"}
        ]}}, "stopReason": "end_turn"});
        assert_eq!(
            thinking_blocks(&converse),
            Some(json!([{"type": "thinking", "thinking": "hmm", "signature": "sig"}]))
        );
        let mut s = StreamState::new("claude");
        let ev = Event {
            name: Some("contentBlockDelta".into()),
            data:
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}})
                    .to_string(),
        };
        assert_eq!(s.event(&ev), "", "a chat client gets no signature");
        s.keep_signatures = true;
        assert!(s.event(&ev).contains("\"reasoning_signature\":\"sig\""));
    }

    #[test]
    fn a_history_with_tool_calls_and_no_tools_gets_a_placeholder_tool_config() {
        let out = translate(json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "t", "content": "ok"}
        ]}));
        assert_eq!(
            out["toolConfig"]["tools"][0]["toolSpec"]["name"],
            PLACEHOLDER_TOOL
        );
        assert_eq!(
            out["messages"][1]["content"][0]["toolUse"]["input"],
            json!({"a": 1})
        );
        let plain = translate(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(plain.get("toolConfig"), None);
    }

    #[test]
    fn remote_images_and_bad_arguments_are_refused_with_the_reason() {
        let e = request(
            &json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}),
            &target(),
            &mut ToolNames::default(),
        )
        .unwrap_err();
        assert!(e.contains("base64 data URLs"), "{e}");
        let e = request(
            &json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "[1]"}}]}]}),
            &target(),
            &mut ToolNames::default(),
        )
        .unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
    }

    #[test]
    fn a_converse_answer_becomes_a_chat_completion() {
        let converse = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Let me look."},
                {"toolUse": {"toolUseId": "t1", "name": "look", "input": {"at": "cat"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15, "cacheReadInputTokens": 4, "cacheWriteInputTokens": 2}
        });
        let chat = response(&converse, "nova", &ToolNames::default());
        let choice = &chat["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me look.");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"at":"cat"}"#
        );
        assert_eq!(
            chat["usage"],
            json!({"prompt_tokens": 16, "completion_tokens": 5, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 4}})
        );
    }

    /// Decodes a recorded stream, feeds it event by event; returns the chat chunks' data.
    fn chat_of(recorded: &[u8]) -> Vec<Value> {
        let mut d = Decoder::default();
        let mut s = StreamState::new("nova");
        s.include_usage = true;
        let mut text = String::new();
        for m in d.push(recorded).unwrap() {
            let event = Event {
                name: Some(m.name.clone()),
                data: String::from_utf8_lossy(&m.payload).into_owned(),
            };
            text.push_str(&s.event(&event));
        }
        text.push_str(&s.end());
        let mut framer = sse::Framer::default();
        framer
            .push(text.as_bytes())
            .into_iter()
            .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::String(e.data)))
            .collect()
    }

    #[test]
    fn the_recorded_streams_become_chat_chunks() {
        let chunks = chat_of(include_bytes!(
            "../../tests/fixtures/bedrock/converse-stream-text.bin"
        ));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(text.starts_with("# Binary Search"), "{text}");
        assert_eq!(chunks[chunks.len() - 1], Value::String("[DONE]".into()));
        let usage = &chunks[chunks.len() - 2]["usage"];
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
        // The recording stopped at its token limit.
        assert_eq!(
            chunks[chunks.len() - 3]["choices"][0]["finish_reason"],
            "length"
        );

        let chunks = chat_of(include_bytes!(
            "../../tests/fixtures/bedrock/converse-stream-tools.bin"
        ));
        let call = chunks
            .iter()
            .find_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["id"]
                    .as_str()
                    .map(|_| c)
            })
            .unwrap();
        assert!(call["choices"][0]["delta"]["tool_calls"][0]["function"]["name"].is_string());
        let arguments: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert!(serde_json::from_str::<Value>(&arguments)
            .unwrap()
            .is_object());
        assert_eq!(
            chunks[chunks.len() - 3]["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }

    #[test]
    fn an_exception_mid_stream_ends_it_with_an_openai_error() {
        let mut s = StreamState::new("nova");
        let event = |name: &str, data: &str| Event {
            name: Some(name.into()),
            data: data.into(),
        };
        s.event(&event("messageStart", r#"{"role":"assistant"}"#));
        let out = s.event(&event(
            "throttlingException",
            r#"{"message":"Too many requests"}"#,
        ));
        let data: Value = serde_json::from_str(out.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["error"]["code"], "rate_limit_exceeded");
        assert_eq!(data["error"]["message"], "Too many requests");
        assert_eq!(
            s.event(&event("contentBlockDelta", r#"{"delta":{"text":"x"}}"#)),
            ""
        );
        assert_eq!(s.end(), "");
    }
}
