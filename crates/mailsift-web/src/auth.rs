//! Who is calling, and what they may see.
//!
//! Three roles (`mailsift_store::Role`): administrators see and change everything; domain administrators
//! see the mail, quarantine and settings of their domains only; end users reach only their own quarantine
//! and their own allowed/blocked senders, through a digest link or a login.
//!
//! A caller is recognised by one of:
//! - a console session: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` under TLS), kept
//!   in memory with its expiry and its CSRF token. Every state-changing request made with a session must
//!   carry that CSRF token (the `X-CSRF-Token` header for the API, a hidden `_csrf` field for console
//!   forms), so another site cannot make a logged-in browser act;
//! - an API token (`Authorization: Bearer ...`, a signed token of purpose `api` for an account), for
//!   scripts; it needs no CSRF token since browsers never send it by themselves.
//!
//! Passwords are hashed with Argon2id (PHC strings in the store). Failed logins get the guessing client
//! address refused (429) for a while; a name guessed from many addresses only makes its logins wait a
//! little ([`LoginLimiter`]), so nobody can lock the real user out. Sessions do not survive a restart:
//! users log in again.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use mailsift_engine::address::Domain;
use mailsift_store::{Account, Role};
use rustc_hash::FxHashMap;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::tokens::random_id;

/// The caller's identity and reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The account's id; `None` for an end user who came through a digest link without an account.
    pub account_id: Option<i64>,
    /// The account name; for an end user, their address.
    pub name: String,
    pub role: Role,
    /// For a domain administrator, their domains (lowercase).
    pub domains: Vec<String>,
}

impl Principal {
    pub fn from_account(a: &Account) -> Principal {
        Principal {
            account_id: Some(a.id),
            name: a.name.to_ascii_lowercase(),
            role: a.role,
            domains: a.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// May manage mail and settings of whole domains (administrators and domain administrators).
    pub fn is_manager(&self) -> bool {
        matches!(self.role, Role::Admin | Role::DomainAdmin)
    }

    /// The domain filter for log and quarantine queries: empty means every domain (administrators only).
    pub fn scope(&self) -> Vec<String> {
        match self.role {
            Role::Admin => Vec::new(),
            _ => self.domains.clone(),
        }
    }

    /// May this caller manage mail for this domain? A domain administrator manages exactly the domains of
    /// the account (compared as [`Domain`]s: any case, with or without the trailing dot, IDNA-mapped), not
    /// their subdomains; a text that is not a domain (the empty domain of an address without one) is
    /// nobody's.
    pub fn manages_domain(&self, domain: impl AsRef<str>) -> bool {
        match self.role {
            Role::Admin => true,
            Role::DomainAdmin => match Domain::parse(domain.as_ref()) {
                Ok(domain) => self.domains.iter().any(|d| domain.matches(d)),
                Err(_) => false,
            },
            Role::User => false,
        }
    }

    /// May this caller act on mail addressed to this recipient? A domain administrator may when the
    /// recipient parses as an address of one of the account's domains.
    pub fn may_act_for(&self, recipient: &str) -> bool {
        match self.role {
            Role::User => recipient.eq_ignore_ascii_case(&self.name),
            _ => self.manages_domain(mailsift_engine::address::domain_of(recipient)),
        }
    }
}

/// The domain a list entry's recipient names: the domain of an address (`bob@Example.com` ->
/// `example.com`, as [`mailsift_engine::address::domain_of`] reads it), or, for an entry that applies to a
/// whole domain, the domain itself (`Example.com.` -> `example.com`). Empty when it is neither, which is
/// nobody's domain. Mail's recipients are addresses, never domains: [`Principal::may_act_for`] does not
/// take a bare domain as a recipient.
pub fn domain_of(recipient_or_domain: &str) -> String {
    if recipient_or_domain.contains('@') {
        mailsift_engine::address::domain_of(recipient_or_domain)
    } else {
        Domain::parse(recipient_or_domain).map(|d| d.to_string()).unwrap_or_default()
    }
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&crate::tokens::random_bytes::<16>()).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks a password against a stored hash; an empty or unreadable hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash to check against when the account does not exist, so a login takes as long for an unknown
/// name as for a wrong password (no probing for account names by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password that matches nothing").unwrap_or_default())
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    pub expires: Instant,
}

/// Sessions by id, in memory.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<FxHashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session; returns its id (the cookie's value).
    pub fn create(&self, principal: Principal, ttl: Duration) -> (String, Session) {
        let id = random_id();
        let session = Session { principal, csrf: random_id(), expires: Instant::now() + ttl };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // Expired sessions go whenever a new one starts, so the map stays as large as the live sessions.
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Ends every session of an account (after a password change or removal).
    pub fn remove_account(&self, name: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, s| !s.principal.name.eq_ignore_ascii_case(name));
    }
}

