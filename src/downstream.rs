//! The client side of the listener: what a connection may cost before, between and beside its
//! requests, and which protocol it speaks.
//!
//! Pingora bounds each read of a request head on its own (a client that sends a byte every few
//! seconds is never cut), waits for 24 bytes before deciding whether a plaintext connection
//! speaks HTTP/2 (so a complete 18-byte `GET / HTTP/1.0` request is never answered), and accepts
//! any number of connections. [`Downstream`] is the listener's application around Pingora's HTTP
//! proxy app and adds, per connection:
//!
//! - `server.max_connections`: a connection over the limit is closed at once;
//! - the protocol, decided from the first bytes as soon as they differ from the HTTP/2 preface;
//! - `server.header_timeout`: a request head must be complete this long after the connection
//!   opened, or after the first byte of a later request on it;
//! - `server.keepalive_timeout`: a connection idle between requests is closed after this long
//!   (Pingora's `h2_idle_timeout` does the same for HTTP/2).
//!
//! Every close at a limit is counted in `switchyard_downstream_connections_closed_total{reason}`.
//! The proxy tells the connection when a request head has arrived and when its answer is done
//! (`request_arrived`, `request_done`); what happens in between is the request's own business
//! (its body, the upstream, the stream), bounded elsewhere.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::config::ServerSettings;
use crate::metrics::Metrics;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub use crate::metrics::Closed as Limit;

/// The client-connection limits, from the `server` block.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub keepalive: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn of(server: &ServerSettings) -> Limits {
        Limits {
            header: server.header_timeout,
            keepalive: server.keepalive_timeout,
            max_connections: server.max_connections,
        }
    }
}

/// The listener's application: Pingora's HTTP app `A`, with the limits above around it.
pub struct Downstream<A> {
    app: Arc<A>,
    limits: Limits,
    open: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl<A> Downstream<A> {
    pub fn new(app: A, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Downstream {
            app: Arc::new(app),
            limits,
            open: AtomicUsize::new(0),
            metrics,
        }
    }
}

tokio::task_local! {
    /// The connection the current task serves (HTTP/1: every request of the connection runs in
    /// its task; HTTP/2 streams run in their own tasks and do not see it).
    static CONNECTION: Arc<Connection>;
}

/// A request head has arrived on this task's connection: its time limit is off until the answer
/// is done.
pub fn request_arrived(session: &mut Session) {
    let _ = CONNECTION.try_with(|c| {
        c.set(Phase::Busy);
        // Only where the request keeps the connection (not HTTP/1.0, not `Connection: close`).
        // Pingora's own idle timeout stays a second behind the watchdog's, so the watchdog
        // closes (and counts) an idle connection first.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(c.keepalive.as_secs() + 1));
        }
        // Requests a client sends without waiting for the answer (pipelining) are answered in
        // order instead of being dropped with the connection.
        session.set_pipelining_enabled(true);
    });
}

/// The answer on this task's connection is done: it is idle until the next request's first byte.
pub fn request_done() {
    let _ = CONNECTION.try_with(|c| {
        c.set(Phase::Idle);
    });
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Downstream<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = Slot::take(self) else {
            self.metrics.connection_closed(Limit::MaxConnections);
            return None;
        };
        let connection = Arc::new(Connection::new(self.limits.keepalive));
        let first = tokio::time::timeout(self.limits.header, first_bytes(&mut stream)).await;
        let (prefix, http2) = match first {
            Ok(Some(first)) => first,
            // Closed before sending anything: nothing to answer.
            Ok(None) => return None,
            Err(_) => {
                self.metrics.connection_closed(Limit::HeaderTimeout);
                return None;
            }
        };
        let watched = Watched {
            inner: stream,
            replay: prefix,
            replayed: 0,
            http2,
            connection: connection.clone(),
        };
        let served = CONNECTION.scope(
            connection.clone(),
            self.app.process_new(Box::new(watched), shutdown),
        );
        tokio::pin!(served);
        let limit = tokio::select! {
            biased;
            _ = &mut served => None,
            limit = watch(&connection, self.limits) => Some(limit),
        };
        // Counted before the connection closes (`served`, pinned in this frame, goes when this
        // returns), so whoever sees the close also sees the count.
        if let Some(limit) = limit {
            self.metrics.connection_closed(limit);
        }
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// One admitted connection; gives its place back when dropped.
struct Slot<'a> {
    open: &'a AtomicUsize,
    metrics: &'a Metrics,
}

