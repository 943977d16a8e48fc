//! `/healthz` (the process answers) and `/readyz` (the database answers and is migrated).

use actix_web::{HttpResponse, web};

use crate::web::{AppState, Routes};

pub fn configure(r: &mut Routes<'_>) {
    r.get("/healthz", healthz).get("/readyz", readyz);
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.db.is_ready().await {
        Ok(true) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ready\n"),
        Ok(false) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("not ready: database migrations are pending; run `roster migrate`\n"),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "Readiness check failed.");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("not ready: the database does not answer\n")
        }
    }
}
