//! The identity worker: IdP metadata refresh (every 24 hours per IdP), certificate expiry warnings, and
//! clean-up of expired sign-ins and replay-cache entries. Runs once at start, then every
//! `housekeeping_every`.

use tokio_util::sync::CancellationToken;

use crate::web::AppState;

pub async fn run(state: AppState, cancel: CancellationToken) {
    loop {
        let now = state.clock.now_ms();
        if let Err(e) =
            crate::identity::service::housekeeping(&state.db, &state.identity, now).await
        {
            tracing::warn!(
                error = format!("{e:#}"),
                "Identity housekeeping failed; it runs again later."
            );
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(state.identity.housekeeping_every) => {}
        }
    }
}
