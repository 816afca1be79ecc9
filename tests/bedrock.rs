//! Amazon Bedrock (`amazon_bedrock/<model-id>`) through the real binary: chat, Messages and
//! Responses clients translated to Converse and back, against a mock that answers as Bedrock
//! does (Converse JSON, the binary event stream with real framing and checksums, Bedrock's
//! errors) and refuses what Bedrock refuses (tests/common/strict.rs). What the upstream received,
//! what the client got, and what /metrics counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::Duration;

use common::{sample_value, yaml, Gateway, Mock, BEDROCK_USAGE};
use serde_json::{json, Value};

const MODEL: &str = "amazon_bedrock/us.amazon.nova-pro-v1:0";

fn start(bedrock: &Mock) -> Gateway {
    let config = yaml(&format!(
        "model_providers:\n  - {{model: {MODEL}, base_url: '{}', access_key: $AWS_BEARER_TOKEN_BEDROCK}}\n",
        bedrock.url()
    ));
    Gateway::start(&config, &[("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key")])
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

fn chat_text(events: &[(Option<String>, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn a_chat_client_gets_bedrock_answers_json_and_streamed() {
    let bedrock = Mock::start();
    let gw = start(&bedrock);
    let r = post(
        &gw,
        "/v1/chat/completions?beta=true",
        &[("authorization", "Bearer sk-client")],
        &json!({"model": MODEL, "max_tokens": 50, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer = r.json();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "hi");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    // Bedrock's inputTokens leave the cache out; OpenAI's prompt_tokens count it.
    assert_eq!(answer["usage"]["prompt_tokens"], 13);
    assert_eq!(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 2);

    let got = bedrock.only();
    // The model in the path (`:` kept), Converse, no query string of the client's API.
    assert_eq!(got.path, "/model/us.amazon.nova-pro-v1:0/converse");
    assert_eq!(got.header("authorization"), Some("Bearer bedrock-api-key"));
    let sent = got.json();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"text": "Hello"}]}])
    );
    assert_eq!(sent["inferenceConfig"]["maxTokens"], 50);

    let events = stream(
        &gw,
        "/v1/chat/completions",
        &[("x-mock", "sse=3,split")],
        &json!({"model": MODEL, "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "Count"}]}),
    );
    assert_eq!(chat_text(&events), "t0t1t2");
    let n = events.len();
    assert_eq!(events[n - 1].1, Value::String("[DONE]".into()));
    assert_eq!(events[n - 2].1["usage"]["completion_tokens"], 5);
    assert_eq!(events[n - 3].1["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        bedrock.received()[1].path,
        "/model/us.amazon.nova-pro-v1:0/converse-stream"
    );

    // Listed among the gateway's models, as any configured provider is.
    let listed = common::request(gw.addr, "GET", "/v1/models", &[], b"").json();
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == MODEL));

    // Both answers counted with Bedrock's usage (once each is logged).
    let prompt = format!(
        r#"switchyard_tokens_total{{client="anonymous",kind="prompt",model="{MODEL}",provider="amazon_bedrock"}}"#
    );
    let want = 2.0 * BEDROCK_USAGE["inputTokens"].as_f64().unwrap();
    common::wait_for("both answers' tokens", Duration::from_secs(3), || {
        sample_value(&gw.metrics(), &prompt) == want
    });
}

#[test]
fn a_tool_loop_through_bedrock() {
    let bedrock = Mock::start();
    let gw = start(&bedrock);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock", "tools")],
        &json!({"model": MODEL, "tools": tools, "tool_choice": "required",
                "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let message = &r.json()["choices"][0]["message"];
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "tool_calls");
    let sent = bedrock.received()[0].json();
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
    assert_eq!(sent["toolConfig"]["toolChoice"], json!({"any": {}}));

    // The next turn offers no tools any more: Bedrock needs a toolConfig for the history
    // anyway (the strict mock refuses without one).
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[],
        &json!({"model": MODEL, "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "18C"}
        ]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sent = bedrock.received()[1].json();
    assert_eq!(
        sent["messages"][1]["content"][1]["toolUse"]["input"],
        json!({"city": "Paris"})
    );
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"]["toolUseId"],
        call["id"]
    );

    // Streamed: the call's arguments in fragments, reassembled by the client.
    let events = stream(
        &gw,
        "/v1/chat/completions",
        &[("x-mock", "tools")],
        &json!({"model": MODEL, "stream": true, "tools": tools,
                "messages": [{"role": "user", "content": "Weather?"}]}),
    );
    let arguments: String = events
        .iter()
        .filter_map(|(_, d)| {
            d["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert_eq!(arguments, r#"{"city": "Paris"}"#);
}

#[test]
fn messages_and_responses_clients_reach_bedrock_through_chat() {
    let bedrock = Mock::start();
    let gw = start(&bedrock);
    let anthropic = [
        ("x-api-key", "sk-client"),
        ("anthropic-version", "2023-06-01"),
    ];
    let r = post(
        &gw,
        "/v1/messages?beta=true",
        &anthropic,
        &json!({"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let m = r.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["content"][0]["text"], "hi");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(
        bedrock.received()[0].path,
        "/model/us.amazon.nova-pro-v1:0/converse"
    );
    assert_eq!(
        bedrock.received()[0].header("authorization"),
        Some("Bearer bedrock-api-key"),
        "the provider's key, never the client's"
    );

    let events = stream(
        &gw,
        "/v1/messages",
        &[anthropic[0], anthropic[1], ("x-mock", "sse=2")],
        &json!({"model": MODEL, "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "Count"}]}),
    );
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "t0t1");
    let delta = events
        .iter()
        .find(|(n, _)| n.as_deref() == Some("message_delta"))
        .unwrap();
    assert_eq!(delta.1["usage"]["output_tokens"], 5);

    let r = post(
        &gw,
        "/v1/responses",
        &[],
        &json!({"model": MODEL, "input": "Hello", "instructions": "Be brief."}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let resp = r.json();
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["output"][0]["content"][0]["text"], "hi");
    assert_eq!(resp["usage"]["input_tokens"], 13);
    let events = stream(
        &gw,
        "/v1/responses",
        &[("x-mock", "sse=2")],
        &json!({"model": MODEL, "input": "Count", "stream": true}),
    );
    let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "t0t1");
    assert_eq!(done["usage"]["output_tokens"], 5);
}

#[test]
fn bedrock_errors_reach_each_client_in_its_shape() {
    let bedrock = Mock::start();
    let gw = start(&bedrock);
    // An HTTP error: Bedrock's `{"message"}`, the status kept.
    let r = post(
        &gw,
        "/v1/messages",
        &[("x-mock", "status=403")],
        &json!({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["message"], "mock AccessDeniedException");
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock", "status=400")],
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "mock ValidationException");

    // An exception mid-stream ends the stream with an error event in the client's API.
    let events = stream(
        &gw,
        "/v1/chat/completions",
        &[("x-mock", "sse=3,exception=throttlingException")],
        &json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(chat_text(&events), "t0");
    let last = &events.last().unwrap().1;
    assert_eq!(last["error"]["code"], "rate_limit_exceeded");
    assert_eq!(last["error"]["message"], "mock throttlingException");
    let events = stream(
        &gw,
        "/v1/responses",
        &[("x-mock", "sse=3,exception=modelStreamErrorException")],
        &json!({"model": MODEL, "input": "hi", "stream": true}),
    );
    assert_eq!(events.last().unwrap().0.as_deref(), Some("response.failed"));

    // A remote image cannot be sent to Bedrock: refused before any request, saying why.
    let sent = bedrock.received().len();
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[],
        &json!({"model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    );
    assert_eq!(r.status, 400);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("base64 data URLs"), "{message}");
    assert_eq!(bedrock.received().len(), sent);
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm), to read `x-amz-date`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A Bedrock provider without an `access_key` signs its requests with the environment's AWS
/// credentials (SigV4, service `bedrock`, the region from `AWS_REGION` for a host that names
/// none): the signature checks out over what the upstream received, body hash included.
#[test]
fn bedrock_requests_are_signed_with_the_environments_aws_credentials() {
    let bedrock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: {MODEL}, base_url: '{}'}}\n",
        bedrock.url()
    ));
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let gw = Gateway::start(
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", "session-token"),
            ("AWS_REGION", "us-west-2"),
        ],
    );
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-client")],
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = bedrock.only();
    let auth = got.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(auth.contains("/us-west-2/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="), "{auth}");
    assert!(
        !auth.contains("sk-client"),
        "the client's credential stays here"
    );
    assert_eq!(got.header("x-amz-security-token"), Some("session-token"));
    // The signature over what arrived, recomputed at the time the request says.
    let date = got.header("x-amz-date").unwrap();
    let n = |r: std::ops::Range<usize>| date[r].parse::<i64>().unwrap();
    let secs = days_from_civil(n(0..4), n(4..6), n(6..8)) * 86_400
        + n(9..11) * 3600
        + n(11..13) * 60
        + n(13..15);
    let at = std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
    let creds = switchyard::config::AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: switchyard::config::Secret::new(secret.into()),
        session_token: Some(switchyard::config::Secret::new("session-token".into())),
        region: "us-west-2".into(),
    };
    let expected = switchyard::sigv4::sign(
        &switchyard::sigv4::Signed {
            method: "POST",
            host: got.header("host").unwrap(),
            path: &got.path,
            query: "",
            content_type: got.header("content-type").unwrap(),
            body: &got.body,
            service: "bedrock",
        },
        &creds,
        at,
    );
    assert_eq!(expected[0], ("authorization", auth.to_owned()));
}
