//! One `model_providers` entry: Plano's keys and switchyard's, its wire API and origin (from
//! the catalog or `base_url`), and Plano's hosted router as an internal entry.

use super::*;

/// A provider's v0.3.0 inline routing preferences: (name, description).
pub(super) type InlinePrefs = Vec<(String, String)>;

pub(super) fn provider(
    r: &mut Report,
    path: &str,
    node: &Node,
    env: Env,
) -> Option<(Provider, InlinePrefs)> {
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

    let access_key = f.take("access_key").and_then(|(p, n)| {
        let key = expanded(r, &p, n, env)?;
        let headers = KeyHeaders::of(&key);
        if headers.is_none() {
            // Said without the key.
            r.error(
                &p,
                n.line,
                "the key holds characters no HTTP header may carry",
            );
        }
        Some((Secret::new(key), headers?))
    });
    let (access_key, key_headers) = match access_key {
        Some((key, headers)) => (Some(key), Some(headers)),
        None => (None, None),
    };
    // A ChatGPT subscription has no API key: the client's own token goes (Plano's default).
    let passthrough_auth = f
        .take("passthrough_auth")
        .and_then(|(p, n)| yaml::boolean(r, &p, n))
        .unwrap_or(prefix == "chatgpt" && access_key.is_none());
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
    let mut headers = f
        .take("headers")
        .map(|(p, n)| extra_headers(r, &p, n, env))
        .unwrap_or_default();
    if prefix == "chatgpt" {
        chatgpt_headers(&mut headers, env);
    }
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
    // Bedrock without a key: requests signed with the environment's AWS credentials, if any.
    let aws = (interface == Interface::Bedrock && access_key.is_none() && !passthrough_auth)
        .then(|| aws_credentials(&origin.host, env))
        .flatten();
    let provider = Provider {
        name: name.unwrap_or_else(|| model.clone()),
        model,
        prefix,
        id,
        interface,
        origin,
        custom_base_url: base_url_given,
        access_key,
        key_headers,
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
        aws,
        line: node.line,
    };
    Some((provider, inline_prefs))
}

/// Splits `http(s)://host[:port][/path]`. An empty or `/` path means "the provider's default".
pub(super) fn parse_base_url(raw: &str) -> Result<Origin, &'static str> {
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

/// The environment's AWS credentials, for a Bedrock provider at `host`: its region from the host
/// (`bedrock-runtime.<region>.amazonaws.com`), else `AWS_REGION` or `AWS_DEFAULT_REGION`.
fn aws_credentials(host: &str, env: Env) -> Option<AwsCredentials> {
    let mut labels = host.split('.');
    let region = match (labels.next(), labels.next()) {
        (Some(service), Some(region)) if service.starts_with("bedrock") => Some(region.to_owned()),
        _ => env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
    }?;
    Some(AwsCredentials {
        access_key_id: env("AWS_ACCESS_KEY_ID").filter(|k| !k.is_empty())?,
        secret_access_key: Secret::new(env("AWS_SECRET_ACCESS_KEY").filter(|k| !k.is_empty())?),
        session_token: env("AWS_SESSION_TOKEN")
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        region,
    })
}

/// The ChatGPT Codex backend's headers (catalog::CHATGPT_HEADERS, the account id, a session id)
/// where the entry does not set them.
fn chatgpt_headers(headers: &mut Vec<(String, Secret)>, env: Env) {
    let mut add = |name: &str, value: String| {
        if !headers.iter().any(|(n, _)| n == name) {
            headers.push((name.to_owned(), Secret::new(value)));
        }
    };
    for (name, value) in catalog::CHATGPT_HEADERS {
        add(name, (*value).to_owned());
    }
    if let Some(account) = env("CHATGPT_ACCOUNT_ID").filter(|a| HeaderValue::from_str(a).is_ok()) {
        add("chatgpt-account-id", account);
    }
    add("session_id", session_id());
}

/// A random-enough id for this process's ChatGPT session (time and process id, hashed).
fn session_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let state = RandomState::new();
    let a = state.hash_one((nanos, std::process::id()));
    let b = state.hash_one(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

pub(super) fn extra_headers(
    r: &mut Report,
    path: &str,
    node: &Node,
    env: Env,
) -> Vec<(String, Secret)> {
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

/// switchyard's provider `cost: {input_per_million, output_per_million}`, as one number (their
/// sum, as Plano ranks cost sources).
pub(super) fn cost(r: &mut Report, path: &str, node: &Node) -> Option<f64> {
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

/// Plano's hosted router (its `plano` cluster), as an internal provider: not listed in
/// `/v1/models`, keyless, named `plano-orchestrator` as Plano names it.
pub const HOSTED_ROUTER: &str = "https://archfc.katanemo.dev";

pub(super) fn hosted_router(router_model: &str, env: Env) -> Option<Provider> {
    let id = router_model
        .split_once('/')
        .map_or(router_model, |(_, id)| id);
    let node = yaml::parse(&format!(
        "{{name: plano-orchestrator, model: {}, base_url: {HOSTED_ROUTER}}}",
        serde_json::Value::from(format!("plano/{id}"))
    ))
    .ok()?;
    let mut scratch = Report::default();
    let (mut p, _) = provider(&mut scratch, "plano-orchestrator", &node, env)?;
    p.internal = true;
    p.line = 0;
    Some(p)
}
