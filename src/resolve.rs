//! Model resolution: which provider serves a requested `model`, and under which upstream id.
//! Pure lookups over tables built once per config snapshot; no I/O.

use std::borrow::Cow;
use std::collections::HashMap;

use std::time::Duration;

use crate::config::{LbPolicy, Listener, Provider, Retry};

/// Lookup tables for one config snapshot.
#[derive(Debug, Default)]
pub struct Resolver {
    aliases: HashMap<String, String>,
    /// Provider names, full models and bare ids → group.
    names: HashMap<String, usize>,
    models: HashMap<String, usize>,
    bare_ids: HashMap<String, usize>,
    wildcards: HashMap<String, usize>,
    /// Wildcard providers' `bare_ids`, in file order: (pattern, group).
    bare_patterns: Vec<(String, usize)>,
    default: Option<usize>,
    groups: Vec<Group>,
}

/// The endpoints that may serve a request, where to turn when all of them fail, and the
/// group's policy: read once per snapshot from its first entry (switchyard's keys), else the
/// listener's.
#[derive(Debug, Default)]
pub struct Group {
    /// Provider indices, in file order.
    pub members: Vec<usize>,
    /// Groups to try next, in order.
    pub fallbacks: Vec<usize>,
    /// Its attempts: the first entry's `retry`, else the listener's, else one per endpoint.
    pub retry: Retry,
    pub lb_policy: LbPolicy,
    /// The whole request's time limit (`timeouts.total`).
    pub total: Option<Duration>,
}

/// The group chosen for a request and the model id to put in the upstream body.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub group: usize,
    pub upstream_model: Cow<'a, str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The body has no `model` and no provider is the default.
    MissingModel,
    /// Nothing serves the requested model.
    UnknownModel,
}

impl Resolver {
    /// Builds the tables. Entries repeating a `model` form one group (its endpoints); a provider
    /// asked for by its own explicit name is a group of one. The config has been validated.
    pub fn new(
        providers: &[Provider],
        aliases: &[(String, String)],
        listener: &Listener,
    ) -> Resolver {
        let mut routes = Resolver {
            aliases: aliases.iter().cloned().collect(),
            ..Resolver::default()
        };
        let mut by_model: HashMap<&str, usize> = HashMap::new();
        for (i, p) in providers.iter().enumerate() {
            let gid = *by_model.entry(&p.model).or_insert_with(|| {
                routes.groups.push(Group::default());
                routes.groups.len() - 1
            });
            routes.groups[gid].members.push(i);
            if p.is_wildcard() {
                routes.wildcards.entry(p.prefix.clone()).or_insert(gid);
                routes
                    .bare_patterns
                    .extend(p.bare_ids.iter().map(|b| (b.clone(), gid)));
                continue;
            }
            routes.models.entry(p.model.clone()).or_insert(gid);
            routes.bare_ids.entry(p.id.clone()).or_insert(gid);
            if p.default && routes.default.is_none() {
                routes.default = Some(gid);
            }
        }
        for (i, p) in providers.iter().enumerate() {
            if p.is_wildcard() || p.name == p.model {
                continue;
            }
            // An explicit (or `#n`) name means that one endpoint.
            routes.groups.push(Group {
                members: vec![i],
                ..Group::default()
            });
            routes.names.insert(p.name.clone(), routes.groups.len() - 1);
        }
        // Fallbacks: from the first entry of a model that names them, shared by its groups.
        for p in providers {
            let targets: Vec<usize> = p
                .fallbacks
                .iter()
                .filter_map(|f| routes.lookup(f))
                .collect();
            if targets.is_empty() {
                continue;
            }
            for g in routes.groups.iter_mut() {
                let same_model = g
                    .members
                    .first()
                    .is_some_and(|&m| providers[m].model == p.model);
                if same_model && g.fallbacks.is_empty() {
                    g.fallbacks = targets.clone();
                }
            }
        }
        for g in routes.groups.iter_mut() {
            let Some(lead) = g.members.first().map(|&m| &providers[m]) else {
                continue;
            };
            g.retry = lead
                .retry
                .clone()
                .or_else(|| listener.retry.clone())
                .unwrap_or(Retry {
                    attempts: g.members.len() as u32,
                    ..Retry::default()
                });
            g.lb_policy = lead.lb_policy;
            g.total = lead.timeouts.or(listener.timeouts).total;
        }
        routes
    }

