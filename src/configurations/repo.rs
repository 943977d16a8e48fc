//! SQL for configurations, and the directory reads and writes they need (user values, missing-value
//! counts, renaming custom-attribute keys). Portable SQL over `sqlx::Any`, one string for both backends.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use crate::clock::Millis;
use crate::directory::repo::custom_key_pattern;

#[derive(Debug, Clone, FromRow)]
pub struct ConfigRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub fields: String,
    /// Sealed with the master key; never sent to a page.
    pub secret_sealed: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const COLS: &str = "id, name, kind, fields, secret_sealed, created_at, updated_at";

pub async fn list<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<ConfigRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM configurations ORDER BY name_lower"
    ))
    .fetch_all(ex)
    .await
}

pub async fn find<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<ConfigRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM configurations WHERE id = $1"))
        .bind(id)
        .fetch_optional(ex)
        .await
}

/// Inserts a configuration; a taken name is a unique violation.
pub async fn create<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    name: &str,
    kind: &str,
    fields: &str,
    secret_sealed: Option<&str>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO configurations (id, name, name_lower, kind, fields, secret_sealed, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(id)
    .bind(name)
    .bind(name.to_lowercase())
    .bind(kind)
    .bind(fields)
    .bind(secret_sealed)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

/// What an update does with the stored secret.
#[derive(Debug, Clone, Copy)]
pub enum SecretChange<'a> {
    Keep,
    Set(&'a str),
    Clear,
}

/// Replaces name and fields; returns false when the row is gone.
pub async fn update<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    name: &str,
    fields: &str,
    secret: SecretChange<'_>,
    now: Millis,
) -> sqlx::Result<bool> {
    let (set, value) = match secret {
        SecretChange::Keep => (0_i64, None),
        SecretChange::Set(s) => (1, Some(s)),
        SecretChange::Clear => (1, None),
    };
    let done = sqlx::query(
        "UPDATE configurations SET name = $1, name_lower = $2, fields = $3, \
         secret_sealed = CASE WHEN $4 = 1 THEN $5 ELSE secret_sealed END, updated_at = $6 WHERE id = $7",
    )
    .bind(name)
    .bind(name.to_lowercase())
    .bind(fields)
    .bind(set)
    .bind(value)
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces only the fields (a variable rename); the edit time stays, since no admin edited it.
pub async fn update_fields<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    fields: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE configurations SET fields = $1 WHERE id = $2")
        .bind(fields)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn delete<'e>(ex: impl Executor<'e, Database = Any>, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM configurations WHERE id = $1")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

// ---- directory users, as variables need them ----

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub source: String,
    pub external_id: Option<String>,
    pub upn: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: String,
    pub managed_apple_id: Option<String>,
    pub custom_attributes: String,
    pub not_synced_at: Option<Millis>,
}

/// A user by our id, by UPN or by email address (case-insensitive); active users first.
pub async fn find_user<'e>(
    ex: impl Executor<'e, Database = Any>,
    key: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(
        "SELECT id, source, external_id, upn, mail, given_name, surname, display_name, managed_apple_id, \
         custom_attributes, not_synced_at FROM directory_users \
         WHERE deleted_at IS NULL AND (id = $1 OR upn_lower = $2 OR mail_lower = $2) \
         ORDER BY CASE WHEN id = $1 THEN 0 WHEN upn_lower = $2 THEN 1 ELSE 2 END, \
         CASE WHEN not_synced_at IS NULL THEN 0 ELSE 1 END, upn_lower LIMIT 1",
    )
    .bind(key)
    .bind(key.to_lowercase())
    .fetch_optional(ex)
    .await
}

/// Active users (the ones counts are over).
pub async fn count_active_users<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL AND deleted_at IS NULL",
    )
    .fetch_one(ex)
    .await
}

/// Columns behind built-in variables that a user may lack (the others are always set).
pub fn builtin_column(variable: &str) -> Option<&'static str> {
    match variable {
        "userEmailAddress" => Some("mail"),
        "userFirstName" => Some("given_name"),
        "userLastName" => Some("surname"),
        "managedAppleId" => Some("managed_apple_id"),
        _ => None,
    }
}

/// Active users without a value for a built-in variable's column (see [`builtin_column`]).
pub async fn count_missing_builtin<'e>(
    ex: impl Executor<'e, Database = Any>,
    variable: &str,
) -> anyhow::Result<i64> {
    let col =
        builtin_column(variable).ok_or_else(|| anyhow::anyhow!("{variable} is never missing"))?;
    Ok(sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL AND deleted_at IS NULL \
         AND ({col} IS NULL OR {col} = '')"
    ))
    .fetch_one(ex)
    .await?)
}

/// Active users without a value for a custom attribute (the same rule as `/admin/users?missing=`).
pub async fn count_missing_custom<'e>(
    ex: impl Executor<'e, Database = Any>,
    name: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL AND deleted_at IS NULL \
         AND custom_attributes NOT LIKE $1 ESCAPE '\\'",
    )
    .bind(custom_key_pattern(name))
    .fetch_one(ex)
    .await
}

/// What a key rename needs of a user row: its custom attributes and what the content hash covers.
#[derive(Debug, Clone, FromRow)]
pub struct AttributeRow {
    pub id: String,
    pub source: String,
    pub external_id: Option<String>,
    pub upn: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: String,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub account_enabled: i64,
    pub managed_apple_id: Option<String>,
    pub custom_attributes: String,
    pub content_hash: String,
}

/// The next page (by id) of users whose custom attributes hold any of `names` as a key.
pub async fn list_users_with_keys(
    conn: &mut AnyConnection,
    names: &[String],
    after_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<AttributeRow>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let likes: Vec<String> = (0..names.len())
        .map(|i| format!("custom_attributes LIKE ${} ESCAPE '\\'", i + 3))
        .collect();
    let sql = format!(
        "SELECT id, source, external_id, upn, mail, given_name, surname, display_name, job_title, department, \
         account_enabled, managed_apple_id, custom_attributes, content_hash FROM directory_users \
         WHERE id > $1 AND ({}) ORDER BY id LIMIT $2",
        likes.join(" OR ")
    );
    let mut q = sqlx::query_as(&sql).bind(after_id).bind(limit);
    for n in names {
        q = q.bind(custom_key_pattern(n));
    }
    q.fetch_all(conn).await
}

/// Writes new custom attributes and content hashes for many users in one statement
/// (`UPDATE … FROM (VALUES …)` works on SQLite ≥ 3.33 and PostgreSQL; VALUES columns are `column1…`).
pub async fn update_user_attributes(
    conn: &mut AnyConnection,
    rows: &[(String, String, String)],
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let values: Vec<String> = (0..rows.len())
        .map(|i| format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3))
        .collect();
    let sql = format!(
        "UPDATE directory_users SET custom_attributes = v.column2, content_hash = v.column3 \
         FROM (VALUES {}) AS v WHERE directory_users.id = v.column1",
        values.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (id, attrs, hash) in rows {
        q = q.bind(id).bind(attrs).bind(hash);
    }
    Ok(q.execute(conn).await?.rows_affected())
}
