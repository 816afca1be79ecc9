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
    Config, ConfigError, HealthCheck, LbPolicy, Listener, MetricsKind, MetricsSource, Origin,
    Outlier, Overrides, Prefer, Provider, Retry, Routing, RoutingPreference, ServerSettings, Sink,
    Timeouts, Unsupported,
};
use crate::catalog::{self, Interface};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Versions Plano's schema accepts.
const VERSIONS: &[&str] = &["v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0"];

/// Top-level keys of Plano's schema that switchyard accepts but does not implement yet.
const PLANNED_TOP_LEVEL: &[&str] = &[
    "prompt_caching",
    "ratelimits",
    "tracing",
    "endpoints",
    "state_storage",
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
    let mut unsupported = Vec::new();
    if let Some((path, node)) = providers_node {
        for (i, item) in yaml::list(r, &path, node)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match provider(r, &index(&path, i), item, env) {
                Some(Entry::Served(p, prefs)) => {
                    inline_prefs.push((p.model.clone(), prefs));
                    providers.push(*p);
                }
                Some(Entry::Unsupported(u)) => unsupported.push(u),
                None => {}
            }
        }
    }

    let aliases = f
        .take("model_aliases")
        .map(|(path, node)| model_aliases(r, &path, node, &providers, &unsupported))
        .unwrap_or_default();

    let mut routing_preferences = f
        .take("routing_preferences")
        .map(|(path, node)| routing_preferences(r, &path, node, &providers, &unsupported))
        .unwrap_or_default();
    migrate_inline_preferences(&mut routing_preferences, inline_prefs);

    let metrics_sources = f
        .take("model_metrics_sources")
        .map(|(path, node)| metrics_sources(r, &path, node))
        .unwrap_or_default();

    let (routing, archgw_router) = f
        .take("routing")
        .map(|(path, node)| routing(r, &path, node, &providers, &aliases))
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
        unsupported,
        aliases,
        routing_preferences,
        routing,
        metrics_sources,
        overrides,
        server,
        warnings: Vec::new(),
    };
    cross_check(r, &config);
    Some(config)
}

fn listeners(r: &mut Report, path: &str, node: &Node) -> Listener {
    match &node.value {
        Value::Seq(items) => {
            let mut model: Option<(Listener, u64)> = None;
            for (i, item) in items.iter().enumerate() {
                let item_path = index(path, i);
                let Some(mut f) = Fields::of(r, &item_path, item) else {
                    continue;
                };
                let kind = f
                    .take("type")
                    .and_then(|(p, n)| yaml::string(r, &p, n).map(|s| (s, p, n.line)));
                let name = f.take("name").and_then(|(p, n)| yaml::string(r, &p, n));
                match kind {
                    Some((kind, _, _)) if kind == "model" => {
                        let Some(name) = name else {
                            r.error(&item_path, item.line, "missing required key `name`");
                            continue;
                        };
                        let listener = model_listener(r, f, name);
                        if let Some((_, first_line)) = &model {
                            r.error(
                                &item_path,
                                item.line,
                                format!("only one `type: model` listener is allowed (the first is on line {first_line})"),
                            );
                        } else {
                            model = Some((listener, item.line));
                        }
                    }
                    Some((kind, kind_path, line)) if kind == "prompt" || kind == "agent" => {
                        r.warn(
                            &kind_path,
                            line,
                            format!(
                                "`{kind}` listeners are not implemented by switchyard yet; ignored"
                            ),
                        );
                        f.rest();
                    }
                    Some((kind, kind_path, line)) => {
                        r.error(
                            &kind_path,
                            line,
                            format!(
                                "unknown listener type `{kind}`; expected model, prompt or agent"
                            ),
                        );
                        f.rest();
                    }
                    None => {
                        r.error(&item_path, item.line, "missing required key `type`");
                        f.rest();
                    }
                }
            }
            model.map(|(l, _)| l).unwrap_or_default()
        }
        Value::Map(_) => {
            // Plano's legacy object form: `egress_traffic` is the model listener.
            let Some(mut f) = Fields::of(r, path, node) else {
                return Listener::default();
            };
            let listener = match f.take("egress_traffic") {
                Some((p, n)) => match Fields::of(r, &p, n) {
                    Some(mut lf) => {
                        if let Some((mp, mn)) = lf.take("message_format") {
                            if let Some(fmt) = yaml::string(r, &mp, mn) {
                                if fmt != "openai" {
                                    r.error(&mp, mn.line, "only `openai` is supported");
                                }
                            }
                        }
                        model_listener(r, lf, "egress_traffic".into())
                    }
                    None => Listener::default(),
                },
                None => Listener::default(),
            };
            f.finish(r, &["ingress_traffic"]);
            listener
        }
        _ => {
            r.expected::<()>(path, node, "a list of listeners");
            Listener::default()
        }
    }
}

