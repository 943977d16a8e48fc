//! SQL for sync rounds and the per-source lease.

use sqlx::{Any, Executor, FromRow};

use crate::clock::Millis;

/// Takes the source's lease for `holder` when it is free, expired, or already ours.
pub async fn try_acquire_lease<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    holder: &str,
    now: Millis,
    expires_at: Millis,
) -> sqlx::Result<bool> {
    let row: Option<String> = sqlx::query_scalar(
        "INSERT INTO sync_leases (source_id, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (source_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE sync_leases.expires_at <= $4 OR sync_leases.holder = excluded.holder \
         RETURNING holder",
    )
    .bind(source_id)
    .bind(holder)
    .bind(expires_at)
    .bind(now)
    .fetch_optional(ex)
    .await?;
    Ok(row.as_deref() == Some(holder))
}

/// Extends our lease; false when we no longer hold it.
pub async fn renew_lease<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    holder: &str,
    expires_at: Millis,
) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE sync_leases SET expires_at = $1 WHERE source_id = $2 AND holder = $3")
            .bind(expires_at)
            .bind(source_id)
            .bind(holder)
            .execute(ex)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether some instance holds the source's lease right now (a round is running).
pub async fn lease_held<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sync_leases WHERE source_id = $1 AND expires_at > $2",
    )
    .bind(source_id)
    .bind(now)
    .fetch_one(ex)
    .await?;
    Ok(n > 0)
}

pub async fn release_lease<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    holder: &str,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sync_leases WHERE source_id = $1 AND holder = $2")
        .bind(source_id)
        .bind(holder)
        .execute(ex)
        .await?;
    Ok(())
}

/// Starts a round's record.
#[expect(clippy::too_many_arguments, reason = "one column each")]
pub async fn create_run<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    source_id: &str,
    kind: &str,
    reason: &str,
    trigger: &str,
    now: Millis,
    expected_users: Option<i64>,
    expected_groups: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO sync_runs (id, source_id, kind, reason, trigger_kind, status, phase, started_at, heartbeat_at, \
         expected_users, expected_groups) VALUES ($1, $2, $3, $4, $5, 'running', 'users', $6, $6, $7, $8)",
    )
    .bind(id)
    .bind(source_id)
    .bind(kind)
    .bind(reason)
    .bind(trigger)
    .bind(now)
    .bind(expected_users)
    .bind(expected_groups)
    .execute(ex)
    .await?;
    Ok(())
}

/// Running totals of a round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub pages: i64,
    pub users_seen: i64,
    pub groups_seen: i64,
    pub users_added: i64,
    pub users_updated: i64,
    pub users_not_synced: i64,
    pub groups_added: i64,
    pub groups_updated: i64,
    pub groups_not_synced: i64,
    pub memberships_added: i64,
    pub memberships_removed: i64,
    /// Entra users skipped because a local account has their username (not stored in the round record).
    pub clashing_upns: Vec<String>,
}

impl Counters {
    /// Rows the round added, changed or removed.
    pub fn changes(&self) -> i64 {
        self.users_added
            + self.users_updated
            + self.users_not_synced
            + self.groups_added
            + self.groups_updated
            + self.groups_not_synced
            + self.memberships_added
            + self.memberships_removed
    }
}

/// Writes progress (in the same transaction as the page it counts).
pub async fn update_progress<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    phase: &str,
    c: &Counters,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sync_runs SET phase = $1, heartbeat_at = $2, pages = $3, users_seen = $4, groups_seen = $5, \
         users_added = $6, users_updated = $7, users_not_synced = $8, groups_added = $9, groups_updated = $10, \
         groups_not_synced = $11, memberships_added = $12, memberships_removed = $13 WHERE id = $14",
    )
    .bind(phase)
    .bind(now)
    .bind(c.pages)
    .bind(c.users_seen)
    .bind(c.groups_seen)
    .bind(c.users_added)
    .bind(c.users_updated)
    .bind(c.users_not_synced)
    .bind(c.groups_added)
    .bind(c.groups_updated)
    .bind(c.groups_not_synced)
    .bind(c.memberships_added)
    .bind(c.memberships_removed)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(())
}

/// A delta round whose link was refused continues as a full round: the record says so and why.
pub async fn restart_as_full<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE sync_runs SET kind = 'full', reason = $1 WHERE id = $2")
        .bind(reason)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn heartbeat<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE sync_runs SET heartbeat_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

pub async fn finish_run<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    status: &str,
    error: Option<&str>,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sync_runs SET status = $1, phase = 'done', error = $2, finished_at = $3, heartbeat_at = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(())
}

/// Rounds still "running" when a new round holds the lease were left by a process that stopped: only the
/// lease holder runs a round, so they are failed.
pub async fn fail_abandoned_runs<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    now: Millis,
) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE sync_runs SET status = 'failed', phase = 'done', finished_at = $1, \
         error = 'Interrupted: the process running this round stopped before it finished.' \
         WHERE source_id = $2 AND status = 'running'",
    )
    .bind(now)
    .bind(source_id)
    .execute(ex)
    .await?
    .rows_affected())
}

#[derive(Debug, Clone, FromRow)]
pub struct RunRow {
    pub id: String,
    pub kind: String,
    pub reason: String,
    pub trigger_kind: String,
    pub status: String,
    pub phase: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub expected_users: Option<i64>,
    pub expected_groups: Option<i64>,
    pub pages: i64,
    pub users_seen: i64,
    pub groups_seen: i64,
    pub users_added: i64,
    pub users_updated: i64,
    pub users_not_synced: i64,
    pub groups_added: i64,
    pub groups_updated: i64,
    pub groups_not_synced: i64,
    pub memberships_added: i64,
    pub memberships_removed: i64,
    pub error: Option<String>,
}

const RUN_COLS: &str = "id, kind, reason, trigger_kind, status, phase, started_at, finished_at, expected_users, \
     expected_groups, pages, users_seen, groups_seen, users_added, users_updated, users_not_synced, groups_added, \
     groups_updated, groups_not_synced, memberships_added, memberships_removed, error";

pub async fn list_runs<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(&format!(
        "SELECT {RUN_COLS} FROM sync_runs WHERE source_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
    ))
    .bind(source_id)
    .bind(limit)
    .fetch_all(ex)
    .await
}

pub async fn get_run<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<RunRow>> {
    sqlx::query_as(&format!("SELECT {RUN_COLS} FROM sync_runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(ex)
        .await
}

/// When the newest successful full round started.
pub async fn last_full_started<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
) -> sqlx::Result<Option<Millis>> {
    sqlx::query_scalar(
        "SELECT MAX(started_at) FROM sync_runs WHERE source_id = $1 AND kind = 'full' AND status = 'succeeded'",
    )
    .bind(source_id)
    .fetch_one(ex)
    .await
}

/// The newest round that succeeded, for progress estimates.
pub async fn last_succeeded<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
) -> sqlx::Result<Option<RunRow>> {
    sqlx::query_as(&format!(
        "SELECT {RUN_COLS} FROM sync_runs WHERE source_id = $1 AND status = 'succeeded' \
         ORDER BY started_at DESC, id DESC LIMIT 1"
    ))
    .bind(source_id)
    .fetch_optional(ex)
    .await
}
