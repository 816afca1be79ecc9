//! One model request on its way through Pingora's proxy phase: the routed body, the attempt
//! plan, the attempt in progress and what the response showed. The proxy callbacks drive it;
//! it decides nothing itself that [`crate::attempt`] does not say.
//!
//! An exchange lives in the request's context, or moves into the subrequest that carries the
//! request (see [`crate::subrequest`]) and back before the request is logged.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

mod report;
mod response;

use crate::attempt::{self, Failure, Next, Plan};
use crate::auth::{self, AuthStyle};
use crate::body::{self, Inspected};
use crate::conversations::{self, Conversation, Turn};
use crate::endpoints::{self, health::InFlight};
use crate::error::{classify, Class, GatewayError};
use crate::intake::Request;
use crate::metrics::{Metrics, UpstreamErrorClass};
use crate::state::Snapshot;
use crate::trace::{AttemptTo, CallIds, CallTrace};
use crate::translate::{Api, Direction, ResponseTranslator, Target};
use crate::upstream;
use crate::usage::ResponseWatch;

/// Most attempts one request may make, fallbacks included; also Pingora's `max_retries`.
pub const MAX_ATTEMPTS: u32 = 64;

/// How an attempt ended, for metrics, health and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (maybe with an error status that was passed on).
    Answered(Option<UpstreamErrorClass>),
    Failed(Failure),
    /// The client went away: says nothing about the endpoint.
    ClientClosed,
}

/// A request's exchange with its providers.
pub struct Exchange {
    snapshot: Arc<Snapshot>,
    api: Api,
    request_id: String,
    /// The client's query string, kept on the upstream path.
    query: Option<String>,
    /// The body as the client sent it, and what was found in it.
    body: Bytes,
    inspected: Inspected,
    /// Pins a conversation to one endpoint: `x-model-affinity`, else the body's `user`.
    affinity: Option<String>,
    plan: Plan,
    /// Where the next attempt goes, decided when the previous one ended.
    next: Option<Next>,
    attempt: Option<Attempt>,
    /// The endpoint of the latest attempt and the model it was asked for.
    routed: Option<Routed>,
    watch: ResponseWatch,
    /// Every attempt: endpoint (provider index) and outcome.
    attempts: Vec<(usize, &'static str)>,
    /// Set when the request failed upstream and the gateway answered (or cut the response).
    failed: Option<UpstreamErrorClass>,
    /// Why the latest attempt failed, when it did (for the access log).
    cause: Option<&'static str>,
    /// The gateway's own answer, for `fail_to_proxy` to render.
    error: Option<GatewayError>,
    /// Whether the gateway's error (response or final stream event) was written.
    error_written: bool,
    /// The whole request's deadline.
    deadline: Option<Instant>,
    /// Time spent waiting on upstreams, over all attempts.
    upstream_time: Duration,
    /// Time spent waiting between attempts (backoff, `retry-after`).
    waited: Duration,
    /// Whether any stage translates between APIs.
    translates: bool,
    /// The conversation a Responses request continues (`previous_response_id`), when the
    /// gateway keeps it (conversations); read before the first attempt.
    history: Option<Arc<Conversation>>,
    /// The conversation to keep once a translated Responses answer ended.
    turn: Option<Turn>,
    /// A Responses answer passed through: its id names the endpoint for a follow-up
    /// (conversations' pins).
    pins_answer: bool,
    /// The preference route taken and why (router), when preference routing ran.
    route: Option<String>,
    /// Time the preference-routing decision took (the router's, not the gateway's own).
    routing_time: Duration,
    /// The model call's spans as they are recorded, when the request is traced (trace).
    trace: Option<Box<CallTrace>>,
}

/// The attempt in progress.
struct Attempt {
    provider: usize,
    /// The endpoint's addresses and which one this try uses (a refusal moves to the next).
    addresses: Arc<Vec<SocketAddr>>,
    address: usize,
    address_tries: usize,
    path: String,
    body: Bytes,
    auth: AuthStyle,
    translator: Option<ResponseTranslator>,
    /// A translated Responses request as sent, history included: its input is kept with the
    /// answer (conversations).
    responses_body: Option<Bytes>,
    started: Instant,
    body_sent: bool,
    _in_flight: InFlight,
}

/// Where the latest attempt went: the endpoint, and the model it was asked for.
struct Routed {
    provider: usize,
    model: String,
}

impl Exchange {
    /// The exchange of `request`, built once its route is known: `models` in order when
    /// preference routing chose them (the first serves, the others are tried next, then the
    /// first's own fallbacks), else the client's model. Plans the attempts and picks the first
    /// endpoint; fails with the error the client gets (every endpoint parked by a 429).
    pub fn new(
        snapshot: Arc<Snapshot>,
        request: Request,
        models: &[String],
    ) -> std::result::Result<Exchange, GatewayError> {
        let routes = &snapshot.resolver;
        let providers = &snapshot.config.providers;
        // A route's models are configured ones (checked at load, or by the request's own
        // preferences), so they resolve.
        let (group, upstream_model) = match models
            .first()
            .and_then(|m| routes.resolve(providers, Some(m)).ok())
        {
            Some(r) => (r.group, r.upstream_model.into_owned()),
            None => (request.group, request.upstream_model.clone()),
        };
        let api = request.api;
        let then: Vec<usize> = models
            .iter()
            .skip(1)
            .filter_map(|m| routes.resolve(providers, Some(m)).ok().map(|r| r.group))
            .collect();
        let stages = attempt::stages(routes, providers, group, upstream_model, &then);
        let translates = stages.iter().any(|s| {
            routes.group(s.group).members.iter().any(|&p| {
                let provider = snapshot.provider(p);
                Direction::between(api, provider.interface, provider.native_responses())
                    .is_ok_and(|d| d != Direction::PassThrough)
            })
        });
        let deadline = routes.group(group).total.map(|t| Instant::now() + t);
        let lead = snapshot.lead(group).map_or(0, |(i, _)| i);
        let mut exchange = Exchange {
            snapshot: snapshot.clone(),
            api,
            request_id: request.request_id,
            query: request.query,
            body: request.body,
            inspected: request.inspected,
            affinity: request.affinity,
            plan: Plan::new(stages, MAX_ATTEMPTS),
            next: None,
            attempt: None,
            routed: None,
            watch: ResponseWatch::default(),
            attempts: Vec::new(),
            failed: None,
            cause: None,
            error: None,
            error_written: false,
            deadline,
            upstream_time: Duration::ZERO,
            waited: Duration::ZERO,
            translates,
            history: None,
            turn: None,
            pins_answer: false,
            route: None,
            routing_time: Duration::ZERO,
            trace: None,
        };
        let affinity = exchange.affinity.clone();
        exchange.next = exchange.plan.first(|stage, tried| {
            endpoints::offer(&snapshot, stage.group, tried, affinity.as_deref())
        });
        if exchange.next.is_none() {
            return Err(unavailable(&snapshot, group, lead));
        }
        Ok(exchange)
    }

