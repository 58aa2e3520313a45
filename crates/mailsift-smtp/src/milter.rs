//! The milter server: mailsift as a mail filter for Postfix and Sendmail (the milter protocol, version 6),
//! for organisations that keep their MTA and will not put another one in front of it.
//!
//! The MTA connects (TCP or Unix socket, `[smtp.milter] listen`) and sends, per SMTP session, the connection,
//! HELO, envelope, headers and body of each message. At the end of the message the gateway's own judging and
//! effects run ([`mailsift_gateway::judge::judge`]: sender evidence, reputation, policy, learning), the core
//! decides the message's [`Disposition`], and the MTA is told what it means while its client is still waiting: accept with our verdict headers (forged ones removed,
//! the subject tagged), reject with our 550 text, tempfail, or, for quarantined mail, store it in our
//! quarantine and have the MTA discard it (or hold it, `quarantine = "hold"`). Every message is a row of the
//! message log, its `next_hop_response` saying what the MTA was told and the MTA's queue id.
//!
//! The protocol, in brief (from the milter protocol's public description): packets are a 4-byte big-endian
//! length, a command byte and its data; strings end with NUL. We negotiate "no reply" for every step
//! before the end of the message (one round trip per message instead of one per header), skip DATA and
//! unknown commands, and ask for header changes, recipient changes and quarantine.
//!
//! What it deliberately does not do: rewrite the body (we never change content), or act before the end of
//! the message (the connection-stage verdict needs the whole message's evidence here; the MTA's own
//! restrictions guard its door). A malformed or truncated stream ends that connection only, with a log
//! line; the MTA then applies its `milter_default_action`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_engine::{Direction, Envelope, Verdict};
use mailsift_gateway::config::MilterQuarantine;
use mailsift_gateway::disposition::Disposition;
use mailsift_gateway::effects::{self, loop_refusal, scan_failure};
use mailsift_gateway::judge::{judge, log_verdict, Judged};
use mailsift_gateway::log::{append_log, message_entry};
use mailsift_gateway::text::sanitize;
use mailsift_gateway::{Counters, Gateway, GatewayState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::door::Conn;

/// The protocol version we speak.
pub const VERSION: u32 = 6;

/// Largest packet accepted: body chunks are at most 64 KiB unless larger ones are negotiated (at most 1 MiB).
const MAX_PACKET: usize = 1024 * 1024 + 1024;

// Commands from the MTA.
const C_ABORT: u8 = b'A';
const C_BODY: u8 = b'B';
const C_CONNECT: u8 = b'C';
const C_MACRO: u8 = b'D';
const C_BODYEOB: u8 = b'E';
const C_HELO: u8 = b'H';
const C_QUIT_NC: u8 = b'K';
const C_HEADER: u8 = b'L';
const C_MAIL: u8 = b'M';
const C_EOH: u8 = b'N';
const C_OPTNEG: u8 = b'O';
const C_QUIT: u8 = b'Q';
const C_RCPT: u8 = b'R';
const C_DATA: u8 = b'T';
const C_UNKNOWN: u8 = b'U';

// Replies and modifications.
const R_ADDRCPT: u8 = b'+';
const R_DELRCPT: u8 = b'-';
const R_ACCEPT: u8 = b'a';
const R_CONTINUE: u8 = b'c';
const R_DISCARD: u8 = b'd';
const R_CHGHEADER: u8 = b'm';
const R_INSHEADER: u8 = b'i';
const R_QUARANTINE: u8 = b'q';
const R_REPLYCODE: u8 = b'y';

// Actions the filter may take (negotiated).
pub const F_ADDHDRS: u32 = 0x01;
pub const F_ADDRCPT: u32 = 0x04;
pub const F_DELRCPT: u32 = 0x08;
pub const F_CHGHDRS: u32 = 0x10;
pub const F_QUARANTINE: u32 = 0x20;

// Protocol steps: what the MTA leaves out, and the steps it does not wait for a reply to.
pub const P_NOUNKNOWN: u32 = 0x100;
pub const P_NODATA: u32 = 0x200;
pub const P_NR_HDR: u32 = 0x80;
pub const P_NR_CONN: u32 = 0x1000;
pub const P_NR_HELO: u32 = 0x2000;
pub const P_NR_MAIL: u32 = 0x4000;
pub const P_NR_RCPT: u32 = 0x8000;
pub const P_NR_DATA: u32 = 0x10000;
pub const P_NR_UNKN: u32 = 0x20000;
pub const P_NR_EOH: u32 = 0x40000;
pub const P_NR_BODY: u32 = 0x80000;
pub const P_HDR_LEADSPC: u32 = 0x100000;

/// The actions we ask for; what the MTA offers of them is what we get.
const WANT_ACTIONS: u32 = F_ADDHDRS | F_CHGHDRS | F_ADDRCPT | F_DELRCPT | F_QUARANTINE;
/// The protocol steps we ask for: no replies before the end of the message, no DATA or unknown commands,
/// header values with their leading space (so the scanned message is the one sent).
const WANT_PROTOCOL: u32 = P_NOUNKNOWN
    | P_NODATA
    | P_NR_HDR
    | P_NR_CONN
    | P_NR_HELO
    | P_NR_MAIL
    | P_NR_RCPT
    | P_NR_DATA
    | P_NR_UNKN
    | P_NR_EOH
    | P_NR_BODY
    | P_HDR_LEADSPC;

/// Why a milter connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum MilterError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the MTA sent nothing for {0} s")]
    Timeout(u64),
    #[error("stream truncated: {0}")]
    Truncated(&'static str),
    #[error("malformed packet: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> MilterError {
    MilterError::Malformed(what.into())
}

/// One packet from the MTA.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet {
    pub command: u8,
    pub data: Vec<u8>,
}

