//! The directory state: users, groups, memberships, per-object change versions and the
//! membership change log that delta rounds are computed from.

use crate::types::{Group, MemberKind, Mutation, Truth, User};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub(crate) type Id = Arc<str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserState {
    Live,
    SoftDeleted,
    HardDeleted,
}

#[derive(Debug)]
pub(crate) struct UserRec {
    pub(crate) user: User,
    pub(crate) state: UserState,
    /// Version at which the user was (last) created.
    pub(crate) created: u64,
    /// Version of the last create / soft delete / hard delete / restore.
    pub(crate) lifecycle: u64,
    /// Last change version per tracked property (Graph name); absent = never changed since
    /// creation.
    pub(crate) props: HashMap<String, u64>,
    pub(crate) created_secs: u64,
    pub(crate) deleted_secs: Option<u64>,
}

impl UserRec {
    /// Version of the last change of a tracked property (creation when never changed).
    pub(crate) fn prop_version(&self, prop: &str) -> u64 {
        self.props.get(prop).copied().unwrap_or(self.created)
    }
}

#[derive(Debug)]
pub(crate) struct GroupRec {
    pub(crate) group: Group,
    pub(crate) live: bool,
    pub(crate) created: u64,
    pub(crate) lifecycle: u64,
    pub(crate) props: HashMap<String, u64>,
    /// Version of the last membership change logged for this group.
    pub(crate) members_version: u64,
    pub(crate) created_secs: u64,
}

impl GroupRec {
    pub(crate) fn prop_version(&self, prop: &str) -> u64 {
        self.props.get(prop).copied().unwrap_or(self.created)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub(crate) version: u64,
    pub(crate) member: Id,
    pub(crate) kind: MemberKind,
    pub(crate) added: bool,
}

/// A net membership change for one member since some version.
#[derive(Debug, Clone)]
pub(crate) struct MemberChange {
    pub(crate) member: Id,
    pub(crate) kind: MemberKind,
    pub(crate) added: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Directory {
    /// Global change counter; generated data is version 0, each mutation bumps it.
    pub(crate) version: u64,
    pub(crate) users: BTreeMap<Id, UserRec>,
    pub(crate) groups: BTreeMap<Id, GroupRec>,
    /// Stored direct memberships group → member (may include soft-deleted users, which are
    /// not *effective* members until restored).
    pub(crate) members: HashMap<Id, BTreeMap<Id, MemberKind>>,
    /// Reverse index member → groups.
    pub(crate) member_of: HashMap<Id, BTreeSet<Id>>,
    /// Effective membership changes per group, in version order.
    pub(crate) log: HashMap<Id, Vec<LogEntry>>,
}

pub(crate) const EXTENSION_ATTRIBUTES: usize = 15;

impl Directory {
    pub(crate) fn insert_user(&mut self, user: User, created_secs: u64) -> Id {
        let id: Id = Arc::from(user.id.as_str());
        let v = self.version;
        self.users.insert(
            id.clone(),
            UserRec {
                user,
                state: UserState::Live,
                created: v,
                lifecycle: v,
                props: HashMap::new(),
                created_secs,
                deleted_secs: None,
            },
        );
        id
    }

    pub(crate) fn insert_group(&mut self, group: Group, created_secs: u64) -> Id {
        let id: Id = Arc::from(group.id.as_str());
        let v = self.version;
        self.groups.insert(
            id.clone(),
            GroupRec {
                group,
                live: true,
                created: v,
                lifecycle: v,
                props: HashMap::new(),
                members_version: 0,
                created_secs,
            },
        );
        id
    }

    /// Store a membership without logging (data generation).
    pub(crate) fn link(&mut self, group: &Id, kind: MemberKind, member: &Id) -> bool {
        let inserted = self
            .members
            .entry(group.clone())
            .or_default()
            .insert(member.clone(), kind)
            .is_none();
        if inserted {
            self.member_of
                .entry(member.clone())
                .or_default()
                .insert(group.clone());
        }
        inserted
    }

    fn unlink(&mut self, group: &str, member: &str) -> Option<MemberKind> {
        let kind = self.members.get_mut(group)?.remove(member)?;
        if let Some(set) = self.member_of.get_mut(member) {
            set.remove(group);
            if set.is_empty() {
                self.member_of.remove(member);
            }
        }
        Some(kind)
    }