fn model_listener(r: &mut Report, mut f: Fields<'_>, name: String) -> Listener {
    let mut listener = Listener {
        name,
        ..Listener::default()
    };
    if let Some((p, n)) = f.take("address") {
        if let Some(a) = yaml::string(r, &p, n) {
            match a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                Ok(ip) => listener.address = ip.to_string(),
                Err(_) => r.error(&p, n.line, format!("`{a}` is not an IP address")),
            }
        }
    }
    if let Some((p, n)) = f.take("port") {
        if let Some(port) = yaml::integer(r, &p, n, 1, 65535) {
            listener.port = port as u16;
        }
    }
    if let Some((p, n)) = f.take("timeout") {
        if let Some(t) = duration(r, &p, n) {
            listener.timeout = t;
        }
    }
    // Plano's `max_retries` (Envoy retries on the same provider) or switchyard's `retry`.
    match (f.take("max_retries"), f.take("retry")) {
        (Some((p, n)), None) => {
            if let Some(retries) = yaml::integer(r, &p, n, 0, 9) {
                listener.retry = Some(Retry {
                    attempts: retries as u32 + 1,
                    ..Retry::default()
                });
            }
        }
        (None, Some((p, n))) => listener.retry = retry(r, &p, n),
        (Some(_), Some((p, n))) => r.error(&p, n.line, "give `max_retries` or `retry`, not both"),
        (None, None) => {}
    }
    if let Some((p, n)) = f.take("timeouts") {
        listener.timeouts = timeouts(r, &p, n);
    }
    f.finish(r, PLANNED_LISTENER);
    listener
}

/// `retry: {attempts, on: [connect, timeout, 429, 5xx], backoff: {base, max}}`
fn retry(r: &mut Report, path: &str, node: &Node) -> Option<Retry> {
    let mut f = Fields::of(r, path, node)?;
    let mut policy = Retry::default();
    if let Some((p, n)) = f.take("attempts") {
        policy.attempts = yaml::integer(r, &p, n, 1, 10)? as u32;
    }
    if let Some((p, n)) = f.take("on") {
        policy.on_connect = false;
        policy.on_timeout = false;
        policy.on_429 = false;
        policy.on_5xx = false;
        for (i, item) in yaml::list(r, &p, n).unwrap_or_default().iter().enumerate() {
            let ip = index(&p, i);
            match yaml::string(r, &ip, item).as_deref() {
                Some("connect") => policy.on_connect = true,
                Some("timeout") => policy.on_timeout = true,
                Some("429") => policy.on_429 = true,
                Some("5xx") => policy.on_5xx = true,
                Some(other) => r.error(
                    &ip,
                    item.line,
                    format!("unknown `{other}`; expected connect, timeout, 429 or 5xx"),
                ),
                None => {}
            }
        }
    }
    if let Some((p, n)) = f.take("backoff") {
        if let Some(mut bf) = Fields::of(r, &p, n) {
            if let Some((bp, bn)) = bf.take("base") {
                policy.backoff_base = duration(r, &bp, bn).unwrap_or(policy.backoff_base);
            }
            if let Some((bp, bn)) = bf.take("max") {
                policy.backoff_max = duration(r, &bp, bn).unwrap_or(policy.backoff_max);
            }
            bf.finish(r, &[]);
        }
    }
    f.finish(r, &[]);
    Some(policy)
}

/// `timeouts: {connect, first_byte, idle, total}`
fn timeouts(r: &mut Report, path: &str, node: &Node) -> Timeouts {
    let mut t = Timeouts::default();
    let Some(mut f) = Fields::of(r, path, node) else {
        return t;
    };
    for (key, slot) in [
        ("connect", &mut t.connect),
        ("first_byte", &mut t.first_byte),
        ("idle", &mut t.idle),
        ("total", &mut t.total),
    ] {
        if let Some((p, n)) = f.take(key) {
            if let Some(d) = positive_duration(r, &p, n) {
                *slot = Some(d);
            }
        }
    }
    f.finish(r, &[]);
    t
}

