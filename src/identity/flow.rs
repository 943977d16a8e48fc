//! The sign-in flows: start (redirect to the IdP), the IdP's answer (SAML ACS or OIDC callback), and the
//! completion in the browser that started it.
//!
//! The answer arrives as a cross-site request (SAML's POST carries no SameSite=Lax cookie), so each sign-in
//! in flight is a server-side row keyed by the SAML request id or the OIDC `state`. The answer is checked
//! and recorded there; then the browser is sent to `/sso/complete`, a same-site GET that does carry our
//! cookies, where the row's browser binding (a random value set as a cookie when the sign-in started) must
//! match. That stops a response obtained by someone else from signing this browser in (login CSRF).

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::{MINUTE, Millis, SECOND};
use crate::db::ids::{constant_time_eq, random_token, token_hash};
use crate::identity::model::{IdpKind, Purpose};
use crate::identity::repo::{self, IdpRow, NewSsoRequest, SsoRequestRow};
use crate::identity::service::{oidc_settings, saml_settings};
use crate::identity::{oidc, saml};
use crate::web::{AppState, RequestMeta};

/// How long a sign-in may take at the IdP.
pub const REQUEST_LIFETIME: Millis = 10 * MINUTE;
/// The cookie that ties a sign-in to the browser that started it.
pub const BINDING_COOKIE: &str = "roster_sso";

/// The service provider's own identity, derived from the base URL.
pub fn sp_config(state: &AppState) -> saml::SpConfig {
    let base = state.base_url.as_str().trim_end_matches('/');
    saml::SpConfig {
        entity_id: format!("{base}/saml/metadata"),
        acs_url: format!("{base}/saml/acs"),
    }
}

pub fn oidc_redirect_uri(state: &AppState) -> String {
    format!(
        "{}/oidc/callback",
        state.base_url.as_str().trim_end_matches('/')
    )
}

/// A refusal, in words for the person and a code for the log and audit.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Where to send the browser to start signing in, and the binding cookie's value.
pub struct Started {
    pub redirect_url: String,
    pub binding: String,
}

