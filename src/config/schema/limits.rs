//! Plano's `ratelimits`, loaded as Plano documents them with its bugs fixed (a bad `unit` or a
//! zero `tokens` is a load error naming the line, not a crash), switchyard's `state`: where
//! limits are counted, and Plano's `state_storage`: where Responses conversations are kept.

use super::*;

/// `ratelimits: [{model, selector: {key, value}, limit: {tokens, unit}}]`.
pub(super) fn ratelimits(r: &mut Report, path: &str, node: &Node) -> Vec<RateRule> {
    let mut out: Vec<RateRule> = Vec::new();
    for (p, item, mut f) in yaml::records(r, path, node) {
        let model = required_string(r, &mut f, "model", item);
        let selector = match f.take("selector") {
            Some((sp, sn)) => selector(r, &sp, sn),
            None => {
                r.error(&p, item.line, "missing required key `selector`");
                None
            }
        };
        let limit = match f.take("limit") {
            Some((lp, ln)) => limit(r, &lp, ln),
            None => {
                r.error(&p, item.line, "missing required key `limit`");
                None
            }
        };
        f.finish(r, &[]);
        let (Some(model), Some((header, value)), Some((tokens, unit, period))) =
            (model, selector, limit)
        else {
            continue;
        };
        let rule = RateRule {
            model,
            header,
            value,
            tokens,
            unit,
            period,
            line: item.line,
        };
        // Plano skips a second rule for the same model and selector (and logs it): so does
        // switchyard, saying so at load.
        if let Some(first) = out
            .iter()
            .find(|o| (&o.model, &o.header, &o.value) == (&rule.model, &rule.header, &rule.value))
        {
            r.warn(
                &p,
                item.line,
                format!(
                    "the rule on line {} has the same model and selector; this one is ignored",
                    first.line
                ),
            );
            continue;
        }
        out.push(rule);
    }
    out
}

/// `selector: {key, value}`: the header (lowercase) and its value, `None` for `"*"` (one limit
/// per distinct value; Plano compared `*` literally).
fn selector(r: &mut Report, path: &str, node: &Node) -> Option<(String, Option<String>)> {
    let mut f = Fields::of(r, path, node)?;
    let key = required_string(r, &mut f, "key", node);
    let value = match f.take("value") {
        Some((vp, vn)) => yaml::string(r, &vp, vn).map(|v| (v != "*").then_some(v)),
        // Plano's code reads a missing value as "each value"; its schema asks for one.
        None => Some(None),
    };
    f.finish(r, &[]);
    let key = key?;
    if HeaderName::from_bytes(key.as_bytes()).is_err() {
        r.error(path, node.line, format!("`{key}` is not a header name"));
        return None;
    }
    Some((key.to_ascii_lowercase(), value?))
}

/// `limit: {tokens, unit}`.
fn limit(r: &mut Report, path: &str, node: &Node) -> Option<(u64, &'static str, Duration)> {
    let mut f = Fields::of(r, path, node)?;
    let tokens = match f.take("tokens") {
        Some((tp, tn)) => yaml::integer(r, &tp, tn, 1, i64::from(u32::MAX)).map(|n| n as u64),
        None => {
            r.error(path, node.line, "missing required key `tokens`");
            None
        }
    };
    let unit = match f.take("unit") {
        Some((up, un)) => yaml::string(r, &up, un).and_then(|u| {
            let found = UNITS.iter().find(|(name, _)| *name == u);
            if found.is_none() {
                r.error(
                    &up,
                    un.line,
                    format!("unknown unit `{u}`; expected second, minute, hour or day"),
                );
            }
            found.copied()
        }),
        None => {
            r.error(path, node.line, "missing required key `unit`");
            None
        }
    };
    f.finish(r, &[]);
    let (name, secs) = unit?;
    Some((tokens?, name, Duration::from_secs(secs)))
}

const UNITS: &[(&str, u64)] = &[
    ("second", 1),
    ("minute", 60),
    ("hour", 3_600),
    ("day", 86_400),
];

/// `state: {redis: {url, timeout, on_error, key_prefix}}`.
pub(super) fn state(r: &mut Report, path: &str, node: &Node, env: Env) -> StateSettings {
    let Some(mut f) = Fields::of(r, path, node) else {
        return StateSettings::default();
    };
    let redis = f.take("redis").and_then(|(rp, rn)| redis(r, &rp, rn, env));
    f.finish(r, &[]);
    StateSettings { redis }
}

