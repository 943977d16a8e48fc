//! Owns invitations by email and end-user registration: the template, inviting (automatically after a
//! sync, by hand, in bulk), the registration link, and the enrollment details a registered user gets.

pub mod handlers;
pub mod model;
pub mod registration;
pub mod repo;
pub mod service;
pub mod views;
