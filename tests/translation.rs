//! Any client API to any provider interface, end to end: what the upstream received and what the
//! client got, for Anthropic Messages clients and OpenAI clients, JSON and streams (events split
//! across TCP reads), tools, errors in the client's shape, and the built-in provider table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use common::{request, yaml, Gateway, Mock};
use serde_json::{json, Value};
use switchyard::catalog::{AZURE_API_VERSION, CATALOG};

const OPENAI_KEY: &str = "sk-openai-managed";
const ANTHROPIC_KEY: &str = "sk-ant-managed";

fn start(openai: &Mock, anthropic: &Mock) -> Gateway {
    let config = yaml(&format!(
        r#"
model_providers:
  - {{model: openai/gpt-4o, base_url: '{}', access_key: $OPENAI_KEY}}
  - {{model: anthropic/claude-sonnet-4-5, base_url: '{}', access_key: $ANTHROPIC_KEY}}
"#,
        openai.url(),
        anthropic.url()
    ));
    Gateway::start(
        &config,
        &[("OPENAI_KEY", OPENAI_KEY), ("ANTHROPIC_KEY", ANTHROPIC_KEY)],
    )
}

fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &Value) -> common::Response {
    common::post_json(gw.addr, path, headers, body)
}

fn stream(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Vec<(Option<String>, Value)> {
    common::post_stream(gw.addr, path, headers, body)
}

fn tools_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn tools_anthropic() -> Value {
    json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
}

#[test]
fn messages_to_an_anthropic_upstream_pass_through() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let body = json!({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], "x_future_field": {"kept": true}});
    let resp = post(
        &gw,
        "/v1/messages?beta=true",
        &[
            ("x-api-key", "sk-client"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
            ("x-mock", "anthropic"),
        ],
        &body,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["type"], "message");
    let got = anthropic.only();
    assert_eq!(got.path, "/v1/messages?beta=true");
    assert_eq!(got.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        got.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    let mut expected = body.clone();
    expected["model"] = "claude-sonnet-4-5".into();
    assert_eq!(
        got.body,
        expected.to_string().into_bytes(),
        "same-API traffic keeps every byte but model"
    );
}

#[test]
fn messages_client_to_an_openai_upstream_with_tools() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    // Claude Code's query string belongs to the Messages API: not sent to a chat upstream.
    let resp = post(
        &gw,
        "/v1/messages?beta=true",
        &[
            ("x-api-key", "sk-client"),
            ("anthropic-version", "2023-06-01"),
            ("x-mock", "tools"),
        ],
        &json!({"model": "gpt-4o", "max_tokens": 100, "system": "Be brief.", "tools": tools_anthropic(),
                "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    );
    assert_eq!(resp.status, 200);
    let msg = resp.json();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(
        msg["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
    );
    assert_eq!(msg["usage"]["input_tokens"], 3);
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str())
    );

    let got = openai.only();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(got.header("x-api-key"), None);
    assert_eq!(got.header("anthropic-version"), None);
    let sent = got.json();
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["tools"], tools_openai());
    // OpenAI documents `max_completion_tokens` (its reasoning models refuse `max_tokens`).
    assert_eq!(sent["max_completion_tokens"], 100);
    assert!(sent.get("max_tokens").is_none());
}

#[test]
fn messages_stream_from_an_openai_upstream_split_across_reads() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let events = stream(
        &gw,
        "/v1/messages",
        &[("x-mock", "sse=1,tools,usage,split")],
        &json!({"model": "openai/gpt-4o", "max_tokens": 100, "stream": true, "tools": tools_anthropic(),
                "messages": [{"role": "user", "content": "Weather?"}]}),
    );
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1].1["content_block"]["type"], "tool_use");
    let args: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(events[6].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        events[6].1["usage"]["output_tokens"],
        common::OPENAI_STREAM_USAGE.1
    );
    // The upstream was asked for usage, which the Messages client expects.
    assert_eq!(
        openai.only().json()["stream_options"],
        json!({"include_usage": true})
    );
}

