//! The response side of an exchange: the upstream's header and body as they pass, watched once
//! (usage, time to first token, `retry-after`, the stream's final event), translated for the
//! client, and let through in whole SSE events.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::Error;

use super::Exchange;
use crate::conversations;
use crate::error::{classify, Class};
use crate::usage::Piece;

impl Exchange {
    /// The response header of the current attempt: watched, and translated if needed.
    pub fn response_header(&mut self, header: &mut ResponseHeader) {
        self.watch.retry_after = retry_after(header);
        let status = header.status.as_u16();
        // A busy endpoint's `retry-after` parks it before the next attempt is planned.
        if let (Some(ra), Some(a)) = (self.watch.retry_after, &self.attempt) {
            if status == 429 || status >= 500 {
                self.snapshot.upstream(a.provider).health.park_for(ra);
            }
        }
        if let Some(a) = self.attempt.as_ref().filter(|_| status < 400) {
            let health = &self.snapshot.upstream(a.provider).health;
            health.observe_latency(a.started.elapsed());
        }
        let translator = self.attempt.as_mut().and_then(|a| a.translator.as_mut());
        let content_type = header
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        self.watch
            .header(status, content_type, translator.is_some());
        if let Some(t) = translator {
            t.header(header, self.watch.is_stream());
        }
    }

    /// Whether the response is translated whole, so its writer must frame it (Pingora chose
    /// chunked framing for it; the subrequest's pipe sends it with its exact length instead).
    pub fn reframed(&self) -> bool {
        self.attempt
            .as_ref()
            .and_then(|a| a.translator.as_ref())
            .is_some_and(|t| !self.watch.is_stream() || t.gathers())
    }

    /// A piece of the current attempt's response body, read once by the watch (usage, TTFT) and
    /// handed to the translator if there is one.
    pub fn response_body(&mut self, body: &mut Option<Bytes>, end: bool) {
        // A stream passes in whole events: a partial one waits for its end, so a stream cut in
        // the middle of an event never shows the client half of it.
        let held: Option<Bytes> = (self.watch.is_stream()
            && !self.watch.partial_event().is_empty())
        .then(|| Bytes::copy_from_slice(self.watch.partial_event()));
        let chunk = body.as_deref().unwrap_or(&[]);
        let piece = self.watch.body(chunk, end, Instant::now());
        if let Some(a) = self.attempt.as_mut() {
            if let Some(t) = a.translator.as_mut() {
                *body = t.body(&piece, body.take(), end);
                // A Responses answer ended: what of the conversation to keep.
                if let (Some(done), Some(sent)) = (t.take_done(), &a.responses_body) {
                    let model = self.routed.as_ref().map_or("", |r| r.model.as_str());
                    let provider = &self.snapshot.provider(a.provider).name;
                    self.turn = conversations::turn(sent, &done, model, provider);
                }
                return;
            }
        }
        if self.pins_answer {
            self.pin(&piece);
        }
        if self.watch.is_stream() {
            *body = whole_events(held, body.take(), self.watch.partial_event().len());
        }
    }

    /// A Responses answer passed through: remembers which endpoint minted its id (from the
    /// JSON body, or the stream's first event), once.
    fn pin(&mut self, piece: &Piece) {
        #[derive(serde::Deserialize)]
        struct Minted {
            id: Option<String>,
            response: Option<Box<Minted>>,
        }
        let minted = match piece {
            Piece::Whole(raw, _) => serde_json::from_slice::<Minted>(raw).ok(),
            Piece::Events(events) if !events.is_empty() => {
                serde_json::from_str::<Minted>(&events[0].data).ok()
            }
            // Nothing whole yet.
            _ => return,
        };
        self.pins_answer = false;
        let id = minted.and_then(|m| m.id.or_else(|| m.response.and_then(|r| r.id)));
        if let (Some(id), Some(a)) = (id, &self.attempt) {
            let endpoint = &self.snapshot.provider(a.provider).name;
            self.snapshot.conversations.pin(id, endpoint);
        }
    }

    /// The conversation to keep, once a translated Responses answer ended (conversations).
    pub fn take_turn(&mut self) -> Option<conversations::Turn> {
        self.turn.take()
    }

