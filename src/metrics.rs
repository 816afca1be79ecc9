//! Prometheus metrics, served on `server.metrics_address` by `pingora-prometheus` from the default
//! registry (its re-exported `prometheus` crate, so there is one registry and one version).
//!
//! Labels stay low-cardinality: `provider` is the configured provider prefix (`openai`), `model` the
//! configured provider name (`openai/gpt-4o`, or `openai/*` for a wildcard). A request that matched
//! no provider is labelled `none`; a raw client string is never a label value.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use pingora_prometheus::prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::error::{classify, Class};
use crate::translate::Api;
use crate::usage::Usage;

/// Label value for requests that matched no provider.
pub const NONE: &str = "none";

/// Label value (`client`) for requests that presented no gateway key.
pub const ANONYMOUS: &str = "anonymous";

/// Upstream failure classes for `switchyard_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorClass {
    Connect,
    Timeout,
    Status4xx,
    Status5xx,
    Protocol,
}

impl UpstreamErrorClass {
    /// The class of an upstream answer with `status`, if it is an error: the one mapping of
    /// statuses to classes.
    pub fn of_status(status: u16) -> Option<UpstreamErrorClass> {
        match status {
            400..=499 => Some(UpstreamErrorClass::Status4xx),
            500..=599 => Some(UpstreamErrorClass::Status5xx),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorClass::Connect => "connect",
            UpstreamErrorClass::Timeout => "timeout",
            UpstreamErrorClass::Status4xx => "status_4xx",
            UpstreamErrorClass::Status5xx => "status_5xx",
            UpstreamErrorClass::Protocol => "protocol",
        }
    }
}

/// The access log's `error` (a label like the counters'): the upstream's failure class when an upstream failed, else what
/// ended the request: the client leaving (`client_closed`) or sending too slowly
/// (`client_timeout`), an error the gateway answered itself (`refused`), or `internal`. Always
/// one of these words, never a library's name for an error.
pub fn error_label(
    upstream: Option<UpstreamErrorClass>,
    e: Option<&pingora::Error>,
) -> Option<&'static str> {
    if let Some(class) = upstream {
        return Some(class.as_str());
    }
    Some(match classify(e?) {
        Class::Connect => "connect",
        Class::Timeout => "timeout",
        Class::Protocol => "protocol",
        Class::Status(status) => {
            UpstreamErrorClass::of_status(status).map_or("protocol", UpstreamErrorClass::as_str)
        }
        Class::Refused(_) | Class::ClientInvalid => "refused",
        Class::ClientGone => "client_closed",
        Class::ClientTimeout => "client_timeout",
        Class::Internal => "internal",
    })
}

/// A limit at which the gateway closes a client connection (downstream): the `reason` of
/// `switchyard_downstream_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    HeaderTimeout,
    KeepaliveTimeout,
    MaxConnections,
}

impl Closed {
    pub const ALL: [Closed; 3] = [
        Closed::HeaderTimeout,
        Closed::KeepaliveTimeout,
        Closed::MaxConnections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::KeepaliveTimeout => "keepalive_timeout",
            Closed::MaxConnections => "max_connections",
        }
    }
}

/// Every metric switchyard exports.
pub struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    overhead: HistogramVec,
    tokens: IntCounterVec,
    upstream_errors: IntCounterVec,
    in_flight: IntGauge,
    reloads: IntCounterVec,
    last_reload_success: Gauge,
    attempts: IntCounterVec,
    failovers: IntCounterVec,
    endpoint_healthy: IntGaugeVec,
    connections: IntGauge,
    connections_closed: IntCounterVec,
    router_decisions: IntCounterVec,
    router_duration: pingora_prometheus::prometheus::Histogram,
    ratelimit_decisions: IntCounterVec,
    budget_remaining: IntGaugeVec,
    store_duration: HistogramVec,
    store_errors: IntCounterVec,
    /// `switchyard_client_api_requests_total` by `api`, one child per client API, made at
    /// registration: a request's count is one atomic add.
    apis: [IntCounter; CLIENT_APIS.len()],
    conversations: IntCounterVec,
    trace_spans_exported: IntCounter,
    trace_spans_dropped: IntCounterVec,
}

