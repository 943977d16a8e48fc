//! Owns password hashing (argon2id), run off the async threads.

use std::sync::LazyLock;

use anyhow::anyhow;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};

/// A hash to verify against when the account does not exist, so a wrong username costs the same
/// time as a wrong password and does not reveal which accounts exist.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let h: Result<PasswordHash, _> = Argon2::default().hash_password(b"roster-dummy-password");
    h.ok().map(|h| h.to_string())
});

/// Hashes a password into a PHC string (`$argon2id$v=19$…`).
pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let h: Result<PasswordHash, _> =
            Argon2::default().hash_password(password.expose_secret().as_bytes());
        h.map(|h| h.to_string())
            .map_err(|e| anyhow!("hashing a password failed: {e}"))
    })
    .await?
}

/// Checks a password against a stored hash; `None` checks against a dummy hash and returns false.
pub async fn verify(password: SecretString, stored: Option<String>) -> anyhow::Result<bool> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let (hash, real) = match stored {
            Some(h) => (h, true),
            None => (DUMMY_HASH.clone().unwrap_or_default(), false),
        };
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| anyhow!("stored password hash is malformed: {e}"))?;
        let ok = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok(ok && real)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_the_right_password() {
        let h = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify(SecretString::from("correct horse battery"), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify(SecretString::from("wrong horse battery"), Some(h))
                .await
                .unwrap()
        );
        assert!(
            !verify(SecretString::from("roster-dummy-password"), None)
                .await
                .unwrap()
        );
    }
}
