//! The DNS answer caches: bounded, concurrent, and honouring each answer's TTL up to [`MAX_CACHE_TTL`].

use std::borrow::Borrow;
use std::hash::Hash;
use std::time::{Duration, Instant};

use mail_auth::ResolverCache;

/// A bounded in-memory cache with expiry, shared by all lookups of the gateway: a concurrent cache
/// (moka), so sessions looking up different senders never wait on each other, and a full cache evicts the
/// entries least likely to be asked for again instead of being cleared. Each entry lives until the time the
/// DNS answer gave it (its TTL), and never longer than [`MAX_CACHE_TTL`].
pub struct TtlCache<K, V> {
    map: moka::sync::Cache<K, (V, Instant)>,
}

/// The longest any DNS answer is cached, whatever its TTL: a record changed by its owner (a rotated DKIM
/// key, a new SPF include) is seen within this time even when it was published with a TTL of days.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Expires each entry at the instant stored with it, capped at [`MAX_CACHE_TTL`].
struct UntilValid;

impl<K, V> moka::Expiry<K, (V, Instant)> for UntilValid {
    fn expire_after_create(&self, _: &K, value: &(V, Instant), created_at: Instant) -> Option<Duration> {
        Some(value.1.saturating_duration_since(created_at).min(MAX_CACHE_TTL))
    }

    fn expire_after_update(
        &self,
        _: &K,
        value: &(V, Instant),
        updated_at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.1.saturating_duration_since(updated_at).min(MAX_CACHE_TTL))
    }
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `max` entries (at least one).
    pub fn new(max: usize) -> Self {
        TtlCache { map: moka::sync::Cache::builder().max_capacity(max.max(1) as u64).expire_after(UntilValid).build() }
    }

    /// How many entries the cache holds, once its pending bookkeeping is done (exact, not cheap: for tests
    /// and the metrics endpoint).
    pub fn len(&self) -> usize {
        self.map.run_pending_tasks();
        self.map.entry_count() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V> ResolverCache<K, V> for TtlCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // The cache expires entries itself; the check keeps a stale answer out even between its rounds.
        self.map.get(name).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v)
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        if valid_until > Instant::now() {
            self.map.insert(key, (value, valid_until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_stays_bounded_and_keeps_answering() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(100);
        let until = Instant::now() + Duration::from_secs(60);
        for i in 0..1000u32 {
            cache.insert(format!("name{i}.example").into_boxed_str(), i, until);
        }
        // Bounded, and not cleared wholesale when full: it stays (nearly) full of answers.
        let len = cache.len();
        assert!((50..=100).contains(&len), "{len}");
        let kept = (0..1000u32).filter(|i| cache.get(format!("name{i}.example").as_str()) == Some(*i)).count();
        assert!((50..=100).contains(&kept), "{kept} answers kept of {len}");
    }

    #[test]
    fn an_answer_lives_as_long_as_its_ttl_and_no_longer_than_the_cap() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(10);
        cache.insert("short.example".into(), 1, Instant::now() + Duration::from_millis(50));
        cache.insert("gone.example".into(), 2, Instant::now());
        assert_eq!(cache.get("short.example"), Some(1));
        assert_eq!(cache.get("gone.example"), None, "an answer already expired is not kept");
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.get("short.example"), None);
        // A TTL of a week is cut to the cap.
        let now = Instant::now();
        let week = (0u32, now + Duration::from_secs(7 * 86_400));
        let ttl = <UntilValid as moka::Expiry<Box<str>, (u32, Instant)>>::expire_after_create(
            &UntilValid,
            &"k".into(),
            &week,
            now,
        );
        assert_eq!(ttl, Some(MAX_CACHE_TTL));
        let minute = (0u32, now + Duration::from_secs(60));
        let ttl = <UntilValid as moka::Expiry<Box<str>, (u32, Instant)>>::expire_after_create(
            &UntilValid,
            &"k".into(),
            &minute,
            now,
        );
        assert_eq!(ttl, Some(Duration::from_secs(60)));
    }

    #[test]
    fn sessions_read_and_fill_the_cache_at_once() {
        let cache: TtlCache<Box<str>, usize> = TtlCache::new(10_000);
        let until = Instant::now() + Duration::from_secs(60);
        std::thread::scope(|s| {
            for t in 0..8 {
                let cache = &cache;
                s.spawn(move || {
                    for i in 0..500 {
                        let name = format!("host{}.example", i % 50);
                        if cache.get(name.as_str()).is_none() {
                            cache.insert(name.into_boxed_str(), i % 50, until);
                        }
                        assert_eq!(cache.get(format!("host{}.example", i % 50).as_str()), Some(i % 50), "thread {t}");
                    }
                });
            }
        });
        assert_eq!(cache.len(), 50);
    }
}
