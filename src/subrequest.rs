//! Carrying a request through a Pingora subrequest, when the main session's proxy phase cannot.
//!
//! The gateway reads the whole body before it routes (the `model` is in it). Pingora 0.9.1
//! re-sends a body consumed in `request_filter` only from its 64 KiB retry buffer, so a larger
//! body would never reach the provider. And Pingora writes a response header before its body
//! filters see the body, so a JSON answer translated into the client's API could not carry its
//! exact length. Those requests run the same proxy phase in a subrequest: the same `ProxyHttp`
//! callbacks (`upstream_peer`, `upstream_request_filter`, the response filters, `logging`), on
//! the same connection pool.
//!
//! The subrequest's own request body is a one-byte placeholder. Pingora keeps it in the
//! subrequest's retry buffer and replays it into `request_body_filter` on every attempt, where
//! the real (rewritten) body is put in its place: any size, retries included.
//!
//! This module is the main request's side: it moves the [`Exchange`] into the subrequest and back,
//! and pipes the subrequest's response to the client. The pipe is ours, not Pingora's
//! `pipe_subrequest`: it notices a client that leaves at once (also before the first byte),
//! answers errors deterministically, waits for the subrequest to finish before the main request
//! is logged, and frames a response that arrives without a length (a translated JSON answer)
//! with its exact `Content-Length`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Version;
use pingora::protocols::http::subrequest::server::SubrequestHandle;
use pingora::protocols::http::HttpTask;
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::conversations::{Conversations, Turn};
use crate::exchange::Exchange;
use crate::metrics::Metrics;

/// The subrequest's stand-in body; `request_body_filter` replaces it with the real one.
pub const PLACEHOLDER: &[u8] = b" ";

/// What the main request and its subrequest share: the exchange while it moves between them,
/// and the subrequest's word that its response comes without a length to be framed whole.
#[derive(Default)]
pub struct Handoff {
    exchange: Mutex<Option<Box<Exchange>>>,
    reframe: AtomicBool,
    /// A Responses conversation to keep before the answer's end reaches the client.
    turn: Mutex<Option<Turn>>,
}

impl Handoff {
    pub fn put(&self, exchange: Box<Exchange>) {
        if let Ok(mut slot) = self.exchange.lock() {
            *slot = Some(exchange);
        }
    }

    pub fn take(&self) -> Option<Box<Exchange>> {
        self.exchange.lock().ok()?.take()
    }
}

fn handoff(session: &Session) -> Option<&Arc<Handoff>> {
    session
        .subrequest_ctx
        .as_ref()?
        .user_ctx()?
        .downcast_ref::<Arc<Handoff>>()
}

/// In the subrequest, before its response header goes out: the body will come whole, to be
/// sent with its exact length (Pingora framed it as chunked).
pub fn reframe(session: &Session) {
    if let Some(h) = handoff(session) {
        h.reframe.store(true, Ordering::Release);
    }
}

/// In the subrequest, as a translated Responses answer ends: the conversation to keep. The
/// main request keeps it before it passes the piece that ends the answer, so a follow-up sent
/// the moment the client has the answer finds it.
pub fn keep(session: &Session, turn: Turn) {
    if let Some(h) = handoff(session) {
        if let Ok(mut slot) = h.turn.lock() {
            *slot = Some(turn);
        }
    }
}

/// In the subrequest: takes the exchange its main request handed over, and frames the
/// subrequest's body as the placeholder (its header is still the client's).
pub fn adopt(session: &mut Session) -> Option<Box<Exchange>> {
    let exchange = handoff(session)?.take()?;
    let req = session.req_header_mut();
    req.remove_header("transfer-encoding");
    req.remove_header("expect");
    req.insert_header("content-length", PLACEHOLDER.len())
        .ok()?;
    Some(exchange)
}

/// In the subrequest's `logging`: gives the exchange back to the main request.
pub fn give_back(session: &Session, exchange: Box<Exchange>) {
    if let Some(h) = handoff(session) {
        h.put(exchange);
    }
}

/// How long a subrequest may take to wind down after the client left.
const WIND_DOWN: Duration = Duration::from_secs(5);

