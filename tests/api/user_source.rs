//! Admin > Microsoft Azure > Entra ID User Source: the form, validation, the write-only secret, audit.

use crate::helpers::{TestApp, assert_redirect_to, spawn_app};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const PATH: &str = "/admin/azure/entra-user-source";

/// A complete, valid form pointing at `graph` (a Custom cloud).
pub fn valid_form(graph: &str, secret: &str) -> Vec<(String, String)> {
    [
        ("name", "Contoso"),
        ("sync_interval", "60"),
        ("enabled", "on"),
        ("tenant_id", TENANT),
        ("client_id", CLIENT),
        ("client_secret", secret),
        ("cloud", "custom"),
        ("authority_url", graph),
        ("graph_url", graph),
        ("apple_id", "pattern"),
        ("apple_id_source", "email"),
        ("apple_id_subdomain", "on"),
        ("removal_guard_percent", "10"),
        ("removal_guard_min", "20"),
        ("attr_name", "badge"),
        (
            "attr_property",
            "onPremisesExtensionAttributes.extensionAttribute7",
        ),
        ("attr_name", "costCenter"),
        (
            "attr_property",
            "extension_b7d8e648520f41d3b9c0fdeb91768a0a_costCenter",
        ),
        ("action", "save"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

pub async fn post_settings(app: &TestApp, form: &[(String, String)]) -> reqwest::Response {
    let token = app.csrf().await;
    let mut all: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("csrf_token", &token));
    app.post_raw(PATH, &all).await
}

fn set(form: &mut [(String, String)], key: &str, value: &str) {
    for (k, v) in form.iter_mut() {
        if k == key {
            *v = value.to_owned();
        }
    }
}

#[tokio::test]
async fn the_page_has_the_reference_labels() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let html = app.get_html(PATH).await;
    for (id, label) in [
        ("f-name", "Entra ID Name"),
        ("f-sync_interval", "Sync Interval"),
        ("f-enabled", "Enable this Entra ID"),
        (
            "f-auto_invite",
            "Automatically invite users imported from Entra ID",
        ),
        ("f-tenant_id", "Directory (tenant) ID"),
        ("f-client_id", "Application (client) ID"),
        ("f-client_secret", "Client secret"),
        ("f-cloud", "Cloud"),
        ("f-authority_url", "Authority URL"),
        ("f-graph_url", "Graph URL"),
        ("f-apple-none", "None"),
        ("f-apple-pattern", "Pattern"),
        (
            "f-apple_id_subdomain",
            "Include &#34;appleid&#34; subdomain",
        ),
    ] {
        let want = format!("<label for=\"{id}\">{label}</label>");
        let alt = want.replace("&#34;", "&quot;");
        assert!(
            html.contains(&want)
                || html.contains(&alt)
                || html.contains(&want.replace("&#34;", "\"")),
            "missing {want}"
        );
    }
    for text in [
        "Managed Apple ID",
        "User email address",
        "userUPN",
        "Add Custom Attribute",
        ">Save<",
        "Test connection",
    ] {
        assert!(html.contains(text), "missing {text}");
    }
    for interval in [
        "15 min", "30 min", "1 h", "2 h", "4 h", "8 h", "12 h", "24 h",
    ] {
        assert!(
            html.contains(&format!(">{interval}</option>")),
            "interval {interval}"
        );
    }
}

#[tokio::test]
async fn saving_seals_the_secret_never_shows_it_and_audits_without_it() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let form = valid_form("http://127.0.0.1:9", "very-secret-value~1");
    assert_redirect_to(&post_settings(&app, &form).await, PATH);

    let (sealed, custom): (String, String) =
        sqlx::query_as("SELECT client_secret_sealed, custom_attributes FROM user_sources")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(
        sealed.starts_with("v1:") && !sealed.contains("very-secret-value"),
        "stored encrypted"
    );
    assert!(custom.contains("extensionAttribute7"));
    let html = app.get_html(PATH).await;
    assert!(
        !html.contains("very-secret-value"),
        "the secret is never rendered"
    );
    assert!(html.contains("A secret is stored"));
    assert!(html.contains("value=\"Contoso\""));
    let details: String = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'settings.entra_source_saved'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(!details.contains("very-secret-value"));
    assert!(details.contains("changed (value not recorded)"));

    // An empty secret field keeps the stored secret.
    let mut again = form.clone();
    set(&mut again, "client_secret", "");
    set(&mut again, "name", "Contoso EU");
    assert_redirect_to(&post_settings(&app, &again).await, PATH);
    let after: String = sqlx::query_scalar("SELECT client_secret_sealed FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(after, sealed);
    let details: Vec<String> =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'settings.entra_source_saved' ORDER BY at, id")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert!(
        details[1].contains("\"unchanged\"") && details[1].contains("Contoso EU"),
        "{}",
        details[1]
    );
}

