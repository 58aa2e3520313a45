//! One SMTP session: the ESMTP state machine from greeting to QUIT (RFC 5321), with STARTTLS (RFC 3207),
//! AUTH PLAIN/LOGIN over TLS (RFC 4954), PIPELINING (RFC 2920), SIZE, 8BITMIME, SMTPUTF8, CHUNKING/BDAT
//! (RFC 3030) and ENHANCEDSTATUSCODES.
//!
//! Guarding the door is its job: no relaying for strangers, limits on lines, recipients, errors and time, and
//! the connection-stage verdict at MAIL FROM. The message itself is judged and delivered by [`crate::deliver`].
//!
//! Pipelining falls out of the buffering: replies are collected and written when the client has nothing
//! more in flight (our read buffer is empty), so a pipelined batch gets its replies in one write.
//!
//! The end of data is only `CRLF . CRLF`; a bare LF or CR never starts a line here, and bare ones are turned
//! into CRLF or refused ([`proto::DataDecoder`]) before a message is judged, so the next hop sees only CRLF
//! lines and the "SMTP smuggling" ambiguity cannot pass through the gateway.
//!
//! Slots are a resource attackers go for: the first command has a shorter timeout than later ones, every
//! timeout is a deadline for the whole line (not for each read), and when the gateway is nearly full
//! (`stress_percent`) every wait, including those already under way, is cut to `stress_timeout_secs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_engine::{Direction, Envelope, Evidence};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use mailsift_gateway::effects::{self, Submission};
use mailsift_gateway::log::{append_log, door_log_entry, relay_denied_entry};
use mailsift_gateway::route::Route;
use mailsift_gateway::{auth, greylist, limits, Counters, DoorFacts, Gateway, GatewayState, Stream};
use mailsift_store::limits::Grey;

use crate::door::Listener;
use crate::proto::{self, reply, Command, DataDecoder, DataProblem, Framing, MailParams};

/// Longest command line accepted (RFC 5321 §4.5.3.1.4 says 512; extensions make real clients longer).
const MAX_COMMAND_LINE: usize = 4096;
/// NOOP, RSET, VRFY and HELP a session may send between messages before each one counts as an error (as
/// Postfix's `smtpd_junk_command_limit`): with `max_errors` that bounds how long chatter holds a slot.
const JUNK_COMMAND_LIMIT: u32 = 100;

/// What the session knows about the client.
#[derive(Debug, Clone)]
pub struct Client {
    pub peer: SocketAddr,
    pub listener: Listener,
    pub helo: Option<String>,
    pub esmtp: bool,
    pub tls: bool,
    pub user: Option<String>,
    /// The connection is a load balancer's own (PROXY v2 LOCAL, v1 UNKNOWN): `peer` is the balancer, not a
    /// client behind it, so its address never makes the session trusted (see [`run_proxy_local`]).
    pub proxy_local: bool,
}

impl Client {
    /// The envelope of a transaction of this client, as the core judges and logs it.
    pub fn envelope(&self, txn: &Transaction) -> Envelope {
        Envelope {
            client_ip: Some(self.peer.ip()),
            helo: self.helo.clone(),
            client_name: None,
            mail_from: Some(txn.mail_from.clone()),
            rcpt_to: txn.rcpts.clone(),
            direction: txn.direction,
            authenticated_user: self.user.clone(),
            tls: self.tls,
        }
    }

    /// The protocol our `Received:` line names (RFC 3848).
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.tls, self.user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }
}

/// A mail transaction in progress.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub mail_from: String,
    pub params: MailParams,
    pub rcpts: Vec<String>,
    /// Where every recipient of this transaction goes (one route per transaction).
    pub route: Option<Route>,
    /// Whether the client may relay (trusted network or authenticated): its mail is outbound.
    pub direction: Direction,
    /// The reference id, shared by the connection verdict and the message's log row.
    pub started: Instant,
    /// What the door check learned about the client (DNS on): the message is not asked about it again.
    pub door: Option<Arc<DoorFacts>>,
}

enum Line {
    Text(Vec<u8>),
    TooLong,
    Eof,
    TimedOut,
    Shutdown,
}