/// `outlier_detection: {consecutive_failures, ejection, max_ejection}`
fn outlier(r: &mut Report, path: &str, node: &Node) -> Outlier {
    let mut o = Outlier::default();
    let Some(mut f) = Fields::of(r, path, node) else {
        return o;
    };
    if let Some((p, n)) = f.take("consecutive_failures") {
        if let Some(v) = yaml::integer(r, &p, n, 1, 1000) {
            o.consecutive_failures = v as u32;
        }
    }
    if let Some((p, n)) = f.take("ejection") {
        o.ejection = duration(r, &p, n).unwrap_or(o.ejection);
    }
    if let Some((p, n)) = f.take("max_ejection") {
        o.max_ejection = duration(r, &p, n).unwrap_or(o.max_ejection);
    }
    f.finish(r, &[]);
    o
}

/// A provider's v0.3.0 inline routing preferences: (name, description).
type InlinePrefs = Vec<(String, String)>;

/// A `model_providers` entry, once read.
enum Entry {
    Served(Box<Provider>, InlinePrefs),
    Unsupported(Unsupported),
}

fn provider(r: &mut Report, path: &str, node: &Node, env: Env) -> Option<Entry> {
    let mut f = Fields::of(r, path, node)?;
    let errors_before = r.errors.len();

    let model = match f.take("model") {
        Some((p, n)) => yaml::string(r, &p, n).map(|m| (m, p, n.line)),
        None => {
            r.error(path, node.line, "missing required key `model`");
            None
        }
    };
    let (prefix, id) = match &model {
        Some((m, p, line)) => match m.split_once('/') {
            Some((prefix, id)) if !prefix.is_empty() && !id.is_empty() => {
                (prefix.to_owned(), id.to_owned())
            }
            _ => {
                r.error(
                    p,
                    *line,
                    format!(
                        "`{m}` must be `provider/model-id`, e.g. `openai/gpt-4o` or `openai/*`"
                    ),
                );
                (String::new(), String::new())
            }
        },
        None => (String::new(), String::new()),
    };

    let name = f.take("name").and_then(|(p, n)| yaml::string(r, &p, n));

    let interface_key = match (f.take("provider_interface"), f.take("provider")) {
        (Some(x), None) | (None, Some(x)) => Some(x),
        (Some(_), Some((p, n))) => {
            r.error(
                &p,
                n.line,
                "give `provider_interface` or `provider`, not both",
            );
            None
        }
        (None, None) => None,
    };
    let explicit_interface = interface_key.and_then(|(p, n)| {
        let v = yaml::string(r, &p, n)?;
        match catalog::interface_named(&v) {
            Some(found) => Some(found),
            None => {
                r.error(
                    &p,
                    n.line,
                    format!(
                        "unsupported provider_interface `{v}`; expected one of {}",
                        catalog::interface_names()
                    ),
                );
                None
            }
        }
    });

    let base_url = f.take("base_url").and_then(|(p, n)| {
        let raw = expanded(r, &p, n, env)?;
        match parse_base_url(&raw) {
            Ok(parsed) => Some(parsed),
            Err(why) => {
                r.error(
                    &p,
                    n.line,
                    format!("`{raw}` is not a usable base_url: {why}"),
                );
                None
            }
        }
    });
    let base_url_given = f.has("base_url");

    let access_key = f
        .take("access_key")
        .and_then(|(p, n)| expanded(r, &p, n, env))
        .map(Secret::new);
    let passthrough_auth = f
        .take("passthrough_auth")
        .and_then(|(p, n)| yaml::boolean(r, &p, n))
        .unwrap_or(false);
    let default = f
        .take("default")
        .and_then(|(p, n)| yaml::boolean(r, &p, n))
        .unwrap_or(false);
    let http_host = f.take("http_host").and_then(|(p, n)| {
        let host = expanded(r, &p, n, env)?;
        if HeaderValue::from_str(&host).is_err() || host.is_empty() {
            r.error(&p, n.line, "not a valid Host header value");
            return None;
        }
        Some(host)
    });
    let headers = f
        .take("headers")
        .map(|(p, n)| extra_headers(r, &p, n, env))
        .unwrap_or_default();
    let http2 = f
        .take("http2")
        .and_then(|(p, n)| yaml::boolean(r, &p, n))
        .unwrap_or(true);
    let weight = f
        .take("weight")
        .and_then(|(p, n)| yaml::integer(r, &p, n, 1, 1000))
        .map_or(1, |w| w as u32);
    let fallbacks: Vec<String> = f
        .take("fallbacks")
        .map(|(p, n)| {
            yaml::list(r, &p, n)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(i, m)| yaml::string(r, &index(&p, i), m))
                .collect()
        })
        .unwrap_or_default();
    let bare_ids = f.take("bare_ids").map(|(p, n)| {
        let patterns: Vec<String> = yaml::list(r, &p, n)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let pattern = yaml::string(r, &index(&p, i), m)?;
                let stem = pattern.strip_suffix('*').unwrap_or(&pattern);
                if stem.is_empty() || stem.contains('*') || pattern.contains('/') {
                    r.error(
                        &index(&p, i),
                        m.line,
                        "a bare id, or its start followed by `*` (`claude-*`); no `/`",
                    );
                    return None;
                }
                Some(pattern)
            })
            .collect();
        (p, n.line, patterns)
    });
    let retry_policy = f.take("retry").and_then(|(p, n)| retry(r, &p, n));
    let provider_timeouts = f
        .take("timeouts")
        .map(|(p, n)| timeouts(r, &p, n))
        .unwrap_or_default();
    let outlier_policy = f
        .take("outlier_detection")
        .map(|(p, n)| outlier(r, &p, n))
        .unwrap_or_default();
    let lb_policy = f
        .take("lb_policy")
        .and_then(|(p, n)| match yaml::string(r, &p, n)?.as_str() {
            "weighted_round_robin" => Some(LbPolicy::WeightedRoundRobin),
            "least_requests" => Some(LbPolicy::LeastRequests),
            other => {
                r.error(
                    &p,
                    n.line,
                    format!("unknown `{other}`; expected weighted_round_robin or least_requests"),
                );
                None
            }
        });
    let cost = f.take("cost").and_then(|(p, n)| cost(r, &p, n));
    let default_max_tokens = f
        .take("default_max_tokens")
        .and_then(|(p, n)| yaml::integer(r, &p, n, 1, 10_000_000))
        .map(|n| n as u64);
    let health_check = f.take("health_check").and_then(|(p, n)| {
        let mut hf = Fields::of(r, &p, n)?;
        let path = required_string(r, &mut hf, "path", n);
        let mut check = HealthCheck {
            path: String::new(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        };
        if let Some((ip, inode)) = hf.take("interval") {
            check.interval = duration(r, &ip, inode).filter(|d| !d.is_zero())?;
        }
        if let Some((tp, tnode)) = hf.take("timeout") {
            check.timeout = duration(r, &tp, tnode).filter(|d| !d.is_zero())?;
        }
        hf.finish(r, &[]);
        let path = path?;
        if !path.starts_with('/') {
            r.error(&p, n.line, "`path` must start with `/`");
            return None;
        }
        check.path = path;
        Some(check)
    });
    let inline_prefs = f
        .take("routing_preferences")
        .map(|(p, n)| {
            r.warn(
                &p,
                n.line,
                "v0.3.0 inline routing_preferences are deprecated; migrated to the top-level list",
            );
            inline_preferences(r, &p, n)
        })
        .unwrap_or_default();
    f.finish(r, &[]);

    let (model, model_path, model_line) = model?;
    if prefix.is_empty() {
        return None;
    }
    let bare_ids = match bare_ids {
        Some((p, line, _)) if id != "*" => {
            r.error(
                &p,
                line,
                format!("only a wildcard provider (`{prefix}/*`) takes `bare_ids`"),
            );
            Vec::new()
        }
        Some((_, _, patterns)) => patterns,
        None => Vec::new(),
    };

    // Wire API and origin: explicit interface, else the catalog, else OpenAI when a base_url is
    // given for an unknown prefix (the Plano passthrough rule's own example omits the interface).
    let built_in = catalog::built_in(&prefix);
    if built_in.is_none()
        && explicit_interface.is_none()
        && catalog::NOT_YET_SUPPORTED.contains(&prefix.as_str())
    {
        let name = name.unwrap_or_else(|| model.clone());
        r.warn(
            &model_path,
            model_line,
            format!("provider `{prefix}` is not supported by switchyard yet: requests for `{name}` are answered 501"),
        );
        return Some(Entry::Unsupported(Unsupported {
            name,
            model,
            id,
            prefix,
        }));
    }
    let (interface, default_path) = match (explicit_interface, built_in) {
        (Some(found), _) => found,
        (None, Some(b)) => (b.interface, b.path_prefix),
        (None, None) if base_url_given => (Interface::OpenAi, "/v1"),
        (None, None) => {
            r.error(
                &model_path,
                model_line,
                format!(
                    "unknown provider prefix `{prefix}`: set `base_url` (and `provider_interface`, default openai), or use a built-in prefix"
                ),
            );
            return None;
        }
    };
    let origin = match (base_url, built_in.and_then(|b| b.host)) {
        (Some(mut e), _) => {
            if e.path_prefix.is_empty() {
                e.path_prefix = default_path.to_owned();
            }
            e
        }
        (None, _) if base_url_given => return None,
        (None, Some(host)) => Origin {
            tls: true,
            host: host.to_owned(),
            port: 443,
            path_prefix: default_path.to_owned(),
        },
        (None, None) => {
            r.error(
                path,
                node.line,
                format!("`base_url` is required for `{prefix}` providers"),
            );
            return None;
        }
    };

    if r.errors.len() > errors_before {
        return None;
    }
    let provider = Provider {
        name: name.unwrap_or_else(|| model.clone()),
        model,
        prefix,
        id,
        interface,
        origin,
        custom_base_url: base_url_given,
        access_key,
        passthrough_auth,
        default,
        http_host,
        headers,
        http2,
        weight,
        fallbacks,
        bare_ids,
        retry: retry_policy,
        timeouts: provider_timeouts,
        outlier: outlier_policy,
        lb_policy: lb_policy.unwrap_or_default(),
        cost,
        health_check,
        default_max_tokens,
        internal: false,
        line: node.line,
    };
    Some(Entry::Served(Box::new(provider), inline_prefs))
}

