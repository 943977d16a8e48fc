//! `roster-bench`: runs every benchmark of issue #9 against release binaries and writes
//! `target/bench/results.json` and `docs/benchmarks.md`. Driven by `scripts/bench.sh` (`make bench`).
//!
//! It reports; it never fails because a target was missed (only when something could not be measured).

mod graph;
mod identity;
mod load;
mod mail;
mod procs;
mod report;
mod web;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::graph::Tenant;
use crate::procs::Proc;
use crate::web::Web;

const ADMIN: &str = "bench";
const PASSWORD: &str = "bench-password-0123456789";

#[derive(Debug, Clone)]
struct Args {
    quick: bool,
    users: usize,
    groups: usize,
    memberships: usize,
    postgres_url: Option<String>,
    connections: usize,
    duration: Duration,
    baseline_runs: usize,
    invites: usize,
    saml_iterations: usize,
    out_dir: PathBuf,
    doc: PathBuf,
    notes: PathBuf,
    note: String,
    report_only: bool,
    /// `make soak`: mixed admin pages under load for `duration`, instead of the benchmarks.
    soak: bool,
    /// Which parts to run (`--parts sync,pages,identity,mail`); all by default. For focused reruns while
    /// working on one figure: a partial run's report is incomplete, so point `--doc`/`--out-dir` elsewhere.
    parts: Vec<String>,
    /// Keep the `roster_bench` PostgreSQL database afterwards (to look at plans with psql).
    keep_database: bool,
}

