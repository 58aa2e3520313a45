//! Local reputation: what the gateway has seen from each sender identity (client IP, its /24 or /64,
//! sender domain, sender address), kept as two decaying weights, bad and good evidence.
//!
//! Every piece of evidence ages with a half-life (14 days by default), so a sender that goes quiet drifts
//! back to neutral and a compromised-then-cleaned server recovers on its own. Evidence comes from verdicts
//! (the history of SCLs), spamtrap hits and users' reports; reports and traps weigh more than one verdict.
//!
//! Where it lives ([`open_configured`] picks, in this order):
//! - **Redis** (`[redis] url`), shared by several nodes, the hot path: a hash per identity that expires
//!   once its weights are negligible, additions folded in by a script so nodes adding at once all count.
//!   When Redis is down or slow, mail flows: no call waits longer than the timeout (200 ms by default),
//!   lookups answer no facts (neutral, counted in [`ReputationStats::unanswered`]), records are lost
//!   (counted in [`ReputationStats::failed`]), both said on standard error at most every ten seconds, and
//!   the store goes back to Redis by itself when it answers ([`redis`] says why records are not kept).
//! - **PostgreSQL**, when the gateway database is there and Redis is not configured: the `reputation`
//!   table, additions folded in by an upsert ([`postgres`]). Down, its lookups fail (the gateway goes on
//!   without the evidence) and its records are lost and counted, as with Redis.
//! - **SQLite**, otherwise: `reputation.sqlite` in the data directory, WAL, one row per identity, for a
//!   single node.
//!
//! Every message both reads and writes reputation, so the store is shared by all sessions without a lock
//! around it: [`Reputation`] is `Send + Sync`. Records never wait for the disk or the network: they go to a
//! bounded queue that one writer thread writes in batches, one transaction (SQLite, [`writer`]) or one
//! statement or script (shared backends, [`shared`]) per batch. Until its batch is written, a recorded
//! event lives in a small in-memory table (sharded, one short lock per shard), so a lookup sees every event
//! this node recorded before it. Other nodes see it once the batch is sent, within milliseconds unless the
//! writer is behind. When the writer falls so far behind that the queue is full, a record is dropped and
//! counted rather than making the message wait: reputation is evidence, and one lost verdict costs less
//! than a stalled gateway. On SQLite, lookups read through a few reader connections of their own (WAL
//! readers never wait for the writer).

mod postgres;
pub mod redis;
mod shared;
mod writer;

pub use self::redis::RedisConfig;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use mailsift_engine::config::OrganisationConfig;
use mailsift_engine::evidence::{ReputationEntry, ReputationFacts, ReputationKind};
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::{FxHashMap, FxHasher};

use crate::StoreError;
use writer::Command;

const FILE_NAME: &str = "reputation.sqlite";
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reputation (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    spam REAL NOT NULL,
    ham REAL NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
";

/// How much one event counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// A verdict with this SCL: 7-9 counts as spam, 5-6 as half spam, 0-1 as good; -1 (policy) nothing.
    Verdict(i8),
    /// Mail to a spamtrap.
    SpamtrapHit,
    /// A user reported a message from this sender as spam that got through.
    ReportedSpam,
    /// A user reported a message from this sender as good mail that was flagged.
    ReportedGood,
}

impl Event {
    /// (bad, good) weight of the event.
    fn weights(self) -> (f64, f64) {
        match self {
            Event::Verdict(scl) if scl >= 7 => (1.0, 0.0),
            Event::Verdict(scl) if scl >= 5 => (0.5, 0.0),
            Event::Verdict(scl) if (0..=1).contains(&scl) => (0.0, 1.0),
            Event::Verdict(_) => (0.0, 0.0),
            Event::SpamtrapHit => (5.0, 0.0),
            Event::ReportedSpam => (3.0, 0.0),
            Event::ReportedGood => (0.0, 3.0),
        }
    }
}

/// Records that may wait for the writer before [`Reputation::record`] starts dropping them.
pub const DEFAULT_QUEUE: usize = 8192;
/// Shards of the in-flight table: enough that sessions recording different senders rarely meet.
const SHARDS: usize = 64;
/// How long a connection waits for another process's lock (the writer retries a few times on top).
const BUSY_TIMEOUT_MS: u32 = 5000;

type Identity = (ReputationKind, String);

