//! SQL for identity providers, their certificates, sign-ins in flight and the SAML replay cache.

use sqlx::{Any, Executor, FromRow};

use crate::clock::Millis;
use crate::db::flag;
use crate::db::ids::new_id;

#[derive(Debug, Clone, FromRow)]
pub struct IdpRow {
    pub kind: String,
    pub enabled: i64,
    pub use_for_admin: i64,
    pub use_for_registration: i64,
    /// JSON of `OidcSettings` or `SamlSettings`.
    pub settings: String,
    /// Sealed with the master key; never sent to a page.
    pub client_secret_sealed: Option<String>,
    /// Cached OIDC discovery (JSON).
    pub discovered: Option<String>,
    pub metadata_url: Option<String>,
    pub metadata_fetched_at: Option<i64>,
    pub metadata_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl IdpRow {
    pub fn is_enabled(&self) -> bool {
        self.enabled != 0
    }
}

const COLS: &str = "kind, enabled, use_for_admin, use_for_registration, settings, client_secret_sealed, discovered, \
     metadata_url, metadata_fetched_at, metadata_error, created_at, updated_at";

pub async fn list_providers<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<IdpRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM identity_providers ORDER BY kind"
    ))
    .fetch_all(ex)
    .await
}

pub async fn find_provider<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
) -> sqlx::Result<Option<IdpRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM identity_providers WHERE kind = $1"
    ))
    .bind(kind)
    .fetch_optional(ex)
    .await
}

pub async fn find_enabled<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Option<IdpRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM identity_providers WHERE enabled = 1"
    ))
    .fetch_optional(ex)
    .await
}

/// What a save writes; `None` secret keeps the stored one.
pub struct ProviderWrite<'a> {
    pub kind: &'a str,
    pub use_for_admin: bool,
    pub use_for_registration: bool,
    pub settings: &'a str,
    pub sealed_secret: Option<&'a str>,
    pub discovered: Option<&'a str>,
    pub metadata_url: Option<&'a str>,
    pub metadata_fetched_at: Option<Millis>,
}

/// Inserts or updates a provider's settings; `enabled` is left as it is (new rows start disabled).
pub async fn upsert_provider<'e>(
    ex: impl Executor<'e, Database = Any>,
    w: &ProviderWrite<'_>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO identity_providers (kind, enabled, use_for_admin, use_for_registration, settings, \
         client_secret_sealed, discovered, metadata_url, metadata_fetched_at, metadata_error, created_at, updated_at) \
         VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $9) \
         ON CONFLICT (kind) DO UPDATE SET use_for_admin = excluded.use_for_admin, \
         use_for_registration = excluded.use_for_registration, settings = excluded.settings, \
         client_secret_sealed = COALESCE(excluded.client_secret_sealed, identity_providers.client_secret_sealed), \
         discovered = excluded.discovered, metadata_url = excluded.metadata_url, \
         metadata_fetched_at = excluded.metadata_fetched_at, metadata_error = NULL, updated_at = excluded.updated_at",
    )
    .bind(w.kind)
    .bind(flag(w.use_for_admin))
    .bind(flag(w.use_for_registration))
    .bind(w.settings)
    .bind(w.sealed_secret)
    .bind(w.discovered)
    .bind(w.metadata_url)
    .bind(w.metadata_fetched_at)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn set_enabled<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
    enabled: bool,
    now: Millis,
) -> sqlx::Result<u64> {
    let r =
        sqlx::query("UPDATE identity_providers SET enabled = $1, updated_at = $2 WHERE kind = $3")
            .bind(flag(enabled))
            .bind(now)
            .bind(kind)
            .execute(ex)
            .await?;
    Ok(r.rows_affected())
}

pub async fn store_discovered<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
    discovered: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE identity_providers SET discovered = $1 WHERE kind = $2")
        .bind(discovered)
        .bind(kind)
        .execute(ex)
        .await?;
    Ok(())
}

/// Records a metadata refresh: the new settings on success, the error otherwise.
pub async fn record_metadata_refresh<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
    settings: Option<&str>,
    error: Option<&str>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE identity_providers SET settings = COALESCE($1, settings), metadata_error = $2, \
         metadata_fetched_at = CASE WHEN $2 IS NULL THEN $3 ELSE metadata_fetched_at END WHERE kind = $4",
    )
    .bind(settings)
    .bind(error)
    .bind(now)
    .bind(kind)
    .execute(ex)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct CertRow {
    pub id: String,
    pub kind: String,
    pub fingerprint: String,
    pub der_b64: String,
    pub subject: String,
    pub not_after: i64,
    pub source: String,
    pub added_at: i64,
}

pub async fn list_certificates<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
) -> sqlx::Result<Vec<CertRow>> {
    sqlx::query_as(
        "SELECT id, kind, fingerprint, der_b64, subject, not_after, source, added_at FROM idp_certificates \
         WHERE kind = $1 ORDER BY not_after DESC, id",
    )
    .bind(kind)
    .fetch_all(ex)
    .await
}

pub async fn list_all_certificates<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<CertRow>> {
    sqlx::query_as(
        "SELECT id, kind, fingerprint, der_b64, subject, not_after, source, added_at FROM idp_certificates \
         ORDER BY kind, not_after DESC, id",
    )
    .fetch_all(ex)
    .await
}

/// Adds a certificate unless the same one is trusted already; true when it was new.
pub async fn add_certificate<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
    cert: &crate::identity::saml::IdpCert,
    source: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO idp_certificates (id, kind, fingerprint, der_b64, subject, not_after, source, added_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (kind, fingerprint) DO NOTHING RETURNING id",
    )
    .bind(new_id())
    .bind(kind)
    .bind(&cert.fingerprint_sha256)
    .bind(&cert.der_b64)
    .bind(&cert.subject)
    .bind(cert.not_after)
    .bind(source)
    .bind(now)
    .fetch_optional(ex)
    .await?;
    Ok(inserted.is_some())
}

