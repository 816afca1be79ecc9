//! The `ProxyHttp` implementation. Callbacks stay thin and delegate.
//!
//! ```text
//!  client ──► request_filter: local answers (/healthz, /v1/models, errors), or
//!               read body → route → for each attempt: rewrite or translate → forward::run
//!                                                        │  Pingora's Connector (pool, TLS)
//!            ◄── response tasks, translated if needed ───┘  ◄── provider
//!            logging: metrics, one access-log line
//! ```
//!
//! Every request is answered in `request_filter`; Pingora's own proxy phase (`upstream_peer`
//! onwards) is not used, see `forward.rs` for why.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::{Method, RequestHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::access_log::{self, AccessLog};
use crate::auth::{self, AuthStyle};
use crate::body;
use crate::config::Provider;
use crate::config::Retry;
use crate::error::GatewayError;
use crate::forward::{self, Forward, Outcome};
use crate::metrics::{Metrics, RequestRecord, UpstreamErrorClass};
use crate::providers::{Interface, AZURE_API_VERSION};
use crate::request_id;
use crate::respond;
use crate::routing::RouteError;
use crate::state::{SharedState, Snapshot};
use crate::translate::{Api, Direction, ResponseTranslator};
use crate::usage::ResponseWatch;

/// The gateway: routes each model request to its provider.
pub struct Gateway {
    state: SharedState,
    metrics: Arc<Metrics>,
    access_log: AccessLog,
    /// Pingora's upstream connector: connection pool and TLS.
    connector: Connector,
}

impl Gateway {
    pub fn new(
        state: SharedState,
        metrics: Arc<Metrics>,
        access_log: AccessLog,
        connector: Connector,
    ) -> Self {
        Gateway {
            state,
            metrics,
            access_log,
            connector,
        }
    }
}

/// What a request learns on the way, for metrics and the access log.
pub struct RequestCtx {
    started: Instant,
    start_time: SystemTime,
    request_id: String,
    /// A model request (counted in metrics), as opposed to /healthz and the like.
    model_request: bool,
    /// The model the client asked for.
    model: Option<String>,
    route: Option<RouteInfo>,
    /// The current (or last) attempt.
    forward: Option<Forward>,
    watch: ResponseWatch,
    /// Set when every attempt failed and the gateway (or the last upstream error) answered.
    failed: Option<UpstreamErrorClass>,
    /// Every upstream attempt: endpoint name and outcome.
    attempts: Vec<(String, &'static str)>,
}

/// The provider a request was routed to, as labels.
struct RouteInfo {
    prefix: String,
    name: String,
    upstream_model: String,
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
            model: None,
            route: None,
            forward: None,
            watch: ResponseWatch::default(),
            failed: None,
            attempts: Vec::new(),
        }
    }

    /// Answers locally or forwards; always returns `Ok(true)` (answered).
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = request_id::for_request(session.req_header());
        let snapshot = self.state.load_full();
        match classify(session.req_header()) {
            Ok(Endpoint::Health) => {
                let body = Bytes::from_static(b"{\"status\":\"ok\"}");
                respond::json(session, 200, body, &ctx.request_id).await?
            }
            Ok(Endpoint::Models) => {
                let body = snapshot.models_body.clone();
                respond::json(session, 200, body, &ctx.request_id).await?
            }
            Ok(Endpoint::Model(api)) => {
                ctx.model_request = true;
                self.metrics.request_started();
                handle_model_request(session, ctx, snapshot, api, &self.metrics, &self.connector)
                    .await?
            }
            Err(e) => {
                let api = Api::from_path(session.req_header().uri.path());
                respond::error(session, &e, api, &ctx.request_id).await?
            }
        }
        Ok(true)
    }

    /// Not reached: `request_filter` answers every request.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "requests are forwarded from request_filter",
        )
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = status_for(e);
        if code != 0 && session.response_written().is_none() {
            let body = error_body(code);
            let _ = respond::json(session, code, body, &ctx.request_id).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Runs once per request, also when the client went away: metrics and the access log.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let main = &*ctx;
        let duration = main.started.elapsed();
        // Nothing written: the client left first (nginx's 499).
        let status = session
            .response_written()
            .map_or(499, |h| h.status.as_u16());
        let upstream_error = upstream_error_class(main, e);
        if main.model_request {
            let upstream_time = main.forward.as_ref().and_then(|f| {
                Some(
                    f.upstream_finished
                        .get()?
                        .duration_since(*f.upstream_started.get()?),
                )
            });
            self.metrics.request_finished(&RequestRecord {
                provider: main
                    .route
                    .as_ref()
                    .map(|r| (r.prefix.as_str(), r.name.as_str())),
                status,
                duration,
                ttft: main
                    .watch
                    .first_token
                    .map(|t| t.duration_since(main.started)),
                overhead: upstream_time.map(|u| duration.saturating_sub(u)),
                usage: main.watch.usage,
                upstream_error,
            });
        }
        if self.access_log.enabled() {
            self.access_log.write(&access_entry(
                session,
                main,
                status,
                duration,
                e,
                upstream_error,
            ));
        }
    }
}

