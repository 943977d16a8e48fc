//! Reliability scenarios with the real binary and peers: `kill -9` at five points of a 20,000-user full sync,
//! and 500 invitations queued through an SMTP outage.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roster::clock::MINUTE;
use roster::mail::MailContext;
use roster::startup::Options;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, assert_redirect_to};
use crate::smtp_peer::SmtpPeer;

fn roster(app: &TestApp) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
    c.env("ROSTER_DATA_DIR", &app.data_dir)
        .env("ROSTER_DATABASE_URL", &app.database_url)
        .env("ROSTER_LOG", "warn")
        .env_remove("ROSTER_BASE_URL")
        .env_remove("ROSTER_BIND");
    c
}

/// The id, phase and page count of the newest round marked running, if any.
async fn progress(app: &TestApp) -> Option<(String, String, i64)> {
    sqlx::query_as(
        "SELECT id, phase, pages FROM sync_runs WHERE status = 'running' ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_optional(&app.db.pool)
    .await
    .unwrap()
}

/// `kill -9` of `roster sync --once` at five points of a full sync of 20,000 users (early, middle and late
/// in the users phase, and twice in the groups phase); after each kill the lease is let expire and a new
/// process starts. The last one runs to the end: every user, group and membership equals the emulator's
/// truth, nothing is duplicated, and the stored delta links work for the next (delta) round.
#[tokio::test]
async fn kill_9_at_five_points_of_a_20k_user_sync_then_converge() {
    let (app, emu) = crate::sync::app_with_tenant(20_000, 200, 30_000).await;
    // Slow pages, so each kill lands where it is meant to.
    for endpoint in [
        graph_emulator::Endpoint::UsersDelta,
        graph_emulator::Endpoint::GroupsDelta,
    ] {
        emu.push_fault(graph_emulator::FaultRule {
            endpoint,
            skip: 0,
            times: 10_000,
            fault: graph_emulator::Fault::Hang(Duration::from_millis(150)),
        });
    }
    let points = [
        ("users", 2),
        ("users", 8),
        ("users", 15),
        ("groups", 1),
        ("groups", 2),
    ];
    let mut killed_at = Vec::new();
    let mut killed_runs: Vec<String> = Vec::new();
    for (phase, pages) in points {
        let mut child = roster(&app)
            .args(["sync", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            // A killed round stays "running" until the next one starts: only the new round counts.
            if let Some((id, p, n)) = progress(&app).await
                && !killed_runs.contains(&id)
                && p == phase
                && n >= pages
            {
                killed_at.push(format!("{p}:{n}"));
                killed_runs.push(id);
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the round ended ({status}) before reaching {phase} page {pages}");
            }
            assert!(
                Instant::now() < deadline,
                "no progress to {phase} page {pages}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ok = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let _ = child.wait();
        // What a dead process held: its lease (let it expire) and its run (still "running").
        sqlx::query("UPDATE sync_leases SET expires_at = 0")
            .execute(&app.db.pool)
            .await
            .unwrap();
    }
    assert_eq!(killed_at.len(), 5, "{killed_at:?}");
    emu.clear_faults();
    let out = roster(&app).args(["sync", "--once"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::sync::assert_matches_truth(&app, &emu).await;
    let dupes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT external_id FROM directory_users GROUP BY external_id HAVING COUNT(*) > 1) d",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(dupes, 0);
    let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_runs WHERE status = 'failed'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(failed, 5, "each killed round is marked failed");
    // Delta links are consistent: a change made now arrives through the next (delta) round.
    let first = emu.truth().users[0].id.clone();
    emu.mutate(graph_emulator::Mutation::HardDeleteUser(first.clone()));
    let out = roster(&app).args(["sync", "--once"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::sync::assert_matches_truth(&app, &emu).await;
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM sync_runs WHERE status = 'succeeded' ORDER BY started_at",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(kinds.last().map(String::as_str), Some("delta"), "{kinds:?}");
}

/// SMTP down while 500 invitations queue, then up: each is delivered exactly once.
#[tokio::test]
async fn mail_outage_with_500_invitations_then_each_delivered_once() {
    let mut smtp = SmtpPeer::start();
    let emu = graph_emulator::Emulator::start(crate::sync::emulator_config(500, 2, 10))
        .await
        .unwrap();
    let app = crate::helpers::spawn_app_with(Options {
        workers: Some(1),
        mail: Some(MailContext {
            batch_size: 100,
            backoff_base_ms: MINUTE,
            backoff_max_ms: 10 * MINUTE,
            smtp_timeout: Duration::from_secs(3),
            send_timeout: Duration::from_secs(10),
            ..MailContext::default()
        }),
        ..Default::default()
    })
    .await;
    app.login_as_admin().await;
    crate::smtp_peer::configure_smtp(&app, smtp.port()).await;
    smtp.stop();
    let mut form = crate::user_source::valid_form(&emu.base_url(), crate::sync::SECRET);
    form.push(("auto_invite".into(), "on".into()));
    assert_redirect_to(
        &crate::user_source::post_settings(&app, &form).await,
        "/admin/azure/entra-user-source",
    );
    crate::sync::round(&app).await.unwrap();
    let queued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE kind = 'invitation'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(queued >= 400, "about 500 invitations queued ({queued})");
    let cancel = CancellationToken::new();
    // Down: passes fail and reschedule; nothing is lost or marked sent.
    for _ in 0..3 {
        roster::mail::worker::run_once(&app.state, &cancel)
            .await
            .unwrap();
        app.clock.advance(11 * MINUTE);
    }
    let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE status <> 'queued'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(sent, 0, "nothing sent or given up while SMTP is down");
    assert!(smtp.messages().is_empty());
    // Up again: every mail goes out once.
    smtp.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        app.clock.advance(11 * MINUTE);
        let pass = roster::mail::worker::run_once(&app.state, &cancel)
            .await
            .unwrap();
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE status = 'queued'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} still queued after {pass:?}"
        );
    }
    let n = usize::try_from(queued).unwrap();
    let received = smtp.wait_for(n, Duration::from_secs(30)).await;
    assert_eq!(received.len(), n, "each invitation delivered");
    let mut ids: Vec<String> = received.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "none delivered twice");
}
