//! OpenID Connect relying-party protocol core (openidconnect 4 over reqwest 0.13): discovery, the code + PKCE
//! start, callback parsing, code redemption and ID token validation. No database and no routes: the caller
//! stores `AuthStart` server-side keyed by `state` and checks the callback's `state` itself. See docs/oidc.md.

mod error;
mod http;
mod jwks;
mod verify;

use std::borrow::Cow;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse,
};
use openidconnect::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyAdditionalClaims, EndpointNotSet, EndpointSet, IdToken, IssuerUrl, LoginHint, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardErrorResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use error::OidcError;
pub use http::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, http_client};
pub use jwks::JwksCache;
pub use verify::{
    ACCEPTED_ALG, CLOCK_SKEW, TENANT_PLACEHOLDER, expected_issuer, matches_issuer_template,
};

use crate::clock::Millis;

/// The discovery document URL of an authority (`https://login.microsoftonline.com/{tenant}/v2.0` or any
/// issuer URL). A URL that already ends with the well-known path is returned unchanged.
pub fn discovery_url(authority: &str) -> String {
    const WELL_KNOWN: &str = "/.well-known/openid-configuration";
    let trimmed = authority.trim().trim_end_matches('/');
    if trimmed.ends_with(WELL_KNOWN) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}{WELL_KNOWN}")
    }
}

/// The parts of a provider's discovery document that a sign-in needs. Serializable so the caller can cache it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcProvider {
    /// Tokens must carry exactly this `iss` (Entra `common`/`organizations`: contains `{tenantid}`).
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// Empty means the spec default, `client_secret_basic`.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: when true, every callback must carry `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl OidcProvider {
    /// Whether the issuer is Entra's multi-tenant template (`…/{tenantid}/v2.0`).
    pub fn is_multi_tenant(&self) -> bool {
        self.issuer.contains(TENANT_PLACEHOLDER)
    }
}

/// Reads and checks the provider's discovery document.
///
/// Checks: HTTP 200 JSON; issuer, authorization, token and JWKS endpoints present, `https` (plain `http` only
/// on a loopback host, for tests); the issuer has the same origin as the authority (the issuer may differ
/// from the authority's path: Entra's domain-named and `common` authorities do); RS256 is among the ID token
/// algorithms.
pub async fn discover(http: &reqwest::Client, authority: &str) -> Result<OidcProvider, OidcError> {
    let authority_url = parse_endpoint("authority", authority.trim())?;
    let url = discovery_url(authority);
    let value = http::get_json(http, &url)
        .await
        .map_err(|e| OidcError::Discovery(e.to_string()))?;
    let provider: OidcProvider = serde_json::from_value(value)
        .map_err(|e| OidcError::Discovery(format!("{url} is not an OpenID configuration: {e}")))?;
    let issuer = parse_endpoint(
        "issuer",
        &provider.issuer.replace(TENANT_PLACEHOLDER, "tenant"),
    )?;
    if issuer.origin() != authority_url.origin() {
        return Err(OidcError::Discovery(format!(
            "the issuer {} is not on the same host as the authority {authority}",
            provider.issuer
        )));
    }
    parse_endpoint("authorization_endpoint", &provider.authorization_endpoint)?;
    parse_endpoint("token_endpoint", &provider.token_endpoint)?;
    parse_endpoint("jwks_uri", &provider.jwks_uri)?;
    if !provider
        .id_token_signing_alg_values_supported
        .iter()
        .any(|a| a == ACCEPTED_ALG)
    {
        return Err(OidcError::Discovery(format!(
            "the provider does not sign ID tokens with {ACCEPTED_ALG} (it offers: {})",
            provider.id_token_signing_alg_values_supported.join(", ")
        )));
    }
    client_auth(&provider)?;
    Ok(provider)
}

/// Parses an endpoint URL: https, or http on a loopback host.
fn parse_endpoint(what: &str, value: &str) -> Result<url::Url, OidcError> {
    let url = url::Url::parse(value)
        .map_err(|e| OidcError::Discovery(format!("the {what} {value:?} is not a URL: {e}")))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(OidcError::Discovery(format!(
            "the {what} {value} must use https"
        ))),
    }
}

