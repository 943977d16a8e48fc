//! Public data types: directory objects, mutations, faults, modes and recorded requests.
//!
//! Serde conventions (used by the HTTP control API under `/_emulator/`):
//! - `User` and `Group` use Graph's camelCase property names (`userPrincipalName`, ...);
//!   `onPremisesExtensionAttributes` is an array of 15 strings-or-null, `extensions` an object
//!   keyed by the full `extension_<appid>_<name>` name. Missing fields take their defaults.
//! - Enums are *externally tagged* (serde's default): unit variants are plain strings
//!   (`"NoRoles"`, `"Users"`), other variants are one-key objects, e.g.
//!   `{"SoftDeleteUser": "<id>"}`, `{"AddMember": {"group_id": "..", "kind": "User", "member_id": ".."}}`,
//!   `{"TooManyRequests": {"retry_after": 3}}`, `{"Hang": 1500}` (milliseconds),
//!   `{"MembersSlice": 20}`, `{"Off": "ShortPages"}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An Entra ID user, as the emulator stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: String,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub company_name: Option<String>,
    pub employee_id: Option<String>,
    pub account_enabled: bool,
    pub mobile_phone: Option<String>,
    /// `extensionAttribute1` .. `extensionAttribute15` (index 0 is attribute 1).
    pub on_premises_extension_attributes: [Option<String>; 15],
    /// Directory extensions keyed by their full name `extension_<appid>_<name>`.
    pub extensions: BTreeMap<String, Value>,
}

impl Default for User {
    fn default() -> Self {
        Self {
            id: String::new(),
            user_principal_name: String::new(),
            mail: None,
            given_name: None,
            surname: None,
            display_name: String::new(),
            job_title: None,
            department: None,
            company_name: None,
            employee_id: None,
            account_enabled: true,
            mobile_phone: None,
            on_premises_extension_attributes: Default::default(),
            extensions: BTreeMap::new(),
        }
    }
}

impl User {
    /// A minimal enabled user; an empty `id` gets a fresh GUID when the user is added.
    pub fn new(
        id: impl Into<String>,
        upn: impl Into<String>,
        display_name: impl Into<String>,
    ) -> Self {
        let upn = upn.into();
        Self {
            id: id.into(),
            mail: Some(upn.clone()),
            user_principal_name: upn,
            display_name: display_name.into(),
            ..Self::default()
        }
    }
}

/// An Entra ID group (security or Microsoft 365).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub mail: Option<String>,
    pub mail_enabled: bool,
    pub security_enabled: bool,
    pub group_types: Vec<String>,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            id: String::new(),
            display_name: String::new(),
            description: None,
            mail: None,
            mail_enabled: false,
            security_enabled: true,
            group_types: Vec::new(),
        }
    }
}

impl Group {
    /// A security group; an empty `id` gets a fresh GUID when the group is added.
    pub fn new(id: impl Into<String>, display_name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            display_name: display_name.into(),
            ..Self::default()
        }
    }
}

/// Type of a direct group member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub(crate) fn odata_type(self) -> &'static str {
        match self {
            MemberKind::User => "#microsoft.graph.user",
            MemberKind::Group => "#microsoft.graph.group",
        }
    }
}

/// Snapshot of the directory. All vectors are sorted by id (memberships by group id, then
/// member id).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Truth {
    /// Live users only.
    pub users: Vec<User>,
    /// Live groups only.
    pub groups: Vec<Group>,
    /// `(group_id, kind, member_id)`: direct memberships where both ends are live.
    pub memberships: Vec<(String, MemberKind, String)>,
    pub soft_deleted_users: Vec<String>,
    pub hard_deleted_users: Vec<String>,
    pub deleted_groups: Vec<String>,
}

/// A change to the directory. Each applied mutation gets its own change version, so it shows
/// up in the next delta round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    clippy::large_enum_variant,
    reason = "the public API takes User by value; mutations are rare"
)]
pub enum Mutation {
    /// Add a user (an empty id gets a fresh GUID). A hard-deleted id may be reused.
    AddUser(User),
    /// Patch with Graph property names (`jobTitle`, `mail`, `accountEnabled`,
    /// `onPremisesExtensionAttributes` (merged per key), `extension_<appid>_<name>`, ...).
    /// `null` clears.
    UpdateUser {
        id: String,
        patch: Value,
    },
    SoftDeleteUser(String),
    HardDeleteUser(String),
    RestoreUser(String),
    /// Add a group (an empty id gets a fresh GUID).
    AddGroup(Group),
    UpdateGroup {
        id: String,
        patch: Value,
    },
    DeleteGroup(String),
    AddMember {
        group_id: String,
        kind: MemberKind,
        member_id: String,
    },
    RemoveMember {
        group_id: String,
        member_id: String,
    },
}

/// A scripted fault: among the requests matching `endpoint`, let `skip` pass, then fail the
/// next `times` with `fault`.
///
/// Rules are checked in the order they were pushed. A request is counted by each matching,
/// not yet exhausted rule in turn until one fires; later rules do not see a request that an
/// earlier rule failed. So two rules on the same endpoint (`503` ×2, then `504` ×1) fire one
/// after the other. Exhausted rules stay in the list (harmless) until `clear_faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub endpoint: Endpoint,
    #[serde(default)]
    pub skip: usize,
    #[serde(default = "one")]
    pub times: usize,
    pub fault: Fault,
}

fn one() -> usize {
    1
}

impl FaultRule {
    /// Fail the next `times` matching requests.
    pub fn new(endpoint: Endpoint, times: usize, fault: Fault) -> Self {
        Self {
            endpoint,
            skip: 0,
            times,
            fault,
        }
    }
}