    pub(crate) fn user_live(&self, id: &str) -> bool {
        self.users
            .get(id)
            .is_some_and(|u| u.state == UserState::Live)
    }

    pub(crate) fn group_live(&self, id: &str) -> bool {
        self.groups.get(id).is_some_and(|g| g.live)
    }

    pub(crate) fn member_live(&self, kind: MemberKind, id: &str) -> bool {
        match kind {
            MemberKind::User => self.user_live(id),
            MemberKind::Group => self.group_live(id),
        }
    }

    /// Effective (live) direct members of a group, in id order.
    pub(crate) fn effective_members<'a>(
        &'a self,
        group: &str,
    ) -> impl Iterator<Item = (&'a Id, MemberKind)> + 'a {
        self.members
            .get(group)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |(id, kind)| self.member_live(**kind, id))
            .map(|(id, kind)| (id, *kind))
    }

    /// Transitive members (users and nested groups) of a group, excluding the group itself.
    pub(crate) fn transitive_members(&self, group: &str) -> BTreeMap<Id, MemberKind> {
        let mut out = BTreeMap::new();
        let mut stack: Vec<Id> = vec![Arc::from(group)];
        let mut seen_groups: BTreeSet<Id> = BTreeSet::new();
        seen_groups.insert(Arc::from(group));
        while let Some(g) = stack.pop() {
            for (id, kind) in self.effective_members(&g) {
                if kind == MemberKind::Group {
                    if seen_groups.insert(id.clone()) {
                        stack.push(id.clone());
                        out.insert(id.clone(), kind);
                    }
                } else {
                    out.insert(id.clone(), kind);
                }
            }
        }
        out
    }

    /// Net effective membership changes of `group` since `since`, sorted by member id. With
    /// `replay`, every member touched since then is reported with its current state, even
    /// when the net effect is nil (idempotent replays of earlier changes).
    pub(crate) fn member_changes_since(
        &self,
        group: &str,
        since: u64,
        replay: bool,
    ) -> Vec<MemberChange> {
        let Some(log) = self.log.get(group) else {
            return Vec::new();
        };
        let start = log.partition_point(|e| e.version <= since);
        // member → (was a member at `since`, kind)
        let mut touched: BTreeMap<&Id, (bool, MemberKind)> = BTreeMap::new();
        for e in &log[start..] {
            touched.entry(&e.member).or_insert((!e.added, e.kind));
        }
        let current = self.members.get(group);
        touched
            .into_iter()
            .filter_map(|(member, (was, kind))| {
                let now = current
                    .and_then(|m| m.get(member))
                    .is_some_and(|k| self.member_live(*k, member));
                (replay || now != was).then(|| MemberChange {
                    member: member.clone(),
                    kind,
                    added: now,
                })
            })
            .collect()
    }

    fn log_member(&mut self, group: &Id, member: &Id, kind: MemberKind, added: bool) {
        let version = self.version;
        self.log.entry(group.clone()).or_default().push(LogEntry {
            version,
            member: member.clone(),
            kind,
            added,
        });
        if let Some(g) = self.groups.get_mut(group) {
            g.members_version = version;
        }
    }

    /// Log the effective removal (or re-add) of `member` from every live group holding it.
    fn log_member_everywhere(&mut self, member: &Id, kind: MemberKind, added: bool) {
        let parents: Vec<Id> = self
            .member_of
            .get(member)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for p in parents {
            if self.group_live(&p) {
                self.log_member(&p, member, kind, added);
            }
        }
    }

    pub(crate) fn truth(&self) -> Truth {
        let mut t = Truth::default();
        for (id, rec) in &self.users {
            match rec.state {
                UserState::Live => t.users.push(rec.user.clone()),
                UserState::SoftDeleted => t.soft_deleted_users.push(id.to_string()),
                UserState::HardDeleted => t.hard_deleted_users.push(id.to_string()),
            }
        }
        for (id, rec) in &self.groups {
            if rec.live {
                t.groups.push(rec.group.clone());
                for (m, kind) in self.effective_members(id) {
                    t.memberships.push((id.to_string(), kind, m.to_string()));
                }
            } else {
                t.deleted_groups.push(id.to_string());
            }
        }
        t
    }

