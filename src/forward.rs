//! Forwarding a request whose body the gateway has already read (to route on `model`) and
//! rewritten.
//!
//! Why a subrequest: on stock Pingora 0.9.1 a body consumed in `request_filter` can only be
//! re-sent from the 64 KiB retry buffer; larger bodies are never forwarded and the request hangs.
//! Long-context LLM requests exceed 64 KiB routinely. So the main session hands the rewritten
//! body to a Pingora *subrequest* that runs through this same `ProxyHttp` (its `upstream_peer`,
//! `upstream_request_filter`, response filters and pooled connector), and pipes the
//! subrequest's response back with the loop below. One path for every body size and for
//! HTTP/1.1 and h2c clients; it costs roughly 15 µs of CPU per request over the retry buffer
//! (measured in ../shared notes), noise next to an LLM call. Pingora's own `pipe_subrequest`
//! is not used: it is blind to a client that leaves before the first response byte (tokens
//! keep being paid for) and races the sub's error reply against its error report.
//!
//! If Pingora ships early body buffering (cloudflare/pingora PR #816), only this module changes.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::{RequestHeader, Version};
use pingora::protocols::http::subrequest::server::SubrequestHandle;
use pingora::protocols::http::HttpTask;
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::auth::AuthStyle;
use crate::config::Retry;
use crate::error::GatewayError;
use crate::metrics::UpstreamErrorClass;
use crate::respond;
use crate::state::Snapshot;
use crate::translate::{Api, ResponseTranslator};
use crate::usage::ResponseWatch;

