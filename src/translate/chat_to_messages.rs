//! An OpenAI chat-completions client in front of an Anthropic Messages upstream: the request
//! goes out as Messages, the answer (JSON or SSE) comes back as chat completions.

use serde_json::{json, Map, Value};

use super::limits::{self, anthropic::*};
use super::names::ToolNames;
use super::sse::{self, Event};
use super::target::{budget_for, Target};

/// Translates a chat-completions request body into a Messages request for `target`; tool
/// names too long for Anthropic are shortened into `names`.
pub fn request(chat: &Value, target: &Target, names: &mut ToolNames) -> Result<Value, String> {
    let (obj, list) = super::with_messages(chat)?;
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let max_tokens = obj
        .get("max_completion_tokens")
        .or_else(|| obj.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| target.anthropic_max_tokens());
    let thinking = thinking_budget(obj, list, max_tokens);
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let mut blocks = match role {
            "system" | "developer" => {
                let mut blocks = text_blocks(m.get("content"));
                cache_last(&mut blocks, m);
                system.extend(blocks);
                continue;
            }
            "user" => user_blocks(m.get("content")),
            "assistant" => assistant_blocks(m, names, thinking.is_some()),
            "tool" => Ok(vec![tool_result(m)]),
            other => Err(format!("unsupported message role `{other}`")),
        }
        .map_err(|e| format!("`messages[{i}]`: {e}"))?;
        cache_last(&mut blocks, m);
        let role = if role == "assistant" {
            "assistant"
        } else {
            "user"
        };
        push(&mut messages, role, blocks);
    }
    trim_prefill(&mut messages);

    let mut out = Map::new();
    out.insert("model".into(), target.model.into());
    out.insert("messages".into(), messages.into());
    if !system.is_empty() {
        out.insert("system".into(), system.into());
    }
    out.insert("max_tokens".into(), max_tokens.into());
    if let Some(budget) = thinking {
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    // Thinking takes no sampling changes; otherwise temperature is clamped to Anthropic's 0–1
    // (OpenAI allows up to 2).
    if thinking.is_none() {
        if let Some(t) = obj.get("temperature").and_then(Value::as_f64) {
            out.insert("temperature".into(), t.clamp(0.0, 1.0).into());
        }
        if let Some(v) = obj.get("top_p").filter(|v| !v.is_null()) {
            out.insert("top_p".into(), v.clone());
        }
    }
    if let Some(v) = obj.get("stream").filter(|v| !v.is_null()) {
        out.insert("stream".into(), v.clone());
    }
    // Anthropic refuses stop sequences that are only whitespace (`"\n"`); they are dropped.
    let stops: Vec<Value> = match obj.get("stop") {
        Some(Value::String(s)) => vec![s.clone().into()],
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
    .collect();
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), stops.into());
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function").map(|f| (t, f)))
            .map(|(t, f)| {
                let mut tool = json!({
                    "name": names.fit(f["name"].as_str().unwrap_or_default(), TOOL_NAME_MAX),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                });
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                if let Some(c) = t.get("cache_control") {
                    tool["cache_control"] = c.clone();
                }
                tool
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), tools.into());
        }
    }
    // OpenAI's `web_search_options` (a Responses client's `web_search` tool arrives so): Claude's
    // own server-side web search.
    if obj.get("web_search_options").is_some_and(Value::is_object) {
        let search = json!({"type": WEB_SEARCH_TOOL, "name": "web_search", "max_uses": 5});
        match out.get_mut("tools").and_then(Value::as_array_mut) {
            Some(tools) => tools.push(search),
            None => {
                out.insert("tools".into(), json!([search]));
            }
        }
    }
    let mut tool_choice = match obj.get("tool_choice") {
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|name| json!({"type": "tool", "name": names.fit(name, TOOL_NAME_MAX)})),
        _ => None,
    };
    // Anthropic takes `disable_parallel_tool_use` on auto, any and tool, not on none.
    if obj.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }
    // Structured output: Anthropic's native JSON-schema output format.
    if let Some(format) = obj
        .get("response_format")
        .filter(|f| f["type"] == "json_schema")
    {
        let schema = format["json_schema"]["schema"].clone();
        out.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    // OpenAI's newer name for the end user first, then the older one.
    if let Some(user) = ["safety_identifier", "user"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
    {
        let user = limits::user_id(user, USER_ID_MAX);
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    cap_cache_control(&mut out);
    Ok(Value::Object(out))
}

/// A tool call's id as Anthropic takes it (`[a-zA-Z0-9_-]`, e.g. not Kimi's
/// `functions.get_weather:0`): the call and its result map alike, so they still pair.
fn tool_id(id: Option<&Value>) -> Value {
    match id.and_then(Value::as_str) {
        Some(id) => limits::fit(id, usize::MAX, limits::name_char).into(),
        None => id.cloned().unwrap_or(Value::Null),
    }
}

/// Anthropic takes at most `CACHE_CONTROL_MAX` breakpoints; the earliest extra ones go, since
/// a later breakpoint caches everything before it (tools, then system, then messages).
fn cap_cache_control(out: &mut Map<String, Value>) {
    // Blocks in the order Anthropic reads them, whatever the order of the object's keys.
    let mut marked: Vec<(u8, &mut Map<String, Value>)> = Vec::new();
    for (key, value) in out.iter_mut() {
        let (rank, nested) = match key.as_str() {
            "tools" => (0, false),
            "system" => (1, false),
            "messages" => (2, true),
            _ => continue,
        };
        for item in value.as_array_mut().into_iter().flatten() {
            let blocks = if nested {
                item["content"].as_array_mut().map(Vec::as_mut_slice)
            } else {
                Some(std::slice::from_mut(item))
            };
            let blocks = blocks
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut);
            marked.extend(
                blocks
                    .filter(|b| b.contains_key("cache_control"))
                    .map(|b| (rank, b)),
            );
        }
    }
    marked.sort_by_key(|(rank, _)| *rank);
    let extra = marked.len().saturating_sub(CACHE_CONTROL_MAX);
    for (_, block) in marked.into_iter().take(extra) {
        block.remove("cache_control");
    }
}

/// A conversation that ends with the assistant asks Claude to continue that text (prefill),
/// which Anthropic refuses with trailing whitespace.
fn trim_prefill(messages: &mut Vec<Value>) {
    let Some(last) = messages.last_mut().filter(|m| m["role"] == "assistant") else {
        return;
    };
    let Some(blocks) = last["content"].as_array_mut() else {
        return;
    };
    if let Some(text) = blocks.last_mut().filter(|b| b["type"] == "text") {
        let trimmed = text["text"].as_str().unwrap_or("").trim_end().to_owned();
        if trimmed.is_empty() {
            blocks.pop();
        } else {
            text["text"] = trimmed.into();
        }
    }
    if blocks.is_empty() {
        messages.pop();
    }
}

/// A `tool` message as a `tool_result` block; the error marker of the other direction
/// (`messages_to_chat::TOOL_ERROR`) becomes `is_error` again.
fn tool_result(m: &Value) -> Value {
    let id = tool_id(m.get("tool_call_id"));
    let mut content = text_blocks(m.get("content"));
    let mut error = false;
    if let Some(first) = content.first_mut() {
        if let Some(rest) = first["text"]
            .as_str()
            .and_then(|t| t.strip_prefix(super::messages_to_chat::TOOL_ERROR))
        {
            first["text"] = rest.to_owned().into();
            error = true;
        }
    }
    let mut block = json!({"type": "tool_result", "tool_use_id": id, "content": content});
    if error {
        block["is_error"] = true.into();
    }
    block
}

/// A message-level `cache_control` (LiteLLM's and OpenRouter's convention) marks the message's
/// last block, as Anthropic places breakpoints.
fn cache_last(blocks: &mut [Value], m: &Value) {
    if let (Some(c), Some(last)) = (m.get("cache_control"), blocks.last_mut()) {
        last["cache_control"] = c.clone();
    }
}

/// Appends blocks to the conversation, merging into the last message when the role repeats
/// (Anthropic and Bedrock's Converse want user and assistant turns to alternate).
pub(super) fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut().filter(|m| m["role"] == role) {
        if let Some(content) = last["content"].as_array_mut() {
            content.extend(blocks);
            return;
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// Text content (a string or text parts) as text blocks. Anthropic refuses text blocks that
/// are empty or only whitespace: they carry nothing and are left out.
fn text_blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if has_text(s) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).map(|t| (p, t)))
            .filter(|(_, t)| has_text(t))
            .map(|(p, t)| with_cache_control(json!({"type": "text", "text": t}), p))
            .collect(),
        _ => Vec::new(),
    }
}

