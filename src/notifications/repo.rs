//! SQL for notifications.

use sqlx::{Any, Executor, FromRow};

use crate::clock::Millis;
use crate::db::ids::new_id;
use crate::notifications::NewNotification;

/// Raises a problem, or records a repeat of it (reopening it if it had been resolved).
pub async fn raise<'e>(
    ex: impl Executor<'e, Database = Any>,
    n: &NewNotification,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notifications (id, kind, dedup_key, severity, title, body, action_text, action_href, details, \
         occurrences, first_seen_at, last_seen_at, resolved_at, run_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10, NULL, $11) \
         ON CONFLICT (dedup_key) DO UPDATE SET severity = excluded.severity, title = excluded.title, \
         body = excluded.body, action_text = excluded.action_text, action_href = excluded.action_href, \
         details = excluded.details, occurrences = notifications.occurrences + 1, \
         last_seen_at = excluded.last_seen_at, resolved_at = NULL, run_id = excluded.run_id, read_at = NULL",
    )
    .bind(new_id())
    .bind(n.kind)
    .bind(&n.dedup_key)
    .bind(n.severity.as_str())
    .bind(&n.title)
    .bind(&n.body)
    .bind(&n.action_text)
    .bind(n.action_href.as_deref())
    .bind(n.details.to_string())
    .bind(now)
    .bind(n.run_id.as_deref())
    .execute(ex)
    .await?;
    Ok(())
}

/// Marks a problem resolved; false when it was not open.
pub async fn resolve<'e>(
    ex: impl Executor<'e, Database = Any>,
    dedup_key: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE notifications SET resolved_at = $1 WHERE dedup_key = $2 AND resolved_at IS NULL",
    )
    .bind(now)
    .bind(dedup_key)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Dedup keys of the open notifications of one kind.
pub async fn list_open_keys<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT dedup_key FROM notifications WHERE kind = $1 AND resolved_at IS NULL",
    )
    .bind(kind)
    .fetch_all(ex)
    .await
}

pub async fn count_open<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE resolved_at IS NULL")
        .fetch_one(ex)
        .await
}

/// Whether the problem with this dedup key is open.
pub async fn is_open<'e>(
    ex: impl Executor<'e, Database = Any>,
    dedup_key: &str,
) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications WHERE dedup_key = $1 AND resolved_at IS NULL",
    )
    .bind(dedup_key)
    .fetch_one(ex)
    .await?;
    Ok(n > 0)
}

pub async fn mark_read<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE notifications SET read_at = $1 WHERE id = $2 AND read_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(ex)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn mark_all_read<'e>(
    ex: impl Executor<'e, Database = Any>,
    now: Millis,
) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("UPDATE notifications SET read_at = $1 WHERE read_at IS NULL")
            .bind(now)
            .execute(ex)
            .await?
            .rows_affected(),
    )
}

#[derive(Debug, Clone, FromRow)]
pub struct NotificationRow {
    pub id: String,
    pub kind: String,
    pub severity: String,
    pub title: String,
    pub body: String,
    pub action_text: String,
    pub action_href: Option<String>,
    pub occurrences: i64,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub resolved_at: Option<i64>,
    pub read_at: Option<i64>,
    pub run_id: Option<String>,
}

const COLS: &str = "id, kind, severity, title, body, action_text, action_href, occurrences, first_seen_at, \
                    last_seen_at, resolved_at, read_at, run_id";

/// Which notifications to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Open,
    Resolved,
    All,
}

/// Newest first, by status and optionally severity (`error`, `warning`, `info`).
pub async fn list<'e>(
    ex: impl Executor<'e, Database = Any>,
    status: StatusFilter,
    severity: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    let status_sql = match status {
        StatusFilter::Open => "resolved_at IS NULL",
        StatusFilter::Resolved => "resolved_at IS NOT NULL",
        StatusFilter::All => "1 = 1",
    };
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM notifications WHERE {status_sql} AND ($1 IS NULL OR severity = $1) \
         ORDER BY last_seen_at DESC, id LIMIT $2"
    ))
    .bind(severity)
    .bind(limit)
    .fetch_all(ex)
    .await
}
