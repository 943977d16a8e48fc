//! The SAML IdP peer: tests/peers/python/saml_idp.py (pysaml2 + xmlsec1) in its own process on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct SamlIdp {
    pub base_url: String,
    child: Child,
    client: reqwest::Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/.venv/bin/python");
    assert!(
        py.exists(),
        "the Python test peers are not installed ({} is missing): run `make test-deps`",
        py.display()
    );
    assert!(
        Path::new("/usr/bin/xmlsec1").exists(),
        "xmlsec1 is missing (pysaml2 signs with it): run `make test-deps`"
    );
    py
}

impl SamlIdp {
    /// Starts an IdP that knows one SP (`sp_entity_id`, ACS `acs_url`) and waits until it listens.
    pub async fn start(sp_entity_id: &str, acs_url: &str) -> SamlIdp {
        let (entity, acs) = (sp_entity_id.to_owned(), acs_url.to_owned());
        tokio::task::spawn_blocking(move || Self::start_blocking(&entity, &acs))
            .await
            .unwrap()
    }

    fn start_blocking(sp_entity_id: &str, acs_url: &str) -> SamlIdp {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("idp.log");
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/saml_idp.py");
        let mut child = Command::new(python())
            .arg(script)
            .args([
                "--port",
                "0",
                "--sp-entity-id",
                sp_entity_id,
                "--sp-acs",
                acs_url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the SAML IdP peer (run `make test-deps`)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line.trim().strip_prefix("READY port=").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SAML IdP peer did not start (run `make test-deps`): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        SamlIdp {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The IdP metadata with the certificates selected by the `metadata_certs` switch.
    pub async fn metadata_xml(&self) -> String {
        self.get_text(&format!("{}/metadata", self.base_url)).await
    }

    /// The IdP metadata listing `certs` = primary | secondary | both.
    pub async fn metadata_xml_with(&self, certs: &str) -> String {
        self.get_text(&format!("{}/metadata?certs={certs}", self.base_url))
            .await
    }

    async fn get_text(&self, url: &str) -> String {
        let r = self.client.get(url).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(
            status.is_success(),
            "GET {url}: {status} {body}\n{}",
            self.log_text()
        );
        body
    }

    /// Sets fault switches for the next responses (see saml_idp.py); `{"reset": true}` restores defaults.
    pub async fn set(&self, control: serde_json::Value) {
        let r = self
            .client
            .post(format!("{}/control", self.base_url))
            .json(&control)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(
            status.is_success(),
            "POST /control {control}: {status} {body}"
        );
    }

    /// Follows our AuthnRequest redirect as user `user` without a browser and returns the SAMLResponse
    /// (base64) and RelayState from the auto-submitting form.
    pub async fn response_for(&self, redirect_url: &str, user: &str) -> (String, String) {
        let url = format!("{redirect_url}&auto_user={user}");
        let html = self.get_text(&url).await;
        let response = form_value(&html, "SAMLResponse")
            .unwrap_or_else(|| panic!("no SAMLResponse in the IdP's page: {html}"));
        let relay = form_value(&html, "RelayState").unwrap_or_default();
        (response, relay)
    }
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

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SamlIdp {
    /// Like `start`, with the peer's `--users` (inline JSON: username -> attributes such as `upn`), for users
    /// whose names the default set does not have.
    pub async fn start_with_users(sp_entity_id: &str, acs_url: &str, users_json: &str) -> SamlIdp {
        let args = [
            "--port".to_owned(),
            "0".to_owned(),
            "--sp-entity-id".to_owned(),
            sp_entity_id.to_owned(),
            "--sp-acs".to_owned(),
            acs_url.to_owned(),
            "--users".to_owned(),
            users_json.to_owned(),
        ];
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("idp.log");
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/python/saml_idp.py");
            let mut child = Command::new(python())
                .arg(script)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start the SAML IdP peer (run `make test-deps`)");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let Some(port) = line.trim().strip_prefix("READY port=").map(str::to_owned) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the SAML IdP peer did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            SamlIdp {
                base_url: format!("http://127.0.0.1:{port}"),
                child,
                client: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
                log,
                _dir: dir,
            }
        })
        .await
        .unwrap()
    }
}