fn has_text(s: &str) -> bool {
    !s.trim().is_empty()
}

fn user_blocks(content: Option<&Value>) -> Result<Vec<Value>, String> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_blocks(content));
    };
    let mut blocks = Vec::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                if part["text"].as_str().is_some_and(has_text) {
                    blocks.push(with_cache_control(
                        json!({"type": "text", "text": part["text"]}),
                        part,
                    ));
                }
            }
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .ok_or("an image_url part needs a url")?;
                blocks.push(with_cache_control(image_block(url)?, part));
            }
            Some("file") => blocks.push(with_cache_control(file_block(&part["file"])?, part)),
            Some(other) => {
                return Err(format!(
                    "unsupported content part `{other}` for this provider"
                ))
            }
            None => return Err("a content part has no type".into()),
        }
    }
    Ok(blocks)
}

/// A content part's `cache_control`, carried to its block.
fn with_cache_control(mut block: Value, part: &Value) -> Value {
    if let Some(c) = part.get("cache_control") {
        block["cache_control"] = c.clone();
    }
    block
}

/// An OpenAI `file` part with inline PDF data as a `document` block.
fn file_block(file: &Value) -> Result<Value, String> {
    let data = file["file_data"]
        .as_str()
        .ok_or("a `file` part needs `file_data` here (file ids live at OpenAI only)")?;
    let (media, data) = data
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .ok_or("`file_data` must be a base64 data URL")?;
    let mut block = json!({"type": "document", "source": {"type": "base64", "media_type": media, "data": data}});
    if let Some(name) = file["filename"].as_str() {
        block["title"] = name.into();
    }
    Ok(block)
}

