//! switchyard's `clients`: each client's name, its key (from the environment or as a SHA-256
//! digest, never written in the file), the models it may use and its request rate. Token
//! limits and budgets are not enforced by this version: they are refused rather than silently
//! ignored.

use super::*;

/// `clients: [{name, key, models}]`.
pub(super) fn clients(r: &mut Report, path: &str, node: &Node, env: Env) -> Vec<Client> {
    let mut out: Vec<Client> = Vec::new();
    for (i, item) in yaml::list(r, path, node)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = index(path, i);
        let Some(mut f) = Fields::of(r, &p, item) else {
            continue;
        };
        let name = required_string(r, &mut f, "name", item);
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
                let mut per_minute = |key: &str, max: i64| {
                    lf.take(key)
                        .and_then(|(rp, rn)| yaml::integer(r, &rp, rn, 1, max))
                        .map(|n| n as u64)
                };
                let rpm = per_minute("requests_per_minute", 10_000_000);
                let tpm = per_minute("tokens_per_minute", 1_000_000_000_000);
                refuse_unenforced(r, &mut lf, &["requests_per_day", "tokens_per_day"]);
                lf.finish(r, &[]);
                Some((rpm, tpm))
            })
            .unwrap_or_default();
        refuse_unenforced(r, &mut f, &["budgets", "model_limits"]);
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
            line: item.line,
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
