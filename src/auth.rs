//! Upstream credentials: the provider's `access_key`, or the client's own credential when the
//! provider has `passthrough_auth: true` (Plano's rule for proxies and multi-tenant setups).
//!
//! A client's credential never reaches an upstream unless that provider has `passthrough_auth`.

use http::header::{self, HeaderName};
use pingora::http::RequestHeader;
use pingora::Result;

/// The header that carries a gateway key (clients) beside a provider credential; it never goes
/// upstream.
pub const GATEWAY_KEY_HEADER: HeaderName = HeaderName::from_static("x-switchyard-key");

// The names the gateway sets or looks up on every request, made once rather than parsed from a
// string each time.
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const API_KEY: HeaderName = HeaderName::from_static("api-key");
const ANTHROPIC_VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");
const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

use crate::catalog::Interface;
use crate::config::Provider;
use crate::translate::Api;

/// How an upstream expects its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI-wire upstreams).
    Bearer,
    /// `x-api-key: <key>` plus `anthropic-version` (Anthropic Messages upstreams).
    XApiKey,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
}

impl AuthStyle {
    /// The form an upstream of `interface`, spoken to in `api`, expects.
    pub fn for_upstream(interface: Interface, api: Api) -> AuthStyle {
        match (interface, api) {
            (Interface::AzureOpenAi, _) => AuthStyle::ApiKey,
            (_, Api::Messages | Api::CountTokens) | (Interface::Anthropic, Api::Models) => {
                AuthStyle::XApiKey
            }
            _ => AuthStyle::Bearer,
        }
    }
}

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Whether a request to `provider` can be sent: a built-in provider needs a key or passthrough.
/// (Self-hosted endpoints given by `base_url`, such as Ollama or vLLM, may need no auth at all.)
pub fn has_credentials(provider: &Provider) -> bool {
    provider.passthrough_auth || provider.access_key.is_some() || provider.custom_base_url
}

/// Sets the upstream credential on `req`, then the provider's extra `headers` (which may
/// override it, as in Plano).
pub fn apply(req: &mut RequestHeader, provider: &Provider, style: AuthStyle) -> Result<()> {
    let client = if provider.passthrough_auth {
        client_credential(req)
    } else {
        None
    };
    for name in [header::AUTHORIZATION, X_API_KEY, API_KEY] {
        remove(req, &name);
    }
    match (&provider.key_headers, client) {
        // The provider's key: its header values were made at load.
        (Some(key), _) if !provider.passthrough_auth => match style {
            AuthStyle::Bearer => req.insert_header(header::AUTHORIZATION, key.bearer.clone())?,
            AuthStyle::XApiKey => req.insert_header(X_API_KEY, key.raw.clone())?,
            AuthStyle::ApiKey => req.insert_header(API_KEY, key.raw.clone())?,
        },
        (_, None) => {}
        (_, Some(Credential::Token(token))) if style == AuthStyle::Bearer => {
            req.insert_header(header::AUTHORIZATION, format!("Bearer {token}"))?;
        }
        // A non-Bearer Authorization (e.g. Basic) is forwarded as the client sent it.
        (_, Some(Credential::Raw(value))) if style == AuthStyle::Bearer => {
            req.insert_header(header::AUTHORIZATION, value)?;
        }
        (_, Some(Credential::Token(token) | Credential::Raw(token))) => {
            let name = if style == AuthStyle::XApiKey {
                X_API_KEY
            } else {
                API_KEY
            };
            req.insert_header(name, token)?;
        }
    }
    // Anthropic's headers mean nothing to other upstreams.
    if style != AuthStyle::XApiKey {
        remove(req, &ANTHROPIC_VERSION_HEADER);
        remove(req, &ANTHROPIC_BETA);
    }
    if style == AuthStyle::XApiKey && req.headers.get(ANTHROPIC_VERSION_HEADER).is_none() {
        req.insert_header(ANTHROPIC_VERSION_HEADER, ANTHROPIC_VERSION)?;
    }
    for (name, value) in &provider.headers {
        req.insert_header(name.clone(), value.expose())?;
    }
    Ok(())
}

/// Removes a header if present (most are not; removing also walks Pingora's case map).
pub fn remove(req: &mut RequestHeader, name: &HeaderName) {
    if req.headers.contains_key(name) {
        req.remove_header(name);
    }
}

enum Credential {
    /// A bare token: from `Authorization: Bearer <token>` or `x-api-key`.
    Token(String),
    /// An `Authorization` value of another scheme, kept whole.
    Raw(String),
}

