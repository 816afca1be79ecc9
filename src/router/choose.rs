//! What preference routing decides for one request, taken in once (`intake::Request`): the
//! session's pin, the conversation's last decision while the user is not speaking, a recent
//! answer to the same question, or the router's; and the route's models in the order they are
//! tried. The exchange is built after this, once, on the models chosen here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::{json, Value};

use super::feeds::Figures;
use super::{ask, question_of, rank, Decision, Question, Router, Source};
use crate::error::GatewayError;
use crate::intake::Request;
use crate::metrics::Metrics;
use crate::session;
use crate::state::Snapshot;
use crate::trace::Trace;

/// What preference routing chose for a request.
#[derive(Debug, Default)]
pub struct Choice {
    /// The models to serve it, in order; empty: the client's model.
    pub models: Vec<String>,
    /// The body without the client's own routing preferences, when it sent some (they never
    /// go upstream).
    pub body: Option<Bytes>,
    /// The route and why (`long context (router)`), when preferences applied.
    pub route: Option<String>,
    /// How long deciding took (the router's time, not the gateway's own).
    pub took: Duration,
}

/// Preference routing with what it needs: the request's snapshot (routes, the router, its
/// memory), the cost and latency figures, the metrics it counts decisions in.
pub struct Preferences<'a> {
    pub snapshot: &'a Arc<Snapshot>,
    pub figures: &'a Figures,
    pub metrics: &'a Arc<Metrics>,
}

impl Preferences<'_> {
    /// Preference routing for `request`: the route's models take it when the router names one
    /// (or named one for this session, or for this very question a moment ago); otherwise, and
    /// whenever the router fails, the client's model keeps it.
    pub async fn choose(
        &self,
        session: &mut Session,
        request: &Request,
        trace: Option<&mut Trace>,
    ) -> Result<Choice, GatewayError> {
        let started = Instant::now();
        let Some(question) = self.question(request)? else {
            return Ok(Choice::default());
        };
        let mut choice = Choice {
            body: question.body.clone(),
            ..Choice::default()
        };
        let Some(router) = self.snapshot.router.as_ref().filter(|_| question.asks()) else {
            // Nothing to decide; only the body's preferences are shed.
            return Ok(choice);
        };
        let (decision, source) = self
            .decide(session, router, &question, request, trace)
            .await;
        if let Decision::Route { models, prefer, .. } = &decision {
            choice.models = rank(models, *prefer, self.snapshot, self.figures);
        }
        choice.route = Some(decision.describe(source));
        choice.took = started.elapsed();
        Ok(choice)
    }

    /// Plano's routing API: the decision for `request` in Plano's shape, without calling a
    /// model.
    pub async fn decision(
        &self,
        session: &mut Session,
        request: &Request,
        trace: Option<&mut Trace>,
    ) -> Result<Value, GatewayError> {
        let question = self.question(request)?;
        let decided = match (
            self.snapshot.router.as_ref(),
            question.filter(Question::asks),
        ) {
            (Some(router), Some(question)) => Some(
                self.decide(session, router, &question, request, trace)
                    .await,
            ),
            _ => None,
        };
        let requested = request.client_model().unwrap_or_default().to_owned();
        let (models, route, pinned) = match &decided {
            Some((
                Decision::Route {
                    name,
                    models,
                    prefer,
                },
                source,
            )) => (
                rank(models, *prefer, self.snapshot, self.figures),
                Some(name.clone()),
                *source == Source::Pinned,
            ),
            Some((_, source)) => (vec![requested], None, *source == Source::Pinned),
            None => (vec![requested], None, false),
        };
        let mut answer = json!({
            "models": models,
            "route": route,
            "trace_id": request.request_id,
            "pinned": pinned,
            "switched": false,
        });
        if let Some(id) = session::affinity(session.req_header()) {
            answer["session_id"] = id.into();
        }
        Ok(answer)
    }

    /// What `request` asks preference routing, if anything.
    fn question(&self, request: &Request) -> Result<Option<Question>, GatewayError> {
        let snapshot = self.snapshot;
        let routed = snapshot.router.is_some();
        question_of(&request.body, snapshot, routed, request.client_model())
    }

    /// The decision for `question`, from the router's memory or the router itself; counted.
    async fn decide(
        &self,
        session: &mut Session,
        router: &Router,
        question: &Question,
        request: &Request,
        mut trace: Option<&mut Trace>,
    ) -> (Decision, Source) {
        let (snapshot, metrics) = (self.snapshot, self.metrics);
        let call = trace.as_deref_mut().map(Trace::routing_started);
        let started = Instant::now();
        let recall = &snapshot.recall;
        let thread = question.thread();
        let (decision, source) = match recall.known(session.req_header(), thread, started) {
            Some(known) => known,
            None => {
                let key = question.key(router);
                let req = session.req_header();
                let local = recall
                    .answers
                    .get(&key, started)
                    .map(|d| (d, Source::Cache));
                // What another replica decided, when they share a store: a session's pin there
                // comes before an answer here.
                let cached = match &snapshot.store {
                    Some(store) if local.is_none() || recall.continues(req, thread) => recall
                        .shared(store, metrics, req, thread, key)
                        .await
                        .or(local),
                    _ => local,
                };
                if let Some((d, Source::Cache)) = &cached {
                    // The same question, a new session: pinned to the answer.
                    recall.remember(req, thread, None, d);
                    if let Some(store) = &snapshot.store {
                        recall.share(store, metrics, req, thread, None, d);
                    }
                }
                match cached {
                    Some(known) => known,
                    None => {
                        let (d, spans) = ask(
                            session,
                            snapshot,
                            router,
                            question.prompt(router),
                            &question.prefs,
                            &request.request_id,
                            call,
                        )
                        .await;
                        if let (Some(t), Some(spans)) = (trace.as_deref_mut(), spans) {
                            t.router_called(spans);
                        }
                        if !matches!(d, Decision::FailedOpen(_)) {
                            let req = session.req_header();
                            recall.remember(req, thread, Some(key), &d);
                            if let Some(store) = &snapshot.store {
                                recall.share(store, metrics, req, thread, Some(key), &d);
                            }
                        }
                        (d, Source::Router)
                    }
                }
            }
        };
        metrics.router_decision(
            decision.route_label(),
            decision.outcome_label(source),
            started.elapsed(),
        );
        if let Some(t) = trace {
            let (route, selected) = match &decision {
                Decision::Route { name, models, .. } => {
                    (Some(name.as_str()), models.first().map(String::as_str))
                }
                _ => (None, None),
            };
            t.routing_ended(route, selected, decision.outcome_label(source));
        }
        (decision, source)
    }
}
