//! Owns the database connection: backend choice from the URL, pool set-up, migrations and readiness.
//!
//! SQL is written once over `sqlx::Any` (see docs/architecture.md): TEXT ids, BIGINT epoch-millisecond
//! times and 0/1 flags, `$n` placeholders, no database-side clocks.

pub mod ids;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

/// The migrations of each backend, embedded in the binary.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => bail!(
                "ROSTER_DATABASE_URL must start with sqlite:// or postgres:// (got scheme {scheme:?})"
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// A connection pool and the backend behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// `PRAGMA mmap_size` of the pooled SQLite connections (0: no memory map).
    mmap_bytes: i64,
    memo: Arc<Memo>,
}

/// How long a memoised value may be shown after another process changed what it was read from.
pub const MEMO_TTL: Duration = Duration::from_secs(2);

/// Values that busy pages read on every request and that rarely change: the Users page's total (a 1.5 ms
/// index walk on SQLite and more on PostgreSQL at 100,000 users) and its custom attribute names (one more
/// statement per page view). An entry lives at most `MEMO_TTL`, and this process forgets it as soon as it
/// changes what it was read from (`Db::forget`).
#[derive(Default)]
struct Memo(Mutex<MemoState>);

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

#[derive(Default)]
struct MemoState {
    /// Bumped by every `forget`: a value read before one is not remembered.
    generation: u64,
    values: HashMap<&'static str, (Instant, Arc<dyn std::any::Any + Send + Sync>)>,
}

/// The Any driver needs its drivers registered once per process.
fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

impl Db {
    /// Connects, creating the SQLite file and its folder when missing. SQLite reads through each connection's
    /// page cache; for the web server, see [`Db::connect_mapped`].
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, 0).await
    }

    /// Connects like [`Db::connect`], with SQLite connections that read the file through a memory map
    /// (`SQLITE_MMAP_BYTES`), for the web server. Page views on SQLite read scattered rows (a search's
    /// matches, a filter's walk along the sort index); through the map they read the operating system's cache
    /// in place, shared by the pool's connections, instead of each copying pages into its own 8 MiB cache.
    /// Measured at 100,000 users with 64 connections: search 659 → 851 req/s, filter 1,431 → 2,005, list
    /// ≈ 3,600 → 4,000 (docs/benchmarks.md). The mapped pages count in the process's resident size once per
    /// connection that touched them (they are the file's cache, shared and reclaimable); the command-line sync
    /// keeps reading without a map.
    pub async fn connect_mapped(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, SQLITE_MMAP_BYTES).await
    }

    async fn connect_with(url: &str, mmap_bytes: i64) -> anyhow::Result<Self> {
        install_drivers();
        let backend = Backend::from_url(url)?;
        let redacted = crate::config::redact_url(url);
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("invalid database URL {redacted}"))?
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings a connection before handing it out; a SQLite connection is a file handle that cannot
            // go stale, and the ping was one more hand-off to its thread per query. PostgreSQL keeps it: a
            // server restart leaves broken connections in the pool.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; NORMAL is durable with WAL.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                        set_page_cache(conn, SQLITE_CACHE_KIB).await?;
                        set_mmap(conn, mmap_bytes).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .with_context(|| format!("cannot connect to the database at {redacted}"))?;
        Ok(Self {
            pool,
            backend,
            mmap_bytes,
            memo: Arc::default(),
        })
    }

    /// The count named `key`, from the memo when fresh, else from `count` (and remembered).
    pub async fn memo_count<F>(&self, key: &'static str, count: F) -> sqlx::Result<i64>
    where
        F: Future<Output = sqlx::Result<i64>>,
    {
        self.memo(key, count).await
    }

    /// The value named `key`, from the memo when fresh, else from `read` (and remembered). One key holds one
    /// type of value.
    pub async fn memo<T, E, F>(&self, key: &'static str, read: F) -> Result<T, E>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<T, E>>,
    {
        let lock = || {
            self.memo
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let generation = {
            let m = lock();
            if let Some((at, v)) = m.values.get(key)
                && at.elapsed() < MEMO_TTL
                && let Some(v) = v.downcast_ref::<T>()
            {
                return Ok(v.clone());
            }
            m.generation
        };
        let started = Instant::now();
        let v = read.await?;
        let mut m = lock();
        if m.generation == generation {
            m.values.insert(key, (started, Arc::new(v.clone())));
        }
        Ok(v)
    }

    /// Forgets the memoised value `key` (this process just changed what it was read from; call it after the
    /// change is committed).
    pub fn forget(&self, key: &'static str) {
        let mut m = self
            .memo
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.generation += 1;
        m.values.remove(key);
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.backend
            .migrator()
            .run(&self.pool)
            .await
            .context("applying database migrations")
    }

    /// True when the database answers and every embedded migration has been applied.
    pub async fn is_ready(&self) -> anyhow::Result<bool> {
        let applied: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = $1")
                .bind(true)
                .fetch_all(&self.pool)
                .await
                .context("reading the migration table")?;
        let applied: BTreeSet<i64> = applied.into_iter().map(|(v,)| v).collect();
        Ok(self
            .backend
            .migrator()
            .iter()
            .all(|m| applied.contains(&m.version)))
    }

    /// Starts a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): a transaction
    /// that reads first and writes later would otherwise fail with SQLITE_BUSY_SNAPSHOT when another
    /// connection wrote in between, and busy_timeout cannot help with that.
    pub async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Starts a transaction, as `begin`, on a connection the caller holds. A sync round writes all its
    /// pages through one connection: the pool hands connections out in turn, and on SQLite a connection's
    /// page cache is thrown away whenever another connection has written since its last use.
    pub async fn begin_on<'c>(
        &self,
        conn: &'c mut sqlx::pool::PoolConnection<sqlx::Any>,
    ) -> sqlx::Result<sqlx::Transaction<'c, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => sqlx::Connection::begin_with(&mut **conn, "BEGIN IMMEDIATE").await,
            Backend::Postgres => sqlx::Connection::begin(&mut **conn).await,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Makes sure the SQLite file's folder exists and that the file is created on first use.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
    }
    let mut url = format!("sqlite://{path}");
    if query.is_empty() {
        url.push_str("?mode=rwc");
    } else {
        url.push('?');
        url.push_str(query);
        if !query.contains("mode=") {
            url.push_str("&mode=rwc");
        }
    }
    Ok(url)
}

