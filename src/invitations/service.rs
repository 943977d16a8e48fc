//! Invitation rules: rendering the template for a user, inviting (by hand, in bulk, or automatically after
//! a sync) with the mail written to the outbox in the same transaction, revoking, and reading a token.

use std::collections::HashMap;

use serde_json::json;
use sqlx::AnyConnection;

use crate::audit::event::{Actor, AuditAction, AuditEvent};
use crate::audit::repo as audit_repo;
use crate::clock::{DAY, Millis};
use crate::config::BaseUrl;
use crate::configurations::model::{UserFacts, values_for};
use crate::configurations::repo::UserRow;
use crate::configurations::service::{custom_attributes, custom_names, facts};
use crate::configurations::substitute::{self, Values};
use crate::db::Db;
use crate::db::ids::{new_id, random_token, token_hash};
use crate::invitations::model::{InvitationSettings, LINK_VARIABLE};
use crate::invitations::repo::{self, InvitationRow, NewInvitation};
use crate::mail::outbox::{OutgoingMail, enqueue_many};

/// Bytes of randomness in a registration token (URL-safe base64: 43 characters).
pub const TOKEN_BYTES: usize = 32;

pub async fn settings(db: &Db) -> anyhow::Result<InvitationSettings> {
    Ok(repo::find_settings(&db.pool).await?.unwrap_or_default())
}

pub fn registration_link(base: &BaseUrl, token: &str) -> String {
    format!("{}/register/{token}", base.as_str().trim_end_matches('/'))
}

/// A rendered invitation mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Variables the user has no value for (rendered empty).
    pub missing: Vec<String>,
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders the template for a user: the same `${variable}` engine as configurations, with
/// `${registrationLink}`. Values are HTML-escaped in the HTML body; the subject is one line.
pub fn render(
    s: &InvitationSettings,
    user: &UserFacts,
    custom_names: &[String],
    link: &str,
) -> Result<Rendered, substitute::SubstitutionError> {
    let mut values: Values = values_for(user, custom_names);
    values.insert(LINK_VARIABLE.into(), Some(link.to_owned()));
    let html_values: Values = values
        .iter()
        .map(|(k, v)| (k.clone(), v.as_deref().map(html_escape)))
        .collect();
    let subject = substitute::substitute(&s.subject, &values)?;
    let text = substitute::substitute(&s.text_body, &values)?;
    let html = substitute::substitute(&s.html_body, &html_values)?;
    let mut missing = subject.missing;
    for m in text.missing.into_iter().chain(html.missing) {
        if !missing.contains(&m) {
            missing.push(m);
        }
    }
    Ok(Rendered {
        subject: subject.text.replace(['\r', '\n'], " "),
        text: text.text,
        html: html.text,
        missing,
    })
}

/// What an invite run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteOutcome {
    pub invited: usize,
    /// Users without an email address (UPNs), who cannot be invited.
    pub no_email: Vec<String>,
    /// Registered, not synced, deleted or unknown users, skipped.
    pub skipped: usize,
}

const USER_COLS: &str = "id, source, external_id, upn, mail, given_name, surname, display_name, managed_apple_id, \
     custom_attributes, not_synced_at";

