//! The PostgreSQL and Redis harnesses against the real servers: what is written can be read back, a stopped or
//! killed server comes back on the same port (PostgreSQL with its committed data), two instances run side by
//! side without seeing each other, and a dropped instance leaves no process and no directory behind.
//!
//! These tests need PostgreSQL and Redis installed (`.ci/run` installs them); without them they are skipped
//! with a notice, except under `CI=true`, where they fail.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use mailsift_testkit::postgres::Postgres;
use mailsift_testkit::redis::Redis;

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().next() != Some("Z")))
        .unwrap_or(false)
}

fn refuses(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

fn assert_gone(what: &str, pid: u32, addr: SocketAddr, dir: &Path) {
    assert!(!alive(pid), "{what}: process {pid} is gone");
    assert!(refuses(addr), "{what}: nothing listens on {addr}");
    assert!(!dir.exists(), "{what}: {} is removed", dir.display());
}

#[test]
fn postgres_keeps_committed_data_across_a_restart_and_a_crash() {
    let started = Instant::now();
    let Some(mut pg) = Postgres::start() else { return };
    eprintln!("PostgreSQL on port {} ready in {:?}", pg.port(), started.elapsed());
    assert_eq!(pg.url(), format!("postgresql://mailsift@127.0.0.1:{}/mailsift", pg.port()));
    let who = pg.psql("SELECT current_user, current_database(), inet_server_addr()").expect("connect");
    assert_eq!(who, "mailsift|mailsift|127.0.0.1");
    // Loopback only, and the socket in the instance's own directory.
    assert_eq!(pg.psql("SHOW listen_addresses").unwrap(), "127.0.0.1");
    assert_eq!(pg.psql("SHOW unix_socket_directories").unwrap(), pg.dir().display().to_string());

    pg.psql("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'before restart')")
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", pg.log()));
    assert_eq!(pg.psql("SELECT id, body FROM notes").unwrap(), "1|before restart");
    let refused = pg.psql("SELECT nosuch FROM notes").expect_err("a bad statement is an Err");
    assert!(refused.contains("column \"nosuch\" does not exist"), "{refused}");

    let (port, first_pid) = (pg.port(), pg.pid().expect("running"));
    let stopping = Instant::now();
    pg.stop();
    eprintln!("fast shutdown in {:?}", stopping.elapsed());
    assert_eq!(pg.pid(), None);
    assert!(!alive(first_pid), "the postmaster exited");
    assert!(refuses(pg.addr()), "nothing listens on {} while stopped", pg.addr());
    assert!(pg.psql("SELECT 1").is_err(), "psql fails while the server is stopped");
    pg.stop(); // a second stop does nothing

    let restarting = Instant::now();
    pg.start_again();
    eprintln!("started again in {:?}", restarting.elapsed());
    assert_eq!(pg.port(), port, "same port after a restart");
    assert_ne!(pg.pid(), Some(first_pid), "a new postmaster");
    assert_eq!(pg.psql("SELECT body FROM notes").unwrap(), "before restart");

    // Committed just before the crash: recovered from the WAL.
    pg.psql("INSERT INTO notes VALUES (2, 'committed before the crash')").unwrap();
    let killed_pid = pg.pid().unwrap();
    pg.kill();
    assert!(!alive(killed_pid), "the postmaster was killed");
    assert!(refuses(pg.addr()), "nothing listens after the kill");
    pg.start_again();
    assert_eq!(pg.psql("SELECT count(*) FROM notes").unwrap(), "2");
    let log = pg.log();
    assert!(log.contains("database system was interrupted") || log.contains("not properly shut down"), "{log}");
    assert!(log.contains("redo done"), "the start after the kill replayed the WAL:\n{log}");
}

/// The newest installed psql, for a writer thread that must not borrow the instance the test restarts.
fn psql_binary() -> std::path::PathBuf {
    let mut bins: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .filter_map(|e| Some(e.ok()?.path().join("bin/psql")))
        .filter(|p| p.is_file())
        .collect();
    bins.sort_by_key(|p| p.to_string_lossy().split('/').nth(4).and_then(|v| v.parse::<u32>().ok()));
    bins.pop().expect("a psql under /usr/lib/postgresql")
}

#[test]
fn postgres_restart_under_load_loses_no_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let Some(mut pg) = Postgres::start() else { return };
    pg.psql("CREATE TABLE writes (n int)").unwrap();
    let (psql, port) = (psql_binary(), pg.port());
    let (acknowledged, refused, restarted) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        // One connection per write, as a pool reconnecting would; stops after 5 writes acknowledged once the
        // server is back, or at the deadline.
        scope.spawn(|| {
            let mut after_restart = 0;
            for n in 1.. {
                if after_restart >= 5 || Instant::now() >= deadline {
                    break;
                }
                let out = std::process::Command::new(&psql)
                    .args(["-X", "-q", "-h", "127.0.0.1", "-U", "mailsift", "-d", "mailsift", "-p", &port.to_string()])
                    .arg("-c")
                    .arg(format!("INSERT INTO writes VALUES ({n})"))
                    .env("PGCONNECT_TIMEOUT", "2")
                    .output()
                    .expect("run psql");
                if out.status.success() {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    after_restart += usize::from(restarted.load(Ordering::SeqCst));
                } else {
                    refused.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        while acknowledged.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        pg.stop();
        let refused_before = refused.load(Ordering::SeqCst);
        while refused.load(Ordering::SeqCst) < refused_before + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        pg.start_again();
        restarted.store(true, Ordering::SeqCst);
    });
    let (acknowledged, refused) = (acknowledged.into_inner(), refused.into_inner());
    eprintln!("{acknowledged} writes acknowledged, {refused} refused while the server was down");
    assert!(refused >= 3, "writes were refused while the server was stopped");
    assert!(acknowledged >= 10, "writes were acknowledged before and after the restart: {acknowledged}");
    let stored: usize = pg.psql("SELECT count(*) FROM writes").unwrap().parse().unwrap();
    // A write whose answer was lost to the shutdown may be stored without having been acknowledged.
    assert!(
        stored >= acknowledged,
        "{stored} rows stored, {acknowledged} acknowledged: an acknowledged write was lost"
    );
}

#[test]
fn postgres_databases_and_settings() {
    let Some(pg) = Postgres::start_with(&[("fsync", "off"), ("cluster_name", r"it's a \test")]) else { return };
    assert_eq!(pg.psql("SHOW fsync").unwrap(), "off");
    assert_eq!(pg.psql("SHOW cluster_name").unwrap(), r"it's a \test", "quotes and backslashes reach the server");
    assert_eq!(pg.psql("SELECT boot_val <> reset_val FROM pg_settings WHERE name = 'fsync'").unwrap(), "t");

    let url = pg.create_database("first_test");
    assert_eq!(url, format!("postgresql://mailsift@127.0.0.1:{}/first_test", pg.port()));
    pg.psql_in("first_test", "CREATE TABLE t (v text); INSERT INTO t VALUES ('one'), ('two')").unwrap();
    assert_eq!(pg.psql_in("first_test", "SELECT v FROM t ORDER BY v").unwrap(), "one\ntwo");
    assert!(pg.psql("SELECT v FROM t").is_err(), "the table is in first_test, not in mailsift");
    assert_eq!(
        pg.psql("SELECT datname FROM pg_database WHERE datname IN ('mailsift', 'first_test') ORDER BY 1").unwrap(),
        "first_test\nmailsift"
    );
    // Only the socket and 127.0.0.1 are trusted.
    let hba = pg.psql("SELECT type, address FROM pg_hba_file_rules ORDER BY line_number").unwrap();
    assert!(hba.lines().all(|rule| rule == "local|" || rule == "host|127.0.0.1"), "{hba}");
}

#[test]
#[should_panic(expected = "the harness sets it")]
fn postgres_refuses_to_leave_loopback() {
    let _ = Postgres::start_with(&[("listen_addresses", "*")]);
}

#[test]
fn two_postgres_instances_are_apart_and_drop_removes_one() {
    let started = Instant::now();
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(Postgres::start);
        let second = scope.spawn(Postgres::start);
        (first.join().unwrap(), second.join().unwrap())
    });
    let (Some(first), Some(second)) = (first, second) else { return };
    eprintln!("two PostgreSQL instances started concurrently in {:?}", started.elapsed());
    assert_ne!(first.port(), second.port());
    assert_ne!(first.dir(), second.dir());
    for (pg, marker) in [(&first, "first"), (&second, "second")] {
        pg.psql(&format!("CREATE TABLE whose (name text); INSERT INTO whose VALUES ('{marker}')")).unwrap();
    }
    assert_eq!(first.psql("SELECT name FROM whose").unwrap(), "first");
    assert_eq!(second.psql("SELECT name FROM whose").unwrap(), "second");

    let (pid, addr, dir) = (first.pid().unwrap(), first.addr(), first.dir().to_path_buf());
    let dropping = Instant::now();
    drop(first);
    eprintln!("one instance dropped in {:?}", dropping.elapsed());
    assert_gone("dropped PostgreSQL", pid, addr, &dir);
    assert_eq!(second.psql("SELECT name FROM whose").unwrap(), "second", "the other one does not notice");

    // A killed instance is cleaned up by Drop as well.
    let mut second = second;
    let (addr, dir) = (second.addr(), second.dir().to_path_buf());
    second.kill();
    drop(second);
    assert!(refuses(addr) && !dir.exists(), "a killed, then dropped instance leaves nothing");
}

