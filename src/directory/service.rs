//! Rules for local accounts: validation, a username unique across every source, audited changes.

use std::collections::BTreeMap;

use serde_json::json;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::Millis;
use crate::db::Db;
use crate::db::ids::new_id;
use crate::directory::model::UserQuery;
use crate::directory::repo::{self, LocalUser};
use crate::error::FieldErrors;
use crate::settings::model::{ENTRA_SOURCE_ID, EntraSettings};
use crate::web::RequestMeta;

/// The local-user form as typed.
#[derive(Debug, Clone, Default)]
pub struct LocalUserForm {
    pub upn: String,
    pub mail: String,
    pub given_name: String,
    pub surname: String,
    pub display_name: String,
    /// Custom attribute values by variable name.
    pub custom: BTreeMap<String, String>,
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn looks_like_email(s: &str) -> bool {
    s.rsplit_once('@').is_some_and(|(l, d)| {
        !l.is_empty()
            && d.contains('.')
            && !d.starts_with('.')
            && !d.ends_with('.')
            && !s.contains(char::is_whitespace)
    })
}

/// Checks the form; `attribute_names` are the configured custom attributes (others are dropped).
pub fn validate(
    form: &LocalUserForm,
    settings: Option<&EntraSettings>,
) -> Result<LocalUser, FieldErrors> {
    let mut e = FieldErrors::new();
    let upn = form.upn.trim();
    if upn.is_empty() {
        e.insert(
            "upn",
            "Enter a username or UPN, e.g. jane.doe or jane.doe@contoso.com.".into(),
        );
    } else if upn.chars().count() > 113 {
        e.insert("upn", "Use at most 113 characters.".into());
    } else if !upn
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '\''))
    {
        e.insert(
            "upn",
            "Use letters, digits and . _ - ' @ only (no spaces).".into(),
        );
    } else if upn.matches('@').count() > 1 || upn.starts_with('@') || upn.ends_with('@') {
        e.insert(
            "upn",
            "A UPN has one @ with a name before and a domain after it.".into(),
        );
    }
    let mail = opt(&form.mail);
    if let Some(m) = &mail
        && (!looks_like_email(m) || m.len() > 254)
    {
        e.insert(
            "mail",
            "Enter an email address such as jane.doe@contoso.com, or leave it empty.".into(),
        );
    }
    for (key, v) in [
        ("given_name", &form.given_name),
        ("surname", &form.surname),
        ("display_name", &form.display_name),
    ] {
        if v.chars().count() > 256 {
            e.insert(key, "Use at most 256 characters.".into());
        }
    }
    let names: Vec<&str> = settings
        .map(|s| {
            s.custom_attributes
                .iter()
                .map(|a| a.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut custom = BTreeMap::new();
    for (k, v) in &form.custom {
        if names.contains(&k.as_str())
            && let Some(v) = opt(v)
        {
            if v.chars().count() > 1024 {
                e.insert("custom", format!("{k}: use at most 1,024 characters."));
            }
            custom.insert(k.clone(), v);
        }
    }
    if !e.is_empty() {
        return Err(e);
    }
    let given = opt(&form.given_name);
    let surname = opt(&form.surname);
    let display = opt(&form.display_name).unwrap_or_else(|| match (&given, &surname) {
        (Some(g), Some(s)) => format!("{g} {s}"),
        (Some(n), None) | (None, Some(n)) => n.clone(),
        (None, None) => upn.to_owned(),
    });
    let managed_apple_id = settings.and_then(|s| s.managed_apple_id(mail.as_deref(), upn));
    Ok(LocalUser {
        upn: upn.to_owned(),
        mail,
        given_name: given,
        surname,
        display_name: display,
        custom_attributes: custom,
        managed_apple_id,
    })
}

fn taken() -> FieldErrors {
    let mut e = FieldErrors::new();
    e.insert("upn", "This username is already used by another user (usernames are unique across Entra ID and local accounts).".into());
    e
}

/// A unique violation (two admins creating the same username at once) is the field error; else unexpected.
fn unique_or(e: anyhow::Error) -> SaveError {
    match e.downcast_ref::<sqlx::Error>() {
        Some(db) if crate::db::is_unique_violation(db) => SaveError::Invalid(taken()),
        _ => SaveError::Unexpected(e),
    }
}

#[derive(Debug)]
pub enum SaveError {
    Invalid(FieldErrors),
    NotFound,
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SaveError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

async fn settings(db: &Db) -> anyhow::Result<Option<EntraSettings>> {
    Ok(
        crate::settings::repo::find_source(&db.pool, ENTRA_SOURCE_ID)
            .await?
            .map(|s| s.settings),
    )
}

fn details(u: &LocalUser) -> serde_json::Value {
    json!({ "upn": u.upn, "mail": u.mail, "display_name": u.display_name, "custom_attributes": u.custom_attributes })
}

/// Creates a local user; returns its id.
pub async fn create(
    db: &Db,
    now: Millis,
    form: &LocalUserForm,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<String, SaveError> {
    let s = settings(db).await?;
    let user = validate(form, s.as_ref()).map_err(SaveError::Invalid)?;
    let id = new_id();
    let mut tx = db.begin().await?;
    if repo::upn_taken(&mut *tx, &user.upn.to_lowercase(), None).await? {
        return Err(SaveError::Invalid(taken()));
    }
    if let Err(e) = repo::create_local_user(&mut *tx, &id, &user, now).await {
        return Err(unique_or(e));
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::LocalUserCreated)
            .target("user", &id)
            .from_request(meta)
            .details(details(&user)),
    )
    .await?;
    tx.commit().await?;
    db.forget(repo::USER_TOTAL);
    Ok(id)
}

pub async fn update(
    db: &Db,
    now: Millis,
    id: &str,
    form: &LocalUserForm,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<(), SaveError> {
    let s = settings(db).await?;
    let user = validate(form, s.as_ref()).map_err(SaveError::Invalid)?;
    let mut tx = db.begin().await?;
    if repo::upn_taken(&mut *tx, &user.upn.to_lowercase(), Some(id)).await? {
        return Err(SaveError::Invalid(taken()));
    }
    match repo::update_local_user(&mut *tx, id, &user, now).await {
        Ok(true) => {}
        Ok(false) => return Err(SaveError::NotFound),
        Err(e) => return Err(unique_or(e)),
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::LocalUserUpdated)
            .target("user", id)
            .from_request(meta)
            .details(details(&user)),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_enabled(
    db: &Db,
    now: Millis,
    id: &str,
    enabled: bool,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<(), SaveError> {
    let mut tx = db.begin().await?;
    if !repo::set_local_enabled(&mut *tx, id, enabled, now).await? {
        return Err(SaveError::NotFound);
    }
    let action = if enabled {
        AuditAction::LocalUserEnabled
    } else {
        AuditAction::LocalUserDisabled
    };
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, action)
            .target("user", id)
            .from_request(meta),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Soft delete: the row is kept, marked deleted, and audited.
pub async fn delete(
    db: &Db,
    now: Millis,
    id: &str,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<(), SaveError> {
    let mut tx = db.begin().await?;
    let upn = repo::find_user(&mut *tx, id).await?.map(|u| u.upn);
    if !repo::delete_local_user(&mut *tx, id, now).await? {
        return Err(SaveError::NotFound);
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::LocalUserDeleted)
            .target("user", id)
            .from_request(meta)
            .details(json!({ "upn": upn })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every user id the Users page's filters select, read a keyset page at a time (for "Invite all matching").
pub async fn all_user_ids(db: &Db, query: &UserQuery) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let rows =
            repo::list_users_page(db, query, cursor.as_ref(), 1000, repo::UserCols::Listed).await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(repo::cursor_of(last, query.sort));
        let n = rows.len();
        ids.extend(rows.into_iter().map(|r| r.id));
        if n < 1000 {
            break;
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(upn: &str, mail: &str) -> LocalUserForm {
        LocalUserForm {
            upn: upn.into(),
            mail: mail.into(),
            given_name: "Jane".into(),
            surname: "Doe".into(),
            ..Default::default()
        }
    }

    #[test]
    fn local_user_rules() {
        let u = validate(&form("jane.doe@contoso.com", "jane@contoso.com"), None).unwrap();
        assert_eq!(
            u.display_name, "Jane Doe",
            "display name defaults to first + last"
        );
        assert!(
            validate(&form("", ""), None)
                .unwrap_err()
                .contains_key("upn")
        );
        assert!(
            validate(&form("jane doe", ""), None)
                .unwrap_err()
                .contains_key("upn")
        );
        assert!(
            validate(&form("a@b@c", ""), None)
                .unwrap_err()
                .contains_key("upn")
        );
        assert!(
            validate(&form("jane", "not-an-email"), None)
                .unwrap_err()
                .contains_key("mail")
        );
        assert!(
            validate(&form("jane", ""), None).is_ok(),
            "email is optional"
        );
    }
}
