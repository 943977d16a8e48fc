//! `graph-emulator` binary: serves the emulated Entra ID token endpoint and Microsoft Graph
//! until Ctrl-C or SIGTERM.

use graph_emulator::{Config, Emulator};
use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: graph-emulator [--bind 127.0.0.1:8081] [--users N] [--groups G] \
[--memberships M] [--seed S] [--tenant-id GUID] [--tenant-domain DOMAIN] [--client-id GUID] \
[--client-secret SECRET] [--extension-app-id HEX32] [--page-cap N] [--delta-page-size N] \
[--token-lifetime SECS] [--delta-ttl SECS] [--throttle-ru N] [--workers N]";

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config {
        bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
        ..Config::default()
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None => {
                i += 1;
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
                (flag, v.clone())
            }
        };
        let num = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: '{v}' is not a number"))
        };
        match name {
            "--bind" => {
                c.bind = value
                    .parse()
                    .map_err(|_| format!("--bind: '{value}' is not host:port"))?
            }
            "--users" => c.users = num(&value)? as usize,
            "--groups" => c.groups = num(&value)? as usize,
            "--memberships" => c.memberships = num(&value)? as usize,
            "--seed" => c.seed = num(&value)?,
            "--tenant-id" => c.tenant_id = value,
            "--tenant-domain" => c.tenant_domain = value,
            "--client-id" => c.client_id = value,
            "--client-secret" => c.client_secret = value,
            "--extension-app-id" => c.extension_app_id = value,
            "--page-cap" => c.page_cap = num(&value)? as usize,
            "--delta-page-size" => c.delta_page_size = num(&value)? as usize,
            "--token-lifetime" => c.token_lifetime_secs = num(&value)?,
            "--delta-ttl" => c.delta_token_ttl_secs = num(&value)?,
            "--throttle-ru" => c.throttle_ru_per_10s = Some(num(&value)?),
            "--workers" => c.workers = num(&value)? as usize,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
        i += 1;
    }
    Ok(c)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let emulator = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("graph-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = emulator.config();
    println!(
        "graph-emulator listening on {} tenant_id={} tenant_domain={} client_id={} client_secret={} users={} groups={} memberships={}",
        emulator.base_url(),
        c.tenant_id,
        c.tenant_domain,
        c.client_id,
        c.client_secret,
        c.users,
        c.groups,
        c.memberships
    );
    shutdown_signal().await;
    emulator.stop().await;
    ExitCode::SUCCESS
}
