//! One endpoint's health: passive (consecutive failures eject it for a cool-down that doubles
//! on repeat; a `retry-after` parks it) and active (`checks`), and its requests in flight.
//! Lock-free atomics, shared by every request and kept across reloads while the endpoint is
//! unchanged.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::config::{Outlier, Provider};
use crate::metrics::{Metrics, UpstreamErrorClass};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since the process started (the clock health state is kept in).
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// One endpoint's health.
#[derive(Debug, Default)]
pub struct Health {
    /// Requests being served by the endpoint (for `least_requests`).
    in_flight: AtomicU32,
    /// Set by the active health check.
    down: AtomicBool,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until: AtomicU64,
    parked_until: AtomicU64,
    /// Time to the answer's header of successful attempts, in µs, smoothed (0: none yet); for
    /// `prefer: fastest`.
    latency_us: AtomicU64,
}

impl Health {
    /// A successful attempt's time to its answer's header: folded into the smoothed latency
    /// (each new observation weighs 1/5).
    pub fn observe_latency(&self, took: Duration) {
        let sample = (took.as_micros() as u64).max(1);
        let _ = self
            .latency_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    (old * 4 + sample) / 5
                })
            });
    }

    /// The smoothed latency, once there is one.
    pub fn latency(&self) -> Option<Duration> {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Neither ejected, parked nor down.
    pub fn available_at(&self, now: u64) -> bool {
        !self.parked_at(now) && !self.is_down() && now >= self.ejected_until.load(Ordering::Relaxed)
    }

    /// The active health check's verdict.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Records the active health check's verdict; returns whether it changed.
    pub fn set_down(&self, down: bool) -> bool {
        self.down.swap(down, Ordering::Relaxed) != down
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Parked by a `retry-after`: not to be used at all until then.
    pub fn parked_at(&self, now: u64) -> bool {
        now < self.parked_until.load(Ordering::Relaxed)
    }

    /// When the endpoint takes requests again (ms since start; 0 if it does now).
    pub fn unavailable_until(&self) -> u64 {
        self.parked_until
            .load(Ordering::Relaxed)
            .max(self.ejected_until.load(Ordering::Relaxed))
    }

    /// A request succeeded: the failure streak and the ejection count start over.
    pub fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
    }

    /// A request failed. Returns the ejection, if this failure caused one.
    pub fn failed(&self, outlier: &Outlier) -> Option<Duration> {
        let streak = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < outlier.consecutive_failures {
            return None;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let ejection = outlier
            .ejection
            .saturating_mul(1 << n)
            .min(outlier.max_ejection);
        let until = now_ms() + ejection.as_millis() as u64;
        self.ejected_until.fetch_max(until, Ordering::Relaxed);
        Some(ejection)
    }

    /// Takes the endpoint out of rotation for `d` (a 429's `retry-after`).
    pub fn park_for(&self, d: Duration) {
        let until = now_ms() + d.as_millis() as u64;
        self.parked_until.fetch_max(until, Ordering::Relaxed);
    }
}

/// A request counted in an endpoint's in-flight number.
#[derive(Debug)]
pub struct InFlight(Arc<Health>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Scores an attempt's outcome on its endpoint: a success clears the failure streak; a failure
/// counts towards ejection (a 4xx, a 429 included, says the endpoint is busy or the request bad,
/// not that it is broken); a `retry-after` parks it. The health gauge follows.
pub fn record(
    metrics: &Metrics,
    provider: &Provider,
    health: &Health,
    class: Option<UpstreamErrorClass>,
    retry_after: Option<Duration>,
) {
    let Some(class) = class else {
        health.succeeded();
        metrics.endpoint_health(&provider.prefix, &provider.name, true);
        return;
    };
    if let Some(ra) = retry_after {
        health.park_for(ra);
        metrics.endpoint_health(&provider.prefix, &provider.name, false);
    }
    if class != UpstreamErrorClass::Status4xx && health.failed(&provider.outlier).is_some() {
        log::warn!(
            "endpoint `{}` ejected after repeated failures",
            provider.name
        );
        metrics.endpoint_health(&provider.prefix, &provider.name, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_after_a_streak_doubles_on_repeat() {
        let h = Health::default();
        let o = Outlier {
            consecutive_failures: 2,
            ejection: Duration::from_millis(100),
            max_ejection: Duration::from_millis(300),
        };
        assert_eq!(h.failed(&o), None);
        assert_eq!(h.failed(&o), Some(Duration::from_millis(100)));
        assert!(!h.available_at(now_ms()));
        assert_eq!(h.failed(&o), None);
        assert_eq!(h.failed(&o), Some(Duration::from_millis(200)));
        h.failed(&o);
        assert_eq!(h.failed(&o), Some(Duration::from_millis(300)), "capped");
        h.succeeded();
        assert_eq!(h.failed(&o), None, "a success resets the streak");
    }

    #[test]
    fn parking_never_shortens() {
        let h = Health::default();
        h.park_for(Duration::from_secs(60));
        let until = h.unavailable_until();
        h.park_for(Duration::from_millis(1));
        assert_eq!(h.unavailable_until(), until);
        assert!(!h.available_at(now_ms()));
    }
}
