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
        .request(
            input.as_bytes(),
            &test_target(Direction::ChatToMessages, "claude-sonnet-4-5"),
        )
        .map(|t| (t.body, t.include_usage))
        .unwrap();
    golden(
        "chat_request_tools_images.expected.json",
        std::str::from_utf8(&body).unwrap(),
        json_doc,
    );
}

/// Claude Code 2.1 sends a `system` turn among the messages (its environment): it stays a
/// system message where it stands.
#[test]
fn a_system_turn_among_the_messages_stays_where_it_is() {
    let input = json!({"model": "m", "max_tokens": 10, "system": "You are Claude Code.",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "system", "content": [{"type": "text", "text": "# Environment"}, {"type": "text", "text": "cwd: /w"}]},
        {"role": "user", "content": "go"}
    ]});
    let body = Direction::MessagesToChat
        .request(
            input.to_string().as_bytes(),
            &test_target(Direction::MessagesToChat, "gpt-4o"),
        )
        .unwrap()
        .body;
    let chat: Value = serde_json::from_slice(&body).unwrap();
    let roles: Vec<&str> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "system", "user"]);
    assert_eq!(chat["messages"][2]["content"], "# Environment\ncwd: /w");
}

/// Claude's own web search streams its query as a server tool's input: not a tool call of the
/// client's.
#[test]
fn a_server_tools_input_is_not_a_client_tool_call() {
    let mut s = chat_to_messages::StreamState::default();
    let ev = |data: Value| sse::Event {
        name: data["type"].as_str().map(str::to_owned),
        data: data.to_string(),
    };
    s.event(&ev(serde_json::json!({"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}})));
    s.event(&ev(serde_json::json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}})));
    let out = s.event(&ev(
        serde_json::json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"news\"}"}}),
    ));
    assert_eq!(out, "");
}

#[test]
fn messages_request_to_chat() {
    let input = read("messages_request_tools_images.json");
    let (body, _) = Direction::MessagesToChat
        .request(
            input.as_bytes(),
            &test_target(Direction::MessagesToChat, "gpt-4o"),
        )
        .map(|t| (t.body, t.include_usage))
        .unwrap();
    golden(
        "messages_request_tools_images.expected.json",
        std::str::from_utf8(&body).unwrap(),
        json_doc,
    );
}

