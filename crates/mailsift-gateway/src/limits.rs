//! Rate limits (`[smtp.rate_limits]`): token buckets by client, sender, recipient and user, in memory or shared through Redis.
//!
//! Each `[[smtp.rate_limits.rule]]` is a token bucket per value of its key (a client address, a sender
//! domain...): `rate = "100/hour"` refills it, `burst` (the count of `rate` by default) is how much it holds.
//! A rule's bucket is taken from once per message at MAIL FROM (client, network, sender, sender domain,
//! user, outbound user, outbound address) or once per recipient at RCPT TO (recipient); when it is empty
//! the command is answered `451 4.7.1` (MAIL) or `450 4.7.1` (RCPT) with the reason and when to try again.
//! Never after DATA: a message answered 250 has passed every limit. The connection is kept, so a client
//! may still send what is under its limits (mail for other recipients, from other senders).
//!
//! No rule is built in: what is normal differs too much between an MX behind one relay (all mail from one
//! address) and a submission server, and a default that hurts normal mail is worse than none. The README
//! proposes a starting set.
//!
//! Where buckets live is the store's business ([`mailsift_store::limits`]): memory with a snapshot in the
//! data directory (one node; a restart keeps throttled senders throttled), or Redis when `[redis]` is set
//! (every node takes from the same buckets). When the store cannot answer (Redis down), mail flows
//! unlimited: a limit is a defence against abuse, not a reason to stop all mail. That is counted
//! ([`Limiter::unanswered`]) and said on standard error at most every ten seconds.
//!
//! The limiter lives on the [`crate::Gateway`], so its buckets survive configuration reloads. The rules come
//! from the configuration in force, so a reload changes them; a rule whose rate or burst changed starts
//! with new buckets (its rate is part of the key).

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use mailsift_engine::Direction;
use mailsift_store::limits::{Grey, GreyTimes, LimitStore, MemoryLimits, Rate, Take};
use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// `[smtp.rate_limits]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// The limits, each a token bucket per value of its key. None by default.
    pub rule: Vec<RuleConfig>,
    /// The rules as checked, worked out once per configuration.
    #[serde(skip)]
    compiled: OnceLock<Arc<[Rule]>>,
}

/// One `[[smtp.rate_limits.rule]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// What is counted: `client_ip`, `client_net` (its /24 or /64), `sender`, `sender_domain`, `recipient`,
    /// `user` (the authenticated user), `outbound_user`, `outbound_ip` (the client address of outbound mail).
    pub key: KeyKind,
    /// Which mail it counts: `inbound`, `outbound` or `any` (the default). Outbound is mail from
    /// authenticated users and trusted networks.
    #[serde(default)]
    pub direction: DirectionFilter,
    /// `<count>/<second|minute|hour|day>`: how fast the bucket refills (e.g. `"100/hour"`).
    pub rate: String,
    /// How much the bucket holds, i.e. how many may come at once after a quiet time. Default: the count
    /// of `rate`.
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    ClientIp,
    ClientNet,
    Sender,
    SenderDomain,
    Recipient,
    User,
    OutboundUser,
    OutboundIp,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::ClientIp => "client_ip",
            KeyKind::ClientNet => "client_net",
            KeyKind::Sender => "sender",
            KeyKind::SenderDomain => "sender_domain",
            KeyKind::Recipient => "recipient",
            KeyKind::User => "user",
            KeyKind::OutboundUser => "outbound_user",
            KeyKind::OutboundIp => "outbound_ip",
        }
    }

    /// What the client is told is over its limit.
    fn described(self) -> &'static str {
        match self {
            KeyKind::ClientIp | KeyKind::OutboundIp => "this client address",
            KeyKind::ClientNet => "this client network",
            KeyKind::Sender => "this sender",
            KeyKind::SenderDomain => "this sender domain",
            KeyKind::Recipient => "this recipient",
            KeyKind::User | KeyKind::OutboundUser => "this user",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionFilter {
    #[default]
    Any,
    Inbound,
    Outbound,
}

/// A rule as checked.
#[derive(Debug, Clone)]
struct Rule {
    kind: KeyKind,
    direction: DirectionFilter,
    rate: Rate,
    /// The start of its buckets' keys: kind, rate and burst (so a changed rule starts afresh).
    prefix: String,
}

/// Parses `<count>/<unit>` into (count, seconds per unit). Units: `second`, `minute`, `hour`, `day`, their
/// plurals and `s`, `min`, `h`, `d`.
pub fn parse_rate(text: &str) -> Result<(u32, u64), String> {
    let (count, unit) =
        text.split_once('/').ok_or_else(|| format!("{text:?} is not <count>/<unit>, e.g. \"100/hour\""))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|c| (1..=10_000_000).contains(c))
        .ok_or_else(|| format!("{text:?}: the count must be a whole number from 1 to 10000000"))?;
    let secs = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" | "seconds" => 1,
        "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be second, minute, hour or day")),
    };
    Ok((count, secs))
}