/// The upstream failure class of a finished request, if its upstream failed.
fn upstream_error_class(main: &RequestCtx, e: Option<&Error>) -> Option<UpstreamErrorClass> {
    match (main.failed, e) {
        (Some(class), _) => Some(class),
        // A response that broke off after its header was sent.
        (_, Some(e)) if main.forward.is_some() && e.esource() == &ErrorSource::Upstream => {
            Some(UpstreamErrorClass::Protocol)
        }
        _ => match main.watch.status {
            Some(400..=499) => Some(UpstreamErrorClass::Status4xx),
            Some(500..=599) => Some(UpstreamErrorClass::Status5xx),
            _ => None,
        },
    }
}

/// The access-log entry of a finished request.
fn access_entry<'a>(
    session: &'a Session,
    main: &'a RequestCtx,
    status: u16,
    duration: Duration,
    e: Option<&Error>,
    upstream_error: Option<UpstreamErrorClass>,
) -> access_log::Entry<'a> {
    let req = session.req_header();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    access_log::Entry {
        time: access_log::rfc3339(main.start_time),
        request_id: &main.request_id,
        client: session.client_addr().map(ToString::to_string),
        method: req.method.as_str(),
        path: req.uri.path(),
        model: main.model.as_deref().map(|m| access_log::truncate(m, 256)),
        provider: main.route.as_ref().map(|r| r.name.as_str()),
        upstream_model: main.route.as_ref().map(|r| r.upstream_model.as_str()),
        status,
        duration_ms: ms(duration),
        ttft_ms: main
            .watch
            .first_token
            .map(|t| ms(t.duration_since(main.started))),
        tokens: main.watch.usage,
        bytes_in: session.body_bytes_read(),
        bytes_out: session.body_bytes_sent(),
        error: upstream_error
            .map(UpstreamErrorClass::as_str)
            .or(e.map(|e| e.etype().as_str())),
        attempts: main
            .attempts
            .iter()
            .map(|(endpoint, outcome)| access_log::Attempt { endpoint, outcome })
            .collect(),
    }
}

/// The endpoints the gateway serves.
enum Endpoint {
    Health,
    Models,
    /// A model request forwarded to a provider, in the client's API.
    Model(Api),
}

fn classify(req: &RequestHeader) -> std::result::Result<Endpoint, GatewayError> {
    let path = req.uri.path();
    let (endpoint, allowed, allowed_name) = match path {
        "/healthz" => (Endpoint::Health, Method::GET, "GET"),
        "/v1/models" => (Endpoint::Models, Method::GET, "GET"),
        p => match Api::from_path(p) {
            Some(api) => (Endpoint::Model(api), Method::POST, "POST"),
            None => {
                return Err(GatewayError::UnknownEndpoint {
                    method: req.method.to_string(),
                    path: path.to_owned(),
                })
            }
        },
    };
    let head_ok = allowed == Method::GET && req.method == Method::HEAD;
    if req.method != allowed && !head_ok {
        return Err(GatewayError::MethodNotAllowed {
            method: req.method.to_string(),
            path: path.to_owned(),
            allowed: allowed_name,
        });
    }
    Ok(endpoint)
}

