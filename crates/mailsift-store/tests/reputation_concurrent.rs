//! The reputation store shared by many sessions without a lock around it: lookups and records from many
//! threads at once, what a lookup sees before and after the writer commits, what happens when the writer's
//! queue is full, and that closing the store commits everything queued. Real SQLite files; every loop is
//! bounded in count and every wait in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_engine::evidence::ReputationKind;
use mailsift_store::{ReputationEvent, SqliteReputation};

const T0: i64 = 1_800_000_000;

fn ip(n: usize) -> (ReputationKind, String) {
    (ReputationKind::Ip, format!("198.51.100.{n}"))
}

fn address(n: usize) -> (ReputationKind, String) {
    (ReputationKind::Address, format!("user{n}@sender.example"))
}

fn spam_of(rep: &SqliteReputation, key: &(ReputationKind, String), now: i64) -> Option<f64> {
    rep.lookup(std::slice::from_ref(key), now).unwrap().entries.first().map(|e| e.spam)
}

/// Waits (at most five seconds) until the writer has taken everything queued.
fn wait_until_taken(rep: &SqliteReputation) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while rep.stats().queued > 0 {
        assert!(Instant::now() < deadline, "the writer never took the queued record: {:?}", rep.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_store_is_shared_without_a_lock() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SqliteReputation>();
}

#[test]
fn many_threads_look_up_and_record_at_once_and_every_event_counts() {
    const THREADS: usize = 8;
    const MESSAGES: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let rep = Arc::new(SqliteReputation::open_dir(dir.path(), 14.0).unwrap());
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let rep = &rep;
            s.spawn(move || {
                // Everyone shares the client IP (as in a load test); each thread has its own address.
                let keys = [ip(1), address(t)];
                for i in 0..MESSAGES {
                    rep.record(&keys, ReputationEvent::Verdict(8), T0).unwrap();
                    // A thread always sees at least its own events, committed or not.
                    let own = spam_of(rep, &keys[1], T0).unwrap();
                    assert_eq!(own, (i + 1) as f64, "thread {t} after {} records", i + 1);
                    let shared = spam_of(rep, &keys[0], T0).unwrap();
                    assert!(shared >= own && shared <= (THREADS * MESSAGES) as f64, "{shared}");
                }
            });
        }
    });
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    rep.flush().unwrap();
    assert_eq!(rep.stats().dropped, 0);
    assert_eq!(rep.stats().failed, 0);
    // No decay (all at T0): the totals are exact, in memory and in the file as another store reads it.
    assert_eq!(spam_of(&rep, &ip(1), T0), Some((THREADS * MESSAGES) as f64));
    let other = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    assert_eq!(spam_of(&other, &ip(1), T0), Some((THREADS * MESSAGES) as f64));
    for t in 0..THREADS {
        assert_eq!(spam_of(&other, &address(t), T0), Some(MESSAGES as f64));
    }
}

#[test]
fn after_a_flush_another_store_on_the_file_sees_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    let reader = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    let keys = [ip(7), address(7)];
    writer.record(&keys, ReputationEvent::SpamtrapHit, T0).unwrap();
    writer.flush().unwrap();
    let facts = reader.lookup(&keys, T0).unwrap();
    assert_eq!(facts.entries.len(), 2, "{facts:?}");
    assert!(facts.entries.iter().all(|e| e.spam == 5.0 && e.ham == 0.0), "{facts:?}");
    // A reset runs after what was recorded before it, and waits for its commit.
    writer.record(&keys, ReputationEvent::ReportedSpam, T0 + 1).unwrap();
    assert_eq!(writer.reset(&keys[0].1).unwrap(), 1);
    assert!(reader.lookup(&keys[..1], T0 + 1).unwrap().entries.is_empty());
    assert_eq!(spam_of(&reader, &keys[1], T0 + 1).map(|s| s.round()), Some(8.0));
}

#[test]
fn a_full_queue_drops_and_counts_records_without_waiting_and_a_lookup_agrees_before_and_after_the_commit() {
    const QUEUE: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let rep = SqliteReputation::open_dir_with_queue(dir.path(), 14.0, QUEUE).unwrap();
    // Another connection holds the write lock, as a long transaction of another process would: the writer
    // takes the first record and waits for the lock; then only QUEUE records fit.
    let blocker = rusqlite::Connection::open(rep.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    rep.record(&[ip(0)], ReputationEvent::Verdict(9), T0).unwrap();
    wait_until_taken(&rep);

    let started = Instant::now();
    for n in 1..=100 {
        // At different times and looked up days later, so the weights go through decay.
        rep.record(&[ip(n)], ReputationEvent::Verdict(8), T0 + n as i64).unwrap();
    }
    // A hundred records against a stuck writer return at once; they do not wait for the lock.
    assert!(started.elapsed() < Duration::from_secs(2), "records waited: {:?}", started.elapsed());
    assert_eq!(rep.stats().dropped, (100 - QUEUE) as u64, "{:?}", rep.stats());
    assert_eq!(rep.stats().queued, QUEUE);
    // Queued records are seen before they are committed; dropped ones are not.
    let later = T0 + 3 * 86_400;
    let before_commit: Vec<Option<f64>> = (0..=100).map(|n| spam_of(&rep, &ip(n), later)).collect();
    assert!(before_commit[..=QUEUE].iter().all(Option::is_some), "{before_commit:?}");
    assert!(before_commit[QUEUE + 1..].iter().all(Option::is_none), "{before_commit:?}");

    blocker.execute_batch("ROLLBACK").unwrap();
    rep.flush().unwrap();
    // The same figures, to the bit, from memory before the commit and from the file after it.
    let fresh = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    let after_commit: Vec<Option<f64>> = (0..=100).map(|n| spam_of(&fresh, &ip(n), later)).collect();
    assert_eq!(before_commit, after_commit);
    let own_after: Vec<Option<f64>> = (0..=100).map(|n| spam_of(&rep, &ip(n), later)).collect();
    assert_eq!(before_commit, own_after);
    // Recording goes on normally once the writer catches up.
    rep.record(&[ip(0)], ReputationEvent::Verdict(9), later).unwrap();
    rep.flush().unwrap();
    assert_eq!(rep.stats().dropped, (100 - QUEUE) as u64);
    assert!(spam_of(&fresh, &ip(0), later).unwrap() > before_commit[0].unwrap() + 0.99);
}

#[test]
fn closing_the_store_commits_everything_still_queued() {
    const RECORDS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let rep = SqliteReputation::open_dir_with_queue(dir.path(), 14.0, RECORDS).unwrap();
    for n in 0..RECORDS {
        rep.record(&[ip(1), address(n % 100)], ReputationEvent::Verdict(8), T0).unwrap();
    }
    assert_eq!(rep.stats().dropped, 0);
    drop(rep);
    let reopened = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    assert_eq!(spam_of(&reopened, &ip(1), T0), Some(RECORDS as f64));
    for n in 0..100 {
        assert_eq!(spam_of(&reopened, &address(n), T0), Some((RECORDS / 100) as f64), "address {n}");
    }
}
