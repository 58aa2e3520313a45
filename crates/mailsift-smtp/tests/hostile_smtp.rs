//! The gateway against the hostile internet, over real sockets on loopback: attacks that used to work, each
//! shown to fail, with the next hop (our sink, and a real Postfix where it matters) as the witness.
//!
//! - Open relay through the next hop with routing syntaxes in the local part (`%`, `!`, `@`, `:`, quotes,
//!   backslashes), and the bare `postmaster` RFC 5321 requires us to take.
//! - SMTP smuggling: the 2023 end-of-data variants with bare CR, bare LF and NUL, in DATA and BDAT.
//! - Lines of megabytes.
//! - Slot exhaustion by silent and trickling clients from 25 loopback addresses.
//! - Password guessing over AUTH from one address and from several.
//!
//! Every loop is bounded in count and time. The extra loopback addresses (127.0.0.2-127.0.0.26) are this
//! machine's own (Linux routes all of 127.0.0.0/8 to loopback).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_testkit::postfix::Postfix;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

struct TestGateway {
    gateway: Arc<Gateway>,
    inbound: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway for example.com (and local.test) whose next hop is `hop`, with `extra` in `[smtp]`.
async fn start(extra: &str, hop: SocketAddr, domain_extra: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"
{extra}

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"
{domain_extra}

[[smtp.domains]]
name = "special.test"
next_hop = "{hop}"
allow_special_local_parts = true
"#
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap();
    let gateway = Gateway::new(state, mailsift_store::Database::open_in(dir.path()).unwrap(), dir.path());
    let listeners = gateway.bind().await.unwrap();
    let inbound = listeners.iter().find(|(_, l)| *l == Listener::Inbound).unwrap().0.local_addr().unwrap();
    let task = tokio::spawn(gateway.clone().serve(listeners));
    TestGateway { gateway, inbound, task, _dir: dir }
}

async fn sink() -> Sink {
    Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap()
}

/// A raw SMTP client.
struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> (Raw, (u16, String)) {
        Raw::from_stream(TcpStream::connect(addr).await.unwrap()).await
    }

    /// Connects from a chosen loopback source address.
    async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> std::io::Result<(Raw, (u16, String))> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        Ok(Raw::from_stream(socket.connect(addr).await?).await)
    }

    async fn from_stream(tcp: TcpStream) -> (Raw, (u16, String)) {
        let (r, w) = tcp.into_split();
        let mut c = Raw { r: BufReader::new(r), w };
        let greeting = c.reply().await;
        (c, greeting)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes).await
    }

    /// One reply; (0, "") when the connection closed (or nothing came within 30 s).
    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.r.read_line(&mut line))
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or(0);
            if n == 0 {
                return (0, text);
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0), text);
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> (u16, String) {
        if self.send(format!("{line}\r\n").as_bytes()).await.is_err() {
            return (0, String::new());
        }
        self.reply().await
    }
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: alice@sender.example\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@sender.example>\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
}

/// Local parts that route elsewhere on a next hop that honours the old syntaxes.
const ROUTING_TRICKS: [&str; 7] = [
    "victim%evil.example@example.com",
    "\"victim%evil.example\"@example.com",
    "evil.example!victim@example.com",
    "\"victim@evil.example\"@example.com",
    "victim@evil.example@example.com",
    "victim\\@evil.example@example.com",
    "victim:evil.example@example.com",
];