/// Splits `http(s)://host[:port][/path]`. An empty or `/` path means "the provider's default".
fn parse_base_url(raw: &str) -> Result<Origin, &'static str> {
    let uri: Uri = raw.parse().map_err(|_| "not a URL")?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(_) => return Err("the scheme must be http or https"),
        None => return Err("it needs a scheme, http:// or https://"),
    };
    let authority = uri.authority().ok_or("it has no host")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported; use access_key");
    }
    if uri.query().is_some() {
        return Err("a query string is not supported");
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err("it has no host");
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path().trim_end_matches('/').to_owned();
    Ok(Origin {
        tls,
        host,
        port,
        path_prefix: path,
    })
}

fn extra_headers(r: &mut Report, path: &str, node: &Node, env: Env) -> Vec<(String, Secret)> {
    let Some(mut f) = Fields::of(r, path, node) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, key_node, value) in f.rest() {
        let p = yaml::join(path, key);
        if HeaderName::from_bytes(key.as_bytes()).is_err() {
            r.error(
                &p,
                key_node.line,
                format!("`{key}` is not a valid header name"),
            );
            continue;
        }
        let Some(v) = expanded(r, &p, value, env) else {
            continue;
        };
        if HeaderValue::from_str(&v).is_err() {
            r.error(&p, value.line, "not a valid header value");
            continue;
        }
        out.push((key.to_ascii_lowercase(), Secret::new(v)));
    }
    out
}

