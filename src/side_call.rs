//! The gateway's own HTTP calls, which are not a client's request and so do not go through the
//! proxy phase: active health checks, the cost and latency feeds of preference routing, and
//! the span exporter's OTLP exports (trace::export). (Anything asked of a provider, the
//! wildcard model lists included, goes through the proxy phase: models.rs.) Each is one request
//! on Pingora's connector (its TLS and pool), bounded in time by the caller and in size here.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Uri};
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;

/// A connector for side calls; `ca_file` is `overrides.upstream_tls_ca_path`, as the proxy
/// uses it.
pub fn connector(ca_file: Option<String>) -> Connector {
    Connector::new(Some(ConnectorOptions {
        ca_file,
        ..ConnectorOptions::new(1)
    }))
}

/// What a side call was answered.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// HTTP/2 trailers (gRPC's status), when the answer had some.
    pub trailers: Option<HeaderMap>,
}

/// Sends `req` (no body) to `peer` and reads the answer: its status and at most `max_body`
/// bytes of body (more is an error).
pub async fn send(
    connector: &Connector,
    peer: &HttpPeer,
    req: RequestHeader,
    max_body: usize,
) -> Result<(u16, Bytes), String> {
    let (reply, _) = call(connector, peer, req, None, max_body).await?;
    Ok((reply.status, reply.body))
}

/// Sends `req` with `body` to `peer` and reads the whole answer (at most `max_body` bytes of
/// body); the connection goes back to the pool for the next call.
pub async fn post(
    connector: &Connector,
    peer: &HttpPeer,
    req: RequestHeader,
    body: Bytes,
    max_body: usize,
) -> Result<Reply, String> {
    let (reply, session) = call(connector, peer, req, Some(body), max_body).await?;
    connector.release_http_session(session, peer, None).await;
    Ok(reply)
}

async fn call(
    connector: &Connector,
    peer: &HttpPeer,
    req: RequestHeader,
    request_body: Option<Bytes>,
    max_body: usize,
) -> Result<(Reply, HttpSession), String> {
    let (mut session, _) = connector
        .get_http_session(peer)
        .await
        .map_err(|e| crate::error::cause(&e).to_owned())?;
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(b) = request_body {
        session
            .write_request_body(b, true)
            .await
            .map_err(|e| e.to_string())?;
    }
    session
        .finish_request_body()
        .await
        .map_err(|e| e.to_string())?;
    session
        .read_response_header()
        .await
        .map_err(|e| crate::error::cause(&e).to_owned())?;
    let (status, headers) = session
        .response_header()
        .map_or((0, HeaderMap::new()), |h| {
            (h.status.as_u16(), h.headers.clone())
        });
    let mut body = BytesMut::new();
    while let Some(chunk) = session
        .read_response_body()
        .await
        .map_err(|e| crate::error::cause(&e).to_owned())?
    {
        if body.len() + chunk.len() > max_body {
            return Err(format!("answer larger than {max_body} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let trailers = match &mut session {
        HttpSession::H2(h2) => h2.read_trailers().await.map_err(|e| e.to_string())?,
        _ => None,
    };
    let reply = Reply {
        status,
        headers,
        body: body.freeze(),
        trailers,
    };
    Ok((reply, session))
}

/// The first address of `host`, resolved now.
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))
}

/// `GET url` (`http` or `https`), answered with a 2xx within `timeout`: its body.
pub async fn get(
    connector: &Connector,
    url: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, String> {
    let call = async {
        let uri: Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL must be http or https".to_owned()),
        };
        let host = uri.host().ok_or("the URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = resolve(host, port).await?;
        let mut peer = HttpPeer::new(addr, tls, host.to_owned());
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req =
            RequestHeader::build("GET", path.as_bytes(), None).map_err(|e| e.to_string())?;
        let origin = crate::config::Origin {
            tls,
            host: host.to_owned(),
            port,
            path_prefix: String::new(),
        };
        req.insert_header("host", origin.authority())
            .map_err(|e| e.to_string())?;
        req.insert_header("accept", "application/json")
            .map_err(|e| e.to_string())?;
        match send(connector, &peer, req, max_body).await? {
            (status, body) if (200..300).contains(&status) => Ok(body),
            (status, _) => Err(format!("status {status}")),
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