impl<'a> Slot<'a> {
    fn take<A>(d: &'a Downstream<A>) -> Option<Slot<'a>> {
        let admitted = d
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < d.limits.max_connections).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| {
            d.metrics.connections(1);
            Slot {
                open: &d.open,
                metrics: &d.metrics,
            }
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections(-1);
    }
}

/// Reads until the bytes either are the HTTP/2 preface or cannot be; returns them and whether
/// they are. `None` when the client closed or failed before sending anything.
async fn first_bytes(stream: &mut Stream) -> Option<(Vec<u8>, bool)> {
    let mut prefix = Vec::with_capacity(1024);
    loop {
        if let Some(http2) = protocol_of(&prefix) {
            return Some((prefix, http2));
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) if prefix.is_empty() => return None,
            // Closed mid-way: Pingora reads the rest (nothing) and handles what there is.
            Ok(0) | Err(_) => return Some((prefix, false)),
            Ok(n) => prefix.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether a connection starting with `bytes` speaks HTTP/2 (`Some(true)`), not (`Some(false)`),
/// or cannot be told yet (`None`).
fn protocol_of(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head (from the connection's start or a request's first byte).
    Head = 0,
    /// A request is being served.
    Busy = 1,
    /// Between requests.
    Idle = 2,
}

/// A connection's phase and since when, shared by its stream, its watchdog and its requests.
struct Connection {
    phase: AtomicU8,
    /// Milliseconds since `epoch()`.
    since: AtomicU64,
    keepalive: Duration,
}

impl Connection {
    fn new(keepalive: Duration) -> Self {
        Connection {
            phase: AtomicU8::new(Phase::Head as u8),
            since: AtomicU64::new(now_ms()),
            keepalive,
        }
    }

    fn set(&self, phase: Phase) {
        self.since.store(now_ms(), Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn get(&self) -> (Phase, u64) {
        let phase = match self.phase.load(Ordering::Acquire) {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        };
        (phase, self.since.load(Ordering::Acquire))
    }

    /// Bytes came in from the client.
    fn bytes_arrived(&self, http2: bool) {
        let (phase, _) = self.get();
        if http2 && phase != Phase::Busy {
            // Past the preface: the HTTP/2 session runs; Pingora bounds its idle time.
            self.set(Phase::Busy);
        } else if phase == Phase::Idle {
            self.set(Phase::Head);
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// What the watchdog does after looking at a connection.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Close(Limit),
    /// Look again in this long.
    Wait(Duration),
}

/// The watchdog's look at a connection in `phase` since `since_ms`. It is never told of a
/// phase change (that would cost every request a wake-up and a new timer): it looks again at
/// the phase's deadline, and at least every `header` timeout, so a request head that starts
/// while it waits is still cut exactly `header` after its first byte.
fn check(phase: Phase, since_ms: u64, now_ms: u64, limits: Limits) -> Check {
    let (limit, allowed) = match phase {
        Phase::Head => (Limit::HeaderTimeout, limits.header),
        Phase::Idle => (Limit::KeepaliveTimeout, limits.keepalive),
        // Nothing to bound while a request is served: its own timeouts do.
        Phase::Busy => return Check::Wait(limits.header),
    };
    let elapsed = Duration::from_millis(now_ms.saturating_sub(since_ms));
    if elapsed >= allowed {
        Check::Close(limit)
    } else {
        Check::Wait((allowed - elapsed).min(limits.header))
    }
}

/// Resolves with the limit a connection reached; runs beside it until then.
async fn watch(connection: &Connection, limits: Limits) -> Limit {
    loop {
        let (phase, since) = connection.get();
        match check(phase, since, now_ms(), limits) {
            Check::Close(limit) => return limit,
            Check::Wait(d) => tokio::time::sleep(d).await,
        }
    }
}

/// The client's stream, first replaying the bytes read to tell its protocol, and telling its
/// connection when bytes arrive.
struct Watched {
    inner: Stream,
    replay: Vec<u8>,
    replayed: usize,
    http2: bool,
    connection: Arc<Connection>,
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .field("http2", &self.http2)
            .finish()
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.bytes_arrived(this.http2);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Watched {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Watched {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Watched {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Watched {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Watched {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Watched {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Watched {
    /// Pingora peeks 24 bytes to tell HTTP/2 from HTTP/1 and would wait for all 24; the answer
    /// is already known, so this hands over the bytes read (padded), without waiting.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let known = &self.replay[self.replayed..];
        let n = known.len().min(buf.len());
        buf[..n].copy_from_slice(&known[..n]);
        buf[n..].fill(0);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header: Duration::from_secs(10),
        keepalive: Duration::from_secs(75),
        max_connections: 10,
    };

    #[test]
    fn the_protocol_is_known_at_the_first_byte_that_differs_from_the_preface() {
        assert_eq!(protocol_of(b""), None);
        assert_eq!(protocol_of(b"G"), Some(false));
        assert_eq!(protocol_of(b"P"), None);
        assert_eq!(protocol_of(b"POST / HTTP/1.1\r\n"), Some(false));
        assert_eq!(protocol_of(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(protocol_of(PREFACE), Some(true));
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x12\x04");
        assert_eq!(protocol_of(&more), Some(true));
        // An 18-byte request is complete as HTTP/1 long before 24 bytes.
        assert_eq!(protocol_of(b"GET / HTTP/1.0\r\n\r\n"), Some(false));
    }

    #[test]
    fn a_head_has_header_timeout_to_arrive() {
        assert_eq!(
            check(Phase::Head, 1_000, 5_000, LIMITS),
            Check::Wait(Duration::from_secs(6))
        );
        assert_eq!(
            check(Phase::Head, 1_000, 11_000, LIMITS),
            Check::Close(Limit::HeaderTimeout)
        );
    }

    #[test]
    fn an_idle_connection_has_keepalive_timeout() {
        assert_eq!(
            check(Phase::Idle, 0, 74_000, LIMITS),
            Check::Wait(Duration::from_secs(1))
        );
        assert_eq!(
            check(Phase::Idle, 0, 75_000, LIMITS),
            Check::Close(Limit::KeepaliveTimeout)
        );
    }

    #[test]
    fn a_request_being_served_is_not_timed_here() {
        assert_eq!(
            check(Phase::Busy, 0, 3_600_000, LIMITS),
            Check::Wait(LIMITS.header),
            "looked at again, never closed"
        );
    }

    #[test]
    fn an_idle_wait_is_never_longer_than_a_head_may_take() {
        // Idle for 75 s: looked at again within 10 s, in case a request head starts meanwhile.
        assert_eq!(
            check(Phase::Idle, 0, 1_000, LIMITS),
            Check::Wait(LIMITS.header)
        );
    }

    #[test]
    fn bytes_after_an_idle_time_start_the_next_head() {
        let c = Connection::new(LIMITS.keepalive);
        c.set(Phase::Idle);
        c.bytes_arrived(false);
        assert_eq!(c.get().0, Phase::Head);
        c.set(Phase::Busy);
        c.bytes_arrived(false);
        assert_eq!(
            c.get().0,
            Phase::Busy,
            "a request body does not restart the head"
        );
    }

    #[test]
    fn an_http2_connection_is_busy_once_past_the_preface() {
        let c = Connection::new(LIMITS.keepalive);
        c.bytes_arrived(true);
        assert_eq!(c.get().0, Phase::Busy);
    }
}
