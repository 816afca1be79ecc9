//! Preference routing (Plano's `routing_preferences`): a small router model reads the
//! conversation and picks the route whose description fits; the route's models serve the
//! request, in order. The router is asked through the proxy phase like any request (a
//! subrequest to the router's provider: its auth, TLS, pool, retries and upstream metrics), and
//! routing fails open: a router that errs, answers late or answers nonsense leaves the request
//! on the model the client asked for.
//!
//! A session (`X-Model-Affinity`) keeps its first decision for `routing.session_ttl_seconds`,
//! and the same question is not asked twice within a minute (`Recall`). `question` is what a
//! request asks, `prompt` how the router is asked and how its answer is read, `turn` whose turn
//! it is (`route_on_user_only`), `feeds` the cost and latency figures routes are ranked by, and
//! `memory` the bounded, expiring store.

pub mod choose;
pub mod feeds;
pub mod memory;
pub mod prompt;
pub mod question;
pub mod turn;

use memory::Memory;
pub use question::{question_of, Question};

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;

use crate::config::{Config, Prefer, Routing, RoutingPreference};
use crate::exchange::Exchange;
use crate::intake::{self, Request};
use crate::metrics::UpstreamErrorClass;
use crate::state::Snapshot;
use crate::subrequest;
use crate::translate::Api;

/// The response header that names the route taken and why.
pub const HEADER: &str = "x-switchyard-route";

/// The router of a config: its provider, the template it was trained on, its token budget.
#[derive(Debug, Clone)]
pub struct Router {
    /// The router provider's name: what the router request asks for.
    pub model: String,
    pub form: prompt::Form,
    pub budget: usize,
    /// How long it may take (`routing.router_timeout`).
    pub timeout: Duration,
}

impl Router {
    /// `None` when no provider serves the config's router model.
    pub fn of(config: &Config) -> Option<Router> {
        let provider = config.router_provider()?;
        let form = prompt::Form::for_model(&provider.id);
        Some(Router {
            model: provider.name.clone(),
            form,
            budget: config
                .overrides
                .orchestrator_model_context_length
                .unwrap_or_else(|| form.default_context_length()),
            timeout: config.routing.router_timeout,
        })
    }
}

/// What the router decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A route: its name, its models as configured and how to order them.
    Route {
        name: String,
        models: Vec<String>,
        prefer: Prefer,
    },
    /// The router saw no fitting route: the client's model serves.
    NoRoute,
    /// The router failed (why): the client's model serves.
    FailedOpen(&'static str),
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The router was asked.
    Router,
    /// The same question was answered a moment ago.
    Cache,
    /// The session (`X-Model-Affinity`) is pinned to its first decision.
    Pinned,
    /// Not the user's turn (`route_on_user_only`): the conversation's last decision.
    Replayed,
}

impl Decision {
    /// For the access log and the response header: the route and why.
    pub fn describe(&self, source: Source) -> String {
        let why = match source {
            Source::Router => "router",
            Source::Cache => "cache",
            Source::Pinned => "pinned",
            Source::Replayed => "replayed",
        };
        match self {
            Decision::Route { name, .. } => format!("{name} ({why})"),
            Decision::NoRoute => format!("none ({why})"),
            Decision::FailedOpen(cause) => format!("none (fail-open: {cause})"),
        }
    }

    /// The `route` metric label: a configured route name or `none`.
    pub fn route_label(&self) -> &str {
        match self {
            Decision::Route { name, .. } => name,
            _ => "none",
        }
    }

    /// The `outcome` metric label.
    pub fn outcome_label(&self, source: Source) -> &'static str {
        match (source, self) {
            (Source::Pinned, _) => "pinned",
            (Source::Cache, _) => "cache",
            (Source::Replayed, _) => "replayed",
            (Source::Router, Decision::Route { .. }) => "routed",
            (Source::Router, Decision::NoRoute) => "no_route",
            (Source::Router, Decision::FailedOpen(_)) => "failed_open",
        }
    }
}

/// What the router remembers across requests: session pins and recent answers.
pub struct Recall {
    pub pins: Memory<String, Decision>,
    pub answers: Memory<u64, Decision>,
    /// Each conversation's last decision, for `route_on_user_only`.
    pub last: Memory<String, Decision>,
    settings: Routing,
}

impl Recall {
    pub fn new(settings: &Routing) -> Recall {
        Recall {
            pins: Memory::new(settings.session_ttl, settings.session_max_entries),
            answers: Memory::new(ANSWER_TTL, settings.session_max_entries),
            last: Memory::new(settings.session_ttl, settings.session_max_entries),
            settings: settings.clone(),
        }
    }

    /// Whether this memory was made for `settings` (a reload may change them).
    pub fn is_for(&self, settings: &Routing) -> bool {
        &self.settings == settings
    }

    /// The session a request belongs to: its `X-Model-Affinity`, scoped by the tenant header
    /// when one is configured.
    pub fn session_of(&self, req: &pingora::http::RequestHeader) -> Option<String> {
        let id = intake::affinity(req)?;
        Some(format!("{}\u{1f}{id}", self.tenant_of(req)))
    }

