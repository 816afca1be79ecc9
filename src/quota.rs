//! Per-client request limits (switchyard's `clients[].limits`), exact within one process: GCRA,
//! the generic cell rate algorithm, which keeps one number per limit (the theoretical arrival
//! time) and gives the exact wait, with a steady refill and no burst at a window's edge. The
//! maths is pure ([`gcra`]); [`Quotas`] holds the numbers, carried across reloads, so a SIGHUP
//! that changes a client's limits keeps its usage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A limit: `count` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: Duration,
}

impl Rate {
    /// The period and the time one unit takes to come back (the emission interval), in
    /// nanoseconds.
    fn nanos(self) -> (u64, u64) {
        let period = u64::try_from(self.period.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        (period, (period / self.count.max(1)).max(1))
    }
}

/// What a check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// How many more the limit takes right now.
    pub remaining: u64,
    /// When the limit is whole again.
    pub reset_after: Duration,
    /// When a refused request would be taken (zero when allowed).
    pub retry_after: Duration,
}

/// One GCRA step at `now` (nanoseconds on any steady clock) for `cost` units, given the stored
/// theoretical arrival time `tat`: the verdict and the time to store.
pub fn gcra(tat: u64, now: u64, rate: Rate, cost: u64) -> (Verdict, u64) {
    let (period, emission) = rate.nanos();
    let start = tat.max(now);
    let new_tat = start.saturating_add(emission.saturating_mul(cost));
    // Allowed while the new arrival time stays within one period of now.
    let allow_at = new_tat.saturating_sub(period);
    if now < allow_at {
        let wait = Duration::from_nanos(allow_at - now);
        let verdict = Verdict {
            allowed: false,
            remaining: 0,
            reset_after: Duration::from_nanos(start - now),
            retry_after: wait,
        };
        return (verdict, tat);
    }
    let used = new_tat - now;
    let verdict = Verdict {
        allowed: true,
        remaining: period.saturating_sub(used) / emission,
        reset_after: Duration::from_nanos(used),
        retry_after: Duration::ZERO,
    };
    (verdict, new_tat)
}

/// The stored arrival times, by client and limit, for this process.
#[derive(Debug)]
pub struct Quotas {
    origin: Instant,
    tats: Mutex<HashMap<(String, &'static str), u64>>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            origin: Instant::now(),
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl Quotas {
    /// Checks and, when allowed, takes `cost` from `client`'s `limit` at `rate`.
    pub fn take(&self, client: &str, limit: &'static str, rate: Rate, cost: u64) -> Verdict {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut tats = match self.tats.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = (client.to_owned(), limit);
        let tat = tats.get(&key).copied().unwrap_or(0);
        let (verdict, new_tat) = gcra(tat, now, rate, cost);
        if verdict.allowed {
            tats.insert(key, new_tat);
        }
        verdict
    }
}

impl Quotas {
    /// Adds `delta` units to what `client`'s `limit` has counted (a reservation settled with
    /// the real figure): negative gives back, positive may go past the limit (debt: the next
    /// requests wait longer).
    pub fn settle(&self, client: &str, limit: &'static str, rate: Rate, delta: i64) {
        let (_, emission) = rate.nanos();
        let mut tats = match self.tats.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tat) = tats.get_mut(&(client.to_owned(), limit)) {
            let step = emission.saturating_mul(delta.unsigned_abs());
            *tat = if delta < 0 {
                tat.saturating_sub(step)
            } else {
                tat.saturating_add(step)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;

    fn per_minute(count: u64) -> Rate {
        Rate {
            count,
            period: Duration::from_secs(60),
        }
    }

    #[test]
    fn n_pass_at_once_then_one_per_interval() {
        let rate = per_minute(6); // one every 10 s
        let (mut tat, now) = (0, 5 * MIN);
        for i in 0..6 {
            let (v, t) = gcra(tat, now, rate, 1);
            assert!(v.allowed, "request {i}");
            assert_eq!(v.remaining, 5 - i);
            tat = t;
        }
        let (v, t) = gcra(tat, now, rate, 1);
        assert!(!v.allowed);
        assert_eq!(t, tat, "a refusal takes nothing");
        // The exact wait: the next slot, 10 s away, not the whole minute.
        assert_eq!(v.retry_after, Duration::from_secs(10));
        assert_eq!(v.reset_after, Duration::from_secs(60));
        let (v, _) = gcra(tat, now + 10_000_000_000, rate, 1);
        assert!(v.allowed);
    }

    #[test]
    fn a_quiet_client_gets_its_whole_burst_back() {
        let rate = per_minute(60);
        let (_, tat) = gcra(0, MIN, rate, 60);
        let (v, _) = gcra(tat, MIN, rate, 1);
        assert!(!v.allowed);
        let (v, _) = gcra(tat, 2 * MIN, rate, 60);
        assert!(v.allowed, "a minute later the whole limit is back");
    }

    #[test]
    fn a_settled_reservation_gives_back_or_goes_into_debt() {
        let q = Quotas::default();
        let rate = per_minute(100);
        // 60 reserved, 4 used: 56 come back, so another 60 fit.
        assert!(q.take("a", "tokens", rate, 60).allowed);
        assert!(!q.take("a", "tokens", rate, 60).allowed);
        q.settle("a", "tokens", rate, 4 - 60);
        assert!(q.take("a", "tokens", rate, 60).allowed);
        // 10 reserved, 300 used: the client is in debt and must wait.
        let q = Quotas::default();
        assert!(q.take("b", "tokens", rate, 10).allowed);
        q.settle("b", "tokens", rate, 290);
        let v = q.take("b", "tokens", rate, 1);
        assert!(!v.allowed);
        assert!(
            v.retry_after > Duration::from_secs(100),
            "{:?}",
            v.retry_after
        );
    }

    #[test]
    fn quotas_are_kept_per_client_and_limit() {
        let q = Quotas::default();
        let rate = per_minute(2);
        assert!(q.take("a", "requests", rate, 1).allowed);
        assert!(q.take("a", "requests", rate, 1).allowed);
        assert!(!q.take("a", "requests", rate, 1).allowed);
        assert!(q.take("b", "requests", rate, 1).allowed);
    }
}