impl Args {
    fn runs(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.iter().any(|p| p == part)
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        quick: false,
        users: 100_000,
        groups: 5_000,
        memberships: 300_000,
        postgres_url: None,
        connections: 64,
        duration: Duration::from_secs(10),
        baseline_runs: 3,
        invites: 10_000,
        saml_iterations: 2_000,
        out_dir: PathBuf::from("target/bench"),
        doc: PathBuf::from("docs/benchmarks.md"),
        notes: PathBuf::from("bench/NOTES.md"),
        note: String::new(),
        report_only: false,
        soak: false,
        parts: Vec::new(),
        keep_database: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let mut sizes_given = false;
    while i < args.len() {
        let flag = args[i].as_str();
        let mut value = || -> anyhow::Result<String> {
            i += 1;
            args.get(i)
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag {
            "--quick" => a.quick = true,
            "--report-only" => a.report_only = true,
            "--soak" => a.soak = true,
            "--keep-database" => a.keep_database = true,
            "--users" => {
                a.users = value()?.parse()?;
                sizes_given = true;
            }
            "--groups" => a.groups = value()?.parse()?,
            "--memberships" => a.memberships = value()?.parse()?,
            "--postgres-url" => a.postgres_url = Some(value()?).filter(|s| !s.is_empty()),
            "--connections" => a.connections = value()?.parse()?,
            "--duration" => a.duration = Duration::from_secs_f64(value()?.parse()?),
            "--baseline-runs" => a.baseline_runs = value()?.parse()?,
            "--invites" => a.invites = value()?.parse()?,
            "--saml-iterations" => a.saml_iterations = value()?.parse()?,
            "--out-dir" => a.out_dir = value()?.into(),
            "--doc" => a.doc = value()?.into(),
            "--notes" => a.notes = value()?.into(),
            "--note" => a.note = value()?,
            "--parts" => {
                a.parts = value()?.split(',').map(|p| p.trim().to_owned()).collect();
                if let Some(bad) = a
                    .parts
                    .iter()
                    .find(|p| !["sync", "pages", "identity", "mail"].contains(&p.as_str()))
                {
                    bail!("unknown part {bad}: use sync, pages, identity, mail");
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: roster-bench [--quick] [--users N --groups G --memberships M] \
                     [--postgres-url URL] [--connections 64] [--duration SECS] [--baseline-runs 3] \
                     [--invites 10000] [--saml-iterations 2000] [--out-dir target/bench] \
                     [--doc docs/benchmarks.md] [--notes bench/NOTES.md] [--note TEXT] \
                     [--parts sync,pages,identity,mail] [--keep-database (the PostgreSQL one)] \
                     [--report-only (rewrite the doc from <out-dir>/results.json)]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other} (see --help)"),
        }
        i += 1;
    }
    if a.quick && !sizes_given {
        a.users = 10_000;
        a.groups = 500;
        a.memberships = 30_000;
        a.duration = Duration::from_secs(5);
        a.saml_iterations = 500;
    }
    Ok(a)
}

fn say(msg: &str) {
    eprintln!("[bench {}] {msg}", procs::load_average());
}

/// One Roster installation: a data folder and a database, served or synced by the release binary.
struct Instance {
    name: String,
    dir: PathBuf,
    db_url: String,
    port: u16,
    roster: PathBuf,
}

impl Instance {
    fn new(root: &Path, name: &str, db_url: Option<&str>) -> anyhow::Result<Self> {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let db_url = db_url.map_or_else(
            || format!("sqlite://{}", dir.join("roster.db").display()),
            str::to_owned,
        );
        Ok(Self {
            name: name.to_owned(),
            dir,
            db_url,
            port: procs::free_port()?,
            roster: procs::release_bin("roster")?,
        })
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("ROSTER_DATA_DIR".into(), self.dir.display().to_string()),
            ("ROSTER_DATABASE_URL".into(), self.db_url.clone()),
            ("ROSTER_BIND".into(), format!("127.0.0.1:{}", self.port)),
            // BENCH_ROSTER_LOG (e.g. "info,sqlx=debug": every statement with its time) for profiling a round.
            (
                "ROSTER_LOG".into(),
                std::env::var("BENCH_ROSTER_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
            ),
        ]
    }

    fn create_admin(&self, username: &str) -> anyhow::Result<()> {
        procs::run_with_stdin(
            &self.roster,
            &["admin", "create", "--username", username],
            &self.envs(),
            &format!("{PASSWORD}\n"),
        )?;
        Ok(())
    }

    async fn serve(&self, tag: &str) -> anyhow::Result<(Proc, Web)> {
        let mut cmd = std::process::Command::new(&self.roster);
        cmd.arg("serve").envs(self.envs()).env("ROSTER_LOG", "warn");
        let log = self.dir.join(format!("serve-{tag}.log"));
        let (proc, _) = procs::spawn("roster serve", cmd, &log, false)?;
        let mut web = Web::new(&self.base())?;
        web.wait_healthy(Duration::from_secs(60)).await?;
        web.login(ADMIN, PASSWORD).await?;
        Ok((proc, web))
    }

    /// `roster sync --once` under /usr/bin/time; the emulator's CPU time during the round too.
    fn sync_once(&self, tag: &str, tenant: &Tenant) -> anyhow::Result<Value> {
        let emu_cpu = procs::cpu_secs(tenant.proc.pid()).unwrap_or(f64::NAN);
        let log = self.dir.join(format!("sync-{tag}.log"));
        let (ru, wall, stdout) =
            procs::run_timed(&self.roster, &["sync", "--once"], &self.envs(), &log)?;
        let emu_cpu = procs::cpu_secs(tenant.proc.pid()).unwrap_or(f64::NAN) - emu_cpu;
        let summary = stdout.lines().last().unwrap_or_default().to_owned();
        let kind = summary
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map_or("?", |(k, _)| k)
            .to_owned();
        Ok(json!({
            "seconds": wall,
            "kind": kind,
            "summary": summary,
            "peak_rss_mib": ru.max_rss_mib,
            "time_wall_s": ru.wall_s,
            "user_cpu_s": ru.user_s,
            "sys_cpu_s": ru.sys_s,
            "emulator_cpu_s": emu_cpu,
            "log": log.display().to_string(),
        }))
    }
}

/// The Entra ID user source form of tests/api/user_source.rs `valid_form`, saved *disabled* so that the
/// worker of `roster serve` never starts a round on its own (`roster sync --once` ignores the switch).
fn entra_form(graph: &str) -> Vec<(&'static str, String)> {
    [
        ("name", "Contoso (bench)"),
        ("sync_interval", "60"),
        ("tenant_id", graph::TENANT),
        ("client_id", graph::CLIENT),
        ("client_secret", graph::SECRET),
        ("cloud", "custom"),
        ("authority_url", graph),
        ("graph_url", graph),
        ("apple_id", "pattern"),
        ("apple_id_source", "email"),
        ("apple_id_subdomain", "on"),
        ("removal_guard_percent", "10"),
        ("removal_guard_min", "20"),
        ("attr_name", "badge"),
        (
            "attr_property",
            "onPremisesExtensionAttributes.extensionAttribute7",
        ),
        ("attr_name", "costCenter"),
        (
            "attr_property",
            "extension_b7d8e648520f41d3b9c0fdeb91768a0a_costCenter",
        ),
        ("action", "save"),
    ]
    .iter()
    .map(|(k, v)| (*k, (*v).to_owned()))
    .collect()
}

async fn post_pairs(
    web: &mut Web,
    path: &str,
    form: &[(&'static str, String)],
) -> anyhow::Result<()> {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    web.post_form(path, &pairs).await?;
    Ok(())
}

async fn configure_source(inst: &Instance, tenant: &Tenant) -> anyhow::Result<()> {
    inst.create_admin(ADMIN)?;
    let (serve, mut web) = inst.serve("setup").await?;
    post_pairs(
        &mut web,
        "/admin/azure/entra-user-source",
        &entra_form(&tenant.base),
    )
    .await?;
    serve.stop(Duration::from_secs(15));
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

async fn baseline(tenant: &Tenant, runs: usize) -> anyhow::Result<Value> {
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        all.push(tenant.baseline_once(false).await?);
    }
    let secs: Vec<f64> = all.iter().filter_map(|r| r["seconds"].as_f64()).collect();
    let users_delta = tenant.baseline_once(true).await?;
    Ok(json!({
        "median_seconds": median(secs.clone()),
        "min_seconds": secs.iter().copied().fold(f64::INFINITY, f64::min),
        "runs": all,
        "users_delta_paging": users_delta,
    }))
}

/// The delta links the last full round stored (users, groups).
async fn delta_links(db_url: &str) -> anyhow::Result<(String, String)> {
    let db = roster::db::Db::connect(db_url).await?;
    let (users, groups): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT users_delta_link, groups_delta_link FROM user_sources")
            .fetch_one(&db.pool)
            .await?;
    db.close().await;
    Ok((
        users.context("no users delta link stored")?,
        groups.context("no groups delta link stored")?,
    ))
}

/// The deep-page cursor: the row at 90 % of the default (UPN) order, as the page's `after=` link carries it.
/// Seconds the last sync round took inside the process (its `sync_runs` row: started → finished), i.e.
/// without process start, connecting and the migration check, which the `roster serve` worker never pays.
async fn last_round_seconds(db_url: &str) -> anyhow::Result<f64> {
    let db = roster::db::Db::connect(db_url).await?;
    let (started, finished): (i64, Option<i64>) = sqlx::query_as(
        "SELECT started_at, finished_at FROM sync_runs ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await?;
    db.close().await;
    let finished = finished.context("the last sync round has not finished")?;
    Ok((finished - started) as f64 / 1000.0)
}

async fn deep_cursor(db_url: &str, users: usize) -> anyhow::Result<String> {
    let db = roster::db::Db::connect(db_url).await?;
    let offset = i64::try_from(users * 9 / 10)?;
    let (value, id): (String, String) = sqlx::query_as(
        "SELECT upn_lower, id FROM directory_users WHERE deleted_at IS NULL ORDER BY upn_lower, id \
         LIMIT 1 OFFSET $1",
    )
    .bind(offset)
    .fetch_one(&db.pool)
    .await?;
    db.close().await;
    let cursor = roster::directory::model::UserCursor { value, id }.encode();
    Ok(url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect())
}

async fn directory_pages(
    inst: &Instance,
    a: &Args,
    tenant: &Tenant,
    prefix: &str,
) -> anyhow::Result<Value> {
    let (serve, web) = inst.serve("pages").await?;
    let after = deep_cursor(&inst.db_url, tenant.users).await?;
    let scenarios = [
        ("list", "/admin/users".to_owned()),
        ("search", format!("/admin/users?q={prefix}")),
        ("filter", "/admin/users?status=disabled".to_owned()),
        ("deep_page", format!("/admin/users?after={after}")),
    ];
    let cookie = web.cookie_header();
    let mut out = serde_json::Map::new();
    for (name, path) in &scenarios {
        let url = format!("{}{path}", inst.base());
        say(&format!("{}: directory page {name} ({path})", inst.name));
        let mut single = load::sequential(&url, &cookie, 50).await?;
        let mut v = load::wrk(
            &url,
            &cookie,
            a.connections,
            Duration::from_secs(1),
            a.duration,
        )?;
        // wrk counts a redirect as an answer: the session must still be signed in afterwards.
        let after_load = load::sequential(&url, &cookie, 1).await?;
        v["path"] = json!(path);
        v["one_connection"] = single.summarize();
        if v["errors"].as_f64().unwrap_or(0.0) > 0.0 || single.errors > 0 || after_load.errors > 0 {
            v["warning"] = json!("some requests failed (non-2xx, transport errors or signed out)");
        }
        out.insert((*name).to_owned(), v);
    }
    let rss = procs::vm_hwm_mib(serve.pid());
    let memory = procs::memory_now_mib(serve.pid());
    serve.stop(Duration::from_secs(15));
    let mut v = Value::Object(out);
    v["serve_peak_rss_mib"] = json!(rss.map(|r| r.0));
    v["serve_memory_now"] = json!(memory);
    Ok(v)
}

async fn create_pg_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

async fn drop_pg_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Full round, 1 % changes, delta round, directory pages: on one database.
async fn database_suite(
    a: &Args,
    root: &Path,
    tenant: &Tenant,
    backend: &str,
    db_url: Option<&str>,
    round: u64,
    baseline_s: f64,
) -> anyhow::Result<Value> {
    let inst = Instance::new(root, backend, db_url)?;
    configure_source(&inst, tenant).await?;
    say(&format!("{backend}: full sync of {} users", tenant.users));
    let mut full = inst.sync_once("full", tenant)?;
    let full_s = full["seconds"].as_f64().unwrap_or(f64::NAN);
    full["users_per_s"] = json!(tenant.users as f64 / full_s);
    full["ratio_to_baseline"] = json!(full_s / baseline_s);
    let full_round_s = last_round_seconds(&inst.db_url).await?;
    full["round_seconds"] = json!(full_round_s);
    say(&format!("{backend}: full round took {full_s:.2} s"));

    let truth = tenant.truth().await?;
    let (mutations, users_changed, members_changed) = graph::one_percent(&truth, round);
    let prefix: String = truth
        .users
        .get(truth.users.len() / 2)
        .map(|u| u.display_name.to_lowercase().chars().take(3).collect())
        .unwrap_or_else(|| "a".into());
    drop(truth);
    tenant.mutate(&mutations).await?;
    say(&format!(
        "{backend}: delta round after {users_changed} user and {members_changed} membership changes"
    ));
    let (users_link, groups_link) = delta_links(&inst.db_url).await?;
    let delta_paging = tenant.delta_paging(&users_link, &groups_link).await?;
    let mut delta = inst.sync_once("delta", tenant)?;
    let delta_s = delta["seconds"].as_f64().unwrap_or(f64::NAN);
    delta["users_changed"] = json!(users_changed);
    delta["memberships_changed"] = json!(members_changed);
    delta["ratio_to_full"] = json!(delta_s / full_s);
    let delta_round_s = last_round_seconds(&inst.db_url).await?;
    delta["round_seconds"] = json!(delta_round_s);
    delta["round_ratio_to_full"] = json!(delta_round_s / full_round_s);
    delta["round_ratio_to_paging"] =
        json!(delta_round_s / delta_paging["seconds"].as_f64().unwrap_or(f64::NAN));
    delta["bare_paging"] = delta_paging;

    let pages = if a.runs("pages") {
        directory_pages(&inst, a, tenant, &prefix).await?
    } else {
        Value::Null
    };
    Ok(json!({
        "database": backend,
        "full": full,
        "delta": delta,
        "directory_pages": pages,
        "search_prefix": prefix,
    }))
}

/// 10,000 invitations through the outbox to the SMTP sink, and POST /saml/acs end to end, on a separate
/// SQLite installation synced from a small tenant (a little over `invites` users with a mail address).
async fn mail_and_acs(a: &Args, repo: &Path, root: &Path, logs: &Path) -> anyhow::Result<Value> {
    // The emulator leaves about 8 % of users without a usable mail address.
    let users = a.invites * 112 / 100;
    let tenant = Tenant::start(users, 50, 500, 2, &logs.join("emulator-mail.log"))?;
    let inst = Instance::new(root, "mail", None)?;
    inst.create_admin(ADMIN)?;
    inst.create_admin("alice@example.com")?;
    let (serve, mut web) = inst.serve("mail").await?;
    post_pairs(
        &mut web,
        "/admin/azure/entra-user-source",
        &entra_form(&tenant.base),
    )
    .await?;
    say(&format!("mail: syncing {users} users"));
    inst.sync_once("mail", &tenant)?;

    // The sink's own ceiling, with a bare SMTP client.
    let probe = mail::Sink::start(repo, &root.join("sink-probe"), &logs.join("sink-probe.log"))?;
    let probe_n = 2_000;
    let port = probe.port;
    let probe_s =
        tokio::task::spawn_blocking(move || mail::blast(port, probe_n, 2_500, false)).await??;
    let nagle_n = 200;
    let nagle_s =
        tokio::task::spawn_blocking(move || mail::blast(port, nagle_n, 2_500, true)).await??;
    drop(probe);

    let sink = mail::Sink::start(repo, &root.join("sink"), &logs.join("sink.log"))?;
    post_pairs(
        &mut web,
        "/admin/mail",
        &[
            ("host", "127.0.0.1".into()),
            ("port", sink.port.to_string()),
            ("security", "none".into()),
            ("username", String::new()),
            ("password", String::new()),
            ("from_name", "Roster".into()),
            ("from_address", "roster@example.test".into()),
            ("action", "save".into()),
        ],
    )
    .await?;
    say("mail: inviting every synced user");
    let t0_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let t0 = Instant::now();
    web.post_form("/admin/users-invite", &[("source", "entra")])
        .await?;
    let invite_request_s = t0.elapsed().as_secs_f64();
    let db = roster::db::Db::connect(&inst.db_url).await?;
    let queued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE kind = 'invitation'")
            .fetch_one(&db.pool)
            .await?;
    let queued = usize::try_from(queued)?;
    let arrivals = sink.wait_for(queued, Duration::from_secs(60)).await;
    let sent: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap_or(-1);
    db.close().await;
    let at = |n: usize| {
        arrivals
            .get(n.saturating_sub(1))
            .map(|t| (t.saturating_sub(t0_ns)) as f64 / 1e9)
    };
    let mail = json!({
        "invitations_queued": queued,
        "messages_received": arrivals.len(),
        "outbox_marked_sent": sent,
        "invite_request_seconds": invite_request_s,
        "seconds_to_nth": at(a.invites.min(queued)),
        "nth": a.invites.min(queued),
        "seconds_to_last": at(arrivals.len()),
        "first_message_after_s": at(1),
        "sink_probe": {"messages": probe_n, "seconds": probe_s, "msgs_per_s": probe_n as f64 / probe_s},
        "sink_probe_lettre_writes": {"messages": nagle_n, "seconds": nagle_s, "msgs_per_s": nagle_n as f64 / nagle_s},
    });
    drop(sink);

    say("SAML: POST /saml/acs end to end");
    let base = inst.base();
    let idp = identity::SamlIdp::start(
        repo,
        &format!("{base}/saml/metadata"),
        &format!("{base}/saml/acs"),
        &logs.join("saml_idp_acs.log"),
    )?;
    let acs = async {
        post_pairs(
            &mut web,
            "/admin/identity/generic",
            &[
                ("metadata_url", format!("{}/metadata", idp.base)),
                ("use_for_admin", "on".into()),
                ("use_for_registration", "on".into()),
            ],
        )
        .await?;
        web.post_form("/admin/identity/generic/enable", &[]).await?;
        identity::saml_acs(&base, &idp, 30).await
    }
    .await;
    serve.stop(Duration::from_secs(15));
    Ok(
        json!({ "mail": mail, "saml_acs_http": acs.unwrap_or_else(|e| json!({"error": format!("{e:#}")})) }),
    )
}

fn write_report(a: &Args, results: &Value) -> anyhow::Result<()> {
    let notes = std::fs::read_to_string(&a.notes).unwrap_or_default();
    std::fs::write(&a.doc, report::markdown(results, &notes))?;
    Ok(())
}

/// Admin pages a soak cycles through (each connection starts at a different one).
const SOAK_PAGES: &[&str] = &[
    "/admin",
    "/admin/users",
    "/admin/users?q=a",
    "/admin/users?status=active&sort=changed&dir=desc",
    "/admin/groups",
    "/admin/groups?q=g",
    "/admin/sync",
    "/admin/notifications",
    "/admin/audit",
    "/admin/identity",
    "/admin/invitations",
    "/admin/mail",
    "/admin/configurations",
    "/admin/azure/entra-user-source",
];

/// `make soak`: a synced 10,000-user directory served by the release binary; `connections` loops GET the
/// mixed admin pages for `duration`; the server's RSS is sampled every 5 s. Fails on any error, or when RSS
/// at the end is more than 1.5 × RSS after the first 10 s (not stable).
async fn soak(a: &Args) -> anyhow::Result<()> {
    let root = a.out_dir.join("soak");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    say("soak: starting the emulator with 10,000 users");
    let tenant = Tenant::start(10_000, 200, 20_000, 1, &root.join("emulator.log"))?;
    let inst = Instance::new(&root, "sqlite", None)?;
    configure_source(&inst, &tenant).await?;
    inst.sync_once("full", &tenant)?;
    let (serve, web) = inst.serve("soak").await?;
    let pid = serve.pid();
    let cookie = web.cookie_header();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(a.connections)
        .timeout(Duration::from_secs(60))
        .build()?;
    let end = Instant::now() + a.duration;
    let sampler = tokio::spawn(async move {
        let mut rss = Vec::new();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Some((_, now)) = procs::vm_hwm_mib(pid) {
                rss.push(now);
            }
        }
        rss
    });
    say(&format!(
        "soak: {} connections over {} admin pages for {:.0} s",
        a.connections,
        SOAK_PAGES.len(),
        a.duration.as_secs_f64()
    ));
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        let (client, cookie, base) = (client.clone(), cookie.clone(), inst.base());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut samples) = (0usize, Vec::new(), Vec::new());
            let mut i = c;
            while Instant::now() < end {
                let path = SOAK_PAGES[i % SOAK_PAGES.len()];
                i += 1;
                let t0 = Instant::now();
                let r = client
                    .get(format!("{base}{path}"))
                    .header(reqwest::header::COOKIE, &cookie)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.bytes().await;
                        ok += 1;
                        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(resp) => errors.push(format!("{path}: HTTP {}", resp.status())),
                    Err(e) => errors.push(format!("{path}: {e}")),
                }
            }
            (ok, errors, samples)
        }));
    }
    let (mut ok, mut errors, mut samples) = (0usize, Vec::new(), Vec::new());
    for t in tasks {
        let (o, e, s) = t.await?;
        ok += o;
        errors.extend(e);
        samples.extend(s);
    }
    let rss = sampler.await?;
    let peak = procs::vm_hwm_mib(pid).map(|r| r.0);
    serve.stop(Duration::from_secs(15));
    tenant.proc.stop(Duration::from_secs(5));
    samples.sort_by(f64::total_cmp);
    let first = rss.get(1).or(rss.first()).copied().unwrap_or(f64::NAN);
    let last = rss.last().copied().unwrap_or(f64::NAN);
    let stable = last <= first * 1.5;
    let result = json!({
        "date": procs::machine(&std::env::current_dir()?)["date_utc"],
        "connections": a.connections,
        "seconds": a.duration.as_secs_f64(),
        "pages": SOAK_PAGES,
        "requests_ok": ok,
        "requests_per_s": ok as f64 / a.duration.as_secs_f64(),
        "errors": errors.len(),
        "first_errors": errors.iter().take(10).collect::<Vec<_>>(),
        "p50_ms": load::percentile(&samples, 50.0),
        "p99_ms": load::percentile(&samples, 99.0),
        "rss_mib_every_5s": rss,
        "peak_rss_mib": peak,
        "rss_stable": stable,
    });
    std::fs::write(
        a.out_dir.join("soak.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    say(&format!(
        "soak: {ok} requests ({:.0}/s), {} errors, p50 {:.1} ms, p99 {:.1} ms, RSS {first:.1} → {last:.1} MiB (peak {:.1}); wrote {}",
        ok as f64 / a.duration.as_secs_f64(),
        errors.len(),
        load::percentile(&samples, 50.0),
        load::percentile(&samples, 99.0),
        peak.unwrap_or(f64::NAN),
        a.out_dir.join("soak.json").display()
    ));
    if !errors.is_empty() {
        bail!(
            "the soak saw {} errors, e.g. {:?}",
            errors.len(),
            errors.first()
        );
    }
    if !stable {
        bail!("RSS grew from {first:.1} to {last:.1} MiB during the soak");
    }
    Ok(())
}

