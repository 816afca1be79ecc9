//! The `ProxyHttp` implementation: the map of a request's path through the gateway. Each
//! callback is short and names the module it delegates to.
//!
//! ```text
//!  request_filter           intake: local answers (/healthz, errors; /v1/models: models), or the
//!                           whole body read and routed (exchange); a body over 64 KiB or a
//!                           translated answer continues in a subrequest (subrequest), the rest
//!                           right here
//!  upstream_peer            exchange + attempt: the endpoint of this attempt (after any backoff),
//!                           its body and translator; upstream: its HttpPeer
//!  fail_to_connect,         attempt: is this failure tried again, and where
//!  error_while_proxy
//!  upstream_request_filter  upstream + auth: path, Host, framing, credential
//!  request_body_filter      the rewritten body in place of what Pingora replays
//!  upstream_response_filter exchange: watch and translate the header; a 429/5xx that the plan
//!                           retries becomes a retryable error
//!  upstream_response_body_filter  watch (usage, TTFT) and translate each chunk; total deadline
//!  fail_to_proxy            respond: the gateway's error, in the client's API
//!  logging                  metrics, one access-log line and the trace's spans (trace); the
//!                           client connection is idle (downstream)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::access_log::{self, AccessLog};
use crate::attempt::Failure;
use crate::catalog::Interface;
use crate::clients;
use crate::downstream;
use crate::error::{self, GatewayError};
use crate::exchange::{self, Exchange};
use crate::intake::{self, Request, Served};
use crate::lifecycle::{InFlight, Lifecycle};
use crate::metrics::{Metrics, RequestRecord, UpstreamErrorClass};
use crate::models::ModelLists;
use crate::quota;
use crate::request_id;
use crate::respond;
use crate::router;
use crate::router::choose::{Choice, Preferences};
use crate::state::SharedState;
use crate::subrequest;
use crate::trace::{self, Trace, Tracer};
use crate::translate::{count_tokens, Api};

/// The gateway: routes each model request to its provider.
pub struct Gateway {
    state: SharedState,
    metrics: Arc<Metrics>,
    access_log: AccessLog,
    lifecycle: Arc<Lifecycle>,
    models: ModelLists,
    /// Preference routing's cost and latency feeds (router::feeds).
    figures: Arc<router::feeds::Figures>,
    /// Where traced requests' spans go (trace::export).
    tracer: Tracer,
}

impl Gateway {
    pub fn new(
        state: SharedState,
        metrics: Arc<Metrics>,
        access_log: AccessLog,
        lifecycle: Arc<Lifecycle>,
        models: ModelLists,
        figures: Arc<router::feeds::Figures>,
        tracer: Tracer,
    ) -> Self {
        Gateway {
            state,
            metrics,
            access_log,
            lifecycle,
            models,
            figures,
            tracer,
        }
    }
}

/// What a request learns on the way, for its callbacks, metrics and the access log.
pub struct RequestCtx {
    started: Instant,
    start_time: SystemTime,
    request_id: String,
    /// A model request (counted in metrics), as opposed to /healthz and the like.
    model_request: bool,
    /// The client's API, once known.
    api: Option<Api>,
    /// The model the client asked for.
    model: Option<String>,
    /// The provider prefix and endpoint that stood for a request refused before it had an
    /// exchange (every endpoint parked by a 429), for the metrics and the access log.
    refused_for: Option<(String, String)>,
    /// The gateway answered the request with an error of its own before any attempt.
    refused: bool,
    /// The client's name (clients), when it presented a key.
    client: Option<String>,
    /// The token reservations the request holds (quota), settled when it is logged.
    held: Option<crate::quota::Held>,
    exchange: Option<Box<Exchange>>,
    /// The request's trace, when it is traced (trace).
    trace: Option<Box<Trace>>,
    /// This is the subrequest carrying a main request's exchange.
    sub: bool,
    /// Holds the process open while the request lives (lifecycle).
    _in_flight: InFlight,
}

