//! HTTP handlers for Admin > Mail: SMTP settings, "Send test email" and the outbox summary.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::audit::event::Actor;
use crate::error::{AppResult, FieldErrors};
use crate::mail::model::SmtpForm;
use crate::mail::repo;
use crate::mail::service::{self, SaveError, TestOutcome};
use crate::mail::views::{MailSettingsPage, OutboxView};
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, RequestMeta, Routes};

pub const PATH: &str = "/admin/mail";
const TITLE: &str = "Admin > Identity > Mail (SMTP)";

pub fn configure(r: &mut Routes<'_>) {
    r.get(PATH, show_mail_settings)
        .post(PATH, submit_mail_settings);
}

async fn page(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    mut form: SmtpForm,
    errors: FieldErrors,
    test: Option<TestOutcome>,
) -> AppResult<MailSettingsPage> {
    // The password is write-only: never sent back to the browser, whatever the form held.
    form.password.clear();
    form.clear_password = false;
    let stored = repo::find_settings(&state.db.pool).await?;
    let has_password = stored.as_ref().is_some_and(|s| s.password_sealed.is_some());
    let now = state.clock.now_ms();
    let outbox = OutboxView::new(service::summary(&state.db, now).await?, now);
    let ctx = PageCtx::admin(session, admin, Section::Mail, TITLE)?;
    Ok(MailSettingsPage::new(
        ctx,
        form,
        errors,
        stored.is_some(),
        has_password,
        test,
        outbox,
    ))
}

async fn show_mail_settings(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let stored = repo::find_settings(&state.db.pool).await?;
    let form = service::form_from(stored.as_ref());
    let p = page(&state, &session, &admin, form, FieldErrors::new(), None).await?;
    render(&p, StatusCode::OK)
}

/// The posted form and which button was pressed (`save` or `test`).
fn parse_form(pairs: &[(String, String)]) -> (SmtpForm, String) {
    let mut f = SmtpForm::default();
    let mut action = String::from("save");
    for (k, v) in pairs {
        match k.as_str() {
            "host" => f.host.clone_from(v),
            "port" => f.port.clone_from(v),
            "security" => f.security.clone_from(v),
            "username" => f.username.clone_from(v),
            "password" => f.password.clone_from(v),
            "clear_password" => f.clear_password = true,
            "from_name" => f.from_name.clone_from(v),
            "from_address" => f.from_address.clone_from(v),
            "test_to" => f.test_to.clone_from(v),
            "action" => action.clone_from(v),
            _ => {}
        }
    }
    (f, action)
}

async fn submit_mail_settings(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    body: web::Form<Vec<(String, String)>>,
) -> AppResult<HttpResponse> {
    let (form, action) = parse_form(&body);
    let actor = Actor::Admin {
        id: admin.id.clone(),
        name: admin.username.clone(),
    };
    if action == "test" {
        let (settings, to) = match (form.validate(), form.test_recipient()) {
            (Ok(settings), Ok(to)) => (settings, to),
            (settings, to) => {
                // Report every problem at once: the settings and the recipient.
                let mut errors = settings.err().unwrap_or_default();
                errors.extend(to.err().unwrap_or_default());
                let p = page(&state, &session, &admin, form, errors, None).await?;
                return render(&p, StatusCode::UNPROCESSABLE_ENTITY);
            }
        };
        let stored = repo::find_settings(&state.db.pool).await?;
        let outcome = match service::password_for_test(&form, stored.as_ref(), &state.master_key) {
            Ok(password) => {
                service::send_test(
                    &state.db,
                    &state.mail,
                    state.clock.now_ms(),
                    &settings,
                    password.as_ref(),
                    &to,
                    actor,
                    &meta,
                )
                .await?
            }
            Err(e) => TestOutcome {
                ok: false,
                message: format!(
                    "The stored password cannot be opened ({e}); type the password again."
                ),
            },
        };
        let p = page(
            &state,
            &session,
            &admin,
            form,
            FieldErrors::new(),
            Some(outcome),
        )
        .await?;
        return render(&p, StatusCode::OK);
    }
    match service::save(
        &state.db,
        &state.master_key,
        &state.mail,
        state.clock.now_ms(),
        &form,
        actor,
        &meta,
    )
    .await
    {
        Ok(_) => {
            flash::push(
                &session,
                Level::Success,
                "Mail settings saved. Queued mail goes out with these settings.",
            );
            Ok(see_other(PATH))
        }
        Err(SaveError::Invalid(errors)) => {
            let p = page(&state, &session, &admin, form, errors, None).await?;
            render(&p, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_and_the_button_are_read() {
        let pairs: Vec<(String, String)> = [
            ("host", "smtp.example.com"),
            ("port", "465"),
            ("clear_password", "on"),
            ("action", "test"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let (f, action) = parse_form(&pairs);
        assert_eq!(action, "test");
        assert_eq!(f.port, "465");
        assert!(f.clear_password);
    }
}
