//! `mailsift queue` as an operator runs it on a real data directory: the queued outbound mail listed (text
//! and JSON, with totals), one item shown with its message's header, retried now (but never a second
//! delivery of an item on its way, nor a given-up one), removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mailsift_store::{Database, NewSpoolItem};

fn run(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("MAILSIFT_DATA_DIR").arg("--data-dir").arg(dir.join("data"));
    c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> (String, String) {
    let out = run(dir, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

fn item(rcpt: &str) -> (NewSpoolItem, Vec<u8>) {
    let new = NewSpoolItem {
        kind: "outbound".into(),
        reference_id: "MXQUEUETEST0001".into(),
        mail_from: "alice@local.test".into(),
        recipient: rcpt.into(),
        outbound: true,
    };
    let msg = format!("From: alice@local.test\r\nTo: {rcpt}\r\nSubject: quarterly figures\r\n\r\nThe figures.\r\n");
    (new, msg.into_bytes())
}

#[test]
fn list_show_retry_and_remove_queued_mail() {
    let dir: PathBuf = mailsift_testkit::temp_dir("mailsift-queue-cli", "list-show-retry-remove");
    ok(&dir, &["store", "create"]);
    let db = Database::open_in(&dir.join("data")).unwrap();
    let ids = db
        .spool_put(vec![item("carol@remote.example"), item("dan@remote.example"), item("erin@remote.example")])
        .unwrap();

    // Listed, oldest first, with the totals per kind on stderr.
    let (out, err) = ok(&dir, &["queue", "list"]);
    assert!(out.contains("carol@remote.example") && out.contains("erin@remote.example"), "{out}");
    assert!(err.contains("outbound: 3 pending"), "{err}");
    let (json, _) = ok(&dir, &["queue", "list", "--json"]);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["recipient"], "carol@remote.example");
    assert_eq!(rows[0]["kind"], "outbound");
    assert_eq!(rows[0]["sending"], false);

    // Shown with its message's header; --raw gives the message exactly.
    let (out, _) = ok(&dir, &["queue", "show", &ids[0].to_string()]);
    assert!(out.contains("alice@local.test") && out.contains("Subject: quarterly figures"), "{out}");
    assert!(!out.contains("The figures."), "the header only: {out}");
    let (raw, _) = ok(&dir, &["queue", "show", "--raw", &ids[0].to_string()]);
    assert!(raw.ends_with("The figures.\r\n"), "{raw}");

    // Retry: a waiting item becomes due now.
    let later = mailsift_store::gateway::now_ms() + 3_600_000;
    db.spool_retry(ids[0], later, "451 4.4.1 try later").unwrap();
    let (out, _) = ok(&dir, &["queue", "retry", &ids[0].to_string()]);
    assert!(out.starts_with("1 item(s) due now"), "{out}");
    let row = db.spool_list(Some("pending"), 10).unwrap().into_iter().find(|i| i.id == ids[0]).unwrap();
    assert!(row.next_attempt_ms <= mailsift_store::gateway::now_ms(), "{row:?}");

    // An item being delivered (claimed, under its lease) is left to that attempt: no second delivery.
    let now = mailsift_store::gateway::now_ms();
    let claimed = db.spool_claim(now, now + 600_000, 1, Some(ids[1])).unwrap();
    assert_eq!(claimed.len(), 1);
    let (json, _) = ok(&dir, &["queue", "list", "--json"]);
    assert!(
        json.lines().any(|l| l.contains(&format!("\"id\":{}", ids[1])) && l.contains("\"sending\":true")),
        "{json}"
    );
    let (out, err) = ok(&dir, &["queue", "retry", &ids[1].to_string()]);
    assert!(out.starts_with("0 item(s)") && err.contains("being delivered"), "{out} {err}");
    let row = db.spool_list(Some("pending"), 10).unwrap().into_iter().find(|i| i.id == ids[1]).unwrap();
    assert!(row.next_attempt_ms >= now + 600_000, "the lease stands: {row:?}");

    // Given up: listed with --failed, and cannot be retried (its message is gone).
    db.spool_fail(ids[2], now, "550 5.1.1 no such user").unwrap();
    let (out, _) = ok(&dir, &["queue", "list", "--failed"]);
    assert!(out.contains("erin@remote.example") && out.contains("no such user"), "{out}");
    let err = fails(&dir, &["queue", "retry", &ids[2].to_string()]);
    assert!(err.contains("given up"), "{err}");
    let err = fails(&dir, &["queue", "show", "--raw", &ids[2].to_string()]);
    assert!(err.contains("given up"), "{err}");

    // Removed for good; removing it again says it is not there.
    let (out, _) = ok(&dir, &["queue", "remove", &ids[0].to_string()]);
    assert!(out.contains("removed"), "{out}");
    let err = fails(&dir, &["queue", "remove", &ids[0].to_string()]);
    assert!(err.contains("does not exist"), "{err}");
    let (json, _) = ok(&dir, &["queue", "list", "--all", "--json"]);
    assert_eq!(json.lines().count(), 2, "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}
