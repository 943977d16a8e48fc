//! Owns server-side sessions: actix-session's `SessionStore` on the `sessions` table, so sign-out and
//! revocation take effect on the server. The cookie holds a random key; the table holds its SHA-256.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;
use anyhow::anyhow;

use crate::auth::repo;
use crate::clock::{HOUR, MINUTE, Millis, SharedClock};
use crate::db::Db;
use crate::db::ids::{random_token, token_hash};
use crate::web::guard::ADMIN_KEY;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Millis = 30 * MINUTE;
/// A session ends this long after sign-in, however active.
pub const ABSOLUTE_TIMEOUT: Millis = 12 * HOUR;
/// The idle timeout is extended in steps of at least this much, so most requests write nothing.
const EXTEND_SLACK: Millis = MINUTE;

type State = HashMap<String, String>;

/// Sessions whose stored expiry this process remembers; past this many it forgets them all (each
/// is read again on its next request).
const KNOWN_EXPIRY_CAP: usize = 50_000;

#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
    clock: SharedClock,
    /// The stored expiry of each session as this request's `load` read it, by session id. Every request
    /// extends the idle timeout (`update_ttl`); while the stored expiry is within a minute of the new one
    /// the write is skipped. Without this, every page view was a database write, and on SQLite 64
    /// concurrent page views queued on the single write lock (docs/benchmarks.md).
    known_expiry: Arc<Mutex<HashMap<String, Millis>>>,
}

impl DbSessionStore {
    pub fn new(db: Db, clock: SharedClock) -> Self {
        Self {
            db,
            clock,
            known_expiry: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn remember_expiry(&self, id: &str, expires_at: Option<Millis>) {
        let mut known = self
            .known_expiry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match expires_at {
            Some(at) => {
                if known.len() >= KNOWN_EXPIRY_CAP && !known.contains_key(id) {
                    known.clear();
                }
                known.insert(id.to_owned(), at);
            }
            None => {
                known.remove(id);
            }
        }
    }

    /// True when the stored expiry is already within a minute of `new_expiry`.
    fn expiry_is_fresh(&self, id: &str, new_expiry: Millis) -> bool {
        self.known_expiry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .is_some_and(|&at| at >= new_expiry - EXTEND_SLACK)
    }

    fn expires_at(&self, ttl: &Duration) -> Millis {
        let ttl_ms = i64::try_from(ttl.whole_milliseconds()).unwrap_or(IDLE_TIMEOUT);
        self.clock.now_ms() + ttl_ms.min(IDLE_TIMEOUT)
    }

    async fn insert_new(&self, state: &State, ttl: &Duration) -> anyhow::Result<SessionKey> {
        let key = random_token(32)?;
        let body = serde_json::to_string(state)?;
        repo::create_session(
            &self.db.pool,
            &token_hash(&key),
            admin_of(state).as_deref(),
            &body,
            self.clock.now_ms(),
            self.expires_at(ttl),
        )
        .await?;
        SessionKey::try_from(key).map_err(|e| anyhow!("{e}"))
    }
}

/// The admin id inside a session state (values are JSON-encoded by actix-session).
fn admin_of(state: &State) -> Option<String> {
    state
        .get(ADMIN_KEY)
        .and_then(|v| serde_json::from_str::<String>(v).ok())
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let id = token_hash(key.as_ref());
        let row = repo::find_session(&self.db.pool, &id)
            .await
            .map_err(|e| LoadError::Other(e.into()))?;
        let Some(row) = row else { return Ok(None) };
        let now = self.clock.now_ms();
        if row.expires_at <= now || row.created_at + ABSOLUTE_TIMEOUT <= now {
            self.remember_expiry(&id, None);
            repo::delete_session(&self.db.pool, &id)
                .await
                .map_err(|e| LoadError::Other(e.into()))?;
            return Ok(None);
        }
        self.remember_expiry(&id, Some(row.expires_at));
        serde_json::from_str(&row.state)
            .map(Some)
            .map_err(|e| LoadError::Deserialization(e.into()))
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        self.insert_new(&state, ttl).await.map_err(SaveError::Other)
    }

    async fn update(
        &self,
        key: SessionKey,
        mut state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let id = token_hash(key.as_ref());
        let body =
            serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let updated = repo::update_session(
            &self.db.pool,
            &id,
            admin_of(&state).as_deref(),
            &body,
            self.clock.now_ms(),
            self.expires_at(ttl),
        )
        .await
        .map_err(|e| UpdateError::Other(e.into()))?;
        if updated {
            return Ok(key);
        }
        // The session was signed out or revoked while this request ran: never bring its sign-in back.
        state.remove(ADMIN_KEY);
        self.insert_new(&state, ttl)
            .await
            .map_err(UpdateError::Other)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        let id = token_hash(key.as_ref());
        let expires_at = self.expires_at(ttl);
        if self.expiry_is_fresh(&id, expires_at) {
            return Ok(());
        }
        repo::extend_session(&self.db.pool, &id, expires_at, EXTEND_SLACK).await?;
        // Whether this write or another instance's moved it, the stored expiry is now at least this.
        self.remember_expiry(&id, Some(expires_at - EXTEND_SLACK));
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = token_hash(key.as_ref());
        self.remember_expiry(&id, None);
        repo::delete_session(&self.db.pool, &id).await?;
        Ok(())
    }
}
