//! `routing.route_on_user_only`: the router is asked when the user speaks, not when an agent
//! loop continues. A request whose conversation ends in tool results or assistant output (or in
//! a user message that only carries what a harness injected) keeps the model its conversation
//! was last routed to.
//!
//! Which conversation a request continues: its `X-Model-Affinity` when it has one, otherwise
//! what stays the same across its turns: the system prompt, the tools' names and the first user
//! message (the prefix a provider's prompt cache keys on too).

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

/// Text that Claude Code puts in user messages next to tool results: written by the harness,
/// not said by the user, so a message of only these is no new turn.
const INJECTED: [(&str, &str); 2] = [
    ("<system-reminder>", "</system-reminder>"),
    ("<user-prompt-submit-hook>", "</user-prompt-submit-hook>"),
];

/// Whether `messages` (Chat or Messages shape) end in something the user said: a user message
/// with text beyond injected envelopes, or with an attachment (an image, a document, a file).
/// Tool results, in a `tool` message or as Messages `tool_result` blocks, are not the user.
pub fn is_user_turn(messages: &Value) -> bool {
    let Some(last) = messages.as_array().and_then(|m| m.last()) else {
        return false;
    };
    if last["role"] != "user" {
        return false;
    }
    let mut text = String::new();
    match &last["content"] {
        Value::String(s) => text.push_str(s),
        Value::Array(parts) => {
            for part in parts {
                match part["type"].as_str() {
                    Some("text") => text.push_str(part["text"].as_str().unwrap_or_default()),
                    Some("tool_result") | None => {}
                    // image, image_url, document, file, input_audio: the user attached it.
                    Some(_) => return true,
                }
            }
        }
        _ => {}
    }
    !without_injected(&text).trim().is_empty()
}

/// `text` without the harness's envelopes; one left open runs to the end.
fn without_injected(text: &str) -> String {
    let mut rest = text.to_owned();
    for (open, close) in INJECTED {
        while let Some(start) = rest.find(open) {
            let body = start + open.len();
            let end = rest[body..]
                .find(close)
                .map_or(rest.len(), |i| body + i + close.len());
            rest.replace_range(start..end, "");
        }
    }
    rest
}

/// The conversation `request` continues, without an explicit session id: a hash of its system
/// prompt, its tools' names and its first user message. `None` when it has no user message to
/// anchor on.
pub fn conversation_of(request: &Value, messages: &Value) -> Option<u64> {
    let messages = messages.as_array()?;
    let first_user = messages.iter().find(|m| m["role"] == "user")?;
    let mut h = DefaultHasher::new();
    // Messages' top-level `system`, or Chat's system and developer messages.
    request["system"].to_string().hash(&mut h);
    for m in messages
        .iter()
        .filter(|m| m["role"] == "system" || m["role"] == "developer")
    {
        m["content"].to_string().hash(&mut h);
    }
    for tool in request["tools"].as_array().into_iter().flatten() {
        tool["name"]
            .as_str()
            .or(tool["function"]["name"].as_str())
            .hash(&mut h);
    }
    first_user["content"].to_string().hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_user_message_with_text_or_an_attachment_is_a_turn() {
        assert!(is_user_turn(&json!([{"role": "user", "content": "hi"}])));
        assert!(is_user_turn(&json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
        ]}])));
        // Messages: new text next to tool results opens a turn.
        assert!(is_user_turn(&json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
            {"type": "text", "text": "now summarise"}
        ]}])));
    }

    #[test]
    fn tool_results_assistant_output_and_injected_text_are_not() {
        assert!(!is_user_turn(&json!([])));
        assert!(!is_user_turn(&json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "t1"}]},
            {"role": "tool", "tool_call_id": "t1", "content": "42"}
        ])));
        assert!(!is_user_turn(
            &json!([{"role": "assistant", "content": "partial"}])
        ));
        assert!(!is_user_turn(&json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
            {"type": "text", "text": "<system-reminder>todo list is empty</system-reminder>\n"}
        ]}])));
        assert!(!is_user_turn(&json!([{"role": "user", "content":
            "<user-prompt-submit-hook>checked</user-prompt-submit-hook> <system-reminder>cut off"
        }])));
    }

    #[test]
    fn a_conversation_keeps_its_key_across_turns() {
        let request = json!({"system": "be brief", "tools": [{"name": "grep"}]});
        let turn1 = json!([{"role": "user", "content": "fix the bug"}]);
        let turn2 = json!([
            {"role": "user", "content": "fix the bug"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "grep", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]}
        ]);
        let key = conversation_of(&request, &turn1);
        assert!(key.is_some());
        assert_eq!(key, conversation_of(&request, &turn2));
        let other = json!([{"role": "user", "content": "write a poem"}]);
        assert_ne!(key, conversation_of(&request, &other));
        let tools = json!({"system": "be brief", "tools": [{"name": "grep"}, {"name": "edit"}]});
        assert_ne!(key, conversation_of(&tools, &turn1));
        assert_eq!(conversation_of(&request, &json!([])), None);
    }
}
