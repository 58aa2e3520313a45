//! The PostgreSQL backend against a real, private PostgreSQL (mailsift-testkit starts one per test on a
//! loopback port of its own). Without PostgreSQL installed these tests are skipped, and fail under CI=true.

use std::sync::Arc;

use mailsift_store::gateway::{NewQuarantine, QuarantineQuery};
use mailsift_store::pg::{PgConfig, PgStore};
use mailsift_store::StoreError;
use mailsift_testkit::postgres::Postgres;

/// One value of a query, as text, read with a connection of our own (not the store's).
fn ask(url: &str, sql: &str) -> String {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect for a check");
    let row = c.simple_query(sql).unwrap().into_iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(r) => {
            Some((0..r.len()).map(|i| r.get(i).unwrap_or("").to_string()).collect::<Vec<_>>().join("|"))
        }
        _ => None,
    });
    row.unwrap_or_default()
}

fn server() -> Option<Postgres> {
    Postgres::start()
}

fn store(pg: &Postgres, db: &str) -> PgStore {
    PgStore::open(&PgConfig::new(pg.create_database(db))).expect("open the store")
}

fn held(reference: &str, recipients: &[&str], time: i64) -> NewQuarantine {
    NewQuarantine {
        reference_id: reference.into(),
        time,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        mail_from: Some("Sender@Example.NET".into()),
        from_header: Some("Sender <sender@example.net>".into()),
        subject: Some("Ваш ЗАКАЗ".into()),
        score: 12.5,
        reason: "spam".into(),
        size: 42,
        direction: "inbound".into(),
    }
}

#[test]
fn the_schema_is_applied_once_when_nodes_start_together() {
    let Some(pg) = server() else { return };
    let url = pg.create_database("schema");
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&PgConfig::new(url)).map(|s| s.schema_version()))
        })
        .collect();
    for t in opened {
        assert_eq!(t.join().unwrap().unwrap().unwrap(), mailsift_store::pg::migrations::SCHEMA_VERSION);
    }
    let rows = ask(&url, "SELECT count(*), count(DISTINCT version) FROM mailsift_schema");
    let n = mailsift_store::pg::migrations::SCHEMA_VERSION;
    assert_eq!(rows, format!("{n}|{n}"));
}

#[test]
fn a_database_from_a_newer_mailsift_is_refused() {
    let Some(pg) = server() else { return };
    let url = pg.create_database("newer");
    drop(PgStore::open(&PgConfig::new(url.clone())).unwrap());
    ask(&url, "INSERT INTO mailsift_schema (version, name) VALUES (999, 'from the future')");
    let e = PgStore::open(&PgConfig::new(url)).unwrap_err().to_string();
    assert!(e.contains("newer than this mailsift"), "{e}");
}