/// `data:<media>;base64,<data>` becomes a base64 source; anything else a URL source.
fn image_block(url: &str) -> Result<Value, String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or("a data URL has no data")?;
        let media = meta
            .strip_suffix(";base64")
            .ok_or("only base64 data URLs are supported")?;
        if !IMAGE_TYPES.contains(&media) {
            return Err(format!(
                "an image of type `{media}` cannot be sent to an Anthropic model, which takes {}",
                IMAGE_TYPES.join(", ")
            ));
        }
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
        );
    }
    Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
}

fn assistant_blocks(
    m: &Value,
    names: &mut ToolNames,
    thinking: bool,
) -> Result<Vec<Value>, String> {
    // The turn's thinking, given back first, as Anthropic wants it (only with thinking on).
    let mut blocks: Vec<Value> = m["thinking_blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|_| thinking)
        .filter(|b| match b["type"].as_str() {
            Some("thinking") => b["thinking"].is_string() && b["signature"].is_string(),
            Some("redacted_thinking") => b["data"].is_string(),
            _ => false,
        })
        .cloned()
        .collect();
    blocks.extend(text_blocks(m.get("content")));
    // An earlier refusal is what the assistant said.
    if let Some(refusal) = m
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| has_text(r))
    {
        blocks.push(json!({"type": "text", "text": refusal}));
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = &call["function"];
        let args = f["arguments"].as_str().unwrap_or("{}");
        let input: Value = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(args).map_err(|_| "tool call arguments are not valid JSON")?
        };
        let name = names.fit(f["name"].as_str().unwrap_or_default(), TOOL_NAME_MAX);
        blocks.push(json!({"type": "tool_use", "id": tool_id(call.get("id")), "name": name, "input": input}));
    }
    Ok(blocks)
}

/// The thinking budget of a request: `reasoning_effort` turns Claude's thinking on
/// (target::EFFORT_BUDGETS); the budget stays under max_tokens, which counts thinking as
/// OpenAI's limit counts reasoning. Within a tool loop Anthropic wants the turn's thinking
/// blocks back: thinking continues a loop only when the assistant's turn carries them
/// (`thinking_blocks`, which a Responses client gives back as `encrypted_content`), and
/// otherwise starts on a turn that ends with the user. It is refused with a forced tool
/// (`required`, a named function).
fn thinking_budget(obj: &Map<String, Value>, list: &[Value], max_tokens: u64) -> Option<u64> {
    claude_thinks(obj, list)
        .map(|budget| budget.min(max_tokens.saturating_sub(1)))
        .filter(|budget| *budget >= MIN_THINKING_BUDGET)
}

