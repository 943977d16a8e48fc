//! Invitation settings (the template, link lifetime and PIN rules) and their validation.

use serde::Deserialize;

use crate::configurations::model::known_variables;
use crate::configurations::substitute;
use crate::error::FieldErrors;
use crate::settings::model::CustomAttribute;

pub const DEFAULT_SUBJECT: &str = "Register your devices, ${userFirstName}";
pub const DEFAULT_TEXT: &str = include_str!("../../templates/email/invitation.txt");
pub const DEFAULT_HTML: &str = include_str!("../../templates/email/invitation.html");
/// The variable that becomes the personal registration link.
pub const LINK_VARIABLE: &str = "registrationLink";

/// Stored invitation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationSettings {
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub lifetime_days: i64,
    pub pin_length: i64,
    pub pin_lifetime_minutes: i64,
}

impl Default for InvitationSettings {
    fn default() -> Self {
        Self {
            subject: DEFAULT_SUBJECT.into(),
            text_body: DEFAULT_TEXT.into(),
            html_body: DEFAULT_HTML.into(),
            lifetime_days: 7,
            pin_length: 8,
            pin_lifetime_minutes: 60,
        }
    }
}

/// What the template form posts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplateForm {
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text_body: String,
    #[serde(default)]
    pub html_body: String,
    #[serde(default)]
    pub lifetime_days: String,
    #[serde(default)]
    pub pin_length: String,
    #[serde(default)]
    pub pin_lifetime_minutes: String,
}

impl From<&InvitationSettings> for TemplateForm {
    fn from(s: &InvitationSettings) -> Self {
        Self {
            subject: s.subject.clone(),
            text_body: s.text_body.clone(),
            html_body: s.html_body.clone(),
            lifetime_days: s.lifetime_days.to_string(),
            pin_length: s.pin_length.to_string(),
            pin_lifetime_minutes: s.pin_lifetime_minutes.to_string(),
        }
    }
}

/// The variables a template may use: the configurations' ones plus `registrationLink`.
pub fn template_variables(custom: &[CustomAttribute]) -> Vec<String> {
    let mut v = known_variables(custom);
    v.push(LINK_VARIABLE.into());
    v
}

fn number(
    e: &mut FieldErrors,
    field: &'static str,
    raw: &str,
    range: std::ops::RangeInclusive<i64>,
    what: &str,
) -> i64 {
    match raw.trim().parse::<i64>() {
        Ok(n) if range.contains(&n) => n,
        _ => {
            e.insert(
                field,
                format!("Enter {what} from {} to {}.", range.start(), range.end()),
            );
            *range.start()
        }
    }
}

impl TemplateForm {
    pub fn validate(&self, custom: &[CustomAttribute]) -> Result<InvitationSettings, FieldErrors> {
        let mut e = FieldErrors::new();
        let known = template_variables(custom);
        let is_known = |n: &str| known.iter().any(|k| k == n);
        for (field, text, what) in [
            ("subject", &self.subject, "the subject"),
            ("text_body", &self.text_body, "the plain-text body"),
            ("html_body", &self.html_body, "the HTML body"),
        ] {
            if text.trim().is_empty() {
                e.insert(field, format!("Enter {what}."));
            } else if let Err(err) = substitute::check(text, is_known) {
                e.insert(
                    field,
                    format!(
                        "{err}. Variables you can use: {}.",
                        known
                            .iter()
                            .map(|k| format!("${{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if self.subject.contains(['\r', '\n']) {
            e.insert("subject", "The subject must be one line.".into());
        }
        for (field, text) in [
            ("text_body", &self.text_body),
            ("html_body", &self.html_body),
        ] {
            if !e.contains_key(field) && !text.contains(&format!("${{{LINK_VARIABLE}}}")) {
                e.insert(
                    field,
                    "Include ${registrationLink}: without it the invited user cannot register."
                        .into(),
                );
            }
        }
        let lifetime_days = number(
            &mut e,
            "lifetime_days",
            &self.lifetime_days,
            1..=90,
            "the link lifetime in days",
        );
        let pin_length = number(
            &mut e,
            "pin_length",
            &self.pin_length,
            6..=12,
            "the PIN length",
        );
        let pin_lifetime_minutes = number(
            &mut e,
            "pin_lifetime_minutes",
            &self.pin_lifetime_minutes,
            5..=10_080,
            "the PIN lifetime in minutes",
        );
        if !e.is_empty() {
            return Err(e);
        }
        Ok(InvitationSettings {
            subject: self.subject.trim().to_owned(),
            text_body: self.text_body.clone(),
            html_body: self.html_body.clone(),
            lifetime_days,
            pin_length,
            pin_lifetime_minutes,
        })
    }
}

/// Masks an email address for the registration page: `jane.doe@contoso.com` → `j•••e@contoso.com`.
pub fn mask_email(mail: &str) -> String {
    match mail.split_once('@') {
        Some((local, domain)) => {
            let chars: Vec<char> = local.chars().collect();
            let masked = match chars.len() {
                0 => String::new(),
                1 | 2 => format!("{}•••", chars[0]),
                n => format!("{}•••{}", chars[0], chars[n - 1]),
            };
            format!("{masked}@{domain}")
        }
        None => "•••".into(),
    }
}

/// A user's invitation state as kept on the user row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    None,
    Invited,
    Registered,
}

impl InvitationState {
    pub fn key(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Invited => "invited",
            Self::Registered => "registered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "invited" => Some(Self::Invited),
            "registered" => Some(Self::Registered),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::None => "Not invited",
            Self::Invited => "Invited",
            Self::Registered => "Registered",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_is_valid() {
        let f = TemplateForm::from(&InvitationSettings::default());
        assert_eq!(f.validate(&[]).unwrap(), InvitationSettings::default());
    }

    #[test]
    fn template_errors_name_the_field() {
        let mut f = TemplateForm::from(&InvitationSettings::default());
        f.subject = "Hi ${nope}".into();
        f.html_body = "<p>no link</p>".into();
        f.pin_length = "4".into();
        let e = f.validate(&[]).unwrap_err();
        assert!(e["subject"].contains("nope"), "{e:?}");
        assert!(e["html_body"].contains("registrationLink"));
        assert!(e["pin_length"].contains("6 to 12"));
        assert!(!e.contains_key("text_body"));
    }

    #[test]
    fn masks_emails() {
        assert_eq!(mask_email("jane.doe@contoso.com"), "j•••e@contoso.com");
        assert_eq!(mask_email("jo@x.org"), "j•••@x.org");
        assert_eq!(mask_email("nonsense"), "•••");
    }
}
