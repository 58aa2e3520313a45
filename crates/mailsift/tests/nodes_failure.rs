//! Two `mailsift serve` nodes on one private PostgreSQL, under SMTP load, while something fails: the
//! PostgreSQL restarts (a clean stop, or a crash), or one node is killed with SIGKILL. Every message's final
//! reply is recorded; afterwards every message answered 250 must be found where the gateway promises it
//! (delivered into the node's Maildir, found by its Message-ID, or in the shared quarantine, found by its
//! subject), refusals during the outage must be 4xx, and the nodes must take mail again by themselves.
//! The quarantine digest is sent once by the holder of the `digest` lease, and a SIGKILLed holder's
//! schedule is taken over once its lease has run out.
//!
//! Everything is real and on loopback: SMTP over TCP, `mailsift serve` processes, a private PostgreSQL
//! (mailsift-testkit). Without PostgreSQL installed the tests are skipped, and under CI=true they fail.
//! Every load loop is bounded in messages and in time. Run with `-- --nocapture` to see the figures.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mailsift_testkit::postgres::Postgres;
use mailsift_testkit::Proc;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    // Warnings only (an outage makes thousands of lines), but the digest's runs, which say which node ran a
    // period.
    c.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "warn,mailsift_web::digest=info");
    c
}

/// One node: its data directory (with the process's log, `serve.log`) and configuration, the serve
/// process and its SMTP address.
struct Node {
    data: PathBuf,
    config: PathBuf,
    smtp: SocketAddr,
    serve: Proc,
}

impl Node {
    /// A node in a fresh data directory; its configuration says `extra` after the shared tables.
    fn start(name: &str, url: &str, extra: &str) -> Node {
        let data = mailsift_testkit::temp_dir("mailsift-nodes-failure", name);
        let config = data.join("mailsift.toml");
        std::fs::write(
            &config,
            format!(
                // Reputation off: thousands of messages from one address, a third of them held, would give
                // that sender a bad name within the run and turn held messages into rejections (reputation's
                // own outage behaviour is tested in mailsift-store's reputation_shared).
                "[group_caps]\ncontent = 100.0\n\
                 [[rules]]\nname = \"HOLD_WORD\"\ntarget = \"subject\"\nphrase = \"holdme\"\nscore = 11.0\n\
                 [reputation]\nenabled = false\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n{extra}"
            ),
        )
        .unwrap();
        Node::start_in(data, config)
    }

    /// A node on an existing data directory and configuration (a restart after a crash).
    fn start_in(data: PathBuf, config: PathBuf) -> Node {
        let mut cmd = bin();
        cmd.arg("--data-dir").arg(&data).arg("--config").arg(&config);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
        // The node's own log (an outage makes thousands of lines) goes to a file beside its data, appended
        // to across restarts.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("serve.log")).unwrap();
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let smtp = line.rsplit(' ').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("no address in {line:?}"));
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        Node { data, config, smtp, serve: Proc(child) }
    }

    /// SIGKILL, as a crash or the OOM killer: no shutdown, no lease given up.
    fn kill(&mut self) {
        self.serve.0.kill().unwrap();
        self.serve.0.wait().unwrap();
    }

    fn cli(&self, args: &[&str]) -> Output {
        bin().arg("--data-dir").arg(&self.data).arg("--config").arg(&self.config).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The texts of the messages delivered to `rcpt` in this node's Maildir.
    fn delivered(&self, rcpt: &str) -> Vec<String> {
        maildir_texts(&self.data.join("maildir").join(rcpt).join("new"))
    }
}

fn maildir_texts(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()).into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The Message-ID of a delivered message (the first such header).
fn message_id(text: &str) -> Option<String> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .map(|l| l["message-id:".len()..].trim().to_string())
}

/// The subjects of every quarantined message, as listed through `node`'s CLI (the shared quarantine).
fn quarantined_subjects(node: &Node) -> Vec<String> {
    node.ok(&["quarantine", "list", "--json", "--all", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["subject"].as_str().unwrap_or("").to_string())
        .collect()
}

/// How one message ended for its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// The final reply to the message (or the first reply that was not the expected one).
    Code(u16),
    /// No connection: nothing listens (a killed node).
    NoConnection,
    /// The connection closed, or stayed silent past the deadline, before the final reply.
    Dropped,
}

