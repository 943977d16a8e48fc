//! Rules for admin accounts: first-run setup, creation, sign-in with throttling.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::auth::password;
use crate::auth::repo::{self, Admin};
use crate::clock::{HOUR, MINUTE, Millis};
use crate::config::BaseUrl;
use crate::db::ids::{new_id, random_token, token_hash};
use crate::db::{Db, is_unique_violation};
use crate::error::FieldErrors;
use crate::web::RequestMeta;

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const SETUP_TOKEN_LIFETIME: Millis = HOUR;
/// Failed sign-ins allowed per account and per address within [`LOCKOUT_WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const LOCKOUT_WINDOW: Millis = 15 * MINUTE;

/// A new admin as typed in a form or on the command line.
pub struct NewAdmin {
    pub username: String,
    pub password: SecretString,
    pub confirm: Option<SecretString>,
}

/// Checks a new admin's fields; errors are keyed by form field.
pub fn validate_new_admin(input: &NewAdmin) -> FieldErrors {
    let mut errors = FieldErrors::new();
    let u = input.username.trim();
    if u.is_empty() {
        errors.insert("username", "Enter a username.".into());
    } else if u.chars().count() > 64 {
        errors.insert("username", "Use at most 64 characters.".into());
    } else if !u
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        errors.insert(
            "username",
            "Use letters, digits and . _ - @ only (no spaces).".into(),
        );
    }
    let p = input.password.expose_secret();
    if p.chars().count() < MIN_PASSWORD_LEN {
        errors.insert(
            "password",
            format!("Use at least {MIN_PASSWORD_LEN} characters."),
        );
    } else if p.len() > MAX_PASSWORD_LEN {
        errors.insert(
            "password",
            format!("Use at most {MAX_PASSWORD_LEN} characters."),
        );
    }
    if let Some(c) = &input.confirm
        && c.expose_secret() != p
        && !errors.contains_key("password")
    {
        errors.insert("confirm", "The two passwords differ.".into());
    }
    errors
}

/// When no admin exists, replaces any unused setup token with a new one and returns its link.
pub async fn issue_setup_link(
    db: &Db,
    now: Millis,
    base: &BaseUrl,
) -> anyhow::Result<Option<String>> {
    let mut tx = db.begin().await?;
    if repo::count_admins(&mut *tx).await? > 0 {
        return Ok(None);
    }
    let token = random_token(32)?;
    repo::delete_unused_setup_tokens(&mut *tx).await?;
    repo::create_setup_token(
        &mut *tx,
        &token_hash(&token),
        now,
        now + SETUP_TOKEN_LIFETIME,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(base.join(&format!("/setup?token={token}"))))
}

/// What a setup link leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum SetupState {
    /// An admin exists: setup is over.
    Done,
    /// The token is unknown, used or expired.
    InvalidToken,
    Ready,
}

pub async fn setup_state(db: &Db, now: Millis, token: &str) -> anyhow::Result<SetupState> {
    if repo::count_admins(&db.pool).await? > 0 {
        return Ok(SetupState::Done);
    }
    if repo::setup_token_is_valid(&db.pool, &token_hash(token), now).await? {
        Ok(SetupState::Ready)
    } else {
        Ok(SetupState::InvalidToken)
    }
}

#[derive(Debug)]
pub enum CreateError {
    Invalid(FieldErrors),
    /// The setup link stopped working (used, expired, or an admin now exists).
    SetupClosed,
    Unexpected(anyhow::Error),
}

impl From<anyhow::Error> for CreateError {
    fn from(e: anyhow::Error) -> Self {
        Self::Unexpected(e)
    }
}

impl From<sqlx::Error> for CreateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(e.into())
    }
}

fn taken() -> CreateError {
    let mut f = FieldErrors::new();
    f.insert(
        "username",
        "An admin with this username already exists.".into(),
    );
    CreateError::Invalid(f)
}

