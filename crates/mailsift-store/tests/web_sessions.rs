//! The web console's shared state on a real SQLite file and a real private PostgreSQL: sessions are found by
//! their hash until they expire or their account's sessions end, and survive a reopen; failed-login counts
//! fill, refuse, lapse with their window and are given back; on PostgreSQL two handles (two nodes) agree on
//! one signing key and count one throttle.

use mailsift_store::gateway::{ThrottleTake, WebSession};
use mailsift_store::pg::PgConfig;
use mailsift_store::Database;

const T0: i64 = 1_800_000_000;

/// Runs `body` on each backend with a way to open a second handle on the same database: SQLite in a
/// temporary directory, then PostgreSQL (a private server of the test's own; without PostgreSQL installed
/// only SQLite runs, and under CI=true the test fails).
fn on_every_backend(body: impl Fn(&dyn Fn() -> Database)) {
    let dir = tempfile::tempdir().unwrap();
    body(&|| Database::open_in(dir.path()).unwrap());
    if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
        let url = pg.url();
        body(&|| Database::open_postgres(&PgConfig::new(url.clone())).unwrap());
    }
}

fn session(account: &str, expires: i64) -> WebSession {
    WebSession {
        account: account.into(),
        principal: format!("{{\"name\":\"{account}\"}}"),
        csrf: "c".repeat(43),
        expires,
    }
}

#[test]
fn a_session_is_found_until_it_expires_or_its_account_logs_out_everywhere() {
    on_every_backend(|open| {
        let db = open();
        db.web_session_create("h-alice-1", &session("Alice", T0 + 600), T0).unwrap();
        db.web_session_create("h-alice-2", &session("alice", T0 + 600), T0).unwrap();
        db.web_session_create("h-bob", &session("bob", T0 + 60), T0).unwrap();

        let got = db.web_session_get("h-alice-1", T0 + 1).unwrap().unwrap();
        assert_eq!(got, WebSession { account: "alice".into(), ..session("Alice", T0 + 600) });
        assert_eq!(db.web_session_get("no-such-hash", T0).unwrap(), None);
        // Expired: refused at its second, and deleted when another session starts.
        assert!(db.web_session_get("h-bob", T0 + 59).unwrap().is_some());
        assert_eq!(db.web_session_get("h-bob", T0 + 60).unwrap(), None);
        db.web_session_create("h-carol", &session("carol", T0 + 9_000), T0 + 61).unwrap();
        assert!(db.web_session_get("h-bob", T0).unwrap().is_none(), "the expired row was purged");

        // Another handle (another process, another node) sees the same sessions, and a logout there
        // ends it here.
        let other = open();
        assert!(other.web_session_get("h-carol", T0 + 100).unwrap().is_some());
        assert!(other.web_session_remove("h-carol").unwrap());
        assert!(!other.web_session_remove("h-carol").unwrap());
        assert_eq!(db.web_session_get("h-carol", T0 + 100).unwrap(), None);

        // An account's sessions end together, whatever the case of the name.
        assert_eq!(db.web_sessions_remove_account(" ALICE ").unwrap(), 2);
        assert_eq!(other.web_session_get("h-alice-1", T0 + 1).unwrap(), None);
        assert_eq!(other.web_session_get("h-alice-2", T0 + 1).unwrap(), None);
        assert_eq!(db.web_sessions_remove_account("alice").unwrap(), 0);
        db.web_session_create("h-dave", &session("dave", T0 + 600), T0).unwrap();
        drop((db, other));

        // A new handle after the old ones closed (a restart) still has the session.
        let reopened = open();
        assert!(reopened.web_session_get("h-dave", T0 + 1).unwrap().is_some());
        // The same hash twice is refused rather than overwriting someone's session.
        assert!(reopened.web_session_create("h-dave", &session("eve", T0 + 600), T0).is_err());
        assert_eq!(reopened.web_session_get("h-dave", T0 + 1).unwrap().unwrap().account, "dave");
    });
}

