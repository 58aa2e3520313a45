//! Rate-limit buckets and greylisting triplets: where the gateway keeps them, behind [`LimitStore`].
//!
//! Two backends:
//! - [`MemoryLimits`], for one node: sharded tables in memory (one short lock per shard, never held across
//!   an await), bounded in entries because keys are chosen by senders, and written to
//!   `limits.snapshot` in the data directory every few seconds and when the gateway stops, then read back
//!   at start, so a restart does not give a throttled sender its full rate back nor forget greylisted and
//!   passed triplets. Only what matters is written: buckets that are not full again, triplets not expired.
//! - [`redis::RedisLimits`], for several nodes (`[redis]`): one hash per bucket or triplet, changed by a
//!   Lua script so two nodes taking at once both count, each with an expiry (a bucket expires when it
//!   would be full again, so nothing is lost). When Redis is down the callers fail open (see
//!   `mailsift_gateway::limits`): mail flows unthrottled and ungreylisted, and that is counted.
//!
//! Time is passed in by the caller (Unix milliseconds), so tests choose it and nodes agree as far as their
//! clocks do. A clock that goes backwards never adds tokens nor shortens a greylisting delay.
//!
//! What it is not: the choice of keys, rates and answers; that is the gateway's.

pub mod redis;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHasher};

use crate::StoreError;

/// Longest key accepted; longer ones are cut by [`MemoryLimits`] and refused by nobody (the gateway builds
/// keys already bounded).
pub const MAX_KEY: usize = 600;
/// Entries each table of [`MemoryLimits`] holds by default (buckets and triplets apart).
pub const DEFAULT_MAX_ENTRIES: usize = 200_000;
/// How often [`MemoryLimits`] writes its snapshot when something changed.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);
const SHARDS: usize = 16;
const SNAPSHOT: &str = "limits.snapshot";

/// A token bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens the bucket holds (a new bucket starts full).
    pub burst: f64,
}

impl Rate {
    /// Milliseconds until `tokens` grow to `want` (0 when they are there already).
    fn wait_ms(&self, tokens: f64, want: f64) -> u64 {
        if tokens >= want || self.per_sec <= 0.0 {
            return 0;
        }
        ((want - tokens) * 1000.0 / self.per_sec).ceil() as u64
    }

    fn refill(&self, tokens: f64, since_ms: i64, now_ms: i64) -> f64 {
        let elapsed = (now_ms - since_ms).max(0) as f64;
        (tokens + elapsed * self.per_sec / 1000.0).min(self.burst)
    }
}

/// The answer to a take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Take {
    pub allowed: bool,
    /// Tokens left after this take.
    pub tokens: f64,
    /// When refused: seconds until the take would succeed.
    pub retry_after_secs: u64,
}

/// Greylisting's times, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GreyTimes {
    /// How long after the first attempt a retry is accepted.
    pub delay_ms: u64,
    /// How long after the first attempt a retry still counts (later, it is a first attempt again).
    pub window_ms: u64,
    /// How long a passed triplet is remembered after its last message.
    pub pass_ttl_ms: u64,
}

/// What greylisting says about a triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grey {
    /// Passed before, remembered: accept (its memory is refreshed).
    Known,
    /// A retry after the delay and within the window: accept, and remember it from now on.
    Passed,
    /// First attempt, or a retry too early: defer; the retry is accepted in `wait_secs`.
    Defer { wait_secs: u64 },
}