fn inline_preferences(r: &mut Report, path: &str, node: &Node) -> InlinePrefs {
    let mut out = Vec::new();
    for (_, item, mut f) in yaml::mappings(r, path, node) {
        let name = required_string(r, &mut f, "name", item);
        let description = required_string(r, &mut f, "description", item);
        f.finish(r, &[]);
        if let (Some(name), Some(description)) = (name, description) {
            out.push((name, description));
        }
    }
    out
}

fn routing_preferences(
    r: &mut Report,
    path: &str,
    node: &Node,
    providers: &[Provider],
    unsupported: &[Unsupported],
) -> Vec<RoutingPreference> {
    let mut out = Vec::new();
    for (p, item, mut f) in yaml::mappings(r, path, node) {
        let name = required_string(r, &mut f, "name", item);
        let description = required_string(r, &mut f, "description", item);
        let models = match f.take("models") {
            Some((mp, mn)) => {
                let list = yaml::list(r, &mp, mn).unwrap_or_default();
                if list.is_empty() {
                    r.error(&mp, mn.line, "needs at least one model");
                }
                let mut models = Vec::new();
                for (j, m) in list.iter().enumerate() {
                    let jp = index(&mp, j);
                    let Some(name) = yaml::string(r, &jp, m) else {
                        continue;
                    };
                    if !providers.iter().any(|p| p.name == name || p.model == name)
                        && !unsupported
                            .iter()
                            .any(|u| u.name == name || u.model == name)
                    {
                        r.error(
                            &jp,
                            m.line,
                            format!("`{name}` does not match any provider's name or model"),
                        );
                    }
                    models.push(name);
                }
                models
            }
            None => {
                r.error(&p, item.line, "missing required key `models`");
                Vec::new()
            }
        };
        let prefer = f
            .take("selection_policy")
            .and_then(|(sp, sn)| {
                let mut sf = Fields::of(r, &sp, sn)?;
                let prefer = sf.take("prefer").and_then(|(pp, pn)| {
                    let name = yaml::string(r, &pp, pn)?;
                    let prefer = Prefer::from_name(&name);
                    if prefer.is_none() {
                        r.error(
                            &pp,
                            pn.line,
                            format!("unknown `{name}`; expected {}", Prefer::NAMES),
                        );
                    }
                    prefer
                });
                sf.finish(r, &[]);
                prefer
            })
            .unwrap_or_default();
        f.finish(r, &[]);
        if let (Some(name), Some(description)) = (name, description) {
            if out.iter().any(|o: &RoutingPreference| o.name == name) {
                r.error(
                    &p,
                    item.line,
                    format!("duplicate routing preference `{name}`"),
                );
                continue;
            }
            out.push(RoutingPreference {
                name,
                description,
                models,
                prefer,
            });
        }
    }
    out
}

