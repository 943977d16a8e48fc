//! The test harness: `spawn_app()` starts a real Roster on port 0 with its own fresh database.

use std::path::PathBuf;
use std::sync::Arc;

use reqwest::Response;
use reqwest::header::LOCATION;
use roster::auth::service::{NewAdmin, create_admin_cli};
use roster::clock::{Clock, OffsetClock};
use roster::config::Settings;
use roster::db::{Backend, Db};
use roster::startup::{Application, Options};
use secrecy::SecretString;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

pub const ADMIN_USER: &str = "alice";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery";

pub struct TestApp {
    pub address: String,
    pub setup_link: Option<String>,
    pub clock: Arc<OffsetClock>,
    pub db: Db,
    pub state: roster::web::AppState,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    cancel: CancellationToken,
    _tmp: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        roster::telemetry::init("debug", roster::config::LogFormat::Text);
    }
}

/// Where markers for `.ci/run` go (it checks that the PostgreSQL half really ran).
fn marker_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-backends")
}

/// A fresh database URL: a SQLite file in `dir`, or a new PostgreSQL database when
/// `ROSTER_TEST_POSTGRES_URL` is set.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var("ROSTER_TEST_POSTGRES_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!("roster_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                panic!(
                    "ROSTER_TEST_POSTGRES_URL is set but PostgreSQL does not answer at it ({e}). Start PostgreSQL \
                     (pg_ctlcluster 15 main start) or unset the variable to test on SQLite only."
                )
            });
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            std::fs::create_dir_all(marker_dir()).ok();
            std::fs::write(marker_dir().join("postgres"), b"ran").ok();
            let mut url = url::Url::parse(&admin_url).expect("ROSTER_TEST_POSTGRES_URL is a URL");
            url.set_path(&name);
            url.to_string()
        }
        _ => {
            std::fs::create_dir_all(marker_dir()).ok();
            std::fs::write(marker_dir().join("sqlite"), b"ran").ok();
            format!("sqlite://{}", dir.join("roster.db").display())
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options {
        workers: Some(1),
        ..Default::default()
    })
    .await
}

/// Sync settings fast enough for tests: short backoff, short lease, quick ticks.
pub fn test_sync_context() -> roster::sync::SyncContext {
    roster::sync::SyncContext {
        policy: roster::sync::graph::RetryPolicy {
            max_attempts: 4,
            base_delay: std::time::Duration::from_millis(50),
            max_delay: std::time::Duration::from_millis(400),
            max_retry_after: std::time::Duration::from_secs(5),
            request_timeout: std::time::Duration::from_secs(5),
            connect_timeout: std::time::Duration::from_secs(2),
        },
        lease_ms: 3_000,
        tick: std::time::Duration::from_millis(200),
        ..Default::default()
    }
}

pub async fn spawn_app_with(mut options: Options) -> TestApp {
    init_logs();
    if options.sync.is_none() {
        options.sync = Some(test_sync_context());
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database_url(tmp.path()).await;
    let mut settings = Settings::for_data_dir(tmp.path().to_path_buf());
    settings.database_url = Some(database_url.clone());
    let clock = OffsetClock::new();
    let app = Application::build(&settings, clock.clone(), options)
        .await
        .expect("the app starts");
    let port = app.port();
    let setup_link = app.setup_link().map(str::to_owned);
    let db = app.state().db.clone();
    let state = app.state().clone();
    let cancel = app.cancel_token();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        setup_link,
        clock,
        db,
        state,
        database_url,
        data_dir: tmp.path().to_path_buf(),
        client,
        cancel,
        _tmp: tmp,
    }
}

/// Pulls the CSRF token out of a page.
pub fn csrf_token_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("page has a CSRF field") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

pub fn assert_redirect_to(resp: &Response, location: &str) {
    assert_eq!(
        resp.status().as_u16(),
        303,
        "expected a 303 redirect to {location}"
    );
    assert_eq!(
        resp.headers().get(LOCATION).unwrap().to_str().unwrap(),
        location
    );
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A second browser: its own cookie jar.
    pub fn new_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_html(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// A CSRF token for this client's session: from the sign-in page, or from the dashboard when the
    /// sign-in page sends a signed-in admin there.
    pub async fn csrf(&self) -> String {
        let resp = self.get("/login").await;
        if resp.status().as_u16() == 303 {
            return csrf_token_in(&self.get_html("/admin").await);
        }
        csrf_token_in(&resp.text().await.unwrap())
    }

    /// POSTs a form exactly as given (no token added).
    pub async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// POSTs a form with this session's CSRF token.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let token = self.csrf().await;
        let mut all: Vec<(&str, &str)> = form.to_vec();
        all.push(("csrf_token", &token));
        self.post_raw(path, &all).await
    }

    pub async fn create_admin(&self, username: &str, password: &str) {
        create_admin_cli(
            &self.db,
            self.clock.now_ms(),
            NewAdmin {
                username: username.into(),
                password: SecretString::from(password),
                confirm: None,
            },
        )
        .await
        .expect("admin created");
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post_form("/login", &[("username", username), ("password", password)])
            .await
    }

    /// Creates the standard admin and signs this client in.
    pub async fn login_as_admin(&self) {
        self.create_admin(ADMIN_USER, ADMIN_PASSWORD).await;
        let resp = self.login(ADMIN_USER, ADMIN_PASSWORD).await;
        assert_redirect_to(&resp, "/admin");
    }

    pub async fn audit_actions(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT action FROM audit_events ORDER BY at, id")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub fn backend(&self) -> Backend {
        self.db.backend
    }
}

/// When ROSTER_TEST_POSTGRES_URL is set, tests must really run on PostgreSQL.
#[tokio::test]
async fn runs_on_the_requested_backend() {
    let app = spawn_app().await;
    let want = match std::env::var("ROSTER_TEST_POSTGRES_URL") {
        Ok(v) if !v.is_empty() => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    assert_eq!(app.backend(), want);
    assert!(app.db.is_ready().await.unwrap());
}

/// A second app instance on `first`'s database and master key (two instances sharing one database; on
/// SQLite both open the same file). Its own clock, data folder and options.
pub async fn spawn_app_sharing(first: &TestApp, options: Options) -> TestApp {
    init_logs();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_data_dir(tmp.path().to_path_buf());
    settings.database_url = Some(first.database_url.clone());
    settings.master_key_file = Some(first.data_dir.join("master.key"));
    let clock = OffsetClock::new();
    let app = Application::build(&settings, clock.clone(), options)
        .await
        .expect("the second app starts");
    let port = app.port();
    let state = app.state().clone();
    let cancel = app.cancel_token();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        setup_link: None,
        clock,
        db: state.db.clone(),
        state,
        database_url: first.database_url.clone(),
        data_dir: tmp.path().to_path_buf(),
        client: first.new_client(),
        cancel,
        _tmp: tmp,
    }
}
