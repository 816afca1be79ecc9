//! The counts kept in the shared store (`state.redis`), for every replica: one script per
//! request checks and takes all its limits atomically on Redis's clock (`EVALSHA`, loaded again
//! by itself after a Redis restart), one more settles its tokens after. Nothing newer than
//! Redis 6 or Valkey, no module. The store bounds each call by its timeout (store).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::{Charge, Decision, Meter, Verdict};
use crate::metrics::Metrics;
use crate::store::Store;

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("check.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("settle.lua")));

/// Checks and takes `charges` in the store: the decision, or `None` when it did not answer in
/// time (then `on_error` decides).
pub async fn check(store: &Store, charges: &[Charge], metrics: &Metrics) -> Option<Decision> {
    let mut call = CHECK.prepare_invoke();
    for c in charges {
        call.key(store.key(&c.key));
        let (kind, x, y) = meter_args(c.meter);
        call.arg(kind).arg(x).arg(y).arg(c.cost);
    }
    let answer = store
        .call(
            "check",
            Duration::ZERO,
            metrics,
            |mut connection| async move { call.invoke_async::<Vec<i64>>(&mut connection).await },
        )
        .await?;
    decision(&answer, charges.len())
}

/// Settles token reservations in the background (the client already has its answer).
pub fn settle(store: &Arc<Store>, settles: Vec<(Charge, i64)>, day: u64, metrics: Arc<Metrics>) {
    let store = store.clone();
    tokio::spawn(async move {
        let mut call = SETTLE.prepare_invoke();
        call.arg(day);
        for (c, delta) in &settles {
            call.key(store.key(&c.key));
            let (kind, x, y) = meter_args(c.meter);
            call.arg(kind).arg(x).arg(y).arg(*delta);
        }
        // Nobody waits on a settle: it may take longer than a check.
        let wait = Duration::from_secs(1);
        store
            .call("settle", wait, &metrics, |mut connection| async move {
                call.invoke_async::<i64>(&mut connection).await
            })
            .await;
    });
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
