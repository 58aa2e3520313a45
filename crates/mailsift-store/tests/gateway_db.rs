//! The gateway database on a real SQLite file: the schema is created and survives restarts, the message log
//! takes appends from many threads and answers searches, the quarantine keeps each message byte for byte
//! once per put, releases happen once, and purges leave nothing behind.

use std::collections::BTreeSet;
use std::path::Path;

use mailsift_store::gateway::{FILE_NAME, SCHEMA_VERSION};
use mailsift_store::{Database, LogEntry, LogQuery, NewQuarantine, QuarantineQuery};

const T0: i64 = 1_800_000_000;

fn entry(reference_id: &str, time: i64) -> LogEntry {
    LogEntry {
        reference_id: reference_id.into(),
        time,
        direction: "inbound".into(),
        client_ip: Some("192.0.2.10".into()),
        helo: Some("mail.example.org".into()),
        mail_from: Some("alice@example.org".into()),
        recipients: vec!["bob@example.net".into()],
        from_header: Some("Alice <alice@example.org>".into()),
        subject: Some("Lunch on Friday".into()),
        message_id: Some(format!("<{reference_id}@example.org>")),
        size: 2_345,
        score: Some(1.5),
        required: Some(6.0),
        symbols: vec![("SPF_PASS".into(), -0.1), ("DKIM_VALID".into(), -0.2)],
        action: "deliver".into(),
        stage: "data".into(),
        reason: None,
        next_hop_response: Some("250 2.0.0 Ok: queued as 4F2".into()),
    }
}

fn held(reference_id: &str, time: i64, recipients: &[&str]) -> NewQuarantine {
    NewQuarantine {
        reference_id: reference_id.into(),
        time,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        mail_from: Some("promo@offers.example".into()),
        from_header: Some("Offers <promo@offers.example>".into()),
        subject: Some("You won".into()),
        score: 9.25,
        reason: "score 9.25 >= 8".into(),
        size: 100,
        direction: "inbound".into(),
    }
}

fn refs(entries: &[LogEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.reference_id.as_str()).collect()
}

/// A count straight from the file, as the sqlite3 shell would see it.
fn count(path: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

/// Bytes that are not text in any charset and do not compress: every byte value, then noise.
fn garbage(len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = (0..=255u8).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x >> 24) as u8);
    }
    out.truncate(len);
    out
}

/// A mail-like message of about `len` bytes: headers, 8-bit body text, a base64-looking attachment.
fn big_message(len: usize) -> Vec<u8> {
    let mut out = b"Received: from mail.example.org ([192.0.2.10])\r\nFrom: Alice <alice@example.org>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=latin1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe aus K\xf6ln\r\n--b\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let noise = garbage(len / 2);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut line = 0;
    for b in noise {
        out.push(alphabet[(b & 63) as usize]);
        line += 1;
        if line == 76 {
            out.extend_from_slice(b"\r\n");
            line = 0;
        }
        if out.len() >= len - 8 {
            break;
        }
    }
    out.extend_from_slice(b"\r\n--b--\r\n");
    out
}

#[test]
fn a_database_is_shared_between_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Database>();
}

#[test]
fn a_new_file_is_created_migrated_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("var").join("mailsift");
    let path = data_dir.join(FILE_NAME);
    {
        let db = Database::open_in(&data_dir).unwrap();
        assert_eq!(db.path(), path);
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        db.log_append(entry("before-restart", T0)).unwrap();
        db.quarantine_put(&held("q-before", T0, &["bob@example.net"]), b"Subject: x\r\n\r\nheld\r\n").unwrap();
        // No flush: dropping the last handle commits what was queued.
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    drop(conn);

    let db = Database::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.log_get("before-restart").unwrap(), Some(entry("before-restart", T0)));
    let items = db.quarantine_list(&QuarantineQuery::default()).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(db.quarantine_raw(items[0].id).unwrap().unwrap(), b"Subject: x\r\n\r\nheld\r\n");
}

#[test]
fn a_file_from_a_newer_mailsift_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(conn);
    let e = Database::open(&path).unwrap_err().to_string();
    assert!(e.contains("newer than this mailsift"), "{e}");
    assert!(e.contains(FILE_NAME), "{e}");
}

