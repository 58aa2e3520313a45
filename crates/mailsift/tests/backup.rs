//! `mailsift backup` taken while the gateway answers a load of messages, restored into a new data
//! directory: every message answered 250 before the backup began is in the restored log, the quarantined
//! ones in the restored quarantine with their bytes, and the restored directory serves again. Restore
//! checks the manifest and refuses what it must (a damaged file, a non-empty or running data directory).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use mailsift_testkit::gateway::{self, stop};
use mailsift_testkit::Proc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG")
        .env_remove("MAILSIFT_DATA_DIR")
        .env("MAILSIFT_SYSTEM_CONFIG", "/nonexistent/mailsift-test/mailsift.toml")
        .env("MAILSIFT_LOG", "warn");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn serve(data: &Path, config: &Path) -> (Proc, SocketAddr) {
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(data).arg("--config").arg(config);
    gateway::serve(cmd)
}

fn cli(data: &Path, config: &Path, args: &[&str]) -> Output {
    bin().arg("--data-dir").arg(data).arg("--config").arg(config).args(args).output().unwrap()
}

fn ok(data: &Path, config: &Path, args: &[&str]) -> String {
    let o = cli(data, config, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", show(&o));
    text(&o.stdout)
}

fn message(subject: &str) -> String {
    format!(
        "From: alice@sender.example\r\nTo: bob@localhost\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@sender.example>\r\n\r\nHello,\r\nthis is {subject}.\r\n",
        subject.replace(' ', "-")
    )
}

/// A message answered 250: its reference, subject, bytes, and when the answer came.
struct Answered {
    reference: String,
    subject: String,
    raw: String,
    at: Instant,
}

const SENDERS: usize = 4;
const PER_SENDER: usize = 60;

#[test]
fn a_backup_taken_under_load_restores_every_message_answered_250_before_it_began() {
    let root = mailsift_testkit::temp_dir("mailsift-backup", "load");
    let data = root.join("data");
    let config = root.join("mailsift.toml");
    // Every third message says "holdme": quarantined by this rule, answered 250 like the others.
    std::fs::write(
        &config,
        "[thresholds]\nquarantine = 10.0\nreject = 1000.0\n[group_caps]\ncontent = 100.0\n\
         [[rules]]\nname = \"HOLD_WORD\"\ntarget = \"subject\"\nphrase = \"holdme\"\nscore = 11.0\n",
    )
    .unwrap();
    let (gw, addr) = serve(&data, &config);

    // The load: SENDERS connections in parallel, each at most PER_SENDER messages and 120 s.
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                for i in 0..PER_SENDER {
                    if Instant::now() > deadline {
                        break;
                    }
                    let subject = if i % 3 == 0 { format!("holdme {s}-{i}") } else { format!("plain {s}-{i}") };
                    let raw = message(&subject);
                    let (code, reply) = mailsift_testkit::clients::smtp_send(
                        addr,
                        "alice@sender.example",
                        &["bob@localhost"],
                        raw.as_bytes(),
                    )
                    .unwrap();
                    let at = Instant::now();
                    assert_eq!(code, 250, "{subject}: {reply}");
                    let reference = reply.rsplit("[ref ").next().unwrap().trim_end_matches(']').to_string();
                    answered.lock().unwrap().push(Answered { reference, subject, raw, at });
                }
            })
        })
        .collect();
    // The backup starts once the load is well under way, and runs while it goes on.
    while answered.lock().unwrap().len() < SENDERS * PER_SENDER / 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let backup = root.join("backup");
    let began = Instant::now();
    let o = cli(&data, &config, &["backup", backup.to_str().unwrap()]);
    let ended = Instant::now();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    for s in senders {
        s.join().unwrap();
    }
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    let before: Vec<&Answered> = answered.iter().filter(|a| a.at < began).collect();
    let during = answered.iter().filter(|a| a.at >= began && a.at <= ended).count();
    let first = answered.iter().map(|a| a.at).min().unwrap();
    let last = answered.iter().map(|a| a.at).max().unwrap();
    let mut times: Vec<Instant> = answered.iter().map(|a| a.at).collect();
    times.sort();
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    eprintln!(
        "{} answered 250 in {} ms, {} before the backup began, {during} while it ran ({} ms), longest gap {} ms",
        answered.len(),
        (last - first).as_millis(),
        before.len(),
        (ended - began).as_millis(),
        gap.as_millis()
    );
    assert!(before.len() >= SENDERS * PER_SENDER / 4, "{}", before.len());
    assert!(answered.len() > before.len(), "the load went on after the backup began");

    // The backup: private, with a manifest naming the gateway database and its schema.
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o700);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup.join("MANIFEST.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    let gateway = files.iter().find(|f| f["path"] == "mailsift.sqlite").expect("the gateway database is in the backup");
    assert_eq!(gateway["kind"], "sqlite");
    assert!(manifest["gateway_schema"].as_u64().unwrap() >= 1);
    assert!(files.iter().any(|f| f["path"] == "web.key"), "the console's signing key: {files:?}");
    for f in files {
        let p = backup.join(f["path"].as_str().unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), f["size"].as_u64().unwrap());
    }
    assert!(!backup.join("mailsift.sqlite-wal").exists());

    // Restore refuses the running gateway's directory, even with --force.
    let o = cli(&data, &config, &["restore", "--force", backup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("stop the gateway"), "{}", show(&o));
    stop(gw);

    // Into a new data directory.
    let restored = root.join("restored");
    ok(&restored, &config, &["restore", backup.to_str().unwrap()]);
    let log: Vec<serde_json::Value> = ok(&restored, &config, &["log", "list", "--json", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logged: BTreeMap<&str, &serde_json::Value> = log.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    for a in &before {
        let row = logged
            .get(a.reference.as_str())
            .unwrap_or_else(|| panic!("{} ({}) not in the log", a.reference, a.subject));
        assert_eq!(row["subject"].as_str(), Some(a.subject.as_str()));
        let held = a.subject.starts_with("holdme");
        assert_eq!(row["action"].as_str() == Some("quarantine"), held, "{}: {row}", a.subject);
    }
    let held: Vec<serde_json::Value> = ok(&restored, &config, &["quarantine", "list", "--json", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut checked = 0;
    for a in before.iter().filter(|a| a.subject.starts_with("holdme")) {
        let item = held
            .iter()
            .find(|i| i["subject"].as_str() == Some(a.subject.as_str()))
            .unwrap_or_else(|| panic!("{} not in the restored quarantine", a.subject));
        let raw = ok(&restored, &config, &["quarantine", "show", "--raw", &item["id"].as_i64().unwrap().to_string()]);
        assert!(raw.ends_with(&a.raw), "{}: the held bytes differ:\n{raw}", a.subject);
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");

    // Refusals: a non-empty directory without --force, a damaged file.
    let o = cli(&restored, &config, &["restore", backup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("--force"), "{}", show(&o));
    let damaged = root.join("damaged");
    assert!(Command::new("cp").arg("-a").arg(&backup).arg(&damaged).status().unwrap().success());
    let mut bytes = std::fs::read(damaged.join("mailsift.sqlite")).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(damaged.join("mailsift.sqlite"), bytes).unwrap();
    let o = cli(&root.join("never"), &config, &["restore", damaged.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("differs from the manifest"), "{}", show(&o));
    assert!(!root.join("never").exists());

    // The restored directory serves again, and its log goes on.
    let (gw, addr) = serve(&restored, &config);
    let reply = mailsift_testkit::clients::smtp_send(
        addr,
        "alice@sender.example",
        &["bob@localhost"],
        message("after restore").as_bytes(),
    )
    .unwrap();
    assert_eq!(reply.0, 250, "{reply:?}");
    stop(gw);
    assert!(ok(&restored, &config, &["log", "list", "--subject", "after restore"]).contains("after restore"));
}
