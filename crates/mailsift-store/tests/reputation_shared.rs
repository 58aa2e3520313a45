//! Reputation shared by several gateway nodes: two `Reputation` stores on one server play two nodes, on a
//! real private PostgreSQL and a real private Redis (mailsift-testkit starts each on a loopback port of its
//! own). What one node records, the other sees; what both record at once adds up; shows and resets reach
//! every node; a server that goes away costs evidence, never a stuck message or a panic, and coming back
//! needs nobody. Without PostgreSQL or Redis installed those tests are skipped, and fail under CI=true.
//! Every wait is bounded in time.

use std::time::{Duration, Instant};

use mailsift_engine::evidence::ReputationKind;
use mailsift_store::pg::{PgConfig, PgStore};
use mailsift_store::{Database, RedisConfig, Reputation, ReputationEvent};
use mailsift_testkit::postgres::Postgres;
use mailsift_testkit::redis::Redis;

const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn ip(n: usize) -> (ReputationKind, String) {
    (ReputationKind::Ip, format!("198.51.100.{n}"))
}

fn net() -> (ReputationKind, String) {
    (ReputationKind::Net, "198.51.100.0/24".into())
}

fn address(n: usize) -> (ReputationKind, String) {
    (ReputationKind::Address, format!("user{n}@sender.example"))
}

fn pg_node(url: &str) -> Reputation {
    Reputation::open_postgres(PgStore::open(&PgConfig::new(url)).expect("open the store"), 14.0).unwrap()
}

fn redis_node(redis: &Redis) -> Reputation {
    Reputation::open_redis(&RedisConfig::new(redis.url()), 14.0).unwrap()
}

/// Runs `body` with a way to open nodes on one fresh shared server: PostgreSQL, then Redis.
fn each_shared_backend(name: &str, body: impl Fn(&str, &dyn Fn() -> Reputation)) {
    if let Some(pg) = Postgres::start() {
        let url = pg.create_database(name);
        body("postgresql", &|| pg_node(&url));
    }
    if let Some(redis) = Redis::start() {
        body("redis", &|| redis_node(&redis));
    }
}

/// (spam, ham) of one identity at `now`, as `rep` sees it.
fn weights(rep: &Reputation, key: &(ReputationKind, String), now: i64) -> Option<(f64, f64)> {
    let facts = rep.lookup(std::slice::from_ref(key), now).unwrap();
    facts.entries.first().map(|e| (e.spam, e.ham))
}

/// Waits (at most `limit`) until `f` holds; says how long it took.
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

#[test]
fn a_spamtrap_hit_at_one_node_is_seen_at_the_other_within_seconds() {
    each_shared_backend("seen", |backend, node| {
        let (a, b) = (node(), node());
        let keys = [ip(1), net(), address(1)];
        assert!(b.lookup(&keys, T0).unwrap().entries.is_empty(), "{backend}: nothing known yet");
        a.record(&keys, ReputationEvent::SpamtrapHit, T0).unwrap();
        // No flush: the writer sends by itself.
        let took = within(Duration::from_secs(2), backend, || weights(&b, &keys[0], T0).is_some());
        eprintln!("{backend}: seen at the other node after {took:?}");
        for key in &keys {
            assert_eq!(weights(&b, key, T0), Some((5.0, 0.0)), "{backend}: {key:?}");
        }
        // A report of good mail at B lowers what A sees.
        b.record(&keys[2..], ReputationEvent::ReportedGood, T0).unwrap();
        b.flush().unwrap();
        assert_eq!(weights(&a, &keys[2], T0), Some((5.0, 3.0)), "{backend}");
        // Decay is applied when looking up: one half-life later, half.
        assert_eq!(weights(&a, &keys[0], T0 + 14 * DAY), Some((2.5, 0.0)), "{backend}");
    });
}

#[test]
fn records_from_two_nodes_at_once_add_up_exactly() {
    const RECORDS: usize = 400;
    each_shared_backend("concurrent", |backend, node| {
        let nodes = [node(), node()];
        std::thread::scope(|s| {
            for (n, rep) in nodes.iter().enumerate() {
                s.spawn(move || {
                    for _ in 0..RECORDS {
                        // Both nodes hit the same IP and network; each has its own address too.
                        rep.record(&[ip(2), net(), address(n)], ReputationEvent::Verdict(9), T0).unwrap();
                    }
                    rep.flush().unwrap();
                });
            }
        });
        for rep in &nodes {
            assert_eq!(rep.stats().dropped + rep.stats().failed, 0, "{backend}: {:?}", rep.stats());
            // Same-time events fold without decay: the sum is exact, and a lost increment would show.
            assert_eq!(weights(rep, &ip(2), T0), Some(((2 * RECORDS) as f64, 0.0)), "{backend}");
            assert_eq!(weights(rep, &net(), T0), Some(((2 * RECORDS) as f64, 0.0)), "{backend}");
            assert_eq!(weights(rep, &address(1), T0), Some((RECORDS as f64, 0.0)), "{backend}");
        }
    });
}

