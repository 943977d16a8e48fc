//! Owns sign-in through an external identity provider: Entra ID over OpenID Connect, ADFS or any SAML 2.0
//! IdP. `saml` and `oidc` are the protocol cores (no DB, no HTTP routes); the rest of the area stores the
//! configuration, runs the flows and shows the pages.

pub mod oidc;
pub mod saml;