/// How long a message may take, connection to final reply, before it counts as [`Reply::Dropped`].
const MESSAGE_DEADLINE: Duration = Duration::from_secs(12);

/// Sends one message (Message-ID `<id@sender.example>`) to bob@localhost; how it ended.
fn send(to: SocketAddr, subject: &str, id: &str) -> Reply {
    let Ok(tcp) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else { return Reply::NoConnection };
    let deadline = Instant::now() + MESSAGE_DEADLINE;
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    let mut reply = |w: &TcpStream| -> Option<u16> {
        loop {
            let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            w.set_read_timeout(Some(left)).ok()?;
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 || line.len() < 4 {
                return None;
            }
            if line.as_bytes()[3] != b'-' {
                return line[..3].parse().ok();
            }
        }
    };
    let msg = format!(
        "From: alice@sender.example\r\nTo: bob@localhost\r\nSubject: {subject}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}@sender.example>\r\n\r\n\
         Hello,\r\nthis is {subject}.\r\n.\r\n"
    );
    match reply(&w) {
        Some(220) => {}
        Some(code) => return Reply::Code(code),
        None => return Reply::Dropped,
    }
    for (line, want) in [
        ("EHLO client.sender.example", 250),
        ("MAIL FROM:<alice@sender.example>", 250),
        ("RCPT TO:<bob@localhost>", 250),
        ("DATA", 354),
    ] {
        if w.write_all(format!("{line}\r\n").as_bytes()).is_err() {
            return Reply::Dropped;
        }
        match reply(&w) {
            Some(code) if code == want => {}
            Some(code) => return Reply::Code(code),
            None => return Reply::Dropped,
        }
    }
    if w.write_all(msg.as_bytes()).is_err() {
        return Reply::Dropped;
    }
    let last = match reply(&w) {
        Some(code) => Reply::Code(code),
        None => Reply::Dropped,
    };
    let _ = w.write_all(b"QUIT\r\n");
    last
}

/// One message of a load run.
#[derive(Debug, Clone)]
struct Sent {
    node: usize,
    subject: String,
    id: String,
    /// Quarantined by the HOLD_WORD rule (a quarantine write in the store is needed to answer it 250).
    hold: bool,
    reply: Reply,
    /// When it started and ended, from the start of the run.
    started: Duration,
    ended: Duration,
}

/// Messages one load thread sends at most.
const MAX_PER_THREAD: usize = 2_000;
/// A load runs at most this long, whatever else happens.
const MAX_LOAD: Duration = Duration::from_secs(25);

/// `threads` senders per node send numbered messages (every third one to be held in the quarantine) until
/// `stop` is set, [`MAX_LOAD`] has passed since `t0` or each has sent [`MAX_PER_THREAD`]. `tag` keeps runs
/// apart.
fn load(nodes: &[SocketAddr], threads: usize, tag: &str, t0: Instant, stop: &AtomicBool) -> Vec<Sent> {
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for (node, &addr) in nodes.iter().enumerate() {
            for t in 0..threads {
                workers.push(s.spawn(move || {
                    let mut sent = Vec::new();
                    for n in 0..MAX_PER_THREAD {
                        if stop.load(Ordering::Relaxed) || t0.elapsed() >= MAX_LOAD {
                            break;
                        }
                        let hold = n % 3 == 0;
                        let id = format!("{tag}-{node}-{t}-{n}");
                        let subject = format!("{} {id}", if hold { "holdme" } else { "plain" });
                        let started = t0.elapsed();
                        let reply = send(addr, &subject, &id);
                        if reply == Reply::NoConnection {
                            // A dead node: do not spin on connection refusals.
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        sent.push(Sent { node, subject, id, hold, reply, started, ended: t0.elapsed() });
                    }
                    sent
                }));
            }
        }
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    })
}

/// Where the messages answered 250 were found, by node: the Maildir's Message-IDs (with how many times
/// each was delivered) and the shared quarantine's subjects.
struct Found {
    delivered: Vec<HashMap<String, usize>>,
    quarantined: HashSet<String>,
}

