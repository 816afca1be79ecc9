//! One upstream attempt: connect, send the rewritten request, stream the answer to the client.
//!
//! The gateway reads the whole body before it routes (the `model` is in it), so Pingora's
//! proxy path cannot carry the request: on 0.9.1 a body consumed in `request_filter` is
//! re-sent only from the 64 KiB retry buffer, and larger bodies (long contexts, routinely)
//! hang. The main request therefore drives its own exchange on Pingora's pieces: the
//! `Connector` (connection pool, rustls, connect timeouts) gives an HTTP/1.1 client session,
//! the header and a small body go out in one write, and the response tasks are written with
//! `Session::write_response_tasks`, the same calls Pingora's proxy makes. Everything runs in the
//! request's own task: no subrequest, no channels, no second header parse (the subrequest this
//! replaced cost about 30% more CPU per request, see README "Performance"). The client is
//! watched all along: one that leaves cancels the upstream at once instead of paying for tokens
//! nobody reads. Pingora's proxy also cannot retry on a 429 or 5xx answer; this loop can.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::HeaderName;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader, Version};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession as HttpSessionV1};
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use tokio::io::AsyncWriteExt;

use crate::auth::{self, AuthStyle};
use crate::config::Retry;
use crate::error::GatewayError;
use crate::metrics::UpstreamErrorClass;
use crate::request_id;
use crate::respond;
use crate::state::Snapshot;
use crate::translate::{Api, ResponseTranslator};
use crate::usage::ResponseWatch;

/// A routed request: everything one attempt needs to reach its endpoint.
pub struct Forward {
    /// The snapshot the request was routed with.
    pub snapshot: Arc<Snapshot>,
    /// Index of the chosen provider in the snapshot.
    pub provider: usize,
    /// Upstream path and query.
    pub path: String,
    /// The rewritten body.
    pub body: Bytes,
    pub request_id: String,
    /// How the upstream wants its credential.
    pub auth: AuthStyle,
    /// When the attempt started on the upstream (address pick, connect) and when the
    /// upstream's last byte arrived. Their difference is the time spent waiting on it.
    pub upstream_started: OnceLock<Instant>,
    pub upstream_finished: OnceLock<Instant>,
}

impl Forward {
    pub fn new(
        snapshot: Arc<Snapshot>,
        provider: usize,
        path: String,
        body: Bytes,
        request_id: String,
        auth: AuthStyle,
    ) -> Forward {
        Forward {
            snapshot,
            provider,
            path,
            body,
            request_id,
            auth,
            upstream_started: OnceLock::new(),
            upstream_finished: OnceLock::new(),
        }
    }
}

/// How a forwarded request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The upstream's response reached the client whole.
    Complete,
    /// The upstream failed and the gateway answered; nothing more will be tried.
    UpstreamError(UpstreamErrorClass),
    /// The attempt failed before anything reached the client, in a way the attempt's policy
    /// retries: the caller may try another endpoint.
    Retryable(Failure),
}

/// A failed attempt that wrote nothing to the client.
#[derive(Debug)]
pub struct Failure {
    pub class: UpstreamErrorClass,
    /// The upstream's `retry-after`, if it gave one.
    pub retry_after: Option<Duration>,
    /// The upstream's whole (error) response, already in the client's API, to send if no
    /// other attempt is made; empty when there was none (connect error, timeout).
    pub response: Vec<HttpTask>,
}

/// What one attempt may do.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Whether a failure may be left to another attempt (`Outcome::Retryable`).
    pub may_retry: bool,
    pub retry: Retry,
    /// Longest wait for the upstream's response header.
    pub first_byte: Option<Duration>,
    /// The whole request's deadline.
    pub deadline: Option<Instant>,
}

impl Attempt {
    fn retries_status(&self, status: u16) -> Option<UpstreamErrorClass> {
        if !self.may_retry {
            return None;
        }
        match status {
            429 if self.retry.on_429 => Some(UpstreamErrorClass::Status4xx),
            500..=599 if self.retry.on_5xx => Some(UpstreamErrorClass::Status5xx),
            _ => None,
        }
    }

    fn retries(&self, class: UpstreamErrorClass) -> bool {
        self.may_retry
            && match class {
                UpstreamErrorClass::Connect | UpstreamErrorClass::Protocol => self.retry.on_connect,
                UpstreamErrorClass::Timeout => self.retry.on_timeout,
                UpstreamErrorClass::Status4xx => self.retry.on_429,
                UpstreamErrorClass::Status5xx => self.retry.on_5xx,
            }
    }
}

