//! Tool names the other API refuses: OpenAI and Anthropic take at most 64 characters, while MCP
//! clients name tools `mcp__<server>__<tool>` of any length. A longer name is shortened
//! deterministically (the same name always gives the same short one, so a conversation's
//! history and its tools agree) and the original is restored in the answer, streamed or whole.

/// The longest tool name both APIs accept.
pub const MAX: usize = 64;

/// The names shortened for one request: short → original.
#[derive(Debug, Default, Clone)]
pub struct ToolNames(Vec<(String, String)>);

impl ToolNames {
    /// The name to send for `name` (remembered when shortened).
    pub fn short(&mut self, name: &str) -> String {
        if name.len() <= MAX {
            return name.to_owned();
        }
        let short = shorten(name);
        if !self.0.iter().any(|(s, _)| *s == short) {
            self.0.push((short.clone(), name.to_owned()));
        }
        short
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

/// The first 55 bytes (on a character boundary), `_` and 8 hex digits of a hash of the whole:
/// FNV-1a, fixed, so a name shortens the same across gateway versions and replicas.
fn shorten(name: &str) -> String {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut cut = MAX - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash:08x}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_the_same_way_and_restored() {
        let long = "mcp__github_enterprise_server__search_repositories_by_topic_and_language";
        let mut names = ToolNames::default();
        let short = names.short(long);
        assert_eq!(short.len(), MAX);
        assert!(short.starts_with("mcp__github_enterprise_server__search_repositories_by_"));
        assert_eq!(names.short(long), short, "deterministic");
        assert_eq!(
            ToolNames::default().short(long),
            short,
            "across requests too"
        );
        assert_eq!(names.original(&short), long);
        // Names that fit pass, and unknown names come back as they are.
        assert_eq!(names.short("get_weather"), "get_weather");
        assert_eq!(names.original("get_weather"), "get_weather");
        // Two long names with a common start stay apart.
        let other = format!("{}_v2", &long[..60]);
        assert_ne!(names.short(&other), short);
    }
}