#[test]
fn an_older_event_arriving_late_counts_for_what_it_is_worth_now() {
    each_shared_backend("late", |backend, node| {
        let (a, b) = (node(), node());
        let later = T0 + 14 * DAY;
        a.record(&[ip(3)], ReputationEvent::ReportedSpam, later).unwrap();
        a.flush().unwrap();
        // B's event happened one half-life earlier (its clock, or a slow queue): worth half of it now.
        b.record(&[ip(3)], ReputationEvent::ReportedSpam, T0).unwrap();
        b.flush().unwrap();
        let (spam, _) = weights(&a, &ip(3), later).unwrap();
        assert!((spam - 4.5).abs() < 1e-9, "{backend}: {spam}");
    });
}

#[test]
fn show_and_reset_reach_every_node() {
    each_shared_backend("reset", |backend, node| {
        let (a, b) = (node(), node());
        let domain = (ReputationKind::Domain, "spammy.example".to_string());
        a.record(&[domain.clone(), address(7)], ReputationEvent::ReportedSpam, T0).unwrap();
        a.record(&[ip(7)], ReputationEvent::Verdict(0), T0).unwrap();
        a.flush().unwrap();
        let shown = b.show("SPAMMY.example", T0).unwrap();
        assert_eq!(shown.len(), 1, "{backend}: {shown:?}");
        assert_eq!(
            (shown[0].kind, shown[0].key.as_str(), shown[0].spam),
            (ReputationKind::Domain, "spammy.example", 3.0)
        );
        assert_eq!(b.show("198.51.100.7", T0).unwrap()[0].ham, 1.0, "{backend}");
        assert!(b.show("nobody.example", T0).unwrap().is_empty(), "{backend}");

        assert_eq!(b.reset("spammy.example").unwrap(), 1, "{backend}");
        assert_eq!(b.reset("spammy.example").unwrap(), 0, "{backend}: already gone");
        assert_eq!(weights(&a, &domain, T0), None, "{backend}: A still sees the reset domain");
        assert!(weights(&a, &address(7), T0).is_some(), "{backend}: the reset took more than the key");
    });
}

#[test]
fn hostile_keys_are_not_tracked_and_do_not_cost_the_others() {
    each_shared_backend("hostile", |backend, node| {
        let rep = node();
        let nul = (ReputationKind::Address, "evil\0@example".to_string());
        let huge = (ReputationKind::Domain, "x".repeat(100_000));
        let quoted = (ReputationKind::Address, "'; DROP TABLE reputation; --\"@x\r\n".to_string());
        rep.record(&[nul.clone(), huge.clone(), quoted.clone(), ip(9)], ReputationEvent::SpamtrapHit, T0).unwrap();
        rep.flush().unwrap();
        assert_eq!(rep.stats().failed, 0, "{backend}");
        assert_eq!(weights(&rep, &ip(9), T0), Some((5.0, 0.0)), "{backend}");
        assert_eq!(weights(&rep, &quoted, T0), Some((5.0, 0.0)), "{backend}: an odd key is just a key");
        assert_eq!(weights(&rep, &nul, T0), None, "{backend}");
        assert_eq!(weights(&rep, &huge, T0), None, "{backend}");
    });
}

#[test]
fn redis_keys_expire_once_the_weights_are_negligible() {
    let Some(redis) = Redis::start() else { return };
    let rep = redis_node(&redis);
    rep.record(&[ip(4)], ReputationEvent::SpamtrapHit, T0).unwrap();
    rep.flush().unwrap();
    let ttl: u64 = redis.cli(&["TTL", "mailsift:reputation:ip:198.51.100.4"]).unwrap().parse().unwrap();
    // 16 half-lives of 14 days.
    let expected = 16 * 14 * DAY as u64;
    assert!(ttl <= expected && ttl + 60 > expected, "TTL {ttl}, expected about {expected}");
    assert_eq!(redis.cli(&["HGET", "mailsift:reputation:ip:198.51.100.4", "spam"]).unwrap(), "5");
}