/// Sends `forward` to its upstream and streams the response to the client.
///
/// `Ok` means the request is over for this attempt: a complete response was written (the
/// upstream's or the gateway's own error), or, when `attempt.may_retry`, nothing was written and
/// the failure is returned for the caller to retry elsewhere. `Err` means the client is gone (a
/// downstream error) or the response broke off after its header was sent (an upstream error;
/// an SSE client first gets a final error event in its API's shape): the caller must not reuse
/// the connection, so a cut stream never looks complete. `watch` sees every piece of the
/// upstream's response; a `translator` rewrites it into the client's API before it is written.
pub async fn run(
    session: &mut Session,
    connector: &Connector,
    forward: &Forward,
    watch: &mut ResponseWatch,
    mut translator: Option<ResponseTranslator>,
    attempt: &Attempt,
) -> Result<Outcome> {
    let api = Api::from_path(session.req_header().uri.path());
    let started = Instant::now();
    forward.upstream_started.get_or_init(|| started);
    let header_deadline = match (attempt.first_byte.map(|d| started + d), attempt.deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let request = upstream_request(session.req_header(), forward)?;

    // Connect, send, and wait for the response header, watching the client meanwhile.
    let opened = tokio::select! {
        biased;
        // Boxed: connecting (TLS handshake included) needs a large future, which would
        // otherwise stay part of every request's state while its response streams.
        opened = Box::pin(open(connector, forward, &request)) => opened.map_err(Ended::UpstreamFailed),
        gone = session.downstream_session.read_body_or_idle(true) => Err(Ended::ClientGone(gone_error(gone))),
        _ = sleep_until(header_deadline), if header_deadline.is_some() => Err(Ended::TimedOut),
    };
    let (mut up, mut header) = match opened {
        Ok(opened) => opened,
        Err(Ended::ClientGone(e)) => return Err(e.into_down()),
        Err(other) => return failed(session, forward, watch, api, attempt, other).await,
    };
    header.insert_header(request_id::HEADER, forward.request_id.as_str())?;
    let header_end = up.session.is_body_done();

    let mut next = Some(HttpTask::Header(header, header_end));
    let mut done = false;
    let ended = loop {
        let task = match next.take() {
            Some(task) => task,
            None => tokio::select! {
                biased;
                task = up.session.read_response_task() => match task {
                    Ok(task) => task,
                    Err(e) => break Err(Ended::UpstreamFailed(e)),
                },
                // A client that leaves cancels the upstream request at once instead of paying
                // for tokens nobody reads.
                gone = session.downstream_session.read_body_or_idle(true) => break Err(Ended::ClientGone(gone_error(gone))),
                _ = sleep_until(attempt.deadline), if attempt.deadline.is_some() => break Err(Ended::TimedOut),
            },
        };
        let now = Instant::now();
        let end = task.is_end();
        match &task {
            HttpTask::Header(h, _) => {
                watch.retry_after = retry_after(h);
                watch.header(
                    h.status.as_u16(),
                    h.headers.get("content-type").and_then(|v| v.to_str().ok()),
                );
                // A retryable answer (429, 5xx) is kept from the client while another attempt
                // may still succeed.
                if let Some(class) = attempt.retries_status(h.status.as_u16()) {
                    let retry_after = watch.retry_after;
                    let response = collect(task, &mut up, translator.as_mut()).await;
                    forward.upstream_finished.get_or_init(Instant::now);
                    return Ok(Outcome::Retryable(Failure {
                        class,
                        retry_after,
                        response,
                    }));
                }
            }
            HttpTask::Body(Some(b), _) => watch.body(b, now),
            _ => {}
        }
        let tasks = match translator.as_mut() {
            Some(t) => t.tasks(vec![task]),
            None => vec![task],
        };
        if end {
            forward.upstream_finished.get_or_init(|| now);
            break Ok(tasks);
        }
        if !tasks.is_empty() {
            match session.write_response_tasks(tasks).await {
                Ok(finished) => done |= finished,
                Err(e) => break Err(Ended::ClientGone(e)),
            }
        }
    };
    match ended {
        Ok(last) => {
            // The response is whole: its connection goes back to the pool before the client
            // sees the end, so whatever the client sends next finds it there.
            up.release(connector).await;
            if !last.is_empty() {
                done |= session
                    .write_response_tasks(last)
                    .await
                    .map_err(|e| e.into_down())?;
            }
            if !done {
                session.finish_body().await.map_err(|e| e.into_down())?;
            }
            watch.end();
            Ok(Outcome::Complete)
        }
        Err(Ended::ClientGone(e)) => Err(e.into_down()),
        Err(other) => failed(session, forward, watch, api, attempt, other).await,
    }
}

/// How an exchange ended early.
enum Ended {
    UpstreamFailed(Box<Error>),
    TimedOut,
    ClientGone(Box<Error>),
}

fn gone_error(gone: Result<Option<Bytes>>) -> Box<Error> {
    match gone {
        Err(e) => e,
        Ok(_) => Error::explain(
            ErrorType::ConnectionClosed,
            "client sent data while waiting for the response",
        ),
    }
}

/// The end of an attempt whose upstream failed or timed out: a final error event on a stream
/// already under way, a retryable failure, or the gateway's own error response.
async fn failed(
    session: &mut Session,
    forward: &Forward,
    watch: &ResponseWatch,
    api: Option<Api>,
    attempt: &Attempt,
    ended: Ended,
) -> Result<Outcome> {
    forward.upstream_finished.get_or_init(Instant::now);
    let provider = forward.snapshot.provider(forward.provider).name.clone();
    let error = match ended {
        Ended::UpstreamFailed(e) => GatewayError::upstream(&e, provider),
        _ => GatewayError::UpstreamTimeout(provider),
    };
    if session.response_written().is_some() {
        if watch.is_stream() {
            let event = stream_error_event(api, &error);
            let _ = session
                .write_response_tasks(vec![HttpTask::Body(Some(event), false)])
                .await;
        }
        return Err(Error::explain(
            ErrorType::ConnectionClosed,
            "upstream response ended before it was complete",
        )
        .into_up());
    }
    let class = match error {
        GatewayError::UpstreamUnreachable(_) => UpstreamErrorClass::Connect,
        GatewayError::UpstreamTimeout(_) => UpstreamErrorClass::Timeout,
        _ => UpstreamErrorClass::Protocol,
    };
    if attempt.retries(class) {
        return Ok(Outcome::Retryable(Failure {
            class,
            retry_after: None,
            response: Vec::new(),
        }));
    }
    respond::error(session, &error, api, &forward.request_id).await?;
    Ok(Outcome::UpstreamError(class))
}

/// An upstream HTTP/1.1 exchange whose response header has arrived.
struct Exchange {
    session: HttpSessionV1,
    peer: HttpPeer,
}

impl Exchange {
    /// Returns the connection to Pingora's pool if the response was read whole and the
    /// upstream keeps it alive.
    async fn release(self, connector: &Connector) {
        connector
            .release_http_session(
                HttpSession::H1(self.session),
                &self.peer,
                Some(UPSTREAM_IDLE_TIMEOUT),
            )
            .await;
    }
}

/// Connects (a pooled connection if there is one; on a refusal, the host's next address), sends
/// the request and reads the response header. A pooled connection the upstream had closed is
/// replaced by another before anything counts as a failure: nothing was answered on it.
async fn open(
    connector: &Connector,
    forward: &Forward,
    request: &RequestHeader,
) -> Result<(Exchange, Box<ResponseHeader>)> {
    let upstream = forward.snapshot.upstream(forward.provider);
    let addrs = upstream.addresses.current().await.map_err(|e| {
        Error::because(
            ErrorType::ConnectNoRoute,
            format!("cannot resolve {}", upstream.endpoint.host),
            e,
        )
    })?;
    let head = http_req_header_to_wire(request).ok_or_else(|| {
        Error::explain(
            ErrorType::InvalidHTTPHeader,
            "the upstream request header is not valid",
        )
    })?;
    let wire = Wire::new(head, &forward.body);
    let first = upstream.addresses.next_start();
    let mut last = Error::explain(ErrorType::ConnectNoRoute, "the upstream has no address");
    for i in 0..addrs.len() {
        let addr = addrs[(first + i) % addrs.len()];
        let peer = peer(forward, addr);
        for _ in 0..STALE_RETRIES {
            let (session, reused) = match connector.get_http_session(&peer).await {
                Ok((HttpSession::H1(s), reused)) => (s, reused),
                Ok(_) => {
                    return Error::e_explain(ErrorType::InternalError, "upstream is not HTTP/1.1")
                }
                Err(e) => {
                    last = e;
                    break;
                }
            };
            match exchange(session, &peer, &wire).await {
                Ok((session, header)) => return Ok((Exchange { session, peer }, header)),
                Err(e) if reused => last = e,
                Err(e) => return Err(e),
            }
        }
    }
    Err(last)
}

/// How many pooled connections one request may find closed by the upstream before it gives up.
const STALE_RETRIES: usize = 4;

/// How long an idle pooled upstream connection is kept.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The request as written: header and body in one write (one packet for small bodies) where
/// copying is cheap, else the two as they are.
struct Wire<'a> {
    head: Bytes,
    body: &'a [u8],
}

