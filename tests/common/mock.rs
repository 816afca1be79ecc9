//! The mock provider: records every request and answers as each request (or its default mode)
//! asks. Used by the integration tests and, as `examples/mock_provider.rs`, by the benchmarks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// Mock upstream
// ---------------------------------------------------------------------------------------------

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which of the mock's TCP connections it came on (0, 1, … in accept order).
    pub connection: u64,
    /// Whether it came over HTTP/2.
    pub http2: bool,
}

/// The first value of header `name` (lower-case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("upstream body is JSON")
    }
}

/// A mock provider on 127.0.0.1 that records every request. How it answers is chosen per request
/// by the `x-mock` header (which the gateway forwards like any other header):
/// - absent: 200 with an OpenAI chat completion naming the model it received;
/// - `status=429`: that status with an OpenAI-shaped error body;
/// - `sse=N,gap_ms=M`: N SSE events M ms apart, then `data: [DONE]`;
/// - `sse=N,gap_ms=M,cut`: like sse, then the connection is cut without the final chunk;
/// - `delay_ms=M`: waits M ms before answering (and records if the client hung up meanwhile);
/// - `anthropic`: Anthropic Messages shapes (JSON, or with `sse=N` the Messages events), with
///   [`ANTHROPIC_USAGE`]; with `thinking`, a thinking block (signed [`THINKING_SIGNATURE`])
///   comes first;
/// - `usage` (with `sse=N`): a final OpenAI usage chunk with [`OPENAI_STREAM_USAGE`];
/// - `completion_tokens=N`: OpenAI answers report N completion tokens;
/// - `tools`: a call of the request's first tool (else `get_weather`) with `{"city":"Paris"}`
///   instead of text;
/// - `split` (with `sse=N`): events written in 5-byte pieces;
/// - `cut_mid` (with `sse=N`): half of the event after the N deltas, then the connection drops;
/// - `reply=TEXT`: the assistant's answer is TEXT (`+` for a comma), as a router model answers;
/// - `route_by_length=N`: a router naming `long context` for prompts over N bytes, else
///   `quick tasks`;
/// - `retry_after=S` (with `status`): a `retry-after: S` header;
/// - `ratelimit_headers`: JSON answers carry [`RATELIMIT_HEADERS`];
/// - `hangup`: the request is read, then the connection closed without an answer;
/// - `file=PATH`: 200 with the file's bytes (JSON, or Prometheus text for `.txt`);
/// - `late_end_ms=M` (with `sse=N`): the body ends M ms after the final event, as some
///   upstreams end theirs;
/// - `lenient`: skips the checks below, for a test that sends a malformed body on purpose.
/// - `exception=NAME` (Bedrock streams): an exception frame of that type after the first delta.
/// - `agent=FILE` (Messages or chat completions): plays a coding agent's model: asked by the
///   user, it calls the request's shell tool to print FILE; given the tool's result, it answers
///   quoting it.
///
/// A Responses request (a path ending in `/responses`) is answered in the Responses API's shape:
/// a response object, or with `"stream": true` in the body its events (`sse=N` text deltas,
/// default 2; `reply`); `empty_final`: the final event's `output` is empty, as the ChatGPT Codex
/// backend sometimes sends it; `detail` (with `status`): the backend's `{"detail"}` error.
///
/// A request to Bedrock's Converse paths (`/model/<id>/converse`, `…/converse-stream`) is
/// answered as Bedrock answers: a Converse JSON body, or its binary event stream (`sse=N` text
/// deltas, default 2; `tools`, `reply`), with [`BEDROCK_USAGE`]; `status` as Bedrock's error
/// (`{"message"}` and `x-amzn-ErrorType`).
///
/// Before any of that, a chat-completions or Messages request the real API would refuse (its
/// limits, required fields, tool-call pairing: `strict.rs`) is answered as that API answers it:
/// 400 in its error shape. So every test also proves its upstream requests would be accepted.
///
/// A request without `x-mock` gets the mock's default mode (`set_mode`, initially "").
pub struct Mock {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    hangups: Arc<Mutex<u32>>,
    /// The mode used when a request has no `x-mock` header.
    default_mode: Arc<Mutex<String>>,
    runtime: tokio::runtime::Runtime,
}

impl Mock {
    /// A plain HTTP mock.
    pub fn start() -> Mock {
        Mock::start_with(None, "127.0.0.1:0", true)
    }

    /// A plain HTTP mock on `addr` that records nothing, for benchmarks (bench/run).
    pub fn start_for_benchmarks(addr: &str) -> Mock {
        Mock::start_with(None, addr, false)
    }

    /// An HTTPS mock with the `localhost` certificate from tests/fixtures/tls (signed by the
    /// test CA in `ca.pem`), speaking HTTP/1.1 only.
    pub fn start_tls() -> Mock {
        Mock::start_tls_with(&[b"http/1.1"])
    }

