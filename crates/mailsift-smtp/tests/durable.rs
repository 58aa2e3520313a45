//! Nothing lives only in memory after the gateway answers 250: over real SMTP on loopback, with real next hops
//! (our sink) that are down and come back, and a gateway process killed with SIGKILL.
//!
//! - A bounce (the next hop refused one recipient and took the other) is in the durable spool when the client
//!   hears 250; the gateway is killed while the bounce's next hop is down; a new gateway on the same data
//!   directory delivers it, once, when the hop is back. The 250's message-log row survived the kill too.
//! - A filter rule's copy to a hop that is down is retried with back-off and delivered once when it is back;
//!   a copy refused with 5xx ends at once, kept as failed, and is not retried.
//! - Maildir `tmp/` leftovers older than 36 hours are swept; fresh ones stay.
//! - A Maildir that cannot be written is a `451 4.3.0` local error whose text names no path.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::{Behaviour, Sink};
use mailsift_smtp::spool::{self, SpoolPolicy};
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::{Database, LogQuery, PolicyStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

/// Retries in a fraction of a second, so the tests see several attempts; a short lease so a killed
/// runner's claim ends quickly.
fn quick() -> SpoolPolicy {
    SpoolPolicy {
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_millis(800),
        lease: Duration::from_secs(2),
        poll: Duration::from_millis(200),
        ..SpoolPolicy::default()
    }
}

const POLICY: &str = r#"
[[rules]]
name = "legal hold"
conditions = [{ field = "subject", op = "contains", value = "subpoena" }]
actions = [{ action = "copy", to = "archive@elsewhere.example" }]
"#;

/// A gateway on `dir`: example.com goes to `hop`, local.test to the Maildir, everything else (bounces to
/// outside senders, the archive copy) through the smarthost `outside`. Serving, with the spool's runner.
async fn gateway(dir: &Path, hop: SocketAddr, outside: SocketAddr) -> (Arc<Gateway>, SocketAddr) {
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"

[smtp.outbound]
smarthost = "{outside}"

[smtp.relay]
connect_timeout_secs = 2
reply_timeout_secs = 5

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[[smtp.domains]]
name = "local.test"
"#
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let config = SmtpConfig::from_toml(&text).unwrap();
    let state = GatewayState::new(engine, config, dir).unwrap();
    let db = Database::open_in(dir).unwrap();
    if db.rules().unwrap().is_empty() {
        db.import_policy(POLICY, mailsift_store::ImportMode::Merge).unwrap();
    }
    let gateway = Gateway::new(state, db, dir);
    gateway.refresh_policy(true).unwrap();
    spool::set_policy(&gateway, quick());
    let listeners = gateway.bind().await.unwrap();
    let inbound = listeners.iter().find(|(_, l)| *l == Listener::Inbound).unwrap().0.local_addr().unwrap();
    tokio::spawn(gateway.clone().serve(listeners));
    spool::start(gateway.clone());
    (gateway, inbound)
}

/// A port nothing listens on (yet): a next hop that is down.
fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn send(addr: SocketAddr, from: &str, rcpts: &[&str], subject: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = AsyncBufReader::new(r);
    async fn read(r: &mut AsyncBufReader<tokio::net::tcp::OwnedReadHalf>) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), r.read_line(&mut line)).await.unwrap().unwrap();
            if n == 0 {
                return (0, text);
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }
    async fn cmd(
        r: &mut AsyncBufReader<tokio::net::tcp::OwnedReadHalf>,
        w: &mut tokio::net::tcp::OwnedWriteHalf,
        line: &str,
    ) -> (u16, String) {
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        read(r).await
    }
    assert_eq!(read(&mut r).await.0, 220);
    assert_eq!(cmd(&mut r, &mut w, "EHLO client.sender.example").await.0, 250);
    assert_eq!(cmd(&mut r, &mut w, &format!("MAIL FROM:<{from}>")).await.0, 250);
    for rcpt in rcpts {
        let (code, text) = cmd(&mut r, &mut w, &format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(code, 250, "{rcpt}: {text}");
    }
    assert_eq!(cmd(&mut r, &mut w, "DATA").await.0, 354);
    let msg = format!(
        "From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@sender.example>\r\n\r\nHello Bob,\r\nsee you at lunch.\r\n.\r\n",
        subject.replace(' ', ".")
    );
    w.write_all(msg.as_bytes()).await.unwrap();
    read(&mut r).await
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CHILD: &str = "MAILSIFT_SPOOL_CHILD";

/// The gateway half of the kill test, in its own process: serves on the data directory and next hops given
/// in the environment, prints its address, and waits to be killed (at most 60 s).
#[test]
fn child_gateway_until_killed() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let parts: Vec<&str> = spec.split('|').collect();
    let (dir, hop, outside) = (Path::new(parts[0]), parts[1].parse().unwrap(), parts[2].parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (_gateway, addr) = gateway(dir, hop, outside).await;
        println!("LISTEN {addr}");
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_survives_kill_9_and_is_delivered_once_when_its_hop_is_back() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hop = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    hop.set_behaviour(Behaviour { refuse_rcpts: vec!["nobody@example.com".into()], ..Default::default() });
    let outside = dead_port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_gateway_until_killed", "--nocapture", "--test-threads", "1"])
        .env(CHILD, format!("{}|{}|{outside}", dir.path().display(), hop.addr()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("the child gateway prints its address").unwrap();
            // libtest may print the test's name on the same line first.
            if let Some(at) = line.find("LISTEN ") {
                return line[at + 7..].trim().parse().unwrap();
            }
        }
    })
    .await
    .unwrap();

    let (code, text) =
        send(addr, "alice@sender.example", &["bob@example.com", "nobody@example.com"], "partly refused").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(hop.messages().len(), 1, "bob has it");
    // At the 250, the bounce is on disk (its hop is down, so nothing can have taken it out yet).
    let db = Database::open_in(dir.path()).unwrap();
    let pending = db.spool_list(Some("pending"), 10).unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!((pending[0].kind.as_str(), pending[0].recipient.as_str()), ("bounce", "alice@sender.example"));
    let reference = text.split("[ref ").nth(1).and_then(|t| t.split(']').next()).unwrap().to_string();
    // The child retries with back-off while the hop is down.
    eventually("the child's runner retried", Duration::from_secs(10), || {
        db.spool_list(Some("pending"), 10).unwrap()[0].attempts >= 2
    })
    .await;

    // kill -9: no shutdown, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(db.log_get(&reference).unwrap().is_some(), "the 250's log row survived the kill");
    drop(db);

    // The bounce's hop comes back; a new gateway starts on the same data directory.
    let back = Sink::start(outside, true).await.unwrap();
    let (g, _) = gateway(dir.path(), hop.addr(), outside).await;
    eventually("the bounce arrived", Duration::from_secs(15), || back.messages().len() == 1).await;
    let bounce = String::from_utf8_lossy(&back.messages()[0].data).to_string();
    assert_eq!(back.messages()[0].mail_from, "", "bounces use the null sender");
    assert_eq!(back.messages()[0].rcpts, vec!["alice@sender.example".to_string()]);
    assert!(bounce.contains("Final-Recipient: rfc822; nobody@example.com"), "{bounce}");
    assert!(!bounce.contains("Final-Recipient: rfc822; bob@example.com"), "{bounce}");
    assert!(bounce.contains(&reference), "{bounce}");
    eventually("the spool is empty", Duration::from_secs(5), || g.db.spool_list(None, 10).unwrap().is_empty()).await;
    // Once: nothing more arrives over several retry periods.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(back.messages().len(), 1);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_copy_waits_for_its_hop_and_a_refused_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let hop = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let outside = dead_port();
    let (g, addr) = gateway(dir.path(), hop.addr(), outside).await;
    assert_eq!(send(addr, "lawyer@firm.example", &["bob@example.com"], "subpoena one").await.0, 250);
    assert_eq!(hop.messages().len(), 1);
    let pending = g.db.spool_list(Some("pending"), 10).unwrap();
    assert_eq!(pending.len(), 1, "the copy is spooled at the 250");
    assert_eq!((pending[0].kind.as_str(), pending[0].recipient.as_str()), ("copy", "archive@elsewhere.example"));
    eventually("retried with back-off", Duration::from_secs(10), || {
        g.db.spool_list(Some("pending"), 10).unwrap().first().is_some_and(|i| i.attempts >= 3)
    })
    .await;
    let item = &g.db.spool_list(Some("pending"), 10).unwrap()[0];
    assert!(item.last_error.is_some(), "{item:?}");

    let archive = Sink::start(outside, true).await.unwrap();
    eventually("the copy arrived", Duration::from_secs(10), || archive.messages().len() == 1).await;
    let copy = &archive.messages()[0];
    assert_eq!(copy.mail_from, "lawyer@firm.example");
    assert_eq!(copy.rcpts, vec!["archive@elsewhere.example".to_string()]);
    assert!(String::from_utf8_lossy(&copy.data).contains("Subject: subpoena one"));
    eventually("the spool is empty", Duration::from_secs(5), || g.db.spool_list(None, 10).unwrap().is_empty()).await;

    // Refused for good: ends at the first attempt, kept as failed, not retried.
    archive.set_behaviour(Behaviour { data_reply: Some((550, "5.7.1 archive full".into())), ..Default::default() });
    assert_eq!(send(addr, "lawyer@firm.example", &["bob@example.com"], "subpoena two").await.0, 250);
    eventually("the refused copy is given up", Duration::from_secs(5), || {
        g.db.spool_list(Some("failed"), 10).unwrap().len() == 1
    })
    .await;
    let failed = &g.db.spool_list(Some("failed"), 10).unwrap()[0];
    assert_eq!(failed.attempts, 1);
    assert!(failed.last_error.as_deref().unwrap_or("").contains("archive full"), "{failed:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(g.db.spool_list(Some("failed"), 10).unwrap()[0].attempts, 1, "not retried");
    assert!(g.db.spool_list(Some("pending"), 10).unwrap().is_empty());
    assert_eq!(archive.messages().len(), 1);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_tmp_leftovers_older_than_36_hours_are_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("maildir/carol@local.test/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let old = tmp.join("1700000000.M1P1Q1.mailsift");
    let fresh = tmp.join("1700000001.M1P1Q2.mailsift");
    let older_than_37h = std::time::SystemTime::now() - Duration::from_secs(37 * 3600);
    let almost = std::time::SystemTime::now() - Duration::from_secs(35 * 3600);
    for (path, when) in [(&old, older_than_37h), (&fresh, almost)] {
        let f = std::fs::File::create(path).unwrap();
        f.set_modified(when).unwrap();
    }
    // The sweep alone.
    assert_eq!(
        mailsift_smtp::deliver::sweep_maildir_tmp(&dir.path().join("maildir"), Duration::from_secs(36 * 3600)),
        1
    );
    assert!(!old.exists() && fresh.exists());
    // And the gateway's runner does it at start.
    let again = tmp.join("1700000002.M1P1Q3.mailsift");
    std::fs::File::create(&again).unwrap().set_modified(older_than_37h).unwrap();
    let hop = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let (g, _) = gateway(dir.path(), hop.addr(), dead_port()).await;
    eventually("the runner swept tmp/", Duration::from_secs(5), || !again.exists()).await;
    assert!(fresh.exists(), "a file younger than 36 hours may still be being written");
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_maildir_is_a_local_error_that_names_no_path() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the recipient's Maildir should be: no directory can be made there (root included).
    std::fs::create_dir_all(dir.path().join("maildir")).unwrap();
    std::fs::write(dir.path().join("maildir/dave@local.test"), b"not a directory").unwrap();
    let hop = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let (g, addr) = gateway(dir.path(), hop.addr(), dead_port()).await;
    let (code, text) = send(addr, "alice@sender.example", &["dave@local.test"], "hello dave").await;
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("4.3.0") && text.contains("Local error"), "{text}");
    assert!(!text.contains("4.4.1") && !text.contains("Next hop"), "{text}");
    let data_dir = dir.path().display().to_string();
    assert!(!text.contains(&data_dir) && !text.contains("maildir") && !text.contains('/'), "{text}");
    // The operator's log row has the reason.
    let log = g.db.log_search(&LogQuery::default()).unwrap();
    assert_eq!(log[0].action, "tempfail");
    assert!(log[0].reason.as_deref().unwrap_or("").contains("maildir write failed"), "{log:?}");
    // Another recipient's Maildir works.
    assert_eq!(send(addr, "alice@sender.example", &["erin@local.test"], "hello erin").await.0, 250);
    assert_eq!(std::fs::read_dir(dir.path().join("maildir/erin@local.test/new")).unwrap().count(), 1);
    g.shutdown();
}
