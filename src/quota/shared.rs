//! The counts kept in Redis (`state.redis`), shared by every replica: one script per request
//! checks and takes all its limits atomically on Redis's clock (`EVALSHA`, loaded again by
//! itself after a Redis restart), one more settles its tokens after. Nothing newer than Redis 6
//! or Valkey, no module.
//!
//! Redis slow or down: a check waits at most `timeout`, then `on_error` decides; after a
//! failure the store is not asked for [`BACKOFF`], so requests do not each pay the timeout.
//! The connection reconnects by itself, and sharing resumes when Redis is back.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{Charge, Decision, Meter, Verdict};
use crate::config::{OnStoreError, RedisSettings};
use crate::metrics::Metrics;

/// How long the store is left alone after a failure.
const BACKOFF: Duration = Duration::from_secs(1);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub struct Shared {
    settings: RedisSettings,
    /// Made on first use, inside the runtime that serves requests.
    connection: OnceLock<ConnectionManager>,
    check: Script,
    settle: Script,
    origin: Instant,
    /// Nanoseconds after `origin` until which the store is not asked (0: ask).
    resting_until: AtomicU64,
    /// What the latest call found: [`UNKNOWN`], [`UP`] or [`DOWN`] (for `/healthz`).
    reachable: AtomicU8,
}

impl std::fmt::Debug for Shared {
    // The URL may hold a password: `RedisSettings` prints it as a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(settings: RedisSettings) -> Shared {
        Shared {
            settings,
            connection: OnceLock::new(),
            check: Script::new(include_str!("check.lua")),
            settle: Script::new(include_str!("settle.lua")),
            origin: Instant::now(),
            resting_until: AtomicU64::new(0),
            reachable: AtomicU8::new(UNKNOWN),
        }
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// Whether Redis answered the latest call (`None`: not asked yet).
    pub fn reachable(&self) -> Option<bool> {
        match self.reachable.load(Ordering::Relaxed) {
            UP => Some(true),
            DOWN => Some(false),
            _ => None,
        }
    }

