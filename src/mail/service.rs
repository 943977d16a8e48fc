//! Rules for mail settings: save (password sealed, audited without it), "Send test email", and the
//! outbox summary the page shows.

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::{HOUR, Millis};
use crate::db::Db;
use crate::mail::MailContext;
use crate::mail::model::{SmtpForm, SmtpSettings};
use crate::mail::repo::{self, DeliveryState, OutboxRow, StoredSmtp};
use crate::mail::transport;
use crate::secrets::MasterKey;
use crate::web::RequestMeta;

#[derive(Debug)]
pub enum SaveError {
    Invalid(crate::error::FieldErrors),
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SaveError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

/// The form as stored, or the usual defaults for a first set-up.
pub fn form_from(stored: Option<&StoredSmtp>) -> SmtpForm {
    stored.map_or_else(
        || SmtpForm {
            port: "587".into(),
            security: "starttls".into(),
            from_name: "Roster".into(),
            ..SmtpForm::default()
        },
        |s| SmtpForm::from(&s.settings),
    )
}

/// Settings as audit details: everything but the password.
fn audit_view(s: &SmtpSettings) -> Value {
    json!({
        "host": s.host,
        "port": s.port,
        "security": s.security.key(),
        "username": s.username,
        "from_name": s.from_name,
        "from_address": s.from_address,
    })
}

fn diff(before: &Value, after: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, v) in a {
            if b.get(k) != Some(v) {
                out.insert(
                    k.clone(),
                    json!({ "from": b.get(k).cloned().unwrap_or(Value::Null), "to": v }),
                );
            }
        }
    }
    Value::Object(out)
}

/// What happens to the stored password on save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasswordChange {
    Keep,
    Set,
    Clear,
}

/// Validates and stores the settings in one transaction with their audit event, then wakes the worker
/// (queued mail may have waited for these settings).
pub async fn save(
    db: &Db,
    key: &MasterKey,
    mail: &MailContext,
    now: Millis,
    form: &SmtpForm,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<SmtpSettings, SaveError> {
    let settings = form.validate().map_err(SaveError::Invalid)?;
    let change = if !form.password.is_empty() {
        PasswordChange::Set
    } else if form.clear_password {
        PasswordChange::Clear
    } else {
        PasswordChange::Keep
    };
    let new_sealed = match change {
        PasswordChange::Set => Some(key.seal(&SecretString::from(form.password.clone()))?),
        PasswordChange::Keep | PasswordChange::Clear => None,
    };
    let mut tx = db.begin().await?;
    let stored = repo::find_settings(&mut *tx).await?;
    let sealed = match change {
        PasswordChange::Set => new_sealed,
        PasswordChange::Clear => None,
        PasswordChange::Keep => stored.as_ref().and_then(|s| s.password_sealed.clone()),
    };
    repo::upsert_settings(&mut *tx, &settings, sealed.as_deref(), now).await?;
    let before = stored
        .as_ref()
        .map_or_else(|| json!({}), |s| audit_view(&s.settings));
    let mut changes = diff(&before, &audit_view(&settings));
    if let Some(obj) = changes.as_object_mut() {
        obj.insert(
            "password".into(),
            json!(match change {
                PasswordChange::Set => "changed (value not recorded)",
                PasswordChange::Clear => "cleared",
                PasswordChange::Keep => "unchanged",
            }),
        );
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::SmtpSettingsSaved)
            .target("smtp_settings", repo::SETTINGS_ID)
            .from_request(meta)
            .details(json!({ "created": stored.is_none(), "changes": changes })),
    )
    .await?;
    tx.commit().await?;
    mail.wake();
    Ok(settings)
}

/// The password for a send: the one typed in the form, else the stored one (unless the form clears it).
pub fn password_for_test(
    form: &SmtpForm,
    stored: Option<&StoredSmtp>,
    key: &MasterKey,
) -> anyhow::Result<Option<SecretString>> {
    if !form.password.is_empty() {
        return Ok(Some(SecretString::from(form.password.clone())));
    }
    if form.clear_password {
        return Ok(None);
    }
    stored
        .and_then(|s| s.password_sealed.as_deref())
        .map(|sealed| key.open(sealed))
        .transpose()
}

/// What "Send test email" found, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub ok: bool,
    pub message: String,
}

/// Sends a test mail at once through the same transport the worker uses, with the form's (unsaved)
/// settings. It bypasses the outbox on purpose: the admin waits for the answer, and a test must not retry
/// for a day or count towards the failing-mail notification. Audited (recipient and outcome only).
#[expect(
    clippy::too_many_arguments,
    reason = "one call from one handler; a struct would only rename the arguments"
)]
pub async fn send_test(
    db: &Db,
    mail: &MailContext,
    now: Millis,
    settings: &SmtpSettings,
    password: Option<&SecretString>,
    to: &str,
    actor: Actor,
    meta: &RequestMeta,
) -> anyhow::Result<TestOutcome> {
    let text = format!(
        "This is a test email from Roster.\n\nIt was sent through {}:{} ({}). If you can read this, Roster can \
         send invitations.\n",
        settings.host,
        settings.port,
        settings.security.key()
    );
    let html = format!(
        "<!doctype html><html><body><p>This is a test email from <strong>Roster</strong>.</p><p>It was sent \
         through {}:{} ({}). If you can read this, Roster can send invitations.</p></body></html>",
        html_escape(&settings.host),
        settings.port,
        settings.security.key()
    );
    let result = async {
        let t = transport::build(settings, password, mail.test_timeout)?;
        let msg = transport::message(settings, to, None, "Roster test email", &text, &html, None)?;
        transport::send(&t, settings, msg, mail.test_timeout).await
    }
    .await;
    let outcome = match &result {
        Ok(()) => TestOutcome {
            ok: true,
            message: format!(
                "The mail server accepted the test email for {to}. Check that it arrived (and not in spam)."
            ),
        },
        Err(e) => TestOutcome {
            ok: false,
            message: e.to_string(),
        },
    };
    tracing::info!(ok = outcome.ok, "Sent a test email.");
    audit_repo::insert(
        &db.pool,
        &AuditEvent::new(now, actor, AuditAction::TestMailSent)
            .target("smtp_settings", repo::SETTINGS_ID)
            .from_request(meta)
            .details(json!({ "to": to, "ok": outcome.ok, "result": outcome.message })),
    )
    .await?;
    Ok(outcome)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The outbox as the page shows it.
#[derive(Debug, Clone)]
pub struct OutboxSummary {
    pub queued: i64,
    pub sent_24h: i64,
    pub failed: i64,
    pub state: DeliveryState,
    pub recent: Vec<OutboxRow>,
}

pub async fn summary(db: &Db, now: Millis) -> anyhow::Result<OutboxSummary> {
    let (queued, sent_24h, failed) = repo::count_summary(&db.pool, now - 24 * HOUR).await?;
    let state = repo::find_delivery_state(&db.pool).await?;
    let recent = repo::list_recent(&db.pool, 25).await?;
    Ok(OutboxSummary {
        queued,
        sent_24h,
        failed,
        state,
        recent,
    })
}
