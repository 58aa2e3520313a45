//! SPF (RFC 7208) `check_host()`, evaluated strictly.
//!
//! We evaluate SPF ourselves rather than through the authentication library because receivers are judged
//! by the official test suite and the library is lenient where the RFC is strict: a record with a syntax
//! error is `permerror` (§4.6), two records are `permerror` (§4.5), a domain that cannot be queried is
//! `permerror` not `temperror` (§4.8), and the limits of §4.6.4 (10 DNS-querying terms, 2 void lookups,
//! 10 MX or PTR names) are enforced. DNS goes through the gatherer's resolver and caches. Not implemented:
//! the `exp=` explanation text (we never send it; its syntax is still checked).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use mailsift_engine::cidr::IpRange;
use mailsift_engine::evidence::SpfResult;

/// The DNS questions `check_host` asks; the gatherer answers them through its resolver and caches.
pub trait SpfDns: Sync {
    /// TXT strings of each record at `name` (each record's strings joined). Err(true) means "no such domain
    /// or no records" (a void answer), Err(false) a temporary failure.
    fn txt(&self, name: &str) -> Pin<Box<dyn Future<Output = Result<Vec<String>, bool>> + Send + '_>>;
    fn a(&self, name: &str, v6: bool) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, bool>> + Send + '_>>;
    fn mx(&self, name: &str) -> Pin<Box<dyn Future<Output = Result<Vec<String>, bool>> + Send + '_>>;
    fn ptr(&self, ip: IpAddr) -> Pin<Box<dyn Future<Output = Result<Vec<String>, bool>> + Send + '_>>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

#[derive(Debug, Clone, PartialEq)]
enum Mechanism {
    All,
    Include(String),
    A(Option<String>, u8, u8),
    Mx(Option<String>, u8, u8),
    Ptr(Option<String>),
    Ip(IpAddr, u8),
    Exists(String),
}

#[derive(Debug, Default)]
struct Record {
    directives: Vec<(Qualifier, Mechanism)>,
    redirect: Option<String>,
}

/// Evaluation state shared across includes and redirects.
struct Eval<'a, D: SpfDns> {
    dns: &'a D,
    ip: IpAddr,
    sender: String,
    helo: String,
    lookups: u32,
    voids: u32,
    /// The validated name of the client (the `%{p}` macro), looked up on first use.
    validated: Option<String>,
}

const MAX_LOOKUPS: u32 = 10;
const MAX_VOIDS: u32 = 2;

/// `check_host(ip, domain, sender)`: the SPF result for `sender` (local@domain; for the HELO identity,
/// postmaster@helo) sending from `ip`.
pub async fn check_host<D: SpfDns>(dns: &D, ip: IpAddr, domain: &str, sender: &str, helo: &str) -> SpfResult {
    // An IPv4-mapped IPv6 client is an IPv4 client (§5).
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let mut e =
        Eval { dns, ip, sender: sender.to_string(), helo: helo.to_string(), lookups: 0, voids: 0, validated: None };
    e.check(domain.trim_end_matches('.').to_string(), 0).await
}

/// Whether a domain may be checked at all (§4.3): a valid multi-label name.
pub fn well_formed(domain: &str) -> bool {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = d.split('.').collect();
    !d.is_empty()
        && d.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.len() <= 63)
        && !d.starts_with('[')
}