/// The thinking budget `reasoning_effort` asks Claude for, where Anthropic's rules allow
/// thinking (direct or on Bedrock): not with a forced tool, and within a tool loop only when the
/// assistant's turn gives its thinking back.
pub(super) fn claude_thinks(obj: &Map<String, Value>, list: &[Value]) -> Option<u64> {
    let loop_continues = list.last().is_some_and(|m| m["role"] == "tool");
    let given_back = list
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")
        .is_some_and(|m| {
            m["thinking_blocks"]
                .as_array()
                .is_some_and(|b| !b.is_empty())
        });
    let forced_tool = match obj.get("tool_choice") {
        Some(Value::String(s)) => s == "required",
        Some(Value::Object(_)) => true,
        _ => false,
    };
    obj.get("reasoning_effort")
        .and_then(Value::as_str)
        .filter(|_| (!loop_continues || given_back) && !forced_tool)
        .and_then(budget_for)
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`; always one of OpenAI's values.
pub fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("refusal") => "content_filter".into(),
        // end_turn, stop_sequence, pause_turn (a server tool paused the turn), and any newer one.
        _ => "stop".into(),
    }
}

/// Anthropic usage → OpenAI usage (OpenAI's prompt count includes cached tokens).
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = n("cache_read_input_tokens");
    let prompt = n("input_tokens") + cache_read + n("cache_creation_input_tokens");
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    })
}

/// Anthropic's server-side web search tool.
pub const WEB_SEARCH_TOOL: &str = "web_search_20250305";

/// A Messages answer's thinking blocks as they came (with their signatures), for a client that
/// can give them back (Responses: `reasoning.encrypted_content`); `None` when it has none.
pub fn thinking_blocks(msg: &Value) -> Option<Value> {
    let blocks: Vec<Value> = msg["content"]
        .as_array()?
        .iter()
        .filter(|b| matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking")))
        .cloned()
        .collect();
    (!blocks.is_empty()).then(|| blocks.into())
}

/// Translates a Messages response into a chat completion; shortened tool names get their
/// client's names back.
pub fn response(msg: &Value, names: &ToolNames) -> Value {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("thinking") => thinking.push_str(block["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block["id"],
                "type": "function",
                "function": {
                    "name": names.original(block["name"].as_str().unwrap_or_default()),
                    "arguments": block["input"].to_string(),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    // Thinking has no OpenAI field; `reasoning_content` is the common extension (DeepSeek, vLLM).
    if !thinking.is_empty() {
        message["reasoning_content"] = thinking.into();
    }
    json!({
        "id": msg["id"],
        "object": "chat.completion",
        "created": now(),
        "model": msg["model"],
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(msg["stop_reason"].as_str()),
        }],
        "usage": usage(&msg["usage"]),
    })
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Anthropic Messages events → OpenAI chat-completion chunks, one event at a time.
#[derive(Debug, Default)]
pub struct StreamState {
    id: Value,
    model: Value,
    created: u64,
    /// Content-block index → tool-call index, for tool_use blocks.
    tools: Vec<(u64, usize)>,
    usage: Value,
    /// Whether the client asked for a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Tool names shortened in the request, restored here.
    pub names: ToolNames,
    /// Whether thinking signatures go on as `reasoning_signature` deltas (the gateway's own,
    /// read by the Responses translation; a chat client gets none).
    pub keep_signatures: bool,
    done: bool,
}

impl StreamState {
    fn chunk(&self, delta: Value, finish: Value) -> String {
        sse::data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
    }

    /// The chat chunks for one Messages event.
    pub fn event(&mut self, event: &Event) -> String {
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            return String::new();
        };
        match v["type"].as_str() {
            Some("message_start") => {
                let m = &v["message"];
                self.id = m["id"].clone();
                self.model = m["model"].clone();
                self.created = now();
                self.usage = m["usage"].clone();
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            Some("content_block_start") if v["content_block"]["type"] == "tool_use" => {
                let index = self.tools.len();
                self.tools.push((v["index"].as_u64().unwrap_or(0), index));
                let b = &v["content_block"];
                let name = self.names.original(b["name"].as_str().unwrap_or_default());
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": b["id"], "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                )
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => self.chunk(json!({"content": d["text"]}), Value::Null),
                    Some("input_json_delta") => {
                        let block = v["index"].as_u64().unwrap_or(0);
                        // A server tool's input (Claude's own web search) is not the client's.
                        let Some(index) = self
                            .tools
                            .iter()
                            .find(|(b, _)| *b == block)
                            .map(|(_, i)| *i)
                        else {
                            return String::new();
                        };
                        self.chunk(
                            json!({"tool_calls": [{"index": index, "function": {"arguments": d["partial_json"]}}]}),
                            Value::Null,
                        )
                    }
                    Some("thinking_delta") => {
                        self.chunk(json!({"reasoning_content": d["thinking"]}), Value::Null)
                    }
                    Some("signature_delta") if self.keep_signatures => {
                        self.chunk(json!({"reasoning_signature": d["signature"]}), Value::Null)
                    }
                    _ => String::new(),
                }
            }
            Some("message_delta") => {
                if let (Some(u), Some(target)) =
                    (v["usage"].as_object(), self.usage.as_object_mut())
                {
                    for (k, n) in u {
                        target.insert(k.clone(), n.clone());
                    }
                }
                self.chunk(json!({}), finish_reason(v["delta"]["stop_reason"].as_str()))
            }
            Some("message_stop") => self.end(),
            Some("error") => {
                self.done = true;
                let e = &v["error"];
                sse::data(
                    &json!({"error": {"message": e["message"], "type": e["type"], "param": null, "code": null}}),
                )
            }
            _ => String::new(),
        }
    }

    /// The closing chunks (usage if asked for, then `[DONE]`), once.
    pub fn end(&mut self) -> String {
        if self.done {
            return String::new();
        }
        self.done = true;
        let mut out = String::new();
        if self.include_usage {
            out.push_str(&sse::data(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage(&self.usage),
            })));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}