#[test]
fn quarantined_messages_come_back_byte_for_byte_and_are_searchable() {
    let Some(pg) = server() else { return };
    let url = pg.create_database("quarantine");
    let s = PgStore::open(&PgConfig::new(url.clone())).unwrap();
    let raw: Vec<u8> = b"Subject: hi\r\n\r\n".iter().copied().chain((0..20_000u32).map(|i| (i % 251) as u8)).collect();
    let ids = s.quarantine_put(&held("r1", &["ann@corp.example", "Bob@Other.example"], 1_000), &raw).unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(s.quarantine_raw(ids[0]).unwrap().unwrap(), raw);
    assert_eq!(s.quarantine_raw(ids[1]).unwrap().unwrap(), raw);
    let item = s.quarantine_get(ids[1]).unwrap().unwrap();
    assert_eq!((item.recipient.as_str(), item.score, item.released_at), ("Bob@Other.example", 12.5, None));
    s.quarantine_put(&held("r2", &["carl@corp.example"], 2_000), b"Subject: two\r\n\r\nx").unwrap();

    let list = |q: QuarantineQuery| -> Vec<String> {
        s.quarantine_list(&q).unwrap().into_iter().map(|i| format!("{}:{}", i.reference_id, i.recipient)).collect()
    };
    assert_eq!(
        list(QuarantineQuery::default()),
        ["r2:carl@corp.example", "r1:Bob@Other.example", "r1:ann@corp.example"]
    );
    // Substrings and domains ignore case, beyond ASCII too.
    assert_eq!(list(QuarantineQuery { recipient: Some("BOB".into()), ..Default::default() }), ["r1:Bob@Other.example"]);
    assert_eq!(list(QuarantineQuery { subject: Some("заказ".into()), ..Default::default() }).len(), 3);
    assert_eq!(
        list(QuarantineQuery { domains: vec!["OTHER.example".into()], ..Default::default() }),
        ["r1:Bob@Other.example"]
    );
    // A scope of blanks matches nothing, never everything.
    assert!(list(QuarantineQuery { domains: vec![" ".into()], ..Default::default() }).is_empty());
    assert_eq!(
        list(QuarantineQuery { recipient_exact: Some("bob@other.EXAMPLE".into()), ..Default::default() }),
        ["r1:Bob@Other.example"]
    );
    assert_eq!(list(QuarantineQuery { since: Some(1_500), ..Default::default() }), ["r2:carl@corp.example"]);
    assert_eq!(list(QuarantineQuery { limit: 1, offset: 1, ..Default::default() }), ["r1:Bob@Other.example"]);

    // Released rows leave the default list; a failed delivery puts the row back.
    assert!(s.quarantine_claim_release(ids[0], 3_000).unwrap());
    assert_eq!(list(QuarantineQuery::default()).len(), 2);
    assert_eq!(list(QuarantineQuery { include_released: true, ..Default::default() }).len(), 3);
    s.quarantine_unclaim_release(ids[0]).unwrap();
    assert_eq!(list(QuarantineQuery::default()).len(), 3);

    // The message stays while one recipient's row refers to it.
    assert!(s.quarantine_delete(ids[0]).unwrap());
    assert!(!s.quarantine_delete(ids[0]).unwrap());
    assert_eq!(s.quarantine_raw(ids[1]).unwrap().unwrap(), raw);
    assert!(s.quarantine_delete(ids[1]).unwrap());
    assert_eq!(ask(&url, "SELECT count(*) FROM quarantine_raw"), "1");

    assert_eq!(s.quarantine_purge(2_001).unwrap(), 1);
    assert!(list(QuarantineQuery { include_released: true, ..Default::default() }).is_empty());
    assert_eq!(ask(&url, "SELECT count(*) FROM quarantine_raw"), "0");
}

#[test]
fn a_message_is_released_once_when_two_nodes_are_asked_at_the_same_moment() {
    let Some(pg) = server() else { return };
    let url = pg.create_database("release");
    // Two nodes: two stores, each with its own connections.
    let a = PgStore::open(&PgConfig::new(url.clone())).unwrap();
    let b = PgStore::open(&PgConfig::new(url)).unwrap();
    let ids: Vec<i64> = (0..50)
        .flat_map(|i| a.quarantine_put(&held(&format!("m{i}"), &["ann@corp.example"], i), b"x").unwrap())
        .collect();
    let ids = Arc::new(ids);
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let racers: Vec<_> = [a.clone(), a, b.clone(), b]
        .into_iter()
        .map(|node| {
            let (ids, barrier) = (ids.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                ids.iter().map(|&id| node.quarantine_claim_release(id, 9).unwrap()).collect::<Vec<bool>>()
            })
        })
        .collect();
    let won: Vec<Vec<bool>> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        let winners = won.iter().filter(|w| w[i]).count();
        assert_eq!(winners, 1, "row {id} was claimed by {winners} callers");
    }
}

#[test]
fn errors_name_the_server_and_never_the_password() {
    let Some(pg) = server() else { return };
    // Nothing listens on this port: a temporary failure, the password nowhere in the message.
    let closed = mailsift_testkit::quiet_loopback_port();
    let e = PgStore::open(&PgConfig::new(format!("postgresql://mailsift:s3cret@127.0.0.1:{}/x", closed.port())))
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{}", closed.port())) && !text.contains("s3cret"), "{text}");
    assert!(matches!(e, StoreError::Postgres { temporary: true, .. }), "{e:?}");
    // A database that does not exist is not temporary.
    let missing = pg.url().rsplit_once('/').unwrap().0.to_string() + "/no_such_database";
    let e = PgStore::open(&PgConfig::new(missing)).unwrap_err();
    assert!(matches!(e, StoreError::Postgres { temporary: false, .. }), "{e:?}");
}

