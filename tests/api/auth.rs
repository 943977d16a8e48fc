//! First-run setup, sign-in, throttling, sign-out and session lifetimes.

use roster::auth::service::{self, LoginError};
use roster::clock::{Clock, HOUR, MINUTE, SECOND};
use roster::web::RequestMeta;
use secrecy::SecretString;

use crate::helpers::{ADMIN_PASSWORD, ADMIN_USER, assert_redirect_to, csrf_token_in, spawn_app};

fn setup_path(link: &str) -> String {
    link.split_once("/setup")
        .map(|(_, rest)| format!("/setup{rest}"))
        .unwrap()
}

fn token_of(link: &str) -> String {
    link.split_once("token=").unwrap().1.to_owned()
}

#[tokio::test]
async fn first_run_prints_a_setup_link_that_works_once() {
    // Arrange
    let app = spawn_app().await;
    let link = app
        .setup_link
        .clone()
        .expect("no admin yet, so a setup link");
    assert!(link.starts_with(&format!("{}/setup?token=", app.address)));
    let token = token_of(&link);

    // Act: open the link and create the first admin.
    let page = app.get_html(&setup_path(&link)).await;
    assert!(page.contains("<label for=\"f-username\">Username</label>"));
    let csrf = csrf_token_in(&page);
    let resp = app
        .post_raw(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("username", "alice"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;

    // Assert: signed in, on the dashboard, audited.
    assert_redirect_to(&resp, "/admin");
    let dash = app.get_html("/admin").await;
    assert!(dash.contains("data-test=\"signed-in-admin\""), "{dash}");
    assert!(dash.contains("Welcome, alice"));
    assert_eq!(app.count("admins").await, 1);
    let actions = app.audit_actions().await;
    assert!(actions.contains(&"setup.completed".to_owned()));
    assert!(actions.contains(&"admin.created".to_owned()));

    // The link is spent: another browser gets the "already set up" page, and a replayed POST changes nothing.
    let other = app.new_client();
    let again = other
        .get(app.url(&setup_path(&link)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(again.contains("data-reason=\"done\""), "{again}");
    let login_page = other
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf2 = csrf_token_in(&login_page);
    let replay = other
        .post(app.url("/setup"))
        .form(&[
            ("csrf_token", csrf2.as_str()),
            ("token", &token),
            ("username", "mallory"),
            ("password", ADMIN_PASSWORD),
            ("confirm", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 200);
    assert_eq!(app.count("admins").await, 1);
}

#[tokio::test]
async fn setup_link_expires_after_one_hour() {
    let app = spawn_app().await;
    let link = app.setup_link.clone().unwrap();
    app.clock.advance(HOUR + MINUTE);
    let resp = app.get(&setup_path(&link)).await;
    assert_eq!(resp.status().as_u16(), 404);
    let html = resp.text().await.unwrap();
    assert!(html.contains("data-reason=\"invalid\""));
    let csrf = app.csrf().await;
    let token = token_of(&link);
    let resp = app
        .post_raw(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("username", "alice"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(app.count("admins").await, 0);
}

#[tokio::test]
async fn a_wrong_setup_token_is_refused() {
    let app = spawn_app().await;
    let resp = app.get("/setup?token=not-the-token").await;
    assert_eq!(resp.status().as_u16(), 404);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-reason=\"invalid\"")
    );
}

#[tokio::test]
async fn setup_form_keeps_input_and_explains_each_error() {
    let app = spawn_app().await;
    let link = app.setup_link.clone().unwrap();
    let csrf = csrf_token_in(&app.get_html(&setup_path(&link)).await);
    let token = token_of(&link);
    let resp = app
        .post_raw(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("username", "bob smith"),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    assert!(html.contains("value=\"bob smith\""), "username kept");
    assert!(html.contains("data-test=\"error-username\""));
    assert!(html.contains("data-test=\"error-password\""));
    assert!(html.contains("at least 12 characters"));
    assert_eq!(app.count("admins").await, 0);
    // The token still works after a failed attempt.
    let resp = app
        .post_raw(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("username", "bob"),
                ("password", ADMIN_PASSWORD),
                ("confirm", "different-password"),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-test=\"error-confirm\"")
    );
    let resp = app
        .post_raw(
            "/setup",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("username", "bob"),
                ("password", ADMIN_PASSWORD),
                ("confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_redirect_to(&resp, "/admin");
}

#[tokio::test]
async fn admin_pages_need_a_signed_in_admin() {
    let app = spawn_app().await;
    let resp = app.get("/admin/audit?before=1").await;
    assert_redirect_to(&resp, "/login?return_to=%2Fadmin%2Faudit%3Fbefore%3D1");
    app.create_admin(ADMIN_USER, ADMIN_PASSWORD).await;
    let token = app.csrf().await;
    let resp = app
        .post_raw(
            "/login",
            &[
                ("csrf_token", &token),
                ("username", ADMIN_USER),
                ("password", ADMIN_PASSWORD),
                ("return_to", "/admin/audit"),
            ],
        )
        .await;
    assert_redirect_to(&resp, "/admin/audit");
    assert_eq!(app.get("/admin/audit").await.status().as_u16(), 200);
}

#[tokio::test]
async fn return_to_never_leaves_the_portal() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_USER, ADMIN_PASSWORD).await;
    for evil in [
        "https://evil.example/",
        "//evil.example/admin",
        "/\\evil.example",
        "/login",
        "javascript:alert(1)",
    ] {
        let client = app.new_client();
        let page = client
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let token = csrf_token_in(&page);
        let resp = client
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("username", ADMIN_USER),
                ("password", ADMIN_PASSWORD),
                ("return_to", evil),
            ])
            .send()
            .await
            .unwrap();
        assert_redirect_to(&resp, "/admin");
    }
}

#[tokio::test]
async fn sign_in_renews_the_session_id_and_wrong_passwords_are_refused() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_USER, ADMIN_PASSWORD).await;
    let before = app.get("/login").await;
    let anon_cookie = before
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        anon_cookie.contains("HttpOnly") && anon_cookie.contains("SameSite=Lax"),
        "{anon_cookie}"
    );
    assert!(
        !anon_cookie.contains("Secure"),
        "plain http base URL: no Secure flag"
    );

    let wrong = app.login(ADMIN_USER, "not-the-password").await;
    assert_eq!(wrong.status().as_u16(), 422);
    let html = wrong.text().await.unwrap();
    assert!(html.contains("data-test=\"login-error\""));
    assert!(html.contains("value=\"alice\""), "username kept");
    let unknown = app.login("nobody", ADMIN_PASSWORD).await;
    assert_eq!(unknown.status().as_u16(), 422);

    let ok = app.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_redirect_to(&ok, "/admin");
    let new_cookie = ok
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let value = |c: &str| c.split(';').next().unwrap().to_owned();
    assert_ne!(
        value(&anon_cookie),
        value(&new_cookie),
        "session id changes at sign-in"
    );
    // The pre-sign-in session is gone from the server.
    let old_only = app.new_client();
    let resp = old_only
        .get(app.url("/admin"))
        .header("cookie", value(&anon_cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);

    let actions = app.audit_actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "auth.login_failed").count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.login_succeeded")
            .count(),
        1
    );
}