#[test]
fn max_tokens_default_and_tool_choice_words() {
    let d = Direction::ChatToMessages;
    let (body, usage) = d
        .request(
            br#"{"messages":[{"role":"user","content":"hi"}],"tool_choice":"required","stream":true,"stream_options":{"include_usage":true}}"#,
            &test_target(d, "m"),
        )
        .map(|t| (t.body, t.include_usage))
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["max_tokens"], 8_192,
        "the unknown model `m` gets the default output limit"
    );
    assert_eq!(v["tool_choice"], serde_json::json!({"type": "any"}));
    assert_eq!(v["stream"], true);
    assert!(usage);
    let (body, _) = d
        .request(
            br#"{"messages":[],"max_completion_tokens":7,"stop":"X"}"#,
            &test_target(d, "m"),
        )
        .map(|t| (t.body, t.include_usage))
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
        assert!(Direction::ChatToMessages
        .request(body, &test_target(Direction::ChatToMessages, "m"))
        .map(|t| (t.body, t.include_usage)).is_err());
    }
    let d = Direction::MessagesToChat;
    assert!(d
        .request(
            br#"{"messages":[{"role":"user","content":[{"type":"audio"}]}]}"#,
            &test_target(d, "m")
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
    let mut t = ResponseTranslator::new(direction, "model-x", &Translated::for_test(true));
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
        if let Some(out) = t.body(&read, Some(original), end) {
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

// ---------------------------------------------------------------------------------------------
// What agents send (Claude Code, Cursor, OpenAI-SDK agents), defect by defect.
// ---------------------------------------------------------------------------------------------

/// Translates `body` for `model` at provider `prefix`: the upstream's body, and the tool names.
fn to_upstream(direction: Direction, prefix: &str, model: &str, body: Value) -> (Value, ToolNames) {
    let target = Target {
        prefix,
        model,
        default_max_tokens: None,
    };
    let t = direction
        .request(body.to_string().as_bytes(), &target)
        .unwrap();
    (serde_json::from_slice(&t.body).unwrap(), t.names)
}

fn refused(direction: Direction, prefix: &str, model: &str, body: Value) -> String {
    let target = Target {
        prefix,
        model,
        default_max_tokens: None,
    };
    direction
        .request(body.to_string().as_bytes(), &target)
        .unwrap_err()
}

#[test]
fn reasoning_models_get_max_completion_tokens_and_no_sampling_they_refuse() {
    let claude_code = serde_json::json!({
        "model": "x", "max_tokens": 32000, "temperature": 0.7, "top_p": 0.9,
        "stop_sequences": ["</done>"], "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [{"role": "user", "content": "fix the bug"}]
    });
    let (gpt5, _) = to_upstream(
        Direction::MessagesToChat,
        "openai",
        "gpt-5",
        claude_code.clone(),
    );
    assert_eq!(gpt5["max_completion_tokens"], 32000);
    assert_eq!(gpt5["reasoning_effort"], "high");
    for refused in ["max_tokens", "temperature", "top_p", "stop"] {
        assert!(gpt5.get(refused).is_none(), "{refused}: {gpt5}");
    }
    // A chat model elsewhere keeps what it accepts, in the field its API documents.
    let (deepseek, _) = to_upstream(
        Direction::MessagesToChat,
        "deepseek",
        "deepseek-chat",
        claude_code,
    );
    assert_eq!(deepseek["max_tokens"], 32000);
    assert_eq!(deepseek["temperature"], 0.7);
    assert_eq!(deepseek["stop"], serde_json::json!(["</done>"]));
    assert!(
        deepseek.get("reasoning_effort").is_none()
            && deepseek.get("max_completion_tokens").is_none()
    );
}

#[test]
fn tool_output_images_follow_in_a_user_message_and_errors_keep_their_mark() {
    let (chat, _) = to_upstream(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        serde_json::json!({"max_tokens": 100, "messages": [
            {"role": "user", "content": "take a screenshot"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}},
                                              {"type": "tool_use", "id": "t2", "name": "ls", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "captured"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
                ]},
                {"type": "tool_result", "tool_use_id": "t2", "is_error": true, "content": "permission denied"}
            ]}
        ]}),
    );
    let m = chat["messages"].as_array().unwrap();
    assert_eq!(
        m[2],
        serde_json::json!({"role": "tool", "tool_call_id": "t1", "content": "captured"})
    );
    assert_eq!(m[3]["content"], "[tool error] permission denied");
    assert_eq!(m[4]["role"], "user");
    assert_eq!(
        m[4]["content"][0]["text"],
        "[images returned by tool call t1]"
    );
    assert_eq!(
        m[4]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBO"
    );
    // And back: the mark is `is_error` again for an Anthropic upstream.
    let (msgs, _) = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({"messages": [{"role": "tool", "tool_call_id": "t2", "content": "[tool error] permission denied"}]}),
    );
    let result = &msgs["messages"][0]["content"][0];
    assert_eq!(result["is_error"], true);
    assert_eq!(result["content"][0]["text"], "permission denied");
}

