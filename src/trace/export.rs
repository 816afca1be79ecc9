//! Spans leave the request path here: a request adds its finished spans to a bounded buffer
//! (never waiting: a full buffer drops them, counted), and a background service takes what is
//! buffered when a batch's worth has gathered or a second has passed, groups it per
//! destination and sends each group as OTLP exports, over gRPC (h2, or h2c) or OTLP/HTTP, on
//! Pingora's connector (its TLS and pool). An export that fails or takes longer than
//! `EXPORT_TIMEOUT` is dropped, counted, never retried: a collector that is down costs spans,
//! not requests. What is buffered when the process exits is sent within `EXIT_EXPORT`.
//!
//! The buffer is a mutex, not a channel: the exporter runs on its own thread, and a channel
//! would wake it for every request (a system call and a context switch each); it is woken
//! once per batch instead.
//!
//! A reload that changes the destination needs nothing special: each request's spans go
//! where its snapshot said, and an export never mixes destinations.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;
use tokio::sync::Notify;

use crate::config::{Origin, OtlpExporter, OtlpProtocol};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::side_call;

use super::wire::{self, Spans};

/// Most spans waiting for the exporter (about 1 KiB each).
const BUFFER: usize = 8192;
/// Most exports under way at once: a collector that reads slowly does not hold the others up.
const IN_FLIGHT: usize = 4;
/// Most spans in one export; also what wakes the exporter.
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
    spans: Spans,
}

/// What requests have handed over and the exporter has not taken yet.
#[derive(Default)]
struct Buffer {
    finished: Vec<Finished>,
    spans: usize,
}

struct Shared {
    buffer: Mutex<Buffer>,
    batch_ready: Notify,
}

/// The request side: hands spans to the exporter.
pub struct Tracer {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl Tracer {
    /// A tracer and the background service that exports what it is handed.
    pub fn new(
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
        ca_file: Option<String>,
    ) -> (Tracer, Exporter) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            batch_ready: Notify::new(),
        });
        let exporter = Exporter {
            shared: shared.clone(),
            metrics: metrics.clone(),
            lifecycle,
            ca_file,
        };
        (Tracer { shared, metrics }, exporter)
    }

    /// Buffers a request's spans for `to`, without waiting; a full buffer drops them.
    pub fn send(&self, to: Arc<OtlpExporter>, spans: Spans) {
        let n = spans.count;
        let filled = match self.shared.buffer.lock() {
            Ok(mut b) if b.spans + n <= BUFFER => {
                b.spans += n;
                b.finished.push(Finished { to, spans });
                Some(b.spans >= MAX_BATCH && b.spans - n < MAX_BATCH)
            }
            _ => None,
        };
        match filled {
            Some(true) => self.shared.batch_ready.notify_one(),
            Some(false) => {}
            None => self.metrics.trace_spans_dropped("queue_full", n as u64),
        }
    }
}

/// The background service that batches and exports spans.
pub struct Exporter {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    ca_file: Option<String>,
}

#[async_trait]
impl BackgroundService for Exporter {
    async fn start(&self, _shutdown: ShutdownWatch) {
        self.lifecycle.flusher_started();
        let client = Arc::new(Client::new(self.ca_file.clone()));
        let mut exports = tokio::task::JoinSet::new();
        // Pingora's shutdown broadcast is not the end: requests finishing during the drain
        // still get their spans. The exporter stops when the process is about to exit.
        loop {
            tokio::select! {
                () = self.shared.batch_ready.notified() => {}
                () = tokio::time::sleep(BATCH_DELAY) => {}
                Some(_) = exports.join_next(), if !exports.is_empty() => continue,
                () = self.lifecycle.exiting() => break,
            }
            for (to, parts) in self.take() {
                while exports.len() >= IN_FLIGHT {
                    exports.join_next().await;
                }
                let (client, metrics) = (client.clone(), self.metrics.clone());
                exports.spawn(export(client, metrics, to, parts, EXPORT_TIMEOUT));
            }
        }
        let deadline = Instant::now() + EXIT_EXPORT;
        for (to, parts) in self.take() {
            let (client, metrics) = (client.clone(), self.metrics.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            exports.spawn(export(client, metrics, to, parts, left));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, async { while exports.join_next().await.is_some() {} })
            .await;
        self.lifecycle.flushed();
    }
}

impl Exporter {
    /// Everything buffered, as exports: per destination, at most `MAX_BATCH` spans each.
    fn take(&self) -> Vec<(Arc<OtlpExporter>, Vec<Spans>)> {
        let finished = match self.shared.buffer.lock() {
            Ok(mut b) => {
                b.spans = 0;
                std::mem::take(&mut b.finished)
            }
            Err(_) => Vec::new(),
        };
        batches(finished)
    }
}

/// Requests' spans grouped per destination, in exports of at most `MAX_BATCH` spans.
fn batches(finished: Vec<Finished>) -> Vec<(Arc<OtlpExporter>, Vec<Spans>)> {
    let mut out: Vec<(Arc<OtlpExporter>, Vec<Spans>, usize)> = Vec::new();
    for f in finished {
        let n = f.spans.count;
        let open = out
            .iter()
            .rposition(|(to, _, count)| **to == *f.to && count + n <= MAX_BATCH);
        match open {
            Some(i) => {
                out[i].1.push(f.spans);
                out[i].2 += n;
            }
            None => out.push((f.to, vec![f.spans], n)),
        }
    }
    out.into_iter().map(|(to, parts, _)| (to, parts)).collect()
}

/// Sends one export of `parts` to `to` within `limit`; counts what became of its spans.
async fn export(
    client: Arc<Client>,
    metrics: Arc<Metrics>,
    to: Arc<OtlpExporter>,
    parts: Vec<Spans>,
    limit: Duration,
) {
    let n = parts.iter().map(|p| p.count as u64).sum();
    let grpc = to.protocol == OtlpProtocol::Grpc;
    let body = Bytes::from(wire::export_request(&to.resource, &parts, grpc));
    drop(parts);
    let sent = tokio::time::timeout(limit, client.send(&to, body)).await;
    let why = match sent {
        Ok(Ok(())) => return metrics.trace_spans_exported(n),
        Ok(Err(why)) => why,
        Err(_) => format!("no answer within {limit:?}"),
    };
    metrics.trace_spans_dropped("export_error", n);
    // A config that traces with no collector listening (Plano's examples trace to
    // localhost:4317) fails every export: said once a minute; the metric counts them all.
    if client.may_warn() {
        log::warn!(
            "tracing: spans not exported to {}:{}: {why} (said at most once a minute; switchyard_trace_spans_dropped_total counts them)",
            to.host,
            to.port
        );
    }
}

/// Sends exports as side calls (Pingora's connector, its TLS and pool), resolving each
/// collector's host now and then.
struct Client {
    connector: Connector,
    resolved: Mutex<Vec<(String, u16, SocketAddr, Instant)>>,
    /// When a failed export was last logged.
    warned: Mutex<Option<Instant>>,
}

/// How often a failing export is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How long a collector's resolved address is used.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

impl Client {
    fn new(ca_file: Option<String>) -> Client {
        Client {
            connector: side_call::connector(ca_file),
            resolved: Mutex::new(Vec::new()),
            warned: Mutex::new(None),
        }
    }

