//! `GET /v1/models`: the configured models and aliases (built with each snapshot), and for each
//! wildcard provider (`custom/*`) the models its upstream lists, under its prefix, as Plano lists
//! wildcard-expanded models.
//!
//! An upstream's list is a side call of the gateway (`side_call`, like the health checks): asked with the provider's credential, or with the caller's when the provider has
//! `passthrough_auth` (a LiteLLM proxy lists what that key may use), cached per provider and
//! credential for a minute, and simply left out when the upstream does not answer in time.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::debug;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, AuthStyle};
use crate::config::Provider;
use crate::state::Snapshot;
use crate::translate::Api;
use crate::{side_call, upstream};

/// How long an upstream's list is reused.
const FRESH: Duration = Duration::from_secs(60);
/// How long an upstream that did not answer is left alone.
const FAILED: Duration = Duration::from_secs(10);
/// The longest the gateway waits for one upstream's list.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest list read.
const MAX_BODY: usize = 4 << 20;
/// Cached lists kept (per provider and credential); beyond it the cache starts over.
const MAX_CACHED: usize = 1024;

/// The upstream lists of wildcard providers, cached.
pub struct ModelLists {
    connector: Connector,
    cache: Mutex<HashMap<u64, Cached>>,
}

struct Cached {
    until: Instant,
    ids: Vec<String>,
}

#[derive(Deserialize)]
struct List {
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
}

impl ModelLists {
    /// `ca_file`: `overrides.upstream_tls_ca_path`, as the proxy uses it.
    pub fn new(ca_file: Option<String>) -> ModelLists {
        ModelLists {
            connector: side_call::connector(ca_file),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The list for a caller whose request header is `client`.
    pub async fn body(&self, snapshot: &Snapshot, client: &RequestHeader) -> Bytes {
        let wildcards: Vec<usize> = (0..snapshot.config.providers.len())
            .filter(|&i| snapshot.provider(i).is_wildcard())
            .collect();
        if wildcards.is_empty() {
            return snapshot.models_body.clone();
        }
        let mut data = snapshot.models.clone();
        for pidx in wildcards {
            let provider = snapshot.provider(pidx);
            for id in self.listed(snapshot, pidx, client).await {
                data.push(crate::catalog::model_entry(
                    &format!("{}/{id}", provider.prefix),
                    &provider.prefix,
                ));
            }
        }
        Bytes::from(json!({"object": "list", "data": data}).to_string())
    }

    /// Provider `pidx`'s upstream list, from the cache or asked for now.
    async fn listed(
        &self,
        snapshot: &Snapshot,
        pidx: usize,
        client: &RequestHeader,
    ) -> Vec<String> {
        let provider = snapshot.provider(pidx);
        let key = {
            let mut h = DefaultHasher::new();
            provider.name.hash(&mut h);
            snapshot.upstream(pidx).origin.authority().hash(&mut h);
            if provider.passthrough_auth {
                // The caller's credential picks the list; only its hash is kept.
                for name in ["authorization", "x-api-key", "api-key"] {
                    client.headers.get(name).map(|v| v.as_bytes()).hash(&mut h);
                }
            }
            h.finish()
        };
        let now = Instant::now();
        if let Some(c) = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&key).filter(|c| c.until > now).map(|c| c.ids.clone()))
        {
            return c;
        }
        let fetched = tokio::time::timeout(TIMEOUT, self.fetch(snapshot, pidx, client)).await;
        let (ids, fresh_for) = match fetched {
            Ok(Ok(ids)) => (ids, FRESH),
            Ok(Err(why)) => {
                debug!("model list of `{}`: {why}", provider.name);
                (Vec::new(), FAILED)
            }
            Err(_) => {
                debug!(
                    "model list of `{}`: no answer within {TIMEOUT:?}",
                    provider.name
                );
                (Vec::new(), FAILED)
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                key,
                Cached {
                    until: now + fresh_for,
                    ids: ids.clone(),
                },
            );
        }
        ids
    }

    async fn fetch(
        &self,
        snapshot: &Snapshot,
        pidx: usize,
        client: &RequestHeader,
    ) -> Result<Vec<String>, String> {
        let provider = snapshot.provider(pidx);
        let target = snapshot.upstream(pidx);
        let addrs = target
            .addresses
            .current()
            .await
            .map_err(|e| e.to_string())?;
        let addr = *addrs.first().ok_or("no address")?;
        let peer = upstream::peer(snapshot, pidx, addr, Some(Instant::now() + TIMEOUT));
        let mut req = RequestHeader::build("GET", list_path(provider).as_bytes(), None)
            .map_err(|e| e.to_string())?;
        // The client's credential headers, for a passthrough provider to forward.
        for name in ["authorization", "x-api-key", "api-key"] {
            if let Some(v) = client.headers.get(name) {
                req.insert_header(name, v.clone())
                    .map_err(|e| e.to_string())?;
            }
        }
        req.insert_header(http::header::HOST, target.host_header.clone())
            .map_err(|e| e.to_string())?;
        let style = AuthStyle::for_upstream(provider.interface, Api::Chat);
        auth::apply(&mut req, provider, style).map_err(|e| e.to_string())?;
        let (status, body) = side_call::send(&self.connector, &peer, req, MAX_BODY).await?;
        if !(200..300).contains(&status) {
            return Err(format!("status {status}"));
        }
        let list: List = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(list.data.into_iter().map(|e| e.id).collect())
    }
}

/// Where an upstream lists its models: next to its API (`/v1/models`).
fn list_path(provider: &Provider) -> String {
    format!("{}/models", provider.origin.path_prefix)
}