#[test]
fn long_tool_names_are_shortened_and_restored_in_answers_and_streams() {
    let long = "mcp__acme_internal_knowledge_base__search_documents_by_semantic_similarity";
    let (chat, names) = to_upstream(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        serde_json::json!({"max_tokens": 100,
            "tools": [{"name": long, "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": long},
            "messages": [{"role": "user", "content": "q"},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t0", "name": long, "input": {}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t0", "content": "r"}]}]}),
    );
    let short = chat["tools"][0]["function"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(short.len() <= 64);
    assert_eq!(chat["tool_choice"]["function"]["name"], short.as_str());
    assert_eq!(
        chat["messages"][1]["tool_calls"][0]["function"]["name"],
        short.as_str()
    );
    let request = Translated {
        body: Bytes::new(),
        include_usage: false,
        names,
        echo: Default::default(),
        client_stream: false,
    };
    // The whole answer.
    let answer = serde_json::json!({"id": "c", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function",
            "function": {"name": short, "arguments": "{}"}}]}}]});
    let mut t = ResponseTranslator::new(Direction::MessagesToChat, "gpt-4o", &request);
    let mut header = ResponseHeader::build(200, None).unwrap();
    t.header(&mut header, false);
    let doc = Some(answer.clone());
    let body = t
        .body(
            &crate::usage::Piece::Whole(answer.to_string().into_bytes(), doc),
            None,
            true,
        )
        .unwrap();
    assert_eq!(
        json_doc(std::str::from_utf8(&body).unwrap())["content"][0]["name"],
        long
    );
    // The stream.
    let chunk = serde_json::json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "t1", "type": "function", "function": {"name": short, "arguments": ""}}]}}]});
    let mut t = ResponseTranslator::new(Direction::MessagesToChat, "gpt-4o", &request);
    let events = vec![sse::Event {
        name: None,
        data: chunk.to_string(),
    }];
    let out = t
        .body(&crate::usage::Piece::Events(events), None, false)
        .unwrap();
    let out = String::from_utf8(out.to_vec()).unwrap();
    assert!(out.contains(long) && !out.contains(&short), "{out}");
}

