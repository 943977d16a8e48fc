//! Every way an OpenID Connect sign-in can be refused, with a stable code for logs and plain words for people.

/// Why a discovery, a sign-in start or a sign-in answer was refused.
///
/// `code()` is a stable snake_case name for logs and the audit trail; `Display` is a sentence for the person
/// signing in or the admin on the "Test sign-in" page. Neither ever contains a token, a code or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider's OpenID configuration could not be read or is not usable.
    #[error("The identity provider's OpenID configuration could not be used: {0}")]
    Discovery(String),
    /// The client settings (redirect URI, endpoints) are not valid URLs.
    #[error("The OpenID Connect settings are not valid: {0}")]
    Config(String),
    /// The provider's signing keys (JWKS) could not be fetched or read.
    #[error("The identity provider's signing keys could not be read: {0}")]
    Jwks(String),
    /// The token endpoint could not be reached or answered something that is not a token response.
    #[error("The identity provider could not be reached to finish the sign-in: {0}")]
    Network(String),
    /// The token endpoint refused to redeem the code (`error` and `error_description` of RFC 6749 5.2).
    #[error("The identity provider refused to finish the sign-in ({error}{}).", describe(.description))]
    TokenEndpoint {
        error: String,
        description: Option<String>,
    },
    /// The provider sent the browser back with an error instead of a code.
    #[error("{}", provider_error_words(.error, .description))]
    Provider {
        error: String,
        description: Option<String>,
        /// The `state` of the answer, so the caller can close the pending request.
        state: Option<String>,
    },
    /// The browser came back without a usable code or state.
    #[error("The sign-in answer is incomplete or malformed: {0}.")]
    BadCallback(String),
    /// The callback's RFC 9207 `iss` parameter names another provider (mix-up attack or misconfiguration).
    #[error(
        "The sign-in answer came from another identity provider than the one the sign-in was started with \
         (expected {expected}, got {found})."
    )]
    CallbackIssuerMismatch { expected: String, found: String },
    /// The ID token is missing or cannot be read as a signed JWT.
    #[error("The sign-in answer could not be read: {0}.")]
    Malformed(String),
    /// The ID token is not signed with RS256 (this includes `none` and HMAC algorithms such as HS256).
    #[error(
        "The sign-in answer is signed with an algorithm that is not accepted ({0}); only RS256 is."
    )]
    UnsupportedAlg(String),
    /// No key of the provider's published key set has the token's key id, even after refreshing the set.
    #[error(
        "The sign-in answer is signed with a key the identity provider does not publish (key id {})."
        , .0.as_deref().unwrap_or("none")
    )]
    UnknownKey(Option<String>),
    /// The RS256 signature does not verify with the provider's key.
    #[error("The sign-in answer's signature is not valid; it may have been forged or altered.")]
    BadSignature,
    /// `iss` differs from the discovered issuer (after `{tenantid}` substitution).
    #[error(
        "The sign-in answer was issued by another identity provider (wrong issuer: expected {expected}, got {found})."
    )]
    WrongIssuer { expected: String, found: String },
    /// `aud` does not contain this application's client id.
    #[error("The sign-in answer was meant for another application (wrong audience).")]
    WrongAudience,
    /// `azp` is present (or required because of several audiences) and is not this application's client id.
    #[error("The sign-in answer was requested by another application (wrong authorized party).")]
    WrongAuthorizedParty,
    /// `exp` is in the past (beyond the allowed clock skew).
    #[error(
        "The sign-in answer has expired. Start the sign-in again; if this repeats, check the server's clock."
    )]
    Expired,
    /// `iat` is in the future (beyond the allowed clock skew).
    #[error(
        "The sign-in answer claims to be issued in the future; the clocks of this server and the identity provider \
         disagree."
    )]
    IssuedInFuture,
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error(
        "The sign-in answer is not valid yet; the clocks of this server and the identity provider disagree."
    )]
    NotYetValid,
    /// `nonce` is missing or differs from the one sent with this sign-in (replayed or injected answer).
    #[error(
        "The sign-in answer does not belong to this sign-in attempt (wrong nonce). Start again."
    )]
    WrongNonce,
    /// `tid` is missing or not in the allowed tenant list.
    #[error("Accounts from this organization (tenant {}) may not sign in here.", .0.as_deref().unwrap_or("unknown"))]
    TenantNotAllowed(Option<String>),
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn provider_error_words(error: &str, description: &Option<String>) -> String {
    let words = match error {
        "access_denied" => "The sign-in was cancelled or refused at the identity provider.",
        "login_required" | "interaction_required" => {
            "The identity provider needs you to sign in interactively."
        }
        "consent_required" => {
            "The identity provider needs consent before this application may sign you in."
        }
        "account_selection_required" => "The identity provider needs you to choose an account.",
        "temporarily_unavailable" => {
            "The identity provider is temporarily unavailable. Try again in a moment."
        }
        "server_error" => "The identity provider had an internal error. Try again in a moment.",
        "unauthorized_client" | "invalid_client" => {
            "The identity provider does not allow this application to sign people in; check its registration."
        }
        "invalid_request"
        | "invalid_scope"
        | "unsupported_response_type"
        | "invalid_request_uri" => {
            "The identity provider refused the sign-in request as invalid; check the provider settings."
        }
        _ => "The identity provider refused the sign-in.",
    };
    format!("{words} (error {error}{})", describe(description))
}

impl OidcError {
    /// A stable snake_case name for logs and the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Discovery(_) => "discovery_failed",
            OidcError::Config(_) => "bad_config",
            OidcError::Jwks(_) => "jwks_unavailable",
            OidcError::Network(_) => "token_endpoint_unreachable",
            OidcError::TokenEndpoint { .. } => "token_endpoint_error",
            OidcError::Provider { error, .. } => match error.as_str() {
                "access_denied" => "access_denied",
                "login_required" => "login_required",
                "interaction_required" => "interaction_required",
                "consent_required" => "consent_required",
                "account_selection_required" => "account_selection_required",
                "temporarily_unavailable" => "temporarily_unavailable",
                "server_error" => "server_error",
                "unauthorized_client" => "unauthorized_client",
                "invalid_request" => "invalid_request",
                _ => "provider_error",
            },
            OidcError::BadCallback(_) => "bad_callback",
            OidcError::CallbackIssuerMismatch { .. } => "callback_issuer_mismatch",
            OidcError::Malformed(_) => "malformed_token",
            OidcError::UnsupportedAlg(_) => "unsupported_alg",
            OidcError::UnknownKey(_) => "unknown_key",
            OidcError::BadSignature => "bad_signature",
            OidcError::WrongIssuer { .. } => "wrong_issuer",
            OidcError::WrongAudience => "wrong_audience",
            OidcError::WrongAuthorizedParty => "wrong_azp",
            OidcError::Expired => "expired",
            OidcError::IssuedInFuture => "issued_in_future",
            OidcError::NotYetValid => "not_yet_valid",
            OidcError::WrongNonce => "wrong_nonce",
            OidcError::TenantNotAllowed(_) => "tenant_not_allowed",
        }
    }
}