/// Reads, routes, translates if needed and forwards one model request, trying its model's
/// endpoints and then its fallbacks until one answers; answers errors itself, in the client's
/// API.
async fn handle_model_request(
    session: &mut Session,
    main: &mut RequestCtx,
    snapshot: Arc<Snapshot>,
    api: Api,
    metrics: &Metrics,
    connector: &Connector,
) -> Result<()> {
    let id = main.request_id.clone();
    let limit = snapshot.config.server.max_request_body;
    let body = match read_body(session, limit).await? {
        Ok(body) => body,
        Err(e) => return respond::error(session, &e, Some(api), &id).await,
    };
    let (inspected, route) = match route(main, &snapshot, &body) {
        Ok(r) => r,
        Err(e) => return respond::error(session, &e, Some(api), &id).await,
    };
    let listener = &snapshot.config.listener;
    let routes = &snapshot.routes;
    let groups: Vec<usize> = std::iter::once(route.group)
        .chain(routes.group(route.group).fallbacks.iter().copied())
        .collect();
    let deadline = routes
        .group(route.group)
        .members
        .first()
        .and_then(|&p| snapshot.provider(p).timeouts.or(listener.timeouts).total)
        .map(|t| main.started + t);

    // A conversation pinned to one endpoint (warm prompt caches): the client's
    // `x-model-affinity`, else the body's `user`.
    let affinity = session
        .req_header()
        .headers
        .get("x-model-affinity")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| inspected.user.clone());
    let mut tried: Vec<usize> = Vec::new();
    let mut last: Option<forward::Failure> = None;
    for (gi, &gid) in groups.iter().enumerate() {
        let members = &routes.group(gid).members;
        let Some(&lead) = members.first() else {
            continue;
        };
        let lead = snapshot.provider(lead);
        let policy = lead
            .retry
            .clone()
            .or_else(|| listener.retry.clone())
            .unwrap_or(Retry {
                attempts: members.len() as u32,
                ..Retry::default()
            });
        let model = if gi == 0 {
            route.upstream_model.clone()
        } else {
            lead.id.clone()
        };
        if gi > 0 {
            let from = snapshot
                .provider(routes.group(groups[gi - 1]).members[0])
                .name
                .as_str();
            metrics.failover(from, &lead.name);
        }
        for n in 0..policy.attempts {
            let Some(pidx) = next_endpoint(
                &snapshot,
                gid,
                &tried,
                last.as_ref(),
                &policy,
                affinity.as_deref(),
            )
            .await
            else {
                break;
            };
            if n > 0 {
                tokio::time::sleep(backoff(&policy, n)).await;
            }
            tried.push(pidx);
            let provider = snapshot.provider(pidx);
            let (forward, translator) = match prepare(
                main,
                &snapshot,
                api,
                &body,
                &inspected,
                pidx,
                &model,
                session.req_header(),
            ) {
                Ok(prepared) => prepared,
                Err(e) => return respond::error(session, &e, Some(api), &id).await,
            };
            let timeouts = provider.timeouts.or(listener.timeouts);
            let attempt = forward::Attempt {
                may_retry: n + 1 < policy.attempts || gi + 1 < groups.len(),
                retry: policy.clone(),
                first_byte: timeouts.first_byte,
                deadline,
            };
            let forward = &*main.forward.insert(forward);
            main.watch = ResponseWatch::default();
            let health = &snapshot.upstream(pidx).health;
            let in_flight = health.start();
            let outcome = forward::run(
                session,
                connector,
                forward,
                &mut main.watch,
                translator,
                &attempt,
            )
            .await;
            drop(in_flight);
            let class = match &outcome {
                Ok(Outcome::Complete) => match main.watch.status {
                    Some(500..=599) => Some(UpstreamErrorClass::Status5xx),
                    Some(429) => Some(UpstreamErrorClass::Status4xx),
                    _ => None,
                },
                Ok(Outcome::UpstreamError(class)) => Some(*class),
                Ok(Outcome::Retryable(f)) => Some(f.class),
                Err(e) if e.esource() == &ErrorSource::Upstream => {
                    Some(UpstreamErrorClass::Protocol)
                }
                Err(_) => None,
            };
            let retry_after = match &outcome {
                Ok(Outcome::Retryable(f)) => f.retry_after,
                _ => main.watch.retry_after,
            };
            // A client that left says nothing about the endpoint.
            let client_gone = matches!(&outcome, Err(e) if e.esource() != &ErrorSource::Upstream);
            let label = match class {
                _ if client_gone => "client_closed",
                Some(class) => class.as_str(),
                None => "success",
            };
            metrics.attempt(&provider.prefix, label);
            if !client_gone {
                record(metrics, provider, health, class, retry_after);
            }
            main.attempts.push((provider.name.clone(), label));
            match outcome? {
                Outcome::Complete => return Ok(()),
                Outcome::UpstreamError(class) => {
                    main.failed = Some(class);
                    return Ok(());
                }
                Outcome::Retryable(failure) => last = Some(failure),
            }
        }
    }
    // Every attempt failed before anything reached the client.
    main.forward = None;
    match last {
        Some(failure) if !failure.response.is_empty() => {
            // The last upstream error, as the upstream sent it (in the client's API).
            main.failed = Some(failure.class);
            session.write_response_tasks(failure.response).await?;
            Ok(())
        }
        Some(failure) => {
            main.failed = Some(failure.class);
            let name = main
                .route
                .as_ref()
                .map_or_else(String::new, |r| r.name.clone());
            let e = match failure.class {
                UpstreamErrorClass::Timeout => GatewayError::UpstreamTimeout(name),
                UpstreamErrorClass::Connect => GatewayError::UpstreamUnreachable(name),
                _ => GatewayError::UpstreamFailed(name),
            };
            respond::error(session, &e, Some(api), &id).await
        }
        None => {
            let wait = snapshot.next_available(route.group).unwrap_or_default();
            let name = snapshot
                .provider(
                    routes
                        .group(route.group)
                        .members
                        .first()
                        .copied()
                        .unwrap_or(0),
                )
                .name
                .clone();
            respond::unavailable(
                session,
                &GatewayError::NoEndpoint(name),
                Some(api),
                &id,
                wait,
            )
            .await
        }
    }
}

