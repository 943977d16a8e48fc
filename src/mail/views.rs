//! Page struct for Admin > Mail (SMTP settings, test email, outbox).

use askama::Template;
use askama_web::WebTemplate;

use crate::clock::{Millis, format_ms};
use crate::error::FieldErrors;
use crate::mail::model::{Security, SmtpForm};
use crate::mail::outbox::MailStatus;
use crate::mail::service::{OutboxSummary, TestOutcome};
use crate::web::page::PageCtx;

pub struct OptionView {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// One outbox row as listed.
pub struct MailRowView {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub kind: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub pill_class: &'static str,
    pub attempts: i64,
    pub created: String,
    pub when: String,
    pub last_error: Option<String>,
}

pub struct OutboxView {
    pub queued: i64,
    pub sent_24h: i64,
    pub failed: i64,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    pub last_error_at: String,
    pub recent: Vec<MailRowView>,
}

impl OutboxView {
    pub fn new(s: OutboxSummary, now: Millis) -> Self {
        let recent = s
            .recent
            .into_iter()
            .map(|r| {
                let status = r.mail_status();
                let (status_label, pill_class) = match status {
                    MailStatus::Queued if r.attempts > 0 => ("Retrying", "pill pill-warn"),
                    MailStatus::Queued => ("Queued", "pill pill-info"),
                    MailStatus::Sent => ("Sent", "pill pill-ok"),
                    MailStatus::Failed => ("Failed", "pill pill-err"),
                };
                let when = match status {
                    MailStatus::Sent => r
                        .sent_at
                        .map(|t| format!("sent {}", format_ms(t)))
                        .unwrap_or_default(),
                    MailStatus::Queued if r.next_attempt_at > now => {
                        format!("next try {}", format_ms(r.next_attempt_at))
                    }
                    MailStatus::Queued => "due now".into(),
                    MailStatus::Failed => "gave up".into(),
                };
                MailRowView {
                    recipient: match &r.to_name {
                        Some(n) if !n.is_empty() => format!("{n} <{}>", r.to_address),
                        _ => r.to_address.clone(),
                    },
                    id: r.id,
                    subject: r.subject,
                    kind: r.kind,
                    status: status.as_str(),
                    status_label,
                    pill_class,
                    attempts: r.attempts,
                    created: format_ms(r.created_at),
                    when,
                    last_error: if status == MailStatus::Sent {
                        None
                    } else {
                        r.last_error
                    },
                }
            })
            .collect();
        Self {
            queued: s.queued,
            sent_24h: s.sent_24h,
            failed: s.failed,
            consecutive_failures: s.state.consecutive_failures,
            last_error: s.state.last_error,
            last_error_at: s.state.last_failure_at.map(format_ms).unwrap_or_default(),
            recent,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "mail/settings.html")]
pub struct MailSettingsPage {
    pub ctx: PageCtx,
    pub form: SmtpForm,
    pub securities: Vec<OptionView>,
    pub errors: FieldErrors,
    /// SMTP settings are saved (else mail waits queued).
    pub configured: bool,
    pub has_password: bool,
    pub test: Option<TestOutcome>,
    pub outbox: OutboxView,
}

impl MailSettingsPage {
    pub fn new(
        ctx: PageCtx,
        form: SmtpForm,
        errors: FieldErrors,
        configured: bool,
        has_password: bool,
        test: Option<TestOutcome>,
        outbox: OutboxView,
    ) -> Self {
        let securities = Security::ALL
            .iter()
            .map(|s| OptionView {
                value: s.key(),
                label: s.label(),
                selected: form.security == s.key(),
            })
            .collect();
        Self {
            ctx,
            form,
            securities,
            errors,
            configured,
            has_password,
            test,
            outbox,
        }
    }
}
