//! Users and Groups pages: search, filters, sorting and keyset pages against a computed truth; local accounts;
//! username clashes; Managed Apple ID conflicts; CSV export; detail pages.

use std::collections::BTreeMap;

use graph_emulator::{MemberKind, Mutation};

use crate::helpers::{TestApp, assert_redirect_to};
use crate::sync::{app_with_tenant, round};

/// Every `data-upn` on the pages of `path`, following "Next page" links to the end.
async fn all_pages(app: &TestApp, path: &str) -> Vec<String> {
    let mut upns = Vec::new();
    let mut next = Some(path.to_owned());
    let mut pages = 0;
    while let Some(p) = next {
        let html = app.get_html(&p).await;
        for chunk in html.split("data-upn=\"").skip(1) {
            upns.push(chunk[..chunk.find('"').unwrap()].replace("&#39;", "'"));
        }
        next = html
            .split("data-test=\"next-page\"")
            .next()
            .filter(|_| html.contains("data-test=\"next-page\""))
            .and_then(|h| h.rsplit("href=\"").next())
            .map(|h| {
                h[..h.find('"').unwrap()]
                    .replace("&amp;", "&")
                    .replace("&#38;", "&")
            });
        pages += 1;
        assert!(pages < 100, "paging does not end: {next:?}");
    }
    upns
}

#[derive(Debug, Clone)]
struct Row {
    upn: String,
    name_lower: String,
    mail_lower: Option<String>,
    source: String,
    enabled: bool,
    not_synced: bool,
    custom: BTreeMap<String, String>,
    apple: Option<String>,
    changed: i64,
    id: String,
}

async fn truth_rows(app: &TestApp) -> Vec<Row> {
    type R = (
        String,
        String,
        Option<String>,
        String,
        i64,
        Option<i64>,
        String,
        Option<String>,
        i64,
        String,
    );
    let rows: Vec<R> = sqlx::query_as(
        "SELECT upn, display_name, mail, source, account_enabled, not_synced_at, custom_attributes, managed_apple_id, \
         last_changed_at, id FROM directory_users WHERE deleted_at IS NULL",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| Row {
            upn: r.0,
            name_lower: r.1.to_lowercase(),
            mail_lower: r.2.map(|m| m.to_lowercase()),
            source: r.3,
            enabled: r.4 != 0,
            not_synced: r.5.is_some(),
            custom: serde_json::from_str(&r.6).unwrap(),
            apple: r.7,
            changed: r.8,
            id: r.9,
        })
        .collect()
}

fn sorted_upns(mut rows: Vec<Row>, sort: &str, desc: bool) -> Vec<String> {
    rows.sort_by(|a, b| {
        let k = match sort {
            "name" => a.name_lower.cmp(&b.name_lower),
            "changed" => a.changed.cmp(&b.changed),
            _ => a.upn.to_lowercase().cmp(&b.upn.to_lowercase()),
        };
        k.then_with(|| a.id.cmp(&b.id))
    });
    if desc {
        rows.reverse();
    }
    rows.into_iter().map(|r| r.upn).collect()
}

async fn make_local(app: &TestApp, upn: &str, mail: &str, badge: &str) -> reqwest::Response {
    app.post_form(
        "/admin/users/new",
        &[
            ("upn", upn),
            ("mail", mail),
            ("given_name", "Loca"),
            ("surname", "Lee"),
            ("display_name", ""),
            ("attr_badge", badge),
        ],
    )
    .await
}