#[test]
fn redis_answers_again_after_a_restart_and_a_crash() {
    let started = Instant::now();
    let Some(mut redis) = Redis::start() else { return };
    eprintln!("Redis on port {} ready in {:?}", redis.port(), started.elapsed());
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert_eq!(redis.cli(&["CONFIG", "GET", "bind"]).unwrap(), "bind\n127.0.0.1");
    assert_eq!(redis.cli(&["CONFIG", "GET", "dir"]).unwrap(), format!("dir\n{}", redis.dir().display()));

    assert_eq!(redis.cli(&["SET", "greeting", "hello world"]).unwrap(), "OK");
    assert_eq!(redis.cli(&["GET", "greeting"]).unwrap(), "hello world");
    assert_eq!(redis.cli(&["INCRBY", "counter", "5"]).unwrap(), "5");
    assert_eq!(redis.cli(&["RPUSH", "list", "a", "b"]).unwrap(), "2");
    assert_eq!(redis.cli(&["LRANGE", "list", "0", "-1"]).unwrap(), "a\nb");
    assert_eq!(redis.cli(&["GET", "missing"]).unwrap(), "");
    let wrong = redis.cli(&["INCR", "list"]).expect_err("an error reply is an Err");
    assert!(wrong.starts_with("WRONGTYPE"), "{wrong}");

    let (port, pid) = (redis.port(), redis.pid().unwrap());
    redis.stop();
    assert!(!alive(pid) && refuses(redis.addr()), "stopped");
    assert!(redis.cli(&["PING"]).is_err(), "redis-cli fails while the server is stopped");
    redis.start_again();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");
    assert_eq!(redis.cli(&["GET", "greeting"]).unwrap(), "", "nothing is persisted by default");

    redis.cli(&["SET", "k", "v"]).unwrap();
    let pid = redis.pid().unwrap();
    redis.kill();
    assert!(!alive(pid) && refuses(redis.addr()), "killed");
    redis.start_again();
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");
}

