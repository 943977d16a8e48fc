//! Full sync against the Graph emulator: correctness against its truth, removals, retries, token renewal,
//! Test connection outcomes, failures that change nothing, and one round at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use graph_emulator::{Config, Emulator, Endpoint, Fault, FaultRule, MemberKind, Mode, Mutation};
use roster::sync::service::{RoundDeps, RoundSummary, SyncError, Trigger, run_round};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, assert_redirect_to, spawn_app};
use crate::user_source::{CLIENT, TENANT, post_settings, valid_form};

pub const EXT_APP: &str = "b7d8e648520f41d3b9c0fdeb91768a0a";
pub const SECRET: &str = "emulated-client-secret~1";

pub fn emulator_config(users: usize, groups: usize, memberships: usize) -> Config {
    Config {
        seed: 7,
        users,
        groups,
        memberships,
        tenant_id: TENANT.into(),
        tenant_domain: "contoso.example".into(),
        client_id: CLIENT.into(),
        client_secret: SECRET.into(),
        extension_app_id: EXT_APP.into(),
        ..Config::default()
    }
}

/// An emulated tenant, and the app signed in with the source configured to use it.
pub async fn app_with_tenant(
    users: usize,
    groups: usize,
    memberships: usize,
) -> (TestApp, Emulator) {
    let emu = Emulator::start(emulator_config(users, groups, memberships))
        .await
        .unwrap();
    let app = spawn_app().await;
    app.login_as_admin().await;
    let resp = post_settings(&app, &valid_form(&emu.base_url(), SECRET)).await;
    assert_redirect_to(&resp, "/admin/azure/entra-user-source");
    (app, emu)
}

pub async fn round(app: &TestApp) -> Result<RoundSummary, SyncError> {
    round_with(app, &app.state.sync, &CancellationToken::new()).await
}

async fn round_with(
    app: &TestApp,
    sync: &roster::sync::SyncContext,
    cancel: &CancellationToken,
) -> Result<RoundSummary, SyncError> {
    let deps = RoundDeps {
        db: &app.state.db,
        clock: &app.state.clock,
        master_key: &app.state.master_key,
        sync,
        cancel,
        base_url: &app.state.base_url,
    };
    run_round(&deps, Trigger::Manual).await
}

type StoredUser = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
    Option<String>,
);