    /// Whether a failed export may be logged now (once per `WARN_EVERY`).
    fn may_warn(&self) -> bool {
        let Ok(mut warned) = self.warned.lock() else {
            return false;
        };
        let now = Instant::now();
        if warned.is_some_and(|at| now < at + WARN_EVERY) {
            return false;
        }
        *warned = Some(now);
        true
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
        let addr = side_call::resolve(host, port).await?;
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
        // HTTP/2 takes its :scheme and :authority from an absolute URI; HTTP/1.1 wants the path.
        let origin = Origin {
            tls: to.tls,
            host: to.host.clone(),
            port: to.port,
            path_prefix: String::new(),
        };
        let authority = origin.authority();
        let scheme = if to.tls { "https" } else { "http" };
        let uri = if grpc {
            format!("{scheme}://{authority}{}", to.path)
        } else {
            to.path.clone()
        };
        let mut req =
            RequestHeader::build("POST", uri.as_bytes(), None).map_err(|e| e.to_string())?;
        let err = |e: Box<pingora::Error>| e.to_string();
        req.insert_header(http::header::HOST, authority)
            .map_err(err)?;
        req.insert_header(
            http::header::USER_AGENT,
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(err)?;
        for (name, value) in &to.headers {
            req.insert_header(name.clone(), value.expose())
                .map_err(err)?;
        }
        // (A gRPC body comes framed: wire::export_request.)
        if grpc {
            req.insert_header(http::header::CONTENT_TYPE, "application/grpc")
                .map_err(err)?;
            req.insert_header(http::header::TE, "trailers")
                .map_err(err)?;
        } else {
            req.insert_header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .map_err(err)?;
        }
        req.insert_header(http::header::CONTENT_LENGTH, body.len())
            .map_err(err)?;
        let reply = side_call::post(&self.connector, &peer, req, body, 1 << 20).await?;
        if !(200..300).contains(&reply.status) {
            return Err(format!("the collector answered {}", reply.status));
        }
        // gRPC's status comes in the trailers, or in the header of a trailers-only answer.
        let grpc_status = reply
            .trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| reply.headers.get("grpc-status"));
        match grpc_status.map(|s| s.as_bytes()) {
            _ if !grpc => Ok(()),
            Some(b"0") => Ok(()),
            Some(code) => Err(format!("gRPC status {}", String::from_utf8_lossy(code))),
            None => Err("no gRPC status".to_owned()),
        }
    }
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

    fn spans(n: usize) -> Spans {
        Spans {
            bytes: vec![0; n],
            count: n,
        }
    }

    #[test]
    fn exports_never_mix_destinations_nor_pass_the_batch_size() {
        let finished = [("a", 300), ("b", 300), ("a", 200), ("a", 100), ("b", 5)]
            .into_iter()
            .map(|(host, n)| Finished {
                to: to(host),
                spans: spans(n),
            })
            .collect();
        let out: Vec<(String, usize)> = batches(finished)
            .into_iter()
            .map(|(to, parts)| (to.host.clone(), parts.iter().map(|p| p.count).sum()))
            .collect();
        assert_eq!(
            out,
            [("a".into(), 500), ("b".into(), 305), ("a".into(), 100)]
        );
    }
}
