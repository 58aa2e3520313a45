//! The gateway over real SMTP on loopback: a real client (Python's smtplib, and a raw client for what
//! smtplib will not do), the gateway, and a real next hop (our sink; Postfix in `postfix_next_hop.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::{Behaviour, Sink};
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::{Database, LogQuery, QuarantineQuery};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct TestGateway {
    gateway: Arc<Gateway>,
    inbound: SocketAddr,
    outbound: Option<SocketAddr>,
    sink: Sink,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

/// Rules that give chosen scores by subject word, so tests pick the action; content caps off so they count.
const POLICY: &str = r#"
[group_caps]
content = 1000.0

[[rules]]
name = "TEST_TAG_WORD"
target = "subject"
phrase = "tagme"
score = 6.0

[[rules]]
name = "TEST_QUARANTINE_WORD"
target = "subject"
phrase = "quarantineme"
score = 11.0
"#;

async fn start(extra: &str) -> TestGateway {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    start_with_sink(extra, sink).await
}

async fn start_with_sink(extra: &str, sink: Sink) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let hop = sink.addr();
    // AUTH passwords are stored as Argon2id hashes.
    let hash = mailsift_smtp::auth::hash_password("s3cret-pass");
    let text = format!(
        r#"{POLICY}
[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"
{extra}

[smtp.outbound]
listen = ["127.0.0.1:0"]
smarthost = "{hop}"

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[[smtp.domains]]
name = "local.test"

[[smtp.users]]
name = "app"
password = "{hash}"
"#
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let config = SmtpConfig::from_toml(&text).unwrap();
    let state = GatewayState::new(engine, config, dir.path()).unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let gateway = Gateway::new(state, db, dir.path());
    let listeners = gateway.bind().await.unwrap();
    let addr_of = |k: Listener| listeners.iter().find(|(_, l)| *l == k).map(|(t, _)| t.local_addr().unwrap());
    let (inbound, outbound) = (addr_of(Listener::Inbound).unwrap(), addr_of(Listener::Outbound));
    let task = tokio::spawn(gateway.clone().serve(listeners));
    TestGateway { gateway, inbound, outbound, sink, dir, task }
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@sender.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
}

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A raw SMTP client, for pipelining, odd input and timing.
struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> (Raw, (u16, String)) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (r, w) = tcp.into_split();
        let mut c = Raw { r: BufReader::new(r), w };
        let greeting = c.reply().await;
        (c, greeting)
    }
    async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }
    /// One reply; (0, "") when the connection closed.
    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n =
                tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line)).await.unwrap().unwrap_or(0);
            if n == 0 {
                return (0, text);
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }
    async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }
}

