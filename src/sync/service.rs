//! A sync round: fetch a page from Graph, write it in one short transaction, repeat; then finish.
//! A full round is the first round of `/users/delta` and `/groups/delta`, so it also yields the delta links
//! for later rounds. Nothing is ever written while an HTTP call is in flight.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, anyhow};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::clock::{Millis, SharedClock, format_ms};
use crate::db::ids::new_id;
use crate::db::{Db, Tuning};
use crate::directory::model::{GroupRecord, MemberKind, UserRecord};
use crate::directory::repo as dir;
use crate::secrets::MasterKey;
use crate::settings::model::{ENTRA_SOURCE_ID, EntraSettings};
use crate::settings::repo::{self as settings_repo, StoredSource};
use crate::sync::SyncContext;
use crate::sync::graph::{GraphClient, GraphConfig, GraphError};
use crate::sync::repo::{self, Counters};

/// Group properties every sync reads (plus `members`, for memberships inline).
pub const GROUP_SELECT: &str =
    "id,displayName,description,mail,mailEnabled,securityEnabled,groupTypes,members";

/// Who asked for a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
            Self::Cli => "command line",
        }
    }
}

/// Why a round did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no Entra ID user source is configured yet")]
    NotConfigured,
    #[error("another round of this source is running (its lease is held)")]
    Busy,
    #[error("the round was cancelled")]
    Cancelled,
    /// Graph refused a stored delta link (expired or a resync is required): a full round follows.
    #[error("Microsoft Graph refused the stored delta link ({0}); a full round is needed")]
    DeltaRefused(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(anyhow::Error::new(e).context("database"))
    }
}

/// What a finished round did.
#[derive(Debug, Clone)]
pub struct RoundSummary {
    pub run_id: String,
    pub kind: &'static str,
    pub counters: Counters,
}

/// Everything a round needs.
pub struct RoundDeps<'a> {
    pub db: &'a Db,
    pub clock: &'a SharedClock,
    pub master_key: &'a MasterKey,
    pub sync: &'a SyncContext,
    pub cancel: &'a CancellationToken,
    /// For registration links in automatic invitations.
    pub base_url: &'a crate::config::BaseUrl,
}

/// The one connection a round writes through.
type Writer = sqlx::pool::PoolConnection<sqlx::Any>;

/// Builds a Graph client from stored settings.
pub fn client_for(
    source: &StoredSource,
    key: &MasterKey,
    sync: &SyncContext,
) -> Result<GraphClient, SyncError> {
    let sealed = source.client_secret_sealed.as_deref().ok_or_else(|| {
        anyhow!("no client secret is stored; enter it on the Entra ID User Source page")
    })?;
    let secret = key
        .open(sealed)
        .context("reading the stored client secret")?;
    let s = &source.settings;
    Ok(GraphClient::new(
        GraphConfig {
            authority: s.cloud.authority().to_owned(),
            graph: s.cloud.graph().to_owned(),
            tenant_id: s.tenant_id.clone(),
            client_id: s.client_id.clone(),
            client_secret: secret,
        },
        sync.policy.clone(),
    )?)
}

/// Maps a Graph user object to a record; `None` when it has no id or UPN (never stored half).
pub fn user_record(v: &Value, settings: &EntraSettings) -> Option<UserRecord> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let external_id = s("id")?;
    let upn = s("userPrincipalName")?;
    let mail = s("mail");
    let custom: BTreeMap<String, String> = settings
        .custom_attributes
        .iter()
        .filter_map(|a| a.read(v).map(|val| (a.name.clone(), val)))
        .collect();
    let managed_apple_id = settings.managed_apple_id(mail.as_deref(), &upn);
    Some(UserRecord {
        display_name: s("displayName").unwrap_or_else(|| upn.clone()),
        external_id,
        upn,
        mail,
        given_name: s("givenName"),
        surname: s("surname"),
        job_title: s("jobTitle"),
        department: s("department"),
        // Absent means "not returned", which Graph does only without permission; treat as enabled.
        account_enabled: v
            .get("accountEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        custom_attributes: custom,
        managed_apple_id,
    })
}

