//! Compromised-account protection (`[smtp.account_guard]`): outbound users who send far above their baseline, or spam, are held.
//!
//! Per authenticated user the guard keeps the current hour's count, the day's count, an exponentially
//! weighted mean of the user's past hourly volumes (the baseline) and the verdicts of the user's last
//! messages. A user is held when the current hour exceeds both `hourly_floor` and `baseline_factor` × the
//! baseline, when the day exceeds `daily_limit`, or when at least `spam_min` of the last `spam_window`
//! messages were spam and their share is at least `spam_ratio`. A held user's outbound mail goes to the
//! quarantine until an administrator releases the hold. Pure apart from the mutex: the caller passes the
//! time, so tests control the clock.

use std::sync::Mutex;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// The most users the guard tracks; beyond it, the least recently seen is forgotten (never a held one).
const MAX_USERS: usize = 100_000;
/// The longest user name kept (longer names are cut: keys are chosen by users).
const MAX_NAME: usize = 256;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountGuardConfig {
    /// Whether the guard watches authenticated outbound mail.
    pub enabled: bool,
    /// No hold for volume below this many messages in the current hour, whatever the baseline.
    pub hourly_floor: u64,
    /// Hold when the current hour exceeds this factor × the user's usual hourly volume (and the floor).
    pub baseline_factor: f64,
    /// Hold when the user sends more than this many messages in a day (0: no daily limit).
    pub daily_limit: u64,
    /// Hold when at least this share of the user's last `spam_window` messages was spam...
    pub spam_ratio: f64,
    /// ...counted over this many recent messages...
    pub spam_window: usize,
    /// ...and at least this many of them were spam.
    pub spam_min: usize,
    /// Who is told about a hold (empty: the postmaster).
    pub notify: Vec<String>,
}

impl Default for AccountGuardConfig {
    fn default() -> Self {
        AccountGuardConfig {
            enabled: true,
            hourly_floor: 100,
            baseline_factor: 10.0,
            daily_limit: 2000,
            spam_ratio: 0.5,
            spam_window: 20,
            spam_min: 5,
            notify: Vec::new(),
        }
    }
}

impl AccountGuardConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: &str| {
            Err(ConfigError::Invalid { field: format!("account_guard.{field}"), reason: reason.into() })
        };
        if self.hourly_floor == 0 {
            return bad("hourly_floor", "must be at least 1");
        }
        if !self.baseline_factor.is_finite() || self.baseline_factor < 1.0 {
            return bad("baseline_factor", "must be a number of at least 1");
        }
        if !self.spam_ratio.is_finite() || !(0.0..=1.0).contains(&self.spam_ratio) || self.spam_ratio == 0.0 {
            return bad("spam_ratio", "must be above 0 and at most 1");
        }
        if self.spam_window == 0 || self.spam_window > 1000 {
            return bad("spam_window", "must be between 1 and 1000");
        }
        if self.spam_min == 0 || self.spam_min > self.spam_window {
            return bad("spam_min", "must be between 1 and spam_window");
        }
        if self.notify.len() > 100 || self.notify.iter().any(|a| a.len() > 254 || !a.contains('@')) {
            return bad("notify", "must be at most 100 mail addresses");
        }
        Ok(())
    }
}

/// Why and since when a user is held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub user: String,
    /// Unix seconds.
    pub since: i64,
    pub reason: String,
    pub hour_count: u64,
    pub day_count: u64,
    pub baseline: f64,
    /// Messages quarantined while held.
    pub quarantined: u64,
}

#[derive(Debug, Clone, Default)]
struct User {
    hour: i64,
    hour_count: u64,
    day: i64,
    day_count: u64,
    /// Exponentially weighted mean of past hourly counts (hours with mail; idle hours decay it).
    baseline: f64,
    /// Last verdicts, true = spam (a ring of at most `spam_window`).
    recent: std::collections::VecDeque<bool>,
    last_seen: i64,
}

/// What the guard says about one outbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Send as usual.
    Pass,
    /// This message made the user held: quarantine it and tell the administrators.
    NewHold(Hold),
    /// The user was already held: quarantine it.
    Held(Hold),
}

/// The guard's runtime state (on [`crate::state::Gateway`]).
#[derive(Default)]
pub struct AccountGuard {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    loaded: bool,
    users: FxHashMap<String, User>,
    held: FxHashMap<String, Hold>,
}

/// Weight of the newest hour in the baseline.
const ALPHA: f64 = 0.1;

fn key(user: &str) -> String {
    let mut k: String = user.trim().to_lowercase();
    if k.len() > MAX_NAME {
        let mut cut = MAX_NAME;
        while !k.is_char_boundary(cut) {
            cut -= 1;
        }
        k.truncate(cut);
    }
    k
}