#[test]
fn log_entries_round_trip_and_are_found_by_each_filter() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();

    let a = entry("a", T0);
    let mut b = entry("b", T0 + 10);
    b.client_ip = Some("2001:db8::25".into());
    b.mail_from = Some("Billing@Shop.Example".into());
    b.from_header = Some("\"Служба\" <noreply@shop.example>".into());
    b.recipients = vec!["carol@example.net".into(), "Dave@Example.NET".into()];
    b.subject = Some("Ваш ЗАКАЗ отправлен".into());
    b.symbols = vec![("DKIM_FAIL".into(), 2.0), ("BAYES_SPAM".into(), 3.5), ("DKIM_FAIL".into(), 0.5)];
    b.score = Some(6.0);
    b.action = "quarantine".into();
    b.reason = Some("score 6 >= 6".into());
    b.next_hop_response = None;
    let mut c = entry("c", T0 + 20);
    c.mail_from = None;
    c.from_header = None;
    c.subject = None;
    c.helo = None;
    c.client_ip = Some("198.51.100.7".into());
    c.recipients = vec![];
    c.symbols = vec![];
    c.score = None;
    c.required = None;
    c.action = "refused".into();
    c.stage = "connect".into();
    c.reason = Some("client on a blocklist".into());
    c.size = u64::MAX;
    let mut d = entry("d", T0 + 30);
    d.direction = "outbound".into();
    d.symbols = vec![("DKIM".into(), 0.0)];
    d.score = Some(f64::NAN);
    for e in [&a, &b, &c, &d] {
        db.log_append(e.clone()).unwrap();
    }
    db.flush().unwrap();

    assert_eq!(db.log_get("a").unwrap().as_ref(), Some(&a));
    assert_eq!(db.log_get("b").unwrap().as_ref(), Some(&b));
    assert_eq!(db.log_get("c").unwrap().as_ref(), Some(&c));
    // SQLite has no NaN: a NaN score comes back as no score.
    assert_eq!(db.log_get("d").unwrap().unwrap().score, None);
    assert_eq!(db.log_get("nope").unwrap(), None);

    let search = |q: LogQuery| refs(&db.log_search(&q).unwrap()).join(",");
    assert_eq!(search(LogQuery::default()), "d,c,b,a", "newest first");
    assert_eq!(search(LogQuery { limit: 2, ..LogQuery::default() }), "d,c");
    assert_eq!(search(LogQuery { sender: Some("billing@shop".into()), ..LogQuery::default() }), "b");
    assert_eq!(search(LogQuery { sender: Some("служба".into()), ..LogQuery::default() }), "b", "From header too");
    assert_eq!(search(LogQuery { sender: Some("ALICE".into()), ..LogQuery::default() }), "d,a");
    assert_eq!(search(LogQuery { sender: Some("  ".into()), ..LogQuery::default() }), "d,c,b,a", "blank = no filter");
    assert_eq!(search(LogQuery { recipient: Some("dave@example.net".into()), ..LogQuery::default() }), "b");
    assert_eq!(search(LogQuery { recipient: Some("EXAMPLE.NET".into()), ..LogQuery::default() }), "d,b,a");
    // A match must lie inside one recipient, not across the stored list.
    assert_eq!(search(LogQuery { recipient: Some("net\",\"dave".into()), ..LogQuery::default() }), "");
    assert_eq!(search(LogQuery { subject: Some("заказ".into()), ..LogQuery::default() }), "b");
    assert_eq!(search(LogQuery { subject: Some("lunch".into()), ..LogQuery::default() }), "d,a");
    assert_eq!(search(LogQuery { client_ip: Some("2001:db8::25".into()), ..LogQuery::default() }), "b");
    assert_eq!(search(LogQuery { client_ip: Some("192.0.2".into()), ..LogQuery::default() }), "", "exact");
    assert_eq!(search(LogQuery { action: Some("refused".into()), ..LogQuery::default() }), "c");
    assert_eq!(search(LogQuery { action: Some("deliver".into()), ..LogQuery::default() }), "d,a");
    assert_eq!(search(LogQuery { symbol: Some("DKIM_FAIL".into()), ..LogQuery::default() }), "b");
    assert_eq!(search(LogQuery { symbol: Some("DKIM".into()), ..LogQuery::default() }), "d", "exact name");
    assert_eq!(search(LogQuery { symbol: Some("SPF_PASS".into()), ..LogQuery::default() }), "a");
    assert_eq!(search(LogQuery { symbol: Some("NEVER_FIRED".into()), ..LogQuery::default() }), "");
    assert_eq!(search(LogQuery { since: Some(T0 + 10), ..LogQuery::default() }), "d,c,b");
    assert_eq!(search(LogQuery { until: Some(T0 + 10), ..LogQuery::default() }), "b,a");
    assert_eq!(search(LogQuery { since: Some(T0 + 10), until: Some(T0 + 20), ..LogQuery::default() }), "c,b");
    assert_eq!(search(LogQuery { reference_id: Some("c".into()), ..LogQuery::default() }), "c");
    assert_eq!(
        search(LogQuery { sender: Some("alice".into()), until: Some(T0 + 5), ..LogQuery::default() }),
        "a",
        "filters combine"
    );
    // Entries come back whole from a search too.
    assert_eq!(db.log_search(&LogQuery { symbol: Some("BAYES_SPAM".into()), ..LogQuery::default() }).unwrap(), [b]);
}