pub fn group_record(v: &Value) -> Option<GroupRecord> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let external_id = s("id")?;
    Some(GroupRecord {
        display_name: s("displayName").unwrap_or_else(|| external_id.clone()),
        external_id,
        description: s("description"),
        mail: s("mail"),
        mail_enabled: v
            .get("mailEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        security_enabled: v
            .get("securityEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        group_types: v
            .get("groupTypes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn removed_reason(v: &Value) -> Option<&'static str> {
    let r = v.get("@removed")?;
    Some(match r.get("reason").and_then(Value::as_str) {
        Some("changed") => "Deleted in Entra ID (soft-deleted: it can still be restored there)",
        _ => "Permanently deleted in Entra ID",
    })
}

/// One page of users, parsed: records to upsert (deduplicated, last wins) and removals.
struct UserPage {
    records: Vec<UserRecord>,
    removed: Vec<(String, &'static str)>,
    skipped: usize,
}

fn parse_user_page(items: &[Value], settings: &EntraSettings) -> UserPage {
    let mut by_id: HashMap<String, UserRecord> = HashMap::new();
    let mut order = Vec::new();
    let mut removed = Vec::new();
    let mut skipped = 0;
    for v in items {
        if let Some(reason) = removed_reason(v) {
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                by_id.remove(id);
                removed.push((id.to_owned(), reason));
            }
            continue;
        }
        match user_record(v, settings) {
            Some(r) => {
                // The last occurrence wins: a removal earlier on the page is undone (e.g. a restore).
                removed.retain(|(id, _)| id != &r.external_id);
                if !by_id.contains_key(&r.external_id) {
                    order.push(r.external_id.clone());
                }
                by_id.insert(r.external_id.clone(), r);
            }
            None => skipped += 1,
        }
    }
    let records = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    UserPage {
        records,
        removed,
        skipped,
    }
}

struct GroupPage {
    records: Vec<GroupRecord>,
    removed: Vec<(String, &'static str)>,
    member_adds: Vec<(String, MemberKind, String)>,
    member_removes: Vec<(String, String)>,
}

fn parse_group_page(items: &[Value]) -> GroupPage {
    let mut by_id: HashMap<String, GroupRecord> = HashMap::new();
    let mut order = Vec::new();
    let mut removed = Vec::new();
    let mut adds: BTreeMap<(String, String), MemberKind> = BTreeMap::new();
    let mut removes = Vec::new();
    for v in items {
        let Some(gid) = v.get("id").and_then(Value::as_str) else {
            continue;
        };
        if let Some(reason) = removed_reason(v) {
            by_id.remove(gid);
            removed.push((gid.to_owned(), reason));
            continue;
        }
        if let Some(r) = group_record(v) {
            removed.retain(|(id, _)| id != gid);
            if !by_id.contains_key(gid) {
                order.push(gid.to_owned());
            }
            by_id.insert(gid.to_owned(), r);
        }
        // A large group comes back on several pages, each with a slice of members@delta: merge per group.
        for m in v
            .get("members@delta")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(mid) = m.get("id").and_then(Value::as_str) else {
                continue;
            };
            let key = (gid.to_owned(), mid.to_owned());
            if m.get("@removed").is_some() {
                adds.remove(&key);
                removes.push(key);
            } else {
                let kind = MemberKind::from_odata(
                    m.get("@odata.type").and_then(Value::as_str).unwrap_or(""),
                );
                adds.insert(key, kind);
            }
        }
    }
    GroupPage {
        records: order
            .into_iter()
            .filter_map(|id| by_id.remove(&id))
            .collect(),
        removed,
        member_adds: adds.into_iter().map(|((g, m), k)| (g, k, m)).collect(),
        member_removes: removes,
    }
}

fn next_or_delta(page: &Value) -> (Option<String>, Option<String>) {
    let s = |k: &str| page.get(k).and_then(Value::as_str).map(str::to_owned);
    (s("@odata.nextLink"), s("@odata.deltaLink"))
}

fn items(page: &Value) -> Result<&Vec<Value>, GraphError> {
    page.get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| GraphError::Malformed {
            detail: "a page without a \"value\" array".into(),
        })
}

/// Runs one round of the Entra ID source, holding its lease. Returns what it did.
pub async fn run_round(deps: &RoundDeps<'_>, trigger: Trigger) -> Result<RoundSummary, SyncError> {
    let db = deps.db;
    let source = settings_repo::find_source(&db.pool, ENTRA_SOURCE_ID)
        .await?
        .ok_or(SyncError::NotConfigured)?;
    let now = deps.clock.now_ms();
    let holder = deps.sync.instance_id.as_str();
    if !repo::try_acquire_lease(&db.pool, &source.id, holder, now, now + deps.sync.lease_ms).await?
    {
        return Err(SyncError::Busy);
    }
    // Keep the lease (and the round's heartbeat) alive while the round runs, however slow Graph is.
    let stop_renewal = CancellationToken::new();
    let renewal = tokio::spawn(renew_lease_loop(
        db.clone(),
        deps.clock.clone(),
        source.id.clone(),
        holder.to_owned(),
        deps.sync.lease_ms,
        stop_renewal.clone(),
    ));
    let result = run_leased(deps, &source, trigger).await;
    stop_renewal.cancel();
    let _ = renewal.await;
    if let Err(e) = repo::release_lease(&db.pool, &source.id, holder).await {
        tracing::warn!(error = %e, "Could not release the sync lease; it expires by itself.");
    }
    result
}

async fn renew_lease_loop(
    db: Db,
    clock: SharedClock,
    source_id: String,
    holder: String,
    lease_ms: i64,
    stop: CancellationToken,
) {
    let every =
        std::time::Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(20_000).max(100));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = clock.now_ms();
        match repo::renew_lease(&db.pool, &source_id, &holder, now + lease_ms).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(source_id, "Lost the sync lease while a round was running.")
            }
            Err(e) => tracing::warn!(error = %e, "Could not renew the sync lease."),
        }
    }
}

/// How old stored delta links may be before a full round is run instead (Graph keeps them 7 days).
pub const DELTA_LINK_MAX_AGE: Millis = 6 * 24 * crate::clock::HOUR;

