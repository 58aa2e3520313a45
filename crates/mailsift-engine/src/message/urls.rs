//! URLs found in a message, with the facts the URL checks need: host, registrable domain (public-suffix
//! aware, IDN decoded), numeric hosts (including the decimal and hex spellings browsers accept), ports and
//! the user-info trick (`http://paypal.com@evil.example/`).

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use regex::Regex;

/// At most this many URLs are kept per message; a message with more is itself suspicious, and the checks
/// see the count.
pub const MAX_URLS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlSource {
    Text,
    Href,
    Image,
    Other,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UrlInfo {
    /// The URL as written (trimmed).
    pub raw: String,
    pub scheme: String,
    /// Lower-case host in Unicode form (IDN decoded); an IP literal as written.
    pub host: String,
    /// The registrable domain ("example.co.uk"), or the host when it is an IP or has no known suffix.
    pub domain: String,
    /// The top-level label ("com", "biz").
    pub tld: String,
    pub ip: Option<std::net::IpAddr>,
    /// The host was written in an unusual numeric form (decimal, hex or octal).
    pub obscured_ip: bool,
    pub port: Option<u16>,
    /// Text before an `@` in the authority: the reader sees it as the host.
    pub userinfo: Option<String>,
    pub path_and_query: String,
    pub source: UrlSource,
    /// Written with a defanged scheme such as `hxxp://`.
    pub defanged: bool,
}

fn text_url_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"(?i)\b(?:(?:https?|hxxps?|h\*\*ps?|ftp)://|www\d{0,3}\.)[^\s<>"'`{}|\\^\[\]]+"#)
            .expect("url regex")
    })
}

/// Finds URLs written in plain text.
pub fn find_in_text(text: &str, out: &mut Vec<UrlInfo>) {
    for m in text_url_regex().find_iter(text) {
        if out.len() >= MAX_URLS {
            return;
        }
        let raw = m.as_str().trim_end_matches(['.', ',', ';', ':', ')', '!', '?', '>', '*']);
        if let Some(u) = parse(raw, UrlSource::Text) {
            out.push(u);
        }
    }
}

/// Parses one URL leniently, as a mail client would when the user clicks it. Returns None for things that
/// are not web links (mailto:, cid:, anchors, relative paths).
pub fn parse(raw: &str, source: UrlSource) -> Option<UrlInfo> {
    let raw = raw.trim().trim_matches(|c: char| c == '"' || c == '\'');
    if raw.is_empty() || raw.len() > 4096 {
        return None;
    }
    let lower_prefix: String = raw.chars().take(10).collect::<String>().to_ascii_lowercase();
    let (scheme, rest, defanged) = if let Some(i) = raw.find("://") {
        let scheme = raw[..i].to_ascii_lowercase();
        let (s, defanged) = match scheme.as_str() {
            "http" | "https" | "ftp" => (scheme.clone(), false),
            "hxxp" | "h**p" => ("http".to_string(), true),
            "hxxps" | "h**ps" => ("https".to_string(), true),
            _ => return None,
        };
        (s, &raw[i + 3..], defanged)
    } else if lower_prefix.starts_with("www") {
        ("http".to_string(), raw, false)
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let path_and_query = rest[end..].to_string();
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(authority[..i].to_string()), &authority[i + 1..]),
        None => (None, authority),
    };
    let (host_raw, port) = split_port(hostport);
    let host_raw = host_raw.trim_end_matches('.');
    if host_raw.is_empty() {
        return None;
    }
    let mut obscured_ip = false;
    let ip: Option<std::net::IpAddr> = if let Some(v6) = host_raw.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse().ok()
    } else if let Ok(v4) = host_raw.parse::<Ipv4Addr>() {
        Some(v4.into())
    } else if let Some(v4) = numeric_host(host_raw) {
        obscured_ip = true;
        Some(v4.into())
    } else {
        None
    };
    let host = if ip.is_some() { host_raw.to_ascii_lowercase() } else { normalise_host(host_raw)? };
    let (domain, tld) = if ip.is_some() {
        (host.clone(), String::new())
    } else {
        let ascii = idna::domain_to_ascii(&host).unwrap_or_else(|_| host.clone());
        let domain_ascii = psl::domain_str(&ascii).map(str::to_string).unwrap_or_else(|| ascii.clone());
        let domain =
            if domain_ascii.contains("xn--") { idna::domain_to_unicode(&domain_ascii).0 } else { domain_ascii };
        let tld = host.rsplit('.').next().unwrap_or("").to_string();
        (domain, tld)
    };
    Some(UrlInfo {
        raw: raw.to_string(),
        scheme,
        host,
        domain,
        tld,
        ip,
        obscured_ip,
        port,
        userinfo,
        path_and_query,
        source,
        defanged,
    })
}

