//! Owns the directory read model: users and groups fed by sync plus local accounts, their memberships,
//! and the Users and Groups pages.

pub mod handlers;
pub mod model;
pub mod repo;
pub mod service;
