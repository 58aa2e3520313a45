//! The log and the quarantine as the web console asks for them: scoped to a domain administrator's domains,
//! to an end user's own address, paged, and (for the digest) only what is newer than a high-water mark; each
//! on SQLite and on a private PostgreSQL.

use mailsift_store::{Database, LogEntry, LogQuery, NewQuarantine, QuarantineQuery};

const T0: i64 = 1_800_000_000;

fn entry(reference_id: &str, time: i64, direction: &str, mail_from: &str, recipients: &[&str]) -> LogEntry {
    LogEntry {
        reference_id: reference_id.into(),
        time,
        direction: direction.into(),
        client_ip: Some("192.0.2.10".into()),
        mail_from: Some(mail_from.into()).filter(|s: &String| !s.is_empty()),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        subject: Some(format!("message {reference_id}")),
        size: 1_000,
        score: Some(1.0),
        action: "deliver".into(),
        stage: "data".into(),
        ..LogEntry::default()
    }
}

fn held(reference_id: &str, time: i64, recipients: &[&str]) -> NewQuarantine {
    NewQuarantine {
        reference_id: reference_id.into(),
        time,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        mail_from: Some("promo@offers.example".into()),
        from_header: None,
        subject: Some("You won".into()),
        score: 9.0,
        reason: "score 9 >= 8".into(),
        size: 10,
        direction: "inbound".into(),
    }
}

fn scope(ds: &[&str]) -> Vec<String> {
    ds.iter().map(|d| d.to_string()).collect()
}

/// Runs `body` on a fresh database of each backend: SQLite in a temporary directory, then a private
/// PostgreSQL (without it installed only SQLite runs, and under CI=true the test fails).
fn each_backend(body: impl Fn(Database)) {
    let dir = tempfile::tempdir().unwrap();
    body(Database::open_in(dir.path()).unwrap());
    if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
        body(Database::open_postgres(&mailsift_store::pg::PgConfig::new(pg.url())).unwrap());
    }
}

fn log_db(db: Database) -> Database {
    for e in [
        entry("in-net", T0, "inbound", "alice@sender.example", &["bob@example.net"]),
        entry("in-both", T0 + 1, "inbound", "alice@sender.example", &["x@other.example", "Carol@EXAMPLE.NET"]),
        entry("in-sub", T0 + 2, "inbound", "alice@sender.example", &["dave@mail.example.net"]),
        entry("in-lookalike", T0 + 3, "inbound", "alice@sender.example", &["eve@example.net.evil"]),
        entry("in-other", T0 + 4, "inbound", "bob@example.net", &["x@other.example"]),
        entry("out-net", T0 + 5, "outbound", "Bob@Example.Net", &["friend@far.example"]),
        entry("out-other", T0 + 6, "outbound", "x@other.example", &["friend@far.example"]),
        entry("refused", T0 + 7, "inbound", "", &[]),
        entry("in-unicode", T0 + 8, "inbound", "a@b.example", &["юлия@почта.рф"]),
        entry("in-local-at", T0 + 9, "inbound", "a@b.example", &["\"a@example.net\"@other.example"]),
    ] {
        db.log_append(e).unwrap();
    }
    db.flush().unwrap();
    db
}

fn refs(db: &Database, q: LogQuery) -> String {
    db.log_search(&q).unwrap().iter().map(|e| e.reference_id.clone()).collect::<Vec<_>>().join(",")
}

#[test]
fn a_domain_administrator_sees_mail_to_their_domains_and_outbound_mail_from_them() {
    each_backend(|db| {
        let db = log_db(db);
        let q = |ds: &[&str]| LogQuery { domains: scope(ds), ..LogQuery::default() };

        // A recipient in the domain (any of several, ignoring case), or outbound from it; not a subdomain, not a
        // look-alike, not inbound mail merely sent by someone of the domain.
        assert_eq!(refs(&db, q(&["example.net"])), "out-net,in-both,in-net");
        assert_eq!(refs(&db, q(&["EXAMPLE.NET"])), "out-net,in-both,in-net", "the scope ignores case too");
        assert_eq!(refs(&db, q(&["@example.net"])), "out-net,in-both,in-net", "a leading @ is the same domain");
        assert_eq!(refs(&db, q(&["mail.example.net"])), "in-sub");
        assert_eq!(refs(&db, q(&["example.net", "mail.example.net"])), "out-net,in-sub,in-both,in-net");
        assert_eq!(refs(&db, q(&["other.example"])), "in-local-at,out-other,in-other,in-both");
        assert_eq!(refs(&db, q(&["ПОЧТА.рф"])), "in-unicode");
        assert_eq!(refs(&db, q(&["nowhere.example"])), "");
        // An empty scope is no scope; a scope of blanks is nothing, never everything.
        assert_eq!(refs(&db, q(&[])).split(',').count(), 10);
        assert_eq!(refs(&db, q(&["", "  "])), "");
    });
}

