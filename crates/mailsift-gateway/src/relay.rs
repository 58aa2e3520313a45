//! The SMTP client that hands mail to a next hop: the organisation's mail server (inbound), a smarthost or a
//! recipient domain's MX (outbound), a test sink.
//!
//! It reports what the next hop said, recipient by recipient, so the gateway can answer its own client
//! truthfully: 250 only when the next hop took the message, the next hop's 5xx when it refused for good,
//! 451 when it could not be reached or failed temporarily.
//!
//! How a connection is secured is chosen per delivery ([`HopSecurity`]): opportunistic STARTTLS (RFC 3207,
//! the certificate not verified), STARTTLS required, or required with the certificate verified for a host
//! name (a smarthost, an MX host under an MTA-STS policy); and SMTP AUTH (PLAIN or LOGIN, RFC 4954) towards
//! a smarthost, only over TLS. A next hop that falls short of what is required is a [`SecuredError::Policy`]
//! failure, which callers treat as temporary (the mail waits) and count.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::stream::Stream;
use crate::text::sanitize;

/// One SMTP reply: its code and its (possibly multi-line) text, lines joined with a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// What the next hop did with one message.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Recipients it accepted (the message was delivered to them).
    pub accepted: Vec<String>,
    /// Recipients it refused permanently, with its reply.
    pub refused: Vec<(String, Reply)>,
    /// Its answer to the end of data.
    pub reply: Reply,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RelayError {
    /// Could not connect, timed out, or a 4xx: the sender should retry.
    #[error("{0}")]
    Temporary(String),
    /// The next hop refused the message (or every recipient) for good.
    #[error("{0}")]
    Permanent(Reply),
    /// Our own storage failed (a Maildir write): the sender should retry, and is told it was us, not the
    /// next hop. The text is for the log (it may name paths), never for the client.
    #[error("{0}")]
    Local(String),
}

/// How one delivery secures its connection to the next hop.
#[derive(Clone, Default)]
pub struct HopSecurity {
    pub tls: HopTls,
    /// The name sent in SNI and, with [`HopTls::Verify`], the name the certificate must be valid for (the
    /// smarthost's host name, the MX host name). `None`: the target's host part.
    pub server_name: Option<String>,
    /// AUTH credentials (user, password), sent only over TLS.
    pub auth: Option<(String, crate::transport::Secret)>,
    /// What requires the TLS, for error messages ("the smarthost's tls = \"verify\"", "the MTA-STS policy
    /// of example.net (enforce)").
    pub required_by: String,
}

/// TLS towards one next hop.
#[derive(Clone, Default)]
pub enum HopTls {
    /// STARTTLS when offered (with the client's own opportunistic configuration, when it has one).
    #[default]
    Opportunistic,
    /// STARTTLS mandatory; this configuration (which need not verify).
    Required(Arc<rustls::ClientConfig>),
    /// STARTTLS mandatory, with a configuration that verifies the certificate, and a label of its trust
    /// roots (connections verified against different roots are not shared).
    Verify(Arc<rustls::ClientConfig>, String),
}

impl HopSecurity {
    /// What distinguishes connections made with these settings in the connection cache (never the
    /// password itself: a hash of it, so a changed password does not reuse a connection authenticated with
    /// the old one).
    fn cache_key(&self) -> String {
        let mut key = match &self.tls {
            HopTls::Opportunistic => String::new(),
            HopTls::Required(_) => "tls-required".to_string(),
            HopTls::Verify(_, roots) => format!("tls-verify:{roots}"),
        };
        if let Some(name) = &self.server_name {
            key.push_str(&format!(" name:{name}"));
        }
        if let Some((user, password)) = &self.auth {
            use std::hash::{Hash, Hasher};
            let mut h = rustc_hash::FxHasher::default();
            password.expose().hash(&mut h);
            key.push_str(&format!(" auth:{user}:{:x}", h.finish()));
        }
        key
    }

    fn tls_mandatory(&self) -> bool {
        !matches!(self.tls, HopTls::Opportunistic)
    }
}

/// A delivery that failed, with TLS-policy failures told apart.
#[derive(Debug, Clone)]
pub enum SecuredError {
    /// The next hop did not meet the TLS requirement: no STARTTLS, STARTTLS refused, a certificate that
    /// does not verify, a handshake that fails. The text says what and what required it.
    Policy(String),
    Relay(RelayError),
}

impl From<RelayError> for SecuredError {
    fn from(e: RelayError) -> Self {
        SecuredError::Relay(e)
    }
}