impl Found {
    fn look(nodes: &[&Node]) -> Found {
        let delivered = nodes
            .iter()
            .map(|n| {
                let mut ids = HashMap::new();
                for text in n.delivered("bob@localhost") {
                    if let Some(id) = message_id(&text) {
                        *ids.entry(id).or_insert(0) += 1;
                    }
                }
                ids
            })
            .collect();
        Found { delivered, quarantined: quarantined_subjects(nodes[0]).into_iter().collect() }
    }

    /// Whether `m` is where a 250 promises it: quarantined if the rule held it, else in its node's Maildir.
    fn has(&self, m: &Sent) -> bool {
        if m.hold {
            self.quarantined.contains(&m.subject)
        } else {
            self.delivered[m.node].contains_key(&format!("<{}@sender.example>", m.id))
        }
    }
}

/// Counts of replies, for the report and for failure messages.
fn tally(sent: &[Sent]) -> String {
    let count = |f: &dyn Fn(&Sent) -> bool| sent.iter().filter(|m| f(m)).count();
    let code = |m: &Sent, lo: u16, hi: u16| matches!(m.reply, Reply::Code(c) if (lo..hi).contains(&c));
    format!(
        "{} sent ({} to be held): {} answered 250 ({} held), {} 4xx ({} held), {} 5xx, {} dropped, {} no connection",
        sent.len(),
        count(&|m| m.hold),
        count(&|m| m.reply == Reply::Code(250)),
        count(&|m| m.hold && m.reply == Reply::Code(250)),
        count(&|m| code(m, 400, 500)),
        count(&|m| m.hold && code(m, 400, 500)),
        count(&|m| code(m, 500, 600)),
        count(&|m| m.reply == Reply::Dropped),
        count(&|m| m.reply == Reply::NoConnection),
    )
}

/// Asserts every message answered 250 is where the gateway promised it; returns how many were found.
fn assert_all_accepted_found(sent: &[Sent], found: &Found, what: &str) -> usize {
    let accepted: Vec<&Sent> = sent.iter().filter(|m| m.reply == Reply::Code(250)).collect();
    let missing: Vec<&str> = accepted.iter().filter(|m| !found.has(m)).map(|m| m.subject.as_str()).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} messages answered 250 are neither delivered nor quarantined: {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(20)]
    );
    accepted.len()
}

