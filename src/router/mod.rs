//! Preference routing (Plano's `routing_preferences`): a small router model reads the
//! conversation and picks the route whose description fits; the route's models serve the
//! request, in order. The router is asked through the proxy phase like any request (a
//! subrequest to the router's provider: its auth, TLS, pool, retries and upstream metrics), and
//! routing fails open: a router that errs, answers late or answers nonsense leaves the request
//! on the model the client asked for.
//!
//! A session (`X-Model-Affinity`) keeps its first decision for `routing.session_ttl_seconds`,
//! and the same question is not asked twice within a minute (`recall`). Here: the decision and
//! how the router is asked (`ask`). `choose` decides for a request and names the models it
//! leads to; `question` is what a request asks; `prompt` how the router is asked and how its
//! answer is read; `turn` whose turn it is (`route_on_user_only`); `rank` the order of a route's
//! models; `feeds` the cost and latency figures they are ranked by; `recall` what is remembered,
//! in `crate::memory`, the bounded, expiring store; `setup` the router of a config.

pub mod choose;
pub mod decision;
pub mod feeds;
pub mod prompt;
pub mod question;
mod rank;
pub mod recall;
pub mod setup;
pub mod turn;

pub use decision::{Decision, Source};
pub use question::{question_of, Question};
pub use rank::rank;
pub use recall::Recall;
pub use setup::Router;

use std::sync::Arc;

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;

use crate::config::RoutingPreference;
use crate::exchange::Exchange;
use crate::intake::Request;
use crate::metrics::UpstreamErrorClass;
use crate::state::Snapshot;
use crate::subrequest;
use crate::trace::wire::Spans;
use crate::trace::CallIds;
use crate::translate::Api;

/// The response header that names the route taken and why.
pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-switchyard-route");

/// Asks the router `prompt` about `prefs` through the proxy phase (a subrequest to its provider);
/// traced under `trace` when the request is, the call's spans.
pub async fn ask(
    session: &mut Session,
    snapshot: &Arc<Snapshot>,
    router: &Router,
    prompt: String,
    prefs: &[RoutingPreference],
    request_id: &str,
    trace: Option<CallIds>,
) -> (Decision, Option<Spans>) {
    let body = prompt::request(&router.model, prompt).to_string();
    let x = Request::new(
        snapshot,
        Api::Chat,
        session.req_header(),
        request_id.to_owned(),
        Bytes::from(body),
    )
    .and_then(|request| Exchange::new(snapshot.clone(), request, &[]));
    let Ok(mut x) = x else {
        let d = Decision::FailedOpen("the router has no endpoint available");
        return (d, None);
    };
    x.traced(trace);
    let (x, answer) = subrequest::ask(session, Box::new(x), router.timeout).await;
    let spans = x.as_ref().map(|x| {
        let error = x.upstream_error(None).map(UpstreamErrorClass::as_str);
        let mut spans = Spans::default();
        let ended = std::time::Instant::now();
        x.call_spans(error, &Default::default(), ended, &mut spans);
        spans
    });
    let decision = match answer {
        Ok(a) if (200..300).contains(&a.status) => read(&a.body, prefs),
        Ok(_) => Decision::FailedOpen("the router answered an error"),
        // The exchange knows why its attempts failed: no answer at all is not a broken one.
        Err(why) => Decision::FailedOpen(match x.and_then(|x| x.final_failure()) {
            Some(UpstreamErrorClass::Connect) => "the router could not be reached",
            Some(UpstreamErrorClass::Timeout) => "no answer in time",
            _ => why,
        }),
    };
    (decision, spans)
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
    fn an_unreadable_answer_fails_open() {
        assert!(matches!(read(b"<html>", &prefs()), Decision::FailedOpen(_)));
        assert!(matches!(
            read(&answer("I think quick"), &prefs()),
            Decision::FailedOpen(_)
        ));
    }
}
