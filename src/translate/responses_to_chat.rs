//! OpenAI Responses client (`POST /v1/responses`), chat-completions upstream: the request as a
//! chat request, the chat answer (JSON or stream) as a Responses object or event stream.
//!
//! Anthropic upstreams are reached through this module and `chat_to_messages` in turn (see
//! `Direction::ResponsesToMessages`), so both speak the same Responses.
//!
//! The stream obeys what the OpenAI SDK's `responses.stream()` helper and Codex enforce: one
//! response id, `response.created` first, `sequence_number` from 0 up, `content_part.added`
//! before any text delta, every item closed by its done events carrying the full content, and
//! exactly one terminal event (`response.completed` with the whole `output` and `usage`,
//! `response.incomplete` for a length or content-filter stop, `response.failed` for an upstream
//! that failed or stopped mid-way), with no `[DONE]`.

use serde_json::{json, Map, Value};

use super::sse::{self, Event};
use super::Target;

/// What the answer's translation needs from the request: the fields a Responses object echoes,
/// and how tool calls map back.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    /// `tools`, `tool_choice`, `parallel_tool_calls`, `instructions`, `metadata`, sampling and
    /// `text`, `reasoning`, `max_output_tokens`, as the client sent them.
    fields: Map<String, Value>,
    /// Function name → the namespace it was flattened out of.
    namespaces: Vec<(String, String)>,
    /// Names of `custom` (freeform) tools, sent as one-string functions.
    custom: Vec<String>,
    /// Hosted tools left out of the upstream request (reported in a header).
    pub dropped_tools: Vec<String>,
    /// The client asked for `reasoning.encrypted_content`: Anthropic's thinking, signatures
    /// included, goes in it, to be given back on the next turn.
    pub encrypted_reasoning: bool,
}

/// What starts the gateway's own `encrypted_content`: Anthropic thinking blocks as JSON, which
/// a later request gives back (another provider's encrypted reasoning is never read).
const THINKING_PREFIX: &str = "switchyard.thinking.v1:";

/// `blocks` (Anthropic thinking blocks) as a reasoning item's `encrypted_content`.
fn encrypted(blocks: &Value) -> Value {
    format!("{THINKING_PREFIX}{blocks}").into()
}

/// The thinking blocks in a reasoning item's `encrypted_content`, if the gateway wrote it.
fn thinking_of(item: &Value) -> Option<Value> {
    let text = item["encrypted_content"]
        .as_str()?
        .strip_prefix(THINKING_PREFIX)?;
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_array)
}

/// The schema of a `custom` tool's one argument.
fn custom_parameters() -> Value {
    json!({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]})
}

