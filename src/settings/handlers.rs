//! HTTP handlers for Admin > Microsoft Azure > Entra ID User Source.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::audit::event::Actor;
use crate::error::{AppResult, FieldErrors};
use crate::settings::model::{AttributeRow, ENTRA_SOURCE_ID, EntraForm};
use crate::settings::repo;
use crate::settings::service::{self, SaveError, TestOutcome};
use crate::settings::views::{TestView, UserSourcePage};
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, RequestMeta, Routes};

pub const PATH: &str = "/admin/azure/entra-user-source";
const TITLE: &str = "Admin > Microsoft Azure > Entra ID User Source";

pub fn configure(r: &mut Routes<'_>) {
    r.get(PATH, show_user_source).post(PATH, submit_user_source);
}

async fn page(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    mut form: EntraForm,
    errors: FieldErrors,
    rows: &[crate::settings::model::AttributeRowErrors],
    test: Option<TestView>,
) -> AppResult<UserSourcePage> {
    // A secret is never sent back to the browser, whatever the form held.
    form.client_secret.clear();
    let stored = repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await?;
    let has_secret = stored
        .as_ref()
        .is_some_and(|s| s.client_secret_sealed.is_some());
    let ctx = PageCtx::admin(session, admin, Section::EntraUserSource, TITLE)?;
    Ok(UserSourcePage::new(
        ctx, form, errors, rows, has_secret, test,
    ))
}

async fn show_user_source(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let stored = repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await?;
    let form = service::form_from(stored.as_ref());
    let p = page(
        &state,
        &session,
        &admin,
        form,
        FieldErrors::new(),
        &[],
        None,
    )
    .await?;
    render(&p, StatusCode::OK)
}

/// Reads the posted fields; custom attributes come as repeated `attr_name` / `attr_property` pairs.
fn parse_form(pairs: &[(String, String)]) -> (EntraForm, String) {
    let mut f = EntraForm::default();
    let mut action = String::from("save");
    let mut names = Vec::new();
    let mut props = Vec::new();
    let mut apple = String::from("none");
    let mut apple_source = String::from("email");
    for (k, v) in pairs {
        match k.as_str() {
            "name" => f.name.clone_from(v),
            "enabled" => f.enabled = true,
            "sync_interval" => f.sync_interval.clone_from(v),
            "auto_invite" => f.auto_invite = true,
            "tenant_id" => f.tenant_id.clone_from(v),
            "client_id" => f.client_id.clone_from(v),
            "client_secret" => f.client_secret.clone_from(v),
            "cloud" => f.cloud.clone_from(v),
            "authority_url" => f.authority_url.clone_from(v),
            "graph_url" => f.graph_url.clone_from(v),
            "apple_id" => apple.clone_from(v),
            "apple_id_source" => apple_source.clone_from(v),
            "apple_id_subdomain" => f.apple_id_subdomain = true,
            "removal_guard_percent" => f.removal_guard_percent.clone_from(v),
            "removal_guard_min" => f.removal_guard_min.clone_from(v),
            "attr_name" => names.push(v.clone()),
            "attr_property" => props.push(v.clone()),
            "action" => action.clone_from(v),
            _ => {}
        }
    }
    f.apple_id_mode = if apple == "pattern" {
        apple_source
    } else {
        "none".into()
    };
    f.attributes = names
        .into_iter()
        .zip(props.into_iter().chain(std::iter::repeat(String::new())))
        .map(|(name, property)| AttributeRow { name, property })
        .collect();
    (f, action)
}

async fn submit_user_source(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    body: web::Form<Vec<(String, String)>>,
) -> AppResult<HttpResponse> {
    let (mut form, action) = parse_form(&body);
    // "Add Custom Attribute" and "Remove" edit the rows and show the form again, saving nothing.
    let row_edit = if action == "add_attribute" {
        Some(None)
    } else {
        action
            .strip_prefix("remove_attribute:")
            .and_then(|i| i.parse::<usize>().ok())
            .map(Some)
    };
    if let Some(edit) = row_edit {
        match edit {
            None => form.attributes.push(AttributeRow::default()),
            Some(i) if i < form.attributes.len() => {
                form.attributes.remove(i);
            }
            Some(_) => {}
        }
        if form.attributes.is_empty() {
            form.attributes.push(AttributeRow::default());
        }
        let p = page(
            &state,
            &session,
            &admin,
            form,
            FieldErrors::new(),
            &[],
            None,
        )
        .await?;
        return render(&p, StatusCode::OK);
    }
    if action == "test" {
        let stored = repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await?;
        let secret = service::secret_for_test(&form, stored.as_ref(), &state.master_key);
        let outcome = match form.validate(secret.is_some()) {
            Err(e) => {
                let p = page(&state, &session, &admin, form, e.fields, &e.rows, None).await?;
                return render(&p, StatusCode::UNPROCESSABLE_ENTITY);
            }
            Ok(settings) => match secret {
                Some(secret) => service::test_connection(&settings, secret).await,
                None => TestOutcome::Failed {
                    detail: "Enter the client secret to test the connection.".into(),
                },
            },
        };
        tracing::info!(outcome = ?std::mem::discriminant(&outcome), "Tested the Entra ID connection.");
        let p = page(
            &state,
            &session,
            &admin,
            form,
            FieldErrors::new(),
            &[],
            Some(TestView::from(&outcome)),
        )
        .await?;
        return render(&p, StatusCode::OK);
    }
    let actor = Actor::Admin {
        id: admin.id.clone(),
        name: admin.username.clone(),
    };
    match service::save(
        &state.db,
        &state.master_key,
        state.clock.now_ms(),
        &form,
        actor,
        &meta,
    )
    .await
    {
        Ok(settings) => {
            let msg = if settings.enabled {
                "Entra ID settings saved. Sync runs on the interval; use Sync now to start one at once."
            } else {
                "Entra ID settings saved. Sync is off until you select Enable this Entra ID."
            };
            flash::push(&session, Level::Success, msg);
            Ok(see_other(PATH))
        }
        Err(SaveError::Invalid(e)) => {
            let p = page(&state, &session, &admin, form, e.fields, &e.rows, None).await?;
            render(&p, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_attribute_fields_pair_up() {
        let pairs: Vec<(String, String)> = [
            ("attr_name", "a"),
            ("attr_property", "department"),
            ("attr_name", "b"),
            ("attr_property", "jobTitle"),
            ("apple_id", "pattern"),
            ("apple_id_source", "upn"),
            ("action", "test"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let (f, action) = parse_form(&pairs);
        assert_eq!(action, "test");
        assert_eq!(f.attributes.len(), 2);
        assert_eq!(f.attributes[1].property, "jobTitle");
        assert_eq!(f.apple_id_mode, "upn");
        assert!(!f.enabled, "unchecked boxes are absent");
    }
}