    /// Like [`Mock::start_tls`], offering HTTP/2 by ALPN as well (preferred).
    pub fn start_tls_h2() -> Mock {
        Mock::start_tls_with(&[b"h2", b"http/1.1"])
    }

    fn start_tls_with(alpn: &[&[u8]]) -> Mock {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
            std::fs::File::open(dir.join("server.pem")).unwrap(),
        ))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
        let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
            std::fs::File::open(dir.join("server.key")).unwrap(),
        ))
        .unwrap()
        .unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let mut config = config;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Mock::start_with(
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            "127.0.0.1:0",
            true,
        )
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>, addr: &str, recording: bool) -> Mock {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind(addr)).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let hangups = Arc::new(Mutex::new(0));
        let default_mode = Arc::new(Mutex::new(String::new()));
        let (r, h, d) = (received.clone(), hangups.clone(), default_mode.clone());
        let port = addr.port();
        runtime.spawn(async move {
            for connection in 0u64.. {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                // Small writes must not wait for the peer's delayed ACK (Nagle).
                let _ = socket.set_nodelay(true);
                let (r, h, d) = (r.clone(), h.clone(), d.clone());
                match tls.clone() {
                    None => {
                        tokio::spawn(serve(
                            socket,
                            port,
                            connection,
                            recording.then_some(r),
                            h,
                            d,
                        ));
                    }
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            let Ok(stream) = acceptor.accept(socket).await else {
                                return;
                            };
                            let r = recording.then_some(r);
                            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                serve_h2(stream, port, connection, r, d).await;
                            } else {
                                serve(stream, port, connection, r, h, d).await;
                            }
                        });
                    }
                }
            }
        });
        Mock {
            addr,
            received,
            hangups,
            default_mode,
            runtime,
        }
    }

    /// `http://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:port`, the name the test certificate is for.
    pub fn tls_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The one request received so far; fails if there is not exactly one.
    pub fn only(&self) -> Received {
        let all = self.received();
        assert_eq!(
            all.len(),
            1,
            "expected exactly one upstream request, got {all:#?}"
        );
        all.into_iter().next().unwrap()
    }

    /// Sets how requests without an `x-mock` header are answered (see the type's docs).
    pub fn set_mode(&self, mode: &str) {
        *self.default_mode.lock().unwrap() = mode.to_owned();
    }

    /// Requests whose client hung up before the (delayed) answer was ready.
    pub fn hangups(&self) -> u32 {
        *self.hangups.lock().unwrap()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    port: u16,
    connection: u64,
    received: Option<Arc<Mutex<Vec<Received>>>>,
    hangups: Arc<Mutex<u32>>,
    default_mode: Arc<Mutex<String>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some((req, rest)) = read_request(&mut socket, std::mem::take(&mut buf)).await else {
            return;
        };
        buf = rest;
        let mode = match req.header("x-mock") {
            Some(m) => m.to_owned(),
            None => default_mode.lock().unwrap().clone(),
        };
        if let Some(received) = &received {
            let mut req = req.clone();
            req.connection = connection;
            received.lock().unwrap().push(req);
        }
        let opts = parse_mode(&mode);

        if opts.hangup {
            return;
        }
        if let Some((status, body)) = refused(&opts, &req, received.is_some()) {
            if !write_json(&mut socket, status, &body, port, "").await {
                return;
            }
            continue;
        }
        if let Some(ms) = opts.delay_ms {
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                n = socket.read(&mut probe) => {
                    if matches!(n, Ok(0) | Err(_)) {
                        *hangups.lock().unwrap() += 1;
                        return;
                    }
                }
            }
        }
        if let Some(file) = &opts.agent {
            if !agent(&mut socket, file, &req, port).await {
                return;
            }
            continue;
        }
        if req
            .path
            .split('?')
            .next()
            .is_some_and(|p| p.ends_with("/responses"))
        {
            if !responses(&mut socket, &opts, &req, port).await {
                return;
            }
            continue;
        }
        if let Some(stream) = converse_operation(&req.path) {
            if !bedrock(&mut socket, &opts, &req, stream, port).await {
                return;
            }
            continue;
        }
        if let Some(n) = opts.sse {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-mock-port: {port}\r\ntransfer-encoding: chunked\r\n\r\n");
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let (content, tail) = sse_events(n, &opts);
            for event in content {
                let pieces: Vec<&[u8]> = if opts.split {
                    event.as_bytes().chunks(5).collect()
                } else {
                    vec![event.as_bytes()]
                };
                for piece in pieces {
                    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                    chunk.extend_from_slice(piece);
                    chunk.extend_from_slice(b"\r\n");
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    if opts.split {
                        let _ = socket.flush().await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(opts.gap_ms)).await;
            }
            if opts.cut {
                return;
            }
            if opts.cut_mid {
                // Half of the next event, then the connection drops.
                let half = &tail[0][..tail[0].len() / 2];
                let _ = socket
                    .write_all(format!("{:x}\r\n{half}\r\n", half.len()).as_bytes())
                    .await;
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            let tail = tail.concat();
            let tail = format!("{:x}\r\n{tail}\r\n", tail.len());
            if socket.write_all(tail.as_bytes()).await.is_err() {
                return;
            }
            // The body's end may come well after the final event (`late_end_ms`).
            if let Some(ms) = opts.late_end_ms {
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if socket.write_all(b"0\r\n\r\n").await.is_err() {
                return;
            }
            continue;
        }
        if let Some(path) = &opts.file {
            let body = std::fs::read(path).unwrap();
            let kind = if path.ends_with(".txt") {
                "text/plain; version=0.0.4"
            } else {
                "application/json"
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if socket.write_all(head.as_bytes()).await.is_err()
                || socket.write_all(&body).await.is_err()
            {
                return;
            }
            continue;
        }
        let (status, body) = reply(&opts, &req);
        let mut extra = opts
            .retry_after
            .map_or_else(String::new, |s| format!("retry-after: {s}\r\n"));
        if opts.ratelimit_headers {
            extra.push_str(RATELIMIT_HEADERS);
        }
        if !write_json(&mut socket, status, &body, port, &extra).await {
            return;
        }
    }
}

/// The text of the latest tool result in a Messages or chat request, if its last turn carries
/// one.
fn last_tool_result(body: &Value) -> Option<String> {
    let last = body["messages"].as_array()?.last()?;
    if last["role"] == "tool" {
        return Some(match &last["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        });
    }
    let block = last["content"]
        .as_array()?
        .iter()
        .find(|b| b["type"] == "tool_result")?;
    Some(match &block["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    })
}

/// A call of the request's shell tool that prints `file`, with the arguments its schema asks
/// for (`cmd` string, `command` string or argv list).
fn shell_call(body: &Value, file: &str) -> Option<(String, Value)> {
    use serde_json::json;
    body["tools"].as_array()?.iter().find_map(|t| {
        // Messages: `name`, `input_schema`; chat: `function.name`, `function.parameters`.
        let name = t["name"].as_str().or(t["function"]["name"].as_str())?;
        let schema = t
            .get("input_schema")
            .unwrap_or(&t["function"]["parameters"]);
        let props = &schema["properties"];
        let input = if props.get("cmd").is_some() {
            json!({"cmd": format!("cat {file}")})
        } else if props["command"]["type"] == "array" {
            json!({"command": ["cat", file]})
        } else if props.get("command").is_some() {
            json!({"command": format!("cat {file}")})
        } else {
            return None;
        };
        Some((name.to_owned(), input))
    })
}

/// Answers as a coding agent's model would (mode `agent`), in Messages events or JSON.
async fn agent<S: AsyncWrite + Unpin>(
    socket: &mut S,
    file: &str,
    req: &Received,
    port: u16,
) -> bool {
    use serde_json::json;
    let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let (block, delta, stop) = match last_tool_result(&body) {
        Some(result) => {
            // Agents wrap a command's output in their own lines; its last line is the file's.
            let text = format!(
                "The file says: {}",
                result.trim().lines().last().unwrap_or_default()
            );
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": text}),
                "end_turn",
            )
        }
        None => match shell_call(&body, file) {
            Some((name, input)) => (
                json!({"type": "tool_use", "id": "toolu_agent_1", "name": name, "input": {}}),
                json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                "tool_use",
            ),
            None => (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": "no shell tool was offered"}),
                "end_turn",
            ),
        },
    };
    if req
        .path
        .split('?')
        .next()
        .is_some_and(|p| p.ends_with("/chat/completions"))
    {
        return agent_chat(socket, &body, &block, &delta, stop, port).await;
    }
    let usage = json!({"input_tokens": 10, "output_tokens": 5});
    if body["stream"] != true {
        let mut content = block.clone();
        match stop {
            "tool_use" => {
                content["input"] =
                    serde_json::from_str(delta["partial_json"].as_str().unwrap_or("{}"))
                        .unwrap_or_default()
            }
            _ => content["text"] = delta["text"].clone(),
        }
        let answer = json!({"id": "msg_agent", "type": "message", "role": "assistant", "model": body["model"],
                            "content": [content], "stop_reason": stop, "stop_sequence": null, "usage": usage});
        return write_json(socket, 200, &answer, port, "").await;
    }
    let named = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let events = [
        named("message_start", json!({"type": "message_start", "message": {"id": "msg_agent", "type": "message", "role": "assistant", "model": body["model"], "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}})),
        named("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": block})),
        named("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": delta})),
        named("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        named("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 5}})),
        named("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-mock-port: {port}\r\ncontent-length: {}\r\n\r\n", events.len());
    socket
        .write_all(format!("{head}{events}").as_bytes())
        .await
        .is_ok()
}

/// The agent's answer (`agent`) as a chat completion, JSON or streamed.
async fn agent_chat<S: AsyncWrite + Unpin>(
    socket: &mut S,
    body: &Value,
    block: &Value,
    delta: &Value,
    stop: &str,
    port: u16,
) -> bool {
    use serde_json::json;
    let (message, finish) = if stop == "tool_use" {
        let call = json!({"id": "call_agent_1", "type": "function",
                          "function": {"name": block["name"], "arguments": delta["partial_json"]}});
        (
            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            "tool_calls",
        )
    } else {
        (
            json!({"role": "assistant", "content": delta["text"]}),
            "stop",
        )
    };
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
    if body["stream"] != true {
        let answer = json!({"id": "chatcmpl-agent", "object": "chat.completion", "created": 1, "model": body["model"],
                            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage});
        return write_json(socket, 200, &answer, port, "").await;
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-agent", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut first = message.clone();
    if let Some(calls) = first["tool_calls"].as_array_mut() {
        calls[0]["index"] = 0.into();
    }
    let mut events = chunk(first, Value::Null) + &chunk(json!({}), finish.into());
    if body["stream_options"]["include_usage"] == true {
        events.push_str(&format!("data: {}\n\n", json!({"id": "chatcmpl-agent", "object": "chat.completion.chunk", "created": 1,
                                                        "model": body["model"], "choices": [], "usage": usage})));
    }
    events.push_str("data: [DONE]\n\n");
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-mock-port: {port}\r\ncontent-length: {}\r\n\r\n", events.len());
    socket
        .write_all(format!("{head}{events}").as_bytes())
        .await
        .is_ok()
}

/// Answers a Responses request (see the type's docs); false when the client is gone.
async fn responses<S: AsyncWrite + Unpin>(
    socket: &mut S,
    opts: &Mode,
    req: &Received,
    port: u16,
) -> bool {
    use serde_json::json;
    if let Some(code) = opts.status {
        let body = if opts.detail {
            json!({"detail": "mock detail"})
        } else {
            json!({"error": {"message": "mock error", "type": "mock", "code": code}})
        };
        return write_json(socket, code, &body, port, "").await;
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let deltas: Vec<String> = match &opts.reply {
        Some(r) => vec![r.clone()],
        None => (0..opts.sse.unwrap_or(2))
            .map(|i| format!("t{i}"))
            .collect(),
    };
    let text = deltas.concat();
    let item = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let usage = json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13});
    let response = |status: &str, output: Value| {
        json!({"id": format!("resp_mock_{port}"), "object": "response", "created_at": 1, "status": status,
               "model": body["model"], "output": output, "parallel_tool_calls": true,
               "tool_choice": "auto", "tools": [], "usage": if status == "completed" { usage.clone() } else { Value::Null }})
    };
    if body["stream"] != true {
        return write_json(socket, 200, &response("completed", json!([item])), port, "").await;
    }
    let mut seq = 0;
    let mut events = String::new();
    let mut emit = |kind: &str, mut data: Value| {
        data["type"] = kind.into();
        data["sequence_number"] = seq.into();
        seq += 1;
        events.push_str(&format!("event: {kind}\ndata: {data}\n\n"));
    };
    emit(
        "response.created",
        json!({"response": response("in_progress", json!([]))}),
    );
    emit(
        "response.in_progress",
        json!({"response": response("in_progress", json!([]))}),
    );
    let mut open = item.clone();
    open["status"] = "in_progress".into();
    open["content"] = json!([]);
    emit(
        "response.output_item.added",
        json!({"output_index": 0, "item": open}),
    );
    emit(
        "response.content_part.added",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0,
                                               "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for d in &deltas {
        emit(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": d}),
        );
    }
    emit(
        "response.output_text.done",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text}),
    );
    emit(
        "response.content_part.done",
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0,
                                              "part": {"type": "output_text", "text": text, "annotations": []}}),
    );
    emit(
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
    );
    let output = if opts.empty_final {
        json!([])
    } else {
        json!([item])
    };
    emit(
        "response.completed",
        json!({"response": response("completed", output)}),
    );
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-mock-port: {port}\r\ncontent-length: {}\r\n\r\n", events.len());
    socket
        .write_all(format!("{head}{events}").as_bytes())
        .await
        .is_ok()
}

