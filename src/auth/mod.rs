//! Owns admin accounts, first-run setup, sign-in with throttling, and server-side sessions.

pub mod handlers;
pub mod password;
pub mod repo;
pub mod service;
pub mod session_store;
pub mod views;
