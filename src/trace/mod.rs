//! OpenTelemetry traces (Plano's `tracing`): one trace per sampled model request, built from
//! what the request recorded once it is logged, and exported over OTLP off the request path.
//!
//! ```text
//!  SERVER   POST /v1/chat/completions        the client's request (continues its traceparent)
//!  ├─ INTERNAL routing                       when the preference router is asked
//!  │  └─ CLIENT chat <router model>          its model call …
//!  │     └─ CLIENT POST                      … and each attempt
//!  └─ CLIENT chat <model>                    the model call, all attempts
//!     ├─ CLIENT POST                         attempt 1: its span id is the traceparent sent
//!     └─ CLIENT POST                         attempt 2 (http.request.resend_count 1)
//! ```
//!
//! Whether a request is traced is decided once, when it is taken in (`Trace::begin`): a
//! client's valid `traceparent` decides by its sampled flag, a new trace by `random_sampling`.
//! An untraced request carries nothing and its `traceparent` goes upstream unchanged. A traced
//! one records ids and instants on the way (here, and in its exchange's `CallTrace`); its spans
//! are built at the end (`Trace::finish`) and queued for the exporter (`export`). `context`
//! reads and writes `traceparent`; `names` holds every attribute name.

pub mod context;
pub mod export;
pub mod names;

pub use export::Tracer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{status, Span, Status};
use pingora::http::RequestHeader;
use serde::Deserialize;

use crate::config::{OtlpExporter, Tracing};
use crate::usage::{Facts, Usage};
use context::{SpanId, TraceId};

/// Longest header-derived attribute value kept, in bytes.
const MAX_HEADER_VALUE: usize = 256;

/// A traced request's trace while it goes.
pub struct Trace {
    settings: Arc<Tracing>,
    trace_id: TraceId,
    server: SpanId,
    /// The client's span, when it sent a `traceparent`.
    parent: Option<SpanId>,
    clock: Clock,
    routing: Option<Routing>,
}

/// Maps the monotonic instants a request records to wall-clock time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    fn nanos(&self, at: Instant) -> u64 {
        let t = self.wall + at.saturating_duration_since(self.mono);
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The preference router's part of a trace.
struct Routing {
    span: SpanId,
    started: Instant,
    ended: Option<Instant>,
    route: Option<String>,
    models: Vec<String>,
    source: &'static str,
    call: Vec<Span>,
}

/// The ids a model call's spans hang from: its trace, its parent, its own span.
#[derive(Debug, Clone, Copy)]
pub struct CallIds {
    trace_id: TraceId,
    parent: SpanId,
    span: SpanId,
    /// A new trace (no client parent): a client's `tracestate` belongs to another.
    new_trace: bool,
}

/// What an exchange records for its model call's spans: ids, and each attempt.
pub struct CallTrace {
    ids: CallIds,
    clock: Clock,
    attempts: Vec<AttemptTrace>,
}

/// Where an attempt goes, as its span tells it.
#[derive(Clone, Copy)]
pub struct AttemptTo<'a> {
    pub endpoint: &'a str,
    pub tls: bool,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub api: Option<&'static str>,
}

/// One attempt, for its span.
pub struct AttemptTrace {
    span: SpanId,
    started: Instant,
    ended: Option<Instant>,
    endpoint: String,
    tls: bool,
    host: String,
    port: u16,
    /// The upstream path, without its query (which may hold a key).
    path: String,
    peer: Option<SocketAddr>,
    status: Option<u16>,
    /// How it ended, in the access log's words (`success`, `timeout`, …).
    outcome: &'static str,
    /// OpenAI's name of the API spoken, when it is OpenAI's (`chat_completions`, `responses`).
    api: Option<&'static str>,
}

impl Trace {
    /// The trace of a request, when it is traced: `settings` on (sampling above 0) and the
    /// client's `traceparent` sampled, or without one, the new trace kept at the percent.
    pub fn begin(
        settings: Option<&Arc<Tracing>>,
        req: &RequestHeader,
        wall: SystemTime,
        mono: Instant,
    ) -> Option<Box<Trace>> {
        let settings = settings?;
        let incoming = req
            .headers
            .get(context::TRACEPARENT)
            .and_then(|v| context::parse(v.as_bytes()));
        let (trace_id, parent) = match incoming {
            Some(p) if p.sampled => (p.trace_id, Some(p.span_id)),
            Some(_) => return None,
            None => {
                let id = context::new_trace_id();
                if !context::kept(&id, settings.sampling) {
                    return None;
                }
                (id, None)
            }
        };
        Some(Box::new(Trace {
            settings: settings.clone(),
            trace_id,
            server: context::new_span_id(),
            parent,
            clock: Clock { wall, mono },
            routing: None,
        }))
    }