/// Which kind of round to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Full { reason: String },
    Delta { users: String, groups: String },
}

/// A full round runs at least this often: delta does not track everything (e.g. attributes that start
/// coming back after a permission fix), and a full round is what marks vanished objects.
pub const FULL_ROUND_EVERY: Millis = 24 * crate::clock::HOUR;

/// What decides between a delta and a full round, besides the stored links.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanFacts {
    /// Some round of this source has succeeded before.
    pub has_succeeded_before: bool,
    /// When the last successful full round started.
    pub last_full_at: Option<Millis>,
    /// Some selected attribute has no value for any user: re-read everyone to see if it came back.
    pub attributes_missing: bool,
    /// The last round skipped users whose username a local account had: re-read everyone.
    pub skipped_clashes: bool,
}

/// Delta when fresh links made with the same `$select` are stored; full otherwise, with the reason.
pub fn plan(source: &StoredSource, select: &str, facts: PlanFacts, now: Millis) -> Plan {
    let (Some(u), Some(g), Some(at)) = (
        &source.users_delta_link,
        &source.groups_delta_link,
        source.delta_links_at,
    ) else {
        let reason = if facts.has_succeeded_before {
            "no delta links are stored"
        } else {
            "first sync of this source"
        };
        return Plan::Full {
            reason: reason.into(),
        };
    };
    let full = |reason: &str| Plan::Full {
        reason: reason.into(),
    };
    if source.delta_select.as_deref() != Some(select) {
        full("the selected user properties changed since the last round")
    } else if now - at >= DELTA_LINK_MAX_AGE {
        full("the stored delta links are older than six days")
    } else if facts
        .last_full_at
        .is_none_or(|t| now - t >= FULL_ROUND_EVERY)
    {
        full("daily full round (delta queries do not report everything)")
    } else if facts.skipped_clashes {
        full("the last round skipped users that clashed with local accounts")
    } else if facts.attributes_missing {
        full("an attribute had no value for any user: re-reading every user")
    } else {
        Plan::Delta {
            users: u.clone(),
            groups: g.clone(),
        }
    }
}

async fn run_leased(
    deps: &RoundDeps<'_>,
    source: &StoredSource,
    trigger: Trigger,
) -> Result<RoundSummary, SyncError> {
    let db = deps.db;
    let now = deps.clock.now_ms();
    let abandoned = repo::fail_abandoned_runs(&db.pool, &source.id, now).await?;
    if abandoned > 0 {
        tracing::warn!(
            count = abandoned,
            "Marked rounds left running by a stopped process as failed."
        );
    }
    // Removals of rounds that did not finish were never applied; their rounds' replays bring them back.
    dir::drop_stale_pending(&db.pool, &source.id).await?;
    let previous = repo::last_succeeded(&db.pool, &source.id).await?;
    let select = source.settings.user_select().join(",");
    let facts = PlanFacts {
        has_succeeded_before: previous.is_some(),
        last_full_at: repo::last_full_started(&db.pool, &source.id).await?,
        attributes_missing: crate::sync::alerts::attributes_dropped(
            db,
            &source.settings,
            &source.id,
        )
        .await?,
        skipped_clashes: crate::sync::alerts::clash_open(db, &source.id).await?,
    };
    let mut plan = plan(source, &select, facts, now);
    let run_id = new_id();
    let (kind, reason) = match &plan {
        Plan::Full { reason } => ("full", reason.clone()),
        Plan::Delta { .. } => ("delta", "changes since the last round".to_owned()),
    };
    repo::create_run(
        &db.pool,
        &run_id,
        &source.id,
        kind,
        &reason,
        trigger.as_str(),
        now,
        previous.as_ref().map(|p| p.users_seen),
        previous.as_ref().map(|p| p.groups_seen),
    )
    .await?;
    if let Some(requested) = source.sync_requested_at {
        settings_repo::clear_sync_request(&db.pool, &source.id, requested).await?;
    }
    tracing::info!(
        run_id,
        kind,
        reason,
        trigger = trigger.as_str(),
        "Sync round started."
    );
    let mut counters = Counters::default();
    let outcome = async {
        let client = client_for(source, deps.master_key, deps.sync)?;
        let first = run_plan(
            deps,
            &client,
            source,
            &run_id,
            &plan,
            &select,
            &mut counters,
        )
        .await;
        match first {
            Err(SyncError::DeltaRefused(why)) if matches!(plan, Plan::Delta { .. }) => {
                let reason = format!("Microsoft Graph refused the delta link ({why}); full resync");
                tracing::warn!(
                    run_id,
                    reason,
                    "Delta link refused; running a full round instead."
                );
                repo::restart_as_full(&db.pool, &run_id, &reason).await?;
                plan = Plan::Full { reason };
                run_plan(
                    deps,
                    &client,
                    source,
                    &run_id,
                    &plan,
                    &select,
                    &mut counters,
                )
                .await
            }
            other => other,
        }
    }
    .await;
    let kind = if matches!(plan, Plan::Full { .. }) {
        "full"
    } else {
        "delta"
    };
    let end = deps.clock.now_ms();
    match outcome {
        Ok(()) => {
            tracing::info!(
                run_id,
                kind,
                users = counters.users_seen,
                groups = counters.groups_seen,
                "Sync round finished."
            );
            crate::sync::alerts::after_success(db, &source.settings, &source.id, &run_id, end)
                .await?;
            crate::sync::alerts::directory_checks(
                db,
                &source.id,
                &run_id,
                &counters.clashing_upns,
                end,
            )
            .await?;
            if kind == "full" || counters.changes() >= STATISTICS_AFTER_CHANGES {
                let t = std::time::Instant::now();
                match crate::db::refresh_statistics(&db.pool, DIRECTORY_TABLES).await {
                    Ok(()) => tracing::debug!(
                        ms = t.elapsed().as_millis(),
                        "Planner statistics refreshed."
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "Could not refresh the planner statistics.")
                    }
                }
            }
            Ok(RoundSummary {
                run_id,
                kind,
                counters,
            })
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::warn!(run_id, error = %msg, "Sync round failed; nothing it had not committed was changed.");
            repo::update_progress(&db.pool, &run_id, "done", &counters, end).await?;
            repo::finish_run(&db.pool, &run_id, "failed", Some(&msg), end).await?;
            crate::sync::alerts::after_failure(db, &source.id, &run_id, &e, end).await?;
            Err(e)
        }
    }
}

