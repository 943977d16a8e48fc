//! Rules for the Entra ID user source: load the form, save (sealed secret, audited), test the connection.

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::Millis;
use crate::db::Db;
use crate::secrets::MasterKey;
use crate::settings::model::{
    AttributeRow, Cloud, ENTRA_SOURCE_ID, EntraForm, EntraSettings, FormErrors,
};
use crate::settings::repo::{self, StoredSource};
use crate::sync::graph::{GraphClient, GraphConfig, GraphError, RetryPolicy};
use crate::web::RequestMeta;

/// The form as stored, or a blank one for a first set-up.
pub fn form_from(stored: Option<&StoredSource>) -> EntraForm {
    let Some(s) = stored.map(|s| &s.settings) else {
        return EntraForm {
            sync_interval: "60".into(),
            cloud: "global".into(),
            apple_id_mode: "none".into(),
            removal_guard_percent: "10".into(),
            removal_guard_min: "20".into(),
            attributes: vec![AttributeRow::default()],
            ..EntraForm::default()
        };
    };
    let (authority_url, graph_url) = match &s.cloud {
        Cloud::Custom { authority, graph } => (authority.clone(), graph.clone()),
        _ => (String::new(), String::new()),
    };
    let mut attributes: Vec<AttributeRow> = s
        .custom_attributes
        .iter()
        .map(|a| AttributeRow {
            name: a.name.clone(),
            property: a.property.clone(),
        })
        .collect();
    if attributes.is_empty() {
        attributes.push(AttributeRow::default());
    }
    EntraForm {
        name: s.name.clone(),
        enabled: s.enabled,
        sync_interval: s.sync_interval_minutes.to_string(),
        auto_invite: s.auto_invite,
        tenant_id: s.tenant_id.clone(),
        client_id: s.client_id.clone(),
        client_secret: String::new(),
        cloud: s.cloud.key().into(),
        authority_url,
        graph_url,
        apple_id_mode: s.apple_id_mode.key().into(),
        apple_id_subdomain: s.apple_id_subdomain,
        removal_guard_percent: s.removal_guard_percent.to_string(),
        removal_guard_min: s.removal_guard_min.to_string(),
        attributes,
    }
}

/// Settings as audit details: everything but the secret.
fn audit_view(s: &EntraSettings) -> Value {
    json!({
        "name": s.name,
        "enabled": s.enabled,
        "sync_interval_minutes": s.sync_interval_minutes,
        "auto_invite": s.auto_invite,
        "tenant_id": s.tenant_id,
        "client_id": s.client_id,
        "cloud": s.cloud.key(),
        "authority_url": s.cloud.authority(),
        "graph_url": s.cloud.graph(),
        "apple_id_mode": s.apple_id_mode.key(),
        "apple_id_subdomain": s.apple_id_subdomain,
        "custom_attributes": s.custom_attributes,
        "removal_guard_percent": s.removal_guard_percent,
        "removal_guard_min": s.removal_guard_min,
    })
}

/// What changed between two audit views: `{"field": {"from": …, "to": …}}`.
fn diff(before: &Value, after: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, v) in a {
            if b.get(k) != Some(v) {
                out.insert(
                    k.clone(),
                    json!({ "from": b.get(k).cloned().unwrap_or(Value::Null), "to": v }),
                );
            }
        }
    }
    Value::Object(out)
}

#[derive(Debug)]
pub enum SaveError {
    Invalid(FormErrors),
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SaveError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

/// Validates and stores the settings, sealing a new secret; audited in the same transaction.
pub async fn save(
    db: &Db,
    key: &MasterKey,
    now: Millis,
    form: &EntraForm,
    actor: Actor,
    meta: &RequestMeta,
) -> Result<EntraSettings, SaveError> {
    let stored = repo::find_source(&db.pool, ENTRA_SOURCE_ID).await?;
    let has_secret = stored
        .as_ref()
        .is_some_and(|s| s.client_secret_sealed.is_some());
    let settings = form.validate(has_secret).map_err(SaveError::Invalid)?;
    let sealed = if form.client_secret.is_empty() {
        None
    } else {
        Some(key.seal(&SecretString::from(form.client_secret.clone()))?)
    };
    let before = stored
        .as_ref()
        .map(|s| audit_view(&s.settings))
        .unwrap_or(json!({}));
    let after = audit_view(&settings);
    let mut changes = diff(&before, &after);
    if let Some(obj) = changes.as_object_mut() {
        obj.insert(
            "client_secret".into(),
            json!(if sealed.is_some() {
                "changed (value not recorded)"
            } else {
                "unchanged"
            }),
        );
    }
    // Issue 8: a renamed custom attribute (same property, new name) has its references rewritten in the
    // same transaction: configurations and the per-user values (see crate::configurations::service).
    let renames = stored.as_ref().map_or_else(Vec::new, |s| {
        crate::configurations::model::detect_renames(
            &s.settings.custom_attributes,
            &settings.custom_attributes,
        )
    });
    let mut tx = db.begin().await?;
    // A round that is running writes custom attributes under the names it started with; a rename now
    // would be undone on the pages it writes afterwards. Renames wait until no round holds the lease.
    if !renames.is_empty() && crate::sync::repo::lease_held(&mut *tx, ENTRA_SOURCE_ID, now).await? {
        let mut e = FormErrors::default();
        e.fields.insert(
            "custom_attributes",
            "A sync round is running. Rename custom attributes after it finishes (see the Sync page); nothing was saved."
                .into(),
        );
        return Err(SaveError::Invalid(e));
    }
    repo::upsert_source(&mut *tx, ENTRA_SOURCE_ID, &settings, sealed.as_deref(), now).await?;
    let renamed = crate::configurations::service::propagate_renames(&mut tx, &renames).await?;
    let mut details = json!({ "created": stored.is_none(), "changes": changes });
    if !renames.is_empty()
        && let Some(obj) = details.as_object_mut()
    {
        obj.insert("renamed_variables".into(), json!(renamed));
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor, AuditAction::EntraSourceSaved)
            .target("user_source", ENTRA_SOURCE_ID)
            .from_request(meta)
            .details(details),
    )
    .await?;
    tx.commit().await?;
    db.forget(repo::CUSTOM_NAMES);
    Ok(settings)
}