#[test]
fn chat_client_to_an_anthropic_upstream() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &[
            ("authorization", "Bearer sk-client"),
            ("x-mock", "anthropic,tools"),
        ],
        &json!({"model": "claude-sonnet-4-5", "tools": tools_openai(),
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]}),
    );
    assert_eq!(resp.status, 200);
    let chat = resp.json();
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chat["choices"][0]["message"]["content"], "Checking.");
    let call = &chat["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(chat["usage"]["prompt_tokens"], 13); // 10 input + 2 cache read + 1 cache write
    assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 2);

    let got = anthropic.only();
    assert_eq!(
        got.path, "/v1/messages",
        "the native Messages API, not the OpenAI-compatible one"
    );
    assert_eq!(got.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.header("authorization"), None);
    let sent = got.json();
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Be brief."}])
    );
    // No limit from the client: the model's own output limit (claude-sonnet-4-5: 64,000).
    assert_eq!(sent["max_tokens"], 64000);
    assert_eq!(sent["tools"], tools_anthropic());
}

#[test]
fn chat_stream_from_an_anthropic_upstream_split_across_reads() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let events = stream(
        &gw,
        "/v1/chat/completions",
        &[("x-mock", "anthropic,sse=3,split")],
        &json!({"model": "claude-sonnet-4-5", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Count"}]}),
    );
    assert!(
        events.iter().all(|(name, _)| name.is_none()),
        "OpenAI streams have no event names"
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "t0t1t2");
    let finish: Vec<&Value> = events
        .iter()
        .map(|(_, d)| &d["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = &events[events.len() - 2].1["usage"];
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(events.last().unwrap().1, json!("[DONE]"));
    assert_eq!(anthropic.only().json()["stream"], true);
}

#[test]
fn errors_take_the_clients_shape() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let anthropic_shape = |resp: &common::Response, status: u16, kind: &str| {
        assert_eq!(resp.status, status);
        let v = resp.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    };
    // Gateway-made, for a Messages client.
    anthropic_shape(
        &post(
            &gw,
            "/v1/messages",
            &[],
            &json!({"model": "nope", "messages": []}),
        ),
        404,
        "not_found_error",
    );
    anthropic_shape(
        &request(gw.addr, "POST", "/v1/messages", &[], b"{not json"),
        400,
        "invalid_request_error",
    );
    anthropic_shape(
        &request(gw.addr, "GET", "/v1/messages", &[], b""),
        405,
        "invalid_request_error",
    );
    // A body that cannot be read (broken chunked framing): Pingora's error, rendered by
    // `fail_to_proxy`, in the Messages client's shape too.
    let mut conn = common::Conn::open(gw.addr);
    conn.send_head("POST", "/v1/messages", &[], None);
    std::io::Write::write_all(&mut conn.stream, b"zz\r\n{}\r\n0\r\n\r\n").unwrap();
    anthropic_shape(&conn.read_response(), 400, "invalid_request_error");
    // An OpenAI upstream's 429, translated for a Messages client.
    let resp = post(
        &gw,
        "/v1/messages",
        &[("x-mock", "status=429")],
        &json!({"model": "gpt-4o", "max_tokens": 5, "messages": []}),
    );
    anthropic_shape(&resp, 429, "rate_limit_error");
    assert_eq!(resp.json()["error"]["message"], "mock error");
    // An Anthropic upstream's 500, translated for an OpenAI client.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock", "status=500")],
        &json!({"model": "claude-sonnet-4-5", "messages": []}),
    );
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json()["error"]["message"], "mock error");
    // Not expressible for an Anthropic provider: refused, nothing sent.
    let resp = post(
        &gw,
        "/v1/embeddings",
        &[],
        &json!({"model": "claude-sonnet-4-5", "input": "x"}),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["code"], "unsupported_for_provider");
    assert_eq!(anthropic.received().len(), 1);
    assert_eq!(openai.received().len(), 1);
}

