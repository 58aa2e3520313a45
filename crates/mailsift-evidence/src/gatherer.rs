//! The sender-evidence gatherer: for one message and its envelope, every DNS question asked concurrently
//! under one deadline, and the answers turned into the engine's plain facts ([`SenderFacts`]).
//!
//! SPF is evaluated by our own `check_host` (`spf.rs`); reverse DNS, DKIM, ARC and DMARC by the
//! `mail-auth` crate, whose answers are read here into facts. What depends on what: SPF, reverse DNS,
//! DKIM, ARC, the DNS lists and the proxy probe are independent and run together; DMARC needs SPF's and
//! DKIM's outcomes and runs after them, together with the follow-ups of the first round (the forward
//! confirmation of PTR names, the second look at signatures whose body hash differs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use mail_auth::common::resolver::ToFqdn;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig as DnsConnection, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, Error as AuthError, IprevResult,
    MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt, MX,
};
use mailsift_engine::config::{ConnectionConfig, DnsConfig, DnsListConfig, DnsListKind};
use mailsift_engine::envelope::Envelope;
use mailsift_engine::evidence::{
    ArcFacts, DkimFacts, DkimVerdict, DmarcFacts, DmarcPolicy, DmarcRecordFacts, DnsListHit, Outcome, PtrFacts,
    SenderFacts, SpfResult,
};

use crate::cache::TtlCache;

struct Caches {
    /// SPF's own TXT answers (mail-auth's cache holds parsed records of its own kinds).
    spf_txt: TtlCache<Box<str>, Vec<String>>,
    txt: TtlCache<Box<str>, Txt>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
}

/// Gathers sender evidence. Build once (it holds the resolver and the caches) and share.
pub struct SenderGatherer {
    auth: MessageAuthenticator,
    caches: Caches,
    config: DnsConfig,
    lists: Vec<DnsListConfig>,
    /// Lists (zones) that answered with an error code, left alone until the entry expires.
    backoff: moka::sync::Cache<String, ()>,
    probe: Option<ConnectionConfig>,
    /// Messages whose sender checks had a lookup time out or fail temporarily (for the metrics endpoint).
    temporary_failures: std::sync::atomic::AtomicU64,
}

/// How long a list that answered with an error code is left alone.
const LIST_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("[dns] nameservers: {0:?} is not an IP address or IP:port")]
    BadNameserver(String),
    #[error("[dns]: cannot set up the resolver: {0}")]
    Resolver(String),
}

macro_rules! params {
    ($self:ident, $p:expr) => {
        Parameters::new($p)
            .with_txt_cache(&$self.caches.txt)
            .with_mx_cache(&$self.caches.mx)
            .with_ptr_cache(&$self.caches.ptr)
            .with_ipv4_cache(&$self.caches.ipv4)
            .with_ipv6_cache(&$self.caches.ipv6)
    };
}

impl SenderGatherer {
    pub fn new(config: &DnsConfig) -> Result<SenderGatherer, DnsSetupError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(config.timeout_ms.max(1));
        opts.attempts = 1;
        // Our caches hold parsed positive answers; the resolver's own cache is what remembers negative ones
        // (no DMARC record, no PTR), which mail-auth does not cache.
        opts.cache_size = config.cache_entries.min(u64::MAX as usize) as u64;
        opts.negative_min_ttl = Some(Duration::from_secs(60));
        opts.negative_max_ttl = Some(Duration::from_secs(900));
        let auth = if config.nameservers.is_empty() {
            let (conf, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                .unwrap_or_else(|_| (ResolverConfig::from_parts(None, vec![], vec![]), ResolverOpts::default()));
            MessageAuthenticator::new(conf, opts)
        } else {
            let mut servers = Vec::new();
            for ns in &config.nameservers {
                let addr: SocketAddr = ns
                    .parse()
                    .or_else(|_| ns.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| DnsSetupError::BadNameserver(ns.clone()))?;
                let mut udp = DnsConnection::udp();
                udp.port = addr.port();
                let mut tcp = DnsConnection::tcp();
                tcp.port = addr.port();
                servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
            }
            MessageAuthenticator::new(ResolverConfig::from_parts(None, vec![], servers), opts)
        }
        .map_err(|e| DnsSetupError::Resolver(e.to_string()))?;
        let n = config.cache_entries;
        Ok(SenderGatherer {
            auth,
            caches: Caches {
                spf_txt: TtlCache::new(n),
                txt: TtlCache::new(n),
                mx: TtlCache::new(n),
                ptr: TtlCache::new(n),
                ipv4: TtlCache::new(n),
                ipv6: TtlCache::new(n),
            },
            config: config.clone(),
            lists: Vec::new(),
            backoff: moka::sync::Cache::builder().max_capacity(4096).time_to_live(LIST_BACKOFF).build(),
            temporary_failures: std::sync::atomic::AtomicU64::new(0),
            probe: None,
        })
    }

    /// The gatherer the engine configuration asks for: DNS, lists, and the open-proxy probe when on.
    pub fn from_config(config: &mailsift_engine::EngineConfig) -> Result<SenderGatherer, DnsSetupError> {
        let mut g = SenderGatherer::new(&config.dns)?;
        g.lists = config.dnsbl.clone();
        if config.connection.open_proxy_probe {
            g.probe = Some(config.connection.clone());
        }
        Ok(g)
    }

