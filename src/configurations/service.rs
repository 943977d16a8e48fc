//! Rules for configurations: create, update and delete (audited in the same transaction, the Wi-Fi password
//! sealed), how many users lack each variable, preview and export for one user, and rewriting variable
//! references when a custom attribute is renamed on the Entra ID User Source page.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::AnyConnection;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::Millis;
use crate::configurations::export::{self, ExportInput};
use crate::configurations::model::{
    BUILTIN_VARIABLES, ConfigForm, FormErrors, Payload, Rename, UserFacts, known_variables,
    values_for,
};
use crate::configurations::repo::{self, ConfigRow, SecretChange, UserRow};
use crate::configurations::substitute::SubstitutionError;
use crate::db::Db;
use crate::db::ids::new_id;
use crate::directory::model::UserRecord;
use crate::error::AppError;
use crate::secrets::MasterKey;
use crate::settings::model::{CustomAttribute, ENTRA_SOURCE_ID};
use crate::web::RequestMeta;

/// A stored configuration with its typed fields.
#[derive(Debug, Clone)]
pub struct Configuration {
    pub id: String,
    pub name: String,
    pub payload: Payload,
    pub secret_sealed: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl TryFrom<ConfigRow> for Configuration {
    type Error = anyhow::Error;

    fn try_from(r: ConfigRow) -> anyhow::Result<Self> {
        let payload: Payload = serde_json::from_str(&r.fields)
            .map_err(|e| anyhow::anyhow!("configuration {} has unreadable fields: {e}", r.id))?;
        Ok(Self {
            id: r.id,
            name: r.name,
            payload,
            secret_sealed: r.secret_sealed,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Debug)]
pub enum SaveError {
    Invalid(FormErrors),
    NotFound,
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SaveError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

/// The custom attributes configured on the Entra ID User Source page (none before it is set up).
pub async fn custom_attributes(db: &Db) -> anyhow::Result<Vec<CustomAttribute>> {
    Ok(
        crate::settings::repo::find_source(&db.pool, ENTRA_SOURCE_ID)
            .await?
            .map(|s| s.settings.custom_attributes)
            .unwrap_or_default(),
    )
}

/// Names of the custom attributes, in page order.
pub fn custom_names(attrs: &[CustomAttribute]) -> Vec<String> {
    attrs.iter().map(|a| a.name.clone()).collect()
}

pub async fn list(db: &Db) -> anyhow::Result<Vec<Configuration>> {
    repo::list(&db.pool)
        .await?
        .into_iter()
        .map(Configuration::try_from)
        .collect()
}

pub async fn get(db: &Db, id: &str) -> Result<Configuration, AppError> {
    let row = repo::find(&db.pool, id).await?.ok_or(AppError::NotFound)?;
    Ok(Configuration::try_from(row)?)
}

/// Fields as audit details: everything but the secret.
fn audit_view(name: &str, payload: &Payload) -> Value {
    json!({ "name": name, "fields": payload })
}

fn name_taken() -> SaveError {
    let mut e = FormErrors::default();
    e.fields.insert(
        "name",
        "Another configuration already has this name.".into(),
    );
    SaveError::Invalid(e)
}

fn seal(key: &MasterKey, password: Option<&String>) -> anyhow::Result<Option<String>> {
    password
        .map(|p| key.seal(&SecretString::from(p.clone())))
        .transpose()
}

/// Validates and stores a new configuration; audited in the same transaction. Returns its id.
pub async fn create(
    db: &Db,
    key: &MasterKey,
    now: Millis,
    form: &ConfigForm,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<String, SaveError> {
    let known = known_variables(&custom_attributes(db).await?);
    let is_known = |n: &str| known.iter().any(|k| k == n);
    let v = form
        .validate(&is_known, false)
        .map_err(SaveError::Invalid)?;
    let sealed = seal(key, v.new_password.as_ref())?;
    let id = new_id();
    let kind = v.payload.kind().key();
    let fields = serde_json::to_string(&v.payload)?;
    let mut tx = db.begin().await?;
    match repo::create(
        &mut *tx,
        &id,
        &v.name,
        kind,
        &fields,
        sealed.as_deref(),
        now,
    )
    .await
    {
        Err(e) if crate::db::is_unique_violation(&e) => return Err(name_taken()),
        r => r?,
    }
    let mut details = audit_view(&v.name, &v.payload);
    if let Some(obj) = details.as_object_mut() {
        obj.insert("kind".into(), json!(kind));
        if sealed.is_some() {
            obj.insert("password".into(), json!("set (value not recorded)"));
        }
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::ConfigurationCreated)
            .target("configuration", &id)
            .from_request(meta)
            .details(details),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Validates and stores changes; a blank password keeps the stored one. Audited in the same transaction.
pub async fn update(
    db: &Db,
    key: &MasterKey,
    now: Millis,
    id: &str,
    form: &ConfigForm,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<(), SaveError> {
    let Some(row) = repo::find(&db.pool, id).await? else {
        return Err(SaveError::NotFound);
    };
    let before = Configuration::try_from(row)?;
    // The kind is fixed at creation: the form's hidden field cannot change it.
    let mut form = form.clone();
    form.kind = before.payload.kind().key().into();
    let known = known_variables(&custom_attributes(db).await?);
    let is_known = |n: &str| known.iter().any(|k| k == n);
    let had_secret = before.secret_sealed.is_some();
    let v = form
        .validate(&is_known, had_secret)
        .map_err(SaveError::Invalid)?;
    let sealed = seal(key, v.new_password.as_ref())?;
    let (secret, password_note) = match (&sealed, v.payload.needs_secret()) {
        (Some(s), _) => (SecretChange::Set(s), "changed (value not recorded)"),
        (None, true) => (SecretChange::Keep, "unchanged"),
        (None, false) if had_secret => (SecretChange::Clear, "removed"),
        (None, false) => (SecretChange::Keep, "none"),
    };
    let fields = serde_json::to_string(&v.payload)?;
    let mut changes = serde_json::Map::new();
    let (b, a) = (
        audit_view(&before.name, &before.payload),
        audit_view(&v.name, &v.payload),
    );
    for k in ["name", "fields"] {
        if b.get(k) != a.get(k) {
            changes.insert(k.into(), json!({ "from": b.get(k), "to": a.get(k) }));
        }
    }
    changes.insert("password".into(), json!(password_note));
    let mut tx = db.begin().await?;
    match repo::update(&mut *tx, id, &v.name, &fields, secret, now).await {
        Err(e) if crate::db::is_unique_violation(&e) => return Err(name_taken()),
        Ok(false) => return Err(SaveError::NotFound),
        r => {
            r?;
        }
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::ConfigurationUpdated)
            .target("configuration", id)
            .from_request(meta)
            .details(json!({ "name": v.name, "changes": changes })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes a configuration; audited in the same transaction. Returns its name.
pub async fn delete(
    db: &Db,
    now: Millis,
    id: &str,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<String, AppError> {
    let c = get(db, id).await?;
    let mut tx = db.begin().await?;
    if !repo::delete(&mut *tx, id).await? {
        return Err(AppError::NotFound);
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::ConfigurationDeleted)
            .target("configuration", id)
            .from_request(meta)
            .details(audit_view(&c.name, &c.payload)),
    )
    .await?;
    tx.commit().await?;
    Ok(c.name)
}

// ---- coverage: how many users lack each variable ----

/// One variable a configuration uses, and how many active users lack a value for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub variable: String,
    pub missing: i64,
    /// `/admin/users?missing=<name>` for custom attributes (the users page filters by those).
    pub link: Option<String>,
    /// The variable is no longer defined (its custom attribute was removed).
    pub unknown: bool,
}

/// Counts over active users (`not_synced_at IS NULL`) for every variable `payload` uses.
pub async fn coverage(
    db: &Db,
    payload: &Payload,
    attrs: &[CustomAttribute],
) -> anyhow::Result<(i64, Vec<Coverage>)> {
    let active = repo::count_active_users(&db.pool).await?;
    let mut out = Vec::new();
    for variable in payload.variables() {
        let builtin = BUILTIN_VARIABLES.iter().any(|(n, _)| *n == variable);
        let custom = attrs.iter().any(|a| a.name == variable);
        let (missing, link) = if builtin {
            let n = if repo::builtin_column(&variable).is_some() {
                repo::count_missing_builtin(&db.pool, &variable).await?
            } else {
                0
            };
            (n, None)
        } else if custom {
            (
                repo::count_missing_custom(&db.pool, &variable).await?,
                Some(format!("/admin/users?missing={}", url_encode(&variable))),
            )
        } else {
            (0, None)
        };
        out.push(Coverage {
            unknown: !builtin && !custom,
            variable,
            missing,
            link,
        });
    }
    Ok((active, out))
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- preview and export ----

/// A user as previews show them.
#[derive(Debug, Clone)]
pub struct PreviewUser {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub active: bool,
}

/// A configuration resolved for one user.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub user: PreviewUser,
    pub payload: Payload,
    /// Variables the user has no value for (written as empty).
    pub missing: Vec<String>,
}

/// Why a configuration cannot be resolved for a user.
#[derive(Debug)]
pub enum ResolveError {
    UserNotFound,
    /// A variable the configuration uses is no longer defined.
    Variable(SubstitutionError),
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for ResolveError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

impl From<ResolveError> for AppError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::UserNotFound => Self::NotFound,
            ResolveError::Variable(e) => Self::Conflict(format!(
                "This configuration cannot be resolved: {e}. Edit it to use a defined variable."
            )),
            ResolveError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

pub fn facts(u: &UserRow) -> UserFacts {
    UserFacts {
        id: u.id.clone(),
        external_id: u.external_id.clone().filter(|_| u.source != "local"),
        upn: u.upn.clone(),
        mail: u.mail.clone(),
        given_name: u.given_name.clone(),
        surname: u.surname.clone(),
        display_name: u.display_name.clone(),
        managed_apple_id: u.managed_apple_id.clone(),
        custom: serde_json::from_str(&u.custom_attributes).unwrap_or_default(),
    }
}

/// Resolves a configuration for the user found by id, UPN or email address.
pub async fn resolve_for(
    db: &Db,
    config: &Configuration,
    user_key: &str,
) -> Result<Resolved, ResolveError> {
    let user = repo::find_user(&db.pool, user_key.trim())
        .await?
        .ok_or(ResolveError::UserNotFound)?;
    let attrs = custom_attributes(db).await?;
    let values = values_for(&facts(&user), &custom_names(&attrs));
    let (payload, missing) = config
        .payload
        .resolve(&values)
        .map_err(ResolveError::Variable)?;
    Ok(Resolved {
        user: PreviewUser {
            id: user.id,
            upn: user.upn,
            display_name: user.display_name,
            active: user.not_synced_at.is_none(),
        },
        payload,
        missing,
    })
}

/// A file to download.
#[derive(Debug)]
pub struct Download {
    pub content_type: &'static str,
    pub file_name: String,
    pub body: Vec<u8>,
    pub missing: Vec<String>,
}

/// What a preview shows of the exported document: the profile (password masked) or the JSON.
pub fn document_preview(config: &Configuration, r: &Resolved) -> anyhow::Result<String> {
    let masked = config
        .payload
        .needs_secret()
        .then_some("•••••• (stored encrypted; included in the download)");
    let input = input_for(config, r, masked);
    if let Some(xml) = export::profile_xml(&input)? {
        return Ok(String::from_utf8(xml)?);
    }
    Ok(export::custom_json(&input)
        .map(|v| serde_json::to_string_pretty(&v))
        .transpose()?
        .unwrap_or_default())
}

fn input_for<'a>(
    config: &'a Configuration,
    r: &'a Resolved,
    password: Option<&'a str>,
) -> ExportInput<'a> {
    ExportInput {
        config_id: &config.id,
        config_name: &config.name,
        user_id: &r.user.id,
        user_label: &r.user.upn,
        resolved: &r.payload,
        password,
    }
}

/// The download for one user: a `.mobileconfig` for Wi-Fi and Exchange, JSON for Custom. The Wi-Fi
/// Personal password is opened from its sealed form and written into the profile.
pub async fn export_for(
    db: &Db,
    key: &MasterKey,
    config: &Configuration,
    user_key: &str,
) -> Result<Download, ResolveError> {
    let r = resolve_for(db, config, user_key).await?;
    let password: Option<SecretString> =
        match (&config.secret_sealed, config.payload.needs_secret()) {
            (Some(sealed), true) => Some(key.open(sealed)?),
            _ => None,
        };
    let input = input_for(
        config,
        &r,
        password.as_ref().map(ExposeSecret::expose_secret),
    );
    let stem = format!(
        "{}-{}",
        export::file_stem(&config.name),
        export::file_stem(r.user.upn.split('@').next().unwrap_or("user"))
    );
    if let Some(xml) = export::profile_xml(&input)? {
        return Ok(Download {
            content_type: export::MOBILECONFIG_TYPE,
            file_name: format!("{stem}.mobileconfig"),
            body: xml,
            missing: r.missing,
        });
    }
    let json = export::custom_json(&input)
        .ok_or_else(|| anyhow::anyhow!("nothing to export for this configuration"))?;
    Ok(Download {
        content_type: "application/json",
        file_name: format!("{stem}.json"),
        body: serde_json::to_vec_pretty(&json)?,
        missing: r.missing,
    })
}

// ---- custom-attribute renames ----

/// One configuration a rename rewrote.
#[derive(Debug, Clone, Serialize)]
pub struct RenamedIn {
    pub id: String,
    pub name: String,
    pub references: usize,
}

/// What renaming custom attributes rewrote, for the Entra ID User Source audit entry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenameReport {
    pub renames: Vec<Rename>,
    pub configurations: Vec<RenamedIn>,
    /// Users whose stored custom-attribute values were re-keyed to the new names.
    pub user_values_rekeyed: u64,
    /// References rewritten in the invitation email template.
    pub invitation_template_references: usize,
}

/// Users re-keyed per statement (× 3 values stays far below SQLite's bound-value limit).
const REKEY_BATCH: i64 = 500;

/// Rewrites every reference to renamed custom attributes, inside the caller's transaction (the Entra ID
/// User Source save): configurations' variable fields, and the per-user values in
/// `directory_users.custom_attributes`, so previews keep working without a new sync.
///
/// This is the one hook for renames: the invitations area will add its template rewrite here
/// (`crate::invitations::…::rename_variables`) so a rename stays one transaction and one audit entry.
pub async fn propagate_renames(
    conn: &mut AnyConnection,
    renames: &[Rename],
) -> anyhow::Result<RenameReport> {
    let mut report = RenameReport {
        renames: renames.to_vec(),
        ..RenameReport::default()
    };
    if renames.is_empty() {
        return Ok(report);
    }
    report.configurations = rename_in_configurations(&mut *conn, renames).await?;
    report.user_values_rekeyed = rekey_user_values(&mut *conn, renames).await?;
    report.invitation_template_references =
        crate::invitations::service::rename_variables(&mut *conn, renames).await?;
    Ok(report)
}

async fn rename_in_configurations(
    conn: &mut AnyConnection,
    renames: &[Rename],
) -> anyhow::Result<Vec<RenamedIn>> {
    let mut out = Vec::new();
    for row in repo::list(&mut *conn).await? {
        let mut c = Configuration::try_from(row)?;
        let references: usize = renames
            .iter()
            .map(|r| c.payload.rename_variable(&r.from, &r.to))
            .sum();
        if references > 0 {
            repo::update_fields(&mut *conn, &c.id, &serde_json::to_string(&c.payload)?).await?;
            out.push(RenamedIn {
                id: c.id,
                name: c.name,
                references,
            });
        }
    }
    Ok(out)
}

/// Re-keys the JSON maps in Rust, a page of users at a time, written back with one multi-row UPDATE per
/// page (portable SQL; JSON functions differ between SQLite and PostgreSQL). Entra users also get their
/// content hash recomputed, so the next sync does not count them as changed.
async fn rekey_user_values(conn: &mut AnyConnection, renames: &[Rename]) -> anyhow::Result<u64> {
    let from: Vec<String> = renames.iter().map(|r| r.from.clone()).collect();
    let mut after = String::new();
    let mut total = 0;
    loop {
        let page = repo::list_users_with_keys(&mut *conn, &from, &after, REKEY_BATCH).await?;
        let Some(last) = page.last() else { break };
        after.clone_from(&last.id);
        let mut writes = Vec::new();
        for u in &page {
            let mut map: BTreeMap<String, String> =
                serde_json::from_str(&u.custom_attributes).unwrap_or_default();
            let mut changed = false;
            for r in renames {
                if let Some(v) = map.remove(&r.from) {
                    map.insert(r.to.clone(), v);
                    changed = true;
                }
            }
            if !changed {
                continue;
            }
            let hash = if u.source == "entra" {
                UserRecord {
                    external_id: u.external_id.clone().unwrap_or_default(),
                    upn: u.upn.clone(),
                    mail: u.mail.clone(),
                    given_name: u.given_name.clone(),
                    surname: u.surname.clone(),
                    display_name: u.display_name.clone(),
                    job_title: u.job_title.clone(),
                    department: u.department.clone(),
                    account_enabled: u.account_enabled != 0,
                    custom_attributes: map.clone(),
                    managed_apple_id: u.managed_apple_id.clone(),
                }
                .content_hash()
            } else {
                u.content_hash.clone()
            };
            writes.push((u.id.clone(), serde_json::to_string(&map)?, hash));
        }
        total += repo::update_user_attributes(&mut *conn, &writes).await?;
        if i64::try_from(page.len()).unwrap_or(i64::MAX) < REKEY_BATCH {
            break;
        }
    }
    Ok(total)
}