/// Reads one packet; `Ok(None)` when the MTA closed the connection between packets.
pub async fn read_packet<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<Option<Packet>, MilterError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(MilterError::Truncated("inside a packet length")) };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(malformed(format!("packet length {len} (allowed 1 to {MAX_PACKET})")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => MilterError::Truncated("inside a packet"),
        _ => MilterError::Io(e),
    })?;
    let command = buf[0];
    buf.remove(0);
    Ok(Some(Packet { command, data: buf }))
}

/// A packet as bytes on the wire.
pub fn packet(command: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    out.push(command);
    out.extend_from_slice(data);
    out
}

/// The NUL-terminated strings of a packet's data (the last one must be terminated too).
pub fn strings(data: &[u8]) -> Result<Vec<&[u8]>, MilterError> {
    if data.last() != Some(&0) {
        return Err(malformed("a string is not NUL-terminated"));
    }
    Ok(data[..data.len() - 1].split(|&b| b == 0).collect())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, MilterError> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| malformed("option negotiation is shorter than 12 bytes"))
}

/// What we negotiated with the MTA.
#[derive(Debug, Clone, Copy, Default)]
struct Negotiated {
    actions: u32,
    protocol: u32,
}

impl Negotiated {
    fn replies_to(&self, command: u8) -> bool {
        let flag = match command {
            C_CONNECT => P_NR_CONN,
            C_HELO => P_NR_HELO,
            C_MAIL => P_NR_MAIL,
            C_RCPT => P_NR_RCPT,
            C_DATA => P_NR_DATA,
            C_HEADER => P_NR_HDR,
            C_EOH => P_NR_EOH,
            C_BODY => P_NR_BODY,
            C_UNKNOWN => P_NR_UNKN,
            _ => return false,
        };
        self.protocol & flag == 0
    }
    fn can(&self, action: u32) -> bool {
        self.actions & action == action
    }
}

/// One message in progress.
#[derive(Default)]
struct Message {
    mail_from: Option<String>,
    rcpts: Vec<String>,
    /// Header fields as received: name, and the value after the colon.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    size: u64,
    too_big: bool,
}

/// One MTA connection: several SMTP sessions (QUIT_NC) and several messages each.
struct Session {
    gateway: Arc<Gateway>,
    state: Arc<GatewayState>,
    io: Box<dyn Conn>,
    peer: Option<SocketAddr>,
    negotiated: Negotiated,
    client_ip: Option<IpAddr>,
    client_name: Option<String>,
    helo: Option<String>,
    /// Macros the MTA sent (names without braces): the queue id `i`, `auth_authen`, `tls_version`.
    macros: rustc_hash::FxHashMap<String, String>,
    msg: Message,
    out: Vec<u8>,
}