/// Every built-in prefix, reached through a base_url without a path: its default path and its
/// form of auth. (Each prefix's built-in host is checked by the catalog's unit test.)
#[test]
fn the_provider_table() {
    let mock = Mock::start();
    let providers: Vec<Value> = CATALOG
        .iter()
        .map(|b| json!({"model": format!("{}/m-{}", b.prefix, b.prefix), "base_url": mock.url(), "access_key": "sk-table"}))
        .collect();
    let gw = Gateway::start(&json!({"model_providers": providers}), &[]);
    for b in CATALOG {
        let model = format!("{}/m-{}", b.prefix, b.prefix);
        let (path, body) = match b.interface {
            switchyard::catalog::Interface::Anthropic => (
                "/v1/messages",
                json!({"model": model, "max_tokens": 5, "messages": []}),
            ),
            // The Codex backend serves Responses clients.
            switchyard::catalog::Interface::ChatGpt => {
                ("/v1/responses", json!({"model": model, "input": "hi"}))
            }
            _ => (
                "/v1/chat/completions",
                json!({"model": model, "messages": []}),
            ),
        };
        let mode = if b.interface == switchyard::catalog::Interface::Anthropic {
            "anthropic"
        } else {
            ""
        };
        let resp = post(&gw, path, &[("x-mock", mode)], &body);
        assert_eq!(resp.status, 200, "{}", b.prefix);
        let got = mock.received().pop().unwrap();
        let id = format!("m-{}", b.prefix);
        let (want_path, header, value) = match b.interface {
            switchyard::catalog::Interface::Anthropic => (
                format!("{}/messages", b.path_prefix),
                "x-api-key",
                "sk-table".to_owned(),
            ),
            switchyard::catalog::Interface::AzureOpenAi => (
                format!(
                    "{}/{id}/chat/completions?api-version={AZURE_API_VERSION}",
                    b.path_prefix
                ),
                "api-key",
                "sk-table".to_owned(),
            ),
            switchyard::catalog::Interface::OpenAi => (
                format!("{}/chat/completions", b.path_prefix),
                "authorization",
                "Bearer sk-table".to_owned(),
            ),
            switchyard::catalog::Interface::ChatGpt => (
                format!("{}/responses", b.path_prefix),
                "authorization",
                "Bearer sk-table".to_owned(),
            ),
            // The model in the path: Converse bodies name none.
            switchyard::catalog::Interface::Bedrock => (
                format!("{}/model/{id}/converse", b.path_prefix),
                "authorization",
                "Bearer sk-table".to_owned(),
            ),
        };
        assert_eq!(got.path, want_path, "{}", b.prefix);
        assert_eq!(got.header(header), Some(value.as_str()), "{}", b.prefix);
        if b.interface != switchyard::catalog::Interface::Bedrock {
            assert_eq!(got.json()["model"], id.as_str(), "{}", b.prefix);
        }
    }
}

/// Claude Code's `POST /v1/messages/count_tokens`: passed through to an Anthropic-interface
/// provider (its credential, its path), estimated by the gateway for any other.
#[test]
fn count_tokens_goes_to_anthropic_and_is_estimated_for_the_others() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let body = |model: &str| json!({"model": model, "system": "12345678", "messages": [{"role": "user", "content": "abcd"}]});
    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        &[("x-api-key", "client-key")],
        &body("claude-sonnet-4-5"),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let got = anthropic.only();
    assert_eq!(got.path, "/v1/messages/count_tokens");
    assert_eq!(got.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.json()["model"], "claude-sonnet-4-5");
    assert_eq!(got.json()["messages"], body("x")["messages"]);
    // An OpenAI-interface model: the gateway's estimate (12 bytes of text → 3 tokens), and
    // nothing goes upstream.
    let resp = post(&gw, "/v1/messages/count_tokens", &[], &body("gpt-4o"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"input_tokens": 3}));
    assert!(openai.received().is_empty());
    // Errors are in Anthropic's shape.
    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        &[],
        &body("no-such-model"),
    );
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["type"], "error");
}

