//! The built-in provider catalog: for each known `model` prefix, the wire API it speaks and where
//! it lives when no `base_url` is given. This table is the one place that knows provider hosts.

/// The wire API an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// OpenAI chat completions (and the many providers compatible with it).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Azure OpenAI: OpenAI chat completions under `/openai/deployments/<model>/…?api-version=`,
    /// authenticated with an `api-key` header.
    AzureOpenAi,
    /// Amazon Bedrock's Converse API: `/model/<id>/converse` and `/converse-stream` (binary
    /// event stream), a Bedrock API key as a Bearer token.
    Bedrock,
    /// The ChatGPT Codex backend (`chatgpt/`, a ChatGPT subscription): the Responses API,
    /// streamed only and keeping nothing (`store: false`), with the client's own ChatGPT token.
    ChatGpt,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::OpenAi => "openai",
            Interface::Anthropic => "anthropic",
            Interface::AzureOpenAi => "azure_openai",
            Interface::Bedrock => "amazon_bedrock",
            Interface::ChatGpt => "chatgpt",
        }
    }
}

/// A provider switchyard knows by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltIn {
    pub prefix: &'static str,
    pub aliases: &'static [&'static str],
    pub interface: Interface,
    /// Default host (always HTTPS on 443); `None` when `base_url` is required.
    pub host: Option<&'static str>,
    /// Path that replaces the client's `/v1` prefix.
    pub path_prefix: &'static str,
}

const fn openai(prefix: &'static str, host: Option<&'static str>, path: &'static str) -> BuiltIn {
    BuiltIn {
        prefix,
        aliases: &[],
        interface: Interface::OpenAi,
        host,
        path_prefix: path,
    }
}

/// Known prefixes (facts from Plano's provider table).
pub const CATALOG: &[BuiltIn] = &[
    openai("openai", Some("api.openai.com"), "/v1"),
    BuiltIn {
        prefix: "anthropic",
        aliases: &[],
        interface: Interface::Anthropic,
        host: Some("api.anthropic.com"),
        path_prefix: "/v1",
    },
    BuiltIn {
        aliases: &["google"],
        ..openai(
            "gemini",
            Some("generativelanguage.googleapis.com"),
            "/v1beta/openai",
        )
    },
    openai("groq", Some("api.groq.com"), "/openai/v1"),
    openai("mistral", Some("api.mistral.ai"), "/v1"),
    openai("deepseek", Some("api.deepseek.com"), "/v1"),
    openai("xai", Some("api.x.ai"), "/v1"),
    BuiltIn {
        aliases: &["together"],
        ..openai("together_ai", Some("api.together.xyz"), "/v1")
    },
    openai("moonshotai", Some("api.moonshot.ai"), "/v1"),
    openai("zhipu", Some("open.bigmodel.cn"), "/api/paas/v4"),
    openai("xiaomi", Some("api.xiaomimimo.com"), "/v1"),
    BuiltIn {
        aliases: &["do", "do_ai"],
        ..openai("digitalocean", Some("inference.do-ai.run"), "/v1")
    },
    openai("openrouter", Some("openrouter.ai"), "/api/v1"),
    openai("vercel", Some("ai-gateway.vercel.sh"), "/v1"),
    openai("qwen", None, "/compatible-mode/v1"),
    openai("ollama", None, "/v1"),
    // Plano's router and orchestrator models (Arch-Router, Plano-Orchestrator) self-hosted on
    // vLLM or Ollama: OpenAI-compatible, at the given base_url.
    openai("plano", None, "/v1"),
    BuiltIn {
        prefix: "azure_openai",
        aliases: &[],
        interface: Interface::AzureOpenAi,
        host: None,
        path_prefix: "/openai/deployments",
    },
    // The region is in the host (`bedrock-runtime.<region>.amazonaws.com`): `base_url` is
    // required, as in Plano.
    BuiltIn {
        prefix: "amazon_bedrock",
        aliases: &["amazon"],
        interface: Interface::Bedrock,
        host: None,
        path_prefix: "",
    },
    // Its path replaces `/v1`: requests go to `/backend-api/codex/responses` (Plano's default).
    BuiltIn {
        prefix: "chatgpt",
        aliases: &[],
        interface: Interface::ChatGpt,
        host: Some("chatgpt.com"),
        path_prefix: "/backend-api/codex",
    },
];

/// The headers the ChatGPT Codex backend expects from its own client, sent to `chatgpt`
/// providers unless the entry's `headers` give them (Plano sends the same; the account id comes
/// from `CHATGPT_ACCOUNT_ID` when it is set, and each process has its own `session_id`).
pub const CHATGPT_HEADERS: &[(&str, &str)] = &[
    ("originator", "codex_cli_rs"),
    (
        "user-agent",
        "codex_cli_rs/0.0.0 (Unknown 0; unknown) unknown",
    ),
];

/// Providers with a Responses API of their own (`/v1/responses`), which gets Responses requests
/// as they are; every other provider gets them translated (Plano's list).
pub const NATIVE_RESPONSES: &[&str] = &["openai", "xai", "vercel"];

/// The `api-version` sent to Azure OpenAI unless the client gives one (Plano's default).
pub const AZURE_API_VERSION: &str = "2025-01-01-preview";