/// Whether `path` is Bedrock's Converse (`Some(false)`) or ConverseStream (`Some(true)`).
fn converse_operation(path: &str) -> Option<bool> {
    let path = path.split('?').next().unwrap_or("");
    if !path.starts_with("/model/") {
        return None;
    }
    if path.ends_with("/converse-stream") {
        Some(true)
    } else {
        path.ends_with("/converse").then_some(false)
    }
}

/// The usage every Bedrock answer reports.
pub static BEDROCK_USAGE: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || serde_json::json!({"inputTokens": 10, "outputTokens": 5, "totalTokens": 18, "cacheReadInputTokens": 2, "cacheWriteInputTokens": 1}),
);

/// Answers a Converse request as Bedrock does; false when the client is gone.
async fn bedrock<S: AsyncWrite + Unpin>(
    socket: &mut S,
    opts: &Mode,
    req: &Received,
    stream: bool,
    port: u16,
) -> bool {
    use serde_json::json;
    use switchyard::translate::eventstream;
    if let Some(code) = opts.status {
        let kind = match code {
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            403 => "AccessDeniedException",
            _ => "ValidationException",
        };
        let extra = format!(
            "x-amzn-ErrorType: {kind}:http://internal.amazon.com/coral/com.amazon.bedrock/\r\n"
        );
        return write_json(
            socket,
            code,
            &json!({"message": format!("mock {kind}")}),
            port,
            &extra,
        )
        .await;
    }
    let tool = tool_name(&req.body);
    if !stream {
        let content = if opts.tools {
            json!([{"text": "Checking."}, {"toolUse": {"toolUseId": "tooluse_1", "name": tool, "input": {"city": "Paris"}}}])
        } else {
            json!([{"text": opts.reply.as_deref().unwrap_or("hi")}])
        };
        let stop = if opts.tools { "tool_use" } else { "end_turn" };
        let body = json!({"output": {"message": {"role": "assistant", "content": content}},
                          "stopReason": stop, "usage": BEDROCK_USAGE.clone(), "metrics": {"latencyMs": 1}});
        return write_json(socket, 200, &body, port, "").await;
    }
    let frame = |name: &str, v: Value| eventstream::event(name, v.to_string().as_bytes());
    let mut frames = vec![frame(
        "messageStart",
        json!({"role": "assistant", "p": "abc"}),
    )];
    let stop = if opts.tools {
        frames.push(frame("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": tool}}, "p": "ab"})));
        for piece in ["{\"city\":", " \"Par", "is\"}"] {
            frames.push(frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}, "p": "a"}),
            ));
        }
        "tool_use"
    } else {
        let n = opts.sse.unwrap_or(2);
        for i in 0..n {
            let text = match &opts.reply {
                Some(r) if i == 0 => r.clone(),
                Some(_) => continue,
                None => format!("t{i}"),
            };
            frames.push(frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": text}, "p": "abcd"}),
            ));
            if let (0, Some(name)) = (i, &opts.exception) {
                frames.push(eventstream::encode(
                    &[
                        (":exception-type", name),
                        (":content-type", "application/json"),
                        (":message-type", "exception"),
                    ],
                    json!({"message": format!("mock {name}")})
                        .to_string()
                        .as_bytes(),
                ));
                break;
            }
        }
        "end_turn"
    };
    if opts.exception.is_none() {
        frames.push(frame(
            "contentBlockStop",
            json!({"contentBlockIndex": 0, "p": "ab"}),
        ));
        frames.push(frame(
            "messageStop",
            json!({"stopReason": stop, "p": "abc"}),
        ));
        frames.push(frame(
            "metadata",
            json!({"usage": BEDROCK_USAGE.clone(), "metrics": {"latencyMs": 1}, "p": "abcde"}),
        ));
    }
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\nx-mock-port: {port}\r\ntransfer-encoding: chunked\r\n\r\n");
    if socket.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for f in frames {
        // `split`: frames cut into 5-byte pieces, across preludes, headers and checksums.
        let pieces: Vec<&[u8]> = if opts.split {
            f.chunks(5).collect()
        } else {
            vec![&f[..]]
        };
        for piece in pieces {
            let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
            chunk.extend_from_slice(piece);
            chunk.extend_from_slice(b"\r\n");
            if socket.write_all(&chunk).await.is_err() {
                return false;
            }
            if opts.split {
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    socket.write_all(b"0\r\n\r\n").await.is_ok()
}

/// Writes a JSON answer with `extra` header lines; false when the client is gone.
async fn write_json<S: AsyncWrite + Unpin>(
    socket: &mut S,
    status: u16,
    body: &Value,
    port: u16,
    extra: &str,
) -> bool {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} Mock\r\ncontent-type: application/json\r\nx-upstream: mock\r\nx-mock-port: {port}\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    );
    socket
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .is_ok()
}

