//! `[smtp.virus]` in a real `mailsift serve` process with a private clamd (testkit): `/metrics` shows the
//! engine's state and the virus counters, and follows clamd going down. Also measures, bounded, how much
//! the virus scan costs in throughput (printed, not asserted: the machine is shared).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailsift_testkit::clamd::{self, Clamd};
use mailsift_testkit::clients::{smtp_send, HttpClient};
use mailsift_testkit::Proc;

/// Starts `serve` with `config`; returns it and its SMTP and HTTP addresses.
fn serve(data: &Path, config: &str) -> (Proc, SocketAddr, SocketAddr) {
    let file = data.join("mailsift.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    cmd.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "error");
    cmd.arg("--data-dir").arg(data).arg("--config").arg(&file);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    let mut child = Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let (mut smtp, mut http) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (smtp.is_none() || http.is_none()) && Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let addr = || line.trim().rsplit(' ').next().unwrap().parse::<SocketAddr>().ok();
        if line.starts_with("mailsift: SMTP inbound") {
            smtp = addr();
        } else if line.starts_with("mailsift: HTTP") {
            http = addr();
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (child, smtp.expect("SMTP address announced"), http.expect("HTTP address announced"))
}

fn metric(http: SocketAddr, prefix: &str) -> Option<String> {
    let text = HttpClient::new(http).get("/metrics").text();
    text.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| v.trim().to_string())
}

fn message(subject: &str, attachment: Option<&[u8]>) -> Vec<u8> {
    let mut m = format!(
        "From: Alice <alice@sender.example>\r\nTo: bob@localhost\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@sender.example>\r\nMIME-Version: 1.0\r\n"
    );
    match attachment {
        None => m.push_str("Content-Type: text/plain\r\n\r\nHello Bob,\r\nsee you at lunch.\r\n"),
        Some(a) => m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"t.com\"\r\n\r\n{}\r\n--b--\r\n",
            String::from_utf8_lossy(a)
        )),
    }
    m.into_bytes()
}

const BASE: &str = "[smtp]\nhostname = \"mx.test\"\n[smtp.tls]\nenabled = false\n";

#[test]
fn metrics_show_the_engine_and_follow_clamd_going_down() {
    let Some(mut c) = Clamd::start() else { return };
    let data = mailsift_testkit::temp_dir("mailsift-virus", "metrics");
    let (p, smtp, http) =
        serve(&data, &format!("{BASE}[smtp.virus]\nclamd = \"{}\"\ntimeout_ms = 10000\n", c.address()));

    let ok = smtp_send(smtp, "alice@sender.example", &["bob@localhost"], &message("clean", None)).unwrap();
    assert_eq!(ok.0, 250, "{ok:?}");
    let bad =
        smtp_send(smtp, "alice@sender.example", &["bob@localhost"], &message("v", Some(&clamd::eicar()))).unwrap();
    assert_eq!(bad.0, 554, "{bad:?}");
    assert!(bad.1.contains(clamd::EICAR_NAME), "{bad:?}");
    assert_eq!(metric(http, "mailsift_virus_engine_up ").as_deref(), Some("1"));
    assert_eq!(metric(http, "mailsift_virus_found_total ").as_deref(), Some("1"));
    let info = metric(http, "mailsift_virus_engine_info{").expect("engine info");
    assert!(info.starts_with("engine=\"ClamAV ") && info.ends_with("database=\"\"} 1"), "{info}");
    // A self-written database has no date: no age is claimed.
    assert_eq!(metric(http, "mailsift_virus_database_age_seconds "), None);

    c.stop();
    let later = smtp_send(smtp, "alice@sender.example", &["bob@localhost"], &message("later", None)).unwrap();
    assert_eq!(later.0, 451, "{later:?}");
    assert_eq!(metric(http, "mailsift_virus_engine_up ").as_deref(), Some("0"));
    assert_eq!(metric(http, "mailsift_virus_scan_failed_total ").as_deref(), Some("1"));
    mailsift_testkit::gateway::stop(p);
    let _ = std::fs::remove_dir_all(&data);
}

/// Sends `n` clean messages one after another; returns messages per second.
fn rate(smtp: SocketAddr, n: usize, tag: &str) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        let r =
            smtp_send(smtp, "alice@sender.example", &["bob@localhost"], &message(&format!("{tag}{i}"), None)).unwrap();
        assert_eq!(r.0, 250, "{r:?}");
        if started.elapsed() > Duration::from_secs(60) {
            return (i + 1) as f64 / started.elapsed().as_secs_f64();
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// A measurement, not a check (about a minute): `cargo test --release -p mailsift --test virus_serve --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_with_and_without_clamd() {
    let Some(c) = Clamd::start() else { return };
    const N: usize = 150;
    let data = mailsift_testkit::temp_dir("mailsift-virus", "rate-off");
    let (p, smtp, _) = serve(&data, BASE);
    let _ = rate(smtp, 10, "warm");
    let without = rate(smtp, N, "off");
    mailsift_testkit::gateway::stop(p);
    let _ = std::fs::remove_dir_all(&data);

    let data = mailsift_testkit::temp_dir("mailsift-virus", "rate-on");
    let (p, smtp, _) = serve(&data, &format!("{BASE}[smtp.virus]\nclamd = \"{}\"\n", c.address()));
    let _ = rate(smtp, 10, "warm");
    let with = rate(smtp, N, "on");
    mailsift_testkit::gateway::stop(p);
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "throughput, {N} sequential clean messages: without clamd {without:.1}/s, with clamd {with:.1}/s, ratio {:.2}",
        with / without
    );
}
