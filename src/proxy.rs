//! The `ProxyHttp` implementation. Callbacks stay thin and delegate.
//!
//! ```text
//!  client ──► main session                           subrequest (same ProxyHttp)
//!            request_filter:                         early_request_filter: attach Forward, fix framing
//!              local answers (/healthz, /v1/models,  request_filter: pass
//!              errors), or read body → route →       upstream_peer: provider's address
//!              rewrite → forward::run ─────────────► upstream_request_filter: path, Host, auth
//!            ◄── response tasks piped back ───────── response from the provider
//!            logging: one access-log line            logging: nothing (the main logs)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use log::info;
use pingora::http::{Method, RequestHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::auth::{self, AuthStyle};
use crate::body;
use crate::error::GatewayError;
use crate::forward::{self, Forward, Outcome};
use crate::respond;
use crate::routing::RouteError;
use crate::state::{SharedState, Snapshot};

/// How long an idle pooled upstream connection is kept.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The gateway: routes each model request to its provider.
pub struct Gateway {
    state: SharedState,
}

impl Gateway {
    pub fn new(state: SharedState) -> Self {
        Gateway { state }
    }
}

/// Per-request state. In the main session it collects what the access log says; in a
/// subrequest it holds the forwarding decision.
pub struct RequestCtx {
    started: Instant,
    /// Set in subrequests only.
    forward: Option<Arc<Forward>>,
    /// The model the client asked for (main session).
    model: Option<String>,
    /// The provider chosen (main session).
    provider: Option<String>,
    outcome: Option<Outcome>,
    /// Subrequest: connect attempts so far, where in the upstream's address list this request
    /// starts, and how many addresses there are.
    connect_attempts: usize,
    first_address: Option<usize>,
    addresses: usize,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            forward: None,
            model: None,
            provider: None,
            outcome: None,
            connect_attempts: 0,
            first_address: None,
            addresses: 0,
        }
    }

    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &RequestCtx) -> bool {
        session.subrequest_ctx.is_none()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(forward) = forward::decision(session) {
            forward::fix_subrequest_framing(session.req_header_mut(), forward.body.len())?;
            ctx.forward = Some(forward);
        }
        Ok(())
    }

    /// Main session: answers locally or forwards, and always returns `Ok(true)` (answered).
    /// Subrequest: `Ok(false)`, go upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if ctx.forward.is_some() {
            return Ok(false);
        }
        let snapshot = self.state.load_full();
        match classify(session.req_header()) {
            Ok(Endpoint::Health) => {
                respond::json(session, 200, Bytes::from_static(b"{\"status\":\"ok\"}")).await?
            }
            Ok(Endpoint::Models) => {
                respond::json(session, 200, snapshot.models_body.clone()).await?
            }
            Ok(Endpoint::Model) => handle_model_request(session, ctx, snapshot).await?,
            Err(e) => respond::error(session, &e).await?,
        }
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let forward = ctx
            .forward
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route for this request"))?;
        peer(&forward, ctx).await.map(Box::new)
    }

    /// A host with several addresses (A and AAAA records, say) may refuse on one of them: try
    /// the next before giving up. Nothing has been sent yet, so the retry is safe.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_attempts += 1;
        if ctx.connect_attempts < ctx.addresses {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match &ctx.forward {
            Some(forward) => rewrite_upstream_request(req, forward),
            None => Ok(()),
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = status_for(e);
        // In a subrequest nothing is written: the main session answers (see forward::run).
        if ctx.forward.is_none() && code != 0 && session.response_written().is_none() {
            let _ = respond::json(session, code, error_body(code)).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.forward.is_some() {
            return;
        }
        let req = session.req_header();
        let status = session.response_written().map_or(0, |h| h.status.as_u16());
        let model: String = ctx
            .model
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(120)
            .collect();
        let outcome = match (e, ctx.outcome) {
            (Some(e), _) => format!(" error=\"{}\"", e.etype().as_str()),
            (None, Some(Outcome::UpstreamError)) => " error=upstream".to_owned(),
            _ => String::new(),
        };
        info!(
            "{} {} model={:?} provider={} status={} duration_ms={:.1}{}",
            req.method,
            req.uri.path(),
            model,
            ctx.provider.as_deref().unwrap_or("-"),
            status,
            ctx.started.elapsed().as_secs_f64() * 1000.0,
            outcome,
        );
    }
}

/// The endpoints the gateway serves.
enum Endpoint {
    Health,
    Models,
    /// A model request forwarded to a provider.
    Model,
}

const MODEL_PATHS: &[&str] = &["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

fn classify(req: &RequestHeader) -> std::result::Result<Endpoint, GatewayError> {
    let path = req.uri.path();
    let (endpoint, allowed, allowed_name) = match path {
        "/healthz" => (Endpoint::Health, Method::GET, "GET"),
        "/v1/models" => (Endpoint::Models, Method::GET, "GET"),
        p if MODEL_PATHS.contains(&p) => (Endpoint::Model, Method::POST, "POST"),
        _ => {
            return Err(GatewayError::UnknownEndpoint {
                method: req.method.to_string(),
                path: path.to_owned(),
            })
        }
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

/// Reads, routes and forwards one model request; answers errors itself.
async fn handle_model_request(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: Arc<Snapshot>,
) -> Result<()> {
    let limit = snapshot.config.server.max_request_body;
    let body = match read_body(session, limit).await? {
        Ok(body) => body,
        Err(e) => return respond::error(session, &e).await,
    };
    let inspected = match body::inspect(&body) {
        Ok(i) => i,
        Err(why) => return respond::error(session, &GatewayError::InvalidBody(why)).await,
    };
    ctx.model = inspected.model.clone();
    let route = match snapshot
        .routes
        .resolve(&snapshot.config.providers, inspected.model.as_deref())
    {
        Ok(route) => route,
        Err(RouteError::MissingModel) => {
            return respond::error(session, &GatewayError::MissingModel).await
        }
        Err(RouteError::UnknownModel) => {
            let model = inspected.model.clone().unwrap_or_default();
            return respond::error(session, &GatewayError::ModelNotFound(model)).await;
        }
    };
    let provider = snapshot.provider(route.provider);
    ctx.provider = Some(provider.name.clone());
    if !auth::has_credentials(provider) {
        return respond::error(session, &GatewayError::NoAccessKey(provider.name.clone())).await;
    }
    let body = body::with_model(&body, &inspected, &route.upstream_model);
    let path = upstream_path(&provider.endpoint.path_prefix, session.req_header());
    let forward = Arc::new(Forward {
        provider: route.provider,
        path,
        body,
        snapshot: snapshot.clone(),
    });
    ctx.outcome = Some(forward::run(session, forward).await?);
    Ok(())
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

/// The provider's path prefix plus what follows the client's `/v1`, and the query.
fn upstream_path(prefix: &str, req: &RequestHeader) -> String {
    let path = req.uri.path();
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    match req.uri.query() {
        Some(q) => format!("{prefix}{rest}?{q}"),
        None => format!("{prefix}{rest}"),
    }
}

async fn peer(forward: &Forward, ctx: &mut RequestCtx) -> Result<HttpPeer> {
    let config = &forward.snapshot.config;
    let upstream = forward.snapshot.upstream(forward.provider);
    let addrs = upstream.addresses.current().await.map_err(|e| {
        Error::because(
            ErrorType::ConnectNoRoute,
            format!("cannot resolve {}", upstream.endpoint.host),
            e,
        )
    })?;
    let first = *ctx
        .first_address
        .get_or_insert_with(|| upstream.addresses.next_start());
    ctx.addresses = addrs.len();
    let addr = addrs
        .get((first + ctx.connect_attempts) % addrs.len().max(1))
        .copied()
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "the upstream has no address"))?;
    let mut peer = HttpPeer::new(addr, upstream.endpoint.tls, upstream.endpoint.host.clone());
    peer.options.total_connection_timeout = Some(config.overrides.upstream_connect_timeout);
    peer.options.read_timeout = Some(config.listener.timeout);
    peer.options.write_timeout = Some(config.listener.timeout);
    peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
    Ok(peer)
}

fn rewrite_upstream_request(req: &mut RequestHeader, forward: &Forward) -> Result<()> {
    let provider = forward.snapshot.provider(forward.provider);
    let uri = forward
        .path
        .parse()
        .map_err(|e| Error::because(ErrorType::InternalError, "bad upstream path", e))?;
    req.set_uri(uri);
    req.insert_header("content-length", forward.body.len().to_string())?;
    req.remove_header("transfer-encoding");
    req.remove_header("expect");
    // The body filters must see plain bytes (usage accounting, translation).
    req.remove_header("accept-encoding");
    let host = provider
        .http_host
        .clone()
        .unwrap_or_else(|| provider.endpoint.authority());
    req.insert_header("host", host)?;
    auth::apply(req, provider, AuthStyle::Bearer)
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

    #[test]
    fn upstream_paths_replace_v1_and_keep_the_query() {
        assert_eq!(
            upstream_path("/v1", &req("POST", "/v1/chat/completions")),
            "/v1/chat/completions"
        );
        assert_eq!(
            upstream_path("/openai/v1", &req("POST", "/v1/chat/completions?x=1")),
            "/openai/v1/chat/completions?x=1"
        );
        assert_eq!(
            upstream_path("", &req("POST", "/v1/embeddings")),
            "/embeddings"
        );
    }

    #[test]
    fn endpoints_and_methods() {
        assert!(matches!(
            classify(&req("POST", "/v1/chat/completions")),
            Ok(Endpoint::Model)
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