impl RequestCtx {
    fn refused_labels(&self) -> Option<(&str, &str)> {
        self.refused_for
            .as_ref()
            .map(|(p, m)| (p.as_str(), m.as_str()))
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            start_time: SystemTime::now(),
            request_id: String::new(),
            model_request: false,
            api: None,
            model: None,
            refused_for: None,
            refused: false,
            client: None,
            held: None,
            exchange: None,
            trace: None,
            sub: false,
            _in_flight: self.lifecycle.request_started(),
        }
    }

    /// Only main requests spawn subrequests.
    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &RequestCtx) -> bool {
        session.subrequest_ctx.is_none()
    }

    /// The client connection's head time limit ends (downstream); a draining process closes
    /// the connection after this answer (lifecycle); a subrequest takes over its main request's
    /// exchange (subrequest).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.subrequest_ctx.is_none() {
            downstream::request_arrived(session);
        }
        if self.lifecycle.draining() {
            session.set_keepalive(None);
        }
        if session.subrequest_ctx.is_some() {
            ctx.sub = true;
            let x = subrequest::adopt(session).ok_or_else(|| {
                Error::explain(ErrorType::InternalError, "subrequest without an exchange")
            })?;
            x.request_id().clone_into(&mut ctx.request_id);
            ctx.api = Some(x.api());
            ctx.exchange = Some(x);
        }
        Ok(())
    }

    /// Local answers, or the body read and routed (intake, exchange); `Ok(false)` continues on
    /// this request's proxy phase, `Ok(true)` means answered (here or by a subrequest).
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if ctx.sub {
            return Ok(false);
        }
        ctx.request_id = request_id::for_request(session.req_header());
        let served = match intake::classify(session.req_header()) {
            Ok(served) => served,
            Err(e) => {
                let api = Api::from_path(session.req_header().uri.path());
                respond::error(session, &e, api, &ctx.request_id).await?;
                return Ok(true);
            }
        };
        match served {
            Served::Health => {
                // Alive whatever the state store says (`on_error` decides what limits do
                // meanwhile); its reachability is shown beside.
                let body = match &self.state.load().store {
                    Some(store) => Bytes::from(
                        serde_json::json!({"status": "ok", "state_store": {"kind": "redis", "reachable": store.reachable()}}).to_string(),
                    ),
                    None => Bytes::from_static(b"{\"status\":\"ok\"}"),
                };
                respond::json(session, 200, body, &ctx.request_id).await?;
                Ok(true)
            }
            Served::Models => {
                let snapshot = self.state.load_full();
                // Boxed, like every rare branch that awaits much: the callback's future is
                // copied into its box on every request, at the size of its largest branch
                // (this one's was 11 KiB; a model request's is 3).
                let body = Box::pin(self.models.body(session, &snapshot, &ctx.request_id)).await;
                respond::json(session, 200, body, &ctx.request_id).await?;
                Ok(true)
            }
            Served::Model(api) => self.admit(session, ctx, api).await,
            Served::Decision(api) => Box::pin(self.decision_only(session, ctx, api)).await,
        }
    }

    /// The endpoint of this attempt (exchange, attempt) as a Pingora peer (upstream).
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let x = exchange_of(ctx)?;
        x.next_peer(session, &self.metrics, jitter()).await
    }

    /// Path, `Host`, framing and the credential (upstream, auth).
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        exchange_of(ctx)?.upstream_request(req)
    }

    /// Pingora replays the body it kept (the client's, or the subrequest's placeholder); the
    /// upstream gets the attempt's rewritten body instead.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        *body = exchange_of(ctx)?.take_body();
        Ok(())
    }

    /// Whether a failed connection is tried again, and where (attempt).
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(x) = ctx.exchange.as_mut() {
            let retry = x.connect_failed(&e, &self.metrics, jitter());
            e.set_retry(retry);
        }
        e
    }

    /// Whether a failure after connecting is tried again (attempt): only while nothing has
    /// reached the client. A request is never re-sent on Pingora's own reused-connection rule:
    /// the upstream may have read it.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let retry = match ctx.exchange.as_mut() {
            Some(x) => match x.retried_status() {
                // A retried status: upstream_response_filter closed the attempt and planned
                // the next.
                Some(planned) => planned,
                None if session.response_written().is_none() && !error::classify(&e).client() => {
                    x.failed(exchange::failure_of(&e), &self.metrics, jitter())
                }
                None => false,
            },
            None => false,
        };
        e.set_retry(retry);
        e
    }

    /// Watches and translates the header (exchange); a 429 or 5xx the plan retries elsewhere
    /// never reaches the client.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        header: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(x) = ctx.exchange.as_mut() else {
            return Ok(());
        };
        x.response_header(header);
        let status = header.status.as_u16();
        if session.response_written().is_none() && x.retries_status(status) {
            let failure = Failure::Status {
                status,
                retry_after: x.retry_after(),
            };
            if x.replan(failure, jitter()) {
                x.close(exchange::Outcome::Failed(failure), &self.metrics);
                return Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "answer retried on another attempt",
                )
                .into_up());
            }
        }
        Ok(())
    }

    /// The request id; a translated JSON answer is framed by the subrequest's pipe; a process
    /// that began draining since the request came closes the connection after it (lifecycle).
    async fn response_filter(
        &self,
        session: &mut Session,
        header: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if self.lifecycle.draining() {
            session.set_keepalive(None);
        }
        if ctx.sub && ctx.exchange.as_ref().is_some_and(|x| x.reframed()) {
            subrequest::reframe(session);
        }
        if let Some(route) = ctx.exchange.as_ref().and_then(|x| x.route()) {
            // A route name that is not a valid header value is left out of the header.
            let _ = header.insert_header(router::HEADER, route);
        }
        header.insert_header(request_id::HEADER, ctx.request_id.as_str())
    }

    /// Usage, TTFT and translation, one chunk at a time (exchange); the total deadline; a
    /// Responses conversation to keep goes to the main request (subrequest, conversations).
    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(x) = ctx.exchange.as_mut() {
            if x.past_deadline() && !end_of_stream {
                return Err(Error::explain(
                    ErrorType::ReadTimedout,
                    "the request's total timeout passed",
                )
                .into_up());
            }
            x.response_body(body, end_of_stream);
            if let Some(turn) = x.take_turn() {
                subrequest::keep(session, turn);
            }
        }
        Ok(None)
    }

    /// The gateway's error, in the client's API (respond).
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let request_id = ctx.request_id.clone();
        respond::failure(
            session,
            e,
            ctx.exchange.as_deref_mut(),
            ctx.api,
            &request_id,
        )
        .await
    }

    /// Runs once per request, also when the client went away: metrics and the access log. A
    /// subrequest only closes its attempt and gives the exchange back (subrequest).
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let e = e.filter(|e| !ctx.exchange.as_ref().is_some_and(|x| x.delivered_before(e)));
        if let Some(x) = ctx.exchange.as_mut() {
            let outcome = x.outcome_of(e);
            x.close(outcome, &self.metrics);
        }
        if ctx.sub {
            if let Some(x) = ctx.exchange.take() {
                subrequest::give_back(session, x);
            }
            return;
        }
        self.settle(ctx);
        let duration = ctx.started.elapsed();
        // Nothing written: the client left first (nginx's 499).
        let status = session
            .response_written()
            .map_or(499, |h| h.status.as_u16());
        let upstream_error = upstream_error_class(ctx, e);
        if ctx.model_request {
            let x = ctx.exchange.as_deref();
            self.metrics.request_finished(&RequestRecord {
                provider: x
                    .and_then(Exchange::endpoint_labels)
                    .or(ctx.refused_labels()),
                series: x.and_then(Exchange::endpoint_series),
                client: ctx.client.as_deref(),
                status,
                duration,
                ttft: x
                    .and_then(Exchange::first_token)
                    .map(|t| t.duration_since(ctx.started)),
                overhead: x.and_then(|x| x.overhead(duration)),
                usage: x.and_then(Exchange::usage),
                api: ctx.api,
            });
        }
        if self.access_log.enabled() {
            self.access_log.write(&access_entry(
                session,
                ctx,
                status,
                duration,
                e,
                upstream_error,
            ));
        }
        if let Some(t) = ctx.trace.take() {
            self.trace(session, ctx, *t, status, e, upstream_error);
        }
        downstream::request_done();
    }
}

