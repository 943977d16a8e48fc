//! HTTP handlers for configurations (routes are added with the feature).

use crate::web::Routes;

pub fn configure(_r: &mut Routes<'_>) {}
