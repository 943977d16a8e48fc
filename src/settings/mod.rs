//! Owns runtime settings edited in the portal: today the Entra ID user source (Admin > Microsoft Azure >
//! Entra ID User Source), stored in the database, validated, audited, its secret sealed at rest.

pub mod handlers;
pub mod model;
pub mod repo;
pub mod service;
pub mod views;
