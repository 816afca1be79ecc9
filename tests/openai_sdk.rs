//! The official OpenAI Python SDK against the real binary: what the SDK sees and what the
//! upstream receives. The SDK is installed by `scripts/setup` from tests/sdk/requirements.txt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{yaml, Gateway, Mock};
use serde_json::{json, Value};

/// The Python that has the SDK: `SWITCHYARD_PYTHON`, else the venv `scripts/setup` makes.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHYARD_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python");
    assert!(
        venv.exists(),
        "the OpenAI SDK is not installed: run scripts/setup (or set SWITCHYARD_PYTHON)"
    );
    venv
}

#[test]
fn the_openai_python_sdk_works_through_the_gateway() {
    let mock = Mock::start();
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', passthrough_auth: true, default: true}}\n",
        mock.url()
    ));
    let gw = Gateway::start(&config, &[]);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_client.py");
    let out = Command::new(python())
        .arg(script)
        .arg(format!("http://{}/v1", gw.addr))
        .arg("sk-tenant-from-sdk")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.logs()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(
        seen["chat"],
        json!({"content": "hi", "model": "gpt-4o", "total_tokens": 4})
    );
    let mut stream: Vec<Value> = seen["stream"].as_array().unwrap().clone();
    stream.retain(|c| !c.is_null());
    assert_eq!(stream, [json!("t0"), json!("t1"), json!("t2"), json!("t3")]);
    assert_eq!(seen["models"], json!(["openai/gpt-4o"]));
    assert_eq!(
        seen["unknown_model"],
        json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(seen["rate_limited"], json!({"status": 429}));

    // What the provider received from the SDK's requests (the unknown model never left).
    let got = mock.received();
    assert_eq!(got.len(), 3, "{got:#?}");
    for r in &got {
        assert_eq!(r.header("authorization"), Some("Bearer sk-tenant-from-sdk"));
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.json()["model"], "gpt-4o");
    }
    assert_eq!(got[0].json()["x_vendor_field"], json!({"keep": true}));
    assert_eq!(got[1].json()["stream"], json!(true));
}
