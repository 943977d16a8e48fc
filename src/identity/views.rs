//! Page structs for Admin > Identity and the public refusal page.

use askama::Template;
use askama_web::WebTemplate;
use serde_json::Value;

use crate::clock::{DAY, Millis};
use crate::error::FieldErrors;
use crate::identity::flow::{self, sp_config};
use crate::identity::model::{ALL_KINDS, EntraIdpForm, IdpKind, SamlIdpForm, UPN_CLAIM};
use crate::identity::repo::{self, CertRow, IdpRow, SsoRequestRow};
use crate::identity::service::{CERT_WARNING, oidc_settings, saml_settings};
use crate::web::AppState;
use crate::web::page::PageCtx;

/// A date as `YYYY-MM-DD` (UTC).
pub fn day(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).map_or_else(
        |_| "—".into(),
        |t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
    )
}

/// A date and time as `YYYY-MM-DD HH:MM UTC`.
pub fn when(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).map_or_else(
        |_| "—".into(),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        },
    )
}

pub struct CertView {
    pub id: String,
    pub subject: String,
    pub fingerprint: String,
    pub expires: String,
    /// "ok", "soon" (within 30 days) or "expired".
    pub state: &'static str,
    pub days_left: i64,
    pub source: String,
    pub added: String,
}

impl CertView {
    pub fn new(c: &CertRow, now: Millis) -> Self {
        let state = if c.not_after <= now {
            "expired"
        } else if c.not_after - now <= CERT_WARNING {
            "soon"
        } else {
            "ok"
        };
        Self {
            id: c.id.clone(),
            subject: c.subject.clone(),
            fingerprint: c.fingerprint.clone(),
            expires: day(c.not_after),
            state,
            days_left: (c.not_after - now) / DAY,
            source: c.source.clone(),
            added: day(c.added_at),
        }
    }
}

/// The SP's own values, shown on every setup page.
pub struct SpView {
    pub entity_id: String,
    pub acs_url: String,
    pub redirect_uri: String,
}

impl SpView {
    pub fn new(state: &AppState) -> Self {
        let sp = sp_config(state);
        Self {
            entity_id: sp.entity_id,
            acs_url: sp.acs_url,
            redirect_uri: flow::oidc_redirect_uri(state),
        }
    }
}

/// One IdP kind on the overview.
pub struct KindCard {
    pub slug: &'static str,
    pub label: &'static str,
    pub setup_title: &'static str,
    pub configured: bool,
    pub enabled: bool,
    pub use_for_admin: bool,
    pub use_for_registration: bool,
    pub summary: String,
    pub certs: Vec<CertView>,
    pub metadata_error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "identity/index.html")]
pub struct IdentityPage {
    pub ctx: PageCtx,
    pub active: Option<String>,
    pub cards: Vec<KindCard>,
    pub sp: SpView,
}

fn summary(row: &IdpRow) -> String {
    match IdpKind::from_key(&row.kind) {
        Some(IdpKind::Entra) => oidc_settings(row)
            .map(|s| {
                if s.cloud == "custom" {
                    format!("Issuer {} · Application {}", s.issuer_url, s.client_id)
                } else {
                    format!("Tenant {} · Application {}", s.tenant_id, s.client_id)
                }
            })
            .unwrap_or_default(),
        Some(_) => saml_settings(row)
            .map(|s| format!("Entity ID {}", s.entity_id))
            .unwrap_or_default(),
        None => String::new(),
    }
}

impl IdentityPage {
    pub async fn build(state: &AppState, ctx: PageCtx) -> anyhow::Result<Self> {
        let now = state.clock.now_ms();
        let rows = repo::list_providers(&state.db.pool).await?;
        let mut cards = Vec::new();
        let mut active = None;
        for kind in ALL_KINDS {
            let row = rows.iter().find(|r| r.kind == kind.key());
            let certs = repo::list_certificates(&state.db.pool, kind.key())
                .await?
                .iter()
                .map(|c| CertView::new(c, now))
                .collect();
            if row.is_some_and(IdpRow::is_enabled) {
                active = Some(kind.label().to_owned());
            }
            cards.push(KindCard {
                slug: kind.slug(),
                label: kind.label(),
                setup_title: kind.setup_title(),
                configured: row.is_some(),
                enabled: row.is_some_and(IdpRow::is_enabled),
                use_for_admin: row.is_some_and(|r| r.use_for_admin != 0),
                use_for_registration: row.is_some_and(|r| r.use_for_registration != 0),
                summary: row.map(summary).unwrap_or_default(),
                certs,
                metadata_error: row.and_then(|r| r.metadata_error.clone()),
            });
        }
        Ok(Self {
            ctx,
            active,
            cards,
            sp: SpView::new(state),
        })
    }
}

