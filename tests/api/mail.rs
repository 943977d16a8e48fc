//! Admin > Mail and the outbox: SMTP settings (validation, write-only sealed password), "Send test email",
//! delivery through the outbox worker to a real SMTP server (aiosmtpd), outages, two instances, give-up,
//! and the "Invitation mail is failing" notification.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use roster::clock::{Clock, HOUR, MINUTE, SECOND};
use roster::mail::model::{Security, SmtpSettings};
use roster::mail::outbox::{self, MailStatus, OutgoingMail};
use roster::mail::{MailContext, transport, worker};
use roster::startup::Options;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    ADMIN_PASSWORD, ADMIN_USER, TestApp, assert_redirect_to, spawn_app_sharing, spawn_app_with,
};
use crate::smtp_peer::SmtpPeer;

/// Fast timings for tests that let the worker run on its own.
fn fast_mail() -> MailContext {
    MailContext {
        tick: Duration::from_millis(100),
        batch_size: 20,
        lease_ms: 10 * SECOND,
        backoff_base_ms: 200,
        backoff_max_ms: SECOND,
        smtp_timeout: Duration::from_secs(5),
        send_timeout: Duration::from_secs(10),
        test_timeout: Duration::from_secs(5),
        failure_threshold: 3,
        ..MailContext::default()
    }
}

/// Slow backoff for tests that drive `run_once` by hand and move the clock themselves.
fn manual_mail() -> MailContext {
    MailContext {
        backoff_base_ms: MINUTE,
        backoff_max_ms: 10 * MINUTE,
        ..fast_mail()
    }
}

async fn app_with(mail: MailContext, start_workers: bool) -> TestApp {
    let app = spawn_app_with(Options {
        workers: Some(1),
        start_workers,
        mail: Some(mail),
        ..Default::default()
    })
    .await;
    app.login_as_admin().await;
    app
}

fn smtp_form(port: impl std::fmt::Display) -> Vec<(&'static str, String)> {
    vec![
        ("host", "127.0.0.1".into()),
        ("port", port.to_string()),
        ("security", "none".into()),
        ("username", String::new()),
        ("password", String::new()),
        ("from_name", "Roster Test".into()),
        ("from_address", "roster@example.test".into()),
    ]
}

