//! ID token validation: every check of docs/oidc.md "Checks", in the order they run. openidconnect verifies the
//! RS256 signature, `iss`, `aud` and `exp` (with the caller's clock) and the nonce; the checks it does not do
//! (or does in a way we cannot rely on) are done here, before or after it.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreIdTokenVerifier, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, IssuerUrl, Nonce, SignatureVerificationError,
};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::{ClientConfig, IdClaims, OidcError, OidcProvider};
use crate::clock::{MINUTE, Millis};

/// A decoded JWT header or payload.
type JsonObject = Map<String, Value>;

/// Allowed clock difference between us and the provider for `exp`, `iat` and `nbf`.
pub const CLOCK_SKEW: Millis = 5 * MINUTE;

/// The placeholder Entra's `common` and `organizations` metadata put in `issuer`.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// The one signature algorithm we accept.
pub const ACCEPTED_ALG: &str = "RS256";

/// Validates a raw ID token from the token endpoint and returns its claims.
pub(crate) async fn validate_id_token(
    http: &reqwest::Client,
    jwks: &JwksCache,
    p: &OidcProvider,
    c: &ClientConfig,
    raw: &str,
    expected_nonce: &str,
    now: Millis,
) -> Result<IdClaims, OidcError> {
    let (header, payload) = decode_unverified(raw)?;

    // CHECK alg: RS256 only. Refuses `none`, HS256 (even if keyed with our client secret) and anything else
    // before any key is looked at. (openidconnect would refuse them too: allowed algs = [RS256] below and a
    // verifier without client secret; this check keeps the refusal explicit and names the algorithm.)
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg != ACCEPTED_ALG {
        return Err(OidcError::UnsupportedAlg(if alg.is_empty() {
            "missing".into()
        } else {
            alg.to_owned()
        }));
    }
    let kid = header.get("kid").and_then(Value::as_str);

    // CHECK iss: exactly the discovered issuer, or the `{tenantid}` template filled with the token's `tid`.
    let found_iss = payload.get("iss").and_then(Value::as_str).unwrap_or("");
    let tid = payload.get("tid").and_then(Value::as_str);
    let expected_iss = expected_issuer(&p.issuer, tid).ok_or_else(|| OidcError::WrongIssuer {
        expected: p.issuer.clone(),
        found: format!("{found_iss} (without a usable tid claim)"),
    })?;
    if found_iss != expected_iss {
        return Err(OidcError::WrongIssuer {
            expected: expected_iss,
            found: found_iss.to_owned(),
        });
    }

    // CHECK kid: the key must be in the provider's JWKS; an unknown kid refetches the set once (rate-limited).
    let lookup = jwks.lookup(http, &p.jwks_uri, kid, now).await?;
    if !lookup.kid_known {
        return Err(OidcError::UnknownKey(kid.map(str::to_owned)));
    }

    if expected_nonce.is_empty() {
        return Err(OidcError::WrongNonce);
    }

    // CHECK signature, iss, aud, exp, nonce through openidconnect. A *public-client* verifier has no client
    // secret, so an HMAC-signed token can never verify; allowed algs are RS256 only. `exp` is compared with
    // the caller's `now` minus the skew (openidconnect refuses when time_fn() >= exp).
    let token = CoreIdToken::from_str(raw).map_err(|e| OidcError::Malformed(e.to_string()))?;
    let verifier_now = claims_at(now - CLOCK_SKEW)?.expiration();
    let issuer_url = IssuerUrl::new(expected_iss.clone()).map_err(|e| {
        OidcError::Discovery(format!("the issuer {expected_iss} is not a URL: {e}"))
    })?;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(c.client_id.clone()),
        issuer_url,
        lookup.keys,
    )
    .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
    // Extra audiences are judged by the azp check below, not refused outright.
    .set_other_audience_verifier_fn(|_| true)
    .set_time_fn(move || verifier_now);
    let nonce = Nonce::new(expected_nonce.to_owned());
    token
        .claims(&verifier, &nonce)
        .map_err(|e| map_verification_error(e, &expected_iss, found_iss, alg, kid))?;

    // From here the payload is signed by the provider; the remaining checks read it directly.
    check_audience(&payload, &c.client_id)?;
    check_times(&payload, now)?;
    check_tenant(tid, &c.allowed_tenants)?;

    Ok(IdClaims {
        issuer: found_iss.to_owned(),
        subject: string_claim(&payload, "sub").unwrap_or_default(),
        oid: string_claim(&payload, "oid"),
        tid: tid.map(str::to_owned),
        preferred_username: string_claim(&payload, "preferred_username"),
        name: string_claim(&payload, "name"),
        email: string_claim(&payload, "email"),
        all: payload,
    })
}

/// Splits a compact JWS and decodes its header and payload without verifying anything.
pub(crate) fn decode_unverified(raw: &str) -> Result<(JsonObject, JsonObject), OidcError> {
    let mut parts = raw.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed(
            "the ID token is not a signed JWT (three dot-separated parts); encrypted tokens are not supported"
                .into(),
        ));
    };
    Ok((decode_part(h, "header")?, decode_part(p, "payload")?))
}

