//! Responses clients on the ChatGPT Codex backend (`chatgpt/`): the same API, with the backend's
//! rules. It takes only streamed requests that keep nothing (`store: false`, `stream: true`), an
//! `input` list, and no `previous_response_id` (the gateway keeps conversations itself); it
//! answers with a Responses event stream whose `response.completed` sometimes has an empty
//! `output` after normal `output_item.done` events. A client that did not ask for a stream gets
//! the final response object, gathered from the stream.

use serde_json::{json, Map, Value};

use super::sse::{self, Event};
use super::Target;

/// A Responses request as the backend takes it, for `target`.
pub fn request(body: &Value, target: &Target) -> Result<Value, String> {
    let mut obj: Map<String, Value> = body
        .as_object()
        .cloned()
        .ok_or("the request body must be a JSON object")?;
    obj.insert("model".into(), target.model.into());
    obj.insert("store".into(), false.into());
    obj.insert("stream".into(), true.into());
    obj.remove("previous_response_id");
    if let Some(Value::String(text)) = obj.get("input") {
        let item = json!({"role": "user", "content": [{"type": "input_text", "text": text}]});
        obj.insert("input".into(), json!([item]));
    }
    Ok(Value::Object(obj))
}

/// Follows the backend's event stream: every item as its `output_item.done` gave it, and the
/// terminal response, its `output` filled from them when the backend sent it empty.
#[derive(Debug, Default)]
pub struct StreamState {
    /// Items by output index, as their done events gave them.
    items: Vec<(u64, Value)>,
    /// The terminal response (completed, incomplete or failed), once it came.
    pub last: Option<Value>,
}