/// Where buckets and triplets live. Methods take the time (Unix milliseconds) from the caller.
pub trait LimitStore: Send + Sync {
    /// Takes `cost` tokens from the bucket `key` if it has them.
    fn take(&self, key: &str, rate: Rate, cost: f64, now_ms: i64) -> Result<Take, StoreError>;
    /// Takes one token from each bucket in turn, stopping at the first that has none: `Some((index, seconds
    /// until it has one))` then, `None` when every bucket gave its token. One round trip for a shared store.
    fn take_each(&self, keys: &[(String, Rate)], now_ms: i64) -> Result<Option<(usize, u64)>, StoreError> {
        for (i, (key, rate)) in keys.iter().enumerate() {
            let t = self.take(key, *rate, 1.0, now_ms)?;
            if !t.allowed {
                return Ok(Some((i, t.retry_after_secs)));
            }
        }
        Ok(None)
    }
    /// The tokens in bucket `key` now, without taking any (a missing bucket is full).
    fn peek(&self, key: &str, rate: Rate, now_ms: i64) -> Result<f64, StoreError>;
    /// Records an attempt of the triplet `key` and says whether it passes.
    fn greylist(&self, key: &str, times: GreyTimes, now_ms: i64) -> Result<Grey, StoreError>;
    /// Whether calls may wait on the network (then the gateway makes them off its async threads).
    fn is_remote(&self) -> bool;
    /// Where it is, for messages (never a password).
    fn describe(&self) -> String;
    /// Makes what was taken survive a restart (memory: writes the snapshot). Shared stores need nothing.
    fn save(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
    /// When it is full again: from then on it is the same as no bucket, and may go.
    full_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Triplet {
    first_ms: i64,
    /// When it passed (0: not yet).
    passed_ms: i64,
    /// Last time it was seen (for eviction).
    seen_ms: i64,
    /// When it is forgotten: the end of its window, or `pass_ttl` after its last message once passed.
    expires_ms: i64,
}

#[derive(Default)]
struct Shard {
    buckets: FxHashMap<Box<str>, Bucket>,
    triplets: FxHashMap<Box<str>, Triplet>,
}

/// In-memory buckets and triplets for one node, surviving restarts through a snapshot file.
pub struct MemoryLimits {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// Where the snapshot goes; `None`: memory only (tests, tools).
    path: Option<PathBuf>,
    dirty: AtomicBool,
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn shard_of(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = FxHasher::default();
    key.hash(&mut h);
    (h.finish() >> 32) as usize % SHARDS
}

/// `key` cut to [`MAX_KEY`] bytes at a character boundary.
fn bounded(key: &str) -> &str {
    if key.len() <= MAX_KEY {
        return key;
    }
    let mut end = MAX_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

impl MemoryLimits {
    /// Memory only, nothing written.
    pub fn new(max_entries: usize) -> MemoryLimits {
        MemoryLimits {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: (max_entries / SHARDS).max(8),
            path: None,
            dirty: AtomicBool::new(false),
        }
    }

    /// Reads `limits.snapshot` in `data_dir` if there is one, and writes it back there every
    /// [`SAVE_EVERY`] while something changed (a thread that ends when the store is dropped) and on
    /// [`LimitStore::save`]. A snapshot that cannot be read is reported and ignored: limits start afresh.
    pub fn open(data_dir: &Path, max_entries: usize) -> Arc<MemoryLimits> {
        let mut store = MemoryLimits::new(max_entries);
        let path = data_dir.join(SNAPSHOT);
        match std::fs::read_to_string(&path) {
            Ok(text) => store.load(&text, now_ms()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!("mailsift: {}: cannot read the rate-limit snapshot ({e}); starting afresh", path.display())
            }
        }
        store.path = Some(path);
        let store = Arc::new(store);
        let weak: Weak<MemoryLimits> = Arc::downgrade(&store);
        let _ = std::thread::Builder::new().name("limits-snapshot".into()).spawn(move || loop {
            std::thread::sleep(SAVE_EVERY);
            let Some(store) = weak.upgrade() else { return };
            if store.dirty.load(Ordering::Relaxed) {
                if let Err(e) = store.save() {
                    eprintln!("mailsift: {e}");
                }
            }
        });
        store
    }

    /// Entries held now (buckets, triplets).
    pub fn len(&self) -> (usize, usize) {
        self.shards.iter().map(|s| lock(s)).fold((0, 0), |(b, t), s| (b + s.buckets.len(), t + s.triplets.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Makes room for one more bucket: drops the ones full again, then, if still full, the eighth least
    /// recently used (so a flood of new keys costs one sweep per `per_shard / 8` keys, not one per key).
    fn make_room_buckets(shard: &mut Shard, per_shard: usize, now: i64) {
        if shard.buckets.len() < per_shard {
            return;
        }
        shard.buckets.retain(|_, b| b.full_ms > now);
        if shard.buckets.len() >= per_shard {
            let mut ages: Vec<i64> = shard.buckets.values().map(|b| b.at_ms).collect();
            let cut = ages.len() / 8;
            let (_, nth, _) = ages.select_nth_unstable(cut);
            let cutoff = *nth;
            shard.buckets.retain(|_, b| b.at_ms > cutoff);
        }
    }

    fn make_room_triplets(shard: &mut Shard, per_shard: usize, now: i64) {
        if shard.triplets.len() < per_shard {
            return;
        }
        shard.triplets.retain(|_, t| t.expires_ms > now);
        if shard.triplets.len() >= per_shard {
            // Unpassed triplets go first: forgetting one costs its sender one more delay, forgetting a
            // passed one costs the same; among equals the least recently seen.
            let mut ages: Vec<(bool, i64)> = shard.triplets.values().map(|t| (t.passed_ms != 0, t.seen_ms)).collect();
            let cut = ages.len() / 8;
            let (_, nth, _) = ages.select_nth_unstable(cut);
            let cutoff = *nth;
            shard.triplets.retain(|_, t| (t.passed_ms != 0, t.seen_ms) > cutoff);
        }
    }

    /// The snapshot text: one line per entry, `b <tokens> <at> <full> <key>` or
    /// `g <first> <passed> <seen> <expires> <key>` (times in Unix ms; keys hold no whitespace: the gateway
    /// builds them so, and others are not written). Full buckets and expired triplets are left out.
    fn snapshot(&self, now: i64) -> String {
        let mut out = String::new();
        for shard in &self.shards {
            let s = lock(shard);
            for (k, b) in &s.buckets {
                if b.full_ms > now && !k.contains(char::is_whitespace) {
                    out.push_str(&format!("b {} {} {} {k}\n", b.tokens, b.at_ms, b.full_ms));
                }
            }
            for (k, t) in &s.triplets {
                if t.expires_ms > now && !k.contains(char::is_whitespace) {
                    out.push_str(&format!("g {} {} {} {} {k}\n", t.first_ms, t.passed_ms, t.seen_ms, t.expires_ms));
                }
            }
        }
        out
    }

    /// Reads a snapshot; malformed lines and what has expired meanwhile are skipped, and the bounds hold
    /// as for new keys.
    fn load(&self, text: &str, now: i64) {
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
            match f.first().copied() {
                Some("b") if f.len() == 5 => {
                    let (Ok(tokens), Some(at_ms), Some(full_ms)) = (f[1].parse::<f64>(), n(2), n(3)) else { continue };
                    let key = bounded(f[4]);
                    if !tokens.is_finite() || key.is_empty() || full_ms <= now {
                        continue;
                    }
                    let mut s = lock(&self.shards[shard_of(key)]);
                    Self::make_room_buckets(&mut s, self.per_shard, now);
                    s.buckets.insert(key.into(), Bucket { tokens: tokens.max(0.0), at_ms: at_ms.min(now), full_ms });
                }
                Some("g") if f.len() == 6 => {
                    let (Some(first_ms), Some(passed_ms), Some(seen_ms), Some(expires_ms)) = (n(1), n(2), n(3), n(4))
                    else {
                        continue;
                    };
                    let key = bounded(f[5]);
                    if key.is_empty() || expires_ms <= now {
                        continue;
                    }
                    let mut s = lock(&self.shards[shard_of(key)]);
                    Self::make_room_triplets(&mut s, self.per_shard, now);
                    s.triplets.insert(key.into(), Triplet { first_ms, passed_ms, seen_ms, expires_ms });
                }
                _ => {}
            }
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl LimitStore for MemoryLimits {
    fn take(&self, key: &str, rate: Rate, cost: f64, now: i64) -> Result<Take, StoreError> {
        let key = bounded(key);
        let mut s = lock(&self.shards[shard_of(key)]);
        if !s.buckets.contains_key(key) {
            Self::make_room_buckets(&mut s, self.per_shard, now);
            s.buckets.insert(key.into(), Bucket { tokens: rate.burst, at_ms: now, full_ms: now });
        }
        let bucket = s.buckets.get_mut(key).expect("inserted above");
        let mut tokens = rate.refill(bucket.tokens, bucket.at_ms, now);
        bucket.at_ms = bucket.at_ms.max(now);
        let allowed = tokens >= cost;
        if allowed {
            tokens -= cost;
        }
        bucket.tokens = tokens;
        bucket.full_ms = bucket.at_ms.saturating_add(rate.wait_ms(tokens, rate.burst).min(i64::MAX as u64 / 4) as i64);
        drop(s);
        self.dirty.store(true, Ordering::Relaxed);
        let retry_after_secs = if allowed { 0 } else { rate.wait_ms(tokens, cost).div_ceil(1000).max(1) };
        Ok(Take { allowed, tokens, retry_after_secs })
    }

    fn peek(&self, key: &str, rate: Rate, now: i64) -> Result<f64, StoreError> {
        let key = bounded(key);
        let s = lock(&self.shards[shard_of(key)]);
        Ok(s.buckets.get(key).map_or(rate.burst, |b| rate.refill(b.tokens, b.at_ms, now)))
    }

    fn greylist(&self, key: &str, times: GreyTimes, now: i64) -> Result<Grey, StoreError> {
        let key = bounded(key);
        let (delay, window) = (times.delay_ms as i64, times.window_ms as i64);
        let remember = now.saturating_add(times.pass_ttl_ms.min(i64::MAX as u64 / 4) as i64);
        let mut s = lock(&self.shards[shard_of(key)]);
        let answer = match s.triplets.get_mut(key) {
            Some(t) if t.passed_ms != 0 && t.expires_ms > now => {
                t.seen_ms = t.seen_ms.max(now);
                t.expires_ms = t.expires_ms.max(remember);
                Grey::Known
            }
            Some(t) if t.passed_ms == 0 && now - t.first_ms >= delay && now - t.first_ms <= window => {
                t.passed_ms = now;
                t.seen_ms = now;
                t.expires_ms = remember;
                Grey::Passed
            }
            Some(t) if t.passed_ms == 0 && now - t.first_ms < delay => {
                t.seen_ms = t.seen_ms.max(now);
                Grey::Defer { wait_secs: wait_secs(delay - (now - t.first_ms), delay) }
            }
            _ => {
                Self::make_room_triplets(&mut s, self.per_shard, now);
                let expires_ms = now.saturating_add(window);
                s.triplets.insert(key.into(), Triplet { first_ms: now, passed_ms: 0, seen_ms: now, expires_ms });
                Grey::Defer { wait_secs: wait_secs(delay, delay) }
            }
        };
        drop(s);
        self.dirty.store(true, Ordering::Relaxed);
        Ok(answer)
    }

    fn is_remote(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("memory (snapshot {})", p.display()),
            None => "memory".into(),
        }
    }

    fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else { return Ok(()) };
        self.dirty.store(false, Ordering::Relaxed);
        let text = self.snapshot(now_ms());
        let tmp = path.with_extension("snapshot.tmp");
        let io = |source| StoreError::Io { path: path.display().to_string(), source };
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Milliseconds left as whole seconds, at least 1 and at most the delay (a clock that went back does not
/// lengthen it).
fn wait_secs(left_ms: i64, delay_ms: i64) -> u64 {
    (left_ms.clamp(0, delay_ms.max(0)) as u64).div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate { per_sec: 1.0, burst: 3.0 };
    const GREY: GreyTimes = GreyTimes { delay_ms: 300_000, window_ms: 4 * 3_600_000, pass_ttl_ms: 36 * 86_400_000 };
    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn a_bucket_gives_its_burst_then_one_token_per_period() {
        let m = MemoryLimits::new(1000);
        for _ in 0..3 {
            assert!(m.take("ip:192.0.2.1", RATE, 1.0, T0).unwrap().allowed);
        }
        let refused = m.take("ip:192.0.2.1", RATE, 1.0, T0).unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1);
        // Another key is not affected.
        assert!(m.take("ip:192.0.2.2", RATE, 1.0, T0).unwrap().allowed);
        // One second later one token is back, and only one.
        assert!(m.take("ip:192.0.2.1", RATE, 1.0, T0 + 1000).unwrap().allowed);
        assert!(!m.take("ip:192.0.2.1", RATE, 1.0, T0 + 1000).unwrap().allowed);
        // A clock that goes back adds nothing.
        assert!(!m.take("ip:192.0.2.1", RATE, 1.0, T0).unwrap().allowed);
        assert_eq!(m.peek("ip:192.0.2.1", RATE, T0 + 1000).unwrap(), 0.0);
        assert_eq!(m.peek("ip:192.0.2.9", RATE, T0).unwrap(), 3.0);
    }

    #[test]
    fn take_each_stops_at_the_first_empty_bucket() {
        let m = MemoryLimits::new(1000);
        let one = Rate { per_sec: 0.1, burst: 1.0 };
        let keys = [("ip:9".to_string(), RATE), ("from:x".to_string(), one), ("dom:x".to_string(), RATE)];
        assert_eq!(m.take_each(&keys, T0).unwrap(), None);
        assert_eq!(m.take_each(&keys, T0).unwrap(), Some((1, 10)));
        assert_eq!((m.peek("ip:9", RATE, T0).unwrap(), m.peek("dom:x", RATE, T0).unwrap()), (1.0, 2.0));
    }

    #[test]
    fn greylisting_defers_then_passes_then_remembers() {
        let m = MemoryLimits::new(1000);
        let k = "g:192.0.2.0/24|a@x.example|b@y.example";
        assert_eq!(m.greylist(k, GREY, T0).unwrap(), Grey::Defer { wait_secs: 300 });
        assert_eq!(m.greylist(k, GREY, T0 + 60_000).unwrap(), Grey::Defer { wait_secs: 240 });
        assert_eq!(m.greylist(k, GREY, T0 + 300_000).unwrap(), Grey::Passed);
        assert_eq!(m.greylist(k, GREY, T0 + 400_000).unwrap(), Grey::Known);
        // A retry after the window is a first attempt again.
        let other = "g:192.0.2.0/24|a@x.example|c@y.example";
        assert!(matches!(m.greylist(other, GREY, T0).unwrap(), Grey::Defer { .. }));
        assert_eq!(m.greylist(other, GREY, T0 + 5 * 3_600_000).unwrap(), Grey::Defer { wait_secs: 300 });
        // Remembered for pass_ttl after its last message, not longer.
        assert_eq!(m.greylist(k, GREY, T0 + 400_000 + 36 * 86_400_000 - 1).unwrap(), Grey::Known);
        assert!(matches!(m.greylist(k, GREY, T0 + 400_001 + 72 * 86_400_000 + 1).unwrap(), Grey::Defer { .. }));
    }

    #[test]
    fn the_tables_stay_bounded_under_a_flood_of_keys() {
        let m = MemoryLimits::new(1600);
        for i in 0..20_000 {
            m.take(&format!("from:{i}@flood.example"), RATE, 1.0, T0 + i).unwrap();
            m.greylist(&format!("g:x|{i}|y"), GREY, T0 + i).unwrap();
        }
        let (b, t) = m.len();
        assert!(b <= 1600 && t <= 1600, "{b} {t}");
        // A key longer than the bound is cut, not refused.
        let long = "x".repeat(5000);
        assert!(m.take(&long, RATE, 1.0, T0).unwrap().allowed);
    }

    #[test]
    fn a_restart_keeps_throttled_buckets_and_triplets() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        {
            let m = MemoryLimits::open(dir.path(), 1000);
            for _ in 0..3 {
                m.take("ip:192.0.2.1", RATE, 1.0, now).unwrap();
            }
            m.take("ip:192.0.2.2", RATE, 0.0, now).unwrap(); // full: not worth writing
            m.greylist("g:a", GREY, now).unwrap();
            m.greylist("g:b", GREY, now - 300_000).unwrap();
            m.greylist("g:b", GREY, now).unwrap();
            m.save().unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(SNAPSHOT)).unwrap();
        assert!(!text.contains("192.0.2.2"), "{text}");
        let m = MemoryLimits::open(dir.path(), 1000);
        assert!(!m.take("ip:192.0.2.1", RATE, 1.0, now).unwrap().allowed);
        assert!(matches!(m.greylist("g:a", GREY, now + 1000).unwrap(), Grey::Defer { .. }));
        assert_eq!(m.greylist("g:b", GREY, now + 1000).unwrap(), Grey::Known);
    }

    #[test]
    fn a_damaged_snapshot_is_read_as_far_as_it_makes_sense() {
        let m = MemoryLimits::new(1000);
        m.load(
            "b 0 1800000000000 1800000005000 ip:1\nb nan 1 1900000000000 ip:2\nb 0 1 2 ip:old\nb 1 2\ng 1 2 x\n\
             garbage\ng 1800000000000 1800000000000 1800000000000 1900000000000 g:ok\ng 1 0 1 2 g:gone\n",
            T0,
        );
        assert_eq!(m.len(), (1, 1));
        assert!(!m.take("ip:1", RATE, 1.0, T0).unwrap().allowed);
        assert_eq!(m.greylist("g:ok", GREY, T0).unwrap(), Grey::Known);
    }
}
