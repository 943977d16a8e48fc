//! Microsoft Graph v1.0 directory endpoints: users and groups lists, members (direct and
//! transitive, with type casts), `$count`, single objects, and the users/groups delta
//! queries.

use crate::model::{Directory, GroupRec, Id, UserRec, UserState};
use crate::objects::{
    ObjType, SelectError, canonical_group_prop, canonical_user_prop, default_props, group_object,
    group_prop_source, group_value, is_extension_name, member_object, resolve_select, user_object,
    user_prop_source, user_value,
};
use crate::query::{Filter, Query};
use crate::server::{Ctx, GRAPH_CONTEXT, IssuedToken, is_delta_segment};
use crate::types::MemberKind;
use crate::util::{query_encode, seal, unseal};
use actix_web::HttpResponse;
use actix_web::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::ops::Bound;

const DEFAULT_PAGE: usize = 100;
const MAX_TOP: usize = 999;
/// Delta rounds replayed under `Mode::ShuffleAndReplay` start this many versions earlier.
const REPLAY_VERSIONS: u64 = 3;

const USER_ROLES: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const GROUP_ROLES: &[&str] = &[
    "GroupMember.Read.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// Handlers return the error response boxed (it is large).
type Fail = Box<HttpResponse>;
type Resp = Result<HttpResponse, Fail>;

pub(crate) fn handle(ctx: &Ctx<'_>, segs: &[String]) -> HttpResponse {
    match route(ctx, segs) {
        Ok(r) => r,
        Err(r) => *r,
    }
}

fn route(ctx: &Ctx<'_>, segs: &[String]) -> Resp {
    let token = authenticate(ctx)?;
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let roles = match lower.first() {
        Some(&"users") => USER_ROLES,
        _ => GROUP_ROLES,
    };
    if !token.roles.iter().any(|r| roles.contains(&r.as_str())) {
        return Err(Box::new(ctx.error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )));
    }
    if ctx.req.method() != Method::GET {
        return Err(Box::new(ctx.error(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )));
    }
    let q = Query::parse(ctx.req.query_string()).map_err(|m| bad(ctx, &m))?;
    match lower.as_slice() {
        ["users"] => list(ctx, &q, ListKind::Users, None, None),
        ["groups"] => list(ctx, &q, ListKind::Groups, None, None),
        ["users", "$count"] => count(ctx, &q, ListKind::Users),
        ["groups", "$count"] => count(ctx, &q, ListKind::Groups),
        ["users", d] if is_delta_segment(d) => delta(ctx, &q, DeltaKind::Users),
        ["groups", d] if is_delta_segment(d) => delta(ctx, &q, DeltaKind::Groups),
        ["users", _] => get_user(ctx, &q, &segs[1]),
        ["groups", _] => get_group(ctx, &q, &segs[1]),
        [
            "groups",
            _,
            rel @ ("members" | "transitivemembers"),
            rest @ ..,
        ] => {
            let kind = if *rel == "members" {
                ListKind::Members
            } else {
                ListKind::Transitive
            };
            let cast = match rest {
                [] => None,
                ["microsoft.graph.user"] => Some(MemberKind::User),
                ["microsoft.graph.group"] => Some(MemberKind::Group),
                [other, ..] => {
                    return Err(bad(
                        ctx,
                        &format!("Resource not found for the segment '{other}'."),
                    ));
                }
            };
            list(ctx, &q, kind, Some(segs[1].as_str()), cast)
        }
        [first, ..] => Err(bad(
            ctx,
            &format!("Resource not found for the segment '{first}'."),
        )),
        [] => Err(bad(ctx, "Resource not found for the segment 'v1.0'.")),
    }
}

fn bad(ctx: &Ctx<'_>, message: &str) -> Fail {
    Box::new(ctx.error(400, "Request_BadRequest", message))
}

fn unsupported(ctx: &Ctx<'_>, message: &str) -> Fail {
    Box::new(ctx.error(400, "Request_UnsupportedQuery", message))
}

fn not_found(ctx: &Ctx<'_>, id: &str) -> Fail {
    Box::new(ctx.error(
        404,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    ))
}

/// Check the bearer token: issued by us and not expired.
fn authenticate(ctx: &Ctx<'_>) -> Result<IssuedToken, Fail> {
    let unauthorized =
        |m: &str| -> Fail { Box::new(ctx.error(401, "InvalidAuthenticationToken", m)) };
    let header = ctx.header("authorization").unwrap_or_default();
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or_default();
    if token.is_empty() {
        return Err(unauthorized("Access token is empty."));
    }
    if token.split('.').count() != 3 {
        return Err(unauthorized(
            "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format.",
        ));
    }
    let issued = ctx.shared.tokens().get(token).cloned();
    let Some(issued) = issued else {
        return Err(unauthorized(
            "Access token validation failure. Invalid signature.",
        ));
    };
    if ctx.now >= issued.exp {
        return Err(unauthorized(
            "Access token has expired or is not yet valid.",
        ));
    }
    Ok(issued)
}

