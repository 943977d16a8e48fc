//! Health, readiness, metrics, security headers and static files.

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let h = app.get("/healthz").await;
    assert_eq!(h.status().as_u16(), 200);
    let r = app.get("/readyz").await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");
    // Forget the newest migration: the database is no longer "migrated".
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await.unwrap().contains("migrations are pending"));
    // A closed pool: the database does not answer.
    app.db.pool.close().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        app.get("/healthz").await.status().as_u16(),
        200,
        "liveness does not depend on the database"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    let _ = app.get("/login").await;
    let _ = app.get("/login").await;
    let _ = app.get("/no/such/page").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            "roster_http_requests_total{endpoint=\"/login\",method=\"GET\",status=\"200\"} 2"
        ),
        "{text}"
    );
    assert!(text.contains("roster_http_requests_duration_seconds_bucket"));
    assert!(
        text.contains("endpoint=\"UNKNOWN\""),
        "unmatched paths are masked, not one series each"
    );
}

#[tokio::test]
async fn security_headers_on_every_kind_of_response() {
    let app = spawn_app().await;
    let html = app.get_html("/login").await;
    let css = html
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    for path in [
        "/login",
        "/admin",
        "/no/such/page",
        "/healthz",
        css.as_str(),
    ] {
        let resp = app.get(path).await;
        let h = resp.headers();
        let csp = h
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("CSP on {path}"))
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{path}");
        assert_eq!(
            h.get("x-content-type-options").unwrap(),
            "nosniff",
            "{path}"
        );
        assert!(h.get("referrer-policy").is_some(), "{path}");
    }
    // Pages use no inline script or style, which the CSP would block.
    assert!(!html.contains("<script>") && !html.contains("style=\""));
}

#[tokio::test]
async fn static_files_are_hashed_and_cached_long() {
    let app = spawn_app().await;
    let html = app.get_html("/login").await;
    let css = html
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        css.starts_with("/static/css/roster-") && css.ends_with(".css"),
        "{css}"
    );
    let resp = app.get(&css).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(
        resp.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(
        app.get("/static/css/roster-0000000000.css")
            .await
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        app.get("/static/../Cargo.toml").await.status().as_u16(),
        404
    );
}

#[tokio::test]
async fn unknown_pages_get_a_friendly_404() {
    let app = spawn_app().await;
    let resp = app.get("/nowhere").await;
    assert_eq!(resp.status().as_u16(), 404);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("data-test=\"error-page\"")
    );
}
