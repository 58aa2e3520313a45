//! Rate limits and greylisting over real SMTP on loopback: the gateway in this process, a raw client
//! (bound to chosen loopback addresses so client networks differ), Python's smtplib for AUTH over TLS, our
//! sink as the next hop and, for two nodes, a real private Redis (testkit). Time is moved with the
//! limiter's clock ([`mailsift_gateway::limits::Limiter::advance_clock`]), so a five-minute greylisting
//! delay passes without waiting. Every wait is bounded.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::Database;
use mailsift_testkit::redis::Redis;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

struct Node {
    gateway: Arc<Gateway>,
    inbound: SocketAddr,
    sink: Sink,
    task: tokio::task::JoinHandle<()>,
}

/// A gateway with `extra` in `[smtp]` (and tables after it), its data in `dir`.
async fn start(extra: &str, dir: &Path) -> Node {
    start_with(extra, dir, |s| s).await
}

/// As [`start`], the state changed by `f` (reputation added).
async fn start_with(extra: &str, dir: &Path, f: impl FnOnce(GatewayState) -> GatewayState) -> Node {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let hop = sink.addr();
    let hash = mailsift_smtp::auth::hash_password("s3cret-pass");
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"

[smtp.outbound]
trusted_networks = ["127.0.2.0/24"]
smarthost = "{hop}"

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[[smtp.users]]
name = "app"
password = "{hash}"

{extra}
"#
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let config = SmtpConfig::from_toml(&text).unwrap();
    let state = f(GatewayState::new(engine, config, dir).unwrap());
    let db = Database::open_in(dir).unwrap();
    let gateway = Gateway::new(state, db, dir);
    let listeners = gateway.bind().await.unwrap();
    let inbound =
        listeners.iter().find(|(_, l)| *l == Listener::Inbound).map(|(t, _)| t.local_addr().unwrap()).unwrap();
    let task = tokio::spawn(gateway.clone().serve(listeners));
    Node { gateway, inbound, sink, task }
}

impl Node {
    async fn stop(self) {
        self.gateway.shutdown();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("serve returns").unwrap();
    }
}

/// A raw SMTP client from a chosen loopback address, keeping a transcript.
struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    transcript: String,
}

impl Raw {
    async fn connect(to: SocketAddr, from: &str) -> Raw {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
        let tcp = tokio::time::timeout(Duration::from_secs(10), socket.connect(to)).await.unwrap().unwrap();
        let (r, w) = tcp.into_split();
        let mut c = Raw { r: BufReader::new(r), w, transcript: String::new() };
        assert_eq!(c.reply().await.0, 220);
        c
    }

    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line)).await.unwrap().unwrap();
            if n == 0 {
                return (0, text);
            }
            self.transcript.push_str(&format!("S: {line}"));
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.transcript.push_str(&format!("C: {line}\r\n"));
        self.w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        self.reply().await
    }

    /// One whole transaction; the reply codes of MAIL, each RCPT and (when a recipient was taken) DATA's end.
    async fn send(&mut self, from: &str, rcpts: &[&str], subject: &str) -> Vec<u16> {
        let mut codes = vec![self.cmd(&format!("MAIL FROM:<{from}>")).await.0];
        if codes[0] != 250 {
            return codes;
        }
        let mut any = false;
        for r in rcpts {
            let c = self.cmd(&format!("RCPT TO:<{r}>")).await.0;
            any |= c == 250;
            codes.push(c);
        }
        if !any {
            self.cmd("RSET").await;
            return codes;
        }
        assert_eq!(self.cmd("DATA").await.0, 354);
        let msg = format!(
            "From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{}@sender.example>\r\n\r\nHello, this is a test.\r\n.",
            rcpts[0],
            subject.replace(' ', ".")
        );
        codes.push(self.cmd(&msg).await.0);
        codes
    }
}

async fn client(node: &Node, from_ip: &str) -> Raw {
    let mut c = Raw::connect(node.inbound, from_ip).await;
    assert_eq!(c.cmd("EHLO client.sender.example").await.0, 250);
    c
}

