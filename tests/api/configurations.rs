//! Admin > Configurations: CRUD and validation, the write-only Wi-Fi password, users lacking values,
//! preview and export (the profile parsed back), and custom-attribute renames rewriting every reference.

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION};

use crate::helpers::{TestApp, assert_redirect_to, spawn_app};
use crate::user_source::{post_settings, valid_form};

const PATH: &str = "/admin/configurations";

/// Posts a form with this session's CSRF token (owned pairs).
async fn post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.post_form(path, form).await
}

/// Creates a configuration and returns its id (asserting the 303 to its page).
async fn create(app: &TestApp, form: &[(&str, &str)]) -> String {
    let resp = post(app, "/admin/configurations/new", form).await;
    assert_eq!(
        resp.status().as_u16(),
        303,
        "{}",
        resp.text().await.unwrap()
    );
    let loc = resp.headers()[LOCATION].to_str().unwrap().to_owned();
    loc.strip_prefix("/admin/configurations/")
        .unwrap()
        .to_owned()
}

fn wifi_enterprise<'a>(name: &'a str, user: &'a str, outer: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("kind", "wifi"),
        ("name", name),
        ("ssid", "Contoso-Corp"),
        ("auto_join", "on"),
        ("security", "enterprise"),
        ("encryption", "WPA2"),
        ("eap_method", "peap"),
        ("eap_username", user),
        ("outer_identity", outer),
        ("password", ""),
        ("action", "save"),
    ]
}

fn exchange<'a>(name: &'a str, account: &'a str, user: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("kind", "exchange"),
        ("name", name),
        ("account_name", account),
        ("host", "outlook.office365.com"),
        ("ssl", "on"),
        ("email_address", "${userEmailAddress}"),
        ("user_name", user),
        ("past_days", "14"),
        ("action", "save"),
    ]
}

/// Inserts a directory user straight into the table (an Entra user unless `external_id` is None).
async fn insert_user(app: &TestApp, upn: &str, mail: Option<&str>, custom: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO directory_users (id, source, source_id, external_id, upn, upn_lower, mail, given_name, surname, \
         display_name, account_enabled, custom_attributes, content_hash, first_seen_at, last_changed_at, last_seen_at) \
         VALUES ($1, 'entra', 'entra', $2, $3, $4, $5, 'Jane', 'Doe', 'Jane Doe', 1, $6, 'x', 0, 0, 0)",
    )
    .bind(&id)
    .bind(format!("ext-{id}"))
    .bind(upn)
    .bind(upn.to_lowercase())
    .bind(mail)
    .bind(custom)
    .execute(&app.db.pool)
    .await
    .unwrap();
    id
}

/// The app signed in with the Entra ID source configured (custom attributes badge and costCenter),
/// without a tenant: saving settings never calls Graph.
async fn app_with_source() -> TestApp {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let resp = post_settings(&app, &valid_form("http://127.0.0.1:9", "secret-value~1")).await;
    assert_redirect_to(&resp, "/admin/azure/entra-user-source");
    app
}

fn inner_payload(bytes: &[u8]) -> (plist::Dictionary, plist::Dictionary) {
    let v = plist::Value::from_reader_xml(bytes).expect("a valid XML property list");
    let top = v.into_dictionary().expect("a dictionary at the top");
    assert_eq!(top["PayloadType"].as_string(), Some("Configuration"));
    assert_eq!(top["PayloadVersion"].as_signed_integer(), Some(1));
    for k in ["PayloadIdentifier", "PayloadUUID", "PayloadDisplayName"] {
        assert!(top.contains_key(k), "top-level {k}");
    }
    let content = top["PayloadContent"].as_array().unwrap();
    assert_eq!(content.len(), 1);
    let inner = content[0].as_dictionary().unwrap().clone();
    for k in [
        "PayloadIdentifier",
        "PayloadUUID",
        "PayloadDisplayName",
        "PayloadType",
    ] {
        assert!(inner.contains_key(k), "payload {k}");
    }
    assert_eq!(inner["PayloadVersion"].as_signed_integer(), Some(1));
    (top, inner)
}

