//! Virus scanning through clamd (`[smtp.virus]`): the configuration, the scanner, and what a finding or a failure does.
//!
//! Every message a front end hands to [`crate::judge`] is streamed to clamd (`INSTREAM`, over a Unix socket or
//! TCP) by a task of its own while the content scan runs, under its own deadline, and joined after the verdict.
//! A virus is never delivered: the message is refused at DATA (`554 5.7.0`, with the signature and the
//! reference) or quarantined in the admin-only virus quarantine, per domain. A scan that fails (clamd down,
//! slow, out of date, or the message larger than clamd takes) is never a silent pass: the sender is told to
//! retry (`451`, the default) or, where a domain says so, the message goes on with `VIRUS_SCAN_FAILED`.
//!
//! The engine's version and database (clamd's `VERSION`) are cached and asked again about every minute by a
//! background task that ends with the scanner.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mailsift_engine::symbols::Group;
use mailsift_engine::verdict::SymbolResult;
use mailsift_engine::{Action, Verdict, VirusNote};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config_error::ConfigError;

/// clamd's own default `StreamMaxLength` (25 MB); ours stays under it by default.
pub const CLAMD_STREAM_MAX: u64 = 25 * 1024 * 1024;

/// How often the engine's version and database are asked again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// The size of one INSTREAM chunk.
const CHUNK: usize = 64 * 1024;

/// The longest reply read from clamd.
const MAX_REPLY: usize = 4096;

/// What happens to a message with a virus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VirusAction {
    /// Refused at DATA with `554 5.7.0`.
    #[default]
    Reject,
    /// Taken and kept in the virus quarantine, which only administrators can release.
    Quarantine,
}

/// What happens to a message that could not be scanned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// `451 4.7.0`: the sender retries later.
    #[default]
    Tempfail,
    /// Judged and delivered as usual, with `VIRUS_SCAN_FAILED` in the headers.
    Deliver,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VirusConfig {
    /// Where clamd listens: `unix:/run/clamav/clamd.ctl` or `127.0.0.1:3310`. Unset: no virus scanning (the
    /// headers say `X-Mailsift-Virus: not scanned`).
    pub clamd: Option<String>,
    /// The deadline for one scan, connection included (milliseconds).
    pub timeout_ms: u64,
    /// The largest message streamed to clamd; a larger one is a scan failure. Keep it at or under clamd's
    /// `StreamMaxLength` (25 MB by default).
    pub max_stream_bytes: u64,
    /// `reject` (the default) or `quarantine`; a domain may set its own (`virus_action`).
    pub action: VirusAction,
    /// `tempfail` (the default) or `deliver`; a domain may set its own (`virus_on_failure`).
    pub on_failure: OnFailure,
    /// A database older than this (hours) makes a clean scan a failure (`on_failure` decides); 0: not checked.
    /// Only checked when clamd reports its database's date (an official database is loaded).
    pub max_database_age_hours: u64,
}

impl Default for VirusConfig {
    fn default() -> Self {
        VirusConfig {
            clamd: None,
            timeout_ms: 30_000,
            max_stream_bytes: CLAMD_STREAM_MAX,
            action: VirusAction::Reject,
            on_failure: OnFailure::Tempfail,
            max_database_age_hours: 72,
        }
    }
}

impl VirusConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| Err(ConfigError::Invalid { field: format!("virus.{field}"), reason });
        if let Some(c) = &self.clamd {
            if let Err(e) = Address::parse(c) {
                return bad("clamd", e);
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > 600_000 {
            return bad("timeout_ms", "must be between 1 and 600000".into());
        }
        if self.max_stream_bytes == 0 || self.max_stream_bytes > u64::from(u32::MAX) {
            return bad("max_stream_bytes", "must be between 1 and 4294967295 (clamd's own limit applies too)".into());
        }
        Ok(())
    }
}

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    /// `unix:/path` or `host:port`.
    pub fn parse(s: &str) -> Result<Address, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a Unix socket needs an absolute path (unix:/run/clamav/clamd.ctl)"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(Address::Tcp(s.to_string()))
            }
            _ => Err(format!("{s:?}: expected unix:/path or host:port")),
        }
    }
}

/// What one scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    Clean,
    /// The signature's name.
    Found(String),
    /// Why the message could not be scanned.
    Failed(String),
}