#[test]
fn documents_become_text_or_files_and_what_cannot_go_is_named() {
    let doc = |source: Value| {
        serde_json::json!({"max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "document", "title": "spec.pdf", "source": source},
            {"type": "text", "text": "summarize"}]}]})
    };
    let (chat, _) = to_upstream(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        doc(serde_json::json!({"type": "text", "media_type": "text/plain", "data": "Section 1"})),
    );
    assert_eq!(
        chat["messages"][0]["content"],
        "spec.pdf\n\nSection 1\nsummarize"
    );
    let pdf =
        serde_json::json!({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"});
    let (chat, _) = to_upstream(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        doc(pdf.clone()),
    );
    assert_eq!(
        chat["messages"][0]["content"][0],
        serde_json::json!({"type": "file", "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}})
    );
    let err = refused(Direction::MessagesToChat, "ollama", "llama3.1", doc(pdf));
    assert!(
        err.contains("document") && err.contains("llama3.1"),
        "{err}"
    );
    let err = refused(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        doc(serde_json::json!({"type": "url", "url": "https://x/spec.pdf"})),
    );
    assert!(err.contains("`document`") && err.contains("url"), "{err}");
    // A `file` part from an OpenAI client becomes a document block for Claude.
    let (msgs, _) = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}]}]}),
    );
    assert_eq!(
        msgs["messages"][0]["content"][0],
        serde_json::json!({"type": "document", "title": "spec.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}})
    );
}

#[test]
fn reasoning_effort_turns_claudes_thinking_on_within_the_output_limit() {
    let ask = |extra: Value| {
        let mut body = serde_json::json!({"messages": [{"role": "user", "content": "prove it"}], "temperature": 0.3});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        to_upstream(
            Direction::ChatToMessages,
            "anthropic",
            "claude-sonnet-4-5",
            body,
        )
        .0
    };
    let v = ask(serde_json::json!({"reasoning_effort": "medium"}));
    assert_eq!(
        v["thinking"],
        serde_json::json!({"type": "enabled", "budget_tokens": 8192})
    );
    assert_eq!(v["max_tokens"], 64000);
    assert!(
        v.get("temperature").is_none(),
        "thinking takes no temperature: {v}"
    );
    let v = ask(serde_json::json!({"reasoning_effort": "high", "max_completion_tokens": 2000}));
    assert_eq!(v["thinking"]["budget_tokens"], 1999);
    // Inside a tool loop (the history cannot give Claude its earlier thinking back): none.
    let mut looping = serde_json::json!({"reasoning_effort": "high", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"}]});
    looping["temperature"] = 0.3.into();
    let v = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        looping,
    )
    .0;
    assert!(v.get("thinking").is_none(), "{v}");
    // Too small a limit for Anthropic's least budget, a forced tool, or no effort: no thinking.
    for extra in [
        serde_json::json!({"reasoning_effort": "high", "tool_choice": "required"}),
        serde_json::json!({"reasoning_effort": "high", "max_tokens": 1000}),
        serde_json::json!({"reasoning_effort": "minimal"}),
        serde_json::json!({}),
    ] {
        let v = ask(extra.clone());
        assert!(v.get("thinking").is_none(), "{extra}: {v}");
        assert_eq!(v["temperature"], 0.3);
    }
}

#[test]
fn structured_output_stops_choices_and_ranges_fit_anthropic() {
    let (v, _) = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({
            "messages": [{"role": "user", "content": "extract"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true,
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}},
            "stop": ["\n", "  ", "END"], "temperature": 1.6,
            "tool_choice": "none", "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        }),
    );
    assert_eq!(
        v["output_config"],
        serde_json::json!({"format": {"type": "json_schema", "schema":
            {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}})
    );
    assert_eq!(v["stop_sequences"], serde_json::json!(["END"]));
    assert_eq!(v["temperature"], 1.0);
    assert_eq!(v["tool_choice"], serde_json::json!({"type": "none"}));
    // Whitespace stops alone leave none.
    let (v, _) = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({"messages": [{"role": "user", "content": "x"}], "stop": "\n", "parallel_tool_calls": false}),
    );
    assert!(v.get("stop_sequences").is_none());
    assert_eq!(
        v["tool_choice"],
        serde_json::json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[test]
fn every_stop_reason_and_finish_reason_has_its_counterpart() {
    for (anthropic, openai) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("a_reason_from_next_year", "stop"),
    ] {
        assert_eq!(
            chat_to_messages::finish_reason(Some(anthropic)),
            openai,
            "{anthropic}"
        );
    }
    for (openai, anthropic) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        assert_eq!(
            messages_to_chat::stop_reason(Some(openai)),
            anthropic,
            "{openai}"
        );
    }
}

#[test]
fn streamed_thinking_blocks_carry_a_signature() {
    let mut t =
        ResponseTranslator::new(Direction::MessagesToChat, "m", &Translated::for_test(false));
    let chunk = serde_json::json!({"id": "c", "choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]});
    let out = t
        .body(
            &crate::usage::Piece::Events(vec![sse::Event {
                name: None,
                data: chunk.to_string(),
            }]),
            None,
            false,
        )
        .unwrap();
    let events = sse_doc(std::str::from_utf8(&out).unwrap());
    let start = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[0] == "content_block_start")
        .unwrap();
    assert_eq!(start[1]["content_block"]["signature"], "");
}

#[test]
fn cache_control_on_openai_parts_marks_the_matching_blocks() {
    let ephemeral = serde_json::json!({"type": "ephemeral"});
    let (v, _) = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "long rules", "cache_control": ephemeral}]},
            {"role": "user", "content": [{"type": "text", "text": "doc", "cache_control": ephemeral}, {"type": "text", "text": "q"}]},
            {"role": "assistant", "content": "a", "cache_control": ephemeral}
        ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": ephemeral}]}),
    );
    assert_eq!(v["system"][0]["cache_control"], ephemeral);
    assert_eq!(v["messages"][0]["content"][0]["cache_control"], ephemeral);
    assert!(v["messages"][0]["content"][1]
        .get("cache_control")
        .is_none());
    assert_eq!(v["messages"][1]["content"][0]["cache_control"], ephemeral);
    assert_eq!(v["tools"][0]["cache_control"], ephemeral);
}