/// Asserts that the live directory equals the emulator's truth, field by field.
pub async fn assert_matches_truth(app: &TestApp, emu: &Emulator) {
    let truth = emu.truth();
    let configured: String = sqlx::query_scalar("SELECT custom_attributes FROM user_sources")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let has = |name: &str| configured.contains(&format!("\"name\":\"{name}\""));
    let rows: Vec<StoredUser> = sqlx::query_as(
        "SELECT external_id, upn, mail, given_name, surname, display_name, job_title, department, account_enabled, \
         custom_attributes, managed_apple_id FROM directory_users WHERE not_synced_at IS NULL AND source = 'entra'",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let stored: BTreeMap<String, StoredUser> = rows.into_iter().map(|r| (r.0.clone(), r)).collect();
    assert_eq!(stored.len(), truth.users.len(), "live user count");
    for u in &truth.users {
        let s = stored
            .get(&u.id)
            .unwrap_or_else(|| panic!("user {} missing", u.id));
        assert_eq!(s.1, u.user_principal_name);
        assert_eq!(s.2, u.mail);
        assert_eq!(s.3, u.given_name);
        assert_eq!(s.4, u.surname);
        assert_eq!(s.5, u.display_name);
        assert_eq!(s.6, u.job_title);
        assert_eq!(s.7, u.department);
        assert_eq!(s.8 != 0, u.account_enabled);
        let custom: BTreeMap<String, String> = serde_json::from_str(&s.9).unwrap();
        if has("badge") {
            assert_eq!(
                custom.get("badge"),
                u.on_premises_extension_attributes[6].as_ref(),
                "badge of {}",
                u.id
            );
        }
        let cost = u
            .extensions
            .get(&format!("extension_{EXT_APP}_costCenter"))
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        if has("costCenter") {
            assert_eq!(
                custom.get("costCenter"),
                cost.as_ref(),
                "costCenter of {}",
                u.id
            );
        }
        let apple = u
            .mail
            .as_ref()
            .and_then(|m| m.split_once('@'))
            .map(|(l, d)| format!("{l}@appleid.{}", d.to_lowercase()));
        assert_eq!(s.10, apple, "Managed Apple ID of {}", u.id);
    }
    let groups: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT external_id, display_name, mail FROM directory_groups WHERE not_synced_at IS NULL",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let groups: BTreeMap<String, (String, Option<String>)> =
        groups.into_iter().map(|(i, n, m)| (i, (n, m))).collect();
    assert_eq!(groups.len(), truth.groups.len(), "live group count");
    for g in &truth.groups {
        assert_eq!(
            groups.get(&g.id),
            Some(&(g.display_name.clone(), g.mail.clone())),
            "group {}",
            g.id
        );
    }
    let members: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT group_external_id, member_kind, member_external_id FROM group_members",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let members: BTreeSet<(String, String, String)> = members.into_iter().collect();
    let want: BTreeSet<(String, String, String)> = truth
        .memberships
        .iter()
        .map(|(g, k, m)| {
            (
                g.clone(),
                if *k == MemberKind::User {
                    "user"
                } else {
                    "group"
                }
                .to_owned(),
                m.clone(),
            )
        })
        .collect();
    assert_eq!(members, want, "memberships");
}

#[tokio::test]
async fn a_full_round_imports_every_user_group_and_membership() {
    let (app, emu) = app_with_tenant(450, 12, 1200).await;
    emu.set_mode(Mode::MembersSlice(40));
    let s = round(&app).await.unwrap();
    assert_eq!(s.kind, "full");
    assert_eq!(s.counters.users_seen, 450);
    assert_eq!(s.counters.users_added, 450);
    assert!(s.counters.memberships_added >= 1200, "{:?}", s.counters);
    assert_matches_truth(&app, &emu).await;
    // Delta links are stored once the round committed.
    let (u, g): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT users_delta_link, groups_delta_link FROM user_sources")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(u.unwrap().contains("deltatoken") && g.unwrap().contains("deltatoken"));
    // Pages show the result.
    let users = app.get_html("/admin/users").await;
    assert!(users.contains("450 users in the directory"));
    let sync = app.get_html("/admin/sync").await;
    assert!(sync.contains("data-status=\"succeeded\""));
    // A second round with no change updates nothing.
    let again = round(&app).await.unwrap();
    assert_eq!(
        (
            again.counters.users_added,
            again.counters.users_updated,
            again.counters.users_not_synced
        ),
        (0, 0, 0)
    );
    assert_eq!(again.counters.memberships_added, 0);
}

#[tokio::test]
async fn users_and_groups_that_disappear_are_marked_not_synced_never_deleted() {
    let (app, emu) = app_with_tenant(60, 4, 120).await;
    round(&app).await.unwrap();
    let truth = emu.truth();
    let (soft, hard, changed) = (
        truth.users[0].id.clone(),
        truth.users[1].id.clone(),
        truth.users[2].id.clone(),
    );
    let group = truth.groups[0].id.clone();
    let (mg, _, mm) = truth
        .memberships
        .iter()
        .find(|(g, _, _)| *g != group)
        .cloned()
        .unwrap();
    emu.mutate(Mutation::SoftDeleteUser(soft.clone()));
    emu.mutate(Mutation::HardDeleteUser(hard.clone()));
    emu.mutate(Mutation::UpdateUser {
        id: changed.clone(),
        patch: serde_json::json!({"department": "Changed Dept", "accountEnabled": false}),
    });
    emu.mutate(Mutation::DeleteGroup(group.clone()));
    emu.mutate(Mutation::RemoveMember {
        group_id: mg.clone(),
        member_id: mm.clone(),
    });
    let s = round(&app).await.unwrap();
    assert_eq!(s.kind, "delta", "later rounds follow the delta links");
    assert_eq!(s.counters.users_not_synced, 2, "{:?}", s.counters);
    assert_eq!(s.counters.groups_not_synced, 1);
    assert_eq!(s.counters.users_updated, 1);
    assert_matches_truth(&app, &emu).await;
    for (id, reason) in [(&soft, "soft-deleted"), (&hard, "Permanently deleted")] {
        let (at, why): (Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT not_synced_at, not_synced_reason FROM directory_users WHERE external_id = $1",
        )
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        let why = why.unwrap_or_default();
        assert!(
            at.is_some() && why.contains(reason),
            "kept and marked: {why}"
        );
    }
    assert_eq!(app.count("directory_users").await, 60, "nothing deleted");
    // A restored user comes back as synced.
    emu.mutate(Mutation::RestoreUser(soft.clone()));
    round(&app).await.unwrap();
    let at: Option<i64> =
        sqlx::query_scalar("SELECT not_synced_at FROM directory_users WHERE external_id = $1")
            .bind(&soft)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(at.is_none());
    assert_matches_truth(&app, &emu).await;
}

#[tokio::test]
async fn retry_after_is_waited_and_5xx_is_retried() {
    let (app, emu) = app_with_tenant(30, 3, 40).await;
    emu.push_fault(FaultRule {
        endpoint: Endpoint::UsersDelta,
        skip: 0,
        times: 1,
        fault: Fault::TooManyRequests {
            retry_after: Some(1),
        },
    });
    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 2,
        fault: Fault::ServiceUnavailable { retry_after: None },
    });
    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 1,
        fault: Fault::GatewayTimeoutHtml,
    });
    round(&app).await.unwrap();
    assert_matches_truth(&app, &emu).await;
    let reqs: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path_and_query.contains("/users/delta"))
        .collect();
    assert_eq!(reqs[0].status, 429);
    assert_eq!(reqs[1].status, 200);
    assert!(
        reqs[1].at.duration_since(reqs[0].at) >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(reqs[1].retry_attempt.as_deref(), Some("1"));
    assert!(
        reqs.iter().all(|r| r.client_request_id.is_some()),
        "client-request-id on every call"
    );
}