/// How the client secret is sent: `client_secret_basic` when offered (or nothing is listed, the spec default),
/// else `client_secret_post`.
pub fn client_auth(p: &OidcProvider) -> Result<AuthType, OidcError> {
    let methods = &p.token_endpoint_auth_methods_supported;
    if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") {
        Ok(AuthType::BasicAuth)
    } else if methods.iter().any(|m| m == "client_secret_post") {
        Ok(AuthType::RequestBody)
    } else {
        Err(OidcError::Discovery(format!(
            "the token endpoint accepts neither client_secret_basic nor client_secret_post (it offers: {})",
            methods.join(", ")
        )))
    }
}

/// This application's registration at the provider.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    /// Must equal a redirect URI registered at the provider.
    pub redirect_uri: String,
    /// Entra tenant ids whose accounts may sign in; empty allows any (set it for `common`/`organizations`).
    pub allowed_tenants: Vec<String>,
}

/// A started sign-in: send the browser to `authorize_url`, keep the rest server-side keyed by `state`.
#[derive(Clone)]
pub struct AuthStart {
    pub authorize_url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

impl std::fmt::Debug for AuthStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStart")
            .field("authorize_url", &self.authorize_url)
            .field("state", &self.state)
            .field("nonce", &"[redacted]")
            .field("pkce_verifier", &"[redacted]")
            .finish()
    }
}

/// Starts the authorization code flow: `response_type=code`, `response_mode=query`, scope
/// `openid profile email`, PKCE S256, random `state` and `nonce` (16 bytes each, verifier 32 bytes).
pub fn start(
    p: &OidcProvider,
    c: &ClientConfig,
    login_hint: Option<&str>,
) -> Result<AuthStart, OidcError> {
    let client = CoreClient::new(
        ClientId::new(c.client_id.clone()),
        issuer_url(&p.issuer)?,
        CoreJsonWebKeySet::new(Vec::new()),
    )
    .set_auth_uri(
        AuthUrl::new(p.authorization_endpoint.clone())
            .map_err(config_err("authorization_endpoint"))?,
    )
    .set_redirect_uri(
        RedirectUrl::new(c.redirect_uri.clone()).map_err(config_err("redirect_uri"))?,
    );
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .add_extra_param("response_mode", "query");
    if let Some(hint) = login_hint.filter(|h| !h.trim().is_empty()) {
        request = request.set_login_hint(LoginHint::new(hint.trim().to_owned()));
    }
    let (url, state, nonce) = request.url();
    Ok(AuthStart {
        authorize_url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

fn issuer_url(issuer: &str) -> Result<IssuerUrl, OidcError> {
    IssuerUrl::new(issuer.to_owned()).map_err(config_err("issuer"))
}

fn config_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> OidcError {
    move |e| OidcError::Config(format!("the {what} is not a valid URL: {e}"))
}

/// What the browser brought back to the redirect URI.
#[derive(Clone, PartialEq, Eq)]
pub struct Callback {
    pub code: String,
    pub state: String,
    /// RFC 9207 `iss` parameter, when the provider sends one.
    pub iss: Option<String>,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("code", &"[redacted]")
            .field("state", &self.state)
            .field("iss", &self.iss)
            .finish()
    }
}

/// Parses the redirect URI's query string (with or without a leading `?`, or a whole URL). An `error`
/// answer becomes `OidcError::Provider` (with plain words and the `state`, so the caller can close the
/// pending request). A repeated parameter is refused.
pub fn parse_callback(query: &str) -> Result<Callback, OidcError> {
    let query = match query.split_once('?') {
        Some((_, q)) => q,
        None => query,
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut code = None;
    let mut state = None;
    let mut iss = None;
    let mut error = None;
    let mut description = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match name.as_ref() {
            "code" => &mut code,
            "state" => &mut state,
            "iss" => &mut iss,
            "error" => &mut error,
            "error_description" => &mut description,
            _ => continue,
        };
        if slot.is_some() {
            return Err(OidcError::BadCallback(format!(
                "the parameter {name} appears twice"
            )));
        }
        *slot = Some(value.into_owned());
    }
    if let Some(error) = error {
        return Err(OidcError::Provider {
            error,
            description,
            state,
        });
    }
    let state = state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OidcError::BadCallback("the state parameter is missing".into()))?;
    let code = code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OidcError::BadCallback("the code parameter is missing".into()))?;
    Ok(Callback { code, state, iss })
}

