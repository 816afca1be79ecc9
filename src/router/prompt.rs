//! What the router model is asked, and how its answer is read. Pure: no I/O.
//!
//! A router model only routes well when it sees the prompt it was trained on, byte for byte:
//! Plano-Orchestrator answers `{"route": ["name", …]}` to one template, Arch-Router answers
//! `{"route": "name"}` (or `"other"`) to another. The two templates are the models' published
//! input formats (`orchestrator_v1.txt`, `arch_router_v1.txt`), filled the way Plano fills them:
//! the routes as one JSON object per line (Python-style spacing) or as a compact JSON array, the
//! conversation as a pretty-printed (4 spaces) or compact JSON array of `{role, content}`. The
//! golden files in tests/fixtures/router/ pin the bytes.

use serde::Serialize;
use serde_json::{json, Value};

const ORCHESTRATOR_V1: &str = include_str!("orchestrator_v1.txt");
const ARCH_ROUTER_V1: &str = include_str!("arch_router_v1.txt");

/// Messages looked at, newest first, before the token budget (Plano-Orchestrator).
const MAX_TURNS: usize = 16;
/// Marks where an overlong user message was cut.
const TRIM_MARKER: &str = "…";
/// Tokens are estimated as bytes / 4, as Plano does (no tokenizer on the request path).
const BYTES_PER_TOKEN: usize = 4;

/// Which template the router model was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Plano-Orchestrator: several routes, `{"route": [..]}`.
    Orchestrator,
    /// Arch-Router (archgw v0.3): one route, `{"route": "name"}` or `"other"`.
    ArchRouter,
}

impl Form {
    /// The form a router model's name implies: Arch-Router models by name, else the
    /// orchestrator (Plano's default router).
    pub fn for_model(model: &str) -> Form {
        let lower = model.to_ascii_lowercase();
        if lower.contains("arch-router") || lower.contains("arch_router") {
            Form::ArchRouter
        } else {
            Form::Orchestrator
        }
    }

    /// Plano's default token budget of each form's prompt.
    pub fn default_context_length(self) -> usize {
        match self {
            Form::Orchestrator => 8192,
            Form::ArchRouter => 2048,
        }
    }

    fn template(self) -> &'static str {
        match self {
            Form::Orchestrator => ORCHESTRATOR_V1,
            Form::ArchRouter => ARCH_ROUTER_V1,
        }
    }
}

/// A route as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub name: &'a str,
    pub description: &'a str,
}

/// One message of the conversation, as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
}

/// The text of a message's `content`: a string, or its text parts (chat `text`, Messages `text`
/// blocks) joined by newlines.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The turns the router may see: messages with text, without system, developer and tool
/// messages (Arch-Router keeps developer messages, as archgw did), in order.
pub fn turns(messages: &Value, form: Form) -> Vec<Turn> {
    let Some(messages) = messages.as_array() else {
        return Vec::new();
    };
    messages
        .iter()
        .filter_map(|m| {
            let role = m["role"].as_str()?;
            let dropped = match form {
                Form::Orchestrator => matches!(role, "system" | "developer" | "tool"),
                Form::ArchRouter => matches!(role, "system" | "tool"),
            };
            let content = text_of(&m["content"]);
            (!dropped && !content.is_empty()).then(|| Turn {
                role: role.to_owned(),
                content,
            })
        })
        .collect()
}

/// The newest turns that fit `budget` tokens with the template; an overflowing user turn is cut
/// in the middle (orchestrator) or kept whole (Arch-Router); never empty when `turns` is not.
fn select(turns: &[Turn], form: Form, budget: usize) -> Vec<Turn> {
    let turns = match form {
        Form::Orchestrator => &turns[turns.len().saturating_sub(MAX_TURNS)..],
        Form::ArchRouter => turns,
    };
    let mut used = form.template().len() / BYTES_PER_TOKEN;
    let mut picked: Vec<Turn> = Vec::new();
    for turn in turns.iter().rev() {
        let cost = turn.content.len() / BYTES_PER_TOKEN;
        if used + cost > budget {
            if turn.role == "user" {
                match form {
                    Form::Orchestrator => {
                        let left = budget.saturating_sub(used);
                        if left > 0 {
                            picked.push(Turn {
                                role: turn.role.clone(),
                                content: trim_middle(&turn.content, left * BYTES_PER_TOKEN),
                            });
                        }
                    }
                    Form::ArchRouter => picked.push(turn.clone()),
                }
            }
            break;
        }
        used += cost;
        picked.push(turn.clone());
    }
    if picked.is_empty() {
        picked.extend(turns.last().cloned());
    }
    picked.reverse();
    picked
}

