//! Owns flash messages: set by a POST, shown once by the next page.

use actix_session::Session;
use serde::{Deserialize, Serialize};

const KEY: &str = "_flash";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Level {
    Success,
    Info,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    pub level: Level,
    pub text: String,
}

impl Flash {
    /// CSS class and ARIA role of the message box.
    pub fn class(&self) -> &'static str {
        match self.level {
            Level::Success => "flash flash-success",
            Level::Info => "flash flash-info",
            Level::Error => "flash flash-error",
        }
    }
}

/// Queues a message for the next page.
pub fn push(session: &Session, level: Level, text: impl Into<String>) {
    let mut all: Vec<Flash> = session.get(KEY).ok().flatten().unwrap_or_default();
    all.push(Flash {
        level,
        text: text.into(),
    });
    if let Err(e) = session.insert(KEY, all) {
        tracing::warn!(error = %e, "Could not store a flash message.");
    }
}

/// Takes the queued messages (they are shown once). With none queued the session is left untouched:
/// actix-session marks a session changed on any `remove`, and a changed session is written back, so
/// every page view had been a database write.
pub fn take(session: &Session) -> Vec<Flash> {
    if !session.contains_key(KEY) {
        return Vec::new();
    }
    session
        .remove_as::<Vec<Flash>>(KEY)
        .and_then(Result::ok)
        .unwrap_or_default()
}
