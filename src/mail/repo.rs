//! SQL for mail: the SMTP settings row, the outbox (insert, claim with a lease, outcomes, summaries) and the
//! delivery state behind the failing-mail notification.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use crate::clock::Millis;
use crate::mail::model::{Security, SmtpSettings};
use crate::mail::outbox::OutgoingMail;

/// The id of the single settings row (and of the single delivery-state row).
pub const SETTINGS_ID: &str = "default";

#[derive(Debug, Clone, FromRow)]
struct SettingsRow {
    host: String,
    port: i64,
    security: String,
    username: Option<String>,
    password_sealed: Option<String>,
    from_name: String,
    from_address: String,
    updated_at: i64,
}

/// The stored settings and the sealed password.
#[derive(Debug, Clone)]
pub struct StoredSmtp {
    pub settings: SmtpSettings,
    /// Sealed with the master key; never sent to a page.
    pub password_sealed: Option<String>,
    pub updated_at: Millis,
}

pub async fn find_settings<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> anyhow::Result<Option<StoredSmtp>> {
    let row: Option<SettingsRow> = sqlx::query_as(
        "SELECT host, port, security, username, password_sealed, from_name, from_address, updated_at \
         FROM smtp_settings WHERE id = $1",
    )
    .bind(SETTINGS_ID)
    .fetch_optional(ex)
    .await?;
    row.map(|r| {
        Ok(StoredSmtp {
            settings: SmtpSettings {
                host: r.host,
                port: u16::try_from(r.port)?,
                security: Security::parse(&r.security)
                    .ok_or_else(|| anyhow::anyhow!("unknown SMTP security {:?}", r.security))?,
                username: r.username,
                from_name: r.from_name,
                from_address: r.from_address,
            },
            password_sealed: r.password_sealed,
            updated_at: r.updated_at,
        })
    })
    .transpose()
}

/// Inserts or replaces the settings row; `password_sealed` is stored as given (the service decides).
pub async fn upsert_settings<'e>(
    ex: impl Executor<'e, Database = Any>,
    s: &SmtpSettings,
    password_sealed: Option<&str>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO smtp_settings (id, host, port, security, username, password_sealed, from_name, from_address, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, port = excluded.port, security = excluded.security, \
         username = excluded.username, password_sealed = excluded.password_sealed, from_name = excluded.from_name, \
         from_address = excluded.from_address, updated_at = excluded.updated_at",
    )
    .bind(SETTINGS_ID)
    .bind(&s.host)
    .bind(i64::from(s.port))
    .bind(s.security.key())
    .bind(s.username.as_deref())
    .bind(password_sealed)
    .bind(&s.from_name)
    .bind(&s.from_address)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

// ---- outbox ----

/// Columns of one outbox row as read back.
const OUTBOX_COLS: &str = "id, kind, ref_id, to_address, to_name, subject, text_body, html_body, status, attempts, \
     next_attempt_at, lease_owner, lease_until, last_error, created_at, sent_at";

/// One outbox row.
#[derive(Debug, Clone, FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub kind: String,
    pub ref_id: Option<String>,
    pub to_address: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    /// Finished tries (sent or failed).
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// Inserts one queued mail.
pub async fn insert_mail<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    mail: &OutgoingMail,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO mail_outbox (id, kind, ref_id, to_address, to_name, subject, text_body, html_body, status, \
         attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', 0, $9, $9)",
    )
    .bind(id)
    .bind(mail.kind)
    .bind(mail.ref_id.as_deref())
    .bind(&mail.to_address)
    .bind(mail.to_name.as_deref())
    .bind(&mail.subject)
    .bind(&mail.text_body)
    .bind(&mail.html_body)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

/// Inserts many queued mails with one multi-row INSERT (the caller keeps `rows` modest: 8 binds per row).
pub async fn insert_mails(
    conn: &mut AnyConnection,
    rows: &[(String, &OutgoingMail)],
    now: Millis,
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO mail_outbox (id, kind, ref_id, to_address, to_name, subject, text_body, html_body, status, \
         attempts, next_attempt_at, created_at) VALUES ",
    );
    for i in 0..rows.len() {
        let b = i * 8 + 2;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'queued', 0, $1, $1)",
            b,
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    let mut q = sqlx::query(&sql).bind(now);
    for (id, mail) in rows {
        q = q
            .bind(id.as_str())
            .bind(mail.kind)
            .bind(mail.ref_id.as_deref())
            .bind(mail.to_address.as_str())
            .bind(mail.to_name.as_deref())
            .bind(mail.subject.as_str())
            .bind(mail.text_body.as_str())
            .bind(mail.html_body.as_str());
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Claims up to `limit` due mails for `owner` until `lease_until`, in one statement.
///
/// The due/lease conditions are repeated outside the sub-select on purpose: on PostgreSQL a concurrent
/// claimer blocks on the row lock, and after the first commits only the outer WHERE is re-checked against
/// the new row version, so a row another instance just leased is skipped instead of claimed twice.
/// SQLite serialises writers, so the statement is atomic there anyway.
pub async fn claim_due<'e>(
    ex: impl Executor<'e, Database = Any>,
    owner: &str,
    now: Millis,
    lease_until: Millis,
    limit: i64,
) -> sqlx::Result<Vec<OutboxRow>> {
    let due =
        "status = 'queued' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)";
    let mut rows: Vec<OutboxRow> = sqlx::query_as(&format!(
        "UPDATE mail_outbox SET lease_owner = $1, lease_until = $2 \
         WHERE {due} AND id IN (SELECT id FROM mail_outbox WHERE {due} ORDER BY next_attempt_at, id LIMIT $4) \
         RETURNING {OUTBOX_COLS}"
    ))
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(limit)
    .fetch_all(ex)
    .await?;
    // RETURNING gives no order guarantee.
    rows.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    Ok(rows)
}