/// An identity's weights with every event recorded so far folded in, while `in_flight` of those events
/// still wait for the writer; the writer takes the entry away when the last one is committed.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    spam: f64,
    ham: f64,
    updated: i64,
    in_flight: u32,
}

/// One shard of the in-flight table, a map per kind so a lookup borrows the key instead of copying it.
#[derive(Default)]
struct Shard {
    by_kind: [FxHashMap<String, InFlight>; 4],
}

impl Shard {
    fn get(&self, kind: ReputationKind, key: &str) -> Option<&InFlight> {
        self.by_kind[kind_index(kind)].get(key)
    }
}

/// What the callers and the writer thread share.
struct Shared {
    path: PathBuf,
    half_life_secs: f64,
    shards: Box<[Mutex<Shard>]>,
    /// Records queued and not yet taken by the writer.
    queued: AtomicUsize,
    /// Records dropped because the queue was full.
    dropped: AtomicU64,
    /// Records whose batch failed to commit.
    failed: AtomicU64,
}

impl Shared {
    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic elsewhere while holding a shard leaves plain numbers behind, still usable.
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer committed (or lost) one record's events: they are no longer in flight.
    fn settle(&self, keys: &[Identity]) {
        for (kind, key) in keys {
            let mut shard = self.shard(shard_index(*kind, key));
            let map = &mut shard.by_kind[kind_index(*kind)];
            if let Some(e) = map.get_mut(key.as_str()) {
                e.in_flight = e.in_flight.saturating_sub(1);
                if e.in_flight == 0 {
                    map.remove(key.as_str());
                }
            }
        }
    }
}

/// How the reputation store's queue is doing, for the metrics endpoint and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReputationStats {
    /// Records waiting for the writer.
    pub queued: usize,
    /// Records dropped since the store was opened because the queue was full.
    pub dropped: u64,
    /// Records lost since the store was opened because their batch failed to commit (on a shared server:
    /// could not be sent, the server being down).
    pub failed: u64,
    /// Lookups answered with no facts since the store was opened because the shared server (Redis) could
    /// not be reached in time. Always 0 on SQLite and PostgreSQL, whose failures are errors.
    pub unanswered: u64,
}

/// The SQLite backend: one file in the data directory, for one node. Records are queued for a writer thread
/// and committed in batches. A lookup sees every event recorded before it in this process, committed or
/// not; another process (or another store on the same file) sees it once its batch is committed, which
/// `flush` waits for. When the queue is full (the disk is thousands of records behind), a record is
/// dropped, counted in the stats and reported on standard error, rather than holding up the message.
/// Dropping the store commits everything queued before it returns; a process that ends without dropping it
/// (`std::process::exit`) loses what is still queued.
struct SqliteBackend {
    shared: Arc<Shared>,
    /// Reader connections, opened on first use; a reader takes any free one.
    readers: Box<[Mutex<Option<Connection>>]>,
    queue: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<()>>,
}

fn kind_str(k: ReputationKind) -> &'static str {
    k.as_str()
}

fn kind_from(s: &str) -> Option<ReputationKind> {
    Some(match s {
        "ip" => ReputationKind::Ip,
        "net" => ReputationKind::Net,
        "domain" => ReputationKind::Domain,
        "address" => ReputationKind::Address,
        _ => return None,
    })
}

fn kind_index(k: ReputationKind) -> usize {
    match k {
        ReputationKind::Ip => 0,
        ReputationKind::Net => 1,
        ReputationKind::Domain => 2,
        ReputationKind::Address => 3,
    }
}

fn shard_index(kind: ReputationKind, key: &str) -> usize {
    let mut h = FxHasher::default();
    kind.hash(&mut h);
    key.hash(&mut h);
    (h.finish() % SHARDS as u64) as usize
}

/// `0.5^(age / half-life)`; an event from the future has not aged.
fn decay_factor(age_secs: i64, half_life_secs: f64) -> f64 {
    0.5f64.powf(age_secs.max(0) as f64 / half_life_secs)
}

/// One event folded into an identity's weights: what was there, decayed to the event's time, plus the
/// event. The writer and the in-flight table both use it, so a lookup gives the same number before and
/// after the commit.
fn fold(old: Option<(f64, f64, i64)>, bad: f64, good: f64, now: i64, half_life_secs: f64) -> (f64, f64, i64) {
    let (spam, ham) = match old {
        Some((s, h, updated)) => {
            let f = decay_factor(now - updated, half_life_secs);
            (s * f, h * f)
        }
        None => (0.0, 0.0),
    };
    (spam + bad, ham + good, now)
}