/// Serves one HTTP/2 connection: each stream is recorded and answered as on HTTP/1.1 (JSON,
/// status, SSE with gaps; `delay_ms` and `cut` are HTTP/1.1 only).
async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    socket: S,
    port: u16,
    connection: u64,
    received: Option<Arc<Mutex<Vec<Received>>>>,
    default_mode: Arc<Mutex<String>>,
) {
    let Ok(mut conn) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        let (received, default_mode) = (received.clone(), default_mode.clone());
        tokio::spawn(async move {
            let (parts, mut body) = request.into_parts();
            let mut data = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            let mut headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            if let Some(authority) = parts.uri.authority() {
                headers.insert(0, ("host".to_owned(), authority.to_string()));
            }
            let req = Received {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map_or("/".into(), |p| p.to_string()),
                headers,
                body: data,
                connection,
                http2: true,
            };
            let mode = match req.header("x-mock") {
                Some(m) => m.to_owned(),
                None => default_mode.lock().unwrap().clone(),
            };
            if let Some(received) = &received {
                received.lock().unwrap().push(req.clone());
            }
            let opts = parse_mode(&mode);
            let answer = |status: u16, content_type: &str| {
                http::Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .header("x-mock-port", port.to_string())
                    .body(())
                    .unwrap()
            };
            if let Some((status, body)) = refused(&opts, &req, received.is_some()) {
                if let Ok(mut stream) =
                    respond.send_response(answer(status, "application/json"), false)
                {
                    let _ = stream.send_data(body.to_string().into_bytes().into(), true);
                }
                return;
            }
            if let Some(n) = opts.sse {
                let Ok(mut stream) = respond.send_response(answer(200, "text/event-stream"), false)
                else {
                    return;
                };
                let (content, tail) = sse_events(n, &opts);
                for event in content {
                    if stream.send_data(event.into_bytes().into(), false).is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(opts.gap_ms)).await;
                }
                let _ = stream.send_data(tail.concat().into_bytes().into(), true);
                return;
            }
            let (status, body) = reply(&opts, &req);
            if let Ok(mut stream) = respond.send_response(answer(status, "application/json"), false)
            {
                let _ = stream.send_data(body.to_string().into_bytes().into(), true);
            }
        });
    }
}