fn select_error(ctx: &Ctx<'_>, e: SelectError, type_name: &str) -> Fail {
    match e {
        SelectError::NotImplemented(p) => Box::new(ctx.error(
            501,
            "NotImplemented",
            &format!("This operation target is not yet supported. Property '{p}' cannot be selected on a collection."),
        )),
        SelectError::Unknown(p) => bad(
            ctx,
            &format!("Could not find a property named '{p}' on type 'microsoft.graph.{type_name}'."),
        ),
    }
}

fn parse_top(ctx: &Ctx<'_>, top: Option<&str>) -> Result<Option<usize>, Fail> {
    let Some(t) = top else { return Ok(None) };
    match t.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_TOP as i64).contains(&n) => Ok(Some(n as usize)),
        _ => Err(bad(
            ctx,
            &format!("Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."),
        )),
    }
}

/// Under `Mode::ShortPages`: a random size in `0..=n`, often 0.
fn maybe_short(ctx: &Ctx<'_>, n: usize, short: bool) -> usize {
    if !short {
        return n;
    }
    let mut rng = ctx.shared.rng();
    if rng.chance(0.15) {
        0
    } else {
        1 + rng.below(n.max(1))
    }
}

fn consistency_eventual(ctx: &Ctx<'_>) -> bool {
    ctx.header("consistencylevel")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"))
}

fn type_name(ty: ObjType) -> &'static str {
    match ty {
        ObjType::User => "user",
        ObjType::Group => "group",
        ObjType::DirectoryObject => "directoryObject",
    }
}

/// Canonical property path for `$filter` on a type (`None` when unknown).
fn filter_prop(ty: ObjType, p: &str) -> Option<String> {
    let (head, tail) = match p.split_once('/') {
        Some((h, t)) => (h, Some(t)),
        None => (p, None),
    };
    let head = if is_extension_name(head) {
        head.to_string()
    } else {
        match ty {
            ObjType::User => canonical_user_prop(head)?.to_string(),
            ObjType::Group => canonical_group_prop(head)?.to_string(),
            ObjType::DirectoryObject => {
                if head.eq_ignore_ascii_case("id") {
                    "id".to_string()
                } else {
                    return None;
                }
            }
        }
    };
    match tail {
        None => Some(head),
        Some(t) if head == "onPremisesExtensionAttributes" => {
            let n: usize = t
                .strip_prefix("extensionAttribute")
                .or_else(|| t.strip_prefix("ExtensionAttribute"))?
                .parse()
                .ok()?;
            (1..=15)
                .contains(&n)
                .then(|| format!("{head}/extensionAttribute{n}"))
        }
        Some(_) => None,
    }
}

fn parse_filter(ctx: &Ctx<'_>, raw: &str, ty: ObjType, count: bool) -> Result<Filter, Fail> {
    let mut f = Filter::parse(raw).map_err(|m| bad(ctx, &format!("Invalid filter clause: {m}")))?;
    if let Err(p) = f.canonicalize(&|p| filter_prop(ty, p)) {
        return Err(if ty == ObjType::DirectoryObject {
            unsupported(
                ctx,
                &format!(
                    "Property '{p}' does not exist as a declared property or extension property. Use a type cast segment such as /microsoft.graph.user to filter on it."
                ),
            )
        } else {
            bad(
                ctx,
                &format!(
                    "Property '{p}' does not exist as a declared property or extension property."
                ),
            )
        });
    }
    if f.needs_advanced() && !(count && consistency_eventual(ctx)) {
        return Err(unsupported(
            ctx,
            "Operator 'ne', 'not' or 'endsWith' is not supported because the required parameters might be missing. Try adding $count with a value of true and setting the ConsistencyLevel header to eventual.",
        ));
    }
    Ok(f)
}

