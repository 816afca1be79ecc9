//! The request path end to end: bodies of every size and framing, SSE, h2c, local endpoints and
//! every error case, asserted on what the upstream received and what the client got.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{chat, request, yaml, Conn, Gateway, Mock};
use serde_json::{json, Value};

const KEY: &str = "sk-managed-test-key";

/// One managed provider at `mock`, plus one on a port nothing listens on.
fn config(mock: &Mock, extra: &str) -> Value {
    let dead = common::free_port();
    yaml(&format!(
        r#"
model_providers:
  - model: openai/gpt-4o
    base_url: {url}
    access_key: $TEST_KEY
  - model: openai/gpt-4o-mini
    name: mini
    base_url: {url}/openai/v1
    access_key: $TEST_KEY
    http_host: api.example.test
    headers: {{X-Team: blue}}
  - model: dead/model
    base_url: http://127.0.0.1:{dead}
model_aliases:
  fast: {{target: mini}}
{extra}
"#,
        url = mock.url()
    ))
}

fn start(mock: &Mock, extra: &str) -> Gateway {
    Gateway::start(&config(mock, extra), &[("TEST_KEY", KEY)])
}

/// A chat body of exactly `size` bytes before the model rewrite.
fn body_of_size(size: usize) -> Vec<u8> {
    let head = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":""#;
    let tail = r#""}],"temperature":0.25}"#;
    let fill = size - head.len() - tail.len();
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    body.extend((0..fill).map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26]));
    body.extend_from_slice(tail.as_bytes());
    body
}

fn expected_upstream(body: &[u8]) -> Vec<u8> {
    let s = std::str::from_utf8(body).unwrap();
    s.replacen(r#""model":"openai/gpt-4o""#, r#""model":"gpt-4o""#, 1)
        .into_bytes()
}

#[test]
fn bodies_of_any_size_and_framing_arrive_byte_exact() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let sizes = [1024, 64 * 1024 + 100, 1 << 20, 10 << 20];
    let mut sent = 0;
    for size in sizes {
        let body = body_of_size(size);
        for (chunked, expect) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut conn = Conn::open(gw.addr);
            let mut headers = vec![
                ("content-type", "application/json"),
                ("authorization", "Bearer sk-client"),
            ];
            if expect {
                headers.push(("expect", "100-continue"));
            }
            conn.send_head(
                "POST",
                "/v1/chat/completions",
                &headers,
                (!chunked).then_some(body.len()),
            );
            if expect {
                // The gateway must say 100 Continue before the client sends the body.
                let mut first = [0u8; 25];
                std::io::Read::read_exact(&mut conn.stream, &mut first).unwrap();
                assert!(
                    first.starts_with(b"HTTP/1.1 100 Continue"),
                    "{}",
                    String::from_utf8_lossy(&first)
                );
            }
            if chunked {
                conn.send_chunked(&body, 16 * 1024 + 7);
            } else {
                conn.stream.write_all(&body).unwrap();
            }
            let resp = conn.read_response();
            assert_eq!(
                resp.status, 200,
                "size {size} chunked {chunked} expect {expect}"
            );
            sent += 1;
            let got = mock.received().pop().unwrap();
            let want = expected_upstream(&body);
            assert!(
                got.body == want,
                "size {size} chunked {chunked} expect {expect}: body differs"
            );
            assert_eq!(
                got.header("content-length"),
                Some(want.len().to_string().as_str())
            );
            assert_eq!(got.header("transfer-encoding"), None);
            assert_eq!(got.header("expect"), None);
            assert_eq!(
                got.header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            );
        }
    }
    assert_eq!(mock.received().len(), sent);
}

#[test]
fn upstream_request_has_rewritten_path_host_and_headers() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let resp = request(
        gw.addr,
        "POST",
        "/v1/chat/completions?api-version=1",
        &[
            ("x-api-key", "sk-client"),
            ("accept-encoding", "gzip"),
            ("x-request-id", "r-1"),
        ],
        br#"{"model":"fast","stream":false}"#,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-upstream"),
        Some("mock"),
        "upstream headers reach the client"
    );
    let got = mock.only();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/openai/v1/chat/completions?api-version=1");
    assert_eq!(got.header("host"), Some("api.example.test"));
    assert_eq!(got.header("x-team"), Some("blue"));
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(got.header("x-api-key"), None);
    assert_eq!(got.header("accept-encoding"), None);
    assert_eq!(got.header("x-request-id"), Some("r-1"));
    assert_eq!(got.body, br#"{"model":"gpt-4o-mini","stream":false}"#);
}