/// Creates the first admin through a setup token: token use, account and audit rows in one transaction.
pub async fn complete_setup(
    db: &Db,
    now: Millis,
    token: &str,
    input: NewAdmin,
    meta: &RequestMeta,
) -> Result<Admin, CreateError> {
    let errors = validate_new_admin(&input);
    if !errors.is_empty() {
        return Err(CreateError::Invalid(errors));
    }
    let username = input.username.trim().to_owned();
    let hash = password::hash(input.password).await?;
    let id = new_id();
    let mut tx = db.begin().await?;
    if repo::count_admins(&mut *tx).await? > 0
        || !repo::consume_setup_token(&mut *tx, &token_hash(token), now).await?
    {
        return Err(CreateError::SetupClosed);
    }
    match repo::create_admin(&mut *tx, &id, &username, &hash, now).await {
        Err(e) if is_unique_violation(&e) => return Err(taken()),
        other => other?,
    }
    let actor = Actor::Admin {
        id: id.clone(),
        name: username.clone(),
    };
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::new(now, actor.clone(), AuditAction::SetupCompleted).from_request(meta),
    )
    .await?;
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::admin_created(now, actor, &id, &username, "setup").from_request(meta),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(admin_id = %id, username = %username, "First admin created through the setup page.");
    repo::find_admin(&db.pool, &id)
        .await?
        .ok_or_else(|| CreateError::Unexpected(anyhow::anyhow!("the new admin vanished")))
}

/// Creates an admin from the command line.
pub async fn create_admin_cli(db: &Db, now: Millis, input: NewAdmin) -> Result<Admin, CreateError> {
    let errors = validate_new_admin(&input);
    if !errors.is_empty() {
        return Err(CreateError::Invalid(errors));
    }
    let username = input.username.trim().to_owned();
    let hash = password::hash(input.password).await?;
    let id = new_id();
    let mut tx = db.begin().await?;
    match repo::create_admin(&mut *tx, &id, &username, &hash, now).await {
        Err(e) if is_unique_violation(&e) => return Err(taken()),
        other => other?,
    }
    audit_repo::insert(
        &mut *tx,
        &AuditEvent::admin_created(now, Actor::System, &id, &username, "cli"),
    )
    .await?;
    // The first admin closes first-run setup: any printed setup link stops working.
    repo::delete_unused_setup_tokens(&mut *tx).await?;
    tx.commit().await?;
    repo::find_admin(&db.pool, &id)
        .await?
        .ok_or_else(|| CreateError::Unexpected(anyhow::anyhow!("the new admin vanished")))
}

#[derive(Debug)]
pub enum LoginError {
    /// Wrong username or password (never says which).
    BadCredentials,
    /// Too many failures; try again after this many minutes.
    Locked {
        minutes: i64,
    },
    Unexpected(anyhow::Error),
}

impl From<anyhow::Error> for LoginError {
    fn from(e: anyhow::Error) -> Self {
        Self::Unexpected(e)
    }
}

impl From<sqlx::Error> for LoginError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unexpected(e.into())
    }
}

/// When the lockout for these failure times (newest first) ends, if it is in force at `now`.
fn locked_until(failures: &[Millis], now: Millis) -> Option<Millis> {
    // The failure that reached the limit starts a lockout of one window.
    let nth = *failures.get(MAX_FAILURES - 1)?;
    let newest = *failures.first()?;
    (newest - nth < LOCKOUT_WINDOW && newest + LOCKOUT_WINDOW > now)
        .then_some(newest + LOCKOUT_WINDOW)
}

