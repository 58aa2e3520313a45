//! Throughput of the gateway database, measured and printed, not asserted (the machine decides the
//! figures): `cargo test -p mailsift-store --release --test gateway_throughput -- --nocapture`.
//!
//! It plays the gateway's load: 50 SMTP sessions each logging every message they finish with a dozen
//! symbols, one message in 20 also quarantined; then quarantine puts alone, concurrent and one at a time;
//! then one 30 MB message. What it does assert is that every row landed.
//!
//! Measured on the 2-core development machine while other builds ran (load average about 4), three runs:
//! 17,400-21,800 messages/s logged by the 50 sessions with 5% quarantined; 18,000-22,400 log rows/s alone;
//! quarantine puts (50 KB, fsynced) 1,050-2,000/s from 8 callers sharing commits and 250-310/s from one
//! caller waiting for each fsync; a 30 MB message put in 0.14-0.21 s and read back in 0.04-0.06 s. Under
//! strace, 8,000 log rows cost 9 fsyncs in all (file creation and checkpoints), six quarantine puts 15.
//! Log rows each waited for until fsynced (what the gateway does before answering, since the spool work of
//! 2026-12): 8,900-13,600 rows/s from 50 sessions, 0.33-0.44 of the queued rate in the same run (three runs,
//! load average about 2.3).

use std::time::Instant;

use mailsift_store::{Database, LogEntry, LogQuery, NewQuarantine, QuarantineQuery};

const SESSIONS: usize = 50;
const MESSAGES_PER_SESSION: usize = 400;
const SYMBOLS: [&str; 24] = [
    "SPF_PASS",
    "SPF_FAIL",
    "DKIM_VALID",
    "DKIM_FAIL",
    "DMARC_PASS",
    "DMARC_FAIL",
    "ARC_VALID",
    "RDNS_NONE",
    "HELO_NOT_FQDN",
    "BAYES_HAM",
    "BAYES_SPAM",
    "LINEAR_SPAM",
    "URL_SHORTENER",
    "HTML_ONLY",
    "MIME_MISMATCH",
    "SUBJECT_ALL_CAPS",
    "FROM_DISPLAY_SPOOF",
    "REPUTATION_IP_BAD",
    "REPUTATION_DOMAIN_BAD",
    "RBL_LISTED",
    "ATTACHMENT_EXE",
    "PHISH_LOGIN_FORM",
    "GTUBE",
    "MISSING_DATE",
];

fn entry(session: usize, i: usize) -> LogEntry {
    LogEntry {
        reference_id: format!("{session:02}-{i:05}-4f2a9c"),
        time: 1_800_000_000 + i as i64,
        direction: "inbound".into(),
        client_ip: Some(format!("192.0.2.{}", session + 1)),
        helo: Some(format!("mx{session}.sender.example")),
        mail_from: Some(format!("newsletter-{i}@sender.example")),
        recipients: vec![format!("user{i}@example.net"), "team@example.net".into()],
        from_header: Some("\"Sender Newsletter\" <news@sender.example>".into()),
        subject: Some(format!("Your weekly digest, issue {i}")),
        message_id: Some(format!("<{session}.{i}@sender.example>")),
        size: 24_000 + i as u64,
        score: Some(2.5),
        required: Some(6.0),
        symbols: (0..12).map(|k| (SYMBOLS[(i + k * 7) % SYMBOLS.len()].to_string(), 0.25 * k as f64)).collect(),
        action: "deliver".into(),
        stage: "data".into(),
        reason: None,
        next_hop_response: Some("250 2.0.0 Ok: queued as 4F2A9C".into()),
    }
}

fn held(reference_id: String, size: usize) -> NewQuarantine {
    NewQuarantine {
        reference_id,
        time: 1_800_000_000,
        recipients: vec!["bob@example.net".into(), "carol@example.net".into()],
        mail_from: Some("promo@offers.example".into()),
        subject: Some("You won".into()),
        score: 9.0,
        reason: "score 9 >= 8".into(),
        size: size as u64,
        direction: "inbound".into(),
        ..NewQuarantine::default()
    }
}

