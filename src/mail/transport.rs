//! SMTP through lettre: builds the transport for the chosen security (none, STARTTLS, implicit TLS) with
//! timeouts, builds multipart/alternative (text + HTML) messages, and words SMTP errors for people.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{self, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::mail::model::{Security, SmtpSettings};

pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Why a mail did not go out, already in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The mail itself is unusable (bad address); retrying cannot help.
    #[error("{0}")]
    Message(String),
    /// The server could not be reached or the connection broke: later mails in a batch would fail too.
    #[error("{0}")]
    Connection(String),
    /// The server answered this mail with an error code.
    #[error("{0}")]
    Refused(String),
}

/// A transport for these settings with one connection. `password` is the opened secret, if any.
pub fn build(
    s: &SmtpSettings,
    password: Option<&SecretString>,
    timeout: Duration,
) -> Result<Transport, SendError> {
    build_pooled(s, password, timeout, 1)
}

/// A transport that keeps up to `connections` connections, for mails sent at once.
pub fn build_pooled(
    s: &SmtpSettings,
    password: Option<&SecretString>,
    timeout: Duration,
    connections: u32,
) -> Result<Transport, SendError> {
    let tls = |host: &str| {
        TlsParameters::new(host.to_owned())
            .map_err(|e| SendError::Connection(format!("Cannot set up TLS for {host}: {e}")))
    };
    let tls = match s.security {
        Security::None => Tls::None,
        Security::StartTls => Tls::Required(tls(&s.host)?),
        Security::Tls => Tls::Wrapper(tls(&s.host)?),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
        .port(s.port)
        .tls(tls)
        .timeout(Some(timeout))
        // One connection per lane of a pass; idle ones close quickly so a restarted server is seen.
        .pool_config(
            PoolConfig::new()
                .max_size(connections.max(1))
                .idle_timeout(Duration::from_secs(5)),
        );
    if let (Some(user), Some(pass)) = (s.username.as_deref(), password) {
        b = b.credentials(Credentials::new(
            user.to_owned(),
            pass.expose_secret().to_owned(),
        ));
    }
    Ok(b.build())
}

/// The message: From the settings, To the mail's recipient, text and HTML as multipart/alternative.
/// `message_id` lets a receiving system recognise a repeat of the same outbox row.
pub fn message(
    s: &SmtpSettings,
    to_address: &str,
    to_name: Option<&str>,
    subject: &str,
    text: &str,
    html: &str,
    message_id: Option<&str>,
) -> Result<Message, SendError> {
    let from: Mailbox = Mailbox::new(
        (!s.from_name.is_empty()).then(|| s.from_name.clone()),
        s.from_address
            .parse()
            .map_err(|e| SendError::Message(format!("The From address is not valid: {e}.")))?,
    );
    let to = Mailbox::new(
        to_name.filter(|n| !n.is_empty()).map(str::to_owned),
        to_address.parse().map_err(|e| {
            SendError::Message(format!(
                "The recipient address {to_address:?} is not valid: {e}."
            ))
        })?,
    );
    let domain = s
        .from_address
        .rsplit_once('@')
        .map_or("roster.invalid", |(_, d)| d);
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(message_id.map(|id| format!("<{id}@{domain}>")))
        .multipart(MultiPart::alternative_plain_html(
            text.to_owned(),
            html.to_owned(),
        ))
        .map_err(|e| SendError::Message(format!("The mail could not be built: {e}.")))
}

/// Sends one message, bounded by `limit` overall.
pub async fn send(
    t: &Transport,
    s: &SmtpSettings,
    msg: Message,
    limit: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(limit, t.send(msg)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(describe(&e, s)),
        Err(_) => Err(SendError::Connection(format!(
            "The mail server at {}:{} did not finish within {} seconds.",
            s.host,
            s.port,
            limit.as_secs()
        ))),
    }
}

/// Words a lettre error for the admin, naming the server.
pub fn describe(e: &smtp::Error, s: &SmtpSettings) -> SendError {
    let server = format!("{}:{}", s.host, s.port);
    let chain = {
        let mut parts = Vec::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(c) = cur {
            let text = c.to_string();
            if !parts.iter().any(|p: &String| p.contains(&text)) {
                parts.push(text);
            }
            cur = c.source();
        }
        if parts.is_empty() {
            e.to_string()
        } else {
            parts.join(": ")
        }
    };
    if e.is_timeout() {
        SendError::Connection(format!(
            "The mail server at {server} did not answer in time ({chain})."
        ))
    } else if e.is_permanent() || e.is_transient() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        let hint = if code == "535" || code == "534" || code == "530" {
            " Check the user name and password."
        } else {
            ""
        };
        SendError::Refused(format!(
            "The mail server at {server} refused the mail: {code} {chain}.{hint}"
        ))
    } else if e.is_tls() {
        SendError::Connection(format!(
            "The TLS connection to {server} failed: {chain}. Check the security setting and the port."
        ))
    } else if e.is_response() {
        SendError::Connection(format!(
            "The mail server at {server} gave an answer Roster could not understand ({chain}). Check the \
             security setting and the port."
        ))
    } else {
        SendError::Connection(format!(
            "Could not connect to the mail server at {server}: {chain}."
        ))
    }
}