/// Refuse query options the emulator (or Graph) does not support on lists.
fn check_list_options(ctx: &Ctx<'_>, q: &Query) -> Result<(), Fail> {
    if q.skip.is_some() {
        return Err(bad(ctx, "'$skip' is not supported by the service."));
    }
    if q.search.is_some() {
        return Err(if consistency_eventual(ctx) {
            unsupported(ctx, "$search is not supported by the emulator.")
        } else {
            unsupported(
                ctx,
                "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
            )
        });
    }
    if q.orderby.is_some() {
        return Err(unsupported(
            ctx,
            "$orderby is not supported by the emulator.",
        ));
    }
    if q.expand.is_some() {
        return Err(unsupported(
            ctx,
            "$expand is not supported by the emulator (use delta with $select=members).",
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum ListKind {
    Users,
    Groups,
    Members,
    Transitive,
}

/// State carried in a list `$skiptoken`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ListCursor {
    k: ListKind,
    g: Option<String>,
    c: Option<MemberKind>,
    s: Option<String>,
    f: Option<String>,
    n: Option<usize>,
    cnt: bool,
    a: String,
    i: u64,
}

fn list_type(kind: ListKind, cast: Option<MemberKind>) -> ObjType {
    match (kind, cast) {
        (ListKind::Users, _) | (_, Some(MemberKind::User)) => ObjType::User,
        (ListKind::Groups, _) | (_, Some(MemberKind::Group)) => ObjType::Group,
        _ => ObjType::DirectoryObject,
    }
}

fn context_url(entity: &str, select: Option<&[String]>) -> String {
    match select {
        Some(props) if !props.is_empty() => {
            format!("{GRAPH_CONTEXT}#{entity}({})", props.join(","))
        }
        _ => format!("{GRAPH_CONTEXT}#{entity}"),
    }
}

/// Take up to `size` items; the bool says whether at least one more exists.
fn keyset_page<T>(mut iter: impl Iterator<Item = T>, size: usize) -> (Vec<T>, bool) {
    let mut out = Vec::with_capacity(size.min(1000));
    for x in iter.by_ref() {
        if out.len() >= size {
            return (out, true);
        }
        out.push(x);
    }
    (out, false)
}

fn after_bound(a: &str) -> Bound<&str> {
    if a.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(a)
    }
}

fn list(
    ctx: &Ctx<'_>,
    q: &Query,
    kind: ListKind,
    group: Option<&str>,
    cast: Option<MemberKind>,
) -> Resp {
    let secret = &ctx.shared.secret;
    let cursor = match &q.skiptoken {
        Some(t) => {
            let c: ListCursor = unseal(secret, t).ok_or_else(|| {
                bad(
                    ctx,
                    "Invalid $skiptoken: the token is malformed or was modified.",
                )
            })?;
            if c.k != kind || c.g.as_deref() != group || c.c != cast {
                return Err(bad(
                    ctx,
                    "Invalid $skiptoken: the token belongs to another request.",
                ));
            }
            if ctx.now > c.i.saturating_add(ctx.shared.config.skiptoken_ttl_secs) {
                return Err(bad(ctx, "The $skiptoken has expired."));
            }
            c
        }
        None => {
            check_list_options(ctx, q)?;
            ListCursor {
                k: kind,
                g: group.map(str::to_string),
                c: cast,
                s: q.select.clone(),
                f: q.filter.clone(),
                n: parse_top(ctx, q.top.as_deref())?,
                cnt: q.count_true(),
                a: String::new(),
                i: ctx.now,
            }
        }
    };
    let ty = list_type(kind, cast);
    let props: Option<Vec<String>> = match &cursor.s {
        Some(s) => {
            Some(resolve_select(s, ty, false).map_err(|e| select_error(ctx, e, type_name(ty)))?)
        }
        None => None,
    };
    let filter = match &cursor.f {
        Some(f) => Some(parse_filter(ctx, f, ty, cursor.cnt)?),
        None => None,
    };
    let modes = ctx.shared.modes();
    let mut size = cursor
        .n
        .unwrap_or(DEFAULT_PAGE)
        .min(ctx.shared.config.page_cap.max(1));
    if props
        .as_ref()
        .is_some_and(|p| p.iter().any(|x| x == "signInActivity"))
    {
        size = size.min(500);
    }
    let size = maybe_short(ctx, size, modes.short_pages);
    let first_page = cursor.a.is_empty();
    let want_count = first_page && cursor.cnt && consistency_eventual(ctx);

    let dir = ctx.shared.dir();
    let matches_user = |rec: &UserRec| {
        rec.state == UserState::Live
            && filter
                .as_ref()
                .is_none_or(|f| f.eval(&|p| user_value(rec, p)))
    };
    let matches_group = |rec: &GroupRec| {
        rec.live
            && filter
                .as_ref()
                .is_none_or(|f| f.eval(&|p| group_value(rec, p)))
    };
    let user_props = props
        .clone()
        .unwrap_or_else(|| default_props(ObjType::User));
    let group_props = props
        .clone()
        .unwrap_or_else(|| default_props(ObjType::Group));

    let (items, more, last, count): (Vec<Value>, bool, Option<String>, Option<usize>) = match kind {
        ListKind::Users => {
            let iter = dir
                .users
                .range::<str, _>((after_bound(&cursor.a), Bound::Unbounded))
                .filter(|(_, r)| matches_user(r));
            let (page, more) = keyset_page(iter, size);
            let last = page.last().map(|(id, _)| id.to_string());
            let items = page
                .into_iter()
                .map(|(_, r)| Value::Object(user_object(r, &user_props, &modes.drop_attributes)))
                .collect();
            let count = want_count.then(|| dir.users.values().filter(|r| matches_user(r)).count());
            (items, more, last, count)
        }
        ListKind::Groups => {
            let iter = dir
                .groups
                .range::<str, _>((after_bound(&cursor.a), Bound::Unbounded))
                .filter(|(_, r)| matches_group(r));
            let (page, more) = keyset_page(iter, size);
            let last = page.last().map(|(id, _)| id.to_string());
            let items = page
                .into_iter()
                .map(|(_, r)| Value::Object(group_object(r, &group_props)))
                .collect();
            let count =
                want_count.then(|| dir.groups.values().filter(|r| matches_group(r)).count());
            (items, more, last, count)
        }
        ListKind::Members | ListKind::Transitive => {
            let gid = group.unwrap_or_default();
            if !dir.group_live(gid) {
                return Err(not_found(ctx, gid));
            }
            let member_matches = |id: &Id, k: MemberKind| -> bool {
                if cast.is_some_and(|c| c != k) {
                    return false;
                }
                let Some(f) = &filter else { return true };
                match k {
                    MemberKind::User => dir
                        .users
                        .get(id)
                        .is_some_and(|r| f.eval(&|p| user_value(r, p))),
                    MemberKind::Group => dir
                        .groups
                        .get(id)
                        .is_some_and(|r| f.eval(&|p| group_value(r, p))),
                }
            };
            let transitive_store;
            let source: Box<dyn Iterator<Item = (&Id, MemberKind)> + '_> =
                if kind == ListKind::Members {
                    match dir.members.get(gid) {
                        Some(m) => Box::new(
                            m.range::<str, _>((after_bound(&cursor.a), Bound::Unbounded))
                                .filter(|(id, k)| dir.member_live(**k, id))
                                .map(|(id, k)| (id, *k)),
                        ),
                        None => Box::new(std::iter::empty()),
                    }
                } else {
                    transitive_store = dir.transitive_members(gid);
                    Box::new(
                        transitive_store
                            .range::<str, _>((after_bound(&cursor.a), Bound::Unbounded))
                            .map(|(id, k)| (id, *k)),
                    )
                };
            let iter = source.filter(|(id, k)| member_matches(id, *k));
            let (page, more) = keyset_page(iter, size);
            let last = page.last().map(|(id, _)| id.to_string());
            let items = page
                .into_iter()
                .map(|(id, k)| {
                    Value::Object(member_object(
                        k,
                        dir.users.get(id),
                        dir.groups.get(id),
                        props.as_deref(),
                        &modes.drop_attributes,
                    ))
                })
                .collect();
            let count = want_count.then(|| {
                let everything = if kind == ListKind::Members {
                    dir.effective_members(gid)
                        .map(|(i, k)| (i.clone(), k))
                        .collect()
                } else {
                    dir.transitive_members(gid)
                };
                everything
                    .iter()
                    .filter(|(id, k)| member_matches(id, **k))
                    .count()
            });
            (items, more, last, count)
        }
    };
    drop(dir);

    let entity = match (kind, cast) {
        (ListKind::Users, _) | (_, Some(MemberKind::User)) => "users",
        (ListKind::Groups, _) | (_, Some(MemberKind::Group)) => "groups",
        _ => "directoryObjects",
    };
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context_url(entity, props.as_deref())),
    );
    if let Some(c) = count {
        body.insert("@odata.count".into(), json!(c));
    }
    if more {
        let next = ListCursor {
            a: last.unwrap_or_else(|| cursor.a.clone()),
            ..cursor.clone()
        };
        let mut link = format!("{}{}?", ctx.origin, ctx.req.path());
        for (name, v) in [("$select", &cursor.s), ("$filter", &cursor.f)] {
            if let Some(v) = v {
                link.push_str(&format!("{name}={}&", query_encode(v)));
            }
        }
        if let Some(n) = cursor.n {
            link.push_str(&format!("$top={n}&"));
        }
        if cursor.cnt {
            link.push_str("$count=true&");
        }
        link.push_str("$skiptoken=");
        link.push_str(&seal(secret, &next));
        body.insert("@odata.nextLink".into(), json!(link));
    }
    body.insert("value".into(), Value::Array(items));
    Ok(ctx.json(&Value::Object(body)))
}

