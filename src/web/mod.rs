//! Owns the HTTP surface: shared state, the route table, and the middleware every request passes.

pub mod assets;
pub mod csrf;
pub mod flash;
pub mod guard;
pub mod input_guard;
pub mod page;
pub mod redirect;
pub mod routes;

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;

use crate::clock::SharedClock;
use crate::config::BaseUrl;
use crate::db::Db;
use crate::secrets::MasterKey;

pub use routes::{RouteInfo, Routes};

/// What every handler can reach through `web::Data<AppState>`.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: SharedClock,
    pub base_url: BaseUrl,
    pub master_key: MasterKey,
    pub sync: crate::sync::SyncContext,
    pub mail: crate::mail::MailContext,
    pub identity: crate::identity::IdentityContext,
}

/// Mounts every area. The order here is the route table; `Routes::table()` lists it for tests.
pub fn mount(r: &mut Routes<'_>) {
    crate::ops::handlers::configure(r);
    assets::configure(r);
    crate::auth::handlers::configure(r);
    crate::dashboard::handlers::configure(r);
    crate::settings::handlers::configure(r);
    crate::sync::handlers::configure(r);
    crate::directory::handlers::configure(r);
    crate::configurations::handlers::configure(r);
    crate::identity::handlers::configure(r);
    crate::invitations::handlers::configure(r);
    crate::mail::handlers::configure(r);
    crate::notifications::handlers::configure(r);
    crate::audit::handlers::configure(r);
}

/// Content-Security-Policy: nothing inline, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Security headers on every response (a handler may set its own `Cache-Control`).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::CACHE_CONTROL, "no-store"))
        .add((
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=()",
        ))
}

/// Who sent a request: the peer address and the request id shared with the log.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub ip: String,
    pub request_id: Option<String>,
}

impl actix_web::FromRequest for RequestMeta {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use actix_web::HttpMessage;
        // The direct peer: a forwarded-for header is not trusted, since anyone can send one.
        let ip = req
            .peer_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
        let request_id = req
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string);
        std::future::ready(Ok(Self { ip, request_id }))
    }
}
