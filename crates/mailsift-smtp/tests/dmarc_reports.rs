//! DMARC aggregate reports (RFC 7489 §7), end to end over loopback: a day of inbound traffic from several
//! sender domains through a real gateway with DNS on (loopback DNS publishing their DMARC records and `rua`
//! addresses), then the reports: a dry run that sends nothing, and the run that spools them to the `rua`
//! addresses through the smarthost (a loopback sink). Each report validates against RFC 7489 Appendix C's
//! schema with `xmllint`; the external `rua` with its §7.1 authorisation record gets its report, the one
//! without gets nothing. Receiving: real report mails (mail-auth's test corpus) sent to our `receive`
//! address are parsed and summarised, and still delivered; a compression bomb is refused cleanly; and the
//! parser's entry point takes arbitrary bytes without panicking.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mail_parser::MimeHeaders;
use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::{Sink, SinkMessage};
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::Database;
use mailsift_testkit::clients::smtp_send;
use mailsift_testkit::dns::{TestDns, Zone};

const XSD: &str = "tests/dmarc/rfc7489-appendix-c.xsd";
const FEEDBACK: &str = "/work/shared/testdata/dmarc-reports/mail-auth/dmarc-feedback";

struct Running {
    gateway: Arc<Gateway>,
    inbound: std::net::SocketAddr,
    /// Where our domains' mail goes.
    inbox: Sink,
    /// The smarthost: every report leaves through it.
    smarthost: Sink,
    _dir: tempfile::TempDir,
}

async fn gateway(dns: Option<&TestDns>, extra: &str) -> Running {
    let inbox = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let smarthost = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dns_table = match dns {
        Some(d) => format!(
            "[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 500\ndeadline_ms = 3000\nhostname = \"mx.ours.test\"\n",
            d.addr()
        ),
        None => "[dns]\nhostname = \"mx.ours.test\"\n".to_string(),
    };
    let text = format!(
        "{dns_table}\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.ours.test\"\n\
         [smtp.outbound]\nsmarthost = \"{}\"\n\
         [smtp.dmarc_reports]\nsend = true\norg_name = \"Ours Test\"\nfrom = \"dmarc-reports@ours.test\"\n\
         contact = \"https://ours.test/dmarc\"\nreceive = [\"dmarc-rua@ours.test\", \"domains@stalw.art\"]\n{extra}\n\
         [[smtp.domains]]\nname = \"ours.test\"\nnext_hop = \"{}\"\n\
         [[smtp.domains]]\nname = \"stalw.art\"\nnext_hop = \"{}\"\n",
        smarthost.addr(),
        inbox.addr(),
        inbox.addr()
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap();
    let g = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
    let listeners = g.bind().await.unwrap();
    let inbound = listeners[0].0.local_addr().unwrap();
    tokio::spawn(g.clone().serve(listeners));
    Running { gateway: g, inbound, inbox, smarthost, _dir: dir }
}

async fn send(addr: std::net::SocketAddr, from: &str, rcpt: &str, msg: Vec<u8>) -> u16 {
    let (from, rcpt) = (from.to_string(), rcpt.to_string());
    tokio::task::spawn_blocking(move || smtp_send(addr, &from, &[&rcpt], &msg)).await.unwrap().unwrap().0
}

fn message(from: &str, n: usize) -> Vec<u8> {
    format!(
        "From: Sender <{from}>\r\nTo: staff@ours.test\r\nSubject: Monthly newsletter number {n}\r\n\
         Date: Fri, 4 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m{n}.{from}>\r\n\r\n\
         Dear colleague, the minutes of the meeting are attached below as text. Regards.\r\n"
    )
    .into_bytes()
}

/// Fails when the tool is missing under CI; elsewhere says so and returns false.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok();
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is needed (CI=true)");
        eprintln!("{tool} not installed: that check is skipped");
    }
    ok
}