impl From<SecuredError> for RelayError {
    /// A policy failure is temporary: the mail waits for the next hop to be fixed (RFC 8461 §5).
    fn from(e: SecuredError) -> Self {
        match e {
            SecuredError::Policy(reason) => RelayError::Temporary(reason),
            SecuredError::Relay(e) => e,
        }
    }
}

/// How to reach next hops.
#[derive(Clone)]
pub struct RelayClient {
    pub helo: String,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    /// STARTTLS when offered.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Open connections to next hops, kept between messages.
    pub cache: Arc<ConnectionCache>,
}

struct Conn {
    io: BufReader<Stream>,
    timeout: Duration,
    /// The next hop's answer to our EHLO (or HELO): what it offers.
    ehlo: Reply,
    /// Messages sent over this connection.
    used: u32,
}

/// Connections to next hops kept open after a message, as Postfix's connection cache keeps them: the next
/// message to the same next hop skips the TCP handshake, the greeting, EHLO (and STARTTLS) and QUIT. A
/// connection is kept only after a transaction that ended cleanly, for [`ConnectionCache::IDLE`] at most,
/// for [`ConnectionCache::REUSE`] messages at most, and at most [`ConnectionCache::PER_TARGET`] per next hop.
/// A kept connection the next hop has closed in the meantime costs nothing: the message goes over a new one.
#[derive(Default)]
pub struct ConnectionCache {
    idle: Mutex<rustc_hash::FxHashMap<String, Vec<(Conn, Instant)>>>,
}

impl ConnectionCache {
    /// How long an idle connection is kept (well under the 300 s RFC 5321 lets a server wait for a command).
    pub const IDLE: Duration = Duration::from_secs(5);
    /// How many messages one connection carries before it is closed.
    pub const REUSE: u32 = 100;
    /// How many idle connections are kept per next hop.
    pub const PER_TARGET: usize = 64;

    /// A kept connection to the next hop of `key`, the most recently used (the likeliest to be alive).
    /// Connections idle for too long are closed on the way.
    fn take(&self, key: &str) -> Option<Conn> {
        let (conn, stale) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.get_mut(key)?;
            let now = Instant::now();
            let (fresh, stale): (Vec<_>, Vec<_>) =
                std::mem::take(list).into_iter().partition(|(_, since)| now.duration_since(*since) < Self::IDLE);
            *list = fresh;
            let conn = list.pop().map(|(c, _)| c);
            if list.is_empty() {
                idle.remove(key);
            }
            (conn, stale)
        };
        for (c, _) in stale {
            c.quit();
        }
        conn
    }

    fn put(&self, key: &str, conn: Conn) {
        if conn.used >= Self::REUSE {
            conn.quit();
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Bounded: a key per next hop the gateway delivers to, stale connections dropped as keys are visited.
        if idle.len() >= 1024 && !idle.contains_key(key) {
            idle.retain(|_, list| {
                list.retain(|(_, since)| now.duration_since(*since) < Self::IDLE);
                !list.is_empty()
            });
            if idle.len() >= 1024 {
                return;
            }
        }
        let list = idle.entry(key.to_string()).or_default();
        if list.len() < Self::PER_TARGET {
            list.push((conn, now));
        }
    }

    /// Idle connections kept now, over all next hops.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).values().map(Vec::len).sum()
    }
}

impl Conn {
    async fn read_reply(&mut self) -> Result<Reply, RelayError> {
        let mut text = String::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(self.timeout, (&mut self.io).take(8192).read_until(b'\n', &mut line))
                .await
                .map_err(|_| RelayError::Temporary("next hop timed out".into()))?
                .map_err(|e| RelayError::Temporary(format!("next hop connection failed: {e}")))?;
            if n == 0 {
                return Err(RelayError::Temporary("next hop closed the connection".into()));
            }
            let s = String::from_utf8_lossy(&line);
            let s = s.trim_end();
            let code = s.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(RelayError::Temporary(format!("next hop sent a malformed reply: {}", sanitize(s, 100))));
            };
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(s.get(4..).unwrap_or(""));
            if s.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, text: sanitize(&text, 512) });
            }
            if text.len() > 65_536 {
                return Err(RelayError::Temporary("next hop reply too long".into()));
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        let w = self.io.get_mut();
        tokio::time::timeout(self.timeout, async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
        .map_err(|_| RelayError::Temporary("next hop timed out".into()))?
        .map_err(|e| RelayError::Temporary(format!("next hop connection failed: {e}")))
    }

    async fn command(&mut self, line: &str) -> Result<Reply, RelayError> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// Says goodbye and closes, in the background (its answer does not matter; two seconds at most).
    fn quit(mut self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                self.timeout = Duration::from_secs(2);
                let _ = tokio::time::timeout(Duration::from_secs(2), self.command("QUIT")).await;
            });
        }
    }
}

