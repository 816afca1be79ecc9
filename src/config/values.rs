//! Scalar value types of the config file: secrets, `$VAR` expansion, durations and sizes.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// A credential or other sensitive string. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An `access_key` as the header values a request carries it in (`Bearer <key>`, or the key
/// alone), made once at load, not formatted and copied for every request; marked sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHeaders {
    pub bearer: http::HeaderValue,
    pub raw: http::HeaderValue,
}

impl KeyHeaders {
    /// `None` when the key cannot be a header value.
    pub fn of(key: &str) -> Option<KeyHeaders> {
        let mut bearer = http::HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
        let mut raw = http::HeaderValue::from_str(key).ok()?;
        bearer.set_sensitive(true);
        raw.set_sensitive(true);
        Some(KeyHeaders { bearer, raw })
    }
}

impl fmt::Debug for KeyHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHeaders(***)")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Expands `$VAR` and `${VAR}` from `lookup`, as Plano's `envsubst` step does, except that a
/// variable that is not set is an error naming it instead of a silent empty string.
/// `$$` is a literal `$`; a `$` not followed by a name is kept as is.
pub fn expand_env(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                return Err(ExpandError::Unterminated);
            };
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if !is_var_name(name) {
            if after.starts_with('{') {
                return Err(ExpandError::BadName(name.to_owned()));
            }
            out.push('$');
            rest = after;
            continue;
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => return Err(ExpandError::Missing(name.to_owned())),
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, PartialEq, Eq)]
pub enum ExpandError {
    Missing(String),
    BadName(String),
    Unterminated,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Missing(name) => write!(f, "environment variable {name} is not set"),
            ExpandError::BadName(name) => write!(f, "`${{{name}}}` is not a valid variable name"),
            ExpandError::Unterminated => f.write_str("`${` without a closing `}`"),
        }
    }
}

/// Parses a `.env` file: `NAME=value` lines, optionally prefixed with `export`, values optionally
/// in single or double quotes; blank lines and `#` comments are skipped. An error names its
/// (1-based) line.
pub fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, (u64, String)> {
    let mut vars = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((name, value)) = line.split_once('=') else {
            return Err((line_no, "expected NAME=value".into()));
        };
        let name = name.trim();
        if !is_var_name(name) {
            return Err((line_no, format!("`{name}` is not a valid variable name")));
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => match value[1..].find(q) {
                Some(end) => &value[1..=end],
                None => return Err((line_no, "unterminated quote".into())),
            },
            // An unquoted value ends at a ` #` comment.
            _ => value.split(" #").next().unwrap_or("").trim_end(),
        };
        vars.insert(name.to_owned(), value.to_owned());
    }
    Ok(vars)
}

/// Parses `300s`, `1.5s`, `250ms`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let secs = number * factor;
    (0.0..1e9)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// Parses `32MiB`, `10MB`, `512KiB`, `1GiB`, `1024B` or a bare number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "kB" | "K" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "HOST" => Some("db".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_both_forms() {
        assert_eq!(expand_env("$KEY", &env).unwrap(), "sk-1");
        assert_eq!(expand_env("${KEY}", &env).unwrap(), "sk-1");
        assert_eq!(
            expand_env("pg://${HOST}:5432/$HOST-x", &env).unwrap(),
            "pg://db:5432/db-x"
        );
        assert_eq!(expand_env("no vars", &env).unwrap(), "no vars");
        assert_eq!(expand_env("cost $5 $$KEY", &env).unwrap(), "cost $5 $KEY");
    }

    #[test]
    fn missing_variable_is_an_error_that_names_it() {
        assert_eq!(
            expand_env("$OPENAI_API_KEY", &env),
            Err(ExpandError::Missing("OPENAI_API_KEY".into()))
        );
        assert_eq!(
            expand_env("Bearer ${NOPE}", &env),
            Err(ExpandError::Missing("NOPE".into()))
        );
        assert_eq!(expand_env("${KEY", &env), Err(ExpandError::Unterminated));
    }

    #[test]
    fn dotenv_files() {
        let vars = parse_dotenv(
            "# keys\nOPENAI_API_KEY=sk-1\nexport ANTHROPIC_API_KEY = \"sk-2 x\"\n\nQ='a#b' \nC=v # note\n",
        )
        .unwrap();
        assert_eq!(vars["OPENAI_API_KEY"], "sk-1");
        assert_eq!(vars["ANTHROPIC_API_KEY"], "sk-2 x");
        assert_eq!(vars["Q"], "a#b");
        assert_eq!(vars["C"], "v");
        assert_eq!(
            parse_dotenv("A=1\nnot a pair\n"),
            Err((2, "expected NAME=value".into()))
        );
        assert!(parse_dotenv("1X=2").is_err());
        assert!(parse_dotenv("X=\"open").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sk-live-123".into());
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }
}
