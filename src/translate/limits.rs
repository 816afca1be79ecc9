//! What each target API refuses that a translation could produce, from the providers' API
//! references and the errors they answer: OpenAI chat completions and Anthropic Messages.
//! Translated requests respect every row of [`TABLE`]; a value that does not fit is made to fit
//! stably (the same input always gives the same output, on every replica) or the request is
//! answered with a 400 that names the field, never sent to fail upstream. README's "Limits of
//! the target APIs" is [`markdown`] of this table (a unit test keeps them the same), and the
//! mock providers of the tests refuse what these rows say the real APIs refuse.

use std::borrow::Cow;

/// OpenAI chat completions (and the OpenAI-compatible APIs, which follow its schema).
pub mod openai {
    /// `user` and `safety_identifier`.
    pub const USER_MAX: usize = 64;
    /// `tools[].function.name`, also `[a-zA-Z0-9_-]` only.
    pub const TOOL_NAME_MAX: usize = 64;
    /// `tools`.
    pub const TOOLS_MAX: usize = 128;
    /// `stop`.
    pub const STOP_MAX: usize = 4;
    /// `messages[].tool_calls[].id` and a tool message's `tool_call_id`.
    pub const TOOL_CALL_ID_MAX: usize = 40;
    /// A message's `content` string (10 MiB).
    pub const CONTENT_MAX: usize = 10_485_760;
}

/// Anthropic Messages.
pub mod anthropic {
    /// `metadata.user_id`.
    pub const USER_ID_MAX: usize = 256;
    /// `tools[].name`, also `[a-zA-Z0-9_-]` only.
    pub const TOOL_NAME_MAX: usize = 128;
    /// Blocks (tools, system, messages) that carry `cache_control`.
    pub const CACHE_CONTROL_MAX: usize = 4;
    /// `source.media_type` of a base64 image.
    pub const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
    /// `thinking.budget_tokens` (and it must stay below `max_tokens`).
    pub const MIN_THINKING_BUDGET: u64 = 1_024;
}

/// One limit a target API enforces, and what a translation into that API does about it.
#[derive(Debug)]
pub struct Limit {
    pub api: &'static str,
    pub field: &'static str,
    pub limit: &'static str,
    pub translation: &'static str,
}

const fn row(
    api: &'static str,
    field: &'static str,
    limit: &'static str,
    translation: &'static str,
) -> Limit {
    Limit {
        api,
        field,
        limit,
        translation,
    }
}

const OPENAI: &str = "OpenAI chat";
const ANTHROPIC: &str = "Anthropic Messages";

/// The table (README renders it; numbers are the constants above).
pub const TABLE: &[Limit] = &[
    row(OPENAI, "`user`, `safety_identifier`", "≤ 64 characters", "`metadata.user_id` → `safety_identifier` for `openai`, `user` elsewhere; a longer one becomes its SHA-256 in hex (64 characters)"),
    row(OPENAI, "`tools[].function.name`", "`[a-zA-Z0-9_-]`, ≤ 64 characters", "longer names are cut to 55, `_` and 8 hex digits of a hash, and restored in answers and streams"),
    row(OPENAI, "`tools`", "≤ 128", "more: 400 naming `tools`"),
    row(OPENAI, "`stop`", "≤ 4 sequences", "more `stop_sequences`: 400 naming `stop_sequences`"),
    row(OPENAI, "`tool_calls[].id`, `tool_call_id`", "≤ 40 characters", "longer ids are cut to 31, `_` and 8 hex digits of a hash (call and result alike)"),
    row(OPENAI, "`messages[].content`", "≤ 10,485,760 characters per string", "longer: 400 naming the message"),
    row(OPENAI, "`messages`", "a `tool` message answers the `tool_calls` right before it, every call is answered", "tool results become `tool` messages right after the calls, before the turn's other content"),
    row(ANTHROPIC, "`metadata`", "`user_id` only, ≤ 256 characters", "`safety_identifier` or `user` → `user_id`; a longer one becomes its SHA-256 in hex"),
    row(ANTHROPIC, "`tools[].name`", "`[a-zA-Z0-9_-]`, 1–128 characters", "other characters become `_` plus 8 hex digits of a hash, restored in answers and streams"),
    row(ANTHROPIC, "`tool_use.id`, `tool_use_id`", "`[a-zA-Z0-9_-]`", "other characters become `_` plus 8 hex digits of a hash (call and result alike)"),
    row(ANTHROPIC, "`cache_control`", "≤ 4 blocks", "more: the first ones are dropped (a later breakpoint caches everything before it)"),
    row(ANTHROPIC, "text blocks", "not empty or whitespace only", "such blocks are dropped; a message left empty is dropped"),
    row(ANTHROPIC, "last assistant turn (prefill)", "no trailing whitespace", "trimmed"),
    row(ANTHROPIC, "image `media_type`", "`image/jpeg`, `image/png`, `image/gif`, `image/webp`", "another type: 400 naming the message"),
    row(ANTHROPIC, "`stop_sequences`", "not whitespace only", "such stops are dropped"),
    row(ANTHROPIC, "`temperature`", "0–1", "clamped (OpenAI allows up to 2)"),
    row(ANTHROPIC, "`thinking.budget_tokens`", "≥ 1,024 and < `max_tokens`; not with a forced tool", "capped below `max_tokens`; none when under 1,024 or with a forced tool"),
];