impl Gateway {
    /// A model request: takes it in (intake), lets preference routing choose its models
    /// (router), builds its exchange once (exchange) and decides which proxy phase carries it:
    /// this request's, or a subrequest's (subrequest).
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx, api: Api) -> Result<bool> {
        ctx.model_request = true;
        ctx.api = Some(api);
        self.metrics.request_started();
        let snapshot = self.state.load_full();
        let tracing = snapshot.config.tracing.as_ref();
        ctx.trace = Trace::begin(tracing, session.req_header(), ctx.start_time, ctx.started);
        let request = match self.take_in(session, ctx, api, &snapshot).await? {
            Ok(request) => request,
            Err(e) => return self.refuse(session, ctx, api, e).await,
        };
        ctx.model = request.client_model().map(str::to_owned);
        let client = match self.client_of(session, ctx, &snapshot, &request) {
            Ok(client) => client,
            Err(e) => return self.refuse(session, ctx, api, e).await,
        };
        if api == Api::CountTokens && request.lead_interface(&snapshot) != Interface::Anthropic {
            // No such endpoint upstream: the gateway's estimate (translate::count_tokens).
            let estimate = serde_json::from_slice(&request.body)
                .map(|body| count_tokens::estimate(&body))
                .unwrap_or_default();
            let estimate = Bytes::from(estimate.to_string());
            respond::json(session, 200, estimate, &ctx.request_id).await?;
            return Ok(true);
        }
        // Tokens are counted where the client's model is served, not routed by preference.
        let mut choice = match api {
            Api::CountTokens => Ok(Choice::default()),
            _ => {
                let trace = ctx.trace.as_deref_mut();
                let preferences = self.preferences(&snapshot);
                preferences.choose(session, &request, trace).await
            }
        };
        // A route's models the client may not use are left out (its own model it may).
        if let (Ok(choice), Some(client)) = (choice.as_mut(), client) {
            choice
                .models
                .retain(|m| clients::allows_model(&snapshot, client, m));
        }
        // A model request counts against its limits once, whatever its attempts; its tokens
        // are settled in `logging`.
        if let (Ok(choice), false) = (&choice, api == Api::CountTokens) {
            if let Err(e) = self
                .charge(session, ctx, &snapshot, client, &request, choice)
                .await
            {
                return self.refuse(session, ctx, api, e).await;
            }
        }
        let built = choice.and_then(|choice| {
            let request = match choice.body {
                Some(body) => request.with_body(body)?,
                None => request,
            };
            let mut x = Exchange::new(snapshot.clone(), request, &choice.models)?;
            x.routed_by(choice.route, choice.took);
            Ok(Box::new(x))
        });
        let mut x = match built {
            Ok(x) => x,
            Err(e) => return self.refuse(session, ctx, api, e).await,
        };
        x.traced(ctx.trace.as_ref().map(|t| t.call()));
        if let Some(id) = x.continues() {
            // Boxed, as every rare branch that awaits much (see request_filter).
            match Box::pin(snapshot.conversations.get(id, &self.metrics)).await {
                Ok(history) => {
                    let result = if history.is_some() {
                        "continued"
                    } else {
                        "not_found"
                    };
                    self.metrics.conversation(result);
                    x.set_history(history);
                }
                Err(_) => {
                    self.metrics.conversation("unavailable");
                    let e = GatewayError::ConversationsUnavailable;
                    return self.refuse(session, ctx, api, e).await;
                }
            }
        }
        // A follow-up to a provider's own response goes to the credential that minted it.
        if let Some(endpoint) = x
            .follows_up()
            .and_then(|id| snapshot.conversations.pinned(id))
        {
            x.prefer(&endpoint);
        }
        if !x.translates() && !session.retry_buffer_truncated() {
            ctx.exchange = Some(x);
            return Ok(false);
        }
        let keep = (&*snapshot.conversations, &*self.metrics);
        let (x, result) = subrequest::run(session, x, keep).await;
        ctx.exchange = x;
        result.map(|()| true)
    }

    /// Plano's routing API: the decision for a model request, answered without calling a model.
    async fn decision_only(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        api: Api,
    ) -> Result<bool> {
        ctx.api = Some(api);
        let snapshot = self.state.load_full();
        let tracing = snapshot.config.tracing.as_ref();
        ctx.trace = Trace::begin(tracing, session.req_header(), ctx.start_time, ctx.started);
        let answer = match self.take_in(session, ctx, api, &snapshot).await? {
            Ok(request) => match self.client_of(session, ctx, &snapshot, &request) {
                Ok(_) => {
                    let trace = ctx.trace.as_deref_mut();
                    let preferences = self.preferences(&snapshot);
                    preferences.decision(session, &request, trace).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => {
                let body = Bytes::from(answer.to_string());
                respond::json(session, 200, body, &ctx.request_id).await?;
            }
            Err(e) => respond::error(session, &e, Some(api), &ctx.request_id).await?,
        }
        Ok(true)
    }

    /// The client a request comes from (clients): `None` when anonymous, or the 401 or 403 it
    /// gets for a missing or unknown key or a model it may not use. Its name is logged.
    fn client_of<'a>(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &'a crate::state::Snapshot,
        request: &Request,
    ) -> std::result::Result<Option<&'a crate::config::Client>, GatewayError> {
        let passthrough = request.passthrough(snapshot);
        let client = clients::identify(snapshot, session.req_header(), passthrough)?;
        if let Some(client) = client {
            ctx.client = Some(client.name.clone());
            if !clients::allows(snapshot, client, request.group) {
                let model = request.client_model().unwrap_or_default().to_owned();
                return Err(GatewayError::ModelNotAllowed(model));
            }
        }
        Ok(client)
    }

    /// Charges the request to its limits (quota): the client's and Plano's rules that match
    /// the model it is routed to; the 429 (or 503) when one refuses.
    async fn charge(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &crate::state::Snapshot,
        client: Option<&crate::config::Client>,
        request: &Request,
        choice: &Choice,
    ) -> std::result::Result<(), GatewayError> {
        let group = choice
            .models
            .first()
            .and_then(|m| {
                snapshot
                    .resolver
                    .resolve(&snapshot.config.providers, Some(m))
                    .ok()
            })
            .map_or(request.group, |r| r.group);
        let req = session.req_header();
        let names = |model: &str| snapshot.names(model, group);
        let charges = quota::plan::plan(&snapshot.config, client, &names, req, &request.body);
        if charges.is_empty() {
            return Ok(());
        }
        ctx.held = snapshot.quotas.check(charges, &self.metrics).await?;
        Ok(())
    }

    /// Settles the request's token reservations with what the upstream reported using; a
    /// request that never reached an upstream gives them all back, one cut without usage keeps
    /// them.
    fn settle(&self, ctx: &mut RequestCtx) {
        let Some(held) = ctx.held.take() else {
            return;
        };
        let x = ctx.exchange.as_deref();
        let used = match x.and_then(Exchange::usage) {
            Some(u) => u.prompt + u.completion,
            None if x.is_none_or(|x| x.attempts().next().is_none()) => 0,
            None => return,
        };
        held.settle(used, &self.metrics);
    }

    /// A traced request's spans, built now and queued for export (trace).
    fn trace(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        t: Trace,
        status: u16,
        e: Option<&Error>,
        upstream_error: Option<UpstreamErrorClass>,
    ) {
        let req = session.req_header();
        let custom = t.custom(req);
        let ended = Instant::now();
        let server = trace::Server {
            req,
            route: ctx.api.map(|_| req.uri.path()),
            status,
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string()),
            http2: session.is_http2(),
            request_id: &ctx.request_id,
            error: crate::metrics::error_label(upstream_error, e)
                .or(ctx.refused.then_some("refused")),
            client_api: ctx.api.map(crate::metrics::api_label),
            client_name: ctx.client.as_deref(),
            ended,
        };
        let (to, mut spans) = t.finish(&server, &custom);
        if let Some(x) = ctx.exchange.as_deref() {
            let error = upstream_error.map(UpstreamErrorClass::as_str);
            x.call_spans(error, &custom, ended, &mut spans);
        }
        self.tracer.send(to, spans);
    }

    /// Preference routing on `snapshot` (router::choose).
    fn preferences<'a>(&'a self, snapshot: &'a Arc<crate::state::Snapshot>) -> Preferences<'a> {
        Preferences {
            snapshot,
            figures: &self.figures,
            metrics: &self.metrics,
        }
    }

    /// Reads a model request's body (bounded) and takes it in (intake): the request, or the
    /// error the client gets (the outer error: the client connection failed).
    async fn take_in(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        api: Api,
        snapshot: &crate::state::Snapshot,
    ) -> Result<std::result::Result<Request, GatewayError>> {
        let limit = snapshot.config.server.max_request_body;
        Ok(intake::read_body(session, limit).await?.and_then(|body| {
            let header = session.req_header();
            Request::new(snapshot, api, header, ctx.request_id.clone(), body)
        }))
    }

    /// Answers a model request the gateway refuses before any attempt, in the client's API;
    /// the metrics and the access log know what it asked for.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        api: Api,
        e: GatewayError,
    ) -> Result<bool> {
        match &e {
            GatewayError::ModelNotFound(m) => {
                ctx.model = Some(m.clone());
            }
            GatewayError::RateLimited {
                model, provider, ..
            } => {
                ctx.model.get_or_insert_with(|| model.clone());
                ctx.refused_for = Some((provider.clone(), model.clone()));
            }
            _ => {}
        }
        ctx.refused = true;
        respond::error(session, &e, Some(api), &ctx.request_id).await?;
        Ok(true)
    }
}