/// Serves one MTA connection until it quits or fails; an error ends this connection only.
pub async fn run(gateway: Arc<Gateway>, io: Box<dyn Conn>, peer: Option<SocketAddr>) {
    let state = gateway.state();
    let mut s = Session {
        gateway,
        state,
        io,
        peer,
        negotiated: Negotiated::default(),
        client_ip: None,
        client_name: None,
        helo: None,
        macros: Default::default(),
        msg: Message::default(),
        out: Vec::new(),
    };
    match s.converse().await {
        Ok(()) => {}
        Err(e @ MilterError::Timeout(_)) => {
            Counters::bump(&s.gateway.counters.timeouts);
            tracing::info!(mta = ?peer, error = %e, "milter connection closed");
        }
        Err(e) => tracing::warn!(mta = ?peer, error = %e, "milter connection dropped"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), s.io.shutdown()).await;
}

impl Session {
    async fn converse(&mut self) -> Result<(), MilterError> {
        let timeout = self.state.config.command_timeout_secs.max(1);
        let mut shutdown = self.gateway.shutdown_signal();
        loop {
            let idle = self.msg.mail_from.is_none();
            let read = tokio::time::timeout(Duration::from_secs(timeout), read_packet(&mut self.io));
            let packet = tokio::select! {
                p = read => p.map_err(|_| MilterError::Timeout(timeout))??,
                // At shutdown an idle connection is closed; a message in progress is finished first.
                _ = shutdown.wait_for(|s| *s), if idle => return Ok(()),
            };
            let Some(p) = packet else { return Ok(()) };
            if !self.handle(p).await? {
                self.flush().await?;
                return Ok(());
            }
            self.flush().await?;
        }
    }

    fn reply(&mut self, command: u8, data: &[u8]) {
        self.out.extend_from_slice(&packet(command, data));
    }

    async fn flush(&mut self) -> Result<(), MilterError> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Handles one packet; false when the MTA quit.
    async fn handle(&mut self, p: Packet) -> Result<bool, MilterError> {
        match p.command {
            C_OPTNEG => self.negotiate(&p.data)?,
            C_MACRO => {
                if p.data.is_empty() {
                    return Err(malformed("macro packet without a command code"));
                }
                if p.data.len() > 1 {
                    let parts = strings(&p.data[1..])?;
                    for pair in parts.chunks(2) {
                        if let [name, value] = pair {
                            let name = text(name);
                            let name = name.trim_start_matches('{').trim_end_matches('}').to_string();
                            self.macros.insert(name, text(value));
                        }
                    }
                }
            }
            C_CONNECT => {
                let parts = p.data.iter().position(|&b| b == 0).ok_or_else(|| malformed("connect without host"))?;
                let host = text(&p.data[..parts]);
                let rest = &p.data[parts + 1..];
                self.client_ip = None;
                self.client_name = (!host.starts_with('[') && host != "unknown" && host.contains('.')).then_some(host);
                match rest.first() {
                    Some(b'4') | Some(b'6') => {
                        if rest.len() < 4 {
                            return Err(malformed("connect address is cut short"));
                        }
                        let addr = strings(&rest[3..])?;
                        let addr = text(addr.first().copied().unwrap_or_default());
                        let addr = addr.strip_prefix("IPv6:").unwrap_or(&addr);
                        self.client_ip = Some(
                            addr.parse().map_err(|_| malformed(format!("connect address {:?}", sanitize(addr, 60))))?,
                        );
                    }
                    // Unix socket, unknown: no client address.
                    Some(_) | None => {}
                }
                self.helo = None;
                self.continue_after(C_CONNECT);
            }
            C_HELO => {
                let parts = strings(&p.data)?;
                self.helo = parts.first().map(|h| text(h)).filter(|h| !h.is_empty());
                self.continue_after(C_HELO);
            }
            C_MAIL => {
                let parts = strings(&p.data)?;
                let from = parts.first().ok_or_else(|| malformed("MAIL without a sender"))?;
                self.msg = Message { mail_from: Some(address(from)), ..Message::default() };
                self.continue_after(C_MAIL);
            }
            C_RCPT => {
                let parts = strings(&p.data)?;
                let to = parts.first().ok_or_else(|| malformed("RCPT without a recipient"))?;
                if self.msg.mail_from.is_none() {
                    return Err(malformed("RCPT before MAIL"));
                }
                self.msg.rcpts.push(address(to));
                self.continue_after(C_RCPT);
            }
            C_DATA | C_UNKNOWN => self.continue_after(p.command),
            C_HEADER => {
                let parts = strings(&p.data)?;
                let [name, value] = parts[..] else {
                    return Err(malformed("a header packet needs a name and a value"));
                };
                let (name, value) = (text(name), text(value));
                self.add_size(name.len() as u64 + value.len() as u64 + 3);
                if !self.msg.too_big {
                    self.msg.headers.push((name, value));
                }
                self.continue_after(C_HEADER);
            }
            C_EOH => self.continue_after(C_EOH),
            C_BODY => {
                self.body(&p.data);
                self.continue_after(C_BODY);
            }
            C_BODYEOB => {
                self.body(&p.data);
                if self.msg.mail_from.is_none() {
                    return Err(malformed("end of message before MAIL"));
                }
                self.end_of_message().await;
                self.msg = Message::default();
            }
            C_ABORT => self.msg = Message::default(),
            C_QUIT => return Ok(false),
            C_QUIT_NC => {
                // The MTA reuses the connection for another SMTP session.
                self.msg = Message::default();
                self.macros.clear();
                (self.client_ip, self.client_name, self.helo) = (None, None, None);
            }
            other => return Err(malformed(format!("unknown command {:?}", other as char))),
        }
        Ok(true)
    }

