//! SQL for directory users, groups and memberships. Sync writes a page at a time with multi-row upserts.

use sqlx::{Any, AnyConnection, Executor, FromRow, Row};

use crate::clock::Millis;
use crate::db::ids::new_id;
use crate::directory::model::{
    GroupRecord, MemberKind, Upserted, UserCursor, UserQuery, UserRecord, UserSort, UserStatus,
    prefix_end,
};

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
fn in_list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Placeholders `($a, $a+1, …)` for one row of `n` values starting at `$first`.
fn row_placeholders(first: usize, n: usize) -> String {
    let cols: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", cols.join(", "))
}

fn count_upserted(rows: &[(Option<String>, Option<String>)], run_id: &str) -> Upserted {
    let mut u = Upserted::default();
    for (first, changed) in rows {
        if first.as_deref() == Some(run_id) {
            u.added += 1;
        } else if changed.as_deref() == Some(run_id) {
            u.updated += 1;
        }
    }
    u
}

/// The rows of a JSON array bound as `param`, as a `FROM` item whose rows are `j.value`: SQLite's
/// `json_each`, PostgreSQL's `jsonb_array_elements` (parsed once; `->>` on `json` re-parses the text for every field) (a dialect feature on the sync's hot path, STYLE.md §6).
/// Binding a whole page as one JSON text replaced multi-row `VALUES` with 16 bound values per user: sqlx
/// resolves every bound value by name on SQLite (quadratic in their number) and copies each one to the
/// SQLite worker thread, which made binding most of a full sync's CPU (docs/benchmarks.md). Positional
/// arrays keep the text small; `j.value ->> N` reads element N as text (NULL for JSON null) on both.
fn json_rows(conn: &AnyConnection, param: &str) -> String {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        format!("json_each({param}) AS j")
    } else {
        format!("jsonb_array_elements(CAST({param} AS jsonb)) AS j(value)")
    }
}

/// The secondary indexes a first import builds after loading instead of maintaining them row by row, with their
/// definitions exactly as the migrations create them (a test compares the two). Both databases spent most of a
/// full sync inserting into these B-trees (docs/benchmarks.md); unique indexes, and the partial unique index the
/// round's clash check reads, always stay.
pub const BULK_LOAD_INDEXES: &[(&str, &str)] = &[
    (
        "directory_users_last_seen_run",
        "directory_users (source_id, last_seen_run)",
    ),
    (
        "directory_users_name",
        "directory_users (display_name_lower, id)",
    ),
    ("directory_users_mail", "directory_users (mail_lower)"),
    ("directory_users_upn_id", "directory_users (upn_lower, id)"),
    (
        "directory_users_changed",
        "directory_users (last_changed_at, id)",
    ),
    (
        "directory_users_invitation",
        "directory_users (invitation_state, upn_lower, id)",
    ),
    (
        "directory_users_apple_active",
        "directory_users (managed_apple_id) \
         WHERE deleted_at IS NULL AND not_synced_at IS NULL AND managed_apple_id IS NOT NULL",
    ),
    (
        "group_members_member",
        "group_members (source_id, member_external_id)",
    ),
];

/// Drops [`BULK_LOAD_INDEXES`] before a first import. Whoever calls it must call [`restore_bulk_load_indexes`]
/// afterwards, failed or not; a crash in between is mended by the next round or process start.
pub async fn drop_bulk_load_indexes(conn: &mut AnyConnection) -> sqlx::Result<()> {
    for (name, _) in BULK_LOAD_INDEXES {
        conn.execute(format!("DROP INDEX IF EXISTS {name}").as_str())
            .await?;
    }
    Ok(())
}

/// Creates whichever of [`BULK_LOAD_INDEXES`] is missing (one catalog query when none is); returns their names.
pub async fn restore_bulk_load_indexes(
    conn: &mut AnyConnection,
) -> sqlx::Result<Vec<&'static str>> {
    let catalog = if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        "SELECT name FROM sqlite_master WHERE type = 'index'"
    } else {
        "SELECT CAST(indexname AS TEXT) FROM pg_indexes WHERE schemaname = current_schema()"
    };
    let present: Vec<String> = sqlx::query_scalar(catalog).fetch_all(&mut *conn).await?;
    let mut created = Vec::new();
    for (name, on) in BULK_LOAD_INDEXES {
        if !present.iter().any(|p| p == name) {
            conn.execute(format!("CREATE INDEX {name} ON {on}").as_str())
                .await?;
            created.push(*name);
        }
    }
    Ok(created)
}

