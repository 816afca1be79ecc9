//! The official OpenAI and Anthropic Python SDKs against the real binary, with mock upstreams of
//! both interfaces: what the SDK hands the user, and what the upstreams received. The SDKs are
//! installed by `scripts/setup --for-tests` from tests/sdk/requirements.txt; the tests fail, not
//! skip, when they cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{yaml, Gateway, Mock, Received};
use serde_json::{json, Value};

/// The Python that has the SDKs: `SWITCHYARD_PYTHON`, else the venv `scripts/setup` makes.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHYARD_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python");
    assert!(
        venv.exists(),
        "the SDKs are not installed: run scripts/setup --for-tests (or set SWITCHYARD_PYTHON)"
    );
    venv
}

/// Runs one SDK script; returns what it printed as JSON.
fn run_script(script: &str, args: &[String], gw: &Gateway) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let out = Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.logs()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An OpenAI-interface provider (passthrough auth, default) and an Anthropic one (managed key).
fn start(openai: &Mock, anthropic: &Mock) -> Gateway {
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', passthrough_auth: true, default: true}}\n  - {{model: anthropic/claude-sonnet-4-5, base_url: '{}', access_key: sk-ant-managed}}\n",
        openai.url(),
        anthropic.url()
    ));
    Gateway::start(&config, &[])
}

#[test]
fn the_openai_python_sdk_works_through_the_gateway() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let seen = run_script(
        "openai_client.py",
        &[
            format!("http://{}/v1", gw.addr),
            "sk-tenant-from-sdk".into(),
            "claude-sonnet-4-5".into(),
        ],
        &gw,
    );

    assert_eq!(
        seen["chat"],
        json!({"content": "hi", "model": "gpt-4o", "total_tokens": 4})
    );
    let mut stream: Vec<Value> = seen["stream"].as_array().unwrap().clone();
    stream.retain(|c| !c.is_null());
    assert_eq!(stream, [json!("t0"), json!("t1"), json!("t2"), json!("t3")]);
    assert_eq!(
        seen["models"],
        json!(["openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
    );
    assert_eq!(
        seen["unknown_model"],
        json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(seen["rate_limited"], json!({"status": 429}));
    // Through an Anthropic provider, translated both ways.
    assert_eq!(
        seen["claude_tools"],
        json!({"finish_reason": "tool_calls", "content": "Checking.", "name": "get_weather", "arguments": {"city": "Paris"}, "prompt_tokens": 13})
    );
    assert_eq!(
        seen["claude_stream"],
        json!({"text": "t0t1t2", "completion_tokens": 5})
    );
    assert_eq!(
        seen["claude_stream_tools"],
        json!({"name": "get_weather", "arguments": {"city": "Paris"}, "finish_reason": "tool_calls"})
    );

    // Streams the SDK closed right after `[DONE]` are successes in metrics and the access log.
    assert_eq!(seen["streams_done"], 20);
    let successes = r#"switchyard_upstream_attempts_total{outcome="success",provider="openai"}"#;
    common::wait_for(
        "every stream's metrics",
        std::time::Duration::from_secs(5),
        || common::sample_value(&gw.metrics(), successes) == 22.0,
    );
    let scrape = gw.metrics();
    assert_eq!(
        common::sample_value(
            &scrape,
            r#"switchyard_upstream_attempts_total{outcome="client_closed",provider="openai"}"#
        ),
        0.0
    );
    assert!(!gw.access_log().contains("client_closed"));

    // What the OpenAI provider received (the unknown model never left the gateway).
    let got = openai.received();
    assert_eq!(got.len(), 23, "{got:#?}");
    for r in &got {
        assert_eq!(r.header("authorization"), Some("Bearer sk-tenant-from-sdk"));
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.json()["model"], "gpt-4o");
    }
    assert_eq!(got[0].json()["x_vendor_field"], json!({"keep": true}));
    assert_eq!(got[1].json()["stream"], json!(true));
    // What the Anthropic provider received: native Messages with the managed key.
    let got = anthropic.received();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some("sk-ant-managed"));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.json()["model"], "claude-sonnet-4-5");
    }
    assert_eq!(got[0].json()["tools"][0]["name"], "get_weather");
}