    fn continue_after(&mut self, command: u8) {
        if self.negotiated.replies_to(command) {
            self.reply(R_CONTINUE, b"");
        }
    }

    fn add_size(&mut self, n: u64) {
        self.msg.size += n;
        if self.msg.size > self.state.config.max_message_bytes && !self.msg.too_big {
            // Keep counting, stop keeping: the answer at the end is 552 and nothing is judged.
            self.msg.too_big = true;
            self.msg.headers = Vec::new();
            self.msg.body = Vec::new();
        }
    }

    fn body(&mut self, chunk: &[u8]) {
        self.add_size(chunk.len() as u64);
        if !self.msg.too_big {
            self.msg.body.extend_from_slice(chunk);
        }
    }

    fn negotiate(&mut self, data: &[u8]) -> Result<(), MilterError> {
        let version = u32_at(data, 0)?;
        let actions = u32_at(data, 4)?;
        let protocol = u32_at(data, 8)?;
        if version < 2 {
            return Err(malformed(format!("milter protocol version {version} is too old (2 to {VERSION} spoken)")));
        }
        self.negotiated = Negotiated { actions: actions & WANT_ACTIONS, protocol: protocol & WANT_PROTOCOL };
        let mut reply = Vec::with_capacity(12);
        reply.extend_from_slice(&version.min(VERSION).to_be_bytes());
        reply.extend_from_slice(&self.negotiated.actions.to_be_bytes());
        reply.extend_from_slice(&self.negotiated.protocol.to_be_bytes());
        self.reply(C_OPTNEG, &reply);
        tracing::debug!(mta = ?self.peer, version, actions = self.negotiated.actions, protocol = self.negotiated.protocol, "milter negotiated");
        Ok(())
    }

