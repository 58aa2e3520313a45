//! `mailsift dkim keygen` and `mailsift dkim check` as an administrator runs them: the key file is 0600 and
//! never overwritten by accident, the printed record is the one a signature made with the file verifies
//! against (published on the loopback DNS server, checked by the gateway's own DKIM verifier), and `check`
//! tells match, missing, mismatch and revoked apart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailsift_engine::envelope::Envelope;
use mailsift_engine::evidence::DkimVerdict;
use mailsift_engine::EngineConfig;
use mailsift_testkit::dns::{TestDns, Zone};

fn mailsift(data_dir: &Path, config: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.arg("--data-dir").arg(data_dir).env_remove("MAILSIFT_CONFIG");
    if let Some(p) = config {
        c.arg("--config").arg(p);
    }
    c.args(args).output().expect("run mailsift")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The record's text from keygen's output (the quoted strings joined) and the key file's path.
fn printed(o: &Output, name: &str) -> (String, PathBuf) {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let line = out.lines().find(|l| l.starts_with(&format!("{name}. IN TXT "))).unwrap_or_else(|| panic!("{out}"));
    let quoted = &line[line.find('"').unwrap()..];
    let record: String = quoted.split('"').enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, s)| s).collect();
    for part in quoted.split("\" \"") {
        assert!(part.trim_matches('"').len() <= 255, "a TXT string is at most 255 bytes");
    }
    let file = out.lines().find_map(|l| l.strip_prefix("key_file = \"")).unwrap().trim_end_matches('"');
    (record, PathBuf::from(file))
}