    /// Where mail for `domain` goes (RFC 5321 §5.1), for outbound delivery: the MX hosts by preference,
    /// each resolved to its IPv4 then IPv6 addresses; without MX records, the domain's own addresses (the
    /// implicit MX). `Err(true)`: the domain takes no mail (no such domain, or a null MX, RFC 7505);
    /// `Err(false)`: DNS failed for now.
    pub async fn mail_hosts(&self, domain: &str) -> Result<Vec<IpAddr>, bool> {
        use crate::spf::SpfDns;
        let hosts = match self.mx(domain).await {
            Ok(hosts) if hosts.iter().any(|h| h.is_empty() || h == ".") => return Err(true),
            Ok(hosts) if !hosts.is_empty() => hosts,
            Ok(_) | Err(true) => vec![domain.to_string()],
            Err(false) => return Err(false),
        };
        // Every host's addresses asked at once; the answers are read in the order of preference.
        let lookups = hosts.iter().flat_map(|host| [false, true].map(|v6| self.a(host, v6)));
        let mut out = Vec::new();
        let mut temporary = false;
        for answer in futures_join_all(lookups).await {
            match answer {
                Ok(ips) => out.extend(ips),
                Err(false) => temporary = true,
                Err(true) => {}
            }
        }
        match (out.is_empty(), temporary) {
            (false, _) => Ok(out),
            (true, true) => Err(false),
            (true, false) => Err(true),
        }
    }

