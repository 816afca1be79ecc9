//! Real coding agents (npm packages installed by `scripts/setup --for-tests` into
//! target/agents), run offline against the real binary and strict mock providers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
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
    run_claude_code_in(gw, &home, key, prompt, args)
}

/// Like [`run_claude_code`], working in `dir` (also its home).
fn run_claude_code_in(
    gw: &Gateway,
    dir: &std::path::Path,
    key: &str,
    prompt: &str,
    args: &[&str],
) -> Output {
    let home = dir;
    let child = Command::new(claude_code())
        .arg("-p")
        .arg(prompt)
        .args(args)
        .current_dir(home)
        .env("HOME", home)
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
    finish(child, "Claude Code")
}

/// The agent's output once it exits; killed after 90 s.
fn finish(mut child: Child, agent: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{agent} did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The agent succeeded and its answer quotes the file the model had it print.
fn assert_quoted_the_file(out: &Output, gw: &Gateway) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", gw.logs());
    assert!(
        stdout.contains("The file says: the owl flies at midnight"),
        "{stdout}\n{stderr}"
    );
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

fn codex() -> PathBuf {
    let bin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/agents/node_modules/.bin/codex");
    assert!(
        bin.exists(),
        "Codex CLI is not installed: run scripts/setup --for-tests"
    );
    bin
}

/// Codex CLI (which speaks only the Responses API) through switchyard to a Claude model on an
/// Anthropic-interface mock that plays the model: it calls Codex's shell tool to print a file,
/// Codex runs it, and the model's answer quotes what the file says. Run as a user would: `codex
/// exec` in a scratch home whose config names switchyard as the provider; nothing else is
/// called (no login, updates or telemetry).
#[test]
fn codex_cli_completes_a_tool_loop_through_translation() {
    let anthropic = Mock::start();
    anthropic.set_mode("agent=notes.txt");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: anthropic/claude-sonnet-4-5, base_url: '{}', access_key: sk-ant-managed}}\n",
        anthropic.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let home = common::temp_dir("codex-home");
    let work = common::temp_dir("codex-work");
    std::fs::write(work.join("notes.txt"), "the owl flies at midnight\n").unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!(
            r#"model = "claude-sonnet-4-5"
model_provider = "switchyard"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.switchyard]
name = "switchyard"
base_url = "http://{}/v1"
env_key = "SWITCHYARD_KEY"
wire_api = "responses"
"#,
            gw.addr
        ),
    )
    .unwrap();
    let child = Command::new(codex())
        .args([
            "exec",
            "--skip-git-repo-check",
            "Read notes.txt and tell me what it says.",
        ])
        .current_dir(&work)
        .env("HOME", &home)
        .env("CODEX_HOME", &home)
        .env("SWITCHYARD_KEY", "sk-codex-client")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_quoted_the_file(&finish(child, "Codex"), &gw);

    // Two model turns reached the upstream, as Messages with the provider's key; the second
    // carries the shell's output as the tool result.
    let turns: Vec<Value> = anthropic
        .received()
        .iter()
        .filter(|r| r.path == "/v1/messages")
        .map(|r| {
            assert_eq!(r.header("x-api-key"), Some("sk-ant-managed"));
            assert_eq!(common::strict::refusal(r), None);
            r.json()
        })
        .collect();
    assert_eq!(turns.len(), 2, "{turns:#?}");
    let result = turns[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .to_string();
    assert!(result.contains("the owl flies at midnight"), "{result}");
}

/// Claude Code (which speaks only the Messages API) through switchyard to an OpenAI-interface
/// model on a mock that plays the model: it calls Claude Code's Bash tool to print a file, Claude
/// Code runs it, and the answer quotes the file. Every model turn reaches the upstream as a chat
/// completion the real API would take, with the provider's key.
#[test]
fn claude_code_completes_a_tool_loop_through_translation() {
    let openai = Mock::start();
    openai.set_mode("agent=notes.txt");
    let config = yaml(&format!(
        "model_providers:\n  - {{model: openai/gpt-4o, base_url: '{}', access_key: sk-openai-managed}}\n",
        openai.url()
    ));
    let gw = Gateway::start(&config, &[]);
    let work = common::temp_dir("claude-work");
    std::fs::write(work.join("notes.txt"), "the owl flies at midnight\n").unwrap();
    let out = run_claude_code_in(
        &gw,
        &work,
        "sk-ant-from-claude-code",
        "Read notes.txt and tell me what it says.",
        &["--model", "gpt-4o", "--allowedTools", "Bash"],
    );
    assert_quoted_the_file(&out, &gw);
    let turns: Vec<Value> = openai
        .received()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| {
            assert_eq!(r.header("authorization"), Some("Bearer sk-openai-managed"));
            assert_eq!(common::strict::refusal(r), None);
            r.json()
        })
        .collect();
    let answered = turns
        .iter()
        .find(|t| t["messages"].as_array().unwrap().last().unwrap()["role"] == "tool")
        .expect("a turn carrying the tool's result");
    let result = answered["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .to_string();
    assert!(result.contains("the owl flies at midnight"), "{result}");
}