pub enum StartError {
    Refused(Refusal),
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for StartError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

/// The provider used for a purpose: the enabled one with the matching toggle (tests may use any saved one).
pub async fn provider_for(
    state: &AppState,
    purpose: Purpose,
    kind: Option<IdpKind>,
) -> anyhow::Result<Option<IdpRow>> {
    let row = match (purpose, kind) {
        (Purpose::Test, Some(k)) => repo::find_provider(&state.db.pool, k.key()).await?,
        _ => repo::find_enabled(&state.db.pool).await?,
    };
    Ok(row.filter(|r| match purpose {
        Purpose::Admin => r.is_enabled() && r.use_for_admin != 0,
        Purpose::Register => r.is_enabled() && r.use_for_registration != 0,
        Purpose::Test => true,
    }))
}

/// Starts a sign-in through `row` for `purpose`. `relay` carries what the completion needs (the
/// invitation for a registration); `admin_id` is the admin running a test.
pub async fn start(
    state: &AppState,
    row: &IdpRow,
    purpose: Purpose,
    relay: Option<&str>,
    admin_id: Option<&str>,
) -> Result<Started, StartError> {
    let now = state.clock.now_ms();
    let kind = IdpKind::from_key(&row.kind)
        .ok_or_else(|| anyhow::anyhow!("unknown IdP kind {}", row.kind))?;
    let binding = random_token(32)?;
    let binding_hash = token_hash(&binding);
    let (id, redirect_url, nonce, verifier) = if kind.is_saml() {
        let s = saml_settings(row)?;
        let out = saml::authn_request_redirect(&sp_config(state), &s.sso_url, purpose.key(), now)
            .map_err(|e| anyhow::anyhow!("building the SAML request: {e}"))?;
        (out.request_id, out.redirect_url, None, None)
    } else {
        let (provider, client) = oidc_client(state, row).await?;
        let s = oidc::start(&provider, &client, None)
            .map_err(|e| anyhow::anyhow!("starting the OpenID Connect sign-in: {e}"))?;
        let sealed = state
            .master_key
            .seal(&SecretString::from(s.pkce_verifier.clone()))?;
        (s.state, s.authorize_url, Some(s.nonce), Some(sealed))
    };
    repo::create_sso_request(
        &state.db.pool,
        &NewSsoRequest {
            id: &id,
            kind: kind.key(),
            purpose: purpose.key(),
            binding_hash: &binding_hash,
            nonce: nonce.as_deref(),
            pkce_verifier: verifier.as_deref(),
            relay,
            admin_id,
            expires_at: now + REQUEST_LIFETIME,
        },
        now,
    )
    .await?;
    Ok(Started {
        redirect_url,
        binding,
    })
}

/// The OIDC provider metadata (cached at save; rediscovered when missing) and the client settings.
async fn oidc_client(
    state: &AppState,
    row: &IdpRow,
) -> anyhow::Result<(oidc::OidcProvider, oidc::ClientConfig)> {
    let settings = oidc_settings(row)?;
    let provider = match row
        .discovered
        .as_deref()
        .and_then(|d| serde_json::from_str::<oidc::OidcProvider>(d).ok())
    {
        Some(p) => p,
        None => {
            let p = oidc::discover(&state.identity.http, &settings.authority())
                .await
                .map_err(|e| anyhow::anyhow!("reading the OpenID configuration: {e}"))?;
            repo::store_discovered(&state.db.pool, &row.kind, &serde_json::to_string(&p)?).await?;
            p
        }
    };
    // A multi-tenant authority (`organizations`, `common`) accepts tokens of any tenant: unless the admin
    // named one, only the synced tenant (the Entra ID User Source's) is allowed.
    let mut allowed_tenants = settings.allowed_tenants();
    if allowed_tenants.is_empty()
        && settings.cloud != "custom"
        && let Some(src) = crate::settings::repo::find_source(
            &state.db.pool,
            crate::settings::model::ENTRA_SOURCE_ID,
        )
        .await?
    {
        allowed_tenants.push(src.settings.tenant_id.to_ascii_lowercase());
    }
    let secret = match &row.client_secret_sealed {
        Some(s) => state.master_key.open(s)?,
        None => SecretString::from(String::new()),
    };
    Ok((
        provider,
        oidc::ClientConfig {
            client_id: settings.client_id.clone(),
            client_secret: secret,
            redirect_uri: oidc_redirect_uri(state),
            allowed_tenants,
        },
    ))
}

/// What came back from the IdP and which directory user it names.
struct Answer {
    claims: Value,
    user_id: Option<String>,
    display: String,
}

/// Records a refusal: log line, audit row, and (when the request is known) the row the browser will read.
async fn refuse(
    state: &AppState,
    meta: &RequestMeta,
    request: Option<&SsoRequestRow>,
    kind: &str,
    r: &Refusal,
) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    tracing::warn!(idp = kind, reason = %r.code, detail = %r.message, "Sign-in through the identity provider refused.");
    audit_repo::insert(
        &state.db.pool,
        &AuditEvent::new(now, Actor::Anonymous, AuditAction::SsoRefused)
            .target("identity_provider", kind)
            .from_request(meta)
            .details(json!({
                "reason": r.code,
                "message": r.message,
                "purpose": request.map(|q| q.purpose.clone()),
            })),
    )
    .await?;
    if let Some(q) = request {
        repo::answer_sso_request(
            &state.db.pool,
            &q.id,
            "refused",
            Some(&format!("{}|{}", r.code, r.message)),
            None,
            None,
            now,
        )
        .await?;
    }
    Ok(())
}

/// The result of handling an IdP's answer: go on to the completion page, or show a refusal right away
/// (when the answer cannot be tied to a sign-in of ours).
pub enum Handled {
    Continue { request_id: String },
    Refused(Refusal),
}

async fn pending_request(
    state: &AppState,
    id: Option<&str>,
    saml_expected: bool,
) -> anyhow::Result<Result<SsoRequestRow, Refusal>> {
    let now = state.clock.now_ms();
    let unknown = || {
        Refusal::new(
            "unknown_request",
            "This sign-in answer does not belong to a sign-in started here, or it was used already. \
             Start again from the sign-in page.",
        )
    };
    let Some(id) = id else {
        return Ok(Err(if saml_expected {
            Refusal::new(
                "unsolicited",
                "The identity provider sent a sign-in that Roster did not ask for (IdP-initiated sign-in is \
                 turned off). Start from Roster's sign-in page instead.",
            )
        } else {
            unknown()
        }));
    };
    let Some(row) = repo::find_sso_request(&state.db.pool, id).await? else {
        return Ok(Err(unknown()));
    };
    let kind_is_saml = IdpKind::from_key(&row.kind).is_some_and(IdpKind::is_saml);
    // A SAML request answered already is still verified, so that a replayed response is refused as a
    // replay (by the assertion-id cache) rather than as an unknown request.
    if (row.answered_at.is_some() && !saml_expected) || kind_is_saml != saml_expected {
        return Ok(Err(unknown()));
    }
    if row.expires_at < now {
        return Ok(Err(Refusal::new(
            "request_expired",
            "This sign-in took too long and has expired. Start again from the sign-in page.",
        )));
    }
    Ok(Ok(row))
}