#[tokio::test]
async fn search_filters_sorts_and_pages_match_the_truth() {
    let (app, emu) = app_with_tenant(260, 5, 300).await;
    round(&app).await.unwrap();
    let t = emu.truth();
    // Some variety: disabled and removed users, local users (one sharing an Entra user's mail → same Apple ID).
    emu.mutate(Mutation::UpdateUser {
        id: t.users[1].id.clone(),
        patch: serde_json::json!({"accountEnabled": false}),
    });
    emu.mutate(Mutation::HardDeleteUser(t.users[2].id.clone()));
    round(&app).await.unwrap();
    let shared_mail = t.users.iter().find_map(|u| u.mail.clone()).unwrap();
    assert_eq!(
        make_local(&app, "local.one@corp.example", &shared_mail, "L1")
            .await
            .status()
            .as_u16(),
        303
    );
    let _ = make_local(&app, "local.two@corp.example", "", "").await;
    let rows = truth_rows(&app).await;
    assert_eq!(rows.len(), 262);

    let prefix = rows[17].name_lower[..3].to_owned();
    let mail_prefix = t.users[5].mail.clone().unwrap_or_default().to_lowercase()[..6].to_owned();
    type Filter = Box<dyn Fn(&Row) -> bool>;
    let cases: Vec<(String, Filter)> = vec![
        (String::new(), Box::new(|_| true)),
        (format!("q={}", prefix.to_uppercase()), {
            let p = prefix.clone();
            Box::new(move |r: &Row| {
                r.upn.to_lowercase().starts_with(&p)
                    || r.name_lower.starts_with(&p)
                    || r.mail_lower.as_deref().is_some_and(|m| m.starts_with(&p))
            })
        }),
        (format!("q={mail_prefix}"), {
            let p = mail_prefix.clone();
            Box::new(move |r: &Row| {
                r.upn.to_lowercase().starts_with(&p)
                    || r.name_lower.starts_with(&p)
                    || r.mail_lower.as_deref().is_some_and(|m| m.starts_with(&p))
            })
        }),
        (
            "source=local".into(),
            Box::new(|r: &Row| r.source == "local"),
        ),
        (
            "source=entra".into(),
            Box::new(|r: &Row| r.source == "entra"),
        ),
        (
            "status=active".into(),
            Box::new(|r: &Row| !r.not_synced && r.enabled),
        ),
        (
            "status=disabled".into(),
            Box::new(|r: &Row| !r.not_synced && !r.enabled),
        ),
        ("status=not_synced".into(), Box::new(|r: &Row| r.not_synced)),
        (
            "missing=badge".into(),
            Box::new(|r: &Row| !r.not_synced && !r.custom.contains_key("badge")),
        ),
        ("apple_conflict=1".into(), {
            let live: Vec<Row> = rows.iter().filter(|r| !r.not_synced).cloned().collect();
            Box::new(move |r: &Row| {
                !r.not_synced
                    && r.apple.is_some()
                    && live.iter().filter(|o| o.apple == r.apple).count() > 1
            })
        }),
    ];
    for (filter, keep) in &cases {
        for (sort, desc) in [
            ("upn", false),
            ("name", false),
            ("name", true),
            ("changed", true),
        ] {
            let path = format!(
                "/admin/users?{filter}&sort={sort}&dir={}",
                if desc { "desc" } else { "asc" }
            );
            let got = all_pages(&app, &path).await;
            let want = sorted_upns(
                rows.iter().filter(|r| keep(r)).cloned().collect(),
                sort,
                desc,
            );
            assert_eq!(got, want, "{path}");
        }
    }
    // The apple-conflict filter really found the pair.
    assert_eq!(
        all_pages(&app, "/admin/users?apple_conflict=1").await.len(),
        2
    );
    // The next round reports the conflict.
    round(&app).await.unwrap();
    let title: String = sqlx::query_scalar(
        "SELECT title FROM notifications WHERE kind = 'apple_id_conflict' AND resolved_at IS NULL",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(title, "2 users share a Managed Apple ID with another user");
}

#[tokio::test]
async fn local_accounts_lifecycle() {
    let (app, emu) = app_with_tenant(20, 2, 10).await;
    round(&app).await.unwrap();
    let entra_upn = emu.truth().users[0].user_principal_name.clone();
    // Validation at the fields, input kept.
    let resp = make_local(&app, "bad name", "not-mail", "").await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.unwrap();
    assert!(html.contains("data-test=\"error-upn\"") && html.contains("data-test=\"error-mail\""));
    assert!(html.contains("value=\"bad name\""));
    // A username of an Entra user (any case) is refused.
    let resp = make_local(&app, &entra_upn.to_uppercase(), "", "").await;
    assert_eq!(resp.status().as_u16(), 422);
    assert!(resp.text().await.unwrap().contains("already used"));
    // Create. The Users page's total (memoised for busy pages) counts the new account at once.
    assert!(
        app.get_html("/admin/users")
            .await
            .contains("20 users in the directory")
    );
    let resp = make_local(&app, "kim.local@corp.example", "kim@corp.example", "B-7").await;
    assert_eq!(resp.status().as_u16(), 303);
    assert!(
        app.get_html("/admin/users")
            .await
            .contains("21 users in the directory")
    );
    let location = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let page = app.get_html(&location).await;
    assert!(
        page.contains("Loca Lee")
            && page.contains("B-7")
            && page.contains("kim@appleid.corp.example"),
        "{page}"
    );
    let id = location.rsplit('/').next().unwrap().to_owned();
    // Edit.
    let resp = app
        .post_form(
            &format!("/admin/users/{id}/edit"),
            &[
                ("upn", "kim.local@corp.example"),
                ("mail", "kim@corp.example"),
                ("given_name", "Kim"),
                ("surname", "Local"),
                ("display_name", "Kim L."),
                ("attr_badge", "B-8"),
            ],
        )
        .await;
    assert_redirect_to(&resp, &location);
    assert!(app.get_html(&location).await.contains("Kim L."));
    // Disable and enable.
    let _ = app
        .post_form(&format!("/admin/users/{id}/disable"), &[])
        .await;
    assert!(app.get_html(&location).await.contains(">Disabled<"));
    let _ = app
        .post_form(&format!("/admin/users/{id}/enable"), &[])
        .await;
    assert!(app.get_html(&location).await.contains(">Active<"));
    // Delete asks first, then is soft.
    assert!(
        app.get_html(&format!("/admin/users/{id}/delete"))
            .await
            .contains("data-test=\"confirm-delete\"")
    );
    assert_redirect_to(
        &app.post_form(&format!("/admin/users/{id}/delete"), &[])
            .await,
        "/admin/users",
    );
    assert_eq!(app.get(&location).await.status().as_u16(), 404);
    let deleted: Option<i64> =
        sqlx::query_scalar("SELECT deleted_at FROM directory_users WHERE id = $1")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(deleted.is_some(), "the row is kept, marked deleted");
    let actions = app.audit_actions().await;
    for a in [
        "user.local_created",
        "user.local_updated",
        "user.local_disabled",
        "user.local_enabled",
        "user.local_deleted",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a}");
    }
    // The username is free again.
    assert_eq!(
        make_local(&app, "kim.local@corp.example", "", "")
            .await
            .status()
            .as_u16(),
        303
    );
    // Entra users cannot be edited here.
    let entra_id: String =
        sqlx::query_scalar("SELECT id FROM directory_users WHERE source = 'entra' LIMIT 1")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        app.get(&format!("/admin/users/{entra_id}/edit"))
            .await
            .status()
            .as_u16(),
        403
    );
}

