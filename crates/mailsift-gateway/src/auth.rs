//! SMTP AUTH credentials and the limits on guessing them.
//!
//! Passwords of `[[smtp.users]]` are stored as Argon2id hashes (PHC strings, what [`hash_password`] makes and
//! `mailsift auth-hash` prints): a leaked configuration file does not hand out the passwords, and checking one
//! guess costs real work. A check for an unknown user name does the same Argon2 work against a decoy hash, so
//! timing does not tell which names exist.
//!
//! [`AuthLimiter`] counts failed attempts in a sliding window per client address (IPv6 by /64, since one host
//! holds a whole /64) and per account name, across connections: closing the connection does not reset it.
//! - An address over its limit is refused: AUTH is answered `454 4.7.0` without the password being checked,
//!   so the answer says nothing about the guess (nor about the account).
//! - An account over its limit is never locked (that would let anyone lock the real user out from elsewhere):
//!   attempts on it from addresses that have not logged in as it before are only slowed down
//!   ([`ACCOUNT_DELAY`]) before the password is checked. The web console's logins work the same way.
//!
//! What it is not: a defence against a botnet that spreads guesses thinly over thousands of addresses;
//! Argon2 hashes and good passwords are.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use rustc_hash::FxHashMap;

use crate::config::{SmtpConfig, UserConfig};

pub use crate::passwords::{hash_password, is_argon2id_hash};

/// Whether `password` is the password of the configured user `user`. Takes as long (one Argon2 check) for
/// an unknown user as for a wrong password. CPU-bound (tens of milliseconds): call it off the async threads.
pub fn verify_user(users: &[UserConfig], user: &str, password: &str) -> bool {
    let (hash, known) = match users.iter().find(|u| u.name == user) {
        Some(u) => (u.password.as_str(), true),
        None => (decoy_hash(), false),
    };
    let matches = match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    };
    known && matches
}

fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("a decoy that no client can know"))
}

/// The limits of [`AuthLimiter`], from `[smtp]`.
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    pub per_address: u32,
    pub per_account: u32,
    pub window: Duration,
}

impl AuthLimits {
    pub fn from_config(c: &SmtpConfig) -> AuthLimits {
        AuthLimits {
            per_address: c.auth_failures_per_address,
            per_account: c.auth_failures_per_account,
            window: Duration::from_secs(c.auth_failure_window_secs),
        }
    }
}

/// Most keys each table tracks: attackers choose addresses and names, so memory must not grow with them.
/// When a table is full, expired entries go first, then the one whose last failure is oldest.
const MAX_TRACKED: usize = 20_000;

/// The extra wait before an attempt on an account over its failure limit is checked (from an address that
/// has not logged in as it before).
pub const ACCOUNT_DELAY: Duration = Duration::from_secs(3);

/// What to do with one AUTH attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// Check the password.
    Check,
    /// Wait [`ACCOUNT_DELAY`], then check the password: the account is under attack.
    CheckAfterDelay,
    /// Answer 454 without checking: the address has failed too often.
    Refuse,
}

/// How long a successful login keeps an (account, address) pair exempt from the per-account limit.
const KNOWN_GOOD_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Longest account name tracked as given; longer names are cut (they cannot match a configured user anyway
/// unless one is that long, and then the prefix still identifies it).
const MAX_NAME: usize = 128;

/// The client address as the limiter sees it: IPv4 whole, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddressKey {
    V4(u32),
    V6Prefix(u64),
}

impl AddressKey {
    fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(u32::from(v4)),
                None => AddressKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Failure times per key, newest last, at most `limit` kept per key (older ones cannot matter).
struct Failures<K> {
    by_key: FxHashMap<K, VecDeque<Instant>>,
}

impl<K: std::hash::Hash + Eq + Clone> Failures<K> {
    fn new() -> Self {
        Failures { by_key: FxHashMap::default() }
    }

    fn count(&self, key: &K, window: Duration, now: Instant) -> usize {
        self.by_key.get(key).map_or(0, |times| times.iter().filter(|t| now.duration_since(**t) < window).count())
    }

    fn record(&mut self, key: K, limit: u32, window: Duration, now: Instant) {
        if !self.by_key.contains_key(&key) && self.by_key.len() >= MAX_TRACKED {
            self.by_key.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
            if self.by_key.len() >= MAX_TRACKED {
                let oldest = self.by_key.iter().min_by_key(|(_, times)| times.back().copied()).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.by_key.remove(&k);
                }
            }
        }
        let times = self.by_key.entry(key).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= window) || times.len() >= limit.max(1) as usize {
            times.pop_front();
        }
        times.push_back(now);
    }
}

struct LimiterState {
    by_address: Failures<AddressKey>,
    by_account: Failures<String>,
    /// (account, address) pairs that logged in successfully, with when.
    known_good: FxHashMap<(String, AddressKey), Instant>,
}

/// AUTH failures per client address and per account, shared by every session of the gateway.
pub struct AuthLimiter {
    state: Mutex<LimiterState>,
}

impl Default for AuthLimiter {
    fn default() -> Self {
        AuthLimiter::new()
    }
}

fn account_key(name: &str) -> String {
    let mut cut = name.len().min(MAX_NAME);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name[..cut].to_string()
}

