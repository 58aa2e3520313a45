//! The outbound queue, over real SMTP on loopback: outbound mail of the organisation (a trusted network) to
//! other domains is answered 250 once it is durably queued, then delivered through the smarthost (a sink we
//! start and stop) with retries.
//!
//! - Queued while the smarthost is down, retried with back-off, delivered exactly once to each recipient when
//!   it comes back; the queue is then empty.
//! - Still undeliverable after the queue's lifetime: given up, and the sender gets an RFC 3464 bounce
//!   (`Action: failed`, `Status: 4.4.7`) in its mailbox; the null sender gets none.
//! - Refused for good by the destination: given up at the first attempt, bounced with the refusal's status.
//! - At most `max_per_destination` deliveries at once to one destination.
//! - An outside client cannot put mail in the queue (relaying is refused); `queue = false` keeps before-queue
//!   relaying (451 when the smarthost is down, nothing queued).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::{Behaviour, Sink};
use mailsift_smtp::spool::{self, SpoolPolicy};
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::Database;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn quick(lifetime: Option<Duration>) -> SpoolPolicy {
    SpoolPolicy {
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_millis(600),
        lease: Duration::from_secs(5),
        poll: Duration::from_millis(200),
        outbound_lifetime: lifetime,
        ..SpoolPolicy::default()
    }
}

/// A gateway on `dir` for local.test (Maildir): 127.0.0.0/8 is the organisation's network; mail to other
/// domains goes through `smarthost`. `extra` goes into `[smtp.outbound]`.
async fn gateway(
    dir: &Path,
    smarthost: SocketAddr,
    trusted: &str,
    extra: &str,
    lifetime: Option<Duration>,
) -> (Arc<Gateway>, SocketAddr) {
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.local.test"

[smtp.outbound]
trusted_networks = [{trusted}]
smarthost = "{smarthost}"
{extra}

[smtp.relay]
connect_timeout_secs = 2
reply_timeout_secs = 5

[[smtp.domains]]
name = "local.test"
"#
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let config = SmtpConfig::from_toml(&text).unwrap();
    let state = GatewayState::new(engine, config, dir).unwrap();
    let db = Database::open_in(dir).unwrap();
    let gateway = Gateway::new(state, db, dir);
    gateway.refresh_policy(true).unwrap();
    spool::set_policy(&gateway, quick(lifetime));
    let listeners = gateway.bind().await.unwrap();
    let inbound = listeners.iter().find(|(_, l)| *l == Listener::Inbound).unwrap().0.local_addr().unwrap();
    tokio::spawn(gateway.clone().serve(listeners));
    spool::start(gateway.clone());
    (gateway, inbound)
}

