//! Responses the gateway writes itself: JSON bodies with exact framing.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::error::GatewayError;
use crate::request_id;
use crate::translate::Api;

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

/// A 503 with a `retry-after`: no endpoint takes requests until then.
pub async fn unavailable(
    session: &mut Session,
    error: &GatewayError,
    api: Option<Api>,
    request_id: &str,
    wait: std::time::Duration,
) -> Result<()> {
    json_with(
        session,
        error.status(),
        error.body_for(api),
        request_id,
        Some(wait),
    )
    .await
}

/// After a 413 the unread body makes the connection useless, so it is closed.
/// Writes `error` in the shape of the client's API (OpenAI's unless `api` is Messages).
pub async fn error(
    session: &mut Session,
    error: &GatewayError,
    api: Option<Api>,
    request_id: &str,
) -> Result<()> {
    if let GatewayError::BodyTooLarge { .. } = error {
        session.set_keepalive(None);
    }
    json(session, error.status(), error.body_for(api), request_id).await
}
