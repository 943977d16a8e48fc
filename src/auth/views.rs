//! Page structs for sign-in and first-run setup.

use askama::Template;
use askama_web::WebTemplate;

use crate::error::FieldErrors;
use crate::web::page::PageCtx;

#[derive(Template, WebTemplate)]
#[template(path = "auth/login.html")]
pub struct LoginPage {
    pub ctx: PageCtx,
    pub username: String,
    pub return_to: String,
    pub error: Option<String>,
    pub signed_out: bool,
    /// "Sign in with …" when an identity provider is on for admin sign-in.
    pub sso_label: Option<&'static str>,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/setup.html")]
pub struct SetupPage {
    pub ctx: PageCtx,
    pub token: String,
    pub username: String,
    pub errors: FieldErrors,
    pub form_error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/setup_closed.html")]
pub struct SetupClosedPage {
    pub ctx: PageCtx,
    /// `done` or `invalid`, for tests.
    pub reason: &'static str,
    pub message: String,
}
