//! The conversation a request says it belongs to: `x-model-affinity`, Plano's session id. It
//! pins the conversation's endpoint (endpoints) and its preference-routing decision
//! (router::recall).

use pingora::http::RequestHeader;

/// The header that names a conversation.
pub const AFFINITY: http::HeaderName = http::HeaderName::from_static("x-model-affinity");

/// A request's `x-model-affinity`, trimmed; empty is none.
pub fn affinity(req: &RequestHeader) -> Option<&str> {
    let id = req.headers.get(AFFINITY)?.to_str().ok()?.trim();
    (!id.is_empty()).then_some(id)
}