fn count(ctx: &Ctx<'_>, q: &Query, kind: ListKind) -> Resp {
    if !consistency_eventual(ctx) {
        return Err(bad(ctx, "$count is not currently supported."));
    }
    let ty = list_type(kind, None);
    let filter = match &q.filter {
        Some(f) => Some(parse_filter(ctx, f, ty, true)?),
        None => None,
    };
    let dir = ctx.shared.dir();
    let n = match kind {
        ListKind::Users => dir
            .users
            .values()
            .filter(|r| {
                r.state == UserState::Live
                    && filter
                        .as_ref()
                        .is_none_or(|f| f.eval(&|p| user_value(r, p)))
            })
            .count(),
        _ => dir
            .groups
            .values()
            .filter(|r| {
                r.live
                    && filter
                        .as_ref()
                        .is_none_or(|f| f.eval(&|p| group_value(r, p)))
            })
            .count(),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain;charset=utf-8")
        .body(n.to_string()))
}

fn get_user(ctx: &Ctx<'_>, q: &Query, key: &str) -> Resp {
    let props = match &q.select {
        Some(s) => Some(
            resolve_select(s, ObjType::User, false).map_err(|e| select_error(ctx, e, "user"))?,
        ),
        None => None,
    };
    let dir = ctx.shared.dir();
    let rec = match dir.users.get(key) {
        Some(r) if r.state == UserState::Live => Some(r),
        _ => dir.users.values().find(|r| {
            r.state == UserState::Live && r.user.user_principal_name.eq_ignore_ascii_case(key)
        }),
    };
    let Some(rec) = rec else {
        return Err(not_found(ctx, key));
    };
    let list = props
        .clone()
        .unwrap_or_else(|| default_props(ObjType::User));
    let mut obj = user_object(rec, &list, &ctx.shared.modes().drop_attributes);
    obj.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/$entity",
            context_url("users", props.as_deref())
        )),
    );
    Ok(ctx.json(&Value::Object(obj)))
}