async fn post_mail(app: &TestApp, form: &[(&'static str, String)]) -> reqwest::Response {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.post_form("/admin/mail", &pairs).await
}

async fn configure_smtp(app: &TestApp, port: u16) {
    let mut form = smtp_form(port);
    form.push(("action", "save".into()));
    assert_redirect_to(&post_mail(app, &form).await, "/admin/mail");
}

fn mail(n: usize, ref_id: Option<&str>) -> OutgoingMail {
    OutgoingMail {
        kind: "test",
        ref_id: ref_id.map(str::to_owned),
        to_address: format!("user{n}@example.test"),
        to_name: Some(format!("User {n}")),
        subject: format!("Mail number {n}"),
        text_body: format!("Hello {n}, plain text."),
        html_body: format!("<p>Hello <b>{n}</b>, HTML.</p>"),
    }
}

/// Enqueues in one transaction, as a producer does, then wakes the worker.
async fn enqueue_all(app: &TestApp, mails: &[OutgoingMail]) -> Vec<String> {
    let mut tx = app.db.begin().await.unwrap();
    let ids = outbox::enqueue_many(&mut tx, mails, app.clock.now_ms())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.state.mail.wake();
    ids
}

async fn statuses(app: &TestApp) -> Vec<(String, String, i64)> {
    sqlx::query_as("SELECT id, status, attempts FROM mail_outbox ORDER BY created_at, id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every mail the sink holds once, and exactly the expected subjects.
fn assert_exactly_once(peer: &SmtpPeer, expected: usize) {
    let got = peer.messages();
    let ids: HashSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    let subjects: HashSet<&str> = got.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(got.len(), expected, "mails received");
    assert_eq!(
        ids.len(),
        expected,
        "distinct Message-IDs: a mail was sent twice"
    );
    assert_eq!(
        subjects.len(),
        expected,
        "distinct subjects: a mail was sent twice"
    );
}

#[tokio::test]
async fn smtp_settings_refuse_bad_input_and_keep_it() {
    // Arrange
    let app = app_with(manual_mail(), false).await;
    configure_smtp(&app, 2525).await;
    // Act
    let mut bad = smtp_form(70_000);
    bad[0].1 = String::new();
    bad[6].1 = "not-an-address".into();
    bad[5].1 = "Kept Name".into();
    bad.push(("action", "save".into()));
    let resp = post_mail(&app, &bad).await;
    // Assert
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    for field in ["host", "port", "from_address"] {
        assert!(
            html.contains(&format!("data-test=\"error-{field}\"")),
            "error next to {field}"
        );
    }
    assert!(html.contains("value=\"70000\""), "typed port kept");
    assert!(
        html.contains("value=\"not-an-address\""),
        "typed address kept"
    );
    assert!(html.contains("value=\"Kept Name\""), "other input kept");
    let stored: (String, i64, String) =
        sqlx::query_as("SELECT host, port, from_address FROM smtp_settings")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        ("127.0.0.1".into(), 2525, "roster@example.test".into())
    );
    let saves = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| a == "mail.smtp_settings_saved")
        .count();
    assert_eq!(saves, 1, "only the valid save is audited");
}

#[tokio::test]
async fn the_smtp_password_is_write_only_and_sealed_at_rest() {
    const PASSWORD: &str = "Sup3r-Secret-Mail-Pa55";
    let app = app_with(manual_mail(), false).await;
    let page = app.get_html("/admin/mail").await;
    assert!(page.contains("data-test=\"password-state\" data-set=\"false\""));
    // Set it.
    let mut form = smtp_form(2525);
    form[3].1 = "mailer".into();
    form[4].1 = PASSWORD.into();
    form.push(("action", "save".into()));
    assert_redirect_to(&post_mail(&app, &form).await, "/admin/mail");
    let sealed: Option<String> = sqlx::query_scalar("SELECT password_sealed FROM smtp_settings")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let sealed = sealed.expect("a password is stored");
    assert!(!sealed.contains(PASSWORD), "encrypted at rest");
    let page = app.get_html("/admin/mail").await;
    assert!(!page.contains(PASSWORD), "never rendered");
    assert!(page.contains("data-test=\"password-state\" data-set=\"true\""));
    // A refused form does not echo it either.
    let mut refused = form.clone();
    refused[1].1 = "0".into();
    let html = post_mail(&app, &refused).await.text().await.unwrap();
    assert!(!html.contains(PASSWORD), "not echoed on a 422");
    // Blank keeps it.
    let mut keep = smtp_form(2526);
    keep[3].1 = "mailer".into();
    keep.push(("action", "save".into()));
    assert_redirect_to(&post_mail(&app, &keep).await, "/admin/mail");
    let after: Option<String> = sqlx::query_scalar("SELECT password_sealed FROM smtp_settings")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        after.as_deref(),
        Some(sealed.as_str()),
        "kept when left blank"
    );
    let key = &app.state.master_key;
    use secrecy::ExposeSecret;
    assert_eq!(key.open(&sealed).unwrap().expose_secret(), PASSWORD);
    // Never in the audit log.
    let details: Vec<String> = sqlx::query_scalar("SELECT details FROM audit_events")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(details.iter().all(|d| !d.contains(PASSWORD)));
    assert!(
        details
            .iter()
            .any(|d| d.contains("changed (value not recorded)"))
    );
    // Clear it.
    let mut clear = keep.clone();
    clear.push(("clear_password", "on".into()));
    assert_redirect_to(&post_mail(&app, &clear).await, "/admin/mail");
    let cleared: Option<String> = sqlx::query_scalar("SELECT password_sealed FROM smtp_settings")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(cleared, None);
}

#[tokio::test]
async fn a_test_email_arrives_as_text_and_html() {
    let peer = SmtpPeer::start();
    let app = app_with(manual_mail(), false).await;
    // Unsaved settings: the test uses the form as typed.
    let mut form = smtp_form(peer.port());
    form.push(("test_to", "admin@example.test".into()));
    form.push(("action", "test".into()));
    let resp = post_mail(&app, &form).await;
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("data-test=\"test-result\" data-ok=\"true\""),
        "{html}"
    );
    let got = peer.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].to, vec!["admin@example.test".to_owned()]);
    assert_eq!(got[0].from, "roster@example.test");
    assert_eq!(got[0].content_type, "multipart/alternative");
    assert!(
        got[0]
            .text
            .as_deref()
            .unwrap()
            .contains("test email from Roster")
    );
    assert!(
        got[0]
            .html
            .as_deref()
            .unwrap()
            .contains("<strong>Roster</strong>")
    );
    assert!(
        got[0]
            .raw
            .contains("From: \"Roster Test\" <roster@example.test>")
            || got[0]
                .raw
                .contains("From: Roster Test <roster@example.test>"),
        "{}",
        got[0].raw
    );
    assert_eq!(
        app.count("mail_outbox").await,
        0,
        "a test bypasses the outbox"
    );
    assert_eq!(app.count("smtp_settings").await, 0, "a test saves nothing");
    assert!(
        app.audit_actions()
            .await
            .contains(&"mail.test_sent".to_owned())
    );
}