impl AccountGuard {
    /// Counts one outbound message of `user` at `now` (unix seconds), `spam` its verdict.
    pub fn observe(&self, config: &AccountGuardConfig, user: &str, spam: bool, now: i64) -> Judgement {
        let k = key(user);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = inner.held.get_mut(&k) {
            h.quarantined += 1;
            return Judgement::Held(h.clone());
        }
        if !config.enabled {
            return Judgement::Pass;
        }
        if !inner.users.contains_key(&k) && inner.users.len() >= MAX_USERS {
            let held = &inner.held;
            if let Some(oldest) = inner
                .users
                .iter()
                .filter(|(n, _)| !held.contains_key(*n))
                .min_by_key(|(_, u)| u.last_seen)
                .map(|(n, _)| n.clone())
            {
                inner.users.remove(&oldest);
            }
        }
        let u = inner.users.entry(k.clone()).or_default();
        let hour = now.div_euclid(3600);
        let day = now.div_euclid(86_400);
        if u.hour != hour {
            if u.hour_count > 0 || u.hour != 0 {
                // Close the last hour, and decay over the idle hours between (bounded: a long pause is zero).
                let idle = (hour - u.hour - 1).clamp(0, 200) as i32;
                u.baseline = (1.0 - ALPHA) * u.baseline + ALPHA * u.hour_count as f64;
                u.baseline *= (1.0 - ALPHA).powi(idle);
            }
            u.hour = hour;
            u.hour_count = 0;
        }
        if u.day != day {
            u.day = day;
            u.day_count = 0;
        }
        u.hour_count += 1;
        u.day_count += 1;
        u.last_seen = now;
        u.recent.push_back(spam);
        while u.recent.len() > config.spam_window {
            u.recent.pop_front();
        }
        let spams = u.recent.iter().filter(|s| **s).count();
        let reason = if u.hour_count > config.hourly_floor && u.hour_count as f64 > config.baseline_factor * u.baseline
        {
            Some(format!(
                "{} messages this hour, above the floor of {} and {}× the usual {:.1}",
                u.hour_count, config.hourly_floor, config.baseline_factor, u.baseline
            ))
        } else if config.daily_limit > 0 && u.day_count > config.daily_limit {
            Some(format!("{} messages today, above the daily limit of {}", u.day_count, config.daily_limit))
        } else if spams >= config.spam_min && spams as f64 >= config.spam_ratio * u.recent.len() as f64 {
            Some(format!("{spams} of the last {} messages judged spam", u.recent.len()))
        } else {
            None
        };
        let Some(reason) = reason else { return Judgement::Pass };
        let hold = Hold {
            user: k.clone(),
            since: now,
            reason,
            hour_count: u.hour_count,
            day_count: u.day_count,
            baseline: u.baseline,
            quarantined: 1,
        };
        inner.held.insert(k, hold.clone());
        Judgement::NewHold(hold)
    }

    /// The held users, oldest hold first.
    pub fn held(&self) -> Vec<Hold> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Hold> = inner.held.values().cloned().collect();
        v.sort_by(|a, b| a.since.cmp(&b.since).then(a.user.cmp(&b.user)));
        v
    }

    /// Lifts the hold on `user`; its counts start afresh (the burst does not hold it again at once, the
    /// baseline is kept). Returns whether the user was held.
    pub fn release(&self, user: &str) -> bool {
        let k = key(user);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let was = inner.held.remove(&k).is_some();
        if let Some(u) = inner.users.get_mut(&k) {
            u.hour_count = 0;
            u.day_count = 0;
            u.recent.clear();
        }
        was
    }

    /// Restores holds (from the store, after a restart).
    pub fn restore(&self, holds: Vec<Hold>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for h in holds {
            inner.held.insert(key(&h.user), h);
        }
    }
}

/// The settings key the holds are kept under (JSON list of [`Hold`]), so a restart keeps them.
pub const HELD_KEY: &str = "account_guard.held";
/// The most holds kept (a runaway would otherwise grow the setting without bound).
const MAX_HOLDS: usize = 10_000;

