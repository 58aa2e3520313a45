//! mailsift as a milter: Debian's Postfix on loopback with `smtpd_milters` pointing at our listener (mail
//! comes out with our headers, spam is refused during the SMTP transaction, quarantined mail lands in our
//! store), and a raw milter client for what Postfix never sends: malformed and truncated streams, which end
//! their own connection while the listener keeps serving the others. The Postfix test needs Postfix and root
//! (CI installs it); MAILSIFT_SKIP_POSTFIX=1 skips it.

use std::sync::Arc;
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::milter::{self, packet, read_packet};
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::{Database, LogQuery, QuarantineQuery};
use mailsift_testkit::postfix::Postfix;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

const RULES: &str = r#"
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

/// A gateway with only a milter listener in use; returns it and the milter's `host:port`.
async fn gateway(extra: &str, dir: &std::path::Path) -> (Arc<Gateway>, String) {
    let config = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n[smtp.milter]\nlisten = [\"127.0.0.1:0\"]\n{extra}\n{RULES}"
    );
    let engine = Engine::new(EngineConfig::from_toml(&config).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&config).unwrap(), dir).unwrap();
    let g = Gateway::new(state, Database::open_in(dir).unwrap(), dir);
    let listeners = g.bind().await.unwrap();
    let side = g.start_side_listeners().await.unwrap();
    assert_eq!(side.len(), 1);
    assert_eq!(side[0].0, "milter");
    tokio::spawn(g.clone().serve(listeners));
    let addr = side[0].1.strip_prefix("inet:").unwrap().to_string();
    (g, addr)
}

/// Our gateway as the milter of Debian's Postfix on loopback (milter protocol 6; Postfix tempfails the
/// message if the milter does not answer), for mail to example.com.
async fn behind_postfix(dir: &std::path::Path) -> (Arc<Gateway>, Postfix) {
    let (g, milter_addr) = gateway("", dir).await;
    let milter = format!("inet:{milter_addr}");
    let postfix = Postfix::start_with(
        &["example.com"],
        &[("smtpd_milters", &milter), ("milter_default_action", "tempfail"), ("milter_protocol", "6")],
    )
    .unwrap();
    (g, postfix)
}

/// One SMTP reply, all its lines; code 0 when the connection closed.
async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> (u16, String) {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap() == 0 {
            return (0, text);
        }
        text.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return (line[..3].parse::<u16>().unwrap(), text);
        }
    }
}

/// Sends several messages in one SMTP session; each one's first refusal or its answer to the end of data.
async fn send_all(addr: std::net::SocketAddr, messages: &[(&str, &str)]) -> Vec<(u16, String)> {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await;
    w.write_all(b"EHLO client.sender.example\r\n").await.unwrap();
    reply(&mut r).await;
    let mut out = Vec::new();
    'messages: for (rcpt, msg) in messages {
        for cmd in ["MAIL FROM:<alice@sender.example>".to_string(), format!("RCPT TO:<{rcpt}>"), "DATA".into()] {
            w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
            let answer = reply(&mut r).await;
            if answer.0 >= 400 {
                out.push(answer);
                w.write_all(b"RSET\r\n").await.unwrap();
                reply(&mut r).await;
                continue 'messages;
            }
        }
        w.write_all(format!("{msg}.\r\n").as_bytes()).await.unwrap();
        out.push(reply(&mut r).await);
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
    out
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: alice@sender.example\r\nTo: bob@example.com\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <{}@sender.example>\r\nX-Mailsift-Score: -100.00 / 5.00\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
}

