//! The runtime snapshot: everything a request needs, built from one [`Config`], swapped whole.
//!
//! Each request loads the snapshot once and keeps that `Arc` to the end, so a config change never
//! mixes two configs within one request.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::json;

use std::sync::atomic::AtomicU64;

use crate::catalog::model_entry as entry;
use crate::config::{Config, Origin, Provider};
use crate::conversations::Conversations;
use crate::dns::Addresses;
use crate::endpoints::health::Health;
use crate::quota::Quotas;
use crate::resolve::Resolver;
use crate::router::recall::Recall;
use crate::router::setup::Router;
use crate::store::Store;

/// The snapshot currently in force, shared by the proxy and the background services.
pub type SharedState = Arc<ArcSwap<Snapshot>>;

pub struct Snapshot {
    pub config: Config,
    pub resolver: Resolver,
    /// One per provider, same order as `config.providers`.
    upstreams: Vec<Upstream>,
    /// The `GET /v1/models` answer without wildcard providers; with them, its first entries.
    pub models_body: Bytes,
    pub models: Vec<serde_json::Value>,
    /// The preference router, when a provider serves the configured router model.
    pub router: Option<Router>,
    /// What preference routing remembers (session pins, recent answers); kept across reloads
    /// while the `routing` settings are the same.
    pub recall: Arc<Recall>,
    /// The state store replicas share, when configured (store).
    pub store: Option<Arc<Store>>,
    /// Responses conversations kept for translated providers (`state_storage`); kept across
    /// reloads while they are kept in the same place.
    pub conversations: Arc<Conversations>,
    /// Where limits and budgets are counted (here, and in Redis when shared); what this
    /// process counted is kept across every reload.
    pub quotas: Quotas,
    /// Round-robin position of each routing group.
    pub(crate) rotation: Vec<AtomicU64>,
}

/// Where one provider's requests go.
#[derive(Debug)]
pub struct Upstream {
    pub provider_name: String,
    pub origin: Origin,
    /// The `Host` header its requests carry.
    pub host_header: http::HeaderValue,
    /// Shared by all providers on the same `host:port`.
    pub addresses: Arc<Addresses>,
    /// Passive health; kept across reloads while the provider is unchanged.
    pub health: Arc<Health>,
    /// Its metric series, looked up once per snapshot.
    pub series: crate::metrics::Series,
}

impl Snapshot {
    /// Builds the snapshot. Cannot fail: the config was validated when it was loaded.
    pub fn new(config: Config) -> Snapshot {
        Snapshot::after(config, None)
    }

    /// Builds the snapshot that replaces `previous`: hosts it already knew keep their resolved
    /// addresses (and so their pooled connections, which Pingora keys by address).
    pub fn after(config: Config, previous: Option<&Snapshot>) -> Snapshot {
        let mut by_host: HashMap<(String, u16), Arc<Addresses>> = HashMap::new();
        let mut health: HashMap<(String, Origin), Arc<Health>> = HashMap::new();
        for upstream in previous.map_or(&[][..], |p| p.upstreams()) {
            let key = (upstream.origin.host.clone(), upstream.origin.port);
            by_host
                .entry(key)
                .or_insert_with(|| upstream.addresses.clone());
            let key = (upstream.provider_name.clone(), upstream.origin.clone());
            health.insert(key, upstream.health.clone());
        }
        let upstreams = config
            .providers
            .iter()
            .map(|p| {
                let key = (p.origin.host.clone(), p.origin.port);
                let addresses = by_host
                    .entry(key)
                    .or_insert_with(|| Arc::new(Addresses::new(&p.origin.host, p.origin.port)))
                    .clone();
                let health = health
                    .remove(&(p.name.clone(), p.origin.clone()))
                    .unwrap_or_default();
                Upstream {
                    // Checked at load (`http_host`) or made of the URL's authority.
                    host_header: http::HeaderValue::from_str(&p.host_header())
                        .unwrap_or_else(|_| http::HeaderValue::from_static("invalid")),
                    provider_name: p.name.clone(),
                    origin: p.origin.clone(),
                    addresses,
                    health,
                    series: Default::default(),
                }
            })
            .collect();
        let routes = Resolver::new(&config.providers, &config.aliases, &config.listener);
        let models = models(&config.providers, &config.aliases);
        // `state.redis`, else Plano's `routing.session_cache` (routing memory only); the
        // connection is kept while its settings are the same.
        let store = config
            .state
            .redis
            .as_ref()
            .or(config.routing.session_store.as_ref())
            .map(|settings| match previous.and_then(|p| p.store.as_ref()) {
                Some(s) if s.settings() == settings => s.clone(),
                _ => Arc::new(Store::new(settings.clone())),
            });
        let recall = match previous {
            Some(p) if p.recall.is_for(&config.routing) => p.recall.clone(),
            _ => Arc::new(Recall::new(&config.routing)),
        };
        // Shared by replicas only through `state.redis`, as limits are.
        let shared = config
            .state
            .redis
            .is_some()
            .then(|| store.clone())
            .flatten();
        let conversations = Conversations::after(
            previous.map(|p| &p.conversations),
            &config.state_storage,
            shared.clone(),
        );
        Snapshot {
            rotation: (0..routes.group_count())
                .map(|_| AtomicU64::new(0))
                .collect(),
            resolver: routes,
            models_body: Bytes::from(json!({"object": "list", "data": models}).to_string()),
            models,
            router: Router::of(&config),
            recall,
            quotas: Quotas::after(shared, previous.map(|p| &p.quotas)),
            conversations,
            store,
            upstreams,
            config,
        }
    }