/// Runs a Python smtplib script; `PORT` and `OUT_PORT` are set in its environment. Returns its stdout.
fn python(script: &str, port: SocketAddr, out_port: Option<SocketAddr>) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PORT", port.port().to_string())
        .env("OUT_PORT", out_port.map(|a| a.port().to_string()).unwrap_or_default())
        .output()
        .expect("python3 runs (the tests use Python's smtplib as a real client)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

const PY_PRELUDE: &str = r#"
import os, smtplib, ssl
port = int(os.environ["PORT"])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def msg(subject, body="Hello Bob,\r\nsee you at lunch.\r\n"):
    return ("From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: %s\r\n"
            "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s@sender.example>\r\n\r\n%s") % (subject, subject.replace(" ", "."), body)
def send(subject, rcpts=["bob@example.com"], body="Hello Bob,\r\nsee you at lunch.\r\n"):
    s = smtplib.SMTP("127.0.0.1", port); s.ehlo("client.sender.example"); s.starttls(context=ctx); s.ehlo("client.sender.example")
    try:
        refused = s.sendmail("alice@sender.example", rcpts, msg(subject, body))
        print("OK", refused)
    except smtplib.SMTPResponseException as e:
        print("ERR", e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPRecipientsRefused as e:
        print("REFUSED", {k: v[0] for k, v in e.recipients.items()})
    s.quit()
"#;

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ham_is_delivered_with_our_headers_spam_is_tagged_quarantined_or_rejected() {
    let g = start("").await;
    let out = python(
        &format!("{PY_PRELUDE}\nsend('lunch plans')\nsend('tagme please')\nsend('quarantineme now')\nsend('gtube', body='{GTUBE}\\r\\n')\n"),
        g.inbound,
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "OK {}", "{out}");
    assert_eq!(lines[1], "OK {}", "{out}");
    assert_eq!(lines[2], "OK {}", "{out}");
    assert!(lines[3].starts_with("ERR 550 5.7.1 Message rejected as spam [ref "), "{out}");

    // Delivered: ham with our headers, the tagged one with its subject marked. Nothing else reached the hop.
    let got = g.sink.messages();
    assert_eq!(got.len(), 2, "{got:?}");
    let ham = String::from_utf8_lossy(&got[0].data).to_string();
    assert!(
        ham.starts_with(
            "Received: from client.sender.example ([127.0.0.1])\r\n\tby mx.test (mailsift) with ESMTPS id "
        ),
        "{ham}"
    );
    assert_eq!(header(&ham, "X-Mailsift-Action"), Some("deliver"));
    assert!(header(&ham, "X-Mailsift-Score").is_some());
    assert!(ham.contains("Hello Bob,\r\nsee you at lunch.\r\n"));
    assert_eq!(got[0].mail_from, "alice@sender.example");
    assert_eq!(got[0].rcpts, vec!["bob@example.com".to_string()]);
    let tagged = String::from_utf8_lossy(&got[1].data).to_string();
    assert_eq!(header(&tagged, "Subject"), Some("[SPAM] tagme please"));
    assert_eq!(header(&tagged, "X-Mailsift-Action"), Some("tag"));
    assert!(header(&tagged, "X-Mailsift-Symbols").unwrap().contains("TEST_TAG_WORD(6.00)"));

    // Quarantined: durable in the store, for that recipient, with our headers.
    let q = g.gateway.db.quarantine_list(&QuarantineQuery { include_released: true, ..Default::default() }).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipient, "bob@example.com");
    assert!(q[0].reason.contains("TEST_QUARANTINE_WORD"), "{}", q[0].reason);
    assert_eq!(q[0].subject.as_deref(), Some("quarantineme now"));
    assert_eq!(q[0].from_header.as_deref(), Some("alice@sender.example"));
    let raw = String::from_utf8(g.gateway.db.quarantine_raw(q[0].id).unwrap().unwrap()).unwrap();
    assert_eq!(header(&raw, "X-Mailsift-Action"), Some("quarantine"));

    // Every transaction is in the message log, with what the next hop said.
    g.gateway.db.flush().unwrap();
    let log = g.gateway.db.log_search(&LogQuery::default()).unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["deliver", "tag", "quarantine", "reject"]);
    assert!(log[3].next_hop_response.as_deref().unwrap().starts_with("250"), "{:?}", log[3]);
    assert_eq!(log[0].subject.as_deref(), Some("gtube"));
    assert!(log[0].symbols.iter().any(|(n, _)| n == "GTUBE"), "{:?}", log[0].symbols);
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_verdict_headers_are_replaced() {
    let g = start("").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    assert_eq!(c.cmd("DATA").await.0, 354);
    let forged = format!("X-Mailsift-Action: deliver\r\nX-Mailsift-Score: -100\r\n{}", message("hi", "body"));
    c.send(forged.as_bytes()).await;
    c.send(b".\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    let got = String::from_utf8(g.sink.messages()[0].data.clone()).unwrap();
    assert_eq!(got.matches("X-Mailsift-Score:").count(), 1, "{got}");
    assert!(!got.contains("-100"), "{got}");
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_transactions_get_their_replies_in_order() {
    let g = start("").await;
    let (mut c, greeting) = Raw::connect(g.inbound).await;
    assert_eq!(greeting.0, 220);
    let (code, ext) = c.cmd("EHLO client.sender.example").await;
    assert_eq!(code, 250);
    assert!(ext.contains("PIPELINING") && ext.contains("CHUNKING") && ext.contains("STARTTLS"), "{ext}");
    // Two whole transactions in one write, as a pipelining client may send after 354.
    let m1 = message("first", "one\r\n..dot-stuffed line");
    let m2 = message("second", "two");
    c.send(b"MAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\n")
        .await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 354);
    c.send(format!("{m1}.\r\nMAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n").as_bytes())
        .await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 354);
    c.send(format!("{m2}.\r\nQUIT\r\n").as_bytes()).await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 221);
    let got = g.sink.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].rcpts, vec!["bob@example.com".to_string(), "carol@example.com".to_string()]);
    // Dot-stuffing undone on the way in and redone on the way out: the line arrives as the sender meant it.
    assert!(String::from_utf8_lossy(&got[0].data).contains("one\r\n.dot-stuffed line"));
    assert!(String::from_utf8_lossy(&got[1].data).contains("Subject: second"));
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_chunks_are_accepted() {
    let g = start("").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example> BODY=8BITMIME").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    let m = message("chunky", "caf\u{e9} au lait\r\n.not stuffed in BDAT");
    let (a, b) = m.as_bytes().split_at(40);
    c.send(format!("BDAT {}\r\n", a.len()).as_bytes()).await;
    c.send(a).await;
    assert_eq!(c.reply().await.0, 250);
    c.send(format!("BDAT {} LAST\r\n", b.len()).as_bytes()).await;
    c.send(b).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 250, "{text}");
    let got = g.sink.messages();
    assert!(String::from_utf8_lossy(&got[0].data).ends_with(&m[40..]));
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_get_552() {
    let g = start("max_message_bytes = 4096").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    // Declared too big: refused before any data.
    let (code, _) = c.cmd("MAIL FROM:<alice@sender.example> SIZE=100000").await;
    assert_eq!(code, 552);
    // Not declared, and bigger than the limit: read to the end, then refused.
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    assert_eq!(c.cmd("DATA").await.0, 354);
    let big = message(
        "big",
        &"x".repeat(78)
            .repeat(100)
            .chars()
            .collect::<Vec<_>>()
            .chunks(78)
            .map(|l| l.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\r\n"),
    );
    c.send(big.as_bytes()).await;
    c.send(b".\r\n").await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 552, "{text}");
    // The session is still usable.
    assert_eq!(c.cmd("NOOP").await.0, 250);
    assert!(g.sink.messages().is_empty());
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_an_open_relay() {
    let g = start("").await;
    // Inbound: only our domains.
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    let (code, text) = c.cmd("RCPT TO:<victim@elsewhere.example>").await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("5.7.1"), "{text}");
    // Tricks: a source route through us, a percent hack, a trailing dot.
    for rcpt in
        ["<@mx.test:victim@elsewhere.example>", "<victim%elsewhere.example@mx.test>", "<victim@elsewhere.example.>"]
    {
        let (code, text) = c.cmd(&format!("RCPT TO:{rcpt}")).await;
        assert!(code >= 500, "{rcpt}: {code} {text}");
    }
    assert_eq!(c.cmd("DATA").await.0, 554);
    // The outbound listener wants authentication, and AUTH wants TLS.
    let (mut o, _) = Raw::connect(g.outbound.unwrap()).await;
    o.cmd("EHLO app.sender.example").await;
    assert_eq!(o.cmd("MAIL FROM:<app@example.com>").await.0, 530);
    assert_eq!(o.cmd("AUTH PLAIN AGFwcABzM2NyZXQtcGFzcw==").await.0, 538);
    g.gateway.db.flush().unwrap();
    let refused = g.gateway.db.log_search(&LogQuery { action: Some("refused".into()), ..Default::default() }).unwrap();
    assert!(refused.iter().any(|e| e.recipients == ["victim@elsewhere.example"] && e.stage == "rcpt"), "{refused:?}");
    assert!(g.sink.messages().is_empty());
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_submission_is_scanned_and_relayed_outbound() {
    let g = start("").await;
    let script = format!(
        "{PY_PRELUDE}
out = int(os.environ['OUT_PORT'])
s = smtplib.SMTP('127.0.0.1', out); s.ehlo('app.example.com'); s.starttls(context=ctx); s.ehlo('app.example.com')
try:
    s.login('app', 'wrong')
except smtplib.SMTPAuthenticationError as e:
    print('BADPASS', e.smtp_code)
s.login('app', 's3cret-pass')
print('SENT', s.sendmail('app@example.com', ['customer@elsewhere.example'], msg('invoice ready')))
try:
    s.sendmail('app@example.com', ['customer@elsewhere.example'], msg('gtube', '{GTUBE}\\r\\n'))
except smtplib.SMTPResponseException as e:
    print('ERR', e.smtp_code)
s.quit()
"
    );
    let out = python(&script, g.inbound, g.outbound);
    assert!(out.contains("BADPASS 535"), "{out}");
    assert!(out.contains("SENT {}"), "{out}");
    assert!(out.contains("ERR 550"), "{out}");
    let got = g.sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["customer@elsewhere.example".to_string()]);
    let m = String::from_utf8_lossy(&got[0].data).to_string();
    assert!(m.contains("with ESMTPSA id"), "{m}");
    g.gateway.db.flush().unwrap();
    let log = g.gateway.db.log_search(&LogQuery::default()).unwrap();
    assert!(log.iter().all(|e| e.direction == "outbound"), "{log:?}");
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_refuses_commands_pipelined_in_clear() {
    let g = start("").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    // RFC 3207 §6: a command injected after STARTTLS in the same packet must not be run under TLS.
    c.send(b"STARTTLS\r\nRSET\r\n").await;
    assert_eq!(c.reply().await.0, 220);
    let (code, _) = c.reply().await;
    assert_eq!(code, 0, "the connection is dropped");
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_of_another_route_come_in_their_own_transaction() {
    let g = start("").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(c.cmd("RCPT TO:<bob@example.com>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<dave@local.test>").await;
    assert_eq!(code, 452, "{text}");
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(format!("{}.\r\n", message("split", "x")).as_bytes()).await;
    assert_eq!(c.reply().await.0, 250);
    // The deferred recipient in its own transaction: into the Maildir.
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(c.cmd("RCPT TO:<dave@local.test>").await.0, 250);
    c.cmd("DATA").await;
    c.send(format!("{}.\r\n", message("split", "x")).as_bytes()).await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(g.sink.messages().len(), 1);
    let new = g.dir.path().join("maildir/dave@local.test/new");
    assert_eq!(std::fs::read_dir(&new).unwrap().count(), 1);
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hop_refusals_and_outages_reach_the_sender() {
    let g = start("").await;
    // Down: 451, nothing delivered; the sender keeps the message.
    g.sink.set_behaviour(Behaviour { data_reply: Some((451, "4.3.0 try later".into())), ..Default::default() });
    let send = |subject: &'static str| {
        let addr = g.inbound;
        async move {
            let (mut c, _) = Raw::connect(addr).await;
            c.cmd("EHLO client.sender.example").await;
            c.cmd("MAIL FROM:<alice@local.test>").await;
            c.cmd("RCPT TO:<bob@example.com>").await;
            c.cmd("RCPT TO:<nobody@example.com>").await;
            c.cmd("DATA").await;
            c.send(format!("{}.\r\n", message(subject, "x")).as_bytes()).await;
            c.reply().await
        }
    };
    assert_eq!(send("deferred").await.0, 451);
    // Refused for good: the next hop's own 5xx goes back.
    g.sink.set_behaviour(Behaviour { data_reply: Some((554, "5.7.0 policy says no".into())), ..Default::default() });
    let (code, text) = send("refused").await;
    assert_eq!(code, 554);
    assert!(text.contains("policy says no"), "{text}");
    // One recipient refused, the other accepted: 250, and the sender gets a bounce for the refused one.
    g.sink.set_behaviour(Behaviour { refuse_rcpts: vec!["nobody@example.com".into()], ..Default::default() });
    assert_eq!(send("partial").await.0, 250);
    assert_eq!(g.sink.messages().len(), 1);
    assert_eq!(g.sink.messages()[0].rcpts, vec!["bob@example.com".to_string()]);
    let bounces = g.dir.path().join("maildir/alice@local.test/new");
    let mut found = None;
    for _ in 0..50 {
        if let Some(f) = std::fs::read_dir(&bounces).ok().and_then(|mut d| d.next()) {
            found = Some(std::fs::read_to_string(f.unwrap().path()).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bounce = found.expect("a bounce reaches the sender");
    // multipart/report with report-type delivery-status, however the parameter is quoted (RFC 2045 allows both).
    let parsed = mail_parser::MessageParser::default().parse(bounce.as_bytes()).expect("the bounce parses");
    let ct = mail_parser::MimeHeaders::content_type(parsed.root_part()).expect("a Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")), "{bounce}");
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"), "{bounce}");
    assert!(bounce.contains("Final-Recipient: rfc822; nobody@example.com"), "{bounce}");
    assert!(!bounce.contains("Final-Recipient: rfc822; bob@example.com"), "{bounce}");
    g.gateway.db.flush().unwrap();
    let log = g.gateway.db.log_search(&LogQuery::default()).unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["tempfail", "failed", "deliver"], "{log:?}");
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_next_hop_is_back_arrives_exactly_once() {
    // The next hop is down: nothing listens on its port.
    let parked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hop = parked.local_addr().unwrap();
    drop(parked);
    let placeholder = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let g = start_with_sink(&format!("# next hop at {hop}"), placeholder).await;
    // Point example.com at the dead port by reloading the configuration, as an administrator would.
    let text = format!(
        "{POLICY}\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n[[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{hop}\"\n"
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    g.gateway.reload(GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), g.dir.path()).unwrap());
    let send = || async {
        let (mut c, _) = Raw::connect(g.inbound).await;
        c.cmd("EHLO client.sender.example").await;
        c.cmd("MAIL FROM:<alice@sender.example>").await;
        c.cmd("RCPT TO:<bob@example.com>").await;
        c.cmd("DATA").await;
        c.send(format!("{}.\r\n", message("retry me", "x")).as_bytes()).await;
        c.reply().await
    };
    let (code, text) = send().await;
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("4.4.1"), "{text}");
    // The next hop comes back on its port; the sender retries.
    let back = Sink::start(hop, true).await.unwrap();
    assert_eq!(send().await.0, 250);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(back.messages().len(), 1);
    assert!(String::from_utf8_lossy(&back.messages()[0].data).contains("Subject: retry me"));
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_dropped_on_their_timeouts() {
    let g = start("command_timeout_secs = 1\ndata_timeout_secs = 1\ndata_total_secs = 2").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    let started = std::time::Instant::now();
    let (code, text) = c.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(c.reply().await.0, 0, "closed");
    // A client that trickles its message slower than the total allows.
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    c.cmd("DATA").await;
    let mut closed = false;
    for _ in 0..40 {
        if c.w.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _) = c.reply().await;
    assert!(closed || code == 421, "the trickling client is cut off");
    assert!(g.sink.messages().is_empty());
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_per_client() {
    let g = start("max_connections_per_ip = 2").await;
    let (_a, ga) = Raw::connect(g.inbound).await;
    let (_b, gb) = Raw::connect(g.inbound).await;
    let (_c, gc) = Raw::connect(g.inbound).await;
    assert_eq!((ga.0, gb.0), (220, 220));
    assert_eq!(gc.0, 421, "{}", gc.1);
    drop(_a);
    // The slot is given back when a session ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_d, gd) = Raw::connect(g.inbound).await;
    assert_eq!(gd.0, 220);
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_clients_get_errors_and_the_gateway_goes_on() {
    let g = start("max_errors = 3").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>").await.0, 503, "EHLO first");
    c.cmd("EHLO client.sender.example").await;
    assert_eq!(c.cmd("RCPT TO:<bob@example.com>").await.0, 503);
    assert_eq!(c.cmd(&"A".repeat(10_000)).await.0, 500);
    assert_eq!(c.cmd("\u{ff}\u{fe} garbage").await.0, 500);
    // Third error: told and dropped.
    assert_eq!(c.cmd("BOGUS").await.0, 500);
    assert_eq!(c.reply().await.0, 421);
    assert_eq!(c.reply().await.0, 0, "closed");
    // Others are served.
    let (mut d, greeting) = Raw::connect(g.inbound).await;
    assert_eq!(greeting.0, 220);
    assert_eq!(d.cmd("EHLO ok.example").await.0, 250);
    // A mail loop is refused.
    d.cmd("MAIL FROM:<alice@sender.example>").await;
    d.cmd("RCPT TO:<bob@example.com>").await;
    d.cmd("DATA").await;
    let looped =
        format!("{}{}", "Received: from x by y; Mon, 23 Nov 2026 10:00:00 +0000\r\n".repeat(60), message("loop", "x"));
    d.send(format!("{looped}.\r\n").as_bytes()).await;
    assert_eq!(d.reply().await.0, 554);
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_at_the_door_before_any_data() {
    let g = start("").await;
    // A HELO address literal that is not the client's address: a bad practice worth 2.5 points.
    let text = format!("{POLICY}\n[connection]\nreject_score = 2.0\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n");
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    g.gateway.reload(GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), g.dir.path()).unwrap());
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO [10.9.9.9]").await;
    let (code, text) = c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("5.7.1") && text.contains("[ref "), "{text}");
    let id = text.split("[ref ").nth(1).unwrap().trim().trim_end_matches(']').to_string();
    g.gateway.db.flush().unwrap();
    let row = g.gateway.db.log_get(&id).unwrap().expect("the refusal is logged under its reference id");
    assert_eq!((row.action.as_str(), row.stage.as_str()), ("refused", "mail"));
    assert!(row.symbols.iter().any(|(n, _)| n == "HELO_IP_LITERAL_MISMATCH"), "{row:?}");
    g.task.abort();
}

/// A list marked `reject_at_door` refuses a listed client at MAIL FROM, over SMTP with DNS on (the door
/// gathers the client's list entries, not only its PTR and SPF); an unlisted client passes the door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_a_door_list_is_refused_at_mail_from() {
    use mailsift_testkit::dns::{TestDns, Zone};
    let mut zone = Zone::new();
    zone.a("1.0.0.127.door.bl.example", "127.0.0.2");
    let dns = TestDns::start(zone);
    let g = start("").await;
    let lists = |zone_name: &str| {
        format!(
            "{POLICY}\n[dns]\nenabled = true\nnameservers = [\"{}\"]\n[[dnsbl]]\nsymbol = \"DOOR_LISTED\"\nzone = \"{zone_name}\"\nweight = 3.0\nreject_at_door = true\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n[[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{}\"\n",
            dns.addr(),
            g.sink.addr()
        )
    };
    let reload = |text: String| {
        let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
        g.gateway.reload(GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), g.dir.path()).unwrap());
    };
    reload(lists("door.bl.example"));
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    let (code, text) = c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("127.0.0.1 is listed in door.bl.example"), "{text}");
    let id = text.split("[ref ").nth(1).unwrap().trim().trim_end_matches(']').to_string();
    g.gateway.db.flush().unwrap();
    let row = g.gateway.db.log_get(&id).unwrap().expect("the refusal is logged under its reference id");
    assert_eq!((row.action.as_str(), row.stage.as_str()), ("refused", "mail"));
    // The same client, a list where it is not listed: the door is open and the message is delivered.
    reload(lists("other.bl.example"));
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.com>").await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(format!("{}.\r\n", message("hello", "an ordinary note")).as_bytes()).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 250, "{text}");
    g.task.abort();
}

