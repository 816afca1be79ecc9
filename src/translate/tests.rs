//! Golden tests: fixtures in tests/fixtures/translate/, one input and one expected output per
//! direction. Streams are fed split at every possible byte boundary (as TCP reads may split
//! them) and must give the same events. `SWITCHYARD_BLESS=1` rewrites missing expectations.

use std::path::PathBuf;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use serde_json::Value;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/translate")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Compares with the expected file, or writes it when blessing and it does not exist yet.
fn golden(name: &str, actual: &str, normalize: fn(&str) -> Value) {
    let path = fixture(name);
    if !path.exists() && std::env::var_os("SWITCHYARD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = read(name);
    assert_eq!(
        normalize(actual),
        normalize(&expected),
        "{name}\nactual:\n{actual}"
    );
}

fn json_doc(s: &str) -> Value {
    let mut v: Value = serde_json::from_str(s).unwrap();
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
    }
    v
}

/// An SSE stream as a list of (event name, data as JSON or text), timestamps removed.
fn sse_doc(s: &str) -> Value {
    let mut framer = sse::Framer::default();
    let events: Vec<Value> = framer
        .push(s.as_bytes())
        .into_iter()
        .map(|e| {
            let data = match serde_json::from_str::<Value>(&e.data) {
                Ok(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("created");
                    }
                    v
                }
                Err(_) => Value::String(e.data),
            };
            serde_json::json!([e.name, data])
        })
        .collect();
    assert!(
        framer.finish().is_none(),
        "trailing bytes after the last event"
    );
    Value::Array(events)
}

#[test]
fn chat_request_to_messages() {
    let input = read("chat_request_tools_images.json");
    let (body, _) = Direction::ChatToMessages
        .request(input.as_bytes(), "claude-sonnet-4-5")
        .unwrap();
    golden(
        "chat_request_tools_images.expected.json",
        std::str::from_utf8(&body).unwrap(),
        json_doc,
    );
}

#[test]
fn messages_request_to_chat() {
    let input = read("messages_request_tools_images.json");
    let (body, _) = Direction::MessagesToChat
        .request(input.as_bytes(), "gpt-4o")
        .unwrap();
    golden(
        "messages_request_tools_images.expected.json",
        std::str::from_utf8(&body).unwrap(),
        json_doc,
    );
}

#[test]
fn max_tokens_default_and_tool_choice_words() {
    let (body, usage) = Direction::ChatToMessages
        .request(
            br#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"required","stream":true,"stream_options":{"include_usage":true}}"#,
            "m",
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["max_tokens"], chat_to_messages::DEFAULT_MAX_TOKENS);
    assert_eq!(v["tool_choice"], serde_json::json!({"type": "any"}));
    assert_eq!(v["stream"], true);
    assert!(usage);
    let (body, _) = Direction::ChatToMessages
        .request(
            br#"{"messages":[],"max_completion_tokens":7,"stop":"X"}"#,
            "m",
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["max_tokens"], 7);
    assert_eq!(v["stop_sequences"], serde_json::json!(["X"]));
}

#[test]
fn untranslatable_requests_are_refused() {
    for body in [
        &br#"{"messages": "hi"}"#[..],
        br#"{"messages":[{"role":"user","content":[{"type":"input_audio"}]}]}"#,
        br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"1","function":{"name":"f","arguments":"{not json"}}]}]}"#,
    ] {
        assert!(Direction::ChatToMessages.request(body, "m").is_err());
    }
    assert!(Direction::MessagesToChat
        .request(
            br#"{"messages":[{"role":"user","content":[{"type":"document"}]}]}"#,
            "m"
        )
        .is_err());
}

/// Runs a whole response through a translator, split into `chunk`-byte body tasks.
fn translate_response(
    direction: Direction,
    status: u16,
    content_type: &str,
    body: &str,
    chunk: usize,
) -> (u16, Vec<(String, String)>, String) {
    let mut t = ResponseTranslator::new(direction, "model-x", true);
    let mut header = ResponseHeader::build(status, None).unwrap();
    header.insert_header("content-type", content_type).unwrap();
    header
        .insert_header("content-length", body.len().to_string())
        .unwrap();
    // As the exchange does it: the watch reads each piece once, the translator rewrites it.
    let mut watch = crate::usage::ResponseWatch::default();
    watch.header(status, Some(content_type), true);
    t.header(&mut header, watch.is_stream());
    let mut text = Vec::new();
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(chunk.max(1)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let end = i + 1 == pieces.len();
        let original = Bytes::copy_from_slice(piece);
        let read = watch.body(piece, end, std::time::Instant::now());
        if let Some(out) = t.body(&read, Some(original)) {
            text.extend_from_slice(&out);
        }
    }
    let status_out = header.status.as_u16();
    let headers: Vec<(String, String)> = header
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    (status_out, headers, String::from_utf8(text).unwrap())
}