/// The engine and its database, from clamd's `VERSION` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// `ClamAV 1.4.6`.
    pub engine: String,
    /// The database's version (the daily database's number), when an official database is loaded.
    pub db_version: Option<u64>,
    /// When the database was built (Unix seconds, read as UTC).
    pub db_time: Option<i64>,
}

impl EngineVersion {
    /// `engine=ClamAV 1.4.6; db=27480 (2026-12-02)`.
    pub fn describe(&self) -> String {
        let db = match (self.db_version, self.db_time) {
            (Some(v), Some(t)) => format!("{v} ({})", ymd(t)),
            (Some(v), None) => v.to_string(),
            _ => "unknown".into(),
        };
        format!("engine={}; db={db}", self.engine)
    }
}

/// Parses a scan reply (`stream: OK`, `stream: Name FOUND`, `... ERROR`), NUL or newline terminated. Anything
/// else is a failure; a signature name is kept printable and short.
pub fn parse_reply(reply: &[u8]) -> Scan {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    // An `IDSESSION` reply starts with a number; ours starts with `stream:`.
    let body = text.strip_prefix("stream:").map(str::trim).unwrap_or(text);
    if body == "OK" {
        return Scan::Clean;
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        let name = printable(name.trim(), 200);
        if !name.is_empty() {
            return Scan::Found(name);
        }
    }
    if body.ends_with("ERROR") {
        return Scan::Failed(format!("clamd: {}", printable(body, 200)));
    }
    Scan::Failed(format!("unexpected clamd reply: {}", printable(body, 100)))
}

/// Parses the `VERSION` reply: `ClamAV 1.4.6/27480/Wed Dec  2 08:29:01 2026`, or `ClamAV 1.4.6` alone when no
/// official database is loaded.
pub fn parse_version(reply: &[u8]) -> Option<EngineVersion> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    let mut parts = text.splitn(3, '/');
    let engine = printable(parts.next()?.trim(), 60);
    if !engine.starts_with("ClamAV") {
        return None;
    }
    let db_version = parts.next().and_then(|v| v.trim().parse::<u64>().ok());
    let db_time = parts.next().and_then(parse_ctime);
    Some(EngineVersion { engine, db_version, db_time })
}