    /// Picks the endpoint of the next attempt now (after a wait for a parked one).
    pub fn pick_now(&self) -> Option<usize> {
        endpoints::pick(
            &self.snapshot,
            self.plan.stage().group,
            self.plan.tried(),
            self.affinity.as_deref(),
        )
    }

    /// Opens an attempt to provider `pidx`: the body rewritten (or translated) for it, its path
    /// and credential form. Fails with the error the client gets.
    pub fn open(
        &mut self,
        pidx: usize,
        addresses: Arc<Vec<SocketAddr>>,
    ) -> std::result::Result<(), GatewayError> {
        let snapshot = self.snapshot.clone();
        let provider = snapshot.provider(pidx);
        let model = self.plan.stage().model.clone();
        self.routed = Some(Routed {
            provider: pidx,
            model: model.clone(),
        });
        if !auth::has_credentials(provider) {
            return Err(GatewayError::NoAccessKey(provider.name.clone()));
        }
        let direction =
            Direction::between(self.api, provider.interface, provider.native_responses())
                .map_err(GatewayError::NotSupported)?;
        // A translated upstream keeps no responses: the gateway does (conversations).
        let responses_body = if direction.responses() {
            Some(self.continued()?)
        } else {
            None
        };
        let (body, translator) = match direction {
            Direction::PassThrough => (body::with_model(&self.body, &self.inspected, &model), None),
            _ => {
                let target = Target {
                    prefix: &provider.prefix,
                    model: &model,
                    default_max_tokens: provider.default_max_tokens,
                };
                let client_body = responses_body.as_ref().unwrap_or(&self.body);
                let translated = direction
                    .request(client_body, &target)
                    .map_err(GatewayError::InvalidBody)?;
                let translator = ResponseTranslator::new(direction, &model, &translated);
                (translated.body, Some(translator))
            }
        };
        let upstream_api = direction.upstream_api(self.api);
        self.pins_answer = self.api == Api::Responses && direction == Direction::PassThrough;
        // The client's query string belongs to the client's API (Claude Code's `?beta=true`):
        // an upstream spoken to in another API gets only what that API needs.
        let query = if upstream_api == self.api {
            self.query.as_deref().map(Cow::Borrowed)
        } else {
            upstream::kept_query(self.query.as_deref()).map(Cow::Owned)
        };
        self.plan.started(pidx);
        let address = snapshot.upstream(pidx).addresses.next_start() % addresses.len().max(1);
        let path = upstream::path(
            provider,
            upstream_api,
            &model,
            query.as_deref(),
            self.inspected.stream,
        );
        self.watch = ResponseWatch::default();
        if let Some(t) = self.trace.as_mut() {
            let origin = &provider.origin;
            t.attempt_opened(&AttemptTo {
                endpoint: &provider.name,
                tls: origin.tls,
                host: &origin.host,
                port: origin.port,
                path: &path,
                api: openai_api(provider.interface, upstream_api),
            });
            self.watch.facts = Some(Box::default());
        }
        self.attempt = Some(Attempt {
            provider: pidx,
            addresses,
            address,
            address_tries: 1,
            path,
            body,
            auth: AuthStyle::for_upstream(provider.interface, upstream_api),
            translator,
            responses_body,
            started: Instant::now(),
            body_sent: false,
            _in_flight: snapshot.upstream(pidx).health.start(),
        });
        Ok(())
    }

