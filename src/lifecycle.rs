//! How the process stops: SIGTERM, SIGINT and SIGQUIT, and the drain before the exit.
//!
//! Pingora listens for the stop signals itself, but its stop path has three gaps for an edge
//! gateway: SIGTERM sleeps the whole grace period even when nothing is in flight; SIGINT tears
//! the runtimes down while listener tasks still run, and one of them can then spin on a failing
//! `accept()` forever; and a response finished while draining keeps its connection alive, so the
//! client's next request on it is lost when the process goes. Pingora lets the application
//! watch the signals instead (`RunArgs::shutdown_signal`), so switchyard does, and:
//!
//! - marks the process as draining at once, so every response from then on closes its
//!   connection (`Connection: close`; Pingora sends h2 clients a GOAWAY) and keep-alive clients
//!   reconnect to whoever listens now;
//! - SIGTERM, and SIGQUIT once the listeners are handed over: exits as soon as nothing has been
//!   in flight for a moment and the access log has its last line, at the latest when
//!   `server.grace_period` ends;
//! - SIGINT: writes the access log's queued lines and exits at once;
//! - SIGQUIT with no new process waiting on `server.upgrade_sock`: is refused (logged), because
//!   Pingora would stop serving with nobody to take over.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use log::{error, info, warn};
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::broadcast;

/// How long in-flight must stay at zero before the process exits: a request that arrived on a
/// connection in the moment the drain began gets counted in that time.
const QUIET: Duration = Duration::from_millis(200);
/// How often the drain looks at the in-flight count.
const POLL: Duration = Duration::from_millis(25);
/// The longest the exit waits for the access log's last lines and the last spans' export.
const FLUSH: Duration = Duration::from_secs(2);
/// The longest a SIGQUIT waits for Pingora to hand the listeners over (it retries for about
/// 5 s, then keeps them open 5 s more for the new process).
const HAND_OVER: Duration = Duration::from_secs(20);

/// The process's run state, shared by the proxy (in-flight count, draining) and the stop path.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// Background writers (the access log, the span exporter) that started; the exit waits
    /// until each has flushed what is queued.
    flushers: AtomicUsize,
    /// Set when the process is about to exit: each writer writes what is queued, then `flushed`.
    exiting: AtomicBool,
    flushed: AtomicUsize,
    exit_notify: tokio::sync::Notify,
}

/// Counts one request as in flight for as long as it lives (it is dropped with the request's
/// context, whatever path the request took).
#[derive(Debug)]
pub struct InFlight(Arc<Lifecycle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lifecycle {
    pub fn new() -> Arc<Lifecycle> {
        Arc::new(Lifecycle::default())
    }

    /// Whether a stop signal arrived: responses from now on close their connection.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A background writer says it runs, so the exit waits for its last lines.
    pub fn flusher_started(&self) {
        self.flushers.fetch_add(1, Ordering::AcqRel);
    }

    /// Resolves when the process is about to exit (for the background writers).
    pub async fn exiting(&self) {
        loop {
            let notified = self.exit_notify.notified();
            if self.exiting.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// A background writer wrote out everything queued.
    pub fn flushed(&self) {
        self.flushed.fetch_add(1, Ordering::AcqRel);
    }

    /// Lets the background writers write what is queued (bounded), then ends the process.
    fn exit(&self) -> ! {
        self.exiting.store(true, Ordering::Release);
        self.exit_notify.notify_waiters();
        let deadline = Instant::now() + FLUSH;
        while self.flushed.load(Ordering::Acquire) < self.flushers.load(Ordering::Acquire)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        info!("exiting");
        std::process::exit(0)
    }

    /// Waits until nothing has been in flight for `QUIET`, or `deadline`; then exits.
    fn drain_then_exit(&self, deadline: Instant) -> ! {
        let mut quiet_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let in_flight = self.in_flight();
            match drain_step(now, deadline, in_flight, &mut quiet_since) {
                Drain::Wait => std::thread::sleep(POLL),
                Drain::Done => {
                    info!("drained: nothing in flight");
                    self.exit()
                }
                Drain::GraceOver => {
                    warn!("grace period over with {in_flight} requests in flight; exiting");
                    self.exit()
                }
            }
        }
    }
}

/// One look at the drain.
#[derive(Debug, PartialEq, Eq)]
enum Drain {
    Wait,
    Done,
    GraceOver,
}

fn drain_step(
    now: Instant,
    deadline: Instant,
    in_flight: usize,
    quiet_since: &mut Option<Instant>,
) -> Drain {
    if in_flight > 0 {
        *quiet_since = None;
        return if now >= deadline {
            Drain::GraceOver
        } else {
            Drain::Wait
        };
    }
    let since = *quiet_since.get_or_insert(now);
    if now.duration_since(since) >= QUIET || now >= deadline {
        Drain::Done
    } else {
        Drain::Wait
    }
}

/// Watches SIGTERM, SIGINT and SIGQUIT for Pingora's main loop (see the module doc).
pub struct Signals {
    pub lifecycle: Arc<Lifecycle>,
    pub grace: Duration,
    pub upgrade_sock: PathBuf,
    /// Pingora's phases, to start the drain of an upgrade once the listeners are handed over.
    pub phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Some(mut quit), Some(mut term), Some(mut int)) = (
            listen(SignalKind::quit()),
            listen(SignalKind::terminate()),
            listen(SignalKind::interrupt()),
        ) else {
            // Without the signals nothing can stop the process gracefully; it still serves.
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {
                    info!("SIGINT: stopping now");
                    self.lifecycle.draining.store(true, Ordering::Relaxed);
                    // Pingora's own fast path is the one that can hang; this thread has
                    // nothing else to do, so it waits (briefly) for the access log here.
                    self.lifecycle.exit()
                }
                _ = term.recv() => {
                    info!(
                        "SIGTERM: draining; in flight: {}; exiting when done, within {:?}",
                        self.lifecycle.in_flight(),
                        self.grace
                    );
                    self.lifecycle.draining.store(true, Ordering::Relaxed);
                    let lifecycle = self.lifecycle.clone();
                    let deadline = Instant::now() + self.grace;
                    std::thread::spawn(move || lifecycle.drain_then_exit(deadline));
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = quit.recv() => {
                    if !is_socket(&self.upgrade_sock) {
                        error!(
                            "SIGQUIT refused: no new process is waiting on {} (start it with -u first); still serving",
                            self.upgrade_sock.display()
                        );
                        continue;
                    }
                    info!("SIGQUIT: handing the listeners over, then draining");
                    self.lifecycle.draining.store(true, Ordering::Relaxed);
                    let phases = self.phases.lock().ok().and_then(|mut p| p.take());
                    let lifecycle = self.lifecycle.clone();
                    let grace = self.grace;
                    std::thread::spawn(move || {
                        let handed_over = wait_for_shutdown_phase(phases);
                        lifecycle.drain_then_exit(handed_over + grace)
                    });
                    return ShutdownSignal::GracefulUpgrade;
                }
            }
        }
    }
}

