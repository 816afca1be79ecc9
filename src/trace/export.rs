//! Spans leave the request path here: a request hands its finished spans to a bounded queue
//! (never waiting: a full queue drops them, counted), and a background service batches them
//! per destination and sends each batch as one OTLP export, over gRPC (h2, or h2c) or
//! OTLP/HTTP, on Pingora's connector (its TLS and pool). An export that fails or takes longer
//! than `EXPORT_TIMEOUT` is dropped, counted, never retried: a collector that is down costs
//! spans, not requests. What is queued when the process exits is sent within `EXIT_EXPORT`.
//!
//! A reload that changes the destination needs nothing special: each request's spans go
//! where its snapshot said, and a batch never mixes destinations.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;
use prost::Message;
use tokio::sync::mpsc;

use crate::config::{OtlpExporter, OtlpProtocol};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;

/// Requests whose spans may wait for the exporter (about four spans each).
const QUEUE: usize = 1024;
/// Most spans in one export.
const MAX_BATCH: usize = 512;
/// Longest a span waits for its batch to fill.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Longest one export may take, connecting included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the last export at exit may take.
const EXIT_EXPORT: Duration = Duration::from_millis(1500);

/// One request's spans and where they go.
struct Finished {
    to: Arc<OtlpExporter>,
    spans: Vec<Span>,
}

/// The request side: hands spans to the exporter.
pub struct Tracer {
    queue: mpsc::Sender<Finished>,
    metrics: Arc<Metrics>,
}

impl Tracer {
    /// A tracer and the background service that exports what it is handed.
    pub fn new(
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
        ca_file: Option<String>,
    ) -> (Tracer, Exporter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let exporter = Exporter {
            rx: Mutex::new(Some(rx)),
            metrics: metrics.clone(),
            lifecycle,
            ca_file,
        };
        (Tracer { queue: tx, metrics }, exporter)
    }

    /// Queues a request's spans for `to`, without waiting; a full queue drops them.
    pub fn send(&self, to: Arc<OtlpExporter>, spans: Vec<Span>) {
        let n = spans.len() as u64;
        if self.queue.try_send(Finished { to, spans }).is_err() {
            self.metrics.trace_spans_dropped("queue_full", n);
        }
    }
}

/// The background service that batches and exports spans.
pub struct Exporter {
    rx: Mutex<Option<mpsc::Receiver<Finished>>>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    ca_file: Option<String>,
}

/// Spans waiting for one destination.
struct Pending {
    to: Arc<OtlpExporter>,
    spans: Vec<Span>,
    since: Instant,
}

#[async_trait]
impl BackgroundService for Exporter {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut rx| rx.take()) else {
            return;
        };
        self.lifecycle.flusher_started();
        let client = Client::new(self.ca_file.clone());
        let mut pending: Vec<Pending> = Vec::new();
        // Pingora's shutdown broadcast is not the end: requests finishing during the drain
        // still get their spans. The exporter stops when the process is about to exit.
        loop {
            let due = pending.iter().map(|p| p.since + BATCH_DELAY).min();
            let wait = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                got = rx.recv() => match got {
                    Some(finished) => {
                        if let Some(full) = add(&mut pending, finished) {
                            self.export(&client, full, EXPORT_TIMEOUT).await;
                        }
                    }
                    None => break,
                },
                () = wait => {
                    let now = Instant::now();
                    let (ripe, keep): (Vec<_>, Vec<_>) =
                        pending.into_iter().partition(|p| p.since + BATCH_DELAY <= now);
                    pending = keep;
                    for p in ripe {
                        self.export(&client, p, EXPORT_TIMEOUT).await;
                    }
                }
                () = self.lifecycle.exiting() => break,
            }
        }
        while let Ok(finished) = rx.try_recv() {
            if let Some(full) = add(&mut pending, finished) {
                pending.push(full);
            }
        }
        let deadline = Instant::now() + EXIT_EXPORT;
        for p in pending {
            let left = deadline.saturating_duration_since(Instant::now());
            self.export(&client, p, left).await;
        }
        self.lifecycle.flushed();
    }
}