impl RuleConfig {
    fn compile(&self) -> Result<Rule, String> {
        let (count, secs) = parse_rate(&self.rate)?;
        let burst = self.burst.unwrap_or(count);
        if !(1..=10_000_000).contains(&burst) {
            return Err(format!("burst {burst} is not between 1 and 10000000"));
        }
        let outbound_only = matches!(self.key, KeyKind::OutboundUser | KeyKind::OutboundIp);
        if outbound_only && self.direction == DirectionFilter::Inbound {
            return Err(format!(
                "key {} counts outbound mail only; direction inbound never matches",
                self.key.as_str()
            ));
        }
        Ok(Rule {
            kind: self.key,
            direction: self.direction,
            rate: Rate { per_sec: count as f64 / secs as f64, burst: burst as f64 },
            prefix: format!("{}:{count}/{secs}:{burst}:{:?}|", self.key.as_str(), self.direction).to_ascii_lowercase(),
        })
    }
}

impl RateLimitsConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, r) in self.rule.iter().enumerate() {
            r.compile().map_err(|reason| ConfigError::Invalid { field: format!("rate_limits.rule[{i}]"), reason })?;
        }
        Ok(())
    }

    fn rules(&self) -> &[Rule] {
        // Invalid rules were refused by `validate`; one that slipped through is left out, not guessed at.
        self.compiled.get_or_init(|| self.rule.iter().filter_map(|r| r.compile().ok()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.rule.is_empty()
    }
}

/// Longest part of a key taken from what the client said (an address is at most 254 octets).
pub const MAX_KEY_PART: usize = 254;

/// Appends `part` to `key` as a key may hold it: lower case, at most [`MAX_KEY_PART`] bytes (cut at a
/// character boundary), whitespace, control characters and `|` replaced by `_` (keys are written one per
/// line in the snapshot and parts are separated by `|`).
pub fn push_key_part(key: &mut String, part: &str) {
    let mut used = 0;
    for c in part.chars() {
        let c = if c.is_whitespace() || c.is_control() || c == '|' { '_' } else { c };
        let n = c.len_utf8();
        if used + n > MAX_KEY_PART {
            break;
        }
        used += n;
        key.extend(c.to_lowercase());
    }
}

/// The client address as keys hold it (an IPv4-mapped IPv6 address as IPv4).
pub fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The network of `ip` with the given prefix lengths, as `address/length`.
pub fn network_of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    match plain_ip(ip) {
        IpAddr::V4(v4) => {
            let p = v4_prefix.min(32) as u32;
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            format!("{}/{p}", std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let p = v6_prefix.min(128) as u32;
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            format!("{}/{p}", std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// What a command is, for the rules: who sends, from where, to whom.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub ip: IpAddr,
    pub sender: &'a str,
    pub user: Option<&'a str>,
    pub direction: Direction,
    /// `Some` at RCPT TO.
    pub recipient: Option<&'a str>,
}

/// A refusal by a rate limit: reply code, enhanced code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
}

/// The rate limiter and greylisting memory of a gateway: the store and the clock.
pub struct Limiter {
    store: RwLock<Arc<dyn LimitStore>>,
    /// Added to the wall clock: tests move time forward without waiting.
    offset_ms: AtomicI64,
    unanswered: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// How often a failing store is reported on standard error.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Limiter {
    /// In memory, with the snapshot in `data_dir` read now and written every few seconds.
    pub fn in_memory(data_dir: &Path) -> Limiter {
        Limiter::with_store(MemoryLimits::open(data_dir, mailsift_store::limits::DEFAULT_MAX_ENTRIES))
    }

    pub fn with_store(store: Arc<dyn LimitStore>) -> Limiter {
        Limiter {
            store: RwLock::new(store),
            offset_ms: AtomicI64::new(0),
            unanswered: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        }
    }

    /// Uses another store from now on (Redis, when `[redis]` is set). The memory one's snapshot is
    /// written first, so nothing taken so far is lost should the node go back to memory.
    pub fn use_store(&self, store: Arc<dyn LimitStore>) {
        let old = std::mem::replace(&mut *self.store.write().unwrap_or_else(|p| p.into_inner()), store);
        let _ = old.save();
    }

    fn store(&self) -> Arc<dyn LimitStore> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where the buckets are, for messages.
    pub fn describe(&self) -> String {
        self.store().describe()
    }

    /// Makes what was taken survive a restart (memory: writes the snapshot). Called at shutdown.
    pub fn save(&self) {
        if let Err(e) = self.store().save() {
            tracing::error!(error = %e, "rate-limit snapshot not written");
        }
    }

    /// Unix milliseconds as the limiter counts them.
    pub fn now_ms(&self) -> i64 {
        mailsift_store::limits::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves the limiter's clock forward (tests: a greylisting delay passes without waiting for it).
    pub fn advance_clock(&self, by: Duration) {
        self.offset_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// Checks the store could not answer (Redis down): the mail went through unlimited.
    pub fn unanswered(&self) -> u64 {
        self.unanswered.load(Ordering::Relaxed)
    }

    fn failed(&self, what: &str, e: &mailsift_store::StoreError) {
        self.unanswered.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(error = %e, "{what}: the limit store did not answer; mail passes unlimited meanwhile");
            eprintln!("mailsift: {what}: {e}; mail passes unlimited meanwhile");
        }
    }

    /// Takes one token from the bucket `bucket` + `value` at `rate`, for features that count on their own
    /// (the compromised-account guard may count an outbound user's messages so). `None`: the store did not
    /// answer. May wait on Redis (bounded by `[redis] timeout_ms`): call it off the async threads when
    /// the store is remote.
    pub fn take(&self, bucket: &str, value: &str, rate: Rate) -> Option<Take> {
        let mut key = String::with_capacity(bucket.len() + value.len() + 1);
        key.push_str(bucket);
        key.push('|');
        push_key_part(&mut key, value);
        let store = self.store();
        store.take(&key, rate, 1.0, self.now_ms()).map_err(|e| self.failed("rate limit", &e)).ok()
    }

    /// The tokens left in the bucket `bucket` + `value` at `rate`, taking none. `None`: no answer.
    pub fn peek(&self, bucket: &str, value: &str, rate: Rate) -> Option<f64> {
        let mut key = String::with_capacity(bucket.len() + value.len() + 1);
        key.push_str(bucket);
        key.push('|');
        push_key_part(&mut key, value);
        self.store().peek(&key, rate, self.now_ms()).map_err(|e| self.failed("rate limit", &e)).ok()
    }

    /// Checks every rule that applies to `attempt` at its stage (MAIL when it has no recipient, RCPT
    /// otherwise) and takes a token from each, stopping at the first empty bucket. `None`: go on.
    pub async fn check(&self, config: &RateLimitsConfig, attempt: Attempt<'_>) -> Option<Refusal> {
        let rules = config.rules();
        if rules.is_empty() {
            return None;
        }
        let mut keys: Vec<(String, Rate)> = Vec::new();
        let mut kinds: Vec<KeyKind> = Vec::new();
        for rule in rules {
            if let Some(key) = key_for(rule, &attempt) {
                keys.push((key, rule.rate));
                kinds.push(rule.kind);
            }
        }
        if keys.is_empty() {
            return None;
        }
        let store = self.store();
        let now = self.now_ms();
        let at_rcpt = attempt.recipient.is_some();
        let answer = if store.is_remote() {
            // Redis calls block (bounded by the timeout): not on the async threads. One round trip for all.
            match tokio::task::spawn_blocking(move || store.take_each(&keys, now)).await {
                Ok(a) => a,
                Err(_) => return None,
            }
        } else {
            store.take_each(&keys, now)
        };
        match answer {
            Ok(None) => None,
            Ok(Some((i, retry))) => Some(Refusal {
                code: if at_rcpt { 450 } else { 451 },
                enhanced: "4.7.1",
                text: format!(
                    "Rate limit reached for {}; try again in {} (mail is accepted again at the configured rate)",
                    kinds[i].described(),
                    human_secs(retry)
                ),
            }),
            Err(e) => {
                self.failed("rate limit", &e);
                None
            }
        }
    }

    /// Records an attempt of a greylisting triplet. `None`: the store did not answer (the caller lets the
    /// mail through: greylisting fails open).
    pub async fn greylist(&self, key: String, times: GreyTimes) -> Option<Grey> {
        let store = self.store();
        let now = self.now_ms();
        let answer = if store.is_remote() {
            match tokio::task::spawn_blocking(move || store.greylist(&key, times, now)).await {
                Ok(a) => a,
                Err(_) => return None,
            }
        } else {
            store.greylist(&key, times, now)
        };
        answer.map_err(|e| self.failed("greylisting", &e)).ok()
    }

    /// Whether calls may wait on the network.
    pub fn is_remote(&self) -> bool {
        self.store().is_remote()
    }
}

/// "40 seconds", "5 minutes", "2 hours".
pub fn human_secs(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} seconds"),
        120..=7199 => format!("{} minutes", secs.div_ceil(60)),
        _ => format!("{} hours", secs.div_ceil(3600)),
    }
}

/// The bucket key of `rule` for `attempt`, or `None` when the rule does not apply (another stage, another
/// direction, no such value: no user, the null sender).
fn key_for(rule: &Rule, a: &Attempt<'_>) -> Option<String> {
    let outbound = a.direction == Direction::Outbound;
    match rule.direction {
        DirectionFilter::Inbound if outbound => return None,
        DirectionFilter::Outbound if !outbound => return None,
        _ => {}
    }
    let at_rcpt = a.recipient.is_some();
    if at_rcpt != (rule.kind == KeyKind::Recipient) {
        return None;
    }
    let mut key = String::with_capacity(rule.prefix.len() + 64);
    key.push_str(&rule.prefix);
    match rule.kind {
        KeyKind::ClientIp => key.push_str(&plain_ip(a.ip).to_string()),
        KeyKind::OutboundIp if outbound => key.push_str(&plain_ip(a.ip).to_string()),
        KeyKind::ClientNet => key.push_str(&network_of(a.ip, 24, 64)),
        KeyKind::Sender if !a.sender.is_empty() => push_key_part(&mut key, a.sender),
        KeyKind::SenderDomain if !a.sender.is_empty() => push_key_part(&mut key, &crate::text::domain_of(a.sender)),
        KeyKind::Recipient => push_key_part(&mut key, a.recipient?),
        KeyKind::User => push_key_part(&mut key, a.user?),
        KeyKind::OutboundUser if outbound => push_key_part(&mut key, a.user?),
        _ => return None,
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(toml_text: &str) -> RateLimitsConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn rates_are_read_with_their_units_and_bad_ones_are_named() {
        assert_eq!(parse_rate("100/hour"), Ok((100, 3600)));
        assert_eq!(parse_rate(" 5 / s "), Ok((5, 1)));
        assert_eq!(parse_rate("2/Days"), Ok((2, 86_400)));
        for bad in ["100", "0/hour", "-1/hour", "1/fortnight", "1.5/hour", "/", "99999999999/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        let c = config("[[rule]]\nkey = \"outbound_user\"\ndirection = \"inbound\"\nrate = \"1/hour\"\n");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("rate_limits.rule[0]") && e.contains("outbound"), "{e}");
        let c = config("[[rule]]\nkey = \"sender\"\nrate = \"1/hour\"\nburst = 0\n");
        assert!(c.validate().unwrap_err().to_string().contains("burst"));
        assert!(toml::from_str::<RateLimitsConfig>("[[rule]]\nkey = \"nope\"\nrate = \"1/hour\"\n").is_err());
    }

    #[test]
    fn keys_follow_stage_direction_and_what_is_known() {
        let c = config(
            "[[rule]]\nkey = \"client_net\"\nrate = \"10/minute\"\n[[rule]]\nkey = \"sender_domain\"\n\
             direction = \"inbound\"\nrate = \"10/minute\"\n[[rule]]\nkey = \"recipient\"\nrate = \"10/minute\"\n\
             [[rule]]\nkey = \"outbound_user\"\nrate = \"10/minute\"\n",
        );
        let rules = c.rules();
        let a = Attempt {
            ip: "::ffff:192.0.2.77".parse().unwrap(),
            sender: "Alice@Sender.Example",
            user: None,
            direction: Direction::Inbound,
            recipient: None,
        };
        assert_eq!(key_for(&rules[0], &a).unwrap(), "client_net:10/60:10:any|192.0.2.0/24");
        assert_eq!(key_for(&rules[1], &a).unwrap(), "sender_domain:10/60:10:inbound|sender.example");
        assert_eq!(key_for(&rules[2], &a), None, "recipients count at RCPT");
        assert_eq!(key_for(&rules[3], &a), None, "inbound mail has no outbound user");
        let rcpt = Attempt { recipient: Some("Bob@Example.COM"), ..a };
        assert_eq!(key_for(&rules[2], &rcpt).unwrap(), "recipient:10/60:10:any|bob@example.com");
        assert_eq!(key_for(&rules[0], &rcpt), None, "senders count at MAIL");
        let out = Attempt { user: Some("app"), direction: Direction::Outbound, ..a };
        assert_eq!(key_for(&rules[1], &out), None);
        assert_eq!(key_for(&rules[3], &out).unwrap(), "outbound_user:10/60:10:any|app");
        let bounce = Attempt { sender: "", ..a };
        assert_eq!(key_for(&rules[1], &bounce), None, "the null sender has no domain to count");
        assert_eq!(network_of("2001:db8:1:2:3:4:5:6".parse().unwrap(), 24, 64), "2001:db8:1:2::/64");
    }

    #[tokio::test]
    async fn a_sender_over_its_rate_is_told_when_to_come_back_and_others_are_not_affected() {
        let limiter = Limiter::with_store(Arc::new(MemoryLimits::new(1000)));
        let c = config("[[rule]]\nkey = \"sender\"\nrate = \"2/hour\"\n");
        let a = Attempt {
            ip: "192.0.2.1".parse().unwrap(),
            sender: "a@x.example",
            user: None,
            direction: Direction::Inbound,
            recipient: None,
        };
        assert_eq!(limiter.check(&c, a).await, None);
        assert_eq!(limiter.check(&c, a).await, None);
        let r = limiter.check(&c, a).await.unwrap();
        assert_eq!((r.code, r.enhanced), (451, "4.7.1"));
        assert!(r.text.contains("this sender; try again in 30 minutes"), "{}", r.text);
        assert_eq!(limiter.check(&c, Attempt { sender: "b@x.example", ..a }).await, None);
        limiter.advance_clock(Duration::from_secs(1800));
        assert_eq!(limiter.check(&c, a).await, None);
    }

    proptest! {
        #[test]
        fn key_parts_are_bounded_and_hold_no_separator(part in ".{0,400}") {
            let mut key = String::from("p|");
            push_key_part(&mut key, &part);
            let added = &key[2..];
            prop_assert!(added.len() <= MAX_KEY_PART * 3);
            prop_assert!(!added.contains(|c: char| c.is_whitespace() || c.is_control() || c == '|'));
        }

        #[test]
        fn any_rate_text_is_parsed_or_refused_without_panicking(text in ".{0,40}") {
            if let Ok((count, secs)) = parse_rate(&text) {
                prop_assert!(count >= 1 && [1, 60, 3600, 86_400].contains(&secs));
            }
        }
    }
}
