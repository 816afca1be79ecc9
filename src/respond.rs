//! Everything the gateway writes itself: JSON answers with exact framing, and its errors, always
//! in the client's API (Anthropic's shape for `/v1/messages`, OpenAI's otherwise): as a whole
//! response while nothing was sent, as a final stream event once a stream has begun.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, Result};

use crate::error::{classify, Class, GatewayError};
use crate::exchange::Exchange;
use crate::request_id;
use crate::translate::{self, Api};

/// Writes a complete JSON response.
pub async fn json(session: &mut Session, status: u16, body: Bytes, request_id: &str) -> Result<()> {
    json_with(session, status, body, request_id, None, Vec::new()).await
}

async fn json_with(
    session: &mut Session,
    status: u16,
    body: Bytes,
    request_id: &str,
    retry_after: Option<std::time::Duration>,
    extra: Vec<(&'static str, String)>,
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(5))?;
    if let Some(wait) = retry_after {
        header.insert_header(
            "retry-after",
            wait.as_secs_f64().ceil().max(1.0).to_string(),
        )?;
    }
    for (name, value) in extra {
        header.insert_header(name, value)?;
    }
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header(request_id::HEADER, request_id)?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// Writes `error` as the whole response, in the shape of the client's API (OpenAI's unless
/// `api` is Messages). After a 413 the unread body makes the connection useless, so it is
/// closed.
pub async fn error(
    session: &mut Session,
    error: &GatewayError,
    api: Option<Api>,
    request_id: &str,
) -> Result<()> {
    if let GatewayError::BodyTooLarge { .. } = error {
        session.set_keepalive(None);
    }
    json_with(
        session,
        error.status(),
        error.body_for(api),
        request_id,
        error.retry_after(),
        error.headers(api),
    )
    .await
}

/// Ends a stream that broke off with `error` as its last event, in the client's API. Streams
/// reach the client in whole events (exchange), so this one starts on an event boundary.
pub async fn stream_error(
    session: &mut Session,
    error: &GatewayError,
    api: Option<Api>,
) -> Result<()> {
    let text = if api.is_some_and(Api::anthropic) {
        let message = error.to_string();
        translate::sse::named(
            "error",
            &translate::anthropic_error(error.status(), &message),
        )
    } else {
        translate::sse::data(&error.openai())
    };
    session
        .write_response_body(Some(Bytes::from(text)), false)
        .await
}

/// Answers a request that failed with `e` (Pingora's `fail_to_proxy`): the gateway's own error
/// if the exchange has one, else what `e` says, as a whole response while nothing was sent, or
/// as a final stream event (the connection then closes without a clean end). Nothing when the
/// client is gone, or when the error was already written.
pub async fn failure(
    session: &mut Session,
    e: &Error,
    exchange: Option<&mut Exchange>,
    api: Option<Api>,
    request_id: &str,
) -> FailToProxy {
    let (error, code) = match exchange {
        Some(x) => {
            let Some(error) = x.error_to_write(e) else {
                return FailToProxy {
                    error_code: status_for(e, None),
                    can_reuse_downstream: false,
                };
            };
            let code = status_for(e, Some(&error));
            if session.response_written().is_some() {
                if x.is_stream() && code != 0 {
                    // Streams pass in whole events (exchange): this one starts on a boundary.
                    let _ = stream_error(session, &error, api).await;
                }
                return FailToProxy {
                    error_code: code,
                    can_reuse_downstream: false,
                };
            }
            (Some(error), code)
        }
        None => {
            let error = GatewayError::of(e, String::new());
            let code = status_for(e, Some(&error));
            (Some(error), code)
        }
    };
    let mut reuse = false;
    if let Some(error) = error.filter(|_| code != 0 && session.response_written().is_none()) {
        reuse =
            self::error(session, &error, api, request_id).await.is_ok() && session.is_body_done();
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: reuse,
    }
}

/// The status for an error that reached `fail_to_proxy`; 0 when the client is gone.
fn status_for(e: &Error, error: Option<&GatewayError>) -> u16 {
    match classify(e) {
        Class::ClientGone => 0,
        _ => error.map_or(502, GatewayError::status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::ErrorType;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A downstream session over an in-memory connection, its request head already read, and
    /// the client's end of the connection.
    async fn session(path: &str) -> (Session, tokio::io::DuplexStream) {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client
            .write_all(
                format!("POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-length: 0\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut session = Session::new_h1(Box::new(server));
        assert!(session.read_request().await.unwrap());
        (session, client)
    }

    /// What the client received, once the session is done with the connection.
    async fn received(session: Session, mut client: tokio::io::DuplexStream) -> String {
        drop(session);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    fn body(response: &str) -> serde_json::Value {
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_failure_with_no_exchange_is_answered_in_the_clients_api() {
        // An upstream that refused the connection: 502 in OpenAI's shape for a chat client.
        let (mut s, client) = session("/v1/chat/completions").await;
        let e = Error::new(ErrorType::ConnectRefused).into_up();
        let done = failure(&mut s, &e, None, Some(Api::Chat), "rid-1").await;
        assert_eq!(done.error_code, 502);
        let text = received(s, client).await;
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("x-request-id: rid-1"),
            "{text}"
        );
        let v = body(&text);
        assert_eq!(v["error"]["code"], "upstream_unreachable");
        assert_eq!(v["error"]["type"], "server_error");

        // A timeout, for a Messages client: 504 in Anthropic's shape.
        let (mut s, client) = session("/v1/messages").await;
        let e = Error::new(ErrorType::ReadTimedout).into_up();
        let done = failure(&mut s, &e, None, Some(Api::Messages), "rid-2").await;
        assert_eq!(done.error_code, 504);
        let v = body(&received(s, client).await);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "api_error");
    }

    #[tokio::test]
    async fn a_client_that_is_gone_gets_nothing() {
        let (mut s, client) = session("/v1/chat/completions").await;
        let e = Error::new(ErrorType::ConnectionClosed).into_down();
        let done = failure(&mut s, &e, None, Some(Api::Chat), "rid").await;
        assert_eq!(done.error_code, 0);
        assert!(!done.can_reuse_downstream);
        assert_eq!(received(s, client).await, "");
    }

    #[tokio::test]
    async fn a_gateway_error_carries_its_retry_after_and_shape() {
        let (mut s, client) = session("/v1/chat/completions").await;
        let e = GatewayError::RateLimited {
            model: "openai/gpt-4o".into(),
            provider: "openai".into(),
            wait: std::time::Duration::from_millis(2_100),
        };
        error(&mut s, &e, Some(Api::Chat), "rid").await.unwrap();
        let text = received(s, client).await;
        assert!(text.starts_with("HTTP/1.1 429"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 3"),
            "{text}"
        );
        assert_eq!(body(&text)["error"]["code"], "rate_limit_exceeded");
    }
}