fn dead_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// One SMTP transaction; the answer to the end of data (or the first refusal).
async fn send(addr: SocketAddr, from: &str, rcpts: &[&str], subject: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    async fn read(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> (u16, String) {
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
        r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        w: &mut tokio::net::tcp::OwnedWriteHalf,
        line: &str,
    ) -> (u16, String) {
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        read(r).await
    }
    assert_eq!(read(&mut r).await.0, 220);
    assert_eq!(cmd(&mut r, &mut w, "EHLO app.local.test").await.0, 250);
    let (code, text) = cmd(&mut r, &mut w, &format!("MAIL FROM:<{from}>")).await;
    if code != 250 {
        return (code, text);
    }
    for rcpt in rcpts {
        let (code, text) = cmd(&mut r, &mut w, &format!("RCPT TO:<{rcpt}>")).await;
        if code != 250 {
            return (code, text);
        }
    }
    assert_eq!(cmd(&mut r, &mut w, "DATA").await.0, 354);
    let msg = format!(
        "From: Alice <alice@local.test>\r\nTo: {}\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@local.test>\r\n\r\nHello,\r\nthe minutes of today's meeting.\r\n.\r\n",
        rcpts.join(", "),
        subject.replace(' ', ".")
    );
    w.write_all(msg.as_bytes()).await.unwrap();
    read(&mut r).await
}

async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The messages in a local Maildir.
fn mailbox(dir: &Path, rcpt: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("maildir").join(rcpt).join("new")) else { return Vec::new() };
    entries.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_while_the_smarthost_is_down_and_delivered_exactly_once_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let smarthost = dead_port();
    let (g, addr) = gateway(dir.path(), smarthost, "\"127.0.0.0/8\"", "", None).await;

    let (code, text) = send(addr, "alice@local.test", &["carol@remote.example", "dan@other.example"], "minutes").await;
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("queued"), "{text}");
    // At the 250 both recipients are on disk, one item each.
    let pending = g.db.spool_list(Some("pending"), 10).unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(pending.iter().all(|i| i.kind == "outbound" && i.mail_from == "alice@local.test"), "{pending:?}");
    let reference = text.split("[ref ").nth(1).and_then(|t| t.split(']').next()).unwrap().to_string();
    let row = g.db.log_get(&reference).unwrap().expect("the message-log row");
    assert_eq!(row.action, "deliver");
    assert!(row.next_hop_response.as_deref().unwrap_or("").contains("queued"), "{row:?}");

    // Retried with back-off while the smarthost is down.
    eventually("retried", Duration::from_secs(10), || {
        g.db.spool_list(Some("pending"), 10).unwrap().iter().all(|i| i.attempts >= 2)
    })
    .await;
    assert!(g.db.spool_list(Some("pending"), 10).unwrap()[0].last_error.is_some());

    // Back: each recipient gets it once.
    let sink = Sink::start(smarthost, true).await.unwrap();
    eventually("both delivered", Duration::from_secs(10), || sink.messages().len() == 2).await;
    eventually("the queue is empty", Duration::from_secs(5), || g.db.spool_list(None, 10).unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let got = sink.messages();
    assert_eq!(got.len(), 2, "exactly once");
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["carol@remote.example".to_string(), "dan@other.example".to_string()]);
    for m in &got {
        assert_eq!(m.mail_from, "alice@local.test");
        let text = String::from_utf8_lossy(&m.data);
        assert!(text.contains("Subject: minutes") && text.contains("X-Mailsift-Id: "), "{text}");
    }
    let c = &g.counters;
    assert_eq!(c.outbound_queued.load(Ordering::Relaxed), 2);
    assert_eq!(c.outbound_delivered.load(Ordering::Relaxed), 2);
    assert_eq!(c.outbound_bounced.load(Ordering::Relaxed), 0);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_up_after_the_lifetime_and_the_sender_gets_a_bounce_but_the_null_sender_none() {
    let dir = tempfile::tempdir().unwrap();
    let (g, addr) = gateway(dir.path(), dead_port(), "\"127.0.0.0/8\"", "", Some(Duration::from_millis(1500))).await;
    let (code, text) = send(addr, "alice@local.test", &["carol@remote.example"], "never arrives").await;
    assert_eq!(code, 250, "{text}");
    let (code, text) = send(addr, "", &["erin@remote.example"], "a bounce of ours").await;
    assert_eq!(code, 250, "{text}");

    eventually("both given up", Duration::from_secs(15), || g.db.spool_list(Some("failed"), 10).unwrap().len() == 2)
        .await;
    for failed in g.db.spool_list(Some("failed"), 10).unwrap() {
        assert!(failed.attempts >= 2, "{failed:?}");
        assert!(failed.last_error.as_deref().unwrap_or("").contains("given up"), "{failed:?}");
    }
    eventually("alice has the bounce", Duration::from_secs(10), || mailbox(dir.path(), "alice@local.test").len() == 1)
        .await;
    let bounce = &mailbox(dir.path(), "alice@local.test")[0];
    assert!(bounce.contains("multipart/report") && bounce.contains("report-type=\"delivery-status\""), "{bounce}");
    assert!(bounce.contains("Final-Recipient: rfc822; carol@remote.example"), "{bounce}");
    assert!(bounce.contains("Action: failed") && bounce.contains("Status: 4.4.7"), "{bounce}");
    assert!(bounce.contains("Subject: never arrives"), "the original's header is returned: {bounce}");
    // The null sender's message was given up silently: no bounce of a bounce, to anyone.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(mailbox(dir.path(), "alice@local.test").len(), 1);
    let maildirs: Vec<_> = std::fs::read_dir(dir.path().join("maildir")).unwrap().flatten().collect();
    assert_eq!(maildirs.len(), 1, "{maildirs:?}");
    assert_eq!(g.counters.outbound_bounced.load(Ordering::Relaxed), 2);
    assert!(g.db.spool_list(Some("pending"), 10).unwrap().is_empty(), "the bounce itself was delivered");
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_for_good_is_bounced_at_once_with_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    sink.set_behaviour(Behaviour { refuse_rcpts: vec!["nobody@remote.example".into()], ..Default::default() });
    let (g, addr) = gateway(dir.path(), sink.addr(), "\"127.0.0.0/8\"", "", None).await;
    let (code, text) = send(addr, "alice@local.test", &["nobody@remote.example"], "to nobody").await;
    assert_eq!(code, 250, "{text}");
    eventually("alice has the bounce", Duration::from_secs(10), || mailbox(dir.path(), "alice@local.test").len() == 1)
        .await;
    let bounce = &mailbox(dir.path(), "alice@local.test")[0];
    assert!(bounce.contains("Final-Recipient: rfc822; nobody@remote.example"), "{bounce}");
    assert!(bounce.contains("Action: failed") && bounce.contains("Status: 5."), "{bounce}");
    let failed = g.db.spool_list(Some("failed"), 10).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 1, "a permanent refusal is not retried");
    assert!(sink.messages().is_empty());
    g.shutdown();
}

