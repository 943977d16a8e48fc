//! Owns the shutdown signal: SIGINT or SIGTERM cancels one shared token.

use tokio_util::sync::CancellationToken;

/// Waits for SIGINT or SIGTERM, logs which one came, and cancels `token`.
pub async fn listen(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "Cannot listen for SIGINT.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "Shutting down."),
        () = term => tracing::info!(signal = "SIGTERM", "Shutting down."),
        () = token.cancelled() => {}
    }
    token.cancel();
}
