//! False-positive and false-negative reports sent by email to the report addresses: the attached original is
//! learned by the running gateway's classifiers and recorded; outsiders cannot report.

use std::net::SocketAddr;

use mailsift_engine::classify::Side;
use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::{Database, LogQuery, SqliteStore, TokenStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> (u16, String) {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap() == 0 {
            return (0, text);
        }
        text.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return (line[..3].parse().unwrap(), text);
        }
    }
}

async fn send(addr: SocketAddr, from: &str, rcpt: &str, msg: &str) -> (u16, String) {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await;
    for cmd in
        ["EHLO mail.example.com".to_string(), format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{rcpt}>"), "DATA".into()]
    {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        let a = reply(&mut r).await;
        if a.0 >= 400 {
            return a;
        }
    }
    w.write_all(format!("{msg}.\r\n").as_bytes()).await.unwrap();
    reply(&mut r).await
}

const REPORT: &str = "From: bob@example.com\r\nTo: notspam@example.com\r\nSubject: Fwd: invoice\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is not spam.\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: billing@partner.example\r\nTo: bob@example.com\r\nSubject: invoice 42\r\n\
Date: Mon, 23 Nov 2026 09:00:00 +0000\r\nMessage-ID: <inv42@partner.example>\r\n\r\nPlease find invoice 42 for the quarterly maintenance.\r\n--b--\r\n";

async fn start(trusted: bool) -> (tempfile::TempDir, SocketAddr, std::sync::Arc<Gateway>) {
    let dir = tempfile::tempdir().unwrap();
    let trusted = if trusted { "trusted_networks = [\"127.0.0.0/8\"]" } else { "" };
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[[smtp.domains]]\nname = \"example.com\"\n\
[smtp.reports]\nfalse_positive = [\"notspam@example.com\"]\nfalse_negative = [\"spam@example.com\"]\n\
[smtp.outbound]\n{trusted}\n"
    );
    let learner = mailsift_store::Learner::open(SqliteStore::open_dir(dir.path()).unwrap()).unwrap();
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap().with_model(learner.model());
    let state =
        GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap().with_learner(learner);
    let g = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
    let listeners = g.bind().await.unwrap();
    let addr = listeners[0].0.local_addr().unwrap();
    tokio::spawn(g.clone().serve(listeners));
    (dir, addr, g)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_the_original_attached_retrains_the_running_gateway() {
    let (dir, addr, g) = start(true).await;
    let (code, text) = send(addr, "bob@example.com", "notspam@example.com", REPORT).await;
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("1 message(s) learned as ham"), "{text}");
    // The same original reported the other way round is a correction, not a second count.
    let (code, _) = send(addr, "bob@example.com", "spam@example.com", &REPORT.replace("notspam@", "spam@")).await;
    assert_eq!(code, 250);

    let store = SqliteStore::open_dir(dir.path()).unwrap();
    let subs = store.submissions().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0].correct_side, Side::Ham);
    assert_eq!(subs[0].channel, "email");
    assert_eq!(subs[0].reporter.as_deref(), Some("bob@example.com"));
    assert_eq!(subs[0].sender_domain.as_deref(), Some("partner.example"));
    assert!(subs[0].source.contains("attached original"));
    assert_eq!((subs[1].correct_side, subs[1].previous_side), (Side::Spam, Some(Side::Ham)));
    // Nothing was delivered to the report address, and the log says what happened.
    assert!(!dir.path().join("maildir").exists());
    g.db.flush().unwrap();
    let log = g.db.log_search(&LogQuery { action: Some("report".into()), ..Default::default() }).unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log[1].reason.as_deref().unwrap().starts_with("false-positive report: learned: invoice 42"),
        "{:?}",
        log[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_cannot_train_the_classifiers_and_empty_reports_are_refused() {
    let (_dir, addr, _g) = start(false).await;
    let (code, text) = send(addr, "mallory@evil.example", "notspam@example.com", REPORT).await;
    assert_eq!(code, 550, "{text}");
    let (_dir, addr, _g) = start(true).await;
    let (code, text) = send(addr, "bob@example.com", "notspam@example.com", "Subject: nothing\r\n\r\n \r\n").await;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("attach the original"), "{text}");
}
