//! The Users and Groups pages: lists with search, filters, sorting and keyset paging, CSV export, details,
//! and local accounts (create, edit, disable, delete).

use std::collections::BTreeMap;

use actix_session::Session;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::audit::event::Actor;
use crate::audit::views::AuditItem;
use crate::clock::format_ms;
use crate::directory::model::{UserCursor, UserQuery, UserSort, UserStatus};
use crate::directory::repo::{self, UserRow};
use crate::directory::service::{self, LocalUserForm, SaveError};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::settings::model::ENTRA_SOURCE_ID;
use crate::web::flash::{self, Level};
use crate::web::guard::AdminSession;
use crate::web::page::{PageCtx, Section, render, see_other};
use crate::web::{AppState, RequestMeta, Routes};

pub const PAGE_SIZE: i64 = 50;
/// Rows per database round trip while streaming the CSV export.
const EXPORT_BATCH: i64 = 1000;

pub fn configure(r: &mut Routes<'_>) {
    r.get("/admin/users", list_users)
        .get("/admin/users.csv", export_users)
        .get("/admin/users/new", new_user_form)
        .post("/admin/users/new", create_user)
        .get("/admin/users/{id}", show_user)
        .get("/admin/users/{id}/edit", edit_user_form)
        .post("/admin/users/{id}/edit", update_user)
        .post("/admin/users/{id}/disable", disable_user)
        .post("/admin/users/{id}/enable", enable_user)
        .get("/admin/users/{id}/delete", delete_user_form)
        .post("/admin/users/{id}/delete", delete_user)
        .get("/admin/groups", list_groups)
        .get("/admin/groups/{id}", show_group);
}

/// Fetching one row more than a page tells whether another page follows; this trims it and says so.
fn split_page<T>(rows: &mut Vec<T>) -> bool {
    let size = usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    more
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn actor(admin: &AdminSession) -> Actor {
    Actor::Admin {
        id: admin.id.clone(),
        name: admin.username.clone(),
    }
}

#[derive(Deserialize, Default, Clone)]
pub struct UserListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    missing: String,
    #[serde(default)]
    apple_conflict: String,
    #[serde(default)]
    invitation: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    dir: String,
    after: Option<String>,
}

impl UserListQuery {
    fn to_query(&self) -> UserQuery {
        let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        UserQuery {
            q: nonempty(&self.q),
            source: nonempty(&self.source).filter(|s| s == "entra" || s == "local"),
            status: UserStatus::parse(&self.status),
            missing: nonempty(&self.missing),
            apple_conflict: !self.apple_conflict.is_empty(),
            invitation: nonempty(&self.invitation)
                .filter(|s| crate::invitations::model::InvitationState::parse(s).is_some()),
            sort: UserSort::parse(&self.sort).unwrap_or_default(),
            desc: self.dir == "desc",
        }
    }

    /// The query string of these filters (without a page position), for links.
    fn filters(&self) -> String {
        let q = self.to_query();
        format!(
            "q={}&source={}&status={}&missing={}&apple_conflict={}&invitation={}&sort={}&dir={}",
            enc(q.q.as_deref().unwrap_or("")),
            enc(q.source.as_deref().unwrap_or("")),
            q.status.map_or("", UserStatus::key),
            enc(q.missing.as_deref().unwrap_or("")),
            if q.apple_conflict { "1" } else { "" },
            q.invitation.as_deref().unwrap_or(""),
            q.sort.key(),
            if q.desc { "desc" } else { "asc" },
        )
    }
}

pub struct UserItem {
    pub id: String,
    pub changed: String,
    pub upn: String,
    pub display_name: String,
    pub mail: String,
    pub department: String,
    pub apple_id: String,
    pub status_label: &'static str,
    pub pill_class: &'static str,
    pub source: &'static str,
}

