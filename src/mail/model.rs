//! SMTP settings as typed values, the form as typed, and its validation.

use std::str::FromStr;

use crate::error::FieldErrors;

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP (a trusted relay on the local network only).
    None,
    /// Plain connection upgraded with STARTTLS, required (usually port 587).
    StartTls,
    /// Implicit TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl Security {
    pub const ALL: [Self; 3] = [Self::StartTls, Self::Tls, Self::None];

    pub fn key(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Tls => "tls",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::None => "None (trusted local relay only)",
            Self::StartTls => "STARTTLS (port 587)",
            Self::Tls => "TLS (port 465)",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "starttls" => Some(Self::StartTls),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }
}

/// The stored settings, without the password (which stays sealed in the repo row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub from_name: String,
    pub from_address: String,
}

/// The form as typed (all text, so a refused form comes back exactly as it was).
#[derive(Debug, Clone, Default)]
pub struct SmtpForm {
    pub host: String,
    pub port: String,
    pub security: String,
    pub username: String,
    /// Write-only: empty means "keep the stored one". Never rendered back.
    pub password: String,
    pub clear_password: bool,
    pub from_name: String,
    pub from_address: String,
    /// Where "Send test email" sends to.
    pub test_to: String,
}

/// True for something lettre accepts as a mailbox address (`local@domain`).
pub fn is_address(s: &str) -> bool {
    lettre::Address::from_str(s).is_ok()
}

/// Refuses line breaks and control characters in anything that ends up in a mail header.
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

impl SmtpForm {
    /// Checks every field; on success the typed settings.
    pub fn validate(&self) -> Result<SmtpSettings, FieldErrors> {
        let mut e = FieldErrors::new();
        let host = self.host.trim();
        if host.is_empty() {
            e.insert(
                "host",
                "Enter the mail server's host name, e.g. smtp.example.com.".into(),
            );
        } else if host.len() > 253
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '@')
        {
            e.insert(
                "host",
                "Enter a host name or IP address only, without spaces, scheme or path.".into(),
            );
        }
        let port = match self.port.trim().parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                e.insert(
                    "port",
                    "Enter a port number from 1 to 65535 (usually 587, 465 or 25).".into(),
                );
                None
            }
        };
        let security = Security::parse(&self.security);
        if security.is_none() {
            e.insert("security", "Choose how the connection is protected.".into());
        }
        let username = self.username.trim();
        if has_control(username) || username.len() > 320 {
            e.insert(
                "username",
                "The user name may not contain line breaks.".into(),
            );
        }
        if !self.password.is_empty() && username.is_empty() {
            e.insert(
                "username",
                "Enter the user name that goes with the password.".into(),
            );
        }
        if self.password.len() > 1024 {
            e.insert(
                "password",
                "The password is too long (at most 1024 characters).".into(),
            );
        }
        let from_name = self.from_name.trim();
        if has_control(from_name) || from_name.len() > 200 {
            e.insert(
                "from_name",
                "Enter a name on one line, at most 200 characters.".into(),
            );
        }
        let from_address = self.from_address.trim();
        if from_address.is_empty() {
            e.insert(
                "from_address",
                "Enter the address mail is sent from, e.g. roster@example.com.".into(),
            );
        } else if !is_address(from_address) {
            e.insert(
                "from_address",
                "This is not a valid email address (expected name@example.com).".into(),
            );
        }
        match (port, security) {
            (Some(port), Some(security)) if e.is_empty() => Ok(SmtpSettings {
                host: host.to_owned(),
                port,
                security,
                username: (!username.is_empty()).then(|| username.to_owned()),
                from_name: from_name.to_owned(),
                from_address: from_address.to_owned(),
            }),
            _ => Err(e),
        }
    }

    /// The recipient of "Send test email", checked.
    pub fn test_recipient(&self) -> Result<String, FieldErrors> {
        let to = self.test_to.trim();
        let mut e = FieldErrors::new();
        if to.is_empty() {
            e.insert(
                "test_to",
                "Enter the address to send the test email to.".into(),
            );
        } else if !is_address(to) {
            e.insert(
                "test_to",
                "This is not a valid email address (expected name@example.com).".into(),
            );
        }
        if e.is_empty() {
            Ok(to.to_owned())
        } else {
            Err(e)
        }
    }
}

impl From<&SmtpSettings> for SmtpForm {
    fn from(s: &SmtpSettings) -> Self {
        Self {
            host: s.host.clone(),
            port: s.port.to_string(),
            security: s.security.key().into(),
            username: s.username.clone().unwrap_or_default(),
            password: String::new(),
            clear_password: false,
            from_name: s.from_name.clone(),
            from_address: s.from_address.clone(),
            test_to: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> SmtpForm {
        SmtpForm {
            host: "smtp.example.com".into(),
            port: "587".into(),
            security: "starttls".into(),
            from_address: "roster@example.com".into(),
            ..SmtpForm::default()
        }
    }

    #[test]
    fn a_complete_form_validates() {
        let s = good().validate().unwrap();
        assert_eq!(s.port, 587);
        assert_eq!(s.security, Security::StartTls);
        assert_eq!(s.username, None);
    }

    #[test]
    fn bad_fields_are_reported_each() {
        let f = SmtpForm {
            host: String::new(),
            port: "70000".into(),
            security: "ssl3".into(),
            from_address: "not an address".into(),
            password: "x".into(),
            ..SmtpForm::default()
        };
        let e = f.validate().unwrap_err();
        for k in ["host", "port", "security", "from_address", "username"] {
            assert!(e.contains_key(k), "{k}: {e:?}");
        }
        let mut f = good();
        f.from_name = "Evil\r\nBcc: x@y".into();
        assert!(f.validate().unwrap_err().contains_key("from_name"));
        f = good();
        f.port = "0".into();
        assert!(f.validate().unwrap_err().contains_key("port"));
    }
}