/// Each trick refused at RCPT with 550 5.1.3; then a real recipient goes through, so the refusals are not
/// the session being broken.
async fn try_routing_tricks(addr: SocketAddr) {
    let (mut c, _) = Raw::connect(addr).await;
    c.cmd("EHLO client.sender.example").await;
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").await.0, 250);
    for rcpt in ROUTING_TRICKS {
        let (code, text) = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(code, 550, "{rcpt}: {text}");
        assert!(text.contains("5.1.3"), "{rcpt}: {text}");
    }
    assert_eq!(c.cmd("DATA").await.0, 554, "no recipient was accepted");
    c.cmd("RSET").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(c.cmd("RCPT TO:<bob@example.com>").await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(format!("{}.\r\n", message("control", "a real one")).as_bytes()).await.unwrap();
    let (code, text) = c.reply().await;
    assert_eq!(code, 250, "{text}");
    c.cmd("QUIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_syntaxes_in_local_parts_are_refused_and_postmaster_is_accepted() {
    let hop = sink().await;
    let g = start("", hop.addr(), "").await;
    try_routing_tricks(g.inbound).await;
    let got = hop.messages();
    assert_eq!(got.len(), 1, "only the control message: {got:?}");
    assert_eq!(got[0].rcpts, ["bob@example.com"]);

    // RFC 5321 §4.5.1: the bare postmaster, any case, goes to postmaster@ the first domain.
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    let (code, text) = c.cmd("RCPT TO:<PostMaster>").await;
    assert_eq!(code, 250, "{text}");
    c.cmd("DATA").await;
    c.send(format!("{}.\r\n", message("to the postmaster", "hello")).as_bytes()).await.unwrap();
    assert_eq!(c.reply().await.0, 250);
    let got = hop.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpts, ["postmaster@example.com"]);

    // A domain whose administrator allows such local parts gets them.
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    let (code, text) = c.cmd("RCPT TO:<\"odd local\"@special.test>").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("RCPT TO:<a%b@special.test>").await.0, 250);

    // The refusals are in the message log, as relay attempts.
    g.gateway.db.flush().unwrap();
    let refused = g
        .gateway
        .db
        .log_search(&mailsift_store::LogQuery { action: Some("refused".into()), ..Default::default() })
        .unwrap();
    assert_eq!(refused.len(), ROUTING_TRICKS.len(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_clients_relay_by_design_but_not_through_a_local_domains_next_hop() {
    let hop = sink().await;
    let g = start("[smtp.outbound]\ntrusted_networks = [\"127.0.0.1/32\"]", hop.addr(), "").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO app.example.com").await;
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.0, 250);
    // The routing syntaxes are refused for our own domains whoever the client is: the next hop's routing
    // is not the way out, relaying is.
    for rcpt in ROUTING_TRICKS {
        let (code, text) = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(code, 550, "{rcpt}: {text}");
    }
    let (code, text) = c.cmd("RCPT TO:<customer@elsewhere.example>").await;
    assert_eq!(code, 250, "a trusted client relays: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_postmaster_receives_the_bare_postmaster() {
    let hop = sink().await;
    let g = start("postmaster = \"abuse@example.com\"", hop.addr(), "").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    assert_eq!(c.cmd("RCPT TO:<postmaster>").await.0, 250);
    c.cmd("DATA").await;
    c.send(format!("{}.\r\n", message("hi", "x")).as_bytes()).await.unwrap();
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(hop.messages()[0].rcpts, ["abuse@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_syntaxes_never_reach_a_real_postfix_next_hop() {
    if !Postfix::available_or_skip() {
        return;
    }
    let postfix = Postfix::start(&["example.com"]).unwrap();
    let g = start("", postfix.smtp_addr(), "").await;
    try_routing_tricks(g.inbound).await;
    // Only the control message arrives; Postfix never saw the tricks, so it could route none of them.
    let got = postfix.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", postfix.log());
    assert_eq!(postfix.wait_for_messages(2, Duration::from_secs(2)).len(), 1, "{}", postfix.log());
    let log = postfix.log();
    assert!(!log.contains("evil.example"), "{log}");
    assert!(String::from_utf8_lossy(&got[0]).contains("Subject: control"));
}

/// The 2023 smuggling variants: an end of data that some servers accept, followed by a second transaction.
const SMUGGLING_ENDS: [&[u8]; 8] =
    [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n", b"\r\n\x00.\r\n", b"\n..\n"];

fn smuggling_data(end: &[u8]) -> Vec<u8> {
    let mut wire = message("outer", "text").into_bytes();
    wire.extend_from_slice(b"text");
    wire.extend_from_slice(end);
    wire.extend_from_slice(
        b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n\
From: admin@example.com\r\nSubject: smuggled\r\n\r\nwire money\r\n",
    );
    wire
}

/// Sends each variant in DATA (then one honest CRLF.CRLF) and checks the client hears exactly one answer to
/// it; returns the answers' codes.
async fn smuggle_through(addr: SocketAddr) -> Vec<u16> {
    let mut codes = Vec::new();
    for end in SMUGGLING_ENDS {
        let (mut c, _) = Raw::connect(addr).await;
        c.cmd("EHLO client.sender.example").await;
        c.cmd("MAIL FROM:<alice@sender.example>").await;
        assert_eq!(c.cmd("RCPT TO:<bob@example.com>").await.0, 250);
        assert_eq!(c.cmd("DATA").await.0, 354);
        c.send(&smuggling_data(end)).await.unwrap();
        c.send(b".\r\n").await.unwrap();
        let (code, text) = c.reply().await;
        codes.push(code);
        // Had the gateway taken the smuggled commands as commands, their replies would come next, not 221.
        let (quit, more) = c.cmd("QUIT").await;
        assert_eq!(quit, 221, "{end:?}: after {code} {text}, then {more}");
    }
    codes
}

/// What a next hop received must be one message per variant, none of them the smuggled one.
fn assert_not_smuggled(messages: &[Vec<u8>], mail_froms: &[String]) {
    assert_eq!(messages.len(), SMUGGLING_ENDS.len(), "one message per attempt, never two");
    for from in mail_froms {
        assert_eq!(from, "alice@sender.example");
    }
    for m in messages {
        let m = String::from_utf8_lossy(m);
        assert!(m.contains("Subject: outer"), "{m}");
        // The smuggled text is inside the one message, as body lines.
        assert!(m.contains("wire money"), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_messages_are_normalised_into_the_one_message() {
    let hop = sink().await;
    let g = start("", hop.addr(), "").await;
    let codes = smuggle_through(g.inbound).await;
    assert!(codes.iter().all(|c| *c == 250), "{codes:?}");
    let got = hop.messages();
    let froms: Vec<String> = got.iter().map(|m| m.mail_from.clone()).collect();
    assert_not_smuggled(&got.iter().map(|m| m.data.clone()).collect::<Vec<_>>(), &froms);
    for m in &got {
        // Only CRLF line ends reach the next hop, and no NUL.
        for (i, &b) in m.data.iter().enumerate() {
            assert!(b != b'\r' || m.data.get(i + 1) == Some(&b'\n'), "bare CR relayed");
            assert!(b != b'\n' || (i > 0 && m.data[i - 1] == b'\r'), "bare LF relayed");
            assert_ne!(b, 0, "NUL relayed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_messages_are_refused_in_reject_mode_and_bdat_is_treated_alike() {
    let hop = sink().await;
    let g = start("bare_line_endings = \"reject\"", hop.addr(), "").await;
    let codes = smuggle_through(g.inbound).await;
    assert!(codes.iter().all(|c| *c == 550), "{codes:?}");
    assert!(hop.messages().is_empty());

    // BDAT: the same bytes in chunks, the bare CR split across a chunk boundary.
    let wire = smuggling_data(b"\r.\r\n");
    let cut = wire.windows(3).position(|w| w == b"\r.\r").unwrap() + 1;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    c.send(format!("BDAT {}\r\n", cut).as_bytes()).await.unwrap();
    c.send(&wire[..cut]).await.unwrap();
    assert_eq!(c.reply().await.0, 250);
    c.send(format!("BDAT {} LAST\r\n", wire.len() - cut).as_bytes()).await.unwrap();
    c.send(&wire[cut..]).await.unwrap();
    let (code, text) = c.reply().await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("5.6.11"), "{text}");
    assert_eq!(c.cmd("NOOP").await.0, 250, "still in step");
    assert!(hop.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_with_bare_line_ends_is_normalised() {
    let hop = sink().await;
    let g = start("", hop.addr(), "").await;
    let wire = smuggling_data(b"\n.\n");
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    c.send(format!("BDAT {} LAST\r\n", wire.len()).as_bytes()).await.unwrap();
    c.send(&wire).await.unwrap();
    assert_eq!(c.reply().await.0, 250);
    let got = hop.messages();
    assert_eq!(got.len(), 1);
    let data = String::from_utf8_lossy(&got[0].data).to_string();
    assert!(data.contains("text\r\n.\r\nMAIL FROM:<admin@example.com>\r\n"), "{data}");
    assert_eq!(got[0].mail_from, "alice@sender.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_never_gives_a_real_postfix_next_hop_two_messages() {
    if !Postfix::available_or_skip() {
        return;
    }
    let postfix = Postfix::start(&["example.com"]).unwrap();
    let g = start("", postfix.smtp_addr(), "").await;
    let codes = smuggle_through(g.inbound).await;
    assert!(codes.iter().all(|c| *c == 250), "{codes:?}\n{}", postfix.log());
    let got = postfix.wait_for_messages(SMUGGLING_ENDS.len(), Duration::from_secs(30));
    // Give a smuggled second message time to show up, if Postfix had seen one.
    let got = if got.len() == SMUGGLING_ENDS.len() {
        postfix.wait_for_messages(SMUGGLING_ENDS.len() + 1, Duration::from_secs(3))
    } else {
        got
    };
    let froms: Vec<String> = got
        .iter()
        .map(|m| {
            let m = String::from_utf8_lossy(m);
            let rp = m.lines().find_map(|l| l.strip_prefix("Return-Path: ")).unwrap_or("").to_string();
            rp.trim_matches(['<', '>']).to_string()
        })
        .collect();
    assert_not_smuggled(&got, &froms);
    assert!(!postfix.log().contains("from=<admin@example.com>"), "{}", postfix.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_of_megabytes_are_refused_and_never_relayed() {
    let hop = sink().await;
    let g = start("", hop.addr(), "").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    // A 10 MB body line, then a 1 MB header line: each read to its end, refused, and the session goes on.
    let body = format!("{}.\r\n", message("long body", &"b".repeat(10 << 20)));
    let header = format!("{}.\r\n", message(&format!("long {}", "h".repeat(1 << 20)), "short body"));
    for data in [body, header] {
        c.cmd("MAIL FROM:<alice@sender.example>").await;
        c.cmd("RCPT TO:<bob@example.com>").await;
        assert_eq!(c.cmd("DATA").await.0, 354);
        let started = Instant::now();
        c.send(data.as_bytes()).await.unwrap();
        let (code, text) = c.reply().await;
        assert_eq!(code, 550, "{text}");
        assert!(text.contains("5.6.0") && text.contains("998"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(c.cmd("NOOP").await.0, 250);
    }
    // 998 octets are fine.
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    c.cmd("DATA").await;
    c.send(format!("{}.\r\n", message("at the limit", &"c".repeat(998))).as_bytes()).await.unwrap();
    assert_eq!(c.reply().await.0, 250);
    let got = hop.messages();
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].data).contains("Subject: at the limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_gets_a_short_first_command_timeout() {
    let hop = sink().await;
    let g = start("first_command_timeout_secs = 1", hop.addr(), "").await;
    let started = Instant::now();
    let (mut silent, greeting) = Raw::connect(g.inbound).await;
    assert_eq!(greeting.0, 220);
    let (mut talker, _) = Raw::connect(g.inbound).await;
    assert_eq!(talker.cmd("EHLO client.sender.example").await.0, 250);
    let (code, text) = silent.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    // A client that has spoken has the full command timeout (300 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(talker.cmd("NOOP").await.0, 250);
    // Sending a byte at a time does not stretch the deadline of a line.
    let (mut trickler, _) = Raw::connect(g.inbound).await;
    let started = Instant::now();
    for b in b"EHLO trickle.example" {
        if trickler.send(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, text) = trickler.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_exhaustion_from_25_addresses_is_reclaimed_under_stress() {
    let hop = sink().await;
    // 40 slots, 2 per address; stress above 80 % (32 slots) cuts every wait to 2 s.
    let g = start("max_connections = 40\nmax_connections_per_ip = 2\nstress_timeout_secs = 2", hop.addr(), "").await;
    // A trickler that got in first: it sends a byte of a command every 300 ms, which must not stretch the
    // deadline of its line.
    let (mut trickler, greeting) = Raw::connect(g.inbound).await;
    assert_eq!(greeting.0, 220);
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        for b in b"NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP" {
            if trickler.send(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if started.elapsed() > Duration::from_secs(25) {
                break;
            }
        }
        let (code, _) = trickler.reply().await;
        (code, started.elapsed())
    });
    // The flood: 2 silent connections from each of 127.0.0.2..127.0.0.26, more than the gateway holds.
    let mut silent = Vec::new();
    let mut refused = 0;
    for host in 2..=26u8 {
        for _ in 0..2 {
            match Raw::connect_from(Ipv4Addr::new(127, 0, 0, host), g.inbound).await {
                Ok((c, (220, _))) => silent.push(c),
                Ok(_) => refused += 1,
                Err(e) => panic!("connect from 127.0.0.{host}: {e}"),
            }
        }
    }
    assert!(refused > 0, "the flood fills the gateway ({} in)", silent.len());
    let flooded = Instant::now();
    // A real client keeps trying, as MTAs do after a 421; it must be served within seconds, not 5 minutes.
    let mut served = None;
    while flooded.elapsed() < Duration::from_secs(20) {
        let (mut c, greeting) = Raw::connect(g.inbound).await;
        if greeting.0 == 220 {
            assert_eq!(c.cmd("EHLO client.sender.example").await.0, 250);
            c.cmd("MAIL FROM:<alice@sender.example>").await;
            c.cmd("RCPT TO:<bob@example.com>").await;
            c.cmd("DATA").await;
            c.send(format!("{}.\r\n", message("got through", "x")).as_bytes()).await.unwrap();
            assert_eq!(c.reply().await.0, 250);
            served = Some(flooded.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let served = served.expect("a client that speaks is served while the flood lasts");
    eprintln!(
        "flood of {} silent connections ({refused} refused): a real client served after {served:?}",
        silent.len()
    );
    assert!(served < Duration::from_secs(10), "served after {served:?}");
    let (code, trickled_for) = trickle.await.unwrap();
    eprintln!("the trickler was cut off after {trickled_for:?}");
    assert!(code == 421 || code == 0, "the trickler is cut off ({code})");
    assert!(trickled_for < Duration::from_secs(12), "the trickler held its slot for {trickled_for:?}");
    // The earliest silent ones were told 421 and let go (within the stress timeout, long before now).
    for c in silent.iter_mut().take(5) {
        let (code, text) = c.reply().await;
        assert_eq!(code, 421, "{text}");
    }
    assert_eq!(hop.messages().len(), 1);
}

/// Runs a Python smtplib script (a real client with TLS and AUTH); `PORT` is set. Returns its stdout.
fn python(script: &str, port: SocketAddr) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PORT", port.port().to_string())
        .output()
        .expect("python3 runs (the tests use Python's smtplib as a real client)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_guessing_is_limited_per_address_and_per_account() {
    let hop = sink().await;
    let hash = mailsift_smtp::auth::hash_password("right-password");
    let g = start(
        &format!(
            "auth_failures_per_address = 3\nauth_failures_per_account = 6\nmax_errors = 50\n\
[[smtp.users]]\nname = \"app\"\npassword = \"{hash}\""
        ),
        hop.addr(),
        "",
    )
    .await;
    // Each attempt on its own connection from a chosen address (the limits span connections); prints the
    // AUTH answer's code and how long it took.
    let script = r#"
import os, smtplib, ssl, sys, time
port = int(os.environ["PORT"])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def attempt(source, password):
    s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
    s.ehlo("client.example"); s.starttls(context=ctx); s.ehlo("client.example")
    started = time.time()
    try:
        # One mechanism per attempt (login() would retry a failure with the next mechanism).
        s.user, s.password = "app", password
        code = s.auth("PLAIN", s.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    except smtplib.SMTPResponseException as e:
        code = e.smtp_code
    took = time.time() - started
    s.close()
    print(source, password, code, "%.1f" % took); sys.stdout.flush()
# One address guesses: refused once over its limit, even with the right password.
for _ in range(4): attempt("127.0.0.2", "guess")
attempt("127.0.0.2", "right-password")
# The real user from elsewhere is not locked out, and logs in.
attempt("127.0.0.1", "right-password")
# A second address puts the account over its limit (3 + 3 failures)...
for _ in range(3): attempt("127.0.0.3", "guess")
# ...the real user's known address is not slowed; a new address is slowed, not locked.
attempt("127.0.0.1", "right-password")
attempt("127.0.0.5", "right-password")
"#;
    let out = tokio::task::spawn_blocking({
        let addr = g.inbound;
        move || python(script, addr)
    })
    .await
    .unwrap();
    let lines: Vec<(String, String, u16, f64)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    let codes: Vec<u16> = lines.iter().map(|l| l.2).collect();
    assert_eq!(codes, [535, 535, 535, 454, 454, 235, 535, 535, 535, 235, 235], "{out}");
    let (known, new) = (&lines[9], &lines[10]);
    assert!(known.3 < 2.0, "the known address is not slowed: {out}");
    assert!(new.3 >= 3.0, "a new address is slowed while the account is attacked: {out}");
}

/// A client that chats (NOOP, RSET, VRFY, HELP) without ever sending mail cannot hold its slot forever: past
/// 100 such commands each one is an error, and `max_errors` closes the session. Sending a message starts the
/// count again, so a real MTA's RSET between messages never trips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_commands_without_mail_end_the_session() {
    let hop = sink().await;
    let g = start("max_errors = 5", hop.addr(), "").await;
    let (mut c, _) = Raw::connect(g.inbound).await;
    c.cmd("EHLO client.sender.example").await;
    // 90 junk commands, then a message: the count starts again.
    for i in 0..90 {
        let verb = ["NOOP", "RSET", "VRFY bob", "HELP"][i % 4];
        assert!(matches!(c.cmd(verb).await.0, 250 | 252 | 214), "{verb} #{i}");
    }
    c.cmd("MAIL FROM:<alice@sender.example>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    c.cmd("DATA").await;
    c.send(format!("{}.\r\n", message("between the chatter", "hello")).as_bytes()).await.unwrap();
    assert_eq!(c.reply().await.0, 250);
    let mut answers = Vec::new();
    for _ in 0..120 {
        let (code, _) = c.cmd("NOOP").await;
        answers.push(code);
        if code == 0 || code == 421 {
            break;
        }
    }
    let ok = answers.iter().filter(|&&c| c == 250).count();
    assert_eq!(ok, 100, "{answers:?}");
    assert!(answers[100..].iter().all(|&c| c == 550 || c == 421 || c == 0), "{answers:?}");
    // Five errors, the last one followed by the 421 that closes the session.
    assert!(
        answers.len() <= 100 + 5 + 1 && answers.ends_with(&[421]),
        "the session is closed after max_errors: {answers:?}"
    );
    assert_eq!(hop.messages().len(), 1);
}
