//! Admin > Identity end to end over HTTP against the real peers: a generic SAML IdP (pysaml2) and an OpenID
//! provider (node oidc-provider) configured through the pages, sign-in, test sign-in, the one-IdP rule, the
//! toggles, certificate rollover by metadata refresh, and refusals with their reasons.

use reqwest::header::LOCATION;
use roster::audit::event::Actor;
use roster::directory::service::{LocalUserForm, create as create_local};
use roster::web::RequestMeta;

use crate::helpers::{TestApp, assert_redirect_to, spawn_app};
use crate::oidc_peer;
use crate::saml_peer::SamlIdp;

pub async fn local_user(app: &TestApp, upn: &str, mail: &str) -> String {
    create_local(
        &app.db,
        roster::clock::Clock::now_ms(app.clock.as_ref()),
        &LocalUserForm {
            upn: upn.into(),
            mail: mail.into(),
            given_name: "Test".into(),
            surname: "User".into(),
            display_name: format!("Test {upn}"),
            custom: Default::default(),
        },
        Actor::System,
        &RequestMeta {
            ip: "127.0.0.1".into(),
            request_id: None,
        },
    )
    .await
    .unwrap_or_else(|_| panic!("local user {upn} created"))
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// A running app with a SAML IdP peer set up as the generic IdP through the page (metadata by URL).
pub async fn app_with_saml(enable: bool) -> (TestApp, SamlIdp) {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let idp = SamlIdp::start(&app.url("/saml/metadata"), &app.url("/saml/acs")).await;
    let resp = app
        .post_form(
            "/admin/identity/generic",
            &[
                ("metadata_url", &format!("{}/metadata", idp.base_url)),
                ("use_for_admin", "on"),
                ("use_for_registration", "on"),
            ],
        )
        .await;
    assert_redirect_to(&resp, "/admin/identity/generic");
    if enable {
        let resp = app.post_form("/admin/identity/generic/enable", &[]).await;
        assert_redirect_to(&resp, "/admin/identity/generic");
    }
    (app, idp)
}

/// Runs a SAML sign-in in `client` from its start POST to the IdP's answer; returns the ACS response.
async fn saml_round(
    app: &TestApp,
    client: &reqwest::Client,
    idp: &SamlIdp,
    start: &str,
    user: &str,
) -> reqwest::Response {
    let csrf = crate::helpers::csrf_token_in(
        &client
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let resp = client
        .post(app.url(start))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{start} starts a sign-in");
    let to_idp = location(&resp);
    assert!(to_idp.starts_with(&idp.base_url), "{to_idp}");
    let (saml_response, relay) = idp.response_for(&to_idp, user).await;
    client
        .post(app.url("/saml/acs"))
        .form(&[
            ("SAMLResponse", saml_response.as_str()),
            ("RelayState", relay.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn saml_sign_in_for_an_admin_and_refusals() {
    let (app, idp) = app_with_saml(true).await;
    local_user(&app, "alice@example.com", "alice@example.com").await;
    app.create_admin("alice@example.com", "another-long-password")
        .await;
    let browser = app.new_client();
    let login = browser
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        login.contains("Sign in with Generic SAML 2.0 IdP"),
        "{login}"
    );

    let acs = saml_round(&app, &browser, &idp, "/sso/start", "alice").await;
    assert_eq!(acs.status().as_u16(), 303);
    let complete = location(&acs);
    assert!(complete.starts_with("/sso/complete?id="), "{complete}");
    let resp = browser.get(app.url(&complete)).send().await.unwrap();
    assert_redirect_to(&resp, "/admin");
    let home = browser.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(home.status().as_u16(), 200, "signed in through SAML");
    assert!(
        app.audit_actions()
            .await
            .contains(&"identity.sign_in".to_owned())
    );

    // The same completion cannot be used twice, and another browser cannot complete a sign-in.
    let again = browser.get(app.url(&complete)).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 403);

    let other = app.new_client();
    let acs = saml_round(&app, &other, &idp, "/sso/start", "alice").await;
    let complete = location(&acs);
    let thief = app.new_client();
    let stolen = thief.get(app.url(&complete)).send().await.unwrap();
    assert_eq!(stolen.status().as_u16(), 403);
    assert!(stolen.text().await.unwrap().contains("wrong_browser"));

    // bob authenticates at the IdP but is not a known user: a clear page, nobody signed in.
    let bob = app.new_client();
    let acs = saml_round(&app, &bob, &idp, "/sso/start", "bob").await;
    let resp = bob.get(app.url(&location(&acs))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let page = resp.text().await.unwrap();
    assert!(page.contains("data-code=\"unknown_user\""), "{page}");
    assert!(page.contains("bob@example.com"));
    let admin = bob.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(admin.status().as_u16(), 303, "bob is not signed in");
}

#[tokio::test]
async fn saml_replays_unknown_requests_and_wrong_audience_are_refused() {
    let (app, idp) = app_with_saml(true).await;
    local_user(&app, "alice@example.com", "alice@example.com").await;
    app.create_admin("alice@example.com", "another-long-password")
        .await;
    let browser = app.new_client();

    // A response captured and posted twice: the second is a replay.
    let csrf = app.csrf().await;
    let _ = csrf;
    let login = browser
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = crate::helpers::csrf_token_in(&login);
    let resp = browser
        .post(app.url("/sso/start"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    let (saml_response, _) = idp.response_for(&location(&resp), "alice").await;
    let first = browser
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", saml_response.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 303);
    let second = browser
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", saml_response.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(second.status().as_u16(), 400);
    let page = second.text().await.unwrap();
    assert!(page.contains("data-code=\"replayed\""), "{page}");

    // A response to a request we never sent.
    let stranger = browser
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", "PHNhbWxwOlJlc3BvbnNlLz4=")])
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status().as_u16(), 400);

    // Wrong audience: refused with its reason on the completion page.
    idp.set(serde_json::json!({ "audience": "https://someone-else.example/sp" }))
        .await;
    let acs = saml_round(&app, &browser, &idp, "/sso/start", "alice").await;
    let resp = browser.get(app.url(&location(&acs))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("audience") || page.contains("Audience"),
        "{page}"
    );
    let refusals: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'identity.sign_in_refused'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(refusals >= 3, "every refusal is audited");
}

#[tokio::test]
async fn test_sign_in_shows_attributes_and_the_matched_user_without_signing_in() {
    let (app, idp) = app_with_saml(false).await;
    let alice = local_user(&app, "alice@example.com", "alice@example.com").await;
    let resp = app.post_form("/admin/identity/generic/test", &[]).await;
    assert_eq!(resp.status().as_u16(), 303);
    let (saml_response, _) = idp.response_for(&location(&resp), "alice").await;
    let acs = app
        .client
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", saml_response.as_str())])
        .send()
        .await
        .unwrap();
    let done = app
        .client
        .get(app.url(&location(&acs)))
        .send()
        .await
        .unwrap();
    let result = location(&done);
    assert!(
        result.starts_with("/admin/identity/test-results/"),
        "{result}"
    );
    let page = app.get_html(&result).await;
    assert!(page.contains("data-ok=\"true\""), "{page}");
    assert!(
        page.contains(&format!("href=\"/admin/users/{alice}\"")),
        "matched user shown"
    );
    assert!(page.contains("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"));
    // Another admin cannot read this admin's test result.
    let other = app.new_client();
    let r = other.get(app.url(&result)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "needs a signed-in admin");
}

#[tokio::test]
async fn one_idp_at_a_time_and_the_toggles() {
    let (app, _idp) = app_with_saml(true).await;
    // AD FS set up by hand with the same IdP values is refused while the generic one is active.
    let peer_meta = _idp.metadata_xml().await;
    let resp = app
        .post_form(
            "/admin/identity/onprem",
            &[("metadata_xml", peer_meta.as_str())],
        )
        .await;
    assert_redirect_to(&resp, "/admin/identity/onprem");
    let resp = app.post_form("/admin/identity/onprem/enable", &[]).await;
    assert_redirect_to(&resp, "/admin/identity/onprem");
    let page = app.get_html("/admin/identity/onprem").await;
    assert!(
        page.contains("disable Generic SAML 2.0 IdP first"),
        "{page}"
    );
    let enabled: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM identity_providers WHERE enabled = 1")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(enabled, vec!["saml".to_owned()]);
    // Disable, then the other one may be enabled.
    app.post_form("/admin/identity/generic/disable", &[]).await;
    app.post_form("/admin/identity/onprem/enable", &[]).await;
    let overview = app.get_html("/admin/identity").await;
    assert!(
        overview.contains("data-test=\"active-idp-name\">AD FS (on-premises)"),
        "{overview}"
    );
    // Admin sign-in toggle off: no button, and /sso/start refuses.
    let browser = app.new_client();
    let login = browser
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !login.contains("data-test=\"sso-start\""),
        "AD FS was saved without 'use for admin'"
    );
    let token = crate::helpers::csrf_token_in(&login);
    let resp = browser
        .post(app.url("/sso/start"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_redirect_to(&resp, "/login");
}

#[tokio::test]
async fn metadata_refresh_adds_a_rollover_certificate_and_bad_metadata_keeps_input() {
    let (app, idp) = app_with_saml(true).await;
    assert_eq!(app.count("idp_certificates").await, 1);
    local_user(&app, "alice@example.com", "alice@example.com").await;
    app.create_admin("alice@example.com", "another-long-password")
        .await;
    // The IdP starts signing with its secondary key: refused until the metadata lists it.
    idp.set(serde_json::json!({ "signing_key": "secondary", "metadata_certs": "both" }))
        .await;
    let browser = app.new_client();
    let acs = saml_round(&app, &browser, &idp, "/sso/start", "alice").await;
    let refused = browser.get(app.url(&location(&acs))).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let resp = app.post_form("/admin/identity/generic/refresh", &[]).await;
    assert_redirect_to(&resp, "/admin/identity/generic");
    assert_eq!(
        app.count("idp_certificates").await,
        2,
        "the rollover certificate is trusted too"
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&"identity.certificate_added".to_owned())
    );
    let acs = saml_round(&app, &browser, &idp, "/sso/start", "alice").await;
    let ok = browser.get(app.url(&location(&acs))).send().await.unwrap();
    assert_redirect_to(&ok, "/admin");

    // Uploaded metadata that is not metadata: the message is next to the field, input kept, nothing lost.
    let resp = app
        .post_form(
            "/admin/identity/generic",
            &[("metadata_xml", "<html>not metadata</html>")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    let page = resp.text().await.unwrap();
    assert!(page.contains("data-test=\"error-metadata_xml\""), "{page}");
    assert!(page.contains("not metadata"), "the pasted text is kept");
    assert_eq!(app.count("idp_certificates").await, 2);
}

#[tokio::test]
async fn certificates_expiring_within_30_days_raise_a_notification() {
    let (app, _idp) = app_with_saml(true).await;
    let not_after: i64 = sqlx::query_scalar("SELECT not_after FROM idp_certificates")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    // The peer's certificate is valid for 30 days: 40 days before its end nothing is due.
    roster::identity::service::check_certificate_expiry(
        &app.db,
        not_after - 40 * roster::clock::DAY,
    )
    .await
    .unwrap();
    assert_eq!(app.count("notifications").await, 0, "far from expiry");
    roster::identity::service::check_certificate_expiry(
        &app.db,
        not_after - 10 * roster::clock::DAY,
    )
    .await
    .unwrap();
    let title: String =
        sqlx::query_scalar("SELECT title FROM notifications WHERE kind = 'idp_certificate'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(title.contains("expires in 10 days"), "{title}");
}

const OIDC_CLIENT: &str = "roster-test-client";
const OIDC_SECRET: &str = "a-long-client-secret-for-the-oidc-peer-0123456789";

#[tokio::test]
async fn oidc_sign_in_for_an_admin_and_refusals() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let accounts = serde_json::json!({
        "alice": { "oid": "5f1e3a2b-0000-4000-8000-00000000a11c", "tid": "11111111-2222-3333-4444-555555555555",
                   "preferred_username": "alice@contoso.test", "name": "Alice", "email": "alice@contoso.test" },
        "mallory": { "oid": "5f1e3a2b-0000-4000-8000-0000000000ff", "tid": "11111111-2222-3333-4444-555555555555",
                     "preferred_username": "mallory@contoso.test", "name": "Mallory" }
    })
    .to_string();
    let peer = oidc_peer::start(
        OIDC_CLIENT,
        OIDC_SECRET,
        &app.url("/oidc/callback"),
        &accounts,
    )
    .await;
    // Bad input first: nothing is stored and the message is next to the field.
    let resp = app
        .post_form(
            "/admin/identity/entra",
            &[
                ("cloud", "custom"),
                ("issuer_url", "not a url"),
                ("client_id", OIDC_CLIENT),
                ("client_secret", OIDC_SECRET),
            ],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-test=\"error-issuer_url\"")
    );
    assert_eq!(app.count("identity_providers").await, 0);
    let resp = app
        .post_form(
            "/admin/identity/entra",
            &[
                ("cloud", "custom"),
                ("issuer_url", &peer.issuer),
                ("client_id", OIDC_CLIENT),
                ("client_secret", OIDC_SECRET),
                ("use_for_admin", "on"),
            ],
        )
        .await;
    assert_redirect_to(&resp, "/admin/identity/entra");
    let page = app.get_html("/admin/identity/entra").await;
    assert!(!page.contains(OIDC_SECRET), "the secret is write-only");
    assert!(
        page.contains(&app.url("/oidc/callback")),
        "shows the redirect URI"
    );
    let sealed: String = sqlx::query_scalar("SELECT client_secret_sealed FROM identity_providers")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(!sealed.contains(OIDC_SECRET), "encrypted at rest");
    app.post_form("/admin/identity/entra/enable", &[]).await;
    local_user(&app, "alice@contoso.test", "alice@contoso.test").await;
    app.create_admin("alice@contoso.test", "another-long-password")
        .await;

    let browser = app.new_client();
    let start = |b: reqwest::Client| {
        let app_url = app.url("/login");
        let start_url = app.url("/sso/start");
        async move {
            let login = b.get(app_url).send().await.unwrap().text().await.unwrap();
            assert!(login.contains("Sign in with Entra ID"));
            let token = crate::helpers::csrf_token_in(&login);
            let resp = b
                .post(start_url)
                .form(&[("csrf_token", token.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 303);
            location(&resp)
        }
    };
    let authorize = start(browser.clone()).await;
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "PKCE: {authorize}"
    );
    let callback = peer.login_without_browser(&authorize, "alice").await;
    let resp = browser.get(&callback).send().await.unwrap();
    let complete = location(&resp);
    let resp = browser.get(app.url(&complete)).send().await.unwrap();
    assert_redirect_to(&resp, "/admin");

    // The same callback again (a replayed state) is refused.
    let again = browser.get(&callback).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 400);
    assert!(again.text().await.unwrap().contains("wrong_state"));

    // A forged ID token (alg none) is refused with its reason.
    let b2 = app.new_client();
    let authorize = start(b2.clone()).await;
    peer.control(serde_json::json!({ "fault": "alg_none" }))
        .await;
    let callback = peer.login_without_browser(&authorize, "alice").await;
    let resp = b2.get(&callback).send().await.unwrap();
    let resp = b2.get(app.url(&location(&resp))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let page = resp.text().await.unwrap();
    assert!(
        !page.contains("data-code=\"unknown_user\""),
        "refused before matching: {page}"
    );

    // mallory authenticates but is not a directory user.
    let b3 = app.new_client();
    let authorize = start(b3.clone()).await;
    let callback = peer.login_without_browser(&authorize, "mallory").await;
    let resp = b3.get(&callback).send().await.unwrap();
    let resp = b3.get(app.url(&location(&resp))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-code=\"unknown_user\"")
    );
}