impl<'a> Wire<'a> {
    const COALESCE: usize = 64 * 1024;

    fn new(mut head: BytesMut, body: &'a [u8]) -> Wire<'a> {
        if body.len() <= Self::COALESCE {
            head.extend_from_slice(body);
            return Wire {
                head: head.freeze(),
                body: &[],
            };
        }
        Wire {
            head: head.freeze(),
            body,
        }
    }
}

/// Writes the request on `session`'s connection and reads the response header, skipping
/// informational ones.
async fn exchange(
    session: HttpSessionV1,
    peer: &HttpPeer,
    wire: &Wire<'_>,
) -> Result<(HttpSessionV1, Box<ResponseHeader>)> {
    let mut stream = session.into_inner();
    let write = async {
        stream.write_all(&wire.head).await?;
        if !wire.body.is_empty() {
            stream.write_all(wire.body).await?;
        }
        stream.flush().await
    };
    let written = match peer.options.write_timeout {
        Some(t) => tokio::time::timeout(t, write)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
        None => write.await,
    };
    written.map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::TimedOut {
            ErrorType::WriteTimedout
        } else {
            ErrorType::WriteError
        };
        Error::because(kind, "while sending the request upstream", e)
    })?;
    let mut session = HttpSessionV1::new_with_options(stream, peer);
    session.read_timeout = peer.options.read_timeout;
    session.write_timeout = peer.options.write_timeout;
    loop {
        match session.read_response_task().await? {
            HttpTask::Header(h, _) if h.status.is_informational() => continue,
            HttpTask::Header(h, _) => return Ok((session, h)),
            _ => return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header"),
        }
    }
}