struct Session {
    gateway: Arc<Gateway>,
    state: Arc<GatewayState>,
    io: BufReader<Stream>,
    out: Vec<u8>,
    client: Client,
    txn: Option<Transaction>,
    errors: u32,
    /// NOOP, RSET, VRFY and HELP since the last message's data: past [`JUNK_COMMAND_LIMIT`] each one counts
    /// as an error, so a client cannot hold a slot forever by chatting without sending mail.
    junk: u32,
    /// Command lines received so far (the first one has a shorter timeout).
    commands: u64,
    /// The message of the BDAT chunks received so far in this transaction.
    chunks: Option<DataDecoder>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Whether the gateway is nearly full (see [`Gateway::under_stress`]); waits are shortened when it is.
    stress: tokio::sync::watch::Receiver<bool>,
}

/// Runs one session to its end. Errors end the session; they never reach other sessions.
pub async fn run(gateway: Arc<Gateway>, stream: Stream, peer: SocketAddr, listener: Listener) {
    run_session(gateway, stream, peer, listener, false).await
}

/// Runs the session of a load balancer's own connection (a PROXY LOCAL or UNKNOWN header: a health check, or
/// a client the balancer could not name). It may greet, say EHLO and hand in mail for our domains like any
/// client, but the balancer's address does not make it trusted even when `trusted_networks` covers the
/// balancer: otherwise whatever reached us through a header the balancer could not fill would relay.
pub async fn run_proxy_local(gateway: Arc<Gateway>, stream: Stream, balancer: SocketAddr) {
    run_session(gateway, stream, balancer, Listener::Inbound, true).await
}

async fn run_session(gateway: Arc<Gateway>, stream: Stream, peer: SocketAddr, listener: Listener, proxy_local: bool) {
    let state = gateway.state();
    let shutdown = gateway.shutdown_signal();
    let stress = gateway.stress_signal();
    let mut s = Session {
        gateway,
        state,
        io: BufReader::with_capacity(16 * 1024, stream),
        out: Vec::with_capacity(512),
        client: Client { peer, listener, helo: None, esmtp: false, tls: false, user: None, proxy_local },
        txn: None,
        errors: 0,
        junk: 0,
        commands: 0,
        chunks: None,
        shutdown,
        stress,
    };
    if let Err(e) = s.converse().await {
        tracing::debug!(client = %peer, error = %e, "session ended with an error");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), s.io.get_mut().shutdown()).await;
}

impl Session {
    fn say(&mut self, code: u16, enhanced: &str, text: &str) {
        self.out.extend_from_slice(reply(code, enhanced, text).as_bytes());
    }

    /// How long the client may take over its next command line (or over reading our replies): shorter before
    /// its first command, and cut to the stress timeout while the gateway is nearly full.
    fn command_timeout(&self) -> Duration {
        let c = &self.state.config;
        let mut secs = c.command_timeout_secs;
        if self.commands == 0 {
            secs = secs.min(c.first_command_timeout_secs);
        }
        if *self.stress.borrow() {
            secs = secs.min(c.stress_timeout_secs);
        }
        Duration::from_secs(secs)
    }

    /// How long the client may take over each block of message data.
    fn data_block_timeout(&self) -> Duration {
        let c = &self.state.config;
        let secs =
            if *self.stress.borrow() { c.data_timeout_secs.min(c.stress_timeout_secs) } else { c.data_timeout_secs };
        Duration::from_secs(secs)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.command_timeout();
        let w = self.io.get_mut();
        let res = tokio::time::timeout(timeout, async {
            w.write_all(&self.out).await?;
            w.flush().await
        })
        .await;
        self.out.clear();
        match res {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client does not read")),
        }
    }