const SENDER_RULE: &str = r#"
[[smtp.rate_limits.rule]]
key = "sender"
rate = "2/hour"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_over_its_rate_is_deferred_at_mail_never_after_data_and_others_are_not_affected() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{SENDER_RULE}\n[[smtp.rate_limits.rule]]\nkey = \"recipient\"\nrate = \"1/hour\"\n");
    let node = start(&extra, dir.path()).await;
    let mut c = client(&node, "127.0.0.1").await;
    assert_eq!(c.send("alice@sender.example", &["bob@example.com"], "one").await, [250, 250, 250]);
    // The recipient's bucket is empty now: that recipient is deferred at RCPT, another in the same
    // transaction is taken, and the message is answered 250 for it.
    assert_eq!(
        c.send("alice@sender.example", &["bob@example.com", "carol@example.com"], "two").await,
        [250, 450, 250, 250]
    );
    // The sender's bucket is empty: 451 at MAIL, before any data.
    let (code, text) = c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("451 4.7.1 Rate limit reached for this sender; try again in 30 minutes"), "{text}");
    // Others are not affected, on the same connection.
    assert_eq!(c.send("dave@sender.example", &["erin@example.com"], "three").await, [250, 250, 250]);
    assert_eq!(c.cmd("QUIT").await.0, 221);

    let got = node.sink.messages();
    let rcpts: Vec<Vec<String>> = got.iter().map(|m| m.rcpts.clone()).collect();
    assert_eq!(rcpts, [vec!["bob@example.com"], vec!["carol@example.com"], vec!["erin@example.com"]]);
    assert_eq!(node.gateway.counters.rate_limited.load(std::sync::atomic::Ordering::Relaxed), 2);
    // Half an hour later one message of the sender's is welcome again.
    node.gateway.limits.advance_clock(Duration::from_secs(1800));
    let mut c = client(&node, "127.0.0.1").await;
    assert_eq!(c.send("alice@sender.example", &["frank@example.com"], "four").await, [250, 250, 250]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_give_a_throttled_sender_its_rate_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(SENDER_RULE, dir.path()).await;
    let mut c = client(&node, "127.0.0.1").await;
    for s in ["one", "two"] {
        assert_eq!(c.send("alice@sender.example", &["bob@example.com"], s).await, [250, 250, 250]);
    }
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").await.0, 451);
    assert_eq!(c.cmd("QUIT").await.0, 221);
    node.stop().await;
    assert!(dir.path().join("limits.snapshot").exists());

    let node = start(SENDER_RULE, dir.path()).await;
    let mut c = client(&node, "127.0.0.1").await;
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").await.0, 451, "throttled across the restart");
    assert_eq!(c.send("dave@sender.example", &["bob@example.com"], "three").await, [250, 250, 250]);
    node.stop().await;
}