fn get_group(ctx: &Ctx<'_>, q: &Query, key: &str) -> Resp {
    let props = match &q.select {
        Some(s) => Some(
            resolve_select(s, ObjType::Group, false).map_err(|e| select_error(ctx, e, "group"))?,
        ),
        None => None,
    };
    let dir = ctx.shared.dir();
    let Some(rec) = dir.groups.get(key).filter(|g| g.live) else {
        return Err(not_found(ctx, key));
    };
    let list = props
        .clone()
        .unwrap_or_else(|| default_props(ObjType::Group));
    let mut obj = group_object(rec, &list);
    obj.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/$entity",
            context_url("groups", props.as_deref())
        )),
    );
    Ok(ctx.json(&Value::Object(obj)))
}

// ---------------------------------------------------------------------------------------
// Delta
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum DeltaKind {
    Users,
    Groups,
}

/// Phase of a delta token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    /// `$skiptoken` of a round in progress.
    Next,
    /// `$deltatoken` of a finished round.
    Delta,
}

/// State carried in delta `$skiptoken`s and `$deltatoken`s.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeltaState {
    p: Phase,
    k: DeltaKind,
    /// Raw `$select`.
    s: Option<String>,
    /// `$filter=id eq …` ids.
    ids: Option<Vec<String>>,
    /// Changes after this version (None = first round: everything live).
    since: Option<u64>,
    /// Directory version when the round started (the next round's `since`).
    upto: u64,
    /// Page size.
    n: usize,
    /// Keyset position: last object id, and for a group split across entries the last member
    /// id emitted.
    a: Option<(String, Option<String>)>,
    /// Issue time (Unix seconds) for expiry.
    i: u64,
    /// Nonce so every deltaLink is distinct.
    #[serde(default)]
    r: u32,
}

enum Change {
    Full,
    Props(Vec<String>),
    Removed(&'static str),
}

fn delta_entity(kind: DeltaKind) -> &'static str {
    match kind {
        DeltaKind::Users => "users",
        DeltaKind::Groups => "groups",
    }
}

fn sync_state_not_found(ctx: &Ctx<'_>) -> Fail {
    Box::new(ctx.error(
        400,
        "syncStateNotFound",
        "The sync state generation is not found; the delta token has expired. Please sync again without a token (full synchronization).",
    ))
}

/// Validate first-call delta parameters into a fresh state.
fn delta_params(ctx: &Ctx<'_>, q: &Query, kind: DeltaKind) -> Result<DeltaState, Fail> {
    for (name, v) in [
        ("$orderby", &q.orderby),
        ("$expand", &q.expand),
        ("$search", &q.search),
        ("$skip", &q.skip),
    ] {
        if v.is_some() {
            return Err(unsupported(
                ctx,
                &format!(
                    "{name} is not supported on delta queries for {}.",
                    delta_entity(kind)
                ),
            ));
        }
    }
    let ty = match kind {
        DeltaKind::Users => ObjType::User,
        DeltaKind::Groups => ObjType::Group,
    };
    if let Some(s) = &q.select {
        resolve_select(s, ty, kind == DeltaKind::Groups)
            .map_err(|e| select_error(ctx, e, type_name(ty)))?;
    }
    let ids = match &q.filter {
        Some(f) => {
            let parsed =
                Filter::parse(f).map_err(|m| bad(ctx, &format!("Invalid filter clause: {m}")))?;
            let ids = parsed.id_list().ok_or_else(|| {
                unsupported(
                    ctx,
                    "Delta queries only support $filter=id eq '…' clauses joined with 'or'.",
                )
            })?;
            if ids.len() > 50 {
                return Err(unsupported(
                    ctx,
                    "At most 50 ids are allowed in a delta $filter.",
                ));
            }
            Some(ids)
        }
        None => None,
    };
    let n = parse_top(ctx, q.top.as_deref())?
        .unwrap_or(ctx.shared.config.delta_page_size)
        .clamp(1, MAX_TOP);
    Ok(DeltaState {
        p: Phase::Next,
        k: kind,
        s: q.select.clone(),
        ids,
        since: None,
        upto: 0,
        n,
        a: None,
        i: ctx.now,
        r: 0,
    })
}