/// Inserts or updates users of one source, all seen in `run_id` (at most one row per user: Graph pages are
/// deduplicated first). Seeing a user clears "not synced".
pub async fn upsert_users(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: &str,
    now: Millis,
    users: &[UserRecord],
) -> anyhow::Result<Upserted> {
    if users.is_empty() {
        return Ok(Upserted::default());
    }
    let rows = users
        .iter()
        .map(|u| {
            Ok(serde_json::json!([
                new_id(),
                u.external_id,
                u.upn,
                u.upn.to_lowercase(),
                u.mail,
                u.given_name,
                u.surname,
                u.display_name,
                u.job_title,
                u.department,
                crate::db::flag(u.account_enabled),
                serde_json::to_string(&u.custom_attributes)?,
                u.managed_apple_id,
                u.content_hash(),
                u.display_name.to_lowercase(),
                u.mail.as_ref().map(|m| m.to_lowercase()),
            ]))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let doc = serde_json::to_string(&rows)?;
    let from = json_rows(conn, "$4");
    // The page's rows as an upsert into directory_users; three statements below share it with their own
    // `DO UPDATE`. Each looks its rows up by the unique key, row by row.
    let insert = format!(
        "INSERT INTO directory_users (id, external_id, upn, upn_lower, mail, given_name, surname, display_name, \
         job_title, department, account_enabled, custom_attributes, managed_apple_id, content_hash, \
         display_name_lower, mail_lower, \
         source, source_id, first_seen_run, last_changed_run, last_seen_run, first_seen_at, last_changed_at, last_seen_at) \
         SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5, \
         j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, CAST(j.value ->> 10 AS BIGINT), \
         j.value ->> 11, j.value ->> 12, j.value ->> 13, j.value ->> 14, j.value ->> 15, \
         'entra', $1, $2, $2, $2, $3, $3, $3 FROM {from} WHERE true \
         ON CONFLICT (source_id, external_id) DO UPDATE SET"
    );
    let run = |set_where: &str| format!("{insert} {set_where}");
    // New and changed users. Added = first seen in this run; updated = changed in this run (an unchanged,
    // synced user is not returned). Returned per row: counting afterwards with a join on the JSON rows depends
    // on the planner, and PostgreSQL without fresh statistics (right after a bulk load) drove such a join from
    // the table, one scan per row (40 s for one page).
    let returned = upsert_page(
        conn,
        &run(
        "upn = excluded.upn, mail = excluded.mail, given_name = excluded.given_name, surname = excluded.surname, \
         display_name = excluded.display_name, job_title = excluded.job_title, department = excluded.department, \
         account_enabled = excluded.account_enabled, custom_attributes = excluded.custom_attributes, \
         last_changed_run = excluded.last_changed_run, last_changed_at = excluded.last_changed_at, \
         content_hash = excluded.content_hash, last_seen_run = excluded.last_seen_run, \
         last_seen_at = excluded.last_seen_at, not_synced_at = NULL, not_synced_reason = NULL \
         WHERE directory_users.content_hash <> excluded.content_hash OR directory_users.not_synced_at IS NOT NULL \
         RETURNING first_seen_run, last_changed_run",
        ),
        (source_id, run_id, now, &doc),
    )
    .await?;
    let rows: Vec<(Option<String>, Option<String>)> = returned
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<sqlx::Result<_>>()?;
    let upserted = count_upserted(&rows, run_id);
    // SQLite rewrites an index entry for every indexed column an UPDATE sets, equal value or not: setting all
    // of them for each changed user made a delta round's user writes 2.5 times what they need (WAL bytes and
    // time, docs/benchmarks.md). So the statement above sets no indexed column but the round stamps; unchanged
    // users get only their round stamp, and the indexed values are set where they differ.
    if usize::try_from(upserted.added).unwrap_or(0) < users.len() {
        if rows.len() < users.len() {
            upsert_page(
                conn,
                &run(
                    "last_seen_run = excluded.last_seen_run, last_seen_at = excluded.last_seen_at \
                     WHERE directory_users.last_seen_run IS DISTINCT FROM excluded.last_seen_run",
                ),
                (source_id, run_id, now, &doc),
            )
            .await?;
        }
        upsert_page(
            conn,
            &run(
                "upn_lower = excluded.upn_lower, display_name_lower = excluded.display_name_lower, \
                 mail_lower = excluded.mail_lower, managed_apple_id = excluded.managed_apple_id \
                 WHERE directory_users.upn_lower IS DISTINCT FROM excluded.upn_lower \
                 OR directory_users.display_name_lower IS DISTINCT FROM excluded.display_name_lower \
                 OR directory_users.mail_lower IS DISTINCT FROM excluded.mail_lower \
                 OR directory_users.managed_apple_id IS DISTINCT FROM excluded.managed_apple_id",
            ),
            (source_id, run_id, now, &doc),
        )
        .await?;
    }
    Ok(upserted)
}

/// Runs one of `upsert_users`' statements with its four parameters (source, run, time, the page's rows).
async fn upsert_page(
    conn: &mut AnyConnection,
    sql: &str,
    (source_id, run_id, now, doc): (&str, &str, Millis, &str),
) -> sqlx::Result<Vec<sqlx::any::AnyRow>> {
    sqlx::query(sql)
        .bind(source_id)
        .bind(run_id)
        .bind(now)
        .bind(doc)
        .fetch_all(conn)
        .await
}

/// Inserts or updates groups of one source, all seen in `run_id`: one statement with the rows as a JSON
/// parameter, like [`upsert_users`] (multi-row `VALUES` took eight statements and 10 bound values per group).
/// With `touch_unchanged` false (a delta round), a group whose content is unchanged and which is synced is
/// left as it is: only a completed full round reads `last_seen_run` (to find what Entra ID no longer
/// returns), and a delta round returns every group whose members changed, so rewriting each of those rows
/// and its index entries was a sixth of a delta round on SQLite (docs/benchmarks.md).
pub async fn upsert_groups(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: &str,
    now: Millis,
    groups: &[GroupRecord],
    touch_unchanged: bool,
) -> anyhow::Result<Upserted> {
    if groups.is_empty() {
        return Ok(Upserted::default());
    }
    let rows = groups
        .iter()
        .map(|g| {
            Ok(serde_json::json!([
                new_id(),
                g.external_id,
                g.display_name,
                g.description,
                g.mail,
                crate::db::flag(g.mail_enabled),
                crate::db::flag(g.security_enabled),
                serde_json::to_string(&g.group_types)?,
                g.content_hash(),
                g.display_name.to_lowercase(),
            ]))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let doc = serde_json::to_string(&rows)?;
    let from = json_rows(conn, "$4");
    let sql = format!(
        "INSERT INTO directory_groups (id, external_id, display_name, description, mail, mail_enabled, \
         security_enabled, group_types, content_hash, display_name_lower, \
         source_id, first_seen_run, last_changed_run, last_seen_run, first_seen_at, last_changed_at, last_seen_at) \
         SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
         CAST(j.value ->> 5 AS BIGINT), CAST(j.value ->> 6 AS BIGINT), j.value ->> 7, j.value ->> 8, j.value ->> 9, \
         $1, $2, $2, $2, $3, $3, $3 FROM {from} WHERE true \
         ON CONFLICT (source_id, external_id) DO UPDATE SET display_name = excluded.display_name, \
         display_name_lower = excluded.display_name_lower, description = excluded.description, mail = excluded.mail, mail_enabled = excluded.mail_enabled, \
         security_enabled = excluded.security_enabled, group_types = excluded.group_types, \
         last_changed_run = CASE WHEN directory_groups.content_hash = excluded.content_hash \
             AND directory_groups.not_synced_at IS NULL THEN directory_groups.last_changed_run ELSE excluded.last_changed_run END, \
         last_changed_at = CASE WHEN directory_groups.content_hash = excluded.content_hash \
             AND directory_groups.not_synced_at IS NULL THEN directory_groups.last_changed_at ELSE excluded.last_changed_at END, \
         content_hash = excluded.content_hash, last_seen_run = excluded.last_seen_run, \
         last_seen_at = excluded.last_seen_at, not_synced_at = NULL, not_synced_reason = NULL \
         WHERE $5 = 1 OR directory_groups.content_hash <> excluded.content_hash \
         OR directory_groups.not_synced_at IS NOT NULL \
         RETURNING first_seen_run, last_changed_run"
    );
    let rows = sqlx::query_as::<_, (Option<String>, Option<String>)>(&sql)
        .bind(source_id)
        .bind(run_id)
        .bind(now)
        .bind(&doc)
        .bind(crate::db::flag(touch_unchanged))
        .fetch_all(&mut *conn)
        .await?;
    Ok(count_upserted(&rows, run_id))
}

/// Membership rows per statement (one JSON text each; bounds the statement's memory).
const MEMBERSHIPS_PER_STATEMENT: usize = 5_000;

/// Records memberships seen in `run_id` (each (group, member) pair at most once); returns how many are new.
pub async fn upsert_memberships(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: &str,
    members: &[(String, MemberKind, String)],
) -> anyhow::Result<i64> {
    let mut added = 0;
    for chunk in members.chunks(MEMBERSHIPS_PER_STATEMENT) {
        let doc = serde_json::to_string(
            &chunk
                .iter()
                .map(|(g, k, m)| [g.as_str(), k.as_str(), m.as_str()])
                .collect::<Vec<_>>(),
        )?;
        let from = json_rows(conn, "$3");
        // New = first seen in this run (returned per row, see `upsert_users`).
        let first_seen: Vec<Option<String>> = sqlx::query_scalar(&format!(
            "INSERT INTO group_members (group_external_id, member_kind, member_external_id, source_id, \
             first_seen_run, last_seen_run) \
             SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, $1, $2, $2 FROM {from} WHERE true \
             ON CONFLICT (source_id, group_external_id, member_external_id) DO UPDATE SET \
             member_kind = excluded.member_kind, last_seen_run = excluded.last_seen_run \
             RETURNING first_seen_run"
        ))
        .bind(source_id)
        .bind(run_id)
        .bind(&doc)
        .fetch_all(&mut *conn)
        .await?;
        added += i64::try_from(
            first_seen
                .iter()
                .filter(|r| r.as_deref() == Some(run_id))
                .count(),
        )
        .unwrap_or(i64::MAX);
    }
    Ok(added)
}

/// Removes memberships (the source said they ended); returns how many existed.
pub async fn remove_memberships(
    conn: &mut AnyConnection,
    source_id: &str,
    members: &[(String, String)],
) -> sqlx::Result<i64> {
    let mut removed = 0;
    let per_statement = crate::db::rows_per_statement(&*conn, 2);
    for chunk in members.chunks(per_statement) {
        removed += remove_membership_chunk(&mut *conn, source_id, chunk).await?;
    }
    Ok(removed)
}

async fn remove_membership_chunk(
    conn: &mut AnyConnection,
    source_id: &str,
    members: &[(String, String)],
) -> sqlx::Result<i64> {
    if members.is_empty() {
        return Ok(0);
    }
    let pairs: Vec<String> = (0..members.len())
        .map(|i| row_placeholders(2 + i * 2, 2))
        .collect();
    let sql = format!(
        "DELETE FROM group_members WHERE source_id = $1 AND (group_external_id, member_external_id) IN (VALUES {})",
        pairs.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(source_id);
    for (group, member) in members {
        q = q.bind(group).bind(member);
    }
    Ok(i64::try_from(q.execute(conn).await?.rows_affected()).unwrap_or(0))
}

/// Removes every membership of groups the source deleted.
pub async fn remove_memberships_of_groups(
    conn: &mut AnyConnection,
    source_id: &str,
    group_ids: &[String],
) -> sqlx::Result<i64> {
    let mut n = 0;
    let per_statement = crate::db::rows_per_statement(&*conn, 1);
    for chunk in group_ids.chunks(per_statement) {
        let list = in_list(2, chunk.len());
        let sql = format!(
            "DELETE FROM group_members WHERE source_id = $1 AND group_external_id IN ({})",
            list
        );
        let mut q = sqlx::query(&sql).bind(source_id);
        for id in chunk {
            q = q.bind(id);
        }
        n += i64::try_from(q.execute(&mut *conn).await?.rows_affected()).unwrap_or(0);
    }
    Ok(n)
}

/// Marks users the source reported removed as not synced; returns how many changed state.
pub async fn mark_users_removed(
    conn: &mut AnyConnection,
    source_id: &str,
    external_ids: &[String],
    reason: &str,
    now: Millis,
) -> sqlx::Result<i64> {
    mark_removed(
        conn,
        "directory_users",
        source_id,
        external_ids,
        reason,
        now,
    )
    .await
}

pub async fn mark_groups_removed(
    conn: &mut AnyConnection,
    source_id: &str,
    external_ids: &[String],
    reason: &str,
    now: Millis,
) -> sqlx::Result<i64> {
    mark_removed(
        conn,
        "directory_groups",
        source_id,
        external_ids,
        reason,
        now,
    )
    .await
}

async fn mark_removed(
    conn: &mut AnyConnection,
    table: &str,
    source_id: &str,
    external_ids: &[String],
    reason: &str,
    now: Millis,
) -> sqlx::Result<i64> {
    let mut n = 0;
    let per_statement = crate::db::rows_per_statement(&*conn, 1);
    for chunk in external_ids.chunks(per_statement) {
        n += mark_removed_chunk(&mut *conn, table, source_id, chunk, reason, now).await?;
    }
    Ok(n)
}

async fn mark_removed_chunk(
    conn: &mut AnyConnection,
    table: &str,
    source_id: &str,
    external_ids: &[String],
    reason: &str,
    now: Millis,
) -> sqlx::Result<i64> {
    if external_ids.is_empty() {
        return Ok(0);
    }
    let list = in_list(4, external_ids.len());
    let sql = format!(
        "UPDATE {table} SET not_synced_at = $1, not_synced_reason = $2 \
         WHERE source_id = $3 AND not_synced_at IS NULL AND external_id IN ({})",
        list
    );
    let mut q = sqlx::query(&sql).bind(now).bind(reason).bind(source_id);
    for id in external_ids {
        q = q.bind(id);
    }
    Ok(i64::try_from(q.execute(conn).await?.rows_affected()).unwrap_or(0))
}

/// After a completed full round: every user and group it did not see is marked not synced.
pub async fn mark_unseen<'e>(
    ex: impl Executor<'e, Database = Any>,
    table: &str,
    source_id: &str,
    run_id: &str,
    reason: &str,
    now: Millis,
) -> sqlx::Result<i64> {
    let sql = format!(
        "UPDATE {table} SET not_synced_at = $1, not_synced_reason = $2 WHERE source_id = $3 \
         AND not_synced_at IS NULL AND (last_seen_run IS NULL OR last_seen_run <> $4)"
    );
    let done = sqlx::query(&sql)
        .bind(now)
        .bind(reason)
        .bind(source_id)
        .bind(run_id)
        .execute(ex)
        .await?;
    Ok(i64::try_from(done.rows_affected()).unwrap_or(0))
}

/// After a completed full round: memberships it did not see are gone.
pub async fn delete_unseen_memberships<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    run_id: &str,
) -> sqlx::Result<i64> {
    let done = sqlx::query(
        "DELETE FROM group_members WHERE source_id = $1 AND (last_seen_run IS NULL OR last_seen_run <> $2)",
    )
    .bind(source_id)
    .bind(run_id)
    .execute(ex)
    .await?;
    Ok(i64::try_from(done.rows_affected()).unwrap_or(0))
}

// ---- pages ----

/// Escapes `%`, `_` and `\\` for a `LIKE … ESCAPE '\\'` pattern.
pub fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The memo key (`Db::memo_count`) of `count_users`; forget it after adding users.
pub const USER_TOTAL: &str = "directory_users.total";

pub async fn count_users<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM directory_users")
        .fetch_one(ex)
        .await
}

#[derive(Debug, Clone, FromRow)]
pub struct GroupListRow {
    pub id: String,
    pub external_id: String,
    pub display_name: String,
    pub mail: Option<String>,
    pub security_enabled: i64,
    pub group_types: String,
    pub not_synced_at: Option<i64>,
    pub members: i64,
    /// The database's own lower-casing of the name: the next page's cursor must use it, not Rust's.
    pub sort_key: String,
}

/// Groups ordered by name then id, after a keyset position, optionally by name prefix.
pub async fn list_groups<'e>(
    ex: impl Executor<'e, Database = Any>,
    prefix: Option<&str>,
    after: Option<(&str, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<GroupListRow>> {
    let lo = prefix.map(str::to_lowercase);
    let hi = lo.as_deref().map(prefix_end);
    let (after_name, after_id) = after.map_or((None, None), |(n, i)| (Some(n), Some(i)));
    sqlx::query_as(
        "SELECT g.id, g.external_id, g.display_name, g.mail, g.security_enabled, g.group_types, g.not_synced_at, \
         (SELECT COUNT(*) FROM group_members m WHERE m.source_id = g.source_id \
             AND m.group_external_id = g.external_id) AS members, g.display_name_lower AS sort_key \
         FROM directory_groups g \
         WHERE ($1 IS NULL OR (g.display_name_lower >= $1 AND g.display_name_lower < $2)) \
           AND ($3 IS NULL OR g.display_name_lower > $3 OR (g.display_name_lower = $3 AND g.id > $4)) \
         ORDER BY g.display_name_lower, g.id LIMIT $5",
    )
    .bind(lo)
    .bind(hi)
    .bind(after_name)
    .bind(after_id)
    .bind(limit)
    .fetch_all(ex)
    .await
}

pub async fn count_groups<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM directory_groups")
        .fetch_one(ex)
        .await
}

/// Built-in user columns whose absence for every user means an attribute is not synchronized.
pub const OPTIONAL_COLUMNS: &[(&str, &str)] = &[
    ("mail", "mail"),
    ("givenName", "given_name"),
    ("surname", "surname"),
    ("jobTitle", "job_title"),
    ("department", "department"),
];

pub async fn count_active_users<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE source_id = $1 AND not_synced_at IS NULL",
    )
    .bind(source_id)
    .fetch_one(ex)
    .await
}