/// The client APIs, as `switchyard_client_api_requests_total` names them.
const CLIENT_APIS: [(Api, &str); 6] = [
    (Api::Chat, "chat_completions"),
    (Api::Completions, "completions"),
    (Api::Embeddings, "embeddings"),
    (Api::Messages, "messages"),
    (Api::CountTokens, "count_tokens"),
    (Api::Responses, "responses"),
];

/// A client API's name in the metrics (and traces).
pub fn api_label(api: Api) -> &'static str {
    CLIENT_APIS
        .iter()
        .find(|(a, _)| *a == api)
        .map_or("other", |(_, name)| name)
}

/// One endpoint's children of the families every request touches, for requests without a
/// gateway key, kept with the snapshot: each is looked up by its label values once, on first
/// use (a lookup hashes every value and takes the family's lock, and a request made nine).
/// Nothing is made before its first use, so an endpoint shows no series it never had.
#[derive(Default)]
pub struct Series {
    /// `switchyard_requests_total{status_class="2xx", client="anonymous"}`.
    answered: OnceLock<IntCounter>,
    duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    overhead: OnceLock<Histogram>,
    /// `switchyard_tokens_total{client="anonymous"}` by kind, in `TOKEN_KINDS` order.
    tokens: OnceLock<[IntCounter; 4]>,
    /// `switchyard_upstream_attempts_total{outcome="success"}`.
    succeeded: OnceLock<IntCounter>,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series").finish_non_exhaustive()
    }
}

/// `cell`'s child, looked up on first use; without a cell, looked up now.
fn kept<T>(cell: Option<&OnceLock<T>>, look_up: impl FnOnce() -> T, with: impl FnOnce(&T)) {
    match cell {
        Some(cell) => with(cell.get_or_init(look_up)),
        None => with(&look_up()),
    }
}

const TOKEN_KINDS: [&str; 4] = ["prompt", "completion", "cache_read", "cache_write"];

/// What one finished request contributes.
#[derive(Debug, Default)]
pub struct RequestRecord<'a> {
    /// `None` when the request matched no provider.
    pub provider: Option<(&'a str, &'a str)>,
    /// The children of `provider`'s endpoint, when the request had one.
    pub series: Option<&'a Series>,
    /// The client's name (`clients`), `None` when anonymous.
    pub client: Option<&'a str>,
    pub status: u16,
    pub duration: Duration,
    pub ttft: Option<Duration>,
    /// Time spent in the gateway (duration minus time waiting on the upstream); forwarded
    /// requests only.
    pub overhead: Option<Duration>,
    pub usage: Option<Usage>,
    /// The API the client spoke.
    pub api: Option<Api>,
}

/// Whole-request latency: LLM calls run from milliseconds to many minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];
/// Time to first token: tens of milliseconds to a few minutes for reasoning models.
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0,
];
/// Gateway overhead: tens of microseconds to tens of milliseconds.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