#[test]
fn redis_with_persistence_keeps_data_across_a_restart() {
    let Some(mut redis) = Redis::start_with(&[("appendonly", "yes"), ("appendfsync", "always")]) else { return };
    redis.cli(&["SET", "kept", "yes"]).unwrap();
    redis.stop();
    redis.start_again();
    assert_eq!(redis.cli(&["GET", "kept"]).unwrap(), "yes", "log:\n{}", redis.log());
}

#[test]
fn two_redis_instances_are_apart_and_drop_removes_one() {
    let (Some(first), Some(second)) = (Redis::start(), Redis::start()) else { return };
    assert_ne!(first.port(), second.port());
    first.cli(&["SET", "whose", "first"]).unwrap();
    second.cli(&["SET", "whose", "second"]).unwrap();
    assert_eq!(first.cli(&["GET", "whose"]).unwrap(), "first");
    assert_eq!(second.cli(&["GET", "whose"]).unwrap(), "second");

    let (pid, addr, dir) = (first.pid().unwrap(), first.addr(), first.dir().to_path_buf());
    drop(first);
    assert_gone("dropped Redis", pid, addr, &dir);
    assert_eq!(second.cli(&["GET", "whose"]).unwrap(), "second", "the other one does not notice");
}

#[test]
#[should_panic(expected = "the harness sets it")]
fn redis_refuses_to_leave_loopback() {
    let _ = Redis::start_with(&[("bind", "0.0.0.0")]);
}