/// Handles a SAML response POSTed to the ACS.
pub async fn handle_saml_response(
    state: &AppState,
    meta: &RequestMeta,
    saml_response: &str,
) -> anyhow::Result<Handled> {
    let peeked = match saml::peek_in_response_to(saml_response) {
        Ok(id) => id,
        Err(e) => {
            let r = Refusal::new(e.code(), e.to_string());
            refuse(state, meta, None, "saml", &r).await?;
            return Ok(Handled::Refused(r));
        }
    };
    let request = match pending_request(state, peeked.as_deref(), true).await? {
        Ok(r) => r,
        Err(r) => {
            refuse(state, meta, None, "saml", &r).await?;
            return Ok(Handled::Refused(r));
        }
    };
    match check_saml(state, &request, saml_response).await? {
        Ok(answer) => accept(state, meta, &request, answer).await,
        Err(r) if request.answered_at.is_some() => {
            // Nothing more to record on a request that was answered already.
            refuse(state, meta, None, &request.kind, &r).await?;
            Ok(Handled::Refused(r))
        }
        Err(r) => {
            refuse(state, meta, Some(&request), &request.kind, &r).await?;
            Ok(Handled::Continue {
                request_id: request.id,
            })
        }
    }
}

async fn check_saml(
    state: &AppState,
    request: &SsoRequestRow,
    saml_response: &str,
) -> anyhow::Result<Result<Answer, Refusal>> {
    let Some(row) = repo::find_provider(&state.db.pool, &request.kind).await? else {
        return Ok(Err(Refusal::new(
            "idp_removed",
            "The identity provider was removed while you were signing in.",
        )));
    };
    let settings = saml_settings(&row)?;
    let certs: Vec<saml::IdpCert> = repo::list_certificates(&state.db.pool, &row.kind)
        .await?
        .into_iter()
        .map(|c| saml::IdpCert {
            der_b64: c.der_b64,
            subject: c.subject,
            not_after: c.not_after,
            fingerprint_sha256: c.fingerprint,
        })
        .collect();
    let sp = sp_config(state);
    let now = state.clock.now_ms();
    let verified = saml::verify_response(
        saml_response,
        &saml::Expectations {
            sp: &sp,
            idp_entity_id: &settings.entity_id,
            trusted_certs: &certs,
            expected_request_id: &request.id,
            now,
            clock_skew_ms: settings.clock_skew_secs * SECOND,
        },
    );
    let v = match verified {
        Ok(v) => v,
        Err(e) => return Ok(Err(Refusal::new(e.code(), e.to_string()))),
    };
    // Replay cache: each assertion id is accepted once, remembered until it expires.
    let keep_until = v.not_on_or_after.max(now) + settings.clock_skew_secs * SECOND;
    if !repo::remember_assertion(&state.db.pool, &v.assertion_id, keep_until).await? {
        return Ok(Err(Refusal::new(
            "replayed",
            "This sign-in answer was used before. Start again from the sign-in page.",
        )));
    }
    let attr = |name: &str| {
        v.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, vals)| vals.first().cloned())
    };
    let candidate = attr(&settings.match_attribute).or_else(|| v.name_id.clone());
    let user_id = match &candidate {
        Some(name) => find_user_by_upn(state, name).await?,
        None => None,
    };
    let attributes: serde_json::Map<String, Value> = v
        .attributes
        .iter()
        .map(|(n, vals)| (n.clone(), json!(vals)))
        .collect();
    Ok(Ok(Answer {
        claims: json!({
            "protocol": "SAML 2.0",
            "issuer": v.issuer,
            "name_id": v.name_id,
            "signed": format!("{:?}", v.signed_element),
            "matched_on": settings.match_attribute,
            "attributes": attributes,
        }),
        user_id,
        display: candidate.unwrap_or_else(|| "(no name in the answer)".into()),
    }))
}

async fn find_user_by_upn(state: &AppState, upn: &str) -> anyhow::Result<Option<String>> {
    Ok(repo::find_user_id_by_upn(&state.db.pool, upn).await?)
}