#[tokio::test]
async fn a_synced_user_clashing_with_a_local_account_is_skipped_and_reported() {
    let (app, emu) = app_with_tenant(30, 2, 10).await;
    let victim = emu.truth().users[3].user_principal_name.clone();
    assert_eq!(
        make_local(&app, &victim, "", "").await.status().as_u16(),
        303
    );
    let s = round(&app).await.unwrap();
    assert_eq!(
        s.counters.users_added, 29,
        "the clashing user was skipped, the round went on"
    );
    let title: String = sqlx::query_scalar(
        "SELECT title FROM notifications WHERE kind = 'entra_upn_clash' AND resolved_at IS NULL",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(title, "1 Entra ID users clash with local accounts");
    // Delete the local account: the next round (a full one) imports the Entra user and clears the notification.
    let id: String = sqlx::query_scalar("SELECT id FROM directory_users WHERE source = 'local'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let _ = app
        .post_form(&format!("/admin/users/{id}/delete"), &[])
        .await;
    let s = round(&app).await.unwrap();
    assert_eq!(s.kind, "full");
    crate::sync::assert_matches_truth(&app, &emu).await;
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications WHERE kind = 'entra_upn_clash' AND resolved_at IS NULL",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(open, 0);
}

#[tokio::test]
async fn csv_export_streams_the_filtered_set() {
    let (app, _emu) = app_with_tenant(1200, 3, 20).await;
    round(&app).await.unwrap();
    let resp = app.get("/admin/users.csv?source=entra&sort=name").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let body = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[2], "userPrincipalName");
    assert!(headers.iter().any(|h| h == "badge") && headers.iter().any(|h| h == "costCenter"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1200, "more than one export batch");
    let names: Vec<String> = records.iter().map(|r| r[3].to_lowercase()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "in the page's order");
    let rows = truth_rows(&app).await;
    let by_upn: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.upn.as_str(), r)).collect();
    for r in &records {
        let t = by_upn[&r[2]];
        assert_eq!(r[0].to_string(), t.id);
        assert_eq!(
            r[12].to_string(),
            t.custom.get("badge").cloned().unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn detail_pages_show_groups_nested_and_members_paged() {
    let (app, emu) = app_with_tenant(150, 4, 10).await;
    let t = emu.truth();
    let (outer, inner) = (t.groups[0].id.clone(), t.groups[1].id.clone());
    emu.mutate(Mutation::AddMember {
        group_id: outer.clone(),
        kind: MemberKind::Group,
        member_id: inner.clone(),
    });
    for u in &t.users[..120] {
        emu.mutate(Mutation::AddMember {
            group_id: inner.clone(),
            kind: MemberKind::User,
            member_id: u.id.clone(),
        });
    }
    round(&app).await.unwrap();
    let uid: String = sqlx::query_scalar("SELECT id FROM directory_users WHERE external_id = $1")
        .bind(&t.users[0].id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let page = app.get_html(&format!("/admin/users/{uid}")).await;
    let outer_name = &t.groups[0].display_name;
    let inner_name = &t.groups[1].display_name;
    assert!(
        page.contains(&format!("{inner_name}</a> <span class=\"muted\">direct")),
        "{page}"
    );
    assert!(page.contains(&format!(
        "{outer_name}</a> <span class=\"muted\">through a nested group"
    )));
    assert!(page.contains("${badge}") && page.contains("${costCenter}"));
    let gid: String = sqlx::query_scalar("SELECT id FROM directory_groups WHERE external_id = $1")
        .bind(&inner)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let mut seen = 0;
    let mut next = Some(format!("/admin/groups/{gid}"));
    while let Some(p) = next {
        let html = app.get_html(&p).await;
        seen += html.matches("data-test=\"member-row\"").count();
        next = html.contains("data-test=\"next-page\"").then(|| {
            html.split("data-test=\"next-page\"")
                .next()
                .unwrap()
                .rsplit("href=\"")
                .next()
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&")
                .replace("&#38;", "&")
        });
    }
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM group_members WHERE group_external_id = $1")
            .bind(&inner)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(i64::try_from(seen).unwrap(), count);
    assert!(count > 120, "members over several pages");
}

#[tokio::test]
async fn simultaneous_creations_of_one_username_leave_one_account() {
    let app = crate::helpers::spawn_app().await;
    let meta = roster::web::RequestMeta {
        ip: "127.0.0.1".into(),
        request_id: None,
    };
    let form = roster::directory::service::LocalUserForm {
        upn: "twin@corp.example".into(),
        ..Default::default()
    };
    let now = roster::clock::Clock::now_ms(&*app.clock);
    let tries = (0..6).map(|_| {
        let (db, meta, form) = (app.db.clone(), meta.clone(), form.clone());
        async move {
            roster::directory::service::create(
                &db,
                now,
                &form,
                roster::audit::event::Actor::System,
                &meta,
            )
            .await
        }
    });
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(roster::directory::service::SaveError::Invalid(_))))
    );
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE upn_lower = 'twin@corp.example'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn csv_cells_that_look_like_formulas_are_defused() {
    let (app, emu) = app_with_tenant(5, 1, 2).await;
    let id = emu.truth().users[0].id.clone();
    emu.mutate(Mutation::UpdateUser {
        id,
        patch: serde_json::json!({"department": "=HYPERLINK(\"http://x/\",\"x\")", "jobTitle": "+1 555"}),
    });
    round(&app).await.unwrap();
    let body = app.get("/admin/users.csv").await.text().await.unwrap();
    assert!(
        body.contains("'=HYPERLINK") && body.contains("'+1 555"),
        "{body}"
    );
    assert!(!body.contains(",=HYPERLINK") && !body.contains(",\"=HYPERLINK"));
}

#[tokio::test]
async fn groups_search_and_page_non_ascii_names_like_any_other() {
    let (app, emu) = app_with_tenant(10, 0, 0).await;
    let names: Vec<String> = (0..40)
        .map(|i| format!("Team {i:02}"))
        .chain(
            [
                "Ärzte",
                "Öffentlichkeit",
                "Übersetzer",
                "Zoo",
                "ärztliche Leitung",
            ]
            .map(str::to_owned),
        )
        .chain((0..20).map(|i| format!("Ärzte Station {i:02}")))
        .collect();
    for n in &names {
        emu.mutate(Mutation::AddGroup(graph_emulator::Group::new(
            "",
            n.clone(),
        )));
    }
    round(&app).await.unwrap();
    let mut seen = Vec::new();
    let mut next = Some("/admin/groups".to_owned());
    while let Some(p) = next {
        let html = app.get_html(&p).await;
        for chunk in html.split("data-test=\"group-row\"><td><a href=\"").skip(1) {
            let name = chunk
                .split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_owned();
            seen.push(name);
        }
        next = html.contains("data-test=\"next-page\"").then(|| {
            html.split("data-test=\"next-page\"")
                .next()
                .unwrap()
                .rsplit("href=\"")
                .next()
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&")
                .replace("&#38;", "&")
        });
    }
    let mut want = names.clone();
    want.sort_by_key(|n| n.to_lowercase());
    assert_eq!(
        seen, want,
        "every group exactly once, in lower-cased byte order"
    );
    let html = app.get_html("/admin/groups?q=%C3%A4RZ").await;
    assert_eq!(
        html.matches("data-test=\"group-row\"").count(),
        22,
        "'äRZ' finds Ärzte…, ärztliche…"
    );
}