#[derive(Default)]
struct Mode {
    status: Option<u16>,
    sse: Option<u32>,
    gap_ms: u64,
    cut: bool,
    delay_ms: Option<u64>,
    /// Answer in Anthropic's Messages shape (JSON body or SSE events).
    anthropic: bool,
    /// OpenAI SSE: end with a usage chunk, as with `stream_options.include_usage`.
    usage: bool,
    /// Answer with a `get_weather` tool call (arguments streamed in fragments).
    tools: bool,
    /// Cut the stream in the middle of an event (with `sse=N`).
    cut_mid: bool,
    /// Write SSE in 5-byte pieces, so events are split across TCP reads.
    split: bool,
    /// With `status`: a `retry-after` header of this many seconds.
    retry_after: Option<u64>,
    /// Read the request, then close the connection without answering.
    hangup: bool,
    /// The assistant's text (`reply=TEXT`; `+` stands for a comma): what a router model says.
    reply: Option<String>,
    /// A router model that names `long context` for prompts longer than this many bytes and
    /// `quick tasks` otherwise (Arch-Router's answer form).
    route_by_length: Option<usize>,
    /// Answer 200 with this file's bytes (a catalog, a metrics page): `.txt` as Prometheus text.
    file: Option<String>,
    /// Accept what the real API would refuse.
    lenient: bool,
    /// With `sse=N`: end the body this many ms after the final event.
    late_end_ms: Option<u64>,
    /// OpenAI answers: report this many completion tokens (an answer longer than reserved).
    completion_tokens: Option<u64>,
    /// JSON answers carry the provider's own [`RATELIMIT_HEADERS`].
    ratelimit_headers: bool,
    /// Bedrock streams: an exception frame of this type after the first delta.
    exception: Option<String>,
    /// Play a coding agent's model around this file (see the type's docs).
    agent: Option<String>,
    /// Responses streams: the final event's `output` empty.
    empty_final: bool,
    /// Anthropic answers begin with a signed thinking block.
    thinking: bool,
    /// With `status`: the ChatGPT Codex backend's `{"detail"}` error body.
    detail: bool,
}

