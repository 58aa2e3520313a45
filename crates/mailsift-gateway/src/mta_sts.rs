//! MTA-STS (RFC 8461): whether a recipient domain asks senders to deliver only to its listed MX hosts over
//! TLS with a certificate valid for the MX host name, and the policy it publishes.
//!
//! The TXT record at `_mta-sts.<domain>` (`v=STSv1; id=...`, §3.1) says a policy exists and which version;
//! the policy itself comes from `https://mta-sts.<domain>/.well-known/mta-sts.txt` (§3.3) over HTTPS with a
//! verified certificate, no redirects followed, 64 KB at most, within a timeout, `text/plain`. It is parsed
//! (§3.2: version, mode `enforce|testing|none`, `mx` patterns, `max_age` capped at one year) and kept in
//! memory per domain until `max_age`, fetched again when the TXT record's id changes, and used until it
//! expires when DNS or the fetch fail (§5.1). The cache is in memory only: a restart fetches again.
//!
//! What it deliberately does not do: proactive refresh before expiry (§5.1, "SHOULD"), persisting policies
//! across restarts, or TLS-RPT reports (RFC 8460). What applying a policy means for delivery is
//! `delivery.rs`'s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailsift_evidence::spf::SpfDns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// The largest policy body accepted (§3.3: senders may limit it to 64 KB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// The longest `max_age` honoured (§3.2: 31557600 seconds, about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;
/// The most `mx` patterns kept from one policy.
const MAX_MX_PATTERNS: usize = 256;
/// The most HTTP header bytes read before the body.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Domains whose policies are kept.
const MAX_CACHED: usize = 10_000;
/// How long a policy that could not be fetched is not asked for again (for the same record id), so that
/// every retry of a queue does not wait on a broken policy server.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts with valid certificates.
    Enforce,
    /// Deliver anyway; report (here: log and count) what enforce would have refused.
    Testing,
    /// The domain has withdrawn its policy.
    None,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        })
    }
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns, lower case, without a final dot: `mail.example.com` or `*.example.net`.
    pub mx: Vec<String>,
    /// Seconds the policy may be kept (capped at [`MAX_AGE_LIMIT`]).
    pub max_age: u64,
}

impl Policy {
    /// Whether the MX host `host` is one the policy lists.
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// The policy id of an MTA-STS TXT record (§3.1), or `None` when the text is not a valid `v=STSv1` record.
pub fn parse_txt(record: &str) -> Option<String> {
    let mut fields = record.split(';').map(|f| f.trim_matches([' ', '\t']));
    if fields.next()? != "v=STSv1" {
        return None;
    }
    let mut id = None;
    for field in fields {
        if field.is_empty() {
            continue;
        }
        let (k, v) = field.split_once('=')?;
        let key_ok = !k.is_empty()
            && k.len() <= 32
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !key_ok {
            return None;
        }
        if k == "id" && id.is_none() {
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            id = Some(v.to_string());
        }
    }
    id
}

/// The id of the one valid record among a name's TXT records (§3.1: records not starting with `v=STSv1;`
/// are ignored; if not exactly one is left, or it is invalid, there is no policy).
pub fn policy_id(records: &[String]) -> Option<String> {
    let mut sts = records.iter().filter(|r| r.starts_with("v=STSv1"));
    let one = sts.next()?;
    if sts.next().is_some() {
        return None;
    }
    parse_txt(one)
}

/// Parses a policy body (§3.2). The error says what is wrong.
pub fn parse_policy(body: &[u8]) -> Result<Policy, String> {
    if body.len() > MAX_POLICY_BYTES {
        return Err(format!("policy larger than {MAX_POLICY_BYTES} bytes"));
    }
    let text = std::str::from_utf8(body).map_err(|_| "policy is not UTF-8 text".to_string())?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("policy line without a key: {:?}", crate::text::sanitize(line, 60)));
        };
        let value = value.trim_matches([' ', '\t']);
        match key {
            "version" if version.is_none() => version = Some(value),
            "mode" if mode.is_none() => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {:?}", crate::text::sanitize(other, 20))),
                })
            }
            "max_age" if max_age.is_none() => {
                if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("max_age is not a number of seconds: {:?}", crate::text::sanitize(value, 20)));
                }
                let n: u64 = value.parse().map_err(|_| "max_age is not a number".to_string())?;
                max_age = Some(n.min(MAX_AGE_LIMIT));
            }
            "mx" => {
                if mx.len() >= MAX_MX_PATTERNS {
                    continue;
                }
                match mx_pattern(value) {
                    Some(p) => mx.push(p),
                    None => {
                        tracing::debug!(pattern = %crate::text::sanitize(value, 80), "MTA-STS: invalid mx pattern ignored")
                    }
                }
            }
            // Extensions (and repeats of single fields, the first kept) are ignored.
            _ => {}
        }
    }
    if version != Some("STSv1") {
        return Err("version is not STSv1".into());
    }
    let mode = mode.ok_or("no mode")?;
    let max_age = max_age.ok_or("no max_age")?;
    if mode != Mode::None && mx.is_empty() {
        return Err(format!("mode {mode} without a valid mx pattern"));
    }
    Ok(Policy { mode, mx, max_age })
}