/// The address whose connections and logins are counted together: an IPv4 address as it is (also when
/// it comes IPv4-mapped), an IPv6 address's /64, since one IPv6 client usually holds a whole /64 and
/// could otherwise count as billions of clients.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// What a login attempt may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginGate {
    /// Go ahead after waiting this long (zero: at once): the account name is being guessed from
    /// elsewhere, which slows every login for it but refuses none.
    Proceed(Duration),
    /// This address used up its attempts: refused, retry after this many seconds.
    Refused(u64),
}

/// Failed logins in fixed windows, per client address (refused beyond the limit) and per account name
/// (only slowed beyond it).
///
/// Refusing per account name would let anyone lock the real administrator out from everywhere, for
/// ever, with a few wrong passwords every window; so a name that is being guessed only makes each
/// login for it wait a little, while the addresses doing the guessing are refused.
pub struct LoginLimiter {
    attempts: u32,
    window: Duration,
    account_delay: Duration,
    failures: Mutex<FxHashMap<Key, (Instant, u32)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Name(String),
}

/// Entries kept before expired ones are swept; beyond it (after the sweep) new addresses are not
/// tracked, so memory stays bounded whatever the number of addresses a guesser uses.
const MAX_TRACKED: usize = 100_000;

impl LoginLimiter {
    pub fn new(attempts: u32, window: Duration, account_delay: Duration) -> LoginLimiter {
        LoginLimiter { attempts, window, account_delay, failures: Mutex::new(FxHashMap::default()) }
    }

    fn name_key(name: &str) -> Key {
        Key::Name(name.trim().to_ascii_lowercase())
    }

    /// Called before the password is checked. An allowed attempt is counted against the address at once
    /// (and given back by [`LoginLimiter::succeeded`]), so many attempts sent at the same moment cannot
    /// all pass the check before any of them has failed.
    pub fn begin(&self, ip: IpAddr, name: &str) -> LoginGate {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let live = |e: &(Instant, u32)| now.duration_since(e.0) < self.window;
        let address = Key::Address(client_key(ip));
        if let Some(e) = map.get(&address).filter(|e| live(e) && e.1 >= self.attempts) {
            return LoginGate::Refused((self.window - now.duration_since(e.0)).as_secs().max(1));
        }
        Self::count(&mut map, address, now, self.window);
        let guessed = map.get(&Self::name_key(name)).is_some_and(|e| live(e) && e.1 >= self.attempts);
        LoginGate::Proceed(if guessed { self.account_delay } else { Duration::ZERO })
    }

    fn count(map: &mut FxHashMap<Key, (Instant, u32)>, key: Key, now: Instant, window: Duration) {
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            map.retain(|_, e| now.duration_since(e.0) < window);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let e = map.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    /// A wrong password or unknown name after [`LoginLimiter::begin`]: the address was counted already,
    /// the name is counted now.
    pub fn failed(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::count(&mut map, Self::name_key(name), Instant::now(), self.window);
    }

    /// A right password: the address gets back the attempt `begin` counted, and the name's count is
    /// cleared. Earlier failures of the address stay (one right password among many guesses for other
    /// accounts does not reset it).
    pub fn succeeded(&self, ip: IpAddr, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(&Key::Address(client_key(ip))) {
            e.1 = e.1.saturating_sub(1);
        }
        map.remove(&Self::name_key(name));
    }
}

/// The value of one cookie from a `Cookie:` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

pub const SESSION_COOKIE: &str = "mailsift_session";

pub fn session_cookie(id: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie(secure: bool) -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}", if secure { "; Secure" } else { "" })
}

