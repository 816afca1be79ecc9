//! Decodes Plano's schema (v0.1 … v0.4.0) plus switchyard's `server` block from a [`Node`] tree,
//! then cross-checks the result. Every problem is collected; none stops the decoding.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::values::{expand_env, parse_duration, parse_size, Secret};
use super::yaml::{self, index, Fields, Node, Report, Value};
use super::{
    AwsCredentials, Client, ClientAuth, Config, ConfigError, HealthCheck, KeyHeaders, LbPolicy,
    Listener, MetricsKind, MetricsSource, ModelLimit, OnStoreError, Origin, Outlier, Overrides,
    Prefer, Provider, RateRule, RedisSettings, Retry, Routing, RoutingPreference, ServerSettings,
    Sink, StateSettings, StateStorage, Timeouts,
};
use crate::catalog::{self, Interface};

mod clients;
mod limits;
mod listener;
mod provider;
mod routing;
mod server;
mod tracing;

use clients::clients;
use limits::{ratelimits, state, state_storage};
use listener::{listeners, outlier, retry, timeouts};
pub use provider::HOSTED_ROUTER;
use provider::{hosted_router, provider, InlinePrefs};
use routing::{
    inline_preferences, metrics_sources, migrate_inline_preferences, routing, routing_preferences,
};
use server::server;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Versions Plano's schema accepts.
const VERSIONS: &[&str] = &["v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0"];

/// Top-level keys of Plano's schema that switchyard accepts but does not implement yet.
const PLANNED_TOP_LEVEL: &[&str] = &[
    "prompt_caching",
    "endpoints",
    "agents",
    "filters",
    "prompt_targets",
    "system_prompt",
    "prompt_guards",
    "mode",
];

/// `overrides` keys of Plano's schema that switchyard does not use.
const PLANNED_OVERRIDES: &[&str] = &[
    "agent_orchestration_model",
    "disable_signals",
    "prompt_target_intent_matching_threshold",
    "optimize_context_window",
    "use_agent_orchestrator",
];

/// Model-listener keys of Plano's schema that switchyard does not implement yet.
const PLANNED_LISTENER: &[&str] = &["input_filters", "output_filters"];

pub(super) fn decode(text: &str, env: Env) -> Result<Config, ConfigError> {
    let doc = yaml::parse(text).map_err(|p| ConfigError {
        file: None,
        problems: vec![p],
    })?;
    let mut r = Report::default();
    let config = decode_root(&mut r, &doc, env);
    // Document order, whatever order the checks ran in.
    r.errors.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
    r.warnings.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
    match config {
        Some(config) if r.errors.is_empty() => Ok(Config {
            warnings: r.warnings,
            ..config
        }),
        _ => Err(ConfigError {
            file: None,
            problems: r.errors,
        }),
    }
}

