//! SMTP through lettre's connection API on sockets Roster opens itself, for the chosen security (none,
//! STARTTLS, implicit TLS), with timeouts; keeps connections open between mails; builds
//! multipart/alternative (text + HTML) messages, and words SMTP errors for people.
//!
//! Why not lettre's `AsyncSmtpTransport`: lettre writes a message's content and its final `\r\n.\r\n` as
//! two flushed writes. On its sockets Nagle's algorithm is on, so the 5-byte terminator waits for the
//! server's ACK of the content, which the receiver delays by up to 40 ms: ≈ 48 ms per mail on loopback.
//! Roster's sockets set TCP_NODELAY, so both writes leave at once.

use std::fmt::{self, Display};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;

use crate::mail::model::{Security, SmtpSettings};

/// How long an unused connection stays open. Short, so that a restarted server is met on a new one.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Connections to the mail server of one set of settings. Each send takes an idle connection (or opens
/// a new one) and gives it back afterwards; up to `max_idle` stay open, each for [`IDLE_TIMEOUT`].
pub struct Transport {
    host: String,
    port: u16,
    security: Security,
    /// How the connection is protected, with the TLS parameters (built once: they hold the verifier).
    protection: Protection,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Bound on connecting, on each step of the greeting and login, and on each command before the content.
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

enum Protection {
    Plain,
    StartTls(TlsParameters),
    ImplicitTls(TlsParameters),
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("authenticates", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .field("max_idle", &self.max_idle)
            .field("idle", &self.idle.try_lock().map(|i| i.len()).ok())
            .finish_non_exhaustive()
    }
}

/// A transport for these settings that closes its connection after each mail ("Send test email").
/// `password` is the opened secret, if any.
pub fn build(
    s: &SmtpSettings,
    password: Option<&SecretString>,
    timeout: Duration,
) -> Result<Transport, SendError> {
    Transport::new(s, credentials(s, password), timeout, 0)
}

/// Log in only when both a user name and a password are set (as with lettre's transport before).
fn credentials(s: &SmtpSettings, password: Option<&SecretString>) -> Option<Credentials> {
    match (s.username.as_deref(), password) {
        (Some(user), Some(pass)) => Some(Credentials::new(
            user.to_owned(),
            pass.expose_secret().to_owned(),
        )),
        _ => None,
    }
}

/// The worker's transport, kept across passes so that its connections stay open. It is replaced (and
/// the old one's idle connections closed) when the settings, the password or the sizes change. Clones
/// share it.
#[derive(Clone, Default)]
pub struct SharedTransport(Arc<Mutex<Option<Arc<Transport>>>>);

impl fmt::Debug for SharedTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedTransport")
            .field(&self.0.try_lock().ok().and_then(|t| t.clone()))
            .finish()
    }
}

impl SharedTransport {
    fn slot(&self) -> MutexGuard<'_, Option<Arc<Transport>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport for these settings, keeping up to `max_idle` connections open.
    pub fn get(
        &self,
        s: &SmtpSettings,
        password: Option<&SecretString>,
        timeout: Duration,
        max_idle: usize,
    ) -> Result<Arc<Transport>, SendError> {
        let credentials = credentials(s, password);
        let mut slot = self.slot();
        if let Some(t) = slot.as_ref()
            && t.serves(s, credentials.as_ref(), timeout, max_idle)
        {
            return Ok(Arc::clone(t));
        }
        if let Some(old) = slot.take() {
            old.close_idle_later();
        }
        let t = Arc::new(Transport::new(s, credentials, timeout, max_idle)?);
        *slot = Some(Arc::clone(&t));
        Ok(t)
    }

    /// Closes the connections that have been idle for [`IDLE_TIMEOUT`].
    pub fn close_expired(&self) {
        let t = self.slot().clone();
        if let Some(t) = t {
            t.close_expired();
        }
    }

    /// Forgets the transport and says QUIT on its idle connections (at shutdown, or when SMTP is no
    /// longer configured).
    pub async fn close(&self) {
        let t = self.slot().take();
        if let Some(t) = t {
            t.close_idle().await;
        }
    }
}