async fn run_plan(
    deps: &RoundDeps<'_>,
    client: &GraphClient,
    source: &StoredSource,
    run_id: &str,
    plan: &Plan,
    select: &str,
    c: &mut Counters,
) -> Result<(), SyncError> {
    // Every write of the round goes through one connection: the pool hands its connections out in turn,
    // and on SQLite each one's page cache went cold after another had written (docs/benchmarks.md).
    let mut writer = deps.db.pool.acquire().await?;
    deps.db.tune(&mut writer, Tuning::BulkWrite).await?;
    restore_indexes(&mut writer, "a first import was interrupted").await?;
    let mut result = write_round(deps, &mut writer, client, source, run_id, plan, select, c).await;
    // A first import that failed midway leaves no index behind it dropped.
    if let Err(e) = restore_indexes(&mut writer, "the first import stopped").await {
        result = result.and(Err(e));
    }
    // The connection goes back to the pool as the pool's others are (or is closed).
    if let Err(e) = deps.db.tune(&mut writer, Tuning::Pooled).await {
        tracing::warn!(error = %e, "Could not reset the sync connection's settings.");
        writer.close_on_drop();
    }
    result
}

/// Re-creates any of the directory's bulk-load indexes that is missing (see `write_round`).
async fn restore_indexes(writer: &mut Writer, why: &str) -> Result<(), SyncError> {
    let t = std::time::Instant::now();
    let created = dir::restore_bulk_load_indexes(writer).await?;
    if !created.is_empty() {
        tracing::info!(
            indexes = created.join(", "),
            ms = t.elapsed().as_millis(),
            why,
            "Directory indexes built."
        );
    }
    Ok(())
}

/// Where a round starts: the users and groups URLs, and whether it is a full round.
fn urls(client: &GraphClient, plan: &Plan, select: &str) -> (String, String, bool) {
    match plan {
        Plan::Full { .. } => (
            client.url(&format!("/users/delta?$select={select}")),
            client.url(&format!("/groups/delta?$select={GROUP_SELECT}")),
            true,
        ),
        Plan::Delta { users, groups } => (users.clone(), groups.clone(), false),
    }
}

/// Follows both delta feeds through `writer` and finishes the round.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's pieces, each used once"
)]
async fn write_round(
    deps: &RoundDeps<'_>,
    writer: &mut Writer,
    client: &GraphClient,
    source: &StoredSource,
    run_id: &str,
    plan: &Plan,
    select: &str,
    c: &mut Counters,
) -> Result<(), SyncError> {
    let (users_url, groups_url, full) = urls(client, plan, select);
    // A first import loads the directory without its secondary indexes and builds them at the end: inserting
    // row by row into them was most of a full round on both databases (docs/benchmarks.md). The round's own
    // per-page queries use only the unique indexes, which stay.
    let first_import = full && dir::count_active_users(&mut **writer, &source.id).await? == 0;
    if first_import {
        dir::drop_bulk_load_indexes(writer).await?;
    }
    // One feed after the other: fetching the groups during the users' writes gained nothing measurable (a
    // delta round's group pages arrive in milliseconds) and took a full round's memory past 140 MiB.
    let users_delta = follow(
        deps,
        writer,
        client,
        source,
        run_id,
        users_url,
        PageKind::Users,
        c,
    )
    .await?;
    let groups_delta = follow(
        deps,
        writer,
        client,
        source,
        run_id,
        groups_url,
        PageKind::Groups { full },
        c,
    )
    .await?;
    if first_import {
        deps.db.tune(writer, Tuning::IndexBuild).await?;
        restore_indexes(writer, "first import loaded").await?;
        deps.db.tune(writer, Tuning::BulkWrite).await?;
    }
    finish(
        deps,
        writer,
        source,
        run_id,
        full,
        users_delta.as_deref(),
        groups_delta.as_deref(),
        select,
        c,
    )
    .await
}