#[tokio::test]
async fn bad_input_is_explained_next_to_each_field_and_nothing_is_lost() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    assert_redirect_to(
        &post_settings(&app, &valid_form("http://127.0.0.1:9", "first-secret")).await,
        PATH,
    );
    let mut bad = valid_form("http://10.1.2.3", "");
    set(&mut bad, "tenant_id", "contoso");
    set(&mut bad, "client_id", "not-a-guid");
    set(&mut bad, "name", "Renamed");
    bad.push(("attr_name".into(), "userUPN".into()));
    bad.push(("attr_property".into(), "skills".into()));
    bad.push(("attr_name".into(), "Badge".into()));
    bad.push((
        "attr_property".into(),
        "onPremisesExtensionAttributes.extensionAttribute99".into(),
    ));
    let resp = post_settings(&app, &bad).await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    for marker in [
        "error-tenant_id",
        "error-client_id",
        "error-authority_url",
        "error-graph_url",
        "error-attr-name-2",
        "error-attr-property-2",
        "error-attr-name-3",
        "error-attr-property-3",
    ] {
        assert!(
            html.contains(&format!("data-test=\"{marker}\"")),
            "missing {marker}"
        );
    }
    assert!(html.contains("value=\"contoso\""), "input kept");
    assert!(html.contains("value=\"Renamed\""), "input kept");
    assert!(html.contains("built-in variable"));
    // Nothing stored changed.
    let name: String = sqlx::query_scalar("SELECT name FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(name, "Contoso");
}

#[tokio::test]
async fn add_and_remove_attribute_rows_without_saving() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let mut form = valid_form("http://127.0.0.1:9", "s");
    set(&mut form, "action", "add_attribute");
    let html = post_settings(&app, &form).await.text().await.unwrap();
    assert_eq!(html.matches("data-test=\"attribute-row\"").count(), 3);
    set(&mut form, "action", "remove_attribute:0");
    let html = post_settings(&app, &form).await.text().await.unwrap();
    assert_eq!(html.matches("data-test=\"attribute-row\"").count(), 1);
    assert!(html.contains("costCenter") && !html.contains("value=\"badge\""));
    assert_eq!(app.count("user_sources").await, 0, "nothing saved");
}

#[tokio::test]
async fn sync_now_needs_an_enabled_source_and_only_flags_work() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let html = app.get_html("/admin/sync").await;
    assert!(html.contains("data-test=\"empty-state\""));
    let resp = app.post_form("/admin/sync/run", &[]).await;
    assert_redirect_to(&resp, "/admin/sync");
    let mut form = valid_form("http://127.0.0.1:9", "s");
    form.retain(|(k, _)| k != "enabled");
    assert_redirect_to(&post_settings(&app, &form).await, PATH);
    let _ = app.post_form("/admin/sync/run", &[]).await;
    assert!(app.get_html("/admin/sync").await.contains("Sync is off"));
    let requested: Option<i64> = sqlx::query_scalar("SELECT sync_requested_at FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(requested.is_none());

    assert_redirect_to(
        &post_settings(&app, &valid_form("http://127.0.0.1:9", "")).await,
        PATH,
    );
    let _ = app.post_form("/admin/sync/run", &[]).await;
    let requested: Option<i64> = sqlx::query_scalar("SELECT sync_requested_at FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(requested.is_some());
    assert_eq!(
        app.count("sync_runs").await,
        0,
        "the request did not run the sync itself"
    );
    assert!(
        app.get_html("/admin/sync")
            .await
            .contains("data-test=\"sync-requested\"")
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&"sync.requested".to_owned())
    );
}

/// A rename while a sync round runs would be undone by that round's later pages: it waits.
#[tokio::test]
async fn renames_wait_until_no_round_is_running() {
    let (app, emu) = crate::sync::app_with_tenant(10, 1, 5).await;
    let now = roster::clock::Clock::now_ms(&*app.clock);
    sqlx::query(
        "INSERT INTO sync_leases (source_id, holder, expires_at) VALUES ('entra', 'busy', $1)",
    )
    .bind(now + 60_000)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let mut form = valid_form(&emu.base_url(), "");
    for (k, v) in &mut form {
        if k == "attr_name" && v == "costCenter" {
            *v = "cc".into();
        }
    }
    let resp = post_settings(&app, &form).await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-test=\"error-custom_attributes\"")
    );
    let stored: String = sqlx::query_scalar("SELECT custom_attributes FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(stored.contains("costCenter"), "nothing saved");
    sqlx::query("DELETE FROM sync_leases")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_redirect_to(&post_settings(&app, &form).await, PATH);
    let stored: String = sqlx::query_scalar("SELECT custom_attributes FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(stored.contains("\"cc\""));
}
