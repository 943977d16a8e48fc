//! HTTP handlers for Admin > Configurations: list, new/edit forms, delete, preview and export per user.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::audit::event::Actor;
use crate::configurations::model::{ConfigForm, Kind, PairErrors, PairRow};
use crate::configurations::service::{self, Configuration, ResolveError, SaveError};
use crate::configurations::substitute::Refs;
use crate::configurations::views::{FormPage, ListPage, PreviewPage};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, RequestMeta, Routes};

pub const PATH: &str = "/admin/configurations";
const TITLE: &str = "Admin > Configurations";

pub fn configure(r: &mut Routes<'_>) {
    r.get(PATH, list_configurations)
        .get("/admin/configurations/new", new_configuration_form)
        .post("/admin/configurations/new", create_configuration)
        .get("/admin/configurations/{id}", edit_configuration_form)
        .post("/admin/configurations/{id}", update_configuration)
        .post("/admin/configurations/{id}/delete", delete_configuration)
        .get("/admin/configurations/{id}/preview", preview_configuration)
        .get("/admin/configurations/{id}/export", export_configuration);
}

fn actor(admin: &AdminSession) -> Actor {
    Actor::Admin {
        id: admin.id.clone(),
        name: admin.username.clone(),
    }
}

fn ctx(session: &Session, admin: &AdminSession, title: &str) -> AppResult<PageCtx> {
    Ok(PageCtx::admin(
        session,
        admin,
        Section::Configurations,
        title,
    )?)
}

async fn list_configurations(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let configs = service::list(&state.db).await?;
    let page = ListPage::new(ctx(&session, &admin, TITLE)?, &configs);
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    kind: String,
}

/// The form page, new (`config = None`) or edit, with the missing-value counts of what it uses.
#[expect(clippy::too_many_arguments, reason = "one page, built in one place")]
async fn form_page(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    config: Option<&Configuration>,
    kind: Kind,
    form: ConfigForm,
    errors: FieldErrors,
    rows: &[PairErrors],
) -> AppResult<FormPage> {
    let attrs = service::custom_attributes(&state.db).await?;
    let (active, coverage) = match config {
        Some(c) => service::coverage(&state.db, &c.payload, &attrs).await?,
        None => (0, Vec::new()),
    };
    let title = match config {
        Some(c) => format!("{TITLE} > {}", c.name),
        None => format!("{TITLE} > New {}", kind.label()),
    };
    Ok(FormPage::new(
        ctx(session, admin, &title)?,
        config.map(|c| c.id.clone()),
        kind,
        form,
        errors,
        rows,
        config.is_some_and(|c| c.secret_sealed.is_some()),
        &attrs,
        active,
        &coverage,
    ))
}

async fn new_configuration_form(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    query: web::Query<NewQuery>,
) -> AppResult<HttpResponse> {
    let Some(kind) = Kind::parse(&query.kind) else {
        return Ok(see_other(PATH));
    };
    let p = form_page(
        &state,
        &session,
        &admin,
        None,
        kind,
        ConfigForm::blank(kind),
        FieldErrors::new(),
        &[],
    )
    .await?;
    render(&p, StatusCode::OK)
}

/// Reads the posted fields; Custom rows come as repeated `pair_key` / `pair_value` pairs.
fn parse_form(pairs: &[(String, String)]) -> (ConfigForm, String) {
    let mut f = ConfigForm::default();
    let mut action = String::from("save");
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "kind" => f.kind.clone_from(v),
            "name" => f.name.clone_from(v),
            "account_name" => f.account_name.clone_from(v),
            "host" => f.host.clone_from(v),
            "ssl" => f.ssl = true,
            "email_address" => f.email_address.clone_from(v),
            "user_name" => f.user_name.clone_from(v),
            "past_days" => f.past_days.clone_from(v),
            "ssid" => f.ssid.clone_from(v),
            "hidden" => f.hidden = true,
            "auto_join" => f.auto_join = true,
            "security" => f.security.clone_from(v),
            "encryption" => f.encryption.clone_from(v),
            "password" => f.password.clone_from(v),
            "eap_method" => f.eap_method.clone_from(v),
            "eap_username" => f.eap_username.clone_from(v),
            "outer_identity" => f.outer_identity.clone_from(v),
            "pair_key" => keys.push(v.clone()),
            "pair_value" => values.push(v.clone()),
            "action" => action.clone_from(v),
            _ => {}
        }
    }
    f.pairs = keys
        .into_iter()
        .zip(values.into_iter().chain(std::iter::repeat(String::new())))
        .map(|(key, value)| PairRow { key, value })
        .collect();
    (f, action)
}

/// "Add row" / "Remove" on a Custom configuration: edits the rows, saves nothing. `None` when the action
/// is not a row edit.
fn row_edit(form: &mut ConfigForm, action: &str) -> Option<()> {
    if action == "add_pair" {
        form.pairs.push(PairRow::default());
    } else {
        let i = action.strip_prefix("remove_pair:")?.parse::<usize>().ok()?;
        if i < form.pairs.len() {
            form.pairs.remove(i);
        }
    }
    if form.pairs.is_empty() {
        form.pairs.push(PairRow::default());
    }
    Some(())
}

