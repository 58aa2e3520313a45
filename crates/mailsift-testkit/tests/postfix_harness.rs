//! The Postfix harness against the real Postfix: a message sent over SMTP comes back from the Maildir byte for
//! byte, two instances run side by side without seeing each other's mail, and a dropped instance is gone.
//!
//! These tests need Postfix installed and root (as in CI); `MAILSIFT_SKIP_POSTFIX=1` skips them elsewhere.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mailsift_testkit::postfix::Postfix;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// The smallest SMTP client that does the job: one transaction, every reply checked.
struct SmtpSession {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpSession {
    fn connect(addr: SocketAddr) -> io::Result<(SmtpSession, String)> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut session = SmtpSession { reader: BufReader::new(stream.try_clone()?), writer: stream };
        let greeting = session.reply(220)?;
        Ok((session, greeting))
    }

    /// Reads one reply (all its lines, `250-...` up to `250 ...`) and checks its code.
    fn reply(&mut self, expected: u16) -> io::Result<String> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("connection closed after {text:?}")));
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if !text.starts_with(&expected.to_string()) {
            return Err(io::Error::other(format!("expected {expected}, got {text:?}")));
        }
        Ok(text)
    }

    fn command(&mut self, line: &str, expected: u16) -> io::Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply(expected)
    }

    /// Sends `message` (CRLF line ends) as DATA, dot-stuffing lines that start with a dot.
    fn data(&mut self, message: &[u8]) -> io::Result<String> {
        self.command("DATA", 354)?;
        let mut wire = Vec::with_capacity(message.len() + 16);
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
        }
        if !wire.ends_with(b"\r\n") {
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        self.writer.write_all(&wire)?;
        self.reply(250)
    }
}

fn send(addr: SocketAddr, from: &str, to: &str, message: &[u8]) -> io::Result<()> {
    let (mut smtp, _) = SmtpSession::connect(addr)?;
    smtp.command("EHLO client.mailsift.test", 250)?;
    smtp.command(&format!("MAIL FROM:<{from}>"), 250)?;
    smtp.command(&format!("RCPT TO:<{to}>"), 250)?;
    smtp.data(message)?;
    smtp.command("QUIT", 221)?;
    Ok(())
}

/// A message with the things a careless relay breaks: a line starting with a dot, trailing spaces, 8-bit
/// text and a blank line inside the body.
fn message(to: &str, marker: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@client.mailsift.test>\r\n\
         To: <{to}>\r\n\
         Subject: harness check {marker}\r\n\
         Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\
         Message-ID: <{marker}@client.mailsift.test>\r\n\
         \r\n\
         First line of {marker}.\r\n\
         .a line that starts with a dot\r\n\
         ..and one with two\r\n\
         trailing spaces   \r\n\
         \r\n\
         Gr\u{fc}\u{df}e aus dem Testlauf\r\n"
    )
    .into_bytes()
}

/// What Postfix stores: the same bytes, with LF where SMTP carried CRLF.
fn stored_form(message: &[u8]) -> Vec<u8> {
    String::from_utf8(message.to_vec()).expect("test messages are UTF-8").replace("\r\n", "\n").into_bytes()
}

