//! Starts the node `oidc-provider` test peer (tests/peers/node/oidc_provider.mjs) on 127.0.0.1 and drives its
//! dev login and consent pages without a browser.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

/// A running peer; the node process is killed when this is dropped.
pub struct OidcPeer {
    /// `http://127.0.0.1:PORT`, exactly as the provider puts it in `iss`.
    pub issuer: String,
    pub redirect_uri: String,
    child: Child,
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/node")
}

/// Starts the peer with one confidential client and the given accounts
/// (`{"alice": {"oid": …, "tid": …, "preferred_username": …, "name": …, "email": …}}`).
pub async fn start(
    client_id: &str,
    client_secret: &str,
    redirect_uri: &str,
    accounts_json: &str,
) -> OidcPeer {
    let dir = peers_dir();
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the node test peer `oidc-provider` is not installed in {}; run `make test-deps` \
         (or `npm ci --prefix tests/peers/node`)",
        dir.display()
    );
    let verbose = std::env::var_os("TEST_LOG").is_some();
    let mut child = Command::new("node")
        .arg(dir.join("oidc_provider.mjs"))
        .args(["--port", "0", "--client-id", client_id, "--client-secret", client_secret])
        .args(["--redirect-uri", redirect_uri, "--accounts", accounts_json])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if verbose { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node for the OIDC peer ({e}); is Node.js installed? run `make test-deps`"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep draining so the peer never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            panic!(
                "the OIDC peer did not print its READY line ({other:?}); run with TEST_LOG=1 to see its stderr"
            )
        }
    };
    let issuer = line
        .strip_prefix("READY ")
        .and_then(|rest| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix("issuer="))
        })
        .unwrap_or_else(|| panic!("unexpected first line from the OIDC peer: {line}"))
        .to_owned();
    OidcPeer {
        issuer,
        redirect_uri: redirect_uri.to_owned(),
        child,
    }
}

impl OidcPeer {
    /// Sets fault switches (see the header of oidc_provider.mjs) and returns the peer's switch state.
    pub async fn control(&self, json: Value) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/__control", self.issuer))
            .json(&json)
            .send()
            .await
            .expect("the OIDC peer's control endpoint answers");
        assert_eq!(resp.status(), StatusCode::OK, "control {json} was refused");
        resp.json().await.expect("control answers JSON")
    }

    /// The peer's switch state and counters (`jwks_requests`, `token_requests`, `kid`).
    pub async fn state(&self) -> Value {
        reqwest::Client::new()
            .get(format!("{}/__control", self.issuer))
            .send()
            .await
            .expect("the OIDC peer's control endpoint answers")
            .json()
            .await
            .expect("control answers JSON")
    }

    /// Follows `authorize_url` through the dev login (as `account`) and consent pages with a cookie jar and
    /// returns the redirect URI URL the provider sends the browser to (with `code`, `state` and `iss`, or
    /// an `error`).
    pub async fn login_without_browser(&self, authorize_url: &str, account: &str) -> String {
        self.drive(authorize_url, Some(account)).await
    }

    /// Follows `authorize_url` to the login page and presses its abort link: the provider answers the redirect
    /// URI with `error=access_denied`.
    pub async fn deny_without_browser(&self, authorize_url: &str) -> String {
        self.drive(authorize_url, None).await
    }

    async fn drive(&self, authorize_url: &str, account: Option<&str>) -> String {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let mut url = reqwest::Url::parse(authorize_url).expect("authorize URL");
        for _ in 0..20 {
            let resp = http
                .get(url.clone())
                .send()
                .await
                .expect("the OIDC peer answers");
            let mut resp = if resp.status().is_redirection() {
                resp
            } else {
                let status = resp.status();
                let page = resp.text().await.unwrap_or_default();
                assert_eq!(status, StatusCode::OK, "unexpected page at {url}: {page}");
                let prompt = if page.contains(r#"name="prompt" value="login""#) {
                    "login"
                } else if page.contains(r#"name="prompt" value="consent""#) {
                    "consent"
                } else {
                    panic!("neither a login nor a consent page at {url}: {page}")
                };
                let Some(account) = account else {
                    // Abort: the dev pages' "[ Cancel ]" link.
                    url = reqwest::Url::parse(&format!(
                        "{}/abort",
                        url.as_str().trim_end_matches('/')
                    ))
                    .expect("abort URL");
                    continue;
                };
                let action = form_action(&page).unwrap_or_else(|| url.to_string());
                let action = url.join(&action).expect("form action");
                let mut form = vec![("prompt", prompt)];
                if prompt == "login" {
                    form.extend([("login", account), ("password", "any-password")]);
                }
                http.post(action)
                    .form(&form)
                    .send()
                    .await
                    .expect("the OIDC peer answers")
            };
            // Follow one redirect; stop at the redirect URI.
            while resp.status().is_redirection() {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .expect("a redirect has a Location")
                    .to_owned();
                let next = url.join(&location).expect("Location is a URL");
                if next.as_str().starts_with(&self.redirect_uri) {
                    return next.to_string();
                }
                url = next;
                resp = http
                    .get(url.clone())
                    .send()
                    .await
                    .expect("the OIDC peer answers");
            }
            if resp.status() == StatusCode::OK {
                // A page again: loop back and let the top of the loop fetch it (cheap, and keeps one code path).
                continue;
            }
            panic!("unexpected answer {} at {url}", resp.status());
        }
        panic!(
            "the OIDC peer did not send the browser back to {} within 20 steps",
            self.redirect_uri
        )
    }
}

fn form_action(page: &str) -> Option<String> {
    let start = page.find("<form")?;
    let rest = &page[start..];
    let a = rest.find("action=\"")? + "action=\"".len();
    let end = rest[a..].find('"')?;
    Some(rest[a..a + end].replace("&amp;", "&"))
}