    /// Whether the answer is an SSE stream.
    pub fn is_stream(&self) -> bool {
        self.watch.is_stream()
    }

    /// The latest attempt's `retry-after`, if its answer had one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.watch.retry_after
    }

    /// When the first event (or byte) of the answer came.
    pub fn first_token(&self) -> Option<Instant> {
        self.watch.first_token
    }

    /// The usage the upstream reported.
    pub fn usage(&self) -> Option<crate::usage::Usage> {
        self.watch.usage
    }

    /// Whether `e` is the client hanging up after the stream's final event went out (the
    /// OpenAI SDK closes at `[DONE]`, while the upstream may end its body later): nothing was
    /// lost, the request succeeded.
    pub fn delivered_before(&self, e: &Error) -> bool {
        self.watch.ended && matches!(classify(e), Class::ClientGone | Class::ClientTimeout)
    }
}

/// What passes of a stream: the partial event held from earlier chunks and `chunk`, without the
/// `partial` bytes at their end that do not complete an event yet (the framer holds those).
fn whole_events(held: Option<Bytes>, chunk: Option<Bytes>, partial: usize) -> Option<Bytes> {
    let chunk = chunk.unwrap_or_default();
    let held_len = held.as_ref().map_or(0, Bytes::len);
    let pass = (held_len + chunk.len()).saturating_sub(partial);
    let out = match held {
        _ if pass == 0 => return None,
        None => chunk.slice(..pass),
        Some(held) => {
            let mut joined = Vec::with_capacity(pass);
            joined.extend_from_slice(&held);
            joined.extend_from_slice(&chunk);
            joined.truncate(pass);
            Bytes::from(joined)
        }
    };
    Some(out)
}

/// `retry-after` in seconds.
fn retry_after(h: &ResponseHeader) -> Option<Duration> {
    h.headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::sse::Framer;

    /// Feeds `chunks` through a framer as `response_body` does; returns what the client got.
    fn passed(chunks: &[&str], end: bool) -> String {
        let mut framer = Framer::default();
        let mut out = String::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let held =
                (!framer.pending().is_empty()).then(|| Bytes::copy_from_slice(framer.pending()));
            framer.push(chunk.as_bytes());
            if end && i + 1 == chunks.len() {
                framer.finish();
            }
            let sent = whole_events(
                held,
                Some(Bytes::from(chunk.to_string())),
                framer.pending().len(),
            );
            out.push_str(std::str::from_utf8(&sent.unwrap_or_default()).unwrap());
        }
        out
    }

    #[test]
    fn a_stream_passes_in_whole_events() {
        let chunks = [
            "data: {\"a\"",
            ":1}\n",
            "\ndata: {\"b\":2}\n\ndata: {\"c",
            "\":3}\n\n",
        ];
        assert_eq!(passed(&chunks[..1], false), "");
        assert_eq!(
            passed(&chunks[..3], false),
            "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n"
        );
        assert_eq!(passed(&chunks, false), chunks.concat());
    }

    #[test]
    fn a_stream_cut_inside_an_event_never_shows_half_of_it() {
        let got = passed(&["data: {\"a\":1}\n\ndata: {\"id\": \"c\", \"obj"], false);
        assert_eq!(got, "data: {\"a\":1}\n\n");
    }

    #[test]
    fn a_stream_that_ends_without_a_blank_line_passes_its_last_bytes() {
        assert_eq!(
            passed(&["data: 1\n\n", "data: [DONE]"], true),
            "data: 1\n\ndata: [DONE]"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_passed_stream_loses_and_repeats_no_byte(
            text in "(data: [ -~]{0,12}\n\n|: x\n\n){0,6}(data: [ -~]{0,12})?",
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..5),
            end in proptest::prelude::any::<bool>(),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(text.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for to in points.into_iter().chain([text.len()]) {
                chunks.push(&text[from..to]);
                from = to;
            }
            let got = passed(&chunks, end);
            if end {
                proptest::prop_assert_eq!(got, text);
            } else {
                // Everything up to the last complete event, nothing after it.
                let complete = text.rfind("\n\n").map_or(0, |i| i + 2);
                proptest::prop_assert_eq!(got, &text[..complete]);
            }
        }
    }
}