#[tokio::test]
async fn a_test_email_with_the_server_down_shows_a_plain_error() {
    let mut peer = SmtpPeer::start();
    peer.stop();
    let app = app_with(manual_mail(), false).await;
    let mut form = smtp_form(peer.port());
    form.push(("test_to", "admin@example.test".into()));
    form.push(("action", "test".into()));
    let started = Instant::now();
    let resp = post_mail(&app, &form).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "bounded by the test timeout"
    );
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("data-test=\"test-result\" data-ok=\"false\""),
        "{html}"
    );
    let expected = format!(
        "Could not connect to the mail server at 127.0.0.1:{}",
        peer.port()
    );
    assert!(
        html.contains(&expected),
        "plain error naming the server: {html}"
    );
    // A missing recipient is a field error, not a send.
    let mut no_to = smtp_form(peer.port());
    no_to.push(("action", "test".into()));
    let resp = post_mail(&app, &no_to).await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-test=\"error-test_to\"")
    );
}

#[tokio::test]
async fn queued_mail_is_delivered_exactly_once() {
    let peer = SmtpPeer::start();
    let app = app_with(fast_mail(), true).await;
    configure_smtp(&app, peer.port()).await;
    let ids = enqueue_all(&app, &[mail(1, Some("invitation-1"))]).await;
    let got = peer.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].subject, "Mail number 1");
    assert_eq!(got[0].to, vec!["user1@example.test".to_owned()]);
    assert!(got[0].text.as_deref().unwrap().contains("plain text"));
    assert!(got[0].html.as_deref().unwrap().contains("<b>1</b>"));
    assert!(
        got[0].message_id.contains(&ids[0]),
        "Message-ID carries the outbox id"
    );
    wait_until("the row marked sent", Duration::from_secs(5), || async {
        statuses(&app).await[0].1 == "sent"
    })
    .await;
    // Wake it a few more times: nothing is sent again.
    for _ in 0..5 {
        app.state.mail.wake();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_exactly_once(&peer, 1);
    let latest = outbox::find_latest_by_ref(&app.db.pool, "invitation-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.mail_status(), MailStatus::Sent);
    assert_eq!(latest.attempts, 1);
    assert!(latest.sent_at.is_some());
    let page = app.get_html("/admin/mail").await;
    assert!(
        page.contains("data-test=\"outbox-sent\">1<"),
        "summary counts it"
    );
    assert!(page.contains("data-status=\"sent\""));
}

#[tokio::test]
async fn mail_queued_during_an_outage_goes_out_once_the_server_is_back() {
    let mut peer = SmtpPeer::start();
    let app = app_with(fast_mail(), true).await;
    configure_smtp(&app, peer.port()).await;
    peer.stop();
    let mails: Vec<OutgoingMail> = (0..8).map(|n| mail(n, None)).collect();
    enqueue_all(&app, &mails).await;
    // The worker tries, fails and backs off.
    wait_until("failed attempts", Duration::from_secs(10), || async {
        statuses(&app)
            .await
            .iter()
            .any(|(_, s, a)| s == "queued" && *a >= 2)
    })
    .await;
    assert!(peer.messages().is_empty());
    peer.restart();
    peer.wait_for(8, Duration::from_secs(20)).await;
    wait_until("all rows sent", Duration::from_secs(10), || async {
        statuses(&app).await.iter().all(|(_, s, _)| s == "sent")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once(&peer, 8);
}

#[tokio::test]
async fn two_instances_never_send_the_same_mail_twice() {
    let peer = SmtpPeer::start();
    let a = app_with(fast_mail(), true).await;
    configure_smtp(&a, peer.port()).await;
    let b = spawn_app_sharing(
        &a,
        Options {
            workers: Some(1),
            start_workers: true,
            mail: Some(MailContext {
                instance_id: "instance-b".into(),
                ..fast_mail()
            }),
            sync: Some(crate::helpers::test_sync_context()),
            ..Default::default()
        },
    )
    .await;
    let mails: Vec<OutgoingMail> = (0..200).map(|n| mail(n, None)).collect();
    enqueue_all(&a, &mails).await;
    b.state.mail.wake();
    peer.wait_for(200, Duration::from_secs(60)).await;
    wait_until("all rows sent", Duration::from_secs(10), || async {
        statuses(&a).await.iter().all(|(_, s, _)| s == "sent")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once(&peer, 200);
    let attempts: Vec<i64> = statuses(&a).await.iter().map(|r| r.2).collect();
    assert!(attempts.iter().all(|&n| n == 1), "each mail tried once");
}

#[tokio::test]
async fn mail_still_failing_after_24_hours_is_given_up() {
    let mut peer = SmtpPeer::start();
    let app = app_with(manual_mail(), false).await;
    configure_smtp(&app, peer.port()).await;
    peer.stop();
    let cancel = CancellationToken::new();
    let ids = enqueue_all(&app, &[mail(1, Some("inv-24h"))]).await;
    let r = worker::run_once(&app.state, &cancel).await.unwrap();
    assert_eq!((r.claimed, r.failed_attempts, r.given_up), (1, 1, 0));
    // Backoff: not due again at once.
    assert_eq!(
        worker::run_once(&app.state, &cancel).await.unwrap().claimed,
        0
    );
    app.clock.advance(2 * MINUTE);
    let r = worker::run_once(&app.state, &cancel).await.unwrap();
    assert_eq!((r.claimed, r.given_up), (1, 0), "retried after the backoff");
    app.clock.advance(25 * HOUR);
    let r = worker::run_once(&app.state, &cancel).await.unwrap();
    assert_eq!((r.claimed, r.given_up), (1, 1));
    let row = outbox::find_latest_by_ref(&app.db.pool, "inv-24h")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.id, ids[0]);
    assert_eq!(row.mail_status(), MailStatus::Failed);
    assert_eq!(row.attempts, 3);
    assert!(row.last_error.unwrap().contains("Could not connect"));
    // Given up means never tried again, even once the server is back.
    peer.restart();
    app.clock.advance(HOUR);
    assert_eq!(
        worker::run_once(&app.state, &cancel).await.unwrap().claimed,
        0
    );
    assert!(peer.messages().is_empty());
    relogin(&app).await;
    let page = app.get_html("/admin/mail").await;
    assert!(page.contains("data-test=\"outbox-failed\">1<"), "{page}");
    assert!(page.contains("data-status=\"failed\""));
}

/// Signs in again after the clock moved past the session's idle timeout.
async fn relogin(app: &TestApp) {
    let resp = app.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_redirect_to(&resp, "/admin");
}

async fn open_failing_notification(app: &TestApp) -> Option<String> {
    sqlx::query_scalar(
        "SELECT body FROM notifications WHERE dedup_key = 'mail_failing' AND resolved_at IS NULL",
    )
    .fetch_optional(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn failing_mail_raises_a_notification_that_clears_after_recovery() {
    let mut peer = SmtpPeer::start();
    let app = app_with(manual_mail(), false).await;
    configure_smtp(&app, peer.port()).await;
    peer.stop();
    let cancel = CancellationToken::new();
    enqueue_all(&app, &[mail(1, None), mail(2, None)]).await;
    for pass in 1..=3 {
        let r = worker::run_once(&app.state, &cancel).await.unwrap();
        assert_eq!(
            r.failed_attempts, 1,
            "one failure per pass: the rest of the batch waits"
        );
        if pass < 3 {
            assert!(
                open_failing_notification(&app).await.is_none(),
                "below the threshold after {pass}"
            );
        }
        app.clock.advance(20 * MINUTE);
    }
    let body = open_failing_notification(&app)
        .await
        .expect("raised at the threshold");
    assert!(body.contains("The last 3 attempts"), "{body}");
    assert!(
        body.contains(&format!("127.0.0.1:{}", peer.port())),
        "last error in it: {body}"
    );
    relogin(&app).await;
    let html = app.get_html("/admin/notifications").await;
    assert!(html.contains("Invitation mail is failing"), "{html}");
    // Recovery.
    peer.restart();
    app.clock.advance(HOUR);
    let r = worker::run_once(&app.state, &cancel).await.unwrap();
    assert_eq!(r.sent, 2);
    assert!(open_failing_notification(&app).await.is_none(), "resolved");
    assert_exactly_once(&peer, 2);
}

#[tokio::test]
async fn mail_waits_queued_while_smtp_is_not_configured() {
    let app = app_with(manual_mail(), false).await;
    enqueue_all(&app, &[mail(1, None), mail(2, None)]).await;
    let r = worker::run_once(&app.state, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.claimed, 0);
    let page = app.get_html("/admin/mail").await;
    assert!(page.contains("data-test=\"not-configured\""));
    assert!(page.contains("<strong>2</strong> mails wait"));
    assert!(page.contains("data-test=\"outbox-queued\">2<"));
}

#[tokio::test]
async fn a_refused_recipient_does_not_hold_up_the_others() {
    let peer = SmtpPeer::start();
    let app = app_with(manual_mail(), false).await;
    configure_smtp(&app, peer.port()).await;
    let mut bad = mail(0, Some("bad"));
    bad.to_address = "reject-me@example.test".into();
    enqueue_all(&app, &[bad, mail(1, None), mail(2, None)]).await;
    let r = worker::run_once(&app.state, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((r.sent, r.failed_attempts), (2, 1));
    let row = outbox::find_latest_by_ref(&app.db.pool, "bad")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.mail_status(),
        MailStatus::Queued,
        "retried later (until 24 h)"
    );
    assert!(
        row.last_error.unwrap().contains("550"),
        "the server's answer is kept"
    );
    assert_exactly_once(&peer, 2);
}

#[tokio::test]
async fn kept_connections_survive_passes_and_a_server_restart_without_repeats() {
    let mut peer = SmtpPeer::start();
    let app = app_with(manual_mail(), false).await;
    configure_smtp(&app, peer.port()).await;
    let cancel = CancellationToken::new();
    enqueue_all(&app, &(0..6).map(|n| mail(n, None)).collect::<Vec<_>>()).await;
    let r = worker::run_once(&app.state, &cancel).await.unwrap();
    assert_eq!((r.sent, r.failed_attempts), (6, 0));
    // The worker keeps its connections; the server restarts under them (well within the idle timeout).
    peer.restart();
    enqueue_all(&app, &(6..12).map(|n| mail(n, None)).collect::<Vec<_>>()).await;
    let r = worker::run_once(&app.state, &cancel).await.unwrap();
    assert_eq!(
        (r.sent, r.failed_attempts),
        (6, 0),
        "a closed kept connection is replaced, not counted as a failure"
    );
    assert_exactly_once(&peer, 12);
}

#[tokio::test]
async fn one_kept_connection_sends_many_mails_each_once() {
    // One connection carries mail after mail (its socket has TCP_NODELAY: see the unit test in
    // src/mail/transport.rs; the throughput itself is measured by `make bench`, never timed here).
    let peer = SmtpPeer::start();
    let settings = SmtpSettings {
        host: "127.0.0.1".into(),
        port: peer.port(),
        security: Security::None,
        username: None,
        from_name: "Roster".into(),
        from_address: "roster@example.test".into(),
    };
    let t = transport::SharedTransport::default()
        .get(&settings, None, Duration::from_secs(5), 1)
        .unwrap();
    for n in 0..60 {
        let m = mail(n, None);
        let msg = transport::message(
            &settings,
            &m.to_address,
            m.to_name.as_deref(),
            &m.subject,
            &m.text_body,
            &m.html_body,
            None,
        )
        .unwrap();
        transport::send(&t, &settings, msg, Duration::from_secs(10))
            .await
            .unwrap();
    }
    peer.wait_for(60, Duration::from_secs(10)).await;
    assert_exactly_once(&peer, 60);
}

#[tokio::test]
async fn tls_settings_against_a_plain_server_fail_plainly() {
    let peer = SmtpPeer::start();
    let app = app_with(manual_mail(), false).await;
    let test = |security: &'static str| {
        let mut form = smtp_form(peer.port());
        form[2].1 = security.into();
        form.push(("test_to", "admin@example.test".into()));
        form.push(("action", "test".into()));
        form
    };
    // STARTTLS is required: no fallback to plain text when the server does not offer it.
    let html = post_mail(&app, &test("starttls"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("data-test=\"test-result\" data-ok=\"false\""),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "The mail server at 127.0.0.1:{} does not offer STARTTLS",
            peer.port()
        )),
        "{html}"
    );
    // Implicit TLS: the handshake fails on a plain server.
    let html = post_mail(&app, &test("tls")).await.text().await.unwrap();
    assert!(
        html.contains("data-test=\"test-result\" data-ok=\"false\""),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "Could not connect to the mail server at 127.0.0.1:{}",
            peer.port()
        )),
        "names the server: {html}"
    );
    assert!(peer.messages().is_empty(), "nothing sent in plain text");
}

#[tokio::test]
async fn a_bulk_enqueue_of_a_thousand_mails_lands_whole() {
    // Its speed is measured by `make bench` (10,000 invitations), not timed here.
    let app = app_with(manual_mail(), false).await;
    let mails: Vec<OutgoingMail> = (0..1000)
        .map(|n| mail(n, Some(&format!("ref-{n}"))))
        .collect();
    let ids = enqueue_all(&app, &mails).await;
    assert_eq!(ids.len(), 1000);
    assert_eq!(app.count("mail_outbox").await, 1000);
    let refs: Vec<String> = (0..1000).map(|n| format!("ref-{n}")).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let mut conn = app.db.pool.acquire().await.unwrap();
    let latest = outbox::latest_by_refs(&mut conn, &refs).await.unwrap();
    assert_eq!(latest.len(), 1000);
    assert_eq!(latest["ref-999"].id, ids[999]);
    assert_eq!(latest["ref-999"].mail_status(), MailStatus::Queued);
}

#[tokio::test]
async fn concurrent_claims_never_overlap() {
    // Arrange: 300 due mails, 6 claimers racing on the same database (the worker's claim statement).
    let app = app_with(manual_mail(), false).await;
    let mails: Vec<OutgoingMail> = (0..300).map(|n| mail(n, None)).collect();
    enqueue_all(&app, &mails).await;
    // Act
    let mut tasks = Vec::new();
    for i in 0..6 {
        let db = app.db.clone();
        let now = app.clock.now_ms() + SECOND;
        tasks.push(tokio::spawn(async move {
            let owner = format!("claimer-{i}");
            let mut mine = Vec::new();
            loop {
                let rows = roster::mail::repo::claim_due(&db.pool, &owner, now, now + HOUR, 7)
                    .await
                    .unwrap();
                if rows.is_empty() {
                    return mine;
                }
                assert!(
                    rows.iter()
                        .all(|r| r.lease_owner.as_deref() == Some(owner.as_str()))
                );
                mine.extend(rows.into_iter().map(|r| r.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    // Assert
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 300, "every row claimed once, none twice");
    assert_eq!(distinct.len(), 300);
}

#[tokio::test]
async fn a_browser_sets_up_mail_and_sends_a_test_email() {
    let peer = SmtpPeer::start();
    let app = app_with(fast_mail(), true).await;
    // Something in the outbox, so the page has rows to show.
    let mut failed = mail(7, None);
    failed.to_address = "reject-me@contoso.test".into();
    enqueue_all(&app, &[mail(1, None), failed]).await;
    let address = app.address.clone();
    let port = peer.port().to_string();
    tokio::task::spawn_blocking(move || {
        crate::browser::run_browser_script("mail.mjs", &[&address, &port]);
    })
    .await
    .unwrap();
    assert!(
        peer.messages()
            .iter()
            .any(|m| m.subject == "Roster test email")
    );
}
