//! Endpoints: the provider entries that serve one model, which of them takes an attempt, and
//! how healthy each is.
//!
//! Selection is weighted round-robin (or, with `lb_policy: least_requests`, the less loaded of
//! two; with an affinity key, rendezvous hashing) over the endpoints that are available: not
//! ejected by passive health, not parked by a 429's `retry-after`, not failed by an active
//! check (`health`, `checks`). Ejection never takes the last endpoints out: when every endpoint
//! not parked is ejected, the ejected ones are used (Envoy's "panic" mode), so a single-endpoint
//! model is never failed by the gateway itself.
//!
//! Pingora's `pingora-load-balancing` is not used: its `Backend` is identified by address and
//! weight only, so two endpoints on one `host:port` (two keys or organisations for one
//! provider, several deployments behind one front door) would collapse into one; its health is
//! per backend set, with no notion of a `retry-after` or of the passive signals (429, 5xx) that
//! matter for hosted providers; and its selectors cannot skip the endpoints a request already
//! tried. The pieces here are small and pure; the active checks run on Pingora's connector as a
//! background service, as that crate's do.

pub mod checks;
pub mod health;

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::attempt::Pick;
use crate::config::LbPolicy;
use crate::state::Snapshot;
use health::Health;

/// Picks an available endpoint of group `gid` not in `tried`. When every available endpoint was
/// tried, one may be tried again; when all that are not parked are ejected, the ejected ones are
/// used.
pub fn pick(
    snapshot: &Snapshot,
    gid: usize,
    tried: &[usize],
    affinity_key: Option<&str>,
) -> Option<usize> {
    let now = health::now_ms();
    let members = &snapshot.resolver.group(gid).members;
    let weighted_by = |keep: &dyn Fn(&Health) -> bool| -> Vec<(usize, u32)> {
        members
            .iter()
            .filter(|&&i| keep(&snapshot.upstream(i).health))
            .map(|&i| (i, snapshot.provider(i).weight))
            .collect()
    };
    let mut available = weighted_by(&|h| h.available_at(now));
    if available.is_empty() {
        available = weighted_by(&|h| !h.parked_at(now));
    }
    // Endpoints this request has not tried yet (all of them on a first attempt).
    if !tried.is_empty() {
        let fresh: Vec<(usize, u32)> = available
            .iter()
            .copied()
            .filter(|(i, _)| !tried.contains(i))
            .collect();
        if !fresh.is_empty() {
            available = fresh;
        }
    }
    let n = snapshot
        .rotation
        .get(gid)
        .map_or(0, |r| r.fetch_add(1, Ordering::Relaxed));
    match (affinity_key, snapshot.resolver.group(gid).lb_policy) {
        (Some(key), _) => affinity(&available, key, |i| snapshot.provider(i).name.clone()),
        (None, LbPolicy::LeastRequests) => {
            least_requests(&available, n, |i| snapshot.upstream(i).health.in_flight())
        }
        _ => weighted(&available, n),
    }
}

/// How long until an endpoint of group `gid` takes requests again.
pub fn next_available(snapshot: &Snapshot, gid: usize) -> Option<Duration> {
    let soonest = snapshot
        .resolver
        .group(gid)
        .members
        .iter()
        .map(|&i| snapshot.upstream(i).health.unavailable_until())
        .min()?;
    Some(Duration::from_millis(
        soonest.saturating_sub(health::now_ms()),
    ))
}

/// What selection offers the attempt plan for group `gid`.
pub fn offer(snapshot: &Snapshot, gid: usize, tried: &[usize], affinity_key: Option<&str>) -> Pick {
    if let Some(p) = pick(snapshot, gid, tried, affinity_key) {
        return Pick::Now(p);
    }
    match next_available(snapshot, gid) {
        Some(wait) if !wait.is_zero() => Pick::After(wait),
        _ => Pick::Nothing,
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
}
