//! The identity area's types: the three kinds of IdP, their settings, and the forms that edit them.

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;

/// The three ways to set up sign-in, as in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdpKind {
    /// Entra ID over OpenID Connect.
    Entra,
    /// On-premises AD FS over SAML 2.0.
    Adfs,
    /// Any SAML 2.0 IdP.
    Saml,
}

pub const ALL_KINDS: [IdpKind; 3] = [IdpKind::Entra, IdpKind::Adfs, IdpKind::Saml];

impl IdpKind {
    /// The stored key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Entra => "entra",
            Self::Adfs => "adfs",
            Self::Saml => "saml",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        ALL_KINDS.into_iter().find(|k| k.key() == key)
    }

    /// The path segment of its setup page: `/admin/identity/{slug}`.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Entra => "entra",
            Self::Adfs => "onprem",
            Self::Saml => "generic",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        ALL_KINDS.into_iter().find(|k| k.slug() == slug)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Entra => "Entra ID",
            Self::Adfs => "AD FS (on-premises)",
            Self::Saml => "Generic SAML 2.0 IdP",
        }
    }

    /// The console's name for its setup page.
    pub fn setup_title(self) -> &'static str {
        match self {
            Self::Entra => "Entra ID",
            Self::Adfs => "On-Prem IdP Setup",
            Self::Saml => "Generic IdP Setup",
        }
    }

    pub fn is_saml(self) -> bool {
        !matches!(self, Self::Entra)
    }
}

/// Stored settings of Entra ID over OpenID Connect (the client secret is sealed in its own column).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcSettings {
    pub tenant_id: String,
    pub client_id: String,
    /// `global`, `usgov`, `china` or `custom`.
    pub cloud: String,
    /// For `custom`: the issuer/authority URL whose `/.well-known/openid-configuration` is read.
    pub issuer_url: String,
}

impl OidcSettings {
    /// The authority whose discovery document is read: `{login host}/{tenant}/v2.0`, or the custom issuer.
    pub fn authority(&self) -> String {
        let host = match self.cloud.as_str() {
            "usgov" => "https://login.microsoftonline.us",
            "china" => "https://login.partner.microsoftonline.cn",
            "custom" => return self.issuer_url.trim_end_matches('/').to_owned(),
            _ => "https://login.microsoftonline.com",
        };
        format!("{host}/{}/v2.0", self.tenant_id)
    }

    /// Tenants whose tokens are accepted: the configured one when it is a GUID (for `common` or
    /// `organizations` any tenant is accepted, as the admin chose a multi-tenant authority).
    pub fn allowed_tenants(&self) -> Vec<String> {
        if is_guid(&self.tenant_id) {
            vec![self.tenant_id.to_ascii_lowercase()]
        } else {
            Vec::new()
        }
    }
}

/// Stored settings of a SAML IdP (AD FS or generic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlSettings {
    pub entity_id: String,
    pub sso_url: String,
    /// The attribute that names the user; NameID is the fallback.
    pub match_attribute: String,
    pub clock_skew_secs: i64,
}

pub const UPN_CLAIM: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";
pub const DEFAULT_SKEW_SECS: i64 = 180;

impl Default for SamlSettings {
    fn default() -> Self {
        Self {
            entity_id: String::new(),
            sso_url: String::new(),
            match_attribute: UPN_CLAIM.into(),
            clock_skew_secs: DEFAULT_SKEW_SECS,
        }
    }
}

pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// What the Entra ID form posts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntraIdpForm {
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub issuer_url: String,
    #[serde(default)]
    pub use_for_admin: Option<String>,
    #[serde(default)]
    pub use_for_registration: Option<String>,
}

impl EntraIdpForm {
    /// Checks the fields; the secret is required only when none is stored.
    pub fn validate(&self, has_secret: bool) -> Result<OidcSettings, FieldErrors> {
        let mut e = FieldErrors::new();
        let tenant = self.tenant_id.trim();
        let cloud = self.cloud.trim();
        if !matches!(cloud, "global" | "usgov" | "china" | "custom") {
            e.insert("cloud", "Choose a cloud.".into());
        }
        if cloud != "custom" {
            let named = matches!(tenant, "common" | "organizations");
            if tenant.is_empty() {
                e.insert("tenant_id", "Enter the Directory (tenant) ID.".into());
            } else if !is_guid(tenant) && !named && !is_domain(tenant) {
                e.insert(
                    "tenant_id",
                    "Enter the tenant ID as a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), a verified domain, \
                     or \"organizations\"."
                        .into(),
                );
            }
        }
        if self.client_id.trim().is_empty() {
            e.insert("client_id", "Enter the Application (client) ID.".into());
        } else if !is_guid(self.client_id.trim()) && cloud != "custom" {
            e.insert(
                "client_id",
                "The Application (client) ID is a GUID: copy it from the app registration's Overview.".into(),
            );
        }
        if self.client_secret.is_empty() && !has_secret {
            e.insert(
                "client_secret",
                "Enter the client secret (its Value, not its ID).".into(),
            );
        }
        let issuer = self.issuer_url.trim();
        if cloud == "custom" {
            match url::Url::parse(issuer) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    e.insert(
                        "issuer_url",
                        "Enter the issuer URL, e.g. https://login.example.com/tenant/v2.0.".into(),
                    );
                }
            }
        }
        if !e.is_empty() {
            return Err(e);
        }
        Ok(OidcSettings {
            tenant_id: tenant.to_owned(),
            client_id: self.client_id.trim().to_owned(),
            cloud: cloud.to_owned(),
            issuer_url: if cloud == "custom" {
                issuer.to_owned()
            } else {
                String::new()
            },
        })
    }
}

