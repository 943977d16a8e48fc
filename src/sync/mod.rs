//! Owns directory sync: the Graph client, rounds (full today, delta next), the worker that runs them on
//! the interval or on request, the lease that keeps one round per source at a time, and the sync page.

pub mod alerts;
pub mod graph;
pub mod handlers;
pub mod repo;
pub mod service;
pub mod worker;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::sync::graph::RetryPolicy;

/// What sync needs besides the database: retry policy, a way to wake the worker, and who we are.
#[derive(Clone)]
pub struct SyncContext {
    pub policy: RetryPolicy,
    /// "Sync now" wakes the worker through this.
    pub wake: Arc<Notify>,
    /// This process, as the holder of sync leases.
    pub instance_id: String,
    /// How long a lease lasts without renewal (milliseconds).
    pub lease_ms: i64,
    /// How often the worker looks for due work.
    pub tick: std::time::Duration,
}

impl Default for SyncContext {
    fn default() -> Self {
        Self {
            policy: RetryPolicy::default(),
            wake: Arc::new(Notify::new()),
            instance_id: uuid::Uuid::new_v4().to_string(),
            lease_ms: 60_000,
            tick: std::time::Duration::from_secs(5),
        }
    }
}