async fn find_user_by_external_id(state: &AppState, oid: &str) -> anyhow::Result<Option<String>> {
    Ok(repo::find_user_id_by_external_id(&state.db.pool, oid).await?)
}

/// Handles the OIDC redirect back to `/oidc/callback` (its raw query string).
pub async fn handle_oidc_callback(
    state: &AppState,
    meta: &RequestMeta,
    query: &str,
) -> anyhow::Result<Handled> {
    let cb = oidc::parse_callback(query);
    let state_param = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned());
    let request = match pending_request(state, state_param.as_deref(), false).await? {
        Ok(r) => r,
        Err(mut r) => {
            if r.code == "unknown_request" {
                r = Refusal::new(
                    "wrong_state",
                    "This sign-in answer does not match a sign-in started in this browser (wrong or reused \
                     state). Start again from the sign-in page.",
                );
            }
            refuse(state, meta, None, "entra", &r).await?;
            return Ok(Handled::Refused(r));
        }
    };
    let callback = match cb {
        Ok(c) => c,
        Err(e) => {
            refuse(
                state,
                meta,
                Some(&request),
                &request.kind,
                &Refusal::new(e.code(), e.to_string()),
            )
            .await?;
            return Ok(Handled::Continue {
                request_id: request.id,
            });
        }
    };
    match check_oidc(state, &request, &callback).await? {
        Ok(answer) => accept(state, meta, &request, answer).await,
        Err(r) => {
            refuse(state, meta, Some(&request), &request.kind, &r).await?;
            Ok(Handled::Continue {
                request_id: request.id,
            })
        }
    }
}

async fn check_oidc(
    state: &AppState,
    request: &SsoRequestRow,
    callback: &oidc::Callback,
) -> anyhow::Result<Result<Answer, Refusal>> {
    let Some(row) = repo::find_provider(&state.db.pool, &request.kind).await? else {
        return Ok(Err(Refusal::new(
            "idp_removed",
            "The identity provider was removed while you were signing in.",
        )));
    };
    let (provider, client) = oidc_client(state, &row).await?;
    let verifier = match &request.pkce_verifier {
        Some(s) => state.master_key.open(s)?,
        None => {
            return Ok(Err(Refusal::new(
                "unknown_request",
                "This sign-in was used already.",
            )));
        }
    };
    // `finish_callback` checks the callback's `iss` (RFC 9207) before the code is spent.
    let claims = match oidc::finish_callback(
        &state.identity.http,
        &state.identity.jwks,
        &provider,
        &client,
        callback,
        verifier.expose_secret(),
        request.nonce.as_deref().unwrap_or_default(),
        state.clock.now_ms(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return Ok(Err(Refusal::new(e.code(), e.to_string()))),
    };
    let mut user_id = None;
    if let Some(oid) = &claims.oid {
        user_id = find_user_by_external_id(state, oid).await?;
    }
    if user_id.is_none()
        && let Some(upn) = &claims.preferred_username
    {
        user_id = find_user_by_upn(state, upn).await?;
    }
    let display = claims
        .preferred_username
        .clone()
        .or_else(|| claims.name.clone())
        .unwrap_or_else(|| claims.subject.clone());
    Ok(Ok(Answer {
        claims: json!({
            "protocol": "OpenID Connect",
            "issuer": claims.issuer,
            "claims": Value::Object(claims.all.clone()),
        }),
        user_id,
        display,
    }))
}

async fn accept(
    state: &AppState,
    meta: &RequestMeta,
    request: &SsoRequestRow,
    answer: Answer,
) -> anyhow::Result<Handled> {
    let now = state.clock.now_ms();
    let mut claims = answer.claims;
    claims["display"] = json!(answer.display);
    let recorded = repo::answer_sso_request(
        &state.db.pool,
        &request.id,
        "ok",
        None,
        Some(&claims.to_string()),
        answer.user_id.as_deref(),
        now,
    )
    .await?;
    if !recorded {
        let r = Refusal::new(
            "replayed",
            "This sign-in answer was used already. Start again from the sign-in page.",
        );
        refuse(state, meta, None, &request.kind, &r).await?;
        return Ok(Handled::Refused(r));
    }
    Ok(Handled::Continue {
        request_id: request.id.clone(),
    })
}

/// What the completion page does for the browser that started the sign-in.
pub enum Completion {
    /// Sign this admin in.
    Admin {
        admin_id: String,
        username: String,
    },
    /// Show an admin's test result.
    TestResult {
        request_id: String,
    },
    /// A registration's identity was confirmed (or not); the invitations area decides.
    Register {
        relay: String,
        user_id: Option<String>,
        display: String,
    },
    Refused(Refusal),
}

/// Completes a sign-in in the browser that started it (checked with the binding cookie), once.
pub async fn complete(
    state: &AppState,
    meta: &RequestMeta,
    request_id: &str,
    binding: Option<&str>,
) -> anyhow::Result<Completion> {
    let now = state.clock.now_ms();
    let Some(row) = repo::find_sso_request(&state.db.pool, request_id).await? else {
        return Ok(Completion::Refused(Refusal::new(
            "unknown_request",
            "This sign-in is unknown or has expired. Start again from the sign-in page.",
        )));
    };
    let bound = binding
        .is_some_and(|b| constant_time_eq(token_hash(b).as_bytes(), row.binding_hash.as_bytes()));
    if !bound {
        let r = Refusal::new(
            "wrong_browser",
            "This sign-in was started in another browser (or its cookie is missing). Start again from the \
             sign-in page in this browser.",
        );
        refuse(state, meta, None, &row.kind, &r).await?;
        return Ok(Completion::Refused(r));
    }
    if !repo::complete_sso_request(&state.db.pool, request_id, now).await? {
        return Ok(Completion::Refused(Refusal::new(
            "unknown_request",
            "This sign-in was completed already. Start again from the sign-in page.",
        )));
    }
    if row.outcome.as_deref() != Some("ok") {
        if Purpose::from_key(&row.purpose) == Some(Purpose::Test) {
            return Ok(Completion::TestResult { request_id: row.id });
        }
        let (code, message) = row
            .refusal
            .as_deref()
            .and_then(|r| r.split_once('|'))
            .unwrap_or(("refused", "The sign-in was refused."));
        return Ok(Completion::Refused(Refusal::new(code, message)));
    }
    let claims: Value = row
        .claims
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null);
    let display = claims["display"].as_str().unwrap_or_default().to_owned();
    match Purpose::from_key(&row.purpose) {
        Some(Purpose::Test) => Ok(Completion::TestResult { request_id: row.id }),
        Some(Purpose::Register) => Ok(Completion::Register {
            relay: row.relay.unwrap_or_default(),
            user_id: row.matched_user_id,
            display,
        }),
        Some(Purpose::Admin) => admin_completion(state, meta, &row, &display).await,
        None => Ok(Completion::Refused(Refusal::new(
            "unknown_request",
            "Unknown sign-in.",
        ))),
    }
}