fn delta(ctx: &Ctx<'_>, q: &Query, kind: DeltaKind) -> Resp {
    let secret = &ctx.shared.secret;
    let ttl = ctx.shared.config.delta_token_ttl_secs;
    let st = if let Some(t) = &q.skiptoken {
        if q.select.is_some() {
            return Err(bad(ctx, "$select cannot be combined with $skiptoken."));
        }
        let st: DeltaState = unseal(secret, t)
            .filter(|s: &DeltaState| s.p == Phase::Next && s.k == kind)
            .ok_or_else(|| {
                bad(
                    ctx,
                    "Invalid $skiptoken: the token is malformed or was modified.",
                )
            })?;
        if ctx.now > st.i.saturating_add(ttl) {
            return Err(sync_state_not_found(ctx));
        }
        st
    } else if let Some(t) = &q.deltatoken {
        if t.eq_ignore_ascii_case("latest") {
            let mut st = delta_params(ctx, q, kind)?;
            st.p = Phase::Delta;
            st.since = Some(ctx.shared.dir().version);
            let link = format!(
                "{}/v1.0/{}/delta?$deltatoken={}",
                ctx.origin,
                delta_entity(kind),
                seal(secret, &st)
            );
            return Ok(ctx.json(&json!({
                "@odata.context": context_url(delta_entity(kind), None),
                "@odata.deltaLink": link,
                "value": [],
            })));
        } else if t.is_empty() {
            let mut st = delta_params(ctx, q, kind)?;
            st.upto = ctx.shared.dir().version;
            st
        } else {
            let mut st: DeltaState = unseal(secret, t)
                .filter(|s: &DeltaState| s.p == Phase::Delta && s.k == kind)
                .ok_or_else(|| {
                    bad(
                        ctx,
                        "Invalid $deltatoken: the token is malformed or was modified.",
                    )
                })?;
            if ctx.now > st.i.saturating_add(ttl) {
                return Err(sync_state_not_found(ctx));
            }
            st.p = Phase::Next;
            st.upto = ctx.shared.dir().version;
            st.a = None;
            st.i = ctx.now;
            st
        }
    } else {
        let mut st = delta_params(ctx, q, kind)?;
        st.upto = ctx.shared.dir().version;
        st
    };

    let ty = match kind {
        DeltaKind::Users => ObjType::User,
        DeltaKind::Groups => ObjType::Group,
    };
    let selected: Option<Vec<String>> = match &st.s {
        Some(s) => Some(
            resolve_select(s, ty, kind == DeltaKind::Groups)
                .map_err(|e| select_error(ctx, e, type_name(ty)))?,
        ),
        None => None,
    };
    let modes = ctx.shared.modes();
    let minimal = st.since.is_some()
        && ctx.header("prefer").is_some_and(|p| {
            p.to_ascii_lowercase()
                .replace(' ', "")
                .contains("return=minimal")
        });
    let since = if modes.shuffle_and_replay {
        st.since.map(|v| v.saturating_sub(REPLAY_VERSIONS))
    } else {
        st.since
    };
    let page = maybe_short(ctx, st.n, modes.short_pages);

    let dir = ctx.shared.dir();
    let (mut entries, after, more) = match kind {
        DeltaKind::Users => {
            let props = selected
                .clone()
                .unwrap_or_else(|| default_props(ObjType::User));
            users_delta_page(
                &dir,
                &st,
                since,
                &props,
                page,
                minimal,
                &modes.drop_attributes,
            )
        }
        DeltaKind::Groups => {
            let with_members = selected
                .as_ref()
                .is_none_or(|s| s.iter().any(|p| p == "members"));
            let props = selected
                .clone()
                .unwrap_or_else(|| default_props(ObjType::Group));
            groups_delta_page(
                &dir,
                &st,
                &GroupPage {
                    since,
                    props: &props,
                    with_members,
                    page,
                    slice: modes.members_slice.max(1),
                    minimal,
                    replay: modes.shuffle_and_replay,
                },
            )
        }
    };
    drop(dir);

    if modes.shuffle_and_replay && !entries.is_empty() {
        let mut rng = ctx.shared.rng();
        let mut dups = Vec::new();
        for e in &entries {
            if rng.chance(0.15) {
                dups.push(e.clone());
            }
        }
        entries.extend(dups);
        rng.shuffle(&mut entries);
    }

    let first_page = st.a.is_none();
    let entity = delta_entity(kind);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(if first_page {
            context_url(entity, selected.as_deref())
        } else {
            context_url(entity, None)
        }),
    );
    if more {
        let next = DeltaState {
            a: after,
            ..st.clone()
        };
        body.insert(
            "@odata.nextLink".into(),
            json!(format!(
                "{}/v1.0/{entity}/delta?$skiptoken={}",
                ctx.origin,
                seal(secret, &next)
            )),
        );
    } else {
        let done = DeltaState {
            p: Phase::Delta,
            since: Some(st.upto),
            upto: 0,
            a: None,
            i: ctx.now,
            r: ctx.shared.rng().next_u64() as u32,
            ..st.clone()
        };
        body.insert(
            "@odata.deltaLink".into(),
            json!(format!(
                "{}/v1.0/{entity}/delta?$deltatoken={}",
                ctx.origin,
                seal(secret, &done)
            )),
        );
    }
    body.insert("value".into(), Value::Array(entries));
    let mut resp = ctx.json(&Value::Object(body));
    if minimal && let Ok(v) = actix_web::http::header::HeaderValue::from_str("return=minimal") {
        resp.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("preference-applied"),
            v,
        );
    }
    Ok(resp)
}

