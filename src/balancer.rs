//! Choosing one of a model's endpoints, and keeping score of each endpoint's health.
//!
//! Selection is weighted round-robin over the endpoints that are available: not ejected by
//! passive health (consecutive failures eject for a cool-down that doubles on repeat) and not
//! parked by a 429's `retry-after`. Ejection never takes the last endpoints out: when every
//! endpoint not parked is ejected, the ejected ones are used (Envoy's "panic" mode), so a
//! single-endpoint model is never failed by the gateway itself. State is lock-free atomics.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::config::Outlier;

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
    down: std::sync::atomic::AtomicBool,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until: AtomicU64,
    parked_until: AtomicU64,
}

impl Health {
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

/// Picks among `candidates` (index, weight): the `n`-th slot of a weighted round-robin.
pub fn weighted(candidates: &[(usize, u32)], n: u64) -> Option<usize> {
    let total: u64 = candidates.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut slot = n % total;
    for (i, w) in candidates {
        let w = u64::from(*w);
        if slot < w {
            return Some(*i);
        }
        slot -= w;
    }
    None
}

/// Power of two choices: of two candidates drawn from `n`, the one with fewer requests in
/// flight (`load`).
pub fn least_requests(
    candidates: &[(usize, u32)],
    n: u64,
    load: impl Fn(usize) -> u32,
) -> Option<usize> {
    let len = candidates.len() as u64;
    if len == 0 {
        return None;
    }
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let a = candidates[(mix % len) as usize].0;
    let b = candidates[((mix >> 32) % len) as usize].0;
    Some(if load(b) < load(a) { b } else { a })
}

/// Rendezvous hashing: the candidate `key` maps to, stable while the candidates are.
pub fn affinity(
    candidates: &[(usize, u32)],
    key: &str,
    name: impl Fn(usize) -> String,
) -> Option<usize> {
    use std::hash::{Hash, Hasher};
    candidates
        .iter()
        .map(|(i, _)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            name(*i).hash(&mut h);
            (h.finish(), *i)
        })
        .max()
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_round_robin_follows_the_weights() {
        let c = [(7, 3), (8, 1)];
        let picks: Vec<usize> = (0..8).filter_map(|n| weighted(&c, n)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 7).count(), 6);
        assert_eq!(picks.iter().filter(|&&i| i == 8).count(), 2);
        assert_eq!(weighted(&[], 3), None);
    }

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
    fn least_requests_takes_the_less_loaded_of_two() {
        let c = [(0, 1), (1, 1)];
        let load = |i: usize| if i == 0 { 5 } else { 0 };
        // Whenever both are drawn, the idle one wins; over many draws the busy one rarely does.
        let busy = (0..100)
            .filter(|&n| least_requests(&c, n, load) == Some(0))
            .count();
        assert!(busy < 50, "{busy}");
        assert_eq!(least_requests(&[], 1, load), None);
    }

    #[test]
    fn affinity_is_stable_and_spreads() {
        let c: Vec<(usize, u32)> = (0..4).map(|i| (i, 1)).collect();
        let name = |i: usize| format!("e{i}");
        let first = affinity(&c, "conversation-1", name);
        assert!((0..10).all(|_| affinity(&c, "conversation-1", name) == first));
        let spread: std::collections::HashSet<_> = (0..40)
            .filter_map(|k| affinity(&c, &format!("conv-{k}"), name))
            .collect();
        assert!(spread.len() > 1);
        // Losing another endpoint does not move the conversation.
        let first = first.unwrap();
        let fewer: Vec<(usize, u32)> = c
            .iter()
            .copied()
            .filter(|(i, _)| *i != (first + 1) % 4)
            .collect();
        assert_eq!(affinity(&fewer, "conversation-1", name), Some(first));
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
