//! Reading the client's JSON body: find `model` (and `stream`) and rewrite `model` in place.
//!
//! The body is validated by one borrowing parse that only records where the top-level `model`
//! value sits. Rewriting splices the new value into those bytes; every other byte of the client's
//! JSON (unknown fields, key order, whitespace, number formatting) reaches the upstream unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::Range;

/// What the gateway needs to know about a request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspected {
    /// The requested model, if the body names one.
    pub model: Option<String>,
    /// Byte range of the `model` value (including its quotes) in the body.
    model_span: Option<Range<usize>>,
    /// Whether the client asked for a streamed (SSE) response.
    pub stream: bool,
    /// The body's `user` (end-user id), if it is a string.
    pub user: Option<String>,
    /// A Responses request's `previous_response_id`, if it is a string.
    pub previous_response: Option<String>,
}

#[derive(Deserialize)]
struct Probe<'a> {
    // Not plain `Option`: that would read `"model": null` as absent and lose where it is.
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    previous_response_id: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Validates `body` as a JSON object and locates its `model`.
pub fn inspect(body: &[u8]) -> Result<Inspected, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the request body is empty; expected a JSON object".into());
    }
    // Checked first: serde would also accept an array for a struct.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the request body must be a JSON object".into());
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    let (model, model_span) = match probe.model {
        None => (None, None),
        Some(raw) => {
            // `"model": null` counts as absent, but its bytes are still the ones to replace.
            let model: Option<String> = serde_json::from_str(raw.get())
                .map_err(|_| "`model` must be a string".to_owned())?;
            // `raw` borrows from `body`; its offset is where the value starts.
            let start = (raw.get().as_ptr() as usize)
                .checked_sub(body.as_ptr() as usize)
                .filter(|start| start + raw.get().len() <= body.len())
                .ok_or("could not locate `model` in the body")?;
            (model, Some(start..start + raw.get().len()))
        }
    };
    Ok(Inspected {
        model,
        model_span,
        stream: probe.stream.is_some_and(|s| s.get() == "true"),
        user: probe.user.and_then(|u| serde_json::from_str(u.get()).ok()),
        previous_response: probe
            .previous_response_id
            .and_then(|u| serde_json::from_str(u.get()).ok()),
    })
}