/// Constant-time comparison of two secrets (CSRF tokens, the metrics token): the time taken does not
/// depend on where they differ, only on their length, which is not secret (tokens have a fixed length).
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("", ""));
    }

    #[test]
    fn the_limiter_refuses_the_guessing_address_and_only_slows_the_name() {
        let l = LoginLimiter::new(3, Duration::from_secs(60), Duration::from_millis(500));
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.begin(ip, "admin"), LoginGate::Proceed(Duration::ZERO));
            l.failed("admin");
        }
        assert!(matches!(l.begin(ip, "admin"), LoginGate::Refused(s) if (1..=60).contains(&s)));
        assert!(matches!(l.begin(ip, "someone-else"), LoginGate::Refused(_)), "the address is refused for any name");
        // Another address trying the same name is slowed, not refused: the owner still gets in.
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(l.begin(other, "ADMIN "), LoginGate::Proceed(Duration::from_millis(500)));
        l.succeeded(other, "admin");
        assert_eq!(l.begin(other, "admin"), LoginGate::Proceed(Duration::ZERO));
        l.succeeded(other, "admin");
        // Successes give their attempt back: an address that logs in often is never refused for it.
        for _ in 0..10 {
            assert_eq!(l.begin(other, "admin"), LoginGate::Proceed(Duration::ZERO));
            l.succeeded(other, "admin");
        }
    }

    #[test]
    fn attempts_sent_at_once_are_counted_before_any_fails() {
        let l = LoginLimiter::new(3, Duration::from_secs(60), Duration::ZERO);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let allowed = (0..20).filter(|_| matches!(l.begin(ip, "admin"), LoginGate::Proceed(_))).count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn an_ipv6_client_counts_as_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.5".parse().unwrap();
        assert_eq!(client_key(mapped), "127.0.0.5".parse::<IpAddr>().unwrap());
        let l = LoginLimiter::new(2, Duration::from_secs(60), Duration::ZERO);
        l.begin(a, "x");
        l.begin(b, "x");
        assert!(matches!(l.begin(b, "x"), LoginGate::Refused(_)));
        assert!(matches!(l.begin(c, "x"), LoginGate::Proceed(_)));
    }

    #[test]
    fn scopes() {
        let p = Principal { account_id: None, name: "bob@b.test".into(), role: Role::User, domains: vec![] };
        assert!(p.may_act_for("BOB@b.test"));
        assert!(!p.may_act_for("carol@b.test"));
        let d = Principal {
            account_id: Some(1),
            name: "da".into(),
            role: Role::DomainAdmin,
            domains: vec!["b.test".into()],
        };
        assert!(d.may_act_for("carol@B.test"));
        assert!(!d.may_act_for("carol@c.test"));
        assert_eq!(cookie("a=1; mailsift_session=xyz; b=2", SESSION_COOKIE), Some("xyz"));
    }

    #[test]
    fn a_domain_administrator_reaches_exactly_the_addresses_of_the_domain() {
        let d = Principal {
            account_id: Some(1),
            name: "da".into(),
            role: Role::DomainAdmin,
            domains: vec!["example.com".into()],
        };
        for reached in ["Someone@Example.COM", "<someone@example.com.>", " someone@example.com "] {
            assert!(d.may_act_for(reached), "{reached}");
        }
        for refused in [
            "victim@EXAMPLE.com.evil.test",
            "x@evil.test",
            "example.com",
            "EXAMPLE.COM",
            "",
            "<>",
            "x@sub.example.com",
            "x@badexample.com",
            "x@example.com\r\nBcc: y@evil.test",
            "x@example.com@evil.test",
        ] {
            assert!(!d.may_act_for(refused), "{refused:?}");
        }
        assert!(d.manages_domain("Example.COM."));
        assert!(!d.manages_domain(""));
        // A list entry may name a whole domain instead of an address.
        assert!(d.manages_domain(domain_of("Example.COM")));
        assert!(d.manages_domain(domain_of("<x@example.com>")));
        for foreign in ["example.com.evil.test", "x@EXAMPLE.com.evil.test", "x@evil.test", "x@example.com\r\n", ""] {
            assert!(!d.manages_domain(domain_of(foreign)), "{foreign:?}");
        }
        let admin = Principal { account_id: Some(2), name: "root".into(), role: Role::Admin, domains: vec![] };
        assert!(admin.may_act_for("anyone@anywhere.test"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc123", "abc123"));
        assert!(!same_secret("abc123", "abc124"));
        assert!(!same_secret("abc123", "abc12"));
        assert!(!same_secret("", "x"));
        assert!(same_secret("", ""));
    }
}