    /// The message as the MTA will deliver it (before our changes), with CRLF line ends.
    fn raw_message(&self) -> Vec<u8> {
        let lead = if self.negotiated.protocol & P_HDR_LEADSPC != 0 { "" } else { " " };
        let mut raw = Vec::with_capacity(self.msg.body.len() + 64 * self.msg.headers.len() + 2);
        for (name, value) in &self.msg.headers {
            raw.extend_from_slice(name.as_bytes());
            raw.push(b':');
            raw.extend_from_slice(lead.as_bytes());
            raw.extend_from_slice(crlf(value).as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&self.msg.body);
        raw
    }

    fn envelope(&self) -> Envelope {
        let user = self.macros.get("auth_authen").filter(|u| !u.is_empty()).cloned();
        // The gateway's rule: mail from trusted networks or authenticated users is the organisation's own.
        let outbound = user.is_some() || self.client_ip.is_some_and(|ip| self.state.is_trusted(ip));
        Envelope {
            client_ip: self.client_ip,
            helo: self.helo.clone(),
            client_name: self.client_name.clone(),
            mail_from: self.msg.mail_from.clone(),
            rcpt_to: self.msg.rcpts.clone(),
            direction: if outbound { Direction::Outbound } else { Direction::Inbound },
            authenticated_user: user,
            tls: self.macros.get("tls_version").is_some_and(|v| !v.is_empty()),
        }
    }

    /// Judges the message, applies the effects and tells the MTA what to do; logs the transaction.
    async fn end_of_message(&mut self) {
        let started = Instant::now();
        let envelope = self.envelope();
        let queue_id = self.macros.get("i").cloned().unwrap_or_default();
        let mut entry = message_entry(&envelope, self.msg.size, "data");
        let told = |what: &str| {
            let q = if queue_id.is_empty() {
                String::new()
            } else {
                format!(" (MTA queue id {})", sanitize(&queue_id, 40))
            };
            Some(format!("milter: {what}{q}"))
        };
        if self.msg.too_big {
            entry.reference_id = mailsift_engine::new_reference_id();
            entry.action = "refused".into();
            entry.reason = Some("message too big".into());
            entry.next_hop_response = told("reject 552");
            append_log(&self.gateway, entry);
            self.reply_code(552, "5.3.4", "Message too big for the filter");
            return;
        }
        let raw = self.raw_message();
        if let Some(refusal) = loop_refusal(&self.state, &mut entry, &raw) {
            entry.next_hop_response = told("reject 554");
            append_log(&self.gateway, entry);
            self.reply_code(refusal.code, &refusal.enhanced, &refusal.text);
            return;
        }
        let (gateway, state) = (self.gateway.clone(), self.state.clone());
        let Judged { verdict, meta, data, envelope } = match judge(&gateway, &state, envelope, raw, false, None).await {
            Ok(j) => j,
            Err(e) => {
                let refusal = scan_failure(&gateway, &mut entry, &e);
                entry.next_hop_response = told("tempfail");
                append_log(&gateway, entry);
                self.reply_code(refusal.code, &refusal.enhanced, &refusal.text);
                return;
            }
        };
        let shown = log_verdict(&mut entry, &verdict, meta);
        let disposition = Disposition::of(&verdict, &envelope.rcpt_to);
        let (action, what, reason) = self.act(&verdict, &disposition, envelope.direction, data, shown).await;
        entry.action = action.into();
        entry.next_hop_response = told(&what);
        entry.reason = mailsift_gateway::judge::merge_reasons(entry.reason.take(), reason);
        tracing::info!(
            reference = %verdict.id,
            mta = ?self.peer,
            queue_id = %queue_id,
            rcpts = self.msg.rcpts.len(),
            size = self.msg.size,
            score = verdict.score,
            action,
            milter = %what,
            "message"
        );
        // The row is committed before the MTA hears the answer (replies are flushed after this returns).
        effects::record(&gateway, entry, started).await;
    }

    /// The message's disposition in milter terms: the core quarantines (the quarantine is ours), the MTA is
    /// told the rest. Returns the logged action, what the MTA was told, and a reason when it is not the
    /// verdict's.
    async fn act(
        &mut self,
        verdict: &Verdict,
        disposition: &Disposition,
        direction: Direction,
        data: Vec<u8>,
        shown: (Option<String>, Option<String>),
    ) -> (&'static str, String, Option<String>) {
        let id = &verdict.id;
        let accepted = match disposition {
            Disposition::Defer { reason, answer } => {
                self.reply_code(answer.code, &answer.enhanced, &answer.text);
                return ("tempfail", format!("tempfail {}", answer.code), Some(reason.clone()));
            }
            Disposition::Reject { answer } => {
                self.reply_code(answer.code, &answer.enhanced, &answer.text);
                return ("reject", format!("reject {}", answer.code), None);
            }
            Disposition::Accept(a) => a,
        };
        if !accepted.quarantine.is_empty() {
            let bytes = verdict.apply_headers(&data);
            let mail_from = self.msg.mail_from.clone().unwrap_or_default();
            let to = accepted.quarantine.clone();
            if let Err(e) = effects::quarantine(&self.gateway, verdict, to, &mail_from, shown, direction, bytes).await {
                let failed = effects::storage_failure(id, &e);
                self.reply_code(failed.answer.code, &failed.answer.enhanced, &failed.answer.text);
                return ("tempfail", format!("tempfail {}", failed.answer.code), failed.reason);
            }
        }
        let delivered = !accepted.deliver.is_empty();
        let hold = self.state.config.milter.quarantine == MilterQuarantine::Hold && self.negotiated.can(F_QUARANTINE);
        if !delivered && !hold {
            self.reply(R_DISCARD, b"");
            return ("quarantine", "discard (in mailsift's quarantine)".into(), None);
        }
        // Recipient changes: a redirect replaces every recipient; quarantined recipients are taken off (their
        // copy is ours now); a rule's copy is one more recipient (only a delivered message can carry it).
        let mut changes = Vec::new();
        let can_rcpt = self.negotiated.can(F_ADDRCPT | F_DELRCPT);
        if let Some(to) = &accepted.redirect {
            if can_rcpt && delivered {
                for r in &self.msg.rcpts.clone() {
                    self.reply(R_DELRCPT, &cstr(&format!("<{r}>")));
                }
                self.reply(R_ADDRCPT, &cstr(&format!("<{to}>")));
                changes.push(format!("redirected to {to}"));
            }
        } else if delivered && !accepted.quarantine.is_empty() && self.negotiated.can(F_DELRCPT) {
            for r in &accepted.quarantine {
                self.reply(R_DELRCPT, &cstr(&format!("<{r}>")));
            }
            changes.push(format!("{} recipient(s) quarantined", accepted.quarantine.len()));
        }
        if self.negotiated.can(F_ADDRCPT) && delivered {
            for to in &accepted.copies {
                self.reply(R_ADDRCPT, &cstr(&format!("<{to}>")));
                changes.push(format!("copy to {to}"));
            }
        }
        self.header_changes(verdict, accepted.tag);
        let action = disposition.action_name();
        let what = match action {
            "quarantine" => {
                self.reply(R_QUARANTINE, &cstr(&format!("mailsift quarantine [ref {id}]")));
                "hold (also in mailsift's quarantine)".to_string()
            }
            "tag" => "accept, tagged".to_string(),
            _ => "accept".to_string(),
        };
        self.reply(R_ACCEPT, b"");
        let what = if changes.is_empty() { what } else { format!("{what}; {}", changes.join(", ")) };
        (action, what, None)
    }

    /// Removes forged verdict headers, tags the subject, and puts our headers at the top.
    fn header_changes(&mut self, verdict: &Verdict, tag: bool) {
        let lead = if self.negotiated.protocol & P_HDR_LEADSPC != 0 { " " } else { "" };
        if self.negotiated.can(F_CHGHDRS) {
            let authserv_id = verdict.authserv_id();
            // The n-th field of a name is addressed by n (from 1); delete the last ones first so the numbers
            // of the others do not move.
            let mut seen: rustc_hash::FxHashMap<String, u32> = Default::default();
            let mut deletions = Vec::new();
            for (name, value) in &self.msg.headers {
                let lower = name.to_ascii_lowercase();
                let n = seen.entry(lower.clone()).or_insert(0);
                *n += 1;
                let forged_results = lower.trim_end() == "authentication-results"
                    && authserv_id.is_some_and(|id| mailsift_engine::verdict::claims_authserv_id(value, id));
                if lower.starts_with("x-mailsift-") || forged_results {
                    deletions.push((name.clone(), *n));
                }
            }
            for (name, index) in deletions.into_iter().rev() {
                let mut d = index.to_be_bytes().to_vec();
                d.extend_from_slice(&cstr(&name));
                d.push(0);
                self.reply(R_CHGHEADER, &d);
            }
            let subject_tag = self.state.config.subject_tag.clone();
            if tag && !subject_tag.is_empty() {
                match self.msg.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("subject")) {
                    Some((_, value)) => {
                        let v = value.trim_start();
                        if !v.starts_with(&subject_tag) {
                            let new = format!("{lead}{subject_tag} {v}");
                            let mut d = 1u32.to_be_bytes().to_vec();
                            d.extend_from_slice(&cstr("Subject"));
                            d.extend_from_slice(&cstr(&new));
                            self.reply(R_CHGHEADER, &d);
                        }
                    }
                    None => self.insert_header(0, "Subject", &format!("{lead}{subject_tag}")),
                }
            }
        }
        if self.negotiated.can(F_ADDHDRS) {
            for (i, (name, value)) in verdict.headers().into_iter().enumerate() {
                // Folded values keep their line breaks as LF + tab, as the MTA stores them.
                let value = value.replace("\r\n", "\n");
                self.insert_header(i as u32, &name, &format!("{lead}{value}"));
            }
        }
    }

