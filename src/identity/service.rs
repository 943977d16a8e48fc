//! The identity area's rules: saving each kind of IdP, the one-active-IdP rule, certificates and metadata
//! refresh. The sign-in flows themselves are in `flow.rs`.

use anyhow::Context;
use secrecy::SecretString;
use serde_json::json;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::{DAY, Millis};
use crate::db::Db;
use crate::error::FieldErrors;
use crate::identity::model::{
    EntraIdpForm, IdpKind, OidcSettings, SamlIdpForm, SamlSettings, SamlSource, check_url,
};
use crate::identity::repo::{self, IdpRow, ProviderWrite};
use crate::identity::{IdentityContext, oidc, saml};
use crate::notifications::repo as notes;
use crate::notifications::{NewNotification, Severity};
use crate::secrets::MasterKey;
use crate::web::RequestMeta;

/// How often metadata given by URL is read again.
pub const METADATA_REFRESH: Millis = DAY;
/// A trusted certificate this close to expiry raises a notification.
pub const CERT_WARNING: Millis = 30 * DAY;
/// Metadata documents larger than this are refused.
const MAX_METADATA_BYTES: usize = 2 * 1024 * 1024;

/// The single place that decides whether `kind` may be enabled: only when no other IdP is.
/// (The database's partial unique index makes a concurrent second enable fail too.)
pub fn check_one_active(providers: &[IdpRow], kind: IdpKind) -> Result<(), String> {
    match providers
        .iter()
        .find(|p| p.is_enabled() && p.kind != kind.key())
    {
        Some(other) => {
            let label = IdpKind::from_key(&other.kind).map_or(other.kind.as_str(), |k| k.label());
            Err(format!(
                "{label} is already the active identity provider. Roster supports one identity provider at a \
                 time: disable {label} first, then enable {}.",
                kind.label()
            ))
        }
        None => Ok(()),
    }
}

fn admin_actor(admin_id: &str, admin_name: &str) -> Actor {
    Actor::Admin {
        id: admin_id.to_owned(),
        name: admin_name.to_owned(),
    }
}