const SELECT_ROW: &str = "SELECT spam, ham, updated FROM reputation WHERE kind = ?1 AND key = ?2";

fn stored_row(conn: &Connection, kind: ReputationKind, key: &str) -> rusqlite::Result<Option<(f64, f64, i64)>> {
    conn.prepare_cached(SELECT_ROW)?
        .query_row(params![kind_str(kind), key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

/// How many reader connections: a couple per core, so a thread preempted while reading rarely makes the
/// others wait, and few enough that idle connections cost nothing worth mentioning.
fn reader_slots() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    (cores * 2).clamp(4, 16)
}

thread_local! {
    /// The reader slot this thread tries first, so threads spread over the slots without coordinating.
    static HOME_SLOT: usize = {
        let mut h = FxHasher::default();
        std::thread::current().id().hash(&mut h);
        h.finish() as usize
    };
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA query_only = 1;"))?;
    Ok(conn)
}

impl SqliteBackend {
    /// Opens (creating if needed) the reputation store in `data_dir`; evidence halves every
    /// `half_life_days`. Up to `queue` records (at least one) wait for the writer.
    fn open_dir_with_queue(data_dir: &Path, half_life_days: f64, queue: usize) -> Result<SqliteBackend, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(|e| err(&path, e))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
        ))
        .map_err(|e| err(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| err(&path, e))?;
        let shared = Arc::new(Shared {
            path: path.clone(),
            half_life_secs: half_life_days.max(0.01) * 86_400.0,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let (sender, receiver) = mpsc::sync_channel(queue.max(1));
        let for_writer = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("mailsift-reputation".into())
            .spawn(move || writer::run(conn, &for_writer, receiver))
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Ok(SqliteBackend {
            shared,
            readers: (0..reader_slots()).map(|_| Mutex::new(None)).collect(),
            queue: Some(sender),
            writer: Some(writer),
        })
    }

    /// The file this store keeps.
    fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The queue's state and what was lost (dropped when full, or in a failed batch) since opening.
    fn stats(&self) -> ReputationStats {
        ReputationStats {
            queued: self.shared.queued.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            unanswered: 0,
        }
    }

    fn decay(&self, value: f64, age_secs: i64) -> f64 {
        value * decay_factor(age_secs, self.shared.half_life_secs)
    }

    /// Runs `f` on a reader connection: the first free one from this thread's home slot on, or the home
    /// slot's when all are busy.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let n = self.readers.len();
        let home = HOME_SLOT.with(|h| *h) % n;
        let mut slot = None;
        for i in 0..n {
            match self.readers[(home + i) % n].try_lock() {
                Ok(g) => {
                    slot = Some(g);
                    break;
                }
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    slot = Some(p.into_inner());
                    break;
                }
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        let mut slot = slot.unwrap_or_else(|| self.readers[home].lock().unwrap_or_else(|p| p.into_inner()));
        let path = &self.shared.path;
        if slot.is_none() {
            *slot = Some(open_reader(path).map_err(|e| err(path, e))?);
        }
        let conn = slot.as_ref().expect("opened above");
        f(conn).map_err(|e| err(path, e))
    }

    /// The entries for these identities, decayed to `now` (Unix seconds); unknown ones are left out.
    /// Events recorded before the call are included, whether or not the writer has committed them.
    fn lookup(&self, keys: &[(ReputationKind, String)], now: i64) -> Result<ReputationFacts, StoreError> {
        let mut rows: Vec<Option<(f64, f64, i64)>> = vec![None; keys.len()];
        let mut stored = Vec::new();
        for (i, (kind, key)) in keys.iter().enumerate() {
            // An identity with events in flight is answered from memory; one without is in the file, since
            // the writer lets go of an entry only after committing it.
            match self.shared.shard(shard_index(*kind, key)).get(*kind, key) {
                Some(e) => rows[i] = Some((e.spam, e.ham, e.updated)),
                None => stored.push(i),
            }
        }
        if !stored.is_empty() {
            self.read(|conn| {
                for &i in &stored {
                    rows[i] = stored_row(conn, keys[i].0, &keys[i].1)?;
                }
                Ok(())
            })?;
        }
        let entries = keys
            .iter()
            .zip(rows)
            .filter_map(|((kind, key), row)| {
                let (spam, ham, updated) = row?;
                let age = now - updated;
                Some(ReputationEntry {
                    kind: *kind,
                    key: key.clone(),
                    spam: self.decay(spam, age),
                    ham: self.decay(ham, age),
                })
            })
            .collect();
        Ok(ReputationFacts { entries })
    }

    /// Records one event against every identity of a message; the writer commits it with its batch, in
    /// one transaction. Returns at once: when the queue is full the event is dropped and counted (see the
    /// type's documentation), never waited for. Fails only when the writer has stopped or the stored
    /// weights of a new identity cannot be read.
    fn record(&self, keys: &[(ReputationKind, String)], event: Event, now: i64) -> Result<(), StoreError> {
        let (bad, good) = event.weights();
        if (bad == 0.0 && good == 0.0) || keys.is_empty() {
            return Ok(());
        }
        let Some(queue) = &self.queue else { return Err(self.writer_gone()) };
        let half_life = self.shared.half_life_secs;
        // Hold every shard the identities fall in, taken in index order (two records never wait on each
        // other in a circle), so the writer cannot settle these identities between our fold and our send.
        let index: Vec<usize> = keys.iter().map(|(k, key)| shard_index(*k, key)).collect();
        let mut order = index.clone();
        order.sort_unstable();
        order.dedup();
        let mut shards: Vec<MutexGuard<'_, Shard>> = order.iter().map(|&i| self.shared.shard(i)).collect();
        let guard = |n: usize| order.binary_search(&index[n]).expect("every shard is held");

        // Each identity's weights before the event: in flight, else stored (read only when needed).
        let mut before: Vec<Option<Option<(f64, f64, i64)>>> = (0..keys.len())
            .map(|n| {
                let (kind, key) = &keys[n];
                shards[guard(n)].get(*kind, key).map(|e| Some((e.spam, e.ham, e.updated)))
            })
            .collect();
        if before.iter().any(Option::is_none) {
            self.read(|conn| {
                for (n, b) in before.iter_mut().enumerate() {
                    if b.is_none() {
                        *b = Some(stored_row(conn, keys[n].0, &keys[n].1)?);
                    }
                }
                Ok(())
            })?;
        }
        // Fold in order; an identity named twice folds onto its own first result, as the writer will.
        let mut after: Vec<(f64, f64, i64)> = Vec::with_capacity(keys.len());
        for n in 0..keys.len() {
            let earlier = (0..n).rev().find(|&m| keys[m] == keys[n]).map(|m| after[m]);
            let old = earlier.or(before[n].flatten());
            after.push(fold(old, bad, good, now, half_life));
        }

        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(Command::Record { keys: keys.to_vec(), bad, good, now }) {
            Ok(()) => {
                for (n, (kind, key)) in keys.iter().enumerate() {
                    let g = guard(n);
                    let (spam, ham, updated) = after[n];
                    let e = shards[g].by_kind[kind_index(*kind)].entry(key.clone()).or_insert(InFlight {
                        spam,
                        ham,
                        updated,
                        in_flight: 0,
                    });
                    *e = InFlight { spam, ham, updated, in_flight: e.in_flight + 1 };
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Said on the first drop and then at every doubling, so a flood does not flood the log.
                if dropped.is_power_of_two() {
                    eprintln!(
                        "mailsift: reputation: {}: the writer is behind, {dropped} records dropped so far",
                        self.shared.path.display()
                    );
                }
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Err(self.writer_gone())
            }
        }
    }

    /// Waits until everything recorded before it is committed to the file. Fails if the writer has stopped,
    /// or if records were lost in a failed batch since the previous flush (the error says how many and why).
    /// Records dropped because the queue was full are counted in the stats instead.
    fn flush(&self) -> Result<(), StoreError> {
        let Some(queue) = &self.queue else { return Err(self.writer_gone()) };
        let (reply, answer) = mpsc::sync_channel(1);
        // An operator's or a test's call, not the message path: it may wait for room in the queue.
        queue.send(Command::Flush(reply)).map_err(|_| self.writer_gone())?;
        answer.recv().map_err(|_| self.writer_gone())?
    }

    /// Every entry whose key is `key` (an IP, network, domain or address), decayed to `now`. Commits what
    /// is queued first, so what was recorded is shown.
    fn show(&self, key: &str, now: i64) -> Result<Vec<ReputationEntry>, StoreError> {
        // A lost batch was reported when it failed; what is in the file is still worth showing.
        let _ = self.flush();
        let rows = self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT kind, key, spam, ham, updated FROM reputation WHERE key = ?1 ORDER BY kind")?;
            let rows = stmt.query_map(params![key.to_lowercase()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut out = Vec::new();
        for (kind, key, spam, ham, updated) in rows {
            if let Some(kind) = kind_from(&kind) {
                let age = now - updated;
                out.push(ReputationEntry { kind, key, spam: self.decay(spam, age), ham: self.decay(ham, age) });
            }
        }
        Ok(out)
    }

    /// Forgets everything about `key`; returns how many entries were removed. Runs on the writer after
    /// everything recorded before it, and waits for the commit.
    fn reset(&self, key: &str) -> Result<usize, StoreError> {
        let Some(queue) = &self.queue else { return Err(self.writer_gone()) };
        let (reply, answer) = mpsc::sync_channel(1);
        queue.send(Command::Reset { key: key.to_lowercase(), reply }).map_err(|_| self.writer_gone())?;
        answer.recv().map_err(|_| self.writer_gone())?
    }

    fn writer_gone(&self) -> StoreError {
        StoreError::Write {
            path: self.shared.path.display().to_string(),
            reason: "the reputation writer has stopped".to_string(),
        }
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what is queued and end; waiting for it loses nothing.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

fn err(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite { path: path.display().to_string(), source }
}

/// The local reputation store, on whichever backend the node is configured with (see the module's text).
/// Share it (`Arc<Reputation>`) between all sessions: every method takes `&self`, lookups never wait for
/// a writer, and records never wait for the disk or the network.
///
/// [`Reputation::lookup`] sees every event recorded before it in this process, written or not; another
/// process or node sees it once its batch is written, which [`Reputation::flush`] waits for. When the
/// queue is full, a record is dropped, counted in [`Reputation::stats`] and reported on standard error,
/// rather than holding up the message. Dropping the store writes everything queued before it returns.
pub struct Reputation {
    backend: Backend,
}

/// The name the store had when SQLite was its only backend; the gateway, the console and the commands
/// still use it.
pub type SqliteReputation = Reputation;

enum Backend {
    Sqlite(SqliteBackend),
    /// PostgreSQL or Redis: shared by several nodes.
    Shared(shared::SharedBackend),
}

impl Reputation {
    /// Opens (creating if needed) the SQLite store in `data_dir`; evidence halves every `half_life_days`.
    /// Up to [`DEFAULT_QUEUE`] records wait for the writer.
    pub fn open_dir(data_dir: &Path, half_life_days: f64) -> Result<Reputation, StoreError> {
        Reputation::open_dir_with_queue(data_dir, half_life_days, DEFAULT_QUEUE)
    }

    /// [`Reputation::open_dir`] with room for `queue` records waiting for the writer (at least one).
    pub fn open_dir_with_queue(data_dir: &Path, half_life_days: f64, queue: usize) -> Result<Reputation, StoreError> {
        let backend = Backend::Sqlite(SqliteBackend::open_dir_with_queue(data_dir, half_life_days, queue)?);
        Ok(Reputation { backend })
    }

    /// Reputation in the gateway's PostgreSQL database, shared by every node using it (the schema step
    /// "reputation" made its table when the store opened). Nothing is asked of the server here.
    pub fn open_postgres(pg: crate::pg::PgStore, half_life_days: f64) -> Result<Reputation, StoreError> {
        let half_life_secs = half_life_days.max(0.01) * 86_400.0;
        let remote = Box::new(postgres::PgRemote::new(pg, half_life_secs));
        let backend = Backend::Shared(shared::SharedBackend::open(remote, half_life_days, DEFAULT_QUEUE, "pg")?);
        Ok(Reputation { backend })
    }

    /// Reputation in Redis, shared by every node using it. Checks the URL (a malformed one is an error
    /// that never repeats it) and connects only when first used: a node starts, and mail flows, while
    /// Redis is down (see [`redis`] for what happens then).
    pub fn open_redis(config: &RedisConfig, half_life_days: f64) -> Result<Reputation, StoreError> {
        let half_life_secs = half_life_days.max(0.01) * 86_400.0;
        let remote = Box::new(redis::RedisRemote::open(config, half_life_secs)?);
        let backend = Backend::Shared(shared::SharedBackend::open(remote, half_life_days, DEFAULT_QUEUE, "redis")?);
        Ok(Reputation { backend })
    }

    /// The SQLite file, or for a shared backend the server (as `postgresql://host:port/db` or
    /// `redis://host:port/db`, never a password) as a path.
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => s.path(),
            Backend::Shared(s) => Path::new(s.target()),
        }
    }

    /// The queue's state and what was lost since opening (see [`ReputationStats`]).
    pub fn stats(&self) -> ReputationStats {
        match &self.backend {
            Backend::Sqlite(s) => s.stats(),
            Backend::Shared(s) => s.stats(),
        }
    }

    /// The entries for these identities, decayed to `now` (Unix seconds); unknown ones are left out.
    /// Events recorded before the call in this process are included, whether or not they are written yet.
    /// With Redis down, the answer is no entries (neutral), counted in [`ReputationStats::unanswered`].
    pub fn lookup(&self, keys: &[(ReputationKind, String)], now: i64) -> Result<ReputationFacts, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.lookup(keys, now),
            Backend::Shared(s) => s.lookup(keys, now),
        }
    }

    /// Records one event against every identity of a message; a writer thread writes it with its batch.
    /// Returns at once: when the queue is full the event is dropped and counted, never waited for. Fails
    /// only when the writer has stopped or (SQLite) the stored weights of a new identity cannot be read.
    pub fn record(&self, keys: &[(ReputationKind, String)], event: Event, now: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.record(keys, event, now),
            Backend::Shared(s) => s.record(keys, event, now),
        }
    }

    /// Waits until everything recorded before it is written. Fails if the writer has stopped, or if records
    /// were lost in a failed batch since the previous flush (the error says how many and why). Records
    /// dropped because the queue was full are counted in [`Reputation::stats`] instead.
    pub fn flush(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.flush(),
            Backend::Shared(s) => s.flush(),
        }
    }

    /// Every entry whose key is `key` (an IP, network, domain or address), decayed to `now`. Writes what
    /// is queued first, so what was recorded is shown.
    pub fn show(&self, key: &str, now: i64) -> Result<Vec<ReputationEntry>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.show(key, now),
            Backend::Shared(s) => s.show(key, now),
        }
    }

    /// Forgets everything about `key` (on a shared backend, for every node); returns how many entries were
    /// removed. Runs after everything recorded before it, and waits for it.
    pub fn reset(&self, key: &str) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.reset(key),
            Backend::Shared(s) => s.reset(key),
        }
    }

    /// Records a user's report against the reported message's sender (identities from its own trace
    /// headers, as the message arrives attached or from a file). Returns the identities recorded.
    ///
    /// `org` is the organisation the gateway judges for (configured and stored domains folded in): a
    /// reported spoof of one of our domains counts against the spoofing IP and network only, never
    /// against our domain, whose own mail would otherwise pay for it.
    pub fn record_report(
        &self,
        msg: &mailsift_engine::Message<'_>,
        side: mailsift_engine::classify::Side,
        org: &OrganisationConfig,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut envelope = mailsift_engine::Envelope::default();
        envelope.fill_from_trace(msg);
        let keys = mailsift_engine::evidence::reputation_keys_for(&envelope, msg, org);
        let event = match side {
            mailsift_engine::classify::Side::Ham => Event::ReportedGood,
            mailsift_engine::classify::Side::Spam => Event::ReportedSpam,
        };
        self.record(&keys, event, now)?;
        Ok(keys.into_iter().map(|(_, k)| k).collect())
    }
}

