//! Plano's `model_metrics_sources`: the figures `selection_policy.prefer` ranks a route's models
//! by. A cost source is a public price catalog (models.dev, or DigitalOcean's GenAI catalog),
//! read as input + output USD per million tokens, as Plano ranks it; a latency source is a
//! Prometheus instant query whose series carry a `model_name` label. A background service reads
//! each source when the gateway starts, again every `refresh_interval`, and retries one that
//! did not answer; until a source has answered, the gateway's own figures stand in (the
//! providers' `cost`, the latency it observed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{MetricsKind, MetricsSource};
use crate::side_call;
use crate::state::SharedState;

/// How often the service looks for sources that are due.
const TICK: Duration = Duration::from_secs(1);
/// When a source that did not answer is asked again.
const RETRY: Duration = Duration::from_secs(30);
/// How long one read may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (models.dev's whole catalog is about 1 MB).
const MAX_BODY: usize = 32 << 20;

/// The latest figures by model name.
#[derive(Default)]
pub struct Figures {
    cost: ArcSwap<HashMap<String, f64>>,
    latency: ArcSwap<HashMap<String, f64>>,
}

impl Figures {
    /// The price of the first of `names` a cost source knows.
    pub fn cost(&self, names: &[&str]) -> Option<f64> {
        first(&self.cost.load(), names)
    }

    /// The latency of the first of `names` a latency source knows.
    pub fn latency(&self, names: &[&str]) -> Option<f64> {
        first(&self.latency.load(), names)
    }

    /// Whether a latency source has answered: its figures then rank `fastest` alone (its unit
    /// is the query's, not comparable with the gateway's own).
    pub fn has_latency(&self) -> bool {
        !self.latency.load().is_empty()
    }

    /// The cost figures, or the latency ones.
    fn slot(&self, cost: bool) -> &ArcSwap<HashMap<String, f64>> {
        if cost {
            &self.cost
        } else {
            &self.latency
        }
    }
}

fn first(figures: &HashMap<String, f64>, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| figures.get(*n).copied())
}

/// The background service that reads the sources of the current config.
pub struct Feeds {
    pub state: SharedState,
    pub figures: Arc<Figures>,
    /// `overrides.upstream_tls_ca_path`, as the proxy uses it.
    pub ca_file: Option<String>,
}