#[tokio::test]
async fn five_failures_lock_the_account_for_fifteen_minutes() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_USER, ADMIN_PASSWORD).await;
    for _ in 0..5 {
        assert_eq!(
            app.login(ADMIN_USER, "wrong-password-x")
                .await
                .status()
                .as_u16(),
            422
        );
    }
    // Even the right password is refused now, with a clear message.
    let locked = app.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(locked.status().as_u16(), 429);
    let html = locked.text().await.unwrap();
    assert!(html.contains("Too many failed sign-in attempts"), "{html}");
    assert!(html.contains("15 minutes"), "{html}");

    // The account is locked from every address, not only the one that failed.
    let elsewhere = RequestMeta {
        ip: "192.0.2.7".into(),
        request_id: None,
    };
    let r = service::login(
        &app.db,
        app.clock.now_ms(),
        ADMIN_USER,
        SecretString::from(ADMIN_PASSWORD),
        &elsewhere,
    )
    .await;
    assert!(matches!(r, Err(LoginError::Locked { .. })), "{r:?}");
    app.clock.advance(14 * MINUTE);
    assert_eq!(
        app.login(ADMIN_USER, ADMIN_PASSWORD)
            .await
            .status()
            .as_u16(),
        429
    );
    app.clock.advance(2 * MINUTE);
    assert_redirect_to(&app.login(ADMIN_USER, ADMIN_PASSWORD).await, "/admin");
    assert!(
        app.audit_actions()
            .await
            .contains(&"auth.login_locked".to_owned())
    );
}

#[tokio::test]
async fn five_failures_from_one_address_lock_every_account_there() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_USER, ADMIN_PASSWORD).await;
    app.create_admin("bob", ADMIN_PASSWORD).await;
    for i in 0..5 {
        let user = format!("guess{i}");
        assert_eq!(
            app.login(&user, "wrong-password-x").await.status().as_u16(),
            422
        );
    }
    // Accounts that never failed are refused from this address too ...
    assert_eq!(
        app.login("bob", ADMIN_PASSWORD).await.status().as_u16(),
        429
    );
    // ... but not from another address.
    let elsewhere = RequestMeta {
        ip: "192.0.2.8".into(),
        request_id: None,
    };
    let r = service::login(
        &app.db,
        app.clock.now_ms(),
        "bob",
        SecretString::from(ADMIN_PASSWORD),
        &elsewhere,
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    app.clock.advance(15 * MINUTE + 1);
    assert_redirect_to(&app.login("bob", ADMIN_PASSWORD).await, "/admin");
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let dash = app.get_html("/admin").await;
    let token = csrf_token_in(&dash);
    let stolen: String = sqlx::query_scalar("SELECT id FROM sessions WHERE admin_id IS NOT NULL")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let resp = app.post_raw("/logout", &[("csrf_token", &token)]).await;
    assert_redirect_to(&resp, "/login?signed_out=1");
    assert_redirect_to(&app.get("/admin").await, "/login?return_to=%2Fadmin");
    let still: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE id = $1")
        .bind(&stolen)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(still, 0, "the session row is deleted");
    assert!(
        app.audit_actions()
            .await
            .contains(&"auth.logout".to_owned())
    );
}

