//! HTTP handlers for Admin > Identity and the public sign-in endpoints (`/saml/*`, `/oidc/callback`,
//! `/sso/*`).

use actix_session::Session;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::error::{AppError, AppResult, FieldErrors};
use crate::identity::flow::{self, BINDING_COOKIE, Completion, Handled, Refusal, StartError};
use crate::identity::model::{EntraIdpForm, IdpKind, Purpose, SamlIdpForm};
use crate::identity::repo;
use crate::identity::service::{self, EnableError, SaveError};
use crate::identity::views::{
    self, EntraIdpPage, IdentityPage, SamlIdpPage, SsoRefusedPage, TestResultPage,
};
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, RequestMeta, Routes};

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin/identity", show_identity)
        .get("/admin/identity/entra", show_entra)
        .post("/admin/identity/entra", save_entra)
        .get("/admin/identity/onprem", show_onprem)
        .post("/admin/identity/onprem", save_onprem)
        .get("/admin/identity/generic", show_generic)
        .post("/admin/identity/generic", save_generic)
        .post("/admin/identity/{slug}/enable", enable_idp)
        .post("/admin/identity/{slug}/disable", disable_idp)
        .post("/admin/identity/{slug}/test", test_sign_in)
        .post("/admin/identity/{slug}/refresh", refresh_metadata)
        .post(
            "/admin/identity/{slug}/certificates/{id}/delete",
            delete_certificate,
        )
        .get("/admin/identity/test-results/{id}", show_test_result)
        .get("/saml/metadata", saml_metadata)
        .post("/saml/acs", saml_acs)
        .get("/oidc/callback", oidc_callback)
        .post("/sso/start", start_admin_sign_in)
        .get("/sso/complete", complete_sign_in);
}

fn kind_of(slug: &str) -> AppResult<IdpKind> {
    IdpKind::from_slug(slug).ok_or(AppError::NotFound)
}

async fn show_identity(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let ctx = PageCtx::admin(&session, &admin, Section::Identity, "Admin > Identity")?;
    let page = IdentityPage::build(&state, ctx).await?;
    render(&page, StatusCode::OK)
}

async fn entra_page(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    form: Option<EntraIdpForm>,
    errors: FieldErrors,
) -> AppResult<EntraIdpPage> {
    let ctx = PageCtx::admin(
        session,
        admin,
        Section::Identity,
        "Admin > Identity > Entra ID",
    )?;
    Ok(EntraIdpPage::build(state, ctx, form, errors).await?)
}

async fn show_entra(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let page = entra_page(&state, &session, &admin, None, FieldErrors::new()).await?;
    render(&page, StatusCode::OK)
}