#[test]
fn failed_logins_fill_a_window_refuse_lapse_and_are_counted_across_handles() {
    on_every_backend(|open| {
        let (a, b) = (open(), open());
        let key = "address 192.0.2.7";
        // Three attempts spread over two handles fill a limit of three.
        assert_eq!(a.web_throttle_take(key, 3, 60, T0).unwrap(), ThrottleTake::Counted(1));
        assert_eq!(b.web_throttle_take(key, 3, 60, T0 + 1).unwrap(), ThrottleTake::Counted(2));
        assert_eq!(a.web_throttle_take(key, 3, 60, T0 + 2).unwrap(), ThrottleTake::Counted(3));
        assert_eq!(b.web_throttle_take(key, 3, 60, T0 + 3).unwrap(), ThrottleTake::Full { since: T0 });
        assert_eq!(a.web_throttle_count(key, 60, T0 + 3).unwrap(), 3);
        // Given back one: one more goes through, then refused again.
        b.web_throttle_give_back(key).unwrap();
        assert_eq!(a.web_throttle_take(key, 3, 60, T0 + 4).unwrap(), ThrottleTake::Counted(3));
        assert!(matches!(a.web_throttle_take(key, 3, 60, T0 + 5).unwrap(), ThrottleTake::Full { .. }));
        // The window lapses 60 s after its first count: counting starts again.
        assert_eq!(a.web_throttle_count(key, 60, T0 + 60).unwrap(), 0);
        assert_eq!(b.web_throttle_take(key, 3, 60, T0 + 60).unwrap(), ThrottleTake::Counted(1));
        // Cleared: nothing counted; giving back never goes below zero.
        a.web_throttle_clear(key).unwrap();
        assert_eq!(b.web_throttle_count(key, 60, T0 + 61).unwrap(), 0);
        b.web_throttle_give_back(key).unwrap();
        assert_eq!(a.web_throttle_take(key, 3, 60, T0 + 62).unwrap(), ThrottleTake::Counted(1));
        // Keys are counted apart.
        assert_eq!(a.web_throttle_count("name admin", 60, T0 + 62).unwrap(), 0);
    });
}

#[test]
fn attempts_from_many_threads_on_two_handles_never_exceed_the_limit() {
    on_every_backend(|open| {
        let handles = [open(), open()];
        let taken: usize = std::thread::scope(|s| {
            let threads: Vec<_> = (0..16)
                .map(|i| {
                    let db = &handles[i % 2];
                    s.spawn(move || {
                        matches!(db.web_throttle_take("address 198.51.100.1", 5, 60, T0), Ok(ThrottleTake::Counted(_)))
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap() as usize).sum()
        });
        assert_eq!(taken, 5);
    });
}

#[test]
fn two_nodes_on_one_postgresql_agree_on_one_signing_key_and_sqlite_keeps_its_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Database::open_in(dir.path()).unwrap().web_signing_key(&[1; 32]).unwrap(), None);
    let Some(pg) = mailsift_testkit::postgres::Postgres::start() else { return };
    let node_a = Database::open_postgres(&PgConfig::new(pg.url())).unwrap();
    let node_b = Database::open_postgres(&PgConfig::new(pg.url())).unwrap();
    // Both start at once, each with its own candidate: one wins, both get the winner.
    let (ka, kb) = std::thread::scope(|s| {
        let a = s.spawn(|| node_a.web_signing_key(&[0xaa; 32]).unwrap().unwrap());
        let b = s.spawn(|| node_b.web_signing_key(&[0xbb; 32]).unwrap().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(ka, kb);
    assert!(ka == [0xaa; 32] || ka == [0xbb; 32]);
    // A node started later does not replace it.
    let node_c = Database::open_postgres(&PgConfig::new(pg.url())).unwrap();
    assert_eq!(node_c.web_signing_key(&[0xcc; 32]).unwrap().unwrap(), ka);
}
