//! What preference routing remembers across requests: each session's pin, the recent answer to
//! each exact question, each conversation's last decision (`route_on_user_only`). Carried by the
//! snapshot across reloads while the `routing` settings stay the same.
//!
//! With a state store (`state.redis` or `routing.session_cache: {type: redis}`) replicas share
//! it: what one replica does not know it asks the store for, in one `MGET`, before asking the
//! router; what it decides it tells the store, after the answer. The store failing only means
//! each replica remembers for itself meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::decision::{Decision, Source};
use crate::config::{Prefer, Routing};
use crate::memory::Memory;
use crate::metrics::Metrics;
use crate::session;
use crate::store::Store;

/// Where a request stands in its conversation, as far as recall needs it: whether the user
/// speaks in it (`route_on_user_only`), and the conversation it continues when it has no
/// session (a hash of its beginning, `turn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thread {
    pub user_turn: bool,
    pub conversation: Option<u64>,
}

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
        let id = session::affinity(req)?;
        Some(format!("{}\u{1f}{id}", self.tenant_of(req)))
    }

    /// The conversation a request continues, for `route_on_user_only`: its session, or the
    /// key its prefix hashes to (`turn`), scoped by the tenant header.
    pub fn conversation_of(
        &self,
        req: &pingora::http::RequestHeader,
        thread: Thread,
    ) -> Option<String> {
        self.session_of(req).or_else(|| {
            thread
                .conversation
                .map(|h| format!("{}\u{1f}~{h:016x}", self.tenant_of(req)))
        })
    }

    /// What is already decided for a request, without asking: its session's pin, or, when the
    /// user is not speaking (`route_on_user_only`), its conversation's last decision.
    pub fn known(
        &self,
        req: &pingora::http::RequestHeader,
        thread: Thread,
        now: Instant,
    ) -> Option<(Decision, Source)> {
        if let Some(d) = self.session_of(req).and_then(|s| self.pins.get(&s, now)) {
            return Some((d, Source::Pinned));
        }
        if thread.user_turn {
            return None;
        }
        let d = self.last.get(&self.conversation_of(req, thread)?, now)?;
        Some((d, Source::Replayed))
    }

    /// Keeps a decision about `question`: as the session's pin and the conversation's last
    /// decision, and, when the router was just asked (as `asked`), for the same question.
    pub fn remember(
        &self,
        req: &pingora::http::RequestHeader,
        thread: Thread,
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
            if let Some(conversation) = self.conversation_of(req, thread) {
                self.last.insert(conversation, decision.clone(), now);
            }
        }
    }

    /// Whether the request continues something remembered by session or conversation (a pin
    /// or a replay may exist elsewhere).
    pub fn continues(&self, req: &pingora::http::RequestHeader, thread: Thread) -> bool {
        self.session_of(req).is_some()
            || (self.settings.route_on_user_only
                && !thread.user_turn
                && self.conversation_of(req, thread).is_some())
    }

    /// What another replica decided for this request (its session's pin, its conversation's
    /// last decision, the answer to the same question `asked`), from the store in one call;
    /// kept here too (the caller pins a session to a found answer).
    pub async fn shared(
        &self,
        store: &Store,
        metrics: &Metrics,
        req: &pingora::http::RequestHeader,
        thread: Thread,
        asked: u64,
    ) -> Option<(Decision, Source)> {
        let session = self.session_of(req);
        let conversation = (self.settings.route_on_user_only && !thread.user_turn)
            .then(|| self.conversation_of(req, thread))
            .flatten();
        let keys = [
            session.as_deref().map(|s| store.key(&pin_key(s))),
            conversation.as_deref().map(|c| store.key(&last_key(c))),
            Some(store.key(&answer_key(asked))),
        ];
        let wanted: Vec<&String> = keys.iter().flatten().collect();
        let found: Vec<Option<String>> = store
            .call("recall", Duration::ZERO, metrics, |mut c| async move {
                redis::cmd("MGET").arg(wanted).query_async(&mut c).await
            })
            .await?;
        let mut found = found.into_iter();
        let mut next = |present: bool| {
            if present {
                found.next().flatten().and_then(|v| decision_from(&v))
            } else {
                None
            }
        };
        let (pin, last, answer) = (
            next(session.is_some()),
            next(conversation.is_some()),
            next(true),
        );
        let now = Instant::now();
        if let Some(d) = pin {
            if let Some(s) = session {
                self.pins.insert(s, d.clone(), now);
            }
            return Some((d, Source::Pinned));
        }
        if let Some(d) = last {
            if let Some(c) = conversation {
                self.last.insert(c, d.clone(), now);
            }
            return Some((d, Source::Replayed));
        }
        let d = answer?;
        self.answers.insert(asked, d.clone(), now);
        Some((d, Source::Cache))
    }

    /// Tells the other replicas a decision, as [`Recall::remember`] keeps it here, in the
    /// background.
    pub fn share(
        &self,
        store: &Arc<Store>,
        metrics: &Arc<Metrics>,
        req: &pingora::http::RequestHeader,
        thread: Thread,
        asked: Option<u64>,
        decision: &Decision,
    ) {
        let Some(value) = decision_to(decision) else {
            return;
        };
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut writes = Vec::new();
        if let Some(key) = asked {
            writes.push((store.key(&answer_key(key)), millis(ANSWER_TTL)));
        }
        if let Some(session) = self.session_of(req) {
            writes.push((
                store.key(&pin_key(&session)),
                millis(self.settings.session_ttl),
            ));
        }
        if self.settings.route_on_user_only {
            if let Some(conversation) = self.conversation_of(req, thread) {
                writes.push((
                    store.key(&last_key(&conversation)),
                    millis(self.settings.session_ttl),
                ));
            }
        }
        let (store, metrics) = (store.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            for (key, ttl) in &writes {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(&value)
                    .arg("PX")
                    .arg(*ttl)
                    .ignore();
            }
            let wait = Duration::from_secs(1);
            store
                .call("share", wait, &metrics, |mut c| async move {
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
        });
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

fn pin_key(session: &str) -> String {
    format!("routing:pin:{session}")
}

fn last_key(conversation: &str) -> String {
    format!("routing:last:{conversation}")
}

/// The question's hash names the answer (`v1`: a change to the hash changes the name).
fn answer_key(asked: u64) -> String {
    format!("routing:answer:v1:{asked:016x}")
}

/// A decision as the store keeps it; a failed one is not kept.
fn decision_to(d: &Decision) -> Option<String> {
    let v = match d {
        Decision::Route {
            name,
            models,
            prefer,
        } => json!({"route": name, "models": models, "prefer": prefer.as_str()}),
        Decision::NoRoute => json!({"route": null}),
        Decision::FailedOpen(_) => return None,
    };
    Some(v.to_string())
}

fn decision_from(text: &str) -> Option<Decision> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["route"].is_null() {
        return Some(Decision::NoRoute);
    }
    Some(Decision::Route {
        name: v["route"].as_str()?.to_owned(),
        models: v["models"]
            .as_array()?
            .iter()
            .map(|m| m.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        prefer: Prefer::from_name(v["prefer"].as_str()?)?,
    })
}

/// How long the router's answer to one exact question is reused.
const ANSWER_TTL: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_read_back_as_written() {
        for d in [
            Decision::Route {
                name: "code".into(),
                models: vec!["openai/gpt-4o".into(), "fast".into()],
                prefer: Prefer::Cheapest,
            },
            Decision::NoRoute,
        ] {
            let text = decision_to(&d).expect("kept");
            assert_eq!(decision_from(&text), Some(d));
        }
        assert_eq!(decision_to(&Decision::FailedOpen("timeout")), None);
        assert_eq!(decision_from("{\"route\": 3}"), None);
    }
}
