//! Configurations as typed values: the three kinds and their fields, form validation with field errors,
//! the variables a user has, resolving a configuration for a user, and custom-attribute rename detection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::configurations::substitute::{self, SubstitutionError, Values};
use crate::error::FieldErrors;
use crate::settings::model::CustomAttribute;

/// Built-in variables, with what each holds (the form lists them).
pub const BUILTIN_VARIABLES: &[(&str, &str)] = &[
    ("userEmailAddress", "email address"),
    ("userUPN", "user principal name"),
    ("userUID", "the UPN's part before @"),
    ("userFirstName", "first name"),
    ("userLastName", "last name"),
    ("userDisplayName", "display name"),
    ("userId", "Entra ID object id (local id for local users)"),
    ("managedAppleId", "Managed Apple ID"),
];

/// Longest text a field accepts.
const MAX_TEXT: usize = 1000;

/// The kind of a configuration; stored in the `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exchange,
    Wifi,
    Custom,
}

impl Kind {
    pub const ALL: [Self; 3] = [Self::Wifi, Self::Exchange, Self::Custom];

    pub fn key(self) -> &'static str {
        match self {
            Self::Exchange => "exchange",
            Self::Wifi => "wifi",
            Self::Custom => "custom",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Exchange => "Exchange ActiveSync",
            Self::Wifi => "Wi-Fi",
            Self::Custom => "Custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exchange" => Some(Self::Exchange),
            "wifi" => Some(Self::Wifi),
            "custom" => Some(Self::Custom),
            _ => None,
        }
    }
}

/// Personal (a shared password) or Enterprise (802.1X with the user's credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WifiSecurity {
    Personal,
    Enterprise,
}

/// Apple's `EncryptionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encryption {
    #[serde(rename = "WPA2")]
    Wpa2,
    #[serde(rename = "WPA3")]
    Wpa3,
    Any,
}

impl Encryption {
    pub fn key(self) -> &'static str {
        match self {
            Self::Wpa2 => "WPA2",
            Self::Wpa3 => "WPA3",
            Self::Any => "Any",
        }
    }
}

/// The EAP method of an enterprise network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EapMethod {
    Peap,
    Ttls,
}

impl EapMethod {
    /// The IANA EAP type number Apple's `AcceptEAPTypes` takes.
    pub fn eap_type(self) -> i64 {
        match self {
            Self::Peap => 25,
            Self::Ttls => 21,
        }
    }
}

/// Exchange ActiveSync account (`com.apple.eas.account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// Accepts variables.
    pub account_name: String,
    pub host: String,
    pub ssl: bool,
    /// Accepts variables.
    pub email_address: String,
    /// Accepts variables.
    pub user_name: String,
    /// `MailNumberOfPastDaysToSync`; 0 = no limit.
    pub past_days: i64,
}

/// Wi-Fi network (`com.apple.wifi.managed`). The Personal password is sealed apart from these fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wifi {
    pub ssid: String,
    pub hidden: bool,
    pub auto_join: bool,
    pub security: WifiSecurity,
    pub encryption: Encryption,
    pub eap_method: EapMethod,
    /// Enterprise only; accepts variables.
    pub eap_username: String,
    /// Enterprise only, optional; accepts variables.
    pub outer_identity: String,
}

/// One key–value pair of a Custom configuration; the value accepts variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pair {
    pub key: String,
    pub value: String,
}

/// The typed fields of a configuration, stored as JSON TEXT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    Exchange(Exchange),
    Wifi(Wifi),
    Custom { pairs: Vec<Pair> },
}

