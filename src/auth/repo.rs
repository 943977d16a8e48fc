//! SQL for admin accounts, sessions, setup tokens and login attempts.

use sqlx::{Any, Executor, FromRow};

use crate::clock::Millis;

#[derive(Debug, Clone, FromRow)]
struct AdminRow {
    id: String,
    username: String,
    password_hash: String,
    disabled: i64,
    created_at: i64,
    last_login_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: Millis,
    pub last_login_at: Option<Millis>,
}

impl From<AdminRow> for Admin {
    fn from(r: AdminRow) -> Self {
        Self {
            id: r.id,
            username: r.username,
            password_hash: r.password_hash,
            disabled: r.disabled != 0,
            created_at: r.created_at,
            last_login_at: r.last_login_at,
        }
    }
}

const ADMIN_COLS: &str = "id, username, password_hash, disabled, created_at, last_login_at";

pub async fn count_admins<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM admins")
        .fetch_one(ex)
        .await
}

pub async fn find_admin<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<Admin>> {
    let row: Option<AdminRow> =
        sqlx::query_as(&format!("SELECT {ADMIN_COLS} FROM admins WHERE id = $1"))
            .bind(id)
            .fetch_optional(ex)
            .await?;
    Ok(row.map(Admin::from))
}

/// The admin a request's session names, with the count of open notifications nobody has marked read that every
/// admin page's header shows, read in the same statement: one statement fewer per page view, which on SQLite
/// costs hand-offs to the connection's thread however small it is (docs/benchmarks.md).
pub async fn find_admin_with_unread<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<(Admin, i64)>> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        admin: AdminRow,
        unread: i64,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {ADMIN_COLS}, (SELECT COUNT(*) FROM notifications \
         WHERE resolved_at IS NULL AND read_at IS NULL) AS unread FROM admins WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await?;
    Ok(row.map(|r| (Admin::from(r.admin), r.unread)))
}

pub async fn find_admin_by_username<'e>(
    ex: impl Executor<'e, Database = Any>,
    username: &str,
) -> sqlx::Result<Option<Admin>> {
    let row: Option<AdminRow> = sqlx::query_as(&format!(
        "SELECT {ADMIN_COLS} FROM admins WHERE username_lower = $1"
    ))
    .bind(username.to_lowercase())
    .fetch_optional(ex)
    .await?;
    Ok(row.map(Admin::from))
}

pub async fn create_admin<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    username: &str,
    password_hash: &str,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO admins (id, username, username_lower, password_hash, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $5)",
    )
    .bind(id)
    .bind(username)
    .bind(username.to_lowercase())
    .bind(password_hash)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn touch_last_login<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE admins SET last_login_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

// ---- setup tokens ----

pub async fn delete_unused_setup_tokens<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM setup_tokens WHERE used_at IS NULL")
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn create_setup_token<'e>(
    ex: impl Executor<'e, Database = Any>,
    token_hash: &str,
    now: Millis,
    expires_at: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// True when the token exists, is unused and has not expired.
pub async fn setup_token_is_valid<'e>(
    ex: impl Executor<'e, Database = Any>,
    token_hash: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_one(ex)
    .await?;
    Ok(n > 0)
}

/// Marks the token used if it is still valid; false when it was not (used, expired or unknown).
pub async fn consume_setup_token<'e>(
    ex: impl Executor<'e, Database = Any>,
    token_hash: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE setup_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(token_hash)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

// ---- login attempts ----

/// Records an attempt as a failure before the password is checked (so parallel guesses count against
/// each other); returns its id, for [`mark_attempt_succeeded`] or [`delete_attempt`].
pub async fn record_login_attempt<'e>(
    ex: impl Executor<'e, Database = Any>,
    username: &str,
    ip: &str,
    at: Millis,
) -> sqlx::Result<String> {
    let id = crate::db::ids::new_id();
    sqlx::query("INSERT INTO login_attempts (id, username_lower, ip, at, success) VALUES ($1, $2, $3, $4, 0)")
        .bind(&id)
        .bind(username.to_lowercase())
        .bind(ip)
        .bind(at)
        .execute(ex)
        .await?;
    Ok(id)
}

pub async fn mark_attempt_succeeded<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE login_attempts SET success = 1 WHERE id = $1")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

/// An attempt refused by the lockout is not a new failure (the lockout does not extend itself).
pub async fn delete_attempt<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_attempts WHERE id = $1")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Times of failed attempts since `since` for this account or from this address, newest first, leaving
/// out the attempt `except_id` (the one being decided).
pub async fn list_failures_since<'e>(
    ex: impl Executor<'e, Database = Any>,
    username: &str,
    ip: &str,
    since: Millis,
    except_id: &str,
) -> sqlx::Result<(Vec<Millis>, Vec<Millis>)> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT username_lower, ip, at FROM login_attempts \
         WHERE success = 0 AND at > $1 AND (username_lower = $2 OR ip = $3) AND id <> $4 ORDER BY at DESC",
    )
    .bind(since)
    .bind(username.to_lowercase())
    .bind(ip)
    .bind(except_id)
    .fetch_all(ex)
    .await?;
    let user = username.to_lowercase();
    let by_user = rows.iter().filter(|r| r.0 == user).map(|r| r.2).collect();
    let by_ip = rows.iter().filter(|r| r.1 == ip).map(|r| r.2).collect();
    Ok((by_user, by_ip))
}

pub async fn delete_login_attempts_before<'e>(
    ex: impl Executor<'e, Database = Any>,
    before: Millis,
) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM login_attempts WHERE at < $1")
        .bind(before)
        .execute(ex)
        .await?
        .rows_affected())
}

// ---- sessions ----

#[derive(Debug, FromRow)]
pub struct SessionRow {
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn find_session<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as("SELECT state, created_at, expires_at FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(ex)
        .await
}

pub async fn create_session<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    admin_id: Option<&str>,
    state: &str,
    created_at: Millis,
    expires_at: Millis,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO sessions (id, admin_id, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(admin_id)
        .bind(state)
        .bind(created_at)
        .bind(expires_at)
        .execute(ex)
        .await?;
    Ok(())
}

/// Replaces a live session's state; false when the session no longer exists.
pub async fn update_session<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    admin_id: Option<&str>,
    state: &str,
    now: Millis,
    expires_at: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET admin_id = $1, state = $2, expires_at = $3 WHERE id = $4 AND expires_at > $5",
    )
    .bind(admin_id)
    .bind(state)
    .bind(expires_at)
    .bind(id)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends a session's idle deadline. Skips the write when it moved less than a minute, so browsing
/// does not write on every request.
pub async fn extend_session<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    expires_at: Millis,
    slack: Millis,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = $2 AND expires_at < $3")
        .bind(expires_at)
        .bind(id)
        .bind(expires_at - slack)
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn delete_session<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn delete_sessions_of_admin<'e>(
    ex: impl Executor<'e, Database = Any>,
    admin_id: &str,
) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM sessions WHERE admin_id = $1")
        .bind(admin_id)
        .execute(ex)
        .await?
        .rows_affected())
}

pub async fn delete_expired_sessions<'e>(
    ex: impl Executor<'e, Database = Any>,
    now: Millis,
    created_before: Millis,
) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR created_at < $2")
            .bind(now)
            .bind(created_before)
            .execute(ex)
            .await?
            .rows_affected(),
    )
}