#[test]
fn completions_and_embeddings_are_forwarded_too() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    for path in ["/v1/completions", "/v1/embeddings"] {
        let resp = request(
            gw.addr,
            "POST",
            path,
            &[],
            br#"{"model":"gpt-4o","input":"x"}"#,
        );
        assert_eq!(resp.status, 200);
    }
    let got = mock.received();
    assert_eq!(got[0].path, "/v1/completions");
    assert_eq!(got[1].path, "/v1/embeddings");
}

/// Sends a streaming chat request; the mock answers as `mock_mode` says.
fn stream_request(gw: &Gateway, mock_mode: &str) -> Conn {
    let mut conn = Conn::open(gw.addr);
    let body = br#"{"model":"gpt-4o","stream":true}"#;
    conn.send_head(
        "POST",
        "/v1/chat/completions",
        &[("x-mock", mock_mode)],
        Some(body.len()),
    );
    conn.stream.write_all(body).unwrap();
    conn
}

#[test]
fn sse_arrives_event_by_event() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let mut conn = stream_request(&gw, "sse=5,gap_ms=300");
    let (status, headers) = conn.read_head();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "text/event-stream"));

    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut events = Vec::new();
    while let Some(chunk) = conn.read_chunk() {
        arrivals.push(start.elapsed());
        events.push(String::from_utf8(chunk).unwrap());
    }
    let text = events.concat();
    assert_eq!(
        text.matches("data: ").count(),
        7, // 5 deltas, the finish chunk, [DONE]
        "{text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    // Progressive: the first event was in the client's hands long before the last one.
    assert!(events.len() >= 5, "events were coalesced: {events:?}");
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(900),
        "events arrived together: {arrivals:?}"
    );
}

#[test]
fn a_stream_cut_mid_way_never_looks_complete() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let mut conn = stream_request(&gw, "sse=3,gap_ms=50,cut");
    assert_eq!(conn.read_head().0, 200);
    let mut got = Vec::new();
    let end = loop {
        match conn.try_read_chunk() {
            Ok(Some(chunk)) => got.extend(chunk),
            Ok(None) => break "final chunk",
            Err(()) => break "connection closed",
        }
    };
    assert_eq!(end, "connection closed", "the client must see the cut");
    let text = String::from_utf8(got).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 4, "{text}");
    assert!(events[..3]
        .iter()
        .all(|e| e.contains("chat.completion.chunk")));
    // The last event says what happened, in OpenAI's shape.
    let last: serde_json::Value =
        serde_json::from_str(events[3].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{last}");
}

#[test]
fn a_stream_cut_inside_an_event_ends_with_whole_events_only() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    for mode in ["sse=3,gap_ms=20,cut_mid", "sse=3,gap_ms=20,cut_mid,split"] {
        let mut conn = stream_request(&gw, mode);
        assert_eq!(conn.read_head().0, 200);
        let mut got = Vec::new();
        while let Ok(Some(chunk)) = conn.try_read_chunk() {
            got.extend(chunk);
        }
        let text = String::from_utf8(got).unwrap();
        assert!(text.ends_with("\n\n"), "{mode}: {text}");
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 4, "{mode}: {text}");
        // Every event parses, as an SDK would parse it: no half of the cut one.
        let parsed: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(
            parsed[3]["error"]["code"], "upstream_error",
            "{mode}: {text}"
        );
    }
}

#[test]
fn a_client_that_leaves_cancels_the_upstream_request() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let mut conn = Conn::open(gw.addr);
    let body = br#"{"model":"gpt-4o"}"#;
    conn.send_head(
        "POST",
        "/v1/chat/completions",
        &[("x-mock", "delay_ms=5000")],
        Some(body.len()),
    );
    conn.stream.write_all(body).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while mock.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mock.received().len(), 1);
    drop(conn);
    // The upstream sees its connection closed well before its 5 s answer.
    let deadline = Instant::now() + Duration::from_secs(3);
    while mock.hangups() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mock.hangups(), 1, "upstream request was not cancelled");
}