pub async fn delete_certificate<'e>(
    ex: impl Executor<'e, Database = Any>,
    kind: &str,
    id: &str,
) -> sqlx::Result<Option<CertRow>> {
    sqlx::query_as(
        "DELETE FROM idp_certificates WHERE kind = $1 AND id = $2 \
         RETURNING id, kind, fingerprint, der_b64, subject, not_after, source, added_at",
    )
    .bind(kind)
    .bind(id)
    .fetch_optional(ex)
    .await
}

#[derive(Debug, Clone, FromRow)]
pub struct SsoRequestRow {
    pub id: String,
    pub kind: String,
    pub purpose: String,
    pub binding_hash: String,
    pub nonce: Option<String>,
    pub pkce_verifier: Option<String>,
    pub relay: Option<String>,
    pub admin_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub answered_at: Option<i64>,
    pub outcome: Option<String>,
    pub refusal: Option<String>,
    pub claims: Option<String>,
    pub matched_user_id: Option<String>,
    pub completed_at: Option<i64>,
}

const SSO_COLS: &str = "id, kind, purpose, binding_hash, nonce, pkce_verifier, relay, admin_id, created_at, \
     expires_at, answered_at, outcome, refusal, claims, matched_user_id, completed_at";

pub struct NewSsoRequest<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub purpose: &'a str,
    pub binding_hash: &'a str,
    pub nonce: Option<&'a str>,
    pub pkce_verifier: Option<&'a str>,
    pub relay: Option<&'a str>,
    pub admin_id: Option<&'a str>,
    pub expires_at: Millis,
}

pub async fn create_sso_request<'e>(
    ex: impl Executor<'e, Database = Any>,
    r: &NewSsoRequest<'_>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO sso_requests (id, kind, purpose, binding_hash, nonce, pkce_verifier, relay, admin_id, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(r.id)
    .bind(r.kind)
    .bind(r.purpose)
    .bind(r.binding_hash)
    .bind(r.nonce)
    .bind(r.pkce_verifier)
    .bind(r.relay)
    .bind(r.admin_id)
    .bind(now)
    .bind(r.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn find_sso_request<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<SsoRequestRow>> {
    sqlx::query_as(&format!(
        "SELECT {SSO_COLS} FROM sso_requests WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await
}

/// Records the IdP's answer, once: false when the request was answered already (a replayed callback).
pub async fn answer_sso_request<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    outcome: &str,
    refusal: Option<&str>,
    claims: Option<&str>,
    matched_user_id: Option<&str>,
    now: Millis,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE sso_requests SET answered_at = $1, outcome = $2, refusal = $3, claims = $4, matched_user_id = $5, \
         pkce_verifier = NULL WHERE id = $6 AND answered_at IS NULL",
    )
    .bind(now)
    .bind(outcome)
    .bind(refusal)
    .bind(claims)
    .bind(matched_user_id)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks the answer used by the browser that started the sign-in, once.
pub async fn complete_sso_request<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE sso_requests SET completed_at = $1 WHERE id = $2 AND answered_at IS NOT NULL AND completed_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete_expired_sso_requests<'e>(
    ex: impl Executor<'e, Database = Any>,
    before: Millis,
) -> sqlx::Result<u64> {
    let r = sqlx::query("DELETE FROM sso_requests WHERE expires_at < $1")
        .bind(before)
        .execute(ex)
        .await?;
    Ok(r.rows_affected())
}

/// Remembers an accepted assertion id; false when it was seen before (a replay).
pub async fn remember_assertion<'e>(
    ex: impl Executor<'e, Database = Any>,
    assertion_id: &str,
    expires_at: Millis,
) -> sqlx::Result<bool> {
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO saml_seen_assertions (assertion_id, expires_at) VALUES ($1, $2) \
         ON CONFLICT (assertion_id) DO NOTHING RETURNING assertion_id",
    )
    .bind(assertion_id)
    .bind(expires_at)
    .fetch_optional(ex)
    .await?;
    Ok(inserted.is_some())
}

pub async fn forget_expired_assertions<'e>(
    ex: impl Executor<'e, Database = Any>,
    before: Millis,
) -> sqlx::Result<u64> {
    let r = sqlx::query("DELETE FROM saml_seen_assertions WHERE expires_at < $1")
        .bind(before)
        .execute(ex)
        .await?;
    Ok(r.rows_affected())
}

/// The directory user with this UPN (any case), for matching a sign-in.
pub async fn find_user_id_by_upn<'e>(
    ex: impl Executor<'e, Database = Any>,
    upn: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT id FROM directory_users WHERE upn_lower = $1 AND deleted_at IS NULL ORDER BY source, id LIMIT 1",
    )
    .bind(upn.trim().to_lowercase())
    .fetch_optional(ex)
    .await
}

/// The directory user with this source object id (Entra `oid`), for matching a sign-in.
pub async fn find_user_id_by_external_id<'e>(
    ex: impl Executor<'e, Database = Any>,
    external_id: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT id FROM directory_users WHERE external_id = $1 AND deleted_at IS NULL ORDER BY id LIMIT 1",
    )
    .bind(external_id.trim())
    .fetch_optional(ex)
    .await
}

/// The UPN of an active user: enabled in the directory, still synced, not deleted.
pub async fn find_active_upn<'e>(
    ex: impl Executor<'e, Database = Any>,
    user_id: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT upn FROM directory_users WHERE id = $1 AND account_enabled = 1 AND not_synced_at IS NULL \
         AND deleted_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(ex)
    .await
}
