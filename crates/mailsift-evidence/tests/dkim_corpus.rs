//! Perl Mail::DKIM's verifier corpus (`../shared/testdata/dkim/perl-mail-dkim`): 73 messages with the
//! DNS records of `FAKE_DNS.dat` served on loopback, checked against `expected_results.tsv` (pass, fail,
//! invalid). Counted, with a regression floor (25 of 67 today): these vectors date from 2005-2007. The
//! misses are DomainKeys signatures (RFC 4870, historic; not verified), pre-standard draft signatures, and
//! RSA keys under 1024 bits, which our crypto library (ring) refuses to verify at all.

use std::path::PathBuf;

use mailsift_engine::config::DnsConfig;
use mailsift_engine::evidence::DkimVerdict;
use mailsift_engine::Envelope;
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::dns::{TestDns, Zone};

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/dkim/perl-mail-dkim")
}

fn category(verdicts: &[DkimVerdict]) -> &'static str {
    if verdicts.is_empty() {
        "none"
    } else if verdicts.contains(&DkimVerdict::Pass) {
        "pass"
    } else if verdicts.iter().any(|v| matches!(v, DkimVerdict::Fail | DkimVerdict::BodyModified)) {
        "fail"
    } else {
        "invalid"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perl_mail_dkim_corpus() {
    let dns_data = std::fs::read_to_string(base().join("FAKE_DNS.dat")).unwrap();
    let mut zone = Zone::new();
    for line in dns_data.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let Some((name, record)) = line.split_once(char::is_whitespace) else { continue };
        let record = record.trim();
        match record {
            "NXDOMAIN" => {}
            r if r.contains("SERVFAIL") => {
                zone.servfail(name);
            }
            r if r.contains("Query timed out") || r.contains("timeout") => {
                zone.timeout(name);
            }
            r => {
                zone.txt(name, r);
            }
        }
    }
    let dns = TestDns::start(zone);
    let config =
        DnsConfig { enabled: true, nameservers: vec![dns.addr().to_string()], timeout_ms: 300, ..DnsConfig::default() };
    let gatherer = SenderGatherer::new(&config).unwrap();
    let expected = std::fs::read_to_string(base().join("expected_results.tsv")).unwrap();
    let (mut passed, mut total, mut misses) = (0, 0, Vec::new());
    for line in expected.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, want) = (cols[0], cols[1]);
        if cols.get(2).is_some_and(|n| n.contains("SKIPPED upstream")) {
            continue;
        }
        let raw = std::fs::read(base().join("corpus").join(file)).unwrap();
        let raw = String::from_utf8_lossy(&raw).replace("\r\n", "\n").replace('\n', "\r\n");
        let facts = gatherer.gather(raw.as_bytes(), &Envelope::default()).await;
        let verdicts: Vec<DkimVerdict> = facts.dkim.iter().map(|d| d.verdict).collect();
        let got = category(&verdicts);
        total += 1;
        if got == want {
            passed += 1;
        } else {
            let details: Vec<&str> = facts.dkim.iter().map(|d| d.detail.as_str()).collect();
            misses.push(format!("{file}: got {got} {verdicts:?} {details:?}, expected {want}"));
        }
    }
    println!("Mail::DKIM corpus: {passed} of {total} as expected");
    for m in &misses {
        println!("  {m}");
    }
    assert!(total >= 60, "{total}");
    assert!(passed >= MIN_AS_EXPECTED, "{passed} of {total}: {misses:#?}");
}

const MIN_AS_EXPECTED: usize = 25;