/// The real API's refusal of `req`, unless the mode is lenient or the mock serves a benchmark
/// (which records nothing and must stay cheaper than any proxy).
fn refused(opts: &Mode, req: &Received, recording: bool) -> Option<(u16, Value)> {
    if opts.lenient || !recording {
        return None;
    }
    super::strict::refusal(req)
}

/// The status and JSON body of a non-streamed answer to `req`.
fn reply(opts: &Mode, req: &Received) -> (u16, Value) {
    match opts.status {
        Some(code) => (
            code,
            serde_json::json!({"error": {"message": "mock error", "type": "mock", "code": code}}),
        ),
        // An upstream's own model list (what wildcard providers contribute to /v1/models).
        None if req.method == "GET" && req.path.ends_with("/models") => (
            200,
            serde_json::json!({"object": "list", "data": [
                {"id": "alpha", "object": "model"}, {"id": "beta", "object": "model"}
            ]}),
        ),
        None => {
            let model = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v.get("model").cloned())
                .unwrap_or(Value::Null);
            (200, json_answer(opts, model, &req.body))
        }
    }
}

/// The tool a `tools` answer calls: the request's first tool, as the upstream named it
/// (`get_weather` when the request lists none).
fn tool_name(request: &[u8]) -> String {
    let body: Value = serde_json::from_slice(request).unwrap_or_default();
    let first = &body["tools"][0];
    first["name"]
        .as_str()
        .or(first["function"]["name"].as_str())
        .or(body["toolConfig"]["tools"][0]["toolSpec"]["name"].as_str())
        .unwrap_or("get_weather")
        .to_owned()
}

