//! What a model request is charged: its client's budget and limits (`clients[].budgets`,
//! `limits`, `model_limits`), and Plano's `ratelimits` whose model and selector it matches. Pure:
//! the config, the request and which configured names its routed model answers to in, the
//! charges out.
//!
//! Plano's rules, as Plano documents them with its bugs fixed: `model` matches however a
//! request names it (the provider's name, bare id, alias, `provider/*`); the selector header is
//! read directly (`x-arch-ratelimit-selector` is not needed); `value: "*"` is one limit per
//! distinct value; a request without the header is not limited by that rule; a rule counts the
//! prompt and the answer, settled with the real usage.

use pingora::http::RequestHeader;

use super::{Charge, Meter, Rate, Unit};
use crate::config::{Client, Config};
use crate::metrics::ANONYMOUS;

/// The charges of a request from `client` (none: anonymous) whose routed model is the one
/// `names` says a configured name (name, bare id, alias, `provider/*`) stands for; budgets first
/// (a spent budget is the refusal to report: waiting does not help).
pub fn plan(
    config: &Config,
    client: Option<&Client>,
    names: &dyn Fn(&str) -> bool,
    req: &RequestHeader,
    body: &[u8],
) -> Vec<Charge> {
    let mut charges = Vec::new();
    let mut reservation = None;
    let mut tokens = || *reservation.get_or_insert_with(|| token_reservation(body));
    let who = client.map_or(ANONYMOUS, |c| c.name.as_str());
    if let Some(c) = client {
        let name = &c.name;
        let owner = format!("client `{name}`");
        if let Some(per_day) = c.tokens_per_day {
            charges.push(Charge {
                key: format!("client:{name}:tokens_per_day"),
                meter: Meter::Day(per_day),
                unit: Unit::Tokens,
                cost: tokens(),
                owner: owner.clone(),
                client: name.clone(),
                limit: "tokens_per_day",
                per: "day",
            });
        }
        let mut per_minute = |key: String, owner: &str, limit, unit, count, cost| {
            charges.push(Charge {
                key,
                meter: Meter::Rate(Rate::per_minute(count)),
                unit,
                cost,
                owner: owner.to_owned(),
                client: name.clone(),
                limit,
                per: "minute",
            })
        };
        if let Some(n) = c.requests_per_minute {
            let key = format!("client:{name}:requests_per_minute");
            per_minute(key, &owner, "requests_per_minute", Unit::Requests, n, 1);
        }
        if let Some(n) = c.tokens_per_minute {
            let key = format!("client:{name}:tokens_per_minute");
            per_minute(key, &owner, "tokens_per_minute", Unit::Tokens, n, tokens());
        }
        for m in c.model_limits.iter().filter(|m| names(&m.model)) {
            let owner = format!("client `{name}` on `{}`", m.model);
            let key = |what: &str| format!("client:{name}:model:{}:{what}", m.model);
            if let Some(n) = m.requests_per_minute {
                let (key, limit) = (key("requests_per_minute"), "model_requests_per_minute");
                per_minute(key, &owner, limit, Unit::Requests, n, 1);
            }
            if let Some(n) = m.tokens_per_minute {
                let (key, limit) = (key("tokens_per_minute"), "model_tokens_per_minute");
                per_minute(key, &owner, limit, Unit::Tokens, n, tokens());
            }
        }
    }
    for rule in &config.ratelimits {
        let Some(value) = req
            .headers
            .get(rule.header.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        if rule.value.as_deref().is_some_and(|v| v != value) || !names(&rule.model) {
            continue;
        }
        charges.push(Charge {
            // The model's length first: a model and a value could otherwise spell another pair.
            key: format!(
                "ratelimit:{}:{}:{}:{}:{value}",
                rule.header,
                rule.unit,
                rule.model.len(),
                rule.model
            ),
            meter: Meter::Rate(Rate {
                count: rule.tokens,
                period: rule.period,
            }),
            unit: Unit::Tokens,
            cost: tokens(),
            owner: format!("`{}: {value}` on `{}`", rule.header, rule.model),
            client: who.to_owned(),
            limit: "ratelimits",
            per: rule.unit,
        });
    }
    charges
}

/// The tokens a request may use, reserved before it goes out: the estimate of its prompt (as
/// `count_tokens` estimates it) and its answer's cap (`max_tokens`, `max_completion_tokens`,
/// `max_output_tokens`), else [`DEFAULT_OUTPUT_RESERVATION`].
pub fn token_reservation(body: &[u8]) -> u64 {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return DEFAULT_OUTPUT_RESERVATION;
    };
    let prompt = crate::translate::count_tokens::estimate(&request)["input_tokens"]
        .as_u64()
        .unwrap_or(0);
    let cap = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| request[*k].as_u64())
        .unwrap_or(DEFAULT_OUTPUT_RESERVATION);
    prompt.saturating_add(cap)
}

