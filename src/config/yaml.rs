//! A YAML document as a tree of nodes that remember their line, and a small decoder over it that
//! collects every problem (with its key path and line) instead of stopping at the first one.
//!
//! serde derive stops at the first error and cannot tell "unknown key" from "key Plano knows but
//! switchyard does not implement yet". Parsing once into [`Node`]s (with serde-saphyr's `Spanned`)
//! and decoding by hand gives all problems at once, each pointing at its line.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML value and the line (1-based) where it is defined.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: u64,
}

/// The value of a [`Node`]. Mapping entries keep their order and their keys' lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            line: spanned.defined.line(),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer is too large"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// Parses YAML text into a node tree. Syntax errors (and duplicate keys) come back as a
/// [`Problem`] with the line where the parser stopped.
pub fn parse(text: &str) -> Result<Node, Problem> {
    if text.trim().is_empty() {
        return Ok(Node {
            value: Value::Map(Vec::new()),
            line: 1,
        });
    }
    // YAML 1.2 booleans (`true`/`false`) while parsing, so a string field may hold `y` or `no`;
    // [`boolean`] still accepts the YAML 1.1 words that Plano's PyYAML reads as booleans.
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| Problem {
        path: String::new(),
        line: e.location().map(|l| l.line()),
        message: format!("invalid YAML: {}", first_line(&e.to_string())),
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A configuration problem: where it is (key path and line) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `model_providers[1].access_key`; empty for the whole document.
    pub path: String,
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {}): {}", self.path, line, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(line)) => write!(f, "line {}: {}", line, self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

/// Collects errors and warnings while a document is decoded.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Report {
    pub fn error(&mut self, path: &str, line: u64, message: impl Into<String>) {
        self.errors.push(Problem {
            path: path.to_owned(),
            line: Some(line),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: &str, line: u64, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.to_owned(),
            line: Some(line),
            message: message.into(),
        });
    }

    /// Reports a value of the wrong type and returns `None`, for use in `let … else`.
    pub fn expected<T>(&mut self, path: &str, node: &Node, what: &str) -> Option<T> {
        self.error(
            path,
            node.line,
            format!("expected {what}, found {}", node.value.kind()),
        );
        None
    }
}

/// Joins a key onto a path: `a` + `b` = `a.b`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a list index onto a path: `a` + 2 = `a[2]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The keys of one mapping, taken one by one; whatever is left at the end is reported.
pub struct Fields<'a> {
    path: String,
    entries: Vec<(&'a str, &'a Node, &'a Node)>,
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// Opens `node` as a mapping with string keys. Reports and returns `None` otherwise.
    pub fn of(report: &mut Report, path: &str, node: &'a Node) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            return report.expected(path, node, "a mapping");
        };
        let mut keyed = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match &key.value {
                Value::Str(k) => keyed.push((k.as_str(), key, value)),
                _ => report.error(path, key.line, "mapping keys must be strings"),
            }
        }
        Some(Fields {
            path: path.to_owned(),
            taken: vec![false; keyed.len()],
            entries: keyed,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Takes the value of `key`, if present and not null, with its full path.
    pub fn take(&mut self, key: &str) -> Option<(String, &'a Node)> {
        let i = self.entries.iter().position(|(k, _, _)| *k == key)?;
        self.taken[i] = true;
        let node = self.entries[i].2;
        if node.value == Value::Null {
            return None;
        }
        Some((join(&self.path, key), node))
    }

    /// Whether `key` is present (even if null).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| *k == key)
    }

    /// The remaining (not taken) entries, in document order.
    pub fn rest(&mut self) -> Vec<(&'a str, &'a Node, &'a Node)> {
        let mut rest = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if !self.taken[i] {
                self.taken[i] = true;
                rest.push(*entry);
            }
        }
        rest
    }

    /// Reports every key not taken: as a warning when it belongs to Plano's schema but is not
    /// implemented (`planned`), as an error otherwise (a typo, or a key nobody defines).
    pub fn finish(mut self, report: &mut Report, planned: &[&str]) {
        let path = self.path.clone();
        for (key, key_node, _) in self.rest() {
            let key_path = join(&path, key);
            if planned.contains(&key) {
                report.warn(
                    &key_path,
                    key_node.line,
                    "part of Plano's schema but not implemented by switchyard yet; ignored",
                );
            } else {
                report.error(&key_path, key_node.line, "unknown key");
            }
        }
    }
}

/// The items of list `node` that are mappings, each with its path and node (an item that is
/// not a mapping, or a `node` that is not a list, is reported).
pub fn mappings<'a>(
    report: &mut Report,
    path: &str,
    node: &'a Node,
) -> Vec<(String, &'a Node, Fields<'a>)> {
    let mut out = Vec::new();
    for (i, item) in list(report, path, node)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = index(path, i);
        if let Some(f) = Fields::of(report, &p, item) {
            out.push((p, item, f));
        }
    }
    out
}

pub fn string(report: &mut Report, path: &str, node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        // Unquoted YAML scalars such as `version: 0.2` or `port: 8080` in a string field.
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => report.expected(path, node, "a string"),
    }
}

pub fn boolean(report: &mut Report, path: &str, node: &Node) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        Value::Str(s) => match s.as_str() {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
            _ => report.expected(path, node, "true or false"),
        },
        _ => report.expected(path, node, "true or false"),
    }
}

pub fn integer(report: &mut Report, path: &str, node: &Node, min: i64, max: i64) -> Option<i64> {
    let v = match &node.value {
        Value::Int(i) => *i,
        Value::Str(s) => match s.trim().parse::<i64>() {
            Ok(i) => i,
            Err(_) => return report.expected(path, node, "an integer"),
        },
        _ => return report.expected(path, node, "an integer"),
    };
    if v < min || v > max {
        report.error(
            path,
            node.line,
            format!("must be between {min} and {max}, found {v}"),
        );
        return None;
    }
    Some(v)
}

pub fn list<'a>(report: &mut Report, path: &str, node: &'a Node) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => report.expected(path, node, "a list"),
    }
}

/// A list of mappings: each item's path, node and keys. What is not a list, or an item that is
/// not a mapping, is reported and left out.
pub fn records<'a>(
    report: &mut Report,
    path: &str,
    node: &'a Node,
) -> Vec<(String, &'a Node, Fields<'a>)> {
    let items = list(report, path, node).unwrap_or_default();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let p = index(path, i);
            let fields = Fields::of(report, &p, item)?;
            Some((p, item, fields))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_remember_their_lines() {
        let doc = parse("a: 1\nb:\n  - x\n  - {c: true}\n").unwrap();
        let Value::Map(entries) = &doc.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.line, 1);
        assert_eq!(entries[0].1.value, Value::Int(1));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].line, 3);
        assert_eq!(items[0].value, Value::Str("x".into()));
        assert_eq!(items[1].line, 4);
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line.is_some(), "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("invalid YAML"), "{err}");
    }

    #[test]
    fn unknown_and_planned_keys_are_told_apart() {
        let doc = parse("known: 1\ntypo: 2\ntracing: {}\n").unwrap();
        let mut report = Report::default();
        let mut fields = Fields::of(&mut report, "", &doc).unwrap();
        assert!(fields.take("known").is_some());
        fields.finish(&mut report, &["tracing"]);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].path, "typo");
        assert_eq!(report.errors[0].line, Some(2));
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].path, "tracing");
    }
}
