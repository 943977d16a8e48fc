//! The `roster` command line: serve, migrate, admin create, check-config.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use roster::auth::service::{CreateError, NewAdmin, create_admin_cli};
use roster::clock::{Clock, SystemClock};
use roster::config::{Settings, redact_url};
use roster::db::Db;
use roster::secrets::MasterKey;
use roster::startup::{Application, Options};
use secrecy::SecretString;

#[derive(Parser)]
#[command(
    name = "roster",
    version,
    about = "Roster: Entra ID user source and sign-in portal"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations, then serve the portal.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage admin accounts.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Check the configuration, the database and the master key, then exit.
    CheckConfig,
    /// Run directory sync rounds from the command line.
    Sync {
        /// Run one round of the configured source, then exit (0 on success).
        #[arg(long)]
        once: bool,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create an admin account. The password is read from standard input when it is not a terminal.
    Create {
        /// The new admin's username.
        #[arg(long)]
        username: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    roster::telemetry::init(&cli.settings.log, cli.settings.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "Roster stopped with an error.");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command {
        Command::Serve => {
            let app =
                Application::build(&settings, Arc::new(SystemClock), Options::production()).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            settings.validate()?;
            let db = Db::connect(&settings.database_url()).await?;
            db.migrate().await?;
            tracing::info!(backend = db.backend.name(), "Database migrations applied.");
            db.close().await;
            Ok(())
        }
        Command::Admin {
            action: AdminAction::Create { username },
        } => create_admin(&settings, username).await,
        Command::CheckConfig => check_config(&settings).await,
        Command::Sync { once } => {
            if !once {
                anyhow::bail!("use `roster sync --once`; `roster serve` runs sync on its interval");
            }
            sync_once(&settings).await
        }
    }
}

fn read_password() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password (at least 12 characters): ")?;
        let second = rpassword::prompt_password("Repeat the password: ")?;
        if first != second {
            anyhow::bail!("the two passwords differ; nothing was created");
        }
        Ok(SecretString::from(first))
    } else {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf)?;
        let line = buf.lines().next().unwrap_or_default().to_owned();
        Ok(SecretString::from(line))
    }
}

async fn create_admin(settings: &Settings, username: String) -> anyhow::Result<()> {
    settings.validate()?;
    let password = read_password()?;
    let db = Db::connect(&settings.database_url()).await?;
    db.migrate().await?;
    let input = NewAdmin {
        username,
        password,
        confirm: None,
    };
    let result = create_admin_cli(&db, SystemClock.now_ms(), input).await;
    db.close().await;
    match result {
        Ok(admin) => {
            println!(
                "Created admin {} (id {}). Sign in at /login.",
                admin.username, admin.id
            );
            Ok(())
        }
        Err(CreateError::Invalid(errors)) => {
            let msg = errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ");
            anyhow::bail!("nothing was created: {msg}")
        }
        Err(CreateError::SetupClosed) => anyhow::bail!("nothing was created"),
        Err(CreateError::Unexpected(e)) => Err(e),
    }
}

async fn check_config(settings: &Settings) -> anyhow::Result<()> {
    settings.validate()?;
    println!("bind:        {}", settings.bind);
    println!("database:    {}", redact_url(&settings.database_url()));
    println!("data dir:    {}", settings.data_dir.display());
    let db = Db::connect(&settings.database_url()).await?;
    println!("database:    reachable ({})", db.backend.name());
    let ready = db.is_ready().await.unwrap_or(false);
    println!(
        "migrations:  {}",
        if ready {
            "up to date"
        } else {
            "pending (run `roster migrate` or start `roster serve`)"
        }
    );
    db.close().await;
    let key_path = settings.master_key_path();
    if key_path.exists() {
        MasterKey::load_or_create(&key_path)?;
        println!("master key:  {} (readable)", key_path.display());
    } else {
        println!(
            "master key:  {} (will be generated on first start)",
            key_path.display()
        );
    }
    println!("configuration is valid");
    Ok(())
}

async fn sync_once(settings: &Settings) -> anyhow::Result<()> {
    use roster::sync::service::{RoundDeps, Trigger, run_round};
    settings.validate()?;
    let db = Db::connect(&settings.database_url()).await?;
    db.migrate().await?;
    let master_key = MasterKey::load_or_create(&settings.master_key_path())?;
    let clock: roster::clock::SharedClock = Arc::new(SystemClock);
    let sync = roster::sync::SyncContext::default();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(roster::shutdown::listen(cancel.clone()));
    let base_url = settings.base_url_for(settings.bind_addr()?)?;
    let deps = RoundDeps {
        db: &db,
        clock: &clock,
        master_key: &master_key,
        sync: &sync,
        cancel: &cancel,
        base_url: &base_url,
    };
    let result = run_round(&deps, Trigger::Cli).await;
    db.close().await;
    let summary = result?;
    let c = &summary.counters;
    println!(
        "Sync round {} ({}) succeeded: {} users ({} added, {} updated, {} not synced), {} groups ({} added, {} updated, {} not synced), memberships {} added / {} removed, {} pages.",
        summary.run_id,
        summary.kind,
        c.users_seen,
        c.users_added,
        c.users_updated,
        c.users_not_synced,
        c.groups_seen,
        c.groups_added,
        c.groups_updated,
        c.groups_not_synced,
        c.memberships_added,
        c.memberships_removed,
        c.pages
    );
    Ok(())
}