async fn admin_completion(
    state: &AppState,
    meta: &RequestMeta,
    row: &SsoRequestRow,
    display: &str,
) -> anyhow::Result<Completion> {
    let now = state.clock.now_ms();
    let Some(user_id) = &row.matched_user_id else {
        let r = Refusal::new(
            "unknown_user",
            format!(
                "You signed in as {display}, but Roster does not know this user. Ask an administrator to check \
                 that your account is synced from the directory."
            ),
        );
        refuse(state, meta, None, &row.kind, &r).await?;
        return Ok(Completion::Refused(r));
    };
    // Only an active user counts: not disabled in the directory, still synced, not deleted.
    let upn = repo::find_active_upn(&state.db.pool, user_id).await?;
    let admin = match &upn {
        Some(u) => crate::auth::repo::find_admin_by_username(&state.db.pool, u).await?,
        None => None,
    };
    match admin {
        Some(a) if !a.disabled => {
            crate::auth::repo::touch_last_login(&state.db.pool, &a.id, now).await?;
            audit_repo::insert(
                &state.db.pool,
                &AuditEvent::new(
                    now,
                    Actor::Admin {
                        id: a.id.clone(),
                        name: a.username.clone(),
                    },
                    AuditAction::SsoSignIn,
                )
                .target("identity_provider", row.kind.clone())
                .from_request(meta)
                .details(json!({ "user": display })),
            )
            .await?;
            Ok(Completion::Admin {
                admin_id: a.id,
                username: a.username,
            })
        }
        _ => {
            let r = Refusal::new(
                "not_an_admin",
                format!(
                    "You signed in as {display}, but this account is not a Roster administrator. Administrators \
                     are the admin accounts whose username is the user's UPN."
                ),
            );
            refuse(state, meta, None, &row.kind, &r).await?;
            Ok(Completion::Refused(r))
        }
    }
}
