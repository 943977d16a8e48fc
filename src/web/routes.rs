//! Owns the route table: areas register routes through [`Routes`], which mounts them on actix and
//! records them, so tests can walk every route (e.g. every POST for CSRF) without a hand-kept list.

use actix_web::http::Method;
use actix_web::web::{self, ServiceConfig};
use actix_web::{FromRequest, Handler, Responder, Route};

/// One mounted route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
}

impl RouteInfo {
    /// Routes under `/admin` need a signed-in admin.
    pub fn requires_admin(&self) -> bool {
        is_admin_path(self.path)
    }
}

/// True for `/admin` and everything below it.
pub fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

pub struct Routes<'a> {
    cfg: Option<&'a mut ServiceConfig>,
    table: Vec<RouteInfo>,
}

impl<'a> Routes<'a> {
    /// Mounts on `cfg` while recording.
    pub fn mounting(cfg: &'a mut ServiceConfig) -> Self {
        Self {
            cfg: Some(cfg),
            table: Vec::new(),
        }
    }

    /// Only records (for tests and docs).
    pub fn recording() -> Self {
        Self {
            cfg: None,
            table: Vec::new(),
        }
    }

    pub fn table(&self) -> &[RouteInfo] {
        &self.table
    }

    pub fn get<F, Args>(&mut self, path: &'static str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::GET, path, || web::get().to(handler))
    }

    pub fn post<F, Args>(&mut self, path: &'static str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::POST, path, || web::post().to(handler))
    }

    fn add(
        &mut self,
        method: Method,
        path: &'static str,
        route: impl FnOnce() -> Route,
    ) -> &mut Self {
        if let Some(cfg) = self.cfg.as_deref_mut() {
            cfg.route(path, route());
        }
        self.table.push(RouteInfo { method, path });
        self
    }
}

/// The whole route table.
pub fn table() -> Vec<RouteInfo> {
    let mut r = Routes::recording();
    super::mount(&mut r);
    r.table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        let t = table();
        let mut seen = std::collections::HashSet::new();
        for r in &t {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "duplicate route {r:?}"
            );
        }
        assert!(
            t.iter()
                .any(|r| r.method == Method::POST && r.path == "/login")
        );
        assert!(t.iter().any(|r| r.requires_admin()));
    }
}
