//! One truth (issue 15, item 7): `scan`, `explain`, `rules test` and `diagnose` judge a message with the
//! same stored domains (sending servers from the database) and the same stored policy as the gateway, in
//! the production configuration (DNS on, against a loopback DNS server that publishes our SPF `-all` and
//! DMARC `p=reject`). And (item 6) spoofs of our domain, recorded in the real reputation store, never
//! count against our domain.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mailsift_testkit::dns::{TestDns, Zone};

const SPOOF: &str = "Received: from host9.spoofer.test (host9.spoofer.test [198.18.0.9]) by mx.acme.test with ESMTP id 7; Mon, 6 Jan 2025 10:00:01 +0000\r\n\
From: Accounts <accounts@acme.test>\r\nTo: Dana <dana@acme.test>\r\nSubject: Change of bank details\r\n\
Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <bank-1@acme.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nDana,\r\n\r\nplease pay the supplier to the new account from today.\r\n";

const LEGIT: &str =
    "From: Accounts <accounts@acme.test>\r\nTo: Dana <dana@acme.test>\r\nSubject: Minutes of Monday\r\n\
Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <minutes-1@acme.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nDana,\r\n\r\nthe minutes of Monday's meeting are below.\r\n";

const SPOOF_ENVELOPE: &[&str] =
    &["--ip", "198.18.0.9", "--helo", "host9.spoofer.test", "--from", "accounts@acme.test", "--rcpt", "dana@acme.test"];
const LEGIT_ENVELOPE: &[&str] =
    &["--ip", "192.0.2.10", "--helo", "mail.acme.test", "--from", "accounts@acme.test", "--rcpt", "dana@acme.test"];

/// acme.test as a real organisation publishes it, and the spoofer's own PTR.
fn zone() -> Zone {
    let mut z = Zone::new();
    z.txt("acme.test", "v=spf1 ip4:192.0.2.10 -all")
        .txt("_dmarc.acme.test", "v=DMARC1; p=reject")
        .ptr("192.0.2.10", "mail.acme.test")
        .a("mail.acme.test", "192.0.2.10")
        .ptr("198.18.0.9", "host9.spoofer.test")
        .a("host9.spoofer.test", "198.18.0.9");
    z
}

/// A data directory with a production-like configuration (DNS on, our domain in `organisation.domains`
/// but its sending servers NOT in the file: they are stored, as an administrator sets them with
/// `mailsift domains set`), plus `extra` configuration.
fn setup(name: &str, dns: &TestDns, extra: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mailsift-one-truth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let config = format!(
        "[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 400\ndeadline_ms = 2000\n\
         [organisation]\ndomains = [\"acme.test\"]\n{extra}",
        dns.addr()
    );
    std::fs::write(d.join("config.toml"), config).unwrap();
    std::fs::write(d.join("spoof.eml"), SPOOF).unwrap();
    std::fs::write(d.join("legit.eml"), LEGIT).unwrap();
    d
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("MAILSIFT_DATA_DIR").current_dir(dir);
    c.arg("--config").arg(dir.join("config.toml")).arg("--data-dir").arg(dir.join("data"));
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.output().unwrap()
}

