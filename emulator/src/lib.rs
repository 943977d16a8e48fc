//! A Microsoft Entra ID token endpoint and Microsoft Graph v1.0 directory emulator.
//!
//! One HTTP server (actix-web) serves both the authority and Graph:
//! - token: `POST {base}/{tenant}/oauth2/v2.0/token` (client credentials, form secret or Basic)
//! - Graph: `{base}/v1.0/users`, `/v1.0/groups`, `/v1.0/groups/{id}/members[/microsoft.graph.user|group]`,
//!   `/v1.0/groups/{id}/transitiveMembers`, `/v1.0/users/$count`, `/v1.0/users/{id|upn}`,
//!   `/v1.0/groups/{id}`, `/v1.0/users/delta`, `/v1.0/groups/delta`
//! - control: `{base}/_emulator/...` (see [`control`](crate::control) module docs)
//!
//! Use it in-process with [`Emulator::start`], or run the `graph-emulator` binary.

mod control;
mod generate;
mod graph;
mod model;
mod objects;
mod query;
mod server;
mod token;
mod types;
mod util;

pub use types::{
    DEFAULT_MEMBERS_SLICE, Endpoint, Fault, FaultRule, Group, MemberKind, Mode, ModeKind, Modes,
    Mutation, RecordedRequest, Truth, User,
};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use server::Shared;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;

/// Emulator configuration. Build it with struct-update syntax from [`Config::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub seed: u64,
    /// Generated users.
    pub users: usize,
    /// Generated groups.
    pub groups: usize,
    /// Generated distinct (group, user) direct memberships, spread unevenly over the groups;
    /// a few nested groups are added when `groups >= 4`.
    pub memberships: usize,
    /// Tenant GUID.
    pub tenant_id: String,
    /// Users' UPN/mail domain; also accepted as the tenant in the token URL.
    pub tenant_domain: String,
    /// Application (client) id GUID.
    pub client_id: String,
    pub client_secret: String,
    /// 32 hex chars: directory extensions are `extension_<id>_<name>`.
    pub extension_app_id: String,
    /// `expires_in` of issued tokens (overridden by `Mode::TokenExpiresIn`).
    pub token_lifetime_secs: u64,
    /// deltaLinks older than this give 400 `syncStateNotFound`.
    pub delta_token_ttl_secs: u64,
    /// Server-side maximum page size for lists (simulate 120 or 500 caps).
    pub page_cap: usize,
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// Entries per delta page (default 200; a `$top` on the first delta call overrides it).
    pub delta_page_size: usize,
    /// List `$skiptoken`s older than this give 400 (default 1 hour).
    pub skiptoken_ttl_secs: u64,
    /// Token-bucket throttle in resource units per 10 s (None = off). When exhausted, Graph
    /// answers 429 with `Retry-After`; from 80 % usage `x-ms-throttle-limit-percentage` is sent.
    pub throttle_ru_per_10s: Option<u64>,
    /// actix worker threads (default 2).
    pub workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 1,
            users: 50,
            groups: 5,
            memberships: 120,
            tenant_id: "7d1f5c3e-2b4a-4c8e-9f60-1a2b3c4d5e6f".to_string(),
            tenant_domain: "contoso.example".to_string(),
            client_id: "3f8e2a1b-6c5d-4e7f-8a9b-0c1d2e3f4a5b".to_string(),
            client_secret: "emulator~secret.Value_0123456789".to_string(),
            extension_app_id: "b7d8e648520f41d3b9c0fdeb91768a0a".to_string(),
            token_lifetime_secs: 3600,
            delta_token_ttl_secs: 7 * 24 * 3600,
            page_cap: 999,
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            delta_page_size: 200,
            skiptoken_ttl_secs: 3600,
            throttle_ru_per_10s: None,
            workers: 2,
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::sync::Mutex<Option<ServerHandle>>,
}

/// A running emulator. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.base_url())
            .finish()
    }
}

fn spawn_server(shared: Arc<Shared>, listener: TcpListener) -> std::io::Result<ServerHandle> {
    let workers = shared.config.workers.max(1);
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .default_service(web::to(server::entry))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

impl Emulator {
    /// Generate the directory, bind, and spawn the server on the current tokio runtime.
    pub async fn start(config: Config) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(config.bind)?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let base_url = format!("http://{addr}");
        let now = util_now();
        let dir = generate::generate(&config, now);
        let shared = Arc::new(Shared::new(config, dir, base_url));
        let handle = spawn_server(shared.clone(), listener)?;
        Ok(Emulator {
            inner: Arc::new(Inner {
                shared,
                addr,
                server: tokio::sync::Mutex::new(Some(handle)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT`: both the authority and the Graph base.
    pub fn base_url(&self) -> String {
        self.inner.shared.base_url.clone()
    }

    /// `{base}/{tenant_id}/oauth2/v2.0/token`
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.base_url(),
            self.inner.shared.config.tenant_id
        )
    }

    /// `{base}/v1.0`
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url())
    }

    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// Snapshot of the current directory.
    pub fn truth(&self) -> Truth {
        self.inner.shared.dir().truth()
    }

    /// Apply a mutation; an invalid one is reported on stderr and ignored (see
    /// [`Emulator::try_mutate`]).
    pub fn mutate(&self, m: Mutation) {
        if let Err(e) = self.try_mutate(m) {
            eprintln!("graph-emulator: mutation rejected: {e}");
        }
    }

    /// Apply a mutation, or say why it is invalid (unknown id, duplicate membership, ...).
    pub fn try_mutate(&self, m: Mutation) -> Result<(), String> {
        let now = self.inner.shared.now_secs();
        self.inner.shared.dir_mut().apply(m, now, util::new_guid)
    }

    pub fn push_fault(&self, rule: FaultRule) {
        self.inner.shared.faults().push((rule, 0));
    }

    pub fn clear_faults(&self) {
        self.inner.shared.faults().clear();
    }

    /// Turn a mode on (`Mode::Off(kind)` / `Mode::Normal` turn modes off).
    pub fn set_mode(&self, mode: Mode) {
        self.inner.shared.modes_mut().apply(mode);
    }

    /// Current state of all modes.
    pub fn modes(&self) -> Modes {
        self.inner.shared.modes()
    }

    /// Every request received so far (except the control API), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.shared.requests().list.clone()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        self.inner.shared.requests().clear();
    }

    /// Move the emulator clock forward (token and delta-token expiry).
    pub fn advance_clock(&self, secs: u64) {
        self.inner.shared.advance_clock(secs);
    }

    /// Stop listening: new connections are refused, open ones are dropped.
    pub async fn pause(&self) {
        let handle = self.inner.server.lock().await.take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }

    /// Listen again on the same port (no-op when already listening).
    pub async fn resume(&self) -> std::io::Result<()> {
        let mut slot = self.inner.server.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.inner.addr)?;
        *slot = Some(spawn_server(self.inner.shared.clone(), listener)?);
        Ok(())
    }

    /// Stop the server for good (same as [`Emulator::pause`]; `resume` would restart it).
    pub async fn stop(&self) {
        self.pause().await;
    }
}

fn util_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
