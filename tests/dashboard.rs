//! The Grafana dashboard, proven against a real Prometheus: a running switchyard serves traffic,
//! Prometheus (Debian's package, installed by `scripts/setup --for-tests`) scrapes it, and every
//! PromQL expression of grafana/dashboards/switchyard.json must be valid and return data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::prometheus::start_prometheus;
use common::{chat, request, yaml, Gateway, Mock};
use serde_json::{json, Value};

/// Runs one instant query; returns the API's JSON answer.
fn query(prometheus: SocketAddr, promql: &str) -> Value {
    let body = format!("query={}", urlencode(promql));
    let resp = request(
        prometheus,
        "POST",
        "/api/v1/query",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    serde_json::from_slice(&resp.body).unwrap()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Grafana's variables, as "All" renders them, and a rate window that covers the test's samples.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$provider", ".*")
        .replace("$model", ".*")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Sends every kind of traffic the dashboard shows: OpenAI and Anthropic, streamed and not,
/// an upstream 5xx, a refused connection, an unknown model.
fn traffic(gw: &Gateway) {
    let openai = json!({"model": "openai/gpt-4o", "messages": []});
    let claude = json!({"model": "anthropic/claude-sonnet-4-5", "messages": [], "stream": true});
    for _ in 0..3 {
        assert_eq!(chat(gw.addr, &[], &openai).status, 200);
        assert_eq!(
            chat(
                gw.addr,
                &[("x-mock", "anthropic")],
                &json!({"model": "claude-sonnet-4-5", "messages": []})
            )
            .status,
            200
        );
        let mut stream = openai.clone();
        stream["stream"] = true.into();
        assert_eq!(
            chat(gw.addr, &[("x-mock", "sse=2,usage")], &stream).status,
            200
        );
        assert_eq!(
            chat(gw.addr, &[("x-mock", "anthropic,sse=2")], &claude).status,
            200
        );
        assert_eq!(
            chat(gw.addr, &[("x-mock", "status=503")], &openai).status,
            503
        );
        assert_eq!(chat(gw.addr, &[], &common::ask("dead/model")).status, 502);
        assert_eq!(chat(gw.addr, &[], &common::ask("nope")).status, 404);
        // A Responses client on a translated provider: a conversation kept.
        let responses = json!({"model": "anthropic/claude-sonnet-4-5", "input": "hi"});
        let r = common::post_json(
            gw.addr,
            "/v1/responses",
            &[("x-mock", "anthropic")],
            &responses,
        );
        assert_eq!(r.status, 200);
        // A client with a budget, counted in Redis.
        let alice = [("authorization", "Bearer sk-gw-alice")];
        assert_eq!(chat(gw.addr, &alice, &openai).status, 200);
    }
}

#[test]
fn every_dashboard_query_is_valid_and_returns_data() {
    let path = format!(
        "{}/grafana/dashboards/switchyard.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();

    let mock = Mock::start();
    let redis = common::redis::Redis::start();
    let dead = common::free_port();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{url}', access_key: k}}\n  - {{model: anthropic/claude-sonnet-4-5, base_url: '{url}', access_key: k}}\n  - {{model: dead/model, base_url: 'http://127.0.0.1:{dead}'}}\nclients:\n  - {{name: alice, key: $ALICE_KEY, limits: {{requests_per_minute: 1000}}, budgets: {{tokens_per_day: 1000000}}}}\nstate: {{redis: {{url: $REDIS_URL}}}}\n",
        url = mock.url()
    ));
    let gw = Gateway::start(
        &config,
        &[("ALICE_KEY", "sk-gw-alice"), ("REDIS_URL", &redis.url())],
    );
    let prometheus = start_prometheus(gw.metrics_addr);

    // Two rounds of traffic a few scrapes apart, so every rate() sees an increase.
    let up = || {
        query(prometheus.addr, "up{job=\"switchyard\"} == 1")["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    };
    common::wait_for(
        "prometheus to scrape switchyard",
        Duration::from_secs(20),
        up,
    );
    traffic(&gw);
    std::thread::sleep(Duration::from_secs(3));
    traffic(&gw);
    std::thread::sleep(Duration::from_secs(3));

    let mut checked = 0;
    let mut failures = Vec::new();
    let mut exprs = Vec::new();
    for panel in panels(&dashboard) {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {} pins a data source",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            let expr = substitute(target["expr"].as_str().unwrap());
            exprs.push(expr.clone());
            let answer = query(prometheus.addr, &expr);
            checked += 1;
            let empty = answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty());
            if answer["status"] != "success" || empty {
                failures.push(format!("{}: {expr}\n  -> {answer}", panel["title"]));
            }
        }
    }
    // Template variables: label_values(<selector>, <label>) must find values.
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(q) = var["query"]["query"].as_str() else {
            continue;
        };
        let inner = q.trim_start_matches("label_values(").trim_end_matches(')');
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let expr = substitute(&format!("count by ({}) ({selector})", label.trim()));
        let answer = query(prometheus.addr, &expr);
        checked += 1;
        if answer["data"]["result"]
            .as_array()
            .is_none_or(|r| r.is_empty())
        {
            failures.push(format!("variable {}: {expr}\n  -> {answer}", var["name"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every metric switchyard exports has a panel.
    for metric in [
        "switchyard_requests_total",
        "switchyard_request_duration_seconds",
        "switchyard_time_to_first_token_seconds",
        "switchyard_overhead_seconds",
        "switchyard_tokens_total",
        "switchyard_upstream_errors_total",
        "switchyard_in_flight_requests",
        "switchyard_config_reloads_total",
        "switchyard_config_last_reload_success_timestamp_seconds",
        "switchyard_build_info",
        "switchyard_upstream_attempts_total",
        "switchyard_failovers_total",
        "switchyard_endpoint_healthy",
        "switchyard_ratelimit_decisions_total",
        "switchyard_budget_remaining_tokens",
        "switchyard_state_store_duration_seconds",
        "switchyard_state_store_errors_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel shows {metric}"
        );
    }
}