/// Whether an EHLO reply announces an extension.
fn offers(ehlo: &Reply, ext: &str) -> bool {
    ehlo.text.split(' ').any(|w| w.eq_ignore_ascii_case(ext))
}

/// Whether an EHLO reply announces an AUTH mechanism (`AUTH PLAIN LOGIN`, or the old `AUTH=LOGIN`). The
/// reply's lines are joined, so a mechanism's name is looked for after the `AUTH` keyword.
fn offers_auth(ehlo: &Reply, mechanism: &str) -> bool {
    let mut after_auth = false;
    for w in ehlo.text.split(' ') {
        if w.eq_ignore_ascii_case("AUTH") {
            after_auth = true;
            continue;
        }
        let old_form = w.get(..5).is_some_and(|h| h.eq_ignore_ascii_case("AUTH="))
            && w.get(5..).is_some_and(|t| t.eq_ignore_ascii_case(mechanism));
        if old_form || (after_auth && w.eq_ignore_ascii_case(mechanism)) {
            return true;
        }
    }
    false
}

/// SMTP AUTH (RFC 4954) with PLAIN when offered, else LOGIN. Neither the password nor what encodes it ever
/// reaches an error or the log; a refusal (535) is logged loudly, since no retry will fix it by itself.
async fn authenticate(
    conn: &mut Conn,
    target: &str,
    user: &str,
    password: &crate::transport::Secret,
) -> Result<(), SecuredError> {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let reply = if offers_auth(&conn.ehlo, "PLAIN") {
        let mut token = Vec::with_capacity(user.len() + password.expose().len() + 2);
        token.push(0);
        token.extend_from_slice(user.as_bytes());
        token.push(0);
        token.extend_from_slice(password.expose().as_bytes());
        conn.command(&format!("AUTH PLAIN {}", b64(&token))).await?
    } else if offers_auth(&conn.ehlo, "LOGIN") {
        let mut reply = conn.command("AUTH LOGIN").await?;
        if reply.code == 334 {
            reply = conn.command(&b64(user.as_bytes())).await?;
        }
        if reply.code == 334 {
            reply = conn.command(&b64(password.expose().as_bytes())).await?;
        }
        reply
    } else {
        return Err(RelayError::Temporary(format!(
            "{target} offers neither AUTH PLAIN nor AUTH LOGIN; the mail waits (credentials are configured for it)"
        ))
        .into());
    };
    if reply.code == 235 {
        return Ok(());
    }
    tracing::error!(
        target = %target, user = %user, reply = %reply,
        "the smarthost refused our AUTH credentials: check [smtp.outbound.security] auth_user and auth_password_file; mail stays queued"
    );
    Err(RelayError::Temporary(format!("{target} refused AUTH for {user}: {reply}")).into())
}

/// A 4xx is temporary, a 5xx permanent, anything else positive.
fn expect_ok(reply: Reply, step: &str) -> Result<Reply, RelayError> {
    match reply.code {
        200..=399 => Ok(reply),
        400..=499 => Err(RelayError::Temporary(format!("next hop answered {step} with {reply}"))),
        _ => Err(RelayError::Permanent(reply)),
    }
}

impl RelayClient {
    /// Delivers one message to `target` (`host:port`). `data` is the message as it should arrive, with
    /// any line ending; it is sent with CRLF line endings and dot-stuffed.
    pub async fn deliver(
        &self,
        target: &str,
        mail_from: &str,
        recipients: &[String],
        data: &[u8],
    ) -> Result<Delivered, RelayError> {
        self.deliver_secured(target, &HopSecurity::default(), mail_from, recipients, data).await.map_err(Into::into)
    }

    /// Delivers one message to `target` with the connection secured as `security` says. Connections made
    /// with other settings are never reused for it.
    pub async fn deliver_secured(
        &self,
        target: &str,
        security: &HopSecurity,
        mail_from: &str,
        recipients: &[String],
        data: &[u8],
    ) -> Result<Delivered, SecuredError> {
        let key = format!("{target} {} {} {}", self.helo, self.tls.is_some(), security.cache_key());
        // A kept connection first. If the next hop closed it meanwhile, the first command fails before
        // anything of the message is committed, and the message goes over a new connection.
        if let Some(mut conn) = self.cache.take(&key) {
            conn.timeout = self.reply_timeout;
            match self.transaction(&mut conn, mail_from, recipients, data).await {
                Err(Attempt::Stale(_)) => {}
                result => return self.finish(&key, conn, result).map_err(Into::into),
            }
        }
        let mut conn = self.connect(target, security).await?;
        let result = self.transaction(&mut conn, mail_from, recipients, data).await;
        self.finish(&key, conn, result).map_err(Into::into)
    }