/// The answer's share of a reservation when the request sets no cap.
pub const DEFAULT_OUTPUT_RESERVATION: u64 = 4_096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Snapshot;

    /// `plan` for a request routed to `model`.
    fn plan_for(
        s: &Snapshot,
        client: Option<&Client>,
        model: &str,
        req: &RequestHeader,
        body: &[u8],
    ) -> Vec<Charge> {
        let g = group(s, model);
        plan(&s.config, client, &|m| s.names(m, g), req, body)
    }

    fn snapshot() -> Snapshot {
        let yaml = "listeners: [{type: model, name: llm}]
model_providers:
  - {model: openai/gpt-4o-mini, access_key: k}
  - {model: openai/gpt-4o, access_key: k}
  - {model: anthropic/claude-sonnet-4, access_key: k}
model_aliases: {fast: {target: openai/gpt-4o-mini}}
clients:
  - name: alice
    key: $ALICE
    limits: {requests_per_minute: 10, tokens_per_minute: 1000}
    budgets: {tokens_per_day: 5000}
    model_limits: {fast: {requests_per_minute: 2}, 'anthropic/*': {tokens_per_minute: 300}}
ratelimits:
  - {model: openai/gpt-4o, selector: {key: x-user-id, value: '*'}, limit: {tokens: 100, unit: hour}}
  - {model: gpt-4o-mini, selector: {key: x-org-id, value: acme}, limit: {tokens: 500, unit: day}}
";
        let config = Config::from_yaml(yaml, &|v| (v == "ALICE").then(|| "sk-alice".into()))
            .expect("config");
        Snapshot::new(config)
    }

    fn group(s: &Snapshot, model: &str) -> usize {
        s.resolver
            .resolve(&s.config.providers, Some(model))
            .expect("model")
            .group
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).expect("req");
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).expect("header");
        }
        r
    }

    fn keys(charges: &[Charge]) -> Vec<(&str, u64)> {
        charges.iter().map(|c| (c.key.as_str(), c.cost)).collect()
    }

    const BODY: &[u8] =
        br#"{"model":"x","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn a_clients_budget_limits_and_model_limits_apply_to_its_models() {
        let s = snapshot();
        let alice = &s.config.clients[0];
        let tokens = token_reservation(BODY);
        assert!(tokens > 50, "the prompt's estimate and the cap: {tokens}");
        let on_mini = plan_for(&s, Some(alice), "openai/gpt-4o-mini", &req(&[]), BODY);
        assert_eq!(
            keys(&on_mini),
            [
                ("client:alice:tokens_per_day", tokens),
                ("client:alice:requests_per_minute", 1),
                ("client:alice:tokens_per_minute", tokens),
                ("client:alice:model:fast:requests_per_minute", 1),
            ]
        );
        assert_eq!(on_mini[0].meter, Meter::Day(5000));
        let on_claude = plan_for(&s, Some(alice), "claude-sonnet-4", &req(&[]), BODY);
        assert_eq!(
            on_claude.last().map(|c| (c.key.as_str(), c.limit)),
            Some((
                "client:alice:model:anthropic/*:tokens_per_minute",
                "model_tokens_per_minute"
            ))
        );
        let on_4o = plan_for(&s, Some(alice), "gpt-4o", &req(&[]), BODY);
        assert_eq!(on_4o.len(), 3, "no model limit of gpt-4o");
    }

    #[test]
    fn plano_rules_match_the_model_however_named_and_each_value_is_its_own_limit() {
        let s = snapshot();
        // The documented `provider/model` form matches a request for the bare id.
        let g = "gpt-4o";
        let bob = plan_for(&s, None, g, &req(&[("x-user-id", "bob")]), BODY);
        let carol = plan_for(&s, None, g, &req(&[("x-user-id", "carol")]), BODY);
        assert_eq!(bob.len(), 1);
        assert_ne!(bob[0].key, carol[0].key, "one limit per value");
        assert_eq!(
            bob[0].meter,
            Meter::Rate(Rate {
                count: 100,
                period: std::time::Duration::from_secs(3600)
            })
        );
        assert_eq!(
            (bob[0].client.as_str(), bob[0].limit, bob[0].per),
            (ANONYMOUS, "ratelimits", "hour")
        );
        // No selector header: not limited by the rule (Plano's semantics).
        assert!(plan_for(&s, None, g, &req(&[]), BODY).is_empty());
        // A concrete value limits that value only; the bare id in the rule matches too, and
        // the alias's requests are the same model's.
        let mini = "fast";
        assert_eq!(
            plan_for(&s, None, mini, &req(&[("x-org-id", "acme")]), BODY).len(),
            1
        );
        assert!(plan_for(&s, None, mini, &req(&[("x-org-id", "other")]), BODY).is_empty());
        assert!(
            plan_for(&s, None, g, &req(&[("x-org-id", "acme")]), BODY).is_empty(),
            "another model"
        );
    }

    #[test]
    fn a_request_without_a_cap_reserves_the_default_answer() {
        let body = br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
        let t = token_reservation(body);
        assert!(
            t > DEFAULT_OUTPUT_RESERVATION && t < DEFAULT_OUTPUT_RESERVATION + 50,
            "{t}"
        );
    }
}
