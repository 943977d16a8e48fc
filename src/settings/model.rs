//! The Entra ID user source's settings as typed values, their validation, and the Managed Apple ID rule.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::FieldErrors;

/// The id of the one Entra ID user source (the table allows more later).
pub const ENTRA_SOURCE_ID: &str = "entra";

/// Sync intervals offered by the page, in minutes, with their labels.
pub const SYNC_INTERVALS: &[(i64, &str)] = &[
    (15, "15 min"),
    (30, "30 min"),
    (60, "1 h"),
    (120, "2 h"),
    (240, "4 h"),
    (480, "8 h"),
    (720, "12 h"),
    (1440, "24 h"),
];

/// Variable names the product defines itself; a custom attribute may not take one (any case).
pub const RESERVED_VARIABLES: &[&str] = &[
    "userEmailAddress",
    "userUPN",
    "userUID",
    "userFirstName",
    "userLastName",
    "userDisplayName",
    "userId",
    "managedAppleId",
    "registrationLink",
];

/// User properties Graph refuses on collections (501 Not Implemented), so they cannot be synced.
const NOT_ON_COLLECTIONS: &[&str] = &[
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "skills",
    "mailboxSettings",
];

/// Which Microsoft cloud the tenant lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cloud {
    Global,
    UsGov,
    China,
    /// Explicit authority and Graph base URLs (how tests and the demo reach the emulator).
    Custom {
        authority: String,
        graph: String,
    },
}

impl Cloud {
    pub fn key(&self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::UsGov => "usgov",
            Self::China => "china",
            Self::Custom { .. } => "custom",
        }
    }

    /// Base URL of the token authority, e.g. `https://login.microsoftonline.com`.
    pub fn authority(&self) -> &str {
        match self {
            Self::Global => "https://login.microsoftonline.com",
            Self::UsGov => "https://login.microsoftonline.us",
            Self::China => "https://login.partner.microsoftonline.cn",
            Self::Custom { authority, .. } => authority,
        }
    }

    /// Base URL of Microsoft Graph, e.g. `https://graph.microsoft.com`.
    pub fn graph(&self) -> &str {
        match self {
            Self::Global => "https://graph.microsoft.com",
            Self::UsGov => "https://graph.microsoft.us",
            Self::China => "https://microsoftgraph.chinacloudapi.cn",
            Self::Custom { graph, .. } => graph,
        }
    }
}

/// Where a user's Managed Apple ID comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppleIdMode {
    None,
    Email,
    Upn,
}

impl AppleIdMode {
    pub fn key(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Email => "email",
            Self::Upn => "upn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "email" => Some(Self::Email),
            "upn" => Some(Self::Upn),
            _ => None,
        }
    }
}

/// A custom attribute: a variable name and the Entra ID property it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomAttribute {
    pub name: String,
    pub property: String,
}

impl CustomAttribute {
    /// The `$select` entry that brings this property back.
    pub fn select_key(&self) -> &str {
        self.property.split('.').next().unwrap_or(&self.property)
    }

    /// Reads this attribute from a Graph user object: `department`, or a dotted path such as
    /// `onPremisesExtensionAttributes.extensionAttribute7`. Strings as they are, numbers and booleans as
    /// text, arrays joined with ", "; null or missing is `None`.
    pub fn read(&self, user: &serde_json::Value) -> Option<String> {
        let mut v = user;
        for seg in self.property.split('.') {
            v = v.get(seg)?;
        }
        json_text(v)
    }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(json_text).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        Value::Object(_) => Some(v.to_string()),
    }
}

/// The settings of the Entra ID user source, as stored (the secret stays sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraSettings {
    pub name: String,
    pub enabled: bool,
    pub sync_interval_minutes: i64,
    pub auto_invite: bool,
    pub tenant_id: String,
    pub client_id: String,
    pub cloud: Cloud,
    pub apple_id_mode: AppleIdMode,
    pub apple_id_subdomain: bool,
    pub custom_attributes: Vec<CustomAttribute>,
    /// Deletion safety: a round that would mark more than this share of users not synced (percent) …
    pub removal_guard_percent: i64,
    /// … and at least this many, holds those removals for an admin's decision.
    pub removal_guard_min: i64,
}

