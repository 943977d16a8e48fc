//! The notifications sync raises and resolves: the reference's three (service unreachable, all / some user
//! attributes not synchronized) plus authentication failures, lasting throttling and other failed rounds.
//! One notification per problem (its dedup key); a successful round resolves what it proves fixed.

use serde_json::json;

use crate::clock::Millis;
use crate::db::Db;
use crate::directory::repo as dir;
use crate::notifications::{NewNotification, Severity, repo as notes};
use crate::settings::model::EntraSettings;
use crate::sync::graph::GraphError;
use crate::sync::service::SyncError;

pub const UNREACHABLE: &str = "entra_unreachable";
pub const AUTH: &str = "entra_auth";
pub const THROTTLED: &str = "entra_throttled";
pub const FAILED: &str = "entra_sync_failed";
pub const ATTRIBUTES_ALL: &str = "entra_attributes_all";
pub const ATTRIBUTES_SOME: &str = "entra_attributes_some";
pub const REMOVALS_HELD: &str = "entra_removals_held";
pub const UPN_CLASH: &str = "entra_upn_clash";
pub const APPLE_ID_CONFLICT: &str = "apple_id_conflict";

const SETTINGS_HREF: &str = "/admin/azure/entra-user-source";

fn key(kind: &str, source_id: &str) -> String {
    format!("{kind}:{source_id}")
}

fn note(kind: &'static str, source_id: &str, run_id: &str, severity: Severity) -> NewNotification {
    NewNotification {
        kind,
        dedup_key: key(kind, source_id),
        severity,
        title: String::new(),
        body: String::new(),
        action_text: String::new(),
        action_href: None,
        details: json!({}),
        run_id: Some(run_id.to_owned()),
    }
}