#[tokio::test]
async fn an_expired_token_mid_round_is_renewed_once() {
    let (app, emu) = app_with_tenant(30, 3, 40).await;
    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 1,
        fault: Fault::ExpiredToken,
    });
    round(&app).await.unwrap();
    let tokens = emu
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains("/oauth2/v2.0/token"))
        .count();
    assert_eq!(tokens, 2, "one token, then one renewal after the 401");
    assert_matches_truth(&app, &emu).await;
}

#[tokio::test]
async fn a_failed_round_changes_nothing_it_did_not_commit() {
    let (app, emu) = app_with_tenant(40, 3, 60).await;
    round(&app).await.unwrap();
    let links_before: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT users_delta_link, groups_delta_link FROM user_sources")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    // Old links: this round is a full one, so it could mark unseen users if it completed.
    sqlx::query("UPDATE user_sources SET delta_links_at = 0")
        .execute(&app.db.pool)
        .await
        .unwrap();
    emu.mutate(Mutation::HardDeleteUser(emu.truth().users[0].id.clone()));
    // Groups never answer: the round fails after its users pages.
    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 100,
        fault: Fault::ServiceUnavailable { retry_after: None },
    });
    let err = round(&app).await.unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::Graph(roster::sync::graph::GraphError::Unreachable { .. })
        ),
        "{err:?}"
    );
    let not_synced: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NOT NULL")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(not_synced, 0, "an incomplete round marks nobody not synced");
    let links_after: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT users_delta_link, groups_delta_link FROM user_sources")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(links_before, links_after, "delta links untouched");
    let sync = app.get_html("/admin/sync").await;
    assert!(
        sync.contains("data-status=\"failed\"") && sync.contains("unreachable"),
        "the failure is shown"
    );
    emu.clear_faults();
    round(&app).await.unwrap();
    assert_matches_truth(&app, &emu).await;
}