    /// The conversation a request continues, for `route_on_user_only`: its session, or the
    /// key its prefix hashes to (`turn`), scoped by the tenant header.
    pub fn conversation_of(
        &self,
        req: &pingora::http::RequestHeader,
        question: &Question,
    ) -> Option<String> {
        self.session_of(req).or_else(|| {
            question
                .conversation
                .map(|h| format!("{}\u{1f}~{h:016x}", self.tenant_of(req)))
        })
    }

    /// What is already decided for a request, without asking: its session's pin, or, when the
    /// user is not speaking (`route_on_user_only`), its conversation's last decision.
    pub fn known(
        &self,
        req: &pingora::http::RequestHeader,
        question: &Question,
        now: Instant,
    ) -> Option<(Decision, Source)> {
        if let Some(d) = self.session_of(req).and_then(|s| self.pins.get(&s, now)) {
            return Some((d, Source::Pinned));
        }
        if question.user_turn {
            return None;
        }
        let d = self.last.get(&self.conversation_of(req, question)?, now)?;
        Some((d, Source::Replayed))
    }

    /// Keeps a decision about `question`: as the session's pin and the conversation's last
    /// decision, and, when the router was just asked (as `asked`), for the same question.
    pub fn remember(
        &self,
        req: &pingora::http::RequestHeader,
        question: &Question,
        asked: Option<u64>,
        decision: &Decision,
    ) {
        let now = Instant::now();
        if let Some(key) = asked {
            self.answers.insert(key, decision.clone(), now);
        }
        if let Some(session) = self.session_of(req) {
            self.pins.insert(session, decision.clone(), now);
        }
        if self.settings.route_on_user_only {
            if let Some(conversation) = self.conversation_of(req, question) {
                self.last.insert(conversation, decision.clone(), now);
            }
        }
    }

    fn tenant_of<'r>(&self, req: &'r pingora::http::RequestHeader) -> &'r str {
        self.settings
            .tenant_header
            .as_deref()
            .and_then(|h| req.headers.get(h))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// How long the router's answer to one exact question is reused.
const ANSWER_TTL: Duration = Duration::from_secs(60);

/// Asks the router `prompt` about `prefs` through the proxy phase (a subrequest to its provider).
pub async fn ask(
    session: &mut Session,
    snapshot: &Arc<Snapshot>,
    router: &Router,
    prompt: String,
    prefs: &[RoutingPreference],
    request_id: &str,
) -> Decision {
    let body = prompt::request(&router.model, prompt).to_string();
    let x = Request::new(
        snapshot,
        Api::Chat,
        session.req_header(),
        request_id.to_owned(),
        Bytes::from(body),
    )
    .and_then(|request| Exchange::new(snapshot.clone(), request, &[]));
    let Ok(x) = x else {
        return Decision::FailedOpen("the router has no endpoint available");
    };
    let (x, answer) = subrequest::ask(session, Box::new(x), router.timeout).await;
    match answer {
        Ok(a) if (200..300).contains(&a.status) => read(&a.body, prefs),
        Ok(_) => Decision::FailedOpen("the router answered an error"),
        // The exchange knows why its attempts failed: no answer at all is not a broken one.
        Err(why) => Decision::FailedOpen(match x.and_then(|x| x.final_failure()) {
            Some(UpstreamErrorClass::Connect) => "the router could not be reached",
            Some(UpstreamErrorClass::Timeout) => "no answer in time",
            _ => why,
        }),
    }
}