    /// The response id a Responses request continues, when an attempt may be translated (a
    /// provider with a Responses API of its own keeps its conversations itself).
    pub fn continues(&self) -> Option<&str> {
        (self.api == Api::Responses && self.translates)
            .then_some(self.inspected.previous_response.as_deref())
            .flatten()
    }

    /// The response a Responses request to a provider with its own Responses API follows up.
    pub fn follows_up(&self) -> Option<&str> {
        (self.api == Api::Responses && !self.translates)
            .then_some(self.inspected.previous_response.as_deref())
            .flatten()
    }

    /// Sends the first attempt to the endpoint named `endpoint` when it serves the first stage:
    /// the one that answered the response this request follows up.
    pub fn prefer(&mut self, endpoint: &str) {
        let group = self.plan.stage().group;
        let members = &self.snapshot.resolver.group(group).members;
        if let Some(&pidx) = members
            .iter()
            .find(|&&i| self.snapshot.provider(i).name == endpoint)
        {
            self.next = Some(Next {
                endpoint: Some(pidx),
                wait: Duration::ZERO,
                failover: None,
            });
        }
    }

    /// The conversation [`Exchange::continues`], as kept (`None`: not kept).
    pub fn set_history(&mut self, history: Option<Arc<Conversation>>) {
        self.history = history;
    }

    /// The client's Responses body, continuing the conversation it names, if it names one.
    fn continued(&self) -> std::result::Result<Bytes, GatewayError> {
        let Some(id) = &self.inspected.previous_response else {
            return Ok(self.body.clone());
        };
        let history = self
            .history
            .as_ref()
            .ok_or_else(|| GatewayError::PreviousResponseNotFound(id.clone()))?;
        conversations::continued(&self.body, history).map_err(GatewayError::InvalidBody)
    }

    /// The address the current attempt connects to.
    pub fn address(&self) -> Option<SocketAddr> {
        let a = self.attempt.as_ref()?;
        a.addresses.get(a.address).copied()
    }

    /// The rewritten body, once per attempt (Pingora's body filter may be called more than once).
    pub fn take_body(&mut self) -> Option<Bytes> {
        let a = self.attempt.as_mut()?;
        if a.body_sent {
            return None;
        }
        a.body_sent = true;
        Some(a.body.clone())
    }

    /// A connection to the current address was refused: tries the endpoint's next address
    /// within the same attempt, if it has one left.
    pub fn next_address(&mut self) -> bool {
        let Some(a) = self.attempt.as_mut() else {
            return false;
        };
        if a.address_tries >= a.addresses.len() {
            return false;
        }
        a.address = (a.address + 1) % a.addresses.len();
        a.address_tries += 1;
        self.next = Some(Next {
            endpoint: Some(a.provider),
            wait: Duration::ZERO,
            failover: None,
        });
        true
    }