/// The next endpoint to try: an available one of group `gid`; if none is, and the last failure
/// parked the endpoints for no longer than the backoff allows, after waiting for it.
async fn next_endpoint(
    snapshot: &Snapshot,
    gid: usize,
    tried: &[usize],
    last: Option<&forward::Failure>,
    policy: &Retry,
    affinity: Option<&str>,
) -> Option<usize> {
    if let Some(pidx) = snapshot.pick(gid, tried, affinity) {
        return Some(pidx);
    }
    let wait = snapshot.next_available(gid)?;
    let honoured = last
        .and_then(|f| f.retry_after)
        .is_some_and(|ra| ra <= policy.backoff_max);
    if !honoured || wait > policy.backoff_max {
        return None;
    }
    tokio::time::sleep(wait).await;
    snapshot.pick(gid, tried, affinity)
}

/// Exponential backoff before attempt `n` (1-based retries) with full jitter.
fn backoff(policy: &Retry, n: u32) -> Duration {
    let ceiling = policy
        .backoff_base
        .saturating_mul(1 << (n - 1).min(16))
        .min(policy.backoff_max);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    ceiling.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// Scores an attempt's endpoint: ejection, 429 parking, and its health gauge.
fn record(
    metrics: &Metrics,
    provider: &Provider,
    health: &crate::balancer::Health,
    class: Option<UpstreamErrorClass>,
    retry_after: Option<Duration>,
) {
    match class {
        None => {
            health.succeeded();
            metrics.endpoint_health(&provider.prefix, &provider.name, true);
        }
        Some(class) => {
            if let Some(ra) = retry_after {
                health.park_for(ra);
                metrics.endpoint_health(&provider.prefix, &provider.name, false);
            }
            let counts = class != UpstreamErrorClass::Status4xx;
            if counts && health.failed(&provider.outlier).is_some() {
                log::warn!(
                    "endpoint `{}` ejected after repeated failures",
                    provider.name
                );
                metrics.endpoint_health(&provider.prefix, &provider.name, false);
            }
        }
    }
}

/// Validates the body and resolves its model.
fn route(
    main: &mut RequestCtx,
    snapshot: &Snapshot,
    body: &[u8],
) -> std::result::Result<(body::Inspected, RouteOwned), GatewayError> {
    let inspected = body::inspect(body).map_err(GatewayError::InvalidBody)?;
    main.model = inspected.model.clone();
    let route = snapshot
        .routes
        .resolve(&snapshot.config.providers, inspected.model.as_deref())
        .map_err(|e| match e {
            RouteError::MissingModel => GatewayError::MissingModel,
            RouteError::UnknownModel => {
                GatewayError::ModelNotFound(inspected.model.clone().unwrap_or_default())
            }
        })?;
    let owned = RouteOwned {
        group: route.group,
        upstream_model: route.upstream_model.into_owned(),
    };
    Ok((inspected, owned))
}

/// A resolved route, owned.
struct RouteOwned {
    group: usize,
    upstream_model: String,
}

/// Rewrites (or translates) the body for endpoint `pidx`: everything one attempt needs.
#[allow(clippy::too_many_arguments)]
fn prepare(
    main: &mut RequestCtx,
    snapshot: &Arc<Snapshot>,
    api: Api,
    body: &Bytes,
    inspected: &body::Inspected,
    pidx: usize,
    model: &str,
    req: &RequestHeader,
) -> std::result::Result<(Forward, Option<ResponseTranslator>), GatewayError> {
    let provider = snapshot.provider(pidx);
    main.route = Some(RouteInfo {
        prefix: provider.prefix.clone(),
        name: provider.name.clone(),
        upstream_model: model.to_owned(),
    });
    if !auth::has_credentials(provider) {
        return Err(GatewayError::NoAccessKey(provider.name.clone()));
    }
    let direction =
        Direction::between(api, provider.interface).map_err(GatewayError::NotSupported)?;
    let (body, translator) = match direction {
        Direction::PassThrough => (body::with_model(body, inspected, model), None),
        _ => {
            let (body, include_usage) = direction
                .request(body, model)
                .map_err(GatewayError::InvalidBody)?;
            let translator = ResponseTranslator::new(direction, model, include_usage);
            (body, Some(translator))
        }
    };
    let upstream_api = direction.upstream_api(api);
    let path = upstream_path(provider, upstream_api, model, req);
    let auth = AuthStyle::for_upstream(provider.interface, upstream_api);
    let id = main.request_id.clone();
    let forward = Forward::new(snapshot.clone(), pidx, path, body, id, auth);
    Ok((forward, translator))
}

/// Reads the whole request body, refusing more than `limit` bytes. The outer `Result` is an I/O
/// failure on the client connection; the inner one a body the gateway answers with an error.
async fn read_body(
    session: &mut Session,
    limit: u64,
) -> Result<std::result::Result<Bytes, GatewayError>> {
    let too_large = GatewayError::BodyTooLarge { limit };
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Ok(Err(too_large));
    }
    // Pingora does not answer `Expect: 100-continue` when a filter reads the body.
    if session.req_header().headers.get("expect").is_some() {
        session.write_continue_response().await?;
    }
    // Most bodies arrive as one chunk: that one is kept without copying.
    let mut single: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| e.into_down())?
    {
        let total = single.as_ref().map_or(0, Bytes::len) + joined.len() + chunk.len();
        if total as u64 > limit {
            return Ok(Err(too_large));
        }
        if single.is_none() && joined.is_empty() {
            single = Some(chunk);
            continue;
        }
        if let Some(first) = single.take() {
            joined.reserve(declared.map_or(total, |d| d as usize).max(total));
            joined.extend_from_slice(&first);
        }
        joined.extend_from_slice(&chunk);
    }
    Ok(Ok(single.unwrap_or_else(|| joined.freeze())))
}