async fn save_entra(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    form: web::Form<EntraIdpForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let now = state.clock.now_ms();
    match service::save_entra(
        &state.db,
        &state.identity,
        &state.master_key,
        &form,
        (&admin.id, &admin.username),
        &meta,
        now,
    )
    .await
    {
        Ok(()) => {
            flash::push(&session, Level::Success, "Entra ID sign-in settings saved.");
            Ok(see_other("/admin/identity/entra"))
        }
        Err(SaveError::Invalid(errors)) => {
            let page = entra_page(&state, &session, &admin, Some(form), errors).await?;
            render(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn saml_page(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    kind: IdpKind,
    form: Option<SamlIdpForm>,
    errors: FieldErrors,
) -> AppResult<SamlIdpPage> {
    let title = format!("Admin > Identity > {}", kind.setup_title());
    let ctx = PageCtx::admin(session, admin, Section::Identity, &title)?;
    Ok(SamlIdpPage::build(state, ctx, kind, form, errors).await?)
}

async fn show_saml(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    kind: IdpKind,
) -> AppResult<HttpResponse> {
    let page = saml_page(&state, &session, &admin, kind, None, FieldErrors::new()).await?;
    render(&page, StatusCode::OK)
}

async fn save_saml(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    kind: IdpKind,
    form: SamlIdpForm,
) -> AppResult<HttpResponse> {
    let now = state.clock.now_ms();
    match service::save_saml(
        &state.db,
        &state.identity,
        kind,
        &form,
        (&admin.id, &admin.username),
        &meta,
        now,
    )
    .await
    {
        Ok(()) => {
            flash::push(
                &session,
                Level::Success,
                format!("{} settings saved.", kind.setup_title()),
            );
            Ok(see_other(&format!("/admin/identity/{}", kind.slug())))
        }
        Err(SaveError::Invalid(errors)) => {
            let page = saml_page(&state, &session, &admin, kind, Some(form), errors).await?;
            render(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn show_onprem(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    show_saml(state, session, admin, IdpKind::Adfs).await
}

async fn show_generic(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    show_saml(state, session, admin, IdpKind::Saml).await
}

async fn save_onprem(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    form: web::Form<SamlIdpForm>,
) -> AppResult<HttpResponse> {
    save_saml(
        state,
        session,
        admin,
        meta,
        IdpKind::Adfs,
        form.into_inner(),
    )
    .await
}

async fn save_generic(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    form: web::Form<SamlIdpForm>,
) -> AppResult<HttpResponse> {
    save_saml(
        state,
        session,
        admin,
        meta,
        IdpKind::Saml,
        form.into_inner(),
    )
    .await
}

async fn switch(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    meta: &RequestMeta,
    slug: &str,
    enabled: bool,
) -> AppResult<HttpResponse> {
    let kind = kind_of(slug)?;
    let now = state.clock.now_ms();
    match service::set_enabled(
        &state.db,
        kind,
        enabled,
        (&admin.id, &admin.username),
        meta,
        now,
    )
    .await
    {
        Ok(()) => {
            let msg = if enabled {
                format!("{} is now the active identity provider.", kind.label())
            } else {
                format!(
                    "{} is disabled. Admins can still sign in at /login with their password.",
                    kind.label()
                )
            };
            flash::push(session, Level::Success, msg);
        }
        Err(EnableError::Refused(msg)) => flash::push(session, Level::Error, msg),
        Err(EnableError::Unexpected(e)) => return Err(e.into()),
    }
    Ok(see_other(&format!("/admin/identity/{}", kind.slug())))
}

async fn enable_idp(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    slug: web::Path<String>,
) -> AppResult<HttpResponse> {
    switch(&state, &session, &admin, &meta, &slug, true).await
}

async fn disable_idp(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    slug: web::Path<String>,
) -> AppResult<HttpResponse> {
    switch(&state, &session, &admin, &meta, &slug, false).await
}

async fn refresh_metadata(
    state: web::Data<AppState>,
    session: Session,
    _admin: AdminSession,
    slug: web::Path<String>,
) -> AppResult<HttpResponse> {
    let kind = kind_of(&slug)?;
    service::refresh_metadata(&state.db, &state.identity, kind, state.clock.now_ms()).await?;
    let row = repo::find_provider(&state.db.pool, kind.key()).await?;
    match row.and_then(|r| r.metadata_error) {
        Some(e) => flash::push(
            &session,
            Level::Error,
            format!("The metadata could not be read: {e}"),
        ),
        None => flash::push(
            &session,
            Level::Success,
            "Metadata read again; new signing certificates, if any, are now trusted.",
        ),
    }
    Ok(see_other(&format!("/admin/identity/{}", kind.slug())))
}

#[derive(Deserialize)]
struct CertPath {
    slug: String,
    id: String,
}

async fn delete_certificate(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    path: web::Path<CertPath>,
) -> AppResult<HttpResponse> {
    let kind = kind_of(&path.slug)?;
    let removed = service::remove_certificate(
        &state.db,
        kind,
        &path.id,
        (&admin.id, &admin.username),
        &meta,
        state.clock.now_ms(),
    )
    .await?;
    if removed {
        flash::push(
            &session,
            Level::Success,
            "The certificate is no longer trusted.",
        );
    }
    Ok(see_other(&format!("/admin/identity/{}", kind.slug())))
}

/// The binding cookie: HttpOnly, SameSite=Lax (it is read on the same-site completion GET), short-lived.
fn binding_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(BINDING_COOKIE, value)
        .path("/sso")
        .http_only(true)
        .secure(state.base_url.as_str().starts_with("https://"))
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::minutes(10))
        .finish()
}

pub fn redirect_with_binding(state: &AppState, started: flow::Started) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, started.redirect_url))
        .cookie(binding_cookie(state, started.binding))
        .finish()
}

/// A refusal page anyone may see, in plain words.
fn refused_page(session: &Session, r: &Refusal, status: StatusCode) -> AppResult<HttpResponse> {
    let page = SsoRefusedPage {
        ctx: PageCtx::public(session, "Sign-in refused")?,
        message: r.message.clone(),
        code: r.code.clone(),
    };
    render(&page, status)
}

async fn test_sign_in(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    slug: web::Path<String>,
) -> AppResult<HttpResponse> {
    let kind = kind_of(&slug)?;
    let Some(row) = flow::provider_for(&state, Purpose::Test, Some(kind)).await? else {
        flash::push(
            &session,
            Level::Error,
            format!("Save the {} settings before testing them.", kind.label()),
        );
        return Ok(see_other(&format!("/admin/identity/{}", kind.slug())));
    };
    match flow::start(&state, &row, Purpose::Test, None, Some(&admin.id)).await {
        Ok(started) => Ok(redirect_with_binding(&state, started)),
        Err(StartError::Refused(r)) => {
            flash::push(&session, Level::Error, r.message);
            Ok(see_other(&format!("/admin/identity/{}", kind.slug())))
        }
        Err(StartError::Unexpected(e)) => {
            tracing::warn!(error = format!("{e:#}"), "Test sign-in could not start.");
            flash::push(
                &session,
                Level::Error,
                format!("The test sign-in could not start: {e:#}"),
            );
            Ok(see_other(&format!("/admin/identity/{}", kind.slug())))
        }
    }
}

async fn show_test_result(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let row = repo::find_sso_request(&state.db.pool, &id)
        .await?
        .filter(|r| {
            r.purpose == Purpose::Test.key() && r.admin_id.as_deref() == Some(admin.id.as_str())
        })
        .ok_or(AppError::NotFound)?;
    let ctx = PageCtx::admin(
        &session,
        &admin,
        Section::Identity,
        "Admin > Identity > Test sign-in",
    )?;
    let page = TestResultPage::build(&state, ctx, &row).await?;
    render(&page, StatusCode::OK)
}

async fn saml_metadata(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let xml = crate::identity::saml::sp_metadata_xml(&flow::sp_config(&state))
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("building the SP metadata: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "inline; filename=\"roster-sp-metadata.xml\"",
        ))
        .body(xml))
}

#[derive(Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse", default)]
    saml_response: String,
}

