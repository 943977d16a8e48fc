//! Owns one input rule for every request: no NUL characters. PostgreSQL cannot store them in text (SQLite
//! can), so they would otherwise surface as database errors; no legitimate field, id or query has one.
//! Checked in the path, the query string and URL-encoded form bodies, before any handler runs.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::web::Bytes;

use crate::error::ErrorPage;

/// True when URL-encoded text carries a NUL, raw or as `%00`.
pub fn has_nul(encoded: &[u8]) -> bool {
    encoded.contains(&0)
        || encoded
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

pub async fn reject_nul(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let mut bad = has_nul(req.uri().path().as_bytes())
        || req.uri().query().is_some_and(|q| has_nul(q.as_bytes()));
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !bad && is_form {
        let body = req.extract::<Bytes>().await?;
        bad = has_nul(&body);
        req.set_payload(Payload::from(body));
    }
    if !bad {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    tracing::warn!(path = %req.match_info().as_str(), "Refused a request with a NUL character.");
    let resp = ErrorPage::response(
        StatusCode::BAD_REQUEST,
        "The request was not valid",
        "It contains a NUL character, which no field, link or search may contain. Nothing was changed. \
         Remove it and try again.",
        None,
    );
    Ok(req.into_response(resp).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_raw_or_encoded() {
        assert!(has_nul(b"q=a%00b"));
        assert!(has_nul(b"a\0b"));
        assert!(!has_nul(b"q=a%200%30"));
        assert!(!has_nul(b"q=100%25"));
    }
}