    /// Checks and takes `charges` in Redis: the decision, or the policy that decides when
    /// Redis did not answer within `timeout`.
    pub async fn check(
        &self,
        charges: &[Charge],
        metrics: &Metrics,
    ) -> Result<Decision, OnStoreError> {
        let policy = self.settings.on_error;
        if self.resting() {
            metrics.store_call("check", None);
            return Err(policy);
        }
        let Some(mut connection) = self.connection() else {
            metrics.store_call("check", None);
            return Err(policy);
        };
        let mut call = self.check.prepare_invoke();
        for c in charges {
            call.key(format!("{}{}", self.settings.key_prefix, c.key));
            let (kind, x, y) = meter_args(c.meter);
            call.arg(kind).arg(x).arg(y).arg(c.cost);
        }
        let started = Instant::now();
        let answer = tokio::time::timeout(
            self.settings.timeout,
            call.invoke_async::<Vec<i64>>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok(answer)) => {
                self.succeeded();
                metrics.store_call("check", Some(started.elapsed()));
                decision(&answer, charges.len()).ok_or(policy)
            }
            Ok(Err(e)) => {
                self.failed(Some(&e));
                metrics.store_call("check", None);
                Err(policy)
            }
            Err(_) => {
                self.failed(None);
                metrics.store_call("check", None);
                Err(policy)
            }
        }
    }

    /// Settles token reservations in the background (the client already has its answer).
    pub fn settle(self: &Arc<Self>, settles: Vec<(Charge, i64)>, day: u64, metrics: Arc<Metrics>) {
        let this = self.clone();
        tokio::spawn(async move {
            let Some(mut connection) = this.connection() else {
                metrics.store_call("settle", None);
                return;
            };
            let mut call = this.settle.prepare_invoke();
            call.arg(day);
            for (c, delta) in &settles {
                call.key(format!("{}{}", this.settings.key_prefix, c.key));
                let (kind, x, y) = meter_args(c.meter);
                call.arg(kind).arg(x).arg(y).arg(*delta);
            }
            let started = Instant::now();
            // A settle may wait longer than a check: nobody waits for it.
            let answer = tokio::time::timeout(
                this.settings.timeout.max(Duration::from_secs(1)),
                call.invoke_async::<i64>(&mut connection),
            )
            .await;
            match answer {
                Ok(Ok(_)) => metrics.store_call("settle", Some(started.elapsed())),
                Ok(Err(e)) => {
                    this.failed(Some(&e));
                    metrics.store_call("settle", None);
                }
                Err(_) => {
                    this.failed(None);
                    metrics.store_call("settle", None);
                }
            }
        });
    }

    /// The connection, made on first use (it connects, and reconnects, in the background).
    fn connection(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.connection.get() {
            return Some(c.clone());
        }
        let client = redis::Client::open(self.settings.url.expose()).ok()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(self.settings.timeout.max(Duration::from_millis(200))))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let made = ConnectionManager::new_lazy_with_config(client, config).ok()?;
        Some(self.connection.get_or_init(|| made).clone())
    }

    fn resting(&self) -> bool {
        let until = self.resting_until.load(Ordering::Relaxed);
        until != 0 && self.nanos() < until
    }

    fn succeeded(&self) {
        self.resting_until.store(0, Ordering::Relaxed);
        if self.reachable.swap(UP, Ordering::Relaxed) == DOWN {
            log::info!("state store: Redis answers again; limits are shared again");
        }
    }

    /// A call failed with `e`, or (`None`) did not answer in time.
    fn failed(&self, e: Option<&redis::RedisError>) {
        if self.reachable.swap(DOWN, Ordering::Relaxed) != DOWN {
            // Said once per outage; the error names no secret (redis-rs prints no password).
            match e {
                Some(e) => log::warn!("state store: Redis failed ({e}); on_error: {} until it answers again", self.settings.on_error.as_str()),
                None => log::warn!("state store: Redis did not answer within {:?}; on_error: {} until it answers again", self.settings.timeout, self.settings.on_error.as_str()),
            }
        }
        let until = self.nanos().saturating_add(BACKOFF.as_nanos() as u64);
        self.resting_until.store(until.max(1), Ordering::Relaxed);
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A meter as the scripts take it: kind, and two figures.
fn meter_args(meter: Meter) -> (&'static str, u64, u64) {
    match meter {
        Meter::Rate(rate) => (
            "r",
            u64::try_from(rate.period.as_micros()).unwrap_or(u64::MAX),
            rate.count.max(1),
        ),
        Meter::Day(per_day) => ("d", per_day, 0),
    }
}

/// The check script's answer as a decision (`None`: not the shape it returns).
fn decision(answer: &[i64], charges: usize) -> Option<Decision> {
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    match answer {
        [1, day, rest @ ..] if rest.len() == 2 * charges => Some(Decision::Allowed {
            day: count(*day),
            verdicts: rest
                .chunks(2)
                .map(|pair| Verdict {
                    allowed: true,
                    remaining: count(pair[0]),
                    reset_after: micros(pair[1]),
                    retry_after: Duration::ZERO,
                })
                .collect(),
        }),
        [0, index, retry, reset, remaining, _day] => Some(Decision::Refused {
            index: usize::try_from(*index).ok()?.checked_sub(1)?,
            verdict: Verdict {
                allowed: false,
                remaining: count(*remaining),
                reset_after: micros(*reset),
                retry_after: micros(*retry),
            },
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_answers_read_as_decisions() {
        assert_eq!(
            decision(&[1, 20_000, 9, 6_000_000], 1),
            Some(Decision::Allowed {
                day: 20_000,
                verdicts: vec![Verdict {
                    allowed: true,
                    remaining: 9,
                    reset_after: Duration::from_secs(6),
                    retry_after: Duration::ZERO
                }]
            })
        );
        assert_eq!(
            decision(&[0, 2, 1_500_000, 60_000_000, 0, 20_000], 2),
            Some(Decision::Refused {
                index: 1,
                verdict: Verdict {
                    allowed: false,
                    remaining: 0,
                    reset_after: Duration::from_secs(60),
                    retry_after: Duration::from_millis(1500)
                }
            })
        );
        assert_eq!(decision(&[1, 20_000], 1), None, "one verdict per charge");
        assert_eq!(decision(&[0, 0, 1, 1, 0, 1], 1), None, "indexes start at 1");
    }
}
