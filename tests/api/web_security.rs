//! The web part of the reliability and security suite: who may reach which route (taken from the router's own
//! table), stored-XSS probes in every text field that is shown back, redirect targets that never leave the
//! portal, and a new session id at an SSO sign-in.

use std::sync::Arc;

use actix_web::http::Method;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::LOCATION;
use roster::clock::Clock;
use roster::web::routes::{self, RouteInfo};

use crate::helpers::{TestApp, assert_redirect_to, csrf_token_in, spawn_app};
use crate::identity::{app_with_saml, local_user};
use crate::saml_peer::SamlIdp;

/// Typed into every field the probes reach. It breaks out of a double-quoted attribute, opens a script and
/// an event handler, and ends with a single quote.
const PAYLOAD: &str = "\"><script>alert(1)</script><img src=x onerror=alert(1)>'";
const FAKE_ID: &str = "00000000-0000-0000-0000-000000000000";
/// The admin's own markup in the invitation's HTML body (HTML by design; it must still be escaped as an
/// attribute value in the preview).
const ADMIN_HTML: &str = "<b class=\"admin\">admin's own HTML</b><script>alert(2)</script>";
const FAKE_TOKEN: &str = "not-a-registration-token";

// ---------------------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------------------

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A browser of its own that keeps cookies and does not follow redirects; the jar can be read.
fn browser_with_jar() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    (client, jar)
}

/// The `roster_session` cookie value the jar would send to the app.
fn session_cookie(app: &TestApp, jar: &Jar) -> Option<String> {
    let url = url::Url::parse(&app.address).unwrap();
    let header = jar.cookies(&url)?;
    header
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix("roster_session="))
        .map(str::to_owned)
}

/// The CSRF token of `client`'s session, from the sign-in page (which anyone who is not an admin sees).
async fn token_of(app: &TestApp, client: &reqwest::Client) -> String {
    let resp = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "a browser without an admin session sees the sign-in page"
    );
    csrf_token_in(&resp.text().await.unwrap())
}

/// Asserts a redirect target stays on this portal: a path (`/…`, not `//…` or `/\…`), no CR/LF, and the
/// URL a browser would resolve it to has the portal's origin.
fn assert_on_site(app: &TestApp, loc: &str, what: &str) {
    assert_on_site_of(&app.address, loc, what);
}

fn assert_on_site_of(address: &str, loc: &str, what: &str) {
    assert!(
        !loc.contains(['\r', '\n']),
        "{what}: CR/LF in Location {loc:?}"
    );
    assert!(
        loc.starts_with('/') && !loc.starts_with("//") && !loc.starts_with("/\\"),
        "{what}: Location {loc:?} is not a local path"
    );
    let base = url::Url::parse(address).unwrap();
    let resolved = base
        .join(loc)
        .unwrap_or_else(|e| panic!("{what}: Location {loc:?} does not resolve: {e}"));
    assert_eq!(
        resolved.origin(),
        base.origin(),
        "{what}: Location {loc:?} leaves the portal ({resolved})"
    );
}

