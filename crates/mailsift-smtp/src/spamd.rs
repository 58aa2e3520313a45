//! The spamd protocol: mailsift answering like a SpamAssassin daemon, so tools that already call `spamc` (Exim's
//! `spam` condition, Haraka, procmail recipes, mail clients' plugins) use it without changes.
//!
//! One request per connection (protocol `SPAMC/1.x`): a command line, headers (`Content-length`, `User`, and
//! for TELL `Message-class`, `Set`, `Remove`), a blank line, the message. Commands: CHECK (the verdict line
//! only), SYMBOLS (the symbols that fired), REPORT and REPORT_IFSPAM (a readable report), PROCESS (the message
//! with our headers), HEADERS (only its header block), PING, SKIP and TELL (learn or forget, when
//! `allow_tell` is on).
//!
//! Judging is the gateway's ([`mailsift_gateway::judge::judge`]), and so is what the verdict means
//! ([`Disposition`]: spam is what the gateway would not deliver untagged): the envelope comes from the message's own trace
//! headers (spamd clients send none), and the verdict feeds reputation and auto-learning and is a row of the
//! message log (stage `spamd`). The caller owns the message, so nothing is quarantined or rejected here.
//!
//! Scores: `Spam: True ; <score> / <required>` uses the tag threshold as "required", and the score shown is
//! nudged, when the policy decided against the score (an allowed sender's high score, a blocked sender's low
//! one), so that the usual `score >= required` test agrees with our verdict. The headers keep the real score.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_engine::classify::{LearnOutcome, Side};
use mailsift_engine::{Envelope, Verdict};
use mailsift_gateway::disposition::Disposition;
use mailsift_gateway::headers::{find_header_end, tag_subject};
use mailsift_gateway::judge::{judge, log_verdict, Judged};
use mailsift_gateway::log::{append_log, commit_log, message_entry};
use mailsift_gateway::text::sanitize;
use mailsift_gateway::{Gateway, GatewayState};
use mailsift_store::LogEntry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::door::Conn;

/// Longest request or header line.
const MAX_LINE: usize = 8192;
/// Most header lines in one request.
const MAX_HEADERS: usize = 64;

// spamd's exit codes (sysexits.h), which it uses as status codes.
const EX_OK: u16 = 0;
const EX_USAGE: u16 = 64;
const EX_DATAERR: u16 = 65;
const EX_UNAVAILABLE: u16 = 69;
const EX_SOFTWARE: u16 = 70;
const EX_TEMPFAIL: u16 = 75;
const EX_PROTOCOL: u16 = 76;
const EX_NOPERM: u16 = 77;
const EX_TOOBIG: u16 = 98;

/// The commands of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Check,
    Symbols,
    Report,
    ReportIfSpam,
    Process,
    Headers,
    Ping,
    Skip,
    Tell,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "CHECK" => Command::Check,
            "SYMBOLS" => Command::Symbols,
            "REPORT" => Command::Report,
            "REPORT_IFSPAM" => Command::ReportIfSpam,
            "PROCESS" => Command::Process,
            "HEADERS" => Command::Headers,
            "PING" => Command::Ping,
            "SKIP" => Command::Skip,
            "TELL" => Command::Tell,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Command::Check => "CHECK",
            Command::Symbols => "SYMBOLS",
            Command::Report => "REPORT",
            Command::ReportIfSpam => "REPORT_IFSPAM",
            Command::Process => "PROCESS",
            Command::Headers => "HEADERS",
            Command::Ping => "PING",
            Command::Skip => "SKIP",
            Command::Tell => "TELL",
        }
    }
}

/// A request that could not be served, with the status code the client is told.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct RequestError {
    pub code: u16,
    pub text: String,
}

fn refuse(code: u16, text: impl Into<String>) -> RequestError {
    RequestError { code, text: text.into() }
}

/// One parsed request head.
#[derive(Debug, Default)]
pub struct Request {
    pub command: Option<Command>,
    pub content_length: Option<usize>,
    pub user: Option<String>,
    pub message_class: Option<Side>,
    pub set_local: bool,
    pub remove_local: bool,
}