/// A valid `mx` pattern, normalised: a host name, or `*.` followed by one (§3.2, §4.1).
fn mx_pattern(value: &str) -> Option<String> {
    let p = value.trim_end_matches('.').to_ascii_lowercase();
    let host = p.strip_prefix("*.").unwrap_or(&p);
    is_host_name(host).then_some(p)
}

/// A host name DNS can carry: dot-separated labels of letters, digits and hyphens (A-labels for IDNs).
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether MX host `host` matches `pattern` (§4.1): equal, ignoring case and a final dot; or, for
/// `*.example.net`, exactly one label followed by `.example.net` (`a.example.net`, not `a.b.example.net`
/// nor `example.net`).
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            let Some(split) = host.len().checked_sub(suffix.len() + 1) else {
                return false;
            };
            let (Some(label), Some(rest)) = (host.get(..split), host.get(split..)) else {
                return false;
            };
            !label.is_empty()
                && !label.contains('.')
                && !label.contains('*')
                && rest.as_bytes().first() == Some(&b'.')
                && rest[1..].eq_ignore_ascii_case(suffix)
        }
        None => !pattern.is_empty() && !pattern.contains('*') && host.eq_ignore_ascii_case(pattern),
    }
}

struct Cached {
    id: String,
    policy: Arc<Policy>,
    expires: Instant,
}

/// Policies by domain (lower case), in memory, shared by every delivery of one gateway.
#[derive(Default)]
pub struct PolicyCache {
    entries: Mutex<rustc_hash::FxHashMap<String, Cached>>,
    /// Fetches that failed lately: domain, the record id, until when it is not fetched again.
    failed: Mutex<rustc_hash::FxHashMap<String, (String, Instant)>>,
}

impl PolicyCache {
    fn get(&self, domain: &str) -> Option<(String, Arc<Policy>)> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.get(domain)?;
        if c.expires <= Instant::now() {
            map.remove(domain);
            return None;
        }
        Some((c.id.clone(), c.policy.clone()))
    }

    fn put(&self, domain: &str, id: String, policy: Arc<Policy>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_CACHED && !map.contains_key(domain) {
            map.retain(|_, c| c.expires > now);
            if map.len() >= MAX_CACHED {
                return;
            }
        }
        let expires = now + Duration::from_secs(policy.max_age);
        map.insert(domain.to_string(), Cached { id, policy, expires });
    }

    fn failed_lately(&self, domain: &str, id: &str) -> bool {
        let mut map = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(domain) {
            Some((failed_id, until)) if failed_id == id && *until > Instant::now() => true,
            Some(_) => {
                map.remove(domain);
                false
            }
            None => false,
        }
    }

    fn fetch_failed(&self, domain: &str, id: &str) {
        let mut map = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_CACHED {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= MAX_CACHED {
                return;
            }
        }
        map.insert(domain.to_string(), (id.to_string(), now + FAILED_FETCH_BACKOFF));
    }

    /// Domains with a policy kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How to fetch policies.
pub struct Fetcher<'a> {
    pub dns: &'a dyn SpfDns,
    /// A client configuration that verifies certificates (`trust.rs`).
    pub tls: Arc<rustls::ClientConfig>,
    pub port: u16,
    pub timeout: Duration,
}