/// True when the error is a unique-constraint violation, on either backend.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Rows per multi-row statement for `binds_per_row` bound values each. On SQLite, sqlx looks up each
/// parameter's name with `sqlite3_bind_parameter_name`, a linear scan of the statement's parameters, so the
/// cost of one statement grows with the square of its parameter count (measured: 44 % of a 100,000-user
/// sync's CPU at 8,000 parameters per statement, docs/benchmarks.md); about 250 parameters keep that
/// negligible. PostgreSQL binds by position and takes up to 65,535; large statements save round trips there.
pub fn rows_per_statement(conn: &sqlx::AnyConnection, binds_per_row: usize) -> usize {
    let budget = if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        250
    } else {
        8_000
    };
    (budget / binds_per_row.max(1)).max(1)
}

/// SQLite page cache of a pooled connection, in KiB (SQLite's default is 2 MiB).
pub const SQLITE_CACHE_KIB: i64 = 8 * 1024;

/// Sets a connection's page cache (SQLite; nothing on PostgreSQL, whose cache is the server's). Lowering
/// it frees the pages above the new size.
async fn set_page_cache(conn: &mut sqlx::AnyConnection, kib: i64) -> sqlx::Result<()> {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        conn.execute(format!("PRAGMA cache_size = -{}", kib.max(0)).as_str())
            .await?;
    }
    Ok(())
}

/// How much of the SQLite file a connection of [`Db::connect_mapped`] reads through a memory map.
pub const SQLITE_MMAP_BYTES: i64 = 1 << 30;

/// Sets a connection's memory map size (SQLite only; 0 turns it off and unmaps).
async fn set_mmap(conn: &mut sqlx::AnyConnection, bytes: i64) -> sqlx::Result<()> {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        conn.execute(format!("PRAGMA mmap_size = {}", bytes.max(0)).as_str())
            .await?;
    }
    Ok(())
}

/// How a connection that a sync round writes through is set up, on SQLite (nothing on PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// As the pool's other connections are.
    Pooled,
    /// A round's writes. A full round inserts into about ten indexes per user on random keys, so every commit
    /// rewrites most index pages; measured at 100,000 users (docs/benchmarks.md): with the pool's cache,
    /// index pages were read back from the file for every batch, and with SQLite's checkpoint every 4 MB of
    /// WAL, the database file was rewritten (and flushed) about as often as the WAL. So the connection keeps
    /// a 48 MiB cache and checkpoints every 64 MiB of WAL (the WAL file is then up to that size until the next
    /// checkpoint truncates it back), and reads without a memory map, which would map the whole file into
    /// the round's memory.
    BulkWrite,
    /// Building indexes after a first import: SQLite sorts each index in up to a page cache's worth of memory,
    /// so the pool's cache (with the round's 48 MiB the process passed 150 MB at 100,000 users), and no map.
    IndexBuild,
}

