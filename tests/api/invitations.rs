//! Invitations and registration end to end: the template, auto-invite after a sync, bulk invite, the mail
//! through a real SMTP server (aiosmtpd), the link followed through a real SAML sign-in (pysaml2) to the
//! enrollment page, and every refused token.

use std::time::Duration;

use reqwest::header::LOCATION;
use roster::clock::DAY;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, assert_redirect_to};
use crate::identity::{app_with_saml, local_user};
use crate::smtp_peer::{SmtpPeer, configure_smtp};

/// Delivers what the outbox holds (the worker's own passes, run by hand until nothing is claimed).
async fn deliver(app: &TestApp) {
    loop {
        let pass = roster::mail::worker::run_once(&app.state, &CancellationToken::new())
            .await
            .unwrap();
        if pass.claimed == 0 {
            break;
        }
    }
}

fn link_in(text: &str) -> String {
    let start = text
        .find("/register/")
        .expect("the mail has a registration link");
    let begin = text[..start].rfind("http").unwrap();
    let end = text[start..]
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .map_or(text.len(), |i| start + i);
    text[begin..end].to_owned()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_invited_user_registers_through_the_saml_idp_and_gets_a_pin() {
    let smtp = SmtpPeer::start();
    let (app, idp) = app_with_saml(true).await;
    configure_smtp(&app, smtp.port()).await;
    let alice = local_user(&app, "alice@example.com", "alice@example.com").await;

    let resp = app
        .post_form(&format!("/admin/users/{alice}/invite"), &[])
        .await;
    assert_redirect_to(&resp, &format!("/admin/users/{alice}"));
    deliver(&app).await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(
        m.to.iter().any(|t| t.contains("alice@example.com")),
        "{:?}",
        m.to
    );
    assert!(m.html.is_some() && m.text.is_some(), "a text + HTML pair");
    let link = link_in(m.text.as_deref().unwrap());
    assert!(link.starts_with(&app.url("/register/")), "{link}");
    assert_eq!(link_in(m.html.as_deref().unwrap()), link);
    // Only the token's hash is stored.
    let token = link.rsplit('/').next().unwrap().to_owned();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invitations WHERE token_hash = $1")
        .bind(&token)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let user_page = app.get_html(&format!("/admin/users/{alice}")).await;
    assert!(
        user_page.contains("data-test=\"invitation-history\""),
        "history on the user"
    );

    // Someone else (bob) signs in with alice's link: refused, the link keeps working.
    let person = app.new_client();
    let landing = person.get(&link).send().await.unwrap();
    assert_eq!(landing.status().as_u16(), 200);
    let page = landing.text().await.unwrap();
    assert!(page.contains("Test alice@example.com"), "who it is for");
    assert!(page.contains("a•••e@example.com"), "masked email: {page}");
    let csrf = crate::helpers::csrf_token_in(&page);
    let go = person
        .post(&link)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let (resp_b64, _) = idp.response_for(&location(&go), "bob").await;
    let acs = person
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", resp_b64.as_str())])
        .send()
        .await
        .unwrap();
    let done = person.get(app.url(&location(&acs))).send().await.unwrap();
    assert_eq!(done.status().as_u16(), 403);
    let page = done.text().await.unwrap();
    assert!(page.contains("data-kind=\"wrong_person\""), "{page}");
    assert!(
        app.audit_actions()
            .await
            .contains(&"invitation.registration_refused".to_owned())
    );

    // alice herself: registered, PIN and QR code shown.
    let go = person
        .post(&link)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let (resp_b64, _) = idp.response_for(&location(&go), "alice").await;
    let acs = person
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", resp_b64.as_str())])
        .send()
        .await
        .unwrap();
    let done = person.get(app.url(&location(&acs))).send().await.unwrap();
    assert_eq!(done.status().as_u16(), 200);
    let page = done.text().await.unwrap();
    assert!(page.contains("data-test=\"enrolled\""), "{page}");
    assert!(page.contains("<svg"), "QR code");
    assert!(page.contains(&format!("data-test=\"enroll-server\">{}", app.address)));
    let pin_start =
        page.find("data-test=\"enroll-pin\">").unwrap() + "data-test=\"enroll-pin\">".len();
    let pin: String = page[pin_start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(pin.len(), 8, "default PIN length");
    let state: String =
        sqlx::query_scalar("SELECT invitation_state FROM directory_users WHERE id = $1")
            .bind(&alice)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(state, "registered");

    // The link works once.
    let used = app.new_client().get(&link).send().await.unwrap();
    assert_eq!(used.status().as_u16(), 410);
    assert!(used.text().await.unwrap().contains("data-kind=\"used\""));
}

#[tokio::test]
async fn revoked_replaced_expired_and_malformed_links_are_refused() {
    let smtp = SmtpPeer::start();
    let (app, _idp) = app_with_saml(true).await;
    configure_smtp(&app, smtp.port()).await;
    let carol = local_user(&app, "carol@example.com", "carol@example.com").await;
    app.post_form(&format!("/admin/users/{carol}/invite"), &[])
        .await;
    app.post_form(&format!("/admin/users/{carol}/invite"), &[])
        .await;
    deliver(&app).await;
    let mails = smtp.wait_for(2, Duration::from_secs(10)).await;
    let first = link_in(mails[0].text.as_deref().unwrap());
    let second = link_in(mails[1].text.as_deref().unwrap());
    assert_ne!(first, second, "a resend issues a new link");
    let visitor = app.new_client();
    let status = |r: reqwest::Response| r.status().as_u16();
    let replaced = visitor.get(&first).send().await.unwrap();
    assert_eq!(status(replaced), 410, "the older link died with the resend");
    assert_eq!(status(visitor.get(&second).send().await.unwrap()), 200);
    // Revoked.
    let resp = app
        .post_form(&format!("/admin/users/{carol}/revoke-invitation"), &[])
        .await;
    assert_redirect_to(&resp, &format!("/admin/users/{carol}"));
    let revoked = visitor.get(&second).send().await.unwrap();
    assert_eq!(revoked.status().as_u16(), 410);
    assert!(
        revoked
            .text()
            .await
            .unwrap()
            .contains("data-kind=\"revoked\"")
    );
    // Expired after 7 days (the default lifetime).
    app.post_form(&format!("/admin/users/{carol}/invite"), &[])
        .await;
    deliver(&app).await;
    let mails = smtp.wait_for(3, Duration::from_secs(10)).await;
    let third = link_in(mails[2].text.as_deref().unwrap());
    assert_eq!(status(visitor.get(&third).send().await.unwrap()), 200);
    app.clock.advance(7 * DAY + 1000);
    let expired = visitor.get(&third).send().await.unwrap();
    assert_eq!(expired.status().as_u16(), 410);
    assert!(
        expired
            .text()
            .await
            .unwrap()
            .contains("data-kind=\"expired\"")
    );
    // Malformed and unknown.
    let bad = visitor
        .get(app.url("/register/not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 404);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("data-kind=\"malformed\"")
    );
    let unknown = visitor
        .get(app.url("/register/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    // Rate limit: many bad links from one address.
    for _ in 0..30 {
        visitor.get(app.url("/register/x")).send().await.unwrap();
    }
    let limited = visitor.get(&third).send().await.unwrap();
    assert_eq!(limited.status().as_u16(), 429);
}

#[tokio::test]
async fn local_users_without_an_idp_register_with_a_password() {
    let smtp = SmtpPeer::start();
    let (app, idp) = app_with_saml(true).await;
    // The IdP is active for admin sign-in only: "Use for registration" is off, so it is not used here.
    let resp = app
        .post_form(
            "/admin/identity/generic",
            &[
                ("metadata_url", &format!("{}/metadata", idp.base_url)),
                ("use_for_admin", "on"),
            ],
        )
        .await;
    assert_redirect_to(&resp, "/admin/identity/generic");
    configure_smtp(&app, smtp.port()).await;
    let dave = local_user(&app, "dave@example.com", "dave@example.com").await;
    app.post_form(&format!("/admin/users/{dave}/invite"), &[])
        .await;
    deliver(&app).await;
    let link = link_in(
        smtp.wait_for(1, Duration::from_secs(10)).await[0]
            .text
            .as_deref()
            .unwrap(),
    );
    let person = app.new_client();
    let page = person
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-test=\"register-password\""), "{page}");
    let csrf = crate::helpers::csrf_token_in(&page);
    let short = person
        .post(format!("{link}/password"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("password", "short"),
            ("confirm", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(short.status().as_u16(), 422);
    assert!(
        short
            .text()
            .await
            .unwrap()
            .contains("data-test=\"error-password\"")
    );
    let ok = person
        .post(format!("{link}/password"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("password", "a-long-enough-password"),
            ("confirm", "a-long-enough-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(
        ok.text()
            .await
            .unwrap()
            .contains("data-test=\"enroll-pin\"")
    );
    let hash: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM directory_users WHERE id = $1")
            .bind(&dave)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(hash.unwrap().starts_with("$argon2id$"));
}

#[tokio::test]
async fn auto_invite_after_a_sync_sends_one_mail_per_new_user_and_bulk_invites_a_filtered_set() {
    let smtp = SmtpPeer::start();
    let (app, emu) = crate::sync::app_with_tenant(1000, 2, 10).await;
    configure_smtp(&app, smtp.port()).await;
    // Turn auto-invite on.
    let mut form = crate::user_source::valid_form(&emu.base_url(), crate::sync::SECRET);
    form.push(("auto_invite".into(), "on".into()));
    let resp = crate::user_source::post_settings(&app, &form).await;
    assert_redirect_to(&resp, "/admin/azure/entra-user-source");
    crate::sync::round(&app).await.unwrap();
    let with_mail: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE source = 'entra' AND mail IS NOT NULL AND mail <> ''",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(with_mail > 0);
    let queued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE kind = 'invitation'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        queued, with_mail,
        "one invitation per new user with an address"
    );
    deliver(&app).await;
    let n = usize::try_from(with_mail).unwrap();
    let received = smtp.wait_for(n, Duration::from_secs(30)).await;
    assert_eq!(received.len(), n, "exactly one mail per new user arrives");
    let mut to: Vec<String> = received.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), n, "no user got two");
    // A second round imports nobody new: nobody is invited again.
    crate::sync::round(&app).await.unwrap();
    assert_eq!(app.count("invitations").await, with_mail);

    // Bulk: "Invite all matching" on a filtered set (all 1,000 imported users with an address) re-invites
    // exactly the filtered users.
    let filtered = app
        .post_form(
            "/admin/users-invite",
            &[("source", "entra"), ("invitation", "invited")],
        )
        .await;
    assert_eq!(filtered.status().as_u16(), 303);
    assert_eq!(app.count("invitations").await, with_mail * 2);
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invitations WHERE replaced_at IS NULL AND revoked_at IS NULL AND used_at IS NULL",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(open, with_mail, "each user has one working link");
    assert!(
        with_mail >= 900,
        "the bulk invite covered about 1,000 users ({with_mail})"
    );
    deliver(&app).await;
    let received = smtp.wait_for(2 * n, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 2 * n);
}

#[tokio::test]
async fn the_template_validates_previews_test_sends_and_resets() {
    let smtp = SmtpPeer::start();
    let app = crate::helpers::spawn_app().await;
    app.login_as_admin().await;
    configure_smtp(&app, smtp.port()).await;
    local_user(&app, "erin@example.com", "erin@example.com").await;
    let page = app.get_html("/admin/invitations").await;
    assert!(page.contains("${registrationLink}"));
    let bad = app
        .post_form(
            "/admin/invitations",
            &[
                ("subject", "Hi ${nope}"),
                ("text_body", "no link here"),
                ("html_body", "<p>${registrationLink}</p>"),
                ("lifetime_days", "7"),
                ("pin_length", "3"),
                ("pin_lifetime_minutes", "60"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(bad.status().as_u16(), 422);
    let body = bad.text().await.unwrap();
    for f in ["subject", "text_body", "pin_length"] {
        assert!(body.contains(&format!("data-test=\"error-{f}\"")), "{f}");
    }
    let good = app
        .post_form(
            "/admin/invitations",
            &[
                ("subject", "Welcome ${userFirstName}"),
                ("text_body", "Go: ${registrationLink}"),
                (
                    "html_body",
                    "<p><a href=\"${registrationLink}\">Go</a> ${userDisplayName}</p>",
                ),
                ("lifetime_days", "3"),
                ("pin_length", "10"),
                ("pin_lifetime_minutes", "30"),
                ("action", "save"),
            ],
        )
        .await;
    assert_redirect_to(&good, "/admin/invitations");
    let preview = app
        .get_html("/admin/invitations?user=erin%40example.com")
        .await;
    assert!(
        preview.contains("data-test=\"preview-subject\">Welcome Test<"),
        "{preview}"
    );
    let sent = app
        .post_form(
            "/admin/invitations/test-send",
            &[("to", "qa@example.test"), ("user", "erin@example.com")],
        )
        .await;
    assert_redirect_to(&sent, "/admin/invitations");
    deliver(&app).await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        mails[0].subject.contains("[Test] Welcome Test"),
        "{:?}",
        mails[0].subject
    );
    let reset = app
        .post_form("/admin/invitations", &[("action", "reset")])
        .await;
    assert_redirect_to(&reset, "/admin/invitations");
    let page = app.get_html("/admin/invitations").await;
    assert!(page.contains("Register your devices, ${userFirstName}"));
    assert!(page.contains("value=\"3\""), "reset keeps the lifetimes");
}