    /// Gathers every fact for one message; URL domains (from the parsed message) feed URL lists. `door`:
    /// what the door check at MAIL FROM learned about this transaction's client ([`Self::gather_at_door`]):
    /// its SPF, reverse DNS, client lists and proxy probe are taken as they are, not asked again (when it
    /// was gathered for the same client address, HELO and envelope sender; otherwise it is ignored).
    pub async fn gather_with_urls(
        &self,
        raw: &[u8],
        envelope: &Envelope,
        url_domains: &[&str],
        door: Option<&DoorFacts>,
    ) -> SenderFacts {
        let door = door.filter(|d| d.is_for(envelope));
        let (facts, _) = self.gather_all(raw, envelope, url_domains, door).await;
        if !facts.timed_out.is_empty() || !facts.temporary_failures().is_empty() {
            self.temporary_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        facts
    }

    /// The facts about the client before any message (SMTP's door check at MAIL FROM): PTR, SPF, and the
    /// lists of its address, HELO and sender. Not counted among the messages whose checks failed
    /// temporarily: its message, if it gets that far, is counted once. Hand the result to
    /// [`Self::gather_with_urls`] for the transaction's message, so that nothing is asked twice (and a
    /// resolver outage costs one deadline per message, not two).
    pub async fn gather_at_door(&self, envelope: &Envelope) -> DoorFacts {
        let (facts, raw) = self.gather_all(b"", envelope, &[], None).await;
        DoorFacts {
            client_ip: envelope.client_ip,
            helo: envelope.helo.clone(),
            mail_from: envelope.mail_from.clone(),
            facts,
            spf: raw.spf,
            iprev: raw.iprev,
        }
    }

    async fn gather_all(
        &self,
        raw: &[u8],
        envelope: &Envelope,
        url_domains: &[&str],
        door: Option<&DoorFacts>,
    ) -> (SenderFacts, RawAnswers) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config.deadline_ms.max(1));
        // With the door's facts, only what depends on the message is asked: URL lists.
        let lists_fut = async {
            match door {
                Some(_) => Ok(self.query_lists(envelope, url_domains, true).await),
                None => tokio::time::timeout_at(deadline, self.query_lists(envelope, url_domains, false)).await,
            }
        };
        let proxy_fut = async {
            match door {
                Some(d) => Ok(d.facts.open_proxy),
                None => tokio::time::timeout_at(deadline, self.probe_proxy(envelope)).await,
            }
        };
        let ((mut facts, answers), lists, proxy) =
            tokio::join!(self.gather_one(raw, envelope, door), tokio::time::timeout_at(deadline, lists_fut), proxy_fut);
        match lists {
            Ok(Ok((hits, errors))) => {
                facts.dns_lists = hits;
                facts.dns_list_errors = errors;
            }
            Ok(Err(_)) | Err(_) => facts.timed_out.push("dns lists".into()),
        }
        if let Some(d) = door {
            // The client's listings (and a listing check that timed out) as the door found them.
            for hit in &d.facts.dns_lists {
                if !facts.dns_lists.iter().any(|h| h.symbol == hit.symbol) {
                    facts.dns_lists.push(hit.clone());
                }
            }
            facts.dns_list_errors.extend(d.facts.dns_list_errors.iter().cloned());
            // What did not finish at the door (SPF, reverse DNS, the client's lists) is this message's too.
            for what in &d.facts.timed_out {
                if !facts.timed_out.contains(what) {
                    facts.timed_out.push(what.clone());
                }
            }
        }
        facts.open_proxy = proxy.ok().flatten();
        (facts, answers)
    }

    /// How many messages so far had a DNS lookup time out or fail temporarily during their sender checks.
    pub fn temporary_failure_count(&self) -> u64 {
        self.temporary_failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the configured lists about the client, its HELO, its sender and the URLs' domains; with
    /// `urls_only`, about the URLs' domains alone (the rest was asked at the door).
    async fn query_lists(
        &self,
        envelope: &Envelope,
        url_domains: &[&str],
        urls_only: bool,
    ) -> (Vec<DnsListHit>, Vec<String>) {
        let mut queries: Vec<(usize, String, String)> = Vec::new();
        {
            for (i, l) in self.lists.iter().enumerate() {
                if self.backoff.contains_key(&l.zone) || (urls_only && l.kind != DnsListKind::Url) {
                    continue;
                }
                // (what a person reads, the label asked under the zone)
                let subjects: Vec<(String, String)> = match l.kind {
                    DnsListKind::Ip => {
                        envelope.client_ip.map(|ip| (ip.to_string(), reversed(ip))).into_iter().collect()
                    }
                    DnsListKind::Sender => envelope
                        .mail_from
                        .as_deref()
                        .and_then(|m| m.rsplit_once('@'))
                        .map(|(_, d)| (d.to_ascii_lowercase(), d.to_ascii_lowercase()))
                        .into_iter()
                        .collect(),
                    DnsListKind::Helo => envelope
                        .helo
                        .iter()
                        .map(|h| h.to_ascii_lowercase())
                        .filter(|h| h.contains('.'))
                        .map(|h| (h.clone(), h))
                        .collect(),
                    DnsListKind::Url => url_domains.iter().take(10).map(|d| (d.to_string(), d.to_string())).collect(),
                };
                for (shown, label) in subjects {
                    let name = format!("{label}.{}", l.zone.trim_end_matches('.'));
                    queries.push((i, shown, name));
                }
            }
        }
        let lookups = queries.iter().map(|(_, _, name)| self.auth.ipv4_lookup(name.as_str(), Some(&self.caches.ipv4)));
        let answers = futures_join_all(lookups).await;
        let (mut hits, mut errors) = (Vec::new(), Vec::new());
        for ((i, subj, _), answer) in queries.iter().zip(answers) {
            let l = &self.lists[*i];
            let Ok(set) = answer else { continue };
            for code in set.rrset.iter() {
                let o = code.octets();
                if o[0] != 127 || (o[1] == 255 && o[2] == 255) {
                    // An error or policy answer ("query refused", "over quota"): report it and back off.
                    errors.push(format!("{} answered {code} for {subj}", l.zone));
                    self.backoff.insert(l.zone.clone(), ());
                    continue;
                }
                let code_s = code.to_string();
                let symbol = l
                    .returns
                    .iter()
                    .find(|r| r.code == code_s)
                    .map(|r| r.symbol.clone())
                    .unwrap_or_else(|| l.symbol.clone());
                if !hits.iter().any(|h: &DnsListHit| h.symbol == symbol) {
                    hits.push(DnsListHit { symbol, zone: l.zone.clone(), queried: subj.clone(), code: code_s });
                }
            }
        }
        (hits, errors)
    }

    /// Connects back to the client's common proxy ports and asks each to relay to itself; a port that
    /// agrees is an open proxy. Off unless configured.
    async fn probe_proxy(&self, envelope: &Envelope) -> Option<u16> {
        let probe = self.probe.as_ref()?;
        let ip = envelope.client_ip?;
        let per_port = Duration::from_millis(probe.open_proxy_timeout_ms.max(1));
        let tries = probe.open_proxy_ports.iter().map(|&port| async move {
            let attempt = async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
                s.write_all(format!("CONNECT {ip}:25 HTTP/1.0\r\n\r\n").as_bytes()).await.ok()?;
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.ok()?;
                let head = String::from_utf8_lossy(&buf[..n]);
                (head.starts_with("HTTP/1.") && head.get(9..12) == Some("200")).then_some(port)
            };
            tokio::time::timeout(per_port, attempt).await.ok().flatten()
        });
        futures_join_all(tries).await.into_iter().flatten().next()
    }

    /// Gathers every fact for one message. Never takes longer than the configured deadline.
    pub async fn gather(&self, raw: &[u8], envelope: &Envelope) -> SenderFacts {
        self.gather_one(raw, envelope, None).await.0
    }

    /// [`Self::gather`], with the door's SPF and reverse DNS taken as they are when given (already checked
    /// to be for this envelope); returns mail-auth's SPF and iprev answers too, for the door to keep.
    async fn gather_one(&self, raw: &[u8], envelope: &Envelope, door: Option<&DoorFacts>) -> (SenderFacts, RawAnswers) {
        let deadline = Duration::from_millis(self.config.deadline_ms.max(1));
        let start = tokio::time::Instant::now() + deadline;
        let mut facts = SenderFacts::default();
        let parsed = AuthenticatedMessage::parse(raw);
        let helo = envelope.helo.as_deref().unwrap_or("");
        let mail_from = envelope.mail_from.as_deref().unwrap_or("");
        let ip = envelope.client_ip;

        let spf_fut = async {
            if let Some(d) = door {
                return d.spf.clone();
            }
            let ip = ip?;
            // The MAIL FROM identity, or postmaster@HELO for the null sender (RFC 7208 §2.3, §2.4).
            let (domain, sender) = match mail_from.rsplit_once('@') {
                Some((_, d)) if mail_from.contains('@') => {
                    let sender = if mail_from.starts_with('@') {
                        format!("postmaster{mail_from}")
                    } else {
                        mail_from.to_string()
                    };
                    (d.to_string(), sender)
                }
                _ => (helo.to_string(), format!("postmaster@{helo}")),
            };
            let result = crate::spf::check_host(self, ip, &domain, &sender, helo).await;
            Some(mail_auth::SpfOutput::new(domain).with_result(to_auth_spf(result)))
        };
        let iprev_fut = async {
            if let Some(d) = door {
                return d.iprev.clone();
            }
            let ip = ip?;
            Some(self.auth.verify_iprev(params!(self, ip)).await)
        };
        let dkim_fut = async {
            let m = parsed.as_ref()?;
            Some(self.auth.verify_dkim(params!(self, m)).await)
        };
        let arc_fut = async {
            let m = parsed.as_ref()?;
            Some(self.auth.verify_arc(params!(self, m)).await)
        };
        // DMARC needs the SPF and DKIM outcomes, so it is evaluated in the second round; but the records it
        // walks for (the From domain's, then each parent's: RFC 9989's tree walk, one lookup after another)
        // depend on nothing but the From domain. Asked for now, all at once, they are in the caches when the
        // walk comes: a first message from a domain waits one round trip instead of one per label.
        let dmarc_names = parsed.as_ref().map(|m| dmarc_walk_names(&m.from)).unwrap_or_default();
        let prefetch_fut = futures_join_all(
            dmarc_names
                .iter()
                .map(|name| self.auth.txt_lookup::<mail_auth::dmarc::Dmarc>(name.as_str(), Some(&self.caches.txt))),
        );
        let (spf, iprev, dkim, arc, _) = tokio::join!(
            async { tokio::time::timeout_at(start, spf_fut).await.map_err(|_| "spf") },
            async { tokio::time::timeout_at(start, iprev_fut).await.map_err(|_| "ptr") },
            async { tokio::time::timeout_at(start, dkim_fut).await.map_err(|_| "dkim") },
            async { tokio::time::timeout_at(start, arc_fut).await.map_err(|_| "arc") },
            // Only warms the caches: a failure here is met again, and reported, by the walk itself.
            tokio::time::timeout_at(start, prefetch_fut),
        );
        for r in
            [spf.as_ref().err(), iprev.as_ref().err(), dkim.as_ref().err(), arc.as_ref().err()].into_iter().flatten()
        {
            facts.timed_out.push(r.to_string());
        }

        // Reverse DNS as iprev found it; with a pass, only the names that resolve back count (second round).
        // With the door's facts, as the door found and confirmed them.
        let mut ptr = match &iprev {
            _ if door.is_some() => door.and_then(|d| d.facts.ptr.clone()),
            Ok(Some(out)) => {
                let names: Vec<String> = out
                    .ptr
                    .as_ref()
                    .map(|p| p.iter().map(|n| n.trim_end_matches('.').to_lowercase()).collect())
                    .unwrap_or_default();
                let result = match &out.result {
                    IprevResult::Pass => Outcome::Pass,
                    IprevResult::Fail(_) => Outcome::Fail,
                    IprevResult::TempError(_) => Outcome::TempError,
                    IprevResult::PermError(e) if is_not_found(e) => {
                        if names.is_empty() {
                            Outcome::None
                        } else {
                            Outcome::Fail
                        }
                    }
                    IprevResult::PermError(_) => Outcome::PermError,
                    IprevResult::None => Outcome::None,
                };
                Some(PtrFacts { result, names })
            }
            Ok(None) => None,
            Err(_) => Some(PtrFacts { result: Outcome::TempError, names: vec![] }),
        };

        let spf_out = match spf {
            Ok(Some(out)) => Some(out),
            Ok(None) => None,
            Err(_) => Some(mail_auth::SpfOutput::new(String::new()).with_result(mail_auth::SpfResult::TempError)),
        };
        if let Some(out) = &spf_out {
            facts.spf_domain = Some(out.domain().to_string()).filter(|d| !d.is_empty());
        }
        let empty_dkim = Vec::new();
        let dkim_out = match &dkim {
            Ok(Some(v)) => v,
            _ => &empty_dkim,
        };
        // mail-auth compares the body hash before it verifies the signature over the headers, so "the body
        // hash does not match" says nothing about who signed: a DKIM-Signature header copied from any mail
        // of a domain onto a forged message gets the same answer. Each such signature is verified again on
        // a copy of the message that holds only that signature and takes the body hash it names as the
        // body's: Pass then means the signed headers verify with the published key, and only then is the
        // body "modified after signing" rather than the signature forged.
        let body_failed: Vec<usize> = dkim_out
            .iter()
            .enumerate()
            .filter(|(_, d)| is_body_hash_failure(d.result()))
            .map(|(i, _)| i)
            .take(MAX_BODY_RECHECKS)
            .collect();

        // Second round, what needs the first round's answers, concurrently (none needs another's): the
        // forward confirmation of the PTR names, the second look at those signatures, and DMARC, which
        // needs the SPF and DKIM outcomes.
        let confirm_fut = async {
            match (&ptr, ip) {
                (Some(p), Some(ip)) if p.result == Outcome::Pass && door.is_none() => Some(
                    tokio::time::timeout_at(start, self.confirmed_names(ip, p.names.clone())).await.unwrap_or_default(),
                ),
                _ => None,
            }
        };
        let recheck_fut = async {
            let m = parsed.as_ref().filter(|_| !body_failed.is_empty())?;
            let checks = body_failed.iter().map(|&i| self.verify_signed_headers(m, dkim_out[i].signature()));
            Some(tokio::time::timeout_at(start, futures_join_all(checks)).await)
        };
        let dmarc_fut = async {
            let (m, spf_o) = (parsed.as_ref()?, spf_out.as_ref()?);
            let mail_from_domain = mail_from.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo);
            let params = DmarcParameters {
                message: m,
                dkim_output: dkim_out,
                dkim2_output: None,
                rfc5321_mail_from_domain: mail_from_domain,
                spf_output: spf_o,
            };
            Some(tokio::time::timeout_at(start, self.auth.verify_dmarc(params!(self, params))).await)
        };
        let (confirmed, recheck, dmarc) = tokio::join!(confirm_fut, recheck_fut, dmarc_fut);

        if let (Some(p), Some(names)) = (ptr.as_mut(), confirmed) {
            p.names = names;
        }
        facts.ptr = ptr;

        let mut rechecked: Vec<Option<DkimResult>> = vec![None; body_failed.len()];
        let mut recheck_timed_out = false;
        match recheck {
            Some(Ok(results)) => rechecked = results,
            Some(Err(_)) => {
                recheck_timed_out = true;
                facts.timed_out.push("dkim".into());
            }
            None => {}
        }
        for (i, d) in dkim_out.iter().enumerate() {
            let (domain, selector) = d.signature().map(|s| (s.d.to_lowercase(), s.s.clone())).unwrap_or_default();
            let (verdict, detail) = match body_failed.iter().position(|&j| j == i) {
                Some(k) => match &rechecked[k] {
                    Some(DkimResult::Pass) => (
                        DkimVerdict::BodyModified,
                        "body hash does not match; the signed headers verify with the published key".into(),
                    ),
                    Some(r) => match dkim_verdict(r) {
                        (DkimVerdict::Fail, why) => (
                            DkimVerdict::Fail,
                            format!("signature does not verify ({why}) and the body hash does not match"),
                        ),
                        other => other,
                    },
                    None if recheck_timed_out => (DkimVerdict::TempError, "DNS deadline".into()),
                    None => (DkimVerdict::Fail, "body hash does not match; signature not found again".into()),
                },
                None if is_body_hash_failure(d.result()) => (
                    DkimVerdict::Fail,
                    format!(
                        "body hash does not match; signed headers not checked (more than {MAX_BODY_RECHECKS} such signatures)"
                    ),
                ),
                None => dkim_verdict(d.result()),
            };
            let signed_headers =
                d.signature().map(|s| s.h.iter().map(|h| h.to_ascii_lowercase()).collect()).unwrap_or_default();
            facts.dkim.push(DkimFacts { domain, selector, verdict, detail, signed_headers });
        }
        if dkim.is_err() {
            facts.dkim.push(DkimFacts {
                domain: String::new(),
                selector: String::new(),
                verdict: DkimVerdict::TempError,
                detail: "DNS deadline".into(),
                signed_headers: Vec::new(),
            });
        }
        // Structural checks the ARC library is lenient about (RFC 8617 §4.1): every instance needs its
        // three headers, tag lists must be well formed, only SHA-256 signatures count, and the message
        // signature must not cover ARC-Seal.
        let arc_broken = parsed.as_ref().and_then(|m| arc_structure_error(&m.headers));
        if let Some(problem) = &arc_broken {
            let hops = parsed.as_ref().map(|m| m.as_headers.len()).unwrap_or(0);
            facts.arc =
                Some(ArcFacts { result: Outcome::Fail, hops, first_hop_results: None, problem: Some(problem.clone()) });
        } else if let Ok(Some(a)) = &arc {
            let result = match a.result() {
                DkimResult::Pass => Outcome::Pass,
                DkimResult::None => Outcome::None,
                DkimResult::TempError(_) => Outcome::TempError,
                DkimResult::PermError(_) => Outcome::PermError,
                DkimResult::Fail(_) | DkimResult::Neutral(_) => Outcome::Fail,
            };
            if result != Outcome::None {
                let first_hop_results = parsed.as_ref().and_then(first_arc_results);
                facts.arc = Some(ArcFacts { result, hops: a.sets().len(), first_hop_results, problem: None });
            }
        }

        let mut dmarc_out = None;
        match dmarc {
            Some(Ok(out)) => {
                let result = match out.result() {
                    DmarcResult::Pass => Outcome::Pass,
                    DmarcResult::Fail(_) => Outcome::Fail,
                    DmarcResult::TempError(_) => Outcome::TempError,
                    DmarcResult::PermError(_) => Outcome::PermError,
                    DmarcResult::None => Outcome::None,
                };
                let policy = match out.policy() {
                    mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
                    mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
                    _ => DmarcPolicy::None,
                };
                if !out.domain().is_empty() {
                    facts.dmarc = Some(DmarcFacts {
                        domain: out.domain().to_string(),
                        result,
                        policy,
                        spf_aligned: *out.spf_result() == DmarcResult::Pass,
                        dkim_aligned: *out.dkim_result() == DmarcResult::Pass,
                    });
                    // What aggregate reports (RFC 7489 §7.2) say about the policy, and where they go.
                    facts.dmarc_record = out.dmarc_record().map(|r| {
                        use mail_auth::dmarc::{Alignment, Policy, Report};
                        let p = |p: Policy| match p {
                            Policy::Reject => DmarcPolicy::Reject,
                            Policy::Quarantine => DmarcPolicy::Quarantine,
                            _ => DmarcPolicy::None,
                        };
                        let fo = match r.fo {
                            Report::All => "0",
                            Report::Any => "1",
                            Report::Dkim => "d",
                            Report::Spf => "s",
                            Report::DkimSpf => "d:s",
                        };
                        DmarcRecordFacts {
                            p: p(r.p),
                            sp: if r.sp == Policy::Unspecified { p(r.p) } else { p(r.sp) },
                            pct: if r.t { 0 } else { 100 },
                            adkim_strict: r.adkim == Alignment::Strict,
                            aspf_strict: r.aspf == Alignment::Strict,
                            fo: fo.into(),
                            // mail-auth keeps only `mailto:` URIs, without the scheme.
                            rua: r.rua.iter().map(|u| (format!("mailto:{}", u.uri()), u.max_size() as u64)).collect(),
                        }
                    });
                }
                dmarc_out = Some(out);
            }
            Some(Err(_)) => facts.timed_out.push("dmarc".into()),
            None => {}
        }

        // Authentication-Results (RFC 8601), written by mail-auth from the same outputs.
        let mut ar = AuthenticationResults::new(&self.config.hostname);
        let header_from = parsed.as_ref().and_then(|m| m.from.first().map(String::as_str)).unwrap_or("");
        if !dkim_out.is_empty() {
            ar = ar.with_dkim_results(dkim_out, header_from);
        }
        if let (Some(o), Some(ip)) = (&spf_out, ip) {
            ar = if mail_from.contains('@') {
                ar.with_spf_mailfrom_result(o, ip, mail_from, helo)
            } else {
                ar.with_spf_ehlo_result(o, ip, helo)
            };
        }
        if let (Ok(Some(a)), Some(ip)) = (&arc, ip) {
            if !a.sets().is_empty() {
                ar = ar.with_arc_result(a, ip);
            }
        }
        if let Some(d) = &dmarc_out {
            ar = ar.with_dmarc_result(d);
        }
        if let (Ok(Some(out)), Some(ip)) = (&iprev, ip) {
            ar = ar.with_iprev_result(out, ip);
        }
        let text = ar.to_string();
        let value = text.strip_prefix("Authentication-Results:").unwrap_or(&text).trim();
        facts.authentication_results = Some(value.to_string()).filter(|s| !s.is_empty());
        facts.spf = spf_out.as_ref().map(|o| spf_result(o.result()));
        let iprev = iprev.ok().flatten();
        (facts, RawAnswers { spf: spf_out, iprev })
    }

    /// What an ARC sealer needs (RFC 8617 §5.1): `message` as it was received, its DKIM signatures and ARC
    /// chain verified again, and the Authentication-Results it is sealed with (DKIM, the envelope's SPF, ARC;
    /// authserv-id the configured hostname). `None` when the checks did not finish within the evidence
    /// deadline: a chain that could not be checked is not sealed over.
    pub async fn arc_seal_inputs<'x>(
        &'x self,
        message: &'x AuthenticatedMessage<'x>,
        envelope: &Envelope,
    ) -> Option<(mail_auth::ArcOutput<'x>, AuthenticationResults<'x>)> {
        let deadline = Duration::from_millis(self.config.deadline_ms.max(1));
        let helo = envelope.helo.as_deref().unwrap_or("");
        let mail_from = envelope.mail_from.as_deref().unwrap_or("");
        let spf_fut = async {
            let ip = envelope.client_ip?;
            let (domain, sender) = match mail_from.rsplit_once('@') {
                Some((_, d)) => (d.to_string(), mail_from.to_string()),
                None => (helo.to_string(), format!("postmaster@{helo}")),
            };
            let result = crate::spf::check_host(self, ip, &domain, &sender, helo).await;
            Some((mail_auth::SpfOutput::new(domain).with_result(to_auth_spf(result)), ip))
        };
        let checks = async {
            tokio::join!(
                self.auth.verify_dkim(params!(self, message)),
                self.auth.verify_arc(params!(self, message)),
                spf_fut
            )
        };
        let (dkim, arc, spf) = tokio::time::timeout(deadline, checks).await.ok()?;
        let mut ar = AuthenticationResults::new(&self.config.hostname);
        let header_from = message.from.first().map(String::as_str).unwrap_or("");
        if !dkim.is_empty() {
            ar = ar.with_dkim_results(&dkim, header_from);
        }
        if let Some((spf, ip)) = &spf {
            ar = if mail_from.contains('@') {
                ar.with_spf_mailfrom_result(spf, *ip, mail_from, helo)
            } else {
                ar.with_spf_ehlo_result(spf, *ip, helo)
            };
            if !arc.sets().is_empty() {
                ar = ar.with_arc_result(&arc, *ip);
            }
        }
        Some((arc, ar))
    }
}

