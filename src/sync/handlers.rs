//! The sync page: rounds with live progress, and "Sync now".

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde_json::json;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::format_ms;
use crate::error::AppResult;
use crate::settings::model::ENTRA_SOURCE_ID;
use crate::settings::repo as settings_repo;
use crate::sync::repo::{self, RunRow};
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, RequestMeta, Routes};

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin/sync", show_sync)
        .post("/admin/sync/run", request_sync)
        .post("/admin/sync/removals/apply", apply_held_removals)
        .post("/admin/sync/removals/discard", discard_held_removals);
}

pub struct RunView {
    pub id: String,
    pub kind: String,
    pub reason: String,
    pub trigger: String,
    pub status: String,
    pub status_label: &'static str,
    pub pill_class: &'static str,
    pub started: String,
    pub duration: String,
    pub phase: String,
    pub percent: i64,
    pub users: String,
    pub groups: String,
    pub memberships: String,
    pub pages: i64,
    pub error: Option<String>,
}

/// Progress of a running round: users phase counts up to the last round's user count (capped at 95 %),
/// groups phase continues from there; an estimate until the first round has finished.
fn percent(r: &RunRow) -> i64 {
    if r.status != "running" {
        return 100;
    }
    let part = |seen: i64, expected: Option<i64>| match expected {
        Some(e) if e > 0 => (seen * 100 / e).min(95),
        _ => 50,
    };
    match r.phase.as_str() {
        "users" => part(r.users_seen, r.expected_users) * 6 / 10,
        "groups" => 60 + part(r.groups_seen, r.expected_groups) * 4 / 10,
        _ => 99,
    }
}

