//! Plano's `tracing` on the real binary: the spans an in-repo OTLP receiver gets for each kind of
//! request, the `traceparent` each upstream attempt received, sampling by the client's flag and
//! by `random_sampling`, Plano's span attributes, secrets kept out, a dead collector, a reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::time::Duration;

use common::otlp::{Collector, SpanSeen};
use common::{chat, yaml, Gateway, Mock};
use serde_json::{json, Value};

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;
const CANARY: &str = "sk-canary-7f3a91";
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn tracing_block(collector: &str, sampling: u32) -> String {
    format!(
        r#"
tracing:
  random_sampling: {sampling}
  trace_arch_internal: true
  opentracing_grpc_endpoint: {collector}
  span_attributes:
    header_prefixes: [x-acme-]
    static: {{environment: test, tenant.id: static-tenant}}
"#
    )
}

fn start(mock: &Mock, collector: &Collector, sampling: u32) -> Gateway {
    let config = yaml(&format!(
        r#"
model_providers:
  - {{model: openai/gpt-4o, base_url: '{url}', access_key: $OPENAI_KEY}}
  - {{model: anthropic/claude-sonnet-4-5, base_url: '{url}', access_key: {CANARY}-ant}}
{block}"#,
        url = mock.url(),
        block = tracing_block(&collector.url(), sampling)
    ));
    Gateway::start(&config, &[("OPENAI_KEY", CANARY)])
}

fn by_kind<'a>(spans: &'a [SpanSeen], kind: i32, name: &str) -> Vec<&'a SpanSeen> {
    spans
        .iter()
        .filter(|s| s.kind == kind && s.name == name)
        .collect()
}

fn one<'a>(spans: &'a [SpanSeen], kind: i32, name: &str) -> &'a SpanSeen {
    let found = by_kind(spans, kind, name);
    assert_eq!(found.len(), 1, "one {name} span expected in {spans:#?}");
    found[0]
}

#[test]
fn a_json_request_is_one_trace_whose_attempt_span_is_the_upstreams_parent() {
    let mock = Mock::start();
    let collector = Collector::grpc();
    let gw = start(&mock, &collector, 100);
    let resp = chat(
        gw.addr,
        &[
            ("x-acme-tenant-id", "acme-42"),
            ("x-acme-api-key", CANARY),
            ("x-acme-session-token", CANARY),
            ("user-agent", "tests/1.0"),
        ],
        &json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 50, "temperature": 0.5}),
    );
    assert_eq!(resp.status, 200);
    let spans = collector.wait_spans(3);
    assert_eq!(spans.len(), 3, "{spans:#?}");

    let server = one(&spans, SERVER, "POST /v1/chat/completions");
    let call = one(&spans, CLIENT, "chat gpt-4o");
    let attempt = one(&spans, CLIENT, "POST");
    // No traceparent: a new trace, the server span its root.
    assert_eq!(server.parent, "");
    assert!(spans.iter().all(|s| s.trace_id == server.trace_id));
    assert_eq!(call.parent, server.span_id);
    assert_eq!(attempt.parent, call.span_id);
    assert!(server.start <= call.start && call.start <= attempt.start);
    assert!(attempt.end <= call.end && call.end <= server.end);

    // The upstream got the attempt's span as its parent.
    let received = mock.only();
    assert_eq!(
        received.header("traceparent"),
        Some(format!("00-{}-{}-01", server.trace_id, attempt.span_id).as_str())
    );

    assert_eq!(server.str("http.request.method"), "POST");
    assert_eq!(server.str("url.path"), "/v1/chat/completions");
    assert_eq!(server.str("http.route"), "/v1/chat/completions");
    assert_eq!(server.int("http.response.status_code"), 200);
    assert_eq!(server.str("user_agent.original"), "tests/1.0");
    assert_eq!(server.str("client.address"), "127.0.0.1");
    assert_eq!(
        server.str("request_id"),
        resp.header("x-request-id").unwrap()
    );
    assert_eq!(server.status, 0);
    // Plano's span attributes: a header beats a static value of the same key; credentials
    // never, whatever the prefix.
    assert_eq!(server.str("tenant.id"), "acme-42");
    assert_eq!(server.str("environment"), "test");
    assert!(server.attr("api.key").is_none() && server.attr("session.token").is_none());
    assert_eq!(call.str("tenant.id"), "acme-42");

    assert_eq!(call.str("gen_ai.operation.name"), "chat");
    assert_eq!(call.str("gen_ai.provider.name"), "openai");
    assert_eq!(call.str("gen_ai.request.model"), "gpt-4o");
    assert_eq!(call.str("gen_ai.response.model"), "gpt-4o");
    assert_eq!(
        call.attr("gen_ai.response.finish_reasons"),
        Some(&json!(["stop"]))
    );
    assert_eq!(call.str("openai.api.type"), "chat_completions");
    assert_eq!(call.str("llm.model"), "openai/gpt-4o");
    assert!(call.int("gen_ai.usage.input_tokens") > 0);
    assert!(call.int("gen_ai.usage.output_tokens") > 0);
    assert_eq!(
        call.int("llm.usage.total_tokens"),
        call.int("gen_ai.usage.input_tokens") + call.int("gen_ai.usage.output_tokens")
    );
    assert!(call.attr("gen_ai.request.stream").is_none());

    assert_eq!(
        attempt.str("url.full"),
        format!("{}/v1/chat/completions", mock.url())
    );
    assert_eq!(attempt.str("server.address"), "127.0.0.1");
    assert_eq!(attempt.int("server.port"), i64::from(mock.addr.port()));
    assert_eq!(attempt.int("http.response.status_code"), 200);
    assert!(attempt.attr("http.request.resend_count").is_none());
    assert_eq!(attempt.status, 0);

    assert_eq!(server.resource["service.name"], json!("switchyard"));
    // Not a byte of any credential reached the collector.
    for bytes in collector.raw() {
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "a credential was exported"
        );
    }
    // Counted once the collector's answer is read, just after it kept the spans.
    common::wait_for("the export to be counted", Duration::from_secs(5), || {
        gw.metric("switchyard_trace_spans_exported_total") == 3.0
    });
    assert_eq!(
        collector.paths()[0],
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    );
}

