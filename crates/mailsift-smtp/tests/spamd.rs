//! mailsift as a spamd: Debian's `spamc` (package `spamc`) talks to our listener over loopback and parses what
//! it gets for CHECK, SYMBOLS, REPORT, PROCESS, HEADERS and PING; TELL trains the classifiers; and a raw
//! client shows that a malformed or truncated request gets an error on its own connection while the listener
//! keeps serving others. The spamc tests are skipped, with a notice, only when spamc is not installed and CI is not set (CI=true makes that a failure).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::{Database, Learner, LogQuery, SqliteStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

const HAM: &str = "Received: from mail.partner.example (mail.partner.example [192.0.2.10])\n\tby mx.example.com with ESMTP id 1;\n\tMon, 23 Nov 2026 10:00:00 +0000\n\
From: alice@partner.example\nTo: bob@example.com\nSubject: lunch plans\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\
Message-ID: <lunch@partner.example>\nX-Spam-Flag: YES\n\nHello Bob,\nsee you at lunch tomorrow.\n";

fn spam() -> String {
    format!(
        "From: offers@spam.example\nTo: bob@example.com\nSubject: you won\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\
Message-ID: <won@spam.example>\n\n{GTUBE}\n"
    )
}

/// A gateway with a spamd listener (and the classifiers' learner, so TELL can train); its `host` and `port`.
async fn gateway(extra: &str, dir: &std::path::Path) -> (Arc<Gateway>, String, String) {
    let config = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n[smtp.spamd]\nlisten = [\"127.0.0.1:0\"]\n{extra}\n"
    );
    let engine = Engine::new(EngineConfig::from_toml(&config).unwrap()).unwrap();
    let learner = Learner::open(SqliteStore::open_dir(dir).unwrap()).unwrap();
    let engine = engine.with_model(learner.model());
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&config).unwrap(), dir).unwrap().with_learner(learner);
    let g = Gateway::new(state, Database::open_in(dir).unwrap(), dir);
    let listeners = g.bind().await.unwrap();
    let side = g.start_side_listeners().await.unwrap();
    assert_eq!(side[0].0, "spamd");
    tokio::spawn(g.clone().serve(listeners));
    let (host, port) = side[0].1.strip_prefix("inet:").unwrap().rsplit_once(':').unwrap();
    (g, host.to_string(), port.to_string())
}

fn spamc_installed() -> bool {
    let found = Command::new("spamc").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        mailsift_testkit::tool_missing("spamc is not installed (apt-get install spamc)");
    }
    found
}

/// Runs Debian's spamc against our listener; exit code, standard output, standard error.
async fn spamc(host: &str, port: &str, args: &[&str], input: &str) -> (i32, String, String) {
    let mut cmd = Command::new("spamc");
    // -x: no "safe fallback", so a protocol error shows as an error instead of the message echoed back.
    cmd.args(["-d", host, "-p", port, "-x", "-t", "30", "-u", "bob"]).args(args);
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spamc runs");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spamc_gets_answers_it_parses() {
    if !spamc_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (g, host, port) = gateway("", dir.path()).await;
    let spam = spam();

    // CHECK: "score/required", and the exit code says spam (1) or not (0).
    let (code, out, err) = spamc(&host, &port, &["-c"], &spam).await;
    assert_eq!(code, 1, "{out} {err}");
    let (score, required) = out.trim().split_once('/').unwrap();
    assert!(score.parse::<f64>().unwrap() >= 5.0 && required == "5.0", "{out}");
    let (code, out, err) = spamc(&host, &port, &["-c"], HAM).await;
    assert_eq!(code, 0, "{out} {err}");
    let (score, required) = out.trim().split_once('/').unwrap();
    assert!(score.parse::<f64>().unwrap() < 5.0 && required == "5.0", "{out}");

    // SYMBOLS: the names that fired.
    let (_, out, err) = spamc(&host, &port, &["-y"], &spam).await;
    assert!(out.trim().split(',').any(|s| s == "GTUBE"), "{out} {err}");

    // REPORT: spamc prints the score line, then our report.
    let (code, out, err) = spamc(&host, &port, &["-R"], &spam).await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.lines().next().unwrap().ends_with("/5.0"), "{out}");
    assert!(out.contains("mailsift verdict") && out.contains("GTUBE"), "{out}");
    let (_, out, _) = spamc(&host, &port, &["-r"], HAM).await;
    assert!(!out.contains("mailsift verdict"), "no report for ham with -r: {out}");

    // PROCESS: the message with our headers; a forged X-Spam-Flag is gone from ham.
    let (code, out, err) = spamc(&host, &port, &[], &spam).await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.starts_with("X-Spam-Flag: YES\nX-Spam-Status: Yes, score="), "{out}");
    assert!(out.contains("\nX-Mailsift-Action: reject\n") && out.contains("Subject: [SPAM] you won\n"), "{out}");
    assert!(out.ends_with(&format!("\n\n{GTUBE}\n")), "the body is intact: {out}");
    let (_, out, _) = spamc(&host, &port, &[], HAM).await;
    assert!(out.starts_with("X-Spam-Status: No, score="), "{out}");
    assert!(!out.contains("X-Spam-Flag"), "{out}");
    assert!(out.contains("\nX-Mailsift-Action: deliver\n") && out.ends_with("see you at lunch tomorrow.\n"), "{out}");

    // HEADERS: only the new header block travels back; spamc puts the original body under it.
    let (_, out, err) = spamc(&host, &port, &["--headers"], &spam).await;
    assert!(out.contains("\nX-Mailsift-Action: reject\n"), "{out} {err}");
    assert!(
        out.ends_with(&format!(
            "Subject: [SPAM] you won\n{}\n\n{GTUBE}\n",
            "Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <won@spam.example>"
        )),
        "{out}"
    );
    let addr = format!("{host}:{port}");
    let answer =
        raw(&addr, format!("HEADERS SPAMC/1.5\r\nContent-length: {}\r\n\r\n{spam}", spam.len()).as_bytes()).await;
    assert!(answer.contains("X-Mailsift-Action: reject\n") && answer.ends_with("\n\n"), "{answer}");
    assert!(!answer.contains(GTUBE), "{answer}");

    // PING.
    let (code, out, err) = spamc(&host, &port, &["-K"], "").await;
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out.trim(), "SPAMD/1.5 0", "spamc prints the PONG line's version and status");

    // Every check is a row of the message log, with the envelope read from the message's trace headers.
    g.db.flush().unwrap();
    let log = g.db.log_search(&LogQuery::default()).unwrap();
    assert_eq!(log.len(), 9, "{log:?}");
    assert!(log.iter().all(|e| e.stage == "spamd"), "{log:?}");
    let ham_row = log.iter().find(|e| e.subject.as_deref() == Some("lunch plans")).unwrap();
    assert_eq!(ham_row.client_ip.as_deref(), Some("192.0.2.10"), "{ham_row:?}");
    assert!(ham_row.next_hop_response.as_deref().unwrap().contains("for user bob"), "{ham_row:?}");
    assert!(log.iter().any(|e| e.action == "reject" && e.symbols.iter().any(|(s, _)| s == "GTUBE")));
}

