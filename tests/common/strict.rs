//! What the real APIs refuse, as the mock providers refuse it: every request a test sends
//! upstream (translated or passed through) is checked against the rules OpenAI's chat
//! completions and Anthropic's Messages enforce, written here from their API references and
//! the errors they answer, independently of the gateway's own table (src/translate/limits.rs).
//! A refused request gets the real API's status and error shape, so a test whose request the
//! real API would refuse fails. Required fields are not checked (tests send bare bodies on
//! purpose); the limits, patterns and pairings a translation could break are. The `lenient` mode turns this off for tests that send a
//! deliberately malformed body through.

use serde_json::{json, Value};

use super::Received;

/// The status and body the real API would answer `req` with, if it would refuse it.
pub fn refusal(req: &Received) -> Option<(u16, Value)> {
    if req.method != "POST" {
        return None;
    }
    let path = req.path.split('?').next().unwrap_or("");
    let body = serde_json::from_slice::<Value>(&req.body).ok();
    if path.ends_with("/chat/completions") {
        let Some(body) = body.filter(Value::is_object) else {
            return Some(openai(
                "We could not parse the JSON body of your request.",
                None,
                None,
            ));
        };
        return openai_refusal(&body)
            .map(|(message, param, code)| openai(&message, param.as_deref(), code));
    }
    let count_tokens = path.ends_with("/messages/count_tokens");
    if path.ends_with("/messages") || count_tokens {
        let Some(body) = body.filter(Value::is_object) else {
            return Some(anthropic(
                "There was an issue with your request body: invalid JSON",
            ));
        };
        return anthropic_refusal(&body, count_tokens).map(|m| anthropic(&m));
    }
    if path.ends_with("/converse") || path.ends_with("/converse-stream") {
        let Some(body) = body.filter(Value::is_object) else {
            return Some(bedrock(
                "Malformed input request, please reformat your input and try again.",
            ));
        };
        return converse_refusal(&body).map(|m| bedrock(&m));
    }
    None
}

/// Bedrock's ValidationException (HTTP 400, `{"message"}`; the type in `x-amzn-ErrorType`).
fn bedrock(message: &str) -> (u16, Value) {
    (400, json!({"message": message}))
}