#[test]
fn the_scope_combines_with_every_other_filter_and_pages() {
    each_backend(|db| {
        let db = log_db(db);
        let net = scope(&["example.net", "other.example"]);
        let q = |f: LogQuery| LogQuery { domains: net.clone(), ..f };
        assert_eq!(refs(&db, q(LogQuery { recipient: Some("carol".into()), ..LogQuery::default() })), "in-both");
        assert_eq!(refs(&db, q(LogQuery { sender: Some("bob@".into()), ..LogQuery::default() })), "out-net,in-other");
        assert_eq!(
            refs(&db, q(LogQuery { since: Some(T0 + 4), until: Some(T0 + 5), ..LogQuery::default() })),
            "out-net,in-other"
        );
        assert_eq!(
            refs(&db, q(LogQuery { subject: Some("MESSAGE IN-".into()), limit: 2, ..LogQuery::default() })),
            "in-local-at,in-other"
        );

        // Pages of two over the six entries in scope, newest first, without overlap or gap.
        let all = refs(&db, q(LogQuery::default()));
        assert_eq!(all, "in-local-at,out-other,out-net,in-other,in-both,in-net");
        let pages: Vec<String> =
            (0..4).map(|p| refs(&db, q(LogQuery { limit: 2, offset: p * 2, ..LogQuery::default() }))).collect();
        assert_eq!(pages, ["in-local-at,out-other", "out-net,in-other", "in-both,in-net", ""]);
        assert_eq!(
            refs(&db, LogQuery { offset: 8, ..LogQuery::default() }),
            "in-both,in-net",
            "offset without a scope"
        );
    });
}

#[test]
fn the_recipient_filter_still_matches_inside_one_recipient_only() {
    each_backend(|db| {
        let db = log_db(db);
        let q = |r: &str| refs(&db, LogQuery { recipient: Some(r.into()), ..LogQuery::default() });
        assert_eq!(q("CAROL@example"), "in-both");
        assert_eq!(q("example\",\"carol"), "", "not across the stored list");
        assert_eq!(q("\"a@example.net\"@"), "in-local-at", "quotes inside a recipient");
        assert_eq!(q("ЮЛИЯ"), "in-unicode");
    });
}

#[test]
fn quarantine_scopes_an_end_user_a_domain_and_a_digest_high_water_mark() {
    each_backend(|db| {
        let a = db.quarantine_put(&held("a", T0, &["Bob@Example.NET", "carol@example.net"]), b"a").unwrap();
        let b = db.quarantine_put(&held("b", T0 + 10, &["bob@example.net.evil", "x@other.example"]), b"b").unwrap();
        let c = db.quarantine_put(&held("c", T0 + 20, &["bob@example.net"]), b"c").unwrap();
        let d = db.quarantine_put(&held("d", T0 + 30, &["ЮЛИЯ@почта.рф"]), b"d").unwrap();
        let ids = |q: QuarantineQuery| db.quarantine_list(&q).unwrap().iter().map(|i| i.id).collect::<Vec<_>>();

        let domain = |ds: &[&str]| QuarantineQuery { domains: scope(ds), ..QuarantineQuery::default() };
        assert_eq!(ids(domain(&["example.net"])), [c[0], a[1], a[0]]);
        assert_eq!(ids(domain(&["Other.Example", "почта.РФ"])), [d[0], b[1]]);
        assert_eq!(ids(domain(&[" "])), Vec::<i64>::new(), "blanks match nothing");
        assert_eq!(ids(domain(&[])).len(), 6);

        let user = |r: &str| QuarantineQuery { recipient_exact: Some(r.into()), ..QuarantineQuery::default() };
        assert_eq!(ids(user("bob@example.net")), [c[0], a[0]], "exact, ignoring case: not bob@example.net.evil");
        assert_eq!(ids(user("BOB@EXAMPLE.NET")), [c[0], a[0]]);
        assert_eq!(ids(user("bob@example")), Vec::<i64>::new());
        assert_eq!(ids(user("юлия@ПОЧТА.рф")), [d[0]]);

        // The digest: what is new since the last one, for each user.
        let since = |min_id: i64| QuarantineQuery { min_id: Some(min_id), ..QuarantineQuery::default() };
        assert_eq!(ids(since(a[1])), [d[0], c[0], b[1], b[0]]);
        assert_eq!(ids(QuarantineQuery { min_id: Some(a[1]), ..user("bob@example.net") }), [c[0]]);
        assert_eq!(ids(since(d[0])), Vec::<i64>::new());

        // Released items stay out unless asked for; paging.
        assert!(db.quarantine_claim_release(c[0], T0 + 40).unwrap());
        assert_eq!(ids(user("bob@example.net")), [a[0]]);
        assert_eq!(ids(QuarantineQuery { include_released: true, ..user("bob@example.net") }), [c[0], a[0]]);
        let page = |offset: usize| ids(QuarantineQuery { limit: 2, offset, ..QuarantineQuery::default() });
        assert_eq!([page(0), page(2), page(4)], [vec![d[0], b[1]], vec![b[0], a[1]], vec![a[0]]]);
    });
}
