//! The dashboard page: system status and recent activity.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;

use crate::audit::repo as audit_repo;
use crate::audit::views::AuditItem;
use crate::auth::repo as auth_repo;
use crate::error::AppResult;
use crate::settings::model::ENTRA_SOURCE_ID;
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render};
use crate::web::{AppState, Routes};

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin", show_dashboard);
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard/index.html")]
pub struct DashboardPage {
    pub ctx: PageCtx,
    /// The Entra ID source's name and whether sync is on; `None` before it is set up.
    pub source: Option<(String, bool)>,
    /// The newest round: status, kind and when it started.
    pub last_round: Option<(String, String, String)>,
    pub users: i64,
    pub groups: i64,
    pub open_problems: i64,
    pub database: &'static str,
    pub base_url: String,
    pub admins: i64,
    pub recent: Vec<AuditItem>,
}

async fn show_dashboard(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let recent = audit_repo::list_page(&state.db.pool, None, 8).await?;
    let source = crate::settings::repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await?;
    let last_round = crate::sync::repo::list_runs(&state.db.pool, ENTRA_SOURCE_ID, 1)
        .await?
        .into_iter()
        .next()
        .map(|r| (r.status, r.kind, crate::clock::format_ms(r.started_at)));
    let page = DashboardPage {
        source: source.map(|s| (s.settings.name, s.settings.enabled)),
        last_round,
        users: crate::directory::repo::count_users(&state.db.pool).await?,
        groups: crate::directory::repo::count_groups(&state.db.pool).await?,
        open_problems: crate::notifications::repo::count_open(&state.db.pool).await?,
        ctx: PageCtx::admin(&session, &admin, Section::Dashboard, "Admin > Dashboard")?,
        database: state.db.backend.name(),
        base_url: state.base_url.as_str().to_owned(),
        admins: auth_repo::count_admins(&state.db.pool).await?,
        recent: recent.iter().map(AuditItem::from).collect(),
    };
    render(&page, StatusCode::OK)
}