fn redis(r: &mut Report, path: &str, node: &Node, env: Env) -> Option<RedisSettings> {
    let mut f = Fields::of(r, path, node)?;
    let url = match f.take("url") {
        Some((up, un)) => redis_url(r, &up, un, env),
        None => {
            r.error(path, node.line, "missing required key `url`");
            None
        }
    };
    let timeout = f
        .take("timeout")
        .and_then(|(tp, tn)| positive_duration(r, &tp, tn))
        .unwrap_or(Duration::from_millis(50));
    let on_error = f
        .take("on_error")
        .and_then(|(op, on)| {
            let word = yaml::string(r, &op, on)?;
            let policy = [
                OnStoreError::Open,
                OnStoreError::Closed,
                OnStoreError::Local,
            ]
            .into_iter()
            .find(|p| p.as_str() == word);
            if policy.is_none() {
                r.error(
                    &op,
                    on.line,
                    format!("unknown policy `{word}`; expected open, closed or local"),
                );
            }
            policy
        })
        .unwrap_or_default();
    let key_prefix = f
        .take("key_prefix")
        .and_then(|(kp, kn)| yaml::string(r, &kp, kn))
        .unwrap_or_else(|| "switchyard:".into());
    f.finish(r, &[]);
    Some(RedisSettings {
        url: url?,
        timeout,
        on_error,
        key_prefix,
    })
}

/// `state_storage: {type: memory | postgres, connection_string}`. A connection string that does
/// not parse still loads (Plano's own example holds `[USER]` and `[HOST]` placeholders): it is
/// said as a warning, and conversations then answer 503 until it is fixed.
pub(super) fn state_storage(r: &mut Report, path: &str, node: &Node, env: Env) -> StateStorage {
    let Some(mut f) = Fields::of(r, path, node) else {
        return StateStorage::default();
    };
    let kind = match f.take("type") {
        Some((tp, tn)) => yaml::string(r, &tp, tn).map(|t| (t, tp, tn.line)),
        None => {
            r.error(path, node.line, "missing required key `type`");
            None
        }
    };
    let connection = f
        .take("connection_string")
        .and_then(|(cp, cn)| expanded(r, &cp, cn, env).map(|c| (c, cp, cn.line)));
    f.finish(r, &[]);
    let Some((kind, tp, line)) = kind else {
        return StateStorage::default();
    };
    match (kind.as_str(), connection) {
        ("memory", _) => StateStorage::Memory,
        ("postgres", Some((c, cp, cline))) => {
            if c.parse::<tokio_postgres::Config>().is_err() {
                // Said without the string, which may hold a password.
                r.warn(&cp, cline, "not a PostgreSQL connection string (postgres://user:password@host:port/database or key=value pairs): Responses conversations answer 503 until it is fixed");
            }
            StateStorage::Postgres {
                connection_string: Secret::new(c),
            }
        }
        ("postgres", None) => {
            r.error(
                path,
                node.line,
                "`connection_string` is required when `type` is `postgres`",
            );
            StateStorage::default()
        }
        (other, _) => {
            r.error(
                &tp,
                line,
                format!("unknown type `{other}`; expected memory or postgres"),
            );
            StateStorage::default()
        }
    }
}

/// A Redis URL (`$VAR` expanded); a bad one is said without the URL, which may hold a password.
pub(super) fn redis_url(r: &mut Report, path: &str, node: &Node, env: Env) -> Option<Secret> {
    let url = expanded(r, path, node, env)?;
    let scheme = url.split_once("://").map(|(s, _)| s);
    let known = matches!(scheme, Some("redis" | "rediss" | "unix" | "redis+unix"));
    if !known || redis::Client::open(url.as_str()).is_err() {
        r.error(
            path,
            node.line,
            "not a Redis URL: expected redis://[user:password@]host[:port][/db], rediss://… (TLS) or unix:///path",
        );
        return None;
    }
    Some(Secret::new(url))
}

/// The store of Plano's `routing.session_cache: {type: redis, url}`: the defaults of
/// `state.redis`.
pub(super) fn session_store(url: Secret) -> RedisSettings {
    RedisSettings {
        url,
        timeout: Duration::from_millis(50),
        on_error: OnStoreError::Open,
        key_prefix: "switchyard:".into(),
    }
}