    /// The ids of the request's model call, under the server span.
    pub fn call(&self) -> CallIds {
        self.ids_under(self.server)
    }

    fn ids_under(&self, parent: SpanId) -> CallIds {
        CallIds {
            trace_id: self.trace_id,
            parent,
            span: context::new_span_id(),
            new_trace: self.parent.is_none(),
        }
    }

    /// The preference router is asked: opens the routing span; the ids of the router's call.
    pub fn routing_started(&mut self) -> CallIds {
        let span = context::new_span_id();
        self.routing = Some(Routing {
            span,
            started: Instant::now(),
            ended: None,
            route: None,
            models: Vec::new(),
            source: "",
            call: Vec::new(),
        });
        self.ids_under(span)
    }

    /// The router's call ended: its spans.
    pub fn router_called(&mut self, call: Vec<Span>) {
        if let Some(r) = self.routing.as_mut() {
            r.call = call;
        }
    }

    /// The routing decision: the route taken (`None`: none), its models, how it was decided.
    pub fn routing_ended(&mut self, route: Option<&str>, models: &[String], source: &'static str) {
        if let Some(r) = self.routing.as_mut() {
            r.ended = Some(Instant::now());
            r.route = route.map(str::to_owned);
            r.models = models.to_vec();
            r.source = source;
        }
    }

    /// The request's spans, and where they go.
    pub fn finish(
        self,
        server: &Server<'_>,
        call: Option<Vec<Span>>,
    ) -> (Arc<OtlpExporter>, Vec<Span>) {
        let mut spans = Vec::with_capacity(8);
        let custom = custom_attributes(&self.settings, server.req);
        let mut attributes = server_attributes(server);
        attributes.extend(custom.iter().cloned());
        let route = server.route.unwrap_or_default();
        let name = if route.is_empty() {
            server.req.method.as_str().to_owned()
        } else {
            format!("{} {route}", server.req.method.as_str())
        };
        spans.push(Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.server.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: span_flags(self.parent.is_some()),
            name,
            kind: SpanKind::Server as i32,
            start_time_unix_nano: self.clock.nanos(self.clock.mono),
            end_time_unix_nano: self.clock.nanos(server.ended),
            attributes,
            // A server's 4xx is the client's error, not the span's.
            status: (server.status >= 500).then(|| error_status(server.status.to_string())),
            ..Span::default()
        });
        if let Some(r) = self.routing {
            let mut attributes = vec![
                kv(names::ROUTE_SOURCE, r.source),
                kv(
                    names::ROUTING_DETERMINATION_MS,
                    r.ended
                        .map_or(0, |e| e.duration_since(r.started).as_millis())
                        as i64,
                ),
            ];
            if let Some(route) = r.route {
                attributes.push(kv(names::PLANO_ROUTE, route));
            }
            if let Some(model) = r.models.first() {
                attributes.push(kv(names::ROUTE_SELECTED_MODEL, model.as_str()));
            }
            spans.push(Span {
                trace_id: self.trace_id.to_vec(),
                span_id: r.span.to_vec(),
                parent_span_id: self.server.to_vec(),
                flags: span_flags(false),
                name: "routing".to_owned(),
                kind: SpanKind::Internal as i32,
                start_time_unix_nano: self.clock.nanos(r.started),
                end_time_unix_nano: self.clock.nanos(r.ended.unwrap_or(server.ended)),
                attributes,
                ..Span::default()
            });
            spans.extend(r.call);
        }
        if let Some(mut call) = call {
            // Plano's span attributes go on the model call too, where its tools look.
            if let Some(genai) = call.first_mut() {
                genai.attributes.extend(custom);
            }
            spans.extend(call);
        }
        (self.settings.exporter.clone(), spans)
    }
}

/// The client's request, as its server span tells it.
pub struct Server<'a> {
    pub req: &'a RequestHeader,
    /// The API path served (`http.route`); `None` for a path the gateway does not serve.
    pub route: Option<&'a str>,
    pub status: u16,
    pub client: Option<String>,
    pub http2: bool,
    pub request_id: &'a str,
    /// The gateway's reason when it failed the request (the access log's `error`).
    pub error: Option<&'a str>,
    pub client_api: Option<&'a str>,
    pub client_name: Option<&'a str>,
    pub ended: Instant,
}

