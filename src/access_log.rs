//! The access log: one JSON line per request, written off the request path.
//!
//! Requests hand their line to a bounded channel; a background service writes it to stdout or a
//! file. A full channel drops the line (and says so) rather than slow a request down.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use log::{error, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::lifecycle::Lifecycle;
use crate::usage::Usage;

/// One access-log line. Only ids, names, sizes and timings: never a credential.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub client: Option<String>,
    pub method: &'a str,
    pub path: &'a str,
    /// The client's name (`clients`), when it presented a gateway key: never the key.
    pub client_name: Option<&'a str>,
    /// The model the client asked for (cut to 256 characters).
    pub model: Option<&'a str>,
    /// The configured provider name it was routed to.
    pub provider: Option<&'a str>,
    pub upstream_model: Option<&'a str>,
    pub status: u16,
    pub duration_ms: f64,
    pub ttft_ms: Option<f64>,
    pub tokens: Option<Usage>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub error: Option<&'a str>,
    /// Why the upstream failed (`connection refused`, `cannot resolve the host`, …), if it did.
    pub cause: Option<&'a str>,
    /// The preference route and why (`long context (router)`, `none (fail-open: …)`), when
    /// preference routing ran.
    pub route: Option<&'a str>,
    /// Every upstream attempt: endpoint name and outcome (`success` or an error class).
    pub attempts: Vec<Attempt<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Attempt<'a> {
    pub endpoint: &'a str,
    pub outcome: &'a str,
}

/// Where access-log lines go (`server.access_log`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sink {
    #[default]
    Stdout,
    File(PathBuf),
    Off,
}

/// Lines waiting to be written before new ones are dropped.
const QUEUE: usize = 64 * 1024;
/// Pause between batches.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The request side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<String>>,
    dropped: Arc<AtomicU64>,
}

/// The background service that writes the lines.
pub struct Writer {
    rx: Mutex<Option<mpsc::Receiver<String>>>,
    sink: Sink,
    dropped: Arc<AtomicU64>,
    lifecycle: Arc<Lifecycle>,
}

impl AccessLog {
    /// The log and, unless it is off, the service that writes it.
    pub fn new(sink: Sink, lifecycle: Arc<Lifecycle>) -> (AccessLog, Option<Writer>) {
        let dropped = Arc::new(AtomicU64::new(0));
        if sink == Sink::Off {
            return (AccessLog { tx: None, dropped }, None);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            rx: Mutex::new(Some(rx)),
            sink,
            dropped: dropped.clone(),
            lifecycle,
        };
        (
            AccessLog {
                tx: Some(tx),
                dropped,
            },
            Some(writer),
        )
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one entry as a JSON line.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        if tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Writer {
    fn open(&self) -> Option<Box<dyn Write + Send>> {
        match &self.sink {
            Sink::Stdout => Some(Box::new(std::io::stdout())),
            Sink::File(path) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => Some(Box::new(file)),
                Err(e) => {
                    error!(
                        "cannot open access log {}: {e}; access log disabled",
                        path.display()
                    );
                    None
                }
            },
            Sink::Off => None,
        }
    }
}

#[async_trait]
impl BackgroundService for Writer {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut rx| rx.take()) else {
            return;
        };
        let Some(out) = self.open() else { return };
        self.lifecycle.flusher_started();
        let mut out = std::io::BufWriter::new(out);
        // Pingora's shutdown broadcast is not the end: requests finishing during the drain still
        // get their line. The writer stops when the process is about to exit.
        loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                () = self.lifecycle.exiting() => None,
            };
            let Some(line) = line else { break };
            let mut ok = writeln!(out, "{line}").is_ok();
            while let Ok(line) = rx.try_recv() {
                ok &= writeln!(out, "{line}").is_ok();
            }
            ok &= out.flush().is_ok();
            if !ok {
                warn!("cannot write the access log");
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                warn!("{dropped} access-log lines dropped: the log could not keep up");
            }
            // Write in batches: under load, waking for every line costs the proxy more than
            // the writing itself. Lines wait at most this long.
            tokio::select! {
                _ = tokio::time::sleep(BATCH_INTERVAL) => {}
                () = self.lifecycle.exiting() => {}
            }
        }
        // Whatever is queued at exit still gets written.
        while let Ok(line) = rx.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        self.lifecycle.flushed();
    }
}

/// The first `max` characters of `s`.
pub fn truncate(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

/// `2026-11-24T14:11:00.123Z`
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64, ms: u64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms)
        };
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_795_529_460, 123)), "2026-11-24T14:11:00.123Z");
    }

    #[test]
    fn off_means_no_writer() {
        let (log, writer) = AccessLog::new(Sink::Off, Lifecycle::new());
        assert!(!log.enabled() && writer.is_none());
    }

    #[test]
    fn truncates_on_characters() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