/// RFC 9207 check of the callback's `iss`: it must equal the discovered issuer (for a `{tenantid}` issuer:
/// have its shape; `finish_callback` then compares it exactly with the token's issuer). When the provider
/// advertises `authorization_response_iss_parameter_supported`, a missing `iss` is refused.
pub fn check_callback_issuer(p: &OidcProvider, cb: &Callback) -> Result<(), OidcError> {
    match cb.iss.as_deref() {
        None if p.authorization_response_iss_parameter_supported => {
            Err(OidcError::CallbackIssuerMismatch {
                expected: p.issuer.clone(),
                found: "(no iss parameter)".into(),
            })
        }
        None => Ok(()),
        Some(iss) if matches_issuer_template(&p.issuer, iss) => Ok(()),
        Some(iss) => Err(OidcError::CallbackIssuerMismatch {
            expected: p.issuer.clone(),
            found: iss.to_owned(),
        }),
    }
}

/// The claims of a validated ID token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdClaims {
    pub issuer: String,
    pub subject: String,
    /// Entra object id (= Graph `user.id`); with `tid` the stable account key.
    pub oid: Option<String>,
    pub tid: Option<String>,
    /// Usually the UPN; mutable, for display and hints only.
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    /// Not verified by Entra: never use it for authorization.
    pub email: Option<String>,
    /// Every claim of the token, for the "Test sign-in" page.
    pub all: serde_json::Map<String, serde_json::Value>,
}

/// Checks the callback's `iss` (RFC 9207) *before* redeeming its code, then `finish`es. Prefer this over
/// `finish`: it is the only place the `iss` parameter is checked.
#[expect(
    clippy::too_many_arguments,
    reason = "the public API of the protocol core, documented in docs/oidc.md"
)]
pub async fn finish_callback(
    http: &reqwest::Client,
    jwks: &JwksCache,
    p: &OidcProvider,
    c: &ClientConfig,
    callback: &Callback,
    pkce_verifier: &str,
    expected_nonce: &str,
    now: Millis,
) -> Result<IdClaims, OidcError> {
    check_callback_issuer(p, callback)?;
    let claims = finish(
        http,
        jwks,
        p,
        c,
        &callback.code,
        pkce_verifier,
        expected_nonce,
        now,
    )
    .await?;
    if let Some(iss) = &callback.iss
        && *iss != claims.issuer
    {
        return Err(OidcError::CallbackIssuerMismatch {
            expected: claims.issuer,
            found: iss.clone(),
        });
    }
    Ok(claims)
}

/// Redeems the code (with the PKCE verifier, client secret by `client_auth`) and validates the ID token.
/// `now` is the caller's clock, used for `exp`/`iat`/`nbf` and for the JWKS refetch rate limit.
#[expect(
    clippy::too_many_arguments,
    reason = "the public API of the protocol core, documented in docs/oidc.md"
)]
pub async fn finish(
    http: &reqwest::Client,
    jwks: &JwksCache,
    p: &OidcProvider,
    c: &ClientConfig,
    code: &str,
    pkce_verifier: &str,
    expected_nonce: &str,
    now: Millis,
) -> Result<IdClaims, OidcError> {
    let raw = redeem(http, p, c, code, pkce_verifier).await?;
    verify::validate_id_token(http, jwks, p, c, &raw, expected_nonce, now).await
}