/// Signs an admin in, or says why not. Every outcome is recorded for throttling and audit.
pub async fn login(
    db: &Db,
    now: Millis,
    username: &str,
    password: SecretString,
    meta: &RequestMeta,
) -> Result<Admin, LoginError> {
    let username = username.trim();
    // The attempt is written (as a failure) before anything is checked, so a burst of parallel guesses
    // sees itself: each counts the others that were written before its own check.
    let attempt = repo::record_login_attempt(&db.pool, username, &meta.ip, now).await?;
    let (by_user, by_ip) =
        repo::list_failures_since(&db.pool, username, &meta.ip, now - LOCKOUT_WINDOW, &attempt)
            .await?;
    let lock = locked_until(&by_user, now)
        .into_iter()
        .chain(locked_until(&by_ip, now))
        .max();
    if let Some(until) = lock {
        repo::delete_attempt(&db.pool, &attempt).await?;
        let minutes = (until - now + MINUTE - 1) / MINUTE;
        audit_repo::insert(
            &db.pool,
            &AuditEvent::new(now, Actor::Anonymous, AuditAction::LoginLocked)
                .from_request(meta)
                .details(json!({ "username": username })),
        )
        .await?;
        tracing::warn!(username = %username, ip = %meta.ip, "Sign-in refused: too many failed attempts.");
        return Err(LoginError::Locked {
            minutes: minutes.max(1),
        });
    }
    let admin = repo::find_admin_by_username(&db.pool, username).await?;
    let ok = password::verify(password, admin.as_ref().map(|a| a.password_hash.clone())).await?;
    let mut tx = db.begin().await?;
    match admin {
        Some(a) if ok && !a.disabled => {
            repo::mark_attempt_succeeded(&mut *tx, &attempt).await?;
            repo::touch_last_login(&mut *tx, &a.id, now).await?;
            audit_repo::insert(
                &mut *tx,
                &AuditEvent::new(
                    now,
                    Actor::Admin {
                        id: a.id.clone(),
                        name: a.username.clone(),
                    },
                    AuditAction::LoginSucceeded,
                )
                .from_request(meta),
            )
            .await?;
            tx.commit().await?;
            Ok(a)
        }
        other => {
            let reason = match other {
                None => "unknown username",
                Some(a) if a.disabled => "account disabled",
                Some(_) => "wrong password",
            };
            audit_repo::insert(
                &mut *tx,
                &AuditEvent::login_failed(now, username, reason).from_request(meta),
            )
            .await?;
            tx.commit().await?;
            Err(LoginError::BadCredentials)
        }
    }
}

/// Records a sign-out.
pub async fn logout(
    db: &Db,
    now: Millis,
    admin_id: &str,
    username: &str,
    meta: &RequestMeta,
) -> anyhow::Result<()> {
    audit_repo::insert(
        &db.pool,
        &AuditEvent::new(
            now,
            Actor::Admin {
                id: admin_id.to_owned(),
                name: username.to_owned(),
            },
            AuditAction::Logout,
        )
        .from_request(meta),
    )
    .await?;
    Ok(())
}

/// Removes expired sessions and old login attempts; run periodically.
pub async fn cleanup(db: &Db, now: Millis) -> anyhow::Result<()> {
    use crate::auth::session_store::ABSOLUTE_TIMEOUT;
    repo::delete_expired_sessions(&db.pool, now, now - ABSOLUTE_TIMEOUT).await?;
    repo::delete_login_attempts_before(&db.pool, now - 24 * HOUR).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(u: &str, p: &str, c: Option<&str>) -> NewAdmin {
        NewAdmin {
            username: u.into(),
            password: SecretString::from(p),
            confirm: c.map(SecretString::from),
        }
    }

    #[test]
    fn new_admin_rules() {
        assert!(validate_new_admin(&new("alice", "twelve-chars", Some("twelve-chars"))).is_empty());
        let e = validate_new_admin(&new("", "short", None));
        assert!(e.contains_key("username") && e.contains_key("password"));
        let e = validate_new_admin(&new("al ice", "twelve-chars", Some("twelve-charz")));
        assert!(e.contains_key("username") && e.contains_key("confirm"));
        let e = validate_new_admin(&new("alice", "elevenchars", None));
        assert_eq!(
            e.get("password").map(String::as_str),
            Some("Use at least 12 characters.")
        );
    }

    #[test]
    fn lockout_starts_at_the_fifth_failure_and_lasts_fifteen_minutes() {
        let m = MINUTE;
        let now = 100 * m;
        // Four failures: not locked.
        assert_eq!(
            locked_until(&[now - m, now - 2 * m, now - 3 * m, now - 4 * m], now),
            None
        );
        // Five within the window: locked until the newest + 15 min.
        let five = [now - m, now - 2 * m, now - 3 * m, now - 4 * m, now - 5 * m];
        assert_eq!(locked_until(&five, now), Some(now - m + 15 * m));
        // Sixteen minutes after the newest failure: free again.
        assert_eq!(locked_until(&five, now + 15 * m), None);
    }
}