/// Lifts v0.3.0 inline preferences to the top level as Plano's CLI does: entries with the same
/// name merge, their `models` follow declaration order, and the first description wins.
fn migrate_inline_preferences(
    top: &mut Vec<RoutingPreference>,
    inline: Vec<(String, InlinePrefs)>,
) {
    for (model, prefs) in inline {
        for (name, description) in prefs {
            match top.iter_mut().find(|p| p.name == name) {
                Some(existing) => {
                    if !existing.models.contains(&model) {
                        existing.models.push(model.clone());
                    }
                }
                None => top.push(RoutingPreference {
                    name,
                    description,
                    models: vec![model.clone()],
                    prefer: Prefer::None,
                }),
            }
        }
    }
}

fn model_aliases(
    r: &mut Report,
    path: &str,
    node: &Node,
    providers: &[Provider],
    unsupported: &[Unsupported],
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
        if served || unsupported.iter().any(|u| u.is(&target)) {
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

/// switchyard's provider `cost: {input_per_million, output_per_million}`, as one number (their
/// sum, as Plano ranks cost sources).
fn cost(r: &mut Report, path: &str, node: &Node) -> Option<f64> {
    let mut f = Fields::of(r, path, node)?;
    let mut total = 0.0;
    for key in ["input_per_million", "output_per_million"] {
        let Some((p, n)) = f.take(key) else {
            r.error(path, node.line, format!("missing required key `{key}`"));
            return None;
        };
        match &n.value {
            Value::Int(i) if *i >= 0 => total += *i as f64,
            Value::Float(x) if *x >= 0.0 => total += x,
            _ => {
                r.error(&p, n.line, "expected a number, 0 or more");
                return None;
            }
        }
    }
    f.finish(r, &[]);
    Some(total)
}

/// Plano's `model_metrics_sources`: at most one cost and one latency source.
fn metrics_sources(r: &mut Report, path: &str, node: &Node) -> Vec<MetricsSource> {
    let mut out: Vec<MetricsSource> = Vec::new();
    for (p, item, mut f) in yaml::mappings(r, path, node) {
        let kind = required_string(r, &mut f, "type", item);
        let provider = required_string(r, &mut f, "provider", item);
        let url = f
            .take("url")
            .and_then(|(up, un)| yaml::string(r, &up, un).map(|u| (u, up, un.line)));
        let query = f
            .take("query")
            .and_then(|(qp, qn)| yaml::string(r, &qp, qn));
        let refresh = f.take("refresh_interval").and_then(|(rp, rn)| {
            yaml::integer(r, &rp, rn, 1, 31_536_000).map(|s| Duration::from_secs(s as u64))
        });
        let mut model_aliases = Vec::new();
        if let Some((ap, an)) = f.take("model_aliases") {
            if let Some(mut af) = Fields::of(r, &ap, an) {
                for (key, _, value) in af.rest() {
                    if let Some(v) = yaml::string(r, &yaml::join(&ap, key), value) {
                        model_aliases.push((key.to_owned(), v));
                    }
                }
            }
        }
        f.finish(r, &[]);
        let (Some(kind), Some(provider)) = (kind, provider) else {
            continue;
        };
        let kind = match (kind.as_str(), provider.as_str(), query) {
            ("cost", "models.dev", _) => Ok(MetricsKind::ModelsDev),
            ("cost", "digitalocean", _) => Ok(MetricsKind::DigitalOcean),
            ("latency", "prometheus", Some(query)) => Ok(MetricsKind::Prometheus { query }),
            ("latency", "prometheus", None) => Err("a latency source needs `query`".to_owned()),
            ("cost", other, _) => Err(format!(
                "unknown cost provider `{other}`; expected digitalocean or models.dev"
            )),
            ("latency", other, _) => Err(format!(
                "unknown latency provider `{other}`; expected prometheus"
            )),
            (other, _, _) => Err(format!("unknown type `{other}`; expected cost or latency")),
        };
        let kind = match kind {
            Ok(kind) => kind,
            Err(why) => {
                r.error(&p, item.line, why);
                continue;
            }
        };
        let url = match (url, &kind) {
            (Some((url, up, line)), _) => {
                if let Err(why) = feed_url(&url) {
                    r.error(&up, line, format!("`{url}`: {why}"));
                    continue;
                }
                url
            }
            (None, MetricsKind::ModelsDev) => "https://models.dev/api.json".to_owned(),
            (None, MetricsKind::DigitalOcean) => {
                "https://api.digitalocean.com/v2/gen-ai/models/catalog".to_owned()
            }
            (None, MetricsKind::Prometheus { .. }) => {
                r.error(&p, item.line, "a latency source needs `url`");
                continue;
            }
        };
        if out.iter().any(|s| s.kind.is_cost() == kind.is_cost()) {
            r.error(
                &p,
                item.line,
                format!(
                    "a second {} source; at most one of each",
                    if kind.is_cost() { "cost" } else { "latency" }
                ),
            );
            continue;
        }
        out.push(MetricsSource {
            kind,
            url,
            refresh,
            model_aliases,
        });
    }
    out
}

/// A feed's URL: http or https with a host; a query is allowed (catalogs take them), credentials
/// are not (they would show in logs and `Debug` output).
fn feed_url(raw: &str) -> Result<(), &'static str> {
    let uri: Uri = raw.parse().map_err(|_| "not a URL")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("the scheme must be http or https");
    }
    match uri.authority() {
        None => Err("it has no host"),
        Some(a) if a.as_str().contains('@') => Err("credentials in the URL are not supported"),
        Some(a) if a.host().is_empty() => Err("it has no host"),
        Some(_) => Ok(()),
    }
}

