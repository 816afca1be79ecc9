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