/// `LIKE` pattern that matches a JSON object holding the key `name`.
pub fn custom_key_pattern(name: &str) -> String {
    format!("%{}%", escape_like(&format!("\"{name}\":")))
}

/// "This active user has no value for the attribute", for each built-in of [`OPTIONAL_COLUMNS`] in order and
/// then each of `customs`, with the `LIKE` patterns they bind as `$2`, `$3`… (`$1` is the source).
fn attribute_missing_terms(customs: &[String]) -> (Vec<String>, Vec<String>) {
    let mut terms: Vec<String> = OPTIONAL_COLUMNS
        .iter()
        .map(|(_, col)| format!("{col} IS NULL"))
        .collect();
    let mut patterns = Vec::new();
    for (i, name) in customs.iter().enumerate() {
        terms.push(format!("custom_attributes NOT LIKE ${} ESCAPE '\\'", i + 2));
        patterns.push(custom_key_pattern(name));
    }
    (terms, patterns)
}

const ACTIVE_OF_SOURCE: &str =
    "FROM directory_users WHERE source_id = $1 AND not_synced_at IS NULL";

/// The source's active users, and how many of them lack each attribute (the built-ins of
/// [`OPTIONAL_COLUMNS`] in order, then `customs`): one pass over the table, not one per attribute.
pub async fn attribute_gaps<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    customs: &[String],
) -> sqlx::Result<(i64, Vec<i64>)> {
    let (terms, patterns) = attribute_missing_terms(customs);
    let sums: String = terms
        .iter()
        .map(|t| format!(", CAST(COALESCE(SUM(CASE WHEN {t} THEN 1 ELSE 0 END), 0) AS BIGINT)"))
        .collect();
    let sql = format!("SELECT COUNT(*){sums} {ACTIVE_OF_SOURCE}");
    let mut q = sqlx::query(&sql).bind(source_id);
    for p in &patterns {
        q = q.bind(p);
    }
    let row = q.fetch_one(ex).await?;
    let gaps = (1..=terms.len())
        .map(|i| row.try_get::<i64, _>(i))
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok((row.try_get(0)?, gaps))
}