#[test]
fn the_store_recovers_by_itself_after_a_server_restart() {
    let Some(mut pg) = server() else { return };
    let s = store(&pg, "restart");
    let id = s.quarantine_put(&held("before", &["ann@corp.example"], 1), b"kept").unwrap()[0];
    pg.stop();
    let e = s.quarantine_get(id).unwrap_err();
    assert!(matches!(e, StoreError::Postgres { temporary: true, .. }), "{e:?}");
    pg.start_again();
    // The broken connections are opened again by the next jobs: no restart of the gateway needed. Every
    // connection thread may hold a broken connection, so a few calls may still fail; they must stop failing.
    let mut answered = None;
    for _ in 0..50 {
        match s.quarantine_raw(id) {
            Ok(raw) => {
                answered = raw;
                break;
            }
            Err(e) => assert!(matches!(e, StoreError::Postgres { temporary: true, .. }), "{e:?}"),
        }
    }
    assert_eq!(answered.as_deref(), Some(&b"kept"[..]));
}

fn logged(reference: &str, time: i64, recipients: &[&str], symbols: &[(&str, f64)]) -> mailsift_store::LogEntry {
    mailsift_store::LogEntry {
        reference_id: reference.into(),
        time,
        direction: "inbound".into(),
        client_ip: Some("192.0.2.7".into()),
        mail_from: Some("news@Brand.example".into()),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        subject: Some("Ваш ЗАКАЗ готов".into()),
        size: 1234,
        score: Some(f64::NAN),
        required: Some(5.0),
        symbols: symbols.iter().map(|&(n, s)| (n.to_string(), s)).collect(),
        action: "deliver".into(),
        stage: "data".into(),
        ..Default::default()
    }
}

#[test]
fn the_message_log_keeps_every_entry_and_finds_it_as_sqlite_does() {
    use mailsift_store::LogQuery;
    let Some(pg) = server() else { return };
    let s = store(&pg, "msglog");
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..300i64 {
        let rcpt = if i % 3 == 0 { "Ann@Corp.example" } else { "bob@other.example" };
        let symbols: &[(&str, f64)] = if i % 10 == 0 { &[("BAYES_SPAM_99", 4.5), ("SPF_FAIL", 1.0)] } else { &[] };
        let e = logged(&format!("r{i}"), 1_000 + i, &[rcpt], symbols);
        if i % 2 == 0 {
            let tx = tx.clone();
            s.log_append_then(e, move |r| tx.send(r.is_ok()).unwrap()).unwrap();
        } else {
            s.log_append(e).unwrap();
        }
    }
    // Every durable row is confirmed, and only once committed.
    let confirmed: Vec<bool> = (0..150).map(|_| rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap()).collect();
    assert!(confirmed.iter().all(|&ok| ok));
    s.log_flush().unwrap();

    let got = s.log_get("r10").unwrap().unwrap();
    assert_eq!(got.recipients, ["bob@other.example"]);
    assert_eq!(got.symbols, [("BAYES_SPAM_99".to_string(), 4.5), ("SPF_FAIL".to_string(), 1.0)]);
    assert_eq!((got.score, got.required), (None, Some(5.0)), "a NaN score is stored as no score");
    assert!(s.log_get("absent").unwrap().is_none());

    let find = |q: LogQuery| -> Vec<String> { s.log_search(&q).unwrap().into_iter().map(|e| e.reference_id).collect() };
    assert_eq!(find(LogQuery { limit: 3, ..Default::default() }), ["r299", "r298", "r297"]);
    assert_eq!(find(LogQuery { symbol: Some("SPF_FAIL".into()), limit: 2, ..Default::default() }), ["r290", "r280"]);
    assert_eq!(find(LogQuery { symbol: Some("SPF_FAIL".into()), limit: 500, ..Default::default() }).len(), 30);
    assert_eq!(find(LogQuery { recipient: Some("ANN@corp".into()), limit: 500, ..Default::default() }).len(), 100);
    assert_eq!(find(LogQuery { domains: vec!["CORP.example".into()], limit: 500, ..Default::default() }).len(), 100);
    assert!(find(LogQuery { domains: vec!["  ".into()], ..Default::default() }).is_empty());
    assert_eq!(find(LogQuery { subject: Some("заказ".into()), limit: 500, ..Default::default() }).len(), 300);
    assert_eq!(find(LogQuery { since: Some(1_290), until: Some(1_291), ..Default::default() }), ["r291", "r290"]);
    assert_eq!(find(LogQuery { reference_id: Some("r5".into()), ..Default::default() }), ["r5"]);

    assert_eq!(s.log_purge(1_100).unwrap(), 100);
    assert_eq!(find(LogQuery { limit: 500, ..Default::default() }).len(), 200);
}