/// Raises the notification that fits a failed round (none for a cancelled or skipped one).
pub async fn after_failure(
    db: &Db,
    source_id: &str,
    run_id: &str,
    err: &SyncError,
    now: Millis,
) -> anyhow::Result<()> {
    let n = match err {
        SyncError::Graph(GraphError::Unreachable { detail }) => NewNotification {
            title: "Entra ID service is unreachable".into(),
            body: format!("The sync round could not reach Microsoft Entra ID / Microsoft Graph. Last error: {detail}."),
            action_text: "Check that this server can reach the authority and Graph URLs of your cloud (proxy, firewall, \
                          DNS). Roster tries again at the next interval; use Sync now once it is fixed."
                .into(),
            action_href: Some("/admin/sync".into()),
            details: json!({ "last_error": detail }),
            ..note(UNREACHABLE, source_id, run_id, Severity::Error)
        },
        SyncError::Graph(GraphError::Auth { aadsts, description, error, .. }) => NewNotification {
            title: format!(
                "Entra ID refused Roster's sign-in{}",
                aadsts.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            body: format!("The token request failed with {error}: {description}"),
            action_text: crate::settings::service::auth_advice(aadsts.as_deref()).into(),
            action_href: Some(SETTINGS_HREF.into()),
            details: json!({ "error": error, "aadsts": aadsts }),
            ..note(AUTH, source_id, run_id, Severity::Error)
        },
        SyncError::Graph(GraphError::Api { status: 401 | 403, code, message, .. }) => NewNotification {
            title: format!("Entra ID refused access to the directory ({code})"),
            body: format!("Microsoft Graph answered: {message}"),
            action_text: "Grant the application the Microsoft Graph application permissions User.Read.All and \
                          GroupMember.Read.All, grant admin consent, then use Sync now."
                .into(),
            action_href: Some(SETTINGS_HREF.into()),
            details: json!({ "code": code }),
            ..note(AUTH, source_id, run_id, Severity::Error)
        },
        SyncError::Graph(GraphError::Throttled { detail }) => NewNotification {
            title: "Microsoft Graph kept throttling the sync".into(),
            body: format!("Requests were throttled (HTTP 429) beyond the retry budget: {detail}."),
            action_text: "Roster tries again at the next interval. If this repeats, choose a longer Sync Interval or \
                          check other applications that use the same app registration."
                .into(),
            action_href: Some("/admin/sync".into()),
            details: json!({ "last_error": detail }),
            ..note(THROTTLED, source_id, run_id, Severity::Warning)
        },
        SyncError::Graph(e) => NewNotification {
            title: "Entra ID sync failed".into(),
            body: format!("The sync round stopped: {e}."),
            action_text: "Check the custom attributes' property names on the Entra ID User Source page; the round \
                          record on the Sync page has the details."
                .into(),
            action_href: Some("/admin/sync".into()),
            details: json!({ "error": e.to_string() }),
            ..note(FAILED, source_id, run_id, Severity::Error)
        },
        SyncError::Unexpected(e) => NewNotification {
            title: "Entra ID sync failed".into(),
            body: format!("The sync round stopped: {e:#}."),
            action_text: "See the Sync page and the server log for details; Roster tries again at the next interval."
                .into(),
            action_href: Some("/admin/sync".into()),
            details: json!({}),
            ..note(FAILED, source_id, run_id, Severity::Error)
        },
        SyncError::Cancelled | SyncError::Busy | SyncError::NotConfigured | SyncError::DeltaRefused(_) => {
            return Ok(());
        }
    };
    notes::raise(&db.pool, &n, now).await?;
    Ok(())
}

fn custom_names(settings: &EntraSettings) -> Vec<String> {
    settings
        .custom_attributes
        .iter()
        .map(|a| a.name.clone())
        .collect()
}

/// Users lacking each selected attribute: (attribute, users without a value, custom?), and the active total.
async fn attribute_gaps(
    db: &Db,
    settings: &EntraSettings,
    source_id: &str,
) -> anyhow::Result<(i64, Vec<(String, i64, bool)>)> {
    let customs = custom_names(settings);
    let (total, gaps) = dir::attribute_gaps(&db.pool, source_id, &customs).await?;
    let names = dir::OPTIONAL_COLUMNS
        .iter()
        .map(|(graph_name, _)| ((*graph_name).to_owned(), false))
        .chain(customs.into_iter().map(|name| (name, true)));
    let missing = names
        .zip(gaps)
        .map(|((name, custom), n)| (name, n, custom))
        .collect();
    Ok((total, missing))
}

/// Whether some selected attribute has no value for any user: it looks dropped (permission, rejected
/// property), so the next round re-reads everyone instead of only changes, to see whether it came back.
pub async fn attributes_dropped(
    db: &Db,
    settings: &EntraSettings,
    source_id: &str,
) -> anyhow::Result<bool> {
    let customs = custom_names(settings);
    Ok(dir::some_attribute_unset(&db.pool, source_id, &customs).await?)
}

/// A successful round proves Graph reachable and the credentials good; then checks the attributes.
pub async fn after_success(
    db: &Db,
    settings: &EntraSettings,
    source_id: &str,
    run_id: &str,
    now: Millis,
) -> anyhow::Result<()> {
    for kind in [UNREACHABLE, AUTH, THROTTLED, FAILED] {
        notes::resolve(&db.pool, &key(kind, source_id), now).await?;
    }
    check_attributes(db, settings, source_id, run_id, now).await
}

/// Raises "All user attributes …" when no selected attribute has a value for any user, "Some user
/// attributes …" when a custom attribute is missing for some users or a built-in one for all; resolves
/// whichever no longer holds.
async fn check_attributes(
    db: &Db,
    settings: &EntraSettings,
    source_id: &str,
    run_id: &str,
    now: Millis,
) -> anyhow::Result<()> {
    let (total, missing) = attribute_gaps(db, settings, source_id).await?;
    let (all_key, some_key) = (
        key(ATTRIBUTES_ALL, source_id),
        key(ATTRIBUTES_SOME, source_id),
    );
    if total == 0 {
        notes::resolve(&db.pool, &all_key, now).await?;
        notes::resolve(&db.pool, &some_key, now).await?;
        return Ok(());
    }
    if missing.iter().all(|(_, n, _)| *n == total) {
        let names: Vec<&str> = missing.iter().map(|(a, _, _)| a.as_str()).collect();
        let n = NewNotification {
            title: "All user attributes are not synchronized with Entra ID".into(),
            body: format!(
                "Roster read {total} users, but none of the selected attributes came back for any of them ({}).",
                names.join(", ")
            ),
            action_text: "The application probably lacks permission to read user properties, or Microsoft Graph \
                          rejected a property. Check that User.Read.All has admin consent and the custom attributes' \
                          property names, then use Sync now."
                .into(),
            action_href: Some(SETTINGS_HREF.into()),
            details: json!({ "users": total, "attributes": names }),
            ..note(ATTRIBUTES_ALL, source_id, run_id, Severity::Error)
        };
        notes::raise(&db.pool, &n, now).await?;
        notes::resolve(&db.pool, &some_key, now).await?;
        return Ok(());
    }
    notes::resolve(&db.pool, &all_key, now).await?;
    let some: Vec<&(String, i64, bool)> = missing
        .iter()
        .filter(|(_, n, custom)| if *custom { *n > 0 } else { *n == total })
        .collect();
    if some.is_empty() {
        notes::resolve(&db.pool, &some_key, now).await?;
        return Ok(());
    }
    let lines: Vec<String> = some
        .iter()
        .map(|(a, n, _)| format!("{a}: {n} of {total} users have no value"))
        .collect();
    let first_custom = some.iter().find(|(_, _, c)| *c).map(|(a, _, _)| a.clone());
    let n = NewNotification {
        title: "Some user attributes are not synchronized with Entra ID".into(),
        body: format!("{}.", lines.join("; ")),
        action_text: "If these users should have a value, set the attribute in Entra ID (or check the Entra Connect \
                      sync rules or the directory extension). Features that depend on a missing attribute may not \
                      work as expected for these users."
            .into(),
        action_href: first_custom.map(|a| format!("/admin/users?missing={a}")),
        details: json!({ "users": total, "missing": some.iter().map(|(a, n, _)| json!({"attribute": a, "users": n})).collect::<Vec<_>>() }),
        ..note(ATTRIBUTES_SOME, source_id, run_id, Severity::Warning)
    };
    notes::raise(&db.pool, &n, now).await?;
    Ok(())
}

/// The deletion safety held removals: say how many, show who, and point at the decision.
pub async fn removals_held<'e>(
    ex: impl sqlx::Executor<'e, Database = sqlx::Any>,
    source_id: &str,
    run_id: &str,
    held: i64,
    active: i64,
    preview: &[dir::HeldRemoval],
    now: Millis,
) -> anyhow::Result<()> {
    let names: Vec<String> = preview
        .iter()
        .map(|p| format!("{} ({})", p.display_name, p.upn))
        .collect();
    let more = held - i64::try_from(preview.len()).unwrap_or(0);
    let n = NewNotification {
        title: format!("Sync held the removal of {held} users"),
        body: format!(
            "A sync round would mark {held} of {active} users \"Not synced\" at once, more than the deletion safety \
             allows, so those removals were held; everything else in the round was applied. Among them: {}{}.",
            names.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
        action_text: "If these users really left Entra ID, choose Apply removals on the Sync page; if not (for example \
                      after a permission or filter change), fix the cause and choose Discard."
            .into(),
        action_href: Some("/admin/sync#held-removals".into()),
        details: json!({ "held": held, "active": active }),
        ..note(REMOVALS_HELD, source_id, run_id, Severity::Warning)
    };
    notes::raise(ex, &n, now).await?;
    Ok(())
}

/// After Apply or Discard: the held removals are gone, so is the notification.
pub async fn removals_decided<'e>(
    ex: impl sqlx::Executor<'e, Database = sqlx::Any>,
    source_id: &str,
    now: Millis,
) -> anyhow::Result<()> {
    notes::resolve(ex, &key(REMOVALS_HELD, source_id), now).await?;
    Ok(())
}