/// Returns `body` with its top-level `model` set to `model`: replaced where it was, or inserted
/// as the first member when the body had none. A request without a body (a `GET`) stays so.
pub fn with_model(body: &[u8], inspected: &Inspected, model: &str) -> Bytes {
    if body.is_empty() {
        return Bytes::new();
    }
    let value = serde_json::Value::String(model.to_owned()).to_string();
    let mut out = BytesMut::with_capacity(body.len() + value.len() + 10);
    match &inspected.model_span {
        Some(span) => {
            out.put_slice(&body[..span.start]);
            out.put_slice(value.as_bytes());
            out.put_slice(&body[span.end..]);
        }
        None => {
            // `inspect` guarantees an object, so the first non-blank byte is `{`.
            let open = body.iter().position(|b| *b == b'{').unwrap_or(0);
            let rest = &body[open + 1..];
            let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
            out.put_slice(&body[..=open]);
            out.put_slice(b"\"model\":");
            out.put_slice(value.as_bytes());
            if !empty {
                out.put_u8(b',');
            }
            out.put_slice(rest);
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(body: &str, model: &str) -> String {
        let inspected = inspect(body.as_bytes()).unwrap();
        String::from_utf8(with_model(body.as_bytes(), &inspected, model).to_vec()).unwrap()
    }

    #[test]
    fn finds_model_and_stream() {
        let i = inspect(br#"{"stream": true, "model": "openai/gpt-4o", "x": [1]}"#).unwrap();
        assert_eq!(i.model.as_deref(), Some("openai/gpt-4o"));
        assert!(i.stream);
        let i = inspect(br#"{"messages": []}"#).unwrap();
        assert_eq!(i.model, None);
        assert!(!i.stream);
    }

    #[test]
    fn rewrites_only_the_model_bytes() {
        let body = "{\n  \"model\" : \"openai/gpt-4o\",\n  \"temperature\": 1.50,\n  \"x_vendor\": {\"a\": null}\n}";
        assert_eq!(
            rewrite(body, "gpt-4o"),
            "{\n  \"model\" : \"gpt-4o\",\n  \"temperature\": 1.50,\n  \"x_vendor\": {\"a\": null}\n}"
        );
    }

    #[test]
    fn escapes_are_decoded_and_encoded() {
        let i = inspect(br#"{"model":"a\/b\u0041"}"#).unwrap();
        assert_eq!(i.model.as_deref(), Some("a/bA"));
        assert_eq!(
            rewrite(r#"{"model":"x"}"#, "q\"uote"),
            r#"{"model":"q\"uote"}"#
        );
    }

    #[test]
    fn nested_model_keys_are_not_touched() {
        let body = r#"{"tools":[{"model":"inner"}],"model":"outer"}"#;
        assert_eq!(
            rewrite(body, "id"),
            r#"{"tools":[{"model":"inner"}],"model":"id"}"#
        );
    }

    #[test]
    fn inserts_a_model_when_missing() {
        assert_eq!(
            rewrite(r#"{"messages":[]}"#, "m"),
            r#"{"model":"m","messages":[]}"#
        );
        assert_eq!(rewrite(" { } ", "m"), r#" {"model":"m" } "#);
        assert_eq!(inspect(br#"{"model":null}"#).unwrap().model, None);
        assert_eq!(
            rewrite(r#"{"model":null,"a":1}"#, "m"),
            r#"{"model":"m","a":1}"#
        );
    }

    #[test]
    fn rejects_what_is_not_a_json_object() {
        assert!(inspect(b"").unwrap_err().contains("empty"));
        assert!(inspect(b"[1,2]").unwrap_err().contains("JSON object"));
        assert!(inspect(b"{\"model\": \"x\"")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(inspect(b"{\"model\": 42}")
            .unwrap_err()
            .contains("must be a string"));
        assert!(inspect(b"{\"model\":\"a\",\"model\":\"b\"}").is_err());
        assert!(inspect(b"{} trailing").is_err());
        assert!(inspect(b"\xff\xfe").is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        fn object() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::from),
                "\\PC{0,10}".prop_map(Value::from),
            ];
            let value = leaf.prop_recursive(3, 24, 4, |inner| {
                prop::collection::vec(inner, 0..4).prop_map(Value::Array)
            });
            prop::collection::btree_map(
                prop_oneof!["model", "stream", "user", "messages", "[a-z]{1,6}"],
                value,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect()))
        }

        proptest! {
            #[test]
            fn any_bytes_are_inspected_without_a_panic(
                bytes in prop::collection::vec(any::<u8>(), 0..200)
            ) {
                if let Ok(inspected) = inspect(&bytes) {
                    let out = with_model(&bytes, &inspected, "m2");
                    let v: Value = serde_json::from_slice(&out).expect("rewritten body is JSON");
                    prop_assert_eq!(&v["model"], "m2");
                }
            }

            #[test]
            fn a_json_object_keeps_everything_but_its_model(
                v in object(),
                pretty in any::<bool>(),
            ) {
                let body = if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    v.to_string()
                };
                let outcome = inspect(body.as_bytes());
                // Only a non-string model is refused.
                let model_ok = v.get("model").is_none_or(|m| m.is_string() || m.is_null());
                prop_assert_eq!(outcome.is_ok(), model_ok);
                if let Ok(inspected) = outcome {
                    let out = with_model(body.as_bytes(), &inspected, "m2");
                    let mut got: Value = serde_json::from_slice(&out).unwrap();
                    prop_assert_eq!(&got["model"], "m2");
                    let mut want = v.clone();
                    want["model"] = "m2".into();
                    got.as_object_mut().unwrap().remove("model");
                    want.as_object_mut().unwrap().remove("model");
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
