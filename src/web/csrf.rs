//! Owns CSRF protection: one per-session token, put in every form as `csrf_token`, and one middleware
//! that refuses every state-changing request without it. Being middleware, no POST route can forget it.

use actix_session::{Session, SessionExt};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::web::Bytes;

use crate::db::ids::{constant_time_eq, random_token};
use crate::error::ErrorPage;

pub const SESSION_KEY: &str = "_csrf";
pub const FIELD: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";

/// Paths that receive cross-site POSTs by design (SAML POST binding, OIDC form_post). They are
/// protected by their own signed state instead.
pub const EXEMPT_PATHS: &[&str] = &["/saml/acs", "/oidc/callback"];

/// The session's token, created on first use.
pub fn token(session: &Session) -> anyhow::Result<String> {
    if let Ok(Some(t)) = session.get::<String>(SESSION_KEY) {
        return Ok(t);
    }
    rotate(session)
}

/// Replaces the session's token (done at sign-in).
pub fn rotate(session: &Session) -> anyhow::Result<String> {
    let t = random_token(32)?;
    session
        .insert(SESSION_KEY, &t)
        .map_err(|e| anyhow::anyhow!("storing the CSRF token: {e}"))?;
    Ok(t)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn form_field(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == FIELD)
        .map(|(_, v)| v.into_owned())
}

/// The middleware: 403 and no handler call when the token is missing or wrong.
pub async fn protect(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if is_safe(req.method()) || EXEMPT_PATHS.contains(&req.match_info().as_str()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let expected = req.get_session().get::<String>(SESSION_KEY).ok().flatten();
    let mut presented = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if presented.is_none() && is_form {
        let body = req.extract::<Bytes>().await?;
        presented = form_field(&body);
        req.set_payload(Payload::from(body));
    }
    let ok = matches!((&expected, &presented), (Some(e), Some(p)) if constant_time_eq(e.as_bytes(), p.as_bytes()));
    if ok {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    tracing::warn!(path = %req.path(), had_session_token = expected.is_some(), "Refused a request without a valid CSRF token.");
    let resp = ErrorPage::response(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form was not sent from this page of Roster, or your session ended. Nothing was changed. \
         Go back, reload the page and try again.",
        None,
    );
    Ok(req.into_response(resp).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_among_form_fields() {
        assert_eq!(
            form_field(b"a=1&csrf_token=x%2By&b=2").as_deref(),
            Some("x+y")
        );
        assert_eq!(form_field(b"a=1"), None);
    }
}
