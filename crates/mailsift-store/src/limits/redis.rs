//! Buckets and triplets in Redis (`[redis]`, the same server and settings as shared reputation), so every
//! node sees what the others took and which triplets passed.
//!
//! A bucket is the hash `mailsift:limit:<key>` with `t` (tokens) and `u` (last update, Unix ms); a triplet
//! is `mailsift:grey:<key>` with `f` (first attempt) and `p` (passed at). Each is read and changed by one
//! Lua script ([`TAKE`], [`GREY`]): Redis runs a script alone, so two nodes taking the last token at once
//! cannot both get it. Keys expire by themselves: a bucket when it would be full again (nothing is lost),
//! an unpassed triplet at the end of its window, a passed one `pass_ttl` after its last message.
//!
//! Down or slow: every call is bounded by `timeout_ms` (200 ms by default), and after a failure the store
//! does not try again for [`RETRY_AFTER`], answering errors at once; the gateway then fails open (counts it
//! and lets mail through). As with reputation, a Redis that restarted empty has forgotten: buckets start
//! full and triplets are greylisted again (persist Redis, `appendonly yes`, to avoid that).

use super::{Grey, GreyTimes, LimitStore, Rate, Take};
use crate::reputation::redis::RedisPool;
use crate::reputation::RedisConfig;
use crate::StoreError;

/// How long the store leaves Redis alone after a failure to reach it.
pub use crate::reputation::redis::RETRY_AFTER;
const BUCKET_PREFIX: &str = "mailsift:limit:";
const TRIPLET_PREFIX: &str = "mailsift:grey:";

/// Takes ARGV[3] tokens from the bucket KEYS[1]. ARGV: tokens per ms, burst, cost, now (ms). Returns
/// {1 or 0, tokens left as text}.
const TAKE: &str = r"
local rate, burst, cost, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local k = KEYS[1]
if redis.call('TYPE', k).ok ~= 'hash' then redis.call('DEL', k) end
local v = redis.call('HMGET', k, 't', 'u')
local t, u = tonumber(v[1]), tonumber(v[2])
if not t or not u then t, u = burst, now end
if now > u then t = t + (now - u) * rate; u = now end
if t > burst then t = burst end
local ok = 0
if t >= cost then t = t - cost; ok = 1 end
redis.call('HSET', k, 't', string.format('%.17g', t), 'u', string.format('%.0f', u))
local ttl = 1000
if rate > 0 then ttl = math.ceil((burst - t) / rate) + 1000 end
redis.call('PEXPIRE', k, ttl)
return {ok, string.format('%.17g', t)}
";

/// [`TAKE`] for every key in turn, one token each, stopping at the first refusal. ARGV: now, then tokens per
/// ms and burst per key. Returns {0} when all gave, else {index (1-based), tokens left as text}.
const TAKE_EACH: &str = r"
local now = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if redis.call('TYPE', k).ok ~= 'hash' then redis.call('DEL', k) end
  local v = redis.call('HMGET', k, 't', 'u')
  local t, u = tonumber(v[1]), tonumber(v[2])
  if not t or not u then t, u = burst, now end
  if now > u then t = t + (now - u) * rate; u = now end
  if t > burst then t = burst end
  if t < 1 then return {i, string.format('%.17g', t)} end
  t = t - 1
  redis.call('HSET', k, 't', string.format('%.17g', t), 'u', string.format('%.0f', u))
  local ttl = 1000
  if rate > 0 then ttl = math.ceil((burst - t) / rate) + 1000 end
  redis.call('PEXPIRE', k, ttl)
end
return {0}
";

/// Records an attempt of the triplet KEYS[1]. ARGV: now, delay, window, pass ttl (ms). Returns {state,
/// ms left}: 1 known, 2 passed now, 0 deferred.
const GREY: &str = r"
local now, delay, window, pass = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local k = KEYS[1]
if redis.call('TYPE', k).ok ~= 'hash' then redis.call('DEL', k) end
local v = redis.call('HMGET', k, 'f', 'p')
local first, passed = tonumber(v[1]), tonumber(v[2])
if passed then redis.call('PEXPIRE', k, pass); return {1, 0} end
if first and now - first >= delay and now - first <= window then
  redis.call('HSET', k, 'p', string.format('%.0f', now))
  redis.call('PEXPIRE', k, pass)
  return {2, 0}
