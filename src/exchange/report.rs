//! What an exchange tells the rest of the gateway once it is under way or done: its labels and
//! attempts for the metrics and the access log, the gateway's time, the upstream failure it
//! ended with, the error to write for it. Questions, not fields.

use std::time::{Duration, Instant};

use pingora::Error;

use super::{Exchange, Outcome};
use crate::attempt::Failure;
use crate::catalog::Interface;
use crate::error::{classify, Class, GatewayError};
use crate::metrics::{Series, UpstreamErrorClass};
use crate::trace::Call;
use crate::translate::Api;

impl Exchange {
    /// The latest attempt's endpoint, as metric labels: its prefix and name.
    pub fn endpoint_labels(&self) -> Option<(&str, &str)> {
        let p = self.snapshot.provider(self.endpoint()?);
        Some((p.prefix.as_str(), p.name.as_str()))
    }

    /// The metric series of the endpoint `endpoint_labels` names.
    pub fn endpoint_series(&self) -> Option<&Series> {
        Some(&self.snapshot.upstream(self.endpoint()?).series)
    }

    /// The latest attempt's endpoint; refused before any attempt (every endpoint parked), the
    /// lead endpoint, which answered for it.
    fn endpoint(&self) -> Option<usize> {
        match &self.routed {
            Some(r) => Some(r.provider),
            None => Some(self.snapshot.lead(self.plan.stage_at(0).group)?.0),
        }
    }

    /// The name of endpoint `pidx`.
    pub fn endpoint_name(&self, pidx: usize) -> &str {
        &self.snapshot.provider(pidx).name
    }

    /// The time of a request that took `total` spent in the gateway itself: without its
    /// upstream attempts, the waits between them and the preference-routing decision. `None`
    /// when nothing was forwarded.
    pub fn overhead(&self, total: Duration) -> Option<Duration> {
        if self.attempts.is_empty() {
            return None;
        }
        Some(total.saturating_sub(self.upstream_time + self.waited + self.routing_time))
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn api(&self) -> Api {
        self.api
    }

    /// Whether any stage translates between APIs (the answer may need the subrequest's pipe).
    pub fn translates(&self) -> bool {
        self.translates
    }

    /// The preference route taken and why, and how long deciding took (router::choose).
    pub fn routed_by(&mut self, route: Option<String>, took: Duration) {
        self.route = route;
        self.routing_time = took;
    }

    /// The preference route taken and why, when preference routing ran.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// The model id the latest attempt asked its upstream for.
    pub fn upstream_model(&self) -> Option<&str> {
        self.routed.as_ref().map(|r| r.model.as_str())
    }

    /// Why the latest attempt failed, in words (for the access log).
    pub fn cause(&self) -> Option<&'static str> {
        self.cause
    }

    /// Every attempt: the endpoint's name and how it ended.
    pub fn attempts(&self) -> impl Iterator<Item = (&str, &'static str)> + '_ {
        self.attempts
            .iter()
            .map(|&(pidx, outcome)| (self.endpoint_name(pidx), outcome))
    }

    /// The class of the upstream failure a finished request ended with, if any: the plan's
    /// last failure, a response that broke off (`e`), or the error status it passed on.
    pub fn upstream_error(&self, e: Option<&Error>) -> Option<UpstreamErrorClass> {
        match (self.failed, e) {
            (Some(class), _) => Some(class),
            (_, Some(e)) if !self.attempts.is_empty() && classify(e).upstream() => {
                Some(UpstreamErrorClass::Protocol)
            }
            _ => self.watch.status.and_then(UpstreamErrorClass::of_status),
        }
    }

    /// The class of the failure that ended the plan, when every attempt failed.
    pub fn final_failure(&self) -> Option<UpstreamErrorClass> {
        self.failed
    }

    /// The gateway's error to write for a request that failed with `e`, once: its own, else
    /// what `e` says about the latest endpoint; `None` when it was written already.
    pub fn error_to_write(&mut self, e: &Error) -> Option<GatewayError> {
        if self.error_written {
            return None;
        }
        self.error_written = true;
        let error = self.error.take().unwrap_or_else(|| {
            let name = self.endpoint_labels().map_or("", |(_, name)| name);
            GatewayError::of(e, name.to_owned())
        });
        if let Some(why) = error.upstream_cause() {
            self.cause = Some(why);
        }
        Some(error)
    }

    /// The model call's spans, when the request is traced, added to `spans`: its GenAI span
    /// and one per attempt (trace). `error`: the class of the failure it ended with, if any;
    /// `custom`: Plano's span attributes, for the model call's span; `ended`: when it ended.
    pub fn call_spans(
        &self,
        error: Option<&str>,
        custom: &crate::trace::wire::Attributes,
        ended: Instant,
        spans: &mut crate::trace::wire::Spans,
    ) {
        let Some(t) = self.trace.as_deref() else {
            return;
        };
        let endpoint = self.endpoint().map(|p| self.snapshot.provider(p));
        let call = Call {
            operation: match self.api {
                Api::Embeddings => "embeddings",
                Api::Completions => "text_completion",
                Api::CountTokens => "count_tokens",
                _ => "chat",
            },
            provider: endpoint.map_or("", |p| p.prefix.as_str()),
            request_model: self.upstream_model().unwrap_or_default(),
            stream: self.inspected.stream,
            previous_response: self.inspected.previous_response.as_deref(),
            route: self.route(),
            usage: self.usage(),
            cache_outside_input: endpoint
                .is_some_and(|p| matches!(p.interface, Interface::Anthropic | Interface::Bedrock)),
            facts: self.watch.facts.as_deref(),
            first_token: self.first_token(),
            error,
            ended,
        };
        t.spans(&call, custom, spans);
    }

    /// The outcome of an attempt that ended with error `e` after its response began (or with
    /// no error).
    pub fn outcome_of(&self, e: Option<&Error>) -> Outcome {
        match e.map(classify) {
            Some(Class::Timeout) => Outcome::Failed(Failure::Timeout),
            Some(class) if class.upstream() => Outcome::Failed(Failure::Protocol),
            Some(_) => Outcome::ClientClosed,
            // A 429 or 5xx answer counts against the endpoint; other statuses are its answer.
            None => Outcome::Answered(
                self.watch
                    .status
                    .filter(|s| *s == 429 || *s >= 500)
                    .and_then(UpstreamErrorClass::of_status),
            ),
        }
    }
}
