//! Real-browser test: headless Chromium, driven by playwright-core from Node, clicks through first-run
//! setup and sign-in and saves screenshots to target/screenshots/.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::spawn_app;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs one browser script with the app's addresses; panics with the script's output on failure.
pub fn run_browser_script(script: &str, args: &[&str]) {
    let peers = manifest().join("tests/peers/node");
    assert!(
        peers.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/peers/node: run `make test-deps` (make test does it)"
    );
    let chromium = std::env::var("ROSTER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: run `make test-deps` (apt-get install chromium chromium-driver)"
    );
    let shots = manifest().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(manifest().join("tests/browser").join(script))
        .args(args)
        .env("ROSTER_CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", &shots)
        .env("NODE_PATH", peers.join("node_modules"))
        .output()
        .expect("node runs (install Node.js: make test-deps)");
    assert!(
        out.status.success(),
        "browser script {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_browser_completes_first_run_setup_and_signs_in() {
    let app = spawn_app().await;
    let link = app.setup_link.clone().unwrap();
    // One open problem, so the badge and the Notifications page have something to show.
    let problem = roster::notifications::NewNotification {
        kind: "entra_unreachable",
        dedup_key: "entra_unreachable:browser".into(),
        severity: roster::notifications::Severity::Error,
        title: "Entra ID service is unreachable".into(),
        body: "Connecting to graph.microsoft.com failed: connection refused (after 5 retries)."
            .into(),
        action_text: "Check that this server can reach Microsoft Graph, then use Sync now.".into(),
        action_href: None,
        details: serde_json::json!({}),
        run_id: None,
    };
    roster::notifications::repo::raise(
        &app.db.pool,
        &problem,
        roster::clock::Clock::now_ms(&*app.clock),
    )
    .await
    .unwrap();
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_browser_script("first_run.mjs", &[&address, &link]))
        .await
        .unwrap();
    // The browser really created the admin and signed in and out.
    assert_eq!(app.count("admins").await, 1);
    let actions = app.audit_actions().await;
    for a in [
        "setup.completed",
        "auth.logout",
        "auth.login_failed",
        "auth.login_succeeded",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a} in {actions:?}");
    }
    assert!(
        manifest()
            .join("target/screenshots/first-run-dashboard.png")
            .is_file()
    );
}

#[tokio::test]
async fn a_browser_sets_up_entra_id_tests_the_connection_and_syncs() {
    let emu = graph_emulator::Emulator::start(crate::sync::emulator_config(10_000, 200, 25_000))
        .await
        .unwrap();
    let app = crate::helpers::spawn_app_with(roster::startup::Options {
        workers: Some(2),
        start_workers: true,
        ..Default::default()
    })
    .await;
    app.create_admin(crate::helpers::ADMIN_USER, crate::helpers::ADMIN_PASSWORD)
        .await;
    let (address, graph) = (app.address.clone(), emu.base_url());
    let cfg = emu.config().clone();
    tokio::task::spawn_blocking(move || {
        run_browser_script(
            "user_source.mjs",
            &[
                &address,
                &graph,
                &cfg.tenant_id,
                &cfg.client_id,
                &cfg.client_secret,
                "10000",
            ],
        )
    })
    .await
    .unwrap();
    crate::sync::assert_matches_truth(&app, &emu).await;
}

#[tokio::test]
async fn a_browser_sees_sync_problems_and_applies_held_removals() {
    let (app, emu) = crate::sync::app_with_tenant(100, 3, 50).await;
    crate::sync::round(&app).await.unwrap();
    // One failed round (unreachable) and one that holds 30 removals.
    emu.pause().await;
    assert!(crate::sync::round(&app).await.is_err());
    emu.resume().await.unwrap();
    for u in &emu.truth().users[..30] {
        emu.mutate(graph_emulator::Mutation::HardDeleteUser(u.id.clone()));
    }
    emu.push_fault(graph_emulator::FaultRule {
        endpoint: graph_emulator::Endpoint::Token,
        skip: 0,
        times: 1,
        fault: graph_emulator::Fault::ExpiredToken,
    });
    assert!(
        crate::sync::round(&app).await.is_err(),
        "sign-in refused once"
    );
    // A successful round resolves those and holds the 30 removals.
    let held = crate::sync::round(&app).await.unwrap();
    assert_eq!(held.counters.users_not_synced, 0);
    // Raise "unreachable" again so the page shows it beside the held removals.
    emu.pause().await;
    assert!(crate::sync::round(&app).await.is_err());
    emu.resume().await.unwrap();
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_browser_script("sync_problems.mjs", &[&address]))
        .await
        .unwrap();
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(active, 70);
}

#[tokio::test]
async fn a_browser_creates_previews_and_exports_configurations() {
    let (app, _emu) = crate::sync::app_with_tenant(40, 2, 10).await;
    crate::sync::round(&app).await.unwrap();
    let upn = |has: bool| {
        let sql = format!(
            "SELECT upn FROM directory_users WHERE not_synced_at IS NULL AND custom_attributes {} LIKE '%costCenter%' \
             ORDER BY upn_lower LIMIT 1",
            if has { "" } else { "NOT" }
        );
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (with, without) = (upn(true).await, upn(false).await);
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || {
        run_browser_script("configurations.mjs", &[&address, &with, &without])
    })
    .await
    .unwrap();
    assert_eq!(app.count("configurations").await, 2);
    for name in [
        "configurations-wifi-preview",
        "configurations-exchange-preview-missing",
    ] {
        assert!(
            manifest()
                .join(format!("target/screenshots/{name}.png"))
                .is_file()
        );
    }
}

