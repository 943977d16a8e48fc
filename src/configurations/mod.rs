//! Owns configurations with `${variable}` substitution (being built for issue 8).

pub mod handlers;