    /// Apply one mutation as a new change version.
    pub(crate) fn apply(
        &mut self,
        m: Mutation,
        now_secs: u64,
        new_id: impl FnOnce() -> String,
    ) -> Result<(), String> {
        self.check(&m)?;
        self.version += 1;
        let v = self.version;
        match m {
            Mutation::AddUser(mut user) => {
                if user.id.is_empty() {
                    user.id = new_id();
                }
                self.insert_user(user, now_secs);
            }
            Mutation::UpdateUser { id, patch } => {
                let rec = self
                    .users
                    .get_mut(id.as_str())
                    .ok_or_else(|| format!("user {id} not found"))?;
                let changed = patch_user(&mut rec.user, &patch)?;
                for p in changed {
                    rec.props.insert(p, v);
                }
            }
            Mutation::SoftDeleteUser(id) => {
                let key = self.user_key(&id)?;
                if let Some(rec) = self.users.get_mut(&key) {
                    rec.state = UserState::SoftDeleted;
                    rec.lifecycle = v;
                    rec.deleted_secs = Some(now_secs);
                }
                self.log_member_everywhere(&key, MemberKind::User, false);
            }
            Mutation::HardDeleteUser(id) => {
                let key = self.user_key(&id)?;
                let was_live = self.user_live(&key);
                if was_live {
                    self.log_member_everywhere(&key, MemberKind::User, false);
                }
                let parents: Vec<Id> = self
                    .member_of
                    .get(&key)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for p in parents {
                    self.unlink(&p, &key);
                }
                if let Some(rec) = self.users.get_mut(&key) {
                    rec.state = UserState::HardDeleted;
                    rec.lifecycle = v;
                    rec.deleted_secs.get_or_insert(now_secs);
                }
            }
            Mutation::RestoreUser(id) => {
                let key = self.user_key(&id)?;
                if let Some(rec) = self.users.get_mut(&key) {
                    rec.state = UserState::Live;
                    rec.lifecycle = v;
                    rec.deleted_secs = None;
                }
                self.log_member_everywhere(&key, MemberKind::User, true);
            }
            Mutation::AddGroup(mut group) => {
                if group.id.is_empty() {
                    group.id = new_id();
                }
                self.insert_group(group, now_secs);
            }
            Mutation::UpdateGroup { id, patch } => {
                let rec = self
                    .groups
                    .get_mut(id.as_str())
                    .ok_or_else(|| format!("group {id} not found"))?;
                let changed = patch_group(&mut rec.group, &patch)?;
                for p in changed {
                    rec.props.insert(p, v);
                }
            }
            Mutation::DeleteGroup(id) => {
                let key = self.group_key(&id)?;
                self.log_member_everywhere(&key, MemberKind::Group, false);
                let parents: Vec<Id> = self
                    .member_of
                    .get(&key)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for p in parents {
                    self.unlink(&p, &key);
                }
                let children: Vec<Id> = self
                    .members
                    .get(&key)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for c in children {
                    self.unlink(&key, &c);
                }
                self.members.remove(&key);
                if let Some(rec) = self.groups.get_mut(&key) {
                    rec.live = false;
                    rec.lifecycle = v;
                }
            }
            Mutation::AddMember {
                group_id,
                kind,
                member_id,
            } => {
                let g = self.group_key(&group_id)?;
                let m = match kind {
                    MemberKind::User => self.user_key(&member_id)?,
                    MemberKind::Group => self.group_key(&member_id)?,
                };
                self.link(&g, kind, &m);
                self.log_member(&g, &m, kind, true);
            }
            Mutation::RemoveMember {
                group_id,
                member_id,
            } => {
                let g = self.group_key(&group_id)?;
                let m: Id = Arc::from(member_id.as_str());
                if let Some(kind) = self.unlink(&g, &m)
                    && self.member_live(kind, &m)
                {
                    self.log_member(&g, &m, kind, false);
                }
            }
        }
        Ok(())
    }

    fn user_key(&self, id: &str) -> Result<Id, String> {
        self.users
            .get_key_value(id)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| format!("user {id} not found"))
    }

