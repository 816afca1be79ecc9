//! `GET /v1/models`: the configured models and aliases (built with each snapshot), and for each
//! wildcard provider (`custom/*`) the models its upstream lists, under its prefix, as Plano lists
//! wildcard-expanded models.
//!
//! An upstream's list is asked like any provider request, through the proxy phase (a subrequest
//! carrying an exchange, as the router's question is): `upstream_peer` picks the endpoint,
//! `upstream_request_filter` applies the credential in the upstream's form (the provider's key,
//! or the caller's when the provider has `passthrough_auth`: a LiteLLM proxy lists what that key
//! may use; `x-api-key` for Anthropic), and the attempt counts in the upstream metrics. Lists
//! are cached per model and credential for a minute, and an upstream that does not answer in
//! time is simply left out.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::debug;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::json;

use crate::exchange::Exchange;
use crate::intake::Request;
use crate::state::Snapshot;
use crate::subrequest;

/// How long an upstream's list is reused.
const FRESH: Duration = Duration::from_secs(60);
/// How long an upstream that did not answer is left alone.
const FAILED: Duration = Duration::from_secs(10);
/// The longest the gateway waits for one upstream's list.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Cached lists kept (per model and credential); beyond it the cache starts over.
const MAX_CACHED: usize = 1024;

/// The upstream lists of wildcard providers, cached.
#[derive(Default)]
pub struct ModelLists {
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
    /// The list for the caller of `session`.
    pub async fn body(
        &self,
        session: &mut Session,
        snapshot: &Arc<Snapshot>,
        request_id: &str,
    ) -> Bytes {
        // One list per wildcard model (its endpoints, if several, serve the same models).
        let groups: Vec<usize> = (0..snapshot.resolver.group_count())
            .filter(|&g| snapshot.lead(g).is_some_and(|(_, p)| p.is_wildcard()))
            .collect();
        if groups.is_empty() {
            return snapshot.models_body.clone();
        }
        let mut data = snapshot.models.clone();
        for group in groups {
            let Some((_, provider)) = snapshot.lead(group) else {
                continue;
            };
            let prefix = provider.prefix.clone();
            for id in self.listed(session, snapshot, group, request_id).await {
                data.push(crate::catalog::model_entry(
                    &format!("{prefix}/{id}"),
                    &prefix,
                ));
            }
        }
        Bytes::from(json!({"object": "list", "data": data}).to_string())
    }

    /// The upstream list of wildcard model `group`, from the cache or asked for now.
    async fn listed(
        &self,
        session: &mut Session,
        snapshot: &Arc<Snapshot>,
        group: usize,
        request_id: &str,
    ) -> Vec<String> {
        let Some((_, provider)) = snapshot.lead(group) else {
            return Vec::new();
        };
        let key = {
            let mut h = DefaultHasher::new();
            provider.name.hash(&mut h);
            provider.origin.authority().hash(&mut h);
            if provider.passthrough_auth {
                // The caller's credential picks the list; only its hash is kept.
                let client = session.req_header();
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
        let name = provider.name.clone();
        let (ids, fresh_for) = match ask(session, snapshot, group, request_id).await {
            Ok(ids) => (ids, FRESH),
            Err(why) => {
                debug!("model list of `{name}`: {why}");
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
}

/// Asks `group`'s upstream for its list through the proxy phase.
async fn ask(
    session: &mut Session,
    snapshot: &Arc<Snapshot>,
    group: usize,
    request_id: &str,
) -> Result<Vec<String>, String> {
    let request = Request::model_list(group, request_id.to_owned());
    let x = Exchange::new(snapshot.clone(), request, &[]).map_err(|e| e.to_string())?;
    let (_, answer) = Box::pin(subrequest::ask(session, Box::new(x), TIMEOUT)).await;
    let answer = answer?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("status {}", answer.status));
    }
    let list: List = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    Ok(list.data.into_iter().map(|e| e.id).collect())
}
