//! Errors the gateway answers itself, each with its HTTP status and an OpenAI-shaped JSON body:
//! `{"error": {"message", "type", "param", "code"}}`.

use bytes::Bytes;
use serde_json::json;

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
    /// The model and its provider prefix (`amazon_bedrock`, `chatgpt`).
    #[error("The model `{0}` is served by provider `{1}`, which switchyard does not support yet")]
    ProviderNotSupported(String, String),
    #[error("The request body was not received in time")]
    ClientTimeout,
    #[error("The request could not be read")]
    Unreadable,
    #[error("Internal gateway error")]
    Internal,
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

impl GatewayError {
    /// What the client is told when the request to `provider` failed with `e`.
    pub fn upstream(e: &pingora::Error, provider: String) -> GatewayError {
        use pingora::ErrorType::*;
        let why = cause(e);
        match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                GatewayError::UpstreamTimeout(provider, why)
            }
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
            | TLSHandshakeFailure | InvalidCert | HandshakeError | SocketError => {
                GatewayError::UpstreamUnreachable(provider, why)
            }
            _ => GatewayError::UpstreamFailed(provider, why),
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
            GatewayError::ProviderNotSupported(..) => 501,
            GatewayError::RateLimited { .. } => 429,
            GatewayError::ClientTimeout => 408,
            GatewayError::Unreadable => 400,
            GatewayError::Internal => 500,
        }
    }

    /// OpenAI's `error.type`.
    fn kind(&self) -> &'static str {
        match self.status() {
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
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
            GatewayError::ProviderNotSupported(..) => "provider_not_supported",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::ClientTimeout => "request_timeout",
            GatewayError::Unreadable => "invalid_request",
            GatewayError::Internal => "internal_error",
        }
    }

    /// How long the client should wait before trying again, if the error says.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            GatewayError::RateLimited { wait, .. } => Some(*wait),
            _ => None,
        }
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
        let param = match self {
            GatewayError::MissingModel | GatewayError::ModelNotFound(_) => Some("model"),
            _ => None,
        };
        let body = json!({
            "error": {
                "message": self.to_string(),
                "type": self.kind(),
                "param": param,
                "code": self.code(),
            }
        });
        Bytes::from(body.to_string())
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