/// Adds a request's spans to their destination's batch; returns the batch when it is full.
fn add(pending: &mut Vec<Pending>, finished: Finished) -> Option<Pending> {
    let i = match pending.iter().position(|p| *p.to == *finished.to) {
        Some(i) => i,
        None => {
            pending.push(Pending {
                to: finished.to.clone(),
                spans: Vec::new(),
                since: Instant::now(),
            });
            pending.len() - 1
        }
    };
    pending[i].spans.extend(finished.spans);
    (pending[i].spans.len() >= MAX_BATCH).then(|| pending.swap_remove(i))
}

impl Exporter {
    /// Sends one batch within `limit`; counts what became of its spans.
    async fn export(&self, client: &Client, batch: Pending, limit: Duration) {
        let n = batch.spans.len() as u64;
        let body = encode(&batch.to, batch.spans);
        let sent = tokio::time::timeout(limit, client.send(&batch.to, body)).await;
        match sent {
            Ok(Ok(())) => self.metrics.trace_spans_exported(n),
            Ok(Err(why)) => {
                log::warn!(
                    "tracing: {n} spans not exported to {}:{}: {why}",
                    batch.to.host,
                    batch.to.port
                );
                self.metrics.trace_spans_dropped("export_error", n);
            }
            Err(_) => {
                log::warn!(
                    "tracing: {n} spans not exported to {}:{}: no answer within {limit:?}",
                    batch.to.host,
                    batch.to.port
                );
                self.metrics.trace_spans_dropped("export_error", n);
            }
        }
    }
}