/// The tables a round writes in bulk.
const DIRECTORY_TABLES: &[&str] = &["directory_users", "directory_groups", "group_members"];
/// After a full round, or a delta round with at least this many changed rows, the planner statistics of
/// [`DIRECTORY_TABLES`] are refreshed (`db::refresh_statistics`); smaller changes are left to autovacuum.
const STATISTICS_AFTER_CHANGES: i64 = 5_000;

/// Objects (see `objects_on`) fetched ahead of the writer; bounds the round's memory (a page bigger than
/// this is still fetched, alone).
const READ_AHEAD_OBJECTS: usize = 2 * BATCH_OBJECTS;
/// The writer takes every page that has arrived, up to about this many objects (users, or groups plus
/// membership changes), into one transaction. On SQLite one commit rewrites every index page it touched
/// (about ten indexes per user, on random keys), so 500 commits of 200 users wrote the same pages again and
/// again; larger batches cut the write volume without ever holding a transaction over an HTTP call.
const BATCH_OBJECTS: usize = 5_000;

/// Users, then groups with their `members@delta`, and the round's kind of page writer.
#[derive(Clone, Copy)]
enum PageKind {
    Users,
    /// `full`: the round is a full round (every group seen is marked seen, changed or not).
    Groups {
        full: bool,
    },
}

/// Objects on a page, as counted for `BATCH_OBJECTS`.
fn objects_on(page: &Value) -> usize {
    page.get("value")
        .and_then(Value::as_array)
        .map_or(0, |items| {
            items
                .iter()
                .map(|i| {
                    1 + i
                        .get("members@delta")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                })
                .sum()
        })
}

/// Follows one feed from `url` to its delta link: fetches pages ahead while writing what has arrived.
/// Returns the delta link.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's pieces, each used once"
)]
async fn follow(
    deps: &RoundDeps<'_>,
    writer: &mut Writer,
    client: &GraphClient,
    source: &StoredSource,
    run_id: &str,
    url: String,
    kind: PageKind,
    c: &mut Counters,
) -> Result<Option<String>, SyncError> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ((), delta) = tokio::join!(
        fetch_pages(deps, client, url, tx),
        write_pages(deps, writer, source, run_id, rx, kind, c)
    );
    delta
}

/// A fetched page with the read-ahead permits of its objects (released once it is written), or why the feed
/// stopped.
type Fetched = Result<(Value, tokio::sync::OwnedSemaphorePermit), SyncError>;

/// Fetches pages from `url` to the delta link, in order, into `tx`, never more than `READ_AHEAD_OBJECTS`
/// objects ahead of their writer (a page bigger than that is still fetched, alone). Stops after an error
/// (sent on), or when the writer is gone.
async fn fetch_pages(
    deps: &RoundDeps<'_>,
    client: &GraphClient,
    url: String,
    tx: tokio::sync::mpsc::UnboundedSender<Fetched>,
) {
    let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_OBJECTS));
    let mut url = Some(url);
    while let Some(u) = url.take() {
        let page = match fetch(deps, client, &u).await {
            Ok(p) => {
                url = next_or_delta(&p).0;
                let n = objects_on(&p).clamp(1, READ_AHEAD_OBJECTS);
                // The writer drops unwritten pages when it stops, which returns their permits.
                let Ok(permit) = budget
                    .clone()
                    .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
                    .await
                else {
                    return;
                };
                Ok((p, permit))
            }
            Err(e) => Err(e),
        };
        if tx.send(page).is_err() {
            return;
        }
    }
}

/// Writes the pages of one feed as they arrive: whatever has arrived, up to `BATCH_OBJECTS` objects, in one
/// transaction, so no transaction waits on the network. Returns the feed's delta link.
async fn write_pages(
    deps: &RoundDeps<'_>,
    writer: &mut Writer,
    source: &StoredSource,
    run_id: &str,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Fetched>,
    kind: PageKind,
    c: &mut Counters,
) -> Result<Option<String>, SyncError> {
    let mut delta = None;
    while let Some(first) = rx.recv().await {
        let (first, permit) = first?;
        let mut objects = objects_on(&first);
        let mut batch = vec![first];
        let mut permits = vec![permit];
        while objects < BATCH_OBJECTS
            && let Ok(more) = rx.try_recv()
        {
            let (more, permit) = more?;
            objects += objects_on(&more);
            batch.push(more);
            permits.push(permit);
        }
        if let Some((None, d)) = batch.last().map(next_or_delta) {
            delta = d;
        }
        match kind {
            PageKind::Users => write_user_pages(deps, writer, source, run_id, &batch, c).await?,
            PageKind::Groups { full } => {
                write_group_pages(deps, writer, source, run_id, &batch, full, c).await?;
            }
        }
        drop(batch);
        drop(permits);
    }
    Ok(delta)
}