/// Runs `exchange` in a subrequest and pipes its response to the client; the exchange comes
/// back with what happened. `Ok` when the response reached the client whole; `Err` when the
/// client left (a downstream error) or the response broke off after it began (an upstream
/// error; the subrequest has written the final error event), so the connection is not reused.
/// (`None` only if the subrequest was aborted after the client left.)
pub async fn run(
    session: &mut Session,
    exchange: Box<Exchange>,
    keep: (&Conversations, &Metrics),
) -> (Option<Box<Exchange>>, Result<()>) {
    let handoff = Arc::new(Handoff::default());
    handoff.put(exchange);
    let result = pipe(session, &handoff, keep).await;
    (handoff.take(), result)
}

/// Starts a subrequest carrying the exchange in `handoff`, its placeholder body sent.
async fn start(
    session: &mut Session,
    handoff: &Arc<Handoff>,
) -> Result<(
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::Sender<HttpTask>,
    tokio::sync::mpsc::Receiver<HttpTask>,
)> {
    // The subrequest re-parses the main request's header as HTTP/1.1 text.
    if session.req_header().version != Version::HTTP_11 {
        session.req_header_mut().set_version(Version::HTTP_11);
    }
    let ctx = SubrequestCtx::builder()
        .user_ctx(Box::new(handoff.clone()))
        .body_mode(BodyMode::ExpectBody)
        .build();
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Error::e_explain(ErrorType::InternalError, "subrequests are not enabled");
    };
    let (prepared, handle) = spawner.create_subrequest(session.as_downstream(), ctx);
    let SubrequestHandle { tx, rx, .. } = handle;
    let task = tokio::spawn(prepared.run());
    let _ = tx
        .send(HttpTask::Body(Some(Bytes::from_static(PLACEHOLDER)), true))
        .await;
    Ok((task, tx, rx))
}

/// Stops a subrequest: closing both channels tells it its client is gone, if it is not done.
async fn wind_down(
    task: tokio::task::JoinHandle<()>,
    tx: tokio::sync::mpsc::Sender<HttpTask>,
    rx: tokio::sync::mpsc::Receiver<HttpTask>,
) {
    drop(tx);
    drop(rx);
    let abort = task.abort_handle();
    if tokio::time::timeout(WIND_DOWN, task).await.is_err() {
        abort.abort();
    }
}

/// What a subrequest answered, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Largest answer `ask` reads.
const MAX_ANSWER: usize = 1 << 20;

/// Runs `exchange` in a subrequest and reads its whole answer instead of sending it to the
/// client: the gateway's own calls that go through the proxy phase like any request (the
/// router's). Bounded by `within`; the error says why there is no answer. The exchange comes
/// back (`None` only if the subrequest had to be aborted).
pub async fn ask(
    session: &mut Session,
    exchange: Box<Exchange>,
    within: Duration,
) -> (
    Option<Box<Exchange>>,
    std::result::Result<Answer, &'static str>,
) {
    let handoff = Arc::new(Handoff::default());
    handoff.put(exchange);
    let answer = match start(session, &handoff).await {
        Ok((task, tx, mut rx)) => match tokio::time::timeout(within, read_answer(&mut rx)).await {
            Ok(read) => {
                wind_down(task, tx, rx).await;
                read
            }
            // The request goes on at once; the subrequest winds down on its own.
            Err(_) => {
                tokio::spawn(wind_down(task, tx, rx));
                Err("no answer in time")
            }
        },
        Err(_) => Err("subrequests are not enabled"),
    };
    (handoff.take(), answer)
}

async fn read_answer(
    rx: &mut tokio::sync::mpsc::Receiver<HttpTask>,
) -> std::result::Result<Answer, &'static str> {
    let mut status = None;
    let mut body = BytesMut::new();
    while let Some(task) = rx.recv().await {
        let end = task.is_end();
        match task {
            HttpTask::Header(header, _) => status = Some(header.status.as_u16()),
            HttpTask::Body(Some(chunk), _) => {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err("answer too large");
                }
                body.extend_from_slice(&chunk);
            }
            HttpTask::Failed(_) => return Err("the answer broke off"),
            _ => {}
        }
        if end {
            return status
                .map(|status| Answer {
                    status,
                    body: body.freeze(),
                })
                .ok_or("an answer without a header");
        }
    }
    Err("the answer broke off")
}

