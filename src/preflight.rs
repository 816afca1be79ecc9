//! What must hold before the process starts, checked before anything is forked or bound, so
//! that `-t`, a foreground start and `-d` fail at once with the reason instead of later (a
//! daemon that cannot write its pid file, a listener that retries a taken port for 30 s while
//! `-d` already reported success).

use std::net::TcpListener;
use std::path::Path;

use nix::unistd::{access, AccessFlags};

use crate::config::Config;

/// The problems that would stop `config` from running; `ports` also checks that the model and
/// metrics addresses can be bound (not with `-t`, which runs beside the live instance, nor with
/// `-u`, which takes the running instance's listeners over).
pub fn problems(config: &Config, ports: bool) -> Vec<String> {
    let s = &config.server;
    let mut out = Vec::new();
    for (key, path) in [
        ("server.pid_file", &s.pid_file),
        ("server.upgrade_sock", &s.upgrade_sock),
    ] {
        if let Some(why) = unwritable_directory(path) {
            out.push(format!("{key}: {}: {why}", path.display()));
        }
    }
    let metrics = s.metrics_address;
    let model_ip: Option<std::net::IpAddr> = config.listener.address.parse().ok();
    let overlaps = model_ip.is_none_or(|ip| {
        ip == metrics.ip() || ip.is_unspecified() || metrics.ip().is_unspecified()
    });
    if metrics.port() == config.listener.port && overlaps {
        out.push(format!(
            "server.metrics_address: {metrics} is where the model listener listens ({}); give metrics a port of their own",
            config.listener.bind_address()
        ));
    }
    if ports {
        let listener = config.listener.bind_address();
        for (what, address) in [
            ("the model listener", listener),
            ("server.metrics_address", s.metrics_address.to_string()),
        ] {
            if let Err(e) = TcpListener::bind(&address) {
                out.push(format!(
                    "{what}: cannot listen on {address}: {e}{}",
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        " (another process holds it; `-u` takes a running switchyard's listeners over)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    out
}

/// Why a file cannot be created at `path`: its directory is missing, not a directory, or not
/// writable by this user.
fn unwritable_directory(path: &Path) -> Option<String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(_) => Some(format!("the directory {} does not exist", dir.display())),
        Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", dir.display())),
        Ok(_) => access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
            .err()
            .map(|e| format!("cannot create files in {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn config(server: &str) -> Config {
        let (port, metrics) = (free_port(), free_port());
        let yaml = format!(
            "listeners: [{{type: model, name: llm, address: 127.0.0.1, port: {port}}}]\nmodel_providers:\n  - {{model: custom/m, base_url: 'http://127.0.0.1:9'}}\nserver: {{metrics_address: '127.0.0.1:{metrics}', {server}}}\n"
        );
        Config::from_yaml(&yaml, &|_| None).unwrap()
    }

    #[test]
    fn a_missing_directory_or_a_file_in_its_place_is_named() {
        let c = config("pid_file: /nonexistent-dir/sy.pid, upgrade_sock: /etc/hostname/sy.sock");
        let p = problems(&c, false);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("server.pid_file: /nonexistent-dir/sy.pid: the directory /nonexistent-dir does not exist"),
            "{p:?}"
        );
        assert!(
            p[1] == "server.upgrade_sock: /etc/hostname/sy.sock: /etc/hostname is not a directory",
            "{p:?}"
        );
        let dir = std::env::temp_dir();
        let ok = config(&format!(
            "pid_file: {}/sy.pid, upgrade_sock: {}/sy.sock",
            dir.display(),
            dir.display()
        ));
        assert!(problems(&ok, true).is_empty());
    }

    #[test]
    fn metrics_on_the_model_port_is_named() {
        let mut c = config("pid_file: /tmp/sy.pid");
        c.server.metrics_address = format!("0.0.0.0:{}", c.listener.port).parse().unwrap();
        let p = problems(&c, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("server.metrics_address: 0.0.0.0:"),
            "{p:?}"
        );
        // Another port, or another address: fine.
        c.server.metrics_address = format!("127.0.0.2:{}", c.listener.port).parse().unwrap();
        assert!(problems(&c, false).is_empty());
    }

    #[test]
    fn a_taken_port_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut c = config("pid_file: /tmp/sy.pid");
        c.listener.port = port;
        let p = problems(&c, true);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains(&format!("cannot listen on 127.0.0.1:{port}")),
            "{p:?}"
        );
        assert!(p[0].contains("another process holds it"), "{p:?}");
        assert!(problems(&c, false).is_empty(), "-t and -u do not bind");
    }
}