/// Whether the source has active users and some attribute (as in [`attribute_gaps`]) has a value for none of
/// them. Each check stops at the first user with a value, so this is quick whenever the attributes come back
/// (it runs before every round; the full count only after one).
pub async fn some_attribute_unset<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    customs: &[String],
) -> sqlx::Result<bool> {
    let (terms, patterns) = attribute_missing_terms(customs);
    let unset: Vec<String> = terms
        .iter()
        .map(|t| format!("NOT EXISTS (SELECT 1 {ACTIVE_OF_SOURCE} AND NOT ({t}))"))
        .collect();
    let sql = format!(
        "SELECT CAST(CASE WHEN EXISTS (SELECT 1 {ACTIVE_OF_SOURCE}) AND ({}) THEN 1 ELSE 0 END AS BIGINT)",
        unset.join(" OR ")
    );
    let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(source_id);
    for p in &patterns {
        q = q.bind(p);
    }
    Ok(q.fetch_one(ex).await? == 1)
}

// ---- deletion safety: removals found by a round, applied at its end or held ----

/// Records removals a round found (pending until the round finishes).
pub async fn add_pending_removals(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: &str,
    removals: &[(String, &str)],
    now: Millis,
) -> sqlx::Result<()> {
    let per_statement = crate::db::rows_per_statement(&*conn, 2);
    for chunk in removals.chunks(per_statement) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| row_placeholders(4 + i * 2, 2))
            .collect();
        let sql = format!(
            "INSERT INTO user_removals (external_id, reason, source_id, run_id, status, created_at) \
             SELECT v.*, $1, $2, 'pending', $3 FROM (VALUES {}) AS v WHERE true \
             ON CONFLICT (source_id, external_id) DO UPDATE SET run_id = excluded.run_id, \
             reason = excluded.reason, status = 'pending', created_at = excluded.created_at",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(source_id).bind(run_id).bind(now);
        for (id, reason) in chunk {
            q = q.bind(id).bind(*reason);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Entra users a round skipped (their username belongs to a local account) still exist in Entra ID: they
/// count as seen, so a full round does not take them for vanished.
pub async fn touch_seen(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: &str,
    upns_lower: &[String],
) -> sqlx::Result<()> {
    let per_statement = crate::db::rows_per_statement(&*conn, 1);
    for chunk in upns_lower.chunks(per_statement) {
        let list = in_list(3, chunk.len());
        let sql = format!(
            "UPDATE directory_users SET last_seen_run = $2 WHERE source_id = $1 AND upn_lower IN ({})",
            list
        );
        let mut q = sqlx::query(&sql).bind(source_id).bind(run_id);
        for u in chunk {
            q = q.bind(u);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A user seen again is no longer to be removed (pending or held).
pub async fn forget_removals(
    conn: &mut AnyConnection,
    source_id: &str,
    external_ids: &[String],
) -> sqlx::Result<()> {
    let per_statement = crate::db::rows_per_statement(&*conn, 1);
    for chunk in external_ids.chunks(per_statement) {
        let list = in_list(2, chunk.len());
        let sql = format!(
            "DELETE FROM user_removals WHERE source_id = $1 AND external_id IN ({})",
            list
        );
        let mut q = sqlx::query(&sql).bind(source_id);
        for id in chunk {
            q = q.bind(id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// After a completed full round: every active user it did not see becomes a pending removal.
pub async fn add_unseen_as_pending<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    run_id: &str,
    reason: &str,
    now: Millis,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO user_removals (source_id, external_id, run_id, reason, status, created_at) \
         SELECT source_id, external_id, $2, $3, 'pending', $4 FROM directory_users \
         WHERE source_id = $1 AND not_synced_at IS NULL AND (last_seen_run IS NULL OR last_seen_run <> $2) \
         ON CONFLICT (source_id, external_id) DO UPDATE SET run_id = excluded.run_id, status = 'pending'",
    )
    .bind(source_id)
    .bind(run_id)
    .bind(reason)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

/// Removals of `status` for `run_id` (or any run when `None`) that would change an active user.
pub async fn count_removals<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    run_id: Option<&str>,
    status: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_removals r JOIN directory_users u \
         ON u.source_id = r.source_id AND u.external_id = r.external_id \
         WHERE r.source_id = $1 AND ($2 IS NULL OR r.run_id = $2) AND r.status = $3 AND u.not_synced_at IS NULL",
    )
    .bind(source_id)
    .bind(run_id)
    .bind(status)
    .fetch_one(ex)
    .await
}

/// Applies removals of `status` (for `run_id`, or all): marks those users not synced with the recorded
/// reason, then forgets the removals. Returns how many users changed.
pub async fn apply_removals(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: Option<&str>,
    status: &str,
    now: Millis,
) -> sqlx::Result<i64> {
    let done = sqlx::query(
        "UPDATE directory_users SET not_synced_at = $1, not_synced_reason = (SELECT r.reason FROM user_removals r \
         WHERE r.source_id = directory_users.source_id AND r.external_id = directory_users.external_id) \
         WHERE source_id = $2 AND not_synced_at IS NULL AND external_id IN (SELECT external_id FROM user_removals \
         WHERE source_id = $2 AND ($3 IS NULL OR run_id = $3) AND status = $4)",
    )
    .bind(now)
    .bind(source_id)
    .bind(run_id)
    .bind(status)
    .execute(&mut *conn)
    .await?;
    discard_removals(&mut *conn, source_id, run_id, status).await?;
    Ok(i64::try_from(done.rows_affected()).unwrap_or(0))
}

pub async fn discard_removals(
    conn: &mut AnyConnection,
    source_id: &str,
    run_id: Option<&str>,
    status: &str,
) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM user_removals WHERE source_id = $1 AND ($2 IS NULL OR run_id = $2) AND status = $3")
        .bind(source_id)
        .bind(run_id)
        .bind(status)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

/// Holds this round's pending removals for an admin's decision.
pub async fn hold_removals<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    run_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE user_removals SET status = 'held' WHERE source_id = $1 AND run_id = $2 AND status = 'pending'")
        .bind(source_id)
        .bind(run_id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Pending removals left by rounds that did not finish are dropped (their rounds replay them).
pub async fn drop_stale_pending<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM user_removals WHERE source_id = $1 AND status = 'pending'")
            .bind(source_id)
            .execute(ex)
            .await?
            .rows_affected(),
    )
}

#[derive(Debug, Clone, FromRow)]
pub struct HeldRemoval {
    pub upn: String,
    pub display_name: String,
    pub reason: String,
}

/// A preview of held removals (active users only).
pub async fn list_held<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<HeldRemoval>> {
    sqlx::query_as(
        "SELECT u.upn, u.display_name, r.reason FROM user_removals r JOIN directory_users u \
         ON u.source_id = r.source_id AND u.external_id = r.external_id \
         WHERE r.source_id = $1 AND r.status = 'held' AND u.not_synced_at IS NULL ORDER BY u.upn_lower LIMIT $2",
    )
    .bind(source_id)
    .bind(limit)
    .fetch_all(ex)
    .await
}

// ---- the Users page: filters, sorts and keyset pages built from only the conditions in use ----

enum Arg {
    Text(String),
    Int(i64),
}

/// A user as the directory pages read it. A Users page ([`UserCols::Listed`]) leaves the fields it does not show
/// empty (see `ListedRow`).
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub source: String,
    pub external_id: Option<String>,
    pub upn: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: String,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub account_enabled: i64,
    pub custom_attributes: String,
    pub managed_apple_id: Option<String>,
    pub first_seen_at: i64,
    pub last_changed_at: i64,
    pub last_seen_at: i64,
    pub not_synced_at: Option<i64>,
    pub not_synced_reason: Option<String>,
    pub upn_lower: String,
    pub display_name_lower: String,
}

const USER_COLS: &str = "id, source, external_id, upn, mail, given_name, surname, display_name, job_title, department, \
     account_enabled, custom_attributes, managed_apple_id, first_seen_at, last_changed_at, last_seen_at, \
     not_synced_at, not_synced_reason, upn_lower, display_name_lower";

/// What the Users page shows of each row (its table, status and next-page cursor).
const LISTED_USER_COLS: &str = "id, source, upn, mail, display_name, department, account_enabled, managed_apple_id, \
     last_changed_at, not_synced_at, upn_lower, display_name_lower";

/// Which columns [`list_users_page`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCols {
    /// Every field of [`UserRow`] (the CSV export).
    All,
    /// Only what the Users page shows (`LISTED_USER_COLS`), read as one JSON array in one row (`ListedRow`).
    /// sqlx-sqlite runs each connection on its own thread and hands every row, with a copy of each of its
    /// values, to the request's thread; for a page of 51 users that was a quarter of a page view's CPU.
    /// One aggregated row: Users list at 64 connections ≈ 4,000 → 5,500 req/s (docs/benchmarks.md).
    Listed,
}

/// One page of users matching `q`, after `cursor`, in the query's order.
pub async fn list_users_page(
    db: &crate::db::Db,
    query: &UserQuery,
    cursor: Option<&UserCursor>,
    limit: i64,
    cols: UserCols,
) -> sqlx::Result<Vec<UserRow>> {
    let mut clauses: Vec<String> = vec!["deleted_at IS NULL".into()];
    let mut args: Vec<Arg> = Vec::new();
    fn next(args: &mut Vec<Arg>, a: Arg) -> String {
        args.push(a);
        format!("${}", args.len())
    }
    // A search reads its matches first (three index ranges) and sorts them: PostgreSQL, left to itself,
    // walks the sort index and filters, expecting matches evenly spread, which for a prefix late in the
    // alphabet read nearly every row (≈ 180 ms for `zoe` at 100,000 users, against 13–18 ms this way). The
    // fence is `MATERIALIZED`; SQLite already plans the search this way, and copying the matches into a
    // materialized table only cost it time, so there the CTE is inlined (STYLE §6's dialect exception).
    let mut from = "directory_users".to_owned();
    let mut with = String::new();
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let lo = next(&mut args, Arg::Text(q.to_lowercase()));
        let hi = next(&mut args, Arg::Text(prefix_end(&q.to_lowercase())));
        let fence = match db.backend {
            crate::db::Backend::Postgres => "MATERIALIZED",
            crate::db::Backend::Sqlite => "NOT MATERIALIZED",
        };
        with = format!(
            "WITH hits AS {fence} (SELECT * FROM directory_users WHERE deleted_at IS NULL AND \
             ((upn_lower >= {lo} AND upn_lower < {hi}) OR (display_name_lower >= {lo} AND display_name_lower < {hi}) \
             OR (mail_lower >= {lo} AND mail_lower < {hi}))) "
        );
        from = "hits".to_owned();
    }
    if let Some(src) = &query.source {
        let p = next(&mut args, Arg::Text(src.clone()));
        clauses.push(format!("source = {p}"));
    }
    match query.status {
        Some(UserStatus::Active) => {
            clauses.push("not_synced_at IS NULL AND account_enabled = 1".into())
        }
        Some(UserStatus::Disabled) => {
            clauses.push("not_synced_at IS NULL AND account_enabled = 0".into())
        }
        Some(UserStatus::NotSynced) => clauses.push("not_synced_at IS NOT NULL".into()),
        None => {}
    }
    if let Some(m) = &query.missing {
        let p = next(&mut args, Arg::Text(custom_key_pattern(m)));
        clauses.push(format!(
            "not_synced_at IS NULL AND custom_attributes NOT LIKE {p} ESCAPE '\\'"
        ));
    }
    if let Some(inv) = &query.invitation {
        let p = next(&mut args, Arg::Text(inv.clone()));
        clauses.push(format!("invitation_state = {p}"));
    }
    if query.apple_conflict {
        clauses.push(format!(
            "not_synced_at IS NULL AND managed_apple_id IN (SELECT managed_apple_id {APPLE_SHARED})"
        ));
    }
    let col = query.sort.column();
    let (cmp, dir) = if query.desc {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(c) = cursor {
        let v = match query.sort {
            UserSort::Changed => next(&mut args, Arg::Int(c.value.parse().unwrap_or(0))),
            _ => next(&mut args, Arg::Text(c.value.clone())),
        };
        let id = next(&mut args, Arg::Text(c.id.clone()));
        // A row-value comparison is a single index range on (col, id) in SQLite and PostgreSQL alike; the
        // equivalent `a > x OR (a = x AND id > y)` made SQLite scan from the start (17 ms at 90 % of 100k).
        clauses.push(format!("({col}, id) {cmp} ({v}, {id})"));
    }
    let lim = next(&mut args, Arg::Int(limit));
    let page = format!(
        "SELECT {} FROM {from} WHERE {} ORDER BY {col} {dir}, id {dir} LIMIT {lim}",
        match cols {
            UserCols::All => USER_COLS,
            UserCols::Listed => LISTED_USER_COLS,
        },
        clauses.join(" AND ")
    );
    if cols == UserCols::Listed {
        // The same aggregate in each dialect (STYLE §6's exception for a hot path): SQLite's
        // `json_group_array(json_array(…) ORDER BY …)` (SQLite 3.44+), PostgreSQL's `json_agg(json_build_array(…)
        // ORDER BY …)`; no rows give `[]` on SQLite and NULL on PostgreSQL.
        let (agg, array) = match db.backend {
            crate::db::Backend::Sqlite => ("json_group_array", "json_array"),
            crate::db::Backend::Postgres => ("json_agg", "json_build_array"),
        };
        let sql = format!(
            "{with}SELECT CAST({agg}({array}({LISTED_USER_COLS}) ORDER BY {col} {dir}, id {dir}) AS TEXT) \
             FROM ({page}) AS page"
        );
        let mut q = sqlx::query_scalar::<_, Option<String>>(&sql);
        for a in args {
            q = match a {
                Arg::Text(t) => q.bind(t),
                Arg::Int(i) => q.bind(i),
            };
        }
        let doc = q.fetch_one(&db.pool).await?;
        let rows: Vec<ListedRow> = match doc {
            Some(d) => serde_json::from_str(&d).map_err(|e| sqlx::Error::Decode(e.into()))?,
            None => Vec::new(),
        };
        return Ok(rows.into_iter().map(UserRow::from).collect());
    }
    let mut q = sqlx::query_as::<_, UserRow>(&page);
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
        };
    }
    q.fetch_all(&db.pool).await
}

/// A row of `LISTED_USER_COLS`, in that order, as the page's JSON array holds it.
#[derive(serde::Deserialize)]
struct ListedRow(
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    Option<String>,
    i64,
    Option<i64>,
    String,
    String,
);

impl From<ListedRow> for UserRow {
    fn from(r: ListedRow) -> Self {
        Self {
            id: r.0,
            source: r.1,
            upn: r.2,
            mail: r.3,
            display_name: r.4,
            department: r.5,
            account_enabled: r.6,
            managed_apple_id: r.7,
            last_changed_at: r.8,
            not_synced_at: r.9,
            upn_lower: r.10,
            display_name_lower: r.11,
            external_id: None,
            given_name: None,
            surname: None,
            job_title: None,
            custom_attributes: String::new(),
            first_seen_at: 0,
            last_seen_at: 0,
            not_synced_reason: None,
        }
    }
}

/// Managed Apple IDs that more than one active user derives (Apple requires each to be unique), one group
/// each. The terms repeat the condition of the partial index `directory_users_apple_active` (migration 0013)
/// word for word, so both planners read that index alone (SQLite at 100,000 users: 380 → 48 ms).
const APPLE_SHARED: &str = "FROM directory_users WHERE deleted_at IS NULL AND not_synced_at IS NULL \
     AND managed_apple_id IS NOT NULL GROUP BY managed_apple_id HAVING COUNT(*) > 1";

/// How many active users share their Managed Apple ID with another (one pass over the partial index).
pub async fn count_apple_conflicts<'e>(ex: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar(&format!(
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM (SELECT COUNT(*) AS n {APPLE_SHARED}) shared"
    ))
    .fetch_one(ex)
    .await
}

