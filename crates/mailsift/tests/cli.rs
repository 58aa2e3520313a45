//! The `mailsift` command as a user runs it: exit statuses, output formats, errors that name the file.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG");
    c
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages").join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-cli", name)
}

#[test]
fn scan_exit_status_tells_ham_spam_and_error() {
    let ham = bin().arg("scan").arg(fixture("rspamd_ham.eml")).output().unwrap();
    assert_eq!(ham.status.code(), Some(0), "{}", String::from_utf8_lossy(&ham.stderr));
    let line = String::from_utf8(ham.stdout).unwrap();
    assert!(line.contains("rspamd_ham.eml\t") && line.contains("\tdeliver\t"), "{line}");

    let spam = bin().arg("scan").arg(fixture("sa_gtube.eml")).output().unwrap();
    assert_eq!(spam.status.code(), Some(1));
    assert!(String::from_utf8(spam.stdout).unwrap().contains("GTUBE(1000.0)"));

    let missing = bin().args(["scan", "/nonexistent/message.eml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8(missing.stderr).unwrap().contains("/nonexistent/message.eml"));
}

#[test]
fn directory_scan_goes_on_past_an_unreadable_file() {
    let dir = temp_dir("dir");
    std::fs::copy(fixture("rspamd_ham.eml"), dir.join("a.eml")).unwrap();
    std::fs::copy(fixture("sa_gtube.eml"), dir.join("c.eml")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", dir.join("b.eml")).unwrap();
    let out = bin().arg("scan").arg(&dir).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Both real messages are scanned; the dangling link is named as unreadable.
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("b.eml"));
    // Named files: the missing one is reported, the others are still scanned.
    let out = bin()
        .arg("scan")
        .arg(dir.join("a.eml"))
        .arg(dir.join("zz-missing.eml"))
        .arg(dir.join("c.eml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    assert!(String::from_utf8(out.stderr).unwrap().contains("zz-missing.eml"));
}

#[test]
fn scan_json_and_headers() {
    let out = bin().args(["scan", "--json"]).arg(fixture("rspamd_phishing1.eml")).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["verdict"]["score"].as_f64().unwrap() > 5.0);
    assert!(v["verdict"]["symbols"].as_array().unwrap().iter().any(|s| s["name"] == "PHISHING_LINK_MISMATCH"));

    let mut child =
        bin().args(["scan", "--headers", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"X-Mailsift-Action: deliver\r\nFrom: a@example.org\r\nSubject: hi\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("X-Mailsift-Id: "), "{text}");
    assert!(text.contains("X-Mailsift-Action: reject") && !text.contains("X-Mailsift-Action: deliver"), "{text}");
    assert!(text.contains("\r\nSubject: hi\r\n"));
}

#[test]
fn envelope_from_trace_headers() {
    let out = bin().args(["scan", "--json", "--from-trace"]).arg(fixture("sa_ham_001.eml")).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn explain_gives_descriptions_and_remedies() {
    let out = bin().arg("explain").arg(fixture("rspamd_zip_doublebad.eml")).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Verdict: "), "{text}");
    assert!(text.contains("ATTACH_ARCHIVE_EXECUTABLE") && text.contains("fix: ") && text.contains("seen: "), "{text}");
}

#[test]
fn symbols_registry_text_and_json() {
    let out = bin().args(["symbols", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = v.as_array().unwrap();
    assert!(all.iter().any(|s| s["name"] == "ASF_WEB_BUGS" && s["asf"] == "high_confidence_spam"));
    let text = String::from_utf8(bin().arg("symbols").output().unwrap().stdout).unwrap();
    assert!(text.contains("[asf]") && text.contains("marks high-confidence spam"));
}

#[test]
fn configuration_is_applied_and_errors_name_the_file_and_line() {
    let dir = temp_dir("config");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[weights]\nGTUBE = 2.0\n").unwrap();
    let out = bin().arg("--config").arg(&good).arg("scan").arg(fixture("sa_gtube.eml")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "GTUBE at weight 2 is not spam");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[thresholds]\ntag = 5\nqarantine = 9\n").unwrap();
    let out = bin().arg("--config").arg(&bad).arg("scan").arg(fixture("sa_gtube.eml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml") && err.contains("line 3"), "{err}");
}

#[test]
fn bench_and_eval_run_over_a_folder() {
    let out = bin().args(["bench", "--threads", "2"]).arg(fixture("")).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("messages/s") && text.contains("MB/s"), "{text}");
    let dir = temp_dir("eval");
    let (ham, spam) = (dir.join("ham"), dir.join("spam"));
    std::fs::create_dir_all(&ham).unwrap();
    std::fs::create_dir_all(&spam).unwrap();
    std::fs::copy(fixture("rspamd_ham.eml"), ham.join("1.eml")).unwrap();
    std::fs::copy(fixture("sa_gtube.eml"), spam.join("1.eml")).unwrap();
    std::fs::copy(fixture("sa_spam_freemail1.eml"), spam.join("2.eml")).unwrap();
    let out = bin().args(["eval", "--ham"]).arg(&ham).arg("--spam").arg(&spam).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("false positives: 0 of 1 ham") && text.contains("spam caught: 1 of 2"), "{text}");
}

#[test]
fn scan_and_explain_show_sender_evidence_from_dns() {
    use mailsift_testkit::dns::{TestDns, Zone};
    let mut zone = Zone::new();
    zone.txt("sender.example", "v=spf1 ip4:198.51.100.0/24 -all");
    let dns = TestDns::start(zone);
    let dir = temp_dir("dns");
    let config = dir.join("dns.toml");
    std::fs::write(&config, format!("[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 400\n", dns.addr()))
        .unwrap();
    let msg = dir.join("m.eml");
    std::fs::write(&msg, "From: a@sender.example\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nhello there\r\n")
        .unwrap();
    let envelope = ["--ip", "192.0.2.77", "--helo", "localhost", "--from", "a@sender.example"];
    let out = bin().arg("--config").arg(&config).args(["scan", "--json"]).args(envelope).arg(&msg).output().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let names: Vec<&str> =
        v["verdict"]["symbols"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for s in ["SPF_FAIL", "RDNS_NONE", "HELO_NOT_FQDN"] {
        assert!(names.contains(&s), "{s} missing: {names:?}");
    }
    assert!(v["verdict"]["authentication_results"].as_str().unwrap().contains("spf=fail"));
    let out = bin().arg("--config").arg(&config).arg("explain").args(envelope).arg(&msg).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Sender reputation and practices")
            && text.contains("Authentication")
            && text.contains("SPF record"),
        "{text}"
    );
}

#[test]
fn reports_feed_reputation_which_scans_read_and_reset_forgets() {
    let dir = temp_dir("rep");
    let data = dir.join("data");
    let msg = dir.join("spam.eml");
    std::fs::write(
        &msg,
        "Received: from mx.bad.example (mx.bad.example [203.0.113.66]) by mx.ours.example; Mon, 6 Jan 2025 10:00:00 +0000\r\n\
         Return-Path: <seller@bad.example>\r\nFrom: seller@bad.example\r\nTo: me@ours.example\r\nSubject: hi\r\n\r\nhello\r\n",
    )
    .unwrap();
    let out = bin().arg("--data-dir").arg(&data).arg("report").arg("--false-negative").arg(&msg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("reputation: recorded a spam report for 203.0.113.66"));
    let show = bin().arg("--data-dir").arg(&data).args(["reputation", "show", "203.0.113.66"]).output().unwrap();
    let text = String::from_utf8(show.stdout).unwrap();
    assert!(text.contains("ip 203.0.113.66: 3.00 bad") && text.contains(": bad"), "{text}");
    let scan = bin().arg("--data-dir").arg(&data).args(["scan", "--from-trace"]).arg(&msg).output().unwrap();
    let line = String::from_utf8(scan.stdout).unwrap();
    assert!(line.contains("REPUTATION_IP_BAD"), "{line}");
    let reset = bin().arg("--data-dir").arg(&data).args(["reputation", "reset", "203.0.113.66"]).output().unwrap();
    assert!(String::from_utf8(reset.stdout).unwrap().contains("1 entries forgotten"));
    let scan = bin().arg("--data-dir").arg(&data).args(["scan", "--from-trace"]).arg(&msg).output().unwrap();
    assert!(!String::from_utf8(scan.stdout).unwrap().contains("REPUTATION_IP_BAD"));
}

/// Users report spoofs of our own domain as spam: the spoofing server and its network pay, our domain
/// does not, whether the domain is stored (`domains set`), configured (`[[smtp.domains]]`) or only listed
/// as ours (`[organisation] domains`). Our own mail, from our sending server, still counts for our domain.
#[test]
fn reported_spoofs_of_our_domain_count_against_the_spoofer_not_our_domain() {
    let dir = temp_dir("rep-spoof");
    let message = |ip: &str, from: &str| {
        format!(
            "Received: from mail.sender.test (mail.sender.test [{ip}]) by mx.acme.test; Mon, 6 Jan 2025 10:00:00 +0000\r\n\
             Return-Path: <{from}>\r\nFrom: {from}\r\nTo: staff@acme.test\r\nSubject: new bank details\r\n\r\nPay here.\r\n"
        )
    };
    let spoof = dir.join("spoof.eml");
    std::fs::write(&spoof, message("198.18.0.9", "billing@acme.test")).unwrap();
    let ours = dir.join("ours.eml");
    std::fs::write(&ours, message("192.0.2.10", "news@acme.test")).unwrap();
    let configured = dir.join("configured.toml");
    std::fs::write(&configured, "[[smtp.domains]]\nname = \"acme.test\"\nsending_servers = [\"192.0.2.10/32\"]\n")
        .unwrap();
    let listed = dir.join("listed.toml");
    std::fs::write(&listed, "[organisation]\ndomains = [\"acme.test\"]\n").unwrap();
    for (case, config) in [("stored", None), ("configured", Some(&configured)), ("listed", Some(&listed))] {
        let data = dir.join(case);
        let run = |args: &[&str]| {
            let mut c = bin();
            c.arg("--data-dir").arg(&data);
            if let Some(cfg) = config {
                c.arg("--config").arg(cfg);
            }
            let out = c.args(args).output().unwrap();
            assert!(out.status.success(), "{case} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        if config.is_none() {
            // Only serve, init and `store create` make a gateway database; the domain is stored in one.
            run(&["store", "create"]);
            run(&["domains", "set", "acme.test", "--sending-server", "192.0.2.10/32"]);
        }
        for _ in 0..3 {
            let out = run(&["report", "--false-negative", spoof.to_str().unwrap()]);
            assert!(
                out.contains("reputation: recorded a spam report for 198.18.0.9, 198.18.0.0/24\n"),
                "{case}: {out}"
            );
        }
        let domain = run(&["reputation", "show", "acme.test"]);
        assert!(!domain.contains("domain acme.test"), "{case}: our domain took the blame: {domain}");
        assert!(!run(&["reputation", "show", "billing@acme.test"]).contains("address billing@acme.test"), "{case}");
        let ip = run(&["reputation", "show", "198.18.0.9"]);
        assert!(ip.contains("ip 198.18.0.9: 9.00 bad"), "{case}: {ip}");
        if case != "listed" {
            // From its sending server it is our domain's own mail: a good report counts for it.
            let out = run(&["report", "--false-positive", ours.to_str().unwrap()]);
            assert!(out.contains("acme.test"), "{case}: {out}");
            let domain = run(&["reputation", "show", "acme.test"]);
            assert!(domain.contains("domain acme.test: 0.00 bad, 3.00 good"), "{case}: {domain}");
        }
    }
}

/// `mailsift symbols | head -1`: the reader goes away before the command is done writing. The command must
/// end as Unix tools do (SIGPIPE), not panic in println! with a backtrace on the terminal.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child =
        bin().arg("symbols").stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap();
    // Close the read end at once: every write the command makes meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "the command panicked: {stderr}");
    assert_eq!(out.status.signal(), Some(libc_sigpipe()), "status {:?}, stderr {stderr}", out.status);
}

fn libc_sigpipe() -> i32 {
    13
}

/// `mailsift auth-hash` reads the password from standard input and prints an Argon2id hash with a fresh salt
/// each time, which the SMTP configuration accepts as a user's password.
#[test]
fn auth_hash_makes_salted_argon2id_hashes_the_configuration_accepts() {
    let hash = |password: &str| {
        let mut child = bin().arg("auth-hash").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (a, b) = (hash("correct horse battery"), hash("correct horse battery"));
    assert!(a.starts_with("$argon2id$"), "{a}");
    assert_ne!(a, b, "the same password must hash differently (salt)");
    assert!(!a.contains("correct horse"));
    let config = format!("[smtp]\n[[smtp.users]]\nname = \"relay\"\npassword = \"{a}\"\n");
    let smtp = mailsift_smtp::SmtpConfig::from_toml(&config).unwrap();
    assert!(mailsift_smtp::auth::verify_user(&smtp.users, "relay", "correct horse battery"));
    assert!(!mailsift_smtp::auth::verify_user(&smtp.users, "relay", "correct horse battery!"));
    // Nothing on standard input: a clear refusal, not a hash of the empty string.
    let out = bin().arg("auth-hash").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
}