/// mail-auth's own SPF and iprev answers for one gathering: the Authentication-Results header is written
/// from them, so the door keeps them for its message.
struct RawAnswers {
    spf: Option<mail_auth::SpfOutput>,
    iprev: Option<mail_auth::IprevOutput>,
}

/// What the door check at MAIL FROM learned about a transaction's client (SPF, reverse DNS, the lists of
/// its address, HELO and sender, the proxy probe), kept with the transaction so that its message is not
/// asked about again. Only used for the same client address, HELO and envelope sender.
#[derive(Debug, Clone)]
pub struct DoorFacts {
    client_ip: Option<IpAddr>,
    helo: Option<String>,
    mail_from: Option<String>,
    facts: SenderFacts,
    spf: Option<mail_auth::SpfOutput>,
    iprev: Option<mail_auth::IprevOutput>,
}

impl DoorFacts {
    /// The facts as the door check judges them.
    pub fn facts(&self) -> &SenderFacts {
        &self.facts
    }

    /// Whether these were gathered for `envelope`'s client, HELO and sender.
    fn is_for(&self, envelope: &Envelope) -> bool {
        self.client_ip == envelope.client_ip && self.helo == envelope.helo && self.mail_from == envelope.mail_from
    }
}

impl SenderGatherer {
    /// Verifies one DKIM signature's header hash alone: a copy of the message holding only that signature,
    /// with the body hash the signature names, goes through mail-auth's verification again (its key lookup
    /// uses the same caches). Pass means the signed headers verify with the published key, whatever the
    /// body now is. None when the signature is not found in the message (it always is).
    async fn verify_signed_headers(
        &self,
        m: &AuthenticatedMessage<'_>,
        sig: Option<&mail_auth::dkim::Signature>,
    ) -> Option<DkimResult> {
        let sig = sig?;
        let header = m.dkim_headers.iter().find(|h| &h.header == sig)?;
        let mut copy = m.clone();
        copy.dkim_headers = vec![header.clone()];
        // Malformed signatures are reported from the first pass; here only this one's result is wanted.
        copy.errors.clear();
        let mut found = false;
        for (canon, _, length, hash) in copy.body_hashes.iter_mut() {
            if *canon == sig.cb && *length == sig.l {
                *hash = sig.bh.clone();
                found = true;
            }
        }
        if !found {
            return None;
        }
        let out = self.auth.verify_dkim(params!(self, &copy)).await;
        let result = out.first().map(|o| o.result().clone());
        result
    }

