//! An OTLP trace receiver on 127.0.0.1: OTLP/gRPC (h2 with prior knowledge, as collectors
//! listen on 4317) or OTLP/HTTP protobuf (`POST /v1/traces`). It records every export request
//! as received (bytes and decoded spans) and answers success, or, when told to, an error.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One span as received, with its ids in hex and its attributes as JSON values.
#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub name: String,
    /// 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub attributes: BTreeMap<String, Value>,
    /// 0 unset, 2 error.
    pub status: i32,
    pub start: u64,
    pub end: u64,
    pub resource: BTreeMap<String, Value>,
}

impl SpanSeen {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn str(&self, key: &str) -> &str {
        self.attr(key).and_then(Value::as_str).unwrap_or_else(|| {
            panic!(
                "span {} has no string {key}: {:?}",
                self.name, self.attributes
            )
        })
    }

    pub fn int(&self, key: &str) -> i64 {
        self.attr(key).and_then(Value::as_i64).unwrap_or_else(|| {
            panic!(
                "span {} has no integer {key}: {:?}",
                self.name, self.attributes
            )
        })
    }
}

pub struct Collector {
    pub addr: SocketAddr,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
    paths: Arc<Mutex<Vec<String>>>,
    /// The gRPC status (or HTTP status) answered; 0 / 200 is success.
    answer: Arc<Mutex<u32>>,
    _runtime: tokio::runtime::Runtime,
}

impl Collector {
    /// An OTLP/gRPC receiver.
    pub fn grpc() -> Collector {
        Collector::start(true, "127.0.0.1:0", true)
    }

    /// An OTLP/HTTP (protobuf) receiver.
    pub fn http() -> Collector {
        Collector::start(false, "127.0.0.1:0", true)
    }

    /// An OTLP/gRPC receiver on `addr` that keeps nothing (it counts exports), for benchmarks.
    pub fn grpc_for_benchmarks(addr: &str) -> Collector {
        Collector::start(true, addr, false)
    }

    fn start(grpc: bool, addr: &str, keep: bool) -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind(addr)).unwrap();
        let addr = listener.local_addr().unwrap();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(if grpc { 0 } else { 200 }));
        let (r, p, a) = (raw.clone(), paths.clone(), answer.clone());
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                // Not kept (benchmarks): only each export's path is, as a count.
                let r = keep.then(|| r.clone());
                let (p, a) = (p.clone(), a.clone());
                if grpc {
                    tokio::spawn(serve_grpc(socket, r, p, a));
                } else {
                    tokio::spawn(serve_http(socket, r, p, a));
                }
            }
        });
        Collector {
            addr,
            raw,
            paths,
            answer,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers exports with this gRPC status (or HTTP status) from now on.
    pub fn answer(&self, status: u32) {
        *self.answer.lock().unwrap() = status;
    }

    /// Every export request's bytes, as received.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.raw.lock().unwrap().clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<SpanSeen> {
        let mut out = Vec::new();
        for bytes in self.raw() {
            let request = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
            for rs in request.resource_spans {
                let resource = rs
                    .resource
                    .map(|r| attributes(r.attributes))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        out.push(SpanSeen {
                            name: s.name,
                            kind: s.kind,
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent: hex(&s.parent_span_id),
                            attributes: attributes(s.attributes),
                            status: s.status.map_or(0, |s| s.code),
                            start: s.start_time_unix_nano,
                            end: s.end_time_unix_nano,
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Waits until `n` spans have arrived (the exporter batches for up to a second); returns
    /// them.
    pub fn wait_spans(&self, n: usize) -> Vec<SpanSeen> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{} spans arrived, {n} expected: {spans:#?}",
                spans.len()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn attributes(
    list: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
) -> BTreeMap<String, Value> {
    list.into_iter()
        .map(|kv| (kv.key, kv.value.map_or(Value::Null, json_of)))
        .collect()
}

fn json_of(v: AnyValue) -> Value {
    match v.value {
        Some(Any::StringValue(s)) => json!(s),
        Some(Any::IntValue(i)) => json!(i),
        Some(Any::DoubleValue(f)) => json!(f),
        Some(Any::BoolValue(b)) => json!(b),
        Some(Any::ArrayValue(a)) => Value::Array(a.values.into_iter().map(json_of).collect()),
        _ => Value::Null,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn serve_grpc(
    socket: tokio::net::TcpStream,
    raw: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
    paths: Arc<Mutex<Vec<String>>>,
    answer: Arc<Mutex<u32>>,
) {
    let Ok(mut conn) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let (raw, paths, answer) = (raw.clone(), paths.clone(), answer.clone());
        tokio::spawn(async move {
            paths.lock().unwrap().push(req.uri().path().to_owned());
            let mut body = req.into_body();
            let mut data = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            // The gRPC frame: flag, length, message.
            assert_eq!(data[0], 0, "compressed gRPC message");
            let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
            assert_eq!(data.len(), 5 + len);
            let status = *answer.lock().unwrap();
            if let (0, Some(raw)) = (status, &raw) {
                raw.lock().unwrap().push(data[5..].to_vec());
            }
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let Ok(mut send) = respond.send_response(response, false) else {
                return;
            };
            if status == 0 {
                // The empty ExportTraceServiceResponse.
                let _ = send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false);
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", status.to_string().parse().unwrap());
            let _ = send.send_trailers(trailers);
        });
    }
}

async fn serve_http(
    mut socket: tokio::net::TcpStream,
    raw: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
    paths: Arc<Mutex<Vec<String>>>,
    answer: Arc<Mutex<u32>>,
) {
    let mut buf = Vec::new();
    loop {
        // One request: head, then content-length bytes.
        let head_end = loop {
            if let Some(i) = super::mock::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(&buf[..head_end]).unwrap();
        let path = req.path.unwrap_or_default().to_owned();
        let length: usize = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        paths.lock().unwrap().push(path);
        let status = *answer.lock().unwrap();
        if let (200, Some(raw)) = (status, &raw) {
            raw.lock().unwrap().push(body);
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if socket.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
