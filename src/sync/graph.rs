//! Owns every HTTP call to Microsoft Entra ID and Microsoft Graph: the client-credentials token (cached,
//! refreshed before expiry, renewed once after a 401), and GETs with timeouts, `client-request-id`,
//! 429 `Retry-After`, and exponential backoff with jitter for 5xx, timeouts and broken bodies.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct GraphConfig {
    /// e.g. `https://login.microsoftonline.com`
    pub authority: String,
    /// e.g. `https://graph.microsoft.com`
    pub graph: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

/// How hard to try. Tests shrink the delays.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured as given; longer ones are cut to this.
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// For "Test connection": answer within seconds.
    pub fn interactive() -> Self {
        Self {
            max_attempts: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Exponential backoff with jitter (50–100 % of the step), capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let mut b = [0u8; 1];
        let _ = getrandom::fill(&mut b);
        step.mul_f64(0.5 + f64::from(b[0]) / 510.0)
    }
}

/// Why a call failed, in terms an admin can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// The token endpoint refused: bad secret, unknown tenant or application, bad scope.
    Auth {
        status: u16,
        error: String,
        aadsts: Option<String>,
        description: String,
    },
    /// Graph refused the request (4xx other than 401/429), e.g. 403 Authorization_RequestDenied.
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// No answer: connection refused, timeouts, or 5xx after the retries.
    Unreachable { detail: String },
    /// 429 beyond the retry budget.
    Throttled { detail: String },
    /// Bodies that are not the JSON Graph sends, after the retries.
    Malformed { detail: String },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth {
                status,
                error,
                aadsts,
                description,
            } => write!(
                f,
                "Entra ID refused the sign-in of the application (HTTP {status} {error}{}): {description}",
                aadsts
                    .as_ref()
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default()
            ),
            Self::Api {
                status,
                code,
                message,
                request_id,
            } => write!(
                f,
                "Microsoft Graph answered HTTP {status} {code}: {message}{}",
                request_id
                    .as_ref()
                    .map(|r| format!(" (request-id {r})"))
                    .unwrap_or_default()
            ),
            Self::Unreachable { detail } => write!(f, "Microsoft Graph is unreachable: {detail}"),
            Self::Throttled { detail } => {
                write!(f, "Microsoft Graph kept throttling the requests: {detail}")
            }
            Self::Malformed { detail } => write!(
                f,
                "Microsoft Graph sent a response that could not be read: {detail}"
            ),
        }
    }
}

impl std::error::Error for GraphError {}