impl Metrics {
    /// Creates the metrics and registers them (and `switchyard_build_info`) in `registry`.
    pub fn register(registry: &Registry) -> Result<Metrics, pingora_prometheus::prometheus::Error> {
        let client_apis = IntCounterVec::new(
            Opts::new(
                "switchyard_client_api_requests_total",
                "Model requests by the API the client spoke",
            ),
            &["api"],
        )?;
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new("switchyard_requests_total", "Model requests, by outcome"),
                &["provider", "model", "status_class", "client"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "switchyard_request_duration_seconds",
                    "Whole-request latency as the client sees it",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["provider", "model"],
            )?,
            ttft: HistogramVec::new(
                HistogramOpts::new(
                    "switchyard_time_to_first_token_seconds",
                    "Time to the first SSE data event (streaming) or first body byte",
                )
                .buckets(TTFT_BUCKETS.to_vec()),
                &["provider", "model"],
            )?,
            overhead: HistogramVec::new(
                HistogramOpts::new(
                    "switchyard_overhead_seconds",
                    "Time spent in the gateway, excluding time waiting on the upstream",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
                &["provider"],
            )?,
            tokens: IntCounterVec::new(
                Opts::new("switchyard_tokens_total", "Tokens reported by upstreams"),
                &["provider", "model", "kind", "client"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "switchyard_upstream_errors_total",
                    "Upstream errors, one per failed attempt, by the attempt's provider and class",
                ),
                &["provider", "class"],
            )?,
            in_flight: IntGauge::new(
                "switchyard_in_flight_requests",
                "Model requests being served",
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "switchyard_config_reloads_total",
                    "Config reloads, by result",
                ),
                &["result"],
            )?,
            last_reload_success: Gauge::new(
                "switchyard_config_last_reload_success_timestamp_seconds",
                "Unix time the running config was loaded",
            )?,
            attempts: IntCounterVec::new(
                Opts::new(
                    "switchyard_upstream_attempts_total",
                    "Upstream attempts, by outcome",
                ),
                &["provider", "outcome"],
            )?,
            failovers: IntCounterVec::new(
                Opts::new(
                    "switchyard_failovers_total",
                    "Requests moved to a fallback model after every endpoint failed",
                ),
                &["from", "to"],
            )?,
            endpoint_healthy: IntGaugeVec::new(
                Opts::new(
                    "switchyard_endpoint_healthy",
                    "1 while an endpoint takes requests, 0 while ejected or parked",
                ),
                &["provider", "endpoint"],
            )?,
            router_decisions: IntCounterVec::new(
                Opts::new(
                    "switchyard_router_decisions_total",
                    "Preference-routing decisions, by route and outcome (routed, no_route, failed_open)",
                ),
                &["route", "outcome"],
            )?,
            router_duration: pingora_prometheus::prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "switchyard_router_duration_seconds",
                    "Time to a preference-routing decision",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]),
            )?,
            ratelimit_decisions: IntCounterVec::new(
                Opts::new(
                    "switchyard_ratelimit_decisions_total",
                    "Limit checks of model requests, one per limit a request is charged against: allowed, refused, unchecked (state store down, on_error: open), unavailable (on_error: closed)",
                ),
                &["client", "limit", "decision"],
            )?,
            budget_remaining: IntGaugeVec::new(
                Opts::new(
                    "switchyard_budget_remaining_tokens",
                    "Tokens left in a client's daily budget, as of its latest request's check (its own reservation taken)",
                ),
                &["client"],
            )?,
            store_duration: HistogramVec::new(
                HistogramOpts::new(
                    "switchyard_state_store_duration_seconds",
                    "Round trips to the shared state store (Redis) that succeeded, by operation: check, settle (limits), recall, share (routing memory), ping (the watch)",
                )
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
                &["op"],
            )?,
            store_errors: IntCounterVec::new(
                Opts::new(
                    "switchyard_state_store_errors_total",
                    "Calls to the shared state store that failed, timed out or were skipped while it rests after a failure, by operation",
                ),
                &["op"],
            )?,
            apis: CLIENT_APIS.map(|(_, name)| client_apis.with_label_values(&[name])),
            conversations: IntCounterVec::new(
                Opts::new(
                    "switchyard_conversations_total",
                    "Responses conversations kept and continued for translated providers",
                ),
                &["result"],
            )?,
            trace_spans_exported: IntCounter::new(
                "switchyard_trace_spans_exported_total",
                "Spans a collector took (tracing)",
            )?,
            trace_spans_dropped: IntCounterVec::new(
                Opts::new(
                    "switchyard_trace_spans_dropped_total",
                    "Spans never exported: queue_full (the exporter could not keep up), export_error (the collector failed, refused or was late)",
                ),
                &["reason"],
            )?,
            connections: IntGauge::new(
                "switchyard_downstream_connections",
                "Client connections open",
            )?,
            connections_closed: IntCounterVec::new(
                Opts::new(
                    "switchyard_downstream_connections_closed_total",
                    "Client connections the gateway closed at a limit: header_timeout, keepalive_timeout, max_connections",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(client_apis))?;
        let build_info = IntGaugeVec::new(
            Opts::new("switchyard_build_info", "Build information"),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.ttft.clone()))?;
        registry.register(Box::new(m.overhead.clone()))?;
        registry.register(Box::new(m.tokens.clone()))?;
        registry.register(Box::new(m.upstream_errors.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.reloads.clone()))?;
        registry.register(Box::new(m.last_reload_success.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(m.attempts.clone()))?;
        registry.register(Box::new(m.failovers.clone()))?;
        registry.register(Box::new(m.endpoint_healthy.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.router_decisions.clone()))?;
        registry.register(Box::new(m.router_duration.clone()))?;
        registry.register(Box::new(m.connections_closed.clone()))?;
        registry.register(Box::new(m.ratelimit_decisions.clone()))?;
        registry.register(Box::new(m.budget_remaining.clone()))?;
        registry.register(Box::new(m.store_duration.clone()))?;
        registry.register(Box::new(m.store_errors.clone()))?;
        registry.register(Box::new(m.conversations.clone()))?;
        registry.register(Box::new(m.trace_spans_exported.clone()))?;
        registry.register(Box::new(m.trace_spans_dropped.clone()))?;
        for reason in ["queue_full", "export_error"] {
            m.trace_spans_dropped.with_label_values(&[reason]);
        }
        for reason in Closed::ALL {
            m.connections_closed.with_label_values(&[reason.as_str()]);
        }
        // Both results exist from the start, so a dashboard shows 0 rather than no data.
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
        }
        m.last_reload_success.set(unix_now());
        Ok(m)
    }

    /// A preference-routing decision and how long it took.
    pub fn router_decision(&self, route: &str, outcome: &str, took: Duration) {
        self.router_decisions
            .with_label_values(&[route, outcome])
            .inc();
        self.router_duration.observe(took.as_secs_f64());
    }

    /// One limit check of a model request (quota): the client's name, the limit's key
    /// (`requests_per_minute`, …) and the decision.
    pub fn ratelimit_decision(&self, client: &str, limit: &str, decision: &str) {
        self.ratelimit_decisions
            .with_label_values(&[client, limit, decision])
            .inc();
    }

    /// What is left of a client's daily budget, as a check found it.
    pub fn budget_left(&self, client: &str, tokens: u64) {
        self.budget_remaining
            .with_label_values(&[client])
            .set(i64::try_from(tokens).unwrap_or(i64::MAX));
    }

    /// A call to the shared state store: how long it took, or `None` when it failed.
    pub fn store_call(&self, op: &str, took: Option<Duration>) {
        match took {
            Some(t) => self
                .store_duration
                .with_label_values(&[op])
                .observe(t.as_secs_f64()),
            None => self.store_errors.with_label_values(&[op]).inc(),
        }
    }

    /// What became of a Responses conversation (conversations): `kept`, `not_kept` (the store
    /// failed), `continued`, `not_found`, `unavailable` (the store did not answer).
    pub fn conversation(&self, result: &str) {
        self.conversations.with_label_values(&[result]).inc();
    }

    /// `n` spans a collector took (trace::export).
    pub fn trace_spans_exported(&self, n: u64) {
        self.trace_spans_exported.inc_by(n);
    }

    /// `n` spans dropped: `queue_full` or `export_error` (trace::export).
    pub fn trace_spans_dropped(&self, reason: &str, n: u64) {
        self.trace_spans_dropped
            .with_label_values(&[reason])
            .inc_by(n);
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub fn connections(&self, delta: i64) {
        self.connections.add(delta);
    }

    /// A client connection closed at one of the limits.
    pub fn connection_closed(&self, limit: Closed) {
        self.connections_closed
            .with_label_values(&[limit.as_str()])
            .inc();
    }

    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// Records a finished model request (exactly once, from the access-log callback).
    pub fn request_finished(&self, r: &RequestRecord<'_>) {
        self.in_flight.dec();
        let (provider, model) = r.provider.unwrap_or((NONE, NONE));
        let labels = [provider, model];
        let client = r.client.unwrap_or(ANONYMOUS);
        let class = status_class(r.status);
        if let Some(i) = CLIENT_APIS.iter().position(|(a, _)| Some(*a) == r.api) {
            self.apis[i].inc();
        }
        // A named client's children are looked up each time: clients are many, endpoints few.
        let anonymous = r.series.filter(|_| r.client.is_none());
        kept(
            anonymous.filter(|_| class == "2xx").map(|s| &s.answered),
            || {
                self.requests
                    .with_label_values(&[provider, model, class, client])
            },
            |c| c.inc(),
        );
        let seconds = r.duration.as_secs_f64();
        kept(
            r.series.map(|s| &s.duration),
            || self.duration.with_label_values(&labels),
            |h| h.observe(seconds),
        );
        if let Some(ttft) = r.ttft {
            kept(
                r.series.map(|s| &s.ttft),
                || self.ttft.with_label_values(&labels),
                |h| h.observe(ttft.as_secs_f64()),
            );
        }
        if let Some(overhead) = r.overhead {
            kept(
                r.series.map(|s| &s.overhead),
                || self.overhead.with_label_values(&[provider]),
                |h| h.observe(overhead.as_secs_f64()),
            );
        }
        if let Some(u) = r.usage {
            let counts = [u.prompt, u.completion, u.cache_read, u.cache_write];
            kept(
                anonymous.map(|s| &s.tokens),
                || {
                    TOKEN_KINDS.map(|kind| {
                        self.tokens
                            .with_label_values(&[provider, model, kind, client])
                    })
                },
                |children| {
                    for (child, n) in children.iter().zip(counts) {
                        child.inc_by(n);
                    }
                },
            );
        }
    }

    /// An upstream attempt that failed or answered 4xx/5xx, by its own provider.
    pub fn upstream_error(&self, provider: &str, class: UpstreamErrorClass) {
        self.upstream_errors
            .with_label_values(&[provider, class.as_str()])
            .inc();
    }

    /// One upstream attempt and its outcome (`success`, or an upstream error class), with the
    /// children of its endpoint when it has them.
    pub fn attempt(&self, provider: &str, outcome: &str, series: Option<&Series>) {
        kept(
            series
                .filter(|_| outcome == "success")
                .map(|s| &s.succeeded),
            || self.attempts.with_label_values(&[provider, outcome]),
            |c| c.inc(),
        );
    }

    /// A request moved from model `from` to its fallback `to` (configured names).
    pub fn failover(&self, from: &str, to: &str) {
        self.failovers.with_label_values(&[from, to]).inc();
    }

    /// Whether an endpoint (configured name) takes requests.
    pub fn endpoint_health(&self, provider: &str, endpoint: &str, healthy: bool) {
        self.endpoint_healthy
            .with_label_values(&[provider, endpoint])
            .set(i64::from(healthy));
    }

    /// Counts a config reload (driven by SIGHUP reload).
    pub fn reloaded(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
        if success {
            self.last_reload_success.set(unix_now());
        }
    }
}

