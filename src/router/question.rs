//! What one request asks the router: its conversation and the routes to choose from (the
//! config's `routing_preferences`, or the request's own, or archgw's metadata), found with as
//! little reading of the body as possible.

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;
use log::debug;
use serde_json::Value;

use super::{prompt, turn, Router};
use crate::config::{Prefer, RoutingPreference};
use crate::error::GatewayError;
use crate::state::Snapshot;

/// What the router is asked about one request: its conversation and the routes to choose from.
pub struct Question {
    pub messages: Value,
    /// The request's own `routing_preferences`, else the config's.
    pub prefs: Vec<RoutingPreference>,
    /// The body to send on, when the request carried preferences (they never go upstream).
    pub body: Option<Bytes>,
    /// With `route_on_user_only`: whether the user speaks in this request, and the
    /// conversation it continues (when it has no `X-Model-Affinity`).
    pub user_turn: bool,
    pub conversation: Option<u64>,
}

/// The question a request body asks, if the router runs for it: it has messages, and
/// preferences in the body or the config (with a router to ask). A request's own preferences
/// must name configured models. The body is read as JSON only when there can be a question, or
/// something in it that must not go upstream: the request path of a gateway without routing
/// pays one byte search.
///
/// `model` is the model the client asked for: switchyard's `routing.only_for` may limit the
/// config's preferences to some models (a request's own preferences always apply).
pub fn question_of(
    body: &Bytes,
    snapshot: &Snapshot,
    routed: bool,
    model: Option<&str>,
) -> Result<Option<Question>, GatewayError> {
    let own_prefs = contains(body, b"\"routing_preferences\"");
    let legacy = contains(body, b"_preference_config\"");
    let config_prefs = if snapshot.config.routing.applies_to(model) {
        &snapshot.config.routing_preferences[..]
    } else {
        &[]
    };
    let configured = routed && !config_prefs.is_empty();
    if !own_prefs && !legacy && !configured {
        return Ok(None);
    }
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let own = request
        .as_object_mut()
        .and_then(|o| o.remove("routing_preferences"));
    // Plano removes its own per-request preference metadata before forwarding; archgw's
    // (`archgw_preference_config`) also chose the routes for the request.
    let mut cleaned = own.is_some();
    let mut archgw = None;
    if let Some(meta) = request.get_mut("metadata").and_then(Value::as_object_mut) {
        archgw = meta.remove("archgw_preference_config");
        cleaned |= archgw.is_some();
        cleaned |= meta.remove("plano_preference_config").is_some();
    }
    let stripped = cleaned.then(|| Bytes::from(request.to_string()));
    let prefs = match (own, archgw) {
        (Some(list), _) => request_preferences(&list, snapshot, "routing_preferences")?,
        // As archgw: its routes replace the config's, but fewer than two of them with none
        // configured are not worth asking about.
        (None, Some(archgw)) => match archgw_preferences(&archgw, snapshot) {
            Some(prefs) if prefs.len() < 2 && config_prefs.is_empty() => Vec::new(),
            Some(prefs) => prefs,
            None => config_prefs.to_vec(),
        },
        (None, None) => config_prefs.to_vec(),
    };
    let messages = request
        .get_mut("messages")
        .map(Value::take)
        .unwrap_or_default();
    if !routed || prefs.is_empty() || messages.as_array().is_none_or(|a| a.is_empty()) {
        return Ok(stripped.map(|body| Question {
            messages: Value::Null,
            prefs: Vec::new(),
            body: Some(body),
            user_turn: true,
            conversation: None,
        }));
    }
    let (user_turn, conversation) = if snapshot.config.routing.route_on_user_only {
        (
            turn::is_user_turn(&messages),
            turn::conversation_of(&request, &messages),
        )
    } else {
        (true, None)
    };
    Ok(Some(Question {
        messages,
        prefs,
        body: stripped,
        user_turn,
        conversation,
    }))
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

impl Question {
    /// Whether the router runs (a body with preferences but no conversation only sheds them).
    pub fn asks(&self) -> bool {
        !self.prefs.is_empty()
    }

    /// The router's prompt.
    pub fn prompt(&self, router: &Router) -> String {
        let routes: Vec<prompt::Route<'_>> = self
            .prefs
            .iter()
            .map(|p| prompt::Route {
                name: &p.name,
                description: &p.description,
            })
            .collect();
        prompt::prompt(router.form, &routes, &self.messages, router.budget)
    }

    /// Where the request stands in its conversation, for recall.
    pub fn thread(&self) -> super::recall::Thread {
        super::recall::Thread {
            user_turn: self.user_turn,
            conversation: self.conversation,
        }
    }

    /// A short key for the question (the cache keeps no prompt text), found without building
    /// the prompt: the router, the routes whole, and the turns the router is shown
    /// (`prompt::turns`, of which the prompt is a function).
    pub fn key(&self, router: &Router) -> u64 {
        let mut h = DefaultHasher::new();
        router.model.hash(&mut h);
        router.budget.hash(&mut h);
        for p in &self.prefs {
            (&p.name, &p.description, &p.models).hash(&mut h);
        }
        prompt::turns(&self.messages, router.form).hash(&mut h);
        h.finish()
    }
}

/// A request's `routing_preferences` (Plano's routing API): `name`, `description`, `models`.
/// `field` names where they came from, for errors.
fn request_preferences(
    list: &Value,
    snapshot: &Snapshot,
    field: &str,
) -> Result<Vec<RoutingPreference>, GatewayError> {
    let bad = |why: String| GatewayError::InvalidBody(format!("{field}: {why}"));
    let items = list
        .as_array()
        .ok_or_else(|| bad("expected a list".into()))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = |key: &str| {
            item.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("[{i}].{key} must be a string")))
        };
        let (name, description) = (text("name")?, text("description")?);
        let models: Vec<String> = item
            .get("models")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if models.is_empty() {
            return Err(bad(format!("[{i}].models must list at least one model")));
        }
        if let Some(unknown) = models.iter().find(|m| {
            snapshot
                .resolver
                .resolve(&snapshot.config.providers, Some(m.as_str()))
                .is_err()
        }) {
            return Err(bad(format!(
                "[{i}].models: `{unknown}` is not a configured model"
            )));
        }
        let prefer = match item["selection_policy"]["prefer"].as_str() {
            None => Prefer::None,
            Some(name) => Prefer::from_name(name).ok_or_else(|| {
                bad(format!(
                    "[{i}].selection_policy.prefer: unknown `{name}`; expected {}",
                    Prefer::NAMES
                ))
            })?,
        };
        out.push(RoutingPreference {
            name,
            description,
            models,
            prefer,
        });
    }
    Ok(out)
}

