//! Attribute names, in one place. HTTP, URL, server, client and error names are OpenTelemetry's
//! stable semantic conventions (v1.42); the `gen_ai.*` names are the GenAI conventions as the
//! semantic-conventions-genai repository has them at v0.1.0 (Development status, so they may
//! still move: this is the one file to change); `llm.*`, `request_id` and `plano.*` are what
//! Plano's spans carry and its `planoai trace` / `planoai obs` tools read.

// HTTP (server and client spans)
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_ROUTE: &str = "http.route";
pub const HTTP_RESEND_COUNT: &str = "http.request.resend_count";
pub const URL_PATH: &str = "url.path";
pub const URL_SCHEME: &str = "url.scheme";
pub const URL_FULL: &str = "url.full";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const CLIENT_ADDRESS: &str = "client.address";
pub const USER_AGENT: &str = "user_agent.original";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const ERROR_TYPE: &str = "error.type";

// GenAI (the model call)
pub const OPERATION: &str = "gen_ai.operation.name";
pub const PROVIDER: &str = "gen_ai.provider.name";
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
pub const REQUEST_STREAM: &str = "gen_ai.request.stream";
pub const PREVIOUS_RESPONSE: &str = "gen_ai.request.previous_response.id";
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const RESPONSE_ID: &str = "gen_ai.response.id";
pub const FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const CACHE_READ_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const CACHE_WRITE_TOKENS: &str = "gen_ai.usage.cache_write.input_tokens";
pub const OPENAI_API_TYPE: &str = "openai.api.type";

// switchyard
pub const ATTEMPTS: &str = "switchyard.attempts";
pub const ENDPOINT: &str = "switchyard.endpoint";
pub const CLIENT_API: &str = "switchyard.client_api";
pub const CLIENT_NAME: &str = "switchyard.client";
pub const ROUTE_SOURCE: &str = "switchyard.route.source";

// Plano's own names
pub const REQUEST_ID: &str = "request_id";
pub const PLANO_ROUTE: &str = "plano.route.name";
pub const ROUTE_SELECTED_MODEL: &str = "route.selected_model";
pub const ROUTING_DETERMINATION_MS: &str = "routing.determination_ms";
pub const LLM_MODEL: &str = "llm.model";
pub const LLM_PROVIDER: &str = "llm.provider";
pub const LLM_IS_STREAMING: &str = "llm.is_streaming";
pub const LLM_TTFT_MS: &str = "llm.time_to_first_token";
pub const LLM_DURATION_MS: &str = "llm.duration_ms";
pub const LLM_PROMPT_TOKENS: &str = "llm.usage.prompt_tokens";
pub const LLM_COMPLETION_TOKENS: &str = "llm.usage.completion_tokens";
pub const LLM_TOTAL_TOKENS: &str = "llm.usage.total_tokens";
pub const LLM_CACHED_INPUT_TOKENS: &str = "llm.usage.cached_input_tokens";
pub const LLM_CACHE_CREATION_TOKENS: &str = "llm.usage.cache_creation_tokens";

/// The GenAI conventions' `gen_ai.provider.name` for a Plano provider prefix: the registry's
/// value where it has one, else the prefix itself (a custom value, as the conventions allow).
pub fn provider(prefix: &str) -> &str {
    match prefix {
        "openai" | "chatgpt" => "openai",
        "anthropic" | "claude" => "anthropic",
        "amazon_bedrock" | "amazon" | "bedrock" => "aws.bedrock",
        "azure_openai" => "azure.ai.openai",
        "gemini" | "google" => "gcp.gemini",
        "vertex_ai" => "gcp.vertex_ai",
        "mistral" => "mistral_ai",
        "xai" | "grok" => "x_ai",
        "moonshotai" | "moonshot" => "moonshot_ai",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn provider_names_follow_the_registry() {
        assert_eq!(super::provider("amazon_bedrock"), "aws.bedrock");
        assert_eq!(super::provider("azure_openai"), "azure.ai.openai");
        assert_eq!(super::provider("groq"), "groq");
        assert_eq!(super::provider("together_ai"), "together_ai");
    }
}
