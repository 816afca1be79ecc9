//! Responses conversations the gateway keeps for providers without a Responses API of their
//! own, so a client's `previous_response_id` works on them as it does on OpenAI.
//!
//! A kept conversation is every item so far, ready to be the next request's `input`: the
//! input the request was answered with (history included) followed by the answer's output
//! items. It is written from the gateway's own final response object (the translator's), never
//! by re-reading network chunks, and before that response's last event reaches the client, so a
//! follow-up sent the moment the answer ends finds it (subrequest's pipe). `store: false` keeps
//! nothing, nor does a failed response.
//!
//! Where (Plano's `state_storage`): in this process, bounded ([`MAX_ENTRIES`], [`MAX_BYTES`],
//! [`MEMORY_AGE`]); in `state.redis` when that is configured, so every replica can continue
//! any conversation; or in PostgreSQL (`type: postgres`), Plano's `conversation_states` table.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::config::StateStorage;
use crate::memory::Memory;
use crate::metrics::Metrics;
use crate::store::Store;

mod postgres;

use postgres::Postgres;

/// At most this many conversations in memory, of at most [`MAX_BYTES`] together.
pub const MAX_ENTRIES: usize = 10_000;
pub const MAX_BYTES: usize = 128 << 20;
/// How long a conversation is kept in memory.
pub const MEMORY_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a conversation is kept in Redis (OpenAI keeps responses for 30 days).
pub const REDIS_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest wait for a conversation on a request's path (Redis or PostgreSQL).
const WAIT: Duration = Duration::from_secs(2);

/// A kept conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Every item so far, a JSON array.
    pub items: String,
    /// The model and provider that answered last.
    pub model: String,
    pub provider: String,
}

/// A conversation to keep under the id of the response that ends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub id: String,
    pub conversation: Conversation,
}

/// The conversations of one configuration, carried across reloads while it keeps them in the
/// same place.
pub struct Conversations {
    storage: StateStorage,
    kept: Kept,
    /// Responses of providers with a Responses API of their own: id → the endpoint that
    /// answered, so a follow-up goes to the same credential (an id one key minted is unknown to
    /// another). In this process.
    pins: Memory<String, Arc<str>>,
}

enum Kept {
    Memory(Memory<String, Arc<Conversation>>),
    Redis(Arc<Store>),
    Postgres(Postgres),
}