/// archgw's per-request routes, `metadata.archgw_preference_config`: a list (or the YAML text
/// of one) of `{model, routing_preferences: [{name, description}]}`. A route named under several
/// models serves them in the order given, as the config's inline preferences do. As archgw did,
/// a value it cannot use (Plano today only strips it) is ignored: `None`.
fn archgw_preferences(value: &Value, snapshot: &Snapshot) -> Option<Vec<RoutingPreference>> {
    let parsed;
    let list = match value {
        Value::String(text) => {
            parsed = client_yaml(text).ok()?;
            &parsed
        }
        other => other,
    };
    let mut routes: Vec<Value> = Vec::new();
    for item in list.as_array()? {
        let model = item["model"].as_str()?;
        for pref in item["routing_preferences"].as_array()? {
            let name = &pref["name"];
            match routes.iter_mut().find(|r| &r["name"] == name) {
                Some(route) => route["models"].as_array_mut()?.push(model.into()),
                None => routes.push(serde_json::json!({
                    "name": name, "description": pref["description"], "models": [model],
                })),
            }
        }
    }
    match request_preferences(&Value::Array(routes), snapshot, "archgw_preference_config") {
        Ok(prefs) => Some(prefs),
        Err(e) => {
            debug!("ignored: {e}");
            None
        }
    }
}

/// YAML from a client. Route lists are small, so it gets a small budget: an alias bomb is
/// refused after a few thousand events instead of replaying the parser's default million.
fn client_yaml(text: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(1 << 20),
            max_events: 20_000,
            max_nodes: 10_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 5_000,
        },
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_follows_what_the_router_would_see() {
        let router = Router {
            model: "plano/Arch-Router".into(),
            form: prompt::Form::for_model("Arch-Router"),
            budget: 2048,
            timeout: std::time::Duration::from_secs(2),
        };
        let pref = |models: &[&str]| RoutingPreference {
            name: "code".into(),
            description: "writing code".into(),
            models: models.iter().map(|m| m.to_string()).collect(),
            prefer: Prefer::None,
        };
        let q = |messages: Value, models: &[&str]| Question {
            messages,
            prefs: vec![pref(models)],
            body: None,
            user_turn: true,
            conversation: None,
        };
        let user = serde_json::json!({"role": "user", "content": "write quicksort"});
        let key = q(serde_json::json!([user]), &["a"]).key(&router);
        // System and tool messages are not shown to the router: the same question.
        let with_system = serde_json::json!([{"role": "system", "content": "be brief"}, user]);
        assert_eq!(q(with_system, &["a"]).key(&router), key);
        // Arch-Router is shown developer messages (Plano-Orchestrator is not): for it they
        // make another question.
        let with_developer = serde_json::json!([{"role": "developer", "content": "terse"}, user]);
        assert_ne!(q(with_developer.clone(), &["a"]).key(&router), key);
        let orchestrator = Router {
            form: prompt::Form::for_model("Plano-Orchestrator"),
            ..router.clone()
        };
        assert_eq!(
            q(with_developer, &["a"]).key(&orchestrator),
            q(serde_json::json!([user]), &["a"]).key(&orchestrator)
        );
        // Other words, or other models behind the same route: another question.
        let other = serde_json::json!([{"role": "user", "content": "write mergesort"}]);
        assert_ne!(q(other, &["a"]).key(&router), key);
        assert_ne!(q(serde_json::json!([user]), &["b"]).key(&router), key);
    }

    /// A client's YAML gets a small budget: an alias expansion the parser would allow by
    /// default (here 27,000 replayed nodes; a bomb goes to a million before its default stops
    /// it, seconds of CPU per request) is refused.
    #[test]
    fn a_clients_yaml_may_not_expand_aliases_without_bound() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..3 {
            let refs = vec![format!("*a{}", i - 1); 30].join(", ");
            yaml.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        assert!(
            serde_saphyr::from_str::<Value>(&yaml).is_ok(),
            "the default allows it"
        );
        assert!(client_yaml(&yaml).is_err());
        // A route list passes.
        let routes =
            "- model: openai/gpt-4o\n  routing_preferences:\n    - {name: a, description: b}\n";
        assert!(client_yaml(routes).is_ok());
    }
}