/// The sort value of a row, for the next page's cursor.
pub fn cursor_of(row: &UserRow, sort: UserSort) -> UserCursor {
    let value = match sort {
        UserSort::Upn => row.upn_lower.clone(),
        UserSort::Name => row.display_name_lower.clone(),
        UserSort::Changed => row.last_changed_at.to_string(),
    };
    UserCursor {
        value,
        id: row.id.clone(),
    }
}

pub async fn find_user<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!(
        "SELECT {USER_COLS} FROM directory_users WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await
}

/// Users sharing a Managed Apple ID, other than `id`.
pub async fn users_with_apple_id<'e>(
    ex: impl Executor<'e, Database = Any>,
    apple_id: &str,
    except_id: &str,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT id, upn FROM directory_users WHERE managed_apple_id = $1 AND id <> $2 AND deleted_at IS NULL \
         AND not_synced_at IS NULL ORDER BY upn_lower LIMIT 20",
    )
    .bind(apple_id)
    .bind(except_id)
    .fetch_all(ex)
    .await
}

/// A user's groups: direct (depth 0) and through nested groups (depth ≥ 1), nearest first.
pub async fn groups_of_member<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    member_external_id: &str,
) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        "WITH RECURSIVE chain(gid, depth) AS ( \
             SELECT group_external_id, 0 FROM group_members WHERE source_id = $1 AND member_external_id = $2 \
             UNION \
             SELECT m.group_external_id, c.depth + 1 FROM group_members m JOIN chain c \
                 ON m.member_external_id = c.gid WHERE m.source_id = $1 AND c.depth < 16) \
         SELECT g.id, g.display_name, MIN(c.depth) AS depth FROM chain c JOIN directory_groups g \
             ON g.source_id = $1 AND g.external_id = c.gid \
         GROUP BY g.id, g.display_name ORDER BY MIN(c.depth), g.display_name",
    )
    .bind(source_id)
    .bind(member_external_id)
    .fetch_all(ex)
    .await
}

