//! Delta rounds, their fall-backs to a full round, and the sync notifications.

use graph_emulator::{Endpoint, Fault, FaultRule, Group, MemberKind, Mode, Mutation, User};
use roster::clock::HOUR;

use crate::helpers::TestApp;
use crate::sync::{app_with_tenant, assert_matches_truth, round};

async fn last_run(app: &TestApp) -> (String, String, String) {
    sqlx::query_as(
        "SELECT kind, reason, status FROM sync_runs ORDER BY started_at DESC, id DESC LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

async fn open_notifications(app: &TestApp) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT kind, title, body FROM notifications WHERE resolved_at IS NULL ORDER BY kind",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn delta_rounds_apply_every_kind_of_change() {
    let (app, emu) = app_with_tenant(120, 6, 300).await;
    emu.set_mode(Mode::MembersSlice(7));
    assert_eq!(round(&app).await.unwrap().kind, "full");
    let t = emu.truth();
    let mut newbie = User::new("", "new.person@contoso.example", "New Person");
    newbie.department = Some("Sales".into());
    emu.mutate(Mutation::AddUser(newbie));
    emu.mutate(Mutation::UpdateUser {
        id: t.users[3].id.clone(),
        patch: serde_json::json!({"jobTitle": "Chief Tester", "mail": null, "displayName": "Renamed Tester"}),
    });
    emu.mutate(Mutation::SoftDeleteUser(t.users[4].id.clone()));
    emu.mutate(Mutation::HardDeleteUser(t.users[5].id.clone()));
    emu.mutate(Mutation::AddGroup(Group::new("", "Brand New Group")));
    emu.mutate(Mutation::DeleteGroup(t.groups[0].id.clone()));
    let (g, _, m) = t
        .memberships
        .iter()
        .find(|(g, _, _)| *g != t.groups[0].id)
        .cloned()
        .unwrap();
    emu.mutate(Mutation::RemoveMember {
        group_id: g.clone(),
        member_id: m,
    });
    emu.mutate(Mutation::AddMember {
        group_id: g,
        kind: MemberKind::User,
        member_id: t.users[9].id.clone(),
    });
    emu.mutate(Mutation::AddMember {
        group_id: t.groups[2].id.clone(),
        kind: MemberKind::Group,
        member_id: t.groups[3].id.clone(),
    });
    let s = round(&app).await.unwrap();
    assert_eq!(s.kind, "delta");
    assert!(
        s.counters.users_seen < 10,
        "a delta round reads only changes: {:?}",
        s.counters
    );
    assert_matches_truth(&app, &emu).await;
    // The Users page's search and sort keys follow the change.
    let keys: (String, Option<String>) = sqlx::query_as(
        "SELECT display_name_lower, mail_lower FROM directory_users WHERE external_id = $1",
    )
    .bind(&t.users[3].id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(keys, ("renamed tester".to_owned(), None));
    // Restore and replays converge too.
    emu.mutate(Mutation::RestoreUser(t.users[4].id.clone()));
    emu.set_mode(Mode::ShuffleAndReplay);
    assert_eq!(round(&app).await.unwrap().kind, "delta");
    assert_matches_truth(&app, &emu).await;
    let delta_calls = emu
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains("deltatoken"))
        .count();
    assert!(delta_calls >= 4, "the stored delta links were followed");
}

#[tokio::test]
async fn a_refused_or_old_delta_link_runs_a_full_round_and_says_why() {
    let (app, emu) = app_with_tenant(50, 3, 80).await;
    round(&app).await.unwrap();
    emu.push_fault(FaultRule {
        endpoint: Endpoint::UsersDelta,
        skip: 0,
        times: 1,
        fault: Fault::SyncStateNotFound,
    });
    emu.mutate(Mutation::HardDeleteUser(emu.truth().users[0].id.clone()));
    let s = round(&app).await.unwrap();
    assert_eq!(s.kind, "full");
    let (kind, reason, status) = last_run(&app).await;
    assert_eq!((kind.as_str(), status.as_str()), ("full", "succeeded"));
    assert!(reason.contains("syncStateNotFound"), "{reason}");
    assert_matches_truth(&app, &emu).await;

    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 1,
        fault: Fault::Gone,
    });
    assert_eq!(round(&app).await.unwrap().kind, "full");
    assert!(last_run(&app).await.1.contains("410"));

    assert_eq!(round(&app).await.unwrap().kind, "delta");
    app.clock.advance(6 * 24 * HOUR + 1);
    assert_eq!(round(&app).await.unwrap().kind, "full");
    assert!(last_run(&app).await.1.contains("older than six days"));
    assert_matches_truth(&app, &emu).await;
}