    fn group_key(&self, id: &str) -> Result<Id, String> {
        self.groups
            .get_key_value(id)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| format!("group {id} not found"))
    }

    /// Validate a mutation without changing anything.
    fn check(&self, m: &Mutation) -> Result<(), String> {
        let user_state = |id: &str| self.users.get(id).map(|u| u.state);
        match m {
            Mutation::AddUser(u) => {
                if u.user_principal_name.is_empty() {
                    return Err("userPrincipalName is required".into());
                }
                match user_state(&u.id) {
                    Some(UserState::Live | UserState::SoftDeleted) => {
                        Err(format!("user {} already exists", u.id))
                    }
                    _ => Ok(()),
                }
            }
            Mutation::UpdateUser { id, patch } => match user_state(id) {
                Some(UserState::Live) => patch_user(&mut User::default(), patch).map(|_| ()),
                Some(_) => Err(format!("user {id} is deleted")),
                None => Err(format!("user {id} not found")),
            },
            Mutation::SoftDeleteUser(id) => match user_state(id) {
                Some(UserState::Live) => Ok(()),
                Some(_) => Err(format!("user {id} is already deleted")),
                None => Err(format!("user {id} not found")),
            },
            Mutation::HardDeleteUser(id) => match user_state(id) {
                Some(UserState::Live | UserState::SoftDeleted) => Ok(()),
                Some(UserState::HardDeleted) => Err(format!("user {id} is already deleted")),
                None => Err(format!("user {id} not found")),
            },
            Mutation::RestoreUser(id) => match user_state(id) {
                Some(UserState::SoftDeleted) => Ok(()),
                Some(_) => Err(format!("user {id} is not soft-deleted")),
                None => Err(format!("user {id} not found")),
            },
            Mutation::AddGroup(g) => {
                if self.groups.contains_key(g.id.as_str()) {
                    Err(format!("group {} already exists", g.id))
                } else {
                    Ok(())
                }
            }
            Mutation::UpdateGroup { id, patch } => {
                if self.group_live(id) {
                    patch_group(&mut Group::default(), patch).map(|_| ())
                } else {
                    Err(format!("group {id} not found"))
                }
            }
            Mutation::DeleteGroup(id) => {
                if self.group_live(id) {
                    Ok(())
                } else {
                    Err(format!("group {id} not found"))
                }
            }
            Mutation::AddMember {
                group_id,
                kind,
                member_id,
            } => {
                if !self.group_live(group_id) {
                    return Err(format!("group {group_id} not found"));
                }
                if !self.member_live(*kind, member_id) {
                    return Err(format!("{kind:?} {member_id} not found"));
                }
                if group_id == member_id {
                    return Err("a group cannot be a member of itself".into());
                }
                if self
                    .members
                    .get(group_id.as_str())
                    .is_some_and(|m| m.contains_key(member_id.as_str()))
                {
                    return Err(format!(
                        "One or more added object references already exist ({member_id} in {group_id})"
                    ));
                }
                Ok(())
            }
            Mutation::RemoveMember {
                group_id,
                member_id,
            } => {
                if !self.group_live(group_id) {
                    return Err(format!("group {group_id} not found"));
                }
                if self
                    .members
                    .get(group_id.as_str())
                    .is_some_and(|m| m.contains_key(member_id.as_str()))
                {
                    Ok(())
                } else {
                    Err(format!("{member_id} is not a member of {group_id}"))
                }
            }
        }
    }
}

fn opt_string(v: &Value, name: &str) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(format!("{name} must be a string or null")),
    }
}

fn req_string(v: &Value, name: &str) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("{name} must be a non-empty string")),
    }
}

fn bool_value(v: &Value, name: &str) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("{name} must be a boolean"))
}

fn set_if_changed<T: PartialEq>(slot: &mut T, value: T, name: &str, changed: &mut Vec<String>) {
    if *slot != value {
        *slot = value;
        changed.push(name.to_string());
    }
}