#[test]
fn a_stream_continues_the_clients_sampled_trace() {
    let mock = Mock::start();
    let collector = Collector::grpc();
    // 1 percent: the client's sampled flag decides, not the percent.
    let gw = start(&mock, &collector, 1);
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    for _ in 0..3 {
        let resp = chat(
            gw.addr,
            &[
                ("traceparent", &parent),
                ("tracestate", "vendor=1"),
                ("x-mock", "sse=3,gap_ms=5,usage"),
            ],
            &json!({"model": "openai/gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(resp.status, 200);
    }
    let spans = collector.wait_spans(9);
    let servers = by_kind(&spans, SERVER, "POST /v1/chat/completions");
    assert_eq!(servers.len(), 3);
    for server in servers {
        assert_eq!(
            (server.trace_id.as_str(), server.parent.as_str()),
            (PARENT_TRACE, PARENT_SPAN)
        );
    }
    let call = by_kind(&spans, CLIENT, "chat gpt-4o")[0];
    assert_eq!(call.attr("gen_ai.request.stream"), Some(&json!(true)));
    assert_eq!(call.attr("llm.is_streaming"), Some(&json!(true)));
    let ttfc = call
        .attr("gen_ai.response.time_to_first_chunk")
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(ttfc > 0.0 && ttfc < 5.0, "{ttfc}");
    assert_eq!(
        call.attr("gen_ai.response.finish_reasons"),
        Some(&json!(["stop"]))
    );
    assert_eq!(call.int("gen_ai.usage.input_tokens"), 7);
    assert_eq!(call.int("gen_ai.usage.output_tokens"), 3);
    assert_eq!(call.int("gen_ai.usage.cache_read.input_tokens"), 4);
    // Each upstream request continued the client's trace under its own attempt span, with the
    // client's tracestate kept.
    let attempts: Vec<String> = by_kind(&spans, CLIENT, "POST")
        .iter()
        .map(|a| format!("00-{PARENT_TRACE}-{}-01", a.span_id))
        .collect();
    for r in mock.received() {
        assert!(attempts.contains(&r.header("traceparent").unwrap().to_owned()));
        assert_eq!(r.header("tracestate"), Some("vendor=1"));
    }
}

#[test]
fn an_unsampled_parent_or_zero_sampling_exports_nothing_and_forwards_the_header_unchanged() {
    let mock = Mock::start();
    let collector = Collector::grpc();
    let gw = start(&mock, &collector, 100);
    let unsampled = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00");
    let body = json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        chat(gw.addr, &[("traceparent", &unsampled)], &body).status,
        200
    );
    let zero_mock = Mock::start();
    let zero = start(&zero_mock, &collector, 0);
    let sampled = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    assert_eq!(
        chat(zero.addr, &[("traceparent", &sampled)], &body).status,
        200
    );
    assert_eq!(chat(zero.addr, &[], &body).status, 200);
    // Long enough for a batch to have left (the exporter waits at most a second).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(collector.raw().is_empty(), "{:#?}", collector.spans());
    assert_eq!(mock.only().header("traceparent"), Some(unsampled.as_str()));
    let received = zero_mock.received();
    assert_eq!(received[0].header("traceparent"), Some(sampled.as_str()));
    assert_eq!(received[1].header("traceparent"), None);
}

#[test]
fn a_failover_has_an_attempt_span_per_upstream_each_with_its_own_traceparent() {
    let (bad, good) = (Mock::start(), Mock::start());
    bad.set_mode("status=503");
    let collector = Collector::grpc();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: k, fallbacks: [gpt-4o-mini]}}\n  - {{model: openai/gpt-4o-mini, base_url: '{}', access_key: k}}\n{}",
        bad.url(),
        good.url(),
        tracing_block(&collector.url(), 100)
    ));
    let gw = Gateway::start(&config, &[]);
    let resp = chat(
        gw.addr,
        &[],
        &json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(resp.status, 200);
    let spans = collector.wait_spans(4);
    let call = by_kind(&spans, CLIENT, "chat gpt-4o-mini");
    assert_eq!(
        call.len(),
        1,
        "one model call covers both attempts: {spans:#?}"
    );
    assert_eq!(call[0].int("switchyard.attempts"), 2);
    let mut attempts = by_kind(&spans, CLIENT, "POST");
    attempts.sort_by_key(|a| a.start);
    assert_eq!(attempts.len(), 2);
    let (first, second) = (attempts[0], attempts[1]);
    assert!(first.attr("http.request.resend_count").is_none());
    assert_eq!(second.int("http.request.resend_count"), 1);
    assert_eq!(first.int("http.response.status_code"), 503);
    assert_eq!(first.str("error.type"), "503");
    assert_eq!(first.status, 2);
    assert_eq!(second.int("http.response.status_code"), 200);
    assert_eq!(second.status, 0);
    assert!(attempts.iter().all(|a| a.parent == call[0].span_id));
    let tp = |m: &Mock| m.only().header("traceparent").unwrap().to_owned();
    assert_eq!(
        tp(&bad),
        format!("00-{}-{}-01", first.trace_id, first.span_id)
    );
    assert_eq!(
        tp(&good),
        format!("00-{}-{}-01", second.trace_id, second.span_id)
    );
    assert_ne!(tp(&bad), tp(&good));
}