/// Sends numbered probes (held in the quarantine if `hold`) to `addr` until one is answered 250, for at most
/// about `limit`; how long that took (`None`: never), and the probes, to be accounted for like the load.
fn accepts_again(
    addr: SocketAddr,
    hold: bool,
    tag: &str,
    node: usize,
    limit: Duration,
) -> (Option<Duration>, Vec<Sent>) {
    let start = Instant::now();
    let mut sent = Vec::new();
    for n in 0..200 {
        let id = format!("{tag}-probe-{node}-{n}");
        let subject = format!("{} {id}", if hold { "holdme" } else { "plain" });
        let reply = send(addr, &subject, &id);
        let at = start.elapsed();
        sent.push(Sent { node, subject, id, hold, reply, started: at, ended: at });
        if reply == Reply::Code(250) {
            return (Some(at), sent);
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (None, sent)
}

/// How the PostgreSQL goes away in the middle of the load.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// A clean, fast shutdown (sessions ended, checkpoint written).
    Stop,
    /// SIGKILL to every server process; the next start runs crash recovery.
    Kill,
}

fn postgres_restart_under_load(outage: Outage, database: &str) {
    let Some(mut pg) = Postgres::start() else { return };
    let url = pg.create_database(database);
    let a = Node::start(&format!("{database}-a"), &url, "");
    let b = Node::start(&format!("{database}-b"), &url, "");
    let nodes = [a.smtp, b.smtp];

    // Load on both nodes; PostgreSQL goes away at 2 s for 2 s, then comes back; right after, each node is
    // probed until it quarantines again (a write the store must take); the load goes on 2 s more.
    let t0 = Instant::now();
    let stop = AtomicBool::new(false);
    let (sent, (down_at, down), (restarting, up_at), recovery) = std::thread::scope(|s| {
        let load = s.spawn(|| load(&nodes, 2, database, t0, &stop));
        std::thread::sleep(Duration::from_secs(2));
        let down_at = t0.elapsed();
        match outage {
            Outage::Stop => pg.stop(),
            Outage::Kill => pg.kill(),
        }
        // From here on the server is gone (the stop or kill has returned).
        let down = t0.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        // The server may take connections before start_again returns (it waits until it does): "down" is
        // until the restart began.
        let restarting = t0.elapsed();
        pg.start_again();
        let up_at = t0.elapsed();
        let probes: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let tag = database.to_string();
                s.spawn(move || accepts_again(addr, true, &tag, i, Duration::from_secs(10)))
            })
            .collect();
        let mut recovery = Vec::new();
        let mut sent = Vec::new();
        for p in probes {
            let (took, probes) = p.join().unwrap();
            recovery.push(took);
            sent.extend(probes);
        }
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        sent.extend(load.join().unwrap());
        (sent, (down_at, down), (restarting, up_at), recovery)
    });
    let summary = tally(&sent);
    eprintln!(
        "PostgreSQL {outage:?} at {down_at:.1?} (gone at {down:.1?}), up again at {up_at:.1?}: {summary}; quarantine writes again \
         after {recovery:?} (A, B)"
    );

    // Both nodes took a message that needs the store again by themselves, within 10 s of the restart.
    for (node, took) in ["A", "B"].iter().zip(&recovery) {
        assert!(took.is_some(), "node {node} did not quarantine again within 10 s of the restart: {summary}");
    }
    // No permanent refusal, no connection dropped without an answer, no node down.
    let bad: Vec<&Sent> = sent.iter().filter(|m| !matches!(m.reply, Reply::Code(250 | 400..=499))).collect();
    assert!(bad.is_empty(), "answers other than 250 or 4xx: {:?}\n{summary}", &bad[..bad.len().min(10)]);
    // A 4xx only from the outage on: before it, every message was taken.
    let early: Vec<&Sent> = sent.iter().filter(|m| m.ended < down_at && m.reply != Reply::Code(250)).collect();
    assert!(early.is_empty(), "refused before PostgreSQL went away: {:?}", &early[..early.len().min(10)]);
    // The outage was felt: messages to be held were sent while the server was down and were deferred
    // (without this the test would pass with the store never touched).
    let during = |m: &&Sent| m.started > down && m.ended < restarting;
    let held_during: Vec<&Sent> = sent.iter().filter(|m| m.hold).filter(during).collect();
    assert!(!held_during.is_empty(), "no message to be held was sent during the outage: {summary}");
    assert!(
        held_during.iter().all(|m| m.reply != Reply::Code(250)),
        "a quarantine write was answered 250 while PostgreSQL was down: {:?}",
        held_during.iter().filter(|m| m.reply == Reply::Code(250)).collect::<Vec<_>>()
    );

    // Every message answered 250 is delivered or quarantined.
    let found = Found::look(&[&a, &b]);
    let accepted = assert_all_accepted_found(&sent, &found, &format!("{outage:?}"));
    // What the message log kept of them (measured, not promised: a delivered message's row is written
    // after the delivery, and a failure to write it is logged, not turned into a 4xx).
    let logged: HashSet<String> =
        pg.psql_in(database, "SELECT subject FROM message_log").unwrap().lines().map(str::to_string).collect();
    let unlogged: Vec<&Sent> =
        sent.iter().filter(|m| m.reply == Reply::Code(250) && !logged.contains(&m.subject)).collect();
    // The log writer (a connection of its own) recovered by itself too: what was sent once both nodes
    // quarantined again (and half a second more) has its row.
    let recovered = up_at + recovery.iter().flatten().max().copied().unwrap_or_default() + Duration::from_millis(500);
    let late: Vec<&&Sent> = unlogged.iter().filter(|m| m.started > recovered).collect();
    assert!(late.is_empty(), "no log row for messages sent after the recovery: {:?}", &late[..late.len().min(10)]);
    // Before the outage every answered message's row was committed before its answer.
    let before: Vec<&&Sent> = unlogged.iter().filter(|m| m.ended < down_at).collect();
    assert!(
        before.is_empty(),
        "no log row for messages answered before the outage: {:?}",
        &before[..before.len().min(10)]
    );
    let unlogged = unlogged.len();
    let duplicates: usize = found.delivered.iter().flat_map(|d| d.values()).filter(|&&n| n > 1).count();
    eprintln!(
        "PostgreSQL {outage:?}: all {accepted} messages answered 250 found ({} delivered ids, {} quarantined); \
         {unlogged} of them have no message-log row; {duplicates} delivered twice",
        found.delivered.iter().map(HashMap::len).sum::<usize>(),
        found.quarantined.len()
    );

    // The policy watcher (each node reads the shared policy version each second) came back too: a block
    // added through B decides A's next message within a few seconds.
    b.ok(&["lists", "add", "block", "sender.example", "--action", "reject"]);
    let added = Instant::now();
    let mut code = Reply::Code(0);
    for n in 0..100 {
        code = send(a.smtp, "plain after the block", &format!("{database}-blocked-{n}"));
        if code == Reply::Code(550) || added.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(code, Reply::Code(550), "A still accepts the sender B blocked after the restart");
    eprintln!("PostgreSQL {outage:?}: a block added through B refused at A after {:.1?}", added.elapsed());

    // The rows that could not be written during the outage were kept in each node's data directory and are
    // written once the database answers: in the end every message answered 250 has its log row.
    let kept = Instant::now();
    let missing = loop {
        let logged: HashSet<String> =
            pg.psql_in(database, "SELECT subject FROM message_log").unwrap().lines().map(str::to_string).collect();
        let missing: Vec<&Sent> =
            sent.iter().filter(|m| m.reply == Reply::Code(250) && !logged.contains(&m.subject)).collect();
        if missing.is_empty() || kept.elapsed() > Duration::from_secs(20) {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        missing.is_empty(),
        "{} messages answered 250 still have no log row {:?} after the outage: {:?}",
        missing.len(),
        kept.elapsed(),
        &missing[..missing.len().min(10)]
    );
    // The outage did cost the log writes (without this the check above would pass with nothing kept).
    let spilled: usize = [&a, &b]
        .iter()
        .map(|n| {
            std::fs::read_to_string(n.data.join("serve.log"))
                .unwrap_or_default()
                .matches("row kept to write later")
                .count()
        })
        .sum();
    assert!(spilled > 0, "no log row had to be kept during the outage: {summary}");
    eprintln!(
        "PostgreSQL {outage:?}: {spilled} log rows kept on disk during the outage; every row present {:.1?} after \
         the block check ({unlogged} missing at the first look)",
        kept.elapsed()
    );
    for n in [&a, &b] {
        assert!(!n.data.join("log-spill.jsonl").exists(), "{} still holds a spill file", n.data.display());
    }
}

#[test]
fn a_postgres_restart_under_load_loses_nothing_answered_250_and_the_nodes_recover_by_themselves() {
    postgres_restart_under_load(Outage::Stop, "restart_stop");
}

#[test]
fn a_postgres_crash_under_load_loses_nothing_answered_250_and_the_nodes_recover_by_themselves() {
    postgres_restart_under_load(Outage::Kill, "restart_kill");
}

#[test]
fn a_node_killed_under_load_loses_nothing_it_answered_250_and_the_other_keeps_answering() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("node_kill");
    let mut a = Node::start("node-kill-a", &url, "");
    let b = Node::start("node-kill-b", &url, "");
    let nodes = [a.smtp, b.smtp];

    // Load on both nodes for 6 s; A is SIGKILLed at 2 s, with messages in flight.
    let t0 = Instant::now();
    let stop = AtomicBool::new(false);
    let (sent, killed_at) = std::thread::scope(|s| {
        let load = s.spawn(|| load(&nodes, 2, "node_kill", t0, &stop));
        std::thread::sleep(Duration::from_secs(2));
        a.kill();
        let killed_at = t0.elapsed();
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::Relaxed);
        (load.join().unwrap(), killed_at)
    });
    let (to_a, to_b): (Vec<Sent>, Vec<Sent>) = sent.iter().cloned().partition(|m| m.node == 0);
    let (sum_a, sum_b) = (tally(&to_a), tally(&to_b));
    eprintln!("node A SIGKILLed at {killed_at:.1?}; A: {sum_a}; B: {sum_b}");

    // B answered every message 250, while A died and after.
    assert!(!to_b.is_empty() && to_b.iter().all(|m| m.reply == Reply::Code(250)), "B: {sum_b}");
    assert!(to_b.iter().any(|m| m.started > killed_at), "B was not loaded after A died: {sum_b}");
    // A answered nothing but 250 before it died, and nothing at all after.
    assert!(to_a.iter().any(|m| m.reply == Reply::Code(250)), "A: {sum_a}");
    let odd: Vec<&Sent> =
        to_a.iter().filter(|m| !matches!(m.reply, Reply::Code(250) | Reply::Dropped | Reply::NoConnection)).collect();
    assert!(odd.is_empty(), "A answered otherwise: {odd:?}");

    // A restarted on the same data directory and PostgreSQL takes mail again; then everything either node
    // answered 250 is in its Maildir or in the quarantine.
    let data = a.data.clone();
    let config = a.config.clone();
    let tmp_left =
        std::fs::read_dir(data.join("maildir").join("bob@localhost").join("tmp")).map(|d| d.count()).unwrap_or(0);
    let a = Node::start_in(data, config);
    let (took, probes) = accepts_again(a.smtp, true, "node_kill", 0, Duration::from_secs(10));
    assert!(took.is_some(), "A restarted does not quarantine: {probes:?}");
    let mut sent = sent;
    sent.extend(probes);
    let found = Found::look(&[&a, &b]);
    let accepted = assert_all_accepted_found(&sent, &found, "node kill");
    let in_flight = to_a.iter().filter(|m| m.reply == Reply::Dropped).count();
    // Measured, not promised either way: a message whose answer the kill cut off may be kept (the sender's
    // retry then makes a second copy, which loses nothing).
    let kept = to_a.iter().filter(|m| m.reply == Reply::Dropped && found.has(m)).count();
    eprintln!(
        "node kill: all {accepted} messages answered 250 found; {in_flight} in flight at the kill got no answer \
         ({kept} of them kept anyway); \
         {tmp_left} files left in A's maildir tmp/; A restarted took mail after {took:?}"
    );
}

