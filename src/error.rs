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
    #[error("Could not connect to provider `{0}`")]
    UpstreamUnreachable(String),
    #[error("Provider `{0}` did not answer in time")]
    UpstreamTimeout(String),
    #[error("The request to provider `{0}` failed")]
    UpstreamFailed(String),
    #[error("{0}")]
    NotSupported(String),
    #[error("The request body was not received in time")]
    ClientTimeout,
    #[error("The request could not be read")]
    Unreadable,
    #[error("Internal gateway error")]
    Internal,
    /// Every endpoint is parked or ejected; the second field is how long until one is back.
    #[error("No endpoint of `{0}` is available right now")]
    NoEndpoint(String, std::time::Duration),
}

impl GatewayError {
    /// What the client is told when the request to `provider` failed with `e`.
    pub fn upstream(e: &pingora::Error, provider: String) -> GatewayError {
        use pingora::ErrorType::*;
        match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                GatewayError::UpstreamTimeout(provider)
            }
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
            | TLSHandshakeFailure | InvalidCert | HandshakeError | SocketError => {
                GatewayError::UpstreamUnreachable(provider)
            }
            _ => GatewayError::UpstreamFailed(provider),
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
            GatewayError::UpstreamUnreachable(_) => 502,
            GatewayError::UpstreamTimeout(_) => 504,
            GatewayError::UpstreamFailed(_) => 502,
            GatewayError::NotSupported(_) => 400,
            GatewayError::NoEndpoint(..) => 503,
            GatewayError::ClientTimeout => 408,
            GatewayError::Unreadable => 400,
            GatewayError::Internal => 500,
        }
    }

    /// OpenAI's `error.type`.
    fn kind(&self) -> &'static str {
        match self.status() {
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
            GatewayError::UpstreamUnreachable(_) => "upstream_unreachable",
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::UpstreamFailed(_) => "upstream_error",
            GatewayError::NotSupported(_) => "unsupported_for_provider",
            GatewayError::NoEndpoint(..) => "no_endpoint_available",
            GatewayError::ClientTimeout => "request_timeout",
            GatewayError::Unreadable => "invalid_request",
            GatewayError::Internal => "internal_error",
        }
    }

    /// How long the client should wait before trying again, if the error says.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            GatewayError::NoEndpoint(_, wait) => Some(*wait),
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
        let v: serde_json::Value =
            serde_json::from_slice(&GatewayError::UpstreamTimeout("p".into()).body()).unwrap();
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
    }
}