#[test]
fn with_redis_down_mail_flows_lookups_are_neutral_records_counted_and_it_comes_back_by_itself() {
    let Some(mut redis) = Redis::start() else { return };
    let rep = redis_node(&redis);
    rep.record(&[ip(5)], ReputationEvent::SpamtrapHit, T0).unwrap();
    rep.flush().unwrap();
    assert_eq!(weights(&rep, &ip(5), T0), Some((5.0, 0.0)));

    redis.stop();
    let started = Instant::now();
    for _ in 0..200 {
        assert!(rep.lookup(&[ip(5), net()], T0).unwrap().entries.is_empty(), "no facts while down");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "200 lookups with Redis down took {took:?}");
    assert_eq!(rep.stats().unanswered, 200, "{:?}", rep.stats());
    for _ in 0..10 {
        rep.record(&[ip(5)], ReputationEvent::Verdict(9), T0).unwrap();
    }
    let e = rep.flush().unwrap_err().to_string();
    assert!(e.contains("10 reputation records were lost"), "{e}");
    assert_eq!(rep.stats().failed, 10, "{:?}", rep.stats());

    // Back (empty, as a Redis without persistence restarts): used again without anyone asking.
    redis.start_again();
    within(Duration::from_secs(5), "recovery after Redis came back", || {
        rep.record(&[ip(6)], ReputationEvent::SpamtrapHit, T0).unwrap();
        rep.flush().is_ok() && weights(&rep, &ip(6), T0).is_some()
    });
    assert!(redis.cli(&["EXISTS", "mailsift:reputation:ip:198.51.100.6"]).unwrap() == "1");
}

#[test]
fn a_redis_that_accepts_and_never_answers_costs_one_timeout_not_one_per_message() {
    // A server that takes the connection and then says nothing: the worst case for a client without
    // timeouts, which would hang the message forever.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    let rep = Reputation::open_redis(&RedisConfig { url, timeout_ms: 200 }, 14.0).unwrap();
    let started = Instant::now();
    for _ in 0..100 {
        let one = Instant::now();
        assert!(rep.lookup(&[ip(1)], T0).unwrap().entries.is_empty());
        assert!(one.elapsed() < Duration::from_millis(600), "one lookup took {:?}", one.elapsed());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "100 lookups took {took:?}");
    assert_eq!(rep.stats().unanswered, 100);
    drop(silent);
}