fn decode_part(part: &str, what: &str) -> Result<Map<String, Value>, OidcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| OidcError::Malformed(format!("the ID token {what} is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::Malformed(format!("the ID token {what} is not a JSON object: {e}")))
}

/// The issuer a token must carry: the discovered one, or with `{tenantid}` replaced by the token's `tid`.
/// `None` when the issuer is a template and the token has no usable `tid`.
pub fn expected_issuer(discovered: &str, tid: Option<&str>) -> Option<String> {
    if !discovered.contains(TENANT_PLACEHOLDER) {
        return Some(discovered.to_owned());
    }
    // A tid that could change the shape of the URL is refused rather than substituted.
    let tid = tid.filter(|t| is_tenant_id(t))?;
    Some(discovered.replace(TENANT_PLACEHOLDER, tid))
}

fn is_tenant_id(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether `iss` is the `template` issuer with `{tenantid}` filled by some tenant id.
pub fn matches_issuer_template(template: &str, iss: &str) -> bool {
    let Some((prefix, suffix)) = template.split_once(TENANT_PLACEHOLDER) else {
        return template == iss;
    };
    iss.len() > prefix.len() + suffix.len()
        && iss.starts_with(prefix)
        && iss.ends_with(suffix)
        && is_tenant_id(&iss[prefix.len()..iss.len() - suffix.len()])
}

/// openidconnect takes "now" only as a `chrono::DateTime<Utc>`, and chrono is not a dependency of ours: the
/// value is obtained by letting openidconnect deserialize claims whose `exp` is `at` (whole seconds).
fn claims_at(at: Millis) -> Result<CoreIdTokenClaims, OidcError> {
    serde_json::from_value(serde_json::json!({
        "iss": "https://clock.invalid",
        "aud": "clock",
        "sub": "clock",
        "exp": at.div_euclid(1000),
        "iat": at.div_euclid(1000),
    }))
    .map_err(|e| OidcError::Malformed(format!("cannot represent the current time: {e}")))
}

fn map_verification_error(
    e: ClaimsVerificationError,
    expected_iss: &str,
    found_iss: &str,
    alg: &str,
    kid: Option<&str>,
) -> OidcError {
    match e {
        ClaimsVerificationError::InvalidIssuer(_) => OidcError::WrongIssuer {
            expected: expected_iss.to_owned(),
            found: found_iss.to_owned(),
        },
        ClaimsVerificationError::InvalidAudience(_) => OidcError::WrongAudience,
        ClaimsVerificationError::Expired(_) => OidcError::Expired,
        ClaimsVerificationError::InvalidNonce(_) => OidcError::WrongNonce,
        ClaimsVerificationError::SignatureVerification(s) => match s {
            SignatureVerificationError::NoMatchingKey
            | SignatureVerificationError::AmbiguousKeyId(_) => {
                OidcError::UnknownKey(kid.map(str::to_owned))
            }
            SignatureVerificationError::DisallowedAlg(_)
            | SignatureVerificationError::UnsupportedAlg(_)
            | SignatureVerificationError::NoSignature => OidcError::UnsupportedAlg(alg.to_owned()),
            _ => OidcError::BadSignature,
        },
        other => OidcError::Malformed(other.to_string()),
    }
}

/// CHECK aud/azp: `aud` contains the client id; with several audiences `azp` must be the client id; an
/// `azp` that is present must be the client id.
fn check_audience(payload: &Map<String, Value>, client_id: &str) -> Result<(), OidcError> {
    let audiences: Vec<&str> = match payload.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&client_id) {
        return Err(OidcError::WrongAudience);
    }
    let azp = payload.get("azp").and_then(Value::as_str);
    match azp {
        Some(azp) if azp != client_id => Err(OidcError::WrongAuthorizedParty),
        None if audiences.len() > 1 => Err(OidcError::WrongAuthorizedParty),
        _ => Ok(()),
    }
}

/// CHECK exp (again, in milliseconds), iat and nbf against the caller's clock with `CLOCK_SKEW`.
fn check_times(payload: &Map<String, Value>, now: Millis) -> Result<(), OidcError> {
    let seconds = |name: &str| -> Result<Option<Millis>, OidcError> {
        match payload.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|s| Some((s * 1000.0) as Millis))
                .ok_or_else(|| OidcError::Malformed(format!("the {name} claim is not a number"))),
        }
    };
    let Some(exp) = seconds("exp")? else {
        return Err(OidcError::Malformed("the exp claim is missing".into()));
    };
    if exp <= now - CLOCK_SKEW {
        return Err(OidcError::Expired);
    }
    let Some(iat) = seconds("iat")? else {
        return Err(OidcError::Malformed("the iat claim is missing".into()));
    };
    if iat > now + CLOCK_SKEW {
        return Err(OidcError::IssuedInFuture);
    }
    if let Some(nbf) = seconds("nbf")?
        && nbf > now + CLOCK_SKEW
    {
        return Err(OidcError::NotYetValid);
    }
    Ok(())
}