#[test]
fn refusals_keep_their_text_and_reason() {
    let answer = serde_json::json!({"id": "c", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}]});
    let v = messages_to_chat::response(&answer, "m", &ToolNames::default());
    assert_eq!(
        v["content"],
        serde_json::json!([{"type": "text", "text": "I can't help with that."}])
    );
    assert_eq!(v["stop_reason"], "refusal");
    // In the history, a refusal is what the assistant said.
    let (msgs, _) = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({"messages": [{"role": "user", "content": "x"},
            {"role": "assistant", "content": null, "refusal": "No."}, {"role": "user", "content": "why"}]}),
    );
    assert_eq!(
        msgs["messages"][1]["content"],
        serde_json::json!([{"type": "text", "text": "No."}])
    );
}

#[test]
fn openai_reasoning_and_refusal_stream_to_messages_across_every_split() {
    stream_golden(
        Direction::MessagesToChat,
        "openai_stream_reasoning_refusal.sse",
        "openai_stream_reasoning_refusal.expected.sse",
    );
}

#[test]
fn anthropic_thinking_stream_that_ran_out_of_context_to_chat_across_every_split() {
    stream_golden(
        Direction::ChatToMessages,
        "anthropic_stream_context_exceeded.sse",
        "anthropic_stream_context_exceeded.expected.sse",
    );
}

// ---------------------------------------------------------------------------------------------
// The target APIs' limits (limits::TABLE): every translated request is one the API accepts.
// ---------------------------------------------------------------------------------------------

/// Claude Code's `metadata.user_id`: a JSON document of about 150 characters.
const CLAUDE_CODE_USER: &str = r#"{"device_id":"5f0a8e2c9b7d4e1f3a6c8b0d2e4f6a8c0b2d4e6f8a0c2e4b6d8f0a2c4e6b8d0f","account_uuid":"","session_id":"3c1e2b8a-6f4d-4a7e-9b2c-1d0e8f7a6b5c"}"#;