/// The exchange this request carries (set in `request_filter`).
fn exchange_of(ctx: &mut RequestCtx) -> Result<&mut Exchange> {
    ctx.exchange
        .as_deref_mut()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no exchange for this request"))
}

/// A number in [0, 1) for backoff jitter.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// The upstream failure class of a finished request, if its upstream failed.
fn upstream_error_class(ctx: &RequestCtx, e: Option<&Error>) -> Option<UpstreamErrorClass> {
    ctx.exchange.as_deref()?.upstream_error(e)
}

/// The access-log entry of a finished request.
fn access_entry<'a>(
    session: &'a Session,
    ctx: &'a RequestCtx,
    status: u16,
    duration: Duration,
    e: Option<&Error>,
    upstream_error: Option<UpstreamErrorClass>,
) -> access_log::Entry<'a> {
    let req = session.req_header();
    let x = ctx.exchange.as_deref();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    access_log::Entry {
        time: access_log::rfc3339(ctx.start_time),
        request_id: &ctx.request_id,
        client: session.client_addr().map(ToString::to_string),
        method: req.method.as_str(),
        path: req.uri.path(),
        client_name: ctx.client.as_deref(),
        model: ctx.model.as_deref().map(|m| access_log::truncate(m, 256)),
        provider: x
            .and_then(Exchange::endpoint_labels)
            .or(ctx.refused_labels())
            .map(|(_, name)| name),
        upstream_model: x.and_then(Exchange::upstream_model),
        status,
        duration_ms: ms(duration),
        ttft_ms: x
            .and_then(Exchange::first_token)
            .map(|t| ms(t.duration_since(ctx.started))),
        tokens: x.and_then(Exchange::usage),
        bytes_in: session.body_bytes_read(),
        bytes_out: session.body_bytes_sent(),
        error: crate::metrics::error_label(upstream_error, e).or(ctx.refused.then_some("refused")),
        cause: x.and_then(Exchange::cause),
        route: x.and_then(Exchange::route),
        attempts: x
            .map(|x| {
                x.attempts()
                    .map(|(endpoint, outcome)| access_log::Attempt { endpoint, outcome })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