/// The upstream path and query: the provider's prefix and the API's endpoint (Azure: the
/// deployment path and an `api-version`), with the client's query kept.
fn upstream_path(provider: &Provider, api: Api, model: &str, req: &RequestHeader) -> String {
    let prefix = &provider.endpoint.path_prefix;
    let query = req.uri.query();
    if provider.interface == Interface::AzureOpenAi {
        let version = match query {
            Some(q) if q.split('&').any(|p| p.starts_with("api-version=")) => q.to_owned(),
            Some(q) => format!("{q}&api-version={AZURE_API_VERSION}"),
            None => format!("api-version={AZURE_API_VERSION}"),
        };
        return format!("{prefix}/{model}{}?{version}", api.suffix());
    }
    match query {
        Some(q) => format!("{prefix}{}?{q}", api.suffix()),
        None => format!("{prefix}{}", api.suffix()),
    }
}

/// The status for an error that reached `fail_to_proxy`; 0 when the client is gone.
fn status_for(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.etype(), e.esource()) {
        (HTTPStatus(code), _) => *code,
        (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => 0,
        (ReadTimedout, ErrorSource::Downstream) => 408,
        (_, ErrorSource::Downstream) => 400,
        (InternalError, _) => 500,
        _ => GatewayError::upstream(e, String::new()).status(),
    }
}

