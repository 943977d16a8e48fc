//! The sync worker: wakes on its tick or on "Sync now", runs a round when the source is due.

use tokio_util::sync::CancellationToken;

use crate::settings::model::ENTRA_SOURCE_ID;
use crate::settings::repo as settings_repo;
use crate::sync::repo;
use crate::sync::service::{RoundDeps, SyncError, Trigger, is_due, run_round};
use crate::web::AppState;

/// Looks once for due work and runs it. Returns whether a round ran.
pub async fn run_once(state: &AppState, cancel: &CancellationToken) -> anyhow::Result<bool> {
    let Some(source) = settings_repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await? else {
        return Ok(false);
    };
    let now = state.clock.now_ms();
    let last = repo::list_runs(&state.db.pool, &source.id, 1).await?;
    if !is_due(
        &source.settings,
        source.sync_requested_at,
        last.first().map(|r| r.started_at),
        now,
    ) {
        return Ok(false);
    }
    let trigger = if source.sync_requested_at.is_some() {
        Trigger::Manual
    } else {
        Trigger::Schedule
    };
    let deps = RoundDeps {
        db: &state.db,
        clock: &state.clock,
        master_key: &state.master_key,
        sync: &state.sync,
        cancel,
        base_url: &state.base_url,
    };
    match run_round(&deps, trigger).await {
        Ok(_) => Ok(true),
        // Another instance runs it; nothing to do here.
        Err(SyncError::Busy) => Ok(false),
        // Recorded on the round and shown on the sync page.
        Err(e) => {
            tracing::warn!(error = %e, "Sync round did not complete.");
            Ok(true)
        }
    }
}

/// The loop started with the server: tick or wake-up → `run_once`, until cancelled.
pub async fn run(state: AppState, cancel: CancellationToken) {
    tracing::info!(
        tick_ms = state.sync.tick.as_millis() as u64,
        "Sync worker started."
    );
    loop {
        if let Err(e) = run_once(&state, &cancel).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "Sync worker check failed; will retry."
            );
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = state.sync.wake.notified() => {}
            () = tokio::time::sleep(state.sync.tick) => {}
        }
    }
    tracing::info!("Sync worker stopped.");
}
