//! Owns the one application error type and how each kind becomes an HTTP answer.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

/// Messages keyed by form field name, shown next to the field.
pub type FieldErrors = BTreeMap<&'static str, String>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("sign-in required")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{service} failed")]
    Upstream {
        service: &'static str,
        #[source]
        source: anyhow::Error,
    },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(anyhow::Error::new(e).context("database query"))
    }
}

#[derive(Template)]
#[template(path = "errors/error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
    pub correlation_id: Option<String>,
    pub css_href: &'static str,
}

impl ErrorPage {
    /// Renders a stand-alone error page (it needs no session, so it works from anywhere).
    pub fn response(
        status: StatusCode,
        title: &str,
        message: &str,
        correlation_id: Option<String>,
    ) -> HttpResponse {
        let page = Self {
            status: status.as_u16(),
            title: title.to_owned(),
            message: message.to_owned(),
            correlation_id,
            css_href: crate::web::assets::css_href(),
        };
        let body = page
            .render()
            .unwrap_or_else(|_| format!("{} {}", status.as_u16(), title));
        HttpResponse::build(status)
            .content_type(ContentType::html())
            .body(body)
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::SEE_OTHER,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Unauthorized => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/login"))
                .finish(),
            Self::NotFound => ErrorPage::response(
                status,
                "Page not found",
                "There is nothing at this address. Check the link, or go back to the dashboard.",
                None,
            ),
            Self::Validation(errors) => {
                let msg = errors
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                ErrorPage::response(status, "The request was not valid", &msg, None)
            }
            Self::Forbidden(why) => ErrorPage::response(status, "Not allowed", why, None),
            Self::Conflict(why) => ErrorPage::response(status, "Conflict", why, None),
            Self::Upstream { service, source } => {
                let id = correlation_id();
                tracing::error!(correlation_id = %id, service, error = format!("{source:#}"), "Upstream service failed.");
                ErrorPage::response(
                    status,
                    &format!("{service} did not answer as expected"),
                    &format!("{source:#}"),
                    Some(id),
                )
            }
            Self::Unexpected(e) => {
                let id = correlation_id();
                tracing::error!(correlation_id = %id, error = format!("{e:#}"), "Request failed.");
                ErrorPage::response(
                    status,
                    "Something went wrong",
                    "Roster could not complete this request. Try again; if it keeps failing, give the \
                     reference below to your administrator, who will find the cause in the log.",
                    Some(id),
                )
            }
        }
    }
}

/// A short id that appears both on the error page and in the log line.
fn correlation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

pub type AppResult<T> = Result<T, AppError>;
