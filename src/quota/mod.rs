//! Limits and budgets: what a model request is charged ([`plan`]), the maths that decides
//! (GCRA for rates, a UTC-day counter for budgets; pure, here), and where the counts are kept:
//! in this process ([`local`]) or in Redis, shared by every replica ([`shared`]).
//!
//! A request's charges are checked together and taken all or nothing, once per client request
//! whatever its attempts; its token charges are reservations, settled with the upstream's real
//! usage when the request ends (a smaller use gives back, a larger one is debt: the next
//! requests wait).
//!
//! GCRA, the generic cell rate algorithm, keeps one number per limit (the theoretical arrival
//! time) and gives the exact wait, with a steady refill and no burst at a window's edge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::OnStoreError;
use crate::error::{GatewayError, Refusal};
use crate::metrics::Metrics;
use crate::store::Store;

pub mod local;
pub mod plan;
pub mod shared;

pub use local::Local;

/// A limit: `count` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(count: u64) -> Rate {
        Rate {
            count,
            period: Duration::from_secs(60),
        }
    }

    /// The period and the time one unit takes to come back (the emission interval), in
    /// nanoseconds.
    fn nanos(self) -> (u64, u64) {
        let period = u64::try_from(self.period.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        (period, (period / self.count.max(1)).max(1))
    }
}

/// How a charge is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    /// A rate, refilled steadily (GCRA).
    Rate(Rate),
    /// A budget per UTC day, renewed at midnight.
    Day(u64),
}

impl Meter {
    /// The figure the limit is written with.
    pub fn limit(self) -> u64 {
        match self {
            Meter::Rate(r) => r.count,
            Meter::Day(n) => n,
        }
    }
}

/// What a charge counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Tokens,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
        }
    }
}

/// One limit a request is charged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Where the count is kept: made of names, never positions, so a reload keeps it.
    pub key: String,
    pub meter: Meter,
    pub unit: Unit,
    /// 1 request, or the tokens reserved.
    pub cost: u64,
    /// Whose limit, in words: "client `alice`", "`x-user-id: bob` on `openai/gpt-4o`".
    pub owner: String,
    /// The metrics' `client` label: the client's name, or `anonymous`.
    pub client: String,
    /// The metrics' `limit` label: the configuration key (`requests_per_minute`, …).
    pub limit: &'static str,
    /// The period's word for messages: `minute`, `hour`, `day`.
    pub per: &'static str,
}

/// What a check says of one limit.
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

/// The refusal the client is told of: whose limit, how much, how long to wait.
fn refusal(charge: &Charge, verdict: Verdict) -> Refusal {
    Refusal {
        owner: charge.owner.clone(),
        tokens: charge.unit == Unit::Tokens,
        limit: charge.meter.limit(),
        per: charge.per,
        budget: matches!(charge.meter, Meter::Day(_)),
        remaining: verdict.remaining,
        wait: verdict.retry_after,
        reset: verdict.reset_after,
    }
}

/// The clock a check reads: a steady time for rates, the UTC day for budgets. The shared store
/// reads Redis's, so replicas' clocks never matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Nanoseconds on a steady clock.
    pub nanos: u64,
    /// Days since 1970-01-01 (UTC).
    pub day: u64,
    /// Until the next UTC midnight.
    pub left_today: Duration,
}

/// The stored count of one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// A rate's theoretical arrival time (nanoseconds, [`Now::nanos`]) and the emission
    /// interval it was counted with (a reload may change the rate).
    Tat { tat: u64, emission: u64 },
    /// A budget's use on `day`.
    Used { day: u64, used: u64 },
}

/// A rate's stored arrival time, in `emission`s: what is still counted keeps its units when a
/// reload changes the rate (3 requests counted stay 3 requests under a new limit).
fn tat_for(cell: Option<Cell>, now: u64, emission: u64) -> Option<u64> {
    let Some(Cell::Tat { tat, emission: was }) = cell else {
        return None;
    };
    if was == emission || tat <= now {
        return Some(tat);
    }
    let backlog = u128::from(tat - now) * u128::from(emission) / u128::from(was.max(1));
    Some(now.saturating_add(u64::try_from(backlog).unwrap_or(u64::MAX)))
}

