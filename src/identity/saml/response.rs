//! Verifying a SAMLResponse received on the ACS with the HTTP-POST binding.
//!
//! Order of work (docs/saml.md lists each check):
//! 1. base64 → UTF-8 → our strict reader (`xml::parse`): DOCTYPE/entities and malformed XML are refused here,
//!    before libxml2 ever sees the bytes.
//! 2. Untrusted envelope: root must be `samlp:Response`; `EncryptedAssertion` → `Encrypted`; Status must be
//!    Success; at least one `ds:Signature` must exist; every signature must use an allowed algorithm.
//! 3. samael/xmlsec verifies every signature against the trusted certificates (any one of them, each
//!    signature) and returns only the signed content ("reduced" XML). Duplicate IDs are refused there.
//! 4. From then on only the signed element is read: either the signed Response (and its one Assertion) or
//!    the signed Assertion itself. Signature wrapping therefore cannot smuggle in unsigned content.
//! 5. Every remaining rule (issuer, audience, recipient, destination, InResponseTo, times) is checked here with
//!    the caller's `now`; samael's own validation (which reads the system clock) is not used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider as _, ReduceMode,
};

use super::instant::parse_instant;
use super::xml::{self, Element, NS_ASSERTION, NS_DSIG, NS_PROTOCOL};
use super::{Expectations, SamlError, SignedElement, VerifiedAssertion};
use crate::clock::Millis;

/// Largest SAMLResponse we read (decoded). Entra responses with many groups stay far below.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Signature algorithms we accept: SHA-256 and stronger. SHA-1 is refused.
const ALLOWED_ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

fn decode(saml_response_b64: &str) -> Result<String, SamlError> {
    let compact: String = saml_response_b64
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(SamlError::Malformed("the SAMLResponse is empty".into()));
    }
    if compact.len() > MAX_RESPONSE_BYTES / 3 * 4 + 4 {
        return Err(SamlError::Malformed("the SAMLResponse is too large".into()));
    }
    let bytes = STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| SamlError::Malformed("the SAMLResponse is not base64".into()))?;
    String::from_utf8(bytes)
        .map_err(|_| SamlError::Malformed("the SAMLResponse is not UTF-8 text".into()))
}

/// Reads `InResponseTo` from the Response WITHOUT verifying anything, only to find the pending request.
/// Never trust the value for anything else: `verify_response` checks it again on signed content.
pub fn peek_in_response_to(saml_response_b64: &str) -> Result<Option<String>, SamlError> {
    let text = decode(saml_response_b64)?;
    let root = xml::parse(&text)?;
    if !root.is(NS_PROTOCOL, "Response") {
        return Err(SamlError::Malformed(
            "the message is not a SAML Response".into(),
        ));
    }
    Ok(root.attr("InResponseTo").map(str::to_owned))
}