/// A route's models in the order they are tried: as written, or by `prefer`. `cheapest`: the
/// providers' own `cost`, else a cost feed's price; `fastest`: a latency feed's figures when one
/// has answered, else the latency the gateway observed from the model's endpoints. Models with
/// no figure keep their order, after those with one.
pub fn rank(
    models: &[String],
    prefer: Prefer,
    snapshot: &Snapshot,
    figures: &feeds::Figures,
) -> Vec<String> {
    let fed_latency = prefer == Prefer::Fastest && figures.has_latency();
    let figure = |model: &String| -> Option<f64> {
        let route = snapshot
            .resolver
            .resolve(&snapshot.config.providers, Some(model))
            .ok()?;
        let members = &snapshot.resolver.group(route.group).members;
        let figures = members.iter().filter_map(|&p| {
            let provider = snapshot.provider(p);
            // The names a feed may know the model by: as the route writes it, then as the
            // provider does.
            let names = [
                model.as_str(),
                &provider.model,
                &provider.name,
                &provider.id,
            ];
            match prefer {
                Prefer::Cheapest => provider.cost.or_else(|| figures.cost(&names)),
                Prefer::Fastest if fed_latency => figures.latency(&names),
                Prefer::Fastest => snapshot
                    .upstream(p)
                    .health
                    .latency()
                    .map(|d| d.as_secs_f64()),
                Prefer::None | Prefer::Random => None,
            }
        });
        figures.reduce(f64::min)
    };
    if prefer == Prefer::Random {
        return shuffled(models, random_seed());
    }
    let mut ranked: Vec<(Option<f64>, &String)> = models.iter().map(|m| (figure(m), m)).collect();
    if prefer != Prefer::None {
        // Stable: equal figures, and models without one, keep their written order.
        ranked.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
    ranked.into_iter().map(|(_, m)| m.clone()).collect()
}

/// `models` in an order drawn from `seed` (Fisher-Yates with xorshift64).
fn shuffled(models: &[String], seed: u64) -> Vec<String> {
    let mut out = models.to_vec();
    let mut x = seed | 1;
    for i in (1..out.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.swap(i, (x % (i as u64 + 1)) as usize);
    }
    out
}

/// A seed that differs from request to request.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// The decision in a router's chat completion.
fn read(answer: &[u8], prefs: &[RoutingPreference]) -> Decision {
    let Ok(v) = serde_json::from_slice::<Value>(answer) else {
        return Decision::FailedOpen("the router's answer is not JSON");
    };
    // No choices at all: the router chose nothing (as Plano reads it).
    let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) else {
        return Decision::NoRoute;
    };
    let content = choice["message"]["content"].as_str().unwrap_or_default();
    let Some(names) = prompt::routes_in(content) else {
        return Decision::FailedOpen("the router's answer names no route");
    };
    // The first named route that exists wins; unknown names are no route.
    names
        .iter()
        .find_map(|name| prefs.iter().find(|p| &p.name == name))
        .map_or(Decision::NoRoute, |p| Decision::Route {
            name: p.name.clone(),
            models: p.models.clone(),
            prefer: p.prefer,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoutingPreference;

    fn prefs() -> Vec<RoutingPreference> {
        vec![
            RoutingPreference {
                name: "quick tasks".into(),
                description: "short questions".into(),
                models: vec!["openai/gpt-4o-mini".into()],
                prefer: Prefer::None,
            },
            RoutingPreference {
                name: "long context".into(),
                description: "long documents".into(),
                models: vec!["vllm/llama".into(), "openai/gpt-4o".into()],
                prefer: Prefer::None,
            },
        ]
    }

    fn answer(content: &str) -> Vec<u8> {
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_named_route_is_taken_with_its_models_in_order() {
        assert_eq!(
            read(&answer(r#"{"route": ["long context"]}"#), &prefs()),
            Decision::Route {
                name: "long context".into(),
                models: vec!["vllm/llama".into(), "openai/gpt-4o".into()],
                prefer: Prefer::None,
            }
        );
        assert_eq!(
            read(&answer(r#"{"route": "quick tasks"}"#), &prefs()),
            Decision::Route {
                name: "quick tasks".into(),
                models: vec!["openai/gpt-4o-mini".into()],
                prefer: Prefer::None,
            }
        );
    }

    #[test]
    fn unknown_empty_and_other_routes_are_no_route() {
        for content in [
            r#"{"route": ["poetry"]}"#,
            r#"{"route": []}"#,
            r#"{"route": "other"}"#,
        ] {
            assert_eq!(
                read(&answer(content), &prefs()),
                Decision::NoRoute,
                "{content}"
            );
        }
        assert_eq!(read(br#"{"choices": []}"#, &prefs()), Decision::NoRoute);
    }

    #[test]
    fn random_order_is_a_shuffle_that_changes_with_the_seed() {
        let models: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
        let orders: std::collections::HashSet<Vec<String>> = (0..20u64)
            .map(|seed| shuffled(&models, seed * 7919))
            .collect();
        assert!(orders.len() > 5, "{orders:?}");
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, models, "every model once");
        }
    }

    #[test]
    fn a_routes_models_are_ranked_by_cost_or_observed_latency() {
        let config = Config::from_yaml(
            "model_providers:\n  - {model: openai/a, access_key: k, cost: {input_per_million: 5, output_per_million: 15}}\n  - {model: openai/b, access_key: k}\n  - {model: openai/c, access_key: k, cost: {input_per_million: 0.15, output_per_million: 0.6}}\n",
            &|_| None,
        )
        .unwrap();
        let snapshot = Snapshot::new(config);
        let models: Vec<String> = ["openai/a", "openai/b", "openai/c"]
            .map(String::from)
            .to_vec();
        let figures = feeds::Figures::default();
        let rank = |prefer| rank(&models, prefer, &snapshot, &figures);
        assert_eq!(rank(Prefer::None), models);
        assert_eq!(rank(Prefer::Cheapest), ["openai/c", "openai/a", "openai/b"]);
        // No latency seen yet: the written order.
        assert_eq!(rank(Prefer::Fastest), models);
        snapshot
            .upstream(0)
            .health
            .observe_latency(Duration::from_millis(900));
        snapshot
            .upstream(1)
            .health
            .observe_latency(Duration::from_millis(200));
        assert_eq!(rank(Prefer::Fastest), ["openai/b", "openai/a", "openai/c"]);
    }

    #[test]
    fn an_unreadable_answer_fails_open() {
        assert!(matches!(read(b"<html>", &prefs()), Decision::FailedOpen(_)));
        assert!(matches!(
            read(&answer("I think quick"), &prefs()),
            Decision::FailedOpen(_)
        ));
    }
}
