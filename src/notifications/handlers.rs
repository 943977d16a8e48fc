//! The Notifications page: filter by status and severity, mark read, links to the round that raised each.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::clock::format_ms;
use crate::error::AppResult;
use crate::notifications::repo::{self, NotificationRow, StatusFilter};
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, Routes};

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin/notifications", list_notifications)
        .post("/admin/notifications/read-all", mark_all_read)
        .post("/admin/notifications/{id}/read", mark_read);
}

pub struct NotificationItem {
    pub id: String,
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
    pub unread: bool,
    pub run_href: Option<String>,
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
            id: r.id.clone(),
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
            unread: r.read_at.is_none() && r.resolved_at.is_none(),
            run_href: r.run_id.as_ref().map(|id| format!("/admin/sync#run-{id}")),
        }
    }
}

pub struct FilterOption {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "notifications/list.html")]
pub struct NotificationsPage {
    pub ctx: PageCtx,
    pub items: Vec<NotificationItem>,
    pub statuses: Vec<FilterOption>,
    pub severities: Vec<FilterOption>,
    pub status: &'static str,
    pub any_unread: bool,
}

#[derive(Deserialize, Default)]
pub struct NotificationQuery {
    status: Option<String>,
    severity: Option<String>,
}

async fn list_notifications(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    q: web::Query<NotificationQuery>,
) -> AppResult<HttpResponse> {
    let (status, status_key) = match q.status.as_deref() {
        Some("resolved") => (StatusFilter::Resolved, "resolved"),
        Some("all") => (StatusFilter::All, "all"),
        _ => (StatusFilter::Open, "open"),
    };
    let severity = q
        .severity
        .as_deref()
        .filter(|s| ["error", "warning", "info"].contains(s));
    let rows = repo::list(&state.db.pool, status, severity, 200).await?;
    let statuses = [("open", "Open"), ("resolved", "Resolved"), ("all", "All")]
        .iter()
        .map(|&(value, label)| FilterOption {
            value,
            label,
            selected: value == status_key,
        })
        .collect();
    let severities = [
        ("", "Any severity"),
        ("error", "Error"),
        ("warning", "Warning"),
        ("info", "Info"),
    ]
    .iter()
    .map(|&(value, label)| FilterOption {
        value,
        label,
        selected: severity.unwrap_or("") == value,
    })
    .collect();
    let items: Vec<NotificationItem> = rows.iter().map(NotificationItem::from).collect();
    let page = NotificationsPage {
        ctx: PageCtx::admin(
            &session,
            &admin,
            Section::Notifications,
            "Admin > Notifications",
        )?,
        any_unread: items.iter().any(|i| i.unread),
        items,
        statuses,
        severities,
        status: status_key,
    };
    render(&page, StatusCode::OK)
}

async fn mark_read(
    state: web::Data<AppState>,
    session: Session,
    _admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    repo::mark_read(&state.db.pool, &id, state.clock.now_ms()).await?;
    flash::push(&session, Level::Success, "Marked as read.");
    Ok(see_other("/admin/notifications"))
}

async fn mark_all_read(
    state: web::Data<AppState>,
    session: Session,
    _admin: AdminSession,
) -> AppResult<HttpResponse> {
    let n = repo::mark_all_read(&state.db.pool, state.clock.now_ms()).await?;
    flash::push(
        &session,
        Level::Success,
        format!(
            "Marked {n} notification{} as read.",
            if n == 1 { "" } else { "s" }
        ),
    );
    Ok(see_other("/admin/notifications"))
}