impl AuthLimiter {
    pub fn new() -> AuthLimiter {
        AuthLimiter {
            state: Mutex::new(LimiterState {
                by_address: Failures::new(),
                by_account: Failures::new(),
                known_good: FxHashMap::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What to do with an AUTH attempt as `account` from `ip`.
    pub fn decide(&self, ip: IpAddr, account: &str, limits: &AuthLimits, now: Instant) -> AuthDecision {
        let s = self.lock();
        let address = AddressKey::of(ip);
        if s.by_address.count(&address, limits.window, now) >= limits.per_address as usize {
            return AuthDecision::Refuse;
        }
        let account = account_key(account);
        if s.by_account.count(&account, limits.window, now) >= limits.per_account as usize {
            let known = s.known_good.get(&(account, address)).is_some_and(|t| now.duration_since(*t) < KNOWN_GOOD_FOR);
            if !known {
                return AuthDecision::CheckAfterDelay;
            }
        }
        AuthDecision::Check
    }

    /// Records a wrong password (or unknown name) for `account` from `ip`.
    pub fn failed(&self, ip: IpAddr, account: &str, limits: &AuthLimits, now: Instant) {
        let mut s = self.lock();
        s.by_address.record(AddressKey::of(ip), limits.per_address, limits.window, now);
        s.by_account.record(account_key(account), limits.per_account, limits.window, now);
    }

    /// Records a successful login: the address is known good for that account from now on.
    pub fn succeeded(&self, ip: IpAddr, account: &str, now: Instant) {
        let mut s = self.lock();
        if s.known_good.len() >= MAX_TRACKED {
            s.known_good.retain(|_, t| now.duration_since(*t) < KNOWN_GOOD_FOR);
            if s.known_good.len() >= MAX_TRACKED {
                let oldest = s.known_good.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    s.known_good.remove(&k);
                }
            }
        }
        s.known_good.insert((account_key(account), AddressKey::of(ip)), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(is_argon2id_hash(&a));
        let users = vec![UserConfig { name: "app".into(), password: a }];
        assert!(verify_user(&users, "app", "correct horse"));
        assert!(!verify_user(&users, "app", "correct hors"));
        assert!(!verify_user(&users, "nobody", "correct horse"));
        assert!(!verify_user(&users, "APP", "correct horse"));
    }

    #[test]
    fn legacy_entries_are_not_hashes() {
        assert!(!is_argon2id_hash("s3cret"));
        assert!(!is_argon2id_hash("sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"));
        assert!(!is_argon2id_hash("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_argon2id_hash(""));
    }

    #[test]
    fn address_limit_is_per_address_and_slides() {
        let l = AuthLimiter::new();
        let limits = AuthLimits { per_address: 3, per_account: 100, window: Duration::from_secs(60) };
        let t0 = Instant::now();
        use AuthDecision::*;
        for i in 0..3 {
            assert_eq!(l.decide(ip("192.0.2.1"), "app", &limits, t0 + Duration::from_secs(i)), Check);
            l.failed(ip("192.0.2.1"), "app", &limits, t0 + Duration::from_secs(i));
        }
        assert_eq!(l.decide(ip("192.0.2.1"), "app", &limits, t0 + Duration::from_secs(10)), Refuse);
        assert_eq!(l.decide(ip("192.0.2.1"), "other", &limits, t0 + Duration::from_secs(10)), Refuse, "any account");
        assert_eq!(l.decide(ip("192.0.2.2"), "app", &limits, t0 + Duration::from_secs(10)), Check, "another address");
        // The first failure leaves the window at 60 s: one more try.
        assert_eq!(l.decide(ip("192.0.2.1"), "app", &limits, t0 + Duration::from_secs(60)), Check);
        // IPv6 neighbours in one /64 share a count.
        for i in 0..3u16 {
            l.failed(format!("2001:db8::{i:x}").parse().unwrap(), "app", &limits, t0);
        }
        assert_eq!(l.decide(ip("2001:db8::ffff"), "app", &limits, t0), Refuse);
        assert_eq!(l.decide(ip("2001:db8:0:1::1"), "app", &limits, t0), Check);
    }

    #[test]
    fn account_limit_slows_new_addresses_and_spares_known_ones() {
        let l = AuthLimiter::new();
        let limits = AuthLimits { per_address: 2, per_account: 4, window: Duration::from_secs(60) };
        let t0 = Instant::now();
        l.succeeded(ip("198.51.100.7"), "app", t0);
        for a in 1..=2 {
            for _ in 0..2 {
                l.failed(format!("203.0.113.{a}").parse().unwrap(), "app", &limits, t0);
            }
        }
        use AuthDecision::*;
        assert_eq!(l.decide(ip("203.0.113.9"), "app", &limits, t0), CheckAfterDelay, "slowed, never locked");
        assert_eq!(l.decide(ip("198.51.100.7"), "app", &limits, t0), Check, "the real user's address");
        assert_eq!(l.decide(ip("203.0.113.9"), "other", &limits, t0), Check, "other accounts");
    }

    #[test]
    fn memory_is_bounded() {
        let l = AuthLimiter::new();
        let limits = AuthLimits { per_address: 2, per_account: 2, window: Duration::from_secs(60) };
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let name = format!("user{i}{}", "x".repeat(300));
            l.failed(IpAddr::V4(i.into()), &name, &limits, t0);
            l.failed(IpAddr::V4(i.into()), &name, &limits, t0);
            l.failed(IpAddr::V4(i.into()), &name, &limits, t0);
        }
        let s = l.lock();
        assert!(s.by_address.by_key.len() <= MAX_TRACKED);
        assert!(s.by_account.by_key.len() <= MAX_TRACKED);
        assert!(s.by_account.by_key.values().all(|t| t.len() <= 2));
        assert!(s.by_account.by_key.keys().all(|k| k.len() <= MAX_NAME));
    }
}
