//! The HTTP client used for discovery, JWKS and the token endpoint, and openidconnect's `AsyncHttpClient` over
//! reqwest 0.13 (openidconnect's own reqwest feature would pull reqwest 0.12).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};

use super::OidcError;

/// Connect timeout for every call to an identity provider.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout for every call to an identity provider.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest discovery document, key set or token response we read (they are a few kilobytes).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The reqwest client to pass to `discover` and `finish`: no redirects (a token endpoint that redirects
/// must not receive the code and secret twice), bounded timeouts.
pub fn http_client() -> Result<reqwest::Client, OidcError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| OidcError::Config(format!("cannot build the HTTP client: {e}")))
}

/// An HTTP failure talking to the provider (shown to admins; never contains the request body).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// openidconnect's HTTP client trait implemented over a borrowed reqwest client.
pub(crate) struct Reqwest<'a>(pub &'a reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Reqwest<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|e| HttpError(format!("cannot build the request: {e}")))?;
            let url = request.url().clone();
            let response = self
                .0
                .execute(request)
                .await
                .map_err(|e| HttpError(format!("{} did not answer: {e}", redact(&url))))?;
            let mut builder = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_limited(response).await?;
            builder
                .body(body)
                .map_err(|e| HttpError(format!("cannot read the response: {e}")))
        })
    }
}

/// Reads a body up to `MAX_BODY_BYTES`.
pub(crate) async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError(format!("the answer was cut off: {e}")))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpError(format!(
                "the answer is larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GETs a JSON document (discovery, JWKS): 200 only, redirects are refused by the client.
pub(crate) async fn get_json(
    http: &reqwest::Client,
    url: &str,
) -> Result<serde_json::Value, HttpError> {
    let parsed = url::Url::parse(url).map_err(|e| HttpError(format!("{url} is not a URL: {e}")))?;
    let response = http
        .get(parsed.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| HttpError(format!("{} did not answer: {e}", redact(&parsed))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(HttpError(format!(
            "{} answered HTTP {status}",
            redact(&parsed)
        )));
    }
    let body = read_limited(response).await?;
    serde_json::from_slice(&body)
        .map_err(|e| HttpError(format!("{} did not answer JSON: {e}", redact(&parsed))))
}

/// A URL without its query (which could carry an `appid` or other parameters) for messages.
fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    u.to_string()
}