/// Parses the request line (`CHECK SPAMC/1.5`).
pub fn parse_request_line(line: &str) -> Result<Command, RequestError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (cmd, proto) =
        line.split_once(' ').ok_or_else(|| refuse(EX_PROTOCOL, "bad request line: no protocol version"))?;
    let version =
        proto.strip_prefix("SPAMC/").ok_or_else(|| refuse(EX_PROTOCOL, "bad request line: expected SPAMC/1.x"))?;
    if !version.starts_with("1.") {
        return Err(refuse(
            EX_PROTOCOL,
            format!("protocol version {} is not supported (1.x is)", sanitize(version, 20)),
        ));
    }
    Command::parse(cmd).ok_or_else(|| refuse(EX_PROTOCOL, format!("unknown command {}", sanitize(cmd, 30))))
}

/// Adds one header line to the request.
pub fn parse_header(req: &mut Request, line: &str) -> Result<(), RequestError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (name, value) =
        line.split_once(':').ok_or_else(|| refuse(EX_PROTOCOL, format!("bad header line: {}", sanitize(line, 60))))?;
    let value = value.trim();
    let list_has_local = |v: &str| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("local"));
    match name.trim().to_ascii_lowercase().as_str() {
        "content-length" => {
            let n = value
                .parse::<usize>()
                .map_err(|_| refuse(EX_PROTOCOL, format!("bad Content-length: {}", sanitize(value, 30))))?;
            req.content_length = Some(n);
        }
        "user" => req.user = Some(sanitize(value, 100)),
        "message-class" => {
            req.message_class = Some(match value.to_ascii_lowercase().as_str() {
                "spam" => Side::Spam,
                "ham" => Side::Ham,
                _ => {
                    return Err(refuse(
                        EX_PROTOCOL,
                        format!("Message-class must be spam or ham, not {}", sanitize(value, 20)),
                    ))
                }
            })
        }
        "set" => req.set_local |= list_has_local(value),
        "remove" => req.remove_local |= list_has_local(value),
        "compress" => return Err(refuse(EX_PROTOCOL, "compressed requests are not supported (run spamc without -z)")),
        // Other headers (spamc's own extensions) do not change the answer.
        _ => {}
    }
    Ok(())
}

/// Serves one spamd connection (one request); an error ends this connection only.
pub async fn run(gateway: Arc<Gateway>, io: Box<dyn Conn>, peer: Option<SocketAddr>) {
    let state = gateway.state();
    let mut io = BufReader::with_capacity(16 * 1024, io);
    let started = Instant::now();
    let answer = match serve(&gateway, &state, &mut io, peer).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(client = ?peer, code = e.code, error = %e, "spamd request refused");
            format!("SPAMD/1.0 {} {}\r\n", e.code, sanitize(&e.text, 300)).into_bytes()
        }
    };
    let w = io.get_mut();
    let limit = Duration::from_secs(state.config.command_timeout_secs.max(1));
    let _ = tokio::time::timeout(limit, async {
        w.write_all(&answer).await?;
        w.flush().await?;
        w.shutdown().await
    })
    .await;
    gateway.counters.observe_latency(started.elapsed());
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, limit: Duration) -> Result<String, RequestError> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, (&mut *r).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)).await;
    match read {
        Err(_) => Err(refuse(EX_TEMPFAIL, "timed out waiting for the request")),
        Ok(Err(e)) => Err(refuse(EX_PROTOCOL, format!("read error: {e}"))),
        Ok(Ok(0)) => Err(refuse(EX_PROTOCOL, "connection closed before the request ended")),
        Ok(Ok(_)) if buf.len() > MAX_LINE => Err(refuse(EX_PROTOCOL, "request line too long")),
        Ok(Ok(_)) if !buf.ends_with(b"\n") => Err(refuse(EX_PROTOCOL, "request truncated inside a line")),
        Ok(Ok(_)) => Ok(String::from_utf8_lossy(&buf).into_owned()),
    }
}