impl Transport {
    fn new(
        s: &SmtpSettings,
        credentials: Option<Credentials>,
        timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, SendError> {
        let tls = || {
            TlsParameters::new(s.host.clone()).map_err(|e| {
                SendError::Connection(format!("Cannot set up TLS for {}: {e}", s.host))
            })
        };
        let protection = match s.security {
            Security::None => Protection::Plain,
            Security::StartTls => Protection::StartTls(tls()?),
            Security::Tls => Protection::ImplicitTls(tls()?),
        };
        Ok(Self {
            host: s.host.clone(),
            port: s.port,
            security: s.security,
            protection,
            credentials,
            // The machine's host name, as lettre's transport sends it.
            hello: ClientId::default(),
            timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// True when this transport connects and logs in exactly as these settings say.
    fn serves(
        &self,
        s: &SmtpSettings,
        credentials: Option<&Credentials>,
        timeout: Duration,
        max_idle: usize,
    ) -> bool {
        self.host == s.host
            && self.port == s.port
            && self.security == s.security
            && self.credentials.as_ref() == credentials
            && self.timeout == timeout
            && self.max_idle == max_idle
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection, if one is young enough.
    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        self.close_expired();
        self.idle().pop().map(|i| i.conn)
    }

    /// Keeps a connection that is in step with the server for the next mail, or closes it.
    fn give_back(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        } else {
            drop(idle);
            quit_later(conn, self.timeout);
        }
    }

    /// Closes the connections that have been idle for [`IDLE_TIMEOUT`] (QUIT in the background).
    fn close_expired(&self) {
        let expired: Vec<Idle> = self
            .idle()
            .extract_if(.., |i| i.since.elapsed() >= IDLE_TIMEOUT)
            .collect();
        for i in expired {
            quit_later(i.conn, self.timeout);
        }
    }

    /// Closes every idle connection (QUIT in the background).
    fn close_idle_later(&self) {
        let idle = std::mem::take(&mut *self.idle());
        for i in idle {
            quit_later(i.conn, self.timeout);
        }
    }

    /// Closes every idle connection, waiting (briefly) for the QUITs.
    async fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.idle());
        let limit = self.timeout.min(Duration::from_secs(2));
        futures_util::future::join_all(idle.into_iter().map(|mut i| async move {
            let _ = tokio::time::timeout(limit, i.conn.quit()).await;
        }))
        .await;
    }

    /// Sends one mail: on a kept connection if there is one, else on a new one. A kept connection the
    /// server has closed meanwhile (it restarted, or it limits mails per connection) fails before the
    /// server took anything; then the mail goes once more on a new connection. Once DATA is accepted a
    /// mail is never repeated here (the outbox's retry decides).
    async fn deliver(&self, envelope: &Envelope, content: &[u8]) -> Result<(), SendError> {
        let mut reuse = true;
        loop {
            let (mut conn, reused) = match reuse.then(|| self.take_idle()).flatten() {
                Some(conn) => (conn, true),
                None => (self.open().await?, false),
            };
            match self.transact(&mut conn, envelope, content).await {
                Ok(()) => {
                    self.give_back(conn);
                    return Ok(());
                }
                Err(f) => {
                    if f.in_step {
                        self.reset(conn).await;
                    }
                    if f.stale && reused {
                        // The other kept connections are likely gone too.
                        drop(std::mem::take(&mut *self.idle()));
                        reuse = false;
                        continue;
                    }
                    return Err(f.error);
                }
            }
        }
    }

    /// A new connection: TCP (TCP_NODELAY), implicit TLS or STARTTLS as set, EHLO, and the login.
    async fn open(&self) -> Result<AsyncSmtpConnection, SendError> {
        let server = self.server();
        let tcp = connect_tcp(&self.host, self.port, self.timeout, &server).await?;
        let stream: Box<dyn AsyncTokioStream> = match &self.protection {
            Protection::ImplicitTls(tls) => Box::new(
                self.step(
                    "the TLS handshake",
                    implicit_tls::handshake(tcp, tls.clone()),
                )
                .await?,
            ),
            Protection::Plain | Protection::StartTls(_) => Box::new(tcp),
        };
        let mut conn = self
            .step(
                "the greeting",
                AsyncSmtpConnection::connect_with_transport(stream, &self.hello),
            )
            .await?;
        if let Protection::StartTls(tls) = &self.protection {
            // Required: never fall back to plain text.
            if !conn.server_info().supports_feature(Extension::StartTls) {
                quit_later(conn, self.timeout);
                return Err(SendError::Connection(format!(
                    "The mail server at {server} does not offer STARTTLS, which the security setting \
                     requires. If it expects TLS from the first byte (usually port 465), choose TLS."
                )));
            }
            self.step("STARTTLS", conn.starttls(tls.clone(), &self.hello))
                .await?;
        }
        if let Some(c) = &self.credentials {
            self.step("the login", conn.auth(DEFAULT_MECHANISMS, c))
                .await?;
        }
        Ok(conn)
    }

    /// Runs one step of opening a connection within the timeout, wording its failure.
    async fn step<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, smtp::Error>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe_at(&e, &self.server())),
            Err(_) => Err(self.no_answer(what)),
        }
    }

    fn no_answer(&self, what: &str) -> SendError {
        SendError::Connection(format!(
            "The mail server at {} did not answer in time ({what} took longer than {} seconds).",
            self.server(),
            self.timeout.as_secs()
        ))
    }

    /// One mail on one connection: MAIL FROM, RCPT TO, DATA (each within the timeout), then the content.
    /// The parameters for non-ASCII addresses and content are chosen as lettre's own `send` does.
    async fn transact(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        content: &[u8],
    ) -> Result<(), Failure> {
        let mut params = Vec::new();
        let ascii_addresses = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .all(|a| AsRef::<str>::as_ref(a).is_ascii());
        if !ascii_addresses {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(self.cannot_take("an address has", "SMTPUTF8"));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !content.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(self.cannot_take("the text has", "8BITMIME"));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.command(
            conn,
            "MAIL FROM",
            Mail::new(envelope.from().cloned(), params),
        )
        .await?;
        for to in envelope.to() {
            self.command(conn, "RCPT TO", Rcpt::new(to.clone(), Vec::new()))
                .await?;
        }
        self.command(conn, "DATA", Data).await?;
        // From here on the server may have taken the mail: a failure is never `stale`. The answer to
        // the content is bounded only by the send's overall limit (servers may scan before answering).
        match conn.message(content).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Failure {
                error: describe_at(&e, &self.server()),
                in_step: answered(&e),
                stale: false,
            }),
        }
    }

    /// One command before the content, within the timeout.
    async fn command(
        &self,
        conn: &mut AsyncSmtpConnection,
        what: &str,
        cmd: impl Display,
    ) -> Result<(), Failure> {
        match tokio::time::timeout(self.timeout, conn.command(cmd)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                // 421: the server is closing this connection (a restart, or too many mails on it).
                let closing = e.status().is_some_and(|c| c.to_string() == "421");
                Err(Failure {
                    error: describe_at(&e, &self.server()),
                    in_step: answered(&e) && !closing,
                    stale: !answered(&e) || closing,
                })
            }
            Err(_) => Err(Failure {
                error: self.no_answer(what),
                in_step: false,
                stale: false,
            }),
        }
    }

    fn cannot_take(&self, what: &str, extension: &str) -> Failure {
        Failure {
            error: SendError::Refused(format!(
                "The mail server at {} cannot take this mail: {what} non-ASCII characters and the server \
                 does not support {extension}.",
                self.server()
            )),
            in_step: true,
            stale: false,
        }
    }

    /// Ends the failed transaction (RSET) and keeps the connection if the server agrees.
    async fn reset(&self, mut conn: AsyncSmtpConnection) {
        if let Ok(Ok(_)) = tokio::time::timeout(self.timeout, conn.command(Rset)).await {
            self.give_back(conn);
        }
    }
}

