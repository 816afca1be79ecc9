//! What a translated request must know about the model it goes to: facts that differ between
//! model families on the same API, kept in these tables (from the providers' API references)
//! rather than tested for across the translation code.

/// The upstream of a translated request: its provider prefix and model id.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The provider's prefix (`openai`, `groq`, `anthropic`, …).
    pub prefix: &'a str,
    /// The model id the upstream is asked for.
    pub model: &'a str,
    /// The provider's `default_max_tokens` (switchyard key): overrides the table below.
    pub default_max_tokens: Option<u64>,
}

/// OpenAI's reasoning families: they take `max_completion_tokens` and `reasoning_effort`, and
/// refuse `temperature` other than 1, `top_p`, penalties and (o-series) `stop`.
const REASONING: &[&str] = &["o1", "o3", "o4", "gpt-5"];
/// Members of those families that are chat models, not reasoning ones.
const NOT_REASONING: &[&str] = &["gpt-5-chat"];

/// OpenAI-interface providers whose chat API documents `max_completion_tokens`; the others get
/// `max_tokens`.
const MAX_COMPLETION_TOKENS: &[&str] = &["openai", "azure_openai", "groq"];

/// OpenAI-interface providers that take `file` content parts (PDF documents).
const FILE_PARTS: &[&str] = &["openai", "azure_openai", "openrouter"];

/// Anthropic models' output limits (the most `max_tokens` may ask), by id prefix, longest
/// first where they overlap. A chat client that gives no limit gets the model's own.
const ANTHROPIC_OUTPUT: &[(&str, u64)] = &[
    ("claude-opus-4-5", 64_000),
    ("claude-opus-4-1", 32_000),
    ("claude-opus-4", 32_000),
    ("claude-sonnet-4", 64_000),
    ("claude-haiku-4", 64_000),
    ("claude-3-7-sonnet", 64_000),
    ("claude-3-5-sonnet", 8_192),
    ("claude-3-5-haiku", 8_192),
    ("claude-3", 4_096),
];
/// For an Anthropic model the table does not know.
const ANTHROPIC_OUTPUT_DEFAULT: u64 = 8_192;

/// `reasoning_effort` ↔ Anthropic `thinking.budget_tokens`. Each effort asks this budget; a
/// budget maps to the first effort whose budget it does not exceed.
pub const EFFORT_BUDGETS: &[(&str, u64)] = &[("low", 2_048), ("medium", 8_192), ("high", 24_576)];

impl Target<'_> {
    /// The model id without a vendor path (`openai/o3` on OpenRouter is `o3`).
    fn id(&self) -> &str {
        self.model.rsplit('/').next().unwrap_or(self.model)
    }

    /// Whether it is one of OpenAI's reasoning models.
    pub fn reasoning(&self) -> bool {
        let id = self.id();
        REASONING.iter().any(|f| family(id, f)) && !NOT_REASONING.iter().any(|f| family(id, f))
    }

    /// Whether the output limit is sent as `max_completion_tokens` (else `max_tokens`).
    pub fn max_completion_tokens(&self) -> bool {
        MAX_COMPLETION_TOKENS.contains(&self.prefix) || self.reasoning()
    }

    /// Whether PDF documents can be sent as `file` parts.
    pub fn file_parts(&self) -> bool {
        FILE_PARTS.contains(&self.prefix)
    }

    /// `max_tokens` for an Anthropic request whose client gave none.
    pub fn anthropic_max_tokens(&self) -> u64 {
        let id = self.id();
        self.default_max_tokens.unwrap_or_else(|| {
            ANTHROPIC_OUTPUT
                .iter()
                .find(|(prefix, _)| id.starts_with(prefix))
                .map_or(ANTHROPIC_OUTPUT_DEFAULT, |(_, n)| *n)
        })
    }
}

/// Whether `id` is `family` or a member of it (`o3`, `o3-mini`, `o3-2025-04-16`; not `o30`).
fn family(id: &str, family: &str) -> bool {
    id.strip_prefix(family)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '.']))
}

/// The `reasoning_effort` for a thinking budget.
pub fn effort_for(budget: u64) -> &'static str {
    EFFORT_BUDGETS
        .iter()
        .find(|(_, b)| budget <= *b)
        .map_or("high", |(e, _)| e)
}

/// The thinking budget for a `reasoning_effort`; `None` for `minimal`, `none` and unknown words.
pub fn budget_for(effort: &str) -> Option<u64> {
    EFFORT_BUDGETS
        .iter()
        .find(|(e, _)| *e == effort)
        .map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(prefix: &'static str, model: &'static str) -> Target<'static> {
        Target {
            prefix,
            model,
            default_max_tokens: None,
        }
    }

    #[test]
    fn reasoning_families_are_told_by_id() {
        for m in [
            "o1",
            "o3-mini",
            "o4-mini-2025-04-16",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5.1",
            "openai/o3",
        ] {
            assert!(t("openai", m).reasoning(), "{m}");
        }
        for m in [
            "gpt-4o",
            "gpt-4.1-mini",
            "o30",
            "gpt-5-chat-latest",
            "llama-3.3-70b",
        ] {
            assert!(!t("openai", m).reasoning(), "{m}");
        }
    }

    #[test]
    fn the_output_limit_field_follows_the_provider_and_family() {
        assert!(t("openai", "gpt-4o").max_completion_tokens());
        assert!(t("groq", "llama-3.3-70b").max_completion_tokens());
        assert!(!t("deepseek", "deepseek-chat").max_completion_tokens());
        assert!(!t("ollama", "llama3.1").max_completion_tokens());
        // A reasoning model refuses max_tokens wherever it is served.
        assert!(t("openrouter", "openai/o3").max_completion_tokens());
    }

    #[test]
    fn anthropic_output_limits_come_from_the_table_or_the_config() {
        for (model, limit) in [
            ("claude-sonnet-4-5-20250929", 64_000),
            ("claude-opus-4-1-20250805", 32_000),
            ("claude-3-5-haiku-latest", 8_192),
            ("claude-3-haiku-20240307", 4_096),
            ("claude-next", 8_192),
        ] {
            assert_eq!(
                t("anthropic", model).anthropic_max_tokens(),
                limit,
                "{model}"
            );
        }
        let set = Target {
            default_max_tokens: Some(1_000),
            ..t("anthropic", "claude-sonnet-4-5")
        };
        assert_eq!(set.anthropic_max_tokens(), 1_000);
    }

    #[test]
    fn efforts_and_budgets_map_both_ways() {
        for (effort, budget) in EFFORT_BUDGETS {
            assert_eq!(budget_for(effort), Some(*budget));
            assert_eq!(effort_for(*budget), *effort);
        }
        assert_eq!(effort_for(1_024), "low");
        assert_eq!(effort_for(10_000), "high");
        assert_eq!(effort_for(100_000), "high");
        assert_eq!(budget_for("minimal"), None);
    }
}
