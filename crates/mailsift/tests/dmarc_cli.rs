//! `mailsift dmarc` as an administrator runs it: the dry run shows the owed report (destination, records,
//! the XML) and changes nothing; `report` queues the report mail in the durable spool and forgets the
//! period; `received` summarises the stored reports.

use std::path::Path;
use std::process::Command;

use mailsift_store::gateway::{DmarcReceivedRow, DmarcSeen};
use mailsift_store::Database;

fn bin(config: &Path, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").arg("--config").arg(config).arg("--data-dir").arg(data);
    c
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn seen(begin: i64, ip: &str) -> DmarcSeen {
    DmarcSeen {
        period_begin: begin,
        period_end: begin + 86_400,
        domain: "alpha.test".into(),
        source_ip: ip.into(),
        header_from: "alpha.test".into(),
        envelope_from: "alpha.test".into(),
        disposition: "none".into(),
        dkim: "fail".into(),
        spf: "pass".into(),
        auth: r#"{"dkim":[],"spf":{"domain":"alpha.test","scope":"mfrom","result":"pass"}}"#.into(),
        policy: r#"{"policy":{"domain":"alpha.test","adkim_strict":false,"aspf_strict":false,"p":"reject","sp":"reject","pct":100,"fo":"0"},"rua":[["mailto:dmarc@alpha.test",0]]}"#.into(),
    }
}

#[test]
fn the_dry_run_shows_the_report_and_sends_nothing_then_report_queues_it() {
    let dir = mailsift_testkit::temp_dir("mailsift-dmarc-cli", "report");
    let data = dir.join("data");
    let config = dir.join("mailsift.toml");
    // The smarthost does not answer: the report stays queued in the spool, where the test can see it.
    std::fs::write(
        &config,
        "[smtp]\nhostname = \"mx.ours.test\"\n[smtp.outbound]\nsmarthost = \"127.0.0.1:9\"\n\
         [smtp.dmarc_reports]\nsend = true\nfrom = \"dmarc-reports@ours.test\"\n",
    )
    .unwrap();
    let begin = (mailsift_engine::unix_now() / 86_400 - 3) * 86_400;
    {
        let db = Database::open_in(&data).unwrap();
        for ip in ["192.0.2.1", "192.0.2.1", "192.0.2.2"] {
            db.dmarc_note(seen(begin, ip)).unwrap();
        }
        db.flush().unwrap();
    }

    let out = run(bin(&config, &data).args(["dmarc", "report", "--dry-run", "--xml"]));
    assert!(out.contains(&format!("alpha.test period {begin}..")), "{out}");
    assert!(out.contains("2 record(s), 3 message(s)"), "{out}");
    assert!(out.contains("  to dmarc@alpha.test"), "{out}");
    assert!(out.contains("<source_ip>192.0.2.1</source_ip>") && out.contains("<count>2</count>"), "{out}");
    assert!(out.contains("(dry run: nothing sent)"), "{out}");
    {
        let db = Database::open_in(&data).unwrap();
        assert!(db.spool_list(None, 100).unwrap().is_empty(), "the dry run queued nothing");
        assert_eq!(db.dmarc_due(mailsift_engine::unix_now()).unwrap().len(), 2, "the dry run kept the period");
    }

    let out = run(bin(&config, &data).args(["dmarc", "report"]));
    assert!(out.contains("1 report mail(s) queued for 1 report(s)"), "{out}");
    let db = Database::open_in(&data).unwrap();
    let spooled = db.spool_list(None, 100).unwrap();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    assert_eq!((spooled[0].kind.as_str(), spooled[0].recipient.as_str()), ("dmarc-report", "dmarc@alpha.test"));
    assert!(spooled[0].outbound);
    assert!(db.dmarc_due(mailsift_engine::unix_now()).unwrap().is_empty(), "the reported period is forgotten");
    let out = run(bin(&config, &data).args(["dmarc", "report", "--dry-run"]));
    assert!(out.contains("no DMARC aggregate reports owed now"), "{out}");
}

#[test]
fn received_reports_are_summarised_per_source() {
    let dir = mailsift_testkit::temp_dir("mailsift-dmarc-cli", "received");
    let data = dir.join("data");
    let config = dir.join("mailsift.toml");
    std::fs::write(&config, "[smtp]\nhostname = \"mx.ours.test\"\n").unwrap();
    let now = mailsift_engine::unix_now();
    {
        let db = Database::open_in(&data).unwrap();
        let row = |reporter: &str, ip: &str, count: u64, spf: &str| DmarcReceivedRow {
            reporter: reporter.into(),
            report_id: format!("{reporter}-1"),
            begin: now - 86_400,
            end: now - 1,
            domain: "acme.test".into(),
            source_ip: ip.into(),
            count,
            disposition: "none".into(),
            dkim: "fail".into(),
            spf: spf.into(),
            header_from: "acme.test".into(),
            ..DmarcReceivedRow::default()
        };
        db.dmarc_received_put(
            vec![row("google.com", "192.0.2.9", 40, "fail"), row("google.com", "192.0.2.10", 5, "pass")],
            now,
        )
        .unwrap();
        db.dmarc_received_put(vec![row("outlook.com", "192.0.2.9", 2, "fail")], now).unwrap();
    }
    let out = run(bin(&config, &data).args(["dmarc", "received", "--json", "--domain", "acme.test"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = &v[0];
    assert_eq!(first["source_ip"], "192.0.2.9", "{out}");
    assert_eq!(
        (first["messages"].as_u64(), first["spf_pass"].as_u64(), first["reporters"].as_u64()),
        (Some(42), Some(0), Some(2))
    );
    assert_eq!(v[1]["dmarc_pass"].as_u64(), Some(5));
    let out = run(bin(&config, &data).args(["dmarc", "received", "--domain", "other.test"]));
    assert!(out.contains("no DMARC reports received"), "{out}");
}