/// The peer for one of the upstream's addresses, with the provider's timeouts.
fn peer(forward: &Forward, addr: std::net::SocketAddr) -> HttpPeer {
    let config = &forward.snapshot.config;
    let upstream = forward.snapshot.upstream(forward.provider);
    let mut peer = HttpPeer::new(addr, upstream.endpoint.tls, upstream.endpoint.host.clone());
    let timeouts = config.providers[forward.provider]
        .timeouts
        .or(config.listener.timeouts);
    let idle = timeouts.idle.unwrap_or(config.listener.timeout);
    peer.options.total_connection_timeout = Some(
        timeouts
            .connect
            .unwrap_or(config.overrides.upstream_connect_timeout),
    );
    peer.options.read_timeout = Some(idle);
    peer.options.write_timeout = Some(idle);
    peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
    peer
}

/// The request the upstream gets: the client's fields minus hop-by-hop ones, for the provider's
/// path and host, framed for the rewritten body, with the provider's credential. Built in one
/// pass over the client's header, without Pingora's header-case map (lower-case names are what
/// HTTP/2 sends anyway).
pub fn upstream_request(client: &RequestHeader, forward: &Forward) -> Result<RequestHeader> {
    use http::header;
    // Fields the client's `Connection` names are for this hop only.
    let nominated: Vec<HeaderName> = client
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let mut req = RequestHeader::build_no_case(
        client.method.clone(),
        forward.path.as_bytes(),
        Some(client.headers.len() + 4),
    )?;
    req.set_version(Version::HTTP_11);
    for (name, value) in &client.headers {
        if NOT_FORWARDED.contains(name) || nominated.contains(name) {
            continue;
        }
        req.append_header(name, value.clone())?;
    }
    let provider = forward.snapshot.provider(forward.provider);
    req.insert_header(header::CONTENT_LENGTH, forward.body.len())?;
    let host = match &provider.http_host {
        Some(host) => host.clone(),
        None => provider.endpoint.authority(),
    };
    req.insert_header(header::HOST, host)?;
    req.insert_header(request_id::HEADER, forward.request_id.as_str())?;
    auth::apply(&mut req, provider, forward.auth)?;
    Ok(req)
}