/// The value of a header in a message Postfix stored (LF line ends), unfolded.
fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = msg.split("\n\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_with_our_milter_delivers_tags_rejects_and_quarantines() {
    if !Postfix::available_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, postfix) = behind_postfix(dir.path()).await;

    // Four messages in one SMTP session: Postfix keeps one milter connection for it, several messages on it.
    let answers = send_all(
        postfix.smtp_addr(),
        &[
            ("bob@example.com", &message("lunch plans", "Hello Bob,\r\nsee you at lunch.")),
            ("bob@example.com", &message("tagme please", "A tagged one.")),
            ("bob@example.com", &message("gtube", GTUBE)),
            ("carol@example.com", &message("quarantineme now", "Held for review.")),
        ],
    )
    .await;
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert_eq!(answers[0].0, 250, "{answers:?}\n{}", postfix.log());
    assert_eq!(answers[1].0, 250, "{answers:?}\n{}", postfix.log());
    // Spam is refused while the sender's server is still connected, with our words and reference.
    assert_eq!(answers[2].0, 550, "{answers:?}\n{}", postfix.log());
    assert!(answers[2].1.contains("5.7.1 Message rejected as spam [ref "), "{answers:?}");
    // Quarantined: Postfix accepts it (it is safe in our store) and then discards its own copy.
    assert_eq!(answers[3].0, 250, "{answers:?}\n{}", postfix.log());

    let got = postfix.wait_for_messages(2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let got = if got.len() == 2 { postfix.delivered() } else { got };
    assert_eq!(got.len(), 2, "only the ham and the tagged message are delivered\n{}", postfix.log());
    let ham = String::from_utf8_lossy(&got[0]).to_string();
    assert_eq!(header(&ham, "X-Mailsift-Action"), vec!["deliver"], "{ham}");
    // The forged score header was removed; ours is the only one.
    assert_eq!(header(&ham, "X-Mailsift-Score").len(), 1, "{ham}");
    assert!(!ham.contains("-100.00"), "{ham}");
    assert!(header(&ham, "X-Mailsift-Id")[0].len() > 5, "{ham}");
    assert!(ham.contains("\nHello Bob,\nsee you at lunch.\n"), "{ham}");
    assert_eq!(header(&ham, "Subject"), vec!["lunch plans"]);
    let tagged = String::from_utf8_lossy(&got[1]).to_string();
    assert_eq!(header(&tagged, "Subject"), vec!["[SPAM] tagme please"], "{tagged}");
    assert_eq!(header(&tagged, "X-Mailsift-Action"), vec!["tag"], "{tagged}");
    assert!(tagged.contains("TEST_TAG_WORD(6.00)"), "{tagged}");

    // The quarantined message is in our store for its recipient, with our headers.
    let q = g.db.quarantine_list(&QuarantineQuery::default()).unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].recipient, "carol@example.com");
    assert_eq!(q[0].subject.as_deref(), Some("quarantineme now"));
    assert_eq!(q[0].mail_from.as_deref(), Some("alice@sender.example"));
    let raw = String::from_utf8(g.db.quarantine_raw(q[0].id).unwrap().unwrap()).unwrap();
    assert!(raw.contains("X-Mailsift-Action: quarantine\r\n"), "{raw}");
    assert!(raw.contains("Held for review."), "{raw}");
    assert!(postfix.log().contains("milter-discard"), "{}", postfix.log());

    // Every message is a row of the message log, saying what Postfix was told, with its queue id.
    g.db.flush().unwrap();
    let log = g.db.log_search(&LogQuery::default()).unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["deliver", "tag", "reject", "quarantine"], "{log:?}");
    for e in &log {
        assert_eq!(e.client_ip.as_deref(), Some("127.0.0.1"), "{e:?}");
        assert_eq!(e.helo.as_deref(), Some("client.sender.example"), "{e:?}");
        let told = e.next_hop_response.as_deref().unwrap_or("");
        assert!(told.starts_with("milter: ") && told.contains("MTA queue id"), "{e:?}");
    }
    assert_eq!(log[3].recipients, vec!["bob@example.com".to_string()]);
    assert!(log[1].symbols.iter().any(|(s, _)| s == "GTUBE"), "{:?}", log[1]);
    // Each message not delivered on its score says why (the console's "Why"), through the milter too: the
    // level it reached and the checks that added the most.
    for (e, level) in [(&log[2], "tag"), (&log[1], "reject"), (&log[0], "quarantine")] {
        let why = e.reason.as_deref().unwrap_or("");
        assert!(why.contains(&format!("reached the {level} level")), "{level}: {e:?}");
    }
    assert_eq!(log[3].reason, None, "a plain delivery has no reason: {:?}", log[3]);
}