fn status_of(r: &UserRow) -> (&'static str, &'static str) {
    match (r.not_synced_at, r.account_enabled, r.source.as_str()) {
        (Some(_), _, _) => ("Not synced", "pill pill-warn"),
        (None, 0, "local") => ("Disabled", "pill pill-err"),
        (None, 0, _) => ("Disabled in Entra", "pill pill-err"),
        _ => ("Active", "pill pill-ok"),
    }
}

impl From<&UserRow> for UserItem {
    fn from(r: &UserRow) -> Self {
        let (status_label, pill_class) = status_of(r);
        Self {
            id: r.id.clone(),
            changed: format_ms(r.last_changed_at),
            upn: r.upn.clone(),
            display_name: r.display_name.clone(),
            mail: r.mail.clone().unwrap_or_default(),
            department: r.department.clone().unwrap_or_default(),
            apple_id: r.managed_apple_id.clone().unwrap_or_default(),
            status_label,
            pill_class,
            source: if r.source == "entra" {
                "Entra ID"
            } else {
                "Local"
            },
        }
    }
}

pub struct SortLink {
    pub label: &'static str,
    pub href: String,
    /// "ascending" / "descending" when this column is the sort, for aria-sort.
    pub aria: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/users.html")]
pub struct UsersPage {
    pub ctx: PageCtx,
    pub f: UserListQuery,
    pub filtered: bool,
    pub total: i64,
    pub custom_names: Vec<String>,
    pub items: Vec<UserItem>,
    pub sorts: Vec<SortLink>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
    pub export_href: String,
}

/// The Users page's filters from posted pairs (the bulk invite form repeats them as hidden fields).
pub fn user_query_from_pairs(pairs: &[(String, String)]) -> UserQuery {
    let mut f = UserListQuery::default();
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "q" => &mut f.q,
            "source" => &mut f.source,
            "status" => &mut f.status,
            "missing" => &mut f.missing,
            "apple_conflict" => &mut f.apple_conflict,
            "invitation" => &mut f.invitation,
            _ => continue,
        };
        slot.clone_from(v);
    }
    f.to_query()
}

async fn list_users(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    f: web::Query<UserListQuery>,
) -> AppResult<HttpResponse> {
    let f = f.into_inner();
    let query = f.to_query();
    let cursor = f.after.as_deref().and_then(UserCursor::decode);
    let mut rows = repo::list_users_page(
        &state.db,
        &query,
        cursor.as_ref(),
        PAGE_SIZE + 1,
        repo::UserCols::Listed,
    )
    .await?;
    let more = split_page(&mut rows);
    let filters = f.filters();
    let next_href = more
        .then(|| {
            rows.last().map(|r| {
                format!(
                    "/admin/users?{filters}&after={}",
                    enc(&repo::cursor_of(r, query.sort).encode())
                )
            })
        })
        .flatten();
    let sorts = [
        (UserSort::Name, "Display name"),
        (UserSort::Upn, "UPN"),
        (UserSort::Changed, "Last changed"),
    ]
    .iter()
    .map(|&(s, label)| {
        let active = s == query.sort;
        let dir = if active && !query.desc { "desc" } else { "asc" };
        let mut g = f.clone();
        g.sort = s.key().into();
        g.dir = dir.into();
        SortLink {
            label,
            href: format!("/admin/users?{}", g.filters()),
            aria: match (active, query.desc) {
                (false, _) => "none",
                (true, false) => "ascending",
                (true, true) => "descending",
            },
        }
    })
    .collect();
    let custom_names = custom_names(&state).await?;
    let page = UsersPage {
        ctx: PageCtx::admin(&session, &admin, Section::Users, "Admin > Users")?,
        filtered: query
            != UserQuery {
                sort: query.sort,
                desc: query.desc,
                ..UserQuery::default()
            },
        total: state
            .db
            .memo_count(repo::USER_TOTAL, repo::count_users(&state.db.pool))
            .await?,
        custom_names,
        items: rows.iter().map(UserItem::from).collect(),
        sorts,
        next_href,
        first_href: cursor.is_some().then(|| format!("/admin/users?{filters}")),
        export_href: format!("/admin/users.csv?{filters}"),
        f,
    };
    render(&page, StatusCode::OK)
}