#[derive(Debug, Clone, FromRow)]
pub struct GroupRow {
    pub id: String,
    pub source_id: String,
    pub external_id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub mail: Option<String>,
    pub mail_enabled: i64,
    pub security_enabled: i64,
    pub group_types: String,
    pub first_seen_at: i64,
    pub last_changed_at: i64,
    pub not_synced_at: Option<i64>,
    pub not_synced_reason: Option<String>,
}

pub async fn find_group<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<GroupRow>> {
    sqlx::query_as(
        "SELECT id, source_id, external_id, display_name, description, mail, mail_enabled, security_enabled, \
         group_types, first_seen_at, last_changed_at, not_synced_at, not_synced_reason FROM directory_groups WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(ex)
    .await
}

#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub member_kind: String,
    pub member_external_id: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub detail: Option<String>,
}

/// A page of a group's direct members (users and nested groups), by the source's member id.
pub async fn list_members<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    group_external_id: &str,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<MemberRow>> {
    sqlx::query_as(
        "SELECT m.member_kind, m.member_external_id, COALESCE(u.id, g.id) AS id, \
         COALESCE(u.display_name, g.display_name) AS name, COALESCE(u.upn, g.mail) AS detail \
         FROM group_members m \
         LEFT JOIN directory_users u ON u.source_id = m.source_id AND u.external_id = m.member_external_id \
         LEFT JOIN directory_groups g ON g.source_id = m.source_id AND g.external_id = m.member_external_id \
         WHERE m.source_id = $1 AND m.group_external_id = $2 AND ($3 IS NULL OR m.member_external_id > $3) \
         ORDER BY m.member_external_id LIMIT $4",
    )
    .bind(source_id)
    .bind(group_external_id)
    .bind(after)
    .bind(limit)
    .fetch_all(ex)
    .await
}