/// A non-streamed answer in the shape and with the content `opts` ask for.
fn json_answer(opts: &Mode, model: Value, request: &[u8]) -> Value {
    use serde_json::json;
    match (opts.anthropic, opts.tools) {
        (true, tools) => {
            let mut content = Vec::new();
            if opts.thinking {
                content.push(json!({"type": "thinking", "thinking": "Let me think.", "signature": THINKING_SIGNATURE}));
            }
            if tools {
                content.push(json!({"type": "text", "text": "Checking."}));
                content.push(json!({"type": "tool_use", "id": "toolu_1", "name": tool_name(request), "input": {"city": "Paris"}}));
            } else {
                content
                    .push(json!({"type": "text", "text": opts.reply.as_deref().unwrap_or("hi")}));
            }
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": if tools { "tool_use" } else { "end_turn" },
                "stop_sequence": null, "usage": ANTHROPIC_USAGE.clone()
            })
        }
        (false, tools) => {
            let message = if tools {
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": tool_name(request), "arguments": "{\"city\":\"Paris\"}"}}]})
            } else if let Some(limit) = opts.route_by_length {
                let prompt_len = serde_json::from_slice::<Value>(request)
                    .ok()
                    .and_then(|b| b["messages"][0]["content"].as_str().map(str::len))
                    .unwrap_or(0);
                let route = if prompt_len > limit {
                    "long context"
                } else {
                    "quick tasks"
                };
                json!({"role": "assistant", "content": format!("{{\"route\": \"{route}\"}}")})
            } else {
                json!({"role": "assistant", "content": opts.reply.as_deref().unwrap_or("hi")})
            };
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": if tools { "tool_calls" } else { "stop" }}],
                "usage": {"prompt_tokens": 3, "completion_tokens": opts.completion_tokens.unwrap_or(1), "total_tokens": 3 + opts.completion_tokens.unwrap_or(1)}
            })
        }
    }
}

/// The signature of the mock's thinking (mode `thinking`).
pub const THINKING_SIGNATURE: &str = "sig-mock-EqQBCkYIBxgCKkDp";

/// The usage every Anthropic-shaped answer reports.
pub static ANTHROPIC_USAGE: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || serde_json::json!({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 1}),
);

/// A provider's own rate-limit headers (mode `ratelimit_headers`), as OpenAI sends them.
pub const RATELIMIT_HEADERS: &str = "x-ratelimit-limit-requests: 5000\r\nx-ratelimit-remaining-requests: 4999\r\nx-ratelimit-reset-requests: 12ms\r\n";

/// The usage the OpenAI SSE usage chunk reports.
pub const OPENAI_STREAM_USAGE: (u64, u64, u64) = (7, 3, 4);

