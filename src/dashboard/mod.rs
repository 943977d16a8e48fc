//! Owns the admin dashboard: the landing page after sign-in.

pub mod handlers;
