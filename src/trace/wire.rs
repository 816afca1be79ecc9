//! OTLP's protobuf messages for traces, written straight into bytes as a request ends.
//!
//! Building the generated message types first (a `String` for every attribute key, a vector
//! per span, then a length pass and a copy) cost more than the rest of tracing together, on the
//! request's own core: measured with `bench/tracing`, 100 % sampling took a third of the
//! throughput that way. Here a request's spans are encoded once, with `&'static str` keys and
//! lengths computed up front; the exporter only puts the envelope around them. The field
//! numbers are those of opentelemetry-proto's `trace.proto`, `common.proto`, `resource.proto`
//! and `trace_service.proto`; the tests decode what is written with the generated types.

use super::context::{SpanId, TraceId};

/// Encoded spans, each a `ScopeSpans.spans` field, ready to be put in an export.
#[derive(Debug, Default, Clone)]
pub struct Spans {
    pub bytes: Vec<u8>,
    pub count: usize,
}

impl Spans {
    pub fn with_capacity(bytes: usize) -> Spans {
        Spans {
            bytes: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    pub fn append(&mut self, other: Spans) {
        self.bytes.extend_from_slice(&other.bytes);
        self.count += other.count;
    }
}

/// A span's kind (`Span.SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// A span's own fields; its attributes come apart, already encoded.
pub struct Span<'a> {
    pub trace_id: &'a TraceId,
    pub span_id: &'a SpanId,
    pub parent: Option<&'a SpanId>,
    pub flags: u32,
    /// The name, in parts (written one after the other, without a separator).
    pub name: &'a [&'a str],
    pub kind: Kind,
    pub start: u64,
    pub end: u64,
    /// An Error status with this message.
    pub error: Option<&'a str>,
}

/// A span's attributes (`Span.attributes`), encoded as they are added.
#[derive(Debug, Default, Clone)]
pub struct Attributes {
    buf: Vec<u8>,
}

const LEN: u8 = 2;
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const FIXED32: u8 = 5;

impl Attributes {
    /// Room for about `bytes` of attributes (a short attribute takes about 40).
    pub fn with_capacity(bytes: usize) -> Attributes {
        Attributes {
            buf: Vec::with_capacity(bytes),
        }
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key_value(1, key, value.len(), |b| {
            b.extend_from_slice(value.as_bytes())
        });
    }

    /// A string made of `parts`, without building it first.
    pub fn concat(&mut self, key: &str, parts: &[&str]) {
        let len = parts.iter().map(|p| p.len()).sum();
        self.key_value(1, key, len, |b| {
            for p in parts {
                b.extend_from_slice(p.as_bytes());
            }
        });
    }

    pub fn int(&mut self, key: &str, value: i64) {
        // AnyValue.int_value: a varint field, not length-delimited.
        let v = value as u64;
        let any = 1 + varint_len(v);
        self.pair(key, any, |b| {
            tag(b, 3, VARINT);
            varint(b, v);
        });
    }

    pub fn float(&mut self, key: &str, value: f64) {
        self.pair(key, 9, |b| {
            tag(b, 4, FIXED64);
            b.extend_from_slice(&value.to_le_bytes());
        });
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.pair(key, 2, |b| {
            tag(b, 2, VARINT);
            b.push(u8::from(value));
        });
    }

    /// A list of strings (`AnyValue.array_value`).
    pub fn strs(&mut self, key: &str, values: &[String]) {
        let item = |s: &String| 1 + varint_len(s.len() as u64) + s.len();
        let array: usize = values
            .iter()
            .map(|s| 1 + varint_len(item(s) as u64) + item(s))
            .sum();
        self.key_value(5, key, array, |b| {
            for s in values {
                tag(b, 1, LEN);
                varint(b, item(s) as u64);
                tag(b, 1, LEN);
                varint(b, s.len() as u64);
                b.extend_from_slice(s.as_bytes());
            }
        });
    }

    /// Appends another set's attributes.
    pub fn extend(&mut self, other: &Attributes) {
        self.buf.extend_from_slice(&other.buf);
    }

    /// A `KeyValue` whose value is the length-delimited `AnyValue` field `field` of `len` bytes.
    fn key_value(&mut self, field: u32, key: &str, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let any = 1 + varint_len(len as u64) + len;
        self.pair(key, any, |b| {
            tag(b, field, LEN);
            varint(b, len as u64);
            write(b);
        });
    }