impl StreamState {
    /// Reads one event; returns it as the client gets it (the terminal one with its output
    /// filled in).
    pub fn event(&mut self, event: &Event) -> String {
        let Ok(mut v) = serde_json::from_str::<Value>(&event.data) else {
            return String::new();
        };
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "response.output_item.done" => {
                let index = v["output_index"]
                    .as_u64()
                    .unwrap_or(self.items.len() as u64);
                self.items.push((index, v["item"].clone()));
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let output = &mut v["response"]["output"];
                if output.as_array().is_none_or(Vec::is_empty) && !self.items.is_empty() {
                    self.items.sort_by_key(|(i, _)| *i);
                    *output = self.items.iter().map(|(_, item)| item.clone()).collect();
                }
                self.last = Some(v["response"].clone());
            }
            _ => {}
        }
        let name = event.name.as_deref().unwrap_or(&kind);
        sse::named(name, &v)
    }

    /// The final response for a client that asked for none of the events: the terminal
    /// response (a failed one too, with its `error`, as the stream said it), or, when the stream
    /// ended without one, a failed response saying so.
    pub fn whole(&self) -> Value {
        match &self.last {
            Some(r) => r.clone(),
            None => json!({"object": "response", "status": "failed", "output": [],
                           "error": {"code": "server_error", "message": "the upstream's stream ended before its response did"}}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            prefix: "chatgpt",
            model: "gpt-5.4",
            default_max_tokens: None,
        }
    }

    #[test]
    fn a_request_is_made_what_the_backend_takes() {
        let out = request(
            &json!({"model": "chatgpt/gpt-5.4", "input": "hi", "store": true,
                    "previous_response_id": "resp_1", "tools": [{"type": "web_search"}]}),
            &target(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"model": "gpt-5.4", "store": false, "stream": true, "tools": [{"type": "web_search"}],
                   "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]})
        );
    }

    #[test]
    fn a_chat_tool_loop_becomes_responses_items_and_calls_come_back_as_chunks() {
        let chat = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
        ], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
           "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        let r = from_chat(&chat).unwrap();
        assert_eq!(r["instructions"], "Be brief.");
        assert_eq!(
            r["input"][1],
            json!({"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
        );
        assert_eq!(
            r["input"][2],
            json!({"type": "function_call_output", "call_id": "call_1", "output": "18C"})
        );
        assert_eq!(r["tools"][0]["name"], "get_weather");
        assert_eq!(
            r["tool_choice"],
            json!({"type": "function", "name": "get_weather"})
        );

        let mut s = ChatStream::new("gpt-5.4", false);
        let ev = |data: Value| Event {
            name: None,
            data: data.to_string(),
        };
        s.event(&ev(
            json!({"type": "response.created", "response": {"id": "resp_1"}}),
        ));
        let added = s.event(&ev(json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": ""}})));
        assert!(added.contains("\"call_2\""), "{added}");
        let args = s.event(&ev(json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{}"})));
        assert!(args.contains("\"arguments\":\"{}\""), "{args}");
        let end = s.event(&ev(
            json!({"type": "response.completed", "response": {"id": "resp_1", "output": []}}),
        ));
        assert!(end.contains("\"finish_reason\":\"tool_calls\""), "{end}");
        assert!(end.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn an_empty_final_output_is_filled_from_the_done_items() {
        let mut s = StreamState::default();
        let ev = |data: Value| Event {
            name: data["type"].as_str().map(str::to_owned),
            data: data.to_string(),
        };
        let item = json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]});
        s.event(&ev(
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        ));
        let out = s.event(&ev(
            json!({"type": "response.completed", "response": {"id": "resp_x", "status": "completed", "output": []}}),
        ));
        assert!(out.starts_with("event: response.completed\n"), "{out}");
        assert_eq!(s.whole()["output"], json!([item]));
        assert_eq!(s.whole()["id"], "resp_x");
        let cut = StreamState::default().whole();
        assert_eq!(cut["status"], "failed");
        assert_eq!(cut["error"]["code"], "server_error");
    }
}

/// A chat-completions request as a Responses request (chat and Messages clients on the Codex
/// backend): system messages become `instructions`, the rest input items.
pub fn from_chat(chat: &Value) -> Result<Value, String> {
    let (obj, list) = super::with_messages(chat)?;
    let text_of = |content: &Value| -> String {
        match content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        }
    };
    let mut instructions: Vec<String> = Vec::new();
    let mut input: Vec<Value> = Vec::new();
    for m in list {
        match m["role"].as_str() {
            Some("system" | "developer") => instructions.push(text_of(&m["content"])),
            Some("user") => {
                let parts: Vec<Value> = match &m["content"] {
                    Value::String(s) => vec![json!({"type": "input_text", "text": s})],
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| match p["type"].as_str() {
                            Some("text") => Some(json!({"type": "input_text", "text": p["text"]})),
                            Some("image_url") => Some(json!({"type": "input_image",
                                "image_url": p["image_url"]["url"].as_str().or(p["image_url"].as_str())})),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                input.push(json!({"role": "user", "content": parts}));
            }
            Some("assistant") => {
                let text = text_of(&m["content"]);
                if !text.is_empty() {
                    input.push(json!({"role": "assistant", "content": [{"type": "output_text", "text": text}]}));
                }
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    input.push(json!({"type": "function_call", "call_id": call["id"],
                                      "name": call["function"]["name"],
                                      "arguments": call["function"]["arguments"].as_str().unwrap_or("{}")}));
                }
            }
            Some("tool") => input.push(json!({"type": "function_call_output",
                                             "call_id": m["tool_call_id"], "output": text_of(&m["content"])})),
            other => return Err(format!("unsupported message role `{}`", other.unwrap_or("none"))),
        }
    }
    let mut out = json!({"input": input});
    if !instructions.is_empty() {
        out["instructions"] = instructions.join("\n\n").into();
    }
    let tools: Vec<Value> = obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let f = &t["function"];
            let mut tool = json!({"type": "function", "name": f["name"].as_str()?,
                                  "parameters": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
            if let Some(d) = f["description"].as_str() {
                tool["description"] = d.into();
            }
            Some(tool)
        })
        .collect();
    if !tools.is_empty() {
        out["tools"] = tools.into();
        match obj.get("tool_choice") {
            Some(Value::String(c)) => out["tool_choice"] = c.as_str().into(),
            Some(Value::Object(c)) => {
                out["tool_choice"] = json!({"type": "function", "name": c["function"]["name"]});
            }
            _ => {}
        }
        if let Some(p) = obj.get("parallel_tool_calls").filter(|p| p.is_boolean()) {
            out["parallel_tool_calls"] = p.clone();
        }
    }
    if let Some(effort) = obj.get("reasoning_effort").and_then(Value::as_str) {
        out["reasoning"] = json!({"effort": effort});
    }
    if let Some(schema) = obj
        .get("response_format")
        .filter(|f| f["type"] == "json_schema")
        .map(|f| &f["json_schema"])
    {
        let mut format = json!({"type": "json_schema", "name": schema["name"].as_str().unwrap_or("response"),
                                "schema": schema["schema"]});
        if let Some(strict) = schema["strict"].as_bool() {
            format["strict"] = strict.into();
        }
        out["text"] = json!({"format": format});
    }
    Ok(out)
}

/// A Responses usage object as chat usage.
fn chat_usage(u: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let (prompt, completion) = (n(&u["input_tokens"]), n(&u["output_tokens"]));
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": n(&u["input_tokens_details"]["cached_tokens"])},
           "completion_tokens_details": {"reasoning_tokens": n(&u["output_tokens_details"]["reasoning_tokens"])}})
}

/// How a response ended, as a chat `finish_reason`.
fn finish_of(response: &Value, calls: bool) -> &'static str {
    match response["incomplete_details"]["reason"].as_str() {
        Some("max_output_tokens") => "length",
        Some("content_filter") => "content_filter",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// A final Responses object as a chat completion.
pub fn to_chat(response: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in response["output"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                for part in item["content"].as_array().into_iter().flatten() {
                    text.push_str(
                        part["text"]
                            .as_str()
                            .or(part["refusal"].as_str())
                            .unwrap_or_default(),
                    );
                }
            }
            Some("function_call") => calls.push(json!({"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]}})),
            Some("reasoning") => {
                for s in item["summary"].as_array().into_iter().flatten() {
                    reasoning.push_str(s["text"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        message["tool_calls"] = calls.clone().into();
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    json!({"id": response["id"], "object": "chat.completion", "created": response["created_at"].as_u64().unwrap_or(0),
           "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish_of(response, !calls.is_empty())}],
           "usage": chat_usage(&response["usage"])})
}

/// The backend's Responses events as chat chunks (chat and Messages clients).
#[derive(Debug, Default)]
pub struct ChatStream {
    model: String,
    /// Whether the client asked for a usage chunk (`stream_options.include_usage`).
    include_usage: bool,
    id: Value,
    /// Output index → tool-call index, for function calls.
    calls: Vec<(u64, usize)>,
    done: bool,
}

impl ChatStream {
    pub fn new(model: &str, include_usage: bool) -> ChatStream {
        ChatStream {
            model: model.to_owned(),
            include_usage,
            ..ChatStream::default()
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        sse::data(
            &json!({"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    }

    /// The chat chunks for one Responses event.
    pub fn event(&mut self, event: &Event) -> String {
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            return String::new();
        };
        if self.done {
            return String::new();
        }
        match v["type"].as_str().unwrap_or_default() {
            "response.created" => {
                self.id = v["response"]["id"].clone();
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            "response.output_text.delta" => self.chunk(json!({"content": v["delta"]}), Value::Null),
            "response.reasoning_summary_text.delta" => {
                self.chunk(json!({"reasoning_content": v["delta"]}), Value::Null)
            }
            "response.output_item.added" if v["item"]["type"] == "function_call" => {
                let index = self.calls.len();
                self.calls
                    .push((v["output_index"].as_u64().unwrap_or(0), index));
                let item = &v["item"];
                self.chunk(json!({"tool_calls": [{"index": index, "id": item["call_id"], "type": "function",
                                                  "function": {"name": item["name"], "arguments": ""}}]}), Value::Null)
            }
            "response.function_call_arguments.delta" => {
                let at = v["output_index"].as_u64().unwrap_or(0);
                let index = self
                    .calls
                    .iter()
                    .find(|(o, _)| *o == at)
                    .map_or(0, |(_, i)| *i);
                self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": v["delta"]}}]}), Value::Null)
            }
            "response.completed" | "response.incomplete" => {
                self.done = true;
                let response = &v["response"];
                let mut out = self.chunk(
                    json!({}),
                    finish_of(response, !self.calls.is_empty()).into(),
                );
                if self.include_usage {
                    out.push_str(&sse::data(&json!({"id": self.id, "object": "chat.completion.chunk", "created": 0,
                        "model": self.model, "choices": [], "usage": chat_usage(&response["usage"])})));
                }
                out.push_str("data: [DONE]\n\n");
                out
            }
            "response.failed" | "error" => {
                self.done = true;
                let e = if v["type"] == "error" {
                    &v
                } else {
                    &v["response"]["error"]
                };
                sse::data(
                    &json!({"error": {"message": e["message"], "type": "server_error", "param": null, "code": e["code"]}}),
                )
            }
            _ => String::new(),
        }
    }
}