fn decode_root(r: &mut Report, doc: &Node, env: Env) -> Option<Config> {
    let mut f = Fields::of(r, "", doc)?;

    let version = f.take("version").and_then(|(path, node)| {
        let v = yaml::string(r, &path, node)?;
        if VERSIONS.contains(&v.as_str()) {
            Some(v)
        } else {
            r.error(
                &path,
                node.line,
                format!(
                    "unsupported version `{v}`; expected one of {}",
                    VERSIONS.join(", ")
                ),
            );
            None
        }
    });

    let listener = match f.take("listeners") {
        Some((path, node)) => listeners(r, &path, node),
        None => Listener::default(),
    };

    let mut inline_prefs = Vec::new();
    let providers_node = match (f.take("model_providers"), f.take("llm_providers")) {
        (Some(p), None) => Some(p),
        (None, Some((path, node))) => {
            r.warn(&path, node.line, "deprecated; use `model_providers`");
            Some((path, node))
        }
        (Some(_), Some((path, node))) => {
            r.error(
                &path,
                node.line,
                "give `model_providers` or its deprecated alias `llm_providers`, not both",
            );
            None
        }
        (None, None) => None,
    };
    let mut providers = Vec::new();
    if let Some((path, node)) = providers_node {
        for (i, item) in yaml::list(r, &path, node)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some((p, prefs)) = provider(r, &index(&path, i), item, env) {
                inline_prefs.push((p.model.clone(), prefs));
                providers.push(p);
            }
        }
    }

    let aliases = f
        .take("model_aliases")
        .map(|(path, node)| model_aliases(r, &path, node, &providers))
        .unwrap_or_default();

    let mut routing_preferences = f
        .take("routing_preferences")
        .map(|(path, node)| routing_preferences(r, &path, node, &providers))
        .unwrap_or_default();
    migrate_inline_preferences(&mut routing_preferences, inline_prefs);

    let metrics_sources = f
        .take("model_metrics_sources")
        .map(|(path, node)| metrics_sources(r, &path, node))
        .unwrap_or_default();

    let (routing, archgw_router) = f
        .take("routing")
        .map(|(path, node)| routing(r, &path, node, &providers, &aliases, env))
        .unwrap_or_default();

    let mut overrides = f
        .take("overrides")
        .map(|(path, node)| overrides(r, &path, node))
        .unwrap_or_default();
    // archgw named its router in `routing`; Plano's override wins when both are given.
    if let (Some(model), false) = (archgw_router, overrides.llm_routing_model_given) {
        overrides.llm_routing_model = model;
    }

    // Plano asks its hosted router when no provider serves the router model; so does switchyard.
    if !routing_preferences.is_empty()
        && super::find_router(&providers, &overrides.llm_routing_model).is_none()
    {
        providers.extend(hosted_router(&overrides.llm_routing_model, env));
        // Prompts leave the house: said at every start and by `-t`, never silently.
        r.warnings.push(super::yaml::Problem {
            path: "routing_preferences".into(),
            line: None,
            message: format!(
                "no provider serves the router model `{}`: the conversations of routed requests go to Plano's hosted router ({HOSTED_ROUTER}), a third party, as in Plano; serve the router model yourself and add it as a provider to keep them in house",
                overrides.llm_routing_model
            ),
        });
    }

    let clients = f
        .take("clients")
        .map(|(path, node)| clients(r, &path, node, env))
        .unwrap_or_default();

    let ratelimits = f
        .take("ratelimits")
        .map(|(path, node)| ratelimits(r, &path, node))
        .unwrap_or_default();

    let state = f
        .take("state")
        .map(|(path, node)| state(r, &path, node, env))
        .unwrap_or_default();

    let state_storage = f
        .take("state_storage")
        .map(|(path, node)| state_storage(r, &path, node, env))
        .unwrap_or_default();

    let tracing = f
        .take("tracing")
        .and_then(|(path, node)| tracing::tracing(r, &path, node, env));

    let server = f
        .take("server")
        .map(|(path, node)| server(r, &path, node))
        .unwrap_or_default();

    f.finish(r, PLANNED_TOP_LEVEL);

    name_endpoints(&mut providers);
    let config = Config {
        version,
        listener,
        providers,
        aliases,
        routing_preferences,
        routing,
        metrics_sources,
        overrides,
        server,
        clients,
        ratelimits,
        state,
        state_storage,
        tracing,
        warnings: Vec::new(),
    };
    cross_check(r, &config);
    Some(config)
}

fn model_aliases(
    r: &mut Report,
    path: &str,
    node: &Node,
    providers: &[Provider],
) -> Vec<(String, String)> {
    let Some(mut f) = Fields::of(r, path, node) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (alias, _, value) in f.rest() {
        let p = yaml::join(path, alias);
        let Some(mut af) = Fields::of(r, &p, value) else {
            continue;
        };
        let target = match af.take("target") {
            Some((tp, tn)) => yaml::string(r, &tp, tn).map(|t| (t, tp, tn.line)),
            None => {
                r.error(&p, value.line, "missing required key `target`");
                None
            }
        };
        af.finish(r, &[]);
        let Some((target, tp, line)) = target else {
            continue;
        };
        let served = providers
            .iter()
            .any(|p| !p.is_wildcard() && (p.name == target || p.model == target || p.id == target));
        // An alias of a provider switchyard does not speak yet still loads; it answers 501.
        if served {
            out.push((alias.to_owned(), target));
        } else {
            r.error(
                &tp,
                line,
                format!("`{target}` is not a configured (non-wildcard) model"),
            );
        }
    }
    out
}

