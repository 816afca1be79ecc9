use super::*;
use crate::config::OtlpProtocol;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

fn settings(sampling: u8, prefixes: &[&str], statics: &[(&str, &str)]) -> Arc<Tracing> {
    Arc::new(Tracing {
        sampling,
        exporter: Arc::new(OtlpExporter {
            protocol: OtlpProtocol::Grpc,
            tls: false,
            host: "localhost".into(),
            port: 4317,
            path: "/".into(),
            headers: Vec::new(),
            resource: Vec::new(),
        }),
        header_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
        statics: statics
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
}

fn request(headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    for (k, v) in headers {
        req.append_header((*k).to_owned(), *v).unwrap();
    }
    req
}

fn begin(s: &Arc<Tracing>, headers: &[(&str, &str)]) -> Option<Box<Trace>> {
    Trace::begin(
        Some(s),
        &request(headers),
        SystemTime::now(),
        Instant::now(),
    )
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";

#[test]
fn the_clients_flag_decides_else_the_percent() {
    let all = settings(100, &[], &[]);
    let none = settings(0, &[], &[]);
    let sampled = format!("{PARENT}-01");
    let t = begin(&none, &[("traceparent", &sampled)]).unwrap();
    assert_eq!(
        context::traceparent(&t.trace_id, &[0; 8])[3..35],
        PARENT[3..35]
    );
    assert!(t.parent.is_some());
    assert!(begin(&all, &[("traceparent", &format!("{PARENT}-00"))]).is_none());
    assert!(begin(&none, &[]).is_none());
    let new = begin(&all, &[("traceparent", "garbage")]).unwrap();
    assert!(new.parent.is_none());
    assert!(Trace::begin(
        None,
        &request(&[("traceparent", &sampled)]),
        SystemTime::now(),
        Instant::now()
    )
    .is_none());
    // A new trace's ids go upstream as the attempt's parent; a client's tracestate does not.
    let mut call = CallTrace::new(new.call());
    assert!(call.new_trace() && call.traceparent().is_none());
    call.attempt_opened(&AttemptTo {
        endpoint: "openai/gpt-4o",
        tls: true,
        host: "api.openai.com",
        port: 443,
        path: "/v1/chat/completions?key=secret",
        api: None,
    });
    let tp = call.traceparent().unwrap();
    let parsed = context::parse(tp.as_bytes()).unwrap();
    assert_eq!(parsed.trace_id, new.trace_id);
    assert_eq!(parsed.span_id, call.attempts[0].span);
    assert_eq!(call.attempts[0].path, "/v1/chat/completions");
}

#[test]
fn plano_header_attributes_over_static_ones_and_never_a_credential() {
    let s = settings(
        100,
        &["x-katanemo-"],
        &[("tenant.id", "static"), ("environment", "production")],
    );
    let long = "v".repeat(1000);
    let req = request(&[
        ("x-katanemo-tenant-id", " acme "),
        ("x-katanemo-user", &long),
        ("x-katanemo-api-key", "sk-secret"),
        ("x-katanemo-authorization", "Bearer sk"),
        ("x-other-thing", "no"),
    ]);
    let attrs = custom_pairs(&s, &req);
    let get = |k: &str| {
        attrs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("tenant.id").as_deref(), Some("acme"));
    assert_eq!(get("environment").as_deref(), Some("production"));
    assert_eq!(get("user").map(|u| u.len()), Some(MAX_HEADER_VALUE));
    assert_eq!(attrs.len(), 3, "no credential and no other header");
}

#[test]
fn an_attempt_is_an_error_when_it_failed_or_answered_4xx_or_5xx() {
    let ids = CallIds {
        trace_id: [1; 16],
        parent: [2; 8],
        span: [3; 8],
        new_trace: true,
    };
    let mut call = CallTrace::new(ids);
    let to = AttemptTo {
        endpoint: "e",
        tls: false,
        host: "127.0.0.1",
        port: 8080,
        path: "/v1/chat/completions",
        api: None,
    };
    for (status, outcome) in [
        (Some(429), "status_4xx"),
        (None, "timeout"),
        (Some(200), "success"),
    ] {
        call.attempt_opened(&to);
        call.attempt_closed(status, outcome);
    }
    let mut spans = Spans::default();
    for (i, a) in call.attempts.iter().enumerate() {
        attempt_span(&mut spans, &call.ids, &call.clock, a, i, Instant::now());
    }
    let errors: Vec<Option<String>> = call.attempts.iter().map(attempt_error).collect();
    assert_eq!(errors, [Some("429".into()), Some("timeout".into()), None]);
    let request = wire::export_request(&[], &[spans], false);
    let decoded = ExportTraceServiceRequest::decode(request.as_slice()).unwrap();
    let spans = &decoded.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[0].status.as_ref().map(|s| s.code), Some(2));
    assert!(spans[2].status.is_none());
    let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(
        attr(&spans[0], names::URL_FULL),
        Some(any_value::Value::StringValue(
            "http://127.0.0.1:8080/v1/chat/completions".into()
        ))
    );
    assert_eq!(attr(&spans[0], names::HTTP_RESEND_COUNT), None);
    assert_eq!(
        attr(&spans[1], names::HTTP_RESEND_COUNT),
        Some(any_value::Value::IntValue(1))
    );
}