/// How a mail failed on one connection.
struct Failure {
    error: SendError,
    /// The server answered with a code, so the connection is still in step and may be kept.
    in_step: bool,
    /// It failed before DATA was accepted, in a way a new connection may not (the connection was closed
    /// under us, or 421): the server took nothing, so the mail may go again on a new connection.
    stale: bool,
}

/// True when the server answered with a 4xx/5xx code (rather than the connection failing).
fn answered(e: &smtp::Error) -> bool {
    e.is_permanent() || e.is_transient()
}

/// Says QUIT without waiting for the answer, then closes.
fn quit_later(mut conn: AsyncSmtpConnection, limit: Duration) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = tokio::time::timeout(limit, conn.quit()).await;
        });
    }
}

/// A TCP connection to `host:port` with TCP_NODELAY, trying each resolved address in turn, each bounded
/// by `timeout` (as lettre does, with the same wording when it fails).
async fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
    server: &str,
) -> Result<TcpStream, SendError> {
    let could_not = |e: &dyn Display| {
        SendError::Connection(format!(
            "Could not connect to the mail server at {server}: {e}."
        ))
    };
    let timed_out = || {
        SendError::Connection(format!(
            "The mail server at {server} did not answer in time (connection timed out)."
        ))
    };
    let addrs = match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => return Err(could_not(&e)),
        Err(_) => return Err(timed_out()),
    };
    let mut last: Option<io::Error> = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                tcp.set_nodelay(true).map_err(|e| could_not(&e))?;
                return Ok(tcp);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => timed_out(),
        Some(e) => could_not(&e),
        None => could_not(&"the host name resolves to no address"),
    })
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

