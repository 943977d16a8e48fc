//! The Users and Groups pages (lists with search and keyset paging).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::directory::repo;
use crate::error::AppResult;
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render};
use crate::web::{AppState, Routes};

pub const PAGE_SIZE: i64 = 50;

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin/users", list_users)
        .get("/admin/groups", list_groups);
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    after: Option<String>,
    /// Only users lacking this custom attribute.
    missing: Option<String>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub struct UserItem {
    pub upn: String,
    pub display_name: String,
    pub mail: String,
    pub department: String,
    pub apple_id: String,
    pub status_label: &'static str,
    pub pill_class: &'static str,
    pub source: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/users.html")]
pub struct UsersPage {
    pub ctx: PageCtx,
    pub q: String,
    pub missing: Option<String>,
    pub total: i64,
    pub items: Vec<UserItem>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
}

async fn list_users(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    query: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = query.q.trim();
    let prefix = (!q.is_empty()).then_some(q);
    let missing = query.missing.as_deref().filter(|m| !m.is_empty());
    let mut rows = repo::list_users(
        &state.db.pool,
        prefix,
        missing,
        query.after.as_deref(),
        PAGE_SIZE + 1,
    )
    .await?;
    let more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX));
    let next_href = more
        .then(|| {
            rows.last().map(|r| {
                format!(
                    "/admin/users?q={}&missing={}&after={}",
                    enc(q),
                    enc(missing.unwrap_or("")),
                    enc(&r.upn.to_lowercase())
                )
            })
        })
        .flatten();
    let items = rows
        .iter()
        .map(|r| {
            let (status_label, pill_class) = match (r.not_synced_at, r.account_enabled) {
                (Some(_), _) => ("Not synced", "pill pill-warn"),
                (None, 0) => ("Disabled in Entra", "pill pill-err"),
                _ => ("Active", "pill pill-ok"),
            };
            UserItem {
                upn: r.upn.clone(),
                display_name: r.display_name.clone(),
                mail: r.mail.clone().unwrap_or_default(),
                department: r.department.clone().unwrap_or_default(),
                apple_id: r.managed_apple_id.clone().unwrap_or_default(),
                status_label,
                pill_class,
                source: if r.source == "entra" {
                    "Entra ID"
                } else {
                    "Local"
                },
            }
        })
        .collect();
    let page = UsersPage {
        ctx: PageCtx::admin(&state, &session, &admin, Section::Users, "Admin > Users").await?,
        q: q.to_owned(),
        missing: missing.map(str::to_owned),
        total: repo::count_users(&state.db.pool).await?,
        items,
        next_href,
        first_href: query.after.is_some().then(|| {
            format!(
                "/admin/users?q={}&missing={}",
                enc(q),
                enc(missing.unwrap_or(""))
            )
        }),
    };
    render(&page, StatusCode::OK)
}

pub struct GroupItem {
    pub display_name: String,
    pub kind: &'static str,
    pub mail: String,
    pub members: i64,
    pub status_label: &'static str,
    pub pill_class: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/groups.html")]
pub struct GroupsPage {
    pub ctx: PageCtx,
    pub q: String,
    pub total: i64,
    pub items: Vec<GroupItem>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
}

async fn list_groups(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    query: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = query.q.trim();
    let prefix = (!q.is_empty()).then_some(q);
    let after = query.after.as_deref().and_then(|a| a.rsplit_once('\u{1f}'));
    let mut rows = repo::list_groups(&state.db.pool, prefix, after, PAGE_SIZE + 1).await?;
    let more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX));
    let next_href = more
        .then(|| {
            rows.last().map(|r| {
                let key = format!("{}\u{1f}{}", r.display_name.to_lowercase(), r.id);
                format!("/admin/groups?q={}&after={}", enc(q), enc(&key))
            })
        })
        .flatten();
    let items = rows
        .iter()
        .map(|r| {
            let unified = r.group_types.contains("Unified");
            GroupItem {
                display_name: r.display_name.clone(),
                kind: if unified {
                    "Microsoft 365"
                } else if r.security_enabled != 0 {
                    "Security"
                } else {
                    "Distribution"
                },
                mail: r.mail.clone().unwrap_or_default(),
                members: r.members,
                status_label: if r.not_synced_at.is_some() {
                    "Not synced"
                } else {
                    "Active"
                },
                pill_class: if r.not_synced_at.is_some() {
                    "pill pill-warn"
                } else {
                    "pill pill-ok"
                },
            }
        })
        .collect();
    let page = GroupsPage {
        ctx: PageCtx::admin(&state, &session, &admin, Section::Groups, "Admin > Groups").await?,
        q: q.to_owned(),
        total: repo::count_groups(&state.db.pool).await?,
        items,
        next_href,
        first_href: query
            .after
            .is_some()
            .then(|| format!("/admin/groups?q={}", enc(q))),
    };
    render(&page, StatusCode::OK)
}
