//! Taking a request in: which of the gateway's paths it asks for, its whole body, bounded, and
//! the one [`Request`] value that preference routing and the exchange then work on.

use bytes::{Bytes, BytesMut};
use pingora::http::{Method, RequestHeader};
use pingora::proxy::Session;
use pingora::Result;

use crate::body::{self, Inspected};
use crate::catalog::Interface;
use crate::error::GatewayError;
use crate::resolve::ResolveError;
use crate::session::affinity;
use crate::state::Snapshot;
use crate::translate::Api;

/// A model request as taken in, read and resolved once: its API, body, what was found in the
/// body, and the group its `model` resolves to.
pub struct Request {
    pub api: Api,
    pub request_id: String,
    /// The client's query string, kept on the upstream path.
    pub query: Option<String>,
    /// Pins a conversation to one endpoint: `x-model-affinity`, else the body's `user`.
    pub affinity: Option<String>,
    pub body: Bytes,
    pub inspected: Inspected,
    /// The group the client's `model` resolves to, and the model id for its upstream.
    pub group: usize,
    pub upstream_model: String,
}

impl Request {
    /// Inspects `body` and resolves its model; fails with the error the client gets.
    pub fn new(
        snapshot: &Snapshot,
        api: Api,
        req: &RequestHeader,
        request_id: String,
        body: Bytes,
    ) -> std::result::Result<Request, GatewayError> {
        let inspected = body::inspect(&body).map_err(GatewayError::InvalidBody)?;
        let (group, upstream_model) = resolve(snapshot, inspected.model.as_deref())?;
        let affinity = affinity(req)
            .map(str::to_owned)
            .or_else(|| inspected.user.clone());
        Ok(Request {
            api,
            request_id,
            query: req.uri.query().map(str::to_owned),
            affinity,
            body,
            inspected,
            group,
            upstream_model,
        })
    }

    /// The gateway's own request for the model list of `group`'s upstream (`GET /models`,
    /// no body); it goes with the client's header, as a model request would.
    pub fn model_list(group: usize, request_id: String) -> Request {
        Request {
            api: Api::Models,
            request_id,
            query: None,
            affinity: None,
            body: Bytes::new(),
            inspected: Inspected::default(),
            group,
            upstream_model: String::new(),
        }
    }

    /// The model the client asked for.
    pub fn client_model(&self) -> Option<&str> {
        self.inspected.model.as_deref()
    }

    /// The same request with `body` in place of its own (the client's routing preferences
    /// taken out): inspected again, since the model may have moved.
    pub fn with_body(self, body: Bytes) -> std::result::Result<Request, GatewayError> {
        let inspected = body::inspect(&body).map_err(GatewayError::InvalidBody)?;
        Ok(Request {
            body,
            inspected,
            ..self
        })
    }

    /// Whether the client's model is served with the client's own credential
    /// (`passthrough_auth`): then that credential is not a gateway key (clients).
    pub fn passthrough(&self, snapshot: &Snapshot) -> bool {
        snapshot
            .lead(self.group)
            .is_some_and(|(_, p)| p.passthrough_auth)
    }

    /// The wire API of the endpoint that leads the client's model.
    pub fn lead_interface(&self, snapshot: &Snapshot) -> Interface {
        snapshot
            .lead(self.group)
            .map_or(Interface::OpenAi, |(_, p)| p.interface)
    }
}

/// The group and upstream model id that `requested` resolves to, or the error the client gets.
fn resolve(
    snapshot: &Snapshot,
    requested: Option<&str>,
) -> std::result::Result<(usize, String), GatewayError> {
    let route = snapshot
        .resolver
        .resolve(&snapshot.config.providers, requested)
        .map_err(|e| match e {
            ResolveError::MissingModel => GatewayError::MissingModel,
            ResolveError::UnknownModel => {
                GatewayError::ModelNotFound(requested.unwrap_or_default().to_owned())
            }
        })?;
    Ok((route.group, route.upstream_model.into_owned()))
}

/// The paths the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Health,
    Models,
    /// A model request forwarded to a provider, in the client's API.
    Model(Api),
    /// Plano's routing API: the preference-routing decision for a model request, answered
    /// without calling a model (`/routing/v1/chat/completions`, `/routing/v1/messages`).
    Decision(Api),
}

/// What the request asks for, or the error it gets.
pub fn classify(req: &RequestHeader) -> std::result::Result<Served, GatewayError> {
    let path = req.uri.path();
    let (served, allowed, allowed_name) = match path {
        "/healthz" => (Served::Health, Method::GET, "GET"),
        "/v1/models" => (Served::Models, Method::GET, "GET"),
        "/routing/v1/chat/completions" => (Served::Decision(Api::Chat), Method::POST, "POST"),
        "/routing/v1/messages" => (Served::Decision(Api::Messages), Method::POST, "POST"),
        p => match Api::from_path(p) {
            Some(api) => (Served::Model(api), Method::POST, "POST"),
            None => {
                return Err(GatewayError::UnknownPath {
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
    Ok(served)
}

/// Reads the whole request body, refusing more than `limit` bytes. The outer `Result` is an I/O
/// failure on the client connection; the inner one a body the gateway answers with an error.
///
/// Pingora's retry buffer is switched on first: a body of up to 64 KiB is then kept by Pingora
/// and replayed into `request_body_filter` on each attempt of the main request's proxy phase.
pub async fn read_body(
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
    if session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some()
    {
        session.write_continue_response().await?;
    }
    session.enable_retry_buffering();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> RequestHeader {
        RequestHeader::build(method, path.as_bytes(), None).unwrap()
    }

    #[test]
    fn paths_and_methods() {
        assert_eq!(
            classify(&req("POST", "/v1/chat/completions")).unwrap(),
            Served::Model(Api::Chat)
        );
        assert_eq!(
            classify(&req("POST", "/v1/messages")).unwrap(),
            Served::Model(Api::Messages)
        );
        assert_eq!(classify(&req("GET", "/v1/models")).unwrap(), Served::Models);
        assert_eq!(classify(&req("HEAD", "/healthz")).unwrap(), Served::Health);
        let e = classify(&req("GET", "/v1/chat/completions")).unwrap_err();
        assert_eq!(e.status(), 405);
        let e = classify(&req("POST", "/v2/chat/completions")).unwrap_err();
        assert_eq!(e.status(), 404);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_method_and_path_is_classified_or_refused_without_a_panic(
                method in "[A-Z]{1,8}",
                path in "/[ -~]{0,40}",
            ) {
                if let Ok(req) = RequestHeader::build(method.as_str(), path.as_bytes(), None) {
                    match classify(&req) {
                        Ok(Served::Model(api)) => {
                            prop_assert_eq!(Some(api), Api::from_path(req.uri.path()));
                            prop_assert_eq!(req.method.as_str(), "POST");
                        }
                        Ok(Served::Decision(_)) => {
                            prop_assert!(req.uri.path().starts_with("/routing/v1/"));
                        }
                        Ok(_) => prop_assert!(matches!(req.method.as_str(), "GET" | "HEAD")),
                        Err(e) => prop_assert!(e.status() == 404 || e.status() == 405, "{e}"),
                    }
                }
            }
        }
    }
}
