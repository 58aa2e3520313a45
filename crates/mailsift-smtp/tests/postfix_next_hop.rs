//! Debian's Postfix as the organisation's mail server behind the gateway: what we relay arrives with our
//! headers, what Postfix refuses is refused to our client with Postfix's own words, and STARTTLS towards the
//! next hop is used when offered. Needs Postfix and root (CI installs it); MAILSIFT_SKIP_POSTFIX=1 skips.

use std::sync::Arc;
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::{Database, LogQuery};
use mailsift_testkit::postfix::Postfix;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn gateway(config: &str, dir: &std::path::Path) -> (Arc<Gateway>, std::net::SocketAddr) {
    let engine = Engine::new(EngineConfig::from_toml(config).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(config).unwrap(), dir).unwrap();
    let g = Gateway::new(state, Database::open_in(dir).unwrap(), dir);
    let listeners = g.bind().await.unwrap();
    let addr = listeners[0].0.local_addr().unwrap();
    tokio::spawn(g.clone().serve(listeners));
    (g, addr)
}

/// One reply, all its lines; code 0 when the connection closed.
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

/// One transaction; the first refusal, or the answer to the end of data.
async fn transaction(addr: std::net::SocketAddr, rcpt: &str, msg: &str) -> (u16, String) {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await;
    let commands = [
        "EHLO client.sender.example".to_string(),
        "MAIL FROM:<alice@sender.example>".into(),
        format!("RCPT TO:<{rcpt}>"),
        "DATA".into(),
    ];
    for cmd in commands {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        let answer = reply(&mut r).await;
        if answer.0 >= 400 {
            return answer;
        }
    }
    w.write_all(format!("{msg}.\r\n").as_bytes()).await.unwrap();
    reply(&mut r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_as_next_hop_receives_our_verdict_and_its_refusals_come_back() {
    if !Postfix::available_or_skip() {
        return;
    }
    let postfix = Postfix::start(&["example.com"]).unwrap();
    let hop = postfix.smtp_addr();
    let dir = tempfile::tempdir().unwrap();
    // other.test is routed to the same Postfix, which does not take mail for it: its 5xx must come back.
    let config = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n\
[[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{hop}\"\n\
[[smtp.domains]]\nname = \"other.test\"\nnext_hop = \"{hop}\"\n"
    );
    let (g, addr) = gateway(&config, dir.path()).await;
    let msg = "From: alice@sender.example\r\nTo: bob@example.com\r\nSubject: through postfix\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <pf1@sender.example>\r\n\r\nHello Bob,\r\n..a leading dot (stuffed on the wire)\r\n";
    let (code, text) = transaction(addr, "bob@example.com", msg).await;
    assert_eq!(code, 250, "{text}\n{}", postfix.log());
    let got = postfix.wait_for_messages(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", postfix.log());
    let m = String::from_utf8_lossy(&got[0]).to_string();
    assert!(m.contains("X-Mailsift-Action: deliver"), "{m}");
    assert!(m.contains("by mx.test (mailsift) with ESMTP id"), "{m}");
    assert!(m.contains("\n.a leading dot (stuffed on the wire)\n"), "dot-stuffing round trip: {m}");
    assert!(postfix.log().contains("bob@example.com"), "{}", postfix.log());

    let (code, text) = transaction(addr, "carol@other.test", msg).await;
    assert!(code >= 500 && code < 600, "{code} {text}");
    g.db.flush().unwrap();
    let log = g.db.log_search(&LogQuery::default()).unwrap();
    assert_eq!(log[0].action, "failed", "{log:?}");
    assert!(log[0].next_hop_response.as_deref().unwrap_or("").starts_with('5'), "{:?}", log[0]);
    assert_eq!(log[1].action, "deliver");
    assert!(log[1].next_hop_response.as_deref().unwrap_or("").starts_with("250"), "{:?}", log[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_used_towards_a_next_hop_that_offers_it() {
    if !Postfix::available_or_skip() {
        return;
    }
    // A certificate for Postfix, made the way the gateway makes its own self-signed one.
    let certs = tempfile::tempdir().unwrap();
    mailsift_smtp::tls::server_config(&Default::default(), "localhost", certs.path()).unwrap();
    let cert = certs.path().join("tls/cert.pem").display().to_string();
    let key = certs.path().join("tls/key.pem").display().to_string();
    let postfix = Postfix::start_with(
        &["example.com"],
        &[("smtpd_tls_cert_file", &cert), ("smtpd_tls_key_file", &key), ("smtpd_tls_security_level", "may")],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n[[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{}\"\n",
        postfix.smtp_addr()
    );
    let (_g, addr) = gateway(&config, dir.path()).await;
    let msg = "From: alice@sender.example\r\nSubject: over TLS\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <pf2@sender.example>\r\n\r\nsecret plans\r\n";
    let (code, text) = transaction(addr, "bob@example.com", msg).await;
    assert_eq!(code, 250, "{text}\n{}", postfix.log());
    let got = postfix.wait_for_messages(1, Duration::from_secs(20));
    let m = String::from_utf8_lossy(&got[0]).to_string();
    let postfix_hop = m.split("\nReceived: from client.sender.example").next().unwrap();
    assert!(postfix_hop.contains("with ESMTPS"), "Postfix saw TLS: {m}");
}