#[test]
fn a_translated_request_names_the_upstreams_provider_and_counts_cache_in_input() {
    let mock = Mock::start();
    let collector = Collector::grpc();
    let gw = start(&mock, &collector, 100);
    let resp = chat(
        gw.addr,
        &[("x-mock", "anthropic")],
        &json!({"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(resp.status, 200);
    let spans = collector.wait_spans(3);
    let call = one(&spans, CLIENT, "chat claude-sonnet-4-5");
    assert_eq!(call.str("gen_ai.provider.name"), "anthropic");
    assert!(call.attr("openai.api.type").is_none());
    // Anthropic's 10 input tokens plus 2 read from and 1 written to the cache.
    assert_eq!(call.int("gen_ai.usage.input_tokens"), 13);
    assert_eq!(call.int("gen_ai.usage.output_tokens"), 5);
    assert_eq!(call.int("gen_ai.usage.cache_read.input_tokens"), 2);
    assert_eq!(call.int("gen_ai.usage.cache_write.input_tokens"), 1);
    assert_eq!(
        call.attr("gen_ai.response.finish_reasons"),
        Some(&json!(["end_turn"]))
    );
    let attempt = one(&spans, CLIENT, "POST");
    assert_eq!(
        attempt.str("url.full"),
        format!("{}/v1/messages", mock.url())
    );
    let received = mock.only();
    assert_eq!(
        received.header("traceparent").unwrap(),
        format!("00-{}-{}-01", attempt.trace_id, attempt.span_id)
    );
}

#[test]
fn a_routed_request_has_a_routing_span_with_the_router_call_under_it() {
    let (router, quick) = (Mock::start(), Mock::start());
    router.set_mode(r#"reply={"route": "quick tasks"}"#);
    let collector = Collector::grpc();
    let config = yaml(&format!(
        r#"
overrides:
  llm_routing_model: plano/Arch-Router
model_providers:
  - {{model: plano/Arch-Router, base_url: '{}'}}
  - {{model: openai/gpt-4o-mini, base_url: '{}', access_key: k, default: true}}
routing_preferences:
  - {{name: quick tasks, description: short factual questions, models: [openai/gpt-4o-mini]}}
{}"#,
        router.url(),
        quick.url(),
        tracing_block(&collector.url(), 100)
    ));
    let gw = Gateway::start(&config, &[]);
    let resp = chat(
        gw.addr,
        &[],
        &json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "what is 2+2?"}]}),
    );
    assert_eq!(resp.status, 200);
    let spans = collector.wait_spans(6);
    let server = one(&spans, SERVER, "POST /v1/chat/completions");
    let routing = one(&spans, INTERNAL, "routing");
    assert_eq!(routing.parent, server.span_id);
    assert_eq!(routing.str("plano.route.name"), "quick tasks");
    assert_eq!(routing.str("route.selected_model"), "openai/gpt-4o-mini");
    assert_eq!(routing.str("switchyard.route.source"), "routed");
    let router_call = one(&spans, CLIENT, "chat Arch-Router");
    assert_eq!(router_call.parent, routing.span_id);
    let model_call = one(&spans, CLIENT, "chat gpt-4o-mini");
    assert_eq!(model_call.parent, server.span_id);
    assert_eq!(model_call.str("plano.route.name"), "quick tasks (router)");
    let attempts = by_kind(&spans, CLIENT, "POST");
    let router_attempt = attempts
        .iter()
        .find(|a| a.parent == router_call.span_id)
        .unwrap();
    assert_eq!(
        router.only().header("traceparent").unwrap(),
        format!("00-{}-{}-01", server.trace_id, router_attempt.span_id)
    );
    assert!(routing.start <= router_call.start && router_call.end <= routing.end);
}