/// A header's exact form reaches the engine through Postfix: the milter asks for header values with their
/// leading white space, so a bulk mailer's `Date: <TAB>...` template is still seen (HEADER_TAB_PADDED), and a
/// message from the recipient's own address to himself is judged as such (FROM_EQUALS_TO); the ordinary
/// message beside them carries neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_passes_the_headers_as_written_to_our_milter() {
    if !Postfix::available_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, postfix) = behind_postfix(dir.path()).await;
    let padded = message("stock tip", "Buy now.").replace("Date: Mon,", "Date: \tMon,");
    let to_self = message("note to self", "Remember.").replace("From: alice@sender.example", "From: bob@example.com");
    let answers = send_all(
        postfix.smtp_addr(),
        &[
            ("bob@example.com", &message("lunch plans", "Hello Bob.")),
            ("bob@example.com", &padded),
            ("bob@example.com", &to_self),
        ],
    )
    .await;
    assert!(answers.iter().all(|a| a.0 == 250), "{answers:?}\n{}", postfix.log());
    let _ = postfix.wait_for_messages(3, Duration::from_secs(20));
    g.db.flush().unwrap();
    let log = g.db.log_search(&LogQuery::default()).unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    let has = |subject: &str, symbol: &str| {
        let e = log.iter().find(|e| e.subject.as_deref() == Some(subject)).expect(subject);
        e.symbols.iter().any(|(s, _)| s == symbol)
    };
    assert!(has("stock tip", "HEADER_TAB_PADDED"), "{log:?}");
    assert!(has("note to self", "FROM_EQUALS_TO"), "{log:?}");
    for symbol in ["HEADER_TAB_PADDED", "FROM_EQUALS_TO"] {
        assert!(!has("lunch plans", symbol), "{log:?}");
    }
    assert!(!has("stock tip", "FROM_EQUALS_TO") && !has("note to self", "HEADER_TAB_PADDED"), "{log:?}");
}

/// A milter client that speaks like an MTA, for what Postfix would never send.
struct Mta {
    stream: TcpStream,
}

impl Mta {
    async fn connect(addr: &str) -> Mta {
        Mta { stream: TcpStream::connect(addr).await.unwrap() }
    }

    async fn send(&mut self, command: u8, data: &[u8]) {
        self.stream.write_all(&packet(command, data)).await.unwrap();
    }

    async fn recv(&mut self) -> Option<milter::Packet> {
        tokio::time::timeout(Duration::from_secs(20), read_packet(&mut self.stream))
            .await
            .expect("a reply in time")
            .ok()?
    }

    /// Negotiates like Postfix: version 6, every action, every protocol step it can skip.
    async fn negotiate(&mut self) -> (u32, u32) {
        let mut d = 6u32.to_be_bytes().to_vec();
        d.extend_from_slice(&0x1ffu32.to_be_bytes());
        d.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
        self.send(b'O', &d).await;
        let p = self.recv().await.unwrap();
        assert_eq!(p.command, b'O');
        let word = |i: usize| u32::from_be_bytes(p.data[i..i + 4].try_into().unwrap());
        assert_eq!(word(0), 6);
        (word(4), word(8))
    }

    /// Connection, envelope, headers and body of one message, up to (not including) the end of message.
    async fn message_until_eom(&mut self, subject: &str) {
        self.send(b'C', b"client.sender.example\x004\x00\x19192.0.2.7\x00").await;
        self.send(b'H', b"client.sender.example\0").await;
        self.send(b'D', b"Mi\0QUEUE42\0").await;
        self.send(b'M', b"<alice@sender.example>\0SIZE=100\0").await;
        self.send(b'R', b"<bob@example.com>\0").await;
        self.send(b'L', b"From\0 alice@sender.example\0").await;
        self.send(b'L', format!("Subject\0 {subject}\0").as_bytes()).await;
        self.send(b'L', b"X-Mailsift-Action\0 deliver\0").await;
        self.send(b'N', b"").await;
        self.send(b'B', b"Hello Bob,\r\nsee you at lunch.\r\n").await;
    }

    /// The end-of-message answer: every modification, then the final reply.
    async fn end_of_message(&mut self) -> Vec<milter::Packet> {
        self.send(b'E', b"").await;
        let mut out = Vec::new();
        loop {
            let p = self.recv().await.expect("the end-of-message answer");
            let last = matches!(p.command, b'a' | b'c' | b'd' | b'r' | b't' | b'y');
            out.push(p);
            if last {
                return out;
            }
        }
    }