/// A Responses request as a chat-completions request for `target`.
pub fn request(body: &Value, target: &Target) -> Result<(Value, Echo), String> {
    let obj = body
        .as_object()
        .ok_or("the request body must be a JSON object")?;
    let mut echo = Echo {
        encrypted_reasoning: obj
            .get("include")
            .and_then(Value::as_array)
            .is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content")),
        ..Echo::default()
    };
    for key in [
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "instructions",
        "metadata",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "max_output_tokens",
        "store",
        "user",
    ] {
        if let Some(v) = obj.get(key) {
            echo.fields.insert(key.into(), v.clone());
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = obj.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match obj.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => input_items(items, &mut messages)?,
        None | Some(Value::Null) => {}
        Some(_) => return Err("`input` must be a string or a list of items".into()),
    }
    let mut out = Map::new();
    out.insert("model".into(), target.model.into());
    out.insert("messages".into(), messages.into());
    let mut tools = Vec::new();
    // Codex's lighter requests declare their tools in `additional_tools` input items instead of
    // `tools`: offered the same way.
    let declared = obj
        .get("input")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "additional_tools")
        .flat_map(|item| item["tools"].as_array().into_iter().flatten());
    for tool in obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(declared)
    {
        tool_of(tool, None, &mut tools, &mut echo);
    }
    if !tools.is_empty() {
        out.insert("tools".into(), tools.into());
        if let Some(choice) = obj.get("tool_choice").and_then(tool_choice) {
            out.insert("tool_choice".into(), choice);
        }
        if let Some(p) = obj.get("parallel_tool_calls").filter(|v| v.is_boolean()) {
            out.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    if let Some(format) = obj.get("text").map(|t| &t["format"]) {
        match format["type"].as_str() {
            Some("json_schema") => {
                let mut schema = Map::new();
                for key in ["name", "schema", "strict", "description"] {
                    if let Some(v) = format.get(key) {
                        schema.insert(key.into(), v.clone());
                    }
                }
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": schema}),
                );
            }
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    if let Some(max) = obj.get("max_output_tokens").filter(|v| v.is_u64()) {
        let key = if target.max_completion_tokens() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(key.into(), max.clone());
    }
    if let Some(effort) = obj
        .get("reasoning")
        .and_then(|r| r["effort"].as_str())
        .filter(|e| *e != "none")
    {
        out.insert("reasoning_effort".into(), effort.into());
    }
    for key in ["temperature", "top_p", "user"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if obj.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), true.into());
        // The terminal event carries usage: ask for it whatever the client said.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok((Value::Object(out), echo))
}

/// Input items as chat messages, in order. A run of `function_call` items is one assistant
/// message with several tool calls; reasoning and hosted-tool items have no chat form.
fn input_items(items: &[Value], messages: &mut Vec<Value>) -> Result<(), String> {
    // Thinking the gateway handed out in `encrypted_content`, for the assistant turn after it.
    let mut thinking: Option<Value> = None;
    for item in items {
        if item["type"] == "reasoning" {
            thinking = thinking_of(item).or(thinking);
            continue;
        }
        let before = messages.len();
        let kind = item["type"]
            .as_str()
            .unwrap_or(if item.get("role").is_some() {
                "message"
            } else {
                ""
            });
        match kind {
            "message" => {
                let role = match item["role"].as_str() {
                    Some("developer" | "system") => "system",
                    Some("assistant") => "assistant",
                    Some("user") => "user",
                    _ => return Err("a message item needs a `role`".into()),
                };
                messages.push(json!({"role": role, "content": content(&item["content"], role)}));
            }
            "function_call" | "custom_tool_call" => {
                let arguments = if kind == "custom_tool_call" {
                    json!({"input": item["input"]}).to_string()
                } else {
                    item["arguments"].as_str().unwrap_or("{}").to_owned()
                };
                let call = json!({
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": arguments},
                });
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" => {
                        match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                            Some(calls) => calls.push(call),
                            None => last["tool_calls"] = json!([call]),
                        }
                    }
                    _ => messages
                        .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" | "custom_tool_call_output" => {
                let output = match &item["output"] {
                    Value::String(s) => Value::String(s.clone()),
                    parts @ Value::Array(_) => content(parts, "tool"),
                    other => Value::String(other.to_string()),
                };
                messages.push(
                    json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}),
                );
            }
            // Reasoning (another model's, or encrypted), references to stored items and
            // hosted-tool calls have no chat counterpart.
            _ => {}
        }
        // The assistant turn this item began or joined carries the thinking before it.
        if let Some(last) = messages.last_mut().filter(|m| m["role"] == "assistant") {
            if let Some(blocks) = thinking.take() {
                last["thinking_blocks"] = blocks;
            }
        } else if messages.len() > before {
            thinking = None;
        }
    }
    Ok(())
}