end
if first and now - first < delay then return {0, delay - (now - first)} end
redis.call('DEL', k)
redis.call('HSET', k, 'f', string.format('%.0f', now))
redis.call('PEXPIRE', k, window + 1000)
return {0, delay}
";

/// Buckets and triplets shared through Redis, over the connections reputation uses too ([`RedisPool`]).
pub struct RedisLimits {
    pool: RedisPool,
    take: redis::Script,
    take_each: redis::Script,
    grey: redis::Script,
}

impl RedisLimits {
    /// Checks the URL and the timeout as reputation does; connects only when first used, so a node starts
    /// while Redis is down.
    pub fn open(config: &RedisConfig) -> Result<RedisLimits, StoreError> {
        Ok(RedisLimits {
            pool: RedisPool::open(config, None)?,
            take: redis::Script::new(TAKE),
            take_each: redis::Script::new(TAKE_EACH),
            grey: redis::Script::new(GREY),
        })
    }
}

impl LimitStore for RedisLimits {
    fn take(&self, key: &str, rate: Rate, cost: f64, now_ms: i64) -> Result<Take, StoreError> {
        let mut inv = self.take.key(format!("{BUCKET_PREFIX}{key}"));
        inv.arg(rate.per_sec / 1000.0).arg(rate.burst).arg(cost).arg(now_ms);
        // `invoke` sends EVALSHA and loads the script when the server does not have it.
        let (ok, tokens): (i64, String) = self.pool.with(|c| inv.invoke(c))?;
        let tokens = tokens.parse::<f64>().unwrap_or(0.0);
        let allowed = ok == 1;
        let retry_after_secs = if allowed { 0 } else { rate.wait_ms(tokens, cost).div_ceil(1000).max(1) };
        Ok(Take { allowed, tokens, retry_after_secs })
    }

    fn take_each(&self, keys: &[(String, Rate)], now_ms: i64) -> Result<Option<(usize, u64)>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        let mut inv = self.take_each.prepare_invoke();
        inv.arg(now_ms);
        for (key, rate) in keys {
            inv.key(format!("{BUCKET_PREFIX}{key}")).arg(rate.per_sec / 1000.0).arg(rate.burst);
        }
        let answer: Vec<redis::Value> = self.pool.with(|c| inv.invoke(c))?;
        let index = match answer.first() {
            Some(redis::Value::Int(i)) => *i,
            _ => 0,
        };
        if index < 1 || index as usize > keys.len() {
            return Ok(None);
        }
        let tokens = match answer.get(1) {
            Some(redis::Value::BulkString(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse::<f64>().ok()),
            _ => None,
        }
        .unwrap_or(0.0);
        let rate = keys[index as usize - 1].1;
        Ok(Some((index as usize - 1, rate.wait_ms(tokens, 1.0).div_ceil(1000).max(1))))
    }

    fn peek(&self, key: &str, rate: Rate, now_ms: i64) -> Result<f64, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(format!("{BUCKET_PREFIX}{key}")).arg("t").arg("u");
        let fields: Vec<Option<String>> = self.pool.with(|c| cmd.query(c))?;
        let number = |i: usize| fields.get(i).cloned().flatten().and_then(|s| s.parse::<f64>().ok());
        Ok(match (number(0), number(1)) {
            (Some(t), Some(u)) if t.is_finite() => rate.refill(t, u as i64, now_ms),
            _ => rate.burst,
        })
    }

    fn greylist(&self, key: &str, times: GreyTimes, now_ms: i64) -> Result<Grey, StoreError> {
        let mut inv = self.grey.key(format!("{TRIPLET_PREFIX}{key}"));
        inv.arg(now_ms).arg(times.delay_ms).arg(times.window_ms).arg(times.pass_ttl_ms);
        let (state, left): (i64, i64) = self.pool.with(|c| inv.invoke(c))?;
        Ok(match state {
            1 => Grey::Known,
            2 => Grey::Passed,
            _ => Grey::Defer { wait_secs: super::wait_secs(left, times.delay_ms as i64) },
        })
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.pool.target.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_url_is_refused_without_repeating_it() {
        for url in ["http://user:s3cret@host/", "redis://user:s3cret@host:notaport/", "rediss://u:s3cret@h/"] {
            let e = RedisLimits::open(&RedisConfig::new(url)).err().expect(url).to_string();
            assert!(e.contains("[redis] url") && !e.contains("s3cret"), "{e}");
        }
    }
}