/// The client's credential: `Authorization` (a `Bearer ` prefix is stripped), else `x-api-key`,
/// else Azure's `api-key`.
fn client_credential(req: &RequestHeader) -> Option<Credential> {
    if let Some(value) = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        return Some(match strip_bearer(value) {
            Some(token) => Credential::Token(token.to_owned()),
            None => Credential::Raw(value.to_owned()),
        });
    }
    [X_API_KEY, API_KEY].into_iter().find_map(|name| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| Credential::Token(v.trim().to_owned()))
    })
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn provider(yaml: &str) -> Provider {
        let c = Config::from_yaml(yaml, &|_| Some("sk-managed".into())).unwrap();
        c.providers.into_iter().next().unwrap()
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in headers {
            req.insert_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
        req.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn managed_key_replaces_the_clients() {
        let p = provider("model_providers: [{model: openai/gpt-4o, access_key: $K}]");
        let mut req = request(&[
            ("authorization", "Bearer sk-client"),
            ("x-api-key", "sk-client"),
        ]);
        apply(&mut req, &p, AuthStyle::Bearer).unwrap();
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-managed"));
        assert_eq!(header(&req, "x-api-key"), None);
    }

    #[test]
    fn passthrough_forwards_the_clients_bearer_unchanged() {
        let p = provider(
            "model_providers: [{model: openai/gpt-4o, passthrough_auth: true, access_key: $K}]",
        );
        let mut req = request(&[("authorization", "Bearer sk-client-1")]);
        apply(&mut req, &p, AuthStyle::Bearer).unwrap();
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-client-1"));
    }

    #[test]
    fn passthrough_reemits_x_api_key_as_bearer() {
        let p = provider("model_providers: [{model: openai/gpt-4o, passthrough_auth: true}]");
        let mut req = request(&[("x-api-key", "sk-ant-client")]);
        apply(&mut req, &p, AuthStyle::Bearer).unwrap();
        assert_eq!(header(&req, "authorization"), Some("Bearer sk-ant-client"));
        assert_eq!(header(&req, "x-api-key"), None);
    }

    #[test]
    fn passthrough_to_an_anthropic_style_upstream() {
        let p = provider("model_providers: [{model: anthropic/claude, passthrough_auth: true}]");
        let mut req = request(&[("authorization", "bearer sk-ant-client")]);
        apply(&mut req, &p, AuthStyle::XApiKey).unwrap();
        assert_eq!(header(&req, "x-api-key"), Some("sk-ant-client"));
        assert_eq!(header(&req, "authorization"), None);
        assert_eq!(header(&req, "anthropic-version"), Some(ANTHROPIC_VERSION));
    }

    #[test]
    fn passthrough_without_a_credential_sends_none() {
        let p = provider("model_providers: [{model: openai/gpt-4o, passthrough_auth: true}]");
        let mut req = request(&[]);
        apply(&mut req, &p, AuthStyle::Bearer).unwrap();
        assert_eq!(header(&req, "authorization"), None);
    }

    #[test]
    fn self_hosted_without_key_sends_no_auth_and_drops_the_clients() {
        let p = provider(
            "model_providers: [{model: ollama/llama3, base_url: 'http://127.0.0.1:11434'}]",
        );
        assert!(has_credentials(&p));
        let mut req = request(&[("authorization", "Bearer sk-client")]);
        apply(&mut req, &p, AuthStyle::Bearer).unwrap();
        assert_eq!(header(&req, "authorization"), None);
    }

    #[test]
    fn extra_headers_come_after_auth() {
        let p = provider(
            "model_providers: [{model: openai/gpt-4o, access_key: $K, headers: {X-Team: blue, Authorization: 'Bearer override'}}]",
        );
        let mut req = request(&[]);
        apply(&mut req, &p, AuthStyle::Bearer).unwrap();
        assert_eq!(header(&req, "x-team"), Some("blue"));
        assert_eq!(header(&req, "authorization"), Some("Bearer override"));
    }

    #[test]
    fn azure_gets_an_api_key_header_and_no_anthropic_headers() {
        let p = provider("model_providers: [{model: azure_openai/gpt-4o, base_url: 'https://r.openai.azure.com', access_key: $K}]");
        let mut req = request(&[
            ("authorization", "Bearer sk-client"),
            ("anthropic-version", "2023-06-01"),
        ]);
        apply(
            &mut req,
            &p,
            AuthStyle::for_upstream(p.interface, Api::Chat),
        )
        .unwrap();
        assert_eq!(header(&req, "api-key"), Some("sk-managed"));
        assert_eq!(header(&req, "authorization"), None);
        assert_eq!(header(&req, "anthropic-version"), None);
    }

    #[test]
    fn the_clients_anthropic_headers_reach_an_anthropic_upstream() {
        let p = provider("model_providers: [{model: anthropic/claude, access_key: $K}]");
        let mut req = request(&[
            ("anthropic-version", "2024-01-01"),
            ("anthropic-beta", "tools-1"),
        ]);
        apply(
            &mut req,
            &p,
            AuthStyle::for_upstream(p.interface, Api::Messages),
        )
        .unwrap();
        assert_eq!(header(&req, "x-api-key"), Some("sk-managed"));
        assert_eq!(header(&req, "anthropic-version"), Some("2024-01-01"));
        assert_eq!(header(&req, "anthropic-beta"), Some("tools-1"));
    }

    #[test]
    fn built_in_provider_without_key_has_no_credentials() {
        let p = provider("model_providers: [{model: openai/gpt-4o}]");
        assert!(!has_credentials(&p));
    }
}