/// Message content: a string stays one; parts become chat parts (text, image, file). An
/// assistant's or a tool's parts are joined into text, which is all chat takes from them.
fn content(content: &Value, role: &str) -> Value {
    let Some(parts) = content.as_array() else {
        return content
            .as_str()
            .map_or(Value::String(String::new()), Value::from);
    };
    if matches!(role, "assistant" | "system" | "tool") {
        let text: String = parts
            .iter()
            .filter_map(|p| p["text"].as_str().or(p["refusal"].as_str()))
            .collect();
        return text.into();
    }
    parts
        .iter()
        .filter_map(|p| match p["type"].as_str() {
            Some("input_text" | "output_text" | "text") => {
                Some(json!({"type": "text", "text": p["text"]}))
            }
            Some("input_image") => {
                let mut image = json!({"url": p["image_url"]});
                if let Some(detail) = p["detail"].as_str().filter(|d| *d != "original") {
                    image["detail"] = detail.into();
                }
                p["image_url"]
                    .is_string()
                    .then(|| json!({"type": "image_url", "image_url": image}))
            }
            Some("input_file") => {
                let mut file = Map::new();
                for key in ["file_data", "file_id", "filename"] {
                    if let Some(v) = p.get(key) {
                        file.insert(key.into(), v.clone());
                    }
                }
                Some(json!({"type": "file", "file": file}))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .into()
}

/// One Responses tool as chat functions: `function` as it is, `custom` as a one-string
/// function, `namespace` flattened; a hosted tool is left out and noted.
fn tool_of(tool: &Value, namespace: Option<&str>, tools: &mut Vec<Value>, echo: &mut Echo) {
    let kind = tool["type"].as_str().unwrap_or_default();
    let name = tool["name"].as_str().unwrap_or_default();
    match kind {
        "function" | "custom" => {
            let parameters = if kind == "custom" {
                echo.custom.push(name.to_owned());
                custom_parameters()
            } else {
                match &tool["parameters"] {
                    Value::Null => json!({"type": "object", "properties": {}}),
                    p => p.clone(),
                }
            };
            let mut function = json!({"name": name, "parameters": parameters});
            if let Some(d) = tool["description"].as_str() {
                function["description"] = d.into();
            }
            if let Some(strict) = tool["strict"].as_bool() {
                function["strict"] = strict.into();
            }
            if let Some(ns) = namespace {
                echo.namespaces.push((name.to_owned(), ns.to_owned()));
            }
            tools.push(json!({"type": "function", "function": function}));
        }
        "namespace" => {
            for inner in tool["tools"].as_array().into_iter().flatten() {
                tool_of(inner, Some(name), tools, echo);
            }
        }
        // No type: nothing to offer.
        "" => {}
        // A hosted tool (`web_search`, `file_search`, …) runs on OpenAI's side.
        _ => echo.dropped_tools.push(kind.to_owned()),
    }
}

/// `tool_choice` in chat's form; `None` when chat has nothing to say for it.
fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "none" | "auto" | "required") => {
            Some(choice.clone())
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                Some(json!({"type": "function", "function": {"name": o.get("name")?}}))
            }
            Some("allowed_tools") => o.get("mode").cloned(),
            _ => None,
        },
        _ => None,
    }
}

/// A new id with `prefix` (`resp`, `msg`, `fc`, `rs`).
fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", crate::request_id::generate())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Chat usage as Responses usage, every detail field present.
fn usage(chat: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let input = n(&chat["prompt_tokens"]);
    let output = n(&chat["completion_tokens"]);
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": n(&chat["prompt_tokens_details"]["cached_tokens"]),
            "cache_write_tokens": n(&chat["prompt_tokens_details"]["cache_creation_tokens"]),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": n(&chat["completion_tokens_details"]["reasoning_tokens"]),
        },
        "total_tokens": chat["total_tokens"].as_u64().unwrap_or(input + output),
    })
}

