//! Registration: what an invited person does with the link. They confirm who they are (through the IdP
//! set up for registration, or a password for local users when no IdP is active), then get their
//! enrollment details: server address, username, a one-time PIN and a QR code.

use secrecy::SecretString;
use serde_json::json;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::{MINUTE, Millis};
use crate::db::Db;
use crate::db::ids::token_hash;
use crate::invitations::repo::{self, InvitationRow};
use crate::web::{AppState, RequestMeta};

/// Bad-token hits allowed per address in [`ATTEMPT_WINDOW`].
pub const MAX_ATTEMPTS: i64 = 30;
pub const ATTEMPT_WINDOW: Millis = 15 * MINUTE;

/// A one-time PIN of `len` decimal digits from the CSPRNG (rejection sampling, so every digit is uniform).
pub fn new_pin(len: usize) -> anyhow::Result<String> {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut buf = [0u8; 16];
        getrandom::fill(&mut buf)
            .map_err(|e| anyhow::anyhow!("the system random source failed: {e}"))?;
        for b in buf {
            if b < 250 && out.len() < len {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(out)
}

/// The invited user as the registration pages show them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invitee {
    pub id: String,
    pub source: String,
    pub upn: String,
    pub display_name: String,
    pub mail: Option<String>,
}

pub async fn invitee(db: &Db, user_id: &str) -> anyhow::Result<Option<Invitee>> {
    Ok(sqlx::query_as(
        "SELECT id, source, upn, display_name, mail FROM directory_users WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?)
}

/// True when this address has hit too many bad links lately.
pub async fn rate_limited(db: &Db, ip: &str, now: Millis) -> anyhow::Result<bool> {
    Ok(repo::count_attempts_since(&db.pool, ip, now - ATTEMPT_WINDOW).await? >= MAX_ATTEMPTS)
}

pub async fn record_attempt(db: &Db, ip: &str, now: Millis) -> anyhow::Result<()> {
    repo::record_attempt(&db.pool, ip, now).await?;
    Ok(())
}

/// What a finished registration hands the person.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub server: String,
    pub username: String,
    pub pin: String,
    pub pin_expires_at: Millis,
    pub enroll_url: String,
}

/// Why a registration did not finish.
#[derive(Debug)]
pub enum RegisterError {
    /// The link was used, revoked, replaced or expired meanwhile.
    NoLongerValid,
    Unexpected(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for RegisterError {
    fn from(e: E) -> Self {
        Self::Unexpected(e.into())
    }
}

/// Consumes the invitation and marks the user registered, in one transaction; issues the enrollment PIN.
pub async fn complete(
    state: &AppState,
    inv: &InvitationRow,
    user: &Invitee,
    password_hash: Option<&str>,
    method: &str,
    meta: &RequestMeta,
) -> Result<Enrollment, RegisterError> {
    let now = state.clock.now_ms();
    let settings = crate::invitations::service::settings(&state.db).await?;
    let pin = new_pin(usize::try_from(settings.pin_length).unwrap_or(8))?;
    let pin_expires_at = now + settings.pin_lifetime_minutes * MINUTE;
    let mut tx = state.db.begin().await?;
    if !repo::consume(&mut *tx, &inv.id, now).await? {
        return Err(RegisterError::NoLongerValid);
    }
    repo::mark_registered(&mut *tx, &user.id, password_hash, now).await?;
    repo::create_pin(&mut *tx, &user.id, &token_hash(&pin), pin_expires_at, now).await?;
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, Actor::Anonymous, AuditAction::UserRegistered)
            .target("user", user.id.clone())
            .from_request(meta)
            .details(json!({ "invitation_id": inv.id, "method": method, "upn": user.upn })),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, method, "User registered.");
    let server = state.base_url.as_str().trim_end_matches('/').to_owned();
    let enroll_url = format!(
        "{server}/enroll?username={}&pin={pin}",
        url::form_urlencoded::byte_serialize(user.upn.as_bytes()).collect::<String>()
    );
    Ok(Enrollment {
        server,
        username: user.upn.clone(),
        pin,
        pin_expires_at,
        enroll_url,
    })
}

/// Records that someone other than the invitee signed in with an invitation (the link stays usable).
pub async fn refuse_wrong_person(
    state: &AppState,
    inv: &InvitationRow,
    signed_in_as: &str,
    meta: &RequestMeta,
) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    tracing::warn!(invitation_id = %inv.id, signed_in_as, "Registration refused: a different person signed in.");
    audit_repo::insert(
        &state.db.pool,
        &AuditEvent::new(now, Actor::Anonymous, AuditAction::RegistrationRefused)
            .target("user", inv.user_id.clone())
            .from_request(meta)
            .details(json!({ "reason": "wrong_person", "signed_in_as": signed_in_as })),
    )
    .await?;
    record_attempt(&state.db, &meta.ip, now).await
}

/// The QR code of the enrollment address, as SVG markup.
pub fn qr_svg(data: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(data.as_bytes())
        .map_err(|e| anyhow::anyhow!("making the QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build())
}

/// Hashes a registration password (argon2id, off the async threads).
pub async fn hash_password(password: &str) -> anyhow::Result<String> {
    crate::auth::password::hash(SecretString::from(password.to_owned())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_have_the_length_and_only_digits() {
        for len in [6, 8, 12] {
            let p = new_pin(len).unwrap();
            assert_eq!(p.len(), len);
            assert!(p.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_ne!(new_pin(12).unwrap(), new_pin(12).unwrap());
    }

    #[test]
    fn qr_is_svg() {
        let svg = qr_svg("https://roster.example/enroll?username=a%40b&pin=12345678").unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
