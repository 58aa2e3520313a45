//! `mailsift diagnose` as an administrator runs it on a real data directory: a web form's mail from our own
//! domain, diagnosed from the file, from our headers alone and from the quarantine; the fixes tried over the
//! message log; the first fix refused, then applied, after which the form's mail is delivered and a forgery
//! from elsewhere is still caught.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mailsift_store::{Database, LogEntry, NewQuarantine};

const CONFIG: &str = r#"
[organisation]
domains = ["ourdomain.example"]
[[organisation.protected]]
domain = "ourdomain.example"
sending_servers = ["192.0.2.0/24"]
"#;

const WEB_FORM: &str = "Received: from web01.hosting.example (web01.hosting.example [203.0.113.5]) by mx.ourdomain.example with ESMTP id 1; Mon, 6 Jan 2025 10:00:01 +0000\r\n\
From: Contact form <forms@ourdomain.example>\r\nTo: Staff <staff@ourdomain.example>\r\nSubject: New enquiry from the web site\r\n\
Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <enq-1@ourdomain.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nName: Carol\r\nMessage: Please call me back about the quote.\r\n";

const ENVELOPE: &[&str] = &[
    "--ip",
    "203.0.113.5",
    "--helo",
    "web01.hosting.example",
    "--from",
    "forms@ourdomain.example",
    "--rcpt",
    "staff@ourdomain.example",
];

fn temp_dir(name: &str) -> PathBuf {
    let d = mailsift_testkit::temp_dir("mailsift-diagnose-cli", name);
    std::fs::write(d.join("config.toml"), CONFIG).unwrap();
    std::fs::write(d.join("webform.eml"), WEB_FORM).unwrap();
    d
}

fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("MAILSIFT_DATA_DIR").current_dir(dir);
    c.arg("--config").arg(dir.join("config.toml")).arg("--data-dir").arg(dir.join("data"));
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    ok_with(dir, args, "")
}

