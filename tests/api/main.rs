//! HTTP and process tests of the real `roster` app, on SQLite or (with ROSTER_TEST_POSTGRES_URL) PostgreSQL.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod attacks;
mod audit;
mod auth;
mod browser;
mod cli;
mod configurations;
mod csrf;
mod delta;
mod directory;
mod helpers;
mod identity;
mod invitations;
mod mail;
mod notifications;
mod oidc_peer;
mod oidc_protocol;
mod ops;
mod reliability;
mod saml_peer;
mod saml_protocol;
mod smtp_peer;
mod sync;
mod user_source;
mod web_security;
