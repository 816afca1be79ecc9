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
//! are written at the end (`Trace::finish`, `CallTrace::spans`), straight as OTLP protobuf
//! (`wire`), and buffered for the exporter (`export`). `context` reads and writes
//! `traceparent`; `names` holds every attribute name.

pub mod context;
pub mod export;
pub mod names;
pub mod wire;

pub use export::Tracer;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pingora::http::RequestHeader;

use crate::config::{OtlpExporter, Tracing};
use crate::usage::{Facts, Usage};
use context::{SpanId, TraceId};
use wire::{Attributes, Kind, Span, Spans};

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
    /// Unix time in nanoseconds at `mono`.
    wall: u64,
    mono: Instant,
}

impl Clock {
    fn new(wall: SystemTime, mono: Instant) -> Clock {
        let wall = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Clock { wall, mono }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.mono).as_nanos();
        self.wall
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// The preference router's part of a trace.
struct Routing {
    span: SpanId,
    started: Instant,
    ended: Option<Instant>,
    route: Option<String>,
    /// The route's first model.
    selected: Option<String>,
    source: &'static str,
    call: Spans,
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
            clock: Clock::new(wall, mono),
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
            selected: None,
            source: "",
            call: Spans::default(),
        });
        self.ids_under(span)
    }

    /// The router's call ended: its spans.
    pub fn router_called(&mut self, call: Spans) {
        if let Some(r) = self.routing.as_mut() {
            r.call = call;
        }
    }

    /// The routing decision: the route taken (`None`: none), its first model, how it was
    /// decided.
    pub fn routing_ended(
        &mut self,
        route: Option<&str>,
        selected: Option<&str>,
        source: &'static str,
    ) {
        if let Some(r) = self.routing.as_mut() {
            r.ended = Some(Instant::now());
            r.route = route.map(str::to_owned);
            r.selected = selected.map(str::to_owned);
            r.source = source;
        }
    }

    /// Plano's `span_attributes` of request `req`, for the server span and the model call.
    pub fn custom(&self, req: &RequestHeader) -> Attributes {
        custom_attributes(&self.settings, req)
    }

    /// The request's spans, and where they go: the server span, the routing span and the
    /// router's call; the model call's are added to them (`CallTrace::spans`).
    pub fn finish(self, server: &Server<'_>, custom: &Attributes) -> (Arc<OtlpExporter>, Spans) {
        // About what a request with one attempt takes: the exports are never reallocated.
        let mut spans = Spans::with_capacity(3072);
        let mut attributes = server_attributes(server);
        attributes.extend(custom);
        let method = server.req.method.as_str();
        let route = server.route.unwrap_or_default();
        let name: &[&str] = if route.is_empty() {
            &[method]
        } else {
            &[method, " ", route]
        };
        // A server's 4xx is the client's error, not the span's.
        let status = (server.status >= 500).then(|| server.status.to_string());
        spans.push(
            &Span {
                trace_id: &self.trace_id,
                span_id: &self.server,
                parent: self.parent.as_ref(),
                flags: span_flags(self.parent.is_some()),
                name,
                kind: Kind::Server,
                start: self.clock.nanos(self.clock.mono),
                end: self.clock.nanos(server.ended),
                error: status.as_deref(),
            },
            &attributes,
        );
        if let Some(r) = self.routing {
            let mut attributes = Attributes::default();
            attributes.str(names::ROUTE_SOURCE, r.source);
            let took = r
                .ended
                .map_or(0, |e| e.duration_since(r.started).as_millis());
            attributes.int(names::ROUTING_DETERMINATION_MS, took as i64);
            if let Some(route) = &r.route {
                attributes.str(names::PLANO_ROUTE, route);
            }
            if let Some(model) = &r.selected {
                attributes.str(names::ROUTE_SELECTED_MODEL, model);
            }
            spans.push(
                &Span {
                    trace_id: &self.trace_id,
                    span_id: &r.span,
                    parent: Some(&self.server),
                    flags: span_flags(false),
                    name: &["routing"],
                    kind: Kind::Internal,
                    start: self.clock.nanos(r.started),
                    end: self.clock.nanos(r.ended.unwrap_or(server.ended)),
                    error: None,
                },
                &attributes,
            );
            spans.append(r.call);
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

fn server_attributes(s: &Server<'_>) -> Attributes {
    let req = s.req;
    let mut a = Attributes::with_capacity(768);
    a.str(names::HTTP_REQUEST_METHOD, req.method.as_str());
    a.str(names::URL_PATH, req.uri.path());
    a.str(names::URL_SCHEME, "http");
    a.int(names::HTTP_RESPONSE_STATUS_CODE, i64::from(s.status));
    a.str(
        names::NETWORK_PROTOCOL_VERSION,
        if s.http2 { "2" } else { "1.1" },
    );
    a.str(names::REQUEST_ID, s.request_id);
    if let Some(route) = s.route {
        a.str(names::HTTP_ROUTE, route);
    }
    if let Some(client) = &s.client {
        a.str(names::CLIENT_ADDRESS, client);
    }
    if let Some(ua) = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        a.str(names::USER_AGENT, capped(ua));
    }
    if let Some(api) = s.client_api {
        a.str(names::CLIENT_API, api);
    }
    if let Some(name) = s.client_name {
        a.str(names::CLIENT_NAME, name);
    }
    if s.status >= 500 || s.error.is_some() {
        let error = s.error.map_or_else(|| s.status.to_string(), str::to_owned);
        a.str(names::ERROR_TYPE, &error);
    }
    a
}

/// Plano's `span_attributes`: each request header under a prefix (the rest of its name, `-`
/// as `.`), over the static ones. Credentials never, whatever the prefix says.
fn custom_attributes(settings: &Tracing, req: &RequestHeader) -> Attributes {
    let mut a = Attributes::default();
    for (k, v) in &custom_pairs(settings, req) {
        a.str(k, v);
    }
    a
}

/// Plano's `span_attributes` of `req` as key and value.
fn custom_pairs(settings: &Tracing, req: &RequestHeader) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = settings.statics.clone();
    if settings.header_prefixes.is_empty() {
        return out;
    }
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
    out
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
            clock: Clock::new(SystemTime::now(), Instant::now()),
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
            status: None,
            outcome: "",
            api,
        });
    }

    /// The attempt in progress ended: its status (if answered) and outcome.
    pub fn attempt_closed(&mut self, status: Option<u16>, outcome: &'static str) {
        if let Some(a) = self.attempts.last_mut().filter(|a| a.ended.is_none()) {
            a.ended = Some(Instant::now());
            a.status = status;
            a.outcome = outcome;
        }
    }

    /// The spans of the call, added to `spans`: the GenAI span first (with `custom`
    /// attributes), then one per attempt.
    pub fn spans(&self, call: &Call<'_>, custom: &Attributes, spans: &mut Spans) {
        let ids = &self.ids;
        let ended = call.ended;
        let mut a = Attributes::with_capacity(1536);
        a.str(names::OPERATION, call.operation);
        a.str(names::PROVIDER, names::provider(call.provider));
        a.str(names::REQUEST_MODEL, call.request_model);
        a.int(names::ATTEMPTS, self.attempts.len() as i64);
        // Plano's `provider/model`, as `planoai obs` reads it.
        a.concat(names::LLM_MODEL, &[call.provider, "/", call.request_model]);
        a.str(names::LLM_PROVIDER, call.provider);
        a.bool(names::LLM_IS_STREAMING, call.stream);
        let took = ended.saturating_duration_since(self.clock.mono);
        a.int(names::LLM_DURATION_MS, took.as_millis() as i64);
        if call.stream {
            a.bool(names::REQUEST_STREAM, true);
        }
        if let Some(api) = self.attempts.last().and_then(|a| a.api) {
            a.str(names::OPENAI_API_TYPE, api);
        }
        if let Some(endpoint) = self.attempts.last().map(|a| a.endpoint.as_str()) {
            a.str(names::ENDPOINT, endpoint);
        }
        if let Some(id) = call.previous_response {
            a.str(names::PREVIOUS_RESPONSE, id);
        }
        if let Some(route) = call.route {
            a.str(names::PLANO_ROUTE, route);
        }
        if let Some(f) = call.facts {
            if let Some(model) = &f.model {
                a.str(names::RESPONSE_MODEL, model);
            }
            if let Some(id) = &f.id {
                a.str(names::RESPONSE_ID, id);
            }
            if !f.finish_reasons.is_empty() {
                a.strs(names::FINISH_REASONS, &f.finish_reasons);
            }
        }
        if let Some(first) = call.first_token {
            let ttfc = first.saturating_duration_since(self.clock.mono);
            if call.stream {
                a.float(names::TIME_TO_FIRST_CHUNK, ttfc.as_secs_f64());
            }
            a.int(names::LLM_TTFT_MS, ttfc.as_millis() as i64);
        }
        if let Some(u) = call.usage {
            usage_attributes(&u, call.cache_outside_input, &mut a);
        }
        if let Some(error) = call.error {
            a.str(names::ERROR_TYPE, error);
        }
        a.extend(custom);
        spans.push(
            &Span {
                trace_id: &ids.trace_id,
                span_id: &ids.span,
                parent: Some(&ids.parent),
                flags: span_flags(false),
                name: &[call.operation, " ", call.request_model],
                kind: Kind::Client,
                start: self.clock.nanos(self.clock.mono),
                end: self.clock.nanos(ended),
                error: call.error,
            },
            &a,
        );
        for (i, attempt) in self.attempts.iter().enumerate() {
            attempt_span(spans, ids, &self.clock, attempt, i, ended);
        }
    }
}

