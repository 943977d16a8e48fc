//! Our SP metadata, IdP metadata and IdP signing certificates.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::asn1::Asn1Time;
use openssl::x509::X509;
use sha2::{Digest as _, Sha256};

use super::xml::{self, Element, NS_DSIG, NS_METADATA, escape};
use super::{SamlError, SpConfig};
use crate::clock::Millis;

pub(crate) const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub(crate) const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const PROTOCOL_ENUM: &str = "urn:oasis:names:tc:SAML:2.0:protocol";

/// Checks that the SP settings are absolute http(s) URLs.
pub(crate) fn check_sp(sp: &SpConfig) -> Result<(), SamlError> {
    for (what, value) in [("entity id", &sp.entity_id), ("ACS URL", &sp.acs_url)] {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "https" | "http") => {}
            _ => {
                return Err(SamlError::InvalidConfig(format!(
                    "the {what} {value:?} is not an absolute http(s) URL"
                )));
            }
        }
    }
    Ok(())
}

/// Our SAML metadata: an SPSSODescriptor that wants signed assertions, does not sign requests and publishes
/// no KeyDescriptor at all (with an encryption key ADFS would encrypt assertions, which we do not support).
pub fn sp_metadata_xml(sp: &SpConfig) -> Result<String, SamlError> {
    check_sp(sp)?;
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="{NS_METADATA}" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="{PROTOCOL_ENUM}">
    <md:NameIDFormat>{NAMEID_UNSPECIFIED}</md:NameIDFormat>
    <md:AssertionConsumerService Binding="{BINDING_POST}" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
        entity = escape(&sp.entity_id),
        acs = escape(&sp.acs_url),
    ))
}

/// A certificate the IdP signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpCert {
    /// Standard base64 of the DER bytes, no line breaks.
    pub der_b64: String,
    /// One-line subject, e.g. `CN=Microsoft Azure Federated SSO Certificate`.
    pub subject: String,
    pub not_after: Millis,
    /// SHA-256 of the DER bytes, lowercase hex without colons.
    pub fingerprint_sha256: String,
}

/// Reads a certificate from PEM text or bare base64 (line breaks and spaces are ignored).
pub fn parse_certificate(text: &str) -> Result<IdpCert, SamlError> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if text.matches("-----BEGIN").count() > 1 {
        return Err(SamlError::InvalidCertificate(
            "paste one certificate at a time".into(),
        ));
    }
    if body.is_empty() {
        return Err(SamlError::InvalidCertificate("it is empty".into()));
    }
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| SamlError::InvalidCertificate("it is not base64 or PEM".into()))?;
    let cert = X509::from_der(&der)
        .map_err(|_| SamlError::InvalidCertificate("it is not an X.509 certificate".into()))?;
    let subject = cert
        .subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let not_after = Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(cert.not_after()))
        .map(|d| (i64::from(d.days) * 86_400 + i64::from(d.secs)) * 1_000)
        .map_err(|_| SamlError::InvalidCertificate("its expiry date cannot be read".into()))?;
    let fingerprint_sha256 = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(IdpCert {
        der_b64: STANDARD.encode(&der),
        subject,
        not_after,
        fingerprint_sha256,
    })
}

/// What we need from an IdP's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpDescriptor {
    pub entity_id: String,
    /// SingleSignOnService location, HTTP-Redirect binding preferred, else HTTP-POST.
    pub sso_url: String,
    /// Every signing certificate listed (two during a rollover), without duplicates.
    pub signing_certs: Vec<IdpCert>,
}

