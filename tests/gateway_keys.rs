//! Gateway keys (switchyard's `clients` and `listeners[].auth`) on the real binary: who may
//! use the gateway, with which models, and that no gateway key ever reaches an upstream, a log,
//! `/metrics` or an answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::Duration;

use common::{request, wait_for, yaml, Gateway, Mock};
use serde_json::{json, Value};

const ALICE: &str = "sk-gw-alice-0123456789";
/// Bob's key is configured by its digest only.
const BOB: &str = "sk-gw-bob-abcdefghij";

fn sha256_hex(key: &str) -> String {
    switchyard::clients::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start(mock: &Mock, auth: &str) -> Gateway {
    let config = yaml(&format!(
        r#"
listeners: [{{name: llm, type: model, auth: {auth}}}]
model_providers:
  - {{model: openai/gpt-4o-mini, base_url: '{url}', access_key: sk-openai-managed}}
  - {{model: openai/gpt-4o, base_url: '{url}', access_key: sk-openai-managed}}
  - {{model: anthropic/*, base_url: '{url}', access_key: sk-ant-managed}}
  - {{model: vllm/llama, base_url: '{url}', passthrough_auth: true}}
model_aliases: {{fast: {{target: openai/gpt-4o-mini}}}}
clients:
  - {{name: alice, key: $ALICE_KEY, models: [fast, anthropic/*, vllm/llama]}}
  - {{name: bob, key: 'sha256:{bob}'}}
"#,
        url = mock.url(),
        bob = sha256_hex(BOB),
    ));
    Gateway::start(&config, &[("ALICE_KEY", ALICE)])
}

fn chat(gw: &Gateway, headers: &[(&str, &str)], model: &str) -> common::Response {
    common::chat(gw.addr, headers, &common::ask(model))
}

fn messages(gw: &Gateway, headers: &[(&str, &str)], model: &str) -> common::Response {
    let body =
        json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(
        gw.addr,
        "POST",
        "/v1/messages",
        &all,
        body.to_string().as_bytes(),
    )
}

fn openai_error(resp: &common::Response, status: u16, code: &str) {
    assert_eq!(
        resp.status,
        status,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.json()["error"]["code"], code);
}

#[test]
fn keys_and_models_decide_who_reaches_which_provider() {
    let mock = Mock::start();
    mock.set_mode("");
    let gw = start(&mock, "required");
    let bearer = |key: &str| format!("Bearer {key}");

    // No key, a wrong key: 401 in the client's API, nothing sent upstream.
    openai_error(&chat(&gw, &[], "fast"), 401, "invalid_api_key");
    openai_error(
        &chat(&gw, &[("authorization", "Bearer sk-gw-mallory")], "fast"),
        401,
        "invalid_api_key",
    );
    let anthropic = messages(&gw, &[], "anthropic/claude-x");
    assert_eq!(anthropic.status, 401);
    assert_eq!(anthropic.json()["error"]["type"], "authentication_error");
    assert!(mock.received().is_empty());

    // Alice's key as each SDK sends it: her models pass, with the provider's own credential.
    let alice = bearer(ALICE);
    assert_eq!(chat(&gw, &[("authorization", &alice)], "fast").status, 200);
    let got = mock.only();
    assert_eq!(
        got.header("authorization"),
        Some("Bearer sk-openai-managed")
    );
    mock.set_mode("anthropic");
    let resp = messages(&gw, &[("x-api-key", ALICE)], "anthropic/claude-x");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        mock.received()[1].header("x-api-key"),
        Some("sk-ant-managed")
    );
    mock.set_mode("");
    // A model she may not use: 403, nothing sent.
    openai_error(
        &chat(&gw, &[("authorization", &alice)], "openai/gpt-4o"),
        403,
        "model_not_allowed",
    );
    let forbidden = messages(&gw, &[("x-api-key", ALICE)], "openai/gpt-4o");
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json()["error"]["type"], "permission_error");
    // Bob, configured by digest, has no list: every model.
    assert_eq!(
        chat(&gw, &[("x-switchyard-key", BOB)], "openai/gpt-4o").status,
        200
    );
    assert_eq!(mock.received().len(), 3);

    // No gateway key upstream, in the logs, in /metrics or in any answer.
    for r in mock.received() {
        for (name, value) in &r.headers {
            assert!(
                !value.contains(ALICE) && !value.contains(BOB),
                "{name}: {value}"
            );
        }
    }
    wait_for("the access log", Duration::from_secs(3), || {
        gw.access_log()
            .lines()
            .filter(|l| !l.contains("/healthz"))
            .count()
            >= 8
    });
    let log = gw.access_log();
    let metrics = gw.metrics();
    for text in [&log, &gw.logs(), &metrics] {
        for secret in [ALICE, BOB, &sha256_hex(ALICE), &sha256_hex(BOB)] {
            assert!(!text.contains(secret), "a key or its digest leaked");
        }
    }
    let clients: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["path"] != "/healthz")
        .map(|e| e["client_name"].clone())
        .collect();
    assert_eq!(
        clients,
        [
            Value::Null,
            Value::Null,
            Value::Null,
            json!("alice"),
            json!("alice"),
            json!("alice"),
            json!("alice"),
            json!("bob")
        ]
    );
}

/// Under `passthrough_auth` the client's bearer is the provider's credential: the gateway key
/// goes in `x-switchyard-key`, which stays at the gateway.
#[test]
fn passthrough_takes_the_gateway_key_beside_the_providers_credential() {
    let mock = Mock::start();
    let gw = start(&mock, "required");
    let tenant = [("authorization", "Bearer sk-tenant-vllm")];
    // The bearer alone is not a gateway key here.
    openai_error(&chat(&gw, &tenant, "vllm/llama"), 401, "invalid_api_key");
    let resp = chat(&gw, &[tenant[0], ("x-switchyard-key", ALICE)], "vllm/llama");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let got = mock.only();
    assert_eq!(got.header("authorization"), Some("Bearer sk-tenant-vllm"));
    assert_eq!(got.header("x-switchyard-key"), None);
}

#[test]
fn optional_auth_lets_anonymous_requests_through_but_not_wrong_keys() {
    let mock = Mock::start();
    let gw = start(&mock, "optional");
    assert_eq!(chat(&gw, &[], "openai/gpt-4o").status, 200);
    openai_error(
        &chat(&gw, &[("x-api-key", "sk-gw-wrong")], "openai/gpt-4o"),
        401,
        "invalid_api_key",
    );
    // A known key still only reaches its models.
    openai_error(
        &chat(&gw, &[("x-api-key", ALICE)], "openai/gpt-4o"),
        403,
        "model_not_allowed",
    );
    assert_eq!(mock.received().len(), 1);
}

/// `limits.requests_per_minute`, exact in one process: of many concurrent requests exactly the
/// limit pass; the next one gets 429 with the real wait (the next slot, not the whole minute)
/// and the rate-limit headers of the client's API; another client is not touched.
#[test]
fn a_clients_request_limit_is_exact_and_says_how_long_to_wait() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "listeners: [{{name: llm, type: model, auth: required}}]\nmodel_providers:\n  - {{model: openai/gpt-4o, base_url: '{url}', access_key: sk-openai-managed}}\n  - {{model: anthropic/claude-x, base_url: '{url}', access_key: sk-ant-managed}}\nclients:\n  - {{name: alice, key: $ALICE_KEY, limits: {{requests_per_minute: 10}}}}\n  - {{name: bob, key: 'sha256:{bob}'}}\n",
        url = mock.url(),
        bob = sha256_hex(BOB),
    ));
    let gw = Gateway::start(&config, &[("ALICE_KEY", ALICE)]);
    let alice = format!("Bearer {ALICE}");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|_| s.spawn(|| chat(&gw, &[("authorization", &alice)], "openai/gpt-4o").status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(common::tally(&statuses), [(200, 10), (429, 54)].into());
    assert_eq!(
        mock.received().len(),
        10,
        "refused requests never go upstream"
    );

    // The wait is the next slot (6 s at 10 per minute), in OpenAI's shape and headers.
    let resp = chat(&gw, &[("authorization", &alice)], "openai/gpt-4o");
    openai_error(&resp, 429, "rate_limit_exceeded");
    assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
    let wait: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&wait), "{wait}");
    let wait_ms: u64 = resp.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(wait_ms <= 6_000 && wait_ms > 0, "{wait_ms}");
    assert_eq!(resp.header("x-ratelimit-limit-requests"), Some("10"));
    assert_eq!(resp.header("x-ratelimit-remaining-requests"), Some("0"));
    // In Anthropic's shape and headers for a Messages client.
    mock.set_mode("anthropic");
    let resp = messages(&gw, &[("x-api-key", ALICE)], "anthropic/claude-x");
    assert_eq!(resp.status, 429);
    assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
    assert_eq!(
        resp.header("anthropic-ratelimit-requests-limit"),
        Some("10")
    );
    assert!(resp.header("anthropic-ratelimit-requests-reset").is_some());
    // Bob has no limit and is not touched by Alice's.
    let resp = messages(&gw, &[("x-api-key", BOB)], "anthropic/claude-x");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(mock.received().len(), 11);
}

/// `limits.tokens_per_minute`: a request reserves its prompt's estimate and its answer's cap,
/// and is settled with the usage the upstream reports. Two requests of 6,000 reserved tokens
/// pass one after the other under a limit of 10,000 (the first gave back all but the 4 it
/// used); at the same time the second is refused with the token headers.
#[test]
fn token_limits_reserve_then_settle_with_the_real_usage() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{url}', access_key: sk-openai-managed}}\nclients:\n  - {{name: dave, key: $DAVE_KEY, limits: {{tokens_per_minute: 10000}}}}\n",
        url = mock.url()
    ));
    let gw = Gateway::start(&config, &[("DAVE_KEY", "sk-gw-dave")]);
    let body = json!({"model": "openai/gpt-4o", "max_tokens": 6000, "messages": [{"role": "user", "content": "hi"}]});
    let send = |extra: &[(&str, &str)]| {
        let mut headers = vec![("authorization", "Bearer sk-gw-dave")];
        headers.extend_from_slice(extra);
        common::chat(gw.addr, &headers, &body)
    };
    // Settled when a request is logged (before its access-log line), just after its answer.
    assert_eq!(send(&[]).status, 200);
    gw.wait_logged(1);
    assert_eq!(
        send(&[]).status,
        200,
        "the first reservation was settled to its usage"
    );
    gw.wait_logged(2);
    // Two at once: the second finds the first's 6,000 still reserved.
    let slow = std::thread::scope(|s| {
        let first = s.spawn(|| send(&[("x-mock", "delay_ms=1500")]));
        // (The first is taken in at once; its upstream then answers after 1.5 s.)
        std::thread::sleep(Duration::from_millis(600));
        let second = send(&[]);
        assert_eq!(first.join().unwrap().status, 200);
        second
    });
    openai_error(&slow, 429, "rate_limit_exceeded");
    assert_eq!(slow.header("x-ratelimit-limit-tokens"), Some("10000"));
    assert_eq!(slow.header("x-ratelimit-remaining-tokens"), Some("0"));
    assert!(slow.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("10000 tokens per minute"));
    assert_eq!(mock.received().len(), 3);
}