/// Reads the request and answers it (`None`: SKIP, nothing to say).
async fn serve<R: tokio::io::AsyncBufRead + Unpin>(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    r: &mut R,
    peer: Option<SocketAddr>,
) -> Result<Option<Vec<u8>>, RequestError> {
    let limit = Duration::from_secs(state.config.command_timeout_secs.max(1));
    let command = parse_request_line(&read_line(r, limit).await?)?;
    if command == Command::Ping {
        return Ok(Some(b"SPAMD/1.5 0 PONG\r\n".to_vec()));
    }
    let mut req = Request { command: Some(command), ..Request::default() };
    let mut n = 0;
    loop {
        let line = read_line(r, limit).await?;
        if line == "\r\n" || line == "\n" {
            break;
        }
        n += 1;
        if n > MAX_HEADERS {
            return Err(refuse(EX_PROTOCOL, "too many header lines"));
        }
        parse_header(&mut req, &line)?;
    }
    if command == Command::Skip {
        return Ok(None);
    }
    let max = state.config.max_message_bytes as usize;
    let total = Duration::from_secs(state.config.data_total_secs.max(1));
    let body = match req.content_length {
        Some(len) if len > max => {
            return Err(refuse(EX_TOOBIG, format!("message of {len} bytes is larger than {max}")))
        }
        Some(len) => {
            let mut body = vec![0u8; len];
            let mut got = 0;
            let read = tokio::time::timeout(total, async {
                while got < len {
                    match r.read(&mut body[got..]).await {
                        Ok(0) => break,
                        Ok(k) => got += k,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
            .await;
            match read {
                Err(_) => {
                    return Err(refuse(EX_TEMPFAIL, format!("timed out reading the message ({got} of {len} bytes)")))
                }
                Ok(Err(e)) => return Err(refuse(EX_PROTOCOL, format!("read error: {e}"))),
                Ok(Ok(())) if got < len => {
                    return Err(refuse(
                        EX_PROTOCOL,
                        format!("message truncated: {got} of {len} bytes (Content-length)"),
                    ))
                }
                Ok(Ok(())) => body,
            }
        }
        // Old clients send no length: the message runs to the end of the stream.
        None => {
            let mut body = Vec::new();
            let read = tokio::time::timeout(total, (&mut *r).take(max as u64 + 1).read_to_end(&mut body)).await;
            match read {
                Err(_) => return Err(refuse(EX_TEMPFAIL, "timed out reading the message")),
                Ok(Err(e)) => return Err(refuse(EX_PROTOCOL, format!("read error: {e}"))),
                Ok(Ok(_)) if body.len() > max => {
                    return Err(refuse(EX_TOOBIG, format!("message larger than {max} bytes")))
                }
                Ok(Ok(_)) => body,
            }
        }
    };
    if body.is_empty() {
        return Err(refuse(EX_DATAERR, "empty message"));
    }
    if command == Command::Tell {
        return tell(gateway, state, &req, body, peer).await.map(Some);
    }
    check(gateway, state, command, &req, body, peer).await.map(Some)
}

/// The score shown to the client, so that `score >= required` agrees with our verdict.
pub fn shown_score(score: f64, required: f64, spam: bool) -> f64 {
    // One decimal, as spamd shows it; rounding must not cross the threshold.
    if spam {
        (score.max(required) * 10.0).ceil() / 10.0
    } else {
        ((score.min(required - 0.1)) * 10.0).floor() / 10.0
    }
}

async fn check(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    command: Command,
    req: &Request,
    body: Vec<u8>,
    peer: Option<SocketAddr>,
) -> Result<Vec<u8>, RequestError> {
    let size = body.len() as u64;
    let Judged { verdict, meta, data, envelope } =
        judge(gateway, state, Envelope::default(), body, true, None).await.map_err(|e| {
            tracing::error!(error = %e, "scan failed");
            refuse(EX_SOFTWARE, "internal scan failure")
        })?;
    // A defer decides nothing about the content, and spamd cannot say "later": the verdict's action answers.
    let spam = Disposition::of(&verdict, &envelope.rcpt_to).is_spam().unwrap_or_else(|| verdict.action.is_spam());
    let required = verdict.thresholds.tag;
    let score = shown_score(verdict.score, required, spam);
    let spam_line = format!("Spam: {} ; {score:.1} / {required:.1}\r\n", if spam { "True" } else { "False" });

    let mut entry = message_entry(&envelope, size, "spamd");
    entry.action = verdict.action.as_str().into();
    log_verdict(&mut entry, &verdict, meta);
    let user = req.user.as_deref().map(|u| format!(" for user {u}")).unwrap_or_default();
    entry.next_hop_response = Some(format!("spamd {}{user}: {}", command.name(), spam_line.trim_end()));
    commit_log(gateway, entry).await;
    tracing::info!(reference = %verdict.id, client = ?peer, command = command.name(), score = verdict.score, action = verdict.action.as_str(), "spamd");

    let body: Vec<u8> = match command {
        Command::Check => Vec::new(),
        Command::Symbols => {
            let names: Vec<&str> =
                verdict.symbols.iter().filter(|s| s.asf_mode != Some("test")).map(|s| s.name.as_str()).collect();
            names.join(",").into_bytes()
        }
        Command::Report => report(state, &verdict, score).into_bytes(),
        Command::ReportIfSpam if spam => report(state, &verdict, score).into_bytes(),
        Command::ReportIfSpam => Vec::new(),
        Command::Process | Command::Headers => {
            let processed = processed(state, &verdict, &data, score, spam);
            if command == Command::Headers {
                processed[..header_block_end(&processed)].to_vec()
            } else {
                processed
            }
        }
        Command::Ping | Command::Skip | Command::Tell => unreachable!("answered before judging"),
    };
    let mut out = format!("SPAMD/1.1 {EX_OK} EX_OK\r\n").into_bytes();
    if command != Command::Check {
        out.extend_from_slice(format!("Content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(spam_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Ok(out)
}

/// The report for REPORT: the verdict and every symbol with its score and description.
fn report(state: &GatewayState, v: &Verdict, shown: f64) -> String {
    let registry = state.engine.registry();
    let mut s = format!(
        "mailsift verdict {}: {} (score {shown:.1}, required {:.1}, SCL {})\r\n",
        v.id,
        v.action.as_str(),
        v.thresholds.tag,
        v.scl
    );
    if let Some(rule) = &v.decided_by {
        s.push_str(&format!("Decided by: {}\r\n", sanitize(rule, 200)));
    }
    s.push_str("\r\n  score symbol                          description\r\n");
    s.push_str(" ------ ------------------------------- ----------------------------------------\r\n");
    for sym in v.symbols.iter().filter(|s| s.asf_mode != Some("test")) {
        let description = registry.by_name(&sym.name).map(|d| d.description.as_str()).unwrap_or("");
        let detail = if sym.detail.is_empty() { String::new() } else { format!(" [{}]", sanitize(&sym.detail, 80)) };
        s.push_str(&format!("{:>7.2} {:<31} {}{}\r\n", sym.score, sym.name, sanitize(description, 100), detail));
    }
    s
}

/// The message with our verdict headers, SpamAssassin-style `X-Spam-Flag`/`X-Spam-Status` for the recipes
/// that look for them (forged incoming ones removed), and the subject tagged when it is spam.
fn processed(state: &GatewayState, v: &Verdict, raw: &[u8], shown: f64, spam: bool) -> Vec<u8> {
    let stripped = strip_fields(raw, &["x-spam-flag", "x-spam-status"]);
    let tagged = if spam && !state.config.subject_tag.is_empty() {
        tag_subject(&stripped, &state.config.subject_tag)
    } else {
        stripped
    };
    let with_ours = v.apply_headers(&tagged);
    let nl = if raw.windows(2).take(4096).any(|w| w == b"\r\n") { "\r\n" } else { "\n" };
    let tests: Vec<&str> = v.symbols.iter().filter(|s| s.asf_mode != Some("test")).map(|s| s.name.as_str()).collect();
    let mut status =
        format!("{}, score={shown:.1} required={:.1} tests=", if spam { "Yes" } else { "No" }, v.thresholds.tag);
    let mut line = status.len();
    for (i, t) in tests.iter().enumerate() {
        if i > 0 {
            status.push(',');
            if line + t.len() > 70 {
                status.push_str(nl);
                status.push('\t');
                line = 0;
            }
        }
        status.push_str(t);
        line += t.len() + 1;
    }
    let mut out = Vec::with_capacity(with_ours.len() + 256);
    if spam {
        out.extend_from_slice(format!("X-Spam-Flag: YES{nl}").as_bytes());
    }
    out.extend_from_slice(format!("X-Spam-Status: {status}{nl}").as_bytes());
    out.extend_from_slice(&with_ours);
    out
}

/// Offset just past the blank line that ends the header block (or the end of the message).
fn header_block_end(raw: &[u8]) -> usize {
    let end = find_header_end(raw);
    if raw[end..].starts_with(b"\r\n") {
        end + 2
    } else if raw[end..].starts_with(b"\n") {
        end + 1
    } else {
        end
    }
}

/// The message without the named top-level header fields (lower-case names), continuation lines included.
fn strip_fields(raw: &[u8], names: &[&str]) -> Vec<u8> {
    let end = find_header_end(raw);
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    let mut skipping = false;
    while pos < end {
        let line_end = raw[pos..end].iter().position(|&b| b == b'\n').map(|p| pos + p + 1).unwrap_or(end);
        let line = &raw[pos..line_end];
        if !line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            skipping = names.iter().any(|n| {
                line.len() > n.len() && line[..n.len()].eq_ignore_ascii_case(n.as_bytes()) && line[n.len()] == b':'
            });
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        pos = line_end;
    }
    out.extend_from_slice(&raw[end..]);
    out
}

/// TELL: learn the message as spam or ham (`Set: local`), or forget it (`Remove: local`).
async fn tell(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    req: &Request,
    body: Vec<u8>,
    peer: Option<SocketAddr>,
) -> Result<Vec<u8>, RequestError> {
    if !state.config.spamd.allow_tell {
        return Err(refuse(EX_NOPERM, "TELL is not enabled here ([smtp.spamd] allow_tell = true enables it)"));
    }
    if !req.set_local && !req.remove_local {
        return Err(refuse(EX_USAGE, "TELL needs Set: local or Remove: local (only the local database is kept)"));
    }
    if req.set_local && req.message_class.is_none() {
        return Err(refuse(EX_USAGE, "TELL with Set needs Message-class: spam or ham"));
    }
    let Some(_) = state.learner() else {
        return Err(refuse(EX_UNAVAILABLE, "the classifiers are switched off ([classifier] enabled = false)"));
    };
    let (state2, class, set, remove, user) =
        (state.clone(), req.message_class, req.set_local, req.remove_local, req.user.clone());
    let size = body.len() as u64;
    let done = tokio::task::spawn_blocking(move || {
        let learner = state2.learner().expect("checked above");
        let msg = state2.engine.parse(&body);
        let now = mailsift_engine::unix_now();
        let mut learner = learner.lock().unwrap_or_else(|e| e.into_inner());
        let mut did = (false, false);
        let mut what = Vec::new();
        if remove {
            let forgotten = learner.forget(&msg).map_err(|e| e.to_string())?;
            learner.commit(now).map_err(|e| e.to_string())?;
            did.1 = forgotten.is_some();
            what.push(if forgotten.is_some() { "forgotten" } else { "not known, nothing to forget" });
        }
        if let (true, Some(side)) = (set, class) {
            let (outcome, _) = learner
                .report_via(&msg, side, "spamd TELL", "spamd", user.as_deref(), now)
                .map_err(|e| e.to_string())?;
            did.0 = outcome != LearnOutcome::AlreadyKnown;
            what.push(match outcome {
                LearnOutcome::AlreadyKnown => "already known",
                LearnOutcome::Relearned => "corrected",
                _ => "learned",
            });
            drop(learner);
            if let Some(rep) = state2.reputation() {
                if let Err(e) = rep.record_report(&msg, side, &state2.engine.config().organisation, now) {
                    tracing::warn!(error = %e, "reputation not updated from a TELL");
                }
            }
        }
        let subject = msg.subject.clone().unwrap_or_default();
        Ok::<_, String>((did, format!("{}: {}", what.join(", "), sanitize(&subject, 80))))
    })
    .await;
    let (did, what) = match done {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "TELL could not be learned");
            return Err(refuse(EX_TEMPFAIL, format!("not learned: {}", sanitize(&e, 200))));
        }
        Err(e) => return Err(refuse(EX_SOFTWARE, format!("not learned: {e}"))),
    };
    let class_name = match req.message_class {
        Some(Side::Spam) => "spam",
        Some(Side::Ham) => "ham",
        None => "forget",
    };
    append_log(
        gateway,
        LogEntry {
            reference_id: mailsift_engine::new_reference_id(),
            time: mailsift_engine::unix_now(),
            direction: "inbound".into(),
            client_ip: peer.map(|p| p.ip().to_string()),
            size,
            action: "report".into(),
            stage: "spamd".into(),
            reason: Some(format!(
                "spamd TELL {class_name}{}: {what}",
                req.user.as_deref().map(|u| format!(" by {u}")).unwrap_or_default()
            )),
            ..LogEntry::default()
        },
    );
    tracing::info!(client = ?peer, class = class_name, outcome = %what, "spamd TELL");
    let mut out = format!("SPAMD/1.1 {EX_OK} EX_OK\r\n");
    if did.0 {
        out.push_str("DidSet: local\r\n");
    }
    if did.1 {
        out.push_str("DidRemove: local\r\n");
    }
    out.push_str("\r\n");
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_headers() {
        assert_eq!(parse_request_line("CHECK SPAMC/1.5\r\n").unwrap(), Command::Check);
        assert_eq!(parse_request_line("TELL SPAMC/1.3\r\n").unwrap(), Command::Tell);
        assert_eq!(parse_request_line("CHECK SPAMC/2.0\r\n").unwrap_err().code, EX_PROTOCOL);
        assert_eq!(parse_request_line("FROB SPAMC/1.5\r\n").unwrap_err().code, EX_PROTOCOL);
        assert_eq!(parse_request_line("CHECK\r\n").unwrap_err().code, EX_PROTOCOL);
        let mut r = Request::default();
        parse_header(&mut r, "Content-length: 42\r\n").unwrap();
        parse_header(&mut r, "Message-class: spam\r\n").unwrap();
        parse_header(&mut r, "Set: local, remote\r\n").unwrap();
        parse_header(&mut r, "User: bob\r\n").unwrap();
        assert_eq!(
            (r.content_length, r.message_class, r.set_local, r.remove_local),
            (Some(42), Some(Side::Spam), true, false)
        );
        assert!(parse_header(&mut r, "Content-length: -1\r\n").is_err());
        assert!(parse_header(&mut r, "no colon\r\n").is_err());
        assert!(parse_header(&mut r, "Compress: zlib\r\n").is_err());
    }

    #[test]
    fn shown_scores_agree_with_the_verdict() {
        assert_eq!(shown_score(12.34, 5.0, true), 12.4);
        assert_eq!(shown_score(1.0, 5.0, true), 5.0);
        assert_eq!(shown_score(4.99, 5.0, false), 4.9);
        assert_eq!(shown_score(20.0, 5.0, false), 4.9);
        assert_eq!(shown_score(-1.25, 5.0, false), -1.3);
        for (score, spam) in [(4.96, false), (5.0, true), (7.0, false), (0.0, true)] {
            assert_eq!(shown_score(score, 5.0, spam) >= 5.0, spam, "{score}");
        }
    }

    #[test]
    fn forged_spam_headers_are_removed() {
        let raw = b"X-Spam-Flag: NO\r\nSubject: hi\r\nX-Spam-Status: No,\r\n\tscore=0\r\n\r\nX-Spam-Flag: body\r\n";
        assert_eq!(
            strip_fields(raw, &["x-spam-flag", "x-spam-status"]),
            b"Subject: hi\r\n\r\nX-Spam-Flag: body\r\n".to_vec()
        );
        assert_eq!(header_block_end(b"A: b\n\nbody"), 6);
    }
}
