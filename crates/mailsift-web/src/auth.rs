//! Who is calling, and what they may see.
//!
//! Three roles (`mailsift_store::Role`): administrators see and change everything; domain administrators
//! see the mail, quarantine and settings of their domains only; end users reach only their own quarantine
//! and their own allowed/blocked senders, through a digest link or a login.
//!
//! A caller is recognised by one of:
//! - a console session: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` under TLS), kept
//!   in the gateway database (under a hash of the id) with its expiry and its CSRF token, so that every
//!   node sharing the database knows it ([`Sessions`]). Every state-changing request made with a session must
//!   carry that CSRF token (the `X-CSRF-Token` header for the API, a hidden `_csrf` field for console
//!   forms), so another site cannot make a logged-in browser act;
//! - an API token (`Authorization: Bearer ...`, a signed token of purpose `api` for an account), for
//!   scripts; it needs no CSRF token since browsers never send it by themselves.
//!
//! Passwords are hashed with Argon2id (PHC strings in the store). Failed logins get the guessing client
//! address refused (429) for a while; a name guessed from many addresses only makes its logins wait a
//! little ([`LoginLimiter`]), so nobody can lock the real user out; the failures are counted in the
//! gateway database, so several nodes on one PostgreSQL database limit them as one. Sessions survive a
//! restart.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use mailsift_engine::address::Domain;
use mailsift_store::gateway::{ThrottleTake, WebSession};
use mailsift_store::{Account, Database, Role, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tokens::random_id;

/// The caller's identity and reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Unix seconds after which the session is refused.
    pub expires: i64,
}

/// Sessions by id, in the gateway database (see `mailsift_store::gateway::WebSession`), so that every node
/// on one PostgreSQL database knows every session and a logout on one ends it on all, at once: nothing is
/// cached here. The database holds a SHA-256 of the id, never the id: reading the table does not let
/// anyone log in.
pub struct Sessions {
    db: Database,
}

