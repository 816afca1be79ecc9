//! Preference routing on the real binary: a mock router model answers in either form, and the
//! request lands where the route says, or, whenever the router fails, where the client asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::{Duration, Instant};

use common::{chat, yaml, Gateway, Mock};
use serde_json::{json, Value};

struct Setup {
    router: Mock,
    quick: Mock,
    long: Mock,
    big: Mock,
    gw: Gateway,
}

/// A router at `router_model` (its id decides the answer form), three model upstreams and two
/// routes; `long_url` replaces the long-context upstream (to make it fail).
fn setup(router_model: &str, long_url: Option<String>) -> Setup {
    setup_with(router_model, long_url, "")
}

fn setup_with(router_model: &str, long_url: Option<String>, extra: &str) -> Setup {
    let (router, quick, long, big) = (Mock::start(), Mock::start(), Mock::start(), Mock::start());
    let long_url = long_url.unwrap_or_else(|| long.url());
    let config = yaml(&format!(
        r#"
overrides:
  llm_routing_model: plano/{router_model}
model_providers:
  - {{model: plano/{router_model}, base_url: '{router}'}}
  - {{model: openai/gpt-4o-mini, base_url: '{quick}', access_key: sk-quick}}
  - {{model: vllm/llama, base_url: '{long_url}'}}
  - {{model: openai/gpt-4o, base_url: '{big}', access_key: sk-big}}
routing_preferences:
  - {{name: quick tasks, description: short factual questions, models: [openai/gpt-4o-mini]}}
  - {{name: long context, description: summarizing long documents, models: [vllm/llama, openai/gpt-4o]}}
{extra}
"#,
        router = router.url(),
        quick = quick.url(),
        big = big.url(),
    ));
    let gw = Gateway::start(&config, &[]);
    Setup {
        router,
        quick,
        long,
        big,
        gw,
    }
}

fn ask(gw: &Gateway, model: &str, text: &str) -> common::Response {
    chat(
        gw.addr,
        &[],
        &json!({"model": model, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text}
        ]}),
    )
}

fn route_header(resp: &common::Response) -> String {
    resp.header("x-switchyard-route").unwrap_or("").to_owned()
}

