//! SQL for the append-only audit table.

use sqlx::{Any, Executor, FromRow};

use crate::audit::event::{Actor, AuditEvent};
use crate::db::ids::new_id;

pub async fn insert<'e>(ex: impl Executor<'e, Database = Any>, e: &AuditEvent) -> sqlx::Result<()> {
    let (kind, id, name) = match &e.actor {
        Actor::Admin { id, name } => ("admin", Some(id.as_str()), Some(name.as_str())),
        Actor::Anonymous => ("anonymous", None, None),
        Actor::System => ("system", None, None),
    };
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor_kind, actor_id, actor_name, action, target_kind, target_id, \
         ip, request_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(new_id())
    .bind(e.at)
    .bind(kind)
    .bind(id)
    .bind(name)
    .bind(e.action.as_str())
    .bind(e.target_kind)
    .bind(e.target_id.as_deref())
    .bind(e.ip.as_deref())
    .bind(e.request_id.as_deref())
    .bind(e.details.to_string())
    .execute(ex)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub actor_kind: String,
    pub actor_name: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub details: String,
}

/// A keyset position: the (time, id) of the last row shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: i64,
    pub id: String,
}

/// Newest first; `before` continues after the last row of the previous page.
pub async fn list_page<'e>(
    ex: impl Executor<'e, Database = Any>,
    before: Option<&Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    const COLS: &str =
        "id, at, actor_kind, actor_name, action, target_kind, target_id, ip, details";
    match before {
        Some(c) => {
            sqlx::query_as(&format!(
                "SELECT {COLS} FROM audit_events WHERE at < $1 OR (at = $1 AND id < $2) \
                 ORDER BY at DESC, id DESC LIMIT $3"
            ))
            .bind(c.at)
            .bind(&c.id)
            .bind(limit)
            .fetch_all(ex)
            .await
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLS} FROM audit_events ORDER BY at DESC, id DESC LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(ex)
            .await
        }
    }
}

pub async fn count<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(ex)
        .await
}
