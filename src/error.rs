//! Errors the gateway answers itself, each with its HTTP status and an OpenAI-shaped JSON body:
//! `{"error": {"message", "type", "param", "code"}}`; and the one reading of a `pingora::Error`
//! ([`classify`], [`cause`]) that every decision and report uses: retries and health, the
//! client's error, metrics and the access log.

use bytes::Bytes;

use crate::translate::Api;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("Unknown endpoint: {method} {path}")]
    UnknownPath { method: String, path: String },
    #[error("Method {method} is not allowed on {path}; use {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("{0}")]
    InvalidBody(String),
    #[error("The request body is larger than the {limit} bytes this gateway accepts")]
    BodyTooLarge { limit: u64 },
    #[error("The request has no `model` and no provider is configured as the default")]
    MissingModel,
    #[error("The model `{0}` does not exist or is not configured on this gateway")]
    ModelNotFound(String),
    #[error("Provider `{0}` has no access_key configured and passthrough_auth is off")]
    NoAccessKey(String),
    /// The provider's name and why (`cause`).
    #[error("Could not connect to provider `{0}`: {1}")]
    UpstreamUnreachable(String, &'static str),
    #[error("Provider `{0}` did not answer in time: {1}")]
    UpstreamTimeout(String, &'static str),
    #[error("The request to provider `{0}` failed: {1}")]
    UpstreamFailed(String, &'static str),
    #[error("{0}")]
    NotSupported(String),
    /// A Responses request continues a response this gateway does not keep.
    #[error("Previous response with id '{0}' not found.")]
    PreviousResponseNotFound(String),
    /// The store of Responses conversations (`state_storage`, or `state.redis`) does not
    /// answer: the request is not sent without its history.
    #[error("The conversation of `previous_response_id` cannot be read right now: the conversation store does not answer; retry shortly")]
    ConversationsUnavailable,
    #[error("The request body was not received in time")]
    ClientTimeout,
    #[error("The request could not be read")]
    Unreadable,
    #[error("Internal gateway error")]
    Internal,
    /// No gateway key, or one no client has (why, never the key).
    #[error("Unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The client's `models` do not include the model it asked for.
    #[error("This key may not use the model `{0}`")]
    ModelNotAllowed(String),
    /// A limit or budget the request is charged against is reached (quota).
    #[error("{0}")]
    LimitReached(Box<Refusal>),
    /// The shared state store does not answer and `on_error: closed` refuses what it cannot
    /// count.
    #[error("Limits cannot be checked right now: the state store does not answer, and this gateway refuses requests it cannot count (state.redis.on_error: closed); retry shortly")]
    LimitsUnavailable,
    /// Every endpoint is parked by its upstream's 429 `retry-after` (ejected ones are still
    /// tried when nothing else is left): the client gets what the upstream would say, with the
    /// time that remains.
    #[error("`{model}` is rate limited by its provider; retry after {secs} s", secs = .wait.as_secs_f64().ceil())]
    RateLimited {
        /// The configured model (its lead endpoint's name), which also labels the metrics.
        model: String,
        /// Its provider prefix, for the metrics' `provider` label.
        provider: String,
        wait: std::time::Duration,
    },
}

/// A limit or budget that refused a request (quota), as the client is told: whose, how much,
/// and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// "client `alice`", "`x-user-id: bob` on `openai/gpt-4o`".
    pub owner: String,
    /// Tokens, else requests.
    pub tokens: bool,
    pub limit: u64,
    /// `minute`, `hour`, `day`.
    pub per: &'static str,
    /// A budget (renewed at midnight UTC) rather than a rate.
    pub budget: bool,
    pub remaining: u64,
    /// Until the next request would be taken.
    pub wait: std::time::Duration,
    /// Until the whole limit is back.
    pub reset: std::time::Duration,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.wait.as_secs_f64().ceil();
        let unit = if self.tokens { "tokens" } else { "requests" };
        let (limit, per, owner) = (self.limit, self.per, &self.owner);
        if self.budget {
            write!(f, "The budget of {limit} {unit} per day of {owner} is spent; it renews at midnight UTC, in {secs} s")
        } else {
            write!(
                f,
                "The limit of {limit} {unit} per {per} of {owner} is reached; retry after {secs} s"
            )
        }
    }
}

