//! Everything the gateway writes itself: JSON answers with exact framing, and its errors, always
//! in the client's API (Anthropic's shape for `/v1/messages`, OpenAI's otherwise): as a whole
//! response while nothing was sent, as a final stream event once a stream has begun.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::error::GatewayError;
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

/// Ends a stream that broke off with `error` as its last event, in the client's API. The event
/// starts on an event boundary: when the upstream's last event was cut short, a blank line
/// first ends what the client already has of it.
pub async fn stream_error(
    session: &mut Session,
    error: &GatewayError,
    api: Option<Api>,
    mid_event: bool,
) -> Result<()> {
    let mut text = String::new();
    if mid_event {
        text.push_str("\n\n");
    }
    let message = error.to_string();
    text.push_str(&if api.is_some_and(Api::anthropic) {
        translate::sse::named("error", &translate::anthropic_error(error.status(), &message))
    } else {
        translate::sse::data(&serde_json::json!({
            "error": {"message": message, "type": "server_error", "param": null, "code": error.code()}
        }))
    });
    session
        .write_response_body(Some(Bytes::from(text)), false)
        .await
}
