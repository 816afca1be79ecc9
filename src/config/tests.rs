//! Config loading: Plano files that must load, and every rejection with its path and line.

use std::time::Duration;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-openai-secret".into()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-secret".into()),
        _ => None,
    }
}

fn load(yaml: &str) -> Config {
    Config::from_yaml(yaml, &env).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(yaml: &str) -> Vec<Problem> {
    match Config::from_yaml(yaml, &env) {
        Ok(_) => panic!("expected problems in:\n{yaml}"),
        Err(e) => e.problems,
    }
}

/// The single problem of `yaml`, as `path (line N): message`.
fn problem(yaml: &str) -> String {
    let p = problems(yaml);
    assert_eq!(p.len(), 1, "{p:#?}");
    p[0].to_string()
}

#[test]
fn a_full_plano_v040_file_loads() {
    let c = load(
        r#"
version: v0.4.0
listeners:
  - name: llm
    type: model
    address: 127.0.0.1
    port: 12001
    timeout: 120s
  - name: prompts
    type: prompt
    port: 10000
model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
    default: true
  - model: anthropic/claude-sonnet-4-5
    access_key: ${ANTHROPIC_API_KEY}
  - model: together_ai/meta-llama/Llama-3-70b
    access_key: $OPENAI_API_KEY
    headers: {X-Org: acme}
  - model: litellm/*
    base_url: https://litellm.internal/v1
    provider_interface: openai
    passthrough_auth: true
  - model: ollama/llama3.1
    name: local
    base_url: http://host.docker.internal:11434
    http_host: ollama.internal
model_aliases:
  fast: {target: gpt-4o}
  local-model: {target: local}
routing_preferences:
  - name: code review
    description: reviewing code
    models: [openai/gpt-4o, local]
    selection_policy: {prefer: cheapest}
model_metrics_sources:
  - {type: cost, provider: models.dev}
overrides:
  upstream_connect_timeout: 2s
  llm_routing_model: plano/Plano-Orchestrator
tracing: {random_sampling: 10}
"#,
    );
    assert_eq!(c.version.as_deref(), Some("v0.4.0"));
    assert_eq!(c.listener.port, 12001);
    assert_eq!(c.listener.address, "127.0.0.1");
    assert_eq!(c.listener.timeout, Duration::from_secs(120));
    // The five written, and Plano's hosted router, which no provider here replaces.
    assert_eq!(c.providers.len(), 6);
    assert!(c.providers[5].internal && c.providers.iter().filter(|p| p.internal).count() == 1);

    let openai = &c.providers[0];
    assert_eq!(
        (openai.prefix.as_str(), openai.id.as_str()),
        ("openai", "gpt-4o")
    );
    assert_eq!(openai.name, "openai/gpt-4o");
    assert_eq!(openai.origin.host, "api.openai.com");
    assert_eq!(openai.origin.path_prefix, "/v1");
    assert!(openai.origin.tls && openai.default);
    assert_eq!(
        openai.access_key.as_ref().map(Secret::expose),
        Some("sk-openai-secret")
    );

    assert_eq!(c.providers[1].interface, Interface::Anthropic);
    assert_eq!(
        c.providers[1].access_key.as_ref().map(Secret::expose),
        Some("sk-ant-secret")
    );
    assert_eq!(c.providers[2].id, "meta-llama/Llama-3-70b");
    assert_eq!(c.providers[2].headers[0].0, "x-org");

    let litellm = &c.providers[3];
    assert!(litellm.is_wildcard() && litellm.passthrough_auth);
    assert_eq!(litellm.origin.host, "litellm.internal");
    assert_eq!(litellm.origin.path_prefix, "/v1");

    let ollama = &c.providers[4];
    assert_eq!(ollama.name, "local");
    assert_eq!(ollama.interface, Interface::OpenAi);
    assert!(!ollama.origin.tls);
    assert_eq!(ollama.origin.port, 11434);
    assert_eq!(ollama.origin.path_prefix, "/v1");
    assert_eq!(ollama.http_host.as_deref(), Some("ollama.internal"));

    assert_eq!(
        c.aliases,
        vec![
            ("fast".into(), "gpt-4o".into()),
            ("local-model".into(), "local".into())
        ]
    );
    assert_eq!(c.routing_preferences[0].prefer, Prefer::Cheapest);
    assert_eq!(c.overrides.upstream_connect_timeout, Duration::from_secs(2));

    // Plano keys switchyard does not implement yet: loaded, each named in a warning; and its
    // preferences with no router provider send prompts to Plano's hosted router.
    let warned: Vec<_> = c.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(warned, ["listeners[1].type", "routing_preferences"]);
    assert_eq!(c.tracing.as_ref().map(|t| t.sampling), Some(10));
    assert_eq!(
        c.metrics_sources,
        [MetricsSource {
            kind: MetricsKind::ModelsDev,
            url: "https://models.dev/api.json".into(),
            refresh: None,
            model_aliases: Vec::new(),
        }]
    );
}

#[test]
fn a_file_with_no_listeners_gets_the_default_one() {
    let c = load("model_providers: [{model: openai/gpt-4o, access_key: $OPENAI_API_KEY}]");
    assert_eq!(c.listener, Listener::default());
    assert_eq!(c.listener.port, 12000);
    assert_eq!(c.listener.timeout, Duration::from_secs(300));
    assert_eq!(c.server, ServerSettings::default());
}

#[test]
fn legacy_listener_object_and_llm_providers_alias() {
    let c = load(
        r#"
version: v0.1.0
listeners:
  ingress_traffic: {address: 0.0.0.0, port: 10000}
  egress_traffic: {address: 0.0.0.0, port: 12000, message_format: openai, timeout: 30s}
llm_providers:
  - {model: openai/gpt-4o, access_key: $OPENAI_API_KEY}
"#,
    );
    assert_eq!(c.listener.timeout, Duration::from_secs(30));
    assert_eq!(c.providers.len(), 1);
    let warned: Vec<_> = c.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(warned, ["listeners.ingress_traffic", "llm_providers"]);
}

#[test]
fn v030_inline_routing_preferences_are_migrated() {
    let c = load(
        r#"
version: v0.3.0
model_providers:
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
    routing_preferences:
      - {name: code generation, description: writing new functions}
  - model: anthropic/claude-sonnet-4-5
    access_key: $ANTHROPIC_API_KEY
    routing_preferences:
      - {name: code generation, description: a second description}
      - {name: review, description: reviewing code}
"#,
    );
    let prefs = &c.routing_preferences;
    assert_eq!(prefs.len(), 2);
    assert_eq!(prefs[0].name, "code generation");
    assert_eq!(prefs[0].description, "writing new functions");
    assert_eq!(
        prefs[0].models,
        ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"]
    );
    assert_eq!(prefs[1].models, ["anthropic/claude-sonnet-4-5"]);
}

#[test]
fn base_url_path_replaces_the_default_prefix() {
    let c = load(
        r#"
model_providers:
  - {model: groq/llama, access_key: $OPENAI_API_KEY}
  - {model: groq/other, access_key: $OPENAI_API_KEY, base_url: "https://proxy.example/x/openai/"}
  - {model: custom/a, base_url: "http://[::1]:8080"}
  - {model: qwen/qwen-max, base_url: "https://dashscope.example", access_key: $OPENAI_API_KEY}
"#,
    );
    let e: Vec<_> = c.providers.iter().map(|p| &p.origin).collect();
    assert_eq!(
        (e[0].host.as_str(), e[0].path_prefix.as_str()),
        ("api.groq.com", "/openai/v1")
    );
    assert_eq!(
        (e[1].host.as_str(), e[1].path_prefix.as_str()),
        ("proxy.example", "/x/openai")
    );
    assert_eq!(
        (e[2].host.as_str(), e[2].port, e[2].authority()),
        ("::1", 8080, "[::1]:8080".to_owned())
    );
    assert_eq!(e[3].path_prefix, "/compatible-mode/v1");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let c = load(
        "model_providers: [{model: openai/gpt-4o, access_key: $OPENAI_API_KEY, headers: {x-token: $ANTHROPIC_API_KEY}}]",
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains("sk-openai-secret"), "{debug}");
    assert!(!debug.contains("sk-ant-secret"), "{debug}");
}

#[test]
fn missing_environment_variables_are_named() {
    assert_eq!(
        problem("model_providers:\n  - model: openai/gpt-4o\n    access_key: $NOT_SET_KEY\n"),
        "model_providers[0].access_key (line 3): environment variable NOT_SET_KEY is not set"
    );
    assert_eq!(
        problem("model_providers:\n  - model: custom/x\n    base_url: http://${HOST_VAR}:1\n"),
        "model_providers[0].base_url (line 3): environment variable HOST_VAR is not set"
    );
}

#[test]
fn unknown_keys_are_rejected_with_path_and_line() {
    assert_eq!(
        problem("modle_providers: []\n"),
        "modle_providers (line 1): unknown key"
    );
    assert_eq!(
        problem("model_providers:\n  - model: openai/gpt-4o\n    acess_key: x\n"),
        "model_providers[0].acess_key (line 3): unknown key"
    );
    assert_eq!(
        problem("server:\n  threads: 2\n  workers: 4\n"),
        "server.workers (line 3): unknown key"
    );
    assert_eq!(
        problem("model_aliases:\n  fast: {target: x, weight: 2}\nmodel_providers: [{model: custom/x, base_url: 'http://h'}]\n"),
        "model_aliases.fast.weight (line 2): unknown key"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(
        r#"
version: v9
listeners: [{name: l, type: model, port: 70000}]
model_providers:
  - model: gpt-4o
  - model: openai/gpt-4o
    access_key: $MISSING
  - model: nope/x
unknown_top: 1
"#,
    );
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 6, "{shown:#?}");
    assert!(shown[0].starts_with("version (line 2): unsupported version `v9`"));
    assert_eq!(
        shown[1],
        "listeners[0].port (line 3): must be between 1 and 65535, found 70000"
    );
    assert!(shown[2]
        .starts_with("model_providers[0].model (line 5): `gpt-4o` must be `provider/model-id`"));
    assert_eq!(
        shown[3],
        "model_providers[1].access_key (line 7): environment variable MISSING is not set"
    );
    assert!(
        shown[4].starts_with("model_providers[2].model (line 8): unknown provider prefix `nope`")
    );
    assert_eq!(shown[5], "unknown_top (line 9): unknown key");
}

#[test]
fn provider_rejections() {
    let cases = [
        ("- {access_key: x}", "model_providers[0] (line 2): missing required key `model`"),
        ("- {model: /x}", "must be `provider/model-id`"),
        ("- {model: openai/}", "must be `provider/model-id`"),
        ("- {model: custom/x}", "unknown provider prefix `custom`: set `base_url`"),
        ("- {model: qwen/x, access_key: k}", "`base_url` is required for `qwen` providers"),
        ("- {model: ollama/x}", "`base_url` is required for `ollama` providers"),
        ("- {model: plano/Arch-Router}", "`base_url` is required for `plano` providers"),
        ("- {model: azure_openai/gpt-4o, access_key: k}", "`base_url` is required for `azure_openai` providers"),
        ("- {model: custom/x, base_url: 'http://h', provider_interface: cobol}", "unsupported provider_interface `cobol`"),
        ("- {model: custom/x, base_url: 'http://h', provider_interface: openai, provider: openai}", "not both"),
        ("- {model: custom/x, base_url: 'ftp://h'}", "the scheme must be http or https"),
        ("- {model: custom/x, base_url: 'h:80'}", "not a usable base_url"),
        ("- {model: custom/x, base_url: 'http://u:p@h'}", "credentials in the URL are not supported"),
        ("- {model: openai/x, access_key: k, passthrough_auth: yes please}", "expected true or false"),
        ("- {model: openai/x, access_key: k, headers: {'bad header': v}}", "is not a valid header name"),
        ("- {model: openai/x, access_key: k, headers: [a]}", "expected a mapping, found a list"),
    ];
    for (entry, want) in cases {
        let got = problem(&format!("model_providers:\n  {entry}\n"));
        assert!(got.contains(want), "{entry}: got `{got}`, want `{want}`");
    }
}

#[test]
fn cross_checks() {
    let cases = [
        (
            "model_providers:\n  - {model: openai/a, access_key: k, fallbacks: [openai/zz]}\n",
            "model_providers[0].fallbacks (line 2): `openai/zz` is not a configured (non-wildcard) model",
        ),
        (
            "model_providers:\n  - {model: openai/gpt-4o, access_key: k}\n  - {model: custom/gpt-4o, base_url: 'http://h'}\n",
            "model_providers[1] (line 3): model id `gpt-4o` is also served by the provider on line 2; bare ids must be unique (as in Plano), so that `gpt-4o` alone names one model: give one of them another id (an Azure deployment's own name) and use `fallbacks` to fail over between them",
        ),
        (
            "model_providers:\n  - {model: openai/a, access_key: k, name: x}\n  - {model: openai/b, access_key: k, name: x}\n",
            "model_providers[1] (line 3): name `x` is already used on line 2",
        ),
        (
            "model_providers:\n  - {model: openai/a, access_key: k, default: true}\n  - {model: openai/b, access_key: k, default: true}\n",
            "model_providers[1] (line 3): only one provider may be the default (the first is on line 2)",
        ),
        (
            "model_providers:\n  - {model: openai/*, access_key: k, default: true}\n",
            "model_providers[0] (line 2): a wildcard provider cannot be the default",
        ),
        (
            "model_providers: [{model: openai/a, access_key: k}]\nmodel_aliases:\n  fast: {target: openai/b}\n",
            "model_aliases.fast.target (line 3): `openai/b` is not a configured (non-wildcard) model",
        ),
        (
            "model_providers: [{model: openai/a, access_key: k}]\nrouting_preferences:\n  - {name: n, description: d, models: [openai/zz]}\n",
            "routing_preferences[0].models[0] (line 3): `openai/zz` does not match any provider's name or model",
        ),
        (
            "listeners:\n  - {name: a, type: model}\n  - {name: b, type: model, port: 1}\n",
            "listeners[1] (line 3): only one `type: model` listener is allowed (the first is on line 2)",
        ),
        (
            "model_providers: [{model: openai/a, access_key: k}]\nllm_providers: []\n",
            "llm_providers (line 2): give `model_providers` or its deprecated alias `llm_providers`, not both",
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(problem(yaml), want, "{yaml}");
    }
}

#[test]
fn listener_and_server_values() {
    let c = load(
        "listeners: [{name: l, type: model, address: '::', port: 8080, timeout: 90}]\nserver:\n  threads: 4\n  metrics_address: 127.0.0.1:9100\n  pid_file: /run/sy.pid\n  upgrade_sock: /run/sy.sock\n  grace_period: 10s\n  max_request_body: 10MiB\n  access_log: /var/log/switchyard.jsonl\n",
    );
    assert_eq!(c.listener.bind_address(), "[::]:8080");
    assert_eq!(c.listener.timeout, Duration::from_secs(90));
    assert_eq!(c.server.threads, 4);
    assert_eq!(c.server.metrics_address, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(c.server.grace_period, Duration::from_secs(10));
    assert_eq!(c.server.max_request_body, 10 << 20);
    assert_eq!(
        c.server.access_log,
        Sink::File("/var/log/switchyard.jsonl".into())
    );

    let cases = [
        (
            "listeners: [{name: l, type: model, address: localhost}]",
            "`localhost` is not an IP address",
        ),
        (
            "listeners: [{name: l, type: model, timeout: soon}]",
            "expected a duration",
        ),
        ("listeners: [{type: model}]", "missing required key `name`"),
        (
            "listeners: [{name: l, type: egress}]",
            "unknown listener type `egress`",
        ),
        ("server: {threads: 0}", "must be between 1 and 1024"),
        (
            "server: {metrics_address: ':9092'}",
            "is not an ip:port address",
        ),
        ("server: {max_request_body: lots}", "expected a size"),
        ("server: {grace_period: -5s}", "expected a duration"),
        (
            "overrides: {upstream_tls_ca_path: /nonexistent/ca.pem}",
            "cannot load CA bundle",
        ),
        (
            "overrides: {upstream_connect_timeout: 0s}",
            "must be more than zero",
        ),
        ("version: 1", "unsupported version `1`"),
        ("a: [1, 2", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping, found a list"),
    ];
    for (yaml, want) in cases {
        let got = problem(yaml);
        assert!(got.contains(want), "{yaml}: got `{got}`, want `{want}`");
    }
}

#[test]
fn booleans_read_as_plano_reads_them() {
    // PyYAML (Plano) reads yes/no/on/off as booleans but `y`/`n` as strings.
    let c =
        load("model_providers: [{model: openai/n, name: y, passthrough_auth: yes, default: on}]");
    assert!(c.providers[0].passthrough_auth && c.providers[0].default);
    assert_eq!(
        (c.providers[0].id.as_str(), c.providers[0].name.as_str()),
        ("n", "y")
    );
}

#[test]
fn repeated_models_are_endpoints_of_one_model() {
    let c = load(
        "model_providers:\n  - {model: openai/gpt-4o, access_key: k, weight: 3, fallbacks: [claude]}\n  - {model: openai/gpt-4o, base_url: 'http://h', weight: 1}\n  - {model: openai/gpt-4o, base_url: 'http://i', name: third, lb_policy: least_requests, health_check: {path: /health, interval: 5s}, timeouts: {first_byte: 20s, idle: 60s, total: 10m}, retry: {attempts: 3, on: [connect, 429], backoff: {base: 50ms, max: 1s}}, outlier_detection: {consecutive_failures: 2, ejection: 5s}}\n  - {model: anthropic/claude, access_key: k}\nlisteners: [{name: l, type: model, max_retries: 2}]\n",
    );
    let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "openai/gpt-4o",
            "openai/gpt-4o#2",
            "third",
            "anthropic/claude"
        ]
    );
    assert_eq!(c.providers[0].weight, 3);
    assert_eq!(c.providers[0].fallbacks, ["claude"]);
    assert_eq!(c.listener.retry.as_ref().map(|r| r.attempts), Some(3));
    let third = &c.providers[2];
    assert_eq!(third.lb_policy, LbPolicy::LeastRequests);
    assert_eq!(
        third
            .health_check
            .as_ref()
            .map(|h| (h.path.as_str(), h.interval)),
        Some(("/health", Duration::from_secs(5)))
    );
    assert_eq!(third.timeouts.first_byte, Some(Duration::from_secs(20)));
    assert_eq!(third.timeouts.total, Some(Duration::from_secs(600)));
    let retry = third.retry.as_ref().unwrap();
    assert_eq!(
        (
            retry.attempts,
            retry.on_connect,
            retry.on_timeout,
            retry.on_429,
            retry.on_5xx
        ),
        (3, true, false, true, false)
    );
    assert_eq!(retry.backoff_base, Duration::from_millis(50));
    assert_eq!(third.outlier.consecutive_failures, 2);
    let cases = [
        ("weight: 0", "must be between 1 and 1000"),
        ("lb_policy: random", "unknown `random`"),
        ("retry: {on: [404]}", "unknown `404`"),
        ("health_check: {path: health}", "must start with `/`"),
        ("timeouts: {first_byte: 0s}", "must be more than zero"),
        (
            "outlier_detection: {consecutive_failures: 0}",
            "must be between 1 and 1000",
        ),
    ];
    for (extra, want) in cases {
        let got = problem(&format!(
            "model_providers:\n  - {{model: openai/a, access_key: k, {extra}}}\n"
        ));
        assert!(got.contains(want), "{extra}: got `{got}`");
    }
}

#[test]
fn empty_file_is_an_empty_config() {
    let c = load("");
    assert!(c.providers.is_empty());
}

/// Plano's own configs name a self-hosted router model with the `plano/` prefix.
#[test]
fn a_plano_router_model_is_an_openai_compatible_provider_at_its_base_url() {
    let c = Config::from_yaml(
        "model_providers:\n  - model: plano/hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M\n    base_url: http://localhost:11434\n",
        &|_| None,
    )
    .unwrap();
    let p = &c.providers[0];
    assert_eq!(p.prefix, "plano");
    assert_eq!(p.id, "hf.co/katanemo/Arch-Router-1.5B.gguf:Q4_K_M");
    assert_eq!(p.interface, Interface::OpenAi);
    assert_eq!(p.origin.path_prefix, "/v1");
    assert_eq!(p.origin.port, 11434);
    assert!(
        crate::auth::has_credentials(p),
        "self-hosted: no key needed"
    );
}

/// `chatgpt/` as Plano sets it up: the Codex backend, the client's own token (no key), the
/// backend's client headers and the account id from the environment; a header the entry gives
/// wins.
#[test]
fn a_chatgpt_provider_gets_the_codex_backend_defaults() {
    let env = |k: &str| (k == "CHATGPT_ACCOUNT_ID").then(|| "acct-9".to_owned());
    let c = Config::from_yaml(
        "model_providers:\n  - {model: chatgpt/*}\n  - {model: chatgpt/gpt-5.4, name: own, headers: {originator: mine}}\n",
        &env,
    )
    .unwrap();
    let p = &c.providers[0];
    assert!(p.passthrough_auth);
    assert_eq!(p.origin.host, "chatgpt.com");
    assert_eq!(p.origin.path_prefix, "/backend-api/codex");
    let header = |p: &crate::config::Provider, name: &str| {
        p.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.expose().to_owned())
    };
    assert_eq!(header(p, "originator").as_deref(), Some("codex_cli_rs"));
    assert_eq!(header(p, "chatgpt-account-id").as_deref(), Some("acct-9"));
    assert!(header(p, "session_id").is_some());
    assert_eq!(
        header(&c.providers[1], "originator").as_deref(),
        Some("mine")
    );
}

#[test]
fn the_router_model_is_found_by_name_model_or_id_without_its_prefix() {
    let yaml = |router: &str| {
        format!("overrides: {{llm_routing_model: '{router}'}}\nmodel_providers:\n  - {{model: plano/hf.co/katanemo/Arch-Router-1.5B, base_url: 'http://r:8000', name: router}}\n  - {{model: openai/gpt-4o, access_key: k}}\nrouting_preferences:\n  - {{name: code, description: writing code, models: [openai/gpt-4o]}}\n")
    };
    for router in [
        "plano/hf.co/katanemo/Arch-Router-1.5B",
        "hf.co/katanemo/Arch-Router-1.5B",
        "other/hf.co/katanemo/Arch-Router-1.5B",
        "router",
    ] {
        let c = Config::from_yaml(&yaml(router), &|_| None).unwrap();
        assert_eq!(
            c.router_provider().map(|p| p.name.as_str()),
            Some("router"),
            "{router}"
        );
        assert!(c
            .warnings
            .iter()
            .all(|w| !w.to_string().contains("no model provider serves")));
    }
    // No provider serves it: Plano's hosted router, as Plano asks it, keyless and unlisted.
    let c = Config::from_yaml(&yaml("Plano-Orchestrator"), &|_| None).unwrap();
    let hosted = c.router_provider().unwrap();
    assert_eq!(
        (hosted.name.as_str(), hosted.model.as_str()),
        ("plano-orchestrator", "plano/Plano-Orchestrator")
    );
    assert_eq!(
        (
            hosted.origin.host.as_str(),
            hosted.origin.port,
            hosted.origin.tls
        ),
        ("archfc.katanemo.dev", 443, true)
    );
    assert!(hosted.internal && hosted.access_key.is_none());
    // Prompts to a third party are never silent.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0]
        .to_string()
        .contains("go to Plano's hosted router (https://archfc.katanemo.dev), a third party"));
    // A provider serving the router model: no warning.
    let c = Config::from_yaml(&yaml("router"), &|_| None).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Without preferences nothing is added.
    let c = Config::from_yaml(
        "model_providers: [{model: openai/gpt-4o, access_key: k}]",
        &|_| None,
    )
    .unwrap();
    assert!(c.router_provider().is_none() && c.providers.len() == 1);
}

#[test]
fn the_routing_block_sets_session_pins_and_archgws_router() {
    let c = Config::from_yaml(
        "model_providers:\n  - {model: openai/gpt-4o, access_key: k}\n  - {model: plano/Arch-Router, base_url: 'http://r'}\nrouting:\n  session_ttl_seconds: 30\n  session_max_entries: 500\n  session_cache: {type: redis, url: 'redis://r:6379', tenant_header: X-Tenant}\n  model: Arch-Router\nrouting_preferences:\n  - {name: code, description: writing code, models: [openai/gpt-4o]}\n",
        &|_| None,
    )
    .unwrap();
    assert_eq!(c.routing.session_ttl, Duration::from_secs(30));
    assert_eq!(c.routing.session_max_entries, 500);
    assert_eq!(c.routing.tenant_header.as_deref(), Some("x-tenant"));
    assert_eq!(c.overrides.llm_routing_model, "Arch-Router");
    assert_eq!(
        c.router_provider().map(|p| p.model.as_str()),
        Some("plano/Arch-Router")
    );
    // Plano's redis session cache shares pins and decisions through that Redis.
    let store = c.routing.session_store.as_ref().expect("a session store");
    assert_eq!(store.url.expose(), "redis://r:6379");
    assert!(
        problem("routing: {session_max_entries: 20000}\n").contains("routing.session_max_entries")
    );
    assert_eq!(
        problem("routing: {session_cache: {type: redis}}\n"),
        "routing.session_cache (line 1): `url` is required when `type` is redis"
    );
}

#[test]
fn model_metrics_sources_load_as_plano_writes_them_and_are_checked() {
    let base = "model_providers: [{model: openai/gpt-4o, access_key: k}]\n";
    let c = load(&format!(
        "{base}model_metrics_sources:\n  - {{type: cost, provider: digitalocean, refresh_interval: 3600, model_aliases: {{openai/openai-gpt-oss-120b: openai/gpt-4o}}}}\n  - {{type: latency, provider: prometheus, url: 'http://prom:9090', query: 'avg by (model_name) (x)', refresh_interval: 60}}\n"
    ));
    assert_eq!(c.metrics_sources.len(), 2);
    // A catalog URL may carry a query.
    let q = load(&format!(
        "{base}model_metrics_sources: [{{type: cost, provider: digitalocean, url: 'https://api.example.com/v2/catalog?per_page=200'}}]\n"
    ));
    assert!(q.metrics_sources[0].url.ends_with("?per_page=200"));
    assert_eq!(c.metrics_sources[0].kind, MetricsKind::DigitalOcean);
    assert_eq!(
        c.metrics_sources[0].model_aliases,
        [(
            "openai/openai-gpt-oss-120b".to_owned(),
            "openai/gpt-4o".to_owned()
        )]
    );
    assert_eq!(
        c.metrics_sources[0].refresh,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        c.metrics_sources[1].kind,
        MetricsKind::Prometheus {
            query: "avg by (model_name) (x)".into()
        }
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    for (bad, says) in [
        (
            "- {type: cost, provider: openrouter}",
            "unknown cost provider",
        ),
        (
            "- {type: latency, provider: prometheus, query: up}",
            "needs `url`",
        ),
        (
            "- {type: latency, provider: prometheus, url: 'http://p'}",
            "needs `query`",
        ),
        (
            "- {type: cost, provider: models.dev}\n  - {type: cost, provider: digitalocean}",
            "at most one of each",
        ),
        (
            "- {type: cost, provider: models.dev, url: 'ftp://x'}",
            "http",
        ),
        (
            "- {type: latency, provider: prometheus, url: 'http://u:pw@p', query: q}",
            "credentials",
        ),
        ("- {type: speed, provider: prometheus}", "unknown type"),
    ] {
        let err = Config::from_yaml(&format!("{base}model_metrics_sources:\n  {bad}\n"), &|_| {
            None
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn a_route_preferring_cheapest_with_nothing_to_price_it_is_told() {
    let route = "routing_preferences:\n  - {name: code, description: d, models: [openai/gpt-4o], selection_policy: {prefer: cheapest}}\n";
    let warned = |extra: &str, cost: &str| {
        load(&format!(
            "model_providers:\n  - {{model: openai/gpt-4o, access_key: k{cost}}}\n  - {{model: plano/Arch-Router, base_url: 'http://r'}}\noverrides: {{llm_routing_model: Arch-Router}}\n{route}{extra}"
        ))
        .warnings
        .iter()
        .any(|w| w.message.contains("prefers cheapest but nothing prices"))
    };
    assert!(warned("", ""));
    assert!(!warned(
        "",
        ", cost: {input_per_million: 1, output_per_million: 2}"
    ));
    assert!(!warned(
        "model_metrics_sources: [{type: cost, provider: models.dev}]\n",
        ""
    ));
}

#[test]
fn bare_ids_belong_to_wildcards_and_are_ids_or_their_start() {
    let c =
        load("model_providers:\n  - {model: anthropic/*, access_key: k, bare_ids: [claude-*]}\n");
    assert_eq!(c.providers[0].bare_ids, ["claude-*"]);
    assert_eq!(
        problem("model_providers:\n  - {model: anthropic/claude-x, access_key: k, bare_ids: [claude-*]}\n"),
        "model_providers[0].bare_ids (line 2): only a wildcard provider (`anthropic/*`) takes `bare_ids`"
    );
    for bad in ["'*'", "'c*x*'", "a/b"] {
        let p = problem(&format!(
            "model_providers:\n  - {{model: anthropic/*, access_key: k, bare_ids: [{bad}]}}\n"
        ));
        assert!(
            p.starts_with("model_providers[0].bare_ids[0] (line 2): a bare id, or its start"),
            "{bad}: {p}"
        );
    }
}

#[test]
fn prefer_is_read_alike_in_the_config_and_in_requests() {
    // The request side reads it with the same `Prefer::from_name` (router/question.rs).
    for (name, want) in [
        ("cheapest", Prefer::Cheapest),
        ("fastest", Prefer::Fastest),
        ("random", Prefer::Random),
        ("none", Prefer::None),
    ] {
        let c = load(&format!(
            "model_providers: [{{model: openai/gpt-4o, access_key: k}}]\nrouting_preferences:\n  - {{name: code, description: d, models: [openai/gpt-4o], selection_policy: {{prefer: {name}}}}}\n"
        ));
        assert_eq!(c.routing_preferences[0].prefer, want, "{name}");
        assert_eq!(Prefer::from_name(name), Some(want));
    }
    assert!(problem(
        "model_providers: [{model: openai/gpt-4o, access_key: k}]\nrouting_preferences:\n  - {name: code, description: d, models: [openai/gpt-4o], selection_policy: {prefer: loudest}}\n"
    )
    .ends_with("unknown `loudest`; expected cheapest, fastest, random or none"));
}

#[test]
fn client_keys_come_from_the_environment_or_a_digest_never_the_file() {
    let providers = "model_providers: [{model: openai/gpt-4o, access_key: k}]\n";
    assert_eq!(
        problem(&format!("{providers}clients: [{{name: a, key: sk-literal}}]\n")),
        "clients[0].key (line 2): a literal key would keep a secret in the file; use $VAR (from the environment or .env) or sha256:<64 hex digits>"
    );
    assert_eq!(
        problem(&format!(
            "{providers}clients: [{{name: a, key: 'sha256:abc'}}]\n"
        )),
        "clients[0].key (line 2): `sha256:` must be followed by 64 hex digits"
    );
    assert!(problem(&format!("{providers}clients: [{{name: a, key: $NOPE}}]\n")).contains("NOPE"));
    assert_eq!(
        problem(&format!(
            "{providers}clients: [{{name: a, key: $OPENAI_API_KEY, models: [gpt-9]}}]\n"
        )),
        "clients[0].models[0] (line 2): `gpt-9` is not a configured model, alias or `provider/*`"
    );
    assert!(problem(&format!(
        "{providers}clients: [{{name: a, key: $OPENAI_API_KEY, limits: {{tokens_per_day: 5}}}}]\n"
    ))
    .contains("not enforced by this version"));
    assert!(problem(&format!(
        "{providers}clients: [{{name: a, key: $OPENAI_API_KEY, budgets: {{usd_per_day: 5}}}}]\n"
    ))
    .contains("not enforced by this version"));
    let c = load(&format!(
        "{providers}clients: [{{name: a, key: $OPENAI_API_KEY, budgets: {{tokens_per_day: 5}}, model_limits: {{'openai/*': {{requests_per_minute: 2}}}}}}]\n"
    ));
    assert_eq!(c.clients[0].tokens_per_day, Some(5));
    assert_eq!(c.clients[0].model_limits[0].model, "openai/*");
    assert_eq!(
        problem(&format!(
            "{providers}clients: [{{name: a, key: $OPENAI_API_KEY, model_limits: {{gpt-9: {{requests_per_minute: 2}}}}}}]\n"
        )),
        "clients[0].model_limits.gpt-9 (line 2): `gpt-9` is not a configured model, alias or `provider/*`"
    );
    let c = load(&format!(
        "{providers}clients: [{{name: a, key: $OPENAI_API_KEY, limits: {{requests_per_minute: 5, tokens_per_minute: 900}}}}]\n"
    ));
    assert_eq!(c.clients[0].requests_per_minute, Some(5));
    assert_eq!(c.clients[0].tokens_per_minute, Some(900));
    assert!(problem(&format!(
        "listeners: [{{type: model, name: l, auth: required}}]\n{providers}"
    ))
    .contains("needs at least one entry in `clients`"));
    let c = load(&format!(
        "listeners: [{{type: model, name: l, auth: required}}]\n{providers}clients: [{{name: a, key: $OPENAI_API_KEY, models: [openai/*]}}]\n"
    ));
    assert_eq!(c.listener.auth, ClientAuth::Required);
    assert_eq!(c.clients[0].digest, key_digest(b"sk-openai-secret"));
}

#[test]
fn plano_ratelimits_load_as_documented_and_bad_ones_name_their_line() {
    let providers = "model_providers:\n  - {model: openai/gpt-4o, access_key: k}\n  - {model: openai/gpt-4o-mini, access_key: k}\n";
    // Plano's documented example, unchanged.
    let c = load(&format!(
        "{providers}ratelimits:\n  - model: openai/gpt-4o\n    selector: {{key: x-user-id, value: '*'}}\n    limit: {{tokens: 100000, unit: hour}}\n  - model: openai/gpt-4o-mini\n    selector: {{key: X-Org-Id, value: acme-corp}}\n    limit: {{tokens: 500000, unit: day}}\n"
    ));
    assert_eq!(c.ratelimits.len(), 2);
    assert_eq!(c.ratelimits[0].value, None, "`*`: one limit per value");
    assert_eq!(c.ratelimits[0].period, std::time::Duration::from_secs(3600));
    assert_eq!(c.ratelimits[1].header, "x-org-id");
    assert_eq!(c.ratelimits[1].value.as_deref(), Some("acme-corp"));
    assert_eq!(
        c.ratelimits[1].period,
        std::time::Duration::from_secs(86_400),
        "a day is a day"
    );
    // What crashed Plano is a load error naming the line.
    let rule = |model: &str, tokens: &str, unit: &str| {
        format!("{providers}ratelimits:\n  - model: {model}\n    selector: {{key: x-user-id, value: '*'}}\n    limit: {{tokens: {tokens}, unit: {unit}}}\n")
    };
    assert_eq!(
        problem(&rule("openai/gpt-4o", "10", "minutes")),
        "ratelimits[0].limit.unit (line 7): unknown unit `minutes`; expected second, minute, hour or day"
    );
    assert!(problem(&rule("openai/gpt-4o", "0", "hour"))
        .starts_with("ratelimits[0].limit.tokens (line 7)"));
    assert_eq!(
        problem(&rule("openai/gpt-5", "10", "hour")),
        "ratelimits[0].model (line 5): `openai/gpt-5` is not a configured model, alias or `provider/*`"
    );
    // The bare id and `provider/*` are models too.
    assert_eq!(
        load(&rule("gpt-4o", "10", "second")).ratelimits[0].unit,
        "second"
    );
    assert_eq!(
        load(&rule("'openai/*'", "10", "second")).ratelimits.len(),
        1
    );
}

#[test]
fn the_state_store_is_redis_given_by_url_never_shown() {
    let providers = "model_providers: [{model: openai/gpt-4o, access_key: k}]\n";
    let c = load(&format!(
        "{providers}state: {{redis: {{url: 'redis://:hunter2@127.0.0.1:6379/0', timeout: 20ms, on_error: local}}}}\n"
    ));
    let redis = c.state.redis.as_ref().expect("redis");
    assert_eq!(redis.timeout, std::time::Duration::from_millis(20));
    assert_eq!(redis.on_error, crate::config::OnStoreError::Local);
    assert_eq!(redis.key_prefix, "switchyard:");
    assert!(!format!("{c:?}").contains("hunter2"));
    let bad = problem(&format!(
        "{providers}state: {{redis: {{url: 'http://:hunter2@x'}}}}\n"
    ));
    assert!(
        bad.starts_with("state.redis.url (line 2): not a Redis URL"),
        "{bad}"
    );
    assert!(!bad.contains("hunter2"));
    // Without Redis each process counts for itself.
    assert_eq!(load(providers).state.redis, None);
}

#[test]
fn an_access_key_no_header_can_carry_is_refused_at_load_without_being_shown() {
    let p = problem("model_providers: [{model: openai/gpt-4o, access_key: \"sk-abc\\ndef\"}]\n");
    assert_eq!(
        p,
        "model_providers[0].access_key (line 1): the key holds characters no HTTP header may carry"
    );
    let c = load("model_providers: [{model: openai/gpt-4o, access_key: sk-good}]\n");
    let key = c.providers[0].key_headers.as_ref().expect("made at load");
    assert_eq!(key.bearer.to_str().ok(), Some("Bearer sk-good"));
    assert!(key.bearer.is_sensitive() && key.raw.is_sensitive());
    assert!(!format!("{:?}", c.providers[0]).contains("sk-good"));
}