/// Apply a Graph-style PATCH to a user; returns the names of properties that changed.
pub(crate) fn patch_user(user: &mut User, patch: &Value) -> Result<Vec<String>, String> {
    let obj = patch.as_object().ok_or("patch must be a JSON object")?;
    let mut changed = Vec::new();
    for (k, v) in obj {
        let name = crate::objects::canonical_user_prop(k).unwrap_or(k.as_str());
        match name {
            "userPrincipalName" => set_if_changed(
                &mut user.user_principal_name,
                req_string(v, name)?,
                name,
                &mut changed,
            ),
            "displayName" => set_if_changed(
                &mut user.display_name,
                req_string(v, name)?,
                name,
                &mut changed,
            ),
            "mail" => set_if_changed(&mut user.mail, opt_string(v, name)?, name, &mut changed),
            "givenName" => set_if_changed(
                &mut user.given_name,
                opt_string(v, name)?,
                name,
                &mut changed,
            ),
            "surname" => {
                set_if_changed(&mut user.surname, opt_string(v, name)?, name, &mut changed)
            }
            "jobTitle" => set_if_changed(
                &mut user.job_title,
                opt_string(v, name)?,
                name,
                &mut changed,
            ),
            "department" => set_if_changed(
                &mut user.department,
                opt_string(v, name)?,
                name,
                &mut changed,
            ),
            "companyName" => set_if_changed(
                &mut user.company_name,
                opt_string(v, name)?,
                name,
                &mut changed,
            ),
            "employeeId" => set_if_changed(
                &mut user.employee_id,
                opt_string(v, name)?,
                name,
                &mut changed,
            ),
            "mobilePhone" => set_if_changed(
                &mut user.mobile_phone,
                opt_string(v, name)?,
                name,
                &mut changed,
            ),
            "accountEnabled" => set_if_changed(
                &mut user.account_enabled,
                bool_value(v, name)?,
                name,
                &mut changed,
            ),
            "onPremisesExtensionAttributes" => {
                let mut attrs = user.on_premises_extension_attributes.clone();
                match v {
                    Value::Null => attrs = Default::default(),
                    Value::Object(map) => {
                        for (ak, av) in map {
                            let n = ak
                                .strip_prefix("extensionAttribute")
                                .and_then(|n| n.parse::<usize>().ok())
                                .filter(|n| (1..=EXTENSION_ATTRIBUTES).contains(n))
                                .ok_or_else(|| format!("unknown extension attribute {ak}"))?;
                            attrs[n - 1] = opt_string(av, ak)?;
                        }
                    }
                    _ => return Err("onPremisesExtensionAttributes must be an object".into()),
                }
                set_if_changed(
                    &mut user.on_premises_extension_attributes,
                    attrs,
                    name,
                    &mut changed,
                );
            }
            ext if crate::objects::is_extension_name(ext) => {
                let before = user.extensions.get(ext).cloned();
                if v.is_null() {
                    user.extensions.remove(ext);
                } else {
                    user.extensions.insert(ext.to_string(), v.clone());
                }
                if before.as_ref() != user.extensions.get(ext) {
                    changed.push(ext.to_string());
                }
            }
            "id" => return Err("id cannot be changed".into()),
            other => return Err(format!("property {other} cannot be patched")),
        }
    }
    Ok(changed)
}

/// Apply a Graph-style PATCH to a group; returns the names of properties that changed.
pub(crate) fn patch_group(group: &mut Group, patch: &Value) -> Result<Vec<String>, String> {
    let obj = patch.as_object().ok_or("patch must be a JSON object")?;
    let mut changed = Vec::new();
    for (k, v) in obj {
        let name = crate::objects::canonical_group_prop(k).unwrap_or(k.as_str());
        match name {
            "displayName" => set_if_changed(
                &mut group.display_name,
                req_string(v, name)?,
                name,
                &mut changed,
            ),
            "description" => set_if_changed(
                &mut group.description,
                opt_string(v, name)?,
                name,
                &mut changed,
            ),
            "mail" => set_if_changed(&mut group.mail, opt_string(v, name)?, name, &mut changed),
            "mailEnabled" => set_if_changed(
                &mut group.mail_enabled,
                bool_value(v, name)?,
                name,
                &mut changed,
            ),
            "securityEnabled" => set_if_changed(
                &mut group.security_enabled,
                bool_value(v, name)?,
                name,
                &mut changed,
            ),
            "groupTypes" => {
                let types: Vec<String> = serde_json::from_value(v.clone())
                    .map_err(|_| "groupTypes must be an array of strings".to_string())?;
                set_if_changed(&mut group.group_types, types, name, &mut changed);
            }
            "id" => return Err("id cannot be changed".into()),
            other => return Err(format!("property {other} cannot be patched")),
        }
    }
    Ok(changed)
}
