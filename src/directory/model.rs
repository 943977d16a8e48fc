//! Directory records as sync writes them.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// A user as read from the source, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub external_id: String,
    pub upn: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: String,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub account_enabled: bool,
    /// Custom attribute values by variable name (missing values are absent).
    pub custom_attributes: BTreeMap<String, String>,
    pub managed_apple_id: Option<String>,
}

impl UserRecord {
    /// A fingerprint of every stored field: an update that changes nothing keeps "last changed".
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            Some(self.upn.as_str()),
            self.mail.as_deref(),
            self.given_name.as_deref(),
            self.surname.as_deref(),
            Some(self.display_name.as_str()),
            self.job_title.as_deref(),
            self.department.as_deref(),
            Some(if self.account_enabled { "1" } else { "0" }),
            self.managed_apple_id.as_deref(),
        ] {
            h.update(part.unwrap_or("\u{0}null").as_bytes());
            h.update([0x1f]);
        }
        for (k, v) in &self.custom_attributes {
            h.update(k.as_bytes());
            h.update([0x1e]);
            h.update(v.as_bytes());
            h.update([0x1f]);
        }
        short_hex(&h.finalize())
    }
}

/// A group as read from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub external_id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub mail: Option<String>,
    pub mail_enabled: bool,
    pub security_enabled: bool,
    pub group_types: Vec<String>,
}

impl GroupRecord {
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            Some(self.display_name.as_str()),
            self.description.as_deref(),
            self.mail.as_deref(),
            Some(if self.mail_enabled { "1" } else { "0" }),
            Some(if self.security_enabled { "1" } else { "0" }),
        ] {
            h.update(part.unwrap_or("\u{0}null").as_bytes());
            h.update([0x1f]);
        }
        for t in &self.group_types {
            h.update(t.as_bytes());
            h.update([0x1e]);
        }
        short_hex(&h.finalize())
    }
}

fn short_hex(d: &[u8]) -> String {
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What kind of object a group member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    User,
    Group,
    Other,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Other => "other",
        }
    }

    /// From Graph's `@odata.type`.
    pub fn from_odata(t: &str) -> Self {
        match t {
            "#microsoft.graph.user" => Self::User,
            "#microsoft.graph.group" => Self::Group,
            _ => Self::Other,
        }
    }
}

/// Counts of an upsert batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    pub added: i64,
    pub updated: i64,
}

/// Which users the Users page (and its CSV export) shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Prefix of the display name, UPN or email (any case).
    pub q: Option<String>,
    /// `entra` or `local`.
    pub source: Option<String>,
    pub status: Option<UserStatus>,
    /// Only synced users without a value for this custom attribute.
    pub missing: Option<String>,
    /// Only users whose Managed Apple ID another user has too.
    pub apple_conflict: bool,
    /// `none` (not invited), `invited` or `registered`.
    pub invitation: Option<String>,
    pub sort: UserSort,
    pub desc: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Disabled,
    NotSynced,
}

impl UserStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            "not_synced" => Some(Self::NotSynced),
            _ => None,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::NotSynced => "not_synced",
        }
    }
}

/// Sortable columns; each has an index ending in `id` for keyset paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    #[default]
    Upn,
    Name,
    Changed,
}

impl UserSort {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upn" => Some(Self::Upn),
            "name" => Some(Self::Name),
            "changed" => Some(Self::Changed),
            _ => None,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::Upn => "upn",
            Self::Name => "name",
            Self::Changed => "changed",
        }
    }

    /// The column sorted on.
    pub fn column(self) -> &'static str {
        match self {
            Self::Upn => "upn_lower",
            Self::Name => "display_name_lower",
            Self::Changed => "last_changed_at",
        }
    }
}

/// Where the next page starts: the sort value and id of the last row shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    pub value: String,
    pub id: String,
}

impl UserCursor {
    /// `value\u{1f}id` as carried in a link.
    pub fn encode(&self) -> String {
        format!("{}\u{1f}{}", self.value, self.id)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let (value, id) = raw.rsplit_once('\u{1f}')?;
        Some(Self {
            value: value.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// The upper bound of a prefix range in byte order: every string starting with `p` sorts below it.
pub fn prefix_end(p: &str) -> String {
    format!("{p}\u{10FFFF}")
}
