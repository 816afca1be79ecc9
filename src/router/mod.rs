//! Preference routing (Plano's `routing_preferences`): a small router model reads the
//! conversation and picks the route whose description fits; the route's models serve the
//! request, in order. The router is asked through the proxy phase like any request (a
//! subrequest to the router's provider: its auth, TLS, pool, retries and upstream metrics), and
//! routing fails open: a router that errs, answers late or answers nonsense leaves the request
//! on the model the client asked for.
//!
//! A session (`X-Model-Affinity`) keeps its first decision for `routing.session_ttl_seconds`,
//! and the same question is not asked twice within a minute (`Recall`). `prompt` is what the
//! router is asked and how its answer is read; `memory` the bounded, expiring store.

pub mod memory;
pub mod prompt;

use memory::Memory;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;

use crate::config::{Config, Routing};
use crate::exchange::Exchange;
use crate::state::Snapshot;
use crate::subrequest;
use crate::translate::Api;

/// The response header that names the route taken and why.
pub const HEADER: &str = "x-switchyard-route";

/// How long the router may take before the request goes on without it.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The router of a config: its provider, the template it was trained on, its token budget.
#[derive(Debug, Clone)]
pub struct Router {
    /// The router provider's name: what the router request asks for.
    pub model: String,
    pub form: prompt::Form,
    pub budget: usize,
}

impl Router {
    /// `None` when the config has no preferences or no provider serves its router model.
    pub fn of(config: &Config) -> Option<Router> {
        if config.routing_preferences.is_empty() {
            return None;
        }
        let provider = config.router_provider()?;
        let form = prompt::Form::for_model(&provider.id);
        Some(Router {
            model: provider.name.clone(),
            form,
            budget: config
                .overrides
                .orchestrator_model_context_length
                .unwrap_or_else(|| form.default_context_length()),
        })
    }
}

/// What the router decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A route: its name and models, in the order they are tried.
    Route { name: String, models: Vec<String> },
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
}

impl Decision {
    /// For the access log and the response header: the route and why.
    pub fn describe(&self, source: Source) -> String {
        let why = match source {
            Source::Router => "router",
            Source::Cache => "cache",
            Source::Pinned => "pinned",
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
    settings: Routing,
}

impl Recall {
    pub fn new(settings: &Routing) -> Recall {
        Recall {
            pins: Memory::new(settings.session_ttl, settings.session_max_entries),
            answers: Memory::new(ANSWER_TTL, settings.session_max_entries),
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
        let id = req.headers.get("x-model-affinity")?.to_str().ok()?;
        let tenant = self
            .settings
            .tenant_header
            .as_deref()
            .and_then(|h| req.headers.get(h))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Some(format!("{tenant}\u{1f}{id}"))
    }
}

/// How long the router's answer to one exact question is reused.
const ANSWER_TTL: Duration = Duration::from_secs(60);

/// The conversation of a request body, when it has one (the router runs only then).
pub fn messages_of(body: &Bytes) -> Option<Value> {
    let mut request: Value = serde_json::from_slice(body).ok()?;
    let messages = request.get_mut("messages")?.take();
    messages
        .as_array()
        .is_some_and(|a| !a.is_empty())
        .then_some(messages)
}

/// The question for the router: its prompt for these messages.
pub fn question(snapshot: &Snapshot, router: &Router, messages: &Value) -> String {
    let routes: Vec<prompt::Route<'_>> = snapshot
        .config
        .routing_preferences
        .iter()
        .map(|p| prompt::Route {
            name: &p.name,
            description: &p.description,
        })
        .collect();
    prompt::prompt(router.form, &routes, messages, router.budget)
}

/// A short key for a question (the decision cache keeps no prompt text).
pub fn key_of(question: &str) -> u64 {
    let mut h = DefaultHasher::new();
    question.hash(&mut h);
    h.finish()
}

/// Asks the router `question` through the proxy phase (a subrequest to its provider).
pub async fn ask(
    session: &mut Session,
    snapshot: &Arc<Snapshot>,
    router: &Router,
    question: String,
    request_id: &str,
) -> Decision {
    let body = prompt::request(&router.model, question).to_string();
    let x = match Exchange::route(
        snapshot.clone(),
        Api::Chat,
        session.req_header(),
        request_id.to_owned(),
        Bytes::from(body),
    ) {
        Ok(x) => x,
        Err(_) => return Decision::FailedOpen("the router has no endpoint available"),
    };
    let (_, answer) = subrequest::ask(session, Box::new(x), TIMEOUT).await;
    match answer {
        Ok(a) if (200..300).contains(&a.status) => {
            read(&a.body, &snapshot.config.routing_preferences)
        }
        Ok(_) => Decision::FailedOpen("the router answered an error"),
        Err(why) => Decision::FailedOpen(why),
    }
}

/// The decision in a router's chat completion.
fn read(answer: &[u8], prefs: &[crate::config::RoutingPreference]) -> Decision {
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
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Prefer, RoutingPreference};

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
                models: vec!["vllm/llama".into(), "openai/gpt-4o".into()]
            }
        );
        assert_eq!(
            read(&answer(r#"{"route": "quick tasks"}"#), &prefs()),
            Decision::Route {
                name: "quick tasks".into(),
                models: vec!["openai/gpt-4o-mini".into()]
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
    fn an_unreadable_answer_fails_open() {
        assert!(matches!(read(b"<html>", &prefs()), Decision::FailedOpen(_)));
        assert!(matches!(
            read(&answer("I think quick"), &prefs()),
            Decision::FailedOpen(_)
        ));
    }
}