impl std::fmt::Debug for Reputation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reputation").field("at", &self.path()).finish_non_exhaustive()
    }
}

/// The store a node is configured with: Redis when `[redis]` is set (the hot path, shared by the nodes),
/// else the gateway's PostgreSQL database when it is on PostgreSQL (shared as well), else SQLite in
/// `data_dir` (this node alone).
pub fn open_configured(
    data_dir: &Path,
    db: &crate::Database,
    redis: Option<&RedisConfig>,
    half_life_days: f64,
) -> Result<Reputation, StoreError> {
    match (redis, db.postgres()) {
        (Some(config), _) => Reputation::open_redis(config, half_life_days),
        (None, Some(pg)) => Reputation::open_postgres(pg.clone(), half_life_days),
        (None, None) => Reputation::open_dir(data_dir, half_life_days),
    }
}

/// Feeds spamtrap hits into reputation (the learner calls it when mail reaches a trap).
///
/// A hit counts against the sender's IP and network, and against its domain and address unless that
/// domain is one of ours: anyone can write our domain into a message sent to our trap. Our domains are
/// those of [`ReputationHook::with_organisation`], and in any case the trap's own domain and the
/// recipients' domains (inbound mail is addressed to our domains), so a hook built without the
/// organisation still never counts a spoof of the trap's domain against that domain.
pub struct ReputationHook {
    store: Arc<Reputation>,
    org: OrganisationConfig,
}