#[test]
fn the_anthropic_python_sdk_works_through_the_gateway() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let gw = start(&openai, &anthropic);
    let seen = run_script(
        "anthropic_client.py",
        &[
            format!("http://{}", gw.addr),
            "sk-ant-client".into(),
            "anthropic/claude-sonnet-4-5".into(),
            "gpt-4o".into(),
        ],
        &gw,
    );

    assert_eq!(
        seen["claude"],
        json!({"text": "hi", "input_tokens": 10, "cache_read": 2, "stop_reason": "end_turn"})
    );
    assert_eq!(
        seen["claude_stream"],
        json!({"text": "t0t1", "output_tokens": 5})
    );
    assert_eq!(
        seen["gpt_tools"],
        json!({"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}, "stop_reason": "tool_use"})
    );
    assert_eq!(
        seen["gpt_stream"],
        json!({"text": "t0t1t2", "stop_reason": "end_turn", "output_tokens": common::OPENAI_STREAM_USAGE.1})
    );
    assert_eq!(
        seen["gpt_stream_tools"],
        json!({"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}, "stop_reason": "tool_use"})
    );
    assert_eq!(
        seen["unknown_model"],
        json!({"status": 404, "type": "not_found_error"})
    );
    assert_eq!(
        seen["rate_limited"],
        json!({"status": 429, "type": "rate_limit_error"})
    );

    // The Anthropic provider got the SDK's requests as sent, with the managed key.
    let got = anthropic.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some("sk-ant-managed"));
        assert!(r.header("anthropic-version").is_some());
    }
    // The OpenAI provider got chat completions with the client's key re-sent as Bearer.
    let got = openai.received();
    assert_eq!(got.len(), 4);
    for r in &got {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-ant-client"));
        assert_eq!(r.header("x-api-key"), None);
    }
    assert_eq!(
        got[0].json()["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(got[0].json()["tools"][0]["function"]["name"], "get_weather");
}

/// The seed's combined example with a self-hosted router added (conf/examples/preference-routing
/// .yaml), driven by the OpenAI SDK: a quick question lands on gpt-4o-mini, a long document on
/// the vLLM model, and the client's key reaches only the passthrough vLLM endpoint.
#[test]
fn preference_routing_with_the_openai_sdk() {
    let (router, mini, vllm) = (Mock::start(), Mock::start(), Mock::start());
    router.set_mode("route_by_length=6000");
    let config = yaml(&format!(
        r#"
overrides:
  llm_routing_model: plano/hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M
model_providers:
  - model: plano/hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M
    base_url: '{router}'
  - model: openai/gpt-4o-mini
    base_url: '{mini}'
    access_key: sk-managed
    default: true
    routing_preferences:
      - name: quick tasks
        description: Short answers, simple lookups, fast completions
  - model: custom/vllm-llama
    base_url: '{vllm}'
    provider_interface: openai
    passthrough_auth: true
    routing_preferences:
      - name: long context
        description: Processing very long documents, multi-document analysis
"#,
        router = router.url(),
        mini = mini.url(),
        vllm = vllm.url(),
    ));
    let gw = Gateway::start(&config, &[]);
    let seen = run_script(
        "routing_client.py",
        &[format!("http://{}/v1", gw.addr)],
        &gw,
    );
    assert_eq!(seen["quick"]["route"], "quick tasks (router)", "{seen}");
    assert_eq!(seen["long"]["route"], "long context (router)", "{seen}");
    let quick = mini.only();
    assert!(String::from_utf8_lossy(&quick.body).contains("capital of France"));
    assert_eq!(quick.header("authorization"), Some("Bearer sk-managed"));
    let long = vllm.only();
    assert!(String::from_utf8_lossy(&long.body).contains("Summarize this contract"));
    assert_eq!(long.json()["model"], "vllm-llama");
    assert_eq!(long.header("authorization"), Some("Bearer sk-client"));
    // The router saw both questions, and never the client's key.
    assert_eq!(router.received().len(), 2);
    assert!(router
        .received()
        .iter()
        .all(|r| r.header("authorization").is_none()));
}

/// What Claude Code and Cursor send, through the SDKs, to the other API: the SDKs parse every
/// translated answer, and the upstreams receive requests their APIs accept.
#[test]
fn coding_agents_requests_reach_the_other_api_intact() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-5, base_url: '{}', passthrough_auth: true}}\n  - {{model: anthropic/claude-sonnet-4-5, base_url: '{}', access_key: sk-ant-managed}}\n",
        openai.url(),
        anthropic.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let seen = run_script(
        "agent_client.py",
        &[
            format!("http://{}", gw.addr),
            "sk-client".into(),
            "claude-sonnet-4-5".into(),
            "gpt-5".into(),
        ],
        &gw,
    );
    let long = "mcp__acme_internal_knowledge_base__search_documents_by_semantic_similarity";
    // Claude Code got its own tool name back, though gpt-5 saw a shortened one.
    assert_eq!(
        seen["claude_code"],
        json!({"type": "tool_use", "name": long, "stop_reason": "tool_use"})
    );
    assert!(seen["count_tokens"].as_u64().unwrap() > 1_600, "{seen}");
    assert_eq!(
        seen["claude_code_native"],
        json!({"name": long, "stop_reason": "tool_use"})
    );
    assert_eq!(seen["cursor_native"], json!({"name": "read_file"}));
    let to_openai = openai.received();
    assert_eq!(to_openai.len(), 2);
    // Same API: the Cursor request reached gpt-5 as the SDK sent it.
    let native = to_openai[1].json();
    assert_eq!(native["messages"][0]["role"], "developer");
    assert_eq!(native["parallel_tool_calls"], true);
    let sent = to_openai[0].json();
    assert_eq!(sent["model"], "gpt-5");
    // Claude Code's user (about 150 characters) as OpenAI takes it: at most 64, stable.
    let user = sent["safety_identifier"].as_str().unwrap();
    assert!(user.len() == 64 && sent.get("user").is_none(), "{user}");
    // Anthropic's betas mean nothing to OpenAI: they stay behind.
    assert_eq!(to_openai[0].header("anthropic-beta"), None);
    assert_eq!(sent["max_completion_tokens"], 32000);
    assert_eq!(sent["reasoning_effort"], "medium");
    assert!(sent.get("max_tokens").is_none());
    let short = sent["tools"][0]["function"]["name"].as_str().unwrap();
    assert!(
        short.len() <= 64 && short.starts_with("mcp__acme"),
        "{short}"
    );
    assert_eq!(sent["tools"].as_array().unwrap().len(), 21);
    let m = sent["messages"].as_array().unwrap();
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "You are Claude Code."})
    );
    assert_eq!(m[2]["tool_calls"][0]["function"]["name"], short);
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "toolu_a", "content": "[tool error] index offline"})
    );
    assert_eq!(m[4]["content"], "settings page");
    let user = m[5]["content"].as_array().unwrap();
    assert_eq!(user[0]["text"], "[images returned by tool call toolu_b]");
    assert_eq!(user[1]["type"], "image_url");
    assert_eq!(user[2]["file"]["filename"], "policy.pdf");
    assert!(user[3]["text"].as_str().unwrap().ends_with("Try again."));

    // Cursor: a named tool on Claude (no parallel limit asked), then structured output.
    assert_eq!(
        seen["cursor"],
        json!({"name": "read_file", "arguments": {"city": "Paris"}, "finish_reason": "tool_calls"})
    );
    assert_eq!(
        seen["cursor_stream"],
        json!({"name": "get_weather", "arguments": {"city": "Paris"}, "finish_reason": "tool_calls"})
    );
    assert_eq!(seen["parsed"], json!({"name": "Ada"}));
    let mut got = anthropic.received();
    assert_eq!(got.len(), 4);
    // Same API: Claude Code's request reached Claude whole (signed thinking, long tool name).
    let native = got.remove(0).json();
    assert_eq!(native["messages"][1]["content"][0]["signature"], "sig-abc");
    assert_eq!(native["tools"][0]["name"], long);
    assert_eq!(
        native["system"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    let cursor = got[0].json();
    assert_eq!(
        cursor["system"],
        json!([{"type": "text", "text": "You are Cursor's agent."}])
    );
    assert_eq!(
        cursor["tool_choice"],
        json!({"type": "tool", "name": "read_file"})
    );
    assert_eq!(cursor["messages"][0]["content"][1]["type"], "image");
    assert_eq!(cursor["max_tokens"], 64000);
    // A user id over Anthropic's 256 characters arrives as its SHA-256.
    let user = cursor["metadata"]["user_id"].as_str().unwrap();
    assert!(
        user.len() == 64 && user.chars().all(|c| c.is_ascii_hexdigit()),
        "{user}"
    );
    assert_eq!(got[1].json()["stream"], true);
    let parse = got[2].json();
    assert_eq!(
        parse["output_config"]["format"]["schema"]["properties"]["name"]["type"],
        "string"
    );
    assert_eq!(got[2].header("x-api-key"), Some("sk-ant-managed"));
}

/// Gateway keys (`clients`) as the official SDKs send them: the right key passes, a wrong one
/// is the SDK's authentication error, a forbidden model its permission error.
#[test]
fn both_sdks_present_gateway_keys_their_own_way() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "listeners: [{{name: llm, type: model, auth: required}}]\nmodel_providers:\n  - {{model: openai/gpt-4o-mini, base_url: '{url}', access_key: sk-openai-managed}}\n  - {{model: openai/gpt-4o, base_url: '{url}', access_key: sk-openai-managed}}\n  - {{model: anthropic/claude-sonnet-4-5, base_url: '{url}', access_key: sk-ant-managed}}\nclients:\n  - {{name: team, key: $TEAM_KEY, models: [openai/gpt-4o-mini, anthropic/claude-sonnet-4-5]}}\n",
        url = mock.url()
    ));
    let gw = Gateway::start(&config, &[("TEAM_KEY", "sk-gw-team-0123")]);
    let seen = run_script(
        "keys_client.py",
        &[
            format!("http://{}", gw.addr),
            "sk-gw-team-0123".into(),
            "gpt-4o-mini".into(),
            "gpt-4o".into(),
            "claude-sonnet-4-5".into(),
        ],
        &gw,
    );
    assert_eq!(
        seen,
        json!({
            "openai_right": "ok",
            "openai_wrong": {"status": 401, "error": "AuthenticationError"},
            "openai_forbidden": {"status": 403, "error": "PermissionDeniedError"},
            "anthropic_right": "ok",
            "anthropic_wrong": {"status": 401, "error": "AuthenticationError"},
            "anthropic_forbidden": {"status": 403, "error": "PermissionDeniedError"},
        })
    );
    // Only the two allowed requests went out, each with the provider's own key.
    let got = mock.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer sk-openai-managed")
    );
    assert_eq!(got[1].header("x-api-key"), Some("sk-ant-managed"));
    assert!(got
        .iter()
        .all(|r| r.headers.iter().all(|(_, v)| !v.contains("sk-gw-team"))));
}

