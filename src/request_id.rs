//! `x-request-id`: kept from the client when it is sane, otherwise generated; sent upstream and
//! returned to the client.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use pingora::http::RequestHeader;

pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Longest client-supplied id that is kept.
const MAX_LEN: usize = 128;

/// 64 random bits per process (from the OS, through std's hash seed) and a counter: unique
/// within the process and, with overwhelming likelihood, across processes.
static SEED: LazyLock<u64> = LazyLock::new(|| {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
});
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The request's id: the client's `x-request-id` if it is short printable ASCII, else a new one.
pub fn for_request(req: &RequestHeader) -> String {
    req.headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(generate, str::to_owned)
}

/// A new 32-hex-digit id.
pub fn generate() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:016x}",
        *SEED,
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        if let Some(id) = id {
            r.insert_header(HEADER, id).unwrap();
        }
        r
    }

    #[test]
    fn keeps_a_sane_client_id() {
        assert_eq!(for_request(&req(Some("abc-123"))), "abc-123");
    }

    #[test]
    fn replaces_missing_or_odd_ids() {
        for id in [
            None,
            Some(""),
            Some("has space"),
            Some(&"x".repeat(200)[..]),
        ] {
            let got = for_request(&req(id));
            assert_eq!(got.len(), 32);
            assert!(got.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(generate(), generate());
    }
}
