//! Owns outgoing mail: SMTP settings, the outbox and its worker. See docs/mail.md.
//!
//! Producers (invitations, …) call [`outbox::enqueue`] inside their own transaction; the worker in
//! [`worker`] claims due rows with a lease, sends them through [`transport`], and retries with backoff.

pub mod handlers;
pub mod model;
pub mod outbox;
pub mod repo;
pub mod service;
pub mod transport;
pub mod views;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{HOUR, MINUTE, Millis, SECOND};

pub use outbox::{OutgoingMail, enqueue, enqueue_many};

/// What the mailer needs besides the database: who we are, how to wake the worker, and its timings.
/// Production uses [`MailContext::default`]; tests pass faster values through `startup::Options::mail`.
#[derive(Clone, Debug)]
pub struct MailContext {
    /// Wakes the outbox worker (after an enqueue, or a settings save) instead of waiting for its tick.
    pub wake: Arc<Notify>,
    /// This process, as the holder of outbox leases.
    pub instance_id: String,
    /// How often the worker looks for due mail when nobody wakes it.
    pub tick: Duration,
    /// How many rows one claim takes.
    pub batch_size: i64,
    /// Mails sent at once, each on its own SMTP connection (the batch is split into this many lanes).
    pub concurrency: usize,
    /// How long a claimed row stays ours without renewal (renewed before each send). Must exceed `send_timeout`.
    pub lease_ms: Millis,
    /// First retry delay; doubles per attempt.
    pub backoff_base_ms: Millis,
    /// Longest retry delay.
    pub backoff_max_ms: Millis,
    /// A mail still failing this long after it was queued is marked failed (given up).
    pub give_up_after_ms: Millis,
    /// Timeout of each SMTP command (connect, EHLO, MAIL, RCPT, DATA).
    pub smtp_timeout: Duration,
    /// Bound on one whole delivery, so a send never outlives its lease.
    pub send_timeout: Duration,
    /// Bound on "Send test email" (the admin waits for it).
    pub test_timeout: Duration,
    /// Consecutive failed attempts that raise "Invitation mail is failing".
    pub failure_threshold: i64,
    /// The worker's SMTP connections, kept open between passes (up to `concurrency`, each for
    /// [`transport::IDLE_TIMEOUT`]) and dropped when the settings change. Clones share them.
    pub smtp: transport::SharedTransport,
}

impl Default for MailContext {
    fn default() -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            instance_id: uuid::Uuid::new_v4().to_string(),
            tick: Duration::from_secs(10),
            batch_size: 64,
            concurrency: 8,
            lease_ms: 5 * MINUTE,
            backoff_base_ms: 30 * SECOND,
            backoff_max_ms: HOUR,
            give_up_after_ms: 24 * HOUR,
            smtp_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(120),
            test_timeout: Duration::from_secs(15),
            failure_threshold: 3,
            smtp: transport::SharedTransport::default(),
        }
    }
}

impl MailContext {
    /// Asks the worker to look at the outbox now (call it after the enqueuing transaction commits).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delay before the next try after `attempts` failed ones: base, 2×base, 4×base … capped.
    pub fn backoff(&self, attempts: i64) -> Millis {
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.backoff_base_ms
            .saturating_mul(1_i64 << exp)
            .min(self.backoff_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = MailContext::default();
        assert_eq!(c.backoff(1), 30 * SECOND);
        assert_eq!(c.backoff(2), MINUTE);
        assert_eq!(c.backoff(3), 2 * MINUTE);
        assert_eq!(c.backoff(8), HOUR);
        assert_eq!(c.backoff(500), HOUR);
        assert_eq!(c.backoff(0), 30 * SECOND);
    }
}