/// The store could not be asked: the client gets a 503, never an answer without its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl Conversations {
    /// Conversations kept as `storage` says; in `shared` (`state.redis`) instead of memory
    /// when there is one.
    pub fn new(storage: &StateStorage, shared: Option<Arc<Store>>) -> Conversations {
        let kept = match (storage, shared) {
            (StateStorage::Postgres { connection_string }, _) => {
                Kept::Postgres(Postgres::new(connection_string.clone()))
            }
            (StateStorage::Memory, Some(store)) => Kept::Redis(store),
            (StateStorage::Memory, None) => {
                Kept::Memory(Memory::new(MEMORY_AGE, MAX_ENTRIES).with_max_bytes(MAX_BYTES))
            }
        };
        Conversations {
            storage: storage.clone(),
            kept,
            pins: Memory::new(MEMORY_AGE, MAX_ENTRIES),
        }
    }

    /// Remembers that endpoint `endpoint` answered response `id`.
    pub fn pin(&self, id: String, endpoint: &str) {
        self.pins.insert(id, endpoint.into(), Instant::now());
    }

    /// The endpoint that answered response `id`, if this process saw it.
    pub fn pinned(&self, id: &str) -> Option<Arc<str>> {
        self.pins.get(&id.to_owned(), Instant::now())
    }

    /// The conversations of the previous configuration when they are kept in the same place,
    /// else new ones.
    pub fn after(
        previous: Option<&Arc<Conversations>>,
        storage: &StateStorage,
        shared: Option<Arc<Store>>,
    ) -> Arc<Conversations> {
        if let Some(p) = previous {
            let same_store = match (&p.kept, &shared) {
                (Kept::Redis(a), Some(b)) => Arc::ptr_eq(a, b),
                (Kept::Redis(_), None) | (Kept::Memory(_), Some(_)) => false,
                _ => true,
            };
            if p.storage == *storage && same_store {
                return p.clone();
            }
        }
        Arc::new(Conversations::new(storage, shared))
    }

    /// Where they are kept, for the log.
    pub fn kind(&self) -> &'static str {
        match self.kept {
            Kept::Memory(_) => "memory",
            Kept::Redis(_) => "redis",
            Kept::Postgres(_) => "postgres",
        }
    }

    /// The conversation that ends with response `id`, if it is kept.
    pub async fn get(
        &self,
        id: &str,
        metrics: &Metrics,
    ) -> Result<Option<Arc<Conversation>>, Unavailable> {
        match &self.kept {
            Kept::Memory(m) => Ok(m.get(&id.to_owned(), Instant::now())),
            Kept::Redis(store) => {
                let key = store.key(&format!("response:{id}"));
                let got = store
                    .call("conversation_get", WAIT, metrics, |mut c| async move {
                        redis::cmd("GET")
                            .arg(&key)
                            .query_async::<Option<String>>(&mut c)
                            .await
                    })
                    .await
                    .ok_or(Unavailable)?;
                Ok(got.and_then(|text| from_record(&text)).map(Arc::new))
            }
            Kept::Postgres(pg) => pg.get(id).await.map(|c| c.map(Arc::new)),
        }
    }

    /// Keeps `turn`; returns whether it was kept.
    pub async fn put(&self, turn: Turn, metrics: &Metrics) -> bool {
        match &self.kept {
            Kept::Memory(m) => {
                let bytes = turn.id.len() + turn.conversation.items.len();
                m.insert_sized(turn.id, Arc::new(turn.conversation), bytes, Instant::now())
            }
            Kept::Redis(store) => {
                let key = store.key(&format!("response:{}", turn.id));
                let value = record(&turn.conversation);
                store
                    .call("conversation_put", WAIT, metrics, |mut c| async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(value)
                            .arg("EX")
                            .arg(REDIS_AGE.as_secs())
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await
                    .is_some()
            }
            Kept::Postgres(pg) => pg.put(&turn).await,
        }
    }
}

/// A conversation as Redis keeps it: one JSON object, the items as they are.
fn record(c: &Conversation) -> String {
    format!(
        "{{\"model\":{},\"provider\":{},\"items\":{}}}",
        Value::from(c.model.as_str()),
        Value::from(c.provider.as_str()),
        c.items
    )
}

#[derive(serde::Deserialize)]
struct Record {
    items: Box<serde_json::value::RawValue>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    provider: String,
}

fn from_record(text: &str) -> Option<Conversation> {
    let r: Record = serde_json::from_str(text).ok()?;
    r.items.get().starts_with('[').then(|| Conversation {
        items: r.items.get().to_owned(),
        model: r.model,
        provider: r.provider,
    })
}