    /// The attempt failed before anything reached the client: records it and returns whether
    /// the plan tries again (then `next` says where).
    pub fn failed(&mut self, failure: Failure, metrics: &Metrics, jitter: f64) -> bool {
        self.close(Outcome::Failed(failure), metrics);
        self.replan(failure, jitter)
    }

    /// Plans the attempt after `failure`; returns whether there is one. Past the deadline there
    /// is none.
    pub fn replan(&mut self, failure: Failure, jitter: f64) -> bool {
        let snapshot = self.snapshot.clone();
        let affinity = self.affinity.clone();
        self.next = if self.past_deadline() {
            None
        } else {
            self.plan.after(failure, jitter, |stage, tried| {
                endpoints::offer(&snapshot, stage.group, tried, affinity.as_deref())
            })
        };
        if self.next.is_none() {
            self.failed = Some(failure.class());
        }
        self.next.is_some()
    }

    /// The peer of the next attempt: waits out its backoff (ending early if the client leaves),
    /// opens the attempt (or moves it to its endpoint's next address) and builds the peer.
    pub async fn next_peer(
        &mut self,
        session: &mut Session,
        metrics: &Metrics,
        jitter: f64,
    ) -> Result<Box<HttpPeer>> {
        let next = self
            .next
            .take()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no attempt planned"))?;
        if !next.wait.is_zero() {
            let started = Instant::now();
            wait_for_client(session, next.wait).await?;
            self.waited += started.elapsed();
        }
        if let Some((from, to)) = next.failover {
            metrics.failover(self.stage_lead(from), self.stage_lead(to));
        }
        if self.attempt.is_none() {
            let Some(pidx) = next.endpoint.or_else(|| self.pick_now()) else {
                let gid = self.plan.stage().group;
                let lead = self.snapshot.lead(gid).map_or(0, |(i, _)| i);
                return self.refuse(unavailable(&self.snapshot, gid, lead));
            };
            let snapshot = self.snapshot.clone();
            let upstream = snapshot.upstream(pidx);
            let addresses = upstream.addresses.current().await;
            let resolved = addresses.as_ref().map_or(Vec::new().into(), Arc::clone);
            if let Err(e) = self.open(pidx, resolved) {
                return self.refuse(e);
            }
            if let Err(e) = addresses {
                self.cause = Some("cannot resolve the host");
                let mut e = Error::because(
                    ErrorType::ConnectNoRoute,
                    format!("cannot resolve {}", upstream.origin.host),
                    e,
                )
                .into_up();
                e.set_retry(self.failed(Failure::Connect, metrics, jitter));
                return Err(e);
            }
        }
        let Some(addr) = self.address() else {
            let mut e = Error::explain(ErrorType::ConnectNoRoute, "the upstream has no address");
            e.set_retry(self.failed(Failure::Connect, metrics, jitter));
            return Err(e);
        };
        let pidx = self.attempt.as_ref().map_or(0, |a| a.provider);
        Ok(Box::new(upstream::peer(
            &self.snapshot,
            pidx,
            addr,
            self.deadline,
        )))
    }

    /// Ends the request with the gateway's own `error`, rendered by `fail_to_proxy`.
    fn refuse<T>(&mut self, error: GatewayError) -> Result<T> {
        let status = error.status();
        self.error = Some(error);
        Error::e_explain(ErrorType::HTTPStatus(status), "refused by the gateway")
    }

    /// The name of the first endpoint of stage `i`.
    fn stage_lead(&self, i: usize) -> &str {
        let group = self.plan.stage_at(i).group;
        self.snapshot
            .lead(group)
            .map_or("", |(_, p)| p.name.as_str())
    }

    /// Whether the plan would retry an answer with `status` (a 429 or 5xx under the stage's
    /// policy, while another attempt remains).
    pub fn retries_status(&self, status: u16) -> bool {
        Failure::retried_status(status, &self.plan.stage().policy)
    }