/// Mail-like bytes: repetitive headers and text, some noise, so zstd has real work.
fn message(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed | 1;
    while out.len() < len {
        out.extend_from_slice(b"Dear customer, your account statement is attached. Kind regards.\r\n");
        for _ in 0..24 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(b'A' + (x % 26) as u8);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.truncate(len);
    out
}

#[test]
fn gateway_database_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();

    // 50 sessions logging, one message in 20 quarantined (30 KB, two recipients).
    let start = Instant::now();
    std::thread::scope(|s| {
        for session in 0..SESSIONS {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..MESSAGES_PER_SESSION {
                    db.log_append(entry(session, i)).unwrap();
                    if i % 20 == 0 {
                        let raw = message(30_000, (session * 10_000 + i) as u64);
                        db.quarantine_put(&held(format!("{session}-{i}"), raw.len()), &raw).unwrap();
                    }
                }
            });
        }
    });
    db.flush().unwrap();
    let mixed = start.elapsed().as_secs_f64();
    let logged = SESSIONS * MESSAGES_PER_SESSION;
    let quarantined = SESSIONS * MESSAGES_PER_SESSION.div_ceil(20);
    eprintln!(
        "{SESSIONS} sessions: {logged} log rows (12 symbols each) + {quarantined} quarantine puts (30 KB) in {mixed:.2} s: \
         {:.0} messages/s",
        logged as f64 / mixed
    );

    // Log rows alone, appended as fast as 50 threads can.
    let start = Instant::now();
    std::thread::scope(|s| {
        for session in 0..SESSIONS {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..MESSAGES_PER_SESSION {
                    db.log_append(entry(session, MESSAGES_PER_SESSION + i)).unwrap();
                }
            });
        }
    });
    db.flush().unwrap();
    let logs = start.elapsed().as_secs_f64();
    eprintln!("log rows alone: {logged} in {logs:.2} s: {:.0} rows/s", logged as f64 / logs);

    // Log rows each waited for until committed and fsynced, as the gateway does before it answers 250: the
    // 50 sessions share the fsyncs (group commit). Compare with "log rows alone" above.
    let start = Instant::now();
    std::thread::scope(|s| {
        for session in 0..SESSIONS {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..MESSAGES_PER_SESSION {
                    db.log_append_durable(entry(session, 2 * MESSAGES_PER_SESSION + i)).unwrap();
                }
            });
        }
    });
    let durable = start.elapsed().as_secs_f64();
    eprintln!(
        "log rows waited for (fsynced), 50 sessions: {logged} in {durable:.2} s: {:.0} rows/s ({:.2} of queued)",
        logged as f64 / durable,
        logs / durable
    );

    // Quarantine puts: 8 concurrent callers (group commit shares the fsyncs), then one at a time.
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8 {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..40 {
                    let raw = message(50_000, (t * 1_000 + i) as u64);
                    db.quarantine_put(&held(format!("c{t}-{i}"), raw.len()), &raw).unwrap();
                }
            });
        }
    });
    let concurrent = start.elapsed().as_secs_f64();
    eprintln!("quarantine puts, 8 callers: 320 x 50 KB in {concurrent:.2} s: {:.0} puts/s", 320.0 / concurrent);
    let start = Instant::now();
    for i in 0..100 {
        let raw = message(50_000, 77_000 + i);
        db.quarantine_put(&held(format!("s{i}"), raw.len()), &raw).unwrap();
    }
    let sequential = start.elapsed().as_secs_f64();
    eprintln!("quarantine puts, 1 caller: 100 x 50 KB in {sequential:.2} s: {:.0} puts/s", 100.0 / sequential);

    let big = message(30 * 1024 * 1024, 5);
    let start = Instant::now();
    let ids = db.quarantine_put(&held("big".into(), big.len()), &big).unwrap();
    let put = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let back = db.quarantine_raw(ids[0]).unwrap().unwrap();
    let read = start.elapsed().as_secs_f64();
    assert!(back == big, "30 MB message differs after the round trip");
    eprintln!("one 30 MB message: put {put:.2} s, read back {read:.2} s");

    let start = Instant::now();
    let found = db.log_search(&LogQuery { symbol: Some("GTUBE".into()), ..LogQuery::default() }).unwrap();
    eprintln!("symbol search over {} rows: {:.3} s", 3 * logged, start.elapsed().as_secs_f64());
    assert_eq!(found.len(), 100);

    let all = db.log_search(&LogQuery { limit: 1_000_000, ..LogQuery::default() }).unwrap();
    assert_eq!(all.len(), 3 * logged);
    let held_rows = db.quarantine_list(&QuarantineQuery { limit: 1_000_000, ..QuarantineQuery::default() }).unwrap();
    assert_eq!(held_rows.len(), 2 * (quarantined + 320 + 100 + 1));
    let size = std::fs::metadata(db.path()).unwrap().len();
    eprintln!("file: {:.1} MB", size as f64 / 1e6);
}