#[test]
fn a_durable_log_row_is_refused_not_confirmed_while_the_server_is_down() {
    let Some(mut pg) = server() else { return };
    let s = store(&pg, "logdown");
    pg.stop();
    let (tx, rx) = std::sync::mpsc::channel();
    s.log_append_then(logged("lost?", 1, &["a@b.example"], &[]), move |r| tx.send(r).unwrap()).unwrap();
    let answer = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    assert!(matches!(answer, Err(StoreError::Postgres { temporary: true, .. })), "{answer:?}");
    assert!(s.log_flush().unwrap_err().to_string().contains("1 message log entries were lost"));
    pg.start_again();
    // The writer reconnects by itself.
    let mut ok = false;
    for _ in 0..20 {
        let (tx, rx) = std::sync::mpsc::channel();
        s.log_append_then(logged("after", 2, &["a@b.example"], &[]), move |r| tx.send(r.is_ok()).unwrap()).unwrap();
        if rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap() {
            ok = true;
            break;
        }
    }
    assert!(ok);
    assert!(s.log_get("after").unwrap().is_some());
}

#[test]
fn the_gateway_database_on_postgres_is_one_handle_shared_by_nodes() {
    let Some(pg) = server() else { return };
    let url = pg.create_database("facade");
    let db = mailsift_store::Database::open_postgres(&PgConfig::new(url.clone())).unwrap();
    assert_eq!(db.schema_version().unwrap(), mailsift_store::pg::migrations::SCHEMA_VERSION as u32);
    let ids = db.quarantine_put(&held("f1", &["ann@corp.example"], 5), b"Subject: f\r\n\r\nbody").unwrap();
    assert_eq!(db.quarantine_raw(ids[0]).unwrap().unwrap(), b"Subject: f\r\n\r\nbody");
    db.log_append_durable(logged("f1", 5, &["ann@corp.example"], &[("X", 1.0)])).unwrap();
    assert_eq!(db.log_get("f1").unwrap().unwrap().symbols, [("X".to_string(), 1.0)]);
    // Same database, another node: it sees the same rows.
    let other = mailsift_store::Database::open_postgres(&PgConfig::new(url)).unwrap();
    assert!(other.quarantine_claim_release(ids[0], 6).unwrap());
    assert!(!db.quarantine_claim_release(ids[0], 6).unwrap());
    // Every piece is on PostgreSQL: nothing reaches for a SQLite file.
    assert!(db.spool_list(None, 10).unwrap().is_empty());
    assert!(db.stats_top_symbols(0, 10, &[]).unwrap().iter().any(|(name, _)| name == "X"));
}

#[test]
fn accounts_settings_and_domains_are_shared_and_survive_a_server_restart() {
    use mailsift_store::{Database, Role};
    let Some(mut pg) = server() else { return };
    let url = pg.create_database("shared");
    let a = Database::open_postgres(&PgConfig::new(url.clone())).unwrap();
    let b = Database::open_postgres(&PgConfig::new(url.clone())).unwrap();
    a.account_add("root", Role::Admin, &[], "h", 1).unwrap();
    // Unique across nodes, ignoring case.
    assert!(matches!(b.account_add("ROOT", Role::Admin, &[], "x", 2), Err(StoreError::Exists { .. })));
    b.setting_put("digest.last_id", "41").unwrap();
    a.setting_put("digest.last_id", "42").unwrap();
    let version = || ask(&url, "SELECT version FROM policy_version");
    assert_eq!(version(), "0");
    a.domain_put(" Example.NET ", r#"{"next_hop":"mx.example.net"}"#, 3).unwrap();
    assert_eq!(version(), "1", "a domain's change is a policy change every node sees");
    assert!(!b.domain_remove("other.example").unwrap());
    assert_eq!(version(), "1", "nothing removed, nothing changed");

    pg.stop();
    pg.start_again();
    // A connection that sat idle through the restart is found dead on use and the read runs again on a
    // fresh one: the caller sees no error at all.
    let read = |db: &Database| db.account_get("Root").unwrap();
    assert_eq!(read(&b).unwrap().password_hash, "h");
    assert_eq!(b.setting_get("digest.last_id").unwrap().as_deref(), Some("42"));
    assert_eq!(b.setting_get("Digest.last_id").unwrap(), None, "keys are exact");
    assert_eq!(b.domains().unwrap(), [("example.net".to_string(), r#"{"next_hop":"mx.example.net"}"#.to_string())]);
    assert!(b.domain_remove("EXAMPLE.net").unwrap());
    assert_eq!(version(), "2");
    assert_eq!(a.domain_get("example.net").unwrap(), None);
}
