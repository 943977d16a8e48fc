//! Owns the operations endpoints: liveness and readiness (metrics are served by the Prometheus middleware).

pub mod handlers;
