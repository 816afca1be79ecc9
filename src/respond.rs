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
    json_with(session, status, body, request_id, None).await
}

async fn json_with(
    session: &mut Session,
    status: u16,
    body: Bytes,
    request_id: &str,
    retry_after: Option<std::time::Duration>,
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(5))?;
    if let Some(wait) = retry_after {
        header.insert_header(
            "retry-after",
            wait.as_secs_f64().ceil().max(1.0).to_string(),
        )?;
    }
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
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
