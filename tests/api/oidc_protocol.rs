//! The OpenID Connect protocol core (roster::identity::oidc) against a real node `oidc-provider` peer: the
//! happy path and one refusal per check, each produced by the peer's fault switches.

use roster::clock::{Clock, MINUTE, Millis, SECOND, SystemClock};
use roster::identity::oidc::{
    self, AuthStart, Callback, ClientConfig, IdClaims, JwksCache, OidcError, OidcProvider,
};
use secrecy::SecretString;
use serde_json::json;

use crate::oidc_peer::{self, OidcPeer};

const CLIENT_ID: &str = "roster-test-client";
const CLIENT_SECRET: &str = "a-long-client-secret-for-the-oidc-peer-0123456789";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oidc/callback";
const TENANT: &str = "4f0c7c2e-6b1a-4d51-9d0f-2b2a3c4d5e6f";
const OTHER_TENANT: &str = "11111111-2222-3333-4444-555555555555";
const ALICE_OID: &str = "9a1b2c3d-0000-4000-8000-00000000a11c";

fn accounts() -> String {
    json!({
        "alice": {
            "oid": ALICE_OID, "tid": TENANT, "preferred_username": "alice@contoso.test",
            "name": "Alice Adams", "email": "alice@contoso.test"
        },
        "bob": {
            "oid": "9a1b2c3d-0000-4000-8000-000000000b0b", "tid": OTHER_TENANT,
            "preferred_username": "bob@fabrikam.test", "name": "Bob Brown", "email": "bob@fabrikam.test"
        }
    })
    .to_string()
}

fn now() -> Millis {
    SystemClock.now_ms()
}

/// A relying party wired to its own peer.
struct Rp {
    peer: OidcPeer,
    http: reqwest::Client,
    jwks: JwksCache,
    provider: OidcProvider,
    client: ClientConfig,
}

async fn rp() -> Rp {
    rp_with(JwksCache::new()).await
}

async fn rp_with(jwks: JwksCache) -> Rp {
    let peer = oidc_peer::start(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, &accounts()).await;
    let http = oidc::http_client().unwrap();
    let provider = oidc::discover(&http, &peer.issuer).await.unwrap();
    Rp {
        peer,
        http,
        jwks,
        provider,
        client: ClientConfig {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            redirect_uri: REDIRECT_URI.into(),
            allowed_tenants: vec![TENANT.into()],
        },
    }
}

impl Rp {
    /// Starts a sign-in and lets `account` log in at the peer; returns what we stored and the callback.
    async fn sign_in(&self, account: &str) -> (AuthStart, Callback) {
        let started = oidc::start(&self.provider, &self.client, None).unwrap();
        let back = self
            .peer
            .login_without_browser(&started.authorize_url, account)
            .await;
        let callback = oidc::parse_callback(&back).unwrap();
        assert_eq!(callback.state, started.state, "the peer returns our state");
        (started, callback)
    }

    async fn finish(
        &self,
        started: &AuthStart,
        callback: &Callback,
        at: Millis,
    ) -> Result<IdClaims, OidcError> {
        oidc::finish_callback(
            &self.http,
            &self.jwks,
            &self.provider,
            &self.client,
            callback,
            &started.pkce_verifier,
            &started.nonce,
            at,
        )
        .await
    }

    /// A whole sign-in of `account`, finished at `at`.
    async fn attempt_at(&self, account: &str, at: Millis) -> Result<IdClaims, OidcError> {
        let (started, callback) = self.sign_in(account).await;
        self.finish(&started, &callback, at).await
    }

    async fn attempt(&self, account: &str) -> Result<IdClaims, OidcError> {
        self.attempt_at(account, now()).await
    }

    /// The next token response carries `fault`; the sign-in must be refused.
    async fn refused_with_fault(&self, fault: &str) -> OidcError {
        self.peer.control(json!({ "fault": fault })).await;
        self.attempt("alice")
            .await
            .expect_err("the forged token must be refused")
    }

    async fn refused_with_claims(&self, claims: serde_json::Value) -> OidcError {
        self.peer.control(json!({ "claims": claims })).await;
        self.attempt("alice")
            .await
            .expect_err("the altered token must be refused")
    }