#[test]
fn a_malformed_redis_url_is_refused_without_its_password() {
    for url in ["http://gw:hunter2@cache.example/", "redis://gw:hunter2@cache.example:port/", "hunter2"] {
        let e = Reputation::open_redis(&RedisConfig::new(url), 14.0).unwrap_err().to_string();
        assert!(e.contains("[redis] url") && !e.contains("hunter2"), "{url}: {e}");
    }
    // A well-formed URL opens without connecting (nobody listens here) and names no password.
    let rep = Reputation::open_redis(&RedisConfig::new("redis://gw:hunter2@127.0.0.1:1/3"), 14.0).unwrap();
    assert_eq!(rep.path().to_str(), Some("redis://127.0.0.1:1/3"));
    rep.record(&[ip(1)], ReputationEvent::SpamtrapHit, T0).unwrap();
    let e = rep.flush().unwrap_err().to_string();
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn with_postgresql_down_records_are_counted_lost_nothing_panics_and_it_comes_back() {
    let Some(mut pg) = Postgres::start() else { return };
    let url = pg.create_database("down");
    let rep = pg_node(&url);
    rep.record(&[ip(8)], ReputationEvent::SpamtrapHit, T0).unwrap();
    rep.flush().unwrap();

    pg.stop();
    let started = Instant::now();
    // Lookups answer neutral (counted), and after the first failure leave the server alone for a second:
    // many lookups cost about one attempt.
    assert!(rep.lookup(&[ip(8)], T0).unwrap().entries.is_empty(), "neutral while PostgreSQL is down");
    let quick = Instant::now();
    for _ in 0..200 {
        assert!(rep.lookup(&[ip(8)], T0).unwrap().entries.is_empty());
    }
    assert!(quick.elapsed() < Duration::from_millis(500), "200 lookups while resting took {:?}", quick.elapsed());
    assert!(rep.stats().unanswered >= 201, "{:?}", rep.stats());
    for _ in 0..5 {
        rep.record(&[ip(8)], ReputationEvent::Verdict(9), T0).unwrap();
    }
    let e = rep.flush().unwrap_err().to_string();
    assert!(e.contains("5 reputation records were lost"), "{e}");
    assert_eq!(rep.stats().failed, 5);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    pg.start_again();
    within(Duration::from_secs(10), "recovery after PostgreSQL came back", || {
        rep.record(&[ip(8)], ReputationEvent::ReportedSpam, T0).unwrap();
        rep.flush().is_ok()
    });
    // What was written before the outage survived it, the reports sent since came on top (3 each), and
    // the five verdicts lost in the outage (1 each) never arrived.
    // (Lookups may still be resting for up to a second after the last failure.)
    within(Duration::from_secs(3), "lookups answered again", || weights(&rep, &ip(8), T0).is_some());
    let (spam, _) = weights(&rep, &ip(8), T0).unwrap();
    assert!(spam >= 8.0 && (spam - 5.0) % 3.0 == 0.0, "{spam}");
}

#[test]
fn the_configured_store_is_redis_then_postgresql_then_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Database::open_in(dir.path()).unwrap();
    let rep = mailsift_store::reputation::open_configured(dir.path(), &sqlite, None, 14.0).unwrap();
    assert_eq!(rep.path(), dir.path().join("reputation.sqlite"));
    let redis = RedisConfig::new("redis://127.0.0.1:1/");
    let rep = mailsift_store::reputation::open_configured(dir.path(), &sqlite, Some(&redis), 14.0).unwrap();
    assert_eq!(rep.path().to_str(), Some("redis://127.0.0.1:1/0"));
    let Some(pg) = Postgres::start() else { return };
    let db = Database::open_postgres(&PgConfig::new(pg.create_database("configured"))).unwrap();
    let rep = mailsift_store::reputation::open_configured(dir.path(), &db, None, 14.0).unwrap();
    assert!(rep.path().to_str().unwrap().starts_with("postgresql://127.0.0.1:"), "{:?}", rep.path());
    rep.record(&[ip(1)], ReputationEvent::SpamtrapHit, T0).unwrap();
    rep.flush().unwrap();
    // In the gateway's own database, where another node's store finds it.
    assert_eq!(weights(&pg_node(&pg.database_url("configured")), &ip(1), T0), Some((5.0, 0.0)));
    let rep = mailsift_store::reputation::open_configured(dir.path(), &db, Some(&redis), 14.0).unwrap();
    assert!(rep.path().to_str().unwrap().starts_with("redis://"), "Redis first when configured");
}

#[test]
fn postgresql_forgets_identities_nobody_added_to_for_sixteen_half_lives() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("prune");
    let rep = pg_node(&url);
    let hl = 14 * DAY;
    pg.psql_in(
        "prune",
        &format!(
            "INSERT INTO reputation (kind, key, spam, ham, updated) VALUES
             ('ip', '192.0.2.17', 5, 0, extract(epoch FROM now())::bigint - 17 * {hl}),
             ('ip', '192.0.2.15', 5, 0, extract(epoch FROM now())::bigint - 15 * {hl})"
        ),
    )
    .unwrap();
    rep.record(&[ip(1)], ReputationEvent::SpamtrapHit, mailsift_engine::unix_now()).unwrap();
    rep.flush().unwrap();
    // The writer prunes after its first batch; the second flush is answered after that.
    rep.flush().unwrap();
    let left = pg.psql_in("prune", "SELECT key FROM reputation ORDER BY key").unwrap();
    assert_eq!(left, "192.0.2.15\n198.51.100.1");
}

#[test]
fn a_node_always_sees_its_own_events_while_its_writer_sends_them() {
    const THREADS: usize = 4;
    const RECORDS: usize = 100;
    each_shared_backend("own", |backend, node| {
        let rep = node();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let rep = &rep;
                s.spawn(move || {
                    for i in 0..RECORDS {
                        rep.record(&[ip(1), address(t)], ReputationEvent::Verdict(8), T0).unwrap();
                        // Pending or sent, never neither: at least every event recorded so far.
                        let (own, _) = weights(rep, &address(t), T0).unwrap();
                        assert!(own >= (i + 1) as f64, "{backend}: thread {t} after {} records saw {own}", i + 1);
                    }
                });
            }
        });
        rep.flush().unwrap();
        assert_eq!(weights(&rep, &ip(1), T0), Some(((THREADS * RECORDS) as f64, 0.0)), "{backend}");
    });
}
