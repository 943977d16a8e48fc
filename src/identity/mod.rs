//! Owns sign-in through an external identity provider: Entra ID over OpenID Connect, ADFS or any SAML 2.0
//! IdP. `saml` and `oidc` are the protocol cores (no DB, no HTTP routes); the rest of the area stores the
//! configuration, runs the flows and shows the pages.

pub mod flow;
pub mod handlers;
pub mod model;
pub mod oidc;
pub mod repo;
pub mod saml;
pub mod service;
pub mod views;
pub mod worker;

/// What the identity area keeps for the life of the process: an HTTP client for IdP metadata, discovery
/// and token calls (timeouts, no redirects followed), and the JWKS cache.
#[derive(Clone)]
pub struct IdentityContext {
    pub http: reqwest::Client,
    pub jwks: oidc::JwksCache,
    /// How often the identity worker runs its housekeeping (metadata refresh, certificate expiry).
    pub housekeeping_every: std::time::Duration,
}

impl Default for IdentityContext {
    fn default() -> Self {
        Self {
            // No redirects followed, 5 s to connect, 15 s in all.
            http: oidc::http_client().unwrap_or_default(),
            jwks: oidc::JwksCache::default(),
            housekeeping_every: std::time::Duration::from_secs(3600),
        }
    }
}