    /// Whether the server closed the connection (within the test's patience).
    async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(10), read_packet(&mut self.stream)).await,
            Ok(Ok(None) | Err(_))
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_streams_end_only_their_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (g, addr) = gateway("", dir.path()).await;

    // A well-behaved MTA is in the middle of a message while the others misbehave.
    let mut good = Mta::connect(&addr).await;
    let (actions, protocol) = good.negotiate().await;
    assert_eq!(actions & (milter::F_ADDHDRS | milter::F_CHGHDRS), milter::F_ADDHDRS | milter::F_CHGHDRS);
    assert_ne!(protocol & milter::P_NR_HDR, 0, "no replies to headers are asked for");
    good.message_until_eom("lunch plans").await;

    // A packet length far beyond any milter packet.
    let mut huge = Mta::connect(&addr).await;
    huge.stream.write_all(&[0xff, 0xff, 0xff, 0xff, b'B']).await.unwrap();
    assert!(huge.closed().await, "an impossible length closes that connection");
    // A stream cut off inside a packet.
    let mut cut = Mta::connect(&addr).await;
    cut.negotiate().await;
    cut.stream.write_all(&[0, 0, 0, 50, b'L', b'S', b'u']).await.unwrap();
    cut.stream.shutdown().await.unwrap();
    assert!(cut.closed().await);
    // A header packet whose strings are not terminated, and an unknown command.
    let mut bad = Mta::connect(&addr).await;
    bad.negotiate().await;
    bad.send(b'M', b"<x@y.example>\0").await;
    bad.send(b'L', b"Subject").await;
    assert!(bad.closed().await);
    let mut unknown = Mta::connect(&addr).await;
    unknown.negotiate().await;
    unknown.send(b'Z', b"").await;
    assert!(unknown.closed().await);

    // The good connection finishes its message: our headers go in at the top, the forged one goes.
    let answer = good.end_of_message().await;
    let last = answer.last().unwrap();
    assert_eq!(last.command, b'a', "{answer:?}");
    let inserted: Vec<String> = answer
        .iter()
        .filter(|p| p.command == b'i')
        .map(|p| String::from_utf8_lossy(&p.data[4..]).split('\0').next().unwrap().to_string())
        .collect();
    assert_eq!(
        inserted[..4],
        ["X-Mailsift-Id", "X-Mailsift-Score", "X-Mailsift-SCL", "X-Mailsift-Action"],
        "{answer:?}"
    );
    let deleted: Vec<&milter::Packet> = answer.iter().filter(|p| p.command == b'm').collect();
    assert_eq!(deleted.len(), 1, "{answer:?}");
    assert_eq!(deleted[0].data, b"\0\0\0\x01X-Mailsift-Action\0\0");

    // A second message on the same connection, and a new connection, are served as before.
    good.send(b'M', b"<alice@sender.example>\0").await;
    good.send(b'R', b"<bob@example.com>\0").await;
    good.send(b'L', b"Subject\0 second\0").await;
    good.send(b'B', format!("{GTUBE}\r\n").as_bytes()).await;
    let answer = good.end_of_message().await;
    let last = answer.last().unwrap();
    assert_eq!(last.command, b'y', "{answer:?}");
    let text = String::from_utf8_lossy(&last.data).to_string();
    assert!(text.starts_with("550 5.7.1 Message rejected as spam [ref "), "{text}");
    good.send(b'Q', b"").await;
    assert!(good.closed().await);

    let mut again = Mta::connect(&addr).await;
    again.negotiate().await;
    again.message_until_eom("after the storm").await;
    assert_eq!(again.end_of_message().await.last().unwrap().command, b'a');

    g.db.flush().unwrap();
    let log = g.db.log_search(&LogQuery::default()).unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["deliver", "reject", "deliver"], "{log:?}");
    assert_eq!(log[2].client_ip.as_deref(), Some("192.0.2.7"));
    assert!(log[2].next_hop_response.as_deref().unwrap().contains("QUEUE42"), "{:?}", log[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_mode_keeps_quarantined_mail_in_the_mta_too() {
    let dir = tempfile::tempdir().unwrap();
    let (g, addr) = gateway("quarantine = \"hold\"", dir.path()).await;
    let mut mta = Mta::connect(&addr).await;
    mta.negotiate().await;
    mta.message_until_eom("quarantineme please").await;
    let answer = mta.end_of_message().await;
    let commands: Vec<char> = answer.iter().map(|p| p.command as char).collect();
    assert!(commands.contains(&'q'), "{commands:?}");
    assert_eq!(*commands.last().unwrap(), 'a', "{commands:?}");
    let q = g.db.quarantine_list(&QuarantineQuery::default()).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipient, "bob@example.com");
}
