//! OpenID Connect relying party protocol core (openidconnect). See docs/oidc.md.
