//! The shared cache of providers' signing keys (JWKS), refetched when a token names an unknown key id, at most
//! once per `refetch_interval` per `jwks_uri`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use openidconnect::JsonWebKey;
use openidconnect::core::CoreJsonWebKeySet;

use super::OidcError;
use super::http::get_json;
use crate::clock::{MINUTE, Millis};

/// Signing keys per `jwks_uri`, shared by all requests (cheap to clone).
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    refetch_interval: Millis,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Entry>>>>>,
}

struct Entry {
    keys: CoreJsonWebKeySet,
    /// When the set was last fetched *or a fetch was attempted* (so a failing provider is not hammered).
    last_fetch: Millis,
}

impl Default for JwksCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("refetch_interval", &self.inner.refetch_interval)
            .finish_non_exhaustive()
    }
}

/// The result of looking a key id up.
pub(crate) struct Lookup {
    pub keys: CoreJsonWebKeySet,
    /// Whether the token's `kid` is in `keys` (always true for a token without `kid`).
    pub kid_known: bool,
}

impl JwksCache {
    /// A cache that refetches a key set at most once a minute.
    pub fn new() -> Self {
        Self::with_refetch_interval(MINUTE)
    }

    /// A cache that refetches a key set for an unknown `kid` at most once per `refetch_interval`.
    pub fn with_refetch_interval(refetch_interval: Millis) -> Self {
        Self {
            inner: Arc::new(Inner {
                refetch_interval,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Forgets every cached key set (for example after the admin changes the provider).
    pub fn clear(&self) {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn slot(&self, jwks_uri: &str) -> Arc<tokio::sync::Mutex<Option<Entry>>> {
        let mut entries = self
            .inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(entries.entry(jwks_uri.to_owned()).or_default())
    }

    /// The key set for `jwks_uri`, fetched on first use, and refetched when `kid` is not in it and the last
    /// fetch is at least `refetch_interval` old (by the caller's clock `now`).
    pub(crate) async fn lookup(
        &self,
        http: &reqwest::Client,
        jwks_uri: &str,
        kid: Option<&str>,
        now: Millis,
    ) -> Result<Lookup, OidcError> {
        let slot = self.slot(jwks_uri);
        // One fetch at a time per key set; other providers are not blocked.
        let mut entry = slot.lock().await;
        let must_fetch = match entry.as_ref() {
            None => true,
            Some(e) => {
                !contains(&e.keys, kid)
                    && now.saturating_sub(e.last_fetch) >= self.inner.refetch_interval
            }
        };
        if must_fetch {
            match fetch(http, jwks_uri).await {
                Ok(keys) => {
                    *entry = Some(Entry {
                        keys,
                        last_fetch: now,
                    });
                }
                Err(err) => {
                    tracing::warn!(jwks_uri, error = %err, "Could not fetch the identity provider's signing keys.");
                    match entry.as_mut() {
                        // Keep the old keys, but count the attempt for the rate limit.
                        Some(e) => e.last_fetch = now,
                        None => return Err(err),
                    }
                }
            }
        }
        let Some(e) = entry.as_ref() else {
            return Err(OidcError::Jwks("no key set was fetched".into()));
        };
        Ok(Lookup {
            keys: e.keys.clone(),
            kid_known: contains(&e.keys, kid),
        })
    }
}

fn contains(keys: &CoreJsonWebKeySet, kid: Option<&str>) -> bool {
    match kid {
        None => true,
        Some(kid) => keys
            .keys()
            .iter()
            .any(|k| k.key_id().is_some_and(|id| id.as_str() == kid)),
    }
}

async fn fetch(http: &reqwest::Client, jwks_uri: &str) -> Result<CoreJsonWebKeySet, OidcError> {
    let value = get_json(http, jwks_uri)
        .await
        .map_err(|e| OidcError::Jwks(e.to_string()))?;
    serde_json::from_value(value)
        .map_err(|e| OidcError::Jwks(format!("{jwks_uri} is not a JSON Web Key Set: {e}")))
}
