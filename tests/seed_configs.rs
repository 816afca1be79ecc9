//! The four configs of Plano's "passthrough auth for proxy and multi-tenant setups" rule, shipped
//! in conf/examples/, each run with its base_urls pointed at recording mock upstreams. The
//! assertions are on what each upstream received.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use common::{chat, point_providers_at, providers, yaml, Gateway, Mock};
use serde_json::json;

const MANAGED: &str = "sk-gateway-managed-0001";
const CLIENT: &str = "sk-client-own-key-0002";

fn example(name: &str) -> serde_json::Value {
    let path = format!("{}/conf/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    yaml(&std::fs::read_to_string(path).unwrap())
}

/// Starts a recording mock and the gateway on example `name` with its base_urls pointed at it.
fn run_example(name: &str, env: &[(&str, &str)]) -> (Mock, Gateway) {
    let mock = Mock::start();
    let mut config = example(name);
    point_providers_at(&mut config, &mock.url());
    let gw = Gateway::start(&config, env);
    (mock, gw)
}

fn body(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}], "x_vendor_field": {"keep": [1, 2.50]}})
}

fn never_leaks(received: &common::Received, secret: &str) {
    for (name, value) in &received.headers {
        assert!(!value.contains(secret), "header {name} carries {secret}");
    }
    assert!(!String::from_utf8_lossy(&received.body).contains(secret));
}

#[test]
fn incorrect_managed_key_replaces_the_clients_credential() {
    let (mock, gw) = run_example("passthrough-incorrect.yaml", &[("SOME_KEY", MANAGED)]);

    let resp = chat(
        gw.addr,
        &[("authorization", &format!("Bearer {CLIENT}"))],
        &body("custom/proxy"),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    let got = mock.only();
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {MANAGED}").as_str())
    );
    never_leaks(&got, CLIENT);
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.json()["model"], "proxy");
}

#[test]
fn correct_client_bearer_reaches_the_proxy_unchanged() {
    let (mock, gw) = run_example("passthrough-correct.yaml", &[]);

    let resp = chat(
        gw.addr,
        &[("authorization", &format!("Bearer {CLIENT}"))],
        &body("custom/litellm-proxy"),
    );
    assert_eq!(resp.status, 200);
    // The model is rewritten to the bare id; every other byte is the client's.
    assert_eq!(resp.json()["model"], "litellm-proxy");

    let got = mock.only();
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {CLIENT}").as_str())
    );
    assert_eq!(got.header("x-api-key"), None);
    assert_eq!(got.body, body("litellm-proxy").to_string().into_bytes());
    assert_eq!(
        got.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
}

#[test]
fn correct_x_api_key_is_reemitted_as_bearer() {
    let (mock, gw) = run_example("passthrough-correct.yaml", &[]);

    // No model: the default provider.
    let resp = chat(gw.addr, &[("x-api-key", CLIENT)], &json!({"messages": []}));
    assert_eq!(resp.status, 200);
    let got = mock.only();
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {CLIENT}").as_str())
    );
    assert_eq!(got.header("x-api-key"), None);
    assert_eq!(got.json()["model"], "litellm-proxy");
}

#[test]
fn passthrough_without_a_credential_forwards_none_and_returns_the_upstreams_401() {
    let (mock, gw) = run_example("passthrough-correct.yaml", &[]);

    let resp = chat(
        gw.addr,
        &[("x-mock", "status=401")],
        &body("custom/litellm-proxy"),
    );
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"]["message"], "mock error");
    assert_eq!(mock.only().header("authorization"), None);
}