/// The gzipped report attached to a report mail: (file name, XML).
fn report_of(m: &SinkMessage) -> (String, String) {
    let parsed = mail_parser::MessageParser::default().parse(&m.data).expect("a report mail parses");
    let att = parsed.attachments().next().expect("the report is attached");
    let name = att.attachment_name().unwrap_or_default().to_string();
    let mut gz = Command::new("gzip")
        .args(["-dc"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    use std::io::Write;
    gz.stdin.take().unwrap().write_all(att.contents()).unwrap();
    let out = gz.wait_with_output().unwrap();
    assert!(out.status.success(), "the attachment is gzip");
    (name, String::from_utf8(out.stdout).unwrap())
}

fn validate(xml: &str, dir: &Path) {
    if !have("xmllint") {
        return;
    }
    let file = dir.join("report.xml");
    std::fs::write(&file, xml).unwrap();
    let xsd = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(XSD);
    let out = Command::new("xmllint").args(["--noout", "--schema"]).arg(&xsd).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}\n{xml}", String::from_utf8_lossy(&out.stderr));
}

async fn wait_for(sink: &Sink, n: usize) -> Vec<SinkMessage> {
    for _ in 0..100 {
        let got = sink.messages();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sink.messages()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_traffic_is_reported_to_the_authorised_rua_addresses_through_the_spool() {
    let mut zone = Zone::new();
    zone.ptr("127.0.0.1", "mail.senders.test").a("mail.senders.test", "127.0.0.1");
    // alpha: aligned SPF pass, p=reject, rua at its own domain.
    zone.txt("alpha.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.alpha.test", "v=DMARC1; p=reject; rua=mailto:dmarc@alpha.test");
    // beta: its mail comes through an ESP (SPF passes for the ESP, not aligned): DMARC fails, p=quarantine;
    // its rua is another organisation's, which publishes the §7.1 authorisation.
    zone.txt("esp.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.beta.test", "v=DMARC1; p=quarantine; adkim=s; rua=mailto:reports@collector.test!50k")
        .txt("beta.test._report._dmarc.collector.test", "v=DMARC1");
    // gamma: passes; its external rua has no authorisation record: nothing goes there.
    zone.txt("gamma.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.gamma.test", "v=DMARC1; p=none; rua=mailto:agg@elsewhere.test");
    // delta: a policy without rua: nothing is collected or sent.
    zone.txt("delta.test", "v=spf1 ip4:127.0.0.1 -all").txt("_dmarc.delta.test", "v=DMARC1; p=none");
    let dns = TestDns::start(zone);
    let g = gateway(Some(&dns), "").await;

    let mut n = 0;
    for (mail_from, from, times) in [
        ("news@alpha.test", "news@alpha.test", 4),
        ("bounce@esp.test", "offers@beta.test", 3),
        ("info@gamma.test", "info@gamma.test", 2),
        ("info@delta.test", "info@delta.test", 2),
    ] {
        for _ in 0..times {
            n += 1;
            let code = send(g.inbound, mail_from, "staff@ours.test", message(from, n)).await;
            assert!(code == 250 || code == 550, "{from}: {code}");
        }
    }

    // The day is over (the reports of the period that holds now are owed from its end on).
    let later = mailsift_engine::unix_now() + 2 * 86_400;
    let state = g.gateway.state();
    let plans = mailsift_gateway::dmarc_send::plan(&g.gateway, &state, later).await.unwrap();
    let domains: Vec<&str> = plans.iter().map(|p| p.report.policy.domain.as_str()).collect();
    assert_eq!(domains, ["alpha.test", "beta.test", "gamma.test"], "{plans:#?}");
    let alpha = &plans[0];
    assert_eq!(alpha.destinations, [("dmarc@alpha.test".to_string(), 0)]);
    assert_eq!(alpha.report.records.iter().map(|r| r.count).sum::<u64>(), 4);
    let beta = &plans[1];
    assert_eq!(beta.destinations, [("reports@collector.test".to_string(), 50 * 1024)]);
    assert_eq!(beta.report.records.len(), 1);
    assert_eq!((beta.report.records[0].dkim.as_str(), beta.report.records[0].spf.as_str()), ("fail", "fail"));
    assert_eq!(beta.report.records[0].disposition, "quarantine");
    assert_eq!(beta.report.records[0].envelope_from, "esp.test");
    let gamma = &plans[2];
    assert!(gamma.destinations.is_empty(), "{gamma:#?}");
    assert!(gamma.refused[0].1.contains("gamma.test._report._dmarc.elsewhere.test"), "{:?}", gamma.refused);
    // The dry run sent nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(g.smarthost.messages().is_empty());
    assert_eq!(g.gateway.counters.dmarc_reports_sent.load(std::sync::atomic::Ordering::Relaxed), 0);

    let run = mailsift_gateway::dmarc_send::send_due(&g.gateway, later).await.unwrap();
    assert_eq!((run.mails, run.reports), (2, 3), "{run:?}");
    let got = wait_for(&g.smarthost, 2).await;
    assert_eq!(got.len(), 2, "exactly the two authorised destinations get a report");
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for m in &got {
        assert_eq!(m.mail_from, "dmarc-reports@ours.test");
        let (name, xml) = report_of(m);
        let domain = if m.rcpts == ["dmarc@alpha.test"] { "alpha.test" } else { "beta.test" };
        assert!(name.starts_with(&format!("mx.ours.test!{domain}!")) && name.ends_with(".xml.gz"), "{name}");
        let parsed = mail_parser::MessageParser::default().parse(&m.data).unwrap();
        let subject = parsed.subject().unwrap_or_default().to_string();
        assert!(
            subject.contains(&format!("Report Domain: {domain} Submitter: mx.ours.test Report-ID: <")),
            "{subject}"
        );
        validate(&xml, dir.path());
        assert!(xml.contains("<source_ip>127.0.0.1</source_ip>") && xml.contains("<org_name>Ours Test</org_name>"));
        seen.push(m.rcpts[0].clone());
    }
    seen.sort();
    assert_eq!(seen, ["dmarc@alpha.test", "reports@collector.test"]);
    assert_eq!(g.gateway.counters.dmarc_reports_sent.load(std::sync::atomic::Ordering::Relaxed), 2);
    // The reported periods are forgotten: nothing is owed twice.
    let again = mailsift_gateway::dmarc_send::send_due(&g.gateway, later).await.unwrap();
    assert_eq!((again.mails, again.reports), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_for_our_domains_are_summarised_and_still_delivered() {
    let g = gateway(None, "max_received_report_bytes = 1048576\n").await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(FEEDBACK)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let code = send(g.inbound, "noreply@reporter.example", "domains@stalw.art", std::fs::read(f).unwrap()).await;
        assert!(code == 250, "{}: {code}", f.display());
    }
    assert_eq!(g.inbox.messages().len(), files.len(), "every report is delivered as well");
    assert_eq!(
        g.gateway.counters.dmarc_reports_received.load(std::sync::atomic::Ordering::Relaxed),
        files.len() as u64
    );
    let summary = g.gateway.db.dmarc_received_summary(0, Some("stalw.art")).unwrap();
    let messages: u64 = summary.iter().map(|s| s.messages).sum();
    assert_eq!(messages, files.len() as u64, "{summary:#?}");
    let reporters: u64 = summary.iter().map(|s| s.reporters).sum();
    assert!(reporters >= 5, "{summary:#?}");
    // The same report again is not counted twice.
    let code =
        send(g.inbound, "noreply@reporter.example", "domains@stalw.art", std::fs::read(&files[0]).unwrap()).await;
    assert_eq!(code, 250);
    let again = g.gateway.db.dmarc_received_summary(0, Some("stalw.art")).unwrap();
    assert_eq!(again.iter().map(|s| s.messages).sum::<u64>(), messages);

    // A compression bomb (64 MiB of zeros in a small gzip attachment) is refused, and delivered as mail.
    let mut gz = Command::new("gzip")
        .args(["-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = gz.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let zeros = vec![b'<'; 1 << 20];
        for _ in 0..64 {
            stdin.write_all(&zeros).unwrap();
        }
    });
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.stdout.len() < 1 << 20);
    let b64 = base64_lines(&out.stdout);
    let bomb = format!(
        "From: r@reporter.example\r\nTo: domains@stalw.art\r\nSubject: Report Domain: stalw.art\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"x!stalw.art!1!2.xml.gz\"\r\n\r\n{b64}--b--\r\n"
    );
    let before = g.inbox.messages().len();
    let started = std::time::Instant::now();
    let code = send(g.inbound, "r@reporter.example", "domains@stalw.art", bomb.into_bytes()).await;
    assert_eq!(code, 250);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(g.inbox.messages().len(), before + 1);
    let err = mailsift_gateway::dmarc_send::parse_report(&std::fs::read(&files[0]).unwrap(), 64);
    assert!(err.is_err(), "a 64-byte cap refuses any real report: {err:?}");
    let big = format!(
        "From: r@reporter.example\r\nTo: domains@stalw.art\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: application/gzip\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"r.xml.gz\"\r\n\r\n{}--b--\r\n",
        base64_lines(&out.stdout)
    );
    let refused = mailsift_gateway::dmarc_send::parse_report(big.as_bytes(), 1 << 20);
    assert!(
        matches!(refused, Err(mailsift_gateway::dmarc_send::ReceiveError::TooLarge(_))),
        "the bomb is refused as too large: {refused:?}"
    );
}

fn base64_lines(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in bytes.chunks(3).enumerate() {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn the_report_parser_takes_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
        let _ = mailsift_gateway::dmarc_send::parse_report(&bytes, 64 * 1024);
    }

    #[test]
    fn the_report_parser_takes_any_mail_with_a_report_attachment(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        let mail = format!(
            "From: r@x.test\r\nTo: d@ours.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"r.xml.gz\"\r\n\r\n{}--b--\r\n",
            base64_lines(&body)
        );
        let _ = mailsift_gateway::dmarc_send::parse_report(mail.as_bytes(), 64 * 1024);
    }
}