/// Invites `user_ids` inside the caller's transaction: each gets a fresh token (an open invitation is
/// replaced), the mail goes to the outbox in the same transaction, and the user becomes "invited".
/// Registered, not synced and deleted users are skipped; so are users without an email address.
#[expect(
    clippy::too_many_arguments,
    reason = "the transaction, the template and who asks"
)]
pub async fn invite_in_tx(
    conn: &mut AnyConnection,
    base: &BaseUrl,
    s: &InvitationSettings,
    custom_names: &[String],
    user_ids: &[String],
    created_by: &str,
    actor: Actor,
    now: Millis,
) -> anyhow::Result<InviteOutcome> {
    let mut out = InviteOutcome::default();
    let mut users: Vec<UserRow> = Vec::new();
    let per_statement = crate::db::rows_per_statement(&*conn, 1);
    for chunk in user_ids.chunks(per_statement) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {USER_COLS} FROM directory_users WHERE id IN ({}) AND deleted_at IS NULL \
             AND not_synced_at IS NULL AND invitation_state <> 'registered'",
            list.join(", ")
        );
        let mut q = sqlx::query_as::<_, UserRow>(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        users.extend(q.fetch_all(&mut *conn).await?);
    }
    out.skipped = user_ids.len() - users.len();
    let mut invitations = Vec::new();
    let mut mails = Vec::new();
    for u in &users {
        let Some(mail) = u.mail.as_deref().map(str::trim).filter(|m| !m.is_empty()) else {
            out.no_email.push(u.upn.clone());
            continue;
        };
        let token = random_token(TOKEN_BYTES)?;
        let id = new_id();
        let rendered = render(s, &facts(u), custom_names, &registration_link(base, &token))
            .map_err(|e| anyhow::anyhow!("the invitation template cannot be rendered: {e}"))?;
        mails.push(OutgoingMail {
            kind: "invitation",
            ref_id: Some(id.clone()),
            to_address: mail.to_owned(),
            to_name: Some(u.display_name.clone()),
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
        });
        invitations.push(NewInvitation {
            id,
            user_id: u.id.clone(),
            token_hash: token_hash(&token),
            expires_at: now + s.lifetime_days * DAY,
            mail_id: String::new(),
        });
    }
    let mail_ids = enqueue_many(&mut *conn, &mails, now).await?;
    for (inv, mail_id) in invitations.iter_mut().zip(mail_ids) {
        inv.mail_id = mail_id;
    }
    repo::insert_invitations(&mut *conn, &invitations, created_by, now).await?;
    out.invited = invitations.len();
    // One audit row per invitation, so each user's history shows it.
    for inv in &invitations {
        audit_repo::insert(
            &mut *conn,
            &AuditEvent::new(now, actor.clone(), AuditAction::InvitationSent)
                .target("user", inv.user_id.clone())
                .details(json!({ "invitation_id": inv.id, "expires_at": inv.expires_at, "by": created_by })),
        )
        .await?;
    }
    Ok(out)
}