#[test]
fn the_orchestrators_route_takes_the_request_to_its_first_model() {
    let s = setup("Plano-Orchestrator", None);
    s.router.set_mode(r#"reply={"route": ["long context"]}"#);
    let resp = ask(&s.gw, "gpt-4o-mini", "Summarize this 80-page contract.");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(route_header(&resp), "long context (router)");
    // The long-context model answered, with its own id in the body; nobody else was asked.
    let served = s.long.only();
    assert_eq!(served.json()["model"], "llama");
    assert!(s.quick.received().is_empty() && s.big.received().is_empty());
    // The router was asked once, through the proxy phase: the chat API at its base_url, its
    // own model id, one user message holding the orchestrator prompt.
    let asked = s.router.only();
    assert_eq!(asked.path, "/v1/chat/completions");
    let body = asked.json();
    assert_eq!(body["model"], "Plano-Orchestrator");
    assert_eq!(body["temperature"], 0.01);
    let prompt = body["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.contains(r#"{"name": "long context", "description": "summarizing long documents", "parameters": {"type": "object", "properties": {}, "required": []}}"#), "{prompt}");
    assert!(
        prompt.contains("\"content\": \"Summarize this 80-page contract.\""),
        "{prompt}"
    );
    assert!(
        !prompt.contains("Be brief."),
        "system messages are not shown to the router"
    );
    // Counted and logged.
    assert_eq!(
        s.gw.metric(r#"switchyard_router_decisions_total{outcome="routed",route="long context"}"#),
        1.0
    );
    assert_eq!(
        s.gw.metric(r#"switchyard_upstream_attempts_total{outcome="success",provider="plano"}"#),
        1.0
    );
    common::wait_for("the access-log line", Duration::from_secs(5), || {
        s.gw.access_log()
            .contains(r#""route":"long context (router)""#)
    });
}

#[test]
fn the_arch_router_form_is_asked_for_one_route() {
    let s = setup("Arch-Router-1.5B", None);
    s.router.set_mode(r#"reply={"route": "quick tasks"}"#);
    let resp = ask(&s.gw, "gpt-4o", "What is the capital of France?");
    assert_eq!(resp.status, 200);
    assert_eq!(route_header(&resp), "quick tasks (router)");
    assert_eq!(s.quick.received().len(), 1);
    let prompt = s.router.only().json()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.contains(r#"[{"name":"quick tasks","description":"short factual questions"},{"name":"long context","description":"summarizing long documents"}]"#), "{prompt}");
    assert!(prompt.contains(r#"{"route": "other"}"#), "{prompt}");
}

#[test]
fn no_route_leaves_the_request_on_the_clients_model() {
    let s = setup("Plano-Orchestrator", None);
    for (i, reply) in [r#"{"route": []}"#, r#"{"route": ["poetry"]}"#]
        .into_iter()
        .enumerate()
    {
        s.router.set_mode(&format!("reply={reply}"));
        let resp = ask(&s.gw, "gpt-4o", &format!("hello {i}"));
        assert_eq!(resp.status, 200);
        assert_eq!(route_header(&resp), "none (router)", "{reply}");
    }
    assert_eq!(s.big.received().len(), 2);
    assert_eq!(
        s.gw.metric(r#"switchyard_router_decisions_total{outcome="no_route",route="none"}"#),
        2.0
    );
}

#[test]
fn a_failing_router_fails_open_to_the_clients_model() {
    let s = setup_with("Plano-Orchestrator", None, "routing: {router_timeout: 1s}");
    for (mode, why) in [
        ("reply=I would pick the quick one", "names no route"),
        ("status=500", "answered an error"),
        ("delay_ms=3000", "no answer in time"),
    ] {
        s.router.set_mode(mode);
        let started = Instant::now();
        let resp = ask(&s.gw, "gpt-4o", "hello");
        assert_eq!(
            resp.status,
            200,
            "{mode}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let header = route_header(&resp);
        assert!(
            header.starts_with("none (fail-open: ") && header.contains(why),
            "{mode}: {header}"
        );
        // routing.router_timeout (1 s here) bounds the wait.
        assert!(started.elapsed() < Duration::from_millis(1900), "{mode}");
    }
    assert_eq!(s.big.received().len(), 3);
    assert_eq!(
        s.gw.metric(r#"switchyard_router_decisions_total{outcome="failed_open",route="none"}"#),
        3.0
    );
}

#[test]
fn a_routes_next_model_takes_over_when_the_first_fails() {
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let s = setup("Plano-Orchestrator", Some(dead));
    s.router.set_mode(r#"reply={"route": ["long context"]}"#);
    let resp = ask(&s.gw, "gpt-4o-mini", "Summarize this book.");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(s.big.only().json()["model"], "gpt-4o");
    assert!(s.long.received().is_empty() && s.quick.received().is_empty());
}

#[test]
fn a_request_without_messages_is_not_routed() {
    let s = setup("Plano-Orchestrator", None);
    s.router.set_mode(r#"reply={"route": ["long context"]}"#);
    let resp = chat(s.gw.addr, &[], &json!({"model": "gpt-4o", "prompt": "x"}));
    assert_eq!(resp.status, 200);
    assert!(resp.header("x-switchyard-route").is_none());
    assert!(s.router.received().is_empty());
    let _: Value = resp.json();
}

fn ask_in_session(gw: &Gateway, session: &str, text: &str) -> common::Response {
    chat(
        gw.addr,
        &[("x-model-affinity", session)],
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}),
    )
}

#[test]
fn the_same_question_is_not_asked_twice() {
    let s = setup("Plano-Orchestrator", None);
    s.router.set_mode(r#"reply={"route": ["quick tasks"]}"#);
    let first = ask(&s.gw, "gpt-4o", "What is 2+2?");
    let again = ask(&s.gw, "gpt-4o", "What is 2+2?");
    assert_eq!(route_header(&first), "quick tasks (router)");
    assert_eq!(route_header(&again), "quick tasks (cache)");
    assert_eq!(s.router.received().len(), 1);
    assert_eq!(s.quick.received().len(), 2);
    // Another question is asked.
    ask(&s.gw, "gpt-4o", "What is 3+3?");
    assert_eq!(s.router.received().len(), 2);
    assert_eq!(
        s.gw.metric(r#"switchyard_router_decisions_total{outcome="cache",route="quick tasks"}"#),
        1.0
    );
}

#[test]
fn a_session_keeps_its_first_route_until_its_pin_expires() {
    let s = setup_with(
        "Plano-Orchestrator",
        None,
        "routing: {session_ttl_seconds: 2, session_max_entries: 100}",
    );
    s.router.set_mode(r#"reply={"route": ["long context"]}"#);
    let first = ask_in_session(&s.gw, "s1", "Summarize this long report.");
    assert_eq!(route_header(&first), "long context (router)");
    // The router would now say otherwise, but the session stays where it started.
    s.router.set_mode(r#"reply={"route": ["quick tasks"]}"#);
    let later = ask_in_session(&s.gw, "s1", "And what is 2+2?");
    assert_eq!(route_header(&later), "long context (pinned)");
    assert_eq!(
        s.router.received().len(),
        1,
        "a pinned session does not ask the router"
    );
    assert_eq!(s.long.received().len(), 2);
    // Another session is its own.
    let other = ask_in_session(&s.gw, "s2", "And what is 2+2?");
    assert_eq!(route_header(&other), "quick tasks (router)");
    // After session_ttl_seconds the router is asked again.
    std::thread::sleep(Duration::from_millis(2200));
    let expired = ask_in_session(&s.gw, "s1", "What is 5+5?");
    assert_eq!(route_header(&expired), "quick tasks (router)");
    assert_eq!(s.router.received().len(), 3);
}

#[test]
fn preferences_in_the_body_replace_the_configs_and_never_go_upstream() {
    let s = setup("Plano-Orchestrator", None);
    s.router.set_mode(r#"reply={"route": ["code"]}"#);
    let resp = chat(
        s.gw.addr,
        &[],
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "write quicksort"}],
                "routing_preferences": [{"name": "code", "description": "writing code", "models": ["openai/gpt-4o"]}]}),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(route_header(&resp), "code (router)");
    let served = s.big.only().json();
    assert!(served.get("routing_preferences").is_none(), "{served}");
    assert_eq!(served["messages"][0]["content"], "write quicksort");
    let prompt = s.router.only().json()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        prompt.contains(r#""name": "code""#) && !prompt.contains("long context"),
        "{prompt}"
    );
    // A preference naming a model the gateway does not serve is the client's error.
    let bad = chat(
        s.gw.addr,
        &[],
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
                "routing_preferences": [{"name": "code", "description": "d", "models": ["nope/model"]}]}),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nope/model"));
    assert_eq!(s.big.received().len(), 1);
}

#[test]
fn the_routing_api_answers_the_decision_alone() {
    let s = setup("Plano-Orchestrator", None);
    s.router.set_mode(r#"reply={"route": ["long context"]}"#);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarize this."}]});
    let resp = common::request(
        s.gw.addr,
        "POST",
        "/routing/v1/chat/completions",
        &[("x-model-affinity", "s9")],
        body.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let v = resp.json();
    assert_eq!(v["models"], json!(["vllm/llama", "openai/gpt-4o"]));
    assert_eq!(v["route"], "long context");
    assert_eq!(v["session_id"], "s9");
    assert_eq!(v["pinned"], false);
    assert_eq!(v["trace_id"], resp.header("x-request-id").unwrap());
    // Asked again in the session: pinned. The Messages form works the same way.
    let again = common::request(
        s.gw.addr,
        "POST",
        "/routing/v1/messages",
        &[("x-model-affinity", "s9")],
        json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "Other."}]})
            .to_string()
            .as_bytes(),
    )
    .json();
    assert_eq!(again["pinned"], true);
    assert_eq!(again["route"], "long context");
    // No route: the client's model, route null.
    s.router.set_mode(r#"reply={"route": []}"#);
    let none = common::request(
        s.gw.addr,
        "POST",
        "/routing/v1/chat/completions",
        &[],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    )
    .json();
    assert_eq!(none["models"], json!(["gpt-4o"]));
    assert_eq!(none["route"], Value::Null);
    // Nothing went to a model.
    assert!(
        s.quick.received().is_empty()
            && s.long.received().is_empty()
            && s.big.received().is_empty()
    );
}

#[test]
fn prefer_fastest_orders_a_routes_models_by_the_latency_the_gateway_saw() {
    let s = setup("Plano-Orchestrator", None);
    // The gateway sees gpt-4o answer slowly and gpt-4o-mini quickly.
    for _ in 0..3 {
        let slow = chat(
            s.gw.addr,
            &[("x-mock", "delay_ms=300")],
            &common::ask("gpt-4o"),
        );
        assert_eq!(slow.status, 200);
        assert_eq!(
            chat(s.gw.addr, &[], &common::ask("gpt-4o-mini")).status,
            200
        );
    }
    s.router.set_mode(r#"reply={"route": ["any"]}"#);
    let decide = |prefer: &str| {
        common::request(
            s.gw.addr,
            "POST",
            "/routing/v1/chat/completions",
            &[],
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("hi {prefer}")}],
                   "routing_preferences": [{"name": "any", "description": "anything",
                       "models": ["openai/gpt-4o", "openai/gpt-4o-mini"],
                       "selection_policy": {"prefer": prefer}}]})
            .to_string()
            .as_bytes(),
        )
        .json()
    };
    assert_eq!(
        decide("fastest")["models"],
        json!(["openai/gpt-4o-mini", "openai/gpt-4o"])
    );
    assert_eq!(
        decide("none")["models"],
        json!(["openai/gpt-4o", "openai/gpt-4o-mini"])
    );
}

#[test]
fn plano_preference_metadata_never_goes_upstream() {
    let s = setup("Plano-Orchestrator", None);
    s.router.set_mode(r#"reply={"route": []}"#);
    let resp = chat(
        s.gw.addr,
        &[],
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                "metadata": {"plano_preference_config": "- name: x", "archgw_preference_config": "y", "team": "blue"}}),
    );
    assert_eq!(resp.status, 200);
    let sent = s.big.only().json();
    assert_eq!(sent["metadata"], json!({"team": "blue"}), "{sent}");
}

/// A v0.3.0 file (preferences inline on providers) and its v0.4.0 form (top level) route alike:
/// the router gets the same prompt, byte for byte, and the request the same model.
#[test]
fn inline_and_top_level_preferences_route_alike() {
    let router = |inline: bool, mock: &Mock, mini: &Mock, big: &Mock| {
        let prefs = if inline {
            format!(
                "  - {{model: openai/gpt-4o-mini, base_url: '{}', access_key: k, routing_preferences: [{{name: quick tasks, description: short questions}}]}}\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: k, routing_preferences: [{{name: code, description: writing code}}]}}\n",
                mini.url(),
                big.url()
            )
        } else {
            format!(
                "  - {{model: openai/gpt-4o-mini, base_url: '{}', access_key: k}}\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: k}}\nrouting_preferences:\n  - {{name: quick tasks, description: short questions, models: [openai/gpt-4o-mini]}}\n  - {{name: code, description: writing code, models: [openai/gpt-4o]}}\n",
                mini.url(),
                big.url()
            )
        };
        let config = yaml(&format!(
            "overrides: {{llm_routing_model: plano/Plano-Orchestrator}}\nmodel_providers:\n  - {{model: plano/Plano-Orchestrator, base_url: '{}'}}\n{prefs}",
            mock.url()
        ));
        Gateway::start(&config, &[])
    };
    let mut prompts = Vec::new();
    for inline in [true, false] {
        let (mock, mini, big) = (Mock::start(), Mock::start(), Mock::start());
        mock.set_mode(r#"reply={"route": ["code"]}"#);
        let gw = router(inline, &mock, &mini, &big);
        let resp = ask(&gw, "gpt-4o-mini", "write a parser");
        assert_eq!(route_header(&resp), "code (router)");
        assert_eq!(big.received().len(), 1);
        prompts.push(mock.only().json()["messages"][0]["content"].clone());
    }
    assert_eq!(prompts[0], prompts[1]);
}

/// archgw's per-request routes (`metadata.archgw_preference_config`, YAML text of
/// `{model, routing_preferences}` entries) replace the config's for that request and never go
/// upstream; a value that cannot be used is ignored, as archgw did.
#[test]
fn archgw_preference_metadata_chooses_the_routes_of_its_request() {
    let s = setup("Arch-Router-1.5B", None);
    s.router.set_mode(r#"reply={"route": "poetry"}"#);
    let yaml_text = "- model: openai/gpt-4o\n  routing_preferences:\n    - {name: poetry, description: writing poems}\n- model: openai/gpt-4o-mini\n  routing_preferences:\n    - {name: arithmetic, description: adding numbers}\n";
    let resp = chat(
        s.gw.addr,
        &[],
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a haiku please"}],
                "metadata": {"archgw_preference_config": yaml_text, "team": "blue"}}),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(route_header(&resp), "poetry (router)");
    let sent = s.big.only().json();
    assert_eq!(sent["metadata"], json!({"team": "blue"}), "{sent}");
    let prompt = s.router.only().json()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        prompt.contains("writing poems") && prompt.contains("adding numbers"),
        "{prompt}"
    );
    assert!(!prompt.contains("long documents"), "{prompt}");
    // Unusable (not a list, or naming a model nobody serves): the config's routes are asked.
    s.router.set_mode(r#"reply={"route": "quick tasks"}"#);
    for bad in [
        "not: [a, list",
        "- {model: nope/x, routing_preferences: [{name: a, description: b}]}",
    ] {
        let resp = chat(
            s.gw.addr,
            &[],
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("q {bad}")}],
                    "metadata": {"archgw_preference_config": bad}}),
        );
        assert_eq!(resp.status, 200, "{bad}");
        assert_eq!(route_header(&resp), "quick tasks (router)", "{bad}");
    }
    assert_eq!(s.quick.received().len(), 2);
}

/// `route_on_user_only`: an agent loop's tool results keep the route the user's message got;
/// the router is asked again when the user speaks.
#[test]
fn route_on_user_only_asks_the_router_only_when_the_user_speaks() {
    let s = setup_with(
        "Plano-Orchestrator",
        None,
        "routing: {route_on_user_only: true}",
    );
    let tools = json!([{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]);
    let mut messages = vec![
        json!({"role": "system", "content": "You are a coding agent."}),
        json!({"role": "user", "content": "Summarize docs/contract.md"}),
    ];
    let send = |messages: &Vec<Value>| {
        chat(
            s.gw.addr,
            &[],
            &json!({"model": "gpt-4o", "messages": messages, "tools": tools}),
        )
    };
    s.router.set_mode(r#"reply={"route": ["long context"]}"#);
    assert_eq!(route_header(&send(&messages)), "long context (router)");
    // The loop goes on with a tool result; the router would now say otherwise.
    s.router.set_mode(r#"reply={"route": ["quick tasks"]}"#);
    messages.push(
        json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "read_file", "arguments": "{\"path\":\"docs/contract.md\"}"}}]}),
    );
    messages.push(json!({"role": "tool", "tool_call_id": "c1", "content": "80 pages of text"}));
    assert_eq!(route_header(&send(&messages)), "long context (replayed)");
    assert_eq!(
        s.router.received().len(),
        1,
        "a tool result does not ask the router"
    );
    assert_eq!(s.long.received().len(), 2);
    // The user speaks again: a new decision.
    messages.push(json!({"role": "assistant", "content": "It is a lease."}));
    messages.push(json!({"role": "user", "content": "What is 2+2?"}));
    assert_eq!(route_header(&send(&messages)), "quick tasks (router)");
    assert_eq!(s.router.received().len(), 2);
    assert_eq!(
        s.gw.metric(
            r#"switchyard_router_decisions_total{outcome="replayed",route="long context"}"#
        ),
        1.0
    );
    // Another conversation's tool result has nothing to replay: the router is asked.
    let other = vec![
        json!({"role": "user", "content": "Another task"}),
        json!({"role": "tool", "tool_call_id": "c9", "content": "result"}),
    ];
    assert_eq!(route_header(&send(&other)), "quick tasks (router)");
}

/// The routing API's ranked models for a route over `models` with `prefer` (a fresh question
/// each time, so no cached answer hides a change of figures).
fn ranked(gw: &Gateway, models: &[&str], prefer: &str) -> Value {
    static ASKED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    common::request(
        gw.addr,
        "POST",
        "/routing/v1/chat/completions",
        &[],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("question {n}")}],
               "routing_preferences": [{"name": "any", "description": "anything",
                   "models": models, "selection_policy": {"prefer": prefer}}]})
        .to_string()
        .as_bytes(),
    )
    .json()["models"]
        .clone()
}

