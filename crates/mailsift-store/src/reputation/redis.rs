//! Shared reputation in Redis (`[redis]`): the hot path for several nodes, a hash per identity.
//!
//! Each identity is the hash `mailsift:reputation:<kind>:<key>` with the fields `spam`, `ham` and
//! `updated`. A batch is one script ([`FOLD`]) that folds every addition into its hash, as the PostgreSQL
//! upsert does: Redis runs a script alone, so two nodes adding at once both count, and the batch is applied
//! whole. Each hash expires 16 half-lives after its last addition (`FORGET_AFTER_HALF_LIVES`), when what is
//! left is below 2^-16 of it: Redis holds the identities seen lately, not every IP that ever connected.
//!
//! When Redis is down or slow, mail must still flow. Every connection has connect, read and write timeouts
//! ([`RedisConfig::timeout_ms`], 200 ms by default), so no call waits longer; after a failure the store
//! does not try again for [`RETRY_AFTER`], so a dead server costs one timeout a second, not one per
//! message. Meanwhile lookups answer no facts (neutral) and are counted in `unanswered`; records are lost
//! and counted in `failed` (they are evidence: the alternative, holding them in memory, grows without bound
//! in a long outage). Each is said on standard error at most every ten seconds. Once Redis answers again
//! the store uses it without being told; a Redis that restarted empty has forgotten, and relearns.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailsift_engine::evidence::ReputationKind;

use super::shared::{Remote, Row, FORGET_AFTER_HALF_LIVES, MAX_HALF_LIVES};
use super::Identity;
use crate::StoreError;

/// How long the store leaves Redis alone after a failure to reach it.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Connections kept open for reuse; more are opened when more threads look up at once.
const IDLE_CONNECTIONS: usize = 16;
const PREFIX: &str = "mailsift:reputation:";
const KINDS: [ReputationKind; 4] =
    [ReputationKind::Ip, ReputationKind::Net, ReputationKind::Domain, ReputationKind::Address];

/// The fold, for every key of a batch. ARGV: the half-life (seconds), the cap on half-lives, the expiry
/// (seconds), then spam, ham and updated per key. A key some other program left with another type is
/// replaced: the prefix is ours.
const FOLD: &str = r"
local hl, cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local b = 4 + (i - 1) * 3
  local s, h, u = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  if redis.call('TYPE', key).ok ~= 'hash' then redis.call('DEL', key) end
  local old = redis.call('HMGET', key, 'spam', 'ham', 'updated')
  local ou = tonumber(old[3])
  if ou then
    local t = math.max(u, ou)
    local fo = 0.5 ^ math.min((t - ou) / hl, cap)
    local fn = 0.5 ^ math.min((t - u) / hl, cap)
    s = (tonumber(old[1]) or 0) * fo + s * fn
    h = (tonumber(old[2]) or 0) * fo + h * fn
    u = t
  end
  redis.call('HSET', key, 'spam', string.format('%.17g', s), 'ham', string.format('%.17g', h),
    'updated', string.format('%.0f', u))
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
";

/// `[redis]` in the configuration: where the shared reputation lives.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`. The password, if any, never appears in messages.
    pub url: String,
    /// How long connecting, sending or waiting for an answer may take before Redis counts as down for
    /// this call (milliseconds). A message never waits for Redis longer than this.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    200
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig { url: url.into(), timeout_ms: default_timeout_ms() }
    }
}

/// Connections to one Redis, shared by every store that keeps something there (reputation, rate limits and
/// greylisting): the URL and timeout checked once, idle connections reused, the password scrubbed from error
/// texts, and a rest of [`RETRY_AFTER`] after a failure to reach the server.
pub(crate) struct RedisPool {
    client: redis::Client,
    pub(crate) target: String,
    /// The password, to scrub from any error text the client produces.
    password: Option<String>,
    timeout: Duration,
    /// A script each new connection loads, so calls send only its hash.
    init: Option<&'static str>,
    idle: Mutex<Vec<redis::Connection>>,
    /// Until when a failure keeps the store from trying again.
    resting_until: Mutex<Option<Instant>>,
}

