//! Owns start-up and the run loop: config → database → migrations → master key → listener →
//! first-run link → server and background work, one log line per step; graceful stop on a signal.

use std::net::TcpListener;
use std::time::Duration;

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use anyhow::{Context, anyhow};
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::auth::session_store::{DbSessionStore, IDLE_TIMEOUT};
use crate::auth::{self};
use crate::clock::{MINUTE, SharedClock};
use crate::config::Settings;
use crate::db::Db;
use crate::secrets::MasterKey;
use crate::web::{self as roster_web, AppState, Routes};

/// Knobs that tests set; production uses the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Start the background sync worker (tests usually run rounds themselves).
    pub start_workers: bool,
    /// Sync settings (retry policy, lease length, tick); default when `None`.
    pub sync: Option<crate::sync::SyncContext>,
    /// Mail settings (outbox worker timings, lease, backoff, SMTP timeouts); default when `None`.
    pub mail: Option<crate::mail::MailContext>,
    /// Identity settings (HTTP client, JWKS cache, housekeeping period); default when `None`.
    pub identity: Option<crate::identity::IdentityContext>,
}

impl Options {
    /// What `roster serve` uses.
    pub fn production() -> Self {
        Self {
            workers: None,
            start_workers: true,
            sync: None,
            mail: None,
            identity: None,
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    setup_link: Option<String>,
    cancel: CancellationToken,
    start_workers: bool,
}

impl Application {
    pub async fn build(
        settings: &Settings,
        clock: SharedClock,
        options: Options,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        tracing::info!(settings = ?settings, "Configuration loaded.");
        let db = Db::connect_mapped(&settings.database_url()).await?;
        tracing::info!(backend = db.backend.name(), "Connected to the database.");
        db.migrate().await?;
        tracing::info!("Database migrations applied.");
        let master_key = MasterKey::load_or_create(&settings.master_key_path())?;
        tracing::info!(path = %settings.master_key_path().display(), "Master key loaded.");
        let addr = settings.bind_addr()?;
        let listener = TcpListener::bind(addr).with_context(|| {
            format!("cannot listen on {addr}; is another program using the port? Set ROSTER_BIND to another address")
        })?;
        let local = listener.local_addr()?;
        let base_url = settings.base_url_for(local)?;
        tracing::info!(address = %local, base_url = base_url.as_str(), "Listening.");
        let setup_link = auth::service::issue_setup_link(&db, clock.now_ms(), &base_url).await?;
        if let Some(link) = &setup_link {
            tracing::info!(
                "No admin account exists yet. Open {link} within one hour to create the first one \
                 (or run `roster admin create --username NAME`)."
            );
        }
        let sync = options.sync.clone().unwrap_or_default();
        let mail = options.mail.clone().unwrap_or_default();
        let identity = options.identity.clone().unwrap_or_default();
        let state = AppState {
            db,
            clock,
            base_url,
            master_key,
            sync,
            mail,
            identity,
        };
        let metrics = PrometheusMetricsBuilder::new("roster")
            .endpoint("/metrics")
            .mask_unmatched_patterns("UNKNOWN")
            .build()
            .map_err(|e| anyhow!("setting up metrics: {e}"))?;
        let server = build_server(listener, state.clone(), metrics, &options)?;
        tracing::info!("HTTP server started.");
        Ok(Self {
            port: local.port(),
            server,
            state,
            setup_link,
            cancel: CancellationToken::new(),
            start_workers: options.start_workers,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The first-run link printed at start, when no admin existed.
    pub fn setup_link(&self) -> Option<&str> {
        self.setup_link.as_deref()
    }

    /// A token that stops the server when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Serves until SIGINT/SIGTERM (or the cancel token), then stops gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            state,
            cancel,
            start_workers,
            ..
        } = self;
        let handle = server.handle();
        let maintenance = tokio::spawn(maintenance_loop(state.clone(), cancel.clone()));
        let sync_worker = start_workers
            .then(|| tokio::spawn(crate::sync::worker::run(state.clone(), cancel.clone())));
        let outbox_worker = start_workers
            .then(|| tokio::spawn(crate::mail::worker::run(state.clone(), cancel.clone())));
        let identity_worker = start_workers
            .then(|| tokio::spawn(crate::identity::worker::run(state.clone(), cancel.clone())));
        let signals = tokio::spawn(crate::shutdown::listen(cancel.clone()));
        let mut server = tokio::spawn(server);
        tokio::select! {
            res = &mut server => {
                cancel.cancel();
                res.context("the HTTP server task failed")?.context("the HTTP server stopped")?;
                tracing::info!("HTTP server exited.");
            }
            () = cancel.cancelled() => {
                tracing::info!("Stopping the HTTP server (up to 10 s for requests in flight).");
                handle.stop(true).await;
                let _ = server.await;
            }
        }
        signals.abort();
        let _ = maintenance.await;
        if let Some(w) = outbox_worker {
            // It finishes the mail in flight; claimed rows it did not try are given back.
            let _ = w.await;
        }
        if let Some(w) = identity_worker {
            let _ = w.await;
        }
        if let Some(w) = sync_worker {
            // The round in flight stops at its next page boundary; what it committed stays.
            let _ = w.await;
        }
        state.db.close().await;
        tracing::info!("Stopped.");
        Ok(())
    }
}

/// The largest request body a form may have.
pub const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

fn build_server(
    listener: TcpListener,
    state: AppState,
    metrics: PrometheusMetrics,
    options: &Options,
) -> anyhow::Result<Server> {
    let cookie_key = Key::from(&state.master_key.derive("session-cookie"));
    let secure = state.base_url.is_https();
    let store = DbSessionStore::new(state.db.clone(), state.clock.clone());
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        let sessions = SessionMiddleware::builder(store.clone(), cookie_key.clone())
            .cookie_name("roster_session".to_owned())
            .cookie_secure(secure)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .session_lifecycle(
                BrowserSession::default()
                    .state_ttl(actix_web::cookie::time::Duration::milliseconds(
                        IDLE_TIMEOUT,
                    ))
                    .state_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
            )
            .build();
        // The last `wrap` runs first: log → metrics → headers → session → NUL guard → CSRF → admin guard → handler.
        App::new()
            .app_data(data.clone())
            // Forms may carry IdP metadata (AD FS documents run to tens of kB) or a signed SAML response;
            // anything larger than this is refused with 413 before a handler runs.
            .app_data(web::FormConfig::default().limit(MAX_FORM_BYTES))
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .configure(|cfg| roster_web::mount(&mut Routes::mounting(cfg)))
            .default_service(web::to(not_found))
            .wrap(from_fn(roster_web::guard::require_admin))
            .wrap(from_fn(roster_web::csrf::protect))
            .wrap(from_fn(roster_web::input_guard::reject_nul))
            .wrap(sessions)
            .wrap(roster_web::security_headers())
            .wrap(metrics.clone())
            .wrap(TracingLogger::default())
    })
    .disable_signals()
    .shutdown_timeout(10);
    if let Some(n) = options.workers {
        server = server.workers(n);
    }
    Ok(server.listen(listener)?.run())
}

async fn not_found() -> actix_web::HttpResponse {
    crate::error::ErrorPage::response(
        actix_web::http::StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address. Check the link, or go back to the dashboard.",
        None,
    )
}

/// Periodic housekeeping: expired sessions and old login attempts.
async fn maintenance_loop(state: AppState, cancel: CancellationToken) {
    loop {
        if let Err(e) = auth::service::cleanup(&state.db, state.clock.now_ms()).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "Session clean-up failed; will retry."
            );
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(u64::try_from(10 * MINUTE).unwrap_or(600_000))) => {}
        }
    }
}
