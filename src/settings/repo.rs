//! SQL for user-source settings.

use sqlx::{Any, Executor, FromRow};

use crate::clock::Millis;
use crate::settings::model::{AppleIdMode, Cloud, CustomAttribute, EntraSettings};

#[derive(Debug, Clone, FromRow)]
struct SourceRow {
    id: String,
    name: String,
    enabled: i64,
    sync_interval_minutes: i64,
    auto_invite: i64,
    tenant_id: String,
    client_id: String,
    client_secret_sealed: Option<String>,
    cloud: String,
    authority_url: Option<String>,
    graph_url: Option<String>,
    apple_id_mode: String,
    apple_id_subdomain: i64,
    removal_guard_percent: i64,
    removal_guard_min: i64,
    custom_attributes: String,
    sync_requested_at: Option<i64>,
    users_delta_link: Option<String>,
    groups_delta_link: Option<String>,
    delta_links_at: Option<i64>,
    delta_select: Option<String>,
    updated_at: i64,
}

/// A stored Entra ID user source.
#[derive(Debug, Clone)]
pub struct StoredSource {
    pub id: String,
    pub settings: EntraSettings,
    /// Sealed with the master key; never sent to a page.
    pub client_secret_sealed: Option<String>,
    pub sync_requested_at: Option<Millis>,
    pub users_delta_link: Option<String>,
    pub groups_delta_link: Option<String>,
    pub delta_links_at: Option<Millis>,
    /// The user `$select` the stored delta links were made with.
    pub delta_select: Option<String>,
    pub updated_at: Millis,
}

impl TryFrom<SourceRow> for StoredSource {
    type Error = anyhow::Error;

    fn try_from(r: SourceRow) -> anyhow::Result<Self> {
        let cloud = match r.cloud.as_str() {
            "global" => Cloud::Global,
            "usgov" => Cloud::UsGov,
            "china" => Cloud::China,
            _ => Cloud::Custom {
                authority: r.authority_url.unwrap_or_default(),
                graph: r.graph_url.unwrap_or_default(),
            },
        };
        let attrs: Vec<CustomAttribute> = serde_json::from_str(&r.custom_attributes)?;
        Ok(Self {
            id: r.id,
            settings: EntraSettings {
                name: r.name,
                enabled: r.enabled != 0,
                sync_interval_minutes: r.sync_interval_minutes,
                auto_invite: r.auto_invite != 0,
                tenant_id: r.tenant_id,
                client_id: r.client_id,
                cloud,
                apple_id_mode: AppleIdMode::parse(&r.apple_id_mode).unwrap_or(AppleIdMode::None),
                apple_id_subdomain: r.apple_id_subdomain != 0,
                removal_guard_percent: r.removal_guard_percent,
                removal_guard_min: r.removal_guard_min,
                custom_attributes: attrs,
            },
            client_secret_sealed: r.client_secret_sealed,
            sync_requested_at: r.sync_requested_at,
            users_delta_link: r.users_delta_link,
            groups_delta_link: r.groups_delta_link,
            delta_links_at: r.delta_links_at,
            delta_select: r.delta_select,
            updated_at: r.updated_at,
        })
    }
}

const COLS: &str = "id, name, enabled, sync_interval_minutes, auto_invite, tenant_id, client_id, client_secret_sealed, \
     cloud, authority_url, graph_url, apple_id_mode, apple_id_subdomain, removal_guard_percent, removal_guard_min, custom_attributes, sync_requested_at, \
     users_delta_link, groups_delta_link, delta_links_at, delta_select, updated_at";

/// The memo key (`Db::memo`) of the source's custom attribute names, which the Users page reads; forget it after
/// saving the source.
pub const CUSTOM_NAMES: &str = "user_source_custom_names";

pub async fn find_source<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> anyhow::Result<Option<StoredSource>> {
    let row: Option<SourceRow> =
        sqlx::query_as(&format!("SELECT {COLS} FROM user_sources WHERE id = $1"))
            .bind(id)
            .fetch_optional(ex)
            .await?;
    row.map(StoredSource::try_from).transpose()
}

/// Inserts or replaces the settings. `sealed_secret = None` keeps the stored secret.
pub async fn upsert_source<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    s: &EntraSettings,
    sealed_secret: Option<&str>,
    now: Millis,
) -> anyhow::Result<()> {
    let (authority, graph) = match &s.cloud {
        Cloud::Custom { authority, graph } => (Some(authority.as_str()), Some(graph.as_str())),
        _ => (None, None),
    };
    sqlx::query(
        "INSERT INTO user_sources (id, kind, name, enabled, sync_interval_minutes, auto_invite, tenant_id, client_id, \
         client_secret_sealed, cloud, authority_url, graph_url, apple_id_mode, apple_id_subdomain, custom_attributes, \
         removal_guard_percent, removal_guard_min, created_at, updated_at) \
         VALUES ($1, 'entra_id', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled, \
         sync_interval_minutes = excluded.sync_interval_minutes, auto_invite = excluded.auto_invite, \
         tenant_id = excluded.tenant_id, client_id = excluded.client_id, \
         client_secret_sealed = COALESCE(excluded.client_secret_sealed, user_sources.client_secret_sealed), \
         cloud = excluded.cloud, authority_url = excluded.authority_url, graph_url = excluded.graph_url, \
         apple_id_mode = excluded.apple_id_mode, apple_id_subdomain = excluded.apple_id_subdomain, \
         custom_attributes = excluded.custom_attributes, removal_guard_percent = excluded.removal_guard_percent, \
         removal_guard_min = excluded.removal_guard_min, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(&s.name)
    .bind(crate::db::flag(s.enabled))
    .bind(s.sync_interval_minutes)
    .bind(crate::db::flag(s.auto_invite))
    .bind(&s.tenant_id)
    .bind(&s.client_id)
    .bind(sealed_secret)
    .bind(s.cloud.key())
    .bind(authority)
    .bind(graph)
    .bind(s.apple_id_mode.key())
    .bind(crate::db::flag(s.apple_id_subdomain))
    .bind(serde_json::to_string(&s.custom_attributes)?)
    .bind(s.removal_guard_percent)
    .bind(s.removal_guard_min)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

/// Asks the worker for a round ("Sync now").
pub async fn request_sync<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE user_sources SET sync_requested_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Clears a "Sync now" request that a round has picked up (only if no newer request came meanwhile).
pub async fn clear_sync_request<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    seen: Millis,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE user_sources SET sync_requested_at = NULL WHERE id = $1 AND sync_requested_at <= $2")
        .bind(id)
        .bind(seen)
        .execute(ex)
        .await?;
    Ok(())
}

/// Stores the delta links of a committed round (with the `$select` they were made with), or clears them.
pub async fn store_delta_links<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    users: Option<&str>,
    groups: Option<&str>,
    select: Option<&str>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE user_sources SET users_delta_link = $1, groups_delta_link = $2, delta_select = $3, \
         delta_links_at = $4 WHERE id = $5",
    )
    .bind(users)
    .bind(groups)
    .bind(select)
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(())
}