impl<D: SpfDns> Eval<'_, D> {
    fn check(&mut self, domain: String, depth: u32) -> Pin<Box<dyn Future<Output = SpfResult> + Send + '_>>
    where
        D: SpfDns,
    {
        Box::pin(async move {
            if depth > 20 {
                return SpfResult::PermError;
            }
            if !well_formed(&domain) {
                return SpfResult::None;
            }
            let records = match self.dns.txt(&domain).await {
                Ok(r) => r,
                Err(true) => return SpfResult::None,
                Err(false) => return SpfResult::TempError,
            };
            let spf: Vec<&String> = records
                .iter()
                .filter(|r| {
                    let l = r.to_ascii_lowercase();
                    l == "v=spf1" || l.starts_with("v=spf1 ")
                })
                .collect();
            let text = match spf.as_slice() {
                [] => return SpfResult::None,
                [one] => one.as_str(),
                _ => return SpfResult::PermError,
            };
            let Some(record) = parse(text) else { return SpfResult::PermError };
            for (q, m) in &record.directives {
                match self.matches(m, &domain, depth).await {
                    Ok(true) => {
                        return match q {
                            Qualifier::Pass => SpfResult::Pass,
                            Qualifier::Fail => SpfResult::Fail,
                            Qualifier::SoftFail => SpfResult::SoftFail,
                            Qualifier::Neutral => SpfResult::Neutral,
                        }
                    }
                    Ok(false) => {}
                    Err(r) => return r,
                }
            }
            if let Some(target) = &record.redirect {
                if let Err(r) = self.count_lookup() {
                    return r;
                }
                self.prepare_p(target, &domain).await;
                let Some(target) = self.expand_domain(target, &domain) else { return SpfResult::PermError };
                return match self.check(target, depth + 1).await {
                    SpfResult::None => SpfResult::PermError,
                    r => r,
                };
            }
            SpfResult::Neutral
        })
    }

    fn count_lookup(&mut self) -> Result<(), SpfResult> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            Err(SpfResult::PermError)
        } else {
            Ok(())
        }
    }

    fn void(&mut self) -> Result<(), SpfResult> {
        self.voids += 1;
        if self.voids > MAX_VOIDS {
            Err(SpfResult::PermError)
        } else {
            Ok(())
        }
    }

    /// The addresses of `name` in the client's family; void answers are counted.
    async fn addresses(&mut self, name: &str) -> Result<Vec<IpAddr>, SpfResult> {
        match self.dns.a(name, self.ip.is_ipv6()).await {
            Ok(v) if v.is_empty() => {
                self.void()?;
                Ok(v)
            }
            Ok(v) => Ok(v),
            Err(true) => {
                self.void()?;
                Ok(Vec::new())
            }
            Err(false) => Err(SpfResult::TempError),
        }
    }

    /// Looks up the client's validated name when a macro string needs `%{p}` (§7.3): a PTR name whose
    /// address records include the client, preferring one in the domain being checked.
    async fn prepare_p(&mut self, spec: &str, domain: &str) {
        if self.validated.is_some() || !spec.to_ascii_lowercase().contains("%{p") {
            return;
        }
        let mut found: Vec<String> = Vec::new();
        if let Ok(names) = self.dns.ptr(self.ip).await {
            for n in names.into_iter().take(10) {
                let n = n.trim_end_matches('.').to_string();
                if let Ok(ips) = self.dns.a(&n, self.ip.is_ipv6()).await {
                    if ips.contains(&self.ip) {
                        found.push(n);
                    }
                }
            }
        }
        let d = domain.to_ascii_lowercase();
        let best = found
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&d))
            .or_else(|| found.iter().find(|n| n.to_ascii_lowercase().ends_with(&format!(".{d}"))))
            .or(found.first());
        self.validated = Some(best.cloned().unwrap_or_else(|| "unknown".to_string()));
    }

    async fn matches(&mut self, m: &Mechanism, domain: &str, depth: u32) -> Result<bool, SpfResult> {
        let spec = match m {
            Mechanism::Include(s) | Mechanism::Exists(s) => Some(s.as_str()),
            Mechanism::A(Some(s), ..) | Mechanism::Mx(Some(s), ..) | Mechanism::Ptr(Some(s)) => Some(s.as_str()),
            _ => None,
        };
        if let Some(spec) = spec {
            self.prepare_p(spec, domain).await;
        }
        match m {
            Mechanism::All => Ok(true),
            Mechanism::Ip(net, prefix) => Ok(in_network(self.ip, *net, *prefix)),
            Mechanism::Include(spec) => {
                self.count_lookup()?;
                let Some(target) = self.target(&Some(spec.clone()), domain)? else { return Ok(false) };
                match self.check(target, depth + 1).await {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::TempError => Err(SpfResult::TempError),
                    SpfResult::PermError | SpfResult::None => Err(SpfResult::PermError),
                }
            }
            Mechanism::A(spec, c4, c6) => {
                self.count_lookup()?;
                let Some(target) = self.target(spec, domain)? else { return Ok(false) };
                let ips = self.addresses(&target).await?;
                Ok(ips.iter().any(|a| in_network(self.ip, *a, if a.is_ipv4() { *c4 } else { *c6 })))
            }
            Mechanism::Mx(spec, c4, c6) => {
                self.count_lookup()?;
                let Some(target) = self.target(spec, domain)? else { return Ok(false) };
                let names = match self.dns.mx(&target).await {
                    Ok(n) if n.is_empty() => {
                        self.void()?;
                        n
                    }
                    Ok(n) => n,
                    Err(true) => {
                        self.void()?;
                        Vec::new()
                    }
                    Err(false) => return Err(SpfResult::TempError),
                };
                if names.len() > 10 {
                    return Err(SpfResult::PermError);
                }
                for n in names {
                    if n.is_empty() || n == "." {
                        continue;
                    }
                    let ips = self.addresses(&n).await?;
                    if ips.iter().any(|a| in_network(self.ip, *a, if a.is_ipv4() { *c4 } else { *c6 })) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_lookup()?;
                let Some(target) = self.target(spec, domain)? else { return Ok(false) };
                let target = target.to_ascii_lowercase();
                let names = match self.dns.ptr(self.ip).await {
                    Ok(n) => n,
                    Err(_) => return Ok(false),
                };
                for n in names.into_iter().take(10) {
                    let n = n.trim_end_matches('.').to_ascii_lowercase();
                    if !(n == target || n.ends_with(&format!(".{target}"))) {
                        continue;
                    }
                    if let Ok(ips) = self.dns.a(&n, self.ip.is_ipv6()).await {
                        if ips.contains(&self.ip) {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            Mechanism::Exists(spec) => {
                self.count_lookup()?;
                let Some(target) = self.target(&Some(spec.clone()), domain)? else { return Ok(false) };
                match self.dns.a(&target, false).await {
                    Ok(v) if !v.is_empty() => Ok(true),
                    Ok(_) | Err(true) => {
                        self.void()?;
                        Ok(false)
                    }
                    Err(false) => Err(SpfResult::TempError),
                }
            }
        }
    }

    /// The name a mechanism looks up. A literal name was checked when the record was parsed; a name built
    /// from macros (say from a HELO that is no host name) that comes out invalid simply matches nothing.
    fn target(&self, spec: &Option<String>, domain: &str) -> Result<Option<String>, SpfResult> {
        match spec {
            Some(s) => match self.expand_domain(s, domain) {
                Some(t) => Ok(Some(t)),
                None if s.contains('%') => Ok(None),
                None => Err(SpfResult::PermError),
            },
            None => Ok(Some(domain.to_string())),
        }
    }

    /// Expands a domain-spec's macros and checks the result is a usable name (§7, §4.8).
    fn expand_domain(&self, spec: &str, domain: &str) -> Option<String> {
        let validated = self.validated.as_deref().unwrap_or("unknown");
        let mut out =
            expand(spec, &MacroVars { sender: &self.sender, domain, ip: self.ip, helo: &self.helo, validated })?;
        // §7.3: over 253 octets, drop labels from the left.
        while out.len() > 253 {
            out = out.split_once('.')?.1.to_string();
        }
        let trimmed = out.trim_end_matches('.');
        let labels: Vec<&str> = trimmed.split('.').collect();
        let top = labels.last()?;
        let top_ok = top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && top.bytes().any(|b| b.is_ascii_alphabetic())
            && !top.starts_with('-')
            && !top.ends_with('-');
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.len() > 63) || !top_ok {
            return None;
        }
        Some(trimmed.to_string())
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    // Families never mix here: an IPv4-mapped client was made IPv4 on entry (§5).
    ip.is_ipv4() == net.is_ipv4() && IpRange::new(net, prefix).contains(ip)
}

struct MacroVars<'a> {
    sender: &'a str,
    domain: &'a str,
    ip: IpAddr,
    helo: &'a str,
    validated: &'a str,
}

/// Macro expansion (§7.2-7.4). None on a syntax error.
fn expand(spec: &str, v: &MacroVars<'_>) -> Option<String> {
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            if !(c as u32 >= 0x21 && c as u32 <= 0x7e) {
                return None;
            }
            out.push(c);
            continue;
        }
        match chars.next()? {
            '%' => out.push('%'),
            '_' => out.push(' '),
            '-' => out.push_str("%20"),
            '{' => {
                let mut body = String::new();
                loop {
                    let c = chars.next()?;
                    if c == '}' {
                        break;
                    }
                    body.push(c);
                }
                out.push_str(&macro_value(&body, v)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn macro_value(body: &str, v: &MacroVars<'_>) -> Option<String> {
    let mut it = body.chars();
    let letter = it.next()?.to_ascii_lowercase();
    let rest: String = it.collect();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let mut tail = &rest[digits.len()..];
    let reverse = tail.starts_with(['r', 'R']);
    if reverse {
        tail = &tail[1..];
    }
    if !tail.chars().all(|c| matches!(c, '.' | '-' | '+' | ',' | '/' | '_' | '=')) {
        return None;
    }
    let delims: Vec<char> = if tail.is_empty() { vec!['.'] } else { tail.chars().collect() };
    let (local, sender_domain) = v.sender.rsplit_once('@').unwrap_or(("postmaster", v.sender));
    let value = match letter {
        's' => v.sender.to_string(),
        'l' => local.to_string(),
        'o' => sender_domain.to_string(),
        'd' => v.domain.to_string(),
        'i' => match v.ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => a
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .map(|n| format!("{n:x}"))
                .collect::<Vec<_>>()
                .join("."),
        },
        'p' => v.validated.to_string(),
        'v' => if v.ip.is_ipv4() { "in-addr" } else { "ip6" }.to_string(),
        'h' => v.helo.to_string(),
        _ => return None,
    };
    let mut parts: Vec<&str> = value.split(|c| delims.contains(&c)).collect();
    if reverse {
        parts.reverse();
    }
    if !digits.is_empty() {
        let n: usize = digits.parse().ok()?;
        if n == 0 {
            return None;
        }
        if parts.len() > n {
            parts = parts[parts.len() - n..].to_vec();
        }
    }
    Some(parts.join("."))
}

fn parse_cidr(s: &str) -> Option<(&str, u8, u8)> {
    // "<name>/<v4>//<v6>", "<name>//<v6>", "<name>/<v4>", "<name>": only trailing all-digit parts are
    // prefixes ("a:foo:bar/baz.example.com" is a name).
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let valid = |d: &str, max: u8| -> Option<u8> {
        if d.len() > 1 && d.starts_with('0') {
            return None;
        }
        d.parse::<u8>().ok().filter(|n| *n <= max)
    };
    let (rest, c6) = match s.rfind("//") {
        Some(i) if digits(&s[i + 2..]) => (&s[..i], valid(&s[i + 2..], 128)?),
        _ => (s, 128),
    };
    let (name, c4) = match rest.rfind('/') {
        Some(i) if digits(&rest[i + 1..]) => (&rest[..i], valid(&rest[i + 1..], 32)?),
        _ => (rest, 32),
    };
    Some((name, c4, c6))
}

/// domain-spec = macro-string domain-end; domain-end = "." toplabel ["."] / macro-expand (§7.1).
fn valid_domain_spec(s: &str) -> bool {
    if !valid_macro_string(s) {
        return false;
    }
    if s.ends_with('}') {
        return true;
    }
    let t = s.strip_suffix('.').unwrap_or(s);
    let Some((_, top)) = t.rsplit_once('.') else { return false };
    !top.is_empty()
        && top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && top.bytes().any(|b| b.is_ascii_alphabetic())
        && !top.starts_with('-')
        && !top.ends_with('-')
}

fn valid_macro_string(s: &str) -> bool {
    let v = MacroVars {
        sender: "a@b.c",
        domain: "b.c",
        ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        helo: "b.c",
        validated: "unknown",
    };
    expand(s, &v).is_some()
}

fn parse(text: &str) -> Option<Record> {
    let mut terms = text.split(' ').filter(|t| !t.is_empty());
    terms.next(); // v=spf1
    let mut rec = Record::default();
    let mut exp_seen = false;
    for term in terms {
        // Modifier: name "=" macro-string, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
        if let Some((name, value)) = term.split_once('=') {
            let is_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if is_name {
                match name.to_ascii_lowercase().as_str() {
                    "redirect" => {
                        if rec.redirect.is_some() || !valid_domain_spec(value) {
                            return None;
                        }
                        rec.redirect = Some(value.to_string());
                    }
                    "exp" => {
                        if exp_seen || !valid_domain_spec(value) {
                            return None;
                        }
                        exp_seen = true;
                    }
                    _ => {
                        if !valid_macro_string(value) {
                            return None;
                        }
                    }
                }
                continue;
            }
        }
        let (q, body) = match term.chars().next()? {
            '+' => (Qualifier::Pass, &term[1..]),
            '-' => (Qualifier::Fail, &term[1..]),
            '~' => (Qualifier::SoftFail, &term[1..]),
            '?' => (Qualifier::Neutral, &term[1..]),
            _ => (Qualifier::Pass, term),
        };
        let split = body.find([':', '/']).unwrap_or(body.len());
        let (name, arg) = (body[..split].to_ascii_lowercase(), &body[split..]);
        let spec = |arg: &str| -> Option<Option<String>> {
            match arg.strip_prefix(':') {
                Some(s) if valid_domain_spec(s) => Some(Some(s.to_string())),
                Some(_) => None,
                None if arg.is_empty() => Some(None),
                None => None,
            }
        };
        let m = match name.as_str() {
            "all" if arg.is_empty() => Mechanism::All,
            "include" => Mechanism::Include(spec(arg)??),
            "exists" => Mechanism::Exists(spec(arg)??),
            "ptr" => Mechanism::Ptr(spec(arg)?),
            "a" | "mx" => {
                let (domain_part, c4, c6) = parse_cidr(arg)?;
                let d = spec(domain_part)?;
                if name == "a" {
                    Mechanism::A(d, c4, c6)
                } else {
                    Mechanism::Mx(d, c4, c6)
                }
            }
            "ip4" | "ip6" => {
                let a = arg.strip_prefix(':')?;
                let (addr, prefix) = match a.split_once('/') {
                    Some((ad, p)) => {
                        if p.is_empty() || (p.len() > 1 && p.starts_with('0')) || !p.bytes().all(|b| b.is_ascii_digit())
                        {
                            return None;
                        }
                        (ad, Some(p.parse::<u8>().ok()?))
                    }
                    None => (a, None),
                };
                let ip: IpAddr = addr.parse().ok()?;
                let max = if name == "ip4" { 32 } else { 128 };
                if (name == "ip4") != ip.is_ipv4() || prefix.is_some_and(|p| p > max) {
                    return None;
                }
                Mechanism::Ip(ip, prefix.unwrap_or(max))
            }
            _ => return None,
        };
        rec.directives.push((q, m));
    }
    Some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let r = parse("v=spf1 ip4:192.0.2.0/24 a:mail.example.com/28//64 mx ~all").unwrap();
        assert_eq!(r.directives.len(), 4);
        for bad in [
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 foo",
            "v=spf1 redirect=a.com redirect=b.com",
            "v=spf1 exp=%{",
            "v=spf1 a:",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn macros() {
        let v = MacroVars {
            sender: "strong-bad@email.example.com",
            domain: "email.example.com",
            ip: "192.0.2.3".parse().unwrap(),
            helo: "mx.example.org",
            validated: "mx.example.org",
        };
        assert_eq!(expand("%{s}", &v).unwrap(), "strong-bad@email.example.com");
        assert_eq!(expand("%{o}", &v).unwrap(), "email.example.com");
        assert_eq!(expand("%{d4}", &v).unwrap(), "email.example.com");
        assert_eq!(expand("%{d2}", &v).unwrap(), "example.com");
        assert_eq!(expand("%{dr}", &v).unwrap(), "com.example.email");
        assert_eq!(expand("%{l-}", &v).unwrap(), "strong.bad");
        assert_eq!(expand("%{ir}.%{v}._spf.%{d2}", &v).unwrap(), "3.2.0.192.in-addr._spf.example.com");
        assert_eq!(expand("%{p}", &v).unwrap(), "mx.example.org");
        assert!(expand("%{x}", &v).is_none());
        assert!(expand("%a", &v).is_none());
    }
}
