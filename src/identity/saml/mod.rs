//! SAML 2.0 service provider protocol core (samael + xmlsec for signatures). See docs/saml.md.
//!
//! Pure functions only: no database, no HTTP. The caller stores pending requests (keyed by RelayState and by
//! request id), trusted IdP certificates and the replay cache of assertion ids.
//!
//! Layout: `xml` is a strict reader that sees every byte before libxml2 does; `metadata` publishes our SP
//! metadata and reads IdP metadata and certificates; `request` builds the HTTP-Redirect AuthnRequest;
//! `response` verifies a SAMLResponse (signature through samael/xmlsec, every other rule here, with the
//! caller's `now`).

mod instant;
mod metadata;
mod request;
mod response;
mod xml;

use crate::clock::Millis;

pub use metadata::{
    IdpCert, IdpDescriptor, parse_certificate, parse_idp_metadata, sp_metadata_xml,
};
pub use request::{AuthnRequestOut, authn_request_redirect};
pub use response::{peek_in_response_to, verify_response};

/// Default allowance for clocks that disagree, as suggested by Microsoft's token reference (5 minutes).
pub const DEFAULT_CLOCK_SKEW_MS: Millis = 5 * 60 * 1000;

/// Our own identity as a service provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpConfig {
    /// `{base}/saml/metadata`.
    pub entity_id: String,
    /// `{base}/saml/acs` (HTTP-POST binding).
    pub acs_url: String,
}

impl SpConfig {
    /// Builds the conventional entity id and ACS URL from the public base URL (without a trailing slash).
    pub fn from_base_url(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        Self {
            entity_id: format!("{base}/saml/metadata"),
            acs_url: format!("{base}/saml/acs"),
        }
    }
}

/// What a SAMLResponse must match to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub sp: &'a SpConfig,
    /// The configured IdP entity id; the Response and Assertion `Issuer` must equal it exactly.
    pub idp_entity_id: &'a str,
    /// Every certificate currently trusted for this IdP (two during a rollover).
    pub trusted_certs: &'a [IdpCert],
    /// The `ID` of the AuthnRequest we sent (found through `peek_in_response_to` or the RelayState).
    pub expected_request_id: &'a str,
    pub now: Millis,
    /// Allowance applied to every time comparison; `DEFAULT_CLOCK_SKEW_MS` is a good value.
    pub clock_skew_ms: Millis,
}

/// Which element carried the signature that was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedElement {
    Response,
    Assertion,
}

/// The content of the one signed assertion that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub assertion_id: String,
    pub issuer: String,
    pub name_id: Option<String>,
    /// Attribute `Name` and its values, in document order; repeated names are merged.
    pub attributes: Vec<(String, Vec<String>)>,
    /// Keep `assertion_id` in the replay cache until this instant: after it the assertion is refused as
    /// expired anyway (the earliest NotOnOrAfter of Conditions and SubjectConfirmationData, plus the skew).
    pub not_on_or_after: Millis,
    pub signed_element: SignedElement,
}

impl VerifiedAssertion {
    /// The first value of an attribute, by exact name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }
}

/// Why a SAML message or metadata document was refused. `Display` is plain words for a refusal page;
/// `code()` is a short stable name for logs and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlError {
    #[error("The identity provider's message could not be read: {0}.")]
    Malformed(String),
    #[error(
        "The identity provider's message contains a document type declaration, which is not allowed."
    )]
    DoctypeForbidden,
    #[error("The identity provider's response was not signed.")]
    Unsigned,
    #[error("The identity provider's response was not signed by a trusted certificate.")]
    BadSignature,
    #[error(
        "The identity provider signed the response with an algorithm that is not allowed ({0}); use RSA-SHA256 or stronger."
    )]
    WeakSignatureAlgorithm(String),
    #[error("No certificate is trusted for this identity provider; load its metadata again.")]
    NoTrustedCertificate,
    #[error("The identity provider refused the sign-in ({0}).")]
    Status(String),
    #[error("The response was issued by a different identity provider than the one configured.")]
    WrongIssuer,
    #[error("The response is meant for a different service provider (audience mismatch).")]
    WrongAudience,
    #[error("The assertion is meant for a different sign-in address (recipient mismatch).")]
    WrongRecipient,
    #[error("The response was sent to a different sign-in address (destination mismatch).")]
    WrongDestination,
    #[error("The sign-in response has expired; please sign in again.")]
    Expired,
    #[error("The sign-in response is not valid yet; check that the server clocks are correct.")]
    NotYetValid,
    #[error(
        "The response does not answer a sign-in that started here (it may be old, or started from the identity provider)."
    )]
    WrongInResponseTo,
    #[error(
        "The identity provider sent an encrypted assertion, which Roster does not support; turn off assertion encryption for Roster at the identity provider."
    )]
    Encrypted,
    #[error("The identity provider's response contains no assertion.")]
    NoAssertion,
    #[error("The assertion has no bearer subject confirmation.")]
    NoBearerConfirmation,
    #[error("The identity provider metadata is not usable: {0}.")]
    InvalidMetadata(String),
    #[error("The certificate is not usable: {0}.")]
    InvalidCertificate(String),
    #[error("The service provider settings are not usable: {0}.")]
    InvalidConfig(String),
}

impl SamlError {
    /// Short snake_case name for logs and audit events.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::DoctypeForbidden => "doctype_forbidden",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::WeakSignatureAlgorithm(_) => "weak_signature_algorithm",
            Self::NoTrustedCertificate => "no_trusted_certificate",
            Self::Status(_) => "status_not_success",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongRecipient => "wrong_recipient",
            Self::WrongDestination => "wrong_destination",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongInResponseTo => "wrong_in_response_to",
            Self::Encrypted => "encrypted_assertion_unsupported",
            Self::NoAssertion => "no_assertion",
            Self::NoBearerConfirmation => "no_bearer_confirmation",
            Self::InvalidMetadata(_) => "invalid_metadata",
            Self::InvalidCertificate(_) => "invalid_certificate",
            Self::InvalidConfig(_) => "invalid_config",
        }
    }
}

impl From<xml::XmlError> for SamlError {
    fn from(e: xml::XmlError) -> Self {
        match e {
            xml::XmlError::Doctype => Self::DoctypeForbidden,
            xml::XmlError::Malformed(m) => Self::Malformed(format!("not well-formed XML ({m})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let all = [
            SamlError::Malformed(String::new()),
            SamlError::DoctypeForbidden,
            SamlError::Unsigned,
            SamlError::BadSignature,
            SamlError::WeakSignatureAlgorithm(String::new()),
            SamlError::NoTrustedCertificate,
            SamlError::Status(String::new()),
            SamlError::WrongIssuer,
            SamlError::WrongAudience,
            SamlError::WrongRecipient,
            SamlError::WrongDestination,
            SamlError::Expired,
            SamlError::NotYetValid,
            SamlError::WrongInResponseTo,
            SamlError::Encrypted,
            SamlError::NoAssertion,
            SamlError::NoBearerConfirmation,
            SamlError::InvalidMetadata(String::new()),
            SamlError::InvalidCertificate(String::new()),
            SamlError::InvalidConfig(String::new()),
        ];
        let mut codes: Vec<_> = all.iter().map(SamlError::code).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        );
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn sp_config_from_base_url() {
        let sp = SpConfig::from_base_url("https://roster.example.com/");
        assert_eq!(sp.entity_id, "https://roster.example.com/saml/metadata");
        assert_eq!(sp.acs_url, "https://roster.example.com/saml/acs");
    }
}
