//! SAML and OIDC: the protocol cores called in a loop on real peer output (pysaml2, node oidc-provider), and
//! POST /saml/acs end to end.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use roster::clock::{Clock, SystemClock};
use roster::identity::oidc::{self, ClientConfig, JwksCache};
use roster::identity::saml::{
    DEFAULT_CLOCK_SKEW_MS, Expectations, SpConfig, authn_request_redirect, parse_idp_metadata,
    verify_response,
};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::load::percentile;
use crate::procs::{self, Proc};
use crate::web::Web;

fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    json!({
        "n": ms.len(),
        "mean_ms": mean,
        "p50_ms": percentile(&ms, 50.0),
        "p99_ms": percentile(&ms, 99.0),
        "min_ms": ms.first().copied().unwrap_or(f64::NAN),
        "max_ms": ms.last().copied().unwrap_or(f64::NAN),
    })
}

pub struct SamlIdp {
    _proc: Proc,
    pub base: String,
}

fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

impl SamlIdp {
    pub fn start(repo: &Path, sp_entity: &str, acs: &str, log: &Path) -> anyhow::Result<Self> {
        let py = repo.join("tests/peers/python/.venv/bin/python");
        if !py.exists() {
            bail!(
                "{} is missing: run scripts/install-test-deps.sh",
                py.display()
            );
        }
        let mut cmd = Command::new(py);
        cmd.arg(repo.join("tests/peers/python/saml_idp.py")).args([
            "--port",
            "0",
            "--sp-entity-id",
            sp_entity,
            "--sp-acs",
            acs,
        ]);
        let (proc, line) = procs::spawn("saml_idp.py", cmd, log, true)?;
        let port = line
            .strip_prefix("READY port=")
            .with_context(|| format!("unexpected first line from the SAML IdP: {line}"))?;
        Ok(Self {
            _proc: proc,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The SAMLResponse and RelayState the IdP posts back for `user`.
    pub async fn respond(
        &self,
        redirect_url: &str,
        user: &str,
    ) -> anyhow::Result<(String, String)> {
        let html = reqwest::get(format!("{redirect_url}&auto_user={user}"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        let response = form_value(&html, "SAMLResponse").context("no SAMLResponse in the page")?;
        Ok((
            response,
            form_value(&html, "RelayState").unwrap_or_default(),
        ))
    }
}

/// `verify_response` on one real pysaml2-signed response, `n` times (after 20 warm-up calls).
pub async fn saml_verify(repo: &Path, logs: &Path, n: usize) -> anyhow::Result<Value> {
    let sp = SpConfig::from_base_url("https://roster.bench");
    let idp = SamlIdp::start(repo, &sp.entity_id, &sp.acs_url, &logs.join("saml_idp.log"))?;
    let metadata = reqwest::get(format!("{}/metadata", idp.base))
        .await?
        .text()
        .await?;
    let desc = parse_idp_metadata(&metadata)?;
    let out = authn_request_redirect(&sp, &desc.sso_url, "rs-1", SystemClock.now_ms())?;
    let (response, _) = idp.respond(&out.redirect_url, "alice").await?;
    let verify = || {
        verify_response(
            &response,
            &Expectations {
                sp: &sp,
                idp_entity_id: &desc.entity_id,
                trusted_certs: &desc.signing_certs,
                expected_request_id: &out.request_id,
                now: SystemClock.now_ms(),
                clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
            },
        )
    };
    for _ in 0..20 {
        verify()?;
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        verify()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut v = summary(ms);
    v["response_bytes"] = json!(response.len());
    Ok(v)
}

/// POST /saml/acs end to end on a running Roster whose generic SAML IdP is `idp`: each iteration starts a
/// sign-in in a fresh browser session (untimed), lets the IdP answer (untimed), and times the ACS POST.
pub async fn saml_acs(base: &str, idp: &SamlIdp, n: usize) -> anyhow::Result<Value> {
    let mut ms = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let mut browser = Web::new(base)?;
        let started = browser.post_form("/sso/start", &[]).await?;
        let to_idp = started.location.context("no redirect to the IdP")?;
        let (response, relay) = idp.respond(&to_idp, "alice").await?;
        let t = Instant::now();
        let acs = browser
            .post_raw(
                "/saml/acs",
                &[
                    ("SAMLResponse", response.as_str()),
                    ("RelayState", relay.as_str()),
                ],
            )
            .await?;
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        if acs.status != 303
            || !acs
                .location
                .as_deref()
                .unwrap_or("")
                .starts_with("/sso/complete")
        {
            let snippet: String = acs.body.chars().take(400).collect();
            bail!(
                "POST /saml/acs answered {} {:?}: {snippet}",
                acs.status,
                acs.location
            );
        }
        if i >= 2 {
            ms.push(elapsed);
        }
    }
    Ok(summary(ms))
}

const OIDC_CLIENT: &str = "roster-bench-client";
const OIDC_SECRET: &str = "a-long-client-secret-for-the-oidc-peer-0123456789";
const OIDC_REDIRECT: &str = "http://127.0.0.1:9/oidc/callback";
const OIDC_TENANT: &str = "4f0c7c2e-6b1a-4d51-9d0f-2b2a3c4d5e6f";

fn form_action(page: &str) -> Option<String> {
    let start = page.find("<form")?;
    let rest = &page[start..];
    let a = rest.find("action=\"")? + "action=\"".len();
    let end = rest[a..].find('"')?;
    Some(rest[a..a + end].replace("&amp;", "&"))
}

/// Drives oidc-provider's dev login and consent pages as `account`; returns the redirect URI it sends
/// the browser to.
async fn oidc_login(authorize_url: &str, account: &str) -> anyhow::Result<String> {
    let mut web = Web::new("http://unused")?;
    let mut url = reqwest::Url::parse(authorize_url)?;
    for _ in 0..20 {
        let page = web.get(url.as_str()).await?;
        let mut page = if page.status / 100 == 3 {
            page
        } else {
            let prompt = if page.body.contains(r#"name="prompt" value="login""#) {
                "login"
            } else if page.body.contains(r#"name="prompt" value="consent""#) {
                "consent"
            } else {
                bail!("neither a login nor a consent page at {url}");
            };
            let action = url.join(&form_action(&page.body).unwrap_or_else(|| url.to_string()))?;
            let mut form = vec![("prompt", prompt)];
            if prompt == "login" {
                form.extend([("login", account), ("password", "any-password")]);
            }
            web.post_raw(action.as_str(), &form).await?
        };
        while page.status / 100 == 3 {
            let next = url.join(
                page.location
                    .as_deref()
                    .context("redirect without Location")?,
            )?;
            if next.as_str().starts_with(OIDC_REDIRECT) {
                return Ok(next.to_string());
            }
            url = next;
            page = web.get(url.as_str()).await?;
        }
    }
    bail!("the OIDC peer did not come back to the redirect URI")
}

/// `finish_callback` (code redemption + ID token validation) against the node peer, `n` sign-ins.
/// The first call also fetches the JWKS (reported as `cold_ms`).
pub async fn oidc_callback(repo: &Path, logs: &Path, n: usize) -> anyhow::Result<Value> {
    let dir = repo.join("tests/peers/node");
    if !dir.join("node_modules/oidc-provider").is_dir() {
        bail!("the node peer is not installed: run scripts/install-test-deps.sh");
    }
    let accounts = json!({"alice": {"oid": "9a1b2c3d-0000-4000-8000-00000000a11c", "tid": OIDC_TENANT,
        "preferred_username": "alice@contoso.test", "name": "Alice Adams", "email": "alice@contoso.test"}});
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("oidc_provider.mjs"))
        .args([
            "--port",
            "0",
            "--client-id",
            OIDC_CLIENT,
            "--client-secret",
            OIDC_SECRET,
        ])
        .args([
            "--redirect-uri",
            OIDC_REDIRECT,
            "--accounts",
            &accounts.to_string(),
        ])
        .current_dir(&dir);
    let (_proc, line) = procs::spawn("oidc_provider.mjs", cmd, &logs.join("oidc_peer.log"), true)?;
    let issuer = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("issuer="))
        .with_context(|| format!("unexpected first line from the OIDC peer: {line}"))?
        .to_owned();
    let http = oidc::http_client()?;
    let provider = oidc::discover(&http, &issuer).await?;
    let client = ClientConfig {
        client_id: OIDC_CLIENT.into(),
        client_secret: SecretString::from(OIDC_SECRET),
        redirect_uri: OIDC_REDIRECT.into(),
        allowed_tenants: vec![OIDC_TENANT.into()],
    };
    let jwks = JwksCache::new();
    let mut ms = Vec::new();
    let mut cold = f64::NAN;
    for i in 0..=n {
        let started = oidc::start(&provider, &client, None)?;
        let back = oidc_login(&started.authorize_url, "alice").await?;
        let callback = oidc::parse_callback(&back)?;
        let t = Instant::now();
        oidc::finish_callback(
            &http,
            &jwks,
            &provider,
            &client,
            &callback,
            &started.pkce_verifier,
            &started.nonce,
            SystemClock.now_ms(),
        )
        .await?;
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        if i == 0 {
            cold = elapsed;
        } else {
            ms.push(elapsed);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut v = summary(ms);
    v["cold_ms"] = json!(cold);
    Ok(v)
}