impl Payload {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Exchange(_) => Kind::Exchange,
            Self::Wifi(_) => Kind::Wifi,
            Self::Custom { .. } => Kind::Custom,
        }
    }

    /// True when this configuration carries a sealed secret (a Wi-Fi Personal password).
    pub fn needs_secret(&self) -> bool {
        matches!(self, Self::Wifi(w) if w.security == WifiSecurity::Personal)
    }

    /// Every field that accepts variables, mutably, in form order. `all` includes fields the current
    /// choices do not use (the enterprise fields of a Personal network), so a rename reaches them too.
    fn var_fields_mut(&mut self, all: bool) -> Vec<&mut String> {
        match self {
            Self::Exchange(e) => vec![&mut e.account_name, &mut e.email_address, &mut e.user_name],
            Self::Wifi(w) => {
                if all || w.security == WifiSecurity::Enterprise {
                    vec![&mut w.eap_username, &mut w.outer_identity]
                } else {
                    Vec::new()
                }
            }
            Self::Custom { pairs } => pairs.iter_mut().map(|p| &mut p.value).collect(),
        }
    }

    /// The variables this configuration uses, each once, in form order.
    pub fn variables(&self) -> Vec<String> {
        let mut copy = self.clone();
        let mut out: Vec<String> = Vec::new();
        for f in copy.var_fields_mut(false) {
            for v in substitute::variables(f).unwrap_or_default() {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// A copy with every variable field resolved for one user, and the variables the user lacks.
    pub fn resolve(&self, values: &Values) -> Result<(Self, Vec<String>), SubstitutionError> {
        let mut out = self.clone();
        let mut missing: Vec<String> = Vec::new();
        for f in out.var_fields_mut(false) {
            let e = substitute::substitute(f, values)?;
            *f = e.text;
            for m in e.missing {
                if !missing.contains(&m) {
                    missing.push(m);
                }
            }
        }
        Ok((out, missing))
    }

    /// Rewrites `${from}` to `${to}` in every variable field; returns how many references changed.
    pub fn rename_variable(&mut self, from: &str, to: &str) -> usize {
        let mut n = 0;
        for f in self.var_fields_mut(true) {
            let (text, count) = substitute::rename(f, from, to);
            if count > 0 {
                *f = text;
                n += count;
            }
        }
        n
    }
}

/// The variables an admin may use: the built-ins, then the custom attributes.
pub fn known_variables(custom: &[CustomAttribute]) -> Vec<String> {
    BUILTIN_VARIABLES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .chain(custom.iter().map(|a| a.name.clone()))
        .collect()
}

/// What the directory knows about one user, for variables.
#[derive(Debug, Clone, Default)]
pub struct UserFacts {
    pub id: String,
    pub external_id: Option<String>,
    pub upn: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: String,
    pub managed_apple_id: Option<String>,
    pub custom: BTreeMap<String, String>,
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Every known variable's value for a user (`None` where the user has no value).
pub fn values_for(user: &UserFacts, custom_names: &[String]) -> Values {
    let uid = user
        .upn
        .rsplit_once('@')
        .map_or(user.upn.as_str(), |(local, _)| local);
    let mut v = Values::new();
    v.insert("userEmailAddress".into(), non_empty(user.mail.as_deref()));
    v.insert("userUPN".into(), non_empty(Some(&user.upn)));
    v.insert("userUID".into(), non_empty(Some(uid)));
    v.insert(
        "userFirstName".into(),
        non_empty(user.given_name.as_deref()),
    );
    v.insert("userLastName".into(), non_empty(user.surname.as_deref()));
    v.insert(
        "userDisplayName".into(),
        non_empty(Some(&user.display_name)),
    );
    v.insert(
        "userId".into(),
        Some(user.external_id.clone().unwrap_or_else(|| user.id.clone())),
    );
    v.insert(
        "managedAppleId".into(),
        non_empty(user.managed_apple_id.as_deref()),
    );
    for name in custom_names {
        v.insert(
            name.clone(),
            non_empty(user.custom.get(name).map(String::as_str)),
        );
    }
    v
}

/// A custom attribute renamed on the Entra ID User Source page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// Finds renames between the stored and the posted custom attributes: the old list had `A` reading
/// property `P`, the new list has no `A` but has a new name `B` reading the same `P`. When several removed
/// names or several new names share `P`, which became which is unclear, so nothing is renamed for `P`.
pub fn detect_renames(old: &[CustomAttribute], new: &[CustomAttribute]) -> Vec<Rename> {
    let removed: Vec<&CustomAttribute> = old
        .iter()
        .filter(|a| !new.iter().any(|b| b.name == a.name))
        .collect();
    let added: Vec<&CustomAttribute> = new
        .iter()
        .filter(|b| !old.iter().any(|a| a.name == b.name))
        .collect();
    let mut out = Vec::new();
    for a in &removed {
        let same_old: Vec<_> = removed
            .iter()
            .filter(|x| x.property == a.property)
            .collect();
        let same_new: Vec<_> = added.iter().filter(|b| b.property == a.property).collect();
        if let ([_], [b]) = (same_old.as_slice(), same_new.as_slice()) {
            out.push(Rename {
                from: a.name.clone(),
                to: b.name.clone(),
            });
        }
    }
    out
}

// ---- the form ----

/// One key–value row as typed, and its errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairRow {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairErrors {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// Everything the configuration form sends, as typed (kept so the form re-renders it).
#[derive(Debug, Clone, Default)]
pub struct ConfigForm {
    pub kind: String,
    pub name: String,
    // Exchange
    pub account_name: String,
    pub host: String,
    pub ssl: bool,
    pub email_address: String,
    pub user_name: String,
    pub past_days: String,
    // Wi-Fi
    pub ssid: String,
    pub hidden: bool,
    pub auto_join: bool,
    pub security: String,
    pub encryption: String,
    /// Write-only: empty keeps the stored password.
    pub password: String,
    pub eap_method: String,
    pub eap_username: String,
    pub outer_identity: String,
    // Custom
    pub pairs: Vec<PairRow>,
}

/// Field errors plus per-row errors of a Custom configuration.
#[derive(Debug, Default)]
pub struct FormErrors {
    pub fields: FieldErrors,
    pub rows: Vec<PairErrors>,
}

impl FormErrors {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
            && self
                .rows
                .iter()
                .all(|r| r.key.is_none() && r.value.is_none())
    }
}

/// A validated form: the name, the typed fields, and a new secret if one was typed.
#[derive(Debug, Clone)]
pub struct Validated {
    pub name: String,
    pub payload: Payload,
    pub new_password: Option<String>,
}

/// Past-days choices of an Exchange account (0 = no limit).
pub const PAST_DAYS: &[(i64, &str)] = &[
    (0, "No limit"),
    (1, "1 day"),
    (3, "3 days"),
    (7, "1 week"),
    (14, "2 weeks"),
    (31, "1 month"),
];

fn variable_error(e: &SubstitutionError) -> String {
    match e {
        SubstitutionError::UnknownVariable { name, offset } => format!(
            "Unknown variable ${{{name}}} at position {}. Use a built-in variable or a custom attribute from the Entra ID User Source page; write $${{ for a literal ${{.",
            offset + 1
        ),
        SubstitutionError::Unterminated { offset } => format!(
            "The variable starting at position {} has no closing }}. Write $${{ for a literal ${{.",
            offset + 1
        ),
    }
}

/// Checks a field that accepts variables; `Err` is the message for the field.
fn check_var_field(
    text: &str,
    required: Option<&str>,
    is_known: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    if text.trim().is_empty() {
        return match required {
            Some(msg) => Err(msg.to_owned()),
            None => Ok(()),
        };
    }
    if text.chars().count() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(format!("Use at most {MAX_TEXT} characters, on one line."));
    }
    substitute::check(text, is_known).map_err(|e| variable_error(&e))
}

/// A field that takes its text literally must not look like it holds a variable.
fn check_plain_field(text: &str, what: &str) -> Result<(), String> {
    if text.contains("${") {
        return Err(format!("The {what} does not accept variables."));
    }
    Ok(())
}

fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

impl ConfigForm {
    /// A blank form of a kind, with the usual variables filled in.
    pub fn blank(kind: Kind) -> Self {
        Self {
            kind: kind.key().into(),
            ssl: true,
            email_address: "${userEmailAddress}".into(),
            user_name: "${userUPN}".into(),
            past_days: "7".into(),
            auto_join: true,
            security: "enterprise".into(),
            encryption: "WPA2".into(),
            eap_method: "peap".into(),
            eap_username: "${userUPN}".into(),
            pairs: vec![PairRow::default()],
            ..Self::default()
        }
    }

    /// The form showing a stored configuration (the password is never filled in).
    pub fn from_payload(name: &str, payload: &Payload) -> Self {
        let mut f = Self::blank(payload.kind());
        f.name = name.to_owned();
        match payload {
            Payload::Exchange(e) => {
                f.account_name.clone_from(&e.account_name);
                f.host.clone_from(&e.host);
                f.ssl = e.ssl;
                f.email_address.clone_from(&e.email_address);
                f.user_name.clone_from(&e.user_name);
                f.past_days = e.past_days.to_string();
            }
            Payload::Wifi(w) => {
                f.ssid.clone_from(&w.ssid);
                f.hidden = w.hidden;
                f.auto_join = w.auto_join;
                f.security = match w.security {
                    WifiSecurity::Personal => "personal",
                    WifiSecurity::Enterprise => "enterprise",
                }
                .into();
                f.encryption = w.encryption.key().into();
                f.eap_method = match w.eap_method {
                    EapMethod::Peap => "peap",
                    EapMethod::Ttls => "ttls",
                }
                .into();
                f.eap_username.clone_from(&w.eap_username);
                f.outer_identity.clone_from(&w.outer_identity);
            }
            Payload::Custom { pairs } => {
                f.pairs = pairs
                    .iter()
                    .map(|p| PairRow {
                        key: p.key.clone(),
                        value: p.value.clone(),
                    })
                    .collect();
                if f.pairs.is_empty() {
                    f.pairs.push(PairRow::default());
                }
            }
        }
        f
    }

    /// Validates into typed fields. `is_known` says which variable names exist; `has_stored_secret`
    /// whether an empty password keeps a stored one.
    pub fn validate(
        &self,
        is_known: &dyn Fn(&str) -> bool,
        has_stored_secret: bool,
    ) -> Result<Validated, FormErrors> {
        let mut e = FormErrors::default();
        let name = self.name.trim();
        if name.is_empty() {
            e.fields
                .insert("name", "Enter a name, e.g. Office Wi-Fi.".into());
        } else if name.chars().count() > 100 || name.chars().any(char::is_control) {
            e.fields
                .insert("name", "Use at most 100 characters, on one line.".into());
        }
        let mut new_password = None;
        let payload = match Kind::parse(&self.kind) {
            None => {
                e.fields.insert(
                    "kind",
                    "Choose Wi-Fi, Exchange ActiveSync or Custom.".into(),
                );
                None
            }
            Some(Kind::Exchange) => self.validate_exchange(&mut e, is_known),
            Some(Kind::Wifi) => {
                let w = self.validate_wifi(&mut e, is_known);
                if w.as_ref()
                    .is_some_and(|w| w.security == WifiSecurity::Personal)
                {
                    let p = &self.password;
                    if p.is_empty() {
                        if !has_stored_secret {
                            e.fields.insert(
                                "password",
                                "Enter the network's password (8 to 63 characters).".into(),
                            );
                        }
                    } else if !(8..=63).contains(&p.chars().count())
                        || p.chars().any(char::is_control)
                    {
                        e.fields
                            .insert("password", "A WPA password has 8 to 63 characters.".into());
                    } else {
                        new_password = Some(p.clone());
                    }
                }
                w.map(Payload::Wifi)
            }
            Some(Kind::Custom) => self.validate_custom(&mut e, is_known),
        };
        match payload {
            Some(payload) if e.is_empty() => Ok(Validated {
                name: name.to_owned(),
                payload,
                new_password,
            }),
            _ => Err(e),
        }
    }

    fn validate_exchange(
        &self,
        e: &mut FormErrors,
        is_known: &dyn Fn(&str) -> bool,
    ) -> Option<Payload> {
        let host = self.host.trim();
        if host.is_empty() {
            e.fields.insert(
                "host",
                "Enter the Exchange server's host name, e.g. outlook.office365.com.".into(),
            );
        } else if let Err(m) = check_plain_field(host, "server") {
            e.fields.insert("host", m);
        } else if !is_host(host) {
            e.fields.insert(
                "host",
                "Enter a host name only (no https:// and no path), e.g. mail.contoso.com.".into(),
            );
        }
        for (key, text, required) in [
            (
                "account_name",
                &self.account_name,
                Some("Enter the account name shown on the device, e.g. Contoso Mail."),
            ),
            (
                "email_address",
                &self.email_address,
                Some("Enter the email address, e.g. ${userEmailAddress}."),
            ),
            (
                "user_name",
                &self.user_name,
                Some("Enter the user name, e.g. ${userUPN}."),
            ),
        ] {
            if let Err(m) = check_var_field(text, required, is_known) {
                e.fields.insert(key, m);
            }
        }
        let past_days = self
            .past_days
            .parse::<i64>()
            .ok()
            .filter(|d| PAST_DAYS.iter().any(|(v, _)| v == d));
        if past_days.is_none() {
            e.fields
                .insert("past_days", "Choose one of the listed periods.".into());
        }
        Some(Payload::Exchange(Exchange {
            account_name: self.account_name.trim().to_owned(),
            host: host.to_owned(),
            ssl: self.ssl,
            email_address: self.email_address.trim().to_owned(),
            user_name: self.user_name.trim().to_owned(),
            past_days: past_days.unwrap_or(7),
        }))
    }

    fn validate_wifi(&self, e: &mut FormErrors, is_known: &dyn Fn(&str) -> bool) -> Option<Wifi> {
        let ssid = self.ssid.trim();
        if ssid.is_empty() {
            e.fields
                .insert("ssid", "Enter the network name (SSID).".into());
        } else if ssid.len() > 32 {
            e.fields
                .insert("ssid", "An SSID has at most 32 bytes.".into());
        } else if let Err(m) = check_plain_field(ssid, "network name") {
            e.fields.insert("ssid", m);
        }
        let security = match self.security.as_str() {
            "personal" => Some(WifiSecurity::Personal),
            "enterprise" => Some(WifiSecurity::Enterprise),
            _ => {
                e.fields
                    .insert("security", "Choose Personal or Enterprise.".into());
                None
            }
        };
        let encryption = match self.encryption.as_str() {
            "WPA2" => Some(Encryption::Wpa2),
            "WPA3" => Some(Encryption::Wpa3),
            "Any" => Some(Encryption::Any),
            _ => {
                e.fields
                    .insert("encryption", "Choose WPA2, WPA3 or Any.".into());
                None
            }
        };
        let eap_method = match self.eap_method.as_str() {
            "peap" => EapMethod::Peap,
            "ttls" => EapMethod::Ttls,
            _ => {
                e.fields
                    .insert("eap_method", "Choose PEAP or EAP-TTLS.".into());
                EapMethod::Peap
            }
        };
        if security == Some(WifiSecurity::Enterprise) {
            if let Err(m) = check_var_field(
                &self.eap_username,
                Some("Enter the user name devices sign in with, e.g. ${userUPN}."),
                is_known,
            ) {
                e.fields.insert("eap_username", m);
            }
            if let Err(m) = check_var_field(&self.outer_identity, None, is_known) {
                e.fields.insert("outer_identity", m);
            }
        }
        Some(Wifi {
            ssid: ssid.to_owned(),
            hidden: self.hidden,
            auto_join: self.auto_join,
            security: security?,
            encryption: encryption?,
            eap_method,
            eap_username: self.eap_username.trim().to_owned(),
            outer_identity: self.outer_identity.trim().to_owned(),
        })
    }

    fn validate_custom(
        &self,
        e: &mut FormErrors,
        is_known: &dyn Fn(&str) -> bool,
    ) -> Option<Payload> {
        let mut pairs = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for row in &self.pairs {
            let key = row.key.trim();
            let mut re = PairErrors::default();
            if key.is_empty() && row.value.trim().is_empty() {
                e.rows.push(re);
                continue;
            }
            if key.is_empty() {
                re.key = Some("Enter a key.".into());
            } else if key.len() > 64
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                re.key = Some("Use letters, digits, _ - and . only (at most 64).".into());
            } else if seen.contains(&key) {
                re.key = Some("Another row already uses this key.".into());
            }
            if let Err(m) = check_var_field(&row.value, None, is_known) {
                re.value = Some(m);
            }
            seen.push(key);
            pairs.push(Pair {
                key: key.to_owned(),
                value: row.value.trim().to_owned(),
            });
            e.rows.push(re);
        }
        if pairs.is_empty() {
            e.fields
                .insert("pairs", "Add at least one key and value.".into());
        }
        Some(Payload::Custom { pairs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, property: &str) -> CustomAttribute {
        CustomAttribute {
            name: name.into(),
            property: property.into(),
        }
    }

    fn known(n: &str) -> bool {
        known_variables(&[attr("costCenter", "x")])
            .iter()
            .any(|k| k == n)
    }

    #[test]
    fn renames_are_found_by_property() {
        let old = [attr("costCenter", "ext_cc"), attr("badge", "ea7")];
        let new = [attr("costCentre", "ext_cc"), attr("badge", "ea7")];
        assert_eq!(
            detect_renames(&old, &new),
            vec![Rename {
                from: "costCenter".into(),
                to: "costCentre".into()
            }]
        );
        // Nothing removed, or removed without a same-property successor: no rename.
        assert!(detect_renames(&old, &old).is_empty());
        assert!(detect_renames(&old, &[attr("badge", "ea7")]).is_empty());
        assert!(detect_renames(&old, &[attr("cc", "other"), attr("badge", "ea7")]).is_empty());
        // A case change is a rename too.
        assert_eq!(
            detect_renames(&old, &[attr("CostCenter", "ext_cc")]).len(),
            1
        );
        // Two new names for one property: ambiguous.
        assert!(detect_renames(&old, &[attr("a", "ext_cc"), attr("b", "ext_cc")]).is_empty());
        // Swapping two names is not a rename (both names stay).
        let swapped = [attr("costCenter", "ea7"), attr("badge", "ext_cc")];
        assert!(detect_renames(&old, &swapped).is_empty());
        // The old name kept while a new one reads the same property: not a rename.
        assert!(
            detect_renames(&old, &[attr("costCenter", "ext_cc"), attr("cc2", "ext_cc")]).is_empty()
        );
    }

    #[test]
    fn payload_rename_and_resolve() {
        let mut p = Payload::Exchange(Exchange {
            account_name: "Mail ${costCenter}".into(),
            host: "mail.contoso.com".into(),
            ssl: true,
            email_address: "${userEmailAddress}".into(),
            user_name: "${userUPN}".into(),
            past_days: 7,
        });
        assert_eq!(
            p.variables(),
            vec!["costCenter", "userEmailAddress", "userUPN"]
        );
        assert_eq!(p.rename_variable("costCenter", "cc"), 1);
        assert_eq!(p.variables()[0], "cc");
        let user = UserFacts {
            id: "local-1".into(),
            upn: "jane.doe@contoso.com".into(),
            display_name: "Jane".into(),
            ..UserFacts::default()
        };
        let values = values_for(&user, &["cc".into()]);
        assert_eq!(values["userUID"].as_deref(), Some("jane.doe"));
        assert_eq!(values["userId"].as_deref(), Some("local-1"));
        let (r, missing) = p.resolve(&values).unwrap();
        assert_eq!(missing, vec!["cc", "userEmailAddress"]);
        let Payload::Exchange(x) = r else { panic!() };
        assert_eq!(x.account_name, "Mail ");
        assert_eq!(x.user_name, "jane.doe@contoso.com");
    }

    #[test]
    fn wifi_form_validates_per_security() {
        let mut f = ConfigForm::blank(Kind::Wifi);
        f.name = "Office".into();
        f.ssid = "Contoso".into();
        f.eap_username = "${userUPN}".into();
        f.outer_identity = "anon-${costCentre}".into();
        let e = f.validate(&known, false).unwrap_err();
        assert!(
            e.fields["outer_identity"].contains("${costCentre}"),
            "{:?}",
            e.fields
        );
        f.outer_identity = "anon-${costCenter}".into();
        let v = f.validate(&known, false).unwrap();
        assert!(v.new_password.is_none());
        f.security = "personal".into();
        assert!(
            f.validate(&known, false)
                .unwrap_err()
                .fields
                .contains_key("password")
        );
        assert!(
            f.validate(&known, true).is_ok(),
            "a stored password is kept"
        );
        f.password = "short".into();
        assert!(f.validate(&known, true).is_err());
        f.password = "long-enough-secret".into();
        assert_eq!(
            f.validate(&known, false).unwrap().new_password.as_deref(),
            Some("long-enough-secret")
        );
        f.ssid = "net-${userUPN}".into();
        assert!(f.validate(&known, true).unwrap_err().fields["ssid"].contains("does not accept"));
    }

    #[test]
    fn exchange_and_custom_forms() {
        let mut f = ConfigForm::blank(Kind::Exchange);
        f.name = "Mail".into();
        f.account_name = "Contoso".into();
        f.host = "https://mail.contoso.com/".into();
        f.user_name = "${userUPN".into();
        let e = f.validate(&known, false).unwrap_err();
        assert!(e.fields.contains_key("host"));
        assert!(e.fields["user_name"].contains("closing"));
        let mut c = ConfigForm::blank(Kind::Custom);
        c.name = "Values".into();
        let e = c.validate(&known, false).unwrap_err();
        assert!(e.fields.contains_key("pairs"));
        c.pairs = vec![
            PairRow {
                key: "dept".into(),
                value: "${costCenter}".into(),
            },
            PairRow {
                key: "dept".into(),
                value: "${nope}".into(),
            },
        ];
        let e = c.validate(&known, false).unwrap_err();
        assert!(e.rows[0].key.is_none() && e.rows[0].value.is_none());
        assert!(e.rows[1].key.is_some() && e.rows[1].value.is_some());
    }

    #[test]
    fn payload_json_round_trips() {
        let p = Payload::Custom {
            pairs: vec![Pair {
                key: "k".into(),
                value: "${userUPN}".into(),
            }],
        };
        let s = serde_json::to_string(&p).unwrap();
        assert!(s.contains("\"kind\":\"custom\""), "{s}");
        assert_eq!(serde_json::from_str::<Payload>(&s).unwrap(), p);
    }
}