fn split_port(hostport: &str) -> (&str, Option<u16>) {
    if hostport.starts_with('[') {
        if let Some(i) = hostport.find(']') {
            let port = hostport[i + 1..].strip_prefix(':').and_then(|p| p.parse().ok());
            return (&hostport[..=i], port);
        }
        return (hostport, None);
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, p.parse().ok()),
        Some((h, "")) => (h, None),
        _ => (hostport, None),
    }
}

/// Lower-cases, percent-decodes and IDN-decodes a host; None when it cannot be a host name.
fn normalise_host(h: &str) -> Option<String> {
    let mut s = h.to_lowercase();
    if s.contains('%') {
        s = percent_decode(&s);
    }
    if s.contains("xn--") {
        let (u, res) = idna::domain_to_unicode(&s);
        if res.is_ok() {
            s = u;
        }
    }
    let ok = s.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_') && s.contains('.');
    if ok {
        Some(s)
    } else {
        None
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Browsers accept `http://3232235777/`, `http://0xC0A80001/` and dotted octal or hex parts; spammers use
/// them to hide an IP address from filters that only look for dotted quads.
fn numeric_host(h: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = h.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let n = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse::<u64>().ok()?
        } else {
            return None;
        };
        nums.push(n);
    }
    let last = *nums.last()?;
    let mut v: u64 = 0;
    for (i, n) in nums[..nums.len() - 1].iter().enumerate() {
        if *n > 255 {
            return None;
        }
        v |= n << (24 - 8 * i);
    }
    let rem_bits = 32 - 8 * (nums.len() as u64 - 1);
    if last >= (1u64 << rem_bits) {
        return None;
    }
    v |= last;
    Some(Ipv4Addr::from(v as u32))
}

/// The registrable domain of a bare host name or an address's domain.
pub fn registrable_domain(host: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_lowercase();
    let ascii = idna::domain_to_ascii(&host).unwrap_or_else(|_| host.clone());
    psl::domain_str(&ascii).map(str::to_string).unwrap_or(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_domains() {
        let u = parse("http://WWW.Example.co.uk:8080/a?b", UrlSource::Href).unwrap();
        assert_eq!(u.host, "www.example.co.uk");
        assert_eq!(u.domain, "example.co.uk");
        assert_eq!(u.port, Some(8080));
        assert_eq!(u.tld, "uk");
        assert_eq!(u.path_and_query, "/a?b");
    }

    #[test]
    fn numeric_and_obscured_ips() {
        assert_eq!(parse("http://192.168.0.1/x", UrlSource::Text).unwrap().ip, Some("192.168.0.1".parse().unwrap()));
        let d = parse("http://3232235521/", UrlSource::Text).unwrap();
        assert_eq!(d.ip, Some("192.168.0.1".parse().unwrap()));
        assert!(d.obscured_ip);
        let h = parse("http://0xC0.0xA8.0.1/", UrlSource::Text).unwrap();
        assert_eq!(h.ip, Some("192.168.0.1".parse().unwrap()));
        assert!(parse("http://example.com/", UrlSource::Text).unwrap().ip.is_none());
    }

    #[test]
    fn idn_and_userinfo() {
        let u = parse("http://xn--pypal-4ve.com/login", UrlSource::Href).unwrap();
        assert_eq!(u.host, "pаypal.com");
        let t = parse("http://www.paypal.com@evil.example/", UrlSource::Href).unwrap();
        assert_eq!(t.userinfo.as_deref(), Some("www.paypal.com"));
        assert_eq!(t.domain, "evil.example");
    }

    #[test]
    fn finds_urls_in_text() {
        let mut v = Vec::new();
        find_in_text("see http://a.example/x, and www.b.example. Also hxxp://c.example/ too", &mut v);
        let hosts: Vec<_> = v.iter().map(|u| u.host.as_str()).collect();
        assert_eq!(hosts, ["a.example", "www.b.example", "c.example"]);
        assert!(v[2].defanged);
    }

    #[test]
    fn percent_decoding_never_splits_characters() {
        assert!(parse("http://www.paypal.com%\u{202e}x/", UrlSource::Text).is_none());
        assert_eq!(percent_decode("p%61ypal.com%"), "paypal.com%");
    }

    #[test]
    fn rejects_non_web_links() {
        assert!(parse("mailto:a@b.example", UrlSource::Href).is_none());
        assert!(parse("#top", UrlSource::Href).is_none());
        assert!(parse("cid:image001", UrlSource::Href).is_none());
    }
}