fn in_ids(ids: &Option<Vec<String>>, id: &str) -> bool {
    ids.as_ref()
        .is_none_or(|ids| ids.iter().any(|x| x.eq_ignore_ascii_case(id)))
}

fn user_change(rec: &UserRec, since: Option<u64>, props: &[String]) -> Option<Change> {
    let Some(v) = since else {
        return (rec.state == UserState::Live).then_some(Change::Full);
    };
    if rec.lifecycle > v {
        return Some(match rec.state {
            UserState::Live => Change::Full,
            UserState::SoftDeleted => Change::Removed("changed"),
            UserState::HardDeleted => Change::Removed("deleted"),
        });
    }
    if rec.state != UserState::Live || rec.props.is_empty() {
        return None;
    }
    let changed: Vec<String> = props
        .iter()
        .filter(|p| rec.prop_version(user_prop_source(p)) > v)
        .cloned()
        .collect();
    (!changed.is_empty()).then_some(Change::Props(changed))
}

fn user_entry(
    rec: &UserRec,
    change: &Change,
    props: &[String],
    minimal: bool,
    drop: &[String],
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec.user.id));
    match change {
        Change::Removed(reason) => {
            m.insert("@removed".into(), json!({ "reason": reason }));
            return m;
        }
        Change::Props(changed) if minimal => {
            for p in changed {
                m.insert(p.clone(), user_value(rec, p).unwrap_or(Value::Null));
            }
        }
        Change::Props(_) | Change::Full => {
            for p in props {
                match user_value(rec, p) {
                    Some(Value::Null) | None => {
                        // Set to null at some point → null; never set → left out.
                        if rec.props.contains_key(user_prop_source(p)) {
                            m.insert(p.clone(), Value::Null);
                        }
                    }
                    Some(v) => {
                        m.insert(p.clone(), v);
                    }
                }
            }
        }
    }
    if !drop.is_empty() {
        crate::objects::drop_attributes(&mut m, drop);
    }
    m
}

type Page = (Vec<Value>, Option<(String, Option<String>)>, bool);

fn users_delta_page(
    dir: &Directory,
    st: &DeltaState,
    since: Option<u64>,
    props: &[String],
    page: usize,
    minimal: bool,
    drop: &[String],
) -> Page {
    let lower = match &st.a {
        Some((id, _)) => Bound::Excluded(id.as_str()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    let mut after = st.a.clone();
    for (id, rec) in dir.users.range::<str, _>((lower, Bound::Unbounded)) {
        if !in_ids(&st.ids, id) {
            continue;
        }
        let Some(change) = user_change(rec, since, props) else {
            continue;
        };
        if out.len() >= page {
            return (out, after, true);
        }
        out.push(Value::Object(user_entry(
            rec, &change, props, minimal, drop,
        )));
        after = Some((id.to_string(), None));
    }
    (out, after, false)
}

fn group_change(rec: &GroupRec, since: Option<u64>, props: &[String]) -> Option<Change> {
    let Some(v) = since else {
        return rec.live.then_some(Change::Full);
    };
    if rec.lifecycle > v {
        return Some(if rec.live {
            Change::Full
        } else {
            Change::Removed("deleted")
        });
    }
    if !rec.live || rec.props.is_empty() {
        return None;
    }
    let changed: Vec<String> = props
        .iter()
        .filter(|p| rec.prop_version(group_prop_source(p)) > v)
        .cloned()
        .collect();
    (!changed.is_empty()).then_some(Change::Props(changed))
}

fn group_scalars(
    rec: &GroupRec,
    change: Option<&Change>,
    props: &[String],
    minimal: bool,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec.group.id));
    match change {
        Some(Change::Props(changed)) if minimal => {
            for p in changed {
                m.insert(p.clone(), group_value(rec, p).unwrap_or(Value::Null));
            }
        }
        None if minimal => {}
        _ => {
            for p in props {
                match group_value(rec, p) {
                    Some(Value::Null) | None => {
                        if rec.props.contains_key(group_prop_source(p)) {
                            m.insert(p.clone(), Value::Null);
                        }
                    }
                    Some(v) => {
                        m.insert(p.clone(), v);
                    }
                }
            }
        }
    }
    m
}

struct GroupPage<'a> {
    since: Option<u64>,
    props: &'a [String],
    with_members: bool,
    page: usize,
    slice: usize,
    minimal: bool,
    replay: bool,
}

fn member_ref(id: &str, kind: MemberKind, removed: bool) -> Value {
    if removed {
        json!({ "@odata.type": kind.odata_type(), "id": id, "@removed": { "reason": "deleted" } })
    } else {
        json!({ "@odata.type": kind.odata_type(), "id": id })
    }
}