    /// The PTR names that resolve back to `ip`. mail-auth's iprev passes when one of the first two names
    /// does but reports every name; only these are facts. The lookups were made (and cached) by iprev.
    async fn confirmed_names(&self, ip: IpAddr, names: Vec<String>) -> Vec<String> {
        // iprev looks at the first two names only; so does this. Both are asked at once.
        let names: Vec<String> = names.into_iter().take(2).collect();
        let checks = names.iter().map(|name| async move {
            match ip {
                IpAddr::V4(v4) => self
                    .auth
                    .ipv4_lookup(name.as_str(), Some(&self.caches.ipv4))
                    .await
                    .is_ok_and(|r| r.rrset.contains(&v4)),
                IpAddr::V6(v6) => self
                    .auth
                    .ipv6_lookup(name.as_str(), Some(&self.caches.ipv6))
                    .await
                    .is_ok_and(|r| r.rrset.contains(&v6)),
            }
        });
        let confirmed = futures_join_all(checks).await;
        names.into_iter().zip(confirmed).filter(|(_, ok)| *ok).map(|(name, _)| name).collect()
    }
}

/// At most this many signatures whose body hash differs are verified again per message: each costs a key
/// lookup and a signature check, and a sender can put any number of DKIM-Signature headers in a message.
const MAX_BODY_RECHECKS: usize = 8;