/// Why a save did not happen.
#[derive(Debug)]
pub enum SaveError {
    Invalid(FieldErrors),
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SaveError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

pub fn oidc_settings(row: &IdpRow) -> anyhow::Result<OidcSettings> {
    serde_json::from_str(&row.settings).context("reading the stored Entra ID sign-in settings")
}

pub fn saml_settings(row: &IdpRow) -> anyhow::Result<SamlSettings> {
    serde_json::from_str(&row.settings).context("reading the stored SAML settings")
}

/// Saves the Entra ID (OpenID Connect) settings after reading the tenant's discovery document.
pub async fn save_entra(
    db: &Db,
    ctx: &IdentityContext,
    key: &MasterKey,
    form: &EntraIdpForm,
    actor: (&str, &str),
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), SaveError> {
    let stored = repo::find_provider(&db.pool, IdpKind::Entra.key()).await?;
    let has_secret = stored
        .as_ref()
        .is_some_and(|r| r.client_secret_sealed.is_some());
    let settings = form.validate(has_secret).map_err(SaveError::Invalid)?;
    // Discovery is read before anything is written, and outside any transaction.
    let authority = settings.authority();
    let discovered = match oidc::discover(&ctx.http, &authority).await {
        Ok(p) => p,
        Err(e) => {
            let field = if settings.cloud == "custom" {
                "issuer_url"
            } else {
                "tenant_id"
            };
            let mut errors = FieldErrors::new();
            errors.insert(
                field,
                format!(
                    "Could not read the OpenID configuration at {}: {e}",
                    oidc::discovery_url(&authority)
                ),
            );
            return Err(SaveError::Invalid(errors));
        }
    };
    let sealed = if form.client_secret.is_empty() {
        None
    } else {
        Some(key.seal(&SecretString::from(form.client_secret.clone()))?)
    };
    let settings_json = serde_json::to_string(&settings)?;
    let discovered_json = serde_json::to_string(&discovered)?;
    let mut tx = db.begin().await?;
    repo::upsert_provider(
        &mut *tx,
        &ProviderWrite {
            kind: IdpKind::Entra.key(),
            use_for_admin: form.use_for_admin.is_some(),
            use_for_registration: form.use_for_registration.is_some(),
            settings: &settings_json,
            sealed_secret: sealed.as_deref(),
            discovered: Some(&discovered_json),
            metadata_url: None,
            metadata_fetched_at: Some(now),
        },
        now,
    )
    .await?;
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, admin_actor(actor.0, actor.1), AuditAction::IdpSaved)
            .target("identity_provider", IdpKind::Entra.key())
            .from_request(meta)
            .details(json!({
                "tenant_id": settings.tenant_id,
                "client_id": settings.client_id,
                "cloud": settings.cloud,
                "issuer": discovered.issuer,
                "client_secret_changed": sealed.is_some(),
                "use_for_admin": form.use_for_admin.is_some(),
                "use_for_registration": form.use_for_registration.is_some(),
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Reads IdP metadata from a URL (size-limited, http/https only).
pub async fn fetch_metadata(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).context("the metadata URL is not a valid URL")?;
    // Metadata is not signature-checked, so it must come over HTTPS (plain HTTP only on this machine).
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    anyhow::ensure!(
        parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback),
        "the metadata URL must start with https://"
    );
    let resp = http
        .get(parsed)
        .send()
        .await
        .with_context(|| format!("could not reach {url}"))?;
    let status = resp.status();
    anyhow::ensure!(status.is_success(), "{url} answered HTTP {status}");
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("reading the metadata from {url}"))?;
    anyhow::ensure!(
        body.len() <= MAX_METADATA_BYTES,
        "the metadata at {url} is larger than 2 MB"
    );
    String::from_utf8(body.to_vec()).context("the metadata is not UTF-8 text")
}

/// What a SAML save resolved from the form: the IdP's description and where it came from.
struct ResolvedSaml {
    entity_id: String,
    sso_url: String,
    certs: Vec<saml::IdpCert>,
    cert_source: &'static str,
    metadata_url: Option<String>,
}

async fn resolve_saml(
    ctx: &IdentityContext,
    form: &SamlIdpForm,
    has_certs: bool,
    e: &mut FieldErrors,
) -> Option<ResolvedSaml> {
    let from_metadata = |d: saml::IdpDescriptor, url: Option<String>| ResolvedSaml {
        entity_id: d.entity_id,
        sso_url: d.sso_url,
        certs: d.signing_certs,
        cert_source: "metadata",
        metadata_url: url,
    };
    match form.source() {
        SamlSource::MetadataXml(xml) => match saml::parse_idp_metadata(&xml) {
            Ok(d) => Some(from_metadata(d, None)),
            Err(err) => {
                e.insert(
                    "metadata_xml",
                    format!("This metadata could not be used: {err}"),
                );
                None
            }
        },
        SamlSource::MetadataUrl(url) => {
            check_url(e, "metadata_url", &url, "the metadata URL");
            if e.contains_key("metadata_url") {
                return None;
            }
            match fetch_metadata(&ctx.http, &url).await {
                Ok(xml) => match saml::parse_idp_metadata(&xml) {
                    Ok(d) => Some(from_metadata(d, Some(url))),
                    Err(err) => {
                        e.insert(
                            "metadata_url",
                            format!("The document at this URL is not usable IdP metadata: {err}"),
                        );
                        None
                    }
                },
                Err(err) => {
                    e.insert(
                        "metadata_url",
                        format!("Could not read the metadata: {err:#}"),
                    );
                    None
                }
            }
        }
        SamlSource::Manual => {
            if form.entity_id.trim().is_empty() {
                e.insert(
                    "entity_id",
                    "Enter the IdP's entity ID (its Issuer), or give its metadata instead.".into(),
                );
            }
            check_url(e, "sso_url", &form.sso_url, "the IdP's single sign-on URL");
            let mut certs = Vec::new();
            for block in split_pem_blocks(&form.certificates) {
                match saml::parse_certificate(&block) {
                    Ok(c) => certs.push(c),
                    Err(err) => {
                        e.insert(
                            "certificates",
                            format!("A certificate could not be read: {err}. Paste each one in PEM form (-----BEGIN CERTIFICATE----- …)."),
                        );
                    }
                }
            }
            if certs.is_empty() && !has_certs && !e.contains_key("certificates") {
                e.insert(
                    "certificates",
                    "Paste the IdP's token-signing certificate (PEM). Without it no response can be trusted.".into(),
                );
            }
            Some(ResolvedSaml {
                entity_id: form.entity_id.trim().to_owned(),
                sso_url: form.sso_url.trim().to_owned(),
                certs,
                cert_source: "manual",
                metadata_url: None,
            })
        }
    }
}

/// Splits pasted text into PEM certificate blocks (or one bare base64 block).
pub fn split_pem_blocks(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    if !text.contains("-----BEGIN") {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        let after = &rest[start..];
        let Some(end_marker) = after.find("-----END") else {
            out.push(after.to_owned());
            break;
        };
        let tail = &after[end_marker + 8..];
        let close = tail.find("-----").map_or(tail.len(), |i| i + 5);
        out.push(after[..end_marker + 8 + close].to_owned());
        rest = &tail[close..];
    }
    out
}

/// Saves an AD FS or generic SAML IdP: from metadata (URL or XML) or by hand. New signing certificates are
/// added to the trusted ones (several at once, for rollover); each addition is audited.
pub async fn save_saml(
    db: &Db,
    ctx: &IdentityContext,
    kind: IdpKind,
    form: &SamlIdpForm,
    actor: (&str, &str),
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), SaveError> {
    let mut e = FieldErrors::new();
    let skew = form.skew(&mut e);
    let has_certs = !repo::list_certificates(&db.pool, kind.key())
        .await?
        .is_empty();
    let resolved = resolve_saml(ctx, form, has_certs, &mut e).await;
    let Some(resolved) = resolved.filter(|_| e.is_empty()) else {
        return Err(SaveError::Invalid(e));
    };
    let settings = SamlSettings {
        entity_id: resolved.entity_id,
        sso_url: resolved.sso_url,
        match_attribute: form.match_attribute(),
        clock_skew_secs: skew,
    };
    let settings_json = serde_json::to_string(&settings)?;
    let mut tx = db.begin().await?;
    repo::upsert_provider(
        &mut *tx,
        &ProviderWrite {
            kind: kind.key(),
            use_for_admin: form.use_for_admin.is_some(),
            use_for_registration: form.use_for_registration.is_some(),
            settings: &settings_json,
            sealed_secret: None,
            discovered: None,
            metadata_url: resolved.metadata_url.as_deref(),
            metadata_fetched_at: resolved.metadata_url.as_ref().map(|_| now),
        },
        now,
    )
    .await?;
    let actor = admin_actor(actor.0, actor.1);
    for cert in &resolved.certs {
        if repo::add_certificate(&mut *tx, kind.key(), cert, resolved.cert_source, now).await? {
            audit_repo::insert(
                &mut *tx,
                &cert_added_event(now, actor.clone(), kind, cert, resolved.cert_source)
                    .from_request(meta),
            )
            .await?;
        }
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::IdpSaved)
            .target("identity_provider", kind.key())
            .from_request(meta)
            .details(json!({
                "entity_id": settings.entity_id,
                "sso_url": settings.sso_url,
                "metadata_url": resolved.metadata_url,
                "match_attribute": settings.match_attribute,
                "clock_skew_secs": settings.clock_skew_secs,
                "use_for_admin": form.use_for_admin.is_some(),
                "use_for_registration": form.use_for_registration.is_some(),
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn cert_added_event(
    now: Millis,
    actor: Actor,
    kind: IdpKind,
    cert: &saml::IdpCert,
    source: &str,
) -> AuditEvent {
    AuditEvent::new(now, actor, AuditAction::IdpCertificateAdded)
        .target("identity_provider", kind.key())
        .details(json!({
            "fingerprint_sha256": cert.fingerprint_sha256,
            "subject": cert.subject,
            "not_after": cert.not_after,
            "source": source,
        }))
}

/// Why enabling did not happen.
#[derive(Debug)]
pub enum EnableError {
    /// Another IdP is active (the one-IdP rule), or this one is not set up yet.
    Refused(String),
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for EnableError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

/// Turns an IdP on or off. Enabling is refused while another one is active.
pub async fn set_enabled(
    db: &Db,
    kind: IdpKind,
    enabled: bool,
    actor: (&str, &str),
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), EnableError> {
    let mut tx = db.begin().await?;
    let providers = repo::list_providers(&mut *tx).await?;
    let Some(row) = providers.iter().find(|p| p.kind == kind.key()) else {
        return Err(EnableError::Refused(format!(
            "{} is not set up yet: save its settings first.",
            kind.label()
        )));
    };
    if row.is_enabled() == enabled {
        return Ok(());
    }
    if enabled {
        check_one_active(&providers, kind).map_err(EnableError::Refused)?;
        if kind.is_saml()
            && repo::list_certificates(&mut *tx, kind.key())
                .await?
                .is_empty()
        {
            return Err(EnableError::Refused(format!(
                "{} has no trusted signing certificate yet: add one first.",
                kind.label()
            )));
        }
    }
    match repo::set_enabled(&mut *tx, kind.key(), enabled, now).await {
        Ok(_) => {}
        Err(e) if crate::db::is_unique_violation(&e) => {
            // Another admin enabled a different IdP at the same moment: the index kept the rule.
            return Err(EnableError::Refused(
                "Another identity provider was enabled at the same moment. Roster supports one at a time: \
                 reload the page and disable it first."
                    .into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let action = if enabled {
        AuditAction::IdpEnabled
    } else {
        AuditAction::IdpDisabled
    };
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, admin_actor(actor.0, actor.1), action)
            .target("identity_provider", kind.key())
            .from_request(meta),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a trusted certificate (audited).
pub async fn remove_certificate(
    db: &Db,
    kind: IdpKind,
    id: &str,
    actor: (&str, &str),
    meta: &RequestMeta,
    now: Millis,
) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    let Some(cert) = repo::delete_certificate(&mut *tx, kind.key(), id).await? else {
        return Ok(false);
    };
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(
            now,
            admin_actor(actor.0, actor.1),
            AuditAction::IdpCertificateRemoved,
        )
        .target("identity_provider", kind.key())
        .from_request(meta)
        .details(json!({ "fingerprint_sha256": cert.fingerprint, "subject": cert.subject })),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Re-reads the metadata of one IdP configured by URL: updates its endpoints, adds new signing
/// certificates (audited as the system), and records an error when the document cannot be used.
pub async fn refresh_metadata(
    db: &Db,
    ctx: &IdentityContext,
    kind: IdpKind,
    now: Millis,
) -> anyhow::Result<()> {
    let Some(row) = repo::find_provider(&db.pool, kind.key()).await? else {
        return Ok(());
    };
    let Some(url) = row.metadata_url.clone() else {
        return Ok(());
    };
    let parsed = match fetch_metadata(&ctx.http, &url).await {
        Ok(xml) => saml::parse_idp_metadata(&xml).map_err(|e| anyhow::anyhow!("{e}")),
        Err(e) => Err(e),
    };
    let mut tx = db.begin().await?;
    match parsed {
        Ok(d) => {
            let mut settings = saml_settings(&row)?;
            settings.entity_id = d.entity_id;
            settings.sso_url = d.sso_url;
            let json = serde_json::to_string(&settings)?;
            repo::record_metadata_refresh(&mut *tx, kind.key(), Some(&json), None, now).await?;
            for cert in &d.signing_certs {
                if repo::add_certificate(&mut *tx, kind.key(), cert, "metadata", now).await? {
                    tracing::info!(idp = kind.key(), fingerprint = %cert.fingerprint_sha256, "New IdP signing certificate trusted from metadata.");
                    audit_repo::insert(
                        &mut *tx,
                        &cert_added_event(now, Actor::System, kind, cert, "metadata"),
                    )
                    .await?;
                }
            }
            notes::resolve(&mut *tx, &metadata_note_key(kind), now).await?;
        }
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::warn!(idp = kind.key(), error = %msg, "IdP metadata refresh failed.");
            repo::record_metadata_refresh(&mut *tx, kind.key(), None, Some(&msg), now).await?;
            notes::raise(
                &mut *tx,
                &NewNotification {
                    kind: "idp_metadata",
                    dedup_key: metadata_note_key(kind),
                    severity: Severity::Warning,
                    title: format!("{} metadata could not be refreshed", kind.label()),
                    body: format!(
                        "Reading {url} failed: {msg}. Sign-in keeps using the certificates trusted so far; \
                         new signing certificates will not be picked up until the metadata can be read."
                    ),
                    action_text: "Open the IdP settings".into(),
                    action_href: Some(format!("/admin/identity/{}", kind.slug())),
                    details: json!({ "url": url }),
                    run_id: None,
                },
                now,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn metadata_note_key(kind: IdpKind) -> String {
    format!("idp_metadata:{}", kind.key())
}

/// Raises a notification for each trusted certificate that expires within 30 days (resolving the ones
/// that no longer do, e.g. once removed).
pub async fn check_certificate_expiry(db: &Db, now: Millis) -> anyhow::Result<()> {
    let certs = repo::list_all_certificates(&db.pool).await?;
    let mut tx = db.begin().await?;
    let open = notes::list_open_keys(&mut *tx, "idp_certificate").await?;
    let mut warned = Vec::new();
    for c in &certs {
        if c.not_after - now > CERT_WARNING {
            continue;
        }
        let kind = IdpKind::from_key(&c.kind).map_or(c.kind.as_str(), |k| k.label());
        let key = format!("idp_certificate:{}:{}", c.kind, c.fingerprint);
        let days = (c.not_after - now) / DAY;
        let when = if c.not_after <= now {
            "has expired".to_owned()
        } else {
            format!("expires in {days} day{}", if days == 1 { "" } else { "s" })
        };
        notes::raise(
            &mut *tx,
            &NewNotification {
                kind: "idp_certificate",
                dedup_key: key.clone(),
                severity: if c.not_after <= now {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                title: format!("{kind} signing certificate {when}"),
                body: format!(
                    "The trusted signing certificate \"{}\" (SHA-256 {}) {when}. Add the IdP's new certificate \
                     (or refresh its metadata) before then, or sign-in will stop working.",
                    c.subject, c.fingerprint
                ),
                action_text: "Open the IdP settings".into(),
                action_href: IdpKind::from_key(&c.kind).map(|k| format!("/admin/identity/{}", k.slug())),
                details: json!({ "fingerprint_sha256": c.fingerprint, "not_after": c.not_after }),
                run_id: None,
            },
            now,
        )
        .await?;
        warned.push(key);
    }
    for key in open.iter().filter(|k| !warned.contains(k)) {
        notes::resolve(&mut *tx, key, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The identity worker's periodic duties: metadata refresh every 24 hours, certificate expiry warnings,
/// and clearing expired sign-in requests and replay-cache entries.
pub async fn housekeeping(db: &Db, ctx: &IdentityContext, now: Millis) -> anyhow::Result<()> {
    for row in repo::list_providers(&db.pool).await? {
        let Some(kind) = IdpKind::from_key(&row.kind) else {
            continue;
        };
        let due = row.metadata_url.is_some()
            && row
                .metadata_fetched_at
                .is_none_or(|at| now - at >= METADATA_REFRESH);
        if due {
            refresh_metadata(db, ctx, kind, now).await?;
        }
    }
    check_certificate_expiry(db, now).await?;
    repo::delete_expired_sso_requests(&db.pool, now).await?;
    repo::forget_expired_assertions(&db.pool, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, enabled: bool) -> IdpRow {
        IdpRow {
            kind: kind.into(),
            enabled: i64::from(enabled),
            use_for_admin: 0,
            use_for_registration: 0,
            settings: "{}".into(),
            client_secret_sealed: None,
            discovered: None,
            metadata_url: None,
            metadata_fetched_at: None,
            metadata_error: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn one_active_idp() {
        let rows = vec![row("entra", true), row("adfs", false)];
        let msg = check_one_active(&rows, IdpKind::Adfs).unwrap_err();
        assert!(msg.contains("disable Entra ID first"), "{msg}");
        assert!(check_one_active(&rows, IdpKind::Entra).is_ok());
        assert!(check_one_active(&[row("saml", false)], IdpKind::Adfs).is_ok());
    }

    #[test]
    fn pem_blocks_split() {
        let two = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----";
        let b = split_pem_blocks(two);
        assert_eq!(b.len(), 2);
        assert!(b[1].contains("BBB") && b[1].ends_with("-----END CERTIFICATE-----"));
        assert_eq!(split_pem_blocks("  MIIB  ").len(), 1);
        assert!(split_pem_blocks(" ").is_empty());
    }
}
