//! Owns the audit log: typed events, written in the same transaction as the change, and its page.

pub mod event;
pub mod handlers;
pub mod repo;
pub mod views;