/// Plano's cost source: models.dev's catalog (here served by a mock) ranks `cheapest`; the
/// providers carry no `cost` of their own. Until the catalog has answered, the written order.
#[test]
fn a_cost_catalog_ranks_cheapest_first() {
    let catalog = Mock::start();
    let dir = common::temp_dir("catalog");
    let file = dir.join("api.json");
    std::fs::write(
        &file,
        json!({
            "openai": {"id": "openai", "models": {
                "gpt-4o": {"cost": {"input": 2.5, "output": 10}},
                "gpt-4o-mini": {"cost": {"input": 0.15, "output": 0.6}}
            }},
            "meta": {"models": {"llama-3.3-70b": {"cost": {"input": 0.6, "output": 0.6}}}}
        })
        .to_string(),
    )
    .unwrap();
    catalog.set_mode(&format!("file={}", file.display()));
    let s = setup_with(
        "Plano-Orchestrator",
        None,
        &format!(
            "model_metrics_sources:\n  - {{type: cost, provider: models.dev, url: '{}/api.json', refresh_interval: 3600, model_aliases: {{meta/llama-3.3-70b: vllm/llama}}}}",
            catalog.url()
        ),
    );
    s.router.set_mode(r#"reply={"route": ["any"]}"#);
    let models = ["openai/gpt-4o", "vllm/llama", "openai/gpt-4o-mini"];
    common::wait_for("the catalog to be read", Duration::from_secs(10), || {
        ranked(&s.gw, &models, "cheapest")
            == json!(["openai/gpt-4o-mini", "vllm/llama", "openai/gpt-4o"])
    });
    // Fetched once, as a plain GET of the configured URL.
    let asked = catalog.only();
    assert_eq!(
        (asked.method.as_str(), asked.path.as_str()),
        ("GET", "/api.json")
    );
    // A model request on that route goes to the cheapest model.
    s.router.set_mode(r#"reply={"route": ["code"]}"#);
    let resp = chat(
        s.gw.addr,
        &[],
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "write quicksort"}],
                "routing_preferences": [{"name": "code", "description": "writing code",
                    "models": ["openai/gpt-4o", "openai/gpt-4o-mini"],
                    "selection_policy": {"prefer": "cheapest"}}]}),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(s.quick.received().len(), 1);
    assert!(s.big.received().is_empty());
}