/// During a resolver outage the client's lookups (reverse DNS, SPF) are waited for once per transaction, at
/// MAIL FROM, and the message is judged on what the door found: not asked (and waited for) again at DATA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_door_check_answers_serve_the_message_during_a_resolver_outage() {
    use mailsift_testkit::dns::{TestDns, Zone};
    let mut zone = Zone::new();
    zone.timeout("1.0.0.127.in-addr.arpa").timeout("sender.example");
    let dns = TestDns::start(zone);
    let g = start("").await;
    let text = format!(
        "{POLICY}\n[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 200\ndeadline_ms = 600\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n[[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{}\"\n",
        dns.addr(),
        g.sink.addr()
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    g.gateway.reload(GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), g.dir.path()).unwrap());
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    let spf_lookups = || dns.log().iter().filter(|q| q.starts_with("sender.example") && q.contains("TXT")).count();
    for _ in 0..2 {
        let before = spf_lookups();
        assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").await.0, 250);
        let at_door = spf_lookups();
        assert!(at_door > before, "the door asks for the sender's SPF record: {:?}", dns.log());
        assert_eq!(c.cmd("RCPT TO:<bob@example.com>").await.0, 250);
        assert_eq!(c.cmd("DATA").await.0, 354);
        c.send(format!("{}.\r\n", message("hello", "an ordinary note")).as_bytes()).await;
        let (code, text) = c.reply().await;
        assert_eq!(code, 250, "{text}");
        assert_eq!(spf_lookups(), at_door, "not asked again for the message: {:?}", dns.log());
    }
    // The message was judged with the failures the door met: its Authentication-Results says so.
    let delivered = g.sink.messages();
    assert_eq!(delivered.len(), 2);
    let received = String::from_utf8_lossy(&delivered[1].data).to_string();
    assert!(received.contains("spf=temperror"), "{received}");
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_transaction_in_flight_finish() {
    let g = start("shutdown_grace_secs = 10").await;
    let (mut busy, _) = Raw::connect(g.inbound).await;
    let (mut idle, _) = Raw::connect(g.inbound).await;
    busy.cmd("EHLO client.sender.example").await;
    idle.cmd("EHLO idle.example").await;
    busy.cmd("MAIL FROM:<alice@sender.example>").await;
    busy.cmd("RCPT TO:<bob@example.com>").await;
    g.gateway.shutdown();
    // The idle session is told; new connections are not taken.
    let (code, _) = idle.reply().await;
    assert_eq!(code, 421);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(g.inbound).await.is_err(), "listener closed");
    // The busy one finishes its message.
    assert_eq!(busy.cmd("DATA").await.0, 354);
    busy.send(format!("{}.\r\n", message("last one", "x")).as_bytes()).await;
    assert_eq!(busy.reply().await.0, 250);
    // Its next command is answered 221 or, if the shutdown notice wins the race, 421: either way it ends.
    assert!([221, 421].contains(&busy.cmd("QUIT").await.0));
    tokio::time::timeout(Duration::from_secs(5), g.task).await.expect("serve returns once sessions are done").unwrap();
    assert_eq!(g.sink.messages().len(), 1);
}