#[test]
fn multi_tenant_each_client_key_reaches_openai() {
    let (mock, gw) = run_example("passthrough-multi-tenant.yaml", &[]);

    for tenant in ["sk-tenant-a", "sk-tenant-b"] {
        let resp = chat(
            gw.addr,
            &[("authorization", &format!("Bearer {tenant}"))],
            &body("openai/gpt-4o"),
        );
        assert_eq!(resp.status, 200);
    }
    let got = mock.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("authorization"), Some("Bearer sk-tenant-a"));
    assert_eq!(got[1].header("authorization"), Some("Bearer sk-tenant-b"));
    assert!(got.iter().all(|r| r.json()["model"] == "gpt-4o"));
}

#[test]
fn combined_managed_and_passthrough_never_cross() {
    let openai = Mock::start();
    let vllm = Mock::start();
    let mut config = example("passthrough-combined.yaml");
    let urls = [openai.url(), vllm.url()];
    for (p, url) in providers(&mut config).into_iter().zip(urls) {
        p["base_url"] = url.into();
    }
    let gw = Gateway::start(&config, &[("OPENAI_API_KEY", MANAGED)]);
    let client = format!("Bearer {CLIENT}");

    assert_eq!(
        chat(gw.addr, &[("authorization", &client)], &body("gpt-4o-mini")).status,
        200
    );
    assert_eq!(
        chat(
            gw.addr,
            &[("authorization", &client)],
            &body("custom/vllm-llama")
        )
        .status,
        200
    );
    assert_eq!(
        chat(
            gw.addr,
            &[("authorization", &client)],
            &json!({"messages": []})
        )
        .status,
        200
    );

    let to_openai = openai.received();
    assert_eq!(
        to_openai.len(),
        2,
        "bare id and default both go to the managed provider"
    );
    for r in &to_openai {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {MANAGED}").as_str())
        );
        never_leaks(r, CLIENT);
        assert_eq!(r.json()["model"], "gpt-4o-mini");
    }
    let to_vllm = vllm.only();
    assert_eq!(to_vllm.header("authorization"), Some(client.as_str()));
    never_leaks(&to_vllm, MANAGED);
    assert_eq!(to_vllm.json()["model"], "vllm-llama");
}

#[test]
fn every_shipped_config_validates() {
    let dir = format!("{}/conf", env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        format!("{dir}/gateway.yaml"),
        format!("{dir}/kubernetes/gateway.yaml"),
    ];
    for entry in std::fs::read_dir(format!("{dir}/examples")).unwrap() {
        files.push(entry.unwrap().path().to_string_lossy().into_owned());
    }
    for file in files {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["-t", "-c", &file])
            .env("SOME_KEY", "x")
            .env("OPENAI_API_KEY", "x")
            .env("ALICE_KEY", "x")
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Kubernetes example drains as README's "Operations" says: the pod outlives preStop +
/// `server.grace_period` + 5 s, and the manifest serves the ports the config listens on.
#[test]
fn the_kubernetes_example_drains_within_its_grace_period() {
    let dir = format!("{}/conf/kubernetes", env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(format!("{dir}/switchyard.k8s.yaml")).unwrap();
    let config = std::fs::read_to_string(format!("{dir}/gateway.yaml")).unwrap();
    let number_after = |text: &str, key: &str| -> u64 {
        let at = text.find(key).unwrap_or_else(|| panic!("no `{key}`")) + key.len();
        text[at..]
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let termination = number_after(&manifest, "terminationGracePeriodSeconds:");
    let pre_stop = number_after(&manifest, r#"command: ["sleep", ""#);
    let grace = number_after(&config, "grace_period:");
    assert!(
        termination >= pre_stop + grace + 5,
        "{termination} < {pre_stop} + {grace} + 5"
    );
    assert_eq!(
        number_after(&config, "port:"),
        number_after(&manifest, "containerPort:")
    );
    assert_eq!(
        number_after(&config, "metrics_address: 0.0.0.0:"),
        number_after(&manifest, "{name: metrics, containerPort:")
    );
    assert!(manifest.contains("path: /healthz"));
    assert!(
        manifest.contains("mountPath: /etc/switchyard")
            && manifest.contains("/etc/switchyard/gateway.yaml")
    );
}