#[tokio::test]
async fn sessions_end_after_30_idle_minutes() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    app.clock.advance(29 * MINUTE);
    assert_eq!(
        app.get("/admin").await.status().as_u16(),
        200,
        "29 minutes idle is fine"
    );
    app.clock.advance(29 * MINUTE);
    assert_eq!(
        app.get("/admin").await.status().as_u16(),
        200,
        "activity extended the session"
    );
    app.clock.advance(31 * MINUTE);
    assert_eq!(
        app.get("/admin").await.status().as_u16(),
        303,
        "31 minutes idle ends it"
    );
}

/// Every request extends the idle timeout, but the row is written at most about once a minute: a page
/// view must not be a database write (on SQLite, 64 concurrent views queued on the write lock).
#[tokio::test]
async fn page_views_extend_the_session_at_most_once_a_minute() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let expiry = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT MAX(expires_at) FROM sessions WHERE admin_id IS NOT NULL",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    let signed_in = expiry().await;
    app.clock.advance(30 * SECOND);
    assert_eq!(app.get("/admin/users").await.status().as_u16(), 200);
    assert_eq!(
        expiry().await,
        signed_in,
        "30 s later the row is not rewritten"
    );
    app.clock.advance(45 * SECOND);
    assert_eq!(app.get("/admin/users").await.status().as_u16(), 200);
    // The test clock also runs in real time: allow the milliseconds the requests took.
    let moved = expiry().await - signed_in;
    assert!(
        (75 * SECOND..76 * SECOND).contains(&moved),
        "75 s after sign-in the idle timeout moved on ({moved} ms)"
    );
}

#[tokio::test]
async fn sessions_end_12_hours_after_sign_in_however_active() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let mut elapsed = 0;
    while elapsed + 25 * MINUTE < 12 * HOUR {
        app.clock.advance(25 * MINUTE);
        elapsed += 25 * MINUTE;
        assert_eq!(
            app.get("/admin").await.status().as_u16(),
            200,
            "active at {elapsed} ms"
        );
    }
    app.clock.advance(12 * HOUR - elapsed);
    assert_eq!(app.get("/admin").await.status().as_u16(), 303);
}

#[tokio::test]
async fn a_disabled_admin_loses_access_at_once() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    sqlx::query("UPDATE admins SET disabled = 1")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(app.get("/admin").await.status().as_u16(), 303);
    assert_eq!(
        app.login(ADMIN_USER, ADMIN_PASSWORD)
            .await
            .status()
            .as_u16(),
        422
    );
}

#[tokio::test]
async fn secure_cookie_when_the_base_url_is_https() {
    use roster::clock::SystemClock;
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = roster::config::Settings::for_data_dir(tmp.path().to_path_buf());
    settings.database_url = Some(crate::helpers::fresh_database_url(tmp.path()).await);
    settings.base_url = Some("https://roster.example.test".into());
    let app = roster::startup::Application::build(
        &settings,
        std::sync::Arc::new(SystemClock),
        roster::startup::Options {
            workers: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        app.setup_link()
            .unwrap()
            .starts_with("https://roster.example.test/setup?token=")
    );
    let port = app.port();
    let cancel = app.cancel_token();
    tokio::spawn(app.run_until_stopped());
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/login"))
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    cancel.cancel();
}

/// A burst of parallel guesses cannot get past the limit: at most five are checked at all.
#[tokio::test]
async fn parallel_guesses_do_not_outrun_the_lockout() {
    let app = spawn_app().await;
    app.create_admin(ADMIN_USER, ADMIN_PASSWORD).await;
    let meta = RequestMeta {
        ip: "198.51.100.9".into(),
        request_id: None,
    };
    let now = app.clock.now_ms();
    let tries = (0..20).map(|i| {
        let (db, meta) = (app.db.clone(), meta.clone());
        async move {
            service::login(
                &db,
                now + i,
                ADMIN_USER,
                SecretString::from("guess-guess-guess"),
                &meta,
            )
            .await
        }
    });
    let results = futures_util::future::join_all(tries).await;
    let checked = results
        .iter()
        .filter(|r| matches!(r, Err(LoginError::BadCredentials)))
        .count();
    let locked = results
        .iter()
        .filter(|r| matches!(r, Err(LoginError::Locked { .. })))
        .count();
    assert!(checked <= 5, "{checked} guesses were checked");
    assert_eq!(checked + locked, 20);
}
