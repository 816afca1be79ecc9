//! The gateway configuration: Plano's YAML schema plus switchyard's `server` block.
//!
//! [`Config::load`] reads a file, [`Config::from_yaml`] decodes text. Both return every problem at
//! once ([`ConfigError`]), each with its key path and line; keys Plano knows but switchyard does not
//! implement yet come back as warnings in [`Config::warnings`]. Nothing here touches the network.

mod schema;
pub mod values;
pub mod yaml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::access_log::Sink;
use crate::catalog::Interface;
pub use schema::HOSTED_ROUTER;
pub use values::{KeyHeaders, Secret};
pub use yaml::Problem;

/// A decoded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plano's `version`, if given.
    pub version: Option<String>,
    /// The model listener (Plano allows one).
    pub listener: Listener,
    pub providers: Vec<Provider>,
    /// `model_aliases`: alias → target model, in file order.
    pub aliases: Vec<(String, String)>,
    /// Top-level `routing_preferences`, with v0.3.0 inline preferences migrated into it.
    pub routing_preferences: Vec<RoutingPreference>,
    /// Plano's `routing` block: session pins.
    pub routing: Routing,
    /// Plano's `model_metrics_sources`: where `prefer: cheapest | fastest` get their figures.
    pub metrics_sources: Vec<MetricsSource>,
    pub overrides: Overrides,
    pub server: ServerSettings,
    /// switchyard's `clients`: who may use the gateway with which key.
    pub clients: Vec<Client>,
    /// Plano's `ratelimits`.
    pub ratelimits: Vec<RateRule>,
    /// switchyard's `state`.
    pub state: StateSettings,
    /// Plano's `state_storage`: where Responses conversations are kept for translated providers.
    pub state_storage: StateStorage,
    /// Plano's `tracing`, when it samples anything (`random_sampling` above 0).
    pub tracing: Option<Arc<Tracing>>,
    /// Keys that were accepted but are not implemented (or deprecated forms), one per key.
    pub warnings: Vec<Problem>,
}

/// The `type: model` listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// Longest wait for the next byte from an upstream (Plano's listener `timeout`).
    pub timeout: Duration,
    /// Default retry policy (Plano's `max_retries`, or switchyard's `retry`).
    pub retry: Option<Retry>,
    /// Default timeouts (switchyard's `timeouts`).
    pub timeouts: Timeouts,
    /// Whether a model request needs a gateway key (switchyard's `auth`).
    pub auth: ClientAuth,
}