async fn create_configuration(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    body: web::Form<Vec<(String, String)>>,
) -> AppResult<HttpResponse> {
    let (mut form, action) = parse_form(&body);
    let Some(kind) = Kind::parse(&form.kind) else {
        return Ok(see_other(PATH));
    };
    if row_edit(&mut form, &action).is_some() {
        let p = form_page(
            &state,
            &session,
            &admin,
            None,
            kind,
            form,
            FieldErrors::new(),
            &[],
        )
        .await?;
        return render(&p, StatusCode::OK);
    }
    let now = state.clock.now_ms();
    match service::create(
        &state.db,
        &state.master_key,
        now,
        &form,
        actor(&admin),
        &meta,
    )
    .await
    {
        Ok(id) => {
            flash::push(
                &session,
                Level::Success,
                format!(
                    "Configuration \"{}\" created. Check below how many users lack a value for its variables, then preview it for a user.",
                    form.name.trim()
                ),
            );
            Ok(see_other(&format!("{PATH}/{id}")))
        }
        Err(SaveError::Invalid(e)) => {
            let p = form_page(
                &state, &session, &admin, None, kind, form, e.fields, &e.rows,
            )
            .await?;
            render(&p, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::NotFound) => Err(AppError::NotFound),
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn edit_configuration_form(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let c = service::get(&state.db, &id).await?;
    let kind = c.payload.kind();
    let form = ConfigForm::from_payload(&c.name, &c.payload);
    let p = form_page(
        &state,
        &session,
        &admin,
        Some(&c),
        kind,
        form,
        FieldErrors::new(),
        &[],
    )
    .await?;
    render(&p, StatusCode::OK)
}

async fn update_configuration(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    id: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> AppResult<HttpResponse> {
    let c = service::get(&state.db, &id).await?;
    let kind = c.payload.kind();
    let (mut form, action) = parse_form(&body);
    form.kind = kind.key().into();
    if row_edit(&mut form, &action).is_some() {
        let p = form_page(
            &state,
            &session,
            &admin,
            Some(&c),
            kind,
            form,
            FieldErrors::new(),
            &[],
        )
        .await?;
        return render(&p, StatusCode::OK);
    }
    let now = state.clock.now_ms();
    match service::update(
        &state.db,
        &state.master_key,
        now,
        &id,
        &form,
        actor(&admin),
        &meta,
    )
    .await
    {
        Ok(()) => {
            flash::push(
                &session,
                Level::Success,
                format!("Configuration \"{}\" saved.", form.name.trim()),
            );
            Ok(see_other(&format!("{PATH}/{id}")))
        }
        Err(SaveError::Invalid(e)) => {
            let p = form_page(
                &state,
                &session,
                &admin,
                Some(&c),
                kind,
                form,
                e.fields,
                &e.rows,
            )
            .await?;
            render(&p, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::NotFound) => Err(AppError::NotFound),
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn delete_configuration(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let name = service::delete(&state.db, state.clock.now_ms(), &id, actor(&admin), &meta).await?;
    flash::push(
        &session,
        Level::Success,
        format!("Configuration \"{name}\" deleted."),
    );
    Ok(see_other(PATH))
}

#[derive(Deserialize)]
pub struct UserQuery {
    #[serde(default)]
    user: String,
}

async fn preview_configuration(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
    query: web::Query<UserQuery>,
) -> AppResult<HttpResponse> {
    let c = service::get(&state.db, &id).await?;
    let title = format!("{TITLE} > {} > Preview", c.name);
    let ctx = ctx(&session, &admin, &title)?;
    let user = query.user.trim().to_owned();
    if user.is_empty() {
        return render(&PreviewPage::empty(ctx, &c, user, None), StatusCode::OK);
    }
    match service::resolve_for(&state.db, &c, &user).await {
        Ok(r) => {
            let doc = service::document_preview(&c, &r)?;
            render(
                &PreviewPage::resolved(ctx, &c, user, &r, doc),
                StatusCode::OK,
            )
        }
        Err(ResolveError::UserNotFound) => {
            let msg = format!("No user has the id, UPN or email address \"{user}\".");
            render(
                &PreviewPage::empty(ctx, &c, user, Some(msg)),
                StatusCode::NOT_FOUND,
            )
        }
        Err(ResolveError::Variable(e)) => {
            let msg = format!(
                "This configuration cannot be resolved: {e}. Edit it to use a defined variable."
            );
            render(
                &PreviewPage::empty(ctx, &c, user, Some(msg)),
                StatusCode::CONFLICT,
            )
        }
        Err(ResolveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn export_configuration(
    state: web::Data<AppState>,
    _admin: AdminSession,
    id: web::Path<String>,
    query: web::Query<UserQuery>,
) -> AppResult<HttpResponse> {
    let c = service::get(&state.db, &id).await?;
    let d = service::export_for(&state.db, &state.master_key, &c, &query.user).await?;
    let mut resp = HttpResponse::Ok();
    resp.content_type(d.content_type)
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(d.file_name)],
        })
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if !d.missing.is_empty() {
        // Scripts can see what the preview page warns about.
        resp.insert_header(("X-Roster-Missing-Variables", Refs(&d.missing).to_string()));
    }
    Ok(resp.body(d.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_pair_fields_pair_up_and_rows_edit() {
        let pairs: Vec<(String, String)> = [
            ("kind", "custom"),
            ("pair_key", "a"),
            ("pair_value", "${userUPN}"),
            ("pair_key", "b"),
            ("ssl", "on"),
            ("action", "remove_pair:0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let (mut f, action) = parse_form(&pairs);
        assert_eq!(f.pairs.len(), 2);
        assert_eq!(f.pairs[1].value, "");
        assert!(f.ssl && !f.hidden);
        assert!(row_edit(&mut f, &action).is_some());
        assert_eq!(f.pairs[0].key, "b");
        assert!(row_edit(&mut f, "save").is_none());
    }
}