/// The subject lines of the quarantine digests delivered to bob@localhost at `node`.
fn digests(node: &Node) -> Vec<String> {
    node.delivered("bob@localhost")
        .iter()
        .filter_map(|t| {
            t.lines()
                .take_while(|l| !l.is_empty())
                .find(|l| l.starts_with("Subject: Quarantine digest"))
                .map(str::to_string)
        })
        .collect()
}

/// Waits (at most `limit`) until the nodes together have delivered `want` digests, then `settle` more, so a
/// second sender would show; the digests found per node.
fn digests_after(nodes: &[&Node], want: usize, limit: Duration, settle: Duration) -> Vec<Vec<String>> {
    let start = Instant::now();
    while start.elapsed() < limit && nodes.iter().map(|n| digests(n).len()).sum::<usize>() < want {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(settle);
    nodes.iter().map(|n| digests(n)).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn the_digest_goes_out_once_from_the_lease_holder_and_a_killed_holders_schedule_is_taken_over() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("digest");
    let psql = |sql: &str| pg.psql_in("digest", sql).unwrap_or_else(|e| panic!("{sql}: {e}"));

    // Three messages held for bob, quarantined through a node that sends no digests (and so holds no lease).
    {
        let seed = Node::start("digest-seed", &url, "[web.digest]\nenabled = false\n");
        for n in 0..3 {
            assert_eq!(send(seed.smtp, &format!("holdme first {n}"), &format!("first-{n}")), Reply::Code(250));
        }
    }
    assert_eq!(psql("SELECT count(*) FROM leases"), "0");

    // Two nodes start together; both run the digest's schedule (due: it never ran), only the lease's holder
    // sends, once. A lease of 3 s (renewed each second) lets the takeover below happen in real time.
    let lease = "[web.digest]\nlease_secs = 3\n";
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Node::start("digest-a", &url, lease));
        let b = s.spawn(|| Node::start("digest-b", &url, lease));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut nodes = [a, b];
    // The holder is read as soon as the digest shows (a 3 s lease can change hands on a machine busy enough
    // to delay a renewal, so not after the settling time), then the settling time shows any second sender.
    digests_after(&[&nodes[0], &nodes[1]], 1, Duration::from_secs(10), Duration::ZERO);
    let holder = psql("SELECT holder FROM leases WHERE name = 'digest'");
    std::thread::sleep(Duration::from_secs(2));
    let first: Vec<Vec<String>> = nodes.iter().map(digests).collect();
    assert_eq!(first.iter().map(Vec::len).sum::<usize>(), 1, "digests sent by A and B: {first:?}");
    let pid: u32 = holder.split(':').next().unwrap().parse().unwrap_or_else(|_| panic!("lease holder {holder:?}"));
    let h = nodes.iter().position(|n| n.serve.0.id() == pid).unwrap_or_else(|| panic!("holder {holder} is no node"));
    // The holder ran the period (its log says so, with the three items) and the other node did not. Which
    // node's Maildir got the digest says nothing: the holder spools it and tries it at once, but the spool is
    // shared and the other node's runner may claim the row first and deliver it.
    let runs = |n: &Node| {
        let log = std::fs::read_to_string(n.data.join("serve.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("quarantine digests sent=") || l.contains("quarantine digests failed"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (held_runs, other_runs) = (runs(&nodes[h]), runs(&nodes[1 - h]));
    assert!(
        held_runs.len() == 1 && held_runs[0].contains("items=3"),
        "the lease's holder ran the period once: {held_runs:?}"
    );
    assert!(other_runs.is_empty(), "the node without the lease ran a period: {other_runs:?}");
    let sent = first.concat();
    assert!(sent[0].contains(" 3 message(s)"), "{first:?}");
    // The period's mark moved with it: the holder's next checks find nothing due.
    let last_run: i64 = psql("SELECT value FROM settings WHERE key = 'digest.last_run'").parse().unwrap();
    assert!((now_ms() / 1000 - last_run).abs() < 60, "digest.last_run {last_run}");

    // SIGKILL the holder: it cannot give its lease up, so the lease stays its own until it runs out.
    nodes[h].kill();
    assert_eq!(psql("SELECT holder FROM leases WHERE name = 'digest'"), holder, "a killed holder released its lease");
    let until: i64 = psql("SELECT until_ms FROM leases WHERE name = 'digest'").parse().unwrap();
    let survivor = &nodes[1 - h];
    for n in 0..2 {
        assert_eq!(send(survivor.smtp, &format!("holdme second {n}"), &format!("second-{n}")), Reply::Code(250));
    }
    // The next period is due (the interval is whole hours, so the mark is moved back instead of waited for).
    psql("UPDATE settings SET value = '0' WHERE key = 'digest.last_run'");

    // The survivor, checking each second, sends nothing while the dead holder's lease runs, then takes the
    // schedule over by itself and sends once: only what is new since the dead holder's run.
    let mut sent_at = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let seen = digests(survivor).len();
        let at = now_ms();
        if seen > 0 {
            assert!(at >= until - 200, "the survivor sent under the dead holder's running lease ({at} < {until})");
            sent_at = Some(at);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent_at = sent_at.expect("the survivor never took the digest over");
    assert!(sent_at - until < 3_000, "taken over {} ms after the lease ran out", sent_at - until);
    std::thread::sleep(Duration::from_secs(2));
    let after = digests(survivor);
    assert_eq!(after.len(), 1, "one digest after the takeover: {after:?}");
    assert!(after[0].contains(" 2 message(s)"), "{after:?}");
    let taken = psql("SELECT holder FROM leases WHERE name = 'digest'");
    assert!(taken.starts_with(&format!("{}:", survivor.serve.0.id())), "lease {taken}");
    eprintln!(
        "digest: one from the holder of two nodes; after its SIGKILL, the survivor sent one {} ms after the \
               dead holder's lease ran out",
        sent_at - until
    );
}