impl Db {
    /// Sets up `conn` (one of this pool's) for `tuning`; see [`Tuning`].
    pub async fn tune(&self, conn: &mut sqlx::AnyConnection, tuning: Tuning) -> sqlx::Result<()> {
        if !conn.backend_name().eq_ignore_ascii_case("sqlite") {
            return Ok(());
        }
        let (cache_kib, mmap, checkpoint_pages) = match tuning {
            Tuning::Pooled => (SQLITE_CACHE_KIB, self.mmap_bytes, 1000),
            Tuning::BulkWrite => (48 * 1024, 0, 16384),
            Tuning::IndexBuild => (SQLITE_CACHE_KIB, 0, 1000),
        };
        set_mmap(conn, mmap).await?;
        set_page_cache(conn, cache_kib).await?;
        conn.execute(format!("PRAGMA wal_autocheckpoint = {checkpoint_pages}").as_str())
            .await?;
        Ok(())
    }
}

/// Lets the current transaction commit without waiting for its WAL flush on PostgreSQL
/// (`SET LOCAL synchronous_commit = off`); nothing on SQLite, where `synchronous = NORMAL` already commits
/// without a flush in WAL mode. Only for work that the next step repeats if a crash loses it: a sync round's
/// page writes, whose round is finished (and its delta links stored) by a normal commit, which flushes the
/// WAL up to and including every page before it.
pub async fn relax_commit(conn: &mut sqlx::AnyConnection) -> sqlx::Result<()> {
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        conn.execute("SET LOCAL synchronous_commit = off").await?;
    }
    Ok(())
}

/// Refreshes the planner statistics of `tables` after bulk changes, on PostgreSQL: right after a first import
/// it has none (autovacuum analyzes only after its next nap, up to a minute later), and without them it chose
/// sequential scans plus sorts for the Users pages (a filter 65 ms, a deep page 84 ms at 100,000 users, against
/// 6 and 0.6 ms once analyzed). Nothing on SQLite, whose planner already uses the indexes without statistics
/// and whose `ANALYZE` would read every index.
pub async fn refresh_statistics(pool: &sqlx::AnyPool, tables: &[&str]) -> sqlx::Result<()> {
    let mut conn = pool.acquire().await?;
    if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        for t in tables {
            conn.execute(format!("ANALYZE {t}").as_str()).await?;
        }
    }
    Ok(())
}

/// Booleans are stored as 0/1 BIGINT on both backends.
pub fn flag(b: bool) -> i64 {
    i64::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_comes_from_the_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://data/roster.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        let err = Backend::from_url("mysql://h/db").unwrap_err().to_string();
        assert!(
            err.contains("sqlite://") && err.contains("postgres://"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn memoised_values_are_reused_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("m.db").display()))
            .await
            .unwrap();
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = |names: &'static [&'static str]| {
            let reads = &reads;
            async move {
                reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(names.to_vec())
            }
        };
        let first = db.memo("names", read(&["a"])).await.unwrap();
        let again = db.memo("names", read(&["b"])).await.unwrap();
        assert_eq!(
            (first, again),
            (vec!["a"], vec!["a"]),
            "the second read is the memo's"
        );
        db.forget("names");
        assert_eq!(db.memo("names", read(&["c"])).await.unwrap(), vec!["c"]);
        assert_eq!(db.memo_count("total", async { Ok(7) }).await.unwrap(), 7);
        assert_eq!(db.memo_count("total", async { Ok(8) }).await.unwrap(), 7);
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "a fresh memo runs no read"
        );
    }

    #[test]
    fn sqlite_url_gets_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/roster.db");
        let url = prepare_sqlite_url(&format!("sqlite://{}", file.display())).unwrap();
        assert!(url.ends_with("roster.db?mode=rwc"), "{url}");
        assert!(dir.path().join("a/b").is_dir());
    }

    /// The two migration folders must hold the same file names (STYLE.md §6).
    #[test]
    fn migration_folders_hold_the_same_names() {
        let names = |dir: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let sqlite = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"));
        let postgres = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
        let versions = |m: &Migrator| {
            m.iter()
                .map(|x| (x.version, x.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS));
    }
}
