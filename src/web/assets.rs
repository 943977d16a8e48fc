//! Owns static files: embedded in the binary, served under a content-hashed name with a long cache life.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::web::Routes;

const CSS: &str = include_str!("../../static/css/roster.css");
const JS: &str = include_str!("../../static/js/roster.js");

struct Asset {
    /// Path below `/static/`, with the content hash in the file name.
    name: String,
    href: String,
    body: &'static str,
    content_type: &'static str,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        hashed("css/roster", "css", CSS, "text/css; charset=utf-8"),
        hashed("js/roster", "js", JS, "text/javascript; charset=utf-8"),
    ]
});

fn hashed(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
    let digest = Sha256::digest(body.as_bytes());
    let short: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let name = format!("{stem}-{short}.{ext}");
    Asset {
        href: format!("/static/{name}"),
        name,
        body,
        content_type,
    }
}

/// The stylesheet's URL for the layout.
pub fn css_href() -> &'static str {
    ASSETS
        .first()
        .map_or("/static/css/roster.css", |a| a.href.as_str())
}

/// The script's URL for pages that use it.
pub fn js_href() -> &'static str {
    ASSETS
        .get(1)
        .map_or("/static/js/roster.js", |a| a.href.as_str())
}

pub fn configure(r: &mut Routes<'_>) {
    r.get("/static/{name:.*}", serve_asset);
}

async fn serve_asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == *name) {
        Some(a) => HttpResponse::Ok()
            .content_type(a.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(a.body),
        None => HttpResponse::NotFound().finish(),
    }
}