#[test]
fn keygen_writes_a_private_key_and_the_record_that_verifies_its_signatures() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rsa = mailsift(&data, None, &["dkim", "keygen", "ours.test", "--selector", "r1"]);
    assert!(rsa.status.success(), "{}", text(&rsa));
    let (rsa_record, rsa_file) = printed(&rsa, "r1._domainkey.ours.test");
    assert_eq!(rsa_file, data.join("dkim/ours.test.r1.pem"));
    assert!(rsa_record.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "an RSA-2048 SubjectPublicKeyInfo: {rsa_record}");
    assert_eq!(std::fs::metadata(&rsa_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(text(&rsa).contains("[[smtp.dkim.keys]]"));

    let ed_file = dir.path().join("ed.pem");
    let ed = mailsift(
        &data,
        None,
        &[
            "dkim",
            "keygen",
            "ours.test",
            "--selector",
            "e1",
            "--algorithm",
            "ed25519",
            "--out",
            ed_file.to_str().unwrap(),
        ],
    );
    assert!(ed.status.success(), "{}", text(&ed));
    let (ed_record, ed_path) = printed(&ed, "e1._domainkey.ours.test");
    assert_eq!(ed_path, ed_file);
    assert!(ed_record.starts_with("v=DKIM1; k=ed25519; p="), "{ed_record}");
    assert_eq!(std::fs::metadata(&ed_file).unwrap().permissions().mode() & 0o777, 0o600);

    // No overwrite without --force: the key and its published record stay together.
    let before = std::fs::read(&rsa_file).unwrap();
    let again = mailsift(&data, None, &["dkim", "keygen", "ours.test", "--selector", "r1"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("--force"), "{}", text(&again));
    assert_eq!(std::fs::read(&rsa_file).unwrap(), before);
    let forced = mailsift(&data, None, &["dkim", "keygen", "ours.test", "--selector", "r1", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_ne!(std::fs::read(&rsa_file).unwrap(), before);
    let (rsa_record, _) = printed(&forced, "r1._domainkey.ours.test");

    // Sign with the files (the gateway's signer, as configured) and verify against the printed records.
    let mut zone = Zone::new();
    zone.txt("r1._domainkey.ours.test", &rsa_record).txt("e1._domainkey.ours.test", &ed_record);
    let dns = TestDns::start(zone);
    let cfg = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[smtp.dkim]\n[[smtp.dkim.keys]]\ndomain = \"ours.test\"\nselector = \"r1\"\n\
         key_file = \"{}\"\n[[smtp.dkim.keys]]\ndomain = \"ours.test\"\nselector = \"e1\"\nkey_file = \"{}\"\n",
        rsa_file.display(),
        ed_file.display()
    );
    let smtp = mailsift_gateway::SmtpConfig::from_toml(&cfg).unwrap();
    let keys = smtp.dkim.loaded().unwrap();
    let msg =
        "From: <alice@ours.test>\r\nTo: <bob@example.com>\r\nSubject: hi\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n\
               Message-ID: <k@ours.test>\r\n\r\nHello.\r\n";
    let mut signed = String::new();
    for k in keys.signing_keys("ours.test") {
        signed.push_str(&k.sign(msg.as_bytes()).unwrap());
    }
    signed.push_str(msg);
    let engine = EngineConfig::from_toml(&format!(
        "[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 500\ndeadline_ms = 3000\n",
        dns.addr()
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let facts = rt.block_on(async {
        let g = mailsift_evidence::SenderGatherer::from_config(&engine).unwrap();
        g.gather(signed.as_bytes(), &Envelope::default()).await
    });
    assert_eq!(facts.dkim.len(), 2, "{:?}", facts.dkim);
    assert!(facts.dkim.iter().all(|d| d.verdict == DkimVerdict::Pass && d.domain == "ours.test"), "{:?}", facts.dkim);

    // `dkim check`: both published records match.
    let config = dir.path().join("mailsift.toml");
    std::fs::write(
        &config,
        format!("[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 500\n{cfg}", dns.addr()),
    )
    .unwrap();
    let check = mailsift(&data, Some(&config), &["dkim", "check"]);
    assert!(check.status.success(), "{}", text(&check));
    let out = text(&check);
    assert_eq!(out.lines().filter(|l| l.starts_with("match")).count(), 2, "{out}");

    // Missing, mismatched (another key's record) and revoked (empty p=) records are told apart, and a
    // signing key without a matching record fails the command.
    dns.update(|z| {
        z.remove("r1._domainkey.ours.test").remove("e1._domainkey.ours.test");
        z.txt("e1._domainkey.ours.test", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    });
    let check = mailsift(&data, Some(&config), &["dkim", "check", "--json"]);
    assert!(!check.status.success(), "{}", text(&check));
    let out = String::from_utf8_lossy(&check.stdout).to_string();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let status = |sel: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|k| k["selector"] == sel)
            .map(|k| k["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("r1").as_deref(), Some("missing"), "{out}");
    assert_eq!(status("e1").as_deref(), Some("mismatch"), "{out}");
    dns.update(|z| {
        z.txt("r1._domainkey.ours.test", "v=DKIM1; k=rsa; p=");
    });
    let check = mailsift(&data, Some(&config), &["dkim", "check", "--json"]);
    let out = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(out.contains("\"revoked\""), "{}", text(&check));
}

/// `GET /api/v1/dkim` on a running gateway: the configured keys and whether their records match, for
/// administrators only.
#[test]
fn the_api_lists_the_keys_and_whether_their_records_match() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let made = mailsift(&data, None, &["dkim", "keygen", "ours.test", "--selector", "e1", "--algorithm", "ed25519"]);
    assert!(made.status.success(), "{}", text(&made));
    let (record, file) = printed(&made, "e1._domainkey.ours.test");
    let made = mailsift(&data, None, &["dkim", "keygen", "ours.test", "--selector", "e2", "--algorithm", "ed25519"]);
    let (_, file2) = printed(&made, "e2._domainkey.ours.test");
    let mut zone = Zone::new();
    zone.txt("e1._domainkey.ours.test", &record);
    let dns = TestDns::start(zone);
    let config = dir.path().join("mailsift.toml");
    std::fs::write(
        &config,
        format!(
            "[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 500\n[smtp.dkim]\n\
             [[smtp.dkim.keys]]\ndomain = \"ours.test\"\nselector = \"e1\"\nkey_file = \"{}\"\n\
             [[smtp.dkim.keys]]\ndomain = \"ours.test\"\nselector = \"e2\"\nkey_file = \"{}\"\nsign = false\n",
            dns.addr(),
            file.display(),
            file2.display()
        ),
    )
    .unwrap();
    // An administrator's API token (the account lives in the gateway database).
    let store = mailsift(&data, None, &["store", "create"]);
    assert!(store.status.success(), "{}", text(&store));
    let mut add = Command::new(env!("CARGO_BIN_EXE_mailsift"))
        .arg("--data-dir")
        .arg(&data)
        .args(["accounts", "add", "admin", "--role", "admin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"a long enough password\n").unwrap();
    assert!(add.wait().unwrap().success());
    let token = mailsift(&data, None, &["accounts", "token", "admin"]);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    cmd.arg("--data-dir").arg(&data).arg("--config").arg(&config);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    let mut child = mailsift_testkit::Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut http: Option<std::net::SocketAddr> = None;
    for _ in 0..50 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(a) = line.trim().strip_prefix("mailsift: HTTP listening on ") {
            http = Some(a.parse().unwrap());
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    let http = http.expect("serve announces its HTTP listener");
    let mut client =
        mailsift_testkit::clients::HttpClient::new(http).with_header("Authorization", &format!("Bearer {token}"));
    let answer = client.get("/api/v1/dkim");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    let keys = json["keys"].as_array().unwrap_or_else(|| panic!("{json}"));
    assert_eq!(keys.len(), 2, "{json}");
    assert_eq!(keys[0]["selector"], "e1");
    assert_eq!(keys[0]["algorithm"], "ed25519");
    assert_eq!(keys[0]["status"], "match", "{json}");
    assert_eq!(keys[0]["signing"], true);
    assert_eq!(keys[0]["file"], file.display().to_string());
    assert_eq!(keys[1]["status"], "missing", "{json}");
    assert_eq!(keys[1]["signing"], false);
    // Not for anonymous callers.
    let anonymous = mailsift_testkit::clients::HttpClient::new(http).get("/api/v1/dkim");
    assert!(anonymous.status == 401 || anonymous.status == 403, "{}", anonymous.status);
    drop(child);
}
