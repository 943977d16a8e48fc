//! HTTP handlers: Admin > Invitations (template, preview, test send, recent invitations), invite / resend /
//! revoke on a user, bulk invite from the Users page, and the public registration pages.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::configurations::service::{custom_attributes, custom_names, facts};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::identity::flow::{self as sso, StartError};
use crate::identity::model::Purpose;
use crate::invitations::model::{InvitationSettings, TemplateForm, mask_email};
use crate::invitations::registration::{self, Enrollment, RegisterError};
use crate::invitations::repo;
use crate::invitations::service::{self, InviteOutcome, TokenState};
use crate::invitations::views::{
    EnrolledPage, InvitationsPage, PreviewView, ProblemPage, RegisterPage,
};
use crate::mail::outbox::{OutgoingMail, enqueue};
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, RequestMeta, Routes};

pub const PATH: &str = "/admin/invitations";

pub fn configure(r: &mut Routes<'_>) {
    r.get(PATH, show_invitations)
        .post(PATH, save_template)
        .post("/admin/invitations/test-send", test_send)
        .post("/admin/users/{id}/invite", invite_user)
        .post("/admin/users/{id}/revoke-invitation", revoke_invitation)
        .post("/admin/users-invite", invite_filtered)
        .get("/register/{token}", show_registration)
        .post("/register/{token}", continue_registration)
        .post("/register/{token}/password", register_with_password);
}

#[derive(Deserialize, Default)]
struct PreviewQuery {
    #[serde(default)]
    user: String,
}

async fn page(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    form: Option<TemplateForm>,
    errors: FieldErrors,
    preview_user: &str,
) -> AppResult<InvitationsPage> {
    let ctx = PageCtx::admin(session, admin, Section::Invitations, "Admin > Invitations")?;
    let stored = service::settings(&state.db).await?;
    let form = form.unwrap_or_else(|| TemplateForm::from(&stored));
    let preview = preview_for(state, &stored, preview_user).await?;
    Ok(InvitationsPage::build(state, ctx, form, errors, preview, preview_user).await?)
}

async fn preview_for(
    state: &AppState,
    s: &InvitationSettings,
    user_key: &str,
) -> anyhow::Result<Option<PreviewView>> {
    if user_key.trim().is_empty() {
        return Ok(None);
    }
    let Some(user) =
        crate::configurations::repo::find_user(&state.db.pool, user_key.trim()).await?
    else {
        return Ok(Some(PreviewView::not_found(user_key)));
    };
    let names = custom_names(&custom_attributes(&state.db).await?);
    let link = service::registration_link(&state.base_url, "EXAMPLE-TOKEN-shown-only-in-previews");
    Ok(Some(
        match service::render(s, &facts(&user), &names, &link) {
            Ok(r) => PreviewView::rendered(&user.upn, r),
            Err(e) => PreviewView::failed(&user.upn, &e.to_string()),
        },
    ))
}

async fn show_invitations(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    q: web::Query<PreviewQuery>,
) -> AppResult<HttpResponse> {
    let p = page(&state, &session, &admin, None, FieldErrors::new(), &q.user).await?;
    render(&p, StatusCode::OK)
}

#[derive(Deserialize)]
struct TemplateInput {
    #[serde(flatten)]
    form: TemplateForm,
    #[serde(default)]
    action: String,
}

async fn save_template(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    input: web::Form<TemplateInput>,
) -> AppResult<HttpResponse> {
    let TemplateInput { form, action } = input.into_inner();
    let now = state.clock.now_ms();
    let settings = if action == "reset" {
        let current = service::settings(&state.db).await?;
        InvitationSettings {
            lifetime_days: current.lifetime_days,
            pin_length: current.pin_length,
            pin_lifetime_minutes: current.pin_lifetime_minutes,
            ..InvitationSettings::default()
        }
    } else {
        let attrs = custom_attributes(&state.db).await?;
        match form.validate(&attrs) {
            Ok(s) => s,
            Err(errors) => {
                let p = page(&state, &session, &admin, Some(form), errors, "").await?;
                return render(&p, StatusCode::UNPROCESSABLE_ENTITY);
            }
        }
    };
    let mut tx = state.db.begin().await?;
    repo::upsert_settings(&mut *tx, &settings, now).await?;
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(
            now,
            Actor::Admin {
                id: admin.id.clone(),
                name: admin.username.clone(),
            },
            AuditAction::InvitationSettingsSaved,
        )
        .from_request(&meta)
        .details(json!({
            "reset": action == "reset",
            "subject": settings.subject,
            "lifetime_days": settings.lifetime_days,
            "pin_length": settings.pin_length,
            "pin_lifetime_minutes": settings.pin_lifetime_minutes,
        })),
    )
    .await?;
    tx.commit().await?;
    flash::push(
        &session,
        Level::Success,
        if action == "reset" {
            "The invitation template is back to the default."
        } else {
            "Invitation settings saved."
        },
    );
    Ok(see_other(PATH))
}