/// One step of `meter` at `now` for `cost` units, given the stored `cell`: the verdict and the
/// cell to store when allowed.
pub fn step(cell: Option<Cell>, now: Now, meter: Meter, cost: u64) -> (Verdict, Cell) {
    match meter {
        Meter::Rate(rate) => {
            let (_, emission) = rate.nanos();
            let tat = tat_for(cell, now.nanos, emission).unwrap_or(0);
            let (verdict, tat) = gcra(tat, now.nanos, rate, cost);
            (verdict, Cell::Tat { tat, emission })
        }
        Meter::Day(per_day) => {
            let used = match cell {
                Some(Cell::Used { day, used }) if day == now.day => used,
                _ => 0,
            };
            let allowed = used.saturating_add(cost) <= per_day;
            let verdict = Verdict {
                allowed,
                remaining: per_day.saturating_sub(used.saturating_add(if allowed {
                    cost
                } else {
                    0
                })),
                reset_after: now.left_today,
                retry_after: if allowed {
                    Duration::ZERO
                } else {
                    now.left_today
                },
            };
            let used = if allowed { used + cost } else { used };
            (verdict, Cell::Used { day: now.day, used })
        }
    }
}

/// Adds `delta` units to a stored `cell` (a reservation settled with the real figure) counted
/// on `day`: negative gives back, positive may go past the limit (debt). A budget of another
/// day is left alone: the day it was reserved in is over.
pub fn settle_cell(
    cell: Option<Cell>,
    now: Now,
    meter: Meter,
    day: u64,
    delta: i64,
) -> Option<Cell> {
    let step = |n: u64, per: u64| n.saturating_mul(per);
    match (meter, cell) {
        (Meter::Rate(rate), cell) => {
            let (_, emission) = rate.nanos();
            let moved = step(delta.unsigned_abs(), emission);
            let tat = match tat_for(cell, now.nanos, emission) {
                Some(tat) if delta < 0 => tat.saturating_sub(moved),
                Some(tat) => tat.max(now.nanos).saturating_add(moved),
                None if delta > 0 => now.nanos.saturating_add(moved),
                None => return None,
            };
            Some(Cell::Tat { tat, emission })
        }
        (Meter::Day(_), Some(Cell::Used { day: d, used })) if d == day => Some(Cell::Used {
            day,
            used: used.saturating_add_signed(delta),
        }),
        _ => None,
    }
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

/// What a check of a request's charges decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every charge was taken; `verdicts` in the charges' order.
    Allowed { day: u64, verdicts: Vec<Verdict> },
    /// The charge at `index` refused; none was taken.
    Refused { index: usize, verdict: Verdict },
    /// The shared store did not answer in time and `on_error: open` lets the request pass
    /// unchecked.
    Unchecked,
    /// The shared store did not answer in time and `on_error: closed` refuses.
    Unavailable,
}

/// The charges a request holds until it ends: its token reservations, to settle.
#[derive(Debug)]
pub struct Held {
    pub charges: Vec<Charge>,
    /// The day the check counted budgets on.
    pub day: u64,
    quotas: Quotas,
    /// Whether they were taken in this process (the shared store failed under `local`, or
    /// there is none).
    local: bool,
}

impl Held {
    /// Settles the token reservations with the `used` tokens the upstream reported.
    pub fn settle(self, used: u64, metrics: &Arc<Metrics>) {
        let settles: Vec<(Charge, i64)> = self
            .charges
            .into_iter()
            .filter(|c| c.unit == Unit::Tokens)
            .map(|c| {
                let delta = i64::try_from(used)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(i64::try_from(c.cost).unwrap_or(i64::MAX));
                (c, delta)
            })
            .collect();
        if settles.iter().all(|(_, d)| *d == 0) {
            return;
        }
        match (&self.quotas.shared, self.local) {
            (Some(store), false) => shared::settle(store, settles, self.day, metrics.clone()),
            _ => self.quotas.local.settle(&settles, self.day),
        }
    }
}

