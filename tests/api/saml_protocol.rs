//! The SAML SP protocol core (roster::identity::saml) against a real pysaml2 IdP (saml_peer.rs).
//! No Roster server runs here: every test builds an AuthnRequest, lets the peer answer it and verifies.

use std::io::Read as _;
use std::str::FromStr as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use roster::clock::{Clock as _, HOUR, MINUTE, Millis, SECOND, SystemClock};
use roster::identity::saml::{
    DEFAULT_CLOCK_SKEW_MS, Expectations, IdpCert, IdpDescriptor, SamlError, SignedElement,
    SpConfig, VerifiedAssertion, authn_request_redirect, parse_certificate, parse_idp_metadata,
    peek_in_response_to, sp_metadata_xml, verify_response,
};
use serde_json::json;

use crate::saml_peer::SamlIdp;

const UPN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";
const GIVEN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname";
const GROUPS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups";

fn now() -> Millis {
    SystemClock.now_ms()
}

fn sp() -> SpConfig {
    SpConfig::from_base_url("https://roster.test")
}

struct Ctx {
    idp: SamlIdp,
    sp: SpConfig,
    desc: IdpDescriptor,
}

/// A signed-in response: the SAMLResponse (base64) and the id of the request it answers.
struct Login {
    response: String,
    request_id: String,
}

impl Login {
    fn xml(&self) -> String {
        String::from_utf8(STANDARD.decode(&self.response).unwrap()).unwrap()
    }
}

fn b64(xml: &str) -> String {
    STANDARD.encode(xml.as_bytes())
}

async fn setup() -> Ctx {
    let sp = sp();
    let idp = SamlIdp::start(&sp.entity_id, &sp.acs_url).await;
    let desc = parse_idp_metadata(&idp.metadata_xml().await).unwrap();
    Ctx { idp, sp, desc }
}

impl Ctx {
    async fn login(&self, user: &str) -> Login {
        let out = authn_request_redirect(&self.sp, &self.desc.sso_url, "rs-1", now()).unwrap();
        let (response, relay) = self.idp.response_for(&out.redirect_url, user).await;
        assert_eq!(relay, "rs-1");
        Login {
            response,
            request_id: out.request_id,
        }
    }

    fn verify_full(
        &self,
        response: &str,
        request_id: &str,
        certs: &[IdpCert],
        at: Millis,
        skew: Millis,
    ) -> Result<VerifiedAssertion, SamlError> {
        verify_response(
            response,
            &Expectations {
                sp: &self.sp,
                idp_entity_id: &self.desc.entity_id,
                trusted_certs: certs,
                expected_request_id: request_id,
                now: at,
                clock_skew_ms: skew,
            },
        )
    }

    fn verify_at(&self, login: &Login, at: Millis) -> Result<VerifiedAssertion, SamlError> {
        self.verify_full(
            &login.response,
            &login.request_id,
            &self.desc.signing_certs,
            at,
            DEFAULT_CLOCK_SKEW_MS,
        )
    }

    fn verify(&self, login: &Login) -> Result<VerifiedAssertion, SamlError> {
        self.verify_at(login, now())
    }

    fn verify_xml(&self, login: &Login, xml: &str) -> Result<VerifiedAssertion, SamlError> {
        self.verify_full(
            &b64(xml),
            &login.request_id,
            &self.desc.signing_certs,
            now(),
            DEFAULT_CLOCK_SKEW_MS,
        )
    }
}

fn assert_alice(a: &VerifiedAssertion) {
    assert_eq!(a.name_id.as_deref(), Some("alice@example.com"));
    assert_eq!(a.attribute(UPN), Some("alice@example.com"));
    assert_eq!(a.attribute(GIVEN), Some("Alice"));
    let groups = &a.attributes.iter().find(|(n, _)| n == GROUPS).unwrap().1;
    assert_eq!(groups, &vec!["admins".to_owned(), "staff".to_owned()]);
    assert!(a.assertion_id.starts_with("id-"), "{}", a.assertion_id);
    assert!(a.issuer.ends_with("/metadata"));
}

