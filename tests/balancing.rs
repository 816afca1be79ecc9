//! Several endpoints per model, weights, retries, passive health and fallbacks, on the real
//! binary with mock upstreams that fail on purpose. Clients must not notice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::{Duration, Instant};

use common::{chat, wait_for, yaml, Gateway, Mock};
use serde_json::json;

fn served_by(resp: &common::Response) -> u16 {
    resp.header("x-mock-port").unwrap().parse().unwrap()
}

#[test]
fn weights_split_traffic() {
    let (a, b) = (Mock::start(), Mock::start());
    let config = yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}', weight: 3}}\n  - {{model: custom/m, base_url: '{}', weight: 1}}\n",
        a.url(),
        b.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let mut to_a = 0;
    for _ in 0..1000 {
        let resp = chat(gw.addr, &[], &common::ask("m"));
        assert_eq!(resp.status, 200);
        if served_by(&resp) == a.addr.port() {
            to_a += 1;
        }
    }
    let share = f64::from(to_a) / 1000.0;
    assert!(
        (0.70..=0.80).contains(&share),
        "a got {share} of the traffic, want 0.75 ± 0.05"
    );
    assert_eq!(a.received().len() + b.received().len(), 1000);
}

/// Three endpoints of one model: `bad` misbehaves as `mode` says (or refuses connections).
fn three_endpoints(bad: Option<&Mock>, extra: &str) -> (Mock, Mock, Gateway) {
    let (good1, good2) = (Mock::start(), Mock::start());
    let bad_url = bad.map_or_else(
        || format!("http://127.0.0.1:{}", common::free_port()),
        Mock::url,
    );
    let config = yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}', name: good1{extra}}}\n  - {{model: custom/m, base_url: '{bad_url}', name: bad{extra}}}\n  - {{model: custom/m, base_url: '{}', name: good2{extra}}}\n",
        good1.url(),
        good2.url(),
    ));
    let gw = Gateway::start(&config, &[]);
    (good1, good2, gw)
}

const OUTLIER: &str = ", outlier_detection: {consecutive_failures: 2, ejection: 1s}";

fn no_client_errors(gw: &Gateway, n: usize) {
    for i in 0..n {
        let resp = chat(gw.addr, &[], &common::ask("m"));
        assert_eq!(
            resp.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
}

#[test]
fn a_refusing_endpoint_is_retried_around_and_ejected() {
    let (good1, good2, gw) = three_endpoints(None, OUTLIER);
    no_client_errors(&gw, 30);
    assert_eq!(good1.received().len() + good2.received().len(), 30);
    let text = gw.metrics();
    // Two failures in a row ejected it; after that it was skipped.
    assert_eq!(
        common::sample_value(
            &text,
            r#"switchyard_upstream_attempts_total{outcome="connect",provider="custom"}"#
        ),
        2.0
    );
    assert_eq!(
        common::sample_value(
            &text,
            r#"switchyard_endpoint_healthy{endpoint="bad",provider="custom"}"#
        ),
        0.0
    );
}

#[test]
fn a_failing_endpoint_is_ejected_and_later_readmitted() {
    let bad = Mock::start();
    bad.set_mode("status=500");
    let (_g1, _g2, gw) = three_endpoints(Some(&bad), OUTLIER);
    no_client_errors(&gw, 30);
    assert_eq!(bad.received().len(), 2, "ejected after two 500s");
    // It recovers; after the 1 s ejection it is used again.
    bad.set_mode("");
    std::thread::sleep(Duration::from_millis(1200));
    no_client_errors(&gw, 30);
    assert!(bad.received().len() > 2, "not re-admitted");
    assert_eq!(
        common::sample_value(
            &gw.metrics(),
            r#"switchyard_endpoint_healthy{endpoint="bad",provider="custom"}"#
        ),
        1.0
    );
}

#[test]
fn a_rate_limited_endpoint_is_parked_for_its_retry_after() {
    let bad = Mock::start();
    bad.set_mode("status=429,retry_after=2");
    let (_g1, _g2, gw) = three_endpoints(Some(&bad), "");
    no_client_errors(&gw, 30);
    assert_eq!(bad.received().len(), 1, "parked after its first 429");
}

#[test]
fn a_stalling_endpoint_times_out_before_the_first_byte() {
    let bad = Mock::start();
    bad.set_mode("delay_ms=5000");
    let (_g1, _g2, gw) = three_endpoints(Some(&bad), ", timeouts: {first_byte: 300ms}");
    let started = Instant::now();
    no_client_errors(&gw, 12);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!bad.received().is_empty());
}

#[test]
fn fallback_to_another_interface_with_a_large_body() {
    let (openai, anthropic) = (Mock::start(), Mock::start());
    openai.set_mode("status=503");
    anthropic.set_mode("anthropic");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: k, fallbacks: [claude-sonnet-4-5]}}\n  - {{model: anthropic/claude-sonnet-4-5, base_url: '{}', access_key: k}}\n",
        openai.url(),
        anthropic.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let big = "x".repeat(1 << 20);
    let resp = chat(
        gw.addr,
        &[],
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": big}]}),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        resp.json()["object"],
        "chat.completion",
        "translated back for the OpenAI client"
    );
    assert_eq!(openai.received().len(), 1);
    let got = anthropic.only();
    assert_eq!(got.path, "/v1/messages");
    let sent = got.json();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(
        sent["messages"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .len(),
        1 << 20
    );
    assert_eq!(
        common::sample_value(
            &gw.metrics(),
            r#"switchyard_failovers_total{from="openai/gpt-4o",to="anthropic/claude-sonnet-4-5"}"#
        ),
        1.0
    );
}

