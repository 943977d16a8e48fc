//! A signed-in browser without a browser: cookies kept by hand, the CSRF token read from pages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

pub struct Web {
    pub base: String,
    pub client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

pub fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

impl Web {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(120))
                .build()?,
            cookies: BTreeMap::new(),
        })
    }

    /// `path` under the base URL, or `path` itself when it is a whole URL.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// The `Cookie` header value this client sends.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let pair = v.split(';').next().unwrap_or_default();
            if let Some((k, val)) = pair.split_once('=') {
                if val.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(k.trim());
                } else {
                    self.cookies.insert(k.trim().to_owned(), val.to_owned());
                }
            }
        }
    }

    async fn finish(&mut self, resp: reqwest::Response) -> anyhow::Result<Page> {
        self.keep_cookies(&resp);
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await?;
        Ok(Page {
            status,
            location,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Page> {
        let resp = self
            .client
            .get(self.url(path))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        self.finish(resp).await
    }

    pub async fn post_raw(&mut self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        let resp = self
            .client
            .post(self.url(path))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        self.finish(resp).await
    }

    /// The session's CSRF token (from the login page, or the dashboard once signed in).
    pub async fn csrf(&mut self) -> anyhow::Result<String> {
        let login = self.get("/login").await?;
        let html = if login.status == 303 {
            self.get("/admin").await?.body
        } else {
            login.body
        };
        csrf_in(&html).context("no CSRF field on the page")
    }

    /// POSTs a form with this session's CSRF token; expects a 303.
    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        let token = self.csrf().await?;
        let mut all = form.to_vec();
        all.push(("csrf_token", &token));
        let page = self.post_raw(path, &all).await?;
        if page.status != 303 {
            let snippet: String = page.body.chars().take(600).collect();
            bail!(
                "POST {path} answered {} instead of 303: {snippet}",
                page.status
            );
        }
        Ok(page)
    }

    pub async fn login(&mut self, username: &str, password: &str) -> anyhow::Result<()> {
        let page = self
            .post_form("/login", &[("username", username), ("password", password)])
            .await?;
        if page.location.as_deref() != Some("/admin") {
            bail!("sign-in went to {:?}, not /admin", page.location);
        }
        Ok(())
    }

    /// Waits until `/healthz` answers.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not become healthy within {timeout:?}", self.base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