#[tokio::test]
async fn only_one_round_at_a_time_across_instances() {
    let (app, emu) = app_with_tenant(200, 5, 300).await;
    emu.push_fault(FaultRule {
        endpoint: Endpoint::UsersDelta,
        skip: 0,
        times: 1,
        fault: Fault::Hang(Duration::from_millis(1500)),
    });
    let other = roster::sync::SyncContext {
        instance_id: "other-instance".into(),
        ..app.state.sync.clone()
    };
    let cancel = CancellationToken::new();
    let (a, b) = tokio::join!(round(&app), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        round_with(&app, &other, &cancel).await
    });
    assert!(a.is_ok(), "{a:?}");
    assert!(matches!(b, Err(SyncError::Busy)), "{b:?}");
    assert_eq!(app.count("sync_runs").await, 1);
    // A lease left by a dead holder expires and is taken over.
    sqlx::query(
        "INSERT INTO sync_leases (source_id, holder, expires_at) VALUES ('entra', 'dead', $1)",
    )
    .bind(roster::clock::Clock::now_ms(&*app.clock) + 1_000)
    .execute(&app.db.pool)
    .await
    .unwrap();
    assert!(matches!(round(&app).await, Err(SyncError::Busy)));
    app.clock.advance(2_000);
    round(&app).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_round_stops_and_the_next_converges() {
    let (app, emu) = app_with_tenant(300, 4, 200).await;
    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 1,
        fault: Fault::Hang(Duration::from_millis(800)),
    });
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let r = round_with(&app, &app.state.sync, &cancel).await;
    assert!(matches!(r, Err(SyncError::Cancelled)), "{r:?}");
    round(&app).await.unwrap();
    assert_matches_truth(&app, &emu).await;
}

/// "Test connection" on the page, with the emulator answering each way.
#[tokio::test]
async fn test_connection_says_what_happened() {
    let (app, emu) = app_with_tenant(25, 2, 10).await;
    let test = |secret: &str, tenant: &str| {
        let mut f = valid_form(&emu.base_url(), secret);
        for (k, v) in &mut f {
            if k == "action" {
                *v = "test".into();
            }
            if k == "tenant_id" {
                *v = tenant.into();
            }
        }
        f
    };
    let html = post_settings(&app, &test("", TENANT))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-ok=\"true\""), "{html}");
    assert!(html.contains("Read 25 users on the first page"));
    assert!(html.contains("userPrincipalName"));

    let html = post_settings(&app, &test("wrong-secret", TENANT))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("data-ok=\"false\"") && html.contains("AADSTS7000215"),
        "{html}"
    );
    assert!(html.contains("client secret is wrong"));

    let html = post_settings(&app, &test("", "00000000-0000-0000-0000-000000000001"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("AADSTS90002"), "unknown tenant: {html}");

    emu.set_mode(Mode::NoRoles);
    let html = post_settings(&app, &test("", TENANT))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Authorization_RequestDenied") && html.contains("User.Read.All"),
        "{html}"
    );
    emu.set_mode(Mode::Normal);

    emu.pause().await;
    let html = post_settings(&app, &test("", TENANT))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Microsoft Graph is unreachable"), "{html}");
    emu.resume().await.unwrap();
    // Testing saves nothing and never echoes the secret.
    assert!(!html.contains("wrong-secret"));
    assert_eq!(app.count("sync_runs").await, 0);
}

