//! Real coding agents (npm packages installed by `scripts/setup --for-tests` into
//! target/agents), run offline against the real binary and strict mock providers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{providers, yaml, Gateway, Mock};
use serde_json::Value;

fn claude_code() -> PathBuf {
    let bin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/agents/node_modules/.bin/claude");
    assert!(
        bin.exists(),
        "Claude Code is not installed: run scripts/setup --for-tests"
    );
    bin
}

/// Runs `claude -p PROMPT [ARGS]` against `gw` with `key` as its Anthropic API key, in a fresh
/// home, with nothing that would call out to the internet; killed after 90 s.
fn run_claude_code(gw: &Gateway, key: &str, prompt: &str, args: &[&str]) -> Output {
    let home = common::temp_dir("claude-home");
    let mut child = Command::new(claude_code())
        .arg("-p")
        .arg(prompt)
        .args(args)
        .current_dir(&home)
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", format!("http://{}", gw.addr))
        .env("ANTHROPIC_API_KEY", key)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Claude Code did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// README's quick start: Claude Code pointed at conf/gateway.yaml as written (only Anthropic's
/// address replaced by the mock) gets its answer. It names models by bare ids (its default
/// `claude-opus-…`, or `--model claude-haiku-4-5-…`), which the file sends to `anthropic/*`; its
/// own key goes to Anthropic and nowhere else.
#[test]
fn claude_code_works_against_the_quick_start_config() {
    let anthropic = Mock::start();
    anthropic.set_mode("anthropic,sse=2");
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conf/gateway.yaml"),
    )
    .unwrap();
    let mut config = yaml(&text);
    for p in providers(&mut config) {
        if p["model"] == "anthropic/*" {
            p["base_url"] = anthropic.url().into();
        }
    }
    let gw = Gateway::start(&config, &[]);
    let key = "sk-ant-api03-from-claude-code";
    for args in [&[][..], &["--model", "claude-haiku-4-5-20251001"][..]] {
        let out = run_claude_code(&gw, key, "Say hi.", args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{stderr}\n{}",
            gw.logs()
        );
        // The mock's streamed answer, as Claude Code printed it.
        assert!(stdout.contains("t0t1"), "{args:?}: {stdout}");
    }
    let got = anthropic.received();
    assert!(!got.is_empty());
    // Every one of them is a request the real API takes (the mock refuses what it refuses).
    for r in &got {
        assert_eq!(common::strict::refusal(r), None, "{}", r.path);
    }
    for r in &got {
        assert!(r.path.starts_with("/v1/messages"), "{}", r.path);
        assert_eq!(r.header("x-api-key"), Some(key));
        assert_eq!(r.header("authorization"), None);
    }
    let models: Vec<String> = got
        .iter()
        // Claude Code asks `/v1/messages?beta=true`; the query goes upstream with it.
        .filter(|r| r.path.split('?').next() == Some("/v1/messages"))
        .map(|r| r.json()["model"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        models.iter().all(|m| m.starts_with("claude-")),
        "{models:?}"
    );
    assert!(
        models.iter().any(|m| m == "claude-haiku-4-5-20251001"),
        "{models:?}"
    );
    // Logged under the wildcard that took them, with no error.
    common::wait_for("the access log", Duration::from_secs(3), || {
        gw.access_log().lines().count() >= got.len()
    });
    for line in gw.access_log().lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        if entry["path"] == "/v1/messages" {
            assert_eq!(entry["provider"], "anthropic/*", "{entry}");
            assert_eq!(entry["error"], Value::Null, "{entry}");
        }
    }
}
