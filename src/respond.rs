//! Responses the gateway writes itself: JSON bodies with exact framing.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::error::GatewayError;
use crate::request_id;

/// Writes a complete JSON response.
pub async fn json(session: &mut Session, status: u16, body: Bytes, request_id: &str) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header(request_id::HEADER, request_id)?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// Writes `error` in OpenAI's error shape. After a 413 the unread body makes the connection
/// useless, so it is closed.
pub async fn error(session: &mut Session, error: &GatewayError, request_id: &str) -> Result<()> {
    if let GatewayError::BodyTooLarge { .. } = error {
        session.set_keepalive(None);
    }
    json(session, error.status(), error.body(), request_id).await
}
