//! The AuthnRequest, sent with the HTTP-Redirect binding (raw DEFLATE, base64, URL-encoded; samael
//! does the DEFLATE).

use std::str::FromStr as _;

use samael::schema::AuthnRequest;

use super::instant::format_instant;
use super::metadata::{BINDING_POST, check_sp};
use super::xml::{NS_ASSERTION, NS_PROTOCOL, escape};
use super::{SamlError, SpConfig};
use crate::clock::Millis;

/// A request ready to send: keep `request_id` (with the RelayState) to match the response, and redirect the
/// browser to `redirect_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequestOut {
    pub request_id: String,
    pub redirect_url: String,
}

/// Builds an unsigned AuthnRequest for the HTTP-Redirect binding. The ID starts with `_` (Entra refuses a
/// leading digit); there is no NameIDPolicy (ADFS fails a format no claim rule issues) and no Subject
/// (Entra refuses one). `RelayState` is added only when not empty.
pub fn authn_request_redirect(
    sp: &SpConfig,
    idp_sso_url: &str,
    relay_state: &str,
    now: Millis,
) -> Result<AuthnRequestOut, SamlError> {
    check_sp(sp)?;
    match url::Url::parse(idp_sso_url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => {}
        _ => {
            return Err(SamlError::InvalidConfig(format!(
                "the identity provider's sign-on URL {idp_sso_url:?} is not an absolute http(s) URL"
            )));
        }
    }
    if relay_state.len() > 80 {
        // SAML bindings §3.4.3: RelayState MUST NOT exceed 80 bytes.
        return Err(SamlError::InvalidConfig(
            "RelayState is longer than 80 bytes".into(),
        ));
    }
    let request_id = format!("_{}", uuid::Uuid::new_v4().simple());
    let xml_text = format!(
        r#"<samlp:AuthnRequest xmlns:samlp="{NS_PROTOCOL}" xmlns:saml="{NS_ASSERTION}" ID="{request_id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="{BINDING_POST}"><saml:Issuer>{issuer}</saml:Issuer></samlp:AuthnRequest>"#,
        instant = format_instant(now),
        dest = escape(idp_sso_url),
        acs = escape(&sp.acs_url),
        issuer = escape(&sp.entity_id),
    );
    let request = AuthnRequest::from_str(&xml_text)
        .map_err(|e| SamlError::InvalidConfig(format!("cannot build the AuthnRequest ({e})")))?;
    let url = request
        .redirect(relay_state)
        .map_err(|e| SamlError::InvalidConfig(format!("cannot encode the AuthnRequest ({e})")))?
        .ok_or_else(|| SamlError::InvalidConfig("the AuthnRequest has no destination".into()))?;
    Ok(AuthnRequestOut {
        request_id,
        redirect_url: url.to_string(),
    })
}