#[test]
fn when_everything_fails_the_last_upstream_error_reaches_the_client() {
    let (a, b) = (Mock::start(), Mock::start());
    a.set_mode("status=500");
    b.set_mode("status=429,retry_after=7");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}'}}\n  - {{model: custom/m, base_url: '{}'}}\n",
        a.url(),
        b.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let resp = chat(gw.addr, &[], &common::ask("m"));
    assert!(resp.status == 500 || resp.status == 429, "{}", resp.status);
    assert_eq!(resp.json()["error"]["message"], "mock error");
    assert_eq!(
        a.received().len() + b.received().len(),
        2,
        "each endpoint tried once"
    );
}

fn posts(mock: &Mock) -> usize {
    mock.received()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

#[test]
fn active_health_checks_take_a_replica_out_and_back() {
    let (a, b) = (Mock::start(), Mock::start());
    let config = yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}', health_check: {{path: /health, interval: 100ms}}}}\n  - {{model: custom/m, base_url: '{}', name: b, health_check: {{path: /health, interval: 100ms}}}}\n",
        a.url(),
        b.url()
    ));
    let gw = Gateway::start(&config, &[]);
    b.set_mode("status=503");
    let healthy_b = r#"switchyard_endpoint_healthy{endpoint="b",provider="custom"}"#;
    wait_for("b to be marked down", Duration::from_secs(5), || {
        let scrape = gw.metrics();
        scrape.contains(healthy_b) && common::sample_value(&scrape, healthy_b) == 0.0
    });
    let before = posts(&b);
    for _ in 0..20 {
        assert_eq!(chat(gw.addr, &[], &common::ask("m")).status, 200);
    }
    assert_eq!(
        posts(&b),
        before,
        "a replica that fails its check gets no traffic"
    );
    assert!(b
        .received()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/health"));

    b.set_mode("");
    wait_for("b to come back", Duration::from_secs(5), || {
        common::sample_value(&gw.metrics(), healthy_b) == 1.0
    });
    for _ in 0..20 {
        assert_eq!(chat(gw.addr, &[], &common::ask("m")).status, 200);
    }
    assert!(posts(&b) > before, "back in rotation");
}

#[test]
fn affinity_pins_a_conversation_to_one_endpoint() {
    let mocks: Vec<Mock> = (0..4).map(|_| Mock::start()).collect();
    let providers: Vec<serde_json::Value> = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"model": "custom/m", "base_url": m.url(), "name": format!("e{i}")}))
        .collect();
    let gw = Gateway::start(&json!({"model_providers": providers}), &[]);
    for conversation in ["conv-a", "conv-b", "conv-c"] {
        let ports: std::collections::HashSet<u16> = (0..8)
            .map(|_| {
                served_by(&chat(
                    gw.addr,
                    &[("x-model-affinity", conversation)],
                    &common::ask("m"),
                ))
            })
            .collect();
        assert_eq!(ports.len(), 1, "{conversation} moved between endpoints");
    }
    // The body's `user` pins too.
    let ports: std::collections::HashSet<u16> = (0..8)
        .map(|_| {
            served_by(&chat(
                gw.addr,
                &[],
                &json!({"model": "m", "user": "user-42"}),
            ))
        })
        .collect();
    assert_eq!(ports.len(), 1);
    // Without a key, traffic spreads.
    let ports: std::collections::HashSet<u16> = (0..8)
        .map(|_| served_by(&chat(gw.addr, &[], &common::ask("m"))))
        .collect();
    assert_eq!(ports.len(), 4);
}

