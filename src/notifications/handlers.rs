//! The Notifications page.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;

use crate::clock::format_ms;
use crate::error::AppResult;
use crate::notifications::repo::{self, NotificationRow};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render};
use crate::web::{AppState, Routes};

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin/notifications", list_notifications);
}

pub struct NotificationItem {
    pub kind: String,
    pub severity_label: &'static str,
    pub pill_class: &'static str,
    pub title: String,
    pub body: String,
    pub action_text: String,
    pub action_href: Option<String>,
    pub occurrences: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved: Option<String>,
}

impl From<&NotificationRow> for NotificationItem {
    fn from(r: &NotificationRow) -> Self {
        let (severity_label, pill_class) = match (r.resolved_at, r.severity.as_str()) {
            (Some(_), _) => ("Resolved", "pill pill-ok"),
            (None, "error") => ("Error", "pill pill-err"),
            (None, "warning") => ("Warning", "pill pill-warn"),
            (None, _) => ("Info", "pill pill-info"),
        };
        Self {
            kind: r.kind.clone(),
            severity_label,
            pill_class,
            title: r.title.clone(),
            body: r.body.clone(),
            action_text: r.action_text.clone(),
            action_href: r.action_href.clone(),
            occurrences: r.occurrences,
            first_seen: format_ms(r.first_seen_at),
            last_seen: format_ms(r.last_seen_at),
            resolved: r.resolved_at.map(format_ms),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications/list.html")]
pub struct NotificationsPage {
    pub ctx: PageCtx,
    pub open: Vec<NotificationItem>,
    pub resolved: Vec<NotificationItem>,
}

async fn list_notifications(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let open = repo::list_open(&state.db.pool).await?;
    let resolved = repo::list_resolved(&state.db.pool, 20).await?;
    let page = NotificationsPage {
        ctx: PageCtx::admin(
            &state,
            &session,
            &admin,
            Section::Notifications,
            "Admin > Notifications",
        )
        .await?,
        open: open.iter().map(NotificationItem::from).collect(),
        resolved: resolved.iter().map(NotificationItem::from).collect(),
    };
    render(&page, StatusCode::OK)
}