/// The policy in force for `domain`, or `None` when it has none (no valid TXT record and none cached, or a
/// record whose policy cannot be fetched and none cached: §5.1 says deliver as if there were no policy).
pub async fn policy_for(cache: &PolicyCache, domain: &str, fetcher: &Fetcher<'_>) -> Option<Arc<Policy>> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !is_host_name(&domain) {
        return None;
    }
    let cached = cache.get(&domain);
    let id = match fetcher.dns.txt(&format!("_mta-sts.{domain}")).await {
        Ok(records) => policy_id(&records),
        Err(_) => None,
    };
    let Some(id) = id else {
        // No record now (or DNS failed): a policy still in its max_age stays in force (§5.1, against an
        // attacker who removes the record).
        return cached.map(|(_, p)| p);
    };
    if let Some((cached_id, p)) = &cached {
        if *cached_id == id {
            return Some(p.clone());
        }
    }
    if cache.failed_lately(&domain, &id) {
        return cached.map(|(_, p)| p);
    }
    let fetched = match tokio::time::timeout(fetcher.timeout, fetch(&domain, fetcher)).await {
        Ok(Ok(body)) => parse_policy(&body),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {} s", fetcher.timeout.as_secs())),
    };
    match fetched {
        Ok(policy) => {
            tracing::info!(domain = %domain, id = %id, mode = %policy.mode, max_age = policy.max_age, "MTA-STS policy fetched");
            let policy = Arc::new(policy);
            cache.put(&domain, id, policy.clone());
            Some(policy)
        }
        Err(reason) => {
            tracing::warn!(domain = %domain, id = %id, reason = %reason, kept = cached.is_some(), "MTA-STS policy fetch failed");
            cache.fetch_failed(&domain, &id);
            cached.map(|(_, p)| p)
        }
    }
}

/// The policy body from `https://mta-sts.<domain>/.well-known/mta-sts.txt`: HTTP/1.1, `Connection: close`,
/// the certificate verified for `mta-sts.<domain>`, a 200 answer (no redirects, §3.3) of type `text/plain`.
pub async fn fetch(domain: &str, fetcher: &Fetcher<'_>) -> Result<Vec<u8>, String> {
    let host = format!("mta-sts.{domain}");
    let mut ips = fetcher.dns.a(&host, false).await.unwrap_or_default();
    if ips.is_empty() {
        ips = fetcher.dns.a(&host, true).await.map_err(|_| format!("{host} has no address"))?;
    }
    let ip = *ips.first().ok_or_else(|| format!("{host} has no address"))?;
    let tcp =
        TcpStream::connect((ip, fetcher.port)).await.map_err(|e| format!("cannot connect to {host} ({ip}): {e}"))?;
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| format!("{host} is not a host name"))?;
    let mut tls = tokio_rustls::TlsConnector::from(fetcher.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host} failed: {e}"))?;
    let host_header = if fetcher.port == 443 { host.clone() } else { format!("{host}:{}", fetcher.port) };
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: mailsift\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.map_err(|e| format!("{host}: {e}"))?;
    tls.flush().await.map_err(|e| format!("{host}: {e}"))?;
    // Headers, and the body with room for chunked framing; anything more is too large.
    let limit = MAX_HEADER_BYTES + MAX_POLICY_BYTES + MAX_POLICY_BYTES / 8 + 64;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > limit {
                    return Err(format!("{host}: answer larger than {limit} bytes"));
                }
            }
            // Servers that close without TLS close_notify: what arrived is judged by its framing below.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => break,
            Err(e) => return Err(format!("{host}: {e}")),
        }
    }
    parse_http_answer(&answer).map_err(|e| format!("{host}: {e}"))
}