/// `members@delta` items of a group for this round, after `resume` (a member id).
fn member_items(
    dir: &Directory,
    rec: &GroupRec,
    gid: &str,
    since: Option<u64>,
    resume: Option<&str>,
    replay: bool,
) -> Vec<(Id, Value)> {
    match since {
        None => dir
            .members
            .get(gid)
            .map(|m| {
                let lower = resume.map_or(Bound::Unbounded, Bound::Excluded);
                m.range::<str, _>((lower, Bound::Unbounded))
                    .filter(|(id, k)| dir.member_live(**k, id))
                    .map(|(id, k)| (id.clone(), member_ref(id, *k, false)))
                    .collect()
            })
            .unwrap_or_default(),
        Some(v) => {
            if rec.members_version <= v {
                return Vec::new();
            }
            dir.member_changes_since(gid, v, replay)
                .into_iter()
                .filter(|c| resume.is_none_or(|r| &*c.member > r))
                .map(|c| {
                    let item = member_ref(&c.member, c.kind, !c.added);
                    (c.member, item)
                })
                .collect()
        }
    }
}

fn groups_delta_page(dir: &Directory, st: &DeltaState, gp: &GroupPage<'_>) -> Page {
    let scalar: Vec<String> = gp
        .props
        .iter()
        .filter(|p| *p != "members")
        .cloned()
        .collect();
    let (lower, resume): (Bound<&str>, Option<(&str, &str)>) = match &st.a {
        None => (Bound::Unbounded, None),
        Some((g, None)) => (Bound::Excluded(g.as_str()), None),
        Some((g, Some(m))) => (Bound::Included(g.as_str()), Some((g.as_str(), m.as_str()))),
    };
    let mut out: Vec<Value> = Vec::new();
    let mut after = st.a.clone();
    for (gid, rec) in dir.groups.range::<str, _>((lower, Bound::Unbounded)) {
        if !in_ids(&st.ids, gid) {
            continue;
        }
        let resume_member = resume.filter(|(g, _)| *g == &**gid).map(|(_, m)| m);
        let change = group_change(rec, gp.since, &scalar);
        if let Some(Change::Removed(reason)) = &change {
            if resume_member.is_some() {
                continue;
            }
            if out.len() >= gp.page {
                return (out, after, true);
            }
            out.push(json!({ "id": rec.group.id, "@removed": { "reason": reason } }));
            after = Some((gid.to_string(), None));
            continue;
        }
        if !rec.live {
            continue;
        }
        let members = if gp.with_members {
            member_items(dir, rec, gid, gp.since, resume_member, gp.replay)
        } else {
            Vec::new()
        };
        if members.is_empty() && (change.is_none() || resume_member.is_some()) {
            continue;
        }
        let base = group_scalars(rec, change.as_ref(), &scalar, gp.minimal);
        if members.is_empty() {
            if out.len() >= gp.page {
                return (out, after, true);
            }
            out.push(Value::Object(base));
            after = Some((gid.to_string(), None));
            continue;
        }
        for chunk in members.chunks(gp.slice) {
            if out.len() >= gp.page {
                return (out, after, true);
            }
            let mut entry = base.clone();
            entry.insert(
                "members@delta".into(),
                Value::Array(chunk.iter().map(|(_, v)| v.clone()).collect()),
            );
            out.push(Value::Object(entry));
            after = Some((gid.to_string(), chunk.last().map(|(id, _)| id.to_string())));
        }
        after = Some((gid.to_string(), None));
    }
    (out, after, false)
}

/// `Location` for a 410 Gone: the initial delta URL with an empty `$deltatoken`.
pub(crate) fn resync_location(ctx: &Ctx<'_>, segs: &[String]) -> String {
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let kind = match lower.as_slice() {
        [v, e, d] if v == "v1.0" && is_delta_segment(d) && (e == "users" || e == "groups") => {
            e.clone()
        }
        _ => return format!("{}{}", ctx.origin, ctx.req.path()),
    };
    let q = Query::parse(ctx.req.query_string()).unwrap_or_default();
    let st: Option<DeltaState> = q
        .skiptoken
        .as_deref()
        .or(q.deltatoken.as_deref())
        .and_then(|t| unseal(&ctx.shared.secret, t));
    let (select, ids) = match st {
        Some(st) => (st.s, st.ids),
        None => (q.select.clone(), None),
    };
    let mut url = format!("{}/v1.0/{kind}/delta?", ctx.origin);
    if let Some(s) = select {
        url.push_str(&format!("$select={}&", query_encode(&s)));
    }
    if let Some(ids) = ids {
        let f = ids
            .iter()
            .map(|i| format!("id eq '{i}'"))
            .collect::<Vec<_>>()
            .join(" or ");
        url.push_str(&format!("$filter={}&", query_encode(&f)));
    }
    url.push_str("$deltatoken=");
    url
}
