//! Roster: the admin portal that makes Microsoft Entra ID the user source of a device-management tenant.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod configurations;
pub mod dashboard;
pub mod db;
pub mod directory;
pub mod error;
pub mod identity;
pub mod invitations;
pub mod mail;
pub mod notifications;
pub mod ops;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod sync;
pub mod telemetry;
pub mod web;