#[test]
fn ejection_survives_a_reload_and_attempts_are_logged() {
    let bad = Mock::start();
    bad.set_mode("status=500");
    let (_g1, _g2, mut gw) = three_endpoints(
        Some(&bad),
        ", outlier_detection: {consecutive_failures: 1, ejection: 30s}",
    );
    no_client_errors(&gw, 6);
    assert_eq!(bad.received().len(), 1);
    // A reload that leaves `bad` unchanged keeps it ejected.
    let extra = Mock::start();
    let url = extra.url();
    gw.rewrite(|c| {
        c["model_providers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"model": "custom/other", "base_url": url}))
    });
    gw.signal("HUP");
    wait_for("the reload", Duration::from_secs(5), || {
        common::sample_value(
            &gw.metrics(),
            r#"switchyard_config_reloads_total{result="success"}"#,
        ) == 1.0
    });
    no_client_errors(&gw, 12);
    assert_eq!(bad.received().len(), 1, "health state was lost on reload");
    // The access log lists the attempts of the request that met the bad endpoint.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.access_log();
        let retried = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["attempts"].as_array().is_some_and(|a| a.len() == 2));
        if let Some(line) = retried {
            assert_eq!(
                line["attempts"][0],
                json!({"endpoint": "bad", "outcome": "status_5xx"})
            );
            assert_eq!(line["attempts"][1]["outcome"], "success");
            assert_eq!(line["status"], 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no retried request in the access log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rate_limited_model_answers_429_with_the_remaining_retry_after() {
    let mock = Mock::start();
    mock.set_mode("status=429,retry_after=30");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}'}}\n",
        mock.url()
    ));
    let gw = Gateway::start(&config, &[]);
    // The only endpoint's own 429 reaches the client as it was sent.
    let resp = chat(gw.addr, &[], &common::ask("m"));
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("30"));
    // It is parked now: the gateway answers as the upstream did, a 429 with the time that
    // remains, without bothering the upstream.
    let resp = chat(gw.addr, &[], &common::ask("m"));
    assert_eq!(resp.status, 429);
    assert_eq!(resp.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
    let wait: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((28..=30).contains(&wait), "{wait}");
    // In Anthropic's shape for a Messages client.
    let resp = common::request(
        gw.addr,
        "POST",
        "/v1/messages",
        &[],
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 429);
    assert_eq!(resp.json()["type"], "error");
    assert_eq!(resp.json()["error"]["type"], "rate_limit_error");
    assert!(resp.header("retry-after").is_some());
    assert_eq!(mock.received().len(), 1);
    // Counted and logged under the model and provider that refused, not as `none`.
    // (Counted when the request is logged, just after its answer went out.)
    let parked_4xx = r#"switchyard_requests_total{client="anonymous",model="custom/m",provider="custom",status_class="4xx"}"#;
    wait_for("three 4xx counted", Duration::from_secs(3), || {
        gw.metric(parked_4xx) == 3.0
    });
    let parked = || -> Vec<serde_json::Value> {
        gw.access_log()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|e: &serde_json::Value| e["status"] == 429)
            .collect()
    };
    wait_for("three log lines", Duration::from_secs(3), || {
        parked().len() == 3
    });
    let parked = parked();
    for e in &parked[1..] {
        assert_eq!(e["model"], "m", "the client's model: {e}");
        assert_eq!(e["provider"], "custom/m", "{e}");
        assert_eq!(e["error"], "refused", "{e}");
    }
}