/// What "Test connection" found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Ok {
        users_on_first_page: usize,
        returned: Vec<String>,
        missing: Vec<String>,
    },
    /// Credentials or tenant refused, with the AADSTS code and what to do.
    AuthFailed {
        code: Option<String>,
        detail: String,
        advice: String,
    },
    /// 403 Authorization_RequestDenied and friends.
    PermissionDenied {
        code: String,
        detail: String,
    },
    Unreachable {
        detail: String,
    },
    Failed {
        detail: String,
    },
}

/// What an admin should do about an AADSTS code.
pub fn auth_advice(code: Option<&str>) -> &'static str {
    match code {
        Some("AADSTS7000215") => {
            "The client secret is wrong. Copy the secret's Value (not its Secret ID) from Certificates & secrets."
        }
        Some("AADSTS7000222") => {
            "The client secret has expired. Create a new one in Certificates & secrets and enter its Value here."
        }
        Some("AADSTS700016") => {
            "No application with this Application (client) ID exists in this tenant. Check both IDs."
        }
        Some("AADSTS90002") | Some("AADSTS900023") => {
            "The tenant was not found. Check the Directory (tenant) ID and the cloud."
        }
        Some("AADSTS70011") | Some("AADSTS1002012") => {
            "The requested scope was refused. Check the Graph URL of the cloud."
        }
        _ => "Check the Directory (tenant) ID, the Application (client) ID and the client secret.",
    }
}

/// Gets a token and reads one page of users with the selected properties. Saves nothing.
pub async fn test_connection(settings: &EntraSettings, secret: SecretString) -> TestOutcome {
    let client = match GraphClient::new(
        GraphConfig {
            authority: settings.cloud.authority().to_owned(),
            graph: settings.cloud.graph().to_owned(),
            tenant_id: settings.tenant_id.clone(),
            client_id: settings.client_id.clone(),
            client_secret: secret,
        },
        RetryPolicy::interactive(),
    ) {
        Ok(c) => c,
        Err(e) => {
            return TestOutcome::Failed {
                detail: format!("{e:#}"),
            };
        }
    };
    let select = settings.user_select();
    let url = client.url(&format!("/users?$select={}&$top=999", select.join(",")));
    match client.get_json(&url).await {
        Ok(page) => {
            let users = page
                .get("value")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let (returned, missing): (Vec<String>, Vec<String>) = select
                .iter()
                .filter(|p| p.as_str() != "id")
                .cloned()
                .partition(|p| users.iter().any(|u| u.get(p.as_str()).is_some()));
            TestOutcome::Ok {
                users_on_first_page: users.len(),
                returned,
                missing,
            }
        }
        Err(GraphError::Auth {
            aadsts,
            description,
            ..
        }) => TestOutcome::AuthFailed {
            advice: auth_advice(aadsts.as_deref()).to_owned(),
            code: aadsts,
            detail: description,
        },
        Err(GraphError::Api {
            status: 403,
            code,
            message,
            ..
        }) => TestOutcome::PermissionDenied {
            code,
            detail: message,
        },
        Err(e @ (GraphError::Unreachable { .. } | GraphError::Throttled { .. })) => {
            TestOutcome::Unreachable {
                detail: e.to_string(),
            }
        }
        Err(e) => TestOutcome::Failed {
            detail: e.to_string(),
        },
    }
}

/// The secret to test with: the one typed, else the stored one.
pub fn secret_for_test(
    form: &EntraForm,
    stored: Option<&StoredSource>,
    key: &MasterKey,
) -> Option<SecretString> {
    if !form.client_secret.is_empty() {
        return Some(SecretString::from(form.client_secret.clone()));
    }
    stored
        .and_then(|s| s.client_secret_sealed.as_deref())
        .and_then(|sealed| key.open(sealed).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lists_only_changed_fields() {
        let d = diff(
            &json!({"a": 1, "b": "x"}),
            &json!({"a": 1, "b": "y", "c": true}),
        );
        assert_eq!(
            d,
            json!({"b": {"from": "x", "to": "y"}, "c": {"from": null, "to": true}})
        );
    }
}
