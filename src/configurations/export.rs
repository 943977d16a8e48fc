//! Builds what a configuration exports for one user: an Apple configuration profile (`.mobileconfig`, an
//! XML property list) for Wi-Fi and Exchange, JSON for Custom. Pure: the caller resolves variables first.

use plist::{Dictionary, Value};
use sha2::{Digest, Sha256};

use crate::configurations::model::{EapMethod, Payload, WifiSecurity};

/// The media type Apple devices install profiles from.
pub const MOBILECONFIG_TYPE: &str = "application/x-apple-aspen-config";

/// What the export needs besides the resolved fields.
#[derive(Debug, Clone)]
pub struct ExportInput<'a> {
    pub config_id: &'a str,
    pub config_name: &'a str,
    /// Our id of the user it is resolved for (makes the payload UUIDs stable per user).
    pub user_id: &'a str,
    pub user_label: &'a str,
    /// The fields with every variable already substituted.
    pub resolved: &'a Payload,
    /// The Wi-Fi Personal password (opened from its sealed form), if any.
    pub password: Option<&'a str>,
}

/// A UUID that stays the same for one configuration, user and payload, so a re-download replaces the
/// installed profile instead of adding a second one (the identifiers are stable too).
fn stable_uuid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
        .to_uppercase()
}

fn text(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn payload_common(d: &mut Dictionary, kind: &str, id: &str, uuid: String, display: &str) {
    d.insert("PayloadType".into(), text(kind));
    d.insert("PayloadVersion".into(), Value::Integer(1.into()));
    d.insert("PayloadIdentifier".into(), text(id));
    d.insert("PayloadUUID".into(), Value::String(uuid));
    d.insert("PayloadDisplayName".into(), text(display));
}

/// The inner payload of a Wi-Fi or Exchange configuration; `None` for Custom.
fn inner_payload(input: &ExportInput<'_>, base_id: &str) -> Option<Dictionary> {
    let mut d = Dictionary::new();
    match input.resolved {
        Payload::Wifi(w) => {
            payload_common(
                &mut d,
                "com.apple.wifi.managed",
                &format!("{base_id}.wifi"),
                stable_uuid(&[input.config_id, input.user_id, "wifi"]),
                &format!("Wi-Fi ({})", w.ssid),
            );
            d.insert("SSID_STR".into(), text(&w.ssid));
            d.insert("HIDDEN_NETWORK".into(), Value::Boolean(w.hidden));
            d.insert("AutoJoin".into(), Value::Boolean(w.auto_join));
            d.insert("EncryptionType".into(), text(w.encryption.key()));
            match w.security {
                WifiSecurity::Personal => {
                    if let Some(p) = input.password {
                        d.insert("Password".into(), text(p));
                    }
                }
                WifiSecurity::Enterprise => {
                    let mut eap = Dictionary::new();
                    eap.insert(
                        "AcceptEAPTypes".into(),
                        Value::Array(vec![Value::Integer(w.eap_method.eap_type().into())]),
                    );
                    eap.insert("UserName".into(), text(&w.eap_username));
                    if !w.outer_identity.is_empty() {
                        eap.insert("OuterIdentity".into(), text(&w.outer_identity));
                    }
                    if w.eap_method == EapMethod::Ttls {
                        eap.insert("TTLSInnerAuthentication".into(), text("MSCHAPv2"));
                    }
                    d.insert("EAPClientConfiguration".into(), Value::Dictionary(eap));
                }
            }
        }
        Payload::Exchange(e) => {
            payload_common(
                &mut d,
                "com.apple.eas.account",
                &format!("{base_id}.eas"),
                stable_uuid(&[input.config_id, input.user_id, "eas"]),
                &e.account_name,
            );
            d.insert("EmailAddress".into(), text(&e.email_address));
            d.insert("Host".into(), text(&e.host));
            d.insert("SSL".into(), Value::Boolean(e.ssl));
            d.insert("UserName".into(), text(&e.user_name));
            d.insert(
                "MailNumberOfPastDaysToSync".into(),
                Value::Integer(e.past_days.into()),
            );
        }
        Payload::Custom { .. } => return None,
    }
    Some(d)
}

/// The whole profile as a property-list value; `None` for Custom (it exports JSON).
pub fn profile(input: &ExportInput<'_>) -> Option<Value> {
    let base_id = format!("roster.configuration.{}", input.config_id);
    let inner = inner_payload(input, &base_id)?;
    let mut top = Dictionary::new();
    payload_common(
        &mut top,
        "Configuration",
        &base_id,
        stable_uuid(&[input.config_id, input.user_id, "profile"]),
        input.config_name,
    );
    top.insert(
        "PayloadDescription".into(),
        text(&format!(
            "{} for {}, issued by Roster.",
            input.config_name, input.user_label
        )),
    );
    top.insert("PayloadOrganization".into(), text("Roster"));
    top.insert("PayloadRemovalDisallowed".into(), Value::Boolean(false));
    top.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(inner)]),
    );
    Some(Value::Dictionary(top))
}