#[test]
fn anthropic_json_response_to_chat() {
    let input = read("anthropic_response_tools.json");
    let (status, headers, body) = translate_response(
        Direction::ChatToMessages,
        200,
        "application/json",
        &input,
        7,
    );
    assert_eq!(status, 200);
    // The upstream's length no longer holds; the writer frames the whole body (tests/translation.rs
    // checks the exact length the client gets).
    assert!(headers.iter().all(|(k, _)| k != "content-length"));
    golden("anthropic_response_tools.expected.json", &body, json_doc);
}

#[test]
fn openai_json_response_to_messages() {
    let input = read("openai_response_tools.json");
    let (_, _, body) = translate_response(
        Direction::MessagesToChat,
        200,
        "application/json",
        &input,
        5,
    );
    golden("openai_response_tools.expected.json", &body, json_doc);
}

/// Translates a stream fixture whole and at every split size; all must give the expected events.
fn stream_golden(direction: Direction, input: &str, expected: &str) {
    let input = read(input);
    let sse = "text/event-stream";
    let (_, headers, whole) = translate_response(direction, 200, sse, &input, input.len());
    assert!(headers.iter().all(|(k, _)| k != "content-length"));
    golden(expected, &whole, sse_doc);
    for chunk in 1..input.len() {
        let (_, _, split) = translate_response(direction, 200, sse, &input, chunk);
        assert_eq!(
            sse_doc(&split),
            sse_doc(&whole),
            "split every {chunk} bytes"
        );
    }
}

#[test]
fn anthropic_stream_to_chat_chunks_across_every_split() {
    stream_golden(
        Direction::ChatToMessages,
        "anthropic_stream_tools.sse",
        "anthropic_stream_tools.expected.sse",
    );
}

#[test]
fn openai_stream_to_messages_events_across_every_split() {
    stream_golden(
        Direction::MessagesToChat,
        "openai_stream_tools.sse",
        "openai_stream_tools.expected.sse",
    );
}

#[test]
fn a_cut_stream_gets_no_synthetic_end() {
    let input = read("anthropic_stream_tools.sse");
    let cut = &input[..input.find("event: message_delta").unwrap()];
    let (_, _, out) =
        translate_response(Direction::ChatToMessages, 200, "text/event-stream", cut, 64);
    assert!(!out.contains("[DONE]"), "{out}");
    let input = read("openai_stream_tools.sse");
    let cut = &input[..input.find("data: [DONE]").unwrap()];
    let (_, _, out) =
        translate_response(Direction::MessagesToChat, 200, "text/event-stream", cut, 64);
    assert!(!out.contains("message_stop"), "{out}");
}

#[test]
fn upstream_errors_take_the_clients_shape() {
    let openai_err = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let (status, _, body) = translate_response(
        Direction::MessagesToChat,
        429,
        "application/json",
        openai_err,
        10,
    );
    assert_eq!(status, 429);
    assert_eq!(
        json_doc(&body),
        serde_json::json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
    );
    let anthropic_err =
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let (status, _, body) = translate_response(
        Direction::ChatToMessages,
        529,
        "application/json",
        anthropic_err,
        10,
    );
    assert_eq!(status, 529);
    assert_eq!(
        json_doc(&body),
        serde_json::json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
    );
    // Not JSON at all (a proxy's HTML page): the text becomes the message.
    let (_, _, body) = translate_response(
        Direction::MessagesToChat,
        502,
        "text/html",
        "Bad Gateway",
        4,
    );
    assert_eq!(json_doc(&body)["error"]["message"], "Bad Gateway");
    assert_eq!(json_doc(&body)["error"]["type"], "api_error");
}

#[test]
fn reasoning_becomes_thinking_and_back() {
    let openai = r#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"42","reasoning_content":"6 times 7"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    let (_, _, body) = translate_response(
        Direction::MessagesToChat,
        200,
        "application/json",
        openai,
        9,
    );
    let msg = json_doc(&body);
    assert_eq!(msg["content"][0]["type"], "thinking");
    assert_eq!(msg["content"][0]["thinking"], "6 times 7");
    assert_eq!(
        msg["content"][1],
        serde_json::json!({"type": "text", "text": "42"})
    );
    assert_eq!(msg["stop_reason"], "end_turn");
}