#[test]
fn message_sent_over_smtp_is_delivered_byte_for_byte() {
    if !Postfix::available_or_skip() {
        return;
    }
    let started = Instant::now();
    let postfix = Postfix::start(&["inbound.mailsift.test"]).expect("start Postfix");
    eprintln!("Postfix instance on {} ready in {:?}", postfix.smtp_addr(), started.elapsed());
    assert!(postfix.config_dir().join("main.cf").is_file());

    let sent = message("alice@inbound.mailsift.test", "byte-for-byte");
    send(postfix.smtp_addr(), "sender@client.mailsift.test", "alice@inbound.mailsift.test", &sent)
        .unwrap_or_else(|e| panic!("SMTP transaction failed: {e}\nmaillog:\n{}", postfix.log()));

    let delivered = postfix.wait_for_messages(1, DELIVERY_TIMEOUT);
    assert_eq!(delivered.len(), 1, "one message delivered; maillog:\n{}", postfix.log());
    let stored = &delivered[0];
    let expected = stored_form(&sent);
    assert!(
        stored.ends_with(&expected),
        "the delivered file ends with the message as sent\n--- delivered ---\n{}\n--- expected tail ---\n{}",
        String::from_utf8_lossy(stored),
        String::from_utf8_lossy(&expected)
    );
    // Before it come only the trace lines Postfix adds on delivery.
    let trace = String::from_utf8_lossy(&stored[..stored.len() - expected.len()]).into_owned();
    assert!(trace.starts_with("Return-Path: <sender@client.mailsift.test>\n"), "trace: {trace}");
    assert!(trace.contains("Delivered-To: alice@inbound.mailsift.test\n"), "trace: {trace}");
    assert!(trace.contains("Received: from client.mailsift.test (unknown [127.0.0.1])"), "trace: {trace}");
    assert!(postfix.log().contains("status=sent (delivered to maildir)"), "maillog:\n{}", postfix.log());

    // Mail for a domain the instance does not serve is refused at RCPT, not relayed anywhere.
    let (mut smtp, _) = SmtpSession::connect(postfix.smtp_addr()).expect("connect");
    smtp.command("EHLO client.mailsift.test", 250).expect("EHLO");
    smtp.command("MAIL FROM:<sender@client.mailsift.test>", 250).expect("MAIL");
    let refused = smtp.command("RCPT TO:<bob@elsewhere.mailsift.test>", 550).expect("RCPT refused");
    assert!(refused.contains("this test instance delivers only to its own domains"), "{refused}");
    smtp.command("QUIT", 221).expect("QUIT");
    assert_eq!(postfix.delivered().len(), 1, "nothing else reached the Maildir");
}

#[test]
fn two_instances_run_side_by_side_and_stop_cleanly() {
    if !Postfix::available_or_skip() {
        return;
    }
    let started = Instant::now();
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| Postfix::start(&["one.mailsift.test"]));
        let second = scope.spawn(|| {
            Postfix::start_with(&["two.mailsift.test"], &[("smtpd_banner", "$myhostname ESMTP second-instance")])
        });
        (first.join().unwrap().expect("start first"), second.join().unwrap().expect("start second"))
    });
    eprintln!("two Postfix instances started concurrently in {:?}", started.elapsed());
    assert_ne!(first.smtp_addr(), second.smtp_addr());
    assert_ne!(first.config_dir(), second.config_dir());

    let (_, banner) = SmtpSession::connect(second.smtp_addr()).expect("connect to second");
    assert!(banner.contains("second-instance"), "start_with settings apply: {banner:?}");

    for (postfix, to) in [(&first, "a@one.mailsift.test"), (&second, "b@two.mailsift.test")] {
        send(postfix.smtp_addr(), "sender@client.mailsift.test", to, &message(to, to))
            .unwrap_or_else(|e| panic!("SMTP to {to} failed: {e}\nmaillog:\n{}", postfix.log()));
    }
    for (postfix, to) in [(&first, "a@one.mailsift.test"), (&second, "b@two.mailsift.test")] {
        let delivered = postfix.wait_for_messages(1, DELIVERY_TIMEOUT);
        assert_eq!(delivered.len(), 1, "{to}: exactly its own message; maillog:\n{}", postfix.log());
        assert!(delivered[0].ends_with(&stored_form(&message(to, to))), "{to}");
    }

    let (first_addr, first_dir) = (first.smtp_addr(), first.config_dir().to_path_buf());
    let stopping = Instant::now();
    drop(first);
    eprintln!("one instance stopped in {:?}", stopping.elapsed());
    assert!(TcpStream::connect(first_addr).is_err(), "nothing listens on {first_addr} after drop");
    assert!(!first_dir.exists(), "the instance's directory is removed");
    // The other instance does not notice.
    let (mut smtp, _) = SmtpSession::connect(second.smtp_addr()).expect("second still answers");
    smtp.command("QUIT", 221).expect("QUIT");
}