fn trained_side(dir: &std::path::Path, raw: &str) -> Option<mailsift_engine::classify::Side> {
    let learner = Learner::open(SqliteStore::open_dir(dir).unwrap()).unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let msg = engine.parse(raw.as_bytes());
    learner.trained_side(&mailsift_engine::classify::message_digest(&msg)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_trains_the_classifiers() {
    if !spamc_installed() {
        return;
    }
    use mailsift_engine::classify::Side;
    let dir = tempfile::tempdir().unwrap();
    let (g, host, port) = gateway("allow_tell = true", dir.path()).await;
    let msg = "From: deals@shop.example\nTo: bob@example.com\nSubject: cheap watches\n\nBuy cheap watches today.\n";
    assert_eq!(trained_side(dir.path(), msg), None);

    let (code, out, err) = spamc(&host, &port, &["-L", "spam"], msg).await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("Message successfully un/learned"), "{out} {err}");
    assert_eq!(trained_side(dir.path(), msg), Some(Side::Spam));
    let (code, out, _) = spamc(&host, &port, &["-L", "spam"], msg).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Message was already un/learned"), "{out}");

    // A user's correction moves it to the other side; forget unlearns it.
    let (_, out, _) = spamc(&host, &port, &["-L", "ham"], msg).await;
    assert!(out.contains("successfully"), "{out}");
    assert_eq!(trained_side(dir.path(), msg), Some(Side::Ham));
    let (_, out, _) = spamc(&host, &port, &["-L", "forget"], msg).await;
    assert!(out.contains("successfully"), "{out}");
    assert_eq!(trained_side(dir.path(), msg), None);

    g.db.flush().unwrap();
    let log = g.db.log_search(&LogQuery::default()).unwrap();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(log.iter().all(|e| e.action == "report" && e.stage == "spamd"), "{log:?}");
    assert!(log[3].reason.as_deref().unwrap().starts_with("spamd TELL spam by bob: learned"), "{:?}", log[3]);
}

/// One raw request; everything the server answered before closing.
async fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_an_error_on_their_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (_g, host, port) = gateway("", dir.path()).await;
    let addr = format!("{host}:{port}");

    // A client in the middle of a good request while the others misbehave.
    let body = spam();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(format!("CHECK SPAMC/1.5\r\nContent-length: {}\r\n\r\n", body.len()).as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..10]).await.unwrap();

    let answer = raw(&addr, b"HELLO THERE\r\n\r\n").await;
    assert!(answer.starts_with("SPAMD/1.0 76 bad request line"), "{answer}");
    let answer = raw(&addr, b"FROB SPAMC/1.5\r\n\r\n").await;
    assert!(answer.starts_with("SPAMD/1.0 76 unknown command FROB"), "{answer}");
    let answer = raw(&addr, b"CHECK SPAMC/1.5\r\nContent-length: 500\r\n\r\nFrom: a@b.example\r\n\r\nshort").await;
    assert!(answer.starts_with("SPAMD/1.0 76 message truncated:"), "{answer}");
    let answer = raw(&addr, b"CHECK SPAMC/1.5\r\nContent-len").await;
    assert!(answer.starts_with("SPAMD/1.0 76 request truncated"), "{answer}");
    let answer = raw(&addr, b"CHECK SPAMC/1.5\r\nContent-length: lots\r\n\r\n").await;
    assert!(answer.starts_with("SPAMD/1.0 76 bad Content-length"), "{answer}");
    let answer = raw(&addr, b"CHECK SPAMC/1.5\r\nContent-length: 999999999999\r\n\r\n").await;
    assert!(answer.starts_with("SPAMD/1.0 98 "), "{answer}");
    let answer =
        raw(&addr, b"TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\nContent-length: 4\r\n\r\nhi\r\n").await;
    assert!(answer.starts_with("SPAMD/1.0 77 TELL is not enabled"), "{answer}");

    // The good client finishes and gets its verdict.
    slow.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), slow.read_to_string(&mut out)).await.unwrap().unwrap();
    assert!(out.starts_with("SPAMD/1.1 0 EX_OK\r\nSpam: True ; "), "{out}");
    let answer = raw(&addr, b"PING SPAMC/1.5\r\n\r\n").await;
    assert_eq!(answer, "SPAMD/1.5 0 PONG\r\n");
}