impl ReputationHook {
    pub fn new(store: Reputation) -> ReputationHook {
        ReputationHook::shared(Arc::new(store))
    }

    /// A hook on a store the caller also uses (the gateway's, which its sessions look up and record in).
    pub fn shared(store: Arc<Reputation>) -> ReputationHook {
        ReputationHook { store, org: OrganisationConfig::default() }
    }

    /// The organisation the gateway judges for (configured and stored domains folded in).
    pub fn with_organisation(mut self, org: OrganisationConfig) -> ReputationHook {
        self.org = org;
        self
    }

    /// The keys a trap hit counts against (see the type's documentation).
    pub fn keys(
        &self,
        envelope: &mailsift_engine::Envelope,
        msg: &mailsift_engine::Message<'_>,
        trap: &str,
    ) -> Vec<(ReputationKind, String)> {
        let mut org = self.org.clone();
        let ours = std::iter::once(trap)
            .chain(if envelope.is_outbound() {
                Vec::new()
            } else {
                envelope.rcpt_to.iter().map(String::as_str).collect()
            })
            .filter_map(|a| a.trim().trim_matches(['<', '>']).rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
            .filter(|d| !d.is_empty());
        for d in ours {
            if !org.domains.iter().any(|o| o.eq_ignore_ascii_case(&d)) {
                org.domains.push(d);
            }
        }
        mailsift_engine::evidence::reputation_keys_for(envelope, msg, &org)
    }
}

impl mailsift_engine::classify::SpamtrapHook for ReputationHook {
    fn spamtrap_hit(&self, envelope: &mailsift_engine::Envelope, msg: &mailsift_engine::Message<'_>, trap: &str) {
        let keys = self.keys(envelope, msg, trap);
        let now = mailsift_engine::unix_now();
        // A failed write loses one piece of evidence, never the message: report it and go on.
        if let Err(e) = self.store.record(&keys, Event::SpamtrapHit, now) {
            eprintln!("mailsift: reputation: {e}");
        }
    }
}

/// Whether a reputation store exists in `data_dir` (scans read it only then; they never create one).
pub fn exists(data_dir: &Path) -> bool {
    data_dir.join(FILE_NAME).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsift_engine::classify::{Side, SpamtrapHook};
    use mailsift_engine::config::ProtectedDomain;
    use mailsift_engine::{Engine, EngineConfig, Envelope};

    const T0: i64 = 1_800_000_000;

    /// acme.test is ours and protected: its mail comes from 192.0.2.10 only.
    fn acme() -> OrganisationConfig {
        OrganisationConfig {
            domains: vec!["acme.test".into()],
            protected: vec![ProtectedDomain {
                domain: "acme.test".into(),
                sending_servers: vec!["192.0.2.10/32".into()],
                ..ProtectedDomain::default()
            }],
            ..OrganisationConfig::default()
        }
    }

    fn message(ip: &str, from: &str) -> Vec<u8> {
        format!(
            "Received: from mail.sender.test (mail.sender.test [{ip}]) by mx.acme.test with ESMTP id 1; \
             Mon, 1 Jan 2024 00:00:00 +0000\r\nReturn-Path: <{from}>\r\nFrom: <{from}>\r\nTo: <staff@acme.test>\r\n\
             Subject: new bank details\r\n\r\nPlease pay the invoice to the new account.\r\n"
        )
        .into_bytes()
    }

    fn keys_of(rep: &SqliteReputation, key: &str) -> Vec<(ReputationKind, f64, f64)> {
        rep.show(key, T0 + 60).unwrap().into_iter().map(|e| (e.kind, e.spam, e.ham)).collect()
    }

    #[test]
    fn reported_spoofs_of_our_domain_count_against_the_spoofer_not_our_domain() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let rep = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
        let spoof = message("198.18.0.9", "billing@acme.test");
        let msg = engine.parse(&spoof);
        for i in 0..3 {
            let recorded = rep.record_report(&msg, Side::Spam, &acme(), T0 + i).unwrap();
            assert_eq!(recorded, ["198.18.0.9", "198.18.0.0/24"]);
        }
        assert!(keys_of(&rep, "acme.test").is_empty(), "our domain took the blame: {:?}", keys_of(&rep, "acme.test"));
        assert!(keys_of(&rep, "billing@acme.test").is_empty());
        let ip = keys_of(&rep, "198.18.0.9");
        assert_eq!(ip.len(), 1);
        assert!(ip[0].1 > 8.0, "three spam reports against the spoofing IP: {ip:?}");
        assert!(keys_of(&rep, "198.18.0.0/24")[0].1 > 8.0);

        // Our own mail, from our sending server, reported as good, counts for our domain.
        let ours = message("192.0.2.10", "news@acme.test");
        let recorded = rep.record_report(&engine.parse(&ours), Side::Ham, &acme(), T0 + 10).unwrap();
        assert!(recorded.contains(&"acme.test".to_string()), "{recorded:?}");
        let domain = keys_of(&rep, "acme.test");
        assert_eq!(domain.len(), 1);
        assert_eq!(domain[0].1, 0.0, "no spam against acme.test: {domain:?}");
        assert!(domain[0].2 > 2.9);

        // A third party's domain still learns from reports about it.
        let other = message("198.51.100.7", "offers@spammy.test");
        rep.record_report(&engine.parse(&other), Side::Spam, &acme(), T0 + 20).unwrap();
        assert!(keys_of(&rep, "spammy.test")[0].1 > 2.9);
        // Without the organisation (the old key set), the spoof would have counted against acme.test.
        rep.record_report(&msg, Side::Spam, &OrganisationConfig::default(), T0 + 30).unwrap();
        assert!(keys_of(&rep, "acme.test")[0].1 > 2.9, "the test tells the key sets apart");
    }

