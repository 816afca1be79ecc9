//! Upstream addresses, resolved off the request path.
//!
//! Pingora's `HttpPeer::new` with a host name does a blocking lookup and panics when it fails, so
//! peers are always built from a resolved [`SocketAddr`]. A background service re-resolves every
//! upstream host on a timer; a request only waits for a lookup when its host has never resolved.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::{debug, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// How often host names are looked up again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The addresses of one upstream `host:port`.
#[derive(Debug)]
pub struct Addresses {
    host: String,
    port: u16,
    /// IP literals never change and are never looked up.
    literal: bool,
    current: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Addresses {
    pub fn new(host: &str, port: u16) -> Self {
        let fixed: Vec<SocketAddr> = host
            .parse::<IpAddr>()
            .map(|ip| vec![SocketAddr::new(ip, port)])
            .unwrap_or_default();
        Addresses {
            host: host.to_owned(),
            port,
            literal: !fixed.is_empty(),
            current: ArcSwap::from_pointee(fixed),
            next: AtomicUsize::new(0),
        }
    }

    /// The known addresses. Looks the host up only if it has never been resolved (the
    /// refresher normally has done it already).
    pub async fn current(&self) -> io::Result<Arc<Vec<SocketAddr>>> {
        let addrs = self.current.load_full();
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        self.refresh().await?;
        Ok(self.current.load_full())
    }

    /// Where a new request starts in the address list, so requests rotate over all addresses.
    pub fn next_start(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Looks the host up again; keeps the old addresses if the lookup fails.
    pub async fn refresh(&self) -> io::Result<()> {
        if self.literal {
            return Ok(());
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        if addrs.is_empty() {
            return Err(io::Error::other(format!(
                "{} resolved to no addresses",
                self.host
            )));
        }
        if **self.current.load() != addrs {
            debug!("{}:{} resolves to {addrs:?}", self.host, self.port);
            self.current.store(Arc::new(addrs));
        }
        Ok(())
    }

    pub fn is_literal(&self) -> bool {
        self.literal
    }
}

/// One upstream host to keep resolved, and the provider that names it in warnings.
pub struct Host {
    pub addresses: Arc<Addresses>,
    pub provider: String,
}

/// Background service that keeps every upstream host of the config in force resolved.
pub struct Refresher<F> {
    /// The hosts of the snapshot in force (a reload may change them).
    pub hosts: F,
}

#[async_trait]
impl<F> BackgroundService for Refresher<F>
where
    F: Fn() -> Vec<Host> + Send + Sync,
{
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            // Providers on one host share their addresses: look each host up once.
            let mut done: Vec<Arc<Addresses>> = Vec::new();
            for host in (self.hosts)() {
                let addresses = &host.addresses;
                if addresses.is_literal() || done.iter().any(|d| Arc::ptr_eq(d, addresses)) {
                    continue;
                }
                done.push(addresses.clone());
                if let Err(e) = addresses.refresh().await {
                    warn!(
                        "cannot resolve {} (provider `{}`): {e}",
                        addresses.host, host.provider
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_need_no_lookup() {
        let a = Addresses::new("127.0.0.1", 8080);
        assert!(a.is_literal());
        assert_eq!(
            *a.current().await.unwrap(),
            ["127.0.0.1:8080".parse().unwrap()]
        );
        let a = Addresses::new("::1", 443);
        assert_eq!(*a.current().await.unwrap(), ["[::1]:443".parse().unwrap()]);
    }

    #[tokio::test]
    async fn localhost_resolves_on_first_use() {
        let a = Addresses::new("localhost", 9);
        assert!(!a.is_literal());
        let addrs = a.current().await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        assert_eq!(a.next_start() + 1, a.next_start());
    }
}
