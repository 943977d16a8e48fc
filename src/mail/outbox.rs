//! The outbox producers write to: [`enqueue`] one mail or [`enqueue_many`] in the caller's own transaction,
//! so a mail exists exactly when the change that causes it commits. Also how to read delivery state back.

use sqlx::{Any, AnyConnection, Executor};

use crate::clock::Millis;
use crate::db::ids::new_id;
use crate::mail::repo;

pub use crate::mail::repo::OutboxRow;

/// A mail to deliver. Bodies are final (rendered by the producer from its `.html` + `.txt` pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// What it is, e.g. `"invitation"` or `"test"`.
    pub kind: &'static str,
    /// What caused it (e.g. the invitation id), to read its delivery state back.
    pub ref_id: Option<String>,
    pub to_address: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

/// Delivery state of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStatus {
    /// Waiting for (another) try.
    Queued,
    Sent,
    /// Given up after the retry window (24 h by default).
    Failed,
}

impl MailStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            _ => Self::Queued,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

impl OutboxRow {
    pub fn mail_status(&self) -> MailStatus {
        MailStatus::parse(&self.status)
    }
}

/// Queues one mail; returns its id. Pass the transaction of the change that causes the mail, then call
/// `AppState::mail.wake()` after it commits.
pub async fn enqueue<'e>(
    ex: impl Executor<'e, Database = Any>,
    mail: &OutgoingMail,
    now: Millis,
) -> sqlx::Result<String> {
    let id = new_id();
    repo::insert_mail(ex, &id, mail, now).await?;
    Ok(id)
}

/// Queues many mails with multi-row INSERTs (sized by `db::rows_per_statement`); returns their ids in input order.
/// Pass `&mut *tx` of the caller's transaction.
pub async fn enqueue_many(
    conn: &mut AnyConnection,
    mails: &[OutgoingMail],
    now: Millis,
) -> sqlx::Result<Vec<String>> {
    let ids: Vec<String> = mails.iter().map(|_| new_id()).collect();
    let per_statement = crate::db::rows_per_statement(&*conn, 8);
    for (id_chunk, mail_chunk) in ids.chunks(per_statement).zip(mails.chunks(per_statement)) {
        let rows: Vec<(String, &OutgoingMail)> =
            id_chunk.iter().cloned().zip(mail_chunk.iter()).collect();
        repo::insert_mails(conn, &rows, now).await?;
    }
    Ok(ids)
}

/// The newest mail queued for `ref_id` (e.g. an invitation), with its status, attempts and last error.
pub async fn find_latest_by_ref<'e>(
    ex: impl Executor<'e, Database = Any>,
    ref_id: &str,
) -> sqlx::Result<Option<OutboxRow>> {
    repo::find_latest_by_ref(ex, ref_id).await
}

/// The newest mail per `ref_id`, for a list page (chunked, any number of ids).
pub async fn latest_by_refs(
    conn: &mut AnyConnection,
    ref_ids: &[&str],
) -> sqlx::Result<std::collections::HashMap<String, OutboxRow>> {
    let mut out = std::collections::HashMap::new();
    for chunk in ref_ids.chunks(500) {
        // Newest first: keep the first row seen per ref.
        for row in repo::list_by_refs(conn, chunk).await? {
            if let Some(r) = row.ref_id.clone() {
                out.entry(r).or_insert(row);
            }
        }
    }
    Ok(out)
}