fn listen(kind: SignalKind) -> Option<Signal> {
    signal(kind)
        .map_err(|e| error!("cannot listen for signal {}: {e}", kind.as_raw_value()))
        .ok()
}

/// Waits until Pingora has handed the listeners over and broadcast its shutdown (bounded);
/// returns when that was.
fn wait_for_shutdown_phase(phases: Option<broadcast::Receiver<ExecutionPhase>>) -> Instant {
    let deadline = Instant::now() + HAND_OVER;
    let Some(mut phases) = phases else {
        return Instant::now();
    };
    while Instant::now() < deadline {
        match phases.try_recv() {
            Ok(ExecutionPhase::ShutdownStarted | ExecutionPhase::ShutdownGracePeriod) => break,
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(broadcast::error::TryRecvError::Empty) => std::thread::sleep(POLL),
            Err(broadcast::error::TryRecvError::Closed) => break,
        }
    }
    Instant::now()
}

fn is_socket(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Makes SIGHUP harmless from the first instruction on: its default action ends the process,
/// and the reload service installs its handler only once the services run, after the pid file
/// exists. A handler registered here stays installed for the life of the process (also across
/// the fork of `-d`); the reload service receives the signals from then on.
///
/// Not through tokio: tokio's signal state (a socket pair its handler writes to) created before
/// the `-d` fork would be shared by the launching process and the daemon, whose runtimes would
/// then read each other's wake-ups (the launcher waits for the daemon's SIGUSR1; a daemon could
/// miss a SIGHUP).
pub fn ignore_hangups_until_reload_runs() {
    let ignored = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, ignored) {
        warn!("cannot guard SIGHUP before start: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_ends_after_a_quiet_moment() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(30);
        let mut quiet = None;
        assert_eq!(drain_step(t0, deadline, 0, &mut quiet), Drain::Wait);
        assert_eq!(
            drain_step(t0 + QUIET / 2, deadline, 0, &mut quiet),
            Drain::Wait
        );
        assert_eq!(drain_step(t0 + QUIET, deadline, 0, &mut quiet), Drain::Done);
    }

    #[test]
    fn a_request_in_flight_restarts_the_quiet_moment() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(30);
        let mut quiet = None;
        drain_step(t0, deadline, 0, &mut quiet);
        assert_eq!(
            drain_step(t0 + QUIET / 2, deadline, 1, &mut quiet),
            Drain::Wait
        );
        assert_eq!(
            drain_step(t0 + QUIET, deadline, 0, &mut quiet),
            Drain::Wait,
            "quiet since the request ended, not since the start"
        );
        assert_eq!(
            drain_step(t0 + QUIET * 2, deadline, 0, &mut quiet),
            Drain::Done
        );
    }

    #[test]
    fn the_grace_period_bounds_the_drain() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(3);
        let mut quiet = None;
        assert_eq!(
            drain_step(t0 + Duration::from_secs(2), deadline, 5, &mut quiet),
            Drain::Wait
        );
        assert_eq!(
            drain_step(t0 + Duration::from_secs(3), deadline, 5, &mut quiet),
            Drain::GraceOver
        );
    }

    #[test]
    fn requests_count_while_they_live() {
        let lifecycle = Lifecycle::new();
        let a = lifecycle.request_started();
        let b = lifecycle.request_started();
        assert_eq!(lifecycle.in_flight(), 2);
        drop(a);
        assert_eq!(lifecycle.in_flight(), 1);
        drop(b);
        assert_eq!(lifecycle.in_flight(), 0);
    }
}