/// Reads IdP metadata: an EntityDescriptor, or an EntitiesDescriptor (the first entity with an
/// IDPSSODescriptor is used). A UTF-8 BOM is accepted; DOCTYPE is refused. Certificates come from
/// `KeyDescriptor use="signing"` or without `use` in the IDPSSODescriptor (Entra's WS-Federation
/// RoleDescriptor lists the same certificates and is ignored).
pub fn parse_idp_metadata(xml_text: &str) -> Result<IdpDescriptor, SamlError> {
    let root = xml::parse(xml_text).map_err(|e| match e {
        xml::XmlError::Doctype => SamlError::DoctypeForbidden,
        xml::XmlError::Malformed(m) => {
            SamlError::InvalidMetadata(format!("not well-formed XML ({m})"))
        }
    })?;
    let (entity, idp) = find_idp(&root).ok_or_else(|| {
        SamlError::InvalidMetadata(
            "it contains no EntityDescriptor with an IDPSSODescriptor (is this the metadata of an identity provider?)"
                .into(),
        )
    })?;
    let entity_id = entity
        .attr("entityID")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SamlError::InvalidMetadata("the EntityDescriptor has no entityID".into()))?
        .to_owned();

    let sso = |binding: &str| {
        idp.children_named(NS_METADATA, "SingleSignOnService")
            .find(|s| s.attr("Binding") == Some(binding))
            .and_then(|s| s.attr("Location"))
            .map(|l| l.trim().to_owned())
    };
    let sso_url = sso(BINDING_REDIRECT)
        .or_else(|| sso(BINDING_POST))
        .ok_or_else(|| {
            SamlError::InvalidMetadata(
                "it has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding".into(),
            )
        })?;

    let mut signing_certs: Vec<IdpCert> = Vec::new();
    for kd in idp.children_named(NS_METADATA, "KeyDescriptor") {
        if !matches!(
            kd.attr("use").map(str::trim),
            None | Some("") | Some("signing")
        ) {
            continue;
        }
        let certs = kd
            .children_named(NS_DSIG, "KeyInfo")
            .flat_map(|ki| ki.children_named(NS_DSIG, "X509Data"))
            .flat_map(|d| d.children_named(NS_DSIG, "X509Certificate"));
        for c in certs {
            let cert = parse_certificate(&c.text()).map_err(|e| {
                SamlError::InvalidMetadata(format!("a signing certificate is unreadable ({e})"))
            })?;
            if !signing_certs
                .iter()
                .any(|k| k.fingerprint_sha256 == cert.fingerprint_sha256)
            {
                signing_certs.push(cert);
            }
        }
    }
    if signing_certs.is_empty() {
        return Err(SamlError::InvalidMetadata(
            "it lists no signing certificate".into(),
        ));
    }
    Ok(IdpDescriptor {
        entity_id,
        sso_url,
        signing_certs,
    })
}

fn find_idp(el: &Element) -> Option<(&Element, &Element)> {
    if el.is(NS_METADATA, "EntityDescriptor") {
        return el
            .child(NS_METADATA, "IDPSSODescriptor")
            .map(|idp| (el, idp));
    }
    if el.is(NS_METADATA, "EntitiesDescriptor") {
        return el.elements().find_map(find_idp);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sp_metadata_has_no_key_descriptor_and_escapes() {
        let sp = SpConfig {
            entity_id: "https://r.example/saml/metadata?a=1&b=2".into(),
            acs_url: "https://r.example/saml/acs".into(),
        };
        let xml_text = sp_metadata_xml(&sp).unwrap();
        let root = xml::parse(&xml_text).unwrap();
        assert_eq!(root.attr("entityID"), Some(sp.entity_id.as_str()));
        let d = root.child(NS_METADATA, "SPSSODescriptor").unwrap();
        assert!(d.child(NS_METADATA, "KeyDescriptor").is_none());
        assert_eq!(d.attr("WantAssertionsSigned"), Some("true"));
        assert_eq!(d.attr("AuthnRequestsSigned"), Some("false"));
        let acs = d.child(NS_METADATA, "AssertionConsumerService").unwrap();
        assert_eq!(acs.attr("Location"), Some(sp.acs_url.as_str()));
        assert_eq!(acs.attr("Binding"), Some(BINDING_POST));
        assert_eq!(acs.attr("isDefault"), Some("true"));
    }

    #[test]
    fn sp_metadata_refuses_relative_urls() {
        let sp = SpConfig {
            entity_id: "/saml/metadata".into(),
            acs_url: "https://r.example/saml/acs".into(),
        };
        assert!(matches!(
            sp_metadata_xml(&sp),
            Err(SamlError::InvalidConfig(_))
        ));
    }

    #[test]
    fn certificate_garbage_is_refused() {
        assert!(matches!(
            parse_certificate(""),
            Err(SamlError::InvalidCertificate(_))
        ));
        assert!(matches!(
            parse_certificate("not base64!"),
            Err(SamlError::InvalidCertificate(_))
        ));
        assert!(matches!(
            parse_certificate("AAAA"),
            Err(SamlError::InvalidCertificate(_))
        ));
    }

    #[test]
    fn metadata_without_idp_is_refused() {
        let sp = SpConfig::from_base_url("https://r.example");
        let xml_text = sp_metadata_xml(&sp).unwrap();
        assert!(matches!(
            parse_idp_metadata(&xml_text),
            Err(SamlError::InvalidMetadata(_))
        ));
        assert_eq!(
            parse_idp_metadata("<!DOCTYPE x><x/>"),
            Err(SamlError::DoctypeForbidden)
        );
    }
}