fn error_body(code: u16) -> Bytes {
    let (kind, message) = match code {
        408 => (
            "invalid_request_error",
            "The request body was not received in time",
        ),
        400..=499 => ("invalid_request_error", "The request could not be read"),
        504 => ("server_error", "The upstream did not answer in time"),
        502 => ("server_error", "The upstream request failed"),
        _ => ("server_error", "Internal gateway error"),
    };
    Bytes::from(
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> RequestHeader {
        RequestHeader::build(method, path.as_bytes(), None).unwrap()
    }

    fn provider(yaml: &str) -> Provider {
        let c = crate::config::Config::from_yaml(yaml, &|_| Some("k".into())).unwrap();
        c.providers.into_iter().next().unwrap()
    }

    #[test]
    fn upstream_paths_replace_v1_and_keep_the_query() {
        let openai = provider("model_providers: [{model: openai/gpt-4o, access_key: $K}]");
        let groq = provider("model_providers: [{model: groq/llama, access_key: $K}]");
        let bare = provider("model_providers: [{model: custom/m, base_url: 'http://h/'}]");
        let post = |p: &str| req("POST", p);
        assert_eq!(
            upstream_path(&openai, Api::Chat, "gpt-4o", &post("/v1/chat/completions")),
            "/v1/chat/completions"
        );
        assert_eq!(
            upstream_path(&groq, Api::Chat, "llama", &post("/v1/chat/completions?x=1")),
            "/openai/v1/chat/completions?x=1"
        );
        assert_eq!(
            upstream_path(&bare, Api::Embeddings, "m", &post("/v1/embeddings")),
            "/v1/embeddings"
        );
        // Translated traffic goes to the upstream's endpoint.
        assert_eq!(
            upstream_path(
                &openai,
                Api::Chat,
                "gpt-4o",
                &post("/v1/messages?beta=true")
            ),
            "/v1/chat/completions?beta=true"
        );
    }

    #[test]
    fn azure_paths_name_the_deployment_and_an_api_version() {
        let azure = provider(
            "model_providers: [{model: azure_openai/gpt-4o, base_url: 'https://r.openai.azure.com', access_key: $K}]",
        );
        assert_eq!(
            upstream_path(
                &azure,
                Api::Chat,
                "gpt-4o",
                &req("POST", "/v1/chat/completions")
            ),
            format!("/openai/deployments/gpt-4o/chat/completions?api-version={AZURE_API_VERSION}")
        );
        assert_eq!(
            upstream_path(
                &azure,
                Api::Chat,
                "gpt-4o",
                &req("POST", "/v1/chat/completions?api-version=2024-10-21")
            ),
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn endpoints_and_methods() {
        assert!(matches!(
            classify(&req("POST", "/v1/chat/completions")),
            Ok(Endpoint::Model(Api::Chat))
        ));
        assert!(matches!(
            classify(&req("POST", "/v1/messages")),
            Ok(Endpoint::Model(Api::Messages))
        ));
        assert!(matches!(
            classify(&req("GET", "/v1/models")),
            Ok(Endpoint::Models)
        ));
        assert!(matches!(
            classify(&req("HEAD", "/healthz")),
            Ok(Endpoint::Health)
        ));
        let e = classify(&req("GET", "/v1/chat/completions")).err().unwrap();
        assert_eq!(e.status(), 405);
        let e = classify(&req("POST", "/v2/chat/completions"))
            .err()
            .unwrap();
        assert_eq!(e.status(), 404);
    }
}