/// The worker picks up "Sync now" by itself.
#[tokio::test]
async fn sync_now_wakes_the_worker() {
    let emu = Emulator::start(emulator_config(40, 3, 50)).await.unwrap();
    let app = crate::helpers::spawn_app_with(roster::startup::Options {
        workers: Some(1),
        start_workers: true,
        ..Default::default()
    })
    .await;
    app.login_as_admin().await;
    let mut form = valid_form(&emu.base_url(), SECRET);
    for (k, v) in &mut form {
        if k == "sync_interval" {
            *v = "1440".into();
        }
    }
    assert_redirect_to(
        &post_settings(&app, &form).await,
        "/admin/azure/entra-user-source",
    );
    // The first round starts on its own (never synced); wait for it, then ask for another.
    wait_for_runs(&app, 1).await;
    let _ = app.post_form("/admin/sync/run", &[]).await;
    wait_for_runs(&app, 2).await;
    assert_matches_truth(&app, &emu).await;
}

async fn wait_for_runs(app: &TestApp, n: i64) {
    for _ in 0..150 {
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sync_runs WHERE status = 'succeeded'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        if done >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the worker did not finish {n} rounds within 15 s");
}

/// 10,000 users and pages holding tens of thousands of membership entries (more values than one SQL
/// statement may bind on SQLite) sync exactly.
#[tokio::test]
async fn a_ten_thousand_user_tenant_syncs_exactly() {
    let (app, emu) = app_with_tenant(10_000, 200, 25_000).await;
    emu.set_mode(Mode::MembersSlice(5_000));
    let s = round(&app).await.unwrap();
    assert_eq!(s.counters.users_added, 10_000);
    assert_matches_truth(&app, &emu).await;
}

#[tokio::test]
async fn the_dashboard_summarises_the_user_source() {
    let app = crate::helpers::spawn_app().await;
    app.login_as_admin().await;
    assert!(app.get_html("/admin").await.contains("No user source yet"));
    let (app, _emu) = app_with_tenant(25, 2, 10).await;
    round(&app).await.unwrap();
    let html = app.get_html("/admin").await;
    assert!(
        html.contains("Contoso") && html.contains("Sync on"),
        "{html}"
    );
    assert!(html.contains(">25</a>") && html.contains("full · succeeded"));
}

/// A round whose lease was taken over (it stalled past the expiry) must not finish over the new holder.
#[tokio::test]
async fn a_round_that_lost_its_lease_does_not_commit_its_end() {
    let (app, emu) = app_with_tenant(60, 2, 10).await;
    round(&app).await.unwrap();
    emu.mutate(Mutation::HardDeleteUser(emu.truth().users[0].id.clone()));
    // Slow groups page; meanwhile the lease is handed to someone else.
    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 1,
        fault: Fault::Hang(Duration::from_millis(1500)),
    });
    let links_before: Option<String> =
        sqlx::query_scalar("SELECT users_delta_link FROM user_sources")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let db = app.db.clone();
    let steal = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sqlx::query("UPDATE sync_leases SET holder = 'someone-else', expires_at = 9000000000000")
            .execute(&db.pool)
            .await
            .unwrap();
    });
    let r = round(&app).await;
    steal.await.unwrap();
    assert!(r.is_err(), "{r:?}");
    let links_after: Option<String> =
        sqlx::query_scalar("SELECT users_delta_link FROM user_sources")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(links_before, links_after, "the links did not advance");
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(active, 60, "its removals were not applied");
}