/// mail-auth's answer for a signature whose body hash differs (given before the header signature is
/// checked).
fn is_body_hash_failure(r: &DkimResult) -> bool {
    matches!(
        r,
        DkimResult::Neutral(AuthError::Dkim(DkimError::FailedBodyHashMatch))
            | DkimResult::Fail(AuthError::Dkim(DkimError::FailedBodyHashMatch))
    )
}

impl crate::spf::SpfDns for SenderGatherer {
    fn txt(
        &self,
        name: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, bool>> + Send + '_>> {
        let name = name.to_string();
        Box::pin(async move {
            if let Some(v) = self.caches.spf_txt.get(name.as_str()) {
                return Ok(v);
            }
            let Ok(qname) = mail_auth::hickory_resolver::proto::rr::Name::from_str_relaxed(fqdn(&name).as_str()) else {
                return Err(true);
            };
            match self.auth.resolver().txt_lookup(qname).await {
                Ok(lookup) => {
                    let mut out = Vec::new();
                    for r in lookup.answers() {
                        if let mail_auth::hickory_resolver::proto::rr::RData::TXT(txt) = &r.data {
                            let joined: Vec<u8> = txt.txt_data.iter().flat_map(|d| d.iter().copied()).collect();
                            out.push(String::from_utf8_lossy(&joined).into_owned());
                        }
                    }
                    // Kept as long as the answer's TTL says (capped by the cache).
                    self.caches.spf_txt.insert(name.into_boxed_str(), out.clone(), lookup.valid_until());
                    Ok(out)
                }
                // NXDOMAIN and NODATA are "no records found"; anything else is a temporary failure.
                Err(e) => Err(is_not_found(&AuthError::from(e))),
            }
        })
    }