/// SSE events: the `n` content events (sent `gap_ms` apart) and the closing ones.
fn sse_events(n: u32, opts: &Mode) -> (Vec<String>, Vec<String>) {
    use serde_json::json;
    let data = |v: Value| format!("data: {v}\n\n");
    let named = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let args = ["{\"city\":", " \"Par", "is\"}"];
    if opts.anthropic {
        let mut content = vec![named(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-mock", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "cache_creation_input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
        )];
        // A thinking block first (`thinking`) moves the answer's block to index 1.
        let at = u32::from(opts.thinking);
        if opts.thinking {
            content.push(named("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})));
            content.push(named("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me think."}})));
            content.push(named("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": THINKING_SIGNATURE}})));
            content.push(named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
        }
        let delta = |d: Value| {
            named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": at, "delta": d}),
            )
        };
        let stop = if opts.tools {
            content.push(named("content_block_start", json!({"type": "content_block_start", "index": at, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})));
            content.extend(
                args.iter()
                    .map(|a| delta(json!({"type": "input_json_delta", "partial_json": a}))),
            );
            "tool_use"
        } else {
            content.push(named("content_block_start", json!({"type": "content_block_start", "index": at, "content_block": {"type": "text", "text": ""}})));
            content.extend(
                (0..n).map(|i| delta(json!({"type": "text_delta", "text": format!("t{i}")}))),
            );
            "end_turn"
        };
        let tail = vec![
            named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": at}),
            ),
            named(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 5}}),
            ),
            named("message_stop", json!({"type": "message_stop"})),
        ];
        return (content, tail);
    }
    let chunk = |delta: Value, finish: Value| {
        data(
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-mock", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut content = Vec::new();
    let finish = if opts.tools {
        content.push(chunk(json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), Value::Null));
        content.extend(args.iter().map(|a| {
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                Value::Null,
            )
        }));
        "tool_calls"
    } else {
        content.extend((0..n).map(|i| chunk(json!({"content": format!("t{i}")}), Value::Null)));
        "stop"
    };
    let mut tail = vec![chunk(json!({}), finish.into())];
    if opts.usage {
        let (p, c, cached) = OPENAI_STREAM_USAGE;
        let c = opts.completion_tokens.unwrap_or(c);
        tail.push(data(json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-mock", "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, "prompt_tokens_details": {"cached_tokens": cached}}})));
    }
    tail.push("data: [DONE]\n\n".to_owned());
    (content, tail)
}

fn parse_mode(mode: &str) -> Mode {
    let mut m = Mode::default();
    for part in mode.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k {
            "status" => m.status = v.parse().ok(),
            "sse" => m.sse = v.parse().ok(),
            "gap_ms" => m.gap_ms = v.parse().unwrap_or(0),
            "cut" => m.cut = true,
            "cut_mid" => m.cut_mid = true,
            "hangup" => m.hangup = true,
            "delay_ms" => m.delay_ms = v.parse().ok(),
            "anthropic" => m.anthropic = true,
            "usage" => m.usage = true,
            "tools" => m.tools = true,
            "retry_after" => m.retry_after = v.parse().ok(),
            "split" => m.split = true,
            "reply" => m.reply = Some(v.replace('+', ",")),
            "route_by_length" => m.route_by_length = v.parse().ok(),
            "file" => m.file = Some(v.to_owned()),
            "lenient" => m.lenient = true,
            "late_end_ms" => m.late_end_ms = v.parse().ok(),
            "completion_tokens" => m.completion_tokens = v.parse().ok(),
            "ratelimit_headers" => m.ratelimit_headers = true,
            "exception" => m.exception = Some(v.to_owned()),
            "agent" => m.agent = Some(v.to_owned()),
            "empty_final" => m.empty_final = true,
            "thinking" => m.thinking = true,
            "detail" => m.detail = true,
            _ => panic!("unknown mock mode {part}"),
        }
    }
    m
}

/// Reads one request (head and body, Content-Length or chunked). Returns it and any bytes read
/// past it.
async fn read_request<S: AsyncRead + Unpin>(
    socket: &mut S,
    mut buf: Vec<u8>,
) -> Option<(Received, Vec<u8>)> {
    let mut chunk = [0u8; 65536];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&buf) {
            let method = parsed.method?.to_owned();
            let path = parsed.path?.to_owned();
            let headers = lowercase(parsed.headers);
            let mut rest = buf.split_off(head_len);
            let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let body = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                loop {
                    if let Some((body, used)) = dechunk(&rest) {
                        rest.drain(..used);
                        break body;
                    }
                    let n = socket.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    rest.extend_from_slice(&chunk[..n]);
                }
            } else {
                let len: usize = find("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while rest.len() < len {
                    let n = socket.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    rest.extend_from_slice(&chunk[..n]);
                }
                let tail = rest.split_off(len);
                std::mem::replace(&mut rest, tail)
            };
            let req = Received {
                method,
                path,
                headers,
                body,
                connection: 0,
                http2: false,
            };
            return Some((req, rest));
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parsed headers as (lower-cased name, value) pairs.
pub fn lowercase(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Decodes a complete chunked body at the start of `data`: (body, bytes used), or `None` if
/// more bytes are needed.
fn dechunk(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = find(&data[pos..], b"\r\n")? + pos;
        let size_hex = std::str::from_utf8(&data[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_hex.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            let end = find(&data[pos..], b"\r\n")? + pos;
            return Some((body, end + 2));
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
