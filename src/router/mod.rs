//! Preference routing (Plano's `routing_preferences`): a small router model reads the
//! conversation and picks the route whose description fits; the route's models serve the
//! request, in order. The router is asked through the proxy phase like any request (a
//! subrequest to the router's provider: its auth, TLS, pool, retries and upstream metrics), and
//! routing fails open: a router that errs, answers late or answers nonsense leaves the request
//! on the model the client asked for.
//!
//! `prompt` is what the router is asked and how its answer is read; `memory` the bounded,
//! expiring store for session pins and cached decisions (not wired yet).

pub mod memory;
pub mod prompt;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;

use crate::config::Config;
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

impl Decision {
    /// For the access log and the response header.
    pub fn describe(&self) -> String {
        match self {
            Decision::Route { name, .. } => format!("{name} (router)"),
            Decision::NoRoute => "none (router)".to_owned(),
            Decision::FailedOpen(why) => format!("none (fail-open: {why})"),
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
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Decision::Route { .. } => "routed",
            Decision::NoRoute => "no_route",
            Decision::FailedOpen(_) => "failed_open",
        }
    }
}

/// Asks the router which route the request in `body` (the client's, in `api`'s shape) takes.
/// `None`: the router does not run for this request (no messages).
pub async fn decide(
    session: &mut Session,
    snapshot: &Arc<Snapshot>,
    router: &Router,
    body: &Bytes,
    request_id: &str,
) -> Option<Decision> {
    let request: Value = serde_json::from_slice(body).ok()?;
    let messages = request
        .get("messages")
        .filter(|m| m.as_array().is_some_and(|a| !a.is_empty()))?;
    let prefs = &snapshot.config.routing_preferences;
    let routes: Vec<prompt::Route<'_>> = prefs
        .iter()
        .map(|p| prompt::Route {
            name: &p.name,
            description: &p.description,
        })
        .collect();
    let text = prompt::prompt(router.form, &routes, messages, router.budget);
    let ask = prompt::request(&router.model, text).to_string();
    let x = match Exchange::route(
        snapshot.clone(),
        Api::Chat,
        session.req_header(),
        request_id.to_owned(),
        Bytes::from(ask),
    ) {
        Ok(x) => x,
        Err(_) => return Some(Decision::FailedOpen("the router has no endpoint available")),
    };
    let (_, answer) = subrequest::ask(session, Box::new(x), TIMEOUT).await;
    let answer = match answer {
        Ok(a) if (200..300).contains(&a.status) => a,
        Ok(_) => return Some(Decision::FailedOpen("the router answered an error")),
        Err(why) => return Some(Decision::FailedOpen(why)),
    };
    Some(read(&answer.body, prefs))
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
