//! The `roster` binary itself: admin create, migrate, check-config, serve with a graceful stop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roster::db::Db;

use crate::helpers::fresh_database_url;

fn roster(dir: &std::path::Path, db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
    c.env("ROSTER_DATA_DIR", dir)
        .env("ROSTER_DATABASE_URL", db_url)
        .env("ROSTER_LOG", "info")
        .env_remove("ROSTER_BASE_URL")
        .env_remove("ROSTER_BIND");
    c
}

fn run_with_stdin(mut cmd: Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn admin_create_reads_the_password_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let url = fresh_database_url(tmp.path()).await;

    let mut cmd = roster(tmp.path(), &url);
    cmd.args(["admin", "create", "--username", "carol"]);
    let out = run_with_stdin(cmd, "carol-password-123\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Created admin carol"));

    // Too short: refused with the reason, nothing created.
    let mut cmd = roster(tmp.path(), &url);
    cmd.args(["admin", "create", "--username", "dave"]);
    let out = run_with_stdin(cmd, "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));

    // Same username, other case: refused.
    let mut cmd = roster(tmp.path(), &url);
    cmd.args(["admin", "create", "--username", "Carol"]);
    let out = run_with_stdin(cmd, "carol-password-456\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let db = Db::connect(&url).await.unwrap();
    let admins: Vec<String> = sqlx::query_scalar("SELECT username FROM admins")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(admins, vec!["carol".to_owned()]);
    let actor: String =
        sqlx::query_scalar("SELECT actor_kind FROM audit_events WHERE action = 'admin.created'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(actor, "system");
    db.close().await;
}

#[tokio::test]
async fn migrate_and_check_config() {
    let tmp = tempfile::tempdir().unwrap();
    let url = fresh_database_url(tmp.path()).await;
    let out = roster(tmp.path(), &url).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = roster(tmp.path(), &url)
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("migrations:  up to date") && stdout.contains("configuration is valid"),
        "{stdout}"
    );

    let out = roster(tmp.path(), "mysql://localhost/roster")
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sqlite://") && stderr.contains("postgres://"),
        "{stderr}"
    );

    let out = roster(tmp.path(), &url)
        .args(["--bind", "not-an-address", "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ROSTER_BIND"));
}

#[tokio::test]
async fn serve_prints_the_setup_link_and_stops_gracefully_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let url = fresh_database_url(tmp.path()).await;
    let mut child = roster(tmp.path(), &url)
        .env("ROSTER_BIND", "127.0.0.1:0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    let link = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("serve logs a setup link");
        log.push(line.clone());
        if let Some(i) = line.find("/setup?token=") {
            let start = line[..i].rfind("http://").unwrap();
            let end = line[i..].find(' ').map_or(line.len(), |e| i + e);
            break line[start..end].to_owned();
        }
    };
    // One log line per start-up step came before it.
    for step in [
        "Configuration loaded",
        "Connected to the database",
        "Database migrations applied",
        "Master key loaded",
        "Listening",
    ] {
        assert!(
            log.iter().any(|l| l.contains(step)),
            "missing start-up step {step:?} in {log:#?}"
        );
    }
    // `serve` runs the sync worker (a scheduled sync needs it).
    let until = Instant::now() + Duration::from_secs(20);
    while !log.iter().any(|l| l.contains("Sync worker started")) {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("serve starts the sync worker");
        log.push(line);
    }
    let base = &link[..link.find("/setup").unwrap()];
    let resp = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        reqwest::get(link.clone()).await.unwrap().status().as_u16(),
        200
    );
    // The master key was generated with mode 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "roster did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        log.push(line);
    }
    assert!(status.success(), "exit status {status:?}");
    assert!(log.iter().any(|l| l.contains("SIGTERM")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("Stopped.")), "{log:#?}");
}

#[tokio::test]
async fn sync_once_runs_one_round_and_reports_failures() {
    let (app, emu) = crate::sync::app_with_tenant(120, 4, 200).await;
    let out = roster(&app.data_dir, &app.database_url)
        .args(["sync", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("succeeded: 120 users"), "{stdout}");
    crate::sync::assert_matches_truth(&app, &emu).await;
    let trigger: String = sqlx::query_scalar("SELECT trigger_kind FROM sync_runs")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(trigger, "command line");

    // The token endpoint refuses the application: non-zero exit with the reason.
    emu.push_fault(graph_emulator::FaultRule {
        endpoint: graph_emulator::Endpoint::Token,
        skip: 0,
        times: 1,
        fault: graph_emulator::Fault::ExpiredToken,
    });
    let out = roster(&app.data_dir, &app.database_url)
        .args(["sync", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error:"), "{stderr}");
}

/// `kill -9` during a round: nothing half-written, the lease keeps others out until it expires, and the
/// next round converges to the emulator's truth with nothing lost or duplicated.
#[tokio::test]
async fn a_round_killed_mid_way_is_recovered_by_the_next() {
    let (app, emu) = crate::sync::app_with_tenant(3000, 30, 4000).await;
    // Slow pages: the kill lands in the middle of the users phase.
    emu.push_fault(graph_emulator::FaultRule {
        endpoint: graph_emulator::Endpoint::UsersDelta,
        skip: 3,
        times: 50,
        fault: graph_emulator::Fault::Hang(Duration::from_millis(300)),
    });
    let mut child = roster(&app.data_dir, &app.database_url)
        .args(["sync", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some pages are committed, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pages: Option<i64> = sqlx::query_scalar("SELECT MAX(pages) FROM sync_runs")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        if pages.unwrap_or(0) >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the round did not make progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let _ = child.wait();
    let partial: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM directory_users")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(
        partial > 0 && partial < 3000,
        "committed pages stay: {partial}"
    );
    let links: Option<String> = sqlx::query_scalar("SELECT users_delta_link FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(links.is_none(), "no delta link past uncommitted work");

    // The dead process's lease still holds the source.
    emu.clear_faults();
    let out = roster(&app.data_dir, &app.database_url)
        .args(["sync", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lease"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Once it expires (a minute; moved forward here), the next round takes over and converges.
    sqlx::query("UPDATE sync_leases SET expires_at = 0")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let out = roster(&app.data_dir, &app.database_url)
        .args(["sync", "--once"])
        .output()
        .unwrap();
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
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM sync_runs ORDER BY started_at")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec!["failed".to_owned(), "succeeded".to_owned()],
        "the killed round is marked failed"
    );
}