#[test]
fn a_long_user_id_reaches_openai_as_a_stable_64_character_value() {
    let body = serde_json::json!({"max_tokens": 10, "metadata": {"user_id": CLAUDE_CODE_USER},
        "messages": [{"role": "user", "content": "hi"}]});
    let (openai, _) = to_upstream(Direction::MessagesToChat, "openai", "gpt-4o", body.clone());
    let id = openai["safety_identifier"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    assert!(openai.get("user").is_none(), "{openai}");
    let (again, _) = to_upstream(Direction::MessagesToChat, "openai", "gpt-4o", body.clone());
    assert_eq!(
        again["safety_identifier"], id,
        "the same user, the same value"
    );
    // OpenAI-compatible APIs know `user`.
    let (groq, _) = to_upstream(Direction::MessagesToChat, "groq", "llama", body);
    assert_eq!(groq["user"], id);
    // A short one passes as it is.
    let (short, _) = to_upstream(
        Direction::MessagesToChat,
        "groq",
        "llama",
        serde_json::json!({"max_tokens": 10, "metadata": {"user_id": "u-1"}, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(short["user"], "u-1");
}

#[test]
fn what_openai_cannot_take_is_fitted_or_named() {
    let long_id = "toolu_0123456789abcdefghijklmnopqrstuvwxyz_0123";
    let (chat, _) = to_upstream(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        serde_json::json!({"max_tokens": 10, "messages": [
            {"role": "user", "content": "list"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": long_id, "name": "ls", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": long_id, "content": "a b"}]}
        ]}),
    );
    let call = chat["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(call.len(), limits::openai::TOOL_CALL_ID_MAX);
    assert_eq!(
        chat["messages"][2]["tool_call_id"], call,
        "call and result still pair"
    );

    let stops = serde_json::json!({"max_tokens": 10, "stop_sequences": ["a", "b", "c", "d", "e"],
        "messages": [{"role": "user", "content": "hi"}]});
    let e = refused(Direction::MessagesToChat, "openai", "gpt-4o", stops.clone());
    assert!(e.contains("`stop_sequences`") && e.contains('4'), "{e}");
    // A reasoning model gets no stops at all: nothing to refuse.
    to_upstream(Direction::MessagesToChat, "openai", "o3", stops);

    let tools: Vec<Value> = (0..129)
        .map(|i| serde_json::json!({"name": format!("t{i}"), "input_schema": {"type": "object"}}))
        .collect();
    let e = refused(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        serde_json::json!({"max_tokens": 10, "tools": tools, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert!(e.contains("`tools`") && e.contains("128"), "{e}");

    let huge = "x".repeat(limits::openai::CONTENT_MAX + 1);
    let e = refused(
        Direction::MessagesToChat,
        "openai",
        "gpt-4o",
        serde_json::json!({"max_tokens": 10, "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"},
            {"role": "user", "content": [{"type": "text", "text": huge}]}]}),
    );
    assert!(e.starts_with("`messages[2]`"), "{e}");
}

#[test]
fn what_anthropic_cannot_take_is_fitted_or_named() {
    let kimi = "functions.get_weather:0";
    let (msg, names) = to_upstream(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({"user": "x".repeat(300), "messages": [
            {"role": "system", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                                           {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [{"type": "text", "text": "weather?", "cache_control": {"type": "ephemeral"}},
                                         {"type": "text", "text": ""}, {"type": "text", "text": "  "}]},
            {"role": "assistant", "content": "", "tool_calls": [{"id": kimi, "type": "function",
                "function": {"name": "weather.get", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": kimi, "content": "sunny", "cache_control": {"type": "ephemeral"}},
            {"role": "user", "content": "  ", "cache_control": {"type": "ephemeral"}},
            {"role": "assistant", "content": "The forecast says "}
        ],
        "tools": [{"type": "function", "cache_control": {"type": "ephemeral"},
                   "function": {"name": "weather.get", "parameters": {"type": "object"}}}]}),
    );
    // The user: over 256 characters, its SHA-256.
    assert_eq!(msg["metadata"]["user_id"].as_str().unwrap().len(), 64);
    // Tool name and ids only in Anthropic's characters, the call and its result alike.
    let name = msg["tools"][0]["name"].as_str().unwrap();
    assert!(name.chars().all(limits::name_char), "{name}");
    assert_eq!(names.original(name), "weather.get");
    let m = msg["messages"].as_array().unwrap();
    let call = &m[1]["content"][0];
    assert_eq!(call["name"], name);
    let id = call["id"].as_str().unwrap();
    assert!(id.chars().all(limits::name_char), "{id}");
    assert_eq!(m[2]["content"][0]["tool_use_id"], id);
    // Empty and whitespace-only text is gone; the prefill has no trailing whitespace.
    assert_eq!(m[0]["content"].as_array().unwrap().len(), 1, "{msg}");
    assert_eq!(m[1]["content"].as_array().unwrap().len(), 1, "{msg}");
    assert_eq!(m.len(), 4, "{msg}");
    assert_eq!(
        m[3]["content"],
        serde_json::json!([{"type": "text", "text": "The forecast says"}])
    );
    // Five breakpoints asked (tool, two system blocks, user text, tool result): the first goes.
    let marked = |v: &Value| v.get("cache_control").is_some();
    assert!(!marked(&msg["tools"][0]));
    assert!(msg["system"].as_array().unwrap().iter().all(marked));
    assert!(marked(&m[0]["content"][0]) && marked(&m[2]["content"][0]));
    // An answer naming the fitted tool gives the client its own name back.
    let answer = chat_to_messages::response(
        &serde_json::json!({"id": "m", "model": "c", "stop_reason": "tool_use", "usage": {},
            "content": [{"type": "tool_use", "id": "toolu_9", "name": name, "input": {}}]}),
        &names,
    );
    assert_eq!(
        answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "weather.get"
    );

    let e = refused(
        Direction::ChatToMessages,
        "anthropic",
        "claude-sonnet-4-5",
        serde_json::json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "?"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]}),
    );
    assert!(
        e.starts_with("`messages[2]`") && e.contains("image/bmp"),
        "{e}"
    );
}