    fn insert_header(&mut self, index: u32, name: &str, value: &str) {
        let mut d = index.to_be_bytes().to_vec();
        d.extend_from_slice(&cstr(name));
        d.extend_from_slice(&cstr(value));
        self.reply(R_INSHEADER, &d);
    }

    /// A final SMTP reply for the message. `%` is doubled: MTAs expand it as a format character.
    fn reply_code(&mut self, code: u16, enhanced: &str, text: &str) {
        let text = sanitize(text, 400).replace('%', "%%");
        self.reply(R_REPLYCODE, &cstr(&format!("{code} {enhanced} {text}")));
    }
}

/// A NUL-terminated string.
fn cstr(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend(s.bytes().filter(|&b| b != 0));
    v.push(0);
    v
}

/// `<a@b>` (with any ESMTP parameters already split off by the MTA) as `a@b`.
fn address(raw: &[u8]) -> String {
    let s = text(raw);
    s.trim().trim_start_matches('<').trim_end_matches('>').to_string()
}

/// LF line breaks inside a folded header value as CRLF.
fn crlf(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\n') {
        std::borrow::Cow::Owned(value.replace("\r\n", "\n").replace('\n', "\r\n"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn packets_round_trip_and_bad_lengths_are_named() {
        let mut wire = packet(C_HELO, b"client.example\0");
        wire.extend_from_slice(&packet(C_QUIT, b""));
        let mut r = &wire[..];
        assert_eq!(
            read_packet(&mut r).await.unwrap(),
            Some(Packet { command: C_HELO, data: b"client.example\0".to_vec() })
        );
        assert_eq!(read_packet(&mut r).await.unwrap(), Some(Packet { command: C_QUIT, data: vec![] }));
        assert!(read_packet(&mut r).await.unwrap().is_none());
        let mut zero = &[0u8, 0, 0, 0][..];
        assert!(matches!(read_packet(&mut zero).await, Err(MilterError::Malformed(_))));
        let mut huge = &[0x7fu8, 0, 0, 0, b'B'][..];
        assert!(matches!(read_packet(&mut huge).await, Err(MilterError::Malformed(_))));
        let mut cut = &[0u8, 0, 0, 9, b'H', b'x'][..];
        assert!(matches!(read_packet(&mut cut).await, Err(MilterError::Truncated(_))));
        let mut cut_len = &[0u8, 0][..];
        assert!(matches!(read_packet(&mut cut_len).await, Err(MilterError::Truncated(_))));
    }

    #[test]
    fn strings_must_be_terminated() {
        assert_eq!(strings(b"Subject\0hello\0").unwrap(), vec![&b"Subject"[..], &b"hello"[..]]);
        assert!(strings(b"Subject\0hello").is_err());
        assert_eq!(address(b"<alice@example.com>"), "alice@example.com");
        assert_eq!(address(b"<>"), "");
    }

    #[test]
    fn no_reply_steps_follow_the_negotiation() {
        let n = Negotiated { actions: F_ADDHDRS, protocol: P_NR_HDR | P_NR_BODY };
        assert!(!n.replies_to(C_HEADER));
        assert!(!n.replies_to(C_BODY));
        assert!(n.replies_to(C_RCPT));
        assert!(!n.replies_to(C_MACRO));
        assert!(n.can(F_ADDHDRS));
        assert!(!n.can(F_ADDHDRS | F_CHGHDRS));
    }
}