/// The mock providers refuse what the real APIs refuse, with their status and error shape:
/// without this, a translation test could pass on a request the real API sends back.
#[test]
fn the_mock_providers_refuse_what_the_real_apis_refuse() {
    let mock = Mock::start();
    let send = |path: &str, body: Value| {
        request(
            mock.addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let openai = |body: Value, param: &str, code: Value| {
        let resp = send("/v1/chat/completions", body);
        assert_eq!(resp.status, 400);
        let e = resp.json()["error"].clone();
        assert_eq!(e["type"], "invalid_request_error", "{e}");
        assert_eq!(e["param"], param, "{e}");
        assert_eq!(e["code"], code, "{e}");
    };
    let hi = json!([{"role": "user", "content": "hi"}]);
    openai(
        json!({"model": "gpt-4o", "messages": hi, "user": "u".repeat(65)}),
        "user",
        json!("string_above_max_length"),
    );
    openai(
        json!({"model": "gpt-4o", "messages": hi, "stop": ["a", "b", "c", "d", "e"]}),
        "stop",
        json!("array_above_max_length"),
    );
    openai(
        json!({"model": "gpt-4o", "messages": hi, "tools": [{"type": "function", "function": {"name": "a.b"}}]}),
        "tools[0].function.name",
        json!("invalid_value"),
    );
    openai(
        json!({"model": "gpt-5", "messages": hi, "max_tokens": 10}),
        "max_tokens",
        json!("unsupported_parameter"),
    );
    let long_id = "c".repeat(41);
    openai(
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": long_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": long_id, "content": "ok"}]}),
        "messages[1].tool_calls[0].id",
        json!("string_above_max_length"),
    );
    openai(
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "x", "content": "ok"}]}),
        "messages.[1].role",
        Value::Null,
    );

    let anthropic = |body: Value, says: &str| {
        let resp = send("/v1/messages", body);
        assert_eq!(resp.status, 400);
        let v = resp.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    };
    anthropic(
        json!({"model": "c", "max_tokens": 5, "messages": hi, "metadata": {"user_id": "u".repeat(257)}}),
        "metadata.user_id: String should have at most 256 characters",
    );
    anthropic(
        json!({"model": "c", "max_tokens": 5, "messages": hi, "tools": [{"name": "a.b", "input_schema": {}}]}),
        "tools.0.custom.name",
    );
    anthropic(
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]}),
        "text content blocks must contain non-whitespace text",
    );
    anthropic(
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "functions.f:0", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "functions.f:0", "content": "ok"}]}]}),
        "tool_use.id: String should match pattern",
    );
    anthropic(
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": "and?"}]}),
        "`tool_use` ids were found without `tool_result` blocks immediately after: t1",
    );
    let marked = json!({"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}});
    anthropic(
        json!({"model": "c", "max_tokens": 5, "system": [marked, marked, marked], "messages": [{"role": "user", "content": [marked, marked]}]}),
        "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    );
    anthropic(
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure "}]}),
        "final assistant content cannot end with trailing whitespace",
    );
    // What they accept passes, and `lenient` lets a deliberately odd body through.
    assert_eq!(
        send(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": hi})
        )
        .status,
        200
    );
    assert_eq!(
        request(
            mock.addr,
            "POST",
            "/v1/chat/completions",
            &[("x-mock", "lenient")],
            json!({"model": "gpt-4o", "messages": hi, "user": "u".repeat(65)})
                .to_string()
                .as_bytes()
        )
        .status,
        200
    );
    assert_eq!(mock.received().len(), 15);
}

/// Claude Code's own request shape (its `metadata.user_id` of about 150 characters, betas,
/// tools, thinking, a tool loop with Anthropic ids) to an OpenAI model: OpenAI refuses a `user`
/// over 64 characters, so before the gateway fitted it every such request failed.
#[test]
fn claude_code_to_an_openai_model_is_accepted_by_the_strict_upstream() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let user = r#"{"device_id":"5f0a8e2c9b7d4e1f3a6c8b0d2e4f6a8c0b2d4e6f8a0c2e4b6d8f0a2c4e6b8d0f","account_uuid":"","session_id":"3c1e2b8a-6f4d-4a7e-9b2c-1d0e8f7a6b5c"}"#;
    let body = json!({
        "model": "gpt-4o", "max_tokens": 32000, "stream": false,
        "metadata": {"user_id": user},
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
                  {"name": "mcp__acme_internal_knowledge_base__search_documents_by_semantic_similarity", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"}, {"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "ls it", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "content": "a.txt"}]}
        ]
    });
    let headers = [
        ("anthropic-version", "2023-06-01"),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        ),
        ("x-api-key", "sk-ant-client"),
        ("x-mock", "tools"),
    ];
    let resp = post(&gw, "/v1/messages", &headers, &body);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["stop_reason"], "tool_use");
    let sent = openai.only().json();
    let id = sent["safety_identifier"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    // The same user, the same value: a second turn maps identically.
    post(&gw, "/v1/messages", &headers, &body);
    assert_eq!(openai.received()[1].json()["safety_identifier"], id);
    assert!(anthropic.received().is_empty());
}

