//! Preference routing: `routing_preferences` (v0.4.0 and v0.3.0 inline), `model_metrics_sources`
//! and the `routing` block.

use super::*;

pub(super) fn inline_preferences(r: &mut Report, path: &str, node: &Node) -> InlinePrefs {
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

pub(super) fn routing_preferences(
    r: &mut Report,
    path: &str,
    node: &Node,
    providers: &[Provider],
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
                    if !providers.iter().any(|p| p.name == name || p.model == name) {
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
pub(super) fn migrate_inline_preferences(
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

/// Plano's `model_metrics_sources`: at most one cost and one latency source.
pub(super) fn metrics_sources(r: &mut Report, path: &str, node: &Node) -> Vec<MetricsSource> {
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
pub(super) fn feed_url(raw: &str) -> Result<(), &'static str> {
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
pub(super) fn routing(
    r: &mut Report,
    path: &str,
    node: &Node,
    providers: &[Provider],
    aliases: &[(String, String)],
    env: Env,
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
            let redis = match cf.take("type") {
                Some((tp, tn)) => match yaml::string(r, &tp, tn).as_deref() {
                    Some("memory") | None => false,
                    Some("redis") => true,
                    Some(other) => {
                        r.error(
                            &tp,
                            tn.line,
                            format!("unknown `{other}`; expected memory or redis"),
                        );
                        false
                    }
                },
                None => false,
            };
            if let Some((hp, hn)) = cf.take("tenant_header") {
                out.tenant_header = yaml::string(r, &hp, hn).map(|h| h.to_ascii_lowercase());
            }
            let url = cf.take("url");
            if redis {
                match url {
                    Some((up, un)) => {
                        out.session_store = super::limits::redis_url(r, &up, un, env)
                            .map(super::limits::session_store);
                    }
                    None => r.error(&p, n.line, "`url` is required when `type` is redis"),
                }
            }
            cf.finish(r, &[]);
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
