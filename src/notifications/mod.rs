//! Owns notifications: problems raised by the sync worker and the mailer, deduplicated per problem,
//! resolved when they clear, listed on `/admin/notifications` and counted in the header badge.

pub mod handlers;
pub mod repo;

use serde_json::Value;

/// How serious a notification is. Shown as text, never by colour alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

/// A problem to raise. `dedup_key` identifies the problem: raising it again updates the same row.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub kind: &'static str,
    pub dedup_key: String,
    pub severity: Severity,
    pub title: String,
    /// What happened.
    pub body: String,
    /// What to do about it.
    pub action_text: String,
    pub action_href: Option<String>,
    pub details: Value,
    /// The sync round that raised it, if any.
    pub run_id: Option<String>,
}
