//! SQL for invitations, their settings, enrollment PINs and registration attempts.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use crate::clock::Millis;
use crate::db::ids::new_id;
use crate::invitations::model::InvitationSettings;

const SETTINGS_ID: &str = "default";

#[derive(FromRow)]
struct SettingsRow {
    subject: String,
    text_body: String,
    html_body: String,
    lifetime_days: i64,
    pin_length: i64,
    pin_lifetime_minutes: i64,
}

pub async fn find_settings<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Option<InvitationSettings>> {
    let row: Option<SettingsRow> = sqlx::query_as(
        "SELECT subject, text_body, html_body, lifetime_days, pin_length, pin_lifetime_minutes \
         FROM invitation_settings WHERE id = $1",
    )
    .bind(SETTINGS_ID)
    .fetch_optional(ex)
    .await?;
    Ok(row.map(|r| InvitationSettings {
        subject: r.subject,
        text_body: r.text_body,
        html_body: r.html_body,
        lifetime_days: r.lifetime_days,
        pin_length: r.pin_length,
        pin_lifetime_minutes: r.pin_lifetime_minutes,
    }))
}

pub async fn upsert_settings<'e>(
    ex: impl Executor<'e, Database = Any>,
    s: &InvitationSettings,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO invitation_settings (id, subject, text_body, html_body, lifetime_days, pin_length, \
         pin_lifetime_minutes, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET subject = excluded.subject, text_body = excluded.text_body, \
         html_body = excluded.html_body, lifetime_days = excluded.lifetime_days, pin_length = excluded.pin_length, \
         pin_lifetime_minutes = excluded.pin_lifetime_minutes, updated_at = excluded.updated_at",
    )
    .bind(SETTINGS_ID)
    .bind(&s.subject)
    .bind(&s.text_body)
    .bind(&s.html_body)
    .bind(s.lifetime_days)
    .bind(s.pin_length)
    .bind(s.pin_lifetime_minutes)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct InvitationRow {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub created_by: String,
    pub mail_id: Option<String>,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub replaced_at: Option<i64>,
}

impl InvitationRow {
    /// "pending", "used", "revoked", "replaced" or "expired" at `now`.
    pub fn status(&self, now: Millis) -> &'static str {
        if self.used_at.is_some() {
            "used"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.replaced_at.is_some() {
            "replaced"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "pending"
        }
    }
}

const INV_COLS: &str =
    "id, user_id, created_at, expires_at, created_by, mail_id, used_at, revoked_at, replaced_at";

pub async fn find_by_token_hash<'e>(
    ex: impl Executor<'e, Database = Any>,
    hash: &str,
) -> sqlx::Result<Option<InvitationRow>> {
    sqlx::query_as(&format!(
        "SELECT {INV_COLS} FROM invitations WHERE token_hash = $1"
    ))
    .bind(hash)
    .fetch_optional(ex)
    .await
}

pub async fn find<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<InvitationRow>> {
    sqlx::query_as(&format!("SELECT {INV_COLS} FROM invitations WHERE id = $1"))
        .bind(id)
        .fetch_optional(ex)
        .await
}

pub async fn list_for_user<'e>(
    ex: impl Executor<'e, Database = Any>,
    user_id: &str,
) -> sqlx::Result<Vec<InvitationRow>> {
    sqlx::query_as(&format!(
        "SELECT {INV_COLS} FROM invitations WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
    ))
    .bind(user_id)
    .fetch_all(ex)
    .await
}

/// The newest invitations with their user's UPN and display name.
#[derive(Debug, Clone, FromRow)]
pub struct RecentRow {
    pub id: String,
    pub user_id: String,
    pub upn: String,
    pub display_name: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub created_by: String,
    pub mail_id: Option<String>,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub replaced_at: Option<i64>,
}

pub async fn list_recent<'e>(
    ex: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<RecentRow>> {
    sqlx::query_as(
        "SELECT i.id, i.user_id, u.upn, u.display_name, i.created_at, i.expires_at, i.created_by, i.mail_id, \
         i.used_at, i.revoked_at, i.replaced_at FROM invitations i JOIN directory_users u ON u.id = i.user_id \
         ORDER BY i.created_at DESC, i.id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Counts of users per invitation state.
pub async fn count_states<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT invitation_state, COUNT(*) FROM directory_users WHERE deleted_at IS NULL GROUP BY invitation_state",
    )
    .fetch_all(ex)
    .await
}

