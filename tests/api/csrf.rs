//! Every state-changing route, taken from the router's own table, refuses a missing or wrong CSRF token.

use actix_web::http::Method;
use roster::web::routes;

use crate::helpers::{TestApp, spawn_app};

/// Fills `{param}` segments so the path matches its route.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn assert_all_refused(app: &TestApp, label: &str) {
    // The IdP's cross-site answers cannot carry our token: they are checked by their own signed state
    // (see tests/api/identity.rs), and here only shown to refuse a forged answer without changing anything.
    let exempt = roster::web::csrf::EXEMPT_PATHS;
    for path in exempt.iter().filter(|p| {
        routes::table()
            .iter()
            .any(|r| r.method == Method::POST && r.path == **p)
    }) {
        let resp = app
            .client
            .post(app.url(path))
            .form(&[("SAMLResponse", "PHNhbWxwOlJlc3BvbnNlLz4=")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            400,
            "{label}: a forged answer to {path} is refused"
        );
    }
    let posts: Vec<_> = routes::table()
        .into_iter()
        .filter(|r| r.method == Method::POST && !exempt.contains(&r.path))
        .collect();
    assert!(posts.len() >= 3, "the table lists the POST routes");
    let audit_before = app.count("audit_events").await;
    let admins_before = app.count("admins").await;
    for r in posts {
        let path = concrete(r.path);
        let form = [
            ("username", "mallory"),
            ("password", "mallory-password-1"),
            ("confirm", "mallory-password-1"),
        ];
        let missing = app
            .client
            .post(app.url(&path))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            missing.status().as_u16(),
            403,
            "{label}: POST {path} without a token"
        );
        let mut wrong = form.to_vec();
        wrong.push(("csrf_token", "forged-token"));
        let resp = app
            .client
            .post(app.url(&path))
            .form(&wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            403,
            "{label}: POST {path} with a wrong token"
        );
        let html = resp.text().await.unwrap();
        assert!(html.contains("This form has expired"), "clear message");
        let header = app
            .client
            .post(app.url(&path))
            .header("x-csrf-token", "forged-token")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header.status().as_u16(),
            403,
            "{label}: POST {path} with a wrong header token"
        );
    }
    assert_eq!(
        app.count("audit_events").await,
        audit_before,
        "{label}: nothing was recorded"
    );
    assert_eq!(
        app.count("admins").await,
        admins_before,
        "{label}: nothing was created"
    );
}

#[tokio::test]
async fn every_post_route_refuses_a_missing_or_wrong_token() {
    let app = spawn_app().await;
    // A visitor with no session at all, then one whose session has a token.
    assert_all_refused(&app, "no session").await;
    let _ = app.get("/login").await;
    assert_all_refused(&app, "anonymous session").await;
    app.login_as_admin().await;
    assert_all_refused(&app, "signed-in admin").await;
    // The admin is still signed in: a refused POST /logout did not sign them out.
    assert_eq!(app.get("/admin").await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_token_from_another_session_is_refused() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let other = app.new_client();
    let page = other
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let foreign = crate::helpers::csrf_token_in(&page);
    let resp = app.post_raw("/logout", &[("csrf_token", &foreign)]).await;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(app.get("/admin").await.status().as_u16(), 200);
}

/// Every admin route, reached through a percent-encoded path (`/%61dmin/…` routes to `/admin/…`), still
/// needs a signed-in admin — GET and POST (with a valid CSRF token, so only the guard can stop it).
#[tokio::test]
async fn encoded_paths_do_not_bypass_the_admin_guard() {
    let app = spawn_app().await;
    let token = app.csrf().await;
    for r in routes::table().into_iter().filter(|r| r.requires_admin()) {
        let path = concrete(r.path).replacen("/admin", "/%61dmin", 1);
        let resp = if r.method == Method::POST {
            app.client
                .post(app.url(&path))
                .form(&[("csrf_token", token.as_str())])
                .send()
                .await
                .unwrap()
        } else {
            app.get(&path).await
        };
        let status = resp.status().as_u16();
        assert!(
            status == 303 || status == 404,
            "{} {path} answered {status} without sign-in",
            r.method
        );
        if status == 303 {
            let loc = resp
                .headers()
                .get("location")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            assert!(loc.starts_with("/login"), "{path} redirected to {loc}");
        }
    }
    let resp = app.get("/%61dmin/users.csv").await;
    assert_eq!(resp.status().as_u16(), 303, "the CSV export is not public");
}
