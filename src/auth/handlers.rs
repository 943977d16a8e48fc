//! HTTP handlers for sign-in, sign-out and first-run setup.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::service::{self, CreateError, LoginError, NewAdmin, SetupState};
use crate::auth::views::{LoginPage, SetupClosedPage, SetupPage};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::web::flash::{self, Level};
use crate::web::guard::ADMIN_KEY;
use crate::web::page::{PageCtx, render, see_other};
use crate::web::{AppState, RequestMeta, Routes, csrf, redirect};

pub fn configure(r: &mut Routes<'_>) {
    r.get("/login", login_form)
        .post("/login", login)
        .post("/logout", logout)
        .get("/setup", setup_form)
        .post("/setup", setup);
}

/// Where to go after sign-in: a local path under `/admin`, else the dashboard.
fn after_login_target(return_to: &str) -> &str {
    redirect::local_path(return_to)
        .filter(|p| crate::web::routes::is_admin_path(p.split(['?', '#']).next().unwrap_or("")))
        .unwrap_or("/admin")
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    return_to: String,
    #[serde(default)]
    signed_out: Option<String>,
}

async fn login_form(
    state: web::Data<AppState>,
    session: Session,
    q: web::Query<LoginQuery>,
) -> AppResult<HttpResponse> {
    if session.get::<String>(ADMIN_KEY).ok().flatten().is_some() {
        return Ok(see_other(after_login_target(&q.return_to)));
    }
    let page = LoginPage {
        ctx: PageCtx::public(&session, "Sign in")?,
        username: String::new(),
        return_to: after_login_target(&q.return_to).to_owned(),
        error: None,
        signed_out: q.signed_out.is_some(),
        sso_label: crate::identity::views::idp_label_for_login(&state).await?,
    };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginInput {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    return_to: String,
}

/// Starts an authenticated session: new session id, admin id, fresh CSRF token.
pub fn start_admin_session(session: &Session, admin_id: &str) -> anyhow::Result<()> {
    session.renew();
    session
        .insert(ADMIN_KEY, admin_id)
        .map_err(|e| anyhow::anyhow!("storing the session: {e}"))?;
    csrf::rotate(session)?;
    Ok(())
}

async fn login(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    form: web::Form<LoginInput>,
) -> AppResult<HttpResponse> {
    let LoginInput {
        username,
        password,
        return_to,
    } = form.into_inner();
    let now = state.clock.now_ms();
    let result = service::login(
        &state.db,
        now,
        &username,
        SecretString::from(password),
        &meta,
    )
    .await;
    let (status, message) = match result {
        Ok(admin) => {
            start_admin_session(&session, &admin.id)?;
            tracing::info!(admin_id = %admin.id, "Admin signed in.");
            return Ok(see_other(after_login_target(&return_to)));
        }
        Err(LoginError::BadCredentials) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Wrong username or password. Check both and try again.".to_owned(),
        ),
        Err(LoginError::Locked { minutes }) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed sign-in attempts. Sign-in is paused for this account and address; try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            ),
        ),
        Err(LoginError::Unexpected(e)) => return Err(AppError::Unexpected(e)),
    };
    let page = LoginPage {
        ctx: PageCtx::public(&session, "Sign in")?,
        username,
        return_to: after_login_target(&return_to).to_owned(),
        error: Some(message),
        signed_out: false,
        sso_label: crate::identity::views::idp_label_for_login(&state).await?,
    };
    render(&page, status)
}

async fn logout(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
) -> AppResult<HttpResponse> {
    if let Ok(Some(id)) = session.get::<String>(ADMIN_KEY) {
        let name = crate::auth::repo::find_admin(&state.db.pool, &id)
            .await?
            .map(|a| a.username)
            .unwrap_or_default();
        service::logout(&state.db, state.clock.now_ms(), &id, &name, &meta).await?;
        tracing::info!(admin_id = %id, "Admin signed out.");
    }
    session.purge();
    Ok(see_other("/login?signed_out=1"))
}

#[derive(Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

fn setup_closed(session: &Session, state: &SetupState) -> AppResult<HttpResponse> {
    let (reason, status, message) = match state {
        SetupState::Done => (
            "done",
            StatusCode::OK,
            "Roster is already set up: an admin account exists. Sign in with it, or ask an admin to create \
             an account for you (roster admin create)."
                .to_owned(),
        ),
        _ => (
            "invalid",
            StatusCode::NOT_FOUND,
            "This setup link is not valid: it was already used or is more than an hour old. Restart Roster \
             to print a new link in its log, or create an admin with `roster admin create --username NAME`."
                .to_owned(),
        ),
    };
    let page = SetupClosedPage {
        ctx: PageCtx::public(session, "First-run setup")?,
        reason,
        message,
    };
    render(&page, status)
}

async fn setup_form(
    state: web::Data<AppState>,
    session: Session,
    q: web::Query<SetupQuery>,
) -> AppResult<HttpResponse> {
    let st = service::setup_state(&state.db, state.clock.now_ms(), &q.token).await?;
    if st != SetupState::Ready {
        return setup_closed(&session, &st);
    }
    let page = SetupPage {
        ctx: PageCtx::public(&session, "First-run setup")?,
        token: q.token.clone(),
        username: String::new(),
        errors: FieldErrors::new(),
        form_error: None,
    };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct SetupInput {
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn setup(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    form: web::Form<SetupInput>,
) -> AppResult<HttpResponse> {
    let SetupInput {
        token,
        username,
        password,
        confirm,
    } = form.into_inner();
    let input = NewAdmin {
        username: username.clone(),
        password: SecretString::from(password),
        confirm: Some(SecretString::from(confirm)),
    };
    match service::complete_setup(&state.db, state.clock.now_ms(), &token, input, &meta).await {
        Ok(admin) => {
            start_admin_session(&session, &admin.id)?;
            flash::push(
                &session,
                Level::Success,
                format!("Welcome, {}. Your admin account is ready.", admin.username),
            );
            Ok(see_other("/admin"))
        }
        Err(CreateError::Invalid(errors)) => {
            let page = SetupPage {
                ctx: PageCtx::public(&session, "First-run setup")?,
                token,
                username,
                errors,
                form_error: None,
            };
            render(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(CreateError::SetupClosed) => {
            let st = service::setup_state(&state.db, state.clock.now_ms(), &token).await?;
            setup_closed(&session, &st)
        }
        Err(CreateError::Unexpected(e)) => Err(AppError::Unexpected(e)),
    }
}