pub async fn count_members<'e>(
    ex: impl Executor<'e, Database = Any>,
    source_id: &str,
    group_external_id: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM group_members WHERE source_id = $1 AND group_external_id = $2",
    )
    .bind(source_id)
    .bind(group_external_id)
    .fetch_one(ex)
    .await
}

// ---- local accounts ----

/// True when any live user (any source) has this username, other than `except_id`.
pub async fn upn_taken<'e>(
    ex: impl Executor<'e, Database = Any>,
    upn_lower: &str,
    except_id: Option<&str>,
) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM directory_users WHERE upn_lower = $1 AND deleted_at IS NULL AND ($2 IS NULL OR id <> $2)",
    )
    .bind(upn_lower)
    .bind(except_id)
    .fetch_one(ex)
    .await?;
    Ok(n > 0)
}

/// Local users (not deleted) whose usernames are among `upns_lower`: a sync must not take them over.
pub async fn local_upns_among(
    conn: &mut AnyConnection,
    upns_lower: &[String],
) -> sqlx::Result<Vec<String>> {
    let mut out = Vec::new();
    let per_statement = crate::db::rows_per_statement(&*conn, 1);
    for chunk in upns_lower.chunks(per_statement) {
        let list = in_list(1, chunk.len());
        let sql = format!(
            "SELECT upn_lower FROM directory_users WHERE source = 'local' AND deleted_at IS NULL AND upn_lower IN ({})",
            list
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for u in chunk {
            q = q.bind(u);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// A local user as typed in the form (already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub upn: String,
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub display_name: String,
    pub custom_attributes: std::collections::BTreeMap<String, String>,
    pub managed_apple_id: Option<String>,
}

pub async fn create_local_user<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    u: &LocalUser,
    now: Millis,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO directory_users (id, source, source_id, external_id, upn, upn_lower, mail, mail_lower, given_name, \
         surname, display_name, display_name_lower, account_enabled, custom_attributes, managed_apple_id, \
         content_hash, first_seen_at, last_changed_at, last_seen_at) \
         VALUES ($1, 'local', NULL, NULL, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, '', $12, $12, $12)",
    )
    .bind(id)
    .bind(&u.upn)
    .bind(u.upn.to_lowercase())
    .bind(u.mail.as_deref())
    .bind(u.mail.as_ref().map(|m| m.to_lowercase()))
    .bind(u.given_name.as_deref())
    .bind(u.surname.as_deref())
    .bind(&u.display_name)
    .bind(u.display_name.to_lowercase())
    .bind(serde_json::to_string(&u.custom_attributes)?)
    .bind(u.managed_apple_id.as_deref())
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

pub async fn update_local_user<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    u: &LocalUser,
    now: Millis,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE directory_users SET upn = $1, upn_lower = $2, mail = $3, mail_lower = $4, given_name = $5, \
         surname = $6, display_name = $7, display_name_lower = $8, custom_attributes = $9, managed_apple_id = $10, \
         last_changed_at = $11 WHERE id = $12 AND source = 'local' AND deleted_at IS NULL",
    )
    .bind(&u.upn)
    .bind(u.upn.to_lowercase())
    .bind(u.mail.as_deref())
    .bind(u.mail.as_ref().map(|m| m.to_lowercase()))
    .bind(u.given_name.as_deref())
    .bind(u.surname.as_deref())
    .bind(&u.display_name)
    .bind(u.display_name.to_lowercase())
    .bind(serde_json::to_string(&u.custom_attributes)?)
    .bind(u.managed_apple_id.as_deref())
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_local_enabled<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    enabled: bool,
    now: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE directory_users SET account_enabled = $1, last_changed_at = $2 \
         WHERE id = $3 AND source = 'local' AND deleted_at IS NULL",
    )
    .bind(crate::db::flag(enabled))
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Soft delete: the row stays, marked deleted.
pub async fn delete_local_user<'e>(
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: Millis,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE directory_users SET deleted_at = $1 WHERE id = $2 AND source = 'local' AND deleted_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Audit entries about a user, newest first.
pub async fn audit_for_target<'e>(
    ex: impl Executor<'e, Database = Any>,
    target_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<crate::audit::repo::AuditRow>> {
    sqlx::query_as(
        "SELECT id, at, actor_kind, actor_name, action, target_kind, target_id, ip, details FROM audit_events \
         WHERE target_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(target_id)
    .bind(limit)
    .fetch_all(ex)
    .await
}