/// `Wed Dec  2 08:29:01 2026` as Unix seconds (UTC).
fn parse_ctime(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 5 {
        return None;
    }
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == f[1])? as i64 + 1;
    let day: i64 = f[2].parse().ok().filter(|d| (1..=31).contains(d))?;
    let year: i64 = f[4].parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<i64> = f[3].split(':').map(|x| x.parse().ok()).collect::<Option<Vec<i64>>>()?;
    if hms.len() != 3 || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 || hms.iter().any(|x| *x < 0) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-02` of Unix seconds.
fn ymd(t: i64) -> String {
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Printable ASCII only (no header or reply injection), at most `max` characters.
fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(max).collect()
}

/// One INSTREAM exchange on a connected stream: the command, the message in chunks, the end mark, the reply.
async fn instream<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, data: &[u8]) -> Result<Vec<u8>, String> {
    let sent: Result<(), std::io::Error> = async {
        s.write_all(b"zINSTREAM\0").await?;
        for chunk in data.chunks(CHUNK) {
            s.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
            s.write_all(chunk).await?;
        }
        s.write_all(&0u32.to_be_bytes()).await?;
        s.flush().await
    }
    .await;
    // clamd may stop reading and answer early (its size limit): its reply says why, so read it either way.
    let reply = read_reply(&mut s).await;
    match (sent, reply) {
        (_, Ok(r)) if !r.is_empty() => Ok(r),
        (Err(e), _) => Err(format!("clamd: sending failed: {e}")),
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(_)) => Err("clamd closed the connection without a reply".into()),
    }
}

/// A reply up to its NUL (or the end of the connection), at most [`MAX_REPLY`] bytes.
async fn read_reply<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await.map_err(|e| format!("clamd: reading the reply failed: {e}"))?;
        if n == 0 {
            return Ok(reply);
        }
        reply.extend_from_slice(&buf[..n]);
        if let Some(end) = reply.iter().position(|b| *b == 0) {
            reply.truncate(end);
            return Ok(reply);
        }
        if reply.len() > MAX_REPLY {
            return Err("clamd: reply too long".into());
        }
    }
}

/// One command without data (`zVERSION\0`) and its reply.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, cmd: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(cmd).await.map_err(|e| format!("clamd: sending failed: {e}"))?;
    read_reply(&mut s).await
}

/// The engine's state as `/metrics` shows it.
#[derive(Debug, Clone, Default)]
pub struct EngineState {
    /// Whether the last exchange with clamd (a scan or a version check) worked.
    pub up: bool,
    pub version: Option<EngineVersion>,
    /// When the version was last read (Unix seconds).
    pub checked: Option<i64>,
}

/// A clamd client with its engine's cached version.
pub struct Scanner {
    address: Address,
    timeout: Duration,
    max_stream: u64,
    max_age_hours: u64,
    state: Mutex<EngineState>,
    refreshing: AtomicBool,
    scans: AtomicU64,
}

impl Scanner {
    /// The scanner of a configuration; `None` when no clamd is set.
    pub fn from_config(c: &VirusConfig) -> Option<Arc<Scanner>> {
        let address = Address::parse(c.clamd.as_deref()?).ok()?;
        Some(Arc::new(Scanner {
            address,
            timeout: Duration::from_millis(c.timeout_ms),
            max_stream: c.max_stream_bytes,
            max_age_hours: c.max_database_age_hours,
            state: Mutex::new(EngineState::default()),
            refreshing: AtomicBool::new(false),
            scans: AtomicU64::new(0),
        }))
    }

    /// The engine's last known state.
    pub fn engine_state(&self) -> EngineState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on a fresh connection to clamd, all of it under the scanner's deadline.
    async fn exchange<F, Fut>(&self, f: F) -> Result<Vec<u8>, String>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, String>>,
    {
        let work = async {
            let conn = match &self.address {
                Address::Unix(p) => {
                    Conn::Unix(tokio::net::UnixStream::connect(p).await.map_err(|e| format!("clamd unreachable: {e}"))?)
                }
                Address::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a.as_str())
                        .await
                        .map_err(|e| format!("clamd unreachable: {e}"))?;
                    let _ = s.set_nodelay(true);
                    Conn::Tcp(s)
                }
            };
            f(conn).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("clamd did not answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// Asks clamd for its version and database, and keeps the answer.
    pub async fn refresh(&self) -> Result<EngineVersion, String> {
        let got = self
            .exchange(|c| async move {
                match c {
                    Conn::Unix(s) => command(s, b"zVERSION\0").await,
                    Conn::Tcp(s) => command(s, b"zVERSION\0").await,
                }
            })
            .await
            .and_then(|r| parse_version(&r).ok_or_else(|| "clamd: unreadable VERSION reply".to_string()));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.up = got.is_ok();
        if let Ok(v) = &got {
            st.version = Some(v.clone());
            st.checked = Some(mailsift_engine::unix_now());
        }
        got
    }

    /// Starts the background refresh (once): the version every [`REFRESH`], for as long as the scanner lives.
    fn keep_fresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Scanner> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(s) = weak.upgrade() else { return };
                if let Err(e) = s.refresh().await {
                    tracing::warn!(error = %e, "clamd version check failed");
                }
            }
        });
    }

    /// Scans one message: the engine's version first if it is not known yet. Never panics, never passes
    /// silently: anything but a clean or a found answer is [`Scan::Failed`].
    pub async fn scan(self: &Arc<Self>, data: &[u8]) -> (Scan, Option<EngineVersion>) {
        self.keep_fresh();
        self.scans.fetch_add(1, Ordering::Relaxed);
        if self.engine_state().version.is_none() {
            let _ = self.refresh().await;
        }
        let scan = if data.len() as u64 > self.max_stream {
            Scan::Failed(format!("message of {} bytes is larger than max_stream_bytes", data.len()))
        } else {
            match self
                .exchange(|c| async move {
                    match c {
                        Conn::Unix(s) => instream(s, data).await,
                        Conn::Tcp(s) => instream(s, data).await,
                    }
                })
                .await
            {
                Ok(reply) => parse_reply(&reply),
                Err(e) => Scan::Failed(e),
            }
        };
        let state = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.up = !matches!(&scan, Scan::Failed(why) if why.starts_with("clamd unreachable") || why.contains("did not answer"));
            st.clone()
        };
        let scan = match (scan, self.out_of_date(&state)) {
            (Scan::Clean, Some(why)) => Scan::Failed(why),
            (scan, _) => scan,
        };
        (scan, state.version)
    }

    /// Why the database counts as out of date, if it does.
    fn out_of_date(&self, st: &EngineState) -> Option<String> {
        let t = st.version.as_ref()?.db_time?;
        let age = (mailsift_engine::unix_now() - t) / 3600;
        (self.max_age_hours > 0 && age > self.max_age_hours as i64)
            .then(|| format!("virus database out of date ({age} hours old)"))
    }

    /// The database's age in seconds, when known.
    pub fn database_age(&self) -> Option<i64> {
        let t = self.engine_state().version?.db_time?;
        Some((mailsift_engine::unix_now() - t).max(0))
    }
}

/// A connection to clamd.
enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// What the gateway does with one message's scan: the settings of its domain.
#[derive(Debug, Clone, Copy)]
pub struct Handling {
    pub action: VirusAction,
    pub on_failure: OnFailure,
}

/// The text a deferred message's 451 carries.
pub const DEFER_TEXT: &str = "Virus scan not available, try again later";

/// Writes a scan's outcome into the verdict: the header, the symbol, and for a virus the action (nothing a
/// list, a rule or a redirect says lets it through; the rules' copies are dropped), for a failure the defer
/// or the flag. Returns the scan as the counters need it.
pub fn apply(verdict: &mut Verdict, scan: &Scan, version: Option<&EngineVersion>, how: Handling) {
    let engine = match version {
        Some(v) => v.describe(),
        None => "engine=clamd; db=unknown".into(),
    };
    let sym = |name: mailsift_engine::symbols::Sym, detail: &str| SymbolResult {
        name: name.name().to_string(),
        group: Group::Attachments,
        score: 0.0,
        detail: detail.to_string(),
        asf_mode: None,
        asf_effect: None,
    };
    use mailsift_engine::catalogue::sym as s;
    match scan {
        Scan::Clean => {
            verdict.engines.push("clamav");
            verdict.virus = Some(VirusNote { found: None, failed: None, header: format!("clean; {engine}") });
        }
        Scan::Found(name) => {
            verdict.engines.push("clamav");
            verdict.symbols.insert(0, sym(s::VIRUS_FOUND, name));
            verdict.action = match how.action {
                VirusAction::Reject => Action::Reject,
                VirusAction::Quarantine => Action::Quarantine,
            };
            verdict.decided_by = Some(format!("virus: {name}"));
            verdict.defer = None;
            verdict.recipient_actions.clear();
            verdict.policy_effects.copy.clear();
            verdict.virus =
                Some(VirusNote { found: Some(name.clone()), failed: None, header: format!("found {name}; {engine}") });
        }
        Scan::Failed(why) => {
            verdict.symbols.push(sym(s::VIRUS_SCAN_FAILED, why));
            if how.on_failure == OnFailure::Tempfail {
                verdict.defer = Some(DEFER_TEXT.to_string());
            }
            verdict.virus =
                Some(VirusNote { found: None, failed: Some(why.clone()), header: format!("failed {why}; {engine}") });
        }
    }
}

/// The note of a gateway without virus scanning.
pub fn not_scanned() -> VirusNote {
    VirusNote { found: None, failed: None, header: "not scanned".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0"), Scan::Clean);
        assert_eq!(parse_reply(b"stream: Eicar-Test-Signature FOUND\0"), Scan::Found("Eicar-Test-Signature".into()));
        assert_eq!(parse_reply(b"stream: Win.Test.X FOUND\n"), Scan::Found("Win.Test.X".into()));
        assert!(
            matches!(parse_reply(b"INSTREAM size limit exceeded. ERROR\0"), Scan::Failed(w) if w.contains("size limit"))
        );
        assert!(matches!(parse_reply(b""), Scan::Failed(_)));
        assert!(matches!(parse_reply(b"stream:  FOUND"), Scan::Failed(_)));
        assert_eq!(parse_reply(b"stream: Bad\r\nX-Inject: 1 FOUND"), Scan::Found("BadX-Inject: 1".into()));
    }

    #[test]
    fn versions() {
        let v = parse_version(b"ClamAV 1.4.6/27480/Wed Dec  2 08:29:01 2026\0").unwrap();
        assert_eq!(v.engine, "ClamAV 1.4.6");
        assert_eq!(v.db_version, Some(27480));
        assert_eq!(v.db_time, Some(1_796_200_141));
        assert_eq!(v.describe(), "engine=ClamAV 1.4.6; db=27480 (2026-12-02)");
        let bare = parse_version(b"ClamAV 1.4.6\0").unwrap();
        assert_eq!(bare, EngineVersion { engine: "ClamAV 1.4.6".into(), db_version: None, db_time: None });
        assert_eq!(bare.describe(), "engine=ClamAV 1.4.6; db=unknown");
        assert_eq!(parse_version(b"nonsense"), None);
        assert_eq!(parse_version(b"ClamAV 1.0/1/Feb 30").unwrap().db_time, None);
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd(days_from_civil(2024, 2, 29) * 86_400), "2024-02-29");
    }

    #[test]
    fn addresses() {
        assert_eq!(Address::parse("unix:/run/clamd.ctl").unwrap(), Address::Unix("/run/clamd.ctl".into()));
        assert_eq!(Address::parse("127.0.0.1:3310").unwrap(), Address::Tcp("127.0.0.1:3310".into()));
        assert_eq!(Address::parse("[::1]:3310").unwrap(), Address::Tcp("[::1]:3310".into()));
        for bad in ["unix:relative", "localhost", ":3310", "h:0", "h:x"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked_by_name() {
        assert!(VirusConfig::default().validate().is_ok());
        let bad = |c: VirusConfig| c.validate().unwrap_err().to_string();
        let c = VirusConfig { clamd: Some("clamd.sock".into()), ..VirusConfig::default() };
        assert!(bad(c).contains("virus.clamd"));
        assert!(bad(VirusConfig { timeout_ms: 0, ..VirusConfig::default() }).contains("virus.timeout_ms"));
        assert!(bad(VirusConfig { max_stream_bytes: 0, ..VirusConfig::default() }).contains("virus.max_stream_bytes"));
        let toml = "clamd = \"127.0.0.1:3310\"\naction = \"quarantine\"\non_failure = \"deliver\"\n";
        let c: VirusConfig = toml::from_str(toml).unwrap();
        assert_eq!((c.action, c.on_failure, c.timeout_ms), (VirusAction::Quarantine, OnFailure::Deliver, 30_000));
        assert!(toml::from_str::<VirusConfig>("action = \"drop\"").is_err());
        assert!(toml::from_str::<VirusConfig>("clamd_socket = \"x\"").is_err());
    }

    #[test]
    fn a_found_virus_overrides_allow_lists_copies_and_defers() {
        let engine = mailsift_engine::Engine::new(Default::default()).unwrap();
        let mut v = engine.scan(b"Subject: hi\r\n\r\nhello\r\n", &Default::default(), &Default::default());
        v.defer = Some("dns".into());
        v.policy_effects.copy.push("legal@x.example".into());
        let how = Handling { action: VirusAction::Reject, on_failure: OnFailure::Tempfail };
        apply(&mut v, &Scan::Found("Eicar".into()), None, how);
        assert_eq!((v.action, v.defer.as_deref()), (Action::Reject, None));
        assert!(v.policy_effects.copy.is_empty());
        assert_eq!(v.virus.as_ref().unwrap().header, "found Eicar; engine=clamd; db=unknown");
        assert_eq!(v.symbols[0].name, "VIRUS_FOUND");
        let mut v = engine.scan(b"Subject: hi\r\n\r\nhello\r\n", &Default::default(), &Default::default());
        apply(&mut v, &Scan::Failed("slow".into()), None, how);
        assert_eq!(v.defer.as_deref(), Some(DEFER_TEXT));
        assert!(!v.engines.contains(&"clamav"));
    }

    proptest::proptest! {
        #[test]
        fn any_reply_is_parsed_without_panic_and_names_are_printable(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            match parse_reply(&bytes) {
                Scan::Found(n) => proptest::prop_assert!(!n.is_empty() && n.len() <= 200 && n.chars().all(|c| c.is_ascii_graphic() || c == ' ')),
                Scan::Failed(w) => proptest::prop_assert!(w.chars().all(|c| c.is_ascii_graphic() || c == ' ')),
                Scan::Clean => {}
            }
            if let Some(v) = parse_version(&bytes) {
                proptest::prop_assert!(v.engine.starts_with("ClamAV") && v.engine.len() <= 60);
            }
        }
    }
}