/// The SAML Assertion Consumer Service (HTTP-POST binding). Cross-site by design: exempt from the CSRF
/// token, protected by the pending request, the signature checks and the browser binding.
async fn saml_acs(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    form: web::Form<AcsForm>,
) -> AppResult<HttpResponse> {
    answer(
        &session,
        flow::handle_saml_response(&state, &meta, &form.saml_response).await?,
    )
}

async fn oidc_callback(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    req: HttpRequest,
) -> AppResult<HttpResponse> {
    let handled = flow::handle_oidc_callback(&state, &meta, req.query_string()).await?;
    answer(&session, handled)
}

fn answer(session: &Session, handled: Handled) -> AppResult<HttpResponse> {
    match handled {
        Handled::Continue { request_id } => Ok(see_other(&format!(
            "/sso/complete?id={}",
            url::form_urlencoded::byte_serialize(request_id.as_bytes()).collect::<String>()
        ))),
        Handled::Refused(r) => refused_page(session, &r, StatusCode::BAD_REQUEST),
    }
}

/// "Sign in with …" on the sign-in page.
async fn start_admin_sign_in(
    state: web::Data<AppState>,
    session: Session,
) -> AppResult<HttpResponse> {
    let Some(row) = flow::provider_for(&state, Purpose::Admin, None).await? else {
        flash::push(
            &session,
            Level::Error,
            "Sign-in through an identity provider is not turned on. Sign in with your Roster admin account.",
        );
        return Ok(see_other("/login"));
    };
    match flow::start(&state, &row, Purpose::Admin, None, None).await {
        Ok(started) => Ok(redirect_with_binding(&state, started)),
        Err(StartError::Refused(r)) => refused_page(&session, &r, StatusCode::CONFLICT),
        Err(StartError::Unexpected(e)) => Err(AppError::Upstream {
            service: "the identity provider",
            source: e,
        }),
    }
}

#[derive(Deserialize)]
struct CompleteQuery {
    #[serde(default)]
    id: String,
}

async fn complete_sign_in(
    state: web::Data<AppState>,
    session: Session,
    meta: RequestMeta,
    req: HttpRequest,
    q: web::Query<CompleteQuery>,
) -> AppResult<HttpResponse> {
    let binding = req.cookie(BINDING_COOKIE).map(|c| c.value().to_owned());
    let completion = flow::complete(&state, &meta, &q.id, binding.as_deref()).await?;
    let mut resp = match completion {
        Completion::Admin { admin_id, username } => {
            crate::auth::handlers::start_admin_session(&session, &admin_id)?;
            tracing::info!(admin_id = %admin_id, username = %username, "Admin signed in through the identity provider.");
            see_other("/admin")
        }
        Completion::TestResult { request_id } => {
            see_other(&format!("/admin/identity/test-results/{request_id}"))
        }
        Completion::Register {
            relay,
            user_id,
            display,
        } => {
            crate::invitations::handlers::after_sign_in(
                &state,
                &session,
                &meta,
                &relay,
                user_id.as_deref(),
                &display,
            )
            .await?
        }
        Completion::Refused(r) => refused_page(&session, &r, StatusCode::FORBIDDEN)?,
    };
    // The binding is single-use.
    let mut gone = binding_cookie(&state, String::new());
    gone.make_removal();
    resp.add_cookie(&gone)
        .map_err(|e| AppError::Unexpected(e.into()))?;
    Ok(resp)
}

pub use views::idp_label_for_login;