    fn a(
        &self,
        name: &str,
        v6: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<IpAddr>, bool>> + Send + '_>> {
        let name = name.to_string();
        Box::pin(async move {
            // A name DNS cannot carry does not exist (a void answer), it is not a DNS failure.
            if mail_auth::hickory_resolver::proto::rr::Name::from_ascii(fqdn(&name).as_str()).is_err() {
                return Err(true);
            }
            if v6 {
                match self.auth.ipv6_lookup(name.as_str(), Some(&self.caches.ipv6)).await {
                    Ok(r) => Ok(r.rrset.iter().map(|a| IpAddr::V6(*a)).collect()),
                    Err(e) => Err(is_not_found(&e)),
                }
            } else {
                match self.auth.ipv4_lookup(name.as_str(), Some(&self.caches.ipv4)).await {
                    Ok(r) => Ok(r.rrset.iter().map(|a| IpAddr::V4(*a)).collect()),
                    Err(e) => Err(is_not_found(&e)),
                }
            }
        })
    }

    fn mx(
        &self,
        name: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, bool>> + Send + '_>> {
        let name = name.to_string();
        Box::pin(async move {
            match self.auth.mx_lookup(name.as_str(), Some(&self.caches.mx)).await {
                Ok(r) => {
                    let mut mx: Vec<&MX> = r.rrset.iter().collect();
                    mx.sort_by_key(|m| m.preference);
                    Ok(mx
                        .iter()
                        .flat_map(|m| m.exchanges.iter().map(|e| e.trim_end_matches('.').to_string()))
                        .collect())
                }
                Err(e) => Err(is_not_found(&e)),
            }
        })
    }

    fn ptr(
        &self,
        ip: IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, bool>> + Send + '_>> {
        Box::pin(async move {
            match self.auth.ptr_lookup(ip, Some(&self.caches.ptr)).await {
                Ok(r) => Ok(r.rrset.iter().map(|n| n.to_string()).collect()),
                Err(e) => Err(is_not_found(&e)),
            }
        })
    }
}

/// The name a DNS list is asked for an IP: reversed octets (or nibbles for IPv6).
fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(&format!("{:x}.{:x}", b & 0xf, b >> 4));
            }
            s
        }
    }
}

/// The names DMARC's tree walk (RFC 9989 §4.10.1, as mail-auth walks it) may ask for the From domain, in
/// walk order: `_dmarc.` + the domain, then its parents down to the top-level domain, jumping to seven labels
/// from a longer name (at most eight names). None when the From header has no single ASCII domain (DMARC is
/// then not evaluated, or the walk's own conversion applies).
fn dmarc_walk_names(from: &[String]) -> Vec<String> {
    let mut domains = from.iter().filter_map(|f| f.rsplit_once('@').map(|(_, d)| d));
    let Some(first) = domains.next() else {
        return Vec::new();
    };
    if domains.any(|d| !d.eq_ignore_ascii_case(first)) || !first.is_ascii() {
        return Vec::new();
    }
    let domain = first.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.as_str();
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let total = labels.len();
    if total < 2 || domain.len() > 253 {
        return Vec::new();
    }
    let mut names = Vec::with_capacity(8);
    let mut count = total;
    loop {
        let suffix = domain.splitn(total - count + 1, '.').last().unwrap_or(domain);
        names.push(format!("_dmarc.{suffix}."));
        if count == 1 {
            break;
        }
        count = if count >= 8 { 7 } else { count - 1 };
    }
    names
}

/// Runs futures concurrently and collects their outputs in order (a small join_all, to avoid a dependency).
async fn futures_join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future finished")).collect()
}

fn to_auth_spf(r: SpfResult) -> mail_auth::SpfResult {
    match r {
        SpfResult::Pass => mail_auth::SpfResult::Pass,
        SpfResult::Fail => mail_auth::SpfResult::Fail,
        SpfResult::SoftFail => mail_auth::SpfResult::SoftFail,
        SpfResult::Neutral => mail_auth::SpfResult::Neutral,
        SpfResult::None => mail_auth::SpfResult::None,
        SpfResult::TempError => mail_auth::SpfResult::TempError,
        SpfResult::PermError => mail_auth::SpfResult::PermError,
    }
}

fn is_not_found(e: &AuthError) -> bool {
    matches!(e, AuthError::Dns(mail_auth::DnsError::RecordNotFound(_)))
}