    /// Ends the current attempt, if one is open.
    pub fn close(&mut self, outcome: Outcome, metrics: &Metrics) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        self.upstream_time += attempt.started.elapsed();
        let provider = self.snapshot.provider(attempt.provider);
        let (class, retry_after) = match outcome {
            Outcome::Answered(class) => (class, self.watch.retry_after),
            Outcome::Failed(f) => (Some(f.class()), f.retry_after()),
            Outcome::ClientClosed => (None, None),
        };
        let label = match outcome {
            Outcome::ClientClosed => "client_closed",
            _ => class.map_or("success", UpstreamErrorClass::as_str),
        };
        let series = &self.snapshot.upstream(attempt.provider).series;
        metrics.attempt(&provider.prefix, label, Some(series));
        // Every upstream error counts, with the provider that made it: a request that failed
        // over ten times shows ten errors, not its last one.
        let error = match outcome {
            Outcome::Answered(_) => self.watch.status.and_then(UpstreamErrorClass::of_status),
            Outcome::Failed(f) => Some(f.class()),
            Outcome::ClientClosed => None,
        };
        if let Some(class) = error {
            metrics.upstream_error(&provider.prefix, class);
        }
        self.attempts.push((attempt.provider, label));
        if let Some(t) = self.trace.as_mut() {
            t.attempt_closed(self.watch.status, label);
        }
        if outcome == Outcome::ClientClosed {
            return;
        }
        let health = &self.snapshot.upstream(attempt.provider).health;
        endpoints::health::record(metrics, provider, health, class, retry_after);
    }

    /// The upstream request header of the open attempt: path, `Host`, framing, request id and
    /// the credential (upstream, auth).
    pub fn upstream_request(&self, req: &mut RequestHeader) -> Result<()> {
        let a = self
            .attempt
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no attempt open"))?;
        upstream::request(
            req,
            self.snapshot.provider(a.provider),
            &self.snapshot.upstream(a.provider).host_header,
            &a.path,
            &a.body,
            a.auth,
            &self.request_id,
        )?;
        if let Some(t) = &self.trace {
            upstream::trace_context(req, t)?;
        }
        Ok(())
    }

    /// Traces the model call under `ids` (the request is traced).
    pub fn traced(&mut self, ids: Option<CallIds>) {
        self.trace = ids.map(|ids| Box::new(CallTrace::new(ids)));
    }

    /// A connection that failed with `e`: the endpoint's next address when it refused, else
    /// the plan's next attempt. Returns whether there is another try.
    pub fn connect_failed(&mut self, e: &Error, metrics: &Metrics, jitter: f64) -> bool {
        self.cause = Some(crate::error::cause(e));
        let refused = e.etype() == &ErrorType::ConnectRefused;
        (refused && self.next_address()) || self.failed(failure_of(e), metrics, jitter)
    }

    /// After an error while proxying: `Some(planned)` when the attempt was already closed by a
    /// retried status (upstream_response_filter), which planned the next one or not.
    pub fn retried_status(&self) -> Option<bool> {
        self.attempt.is_none().then_some(self.next.is_some())
    }

    /// Whether the request's deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Waits `wait`, unless the client leaves first.
async fn wait_for_client(session: &mut Session, wait: Duration) -> Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        gone = session.downstream_session.read_body_or_idle(true) => Err(match gone {
            Err(e) => e.into_down(),
            Ok(_) => Error::explain(ErrorType::ConnectionClosed, "client sent data while waiting").into_down(),
        }),
    }
}

/// OpenAI's name for the API an OpenAI upstream is spoken to in (`openai.api.type`).
fn openai_api(interface: crate::catalog::Interface, api: Api) -> Option<&'static str> {
    use crate::catalog::Interface;
    match (interface, api) {
        (Interface::OpenAi | Interface::AzureOpenAi, Api::Chat) => Some("chat_completions"),
        (Interface::OpenAi | Interface::AzureOpenAi | Interface::ChatGpt, Api::Responses) => {
            Some("responses")
        }
        _ => None,
    }
}

/// What a connect or proxy error says about the attempt.
pub fn failure_of(e: &Error) -> Failure {
    match classify(e) {
        Class::Status(status) | Class::Refused(status) => Failure::Status {
            status,
            retry_after: None,
        },
        Class::Timeout => Failure::Timeout,
        Class::Connect => Failure::Connect,
        _ => Failure::Protocol,
    }
}

/// The error for a model none of whose endpoints takes requests now (each is parked by its
/// upstream's `retry-after`), with the time until one does.
fn unavailable(snapshot: &Snapshot, gid: usize, lead: usize) -> GatewayError {
    let p = snapshot.provider(lead);
    GatewayError::RateLimited {
        model: p.name.clone(),
        provider: p.prefix.clone(),
        wait: endpoints::next_available(snapshot, gid).unwrap_or_default(),
    }
}