#[tokio::test]
async fn unreachable_and_refused_sign_in_raise_notifications_that_clear() {
    let (app, emu) = app_with_tenant(30, 2, 20).await;
    emu.pause().await;
    assert!(round(&app).await.is_err());
    assert!(round(&app).await.is_err());
    let open = open_notifications(&app).await;
    let unreachable = open
        .iter()
        .find(|(k, _, _)| k == "entra_unreachable")
        .expect("raised");
    assert_eq!(unreachable.1, "Entra ID service is unreachable");
    assert!(unreachable.2.contains("Last error"), "{}", unreachable.2);
    let count: i64 = sqlx::query_scalar(
        "SELECT occurrences FROM notifications WHERE kind = 'entra_unreachable'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(count, 2, "a repeat updates the same notification");
    let page = app.get_html("/admin/notifications").await;
    assert!(page.contains("Entra ID service is unreachable"));
    emu.resume().await.unwrap();
    round(&app).await.unwrap();
    assert!(
        open_notifications(&app)
            .await
            .iter()
            .all(|(k, _, _)| k != "entra_unreachable"),
        "resolved"
    );

    // A wrong secret: the AADSTS code is on the notification.
    let mut form = crate::user_source::valid_form(&emu.base_url(), "a-wrong-secret");
    form.retain(|(k, _)| k != "action");
    form.push(("action".into(), "save".into()));
    let _ = crate::user_source::post_settings(&app, &form).await;
    assert!(round(&app).await.is_err());
    let open = open_notifications(&app).await;
    let auth = open
        .iter()
        .find(|(k, _, _)| k == "entra_auth")
        .expect("raised");
    assert!(auth.1.contains("AADSTS7000215"), "{auth:?}");
    let _ = crate::user_source::post_settings(
        &app,
        &crate::user_source::valid_form(&emu.base_url(), crate::sync::SECRET),
    )
    .await;
    round(&app).await.unwrap();
    assert!(
        open_notifications(&app)
            .await
            .iter()
            .all(|(k, _, _)| k != "entra_auth"),
        "resolved"
    );
}

#[tokio::test]
async fn attributes_that_do_not_come_back_raise_all_or_some() {
    let (app, emu) = app_with_tenant(40, 2, 20).await;
    // Every selected attribute dropped: "All user attributes are not synchronized".
    emu.set_mode(Mode::DropAttributes(
        [
            "mail",
            "givenName",
            "surname",
            "jobTitle",
            "department",
            "onPremisesExtensionAttributes",
            &format!("extension_{}_costCenter", crate::sync::EXT_APP),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    ));
    round(&app).await.unwrap();
    let open = open_notifications(&app).await;
    assert!(
        open.iter()
            .any(|(_, t, _)| t == "All user attributes are not synchronized with Entra ID"),
        "{open:?}"
    );
    // Attributes back (a full round re-reads everyone): "All" clears; custom attributes that only some users
    // have give "Some", with the counts.
    emu.set_mode(Mode::Normal);
    sqlx::query("UPDATE user_sources SET delta_links_at = 0")
        .execute(&app.db.pool)
        .await
        .unwrap();
    round(&app).await.unwrap();
    let open = open_notifications(&app).await;
    assert!(
        open.iter()
            .all(|(_, t, _)| t != "All user attributes are not synchronized with Entra ID")
    );
    let some = open
        .iter()
        .find(|(_, t, _)| t == "Some user attributes are not synchronized with Entra ID")
        .expect("raised");
    assert!(
        some.2.contains("badge:") && some.2.contains("of 40 users have no value"),
        "{}",
        some.2
    );
    // Its link lists exactly the users without the attribute.
    let missing: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL AND custom_attributes NOT LIKE '%\"badge\":%'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let html = app.get_html("/admin/users?missing=badge").await;
    assert_eq!(
        i64::try_from(html.matches("data-test=\"user-row\"").count()).unwrap(),
        missing.min(50)
    );
    assert!(html.contains("data-test=\"missing-filter\""));
}

async fn active_users(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NULL")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn deletion_safety_holds_mass_removals_until_applied() {
    let (app, emu) = app_with_tenant(100, 3, 50).await;
    round(&app).await.unwrap();
    let t = emu.truth();
    for u in &t.users[..30] {
        emu.mutate(Mutation::HardDeleteUser(u.id.clone()));
    }
    emu.mutate(Mutation::UpdateUser {
        id: t.users[50].id.clone(),
        patch: serde_json::json!({"department": "Moved"}),
    });
    let s = round(&app).await.unwrap();
    assert_eq!(s.counters.users_not_synced, 0, "held, not applied");
    assert_eq!(active_users(&app).await, 100);
    let dept: Option<String> =
        sqlx::query_scalar("SELECT department FROM directory_users WHERE external_id = $1")
            .bind(&t.users[50].id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        dept.as_deref(),
        Some("Moved"),
        "the rest of the round applied"
    );
    let open = open_notifications(&app).await;
    let held = open
        .iter()
        .find(|(k, _, _)| k == "entra_removals_held")
        .expect("raised");
    assert_eq!(held.1, "Sync held the removal of 30 users");
    assert!(
        held.2.contains(&t.users[0].user_principal_name) || held.2.contains("Among them"),
        "preview: {}",
        held.2
    );
    let page = app.get_html("/admin/sync").await;
    assert!(page.contains("data-test=\"held-removals\" data-count=\"30\""));

    // A stale page (it showed another number) changes nothing.
    let resp = app
        .post_form("/admin/sync/removals/apply", &[("shown", "25")])
        .await;
    crate::helpers::assert_redirect_to(&resp, "/admin/sync");
    assert_eq!(active_users(&app).await, 100, "a stale decision is refused");
    let resp = app
        .post_form("/admin/sync/removals/apply", &[("shown", "30")])
        .await;
    crate::helpers::assert_redirect_to(&resp, "/admin/sync");
    assert_eq!(active_users(&app).await, 70);
    let why: String =
        sqlx::query_scalar("SELECT not_synced_reason FROM directory_users WHERE external_id = $1")
            .bind(&t.users[0].id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(why.contains("Permanently deleted"), "{why}");
    assert!(
        open_notifications(&app)
            .await
            .iter()
            .all(|(k, _, _)| k != "entra_removals_held"),
        "resolved"
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&"sync.removals_applied".to_owned())
    );
    assert_matches_truth(&app, &emu).await;
}

#[tokio::test]
async fn deletion_safety_discard_keeps_users_and_small_removals_apply_directly() {
    let (app, emu) = app_with_tenant(100, 3, 50).await;
    round(&app).await.unwrap();
    let t = emu.truth();
    // A full round that no longer sees 25 users (e.g. a filter change in Entra ID).
    for u in &t.users[..25] {
        emu.mutate(Mutation::HardDeleteUser(u.id.clone()));
    }
    sqlx::query("UPDATE user_sources SET delta_links_at = 0")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(round(&app).await.unwrap().kind, "full");
    assert_eq!(active_users(&app).await, 100);
    let resp = app
        .post_form("/admin/sync/removals/discard", &[("shown", "25")])
        .await;
    crate::helpers::assert_redirect_to(&resp, "/admin/sync");
    assert_eq!(
        active_users(&app).await,
        100,
        "discarded: the users stay synced"
    );
    assert_eq!(app.count("user_removals").await, 0);
    assert!(
        !app.get_html("/admin/sync")
            .await
            .contains("data-test=\"held-removals\"")
    );

    // Under the threshold (5 of 100): applied at once.
    let mut emu_small = emu.truth().users.clone();
    emu_small.truncate(5);
    for u in &emu_small {
        emu.mutate(Mutation::HardDeleteUser(u.id.clone()));
    }
    let s = round(&app).await.unwrap();
    assert_eq!(s.counters.users_not_synced, 5, "{:?}", s.counters);
    assert_eq!(active_users(&app).await, 95);
}

#[tokio::test]
async fn a_fault_storm_removes_nobody_by_mistake() {
    let (app, emu) = app_with_tenant(400, 6, 500).await;
    round(&app).await.unwrap();
    emu.set_mode(Mode::ShortPages);
    for (endpoint, fault) in [
        // Longer than the test policy's 5 s request timeout.
        (
            Endpoint::GroupsDelta,
            Fault::Hang(std::time::Duration::from_secs(6)),
        ),
        (
            Endpoint::UsersDelta,
            Fault::TooManyRequests { retry_after: None },
        ),
        (
            Endpoint::UsersDelta,
            Fault::ServiceUnavailable { retry_after: None },
        ),
        (Endpoint::GroupsDelta, Fault::MalformedJson),
        (Endpoint::GroupsDelta, Fault::GatewayTimeoutEmpty),
        (Endpoint::UsersDelta, Fault::ResetConnection),
    ] {
        emu.push_fault(FaultRule {
            endpoint,
            skip: 0,
            times: 1,
            fault,
        });
    }
    // A full round through the storm (old links), then a delta round through another.
    sqlx::query("UPDATE user_sources SET delta_links_at = 0")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(round(&app).await.unwrap().counters.users_not_synced, 0);
    emu.push_fault(FaultRule {
        endpoint: Endpoint::GroupsDelta,
        skip: 0,
        times: 2,
        fault: Fault::InternalError,
    });
    assert_eq!(round(&app).await.unwrap().counters.users_not_synced, 0);
    // A storm beyond the retry budget fails the round, still without removals.
    emu.push_fault(FaultRule {
        endpoint: Endpoint::UsersDelta,
        skip: 0,
        times: 20,
        fault: Fault::TooManyRequests { retry_after: None },
    });
    sqlx::query("UPDATE user_sources SET delta_links_at = 0")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert!(round(&app).await.is_err());
    let not_synced: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM directory_users WHERE not_synced_at IS NOT NULL")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(not_synced, 0, "zero false removals");
    let open = open_notifications(&app).await;
    assert!(
        open.iter().any(|(k, _, _)| k == "entra_throttled"),
        "throttling beyond the budget is reported: {open:?}"
    );
    emu.clear_faults();
    round(&app).await.unwrap();
    assert!(
        open_notifications(&app)
            .await
            .iter()
            .all(|(k, _, _)| k != "entra_throttled")
    );
    assert_matches_truth(&app, &emu).await;
}

/// The "done when": 10,000 users stay exact through a scripted series of changes and faults.
#[tokio::test]
async fn ten_thousand_users_stay_exact_through_changes_and_faults() {
    let (app, emu) = app_with_tenant(10_000, 150, 20_000).await;
    round(&app).await.unwrap();
    assert_matches_truth(&app, &emu).await;
    let mut next = 0usize;
    for step in 0..4 {
        let t = emu.truth();
        for i in 0..40 {
            let u = &t.users[(next + i * 97) % t.users.len()];
            match (step + i) % 5 {
                0 => emu.mutate(Mutation::UpdateUser {
                    id: u.id.clone(),
                    patch: serde_json::json!({"jobTitle": format!("Title {step}-{i}")}),
                }),
                1 => emu.mutate(Mutation::SoftDeleteUser(u.id.clone())),
                2 => emu.mutate(Mutation::HardDeleteUser(u.id.clone())),
                3 => emu.mutate(Mutation::AddUser(User::new(
                    "",
                    format!("step{step}.user{i}@contoso.example"),
                    format!("Step {step} User {i}"),
                ))),
                _ => emu.mutate(Mutation::AddMember {
                    group_id: t.groups[i % t.groups.len()].id.clone(),
                    kind: MemberKind::User,
                    member_id: u.id.clone(),
                }),
            }
        }
        for u in &t.soft_deleted_users {
            if next.is_multiple_of(2) {
                emu.mutate(Mutation::RestoreUser(u.clone()));
            }
        }
        next += 13;
        emu.push_fault(FaultRule {
            endpoint: Endpoint::UsersDelta,
            skip: 1,
            times: 1,
            fault: Fault::ServiceUnavailable { retry_after: None },
        });
        emu.push_fault(FaultRule {
            endpoint: Endpoint::GroupsDelta,
            skip: 0,
            times: 1,
            fault: Fault::TooManyRequests { retry_after: None },
        });
        if step == 2 {
            emu.push_fault(FaultRule {
                endpoint: Endpoint::UsersDelta,
                skip: 0,
                times: 1,
                fault: Fault::SyncStateNotFound,
            });
        }
        round(&app).await.unwrap();
        assert_matches_truth(&app, &emu).await;
    }
}

#[tokio::test]
async fn a_dropped_attribute_is_reported_and_clears_when_it_comes_back() {
    let (app, emu) = app_with_tenant(40, 2, 20).await;
    // Built-in attributes only, so nothing is sparse by design.
    let mut form = crate::user_source::valid_form(&emu.base_url(), "");
    form.retain(|(k, _)| k != "attr_name" && k != "attr_property");
    let _ = crate::user_source::post_settings(&app, &form).await;
    round(&app).await.unwrap();
    assert!(open_notifications(&app).await.is_empty());
    emu.set_mode(Mode::DropAttributes(vec!["department".into()]));
    sqlx::query("UPDATE user_sources SET delta_links_at = 0")
        .execute(&app.db.pool)
        .await
        .unwrap();
    round(&app).await.unwrap();
    let open = open_notifications(&app).await;
    let some = open
        .iter()
        .find(|(_, t, _)| t == "Some user attributes are not synchronized with Entra ID")
        .expect("raised");
    assert!(
        some.2.contains("department: 40 of 40 users have no value"),
        "{}",
        some.2
    );
    // Switched off: the next round re-reads everyone (a delta round would not bring the values back).
    emu.set_mode(Mode::Normal);
    assert_eq!(round(&app).await.unwrap().kind, "full");
    assert!(last_run(&app).await.1.contains("re-reading every user"));
    assert!(open_notifications(&app).await.is_empty(), "resolved");
    assert_eq!(
        round(&app).await.unwrap().kind,
        "delta",
        "back to delta rounds"
    );
    // At least one full round a day.
    app.clock.advance(25 * HOUR);
    assert_eq!(round(&app).await.unwrap().kind, "full");
    assert!(last_run(&app).await.1.contains("daily"));
    assert_matches_truth(&app, &emu).await;
}

/// A delta round rewrites only the groups whose properties changed: a group that a group delta returns for its
/// members alone keeps its row (only a full round stamps every group it sees, to find those Entra ID no longer
/// returns), and the next full round still finds every group present.
#[tokio::test]
async fn a_delta_round_rewrites_only_the_groups_that_changed() {
    let (app, emu) = app_with_tenant(40, 4, 60).await;
    let full = round(&app).await.unwrap();
    assert_eq!(full.kind, "full");
    let t = emu.truth();
    let (members_only, renamed) = (t.groups[1].id.clone(), t.groups[2].id.clone());
    let newcomer = t
        .users
        .iter()
        .find(|u| {
            !t.memberships
                .iter()
                .any(|(g, _, m)| *g == members_only && *m == u.id)
        })
        .unwrap()
        .id
        .clone();
    emu.mutate(Mutation::AddMember {
        group_id: members_only.clone(),
        kind: MemberKind::User,
        member_id: newcomer,
    });
    emu.mutate(Mutation::UpdateGroup {
        id: renamed.clone(),
        patch: serde_json::json!({"displayName": "Renamed Group"}),
    });
    let stamp = |id: String| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT last_seen_run FROM directory_groups WHERE external_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    let delta = round(&app).await.unwrap();
    assert_eq!(delta.kind, "delta");
    assert!(
        delta.counters.groups_seen >= 2,
        "both groups come back in the delta: {:?}",
        delta.counters
    );
    assert_eq!(delta.counters.groups_updated, 1, "{:?}", delta.counters);
    assert_eq!(delta.counters.memberships_added, 1, "{:?}", delta.counters);
    assert_eq!(stamp(members_only.clone()).await, Some(full.run_id.clone()));
    assert_eq!(stamp(renamed.clone()).await, Some(delta.run_id.clone()));
    assert_matches_truth(&app, &emu).await;

    sqlx::query("UPDATE user_sources SET users_delta_link = NULL, groups_delta_link = NULL")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let again = round(&app).await.unwrap();
    assert_eq!(again.kind, "full");
    assert_eq!(again.counters.groups_not_synced, 0, "{:?}", again.counters);
    assert_eq!(stamp(members_only).await, Some(again.run_id.clone()));
    assert_eq!(stamp(renamed).await, Some(again.run_id));
    assert_matches_truth(&app, &emu).await;
}