/// Invites users by hand (one, or a filtered set from the Users page), in transactions of 1,000.
pub async fn invite(
    db: &Db,
    base: &BaseUrl,
    user_ids: &[String],
    admin: (&str, &str),
    now: Millis,
) -> anyhow::Result<InviteOutcome> {
    let s = settings(db).await?;
    let names = custom_names(&custom_attributes(db).await?);
    let mut total = InviteOutcome::default();
    for chunk in user_ids.chunks(1000) {
        let mut tx = db.begin().await?;
        let o = invite_in_tx(
            &mut tx,
            base,
            &s,
            &names,
            chunk,
            admin.1,
            Actor::Admin {
                id: admin.0.to_owned(),
                name: admin.1.to_owned(),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        total.invited += o.invited;
        total.skipped += o.skipped;
        total.no_email.extend(o.no_email);
    }
    Ok(total)
}

/// Auto-invite after a sync page: the page's users that were first seen in this round and never invited.
pub async fn auto_invite_new_users(
    conn: &mut AnyConnection,
    base: &BaseUrl,
    source_id: &str,
    run_id: &str,
    external_ids: &[String],
    now: Millis,
) -> anyhow::Result<usize> {
    let ids = repo::new_uninvited_users(&mut *conn, source_id, run_id, external_ids).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let s = repo::find_settings(&mut *conn).await?.unwrap_or_default();
    let attrs = crate::settings::repo::find_source(&mut *conn, source_id)
        .await?
        .map(|src| src.settings.custom_attributes)
        .unwrap_or_default();
    let names = custom_names(&attrs);
    let o = invite_in_tx(conn, base, &s, &names, &ids, "auto", Actor::System, now).await?;
    Ok(o.invited)
}

/// Revokes a user's open invitation (the link stops working); the user becomes "not invited" again unless
/// registered.
pub async fn revoke(
    db: &Db,
    user_id: &str,
    admin: (&str, &str),
    now: Millis,
) -> anyhow::Result<u64> {
    let mut tx = db.begin().await?;
    let n = repo::revoke_open(&mut *tx, user_id, now).await?;
    if n > 0 {
        repo::clear_invited(&mut *tx, user_id).await?;
        audit_repo::insert(
            &mut *tx,
            &AuditEvent::new(
                now,
                Actor::Admin {
                    id: admin.0.to_owned(),
                    name: admin.1.to_owned(),
                },
                AuditAction::InvitationRevoked,
            )
            .target("user", user_id),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// What a registration link leads to.
#[derive(Debug, Clone)]
pub enum TokenState {
    Valid(InvitationRow),
    Used,
    Revoked,
    Replaced,
    Expired,
    Unknown,
    Malformed,
}

/// True when `token` has the shape of ours: 43 URL-safe base64 characters.
pub fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn lookup(db: &Db, token: &str, now: Millis) -> anyhow::Result<TokenState> {
    if !well_formed(token) {
        return Ok(TokenState::Malformed);
    }
    let Some(inv) = repo::find_by_token_hash(&db.pool, &token_hash(token)).await? else {
        return Ok(TokenState::Unknown);
    };
    Ok(match inv.status(now) {
        "used" => TokenState::Used,
        "revoked" => TokenState::Revoked,
        "replaced" => TokenState::Replaced,
        "expired" => TokenState::Expired,
        _ => TokenState::Valid(inv),
    })
}

/// Delivery state of each invitation's mail, by invitation id.
pub async fn delivery_states(
    db: &Db,
    invitation_ids: &[&str],
) -> anyhow::Result<HashMap<String, String>> {
    let mut conn = db.pool.acquire().await?;
    let rows = crate::mail::outbox::latest_by_refs(&mut conn, invitation_ids).await?;
    Ok(rows
        .into_iter()
        .map(|(k, r)| (k, r.status.clone()))
        .collect())
}

/// Rewrites references to renamed custom attributes in the stored invitation template, inside the caller's
/// transaction (the Entra ID User Source save); returns how many were rewritten.
pub async fn rename_variables(
    conn: &mut AnyConnection,
    renames: &[crate::configurations::model::Rename],
) -> anyhow::Result<usize> {
    let Some(mut s) = repo::find_settings(&mut *conn).await? else {
        return Ok(0);
    };
    let mut n = 0;
    for r in renames {
        for text in [&mut s.subject, &mut s.text_body, &mut s.html_body] {
            let (new, count) = substitute::rename(text, &r.from, &r.to);
            *text = new;
            n += count;
        }
    }
    if n > 0 {
        let now: Millis = sqlx::query_scalar("SELECT updated_at FROM invitation_settings")
            .fetch_one(&mut *conn)
            .await?;
        repo::upsert_settings(&mut *conn, &s, now).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_link_and_escapes_html() {
        let s = InvitationSettings::default();
        let user = UserFacts {
            id: "u1".into(),
            upn: "jane@contoso.com".into(),
            mail: Some("jane@contoso.com".into()),
            given_name: Some("Jane".into()),
            display_name: "Jane <Doe> & Co".into(),
            ..Default::default()
        };
        let r = render(&s, &user, &[], "https://roster.example/register/abc").unwrap();
        assert_eq!(r.subject, "Register your devices, Jane");
        assert!(r.text.contains("Hello Jane <Doe> & Co,"));
        assert!(r.text.contains("https://roster.example/register/abc"));
        assert!(r.html.contains("Jane &lt;Doe&gt; &amp; Co"));
        assert!(
            r.html
                .contains("href=\"https://roster.example/register/abc\"")
        );
    }

    #[test]
    fn token_shape() {
        let t = random_token(TOKEN_BYTES).unwrap();
        assert!(well_formed(&t), "{t}");
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}!", &t[..42])));
    }
}