    async fn jwks_requests(&self) -> u64 {
        self.peer.state().await["jwks_requests"].as_u64().unwrap()
    }
}

#[tokio::test]
async fn oidc_discovery_reads_the_peer_metadata() {
    // Arrange
    let peer = oidc_peer::start(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, &accounts()).await;
    let http = oidc::http_client().unwrap();

    // Act
    let p = oidc::discover(&http, &peer.issuer).await.unwrap();
    let missing = oidc::discover(&http, &format!("{}/nowhere", peer.issuer)).await;

    // Assert
    assert_eq!(
        oidc::discovery_url(&peer.issuer),
        format!("{}/.well-known/openid-configuration", peer.issuer)
    );
    assert_eq!(p.issuer, peer.issuer);
    assert_eq!(p.authorization_endpoint, format!("{}/auth", peer.issuer));
    assert_eq!(p.token_endpoint, format!("{}/token", peer.issuer));
    assert_eq!(p.jwks_uri, format!("{}/jwks", peer.issuer));
    assert!(p.authorization_response_iss_parameter_supported);
    assert!(!p.is_multi_tenant());
    let cached: OidcProvider = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(
        cached, p,
        "the metadata survives a JSON round trip (cached in the DB)"
    );
    assert!(
        matches!(missing, Err(OidcError::Discovery(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn oidc_code_flow_with_pkce_returns_the_claims() {
    let rp = rp().await;

    let claims = rp.attempt("alice").await.unwrap();

    assert_eq!(claims.issuer, rp.peer.issuer);
    assert_eq!(claims.subject, "alice");
    assert_eq!(claims.oid.as_deref(), Some(ALICE_OID));
    assert_eq!(claims.tid.as_deref(), Some(TENANT));
    assert_eq!(
        claims.preferred_username.as_deref(),
        Some("alice@contoso.test")
    );
    assert_eq!(claims.name.as_deref(), Some("Alice Adams"));
    assert_eq!(claims.email.as_deref(), Some("alice@contoso.test"));
    assert_eq!(claims.all["aud"], json!(CLIENT_ID));
    assert!(claims.all.contains_key("nonce"));
    assert_eq!(rp.jwks_requests().await, 1);
}

#[tokio::test]
async fn oidc_pkce_is_sent_and_required() {
    let rp = rp().await;

    // The verifier is sent: redeeming with another verifier is refused by the peer.
    let (started, callback) = rp.sign_in("alice").await;
    let other = AuthStart {
        pkce_verifier: "x".repeat(43),
        ..started.clone()
    };
    let wrong = rp.finish(&other, &callback, now()).await;
    // The peer requires PKCE: the same request without a challenge is refused before any login.
    let started2 = oidc::start(&rp.provider, &rp.client, None).unwrap();
    let mut url = reqwest::Url::parse(&started2.authorize_url).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    let without = oidc::parse_callback(&rp.peer.login_without_browser(url.as_str(), "alice").await);

    assert!(
        matches!(&wrong, Err(OidcError::TokenEndpoint { error, .. }) if error == "invalid_grant"),
        "{wrong:?}"
    );
    assert!(
        matches!(&without, Err(OidcError::Provider { error, .. }) if error == "invalid_request"),
        "{without:?}"
    );
}

#[tokio::test]
async fn oidc_refuses_alg_none() {
    let rp = rp().await;
    let err = rp.refused_with_fault("alg_none").await;
    assert_eq!(err, OidcError::UnsupportedAlg("none".into()));
    assert_eq!(err.code(), "unsupported_alg");
}

#[tokio::test]
async fn oidc_refuses_hs256_signed_with_the_client_secret() {
    let rp = rp().await;
    let err = rp.refused_with_fault("hs256_client_secret").await;
    assert_eq!(err, OidcError::UnsupportedAlg("HS256".into()));
}

#[tokio::test]
async fn oidc_refuses_a_wrong_audience() {
    let rp = rp().await;
    let err = rp.refused_with_fault("wrong_aud").await;
    assert_eq!(err, OidcError::WrongAudience);
    assert_eq!(
        err.to_string(),
        "The sign-in answer was meant for another application (wrong audience)."
    );
}

#[tokio::test]
async fn oidc_extra_audiences_need_azp_equal_to_the_client_id() {
    let rp = rp().await;

    let without_azp = rp
        .refused_with_claims(json!({ "aud": [CLIENT_ID, "other-app"] }))
        .await;
    let other_azp = rp
        .refused_with_claims(json!({ "aud": [CLIENT_ID, "other-app"], "azp": "other-app" }))
        .await;
    rp.peer
        .control(json!({ "claims": { "aud": [CLIENT_ID, "other-app"], "azp": CLIENT_ID } }))
        .await;
    let with_azp = rp.attempt("alice").await;

    assert_eq!(without_azp, OidcError::WrongAuthorizedParty);
    assert_eq!(other_azp, OidcError::WrongAuthorizedParty);
    assert!(with_azp.is_ok(), "{with_azp:?}");
}

#[tokio::test]
async fn oidc_refuses_a_wrong_issuer() {
    let rp = rp().await;
    let err = rp.refused_with_fault("wrong_iss").await;
    assert!(
        matches!(&err, OidcError::WrongIssuer { expected, found }
            if *expected == rp.peer.issuer && found == "https://attacker.example/v2.0"),
        "{err:?}"
    );
}

#[tokio::test]
async fn oidc_refuses_an_expired_token() {
    let rp = rp().await;

    let err = rp.refused_with_fault("expired").await;
    // A valid token is expired by the caller's clock two hours later (the peer's tokens live one hour).
    let later = rp.attempt_at("alice", now() + 2 * 60 * MINUTE).await;
    // ...but not within the five-minute skew after a fresh token.
    let fine = rp.attempt_at("alice", now() + 4 * MINUTE).await;

    assert_eq!(err, OidcError::Expired);
    assert_eq!(later, Err(OidcError::Expired));
    assert!(fine.is_ok(), "{fine:?}");
}

#[tokio::test]
async fn oidc_refuses_a_token_issued_in_the_future() {
    let rp = rp().await;

    let err = rp.refused_with_fault("iat_future").await;
    // The caller's clock ten minutes behind the provider makes a fresh token "from the future".
    let behind = rp.attempt_at("alice", now() - 10 * MINUTE).await;

    assert_eq!(err, OidcError::IssuedInFuture);
    assert_eq!(behind, Err(OidcError::IssuedInFuture));
}

#[tokio::test]
async fn oidc_refuses_a_token_not_valid_yet() {
    let rp = rp().await;
    let err = rp.refused_with_fault("nbf_future").await;
    assert_eq!(err, OidcError::NotYetValid);
}

#[tokio::test]
async fn oidc_refuses_a_wrong_nonce() {
    let rp = rp().await;

    let forged = rp.refused_with_fault("wrong_nonce").await;
    // A genuine token checked against another sign-in's nonce (an injected code).
    let (started, callback) = rp.sign_in("alice").await;
    let other = oidc::start(&rp.provider, &rp.client, None).unwrap();
    let swapped = AuthStart {
        nonce: other.nonce,
        ..started
    };
    let injected = rp.finish(&swapped, &callback, now()).await;

    assert_eq!(forged, OidcError::WrongNonce);
    assert_eq!(injected, Err(OidcError::WrongNonce));
}

#[tokio::test]
async fn oidc_refuses_a_key_not_in_the_jwks_after_one_rate_limited_refetch() {
    let rp = rp().await;
    let t0 = now();
    rp.attempt_at("alice", t0).await.unwrap();
    assert_eq!(rp.jwks_requests().await, 1);

    rp.peer.control(json!({ "fault": "unknown_kid" })).await;
    let first = rp.attempt_at("alice", t0 + 61 * SECOND).await;
    let after_first = rp.jwks_requests().await;
    rp.peer.control(json!({ "fault": "unknown_kid" })).await;
    let second = rp.attempt_at("alice", t0 + 62 * SECOND).await;
    let after_second = rp.jwks_requests().await;

    assert!(
        matches!(&first, Err(OidcError::UnknownKey(Some(kid))) if kid.starts_with("unknown-")),
        "{first:?}"
    );
    assert_eq!(after_first, 2, "an unknown kid refetches the JWKS once");
    assert!(
        matches!(&second, Err(OidcError::UnknownKey(_))),
        "{second:?}"
    );
    assert_eq!(after_second, 2, "the refetch is rate-limited");
}

#[tokio::test]
async fn oidc_refuses_a_signature_by_another_key_with_the_same_kid() {
    let rp = rp().await;
    let err = rp.refused_with_fault("wrong_key_same_kid").await;
    assert_eq!(err, OidcError::BadSignature);
    assert_eq!(rp.jwks_requests().await, 1, "a known kid does not refetch");
}

#[tokio::test]
async fn oidc_key_rotation_refetches_the_jwks_at_most_once_a_minute() {
    let rp = rp().await;
    let t0 = now();
    rp.attempt_at("alice", t0).await.unwrap();

    // The provider starts signing with a new key; our cached JWKS (fetched at t0) lacks it.
    let rotated = rp.peer.control(json!({ "rotate_key": true })).await["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let too_soon = rp.attempt_at("alice", t0 + SECOND).await;
    let requests_too_soon = rp.jwks_requests().await;
    let after_a_minute = rp.attempt_at("alice", t0 + 61 * SECOND).await;
    let requests_after_a_minute = rp.jwks_requests().await;
    let again = rp.attempt_at("alice", t0 + 62 * SECOND).await;

    assert_eq!(too_soon, Err(OidcError::UnknownKey(Some(rotated))));
    assert_eq!(
        requests_too_soon, 1,
        "rate-limited: no refetch within a minute of the last fetch"
    );
    assert!(after_a_minute.is_ok(), "{after_a_minute:?}");
    assert_eq!(requests_after_a_minute, 2);
    assert!(again.is_ok(), "the refetched keys are cached: {again:?}");
    assert_eq!(rp.jwks_requests().await, 2);
}

#[tokio::test]
async fn oidc_jwks_refetch_interval_is_configurable() {
    let rp = rp_with(JwksCache::with_refetch_interval(0)).await;
    let t0 = now();
    rp.attempt_at("alice", t0).await.unwrap();
    rp.peer.control(json!({ "rotate_key": true })).await;

    let rotated = rp.attempt_at("alice", t0).await;

    assert!(rotated.is_ok(), "{rotated:?}");
    assert_eq!(rp.jwks_requests().await, 2);
}

#[tokio::test]
async fn oidc_error_callback_is_parsed_into_plain_words() {
    let rp = rp().await;
    let started = oidc::start(&rp.provider, &rp.client, None).unwrap();

    let back = rp.peer.deny_without_browser(&started.authorize_url).await;
    let err = oidc::parse_callback(&back).unwrap_err();

    assert!(
        matches!(&err, OidcError::Provider { error, state, .. }
            if error == "access_denied" && state.as_deref() == Some(started.state.as_str())),
        "{err:?}"
    );
    assert_eq!(err.code(), "access_denied");
    assert!(
        err.to_string()
            .starts_with("The sign-in was cancelled or refused at the identity provider."),
        "{err}"
    );
}

#[tokio::test]
async fn oidc_refuses_a_callback_from_another_issuer_before_redeeming_the_code() {
    let rp = rp().await;
    let (started, callback) = rp.sign_in("alice").await;
    assert_eq!(callback.iss.as_deref(), Some(rp.peer.issuer.as_str()));

    let mixed_up = Callback {
        iss: Some("https://attacker.example".into()),
        ..callback.clone()
    };
    let refused = rp.finish(&started, &mixed_up, now()).await;
    let missing = rp
        .finish(
            &started,
            &Callback {
                iss: None,
                ..callback.clone()
            },
            now(),
        )
        .await;
    let redeemed_so_far = rp.peer.state().await["token_requests"].as_u64().unwrap();
    // The code was not spent by the refusals: the genuine callback still works.
    let genuine = rp.finish(&started, &callback, now()).await;

    assert!(
        matches!(&refused, Err(OidcError::CallbackIssuerMismatch { found, .. }) if found == "https://attacker.example"),
        "{refused:?}"
    );
    assert!(
        matches!(&missing, Err(OidcError::CallbackIssuerMismatch { .. })),
        "the peer advertises RFC 9207, so iss is required: {missing:?}"
    );
    assert_eq!(redeemed_so_far, 0);
    assert!(genuine.is_ok(), "{genuine:?}");
}

#[tokio::test]
async fn oidc_refuses_a_tenant_not_allowed() {
    let mut rp = rp().await;

    let bob = rp.attempt("bob").await;
    let no_tid = rp.refused_with_claims(json!({ "tid": null })).await;
    rp.client.allowed_tenants = Vec::new();
    let anyone = rp.attempt("bob").await;

    assert_eq!(
        bob,
        Err(OidcError::TenantNotAllowed(Some(OTHER_TENANT.into())))
    );
    assert_eq!(no_tid, OidcError::TenantNotAllowed(None));
    assert!(
        anyone.is_ok(),
        "an empty list allows any tenant: {anyone:?}"
    );
}

#[tokio::test]
async fn oidc_tenantid_issuer_template_is_filled_with_the_tokens_tid() {
    // Arrange: the /common authority publishes "issuer": "http://127.0.0.1:P/{tenantid}/v2.0"; the peer then
    // issues tokens with iss = http://127.0.0.1:P/<tid>/v2.0 and no callback iss (as Entra does).
    let mut rp = rp().await;
    let exact = rp.provider.clone();
    rp.provider = oidc::discover(&rp.http, &format!("{}/common/v2.0", rp.peer.issuer))
        .await
        .unwrap();
    rp.peer.control(json!({ "issuer_mode": "tenant" })).await;
    let tenant_issuer = format!("{}/{TENANT}/v2.0", rp.peer.issuer);

    // Act
    let accepted = rp.attempt("alice").await;
    let other_iss = rp
        .refused_with_claims(json!({ "iss": format!("{}/{OTHER_TENANT}/v2.0", rp.peer.issuer) }))
        .await;
    let other_tid = rp.refused_with_claims(json!({ "tid": OTHER_TENANT })).await;
    let no_tid = rp.refused_with_claims(json!({ "tid": null })).await;
    let bob = rp.attempt("bob").await;
    let template_iss = rp
        .refused_with_claims(json!({ "iss": format!("{}/{{tenantid}}/v2.0", rp.peer.issuer) }))
        .await;
    // (RFC 9207 off: in tenant mode the peer sends no callback iss, and this case is about the token's iss.)
    rp.provider = OidcProvider {
        authorization_response_iss_parameter_supported: false,
        ..exact
    };
    let exact_provider = rp.attempt("alice").await;

    // Assert
    assert_eq!(
        rp.peer.state().await["issuer_mode"],
        json!("tenant"),
        "the peer really issued tenant-form issuers"
    );
    let claims = accepted.unwrap();
    assert_eq!(claims.issuer, tenant_issuer);
    assert_eq!(claims.tid.as_deref(), Some(TENANT));
    assert!(
        matches!(&other_iss, OidcError::WrongIssuer { expected, .. } if *expected == tenant_issuer),
        "{other_iss:?}"
    );
    assert!(
        matches!(&other_tid, OidcError::WrongIssuer { expected, found }
            if *expected == format!("{}/{OTHER_TENANT}/v2.0", rp.peer.issuer) && *found == tenant_issuer),
        "{other_tid:?}"
    );
    assert!(
        matches!(&no_tid, OidcError::WrongIssuer { .. }),
        "{no_tid:?}"
    );
    assert_eq!(
        bob,
        Err(OidcError::TenantNotAllowed(Some(OTHER_TENANT.into())))
    );
    assert!(
        matches!(&template_iss, OidcError::WrongIssuer { .. }),
        "{template_iss:?}"
    );
    assert!(
        matches!(&exact_provider, Err(OidcError::WrongIssuer { expected, .. }) if *expected == rp.peer.issuer),
        "a single-tenant issuer is compared exactly: {exact_provider:?}"
    );
}