/// What Bedrock's Converse refuses (its API reference and the ValidationExceptions it answers).
fn converse_refusal(body: &Value) -> Option<String> {
    let known = [
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "outputConfig",
        "performanceConfig",
        "promptVariables",
        "requestMetadata",
        "serviceTier",
    ];
    if let Some(k) = body
        .as_object()?
        .keys()
        .find(|k| !known.contains(&k.as_str()))
    {
        return Some(format!("Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."));
    }
    let messages = body["messages"].as_array()?;
    if messages.first().is_some_and(|m| m["role"] != "user") {
        return Some("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    }
    let mut uses_tools = false;
    for (i, pair) in messages.windows(2).enumerate() {
        if pair[0]["role"] == pair[1]["role"] {
            return Some(format!("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again. (messages[{}])", i + 1));
        }
    }
    for (i, m) in messages.iter().enumerate() {
        for (j, block) in m["content"].as_array().into_iter().flatten().enumerate() {
            let keys = block.as_object().map_or(0, |b| b.len());
            if keys != 1 {
                return Some(format!(
                    "messages.{i}.content.{j}: a content block must have exactly one member"
                ));
            }
            if let Some(u) = block.get("toolUse") {
                uses_tools = true;
                if !u["input"].is_object() {
                    return Some(format!(
                        "messages.{i}.content.{j}.toolUse.input must be a JSON object"
                    ));
                }
            }
            uses_tools |= block.get("toolResult").is_some();
            if let Some(image) = block.get("image") {
                if image["source"]["bytes"].as_str().is_none() {
                    return Some(format!(
                        "messages.{i}.content.{j}.image.source: bytes are required"
                    ));
                }
            }
        }
    }
    if uses_tools && body.get("toolConfig").is_none() {
        return Some("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    None
}

fn openai(message: &str, param: Option<&str>, code: Option<&str>) -> (u16, Value) {
    (
        400,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
    )
}

fn anthropic(message: &str) -> (u16, Value) {
    (
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}, "request_id": "req_mock_strict"}),
    )
}

type OpenAiError = (String, Option<String>, Option<&'static str>);

fn too_long(param: &str, max: usize, got: usize) -> OpenAiError {
    (
        format!("Invalid '{param}': string too long. Expected a string with maximum length {max}, but got a string with length {got} instead."),
        Some(param.to_owned()),
        Some("string_above_max_length"),
    )
}

fn too_many(param: &str, max: usize, got: usize) -> OpenAiError {
    (
        format!("Invalid '{param}': array too long. Expected an array with maximum length {max}, but got an array with length {got} instead."),
        Some(param.to_owned()),
        Some("array_above_max_length"),
    )
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn openai_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// OpenAI's reasoning models (o-series, gpt-5 but not gpt-5-chat).
fn reasoning(model: &str) -> bool {
    let id = model.rsplit('/').next().unwrap_or(model);
    let family = |f: &str| id == f || id.starts_with(&format!("{f}-"));
    ["o1", "o3", "o4", "gpt-5"].iter().any(|f| family(f)) && !family("gpt-5-chat")
}

fn openai_refusal(body: &Value) -> Option<OpenAiError> {
    // Required fields are left to the tests' intent (many send a bare `{"model": …}` through);
    // what is checked is what a translation could get wrong.
    let empty = Vec::new();
    let messages = body["messages"].as_array().unwrap_or(&empty);
    for key in ["user", "safety_identifier"] {
        if let Some(v) = body.get(key) {
            if chars(v) > 64 {
                return Some(too_long(key, 64, chars(v)));
            }
        }
    }
    if let Some(stop) = body["stop"].as_array().filter(|s| s.len() > 4) {
        return Some(too_many("stop", 4, stop.len()));
    }
    if let Some(tools) = body["tools"].as_array() {
        if tools.len() > 128 {
            return Some(too_many("tools", 128, tools.len()));
        }
        for (i, t) in tools.iter().enumerate() {
            let param = format!("tools[{i}].function.name");
            let name = t["function"]["name"].as_str().unwrap_or("");
            if name.chars().count() > 64 {
                return Some(too_long(&param, 64, name.chars().count()));
            }
            if !openai_name(name) {
                return Some((
                    format!("Invalid '{param}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."),
                    Some(param),
                    Some("invalid_value"),
                ));
            }
        }
    }
    let model = body["model"].as_str().unwrap_or("");
    if reasoning(model) {
        if body.get("max_tokens").is_some() {
            return Some((
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.".into(),
                Some("max_tokens".into()),
                Some("unsupported_parameter"),
            ));
        }
        if let Some(t) = body["temperature"].as_f64().filter(|t| *t != 1.0) {
            return Some((
                format!("Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported."),
                Some("temperature".into()),
                Some("unsupported_value"),
            ));
        }
    }
    if body["temperature"]
        .as_f64()
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return Some((
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2.".into(),
            Some("temperature".into()),
            Some("decimal_above_max_value"),
        ));
    }
    // Tool calls and their answers: each `tool` message answers a call of the assistant message
    // before the run of tool messages, and every call is answered before anything else.
    let mut open: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "tool" && !open.is_empty() {
            return Some((
                format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", open.join(", ")),
                Some(format!("messages.[{i}].role")),
                None,
            ));
        }
        let content = &m["content"];
        if chars(content) > 10_485_760 {
            return Some(too_long(
                &format!("messages[{i}].content"),
                10_485_760,
                chars(content),
            ));
        }
        match role {
            "assistant" => {
                for (j, call) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                    let id = call["id"].as_str().unwrap_or("");
                    if id.chars().count() > 40 {
                        return Some(too_long(&format!("messages[{i}].tool_calls[{j}].id"), 40, id.chars().count()));
                    }
                    let name = call["function"]["name"].as_str().unwrap_or("");
                    if !openai_name(name) || name.chars().count() > 64 {
                        return Some((
                            format!("Invalid 'messages[{i}].tool_calls[{j}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."),
                            Some(format!("messages[{i}].tool_calls[{j}].function.name")),
                            Some("invalid_value"),
                        ));
                    }
                    open.push(id.to_owned());
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                let Some(k) = open.iter().position(|o| o == id) else {
                    return Some((
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(),
                        Some(format!("messages.[{i}].role")),
                        None,
                    ));
                };
                open.remove(k);
            }
            "system" | "developer" | "user" | "function" => {}
            other => {
                return Some((
                    format!("Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                    Some(format!("messages[{i}].role")),
                    Some("invalid_value"),
                ))
            }
        }
    }
    if !open.is_empty() {
        return Some((
            format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}", open.join(", ")),
            Some("messages".into()),
            None,
        ));
    }
    None
}

fn anthropic_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Text blocks of a `system` or message content: Anthropic refuses empty and whitespace-only
/// ones.
fn empty_text(blocks: &[Value]) -> Option<&'static str> {
    for b in blocks.iter().filter(|b| b["type"] == "text") {
        let text = b["text"].as_str().unwrap_or("");
        if text.is_empty() {
            return Some("text content blocks must be non-empty");
        }
        if text.trim().is_empty() {
            return Some("text content blocks must contain non-whitespace text");
        }
    }
    None
}

