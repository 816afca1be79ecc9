//! switchyard's `server` block: Pingora's process settings and the client-side limits.

use super::*;

pub(super) fn server(r: &mut Report, path: &str, node: &Node) -> ServerSettings {
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
