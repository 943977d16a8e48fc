//! Graph JSON representation of users and groups: property tables, `$select` resolution and
//! object rendering.

use crate::model::{GroupRec, UserRec};
use crate::types::MemberKind;
use crate::util::iso_z;
use serde_json::{Map, Value, json};

/// Properties returned by `/users` without `$select`.
pub(crate) const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Every user property the emulator knows (selectable on collections).
const USER_PROPS: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "givenName",
    "surname",
    "displayName",
    "jobTitle",
    "department",
    "companyName",
    "employeeId",
    "accountEnabled",
    "mobilePhone",
    "onPremisesExtensionAttributes",
    "businessPhones",
    "officeLocation",
    "preferredLanguage",
    "userType",
    "mailNickname",
    "createdDateTime",
    "deletedDateTime",
    "employeeType",
    "employeeHireDate",
    "employeeOrgData",
    "otherMails",
    "proxyAddresses",
    "imAddresses",
    "onPremisesSyncEnabled",
    "onPremisesSamAccountName",
    "onPremisesUserPrincipalName",
    "onPremisesDomainName",
    "onPremisesDistinguishedName",
    "onPremisesSecurityIdentifier",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "usageLocation",
    "city",
    "country",
    "state",
    "streetAddress",
    "postalCode",
    "faxNumber",
    "ageGroup",
    "creationType",
    "externalUserState",
    "showInAddressList",
    "preferredDataLocation",
    "securityIdentifier",
    "signInActivity",
];

/// User properties that Graph refuses on collections (501 NotImplemented).
const USER_NOT_ON_COLLECTIONS: &[&str] = &[
    "skills",
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "mailboxSettings",
];

/// Properties returned by `/groups` without `$select`.
pub(crate) const GROUP_DEFAULT: &[&str] = &[
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesLastSyncDateTime",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "onPremisesNetBiosName",
    "onPremisesProvisioningErrors",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "theme",
    "visibility",
];

const GROUP_EXTRA: &[&str] = &["securityIdentifier", "creationOptions"];

pub(crate) fn canonical_user_prop(name: &str) -> Option<&'static str> {
    USER_PROPS
        .iter()
        .find(|p| p.eq_ignore_ascii_case(name))
        .copied()
}

pub(crate) fn canonical_group_prop(name: &str) -> Option<&'static str> {
    GROUP_DEFAULT
        .iter()
        .chain(GROUP_EXTRA)
        .find(|p| p.eq_ignore_ascii_case(name))
        .copied()
}

fn not_on_collections(name: &str) -> bool {
    USER_NOT_ON_COLLECTIONS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

/// `extension_<32 hex>_<name>`
pub(crate) fn is_extension_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("extension_") else {
        return false;
    };
    let Some((app, prop)) = rest.split_once('_') else {
        return false;
    };
    app.len() == 32 && app.bytes().all(|c| c.is_ascii_hexdigit()) && !prop.is_empty()
}

/// The object type a property list applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjType {
    User,
    Group,
    /// `/members` without a cast: user and group properties are both allowed.
    DirectoryObject,
}

/// Why a `$select` was refused.
#[derive(Debug)]
pub(crate) enum SelectError {
    NotImplemented(String),
    Unknown(String),
}

/// Resolve a `$select` value into canonical property names (deduplicated, in the given order).
/// `allow_members` accepts `members` (groups delta).
pub(crate) fn resolve_select(
    raw: &str,
    ty: ObjType,
    allow_members: bool,
) -> Result<Vec<String>, SelectError> {
    let mut out: Vec<String> = Vec::new();
    for part in raw.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let canonical: String = if is_extension_name(p) {
            p.to_string()
        } else if allow_members && p.eq_ignore_ascii_case("members") {
            "members".to_string()
        } else {
            let user = matches!(ty, ObjType::User | ObjType::DirectoryObject);
            let group = matches!(ty, ObjType::Group | ObjType::DirectoryObject);
            if user && not_on_collections(p) {
                return Err(SelectError::NotImplemented(p.to_string()));
            }
            let found = user
                .then(|| canonical_user_prop(p))
                .flatten()
                .or_else(|| group.then(|| canonical_group_prop(p)).flatten());
            match found {
                Some(c) => c.to_string(),
                None => return Err(SelectError::Unknown(p.to_string())),
            }
        };
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

fn s(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |x| Value::String(x.clone()))
}

fn local_part(addr: &str) -> &str {
    addr.split('@').next().unwrap_or(addr)
}

/// Value of one user property; `None` when the property is absent (unset directory
/// extension).
pub(crate) fn user_value(rec: &UserRec, prop: &str) -> Option<Value> {
    let u = &rec.user;
    Some(match prop {
        "id" => json!(u.id),
        "userPrincipalName" => json!(u.user_principal_name),
        "displayName" => json!(u.display_name),
        "mail" => s(&u.mail),
        "givenName" => s(&u.given_name),
        "surname" => s(&u.surname),
        "jobTitle" => s(&u.job_title),
        "department" => s(&u.department),
        "companyName" => s(&u.company_name),
        "employeeId" => s(&u.employee_id),
        "mobilePhone" => s(&u.mobile_phone),
        "accountEnabled" => json!(u.account_enabled),
        "onPremisesExtensionAttributes" => {
            let mut m = Map::new();
            for (i, a) in u.on_premises_extension_attributes.iter().enumerate() {
                m.insert(format!("extensionAttribute{}", i + 1), s(a));
            }
            Value::Object(m)
        }
        "businessPhones" | "otherMails" | "imAddresses" => json!([]),
        "proxyAddresses" => match &u.mail {
            Some(m) => json!([format!("SMTP:{m}")]),
            None => json!([]),
        },
        "userType" => json!("Member"),
        "mailNickname" => json!(local_part(&u.user_principal_name)),
        "createdDateTime" => json!(iso_z(rec.created_secs)),
        "deletedDateTime" => rec.deleted_secs.map_or(Value::Null, |t| json!(iso_z(t))),
        "creationType" | "externalUserState" | "showInAddressList" | "signInActivity" => {
            Value::Null
        }
        "securityIdentifier" => json!(security_identifier(&u.id)),
        p if is_extension_name(p) => return u.extensions.get(p).cloned(),
        _ => Value::Null,
    })
}