fn overrides(r: &mut Report, path: &str, node: &Node) -> Overrides {
    let mut o = Overrides::default();
    let Some(mut f) = Fields::of(r, path, node) else {
        return o;
    };
    if let Some((p, n)) = f.take("upstream_connect_timeout") {
        if let Some(t) = positive_duration(r, &p, n) {
            o.upstream_connect_timeout = t;
        }
    }
    if let Some((p, n)) = f.take("upstream_tls_ca_path") {
        if let Some(file) = yaml::string(r, &p, n) {
            let mut store = pingora::tls::RootCertStore::empty();
            match pingora::tls::load_ca_file_into_store(&file, &mut store) {
                Ok(()) if !store.is_empty() => o.upstream_tls_ca_path = Some(PathBuf::from(file)),
                Ok(()) => r.error(&p, n.line, format!("`{file}` holds no certificates")),
                Err(e) => r.error(&p, n.line, format!("cannot load CA bundle `{file}`: {e}")),
            }
        }
    }
    if let Some((p, n)) = f.take("llm_routing_model") {
        if let Some(m) = yaml::string(r, &p, n) {
            o.llm_routing_model = m;
            o.llm_routing_model_given = true;
        }
    }
    if let Some((p, n)) = f.take("orchestrator_model_context_length") {
        if let Some(len) = yaml::integer(r, &p, n, 256, 10_000_000) {
            o.orchestrator_model_context_length = Some(len as usize);
        }
    }
    f.finish(r, PLANNED_OVERRIDES);
    o
}

/// Entries repeating a `model` are endpoints of that model (switchyard extension); the later
/// ones, when not named, are named `<model>#<n>` so every endpoint has its own name.
fn name_endpoints(providers: &mut [Provider]) {
    let mut seen: HashMap<String, u32> = HashMap::new();
    for p in providers.iter_mut() {
        let n = seen.entry(p.model.clone()).or_insert(0);
        *n += 1;
        if *n > 1 && p.name == p.model {
            p.name = format!("{}#{n}", p.model);
        }
    }
}

/// Whether `m` names a configured model: a provider's name, model or bare id, an alias, or
/// `provider/*` of a configured provider.
fn known_model(c: &Config, m: &str) -> bool {
    match m.strip_suffix("/*") {
        Some(prefix) => c.providers.iter().any(|p| p.prefix == prefix),
        None => {
            c.aliases.iter().any(|(alias, _)| alias == m)
                || c.providers
                    .iter()
                    .any(|p| p.name == m || p.model == m || p.id == m)
        }
    }
}

