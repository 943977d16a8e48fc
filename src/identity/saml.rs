//! SAML 2.0 service provider protocol core (samael + xmlsec). See docs/saml.md.