/// The OpenAI SDK's Responses API (strict validation, the stream helper, a tool loop,
/// `responses.parse`) through providers without a Responses API of their own: a chat-completions
/// one and an Anthropic one. The script holds every raw stream to the SDK's and Codex's rules;
/// here, what the upstreams received.
#[test]
fn the_openai_sdk_responses_api_works_through_translation() {
    let (chat, anthropic) = (Mock::start(), Mock::start());
    let config = yaml(&format!(
        "model_providers:\n  - {{model: groq/llama-3.3-70b, base_url: '{}', access_key: sk-groq}}\n  - {{model: anthropic/claude-sonnet-4-5, base_url: '{}', access_key: sk-ant-managed}}\n",
        chat.url(),
        anthropic.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let seen = run_script(
        "responses_client.py",
        &[
            format!("http://{}/v1", gw.addr),
            "groq/llama-3.3-70b".into(),
            "anthropic/claude-sonnet-4-5".into(),
        ],
        &gw,
    );

    assert_eq!(seen["json"]["text"], "hi");
    assert_eq!(seen["json"]["status"], "completed");
    assert_eq!(seen["json"]["id_prefix"], "resp_");
    assert_eq!(seen["json"]["instructions"], "Be brief.");
    assert_eq!(seen["json"]["usage"]["input_tokens"], 3);
    assert_eq!(seen["json"]["usage"]["total_tokens"], 4);
    let (prompt, completion, _) = common::OPENAI_STREAM_USAGE;
    assert_eq!(
        seen["stream"],
        json!({"text": "t0t1t2", "status": "completed", "total_tokens": prompt + completion})
    );
    assert_eq!(
        seen["stream_events"],
        json!([
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ])
    );
    assert_eq!(
        seen["tool_call"],
        json!({"type": "function_call", "name": "get_weather", "arguments": {"city": "Paris"}, "dropped": "web_search"})
    );
    assert_eq!(seen["tool_answer"], "hi");
    assert_eq!(seen["tool_stream"]["arguments"], json!({"city": "Paris"}));
    let tool_events = seen["tool_stream"]["events"].as_array().unwrap();
    assert!(tool_events.contains(&json!("response.function_call_arguments.delta")));
    assert!(tool_events.contains(&json!("response.function_call_arguments.done")));
    assert_eq!(seen["parsed"], "Paris");
    assert_eq!(seen["anthropic_json"]["text"], "hi");
    assert_eq!(seen["anthropic_json"]["usage"]["output_tokens"], 5);
    assert_eq!(seen["anthropic_stream"]["text"], "t0t1");
    assert_eq!(
        seen["previous"],
        json!({"status": 400, "code": "previous_response_not_found", "param": "previous_response_id"})
    );

    // What the chat upstream received: chat requests, instructions as the system message, the
    // hosted tool left out, the tool loop as chat messages; streams ask for usage.
    let got = chat.received();
    assert!(got.iter().all(|r| r.path.ends_with("/chat/completions")));
    assert!(got
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer sk-groq")));
    let first = got[0].json();
    assert_eq!(first["model"], "llama-3.3-70b");
    assert_eq!(
        first["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    );
    let offered = got
        .iter()
        .map(Received::json)
        .find(|b| b.get("tools").is_some())
        .unwrap();
    assert_eq!(offered["tools"].as_array().unwrap().len(), 1);
    assert_eq!(offered["tools"][0]["function"]["name"], "get_weather");
    let answered = got
        .iter()
        .map(Received::json)
        .find(|b| b["messages"].as_array().unwrap().len() == 3)
        .unwrap();
    assert_eq!(answered["messages"][1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        answered["messages"][2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"})
    );
    let streamed: Vec<Value> = got
        .iter()
        .map(Received::json)
        .filter(|b| b["stream"] == true)
        .collect();
    assert!(streamed.len() >= 3);
    assert!(streamed
        .iter()
        .all(|b| b["stream_options"]["include_usage"] == true));
    // And the Anthropic upstream: Messages, with its own key.
    let got = anthropic.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.path == "/v1/messages"));
    assert!(got
        .iter()
        .all(|r| r.header("x-api-key") == Some("sk-ant-managed")));
    assert_eq!(got[0].json()["max_tokens"], 100);
}

/// Runs the conversation script through `a` and `b` (the same gateway, or two replicas) to a
/// chat-completions upstream; checks what the SDK saw and what the upstream received: every
/// turn carries the whole conversation before it, and `store: false` keeps nothing.
fn conversations_continue(a: &Gateway, b: &Gateway, upstream: &Mock) {
    let seen = run_script(
        "conversation_client.py",
        &[
            format!("http://{}/v1", a.addr),
            format!("http://{}/v1", b.addr),
            "groq/llama-3.3-70b".into(),
        ],
        a,
    );
    assert_eq!(seen["turns"], json!(["Hello Ada", "Ada", "t0t1"]));
    assert_eq!(seen["ids_distinct"], true);
    assert_eq!(seen["tool"], json!({"call": "get_weather", "answer": "hi"}));
    assert_eq!(
        seen["unstored"],
        json!({"status": 400, "code": "previous_response_not_found", "param": "previous_response_id"})
    );

    let got: Vec<Value> = upstream.received().iter().map(Received::json).collect();
    // Three turns, two tool-loop turns, the unstored one; the follow-up of it never left.
    assert_eq!(got.len(), 6, "{got:#?}");
    let user = |text: &str| json!({"role": "user", "content": text});
    let assistant = |text: &str| json!({"role": "assistant", "content": text});
    assert_eq!(
        got[1]["messages"],
        json!([
            user("My name is Ada."),
            assistant("Hello Ada"),
            user("What is my name?")
        ]),
        "instructions belong to their own turn; the history is the turns"
    );
    assert_eq!(
        got[2]["messages"],
        json!([
            user("My name is Ada."),
            assistant("Hello Ada"),
            user("What is my name?"),
            assistant("Ada"),
            user("Spell it.")
        ])
    );
    assert_eq!(got[2]["stream"], true);
    assert!(got.iter().all(|b| b.get("previous_response_id").is_none()));
    // The tool loop: the call came back from the kept conversation, the output from the client.
    let loop_turn = &got[4]["messages"];
    assert_eq!(loop_turn[0], user("Weather in Paris?"));
    assert_eq!(
        loop_turn[1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        loop_turn[2],
        json!({"role": "tool", "tool_call_id": loop_turn[1]["tool_calls"][0]["id"], "content": "18C, sunny"})
    );
    assert_eq!(got[5]["messages"], json!([user("Forget this.")]));
}

fn conversation_config(upstream: &Mock, extra: &str) -> Value {
    yaml(&format!(
        "model_providers:\n  - {{model: groq/llama-3.3-70b, base_url: '{}', access_key: sk-groq}}\n{extra}",
        upstream.url()
    ))
}

#[test]
fn responses_conversations_are_kept_in_memory() {
    let upstream = Mock::start();
    let gw = Gateway::start(&conversation_config(&upstream, ""), &[]);
    conversations_continue(&gw, &gw, &upstream);
    // Five turns kept (the unstored one not), three continued, one follow-up not found; seven
    // Responses requests in all.
    let sample = |s: &str| common::sample_value(&gw.metrics(), s);
    common::wait_for("the last request's metrics", Duration::from_secs(3), || {
        sample(r#"switchyard_client_api_requests_total{api="responses"}"#) == 7.0
    });
    assert_eq!(
        sample(r#"switchyard_conversations_total{result="kept"}"#),
        5.0
    );
    assert_eq!(
        sample(r#"switchyard_conversations_total{result="continued"}"#),
        3.0
    );
    assert_eq!(
        sample(r#"switchyard_conversations_total{result="not_found"}"#),
        1.0
    );
}

#[test]
fn responses_conversations_are_shared_by_replicas_through_redis() {
    let redis = common::redis::Redis::start();
    let upstream = Mock::start();
    let config = conversation_config(&upstream, "state:\n  redis: {url: $REDIS_URL}\n");
    let url = redis.url();
    let one = Gateway::start(&config, &[("REDIS_URL", url.as_str())]);
    let two = Gateway::start(&config, &[("REDIS_URL", url.as_str())]);
    conversations_continue(&one, &two, &upstream);
    let keys = redis.command(&["KEYS", "switchyard:response:*"]);
    assert!(
        keys.is_some_and(|k| k.starts_with('*')),
        "kept under switchyard:response:"
    );
}

#[test]
fn responses_conversations_are_kept_in_postgres_across_restarts() {
    let pg = common::postgres::Postgres::start();
    let upstream = Mock::start();
    let config = conversation_config(
        &upstream,
        "state_storage:\n  type: postgres\n  connection_string: $DATABASE_URL\n",
    );
    let url = pg.url();
    let env = [("DATABASE_URL", url.as_str())];
    // Turns alternate between two processes on one database: as across a restart.
    let one = Gateway::start(&config, &env);
    let two = Gateway::start(&config, &env);
    conversations_continue(&one, &two, &upstream);
    // Plano's table, one row per kept response (three turns and the two tool-loop turns).
    let rows = pg
        .query("SELECT count(*), count(DISTINCT provider) FROM conversation_states")
        .unwrap();
    assert_eq!(rows, "5|1");
    let longest = pg
        .query("SELECT max(jsonb_array_length(input_items)), min(model) FROM conversation_states")
        .unwrap();
    assert_eq!(longest, "6|llama-3.3-70b");

    // With the database gone, a follow-up is refused (503, retry shortly), never sent without
    // its history; a new conversation still goes through.
    let id = pg
        .query("SELECT response_id FROM conversation_states LIMIT 1")
        .unwrap();
    drop(pg);
    let sent = upstream.received().len();
    let follow_up =
        json!({"model": "groq/llama-3.3-70b", "input": "More?", "previous_response_id": id});
    let headers = [("content-type", "application/json")];
    let r = common::request(
        one.addr,
        "POST",
        "/v1/responses",
        &headers,
        follow_up.to_string().as_bytes(),
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["code"], "conversation_store_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(upstream.received().len(), sent);
    let fresh = json!({"model": "groq/llama-3.3-70b", "input": "Hi", "store": false});
    let r = common::request(
        one.addr,
        "POST",
        "/v1/responses",
        &headers,
        fresh.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
}

/// The OpenAI SDK (chat, Responses) and the Anthropic SDK (Messages) on an Amazon Bedrock model:
/// every answer, JSON and streamed, comes from Converse and its binary event stream.
#[test]
fn both_sdks_work_with_a_bedrock_model() {
    let bedrock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: amazon_bedrock/us.amazon.nova-pro-v1:0, base_url: '{}', access_key: bedrock-key}}\n",
        bedrock.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let seen = run_script(
        "bedrock_client.py",
        &[
            format!("http://{}", gw.addr),
            "amazon_bedrock/us.amazon.nova-pro-v1:0".into(),
        ],
        &gw,
    );
    let input = common::BEDROCK_USAGE["inputTokens"].as_u64().unwrap();
    let cache = 2 + 1; // the mock's cache reads and writes
    assert_eq!(
        seen["chat"],
        json!({"text": "hi", "prompt_tokens": input + cache})
    );
    assert_eq!(
        seen["chat_stream"],
        json!({"text": "t0t1t2", "completion_tokens": 5})
    );
    assert_eq!(
        seen["chat_tool"],
        json!({"name": "get_weather", "arguments": {"city": "Paris"}})
    );
    assert_eq!(seen["messages"]["text"], "hi");
    assert_eq!(seen["messages"]["stop_reason"], "end_turn");
    assert_eq!(
        seen["messages_stream"],
        json!({"text": "t0t1", "output_tokens": 5})
    );
    assert_eq!(seen["responses"]["text"], "hi");
    assert_eq!(
        seen["responses_stream"],
        json!({"text": "t0t1", "status": "completed"})
    );
    let got = bedrock.received();
    assert_eq!(got.len(), 7);
    assert!(got.iter().all(|r| r
        .path
        .starts_with("/model/us.amazon.nova-pro-v1:0/converse")));
    assert!(got
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer bedrock-key")));
}