impl RunView {
    fn new(r: &RunRow, now: i64) -> Self {
        let (status_label, pill_class) = match r.status.as_str() {
            "running" => ("Running", "pill pill-info"),
            "succeeded" => ("Succeeded", "pill pill-ok"),
            _ => ("Failed", "pill pill-err"),
        };
        let end = r.finished_at.unwrap_or(now);
        let secs = (end - r.started_at).max(0) / 1000;
        Self {
            id: r.id.clone(),
            kind: if r.kind == "full" {
                "Full".into()
            } else {
                "Delta".into()
            },
            reason: r.reason.clone(),
            trigger: r.trigger_kind.clone(),
            status: r.status.clone(),
            status_label,
            pill_class,
            started: format_ms(r.started_at),
            duration: if secs >= 60 {
                format!("{} min {} s", secs / 60, secs % 60)
            } else {
                format!("{secs} s")
            },
            phase: r.phase.clone(),
            percent: percent(r),
            users: format!(
                "{} read · {} added · {} updated · {} not synced",
                r.users_seen, r.users_added, r.users_updated, r.users_not_synced
            ),
            groups: format!(
                "{} read · {} added · {} updated · {} not synced",
                r.groups_seen, r.groups_added, r.groups_updated, r.groups_not_synced
            ),
            memberships: format!(
                "{} added · {} removed",
                r.memberships_added, r.memberships_removed
            ),
            pages: r.pages,
            error: r.error.clone(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "sync/index.html")]
pub struct SyncPage {
    pub ctx: PageCtx,
    pub configured: bool,
    pub enabled: bool,
    pub requested: bool,
    pub interval: String,
    pub running: Option<RunView>,
    pub runs: Vec<RunView>,
    /// Users whose removal the deletion safety holds, and a preview of them.
    pub held: i64,
    pub held_preview: Vec<crate::directory::repo::HeldRemoval>,
}

async fn show_sync(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let source = settings_repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await?;
    let now = state.clock.now_ms();
    let rows = repo::list_runs(&state.db.pool, ENTRA_SOURCE_ID, 50).await?;
    let runs: Vec<RunView> = rows.iter().map(|r| RunView::new(r, now)).collect();
    let running = rows
        .iter()
        .find(|r| r.status == "running")
        .map(|r| RunView::new(r, now));
    let page = SyncPage {
        ctx: PageCtx::admin(
            &session,
            &admin,
            Section::Sync,
            "Admin > Microsoft Azure > Sync",
        )?,
        configured: source.is_some(),
        enabled: source.as_ref().is_some_and(|s| s.settings.enabled),
        requested: source
            .as_ref()
            .is_some_and(|s| s.sync_requested_at.is_some()),
        interval: source
            .as_ref()
            .and_then(|s| {
                crate::settings::model::SYNC_INTERVALS
                    .iter()
                    .find(|(m, _)| *m == s.settings.sync_interval_minutes)
                    .map(|(_, l)| (*l).to_owned())
            })
            .unwrap_or_default(),
        running,
        runs,
        held: crate::directory::repo::count_removals(&state.db.pool, ENTRA_SOURCE_ID, None, "held")
            .await?,
        held_preview: crate::directory::repo::list_held(&state.db.pool, ENTRA_SOURCE_ID, 20)
            .await?,
    };
    render(&page, StatusCode::OK)
}

/// "Sync now": flags work for the worker and wakes it; the request never runs the sync itself.
async fn request_sync(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
) -> AppResult<HttpResponse> {
    let Some(source) = settings_repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await? else {
        flash::push(
            &session,
            Level::Error,
            "Set up the Entra ID User Source first.",
        );
        return Ok(see_other("/admin/sync"));
    };
    if !source.settings.enabled {
        flash::push(
            &session,
            Level::Error,
            "Sync is off. Select \"Enable this Entra ID\" on the Entra ID User Source page and save, then try again.",
        );
        return Ok(see_other("/admin/sync"));
    }
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    settings_repo::request_sync(&mut *tx, ENTRA_SOURCE_ID, now).await?;
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(
            now,
            Actor::Admin {
                id: admin.id.clone(),
                name: admin.username.clone(),
            },
            AuditAction::SyncRequested,
        )
        .target("user_source", ENTRA_SOURCE_ID)
        .from_request(&meta)
        .details(json!({})),
    )
    .await?;
    tx.commit().await?;
    state.sync.wake.notify_one();
    flash::push(
        &session,
        Level::Success,
        "Sync requested. It starts within a few seconds; this page shows its progress.",
    );
    Ok(see_other("/admin/sync"))
}

/// "Apply removals": the held users are marked not synced, with the reason the round recorded.
async fn apply_held_removals(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    form: web::Form<HeldForm>,
) -> AppResult<HttpResponse> {
    decide_held(&state, &session, &admin, &meta, true, form.shown).await
}

/// "Discard": the held removals are forgotten; the users stay synced.
async fn discard_held_removals(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    form: web::Form<HeldForm>,
) -> AppResult<HttpResponse> {
    decide_held(&state, &session, &admin, &meta, false, form.shown).await
}

/// The number of held removals the page showed: the decision applies only if it is still that set.
#[derive(serde::Deserialize)]
pub struct HeldForm {
    #[serde(default)]
    shown: i64,
}

async fn decide_held(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    meta: &RequestMeta,
    apply: bool,
    shown: i64,
) -> AppResult<HttpResponse> {
    use crate::directory::repo as dir;
    let now = state.clock.now_ms();
    let mut tx = state.db.begin().await?;
    let held_now = dir::count_removals(&mut *tx, ENTRA_SOURCE_ID, None, "held").await?;
    if held_now != shown {
        flash::push(
            session,
            Level::Error,
            format!(
                "The held removals changed since the page was shown ({shown} then, {held_now} now). Nothing was \
                 changed; review the list again."
            ),
        );
        return Ok(see_other("/admin/sync"));
    }
    let (n, action) = if apply {
        (
            dir::apply_removals(&mut tx, ENTRA_SOURCE_ID, None, "held", now).await?,
            AuditAction::RemovalsApplied,
        )
    } else {
        let held = dir::count_removals(&mut *tx, ENTRA_SOURCE_ID, None, "held").await?;
        dir::discard_removals(&mut tx, ENTRA_SOURCE_ID, None, "held").await?;
        (held, AuditAction::RemovalsDiscarded)
    };
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(
            now,
            Actor::Admin {
                id: admin.id.clone(),
                name: admin.username.clone(),
            },
            action,
        )
        .target("user_source", ENTRA_SOURCE_ID)
        .from_request(meta)
        .details(json!({ "users": n })),
    )
    .await?;
    crate::sync::alerts::removals_decided(&mut *tx, ENTRA_SOURCE_ID, now).await?;
    tx.commit().await?;
    let msg = if apply {
        format!("{n} users marked Not synced.")
    } else {
        format!(
            "Held removals discarded; {n} users stay synced. The next full round checks them again."
        )
    };
    flash::push(session, Level::Success, msg);
    Ok(see_other("/admin/sync"))
}