/// The filtered set as CSV, streamed a batch at a time (never the whole directory in memory).
async fn export_users(
    state: web::Data<AppState>,
    _admin: AdminSession,
    f: web::Query<UserListQuery>,
) -> AppResult<HttpResponse> {
    let query = f.into_inner().to_query();
    let custom: Vec<String> = custom_names(&state).await?;
    let mut header: Vec<String> = [
        "id",
        "source",
        "userPrincipalName",
        "displayName",
        "mail",
        "givenName",
        "surname",
        "jobTitle",
        "department",
        "status",
        "managedAppleId",
        "notSyncedReason",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    header.extend(custom.iter().cloned());
    let head = csv_line(&header);
    let db = state.db.clone();
    struct Cursor {
        done: bool,
        after: Option<UserCursor>,
    }
    let start = Cursor {
        done: false,
        after: None,
    };
    let body = futures_util::stream::unfold(start, move |mut st| {
        let (db, query, custom) = (db.clone(), query.clone(), custom.clone());
        async move {
            if st.done {
                return None;
            }
            let rows = match repo::list_users_page(
                &db,
                &query,
                st.after.as_ref(),
                EXPORT_BATCH,
                repo::UserCols::All,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "CSV export stopped by a database error.");
                    return None;
                }
            };
            st.done = i64::try_from(rows.len()).unwrap_or(0) < EXPORT_BATCH;
            st.after = rows.last().map(|r| repo::cursor_of(r, query.sort));
            let mut out = Vec::new();
            for r in &rows {
                let attrs: BTreeMap<String, String> =
                    serde_json::from_str(&r.custom_attributes).unwrap_or_default();
                let mut cells = vec![
                    r.id.clone(),
                    r.source.clone(),
                    r.upn.clone(),
                    r.display_name.clone(),
                    r.mail.clone().unwrap_or_default(),
                    r.given_name.clone().unwrap_or_default(),
                    r.surname.clone().unwrap_or_default(),
                    r.job_title.clone().unwrap_or_default(),
                    r.department.clone().unwrap_or_default(),
                    status_of(r).0.to_owned(),
                    r.managed_apple_id.clone().unwrap_or_default(),
                    r.not_synced_reason.clone().unwrap_or_default(),
                ];
                cells.extend(
                    custom
                        .iter()
                        .map(|c| attrs.get(c).cloned().unwrap_or_default()),
                );
                out.extend_from_slice(&csv_line(&cells));
            }
            Some((Ok::<_, actix_web::Error>(web::Bytes::from(out)), st))
        }
    });
    let head_stream =
        futures_util::stream::once(
            async move { Ok::<_, actix_web::Error>(web::Bytes::from(head)) },
        );
    use futures_util::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"roster-users.csv\"",
        ))
        .streaming(head_stream.chain(body)))
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`:
/// directory values come from Entra ID and must not execute when an admin opens the export.
fn defuse(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// One CSV record (RFC 4180 quoting by the `csv` crate), ending in CRLF.
fn csv_line(cells: &[String]) -> Vec<u8> {
    let cells: Vec<std::borrow::Cow<'_, str>> = cells.iter().map(|c| defuse(c)).collect();
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    if w.write_record(cells.iter().map(|c| c.as_bytes())).is_err() {
        return Vec::new();
    }
    w.into_inner().unwrap_or_default()
}

pub struct KeyValue {
    pub key: String,
    pub value: String,
}

pub struct GroupLink {
    pub id: String,
    pub name: String,
    pub via: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/user.html")]
pub struct UserPage {
    pub ctx: PageCtx,
    pub id: String,
    pub local: bool,
    pub enabled: bool,
    pub item: UserItem,
    pub attributes: Vec<KeyValue>,
    pub custom: Vec<KeyValue>,
    pub groups: Vec<GroupLink>,
    pub apple_conflicts: Vec<(String, String)>,
    pub sync: Vec<KeyValue>,
    pub audit: Vec<AuditItem>,
    pub invitations: crate::invitations::views::UserInvitations,
}

async fn load_user(state: &AppState, id: &str) -> AppResult<UserRow> {
    repo::find_user(&state.db.pool, id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn show_user(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let r = load_user(&state, &id).await?;
    let kv = |k: &str, v: Option<String>| KeyValue {
        key: k.to_owned(),
        value: v.unwrap_or_else(|| "—".into()),
    };
    let attributes = vec![
        kv("userPrincipalName", Some(r.upn.clone())),
        kv("displayName", Some(r.display_name.clone())),
        kv("mail", r.mail.clone()),
        kv("givenName", r.given_name.clone()),
        kv("surname", r.surname.clone()),
        kv("jobTitle", r.job_title.clone()),
        kv("department", r.department.clone()),
        kv(
            "accountEnabled",
            Some(
                if r.account_enabled != 0 {
                    "true"
                } else {
                    "false"
                }
                .into(),
            ),
        ),
        kv("Entra object id", r.external_id.clone()),
    ];
    let stored: BTreeMap<String, String> =
        serde_json::from_str(&r.custom_attributes).unwrap_or_default();
    let configured: Vec<String> = custom_names(&state).await?;
    let custom = configured
        .iter()
        .map(|n| KeyValue {
            key: format!("${{{n}}}"),
            value: stored
                .get(n)
                .cloned()
                .unwrap_or_else(|| "— (no value)".into()),
        })
        .collect();
    let groups = match &r.external_id {
        Some(ext) => repo::groups_of_member(&state.db.pool, ENTRA_SOURCE_ID, ext)
            .await?
            .into_iter()
            .map(|(id, name, depth)| GroupLink {
                id,
                name,
                via: if depth == 0 {
                    "direct"
                } else {
                    "through a nested group"
                },
            })
            .collect(),
        None => Vec::new(),
    };
    let apple_conflicts = match &r.managed_apple_id {
        Some(a) => repo::users_with_apple_id(&state.db.pool, a, &r.id).await?,
        None => Vec::new(),
    };
    let mut sync = vec![
        kv("First seen", Some(format_ms(r.first_seen_at))),
        kv("Last changed", Some(format_ms(r.last_changed_at))),
    ];
    if r.source == "entra" {
        sync.push(kv("Last seen by sync", Some(format_ms(r.last_seen_at))));
    }
    if let Some(at) = r.not_synced_at {
        sync.push(kv("Marked not synced", Some(format_ms(at))));
        sync.push(kv("Why", r.not_synced_reason.clone()));
    }
    let audit = repo::audit_for_target(&state.db.pool, &r.id, 50).await?;
    let invitations = crate::invitations::views::UserInvitations::load(
        &state,
        &r.id,
        r.mail.as_deref().is_some_and(|m| !m.trim().is_empty()),
    )
    .await?;
    let page = UserPage {
        ctx: PageCtx::admin(
            &session,
            &admin,
            Section::Users,
            &format!("Admin > Users > {}", r.display_name),
        )?,
        id: r.id.clone(),
        local: r.source == "local",
        enabled: r.account_enabled != 0,
        item: UserItem::from(&r),
        attributes,
        custom,
        groups,
        apple_conflicts,
        sync,
        audit: audit.iter().map(AuditItem::from).collect(),
        invitations,
    };
    render(&page, StatusCode::OK)
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/user_form.html")]
pub struct UserFormPage {
    pub ctx: PageCtx,
    pub action: String,
    pub form: LocalUserForm,
    pub custom_names: Vec<String>,
    pub errors: FieldErrors,
    pub submit: &'static str,
}

async fn custom_names(state: &AppState) -> AppResult<Vec<String>> {
    let names = state
        .db
        .memo(crate::settings::repo::CUSTOM_NAMES, async {
            let source =
                crate::settings::repo::find_source(&state.db.pool, ENTRA_SOURCE_ID).await?;
            Ok::<_, anyhow::Error>(source.map_or_else(Vec::new, |s| {
                s.settings
                    .custom_attributes
                    .into_iter()
                    .map(|a| a.name)
                    .collect()
            }))
        })
        .await?;
    Ok(names)
}

/// Which local-user form is shown.
enum FormKind<'a> {
    New,
    Edit { id: &'a str },
}

async fn form_page(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    kind: FormKind<'_>,
    form: LocalUserForm,
    errors: FieldErrors,
) -> AppResult<UserFormPage> {
    let (title, action, submit) = match kind {
        FormKind::New => (
            "Admin > Users > New local user".to_owned(),
            "/admin/users/new".to_owned(),
            "Create user",
        ),
        FormKind::Edit { id } => (
            format!("Admin > Users > Edit {}", form.display_name),
            format!("/admin/users/{id}/edit"),
            "Save changes",
        ),
    };
    Ok(UserFormPage {
        ctx: PageCtx::admin(session, admin, Section::Users, &title)?,
        action,
        form,
        custom_names: custom_names(state).await?,
        errors,
        submit,
    })
}

fn parse_user_form(pairs: &[(String, String)]) -> LocalUserForm {
    let mut f = LocalUserForm::default();
    for (k, v) in pairs {
        match k.as_str() {
            "upn" => f.upn.clone_from(v),
            "mail" => f.mail.clone_from(v),
            "given_name" => f.given_name.clone_from(v),
            "surname" => f.surname.clone_from(v),
            "display_name" => f.display_name.clone_from(v),
            other => {
                if let Some(name) = other.strip_prefix("attr_") {
                    f.custom.insert(name.to_owned(), v.clone());
                }
            }
        }
    }
    f
}

async fn new_user_form(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
) -> AppResult<HttpResponse> {
    let p = form_page(
        &state,
        &session,
        &admin,
        FormKind::New,
        LocalUserForm::default(),
        FieldErrors::new(),
    )
    .await?;
    render(&p, StatusCode::OK)
}

async fn create_user(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    body: web::Form<Vec<(String, String)>>,
) -> AppResult<HttpResponse> {
    let form = parse_user_form(&body);
    match service::create(&state.db, state.clock.now_ms(), &form, actor(&admin), &meta).await {
        Ok(id) => {
            flash::push(
                &session,
                Level::Success,
                format!("Local user {} created.", form.upn.trim()),
            );
            Ok(see_other(&format!("/admin/users/{id}")))
        }
        Err(SaveError::Invalid(errors)) => {
            let p = form_page(&state, &session, &admin, FormKind::New, form, errors).await?;
            render(&p, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::NotFound) => Err(AppError::NotFound),
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn edit_user_form(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let r = load_user(&state, &id).await?;
    if r.source != "local" {
        return Err(AppError::Forbidden(
            "Users from Entra ID are edited in Entra ID; Roster syncs the changes.".into(),
        ));
    }
    let form = LocalUserForm {
        upn: r.upn.clone(),
        mail: r.mail.clone().unwrap_or_default(),
        given_name: r.given_name.clone().unwrap_or_default(),
        surname: r.surname.clone().unwrap_or_default(),
        display_name: r.display_name.clone(),
        custom: serde_json::from_str(&r.custom_attributes).unwrap_or_default(),
    };
    let p = form_page(
        &state,
        &session,
        &admin,
        FormKind::Edit { id: &r.id },
        form,
        FieldErrors::new(),
    )
    .await?;
    render(&p, StatusCode::OK)
}

async fn update_user(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    id: web::Path<String>,
    body: web::Form<Vec<(String, String)>>,
) -> AppResult<HttpResponse> {
    let form = parse_user_form(&body);
    match service::update(
        &state.db,
        state.clock.now_ms(),
        &id,
        &form,
        actor(&admin),
        &meta,
    )
    .await
    {
        Ok(()) => {
            flash::push(&session, Level::Success, "Changes saved.");
            Ok(see_other(&format!("/admin/users/{id}")))
        }
        Err(SaveError::Invalid(errors)) => {
            let p = form_page(
                &state,
                &session,
                &admin,
                FormKind::Edit { id: &id },
                form,
                errors,
            )
            .await?;
            render(&p, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::NotFound) => Err(AppError::NotFound),
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn toggle(
    state: &AppState,
    session: &Session,
    admin: &AdminSession,
    meta: &RequestMeta,
    id: &str,
    enabled: bool,
) -> AppResult<HttpResponse> {
    match service::set_enabled(
        &state.db,
        state.clock.now_ms(),
        id,
        enabled,
        actor(admin),
        meta,
    )
    .await
    {
        Ok(()) => {
            flash::push(
                session,
                Level::Success,
                if enabled {
                    "User enabled."
                } else {
                    "User disabled: they can no longer register or sign in."
                },
            );
            Ok(see_other(&format!("/admin/users/{id}")))
        }
        Err(SaveError::NotFound) | Err(SaveError::Invalid(_)) => Err(AppError::NotFound),
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

async fn disable_user(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    toggle(&state, &session, &admin, &meta, &id, false).await
}

async fn enable_user(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    toggle(&state, &session, &admin, &meta, &id, true).await
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/user_delete.html")]
pub struct DeleteUserPage {
    pub ctx: PageCtx,
    pub id: String,
    pub upn: String,
    pub display_name: String,
}

async fn delete_user_form(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    let r = load_user(&state, &id).await?;
    if r.source != "local" {
        return Err(AppError::Forbidden(
            "Users from Entra ID are removed in Entra ID; sync marks them Not synced.".into(),
        ));
    }
    let p = DeleteUserPage {
        ctx: PageCtx::admin(
            &session,
            &admin,
            Section::Users,
            "Admin > Users > Delete local user",
        )?,
        id: r.id,
        upn: r.upn,
        display_name: r.display_name,
    };
    render(&p, StatusCode::OK)
}

async fn delete_user(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    meta: RequestMeta,
    id: web::Path<String>,
) -> AppResult<HttpResponse> {
    match service::delete(&state.db, state.clock.now_ms(), &id, actor(&admin), &meta).await {
        Ok(()) => {
            flash::push(
                &session,
                Level::Success,
                "Local user deleted. The record is kept in the audit log.",
            );
            Ok(see_other("/admin/users"))
        }
        Err(SaveError::NotFound) | Err(SaveError::Invalid(_)) => Err(AppError::NotFound),
        Err(SaveError::Unexpected(e)) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    after: Option<String>,
}

pub struct GroupItem {
    pub id: String,
    pub display_name: String,
    pub kind: &'static str,
    pub mail: String,
    pub members: i64,
    pub status_label: &'static str,
    pub pill_class: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/groups.html")]
pub struct GroupsPage {
    pub ctx: PageCtx,
    pub q: String,
    pub total: i64,
    pub items: Vec<GroupItem>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
}

async fn list_groups(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    query: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = query.q.trim();
    let prefix = (!q.is_empty()).then_some(q);
    let after = query.after.as_deref().and_then(|a| a.rsplit_once('\u{1f}'));
    let mut rows = repo::list_groups(&state.db.pool, prefix, after, PAGE_SIZE + 1).await?;
    let more = split_page(&mut rows);
    let next_href = more
        .then(|| {
            rows.last().map(|r| {
                let key = format!("{}\u{1f}{}", r.sort_key, r.id);
                format!("/admin/groups?q={}&after={}", enc(q), enc(&key))
            })
        })
        .flatten();
    let items = rows
        .iter()
        .map(|r| {
            let unified = r.group_types.contains("Unified");
            GroupItem {
                id: r.id.clone(),
                display_name: r.display_name.clone(),
                kind: if unified {
                    "Microsoft 365"
                } else if r.security_enabled != 0 {
                    "Security"
                } else {
                    "Distribution"
                },
                mail: r.mail.clone().unwrap_or_default(),
                members: r.members,
                status_label: if r.not_synced_at.is_some() {
                    "Not synced"
                } else {
                    "Active"
                },
                pill_class: if r.not_synced_at.is_some() {
                    "pill pill-warn"
                } else {
                    "pill pill-ok"
                },
            }
        })
        .collect();
    let page = GroupsPage {
        ctx: PageCtx::admin(&session, &admin, Section::Groups, "Admin > Groups")?,
        q: q.to_owned(),
        total: repo::count_groups(&state.db.pool).await?,
        items,
        next_href,
        first_href: query
            .after
            .is_some()
            .then(|| format!("/admin/groups?q={}", enc(q))),
    };
    render(&page, StatusCode::OK)
}

pub struct MemberItem {
    pub kind: &'static str,
    pub name: String,
    pub detail: String,
    pub href: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "directory/group.html")]
pub struct GroupPage {
    pub ctx: PageCtx,
    pub name: String,
    pub kind: &'static str,
    pub attributes: Vec<KeyValue>,
    pub member_count: i64,
    pub members: Vec<MemberItem>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct MembersQuery {
    after: Option<String>,
}

async fn show_group(
    state: web::Data<AppState>,
    session: Session,
    admin: AdminSession,
    id: web::Path<String>,
    q: web::Query<MembersQuery>,
) -> AppResult<HttpResponse> {
    let g = repo::find_group(&state.db.pool, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut rows = repo::list_members(
        &state.db.pool,
        &g.source_id,
        &g.external_id,
        q.after.as_deref(),
        PAGE_SIZE + 1,
    )
    .await?;
    let more = split_page(&mut rows);
    let next_href = more
        .then(|| {
            rows.last().map(|m| {
                format!(
                    "/admin/groups/{}?after={}",
                    g.id,
                    enc(&m.member_external_id)
                )
            })
        })
        .flatten();
    let members = rows
        .iter()
        .map(|m| MemberItem {
            kind: match m.member_kind.as_str() {
                "user" => "User",
                "group" => "Group",
                _ => "Other",
            },
            name: m
                .name
                .clone()
                .unwrap_or_else(|| format!("(not synced: {})", m.member_external_id)),
            detail: m.detail.clone().unwrap_or_default(),
            href: m.id.as_ref().map(|id| {
                if m.member_kind == "group" {
                    format!("/admin/groups/{id}")
                } else {
                    format!("/admin/users/{id}")
                }
            }),
        })
        .collect();
    let kv = |k: &str, v: Option<String>| KeyValue {
        key: k.to_owned(),
        value: v.unwrap_or_else(|| "—".into()),
    };
    let mut attributes = vec![
        kv("Description", g.description.clone()),
        kv("Mail", g.mail.clone()),
        kv("Entra object id", Some(g.external_id.clone())),
        kv("First seen", Some(format_ms(g.first_seen_at))),
        kv("Last changed", Some(format_ms(g.last_changed_at))),
    ];
    if let Some(at) = g.not_synced_at {
        attributes.push(kv("Marked not synced", Some(format_ms(at))));
        attributes.push(kv("Why", g.not_synced_reason.clone()));
    }
    let kind = if g.group_types.contains("Unified") {
        "Microsoft 365 group"
    } else if g.security_enabled != 0 {
        "Security group"
    } else {
        "Distribution list"
    };
    let page = GroupPage {
        ctx: PageCtx::admin(
            &session,
            &admin,
            Section::Groups,
            &format!("Admin > Groups > {}", g.display_name),
        )?,
        name: g.display_name.clone(),
        kind,
        attributes,
        member_count: repo::count_members(&state.db.pool, &g.source_id, &g.external_id).await?,
        members,
        next_href,
        first_href: q.after.is_some().then(|| format!("/admin/groups/{}", g.id)),
    };
    render(&page, StatusCode::OK)
}