/// The status strip shared by the setup pages.
pub struct StatusView {
    pub configured: bool,
    pub enabled: bool,
    pub other_active: Option<&'static str>,
}

async fn status_of(
    state: &AppState,
    kind: IdpKind,
) -> anyhow::Result<(Option<IdpRow>, StatusView)> {
    let rows = repo::list_providers(&state.db.pool).await?;
    let row = rows.iter().find(|r| r.kind == kind.key()).cloned();
    let other_active = rows
        .iter()
        .find(|r| r.is_enabled() && r.kind != kind.key())
        .and_then(|r| IdpKind::from_key(&r.kind))
        .map(IdpKind::label);
    let status = StatusView {
        configured: row.is_some(),
        enabled: row.as_ref().is_some_and(IdpRow::is_enabled),
        other_active,
    };
    Ok((row, status))
}

pub struct OptionView {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "identity/entra.html")]
pub struct EntraIdpPage {
    pub ctx: PageCtx,
    pub form: EntraIdpForm,
    pub errors: FieldErrors,
    pub has_secret: bool,
    pub clouds: Vec<OptionView>,
    pub status: StatusView,
    pub issuer: Option<String>,
    pub sp: SpView,
}

impl EntraIdpPage {
    pub async fn build(
        state: &AppState,
        ctx: PageCtx,
        form: Option<EntraIdpForm>,
        errors: FieldErrors,
    ) -> anyhow::Result<Self> {
        let (row, status) = status_of(state, IdpKind::Entra).await?;
        let mut form = match (form, &row) {
            (Some(f), _) => f,
            (None, Some(r)) => {
                let s = oidc_settings(r)?;
                EntraIdpForm {
                    tenant_id: s.tenant_id,
                    client_id: s.client_id,
                    client_secret: String::new(),
                    cloud: s.cloud,
                    issuer_url: s.issuer_url,
                    use_for_admin: (r.use_for_admin != 0).then(|| "on".into()),
                    use_for_registration: (r.use_for_registration != 0).then(|| "on".into()),
                }
            }
            (None, None) => EntraIdpForm {
                cloud: "global".into(),
                use_for_registration: Some("on".into()),
                ..Default::default()
            },
        };
        // A secret is never sent back to the browser.
        form.client_secret.clear();
        let clouds = [
            ("global", "Global (login.microsoftonline.com)"),
            ("usgov", "US Government (login.microsoftonline.us)"),
            ("china", "China (21Vianet)"),
            ("custom", "Custom issuer URL"),
        ]
        .into_iter()
        .map(|(value, label)| OptionView {
            value,
            label,
            selected: form.cloud == value,
        })
        .collect();
        let issuer = row
            .as_ref()
            .and_then(|r| r.discovered.as_deref())
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|v| v["issuer"].as_str().map(str::to_owned));
        Ok(Self {
            ctx,
            has_secret: row
                .as_ref()
                .is_some_and(|r| r.client_secret_sealed.is_some()),
            form,
            errors,
            clouds,
            status,
            issuer,
            sp: SpView::new(state),
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "identity/saml.html")]
pub struct SamlIdpPage {
    pub ctx: PageCtx,
    pub slug: &'static str,
    pub label: &'static str,
    pub is_adfs: bool,
    pub form: SamlIdpForm,
    pub errors: FieldErrors,
    pub status: StatusView,
    pub certs: Vec<CertView>,
    pub metadata_fetched: Option<String>,
    pub metadata_error: Option<String>,
    pub sp: SpView,
    pub js_href: &'static str,
    pub upn_claim: &'static str,
}

impl SamlIdpPage {
    pub async fn build(
        state: &AppState,
        ctx: PageCtx,
        kind: IdpKind,
        form: Option<SamlIdpForm>,
        errors: FieldErrors,
    ) -> anyhow::Result<Self> {
        let now = state.clock.now_ms();
        let (row, status) = status_of(state, kind).await?;
        let form = match (form, &row) {
            (Some(f), _) => f,
            (None, Some(r)) => {
                let s = saml_settings(r)?;
                SamlIdpForm {
                    metadata_url: r.metadata_url.clone().unwrap_or_default(),
                    metadata_xml: String::new(),
                    entity_id: s.entity_id,
                    sso_url: s.sso_url,
                    certificates: String::new(),
                    match_attribute: s.match_attribute,
                    clock_skew_secs: s.clock_skew_secs.to_string(),
                    use_for_admin: (r.use_for_admin != 0).then(|| "on".into()),
                    use_for_registration: (r.use_for_registration != 0).then(|| "on".into()),
                }
            }
            (None, None) => SamlIdpForm {
                match_attribute: UPN_CLAIM.into(),
                clock_skew_secs: "180".into(),
                use_for_registration: Some("on".into()),
                ..Default::default()
            },
        };
        let certs = repo::list_certificates(&state.db.pool, kind.key())
            .await?
            .iter()
            .map(|c| CertView::new(c, now))
            .collect();
        Ok(Self {
            ctx,
            slug: kind.slug(),
            label: kind.label(),
            is_adfs: kind == IdpKind::Adfs,
            form,
            errors,
            status,
            certs,
            metadata_fetched: row
                .as_ref()
                .filter(|r| r.metadata_url.is_some())
                .and_then(|r| r.metadata_fetched_at)
                .map(when),
            metadata_error: row.and_then(|r| r.metadata_error),
            sp: SpView::new(state),
            js_href: crate::web::assets::js_href(),
            upn_claim: UPN_CLAIM,
        })
    }
}

pub struct ClaimRow {
    pub name: String,
    pub value: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "identity/test_result.html")]