/// Plano's `routing` block; also archgw's router model (`model`, or `llm_provider`).
fn routing(
    r: &mut Report,
    path: &str,
    node: &Node,
    providers: &[Provider],
    aliases: &[(String, String)],
) -> (Routing, Option<String>) {
    let mut out = Routing::default();
    let Some(mut f) = Fields::of(r, path, node) else {
        return (out, None);
    };
    if let Some((p, n)) = f.take("session_ttl_seconds") {
        if let Some(t) = yaml::integer(r, &p, n, 1, 31_536_000) {
            out.session_ttl = Duration::from_secs(t as u64);
        }
    }
    if let Some((p, n)) = f.take("session_max_entries") {
        if let Some(m) = yaml::integer(r, &p, n, 1, 10_000) {
            out.session_max_entries = m as usize;
        }
    }
    if let Some((p, n)) = f.take("router_timeout") {
        if let Some(t) = positive_duration(r, &p, n) {
            out.router_timeout = t;
        }
    }
    if let Some((p, n)) = f.take("session_cache") {
        if let Some(mut cf) = Fields::of(r, &p, n) {
            if let Some((tp, tn)) = cf.take("type") {
                match yaml::string(r, &tp, tn).as_deref() {
                    Some("memory") | None => {}
                    Some("redis") => r.warn(
                        &tp,
                        tn.line,
                        "a redis session cache is not implemented by switchyard yet; sessions are kept in memory",
                    ),
                    Some(other) => {
                        r.error(&tp, tn.line, format!("unknown `{other}`; expected memory or redis"))
                    }
                }
            }
            if let Some((hp, hn)) = cf.take("tenant_header") {
                out.tenant_header = yaml::string(r, &hp, hn).map(|h| h.to_ascii_lowercase());
            }
            cf.finish(r, &["url"]);
        }
    }
    if let Some((p, n)) = f.take("only_for") {
        for (i, node) in yaml::list(r, &p, n).unwrap_or_default().iter().enumerate() {
            let Some(m) = yaml::string(r, &index(&p, i), node) else {
                continue;
            };
            let known = providers
                .iter()
                .any(|p| p.name == m || p.model == m || p.id == m)
                || aliases.iter().any(|(a, _)| *a == m);
            if !known {
                r.error(
                    &index(&p, i),
                    node.line,
                    format!("`{m}` is not a configured model or alias"),
                );
            }
            out.only_for.push(m);
        }
    }
    if let Some((p, n)) = f.take("route_on_user_only") {
        out.route_on_user_only = yaml::boolean(r, &p, n).unwrap_or(false);
    }
    let mut router = None;
    for key in ["model", "llm_provider", "model_provider"] {
        if let Some((p, n)) = f.take(key) {
            if let Some(v) = yaml::string(r, &p, n) {
                router = router.or(Some(v));
            }
        }
    }
    f.finish(r, &["routing_budget"]);
    (out, router)
}

