//! switchyard's `clients`: each client's name, its key (from the environment or as a SHA-256
//! digest, never written in the file), the models it may use, its limits per minute (its own
//! and per model) and its daily token budget. Limits this version does not enforce (per day,
//! in money) are refused rather than silently ignored.

use super::*;

/// `clients: [{name, key, models, limits, model_limits, budgets}]`.
pub(super) fn clients(r: &mut Report, path: &str, node: &Node, env: Env) -> Vec<Client> {
    let mut out: Vec<Client> = Vec::new();
    for (p, item, mut f) in yaml::records(r, path, node) {
        let name = required_string(r, &mut f, "name", item).filter(|name| {
            // The name labels metrics and keys the counts: none of the keys' separators.
            let fits = !name.is_empty() && !name.contains([':', '{', '}']);
            if !fits {
                r.error(
                    &p,
                    item.line,
                    format!("client name `{name}` must be non-empty, without `:`, `{{` or `}}`"),
                );
            }
            fits
        });
        let digest = match f.take("key") {
            Some((kp, kn)) => key_digest(r, &kp, kn, env),
            None => {
                r.error(&p, item.line, "missing required key `key`");
                None
            }
        };
        let models = f.take("models").map(|(mp, mn)| {
            yaml::list(r, &mp, mn)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(j, m)| yaml::string(r, &index(&mp, j), m))
                .collect::<Vec<String>>()
        });
        let (requests_per_minute, tokens_per_minute) = f
            .take("limits")
            .and_then(|(lp, ln)| {
                let mut lf = Fields::of(r, &lp, ln)?;
                let limits = per_minute(r, &mut lf);
                refuse_unenforced(r, &mut lf, &["requests_per_day", "tokens_per_day"]);
                lf.finish(r, &[]);
                Some(limits)
            })
            .unwrap_or_default();
        let model_limits = f
            .take("model_limits")
            .map(|(mp, mn)| model_limits(r, &mp, mn))
            .unwrap_or_default();
        let tokens_per_day = f.take("budgets").and_then(|(bp, bn)| {
            let mut bf = Fields::of(r, &bp, bn)?;
            let tokens = bf
                .take("tokens_per_day")
                .and_then(|(tp, tn)| yaml::integer(r, &tp, tn, 1, 1_000_000_000_000))
                .map(|n| n as u64);
            refuse_unenforced(r, &mut bf, &["usd_per_day", "usd_per_month"]);
            bf.finish(r, &[]);
            tokens
        });
        f.finish(r, &[]);
        let (Some(name), Some(digest)) = (name, digest) else {
            continue;
        };
        if let Some(first) = out.iter().find(|c| c.name == name) {
            r.error(
                &p,
                item.line,
                format!("client `{name}` is already defined on line {}", first.line),
            );
            continue;
        }
        if let Some(first) = out.iter().find(|c| c.digest == digest) {
            r.error(
                &p,
                item.line,
                format!(
                    "this key is also the key of client `{}` (line {})",
                    first.name, first.line
                ),
            );
            continue;
        }
        out.push(Client {
            name,
            digest,
            models,
            requests_per_minute,
            tokens_per_minute,
            model_limits,
            tokens_per_day,
            line: item.line,
        });
    }
    out
}

/// `requests_per_minute` and `tokens_per_minute` of a `limits` block.
fn per_minute(r: &mut Report, f: &mut Fields<'_>) -> (Option<u64>, Option<u64>) {
    let mut take = |key: &str, max: i64| {
        f.take(key)
            .and_then(|(p, n)| yaml::integer(r, &p, n, 1, max))
            .map(|n| n as u64)
    };
    let rpm = take("requests_per_minute", 10_000_000);
    let tpm = take("tokens_per_minute", 1_000_000_000_000);
    (rpm, tpm)
}

/// `model_limits: {<model>: {requests_per_minute, tokens_per_minute}}`.
fn model_limits(r: &mut Report, path: &str, node: &Node) -> Vec<ModelLimit> {
    let Some(mut f) = Fields::of(r, path, node) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (model, _, value) in f.rest() {
        let p = yaml::join(path, model);
        let Some(mut mf) = Fields::of(r, &p, value) else {
            continue;
        };
        let (requests_per_minute, tokens_per_minute) = per_minute(r, &mut mf);
        mf.finish(r, &[]);
        if requests_per_minute.is_none() && tokens_per_minute.is_none() {
            r.error(
                &p,
                value.line,
                "give `requests_per_minute`, `tokens_per_minute` or both",
            );
            continue;
        }
        out.push(ModelLimit {
            model: model.to_owned(),
            requests_per_minute,
            tokens_per_minute,
            line: value.line,
        });
    }
    out
}

/// Keys of the governance design this version does not enforce: an error each, so that nobody
/// relies on a limit that does not exist.
fn refuse_unenforced(r: &mut Report, f: &mut Fields<'_>, keys: &[&str]) {
    for key in keys {
        if let Some((kp, kn)) = f.take(key) {
            r.error(
                &kp,
                kn.line,
                "not enforced by this version of switchyard; remove it rather than rely on it",
            );
        }
    }
}

/// A client's key: `$VAR` / `${VAR}` (the environment, or the `.env` beside the config), or
/// `sha256:<64 hex digits>`. A literal key is refused: the file would hold a secret.
fn key_digest(r: &mut Report, path: &str, node: &Node, env: Env) -> Option<[u8; 32]> {
    let raw = yaml::string(r, path, node)?;
    if let Some(hex) = raw.strip_prefix("sha256:") {
        let digest = parse_hex32(hex);
        if digest.is_none() {
            r.error(
                path,
                node.line,
                "`sha256:` must be followed by 64 hex digits",
            );
        }
        return digest;
    }
    if !raw.starts_with('$') {
        r.error(
            path,
            node.line,
            "a literal key would keep a secret in the file; use $VAR (from the environment or .env) or sha256:<64 hex digits>",
        );
        return None;
    }
    let key = expanded(r, path, node, env)?;
    if key.is_empty() {
        r.error(path, node.line, "the key is empty");
        return None;
    }
    Some(super::super::key_digest(key.as_bytes()))
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
