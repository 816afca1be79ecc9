//! Property tests: any JSON (random, and random in the shape of chat and Messages requests,
//! responses and stream events) goes through the translators without a panic, and what comes
//! out is what a client or an upstream can read: a JSON object with the model set, a JSON
//! document, SSE whose every event carries JSON. The SSE framer gives the same events however the
//! stream is split.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::sse::{Event, Framer};
use super::*;
use crate::usage::Piece;

/// Keys and string values the translators look at, so random documents reach deep paths.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "source",
    "media_type",
    "data",
    "tool_calls",
    "tools",
    "tool_choice",
    "function",
    "name",
    "arguments",
    "input",
    "input_schema",
    "parameters",
    "id",
    "tool_use_id",
    "tool_call_id",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "system",
    "stop",
    "stop_sequences",
    "temperature",
    "top_p",
    "thinking",
    "budget_tokens",
    "signature",
    "cache_control",
    "response_format",
    "parallel_tool_calls",
    "disable_parallel_tool_use",
    "metadata",
    "user",
    "choices",
    "delta",
    "message",
    "finish_reason",
    "stop_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "index",
    "content_block",
    "error",
    "n",
    "reasoning_effort",
    "partial_json",
];
const WORDS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "text",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "function",
    "thinking",
    "redacted_thinking",
    "document",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "signature_delta",
    "ping",
    "error",
    "auto",
    "any",
    "none",
    "required",
    "stop",
    "length",
    "tool_calls",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "base64",
    "url",
    "ephemeral",
    "json_schema",
    "json_object",
    "data:image/png;base64,AAAA",
    "https://x.test/a.png",
    "",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

/// Any JSON, with keys mostly from `KEYS`.
fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 8, |inner| {
        let key = prop_oneof![
            4 => prop::sample::select(KEYS).prop_map(str::to_owned),
            1 => "[a-z_]{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A request in roughly the shape of a chat or Messages request, with random parts.
fn request_like() -> impl Strategy<Value = Value> {
    (
        json_value(),
        prop::collection::vec(json_value(), 0..5),
        json_value(),
        json_value(),
    )
        .prop_map(|(extra, messages, tools, system)| {
            let mut v = json!({"model": "client-model", "messages": messages});
            if let Value::Object(extra) = extra {
                for (k, x) in extra {
                    if k != "messages" {
                        v[k] = x;
                    }
                }
            }
            v["tools"] = tools;
            v["system"] = system;
            v
        })
}

fn assert_request(out: Result<(Bytes, bool), String>) {
    if let Ok((bytes, _)) = out {
        let v: Value = serde_json::from_slice(&bytes).expect("translated request is JSON");
        assert!(v.is_object(), "{v}");
        assert_eq!(v["model"], "upstream-model", "{v}");
    }
}

/// Every event of an SSE text carries JSON data (or is `[DONE]`).
fn assert_sse(text: &str) {
    let mut framer = Framer::default();
    for event in framer.push(text.as_bytes()) {
        assert!(
            event.data == "[DONE]" || serde_json::from_str::<Value>(&event.data).is_ok(),
            "event data is not JSON: {:?}",
            event.data
        );
    }
    assert!(
        framer.pending().is_empty(),
        "an event was left open: {text:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn requests_translate_to_json_with_the_model_or_a_clear_error(
        v in prop_oneof![json_value(), request_like()]
    ) {
        let body = v.to_string();
        for direction in [Direction::ChatToMessages, Direction::MessagesToChat] {
            assert_request(direction.request(body.as_bytes(), &test_target(direction, "upstream-model")).map(|t| (t.body, t.include_usage)));
        }
    }

    #[test]
    fn any_bytes_as_a_request_body_get_an_answer_not_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        for direction in [Direction::ChatToMessages, Direction::MessagesToChat] {
            assert_request(direction.request(&bytes, &test_target(direction, "upstream-model")).map(|t| (t.body, t.include_usage)));
        }
    }

    #[test]
    fn whole_responses_translate_to_json(
        v in json_value(),
        status in prop::sample::select(vec![200u16, 400, 429, 500, 529]),
    ) {
        let raw = v.to_string().into_bytes();
        for direction in [Direction::ChatToMessages, Direction::MessagesToChat] {
            let mut t = ResponseTranslator::new(direction, "client-model", &Translated::for_test(true));
            t.status = status;
            let out = t
                .body(&Piece::Whole(raw.clone(), Some(v.clone())), None, true)
                .expect("a whole body always has an answer");
            let doc: Value = serde_json::from_slice(&out).expect("the answer is JSON");
            if status >= 400 {
                prop_assert!(doc.get("error").is_some(), "{}", doc);
            }
        }
    }

    #[test]
    fn stream_events_translate_to_sse_with_json_data(
        events in prop::collection::vec((prop::option::of(prop::sample::select(WORDS)), json_value()), 0..12),
        include_usage in any::<bool>(),
    ) {
        for direction in [Direction::ChatToMessages, Direction::MessagesToChat] {
            let mut t = ResponseTranslator::new(direction, "client-model", &Translated::for_test(include_usage));
            t.status = 200;
            let events: Vec<Event> = events
                .iter()
                .map(|(name, data)| Event { name: name.map(str::to_owned), data: data.to_string() })
                .collect();
            let out = t.body(&Piece::Events(events), None, false).unwrap_or_default();
            assert_sse(std::str::from_utf8(&out).expect("SSE is text"));
        }
    }

    #[test]
    fn sse_framing_does_not_depend_on_where_the_stream_is_split(
        text in "((event: [a-z_]{1,8}\n)?(data: [ -~]{0,16}\n){1,2}(\n|\r\n)|: [a-z]{0,5}\n\n){0,8}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let bytes = text.as_bytes();
        let mut whole = Framer::default();
        let expected = whole.push(bytes);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut split = Framer::default();
        let mut got = Vec::new();
        let mut from = 0;
        for to in points.into_iter().chain([bytes.len()]) {
            got.extend(split.push(&bytes[from..to]));
            from = to;
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(split.pending(), whole.pending());
    }
}