/// [`TABLE`] as a Markdown table.
pub fn markdown() -> String {
    let mut out = String::from(
        "| target API | field | the API takes | a translated request |\n|---|---|---|---|\n",
    );
    for l in TABLE {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            l.api, l.field, l.limit, l.translation
        ));
    }
    out
}

/// Whether a character may appear in a tool name (both APIs) or an Anthropic tool-use id.
pub fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Any character: OpenAI's tool-call ids have no pattern, only a length.
pub fn any_char(_: char) -> bool {
    true
}

/// `id` as a target takes it: at most `max` bytes of characters `allowed`. One that fits is
/// kept; another is cut to `max - 9` bytes, its refused characters replaced by `_`, then `_`
/// and 8 hex digits of FNV-1a over the whole, so the same id always gives the same result
/// (across requests, versions and replicas) and two ids stay apart.
pub fn fit(id: &str, max: usize, allowed: fn(char) -> bool) -> Cow<'_, str> {
    if id.len() <= max && id.chars().all(allowed) {
        return Cow::Borrowed(id);
    }
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut kept = String::new();
    for c in id.chars() {
        let c = if allowed(c) { c } else { '_' };
        if kept.len() + c.len_utf8() > max.saturating_sub(9) {
            break;
        }
        kept.push(c);
    }
    Cow::Owned(format!("{kept}_{hash:08x}"))
}

/// A user identity as a target takes it: itself when it has at most `max` characters, else
/// its SHA-256 in hex (64 characters): stable, opaque, and the same user stays one user.
pub fn user_id(id: &str, max: usize) -> Cow<'_, str> {
    if id.chars().count() <= max {
        return Cow::Borrowed(id);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    Cow::Owned(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_fit_are_kept_and_others_fit_stably() {
        assert_eq!(fit("toolu_01A", 40, any_char), "toolu_01A");
        // Kimi's ids carry `.` and `:`, which Anthropic refuses.
        let kimi = fit("functions.get_weather:0", usize::MAX, name_char);
        assert!(kimi.starts_with("functions_get_weather_0_"), "{kimi}");
        assert!(kimi.chars().all(name_char));
        assert_eq!(kimi, fit("functions.get_weather:0", usize::MAX, name_char));
        // Two ids that differ only in a refused character stay apart.
        assert_ne!(kimi, fit("functions_get_weather_0", usize::MAX, name_char));
        assert_ne!(kimi, fit("functions.get_weather:1", usize::MAX, name_char));
        let long = "fc_0f0e50a1476a6c35006912c58dc9f8819192c25864eb16f07f";
        let short = fit(long, openai::TOOL_CALL_ID_MAX, any_char);
        assert_eq!(short.len(), 40);
        assert!(short.starts_with(&long[..31]));
        // Multi-byte characters are never split.
        let wide = "é".repeat(40);
        assert!(fit(&wide, 40, any_char).len() <= 40);
    }

    #[test]
    fn long_user_ids_become_their_sha256() {
        assert_eq!(user_id("alice", 64), "alice");
        let claude_code = r#"{"device_id":"5f0a8e2c9b7d4e1f3a6c8b0d2e4f6a8c0b2d4e6f8a0c2e4b6d8f0a2c4e6b8d0f","account_uuid":"","session_id":"3c1e2b8a-6f4d-4a7e-9b2c-1d0e8f7a6b5c"}"#;
        let short = user_id(claude_code, openai::USER_MAX);
        assert_eq!(short.len(), 64);
        assert!(short.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(short, user_id(claude_code, 64));
        // Anthropic's limit is wider: the same value passes whole.
        assert_eq!(user_id(claude_code, anthropic::USER_ID_MAX), claude_code);
        // sha256("abc"), the standard test vector, over the limit of 2.
        assert_eq!(
            user_id("abc", 2),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn readme_has_the_table() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md must contain this table:\n{}",
            markdown()
        );
    }
}