fn ok_with(dir: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(dir, args, stdin);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn diagnose(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["diagnose", "webform.eml"];
    args.extend_from_slice(ENVELOPE);
    args.extend_from_slice(extra);
    ok(dir, &args)
}

fn log_row(id: &str, ip: &str, action: &str, score: f64) -> LogEntry {
    LogEntry {
        reference_id: id.into(),
        time: mailsift_engine::unix_now() - 3600,
        direction: "inbound".into(),
        client_ip: Some(ip.into()),
        helo: Some("web01.hosting.example".into()),
        mail_from: Some("forms@ourdomain.example".into()),
        recipients: vec!["staff@ourdomain.example".into()],
        from_header: Some("Contact form <forms@ourdomain.example>".into()),
        subject: Some("New enquiry from the web site".into()),
        size: 400,
        score: Some(score),
        required: Some(5.0),
        symbols: vec![("SPOOF_OWN_DOMAIN".into(), 8.0)],
        action: action.into(),
        stage: "data".into(),
        ..LogEntry::default()
    }
}

#[test]
fn the_web_form_case_from_diagnosis_to_applied_fix() {
    let dir = temp_dir("webform");
    let out = diagnose(&dir, &[]);
    for wanted in [
        "Verdict:  TAG (score 8.00, tag at 5)",
        "Cause:    your own policy (a web server or application sending as your domain)",
        // DNS is off: the server's name is not verified, so only its address is named.
        "at 203.0.113.5",
        "not one of its sending servers (192.0.2.0/24)",
        // Narrowest first: the one address from that server, then the whole server for the domain.
        "  1. Allow forms@ourdomain.example only from 203.0.113.5",
        "--if-from forms@ourdomain.example --if client_ip:is:203.0.113.5 --then allow",
        "  2. Add 203.0.113.5 to ourdomain.example's sending servers",
        "$ mailsift domains set ourdomain.example --sending-server 203.0.113.5",
        "with it, this message: deliver",
    ] {
        assert!(out.contains(wanted), "missing {wanted:?} in:\n{out}");
    }
    // The name a Received line gives is the sender's claim: no fix rests on it, none names it.
    assert!(!out.contains("Received:contains") && !out.contains("(web01.hosting.example)"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&diagnose(&dir, &["--json"])).unwrap();
    assert_eq!(json["diagnosis"]["cause"], "web_application");
    assert_eq!(json["fixes"][0]["fix"]["change"]["kind"], "add_rule");
    assert_eq!(json["fixes"][0]["with_fix"]["action"], "deliver");
    assert_eq!(json["fixes"][1]["fix"]["change"]["server"], "203.0.113.5");
    assert_eq!(json["fixes"][1]["with_fix"]["action"], "deliver");

    // The message log: the same form last week (tagged), and a forgery from elsewhere.
    let db = Database::open_in(&dir.join("data")).unwrap();
    db.log_append(log_row("PASTFORM1", "203.0.113.5", "tag", 8.0)).unwrap();
    db.log_append(log_row("FORGERY2", "198.51.100.9", "quarantine", 11.5)).unwrap();
    db.flush().unwrap();
    drop(db);
    let out = diagnose(&dir, &["--dry-run"]);
    assert!(
        out.contains(
            "replayed over the message log (2 messages): would have let through 1, of which 1 had been judged spam"
        ),
        "{out}"
    );
    assert!(out.contains("PASTFORM1") && !out.contains("FORGERY2"), "{out}");

    // Refused at the prompt: nothing changes.
    let out = ok_with(&dir, &[&["diagnose", "webform.eml"][..], ENVELOPE, &["--apply", "2"]].concat(), "n\n");
    assert!(
        out.contains("Apply fix 2 (Add 203.0.113.5 to ourdomain.example's sending servers)? [y/N] not applied"),
        "{out}"
    );
    assert!(ok(&dir, &["domains", "list"]).trim().is_empty());

    // Confirmed: the domain is stored with the configuration's servers kept and the web server added.
    let out = ok_with(&dir, &[&["diagnose", "webform.eml"][..], ENVELOPE, &["--apply", "2"]].concat(), "y\n");
    assert!(
        out.contains("ourdomain.example: 203.0.113.5 added to the sending servers (192.0.2.0/24, 203.0.113.5)"),
        "{out}"
    );
    let shown = ok(&dir, &["domains", "show", "ourdomain.example"]);
    assert!(shown.contains("192.0.2.0/24") && shown.contains("203.0.113.5"), "{shown}");

    // Now the form's mail passes, and the same form sent from elsewhere is still caught.
    let out = diagnose(&dir, &[]);
    assert!(out.contains("Verdict:  DELIVER"), "{out}");
    let forged = ok(
        &dir,
        &[
            "diagnose",
            "webform.eml",
            "--ip",
            "198.51.100.9",
            "--from",
            "forms@ourdomain.example",
            "--rcpt",
            "staff@ourdomain.example",
        ],
    );
    assert!(forged.contains("Verdict:  TAG") && forged.contains("198.51.100.9"), "{forged}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_message_with_our_headers_is_diagnosed_without_a_database_and_a_quarantined_one_by_its_id() {
    let dir = temp_dir("headers");
    let stamped = run(&dir, &[&["scan", "--headers", "webform.eml"][..], ENVELOPE].concat(), "");
    std::fs::write(dir.join("stamped.eml"), &stamped.stdout).unwrap();
    let out = ok(&dir, &["diagnose", "stamped.eml"]);
    assert!(!dir.join("data").join("mailsift.sqlite").exists(), "no database was needed");
    assert!(out.contains("Read:     the verdict from the message's X-Mailsift headers"), "{out}");
    assert!(out.contains("client 203.0.113.5"), "the envelope comes from the trace headers: {out}");
    assert!(out.contains("$ mailsift domains set ourdomain.example --sending-server 203.0.113.5"), "{out}");

    // Quarantined by the gateway: diagnosed by its quarantine id, and the rule fix applied to the store.
    let db = Database::open_in(&dir.join("data")).unwrap();
    let mut row = log_row("HELD1", "203.0.113.5", "quarantine", 8.0);
    row.time = mailsift_engine::unix_now();
    db.log_append(row).unwrap();
    db.flush().unwrap();
    let ids = db
        .quarantine_put(
            &NewQuarantine {
                reference_id: "HELD1".into(),
                time: mailsift_engine::unix_now(),
                recipients: vec!["staff@ourdomain.example".into()],
                mail_from: Some("forms@ourdomain.example".into()),
                from_header: Some("Contact form <forms@ourdomain.example>".into()),
                subject: Some("New enquiry from the web site".into()),
                score: 8.0,
                reason: "score".into(),
                size: WEB_FORM.len() as u64,
                direction: "inbound".into(),
            },
            WEB_FORM.as_bytes(),
        )
        .unwrap();
    drop(db);
    let id = ids[0].to_string();
    let out = ok(&dir, &["diagnose", &id]);
    assert!(out.contains(&format!("quarantine item {id} (reference HELD1")), "{out}");
    assert!(out.contains("Read:     the verdict from the message log"), "{out}");
    assert!(out.contains("a web server or application sending as your domain"), "{out}");
    let by_reference = ok(&dir, &["diagnose", "HELD1"]);
    assert!(by_reference.contains(&format!("(quarantine item {id})")), "{by_reference}");
    // Fix 1, the narrowest: the one address, only from the connecting server (a fact of the connection).
    let out = ok(&dir, &["diagnose", &id, "--apply", "1", "--yes"]);
    assert!(out.contains("added rule \"forms@ourdomain.example from 203.0.113.5\" at position 1"), "{out}");
    let rule = ok(&dir, &["rules", "show", "forms@ourdomain.example from 203.0.113.5"]);
    assert!(rule.contains("forms@ourdomain.example") && rule.contains("client_ip"), "{rule}");
    assert!(rule.contains("203.0.113.5") && !rule.contains("web01.hosting.example"), "{rule}");
    let out = diagnose(&dir, &[]);
    assert!(out.contains("Verdict:  DELIVER"), "{out}");
    // The same form from another server is still caught: the rule does not rest on its Received line.
    let forged = ok(
        &dir,
        &[
            "diagnose",
            "webform.eml",
            "--ip",
            "198.51.100.9",
            "--from",
            "forms@ourdomain.example",
            "--rcpt",
            "staff@ourdomain.example",
        ],
    );
    assert!(forged.contains("Verdict:  TAG"), "{forged}");
    let _ = std::fs::remove_dir_all(&dir);
}