/// Where this process counts: always in itself, and in the shared store when `state.redis` is
/// set. The local counts are kept across every reload.
#[derive(Debug, Clone, Default)]
pub struct Quotas {
    pub local: Arc<Local>,
    pub shared: Option<Arc<Store>>,
    /// What a check does when the shared store does not answer.
    pub on_error: OnStoreError,
}

impl Quotas {
    /// The quotas counting in `shared` (if any), keeping what `previous` counted here.
    pub fn after(shared: Option<Arc<Store>>, previous: Option<&Quotas>) -> Quotas {
        Quotas {
            local: previous.map_or_else(Default::default, |p| p.local.clone()),
            on_error: shared
                .as_ref()
                .map_or(OnStoreError::Open, |s| s.settings().on_error),
            shared,
        }
    }

    /// Checks `charges` and takes them all, or none: in Redis when shared (within its
    /// timeout; past it, `on_error` decides), else here. What the request holds to settle when
    /// allowed, or the error the client gets: the refusal of the first limit that refused, or
    /// a 503 when the store cannot count and `on_error: closed`.
    pub async fn check(
        &self,
        charges: Vec<Charge>,
        metrics: &Metrics,
    ) -> Result<Option<Held>, GatewayError> {
        let (decision, local) = match &self.shared {
            None => (self.local.check(&charges), true),
            Some(store) => match shared::check(store, &charges, metrics).await {
                Some(decision) => (decision, false),
                None => match self.on_error {
                    OnStoreError::Open => (Decision::Unchecked, true),
                    OnStoreError::Closed => (Decision::Unavailable, true),
                    OnStoreError::Local => (self.local.check(&charges), true),
                },
            },
        };
        count(&charges, &decision, metrics);
        match decision {
            Decision::Allowed { day, .. } if charges.iter().any(|c| c.unit == Unit::Tokens) => {
                Ok(Some(Held {
                    charges,
                    day,
                    quotas: self.clone(),
                    local,
                }))
            }
            Decision::Allowed { .. } | Decision::Unchecked => Ok(None),
            Decision::Refused { index, verdict } => match charges.get(index) {
                Some(charge) => Err(GatewayError::LimitReached(Box::new(refusal(
                    charge, verdict,
                )))),
                None => Err(GatewayError::Internal),
            },
            Decision::Unavailable => Err(GatewayError::LimitsUnavailable),
        }
    }
}

/// The metrics of one request's checks: one count per limit it was charged against (the
/// refusing one alone when refused), and what is left of a daily budget.
fn count(charges: &[Charge], decision: &Decision, metrics: &Metrics) {
    let budget = |c: &Charge, v: &Verdict| {
        if matches!(c.meter, Meter::Day(_)) {
            metrics.budget_left(&c.client, v.remaining);
        }
    };
    let each = |word: &str| {
        for c in charges {
            metrics.ratelimit_decision(&c.client, c.limit, word);
        }
    };
    match decision {
        Decision::Allowed { verdicts, .. } => {
            for (c, v) in charges.iter().zip(verdicts) {
                metrics.ratelimit_decision(&c.client, c.limit, "allowed");
                budget(c, v);
            }
        }
        Decision::Refused { index, verdict } => {
            if let Some(c) = charges.get(*index) {
                metrics.ratelimit_decision(&c.client, c.limit, "refused");
                budget(c, verdict);
            }
        }
        Decision::Unchecked => each("unchecked"),
        Decision::Unavailable => each("unavailable"),
    }
}