#[test]
fn a_dead_collector_costs_spans_not_requests() {
    let mock = Mock::start();
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: k}}\n{}",
        mock.url(),
        tracing_block(&dead, 100)
    ));
    let gw = Gateway::start(&config, &[]);
    let body = json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    // Two rounds, so two exports fail.
    for round in 1..=2 {
        for _ in 0..20 {
            assert_eq!(chat(gw.addr, &[], &body).status, 200);
        }
        assert_eq!(mock.received().len(), 20 * round);
        common::wait_for("the drops to be counted", Duration::from_secs(10), || {
            let dropped = r#"switchyard_trace_spans_dropped_total{reason="export_error"}"#;
            gw.metric(dropped) >= 60.0 * round as f64
        });
    }
    assert_eq!(gw.metric("switchyard_trace_spans_exported_total"), 0.0);
    // Said once, not once per failed export.
    let said = gw.logs().matches("spans not exported").count();
    assert_eq!(said, 1, "{}", gw.logs());
}

#[test]
fn otlp_http_and_the_service_name_come_from_the_standard_environment() {
    let mock = Mock::start();
    let collector = Collector::http();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: k}}\ntracing: {{random_sampling: 100}}\n",
        mock.url()
    ));
    let endpoint = collector.url();
    let gw = Gateway::start(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "edge-gateway"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging"),
        ],
    );
    let body = json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(chat(gw.addr, &[], &body).status, 200);
    let spans = collector.wait_spans(3);
    assert_eq!(collector.paths()[0], "/v1/traces");
    assert_eq!(spans[0].resource["service.name"], json!("edge-gateway"));
    assert_eq!(
        spans[0].resource["deployment.environment"],
        json!("staging")
    );
}

#[test]
fn a_reload_changes_the_endpoint_and_the_sampling() {
    let mock = Mock::start();
    let (first, second) = (Collector::grpc(), Collector::grpc());
    let mut gw = start(&mock, &first, 100);
    let body = json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let reload = |gw: &mut Gateway, n: f64, edit: &dyn Fn(&mut Value)| {
        gw.rewrite(edit);
        gw.signal("HUP");
        common::wait_for("the reload", Duration::from_secs(10), || {
            gw.metric(r#"switchyard_config_reloads_total{result="success"}"#) == n
        });
    };
    assert_eq!(chat(gw.addr, &[], &body).status, 200);
    first.wait_spans(3);
    let url = second.url();
    reload(&mut gw, 1.0, &|c| {
        c["tracing"]["opentracing_grpc_endpoint"] = url.clone().into();
    });
    assert_eq!(chat(gw.addr, &[], &body).status, 200);
    second.wait_spans(3);
    reload(&mut gw, 2.0, &|c| {
        c["tracing"]["random_sampling"] = 0.into()
    });
    for _ in 0..5 {
        assert_eq!(chat(gw.addr, &[], &body).status, 200);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!((first.spans().len(), second.spans().len()), (3, 3));
}

#[test]
fn spans_still_queued_at_a_graceful_stop_are_exported() {
    let mock = Mock::start();
    let collector = Collector::grpc();
    let mut gw = start(&mock, &collector, 100);
    let body = json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(chat(gw.addr, &[], &body).status, 200);
    // At once: the batch would otherwise wait up to a second for more spans.
    gw.signal("TERM");
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(collector.spans().len(), 3);
}