pub struct TestResultPage {
    pub ctx: PageCtx,
    pub idp_label: &'static str,
    pub slug: &'static str,
    pub ok: bool,
    pub refusal: Option<String>,
    pub refusal_code: Option<String>,
    pub protocol: String,
    pub display: String,
    pub claims: Vec<ClaimRow>,
    pub matched_user: Option<(String, String)>,
}

impl TestResultPage {
    pub async fn build(
        state: &AppState,
        ctx: PageCtx,
        row: &SsoRequestRow,
    ) -> anyhow::Result<Self> {
        let kind = IdpKind::from_key(&row.kind).unwrap_or(IdpKind::Saml);
        let claims: Value = row
            .claims
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or(Value::Null);
        let mut list = Vec::new();
        let bag = if claims["attributes"].is_object() {
            &claims["attributes"]
        } else {
            &claims["claims"]
        };
        if let Some(name_id) = claims["name_id"].as_str() {
            list.push(ClaimRow {
                name: "NameID".into(),
                value: name_id.into(),
            });
        }
        if let Some(obj) = bag.as_object() {
            for (k, v) in obj {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                list.push(ClaimRow {
                    name: k.clone(),
                    value,
                });
            }
        }
        let matched_user = match &row.matched_user_id {
            Some(id) => {
                sqlx::query_as::<_, (String, String)>(
                    "SELECT id, upn FROM directory_users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&state.db.pool)
                .await?
            }
            None => None,
        };
        let (refusal_code, refusal) = match row.refusal.as_deref().and_then(|r| r.split_once('|')) {
            Some((c, m)) => (Some(c.to_owned()), Some(m.to_owned())),
            None => (None, None),
        };
        Ok(Self {
            ctx,
            idp_label: kind.label(),
            slug: kind.slug(),
            ok: row.outcome.as_deref() == Some("ok"),
            refusal,
            refusal_code,
            protocol: claims["protocol"].as_str().unwrap_or_default().to_owned(),
            display: claims["display"].as_str().unwrap_or_default().to_owned(),
            claims: list,
            matched_user,
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "identity/refused.html")]
pub struct SsoRefusedPage {
    pub ctx: PageCtx,
    pub message: String,
    pub code: String,
}

/// The "Sign in with …" label for the sign-in page, when an IdP is on for admin sign-in.
pub async fn idp_label_for_login(state: &AppState) -> anyhow::Result<Option<&'static str>> {
    Ok(
        flow::provider_for(state, crate::identity::model::Purpose::Admin, None)
            .await?
            .and_then(|r| IdpKind::from_key(&r.kind))
            .map(IdpKind::label),
    )
}
