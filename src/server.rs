//! Builds and runs the Pingora server: the proxy service on the model listener and the
//! background services, with Pingora's process settings taken from the `server` block.

use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::background_service;
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use std::path::PathBuf;
use std::sync::Arc;

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::dns::Refresher;
use crate::downstream::{Downstream, Limits};
use crate::endpoints::checks::HealthChecker;
use crate::lifecycle::{Lifecycle, Signals};
use crate::metrics::Metrics;
use crate::models::ModelLists;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::router::feeds::{Feeds, Figures};
use crate::state::Snapshot;
use crate::upgrade;

/// How the process was started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Launch {
    /// Take the listening sockets over from a running instance (`-u`).
    pub upgrade: bool,
    /// Detach into the background (`-d`).
    pub daemon: bool,
}

/// Pingora's own settings, from switchyard's `server` block.
pub fn server_conf(config: &Config, launch: Launch) -> ServerConf {
    let s = &config.server;
    ServerConf {
        daemon: launch.daemon,
        // `-d` returns once the daemon serves (upgrade::Ready), not right after the fork.
        daemon_wait_for_ready: launch.daemon,
        daemon_ready_timeout_seconds: std::num::NonZeroU64::new(30),
        threads: s.threads,
        pid_file: s.pid_file.to_string_lossy().into_owned(),
        upgrade_sock: s.upgrade_sock.to_string_lossy().into_owned(),
        grace_period_seconds: Some(s.grace_period.as_secs_f64().ceil() as u64),
        ca_file: config
            .overrides
            .upstream_tls_ca_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        // Each thread runs its own runtime and keeps the connections it accepted, as nginx's
        // workers do: no cross-thread wake-ups or work-stealing atomics on the request path
        // (about 10% less CPU per request in bench/run).
        work_stealing: false,
        // The attempt plan decides how often a request is tried; this only bounds it.
        max_retries: crate::exchange::MAX_ATTEMPTS as usize,
        ..ServerConf::default()
    }
}

/// Runs the gateway on `config` (loaded from `path`, which SIGHUP reloads) until it is told to
/// stop; does not return. What would stop it from serving is checked first (`preflight`): then
/// it exits 1 with the reasons, before forking or binding anything.
pub fn run(config: Config, path: PathBuf, launch: Launch) -> ! {
    let problems = crate::preflight::problems(&config, !launch.upgrade);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        std::process::exit(1);
    }
    let opt = Opt {
        upgrade: launch.upgrade,
        daemon: launch.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config, launch));
    if launch.upgrade {
        match upgrade::running(&config.server.pid_file) {
            Ok(running) => running.signal_when_listening(config.server.upgrade_sock.clone()),
            Err(e) => {
                log::error!("{e}");
                std::process::exit(1);
            }
        }
    }
    // With -u this waits for the running instance's listeners.
    server.bootstrap();
    if !launch.daemon {
        upgrade::write_pid_file(&config.server.pid_file);
    }

    let bind = config.listener.bind_address();
    let config_port = config.listener.port;
    let metrics_address = config.server.metrics_address;
    let lifecycle = Lifecycle::new();
    let (access_log, access_log_writer) =
        AccessLog::new(config.server.access_log.clone(), lifecycle.clone());
    let metrics = match Metrics::register(pingora_prometheus::prometheus::default_registry()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            log::error!("cannot register metrics: {e}");
            std::process::exit(1);
        }
    };
    let startup = config.clone();
    let limits = Limits::of(&config.server);
    let config_grace = config.server.grace_period;
    let config_upgrade_sock = config.server.upgrade_sock.clone();
    let ca_file = config
        .overrides
        .upstream_tls_ca_path
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let health_metrics = metrics.clone();
    let store_metrics = metrics.clone();
    let state = Snapshot::new(config).into_shared();

    let signals = Signals {
        lifecycle: lifecycle.clone(),
        grace: config_grace,
        upgrade_sock: config_upgrade_sock,
        phases: std::sync::Mutex::new(Some(server.watch_execution_phase())),
    };
    let figures = Arc::new(Figures::default());
    let (tracer, span_exporter) =
        crate::trace::export::Tracer::new(metrics.clone(), lifecycle.clone(), ca_file.clone());
    let gateway = Gateway::new(
        state.clone(),
        metrics.clone(),
        access_log,
        lifecycle,
        ModelLists::default(),
        figures.clone(),
        tracer,
    );
    let mut proxy = http_proxy(&server.configuration, gateway);
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(limits.keepalive);
    proxy.server_options = Some(options);
    // The client side (downstream): connection limits and timeouts around Pingora's HTTP app.
    let mut proxy = Service::new(
        "switchyard".to_owned(),
        Downstream::new(proxy, limits, metrics.clone()),
    );
    // Client connections read straight into the HTTP parser's buffers: Pingora's default 64 KiB
    // read buffer per connection is zeroed memory that 1,000 idle-waiting streams would hold
    // (64 MiB), and saves no system calls here since whole requests are read anyway.
    proxy.add_listener(
        ListenerConfig::tcp(bind.clone()).l4_buffer(L4BufferSettings::default().read(0)),
    );

    let mut prometheus = pingora_prometheus::prometheus_http_service();
    prometheus.add_tcp(&metrics_address.to_string());

    server.add_service(proxy);
    server.add_service(prometheus);
    server.add_service(background_service(
        "config reload",
        Reloader {
            path,
            state: state.clone(),
            metrics,
            startup,
        },
    ));
    server.add_service(background_service(
        "health checks",
        HealthChecker {
            state: state.clone(),
            metrics: health_metrics,
            ca_file: ca_file.clone(),
        },
    ));
    server.add_service(background_service(
        "model metrics sources",
        Feeds {
            state: state.clone(),
            figures,
            ca_file,
        },
    ));
    let current = state.clone();
    server.add_service(background_service(
        "state store watch",
        crate::store::Watch {
            current: move || current.load().store.clone(),
            metrics: store_metrics,
        },
    ));
    let hosts = move || {
        let snapshot = state.load();
        let upstreams = snapshot.upstreams().iter();
        upstreams
            .map(|u| crate::dns::Host {
                addresses: u.addresses.clone(),
                provider: u.provider_name.clone(),
            })
            .collect()
    };
    server.add_service(background_service("dns refresher", Refresher { hosts }));
    server.add_service(background_service("span exporter", span_exporter));
    if let Some(writer) = access_log_writer {
        server.add_service(background_service("access log", writer));
    }
    server.add_service(background_service(
        "readiness",
        upgrade::Ready {
            launcher: launch.daemon.then(nix::unistd::Pid::this),
            port: config_port,
            listening: format!("{bind}, metrics on {metrics_address}"),
        },
    ));
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    std::process::exit(0)
}