async fn run(a: Args) -> anyhow::Result<()> {
    if a.soak {
        std::fs::create_dir_all(&a.out_dir)?;
        return soak(&a).await;
    }
    if a.report_only {
        let text = std::fs::read_to_string(a.out_dir.join("results.json"))?;
        return write_report(&a, &serde_json::from_str(&text)?);
    }
    let repo = std::env::current_dir()?;
    let root = a.out_dir.join("run");
    let logs = a.out_dir.join("logs");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&root)?;
    std::fs::create_dir_all(&logs)?;
    let started = Instant::now();
    let mut results = json!({
        "machine": procs::machine(&repo),
        "mode": if a.quick { "quick" } else { "full" },
        "note": a.note,
        "tenant": {"users": a.users, "groups": a.groups, "memberships": a.memberships},
        "load": {"connections": a.connections, "seconds_per_scenario": a.duration.as_secs_f64()},
        "load_average_start": procs::load_average(),
    });

    if a.runs("sync") || a.runs("pages") {
        say(&format!(
            "starting the emulator with {} users, {} groups, {} memberships",
            a.users, a.groups, a.memberships
        ));
        let tenant = Tenant::start(
            a.users,
            a.groups,
            a.memberships,
            1,
            &logs.join("emulator.log"),
        )?;
        say("baseline: bare paging");
        let base = baseline(&tenant, a.baseline_runs).await?;
        let baseline_s = base["median_seconds"].as_f64().unwrap_or(f64::NAN);
        say(&format!("baseline: {baseline_s:.2} s"));
        results["baseline"] = base;

        let mut dbs = Vec::new();
        dbs.push(database_suite(&a, &root, &tenant, "sqlite", None, 1, baseline_s).await?);
        match &a.postgres_url {
            Some(admin_url) => {
                let name = "roster_bench";
                let url = create_pg_database(admin_url, name).await?;
                let r =
                    database_suite(&a, &root, &tenant, "postgres", Some(&url), 2, baseline_s).await;
                if a.keep_database {
                    say(&format!("kept the PostgreSQL database {url}"));
                } else if let Err(e) = drop_pg_database(admin_url, name).await {
                    say(&format!("could not drop the bench database: {e:#}"));
                }
                dbs.push(r?);
            }
            None => say("PostgreSQL skipped (no --postgres-url)"),
        }
        results["databases"] = json!(dbs);
        results["emulator_peak_rss_mib"] = json!(procs::vm_hwm_mib(tenant.proc.pid()).map(|r| r.0));
        tenant.proc.stop(Duration::from_secs(5));
    }

    if a.runs("identity") {
        say("SAML: verify_response in a loop");
        results["saml_verify"] = identity::saml_verify(&repo, &logs, a.saml_iterations)
            .await
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        say("OIDC: finish_callback against the node peer");
        results["oidc_callback"] = identity::oidc_callback(&repo, &logs, 30)
            .await
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    }
    if a.runs("mail") {
        say("mail: invitations through the outbox");
        let m = mail_and_acs(&a, &repo, &root, &logs).await?;
        results["mail"] = m["mail"].clone();
        results["saml_acs_http"] = m["saml_acs_http"].clone();
    }

    results["load_average_end"] = json!(procs::load_average());
    results["bench_seconds"] = json!(started.elapsed().as_secs_f64());
    std::fs::write(
        a.out_dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    write_report(&a, &results)?;
    say(&format!(
        "wrote {} and {}",
        a.out_dir.join("results.json").display(),
        a.doc.display()
    ));
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let result = match parse_args() {
        Ok(a) => run(a).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roster-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