fn server(r: &mut Report, path: &str, node: &Node) -> ServerSettings {
    let mut s = ServerSettings::default();
    let Some(mut f) = Fields::of(r, path, node) else {
        return s;
    };
    if let Some((p, n)) = f.take("threads") {
        if let Some(t) = yaml::integer(r, &p, n, 1, 1024) {
            s.threads = t as usize;
        }
    }
    if let Some((p, n)) = f.take("metrics_address") {
        if let Some(a) = yaml::string(r, &p, n) {
            match a.parse::<SocketAddr>() {
                Ok(addr) => s.metrics_address = addr,
                Err(_) => r.error(&p, n.line, format!("`{a}` is not an ip:port address")),
            }
        }
    }
    if let Some((p, n)) = f.take("pid_file") {
        if let Some(v) = yaml::string(r, &p, n) {
            s.pid_file = PathBuf::from(v);
        }
    }
    if let Some((p, n)) = f.take("upgrade_sock") {
        if let Some(v) = yaml::string(r, &p, n) {
            s.upgrade_sock = PathBuf::from(v);
        }
    }
    if let Some((p, n)) = f.take("grace_period") {
        if let Some(t) = duration(r, &p, n) {
            s.grace_period = t;
        }
    }
    if let Some((p, n)) = f.take("header_timeout") {
        if let Some(t) = positive_duration(r, &p, n) {
            s.header_timeout = t;
        }
    }
    if let Some((p, n)) = f.take("keepalive_timeout") {
        if let Some(t) = positive_duration(r, &p, n) {
            s.keepalive_timeout = t;
        }
    }
    if let Some((p, n)) = f.take("max_connections") {
        if let Some(c) = yaml::integer(r, &p, n, 1, 10_000_000) {
            s.max_connections = c as usize;
        }
    }
    if let Some((p, n)) = f.take("max_request_body") {
        let size = match &n.value {
            Value::Int(i) if *i > 0 => Some(*i as u64),
            Value::Str(v) => parse_size(v).filter(|s| *s > 0),
            _ => None,
        };
        match size {
            Some(size) => s.max_request_body = size,
            None => r.error(
                &p,
                n.line,
                "expected a size such as `32MiB`, `10MB` or a byte count",
            ),
        }
    }
    if let Some((p, n)) = f.take("access_log") {
        if let Some(v) = yaml::string(r, &p, n) {
            s.access_log = match v.as_str() {
                "stdout" => Sink::Stdout,
                "off" => Sink::Off,
                "" => {
                    r.error(&p, n.line, "expected `stdout`, `off` or a file path");
                    Sink::Stdout
                }
                path => Sink::File(PathBuf::from(path)),
            };
        }
    }
    f.finish(r, &[]);
    s
}

/// Plano's hosted router (its `plano` cluster), as an internal provider: not listed in
/// `/v1/models`, keyless, named `plano-orchestrator` as Plano names it.
pub const HOSTED_ROUTER: &str = "https://archfc.katanemo.dev";

fn hosted_router(router_model: &str, env: Env) -> Option<Provider> {
    let id = router_model
        .split_once('/')
        .map_or(router_model, |(_, id)| id);
    let node = yaml::parse(&format!(
        "{{name: plano-orchestrator, model: {}, base_url: {HOSTED_ROUTER}}}",
        serde_json::Value::from(format!("plano/{id}"))
    ))
    .ok()?;
    let mut scratch = Report::default();
    match provider(&mut scratch, "plano-orchestrator", &node, env) {
        Some(Entry::Served(mut p, _)) => {
            p.internal = true;
            p.line = 0;
            Some(*p)
        }
        _ => None,
    }
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

fn cross_check(r: &mut Report, c: &Config) {
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
