//! Who a request comes from (switchyard's `clients`): the gateway key it presents, the client it
//! belongs to, and whether that client may use the model it asks for.
//!
//! A client presents its key the way its SDK sends an API key (`Authorization: Bearer` for
//! OpenAI clients, `x-api-key` for Anthropic clients), or in `x-switchyard-key`. Under
//! `passthrough_auth` only `x-switchyard-key` counts: there the client's own credential is the
//! provider's and passes unchanged. Keys are kept and compared as SHA-256 digests, in constant
//! time, and the gateway key never goes upstream (`upstream` removes the header; a managed
//! provider's credential replaces the client's).

use pingora::http::RequestHeader;
use subtle::ConstantTimeEq;

use crate::config::{Client, ClientAuth};
use crate::error::GatewayError;
use crate::state::Snapshot;

pub use crate::auth::GATEWAY_KEY_HEADER as KEY_HEADER;

pub use crate::config::key_digest as digest;

/// The client `req` comes from: `None` when anonymous (allowed unless `auth: required`), or the
/// 401 the client gets for a missing or unknown key. `passthrough`: the request's provider
/// forwards the client's own credential, which then is not a gateway key.
pub fn identify<'a>(
    snapshot: &'a Snapshot,
    req: &RequestHeader,
    passthrough: bool,
) -> Result<Option<&'a Client>, GatewayError> {
    let clients = &snapshot.config.clients;
    if clients.is_empty() {
        return Ok(None);
    }
    let Some(key) = presented(req, passthrough) else {
        return match snapshot.config.listener.auth {
            ClientAuth::Required => Err(GatewayError::Unauthorized(if passthrough {
                "this gateway needs a key: send it in `x-switchyard-key` (the provider's own credential passes in `Authorization`)"
            } else {
                "this gateway needs a key: send it as your API key (`Authorization: Bearer` or `x-api-key`) or in `x-switchyard-key`"
            })),
            ClientAuth::Optional => Ok(None),
        };
    };
    let presented = digest(key);
    // Every client is compared, so the time taken says nothing about which one matched.
    let mut found = None;
    for client in clients {
        if bool::from(client.digest.ct_eq(&presented)) {
            found = Some(client);
        }
    }
    found
        .map(Some)
        .ok_or(GatewayError::Unauthorized("the gateway key is not valid"))
}

/// The key a request presents: `x-switchyard-key`, else (when the credential is not the
/// provider's) its API key.
fn presented(req: &RequestHeader, passthrough: bool) -> Option<&[u8]> {
    let header = |name: &http::HeaderName| {
        req.headers
            .get(name)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty())
    };
    if let Some(key) = header(&KEY_HEADER) {
        return Some(key);
    }
    if passthrough {
        return None;
    }
    let bearer = header(&http::header::AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.split_at(v.iter().position(|b| *b == b' ')?);
        scheme
            .eq_ignore_ascii_case(b"bearer")
            .then(|| token.trim_ascii())
            .filter(|t| !t.is_empty())
    });
    bearer
        .or_else(|| header(&crate::auth::X_API_KEY))
        .or_else(|| header(&crate::auth::API_KEY))
}

/// Whether `client` may use the model that resolves to `group`: one of its `models` names it
/// (see [`Snapshot::names`]). No list: every model.
pub fn allows(snapshot: &Snapshot, client: &Client, group: usize) -> bool {
    client
        .models
        .as_ref()
        .is_none_or(|models| models.iter().any(|m| snapshot.names(m, group)))
}

/// Whether `client` may use `model` (a name a preference route gives).
pub fn allows_model(snapshot: &Snapshot, client: &Client, model: &str) -> bool {
    snapshot
        .resolver
        .resolve(&snapshot.config.providers, Some(model))
        .is_ok_and(|r| allows(snapshot, client, r.group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn snapshot(auth: &str) -> Snapshot {
        let yaml = format!(
            "listeners: [{{type: model, name: llm, auth: {auth}}}]\nmodel_providers:\n  - {{model: openai/gpt-4o-mini, access_key: k}}\n  - {{model: openai/gpt-4o, access_key: k}}\n  - {{model: anthropic/*, access_key: k}}\nmodel_aliases: {{fast: {{target: openai/gpt-4o-mini}}}}\nclients:\n  - {{name: alice, key: $ALICE, models: [fast, anthropic/*]}}\n  - {{name: bob, key: 'sha256:{}'}}\n",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let config =
            Config::from_yaml(&yaml, &|v| (v == "ALICE").then(|| "sk-alice".into())).unwrap();
        Snapshot::new(config)
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn who(
        s: &Snapshot,
        headers: &[(&str, &str)],
        passthrough: bool,
    ) -> Result<Option<String>, u16> {
        identify(s, &req(headers), passthrough)
            .map(|c| c.map(|c| c.name.clone()))
            .map_err(|e| e.status())
    }

    #[test]
    fn a_key_is_found_however_the_sdk_sends_it() {
        let s = snapshot("required");
        assert_eq!(
            who(&s, &[("authorization", "Bearer sk-alice")], false),
            Ok(Some("alice".into()))
        );
        assert_eq!(
            who(&s, &[("x-api-key", "sk-alice")], false),
            Ok(Some("alice".into()))
        );
        assert_eq!(
            who(&s, &[(KEY_HEADER.as_str(), "sk-alice")], false),
            Ok(Some("alice".into()))
        );
        // A `sha256:` key: bob's key is "abc".
        assert_eq!(
            who(&s, &[("authorization", "Bearer abc")], false),
            Ok(Some("bob".into()))
        );
        // None, or a wrong one: 401.
        assert_eq!(who(&s, &[], false), Err(401));
        assert_eq!(
            who(&s, &[("authorization", "Bearer sk-mallory")], false),
            Err(401)
        );
        // Under passthrough the bearer is the provider's credential: only the header counts.
        assert_eq!(
            who(&s, &[("authorization", "Bearer sk-alice")], true),
            Err(401)
        );
        assert_eq!(
            who(
                &s,
                &[
                    ("authorization", "Bearer sk-provider"),
                    (KEY_HEADER.as_str(), "sk-alice")
                ],
                true
            ),
            Ok(Some("alice".into()))
        );
    }

    #[test]
    fn optional_lets_anonymous_requests_pass_but_not_wrong_keys() {
        let s = snapshot("optional");
        assert_eq!(who(&s, &[], false), Ok(None));
        assert_eq!(who(&s, &[("x-api-key", "sk-wrong")], false), Err(401));
    }

    #[test]
    fn a_client_uses_only_its_models() {
        let s = snapshot("required");
        let alice = &s.config.clients[0];
        let bob = &s.config.clients[1];
        assert!(allows_model(&s, alice, "fast"));
        assert!(
            allows_model(&s, alice, "openai/gpt-4o-mini"),
            "the alias's target"
        );
        assert!(allows_model(&s, alice, "anthropic/claude-x"), "provider/*");
        assert!(!allows_model(&s, alice, "openai/gpt-4o"));
        assert!(
            allows_model(&s, bob, "openai/gpt-4o"),
            "no list: every model"
        );
    }

    #[test]
    fn the_digest_is_never_printed() {
        let s = snapshot("required");
        let shown = format!("{:?}", s.config.clients);
        assert!(shown.contains("alice"));
        assert!(
            !shown.contains("digest") && !shown.contains("186"),
            "{shown}"
        );
    }
}