/// The profile as XML property-list bytes.
pub fn profile_xml(input: &ExportInput<'_>) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(v) = profile(input) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    v.to_writer_xml(&mut out)?;
    Ok(Some(out))
}

/// A Custom configuration as JSON: its name, the user, and the resolved key–value pairs in order.
pub fn custom_json(input: &ExportInput<'_>) -> Option<serde_json::Value> {
    let Payload::Custom { pairs } = input.resolved else {
        return None;
    };
    let values: Vec<serde_json::Value> = pairs
        .iter()
        .map(|p| serde_json::json!({ "key": p.key, "value": p.value }))
        .collect();
    Some(serde_json::json!({
        "configuration": input.config_name,
        "id": input.config_id,
        "user": input.user_label,
        "values": values,
    }))
}

/// A file name for a download: letters, digits and `-`, from the configuration's name.
pub fn file_stem(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    if s.is_empty() {
        "configuration".into()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configurations::model::{Encryption, Exchange, Wifi};

    fn wifi(security: WifiSecurity) -> Payload {
        Payload::Wifi(Wifi {
            ssid: "Contoso".into(),
            hidden: true,
            auto_join: true,
            security,
            encryption: Encryption::Wpa3,
            eap_method: EapMethod::Ttls,
            eap_username: "jane@contoso.com".into(),
            outer_identity: "anonymous".into(),
        })
    }

    fn input<'a>(p: &'a Payload, password: Option<&'a str>) -> ExportInput<'a> {
        ExportInput {
            config_id: "c1",
            config_name: "Office",
            user_id: "u1",
            user_label: "jane@contoso.com",
            resolved: p,
            password,
        }
    }

    #[test]
    fn wifi_enterprise_profile_parses_back() {
        let p = wifi(WifiSecurity::Enterprise);
        let bytes = profile_xml(&input(&p, None)).unwrap().unwrap();
        let v = Value::from_reader_xml(bytes.as_slice()).unwrap();
        let top = v.as_dictionary().unwrap();
        assert_eq!(top["PayloadType"].as_string(), Some("Configuration"));
        assert_eq!(top["PayloadVersion"].as_signed_integer(), Some(1));
        let inner = top["PayloadContent"].as_array().unwrap()[0]
            .as_dictionary()
            .unwrap();
        assert_eq!(
            inner["PayloadType"].as_string(),
            Some("com.apple.wifi.managed")
        );
        assert_eq!(inner["SSID_STR"].as_string(), Some("Contoso"));
        assert_eq!(inner["HIDDEN_NETWORK"].as_boolean(), Some(true));
        assert_eq!(inner["EncryptionType"].as_string(), Some("WPA3"));
        assert!(inner.get("Password").is_none());
        let eap = inner["EAPClientConfiguration"].as_dictionary().unwrap();
        assert_eq!(eap["UserName"].as_string(), Some("jane@contoso.com"));
        assert_eq!(
            eap["AcceptEAPTypes"].as_array().unwrap()[0].as_signed_integer(),
            Some(21)
        );
        for d in [top, inner] {
            for k in ["PayloadIdentifier", "PayloadUUID", "PayloadDisplayName"] {
                assert!(d.contains_key(k), "{k}");
            }
        }
        // Stable per configuration and user, different per user.
        assert_eq!(profile_xml(&input(&p, None)).unwrap().unwrap(), bytes);
        let mut other = input(&p, None);
        other.user_id = "u2";
        assert_ne!(profile_xml(&other).unwrap().unwrap(), bytes);
    }

    #[test]
    fn personal_password_and_exchange() {
        let p = wifi(WifiSecurity::Personal);
        let v = profile(&input(&p, Some("pass-phrase-1"))).unwrap();
        let inner = v.as_dictionary().unwrap()["PayloadContent"]
            .as_array()
            .unwrap()[0]
            .as_dictionary()
            .unwrap()
            .clone();
        assert_eq!(inner["Password"].as_string(), Some("pass-phrase-1"));
        assert!(inner.get("EAPClientConfiguration").is_none());
        let e = Payload::Exchange(Exchange {
            account_name: "Mail".into(),
            host: "mail.contoso.com".into(),
            ssl: true,
            email_address: "jane@contoso.com".into(),
            user_name: "jane@contoso.com".into(),
            past_days: 7,
        });
        let v = profile(&input(&e, None)).unwrap();
        let inner = v.as_dictionary().unwrap()["PayloadContent"]
            .as_array()
            .unwrap()[0]
            .as_dictionary()
            .unwrap()
            .clone();
        assert_eq!(
            inner["PayloadType"].as_string(),
            Some("com.apple.eas.account")
        );
        assert_eq!(inner["SSL"].as_boolean(), Some(true));
        assert_eq!(inner["Host"].as_string(), Some("mail.contoso.com"));
        assert!(custom_json(&input(&e, None)).is_none());
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("Office Wi-Fi (HQ)"), "Office-Wi-Fi-HQ");
        assert_eq!(file_stem("€€"), "configuration");
    }
}