#[test]
fn upstream_connections_are_pooled_and_a_broken_one_is_not_reused() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    // One after another, each from a new client connection: a JSON answer, a whole stream, an
    // upstream error passed through, a 1 MiB body.
    assert_eq!(chat(gw.addr, &[], &common::ask("gpt-4o")).status, 200);
    let mut conn = stream_request(&gw, "sse=3,gap_ms=10");
    assert_eq!(conn.read_head().0, 200);
    while conn.read_chunk().is_some() {}
    let error = chat(gw.addr, &[("x-mock", "status=500")], &common::ask("gpt-4o"));
    assert_eq!(error.status, 500);
    let big = body_of_size(1 << 20);
    let resp = request(gw.addr, "POST", "/v1/chat/completions", &[], &big);
    assert_eq!(resp.status, 200);
    let received = mock.received();
    assert_eq!(received.len(), 4);
    let first = received[0].connection;
    assert!(
        received.iter().all(|r| r.connection == first),
        "upstream connections: {:?}",
        received.iter().map(|r| r.connection).collect::<Vec<_>>()
    );

    // A stream the upstream cut leaves a connection nobody can trust: the next request gets a
    // fresh one.
    let mut conn = stream_request(&gw, "sse=2,gap_ms=10,cut");
    assert_eq!(conn.read_head().0, 200);
    while let Ok(Some(_)) = conn.try_read_chunk() {}
    assert_eq!(chat(gw.addr, &[], &common::ask("gpt-4o")).status, 200);
    let received = mock.received();
    assert_eq!(received.len(), 6);
    assert_eq!(received[4].connection, first);
    assert_ne!(received[5].connection, first);
}

#[test]
fn upstream_errors_pass_through_untouched() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    for code in [400u16, 429, 500, 503] {
        let resp = chat(
            gw.addr,
            &[("x-mock", &format!("status={code}"))],
            &common::ask("gpt-4o"),
        );
        assert_eq!(resp.status, code);
        assert_eq!(
            resp.json(),
            json!({"error": {"message": "mock error", "type": "mock", "code": code}})
        );
    }
}