/// A new invitation to write.
pub struct NewInvitation {
    pub id: String,
    pub user_id: String,
    pub token_hash: String,
    pub expires_at: Millis,
    pub mail_id: String,
}

/// Marks the users' open invitations replaced, inserts the new ones and marks the users invited.
pub async fn insert_invitations(
    conn: &mut AnyConnection,
    rows: &[NewInvitation],
    created_by: &str,
    now: Millis,
) -> sqlx::Result<()> {
    let per_statement = crate::db::rows_per_statement(&*conn, 5);
    for chunk in rows.chunks(per_statement) {
        let ids: Vec<&str> = chunk.iter().map(|r| r.user_id.as_str()).collect();
        let list = placeholders(3, ids.len());
        let sql = format!(
            "UPDATE invitations SET replaced_at = $1 WHERE used_at IS NULL AND revoked_at IS NULL \
             AND replaced_at IS NULL AND expires_at > $2 AND user_id IN ({list})"
        );
        let mut q = sqlx::query(&sql).bind(now).bind(now);
        for id in &ids {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 3 + i * 5;
                format!(
                    "(${}, ${}, ${}, $1, ${}, $2, ${})",
                    b,
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO invitations (id, user_id, token_hash, created_at, expires_at, created_by, mail_id) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now).bind(created_by);
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(&r.user_id)
                .bind(&r.token_hash)
                .bind(r.expires_at)
                .bind(&r.mail_id);
        }
        q.execute(&mut *conn).await?;
        let sql = format!(
            "UPDATE directory_users SET invitation_state = CASE WHEN invitation_state = 'registered' \
             THEN 'registered' ELSE 'invited' END, invited_at = $1 WHERE id IN ({})",
            placeholders(2, ids.len())
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in &ids {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Revokes a user's open invitations; returns how many.
pub async fn revoke_open<'e>(
    ex: impl Executor<'e, Database = Any>,
    user_id: &str,
    now: Millis,
) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "UPDATE invitations SET revoked_at = $1 WHERE user_id = $2 AND used_at IS NULL AND revoked_at IS NULL \
         AND replaced_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(ex)
    .await?;
    Ok(r.rows_affected())
}

/// A user whose invitation was revoked is "not invited" again (a registered user stays registered).
pub async fn clear_invited<'e>(
    ex: impl Executor<'e, Database = Any>,
    user_id: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE directory_users SET invitation_state = 'none' WHERE id = $1 AND invitation_state = 'invited'",
    )
    .bind(user_id)
    .execute(ex)
    .await?;
    Ok(())
}

/// Uses an invitation, once: false when it was used, revoked, replaced or expired meanwhile.
pub async fn consume<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE invitations SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL \
         AND replaced_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn mark_registered<'e>(
    ex: impl Executor<'e, Database = Any>,
    user_id: &str,
    password_hash: Option<&str>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE directory_users SET invitation_state = 'registered', registered_at = $1, \
         password_hash = COALESCE($2, password_hash) WHERE id = $3",
    )
    .bind(now)
    .bind(password_hash)
    .bind(user_id)
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn create_pin<'e>(
    ex: impl Executor<'e, Database = Any>,
    user_id: &str,
    pin_hash: &str,
    expires_at: Millis,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO enrollment_pins (id, user_id, pin_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(pin_hash)
    .bind(now)
    .bind(expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// Users of one source, among `external_ids`, first seen in `run_id` and never invited.
pub async fn new_uninvited_users(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: &str,
    external_ids: &[String],
) -> sqlx::Result<Vec<String>> {
    let mut out = Vec::new();
    let per_statement = crate::db::rows_per_statement(&*conn, 1);
    for chunk in external_ids.chunks(per_statement) {
        let sql = format!(
            "SELECT id FROM directory_users WHERE source_id = $1 AND first_seen_run = $2 AND invited_at IS NULL \
             AND invitation_state = 'none' AND deleted_at IS NULL AND external_id IN ({})",
            placeholders(3, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql)
            .bind(source_id)
            .bind(run_id);
        for e in chunk {
            q = q.bind(e);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

pub async fn record_attempt<'e>(
    ex: impl Executor<'e, Database = Any>,
    ip: &str,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO registration_attempts (id, ip, at) VALUES ($1, $2, $3)")
        .bind(new_id())
        .bind(ip)
        .bind(now)
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn count_attempts_since<'e>(
    ex: impl Executor<'e, Database = Any>,
    ip: &str,
    since: Millis,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM registration_attempts WHERE ip = $1 AND at >= $2")
        .bind(ip)
        .bind(since)
        .fetch_one(ex)
        .await
}