pub(super) struct RedisRemote {
    pool: RedisPool,
    half_life_secs: f64,
    fold: redis::Script,
}

/// The server and database, for messages: never the user or password.
fn describe(info: &redis::ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{db}"),
        redis::ConnectionAddr::Unix(path) => format!("redis+unix://{}?db={db}", path.display()),
        _ => format!("redis (database {db})"),
    }
}

impl RedisRemote {
    /// Checks the URL and the timeout; connects only when first used, so a node starts while Redis is down.
    pub(super) fn open(config: &RedisConfig, half_life_secs: f64) -> Result<RedisRemote, StoreError> {
        Ok(RedisRemote { pool: RedisPool::open(config, Some(FOLD))?, half_life_secs, fold: redis::Script::new(FOLD) })
    }
}

impl RedisPool {
    /// Checks the URL and the timeout; connects only when first used, so a node starts while Redis is down.
    /// `init`: a script every new connection loads.
    pub(crate) fn open(config: &RedisConfig, init: Option<&'static str>) -> Result<RedisPool, StoreError> {
        if config.url.trim_start().to_ascii_lowercase().starts_with("rediss:") {
            return Err(StoreError::Invalid {
                path: "[redis] url".into(),
                reason: "TLS (rediss://) is not supported yet: reach Redis over loopback, a private network or a \
                         TLS tunnel"
                    .into(),
            });
        }
        // The client's parse errors do not quote the URL, but say so ourselves rather than trust it.
        let client = redis::Client::open(config.url.as_str()).map_err(|e| StoreError::Invalid {
            path: "[redis] url".into(),
            reason: format!("not a Redis URL ({:?})", e.kind()),
        })?;
        if !(1..=60_000).contains(&config.timeout_ms) {
            return Err(StoreError::Invalid {
                path: "[redis] timeout_ms".into(),
                reason: format!("{} is not between 1 and 60000", config.timeout_ms),
            });
        }
        let info = client.get_connection_info();
        let password = info.redis_settings().password().map(str::to_string).filter(|p| !p.is_empty());
        Ok(RedisPool {
            target: describe(info),
            client,
            password,
            timeout: Duration::from_millis(config.timeout_ms),
            init,
            idle: Mutex::new(Vec::new()),
            resting_until: Mutex::new(None),
        })
    }

    /// A failure as the store reports it. `StoreError` has no variant for Redis; `Postgres` is the one for
    /// "a shared server refused or could not be reached", with the same text (`target: reason`).
    pub(crate) fn error(&self, e: &redis::RedisError) -> StoreError {
        let mut reason = e.to_string();
        if let Some(p) = &self.password {
            reason = reason.replace(p.as_str(), "***");
        }
        StoreError::Postgres { target: self.target.clone(), reason, temporary: true }
    }

    /// Runs `f` on a connection: an idle one, or a new one (which loads the fold script). Fails at once
    /// while resting after a failure; a failure that says the server is unreachable starts a rest.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        if let Some(until) = *self.resting_until.lock().unwrap_or_else(|p| p.into_inner()) {
            if Instant::now() < until {
                return Err(StoreError::Postgres {
                    target: self.target.clone(),
                    reason: format!("unreachable a moment ago; trying again within {RETRY_AFTER:?}"),
                    temporary: true,
                });
            }
        }
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let result = match idle {
            Some(c) => Ok(c),
            None => self.connect(),
        }
        .and_then(|mut c| f(&mut c).map(|out| (out, c)));
        match result {
            Ok((out, c)) => {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < IDLE_CONNECTIONS {
                    idle.push(c);
                }
                Ok(out)
            }
            Err(e) => {
                // The connection is dropped either way: after an error its state is unknown.
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
                    *self.resting_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + RETRY_AFTER);
                    // The idle ones are as dead as this one most likely.
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Err(self.error(&e))
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let mut c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        // Loaded once per connection, so batches send only the script's hash; a restarted Redis comes with
        // new connections and so gets it again.
        if let Some(script) = self.init {
            redis::cmd("SCRIPT").arg("LOAD").arg(script).query::<String>(&mut c)?;
        }
        Ok(c)
    }
}