/// `2xx`, `4xx`, `5xx`; a client that left before any response counts as 499 (`4xx`).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        500..=599 => "5xx",
        _ => "4xx",
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_prometheus::prometheus::{Encoder, TextEncoder};

    fn scrape(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_request_is_recorded_with_its_labels() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).unwrap();
        m.request_started();
        m.request_finished(&RequestRecord {
            provider: Some(("openai", "openai/gpt-4o")),
            series: None,
            client: Some("alice"),
            status: 200,
            duration: Duration::from_millis(120),
            ttft: Some(Duration::from_millis(40)),
            overhead: Some(Duration::from_micros(300)),
            usage: Some(Usage {
                prompt: 12,
                completion: 3,
                cache_read: 8,
                cache_write: 0,
            }),
            api: Some(Api::Chat),
        });
        m.request_started();
        m.request_finished(&RequestRecord {
            status: 404,
            ..RequestRecord::default()
        });
        let text = scrape(&registry);
        for line in [
            r#"switchyard_requests_total{client="alice",model="openai/gpt-4o",provider="openai",status_class="2xx"} 1"#,
            r#"switchyard_requests_total{client="anonymous",model="none",provider="none",status_class="4xx"} 1"#,
            r#"switchyard_tokens_total{client="alice",kind="prompt",model="openai/gpt-4o",provider="openai"} 12"#,
            r#"switchyard_tokens_total{client="alice",kind="cache_read",model="openai/gpt-4o",provider="openai"} 8"#,
            r#"switchyard_overhead_seconds_bucket{provider="openai",le="0.0005"} 1"#,
            r#"switchyard_time_to_first_token_seconds_count{model="openai/gpt-4o",provider="openai"} 1"#,
            r#"switchyard_in_flight_requests 0"#,
            r#"switchyard_config_reloads_total{result="failure"} 0"#,
            // Every client API from the start; the one request that named its API counted.
            r#"switchyard_client_api_requests_total{api="chat_completions"} 1"#,
            r#"switchyard_client_api_requests_total{api="responses"} 0"#,
            r#"switchyard_build_info{version=""#,
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
    }

    /// Counting through an endpoint's kept children adds up exactly as looking each one up:
    /// anonymous and named clients, answered and failed requests, attempts by outcome.
    #[test]
    fn kept_series_count_like_lookups() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).unwrap();
        let series = Series::default();
        let record = |client, status| RequestRecord {
            provider: Some(("openai", "openai/gpt-4o")),
            series: Some(&series),
            client,
            status,
            duration: Duration::from_millis(10),
            ttft: Some(Duration::from_millis(5)),
            overhead: Some(Duration::from_micros(100)),
            usage: Some(Usage {
                prompt: 2,
                completion: 1,
                ..Usage::default()
            }),
            api: Some(Api::Messages),
        };
        for (client, status) in [(None, 200), (None, 200), (Some("alice"), 200), (None, 502)] {
            m.request_started();
            m.request_finished(&record(client, status));
        }
        for outcome in ["success", "success", "status_5xx"] {
            m.attempt("openai", outcome, Some(&series));
        }
        let text = scrape(&registry);
        for line in [
            r#"switchyard_requests_total{client="anonymous",model="openai/gpt-4o",provider="openai",status_class="2xx"} 2"#,
            r#"switchyard_requests_total{client="alice",model="openai/gpt-4o",provider="openai",status_class="2xx"} 1"#,
            r#"switchyard_requests_total{client="anonymous",model="openai/gpt-4o",provider="openai",status_class="5xx"} 1"#,
            r#"switchyard_tokens_total{client="anonymous",kind="prompt",model="openai/gpt-4o",provider="openai"} 6"#,
            r#"switchyard_tokens_total{client="alice",kind="completion",model="openai/gpt-4o",provider="openai"} 1"#,
            r#"switchyard_request_duration_seconds_count{model="openai/gpt-4o",provider="openai"} 4"#,
            r#"switchyard_time_to_first_token_seconds_count{model="openai/gpt-4o",provider="openai"} 4"#,
            r#"switchyard_overhead_seconds_count{provider="openai"} 4"#,
            r#"switchyard_upstream_attempts_total{outcome="success",provider="openai"} 2"#,
            r#"switchyard_upstream_attempts_total{outcome="status_5xx",provider="openai"} 1"#,
            r#"switchyard_in_flight_requests 0"#,
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
    }

    /// Every family the gateway exposes has its row in README's metrics table (name, labels).
    #[test]
    fn readme_documents_every_family_with_its_labels() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).unwrap();
        // One of everything, so that every family has a sample to show.
        m.request_started();
        m.request_finished(&RequestRecord {
            provider: Some(("openai", "openai/gpt-4o")),
            status: 200,
            ttft: Some(Duration::from_millis(1)),
            overhead: Some(Duration::from_micros(1)),
            usage: Some(Usage::default()),
            api: Some(Api::Responses),
            ..RequestRecord::default()
        });
        m.upstream_error("openai", UpstreamErrorClass::Connect);
        m.attempt("openai", "success", None);
        m.failover("a", "b");
        m.endpoint_health("openai", "openai/gpt-4o", true);
        m.router_decision("r", "routed", Duration::from_millis(1));
        m.connections(1);
        m.connection_closed(Closed::ALL[0]);
        m.reloaded(true);
        m.ratelimit_decision("a", "tokens_per_day", "allowed");
        m.budget_left("a", 9);
        m.store_call("check", Some(Duration::from_micros(300)));
        m.store_call("check", None);
        m.conversation("kept");
        let readme = include_str!("../README.md");
        let families = registry.gather();
        assert!(families.len() >= 17, "{}", families.len());
        for family in families {
            let name = family.name();
            let row = readme
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&format!("`{name}`")))
                .unwrap_or_else(|| panic!("README's metrics table has no row for `{name}`"));
            for label in family.get_metric()[0].get_label() {
                assert!(
                    row.contains(label.name()),
                    "README's row for `{name}` does not name its label `{}`",
                    label.name()
                );
            }
        }
    }

    #[test]
    fn the_error_is_always_a_documented_class() {
        use pingora::{Error, ErrorType::*};
        let documented = [
            "connect",
            "timeout",
            "status_4xx",
            "status_5xx",
            "protocol",
            "client_closed",
            "client_timeout",
            "refused",
            "internal",
        ];
        let kinds = [
            ConnectTimedout,
            ConnectRefused,
            ConnectNoRoute,
            TLSHandshakeFailure,
            TLSHandshakeTimedout,
            InvalidCert,
            HandshakeError,
            ConnectError,
            BindError,
            AcceptError,
            SocketError,
            ConnectProxyFailure,
            InvalidHTTPHeader,
            H1Error,
            H2Error,
            H2Downgrade,
            InvalidH2,
            ReadError,
            WriteError,
            ReadTimedout,
            WriteTimedout,
            ConnectionClosed,
            HTTPStatus(429),
            HTTPStatus(502),
            FileOpenError,
            FileCreateError,
            FileReadError,
            FileWriteError,
            InternalError,
            UnknownError,
        ];
        for kind in kinds {
            for e in [
                Error::new(kind.clone()).into_down(),
                Error::new(kind.clone()).into_up(),
                Error::new(kind.clone()),
            ] {
                let class = error_label(None, Some(&*e)).unwrap();
                assert!(documented.contains(&class), "{kind:?}: {class}");
            }
        }
        let class = |kind: pingora::ErrorType, down: bool| {
            let e = Error::new(kind);
            error_label(None, Some(&*if down { e.into_down() } else { e.into_up() }))
        };
        // The OpenAI SDK hanging up, a slow client, the gateway's own 429, a retried one.
        assert_eq!(class(ConnectionClosed, true), Some("client_closed"));
        assert_eq!(class(ReadTimedout, true), Some("client_timeout"));
        assert_eq!(
            error_label(None, Some(&*Error::new(HTTPStatus(429)))),
            Some("refused")
        );
        assert_eq!(class(HTTPStatus(429), false), Some("status_4xx"));
        // An upstream failure's class wins; no error, no class.
        let up = Error::new(ConnectionClosed).into_up();
        assert_eq!(
            error_label(Some(UpstreamErrorClass::Timeout), Some(&*up)),
            Some("timeout")
        );
        assert_eq!(error_label(None, None), None);
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(499), "4xx");
        assert_eq!(status_class(0), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