#[async_trait]
impl BackgroundService for Feeds {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let connector = side_call::connector(self.ca_file.clone());
        // When each source (as configured now) is due; `None`: read, not to be read again.
        let mut due: HashMap<MetricsSource, Option<Instant>> = HashMap::new();
        loop {
            let sources = self.state.load().config.metrics_sources.clone();
            // A source a reload removed leaves no figures behind.
            due.retain(|s, _| sources.contains(s));
            for cost in [true, false] {
                let slot = self.figures.slot(cost);
                if !sources.iter().any(|s| s.kind.is_cost() == cost) && !slot.load().is_empty() {
                    slot.store(Arc::default());
                }
            }
            let now = Instant::now();
            for source in sources {
                let next = due.entry(source.clone()).or_insert(Some(now));
                if next.is_none_or(|t| t > now) {
                    continue;
                }
                *next = match read(&connector, &source).await {
                    Ok(figures) => {
                        info!(
                            "model_metrics_sources: {} figures from {}",
                            figures.len(),
                            source.url
                        );
                        self.figures
                            .slot(source.kind.is_cost())
                            .store(Arc::new(figures));
                        source.refresh.map(|r| Instant::now() + r)
                    }
                    Err(why) => {
                        warn!(
                            "model_metrics_sources: {} did not answer usably ({why}); asking again in {RETRY:?}",
                            source.url
                        );
                        Some(Instant::now() + RETRY)
                    }
                };
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Reads one source: its figures by model name.
async fn read(
    connector: &pingora::connectors::http::Connector,
    source: &MetricsSource,
) -> Result<HashMap<String, f64>, String> {
    let url = match &source.kind {
        MetricsKind::Prometheus { query } => query_url(&source.url, query),
        _ => source.url.clone(),
    };
    let body = side_call::get(connector, &url, TIMEOUT, MAX_BODY).await?;
    let figures = match &source.kind {
        MetricsKind::ModelsDev => models_dev(&body)?,
        MetricsKind::DigitalOcean => digitalocean(&body)?,
        MetricsKind::Prometheus { .. } => prometheus(&body)?,
    };
    Ok(aliased(figures, &source.model_aliases))
}

/// Prometheus's instant-query URL for `query` on the server at `base`.
fn query_url(base: &str, query: &str) -> String {
    let query: String =
        percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC).collect();
    format!("{}/api/v1/query?query={query}", base.trim_end_matches('/'))
}

/// Catalog keys renamed by `model_aliases` (catalog key → the name routes use).
fn aliased(
    mut figures: HashMap<String, f64>,
    aliases: &[(String, String)],
) -> HashMap<String, f64> {
    for (catalog, name) in aliases {
        if let Some(v) = figures.get(catalog).copied() {
            figures.insert(name.clone(), v);
        }
    }
    figures
}

/// models.dev: `{provider: {models: {id: {cost: {input, output}}}}}`, USD per million tokens;
/// each model is known as `provider/id` and, unless another provider took it, as `id`.
fn models_dev(body: &[u8]) -> Result<HashMap<String, f64>, String> {
    #[derive(Deserialize)]
    struct Provider {
        #[serde(default)]
        models: HashMap<String, Value>,
    }
    let catalog: HashMap<String, Provider> =
        serde_json::from_slice(body).map_err(|e| format!("not a models.dev catalog: {e}"))?;
    let mut out = HashMap::new();
    let mut providers: Vec<_> = catalog.into_iter().collect();
    // Bare ids go to the first provider in name order, so a refresh does not flip them.
    providers.sort_by(|a, b| a.0.cmp(&b.0));
    for (provider, p) in providers {
        for (id, model) in p.models {
            let cost = &model["cost"];
            let (Some(input), Some(output)) = (cost["input"].as_f64(), cost["output"].as_f64())
            else {
                continue;
            };
            out.insert(format!("{provider}/{id}"), input + output);
            out.entry(id).or_insert(input + output);
        }
    }
    Ok(out)
}

/// DigitalOcean's catalog: `{data: [{model_id, pricing: {input_price_per_million,
/// output_price_per_million}}]}`, prices per token despite the names (scaled as Plano does).
fn digitalocean(body: &[u8]) -> Result<HashMap<String, f64>, String> {
    let catalog: Value =
        serde_json::from_slice(body).map_err(|e| format!("not a DigitalOcean catalog: {e}"))?;
    let models = catalog["data"]
        .as_array()
        .ok_or("not a DigitalOcean catalog: no `data` list")?;
    Ok(models
        .iter()
        .filter_map(|m| {
            let id = m["model_id"].as_str()?;
            let pricing = m.get("pricing").filter(|p| p.is_object())?;
            let rate = |k: &str| pricing[k].as_f64().unwrap_or(0.0) * 1e6;
            Some((
                id.to_owned(),
                rate("input_price_per_million") + rate("output_price_per_million"),
            ))
        })
        .collect())
}

/// A Prometheus instant-query answer: each series' `model_name` label and its value.
fn prometheus(body: &[u8]) -> Result<HashMap<String, f64>, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!(
            "Prometheus: {}",
            answer["error"].as_str().unwrap_or("the query failed")
        ));
    }
    let series = answer["data"]["result"]
        .as_array()
        .ok_or("not a Prometheus vector")?;
    Ok(series
        .iter()
        .filter_map(|s| {
            let model = s["metric"]["model_name"].as_str()?;
            let value: f64 = s["value"][1].as_str()?.parse().ok()?;
            value.is_finite().then(|| (model.to_owned(), value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_dev_prices_are_input_plus_output_under_both_names() {
        let body = br#"{
            "openai": {"id": "openai", "models": {
                "gpt-4o": {"id": "gpt-4o", "cost": {"input": 2.5, "output": 10, "cache_read": 1.25}},
                "gpt-4o-mini": {"cost": {"input": 0.15, "output": 0.6}},
                "free-preview": {"name": "no cost listed"}
            }},
            "azure": {"models": {"gpt-4o": {"cost": {"input": 2.75, "output": 11}}}}
        }"#;
        let f = models_dev(body).unwrap();
        assert_eq!(f["openai/gpt-4o"], 12.5);
        assert_eq!(f["azure/gpt-4o"], 13.75);
        assert_eq!(f["openai/gpt-4o-mini"], 0.75);
        // The bare id is the first provider's by name, whatever order the catalog had.
        assert_eq!(f["gpt-4o"], 13.75);
        assert!(!f.contains_key("openai/free-preview"));
        assert!(models_dev(b"[1, 2]").is_err());
    }

    #[test]
    fn digitalocean_prices_are_scaled_per_million() {
        let body = br#"{"data": [
            {"model_id": "openai-gpt-oss-120b", "pricing": {"input_price_per_million": 0.0000001, "output_price_per_million": 0.0000007}},
            {"model_id": "no-pricing"}
        ]}"#;
        let f = digitalocean(body).unwrap();
        assert!((f["openai-gpt-oss-120b"] - 0.8).abs() < 1e-9);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn a_prometheus_vector_gives_each_model_its_value() {
        let body = br#"{"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"model_name": "openai/gpt-4o"}, "value": [1700000000.1, "0.82"]},
            {"metric": {"model_name": "vllm/llama"}, "value": [1700000000.1, "NaN"]},
            {"metric": {"job": "x"}, "value": [1700000000.1, "1"]}
        ]}}"#;
        let f = prometheus(body).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f["openai/gpt-4o"], 0.82);
        let failed = br#"{"status": "error", "errorType": "bad_data", "error": "parse error"}"#;
        assert!(prometheus(failed).unwrap_err().contains("parse error"));
    }

    #[test]
    fn aliases_name_catalog_models_as_routes_do_and_queries_are_encoded() {
        let f = aliased(
            HashMap::from([("openai/gpt-oss-120b".to_owned(), 0.8)]),
            &[("openai/gpt-oss-120b".into(), "openai/gpt-4o".into())],
        );
        assert_eq!(f["openai/gpt-4o"], 0.8);
        assert_eq!(
            query_url("http://prom:9090/", "avg by (model_name) (x[5m])"),
            "http://prom:9090/api/v1/query?query=avg%20by%20%28model%5Fname%29%20%28x%5B5m%5D%29"
        );
    }
}