fn server_attributes(s: &Server<'_>) -> Vec<KeyValue> {
    let req = s.req;
    let mut out = vec![
        kv(names::HTTP_REQUEST_METHOD, req.method.as_str()),
        kv(names::URL_PATH, req.uri.path()),
        kv(names::URL_SCHEME, "http"),
        kv(names::HTTP_RESPONSE_STATUS_CODE, i64::from(s.status)),
        kv(
            names::NETWORK_PROTOCOL_VERSION,
            if s.http2 { "2" } else { "1.1" },
        ),
        kv(names::REQUEST_ID, s.request_id),
    ];
    if let Some(route) = s.route {
        out.push(kv(names::HTTP_ROUTE, route));
    }
    if let Some(client) = &s.client {
        out.push(kv(names::CLIENT_ADDRESS, client.as_str()));
    }
    if let Some(ua) = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        out.push(kv(names::USER_AGENT, capped(ua)));
    }
    if let Some(api) = s.client_api {
        out.push(kv(names::CLIENT_API, api));
    }
    if let Some(name) = s.client_name {
        out.push(kv(names::CLIENT_NAME, name));
    }
    if s.status >= 500 || s.error.is_some() {
        let error = s.error.map_or_else(|| s.status.to_string(), str::to_owned);
        out.push(kv(names::ERROR_TYPE, error));
    }
    out
}

/// Plano's `span_attributes`: each request header under a prefix (the rest of its name, `-`
/// as `.`), over the static ones. Credentials never, whatever the prefix says.
fn custom_attributes(settings: &Tracing, req: &RequestHeader) -> Vec<KeyValue> {
    let mut out: Vec<(String, String)> = settings.statics.clone();
    if !settings.header_prefixes.is_empty() {
        for (name, value) in &req.headers {
            let name = name.as_str();
            if credential(name) {
                continue;
            }
            let Some(key) = settings
                .header_prefixes
                .iter()
                .find_map(|p| name.strip_prefix(p.as_str()))
                .map(|rest| rest.trim_start_matches('-').replace('-', "."))
                .filter(|k| !k.is_empty())
            else {
                continue;
            };
            let Ok(value) = value.to_str() else {
                continue;
            };
            let value = capped(value.trim()).to_owned();
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => out.push((key, value)),
            }
        }
    }
    out.into_iter().map(|(k, v)| kv_owned(k, v)).collect()
}