impl EntraSettings {
    /// Derives a user's Managed Apple ID: `jane@contoso.com` → `jane@appleid.contoso.com` with the
    /// subdomain option; `None` when the mode is None or the source value is missing or not an address.
    pub fn managed_apple_id(&self, mail: Option<&str>, upn: &str) -> Option<String> {
        let source = match self.apple_id_mode {
            AppleIdMode::None => return None,
            AppleIdMode::Email => mail?,
            AppleIdMode::Upn => upn,
        };
        let (local, domain) = source.trim().rsplit_once('@')?;
        if local.is_empty() || domain.is_empty() {
            return None;
        }
        let domain = domain.to_ascii_lowercase();
        Some(
            if self.apple_id_subdomain && !domain.starts_with("appleid.") {
                format!("{local}@appleid.{domain}")
            } else {
                format!("{local}@{domain}")
            },
        )
    }

    /// Graph `$select` for users: the built-in properties plus every custom attribute's property.
    pub fn user_select(&self) -> Vec<String> {
        let mut out: Vec<String> = BUILTIN_USER_PROPERTIES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        for a in &self.custom_attributes {
            let key = a.select_key().to_owned();
            if !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }
}

/// What every sync reads about a user.
pub const BUILTIN_USER_PROPERTIES: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "givenName",
    "surname",
    "displayName",
    "jobTitle",
    "department",
    "accountEnabled",
];

/// One custom-attribute row as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeRow {
    pub name: String,
    pub property: String,
}

/// Errors of one custom-attribute row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeRowErrors {
    pub name: Option<String>,
    pub property: Option<String>,
}

/// Everything the form sends, as typed (strings kept so the form re-renders them).
#[derive(Debug, Clone, Default)]
pub struct EntraForm {
    pub name: String,
    pub enabled: bool,
    pub sync_interval: String,
    pub auto_invite: bool,
    pub tenant_id: String,
    pub client_id: String,
    /// Empty keeps the stored secret.
    pub client_secret: String,
    pub cloud: String,
    pub authority_url: String,
    pub graph_url: String,
    pub apple_id_mode: String,
    pub apple_id_subdomain: bool,
    pub removal_guard_percent: String,
    pub removal_guard_min: String,
    pub attributes: Vec<AttributeRow>,
}

/// Validation result: field errors plus per-row errors for custom attributes.
#[derive(Debug, Default)]
pub struct FormErrors {
    pub fields: FieldErrors,
    pub rows: Vec<AttributeRowErrors>,
}

impl FormErrors {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
            && self
                .rows
                .iter()
                .all(|r| r.name.is_none() && r.property.is_none())
    }
}

pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks an Entra ID property path; `Err` says what is wrong.
pub fn check_property(p: &str) -> Result<(), String> {
    if let Some(rest) = p.strip_prefix("onPremisesExtensionAttributes.") {
        let ok = rest
            .strip_prefix("extensionAttribute")
            .is_some_and(|n| (1..=15).any(|i: u8| i.to_string() == n));
        return if ok {
            Ok(())
        } else {
            Err(
                "Use onPremisesExtensionAttributes.extensionAttribute1 to …extensionAttribute15."
                    .into(),
            )
        };
    }
    if let Some(rest) = p.strip_prefix("extension_") {
        let ok = rest.split_once('_').is_some_and(|(app, name)| {
            app.len() == 32
                && app.chars().all(|c| c.is_ascii_hexdigit())
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        return if ok {
            Ok(())
        } else {
            Err("A directory extension looks like extension_<application id without dashes, 32 hex digits>_<name>.".into())
        };
    }
    if p.is_empty() {
        return Err("Enter the Entra ID property this attribute reads, e.g. department.".into());
    }
    if !p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        || !p.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(
            "Use a user property name such as department, onPremisesExtensionAttributes.extensionAttribute7 or extension_<appid>_<name>."
                .into(),
        );
    }
    if NOT_ON_COLLECTIONS.contains(&p) {
        return Err(format!(
            "Microsoft Graph cannot return {p} when listing users, so it cannot be synced."
        ));
    }
    Ok(())
}

fn check_url(raw: &str, label: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!("Enter the {label}."));
    }
    let url = Url::parse(raw).map_err(|_| {
        format!(
            "Enter a full URL such as https://{}.",
            if label.starts_with("Graph") {
                "graph.microsoft.com"
            } else {
                "login.microsoftonline.com"
            }
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if !loopback {
                return Err("Use https://; plain http:// is accepted only for this machine (127.0.0.1, localhost).".into());
            }
        }
        _ => return Err("Use an https:// URL.".into()),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("Give the base URL only, without a query, fragment or credentials.".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl EntraForm {
    /// Validates the form into settings. `has_stored_secret` says whether an empty secret field is fine.
    pub fn validate(&self, has_stored_secret: bool) -> Result<EntraSettings, FormErrors> {
        let mut e = FormErrors::default();
        let name = self.name.trim();
        if name.is_empty() {
            e.fields.insert(
                "name",
                "Enter a name for this Entra ID, e.g. Contoso.".into(),
            );
        } else if name.chars().count() > 100 {
            e.fields
                .insert("name", "Use at most 100 characters.".into());
        }
        let interval = self
            .sync_interval
            .parse::<i64>()
            .ok()
            .filter(|m| SYNC_INTERVALS.iter().any(|(v, _)| v == m));
        if interval.is_none() {
            e.fields.insert(
                "sync_interval",
                "Choose one of the listed intervals.".into(),
            );
        }
        let tenant = self.tenant_id.trim().to_ascii_lowercase();
        if !is_guid(&tenant) {
            e.fields.insert(
                "tenant_id",
                "Enter the Directory (tenant) ID: a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47 (Entra admin center > Overview).".into(),
            );
        }
        let client = self.client_id.trim().to_ascii_lowercase();
        if !is_guid(&client) {
            e.fields.insert(
                "client_id",
                "Enter the Application (client) ID: a GUID from the app registration's Overview page.".into(),
            );
        }
        if self.client_secret.is_empty() && !has_stored_secret {
            e.fields.insert(
                "client_secret",
                "Enter the client secret's Value (not its Secret ID).".into(),
            );
        } else if self.client_secret.len() > 1024
            || self.client_secret.chars().any(char::is_control)
        {
            e.fields.insert(
                "client_secret",
                "This does not look like a client secret value.".into(),
            );
        }
        let cloud = match self.cloud.as_str() {
            "global" => Some(Cloud::Global),
            "usgov" => Some(Cloud::UsGov),
            "china" => Some(Cloud::China),
            "custom" => {
                let a = check_url(&self.authority_url, "Authority URL");
                let g = check_url(&self.graph_url, "Graph URL");
                if let Err(m) = &a {
                    e.fields.insert("authority_url", m.clone());
                }
                if let Err(m) = &g {
                    e.fields.insert("graph_url", m.clone());
                }
                match (a, g) {
                    (Ok(authority), Ok(graph)) => Some(Cloud::Custom { authority, graph }),
                    _ => None,
                }
            }
            _ => {
                e.fields.insert("cloud", "Choose a cloud.".into());
                None
            }
        };
        let guard_percent = self
            .removal_guard_percent
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|p| (1..=100).contains(p));
        if guard_percent.is_none() {
            e.fields.insert(
                "removal_guard_percent",
                "Enter a whole percentage from 1 to 100.".into(),
            );
        }
        let guard_min = self
            .removal_guard_min
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n));
        if guard_min.is_none() {
            e.fields.insert(
                "removal_guard_min",
                "Enter a number of users from 1 to 1,000,000.".into(),
            );
        }
        let apple = AppleIdMode::parse(&self.apple_id_mode);
        if apple.is_none() {
            e.fields
                .insert("apple_id_mode", "Choose None or a pattern.".into());
        }
        let mut attrs = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for row in &self.attributes {
            let n = row.name.trim();
            let p = row.property.trim();
            let mut re = AttributeRowErrors::default();
            if n.is_empty() && p.is_empty() {
                e.rows.push(re);
                continue;
            }
            if n.is_empty() {
                re.name = Some("Enter a variable name.".into());
            } else if !is_variable_name(n) || n.len() > 64 {
                re.name = Some(
                    "Start with a letter; use letters, digits and _ only (at most 64).".into(),
                );
            } else if RESERVED_VARIABLES.iter().any(|r| r.eq_ignore_ascii_case(n)) {
                re.name = Some(format!(
                    "${{{n}}} is a built-in variable; choose another name."
                ));
            } else if seen.iter().any(|s| s.eq_ignore_ascii_case(n)) {
                re.name = Some("Another custom attribute already uses this name.".into());
            }
            if let Err(m) = check_property(p) {
                re.property = Some(m);
            }
            seen.push(n.to_owned());
            if re.name.is_none() && re.property.is_none() {
                attrs.push(CustomAttribute {
                    name: n.to_owned(),
                    property: p.to_owned(),
                });
            }
            e.rows.push(re);
        }
        match (e.is_empty(), interval, cloud, apple) {
            (true, Some(interval), Some(cloud), Some(apple)) => Ok(EntraSettings {
                name: name.to_owned(),
                enabled: self.enabled,
                sync_interval_minutes: interval,
                auto_invite: self.auto_invite,
                tenant_id: tenant,
                client_id: client,
                cloud,
                apple_id_mode: apple,
                apple_id_subdomain: self.apple_id_subdomain,
                custom_attributes: attrs,
                removal_guard_percent: guard_percent.unwrap_or(10),
                removal_guard_min: guard_min.unwrap_or(20),
            }),
            _ => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> EntraForm {
        EntraForm {
            name: "Contoso".into(),
            enabled: true,
            sync_interval: "60".into(),
            auto_invite: false,
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: "s3cr3t~value".into(),
            cloud: "global".into(),
            authority_url: String::new(),
            graph_url: String::new(),
            apple_id_mode: "email".into(),
            apple_id_subdomain: true,
            removal_guard_percent: "10".into(),
            removal_guard_min: "20".into(),
            attributes: vec![
                AttributeRow {
                    name: "costCenter".into(),
                    property: "extension_b7d8e648520f41d3b9c0fdeb91768a0a_costCenter".into(),
                },
                AttributeRow {
                    name: "badge".into(),
                    property: "onPremisesExtensionAttributes.extensionAttribute7".into(),
                },
                AttributeRow::default(),
            ],
        }
    }

    #[test]
    fn a_valid_form_becomes_settings() {
        let s = valid().validate(false).unwrap();
        assert_eq!(s.custom_attributes.len(), 2, "empty rows are dropped");
        assert_eq!(s.cloud.graph(), "https://graph.microsoft.com");
        assert_eq!(
            s.user_select(),
            vec![
                "id",
                "userPrincipalName",
                "mail",
                "givenName",
                "surname",
                "displayName",
                "jobTitle",
                "department",
                "accountEnabled",
                "extension_b7d8e648520f41d3b9c0fdeb91768a0a_costCenter",
                "onPremisesExtensionAttributes"
            ]
        );
    }

    #[test]
    fn each_field_explains_its_error() {
        let mut f = valid();
        f.name = " ".into();
        f.sync_interval = "7".into();
        f.tenant_id = "contoso.onmicrosoft.com".into();
        f.client_id = "1234".into();
        f.client_secret = String::new();
        f.cloud = "custom".into();
        f.authority_url = "http://login.example.com".into();
        f.graph_url = "not a url".into();
        f.attributes = vec![
            AttributeRow {
                name: "1bad".into(),
                property: "department".into(),
            },
            AttributeRow {
                name: "userUPN".into(),
                property: "department".into(),
            },
            AttributeRow {
                name: "dept".into(),
                property: "skills".into(),
            },
            AttributeRow {
                name: "Dept".into(),
                property: "onPremisesExtensionAttributes.extensionAttribute16".into(),
            },
            AttributeRow {
                name: "x".into(),
                property: "extension_123_name".into(),
            },
        ];
        let e = f.validate(false).unwrap_err();
        for k in [
            "name",
            "sync_interval",
            "tenant_id",
            "client_id",
            "client_secret",
            "authority_url",
            "graph_url",
        ] {
            assert!(e.fields.contains_key(k), "{k}: {:?}", e.fields);
        }
        assert!(e.rows[0].name.is_some());
        assert!(e.rows[1].name.as_deref().unwrap().contains("built-in"));
        assert!(
            e.rows[2]
                .property
                .as_deref()
                .unwrap()
                .contains("cannot be synced")
        );
        assert!(e.rows[3].name.as_deref().unwrap().contains("already uses"));
        assert!(e.rows[3].property.is_some());
        assert!(e.rows[4].property.is_some());
        // A stored secret makes an empty field fine.
        let mut ok = valid();
        ok.client_secret = String::new();
        assert!(ok.validate(true).is_ok());
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(check_url("http://127.0.0.1:9000", "Graph URL").is_ok());
        assert!(check_url("http://localhost:9000/", "Graph URL").is_ok());
        assert!(check_url("http://[::1]:9000", "Graph URL").is_ok());
        assert!(check_url("http://10.0.0.1", "Graph URL").is_err());
        assert!(
            check_url("https://graph.example.com/", "Graph URL").unwrap()
                == "https://graph.example.com"
        );
    }

    #[test]
    fn property_paths() {
        for ok in [
            "department",
            "employeeId",
            "onPremisesExtensionAttributes.extensionAttribute1",
            "onPremisesExtensionAttributes.extensionAttribute15",
            "extension_b7d8e648520f41d3b9c0fdeb91768a0a_job_Group",
        ] {
            assert!(check_property(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "dept.name",
            "on-prem",
            "onPremisesExtensionAttributes.extensionAttribute0",
            "onPremisesExtensionAttributes.extensionAttribute07",
            "onPremisesExtensionAttributes.extensionAttribute",
            "extension_b7d8e648520f41d3b9c0fdeb91768a0a_",
            "mailboxSettings",
        ] {
            assert!(check_property(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn managed_apple_id_follows_the_pattern() {
        let mut s = valid().validate(false).unwrap();
        assert_eq!(
            s.managed_apple_id(Some("jane@Contoso.com"), "j@x.com")
                .as_deref(),
            Some("jane@appleid.contoso.com")
        );
        s.apple_id_subdomain = false;
        assert_eq!(
            s.managed_apple_id(Some("jane@contoso.com"), "j@x.com")
                .as_deref(),
            Some("jane@contoso.com")
        );
        assert_eq!(
            s.managed_apple_id(None, "j@x.com"),
            None,
            "no mail, no Apple ID"
        );
        s.apple_id_mode = AppleIdMode::Upn;
        s.apple_id_subdomain = true;
        assert_eq!(
            s.managed_apple_id(None, "j.doe@contoso.com").as_deref(),
            Some("j.doe@appleid.contoso.com")
        );
        assert_eq!(
            s.managed_apple_id(None, "j.doe@appleid.contoso.com")
                .as_deref(),
            Some("j.doe@appleid.contoso.com")
        );
        s.apple_id_mode = AppleIdMode::None;
        assert_eq!(
            s.managed_apple_id(Some("jane@contoso.com"), "j@x.com"),
            None
        );
    }

    #[test]
    fn attributes_read_from_graph_json() {
        let u = serde_json::json!({
            "department": "Sales",
            "onPremisesExtensionAttributes": {"extensionAttribute7": "B-17", "extensionAttribute8": null},
            "extension_b7d8e648520f41d3b9c0fdeb91768a0a_level": 3,
            "otherMails": ["a@x", "b@x"]
        });
        let a = |p: &str| {
            CustomAttribute {
                name: "x".into(),
                property: p.into(),
            }
            .read(&u)
        };
        assert_eq!(a("department").as_deref(), Some("Sales"));
        assert_eq!(
            a("onPremisesExtensionAttributes.extensionAttribute7").as_deref(),
            Some("B-17")
        );
        assert_eq!(a("onPremisesExtensionAttributes.extensionAttribute8"), None);
        assert_eq!(
            a("extension_b7d8e648520f41d3b9c0fdeb91768a0a_level").as_deref(),
            Some("3")
        );
        assert_eq!(a("otherMails").as_deref(), Some("a@x, b@x"));
        assert_eq!(a("jobTitle"), None);
    }
}
