//! What an attempt sends: the Pingora peer of the chosen endpoint (address, TLS and SNI, ALPN,
//! timeouts) and the request header the provider gets (path, `Host`, framing, credential).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{header, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

use crate::auth::{self, AuthStyle};
use crate::catalog::{Interface, AZURE_API_VERSION};
use crate::config::Provider;
use crate::request_id;
use crate::sigv4;
use crate::state::Snapshot;
use crate::translate::Api;

/// How long an idle pooled upstream connection is kept.
pub const IDLE_POOL_TIMEOUT: Duration = Duration::from_secs(90);

/// Concurrent requests on one HTTP/2 upstream connection.
const H2_STREAMS: usize = 100;

/// The peer for provider `pidx` at `addr`, with its timeouts. Reads are bounded by the shorter
/// of `first_byte` and `idle` (Pingora 0.9.1 has one per-read timeout for header and body), and
/// never past the request's `deadline`.
pub fn peer(
    snapshot: &Snapshot,
    pidx: usize,
    addr: SocketAddr,
    deadline: Option<Instant>,
) -> HttpPeer {
    let config = &snapshot.config;
    let provider = snapshot.provider(pidx);
    let origin = &provider.origin;
    let mut peer = HttpPeer::new(addr, origin.tls, origin.host.clone());
    let timeouts = provider.timeouts.or(config.listener.timeouts);
    let idle = timeouts.idle.unwrap_or(config.listener.timeout);
    let mut read = timeouts.first_byte.map_or(idle, |f| f.min(idle));
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        read = read.min(left.max(Duration::from_millis(1)));
    }
    peer.options.total_connection_timeout = Some(
        timeouts
            .connect
            .unwrap_or(config.overrides.upstream_connect_timeout),
    );
    peer.options.read_timeout = Some(read);
    peer.options.write_timeout = Some(idle);
    peer.options.idle_timeout = Some(IDLE_POOL_TIMEOUT);
    // HTTPS providers are offered HTTP/2 and HTTP/1.1; plain-text ones speak HTTP/1.1.
    if origin.tls && provider.http2 {
        peer.options.set_http_version(2, 1);
        peer.options.max_h2_streams = H2_STREAMS;
    }
    peer
}

/// Turns the client's header (already stripped of hop-by-hop fields by Pingora) into the
/// provider's: its path and host, framing for the rewritten `body`, the request id and the
/// credential (or, for Bedrock with AWS credentials, the request's signature).
pub fn request(
    req: &mut RequestHeader,
    provider: &Provider,
    host: &HeaderValue,
    path: &str,
    body: &[u8],
    auth: AuthStyle,
    request_id: &str,
) -> Result<()> {
    req.set_uri(
        path.parse()
            .map_err(|_| pingora::Error::new_str("invalid upstream path"))?,
    );
    for name in [
        header::TRANSFER_ENCODING,
        header::EXPECT,
        // The response must be plain bytes for usage accounting and translation.
        header::ACCEPT_ENCODING,
        header::CONNECTION,
        // The gateway key stays here.
        auth::GATEWAY_KEY_HEADER,
    ] {
        auth::remove(req, &name);
    }
    req.insert_header(header::CONTENT_LENGTH, body.len())?;
    req.insert_header(header::HOST, host.clone())?;
    req.insert_header(request_id::HEADER, request_id)?;
    auth::apply(req, provider, auth)?;
    if let Some(creds) = &provider.aws {
        // What is signed is what is sent: this body, this content type, this path.
        req.insert_header(header::CONTENT_TYPE, "application/json")?;
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let signed = sigv4::Signed {
            method: req.method.as_str(),
            host: host.to_str().unwrap_or_default(),
            path,
            query,
            content_type: "application/json",
            body,
            service: "bedrock",
        };
        for (name, value) in sigv4::sign(&signed, creds, std::time::SystemTime::now()) {
            req.insert_header(name, value)?;
        }
    }
    Ok(())
}

