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
//! Passwords are hashed with Argon2id (PHC strings in the store). Logins are rate-limited per client
//! address and per account name. Sessions do not survive a restart: users log in again.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use mailsift_store::{Account, Role};
use rustc_hash::FxHashMap;
use serde::Serialize;

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

    /// May this caller manage mail for this domain?
    pub fn manages_domain(&self, domain: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::DomainAdmin => self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)),
            Role::User => false,
        }
    }

    /// May this caller act on mail addressed to this recipient?
    pub fn may_act_for(&self, recipient: &str) -> bool {
        match self.role {
            Role::User => recipient.eq_ignore_ascii_case(&self.name),
            _ => self.manages_domain(domain_of(recipient)),
        }
    }
}

/// The domain part of an address (the text after the last `@`; the whole text when there is none).
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or(address).trim_end_matches('>')
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

/// Failed logins per key (client address, account name) in a sliding window.
pub struct LoginLimiter {
    attempts: u32,
    window: Duration,
    failures: Mutex<FxHashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(attempts: u32, window: Duration) -> LoginLimiter {
        LoginLimiter { attempts, window, failures: Mutex::new(FxHashMap::default()) }
    }

    fn keys(ip: IpAddr, name: &str) -> [String; 2] {
        [format!("ip:{ip}"), format!("name:{}", name.to_ascii_lowercase())]
    }

    /// Seconds until another attempt is allowed, when either key used up its attempts.
    pub fn blocked_for(&self, ip: IpAddr, name: &str) -> Option<u64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        Self::keys(ip, name)
            .iter()
            .filter_map(|k| map.get(k))
            .filter(|(start, n)| *n >= self.attempts && now.duration_since(*start) < self.window)
            .map(|(start, _)| (self.window - now.duration_since(*start)).as_secs().max(1))
            .max()
    }

    pub fn failed(&self, ip: IpAddr, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        for k in Self::keys(ip, name) {
            let e = map.entry(k).or_insert((now, 0));
            if now.duration_since(e.0) >= self.window {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }

    /// A successful login clears the name's count (not the address's: one right password among many
    /// guesses for other accounts does not reset the address).
    pub fn succeeded(&self, name: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&format!("name:{}", name.to_ascii_lowercase()));
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

/// Constant-time comparison of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn the_limiter_blocks_after_the_attempts_and_per_name() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.blocked_for(ip, "admin").is_none());
            l.failed(ip, "admin");
        }
        assert!(l.blocked_for(ip, "admin").is_some());
        // Another address trying the same name is blocked too; the name is what is being guessed.
        assert!(l.blocked_for("127.0.0.2".parse().unwrap(), "admin").is_some());
        assert!(l.blocked_for("127.0.0.2".parse().unwrap(), "other").is_none());
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
}
