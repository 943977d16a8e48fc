//! Owns the master key and the encryption of secrets at rest (AES-256-GCM).
//!
//! A sealed value is `v1:` followed by base64url(nonce ‖ ciphertext ‖ tag). The version prefix lets a
//! later key rotation tell old values from new ones.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce};
use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha512};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const PREFIX: &str = "v1:";

/// The 32-byte key every secret is encrypted with. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// Reads the key at `path`, or creates it (32 random bytes, mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_file_bytes(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot read the master key at {}; check the file's owner and mode 0600",
                    path.display()
                )
            }),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<Self> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            anyhow!(
                "the master key at {} holds {} bytes, expected exactly {KEY_LEN}; restore the original file \
                 (secrets stored with it cannot be read without it)",
                path.display(),
                bytes.len()
            )
        })?;
        Ok(Self(arr))
    }

    fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| anyhow!("the system random source failed: {e}"))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts
            .open(path)
            .with_context(|| format!("cannot create the master key at {}", path.display()))?;
        file.write_all(&key)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write the master key at {}", path.display()))?;
        tracing::info!(path = %path.display(), "Generated a new master key; back it up with the database.");
        Ok(Self(key))
    }

    /// A key for one purpose (e.g. signing session cookies), derived so the master key itself is never
    /// used for two things.
    pub fn derive(&self, purpose: &str) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(b"roster-key-derivation\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.0);
        h.finalize().into()
    }

    fn cipher(&self) -> anyhow::Result<Aes256Gcm> {
        Aes256Gcm::new_from_slice(&self.0)
            .map_err(|_| anyhow!("the master key has the wrong length"))
    }

    /// Encrypts a secret for storage.
    pub fn seal(&self, plain: &SecretString) -> anyhow::Result<String> {
        let nonce = Nonce::<Aes256Gcm>::generate();
        let ct = self
            .cipher()?
            .encrypt(&nonce, plain.expose_secret().as_bytes())
            .map_err(|_| anyhow!("encrypting a secret failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Decrypts a value made by [`MasterKey::seal`]. Fails when the value was tampered with or sealed
    /// under another key.
    pub fn open(&self, sealed: &str) -> anyhow::Result<SecretString> {
        let Some(body) = sealed.strip_prefix(PREFIX) else {
            bail!("stored secret has an unknown format");
        };
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .context("stored secret is not valid base64")?;
        if raw.len() < NONCE_LEN + 16 {
            bail!("stored secret is truncated");
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce)
            .map_err(|_| anyhow!("stored secret is truncated"))?;
        let plain = self.cipher()?.decrypt(&nonce, ct).map_err(|_| {
            anyhow!("stored secret cannot be decrypted: it was changed, or sealed with another master key")
        })?;
        let s = String::from_utf8(plain).context("stored secret is not UTF-8")?;
        Ok(SecretString::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let sealed = key
            .seal(&SecretString::from("client-secret-value"))
            .unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("client-secret-value"));
        assert_eq!(
            key.open(&sealed).unwrap().expose_secret(),
            "client-secret-value"
        );
        // Two seals of the same value differ (fresh nonce each time).
        assert_ne!(
            sealed,
            key.seal(&SecretString::from("client-secret-value"))
                .unwrap()
        );
    }

    #[test]
    fn tampering_or_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_create(&dir.path().join("a.key")).unwrap();
        let b = MasterKey::load_or_create(&dir.path().join("b.key")).unwrap();
        let sealed = a.seal(&SecretString::from("s3cret")).unwrap();
        assert!(b.open(&sealed).is_err());
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        raw[NONCE_LEN] ^= 1;
        assert!(
            a.open(&format!("v1:{}", URL_SAFE_NO_PAD.encode(raw)))
                .is_err()
        );
        assert!(a.open("plain").is_err());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(std::fs::read(&path).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn wrong_sized_key_file_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, b"short").unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("expected exactly 32"), "{err}");
    }
}