/// CHECK tid: when the allow-list is not empty, `tid` must be in it (GUIDs compare case-insensitively).
fn check_tenant(tid: Option<&str>, allowed: &[String]) -> Result<(), OidcError> {
    if allowed.is_empty() {
        return Ok(());
    }
    match tid {
        Some(t) if allowed.iter().any(|a| a.trim().eq_ignore_ascii_case(t)) => Ok(()),
        other => Err(OidcError::TenantNotAllowed(other.map(str::to_owned))),
    }
}

fn string_claim(payload: &Map<String, Value>, name: &str) -> Option<String> {
    payload.get(name).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn issuer_template_is_filled_with_the_tid() {
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert_eq!(
            expected_issuer(t, Some("72f988bf-86f1-41af-91ab-2d7cd011db47")).as_deref(),
            Some("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0")
        );
        assert_eq!(expected_issuer(t, None), None);
        assert_eq!(expected_issuer(t, Some("evil/../x")), None);
        assert_eq!(expected_issuer(t, Some("")), None);
        assert_eq!(
            expected_issuer("https://op.example", Some("x")).as_deref(),
            Some("https://op.example")
        );
    }

    #[test]
    fn issuer_template_matching() {
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert!(matches_issuer_template(
            t,
            "https://login.microsoftonline.com/abc-1/v2.0"
        ));
        assert!(!matches_issuer_template(
            t,
            "https://login.microsoftonline.com//v2.0"
        ));
        assert!(!matches_issuer_template(
            t,
            "https://login.microsoftonline.com/a/b/v2.0"
        ));
        assert!(!matches_issuer_template(t, "https://evil.example/abc/v2.0"));
        assert!(matches_issuer_template(
            "https://op.example",
            "https://op.example"
        ));
        assert!(!matches_issuer_template(
            "https://op.example",
            "https://op.example/"
        ));
    }

    #[test]
    fn audience_and_azp() {
        let ok = obj(json!({"aud": "me"}));
        assert_eq!(check_audience(&ok, "me"), Ok(()));
        assert_eq!(
            check_audience(&obj(json!({"aud": "you"})), "me"),
            Err(OidcError::WrongAudience)
        );
        assert_eq!(
            check_audience(&obj(json!({})), "me"),
            Err(OidcError::WrongAudience)
        );
        assert_eq!(
            check_audience(&obj(json!({"aud": ["me", "you"]})), "me"),
            Err(OidcError::WrongAuthorizedParty)
        );
        assert_eq!(
            check_audience(&obj(json!({"aud": ["me", "you"], "azp": "me"})), "me"),
            Ok(())
        );
        assert_eq!(
            check_audience(&obj(json!({"aud": "me", "azp": "you"})), "me"),
            Err(OidcError::WrongAuthorizedParty)
        );
    }

    #[test]
    fn times_use_the_given_clock_and_skew() {
        let now: Millis = 1_800_000_000_000;
        let s = now / 1000;
        let good = obj(json!({"exp": s + 3600, "iat": s}));
        assert_eq!(check_times(&good, now), Ok(()));
        // Within the skew either way.
        assert_eq!(
            check_times(&obj(json!({"exp": s - 299, "iat": s + 299})), now),
            Ok(())
        );
        assert_eq!(
            check_times(&obj(json!({"exp": s - 301, "iat": s - 400})), now),
            Err(OidcError::Expired)
        );
        assert_eq!(
            check_times(&obj(json!({"exp": s + 3600, "iat": s + 301})), now),
            Err(OidcError::IssuedInFuture)
        );
        assert_eq!(
            check_times(
                &obj(json!({"exp": s + 3600, "iat": s, "nbf": s + 301})),
                now
            ),
            Err(OidcError::NotYetValid)
        );
        assert_eq!(
            check_times(&good, now + 3600 * 1000 + CLOCK_SKEW),
            Err(OidcError::Expired)
        );
    }

    #[test]
    fn tenant_allow_list() {
        let list = vec!["AAAA-1".to_owned()];
        assert_eq!(check_tenant(Some("aaaa-1"), &list), Ok(()));
        assert_eq!(
            check_tenant(Some("b"), &list),
            Err(OidcError::TenantNotAllowed(Some("b".into())))
        );
        assert_eq!(
            check_tenant(None, &list),
            Err(OidcError::TenantNotAllowed(None))
        );
        assert_eq!(check_tenant(None, &[]), Ok(()));
    }

    #[test]
    fn the_verifier_clock_is_the_given_time() {
        let claims = claims_at(1_800_000_000_999).expect("claims");
        assert_eq!(claims.expiration().timestamp(), 1_800_000_000);
    }

    #[test]
    fn malformed_tokens_are_refused_before_anything_else() {
        assert!(matches!(
            decode_unverified("a.b"),
            Err(OidcError::Malformed(_))
        ));
        assert!(matches!(
            decode_unverified("a.b.c.d.e"),
            Err(OidcError::Malformed(_))
        ));
        assert!(matches!(
            decode_unverified("!!.e30.x"),
            Err(OidcError::Malformed(_))
        ));
    }
}
