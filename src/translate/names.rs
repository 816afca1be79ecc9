//! Tool names the other API refuses: OpenAI takes at most 64 characters and Anthropic 128, both
//! only `[a-zA-Z0-9_-]`, while MCP clients name tools `mcp__<server>__<tool>` of any length and
//! some OpenAI-compatible clients use `.`. Such a name is made to fit deterministically (the
//! same name always gives the same result, so a conversation's history and its tools agree;
//! `limits::fit`) and the original is restored in the answer, streamed or whole.

use super::limits;

/// The names changed for one request: sent → original.
#[derive(Debug, Default, Clone)]
pub struct ToolNames(Vec<(String, String)>);

impl ToolNames {
    /// The name to send for `name` to an API that takes at most `max` characters (remembered
    /// when changed).
    pub fn fit(&mut self, name: &str, max: usize) -> String {
        let sent = limits::fit(name, max, limits::name_char).into_owned();
        if sent != name && !self.0.iter().any(|(s, _)| *s == sent) {
            self.0.push((sent.clone(), name.to_owned()));
        }
        sent
    }

    /// The client's name for a name the upstream used.
    pub fn original<'a>(&'a self, name: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(s, _)| s == name)
            .map_or(name, |(_, o)| o.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = limits::openai::TOOL_NAME_MAX;

    #[test]
    fn long_names_are_shortened_the_same_way_and_restored() {
        let long = "mcp__github_enterprise_server__search_repositories_by_topic_and_language";
        let mut names = ToolNames::default();
        let short = names.fit(long, MAX);
        assert_eq!(short.len(), MAX);
        assert!(short.starts_with("mcp__github_enterprise_server__search_repositories_by_"));
        // The same as every earlier version: 55 characters, `_`, FNV-1a of the whole.
        assert_eq!(
            short,
            "mcp__github_enterprise_server__search_repositories_by_t_2ffa4440"
        );
        assert_eq!(names.fit(long, MAX), short, "deterministic");
        assert_eq!(
            ToolNames::default().fit(long, MAX),
            short,
            "across requests too"
        );
        assert_eq!(names.original(&short), long);
        // Names that fit pass, and unknown names come back as they are.
        assert_eq!(names.fit("get_weather", MAX), "get_weather");
        assert_eq!(names.original("get_weather"), "get_weather");
        // Two long names with a common start stay apart.
        let other = format!("{}_v2", &long[..60]);
        assert_ne!(names.fit(&other, MAX), short);
    }

    #[test]
    fn refused_characters_are_replaced_and_restored() {
        let mut names = ToolNames::default();
        let sent = names.fit("caldav-mcp.create-event", limits::anthropic::TOOL_NAME_MAX);
        assert!(sent.chars().all(limits::name_char), "{sent}");
        assert!(sent.starts_with("caldav-mcp_create-event_"));
        assert_eq!(names.original(&sent), "caldav-mcp.create-event");
        // A 100-character name fits Anthropic's 128 as it is.
        let hundred = "a".repeat(100);
        assert_eq!(
            names.fit(&hundred, limits::anthropic::TOOL_NAME_MAX),
            hundred
        );
        assert!(names.fit(&hundred, MAX).len() == MAX);
    }
}
