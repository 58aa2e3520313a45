//! The dashboard's figures on a real SQLite file: messages per hour by action, the symbols that fired most,
//! the senders refused most and the quarantine's size, for everything and for a domain administrator's
//! domains; and the report submissions per day from the classifier store.

use mailsift_engine::classify::Side;
use mailsift_store::{Database, HourlyCount, LogEntry, NewQuarantine, SqliteStore, Submission, TokenStore};

/// The start of an hour (and of a day).
const H0: i64 = 1_800_000_000 - 1_800_000_000 % 86_400;

fn entry(time: i64, action: &str, mail_from: Option<&str>, ip: &str, rcpt: &str, symbols: &[(&str, f64)]) -> LogEntry {
    LogEntry {
        reference_id: format!("r{time}"),
        time,
        direction: "inbound".into(),
        client_ip: Some(ip.into()),
        mail_from: mail_from.map(str::to_string),
        recipients: vec![rcpt.into()],
        size: 100,
        symbols: symbols.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        action: action.into(),
        stage: "data".into(),
        ..LogEntry::default()
    }
}

fn hourly(hour: i64, action: &str, count: u64) -> HourlyCount {
    HourlyCount { hour, action: action.into(), count }
}

fn owned(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Runs `body` on a fresh database of each backend: SQLite in a temporary directory, then PostgreSQL (a
/// private server; without it installed only SQLite runs, and under CI=true the test fails).
fn each_backend(body: impl Fn(Database)) {
    let dir = tempfile::tempdir().unwrap();
    body(Database::open_in(dir.path()).unwrap());
    if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
        body(Database::open_postgres(&mailsift_store::pg::PgConfig::new(pg.url())).unwrap());
    }
}

fn filled(db: Database) -> Database {
    let net = "bob@example.net";
    let org = "ann@example.org";
    for e in [
        // Before the window: never counted.
        entry(H0 - 1, "reject", Some("old@spam.example"), "192.0.2.1", net, &[("RBL_LISTED", 3.0)]),
        // Hour 0.
        entry(H0, "deliver", Some("a@ok.example"), "192.0.2.2", net, &[("SPF_PASS", -0.5), ("BAYES_SPAM", 1.0)]),
        entry(H0 + 10, "deliver", Some("a@ok.example"), "192.0.2.2", org, &[("BAYES_SPAM", 2.0), ("BAYES_SPAM", 0.5)]),
        entry(H0 + 20, "reject", Some("x@spam.example"), "192.0.2.3", net, &[("RBL_LISTED", 3.0), ("BAYES_SPAM", 4.0)]),
        // Hour 1.
        entry(H0 + 3_600, "reject", Some("x@spam.example"), "192.0.2.3", org, &[("RBL_LISTED", 3.0)]),
        entry(H0 + 3_700, "refused", None, "198.51.100.9", net, &[]),
        entry(H0 + 3_800, "refused", Some(""), "198.51.100.9", net, &[]),
        entry(H0 + 3_900, "quarantine", Some("y@spam.example"), "192.0.2.4", net, &[("PHISH_LOGIN_FORM", 6.0)]),
        // Hour 3 (nothing in hour 2).
        entry(H0 + 3 * 3_600 + 5, "refused", Some("x@spam.example"), "192.0.2.3", net, &[("SPF_FAIL", 0.0)]),
    ] {
        db.log_append(e).unwrap();
    }
    db.flush().unwrap();
    db
}

#[test]
fn messages_per_hour_by_action_for_everything_and_for_one_domain() {
    each_backend(|db| {
        let db = filled(db);
        assert_eq!(
            db.stats_hourly(H0, &[]).unwrap(),
            [
                hourly(H0, "deliver", 2),
                hourly(H0, "reject", 1),
                hourly(H0 + 3_600, "quarantine", 1),
                hourly(H0 + 3_600, "refused", 2),
                hourly(H0 + 3_600, "reject", 1),
                hourly(H0 + 3 * 3_600, "refused", 1),
            ]
        );
        assert_eq!(
            db.stats_hourly(H0, &["Example.ORG".into()]).unwrap(),
            [hourly(H0, "deliver", 1), hourly(H0 + 3_600, "reject", 1)]
        );
        assert_eq!(db.stats_hourly(H0 + 4 * 3_600, &[]).unwrap(), []);
        assert_eq!(db.stats_hourly(H0, &["nowhere.example".into()]).unwrap(), []);
    });
}

#[test]
fn top_symbols_count_messages_where_a_symbol_added_to_the_score() {
    each_backend(|db| {
        let db = filled(db);
        // BAYES_SPAM twice in one message counts once; SPF_PASS (negative) and SPF_FAIL (zero) not at all; the
        // RBL_LISTED hit before the window is not counted.
        assert_eq!(
            db.stats_top_symbols(H0, 10, &[]).unwrap(),
            owned(&[("BAYES_SPAM", 3), ("RBL_LISTED", 2), ("PHISH_LOGIN_FORM", 1)])
        );
        assert_eq!(db.stats_top_symbols(H0, 2, &[]).unwrap(), owned(&[("BAYES_SPAM", 3), ("RBL_LISTED", 2)]));
        assert_eq!(
            db.stats_top_symbols(H0, 10, &["example.org".into()]).unwrap(),
            owned(&[("BAYES_SPAM", 1), ("RBL_LISTED", 1)])
        );
        assert_eq!(db.stats_top_symbols(H0 - 1, 1, &[]).unwrap(), owned(&[("BAYES_SPAM", 3)]));
        assert_eq!(db.stats_top_symbols(H0 - 1, 10, &[]).unwrap()[1], ("RBL_LISTED".to_string(), 3));
    });
}

#[test]
fn top_refused_senders_by_envelope_sender_or_client_address() {
    each_backend(|db| {
        let db = filled(db);
        // Rejected and refused only; an empty or absent sender is counted by its client address.
        assert_eq!(
            db.stats_top_refused_senders(H0, 10, &[]).unwrap(),
            owned(&[("x@spam.example", 3), ("198.51.100.9", 2)])
        );
        assert_eq!(db.stats_top_refused_senders(H0, 1, &[]).unwrap(), owned(&[("x@spam.example", 3)]));
        assert_eq!(
            db.stats_top_refused_senders(H0 - 1, 10, &[]).unwrap(),
            owned(&[("x@spam.example", 3), ("198.51.100.9", 2), ("old@spam.example", 1)])
        );
        assert_eq!(
            db.stats_top_refused_senders(H0, 10, &["example.org".into()]).unwrap(),
            owned(&[("x@spam.example", 1)])
        );
    });
}

#[test]
fn quarantine_size_held_or_all_and_by_domain() {
    each_backend(|db| {
        let put = |rcpts: &[&str]| {
            let item = NewQuarantine {
                reference_id: "q".into(),
                time: H0,
                recipients: rcpts.iter().map(|r| r.to_string()).collect(),
                reason: "score".into(),
                direction: "inbound".into(),
                ..NewQuarantine::default()
            };
            db.quarantine_put(&item, b"x").unwrap()
        };
        let a = put(&["bob@example.net", "ann@Example.ORG"]);
        put(&["carol@example.net"]);
        put(&["dave@example.net.evil"]);
        assert_eq!(db.quarantine_count(true, &[]).unwrap(), 4);
        assert!(db.quarantine_claim_release(a[0], H0 + 1).unwrap());
        assert_eq!(db.quarantine_count(true, &[]).unwrap(), 3);
        assert_eq!(db.quarantine_count(false, &[]).unwrap(), 4);
        assert_eq!(db.quarantine_count(true, &["example.net".into()]).unwrap(), 1);
        assert_eq!(db.quarantine_count(false, &["example.net".into()]).unwrap(), 2);
        assert_eq!(db.quarantine_count(false, &["example.org".into(), "example.net".into()]).unwrap(), 3);
        assert_eq!(db.quarantine_count(false, &[" ".into()]).unwrap(), 0);
    });
}

#[test]
fn report_submissions_per_day_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open_dir(dir.path()).unwrap();
    let day = 86_400;
    for (at, side) in [
        (H0 - 1, Side::Spam),
        (H0, Side::Ham),
        (H0 + 100, Side::Spam),
        (H0 + day - 1, Side::Ham),
        (H0 + 2 * day + 7, Side::Spam),
    ] {
        store
            .record_submission(&Submission {
                at,
                correct_side: side,
                previous_side: None,
                digest: [at as u8; 16],
                source: "test".into(),
                channel: "cli".into(),
                reporter: None,
                sender_domain: None,
            })
            .unwrap();
    }
    assert_eq!(
        store.submissions_per_day(H0).unwrap(),
        [(H0, Side::Ham, 2), (H0, Side::Spam, 1), (H0 + 2 * day, Side::Spam, 1)]
    );
    assert_eq!(store.submissions_per_day(H0 - 1).unwrap()[0], (H0 - day, Side::Spam, 1));
    assert_eq!(store.submissions_per_day(H0 + 3 * day).unwrap(), []);
}