/// Whether the last round skipped Entra users for clashing with local accounts (the next round then re-reads
/// everyone, since delta would not bring back users that did not change).
pub async fn clash_open(db: &Db, source_id: &str) -> anyhow::Result<bool> {
    Ok(notes::is_open(&db.pool, &key(UPN_CLASH, source_id)).await?)
}

/// After a successful round: Entra users skipped because a local account has their username, and users
/// deriving the same Managed Apple ID (Apple requires each to be unique).
pub async fn directory_checks(
    db: &Db,
    source_id: &str,
    run_id: &str,
    clashing_upns: &[String],
    now: Millis,
) -> anyhow::Result<()> {
    if clashing_upns.is_empty() {
        notes::resolve(&db.pool, &key(UPN_CLASH, source_id), now).await?;
    } else {
        let shown: Vec<&str> = clashing_upns.iter().take(10).map(String::as_str).collect();
        let more = clashing_upns.len() - shown.len();
        let n = NewNotification {
            title: format!("{} Entra ID users clash with local accounts", clashing_upns.len()),
            body: format!(
                "These Entra ID users have the username of an existing local account, so sync skipped them: {}{}.",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
            action_text: "Rename or delete the local accounts (Users, source Local) if these people should come from \
                          Entra ID; the next round then imports them."
                .into(),
            action_href: Some("/admin/users?source=local".into()),
            details: json!({ "upns": clashing_upns }),
            ..note(UPN_CLASH, source_id, run_id, Severity::Warning)
        };
        notes::raise(&db.pool, &n, now).await?;
    }
    let conflicts = dir::count_apple_conflicts(&db.pool).await?;
    if conflicts == 0 {
        notes::resolve(&db.pool, &key(APPLE_ID_CONFLICT, source_id), now).await?;
    } else {
        let n = NewNotification {
            title: format!("{conflicts} users share a Managed Apple ID with another user"),
            body: "Apple requires every Managed Apple ID to be unique, but these users derive the same one from the \
                   Managed Apple ID pattern."
                .into(),
            action_text: "Give the users distinct email addresses or UPNs in Entra ID, or choose another pattern on the \
                          Entra ID User Source page."
                .into(),
            action_href: Some("/admin/users?apple_conflict=1".into()),
            details: json!({ "users": conflicts }),
            ..note(APPLE_ID_CONFLICT, source_id, run_id, Severity::Warning)
        };
        notes::raise(&db.pool, &n, now).await?;
    }
    Ok(())
}