    /// Keeps the connection for the next message when the transaction ended in a state to go on from.
    fn finish(&self, key: &str, mut conn: Conn, result: Result<Delivered, Attempt>) -> Result<Delivered, RelayError> {
        match result {
            Ok(d) => {
                conn.used += 1;
                self.cache.put(key, conn);
                Ok(d)
            }
            Err(Attempt::Reset(e)) => {
                self.cache.put(key, conn);
                Err(e)
            }
            Err(Attempt::Stale(e) | Attempt::Broken(e)) => Err(e),
        }
    }

    /// A new connection: greeting, EHLO (HELO when EHLO is refused), STARTTLS when offered and configured
    /// (or when `security` requires it), AUTH when `security` has credentials.
    async fn connect(&self, target: &str, security: &HopSecurity) -> Result<Conn, SecuredError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(target))
            .await
            .map_err(|_| RelayError::Temporary(format!("connecting to {target} timed out")))?
            .map_err(|e| RelayError::Temporary(format!("cannot connect to {target}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let host = target.rsplit_once(':').map(|(h, _)| h).unwrap_or(target);
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let empty = Reply { code: 0, text: String::new() };
        let mut conn =
            Conn { io: BufReader::new(Stream::Plain(tcp)), timeout: self.reply_timeout, ehlo: empty, used: 0 };
        expect_ok(conn.read_reply().await?, "the greeting")?;
        let mut ehlo = conn.command(&format!("EHLO {}", self.helo)).await?;
        if !ehlo.is_positive() {
            ehlo = expect_ok(conn.command(&format!("HELO {}", self.helo)).await?, "HELO")?;
        }
        let required_by = &security.required_by;
        let tls = match &security.tls {
            HopTls::Opportunistic => self.tls.clone().filter(|_| offers(&ehlo, "STARTTLS")),
            HopTls::Required(c) | HopTls::Verify(c, _) => {
                if !offers(&ehlo, "STARTTLS") {
                    return Err(SecuredError::Policy(format!(
                        "{target} does not offer STARTTLS, which {required_by} requires"
                    )));
                }
                Some(c.clone())
            }
        };
        let mut encrypted = false;
        if let Some(tls) = tls {
            let reply = conn.command("STARTTLS").await?;
            if security.tls_mandatory() && !reply.is_positive() {
                return Err(SecuredError::Policy(format!(
                    "{target} answered STARTTLS with {reply}; {required_by} requires TLS"
                )));
            }
            expect_ok(reply, "STARTTLS")?;
            let io = std::mem::replace(&mut conn.io, BufReader::new(Stream::Closed));
            let Stream::Plain(tcp) = io.into_inner() else {
                return Err(RelayError::Temporary("STARTTLS on an encrypted connection".into()).into());
            };
            let wanted = security.server_name.clone().unwrap_or(host);
            let name = match rustls::pki_types::ServerName::try_from(wanted.clone()) {
                Ok(name) => name,
                Err(_) if matches!(security.tls, HopTls::Verify(..)) => {
                    return Err(SecuredError::Policy(format!(
                        "{wanted:?} is not a name a certificate can be verified for, which {required_by} requires"
                    )))
                }
                Err(_) => rustls::pki_types::ServerName::try_from("localhost").expect("valid name"),
            };
            let handshake =
                tokio::time::timeout(self.reply_timeout, tokio_rustls::TlsConnector::from(tls).connect(name, tcp))
                    .await;
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) if security.tls_mandatory() => {
                    return Err(SecuredError::Policy(format!(
                        "TLS with {target} ({wanted}) failed, which {required_by} requires: {e}"
                    )))
                }
                Ok(Err(e)) => {
                    return Err(RelayError::Temporary(format!("TLS handshake with the next hop failed: {e}")).into())
                }
                Err(_) => return Err(RelayError::Temporary("TLS handshake with the next hop timed out".into()).into()),
            };
            conn.io = BufReader::new(Stream::ClientTls(Box::new(stream)));
            ehlo = expect_ok(conn.command(&format!("EHLO {}", self.helo)).await?, "EHLO")?;
            encrypted = true;
        }
        conn.ehlo = ehlo;
        if let Some((user, password)) = &security.auth {
            if !encrypted {
                return Err(SecuredError::Policy(format!(
                    "{target} offers no STARTTLS and AUTH is only sent over TLS"
                )));
            }
            authenticate(&mut conn, target, user, password).await?;
        }
        Ok(conn)
    }

    /// One message over an open connection. With PIPELINING (RFC 2920) MAIL FROM and every RCPT TO go out
    /// in one write; DATA waits for their answers, so a message is never sent to some recipients while
    /// another was deferred.
    async fn transaction(
        &self,
        conn: &mut Conn,
        mail_from: &str,
        recipients: &[String],
        data: &[u8],
    ) -> Result<Delivered, Attempt> {
        let ehlo = &conn.ehlo;
        let eight_bit = !data.is_ascii() && offers(ehlo, "8BITMIME");
        let utf8 = !mail_from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        let mut mail = format!("MAIL FROM:<{mail_from}>");
        if offers(ehlo, "SIZE") {
            mail.push_str(&format!(" SIZE={}", data.len()));
        }
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 && offers(ehlo, "SMTPUTF8") {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let pipelining = offers(ehlo, "PIPELINING");
        let mut replies = Vec::with_capacity(recipients.len() + 1);
        if pipelining {
            for r in recipients {
                mail.push_str(&format!("RCPT TO:<{r}>\r\n"));
            }
            // Whatever fails before the first answer is read is a connection the next hop closed while idle.
            conn.send(mail.as_bytes()).await.map_err(Attempt::Stale)?;
            replies.push(conn.read_reply().await.map_err(Attempt::Stale)?);
            for _ in recipients {
                replies.push(conn.read_reply().await.map_err(Attempt::Broken)?);
            }
        } else {
            conn.send(mail.as_bytes()).await.map_err(Attempt::Stale)?;
            replies.push(conn.read_reply().await.map_err(Attempt::Stale)?);
        }
        let mut replies = replies.into_iter();
        let mail_reply = replies.next().expect("the reply to MAIL FROM");
        if mail_reply.code == 421 {
            // The next hop is closing the kept connection: a new one will do.
            return Err(Attempt::Stale(RelayError::Temporary(format!(
                "next hop answered MAIL FROM with {mail_reply}"
            ))));
        }
        if let Err(e) = expect_ok(mail_reply, "MAIL FROM") {
            // The pipelined RCPTs were answered too (refused for want of a sender); the session is clean.
            return Err(self.reset(conn, e).await);
        }
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        let mut temporary = None;
        for r in recipients {
            let reply = match replies.next() {
                Some(reply) => reply,
                None => conn.command(&format!("RCPT TO:<{r}>")).await.map_err(Attempt::Broken)?,
            };
            match reply.code {
                200..=399 => accepted.push(r.clone()),
                400..=499 => temporary = Some(reply),
                _ => refused.push((r.clone(), reply)),
            }
        }
        // Before-queue delivery answers one reply for the whole transaction: if any recipient failed only
        // temporarily, nobody gets the message now and the sender retries all of them.
        if let Some(t) = temporary {
            let e = RelayError::Temporary(format!("next hop deferred a recipient: {t}"));
            return Err(self.reset(conn, e).await);
        }
        if accepted.is_empty() {
            let reply = refused.first().map(|(_, r)| r.clone()).expect("recipients is not empty");
            return Err(self.reset(conn, RelayError::Permanent(reply)).await);
        }
        let data_reply = conn.command("DATA").await.map_err(Attempt::Broken)?;
        if let Err(e) = expect_ok(data_reply, "DATA") {
            return Err(self.reset(conn, e).await);
        }
        conn.send(&dot_stuff(data)).await.map_err(Attempt::Broken)?;
        let reply = conn.read_reply().await.map_err(Attempt::Broken)?;
        match expect_ok(reply, "the end of data") {
            Ok(reply) => Ok(Delivered { accepted, refused, reply }),
            // The transaction is over either way; the connection can carry the next one.
            Err(e) => Err(Attempt::Reset(e)),
        }
    }

    /// Ends a transaction that will not send its message: RSET, so the connection can carry the next one
    /// (when the next hop agrees).
    async fn reset(&self, conn: &mut Conn, e: RelayError) -> Attempt {
        match conn.command("RSET").await {
            Ok(r) if r.code == 250 => Attempt::Reset(e),
            _ => Attempt::Broken(e),
        }
    }
}

/// How a transaction on a connection failed, which says what the connection is good for.
enum Attempt {
    /// Nothing was committed and the connection failed at once: a kept connection the next hop had closed.
    Stale(RelayError),
    /// The transaction is over and the connection is in a clean state.
    Reset(RelayError),
    /// The connection is in an unknown state: closed.
    Broken(RelayError),
}

/// CRLF line endings, a leading dot doubled (RFC 5321 §4.5.2), and the end-of-data marker.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 50 + 8);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n".to_vec());
    }
}