/// A Responses request's `input` as a list of items: a string is one user message.
fn input_items(body: &Map<String, Value>) -> Vec<Value> {
    match body.get("input") {
        Some(Value::String(text)) => vec![json!({"role": "user", "content": text})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The request `body` continuing `history`: its `input` follows the kept items, and
/// `previous_response_id` goes (the upstream keeps no responses; the gateway resolved it).
pub fn continued(body: &[u8], history: &Conversation) -> Result<Bytes, String> {
    let mut obj: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    let mut items: Vec<Value> = serde_json::from_str(&history.items).unwrap_or_default();
    items.extend(input_items(&obj));
    obj.insert("input".into(), items.into());
    obj.remove("previous_response_id");
    Ok(Bytes::from(Value::Object(obj).to_string()))
}

/// What to keep once `response` (the gateway's final Responses object) answered `body` (the
/// request as sent, history included), served by `provider` with `model`: `None` when the
/// client said `store: false` or the response failed.
pub fn turn(body: &[u8], response: &Value, model: &str, provider: &str) -> Option<Turn> {
    let obj: Map<String, Value> = serde_json::from_slice(body).ok()?;
    if obj.get("store") == Some(&Value::Bool(false)) {
        return None;
    }
    if !matches!(
        response["status"].as_str(),
        Some("completed" | "incomplete")
    ) {
        return None;
    }
    let id = response["id"].as_str()?.to_owned();
    let mut items = input_items(&obj);
    items.extend(response["output"].as_array().into_iter().flatten().cloned());
    Some(Turn {
        id,
        conversation: Conversation {
            items: Value::Array(items).to_string(),
            model: model.to_owned(),
            provider: provider.to_owned(),
        },
    })
}

/// Seconds since the epoch.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(items: &str) -> Conversation {
        Conversation {
            items: items.into(),
            model: "m".into(),
            provider: "p".into(),
        }
    }

    #[test]
    fn a_continued_request_puts_the_history_before_its_input_and_drops_the_id() {
        let body =
            br#"{"model":"x","previous_response_id":"resp_1","input":"and then?","store":true}"#;
        let out = continued(body, &history(r#"[{"role":"user","content":"hi"}]"#)).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["input"],
            json!([{"role":"user","content":"hi"},{"role":"user","content":"and then?"}])
        );
        assert!(v.get("previous_response_id").is_none());
        assert_eq!(v["model"], "x");
        let items = json!([{"type":"function_call_output","call_id":"c","output":"4"}]);
        let body = json!({"input": items, "previous_response_id": "r"}).to_string();
        let out = continued(body.as_bytes(), &history("[]")).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["input"], items);
    }

    #[test]
    fn a_turn_keeps_the_input_and_the_output_unless_store_is_false_or_it_failed() {
        let response = json!({"id": "resp_2", "status": "completed", "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]}
        ]});
        let body = br#"{"input":[{"role":"user","content":"2+2?"}]}"#;
        let t = turn(body, &response, "gpt", "groq").unwrap();
        assert_eq!(t.id, "resp_2");
        let items: Value = serde_json::from_str(&t.conversation.items).unwrap();
        assert_eq!(items[0]["content"], "2+2?");
        assert_eq!(items[1]["content"][0]["text"], "4");
        assert_eq!(items.as_array().unwrap().len(), 2);
        assert_eq!(t.conversation.provider, "groq");

        let unstored = br#"{"input":"2+2?","store":false}"#;
        assert_eq!(turn(unstored, &response, "gpt", "groq"), None);
        let mut failed = response.clone();
        failed["status"] = "failed".into();
        assert_eq!(turn(body, &failed, "gpt", "groq"), None);
        let mut incomplete = response;
        incomplete["status"] = "incomplete".into();
        assert!(turn(body, &incomplete, "gpt", "groq").is_some());
    }

    #[test]
    fn a_redis_record_reads_back_as_the_conversation() {
        let c = history(r#"[{"role":"user","content":"hi"}]"#);
        let back = from_record(&record(&c)).unwrap();
        assert_eq!(back, c);
        assert_eq!(from_record(r#"{"items": "not a list"}"#), None);
    }

    #[tokio::test]
    async fn memory_keeps_a_turn_until_asked() {
        let c = Conversations::new(&StateStorage::Memory, None);
        let metrics = Metrics::register(&pingora_prometheus::prometheus::Registry::new()).unwrap();
        assert_eq!(c.kind(), "memory");
        assert_eq!(c.get("resp_1", &metrics).await, Ok(None));
        let t = Turn {
            id: "resp_1".into(),
            conversation: history("[]"),
        };
        assert!(c.put(t.clone(), &metrics).await);
        assert_eq!(
            c.get("resp_1", &metrics).await.unwrap().as_deref(),
            Some(&t.conversation)
        );
    }
}