#[allow(dead_code)]
fn _unused(_: &Path) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_mail_without_a_smarthost_goes_to_the_recipient_domains_mx() {
    // Before-queue relaying (`queue = false`); the queued way is in outbound_queue.rs.
    use mailsift_testkit::dns::{TestDns, Zone};
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let mut zone = Zone::new();
    zone.mx("elsewhere.example", 10, "mx1.elsewhere.example").a("mx1.elsewhere.example", "127.0.0.1");
    zone.mx("nullmx.example", 0, ".");
    let dns = TestDns::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[dns]\nnameservers = [\"{}\"]\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n[smtp.outbound]\ntrusted_networks = [\"127.0.0.0/8\"]\nmx_port = {}\nqueue = false\n",
        dns.addr(),
        sink.addr().port()
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap();
    let gateway = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
    let listeners = gateway.bind().await.unwrap();
    let addr = listeners[0].0.local_addr().unwrap();
    let task = tokio::spawn(gateway.clone().serve(listeners));
    let (mut c, _) = Raw::connect(addr).await;
    c.cmd("EHLO app.internal.example").await;
    c.cmd("MAIL FROM:<app@localhost>").await;
    assert_eq!(c.cmd("RCPT TO:<customer@elsewhere.example>").await.0, 250, "trusted network relays");
    // Another domain has another MX: its own transaction.
    assert_eq!(c.cmd("RCPT TO:<x@nullmx.example>").await.0, 452);
    c.cmd("DATA").await;
    c.send(format!("{}.\r\n", message("order shipped", "x")).as_bytes()).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(sink.messages()[0].rcpts, vec!["customer@elsewhere.example".to_string()]);
    // A domain that takes no mail (null MX, RFC 7505): refused for good, not retried forever.
    c.cmd("MAIL FROM:<app@localhost>").await;
    c.cmd("RCPT TO:<x@nullmx.example>").await;
    c.cmd("DATA").await;
    c.send(format!("{}.\r\n", message("nowhere", "x")).as_bytes()).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 550, "{text}");
    assert_eq!(sink.messages().len(), 1);
    task.abort();
}

