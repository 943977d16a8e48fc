//! Bootstrap configuration: flags with `ROSTER_*` environment fallbacks, validated once at start.
//! Runtime settings (Entra ID, IdPs, SMTP) live in the database, never here.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use url::Url;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags shared by every subcommand.
#[derive(Clone, Args)]
pub struct Settings {
    /// Database URL: `sqlite://PATH` (default `sqlite://<data dir>/roster.db`) or `postgres://…`.
    #[arg(long, env = "ROSTER_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Address and port the web server listens on (port 0 picks a free one).
    #[arg(
        long,
        env = "ROSTER_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: String,

    /// Public URL of this portal, used in links, SAML and OIDC (default `http://<bind>`).
    #[arg(long, env = "ROSTER_BASE_URL", global = true)]
    pub base_url: Option<String>,

    /// Folder for the SQLite file and the generated master key.
    #[arg(long, env = "ROSTER_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// Master key file (32 bytes) used to encrypt secrets at rest (default `<data dir>/master.key`).
    #[arg(long, env = "ROSTER_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,

    /// Log filter, in `tracing` EnvFilter syntax.
    #[arg(long, env = "ROSTER_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url()))
            .field("bind", &self.bind)
            .field("base_url", &self.base_url)
            .field("data_dir", &self.data_dir)
            .field("master_key_file", &self.master_key_path())
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Settings {
    /// Settings for tests and embedding: everything default, data in `data_dir`.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            database_url: None,
            bind: "127.0.0.1:0".into(),
            base_url: None,
            data_dir,
            master_key_file: None,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }

    /// The database URL, defaulting to a SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("roster.db").display()))
    }

    /// Where the master key is read from or generated.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The listen address, checked.
    pub fn bind_addr(&self) -> anyhow::Result<SocketAddr> {
        self.bind.parse().with_context(|| {
            format!(
                "ROSTER_BIND={:?} is not an address and port such as 127.0.0.1:8080",
                self.bind
            )
        })
    }

    /// The public base URL without a trailing slash, given the port actually bound.
    pub fn base_url_for(&self, bound: SocketAddr) -> anyhow::Result<BaseUrl> {
        match &self.base_url {
            Some(raw) => BaseUrl::parse(raw),
            None => BaseUrl::parse(&format!("http://{bound}")),
        }
    }

    /// Checks everything that can be checked without touching the network.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.bind_addr()?;
        crate::db::Backend::from_url(&self.database_url())?;
        if let Some(raw) = &self.base_url {
            BaseUrl::parse(raw)?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .with_context(|| format!("ROSTER_LOG={:?} is not a valid log filter", self.log))?;
        Ok(())
    }
}

/// The portal's public URL, e.g. `https://roster.example.com` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = Url::parse(raw).with_context(|| {
            format!("ROSTER_BASE_URL={raw:?} is not a URL such as https://roster.example.com")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("ROSTER_BASE_URL={raw:?} must start with http:// or https://");
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            bail!("ROSTER_BASE_URL={raw:?} must not carry a query, fragment or credentials");
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether cookies must be marked Secure.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// Joins a path that starts with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// Hides the password in a URL such as `postgres://user:secret@host/db`.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_drops_trailing_slash_and_knows_https() {
        let b = BaseUrl::parse("https://roster.example.com/").unwrap();
        assert_eq!(b.as_str(), "https://roster.example.com");
        assert!(b.is_https());
        assert_eq!(b.join("/setup"), "https://roster.example.com/setup");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("http://x/?a=1").is_err());
    }

    #[test]
    fn database_password_is_redacted() {
        assert_eq!(
            redact_url("postgres://roster:hunter2@db:5432/roster"),
            "postgres://roster:***@db:5432/roster"
        );
        let s = Settings {
            database_url: Some("postgres://roster:hunter2@db/roster".into()),
            ..Settings::for_data_dir("d".into())
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn sqlite_defaults_to_the_data_dir() {
        let s = Settings::for_data_dir("/var/lib/roster".into());
        assert_eq!(s.database_url(), "sqlite:///var/lib/roster/roster.db");
        assert_eq!(
            s.master_key_path(),
            PathBuf::from("/var/lib/roster/master.key")
        );
    }
}
