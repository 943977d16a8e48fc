//! HTTP handlers for the audit log page.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::audit::repo::{self, Cursor};
use crate::audit::views::{AuditItem, AuditPage, Pager};
use crate::error::AppResult;
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render};
use crate::web::{AppState, Routes};

pub const PAGE_SIZE: i64 = 50;

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin/audit", list_audit);
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    /// `<at>_<id>` of the last row of the previous page.
    before: Option<String>,
}

fn parse_cursor(raw: &str) -> Option<Cursor> {
    let (at, id) = raw.split_once('_')?;
    Some(Cursor {
        at: at.parse().ok()?,
        id: id.to_owned(),
    })
}

async fn list_audit(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    q: web::Query<AuditQuery>,
) -> AppResult<HttpResponse> {
    let cursor = q.before.as_deref().and_then(parse_cursor);
    // One extra row tells whether an older page exists.
    let mut rows = repo::list_page(&state.db.pool, cursor.as_ref(), PAGE_SIZE + 1).await?;
    let has_more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX));
    let next_href = has_more
        .then(|| {
            rows.last()
                .map(|r| format!("/admin/audit?before={}_{}", r.at, r.id))
        })
        .flatten();
    let page = AuditPage {
        ctx: PageCtx::admin(&session, &admin, Section::Audit, "Admin > Audit")?,
        items: rows.iter().map(AuditItem::from).collect(),
        total: repo::count(&state.db.pool).await?,
        pager: Pager {
            first_href: cursor.is_some().then(|| "/admin/audit".to_owned()),
            next_href,
        },
    };
    render(&page, StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        assert_eq!(
            parse_cursor("1700000000000_ab-cd"),
            Some(Cursor {
                at: 1_700_000_000_000,
                id: "ab-cd".into()
            })
        );
        assert_eq!(parse_cursor("x_y"), None);
        assert_eq!(parse_cursor("nounderscore"), None);
    }
}