/// Which requests a fault rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// `POST /{tenant}/oauth2/v2.0/token`
    Token,
    /// `/v1.0/users` (list, `$count`, by id)
    Users,
    /// `/v1.0/groups` (list, `$count`, by id)
    Groups,
    /// `/v1.0/groups/{id}/members` and `/transitiveMembers` (with or without a type cast)
    Members,
    /// `/v1.0/users/delta` including nextLink and deltaLink requests
    UsersDelta,
    /// `/v1.0/groups/delta` including nextLink and deltaLink requests
    GroupsDelta,
    /// anything under `/v1.0/`
    AnyGraph,
    /// any request except the `/_emulator/` control API
    Any,
}

/// The failure to inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fault {
    /// 429 `TooManyRequests` + `x-ms-throttle-scope`/`x-ms-throttle-information`; `Retry-After`
    /// when `Some`.
    TooManyRequests { retry_after: Option<u64> },
    /// 503 `serviceNotAvailable`; `Retry-After` when `Some`.
    ServiceUnavailable { retry_after: Option<u64> },
    /// 504 with an HTML body.
    GatewayTimeoutHtml,
    /// 504 with an empty body.
    GatewayTimeoutEmpty,
    /// 500 `UnknownError`.
    InternalError,
    /// Sleep this long, then answer normally. Serialized as milliseconds.
    Hang(#[serde(with = "duration_ms")] Duration),
    /// 200 whose JSON body is cut in half.
    MalformedJson,
    /// 200 whose body stops half-way and the connection is dropped.
    ResetConnection,
    /// 401 `InvalidAuthenticationToken` "Access token has expired or is not yet valid."
    ExpiredToken,
    /// 400 `syncStateNotFound`.
    SyncStateNotFound,
    /// 410 with `Location` = the initial delta URL with an empty `$deltatoken`.
    Gone,
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Sticky behaviours. `set_mode(X)` turns X on (or sets its value); `Mode::Off(ModeKind::X)`
/// turns one off again and `Mode::Normal` turns all off (back to the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    /// Reset every mode to its default.
    Normal,
    /// Turn one mode off (back to its default).
    Off(ModeKind),
    /// Tokens issued from now on carry no `roles` → Graph answers 403
    /// `Authorization_RequestDenied`.
    NoRoles,
    /// User objects omit these properties (Graph names, case-insensitive). `extensionAttributeN`
    /// (or `onPremisesExtensionAttributes/extensionAttributeN`) nulls that key instead.
    DropAttributes(Vec<String>),
    /// Random short pages and occasional empty pages that still carry a nextLink.
    ShortPages,
    /// Delta: shuffled page order, duplicated entries, and replays of earlier changes.
    ShuffleAndReplay,
    /// Groups delta: split a group's `members@delta` into slices of this size (default 100).
    MembersSlice(usize),
    /// Issue tokens with this `expires_in`; Graph rejects them with 401 once expired.
    TokenExpiresIn(u64),
}

/// Names of the modes, for [`Mode::Off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModeKind {
    NoRoles,
    DropAttributes,
    ShortPages,
    ShuffleAndReplay,
    MembersSlice,
    TokenExpiresIn,
}

/// Current state of all modes (see [`crate::Emulator::modes`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Modes {
    pub no_roles: bool,
    pub drop_attributes: Vec<String>,
    pub short_pages: bool,
    pub shuffle_and_replay: bool,
    pub members_slice: usize,
    pub token_expires_in: Option<u64>,
}

/// Default `members@delta` slice size.
pub const DEFAULT_MEMBERS_SLICE: usize = 100;

impl Default for Modes {
    fn default() -> Self {
        Self {
            no_roles: false,
            drop_attributes: Vec::new(),
            short_pages: false,
            shuffle_and_replay: false,
            members_slice: DEFAULT_MEMBERS_SLICE,
            token_expires_in: None,
        }
    }
}

impl Modes {
    pub(crate) fn apply(&mut self, mode: Mode) {
        match mode {
            Mode::Normal => *self = Modes::default(),
            Mode::Off(kind) => {
                let d = Modes::default();
                match kind {
                    ModeKind::NoRoles => self.no_roles = d.no_roles,
                    ModeKind::DropAttributes => self.drop_attributes = d.drop_attributes,
                    ModeKind::ShortPages => self.short_pages = d.short_pages,
                    ModeKind::ShuffleAndReplay => self.shuffle_and_replay = d.shuffle_and_replay,
                    ModeKind::MembersSlice => self.members_slice = d.members_slice,
                    ModeKind::TokenExpiresIn => self.token_expires_in = d.token_expires_in,
                }
            }
            Mode::NoRoles => self.no_roles = true,
            Mode::DropAttributes(names) => self.drop_attributes = names,
            Mode::ShortPages => self.short_pages = true,
            Mode::ShuffleAndReplay => self.shuffle_and_replay = true,
            Mode::MembersSlice(n) => self.members_slice = n.max(1),
            Mode::TokenExpiresIn(secs) => self.token_expires_in = Some(secs),
        }
    }
}

/// One request the emulator received (control API requests are not recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path_and_query: String,
    /// Response status (0 while the request is still being handled).
    pub status: u16,
    /// The `retry-attempt` request header.
    pub retry_attempt: Option<String>,
    /// The `client-request-id` request header as sent (None when the client sent none).
    pub client_request_id: Option<String>,
    pub authorization_present: bool,
    #[serde(skip, default = "Instant::now")]
    pub at: Instant,
    /// Milliseconds since the emulator started (serialized stand-in for `at`).
    pub at_ms: u64,
    /// The injected fault, if one fired (Debug form of [`Fault`], or `"Throttled"`).
    pub fault: Option<String>,
}
