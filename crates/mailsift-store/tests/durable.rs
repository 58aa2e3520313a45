//! What the gateway database promises about durability: a log row acknowledged by `log_append_durable` (the
//! row of a message answered 250) survives `kill -9` of the process right after; the outbound spool keeps
//! its items across a reopen, hands each to one claimer at a time, takes a dead claimer's items back when
//! its lease is over, and moves a digest's high-water mark only together with the spooled digests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailsift_store::gateway::now_ms;
use mailsift_store::{Database, LogEntry, NewSpoolItem};

fn row(reference_id: String) -> LogEntry {
    LogEntry {
        reference_id,
        time: 1_800_000_000,
        direction: "inbound".into(),
        recipients: vec!["bob@example.net".into()],
        symbols: vec![("BAYES_HAM".into(), -1.0)],
        action: "deliver".into(),
        stage: "data".into(),
        ..LogEntry::default()
    }
}

const CHILD_DIR: &str = "MAILSIFT_DURABLE_CHILD_DIR";

/// The child half of the kill test: 8 threads append durable rows and print each reference id once the
/// database acknowledged it, until killed (or 60 s pass).
#[test]
fn child_appends_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let db = Database::open_in(std::path::Path::new(&dir)).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8 {
            let db = db.clone();
            s.spawn(move || {
                use std::io::Write;
                for i in 0..1_000_000 {
                    if started.elapsed() > Duration::from_secs(60) {
                        return;
                    }
                    let id = format!("t{t}-{i}");
                    db.log_append_durable(row(id.clone())).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {id}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn acknowledged_log_rows_survive_kill_9() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_appends_until_killed", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 2_000 && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                // libtest may print the test's name on the same line first.
                if let Some(at) = l.find("ACK ") {
                    acked.push(l[at + 4..].trim().to_string());
                }
            }
            _ => break,
        }
    }
    // SIGKILL, while the 8 threads are still appending: whatever was queued and not acknowledged may go.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acked.len() >= 500, "the child acknowledged only {} rows", acked.len());
    let db = Database::open_in(dir.path()).unwrap();
    let mut missing = Vec::new();
    for id in &acked {
        if db.log_get(id).unwrap().is_none() {
            missing.push(id.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged rows lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Runs `body` on each backend; `open` opens a handle on the same database (another process, or node).
/// SQLite in a temporary directory, then PostgreSQL (a private server; without it installed only SQLite
/// runs, and under CI=true the test fails).
fn each_backend(body: impl Fn(&dyn Fn() -> Database)) {
    let dir = tempfile::tempdir().unwrap();
    body(&|| Database::open_in(dir.path()).unwrap());
    if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
        let config = mailsift_store::pg::PgConfig::new(pg.url());
        body(&|| Database::open_postgres(&config).unwrap());
    }
}

fn spooled(kind: &str, rcpt: &str) -> NewSpoolItem {
    NewSpoolItem {
        kind: kind.into(),
        reference_id: format!("ref-{rcpt}"),
        mail_from: String::new(),
        recipient: rcpt.into(),
        outbound: true,
    }
}

#[test]
fn spooled_items_survive_a_reopen_and_are_claimed_once() {
    each_backend(|open| {
        let body = b"Subject: bounce\r\n\r\nUndelivered.\r\n".repeat(100);
        let ids = {
            let db = open();
            let ids = db
                .spool_put(vec![
                    (spooled("bounce", "a@x.example"), body.clone()),
                    (spooled("copy", "b@x.example"), b"x".to_vec()),
                ])
                .unwrap();
            assert_eq!(ids.len(), 2);
            ids
        };
        let db = open();
        let now = now_ms();
        let pending = db.spool_list(Some("pending"), 10).unwrap();
        assert_eq!(pending.iter().map(|i| i.id).collect::<Vec<_>>(), ids);
        // Two claimers at once: each row goes to exactly one of them.
        let (a, b) = std::thread::scope(|s| {
            let one = s.spawn(|| db.spool_claim(now, now + 60_000, 10, None).unwrap());
            let two = s.spawn(|| db.spool_claim(now, now + 60_000, 10, None).unwrap());
            (one.join().unwrap(), two.join().unwrap())
        });
        let mut got: Vec<i64> = a.iter().chain(b.iter()).map(|(i, _)| i.id).collect();
        got.sort();
        assert_eq!(got, ids);
        let (item, raw) = a.iter().chain(b.iter()).find(|(i, _)| i.id == ids[0]).unwrap();
        assert_eq!(raw, &body, "the message comes back byte for byte");
        assert_eq!(item.attempts, 1);
        assert_eq!(item.recipient, "a@x.example");
        // Leased: nobody else gets them before the lease ends; after it, they are due again.
        assert!(db.spool_claim(now + 59_000, now + 120_000, 10, None).unwrap().is_empty());
        let again = db.spool_claim(now + 60_000, now + 120_000, 10, Some(ids[1])).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0.attempts, 2);
        // Delivered: gone. Refused for good: kept as failed, without the message.
        assert!(db.spool_done(ids[0]).unwrap());
        assert!(!db.spool_done(ids[0]).unwrap());
        db.spool_fail(ids[1], now, "550 5.1.1 no such user").unwrap();
        assert!(db.spool_list(Some("pending"), 10).unwrap().is_empty());
        let failed = db.spool_list(Some("failed"), 10).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last_error.as_deref(), Some("550 5.1.1 no such user"));
        assert!(db.spool_claim(now + 1_000_000, now + 2_000_000, 10, None).unwrap().is_empty());
        assert_eq!(db.spool_purge_failed(now + 1).unwrap(), 1);
        assert!(db.spool_list(None, 10).unwrap().is_empty());
    });
}

#[test]
fn a_retry_waits_for_its_time() {
    each_backend(|open| {
        let db = open();
        let ids = db.spool_put(vec![(spooled("digest", "c@x.example"), b"digest".to_vec())]).unwrap();
        let now = now_ms();
        assert_eq!(db.spool_next_due().unwrap().map(|t| t <= now), Some(true));
        let claimed = db.spool_claim(now, now + 1_000, 1, None).unwrap();
        assert_eq!(claimed.len(), 1);
        db.spool_retry(ids[0], now + 5_000, "connection refused").unwrap();
        assert_eq!(db.spool_next_due().unwrap(), Some(now + 5_000));
        assert!(db.spool_claim(now + 4_999, now + 10_000, 1, None).unwrap().is_empty());
        let due = db.spool_claim(now + 5_000, now + 10_000, 1, None).unwrap();
        assert_eq!(due[0].0.last_error.as_deref(), Some("connection refused"));
        assert_eq!(due[0].0.attempts, 2);
    });
}

#[test]
fn the_operators_calls_show_retry_count_and_remove_items_on_both_backends() {
    each_backend(|open| {
        let db = open();
        let ids = db
            .spool_put(vec![
                (spooled("outbound", "d@x.example"), b"Subject: one\r\n\r\n1\r\n".to_vec()),
                (spooled("outbound", "e@x.example"), b"Subject: two\r\n\r\n2\r\n".to_vec()),
            ])
            .unwrap();
        let now = now_ms();
        // One is on its way (claimed, under its lease), the other waits an hour after a failure.
        assert_eq!(db.spool_claim(now, now + 600_000, 1, Some(ids[0])).unwrap().len(), 1);
        assert_eq!(db.spool_claim(now, now + 600_000, 1, Some(ids[1])).unwrap().len(), 1);
        db.spool_retry(ids[1], now + 3_600_000, "451 later").unwrap();
        let (item, raw) = db.spool_get(ids[0]).unwrap().unwrap();
        assert!(item.sending(now_ms()), "{item:?}");
        assert_eq!(raw.as_deref(), Some(&b"Subject: one\r\n\r\n1\r\n"[..]));
        assert!(!db.spool_get(ids[1]).unwrap().unwrap().0.sending(now_ms()));
        // "Retry all": the waiting one is due now, the one on its way is left to its attempt.
        assert_eq!(db.spool_due_now(None).unwrap(), 1);
        let rows = db.spool_list(Some("pending"), 10).unwrap();
        assert!(rows.iter().find(|i| i.id == ids[1]).unwrap().next_attempt_ms <= now_ms());
        assert_eq!(rows.iter().find(|i| i.id == ids[0]).unwrap().next_attempt_ms, now + 600_000);
        assert_eq!(db.spool_due_now(Some(ids[0])).unwrap(), 0);
        assert_eq!(db.spool_list_of(Some("pending"), Some("outbound"), 10).unwrap().len(), 2);
        assert!(db.spool_list_of(None, Some("bounce"), 10).unwrap().is_empty());
        let counts = db.spool_counts().unwrap();
        assert_eq!(counts.len(), 1, "{counts:?}");
        assert_eq!((counts[0].kind.as_str(), counts[0].state.as_str(), counts[0].count), ("outbound", "pending", 2));
        // Given up: shown without its message; removed: gone.
        db.spool_fail(ids[1], now, "550 no").unwrap();
        assert_eq!(db.spool_get(ids[1]).unwrap().unwrap().1, None);
        assert!(db.spool_remove(ids[1]).unwrap());
        assert!(!db.spool_remove(ids[1]).unwrap());
        assert!(db.spool_get(ids[1]).unwrap().is_none());
        assert!(db.spool_remove(ids[0]).unwrap());
    });
}

#[test]
fn the_high_water_mark_moves_only_with_the_spooled_digests() {
    each_backend(|open| {
        let db = open();
        db.spool_put_with_settings(
            vec![(spooled("digest", "d@x.example"), b"one".to_vec())],
            vec![("digest.last_id".into(), "7".into())],
        )
        .unwrap();
        assert_eq!(db.setting_get("digest.last_id").unwrap().as_deref(), Some("7"));
        // An item the store refuses (no recipient) fails the whole put: the mark stays.
        let bad = db.spool_put_with_settings(
            vec![(spooled("digest", "e@x.example"), b"two".to_vec()), (spooled("digest", ""), b"three".to_vec())],
            vec![("digest.last_id".into(), "9".into())],
        );
        assert!(bad.is_err());
        assert_eq!(db.setting_get("digest.last_id").unwrap().as_deref(), Some("7"));
        assert_eq!(db.spool_list(None, 10).unwrap().len(), 1);
    });
}

#[test]
fn a_lease_has_one_holder_and_passes_on_when_it_runs_out_or_is_given_up() {
    each_backend(|open| {
        let (a, b) = (open(), open());
        assert!(a.lease_acquire("digest", "A", 1_000, 2_000).unwrap());
        assert!(!b.lease_acquire("digest", "B", 1_500, 2_500).unwrap(), "held by A");
        assert!(a.lease_acquire("digest", "A", 1_900, 2_900).unwrap(), "A renews");
        assert!(!b.lease_acquire("digest", "B", 2_000, 3_000).unwrap(), "renewed: still A's");
        assert!(b.lease_acquire("digest", "B", 2_900, 3_900).unwrap(), "run out: B takes it over");
        assert!(!a.lease_acquire("digest", "A", 2_950, 3_950).unwrap(), "A, back late, does not get it back");
        a.lease_release("digest", "A").unwrap();
        assert!(!a.lease_acquire("digest", "A", 3_000, 4_000).unwrap(), "A cannot give up what B holds");
        b.lease_release("digest", "B").unwrap();
        assert!(a.lease_acquire("digest", "A", 3_000, 4_000).unwrap(), "given up: free at once");
        // Many askers at the same moment: exactly one holds it.
        let won = std::thread::scope(|s| {
            let askers: Vec<_> = (0..8)
                .map(|i| {
                    let db = if i % 2 == 0 { a.clone() } else { b.clone() };
                    s.spawn(move || db.lease_acquire("race", &format!("n{i}"), 10, 20).unwrap())
                })
                .collect();
            askers.into_iter().map(|t| t.join().unwrap()).filter(|&w| w).count()
        });
        assert_eq!(won, 1);
    });
}
