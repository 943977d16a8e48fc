//! Owns the page shell's context: what every full page needs (admin, navigation, flash, CSRF token).

use actix_session::Session;
use actix_web::HttpResponse;
use actix_web::http::{StatusCode, header};
use askama::Template;

use crate::error::{AppError, AppResult};

use crate::web::flash::{self, Flash};
use crate::web::guard::AdminSession;
use crate::web::{assets, csrf};

/// A navigation section. Only sections that exist are listed in [`NAV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    EntraUserSource,
    Identity,
    Invitations,
    Mail,
    Sync,
    Users,
    Groups,
    Configurations,
    Notifications,
    Audit,
}

/// Navigation entries, in console order: (section, label, href).
const NAV: &[(Section, &str, &str, &str)] = &[
    (Section::Dashboard, "", "Dashboard", "/admin"),
    (
        Section::EntraUserSource,
        "Microsoft Azure",
        "Entra ID User Source",
        "/admin/azure/entra-user-source",
    ),
    (Section::Sync, "Microsoft Azure", "Sync", "/admin/sync"),
    (
        Section::Identity,
        "Identity",
        "Identity Providers",
        "/admin/identity",
    ),
    (
        Section::Invitations,
        "Identity",
        "Invitations",
        "/admin/invitations",
    ),
    (Section::Mail, "Identity", "Mail (SMTP)", "/admin/mail"),
    (Section::Users, "Directory", "Users", "/admin/users"),
    (Section::Groups, "Directory", "Groups", "/admin/groups"),
    (
        Section::Configurations,
        "Configurations",
        "Configurations",
        "/admin/configurations",
    ),
    (
        Section::Notifications,
        "Monitoring",
        "Notifications",
        "/admin/notifications",
    ),
    (Section::Audit, "Monitoring", "Audit", "/admin/audit"),
];

#[derive(Debug, Clone)]
pub struct NavItem {
    /// Shown above the first item of its group ("Microsoft Azure", "Directory", …).
    pub group: Option<&'static str>,
    pub label: &'static str,
    pub href: &'static str,
    pub active: bool,
}

/// Context embedded in every page struct as `ctx`.
#[derive(Debug, Clone)]
pub struct PageCtx {
    /// Breadcrumb title in the console's words, e.g. "Admin > Audit".
    pub title: String,
    pub admin_name: Option<String>,
    /// Unread open notifications, for the header badge (admin pages only).
    pub open_notifications: i64,
    pub nav: Vec<NavItem>,
    pub flashes: Vec<Flash>,
    pub csrf_token: String,
    pub css_href: &'static str,
    pub version: &'static str,
}

impl PageCtx {
    /// A page for a signed-in admin.
    pub fn admin(
        session: &Session,
        admin: &AdminSession,
        section: Section,
        title: &str,
    ) -> anyhow::Result<Self> {
        let mut ctx = Self::public(session, title)?;
        ctx.admin_name = Some(admin.username.clone());
        ctx.open_notifications = admin.unread_notifications;
        let mut last_group = "";
        ctx.nav = NAV
            .iter()
            .map(|&(s, group, label, href)| {
                let starts_group = !group.is_empty() && group != last_group;
                last_group = group;
                NavItem {
                    group: starts_group.then_some(group),
                    label,
                    href,
                    active: s == section,
                }
            })
            .collect();
        Ok(ctx)
    }

    /// A page anyone may see (sign-in, setup).
    pub fn public(session: &Session, title: &str) -> anyhow::Result<Self> {
        Ok(Self {
            title: title.to_owned(),
            admin_name: None,
            open_notifications: 0,
            nav: Vec::new(),
            flashes: flash::take(session),
            csrf_token: csrf::token(session)?,
            css_href: assets::css_href(),
            version: env!("CARGO_PKG_VERSION"),
        })
    }
}

/// Renders a page with a status (forms re-render with 422, refusals with 4xx).
pub fn render(page: &impl Template, status: StatusCode) -> AppResult<HttpResponse> {
    let body = page.render().map_err(|e| AppError::Unexpected(e.into()))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// The 303 answer of post/redirect/get.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}