#[test]
fn log_get_returns_the_newest_entry_of_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let mut first = entry("same", T0);
    first.action = "tempfail".into();
    db.log_append(first).unwrap();
    db.log_append(entry("same", T0 + 60)).unwrap();
    db.flush().unwrap();
    assert_eq!(db.log_get("same").unwrap().unwrap().action, "deliver");
}

#[test]
fn log_purge_removes_old_entries_and_their_symbols_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    // More than one purge chunk (5,000) of old entries.
    for i in 0..12_001 {
        db.log_append(entry(&format!("old-{i}"), T0 - 1_000 + i % 1_000)).unwrap();
    }
    for i in 0..3 {
        let mut e = entry(&format!("new-{i}"), T0 + i);
        e.symbols.push(("KEPT".into(), 1.0));
        db.log_append(e).unwrap();
    }
    db.flush().unwrap();
    assert_eq!(count(db.path(), "message_log_symbols"), 12_004 * 2 + 3);

    assert_eq!(db.log_purge(T0).unwrap(), 12_001);
    assert_eq!(db.log_purge(T0).unwrap(), 0);
    let left = db.log_search(&LogQuery { limit: 100_000, ..LogQuery::default() }).unwrap();
    assert_eq!(refs(&left), ["new-2", "new-1", "new-0"]);
    assert_eq!(count(db.path(), "message_log_symbols"), 3 * 3);
    assert_eq!(db.log_search(&LogQuery { symbol: Some("SPF_PASS".into()), ..LogQuery::default() }).unwrap().len(), 3);
}

#[test]
fn a_quarantined_message_is_stored_once_for_two_recipients_and_comes_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let raw = big_message(5 * 1024 * 1024);
    let mut item = held("q1", T0, &["bob@example.net", "carol@example.net"]);
    item.size = raw.len() as u64;
    let ids = db.quarantine_put(&item, &raw).unwrap();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for (id, rcpt) in ids.iter().zip(&item.recipients) {
        let got = db.quarantine_get(*id).unwrap().unwrap();
        assert_eq!(got.id, *id);
        assert_eq!(&got.recipient, rcpt);
        assert_eq!(got.reference_id, "q1");
        assert_eq!(got.mail_from, item.mail_from);
        assert_eq!(got.from_header, item.from_header);
        assert_eq!(got.subject, item.subject);
        assert_eq!(got.score, 9.25);
        assert_eq!(got.reason, item.reason);
        assert_eq!(got.size, raw.len() as u64);
        assert_eq!(got.direction, "inbound");
        assert_eq!(got.released_at, None);
        let back = db.quarantine_raw(*id).unwrap().unwrap();
        assert!(back == raw, "5 MB message differs after the round trip");
    }
    assert_eq!(count(db.path(), "quarantine_raw"), 1);
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let (encoding, stored): (String, i64) = conn
        .query_row("SELECT encoding, length(data) FROM quarantine_raw", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(encoding, "zstd");
    assert!((stored as usize) < raw.len() * 9 / 10, "stored {stored} of {}", raw.len());

    // Bytes that compress to nothing are kept as they are, exactly.
    for len in [0, 1, 256, 70_000] {
        let raw = garbage(len);
        let ids = db.quarantine_put(&held(&format!("g{len}"), T0, &["bob@example.net"]), &raw).unwrap();
        assert_eq!(db.quarantine_raw(ids[0]).unwrap().unwrap(), raw, "garbage of {len} bytes");
    }
    // 8-bit text that does compress.
    let latin1: Vec<u8> = (0..20_000).map(|i| [b'K', 0xf6, b'l', b'n', 0xe9, 0x00, b'\r', b'\n'][i % 8]).collect();
    let ids = db.quarantine_put(&held("latin1", T0, &["bob@example.net"]), &latin1).unwrap();
    assert_eq!(db.quarantine_raw(ids[0]).unwrap().unwrap(), latin1);

    assert_eq!(db.quarantine_get(999_999).unwrap(), None);
    assert_eq!(db.quarantine_raw(999_999).unwrap(), None);
    let e = db.quarantine_put(&held("none", T0, &[]), b"x").unwrap_err().to_string();
    assert!(e.contains("no recipients"), "{e}");
}

