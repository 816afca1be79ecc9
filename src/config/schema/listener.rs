//! The model listener (`listeners`, Plano's list and legacy forms) and the attempt policy keys
//! it and the providers share: `retry`, `timeouts`, `outlier_detection`.

use super::*;

pub(super) fn listeners(r: &mut Report, path: &str, node: &Node) -> Listener {
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

pub(super) fn model_listener(r: &mut Report, mut f: Fields<'_>, name: String) -> Listener {
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
    if let Some((p, n)) = f.take("auth") {
        match yaml::string(r, &p, n).as_deref() {
            Some("required") => listener.auth = ClientAuth::Required,
            Some("optional") => listener.auth = ClientAuth::Optional,
            Some(other) => r.error(
                &p,
                n.line,
                format!("unknown `{other}`; expected required or optional"),
            ),
            None => {}
        }
    }
    f.finish(r, PLANNED_LISTENER);
    listener
}

/// `retry: {attempts, on: [connect, timeout, 429, 5xx], backoff: {base, max}}`
pub(super) fn retry(r: &mut Report, path: &str, node: &Node) -> Option<Retry> {
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
pub(super) fn timeouts(r: &mut Report, path: &str, node: &Node) -> Timeouts {
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
pub(super) fn outlier(r: &mut Report, path: &str, node: &Node) -> Outlier {
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