/// SHA-256 of a gateway key: what is kept of it (clients compares presented keys the same way).
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether model requests need a gateway key (`listeners[].auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Anonymous requests pass; a key that is presented must be a client's.
    #[default]
    Optional,
    /// Every model request presents a client's key.
    Required,
}

/// A client of the gateway (switchyard's `clients`): its name, the digest of its key (the key
/// itself is not kept), and the models it may use.
#[derive(Clone, PartialEq)]
pub struct Client {
    pub name: String,
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// Model names, aliases, bare ids or `provider/*`, as written; `None`: every model.
    pub models: Option<Vec<String>>,
    /// `limits.requests_per_minute`: model requests this client may make per minute.
    pub requests_per_minute: Option<u64>,
    /// `limits.tokens_per_minute`: tokens (prompt and answer) this client may use per minute.
    pub tokens_per_minute: Option<u64>,
    /// `model_limits`: limits of this client on one model (or `provider/*`), beside its own.
    pub model_limits: Vec<ModelLimit>,
    /// `budgets.tokens_per_day`: tokens this client may use per UTC day.
    pub tokens_per_day: Option<u64>,
    pub line: u64,
}

/// One entry of a client's `model_limits`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLimit {
    /// A model name, bare id, alias or `provider/*`, as written.
    pub model: String,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub line: u64,
}

/// One entry of Plano's `ratelimits`: the tokens that requests for `model` carrying the
/// `header` may use per `period`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRule {
    /// A model name, bare id, alias or `provider/*`, as written.
    pub model: String,
    /// The selector header, lowercase.
    pub header: String,
    /// The selector value; `None` (written `"*"`): one limit per distinct value.
    pub value: Option<String>,
    pub tokens: u64,
    /// `unit` (`second`, `minute`, `hour`, `day`) as a word and a period.
    pub unit: &'static str,
    pub period: Duration,
    pub line: u64,
}

/// switchyard's `state`: where limits and budgets are counted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateSettings {
    /// `state.redis`: shared by every replica; absent, each process counts for itself.
    pub redis: Option<RedisSettings>,
}

/// Plano's `state_storage`: where the conversations of `/v1/responses` (their
/// `previous_response_id`) are kept for providers without a Responses API of their own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateStorage {
    /// In the process (bounded), or in `state.redis` when that is configured, so replicas share.
    #[default]
    Memory,
    /// PostgreSQL, Plano's `conversation_states` table.
    Postgres { connection_string: Secret },
}

/// Plano's `tracing`: OpenTelemetry traces of model requests (crate::trace).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// `random_sampling`: the percent of new traces kept (1–100); a client's `traceparent`
    /// decides for its own trace.
    pub sampling: u8,
    /// Where spans go: the config's endpoint or the standard OpenTelemetry environment.
    pub exporter: Arc<OtlpExporter>,
    /// `span_attributes.header_prefixes`, lowercase.
    pub header_prefixes: Vec<String>,
    /// `span_attributes.static`, in file order.
    pub statics: Vec<(String, String)>,
}

/// An OTLP destination and what is said of the sender there, resolved at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExporter {
    pub protocol: OtlpProtocol,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The request path: gRPC's method, or OTLP/HTTP's `/v1/traces`.
    pub path: String,
    /// `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS` (a collector's API key, often).
    pub headers: Vec<(String, Secret)>,
    /// The resource's attributes: `service.name` (`OTEL_SERVICE_NAME`, else `switchyard`),
    /// `service.version`, and `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// The standard AWS credentials, read from the environment at load (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), and the region requests are signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// From the `base_url` host (`bedrock-runtime.<region>.amazonaws.com`), else `AWS_REGION`.
    pub region: String,
}

/// `state.redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://`, `rediss://` or `unix://`; may hold a password.
    pub url: Secret,
    /// Longest wait for Redis on a request's path.
    pub timeout: Duration,
    pub on_error: OnStoreError,
    /// Prefix of every key switchyard writes.
    pub key_prefix: String,
}

/// `state.redis.on_error`: what a check does when Redis does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Let the request pass, unlimited.
    #[default]
    Open,
    /// Refuse it (503).
    Closed,
    /// Count it in this process alone.
    Local,
}

impl OnStoreError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::Open => "open",
            OnStoreError::Closed => "closed",
            OnStoreError::Local => "local",
        }
    }
}

impl fmt::Debug for Client {
    // The digest stands for a secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("models", &self.models)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("model_limits", &self.model_limits)
            .field("tokens_per_day", &self.tokens_per_day)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// `address:port` in the form Pingora's `add_tcp` takes (IPv6 in brackets).
    pub fn bind_address(&self) -> String {
        if self.address.contains(':') && !self.address.starts_with('[') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            name: "model_listener".into(),
            address: "0.0.0.0".into(),
            port: 12000,
            timeout: Duration::from_secs(300),
            retry: None,
            timeouts: Timeouts::default(),
            auth: ClientAuth::Optional,
        }
    }
}

/// One `model_providers` entry.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Lookup name; defaults to `model`.
    pub name: String,
    /// The full `provider/id` string as written.
    pub model: String,
    /// The part before the first `/`.
    pub prefix: String,
    /// The part after the first `/` (may contain `/`); `*` for a wildcard.
    pub id: String,
    pub interface: Interface,
    pub origin: Origin,
    /// Whether `base_url` was given (otherwise the endpoint is the prefix's built-in one).
    pub custom_base_url: bool,
    pub access_key: Option<Secret>,
    /// `access_key` as header values, made at load (auth).
    pub key_headers: Option<KeyHeaders>,
    pub passthrough_auth: bool,
    pub default: bool,
    /// Host header to send instead of the endpoint's host.
    pub http_host: Option<String>,
    /// Extra upstream headers, applied after auth. Values may hold secrets.
    pub headers: Vec<(String, Secret)>,
    /// switchyard: offer HTTP/2 to an HTTPS endpoint by ALPN (it may still answer in HTTP/1.1).
    pub http2: bool,
    /// switchyard: share of this endpoint among the entries serving the same model.
    pub weight: u32,
    /// switchyard: models to try, in order, when every endpoint of this model failed.
    pub fallbacks: Vec<String>,
    /// switchyard, wildcard providers only: bare ids (no `provider/`) this provider serves as
    /// they are, exact or by their start (`claude-*`), e.g. for Claude Code's model ids.
    pub bare_ids: Vec<String>,
    /// switchyard: retry policy (else the listener's).
    pub retry: Option<Retry>,
    /// switchyard: timeouts (unset ones come from the listener's, then the defaults).
    pub timeouts: Timeouts,
    /// switchyard: passive health (outlier ejection).
    pub outlier: Outlier,
    /// switchyard: how one of the model's endpoints is chosen (read from its first entry).
    pub lb_policy: LbPolicy,
    /// switchyard: active health check of this endpoint.
    pub health_check: Option<HealthCheck>,
    /// switchyard: price per million input + output tokens, for `prefer: cheapest`.
    pub cost: Option<f64>,
    /// switchyard: `max_tokens` for a translated request that gives none (Anthropic requires
    /// one); by default the model's output limit.
    pub default_max_tokens: Option<u64>,
    /// Added by the gateway, not written in the config (Plano's hosted router): not listed.
    pub internal: bool,
    /// An Amazon Bedrock provider without an `access_key`: the AWS credentials of the
    /// environment its requests are signed with (sigv4).
    pub aws: Option<AwsCredentials>,
    /// The line of the entry, for messages about it.
    pub line: u64,
}

/// When and how a failed upstream attempt is tried again (switchyard extension).
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Attempts per model, the first included (Plano's `max_retries` + 1).
    pub attempts: u32,
    pub on_connect: bool,
    pub on_timeout: bool,
    pub on_429: bool,
    pub on_5xx: bool,
    /// Backoff before attempt n is `base × 2^(n-1)`, capped at `max`, with full jitter; a
    /// `retry-after` up to `max` is honoured.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            on_connect: true,
            on_timeout: true,
            on_429: true,
            on_5xx: true,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Upstream timeouts (switchyard extension); `None` means "not set here".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    /// From sending the request to the first response byte.
    pub first_byte: Option<Duration>,
    /// Longest gap between two reads of the response.
    pub idle: Option<Duration>,
    /// Whole request, first attempt to last byte.
    pub total: Option<Duration>,
}

impl Timeouts {
    /// These settings, with unset ones taken from `fallback`.
    pub fn or(self, fallback: Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.or(fallback.connect),
            first_byte: self.first_byte.or(fallback.first_byte),
            idle: self.idle.or(fallback.idle),
            total: self.total.or(fallback.total),
        }
    }
}

/// Endpoint selection among a model's available endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbPolicy {
    #[default]
    WeightedRoundRobin,
    /// Power of two choices on requests in flight.
    LeastRequests,
}

/// An active health check: `GET path` every `interval`; a failure or a non-2xx answer takes the
/// endpoint out of rotation until a check succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Passive health: after `consecutive_failures` failures in a row an endpoint is ejected for
/// `ejection`, doubling on each repeat up to `max_ejection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    pub consecutive_failures: u32,
    pub ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            consecutive_failures: 5,
            ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

impl Provider {
    /// Whether the provider has a Responses API of its own (catalog::NATIVE_RESPONSES, and
    /// Azure OpenAI's `v1` API).
    pub fn native_responses(&self) -> bool {
        self.interface == Interface::AzureOpenAi
            || (self.interface == Interface::OpenAi
                && crate::catalog::NATIVE_RESPONSES.contains(&self.prefix.as_str()))
    }

    /// The `Host` an endpoint is sent: `http_host`, else its origin's authority.
    pub fn host_header(&self) -> String {
        match &self.http_host {
            Some(host) => host.clone(),
            None => self.origin.authority(),
        }
    }

    pub fn is_wildcard(&self) -> bool {
        self.id == "*"
    }
}

/// Where a provider is reached (from its `base_url` or the catalog): scheme, host, port and the
/// path prefix. (An *endpoint* is a provider entry as one of its model's targets; see `endpoints`.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix that replaces the client's `/v1`, e.g. `/v1` or `/openai/v1`; may be empty.
    pub path_prefix: String,
}

impl Origin {
    /// `host[:port]` for the Host header; the port is omitted when it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A routing preference: a task description and the models that serve it (behaviour comes later).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingPreference {
    pub name: String,
    pub description: String,
    pub models: Vec<String>,
    pub prefer: Prefer,
}

/// Plano's `routing` block (the parts switchyard implements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// How long `X-Model-Affinity` keeps a session on its first decision.
    pub session_ttl: Duration,
    /// Most sessions pinned at once (Plano's limit: 10,000).
    pub session_max_entries: usize,
    /// A request header whose value scopes the session ids (per tenant).
    pub tenant_header: Option<String>,
    /// Ask the router only on a user's turn; tool results and other continuations keep the
    /// conversation's last decision.
    pub route_on_user_only: bool,
    /// switchyard's `only_for`: the models (or aliases) the config's preferences route; empty:
    /// every model, as in Plano.
    pub only_for: Vec<String>,
    /// switchyard's `router_timeout`: how long the router may take before the request goes on
    /// without it.
    pub router_timeout: Duration,
    /// Plano's `session_cache: {type: redis, url}`: pins and decisions shared by replicas
    /// (`state.redis`, when given, is used instead).
    pub session_store: Option<RedisSettings>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            session_ttl: Duration::from_secs(600),
            session_max_entries: 10_000,
            tenant_header: None,
            route_on_user_only: false,
            only_for: Vec::new(),
            router_timeout: Duration::from_secs(2),
            session_store: None,
        }
    }
}

/// A feed of figures for ranking a route's models (Plano's `model_metrics_sources` entry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricsSource {
    pub kind: MetricsKind,
    /// The catalog, or the Prometheus server's base URL.
    pub url: String,
    /// How often it is read again; `None`: once.
    pub refresh: Option<Duration>,
    /// Catalog key → the model name routes use (cost catalogs).
    pub model_aliases: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetricsKind {
    /// Prices per million tokens from models.dev's catalog.
    ModelsDev,
    /// Prices from DigitalOcean's GenAI model catalog.
    DigitalOcean,
    /// Latency by `model_name` label, from a Prometheus instant query.
    Prometheus { query: String },
}

impl MetricsKind {
    /// Cost (for `cheapest`) or latency (for `fastest`).
    pub fn is_cost(&self) -> bool {
        !matches!(self, MetricsKind::Prometheus { .. })
    }
}

impl Routing {
    /// Whether the config's preferences route a request for `model` (as the client wrote it).
    pub fn applies_to(&self, model: Option<&str>) -> bool {
        self.only_for.is_empty() || model.is_some_and(|m| self.only_for.iter().any(|o| o == m))
    }
}

/// How a route orders its models (`selection_policy.prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefer {
    /// As written.
    #[default]
    None,
    Cheapest,
    Fastest,
    /// Shuffled per request, as Plano's routing API does.
    Random,
}

impl Prefer {
    /// What `prefer` may say, for error messages.
    pub const NAMES: &'static str = "cheapest, fastest, random or none";

    /// The word for it, as [`Prefer::from_name`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::None => "none",
            Prefer::Cheapest => "cheapest",
            Prefer::Fastest => "fastest",
            Prefer::Random => "random",
        }
    }

    /// The one reader of `prefer`, for the config's preferences and a request's own.
    pub fn from_name(name: &str) -> Option<Prefer> {
        match name {
            "cheapest" => Some(Prefer::Cheapest),
            "fastest" => Some(Prefer::Fastest),
            "random" => Some(Prefer::Random),
            "none" => Some(Prefer::None),
            _ => None,
        }
    }
}

/// Plano's `overrides` that switchyard uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Overrides {
    pub upstream_connect_timeout: Duration,
    /// CA bundle for upstream TLS instead of the system roots.
    pub upstream_tls_ca_path: Option<PathBuf>,
    /// The router model of preference routing (Plano's default `Plano-Orchestrator`); a
    /// `provider/` prefix is optional.
    pub llm_routing_model: String,
    /// The router prompt's token budget; by default the router model's own (8192 for
    /// Plano-Orchestrator, 2048 for Arch-Router).
    pub orchestrator_model_context_length: Option<usize>,
    /// Whether `llm_routing_model` was written (archgw's `routing.model` applies otherwise).
    pub llm_routing_model_given: bool,
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_tls_ca_path: None,
            llm_routing_model: "Plano-Orchestrator".to_owned(),
            orchestrator_model_context_length: None,
            llm_routing_model_given: false,
        }
    }
}

impl Config {
    /// The provider that serves the router model, if any: its `model` or `name` as written, or
    /// its id once a `provider/` prefix is stripped (as Plano matches it).
    pub fn router_provider(&self) -> Option<&Provider> {
        find_router(&self.providers, &self.overrides.llm_routing_model)
    }
}

/// The provider that serves router model `wanted`: by `model` or `name` as written, else by id.
fn find_router<'p>(providers: &'p [Provider], wanted: &str) -> Option<&'p Provider> {
    let bare = wanted.split_once('/').map_or(wanted, |(_, id)| id);
    let served = || providers.iter().filter(|p| !p.is_wildcard());
    served()
        .find(|p| p.model == wanted || p.name == wanted)
        .or_else(|| served().find(|p| p.id == bare || p.id == wanted))
}

/// switchyard's `server` block: Pingora's process settings. All optional.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Where Prometheus metrics are served.
    pub metrics_address: SocketAddr,
    pub pid_file: PathBuf,
    /// Socket used to hand listeners over during a graceful upgrade.
    pub upgrade_sock: PathBuf,
    /// How long in-flight requests may run on after SIGTERM or SIGQUIT.
    pub grace_period: Duration,
    /// Largest request body accepted; larger ones get 413.
    pub max_request_body: u64,
    /// Where the JSON access log goes: `stdout` (default), `off`, or a file path.
    pub access_log: Sink,
    /// Client connections: how long a request head may take to arrive (from the connection's
    /// start or the next request's first byte), how long a connection may sit idle between
    /// requests, and how many may be open at once.
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 2,
            metrics_address: SocketAddr::from(([0, 0, 0, 0], 9092)),
            pid_file: PathBuf::from("/tmp/switchyard.pid"),
            upgrade_sock: PathBuf::from("/tmp/switchyard_upgrade.sock"),
            grace_period: Duration::from_secs(30),
            max_request_body: 32 << 20,
            access_log: Sink::Stdout,
            // Envoy's edge recommendation for the head, nginx's keepalive_timeout; connections
            // well below the 65,536 descriptors of the systemd unit.
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, when loaded from one.
    pub file: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and decodes a config file. `$VAR`s come from the process environment, else from a
    /// `.env` file next to the config (as Plano's CLI reads it), which is read on every load so
    /// that keys can be rotated with a reload.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |file: &Path, line: Option<u64>, message: String| ConfigError {
            file: Some(file.to_owned()),
            problems: vec![Problem {
                path: String::new(),
                line,
                message,
            }],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(path, None, format!("cannot read the file: {e}")))?;
        let dotenv_path = path.with_file_name(".env");
        let dotenv = match std::fs::read_to_string(&dotenv_path) {
            Ok(text) => values::parse_dotenv(&text)
                .map_err(|(line, message)| fail(&dotenv_path, Some(line), message))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => {
                return Err(fail(
                    &dotenv_path,
                    None,
                    format!("cannot read the file: {e}"),
                ))
            }
        };
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| dotenv.get(name).cloned())
        };
        Config::from_yaml(&text, &env).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Decodes config text; `env` resolves `$VAR` references.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        schema::decode(text, env)
    }
}

#[cfg(test)]
mod tests;