/// Writes pages of users in one transaction.
async fn write_user_pages(
    deps: &RoundDeps<'_>,
    writer: &mut Writer,
    source: &StoredSource,
    run_id: &str,
    pages: &[Value],
    c: &mut Counters,
) -> Result<(), SyncError> {
    let db = deps.db;
    let now = deps.clock.now_ms();
    let mut tx = db.begin_on(writer).await?;
    crate::db::relax_commit(&mut tx).await?;
    let mut added = 0;
    for page in pages {
        added += write_user_page(deps, &mut tx, source, run_id, page, now, c).await?;
    }
    repo::update_progress(&mut *tx, run_id, "users", c, now).await?;
    let t = std::time::Instant::now();
    tx.commit().await?;
    tracing::debug!(
        pages = pages.len(),
        commit_ms = t.elapsed().as_millis(),
        "Users batch written."
    );
    if added > 0 {
        db.forget(dir::USER_TOTAL);
    }
    Ok(())
}

/// Writes one page of users inside the caller's transaction; returns how many were added.
async fn write_user_page(
    deps: &RoundDeps<'_>,
    tx: &mut sqlx::AnyConnection,
    source: &StoredSource,
    run_id: &str,
    page: &Value,
    now: Millis,
    c: &mut Counters,
) -> Result<i64, SyncError> {
    let mut parsed = parse_user_page(items(page)?, &source.settings);
    if parsed.skipped > 0 {
        tracing::warn!(
            count = parsed.skipped,
            "Skipped users without an id or userPrincipalName."
        );
    }
    // A username is unique across sources: an Entra user whose UPN a local account has is skipped.
    let upns: Vec<String> = parsed
        .records
        .iter()
        .map(|r| r.upn.to_lowercase())
        .collect();
    let clashing = dir::local_upns_among(&mut *tx, &upns).await?;
    if !clashing.is_empty() {
        parsed
            .records
            .retain(|r| !clashing.contains(&r.upn.to_lowercase()));
        tracing::warn!(
            count = clashing.len(),
            "Skipped Entra ID users whose username a local account has."
        );
        dir::touch_seen(&mut *tx, &source.id, run_id, &clashing).await?;
        c.clashing_upns.extend(clashing);
    }
    let up = dir::upsert_users(&mut *tx, &source.id, run_id, now, &parsed.records).await?;
    let seen: Vec<String> = parsed
        .records
        .iter()
        .map(|r| r.external_id.clone())
        .collect();
    dir::forget_removals(&mut *tx, &source.id, &seen).await?;
    // "Automatically invite users imported from Entra ID": new users get their invitation in the same
    // transaction that imports them, so each is invited exactly once.
    if source.settings.auto_invite {
        let invited = crate::invitations::service::auto_invite_new_users(
            &mut *tx,
            deps.base_url,
            &source.id,
            run_id,
            &seen,
            now,
        )
        .await?;
        if invited > 0 {
            tracing::info!(count = invited, "Invited new users automatically.");
        }
    }
    // Removals wait for the end of the round: the deletion safety decides there.
    let removals: Vec<(String, &str)> = parsed
        .removed
        .iter()
        .map(|(id, why)| (id.clone(), *why))
        .collect();
    dir::add_pending_removals(&mut *tx, &source.id, run_id, &removals, now).await?;
    c.pages += 1;
    c.users_seen += i64::try_from(parsed.records.len()).unwrap_or(0);
    c.users_added += up.added;
    c.users_updated += up.updated;
    Ok(up.added)
}

/// Writes pages of groups and their membership changes in one transaction.
async fn write_group_pages(
    deps: &RoundDeps<'_>,
    writer: &mut Writer,
    source: &StoredSource,
    run_id: &str,
    pages: &[Value],
    full: bool,
    c: &mut Counters,
) -> Result<(), SyncError> {
    let now = deps.clock.now_ms();
    let mut tx = deps.db.begin_on(writer).await?;
    crate::db::relax_commit(&mut tx).await?;
    for page in pages {
        write_group_page(&mut tx, source, run_id, page, now, full, c).await?;
    }
    repo::update_progress(&mut *tx, run_id, "groups", c, now).await?;
    let t = std::time::Instant::now();
    tx.commit().await?;
    tracing::debug!(
        pages = pages.len(),
        commit_ms = t.elapsed().as_millis(),
        "Groups batch written."
    );
    Ok(())
}

/// Writes one page of groups and their membership changes inside the caller's transaction.
async fn write_group_page(
    tx: &mut sqlx::AnyConnection,
    source: &StoredSource,
    run_id: &str,
    page: &Value,
    now: Millis,
    full: bool,
    c: &mut Counters,
) -> Result<(), SyncError> {
    let parsed = parse_group_page(items(page)?);
    let up = dir::upsert_groups(&mut *tx, &source.id, run_id, now, &parsed.records, full).await?;
    for (reason, ids) in group_by_reason(&parsed.removed) {
        c.groups_not_synced +=
            dir::mark_groups_removed(&mut *tx, &source.id, &ids, reason, now).await?;
        c.memberships_removed +=
            dir::remove_memberships_of_groups(&mut *tx, &source.id, &ids).await?;
    }
    c.memberships_added +=
        dir::upsert_memberships(&mut *tx, &source.id, run_id, &parsed.member_adds).await?;
    c.memberships_removed +=
        dir::remove_memberships(&mut *tx, &source.id, &parsed.member_removes).await?;
    c.pages += 1;
    c.groups_seen += i64::try_from(parsed.records.len()).unwrap_or(0);
    c.groups_added += up.added;
    c.groups_updated += up.updated;
    Ok(())
}

