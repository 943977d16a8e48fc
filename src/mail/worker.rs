//! The outbox worker: wakes on its tick or on `MailContext::wake`, claims due mail with a lease, sends it,
//! and records the outcome (sent, retry with backoff, or failed after the retry window). It also raises
//! and resolves the "Invitation mail is failing" notification.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::Millis;
use crate::db::Db;
use crate::mail::MailContext;
use crate::mail::repo::{self, OutboxRow};
use crate::mail::transport::{self, SendError, Transport};
use crate::notifications::{NewNotification, Severity, repo as notes};
use crate::web::AppState;

/// Dedup key (and kind) of the failing-mail notification.
pub const MAIL_FAILING: &str = "mail_failing";

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub claimed: usize,
    pub sent: usize,
    pub failed_attempts: usize,
    pub given_up: usize,
}

/// Claims one batch of due mail and works through it. Does nothing while SMTP is not configured (mail
/// waits queued). Tests call this directly.
pub async fn run_once(state: &AppState, cancel: &CancellationToken) -> anyhow::Result<PassReport> {
    let db = &state.db;
    let ctx = &state.mail;
    let Some(stored) = repo::find_settings(&db.pool).await? else {
        ctx.smtp.close().await;
        return Ok(PassReport::default());
    };
    let password = match stored.password_sealed.as_deref() {
        None => None,
        Some(sealed) => match state.master_key.open(sealed) {
            Ok(p) => Some(p),
            Err(e) => {
                // Nothing is claimed: the mail waits until the password is entered again.
                tracing::warn!(
                    error = format!("{e:#}"),
                    "Cannot open the stored SMTP password; save it again on the Mail page."
                );
                return Ok(PassReport::default());
            }
        },
    };
    let settings = stored.settings;
    let now = state.clock.now_ms();
    let rows = repo::claim_due(
        &db.pool,
        &ctx.instance_id,
        now,
        now + ctx.lease_ms,
        ctx.batch_size,
    )
    .await?;
    let mut report = PassReport {
        claimed: rows.len(),
        ..PassReport::default()
    };
    if rows.is_empty() {
        ctx.smtp.close_expired();
        return Ok(report);
    }
    // The first mail goes alone: when the server is away, it fails once and the rest of the batch waits
    // instead of every lane failing.
    let Some((first, rest)) = rows.split_first() else {
        return Ok(report);
    };
    let lanes = ctx.concurrency.clamp(1, rest.len().max(1));
    // Kept across passes: up to `concurrency` connections stay open for the next batch.
    let transport = ctx.smtp.get(
        &settings,
        password.as_ref(),
        ctx.smtp_timeout,
        ctx.concurrency.max(1),
    );
    // Whether a success must reset the failure count: once per pass (failures may have come from an
    // earlier pass or another instance) and again after each failure in it, rather than a write per mail.
    let reset = AtomicBool::new(true);
    let (r0, away_until) =
        send_lane(state, cancel, &settings, &transport, &reset, vec![first]).await?;
    report.sent += r0.sent;
    report.failed_attempts += r0.failed_attempts;
    report.given_up += r0.given_up;
    if let Some(at) = away_until {
        postpone_all(db, ctx, rest.iter(), at).await;
        return Ok(report);
    }
    // The rest is dealt over `lanes` lanes that send at once, each on its own connection and each in
    // order; a lane that meets a connection failure gives its untried rest back.
    let mut dealt: Vec<Vec<&OutboxRow>> = vec![Vec::new(); lanes];
    for (i, row) in rest.iter().enumerate() {
        dealt[i % lanes].push(row);
    }
    let reports = futures_util::future::try_join_all(
        dealt
            .into_iter()
            .map(|lane| send_lane(state, cancel, &settings, &transport, &reset, lane)),
    )
    .await?;
    for (r, _) in reports {
        report.sent += r.sent;
        report.failed_attempts += r.failed_attempts;
        report.given_up += r.given_up;
    }
    Ok(report)
}