    #[test]
    fn spamtrap_hits_on_spoofs_of_our_domain_spare_our_domain() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let store = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
        let hook = ReputationHook::new(store).with_organisation(acme());
        let raw = message("198.18.0.9", "billing@acme.test");
        let msg = engine.parse(&raw);
        let envelope = Envelope {
            client_ip: Some("198.18.0.9".parse().unwrap()),
            mail_from: Some("billing@acme.test".into()),
            rcpt_to: vec!["trap@acme.test".into()],
            ..Envelope::default()
        };
        hook.spamtrap_hit(&envelope, &msg, "trap@acme.test");
        // A spoof of another of our domains sent to the trap: even a hook without the organisation knows
        // the trap's and the recipients' domains are ours.
        let bare = ReputationHook::new(SqliteReputation::open_dir(dir.path(), 14.0).unwrap());
        let envelope2 = Envelope { mail_from: Some("ceo@acme.test".into()), ..envelope.clone() };
        assert_eq!(
            bare.keys(&envelope2, &msg, "trap@acme.test").into_iter().map(|(_, k)| k).collect::<Vec<_>>(),
            ["198.18.0.9", "198.18.0.0/24"]
        );
        let third = Envelope { mail_from: Some("x@spammy.test".into()), ..envelope.clone() };
        let spam_raw = message("198.18.0.9", "x@spammy.test");
        let spam_msg = engine.parse(&spam_raw);
        let keys: Vec<String> = bare.keys(&third, &spam_msg, "trap@acme.test").into_iter().map(|(_, k)| k).collect();
        assert!(keys.contains(&"spammy.test".to_string()), "{keys:?}");

        let rep = &hook.store;
        let now = mailsift_engine::unix_now();
        assert!(rep.show("acme.test", now).unwrap().is_empty());
        assert!(rep.show("billing@acme.test", now).unwrap().is_empty());
        assert!(rep.show("198.18.0.9", now).unwrap()[0].spam > 4.9);
    }
}
