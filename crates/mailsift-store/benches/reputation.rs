//! Reputation on the message path: every message looks its sender's identities up and then records its
//! verdict against them, from many sessions at once. Eight threads do exactly that against one store, three
//! ways in the same run:
//!
//! - `before`: the store as it was until issue 16, kept here only for this comparison: one connection
//!   behind a process-wide mutex, each record its own transaction, committed before the message goes on;
//! - `mutex`: today's `SqliteReputation` behind a mutex (what the gateway does until it drops the lock);
//! - `shared`: today's `SqliteReputation` shared as it is meant to be, no lock around it;
//!
//! and then, with the servers installed (each a private one on loopback), the backends several nodes share:
//! `postgresql` and `redis`, where every lookup is one round trip and records are sent in batches.
//!
//! Each figure is lookups+records per second until the last record is committed (the new store's time
//! includes its final flush). Identities are those of a load test: one client IP and network for everyone,
//! sender domains and addresses from a pool. `cargo bench -p mailsift-store --bench reputation`
//! (`MAILSIFT_BENCH_MESSAGES=N` messages per thread, 5,000 by default). Without `--bench` (as `cargo test
//! --benches` runs it) it only checks that all three work, on a few hundred messages.

use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use mailsift_engine::evidence::ReputationKind;
use mailsift_store::{RedisConfig, Reputation, ReputationEvent, SqliteReputation};
use rusqlite::{params, Connection, OptionalExtension};

const THREADS: usize = 8;
const NOW: i64 = 1_800_000_000;
const SENDERS: usize = 200;

/// The store before issue 16, reduced to the two calls the message path makes (same schema, same
/// arithmetic, same pragmas): the baseline the new store is measured against.
struct Before {
    conn: Connection,
    half_life_secs: f64,
}

impl Before {
    fn open(dir: &Path) -> Before {
        let conn = Connection::open(dir.join("reputation.sqlite")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS reputation (kind TEXT NOT NULL, key TEXT NOT NULL, spam REAL NOT NULL, \
             ham REAL NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (kind, key));",
        )
        .unwrap();
        Before { conn, half_life_secs: 14.0 * 86_400.0 }
    }

