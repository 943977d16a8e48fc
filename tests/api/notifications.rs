//! The Notifications page and header badge: one entry per problem, repeats counted, resolution shown.

use roster::clock::{Clock, MINUTE};
use roster::notifications::{NewNotification, Severity, repo};
use serde_json::json;

use crate::helpers::spawn_app;

fn unreachable(body: &str) -> NewNotification {
    NewNotification {
        kind: "entra_unreachable",
        dedup_key: "entra_unreachable:source-1".into(),
        severity: Severity::Error,
        title: "Entra ID service is unreachable".into(),
        body: body.into(),
        action_text: "Check the network path to Microsoft Graph.".into(),
        action_href: Some("/admin/audit".into()),
        details: json!({ "last_error": body }),
        run_id: None,
    }
}

fn badge(html: &str) -> String {
    let marker = "data-test=\"notifications-badge\" data-count=\"";
    let at = html.find(marker).unwrap() + marker.len();
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn repeats_update_one_entry_and_resolution_clears_the_badge() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let empty = app.get_html("/admin/notifications").await;
    assert!(empty.contains("data-test=\"empty-state\""));
    assert_eq!(badge(&empty), "0");

    let t0 = app.clock.now_ms();
    repo::raise(&app.db.pool, &unreachable("connection refused"), t0)
        .await
        .unwrap();
    repo::raise(&app.db.pool, &unreachable("<b>timed out</b>"), t0 + MINUTE)
        .await
        .unwrap();
    assert_eq!(
        app.count("notifications").await,
        1,
        "a repeat updates the same entry"
    );

    let html = app.get_html("/admin/notifications").await;
    assert_eq!(badge(&html), "1");
    assert_eq!(html.matches("data-test=\"notification\"").count(), 1);
    assert!(html.contains("Entra ID service is unreachable"));
    assert!(html.contains("Happened 2 times"));
    assert!(html.contains("What to do:"));
    assert!(
        html.contains("&lt;b&gt;timed out&lt;/b&gt;") || html.contains("&#60;b&#62;"),
        "body is escaped"
    );
    assert!(!html.contains("data-test=\"empty-state\""));
    assert_eq!(
        badge(&app.get_html("/admin").await),
        "1",
        "the badge is on every admin page"
    );

    assert!(
        repo::resolve(&app.db.pool, "entra_unreachable:source-1", t0 + 2 * MINUTE)
            .await
            .unwrap()
    );
    assert!(
        !repo::resolve(&app.db.pool, "entra_unreachable:source-1", t0 + 3 * MINUTE)
            .await
            .unwrap()
    );
    let html = app.get_html("/admin/notifications").await;
    assert_eq!(badge(&html), "0");
    assert!(html.contains("data-test=\"empty-state\""), "open is empty");
    let resolved = app.get_html("/admin/notifications?status=resolved").await;
    assert_eq!(
        resolved.matches("data-test=\"notification\"").count(),
        1,
        "resolved ones stay readable"
    );
    assert!(resolved.contains("Resolved 20"));

    // The problem comes back: the same entry reopens.
    repo::raise(
        &app.db.pool,
        &unreachable("connection refused"),
        t0 + 4 * MINUTE,
    )
    .await
    .unwrap();
    assert_eq!(repo::count_open(&app.db.pool).await.unwrap(), 1);
    assert_eq!(app.count("notifications").await, 1);
}

#[tokio::test]
async fn mark_read_filters_and_the_unread_badge() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let now = app.clock.now_ms();
    repo::raise(&app.db.pool, &unreachable("refused"), now)
        .await
        .unwrap();
    let mut warn = unreachable("slow");
    warn.kind = "entra_throttled";
    warn.dedup_key = "entra_throttled:x".into();
    warn.severity = Severity::Warning;
    warn.run_id = Some("run-123".into());
    repo::raise(&app.db.pool, &warn, now).await.unwrap();

    let html = app.get_html("/admin/notifications").await;
    assert_eq!(badge(&html), "2");
    assert!(
        html.contains("href=\"/admin/sync#run-run-123\""),
        "links to the round that raised it"
    );
    let only_warnings = app.get_html("/admin/notifications?severity=warning").await;
    assert_eq!(
        only_warnings.matches("data-test=\"notification\"").count(),
        1
    );
    assert!(only_warnings.contains("data-kind=\"entra_throttled\""));

    let id: String =
        sqlx::query_scalar("SELECT id FROM notifications WHERE kind = 'entra_throttled'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let resp = app
        .post_form(&format!("/admin/notifications/{id}/read"), &[])
        .await;
    crate::helpers::assert_redirect_to(&resp, "/admin/notifications");
    assert_eq!(
        badge(&app.get_html("/admin").await),
        "1",
        "read ones leave the badge"
    );
    // A repeat of a read problem is news again.
    repo::raise(&app.db.pool, &warn, now + MINUTE)
        .await
        .unwrap();
    assert_eq!(badge(&app.get_html("/admin").await), "2");
    let resp = app.post_form("/admin/notifications/read-all", &[]).await;
    crate::helpers::assert_redirect_to(&resp, "/admin/notifications");
    let html = app.get_html("/admin/notifications").await;
    assert_eq!(badge(&html), "0");
    assert_eq!(
        html.matches("data-test=\"notification\"").count(),
        2,
        "still open, just read"
    );
}