fn anthropic_refusal(body: &Value, count_tokens: bool) -> Option<String> {
    let empty = Vec::new();
    let messages = body["messages"].as_array().unwrap_or(&empty);
    if let Some(meta) = body.get("metadata").and_then(Value::as_object) {
        if let Some(k) = meta.keys().find(|k| *k != "user_id") {
            return Some(format!("metadata.{k}: Extra inputs are not permitted"));
        }
        if chars(&meta["user_id"]) > 256 {
            return Some("metadata.user_id: String should have at most 256 characters".into());
        }
    }
    for (i, t) in body["tools"].as_array().into_iter().flatten().enumerate() {
        let name = t["name"].as_str().unwrap_or("");
        // Server tools (web search and the like) carry a `type` other than `custom`.
        if t.get("input_schema").is_some() && (!anthropic_id(name) || name.chars().count() > 128) {
            return Some(format!(
                "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            ));
        }
    }
    let system = match &body["system"] {
        Value::Array(blocks) => blocks.clone(),
        _ => Vec::new(),
    };
    if let Some(e) = empty_text(&system) {
        return Some(format!("system: {e}"));
    }
    if body["temperature"]
        .as_f64()
        .is_some_and(|t| !(0.0..=1.0).contains(&t))
    {
        return Some("temperature: Input should be less than or equal to 1".into());
    }
    for s in body["stop_sequences"].as_array().into_iter().flatten() {
        if s.as_str().unwrap_or("").trim().is_empty() {
            return Some("stop_sequences: each stop sequence must contain non-whitespace".into());
        }
    }
    if body["thinking"]["type"] == "enabled" {
        let budget = body["thinking"]["budget_tokens"].as_u64().unwrap_or(0);
        if budget < 1024 {
            return Some(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                    .into(),
            );
        }
        if !count_tokens && budget >= body["max_tokens"].as_u64().unwrap_or(0) {
            return Some("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".into());
        }
        if matches!(body["tool_choice"]["type"].as_str(), Some("any" | "tool")) {
            return Some("Thinking may not be enabled when tool_choice forces tool use.".into());
        }
        if body["temperature"].as_f64().is_some_and(|t| t != 1.0) {
            return Some("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility".into());
        }
        // Within a tool loop the assistant's turn must give its thinking back, first.
        let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
        let continues = messages.last().is_some_and(|m| {
            m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
        });
        let last_assistant = messages.iter().rev().find(|m| m["role"] == "assistant");
        if let (true, Some(a)) = (continues, last_assistant) {
            let first = a["content"].as_array().and_then(|c| c.first());
            if !first.is_some_and(|b| {
                matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking"))
            }) {
                return Some("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.".into());
            }
        }
    }
    let mut cache_controls = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(&system)
        .filter(|b| b.get("cache_control").is_some())
        .count();
    // The tool uses of the previous assistant message, which the next message must answer.
    let mut calls: Vec<String> = Vec::new();
    let last = messages.len().saturating_sub(1);
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        // Claude Code (2.1.3xx) sends `system` messages within the conversation, which the API
        // takes; they stand outside the tool-use pairing.
        if role == "system" {
            continue;
        }
        if role != "user" && role != "assistant" {
            return Some(format!(
                "messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
            ));
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) if s.is_empty() && !(i == last && role == "assistant") => {
                return Some(format!("messages.{i}: all messages must have non-empty content except for the optional final assistant message"));
            }
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) if b.is_empty() && !(i == last && role == "assistant") => {
                return Some(format!("messages.{i}: all messages must have non-empty content except for the optional final assistant message"));
            }
            Value::Array(b) => b.clone(),
            _ => return Some(format!("messages.{i}.content: Field required")),
        };
        if let Some(e) = empty_text(&blocks) {
            return Some(format!("messages: {e}"));
        }
        cache_controls += blocks
            .iter()
            .filter(|b| b.get("cache_control").is_some())
            .count();
        let results: Vec<&str> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| b["tool_use_id"].as_str().unwrap_or(""))
            .collect();
        let unanswered: Vec<&str> = calls
            .iter()
            .map(String::as_str)
            .filter(|c| !results.contains(c))
            .collect();
        if !unanswered.is_empty() {
            return Some(format!("messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", unanswered.join(", ")));
        }
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("tool_result") => {
                    let id = b["tool_use_id"].as_str().unwrap_or("");
                    if !anthropic_id(id) {
                        return Some(format!("messages.{i}.content.{j}.tool_result.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'"));
                    }
                    if !calls.iter().any(|c| c == id) {
                        return Some(format!("messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."));
                    }
                    if let Some(inner) = b["content"].as_array() {
                        if let Some(e) = empty_text(inner) {
                            return Some(format!("messages: {e}"));
                        }
                    }
                }
                Some("tool_use") if !anthropic_id(b["id"].as_str().unwrap_or("")) => {
                    return Some(format!("messages.{i}.content.{j}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"));
                }
                Some("image") if b["source"]["type"] == "base64" => {
                    let media = b["source"]["media_type"].as_str().unwrap_or("");
                    if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&media) {
                        return Some(format!("messages.{i}.content.{j}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"));
                    }
                }
                _ => {}
            }
        }
        calls = if role == "assistant" {
            blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| b["id"].as_str().unwrap_or("").to_owned())
                .collect()
        } else {
            Vec::new()
        };
        if i == last && role == "assistant" {
            let ends_in_space = blocks
                .last()
                .and_then(|b| b["text"].as_str())
                .is_some_and(|t| t.ends_with(char::is_whitespace));
            if ends_in_space {
                return Some("final assistant content cannot end with trailing whitespace".into());
            }
        }
    }
    if cache_controls > 4 {
        return Some(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {cache_controls}."
        ));
    }
    None
}