    /// Reads one line without its CRLF, flushing pending replies first when the client has nothing more
    /// buffered (pipelining). The timeout ([`Session::command_timeout`]) is a deadline for the whole line,
    /// counted from when the line was asked for, so sending a byte at a time does not extend it; it is
    /// worked out again when the gateway enters or leaves stress.
    async fn read_line(&mut self) -> std::io::Result<Line> {
        if self.io.buffer().is_empty() {
            self.flush().await?;
        }
        let mut line = Vec::new();
        let mut too_long = false;
        let asked = tokio::time::Instant::now();
        let mut deadline = asked + self.command_timeout();
        loop {
            let idle = self.txn.is_none();
            let buf = tokio::select! {
                biased;
                r = tokio::time::timeout_at(deadline, self.io.fill_buf()) => match r {
                    Ok(r) => Some(r?),
                    Err(_) => return Ok(Line::TimedOut),
                },
                // Between transactions a shutdown ends the session politely; inside one, it may finish.
                _ = self.shutdown.wait_for(|s| *s), if idle => return Ok(Line::Shutdown),
                // Stress began or ended: a wait already under way gets the new timeout too.
                Ok(()) = self.stress.changed() => None,
            };
            let Some(buf) = buf else {
                deadline = asked + self.command_timeout();
                continue;
            };
            if buf.is_empty() {
                return Ok(if line.is_empty() && !too_long { Line::Eof } else { Line::Text(line) });
            }
            match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    if !too_long {
                        line.extend_from_slice(&buf[..i]);
                    }
                    self.io.consume(i + 1);
                    break;
                }
                None => {
                    let n = buf.len();
                    if !too_long {
                        line.extend_from_slice(buf);
                    }
                    self.io.consume(n);
                }
            }
            if line.len() > MAX_COMMAND_LINE {
                too_long = true;
                line.clear();
            }
        }
        if too_long || line.len() > MAX_COMMAND_LINE {
            return Ok(Line::TooLong);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Line::Text(line))
    }

    async fn converse(&mut self) -> std::io::Result<()> {
        let hostname = self.state.config.hostname.clone();
        if self.gateway.is_shutting_down() {
            self.say(421, "4.3.2", &format!("{hostname} Service shutting down, try again later"));
            return self.flush().await;
        }
        self.say(220, "", &format!("{hostname} ESMTP mailsift"));
        loop {
            let line = match self.read_line().await? {
                Line::Text(l) => {
                    self.commands += 1;
                    l
                }
                Line::Eof => return Ok(()),
                Line::TimedOut => {
                    Counters::bump(&self.gateway.counters.timeouts);
                    self.say(421, "4.4.2", &format!("{hostname} Timeout waiting for a command, closing"));
                    return self.flush().await;
                }
                Line::Shutdown => {
                    self.say(421, "4.3.2", &format!("{hostname} Service shutting down, closing"));
                    return self.flush().await;
                }
                Line::TooLong => {
                    self.commands += 1;
                    self.say(500, "5.5.2", "Line too long");
                    if self.count_error() {
                        return self.flush().await;
                    }
                    continue;
                }
            };
            let cmd = match proto::parse_command(&line) {
                Ok(c) => c,
                Err(e) => {
                    self.say(e.code, e.enhanced, &e.text);
                    if self.count_error() {
                        return self.flush().await;
                    }
                    continue;
                }
            };
            match cmd {
                Command::Quit => {
                    self.say(221, "2.0.0", &format!("{hostname} Bye"));
                    return self.flush().await;
                }
                Command::Ehlo(name) | Command::Helo(name) if name.len() > 255 => {
                    self.say(501, "5.5.4", "Name too long");
                }
                Command::Ehlo(name) => {
                    self.client.helo = Some(name);
                    self.client.esmtp = true;
                    self.txn = None;
                    let ext = self.extensions();
                    self.say(250, "", &ext);
                }
                Command::Helo(name) => {
                    self.client.helo = Some(name);
                    self.client.esmtp = false;
                    self.txn = None;
                    self.say(250, "", &hostname);
                }
                Command::StartTls => {
                    if !self.start_tls().await? {
                        continue;
                    }
                }
                Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
                Command::Mail { from, params } => self.mail(from, params).await,
                Command::Rcpt { to } => self.rcpt(to).await,
                Command::Data => {
                    if self.ready_for_data() {
                        self.say(354, "", "End data with <CR><LF>.<CR><LF>");
                        self.flush().await?;
                        let data = self.read_data().await?;
                        self.finish(data).await;
                        self.junk = 0;
                    }
                }
                Command::Bdat { size, last } => {
                    self.bdat(size, last).await?;
                    self.junk = 0;
                }
                Command::Rset | Command::Noop | Command::Help | Command::Vrfy if self.junk_exceeded() => {
                    if self.count_error() {
                        return self.flush().await;
                    }
                }
                Command::Rset => {
                    self.txn = None;
                    self.chunks = None;
                    self.say(250, "2.0.0", "Reset");
                }
                Command::Noop => self.say(250, "2.0.0", "OK"),
                Command::Help => self.say(
                    214,
                    "2.0.0",
                    "mailsift: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP STARTTLS AUTH\nSee RFC 5321",
                ),
                Command::Vrfy => self.say(252, "2.5.2", "Cannot verify the user; send mail and it will be tried"),
            }
        }
    }

    /// Counts one junk command; true once the client is past the limit (the caller then answers with an error).
    fn junk_exceeded(&mut self) -> bool {
        self.junk = self.junk.saturating_add(1);
        if self.junk > JUNK_COMMAND_LIMIT {
            self.say(550, "5.7.0", "Too many commands without mail");
            return true;
        }
        false
    }

    /// Counts a protocol error; true when the client has made too many and is dropped.
    fn count_error(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= self.state.config.max_errors {
            self.say(421, "4.7.0", "Too many errors, closing");
            return true;
        }
        false
    }

    fn extensions(&self) -> String {
        let c = &self.state.config;
        let mut ext = vec![
            format!("{} greets {}", c.hostname, self.client.helo.as_deref().unwrap_or("")),
            "PIPELINING".into(),
            format!("SIZE {}", c.max_message_bytes),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if self.state.tls.is_some() && !self.client.tls {
            ext.push("STARTTLS".into());
        }
        if self.client.tls && !self.state.config.users.is_empty() && self.client.user.is_none() {
            ext.push("AUTH PLAIN LOGIN".into());
        }
        ext.join("\n")
    }

    /// Returns false when the upgrade was refused (the session goes on in plain text).
    async fn start_tls(&mut self) -> std::io::Result<bool> {
        let Some(tls) = self.state.tls.clone().filter(|_| !self.client.tls) else {
            self.say(454, "4.7.0", "TLS not available");
            return Ok(false);
        };
        self.say(220, "2.0.0", "Ready to start TLS");
        self.flush().await?;
        // RFC 3207 §6: anything the client pipelined after STARTTLS arrived in clear text and must not be
        // taken as if it came over TLS (the command-injection attack).
        if !self.io.buffer().is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "data pipelined after STARTTLS"));
        }
        let io = std::mem::replace(&mut self.io, BufReader::new(Stream::Closed));
        let Stream::Plain(tcp) = io.into_inner() else {
            return Err(std::io::Error::other("STARTTLS on a non-TCP stream"));
        };
        let timeout = self.command_timeout();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let tls_stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
        };
        self.io = BufReader::with_capacity(16 * 1024, Stream::ServerTls(Box::new(tls_stream)));
        // RFC 3207 §4.2: forget everything learned before TLS.
        self.client.tls = true;
        self.client.helo = None;
        self.client.esmtp = false;
        self.client.user = None;
        self.txn = None;
        Ok(true)
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<()> {
        if self.client.user.is_some() {
            self.say(503, "5.5.1", "Already authenticated");
            return Ok(());
        }
        if self.txn.is_some() {
            self.say(503, "5.5.1", "AUTH not allowed during a mail transaction");
            return Ok(());
        }
        if !self.client.tls {
            self.say(538, "5.7.11", "Encryption required for authentication: use STARTTLS first");
            return Ok(());
        }
        if self.state.config.users.is_empty() {
            self.say(502, "5.5.1", "Authentication is not enabled");
            return Ok(());
        }
        let credentials = match mechanism {
            "PLAIN" => {
                let response = match initial {
                    Some(r) if r != "=" => r,
                    _ => match self.challenge("").await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                proto::decode_plain(&response)
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => Some(r),
                    None => self.challenge(&proto::encode_b64("Username:")).await?,
                };
                let Some(user) = user else { return Ok(()) };
                let Some(pass) = self.challenge(&proto::encode_b64("Password:")).await? else { return Ok(()) };
                proto::decode_b64_text(&user).zip(proto::decode_b64_text(&pass))
            }
            _ => {
                self.say(504, "5.5.4", "Unrecognized authentication mechanism");
                return Ok(());
            }
        };
        let Some((user, pass)) = credentials else {
            self.say(501, "5.5.2", "Cannot decode the response");
            return Ok(());
        };
        let ip = self.client.peer.ip();
        let limits = auth::AuthLimits::from_config(&self.state.config);
        let limiter = &self.gateway.auth_limiter;
        let decision = limiter.decide(ip, &user, &limits, Instant::now());
        if decision == auth::AuthDecision::CheckAfterDelay {
            // The account is under attack from elsewhere: slowed, never locked, so its real user still gets in.
            tokio::time::sleep(auth::ACCOUNT_DELAY).await;
        }
        if decision == auth::AuthDecision::Refuse {
            // The password is not checked, so the answer tells nothing about it (nor about the account).
            tracing::warn!(client = %self.client.peer, user = %proto::sanitize(&user, 64), "authentication refused: too many failures");
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.say(454, "4.7.0", "Too many failed authentication attempts; try again later");
            return self.auth_error().await;
        }
        // Argon2 takes tens of milliseconds of CPU: off the async threads.
        let state = self.state.clone();
        let (name, password) = (user.clone(), pass);
        let ok = tokio::task::spawn_blocking(move || auth::verify_user(&state.config.users, &name, &password))
            .await
            .unwrap_or(false);
        if ok {
            limiter.succeeded(ip, &user, Instant::now());
            tracing::info!(client = %self.client.peer, user = %user, "authenticated");
            self.client.user = Some(user);
            self.say(235, "2.7.0", "Authentication successful");
            return Ok(());
        }
        limiter.failed(ip, &user, &limits, Instant::now());
        // The user name is logged to trace abuse; the password never is.
        tracing::warn!(client = %self.client.peer, user = %proto::sanitize(&user, 64), "authentication failed");
        // Slow down password guessing on this connection too.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.say(535, "5.7.8", "Authentication credentials invalid");
        self.auth_error().await
    }

    /// A failed AUTH counts as a protocol error; too many end the session.
    async fn auth_error(&mut self) -> std::io::Result<()> {
        if self.count_error() {
            self.flush().await?;
            return Err(std::io::Error::other("too many errors"));
        }
        Ok(())
    }

    /// Sends a 334 challenge and reads the answer; `None` when the client cancelled with `*`.
    async fn challenge(&mut self, text: &str) -> std::io::Result<Option<String>> {
        self.out.extend_from_slice(format!("334 {text}\r\n").as_bytes());
        match self.read_line().await? {
            Line::Text(l) if l == b"*" => {
                self.say(501, "5.7.0", "Authentication cancelled");
                Ok(None)
            }
            Line::Text(l) => Ok(Some(String::from_utf8_lossy(&l).into_owned())),
            _ => Err(std::io::Error::other("connection lost during authentication")),
        }
    }

    fn may_relay(&self) -> bool {
        self.client.user.is_some() || (!self.client.proxy_local && self.state.is_trusted(self.client.peer.ip()))
    }

    async fn mail(&mut self, from: String, params: MailParams) {
        if self.client.helo.is_none() {
            return self.say(503, "5.5.1", "Say EHLO first");
        }
        if self.txn.is_some() {
            return self.say(503, "5.5.1", "Nested MAIL command");
        }
        if params.size.is_some_and(|s| s > self.state.config.max_message_bytes) {
            return self.say(552, "5.3.4", "Message size exceeds the fixed maximum message size");
        }
        if params.smtputf8 && !self.client.esmtp {
            return self.say(555, "5.5.4", "SMTPUTF8 needs EHLO");
        }
        let may_relay = self.may_relay();
        if self.client.listener == Listener::Outbound && !may_relay {
            return self.say(530, "5.7.0", "Authentication required");
        }
        let direction = if may_relay { Direction::Outbound } else { Direction::Inbound };
        let mut door = None;
        if direction == Direction::Inbound {
            match self.door_check(&from).await {
                Err(refusal) => return self.say(550, "5.7.1", &refusal),
                Ok(facts) => door = facts,
            }
        }
        if let Some(r) = self.rate_limit(&from, direction, None).await {
            return self.say(r.code, r.enhanced, &r.text);
        }
        self.txn = Some(Transaction {
            mail_from: from,
            params,
            rcpts: Vec::new(),
            route: None,
            direction,
            started: Instant::now(),
            door,
        });
        self.say(250, "2.1.0", "Sender OK");
    }

    /// The connection-stage verdict: practices and lists of the client. Returns the 550 text when refused,
    /// else what was learned (DNS on), for the transaction's message.
    async fn door_check(&mut self, from: &str) -> Result<Option<Arc<DoorFacts>>, String> {
        let envelope = Envelope {
            client_ip: Some(self.client.peer.ip()),
            helo: self.client.helo.clone(),
            mail_from: Some(from.to_string()),
            tls: self.client.tls,
            ..Envelope::default()
        };
        // The client's list entries too (no message yet, so no URL lists): a list marked `reject_at_door` is
        // what refuses here.
        let door = match &self.state.gatherer {
            Some(g) => Some(Arc::new(g.gather_at_door(&envelope).await)),
            None => None,
        };
        let evidence = door.as_ref().map(|d| Evidence::from_sender(d.facts().clone())).unwrap_or_default();
        let verdict = self.state.engine.judge_connection(&envelope, &evidence);
        if !verdict.reject {
            return Ok(door);
        }
        let reason = verdict.reason.clone().unwrap_or_else(|| "sender refused".into());
        Counters::bump(&self.gateway.counters.refused_at_door);
        tracing::info!(client = %self.client.peer, reference = %verdict.id, reason = %reason, "refused at the door");
        append_log(&self.gateway, door_log_entry(&envelope, &verdict, &reason));
        Err(format!("Refused: {} [ref {}]", proto::sanitize(&reason, 200), verdict.id))
    }

    /// The rate limits of `[smtp.rate_limits]` at MAIL FROM (`rcpt` none) or RCPT TO: the refusal to answer,
    /// counted and logged, when a bucket is empty. Nothing to do without rules.
    async fn rate_limit(&self, from: &str, direction: Direction, rcpt: Option<&str>) -> Option<limits::Refusal> {
        let config = &self.state.config.rate_limits;
        if config.is_empty() {
            return None;
        }
        let attempt = limits::Attempt {
            ip: self.client.peer.ip(),
            sender: from,
            user: self.client.user.as_deref(),
            direction,
            recipient: rcpt,
        };
        let refusal = self.gateway.limits.check(config, attempt).await?;
        Counters::bump(&self.gateway.counters.rate_limited);
        tracing::info!(
            client = %self.client.peer,
            from = %proto::sanitize(from, 100),
            rcpt = %proto::sanitize(rcpt.unwrap_or(""), 100),
            reason = %refusal.text,
            "rate limited"
        );
        Some(refusal)
    }

    /// Greylisting at RCPT TO (`[smtp.greylisting]`): the 451 text when this triplet is deferred. Outbound
    /// mail, clients of good reputation and SPF-authenticated senders of the skip list pass; so does
    /// everything when the store does not answer (counted by the limiter).
    async fn greylisted(&self, txn: &Transaction, to: &str) -> Option<String> {
        let config = &self.state.config.greylisting;
        if !config.enabled || txn.direction == Direction::Outbound {
            return None;
        }
        if !config.skip_authenticated_domains.is_empty() {
            let facts = txn.door.as_ref().map(|d| d.facts());
            let spf_pass = facts.is_some_and(|f| f.spf == Some(mailsift_engine::evidence::SpfResult::Pass));
            let spf_domain = facts.and_then(|f| f.spf_domain.as_deref()).unwrap_or("");
            if spf_pass
                && spf_domain.eq_ignore_ascii_case(&proto::domain_of(&txn.mail_from))
                && config.skips_domain(spf_domain)
            {
                return None;
            }
        }
        let ip = self.client.peer.ip();
        if config.skip_good_reputation && self.state.reputation().is_some() {
            // The store may read the disk or ask Redis: off the async threads.
            let (state, min_ham) = (self.state.clone(), config.good_reputation_ham);
            let key = [(mailsift_engine::evidence::ReputationKind::Ip, limits::plain_ip(ip).to_string())];
            let good = tokio::task::spawn_blocking(move || {
                let rep = state.reputation()?;
                let facts = rep.lookup(&key, mailsift_engine::unix_now()).ok()?;
                Some(facts.entries.iter().any(|e| e.ham >= min_ham && e.spam * 10.0 <= e.ham))
            })
            .await;
            if matches!(good, Ok(Some(true))) {
                return None;
            }
        }
        let key = config.triplet_key(ip, &txn.mail_from, to);
        match self.gateway.limits.greylist(key, config.times()).await? {
            Grey::Known | Grey::Passed => None,
            Grey::Defer { wait_secs } => {
                Counters::bump(&self.gateway.counters.greylisted);
                tracing::info!(
                    client = %self.client.peer,
                    from = %proto::sanitize(&txn.mail_from, 100),
                    rcpt = %proto::sanitize(to, 100),
                    "greylisted"
                );
                Some(greylist::deferral_text(wait_secs))
            }
        }
    }

    async fn rcpt(&mut self, to: String) {
        let Some(txn) = &self.txn else {
            return self.say(503, "5.5.1", "Need MAIL before RCPT");
        };
        // RFC 5321 §4.5.1: the bare postmaster is ours to accept; it goes to the configured address.
        let to = if to == proto::POSTMASTER { self.state.postmaster().to_string() } else { to };
        if txn.rcpts.len() >= self.state.config.max_recipients {
            return self.say(452, "4.5.3", "Too many recipients");
        }
        if txn.rcpts.iter().any(|r| r.eq_ignore_ascii_case(&to)) {
            return self.say(250, "2.1.5", "Recipient OK (duplicate)");
        }
        if let Some(side) = self.state.config.reports.side_for(&to) {
            if txn.direction != Direction::Outbound {
                return self.say(550, "5.7.1", "Reports are accepted from the organisation's own mail servers only");
            }
            return self.add_recipient(to, Route::Report(side));
        }
        let domain = proto::domain_of(&to);
        if let Some(d) = self.state.local_domain(&domain) {
            // `victim%other.example@us`, `"victim@other.example"@us`, `other!victim@us`...: a next hop that
            // routes on the local part would relay for anyone through us.
            if proto::is_special_local_part(proto::local_part(&to)) && !d.allow_special_local_parts {
                Counters::bump(&self.gateway.counters.relay_denied);
                tracing::warn!(client = %self.client.peer, rcpt = %proto::sanitize(&to, 100), "routing syntax in a local part refused");
                append_log(&self.gateway, relay_denied_entry(&self.client.envelope(txn), &to));
                return self.say(
                    550,
                    "5.1.3",
                    "Local parts with %, !, @, :, quotes or backslashes are not accepted for this domain",
                );
            }
            if !d.recipients.is_empty() && !d.recipients.contains(&to.to_ascii_lowercase()) {
                return self.say(550, "5.1.1", "No such recipient here");
            }
        }
        let Some(route) = self.state.route_for(&to, txn.direction == Direction::Outbound) else {
            Counters::bump(&self.gateway.counters.relay_denied);
            tracing::warn!(client = %self.client.peer, rcpt = %proto::sanitize(&to, 100), "relaying denied");
            append_log(&self.gateway, relay_denied_entry(&self.client.envelope(txn), &to));
            return self.say(550, "5.7.1", "Relaying denied: this server does not accept mail for that domain");
        };
        if !to.is_ascii() && !txn.params.smtputf8 {
            return self.say(553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
        }
        // A recipient the transaction already holds was answered above; a recipient another transaction
        // must carry (add_recipient's 452) is counted here all the same, as its client will retry it.
        if let Some(r) = self.rate_limit(&txn.mail_from, txn.direction, Some(&to)).await {
            return self.say(r.code, r.enhanced, &r.text);
        }
        if let Some(text) = self.greylisted(txn, &to).await {
            return self.say(451, "4.7.1", &text);
        }
        self.add_recipient(to, route);
    }

    fn add_recipient(&mut self, to: String, route: Route) {
        let txn = self.txn.as_mut().expect("a transaction is open");
        // Inbound, one domain per transaction too: each domain may judge with its own thresholds and options.
        let other_domain = txn.direction == Direction::Inbound
            && txn.rcpts.first().is_some_and(|first| proto::domain_of(first) != proto::domain_of(&to));
        match &txn.route {
            Some(r) if *r != route || other_domain => {
                // One answer at the end of data must be true for every recipient: a recipient that goes
                // elsewhere comes in its own transaction (RFC 5321 §4.5.3.1.10; clients retry it).
                self.say(452, "4.5.3", "Too many recipients for this transaction; send the rest separately")
            }
            _ => {
                txn.route = Some(route);
                txn.rcpts.push(to);
                self.say(250, "2.1.5", "Recipient OK");
            }
        }
    }

    fn ready_for_data(&mut self) -> bool {
        match &self.txn {
            None => {
                self.say(503, "5.5.1", "Need MAIL and RCPT before DATA");
                false
            }
            Some(t) if t.rcpts.is_empty() => {
                self.say(554, "5.5.1", "No valid recipients");
                false
            }
            Some(_) if self.chunks.is_some() => {
                self.say(503, "5.5.1", "DATA after BDAT is not allowed");
                false
            }
            Some(_) => true,
        }
    }

    fn decoder(&self, framing: Framing) -> DataDecoder {
        let c = &self.state.config;
        DataDecoder::new(
            framing,
            c.bare_line_endings,
            usize::try_from(c.max_message_bytes).unwrap_or(usize::MAX),
            c.max_line_octets,
        )
    }

    /// Reads the message after 354 until CRLF.CRLF ([`DataDecoder`]). `Err` when the client is gone or too
    /// slow; `Ok(Err(problem))` when the message is refused (it was read to its end all the same).
    async fn read_data(&mut self) -> std::io::Result<Result<Vec<u8>, DataProblem>> {
        let total = tokio::time::Instant::now() + Duration::from_secs(self.state.config.data_total_secs);
        let mut decoder = self.decoder(Framing::Dotted);
        let mut block_started = tokio::time::Instant::now();
        loop {
            let deadline = (block_started + self.data_block_timeout()).min(total);
            let buf = tokio::select! {
                biased;
                r = tokio::time::timeout_at(deadline, self.io.fill_buf()) => match r {
                    Ok(r) => Some(r?),
                    Err(_) => None,
                },
                // Stress began: this wait gets the shorter timeout too (worked out again above).
                Ok(()) = self.stress.changed() => continue,
            };
            let Some(buf) = buf else {
                Counters::bump(&self.gateway.counters.timeouts);
                self.say(421, "4.4.2", "Timeout reading message data, closing");
                self.flush().await?;
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "data timeout"));
            };
            if buf.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client left during DATA"));
            }
            let used = decoder.feed(buf);
            self.io.consume(used);
            block_started = tokio::time::Instant::now();
            if decoder.is_done() {
                return Ok(decoder.finish());
            }
        }
    }

    /// Handles the end of a message (DATA or the last BDAT chunk): judge, act, answer.
    async fn finish(&mut self, data: Result<Vec<u8>, DataProblem>) {
        let Some(txn) = self.txn.take() else { return };
        self.chunks = None;
        let data = match data {
            Ok(d) => d,
            Err(problem) => {
                tracing::info!(client = %self.client.peer, ?problem, "message data refused");
                let max_line = self.state.config.max_line_octets;
                return match problem {
                    DataProblem::TooBig => {
                        self.say(552, "5.3.4", "Message size exceeds the fixed maximum message size")
                    }
                    DataProblem::LineTooLong => self.say(
                        550,
                        "5.6.0",
                        &format!(
                            "Message refused: a line is longer than {max_line} octets (RFC 5322 section 2.1.1 \
                             allows 998); fold long header lines and encode the body (quoted-printable or base64)"
                        ),
                    ),
                    DataProblem::BareLineEnding => self.say(
                        550,
                        "5.6.11",
                        "Message refused: bare CR or LF in the data; lines must end with CRLF (RFC 5321 section 2.3.8)",
                    ),
                    DataProblem::Nul => self.say(550, "5.6.11", "Message refused: NUL character in the data"),
                };
            }
        };
        let submission = Submission {
            envelope: self.client.envelope(&txn),
            route: txn.route.clone(),
            received_with: Some(self.client.protocol().to_string()),
            door: txn.door.clone(),
        };
        let answer = effects::process(&self.gateway, &self.state, submission, data).await;
        self.say(answer.code, &answer.enhanced, &answer.text);
    }

    async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<()> {
        let ok = match &self.txn {
            None => Some((503, "5.5.1", "Need MAIL and RCPT before BDAT")),
            Some(t) if t.rcpts.is_empty() => Some((554, "5.5.1", "No valid recipients")),
            Some(_) => None,
        };
        // The chunk is on the wire whatever we answer: read it to stay in step with the client. The decoder
        // keeps at most max_message_bytes and handles bare line ends and long lines as DATA does, across
        // chunk boundaries.
        let mut chunks = match ok {
            None => Some(self.chunks.take().unwrap_or_else(|| self.decoder(Framing::Chunked))),
            Some(_) => None,
        };
        let total = tokio::time::Instant::now() + Duration::from_secs(self.state.config.data_total_secs);
        let mut remaining = size;
        let mut scratch = [0u8; 16 * 1024];
        while remaining > 0 {
            let deadline = (tokio::time::Instant::now() + self.data_block_timeout()).min(total);
            let want = remaining.min(scratch.len() as u64) as usize;
            let n = match tokio::time::timeout_at(deadline, self.io.read(&mut scratch[..want])).await {
                Ok(r) => r?,
                Err(_) => {
                    Counters::bump(&self.gateway.counters.timeouts);
                    self.say(421, "4.4.2", "Timeout reading message data, closing");
                    self.flush().await?;
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "BDAT timeout"));
                }
            };
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client left during BDAT"));
            }
            if let Some(d) = chunks.as_mut() {
                d.feed(&scratch[..n]);
            }
            remaining -= n as u64;
        }
        let Some(chunks) = chunks else {
            if let Some((code, enhanced, text)) = ok {
                self.say(code, enhanced, text);
            }
            return Ok(());
        };
        if last {
            self.finish(chunks.finish()).await;
        } else {
            self.say(250, "2.0.0", &format!("{size} octets received"));
            self.chunks = Some(chunks);
        }
        Ok(())
    }
}