/// Decodes one level of the character references an HTML escaper writes (`&lt;`, `&#60;`, `&#x3c;`, …).
fn decode_once(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.bytes().take(12).position(|b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let ch = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "amp" => Some('&'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes only `<` and `>` references: a raw `"` next to them then shows an attribute breakout.
fn decode_brackets(s: &str) -> String {
    let mut t = s.to_owned();
    for (from, to) in [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&#60;", "<"),
        ("&#62;", ">"),
        ("&#x3c;", "<"),
        ("&#x3e;", ">"),
        ("&#x3C;", "<"),
        ("&#x3E;", ">"),
    ] {
        t = t.replace(from, to);
    }
    t
}

/// The page shows `PAYLOAD` only escaped: no live `<script>`/`<img onerror>`, no raw quote breaking out of
/// an attribute, and the escaped text is there (else the probe would prove nothing).
#[track_caller]
fn assert_escaped(html: &str, what: &str) {
    assert!(
        !html.contains("<script>alert("),
        "{what}: the payload's <script> is in the page unescaped:\n{}",
        around(html, "<script>alert(")
    );
    assert!(
        !html.contains("<img src=x onerror"),
        "{what}: the payload's <img onerror> is in the page unescaped:\n{}",
        around(html, "<img src=x onerror")
    );
    let brackets = decode_brackets(html);
    assert!(
        !brackets.contains("\"><script>alert("),
        "{what}: the payload's double quote is not escaped (breaks out of an attribute):\n{}",
        around(&brackets, "\"><script>alert(")
    );
    let once = decode_once(html);
    assert!(
        once.contains(PAYLOAD) || decode_once(&once).contains(PAYLOAD),
        "{what}: the payload is not shown at all, so this probe proves nothing:\n{html}"
    );
}

fn around(html: &str, needle: &str) -> String {
    html.find(needle).map_or_else(String::new, |i| {
        let start = (0..=i.saturating_sub(200))
            .rev()
            .find(|&b| html.is_char_boundary(b))
            .unwrap_or(0);
        let end = ((i + 200).min(html.len())..=html.len())
            .find(|&b| html.is_char_boundary(b))
            .unwrap_or(html.len());
        html[start..end].to_owned()
    })
}

async fn admin_html(app: &TestApp, path: &str) -> String {
    let resp = app.get(path).await;
    let status = resp.status().as_u16();
    let html = resp.text().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {html}");
    html
}

/// POSTs with the admin's token and returns (status, Location, body).
async fn admin_post(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let resp = app.post_form(path, form).await;
    let status = resp.status().as_u16();
    let loc = location(&resp);
    (status, loc, resp.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------------------
// Part 1: the access matrix over every route of the table
// ---------------------------------------------------------------------------------------------------------

/// Real objects to put in `{param}` segments.
struct Ids {
    user: String,
    configs: Vec<String>,
    notification: String,
    group: String,
    test_result: String,
    certificate: String,
    token: String,
}

impl Ids {
    fn fake() -> Self {
        Self {
            user: FAKE_ID.into(),
            configs: vec![FAKE_ID.into()],
            notification: FAKE_ID.into(),
            group: FAKE_ID.into(),
            test_result: FAKE_ID.into(),
            certificate: FAKE_ID.into(),
            token: FAKE_TOKEN.into(),
        }
    }
}

/// Every concrete path of a route: `{param}` segments filled from `ids` (by the segment before them). A new
/// kind of parameter fails here until the suite learns it, so no route is silently skipped.
fn concrete(path: &str, ids: &Ids) -> Vec<String> {
    if path.starts_with("/static/") {
        return vec![roster::web::assets::css_href().to_owned()];
    }
    let segs: Vec<&str> = path.split('/').collect();
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    for (i, seg) in segs.iter().enumerate() {
        let choices: Vec<String> = if seg.starts_with('{') {
            match segs[i - 1] {
                "users" => vec![ids.user.clone()],
                "configurations" => ids.configs.clone(),
                "notifications" => vec![ids.notification.clone()],
                "groups" => vec![ids.group.clone()],
                "test-results" => vec![ids.test_result.clone()],
                "certificates" => vec![ids.certificate.clone()],
                "identity" => vec!["entra".into(), "onprem".into(), "generic".into()],
                "register" => vec![ids.token.clone()],
                other => panic!(
                    "no value for {seg} after /{other}/ in {path}: teach concrete() about it"
                ),
            }
        } else {
            vec![(*seg).to_owned()]
        };
        out = out
            .into_iter()
            .flat_map(|prefix| {
                choices.iter().map(move |c| {
                    let mut p = prefix.clone();
                    p.push(c.clone());
                    p
                })
            })
            .collect();
    }
    out.into_iter().map(|p| p.join("/")).collect()
}

/// Counts and last-change stamps of everything an admin route could change.
async fn snapshot(app: &TestApp) -> Vec<(String, i64)> {
    let mut queries: Vec<String> = [
        "admins",
        "audit_events",
        "notifications",
        "user_sources",
        "sync_runs",
        "directory_users",
        "directory_groups",
        "user_removals",
        "configurations",
        "identity_providers",
        "idp_certificates",
        "smtp_settings",
        "mail_outbox",
        "invitations",
        "invitation_settings",
        "enrollment_pins",
    ]
    .iter()
    .map(|t| format!("SELECT COUNT(*) FROM {t}"))
    .collect();
    for t in [
        "admins",
        "user_sources",
        "configurations",
        "identity_providers",
        "smtp_settings",
        "invitation_settings",
    ] {
        queries.push(format!("SELECT COALESCE(MAX(updated_at), 0) FROM {t}"));
    }
    queries.extend(
        [
            "SELECT COALESCE(MAX(last_changed_at), 0) FROM directory_users",
            "SELECT COUNT(*) FROM directory_users WHERE deleted_at IS NULL AND account_enabled = 1",
            "SELECT COUNT(*) FROM directory_users WHERE invitation_state <> 'none'",
            "SELECT COUNT(*) FROM notifications WHERE read_at IS NOT NULL",
            "SELECT COUNT(*) FROM identity_providers WHERE enabled = 1",
            "SELECT COUNT(*) FROM admins WHERE disabled <> 0",
        ]
        .map(str::to_owned),
    );
    let mut out = Vec::new();
    for q in queries {
        let v: i64 = sqlx::query_scalar(&q)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        out.push((q, v));
    }
    out
}

fn admin_routes() -> Vec<RouteInfo> {
    routes::table()
        .into_iter()
        .filter(RouteInfo::requires_admin)
        .collect()
}

/// What a would-be attacker sends to a state-changing admin route (the fields several forms take).
const HOSTILE_FORM: &[(&str, &str)] = &[
    ("action", "save"),
    ("kind", "custom"),
    ("name", "mallory"),
    ("upn", "mallory"),
    ("username", "mallory"),
    ("password", "mallory-password-1"),
    ("confirm", "mallory-password-1"),
];

/// Walks every admin route with `client` (no admin session): GET answers 303 to the sign-in page with the
/// path as `return_to`, POST is refused (403 without a token; 303 to /login with this session's own valid
/// token, so only the guard can stop it) and nothing changes. Returns the number of requests made.
async fn assert_admin_routes_refuse(
    app: &TestApp,
    client: &reqwest::Client,
    ids: &Ids,
    label: &str,
) -> usize {
    let token = token_of(app, client).await;
    let before = snapshot(app).await;
    let mut requests = 0;
    for r in admin_routes() {
        for path in concrete(r.path, ids) {
            if r.method == Method::GET {
                let resp = client.get(app.url(&path)).send().await.unwrap();
                requests += 1;
                assert_eq!(resp.status().as_u16(), 303, "{label}: GET {path}");
                assert_eq!(
                    location(&resp).as_deref(),
                    Some(format!("/login?return_to={}", encoded(&path)).as_str()),
                    "{label}: GET {path} goes to the sign-in page"
                );
                let body = resp.text().await.unwrap();
                assert!(body.is_empty(), "{label}: GET {path} leaked a body: {body}");
            } else {
                let missing = client
                    .post(app.url(&path))
                    .form(HOSTILE_FORM)
                    .send()
                    .await
                    .unwrap();
                requests += 1;
                assert_eq!(
                    missing.status().as_u16(),
                    403,
                    "{label}: POST {path} without a token"
                );
                let mut form = HOSTILE_FORM.to_vec();
                form.push(("csrf_token", token.as_str()));
                let resp = client
                    .post(app.url(&path))
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                requests += 1;
                assert_eq!(
                    resp.status().as_u16(),
                    303,
                    "{label}: POST {path} with this browser's own valid token"
                );
                assert_eq!(
                    location(&resp).as_deref(),
                    Some("/login"),
                    "{label}: POST {path}"
                );
            }
        }
    }
    assert_eq!(
        snapshot(app).await,
        before,
        "{label}: an admin route changed something"
    );
    // Still not an admin afterwards.
    let resp = client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        303,
        "{label}: not signed in after the walk"
    );
    requests
}

/// Runs a SAML sign-in in `client`: the start POST (`start` is /sso/start or a registration link), the IdP
/// answering as `user`, the POST to the ACS. Returns the ACS answer.
async fn saml_round(
    app: &TestApp,
    client: &reqwest::Client,
    idp: &SamlIdp,
    start: &str,
    user: &str,
) -> reqwest::Response {
    let token = token_of(app, client).await;
    let resp = client
        .post(app.url(start))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{start} starts a sign-in");
    let to_idp = location(&resp).unwrap();
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

/// An app with the generic SAML IdP enabled (admin sign-in and registration) and one of each object:
/// a local user, three configurations, a notification, a group, a test sign-in result.
async fn prepared_app() -> (TestApp, SamlIdp, Ids) {
    let (app, idp) = app_with_saml(true).await;
    let user = local_user(&app, "carol@example.com", "carol@example.com").await;
    let mut configs = Vec::new();
    for form in [
        vec![
            ("kind", "wifi"),
            ("name", "Office Wi-Fi"),
            ("ssid", "Contoso-Corp"),
            ("auto_join", "on"),
            ("security", "enterprise"),
            ("encryption", "WPA2"),
            ("eap_method", "peap"),
            ("eap_username", "${userUPN}"),
            ("outer_identity", ""),
            ("password", ""),
            ("action", "save"),
        ],
        vec![
            ("kind", "exchange"),
            ("name", "Mail"),
            ("account_name", "Contoso Mail"),
            ("host", "outlook.office365.com"),
            ("ssl", "on"),
            ("email_address", "${userEmailAddress}"),
            ("user_name", "${userUPN}"),
            ("past_days", "14"),
            ("action", "save"),
        ],
        vec![
            ("kind", "custom"),
            ("name", "Custom"),
            ("pair_key", "dept"),
            ("pair_value", "${userUPN}"),
            ("action", "save"),
        ],
    ] {
        let (status, loc, body) = admin_post(&app, "/admin/configurations/new", &form).await;
        assert_eq!(status, 303, "configuration created: {body}");
        configs.push(
            loc.unwrap()
                .strip_prefix("/admin/configurations/")
                .unwrap()
                .to_owned(),
        );
    }
    let notification = raise_notification(
        &app,
        "web-security-probe",
        "Sync is failing",
        "Graph answered 503.",
    )
    .await;
    let group = insert_group(&app, "Sales", Some("The sales team")).await;
    // A test sign-in result of this admin.
    let resp = app.post_form("/admin/identity/generic/test", &[]).await;
    assert_eq!(resp.status().as_u16(), 303);
    let (saml_response, _) = idp.response_for(&location(&resp).unwrap(), "alice").await;
    let acs = app
        .client
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", saml_response.as_str())])
        .send()
        .await
        .unwrap();
    let done = app.get(&location(&acs).unwrap()).await;
    let result = location(&done).unwrap();
    let test_result = result
        .strip_prefix("/admin/identity/test-results/")
        .unwrap_or_else(|| panic!("a test result: {result}"))
        .to_owned();
    let certificate: String = sqlx::query_scalar("SELECT id FROM idp_certificates")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let ids = Ids {
        user,
        configs,
        notification,
        group,
        test_result,
        certificate,
        token: FAKE_TOKEN.into(),
    };
    (app, idp, ids)
}

async fn raise_notification(app: &TestApp, key: &str, title: &str, body: &str) -> String {
    let now = app.clock.now_ms();
    roster::notifications::repo::raise(
        &app.db.pool,
        &roster::notifications::NewNotification {
            kind: "mail_failing",
            dedup_key: key.to_owned(),
            severity: roster::notifications::Severity::Error,
            title: title.to_owned(),
            body: body.to_owned(),
            action_text: format!("Check it: {body}"),
            action_href: Some("/admin/mail".into()),
            details: serde_json::json!({ "last_error": body }),
            run_id: None,
        },
        now,
    )
    .await
    .unwrap();
    sqlx::query_scalar("SELECT id FROM notifications WHERE dedup_key = $1")
        .bind(key)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// A group as a sync stores it (its name and description come from Entra ID).
async fn insert_group(app: &TestApp, name: &str, description: Option<&str>) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO directory_groups (id, source_id, external_id, display_name, description, mail, mail_enabled, \
         security_enabled, group_types, content_hash, first_seen_at, last_changed_at, last_seen_at) \
         VALUES ($1, 'entra', $2, $3, $4, NULL, 0, 1, '[]', 'x', 0, 0, 0)",
    )
    .bind(&id)
    .bind(format!("ext-{id}"))
    .bind(name)
    .bind(description)
    .execute(&app.db.pool)
    .await
    .unwrap();
    id
}

/// Anonymous: every admin route (real ids) redirects or refuses without changing anything; every public
/// route answers without a server error, and never redirects off-site except /sso/start to the IdP.
#[tokio::test]
async fn anonymous_visitors_get_no_admin_route_and_no_public_route_fails() {
    let (app, idp, ids) = prepared_app().await;
    let table = routes::table();
    let admin_count = table.iter().filter(|r| r.requires_admin()).count();
    let public: Vec<RouteInfo> = table
        .iter()
        .filter(|r| !r.requires_admin())
        .cloned()
        .collect();
    assert!(
        admin_count >= 40,
        "the table lists the admin routes ({admin_count})"
    );
    assert!(
        public.len() >= 14,
        "the table lists the public routes ({})",
        public.len()
    );

    let anon = app.new_client();
    let admin_requests = assert_admin_routes_refuse(&app, &anon, &ids, "anonymous").await;
    // With fake ids as well (a guessed id must not tell the guard apart from a real one).
    let fake_requests =
        assert_admin_routes_refuse(&app, &anon, &Ids::fake(), "anonymous, fake ids").await;

    let admins_before = app.count("admins").await;
    let mut public_requests = 0;
    for r in &public {
        for path in concrete(r.path, &Ids::fake()) {
            let resp = if r.method == Method::GET {
                anon.get(app.url(&path)).send().await.unwrap()
            } else {
                // A fresh token each time: POST /logout ends the anonymous session.
                let token = token_of(&app, &anon).await;
                anon.post(app.url(&path))
                    .form(&[
                        ("csrf_token", token.as_str()),
                        ("username", "mallory"),
                        ("password", "x"),
                    ])
                    .send()
                    .await
                    .unwrap()
            };
            public_requests += 1;
            let status = resp.status().as_u16();
            assert!(
                status < 500,
                "anonymous {} {path} answered {status}",
                r.method
            );
            if let Some(loc) = location(&resp) {
                if path == "/sso/start" {
                    assert!(
                        loc.starts_with(&idp.base_url),
                        "/sso/start goes to the configured IdP: {loc}"
                    );
                } else {
                    assert_on_site(&app, &loc, &format!("anonymous {} {path}", r.method));
                }
            }
        }
    }
    for extra in [
        "/metrics",
        "/admin/../admin",
        "/%61dmin/users",
        "/admin/users/",
        "/ADMIN",
    ] {
        let resp = anon.get(app.url(extra)).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(status < 500, "anonymous GET {extra} answered {status}");
        if extra != "/metrics" {
            assert_ne!(status, 200, "anonymous GET {extra} reached a page");
        }
    }
    assert_eq!(
        app.count("admins").await,
        admins_before,
        "no public route made an admin"
    );
    assert_eq!(
        anon.get(app.url("/admin"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );
    println!(
        "access matrix (anonymous): {admin_count} admin routes → {admin_requests} requests with real ids, \
         {fake_requests} with fake ids; {} public routes → {public_requests} requests",
        public.len()
    );
}

/// An "end user" — someone who signed in at the IdP but is no admin, or who holds a registration link —
/// gets exactly the anonymous answers on every admin route.
#[tokio::test]
async fn end_user_browsers_get_the_anonymous_answers_on_every_admin_route() {
    let (app, idp, ids) = prepared_app().await;
    let alice = local_user(&app, "alice@example.com", "alice@example.com").await;

    // bob authenticates at the IdP but is not a Roster user.
    let bob = app.new_client();
    let acs = saml_round(&app, &bob, &idp, "/sso/start", "bob").await;
    let done = bob
        .get(app.url(&location(&acs).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 403, "bob is refused");
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("data-code=\"unknown_user\"")
    );
    let mut walked =
        assert_admin_routes_refuse(&app, &bob, &ids, "bob after a refused SSO sign-in").await;

    // alice is a directory user (not an admin) and authenticates at the IdP through the admin sign-in.
    let alice_sso = app.new_client();
    let acs = saml_round(&app, &alice_sso, &idp, "/sso/start", "alice").await;
    let done = alice_sso
        .get(app.url(&location(&acs).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status().as_u16(),
        403,
        "a directory user who is no admin is refused"
    );
    walked +=
        assert_admin_routes_refuse(&app, &alice_sso, &ids, "alice (user, not admin) after SSO")
            .await;

    // alice holds a registration link: opens it, then registers through the IdP.
    let now = app.clock.now_ms();
    let outcome = roster::invitations::service::invite(
        &app.db,
        &app.state.base_url,
        std::slice::from_ref(&alice),
        ("test", "test"),
        now,
    )
    .await
    .unwrap();
    assert_eq!(outcome.invited, 1);
    let text: String =
        sqlx::query_scalar("SELECT text_body FROM mail_outbox WHERE kind = 'invitation'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let start = text
        .find("/register/")
        .expect("a registration link in the mail");
    let token: String = text[start + "/register/".len()..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let link = format!("/register/{token}");
    let person = app.new_client();
    let landing = person.get(app.url(&link)).send().await.unwrap();
    assert_eq!(landing.status().as_u16(), 200, "the link opens");
    walked += assert_admin_routes_refuse(&app, &person, &ids, "registration link holder").await;
    let acs = saml_round(&app, &person, &idp, &link, "alice").await;
    let done = person
        .get(app.url(&location(&acs).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("data-test=\"enrolled\""),
        "alice registered"
    );
    walked += assert_admin_routes_refuse(&app, &person, &ids, "registered user after SSO").await;
    println!("access matrix (end users): 4 browsers, {walked} requests on admin routes");
}

/// A signed-in admin: every admin GET route answers 200 with real ids, 404 (or 200 for routes without ids)
/// with fake ids, and nothing 5xx with hostile query strings either.
#[tokio::test]
async fn an_admin_gets_every_admin_page_without_a_server_error() {
    let (app, _idp, ids) = prepared_app().await;
    let gets: Vec<RouteInfo> = admin_routes()
        .into_iter()
        .filter(|r| r.method == Method::GET)
        .collect();
    assert!(gets.len() >= 25, "{} admin GET routes", gets.len());
    let mut failures = Vec::new();
    let mut requests = 0;
    for r in &gets {
        let has_id = r.path.contains('{');
        for path in concrete(r.path, &ids) {
            // Some pages need a query to show something: the export a user, the new form a kind.
            let full = if path.ends_with("/export") {
                format!("{path}?user=carol@example.com")
            } else if path.ends_with("/configurations/new") {
                format!("{path}?kind=wifi")
            } else {
                path.clone()
            };
            for p in [path.clone(), full] {
                let resp = app.get(&p).await;
                let status = resp.status().as_u16();
                requests += 1;
                let ok = match status {
                    200 => true,
                    // Without its query: the new form asks for a kind, the export for a user.
                    303 if p == path && path.ends_with("/configurations/new") => {
                        location(&resp).is_some_and(|l| l.starts_with("/admin"))
                    }
                    404 if p == path && path.ends_with("/export") => true,
                    _ => false,
                };
                if !ok {
                    failures.push(format!("GET {p} (real ids) answered {status}"));
                }
            }
        }
        for path in concrete(r.path, &Ids::fake()) {
            let status = app.get(&path).await.status().as_u16();
            requests += 1;
            let ok = if has_id && !r.path.starts_with("/admin/identity/{slug}") {
                status == 404
            } else {
                matches!(status, 200 | 303)
            };
            if !ok {
                failures.push(format!("GET {path} (fake ids) answered {status}"));
            }
        }
        for path in concrete(r.path, &ids) {
            for query in [
                "?page=-1&before=x&sort=%27&dir=sideways&q=%00%27%22&status=nope&severity=nope",
                "?page=99999999999999999999&before=-9223372036854775808&user=%FF&kind=nope",
                "?q=a&q=b&page=1&page=2",
            ] {
                let full = format!("{path}{query}");
                let status = app.get(&full).await.status().as_u16();
                requests += 1;
                if !(status < 500 && matches!(status, 200 | 303 | 400 | 404)) {
                    failures.push(format!("GET {full} answered {status}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "admin GET routes:\n{}",
        failures.join("\n")
    );
    println!(
        "access matrix (admin): {} GET routes, {requests} requests",
        gets.len()
    );
}

// ---------------------------------------------------------------------------------------------------------
// Part 2: stored XSS
// ---------------------------------------------------------------------------------------------------------

async fn app_with_user_source() -> TestApp {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let resp = crate::user_source::post_settings(
        &app,
        &crate::user_source::valid_form("http://127.0.0.1:9", "secret-value~1"),
    )
    .await;
    assert_redirect_to(&resp, "/admin/azure/entra-user-source");
    app
}

/// Local user fields (refused and stored), the user pages and list, the search boxes, the login form and
/// the audit log of a failed sign-in.
#[tokio::test]
async fn local_user_fields_search_boxes_and_the_login_form_are_escaped() {
    let app = app_with_user_source().await;
    let mut probed = 0;

    // Refused: the upn and mail fail validation, the form comes back with every field as typed.
    let (status, _, html) = admin_post(
        &app,
        "/admin/users/new",
        &[
            ("upn", PAYLOAD),
            ("mail", PAYLOAD),
            ("given_name", PAYLOAD),
            ("surname", PAYLOAD),
            ("display_name", PAYLOAD),
            ("attr_badge", PAYLOAD),
            ("attr_costCenter", PAYLOAD),
        ],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert_escaped(&html, "refused new-user form");
    probed += 7;

    // Stored: the names and custom attributes take the payload.
    let (status, loc, html) = admin_post(
        &app,
        "/admin/users/new",
        &[
            ("upn", "xss.probe"),
            ("mail", "xss.probe@example.com"),
            ("given_name", PAYLOAD),
            ("surname", PAYLOAD),
            ("display_name", PAYLOAD),
            ("attr_badge", PAYLOAD),
            ("attr_costCenter", PAYLOAD),
        ],
    )
    .await;
    assert_eq!(status, 303, "{html}");
    let user_page = loc.unwrap();
    for page in [
        user_page.clone(),
        format!("{user_page}/edit"),
        format!("{user_page}/delete"),
        "/admin/users".to_owned(),
        "/admin/users?q=xss".to_owned(),
        "/admin/invitations?user=xss.probe".to_owned(),
    ] {
        assert_escaped(&admin_html(&app, &page).await, &format!("GET {page}"));
    }
    // The CSV export is not HTML, but must not be served as HTML either.
    let csv = app.get("/admin/users.csv").await;
    let ct = csv.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(!ct.contains("html"), "the CSV export is served as {ct}");

    // Search boxes and other query text shown back.
    let q = encoded(PAYLOAD);
    for page in [
        format!("/admin/users?q={q}"),
        format!("/admin/groups?q={q}"),
        format!("/admin/invitations?user={q}"),
    ] {
        assert_escaped(&admin_html(&app, &page).await, &format!("GET {page}"));
        probed += 1;
    }
    // A configuration preview resolves the user's values.
    let (status, loc, body) = admin_post(
        &app,
        "/admin/configurations/new",
        &[
            ("kind", "custom"),
            ("name", "Preview probe"),
            ("pair_key", "who"),
            ("pair_value", "${userDisplayName} ${badge}"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let config = loc.unwrap();
    assert_escaped(
        &admin_html(&app, &format!("{config}/preview?user=xss.probe")).await,
        "configuration preview for the probe user",
    );
    let resp = app.get(&format!("{config}/preview?user={q}")).await;
    assert!(resp.status().as_u16() < 500);
    assert_escaped(
        &resp.text().await.unwrap(),
        "configuration preview for an unknown user named like the payload",
    );

    // The sign-in form keeps the username; the failed attempt is in the audit log.
    let visitor = app.new_client();
    let token = token_of(&app, &visitor).await;
    let resp = visitor
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("username", PAYLOAD),
            ("password", "wrong-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert_escaped(
        &resp.text().await.unwrap(),
        "sign-in form after a failed attempt",
    );
    let resp = visitor
        .get(app.url(&format!("/login?return_to={q}&signed_out={q}")))
        .send()
        .await
        .unwrap();
    let html = resp.text().await.unwrap();
    assert!(
        !html.contains("<script>alert(1)</script>"),
        "login with a hostile return_to"
    );
    probed += 1;
    assert_escaped(
        &admin_html(&app, "/admin/audit").await,
        "audit log (user created, failed sign-in)",
    );
    println!("XSS probe (users/search/login): {probed} fields and query values");
}

/// The Entra ID User Source name and custom attributes, and configuration names and fields.
#[tokio::test]
async fn user_source_and_configuration_fields_are_escaped() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    const PATH: &str = "/admin/azure/entra-user-source";
    let mut probed = 0;

    // Refused: a custom attribute named like the payload, its property too; the name is kept as typed.
    let mut form = crate::user_source::valid_form("http://127.0.0.1:9", "secret-value~1");
    for (k, v) in &mut form {
        if k == "name"
            || (k == "attr_name" && v == "badge")
            || (k == "attr_property" && v.contains("extensionAttribute7"))
        {
            *v = PAYLOAD.to_owned();
        }
    }
    let resp = crate::user_source::post_settings(&app, &form).await;
    assert_eq!(resp.status().as_u16(), 422);
    assert_escaped(&resp.text().await.unwrap(), "refused user source form");
    probed += 3;
    // "Test connection" re-renders the form too.
    let mut test = form.clone();
    for (k, v) in &mut test {
        if k == "action" {
            *v = "test".into();
        }
    }
    let resp = crate::user_source::post_settings(&app, &test).await;
    assert!(resp.status().as_u16() < 500);
    assert_escaped(
        &resp.text().await.unwrap(),
        "user source form after Test connection",
    );

    // Stored: the source's name.
    let mut form = crate::user_source::valid_form("http://127.0.0.1:9", "secret-value~1");
    for (k, v) in &mut form {
        if k == "name" {
            *v = PAYLOAD.to_owned();
        }
    }
    let resp = crate::user_source::post_settings(&app, &form).await;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    if status == 303 {
        for page in [
            PATH,
            "/admin",
            "/admin/sync",
            "/admin/users",
            "/admin/audit",
        ] {
            let html = admin_html(&app, page).await;
            assert!(
                !html.contains("<script>alert(1)</script>"),
                "GET {page} shows the source name raw"
            );
            assert!(!html.contains("<img src=x onerror"), "GET {page}");
        }
        assert_escaped(&admin_html(&app, PATH).await, "stored user source name");
    } else {
        assert_eq!(status, 422, "{body}");
        assert_escaped(&body, "user source name refused");
        let resp = crate::user_source::post_settings(
            &app,
            &crate::user_source::valid_form("http://127.0.0.1:9", "secret-value~1"),
        )
        .await;
        assert_redirect_to(&resp, PATH);
    }

    // Configurations: stored name and variable fields of an Exchange account.
    let (status, loc, body) = admin_post(
        &app,
        "/admin/configurations/new",
        &[
            ("kind", "exchange"),
            ("name", PAYLOAD),
            ("account_name", PAYLOAD),
            ("host", "outlook.office365.com"),
            ("ssl", "on"),
            ("email_address", PAYLOAD),
            ("user_name", PAYLOAD),
            ("past_days", "14"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(
        status, 303,
        "an Exchange account with odd text is accepted: {body}"
    );
    let config = loc.unwrap();
    probed += 4;
    local_user(&app, "dana@example.com", "dana@example.com").await;
    for page in [
        "/admin/configurations".to_owned(),
        config.clone(),
        format!("{config}/preview"),
        format!("{config}/preview?user=dana@example.com"),
        "/admin/audit".to_owned(),
    ] {
        assert_escaped(&admin_html(&app, &page).await, &format!("GET {page}"));
    }
    // Stored Wi-Fi fields (the enterprise user names take variables and text).
    let (status, loc, body) = admin_post(
        &app,
        "/admin/configurations/new",
        &[
            ("kind", "wifi"),
            ("name", "Probe Wi-Fi"),
            ("ssid", "Probe"),
            ("security", "enterprise"),
            ("encryption", "WPA2"),
            ("eap_method", "peap"),
            ("eap_username", PAYLOAD),
            ("outer_identity", PAYLOAD),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_escaped(
        &admin_html(&app, &loc.unwrap()).await,
        "stored Wi-Fi user names",
    );
    probed += 2;
    // Custom pairs.
    let (status, loc, body) = admin_post(
        &app,
        "/admin/configurations/new",
        &[
            ("kind", "custom"),
            ("name", "Probe custom"),
            ("pair_key", "probe"),
            ("pair_value", PAYLOAD),
            ("pair_key", PAYLOAD),
            ("pair_value", "x"),
            ("action", "save"),
        ],
    )
    .await;
    probed += 2;
    if status == 303 {
        assert_escaped(
            &admin_html(&app, &loc.unwrap()).await,
            "stored custom pairs",
        );
    } else {
        assert_eq!(status, 422, "{body}");
        assert_escaped(&body, "refused custom pairs");
    }
    // Refused: the SSID is too long, the host is not a host; everything comes back as typed.
    for form in [
        vec![
            ("kind", "wifi"),
            ("name", PAYLOAD),
            ("ssid", PAYLOAD),
            ("security", "personal"),
            ("encryption", "WPA2"),
            ("password", PAYLOAD),
            ("eap_method", "peap"),
            ("eap_username", PAYLOAD),
            ("outer_identity", PAYLOAD),
            ("action", "save"),
        ],
        vec![
            ("kind", "exchange"),
            ("name", PAYLOAD),
            ("account_name", PAYLOAD),
            ("host", PAYLOAD),
            ("email_address", "${nope}"),
            ("user_name", PAYLOAD),
            ("past_days", PAYLOAD),
            ("action", "save"),
        ],
    ] {
        let (status, _, body) = admin_post(&app, "/admin/configurations/new", &form).await;
        assert_eq!(status, 422, "{body}");
        assert_escaped(&body, &format!("refused {} configuration", form[0].1));
        let (status, _, body) = admin_post(&app, &config, &form).await;
        assert_eq!(status, 422, "{body}");
        assert_escaped(
            &body,
            &format!("refused edit of a configuration as {}", form[0].1),
        );
    }
    probed += 4;
    println!("XSS probe (user source/configurations): {probed} fields");
}

/// The invitation template: subject and bodies in the form, and the preview where the HTML body goes into
/// an `<iframe srcdoc="…">` attribute.
#[tokio::test]
async fn invitation_template_fields_and_the_srcdoc_preview_are_escaped() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    // The previewed user's own name is the payload too (a synced or typed display name).
    let (status, _, body) = admin_post(
        &app,
        "/admin/users/new",
        &[
            ("upn", "erin"),
            ("mail", "erin@example.com"),
            ("display_name", PAYLOAD),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");

    // Refused first (no link in the bodies): the form comes back as typed.
    let (status, _, body) = admin_post(
        &app,
        "/admin/invitations",
        &[
            ("subject", PAYLOAD),
            ("text_body", PAYLOAD),
            ("html_body", PAYLOAD),
            ("lifetime_days", PAYLOAD),
            ("pin_length", "8"),
            ("pin_lifetime_minutes", "60"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_escaped(&body, "refused invitation template");

    let subject = format!("Welcome ${{userDisplayName}} {PAYLOAD}");
    let text = format!("Hello ${{userDisplayName}}, {PAYLOAD} register at ${{registrationLink}}");
    let html_body = format!(
        "<p>Hello ${{userDisplayName}}</p>{ADMIN_HTML}<a href=\"${{registrationLink}}\">Register</a>"
    );
    let (status, _, body) = admin_post(
        &app,
        "/admin/invitations",
        &[
            ("subject", subject.as_str()),
            ("text_body", text.as_str()),
            ("html_body", html_body.as_str()),
            ("lifetime_days", "14"),
            ("pin_length", "8"),
            ("pin_lifetime_minutes", "60"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 303, "the template is saved: {body}");
    assert_escaped(
        &admin_html(&app, "/admin/invitations").await,
        "saved template form",
    );

    let html = admin_html(&app, "/admin/invitations?user=erin").await;
    assert_escaped(&html, "invitation preview");
    // The srcdoc attribute holds the whole HTML body: one level of escaping for the admin's own HTML, two for
    // the user's values (escaped as HTML once by the renderer, then as an attribute).
    let marker = "srcdoc=\"";
    let start = html.find(marker).expect("the preview has a srcdoc iframe") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    let srcdoc = &html[start..end];
    let document = decode_once(srcdoc);
    assert!(
        document.contains(ADMIN_HTML),
        "the admin's HTML body is inside the srcdoc attribute, attribute-escaped (the attribute ends early if a \
         quote is not escaped): {srcdoc}"
    );
    assert!(
        !document.contains("<script>alert(1)") && !document.contains("<img src=x onerror=alert(1)"),
        "the user's display name is HTML-escaped inside the mail's HTML: {document}"
    );
    assert!(
        decode_once(&document).contains(PAYLOAD),
        "the user's display name is in the mail's HTML: {document}"
    );
    let tag_start = html[..start].rfind("<iframe").unwrap();
    assert!(
        html[tag_start..start].contains("sandbox=\"\""),
        "the preview iframe is sandboxed: {}",
        &html[tag_start..start]
    );
    // The subject and the text part are shown as text.
    let once = decode_once(&html);
    assert!(
        once.contains(&format!(
            "data-test=\"preview-subject\">Welcome {PAYLOAD} {PAYLOAD}"
        )),
        "the subject with the user's name: {html}"
    );
    assert!(
        once.contains(&format!("Hello {PAYLOAD}, {PAYLOAD} register at")),
        "the text part: {html}"
    );
    println!("XSS probe (invitation template): 5 fields + the previewed user's name");
}

/// Admin > Mail: every SMTP field refused and re-rendered, and the ones stored.
#[tokio::test]
async fn smtp_settings_are_escaped() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let (status, _, body) = admin_post(
        &app,
        "/admin/mail",
        &[
            ("host", PAYLOAD),
            ("port", PAYLOAD),
            ("security", PAYLOAD),
            ("username", PAYLOAD),
            ("password", "x"),
            ("from_name", PAYLOAD),
            ("from_address", PAYLOAD),
            ("test_to", PAYLOAD),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_escaped(&body, "refused SMTP settings");
    let (status, _, body) = admin_post(
        &app,
        "/admin/mail",
        &[
            ("host", "127.0.0.1"),
            ("port", "2525"),
            ("security", "none"),
            ("username", PAYLOAD),
            ("password", ""),
            ("from_name", PAYLOAD),
            ("from_address", "roster@example.test"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_escaped(
        &admin_html(&app, "/admin/mail").await,
        "stored SMTP settings",
    );
    // "Send test email" to a bad address re-renders the form with it.
    let (status, _, body) = admin_post(
        &app,
        "/admin/mail",
        &[
            ("host", "127.0.0.1"),
            ("port", "2525"),
            ("security", "none"),
            ("username", PAYLOAD),
            ("from_name", PAYLOAD),
            ("from_address", "roster@example.test"),
            ("test_to", PAYLOAD),
            ("action", "test"),
        ],
    )
    .await;
    assert!(status < 500, "{status}");
    assert_escaped(&body, "SMTP test to a bad address");
    assert_escaped(
        &admin_html(&app, "/admin/audit").await,
        "audit of the SMTP save",
    );
    println!("XSS probe (SMTP): 7 fields");
}

/// A self-signed certificate whose subject CN is `cn`, in PEM.
fn certificate_named(cn: &str) -> String {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    String::from_utf8(b.build().to_pem().unwrap()).unwrap()
}

/// Admin > Identity: the Entra ID form refused, the generic SAML IdP by hand (entity ID, match attribute, a
/// certificate whose subject is the payload), metadata XML and URL refused.
#[tokio::test]
async fn identity_provider_forms_are_escaped() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let mut probed = 0;
    let (status, _, body) = admin_post(
        &app,
        "/admin/identity/entra",
        &[
            ("cloud", "custom"),
            ("tenant_id", PAYLOAD),
            ("client_id", PAYLOAD),
            ("client_secret", "a-secret"),
            ("issuer_url", PAYLOAD),
        ],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_escaped(&body, "refused Entra ID sign-in form");
    probed += 3;

    // Metadata XML that is not metadata, with the payload.
    let xml = format!("<EntityDescriptor entityID='{PAYLOAD}'>{PAYLOAD}</EntityDescriptor>");
    let (status, _, body) = admin_post(
        &app,
        "/admin/identity/generic",
        &[("metadata_xml", xml.as_str())],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_escaped(&body, "refused metadata XML");
    // A metadata URL that cannot be read (its text is kept and may be quoted in the error).
    let url = format!("http://127.0.0.1:9/{PAYLOAD}");
    let (status, _, body) = admin_post(
        &app,
        "/admin/identity/onprem",
        &[("metadata_url", url.as_str())],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_escaped(&body, "refused metadata URL");
    probed += 2;

    // By hand: refused once (bad single sign-on URL), then stored.
    let pem = certificate_named(PAYLOAD);
    let (status, _, body) = admin_post(
        &app,
        "/admin/identity/generic",
        &[
            ("entity_id", PAYLOAD),
            ("sso_url", PAYLOAD),
            ("certificates", PAYLOAD),
            ("match_attribute", PAYLOAD),
            ("clock_skew_secs", PAYLOAD),
        ],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_escaped(&body, "refused SAML IdP by hand");
    probed += 5;
    let (status, _, body) = admin_post(
        &app,
        "/admin/identity/generic",
        &[
            ("entity_id", PAYLOAD),
            ("sso_url", "https://idp.example/sso"),
            ("certificates", pem.as_str()),
            ("match_attribute", PAYLOAD),
            ("clock_skew_secs", "60"),
            ("use_for_admin", "on"),
        ],
    )
    .await;
    assert_eq!(status, 303, "the IdP is saved by hand: {body}");
    let page = admin_html(&app, "/admin/identity/generic").await;
    assert_escaped(&page, "stored SAML IdP");
    let row = page
        .find("data-test=\"certificate-row\"")
        .map(|i| &page[i..page[i..].find("</tr>").map_or(page.len(), |e| i + e)])
        .expect("a certificate row");
    println!("certificate row: {row}");
    assert!(
        decode_once(row).contains("alert(1)"),
        "the certificate subject is shown: {row}"
    );
    for p in ["/admin/identity", "/admin/audit", "/admin"] {
        let html = admin_html(&app, p).await;
        assert!(
            !html.contains("<script>alert(1)</script>") && !html.contains("<img src=x onerror"),
            "GET {p}"
        );
    }
    assert_escaped(
        &admin_html(&app, "/admin/audit").await,
        "audit of the IdP save",
    );
    // The SP metadata and the sign-in page are public; enabling the IdP puts it on the sign-in page.
    let (status, _, _) = admin_post(&app, "/admin/identity/generic/enable", &[]).await;
    assert_eq!(status, 303);
    let login = app
        .new_client()
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!login.contains("<script>alert(1)</script>"), "{login}");
    println!("XSS probe (identity): {probed} fields + certificate subject");
}

/// Notifications (their text quotes upstream errors), groups and users as a sync stores them.
#[tokio::test]
async fn notifications_and_synced_directory_data_are_escaped() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    raise_notification(
        &app,
        "probe",
        PAYLOAD,
        &format!("The server said: {PAYLOAD}"),
    )
    .await;
    for p in [
        "/admin/notifications",
        "/admin/notifications?status=all",
        "/admin",
    ] {
        let html = admin_html(&app, p).await;
        assert!(
            !html.contains("<script>alert(1)</script>") && !html.contains("<img src=x onerror"),
            "GET {p}"
        );
    }
    assert_escaped(
        &admin_html(&app, "/admin/notifications").await,
        "notification title, body and action",
    );

    let group = insert_group(&app, PAYLOAD, Some(PAYLOAD)).await;
    assert_escaped(
        &admin_html(&app, "/admin/groups").await,
        "synced group name",
    );
    assert_escaped(
        &admin_html(&app, &format!("/admin/groups/{group}")).await,
        "synced group page",
    );

    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO directory_users (id, source, source_id, external_id, upn, upn_lower, mail, given_name, surname, \
         display_name, account_enabled, custom_attributes, content_hash, first_seen_at, last_changed_at, last_seen_at) \
         VALUES ($1, 'entra', 'entra', $2, $3, $4, $5, $6, $6, $6, 1, $7, 'x', 0, 0, 0)",
    )
    .bind(&id)
    .bind(format!("ext-{id}"))
    .bind(format!("x{PAYLOAD}@contoso.example"))
    .bind(format!("x{PAYLOAD}@contoso.example").to_lowercase())
    .bind(format!("x{PAYLOAD}@contoso.example"))
    .bind(PAYLOAD)
    .bind(serde_json::json!({ "badge": PAYLOAD }).to_string())
    .execute(&app.db.pool)
    .await
    .unwrap();
    for p in [
        "/admin/users".to_owned(),
        format!("/admin/users/{id}"),
        format!("/admin/invitations?user={id}"),
    ] {
        assert_escaped(&admin_html(&app, &p).await, &format!("synced user on {p}"));
    }
    println!(
        "XSS probe (notifications/synced data): 3 notification fields, 2 group fields, 5 user fields"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Part 3: redirect targets
// ---------------------------------------------------------------------------------------------------------

const EVIL_TARGETS: &[&str] = &[
    "https://evil.example",
    "https://evil.example/admin",
    "http:evil.example",
    "https:evil.example",
    "//evil.example",
    "//evil.example/admin",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example/admin",
    "\\/evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "%2f%2fevil.example%2fadmin",
    "/%5Cevil.example",
    "/admin/../..//evil.example",
    "/admin/..%2F..%2F%2Fevil.example",
    "/admin\r\nLocation: https://evil.example",
    "/admin/\r\nSet-Cookie: roster_session=evil",
    "/admin%0d%0aLocation:%20https://evil.example",
    "/admin/\tevil",
    "/ /evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/admin/é/\u{2028}",
    "/admin@evil.example",
    "/admin/@evil.example",
    "https://127.0.0.1.evil.example/admin",
];

/// `return_to` on /login: shown in the form only as a local path, followed after sign-in (and by a signed-in
/// admin opening /login) only to a local /admin path.
#[tokio::test]
async fn return_to_never_leads_off_site() {
    let app = spawn_app().await;
    app.create_admin(crate::helpers::ADMIN_USER, crate::helpers::ADMIN_PASSWORD)
        .await;
    let mut checked = 0;
    for evil in EVIL_TARGETS {
        let what = format!("return_to={evil:?}");
        let client = app.new_client();
        // Anonymous GET: the sign-in page carries only a local target.
        let resp = client
            .get(app.url(&format!("/login?return_to={}", encoded(evil))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{what}");
        let page = resp.text().await.unwrap();
        let marker = "name=\"return_to\" value=\"";
        let start = page.find(marker).expect("a return_to field") + marker.len();
        let end = page[start..].find('"').unwrap() + start;
        let kept = &page[start..end];
        assert!(
            kept.starts_with("/admin"),
            "{what}: the form keeps {kept:?}"
        );
        // Sign in with it.
        let token = csrf_token_in(&page);
        let resp = client
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("username", crate::helpers::ADMIN_USER),
                ("password", crate::helpers::ADMIN_PASSWORD),
                ("return_to", evil),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "{what}: sign-in");
        let loc = location(&resp).unwrap();
        assert_on_site(&app, &loc, &format!("{what} after sign-in"));
        assert!(loc.starts_with("/admin"), "{what}: after sign-in to {loc}");
        // Signed in: /login?return_to=… sends the admin on directly.
        let resp = client
            .get(app.url(&format!("/login?return_to={}", encoded(evil))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "{what}: signed-in /login");
        let loc = location(&resp).unwrap();
        assert_on_site(&app, &loc, &format!("{what} on /login when signed in"));
        assert!(loc.starts_with("/admin"), "{what}: {loc}");
        // The raw query (not form-encoded by us): e.g. a literal %0d%0a or a backslash.
        let resp = client
            .get(app.url(&format!("/login?return_to={}", evil.replace(' ', "%20"))))
            .send()
            .await;
        if let Ok(resp) = resp {
            assert!(
                resp.status().as_u16() < 500,
                "{what} raw: {}",
                resp.status()
            );
            if let Some(loc) = location(&resp) {
                assert_on_site(&app, &loc, &format!("{what} raw, signed in"));
            }
        }
        checked += 1;
    }
    // The guard's own redirect keeps the asked path as a local return_to, even for odd paths.
    let anon = app.new_client();
    for path in [
        "/admin//evil.example",
        "/admin/%2F%2Fevil.example",
        "/admin/..%2F%2Fevil.example",
    ] {
        let resp = anon.get(app.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(status == 303 || status == 404, "GET {path}: {status}");
        if let Some(loc) = location(&resp) {
            assert_on_site(&app, &loc, &format!("guard redirect for {path}"));
            assert!(loc.starts_with("/login?return_to="), "{loc}");
        }
    }
    println!("redirect targets: {checked} return_to values × 4 ways");
}

/// The IdP answers: the SAML ACS ignores RelayState (a forged response is refused without a redirect, a real
/// one always goes to /sso/complete), and /sso/complete and /oidc/callback never redirect off-site.
#[tokio::test]
async fn sso_answers_never_redirect_off_site() {
    let (app, idp) = app_with_saml(true).await;
    app.create_admin("alice@example.com", "another-long-password")
        .await;
    local_user(&app, "alice@example.com", "alice@example.com").await;
    let browser = app.new_client();
    for relay in [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "/admin",
    ] {
        for saml in ["PHNhbWxwOlJlc3BvbnNlLz4=", "not base64 at all", ""] {
            let resp = browser
                .post(app.url("/saml/acs"))
                .form(&[("SAMLResponse", saml), ("RelayState", relay)])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "forged SAMLResponse {saml:?}: {status}"
            );
            assert_eq!(
                location(&resp),
                None,
                "a refused answer does not redirect (RelayState {relay})"
            );
        }
    }
    // A genuine response whose RelayState was swapped on the way.
    let token = token_of(&app, &browser).await;
    let resp = browser
        .post(app.url("/sso/start"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    let (saml_response, _) = idp.response_for(&location(&resp).unwrap(), "alice").await;
    let acs = browser
        .post(app.url("/saml/acs"))
        .form(&[
            ("SAMLResponse", saml_response.as_str()),
            ("RelayState", "https://evil.example/steal"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(acs.status().as_u16(), 303);
    let loc = location(&acs).unwrap();
    assert_on_site(&app, &loc, "ACS with a swapped RelayState");
    assert!(loc.starts_with("/sso/complete?id="), "{loc}");
    let done = browser.get(app.url(&loc)).send().await.unwrap();
    let loc = location(&done).unwrap();
    assert_on_site(&app, &loc, "/sso/complete");
    assert_eq!(loc, "/admin", "signed in, sent to the dashboard");

    let other = app.new_client();
    for evil in EVIL_TARGETS.iter().chain(["", "x"].iter()) {
        let q = encoded(evil);
        for path in [
            format!("/sso/complete?id={q}"),
            format!("/sso/complete?id=x&return_to={q}&next={q}&RelayState={q}"),
            format!("/oidc/callback?state={q}&code=x"),
            format!("/oidc/callback?state=x&code=x&redirect_uri={q}&iss={q}&return_to={q}"),
            format!("/oidc/callback?error=access_denied&error_description={q}&state={q}"),
        ] {
            let resp = other.get(app.url(&path)).send().await.unwrap();
            let status = resp.status().as_u16();
            assert!(status < 500, "GET {path}: {status}");
            if let Some(loc) = location(&resp) {
                assert_on_site(&app, &loc, &format!("GET {path}"));
            }
            let body = resp.text().await.unwrap();
            assert!(
                !body.contains("<script>alert(1)</script>"),
                "GET {path} shows the query raw"
            );
        }
    }
    println!(
        "redirect targets (SSO): ACS with 4 RelayState values, /sso/complete and /oidc/callback with {} values",
        EVIL_TARGETS.len() + 2
    );
}

/// An OIDC error answer with a valid state: its error_description (chosen by whoever crafts the link) is shown
/// on the refusal page, escaped.
#[tokio::test]
async fn an_oidc_error_description_is_escaped() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let accounts = serde_json::json!({
        "alice": { "oid": "5f1e3a2b-0000-4000-8000-00000000a11c", "tid": "11111111-2222-3333-4444-555555555555",
                   "preferred_username": "alice@contoso.test", "name": "Alice", "email": "alice@contoso.test" }
    })
    .to_string();
    let secret = "a-long-client-secret-for-the-oidc-peer-0123456789";
    let peer = crate::oidc_peer::start(
        "roster-test-client",
        secret,
        &app.url("/oidc/callback"),
        &accounts,
    )
    .await;
    let (status, _, body) = admin_post(
        &app,
        "/admin/identity/entra",
        &[
            ("cloud", "custom"),
            ("issuer_url", peer.issuer.as_str()),
            ("client_id", "roster-test-client"),
            ("client_secret", secret),
            ("use_for_admin", "on"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (status, _, _) = admin_post(&app, "/admin/identity/entra/enable", &[]).await;
    assert_eq!(status, 303);
    let browser = app.new_client();
    let token = token_of(&app, &browser).await;
    let resp = browser
        .post(app.url("/sso/start"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    let authorize = url::Url::parse(&location(&resp).unwrap()).unwrap();
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state");
    let resp = browser
        .get(app.url(&format!(
            "/oidc/callback?error=access_denied&error_description={}&state={}&iss={}",
            encoded(PAYLOAD),
            encoded(&state),
            encoded(&peer.issuer)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp).unwrap();
    assert_on_site(&app, &loc, "OIDC error answer");
    let done = browser.get(app.url(&loc)).send().await.unwrap();
    assert!(location(&done).is_none_or(|l| l.starts_with('/') && !l.starts_with("//")));
    let page = done.text().await.unwrap();
    assert!(page.contains("data-test=\"sso-refused\""), "{page}");
    assert_escaped(&page, "OIDC error_description on the refusal page");
    assert_escaped(
        &admin_html(&app, "/admin/audit").await,
        "audit of the refused OIDC answer",
    );
}

// ---------------------------------------------------------------------------------------------------------
// Part 4: a new session id at an SSO sign-in (the password sign-in is covered in tests/api/auth.rs)
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_sso_sign_in_renews_the_session_id() {
    let (app, idp) = app_with_saml(true).await;
    local_user(&app, "alice@example.com", "alice@example.com").await;
    app.create_admin("alice@example.com", "another-long-password")
        .await;
    let (browser, jar) = browser_with_jar();
    let acs = saml_round(&app, &browser, &idp, "/sso/start", "alice").await;
    let before = session_cookie(&app, &jar).expect("a session before the sign-in completes");
    let done = browser
        .get(app.url(&location(&acs).unwrap()))
        .send()
        .await
        .unwrap();
    assert_redirect_to(&done, "/admin");
    let after = session_cookie(&app, &jar).expect("a session after the sign-in");
    assert_ne!(before, after, "the session id changes at an SSO sign-in");
    assert_eq!(
        browser
            .get(app.url("/admin"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // The pre-sign-in id grants nothing (a planted session cookie does not become an admin session).
    let planted = app
        .new_client()
        .get(app.url("/admin"))
        .header("cookie", format!("roster_session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        planted.status().as_u16(),
        303,
        "the old session id is not signed in"
    );
}

/// The checks above can fail: each catches the mistake it looks for.
#[test]
fn the_checks_catch_what_they_look_for() {
    let fails = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
    let askama = "<input value=\"&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;&#60;img src=x onerror=alert(1)&#62;&#39;\">";
    assert!(!fails(&|| assert_escaped(askama, "escaped")));
    assert!(fails(&|| assert_escaped(
        &format!("<input value=\"{PAYLOAD}\">"),
        "raw"
    )));
    assert!(fails(&|| assert_escaped(
        "<p>\"&gt;&lt;script&gt;alert(1)&lt;/script&gt;</p>",
        "quote not escaped"
    )));
    assert!(fails(&|| assert_escaped(
        "<p>nothing here</p>",
        "payload missing"
    )));
    assert_eq!(
        decode_once("&amp;lt;&#60;&#x3e;&quot;&#39;&bogus;&"),
        "&lt;<>\"'&bogus;&"
    );
    let base = "http://127.0.0.1:8080";
    assert!(!fails(&|| assert_on_site_of(
        base,
        "/admin/audit?x=1",
        "local"
    )));
    for evil in [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "/admin\r\nX: y",
        "https:evil.example",
    ] {
        assert!(fails(&|| assert_on_site_of(base, evil, "evil")), "{evil}");
    }
    let ids = Ids::fake();
    assert_eq!(
        concrete("/admin/identity/{slug}/certificates/{id}/delete", &ids).len(),
        3,
        "one path per IdP slug"
    );
    assert!(fails(&|| {
        concrete("/admin/widgets/{id}", &ids);
    }));
}

/// A NUL character in text that reaches the database (PostgreSQL refuses it in `text`) is answered like
/// any other bad input, never with a server error — for anonymous visitors and admins alike.
#[tokio::test]
async fn nul_characters_in_input_do_not_cause_server_errors() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let user = local_user(&app, "nul@example.com", "nul@example.com").await;
    let mut failures = Vec::new();
    let anon = app.new_client();
    let token = token_of(&app, &anon).await;
    for (label, resp) in [
        (
            "anonymous POST /login username=NUL",
            anon.post(app.url("/login"))
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("username", "a\0b"),
                    ("password", "x"),
                ])
                .send()
                .await
                .unwrap(),
        ),
        (
            "anonymous GET /sso/complete?id=%00",
            anon.get(app.url("/sso/complete?id=%00"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "anonymous GET /oidc/callback?state=%00",
            anon.get(app.url("/oidc/callback?state=%00&code=x"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "anonymous GET /register/%00",
            anon.get(app.url("/register/a%00b")).send().await.unwrap(),
        ),
        (
            "anonymous GET /setup?token=%00",
            anon.get(app.url("/setup?token=a%00b"))
                .send()
                .await
                .unwrap(),
        ),
    ] {
        let status = resp.status().as_u16();
        if status >= 500 {
            failures.push(format!("{label}: {status}"));
        }
    }
    for path in [
        "/admin/users?q=%00".to_owned(),
        "/admin/users?q=a%00b".to_owned(),
        "/admin/groups?q=%00".to_owned(),
        "/admin/invitations?user=%00".to_owned(),
        "/admin/users/a%00b".to_owned(),
        "/admin/configurations/a%00b".to_owned(),
        format!("/admin/users/{user}?x=%00"),
    ] {
        let status = app.get(&path).await.status().as_u16();
        if status >= 500 {
            failures.push(format!("admin GET {path}: {status}"));
        }
    }
    let (status, _, _) = admin_post(
        &app,
        "/admin/users/new",
        &[
            ("upn", "nul.user"),
            ("display_name", "a\0b"),
            ("given_name", "a\0b"),
        ],
    )
    .await;
    if status >= 500 {
        failures.push(format!(
            "admin POST /admin/users/new display_name=NUL: {status}"
        ));
    }
    assert!(
        failures.is_empty(),
        "server errors on a NUL character ({:?}):\n{}",
        app.backend(),
        failures.join("\n")
    );
}