/// A Responses request to a provider with its own Responses API (OpenAI) goes as it came:
/// `/v1/responses`, every byte but `model` kept (hosted tools, `store`, `include` and all), the
/// provider's key in place of the client's.
#[test]
fn responses_to_openai_pass_through() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let body = json!({"model": "openai/gpt-4o", "input": "hi", "store": false,
                      "include": ["reasoning.encrypted_content"], "tools": [{"type": "web_search"}],
                      "previous_response_id": "resp_1"});
    let resp = post(
        &gw,
        "/v1/responses",
        &[("authorization", "Bearer sk-client")],
        &body,
    );
    assert_eq!(resp.status, 200);
    let got = openai.only();
    assert_eq!(got.path, "/v1/responses");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    let mut expected = body.clone();
    expected["model"] = "gpt-4o".into();
    assert_eq!(got.body, expected.to_string().into_bytes());
    assert!(resp.header("x-switchyard-dropped-tools").is_none());
}

#[test]
fn responses_to_azure_go_to_its_own_responses_api() {
    let azure = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: azure_openai/gpt-5-deployment, base_url: '{}', access_key: sk-azure}}\n",
        azure.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let body = json!({"model": "azure_openai/gpt-5-deployment", "input": "hi",
                      "tools": [{"type": "web_search"}], "previous_response_id": "resp_1"});
    let resp = post(&gw, "/v1/responses", &[], &body);
    assert_eq!(resp.status, 200);
    let got = azure.only();
    assert_eq!(got.path, "/openai/v1/responses");
    assert_eq!(got.header("api-key"), Some("sk-azure"));
    let mut expected = body.clone();
    expected["model"] = "gpt-5-deployment".into();
    assert_eq!(got.body, expected.to_string().into_bytes());
}