/// Verifies a SAMLResponse and returns the content of its signed assertion. See the module docs.
pub fn verify_response(
    saml_response_b64: &str,
    exp: &Expectations<'_>,
) -> Result<VerifiedAssertion, SamlError> {
    // 1. Decode and parse with our strict reader (refuses DOCTYPE, entities, malformed XML).
    let text = decode(saml_response_b64)?;
    let envelope = xml::parse(&text)?;

    // 2. Untrusted envelope checks: these can only add refusals.
    if !envelope.is(NS_PROTOCOL, "Response") {
        return Err(SamlError::Malformed(
            "the message is not a SAML Response".into(),
        ));
    }
    if envelope.any_descendant(&mut |e| e.is(NS_ASSERTION, "EncryptedAssertion")) {
        return Err(SamlError::Encrypted);
    }
    check_status(&envelope)?;
    check_algorithms(&envelope)?;
    if !envelope.any_descendant(&mut |e| e.is(NS_DSIG, "Signature")) {
        return Err(SamlError::Unsigned);
    }
    if exp.trusted_certs.is_empty() {
        return Err(SamlError::NoTrustedCertificate);
    }

    // 3. Signature verification by xmlsec; keep only what was signed. samael errors are mapped at once.
    let certs = exp
        .trusted_certs
        .iter()
        .map(|c| {
            STANDARD
                .decode(c.der_b64.as_bytes())
                .map(CertificateDer::from)
                .map_err(|_| SamlError::NoTrustedCertificate)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reduced = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        &text,
        &certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(&ALLOWED_ALGORITHMS),
    )
    .map_err(|_| SamlError::BadSignature)?;
    let signed = xml::parse(&reduced)?;

    // 4. Only the signed element is used from here on.
    let (signed_element, assertion, response_for_checks) = if signed.is(NS_PROTOCOL, "Response") {
        let mut assertions = signed.children_named(NS_ASSERTION, "Assertion");
        let assertion = assertions.next().ok_or(SamlError::NoAssertion)?;
        if assertions.next().is_some() {
            return Err(SamlError::Malformed(
                "the signed response holds more than one assertion".into(),
            ));
        }
        (SignedElement::Response, assertion, &signed)
    } else if signed.is(NS_ASSERTION, "Assertion") {
        // Only the assertion is signed: the Response envelope is unsigned, so its fields are only used to
        // refuse (Destination, InResponseTo, Issuer, Status), never to accept.
        (SignedElement::Assertion, &signed, &envelope)
    } else {
        // The signature covers some other element (for example an Extensions block).
        return Err(SamlError::BadSignature);
    };

    // 5. Response-level checks (signed Response, or the unsigned envelope around a signed Assertion).
    check_status(response_for_checks)?;
    check_response(response_for_checks, exp)?;

    // 6. Assertion-level checks, all on signed content.
    check_assertion(assertion, exp, signed_element)
}

/// Status must be Success; otherwise report the IdP's codes and message.
fn check_status(response: &Element) -> Result<(), SamlError> {
    let status = response
        .child(NS_PROTOCOL, "Status")
        .ok_or_else(|| SamlError::Malformed("the response has no Status".into()))?;
    let code = status.child(NS_PROTOCOL, "StatusCode");
    let value = code.and_then(|c| c.attr("Value")).unwrap_or_default();
    if value == STATUS_SUCCESS {
        return Ok(());
    }
    let short = |v: &str| v.rsplit(':').next().unwrap_or(v).to_owned();
    let mut words = vec![if value.is_empty() {
        "no status code".to_owned()
    } else {
        short(value)
    }];
    if let Some(sub) = code
        .and_then(|c| c.child(NS_PROTOCOL, "StatusCode"))
        .and_then(|c| c.attr("Value"))
    {
        words.push(short(sub));
    }
    let mut detail = words.join(" / ");
    if let Some(msg) = status.child(NS_PROTOCOL, "StatusMessage") {
        let msg = msg.text();
        let msg = msg.trim();
        if !msg.is_empty() {
            let clipped: String = msg.chars().take(300).collect();
            detail = format!("{detail}: {clipped}");
        }
    }
    Err(SamlError::Status(detail))
}

/// Every ds:Signature must use SHA-256 or stronger, for the signature and for each reference digest.
/// (xmlsec enforces the same list again; this check only gives a clearer refusal.) A signature without
/// SignedInfo is refused as a bad signature.
fn check_algorithms(envelope: &Element) -> Result<(), SamlError> {
    let mut bad: Option<SamlError> = None;
    envelope.any_descendant(&mut |e| {
        if !e.is(NS_DSIG, "Signature") {
            return false;
        }
        let Some(si) = e.child(NS_DSIG, "SignedInfo") else {
            bad = Some(SamlError::BadSignature);
            return true;
        };
        let method = si
            .child(NS_DSIG, "SignatureMethod")
            .and_then(|m| m.attr("Algorithm"))
            .unwrap_or_default();
        if !ALLOWED_ALGORITHMS
            .iter()
            .any(|a| a.signature_uri() == method)
        {
            bad = Some(SamlError::WeakSignatureAlgorithm(method.to_owned()));
            return true;
        }
        for r in si.children_named(NS_DSIG, "Reference") {
            let digest = r
                .child(NS_DSIG, "DigestMethod")
                .and_then(|m| m.attr("Algorithm"))
                .unwrap_or_default();
            if !ALLOWED_ALGORITHMS.iter().any(|a| a.digest_uri() == digest) {
                bad = Some(SamlError::WeakSignatureAlgorithm(digest.to_owned()));
                return true;
            }
        }
        false
    });
    match bad {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn check_response(response: &Element, exp: &Expectations<'_>) -> Result<(), SamlError> {
    if response.attr("Destination") != Some(exp.sp.acs_url.as_str()) {
        return Err(SamlError::WrongDestination);
    }
    // IdP-initiated sign-in (no InResponseTo) is not supported.
    if response.attr("InResponseTo") != Some(exp.expected_request_id) {
        return Err(SamlError::WrongInResponseTo);
    }
    if let Some(issuer) = response.child(NS_ASSERTION, "Issuer")
        && issuer.text().trim() != exp.idp_entity_id
    {
        return Err(SamlError::WrongIssuer);
    }
    Ok(())
}

fn instant_attr(el: &Element, name: &str) -> Result<Option<Millis>, SamlError> {
    match el.attr(name) {
        None => Ok(None),
        Some(v) => parse_instant(v)
            .map(Some)
            .ok_or_else(|| SamlError::Malformed(format!("{name} is not a valid time"))),
    }
}

/// Checks a time window `[not_before, not_on_or_after)` against `now` with the skew allowance.
fn check_window(
    not_before: Option<Millis>,
    not_on_or_after: Option<Millis>,
    exp: &Expectations<'_>,
) -> Result<(), SamlError> {
    if let Some(nb) = not_before
        && exp.now.saturating_add(exp.clock_skew_ms) < nb
    {
        return Err(SamlError::NotYetValid);
    }
    if let Some(noa) = not_on_or_after
        && exp.now.saturating_sub(exp.clock_skew_ms) >= noa
    {
        return Err(SamlError::Expired);
    }
    Ok(())
}

fn check_assertion(
    assertion: &Element,
    exp: &Expectations<'_>,
    signed_element: SignedElement,
) -> Result<VerifiedAssertion, SamlError> {
    let assertion_id = assertion
        .attr("ID")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SamlError::Malformed("the assertion has no ID".into()))?
        .to_owned();

    // Issuer = the configured IdP entity id.
    let issuer = assertion
        .child(NS_ASSERTION, "Issuer")
        .map(|i| i.text().trim().to_owned())
        .ok_or(SamlError::WrongIssuer)?;
    if issuer != exp.idp_entity_id {
        return Err(SamlError::WrongIssuer);
    }

    // IssueInstant must not be in the future.
    let issue_instant = instant_attr(assertion, "IssueInstant")?
        .ok_or_else(|| SamlError::Malformed("the assertion has no IssueInstant".into()))?;
    check_window(Some(issue_instant), None, exp)?;

    // Conditions: time window and AudienceRestriction (required, and every restriction must name us).
    let conditions = assertion
        .child(NS_ASSERTION, "Conditions")
        .ok_or(SamlError::WrongAudience)?;
    let cond_nb = instant_attr(conditions, "NotBefore")?;
    let cond_noa = instant_attr(conditions, "NotOnOrAfter")?;
    check_window(cond_nb, cond_noa, exp)?;
    let mut restrictions = conditions
        .children_named(NS_ASSERTION, "AudienceRestriction")
        .peekable();
    if restrictions.peek().is_none() {
        return Err(SamlError::WrongAudience);
    }
    for r in restrictions {
        if !r
            .children_named(NS_ASSERTION, "Audience")
            .any(|a| a.text().trim() == exp.sp.entity_id)
        {
            return Err(SamlError::WrongAudience);
        }
    }

    // Subject: a bearer SubjectConfirmation whose data names our ACS, our request and a valid window.
    let subject = assertion
        .child(NS_ASSERTION, "Subject")
        .ok_or(SamlError::NoBearerConfirmation)?;
    let mut first_error = None;
    let mut confirmed_noa = None;
    for sc in subject.children_named(NS_ASSERTION, "SubjectConfirmation") {
        if sc.attr("Method") != Some(CM_BEARER) {
            continue;
        }
        match check_confirmation(sc, exp) {
            Ok(noa) => {
                confirmed_noa = Some(noa);
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let scd_noa = match (confirmed_noa, first_error) {
        (Some(noa), _) => noa,
        (None, Some(e)) => return Err(e),
        (None, None) => return Err(SamlError::NoBearerConfirmation),
    };

    let name_id = subject
        .child(NS_ASSERTION, "NameID")
        .map(|n| n.text().trim().to_owned())
        .filter(|s| !s.is_empty());

    let mut attributes: Vec<(String, Vec<String>)> = Vec::new();
    for statement in assertion.children_named(NS_ASSERTION, "AttributeStatement") {
        for attribute in statement.children_named(NS_ASSERTION, "Attribute") {
            let Some(name) = attribute.attr("Name") else {
                continue;
            };
            let values = attribute
                .children_named(NS_ASSERTION, "AttributeValue")
                .map(|v| v.text().trim().to_owned());
            match attributes.iter_mut().find(|(n, _)| n == name) {
                Some((_, existing)) => existing.extend(values),
                None => attributes.push((name.to_owned(), values.collect())),
            }
        }
    }

    let not_on_or_after = cond_noa
        .map_or(scd_noa, |c| c.min(scd_noa))
        .saturating_add(exp.clock_skew_ms);

    Ok(VerifiedAssertion {
        assertion_id,
        issuer,
        name_id,
        attributes,
        not_on_or_after,
        signed_element,
    })
}

/// Checks one bearer SubjectConfirmation; returns its NotOnOrAfter.
fn check_confirmation(sc: &Element, exp: &Expectations<'_>) -> Result<Millis, SamlError> {
    let data = sc
        .child(NS_ASSERTION, "SubjectConfirmationData")
        .ok_or(SamlError::NoBearerConfirmation)?;
    if data.attr("Recipient") != Some(exp.sp.acs_url.as_str()) {
        return Err(SamlError::WrongRecipient);
    }
    if data.attr("InResponseTo") != Some(exp.expected_request_id) {
        return Err(SamlError::WrongInResponseTo);
    }
    // Bearer confirmations must carry NotOnOrAfter (SAML profiles §4.1.4.2).
    let noa = instant_attr(data, "NotOnOrAfter")?.ok_or(SamlError::NoBearerConfirmation)?;
    let nb = instant_attr(data, "NotBefore")?;
    check_window(nb, Some(noa), exp)?;
    Ok(noa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::saml::SpConfig;

    fn b64(s: &str) -> String {
        STANDARD.encode(s.as_bytes())
    }

    fn exp<'a>(sp: &'a SpConfig) -> Expectations<'a> {
        Expectations {
            sp,
            idp_entity_id: "https://idp.example/metadata",
            trusted_certs: &[],
            expected_request_id: "_abc",
            now: 0,
            clock_skew_ms: 0,
        }
    }

    #[test]
    fn refuses_before_libxml_sees_it() {
        let sp = SpConfig::from_base_url("https://r.example");
        let e = exp(&sp);
        assert_eq!(
            verify_response(&b64("<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><r/>"), &e),
            Err(SamlError::DoctypeForbidden)
        );
        assert!(matches!(
            verify_response(&b64("<r><a></r>"), &e),
            Err(SamlError::Malformed(_))
        ));
        assert!(matches!(
            verify_response("%%%", &e),
            Err(SamlError::Malformed(_))
        ));
        assert!(matches!(
            verify_response("", &e),
            Err(SamlError::Malformed(_))
        ));
    }

    #[test]
    fn encrypted_and_unsigned_and_status() {
        let sp = SpConfig::from_base_url("https://r.example");
        let e = exp(&sp);
        let ok_status = r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#;
        let wrap = |inner: &str| {
            b64(&format!(
                r#"<samlp:Response xmlns:samlp="{NS_PROTOCOL}" xmlns:saml="{NS_ASSERTION}" ID="_r" Version="2.0" IssueInstant="2026-01-01T00:00:00Z">{inner}</samlp:Response>"#
            ))
        };
        assert_eq!(
            verify_response(&wrap(&format!("{ok_status}<saml:EncryptedAssertion/>")), &e),
            Err(SamlError::Encrypted)
        );
        assert_eq!(
            verify_response(
                &wrap(&format!("{ok_status}<saml:Assertion ID=\"_a\"/>")),
                &e
            ),
            Err(SamlError::Unsigned)
        );
        let failed = r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Requester"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:RequestDenied"/></samlp:StatusCode><samlp:StatusMessage>AADSTS75006</samlp:StatusMessage></samlp:Status>"#;
        assert_eq!(
            verify_response(&wrap(failed), &e),
            Err(SamlError::Status(
                "Requester / RequestDenied: AADSTS75006".into()
            ))
        );
        assert_eq!(peek_in_response_to(&wrap(ok_status)), Ok(None));
    }
}
