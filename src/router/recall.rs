//! What preference routing remembers across requests: each session's pin, the recent answer to
//! each exact question, each conversation's last decision (`route_on_user_only`). Carried by the
//! snapshot across reloads while the `routing` settings stay the same.

use std::time::{Duration, Instant};

use super::memory::Memory;
use super::{Decision, Question, Source};
use crate::config::Routing;
use crate::intake;

/// What the router remembers across requests: session pins and recent answers.
pub struct Recall {
    pub pins: Memory<String, Decision>,
    pub answers: Memory<u64, Decision>,
    /// Each conversation's last decision, for `route_on_user_only`.
    pub last: Memory<String, Decision>,
    settings: Routing,
}

impl Recall {
    pub fn new(settings: &Routing) -> Recall {
        Recall {
            pins: Memory::new(settings.session_ttl, settings.session_max_entries),
            answers: Memory::new(ANSWER_TTL, settings.session_max_entries),
            last: Memory::new(settings.session_ttl, settings.session_max_entries),
            settings: settings.clone(),
        }
    }

    /// Whether this memory was made for `settings` (a reload may change them).
    pub fn is_for(&self, settings: &Routing) -> bool {
        &self.settings == settings
    }

    /// The session a request belongs to: its `X-Model-Affinity`, scoped by the tenant header
    /// when one is configured.
    pub fn session_of(&self, req: &pingora::http::RequestHeader) -> Option<String> {
        let id = intake::affinity(req)?;
        Some(format!("{}\u{1f}{id}", self.tenant_of(req)))
    }

    /// The conversation a request continues, for `route_on_user_only`: its session, or the
    /// key its prefix hashes to (`turn`), scoped by the tenant header.
    pub fn conversation_of(
        &self,
        req: &pingora::http::RequestHeader,
        question: &Question,
    ) -> Option<String> {
        self.session_of(req).or_else(|| {
            question
                .conversation
                .map(|h| format!("{}\u{1f}~{h:016x}", self.tenant_of(req)))
        })
    }

    /// What is already decided for a request, without asking: its session's pin, or, when the
    /// user is not speaking (`route_on_user_only`), its conversation's last decision.
    pub fn known(
        &self,
        req: &pingora::http::RequestHeader,
        question: &Question,
        now: Instant,
    ) -> Option<(Decision, Source)> {
        if let Some(d) = self.session_of(req).and_then(|s| self.pins.get(&s, now)) {
            return Some((d, Source::Pinned));
        }
        if question.user_turn {
            return None;
        }
        let d = self.last.get(&self.conversation_of(req, question)?, now)?;
        Some((d, Source::Replayed))
    }

    /// Keeps a decision about `question`: as the session's pin and the conversation's last
    /// decision, and, when the router was just asked (as `asked`), for the same question.
    pub fn remember(
        &self,
        req: &pingora::http::RequestHeader,
        question: &Question,
        asked: Option<u64>,
        decision: &Decision,
    ) {
        let now = Instant::now();
        if let Some(key) = asked {
            self.answers.insert(key, decision.clone(), now);
        }
        if let Some(session) = self.session_of(req) {
            self.pins.insert(session, decision.clone(), now);
        }
        if self.settings.route_on_user_only {
            if let Some(conversation) = self.conversation_of(req, question) {
                self.last.insert(conversation, decision.clone(), now);
            }
        }
    }

    fn tenant_of<'r>(&self, req: &'r pingora::http::RequestHeader) -> &'r str {
        self.settings
            .tenant_header
            .as_deref()
            .and_then(|h| req.headers.get(h))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// How long the router's answer to one exact question is reused.
const ANSWER_TTL: Duration = Duration::from_secs(60);