/// Fields never copied from the client: hop-by-hop ones (RFC 9110 §7.6.1 and their common
/// companions), and those the gateway sets itself. `accept-encoding` goes too: the response must
/// be plain bytes for usage accounting and translation.
static NOT_FORWARDED: [HeaderName; 15] = {
    use http::header::*;
    [
        CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        HeaderName::from_static("http2-settings"),
        CONTENT_LENGTH,
        EXPECT,
        ACCEPT_ENCODING,
        HOST,
        HeaderName::from_static(request_id::HEADER),
    ]
};

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The rest of a (small) error response, translated, so it can be sent later if no other
/// attempt is made. Bounded in time and size; its connection is not reused.
async fn collect(
    header: HttpTask,
    up: &mut Exchange,
    translator: Option<&mut ResponseTranslator>,
) -> Vec<HttpTask> {
    const LIMIT: usize = 1 << 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut size = 0;
    let mut tasks = vec![header];
    while !tasks.iter().any(HttpTask::is_end) && size < LIMIT {
        match tokio::time::timeout_at(deadline, up.session.read_response_task()).await {
            Ok(Ok(task)) => {
                if let HttpTask::Body(Some(b), _) = &task {
                    size += b.len();
                }
                tasks.push(task);
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    if !tasks.iter().any(HttpTask::is_end) {
        tasks.push(HttpTask::Body(None, true));
    }
    match translator {
        Some(t) => t.tasks(tasks),
        None => tasks,
    }
}

/// `retry-after` in seconds.
fn retry_after(h: &pingora::http::ResponseHeader) -> Option<Duration> {
    h.headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The last event of a stream that broke off, in the client's API.
fn stream_error_event(api: Option<Api>, error: &GatewayError) -> Bytes {
    let message = error.to_string();
    let event = if api.is_some_and(Api::anthropic) {
        crate::translate::sse::named(
            "error",
            &crate::translate::anthropic_error(error.status(), &message),
        )
    } else {
        crate::translate::sse::data(&serde_json::json!({
            "error": {"message": message, "type": "server_error", "param": null, "code": error.code()}
        }))
    };
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn forward(yaml: &str, body: &'static [u8]) -> Forward {
        let config = Config::from_yaml(yaml, &|_| Some("sk-provider".into())).unwrap();
        let snapshot = Arc::new(Snapshot::new(config));
        Forward::new(
            snapshot,
            0,
            "/v1/chat/completions?x=1".into(),
            Bytes::from_static(body),
            "req-1".into(),
            AuthStyle::Bearer,
        )
    }

    fn client(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn upstream_request_drops_hop_by_hop_fields_and_sets_its_own() {
        let f = forward(
            "model_providers: [{model: openai/gpt-4o, base_url: 'http://10.0.0.1:8080', access_key: $K}]",
            b"{\"model\":\"gpt-4o\"}",
        );
        let req = upstream_request(
            &client(&[
                ("Host", "gateway.example"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Transfer-Encoding", "chunked"),
                ("Expect", "100-continue"),
                ("Accept-Encoding", "gzip"),
                ("Content-Length", "999"),
                ("X-Request-Id", "client-id"),
                ("Authorization", "Bearer sk-client"),
                ("OpenAI-Organization", "org-1"),
                ("X-Custom", "a"),
                ("X-Custom", "b"),
            ]),
            &f,
        )
        .unwrap();
        let get = |n: &str| {
            req.headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        for gone in [
            "connection",
            "x-hop",
            "keep-alive",
            "te",
            "transfer-encoding",
            "expect",
            "accept-encoding",
        ] {
            assert!(get(gone).is_empty(), "{gone} was forwarded");
        }
        assert_eq!(get("host"), ["10.0.0.1:8080"]);
        assert_eq!(get("content-length"), ["18"]);
        assert_eq!(get("x-request-id"), ["req-1"]);
        assert_eq!(get("authorization"), ["Bearer sk-provider"]);
        assert_eq!(get("openai-organization"), ["org-1"]);
        assert_eq!(get("x-custom"), ["a", "b"]);
        assert_eq!(req.uri, "/v1/chat/completions?x=1");
        assert_eq!(req.version, Version::HTTP_11);
    }

    #[test]
    fn small_bodies_go_out_with_the_header_in_one_write() {
        let head = BytesMut::from(&b"POST / HTTP/1.1\r\n\r\n"[..]);
        let wire = Wire::new(head.clone(), b"{}");
        assert_eq!(&wire.head[..], b"POST / HTTP/1.1\r\n\r\n{}");
        assert!(wire.body.is_empty());
        let big = vec![b'x'; Wire::COALESCE + 1];
        let wire = Wire::new(head, &big);
        assert_eq!(&wire.head[..], b"POST / HTTP/1.1\r\n\r\n");
        assert_eq!(wire.body.len(), big.len());
    }
}