/// Sends one message through `t` (settings `s`), bounded by `limit` overall.
pub async fn send(
    t: &Transport,
    s: &SmtpSettings,
    msg: Message,
    limit: Duration,
) -> Result<(), SendError> {
    let content = msg.formatted();
    match tokio::time::timeout(limit, t.deliver(msg.envelope(), &content)).await {
        Ok(outcome) => outcome,
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
    describe_at(e, &format!("{}:{}", s.host, s.port))
}

/// [`describe`] for a server given as `host:port`.
fn describe_at(e: &smtp::Error, server: &str) -> SendError {
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

/// Implicit TLS (SMTPS) on Roster's own socket. lettre's only way to run a TLS handshake on a stream it
/// is handed is `AsyncNetworkStream` (public, but deprecated since 0.11.14 as "not meant to be made
/// public"): it does the handshake with lettre's `TlsParameters` (same verification as before), and the
/// result goes to `connect_with_transport` as a tokio stream. Should a lettre release remove it, use
/// `AsyncSmtpConnection::connect_tokio1(.., Some(tls), None)` for this mode (losing TCP_NODELAY there).
mod implicit_tls {
    #![expect(
        deprecated,
        reason = "AsyncNetworkStream is lettre's only TLS handshake on a caller's stream; see above"
    )]

    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use futures_util::io::{AsyncRead as FuturesRead, AsyncWrite as FuturesWrite};
    use lettre::transport::smtp;
    use lettre::transport::smtp::client::{AsyncNetworkStream, AsyncTokioStream, TlsParameters};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    /// lettre's TLS stream over our socket, seen as a tokio stream.
    #[derive(Debug)]
    pub(super) struct Stream(AsyncNetworkStream);

    pub(super) async fn handshake(
        tcp: TcpStream,
        tls: TlsParameters,
    ) -> Result<Stream, smtp::Error> {
        let mut s = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        s.upgrade_tls(tls).await?;
        Ok(Stream(s))
    }

    impl AsyncRead for Stream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = ready!(FuturesRead::poll_read(
                Pin::new(&mut self.0),
                cx,
                buf.initialize_unfilled()
            ))?;
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Stream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            FuturesWrite::poll_write(Pin::new(&mut self.0), cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            FuturesWrite::poll_flush(Pin::new(&mut self.0), cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            FuturesWrite::poll_close(Pin::new(&mut self.0), cx)
        }
    }

    impl AsyncTokioStream for Stream {
        fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.0.peer_addr()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lettre writes a message and its final `.` in two writes; with Nagle's algorithm on, the second
    /// waited for a delayed ACK (≈ 40 ms per mail, docs/mail.md). Our sockets must have TCP_NODELAY.
    #[tokio::test]
    async fn smtp_sockets_are_opened_with_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = connect_tcp(
            "127.0.0.1",
            port,
            Duration::from_secs(5),
            &format!("127.0.0.1:{port}"),
        )
        .await
        .unwrap();
        assert!(tcp.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_refused_connection_is_worded_for_the_admin() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let server = format!("127.0.0.1:{port}");
        let err = connect_tcp("127.0.0.1", port, Duration::from_secs(5), &server)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Connection(m) if m.starts_with(&format!("Could not connect to the mail server at {server}"))),
            "{err:?}"
        );
    }
}