/// The byte range of the first element with local name `local` (e.g. "Assertion"), and its prefix.
fn element_span(xml: &str, local: &str) -> (usize, usize, String) {
    let colon = [format!(":{local} "), format!(":{local}>")]
        .iter()
        .filter_map(|needle| xml.find(needle.as_str()))
        .min()
        .unwrap_or_else(|| panic!("no {local} in {xml}"));
    let start = xml[..colon].rfind('<').unwrap();
    let prefix = xml[start + 1..colon].to_owned();
    let close = format!("</{prefix}:{local}>");
    let end = xml[start..].find(&close).unwrap() + start + close.len();
    (start, end, prefix)
}

/// An unsigned copy of the assertion in `xml`, for user mallory, with the given ID.
fn evil_assertion(xml: &str, id: &str) -> String {
    let (start, end, _) = element_span(xml, "Assertion");
    let mut evil = xml[start..end].to_owned();
    if evil.contains(":Signature") {
        let (s, e, _) = element_span(&evil, "Signature");
        evil.replace_range(s..e, "");
    }
    let id_at = evil.find(" ID=\"").unwrap() + 5;
    let id_end = evil[id_at..].find('"').unwrap() + id_at;
    evil.replace_range(id_at..id_end, id);
    evil.replace("alice@example.com", "mallory@example.com")
        .replace(">Alice<", ">Mallory<")
}

/// A wrapping attack must be refused, or else yield alice's signed assertion, never mallory.
fn assert_wrapping_defeated(result: Result<VerifiedAssertion, SamlError>, signed_id: &str) {
    eprintln!(
        "wrapping outcome: {:?}",
        result.as_ref().map(|a| (&a.assertion_id, &a.name_id))
    );
    match result {
        Ok(a) => {
            assert_eq!(a.name_id.as_deref(), Some("alice@example.com"));
            assert_eq!(a.assertion_id, signed_id);
            assert!(!format!("{a:?}").contains("mallory"));
        }
        Err(e) => assert!(
            matches!(
                e,
                SamlError::BadSignature | SamlError::Malformed(_) | SamlError::Unsigned
            ),
            "unexpected refusal {e:?}"
        ),
    }
}

/// How many ds:Signature elements the XML holds (each SignatureValue has an open and a close tag).
fn signature_count(xml: &str) -> usize {
    xml.matches("SignatureValue>").count() / 2
}