#[derive(Deserialize)]
struct TestSendInput {
    #[serde(default)]
    to: String,
    #[serde(default)]
    user: String,
}

/// Sends the template, rendered for a chosen user (or the first user), to an address, through the outbox.
async fn test_send(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    input: web::Form<TestSendInput>,
) -> AppResult<HttpResponse> {
    let to = input.to.trim();
    if !crate::mail::model::is_address(to) {
        let mut errors = FieldErrors::new();
        errors.insert(
            "to",
            "Enter the address to send the test to, like name@example.com.".into(),
        );
        let p = page(&state, &session, &admin, None, errors, &input.user).await?;
        return render(&p, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let s = service::settings(&state.db).await?;
    let key = if input.user.trim().is_empty() {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM directory_users WHERE deleted_at IS NULL ORDER BY upn_lower LIMIT 1",
        )
        .fetch_optional(&state.db.pool)
        .await?
        .unwrap_or_default()
    } else {
        input.user.trim().to_owned()
    };
    let user = crate::configurations::repo::find_user(&state.db.pool, &key).await?;
    let facts =
        user.as_ref()
            .map(facts)
            .unwrap_or_else(|| crate::configurations::model::UserFacts {
                upn: "jane.doe@example.com".into(),
                display_name: "Jane Doe".into(),
                given_name: Some("Jane".into()),
                surname: Some("Doe".into()),
                mail: Some("jane.doe@example.com".into()),
                ..Default::default()
            });
    let names = custom_names(&custom_attributes(&state.db).await?);
    let link = service::registration_link(&state.base_url, "TEST-ONLY-this-link-does-not-work");
    let rendered = service::render(&s, &facts, &names, &link)
        .map_err(|e| AppError::Conflict(e.to_string()))?;
    let now = state.clock.now_ms();
    enqueue(
        &state.db.pool,
        &OutgoingMail {
            kind: "invitation_test",
            ref_id: None,
            to_address: to.to_owned(),
            to_name: None,
            subject: format!("[Test] {}", rendered.subject),
            text_body: rendered.text,
            html_body: rendered.html,
        },
        now,
    )
    .await?;
    state.mail.wake.notify_one();
    flash::push(
        &session,
        Level::Success,
        format!(
            "A test invitation for {} is queued to {to}. Its delivery shows on the Mail page.",
            facts.upn
        ),
    );
    Ok(see_other(PATH))
}

fn outcome_message(o: &InviteOutcome) -> (Level, String) {
    let mut msg = format!(
        "{} invitation{} queued.",
        o.invited,
        if o.invited == 1 { "" } else { "s" }
    );
    if !o.no_email.is_empty() {
        let shown: Vec<&str> = o.no_email.iter().take(5).map(String::as_str).collect();
        msg.push_str(&format!(
            " {} user{} without an email address could not be invited ({}{}).",
            o.no_email.len(),
            if o.no_email.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if o.no_email.len() > 5 { ", …" } else { "" }
        ));
    }
    if o.skipped > 0 {
        msg.push_str(&format!(
            " {} already registered or inactive user{} skipped.",
            o.skipped,
            if o.skipped == 1 { " was" } else { "s were" }
        ));
    }
    let level = if o.invited == 0 {
        Level::Error
    } else {
        Level::Success
    };
    (level, msg)
}

async fn invite_user(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let now = state.clock.now_ms();
    let o = service::invite(
        &state.db,
        &state.base_url,
        std::slice::from_ref(&*id),
        (&admin.id, &admin.username),
        now,
    )
    .await?;
    state.mail.wake.notify_one();
    let (level, msg) = outcome_message(&o);
    flash::push(&session, level, msg);
    Ok(see_other(&format!("/admin/users/{id}")))
}

async fn revoke_invitation(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let n = service::revoke(
        &state.db,
        &id,
        (&admin.id, &admin.username),
        state.clock.now_ms(),
    )
    .await?;
    if n > 0 {
        flash::push(
            &session,
            Level::Success,
            "The invitation is revoked: its link no longer works.",
        );
    } else {
        flash::push(
            &session,
            Level::Info,
            "There was no open invitation to revoke.",
        );
    }
    Ok(see_other(&format!("/admin/users/{id}")))
}

/// "Invite all matching" on the Users page: every user the current filters select.
async fn invite_filtered(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    form: web::Form<Vec<(String, String)>>,
) -> AppResult<HttpResponse> {
    let pairs: Vec<(String, String)> = form
        .into_inner()
        .into_iter()
        .filter(|(k, _)| k != "csrf_token")
        .collect();
    let query = crate::directory::handlers::user_query_from_pairs(&pairs);
    let ids = crate::directory::service::all_user_ids(&state.db, &query).await?;
    let now = state.clock.now_ms();
    let o = service::invite(
        &state.db,
        &state.base_url,
        &ids,
        (&admin.id, &admin.username),
        now,
    )
    .await?;
    state.mail.wake.notify_one();
    let (level, msg) = outcome_message(&o);
    flash::push(&session, level, msg);
    let back: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish();
    Ok(see_other(&format!("/admin/users?{back}")))
}

// ---- registration (public) ----

fn problem(session: &Session, state: &TokenState) -> AppResult<HttpResponse> {
    let (status, title, message) = match state {
        TokenState::Used => (
            StatusCode::GONE,
            "This invitation was used already",
            "You have registered with this link already. If you need your enrollment details again, ask your IT administrator to send you a new invitation.",
        ),
        TokenState::Revoked => (
            StatusCode::GONE,
            "This invitation was withdrawn",
            "Your administrator revoked this invitation. Ask them for a new one if you still need to register.",
        ),
        TokenState::Replaced => (
            StatusCode::GONE,
            "A newer invitation replaced this one",
            "Use the link in the most recent invitation email you received. Only the newest link works.",
        ),
        TokenState::Expired => (
            StatusCode::GONE,
            "This invitation has expired",
            "Invitation links work for a limited time. Ask your IT administrator to send you a new invitation.",
        ),
        TokenState::Unknown | TokenState::Malformed | TokenState::Valid(_) => (
            StatusCode::NOT_FOUND,
            "This invitation link is not valid",
            "Check that you opened the whole link from your invitation email (copying it by hand can cut it short). If it still does not work, ask your IT administrator for a new invitation.",
        ),
    };
    let page = ProblemPage {
        ctx: PageCtx::public(session, title)?,
        message: message.to_owned(),
        kind: match state {
            TokenState::Used => "used",
            TokenState::Revoked => "revoked",
            TokenState::Replaced => "replaced",
            TokenState::Expired => "expired",
            TokenState::Malformed => "malformed",
            _ => "unknown",
        },
    };
    render(&page, status)
}

fn too_many(session: &Session) -> AppResult<HttpResponse> {
    let page = ProblemPage {
        ctx: PageCtx::public(session, "Too many attempts")?,
        message: "Too many invalid registration links were opened from your network. Wait 15 minutes, then open the link from your invitation email again.".into(),
        kind: "rate_limited",
    };
    render(&page, StatusCode::TOO_MANY_REQUESTS)
}

/// Reads a token for the registration pages: the invitation and its user, or the response to send.
async fn valid_invitation(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    token: &str,
) -> AppResult<Result<(repo::InvitationRow, registration::Invitee), HttpResponse>> {
    let now = state.clock.now_ms();
    if registration::rate_limited(&state.db, &meta.ip, now).await? {
        return Ok(Err(too_many(session)?));
    }
    let ts = service::lookup(&state.db, token, now).await?;
    let TokenState::Valid(inv) = ts else {
        registration::record_attempt(&state.db, &meta.ip, now).await?;
        return Ok(Err(problem(session, &ts)?));
    };
    match registration::invitee(&state.db, &inv.user_id).await? {
        Some(u) => Ok(Ok((inv, u))),
        None => Ok(Err(problem(session, &TokenState::Unknown)?)),
    }
}

/// How this invitee registers: through the IdP set up for registration, with a password (local users when
/// no IdP is), or not at all yet.
async fn method_for(
    state: &AppState,
    user: &registration::Invitee,
) -> AppResult<(&'static str, Option<&'static str>)> {
    if let Some(row) = sso::provider_for(state, Purpose::Register, None).await? {
        let label = crate::identity::model::IdpKind::from_key(&row.kind)
            .map_or("your identity provider", |k| k.label());
        return Ok(("idp", Some(label)));
    }
    if user.source == "local" {
        return Ok(("password", None));
    }
    Ok(("unavailable", None))
}

async fn registration_page(
    state: &AppState,
    session: &Session,
    token: &str,
    user: &registration::Invitee,
    errors: FieldErrors,
) -> AppResult<RegisterPage> {
    let (method, idp_label) = method_for(state, user).await?;
    Ok(RegisterPage {
        ctx: PageCtx::public(session, "Register your devices")?,
        token: token.to_owned(),
        name: user.display_name.clone(),
        masked_email: user.mail.as_deref().map(mask_email).unwrap_or_default(),
        method,
        idp_label: idp_label.unwrap_or_default(),
        errors,
    })
}

async fn show_registration(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    token: web::Path<String>,
) -> AppResult<HttpResponse> {
    let (_, user) = match valid_invitation(&state, &session, &meta, &token).await? {
        Ok(v) => v,
        Err(resp) => return Ok(resp),
    };
    let p = registration_page(&state, &session, &token, &user, FieldErrors::new()).await?;
    render(&p, StatusCode::OK)
}

/// "Continue": signs the person in through the IdP set up for registration.
async fn continue_registration(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    token: web::Path<String>,
) -> AppResult<HttpResponse> {
    let (inv, user) = match valid_invitation(&state, &session, &meta, &token).await? {
        Ok(v) => v,
        Err(resp) => return Ok(resp),
    };
    let Some(row) = sso::provider_for(&state, Purpose::Register, None).await? else {
        let p = registration_page(&state, &session, &token, &user, FieldErrors::new()).await?;
        return render(&p, StatusCode::CONFLICT);
    };
    match sso::start(&state, &row, Purpose::Register, Some(&inv.id), None).await {
        Ok(started) => Ok(crate::identity::handlers::redirect_with_binding(
            &state, started,
        )),
        Err(StartError::Refused(r)) => Err(AppError::Conflict(r.message)),
        Err(StartError::Unexpected(e)) => Err(AppError::Upstream {
            service: "the identity provider",
            source: e,
        }),
    }
}

#[derive(Deserialize)]
struct PasswordInput {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// Local users register with a password when no IdP is set up for registration.
async fn register_with_password(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    token: web::Path<String>,
    input: web::Form<PasswordInput>,
) -> AppResult<HttpResponse> {
    let (inv, user) = match valid_invitation(&state, &session, &meta, &token).await? {
        Ok(v) => v,
        Err(resp) => return Ok(resp),
    };
    let (method, _) = method_for(&state, &user).await?;
    if method != "password" {
        let p = registration_page(&state, &session, &token, &user, FieldErrors::new()).await?;
        return render(&p, StatusCode::CONFLICT);
    }
    let mut errors = FieldErrors::new();
    if input.password.chars().count() < 12 {
        errors.insert(
            "password",
            "Choose a password of at least 12 characters.".into(),
        );
    } else if input.password != input.confirm {
        errors.insert(
            "confirm",
            "The two passwords differ. Type the same password twice.".into(),
        );
    }
    if !errors.is_empty() {
        let p = registration_page(&state, &session, &token, &user, errors).await?;
        return render(&p, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let hash = registration::hash_password(&input.password).await?;
    let done = registration::complete(&state, &inv, &user, Some(&hash), "password", &meta).await;
    enrolled(&session, done)
}

fn enrolled(session: &Session, done: Result<Enrollment, RegisterError>) -> AppResult<HttpResponse> {
    match done {
        Ok(e) => {
            let page = EnrolledPage::new(PageCtx::public(session, "You are registered")?, &e)?;
            render(&page, StatusCode::OK)
        }
        Err(RegisterError::NoLongerValid) => problem(session, &TokenState::Used),
        Err(RegisterError::Unexpected(e)) => Err(e.into()),
    }
}

/// Called by the identity area once the IdP confirmed who signed in for a registration.
pub async fn after_sign_in(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    invitation_id: &str,
    user_id: Option<&str>,
    display: &str,
) -> AppResult<HttpResponse> {
    let now = state.clock.now_ms();
    let Some(inv) = repo::find(&state.db.pool, invitation_id).await? else {
        return problem(session, &TokenState::Unknown);
    };
    match inv.status(now) {
        "pending" => {}
        "used" => return problem(session, &TokenState::Used),
        "revoked" => return problem(session, &TokenState::Revoked),
        "replaced" => return problem(session, &TokenState::Replaced),
        _ => return problem(session, &TokenState::Expired),
    }
    let Some(user) = registration::invitee(&state.db, &inv.user_id).await? else {
        return problem(session, &TokenState::Unknown);
    };
    if user_id != Some(inv.user_id.as_str()) {
        registration::refuse_wrong_person(state, &inv, display, meta).await?;
        let page = ProblemPage {
            ctx: PageCtx::public(session, "This invitation is for someone else")?,
            message: format!(
                "You signed in as {display}, but this invitation is for {}. Sign out of your identity provider, \
                 then open the invitation link again and sign in as {}. The link still works.",
                user.display_name, user.upn
            ),
            kind: "wrong_person",
        };
        return render(&page, StatusCode::FORBIDDEN);
    }
    let done = registration::complete(state, &inv, &user, None, "idp", meta).await;
    enrolled(session, done)
}