/// Runs a command that must exit with one of `codes`; returns its standard output.
fn out(dir: &Path, args: &[&str], codes: &[i32]) -> String {
    let o = run(dir, args);
    let code = o.status.code().unwrap_or(-1);
    assert!(codes.contains(&code), "{args:?} exited {code}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn with(first: &[&str], envelope: &[&str]) -> Vec<String> {
    first.iter().chain(envelope).map(|s| s.to_string()).collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// (score, symbols) of a verdict in JSON.
fn verdict_of(v: &serde_json::Value) -> (f64, Vec<String>) {
    let score = v["score"].as_f64().unwrap_or_else(|| panic!("no score in {v}"));
    let names = v["symbols"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    (score, names)
}

/// What `rules test --json` judges.
fn rules_test(dir: &Path, file: &str, envelope: &[&str]) -> (f64, Vec<String>) {
    let a = with(&["rules", "test", file, "--json"], envelope);
    let v: serde_json::Value = serde_json::from_str(&out(dir, &args(&a), &[0])).unwrap();
    verdict_of(&v["verdict"])
}

/// What `scan --json` judges.
fn scan(dir: &Path, file: &str, envelope: &[&str]) -> (f64, Vec<String>) {
    let a = with(&["scan", file, "--json"], envelope);
    let line = out(dir, &args(&a), &[0, 1]);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    verdict_of(&v["verdict"])
}

/// What `explain` says: the score on its first line, and the symbols it lists.
fn explain(dir: &Path, file: &str, envelope: &[&str]) -> String {
    let a = with(&["explain", file], envelope);
    out(dir, &args(&a), &[0, 1])
}

/// What `diagnose --json` found: the score of the verdict it diagnoses, and its findings.
fn diagnose(dir: &Path, file: &str, envelope: &[&str]) -> (f64, String) {
    let a = with(&["diagnose", file, "--json"], envelope);
    let v: serde_json::Value = serde_json::from_str(&out(dir, &args(&a), &[0])).unwrap();
    let d = &v["diagnosis"];
    let findings: Vec<String> =
        d["findings"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    (d["score"].as_f64().unwrap(), format!("{} {}", d["summary"], findings.join(" ")))
}

/// Our stored domain (sending servers from the database) and a stored rule, the way administrators set them.
fn store_domain_and_rule(dir: &Path) {
    // In a gateway database: only serve, init and `store create` make one.
    out(dir, &["store", "create"], &[0]);
    out(dir, &["domains", "set", "acme.test", "--sending-server", "192.0.2.10/32"], &[0]);
    let shown = out(dir, &["domains", "show", "acme.test"], &[0]);
    assert!(shown.contains("192.0.2.10/32"), "{shown}");
    out(
        dir,
        &["rules", "add", "--name", "bank details", "--if", "subject:contains:bank details", "--then", "add_score:1.5"],
        &[0],
    );
}

#[test]
fn rules_test_and_diagnose_judge_a_spoof_with_the_stored_domains_and_policy() {
    let dns = TestDns::start(zone());
    let dir = setup("rules-diagnose", &dns, "");
    // Before anything is stored the domain is not protected: no tool sees a spoof (the check below that
    // they do afterwards is therefore the stored domain's doing).
    let (_, before) = rules_test(&dir, "spoof.eml", SPOOF_ENVELOPE);
    assert!(!before.iter().any(|s| s == "SPOOF_OWN_DOMAIN"), "{before:?}");

    store_domain_and_rule(&dir);
    let (rules_score, rules_symbols) = rules_test(&dir, "spoof.eml", SPOOF_ENVELOPE);
    for s in ["SPOOF_OWN_DOMAIN", "DMARC_POLICY_REJECT", "SPF_FAIL", "POLICY_RULE"] {
        assert!(rules_symbols.iter().any(|x| x == s), "rules test misses {s}: {rules_symbols:?}");
    }
    let (diag_score, diag_text) = diagnose(&dir, "spoof.eml", SPOOF_ENVELOPE);
    assert!(diag_text.contains("SPOOF_OWN_DOMAIN"), "{diag_text}");
    assert_eq!(format!("{rules_score:.2}"), format!("{diag_score:.2}"), "rules test and diagnose disagree");

    // Our own mail from the stored sending server is no spoof for either.
    let (_, legit) = rules_test(&dir, "legit.eml", LEGIT_ENVELOPE);
    assert!(!legit.iter().any(|s| s == "SPOOF_OWN_DOMAIN" || s == "SPF_FAIL"), "{legit:?}");
    let (_, legit_text) = diagnose(&dir, "legit.eml", LEGIT_ENVELOPE);
    assert!(!legit_text.contains("SPOOF_OWN_DOMAIN"), "{legit_text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Needs main.rs to dispatch `scan` and `explain` to `scan::run_cli` and `scan::explain`, which build the
/// engine with the shared builder; before that, they ignore the stored domains and policy.
#[test]
fn scan_and_explain_agree_with_rules_test_and_diagnose() {
    let dns = TestDns::start(zone());
    let dir = setup("scan-explain", &dns, "");
    store_domain_and_rule(&dir);
    let (rules_score, _) = rules_test(&dir, "spoof.eml", SPOOF_ENVELOPE);
    let (diag_score, _) = diagnose(&dir, "spoof.eml", SPOOF_ENVELOPE);
    let (scan_score, scan_symbols) = scan(&dir, "spoof.eml", SPOOF_ENVELOPE);
    let explained = explain(&dir, "spoof.eml", SPOOF_ENVELOPE);
    let all = [
        ("rules test", format!("{rules_score:.2}")),
        ("diagnose", format!("{diag_score:.2}")),
        ("scan", format!("{scan_score:.2}")),
    ];
    assert!(all.iter().all(|(_, s)| *s == all[0].1), "the tools disagree: {all:?}");
    assert!(scan_symbols.iter().any(|s| s == "SPOOF_OWN_DOMAIN"), "scan: {scan_symbols:?}");
    assert!(scan_symbols.iter().any(|s| s == "POLICY_RULE"), "scan ignores the stored rule: {scan_symbols:?}");
    let first = explained.lines().next().unwrap_or_default();
    assert!(first.contains(&format!("(score {rules_score:.2};")), "explain: {first}");
    assert!(explained.contains("SPOOF_OWN_DOMAIN"), "{explained}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spoofs_recorded_in_the_reputation_store_never_make_our_domain_bad() {
    let dns = TestDns::start(zone());
    // Here the sending servers are in the file, so that this test does not depend on how scan builds its
    // engine; reputation is on.
    let dir = setup(
        "reputation",
        &dns,
        "[[organisation.protected]]\ndomain = \"acme.test\"\nsending_servers = [\"192.0.2.10/32\"]\n\
         [reputation]\nenabled = true\n",
    );
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let config = mailsift_engine::EngineConfig::from_toml(&text).unwrap();
    let engine = mailsift_engine::Engine::new(config).unwrap();
    let org = &engine.config().organisation;

    // The gateway records each verdict against the message's keys: six spoofs judged SCL 9, as they are.
    let store =
        mailsift_store::SqliteReputation::open_dir(&dir.join("data"), engine.config().reputation.half_life_days)
            .unwrap();
    let spoof = engine.parse(SPOOF.as_bytes());
    let spoof_env = mailsift_engine::Envelope {
        client_ip: Some("198.18.0.9".parse().unwrap()),
        mail_from: Some("accounts@acme.test".into()),
        rcpt_to: vec!["dana@acme.test".into()],
        ..Default::default()
    };
    let now = mailsift_engine::unix_now();
    for i in 0..6 {
        let keys = mailsift_engine::evidence::reputation_keys_for(&spoof_env, &spoof, org);
        store.record(&keys, mailsift_store::ReputationEvent::Verdict(9), now - 60 * i).unwrap();
    }
    drop(store);

    // The spoofer is remembered as bad; our domain and address are not remembered at all.
    let ip = out(&dir, &["reputation", "show", "198.18.0.9"], &[0]);
    assert!(ip.contains("bad"), "{ip}");
    let ours = out(&dir, &["reputation", "show", "acme.test"], &[0]);
    assert!(ours.contains("nothing remembered"), "{ours}");
    let ours = out(&dir, &["reputation", "show", "accounts@acme.test"], &[0]);
    assert!(ours.contains("nothing remembered"), "{ours}");

    // Our own mail from our sending server pays nothing for them; the next spoof pays for its IP.
    let legit = scan(&dir, "legit.eml", LEGIT_ENVELOPE);
    assert!(!legit.1.iter().any(|s| s.starts_with("REPUTATION_") && s.ends_with("_BAD")), "{legit:?}");
    assert!(legit.0 < 5.0, "{legit:?}");
    let again = scan(&dir, "spoof.eml", SPOOF_ENVELOPE);
    assert!(again.1.iter().any(|s| s == "REPUTATION_IP_BAD"), "{again:?}");
    assert!(!again.1.iter().any(|s| s == "REPUTATION_DOMAIN_GOOD"), "a spoof borrows no good name: {again:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn log_row(
    id: &str,
    ip: &str,
    from: &str,
    action: &str,
    score: f64,
    symbols: &[(&str, f64)],
) -> mailsift_store::LogEntry {
    mailsift_store::LogEntry {
        reference_id: id.into(),
        time: mailsift_engine::unix_now() - 3600,
        direction: "inbound".into(),
        client_ip: Some(ip.into()),
        helo: Some("web01.hoster.test".into()),
        mail_from: Some(from.into()),
        recipients: vec!["sales@acme.test".into()],
        from_header: Some(from.into()),
        subject: Some("Enquiry".into()),
        size: 400,
        score: Some(score),
        required: Some(5.0),
        symbols: symbols.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        action: action.into(),
        stage: "data".into(),
        ..mailsift_store::LogEntry::default()
    }
}

#[test]
fn a_diagnosis_from_a_log_reference_names_no_blanks_and_its_replay_leaves_the_message_out() {
    let dns = TestDns::start(zone());
    let dir = setup(
        "log-reference",
        &dns,
        "[[organisation.protected]]\ndomain = \"acme.test\"\nsending_servers = [\"192.0.2.10/32\"]\n",
    );
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let db = mailsift_store::Database::open_in(&dir.join("data")).unwrap();
    let spoof = [("SPOOF_OWN_DOMAIN", 8.0), ("SPF_FAIL", 2.0)];
    // The web form's message being diagnosed, the same form last week, and a forgery from elsewhere.
    db.log_append(log_row("SELF1", "203.0.113.50", "webform@acme.test", "tag", 10.0, &spoof)).unwrap();
    db.log_append(log_row("EARLIER2", "203.0.113.50", "webform@acme.test", "tag", 10.0, &spoof)).unwrap();
    db.log_append(log_row("FORGED3", "198.18.0.9", "webform@acme.test", "quarantine", 12.0, &spoof)).unwrap();
    // A supplier whose signature a footer broke, whose SPF and DMARC fail: only what the log keeps.
    let sender = [("DKIM_BODY_MODIFIED", 1.0), ("SPF_FAIL", 2.0), ("DMARC_POLICY_QUARANTINE", 3.0)];
    db.log_append(log_row("SUPPLIER4", "198.51.100.7", "billing@supplier.test", "tag", 6.0, &sender)).unwrap();
    db.flush().unwrap();
    drop(db);

    let v: serde_json::Value =
        serde_json::from_str(&out(&dir, &["diagnose", "SELF1", "--dry-run", "--json"], &[0])).unwrap();
    // The sending server (not the narrowest fix: the rule on the address from that server comes first).
    let fix = v["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fix"]["change"]["kind"] == "add_sending_server")
        .unwrap_or_else(|| panic!("no sending-server fix: {v:#}"));
    assert_eq!(fix["fix"]["change"]["server"], "203.0.113.50", "{v:#}");
    let replay = &fix["replay"];
    let spam: Vec<&str> =
        replay["were_spam"].as_array().unwrap().iter().map(|m| m["reference_id"].as_str().unwrap()).collect();
    assert_eq!(spam, ["EARLIER2"], "the diagnosed message is not spam its fix lets in: {replay}");
    assert_eq!(replay["examined"], 3, "{replay}");

    let text = out(&dir, &["diagnose", "SUPPLIER4"], &[0]);
    assert!(text.contains("DKIM signature") && text.contains("supplier.test"), "{text}");
    for blank in ["()", "\"\"", "domain  ", "for  "] {
        assert!(!text.contains(blank), "blank name {blank:?} in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