/// Ends a round in one transaction: only a completed full round marks what it did not see; the new delta
/// links land with the round's success, never before.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's pieces, each used once"
)]
async fn finish(
    deps: &RoundDeps<'_>,
    writer: &mut Writer,
    source: &StoredSource,
    run_id: &str,
    full: bool,
    users_delta: Option<&str>,
    groups_delta: Option<&str>,
    select: &str,
    c: &mut Counters,
) -> Result<(), SyncError> {
    let now = deps.clock.now_ms();
    let mut tx = deps.db.begin_on(writer).await?;
    // Only the lease holder may finish a round: if the lease expired (a stall) and another instance took it,
    // this round must not store its links or apply its removals over the other's work.
    if !repo::renew_lease(
        &mut *tx,
        &source.id,
        &deps.sync.instance_id,
        now + deps.sync.lease_ms,
    )
    .await?
    {
        return Err(SyncError::Unexpected(anyhow!(
            "the sync lease was lost while the round ran; another round took over"
        )));
    }

    if full {
        let why = format!(
            "No longer returned by Entra ID (full sync of {})",
            format_ms(now)
        );
        dir::add_unseen_as_pending(&mut *tx, &source.id, run_id, &why, now).await?;
        c.groups_not_synced +=
            dir::mark_unseen(&mut *tx, "directory_groups", &source.id, run_id, &why, now).await?;
        c.memberships_removed +=
            dir::delete_unseen_memberships(&mut *tx, &source.id, run_id).await?;
    }
    // Deletion safety: too many removals at once are held for an admin; the rest of the round applies.
    let removals = dir::count_removals(&mut *tx, &source.id, Some(run_id), "pending").await?;
    let s = &source.settings;
    // Counting the active users reads the whole table (40 ms at 100,000 on SQLite), so only when it matters.
    let active = if removals >= s.removal_guard_min {
        dir::count_active_users(&mut *tx, &source.id).await?
    } else {
        0
    };
    if removals >= s.removal_guard_min && removals * 100 > active * s.removal_guard_percent {
        dir::hold_removals(&mut *tx, &source.id, run_id).await?;
        let preview = dir::list_held(&mut *tx, &source.id, 10).await?;
        let held = dir::count_removals(&mut *tx, &source.id, None, "held").await?;
        crate::sync::alerts::removals_held(
            &mut *tx, &source.id, run_id, held, active, &preview, now,
        )
        .await?;
        tracing::warn!(
            run_id,
            held,
            active,
            "Deletion safety held this round's removals for an admin's decision."
        );
    } else {
        c.users_not_synced +=
            dir::apply_removals(&mut tx, &source.id, Some(run_id), "pending", now).await?;
    }
    let links_ok = users_delta.is_some() && groups_delta.is_some();
    settings_repo::store_delta_links(
        &mut *tx,
        &source.id,
        users_delta,
        groups_delta,
        links_ok.then_some(select),
        now,
    )
    .await?;
    repo::update_progress(&mut *tx, run_id, "done", c, now).await?;
    repo::finish_run(&mut *tx, run_id, "succeeded", None, now).await?;
    tx.commit().await?;
    Ok(())
}

/// One page from Graph, abandoned at once when the round is cancelled (shutdown, or a test).
async fn fetch(deps: &RoundDeps<'_>, client: &GraphClient, url: &str) -> Result<Value, SyncError> {
    tokio::select! {
        () = deps.cancel.cancelled() => Err(SyncError::Cancelled),
        page = client.get_json(url) => page
            .map(|mut v| {
                strip_nul(&mut v);
                v
            })
            .map_err(|e| match delta_refusal(&e) {
                Some(why) => SyncError::DeltaRefused(why),
                None => SyncError::Graph(e),
            }),
    }
}

/// Removes NUL characters from every string of a Graph page: PostgreSQL cannot store them in text, and one
/// stray NUL in a directory attribute must not stop every round.
fn strip_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => map.values_mut().for_each(strip_nul),
        _ => {}
    }
}

/// 410 Gone, or a 4xx whose code is `syncStateNotFound` / `resyncRequired` (any case): the delta link is dead.
fn delta_refusal(e: &GraphError) -> Option<String> {
    let (status, code) = e.api_code()?;
    let dead = status == 410
        || ((400..500).contains(&status)
            && ["syncstatenotfound", "resyncrequired"]
                .contains(&code.to_ascii_lowercase().as_str()));
    dead.then(|| format!("HTTP {status} {code}"))
}