/// What a `pingora::Error` means to the gateway: which side failed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No connection to the upstream: refused, unreachable, TLS, no address.
    Connect,
    /// The upstream did not connect, answer or take the request in time.
    Timeout,
    /// The exchange with the upstream broke off after connecting.
    Protocol,
    /// An upstream answer with this status that the plan retries (upstream_response_filter).
    Status(u16),
    /// The gateway refused the request with this status itself (exchange).
    Refused(u16),
    /// The client left, or its connection failed.
    ClientGone,
    /// The client sent its request too slowly.
    ClientTimeout,
    /// The client sent what cannot be read (malformed HTTP or framing).
    ClientInvalid,
    /// Anything else: the gateway's own failure.
    Internal,
}

impl Class {
    /// Whether the upstream failed (as opposed to the client or the gateway).
    pub fn upstream(self) -> bool {
        matches!(
            self,
            Class::Connect | Class::Timeout | Class::Protocol | Class::Status(_)
        )
    }

    /// Whether the client failed: gone, too slow, or unreadable.
    pub fn client(self) -> bool {
        matches!(
            self,
            Class::ClientGone | Class::ClientTimeout | Class::ClientInvalid
        )
    }
}

/// The one classifier of `pingora::Error`s.
pub fn classify(e: &pingora::Error) -> Class {
    use pingora::{ErrorSource, ErrorType::*};
    let timeout = matches!(
        e.etype(),
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout
    );
    match (e.etype(), e.esource()) {
        (HTTPStatus(status), ErrorSource::Upstream) => Class::Status(*status),
        (HTTPStatus(status), _) => Class::Refused(*status),
        (_, ErrorSource::Downstream) if timeout => Class::ClientTimeout,
        (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => Class::ClientGone,
        (_, ErrorSource::Downstream) => Class::ClientInvalid,
        _ if timeout => Class::Timeout,
        (
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
            | TLSHandshakeFailure | InvalidCert | HandshakeError | SocketError | BindError,
            ErrorSource::Upstream,
        ) => Class::Connect,
        (_, ErrorSource::Upstream) => Class::Protocol,
        _ => Class::Internal,
    }
}

impl GatewayError {
    /// What the client is told when the request to `provider` failed with `e`, with nothing of
    /// the gateway's own to say.
    pub fn of(e: &pingora::Error, provider: String) -> GatewayError {
        let why = cause(e);
        match classify(e) {
            Class::Timeout => GatewayError::UpstreamTimeout(provider, why),
            Class::Connect => GatewayError::UpstreamUnreachable(provider, why),
            Class::Protocol | Class::Status(_) | Class::Refused(_) => {
                GatewayError::UpstreamFailed(provider, why)
            }
            Class::ClientTimeout => GatewayError::ClientTimeout,
            Class::ClientGone | Class::ClientInvalid => GatewayError::Unreadable,
            Class::Internal => GatewayError::Internal,
        }
    }

    /// Whether this error says an upstream failed (its cause is then worth logging).
    pub fn upstream_cause(&self) -> Option<&'static str> {
        match self {
            GatewayError::UpstreamUnreachable(_, why)
            | GatewayError::UpstreamTimeout(_, why)
            | GatewayError::UpstreamFailed(_, why) => Some(why),
            _ => None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            GatewayError::UnknownPath { .. } => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::InvalidBody(_) => 400,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::MissingModel => 400,
            GatewayError::ModelNotFound(_) => 404,
            GatewayError::NoAccessKey(_) => 500,
            GatewayError::UpstreamUnreachable(..) => 502,
            GatewayError::UpstreamTimeout(..) => 504,
            GatewayError::UpstreamFailed(..) => 502,
            GatewayError::NotSupported(_) => 400,
            GatewayError::PreviousResponseNotFound(_) => 400,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::ClientTimeout => 408,
            GatewayError::Unreadable => 400,
            GatewayError::Internal => 500,
            GatewayError::Unauthorized(_) => 401,
            GatewayError::ModelNotAllowed(_) => 403,
            GatewayError::LimitReached(_) => 429,
            GatewayError::LimitsUnavailable => 503,
            GatewayError::ConversationsUnavailable => 503,
        }
    }

    /// OpenAI's `error.code`: stable, machine-readable.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::UnknownPath { .. } => "unknown_url",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::InvalidBody(_) => "invalid_request_body",
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::MissingModel => "model_required",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::NoAccessKey(_) => "provider_misconfigured",
            GatewayError::UpstreamUnreachable(..) => "upstream_unreachable",
            GatewayError::UpstreamTimeout(..) => "upstream_timeout",
            GatewayError::UpstreamFailed(..) => "upstream_error",
            GatewayError::NotSupported(_) => "unsupported_for_provider",
            GatewayError::PreviousResponseNotFound(_) => "previous_response_not_found",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::ClientTimeout => "request_timeout",
            GatewayError::Unreadable => "invalid_request",
            GatewayError::Internal => "internal_error",
            GatewayError::Unauthorized(_) => "invalid_api_key",
            GatewayError::ModelNotAllowed(_) => "model_not_allowed",
            GatewayError::LimitReached(r) if r.budget => "insufficient_quota",
            GatewayError::LimitReached(_) => "rate_limit_exceeded",
            GatewayError::LimitsUnavailable => "limits_unavailable",
            GatewayError::ConversationsUnavailable => "conversation_store_unavailable",
        }
    }

    /// How long the client should wait before trying again, if the error says.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            GatewayError::RateLimited { wait, .. } => Some(*wait),
            GatewayError::LimitReached(r) => Some(r.wait),
            GatewayError::LimitsUnavailable | GatewayError::ConversationsUnavailable => {
                Some(std::time::Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// Headers beside the body, in the client's API: a client's limit as OpenAI
    /// (`x-ratelimit-*`) or Anthropic (`anthropic-ratelimit-*`) report theirs, and the wait in
    /// milliseconds.
    pub fn headers(&self, api: Option<Api>) -> Vec<(&'static str, String)> {
        let GatewayError::LimitReached(r) = self else {
            return Vec::new();
        };
        let Refusal {
            tokens,
            limit,
            remaining,
            reset,
            wait,
            budget,
            ..
        } = **r;
        let anthropic = api.is_some_and(Api::anthropic);
        let names = match (anthropic, tokens) {
            (true, false) => [
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ],
            (true, true) => [
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ],
            (false, false) => [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            (false, true) => [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        };
        let reset = if anthropic {
            crate::access_log::rfc3339(std::time::SystemTime::now() + reset)
        } else {
            format!("{:.3}s", reset.as_secs_f64())
        };
        let mut headers = vec![
            ("retry-after-ms", wait.as_millis().to_string()),
            (names[0], limit.to_string()),
            (names[1], remaining.to_string()),
            (names[2], reset),
        ];
        if budget {
            // Waiting a little does not help: the SDKs stop retrying.
            headers.push(("x-should-retry", "false".into()));
        }
        headers
    }

    /// The JSON body sent to a client of `api` (Anthropic's shape for Messages clients).
    pub fn body_for(&self, api: Option<Api>) -> Bytes {
        if api.is_some_and(Api::anthropic) {
            return Bytes::from(
                crate::translate::anthropic_error(self.status(), &self.to_string()).to_string(),
            );
        }
        self.body()
    }

    /// The JSON body sent to an OpenAI client.
    pub fn body(&self) -> Bytes {
        Bytes::from(self.openai().to_string())
    }

    /// The error in OpenAI's shape.
    pub fn openai(&self) -> serde_json::Value {
        let param = match self {
            GatewayError::MissingModel | GatewayError::ModelNotFound(_) => Some("model"),
            GatewayError::PreviousResponseNotFound(_) => Some("previous_response_id"),
            _ => None,
        };
        crate::translate::openai_error(self.status(), &self.to_string(), param, Some(self.code()))
    }
}

/// Why an upstream exchange failed, in words a user can act on. Never holds a secret: only the
/// kind of failure is named.
pub fn cause(e: &pingora::Error) -> &'static str {
    use pingora::ErrorType::*;
    match e.etype() {
        ConnectNoRoute => "cannot resolve or route to the host",
        ConnectRefused => "connection refused",
        ConnectTimedout => "connect timed out",
        TLSHandshakeTimedout => "TLS handshake timed out",
        InvalidCert => "TLS certificate verification failed",
        TLSHandshakeFailure | HandshakeError => "TLS handshake failed",
        ConnectError | ConnectProxyFailure | SocketError => "connection failed",
        ReadTimedout => "no response in time",
        WriteTimedout => "request could not be sent in time",
        ConnectionClosed => "the upstream closed the connection",
        ReadError => "reading the response failed",
        WriteError => "sending the request failed",
        H2Error | InvalidH2 | H2Downgrade => "HTTP/2 protocol error",
        InvalidHTTPHeader => "invalid response from the upstream",
        _ => "upstream error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `ErrorType` the gateway can meet, from each side: one reading, and what follows
    /// from it (the attempt's failure, the client's error, the status for `fail_to_proxy`).
    #[test]
    fn every_error_type_is_classified_once() {
        use pingora::{Error, ErrorType::*};
        let up = |t: pingora::ErrorType| classify(&Error::new(t).into_up());
        let down = |t: pingora::ErrorType| classify(&Error::new(t).into_down());
        let unset = |t: pingora::ErrorType| classify(&Error::new(t));
        for t in [
            ConnectRefused,
            ConnectNoRoute,
            ConnectError,
            ConnectProxyFailure,
            TLSHandshakeFailure,
            InvalidCert,
            HandshakeError,
            SocketError,
            BindError,
        ] {
            assert_eq!(up(t.clone()), Class::Connect, "{t:?}");
        }
        for t in [
            ConnectTimedout,
            ReadTimedout,
            WriteTimedout,
            TLSHandshakeTimedout,
        ] {
            assert_eq!(up(t.clone()), Class::Timeout, "{t:?}");
            assert_eq!(unset(t.clone()), Class::Timeout, "{t:?}");
            assert_eq!(down(t.clone()), Class::ClientTimeout, "{t:?}");
        }
        for t in [
            ConnectionClosed,
            ReadError,
            WriteError,
            H2Error,
            InvalidH2,
            H2Downgrade,
            InvalidHTTPHeader,
            H1Error,
        ] {
            assert_eq!(up(t.clone()), Class::Protocol, "{t:?}");
        }
        for t in [ConnectionClosed, ReadError, WriteError] {
            assert_eq!(down(t.clone()), Class::ClientGone, "{t:?}");
        }
        for t in [InvalidHTTPHeader, H1Error, H2Error, AcceptError] {
            assert_eq!(down(t.clone()), Class::ClientInvalid, "{t:?}");
        }
        assert_eq!(up(HTTPStatus(503)), Class::Status(503));
        assert_eq!(unset(HTTPStatus(429)), Class::Refused(429));
        for t in [InternalError, UnknownError, FileOpenError, ConnectRefused] {
            assert_eq!(unset(t.clone()), Class::Internal, "{t:?}");
        }
        // What the client is told follows from the class.
        let told = |e: Box<Error>| GatewayError::of(&e, "p".into()).code();
        assert_eq!(
            told(Error::new(ConnectRefused).into_up()),
            "upstream_unreachable"
        );
        assert_eq!(
            told(Error::new(BindError).into_up()),
            "upstream_unreachable"
        );
        assert_eq!(told(Error::new(ReadTimedout).into_up()), "upstream_timeout");
        assert_eq!(
            told(Error::new(ConnectionClosed).into_up()),
            "upstream_error"
        );
        assert_eq!(
            told(Error::new(ReadTimedout).into_down()),
            "request_timeout"
        );
        assert_eq!(
            told(Error::new(InvalidHTTPHeader).into_down()),
            "invalid_request"
        );
        assert_eq!(told(Error::new(InternalError)), "internal_error");
    }

    #[test]
    fn the_openai_shape_has_one_writer_and_one_type_rule() {
        let v: serde_json::Value =
            serde_json::from_slice(&GatewayError::Unreadable.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let e = GatewayError::RateLimited {
            model: "m".into(),
            provider: "p".into(),
            wait: std::time::Duration::from_secs(3),
        };
        assert_eq!(e.openai()["error"]["type"], "rate_limit_error");
        assert_eq!(
            GatewayError::Internal.openai()["error"]["type"],
            "server_error"
        );
        assert_eq!(
            GatewayError::Internal.openai(),
            crate::translate::openai_error(
                500,
                "Internal gateway error",
                None,
                Some("internal_error")
            )
        );
    }

    #[test]
    fn openai_shape() {
        let e = GatewayError::ModelNotFound("gpt-\"9\"".into());
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 404);
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(
            v["error"]["message"],
            "The model `gpt-\"9\"` does not exist or is not configured on this gateway"
        );
        let v: serde_json::Value = serde_json::from_slice(
            &GatewayError::UpstreamTimeout("p".into(), "no response in time").body(),
        )
        .unwrap();
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
    }
}