/// Plano's `chatgpt/*` (a ChatGPT subscription through the Codex backend): Responses clients
/// with their own ChatGPT token; the backend's rules applied (`store: false`, streamed, an input
/// list, its client's headers); a client that asked for JSON gets the stream gathered, its
/// `output` filled from the done items when the backend sends the final one empty; the gateway
/// keeps the conversation (the backend takes no `previous_response_id`); the backend's
/// `{"detail"}` errors in OpenAI's shape.
#[test]
fn responses_clients_use_a_chatgpt_subscription() {
    let backend = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: chatgpt/*, base_url: '{}'}}\n",
        backend.url()
    ));
    let gw = Gateway::start(&config, &[("CHATGPT_ACCOUNT_ID", "acct-123")]);
    let token = [("authorization", "Bearer chatgpt-access-token")];
    let r = post(
        &gw,
        "/v1/responses",
        &[token[0], ("x-mock", "empty_final")],
        &json!({"model": "chatgpt/gpt-5.4", "input": "hi", "instructions": "Be brief."}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    let first = r.json();
    assert_eq!(first["status"], "completed");
    assert_eq!(first["output"][0]["content"][0]["text"], "t0t1");
    let got = backend.only();
    assert_eq!(got.path, "/backend-api/codex/responses");
    assert_eq!(
        got.header("authorization"),
        Some("Bearer chatgpt-access-token")
    );
    assert_eq!(got.header("chatgpt-account-id"), Some("acct-123"));
    assert_eq!(got.header("originator"), Some("codex_cli_rs"));
    assert!(got.header("session_id").is_some_and(|s| s.len() == 36));
    let sent = got.json();
    assert_eq!(sent["model"], "gpt-5.4");
    assert_eq!(sent["store"], false);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["instructions"], "Be brief.");
    assert_eq!(
        sent["input"],
        json!([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}])
    );

    // Streamed, continuing the first: the events as the backend sent them, the final one
    // whole; the history from the gateway, no previous_response_id upstream.
    let events = stream(
        &gw,
        "/v1/responses",
        &[token[0], ("x-mock", "empty_final")],
        &json!({"model": "chatgpt/gpt-5.4", "input": "And?", "stream": true, "previous_response_id": first["id"]}),
    );
    let (name, last) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("response.completed"));
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "t0t1");
    let sent = backend.received()[1].json();
    assert!(sent.get("previous_response_id").is_none());
    let input = sent["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{input:?}");
    assert_eq!(input[1]["content"][0]["text"], "t0t1");
    assert_eq!(input[2], json!({"role": "user", "content": "And?"}));

    // The backend's error, in OpenAI's shape.
    let r = post(
        &gw,
        "/v1/responses",
        &[token[0], ("x-mock", "status=400,detail")],
        &json!({"model": "chatgpt/gpt-5.4", "input": "hi"}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "mock detail");
    assert_eq!(backend.received().len(), 3);

    // A chat client: its messages as Responses input (the system message as instructions), the
    // gathered answer as a chat completion; streamed, as chunks.
    let r = post(
        &gw,
        "/v1/chat/completions",
        &token,
        &json!({"model": "chatgpt/gpt-5.4", "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let chat = r.json();
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["content"], "t0t1");
    assert_eq!(chat["usage"]["prompt_tokens"], 9);
    let sent = backend.received()[3].json();
    assert_eq!(sent["instructions"], "Be brief.");
    assert_eq!(
        sent["input"],
        json!([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}])
    );
    assert_eq!(sent["stream"], true);
    let events = stream(
        &gw,
        "/v1/chat/completions",
        &token,
        &json!({"model": "chatgpt/gpt-5.4", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "t0t1");
    assert_eq!(events.last().unwrap().1, Value::String("[DONE]".into()));

    // A Messages client (Claude Code's API), streamed: Anthropic's events.
    let events = stream(
        &gw,
        "/v1/messages",
        &[token[0], ("anthropic-version", "2023-06-01")],
        &json!({"model": "chatgpt/gpt-5.4", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "t0t1");
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
}

/// Claude's thinking round-trips through a stateless Responses client (Codex's way: `store:
/// false`, `include: ["reasoning.encrypted_content"]`, the whole history every turn): the
/// reasoning item carries the thinking and its signature in `encrypted_content`, and the next
/// turn of the tool loop gives them back to Anthropic first in the assistant's turn, with
/// thinking still on (the strict mock refuses a loop turn without them).
#[test]
fn claude_thinking_round_trips_through_encrypted_content() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let ask = json!({"role": "user", "content": "Weather in Paris?"});
    let turn = |input: Value, stream: bool| {
        json!({"model": "anthropic/claude-sonnet-4-5", "input": input, "tools": tools, "stream": stream,
               "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"],
               "store": false, "max_output_tokens": 4000})
    };
    let events = stream(
        &gw,
        "/v1/responses",
        &[("x-mock", "anthropic,thinking,tools,sse=1")],
        &turn(json!([ask]), true),
    );
    let (name, done) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("response.completed"));
    let output = done["response"]["output"].as_array().unwrap().clone();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["summary"][0]["text"], "Let me think.");
    let sealed = output[0]["encrypted_content"].as_str().unwrap();
    assert!(sealed.contains(common::THINKING_SIGNATURE), "{sealed}");
    let call = output
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();
    let first = anthropic.received()[0].json();
    assert_eq!(first["thinking"]["type"], "enabled");

    // The next turn: everything so far, the call's output last.
    let mut input = vec![ask.clone()];
    input.extend(output.iter().cloned());
    input
        .push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "18C"}));
    let r = post(
        &gw,
        "/v1/responses",
        &[("x-mock", "anthropic,thinking")],
        &turn(Value::Array(input), false),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let second = anthropic.received()[1].json();
    assert_eq!(second["thinking"]["type"], "enabled");
    let assistant = &second["messages"][1];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(
        assistant["content"][0],
        json!({"type": "thinking", "thinking": "Let me think.", "signature": common::THINKING_SIGNATURE})
    );
    assert_eq!(assistant["content"][1]["type"], "tool_use");
    // The JSON answer seals its thinking the same way.
    let answer = r.json();
    assert!(answer["output"][0]["encrypted_content"]
        .as_str()
        .is_some_and(|s| s.contains(common::THINKING_SIGNATURE)));
}

/// A follow-up (`previous_response_id`) to a provider with its own Responses API goes to the
/// endpoint that answered the response it follows: an id one key minted is unknown to another.
/// Two OpenAI endpoints of one model, with their own keys, take turns otherwise.
#[test]
fn a_native_responses_follow_up_goes_to_the_endpoint_that_answered() {
    let (a, b) = (Mock::start(), Mock::start());
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-5, base_url: '{}', access_key: sk-key-a}}\n  - {{model: openai/gpt-5, base_url: '{}', access_key: sk-key-b}}\n",
        a.url(),
        b.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let minter = |id: &str| {
        if id == format!("resp_mock_{}", a.addr.port()) {
            &a
        } else {
            &b
        }
    };
    for round in 0..3 {
        // Two new conversations (the endpoints take turns), then their follow-ups in the other
        // order, where taking turns would send each to the wrong endpoint.
        let ids: Vec<String> = (0..2)
            .map(|_| {
                let hi = json!({"model": "openai/gpt-5", "input": "hi"});
                let r = post(&gw, "/v1/responses", &[], &hi);
                assert_eq!(r.status, 200);
                r.json()["id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_ne!(ids[0], ids[1], "round {round}: both endpoints answered");
        for id in ids.iter().rev() {
            let follow =
                json!({"model": "openai/gpt-5", "input": "and?", "previous_response_id": id});
            assert_eq!(post(&gw, "/v1/responses", &[], &follow).status, 200);
            // The endpoint that minted the id (its port is in it) got the follow-up.
            let got = minter(id).received().pop().unwrap();
            assert_eq!(
                got.json()["previous_response_id"],
                id.as_str(),
                "round {round}"
            );
        }
    }
    assert!(
        !a.received().is_empty() && !b.received().is_empty(),
        "both endpoints served"
    );
}

/// A Responses client's `web_search` tool on a Claude model: Claude's own server-side web search
/// (not left out, not named in `x-switchyard-dropped-tools`); other hosted tools still are.
#[test]
fn web_search_reaches_claude_as_its_own_server_tool() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let r = post(
        &gw,
        "/v1/responses",
        &[("x-mock", "anthropic")],
        &json!({"model": "anthropic/claude-sonnet-4-5", "input": "News?", "max_output_tokens": 100,
                "tools": [{"type": "web_search"}, {"type": "file_search"},
                          {"type": "function", "name": "f", "parameters": {"type": "object"}}]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-switchyard-dropped-tools"), Some("file_search"));
    let sent = anthropic.only().json();
    let tools = sent["tools"].as_array().unwrap();
    assert_eq!(tools[0]["name"], "f");
    assert_eq!(
        tools[1],
        json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 5})
    );
}