fn assert_gateway_error(resp: &common::Response, status: u16, code: &str) {
    assert_eq!(
        resp.status,
        status,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = resp.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(v["error"]["type"].is_string());
}

#[test]
fn gateway_errors_are_openai_shaped_and_send_nothing_upstream() {
    let mock = Mock::start();
    let gw = start(&mock, "server: {max_request_body: 4KiB}");
    let post = |body: &[u8]| request(gw.addr, "POST", "/v1/chat/completions", &[], body);

    assert_gateway_error(
        &post(b"{\"model\": \"gpt-4o\""),
        400,
        "invalid_request_body",
    );
    assert_gateway_error(&post(b"[1,2,3]"), 400, "invalid_request_body");
    assert_gateway_error(&post(b""), 400, "invalid_request_body");
    assert_gateway_error(&post(br#"{"model": 7}"#), 400, "invalid_request_body");
    let resp = post(br#"{"model":"gpt-9"}"#);
    assert_gateway_error(&resp, 404, "model_not_found");
    assert_eq!(resp.json()["error"]["param"], "model");
    assert_gateway_error(&post(br#"{"messages":[]}"#), 400, "model_required");

    // Over the limit, declared up front: refused before the body is read, connection closed.
    let big = body_of_size(8 * 1024);
    let resp = post(&big);
    assert_gateway_error(&resp, 413, "request_too_large");
    assert_eq!(resp.header("connection"), Some("close"));
    // Over the limit, chunked: found while reading.
    let mut conn = Conn::open(gw.addr);
    conn.send_head("POST", "/v1/chat/completions", &[], None);
    conn.send_chunked(&big, 1000);
    assert_gateway_error(&conn.read_response(), 413, "request_too_large");

    assert_gateway_error(
        &request(gw.addr, "GET", "/v1/chat/completions", &[], b""),
        405,
        "method_not_allowed",
    );
    assert_gateway_error(
        &request(gw.addr, "POST", "/v1/messages2", &[], b"{}"),
        404,
        "unknown_url",
    );
    assert_gateway_error(&request(gw.addr, "GET", "/", &[], b""), 404, "unknown_url");

    assert!(mock.received().is_empty(), "{:?}", mock.received());
}

#[test]
fn keepalive_survives_gateway_errors() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let mut conn = Conn::open(gw.addr);
    for (body, status) in [
        (&br#"{"model":"nope"}"#[..], 404),
        (br#"{"model":"gpt-4o"}"#, 200),
        (b"{", 400),
        (br#"{"model":"mini"}"#, 200),
    ] {
        conn.send_head("POST", "/v1/chat/completions", &[], Some(body.len()));
        conn.stream.write_all(body).unwrap();
        assert_eq!(conn.read_response().status, status);
    }
    assert_eq!(mock.received().len(), 2);
}

#[test]
fn refused_upstream_is_502() {
    let mock = Mock::start();
    let gw = start(&mock, "overrides: {upstream_connect_timeout: 1s}");
    let resp = chat(gw.addr, &[], &common::ask("dead/model"));
    assert_gateway_error(&resp, 502, "upstream_unreachable");
    let message = resp.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("dead/model"), "{message}");
    // The cause, in the answer and in the access log.
    assert!(message.contains("connection refused"), "{message}");
    common::wait_for("the access-log line", Duration::from_secs(5), || {
        gw.access_log().contains("\"status\":502")
    });
    let line: Value = gw
        .access_log()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["status"] == 502)
        .unwrap();
    assert_eq!(line["error"], "connect");
    assert_eq!(line["cause"], "connection refused");
}

#[test]
fn slow_upstream_is_504_after_the_listener_timeout() {
    let mock = Mock::start();
    // Waits at most 1 s for the next upstream byte; the upstream takes 3 s.
    let gw = start(&mock, "listeners: [{name: llm, type: model, timeout: 1s}]");
    let started = Instant::now();
    let resp = chat(
        gw.addr,
        &[("x-mock", "delay_ms=3000")],
        &common::ask("gpt-4o"),
    );
    assert_gateway_error(&resp, 504, "upstream_timeout");
    assert!(started.elapsed() < Duration::from_millis(2900));
}

#[test]
fn models_and_health_are_served_locally() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let resp = request(gw.addr, "GET", "/v1/models", &[], b"");
    assert_eq!(resp.status, 200);
    let ids: Vec<String> = resp.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    // Providers by name, then aliases (Plano's clients are told to call /v1/models).
    assert_eq!(ids, ["openai/gpt-4o", "mini", "dead/model", "fast"]);
    assert_eq!(resp.json()["data"][3]["owned_by"], "openai");
    assert_eq!(resp.json()["object"], "list");
    assert_eq!(request(gw.addr, "GET", "/healthz", &[], b"").status, 200);
    assert!(mock.received().is_empty());
}

/// Each list is asked through the proxy phase like any provider request: with the credential in
/// the upstream's own form, counted as an upstream attempt.
#[test]
fn wildcard_providers_list_what_their_upstream_lists() {
    let (proxy, managed, dead) = (Mock::start(), Mock::start(), common::free_port());
    let claude = Mock::start();
    let config = yaml(&format!(
        r#"
model_providers:
  - {{model: openai/gpt-4o, base_url: '{managed}', access_key: sk-managed}}
  - {{model: custom/*, base_url: '{proxy}', passthrough_auth: true}}
  - {{model: groq/*, base_url: '{managed}/openai/v1', access_key: sk-managed}}
  - {{model: anthropic/*, base_url: '{claude}', access_key: sk-ant-managed}}
  - {{model: gone/*, base_url: 'http://127.0.0.1:{dead}', access_key: sk-managed}}
"#,
        managed = managed.url(),
        proxy = proxy.url(),
        claude = claude.url(),
    ));
    let gw = Gateway::start(&config, &[]);
    let list = |key: &str| -> Vec<String> {
        let resp = request(gw.addr, "GET", "/v1/models", &[("authorization", key)], b"");
        assert_eq!(resp.status, 200);
        resp.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The dead upstream is left out; the rest come under their prefix, after the named models.
    let expected = [
        "openai/gpt-4o",
        "custom/alpha",
        "custom/beta",
        "groq/alpha",
        "groq/beta",
        "anthropic/alpha",
        "anthropic/beta",
    ];
    assert_eq!(list("Bearer sk-caller-1"), expected);
    // The passthrough upstream was asked with the caller's key; the managed one with its own.
    let asked = proxy.only();
    assert_eq!(
        (asked.method.as_str(), asked.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(asked.header("authorization"), Some("Bearer sk-caller-1"));
    let managed_asked = managed.only();
    assert_eq!(managed_asked.path, "/openai/v1/models");
    assert_eq!(
        managed_asked.header("authorization"),
        Some("Bearer sk-managed")
    );
    // Cached: the same caller again asks nobody; another caller's key asks the passthrough
    // upstream (its list may differ), not the managed one.
    assert_eq!(list("Bearer sk-caller-1"), expected);
    assert_eq!(proxy.received().len(), 1);
    assert_eq!(list("Bearer sk-caller-2"), expected);
    assert_eq!(proxy.received().len(), 2);
    assert_eq!(
        proxy.received()[1].header("authorization"),
        Some("Bearer sk-caller-2")
    );
    assert_eq!(managed.received().len(), 1);
    // Anthropic's list is asked as Anthropic takes a credential: x-api-key, never Bearer.
    let claude_asked = claude.only();
    assert_eq!(
        (claude_asked.method.as_str(), claude_asked.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(claude_asked.header("x-api-key"), Some("sk-ant-managed"));
    assert_eq!(claude_asked.header("authorization"), None);
    assert_eq!(claude_asked.header("anthropic-version"), Some("2023-06-01"));
    // Every ask is an upstream attempt in the metrics (the callers' second asks of the
    // passthrough upstream included; cached answers are not asks).
    assert_eq!(
        gw.metric(r#"switchyard_upstream_attempts_total{outcome="success",provider="custom"}"#),
        2.0
    );
    assert_eq!(
        gw.metric(r#"switchyard_upstream_attempts_total{outcome="success",provider="anthropic"}"#),
        1.0
    );
    assert!(!gw.logs().contains("sk-caller"));
}

#[test]
fn h2c_clients_are_served() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Every size the HTTP/1.1 test sends: this request's proxy phase and the subrequest's.
    let bodies: Vec<Vec<u8>> = [1024, 64 * 1024 + 100, 1 << 20, 10 << 20]
        .into_iter()
        .map(body_of_size)
        .collect();
    let bare = br#"{"model":"gpt-4o","n":1}"#.to_vec();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        for body in std::iter::once(&bare).chain(&bodies) {
            let req = http::Request::post(format!("http://{}/v1/chat/completions", gw.addr))
                .header("authorization", "Bearer sk-client")
                .body(())
                .unwrap();
            let (resp, mut stream) = client.send_request(req, false).unwrap();
            stream.reserve_capacity(body.len());
            stream.send_data(body.clone().into(), true).unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut data = resp.into_body();
            let mut out = Vec::new();
            while let Some(chunk) = data.data().await {
                let chunk = chunk.unwrap();
                data.flow_control().release_capacity(chunk.len()).unwrap();
                out.extend_from_slice(&chunk);
            }
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["model"], "gpt-4o");
            client = client.ready().await.unwrap();
        }
    });
    let got = mock.received();
    assert_eq!(got.len(), 1 + bodies.len());
    assert_eq!(got[0].body, bare, "a bare model is sent as it came");
    for (got, body) in got[1..].iter().zip(&bodies) {
        assert!(
            got.body == expected_upstream(body),
            "{} bytes differ",
            body.len()
        );
        assert_eq!(
            got.header("content-length"),
            Some(expected_upstream(body).len().to_string().as_str())
        );
        assert_eq!(
            got.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
}

#[test]
fn https_upstreams_are_verified_against_the_configured_ca() {
    let mock = Mock::start_tls();
    let ca = format!("{}/tests/fixtures/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    let config = |ca: Option<&str>| {
        let mut c = yaml(&format!(
            "model_providers: [{{model: openai/gpt-4o, base_url: '{}/v1', access_key: $TEST_KEY}}]",
            mock.tls_url()
        ));
        if let Some(ca) = ca {
            c["overrides"] = json!({"upstream_tls_ca_path": ca});
        }
        c
    };

    let gw = Gateway::start(&config(Some(&ca)), &[("TEST_KEY", KEY)]);
    let resp = chat(gw.addr, &[], &common::ask("gpt-4o"));
    assert_eq!(resp.status, 200, "{}", gw.logs());
    let got = mock.only();
    assert_eq!(
        got.header("host"),
        Some(format!("localhost:{}", mock.addr.port()).as_str())
    );
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    drop(gw);

    // The system roots do not know the test CA: the certificate is refused, nothing is sent.
    let gw = Gateway::start(&config(None), &[("TEST_KEY", KEY)]);
    let resp = chat(gw.addr, &[], &common::ask("gpt-4o"));
    assert_gateway_error(&resp, 502, "upstream_unreachable");
    let message = resp.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("TLS"), "{message}");
    assert_eq!(mock.received().len(), 1);
}

#[test]
fn upstream_host_names_are_resolved() {
    let mock = Mock::start();
    let url = format!("http://localhost:{}", mock.addr.port());
    let gw = Gateway::start(
        &yaml(&format!(
            "model_providers: [{{model: custom/m, base_url: '{url}'}}]"
        )),
        &[],
    );
    for _ in 0..3 {
        assert_eq!(chat(gw.addr, &[], &common::ask("m")).status, 200);
    }
    assert_eq!(mock.received().len(), 3);
    assert_eq!(
        mock.received()[0].header("host"),
        Some(format!("localhost:{}", mock.addr.port()).as_str())
    );
}

#[test]
fn https_providers_are_offered_h2_by_alpn_and_h1_when_it_is_turned_off() {
    let ca = format!("{}/tests/fixtures/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    let mock = Mock::start_tls_h2();
    let config = |extra: &str| {
        let mut c = yaml(&format!(
            "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}/v1', access_key: $TEST_KEY{extra}}}\n  - {{model: anthropic/claude, base_url: '{}', access_key: $TEST_KEY{extra}}}\n",
            mock.tls_url(),
            mock.tls_url()
        ));
        c["overrides"] = json!({"upstream_tls_ca_path": ca});
        c
    };
    let gw = Gateway::start(&config(""), &[("TEST_KEY", KEY)]);

    // A small body (this request's proxy phase) and a 1 MiB one (a subrequest), byte-exact.
    for size in [1024, 1 << 20] {
        let body = body_of_size(size);
        let resp = request(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            &body,
        );
        assert_eq!(resp.status, 200, "{size}: {}", gw.logs());
        assert_eq!(resp.json()["model"], "gpt-4o");
        let got = mock.received().pop().unwrap();
        assert!(got.http2, "{size} bytes went over HTTP/1.1");
        assert!(got.body == expected_upstream(&body), "{size} bytes differ");
        assert_eq!(got.path, "/v1/chat/completions");
        assert_eq!(
            got.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(
            got.header("host"),
            Some(format!("localhost:{}", mock.addr.port()).as_str())
        );
    }

    // SSE over h2 arrives event by event.
    let mut conn = stream_request(&gw, "sse=4,gap_ms=250");
    assert_eq!(conn.read_head().0, 200);
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = conn.read_chunk() {
        arrivals.push(start.elapsed());
        text.push_str(&String::from_utf8(chunk).unwrap());
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(*arrivals.last().unwrap() - arrivals[0] >= Duration::from_millis(600));
    assert!(mock.received().pop().unwrap().http2);

    // A Messages client to the Anthropic provider, streaming, and an OpenAI client translated
    // to it, over h2 as well.
    let resp = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("x-mock", "anthropic")],
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", gw.logs());
    assert_eq!(resp.json()["object"], "chat.completion");
    let got = mock.received().pop().unwrap();
    assert!(got.http2);
    assert_eq!(got.path, "/v1/messages");
    drop(gw);

    // `http2: false`: the same provider over HTTP/1.1.
    let before = mock.received().len();
    let gw = Gateway::start(&config(", http2: false"), &[("TEST_KEY", KEY)]);
    let resp = chat(gw.addr, &[], &common::ask("gpt-4o"));
    assert_eq!(resp.status, 200, "{}", gw.logs());
    let got = mock.received();
    assert_eq!(got.len(), before + 1);
    assert!(!got[before].http2);
}

#[test]
fn a_request_the_upstream_may_have_read_is_never_sent_again() {
    let mock = Mock::start();
    let gw = start(&mock, "");
    // A first request leaves a pooled connection; the next one goes over it, is read by the
    // upstream, and the connection is closed without an answer. With one attempt allowed it
    // must reach the upstream exactly once (on a fresh connection as on a reused one).
    for i in 0..2 {
        let before = mock.received().len();
        assert_eq!(chat(gw.addr, &[], &common::ask("gpt-4o")).status, 200);
        let resp = chat(gw.addr, &[("x-mock", "hangup")], &common::ask("gpt-4o"));
        assert_gateway_error(&resp, 502, "upstream_error");
        let got = mock.received();
        assert_eq!(got.len(), before + 2, "round {i}: sent again");
        assert_eq!(got[before].connection, got[before + 1].connection, "reused");
    }
    let hung = || -> Vec<Value> {
        gw.access_log()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["status"] == 502)
            .collect()
    };
    common::wait_for("two access-log lines", Duration::from_secs(5), || {
        hung().len() == 2
    });
    let hung = hung();
    for line in hung {
        assert_eq!(
            line["attempts"],
            json!([{"endpoint": "openai/gpt-4o", "outcome": "protocol"}])
        );
    }
}