/// One OTLP export request of `spans`, from the gateway's resource.
pub fn encode(to: &OtlpExporter, spans: Vec<Span>) -> Bytes {
    let resource = Resource {
        attributes: to
            .resource
            .iter()
            .map(|(k, v)| super::kv_owned(k.clone(), v.as_str()))
            .collect(),
        ..Resource::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "switchyard".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    Bytes::from(request.encode_to_vec())
}

/// Sends exports on Pingora's connector, resolving each collector's host now and then.
struct Client {
    connector: Connector,
    resolved: Mutex<Vec<(String, u16, SocketAddr, Instant)>>,
}

/// How long a collector's resolved address is used.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

impl Client {
    fn new(ca_file: Option<String>) -> Client {
        Client {
            connector: crate::side_call::connector(ca_file),
            resolved: Mutex::new(Vec::new()),
        }
    }

    async fn address(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let now = Instant::now();
        if let Ok(known) = self.resolved.lock() {
            if let Some((.., addr, _)) = known
                .iter()
                .find(|(h, p, _, at)| h == host && *p == port && now < *at + RESOLVED_FOR)
            {
                return Ok(*addr);
            }
        }
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        if let Ok(mut known) = self.resolved.lock() {
            known.retain(|(h, p, ..)| !(h == host && *p == port));
            known.push((host.to_owned(), port, addr, now));
        }
        Ok(addr)
    }

    /// One export: the OTLP request `body` to `to`; `Ok` when the collector took it.
    async fn send(&self, to: &OtlpExporter, body: Bytes) -> Result<(), String> {
        let addr = self.address(&to.host, to.port).await?;
        let grpc = to.protocol == OtlpProtocol::Grpc;
        let mut peer = HttpPeer::new(addr, to.tls, to.host.clone());
        peer.options.connection_timeout = Some(Duration::from_secs(1));
        peer.options.read_timeout = Some(EXPORT_TIMEOUT);
        peer.options.write_timeout = Some(EXPORT_TIMEOUT);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if grpc {
            // gRPC is HTTP/2 only: h2 over TLS, else h2 with prior knowledge (h2c).
            peer.options.set_http_version(2, 2);
        }
        let (mut session, _) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(|e| crate::error::cause(&e).to_owned())?;
        // HTTP/2 takes its :scheme and :authority from an absolute URI; HTTP/1.1 wants the path.
        let scheme = if to.tls { "https" } else { "http" };
        let uri = if grpc {
            format!(
                "{scheme}://{}:{}{}",
                authority_host(&to.host),
                to.port,
                to.path
            )
        } else {
            to.path.clone()
        };
        let mut req =
            RequestHeader::build("POST", uri.as_bytes(), None).map_err(|e| e.to_string())?;
        let host = format!("{}:{}", authority_host(&to.host), to.port);
        let err = |e: Box<pingora::Error>| e.to_string();
        req.insert_header(http::header::HOST, host).map_err(err)?;
        req.insert_header(
            http::header::USER_AGENT,
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(err)?;
        for (name, value) in &to.headers {
            req.insert_header(name.clone(), value.expose())
                .map_err(err)?;
        }
        let body = if grpc {
            req.insert_header(http::header::CONTENT_TYPE, "application/grpc")
                .map_err(err)?;
            req.insert_header(http::header::TE, "trailers")
                .map_err(err)?;
            grpc_frame(&body)
        } else {
            req.insert_header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .map_err(err)?;
            body
        };
        req.insert_header(http::header::CONTENT_LENGTH, body.len())
            .map_err(err)?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(err)?;
        session.write_request_body(body, true).await.map_err(err)?;
        session.finish_request_body().await.map_err(err)?;
        session.read_response_header().await.map_err(err)?;
        let status = session.response_header().map_or(0, |h| h.status.as_u16());
        // gRPC's status may come in the header (trailers-only) or in the trailers.
        let mut grpc_status = session
            .response_header()
            .and_then(|h| h.headers.get("grpc-status"))
            .map(|v| v.as_bytes().to_vec());
        let mut read = 0usize;
        while let Some(chunk) = session.read_response_body().await.map_err(err)? {
            read += chunk.len();
            if read > 1 << 20 {
                return Err("the collector's answer is larger than 1 MiB".to_owned());
            }
        }
        if let HttpSession::H2(h2) = &mut session {
            if let Some(trailers) = h2.read_trailers().await.map_err(err)? {
                if let Some(s) = trailers.get("grpc-status") {
                    grpc_status = Some(s.as_bytes().to_vec());
                }
            }
        }
        self.connector
            .release_http_session(session, &peer, None)
            .await;
        if !(200..300).contains(&status) {
            return Err(format!("the collector answered {status}"));
        }
        match grpc_status.as_deref() {
            _ if !grpc => Ok(()),
            Some(b"0") => Ok(()),
            Some(code) => Err(format!("gRPC status {}", String::from_utf8_lossy(code))),
            None => Err("no gRPC status".to_owned()),
        }
    }
}

/// A host as a URI's authority has it (IPv6 in brackets).
fn authority_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// A gRPC message: uncompressed flag, big-endian length, the message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(host: &str) -> Arc<OtlpExporter> {
        Arc::new(OtlpExporter {
            protocol: OtlpProtocol::Grpc,
            tls: false,
            host: host.to_owned(),
            port: 4317,
            path: "/".to_owned(),
            headers: Vec::new(),
            resource: vec![("service.name".into(), "switchyard".into())],
        })
    }

    fn spans(n: usize) -> Vec<Span> {
        (0..n).map(|_| Span::default()).collect()
    }

    #[test]
    fn batches_fill_per_destination() {
        let mut pending = Vec::new();
        assert!(add(
            &mut pending,
            Finished {
                to: to("a"),
                spans: spans(300)
            }
        )
        .is_none());
        assert!(add(
            &mut pending,
            Finished {
                to: to("b"),
                spans: spans(300)
            }
        )
        .is_none());
        let full = add(
            &mut pending,
            Finished {
                to: to("a"),
                spans: spans(300),
            },
        )
        .unwrap();
        assert_eq!((full.to.host.as_str(), full.spans.len()), ("a", 600));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].to.host, "b");
    }

    #[test]
    fn an_export_is_one_grpc_message() {
        let body = encode(&to("a"), spans(2));
        let framed = grpc_frame(&body);
        assert_eq!(framed[0], 0);
        assert_eq!(
            u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
            body.len()
        );
        let back = ExportTraceServiceRequest::decode(&framed[5..]).unwrap();
        let scope = &back.resource_spans[0].scope_spans[0];
        assert_eq!(scope.spans.len(), 2);
        assert_eq!(scope.scope.as_ref().unwrap().name, "switchyard");
    }
}