/// The key a session id is stored under: its SHA-256, in hex.
fn id_hash(id: &str) -> String {
    Sha256::digest(id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(db: Database) -> Sessions {
        Sessions { db }
    }

    /// Starts a session; returns its id (the cookie's value).
    pub fn create(&self, principal: Principal, ttl: Duration) -> Result<(String, Session), StoreError> {
        let id = random_id();
        let now = mailsift_engine::unix_now();
        let session = Session { principal, csrf: random_id(), expires: now + ttl.as_secs() as i64 };
        let stored = WebSession {
            account: session.principal.name.clone(),
            principal: serde_json::to_string(&session.principal).expect("a principal serializes"),
            csrf: session.csrf.clone(),
            expires: session.expires,
        };
        self.db.web_session_create(&id_hash(&id), &stored, now)?;
        Ok((id, session))
    }

    /// The live session with this id. A stored principal this build cannot read counts as no session (the
    /// user logs in again).
    pub fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let Some(stored) = self.db.web_session_get(&id_hash(id), mailsift_engine::unix_now())? else {
            return Ok(None);
        };
        Ok(serde_json::from_str(&stored.principal).ok().map(|principal| Session {
            principal,
            csrf: stored.csrf,
            expires: stored.expires,
        }))
    }

    /// Ends one session (a logout).
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.db.web_session_remove(&id_hash(id)).map(|_| ())
    }

    /// Ends every session of an account (after a password change or removal).
    pub fn remove_account(&self, name: &str) -> Result<(), StoreError> {
        self.db.web_sessions_remove_account(name).map(|_| ())
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
/// (only slowed beyond it), counted in the gateway database so that attempts spread over several nodes
/// count as one (see `mailsift_store::gateway::ThrottleTake`). Windows are whole seconds.
///
/// Refusing per account name would let anyone lock the real administrator out from everywhere, for
/// ever, with a few wrong passwords every window; so a name that is being guessed only makes each
/// login for it wait a little, while the addresses doing the guessing are refused. The table holds the
/// keys of one window at most: lapsed ones are deleted as attempts come.
pub struct LoginLimiter {
    db: Database,
    attempts: u32,
    window: Duration,
    account_delay: Duration,
}

impl LoginLimiter {
    pub fn new(db: Database, attempts: u32, window: Duration, account_delay: Duration) -> LoginLimiter {
        LoginLimiter { db, attempts, window, account_delay }
    }

    fn address_key(ip: IpAddr) -> String {
        format!("address {}", client_key(ip))
    }

    fn name_key(name: &str) -> String {
        format!("name {}", name.trim().to_ascii_lowercase())
    }

    fn window_secs(&self) -> i64 {
        self.window.as_secs() as i64
    }

    /// Called before the password is checked. An allowed attempt is counted against the address at once
    /// (and given back by [`LoginLimiter::succeeded`]), so many attempts sent at the same moment, to one
    /// node or several, cannot all pass the check before any of them has failed.
    pub fn begin(&self, ip: IpAddr, name: &str) -> Result<LoginGate, StoreError> {
        let (now, window) = (mailsift_engine::unix_now(), self.window_secs());
        if let ThrottleTake::Full { since } =
            self.db.web_throttle_take(&Self::address_key(ip), self.attempts, window, now)?
        {
            return Ok(LoginGate::Refused((since + window - now).max(1) as u64));
        }
        let guessed = self.db.web_throttle_count(&Self::name_key(name), window, now)? >= self.attempts;
        Ok(LoginGate::Proceed(if guessed { self.account_delay } else { Duration::ZERO }))
    }

    /// A wrong password or unknown name after [`LoginLimiter::begin`]: the address was counted already,
    /// the name is counted now.
    pub fn failed(&self, name: &str) -> Result<(), StoreError> {
        let (now, window) = (mailsift_engine::unix_now(), self.window_secs());
        self.db.web_throttle_take(&Self::name_key(name), u32::MAX, window, now).map(|_| ())
    }

    /// A right password: the address gets back the attempt `begin` counted, and the name's count is
    /// cleared. Earlier failures of the address stay (one right password among many guesses for other
    /// accounts does not reset it).
    pub fn succeeded(&self, ip: IpAddr, name: &str) -> Result<(), StoreError> {
        self.db.web_throttle_give_back(&Self::address_key(ip))?;
        self.db.web_throttle_clear(&Self::name_key(name))
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

    /// A limiter on a fresh SQLite gateway database (the directory must outlive it).
    fn limiter(attempts: u32, account_delay: Duration) -> (tempfile::TempDir, LoginLimiter) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        (dir, LoginLimiter::new(db, attempts, Duration::from_secs(60), account_delay))
    }

    #[test]
    fn the_limiter_refuses_the_guessing_address_and_only_slows_the_name() {
        let (_dir, l) = limiter(3, Duration::from_millis(500));
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.begin(ip, "admin").unwrap(), LoginGate::Proceed(Duration::ZERO));
            l.failed("admin").unwrap();
        }
        assert!(matches!(l.begin(ip, "admin").unwrap(), LoginGate::Refused(s) if (1..=60).contains(&s)));
        assert!(
            matches!(l.begin(ip, "someone-else").unwrap(), LoginGate::Refused(_)),
            "the address is refused for any name"
        );
        // Another address trying the same name is slowed, not refused: the owner still gets in.
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(l.begin(other, "ADMIN ").unwrap(), LoginGate::Proceed(Duration::from_millis(500)));
        l.succeeded(other, "admin").unwrap();
        assert_eq!(l.begin(other, "admin").unwrap(), LoginGate::Proceed(Duration::ZERO));
        l.succeeded(other, "admin").unwrap();
        // Successes give their attempt back: an address that logs in often is never refused for it.
        for _ in 0..10 {
            assert_eq!(l.begin(other, "admin").unwrap(), LoginGate::Proceed(Duration::ZERO));
            l.succeeded(other, "admin").unwrap();
        }
    }

    #[test]
    fn attempts_sent_at_once_are_counted_before_any_fails() {
        let (_dir, l) = limiter(3, Duration::ZERO);
        let l = std::sync::Arc::new(l);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || matches!(l.begin(ip, "admin").unwrap(), LoginGate::Proceed(_)))
            })
            .collect();
        let allowed = threads.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
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
        let (_dir, l) = limiter(2, Duration::ZERO);
        l.begin(a, "x").unwrap();
        l.begin(b, "x").unwrap();
        assert!(matches!(l.begin(b, "x").unwrap(), LoginGate::Refused(_)));
        assert!(matches!(l.begin(c, "x").unwrap(), LoginGate::Proceed(_)));
    }

    #[test]
    fn sessions_are_stored_under_a_hash_and_end_by_account() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let sessions = Sessions::new(db.clone());
        let p = Principal { account_id: Some(1), name: "root".into(), role: Role::Admin, domains: vec![] };
        let (id, s) = sessions.create(p.clone(), Duration::from_secs(600)).unwrap();
        let got = sessions.get(&id).unwrap().unwrap();
        assert_eq!((got.principal, got.csrf), (p, s.csrf));
        // The id is not what is stored: looking it up as a hash finds nothing.
        assert!(db.web_session_get(&id, 0).unwrap().is_none());
        assert!(db.web_session_get(&id_hash(&id), 0).unwrap().is_some());
        sessions.remove_account("ROOT").unwrap();
        assert!(sessions.get(&id).unwrap().is_none());
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