const GREYLISTING: &str = r#"
[smtp.greylisting]
enabled = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_defers_the_first_attempt_accepts_the_retry_after_the_delay_and_remembers() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(GREYLISTING, dir.path()).await;
    let mut c = client(&node, "127.0.0.1").await;
    assert_eq!(c.send("alice@sender.example", &["bob@example.com"], "hello").await, [250, 451]);
    assert!(c.transcript.contains(
        "S: 451 4.7.1 Greylisted: first mail from this network for this sender and recipient; please retry in 5 \
         minutes (see RFC 6647)\r\n"
    ));
    // Too early.
    node.gateway.limits.advance_clock(Duration::from_secs(120));
    assert_eq!(c.send("alice@sender.example", &["bob@example.com"], "hello").await, [250, 451]);
    assert!(c.transcript.contains("please retry in 3 minutes"), "{}", c.transcript);
    assert!(node.sink.messages().is_empty());
    // After the delay, from another address of the same /24: accepted and delivered.
    node.gateway.limits.advance_clock(Duration::from_secs(181));
    let mut c2 = client(&node, "127.0.0.9").await;
    assert_eq!(c2.send("alice@sender.example", &["bob@example.com"], "hello").await, [250, 250, 250]);
    c2.cmd("QUIT").await;
    let got = node.sink.messages();
    assert_eq!(got.len(), 1);
    println!("--- first attempts ---\n{}--- the retry ---\n{}", c.transcript, c2.transcript);
    let data = String::from_utf8_lossy(&got[0].data);
    println!("--- as delivered (head) ---\n{}", data.split("\r\n\r\n").next().unwrap());
    // Remembered: the next message of the triplet is taken at once.
    assert_eq!(c.send("alice@sender.example", &["bob@example.com"], "again").await, [250, 250, 250]);
    // Another /24 is a new triplet.
    let mut other = client(&node, "127.0.1.1").await;
    assert_eq!(other.send("alice@sender.example", &["bob@example.com"], "other net").await, [250, 451]);
    assert_eq!(node.gateway.counters.greylisted.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(node.sink.messages().len(), 2);

    // The triplet survives a restart.
    c.cmd("QUIT").await;
    other.cmd("QUIT").await;
    node.stop().await;
    let node = start(GREYLISTING, dir.path()).await;
    let mut c = client(&node, "127.0.0.1").await;
    assert_eq!(c.send("alice@sender.example", &["bob@example.com"], "after restart").await, [250, 250, 250]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_is_off_by_default_and_skips_trusted_networks_and_authenticated_users() {
    let dir = tempfile::tempdir().unwrap();
    let node = start("", dir.path()).await;
    let mut c = client(&node, "127.0.0.1").await;
    assert_eq!(c.send("alice@sender.example", &["bob@example.com"], "default").await, [250, 250, 250]);
    node.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let node = start(GREYLISTING, dir.path()).await;
    let mut trusted = client(&node, "127.0.2.5").await;
    assert_eq!(trusted.send("app@example.com", &["bob@example.com"], "trusted").await, [250, 250, 250]);
    let script = r#"
import os, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), source_address=("127.0.0.1", 0))
s.ehlo("client.sender.example"); s.starttls(context=ctx); s.ehlo("client.sender.example")
s.login("app", "s3cret-pass")
msg = "From: <app@example.com>\r\nTo: <carol@example.com>\r\nSubject: authenticated\r\n\r\nHi\r\n"
print("OK", s.sendmail("app@example.com", ["carol@example.com"], msg))
s.quit()
"#;
    let port = node.inbound.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg("-c").arg(script).env("PORT", port).output()
    })
    .await
    .unwrap()
    .expect("python3 runs (the tests use Python's smtplib as a real client)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "OK {}", "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.sink.messages().len(), 2);
    assert_eq!(node.gateway.counters.greylisted.load(std::sync::atomic::Ordering::Relaxed), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_skips_a_client_with_a_good_local_reputation() {
    let dir = tempfile::tempdir().unwrap();
    let reputation = mailsift_store::SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    let now = mailsift_engine::unix_now();
    let good = [(mailsift_engine::evidence::ReputationKind::Ip, "127.0.0.1".to_string())];
    for _ in 0..6 {
        reputation.record(&good, mailsift_store::ReputationEvent::Verdict(0), now).unwrap();
    }
    reputation.flush().unwrap();
    let node = start_with(GREYLISTING, dir.path(), |s| s.with_reputation(reputation)).await;
    let mut known = client(&node, "127.0.0.1").await;
    assert_eq!(known.send("alice@sender.example", &["bob@example.com"], "good name").await, [250, 250, 250]);
    let mut stranger = client(&node, "127.0.4.1").await;
    assert_eq!(stranger.send("alice@sender.example", &["bob@example.com"], "no name").await, [250, 451]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_buckets_and_triplets_through_redis_and_mail_flows_when_it_is_down() {
    let Some(mut redis) = Redis::start() else { return };
    let extra = format!("{GREYLISTING}\n[[smtp.rate_limits.rule]]\nkey = \"client_ip\"\nrate = \"3/hour\"\n");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (start(&extra, da.path()).await, start(&extra, db.path()).await);
    for node in [&a, &b] {
        let store = mailsift_store::limits::redis::RedisLimits::open(&mailsift_store::RedisConfig::new(redis.url()));
        node.gateway.limits.use_store(Arc::new(store.unwrap()));
    }
    // Greylisted at A; the retry after the delay reaches B, which knows the triplet and accepts it.
    let mut ca = client(&a, "127.0.0.1").await;
    assert_eq!(ca.send("alice@sender.example", &["bob@example.com"], "shared").await, [250, 451]);
    b.gateway.limits.advance_clock(Duration::from_secs(301));
    let mut cb = client(&b, "127.0.0.1").await;
    assert_eq!(cb.send("alice@sender.example", &["bob@example.com"], "shared").await, [250, 250, 250]);
    // A remembers what passed at B.
    assert_eq!(ca.send("alice@sender.example", &["bob@example.com"], "known").await, [250, 250, 250]);
    // Three messages of 127.0.0.1 at either node empty its one bucket: the next is deferred at both.
    assert_eq!(ca.cmd("MAIL FROM:<alice@sender.example>").await.0, 451);
    assert_eq!(cb.cmd("MAIL FROM:<alice@sender.example>").await.0, 451);
    assert_eq!(a.sink.messages().len() + b.sink.messages().len(), 2);

    // Redis down: mail flows (fail open), counted.
    redis.stop();
    let mut c = client(&a, "127.0.3.1").await;
    assert_eq!(c.send("zed@new.example", &["bob@example.com"], "redis down").await, [250, 250, 250]);
    assert!(a.gateway.limits.unanswered() >= 2, "{}", a.gateway.limits.unanswered());
    a.stop().await;
    b.stop().await;
}