    pub fn into_shared(self) -> SharedState {
        Arc::new(ArcSwap::from_pointee(self))
    }

    pub fn provider(&self, i: usize) -> &Provider {
        &self.config.providers[i]
    }

    /// The first entry of group `gid`: its settings lead the group, it names it in errors.
    pub fn lead(&self, gid: usize) -> Option<(usize, &Provider)> {
        let i = *self.resolver.group(gid).members.first()?;
        Some((i, self.provider(i)))
    }

    /// Whether `model`, as written in the config (a provider's name, model or bare id, an
    /// alias, or `provider/*`), names the models of group `gid`.
    pub fn names(&self, model: &str, gid: usize) -> bool {
        match model.strip_suffix("/*") {
            Some(prefix) => self.lead(gid).is_some_and(|(_, p)| p.prefix == prefix),
            None => self
                .resolver
                .resolve(&self.config.providers, Some(model))
                .is_ok_and(|r| r.group == gid),
        }
    }

    pub fn upstream(&self, i: usize) -> &Upstream {
        &self.upstreams[i]
    }

    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }
}

/// OpenAI's model list: provider names, then `model_aliases` (owned by their target's
/// provider). Wildcards are listed by what their upstream says (models).
fn models(providers: &[Provider], aliases: &[(String, String)]) -> Vec<serde_json::Value> {
    let mut data: Vec<_> = providers
        .iter()
        .filter(|p| !p.is_wildcard() && !p.internal)
        .map(|p| entry(&p.name, &p.prefix))
        .collect();
    for (alias, target) in aliases {
        // An alias of a provider switchyard does not speak yet is not listed: it cannot answer.
        let owner = providers.iter().find(|p| {
            !p.is_wildcard() && (&p.name == target || &p.model == target || &p.id == target)
        });
        if let Some(owner) = owner {
            data.push(entry(alias, &owner.prefix));
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_on_one_host_share_addresses() {
        let c = Config::from_yaml(
            "model_providers:\n  - {model: openai/gpt-4o, access_key: $K}\n  - {model: openai/gpt-4o-mini, access_key: $K}\n  - {model: groq/*, access_key: $K}\n",
            &|_| Some("k".into()),
        )
        .unwrap();
        let s = Snapshot::new(c);
        assert!(Arc::ptr_eq(
            &s.upstream(0).addresses,
            &s.upstream(1).addresses
        ));
        assert!(!Arc::ptr_eq(
            &s.upstream(0).addresses,
            &s.upstream(2).addresses
        ));
        let v: serde_json::Value = serde_json::from_slice(&s.models_body).unwrap();
        assert_eq!(v["object"], "list");
        let ids: Vec<_> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["openai/gpt-4o", "openai/gpt-4o-mini"]);
        assert_eq!(v["data"][0]["owned_by"], "openai");
    }

    #[test]
    fn a_new_snapshot_keeps_known_hosts_addresses() {
        let load = |yaml: &str| Config::from_yaml(yaml, &|_| Some("k".into())).unwrap();
        let old = Snapshot::new(load(
            "model_providers: [{model: openai/a, access_key: $K}, {model: groq/b, access_key: $K}]",
        ));
        let new = Snapshot::after(
            load("model_providers: [{model: openai/c, access_key: $K}, {model: mistral/d, access_key: $K}]"),
            Some(&old),
        );
        assert!(Arc::ptr_eq(
            &old.upstream(0).addresses,
            &new.upstream(0).addresses
        ));
        assert!(!Arc::ptr_eq(
            &old.upstream(1).addresses,
            &new.upstream(1).addresses
        ));
    }
}