/// The token response with the ID token kept as text: openidconnect's own response type parses the ID token
/// while reading the response, so a token with `alg: none` would be a parse error instead of a refusal we can
/// name, and the validation steps would be out of our hands.
#[derive(Debug, Serialize, Deserialize)]
struct RawTokenResponse {
    access_token: AccessToken,
    token_type: RawTokenType,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
    #[serde(skip)]
    scopes: Option<Vec<Scope>>,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct RawTokenType(String);

impl openidconnect::TokenType for RawTokenType {}

impl OAuth2TokenResponse for RawTokenResponse {
    type TokenType = RawTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &RawTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<std::time::Duration> {
        self.expires_in.map(std::time::Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

impl
    openidconnect::TokenResponse<
        EmptyAdditionalClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    > for RawTokenResponse
{
    /// Always `None`: the raw text is in `id_token` and is validated by `verify`.
    fn id_token(
        &self,
    ) -> Option<
        &IdToken<
            EmptyAdditionalClaims,
            CoreGenderClaim,
            CoreJweContentEncryptionAlgorithm,
            CoreJwsSigningAlgorithm,
        >,
    > {
        None
    }
}

type RedeemClient = openidconnect::Client<
    EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    RawTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

/// Redeems the authorization code at the token endpoint and returns the raw ID token.
async fn redeem(
    http: &reqwest::Client,
    p: &OidcProvider,
    c: &ClientConfig,
    code: &str,
    pkce_verifier: &str,
) -> Result<String, OidcError> {
    let client: RedeemClient = openidconnect::Client::new(
        ClientId::new(c.client_id.clone()),
        issuer_url(&p.issuer)?,
        CoreJsonWebKeySet::new(Vec::new()),
    )
    .set_client_secret(ClientSecret::new(
        c.client_secret.expose_secret().to_owned(),
    ))
    .set_auth_type(client_auth(p)?)
    .set_token_uri(TokenUrl::new(p.token_endpoint.clone()).map_err(config_err("token_endpoint"))?)
    .set_redirect_uri(
        RedirectUrl::new(c.redirect_uri.clone()).map_err(config_err("redirect_uri"))?,
    );
    let http_client = http::Reqwest(http);
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .set_redirect_uri(Cow::Owned(
            RedirectUrl::new(c.redirect_uri.clone()).map_err(config_err("redirect_uri"))?,
        ))
        .request_async(&http_client)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => OidcError::TokenEndpoint {
                error: r.error().as_ref().to_owned(),
                description: r.error_description().cloned(),
            },
            RequestTokenError::Request(e) => OidcError::Network(e.to_string()),
            RequestTokenError::Parse(e, _) => OidcError::Network(format!(
                "the token endpoint's answer is not a token response: {e}"
            )),
            RequestTokenError::Other(e) => OidcError::Network(e),
        })?;
    response.id_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        OidcError::Malformed("the token endpoint answered without an ID token".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_appends_the_well_known_path() {
        assert_eq!(
            discovery_url("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/"),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://op.example/.well-known/openid-configuration"),
            "https://op.example/.well-known/openid-configuration"
        );
    }

    #[test]
    fn endpoints_must_be_https_except_on_loopback() {
        assert!(parse_endpoint("x", "https://op.example/a").is_ok());
        assert!(parse_endpoint("x", "http://127.0.0.1:8080/a").is_ok());
        assert!(parse_endpoint("x", "http://[::1]:8080/a").is_ok());
        assert!(parse_endpoint("x", "http://op.example/a").is_err());
        assert!(parse_endpoint("x", "ftp://op.example/a").is_err());
    }

    fn provider(methods: &[&str]) -> OidcProvider {
        OidcProvider {
            issuer: "https://op.example".into(),
            authorization_endpoint: "https://op.example/auth".into(),
            token_endpoint: "https://op.example/token".into(),
            jwks_uri: "https://op.example/jwks".into(),
            userinfo_endpoint: None,
            end_session_endpoint: None,
            token_endpoint_auth_methods_supported: methods
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            id_token_signing_alg_values_supported: vec!["RS256".into()],
            code_challenge_methods_supported: Vec::new(),
            authorization_response_iss_parameter_supported: false,
        }
    }

    #[test]
    fn client_authentication_prefers_basic_then_post() {
        assert!(matches!(
            client_auth(&provider(&[])),
            Ok(AuthType::BasicAuth)
        ));
        assert!(matches!(
            client_auth(&provider(&["client_secret_post", "client_secret_basic"])),
            Ok(AuthType::BasicAuth)
        ));
        assert!(matches!(
            client_auth(&provider(&["client_secret_post"])),
            Ok(AuthType::RequestBody)
        ));
        assert!(client_auth(&provider(&["private_key_jwt"])).is_err());
    }

    #[test]
    fn callback_with_code_and_state() {
        let cb = parse_callback("?code=abc&state=xyz&iss=https%3A%2F%2Fop.example").unwrap();
        assert_eq!(cb.code, "abc");
        assert_eq!(cb.state, "xyz");
        assert_eq!(cb.iss.as_deref(), Some("https://op.example"));
        let cb = parse_callback("https://rp.example/oidc/callback?code=a&state=b").unwrap();
        assert_eq!(
            (cb.code.as_str(), cb.state.as_str(), cb.iss),
            ("a", "b", None)
        );
    }

    #[test]
    fn callback_refusals() {
        assert!(matches!(
            parse_callback("code=a"),
            Err(OidcError::BadCallback(_))
        ));
        assert!(matches!(
            parse_callback("state=a"),
            Err(OidcError::BadCallback(_))
        ));
        assert!(matches!(
            parse_callback("code=a&state=b&code=c"),
            Err(OidcError::BadCallback(_))
        ));
        let e = parse_callback("error=access_denied&error_description=User+cancelled&state=s1")
            .unwrap_err();
        assert_eq!(
            e,
            OidcError::Provider {
                error: "access_denied".into(),
                description: Some("User cancelled".into()),
                state: Some("s1".into())
            }
        );
        assert_eq!(e.code(), "access_denied");
        assert!(
            e.to_string()
                .starts_with("The sign-in was cancelled or refused")
        );
    }

    #[test]
    fn callback_issuer_check() {
        let mut p = provider(&[]);
        let cb = |iss: Option<&str>| Callback {
            code: "c".into(),
            state: "s".into(),
            iss: iss.map(str::to_owned),
        };
        assert_eq!(check_callback_issuer(&p, &cb(None)), Ok(()));
        assert_eq!(
            check_callback_issuer(&p, &cb(Some("https://op.example"))),
            Ok(())
        );
        assert!(check_callback_issuer(&p, &cb(Some("https://evil.example"))).is_err());
        p.authorization_response_iss_parameter_supported = true;
        assert!(check_callback_issuer(&p, &cb(None)).is_err());
        p.issuer = "https://login.microsoftonline.com/{tenantid}/v2.0".into();
        assert_eq!(
            check_callback_issuer(&p, &cb(Some("https://login.microsoftonline.com/t1/v2.0"))),
            Ok(())
        );
    }

    #[test]
    fn start_builds_a_code_pkce_request() {
        let c = ClientConfig {
            client_id: "roster".into(),
            client_secret: SecretString::from("s"),
            redirect_uri: "https://rp.example/oidc/callback".into(),
            allowed_tenants: Vec::new(),
        };
        let s = start(&provider(&[]), &c, Some("alice@contoso.test")).unwrap();
        let url = url::Url::parse(&s.authorize_url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["response_mode"], "query");
        assert_eq!(q["scope"], "openid profile email");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], s.state);
        assert_eq!(q["nonce"], s.nonce);
        assert_eq!(q["login_hint"], "alice@contoso.test");
        assert_eq!(q["redirect_uri"], c.redirect_uri);
        // The challenge is the S256 of the verifier we keep.
        use base64::Engine;
        use sha2::Digest;
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(s.pkce_verifier.as_bytes()));
        assert_eq!(q["code_challenge"], expected);
        let other = start(&provider(&[]), &c, None).unwrap();
        assert_ne!(other.state, s.state);
        assert_ne!(other.nonce, s.nonce);
    }
}