fn spf_result(r: mail_auth::SpfResult) -> SpfResult {
    match r {
        mail_auth::SpfResult::Pass => SpfResult::Pass,
        mail_auth::SpfResult::Fail => SpfResult::Fail,
        mail_auth::SpfResult::SoftFail => SpfResult::SoftFail,
        mail_auth::SpfResult::Neutral => SpfResult::Neutral,
        mail_auth::SpfResult::TempError => SpfResult::TempError,
        mail_auth::SpfResult::PermError => SpfResult::PermError,
        mail_auth::SpfResult::None => SpfResult::None,
    }
}

fn dkim_verdict(r: &DkimResult) -> (DkimVerdict, String) {
    match r {
        DkimResult::Pass => (DkimVerdict::Pass, String::new()),
        // Given before the header signature is checked, so never BodyModified by itself: `gather` verifies
        // the signed headers separately and says BodyModified only when they verify.
        DkimResult::Neutral(AuthError::Dkim(DkimError::FailedBodyHashMatch))
        | DkimResult::Fail(AuthError::Dkim(DkimError::FailedBodyHashMatch)) => {
            (DkimVerdict::Fail, "body hash does not match".into())
        }
        DkimResult::Neutral(AuthError::Dkim(DkimError::SignatureExpired))
        | DkimResult::Fail(AuthError::Dkim(DkimError::SignatureExpired)) => {
            (DkimVerdict::Expired, "signature expired".into())
        }
        DkimResult::PermError(e) | DkimResult::Neutral(e) | DkimResult::Fail(e) if is_not_found(e) => {
            (DkimVerdict::KeyMissing, "no key published".into())
        }
        // A signature we cannot even evaluate (unknown version or algorithm, i= outside d=, revoked key) is
        // broken rather than failed.
        DkimResult::Fail(e @ AuthError::Dkim(k)) | DkimResult::Neutral(e @ AuthError::Dkim(k))
            if !matches!(k, DkimError::FailedBodyHashMatch | DkimError::SignatureExpired) =>
        {
            (DkimVerdict::PermError, e.to_string())
        }
        DkimResult::Fail(e) | DkimResult::Neutral(e) => (DkimVerdict::Fail, e.to_string()),
        DkimResult::TempError(e) => (DkimVerdict::TempError, e.to_string()),
        DkimResult::PermError(e) => (DkimVerdict::PermError, e.to_string()),
        DkimResult::None => (DkimVerdict::PermError, "no result".into()),
    }
}

/// Why an ARC chain is malformed, if it is: the structural rules of RFC 8617 §4.1 and RFC 6376 §3.2 tag
/// lists that a lenient validator lets through.
fn arc_structure_error(headers: &[(&[u8], &[u8])]) -> Option<String> {
    fn named<'h>(headers: &'h [(&'h [u8], &'h [u8])], n: &'static str) -> impl Iterator<Item = &'h [u8]> + 'h {
        headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(n.as_bytes())).map(|(_, v)| *v)
    }
    let named = |n: &'static str| named(headers, n);
    let (seals, sigs, results) = (
        named("ARC-Seal").count(),
        named("ARC-Message-Signature").count(),
        named("ARC-Authentication-Results").count(),
    );
    if seals + sigs + results == 0 {
        return None;
    }
    if seals != sigs || sigs != results {
        return Some(format!("incomplete ARC sets ({seals} seals, {sigs} signatures, {results} results)"));
    }
    for (name, is_seal) in [("ARC-Seal", true), ("ARC-Message-Signature", false)] {
        for value in named(name) {
            let value = String::from_utf8_lossy(value);
            let mut keys = Vec::new();
            for element in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                let Some((k, v)) = element.split_once('=') else { return Some(format!("{name}: tag without value")) };
                let k = k.trim();
                let valid_key = k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid_key || keys.contains(&k.to_string()) {
                    return Some(format!("{name}: bad or repeated tag {k:?}"));
                }
                keys.push(k.to_string());
                let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                if k == "a" && v != "rsa-sha256" && v != "ed25519-sha256" {
                    return Some(format!("{name}: algorithm {v} is not acceptable"));
                }
                if k == "h" && !is_seal && v.split(':').any(|h| h.eq_ignore_ascii_case("arc-seal")) {
                    return Some(format!("{name}: signs ARC-Seal"));
                }
            }
        }
    }
    None
}

/// The ARC-Authentication-Results of instance 1: what the first forwarder saw.
fn first_arc_results(m: &AuthenticatedMessage<'_>) -> Option<String> {
    m.aar_headers.iter().find(|h| h.header.i == 1).map(|h| String::from_utf8_lossy(h.value).trim().to_string())
}

/// The fully-qualified form mail-auth expects for a name.
fn fqdn(name: &str) -> String {
    name.to_fqdn().into_owned()
}

#[cfg(test)]
mod tests {
    use super::dmarc_walk_names;

    fn names(from: &[&str]) -> Vec<String> {
        dmarc_walk_names(&from.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_walk_goes_from_the_from_domain_to_the_top_level_domain() {
        assert_eq!(names(&["a@Mail.Example.COM."]), ["_dmarc.mail.example.com.", "_dmarc.example.com.", "_dmarc.com."]);
        assert_eq!(names(&["a@example.com", "b@EXAMPLE.com"]), ["_dmarc.example.com.", "_dmarc.com."]);
    }

    #[test]
    fn a_long_name_jumps_to_seven_labels_and_asks_at_most_eight_names() {
        let n = names(&["a@1.2.3.4.5.6.7.8.9.10.example.com"]);
        assert_eq!(n.len(), 8);
        assert_eq!(n[0], "_dmarc.1.2.3.4.5.6.7.8.9.10.example.com.");
        assert_eq!(n[1], "_dmarc.6.7.8.9.10.example.com.");
        assert_eq!(n[7], "_dmarc.com.");
    }

    #[test]
    fn no_walk_without_one_ascii_domain_of_two_labels() {
        assert!(names(&[]).is_empty());
        assert!(names(&["a@localhost"]).is_empty());
        assert!(names(&["a@example.com", "b@example.org"]).is_empty());
        assert!(names(&["a@bücher.example"]).is_empty());
        assert!(names(&["no-at-sign"]).is_empty());
    }
}