/// Looks a prefix (or one of its aliases) up in the catalog.
pub fn built_in(prefix: &str) -> Option<&'static BuiltIn> {
    CATALOG
        .iter()
        .find(|b| b.prefix == prefix || b.aliases.contains(&prefix))
}

/// Maps a `provider_interface` value to a wire API and, for catalog names, the default path.
/// Plano's OpenAI-compatible interface names (`groq`, `mistral`, …) are accepted as OpenAI wire.
pub fn interface_named(name: &str) -> Option<(Interface, &'static str)> {
    match name {
        "openai" => Some((Interface::OpenAi, "/v1")),
        "anthropic" => Some((Interface::Anthropic, "/v1")),
        "edenai" => Some((Interface::OpenAi, "/v3")),
        _ => built_in(name)
            .filter(|b| b.interface == Interface::OpenAi)
            .map(|b| (Interface::OpenAi, b.path_prefix)),
    }
}

/// The accepted `provider_interface` values, for error messages.
pub fn interface_names() -> String {
    let mut names = vec!["openai", "anthropic", "edenai"];
    names.extend(
        CATALOG
            .iter()
            .filter(|b| b.interface == Interface::OpenAi && b.prefix != "openai")
            .map(|b| b.prefix),
    );
    names.join(", ")
}

/// One entry of OpenAI's model list.
pub fn model_entry(id: &str, owned_by: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "object": "model",
        "created": 0,
        "owned_by": owned_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per catalog entry: (prefix, interface, host, path prefix).
    const EXPECTED: &[(&str, Interface, Option<&str>, &str)] = &[
        ("openai", Interface::OpenAi, Some("api.openai.com"), "/v1"),
        (
            "anthropic",
            Interface::Anthropic,
            Some("api.anthropic.com"),
            "/v1",
        ),
        (
            "gemini",
            Interface::OpenAi,
            Some("generativelanguage.googleapis.com"),
            "/v1beta/openai",
        ),
        (
            "google",
            Interface::OpenAi,
            Some("generativelanguage.googleapis.com"),
            "/v1beta/openai",
        ),
        (
            "groq",
            Interface::OpenAi,
            Some("api.groq.com"),
            "/openai/v1",
        ),
        ("mistral", Interface::OpenAi, Some("api.mistral.ai"), "/v1"),
        (
            "deepseek",
            Interface::OpenAi,
            Some("api.deepseek.com"),
            "/v1",
        ),
        ("xai", Interface::OpenAi, Some("api.x.ai"), "/v1"),
        (
            "together_ai",
            Interface::OpenAi,
            Some("api.together.xyz"),
            "/v1",
        ),
        (
            "together",
            Interface::OpenAi,
            Some("api.together.xyz"),
            "/v1",
        ),
        (
            "moonshotai",
            Interface::OpenAi,
            Some("api.moonshot.ai"),
            "/v1",
        ),
        (
            "zhipu",
            Interface::OpenAi,
            Some("open.bigmodel.cn"),
            "/api/paas/v4",
        ),
        (
            "xiaomi",
            Interface::OpenAi,
            Some("api.xiaomimimo.com"),
            "/v1",
        ),
        (
            "digitalocean",
            Interface::OpenAi,
            Some("inference.do-ai.run"),
            "/v1",
        ),
        ("do", Interface::OpenAi, Some("inference.do-ai.run"), "/v1"),
        (
            "openrouter",
            Interface::OpenAi,
            Some("openrouter.ai"),
            "/api/v1",
        ),
        (
            "vercel",
            Interface::OpenAi,
            Some("ai-gateway.vercel.sh"),
            "/v1",
        ),
        ("qwen", Interface::OpenAi, None, "/compatible-mode/v1"),
        ("ollama", Interface::OpenAi, None, "/v1"),
        ("plano", Interface::OpenAi, None, "/v1"),
        (
            "azure_openai",
            Interface::AzureOpenAi,
            None,
            "/openai/deployments",
        ),
        ("amazon_bedrock", Interface::Bedrock, None, ""),
        ("amazon", Interface::Bedrock, None, ""),
        (
            "chatgpt",
            Interface::ChatGpt,
            Some("chatgpt.com"),
            "/backend-api/codex",
        ),
    ];

    #[test]
    fn every_row_resolves() {
        for (prefix, interface, host, path) in EXPECTED {
            let row = built_in(prefix).unwrap_or_else(|| panic!("{prefix} missing"));
            assert_eq!(row.interface, *interface, "{prefix}");
            assert_eq!(row.host, *host, "{prefix}");
            assert_eq!(row.path_prefix, *path, "{prefix}");
        }
        assert_eq!(built_in("custom"), None);
    }

    #[test]
    fn interface_names_map_to_wire_apis() {
        assert_eq!(interface_named("openai"), Some((Interface::OpenAi, "/v1")));
        assert_eq!(
            interface_named("anthropic"),
            Some((Interface::Anthropic, "/v1"))
        );
        assert_eq!(
            interface_named("groq"),
            Some((Interface::OpenAi, "/openai/v1"))
        );
        assert_eq!(interface_named("cobol"), None);
        assert!(interface_names().contains("groq"));
    }
}
