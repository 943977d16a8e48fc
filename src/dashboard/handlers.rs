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
    let page = DashboardPage {
        ctx: PageCtx::admin(
            &state,
            &session,
            &admin,
            Section::Dashboard,
            "Admin > Dashboard",
        )
        .await?,
        database: state.db.backend.name(),
        base_url: state.base_url.as_str().to_owned(),
        admins: auth_repo::count_admins(&state.db.pool).await?,
        recent: recent.iter().map(AuditItem::from).collect(),
    };
    render(&page, StatusCode::OK)
}
