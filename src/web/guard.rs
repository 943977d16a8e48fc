//! Owns access to `/admin`: the middleware that requires a signed-in, enabled admin, and the
//! `AdminSession` extractor that hands the admin to handlers.

use std::future::{Ready, ready};

use actix_session::SessionExt;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};

use crate::auth;
use crate::error::AppError;
use crate::web::AppState;
use crate::web::routes::is_admin_path;

/// Session key holding the signed-in admin's id.
pub const ADMIN_KEY: &str = "admin_id";

/// The signed-in admin, available to handlers under `/admin`.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub id: String,
    pub username: String,
    /// Unread open notifications when the request arrived, for the header badge.
    pub unread_notifications: i64,
}

impl FromRequest for AdminSession {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<AdminSession>()
                .cloned()
                .ok_or(AppError::Unauthorized),
        )
    }
}

/// The middleware: lets a request under `/admin` through only with a valid admin session.
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The path the router matches on (percent-decoded), not the raw one: `/%61dmin/…` routes to `/admin/…`
    // and must be guarded like it.
    if !is_admin_path(req.match_info().as_str()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let session = req.get_session();
    let admin_id = session.get::<String>(ADMIN_KEY).ok().flatten();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if let (Some(id), Some(state)) = (admin_id, state) {
        match auth::repo::find_admin_with_unread(&state.db.pool, &id).await {
            Ok(Some((admin, unread))) if !admin.disabled => {
                req.extensions_mut().insert(AdminSession {
                    id: admin.id,
                    username: admin.username,
                    unread_notifications: unread,
                });
                return next
                    .call(req)
                    .await
                    .map(ServiceResponse::map_into_left_body);
            }
            Ok(_) => session.purge(),
            Err(e) => return Err(AppError::from(e).into()),
        }
    }
    let location = if req.method() == Method::GET {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/admin", |pq| pq.as_str());
        format!(
            "/login?return_to={}",
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        )
    } else {
        "/login".to_owned()
    };
    let resp = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish();
    Ok(req.into_response(resp).map_into_right_body())
}
