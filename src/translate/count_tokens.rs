//! `POST /v1/messages/count_tokens` for a model whose provider has no such endpoint (every
//! OpenAI-interface one): the gateway estimates, as the clients that call it (Claude Code) only
//! need an order of magnitude to decide when to compact a conversation.
//!
//! The estimate: the bytes of every text the model would read (system, messages, tool
//! definitions, tool inputs and results) divided by 4, rounded up, plus 1,600 tokens per image
//! or document (Anthropic's figure for an image of about 1,100 × 1,100 pixels). It counts what
//! Anthropic would count, not what the OpenAI model's tokenizer would.

use serde_json::{json, Value};

/// Bytes per token of the estimate.
const BYTES_PER_TOKEN: usize = 4;
/// Tokens counted for each image or document.
const TOKENS_PER_ATTACHMENT: usize = 1_600;

/// The `count_tokens` answer for a Messages request body.
pub fn estimate(request: &Value) -> Value {
    let mut bytes = 0;
    let mut attachments = 0;
    walk(&request["system"], &mut bytes, &mut attachments);
    walk(&request["messages"], &mut bytes, &mut attachments);
    for tool in request["tools"].as_array().into_iter().flatten() {
        bytes += tool.to_string().len();
    }
    json!({"input_tokens": bytes.div_ceil(BYTES_PER_TOKEN) + attachments * TOKENS_PER_ATTACHMENT})
}

/// Adds up the text of `v` (strings, and the `text`, `thinking` and tool fields of blocks).
fn walk(v: &Value, bytes: &mut usize, attachments: &mut usize) {
    match v {
        Value::String(s) => *bytes += s.len(),
        Value::Array(items) => items.iter().for_each(|i| walk(i, bytes, attachments)),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("image" | "document") => *attachments += 1,
            Some("tool_use") => *bytes += o.get("input").map_or(0, |i| i.to_string().len()),
            _ => {
                for key in ["content", "text", "thinking"] {
                    if let Some(inner) = o.get(key) {
                        walk(inner, bytes, attachments);
                    }
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_a_token_per_four_bytes_and_attachments_a_fixed_amount() {
        let request = json!({
            "system": "12345678",
            "messages": [
                {"role": "user", "content": "abcd"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "xyz"}]},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ]}
            ]
        });
        // 8 + 4 + 7 (`{"a":1}`) + 3 = 22 bytes → 6 tokens, + one image.
        assert_eq!(estimate(&request)["input_tokens"], 6 + 1_600);
        assert_eq!(estimate(&json!({"messages": []}))["input_tokens"], 0);
    }
}