/// The body of an HTTP/1.1 answer, if it is a complete `200` of type `text/plain` within the limits.
pub fn parse_http_answer(answer: &[u8]) -> Result<Vec<u8>, String> {
    let end =
        answer.windows(4).take(MAX_HEADER_BYTES).position(|w| w == b"\r\n\r\n").ok_or("no complete HTTP header")?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| "HTTP header is not text")?;
    let body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 answer: {:?}", crate::text::sanitize(status, 60)));
    }
    if code != "200" {
        // Redirects included: §3.3 forbids following them.
        return Err(format!("HTTP status {}", crate::text::sanitize(code, 10)));
    }
    let (mut content_type, mut chunked, mut length) = (None, false, None);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().split(',').any(|t| t.trim() == "chunked");
        } else if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().map_err(|_| "bad Content-Length")?);
        }
    }
    if content_type.as_deref() != Some("text/plain") {
        return Err(format!("content type is {:?}, not text/plain", content_type.unwrap_or_default()));
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        if n > MAX_POLICY_BYTES {
            return Err(format!("policy larger than {MAX_POLICY_BYTES} bytes"));
        }
        body.get(..n).ok_or("answer shorter than its Content-Length")?.to_vec()
    } else {
        body.to_vec()
    };
    if body.len() > MAX_POLICY_BYTES {
        return Err(format!("policy larger than {MAX_POLICY_BYTES} bytes"));
    }
    Ok(body)
}