    fn lookup(&self, keys: &[(ReputationKind, String)], now: i64) -> usize {
        let mut stmt =
            self.conn.prepare_cached("SELECT spam, ham, updated FROM reputation WHERE kind = ?1 AND key = ?2").unwrap();
        let mut found = 0;
        for (kind, key) in keys {
            let row: Option<(f64, f64, i64)> = stmt
                .query_row(params![kind.as_str(), key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .unwrap();
            if let Some((spam, _, updated)) = row {
                std::hint::black_box(spam * 0.5f64.powf((now - updated).max(0) as f64 / self.half_life_secs));
                found += 1;
            }
        }
        found
    }

    fn record(&mut self, keys: &[(ReputationKind, String)], bad: f64, now: i64) {
        let half_life = self.half_life_secs;
        let tx = self.conn.transaction().unwrap();
        for (kind, key) in keys {
            let old: Option<(f64, f64, i64)> = tx
                .query_row(
                    "SELECT spam, ham, updated FROM reputation WHERE kind = ?1 AND key = ?2",
                    params![kind.as_str(), key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .unwrap();
            let (spam, ham) = match old {
                Some((s, h, updated)) => {
                    let f = 0.5f64.powf((now - updated).max(0) as f64 / half_life);
                    (s * f, h * f)
                }
                None => (0.0, 0.0),
            };
            tx.execute(
                "INSERT OR REPLACE INTO reputation (kind, key, spam, ham, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![kind.as_str(), key, spam + bad, ham, now],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
}

fn keys(thread: usize, i: usize) -> Vec<(ReputationKind, String)> {
    let sender = (thread * 7919 + i * 31) % SENDERS;
    vec![
        (ReputationKind::Ip, "127.0.0.1".into()),
        (ReputationKind::Net, "127.0.0.0/24".into()),
        (ReputationKind::Domain, format!("sender{}.example", sender % 50)),
        (ReputationKind::Address, format!("user{sender}@sender{}.example", sender % 50)),
    ]
}

/// Runs `per_message` for `messages` messages on each of the threads at once, then `finish` (the new
/// store's flush); messages per second from the common start to the end of `finish`.
fn run<S: Sync>(
    store: &S,
    messages: usize,
    per_message: impl Fn(&S, usize, usize) + Sync,
    finish: impl FnOnce(&S),
) -> f64 {
    let start_line = Barrier::new(THREADS + 1);
    let started = std::thread::scope(|s| {
        for t in 0..THREADS {
            let (start_line, per_message) = (&start_line, &per_message);
            s.spawn(move || {
                start_line.wait();
                for i in 0..messages {
                    per_message(store, t, i);
                }
            });
        }
        start_line.wait();
        Instant::now()
    });
    finish(store);
    (THREADS * messages) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let messages: usize = if benching {
        std::env::var("MAILSIFT_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000)
    } else {
        200
    };
    println!("reputation: {THREADS} threads x {messages} messages (lookup of 4 identities, then a record)");
    let scl = |i: usize| if i.is_multiple_of(3) { 8 } else { 0 };

    let dir = tempfile::tempdir().unwrap();
    let before = Mutex::new(Before::open(dir.path()));
    let before_rate = run(
        &before,
        messages,
        |store, t, i| {
            let k = keys(t, i);
            let found = store.lock().unwrap().lookup(&k, NOW + i as i64);
            std::hint::black_box(found);
            let bad = if scl(i) >= 7 { 1.0 } else { 0.0 };
            store.lock().unwrap().record(&k, bad, NOW + i as i64);
        },
        |_| {},
    );
    drop(before);

    let dir = tempfile::tempdir().unwrap();
    // Room for every record: the figure is the writer's sustained rate, with nothing dropped.
    let queue = THREADS * messages;
    let locked = Mutex::new(SqliteReputation::open_dir_with_queue(dir.path(), 14.0, queue).unwrap());
    // The new store's time runs until the writer has committed everything, not only until the callers are done.
    let mutex_rate = run(
        &locked,
        messages,
        |store, t, i| {
            let k = keys(t, i);
            std::hint::black_box(store.lock().unwrap().lookup(&k, NOW + i as i64).unwrap());
            store.lock().unwrap().record(&k, ReputationEvent::Verdict(scl(i)), NOW + i as i64).unwrap();
        },
        |store| store.lock().unwrap().flush().unwrap(),
    );
    assert_eq!(locked.lock().unwrap().stats().dropped, 0);
    drop(locked);

    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(SqliteReputation::open_dir_with_queue(dir.path(), 14.0, queue).unwrap());
    let shared_rate = run(
        &*shared,
        messages,
        |store, t, i| {
            let k = keys(t, i);
            std::hint::black_box(store.lookup(&k, NOW + i as i64).unwrap());
            store.record(&k, ReputationEvent::Verdict(scl(i)), NOW + i as i64).unwrap();
        },
        |store| store.flush().unwrap(),
    );
    let stats = shared.stats();
    assert_eq!(stats.dropped, 0);
    let committed = shared.show("127.0.0.1", NOW).unwrap();
    assert_eq!(committed.len(), 1, "the shared IP is in the file");

    println!("  before (one connection, mutex, a commit per record): {before_rate:>10.0} messages/s");
    println!("  mutex  (new store behind a mutex):                   {mutex_rate:>10.0} messages/s");
    println!("  shared (new store, no lock around it):               {shared_rate:>10.0} messages/s");
    println!(
        "  shared / before = {:.2}x, mutex / before = {:.2}x ({} records failed)",
        shared_rate / before_rate,
        mutex_rate / before_rate,
        stats.failed
    );
    if !benching {
        assert!(before_rate > 0.0 && shared_rate > 0.0);
    }

    if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
        let url = pg.create_database("bench");
        let store = mailsift_store::pg::PgStore::open(&mailsift_store::pg::PgConfig::new(url)).unwrap();
        let rep = Reputation::open_postgres(store, 14.0).unwrap();
        print_shared("postgresql", &rep, messages, scl);
    }
    if let Some(redis) = mailsift_testkit::redis::Redis::start() {
        let rep = Reputation::open_redis(&RedisConfig::new(redis.url()), 14.0).unwrap();
        print_shared("redis", &rep, messages, scl);
    }
}

/// The shared run on a backend several nodes share (one node here); records the writer could not keep up
/// with are dropped (its queue is the default), and said.
fn print_shared(name: &str, rep: &Reputation, messages: usize, scl: impl Fn(usize) -> i8 + Sync) {
    let rate = run(
        rep,
        messages,
        |store, t, i| {
            let k = keys(t, i);
            std::hint::black_box(store.lookup(&k, NOW + i as i64).unwrap());
            store.record(&k, ReputationEvent::Verdict(scl(i)), NOW + i as i64).unwrap();
        },
        |store| store.flush().unwrap(),
    );
    let stats = rep.stats();
    assert_eq!(stats.failed + stats.unanswered, 0, "{name}: {stats:?}");
    assert_eq!(rep.show("127.0.0.1", NOW).unwrap().len(), 1, "{name}: the shared IP is on the server");
    println!(
        "  {name:<10} (shared by nodes, one here):             {rate:>10.0} messages/s ({} dropped)",
        stats.dropped
    );
}