/// Sends one lane of a batch, in order. Returns, besides the counts, when the server was found away (the
/// lane's untried rest is given back, due then).
async fn send_lane(
    state: &AppState,
    cancel: &CancellationToken,
    settings: &crate::mail::model::SmtpSettings,
    transport: &Result<Arc<Transport>, SendError>,
    reset: &AtomicBool,
    lane: Vec<&OutboxRow>,
) -> anyhow::Result<(PassReport, Option<Millis>)> {
    let db = &state.db;
    let ctx = &state.mail;
    let mut report = PassReport::default();
    let mut iter = lane.into_iter();
    while let Some(row) = iter.next() {
        if cancel.is_cancelled() {
            // Leave the rest to the lease's expiry or to the next start.
            postpone_all(
                db,
                ctx,
                std::iter::once(row).chain(iter),
                state.clock.now_ms(),
            )
            .await;
            break;
        }
        let now = state.clock.now_ms();
        // Renew just before sending: if the lease ran out and another instance took the row, skip it.
        if !repo::renew_lease(&db.pool, &row.id, &ctx.instance_id, now + ctx.lease_ms).await? {
            tracing::info!(mail_id = %row.id, "Outbox row is no longer ours; skipping it.");
            continue;
        }
        let outcome = match transport {
            Err(e) => Err(e.clone()),
            Ok(t) => match transport::message(
                settings,
                &row.to_address,
                row.to_name.as_deref(),
                &row.subject,
                &row.text_body,
                &row.html_body,
                Some(&row.id),
            ) {
                Ok(msg) => transport::send(t, settings, msg, ctx.send_timeout).await,
                Err(e) => Err(e),
            },
        };
        let now = state.clock.now_ms();
        match outcome {
            Ok(()) => {
                report.sent += 1;
                if !repo::mark_sent(&db.pool, &row.id, &ctx.instance_id, now).await? {
                    tracing::warn!(mail_id = %row.id, "Mail was sent after its lease was lost.");
                }
                tracing::info!(mail_id = %row.id, kind = %row.kind, "Mail sent.");
                if reset.swap(false, Ordering::AcqRel)
                    && repo::record_success(&db.pool, now).await?
                {
                    notes::resolve(&db.pool, MAIL_FAILING, now).await?;
                }
            }
            Err(e) => {
                report.failed_attempts += 1;
                let attempts = row.attempts + 1;
                // An unusable mail (bad address) cannot get better by waiting.
                let give_up = matches!(e, SendError::Message(_))
                    || now - row.created_at >= ctx.give_up_after_ms;
                let next = now + ctx.backoff(attempts);
                let message = e.to_string();
                repo::mark_attempt_failed(
                    &db.pool,
                    &row.id,
                    &ctx.instance_id,
                    &message,
                    next,
                    give_up,
                )
                .await?;
                if give_up {
                    report.given_up += 1;
                    tracing::warn!(mail_id = %row.id, attempts, error = %message, "Mail given up.");
                } else {
                    tracing::info!(mail_id = %row.id, attempts, retry_in_ms = next - now, error = %message, "Mail not sent; will retry.");
                }
                note_failure(db, ctx, &message, now).await?;
                reset.store(true, Ordering::Release);
                if matches!(e, SendError::Connection(_)) {
                    // The server is away: the rest of the batch would only fail the same way.
                    postpone_all(db, ctx, iter, next).await;
                    return Ok((report, Some(next)));
                }
            }
        }
    }
    Ok((report, None))
}

/// Gives the untried rest of a batch back, due at `at`.
async fn postpone_all(
    db: &Db,
    ctx: &MailContext,
    rest: impl Iterator<Item = &OutboxRow>,
    at: Millis,
) {
    for r in rest {
        if let Err(e) = repo::postpone(&db.pool, &r.id, &ctx.instance_id, at).await {
            // Its lease expires on its own; another pass picks it up then.
            tracing::warn!(mail_id = %r.id, error = %e, "Could not give an outbox row back.");
        }
    }
}

/// Counts a failed attempt and raises the notification once the threshold is reached.
async fn note_failure(db: &Db, ctx: &MailContext, error: &str, now: Millis) -> anyhow::Result<()> {
    let count = repo::record_failure(&db.pool, error, now).await?;
    if count >= ctx.failure_threshold {
        let n = NewNotification {
            kind: MAIL_FAILING,
            dedup_key: MAIL_FAILING.into(),
            severity: Severity::Error,
            title: "Invitation mail is failing".into(),
            body: format!(
                "The last {count} attempts to deliver mail failed. Last error: {error}"
            ),
            action_text: "Check the SMTP settings and that this server can reach the mail server. Queued mail is \
                          retried automatically for 24 hours, so nothing is lost while you fix it."
                .into(),
            action_href: Some(crate::mail::handlers::PATH.into()),
            details: json!({ "consecutive_failures": count, "last_error": error }),
            run_id: None,
        };
        notes::raise(&db.pool, &n, now).await?;
    }
    Ok(())
}

/// The loop started with the server: tick or wake-up → `run_once` (again at once after a full batch).
pub async fn run(state: AppState, cancel: CancellationToken) {
    tracing::info!(
        tick_ms = u64::try_from(state.mail.tick.as_millis()).unwrap_or(u64::MAX),
        instance_id = %state.mail.instance_id,
        "Outbox worker started."
    );
    loop {
        let full = match run_once(&state, &cancel).await {
            Ok(r) => {
                r.claimed > 0 && i64::try_from(r.claimed).unwrap_or(0) >= state.mail.batch_size
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "Outbox pass failed; will retry.");
                false
            }
        };
        if full && !cancel.is_cancelled() {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = state.mail.wake.notified() => {}
            () = tokio::time::sleep(state.mail.tick) => {}
        }
    }
    // Say goodbye on the connections kept open.
    state.mail.smtp.close().await;
    tracing::info!("Outbox worker stopped.");
}
