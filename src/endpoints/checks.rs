//! Active health checks for endpoints that configure `health_check: {path, interval}`: a
//! background service sends `GET path` to each such endpoint every `interval`; a connection
//! failure, timeout or non-2xx answer takes the endpoint out of rotation until a check passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use log::{info, warn};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;

use crate::config::HealthCheck;
use crate::metrics::Metrics;
use crate::side_call;
use crate::state::{SharedState, Upstream};

/// Largest health-check answer read (its body is read so the connection can be reused).
const MAX_BODY: usize = 1 << 20;

/// How often the service looks for checks that are due.
const TICK: Duration = Duration::from_millis(250);

pub struct HealthChecker {
    pub state: SharedState,
    pub metrics: Arc<Metrics>,
    /// `overrides.upstream_tls_ca_path`, as the proxy uses it.
    pub ca_file: Option<String>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let connector = side_call::connector(self.ca_file.clone());
        let mut next: HashMap<String, Instant> = HashMap::new();
        loop {
            let snapshot = self.state.load_full();
            let now = Instant::now();
            for (i, upstream) in snapshot.upstreams().iter().enumerate() {
                let provider = snapshot.provider(i);
                let Some(check) = &provider.health_check else {
                    continue;
                };
                let due = next.entry(provider.name.clone()).or_insert(now);
                if *due > now {
                    continue;
                }
                *due = now + check.interval;
                let healthy = probe(&connector, upstream, check).await;
                if upstream.health.set_down(!healthy) {
                    if healthy {
                        info!(
                            "endpoint `{}` passed its health check; back in rotation",
                            provider.name
                        );
                    } else {
                        warn!(
                            "endpoint `{}` failed its health check; out of rotation",
                            provider.name
                        );
                    }
                }
                self.metrics
                    .endpoint_health(&provider.prefix, &provider.name, healthy);
            }
            drop(snapshot);
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One check: true for a 2xx answer within the timeout.
async fn probe(connector: &Connector, upstream: &Upstream, check: &HealthCheck) -> bool {
    let attempt = async {
        let addrs = upstream.addresses.current().await.ok()?;
        let addr = *addrs.first()?;
        let origin = &upstream.origin;
        let mut peer = HttpPeer::new(addr, origin.tls, origin.host.clone());
        peer.options.total_connection_timeout = Some(check.timeout);
        peer.options.read_timeout = Some(check.timeout);
        let mut req = RequestHeader::build("GET", check.path.as_bytes(), None).ok()?;
        req.insert_header("host", origin.authority()).ok()?;
        let (status, _) = side_call::send(connector, &peer, req, MAX_BODY)
            .await
            .ok()?;
        Some((200..300).contains(&status))
    };
    tokio::time::timeout(check.timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