/// Header names that carry credentials, which no span ever records.
fn credential(name: &str) -> bool {
    [
        "auth",
        "key",
        "token",
        "secret",
        "password",
        "cookie",
        "credential",
        "signature",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

fn capped(value: &str) -> &str {
    crate::access_log::truncate(value, MAX_HEADER_VALUE)
}

impl CallTrace {
    pub fn new(ids: CallIds) -> CallTrace {
        CallTrace {
            ids,
            clock: Clock {
                wall: SystemTime::now(),
                mono: Instant::now(),
            },
            attempts: Vec::new(),
        }
    }

    /// The `traceparent` for the attempt in progress.
    pub fn traceparent(&self) -> Option<String> {
        let a = self.attempts.last()?;
        Some(context::traceparent(&self.ids.trace_id, &a.span))
    }

    /// Whether the trace is a new one (the client's `tracestate` is not sent on).
    pub fn new_trace(&self) -> bool {
        self.ids.new_trace
    }

    /// An attempt opens.
    pub fn attempt_opened(&mut self, to: &AttemptTo<'_>) {
        let AttemptTo {
            endpoint,
            tls,
            host,
            port,
            path,
            api,
        } = *to;
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.attempts.push(AttemptTrace {
            span: context::new_span_id(),
            started: Instant::now(),
            ended: None,
            endpoint: endpoint.to_owned(),
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            peer: None,
            status: None,
            outcome: "",
            api,
        });
    }

    /// The address the attempt in progress connects to.
    pub fn attempt_peer(&mut self, peer: Option<SocketAddr>) {
        if let Some(a) = self.attempts.last_mut() {
            a.peer = peer;
        }
    }

    /// The attempt in progress ended: its status (if answered) and outcome.
    pub fn attempt_closed(&mut self, status: Option<u16>, outcome: &'static str) {
        if let Some(a) = self.attempts.last_mut().filter(|a| a.ended.is_none()) {
            a.ended = Some(Instant::now());
            a.status = status;
            a.outcome = outcome;
        }
    }

    /// The spans of the call: the GenAI span first, then one per attempt.
    pub fn spans(&self, call: &Call<'_>) -> Vec<Span> {
        let ids = &self.ids;
        let ended = call.ended;
        let mut spans = Vec::with_capacity(1 + self.attempts.len());
        let mut attributes = vec![
            kv(names::OPERATION, call.operation),
            kv(names::PROVIDER, names::provider(call.provider)),
            kv(names::REQUEST_MODEL, call.request_model),
            kv(names::ATTEMPTS, self.attempts.len() as i64),
            kv(
                names::LLM_MODEL,
                format!("{}/{}", call.provider, call.request_model),
            ),
            kv(names::LLM_PROVIDER, call.provider),
            kv(names::LLM_IS_STREAMING, call.stream),
            kv(
                names::LLM_DURATION_MS,
                ended.saturating_duration_since(self.clock.mono).as_millis() as i64,
            ),
        ];
        if call.stream {
            attributes.push(kv(names::REQUEST_STREAM, true));
        }
        if let Some(api) = self.attempts.last().and_then(|a| a.api) {
            attributes.push(kv(names::OPENAI_API_TYPE, api));
        }
        if let Some(endpoint) = self.attempts.last().map(|a| a.endpoint.as_str()) {
            attributes.push(kv(names::ENDPOINT, endpoint));
        }
        if let Some(id) = call.previous_response {
            attributes.push(kv(names::PREVIOUS_RESPONSE, id));
        }
        if let Some(route) = call.route {
            attributes.push(kv(names::PLANO_ROUTE, route));
        }
        request_settings(call.body, &mut attributes);
        if let Some(f) = call.facts {
            if let Some(model) = &f.model {
                attributes.push(kv(names::RESPONSE_MODEL, model.as_str()));
            }
            if let Some(id) = &f.id {
                attributes.push(kv(names::RESPONSE_ID, id.as_str()));
            }
            if !f.finish_reasons.is_empty() {
                attributes.push(kv(names::FINISH_REASONS, f.finish_reasons.clone()));
            }
        }
        if let Some(first) = call.first_token {
            let ttfc = first.saturating_duration_since(self.clock.mono);
            if call.stream {
                attributes.push(kv(names::TIME_TO_FIRST_CHUNK, ttfc.as_secs_f64()));
            }
            attributes.push(kv(names::LLM_TTFT_MS, ttfc.as_millis() as i64));
        }
        if let Some(u) = call.usage {
            usage_attributes(&u, call.cache_outside_input, &mut attributes);
        }
        if let Some(error) = call.error {
            attributes.push(kv(names::ERROR_TYPE, error));
        }
        spans.push(Span {
            trace_id: ids.trace_id.to_vec(),
            span_id: ids.span.to_vec(),
            parent_span_id: ids.parent.to_vec(),
            flags: span_flags(false),
            name: format!("{} {}", call.operation, call.request_model),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: self.clock.nanos(self.clock.mono),
            end_time_unix_nano: self.clock.nanos(ended),
            attributes,
            status: call.error.map(|e| error_status(e.to_owned())),
            ..Span::default()
        });
        for (i, a) in self.attempts.iter().enumerate() {
            spans.push(attempt_span(ids, &self.clock, a, i, ended));
        }
        spans
    }
}

fn attempt_span(ids: &CallIds, clock: &Clock, a: &AttemptTrace, i: usize, ended: Instant) -> Span {
    let scheme = if a.tls { "https" } else { "http" };
    let default_port = if a.tls { 443 } else { 80 };
    let url = if a.port == default_port {
        format!("{scheme}://{}{}", a.host, a.path)
    } else {
        format!("{scheme}://{}:{}{}", a.host, a.port, a.path)
    };
    let mut attributes = vec![
        kv(names::HTTP_REQUEST_METHOD, "POST"),
        kv(names::SERVER_ADDRESS, a.host.as_str()),
        kv(names::SERVER_PORT, i64::from(a.port)),
        kv(names::URL_FULL, url),
        kv(names::ENDPOINT, a.endpoint.as_str()),
    ];
    if i > 0 {
        attributes.push(kv(names::HTTP_RESEND_COUNT, i as i64));
    }
    if let Some(peer) = a.peer {
        attributes.push(kv(names::NETWORK_PEER_ADDRESS, peer.ip().to_string()));
        attributes.push(kv(names::NETWORK_PEER_PORT, i64::from(peer.port())));
    }
    if let Some(status) = a.status {
        attributes.push(kv(names::HTTP_RESPONSE_STATUS_CODE, i64::from(status)));
    }
    // A client span's error: any 4xx or 5xx answer, or an attempt that failed without one.
    let error = match (a.outcome, a.status) {
        (_, Some(s)) if s >= 400 => Some(s.to_string()),
        ("success" | "", _) => None,
        (outcome, _) => Some(outcome.to_owned()),
    };
    if let Some(e) = &error {
        attributes.push(kv(names::ERROR_TYPE, e.as_str()));
    }
    Span {
        trace_id: ids.trace_id.to_vec(),
        span_id: a.span.to_vec(),
        parent_span_id: ids.span.to_vec(),
        flags: span_flags(false),
        name: "POST".to_owned(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: clock.nanos(a.started),
        end_time_unix_nano: clock.nanos(a.ended.unwrap_or(ended)),
        attributes,
        status: error.map(error_status),
        ..Span::default()
    }
}

/// An exchange's model call, as its GenAI span tells it.
pub struct Call<'a> {
    /// `chat`, `embeddings`, `text_completion`.
    pub operation: &'static str,
    /// The Plano provider prefix of the endpoint that answered (or was tried last).
    pub provider: &'a str,
    /// The model id asked of the upstream.
    pub request_model: &'a str,
    pub stream: bool,
    /// The client's body: the request's sampling settings.
    pub body: &'a [u8],
    pub previous_response: Option<&'a str>,
    pub route: Option<&'a str>,
    pub usage: Option<Usage>,
    /// Anthropic reports cache tokens beside its input tokens, not in them.
    pub cache_outside_input: bool,
    pub facts: Option<&'a Facts>,
    pub first_token: Option<Instant>,
    /// The call's failure class, when it failed.
    pub error: Option<&'a str>,
    pub ended: Instant,
}

/// `max_tokens` (in any API's name), `temperature` and `top_p` of the client's request.
fn request_settings(body: &[u8], out: &mut Vec<KeyValue>) {
    #[derive(Deserialize)]
    struct Settings {
        max_tokens: Option<i64>,
        max_completion_tokens: Option<i64>,
        max_output_tokens: Option<i64>,
        temperature: Option<f64>,
        top_p: Option<f64>,
    }
    let Ok(s) = serde_json::from_slice::<Settings>(body) else {
        return;
    };
    if let Some(n) = s
        .max_completion_tokens
        .or(s.max_tokens)
        .or(s.max_output_tokens)
    {
        out.push(kv(names::REQUEST_MAX_TOKENS, n));
    }
    if let Some(t) = s.temperature {
        out.push(kv(names::REQUEST_TEMPERATURE, t));
    }
    if let Some(p) = s.top_p {
        out.push(kv(names::REQUEST_TOP_P, p));
    }
}

fn usage_attributes(u: &Usage, cache_outside_input: bool, out: &mut Vec<KeyValue>) {
    // The conventions count cached tokens in the input; Anthropic and Bedrock report them apart.
    let input = if cache_outside_input {
        u.prompt + u.cache_read + u.cache_write
    } else {
        u.prompt
    };
    let pairs = [
        (names::INPUT_TOKENS, input),
        (names::OUTPUT_TOKENS, u.completion),
        (names::LLM_PROMPT_TOKENS, input),
        (names::LLM_COMPLETION_TOKENS, u.completion),
        (names::LLM_TOTAL_TOKENS, input + u.completion),
    ];
    for (k, v) in pairs {
        out.push(kv(k, v as i64));
    }
    if u.cache_read > 0 {
        out.push(kv(names::CACHE_READ_TOKENS, u.cache_read as i64));
        out.push(kv(names::LLM_CACHED_INPUT_TOKENS, u.cache_read as i64));
    }
    if u.cache_write > 0 {
        out.push(kv(names::CACHE_WRITE_TOKENS, u.cache_write as i64));
        out.push(kv(names::LLM_CACHE_CREATION_TOKENS, u.cache_write as i64));
    }
}

/// W3C flags on an exported span: sampled; bit 8 says whether its parent is known to be
/// remote (bit 9 set when it is).
fn span_flags(remote_parent: bool) -> u32 {
    0x01 | 0x100 | if remote_parent { 0x200 } else { 0 }
}

fn error_status(message: String) -> Status {
    Status {
        message,
        code: status::StatusCode::Error as i32,
    }
}

/// An attribute value.
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Strs(Vec<String>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::Strs(v)
    }
}

fn any(v: Value) -> AnyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Float(f) => any_value::Value::DoubleValue(f),
        Value::Bool(b) => any_value::Value::BoolValue(b),
        Value::Strs(list) => any_value::Value::ArrayValue(ArrayValue {
            values: list.into_iter().map(|s| any(Value::Str(s))).collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn kv(key: &'static str, value: impl Into<Value>) -> KeyValue {
    kv_owned(key.to_owned(), value)
}

fn kv_owned(key: String, value: impl Into<Value>) -> KeyValue {
    KeyValue {
        key,
        value: Some(any(value.into())),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests;
