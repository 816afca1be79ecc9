//! Server-sent events: framing across arbitrary chunk boundaries, and writing events.

/// One complete event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Longest event kept while waiting for its end; a longer one is dropped.
const MAX_EVENT: usize = 8 << 20;

/// Splits a byte stream into events. An event is complete at a blank line (`\n\n`, `\r\n\r\n`);
/// nothing is held longer than it takes the event to complete.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// Adds bytes; returns every event they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        let mut line_start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            if self.buf[i] == b'\n' {
                let line = trim_cr(&self.buf[line_start..i]);
                if line.is_empty() {
                    if let Some(event) = parse(&self.buf[start..line_start]) {
                        events.push(event);
                    }
                    start = i + 1;
                }
                line_start = i + 1;
            }
            i += 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_EVENT {
            self.buf.clear();
        }
        events
    }

    /// The part of an event waiting for its end.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// What is left when the stream ends without a final blank line.
    pub fn finish(&mut self) -> Option<Event> {
        let rest = std::mem::take(&mut self.buf);
        parse(&rest)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses one event's lines; comments and events without data give `None`.
fn parse(block: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(block);
    let mut name = None;
    let mut data: Option<String> = None;
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    data.map(|data| Event { name, data })
}

/// `event: <name>\ndata: <json>\n\n`
pub fn named(name: &str, data: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// `data: <json>\n\n`
pub fn data(data: &serde_json::Value) -> String {
    format!("data: {data}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_complete_at_blank_lines_across_any_split() {
        let stream = "event: a\ndata: {\"x\":1}\n\n: comment\n\ndata: two\ndata: lines\r\n\r\ndata: [DONE]\n\n";
        for size in 1..stream.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for chunk in stream.as_bytes().chunks(size) {
                got.extend(f.push(chunk));
            }
            assert_eq!(
                got,
                vec![
                    Event {
                        name: Some("a".into()),
                        data: "{\"x\":1}".into()
                    },
                    Event {
                        name: None,
                        data: "two\nlines".into()
                    },
                    Event {
                        name: None,
                        data: "[DONE]".into()
                    },
                ],
                "split {size}"
            );
            assert_eq!(f.finish(), None);
        }
    }

    #[test]
    fn an_event_is_released_as_soon_as_it_completes() {
        let mut f = Framer::default();
        assert!(f.push(b"data: 1\n").is_empty());
        assert_eq!(f.push(b"\n").len(), 1);
        assert_eq!(f.push(b"data: 2").len(), 0);
        assert_eq!(f.finish().map(|e| e.data), Some("2".into()));
    }
}