fn assertion_id(xml: &str) -> String {
    let (start, _, _) = element_span(xml, "Assertion");
    let at = xml[start..].find(" ID=\"").unwrap() + start + 5;
    let end = xml[at..].find('"').unwrap() + at;
    xml[at..end].to_owned()
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn saml_accepts_assertion_signed_response() {
    let c = setup().await;
    let login = c.login("alice").await;
    assert_eq!(
        peek_in_response_to(&login.response).unwrap().as_deref(),
        Some(login.request_id.as_str())
    );
    let a = c.verify(&login).unwrap();
    assert_alice(&a);
    assert_eq!(a.signed_element, SignedElement::Assertion);
    assert_eq!(a.assertion_id, assertion_id(&login.xml()));
    assert_eq!(a.issuer, c.desc.entity_id);
    // Remembered for replay until the assertion would be refused anyway: after now, within lifetime + skew.
    assert!(a.not_on_or_after > now());
    assert!(a.not_on_or_after <= now() + HOUR + DEFAULT_CLOCK_SKEW_MS + MINUTE);
    assert_eq!(
        c.verify_at(&login, a.not_on_or_after),
        Err(SamlError::Expired)
    );
    assert!(c.verify_at(&login, a.not_on_or_after - SECOND).is_ok());
}

#[tokio::test]
async fn saml_accepts_response_signed_response() {
    let c = setup().await;
    c.idp.set(json!({"sign": "response"})).await;
    let login = c.login("alice").await;
    let xml = login.xml();
    assert_eq!(signature_count(&xml), 1);
    let (start, end, _) = element_span(&xml, "Assertion");
    assert!(
        !xml[start..end].contains("SignatureValue"),
        "only the Response is signed"
    );
    let a = c.verify(&login).unwrap();
    assert_alice(&a);
    assert_eq!(a.signed_element, SignedElement::Response);
}

#[tokio::test]
async fn saml_accepts_response_and_assertion_signed() {
    let c = setup().await;
    c.idp.set(json!({"sign": "both"})).await;
    let login = c.login("bob").await;
    assert_eq!(signature_count(&login.xml()), 2);
    let a = c.verify(&login).unwrap();
    assert_eq!(a.name_id.as_deref(), Some("bob@example.com"));
    assert_eq!(a.signed_element, SignedElement::Response);
}

#[tokio::test]
async fn saml_login_form_posts_back_through_the_peer() {
    // The browser path: GET /sso shows a form with input name="username"; POST /login answers with the
    // auto-submitting form to our ACS.
    let c = setup().await;
    let out = authn_request_redirect(&c.sp, &c.desc.sso_url, "rs-2", now()).unwrap();
    let client = reqwest::Client::new();
    let form = client
        .get(&out.redirect_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("name=\"username\""), "{form}");
    assert!(form.contains("type=\"submit\""), "{form}");
    let q: Vec<(String, String)> = url::Url::parse(&out.redirect_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let saml_request = &q.iter().find(|(k, _)| k == "SAMLRequest").unwrap().1;
    let page = client
        .post(format!("{}/login", c.idp.base_url))
        .form(&[
            ("SAMLRequest", saml_request.as_str()),
            ("RelayState", "rs-2"),
            ("username", "alice"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("action=\"{}\"", c.sp.acs_url)),
        "{page}"
    );
    assert!(page.contains("name=\"RelayState\" value=\"rs-2\""));
    let start = page.find("name=\"SAMLResponse\" value=\"").unwrap() + 27;
    let end = page[start..].find('"').unwrap() + start;
    let login = Login {
        response: page[start..end].to_owned(),
        request_id: out.request_id,
    };
    assert_alice(&c.verify(&login).unwrap());
}

// ---------------------------------------------------------------- metadata and requests

#[tokio::test]
async fn saml_sp_metadata_is_well_formed_without_key_descriptor() {
    let sp = sp();
    let xml = sp_metadata_xml(&sp).unwrap();
    assert!(!xml.contains("KeyDescriptor"), "{xml}");
    let ed = samael::metadata::EntityDescriptor::from_str(&xml).unwrap();
    assert_eq!(ed.entity_id.as_deref(), Some(sp.entity_id.as_str()));
    let d = &ed.sp_sso_descriptors.unwrap()[0];
    assert_eq!(d.want_assertions_signed, Some(true));
    assert_eq!(d.authn_requests_signed, Some(false));
    assert!(d.key_descriptors.as_ref().is_none_or(Vec::is_empty));
    let acs = &d.assertion_consumer_services[0];
    assert_eq!(acs.location, sp.acs_url);
    assert_eq!(
        acs.binding,
        "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    );
    assert_eq!(acs.index, 0);
    assert_eq!(acs.is_default, Some(true));
    assert!(xml.contains("nameid-format:unspecified</md:NameIDFormat>"));
    // Not an IdP: refused as IdP metadata.
    assert!(matches!(
        parse_idp_metadata(&xml),
        Err(SamlError::InvalidMetadata(_))
    ));
}

#[tokio::test]
async fn saml_parses_peer_metadata_and_rollover_metadata() {
    let c = setup().await;
    assert_eq!(c.desc.entity_id, format!("{}/metadata", c.idp.base_url));
    assert_eq!(c.desc.sso_url, format!("{}/sso", c.idp.base_url));
    assert_eq!(c.desc.signing_certs.len(), 1);
    let cert = &c.desc.signing_certs[0];
    assert!(
        cert.subject.contains("Roster test IdP primary"),
        "{}",
        cert.subject
    );
    assert!(cert.not_after > now() + 29 * 24 * HOUR);
    let der = STANDARD.decode(&cert.der_b64).unwrap();
    let fp = openssl::sha::sha256(&der);
    let hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(cert.fingerprint_sha256, hex);

    let both = parse_idp_metadata(&c.idp.metadata_xml_with("both").await).unwrap();
    assert_eq!(both.signing_certs.len(), 2);
    assert_eq!(both.signing_certs[0], *cert);
    assert_ne!(both.signing_certs[1], *cert);
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/saml")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn saml_parses_entra_metadata_with_bom_and_role_descriptor() {
    let xml = fixture("entra_metadata.xml");
    assert!(xml.starts_with('\u{feff}'), "the fixture must keep its BOM");
    let d = parse_idp_metadata(&xml).unwrap();
    assert_eq!(
        d.entity_id,
        "https://sts.windows.net/4f6e1c2a-0000-4000-8000-000000000001/"
    );
    assert_eq!(
        d.sso_url,
        "https://login.microsoftonline.com/4f6e1c2a-0000-4000-8000-000000000001/saml2"
    );
    assert_eq!(
        d.signing_certs.len(),
        1,
        "RoleDescriptor duplicates are ignored"
    );
    assert_eq!(
        d.signing_certs[0].fingerprint_sha256,
        "4f3e8ba4269fa2d08c486e55dd78da4cdce03a235b59959dd869a6fe2b6ac316"
    );
    assert_eq!(d.signing_certs[0].subject, "CN=fixture entra");
}

#[test]
fn saml_parses_adfs_metadata_with_two_signing_certs() {
    let d = parse_idp_metadata(&fixture("adfs_metadata.xml")).unwrap();
    assert_eq!(d.entity_id, "http://adfs.example.com/adfs/services/trust");
    assert_eq!(
        d.sso_url, "https://adfs.example.com/adfs/ls/",
        "Redirect preferred"
    );
    let fps: Vec<_> = d
        .signing_certs
        .iter()
        .map(|c| c.fingerprint_sha256.as_str())
        .collect();
    assert_eq!(
        fps,
        [
            "837a46daa32b6e393ec8fdb3f42ce4f5c8e7bddaf78330029271465d670433c8",
            "19ebf1daf9303b20882386dcdf679e9dd7b3b1f90cc498c48364d1e84e13cc57"
        ],
        "both signing certificates, and not the encryption one"
    );
}

#[test]
fn saml_parses_generic_entities_descriptor() {
    let d = parse_idp_metadata(&fixture("generic_metadata.xml")).unwrap();
    assert_eq!(d.entity_id, "https://idp.example.org/idp/shibboleth");
    assert_eq!(
        d.sso_url,
        "https://idp.example.org/idp/profile/SAML2/POST/SSO"
    );
    assert_eq!(
        d.signing_certs.len(),
        1,
        "a KeyDescriptor without use counts"
    );
    assert_eq!(
        d.signing_certs[0].fingerprint_sha256,
        "c9bd9e7904b7466491d289d398489a04e2e8441460b5cba32c00b0fdb0ec1c28"
    );
}

#[test]
fn saml_metadata_refuses_doctype_and_garbage() {
    let xml = fixture("generic_metadata.xml").replacen(
        "<md:EntitiesDescriptor",
        "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><md:EntitiesDescriptor",
        1,
    );
    assert_eq!(parse_idp_metadata(&xml), Err(SamlError::DoctypeForbidden));
    assert!(matches!(
        parse_idp_metadata("<md:EntityDescriptor"),
        Err(SamlError::InvalidMetadata(_))
    ));
    let no_cert = fixture("generic_metadata.xml").replace("X509Certificate", "X509SubjectName");
    assert!(matches!(
        parse_idp_metadata(&no_cert),
        Err(SamlError::InvalidMetadata(_))
    ));
}

#[test]
fn saml_parses_certificate_pem_and_bare_base64() {
    let xml = fixture("generic_metadata.xml");
    let start = xml.find("<ds:X509Certificate>").unwrap() + 20;
    let end = xml.find("</ds:X509Certificate>").unwrap();
    let bare = &xml[start..end];
    let pem = format!("-----BEGIN CERTIFICATE-----\r\n{bare}\r\n-----END CERTIFICATE-----\n");
    let a = parse_certificate(bare).unwrap();
    let b = parse_certificate(&pem).unwrap();
    assert_eq!(a, b);
    assert!(!a.der_b64.contains('\n'));
    assert_eq!(a.fingerprint_sha256.len(), 64);
    assert!(matches!(
        parse_certificate("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"),
        Err(SamlError::InvalidCertificate(_))
    ));
}

#[test]
fn saml_authn_request_redirect_decodes_to_a_valid_request() {
    let sp = sp();
    let at = 1_795_680_338_000;
    let out =
        authn_request_redirect(&sp, "https://idp.example/sso?tenant=a", "rs/1 2", at).unwrap();
    assert!(out.request_id.starts_with('_'));
    let url = url::Url::parse(&out.redirect_url).unwrap();
    assert_eq!(url.host_str(), Some("idp.example"));
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(q[0], ("tenant".into(), "a".into()));
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("RelayState").as_deref(), Some("rs/1 2"));
    let deflated = STANDARD.decode(get("SAMLRequest").unwrap()).unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .unwrap();
    let req = samael::schema::AuthnRequest::from_str(&xml).unwrap();
    assert_eq!(req.id, out.request_id);
    assert_eq!(req.version, "2.0");
    assert_eq!(req.issue_instant.timestamp_millis(), at);
    assert_eq!(
        req.assertion_consumer_service_url.as_deref(),
        Some(sp.acs_url.as_str())
    );
    assert_eq!(req.issuer_value().as_deref(), Some(sp.entity_id.as_str()));
    assert_eq!(
        req.destination.as_deref(),
        Some("https://idp.example/sso?tenant=a")
    );
    assert!(req.name_id_policy.is_none());
    assert!(req.subject.is_none());
    assert!(!xml.contains("NameIDPolicy") && !xml.contains("Subject"));

    let empty = authn_request_redirect(&sp, "https://idp.example/sso", "", at).unwrap();
    assert!(!empty.redirect_url.contains("RelayState"));
    assert_ne!(empty.request_id, out.request_id);
    assert!(matches!(
        authn_request_redirect(&sp, "not a url", "", at),
        Err(SamlError::InvalidConfig(_))
    ));
}

// ---------------------------------------------------------------- signatures

#[tokio::test]
async fn saml_refuses_tampered_assertion() {
    let c = setup().await;
    let login = c.login("alice").await;
    let xml = login.xml();
    assert!(c.verify_xml(&login, &xml).is_ok());
    let tampered = xml.replacen(">Alice<", ">Mallory<", 1);
    assert_ne!(tampered, xml);
    assert_eq!(
        c.verify_xml(&login, &tampered),
        Err(SamlError::BadSignature)
    );
}

#[tokio::test]
async fn saml_refuses_tampered_signed_response() {
    let c = setup().await;
    c.idp.set(json!({"sign": "response"})).await;
    let login = c.login("alice").await;
    let tampered = login.xml().replacen(">Alice<", ">Mallory<", 1);
    assert_eq!(
        c.verify_xml(&login, &tampered),
        Err(SamlError::BadSignature)
    );
}

#[tokio::test]
async fn saml_refuses_unsigned_response() {
    let c = setup().await;
    c.idp.set(json!({"sign": "none"})).await;
    let login = c.login("alice").await;
    assert!(!login.xml().contains("Signature"));
    assert_eq!(c.verify(&login), Err(SamlError::Unsigned));
}

#[tokio::test]
async fn saml_refuses_signature_by_a_rogue_key() {
    let c = setup().await;
    for sign in ["assertion", "response"] {
        c.idp
            .set(json!({"sign": sign, "signing_key": "rogue"}))
            .await;
        let login = c.login("alice").await;
        assert_eq!(c.verify(&login), Err(SamlError::BadSignature), "{sign}");
    }
}

#[tokio::test]
async fn saml_refuses_sha1_signatures() {
    let c = setup().await;
    c.idp.set(json!({"sign_alg": "sha1"})).await;
    let login = c.login("alice").await;
    assert!(matches!(
        c.verify(&login),
        Err(SamlError::WeakSignatureAlgorithm(alg)) if alg.contains("sha1")
    ));
}

#[tokio::test]
async fn saml_refuses_without_trusted_certificates() {
    let c = setup().await;
    let login = c.login("alice").await;
    assert_eq!(
        c.verify_full(
            &login.response,
            &login.request_id,
            &[],
            now(),
            DEFAULT_CLOCK_SKEW_MS
        ),
        Err(SamlError::NoTrustedCertificate)
    );
}

#[tokio::test]
async fn saml_certificate_rollover() {
    let c = setup().await;
    let both = parse_idp_metadata(&c.idp.metadata_xml_with("both").await).unwrap();
    assert_eq!(both.signing_certs.len(), 2);
    c.idp.set(json!({"signing_key": "secondary"})).await;
    let login = c.login("alice").await;
    // Secondary key signs: accepted while both certificates are trusted.
    let a = c
        .verify_full(
            &login.response,
            &login.request_id,
            &both.signing_certs,
            now(),
            DEFAULT_CLOCK_SKEW_MS,
        )
        .unwrap();
    assert_alice(&a);
    // Only the old (primary) certificate trusted: refused.
    assert_eq!(c.verify(&login), Err(SamlError::BadSignature));
    // The old certificate dropped, only the new one: accepted; and the primary key is now refused.
    let new_only = parse_idp_metadata(&c.idp.metadata_xml_with("secondary").await).unwrap();
    assert!(
        c.verify_full(
            &login.response,
            &login.request_id,
            &new_only.signing_certs,
            now(),
            DEFAULT_CLOCK_SKEW_MS
        )
        .is_ok()
    );
    c.idp.set(json!({"signing_key": "primary"})).await;
    let old = c.login("alice").await;
    assert_eq!(
        c.verify_full(
            &old.response,
            &old.request_id,
            &new_only.signing_certs,
            now(),
            DEFAULT_CLOCK_SKEW_MS
        ),
        Err(SamlError::BadSignature)
    );
}

// ---------------------------------------------------------------- signature wrapping

#[tokio::test]
async fn saml_wrapping_extra_unsigned_assertion_beside_signed_one() {
    let c = setup().await;
    let login = c.login("alice").await;
    let xml = login.xml();
    let signed_id = assertion_id(&xml);
    let (start, end, _) = element_span(&xml, "Assertion");
    let evil = evil_assertion(&xml, "evil-1");
    // Evil first (a naive reader takes the first assertion), and evil last.
    let before = format!("{}{evil}{}", &xml[..start], &xml[start..]);
    assert_wrapping_defeated(c.verify_xml(&login, &before), &signed_id);
    let after = format!("{}{evil}{}", &xml[..end], &xml[end..]);
    assert_wrapping_defeated(c.verify_xml(&login, &after), &signed_id);
}

#[tokio::test]
async fn saml_wrapping_signed_assertion_moved_into_extensions() {
    let c = setup().await;
    let login = c.login("alice").await;
    let xml = login.xml();
    let signed_id = assertion_id(&xml);
    let (start, end, _) = element_span(&xml, "Assertion");
    let (status_start, _, pprefix) = element_span(&xml, "Status");
    let signed = &xml[start..end];
    let evil = evil_assertion(&xml, "evil-2");
    // Response: Issuer, Extensions{signed}, Status, evil (in the signed one's place).
    let moved = format!(
        "{}<{pprefix}:Extensions>{signed}</{pprefix}:Extensions>{}{evil}{}",
        &xml[..status_start],
        &xml[status_start..start],
        &xml[end..]
    );
    assert_wrapping_defeated(c.verify_xml(&login, &moved), &signed_id);
    // The signed assertion inside a ds:Object of a fake signature, the evil one in its place.
    let (_, _, dprefix) = element_span(signed, "Signature");
    let object_wrap = format!(
        "{}<{dprefix}:Signature><{dprefix}:Object>{signed}</{dprefix}:Object></{dprefix}:Signature>{evil}{}",
        &xml[..start],
        &xml[end..]
    );
    assert_wrapping_defeated(c.verify_xml(&login, &object_wrap), &signed_id);
}

#[tokio::test]
async fn saml_wrapping_evil_assertion_inside_signed_response() {
    let c = setup().await;
    c.idp.set(json!({"sign": "response"})).await;
    let login = c.login("alice").await;
    let xml = login.xml();
    let signed_id = assertion_id(&xml);
    let (start, _, _) = element_span(&xml, "Assertion");
    let evil = evil_assertion(&xml, "evil-3");
    let injected = format!("{}{evil}{}", &xml[..start], &xml[start..]);
    let r = c.verify_xml(&login, &injected);
    assert_eq!(r, Err(SamlError::BadSignature));
    assert_wrapping_defeated(r, &signed_id);
}

#[tokio::test]
async fn saml_wrapping_duplicate_ids_refused() {
    let c = setup().await;
    let login = c.login("alice").await;
    let xml = login.xml();
    let signed_id = assertion_id(&xml);
    let (start, _, _) = element_span(&xml, "Assertion");
    let evil = evil_assertion(&xml, &signed_id);
    let dup = format!("{}{evil}{}", &xml[..start], &xml[start..]);
    let r = c.verify_xml(&login, &dup);
    assert!(r.is_err(), "duplicate IDs must be refused: {r:?}");
    assert_wrapping_defeated(r, &signed_id);
}

// ---------------------------------------------------------------- content checks

#[tokio::test]
async fn saml_refuses_wrong_audience() {
    let c = setup().await;
    c.idp
        .set(json!({"audience": "https://other.test/saml/metadata"}))
        .await;
    let login = c.login("alice").await;
    assert_eq!(c.verify(&login), Err(SamlError::WrongAudience));
}

#[tokio::test]
async fn saml_refuses_wrong_recipient() {
    let c = setup().await;
    c.idp
        .set(json!({"recipient": "https://other.test/saml/acs"}))
        .await;
    let login = c.login("alice").await;
    assert_eq!(c.verify(&login), Err(SamlError::WrongRecipient));
}

#[tokio::test]
async fn saml_refuses_wrong_destination() {
    let c = setup().await;
    for sign in ["assertion", "response"] {
        c.idp
            .set(json!({"sign": sign, "destination": "https://other.test/saml/acs"}))
            .await;
        let login = c.login("alice").await;
        assert_eq!(c.verify(&login), Err(SamlError::WrongDestination), "{sign}");
    }
}

#[tokio::test]
async fn saml_refuses_wrong_issuer() {
    let c = setup().await;
    c.idp
        .set(json!({"issuer": "https://evil.test/metadata"}))
        .await;
    let login = c.login("alice").await;
    assert_eq!(c.verify(&login), Err(SamlError::WrongIssuer));
}

#[tokio::test]
async fn saml_refuses_expired_assertion() {
    let c = setup().await;
    let login = c.login("alice").await;
    assert!(c.verify(&login).is_ok());
    // `now` comes from the caller, not from the system clock.
    assert_eq!(
        c.verify_at(&login, now() + 3 * HOUR),
        Err(SamlError::Expired)
    );
    // And from the IdP: NotOnOrAfter 10 minutes ago is beyond the 5 minute skew.
    c.idp.set(json!({"not_on_or_after": -600})).await;
    let old = c.login("alice").await;
    assert_eq!(c.verify(&old), Err(SamlError::Expired));
}

#[tokio::test]
async fn saml_refuses_not_yet_valid_assertion() {
    let c = setup().await;
    let login = c.login("alice").await;
    assert_eq!(
        c.verify_at(&login, now() - 10 * MINUTE),
        Err(SamlError::NotYetValid)
    );
    // Within the skew it is accepted; without skew it is not.
    let at = now() - MINUTE;
    assert!(
        c.verify_full(
            &login.response,
            &login.request_id,
            &c.desc.signing_certs,
            at,
            DEFAULT_CLOCK_SKEW_MS
        )
        .is_ok()
    );
    assert_eq!(
        c.verify_full(
            &login.response,
            &login.request_id,
            &c.desc.signing_certs,
            at,
            0
        ),
        Err(SamlError::NotYetValid)
    );
    c.idp.set(json!({"not_before": 3600})).await;
    let future = c.login("alice").await;
    assert_eq!(c.verify(&future), Err(SamlError::NotYetValid));
}

#[tokio::test]
async fn saml_refuses_unknown_in_response_to() {
    let c = setup().await;
    let login = c.login("alice").await;
    assert_eq!(
        c.verify_full(
            &login.response,
            "_someotherrequest",
            &c.desc.signing_certs,
            now(),
            DEFAULT_CLOCK_SKEW_MS
        ),
        Err(SamlError::WrongInResponseTo)
    );
    c.idp.set(json!({"in_response_to": "_forged"})).await;
    let forged = c.login("alice").await;
    assert_eq!(
        peek_in_response_to(&forged.response).unwrap().as_deref(),
        Some("_forged")
    );
    assert_eq!(c.verify(&forged), Err(SamlError::WrongInResponseTo));
}

#[tokio::test]
async fn saml_refuses_status_not_success() {
    let c = setup().await;
    c.idp
        .set(json!({"status": "Requester", "status_message": "AADSTS50105: not assigned"}))
        .await;
    let login = c.login("alice").await;
    match c.verify(&login) {
        Err(SamlError::Status(s)) => {
            assert!(s.contains("Requester") && s.contains("AADSTS50105"), "{s}");
        }
        other => panic!("expected Status, got {other:?}"),
    }
}

#[tokio::test]
async fn saml_refuses_encrypted_assertion_clearly() {
    let c = setup().await;
    let login = c.login("alice").await;
    let xml = login.xml();
    let (start, end, prefix) = element_span(&xml, "Assertion");
    let encrypted = format!(
        "{}<{prefix}:EncryptedAssertion><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\" \
         Type=\"http://www.w3.org/2001/04/xmlenc#Element\"><xenc:CipherData><xenc:CipherValue>AAAA\
         </xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></{prefix}:EncryptedAssertion>{}",
        &xml[..start],
        &xml[end..]
    );
    let e = c.verify_xml(&login, &encrypted).unwrap_err();
    assert_eq!(e, SamlError::Encrypted);
    assert!(e.to_string().contains("not support"), "{e}");
}

// ---------------------------------------------------------------- hostile XML

#[tokio::test]
async fn saml_refuses_malformed_xml() {
    let c = setup().await;
    let login = c.login("alice").await;
    let xml = login.xml();
    let truncated = &xml[..xml.len() - 20];
    assert!(matches!(
        c.verify_xml(&login, truncated),
        Err(SamlError::Malformed(_))
    ));
    assert!(matches!(
        c.verify_full(
            "not base64 at all!",
            &login.request_id,
            &c.desc.signing_certs,
            now(),
            0
        ),
        Err(SamlError::Malformed(_))
    ));
    assert!(matches!(
        c.verify_xml(&login, "<a><b></a>"),
        Err(SamlError::Malformed(_))
    ));
    assert!(matches!(
        peek_in_response_to(&b64("<x")),
        Err(SamlError::Malformed(_))
    ));
}

#[tokio::test]
async fn saml_refuses_doctype_with_external_entity() {
    let c = setup().await;
    let login = c.login("alice").await;
    let xml = login.xml();
    let body = xml
        .trim_start_matches("<?xml version=\"1.0\"?>")
        .trim_start();
    let xxe = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n{}",
        body.replacen(">Alice<", ">&xxe;<", 1)
    );
    assert_eq!(c.verify_xml(&login, &xxe), Err(SamlError::DoctypeForbidden));
    assert_eq!(
        peek_in_response_to(&b64(&xxe)),
        Err(SamlError::DoctypeForbidden)
    );
    // A DOCTYPE that declares nothing is refused too.
    let plain = format!("<!DOCTYPE Response>{body}");
    assert_eq!(
        c.verify_xml(&login, &plain),
        Err(SamlError::DoctypeForbidden)
    );
}

#[tokio::test]
async fn saml_refuses_billion_laughs() {
    let c = setup().await;
    let login = c.login("alice").await;
    let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    dtd.push_str("]>");
    let bomb = format!("{dtd}<lolz>&lol9;</lolz>");
    assert_eq!(
        c.verify_xml(&login, &bomb),
        Err(SamlError::DoctypeForbidden)
    );
    assert_eq!(
        peek_in_response_to(&b64(&bomb)),
        Err(SamlError::DoctypeForbidden)
    );
    // Without the DTD, an undefined entity is just malformed.
    assert!(matches!(
        c.verify_xml(&login, "<lolz>&lol9;</lolz>"),
        Err(SamlError::Malformed(_))
    ));
}

#[test]
fn saml_error_codes_and_messages_are_for_people() {
    assert_eq!(SamlError::BadSignature.code(), "bad_signature");
    assert_eq!(
        SamlError::BadSignature.to_string(),
        "The identity provider's response was not signed by a trusted certificate."
    );
    assert_eq!(
        SamlError::Encrypted.code(),
        "encrypted_assertion_unsupported"
    );
}