/// Plano's latency source: a Prometheus instant query by `model_name` ranks `fastest`. A real
/// Prometheus scrapes a page of latencies (served by a mock) and switchyard queries it.
#[test]
fn a_prometheus_latency_query_ranks_fastest_first() {
    let page = Mock::start();
    let dir = common::temp_dir("latency");
    let file = dir.join("metrics.txt");
    std::fs::write(
        &file,
        "# TYPE llm_latency_seconds gauge\nllm_latency_seconds{model_name=\"openai/gpt-4o\"} 0.4\nllm_latency_seconds{model_name=\"openai/gpt-4o-mini\"} 2.5\nllm_latency_seconds{model_name=\"vllm/llama\"} 1.1\n",
    )
    .unwrap();
    page.set_mode(&format!("file={}", file.display()));
    let prometheus = common::prometheus::start_prometheus(page.addr);
    let s = setup_with(
        "Plano-Orchestrator",
        None,
        &format!(
            "model_metrics_sources:\n  - {{type: latency, provider: prometheus, url: 'http://{}', query: 'avg by (model_name) (llm_latency_seconds)', refresh_interval: 1}}",
            prometheus.addr
        ),
    );
    s.router.set_mode(r#"reply={"route": ["any"]}"#);
    let models = ["openai/gpt-4o-mini", "vllm/llama", "openai/gpt-4o"];
    // Prometheus needs a scrape first; switchyard asks it every second.
    common::wait_for("the latency figures", Duration::from_secs(30), || {
        ranked(&s.gw, &models, "fastest")
            == json!(["openai/gpt-4o", "vllm/llama", "openai/gpt-4o-mini"])
    });
    // `cheapest` has no cost figures: the written order.
    assert_eq!(ranked(&s.gw, &models, "cheapest"), json!(models));
}

/// A session whose first question was answered from the decision cache is pinned to that
/// decision as much as one the router answered.
#[test]
fn a_sessions_first_decision_pins_it_even_from_the_cache() {
    let s = setup("Plano-Orchestrator", None);
    s.router.set_mode(r#"reply={"route": ["long context"]}"#);
    // Asked without a session: the answer is cached.
    assert_eq!(
        route_header(&ask(&s.gw, "gpt-4o", "Summarize the annual report.")),
        "long context (router)"
    );
    let first = ask_in_session(&s.gw, "s-cache", "Summarize the annual report.");
    assert_eq!(route_header(&first), "long context (cache)");
    s.router.set_mode(r#"reply={"route": ["quick tasks"]}"#);
    let next = ask_in_session(&s.gw, "s-cache", "What is 2+2?");
    assert_eq!(route_header(&next), "long context (pinned)");
    assert_eq!(s.router.received().len(), 1);
}

/// switchyard's `routing.only_for` narrows the config's preferences to some models or aliases
/// (Plano routes every request); a request's own preferences still apply.
#[test]
fn only_for_limits_preference_routing_to_the_models_it_names() {
    let s = setup_with(
        "Plano-Orchestrator",
        None,
        "model_aliases: {auto: {target: openai/gpt-4o}}\nrouting: {only_for: [auto]}",
    );
    s.router.set_mode(r#"reply={"route": ["quick tasks"]}"#);
    // Asked for the alias: routed.
    assert_eq!(
        route_header(&ask(&s.gw, "auto", "What is 2+2?")),
        "quick tasks (router)"
    );
    // Asked for a model by name: it serves, and the router is not asked.
    let direct = ask(&s.gw, "gpt-4o", "What is 3+3?");
    assert_eq!(route_header(&direct), "");
    assert_eq!(s.router.received().len(), 1);
    assert_eq!(s.big.received().len(), 1);
    assert_eq!(s.quick.received().len(), 1);
    // A request's own preferences apply whatever it asked for.
    s.router.set_mode(r#"reply={"route": ["mini"]}"#);
    let own = chat(
        s.gw.addr,
        &[],
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                "routing_preferences": [{"name": "mini", "description": "d", "models": ["openai/gpt-4o-mini"]}]}),
    );
    assert_eq!(route_header(&own), "mini (router)");
    assert_eq!(s.quick.received().len(), 2);
    // A config naming something unknown does not load.
    let err = switchyard::config::Config::from_yaml(
        "model_providers: [{model: openai/gpt-4o, access_key: k}]\nrouting: {only_for: [nope]}",
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`nope` is not a configured model or alias"),
        "{err}"
    );
}

/// A router that cannot be reached fails open, and the route says why.
#[test]
fn an_unreachable_router_fails_open_saying_so() {
    let big = Mock::start();
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let config = yaml(&format!(
        "overrides: {{llm_routing_model: plano/Plano-Orchestrator}}\nmodel_providers:\n  - {{model: plano/Plano-Orchestrator, base_url: '{dead}'}}\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: sk-big}}\nrouting_preferences:\n  - {{name: long context, description: summarizing long documents, models: [openai/gpt-4o]}}\n",
        big.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let resp = ask(&gw, "gpt-4o", "hello");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        route_header(&resp),
        "none (fail-open: the router could not be reached)"
    );
    assert_eq!(big.received().len(), 1);
}

/// Preferences with no provider serving the router model send prompts to Plano's hosted router:
/// `-t` and every start say so.
#[test]
fn prompts_to_the_hosted_router_are_announced_by_t_and_at_start() {
    let big = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: sk-big}}\nrouting_preferences:\n  - {{name: long context, description: summarizing long documents, models: [openai/gpt-4o]}}\n",
        big.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-t", "-c"])
        .arg(&gw.conf)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for said in [stderr.to_string(), gw.logs()] {
        assert!(said.contains("warning") || said.contains("WARN"), "{said}");
        assert!(
            said.contains("Plano's hosted router (https://archfc.katanemo.dev), a third party"),
            "{said}"
        );
    }
}

/// A router, a weighted model `m` (endpoints a: 3, b: 1) and a model `n`; routes `main` → m and
/// `elsewhere` → n.
struct Weighted {
    router: Mock,
    a: Mock,
    b: Mock,
    n: Mock,
    gw: Gateway,
}

fn weighted_setup() -> Weighted {
    let (router, a, b, n) = (Mock::start(), Mock::start(), Mock::start(), Mock::start());
    let config = yaml(&format!(
        r#"
overrides: {{llm_routing_model: plano/Plano-Orchestrator}}
model_providers:
  - {{model: plano/Plano-Orchestrator, base_url: '{}'}}
  - {{model: custom/m, base_url: '{}', weight: 3}}
  - {{model: custom/m, base_url: '{}', weight: 1}}
  - {{model: custom/n, base_url: '{}'}}
routing_preferences:
  - {{name: main, description: everyday questions, models: [custom/m]}}
  - {{name: elsewhere, description: anything else, models: [custom/n]}}
"#,
        router.url(),
        a.url(),
        b.url(),
        n.url()
    ));
    let gw = Gateway::start(&config, &[]);
    Weighted {
        router,
        a,
        b,
        n,
        gw,
    }
}

/// Routed once: a preference-routed request picks its endpoint once, so a weighted group's
/// shares are exact (a discarded first pick used to advance the rotation too).
#[test]
fn a_weighted_group_keeps_its_exact_shares_under_preference_routing() {
    let w = weighted_setup();
    w.router.set_mode(r#"reply={"route": ["main"]}"#);
    for i in 0..100 {
        let resp = ask(&w.gw, "m", &format!("question {i}"));
        assert_eq!(resp.status, 200);
        assert_eq!(route_header(&resp), "main (router)");
    }
    assert_eq!((w.a.received().len(), w.b.received().len()), (75, 25));
}

/// The client's model is parked by its upstream's 429, but the router sends the request to
/// another model: it is routed there, not refused before the router is asked.
#[test]
fn a_parked_model_whose_route_has_another_model_is_routed() {
    let w = weighted_setup();
    w.a.set_mode("status=429,retry_after=30");
    w.b.set_mode("status=429,retry_after=30");
    w.router.set_mode(r#"reply={"route": []}"#);
    assert_eq!(ask(&w.gw, "m", "first").status, 429);
    w.router.set_mode(r#"reply={"route": ["elsewhere"]}"#);
    let resp = ask(&w.gw, "m", "second");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(route_header(&resp), "elsewhere (router)");
    assert_eq!(w.n.received().len(), 1);
    assert_eq!(w.a.received().len() + w.b.received().len(), 2);
}

/// The time the router takes is the router's, not the gateway's own overhead.
#[test]
fn the_routers_time_is_not_gateway_overhead() {
    let w = weighted_setup();
    w.router
        .set_mode(r#"delay_ms=300,reply={"route": ["main"]}"#);
    let resp = ask(&w.gw, "m", "slow router");
    assert_eq!(resp.status, 200);
    // Recorded when the request is logged, just after its answer went out.
    common::wait_for("the overhead recorded", Duration::from_secs(3), || {
        w.gw.metric(r#"switchyard_overhead_seconds_count{provider="custom"}"#) == 1.0
    });
    let overhead =
        w.gw.metric(r#"switchyard_overhead_seconds_sum{provider="custom"}"#);
    assert!(overhead > 0.0 && overhead < 0.1, "overhead {overhead} s");
    assert!(
        w.gw.metric("switchyard_router_duration_seconds_sum") >= 0.3,
        "the router's time is the router's"
    );
}
