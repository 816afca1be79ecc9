//! Metrics, request ids and the access log, checked on the real binary after real traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{chat, request, yaml, Conn, Gateway, Mock, ANTHROPIC_USAGE, OPENAI_STREAM_USAGE};
use serde_json::{json, Value};

const OPENAI_KEY: &str = "sk-openai-managed-1234";
const ANTHROPIC_KEY: &str = "sk-ant-managed-5678";
const CLIENT_KEY: &str = "sk-client-9999";

fn start(mock: &Mock) -> Gateway {
    let dead = common::free_port();
    let config = yaml(&format!(
        r#"
model_providers:
  - {{model: openai/gpt-4o, base_url: '{url}', access_key: $OPENAI_KEY}}
  - {{model: anthropic/claude-sonnet-4-5, base_url: '{url}', access_key: $ANTHROPIC_KEY}}
  - {{model: dead/model, base_url: 'http://127.0.0.1:{dead}'}}
"#,
        url = mock.url()
    ));
    Gateway::start(
        &config,
        &[("OPENAI_KEY", OPENAI_KEY), ("ANTHROPIC_KEY", ANTHROPIC_KEY)],
    )
}

/// Waits until the metrics say `count` requests have finished (logging runs just after the
/// response is written), then returns the scrape.
fn settled(gw: &Gateway, count: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = gw.metrics();
        let finished: f64 = text
            .lines()
            .filter(|l| l.starts_with("switchyard_requests_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        let idle = common::sample_value(&text, "switchyard_in_flight_requests") == 0.0;
        if (finished == count && idle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_hold_the_exact_counts_and_token_sums() {
    let mock = Mock::start();
    let gw = start(&mock);
    let auth = ("authorization", "Bearer sk-client-9999");

    let openai = json!({"model": "openai/gpt-4o", "messages": []});
    let claude = json!({"model": "claude-sonnet-4-5", "messages": [], "max_tokens": 10});
    let stream = |body: &Value, mode: &str| {
        let mut body = body.clone();
        body["stream"] = true.into();
        let resp = chat(gw.addr, &[auth, ("x-mock", mode)], &body);
        assert_eq!(resp.status, 200);
        resp
    };
    // OpenAI: JSON (3 + 1 tokens) and a stream ending with a usage chunk (7 + 3, 4 cached).
    assert_eq!(chat(gw.addr, &[auth], &openai).status, 200);
    stream(&openai, "sse=3,gap_ms=5,usage");
    // Anthropic shapes, JSON and stream: 10 prompt, 5 completion, 2 cache read, 1 cache write.
    assert_eq!(
        chat(gw.addr, &[auth, ("x-mock", "anthropic")], &claude).status,
        200
    );
    stream(&claude, "anthropic,sse=3,gap_ms=5");
    // An upstream 5xx, a refused connection, an unknown model.
    assert_eq!(
        chat(gw.addr, &[auth, ("x-mock", "status=500")], &openai).status,
        500
    );
    assert_eq!(
        chat(gw.addr, &[auth], &common::ask("dead/model")).status,
        502
    );
    assert_eq!(chat(gw.addr, &[auth], &common::ask("gpt-9")).status, 404);
    // Not model traffic: not counted.
    assert_eq!(request(gw.addr, "GET", "/healthz", &[], b"").status, 200);

    let text = settled(&gw, 7.0);
    let v = |s: &str| common::sample_value(&text, s);
    let (oa, an) = (
        r#"model="openai/gpt-4o",provider="openai""#,
        r#"model="anthropic/claude-sonnet-4-5",provider="anthropic""#,
    );
    let dead = r#"model="dead/model",provider="dead""#;

    assert_eq!(
        v(&format!(
            "switchyard_requests_total{{client=\"anonymous\",{oa},status_class=\"2xx\"}}"
        )),
        2.0
    );
    assert_eq!(
        v(&format!(
            "switchyard_requests_total{{client=\"anonymous\",{oa},status_class=\"5xx\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(&format!(
            "switchyard_requests_total{{client=\"anonymous\",{an},status_class=\"2xx\"}}"
        )),
        2.0
    );
    assert_eq!(
        v(&format!(
            "switchyard_requests_total{{client=\"anonymous\",{dead},status_class=\"5xx\"}}"
        )),
        1.0
    );
    assert_eq!(
        v(
            r#"switchyard_requests_total{client="anonymous",model="none",provider="none",status_class="4xx"}"#
        ),
        1.0
    );
    assert!(!text.contains("gpt-9"), "a raw client model became a label");

    let (p, c, cached) = OPENAI_STREAM_USAGE;
    let tokens = |labels: &str, kind: &str| {
        v(&format!(
            "switchyard_tokens_total{{client=\"anonymous\",kind=\"{kind}\",{labels}}}"
        ))
    };
    assert_eq!(tokens(oa, "prompt"), (3 + p) as f64);
    assert_eq!(tokens(oa, "completion"), (1 + c) as f64);
    assert_eq!(tokens(oa, "cache_read"), cached as f64);
    assert_eq!(tokens(oa, "cache_write"), 0.0);
    let u = &*ANTHROPIC_USAGE;
    assert_eq!(
        tokens(an, "prompt"),
        2.0 * u["input_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        tokens(an, "completion"),
        2.0 * u["output_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        tokens(an, "cache_read"),
        2.0 * u["cache_read_input_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        tokens(an, "cache_write"),
        2.0 * u["cache_creation_input_tokens"].as_f64().unwrap()
    );

    assert_eq!(
        v(r#"switchyard_upstream_errors_total{class="status_5xx",provider="openai"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_upstream_errors_total{class="connect",provider="dead"}"#),
        1.0
    );
    assert_eq!(v("switchyard_in_flight_requests"), 0.0);

    // Histograms: one observation per request; TTFT only where the upstream's body went out.
    assert_eq!(
        v(&format!(
            "switchyard_request_duration_seconds_count{{{oa}}}"
        )),
        3.0
    );
    assert_eq!(
        v(&format!(
            "switchyard_request_duration_seconds_count{{{an}}}"
        )),
        2.0
    );
    assert_eq!(
        v(&format!(
            "switchyard_time_to_first_token_seconds_count{{{oa}}}"
        )),
        3.0
    );
    assert_eq!(
        v(&format!(
            "switchyard_time_to_first_token_seconds_count{{{dead}}}"
        )),
        0.0
    );
    assert_eq!(
        v(r#"switchyard_overhead_seconds_count{provider="openai"}"#),
        3.0
    );
    assert_eq!(
        v(r#"switchyard_overhead_seconds_count{provider="anthropic"}"#),
        2.0
    );
    // The streams took at least 3 × 5 ms upstream; overhead excludes that wait.
    let stream_ttft_sum = v(&format!(
        "switchyard_time_to_first_token_seconds_sum{{{an}}}"
    ));
    assert!(stream_ttft_sum > 0.0);
    let overhead = v(r#"switchyard_overhead_seconds_sum{provider="anthropic"}"#);
    let duration = v(&format!("switchyard_request_duration_seconds_sum{{{an}}}"));
    assert!(
        overhead < duration,
        "overhead {overhead} vs duration {duration}"
    );

    assert!(text.contains(&format!(
        "switchyard_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert_eq!(
        v(r#"switchyard_config_reloads_total{result="success"}"#),
        0.0
    );
    assert!(v("switchyard_config_last_reload_success_timestamp_seconds") > 1.7e9);

    for secret in [OPENAI_KEY, ANTHROPIC_KEY, CLIENT_KEY] {
        assert!(!text.contains(secret));
    }
}

#[test]
fn request_ids_and_trace_headers() {
    let mock = Mock::start();
    let gw = start(&mock);
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let resp = chat(
        gw.addr,
        &[
            ("x-request-id", "client-id-1"),
            ("traceparent", traceparent),
            ("tracestate", "vendor=1"),
        ],
        &common::ask("gpt-4o"),
    );
    assert_eq!(resp.header("x-request-id"), Some("client-id-1"));
    let got = mock.only();
    assert_eq!(got.header("x-request-id"), Some("client-id-1"));
    assert_eq!(got.header("traceparent"), Some(traceparent));
    assert_eq!(got.header("tracestate"), Some("vendor=1"));

    // Generated when absent; the upstream and the client see the same one.
    let resp = chat(gw.addr, &[], &common::ask("gpt-4o"));
    let id = resp.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(mock.received()[1].header("x-request-id"), Some(id.as_str()));
    // Gateway-made answers carry it too.
    let resp = chat(
        gw.addr,
        &[("x-request-id", "client-id-2")],
        &common::ask("nope"),
    );
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("x-request-id"), Some("client-id-2"));
}

/// The access-log lines of model requests (the harness's readiness probes are left out).
fn access_lines(gw: &Gateway, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = gw.access_log();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
            })
            .filter(|l| l["path"] != "/healthz")
            .collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn access_log_lines_are_json_and_hold_no_secrets() {
    let mock = Mock::start();
    let gw = start(&mock);
    let client = format!("Bearer {CLIENT_KEY}");
    let sent = json!({"model": "openai/gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = chat(
        gw.addr,
        &[
            ("authorization", &client),
            ("x-request-id", "log-1"),
            ("x-mock", "sse=2,gap_ms=5,usage"),
        ],
        &sent,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        chat(
            gw.addr,
            &[("x-api-key", CLIENT_KEY), ("x-request-id", "log-2")],
            &common::ask("dead/model")
        )
        .status,
        502
    );

    let lines = access_lines(&gw, 2);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let first = &lines[0];
    assert_eq!(first["request_id"], "log-1");
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/v1/chat/completions");
    assert_eq!(first["model"], "openai/gpt-4o");
    assert_eq!(first["provider"], "openai/gpt-4o");
    assert_eq!(first["upstream_model"], "gpt-4o");
    assert_eq!(first["status"], 200);
    assert_eq!(first["tokens"]["prompt"], OPENAI_STREAM_USAGE.0);
    assert!(first["ttft_ms"].as_f64().unwrap() > 0.0);
    assert!(first["duration_ms"].as_f64().unwrap() >= first["ttft_ms"].as_f64().unwrap());
    assert_eq!(first["bytes_in"], sent.to_string().len());
    assert_eq!(
        first["bytes_out"].as_u64().unwrap() as usize,
        resp.body.len()
    );
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["error"], Value::Null);
    assert_eq!(lines[1]["request_id"], "log-2");
    assert_eq!(lines[1]["status"], 502);
    assert_eq!(lines[1]["error"], "connect");

    let everything = format!("{}{}{}", gw.access_log(), gw.logs(), gw.metrics());
    for secret in [OPENAI_KEY, ANTHROPIC_KEY, CLIENT_KEY] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[test]
fn a_client_that_leaves_is_recorded_once() {
    let mock = Mock::start();
    let gw = start(&mock);
    let mut conn = Conn::open(gw.addr);
    let body = br#"{"model":"gpt-4o"}"#;
    conn.send_head(
        "POST",
        "/v1/chat/completions",
        &[("x-mock", "delay_ms=3000"), ("x-request-id", "gone-1")],
        Some(body.len()),
    );
    conn.stream.write_all(body).unwrap();
    while mock.received().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(conn);
    let text = settled(&gw, 1.0);
    assert_eq!(
        common::sample_value(
            &text,
            r#"switchyard_requests_total{client="anonymous",model="openai/gpt-4o",provider="openai",status_class="4xx"}"#
        ),
        1.0
    );
    assert_eq!(
        common::sample_value(&text, "switchyard_in_flight_requests"),
        0.0
    );
    let lines = access_lines(&gw, 1);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["request_id"], "gone-1");
    assert_eq!(lines[0]["status"], 499);
}