fn hash_key((kind, key): &Identity) -> String {
    format!("{PREFIX}{}:{key}", kind.as_str())
}

/// A hash's three fields as HMGET answers them; `None` for a missing hash (or one some other program
/// filled with something else).
fn parse_row(fields: &[Option<String>]) -> Option<Row> {
    let [spam, ham, updated] = fields else { return None };
    let number = |f: &Option<String>| f.as_deref().and_then(|s| s.parse::<f64>().ok()).filter(|v| v.is_finite());
    Some(Row { spam: number(spam)?.max(0.0), ham: number(ham)?.max(0.0), updated: number(updated)? as i64 })
}

impl Remote for RedisRemote {
    fn target(&self) -> &str {
        &self.pool.target
    }

    fn fetch(&self, keys: &[Identity]) -> Result<Vec<Option<Row>>, StoreError> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HMGET").arg(hash_key(key)).arg("spam").arg("ham").arg("updated");
        }
        let answers: Vec<Vec<Option<String>>> = self.pool.with(|c| pipe.query(c))?;
        Ok(answers.iter().map(|fields| parse_row(fields)).collect())
    }

    fn add(&self, additions: &[(Identity, Row)]) -> Result<(), StoreError> {
        let ttl = (self.half_life_secs * FORGET_AFTER_HALF_LIVES).ceil().max(1.0) as u64;
        let mut invocation = self.fold.prepare_invoke();
        invocation.arg(self.half_life_secs).arg(MAX_HALF_LIVES).arg(ttl);
        for (identity, row) in additions {
            invocation.key(hash_key(identity)).arg(row.spam).arg(row.ham).arg(row.updated);
        }
        // `invoke` sends EVALSHA and, should the server have lost the script (SCRIPT FLUSH), loads it again.
        self.pool.with(|c| invocation.invoke::<i64>(c)).map(|_| ())
    }

    fn reset(&self, key: &str) -> Result<usize, StoreError> {
        let mut del = redis::cmd("DEL");
        for kind in KINDS {
            del.arg(hash_key(&(kind, key.to_string())));
        }
        self.pool.with(|c| del.query::<usize>(c))
    }

    fn show(&self, key: &str) -> Result<Vec<(Identity, Row)>, StoreError> {
        let identities: Vec<Identity> = KINDS.iter().map(|k| (*k, key.to_string())).collect();
        let rows = self.fetch(&identities)?;
        Ok(identities.into_iter().zip(rows).filter_map(|(id, row)| Some((id, row?))).collect())
    }

    fn neutral_when_down(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_url_is_refused_without_repeating_it() {
        for url in ["http://user:s3cret@host/", "redis://user:s3cret@host:notaport/", "s3cret", "rediss://u:s3cret@h/"]
        {
            let e = RedisRemote::open(&RedisConfig::new(url), 86_400.0).err().expect(url).to_string();
            assert!(e.contains("[redis] url") && !e.contains("s3cret"), "{e}");
        }
        let remote = RedisRemote::open(&RedisConfig::new("redis://gw:s3cret@cache.example:6380/2"), 86_400.0).unwrap();
        assert_eq!(remote.target(), "redis://cache.example:6380/2");
    }

    #[test]
    fn a_timeout_out_of_range_is_refused() {
        let config = RedisConfig { url: "redis://127.0.0.1/".into(), timeout_ms: 0 };
        assert!(RedisRemote::open(&config, 86_400.0).err().unwrap().to_string().contains("timeout_ms"));
    }

    #[test]
    fn stored_fields_that_are_not_numbers_are_no_row() {
        let f = |s: &str| Some(s.to_string());
        assert_eq!(parse_row(&[f("1.5"), f("0"), f("1800000000")]).unwrap().spam, 1.5);
        assert_eq!(parse_row(&[None, None, None]), None);
        assert_eq!(parse_row(&[f("nan"), f("0"), f("1")]), None);
        assert_eq!(parse_row(&[f("x"), f("0"), f("1")]), None);
    }
}
