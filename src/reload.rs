//! In-process config reload on SIGHUP.
//!
//! Pingora handles SIGTERM, SIGINT and SIGQUIT; SIGHUP is free (and would otherwise kill the
//! process). On each SIGHUP the config file (and the `.env` next to it) is read again, validated,
//! and a complete new [`Snapshot`] is built, its new hosts resolved, before one atomic swap.
//! Requests in flight finish on the snapshot they started with. A config that does not load
//! changes nothing: the running one keeps serving and the failure is logged and counted.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use log::{error, info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::{SharedState, Snapshot};

/// The background service that reloads the config on SIGHUP.
pub struct Reloader {
    pub path: PathBuf,
    pub state: SharedState,
    pub metrics: Arc<Metrics>,
    /// The config the process started with: what only a restart or upgrade can change.
    pub startup: Config,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot listen for SIGHUP, config reload is unavailable: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                Some(()) = hangups.recv() => self.reload().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Reloader {
    /// Loads, validates and builds; swaps only if everything succeeded.
    pub async fn reload(&self) {
        let config = match Config::load(&self.path) {
            Ok(config) => config,
            Err(e) => {
                error!("config reload failed; the running config stays in force: {e}");
                self.metrics.reloaded(false);
                return;
            }
        };
        for warning in &config.warnings {
            warn!("{}: {warning}", self.path.display());
        }
        for setting in needs_upgrade(&self.startup, &config) {
            warn!("config reload: `{setting}` changed but only applies after a restart or a graceful upgrade (-u + SIGQUIT); the running value stays");
        }
        let previous = self.state.load_full();
        let snapshot = Snapshot::after(config, Some(&previous));
        drop(previous);
        // Resolve hosts new to this config before it takes traffic. A failed lookup is not a
        // config error (DNS may recover); requests retry it.
        for upstream in snapshot.upstreams() {
            if let Err(e) = upstream.addresses.current().await {
                warn!(
                    "config reload: cannot resolve {} (provider `{}`) yet: {e}",
                    upstream.origin.host, upstream.provider_name
                );
            }
        }
        let providers = snapshot.config.providers.len();
        self.state.store(Arc::new(snapshot));
        self.metrics.reloaded(true);
        info!(
            "config reloaded from {}: {providers} model providers",
            self.path.display()
        );
    }
}

/// Settings fixed at startup that differ in `new`.
fn needs_upgrade(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    [
        (
            "listeners (address, port)",
            old.listener.bind_address() != new.listener.bind_address(),
        ),
        ("server.threads", o.threads != n.threads),
        (
            "server.metrics_address",
            o.metrics_address != n.metrics_address,
        ),
        ("server.pid_file", o.pid_file != n.pid_file),
        ("server.upgrade_sock", o.upgrade_sock != n.upgrade_sock),
        ("server.grace_period", o.grace_period != n.grace_period),
        ("server.access_log", o.access_log != n.access_log),
        (
            "server.header_timeout",
            o.header_timeout != n.header_timeout,
        ),
        (
            "server.keepalive_timeout",
            o.keepalive_timeout != n.keepalive_timeout,
        ),
        (
            "server.max_connections",
            o.max_connections != n.max_connections,
        ),
        (
            "overrides.upstream_tls_ca_path",
            old.overrides.upstream_tls_ca_path != new.overrides.upstream_tls_ca_path,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_settings_are_reported_not_applied() {
        let load = |yaml: &str| Config::from_yaml(yaml, &|_| None).unwrap();
        let old = load("server: {threads: 2}\n");
        let new = load("listeners: [{name: l, type: model, port: 8080, timeout: 10s}]\nserver: {threads: 4, max_request_body: 1MiB}\n");
        assert_eq!(
            needs_upgrade(&old, &new),
            ["listeners (address, port)", "server.threads"]
        );
        assert!(needs_upgrade(&old, &old).is_empty());
    }
}