/// `s` cut to at most `max` bytes: about 60% of the room from its start, the rest from its end,
/// the marker between; on character boundaries.
fn trim_middle(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let floor = |mut i: usize| {
        while i > 0 && !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    if max <= TRIM_MARKER.len() {
        return s[..floor(max)].to_owned();
    }
    let room = max - TRIM_MARKER.len();
    let head = floor(room * 3 / 5);
    let mut tail = s.len() - (room - head);
    while tail < s.len() && !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{TRIM_MARKER}{}", &s[..head], &s[tail..])
}

/// JSON with a space after `:` and `,`, as Python's `json.dumps` writes it.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        comma(w, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        comma(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// `, ` before every element but the first.
fn comma<W: ?Sized + std::io::Write>(w: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

fn write_json<F: serde_json::ser::Formatter>(value: &impl Serialize, formatter: F) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing plain strings and maps into memory cannot fail.
    let _ = value.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

// Structs, not `json!` maps: the key order is part of the trained format.
#[derive(Serialize)]
struct OrchestratorRoute<'a> {
    name: &'a str,
    description: &'a str,
    parameters: NoParameters,
}

/// `{"type": "object", "properties": {}, "required": []}`
#[derive(Serialize)]
struct NoParameters {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: Empty,
    required: [(); 0],
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct ArchRoute<'a> {
    name: &'a str,
    description: &'a str,
}

/// The `<routes>` block.
fn routes_block(routes: &[Route<'_>], form: Form) -> String {
    match form {
        Form::Orchestrator => routes
            .iter()
            .map(|r| {
                write_json(
                    &OrchestratorRoute {
                        name: r.name,
                        description: r.description,
                        parameters: NoParameters {
                            kind: "object",
                            properties: Empty {},
                            required: [],
                        },
                    },
                    Spaced,
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Form::ArchRouter => {
            let list: Vec<ArchRoute<'_>> = routes
                .iter()
                .map(|r| ArchRoute {
                    name: r.name,
                    description: r.description,
                })
                .collect();
            serde_json::to_string(&list).unwrap_or_default()
        }
    }
}

/// The router's prompt for `routes` and the client's `messages` (chat or Messages shape),
/// within `budget` tokens.
pub fn prompt(form: Form, routes: &[Route<'_>], messages: &Value, budget: usize) -> String {
    let conversation = select(&turns(messages, form), form, budget);
    let conversation = match form {
        Form::Orchestrator => write_json(
            &conversation,
            serde_json::ser::PrettyFormatter::with_indent(b"    "),
        ),
        Form::ArchRouter => serde_json::to_string(&conversation).unwrap_or_default(),
    };
    fill(form.template(), &routes_block(routes, form), &conversation)
}

/// The template with its two placeholders filled, each once (a route description that happens
/// to contain `{conversation}` stays as written).
fn fill(template: &str, routes: &str, conversation: &str) -> String {
    let mut out = String::with_capacity(template.len() + routes.len() + conversation.len());
    let mut rest = template;
    for (placeholder, value) in [("{routes}", routes), ("{conversation}", conversation)] {
        if let Some(at) = rest.find(placeholder) {
            out.push_str(&rest[..at]);
            out.push_str(value);
            rest = &rest[at + placeholder.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// The chat request sent to the router model.
pub fn request(router_model: &str, prompt: String) -> Value {
    json!({
        "model": router_model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.01,
    })
}

/// The routes a router's answer names, best first. Read leniently: code fences, single quotes,
/// literal `\n`s and text around the JSON object are tolerated; `{"route": "name"}` and
/// `{"route": ["a", "b"]}` both count; empty names and `other` do not. `None`: no JSON object
/// with a `route` could be read (a failure, unlike an empty list, which means "no route").
pub fn routes_in(answer: &str) -> Option<Vec<String>> {
    let cleaned = answer.replace('\'', "\"").replace("\\n", "");
    let object = match (cleaned.find('{'), cleaned.rfind('}')) {
        (Some(start), Some(end)) if start < end => &cleaned[start..=end],
        _ => return None,
    };
    let v: Value = serde_json::from_str(object).ok()?;
    let names: Vec<String> = match v.get("route")? {
        Value::String(name) => vec![name.clone()],
        Value::Array(names) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        Value::Null => Vec::new(),
        _ => return None,
    };
    Some(
        names
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty() && n != "other")
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn golden(name: &str, actual: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/router")
            .join(name);
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(actual, expected, "{name}");
    }

    fn conversation() -> Value {
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello! How can I assist you today?"},
            {"role": "user", "content": [
                {"type": "text", "text": "given the image In style of Andy Warhol,"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {"type": "text", "text": "portrait of Bart and Lisa Simpson"}
            ]}
        ])
    }

    const ROUTES: &[Route<'static>] = &[
        Route {
            name: "Image generation",
            description: "generating image",
        },
        Route {
            name: "code generation",
            description: "generating new code snippets, functions, or boilerplate based on user prompts or requirements",
        },
    ];

    #[test]
    fn the_orchestrator_prompt_is_byte_for_byte_its_template() {
        let p = prompt(Form::Orchestrator, ROUTES, &conversation(), 8192);
        golden("orchestrator_v1.prompt.txt", &p);
    }

    #[test]
    fn the_arch_router_prompt_is_byte_for_byte_its_template() {
        let p = prompt(Form::ArchRouter, ROUTES, &conversation(), 2048);
        golden("arch_router_v1.prompt.txt", &p);
    }

    #[test]
    fn the_form_follows_the_router_models_name() {
        assert_eq!(
            Form::for_model("hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M"),
            Form::ArchRouter
        );
        assert_eq!(
            Form::for_model("katanemo/Arch-Router-1.5B"),
            Form::ArchRouter
        );
        assert_eq!(Form::for_model("Plano-Orchestrator"), Form::Orchestrator);
        assert_eq!(Form::for_model("plano-orchestrator-4b"), Form::Orchestrator);
    }

    #[test]
    fn only_turns_with_text_from_the_conversation_are_shown() {
        let messages = json!([
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": "what is 2+2"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t"}]},
            {"role": "tool", "content": "4", "tool_call_id": "t"},
            {"role": "assistant", "content": [{"type": "text", "text": "4"}, {"type": "tool_use", "id": "x"}]}
        ]);
        let roles =
            |form| -> Vec<String> { turns(&messages, form).into_iter().map(|t| t.role).collect() };
        assert_eq!(roles(Form::Orchestrator), ["user", "assistant"]);
        assert_eq!(roles(Form::ArchRouter), ["developer", "user", "assistant"]);
    }

    #[test]
    fn the_newest_turns_fit_the_budget_and_an_overflowing_user_turn_is_cut_in_the_middle() {
        let long = format!("START {} END", "x".repeat(40_000));
        let messages = json!([
            {"role": "user", "content": "an old question"},
            {"role": "assistant", "content": "an old answer"},
            {"role": "user", "content": long},
        ]);
        let budget = 1000;
        let picked = select(
            &turns(&messages, Form::Orchestrator),
            Form::Orchestrator,
            budget,
        );
        assert_eq!(picked.len(), 1, "older turns do not fit");
        let kept = &picked[0].content;
        assert!(kept.starts_with("START ") && kept.ends_with(" END") && kept.contains('…'));
        let room = (budget - ORCHESTRATOR_V1.len() / 4) * 4;
        assert!(kept.len() <= room, "{} > {room}", kept.len());
        // Arch-Router keeps the user turn whole, as archgw did.
        let picked = select(
            &turns(&messages, Form::ArchRouter),
            Form::ArchRouter,
            budget,
        );
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].content.len(), long.len());
    }

    #[test]
    fn only_the_last_16_turns_are_considered() {
        let messages: Vec<Value> = (0..40)
            .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}")}))
            .collect();
        let picked = select(
            &turns(&json!(messages), Form::Orchestrator),
            Form::Orchestrator,
            8192,
        );
        assert_eq!(picked.len(), 16);
        assert_eq!(picked[0].content, "turn 24");
        assert_eq!(picked[15].content, "turn 39");
    }

    #[test]
    fn middle_trimming_respects_character_boundaries() {
        let s = "é".repeat(100);
        for max in [0, 1, 2, 3, 4, 5, 10, 57, 199] {
            let t = trim_middle(&s, max);
            assert!(t.len() <= max, "{max}: {}", t.len());
        }
        assert_eq!(trim_middle("short", 10), "short");
    }

    #[test]
    fn answers_are_read_leniently() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (
                r#"{"route": ["code generation"]}"#,
                Some(&["code generation"]),
            ),
            (
                r#"{"route": "Image generation"}"#,
                Some(&["Image generation"]),
            ),
            (r#"{"route": ["a", "b"]}"#, Some(&["a", "b"])),
            ("```json\n{'route': ['a']}\n```", Some(&["a"])),
            (r#"Sure! {"route": "a"}\n"#, Some(&["a"])),
            (r#"{"route": "other"}"#, Some(&[])),
            (r#"{"route": []}"#, Some(&[])),
            (r#"{"route": ["", " "]}"#, Some(&[])),
            (r#"{"route": null}"#, Some(&[])),
            ("I cannot decide", None),
            (r#"{"routes": ["a"]}"#, None),
            (r#"{"route": 7}"#, None),
            ("", None),
        ];
        for (answer, want) in cases {
            let got = routes_in(answer);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{answer:?}");
        }
    }

    #[test]
    fn the_request_asks_the_router_model_with_one_user_message() {
        let r = request("Arch-Router", "PROMPT".into());
        assert_eq!(
            r,
            json!({"model": "Arch-Router", "messages": [{"role": "user", "content": "PROMPT"}], "temperature": 0.01})
        );
    }
}
