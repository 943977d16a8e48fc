//! Audit actions and events. Details never hold secrets: callers pass only what is safe to show.

use serde_json::{Value, json};

use crate::clock::Millis;
use crate::web::RequestMeta;

/// Everything the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    SetupCompleted,
    AdminCreated,
    LoginSucceeded,
    LoginFailed,
    LoginLocked,
    Logout,
    EntraSourceSaved,
    SyncRequested,
    RemovalsApplied,
    RemovalsDiscarded,
    ConfigurationCreated,
    ConfigurationUpdated,
    ConfigurationDeleted,
    LocalUserCreated,
    LocalUserUpdated,
    LocalUserDisabled,
    LocalUserEnabled,
    LocalUserDeleted,
    SmtpSettingsSaved,
    TestMailSent,
    IdpSaved,
    IdpEnabled,
    IdpDisabled,
    IdpCertificateAdded,
    IdpCertificateRemoved,
    SsoSignIn,
    SsoRefused,
    InvitationSent,
    InvitationRevoked,
    UserRegistered,
    RegistrationRefused,
    InvitationSettingsSaved,
}

impl AuditAction {
    /// The stable name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SetupCompleted => "setup.completed",
            Self::AdminCreated => "admin.created",
            Self::LoginSucceeded => "auth.login_succeeded",
            Self::LoginFailed => "auth.login_failed",
            Self::LoginLocked => "auth.login_locked",
            Self::Logout => "auth.logout",
            Self::EntraSourceSaved => "settings.entra_source_saved",
            Self::SyncRequested => "sync.requested",
            Self::RemovalsApplied => "sync.removals_applied",
            Self::RemovalsDiscarded => "sync.removals_discarded",
            Self::ConfigurationCreated => "configuration.created",
            Self::ConfigurationUpdated => "configuration.updated",
            Self::ConfigurationDeleted => "configuration.deleted",
            Self::LocalUserCreated => "user.local_created",
            Self::LocalUserUpdated => "user.local_updated",
            Self::LocalUserDisabled => "user.local_disabled",
            Self::LocalUserEnabled => "user.local_enabled",
            Self::LocalUserDeleted => "user.local_deleted",
            Self::SmtpSettingsSaved => "mail.smtp_settings_saved",
            Self::TestMailSent => "mail.test_sent",
            Self::IdpSaved => "identity.saved",
            Self::IdpEnabled => "identity.enabled",
            Self::IdpDisabled => "identity.disabled",
            Self::IdpCertificateAdded => "identity.certificate_added",
            Self::IdpCertificateRemoved => "identity.certificate_removed",
            Self::SsoSignIn => "identity.sign_in",
            Self::SsoRefused => "identity.sign_in_refused",
            Self::InvitationSent => "invitation.sent",
            Self::InvitationRevoked => "invitation.revoked",
            Self::UserRegistered => "user.registered",
            Self::RegistrationRefused => "invitation.registration_refused",
            Self::InvitationSettingsSaved => "invitation.settings_saved",
        }
    }

    /// What the audit page shows.
    pub fn label(name: &str) -> &str {
        match name {
            "setup.completed" => "First-run setup completed",
            "admin.created" => "Admin account created",
            "auth.login_succeeded" => "Signed in",
            "auth.login_failed" => "Sign-in failed",
            "auth.login_locked" => "Sign-in refused (too many failures)",
            "auth.logout" => "Signed out",
            "settings.entra_source_saved" => "Entra ID User Source saved",
            "sync.requested" => "Sync requested",
            "sync.removals_applied" => "Held removals applied",
            "sync.removals_discarded" => "Held removals discarded",
            "configuration.created" => "Configuration created",
            "configuration.updated" => "Configuration updated",
            "configuration.deleted" => "Configuration deleted",
            "user.local_created" => "Local user created",
            "user.local_updated" => "Local user updated",
            "user.local_disabled" => "Local user disabled",
            "user.local_enabled" => "Local user enabled",
            "user.local_deleted" => "Local user deleted",
            "mail.smtp_settings_saved" => "SMTP settings saved",
            "mail.test_sent" => "Test email sent",
            "identity.saved" => "Identity provider saved",
            "identity.enabled" => "Identity provider enabled",
            "identity.disabled" => "Identity provider disabled",
            "identity.certificate_added" => "IdP signing certificate added",
            "identity.certificate_removed" => "IdP signing certificate removed",
            "identity.sign_in" => "Signed in through the identity provider",
            "identity.sign_in_refused" => "Identity provider sign-in refused",
            "invitation.sent" => "Invitation sent",
            "invitation.revoked" => "Invitation revoked",
            "user.registered" => "User registered",
            "invitation.registration_refused" => "Registration refused",
            "invitation.settings_saved" => "Invitation template saved",
            other => other,
        }
    }
}

/// Who did it.
#[derive(Debug, Clone)]
pub enum Actor {
    Admin {
        id: String,
        name: String,
    },
    Anonymous,
    /// The command line or the system itself.
    System,
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: Millis,
    pub actor: Actor,
    pub action: AuditAction,
    pub target_kind: Option<&'static str>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub details: Value,
}

impl AuditEvent {
    pub fn new(at: Millis, actor: Actor, action: AuditAction) -> Self {
        Self {
            at,
            actor,
            action,
            target_kind: None,
            target_id: None,
            ip: None,
            request_id: None,
            details: json!({}),
        }
    }

    pub fn target(mut self, kind: &'static str, id: impl Into<String>) -> Self {
        self.target_kind = Some(kind);
        self.target_id = Some(id.into());
        self
    }

    pub fn from_request(mut self, meta: &RequestMeta) -> Self {
        self.ip = Some(meta.ip.clone());
        self.request_id.clone_from(&meta.request_id);
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    // Named constructors for the events this area records.

    pub fn admin_created(
        at: Millis,
        actor: Actor,
        admin_id: &str,
        username: &str,
        via: &str,
    ) -> Self {
        Self::new(at, actor, AuditAction::AdminCreated)
            .target("admin", admin_id)
            .details(json!({ "username": username, "via": via }))
    }

    pub fn login_failed(at: Millis, username: &str, reason: &str) -> Self {
        Self::new(at, Actor::Anonymous, AuditAction::LoginFailed)
            .details(json!({ "username": username, "reason": reason }))
    }
}
