//! DKIM and ARC vectors from `../shared/testdata` (RFC 6376/8463 examples and real signed messages), each
//! with the DNS records it needs served by a loopback DNS server, verified through our sender-evidence stage.
//!
//! Layout (from mail-auth's test data): DNS records `name record` one a line, a blank line, then the message
//! with LF line ends, which is converted to CRLF as on the wire. Verification uses the real clock, so a
//! vector whose signature carries an expiry (`x=`) in the past is expected to come out `Expired`.

use std::path::PathBuf;

use mailsift_engine::config::DnsConfig;
use mailsift_engine::evidence::{DkimVerdict, Outcome};
use mailsift_engine::Envelope;
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::dns::{TestDns, Zone};

fn load(rel: &str) -> (Zone, String) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata").join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let (records, message) = text.split_once("\n\n").expect("records, blank line, message");
    let mut zone = Zone::new();
    for line in records.lines() {
        if let Some((name, record)) = line.split_once(' ') {
            zone.txt(name, record);
        }
    }
    (zone, message.replace("\r\n", "\n").replace('\n', "\r\n"))
}

async fn gather(zone: Zone, message: &str) -> mailsift_engine::evidence::SenderFacts {
    let dns = TestDns::start(zone);
    let config = DnsConfig { enabled: true, nameservers: vec![dns.addr().to_string()], ..DnsConfig::default() };
    SenderGatherer::new(&config).unwrap().gather(message.as_bytes(), &Envelope::default()).await
}

#[tokio::test]
async fn dkim_vectors_verify() {
    for n in 1..=6 {
        let file = format!("dkim/mail-auth/{n:03}.txt");
        let (zone, message) = load(&file);
        let facts = gather(zone, &message).await;
        let last = facts.dkim.last().unwrap_or_else(|| panic!("{file}: no DKIM result"));
        let expired = message.contains(" x=") || message.contains(";x=") || message.contains("\tx=");
        let expected = if expired { DkimVerdict::Expired } else { DkimVerdict::Pass };
        assert_eq!(last.verdict, expected, "{file}: {:?}", facts.dkim);
    }
}

#[tokio::test]
async fn arc_vectors_validate() {
    for n in 1..=2 {
        let file = format!("arc/mail-auth/{n:03}.txt");
        let (zone, message) = load(&file);
        let facts = gather(zone, &message).await;
        let arc = facts.arc.as_ref().unwrap_or_else(|| panic!("{file}: no ARC result"));
        assert_eq!(arc.result, Outcome::Pass, "{file}: {arc:?}");
        assert!(arc.hops >= 1);
        assert!(facts.dkim.iter().any(|d| d.verdict == DkimVerdict::Pass), "{file}: {:?}", facts.dkim);
    }
}

#[tokio::test]
async fn a_changed_body_is_diagnosed_on_a_real_vector() {
    let (zone, message) = load("dkim/mail-auth/002.txt");
    let tampered = format!("{message}\r\nAdded by a disclaimer server.\r\n");
    let facts = gather(zone, &tampered).await;
    assert_eq!(facts.dkim.last().unwrap().verdict, DkimVerdict::BodyModified, "{:?}", facts.dkim);
}