async fn pipe(
    session: &mut Session,
    handoff: &Arc<Handoff>,
    (conversations, metrics): (&Conversations, &Metrics),
) -> Result<()> {
    let (task, tx, mut rx) = start(session, handoff).await?;

    let mut framing = Framing::default();
    let mut done = false;
    let mut client_error = None;
    loop {
        tokio::select! {
            biased;
            task = rx.recv() => {
                let Some(task) = task else { break };
                let reframe = handoff.reframe.load(Ordering::Acquire);
                let mut tasks = framing.push(task, reframe);
                while let Ok(task) = rx.try_recv() {
                    tasks.extend(framing.push(task, reframe));
                }
                if tasks.is_empty() {
                    continue;
                }
                // Kept before the client sees the answer end (`keep`).
                let turn = handoff.turn.lock().ok().and_then(|mut t| t.take());
                if let Some(turn) = turn {
                    let id = turn.id.clone();
                    // Boxed: a rare branch, not to grow every request's future.
                    let kept = Box::pin(conversations.put(turn, metrics)).await;
                    metrics.conversation(if kept { "kept" } else { "not_kept" });
                    if !kept {
                        log::warn!("response {id}: its conversation could not be kept ({}); a previous_response_id naming it will not be found", conversations.kind());
                    }
                }
                match session.write_response_tasks(tasks).await {
                    Ok(finished) => done |= finished,
                    Err(e) => {
                        client_error = Some(e);
                        break;
                    }
                }
            }
            // A client that leaves cancels the upstream request at once instead of paying for
            // tokens nobody reads.
            gone = session.downstream_session.read_body_or_idle(true), if !done => {
                client_error = Some(match gone {
                    Err(e) => e,
                    Ok(_) => Error::explain(ErrorType::ConnectionClosed, "client sent data while waiting for the response"),
                });
                break;
            }
        }
    }
    wind_down(task, tx, rx).await;
    if let Some(e) = client_error {
        return Err(e.into_down());
    }
    if done || framing.finished {
        return Ok(());
    }
    Err(Error::explain(
        ErrorType::ConnectionClosed,
        "upstream response ended before it was complete",
    )
    .into_up())
}

/// Re-frames a response the subrequest marked (a translated JSON answer): its body is held and
/// sent whole with an exact `Content-Length`. Everything else passes as it comes.
#[derive(Default)]
struct Framing {
    held: Option<(Box<pingora::http::ResponseHeader>, BytesMut)>,
    /// Whether a complete response went through.
    finished: bool,
}

impl Framing {
    fn push(&mut self, task: HttpTask, reframe: bool) -> Vec<HttpTask> {
        let end = task.is_end();
        match task {
            HttpTask::Header(header, false) if reframe => {
                self.held = Some((header, BytesMut::new()));
                Vec::new()
            }
            HttpTask::Body(body, _) if self.held.is_some() => {
                if let (Some((_, held)), Some(b)) = (self.held.as_mut(), body) {
                    held.extend_from_slice(&b);
                }
                if end {
                    self.release()
                } else {
                    Vec::new()
                }
            }
            HttpTask::Done if self.held.is_some() => self.release(),
            // The upstream ended without ending its body: whatever was held is dropped, and the
            // client sees the connection close.
            HttpTask::Failed(e) => {
                self.held = None;
                vec![HttpTask::Failed(e)]
            }
            task => {
                self.finished |= end;
                vec![task]
            }
        }
    }
}

impl Framing {
    /// The held response, whole, with its exact length.
    fn release(&mut self) -> Vec<HttpTask> {
        let Some((mut header, body)) = self.held.take() else {
            return Vec::new();
        };
        self.finished = true;
        let _ = header.insert_header("content-length", body.len());
        header.remove_header("transfer-encoding");
        vec![
            HttpTask::Header(header, false),
            HttpTask::Body(Some(body.freeze()), true),
        ]
    }
}
