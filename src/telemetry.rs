//! Owns logging: the subscriber set-up (text or JSON) and the default filter.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter actually used: the admin's, with sqlx kept quiet unless they mention it.
pub fn effective_filter(filter: &str) -> String {
    if filter.contains("sqlx") {
        filter.to_owned()
    } else {
        format!("{filter},sqlx=warn")
    }
}

/// Installs the global subscriber. Calling it again is harmless (tests start many apps).
pub fn init(filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_new(effective_filter(filter)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
