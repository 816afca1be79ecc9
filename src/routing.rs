//! Model resolution: which provider serves a requested `model`, and under which upstream id.
//! Pure lookups over tables built once per config snapshot; no I/O.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::Provider;

/// Lookup tables for one config snapshot.
#[derive(Debug, Default)]
pub struct Routes {
    aliases: HashMap<String, String>,
    names: HashMap<String, usize>,
    models: HashMap<String, usize>,
    bare_ids: HashMap<String, usize>,
    wildcards: HashMap<String, usize>,
    default: Option<usize>,
}

/// The provider chosen for a request (an index into the snapshot's providers) and the model id
/// to put in the upstream body.
#[derive(Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub provider: usize,
    pub upstream_model: Cow<'a, str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The body has no `model` and no provider is the default.
    MissingModel,
    /// Nothing serves the requested model.
    UnknownModel,
}

impl Routes {
    /// Builds the tables. The config has been validated: names, full models and bare ids are unique.
    pub fn new(providers: &[Provider], aliases: &[(String, String)]) -> Routes {
        let mut routes = Routes {
            aliases: aliases.iter().cloned().collect(),
            ..Routes::default()
        };
        for (i, p) in providers.iter().enumerate() {
            if p.is_wildcard() {
                routes.wildcards.entry(p.prefix.clone()).or_insert(i);
                continue;
            }
            routes.names.entry(p.name.clone()).or_insert(i);
            routes.models.entry(p.model.clone()).or_insert(i);
            routes.bare_ids.entry(p.id.clone()).or_insert(i);
            if p.default && routes.default.is_none() {
                routes.default = Some(i);
            }
        }
        routes
    }

    /// Resolves a requested model: alias → provider name → `provider/id` → bare id → wildcard
    /// `provider/*`. No model at all means the default provider.
    pub fn resolve<'a>(
        &'a self,
        providers: &'a [Provider],
        requested: Option<&'a str>,
    ) -> Result<Route<'a>, RouteError> {
        let Some(requested) = requested else {
            let i = self.default.ok_or(RouteError::MissingModel)?;
            return Ok(self.route(providers, i));
        };
        let model = self
            .aliases
            .get(requested)
            .map_or(requested, String::as_str);
        let exact = self
            .names
            .get(model)
            .or_else(|| self.models.get(model))
            .or_else(|| self.bare_ids.get(model));
        if let Some(&i) = exact {
            return Ok(self.route(providers, i));
        }
        if let Some((prefix, id)) = model.split_once('/') {
            if let Some(&i) = self.wildcards.get(prefix).filter(|_| !id.is_empty()) {
                return Ok(Route {
                    provider: i,
                    upstream_model: Cow::Borrowed(id),
                });
            }
        }
        Err(RouteError::UnknownModel)
    }

    fn route<'a>(&self, providers: &'a [Provider], i: usize) -> Route<'a> {
        Route {
            provider: i,
            upstream_model: Cow::Borrowed(providers[i].id.as_str()),
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

    fn resolve(c: &Config, model: Option<&str>) -> Result<(String, String), RouteError> {
        let routes = Routes::new(&c.providers, &c.aliases);
        routes.resolve(&c.providers, model).map(|r| {
            (
                c.providers[r.provider].name.clone(),
                r.upstream_model.into_owned(),
            )
        })
    }

    fn ok(name: &str, id: &str) -> Result<(String, String), RouteError> {
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
        assert_eq!(resolve(&c, Some("groq/")), Err(RouteError::UnknownModel));
        assert_eq!(resolve(&c, Some("groq/*")), ok("groq/*", "*"));
    }

    #[test]
    fn missing_model_uses_the_default() {
        let c = config(YAML);
        assert_eq!(resolve(&c, None), ok("openai/gpt-4o", "gpt-4o"));
        let c = config("model_providers: [{model: openai/gpt-4o, access_key: $K}]");
        assert_eq!(resolve(&c, None), Err(RouteError::MissingModel));
    }

    #[test]
    fn unknown_models_do_not_fall_back() {
        let c = config(YAML);
        assert_eq!(resolve(&c, Some("gpt-5")), Err(RouteError::UnknownModel));
        assert_eq!(
            resolve(&c, Some("anthropic/claude")),
            Err(RouteError::UnknownModel)
        );
        assert_eq!(resolve(&c, Some("")), Err(RouteError::UnknownModel));
    }
}
