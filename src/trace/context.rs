//! W3C Trace Context: the `traceparent` a client sends and the one each upstream attempt gets,
//! and the ids of new traces and spans. Only version `00`'s fields are read; a later version's
//! are read the same way, as the recommendation asks.

use rand::Rng;

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A valid `traceparent`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// A `traceparent` value, if valid: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, neither id all
/// zeros; a version above `00` may carry more after a `-`; version `ff` is invalid.
pub fn parse(value: &[u8]) -> Option<Parent> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = hex::<1>(&value[..2])?[0];
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    if value.len() > 55 && value[55] != b'-' {
        return None;
    }
    let trace_id = hex::<16>(&value[3..35])?;
    let span_id = hex::<8>(&value[36..52])?;
    let flags = hex::<1>(&value[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Lowercase hex to `N` bytes (uppercase is invalid in a `traceparent`).
fn hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The `traceparent` of a sampled span.
pub fn traceparent(trace_id: &TraceId, span_id: &SpanId) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, trace_id);
    out.push('-');
    push_hex(&mut out, span_id);
    out.push_str("-01");
    out
}

pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// A new trace id (random, never all zeros).
pub fn new_trace_id() -> TraceId {
    let mut rng = rand::thread_rng();
    loop {
        let id: TraceId = rng.gen();
        if id != [0; 16] {
            return id;
        }
    }
}

/// A new span id (random, never all zeros).
pub fn new_span_id() -> SpanId {
    let mut rng = rand::thread_rng();
    loop {
        let id: SpanId = rng.gen();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Whether a new trace is kept at `percent`: OpenTelemetry's trace-id ratio test on the id's
/// last 8 bytes, so every service that tests the same id at the same ratio agrees.
pub fn kept(trace_id: &TraceId, percent: u8) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u128::from(u64::from_be_bytes(low) >> 1);
    x < (1u128 << 63) * u128::from(percent.min(100)) / 100
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn w3c_traceparents() {
        let p = parse(VALID.as_bytes()).unwrap();
        assert!(p.sampled);
        assert_eq!(p.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(traceparent(&p.trace_id, &p.span_id), VALID);
        let unsampled = VALID.replace("-01", "-00");
        assert!(!parse(unsampled.as_bytes()).unwrap().sampled);
        // Other flags are kept apart from the sampled bit.
        assert!(
            parse(VALID.replace("-01", "-03").as_bytes())
                .unwrap()
                .sampled
        );
        assert!(
            !parse(VALID.replace("-01", "-02").as_bytes())
                .unwrap()
                .sampled
        );
        // A later version may carry more fields.
        let later = format!("{}-extra", VALID.replacen("00-", "cc-", 1));
        assert!(parse(later.as_bytes()).is_some());
        for bad in [
            VALID.to_uppercase(),
            VALID.replacen("00-", "ff-", 1),
            format!("{VALID}-extra"),
            VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            VALID.replace("00f067aa0ba902b7", &"0".repeat(16)),
            VALID.replace("-00f0", "_00f0"),
            VALID[..54].to_owned(),
            VALID.replace('a', "g"),
            String::new(),
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn new_ids_are_never_zero_and_differ() {
        assert_ne!(new_trace_id(), new_trace_id());
        assert_ne!(new_span_id(), [0; 8]);
    }

    #[test]
    fn the_ratio_test_keeps_the_percent_asked() {
        let ids: Vec<TraceId> = (0..10_000).map(|_| new_trace_id()).collect();
        let share = |p| ids.iter().filter(|id| kept(id, p)).count();
        assert_eq!(share(0), 0);
        assert_eq!(share(100), ids.len());
        let half = share(50);
        assert!((4_500..5_500).contains(&half), "{half}");
        let mut low = [0u8; 16];
        low[8..].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(kept(&low, 100) && !kept(&low, 99));
    }
}