fn is_domain(s: &str) -> bool {
    s.contains('.')
        && s.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// What the AD FS and generic SAML forms post.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamlIdpForm {
    #[serde(default)]
    pub metadata_url: String,
    #[serde(default)]
    pub metadata_xml: String,
    #[serde(default)]
    pub entity_id: String,
    #[serde(default)]
    pub sso_url: String,
    #[serde(default)]
    pub certificates: String,
    #[serde(default)]
    pub match_attribute: String,
    #[serde(default)]
    pub clock_skew_secs: String,
    #[serde(default)]
    pub use_for_admin: Option<String>,
    #[serde(default)]
    pub use_for_registration: Option<String>,
}

/// Where a SAML IdP's description comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlSource {
    MetadataUrl(String),
    MetadataXml(String),
    Manual,
}

impl SamlIdpForm {
    /// Checks the fields that do not need the metadata; returns the source to read.
    pub fn source(&self) -> SamlSource {
        if !self.metadata_xml.trim().is_empty() {
            SamlSource::MetadataXml(self.metadata_xml.trim().to_owned())
        } else if !self.metadata_url.trim().is_empty() {
            SamlSource::MetadataUrl(self.metadata_url.trim().to_owned())
        } else {
            SamlSource::Manual
        }
    }

    pub fn match_attribute(&self) -> String {
        let a = self.match_attribute.trim();
        if a.is_empty() {
            UPN_CLAIM.to_owned()
        } else {
            a.to_owned()
        }
    }

    pub fn skew(&self, e: &mut FieldErrors) -> i64 {
        let raw = self.clock_skew_secs.trim();
        if raw.is_empty() {
            return DEFAULT_SKEW_SECS;
        }
        match raw.parse::<i64>() {
            Ok(n) if (0..=900).contains(&n) => n,
            _ => {
                e.insert(
                    "clock_skew_secs",
                    "Enter the allowed clock skew in seconds, from 0 to 900 (default 180).".into(),
                );
                DEFAULT_SKEW_SECS
            }
        }
    }
}

/// Checks an `http(s)` URL field.
pub fn check_url(e: &mut FieldErrors, field: &'static str, value: &str, what: &str) {
    match url::Url::parse(value.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            e.insert(field, format!("Enter {what} as an https:// URL."));
        }
    }
}

/// What a sign-in through the IdP is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Signing an admin in to the portal.
    Admin,
    /// An invited user registering.
    Register,
    /// An admin's "Test sign-in": shows what came back, signs nobody in.
    Test,
}

impl Purpose {
    pub fn key(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Register => "register",
            Self::Test => "test",
        }
    }

    pub fn from_key(k: &str) -> Option<Self> {
        match k {
            "admin" => Some(Self::Admin),
            "register" => Some(Self::Register),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_per_cloud() {
        let mut s = OidcSettings {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "x".into(),
            cloud: "global".into(),
            issuer_url: String::new(),
        };
        assert_eq!(
            s.authority(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
        );
        s.cloud = "custom".into();
        s.issuer_url = "http://127.0.0.1:9/op/".into();
        assert_eq!(s.authority(), "http://127.0.0.1:9/op");
    }

    #[test]
    fn entra_form_reports_each_field() {
        let f = EntraIdpForm {
            cloud: "global".into(),
            tenant_id: "not a tenant".into(),
            client_id: "nope".into(),
            ..Default::default()
        };
        let e = f.validate(false).unwrap_err();
        assert!(e.contains_key("tenant_id"));
        assert!(e.contains_key("client_id"));
        assert!(e.contains_key("client_secret"));
        let ok = EntraIdpForm {
            cloud: "global".into(),
            tenant_id: "organizations".into(),
            client_id: "6731de76-14a6-49ae-97bc-6eba6914391e".into(),
            ..Default::default()
        };
        assert!(ok.validate(true).is_ok());
        assert!(ok.validate(true).unwrap().allowed_tenants().is_empty());
    }
}