fn cross_check(r: &mut Report, c: &Config) {
    if c.listener.auth == ClientAuth::Required && c.clients.is_empty() {
        r.errors.push(super::yaml::Problem {
            path: "listeners[0].auth".into(),
            line: None,
            message: "`auth: required` needs at least one entry in `clients`".into(),
        });
    }
    // Models named by clients and limits are configured ones: names, models, bare ids, aliases
    // or `provider/*`.
    let mut unknown = |path: String, line: u64, m: &str| {
        if !known_model(c, m) {
            r.errors.push(super::yaml::Problem {
                path,
                line: Some(line),
                message: format!("`{m}` is not a configured model, alias or `provider/*`"),
            });
        }
    };
    for (i, client) in c.clients.iter().enumerate() {
        for (j, m) in client.models.iter().flatten().enumerate() {
            unknown(format!("clients[{i}].models[{j}]"), client.line, m);
        }
        for limit in &client.model_limits {
            let path = format!("clients[{i}].model_limits.{}", limit.model);
            unknown(path, limit.line, &limit.model);
        }
    }
    for (i, rule) in c.ratelimits.iter().enumerate() {
        unknown(format!("ratelimits[{i}].model"), rule.line, &rule.model);
    }
    // Plano refuses `cheapest` without a cost source; switchyard also has the providers' `cost`,
    // and says when neither gives a route anything to rank by.
    let has_cost_source = c.metrics_sources.iter().any(|s| s.kind.is_cost());
    for (i, pref) in c.routing_preferences.iter().enumerate() {
        let priced = |m: &String| {
            c.providers
                .iter()
                .any(|p| (&p.name == m || &p.model == m) && p.cost.is_some())
        };
        if pref.prefer == Prefer::Cheapest && !has_cost_source && !pref.models.iter().any(priced) {
            r.warnings.push(super::yaml::Problem {
                path: format!("routing_preferences[{i}].selection_policy"),
                line: None,
                message: format!(
                    "route `{}` prefers cheapest but nothing prices its models (no cost source in model_metrics_sources, no `cost` on their providers); they are tried as written",
                    pref.name
                ),
            });
        }
    }
    let mut names: HashMap<&str, u64> = HashMap::new();
    let mut models: HashMap<&str, u64> = HashMap::new();
    let mut bare: HashMap<&str, (&str, u64)> = HashMap::new();
    let mut default: Option<u64> = None;
    for (i, p) in c.providers.iter().enumerate() {
        let path = format!("model_providers[{i}]");
        if let Some(first) = names.insert(&p.name, p.line) {
            r.error(
                &path,
                p.line,
                format!("name `{}` is already used on line {first}", p.name),
            );
        }
        models.entry(&p.model).or_insert(p.line);
        if p.is_wildcard() {
            if p.default {
                r.error(&path, p.line, "a wildcard provider cannot be the default");
            }
        } else if let Some((model, first)) = bare.get(p.id.as_str()) {
            if *model != p.model {
                r.error(
                    &path,
                    p.line,
                    format!("model id `{}` is also served by the provider on line {first}; bare ids must be unique (as in Plano), so that `{}` alone names one model: give one of them another id (an Azure deployment's own name) and use `fallbacks` to fail over between them", p.id, p.id),
                );
            }
        } else {
            bare.insert(&p.id, (&p.model, p.line));
        }
        if p.default {
            if let Some(first) = default {
                r.error(
                    &path,
                    p.line,
                    format!("only one provider may be the default (the first is on line {first})"),
                );
            }
            default = Some(p.line);
        }
        for fallback in &p.fallbacks {
            let target = c.providers.iter().find(|q| {
                !q.is_wildcard()
                    && (q.model == *fallback || q.name == *fallback || q.id == *fallback)
            });
            match target {
                None => r.error(
                    &format!("{path}.fallbacks"),
                    p.line,
                    format!("`{fallback}` is not a configured (non-wildcard) model"),
                ),
                Some(q) if q.model == p.model => r.error(
                    &format!("{path}.fallbacks"),
                    p.line,
                    format!("`{fallback}` is this model itself"),
                ),
                Some(_) => {}
            }
        }
        if p.passthrough_auth && p.access_key.is_some() {
            r.warn(&path, p.line, "both passthrough_auth and access_key are set; access_key is ignored and the client's credential is forwarded");
        }
        if !p.passthrough_auth && p.access_key.is_none() && !p.custom_base_url {
            r.warn(&path, p.line, "built-in provider without access_key or passthrough_auth; its requests will be refused");
        }
    }
}

fn required_string(r: &mut Report, f: &mut Fields<'_>, key: &str, node: &Node) -> Option<String> {
    match f.take(key) {
        Some((p, n)) => yaml::string(r, &p, n),
        None => {
            r.error(f.path(), node.line, format!("missing required key `{key}`"));
            None
        }
    }
}

fn expanded(r: &mut Report, path: &str, node: &Node, env: Env) -> Option<String> {
    let raw = yaml::string(r, path, node)?;
    match expand_env(&raw, env) {
        Ok(v) => Some(v),
        Err(e) => {
            r.error(path, node.line, e.to_string());
            None
        }
    }
}

/// A duration that must be more than zero (a zero timeout would refuse everything).
fn positive_duration(r: &mut Report, path: &str, node: &Node) -> Option<Duration> {
    let d = duration(r, path, node)?;
    if d.is_zero() {
        r.error(path, node.line, "must be more than zero");
        return None;
    }
    Some(d)
}

fn duration(r: &mut Report, path: &str, node: &Node) -> Option<Duration> {
    let parsed = match &node.value {
        Value::Int(secs) if *secs >= 0 => Some(Duration::from_secs(*secs as u64)),
        Value::Str(s) => parse_duration(s),
        _ => None,
    };
    if parsed.is_none() {
        r.error(
            path,
            node.line,
            "expected a duration such as `300s`, `500ms` or `5m`",
        );
    }
    parsed
}