/// The property whose change version governs `prop` (derived properties follow their
/// source).
pub(crate) fn user_prop_source(prop: &str) -> &str {
    match prop {
        "mailNickname" => "userPrincipalName",
        "proxyAddresses" => "mail",
        p => p,
    }
}

pub(crate) fn group_value(rec: &GroupRec, prop: &str) -> Option<Value> {
    let g = &rec.group;
    let unified = g
        .group_types
        .iter()
        .any(|t| t.eq_ignore_ascii_case("Unified"));
    Some(match prop {
        "id" => json!(g.id),
        "displayName" => json!(g.display_name),
        "description" => s(&g.description),
        "mail" => s(&g.mail),
        "mailEnabled" => json!(g.mail_enabled),
        "securityEnabled" => json!(g.security_enabled),
        "groupTypes" => json!(g.group_types),
        "mailNickname" => json!(match &g.mail {
            Some(m) => local_part(m).to_string(),
            None => g
                .display_name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>(),
        }),
        "createdDateTime" | "renewedDateTime" => json!(iso_z(rec.created_secs)),
        "proxyAddresses" => match &g.mail {
            Some(m) => json!([format!("SMTP:{m}")]),
            None => json!([]),
        },
        "onPremisesProvisioningErrors"
        | "resourceBehaviorOptions"
        | "resourceProvisioningOptions"
        | "creationOptions" => json!([]),
        "securityIdentifier" => json!(security_identifier(&g.id)),
        "visibility" => {
            if unified {
                json!("Private")
            } else {
                Value::Null
            }
        }
        _ => Value::Null,
    })
}

pub(crate) fn group_prop_source(prop: &str) -> &str {
    match prop {
        "mailNickname" | "proxyAddresses" => "mail",
        "visibility" => "groupTypes",
        p => p,
    }
}

/// A stable `S-1-12-1-…` security identifier derived from the object id.
fn security_identifier(id: &str) -> String {
    let hex: String = id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let part = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    format!("S-1-12-1-{}-{}-{}-{}", part(0), part(1), part(2), part(3))
}

/// Apply [`crate::Mode::DropAttributes`] to a rendered user object.
pub(crate) fn drop_attributes(obj: &mut Map<String, Value>, drop: &[String]) {
    for d in drop {
        let attr = d
            .strip_prefix("onPremisesExtensionAttributes/")
            .unwrap_or(d.as_str());
        let prefix = "extensionAttribute";
        let number = attr
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .and_then(|_| attr.get(prefix.len()..))
            .filter(|n| !n.is_empty());
        if let Some(n) = number {
            if let Some(Value::Object(m)) = obj.get_mut("onPremisesExtensionAttributes") {
                let key = format!("{prefix}{n}");
                if m.contains_key(&key) {
                    m.insert(key, Value::Null);
                }
            }
            continue;
        }
        if d == "id" {
            continue;
        }
        let keys: Vec<String> = obj
            .keys()
            .filter(|k| k.eq_ignore_ascii_case(d))
            .cloned()
            .collect();
        for k in keys {
            obj.remove(&k);
        }
    }
}

/// Render a user for list endpoints: every requested property, nulls included, unset
/// extensions left out.
pub(crate) fn user_object(rec: &UserRec, props: &[String], drop: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec.user.id));
    for p in props {
        if let Some(v) = user_value(rec, p) {
            m.insert(p.clone(), v);
        }
    }
    if !drop.is_empty() {
        drop_attributes(&mut m, drop);
    }
    m
}

pub(crate) fn group_object(rec: &GroupRec, props: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec.group.id));
    for p in props {
        if p == "members" {
            continue;
        }
        if let Some(v) = group_value(rec, p) {
            m.insert(p.clone(), v);
        }
    }
    m
}

/// Render a member (directoryObject) item; properties that do not exist on the member's type
/// are left out. `props == None` means the member type's default property set.
pub(crate) fn member_object(
    kind: MemberKind,
    user: Option<&UserRec>,
    group: Option<&GroupRec>,
    props: Option<&[String]>,
    drop: &[String],
) -> Map<String, Value> {
    let mut m = match (kind, user, group) {
        (MemberKind::User, Some(u), _) => {
            let own: Vec<String> = match props {
                Some(props) => props
                    .iter()
                    .filter(|p| canonical_user_prop(p).is_some() || is_extension_name(p))
                    .cloned()
                    .collect(),
                None => default_props(ObjType::User),
            };
            user_object(u, &own, drop)
        }
        (MemberKind::Group, _, Some(g)) => {
            let own: Vec<String> = match props {
                Some(props) => props
                    .iter()
                    .filter(|p| canonical_group_prop(p).is_some())
                    .cloned()
                    .collect(),
                None => default_props(ObjType::Group),
            };
            group_object(g, &own)
        }
        _ => Map::new(),
    };
    m.insert("@odata.type".into(), json!(kind.odata_type()));
    m
}

pub(crate) fn default_props(ty: ObjType) -> Vec<String> {
    let list = match ty {
        ObjType::User | ObjType::DirectoryObject => USER_DEFAULT,
        ObjType::Group => GROUP_DEFAULT,
    };
    list.iter().map(|s| s.to_string()).collect()
}