#[test]
fn the_quarantine_is_listed_newest_first_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let a = db.quarantine_put(&held("a", T0, &["bob@example.net", "carol@example.net"]), b"a").unwrap();
    let mut other = held("b", T0 + 100, &["Dave@Example.NET"]);
    other.mail_from = None;
    other.from_header = Some("Bänk <security@bank.example>".into());
    other.subject = Some("Konto GESPERRT".into());
    let b = db.quarantine_put(&other, b"b").unwrap();
    let c = db.quarantine_put(&held("c", T0 + 200, &["bob@example.net"]), b"c").unwrap();

    let list = |q: QuarantineQuery| db.quarantine_list(&q).unwrap().iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(list(QuarantineQuery::default()), [c[0], b[0], a[1], a[0]]);
    assert_eq!(list(QuarantineQuery { limit: 1, ..QuarantineQuery::default() }), [c[0]]);
    assert_eq!(list(QuarantineQuery { recipient: Some("BOB@".into()), ..QuarantineQuery::default() }), [c[0], a[0]]);
    assert_eq!(list(QuarantineQuery { recipient: Some("dave".into()), ..QuarantineQuery::default() }), [b[0]]);
    assert_eq!(list(QuarantineQuery { sender: Some("bänk".into()), ..QuarantineQuery::default() }), [b[0]]);
    assert_eq!(
        list(QuarantineQuery { sender: Some("PROMO@".into()), ..QuarantineQuery::default() }),
        [c[0], a[1], a[0]]
    );
    assert_eq!(list(QuarantineQuery { subject: Some("gesperrt".into()), ..QuarantineQuery::default() }), [b[0]]);
    assert_eq!(list(QuarantineQuery { since: Some(T0 + 100), ..QuarantineQuery::default() }), [c[0], b[0]]);
    assert_eq!(list(QuarantineQuery { until: Some(T0 + 100), ..QuarantineQuery::default() }), [b[0], a[1], a[0]]);

    assert!(db.quarantine_claim_release(c[0], T0 + 300).unwrap());
    assert_eq!(list(QuarantineQuery::default()), [b[0], a[1], a[0]], "released items are hidden");
    let all = db.quarantine_list(&QuarantineQuery { include_released: true, ..QuarantineQuery::default() }).unwrap();
    assert_eq!(all.iter().map(|i| i.id).collect::<Vec<_>>(), [c[0], b[0], a[1], a[0]]);
    assert_eq!(all[0].released_at, Some(T0 + 300));
}

#[test]
fn releasing_twice_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let ids = db.quarantine_put(&held("r", T0, &["bob@example.net", "carol@example.net"]), b"r").unwrap();

    assert!(db.quarantine_claim_release(ids[0], T0 + 5).unwrap());
    assert!(!db.quarantine_claim_release(ids[0], T0 + 6).unwrap());
    assert_eq!(db.quarantine_get(ids[0]).unwrap().unwrap().released_at, Some(T0 + 5));
    // The other recipient's copy is untouched.
    assert_eq!(db.quarantine_get(ids[1]).unwrap().unwrap().released_at, None);

    // Delivery failed: put it back, and it can be claimed again.
    db.quarantine_unclaim_release(ids[0]).unwrap();
    assert_eq!(db.quarantine_get(ids[0]).unwrap().unwrap().released_at, None);
    assert!(db.quarantine_claim_release(ids[0], T0 + 7).unwrap());

    assert!(!db.quarantine_claim_release(424_242, T0).unwrap(), "absent");
    db.quarantine_unclaim_release(424_242).unwrap();

    // Many racing clicks, from this process and from another one on the same file: one winner.
    let other = Database::open(db.path()).unwrap();
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let db = if i % 2 == 0 { db.clone() } else { other.clone() };
                let id = ids[1];
                s.spawn(move || db.quarantine_claim_release(id, T0 + 10 + i).unwrap() as usize)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
}