/// Undoes chunked transfer coding (RFC 9112 §7.1), bounded by the input.
fn dechunk(mut input: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = input.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk size")?;
        let line = std::str::from_utf8(&input[..eol]).map_err(|_| "bad chunk size")?;
        let size = line.split(';').next().unwrap_or("").trim();
        if size.is_empty() || size.len() > 8 {
            return Err("bad chunk size".into());
        }
        let size = usize::from_str_radix(size, 16).map_err(|_| "bad chunk size")?;
        input = &input[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if out.len() + size > MAX_POLICY_BYTES {
            return Err(format!("policy larger than {MAX_POLICY_BYTES} bytes"));
        }
        let chunk = input.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        input = input.get(size..).and_then(|r| r.strip_prefix(b"\r\n")).ok_or("chunk without its CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn txt_records() {
        assert_eq!(parse_txt("v=STSv1; id=20160831085700Z;"), Some("20160831085700Z".into()));
        assert_eq!(parse_txt("v=STSv1;id=abc"), Some("abc".into()));
        assert_eq!(parse_txt("v=STSv1; id=abc; ext=1"), Some("abc".into()));
        assert_eq!(parse_txt("v=STSv1;"), None, "no id");
        assert_eq!(parse_txt("id=abc; v=STSv1"), None, "version first");
        assert_eq!(parse_txt("v=STSv1; id=a-b"), None, "id is alphanumeric");
        assert_eq!(parse_txt("v=STSv1; id=abc; mode=none"), Some("abc".into()), "mode in DNS is only an extension");
        assert_eq!(policy_id(&["v=spf1 -all".into(), "v=STSv1; id=1".into()]), Some("1".into()));
        assert_eq!(policy_id(&["v=STSv1; id=1".into(), "v=STSv1; id=2".into()]), None, "two records: no policy");
    }

    #[test]
    fn policies() {
        let p = parse_policy(
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, vec!["mail.example.com".to_string(), "*.example.net".to_string()]);
        assert_eq!(p.max_age, 604800);
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("a.example.net"));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil-example.com"));
        let capped = parse_policy(b"version: STSv1\nmode: testing\nmx: a.test\nmax_age: 9999999999\n").unwrap();
        assert_eq!(capped.max_age, MAX_AGE_LIMIT);
        assert!(parse_policy(b"version: STSv1\nmode: none\nmax_age: 1\n").is_ok());
        assert!(parse_policy(b"version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n").is_err());
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmax_age: 1\n").is_err(), "enforce needs mx");
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmx: a.test\n").is_err(), "max_age needed");
        assert!(parse_policy(b"version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n").is_err());
        assert!(parse_policy(b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n").is_err());
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(mx_matches("*.example.net", "a.example.net"));
        assert!(!mx_matches("*.example.net", "a.b.example.net"));
        assert!(!mx_matches("*.example.net", "example.net"));
        assert!(!mx_matches("*.example.net", ".example.net"));
        assert!(!mx_matches("*.example.net", "aexample.net"));
        assert!(!mx_matches("mx.example.net", "*.example.net"));
        assert!(!mx_matches("*.example.net", "*.example.net"));
    }

    #[test]
    fn http_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhelloextra";
        assert_eq!(parse_http_answer(ok).unwrap(), b"hello");
        let chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(parse_http_answer(chunked).unwrap(), b"hello");
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: https://evil.test/\r\nContent-Type: text/plain\r\n\r\n";
        assert!(parse_http_answer(redirect).unwrap_err().contains("301"));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx";
        assert!(parse_http_answer(html).unwrap_err().contains("text/plain"));
        let big = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{}", "x".repeat(MAX_POLICY_BYTES + 1));
        assert!(parse_http_answer(big.as_bytes()).is_err());
    }

    /// DNS for `policy_for`: the TXT records given, no addresses (so every fetch fails).
    struct FakeDns(Result<Vec<String>, bool>);

    impl SpfDns for FakeDns {
        fn txt(
            &self,
            _: &str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, bool>> + Send + '_>> {
            let answer = self.0.clone();
            Box::pin(async move { answer })
        }
        fn a(
            &self,
            _: &str,
            _: bool,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<std::net::IpAddr>, bool>> + Send + '_>>
        {
            Box::pin(async { Err(true) })
        }
        fn mx(
            &self,
            _: &str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, bool>> + Send + '_>> {
            Box::pin(async { Err(true) })
        }
        fn ptr(
            &self,
            _: std::net::IpAddr,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, bool>> + Send + '_>> {
            Box::pin(async { Err(true) })
        }
    }

    #[tokio::test]
    async fn a_kept_policy_holds_until_max_age_when_dns_or_the_fetch_fail() {
        let tls = crate::trust::verifying_config(None).unwrap();
        let fetcher = |dns| Fetcher { dns, tls: tls.clone(), port: 443, timeout: Duration::from_secs(2) };
        let cache = PolicyCache::default();
        let policy =
            Arc::new(parse_policy(b"version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 600\n").unwrap());
        // Nothing kept: a record whose policy cannot be fetched is no policy (§5.1).
        let new_id = FakeDns(Ok(vec!["v=STSv1; id=2".into()]));
        assert_eq!(policy_for(&cache, "example.net", &fetcher(&new_id)).await, None);
        cache.put("example.net", "1".into(), policy.clone());
        // The record's id changed but the new policy cannot be fetched: the kept one holds.
        assert_eq!(policy_for(&cache, "example.net", &fetcher(&new_id)).await, Some(policy.clone()));
        // The record is gone, or DNS fails: the kept one holds.
        let gone = FakeDns(Err(true));
        assert_eq!(policy_for(&cache, "Example.NET.", &fetcher(&gone)).await, Some(policy.clone()));
        let failing = FakeDns(Err(false));
        assert_eq!(policy_for(&cache, "example.net", &fetcher(&failing)).await, Some(policy));
        // The failed fetch is remembered for this id: not tried again at once.
        assert!(cache.failed_lately("example.net", "2"));
        assert!(!cache.failed_lately("example.net", "3"));
        // Past max_age it is gone.
        let expired =
            Arc::new(Policy { max_age: 0, ..parse_policy(b"version: STSv1\nmode: none\nmax_age: 1\n").unwrap() });
        cache.put("example.org", "1".into(), expired);
        assert_eq!(policy_for(&cache, "example.org", &fetcher(&gone)).await, None);
    }

    proptest! {
        #[test]
        fn parsers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_policy(&bytes);
            let _ = parse_http_answer(&bytes);
            let _ = dechunk(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = parse_txt(s);
                let _ = mx_matches(s, "a.example.net");
                let _ = mx_matches("*.example.net", s);
            }
        }

        #[test]
        fn a_wildcard_never_matches_more_or_fewer_than_one_label(
            labels in proptest::collection::vec("[a-z0-9]{1,8}", 0..5),
        ) {
            let host = labels.iter().map(|l| format!("{l}.")).collect::<String>() + "example.net";
            prop_assert_eq!(mx_matches("*.example.net", &host), labels.len() == 1);
        }

        #[test]
        fn a_parsed_policy_keeps_its_limits(text in "(version: STSv1\n|mode: (enforce|testing|none)\n|mx: [a-z*.]{0,12}\n|max_age: [0-9]{1,12}\n){0,12}") {
            if let Ok(p) = parse_policy(text.as_bytes()) {
                prop_assert!(p.max_age <= MAX_AGE_LIMIT);
                prop_assert!(p.mx.len() <= MAX_MX_PATTERNS);
                prop_assert!(p.mode == Mode::None || !p.mx.is_empty());
                for m in &p.mx {
                    prop_assert!(is_host_name(m.strip_prefix("*.").unwrap_or(m)));
                }
            }
        }
    }
}
