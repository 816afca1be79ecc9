//! The attempt plan: which routing group each attempt goes to, whether a failed attempt is tried
//! again, and after how long.
//!
//! A request is planned in stages: the group its model routed to, then that group's fallbacks in
//! order. Each stage allows `retry.attempts` attempts under the policy of its first endpoint.
//! A failure moves on only while nothing has reached the client (the caller's concern) and the
//! stage's policy retries that kind of failure; when a stage is spent or has no endpoint to
//! offer, the next stage takes over at once.
//!
//! Pure: no I/O and no clock. Endpoint selection comes in as a closure (`pick`), the jitter as
//! a number, so every decision is unit-tested below.

use std::time::Duration;

use crate::config::{Provider, Retry};
use crate::metrics::UpstreamErrorClass;
use crate::resolve::Resolver;

/// One stage of the plan: a routing group and the policy its attempts follow.
#[derive(Debug, Clone)]
pub struct Stage {
    pub group: usize,
    /// The model id the upstream is asked for in this stage.
    pub model: String,
    pub policy: Retry,
}

/// The stages of a request's plan: the `lead` group, asked for `model`; then `then` (a
/// preference route's other models), then the lead's fallbacks; each group once, each with its
/// own policy and asked for its first entry's id.
pub fn stages(
    routes: &Resolver,
    providers: &[Provider],
    lead: usize,
    model: String,
    then: &[usize],
) -> Vec<Stage> {
    let mut chain: Vec<usize> = Vec::new();
    let groups = std::iter::once(lead)
        .chain(then.iter().copied())
        .chain(routes.group(lead).fallbacks.iter().copied());
    for gid in groups {
        if !chain.contains(&gid) {
            chain.push(gid);
        }
    }
    chain
        .into_iter()
        .filter_map(|gid| {
            let group = routes.group(gid);
            let first = providers.get(*group.members.first()?)?;
            Some(Stage {
                group: gid,
                model: if gid == lead {
                    model.clone()
                } else {
                    first.id.clone()
                },
                policy: group.retry.clone(),
            })
        })
        .collect()
}

/// What went wrong with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection (refused, unreachable, TLS handshake, no address).
    Connect,
    /// No answer in time.
    Timeout,
    /// The upstream answered with this status (429 or 5xx when retried).
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The exchange broke off after connecting, before any of it reached the client.
    Protocol,
}

impl Failure {
    pub fn class(self) -> UpstreamErrorClass {
        match self {
            Failure::Connect => UpstreamErrorClass::Connect,
            Failure::Timeout => UpstreamErrorClass::Timeout,
            Failure::Status { status, .. } => {
                UpstreamErrorClass::of_status(status).unwrap_or(UpstreamErrorClass::Status4xx)
            }
            Failure::Protocol => UpstreamErrorClass::Protocol,
        }
    }

    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => retry_after,
            _ => None,
        }
    }

    /// Whether `policy` tries this kind of failure again.
    fn retried_by(self, policy: &Retry) -> bool {
        match self {
            Failure::Connect | Failure::Protocol => policy.on_connect,
            Failure::Timeout => policy.on_timeout,
            Failure::Status { status: 429, .. } => policy.on_429,
            Failure::Status { status, .. } => status >= 500 && policy.on_5xx,
        }
    }

    /// Whether an answer with `status` is a failure `policy` retries.
    pub fn retried_status(status: u16, policy: &Retry) -> bool {
        Failure::Status {
            status,
            retry_after: None,
        }
        .retried_by(policy)
    }
}

/// What endpoint selection offers for a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// This endpoint (provider index).
    Now(usize),
    /// None right now; one takes requests again after this long (parked or ejected).
    After(Duration),
    /// None.
    Nothing,
}

/// The next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// The endpoint, or `None` to pick one after `wait` (an endpoint parked for that long).
    pub endpoint: Option<usize>,
    /// How long to wait first (backoff, or a `retry-after` being honoured).
    pub wait: Duration,
    /// Set when the attempt moves to a fallback: the stages it leaves and enters.
    pub failover: Option<(usize, usize)>,
}

/// The plan of one request.
#[derive(Debug)]
pub struct Plan {
    stages: Vec<Stage>,
    stage: usize,
    /// Attempts made in the current stage.
    made: u32,
    /// Endpoints tried in the current stage.
    tried: Vec<usize>,
    /// Attempts made in all, and the most the process allows.
    total: u32,
    max_total: u32,
}