/// A traced attempt's W3C trace context: its own span as the parent (replacing the client's);
/// a new trace does not carry a client's `tracestate`, which belongs to another.
pub fn trace_context(req: &mut RequestHeader, trace: &crate::trace::CallTrace) -> Result<()> {
    use crate::trace::context::{TRACEPARENT, TRACESTATE};
    if let Some(value) = trace.traceparent() {
        req.insert_header(TRACEPARENT, value)?;
    }
    if trace.new_trace() {
        req.remove_header(&TRACESTATE);
    }
    Ok(())
}

/// The upstream path and query: the provider's prefix and the API's endpoint (Azure: the
/// deployment path and an `api-version`), with the client's query kept.
pub fn path(
    provider: &Provider,
    api: Api,
    model: &str,
    query: Option<&str>,
    stream: bool,
) -> String {
    let prefix = &provider.origin.path_prefix;
    // Bedrock: the model in the path, percent-encoded (an ARN's `/` as `%2F`: with a literal
    // one Bedrock answers 200 with an error), the stream another operation.
    if api == Api::Converse {
        let id = utf8_percent_encode(model, MODEL_ID);
        let operation = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        return match query {
            Some(q) => format!("{prefix}/model/{id}/{operation}?{q}"),
            None => format!("{prefix}/model/{id}/{operation}"),
        };
    }
    // Azure's Responses API is its `v1` API, beside the deployments: the deployment is the
    // body's `model`, and no `api-version` is needed.
    if provider.interface == Interface::AzureOpenAi && api == Api::Responses {
        let root = prefix.strip_suffix("/deployments").unwrap_or(prefix);
        return match query {
            Some(q) => format!("{root}/v1/responses?{q}"),
            None => format!("{root}/v1/responses"),
        };
    }
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

/// What of a Bedrock model id is percent-encoded in its path: all but letters, digits and
/// `-._~:` (an inference profile's `us.amazon.nova-pro-v1:0` stays as it is).
const MODEL_ID: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// What of a client's query string goes to an upstream spoken to in another API: only what
/// the upstream's API needs of it (Azure's `api-version`).
pub fn kept_query(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|p| p.starts_with("api-version="))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn provider(yaml: &str) -> Provider {
        let c = Config::from_yaml(yaml, &|_| Some("sk-provider".into())).unwrap();
        c.providers.into_iter().next().unwrap()
    }

    #[test]
    fn upstream_paths_replace_v1_and_keep_the_query() {
        let openai = provider("model_providers: [{model: openai/gpt-4o, access_key: $K}]");
        let groq = provider("model_providers: [{model: groq/llama, access_key: $K}]");
        let bare = provider("model_providers: [{model: custom/m, base_url: 'http://h/'}]");
        assert_eq!(
            path(&openai, Api::Chat, "gpt-4o", None, false),
            "/v1/chat/completions"
        );
        assert_eq!(
            path(&groq, Api::Chat, "llama", Some("x=1"), false),
            "/openai/v1/chat/completions?x=1"
        );
        assert_eq!(
            path(&bare, Api::Embeddings, "m", None, false),
            "/v1/embeddings"
        );
    }

    #[test]
    fn a_translated_request_keeps_only_the_query_its_upstream_needs() {
        assert_eq!(kept_query(Some("beta=true")), None);
        assert_eq!(kept_query(None), None);
        assert_eq!(
            kept_query(Some("beta=true&api-version=2024-10-21")).as_deref(),
            Some("api-version=2024-10-21")
        );
    }

    #[test]
    fn azure_responses_go_to_its_v1_api() {
        let azure = provider(
            "model_providers: [{model: azure_openai/gpt-5, base_url: 'https://r.openai.azure.com', access_key: $K}]",
        );
        assert_eq!(
            path(&azure, Api::Responses, "gpt-5", None, false),
            "/openai/v1/responses"
        );
        assert_eq!(
            path(
                &azure,
                Api::Responses,
                "gpt-5",
                Some("api-version=preview"),
                false
            ),
            "/openai/v1/responses?api-version=preview"
        );
    }

    #[test]
    fn bedrock_paths_name_the_model_encoded_and_the_operation() {
        let bedrock = provider(
            "model_providers: [{model: amazon_bedrock/us.amazon.nova-pro-v1:0, base_url: 'https://bedrock-runtime.us-west-2.amazonaws.com', access_key: $K}]",
        );
        assert_eq!(
            path(
                &bedrock,
                Api::Converse,
                "us.amazon.nova-pro-v1:0",
                None,
                false
            ),
            "/model/us.amazon.nova-pro-v1:0/converse"
        );
        let arn = "arn:aws:bedrock:us-west-2:123:inference-profile/us.anthropic.claude-3-5";
        assert_eq!(
            path(&bedrock, Api::Converse, arn, None, true),
            "/model/arn:aws:bedrock:us-west-2:123:inference-profile%2Fus.anthropic.claude-3-5/converse-stream"
        );
    }

    #[test]
    fn azure_paths_name_the_deployment_and_an_api_version() {
        let azure = provider(
            "model_providers: [{model: azure_openai/gpt-4o, base_url: 'https://r.openai.azure.com', access_key: $K}]",
        );
        assert_eq!(
            path(&azure, Api::Chat, "gpt-4o", None, false),
            format!("/openai/deployments/gpt-4o/chat/completions?api-version={AZURE_API_VERSION}")
        );
        assert_eq!(
            path(
                &azure,
                Api::Chat,
                "gpt-4o",
                Some("api-version=2024-10-21"),
                false
            ),
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn the_upstream_header_is_framed_for_the_new_body_with_the_providers_credential() {
        let p = provider(
            "model_providers: [{model: openai/gpt-4o, base_url: 'http://10.0.0.1:8080', access_key: $K}]",
        );
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (name, value) in [
            ("Host", "gateway.example"),
            ("Transfer-Encoding", "chunked"),
            ("Expect", "100-continue"),
            ("Accept-Encoding", "gzip"),
            ("Content-Length", "999"),
            ("X-Request-Id", "client-id"),
            ("Authorization", "Bearer sk-client"),
            ("OpenAI-Organization", "org-1"),
        ] {
            req.append_header(name, value).unwrap();
        }
        request(
            &mut req,
            &p,
            &HeaderValue::from_str(&p.host_header()).unwrap(),
            "/v1/chat/completions?x=1",
            &[b' '; 18],
            AuthStyle::Bearer,
            "req-1",
        )
        .unwrap();
        let get = |n: &str| {
            req.headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        for gone in ["transfer-encoding", "expect", "accept-encoding"] {
            assert!(get(gone).is_empty(), "{gone} was forwarded");
        }
        assert_eq!(get("host"), ["10.0.0.1:8080"]);
        assert_eq!(get("content-length"), ["18"]);
        assert_eq!(get("x-request-id"), ["req-1"]);
        assert_eq!(get("authorization"), ["Bearer sk-provider"]);
        assert_eq!(get("openai-organization"), ["org-1"]);
        assert_eq!(req.uri, "/v1/chat/completions?x=1");
    }

    #[test]
    fn https_peers_offer_h2_unless_turned_off_and_reads_end_by_the_deadline() {
        let load =
            |yaml: &str| Snapshot::new(Config::from_yaml(yaml, &|_| Some("k".into())).unwrap());
        let addr: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let s = load("model_providers: [{model: openai/a, access_key: $K, timeouts: {first_byte: 2s, idle: 30s}}]");
        let p = peer(&s, 0, addr, None);
        assert_eq!(p.sni, "api.openai.com");
        assert_eq!(p.options.alpn, pingora::protocols::ALPN::H2H1);
        assert_eq!(p.options.read_timeout, Some(Duration::from_secs(2)));
        let soon = Instant::now() + Duration::from_millis(500);
        let p = peer(&s, 0, addr, Some(soon));
        assert!(p.options.read_timeout.unwrap() <= Duration::from_millis(500));
        let s = load("model_providers: [{model: openai/a, access_key: $K, http2: false}]");
        assert_eq!(
            peer(&s, 0, addr, None).options.alpn,
            pingora::protocols::ALPN::H1
        );
        let s = load("model_providers: [{model: custom/a, base_url: 'http://127.0.0.1:1'}]");
        assert_eq!(
            peer(&s, 0, addr, None).options.alpn,
            pingora::protocols::ALPN::H1
        );
    }
}