/// Now, on this process's clocks.
pub fn now_here(origin: Instant) -> Now {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let into_day = Duration::from_secs(secs % 86_400)
        + Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
    Now {
        nanos: u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
        day: secs / 86_400,
        left_today: Duration::from_secs(86_400).saturating_sub(into_day),
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

    fn charge(key: &str, meter: Meter, cost: u64) -> Charge {
        Charge {
            key: key.into(),
            meter,
            unit: Unit::Tokens,
            cost,
            owner: "client `a`".into(),
            client: "a".into(),
            limit: "tokens_per_minute",
            per: "minute",
        }
    }

    fn allowed(d: &Decision) -> bool {
        matches!(d, Decision::Allowed { .. })
    }

    #[test]
    fn a_settled_reservation_gives_back_or_goes_into_debt() {
        let q = Local::default();
        let tokens = |cost| charge("a", Meter::Rate(per_minute(100)), cost);
        // 60 reserved, 4 used: 56 come back, so another 60 fit.
        assert!(allowed(&q.check(&[tokens(60)])));
        assert!(!allowed(&q.check(&[tokens(60)])));
        q.settle(&[(tokens(60), 4 - 60)], 0);
        assert!(allowed(&q.check(&[tokens(60)])));
        // 10 reserved, 300 used: the client is in debt and must wait.
        let q = Local::default();
        assert!(allowed(&q.check(&[tokens(10)])));
        q.settle(&[(tokens(10), 290)], 0);
        let Decision::Refused { verdict, .. } = q.check(&[tokens(1)]) else {
            panic!("in debt")
        };
        assert!(
            verdict.retry_after > Duration::from_secs(100),
            "{:?}",
            verdict.retry_after
        );
    }

    #[test]
    fn charges_are_taken_all_or_none() {
        let q = Local::default();
        let small = charge("small", Meter::Rate(per_minute(1)), 1);
        let big = charge("big", Meter::Rate(per_minute(10)), 1);
        assert!(allowed(&q.check(&[big.clone(), small.clone()])));
        // `small` refuses: `big` is not taken either.
        let d = q.check(&[big.clone(), small.clone()]);
        assert!(matches!(d, Decision::Refused { index: 1, .. }), "{d:?}");
        for _ in 0..9 {
            assert!(allowed(&q.check(std::slice::from_ref(&big))));
        }
        assert!(!allowed(&q.check(&[big])));
    }

    #[test]
    fn a_budget_holds_for_the_utc_day_and_renews_the_next() {
        let meter = Meter::Day(100);
        let today = Now {
            nanos: 0,
            day: 20_000,
            left_today: Duration::from_secs(3_600),
        };
        let (v, cell) = step(None, today, meter, 70);
        assert!(v.allowed);
        assert_eq!(v.remaining, 30);
        let (v, _) = step(Some(cell), today, meter, 40);
        assert!(!v.allowed);
        assert_eq!(
            (v.retry_after, v.remaining),
            (Duration::from_secs(3_600), 30)
        );
        // An overrun settled the same day is debt; one settled the next day is left alone.
        let debt = settle_cell(Some(cell), today, meter, 20_000, 50);
        assert_eq!(
            debt,
            Some(Cell::Used {
                day: 20_000,
                used: 120
            })
        );
        assert_eq!(settle_cell(Some(cell), today, meter, 19_999, 50), None);
        let tomorrow = Now {
            day: 20_001,
            ..today
        };
        let (v, _) = step(debt, tomorrow, meter, 100);
        assert!(v.allowed, "a new day, a whole budget");
    }

    #[test]
    fn a_reload_keeps_what_was_counted_even_when_the_limit_changes() {
        let before = Quotas::after(None, None);
        let one = charge(
            "client:a:requests_per_minute",
            Meter::Rate(per_minute(1)),
            1,
        );
        assert!(allowed(&before.local.check(std::slice::from_ref(&one))));
        let after = Quotas::after(None, Some(&before));
        assert!(!allowed(&after.local.check(std::slice::from_ref(&one))));
        // Raised to 2: the request already counted still counts.
        let two = charge(
            "client:a:requests_per_minute",
            Meter::Rate(per_minute(2)),
            1,
        );
        assert!(allowed(&after.local.check(std::slice::from_ref(&two))));
        assert!(!allowed(&after.local.check(&[two])));
    }
}