#[tokio::test]
async fn an_admin_creates_lists_edits_and_deletes_a_configuration_all_audited() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let html = app.get_html(PATH).await;
    assert!(html.contains("data-test=\"empty-state\""));
    let form = app.get_html("/admin/configurations/new?kind=wifi").await;
    for (id, label) in [
        ("f-name", "Configuration name"),
        ("f-ssid", "Network name (SSID)"),
        ("f-security", "Security"),
        ("f-encryption", "Encryption"),
        ("f-password", "Wi-Fi password"),
        ("f-eap_username", "User name"),
        ("f-outer_identity", "Outer identity"),
    ] {
        assert!(
            form.contains(&format!("<label for=\"{id}\">{label}</label>")),
            "label {label}"
        );
    }
    assert!(form.contains("Accepts variables"));
    assert!(form.contains("name=\"csrf_token\""));

    let id = create(&app, &wifi_enterprise("Office Wi-Fi", "${userUPN}", "")).await;
    let page = app.get_html(&format!("{PATH}/{id}")).await;
    assert!(
        page.contains("Configuration &#34;Office Wi-Fi&#34; created")
            || page.contains("Office Wi-Fi")
    );
    assert!(
        page.contains("value=\"${userUPN}\""),
        "the stored text is shown"
    );
    let list = app.get_html(PATH).await;
    assert!(list.contains("data-test=\"configuration-row\"") && list.contains("Office Wi-Fi"));

    // Edit: rename and switch the user name.
    let mut edit = wifi_enterprise("Office Wi-Fi 2", "${userUID}", "anonymous");
    edit.retain(|(k, _)| *k != "kind");
    edit.push(("kind", "exchange")); // ignored: the kind is fixed at creation
    let resp = post(&app, &format!("{PATH}/{id}"), &edit).await;
    assert_redirect_to(&resp, &format!("{PATH}/{id}"));
    let (name, kind, fields): (String, String, String) =
        sqlx::query_as("SELECT name, kind, fields FROM configurations WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!((name.as_str(), kind.as_str()), ("Office Wi-Fi 2", "wifi"));
    assert!(fields.contains("${userUID}"));

    let resp = post(&app, &format!("{PATH}/{id}/delete"), &[]).await;
    assert_redirect_to(&resp, PATH);
    assert_eq!(app.count("configurations").await, 0);
    assert_eq!(
        app.get(&format!("{PATH}/{id}")).await.status().as_u16(),
        404
    );
    let actions = app.audit_actions().await;
    for a in [
        "configuration.created",
        "configuration.updated",
        "configuration.deleted",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn saving_refuses_unknown_variables_at_the_field_and_keeps_the_input() {
    let app = app_with_source().await;
    let resp = post(
        &app,
        "/admin/configurations/new",
        &wifi_enterprise("Office", "${userUPN}", "cc-${costCentre}"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    assert!(html.contains("data-test=\"error-outer_identity\""));
    assert!(
        html.contains("Unknown variable ${costCentre} at position 4"),
        "names it and its position"
    );
    assert!(html.contains("value=\"cc-${costCentre}\""), "input kept");
    // A custom attribute is known; an unterminated variable and a bad host are refused.
    let resp = post(
        &app,
        "/admin/configurations/new",
        &exchange("Mail", "Mail ${costCenter}", "${userUPN"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    assert!(html.contains("data-test=\"error-user_name\""));
    assert!(!html.contains("data-test=\"error-account_name\""));
    let mut bad_host = exchange("Mail", "Mail", "${userUPN}");
    bad_host[3] = ("host", "https://mail.contoso.com/owa");
    let html = post(&app, "/admin/configurations/new", &bad_host)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-test=\"error-host\""));
    // Empty name, variables in the SSID.
    let mut f = wifi_enterprise("", "${userUPN}", "");
    f[2] = ("ssid", "net-${userUPN}");
    let html = post(&app, "/admin/configurations/new", &f)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-test=\"error-name\"") && html.contains("data-test=\"error-ssid\""));
    assert_eq!(app.count("configurations").await, 0, "nothing saved");
    // Names are unique regardless of case.
    create(&app, &wifi_enterprise("Office", "${userUPN}", "")).await;
    let resp = post(
        &app,
        "/admin/configurations/new",
        &wifi_enterprise("OFFICE", "${userUPN}", ""),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp.text().await.unwrap().contains("already has this name"));
    // A Custom configuration: per-row errors.
    let resp = post(
        &app,
        "/admin/configurations/new",
        &[
            ("kind", "custom"),
            ("name", "Values"),
            ("pair_key", "dept"),
            ("pair_value", "${nope}"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-test=\"error-pair-value-0\"")
    );
}

#[tokio::test]
async fn the_wifi_password_is_write_only_sealed_and_exported() {
    let app = app_with_source().await;
    let user = insert_user(&app, "jane@contoso.com", Some("jane@contoso.com"), "{}").await;
    let personal = [
        ("kind", "wifi"),
        ("name", "Guest"),
        ("ssid", "Contoso-Guest"),
        ("security", "personal"),
        ("encryption", "WPA3"),
        ("eap_method", "peap"),
        ("eap_username", "${userUPN}"),
        ("outer_identity", ""),
        ("action", "save"),
    ];
    let resp = post(&app, "/admin/configurations/new", &personal).await;
    assert_eq!(
        resp.status().as_u16(),
        422,
        "a Personal network needs a password"
    );
    let mut with_pw = personal.to_vec();
    with_pw.push(("password", "correct-horse-wifi"));
    let id = create(&app, &with_pw).await;
    let sealed: Option<String> =
        sqlx::query_scalar("SELECT secret_sealed FROM configurations WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let sealed = sealed.unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains("correct-horse-wifi"));
    let html = app.get_html(&format!("{PATH}/{id}")).await;
    assert!(!html.contains("correct-horse-wifi"), "never sent back");
    assert!(html.contains("A password is stored"));
    // Saving with an empty password keeps it.
    let resp = post(&app, &format!("{PATH}/{id}"), &personal).await;
    assert_redirect_to(&resp, &format!("{PATH}/{id}"));
    let fields: String = sqlx::query_scalar("SELECT fields FROM configurations WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(!fields.contains("correct-horse-wifi"));
    // The preview masks it; the download carries it.
    let preview = app
        .get_html(&format!("{PATH}/{id}/preview?user=jane@contoso.com"))
        .await;
    assert!(!preview.contains("correct-horse-wifi"));
    let resp = app.get(&format!("{PATH}/{id}/export?user={user}")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let (_, inner) = inner_payload(&resp.bytes().await.unwrap());
    assert_eq!(inner["Password"].as_string(), Some("correct-horse-wifi"));
    assert_eq!(inner["EncryptionType"].as_string(), Some("WPA3"));
    assert!(inner.get("EAPClientConfiguration").is_none());
    // Switching to Enterprise drops the stored password.
    let resp = post(
        &app,
        &format!("{PATH}/{id}"),
        &wifi_enterprise("Guest", "${userUPN}", ""),
    )
    .await;
    assert_redirect_to(&resp, &format!("{PATH}/{id}"));
    let sealed: Option<String> =
        sqlx::query_scalar("SELECT secret_sealed FROM configurations WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(sealed.is_none());
    let audit: Vec<String> = sqlx::query_scalar("SELECT details FROM audit_events")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(audit.iter().all(|d| !d.contains("correct-horse-wifi")));
}

#[tokio::test]
async fn preview_and_export_for_users_with_and_without_values() {
    let app = app_with_source().await;
    let with = insert_user(
        &app,
        "Jane.Doe@contoso.com",
        Some("jane@contoso.com"),
        r#"{"badge":"B-7","costCenter":"CC-1234"}"#,
    )
    .await;
    let without = insert_user(&app, "max@contoso.com", None, r#"{"badge":"B-9"}"#).await;
    let wifi = create(
        &app,
        &wifi_enterprise("Corp Wi-Fi", "${userUPN}", "${costCenter}"),
    )
    .await;
    let eas = create(&app, &exchange("Mail", "Mail ${costCenter}", "${userUPN}")).await;

    // The edit page counts users lacking each variable, with a link for custom attributes.
    let html = app.get_html(&format!("{PATH}/{eas}")).await;
    assert!(
        html.contains("data-variable=\"${costCenter}\" data-missing=\"1\""),
        "{html}"
    );
    assert!(html.contains("data-variable=\"${userEmailAddress}\" data-missing=\"1\""));
    assert!(html.contains("data-variable=\"${userUPN}\" data-missing=\"0\""));
    assert!(html.contains("href=\"/admin/users?missing=costCenter\""));

    // Preview by UPN (any case) for a user with every value.
    let html = app
        .get_html(&format!("{PATH}/{wifi}/preview?user=jane.doe@CONTOSO.com"))
        .await;
    assert!(html.contains("data-test=\"all-values\""));
    assert!(html.contains("<code>Jane.Doe@contoso.com</code>"));
    assert!(html.contains("<code>CC-1234</code>"));
    let resp = app.get(&format!("{PATH}/{wifi}/export?user={with}")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()[CONTENT_TYPE].to_str().unwrap(),
        "application/x-apple-aspen-config"
    );
    let disposition = resp.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment") && disposition.contains(".mobileconfig"));
    let first = resp.bytes().await.unwrap();
    let (top, inner) = inner_payload(&first);
    assert_eq!(top["PayloadDisplayName"].as_string(), Some("Corp Wi-Fi"));
    assert_eq!(
        inner["PayloadType"].as_string(),
        Some("com.apple.wifi.managed")
    );
    assert_eq!(inner["SSID_STR"].as_string(), Some("Contoso-Corp"));
    assert_eq!(inner["HIDDEN_NETWORK"].as_boolean(), Some(false));
    assert_eq!(inner["EncryptionType"].as_string(), Some("WPA2"));
    let eap = inner["EAPClientConfiguration"].as_dictionary().unwrap();
    assert_eq!(eap["UserName"].as_string(), Some("Jane.Doe@contoso.com"));
    assert_eq!(eap["OuterIdentity"].as_string(), Some("CC-1234"));
    assert_eq!(
        eap["AcceptEAPTypes"].as_array().unwrap()[0].as_signed_integer(),
        Some(25)
    );
    // The same user gets the same profile (stable UUIDs), so a re-install replaces it.
    let again = app.get(&format!("{PATH}/{wifi}/export?user={with}")).await;
    assert_eq!(again.bytes().await.unwrap(), first);

    // A user without costCenter: the preview warns, the export still works.
    let html = app
        .get_html(&format!("{PATH}/{eas}/preview?user=max@contoso.com"))
        .await;
    assert!(html.contains("data-test=\"missing-values\""));
    assert!(html.contains("${costCenter}, ${userEmailAddress}"));
    let resp = app
        .get(&format!("{PATH}/{eas}/export?user={without}"))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["x-roster-missing-variables"]
            .to_str()
            .unwrap(),
        "${costCenter}, ${userEmailAddress}"
    );
    let (_, inner) = inner_payload(&resp.bytes().await.unwrap());
    assert_eq!(
        inner["PayloadType"].as_string(),
        Some("com.apple.eas.account")
    );
    assert_eq!(inner["PayloadDisplayName"].as_string(), Some("Mail "));
    assert_eq!(inner["UserName"].as_string(), Some("max@contoso.com"));
    assert_eq!(inner["EmailAddress"].as_string(), Some(""));
    assert_eq!(inner["Host"].as_string(), Some("outlook.office365.com"));
    assert_eq!(inner["SSL"].as_boolean(), Some(true));
    assert_eq!(
        inner["MailNumberOfPastDaysToSync"].as_signed_integer(),
        Some(14)
    );

    // Unknown users: the preview says so; the export is a 404.
    let resp = app
        .get(&format!("{PATH}/{eas}/preview?user=nobody@contoso.com"))
        .await;
    assert_eq!(resp.status().as_u16(), 404);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-test=\"preview-problem\"")
    );
    assert_eq!(
        app.get(&format!("{PATH}/{eas}/export?user=nobody"))
            .await
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn a_custom_configuration_exports_json() {
    let app = app_with_source().await;
    let user = insert_user(
        &app,
        "jane@contoso.com",
        Some("jane@contoso.com"),
        r#"{"costCenter":"CC-1"}"#,
    )
    .await;
    // "Add row" shows the form again with one more row, saving nothing.
    let resp = post(
        &app,
        "/admin/configurations/new",
        &[
            ("kind", "custom"),
            ("name", "Values"),
            ("pair_key", "a"),
            ("pair_value", "1"),
            ("action", "add_pair"),
        ],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("id=\"pair-key-1\""));
    assert_eq!(app.count("configurations").await, 0);
    let id = create(
        &app,
        &[
            ("kind", "custom"),
            ("name", "Values"),
            ("pair_key", "upn"),
            ("pair_value", "${userUPN}"),
            ("pair_key", "cost"),
            ("pair_value", "cc=${costCenter}; literal $${costCenter}"),
            ("action", "save"),
        ],
    )
    .await;
    let resp = app.get(&format!("{PATH}/{id}/export?user={user}")).await;
    assert_eq!(
        resp.headers()[CONTENT_TYPE].to_str().unwrap(),
        "application/json"
    );
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        json["values"],
        serde_json::json!([
            {"key": "upn", "value": "jane@contoso.com"},
            {"key": "cost", "value": "cc=CC-1; literal ${costCenter}"}
        ])
    );
}

#[tokio::test]
async fn renaming_a_custom_attribute_rewrites_configurations_and_user_values() {
    let (app, _emu) = crate::sync::app_with_tenant(30, 2, 10).await;
    crate::sync::round(&app).await.unwrap();
    let wifi = create(
        &app,
        &wifi_enterprise("Corp Wi-Fi", "${userUPN}", "${costCenter}"),
    )
    .await;
    let eas = create(&app, &exchange("Mail", "Mail ${costCenter}", "${userUPN}")).await;
    let untouched = create(&app, &exchange("Plain", "Plain", "${userUPN}")).await;
    let with_value: String = sqlx::query_scalar(
        "SELECT upn FROM directory_users WHERE not_synced_at IS NULL AND custom_attributes LIKE '%costCenter%' \
         ORDER BY upn_lower LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let cost: String = {
        let raw: String =
            sqlx::query_scalar("SELECT custom_attributes FROM directory_users WHERE upn = $1")
                .bind(&with_value)
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&raw).unwrap();
        map["costCenter"].clone()
    };
    let missing_before: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL AND custom_attributes NOT LIKE '%costCenter%'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(missing_before > 0, "some users lack the value");

    // The invitation template uses the attribute too.
    let resp = app
        .post_form(
            "/admin/invitations",
            &[
                ("subject", "Devices for ${costCenter}"),
                ("text_body", "${registrationLink} (${costCenter})"),
                ("html_body", "<p>${registrationLink}</p>"),
                ("lifetime_days", "7"),
                ("pin_length", "8"),
                ("pin_lifetime_minutes", "60"),
                ("action", "save"),
            ],
        )
        .await;
    assert_redirect_to(&resp, "/admin/invitations");

    // Rename costCenter → costCentre on the Entra ID User Source page (same property).
    let emu_url = {
        let url: String = sqlx::query_scalar("SELECT graph_url FROM user_sources")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        url
    };
    let mut form = valid_form(&emu_url, crate::sync::SECRET);
    for (k, v) in &mut form {
        if k == "attr_name" && v == "costCenter" {
            *v = "costCentre".into();
        }
    }
    let resp = post_settings(&app, &form).await;
    assert_redirect_to(&resp, "/admin/azure/entra-user-source");

    for id in [&wifi, &eas] {
        let fields: String = sqlx::query_scalar("SELECT fields FROM configurations WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert!(
            fields.contains("${costCentre}") && !fields.contains("${costCenter}"),
            "{fields}"
        );
    }
    let keys_left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE custom_attributes LIKE '%\"costCenter\"%'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(keys_left, 0, "user values re-keyed");
    let (subject, text): (String, String) =
        sqlx::query_as("SELECT subject, text_body FROM invitation_settings")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(subject, "Devices for ${costCentre}");
    assert!(text.contains("(${costCentre})"), "{text}");
    // The audit entry lists what changed.
    let details: String = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'settings.entra_source_saved' ORDER BY at DESC, id DESC LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    let renamed = &details["renamed_variables"];
    assert_eq!(
        renamed["renames"],
        serde_json::json!([{"from": "costCenter", "to": "costCentre"}])
    );
    let names: Vec<&str> = renamed["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Corp Wi-Fi") && names.contains(&"Mail"));
    assert!(renamed["user_values_rekeyed"].as_i64().unwrap() > 0);
    let plain: String = sqlx::query_scalar("SELECT fields FROM configurations WHERE id = $1")
        .bind(&untouched)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(
        plain.contains("\"account_name\":\"Plain\""),
        "a configuration without the variable is untouched"
    );

    // Everything keeps working without a new sync: preview, counts with the new link, export.
    let html = app
        .get_html(&format!("{PATH}/{wifi}/preview?user={with_value}"))
        .await;
    assert!(html.contains("data-test=\"all-values\""), "{html}");
    assert!(html.contains(&format!("<code>{cost}</code>")));
    let html = app.get_html(&format!("{PATH}/{eas}")).await;
    assert!(html.contains(&format!(
        "data-variable=\"${{costCentre}}\" data-missing=\"{missing_before}\""
    )));
    assert!(html.contains("href=\"/admin/users?missing=costCentre\""));
    let user_id: String = sqlx::query_scalar("SELECT id FROM directory_users WHERE upn = $1")
        .bind(&with_value)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let resp = app
        .get(&format!("{PATH}/{eas}/export?user={user_id}"))
        .await;
    let (_, inner) = inner_payload(&resp.bytes().await.unwrap());
    assert_eq!(
        inner["PayloadDisplayName"].as_string(),
        Some(format!("Mail {cost}").as_str())
    );
    // A later sync agrees with the re-keyed values and finds nothing changed.
    let summary = crate::sync::round(&app).await.unwrap();
    assert_eq!(summary.counters.users_updated, 0, "{summary:?}");
    let keys_left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE custom_attributes LIKE '%\"costCenter\"%'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(keys_left, 0);
}

#[tokio::test]
async fn a_removed_attribute_is_flagged_and_previews_explain_it() {
    let app = app_with_source().await;
    insert_user(&app, "jane@contoso.com", None, r#"{"costCenter":"CC-1"}"#).await;
    let id = create(&app, &exchange("Mail", "Mail ${costCenter}", "${userUPN}")).await;
    // Remove costCenter (badge stays): no successor with the same property, so no rename.
    let form: Vec<(String, String)> = valid_form("http://127.0.0.1:9", "secret-value~1")
        .into_iter()
        .filter(|(k, v)| {
            let cost_name = k == "attr_name" && v == "costCenter";
            let cost_property = k == "attr_property" && v.ends_with("_costCenter");
            !(cost_name || cost_property)
        })
        .collect();
    assert_redirect_to(
        &post_settings(&app, &form).await,
        "/admin/azure/entra-user-source",
    );
    let html = app.get_html(&format!("{PATH}/{id}")).await;
    assert!(html.contains("Not defined"));
    let resp = app
        .get(&format!("{PATH}/{id}/preview?user=jane@contoso.com"))
        .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("unknown variable ${costCenter}")
    );
}
