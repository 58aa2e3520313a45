//! Two `mailsift serve` nodes on one PostgreSQL (`[store] backend = "postgres"`), each with its own data
//! directory, SMTP and HTTP ports, as two MX hosts of one organisation: what one quarantines the other lists
//! and releases, a release asked of both at once delivers once, a block added through one decides the
//! other's next message within two seconds, and an account added through one signs in on the other's
//! store. The PostgreSQL is a private one (mailsift-testkit); without PostgreSQL installed the test is
//! skipped, and under CI=true it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailsift_testkit::messages::formed;
use mailsift_testkit::postgres::Postgres;
use mailsift_testkit::Proc;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "warn");
    c
}

/// One node: its data directory and configuration, the serve process and its SMTP address.
struct Node {
    data: PathBuf,
    config: PathBuf,
    smtp: SocketAddr,
    _serve: Proc,
}

impl Node {
    fn start(name: &str, url: &str) -> Node {
        Node::start_with(name, url, "")
    }

    /// A node whose configuration also says `extra` (TOML tables after the shared ones).
    fn start_with(name: &str, url: &str, extra: &str) -> Node {
        let data = mailsift_testkit::temp_dir("mailsift-nodes", name);
        let config = data.join("mailsift.toml");
        std::fs::write(
            &config,
            format!(
                "[group_caps]\ncontent = 100.0\n\
                 [[rules]]\nname = \"HOLD_WORD\"\ntarget = \"subject\"\nphrase = \"holdme\"\nscore = 11.0\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n{extra}"
            ),
        )
        .unwrap();
        let mut cmd = bin();
        cmd.arg("--data-dir").arg(&data).arg("--config").arg(&config);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let smtp = line.rsplit(' ').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("no address in {line:?}"));
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        Node { data, config, smtp, _serve: Proc(child) }
    }

    /// A CLI command run as this node (its data directory and configuration).
    fn cli(&self, args: &[&str]) -> Output {
        bin().arg("--data-dir").arg(&self.data).arg("--config").arg(&self.config).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn delivered(&self, rcpt: &str) -> Vec<String> {
        let dir = self.data.join("maildir").join(rcpt).join("new");
        match std::fs::read_dir(&dir) {
            Ok(d) => d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Sends one message; the final reply's code.
    fn send(&self, subject: &str) -> u16 {
        self.send_text(subject, &format!("Hello,\r\nthis is {subject}."))
    }

    /// Sends one message with this text; the final reply's code.
    fn send_text(&self, subject: &str, text: &str) -> u16 {
        self.send_to("bob@localhost", subject, text)
    }

    /// Sends one message to `rcpt` (mailsift_testkit's SMTP client); the final reply's code.
    fn send_to(&self, rcpt: &str, subject: &str, text: &str) -> u16 {
        let msg = format!(
            "From: alice@sender.example\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\
             Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@sender.example>\r\n\r\n{text}\r\n",
            subject.replace(' ', "-")
        );
        mailsift_testkit::clients::smtp_send(self.smtp, "alice@sender.example", &[rcpt], msg.as_bytes()).unwrap().0
    }
}

fn quarantined(node: &Node) -> Vec<serde_json::Value> {
    node.ok(&["quarantine", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn two_nodes_on_one_postgres_share_the_quarantine_the_policy_and_the_accounts() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("nodes");
    let a = Node::start("a", &url);
    let b = Node::start("b", &url);

    // Quarantined through A, listed and shown through B.
    assert_eq!(a.send("holdme invoice"), 250);
    assert_eq!(a.send("holdme second"), 250);
    let items = quarantined(&b);
    assert_eq!(items.len(), 2, "{items:?}");
    let id = items.iter().find(|i| i["subject"] == "holdme invoice").unwrap()["id"].as_i64().unwrap().to_string();
    assert!(b.ok(&["quarantine", "show", &id]).contains("this is holdme invoice"));
    // Nothing of it is in either data directory: no SQLite gateway database was made.
    for n in [&a, &b] {
        assert!(!n.data.join("mailsift.sqlite").exists(), "{} has a SQLite gateway database", n.data.display());
    }

    // A release asked of both nodes at the same moment delivers once.
    let (ra, rb) = std::thread::scope(|s| {
        let one = s.spawn(|| a.cli(&["quarantine", "release", &id]));
        let two = s.spawn(|| b.cli(&["quarantine", "release", &id]));
        (one.join().unwrap(), two.join().unwrap())
    });
    let won = [&ra, &rb].iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "A: {}\nB: {}", String::from_utf8_lossy(&ra.stderr), String::from_utf8_lossy(&rb.stderr));
    let lost = if ra.status.success() { &rb } else { &ra };
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("already released"),
        "{}",
        String::from_utf8_lossy(&lost.stderr)
    );
    let delivered = a.delivered("bob@localhost").len() + b.delivered("bob@localhost").len();
    assert_eq!(delivered, 1, "released once, delivered once");
    assert_eq!(quarantined(&a).len(), 1, "the released item left the list on every node");

    // A block added through B decides A's next message within two seconds.
    assert_eq!(a.send("plain hello"), 250);
    b.ok(&["lists", "add", "block", "sender.example", "--action", "reject"]);
    let added = Instant::now();
    let mut code = 0;
    while added.elapsed() < Duration::from_secs(5) {
        code = a.send("plain hello again");
        if code == 550 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(code, 550, "A still accepts the sender B blocked");
    assert!(added.elapsed() < Duration::from_millis(2_500), "took {:?}", added.elapsed());

    // An account added through A is B's too, and B's log search sees A's transactions.
    let mut add = bin()
        .arg("--data-dir")
        .arg(&a.data)
        .arg("--config")
        .arg(&a.config)
        .args(["accounts", "add", "ops@corp.example", "--role", "user"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"a long enough passphrase\n").unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(b.ok(&["accounts", "list"]).contains("ops@corp.example"));
    let log = b.ok(&["log", "list", "--json"]);
    assert!(log.lines().count() >= 4, "B's log search sees A's transactions: {log}");
}

const SPAM_WORDS: &[&str] =
    &["viagra", "cheap", "winner", "lottery", "claim", "prize", "casino", "pills", "offer", "bonus", "discount"];
const HAM_WORDS: &[&str] =
    &["meeting", "agenda", "patch", "review", "kernel", "compile", "thanks", "tomorrow", "budget", "merge"];

/// A message text of one vocabulary, distinct per `n`.
fn words(vocabulary: &[&str], n: usize) -> String {
    (0..30).map(|i| vocabulary[(n * 7 + i * 3) % vocabulary.len()]).collect::<Vec<_>>().join(" ")
}

/// The score and the symbols (name, points) of the newest logged message with this subject, at `node`
/// (waiting a little for the log's writer).
fn logged_symbols(node: &Node, subject: &str) -> Option<(f64, Vec<(String, f64)>)> {
    let start = Instant::now();
    let log = loop {
        let log = node.ok(&["log", "list", "--json", "--subject", subject]);
        if !log.trim().is_empty() || start.elapsed() > Duration::from_secs(3) {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let entry: serde_json::Value = serde_json::from_str(log.lines().next()?).unwrap();
    let symbols = entry["symbols"].as_array().unwrap().iter();
    let symbols = symbols.map(|s| (s["name"].as_str().unwrap().to_string(), s["score"].as_f64().unwrap_or(0.0)));
    Some((entry["score"].as_f64().unwrap(), symbols.collect()))
}

/// The score and the classifier's symbols of the newest logged message with this subject, at `node`.
fn logged(node: &Node, subject: &str) -> Option<(f64, Vec<String>)> {
    let (score, symbols) = logged_symbols(node, subject)?;
    let classifier = symbols.into_iter().map(|(name, _)| name);
    Some((score, classifier.filter(|s| s.starts_with("BAYES") || s.starts_with("LINEAR")).collect()))
}

/// Writes `count` ham and as many spam (`text(spam, n)`) under a fresh corpus directory and has `node`'s CLI
/// train them: what an installation does with its own sorted mail. Returns the corpus directory.
fn train_corpus(node: &Node, name: &str, count: usize, text: impl Fn(bool, usize) -> String) -> PathBuf {
    let corpus = mailsift_testkit::temp_dir("mailsift-nodes", name);
    for (side, spam) in [("ham", false), ("spam", true)] {
        std::fs::create_dir_all(corpus.join(side)).unwrap();
        for n in 0..count {
            std::fs::write(corpus.join(side).join(format!("{n}.eml")), text(spam, n)).unwrap();
        }
    }
    let ham = corpus.join("ham").display().to_string();
    let spam = corpus.join("spam").display().to_string();
    node.ok(&["train", "--ham", &ham, "--spam", &spam]);
    corpus
}

#[test]
fn what_one_node_learns_moves_the_other_nodes_scores_within_seconds() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("learning");
    let extra = "[classifier]\nmin_ham = 5\nmin_spam = 5\nday_one_say = 0.0\n";
    let a = Node::start_with("learn-a", &url, extra);
    let b = Node::start_with("learn-b", &url, extra);

    // Training through A's installation (the CLI with A's configuration) goes to the shared store.
    let corpus = train_corpus(&a, "corpus", 20, |spam, n| {
        let (side, vocabulary) = if spam { ("spam", SPAM_WORDS) } else { ("ham", HAM_WORDS) };
        format!(
            "From: x{n}@{side}.example\r\nTo: bob@localhost\r\nSubject: {side} {n}\r\n\
             Message-ID: <{n}@{side}.example>\r\n\r\n{}\r\n",
            words(vocabulary, n)
        )
    });

    // A newsletter in the spam vocabulary that its readers want. Both running nodes pulled the model
    // the CLI trained: B scores the message as spam.
    let newsletter = words(SPAM_WORDS, 1000);
    let trained = Instant::now();
    let first = loop {
        assert_eq!(b.send_text("newsletter issue", &newsletter), 250);
        let (score, symbols) = logged(&b, "newsletter issue").expect("B logged the message");
        if symbols.iter().any(|s| s.contains("SPAM")) {
            break score;
        }
        assert!(trained.elapsed() < Duration::from_secs(5), "B never scored with the trained model: {symbols:?}");
        std::thread::sleep(Duration::from_millis(200));
    };

    // A false-positive report at A lowers B's score for it within a couple of seconds.
    let file = corpus.join("newsletter.eml");
    std::fs::write(
        &file,
        format!(
            "From: alice@sender.example\r\nTo: bob@localhost\r\nSubject: newsletter issue\r\n\
             Message-ID: <newsletter-issue@sender.example>\r\n\r\n{newsletter}\r\n"
        ),
    )
    .unwrap();
    a.ok(&["report", "--false-positive", &file.display().to_string()]);
    let reported = Instant::now();
    let (after, symbols) = loop {
        assert_eq!(b.send_text("newsletter issue", &newsletter), 250);
        let (score, symbols) = logged(&b, "newsletter issue").expect("B logged the message");
        if score < first || reported.elapsed() > Duration::from_secs(5) {
            break (score, symbols);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(after < first, "the report at A did not move B's score ({first} -> {after}, {symbols:?})");
    assert!(reported.elapsed() < Duration::from_millis(3_000), "took {:?}", reported.elapsed());
    // The report is one submission in the shared store, listed by either node.
    let reports = b.ok(&["reports"]);
    assert!(reports.starts_with("1 report(s)"), "{reports}");
    assert!(reports.contains("sender.example"), "{reports}");
}

/// The local head through the running gateway: trained by the CLI at node A on mail addressed to the
/// organisation, node B (sharing the store) scores a spam program's form over SMTP with LOCAL_FORM_SPAM, and
/// the same message addressed in its To: to another organisation gets nothing from the head.
#[test]
fn the_local_head_trained_at_one_node_speaks_at_the_other_over_smtp() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("local_head");
    let extra = "[classifier]\nday_one_say = 0.0\n";
    let a = Node::start_with("local-a", &url, extra);
    let b = Node::start_with("local-b", &url, extra);
    let _ = train_corpus(&a, "local-corpus", 210, |spam, n| formed(spam, n, "bob@ours.example", &format!("note {n}")));

    // The head's symbols that scored, for a spam program's message addressed (in its To:) to `to`.
    let local_symbols = |to: &str, n: usize| -> Vec<(String, f64)> {
        let raw = formed(true, n, to, &format!("probe {n}"));
        let (code, text) =
            mailsift_testkit::clients::smtp_send(b.smtp, "bert@shop.example", &["bob@localhost"], raw.as_bytes())
                .unwrap();
        // Accepted, or refused as spam at the door: judged and logged either way.
        assert!(code == 250 || code == 550, "{code} {text}");
        let (_, symbols) = logged_symbols(&b, &format!("probe {n}")).expect("logged");
        symbols.into_iter().filter(|(name, score)| name.starts_with("LOCAL_FORM") && *score != 0.0).collect()
    };
    let trained = Instant::now();
    let mut n = 1000;
    let ours = loop {
        let symbols = local_symbols("carol@ours.example", n);
        if !symbols.is_empty() || trained.elapsed() > Duration::from_secs(5) {
            break symbols;
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        ours.iter().any(|(s, points)| s == "LOCAL_FORM_SPAM" && *points > 0.0),
        "B never scored with the head: {ours:?}"
    );
    // Another organisation's mail (as its To: says): the head never learned what its correspondents write.
    assert_eq!(local_symbols("carol@elsewhere.example", n + 1), Vec::new());
}

/// Spamtrap hits at node A make the sender's reputation bad at node B: through a shared Redis, and without
/// Redis through the shared PostgreSQL table.
#[test]
fn spamtrap_hits_at_one_node_spoil_the_senders_reputation_at_the_other() {
    let Some(pg) = Postgres::start() else { return };
    let Some(redis) = mailsift_testkit::redis::Redis::start() else { return };
    for (name, shared) in [("redis", format!("[redis]\nurl = \"{}\"\n", redis.url())), ("postgres", String::new())] {
        let url = pg.create_database(&format!("trap_{name}"));
        let extra = format!("[classifier]\nspamtraps = [\"trap@localhost\"]\n{shared}");
        let a = Node::start_with(&format!("trap-a-{name}"), &url, &extra);
        let b = Node::start_with(&format!("trap-b-{name}"), &url, &extra);
        for i in 0..3 {
            assert_eq!(a.send_to("trap@localhost", &format!("trap {i}"), "Cheap offer, click now."), 250);
        }
        // B's next message from that sender and address carries the bad reputation A's traps gave it.
        let start = Instant::now();
        let symbols = loop {
            let subject = format!("after the traps {}", start.elapsed().as_millis());
            assert_eq!(b.send_text(&subject, "Hello again."), 250);
            let log = b.ok(&["log", "list", "--json", "--subject", &subject]);
            let symbols: Vec<String> = log
                .lines()
                .flat_map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["symbols"].as_array().unwrap().clone()
                })
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect();
            if symbols.iter().any(|s| s == "REPUTATION_IP_BAD") || start.elapsed() > Duration::from_secs(5) {
                break symbols;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(symbols.iter().any(|s| s == "REPUTATION_IP_BAD"), "{name}: B never saw A's traps: {symbols:?}");
        assert!(symbols.iter().any(|s| s == "REPUTATION_ADDRESS_BAD"), "{name}: {symbols:?}");
        let shown = b.ok(&["reputation", "show", "127.0.0.1"]);
        assert!(shown.contains("bad"), "{name}: {shown}");
        // (B's own SQLite file was never used: the evidence is in the shared store.)
        assert!(!b.data.join("reputation.sqlite").exists(), "{name}: B kept reputation in its data directory");
    }
}

/// Redis down: mail still flows at once (reputation answers neutral within its timeout, and a node leaves a
/// dead Redis alone between attempts), and the node uses Redis again by itself when it is back.
#[test]
fn with_redis_down_mail_flows_and_reputation_comes_back_by_itself() {
    let Some(pg) = Postgres::start() else { return };
    let Some(mut redis) = mailsift_testkit::redis::Redis::start() else { return };
    let url = pg.create_database("redis_down");
    let extra = format!(
        "[classifier]\nspamtraps = [\"trap@localhost\"]\n[redis]\nurl = \"{}\"\ntimeout_ms = 200\n",
        redis.url()
    );
    let a = Node::start_with("redis-down", &url, &extra);
    assert_eq!(a.send_to("trap@localhost", "trap before", "Cheap offer."), 250);
    let recorded = Instant::now();
    while !redis.cli(&["KEYS", "mailsift:reputation:*"]).unwrap_or_default().contains("127.0.0.1") {
        assert!(recorded.elapsed() < Duration::from_secs(5), "the trap hit never reached Redis");
        std::thread::sleep(Duration::from_millis(100));
    }

    redis.stop();
    let started = Instant::now();
    for i in 0..20 {
        assert_eq!(a.send(&format!("during the outage {i}")), 250, "message {i} with Redis down");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "20 messages took {took:?} with Redis down");

    // Back (emptied, so what appears is new) and used again without the node being told.
    redis.start_again();
    redis.cli(&["FLUSHALL"]).unwrap();
    let back = Instant::now();
    loop {
        assert_eq!(a.send_to("trap@localhost", "trap after", "Cheap offer."), 250);
        let keys = redis.cli(&["KEYS", "mailsift:reputation:*"]).unwrap_or_default();
        if keys.contains("127.0.0.1") {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "reputation never reached Redis again: {keys}");
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("Redis down: 20 messages answered 250 in {took:?}; used again {:?} after its restart", back.elapsed());
}

#[test]
fn store_check_says_where_the_state_is_and_whether_this_mailsift_can_use_it() {
    // SQLite: nothing yet, then this mailsift's version.
    let data = mailsift_testkit::temp_dir("mailsift-nodes", "check-sqlite");
    let check = |data: &std::path::Path, config: Option<&std::path::Path>| {
        let mut c = bin();
        c.arg("--data-dir").arg(data);
        if let Some(f) = config {
            c.arg("--config").arg(f);
        }
        let out = c.args(["store", "check"]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (code, text) = check(&data, None);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("mailsift.sqlite") && text.contains("no database yet"), "{text}");
    // The database is made (a read command no longer makes one: see datadir.rs).
    assert!(bin().arg("--data-dir").arg(&data).args(["store", "create"]).output().unwrap().status.success());
    let (code, text) = check(&data, None);
    assert!(code == Some(0) && text.contains("this mailsift's"), "{text}");

    // PostgreSQL: the server, the extension, the version; a newer schema is a problem (exit 2), and nothing
    // was changed by looking.
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("checked");
    let config = data.join("pg.toml");
    std::fs::write(&config, format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n")).unwrap();
    let (code, text) = check(&data, Some(&config));
    assert!(code == Some(0) && text.contains("version 0, older than"), "{text}");
    assert_eq!(
        pg.psql_in("checked", "SELECT to_regclass('quarantine') IS NULL").unwrap().trim(),
        "t",
        "check migrated"
    );
    let out =
        bin().arg("--data-dir").arg(&data).arg("--config").arg(&config).args(["accounts", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, text) = check(&data, Some(&config));
    assert!(code == Some(0) && text.contains("this mailsift's") && text.contains("pg_trgm installed"), "{text}");
    assert!(text.contains("postgresql://127.0.0.1:") && !text.contains("PROBLEM"), "{text}");
    pg.psql_in("checked", "INSERT INTO mailsift_schema (version, name) VALUES (999, 'from the future')").unwrap();
    let (code, text) = check(&data, Some(&config));
    assert!(code == Some(2) && text.contains("newer than this mailsift"), "{text}");
}

/// Through the running gateway: a model trained on ours.example's mail judges mail to elsewhere.example as a
/// stranger's (its engines' spam side at half) and mail to ours.example in full. The envelope names
/// `localhost` (no organisation), so the message's recipient decides here. Bayes is sure of both probes (99%
/// and more, its full weight times the fitted multiplier), so its symbol shows the half exactly.
#[test]
fn a_model_trained_on_another_organisations_mail_speaks_with_half_a_say_over_smtp() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("stranger");
    let node = Node::start_with("stranger", &url, "[classifier]\nday_one_say = 0.0\n");
    let _ = train_corpus(&node, "stranger-corpus", 210, |spam, n| {
        formed(spam, n, "bob@ours.example", &format!("note {n}"))
    });
    // A spam program's message without its fingerprints, so that nothing but the engines speaks against it.
    let probe = |to: &str, subject: &str| -> String {
        formed(true, 900, to, subject)
            .lines()
            .filter(|l| !l.starts_with("Message-ID") && !l.starts_with("X-M"))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    // The points of BAYES_SPAM_99 in the logged verdict, if it fired.
    let bayes = |to: &str, subject: &str| -> Option<f64> {
        let (code, text) = mailsift_testkit::clients::smtp_send(
            node.smtp,
            "bert@shop.example",
            &["bob@localhost"],
            probe(to, subject).as_bytes(),
        )
        .unwrap();
        assert!(code == 250 || code == 550, "{code} {text}");
        let (_, symbols) = logged_symbols(&node, subject).expect("logged");
        symbols.into_iter().find(|(name, _)| name == "BAYES_SPAM_99").map(|(_, points)| points)
    };
    // The serving node reads the trained model from the shared store within seconds.
    let trained = Instant::now();
    let mut n = 0;
    let home = loop {
        n += 1;
        let seen = bayes("carol@ours.example", &format!("probe home {n}"));
        if seen.is_some() || trained.elapsed() > Duration::from_secs(10) {
            break seen.expect("Bayes never spoke at the node");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(home >= 4.0, "ours: {home}");
    let away = bayes("erin@elsewhere.example", "probe away").expect("Bayes speaks for elsewhere too");
    assert!((away - home / 2.0).abs() < 0.01, "elsewhere: {away} against {home} at home");
}