fn attempt_span(
    spans: &mut Spans,
    ids: &CallIds,
    clock: &Clock,
    a: &AttemptTrace,
    i: usize,
    ended: Instant,
) {
    let scheme = if a.tls { "https" } else { "http" };
    let default_port = if a.tls { 443 } else { 80 };
    let url = if a.port == default_port {
        format!("{scheme}://{}{}", a.host, a.path)
    } else {
        format!("{scheme}://{}:{}{}", a.host, a.port, a.path)
    };
    let mut attributes = Attributes::with_capacity(512);
    attributes.str(names::HTTP_REQUEST_METHOD, "POST");
    attributes.str(names::SERVER_ADDRESS, &a.host);
    attributes.int(names::SERVER_PORT, i64::from(a.port));
    attributes.str(names::URL_FULL, &url);
    attributes.str(names::ENDPOINT, &a.endpoint);
    if i > 0 {
        attributes.int(names::HTTP_RESEND_COUNT, i as i64);
    }
    if let Some(status) = a.status {
        attributes.int(names::HTTP_RESPONSE_STATUS_CODE, i64::from(status));
    }
    let error = attempt_error(a);
    if let Some(e) = &error {
        attributes.str(names::ERROR_TYPE, e);
    }
    spans.push(
        &Span {
            trace_id: &ids.trace_id,
            span_id: &a.span,
            parent: Some(&ids.span),
            flags: span_flags(false),
            name: &["POST"],
            kind: Kind::Client,
            start: clock.nanos(a.started),
            end: clock.nanos(a.ended.unwrap_or(ended)),
            error: error.as_deref(),
        },
        &attributes,
    );
}

/// An attempt's `error.type`: any 4xx or 5xx answer, or how it failed without one.
fn attempt_error(a: &AttemptTrace) -> Option<String> {
    match (a.outcome, a.status) {
        (_, Some(s)) if s >= 400 => Some(s.to_string()),
        ("success" | "", _) => None,
        (outcome, _) => Some(outcome.to_owned()),
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

fn usage_attributes(u: &Usage, cache_outside_input: bool, out: &mut Attributes) {
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
        out.int(k, v as i64);
    }
    if u.cache_read > 0 {
        out.int(names::CACHE_READ_TOKENS, u.cache_read as i64);
        out.int(names::LLM_CACHED_INPUT_TOKENS, u.cache_read as i64);
    }
    if u.cache_write > 0 {
        out.int(names::CACHE_WRITE_TOKENS, u.cache_write as i64);
        out.int(names::LLM_CACHE_CREATION_TOKENS, u.cache_write as i64);
    }
}

/// W3C flags on an exported span: sampled; bit 8 says whether its parent is known to be
/// remote (bit 9 set when it is).
fn span_flags(remote_parent: bool) -> u32 {
    0x01 | 0x100 | if remote_parent { 0x200 } else { 0 }
}

#[cfg(test)]
mod tests;