impl GraphError {
    /// The HTTP status and Graph error code, when Graph answered with one.
    pub fn api_code(&self) -> Option<(u16, &str)> {
        match self {
            Self::Api { status, code, .. } => Some((*status, code.as_str())),
            _ => None,
        }
    }
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

pub struct GraphClient {
    http: reqwest::Client,
    cfg: GraphConfig,
    policy: RetryPolicy,
    token: Mutex<Option<CachedToken>>,
}

enum Attempt<T> {
    Done(T),
    Retry {
        wait: Duration,
        why: String,
        kind: RetryKind,
    },
    Fail(GraphError),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RetryKind {
    Unreachable,
    Throttled,
    Malformed,
}

/// First line of an AAD `error_description`, and the `AADSTSnnnn` code it starts with.
fn aad_error(status: u16, body: &[u8]) -> GraphError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = v["error"].as_str().unwrap_or("unknown_error").to_owned();
    let description = v["error_description"]
        .as_str()
        .unwrap_or("no description")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let aadsts = description
        .split(':')
        .next()
        .filter(|c| c.starts_with("AADSTS"))
        .map(str::to_owned)
        .or_else(|| v["error_codes"][0].as_u64().map(|c| format!("AADSTS{c}")));
    GraphError::Auth {
        status,
        error,
        aadsts,
        description,
    }
}

/// The `{"error":{"code","message"}}` envelope, read leniently.
fn graph_error(status: u16, headers: &HeaderMap, body: &[u8]) -> GraphError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or("").to_owned();
    let message = v["error"]["message"].as_str().unwrap_or("").to_owned();
    GraphError::Api {
        status,
        code: if code.is_empty() {
            format!("HTTP{status}")
        } else {
            code
        },
        message: if message.is_empty() {
            "no error message".into()
        } else {
            message
        },
        request_id: header(headers, "request-id"),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Retry-After` in seconds (an HTTP-date is read as "soon": one backoff step).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl GraphClient {
    pub fn new(cfg: GraphConfig, policy: RetryPolicy) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .connect_timeout(policy.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Roster/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            cfg,
            policy,
            token: Mutex::new(None),
        })
    }

    /// `{graph}/v1.0{path}`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}/v1.0{path_and_query}", self.cfg.graph)
    }

    fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.cfg.authority, self.cfg.tenant_id
        )
    }

    fn scope(&self) -> String {
        // The public clouds use their Graph host as the resource; a custom cloud names its own.
        format!("{}/.default", self.cfg.graph)
    }

    /// Runs `f` with the retry policy.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, GraphError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f(attempt).await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { wait, why, kind } => {
                    if attempt >= self.policy.max_attempts {
                        let detail = format!("{why} (gave up after {attempt} tries)");
                        return Err(match kind {
                            RetryKind::Unreachable => GraphError::Unreachable { detail },
                            RetryKind::Throttled => GraphError::Throttled { detail },
                            RetryKind::Malformed => GraphError::Malformed { detail },
                        });
                    }
                    tracing::warn!(what, attempt, wait_ms = wait.as_millis() as u64, reason = %why, "Retrying a Microsoft Graph call.");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A valid access token, from the cache unless it is due for refresh or `force`.
    async fn token(&self, force: bool) -> Result<SecretString, GraphError> {
        let mut guard = self.token.lock().await;
        if !force
            && let Some(t) = guard.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *guard = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<CachedToken, GraphError> {
        let url = self.token_url();
        let scope = self.scope();
        self.with_retries("token", |_| {
            let form = [
                ("client_id", self.cfg.client_id.as_str()),
                ("client_secret", self.cfg.client_secret.expose_secret()),
                ("scope", scope.as_str()),
                ("grant_type", "client_credentials"),
            ];
            let req = self.http.post(&url).form(&form);
            async move {
                let resp = match req.send().await {
                    Ok(r) => r,
                    Err(e) => return transient(&e),
                };
                let status = resp.status();
                let body = match resp.bytes().await {
                    Ok(b) => b,
                    Err(e) => return transient(&e),
                };
                if status.is_success() {
                    let v: Value = match serde_json::from_slice(&body) {
                        Ok(v) => v,
                        Err(e) => {
                            return Attempt::Retry {
                                wait: self.policy.backoff(1),
                                why: format!("token response is not JSON: {e}"),
                                kind: RetryKind::Malformed,
                            };
                        }
                    };
                    let Some(tok) = v["access_token"].as_str() else {
                        return Attempt::Fail(GraphError::Malformed {
                            detail: "token response without access_token".into(),
                        });
                    };
                    let expires = v["expires_in"].as_u64().unwrap_or(3599);
                    // Refresh five minutes early (or halfway through a short-lived token).
                    let early = 300.min(expires / 2);
                    return Attempt::Done(CachedToken {
                        value: SecretString::from(tok.to_owned()),
                        refresh_at: Instant::now() + Duration::from_secs(expires - early),
                    });
                }
                if status.is_server_error() {
                    return Attempt::Retry {
                        wait: self.policy.backoff(1),
                        why: format!("token endpoint answered HTTP {}", status.as_u16()),
                        kind: RetryKind::Unreachable,
                    };
                }
                Attempt::Fail(aad_error(status.as_u16(), &body))
            }
        })
        .await
    }

    /// GETs a Graph URL (absolute, e.g. a nextLink used verbatim) and parses the JSON body.
    pub async fn get_json(&self, url: &str) -> Result<Value, GraphError> {
        let mut renewed = false;
        let mut attempt_no = 0;
        loop {
            let token = self.token(false).await?;
            let result = self
                .with_retries("graph", |attempt| {
                    attempt_no = attempt;
                    let request_id = uuid::Uuid::new_v4().to_string();
                    let mut req = self
                        .http
                        .get(url)
                        .bearer_auth(token.expose_secret())
                        .header("client-request-id", &request_id);
                    if attempt > 1 {
                        req = req.header("retry-attempt", (attempt - 1).to_string());
                    }
                    let policy = &self.policy;
                    async move {
                        let resp = match req.send().await {
                            Ok(r) => r,
                            Err(e) => return retry_transient(policy, attempt, &e),
                        };
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        let body = match resp.bytes().await {
                            Ok(b) => b,
                            Err(e) => return retry_transient(policy, attempt, &e),
                        };
                        classify(policy, attempt, status, &headers, &body, &request_id)
                    }
                })
                .await;
            match result {
                Err(GraphError::Api { status: 401, .. }) if !renewed => {
                    // The token expired or was revoked early: get a new one and try once more.
                    renewed = true;
                    tracing::info!(
                        attempt = attempt_no,
                        "Microsoft Graph answered 401; renewing the token."
                    );
                    self.token(true).await?;
                }
                other => return other,
            }
        }
    }
}

fn transient<T>(e: &reqwest::Error) -> Attempt<T> {
    Attempt::Retry {
        wait: Duration::from_millis(500),
        why: describe(e),
        kind: RetryKind::Unreachable,
    }
}

fn retry_transient<T>(policy: &RetryPolicy, attempt: u32, e: &reqwest::Error) -> Attempt<T> {
    Attempt::Retry {
        wait: policy.backoff(attempt),
        why: describe(e),
        kind: RetryKind::Unreachable,
    }
}

/// A reqwest error as a short, plain sentence (no URL with tokens in it).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        let mut last = String::from("connection failed");
        while let Some(s) = src {
            last = s.to_string();
            src = s.source();
        }
        format!("cannot connect ({last})")
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading the response".into()
    } else {
        "the request failed".to_owned()
    }
}

fn classify(
    policy: &RetryPolicy,
    attempt: u32,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    client_request_id: &str,
) -> Attempt<Value> {
    let code = status.as_u16();
    if status.is_success() {
        return match serde_json::from_slice(body) {
            Ok(v) => Attempt::Done(v),
            Err(e) => Attempt::Retry {
                wait: policy.backoff(attempt),
                why: format!("the response body is not valid JSON ({e})"),
                kind: RetryKind::Malformed,
            },
        };
    }
    let request_id = header(headers, "request-id");
    match code {
        429 => {
            let wait = retry_after(headers).map_or_else(
                || policy.backoff(attempt),
                |d| d.min(policy.max_retry_after),
            );
            tracing::warn!(
                request_id = request_id.as_deref().unwrap_or(""),
                client_request_id,
                wait_ms = wait.as_millis() as u64,
                "Microsoft Graph throttled a request (429)."
            );
            Attempt::Retry {
                wait,
                why: "HTTP 429 Too Many Requests".into(),
                kind: RetryKind::Throttled,
            }
        }
        500 | 502 | 503 | 504 => {
            let wait = retry_after(headers).map_or_else(
                || policy.backoff(attempt),
                |d| d.min(policy.max_retry_after),
            );
            tracing::warn!(
                status = code,
                request_id = request_id.as_deref().unwrap_or(""),
                client_request_id,
                "Microsoft Graph answered with a server error."
            );
            let why = match graph_error(code, headers, body) {
                GraphError::Api { code: c, .. } if !c.starts_with("HTTP") => {
                    format!("HTTP {code} {c}")
                }
                _ => format!("HTTP {code}"),
            };
            Attempt::Retry {
                wait,
                why,
                kind: RetryKind::Unreachable,
            }
        }
        _ => {
            let e = graph_error(code, headers, body);
            tracing::warn!(status = code, request_id = request_id.as_deref().unwrap_or(""), client_request_id, error = %e, "Microsoft Graph refused a request.");
            Attempt::Fail(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_errors_keep_their_code() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]}"#;
        match aad_error(401, body) {
            GraphError::Auth {
                error,
                aadsts,
                description,
                ..
            } => {
                assert_eq!(error, "invalid_client");
                assert_eq!(aadsts.as_deref(), Some("AADSTS7000215"));
                assert_eq!(
                    description,
                    "AADSTS7000215: Invalid client secret provided."
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn graph_errors_are_read_leniently() {
        let h = HeaderMap::new();
        let e = graph_error(403, &h, br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#);
        assert_eq!(e.api_code(), Some((403, "Authorization_RequestDenied")));
        let e = graph_error(504, &h, b"<html>gateway</html>");
        assert_eq!(e.api_code(), Some((504, "HTTP504")));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert!(p.backoff(1) <= Duration::from_secs(2) && p.backoff(1) >= Duration::from_secs(1));
        assert!(p.backoff(3) >= Duration::from_secs(4));
        assert!(p.backoff(10) <= Duration::from_secs(10));
    }
}