    /// A `KeyValue` (`Span.attributes`, field 9) whose `AnyValue` is `any` bytes long.
    fn pair(&mut self, key: &str, any: usize, write_any: impl FnOnce(&mut Vec<u8>)) {
        let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
        let b = &mut self.buf;
        tag(b, 9, LEN);
        varint(b, kv as u64);
        tag(b, 1, LEN);
        varint(b, key.len() as u64);
        b.extend_from_slice(key.as_bytes());
        tag(b, 2, LEN);
        varint(b, any as u64);
        write_any(b);
    }
}

impl Spans {
    /// Adds span `s` with `attributes`.
    pub fn push(&mut self, s: &Span<'_>, attributes: &Attributes) {
        let status = s.error.map(|m| {
            let message = 1 + varint_len(m.len() as u64) + m.len();
            (message, message + 2)
        });
        let mut len = (2 + 16) + (2 + 8) + s.parent.map_or(0, |_| 2 + 8);
        len += 2 + 4; // flags: field 16, fixed32
        let name: usize = s.name.iter().map(|p| p.len()).sum();
        len += 1 + varint_len(name as u64) + name;
        len += 2 + 9 + 9; // kind, start, end
        len += attributes.buf.len();
        if let Some((_, status_len)) = status {
            len += 1 + varint_len(status_len as u64) + status_len;
        }
        let b = &mut self.bytes;
        b.reserve(len + 4);
        tag(b, 2, LEN); // ScopeSpans.spans
        varint(b, len as u64);
        bytes_field(b, 1, s.trace_id);
        bytes_field(b, 2, s.span_id);
        if let Some(parent) = s.parent {
            bytes_field(b, 4, parent);
        }
        tag(b, 5, LEN);
        varint(b, name as u64);
        for part in s.name {
            b.extend_from_slice(part.as_bytes());
        }
        tag(b, 6, VARINT);
        varint(b, s.kind as u64);
        tag(b, 7, FIXED64);
        b.extend_from_slice(&s.start.to_le_bytes());
        tag(b, 8, FIXED64);
        b.extend_from_slice(&s.end.to_le_bytes());
        b.extend_from_slice(&attributes.buf);
        if let (Some(m), Some((_, status_len))) = (s.error, status) {
            tag(b, 15, LEN);
            varint(b, status_len as u64);
            bytes_field(b, 2, m.as_bytes());
            tag(b, 3, VARINT);
            varint(b, 2); // STATUS_CODE_ERROR
        }
        tag(b, 16, FIXED32);
        b.extend_from_slice(&s.flags.to_le_bytes());
        self.count += 1;
    }
}