/// A round's page transactions do not wait for the WAL flush on PostgreSQL (the round's last, normal
/// commit flushes them); other transactions, and SQLite, keep their settings.
#[tokio::test]
async fn page_transactions_relax_the_commit_only_where_it_is_safe() {
    let app = spawn_app().await;
    let mut tx = app.db.begin().await.unwrap();
    roster::db::relax_commit(&mut tx).await.unwrap();
    match app.backend() {
        roster::db::Backend::Postgres => {
            let inside: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert_eq!(inside, "off");
            tx.commit().await.unwrap();
            let after: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
            assert_eq!(after, "on", "SET LOCAL ends with its transaction");
        }
        roster::db::Backend::Sqlite => {
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert_eq!(sync, 1, "NORMAL: WAL commits without a flush already");
            tx.commit().await.unwrap();
        }
    }
}

/// After a full round PostgreSQL has planner statistics for the directory (without them it planned the Users
/// pages as sequential scans); SQLite is left as it is (no `sqlite_stat1`: its planner uses the indexes
/// without statistics).
#[tokio::test]
async fn a_full_round_leaves_the_planner_statistics_fresh() {
    let (app, _emu) = app_with_tenant(120, 4, 300).await;
    let s = round(&app).await.unwrap();
    assert_eq!((s.kind, s.counters.users_added), ("full", 120));
    match app.backend() {
        roster::db::Backend::Postgres => {
            for (table, rows) in [("directory_users", 120.0), ("directory_groups", 4.0)] {
                // A table never analyzed has reltuples = -1 (PostgreSQL ≥ 14); ANALYZE counts it exactly.
                let tuples: f32 =
                    sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = $1")
                        .bind(table)
                        .fetch_one(&app.db.pool)
                        .await
                        .unwrap();
                assert!(
                    (f64::from(tuples) - rows).abs() < 0.5,
                    "{table}: reltuples {tuples}"
                );
            }
        }
        roster::db::Backend::Sqlite => {
            let stats: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_stat1'",
            )
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
            assert_eq!(stats, 0);
        }
    }
}

/// Definitions of the directory's bulk-load indexes as the database reports them (whitespace normalised).
async fn bulk_load_index_defs(app: &TestApp) -> Vec<(String, String)> {
    let sql = match app.backend() {
        roster::db::Backend::Sqlite => "SELECT name, sql FROM sqlite_master WHERE type = 'index'",
        roster::db::Backend::Postgres => {
            "SELECT CAST(indexname AS TEXT), indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        }
    };
    let all: Vec<(String, Option<String>)> =
        sqlx::query_as(sql).fetch_all(&app.db.pool).await.unwrap();
    let mut defs: Vec<(String, String)> = all
        .into_iter()
        .filter(|(name, _)| {
            roster::directory::repo::BULK_LOAD_INDEXES
                .iter()
                .any(|(n, _)| n == name)
        })
        .map(|(name, def)| {
            let def = def.unwrap_or_default();
            (name, def.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect();
    defs.sort();
    defs
}

/// A first import loads without the secondary indexes and builds them at the end exactly as the migrations
/// define them; an index missing after an interrupted import is rebuilt by the next round.
#[tokio::test]
async fn a_first_import_builds_the_directory_indexes_after_loading() {
    let (app, emu) = app_with_tenant(300, 6, 600).await;
    let from_migrations = bulk_load_index_defs(&app).await;
    assert_eq!(
        from_migrations.len(),
        roster::directory::repo::BULK_LOAD_INDEXES.len(),
        "every bulk-load index exists after the migrations: {from_migrations:?}"
    );
    let s = round(&app).await.unwrap();
    assert_eq!((s.kind, s.counters.users_added), ("full", 300));
    assert_eq!(bulk_load_index_defs(&app).await, from_migrations);
    assert_matches_truth(&app, &emu).await;

    // As if a first import had been killed after dropping them: the next round puts them back.
    for name in ["directory_users_upn_id", "group_members_member"] {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&app.db.pool)
            .await
            .unwrap();
    }
    assert_eq!(
        bulk_load_index_defs(&app).await.len(),
        from_migrations.len() - 2
    );
    round(&app).await.unwrap();
    assert_eq!(bulk_load_index_defs(&app).await, from_migrations);
}