impl AccountGuard {
    /// Reads the kept holds from the store the first time it is asked (later calls do nothing).
    pub fn load_once(&self, db: &mailsift_store::Database) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.loaded {
            return;
        }
        inner.loaded = true;
        match db.setting_get(HELD_KEY) {
            Ok(Some(json)) => match serde_json::from_str::<Vec<Hold>>(&json) {
                Ok(holds) => {
                    for h in holds.into_iter().take(MAX_HOLDS) {
                        inner.held.insert(key(&h.user), h);
                    }
                }
                Err(e) => tracing::error!(error = %e, "account guard: stored holds unreadable; none restored"),
            },
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "account guard: stored holds not read"),
        }
    }

    pub(crate) fn holds_json(&self) -> String {
        let held = self.held();
        serde_json::to_string(&held[..held.len().min(MAX_HOLDS)]).unwrap_or_else(|_| "[]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AccountGuardConfig {
        AccountGuardConfig { hourly_floor: 10, baseline_factor: 5.0, daily_limit: 0, ..Default::default() }
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        AccountGuardConfig::default().validate().unwrap();
        let e = AccountGuardConfig { baseline_factor: 0.5, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("account_guard.baseline_factor"), "{e}");
        let e = AccountGuardConfig { spam_min: 50, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("spam_min"), "{e}");
    }

    #[test]
    fn within_floor_passes_burst_holds_and_later_mail_stays_held() {
        let g = AccountGuard::default();
        let c = cfg();
        let t0 = 1_000_000 * 3600;
        // A steady 8 an hour for a day: baseline near 8, floor 10, so 40 (5×8) an hour is the threshold.
        for h in 0..24 {
            for _ in 0..8 {
                assert_eq!(g.observe(&c, "alice", false, t0 + h * 3600), Judgement::Pass);
            }
        }
        let t = t0 + 24 * 3600;
        let mut held_at = None;
        for i in 1..=60 {
            match g.observe(&c, "Alice", false, t) {
                Judgement::Pass => {}
                Judgement::NewHold(h) => {
                    held_at = Some(i);
                    assert!(h.reason.contains("this hour"), "{}", h.reason);
                    break;
                }
                Judgement::Held(_) => panic!("held without a new hold"),
            }
        }
        let n = held_at.expect("the burst holds the user");
        assert!((30..=42).contains(&n), "held at {n}");
        assert!(matches!(g.observe(&c, "alice", false, t + 7200), Judgement::Held(_)));
        // Another user is unaffected.
        assert_eq!(g.observe(&c, "bob", false, t), Judgement::Pass);
        assert_eq!(g.held().len(), 1);
        assert!(g.release("ALICE"));
        assert_eq!(g.observe(&c, "alice", false, t + 7200), Judgement::Pass);
        assert!(!g.release("alice"));
    }

    #[test]
    fn new_user_is_not_held_below_the_floor() {
        let g = AccountGuard::default();
        let c = cfg();
        for _ in 0..10 {
            assert_eq!(g.observe(&c, "new", false, 7200), Judgement::Pass);
        }
        assert!(matches!(g.observe(&c, "new", false, 7200), Judgement::NewHold(_)));
    }

    #[test]
    fn spam_ratio_holds() {
        let g = AccountGuard::default();
        let c = AccountGuardConfig { spam_window: 10, spam_min: 3, spam_ratio: 0.5, ..cfg() };
        assert_eq!(g.observe(&c, "u", false, 0), Judgement::Pass);
        assert_eq!(g.observe(&c, "u", true, 0), Judgement::Pass);
        assert_eq!(g.observe(&c, "u", true, 0), Judgement::Pass);
        match g.observe(&c, "u", true, 0) {
            Judgement::NewHold(h) => assert!(h.reason.contains("3 of the last 4"), "{}", h.reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn daily_limit_holds_and_disabled_passes() {
        let g = AccountGuard::default();
        let c = AccountGuardConfig { daily_limit: 3, hourly_floor: 1000, ..cfg() };
        for h in 0..3 {
            assert_eq!(g.observe(&c, "d", false, h * 3600), Judgement::Pass);
        }
        assert!(matches!(g.observe(&c, "d", false, 4 * 3600), Judgement::NewHold(_)));
        let off = AccountGuardConfig { enabled: false, ..c };
        for _ in 0..10 {
            assert_eq!(g.observe(&off, "e", true, 0), Judgement::Pass);
        }
    }

    /// Hot-path cost: `cargo test --release -p mailsift-gateway --lib guard::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn cost_of_observe() {
        let g = AccountGuard::default();
        let c = AccountGuardConfig { hourly_floor: u64::MAX, daily_limit: 0, ..cfg() };
        let names: Vec<String> = (0..1000).map(|i| format!("user{i}@example.com")).collect();
        let n = 200_000;
        let t = std::time::Instant::now();
        for i in 0..n {
            let _ = g.observe(&c, &names[i % names.len()], i % 7 == 0, 1_800_000_000 + (i / 50) as i64);
        }
        let per = t.elapsed().as_nanos() / n as u128;
        println!("observe: {per} ns per message (1000 users, {n} messages)");
    }
}