    fn lookup(&self, model: &str) -> Option<usize> {
        self.names
            .get(model)
            .or_else(|| self.models.get(model))
            .or_else(|| self.bare_ids.get(model))
            .copied()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn group(&self, gid: usize) -> &Group {
        static EMPTY: std::sync::OnceLock<Group> = std::sync::OnceLock::new();
        self.groups
            .get(gid)
            .unwrap_or_else(|| EMPTY.get_or_init(Group::default))
    }

    /// The model an alias stands for (one exact hop), or `requested` itself.
    pub fn unalias<'a>(&'a self, requested: &'a str) -> &'a str {
        self.aliases
            .get(requested)
            .map_or(requested, String::as_str)
    }

    /// Resolves a requested model: alias → provider name → `provider/id` → bare id → wildcard
    /// `provider/*` → a wildcard's `bare_ids` (in file order; the id is sent as it is). No model
    /// at all means the default provider.
    pub fn resolve<'a>(
        &'a self,
        providers: &'a [Provider],
        requested: Option<&'a str>,
    ) -> Result<Resolved<'a>, ResolveError> {
        let Some(requested) = requested else {
            let gid = self.default.ok_or(ResolveError::MissingModel)?;
            return Ok(self.route(providers, gid));
        };
        let model = self.unalias(requested);
        if let Some(gid) = self.lookup(model) {
            return Ok(self.route(providers, gid));
        }
        if let Some((prefix, id)) = model.split_once('/') {
            if let Some(&gid) = self.wildcards.get(prefix).filter(|_| !id.is_empty()) {
                return Ok(Resolved {
                    group: gid,
                    upstream_model: Cow::Borrowed(id),
                });
            }
        }
        let matches = |pattern: &str| match pattern.strip_suffix('*') {
            Some(start) => model.starts_with(start),
            None => model == pattern,
        };
        if let Some(&(_, gid)) = self.bare_patterns.iter().find(|(p, _)| matches(p)) {
            return Ok(Resolved {
                group: gid,
                upstream_model: Cow::Borrowed(model),
            });
        }
        Err(ResolveError::UnknownModel)
    }

    fn route<'a>(&self, providers: &'a [Provider], gid: usize) -> Resolved<'a> {
        let first = self.group(gid).members.first().copied().unwrap_or(0);
        Resolved {
            group: gid,
            upstream_model: Cow::Borrowed(providers.get(first).map_or("", |p| p.id.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml, &|_| Some("k".into())).unwrap()
    }

    const YAML: &str = r#"
model_providers:
  - model: openai/gpt-4o
    access_key: $K
    default: true
  - model: openai/gpt-4o-mini
    name: mini
    access_key: $K
  - model: together_ai/meta-llama/Llama-3-70b
    access_key: $K
  - model: groq/*
    access_key: $K
model_aliases:
  fast: {target: mini}
  smart: {target: gpt-4o}
"#;

    fn resolve(c: &Config, model: Option<&str>) -> Result<(String, String), ResolveError> {
        let routes = Resolver::new(&c.providers, &c.aliases, &c.listener);
        routes.resolve(&c.providers, model).map(|r| {
            let first = routes.group(r.group).members[0];
            (
                c.providers[first].name.clone(),
                r.upstream_model.into_owned(),
            )
        })
    }

    fn ok(name: &str, id: &str) -> Result<(String, String), ResolveError> {
        Ok((name.into(), id.into()))
    }

    #[test]
    fn resolution_order() {
        let c = config(YAML);
        assert_eq!(
            resolve(&c, Some("openai/gpt-4o")),
            ok("openai/gpt-4o", "gpt-4o")
        );
        assert_eq!(resolve(&c, Some("gpt-4o")), ok("openai/gpt-4o", "gpt-4o"));
        assert_eq!(resolve(&c, Some("mini")), ok("mini", "gpt-4o-mini"));
        assert_eq!(
            resolve(&c, Some("openai/gpt-4o-mini")),
            ok("mini", "gpt-4o-mini")
        );
        assert_eq!(resolve(&c, Some("gpt-4o-mini")), ok("mini", "gpt-4o-mini"));
        assert_eq!(resolve(&c, Some("fast")), ok("mini", "gpt-4o-mini"));
        assert_eq!(resolve(&c, Some("smart")), ok("openai/gpt-4o", "gpt-4o"));
    }

    #[test]
    fn ids_may_contain_slashes() {
        let c = config(YAML);
        let want = ok(
            "together_ai/meta-llama/Llama-3-70b",
            "meta-llama/Llama-3-70b",
        );
        assert_eq!(
            resolve(&c, Some("together_ai/meta-llama/Llama-3-70b")),
            want
        );
        assert_eq!(resolve(&c, Some("meta-llama/Llama-3-70b")), want);
    }

    #[test]
    fn wildcards_pass_the_rest_through() {
        let c = config(YAML);
        assert_eq!(
            resolve(&c, Some("groq/llama-3.3-70b")),
            ok("groq/*", "llama-3.3-70b")
        );
        assert_eq!(resolve(&c, Some("groq/")), Err(ResolveError::UnknownModel));
        assert_eq!(resolve(&c, Some("groq/*")), ok("groq/*", "*"));
    }

    #[test]
    fn a_wildcards_bare_ids_take_unprefixed_ids_as_they_are() {
        let c = config(
            "model_providers:\n  - {model: anthropic/claude-sonnet-4-5, access_key: $K}\n  - {model: anthropic/*, access_key: $K, bare_ids: [claude-*, legacy-model]}\n  - {model: openai/*, access_key: $K, bare_ids: [gpt-*]}\n",
        );
        // Claude Code's ids, which no entry names.
        assert_eq!(
            resolve(&c, Some("claude-opus-5-5")),
            ok("anthropic/*", "claude-opus-5-5")
        );
        assert_eq!(
            resolve(&c, Some("legacy-model")),
            ok("anthropic/*", "legacy-model")
        );
        assert_eq!(resolve(&c, Some("gpt-5")), ok("openai/*", "gpt-5"));
        // Everything earlier in the order wins: an entry's own bare id, a prefix.
        assert_eq!(
            resolve(&c, Some("claude-sonnet-4-5")),
            ok("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5")
        );
        assert_eq!(
            resolve(&c, Some("openai/claude-x")),
            ok("openai/*", "claude-x")
        );
        // Exact patterns are exact; nothing else matches.
        assert_eq!(
            resolve(&c, Some("legacy-model-2")),
            Err(ResolveError::UnknownModel)
        );
        assert_eq!(
            resolve(&c, Some("llama-3")),
            Err(ResolveError::UnknownModel)
        );
    }

    #[test]
    fn missing_model_uses_the_default() {
        let c = config(YAML);
        assert_eq!(resolve(&c, None), ok("openai/gpt-4o", "gpt-4o"));
        let c = config("model_providers: [{model: openai/gpt-4o, access_key: $K}]");
        assert_eq!(resolve(&c, None), Err(ResolveError::MissingModel));
    }

    #[test]
    fn repeated_models_form_one_group_with_fallbacks() {
        let c = config(
            "model_providers:\n  - {model: openai/gpt-4o, access_key: $K, fallbacks: [claude]}\n  - {model: openai/gpt-4o, base_url: 'http://h'}\n  - {model: anthropic/claude, access_key: $K}\n",
        );
        let routes = Resolver::new(&c.providers, &c.aliases, &c.listener);
        let r = routes.resolve(&c.providers, Some("gpt-4o")).unwrap();
        assert_eq!(routes.group(r.group).members, [0, 1]);
        let fallback = routes.group(r.group).fallbacks[0];
        assert_eq!(routes.group(fallback).members, [2]);
        // The second endpoint by its own name: that endpoint alone.
        let r = routes
            .resolve(&c.providers, Some("openai/gpt-4o#2"))
            .unwrap();
        assert_eq!(routes.group(r.group).members, [1]);
    }

    #[test]
    fn unknown_models_do_not_fall_back() {
        let c = config(YAML);
        assert_eq!(resolve(&c, Some("gpt-5")), Err(ResolveError::UnknownModel));
        assert_eq!(
            resolve(&c, Some("anthropic/claude")),
            Err(ResolveError::UnknownModel)
        );
        assert_eq!(resolve(&c, Some("")), Err(ResolveError::UnknownModel));
    }
}