/// One `ExportTraceServiceRequest` of the spans in `parts`, from a resource with `resource`
/// attributes and the `switchyard` instrumentation scope; with `grpc`, in gRPC's frame (a
/// flag byte and the length, before the message).
pub fn export_request(resource: &[(String, String)], parts: &[Spans], grpc: bool) -> Vec<u8> {
    let mut attributes = Attributes::default();
    for (k, v) in resource {
        attributes.str(k, v);
    }
    // Resource.attributes is field 1, where a span's are field 9: same KeyValues, other tag.
    let mut resource = Vec::with_capacity(attributes.buf.len());
    retag(&attributes.buf, 1, &mut resource);
    let mut scope = Vec::new();
    bytes_field(&mut scope, 1, b"switchyard");
    bytes_field(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let spans: usize = parts.iter().map(|p| p.bytes.len()).sum();
    let scope_spans = field_len(&scope) + spans;
    let resource_spans = field_len(&resource) + 1 + varint_len(scope_spans as u64) + scope_spans;
    let message = 1 + varint_len(resource_spans as u64) + resource_spans;
    let mut out = Vec::with_capacity(message + 5);
    if grpc {
        out.push(0);
        out.extend_from_slice(&(message as u32).to_be_bytes());
    }
    tag(&mut out, 1, LEN);
    varint(&mut out, resource_spans as u64);
    bytes_field(&mut out, 1, &resource);
    tag(&mut out, 2, LEN);
    varint(&mut out, scope_spans as u64);
    bytes_field(&mut out, 1, &scope);
    for p in parts {
        out.extend_from_slice(&p.bytes);
    }
    out
}

/// Copies length-delimited fields of `from`, each under field number `to`.
fn retag(mut from: &[u8], field: u32, out: &mut Vec<u8>) {
    while let Some((len, rest)) = skip_key(from).and_then(read_varint) {
        let Some(body) = rest.get(..len as usize) else {
            return;
        };
        bytes_field(out, field, body);
        from = &rest[len as usize..];
    }
}

/// The bytes after a field's key (a varint).
fn skip_key(b: &[u8]) -> Option<&[u8]> {
    read_varint(b).map(|(_, rest)| rest)
}

fn read_varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

fn field_len(body: &[u8]) -> usize {
    1 + varint_len(body.len() as u64) + body.len()
}

fn bytes_field(b: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(b, field, LEN);
    varint(b, bytes.len() as u64);
    b.extend_from_slice(bytes);
}

fn tag(b: &mut Vec<u8>, field: u32, wire: u8) {
    varint(b, u64::from(field << 3 | u32::from(wire)));
}

fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;

    #[test]
    fn what_is_written_decodes_as_otlp() {
        let mut attributes = Attributes::default();
        attributes.str("http.route", "/v1/chat/completions");
        attributes.int("http.response.status_code", 503);
        attributes.int("negative", -7);
        attributes.float("gen_ai.response.time_to_first_chunk", 0.25);
        attributes.bool("llm.is_streaming", true);
        attributes.concat("llm.model", &["openai", "/", "gpt-4o"]);
        attributes.strs(
            "gen_ai.response.finish_reasons",
            &["stop".into(), "length".into()],
        );
        let long = "k".repeat(300);
        attributes.str(&long, &"v".repeat(200));
        let mut spans = Spans::default();
        let (trace_id, span_id, parent) = ([7u8; 16], [8u8; 8], [9u8; 8]);
        spans.push(
            &Span {
                trace_id: &trace_id,
                span_id: &span_id,
                parent: Some(&parent),
                flags: 0x301,
                name: &["POST ", "/v1/chat/completions"],
                kind: Kind::Server,
                start: 1_700_000_000_000_000_000,
                end: 1_700_000_000_500_000_000,
                error: Some("503"),
            },
            &attributes,
        );
        spans.push(
            &Span {
                trace_id: &trace_id,
                span_id: &parent,
                parent: None,
                flags: 1,
                name: &[],
                kind: Kind::Internal,
                start: 1,
                end: 2,
                error: None,
            },
            &Attributes::default(),
        );
        let resource = [("service.name".to_owned(), "switchyard".to_owned())];
        let bytes = export_request(&resource, &[spans.clone(), Spans::default()], false);
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let framed = export_request(&resource, &[spans], true);
        assert_eq!(framed[0], 0);
        assert_eq!(
            u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(&framed[5..], &bytes[..]);
        let rs = &request.resource_spans[0];
        let attr = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(attr.key, "service.name");
        let scope = &rs.scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "switchyard");
        assert_eq!(scope.spans.len(), 2);
        let s = &scope.spans[0];
        assert_eq!(
            (s.trace_id.as_slice(), s.span_id.as_slice()),
            (&trace_id[..], &span_id[..])
        );
        assert_eq!(s.parent_span_id, parent);
        assert_eq!(
            (s.flags, s.kind, s.name.as_str()),
            (0x301, 2, "POST /v1/chat/completions")
        );
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_700_000_000_000_000_000, 1_700_000_000_500_000_000)
        );
        let status = s.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "503"));
        let values: Vec<(String, Option<Value>)> = s
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
            .collect();
        assert_eq!(
            values[0],
            (
                "http.route".into(),
                Some(Value::StringValue("/v1/chat/completions".into()))
            )
        );
        assert_eq!(values[1].1, Some(Value::IntValue(503)));
        assert_eq!(values[2].1, Some(Value::IntValue(-7)));
        assert_eq!(values[3].1, Some(Value::DoubleValue(0.25)));
        assert_eq!(values[4].1, Some(Value::BoolValue(true)));
        assert_eq!(
            values[5].1,
            Some(Value::StringValue("openai/gpt-4o".into()))
        );
        let Some(Value::ArrayValue(list)) = &values[6].1 else {
            panic!("not an array: {:?}", values[6]);
        };
        assert_eq!(list.values.len(), 2);
        assert_eq!(values[7].0, long);
        let second = &scope.spans[1];
        assert!(second.parent_span_id.is_empty() && second.status.is_none());
        assert_eq!(second.kind, 1);
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            assert_eq!(read_varint(&b).map(|(x, _)| x), Some(v));
        }
    }
}