#[test]
fn a_total_timeout_ends_a_long_stream_with_an_error_event() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: anthropic/claude, base_url: '{}', access_key: k, timeouts: {{total: 1s}}}}\n",
        mock.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let mut conn = common::Conn::open(gw.addr);
    let body = br#"{"model":"claude","max_tokens":5,"stream":true,"messages":[]}"#;
    conn.send_head(
        "POST",
        "/v1/messages",
        &[("x-mock", "anthropic,sse=30,gap_ms=100")],
        Some(body.len()),
    );
    std::io::Write::write_all(&mut conn.stream, body).unwrap();
    assert_eq!(conn.read_head().0, 200);
    let mut text = Vec::new();
    let cut = loop {
        match conn.try_read_chunk() {
            Ok(Some(chunk)) => text.extend(chunk),
            Ok(None) => break false,
            Err(()) => break true,
        }
    };
    let text = String::from_utf8(text).unwrap();
    assert!(cut, "the stream must not end cleanly");
    assert!(!text.contains("message_stop"), "{text}");
    // The last event is an Anthropic error event for the Messages client.
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\ndata: "), "{last}");
    assert!(last.contains(r#""type":"error""#), "{last}");
}

#[test]
fn overhead_leaves_out_earlier_attempts_and_the_wait_between_them() {
    let (slow_failure, good) = (Mock::start(), Mock::start());
    slow_failure.set_mode("delay_ms=600,status=500");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}', name: a}}\n  - {{model: custom/m, base_url: '{}', name: b}}\n",
        slow_failure.url(),
        good.url()
    ));
    let gw = Gateway::start(&config, &[]);
    // The first request of a fresh gateway goes to the first endpoint, then to the second.
    let resp = chat(gw.addr, &[], &common::ask("m"));
    assert_eq!(resp.status, 200);
    assert_eq!(slow_failure.received().len(), 1);
    assert_eq!(good.received().len(), 1);
    let count = r#"switchyard_overhead_seconds_count{provider="custom"}"#;
    wait_for("the request's metrics", Duration::from_secs(5), || {
        common::sample_value(&gw.metrics(), count) == 1.0
    });
    let sum = common::sample_value(
        &gw.metrics(),
        r#"switchyard_overhead_seconds_sum{provider="custom"}"#,
    );
    assert!(
        sum < 0.3,
        "overhead {sum} s includes the 0.6 s the first endpoint took"
    );
}

#[test]
fn a_client_that_leaves_during_a_wait_between_attempts_cancels_the_next_one() {
    let mock = Mock::start();
    mock.set_mode("status=429,retry_after=2");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: custom/m, base_url: '{}', retry: {{attempts: 2, backoff: {{max: 5s}}}}}}\n",
        mock.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let mut conn = common::Conn::open(gw.addr);
    let body = br#"{"model":"m"}"#;
    conn.send_head("POST", "/v1/chat/completions", &[], Some(body.len()));
    std::io::Write::write_all(&mut conn.stream, body).unwrap();
    wait_for("the first attempt", Duration::from_secs(5), || {
        mock.received().len() == 1
    });
    // The gateway now waits out the 429's retry-after before its second attempt.
    std::thread::sleep(Duration::from_millis(300));
    drop(conn);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(mock.received().len(), 1, "the second attempt was sent");
    let log = gw.access_log();
    let line: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["path"] == "/v1/chat/completions")
        .unwrap();
    assert_eq!(line["status"], 499);
    assert_eq!(
        line["attempts"],
        json!([{"endpoint": "custom/m", "outcome": "status_4xx"}])
    );
}

/// `switchyard_upstream_errors_total` counts every failed attempt under its own provider: three
/// 5xx from the first model and the fallback's one are four errors, not one of the fallback's.
#[test]
fn upstream_errors_count_every_failed_attempt_by_its_provider() {
    let (a, b) = (Mock::start(), Mock::start());
    a.set_mode("status=500");
    b.set_mode("status=503");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: alpha/m1, base_url: '{}', retry: {{attempts: 3, on: [5xx], backoff: {{base: 1ms, max: 1ms}}}}, fallbacks: [beta/m2]}}\n  - {{model: beta/m2, base_url: '{}'}}\n",
        a.url(),
        b.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let resp = chat(gw.addr, &[], &common::ask("alpha/m1"));
    assert_eq!(resp.status, 503);
    assert_eq!((a.received().len(), b.received().len()), (3, 1));
    // The last attempt is counted when the request is logged, just after its answer went out.
    let done = r#"switchyard_requests_total{client="anonymous",model="beta/m2",provider="beta",status_class="5xx"}"#;
    wait_for("the request counted", Duration::from_secs(3), || {
        gw.metric(done) == 1.0
    });
    assert_eq!(
        gw.metric(r#"switchyard_upstream_errors_total{class="status_5xx",provider="alpha"}"#),
        3.0
    );
    assert_eq!(
        gw.metric(r#"switchyard_upstream_errors_total{class="status_5xx",provider="beta"}"#),
        1.0
    );
    // One request, one outcome: the per-request counter says it once.
    assert_eq!(
        gw.metric(
            r#"switchyard_requests_total{client="anonymous",model="beta/m2",provider="beta",status_class="5xx"}"#
        ),
        1.0
    );
}