fn group_by_reason(removed: &[(String, &'static str)]) -> Vec<(&'static str, Vec<String>)> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (id, reason) in removed {
        out.entry(reason).or_default().push(id.clone());
    }
    out.into_iter().collect()
}

/// Whether the source is due for a scheduled round at `now`.
pub fn is_due(
    settings: &EntraSettings,
    requested: Option<Millis>,
    last_started: Option<Millis>,
    now: Millis,
) -> bool {
    settings.enabled
        && (requested.is_some()
            || last_started
                .is_none_or(|t| now - t >= settings.sync_interval_minutes * crate::clock::MINUTE))
}

#[cfg(test)]
mod tests {

    #[test]
    fn nul_characters_are_stripped_from_graph_pages() {
        let mut v = serde_json::json!({"value": [{"displayName": "Ja\u{0}ne", "n": 1}]});
        strip_nul(&mut v);
        assert_eq!(v["value"][0]["displayName"], "Jane");
    }
    use super::*;
    use crate::settings::model::{AppleIdMode, Cloud, CustomAttribute};
    use serde_json::json;

    fn settings() -> EntraSettings {
        EntraSettings {
            name: "T".into(),
            enabled: true,
            sync_interval_minutes: 60,
            auto_invite: false,
            tenant_id: "t".into(),
            client_id: "c".into(),
            cloud: Cloud::Global,
            apple_id_mode: AppleIdMode::Email,
            apple_id_subdomain: true,
            custom_attributes: vec![CustomAttribute {
                name: "badge".into(),
                property: "onPremisesExtensionAttributes.extensionAttribute7".into(),
            }],
            removal_guard_percent: 10,
            removal_guard_min: 20,
        }
    }

    #[test]
    fn user_pages_deduplicate_and_collect_removals() {
        let items = vec![
            json!({"id": "1", "userPrincipalName": "a@x.com", "mail": "a@x.com", "displayName": "A",
                   "onPremisesExtensionAttributes": {"extensionAttribute7": "B7"}}),
            json!({"id": "2", "@removed": {"reason": "changed"}}),
            json!({"id": "1", "userPrincipalName": "a2@x.com", "displayName": "A2", "accountEnabled": false}),
            json!({"id": "3"}),
            json!({"id": "4", "@removed": {"reason": "deleted"}}),
        ];
        let p = parse_user_page(&items, &settings());
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.records[0].upn, "a2@x.com", "the last occurrence wins");
        assert!(!p.records[0].account_enabled);
        assert_eq!(
            p.records[0].managed_apple_id, None,
            "no mail in the newest version"
        );
        assert_eq!(p.skipped, 1);
        assert_eq!(p.removed.len(), 2);
        assert!(p.removed[0].1.contains("soft-deleted"));
        assert!(p.removed[1].1.contains("Permanently"));
    }

    #[test]
    fn a_user_removed_then_present_on_one_page_is_kept() {
        let items = vec![
            json!({"id": "9", "@removed": {"reason": "changed"}}),
            json!({"id": "9", "userPrincipalName": "back@x.com", "displayName": "Back"}),
        ];
        let p = parse_user_page(&items, &settings());
        assert_eq!(p.records.len(), 1);
        assert!(p.removed.is_empty(), "the restore undoes the removal");
    }

    #[test]
    fn custom_attributes_and_apple_id_are_derived() {
        let v = json!({"id": "1", "userPrincipalName": "jane@contoso.com", "mail": "jane@contoso.com",
                       "onPremisesExtensionAttributes": {"extensionAttribute7": "B7"}});
        let r = user_record(&v, &settings()).unwrap();
        assert_eq!(
            r.custom_attributes.get("badge").map(String::as_str),
            Some("B7")
        );
        assert_eq!(
            r.managed_apple_id.as_deref(),
            Some("jane@appleid.contoso.com")
        );
        assert_eq!(
            r.display_name, "jane@contoso.com",
            "UPN stands in for a missing name"
        );
    }

    #[test]
    fn split_groups_merge_their_member_slices() {
        let items = vec![
            json!({"id": "g", "displayName": "G", "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.group", "id": "g2"}]}),
            json!({"id": "g", "displayName": "G", "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u2"},
                {"@odata.type": "#microsoft.graph.user", "id": "u1", "@removed": {"reason": "deleted"}}]}),
        ];
        let p = parse_group_page(&items);
        assert_eq!(p.records.len(), 1);
        assert_eq!(
            p.member_adds,
            vec![
                ("g".into(), MemberKind::Group, "g2".into()),
                ("g".into(), MemberKind::User, "u2".into())
            ]
        );
        assert_eq!(p.member_removes, vec![("g".into(), "u1".into())]);
    }

    #[test]
    fn due_when_enabled_and_the_interval_passed_or_asked() {
        let s = settings();
        let h = crate::clock::HOUR;
        assert!(is_due(&s, None, None, 10 * h));
        assert!(!is_due(&s, None, Some(10 * h), 10 * h + h - 1));
        assert!(is_due(&s, None, Some(10 * h), 11 * h));
        assert!(is_due(&s, Some(1), Some(10 * h), 10 * h));
        let mut off = s.clone();
        off.enabled = false;
        assert!(!is_due(&off, Some(1), None, 10 * h));
    }
}