/// Extends our lease on a queued row just before sending it; false when it is no longer ours.
pub async fn renew_lease<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    owner: &str,
    lease_until: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE mail_outbox SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'queued'",
    )
    .bind(lease_until)
    .bind(id)
    .bind(owner)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a mail sent, if we still hold it.
pub async fn mark_sent<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    owner: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE mail_outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1, lease_owner = NULL, \
         lease_until = NULL WHERE id = $2 AND lease_owner = $3 AND status = 'queued'",
    )
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed try: back to `queued` with a later `next_attempt_at`, or `failed` when given up.
pub async fn mark_attempt_failed<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    owner: &str,
    error: &str,
    next_attempt_at: Millis,
    give_up: bool,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE mail_outbox SET status = $1, attempts = attempts + 1, last_error = $2, next_attempt_at = $3, \
         lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5 AND status = 'queued'",
    )
    .bind(if give_up { "failed" } else { "queued" })
    .bind(error)
    .bind(next_attempt_at)
    .bind(id)
    .bind(owner)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a claimed row back untried (the server went away mid-batch), due again at `next_attempt_at`.
pub async fn postpone<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    owner: &str,
    next_attempt_at: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE mail_outbox SET next_attempt_at = $1, lease_owner = NULL, lease_until = NULL \
         WHERE id = $2 AND lease_owner = $3 AND status = 'queued'",
    )
    .bind(next_attempt_at)
    .bind(id)
    .bind(owner)
    .execute(ex)
    .await?;
    Ok(())
}

/// The newest mail for a cause (e.g. an invitation id), if any.
pub async fn find_latest_by_ref<'e>(
    ex: impl Executor<'e, Database = Any>,
    ref_id: &str,
) -> sqlx::Result<Option<OutboxRow>> {
    sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM mail_outbox WHERE ref_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
    ))
    .bind(ref_id)
    .fetch_optional(ex)
    .await
}

/// Every mail for some causes (newest first); the caller keeps `ref_ids` modest (one bind each).
pub async fn list_by_refs(
    conn: &mut AnyConnection,
    ref_ids: &[&str],
) -> sqlx::Result<Vec<OutboxRow>> {
    if ref_ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ref_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {OUTBOX_COLS} FROM mail_outbox WHERE ref_id IN ({}) ORDER BY created_at DESC, id DESC",
        marks.join(", ")
    );
    let mut q = sqlx::query_as(&sql);
    for r in ref_ids {
        q = q.bind(*r);
    }
    q.fetch_all(&mut *conn).await
}

pub async fn get_mail<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<OutboxRow>> {
    sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM mail_outbox WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await
}

/// Newest first.
pub async fn list_recent<'e>(
    ex: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as(&format!(
        "SELECT {OUTBOX_COLS} FROM mail_outbox ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Counts for the page: queued, sent since `since`, failed.
pub async fn count_summary<'e>(
    ex: impl Executor<'e, Database = Any>,
    since: Millis,
) -> sqlx::Result<(i64, i64, i64)> {
    // CAST: PostgreSQL's SUM is NUMERIC, which does not pass through Any.
    let row: (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT CAST(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN status = 'sent' AND sent_at >= $1 THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) FROM mail_outbox",
    )
    .bind(since)
    .fetch_one(ex)
    .await?;
    Ok((row.0.unwrap_or(0), row.1.unwrap_or(0), row.2.unwrap_or(0)))
}

// ---- delivery state ----

/// Consecutive failures across all mail and the last error.
#[derive(Debug, Clone, Default, FromRow)]
pub struct DeliveryState {
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    pub last_failure_at: Option<i64>,
    pub last_success_at: Option<i64>,
}

pub async fn find_delivery_state<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> sqlx::Result<DeliveryState> {
    let row: Option<DeliveryState> = sqlx::query_as(
        "SELECT consecutive_failures, last_error, last_failure_at, last_success_at FROM mail_delivery_state \
         WHERE id = $1",
    )
    .bind(SETTINGS_ID)
    .fetch_optional(ex)
    .await?;
    Ok(row.unwrap_or_default())
}

/// Counts one more failed attempt; returns the consecutive count now.
pub async fn record_failure<'e>(
    ex: impl Executor<'e, Database = Any>,
    error: &str,
    now: Millis,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO mail_delivery_state (id, consecutive_failures, last_error, last_failure_at) \
         VALUES ($1, 1, $2, $3) ON CONFLICT (id) DO UPDATE SET \
         consecutive_failures = mail_delivery_state.consecutive_failures + 1, last_error = excluded.last_error, \
         last_failure_at = excluded.last_failure_at RETURNING consecutive_failures",
    )
    .bind(SETTINGS_ID)
    .bind(error)
    .bind(now)
    .fetch_one(ex)
    .await
}

/// Records a delivered mail: resets the failure count. True when it ended a run of failures (or wrote the
/// first row), so the caller resolves the notification only then.
pub async fn record_success<'e>(
    ex: impl Executor<'e, Database = Any>,
    now: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO mail_delivery_state (id, consecutive_failures, last_success_at) VALUES ($1, 0, $2) \
         ON CONFLICT (id) DO UPDATE SET consecutive_failures = 0, last_success_at = excluded.last_success_at \
         WHERE mail_delivery_state.consecutive_failures > 0",
    )
    .bind(SETTINGS_ID)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}
