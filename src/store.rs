//! The state store replicas share: Redis or Valkey (`state.redis`, or Plano's
//! `routing.session_cache: {type: redis, url}`). Limits and budgets (quota) and preference
//! routing's memory (router::recall) keep their shared state in it.
//!
//! Every call waits at most the store's `timeout`; a call that fails or is late makes the store
//! rest for [`REST`], during which calls fail at once, so requests do not each pay the timeout
//! while Redis is down. The connection is made at start by [`Watch`], which pings every second,
//! and reconnects by itself; sharing resumes as soon as Redis is back, without a restart.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;

use crate::config::RedisSettings;
use crate::metrics::Metrics;

/// How long the store is left alone after a failure.
const REST: Duration = Duration::from_secs(1);

/// How often [`Watch`] pings, and how long a ping may wait (a first connection, TLS included).
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_WAIT: Duration = Duration::from_secs(2);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub struct Store {
    settings: RedisSettings,
    /// Made on first use, inside the runtime that serves requests.
    connection: OnceLock<ConnectionManager>,
    origin: Instant,
    /// Nanoseconds after `origin` until which the store is not asked (0: ask).
    resting_until: AtomicU64,
    /// What the latest call found: `UNKNOWN`, `UP` or `DOWN` (for `/healthz`).
    reachable: AtomicU8,
}

impl std::fmt::Debug for Store {
    // The URL may hold a password: `RedisSettings` prints it as a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(settings: RedisSettings) -> Store {
        Store {
            settings,
            connection: OnceLock::new(),
            origin: Instant::now(),
            resting_until: AtomicU64::new(0),
            reachable: AtomicU8::new(UNKNOWN),
        }
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// `key` under the configured prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.key_prefix)
    }

    /// Whether Redis answered the latest call (`None`: not asked yet).
    pub fn reachable(&self) -> Option<bool> {
        match self.reachable.load(Ordering::Relaxed) {
            UP => Some(true),
            DOWN => Some(false),
            _ => None,
        }
    }

    /// Runs one call (`op` names it in the metrics) within the timeout (`wait`, if longer, for
    /// calls nobody waits on): its answer, or `None` when Redis failed, was late or rests.
    pub async fn call<T, F, Fut>(
        &self,
        op: &str,
        wait: Duration,
        metrics: &Metrics,
        f: F,
    ) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run(op, wait, metrics, false, f).await
    }

    /// Asks Redis whether it is there, also while it rests ([`Watch`]): connects at start,
    /// keeps `/healthz` current without traffic, and ends a rest as soon as Redis is back.
    pub async fn ping(&self, metrics: &Metrics) -> bool {
        let ping = |mut c: ConnectionManager| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        self.run("ping", PING_WAIT, metrics, true, ping)
            .await
            .is_some()
    }

    async fn run<T, F, Fut>(
        &self,
        op: &str,
        wait: Duration,
        metrics: &Metrics,
        probe: bool,
        f: F,
    ) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(connection) = self.connection().filter(|_| probe || !self.resting()) else {
            metrics.store_call(op, None);
            return None;
        };
        let started = Instant::now();
        match tokio::time::timeout(self.settings.timeout.max(wait), f(connection)).await {
            Ok(Ok(answer)) => {
                metrics.store_call(op, Some(started.elapsed()));
                if self.reachable.swap(UP, Ordering::Relaxed) == DOWN {
                    log::info!("state store: Redis answers again; state is shared again");
                }
                self.resting_until.store(0, Ordering::Relaxed);
                Some(answer)
            }
            failed => {
                metrics.store_call(op, None);
                // Until Redis first answered, a late request may only be waiting for the
                // connection: the watch's ping, which may wait longer, decides.
                if !probe && self.reachable.load(Ordering::Relaxed) == UNKNOWN {
                    return None;
                }
                if self.reachable.swap(DOWN, Ordering::Relaxed) != DOWN {
                    // Said once per outage; redis-rs's errors name no password.
                    match failed {
                        Ok(Err(e)) => log::warn!("state store: Redis failed ({e}); each replica keeps its own state until it answers again (limits: on_error {})", self.settings.on_error.as_str()),
                        _ => log::warn!("state store: Redis did not answer within {:?}; each replica keeps its own state until it answers again (limits: on_error {})", self.settings.timeout, self.settings.on_error.as_str()),
                    }
                }
                let until = self.nanos().saturating_add(REST.as_nanos() as u64);
                self.resting_until.store(until.max(1), Ordering::Relaxed);
                None
            }
        }
    }

    /// The connection, made on first use (it connects, and reconnects, in the background).
    fn connection(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.connection.get() {
            return Some(c.clone());
        }
        let client = redis::Client::open(self.settings.url.expose()).ok()?;
        let patience = self.settings.timeout.max(Duration::from_millis(200));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(patience))
            .set_response_timeout(Some(patience))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let made = ConnectionManager::new_lazy_with_config(client, config).ok()?;
        Some(self.connection.get_or_init(|| made).clone())
    }

    fn resting(&self) -> bool {
        let until = self.resting_until.load(Ordering::Relaxed);
        until != 0 && self.nanos() < until
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Background service: pings the current snapshot's store every second (see [`Store::ping`]).
pub struct Watch<F> {
    /// The store of the snapshot in force (a reload may change it).
    pub current: F,
    pub metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl<F> pingora::services::background::BackgroundService for Watch<F>
where
    F: Fn() -> Option<Arc<Store>> + Send + Sync,
{
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            if let Some(store) = (self.current)() {
                store.ping(&self.metrics).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(PING_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
