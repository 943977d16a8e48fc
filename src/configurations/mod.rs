//! Owns configurations with `${variable}` substitution (Admin > Configurations): Exchange ActiveSync, Wi-Fi
//! and Custom key–value configurations, previewed and exported (Apple configuration profiles, JSON) per
//! user, and the rewrite of variable references when a custom attribute is renamed.

pub mod export;
pub mod handlers;
pub mod model;
pub mod repo;
pub mod service;
pub mod substitute;
pub mod views;
