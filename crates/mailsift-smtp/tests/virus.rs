//! Virus scanning over real SMTP on loopback: a private clamd (testkit, with a signature database the harness
//! writes: EICAR and a custom signature), the gateway, and our sink as the next hop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::{Database, QuarantineQuery};
use mailsift_testkit::clamd::{self, Clamd};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct TestGateway {
    gateway: Arc<Gateway>,
    inbound: SocketAddr,
    sink: Sink,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway whose `[smtp.virus]` is `virus` (TOML lines), with domains `example.com` (defaults),
/// `deliver.test` (`virus_on_failure = "deliver"`) and `hold.test` (`virus_action = "quarantine"`).
async fn start(virus: &str) -> TestGateway {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hop = sink.addr();
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"

[smtp.virus]
{virus}

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[[smtp.domains]]
name = "deliver.test"
next_hop = "{hop}"
virus_on_failure = "deliver"

[[smtp.domains]]
name = "hold.test"
next_hop = "{hop}"
virus_action = "quarantine"
"#
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let config = SmtpConfig::from_toml(&text).unwrap();
    let state = GatewayState::new(engine, config, dir.path()).unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let gateway = Gateway::new(state, db, dir.path());
    let listeners = gateway.bind().await.unwrap();
    let inbound =
        listeners.iter().find(|(_, l)| *l == Listener::Inbound).map(|(t, _)| t.local_addr().unwrap()).unwrap();
    let task = tokio::spawn(gateway.clone().serve(listeners));
    TestGateway { gateway, inbound, sink, _dir: dir, task }
}

/// Sends one message over plain SMTP; returns the final reply (the first refusal when one comes earlier).
async fn send(addr: SocketAddr, rcpt: &str, msg: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(60), r.read_line(&mut line)).await.unwrap().unwrap_or(0);
            if n == 0 {
                return (0, text);
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }
    let greeting = reply(&mut r).await;
    assert_eq!(greeting.0, 220, "{greeting:?}");
    for (line, want) in [
        ("EHLO client.sender.example".to_string(), 250),
        ("MAIL FROM:<alice@sender.example>".to_string(), 250),
        (format!("RCPT TO:<{rcpt}>"), 250),
        ("DATA".to_string(), 354),
    ] {
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        let got = reply(&mut r).await;
        if got.0 != want {
            return got;
        }
    }
    let mut body = String::new();
    for l in msg.split("\r\n") {
        if l.starts_with('.') {
            body.push('.');
        }
        body.push_str(l);
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    w.write_all(body.as_bytes()).await.unwrap();
    let got = reply(&mut r).await;
    let _ = w.write_all(b"QUIT\r\n").await;
    got
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes().chunks(76).map(|l| String::from_utf8_lossy(l).to_string()).collect::<Vec<_>>().join("\r\n")
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A ZIP archive holding `content` as `name`, stored (not compressed), written by hand.
fn stored_zip(name: &str, content: &[u8]) -> Vec<u8> {
    let (crc, size, n) = (crc32(content), content.len() as u32, name.len() as u16);
    let mut z = Vec::new();
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]); // version, flags, stored, time, date
    for v in [crc, size, size] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(content);
    let central = z.len() as u32;
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    z.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    for v in [crc, size, size] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&[0; 12]); // extra, comment, disk, internal attrs
    z.extend_from_slice(&0u32.to_le_bytes()); // external attrs
    z.extend_from_slice(&0u32.to_le_bytes()); // offset of the local header
    z.extend_from_slice(name.as_bytes());
    let dir_size = z.len() as u32 - central;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&dir_size.to_le_bytes());
    z.extend_from_slice(&central.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn head(rcpt: &str, subject: &str) -> String {
    format!(
        "From: Alice <alice@sender.example>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@sender.example>\r\nMIME-Version: 1.0\r\n",
        subject.replace(' ', ".")
    )
}

/// A message with one base64 attachment.
fn with_attachment(rcpt: &str, subject: &str, ctype: &str, filename: &str, content: &[u8]) -> String {
    format!(
        "{}Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
See the attachment.\r\n--b1\r\nContent-Type: {ctype}; name=\"{filename}\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"{filename}\"\r\n\r\n{}\r\n--b1--\r\n",
        head(rcpt, subject),
        b64(content)
    )
}

/// A message carrying a forwarded message (message/rfc822) whose own attachment is `content`, base64.
fn nested(rcpt: &str, subject: &str, content: &[u8]) -> String {
    let inner = with_attachment("carol@inner.example", "inner", "application/octet-stream", "inner.bin", content);
    format!(
        "{}Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\n\
Forwarded.\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--outer--\r\n",
        head(rcpt, subject)
    )
}

fn clean(rcpt: &str, subject: &str) -> String {
    format!(
        "{}X-Mailsift-Virus: clean (forged by the sender)\r\nContent-Type: text/plain\r\n\r\nHello Bob,\r\nsee you at lunch.\r\n",
        head(rcpt, subject)
    )
}

fn header_values(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

fn counter(g: &Gateway, name: &str) -> u64 {
    g.counters.snapshot().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v).unwrap()
}

fn config_for(c: &Clamd) -> String {
    format!("clamd = \"{}\"\ntimeout_ms = 20000", c.address())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viruses_in_a_zip_a_nested_message_and_a_base64_attachment_are_refused_with_the_signature() {
    let Some(c) = Clamd::start() else { return };
    let g = start(&config_for(&c)).await;
    let eicar = clamd::eicar();
    let custom = format!("harmless text, then {} and more", clamd::CUSTOM_MARKER).into_bytes();
    let cases = [
        (
            "eicar zip",
            with_attachment(
                "bob@example.com",
                "eicar zip",
                "application/zip",
                "a.zip",
                &stored_zip("eicar.com", &eicar),
            ),
            clamd::EICAR_NAME,
        ),
        (
            "custom zip",
            with_attachment("bob@example.com", "custom zip", "application/zip", "c.zip", &stored_zip("c.txt", &custom)),
            clamd::CUSTOM_NAME,
        ),
        ("eicar nested", nested("bob@example.com", "eicar nested", &eicar), clamd::EICAR_NAME),
        ("custom nested", nested("bob@example.com", "custom nested", &custom), clamd::CUSTOM_NAME),
        (
            "eicar base64",
            with_attachment("bob@example.com", "eicar base64", "application/octet-stream", "e.com", &eicar),
            clamd::EICAR_NAME,
        ),
        (
            "custom base64",
            with_attachment("bob@example.com", "custom base64", "application/octet-stream", "c.bin", &custom),
            clamd::CUSTOM_NAME,
        ),
    ];
    for (what, msg, name) in &cases {
        let (code, text) = send(g.inbound, "bob@example.com", msg).await;
        assert_eq!(code, 554, "{what}: {text}");
        assert!(text.starts_with(&format!("554 5.7.0 Virus found: {name} [ref ")), "{what}: {text}");
    }
    assert_eq!(counter(&g.gateway, "virus_found"), cases.len() as u64);

    // A clean message is delivered, saying it was scanned clean (a forged header of ours is dropped).
    let (code, text) = send(g.inbound, "bob@example.com", &clean("bob@example.com", "lunch plans")).await;
    assert_eq!(code, 250, "{text}");
    let got = g.sink.messages();
    assert_eq!(got.len(), 1, "only the clean message reached the next hop");
    let delivered = String::from_utf8_lossy(&got[0].data).to_string();
    let virus = header_values(&delivered, "X-Mailsift-Virus");
    assert_eq!(virus.len(), 1, "{delivered}");
    assert!(virus[0].starts_with("clean; engine=ClamAV "), "{virus:?}");
    assert!(virus[0].ends_with("; db=unknown"), "a self-written database has no date: {virus:?}");
    assert!(header_values(&delivered, "X-Mailsift-Scanned")[0].ends_with(", clamav"), "{delivered}");

    // The log names the signature (the rule that decided).
    let rows = g.gateway.db.log_search(&mailsift_store::LogQuery::default()).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.action == "reject" && r.reason.as_deref() == Some(&format!("virus: {}", clamd::EICAR_NAME))),
        "{rows:?}"
    );
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamd_stopped_mid_run_gives_451_and_the_retry_is_delivered() {
    let Some(mut c) = Clamd::start() else { return };
    let g = start(&config_for(&c)).await;
    let (code, text) = send(g.inbound, "bob@example.com", &clean("bob@example.com", "first")).await;
    assert_eq!(code, 250, "{text}");

    c.stop();
    let msg = clean("bob@example.com", "while clamd is down");
    let (code, text) = send(g.inbound, "bob@example.com", &msg).await;
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("Virus scan not available"), "{text}");
    assert_eq!(g.sink.messages().len(), 1, "nothing delivered unscanned");
    assert_eq!(counter(&g.gateway, "virus_scan_failed"), 1);
    // A virus is not let through either while clamd is down.
    let eicar = with_attachment("bob@example.com", "v", "application/octet-stream", "e.com", &clamd::eicar());
    assert_eq!(send(g.inbound, "bob@example.com", &eicar).await.0, 451);

    c.start_again();
    let (code, text) = send(g.inbound, "bob@example.com", &msg).await;
    assert_eq!(code, 250, "the sender's retry: {text}");
    let got = g.sink.messages();
    assert_eq!(got.len(), 2);
    let delivered = String::from_utf8_lossy(&got[1].data).to_string();
    assert!(delivered.contains("Subject: while clamd is down"));
    assert!(header_values(&delivered, "X-Mailsift-Virus")[0].starts_with("clean; "), "{delivered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_may_deliver_unscanned_mail_flagged_and_never_silently() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-clamd.sock");
    let g = start(&format!("clamd = \"unix:{}\"\ntimeout_ms = 2000", nowhere.display())).await;
    // The default: 451.
    let (code, text) = send(g.inbound, "bob@example.com", &clean("bob@example.com", "default")).await;
    assert_eq!(code, 451, "{text}");
    // deliver.test: delivered, flagged.
    let (code, text) = send(g.inbound, "dan@deliver.test", &clean("dan@deliver.test", "flagged")).await;
    assert_eq!(code, 250, "{text}");
    let got = g.sink.messages();
    assert_eq!(got.len(), 1);
    let delivered = String::from_utf8_lossy(&got[0].data).to_string();
    let virus = header_values(&delivered, "X-Mailsift-Virus");
    assert!(virus[0].starts_with("failed clamd unreachable"), "{virus:?}");
    assert!(header_values(&delivered, "X-Mailsift-Symbols")[0].contains("VIRUS_SCAN_FAILED"), "{delivered}");
    assert!(!header_values(&delivered, "X-Mailsift-Scanned")[0].contains("clamav"), "{delivered}");
    assert_eq!(counter(&g.gateway, "virus_scan_failed"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_max_stream_bytes_is_a_failure_not_a_pass() {
    let Some(c) = Clamd::start() else { return };
    let g = start(&format!("{}\nmax_stream_bytes = 2000", config_for(&c))).await;
    let big = format!("{}\r\n{}", clean("bob@example.com", "big"), "lorem ipsum dolor\r\n".repeat(200));
    let (code, text) = send(g.inbound, "bob@example.com", &big).await;
    assert_eq!(code, 451, "{text}");
    let (code, text) = send(g.inbound, "dan@deliver.test", &big.replace("bob@example.com", "dan@deliver.test")).await;
    assert_eq!(code, 250, "{text}");
    let delivered = String::from_utf8_lossy(&g.sink.messages()[0].data).to_string();
    assert!(header_values(&delivered, "X-Mailsift-Virus")[0].contains("larger than max_stream_bytes"), "{delivered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_that_quarantines_viruses_keeps_them_in_the_quarantine() {
    let Some(c) = Clamd::start() else { return };
    let g = start(&config_for(&c)).await;
    let msg = with_attachment("erin@hold.test", "held virus", "application/octet-stream", "e.com", &clamd::eicar());
    let (code, text) = send(g.inbound, "erin@hold.test", &msg).await;
    assert_eq!(code, 250, "{text}");
    assert!(g.sink.messages().is_empty(), "a virus is never delivered");
    let held = g.gateway.db.quarantine_list(&QuarantineQuery::default()).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].reason, format!("virus: {}", clamd::EICAR_NAME));
    assert!(held[0].is_virus());

    // Its recipient (and a digest link, which releases as the recipient) cannot release it; an
    // administrator can.
    use mailsift_gateway::actions;
    let by_user = actions::release(&g.gateway, held[0].id, "erin@hold.test").await;
    assert!(matches!(by_user, Err(actions::ReleaseError::Virus(id)) if id == held[0].id), "{by_user:?}");
    assert!(g.sink.messages().is_empty());
    let by_admin = actions::release_as_admin(&g.gateway, held[0].id, "admin").await.unwrap();
    assert_eq!(by_admin.recipient, "erin@hold.test");
    assert_eq!(g.sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clamd_the_headers_say_not_scanned() {
    let g = start("").await;
    let (code, text) = send(g.inbound, "bob@example.com", &clean("bob@example.com", "plain")).await;
    assert_eq!(code, 250, "{text}");
    let delivered = String::from_utf8_lossy(&g.sink.messages()[0].data).to_string();
    assert_eq!(header_values(&delivered, "X-Mailsift-Virus"), vec!["not scanned".to_string()], "{delivered}");
}