#[tokio::test]
async fn a_browser_searches_filters_and_opens_a_user() {
    let (app, emu) = crate::sync::app_with_tenant(300, 4, 100).await;
    crate::sync::round(&app).await.unwrap();
    let target = emu
        .truth()
        .users
        .iter()
        .find(|u| u.account_enabled)
        .unwrap()
        .clone();
    let prefix: String = target.display_name.chars().take(4).collect();
    let address = app.address.clone();
    let upn = target.user_principal_name.clone();
    tokio::task::spawn_blocking(move || {
        run_browser_script("directory.mjs", &[&address, &prefix, &upn])
    })
    .await
    .unwrap();
    let local: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM directory_users WHERE source = 'local'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(local, 1);
}

/// Sends `user_id` an invitation and returns the link from the mail the SMTP peer received.
async fn invitation_link(
    app: &crate::helpers::TestApp,
    smtp: &crate::smtp_peer::SmtpPeer,
    user_id: &str,
    nth: usize,
) -> String {
    app.post_form(&format!("/admin/users/{user_id}/invite"), &[])
        .await;
    roster::mail::worker::run_once(&app.state, &tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let mail = smtp.wait_for(nth, std::time::Duration::from_secs(10)).await;
    let text = mail[nth - 1].text.clone().unwrap();
    let start = text.find("http").unwrap();
    text[start..].split_whitespace().next().unwrap().to_owned()
}

async fn registration_in_browser(
    link: String,
    user: &'static str,
    protocol: &'static str,
    prefix: &'static str,
) {
    tokio::task::spawn_blocking(move || {
        run_browser_script("registration.mjs", &[&link, user, protocol, prefix])
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_browser_sets_up_each_idp_kind_signs_in_through_each_and_users_register() {
    let app = crate::helpers::spawn_app_with(roster::startup::Options {
        workers: Some(2),
        ..Default::default()
    })
    .await;
    app.create_admin(crate::helpers::ADMIN_USER, crate::helpers::ADMIN_PASSWORD)
        .await;
    let alice = crate::identity::local_user(&app, "alice@example.com", "alice@example.com").await;
    let bob = crate::identity::local_user(&app, "bob@example.com", "bob@example.com").await;
    app.create_admin("alice@example.com", "an-sso-admin-password")
        .await;
    let idp =
        crate::saml_peer::SamlIdp::start(&app.url("/saml/metadata"), &app.url("/saml/acs")).await;
    let metadata_file = app.data_dir.join("adfs-metadata.xml");
    std::fs::write(&metadata_file, idp.metadata_xml().await).unwrap();
    let accounts = serde_json::json!({
        "alice": { "oid": "5f1e3a2b-0000-4000-8000-00000000a11c", "tid": "11111111-2222-3333-4444-555555555555",
                   "preferred_username": "alice@example.com", "name": "Alice", "email": "alice@example.com" }
    })
    .to_string();
    let secret = "a-long-client-secret-for-the-oidc-peer-0123456789";
    let oidc = crate::oidc_peer::start(
        "roster-browser",
        secret,
        &app.url("/oidc/callback"),
        &accounts,
    )
    .await;
    let args: Vec<String> = vec![
        app.address.clone(),
        format!("{}/metadata", idp.base_url),
        oidc.issuer.clone(),
        "roster-browser".into(),
        secret.into(),
        "alice@example.com".into(),
        metadata_file.display().to_string(),
    ];
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_browser_script("identity.mjs", &a);
    })
    .await
    .unwrap();
    let sign_ins: Vec<String> = sqlx::query_scalar(
        "SELECT target_id FROM audit_events WHERE action = 'identity.sign_in' ORDER BY at",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        sign_ins,
        vec!["saml", "adfs", "entra"],
        "one portal sign-in through each kind"
    );

    // Invitation mails' links, followed in the browser: through oidc-provider (Entra ID is active), then
    // through the SAML IdP.
    let smtp = crate::smtp_peer::SmtpPeer::start();
    let resp = app
        .login(crate::helpers::ADMIN_USER, crate::helpers::ADMIN_PASSWORD)
        .await;
    crate::helpers::assert_redirect_to(&resp, "/admin");
    crate::smtp_peer::configure_smtp(&app, smtp.port()).await;
    let link = invitation_link(&app, &smtp, &alice, 1).await;
    registration_in_browser(link, "alice", "oidc", "registration-oidc").await;
    app.post_form("/admin/identity/entra/disable", &[]).await;
    app.post_form("/admin/identity/generic/enable", &[]).await;
    let link = invitation_link(&app, &smtp, &bob, 2).await;
    registration_in_browser(link, "bob", "saml", "registration").await;
    let registered: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE invitation_state = 'registered'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(registered, 2);
    drop(idp);
    drop(oidc);
}