#[test]
fn delete_and_purge_leave_no_unused_raw_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let two = db.quarantine_put(&held("two", T0, &["bob@example.net", "carol@example.net"]), b"shared").unwrap();
    assert!(db.quarantine_delete(two[0]).unwrap());
    assert!(!db.quarantine_delete(two[0]).unwrap());
    assert_eq!(db.quarantine_get(two[0]).unwrap(), None);
    assert_eq!(db.quarantine_raw(two[1]).unwrap().unwrap(), b"shared", "still held for the other recipient");
    assert_eq!(count(db.path(), "quarantine_raw"), 1);
    assert!(db.quarantine_delete(two[1]).unwrap());
    assert_eq!(count(db.path(), "quarantine_raw"), 0);

    let old = db.quarantine_put(&held("old", T0 - 100, &["bob@example.net", "carol@example.net"]), b"old").unwrap();
    let older = db.quarantine_put(&held("older", T0 - 200, &["dave@example.net"]), b"older").unwrap();
    let new = db.quarantine_put(&held("new", T0, &["bob@example.net"]), b"new").unwrap();
    // A raw message nothing refers to, whatever left it there.
    rusqlite::Connection::open(db.path())
        .unwrap()
        .execute("INSERT INTO quarantine_raw (encoding, size, data) VALUES ('identity', 1, x'00')", [])
        .unwrap();
    assert_eq!(count(db.path(), "quarantine_raw"), 4);

    assert_eq!(db.quarantine_purge(T0).unwrap(), 3);
    assert_eq!(count(db.path(), "quarantine_raw"), 1);
    for id in old.iter().chain(&older) {
        assert_eq!(db.quarantine_get(*id).unwrap(), None);
        assert_eq!(db.quarantine_raw(*id).unwrap(), None);
    }
    assert_eq!(db.quarantine_raw(new[0]).unwrap().unwrap(), b"new");

    // Ids are never handed out again after a delete (release links name them).
    let next = db.quarantine_put(&held("next", T0, &["bob@example.net"]), b"next").unwrap();
    assert!(next[0] > *old.iter().chain(&older).chain(&new).chain(&two).max().unwrap());
}

#[test]
fn appends_from_eight_threads_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..1_000 {
                    let mut e = entry(&format!("t{t}-{i}"), T0 + i);
                    e.symbols.push((format!("THREAD_{t}"), t as f64));
                    db.log_append(e).unwrap();
                }
            });
        }
    });
    db.flush().unwrap();
    let all = db.log_search(&LogQuery { limit: 100_000, ..LogQuery::default() }).unwrap();
    let unique: BTreeSet<&str> = refs(&all).into_iter().collect();
    assert_eq!(all.len(), 8_000);
    assert_eq!(unique.len(), 8_000);
    for t in 0..8 {
        let q = LogQuery { symbol: Some(format!("THREAD_{t}")), limit: 100_000, ..LogQuery::default() };
        let mine = db.log_search(&q).unwrap();
        assert_eq!(mine.len(), 1_000);
        assert!(mine.iter().all(|e| e.reference_id.starts_with(&format!("t{t}-"))));
    }
}

#[test]
fn a_second_database_on_the_same_file_sees_and_adds_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Database::open_in(dir.path()).unwrap();
    server.log_append(entry("from-server", T0)).unwrap();
    server.flush().unwrap();
    let held_id = server.quarantine_put(&held("q", T0, &["bob@example.net"]), b"held").unwrap()[0];

    let cli = Database::open_in(dir.path()).unwrap();
    assert_eq!(cli.log_get("from-server").unwrap(), Some(entry("from-server", T0)));
    assert_eq!(cli.quarantine_raw(held_id).unwrap().unwrap(), b"held");
    assert!(cli.quarantine_claim_release(held_id, T0 + 1).unwrap());
    assert_eq!(server.quarantine_get(held_id).unwrap().unwrap().released_at, Some(T0 + 1));

    // Both write at once: each one's writer waits for the other's lock, nothing is lost.
    std::thread::scope(|s| {
        for (name, db) in [("server", &server), ("cli", &cli)] {
            s.spawn(move || {
                for i in 0..2_000 {
                    db.log_append(entry(&format!("{name}-{i}"), T0 + i)).unwrap();
                    if i % 500 == 0 {
                        db.quarantine_put(&held(&format!("{name}-q{i}"), T0, &["bob@example.net"]), b"x").unwrap();
                    }
                }
                db.flush().unwrap();
            });
        }
    });
    let all = server.log_search(&LogQuery { limit: 100_000, ..LogQuery::default() }).unwrap();
    assert_eq!(all.len(), 4_001);
    assert_eq!(cli.quarantine_list(&QuarantineQuery { limit: 100, ..QuarantineQuery::default() }).unwrap().len(), 8);
}