/// A routed request, handed from the main session to its subrequest.
pub struct Forward {
    /// The snapshot the request was routed with; the subrequest uses the same one.
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
    /// Set by the subrequest: when it started on the upstream (address pick, connect) and when
    /// the upstream's last byte arrived. Their difference is the time spent waiting on it.
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

/// Runs `forward` as a subrequest and pipes its response to the client.
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
    forward: Arc<Forward>,
    watch: &mut ResponseWatch,
    mut translator: Option<ResponseTranslator>,
    attempt: &Attempt,
) -> Result<Outcome> {
    // The subrequest re-parses the main request's header as HTTP/1.1 text; an h2 request line
    // would be rejected there.
    if session.req_header().version == Version::HTTP_2 {
        session.req_header_mut().set_version(Version::HTTP_11);
    }
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Error::e_explain(ErrorType::InternalError, "subrequests are not enabled");
    };
    let sub_ctx = SubrequestCtx::builder()
        .user_ctx(Box::new(forward.clone()))
        .body_mode(BodyMode::ExpectBody)
        .build();
    let (prepared, handle) = spawner.create_subrequest(session.as_downstream(), sub_ctx);
    let SubrequestHandle {
        tx,
        mut rx,
        subreq_proxy_error: mut proxy_error,
        ..
    } = handle;
    let mut sub = tokio::spawn(prepared.run());
    // The whole body as one task; the channel holds four, so this does not wait. The subrequest
    // reads it only once connected, so a connect retry re-sends it whole.
    let _ = tx
        .send(HttpTask::Body(Some(forward.body.clone()), true))
        .await;

    let api = Api::from_path(session.req_header().uri.path());
    let started = Instant::now();
    let header_deadline = match (attempt.first_byte.map(|d| started + d), attempt.deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut header_seen = false;
    let mut done = false;
    let mut upstream_failed: Option<Box<Error>> = None;
    let mut timed_out = false;
    let mut client_error = None;
    loop {
        let deadline = if header_seen {
            attempt.deadline
        } else {
            header_deadline
        };
        tokio::select! {
            biased;
            task = rx.recv() => {
                let Some(task) = task else { break };
                let mut tasks = vec![task];
                while let Ok(task) = rx.try_recv() {
                    tasks.push(task);
                }
                // A failure of the subrequest arrives as a task; it is the upstream's, not the
                // client's, so it is not written.
                if let Some(i) = tasks.iter().position(|t| matches!(t, HttpTask::Failed(_))) {
                    if let HttpTask::Failed(e) = tasks.swap_remove(i) {
                        upstream_failed = Some(e);
                    }
                    tasks.truncate(i);
                }
                let now = Instant::now();
                for task in &tasks {
                    match task {
                        HttpTask::Header(h, _) => {
                            header_seen = true;
                            watch.retry_after = retry_after(h);
                            watch.header(
                                h.status.as_u16(),
                                h.headers.get("content-type").and_then(|v| v.to_str().ok()),
                            );
                        }
                        HttpTask::Body(Some(b), _) => watch.body(b, now),
                        _ => {}
                    }
                }
                // A retryable answer (429, 5xx) is kept from the client while another attempt
                // may still succeed.
                if session.response_written().is_none() {
                    let status = tasks.iter().find_map(|t| match t {
                        HttpTask::Header(h, _) => Some(h.status.as_u16()),
                        _ => None,
                    });
                    if let Some(class) = status.and_then(|s| attempt.retries_status(s)) {
                        let retry_after = tasks.iter().find_map(|t| match t {
                            HttpTask::Header(h, _) => retry_after(h),
                            _ => None,
                        });
                        let response = collect(tasks, &mut rx, translator.as_mut()).await;
                        sub.abort();
                        forward.upstream_finished.get_or_init(Instant::now);
                        return Ok(Outcome::Retryable(Failure { class, retry_after, response }));
                    }
                }
                if let Some(t) = translator.as_mut() {
                    tasks = t.tasks(tasks);
                }
                if !tasks.is_empty() {
                    match session.write_response_tasks(tasks).await {
                        Ok(end) => done |= end,
                        Err(e) => {
                            client_error = Some(e);
                            break;
                        }
                    }
                }
                if upstream_failed.is_some() {
                    break;
                }
            }
            // Watches the client while the upstream works: a client that leaves cancels the
            // upstream request at once instead of paying for tokens nobody reads.
            gone = session.downstream_session.read_body_or_idle(true), if !done => {
                client_error = Some(match gone {
                    Err(e) => e,
                    Ok(_) => Error::explain(ErrorType::ConnectionClosed, "client sent data while waiting for the response"),
                });
                break;
            }
            _ = sleep_until(deadline), if deadline.is_some() && !done => {
                timed_out = true;
                break;
            }
        }
    }

    if let Some(e) = client_error {
        sub.abort();
        return Err(e.into_down());
    }
    drop(tx);
    if upstream_failed.is_some() || timed_out {
        sub.abort();
    } else {
        drop(rx);
        let _ = (&mut sub).await;
    }
    // Normally set by the subrequest at the upstream's last byte; bodiless answers and
    // failures end here.
    forward.upstream_finished.get_or_init(Instant::now);
    if done {
        watch.end();
        return Ok(Outcome::Complete);
    }
    let provider = forward.snapshot.provider(forward.provider).name.clone();
    let error = if timed_out {
        GatewayError::UpstreamTimeout(provider)
    } else {
        match proxy_error.try_recv().ok().or(upstream_failed) {
            Some(e) => GatewayError::upstream(&e, provider),
            None => GatewayError::UpstreamFailed(provider),
        }
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The rest of a (small) error response, translated, so it can be sent later if no other
/// attempt is made. Bounded in time and size.
async fn collect(
    mut tasks: Vec<HttpTask>,
    rx: &mut tokio::sync::mpsc::Receiver<HttpTask>,
    translator: Option<&mut ResponseTranslator>,
) -> Vec<HttpTask> {
    const LIMIT: usize = 1 << 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut size = 0;
    while !tasks.iter().any(HttpTask::is_end) && size < LIMIT {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(HttpTask::Failed(_))) | Ok(None) | Err(_) => break,
            Ok(Some(task)) => {
                if let HttpTask::Body(Some(b), _) = &task {
                    size += b.len();
                }
                tasks.push(task);
            }
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

/// In the subrequest: the header it parsed is the client's, so its framing describes the
/// original body. Make it describe the rewritten one before the body reader starts.
pub fn fix_subrequest_framing(req: &mut RequestHeader, body_len: usize) -> Result<()> {
    req.remove_header("transfer-encoding");
    req.remove_header("expect");
    req.insert_header("content-length", body_len.to_string())
}

/// In the subrequest: the forwarding decision its main session attached.
pub fn decision(session: &Session) -> Option<Arc<Forward>> {
    session
        .subrequest_ctx
        .as_ref()?
        .user_ctx()?
        .downcast_ref::<Arc<Forward>>()
        .cloned()
}
