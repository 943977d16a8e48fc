//! Page structs for Admin > Invitations and the registration pages.

use askama::Template;
use askama_web::WebTemplate;

use crate::error::FieldErrors;
use crate::identity::views::when;
use crate::invitations::model::{InvitationState, TemplateForm, template_variables};
use crate::invitations::registration::{Enrollment, qr_svg};
use crate::invitations::repo;
use crate::invitations::service::{self, Rendered};
use crate::web::AppState;
use crate::web::page::PageCtx;

pub struct PreviewView {
    pub user: String,
    pub found: bool,
    pub error: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub missing: String,
}

impl PreviewView {
    pub fn not_found(key: &str) -> Self {
        Self {
            user: key.to_owned(),
            found: false,
            error: Some(format!(
                "No user matches \"{key}\". Enter a UPN, an email address or a user id."
            )),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
            missing: String::new(),
        }
    }

    pub fn failed(upn: &str, e: &str) -> Self {
        Self {
            error: Some(format!("The saved template cannot be rendered: {e}.")),
            found: true,
            ..Self::not_found(upn)
        }
    }

    pub fn rendered(upn: &str, r: Rendered) -> Self {
        Self {
            user: upn.to_owned(),
            found: true,
            error: None,
            subject: r.subject,
            text: r.text,
            html: r.html,
            missing: r.missing.join(", "),
        }
    }
}

pub struct RecentView {
    pub user_id: String,
    pub upn: String,
    pub display_name: String,
    pub sent: String,
    pub expires: String,
    pub by: String,
    pub status: &'static str,
    pub delivery: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "invitations/index.html")]
pub struct InvitationsPage {
    pub ctx: PageCtx,
    pub form: TemplateForm,
    pub errors: FieldErrors,
    pub variables: Vec<String>,
    pub preview: Option<PreviewView>,
    pub preview_user: String,
    pub counts: Vec<(&'static str, &'static str, i64)>,
    pub recent: Vec<RecentView>,
    pub auto_invite: bool,
}

impl InvitationsPage {
    pub async fn build(
        state: &AppState,
        ctx: PageCtx,
        form: TemplateForm,
        errors: FieldErrors,
        preview: Option<PreviewView>,
        preview_user: &str,
    ) -> anyhow::Result<Self> {
        let now = state.clock.now_ms();
        let attrs = crate::configurations::service::custom_attributes(&state.db).await?;
        let states = repo::count_states(&state.db.pool).await?;
        let counts = [
            InvitationState::None,
            InvitationState::Invited,
            InvitationState::Registered,
        ]
        .into_iter()
        .map(|s| {
            let n = states
                .iter()
                .find(|(k, _)| k == s.key())
                .map_or(0, |(_, n)| *n);
            (s.key(), s.label(), n)
        })
        .collect();
        let rows = repo::list_recent(&state.db.pool, 50).await?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let delivery = service::delivery_states(&state.db, &ids).await?;
        let recent = rows
            .iter()
            .map(|r| {
                let inv = repo::InvitationRow {
                    id: r.id.clone(),
                    user_id: r.user_id.clone(),
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                    created_by: r.created_by.clone(),
                    mail_id: r.mail_id.clone(),
                    used_at: r.used_at,
                    revoked_at: r.revoked_at,
                    replaced_at: r.replaced_at,
                };
                RecentView {
                    user_id: r.user_id.clone(),
                    upn: r.upn.clone(),
                    display_name: r.display_name.clone(),
                    sent: when(r.created_at),
                    expires: when(r.expires_at),
                    by: if r.created_by == "auto" {
                        "automatic".into()
                    } else {
                        r.created_by.clone()
                    },
                    status: inv.status(now),
                    delivery: delivery.get(&r.id).cloned().unwrap_or_else(|| "—".into()),
                }
            })
            .collect();
        let auto_invite = crate::settings::repo::find_source(
            &state.db.pool,
            crate::settings::model::ENTRA_SOURCE_ID,
        )
        .await?
        .is_some_and(|s| s.settings.auto_invite);
        Ok(Self {
            ctx,
            form,
            errors,
            variables: template_variables(&attrs),
            preview,
            preview_user: preview_user.to_owned(),
            counts,
            recent,
            auto_invite,
        })
    }
}

/// One invitation on a user's page.
pub struct HistoryView {
    pub sent: String,
    pub expires: String,
    pub by: String,
    pub status: &'static str,
    pub used: String,
    pub delivery: String,
}

/// The invitation section of a user's page.
pub struct UserInvitations {
    pub state: &'static str,
    pub state_label: &'static str,
    pub registered_at: Option<String>,
    pub history: Vec<HistoryView>,
    pub has_open: bool,
    pub has_email: bool,
}

impl UserInvitations {
    pub async fn load(state: &AppState, user_id: &str, has_email: bool) -> anyhow::Result<Self> {
        let now = state.clock.now_ms();
        let (inv_state, registered_at): (String, Option<i64>) = sqlx::query_as(
            "SELECT invitation_state, registered_at FROM directory_users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(&state.db.pool)
        .await?
        .unwrap_or(("none".into(), None));
        let s = InvitationState::parse(&inv_state).unwrap_or(InvitationState::None);
        let rows = repo::list_for_user(&state.db.pool, user_id).await?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let delivery = service::delivery_states(&state.db, &ids).await?;
        Ok(Self {
            state: s.key(),
            state_label: s.label(),
            registered_at: registered_at.map(when),
            has_open: rows.iter().any(|r| r.status(now) == "pending"),
            history: rows
                .iter()
                .map(|r| HistoryView {
                    sent: when(r.created_at),
                    expires: when(r.expires_at),
                    by: if r.created_by == "auto" {
                        "automatic".into()
                    } else {
                        r.created_by.clone()
                    },
                    status: r.status(now),
                    used: r.used_at.map(when).unwrap_or_default(),
                    delivery: delivery.get(&r.id).cloned().unwrap_or_else(|| "—".into()),
                })
                .collect(),
            has_email,
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "registration/register.html")]
pub struct RegisterPage {
    pub ctx: PageCtx,
    pub token: String,
    pub name: String,
    pub masked_email: String,
    /// "idp", "password" or "unavailable".
    pub method: &'static str,
    pub idp_label: &'static str,
    pub errors: FieldErrors,
}

#[derive(Template, WebTemplate)]
#[template(path = "registration/problem.html")]
pub struct ProblemPage {
    pub ctx: PageCtx,
    pub message: String,
    pub kind: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "registration/enrolled.html")]
pub struct EnrolledPage {
    pub ctx: PageCtx,
    pub server: String,
    pub username: String,
    pub pin: String,
    pub pin_expires: String,
    pub enroll_url: String,
    /// Generated here from our own data by the qrcode crate: safe to embed.
    pub qr_svg: String,
}

impl EnrolledPage {
    pub fn new(ctx: PageCtx, e: &Enrollment) -> anyhow::Result<Self> {
        Ok(Self {
            ctx,
            server: e.server.clone(),
            username: e.username.clone(),
            pin: e.pin.clone(),
            pin_expires: when(e.pin_expires_at),
            enroll_url: e.enroll_url.clone(),
            qr_svg: qr_svg(&e.enroll_url)?,
        })
    }
}