/// Sends one message with the given recipients over a raw session; returns the answer to the end of data.
async fn send_raw(addr: SocketAddr, from: &str, rcpts: &[&str], msg: &str) -> (u16, String) {
    let (mut c, _) = Raw::connect(addr).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd(&format!("MAIL FROM:<{from}>")).await;
    for r in rcpts {
        let (code, text) = c.cmd(&format!("RCPT TO:<{r}>")).await;
        assert_eq!(code, 250, "{r}: {text}");
    }
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(format!("{msg}.\r\n").as_bytes()).await;
    c.reply().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_policy_decides_per_recipient_and_its_effects_are_carried_out() {
    use mailsift_store::{ImportMode, PolicyStore};
    let g = start("").await;
    let policy = r#"
[[rules]]
name = "web forms"
conditions = [
  { field = "envelope_from", op = "is", value = "forms@example.com" },
  { field = "header", header = "Received", op = "contains", value = "web01.hosting.example" },
]
actions = [{ action = "allow" }, { action = "add_header", name = "X-Web-Form", value = "yes" }]

[[rules]]
name = "legal hold"
conditions = [{ field = "subject", op = "contains", value = "subpoena" }]
actions = [{ action = "copy", to = "archive@local.test" }]

[[rules]]
name = "no lottery"
conditions = [{ field = "subject", op = "contains", value = "lottery" }]
actions = [{ action = "reject", message = "Lotteries are not welcome here" }]

[[block]]
sender = "pushy.example"
recipient = "bob@example.com"
action = "reject"
"#;
    g.gateway.db.import_policy(policy, ImportMode::Merge).unwrap();
    assert!(g.gateway.refresh_policy(false).unwrap(), "the change is picked up");

    // 1. The web form, with the tag word: allowed, untagged, the rule named, its header added.
    let form = format!(
        "Received: from web01.hosting.example by x; Mon, 23 Nov 2026 10:00:00 +0000\r\n{}",
        message("tagme contact form", "hi")
    );
    assert_eq!(send_raw(g.inbound, "forms@example.com", &["bob@example.com"], &form).await.0, 250);
    // The same message from another sender is not allowed: tagged.
    assert_eq!(send_raw(g.inbound, "forms@elsewhere.example", &["bob@example.com"], &form).await.0, 250);
    let got = g.sink.messages();
    let allowed = String::from_utf8_lossy(&got[0].data).to_string();
    assert_eq!(header(&allowed, "X-Mailsift-SCL"), Some("-1"), "{allowed}");
    assert!(header(&allowed, "X-Mailsift-Rule").unwrap().contains("web forms"), "{allowed}");
    assert_eq!(header(&allowed, "X-Web-Form"), Some("yes"));
    assert_eq!(header(&allowed, "Subject"), Some("tagme contact form"));
    let tagged = String::from_utf8_lossy(&got[1].data).to_string();
    assert_eq!(header(&tagged, "Subject"), Some("[SPAM] tagme contact form"));

    // 2. A rule's reject message reaches the sender.
    let (code, text) = send_raw(g.inbound, "a@b.example", &["bob@example.com"], &message("lottery winner", "x")).await;
    assert_eq!(code, 550);
    assert!(text.contains("Lotteries are not welcome here"), "{text}");

    // 3. Bob blocks pushy.example; Carol does not: Carol gets it, Bob's copy is held (not rejected: one
    //    answer serves both).
    let (code, _) =
        send_raw(g.inbound, "sales@pushy.example", &["bob@example.com", "carol@example.com"], &message("offer", "x"))
            .await;
    assert_eq!(code, 250);
    let got = g.sink.messages();
    assert_eq!(got.last().unwrap().rcpts, vec!["carol@example.com".to_string()]);
    let held = g.gateway.db.quarantine_list(&QuarantineQuery::default()).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].recipient, "bob@example.com");
    // Bob alone: rejected at the end of data.
    let (code, _) =
        send_raw(g.inbound, "sales@pushy.example", &["bob@example.com"], &message("offer again", "x")).await;
    assert_eq!(code, 550);

    // 4. A copy rule: the message goes to its recipient and a copy to the archive.
    assert_eq!(
        send_raw(g.inbound, "lawyer@firm.example", &["bob@example.com"], &message("subpoena notice", "x")).await.0,
        250
    );
    let archive = g.dir.path().join("maildir/archive@local.test/new");
    let mut copied = false;
    for _ in 0..50 {
        if std::fs::read_dir(&archive).map(|d| d.count() == 1).unwrap_or(false) {
            copied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(copied, "the archive copy arrived");

    // 5. The store learns when rules and entries last matched.
    g.gateway.db.flush().unwrap();
    let rules = g.gateway.db.rules().unwrap();
    assert!(rules.iter().find(|r| r.rule.name == "web forms").unwrap().last_matched.is_some());
    let entries = g.gateway.db.list_entries().unwrap();
    assert!(entries[0].last_matched.is_some(), "{entries:?}");
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_quarantine_and_log_rows() {
    use mailsift_store::{LogEntry, NewQuarantine};
    let g = start("quarantine_retention_days = 30\nlog_retention_days = 90").await;
    let db = &g.gateway.db;
    let now = mailsift_engine::unix_now();
    let held = |days: i64, subject: &str| NewQuarantine {
        reference_id: format!("REF{days}"),
        time: now - days * 86_400,
        recipients: vec!["bob@example.com".into()],
        subject: Some(subject.into()),
        reason: "test".into(),
        direction: "inbound".into(),
        ..Default::default()
    };
    db.quarantine_put(&held(31, "old"), b"Subject: old\r\n\r\nx\r\n").unwrap();
    db.quarantine_put(&held(29, "recent"), b"Subject: recent\r\n\r\nx\r\n").unwrap();
    for (days, id) in [(91, "OLDLOG"), (89, "NEWLOG")] {
        db.log_append(LogEntry {
            reference_id: id.into(),
            time: now - days * 86_400,
            action: "deliver".into(),
            ..Default::default()
        })
        .unwrap();
    }
    db.flush().unwrap();
    g.gateway.purge_expired();
    let left: Vec<String> = db
        .quarantine_list(&QuarantineQuery { include_released: true, ..Default::default() })
        .unwrap()
        .into_iter()
        .filter_map(|q| q.subject)
        .collect();
    assert_eq!(left, vec!["recent".to_string()]);
    assert!(db.log_get("OLDLOG").unwrap().is_none());
    assert!(db.log_get("NEWLOG").unwrap().is_some());
    g.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_domain_judges_with_its_own_thresholds_options_and_sending_servers() {
    let extra = r#"
[[smtp.domains]]
name = "strict.test"
thresholds = { tag = 1.0, quarantine = 2.0, reject = 3.0 }
asf = { numeric_ip_in_url = "on" }
sending_servers = ["192.0.2.0/24"]
"#;
    let g = start(extra).await;
    // Different domains come in different transactions, so each is judged by its own settings.
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(c.cmd("RCPT TO:<bob@example.com>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<eve@strict.test>").await.0, 452);
    // The same tag-worthy message: tagged for example.com, rejected by strict.test's thresholds.
    let m = message("tagme now", "see http://192.0.2.7/offer");
    assert_eq!(send_raw(g.inbound, "alice@sender.example", &["bob@example.com"], &m).await.0, 250);
    let (code, _) = send_raw(g.inbound, "alice@sender.example", &["eve@strict.test"], &m).await;
    assert_eq!(code, 550);
    let tagged = String::from_utf8_lossy(&g.sink.messages()[0].data).to_string();
    assert_eq!(header(&tagged, "X-Mailsift-Action"), Some("tag"));
    assert!(!header(&tagged, "X-Mailsift-Symbols").unwrap().contains("ASF_NUMERIC_IP_URL"), "off by default");
    g.gateway.db.flush().unwrap();
    let log =
        g.gateway.db.log_search(&LogQuery { recipient: Some("strict.test".into()), ..Default::default() }).unwrap();
    assert!(log[0].symbols.iter().any(|(n, _)| n == "ASF_NUMERIC_IP_URL"), "on for strict.test: {:?}", log[0].symbols);
    // strict.test is protected: its name in From: from a server that is not one of its own is spoofing.
    let spoof = message("hello", "x").replace("alice@sender.example", "ceo@strict.test");
    assert_eq!(send_raw(g.inbound, "ceo@strict.test", &["bob@example.com"], &spoof).await.0, 250);
    g.gateway.db.flush().unwrap();
    let log =
        g.gateway.db.log_search(&LogQuery { sender: Some("ceo@strict.test".into()), ..Default::default() }).unwrap();
    assert!(log[0].symbols.iter().any(|(n, _)| n == "SPOOF_OWN_DOMAIN"), "{:?}", log[0].symbols);
    g.task.abort();
}