/// A next hop that answers slowly and records how many sessions it had at once.
async fn slow_server(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (now, max, delivered) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n2, m2, d2) = (now.clone(), max.clone(), delivered.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (now, max, delivered) = (n2.clone(), m2.clone(), d2.clone());
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 slow\r\n").await;
                let mut in_data = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    match tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(at_once, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            now.fetch_sub(1, Ordering::SeqCst);
                            delivered.fetch_add(1, Ordering::SeqCst);
                            let _ = w.write_all(b"250 ok\r\n").await;
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "DATA" => {
                            in_data = true;
                            b"354 go\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    (addr, max, delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_per_destination_deliveries_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (hop, max, delivered) = slow_server(Duration::from_millis(400)).await;
    let (g, addr) = gateway(dir.path(), hop, "\"127.0.0.0/8\"", "max_per_destination = 2", None).await;
    let rcpts: Vec<String> = (0..8).map(|i| format!("r{i}@remote.example")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let (code, text) = send(addr, "alice@local.test", &rcpts, "eight at once").await;
    assert_eq!(code, 250, "{text}");
    eventually("all eight delivered", Duration::from_secs(20), || delivered.load(Ordering::SeqCst) == 8).await;
    assert_eq!(max.load(Ordering::SeqCst), 2, "deliveries at once to one destination");
    eventually("the queue is empty", Duration::from_secs(5), || g.db.spool_list(None, 10).unwrap().is_empty()).await;
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_cannot_queue_and_queue_off_relays_before_the_answer() {
    // Nobody trusted: the loopback client is an outsider, and relaying is refused before anything is queued.
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let (g, addr) = gateway(dir.path(), sink.addr(), "", "", None).await;
    let (code, text) = send(addr, "alice@local.test", &["carol@remote.example"], "relay me").await;
    assert!((500..600).contains(&code), "{code} {text}");
    assert!(g.db.spool_list(None, 10).unwrap().is_empty());
    g.shutdown();

    // queue = false: the smarthost is asked during DATA; down means 451 and nothing is queued.
    let dir = tempfile::tempdir().unwrap();
    let (g, addr) = gateway(dir.path(), dead_port(), "\"127.0.0.0/8\"", "queue = false", None).await;
    let (code, text) = send(addr, "alice@local.test", &["carol@remote.example"], "before queue").await;
    assert_eq!(code, 451, "{text}");
    assert!(g.db.spool_list(None, 10).unwrap().is_empty());
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_goes_to_the_recipient_domains_mx_and_a_null_mx_is_bounced_at_once() {
    use mailsift_testkit::dns::{TestDns, Zone};
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let mut zone = Zone::new();
    zone.mx("elsewhere.example", 10, "mx1.elsewhere.example").a("mx1.elsewhere.example", "127.0.0.1");
    zone.mx("nullmx.example", 0, ".");
    let dns = TestDns::start(zone);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[dns]\nnameservers = [\"{}\"]\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.local.test\"\n\
         [smtp.outbound]\ntrusted_networks = [\"127.0.0.0/8\"]\nmx_port = {}\n[[smtp.domains]]\nname = \"local.test\"\n",
        dns.addr(),
        sink.addr().port()
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap();
    let g = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
    spool::set_policy(&g, quick(None));
    let listeners = g.bind().await.unwrap();
    let addr = listeners[0].0.local_addr().unwrap();
    tokio::spawn(g.clone().serve(listeners));
    spool::start(g.clone());

    assert_eq!(send(addr, "alice@local.test", &["customer@elsewhere.example"], "order shipped").await.0, 250);
    eventually("delivered to the MX", Duration::from_secs(10), || sink.messages().len() == 1).await;
    assert_eq!(sink.messages()[0].rcpts, vec!["customer@elsewhere.example".to_string()]);
    // A domain that takes no mail (null MX, RFC 7505): given up at once, and alice is told.
    assert_eq!(send(addr, "alice@local.test", &["x@nullmx.example"], "nowhere").await.0, 250);
    eventually("alice has the bounce", Duration::from_secs(10), || mailbox(dir.path(), "alice@local.test").len() == 1)
        .await;
    let bounce = &mailbox(dir.path(), "alice@local.test")[0];
    assert!(
        bounce.contains("Final-Recipient: rfc822; x@nullmx.example") && bounce.contains("Status: 5.1.2"),
        "{bounce}"
    );
    assert_eq!(g.db.spool_list(Some("failed"), 10).unwrap()[0].attempts, 1);
    assert_eq!(sink.messages().len(), 1);
    g.shutdown();
}