impl Plan {
    /// A plan over `stages` (never empty: the routed group comes first) that makes at most
    /// `max_total` attempts in all.
    pub fn new(stages: Vec<Stage>, max_total: u32) -> Plan {
        Plan {
            stages,
            stage: 0,
            made: 0,
            tried: Vec::new(),
            total: 0,
            max_total,
        }
    }

    pub fn stage(&self) -> &Stage {
        &self.stages[self.stage]
    }

    pub fn stage_at(&self, i: usize) -> &Stage {
        &self.stages[i]
    }

    /// Endpoints tried in the current stage.
    pub fn tried(&self) -> &[usize] {
        &self.tried
    }

    /// The first attempt: the routed group's pick, else the first fallback that has one.
    pub fn first(&mut self, mut pick: impl FnMut(&Stage, &[usize]) -> Pick) -> Option<Next> {
        for i in 0..self.stages.len() {
            if let Pick::Now(endpoint) = pick(&self.stages[i], &[]) {
                let failover = (i > 0).then_some((0, i));
                self.enter(i);
                return Some(Next {
                    endpoint: Some(endpoint),
                    wait: Duration::ZERO,
                    failover,
                });
            }
        }
        None
    }

    /// Records an attempt sent to `endpoint`.
    pub fn started(&mut self, endpoint: usize) {
        self.made += 1;
        self.total += 1;
        self.tried.push(endpoint);
    }

    /// After an attempt failed without anything reaching the client: the next attempt, if the
    /// policy allows one and an endpoint can take it. `jitter` in [0, 1) scales the backoff.
    pub fn after(
        &mut self,
        failure: Failure,
        jitter: f64,
        mut pick: impl FnMut(&Stage, &[usize]) -> Pick,
    ) -> Option<Next> {
        if self.total >= self.max_total || !failure.retried_by(&self.stage().policy) {
            return None;
        }
        // Another attempt in this stage, after the backoff.
        let policy = &self.stages[self.stage].policy;
        if self.made < policy.attempts {
            let backoff = backoff(policy, self.made, jitter);
            match pick(&self.stages[self.stage], &self.tried) {
                Pick::Now(endpoint) => {
                    return Some(Next {
                        endpoint: Some(endpoint),
                        wait: backoff,
                        failover: None,
                    })
                }
                Pick::After(wait) if honoured(failure, policy, wait) => {
                    return Some(Next {
                        endpoint: None,
                        wait: wait.max(backoff),
                        failover: None,
                    })
                }
                _ => {}
            }
        }
        // The next fallback that can take it, at once.
        let from = self.stage;
        for i in from + 1..self.stages.len() {
            let found = match pick(&self.stages[i], &[]) {
                Pick::Now(endpoint) => Some((Some(endpoint), Duration::ZERO)),
                Pick::After(wait) if honoured(failure, &self.stages[i].policy, wait) => {
                    Some((None, wait))
                }
                _ => None,
            };
            if let Some((endpoint, wait)) = found {
                self.enter(i);
                return Some(Next {
                    endpoint,
                    wait,
                    failover: Some((from, i)),
                });
            }
        }
        None
    }

    fn enter(&mut self, stage: usize) {
        if stage != self.stage {
            self.stage = stage;
            self.made = 0;
            self.tried.clear();
        }
    }
}

/// A wait for a parked endpoint is worth it when the upstream asked for it (`retry-after`) and
/// both fit in the policy's longest backoff.
fn honoured(failure: Failure, policy: &Retry, wait: Duration) -> bool {
    failure
        .retry_after()
        .is_some_and(|ra| ra <= policy.backoff_max)
        && wait <= policy.backoff_max
}

