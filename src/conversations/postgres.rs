//! Conversations in PostgreSQL (`state_storage: {type: postgres, connection_string}`), in the
//! table Plano documents (`conversation_states`), created if it is missing, so a database set up
//! for Plano serves switchyard unchanged.
//!
//! One connection, made on first use and made again when it breaks; after a failure the store
//! rests for [`REST`], so requests do not each wait for a database that is down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::{now, Conversation, Turn, Unavailable, WAIT};
use crate::config::Secret;

const REST: Duration = Duration::from_secs(1);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS conversation_states (
    response_id TEXT PRIMARY KEY,
    input_items JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)";

const SELECT: &str =
    "SELECT input_items::text, model, provider FROM conversation_states WHERE response_id = $1";

const UPSERT: &str =
    "INSERT INTO conversation_states (response_id, input_items, created_at, model, provider)
    VALUES ($1, $2::text::jsonb, $3, $4, $5)
    ON CONFLICT (response_id) DO UPDATE SET input_items = EXCLUDED.input_items,
        model = EXCLUDED.model, provider = EXCLUDED.provider, updated_at = CURRENT_TIMESTAMP";

pub struct Postgres {
    connection_string: Secret,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    resting_until: Mutex<Option<Instant>>,
}

impl Postgres {
    pub fn new(connection_string: Secret) -> Postgres {
        Postgres {
            connection_string,
            client: tokio::sync::Mutex::new(None),
            resting_until: Mutex::new(None),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Conversation>, Unavailable> {
        let client = self.client().await?;
        let row = self.bounded(client.query_opt(SELECT, &[&id])).await?;
        Ok(row.map(|row| Conversation {
            items: row.get(0),
            model: row.get(1),
            provider: row.get(2),
        }))
    }

    pub async fn put(&self, turn: &Turn) -> bool {
        let Ok(client) = self.client().await else {
            return false;
        };
        let c = &turn.conversation;
        self.bounded(client.execute(UPSERT, &[&turn.id, &c.items, &now(), &c.model, &c.provider]))
            .await
            .is_ok()
    }

    /// `call` within [`WAIT`]; a failure makes the store rest.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(WAIT, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                log::warn!("state_storage: PostgreSQL failed: {e}");
                self.rest();
                Err(Unavailable)
            }
            Err(_) => {
                log::warn!("state_storage: PostgreSQL did not answer within {WAIT:?}");
                self.rest();
                Err(Unavailable)
            }
        }
    }

    /// The connection, made (and the table created) when there is none or it broke.
    async fn client(&self) -> Result<Arc<Client>, Unavailable> {
        if self
            .resting_until
            .lock()
            .ok()
            .and_then(|r| *r)
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(Unavailable);
        }
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let connect = async {
            let (client, connection) =
                tokio_postgres::connect(self.connection_string.expose(), NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    log::warn!("state_storage: the PostgreSQL connection broke: {e}");
                }
            });
            client.batch_execute(SCHEMA).await?;
            Ok::<_, tokio_postgres::Error>(client)
        };
        let client = Arc::new(self.bounded(connect).await?);
        *slot = Some(client.clone());
        Ok(client)
    }

    fn rest(&self) {
        if let Ok(mut r) = self.resting_until.lock() {
            *r = Some(Instant::now() + REST);
        }
    }
}