/// How a chat `finish_reason` ends a response: its status and, when incomplete, why.
fn ending(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

impl Echo {
    /// The Responses object around `output`.
    fn response(&self, id: &str, created: u64, model: &Value, status: &str) -> Value {
        let f = |key: &str, default: Value| self.fields.get(key).cloned().unwrap_or(default);
        json!({
            "id": id,
            "object": "response",
            "created_at": created,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "model": model,
            "output": [],
            "parallel_tool_calls": f("parallel_tool_calls", true.into()),
            "tool_choice": f("tool_choice", "auto".into()),
            "tools": f("tools", json!([])),
            "instructions": f("instructions", Value::Null),
            "metadata": f("metadata", json!({})),
            "temperature": f("temperature", Value::Null),
            "top_p": f("top_p", Value::Null),
            "max_output_tokens": f("max_output_tokens", Value::Null),
            "reasoning": f("reasoning", Value::Null),
            "text": f("text", json!({"format": {"type": "text"}})),
            "store": f("store", true.into()),
            "user": f("user", Value::Null),
            "previous_response_id": null,
            "truncation": "disabled",
            "background": false,
            "usage": null,
        })
    }

    /// A function call item for chat call `id` of `name` with `arguments`: a flattened
    /// namespace's function names its namespace, a `custom` tool's call is a custom call.
    fn call_item(&self, item_id: &str, call_id: &Value, name: &str, arguments: &str) -> Value {
        if self.custom.iter().any(|c| c == name) {
            let input = serde_json::from_str::<Value>(arguments)
                .ok()
                .and_then(|v| v["input"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return json!({"type": "custom_tool_call", "id": item_id, "call_id": call_id,
                          "name": name, "input": input, "status": "completed"});
        }
        let mut item = json!({"type": "function_call", "id": item_id, "call_id": call_id,
                              "name": name, "arguments": arguments, "status": "completed"});
        if let Some((_, ns)) = self.namespaces.iter().find(|(n, _)| n == name) {
            item["namespace"] = ns.as_str().into();
        }
        item
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

/// A chat completion as a Responses object.
pub fn response(chat: &Value, echo: &Echo) -> Value {
    let id = new_id("resp");
    let choice = &chat["choices"][0];
    let message = &choice["message"];
    let mut output = Vec::new();
    if let Some(thinking) = message["reasoning_content"]
        .as_str()
        .filter(|t| !t.is_empty())
    {
        let mut item = reasoning_item(&new_id("rs"), thinking);
        if let (true, Some(blocks)) = (echo.encrypted_reasoning, message.get("thinking_blocks")) {
            item["encrypted_content"] = encrypted(blocks);
        }
        output.push(item);
    }
    let text = message["content"].as_str().unwrap_or_default();
    if let Some(refusal) = message["refusal"].as_str() {
        output.push(json!({"type": "message", "id": new_id("msg"), "status": "completed",
                           "role": "assistant", "content": [{"type": "refusal", "refusal": refusal}]}));
    } else if !text.is_empty() {
        output.push(message_item(&new_id("msg"), text, "completed"));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        output.push(echo.call_item(
            &new_id("fc"),
            &call["id"],
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or("{}"),
        ));
    }
    let (status, incomplete) = ending(choice["finish_reason"].as_str());
    let created = chat["created"].as_u64().unwrap_or_else(now);
    let mut out = echo.response(&id, created, &chat["model"], status);
    out["output"] = output.into();
    out["incomplete_details"] = incomplete;
    out["usage"] = usage(&chat["usage"]);
    out
}

/// An item being streamed.
#[derive(Debug)]
enum Open {
    Message {
        id: String,
        text: String,
    },
    Reasoning {
        id: String,
        text: String,
        /// Anthropic's signature of the thinking, when the stream gave one.
        signature: String,
    },
    Call {
        id: String,
        call_id: Value,
        name: String,
        arguments: String,
        index: u64,
    },
}

/// Chat chunks in, Responses events out.
#[derive(Debug, Default)]
pub struct StreamState {
    pub echo: Echo,
    id: String,
    model: Value,
    created: u64,
    sequence: u64,
    started: bool,
    /// Every item so far, in output order: closed ones as their final form.
    output: Vec<Value>,
    /// Items still streaming, by output index.
    open: Vec<(usize, Open)>,
    finish: Option<String>,
    usage: Option<Value>,
    ended: bool,
    /// The response as the terminal event gave it (completed or incomplete), until taken.
    pub done: Option<Value>,
}

impl StreamState {
    pub fn new(echo: Echo) -> StreamState {
        StreamState {
            echo,
            id: new_id("resp"),
            created: now(),
            ..StreamState::default()
        }
    }

    /// One event, numbered.
    fn emit(&mut self, out: &mut String, kind: &str, mut data: Value) {
        data["type"] = kind.into();
        data["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        out.push_str(&sse::named(kind, &data));
    }

    fn snapshot(&self, status: &str) -> Value {
        self.echo
            .response(&self.id, self.created, &self.model, status)
    }

    fn start(&mut self, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.snapshot("in_progress");
        self.emit(out, "response.created", json!({"response": response}));
        let response = self.snapshot("in_progress");
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    /// The open text item of `reasoning` kind or not, opened (and any other text item closed)
    /// when there is none; its output index.
    fn text_item(&mut self, out: &mut String, reasoning: bool) -> usize {
        let found = self.open.iter().find_map(|(i, o)| match o {
            Open::Reasoning { .. } if reasoning => Some(*i),
            Open::Message { .. } if !reasoning => Some(*i),
            _ => None,
        });
        if let Some(i) = found {
            return i;
        }
        self.close_text(out);
        let index = self.output.len();
        self.output.push(Value::Null);
        // The item, then its first (empty) part, before any delta.
        let (id, item, part_event, part) = if reasoning {
            let id = new_id("rs");
            let item = json!({"type": "reasoning", "id": id, "summary": []});
            let part = json!({"item_id": id, "output_index": index, "summary_index": 0,
                              "part": {"type": "summary_text", "text": ""}});
            (id, item, "response.reasoning_summary_part.added", part)
        } else {
            let id = new_id("msg");
            let item = json!({"type": "message", "id": id, "status": "in_progress",
                              "role": "assistant", "content": []});
            let part = json!({"item_id": id, "output_index": index, "content_index": 0,
                              "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}});
            (id, item, "response.content_part.added", part)
        };
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        self.emit(out, part_event, part);
        let text = String::new();
        let open = if reasoning {
            Open::Reasoning {
                id,
                text,
                signature: String::new(),
            }
        } else {
            Open::Message { id, text }
        };
        self.open.push((index, open));
        index
    }

    /// Closes the open message and reasoning items (a tool call or the other kind of text
    /// follows them).
    fn close_text(&mut self, out: &mut String) {
        let (text, calls): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|(_, o)| !matches!(o, Open::Call { .. }));
        self.open = calls;
        for (index, item) in text {
            self.close(out, index, item);
        }
    }

    /// An item's done events, and its final form in `output`.
    fn close(&mut self, out: &mut String, index: usize, item: Open) {
        let done = match item {
            Open::Message { id, text } => {
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
                );
                message_item(&id, &text, "completed")
            }
            Open::Reasoning {
                id,
                text,
                signature,
            } => {
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                );
                let mut item = reasoning_item(&id, &text);
                if self.echo.encrypted_reasoning && !signature.is_empty() {
                    let blocks =
                        json!([{"type": "thinking", "thinking": text, "signature": signature}]);
                    item["encrypted_content"] = encrypted(&blocks);
                }
                item
            }
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                let item = self.echo.call_item(&id, &call_id, &name, &arguments);
                if item["type"] == "function_call" {
                    self.emit(
                        out,
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                    );
                } else {
                    let input = item["input"].clone();
                    self.emit(
                        out,
                        "response.custom_tool_call_input.done",
                        json!({"item_id": id, "output_index": index, "input": input}),
                    );
                }
                item
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        if let Some(slot) = self.output.get_mut(index) {
            *slot = done;
        }
    }

    /// The Responses events for one chat-stream event.
    pub fn event(&mut self, event: &Event) -> String {
        let mut out = String::new();
        if self.ended {
            return out;
        }
        if event.data.trim() == "[DONE]" {
            self.finish(&mut out);
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else {
            return out;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            self.start(&mut out);
            let message = chunk["error"]["message"]
                .as_str()
                .unwrap_or("the upstream failed");
            self.fail(&mut out, "server_error", message);
            return out;
        }
        if self.model.is_null() {
            self.model = chunk["model"].clone();
        }
        self.start(&mut out);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage(u));
        }
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        if let Some(t) = delta["reasoning_content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            let index = self.text_item(&mut out, true);
            let id = self.append(index, t);
            self.emit(
                &mut out,
                "response.reasoning_summary_text.delta",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": t}),
            );
        }
        // The gateway's own delta (from Anthropic's `signature_delta`): the open thinking's
        // signature.
        if let Some(sig) = delta["reasoning_signature"].as_str() {
            for (_, item) in &mut self.open {
                if let Open::Reasoning { signature, .. } = item {
                    signature.push_str(sig);
                }
            }
        }
        if let Some(t) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let index = self.text_item(&mut out, false);
            let id = self.append(index, t);
            self.emit(
                &mut out,
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t, "logprobs": []}),
            );
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.tool_call(&mut out, call);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_owned());
        }
        out
    }

    /// Adds text to the open text item at `index`; its id.
    fn append(&mut self, index: usize, t: &str) -> String {
        for (i, item) in &mut self.open {
            if *i == index {
                if let Open::Message { id, text } | Open::Reasoning { id, text, .. } = item {
                    text.push_str(t);
                    return id.clone();
                }
            }
        }
        String::new()
    }

    fn tool_call(&mut self, out: &mut String, call: &Value) {
        let chat_index = call["index"].as_u64().unwrap_or(0);
        let known = self
            .open
            .iter()
            .position(|(_, o)| matches!(o, Open::Call { index, .. } if *index == chat_index));
        let slot = match known {
            Some(slot) => slot,
            None => {
                self.close_text(out);
                let index = self.output.len();
                self.output.push(Value::Null);
                let id = new_id("fc");
                let name = call["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let call_id = call["id"].clone();
                let mut item = self.echo.call_item(&id, &call_id, &name, "");
                item["status"] = "in_progress".into();
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                self.open.push((
                    index,
                    Open::Call {
                        id,
                        call_id,
                        name,
                        arguments: String::new(),
                        index: chat_index,
                    },
                ));
                self.open.len() - 1
            }
        };
        let Some(piece) = call["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let (index, open) = &mut self.open[slot];
        let index = *index;
        if let Open::Call {
            id,
            name,
            arguments,
            ..
        } = open
        {
            arguments.push_str(piece);
            let id = id.clone();
            let custom = self.echo.custom.iter().any(|c| c == name);
            // A custom tool's input is its one string argument, known whole only at the end.
            if !custom {
                self.emit(
                    out,
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": piece}),
                );
            }
        }
    }

    /// Closes every open item and ends the response as its finish reason says.
    fn finish(&mut self, out: &mut String) {
        self.start(out);
        let open = std::mem::take(&mut self.open);
        for (index, item) in open {
            self.close(out, index, item);
        }
        let (status, incomplete) = ending(self.finish.as_deref());
        let mut response = self.snapshot(status);
        response["output"] = self.output.clone().into();
        response["incomplete_details"] = incomplete;
        response["usage"] = self.usage.clone().unwrap_or_else(|| usage(&Value::Null));
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({"response": &response}));
        self.done = Some(response);
        self.ended = true;
    }

    /// Ends the response as failed (the upstream's error mid-stream, or a stream cut short).
    fn fail(&mut self, out: &mut String, code: &str, message: &str) {
        let mut response = self.snapshot("failed");
        response["output"] = self
            .output
            .iter()
            .filter(|v| !v.is_null())
            .cloned()
            .collect::<Vec<_>>()
            .into();
        response["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({"response": response}));
        self.ended = true;
    }

    /// The stream ended: a chat stream that finished without `[DONE]` still completes; one
    /// cut before its finish reason fails.
    pub fn end(&mut self) -> String {
        let mut out = String::new();
        if self.ended {
            return out;
        }
        if self.finish.is_some() {
            self.finish(&mut out);
        } else {
            self.start(&mut out);
            self.fail(
                &mut out,
                "server_error",
                "the upstream's stream ended before its answer did",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{Direction, ResponseTranslator};
    use crate::usage::ResponseWatch;

    fn target() -> Target<'static> {
        Target {
            prefix: "groq",
            model: "llama-3",
            default_max_tokens: None,
        }
    }

    #[test]
    fn a_request_becomes_chat_with_its_tools_flattened_and_hosted_ones_left_out() {
        let body = json!({
            "model": "groq/llama-3",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "Look:"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{\"path\":\"a\"}"},
                {"type": "function_call", "call_id": "c2", "name": "read", "arguments": "{\"path\":\"b\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "B"}]}
            ],
            "tools": [
                {"type": "web_search"},
                {"type": "namespace", "name": "fs", "tools": [{"type": "function", "name": "read", "parameters": {"type": "object"}}]},
                {"type": "custom", "name": "apply_patch", "description": "A patch"}
            ],
            "tool_choice": {"type": "function", "name": "read"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "max_output_tokens": 50,
            "reasoning": {"effort": "low", "summary": "auto"},
            "store": false,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "k",
            "stream": true
        });
        let (chat, echo) = request(&body, &target()).unwrap();
        assert_eq!(echo.dropped_tools, ["web_search"]);
        assert_eq!(chat["model"], "llama-3");
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "system", "content": "Use tools."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"b\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "A"},
                {"role": "tool", "tool_call_id": "c2", "content": "B"}
            ])
        );
        let names: Vec<_> = chat["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["read", "apply_patch"]);
        assert_eq!(
            chat["tools"][1]["function"]["parameters"],
            custom_parameters()
        );
        assert_eq!(
            chat["tool_choice"],
            json!({"type": "function", "function": {"name": "read"}})
        );
        assert_eq!(chat["response_format"]["json_schema"]["name"], "out");
        assert_eq!(chat["max_completion_tokens"], 50);
        assert_eq!(chat["reasoning_effort"], "low");
        assert_eq!(chat["stream_options"], json!({"include_usage": true}));
        for gone in [
            "store",
            "include",
            "prompt_cache_key",
            "text",
            "instructions",
            "input",
        ] {
            assert!(chat.get(gone).is_none(), "{gone}");
        }
        // Calls map back: the flattened function names its namespace, the custom tool's call
        // is a custom call with its input.
        let item = echo.call_item("fc_1", &json!("c9"), "read", "{}");
        assert_eq!(item["namespace"], "fs");
        let item = echo.call_item("fc_2", &json!("c9"), "apply_patch", "{\"input\":\"diff\"}");
        assert_eq!(item["type"], "custom_tool_call");
        assert_eq!(item["input"], "diff");
    }

    /// Holds a Responses stream to the rules the SDK's helper and Codex enforce; returns the
    /// event types and the terminal response.
    #[test]
    fn tools_declared_in_the_input_are_offered_too() {
        let body = json!({"input": [
            {"type": "additional_tools", "role": "developer", "tools": [
                {"type": "namespace", "name": "functions", "tools": [{"type": "custom", "name": "exec"}]}
            ]},
            {"role": "user", "content": "hello"}
        ]});
        let (chat, echo) = request(&body, &target()).unwrap();
        assert_eq!(chat["tools"][0]["function"]["name"], "exec");
        assert_eq!(
            chat["messages"],
            json!([{"role": "user", "content": "hello"}])
        );
        assert_eq!(echo.custom, ["exec"]);
    }

    #[test]
    fn only_the_gateways_own_encrypted_reasoning_is_given_back() {
        let blocks = json!([{"type": "thinking", "thinking": "hmm", "signature": "sig"}]);
        let ours = json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted(&blocks)});
        let openais = json!({"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAAABo-opaque"});
        let call =
            json!({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"});
        let output = json!({"type": "function_call_output", "call_id": "c1", "output": "ok"});
        let body = json!({"input": [{"role": "user", "content": "hi"}, ours, call, output, openais, call, output]});
        let (chat, _) = request(&body, &target()).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(messages[1]["thinking_blocks"], blocks);
        assert_eq!(messages[3].get("thinking_blocks"), None, "{messages:?}");
    }

    fn check(text: &str) -> (Vec<String>, Value) {
        let events: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let name = e.lines().next().unwrap().strip_prefix("event: ").unwrap();
                let data = e.lines().nth(1).unwrap().strip_prefix("data: ").unwrap();
                (
                    name.to_owned(),
                    serde_json::from_str::<Value>(data).unwrap(),
                )
            })
            .collect();
        assert_eq!(events[0].0, "response.created");
        let mut ids = std::collections::HashSet::new();
        let (mut added, mut done, mut parts) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i);
            if let Some(id) = data["response"]["id"].as_str() {
                ids.insert(id.to_owned());
            }
            match name.as_str() {
                "response.output_item.added" => added.push(data["output_index"].clone()),
                "response.output_item.done" => done.push(data["item"].clone()),
                "response.content_part.added" => parts.push(data["item_id"].clone()),
                "response.output_text.delta" => assert!(parts.contains(&data["item_id"])),
                _ => {}
            }
        }
        assert_eq!(ids.len(), 1);
        let terminal = [
            "response.completed",
            "response.incomplete",
            "response.failed",
        ];
        let ends = events
            .iter()
            .filter(|(n, _)| terminal.contains(&n.as_str()));
        assert_eq!(ends.count(), 1);
        let (last, data) = events.last().unwrap();
        assert!(terminal.contains(&last.as_str()), "{last}");
        if last != "response.failed" {
            assert_eq!(added.len(), done.len());
            assert_eq!(data["response"]["output"], Value::from(done));
        }
        assert!(!text.contains("[DONE]"));
        let response = data["response"].clone();
        (events.into_iter().map(|(n, _)| n).collect(), response)
    }

    /// A chat stream through the Responses translator, fed `chunk` bytes at a time.
    fn translate(stream: &str, chunk: usize) -> String {
        let translated = Direction::ResponsesToChat
            .request(br#"{"model":"m","input":"hi","stream":true}"#, &target())
            .unwrap();
        let mut t = ResponseTranslator::new(Direction::ResponsesToChat, "llama-3", &translated);
        let mut watch = ResponseWatch::default();
        watch.header(200, Some("text/event-stream"), true);
        let mut header = pingora::http::ResponseHeader::build(200, None).unwrap();
        t.header(&mut header, true);
        let pieces: Vec<&[u8]> = stream.as_bytes().chunks(chunk).collect();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let end = i + 1 == pieces.len();
            let read = watch.body(piece, end, std::time::Instant::now());
            if let Some(b) = t.body(&read, None, end) {
                out.extend_from_slice(&b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn chunk(delta: Value, finish: Value) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "llama-3",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    }

    /// Reasoning, text and two tool calls, with usage: the same Responses stream whatever the
    /// byte split.
    #[test]
    fn a_stream_with_every_kind_of_item_obeys_the_rules_at_every_split() {
        let stream = [
            chunk(json!({"role": "assistant", "reasoning_content": "Let me "}), Value::Null),
            chunk(json!({"reasoning_content": "think."}), Value::Null),
            chunk(json!({"content": "Héllo "}), Value::Null),
            chunk(json!({"content": "there."}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}), Value::Null),
            chunk(json!({}), "tool_calls".into()),
            format!("data: {}\n\n", json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 4}}})),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let whole = translate(&stream, stream.len());
        let (types, response) = check(&whole);
        assert_eq!(types.last().unwrap(), "response.completed");
        let output = response["output"].as_array().unwrap();
        let kinds: Vec<_> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["reasoning", "message", "function_call", "function_call"]
        );
        assert_eq!(output[0]["summary"][0]["text"], "Let me think.");
        assert_eq!(output[1]["content"][0]["text"], "Héllo there.");
        assert_eq!(output[2]["arguments"], "{\"x\":1}");
        assert_eq!(output[2]["call_id"], "call_a");
        assert_eq!(output[3]["name"], "g");
        assert_eq!(
            response["usage"],
            json!({"input_tokens": 7, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
                   "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 16})
        );
        for split in 1..40 {
            let (t, r) = check(&translate(&stream, split));
            assert_eq!(t, types, "split {split}");
            assert_eq!(r["output"].as_array().unwrap().len(), 4);
        }
    }

    #[test]
    fn a_length_stop_is_incomplete_and_a_cut_stream_fails() {
        let stream = [
            chunk(json!({"content": "partial"}), Value::Null),
            chunk(json!({}), "length".into()),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let (types, response) = check(&translate(&stream, 7));
        assert_eq!(types.last().unwrap(), "response.incomplete");
        assert_eq!(
            response["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(response["output"][0]["content"][0]["text"], "partial");

        let cut = chunk(json!({"content": "half"}), Value::Null);
        let (types, response) = check(&translate(&cut, 5));
        assert_eq!(types.last().unwrap(), "response.failed");
        assert_eq!(response["error"]["code"], "server_error");
    }

    #[test]
    fn a_json_answer_becomes_a_response_object() {
        let chat = json!({
            "id": "c", "created": 5, "model": "llama-3",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.", "reasoning_content": "hmm",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        });
        let body = json!({"model": "m", "input": "hi", "metadata": {"k": "v"}, "parallel_tool_calls": false});
        let (_, echo) = request(&body, &target()).unwrap();
        let r = response(&chat, &echo);
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["created_at"], 5);
        assert_eq!(r["metadata"], json!({"k": "v"}));
        assert_eq!(r["parallel_tool_calls"], false);
        let kinds: Vec<_> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].clone())
            .collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"]);
        assert_eq!(r["usage"]["output_tokens"], 2);
    }
}