/// Exponential backoff after `made` attempts (≥ 1) with full jitter: `base × 2^(made-1)`,
/// capped at `backoff_max`, scaled by `jitter` in [0, 1).
pub fn backoff(policy: &Retry, made: u32, jitter: f64) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(1 << made.saturating_sub(1).min(16))
        .min(policy.backoff_max);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32) -> Retry {
        Retry {
            attempts,
            ..Retry::default()
        }
    }

    fn stage(group: usize, attempts: u32) -> Stage {
        Stage {
            group,
            model: format!("m{group}"),
            policy: policy(attempts),
        }
    }

    /// Endpoint selection over fixed groups: group g has endpoints g*10, g*10+1, …; untried
    /// ones first, then any.
    fn picker(sizes: &[usize]) -> impl FnMut(&Stage, &[usize]) -> Pick + '_ {
        move |s: &Stage, tried: &[usize]| {
            let all: Vec<usize> = (0..sizes[s.group]).map(|i| s.group * 10 + i).collect();
            match all.iter().find(|e| !tried.contains(e)).or(all.first()) {
                Some(&e) => Pick::Now(e),
                None => Pick::Nothing,
            }
        }
    }

    const STATUS_500: Failure = Failure::Status {
        status: 500,
        retry_after: None,
    };

    /// Plan construction from a config: the lead, a route's other models, then the lead's
    /// fallbacks, each group once, each with the policy read once from its first entry.
    #[test]
    fn stages_follow_the_route_then_the_fallbacks_each_group_once() {
        let c = crate::config::Config::from_yaml(
            "listeners: [{name: llm, type: model, max_retries: 1}]\nmodel_providers:\n  - {model: openai/a, access_key: k, fallbacks: [openai/c, openai/b], retry: {attempts: 3, on: [5xx]}}\n  - {model: openai/a, access_key: k2}\n  - {model: openai/b, access_key: k}\n  - {model: openai/c, access_key: k}\n",
            &|_| None,
        )
        .unwrap();
        let routes = Resolver::new(&c.providers, &c.aliases, &c.listener);
        let group = |m: &str| routes.resolve(&c.providers, Some(m)).unwrap().group;
        let (a, b, cc) = (group("openai/a"), group("openai/b"), group("openai/c"));
        // A route [a, b]: b once, although it is also a's fallback.
        let plan = stages(&routes, &c.providers, a, "a".into(), &[b]);
        let got: Vec<(usize, &str, u32)> = plan
            .iter()
            .map(|s| (s.group, s.model.as_str(), s.policy.attempts))
            .collect();
        // a's own policy (3 attempts); b and c the listener's (max_retries 1: 2 attempts).
        assert_eq!(got, [(a, "a", 3), (b, "b", 2), (cc, "c", 2)]);
        assert!(plan[0].policy.on_5xx && !plan[0].policy.on_429);
        // No route: the lead and its fallbacks in their order.
        let plan = stages(&routes, &c.providers, a, "a".into(), &[]);
        let groups: Vec<usize> = plan.iter().map(|s| s.group).collect();
        assert_eq!(groups, [a, cc, b]);
        // Without any retry setting, one attempt per endpoint.
        let c = crate::config::Config::from_yaml(
            "model_providers:\n  - {model: openai/a, access_key: k}\n  - {model: openai/a, access_key: k2}\n",
            &|_| None,
        )
        .unwrap();
        let routes = Resolver::new(&c.providers, &c.aliases, &c.listener);
        let a = routes
            .resolve(&c.providers, Some("openai/a"))
            .unwrap()
            .group;
        assert_eq!(
            stages(&routes, &c.providers, a, "a".into(), &[])[0]
                .policy
                .attempts,
            2
        );
    }

    #[test]
    fn a_single_attempt_is_never_repeated() {
        let mut plan = Plan::new(vec![stage(0, 1)], 100);
        let next = plan.first(picker(&[1])).unwrap();
        assert_eq!(next.endpoint, Some(0));
        plan.started(0);
        assert_eq!(plan.after(Failure::Connect, 0.5, picker(&[1])), None);
    }

    #[test]
    fn attempts_go_to_untried_endpoints_with_growing_backoff() {
        let mut plan = Plan::new(vec![stage(0, 3)], 100);
        let first = plan.first(picker(&[3])).unwrap();
        assert_eq!((first.endpoint, first.wait), (Some(0), Duration::ZERO));
        plan.started(0);
        let second = plan.after(STATUS_500, 1.0, picker(&[3])).unwrap();
        assert_eq!(second.endpoint, Some(1));
        assert_eq!(second.wait, Duration::from_millis(100));
        plan.started(1);
        let third = plan.after(Failure::Timeout, 1.0, picker(&[3])).unwrap();
        assert_eq!(third.endpoint, Some(2));
        assert_eq!(third.wait, Duration::from_millis(200));
        plan.started(2);
        assert_eq!(plan.after(Failure::Timeout, 1.0, picker(&[3])), None);
    }

    #[test]
    fn failures_the_policy_does_not_retry_end_the_plan() {
        let mut plan = Plan::new(vec![stage(0, 3), stage(1, 1)], 100);
        plan.first(picker(&[3, 1]));
        plan.started(0);
        let client_error = Failure::Status {
            status: 400,
            retry_after: None,
        };
        assert_eq!(plan.after(client_error, 0.5, picker(&[3, 1])), None);
        let mut no_5xx = Plan::new(
            vec![Stage {
                policy: Retry {
                    on_5xx: false,
                    ..policy(3)
                },
                ..stage(0, 3)
            }],
            100,
        );
        no_5xx.first(picker(&[3]));
        no_5xx.started(0);
        assert_eq!(no_5xx.after(STATUS_500, 0.5, picker(&[3])), None);
        assert!(no_5xx.after(Failure::Connect, 0.5, picker(&[3])).is_some());
    }

    #[test]
    fn a_spent_stage_falls_back_at_once() {
        let mut plan = Plan::new(vec![stage(0, 1), stage(1, 2)], 100);
        plan.first(picker(&[1, 2]));
        plan.started(0);
        let next = plan.after(STATUS_500, 0.9, picker(&[1, 2])).unwrap();
        assert_eq!(next.endpoint, Some(10));
        assert_eq!(next.wait, Duration::ZERO);
        assert_eq!(next.failover, Some((0, 1)));
        assert_eq!(plan.stage().model, "m1");
        plan.started(10);
        // The fallback's own attempts follow.
        let next = plan.after(Failure::Connect, 0.0, picker(&[1, 2])).unwrap();
        assert_eq!((next.endpoint, next.failover), (Some(11), None));
        plan.started(11);
        assert_eq!(plan.after(Failure::Connect, 0.0, picker(&[1, 2])), None);
    }

    #[test]
    fn a_group_with_nothing_available_is_skipped() {
        let mut plan = Plan::new(vec![stage(0, 2), stage(1, 1)], 100);
        let parked = |s: &Stage, _: &[usize]| {
            if s.group == 0 {
                Pick::After(Duration::from_secs(30))
            } else {
                Pick::Now(10)
            }
        };
        let next = plan.first(parked).unwrap();
        assert_eq!((next.endpoint, next.failover), (Some(10), Some((0, 1))));
        let mut nothing = Plan::new(vec![stage(0, 2)], 100);
        assert_eq!(nothing.first(|_: &Stage, _: &[usize]| Pick::Nothing), None);
    }

    #[test]
    fn a_short_retry_after_is_waited_for_a_long_one_is_not() {
        let rate_limited = |secs| Failure::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        let parked_for = |d| move |_: &Stage, _: &[usize]| Pick::After(d);
        let mut plan = Plan::new(vec![stage(0, 2)], 100);
        plan.first(picker(&[1]));
        plan.started(0);
        let next = plan
            .after(rate_limited(1), 0.0, parked_for(Duration::from_secs(1)))
            .unwrap();
        assert_eq!(next.endpoint, None, "picked after the wait");
        assert_eq!(next.wait, Duration::from_secs(1));
        let mut plan = Plan::new(vec![stage(0, 2)], 100);
        plan.first(picker(&[1]));
        plan.started(0);
        // Beyond backoff_max (2 s): not waited for.
        assert_eq!(
            plan.after(rate_limited(7), 0.0, parked_for(Duration::from_secs(7))),
            None
        );
        // A parked endpoint without a retry-after from the upstream is not waited for either.
        assert_eq!(
            plan.after(STATUS_500, 0.0, parked_for(Duration::from_millis(10))),
            None
        );
    }

    #[test]
    fn the_process_wide_cap_bounds_every_plan() {
        let mut plan = Plan::new(vec![stage(0, 10)], 2);
        plan.first(picker(&[1]));
        plan.started(0);
        assert!(plan.after(Failure::Connect, 0.0, picker(&[1])).is_some());
        plan.started(0);
        assert_eq!(plan.after(Failure::Connect, 0.0, picker(&[1])), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = policy(10);
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(&p, 3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(&p, 30, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(&p, 3, 0.0), Duration::ZERO);
    }
}
