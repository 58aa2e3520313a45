//! `mailsift serve` as a process: crash safety (kill -9 in the middle of DATA), reload on SIGHUP, the
//! message log from the command line, and the load generator against a real gateway and sink.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "warn");
    c
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-serve", name)
}

/// A child process killed when the test ends, whatever happens.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a command that prints "... listening on ADDR" lines; returns it and the first address.
fn spawn_listening(mut cmd: Command) -> (Proc, SocketAddr) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line.rsplit(' ').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("no address in {line:?}"));
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (Proc(child), addr)
}

fn serve(data: &Path, config: Option<&Path>) -> (Proc, SocketAddr) {
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(data);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    spawn_listening(cmd)
}

struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn connect(addr: SocketAddr) -> Smtp {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut s = Smtp { r: BufReader::new(tcp.try_clone().unwrap()), w: tcp };
        assert_eq!(s.reply().0, 220);
        s
    }
    /// One reply; code 0 when the connection is gone.
    fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return (0, all);
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), all);
            }
        }
    }
    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }
    fn send_message(&mut self, rcpt: &str, msg: &str) -> (u16, String) {
        self.cmd("EHLO client.sender.example");
        assert_eq!(self.cmd("MAIL FROM:<alice@sender.example>").0, 250);
        let (code, text) = self.cmd(&format!("RCPT TO:<{rcpt}>"));
        if code != 250 {
            return (code, text);
        }
        assert_eq!(self.cmd("DATA").0, 354);
        self.w.write_all(msg.as_bytes()).unwrap();
        self.w.write_all(b".\r\n").unwrap();
        self.reply()
    }
}

fn message(subject: &str) -> String {
    format!(
        "From: alice@sender.example\r\nTo: bob@localhost\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <{}@sender.example>\r\n\r\nHello,\r\nthis is {subject}.\r\n",
        subject.replace(' ', "-")
    )
}

fn maildir_messages(data: &Path, rcpt: &str) -> Vec<String> {
    let dir = data.join("maildir").join(rcpt).join("new");
    let mut out: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(d) => d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

#[test]
fn killing_the_gateway_mid_data_loses_nothing_that_was_answered_250() {
    let data = temp_dir("kill");
    let (mut gw, addr) = serve(&data, None);
    let mut c = Smtp::connect(addr);
    let (code, text) = c.send_message("bob@localhost", &message("first message"));
    assert_eq!(code, 250, "{text}");
    // The second message is half sent when the gateway dies.
    c.cmd("MAIL FROM:<alice@sender.example>");
    c.cmd("RCPT TO:<bob@localhost>");
    assert_eq!(c.cmd("DATA").0, 354);
    c.w.write_all(b"From: alice@sender.example\r\nSubject: second message\r\n\r\nhalf of it").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    gw.0.kill().unwrap();
    gw.0.wait().unwrap();
    assert_eq!(c.reply().0, 0, "no answer: the sender still owns the second message");

    // What got a 250 is on disk; what did not is not.
    let got = maildir_messages(&data, "bob@localhost");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: first message"));

    // The sender retries after the restart: the second arrives, once.
    let (_gw, addr) = serve(&data, None);
    let mut c = Smtp::connect(addr);
    assert_eq!(c.send_message("bob@localhost", &message("second message")).0, 250);
    let got = maildir_messages(&data, "bob@localhost");
    assert_eq!(got.len(), 2);
    assert_eq!(got.iter().filter(|m| m.contains("Subject: second message")).count(), 1);
    assert_eq!(got.iter().filter(|m| m.contains("Subject: first message")).count(), 1);
}

#[test]
fn sighup_reloads_the_configuration_and_a_bad_file_keeps_the_old_one() {
    let data = temp_dir("hup");
    let config = data.join("mailsift.toml");
    std::fs::write(&config, "[[smtp.domains]]\nname = \"a.test\"\n").unwrap();
    let (gw, addr) = serve(&data, Some(&config));
    let pid = gw.0.id().to_string();
    assert_eq!(Smtp::connect(addr).send_message("x@b.test", &message("before")).0, 550);

    std::fs::write(&config, "[[smtp.domains]]\nname = \"a.test\"\n[[smtp.domains]]\nname = \"b.test\"\n").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let mut accepted = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if Smtp::connect(addr).send_message("x@b.test", &message("after")).0 == 250 {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "b.test is accepted after the reload");

    // A broken file is refused; the gateway keeps running with what it had.
    std::fs::write(&config, "[smtp\nbroken").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(Smtp::connect(addr).send_message("y@b.test", &message("still")).0, 250);
}

#[test]
fn the_message_log_is_searchable_from_the_command_line() {
    let data = temp_dir("log");
    let (mut gw, addr) = serve(&data, None);
    let mut c = Smtp::connect(addr);
    assert_eq!(c.send_message("bob@localhost", &message("quarterly report")).0, 250);
    let gtube = "Subject: test\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
    let (code, text) = c.send_message("bob@localhost", gtube);
    assert_eq!(code, 550);
    let id = text.split("[ref ").nth(1).unwrap().trim().trim_end_matches(']').to_string();
    assert_eq!(c.cmd("QUIT").0, 221);
    // A graceful stop commits the log.
    assert!(Command::new("kill").args(["-TERM", &gw.0.id().to_string()]).status().unwrap().success());
    gw.0.wait().unwrap();

    let list = bin().arg("--data-dir").arg(&data).args(["log", "list", "--action", "reject"]).output().unwrap();
    let stdout = String::from_utf8(list.stdout).unwrap();
    assert!(stdout.contains(&id) && !stdout.contains("quarterly"), "{stdout}");
    let show = bin().arg("--data-dir").arg(&data).args(["log", "show", &id]).output().unwrap();
    let stdout = String::from_utf8(show.stdout).unwrap();
    assert!(stdout.contains("Action:      reject") && stdout.contains("GTUBE"), "{stdout}");
    let json =
        bin().arg("--data-dir").arg(&data).args(["log", "list", "--subject", "QUARTERLY", "--json"]).output().unwrap();
    let row: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(row["action"], "deliver");
    assert_eq!(row["recipients"][0], "bob@localhost");
    let missing = bin().arg("--data-dir").arg(&data).args(["log", "show", "NOSUCHID"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn the_load_generator_counts_what_the_gateway_and_the_sink_saw() {
    let data = temp_dir("load");
    let mut sink_cmd = bin();
    sink_cmd.args(["smtp-sink", "--listen", "127.0.0.1:0"]);
    let (mut sink, sink_addr) = spawn_listening(sink_cmd);
    let config = data.join("mailsift.toml");
    std::fs::write(&config, format!("[[smtp.domains]]\nname = \"localhost\"\nnext_hop = \"{sink_addr}\"\n")).unwrap();
    let (_gw, addr) = serve(&data, Some(&config));
    let corpus = data.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("a.eml"), message("one")).unwrap();
    std::fs::write(corpus.join("b.eml"), message("two")).unwrap();
    let out = bin()
        .args(["smtp-load", "--target", &addr.to_string(), "--concurrency", "8", "--count", "120", "--json"])
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["messages"], 120);
    assert_eq!(r["accepted"], 120);
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    // The sink reports what it received when interrupted.
    assert!(Command::new("kill").args(["-INT", &sink.0.id().to_string()]).status().unwrap().success());
    let status = sink.0.wait().unwrap();
    assert!(status.success());
}

#[test]
fn quarantined_mail_is_listed_shown_and_released_once() {
    let data = temp_dir("quarantine");
    let config = data.join("mailsift.toml");
    std::fs::write(
        &config,
        "[group_caps]\ncontent = 100.0\n[[rules]]\nname = \"HOLD_WORD\"\ntarget = \"subject\"\nphrase = \"holdme\"\nscore = 11.0\n",
    )
    .unwrap();
    let (mut gw, addr) = serve(&data, Some(&config));
    let mut c = Smtp::connect(addr);
    assert_eq!(c.send_message("bob@localhost", &message("holdme invoice")).0, 250);
    assert_eq!(c.send_message("bob@localhost", &message("holdme second")).0, 250);
    assert_eq!(c.send_message("bob@localhost", &message("holdme third")).0, 250);
    assert!(maildir_messages(&data, "bob@localhost").is_empty(), "held, not delivered");
    assert!(Command::new("kill").args(["-TERM", &gw.0.id().to_string()]).status().unwrap().success());
    gw.0.wait().unwrap();

    let q = |args: &[&str]| {
        bin().arg("--data-dir").arg(&data).arg("--config").arg(&config).arg("quarantine").args(args).output().unwrap()
    };
    let list = q(&["list", "--json"]);
    let items: Vec<serde_json::Value> =
        String::from_utf8(list.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(items.len(), 3);
    let first = items.iter().find(|i| i["subject"] == "holdme invoice").unwrap();
    let id = first["id"].as_i64().unwrap().to_string();
    assert!(first["reason"].as_str().unwrap().contains("HOLD_WORD"));

    let show = String::from_utf8(q(&["show", &id]).stdout).unwrap();
    assert!(
        show.contains("Recipient:  bob@localhost")
            && show.contains("HOLD_WORD")
            && show.contains("this is holdme invoice"),
        "{show}"
    );

    let released = q(&["release", &id]);
    assert!(released.status.success(), "{}", String::from_utf8_lossy(&released.stderr));
    let got = maildir_messages(&data, "bob@localhost");
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("X-Mailsift-Released: from quarantine item"), "{}", got[0]);
    assert!(got[0].contains("Subject: holdme invoice"));
    // Twice delivers once.
    let again = q(&["release", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already released"));
    assert_eq!(maildir_messages(&data, "bob@localhost").len(), 1);
    // Released items leave the default list.
    let held = String::from_utf8(q(&["list", "--json"]).stdout).unwrap();
    assert_eq!(held.lines().count(), 2);
    // Release and approve: the sender becomes bob's allowed sender, so the next message is delivered.
    let id_of =
        |subject: &str| items.iter().find(|i| i["subject"] == subject).unwrap()["id"].as_i64().unwrap().to_string();
    let approved = q(&["approve", &id_of("holdme second")]);
    assert!(approved.status.success(), "{}", String::from_utf8_lossy(&approved.stderr));
    assert!(String::from_utf8_lossy(&approved.stdout)
        .contains("alice@sender.example is now an allowed sender for bob@localhost"));
    assert_eq!(maildir_messages(&data, "bob@localhost").len(), 2);
    let (_gw, addr) = serve(&data, Some(&config));
    assert_eq!(Smtp::connect(addr).send_message("bob@localhost", &message("holdme fourth")).0, 250);
    let got = maildir_messages(&data, "bob@localhost");
    assert_eq!(got.len(), 3, "the approved sender's next message is delivered");
    let fourth = got.iter().find(|m| m.contains("Subject: holdme fourth")).unwrap();
    assert!(fourth.contains("X-Mailsift-SCL: -1"), "{fourth}");
    // Delete and purge.
    let other = id_of("holdme third");
    assert!(q(&["delete", &other]).status.success());
    assert_eq!(q(&["show", &other]).status.code(), Some(2));
    // "Older than" is strict: let the clock pass the item's second.
    std::thread::sleep(Duration::from_millis(1100));
    let purged = String::from_utf8(q(&["purge", "--older-than-days", "0"]).stdout).unwrap();
    assert!(purged.contains("purged 2 "), "{purged}");
}

#[test]
fn domains_managed_from_the_command_line_reach_the_running_gateway() {
    let data = temp_dir("domains");
    let (_gw, addr) = serve(&data, None);
    let d = |args: &[&str]| bin().arg("--data-dir").arg(&data).arg("domains").args(args).output().unwrap();
    assert_eq!(Smtp::connect(addr).send_message("alice@new.test", &message("before")).0, 550, "not our domain yet");

    let set = d(&[
        "set",
        "new.test",
        "--recipient",
        "alice@new.test",
        "--thresholds",
        "4,8,12",
        "--asf",
        "numeric_ip_in_url=on",
    ]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    // The gateway polls the store's version: within a few seconds the domain is ours.
    let mut accepted = false;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(100));
        if Smtp::connect(addr).send_message("alice@new.test", &message("after")).0 == 250 {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "new.test is accepted once stored");
    assert_eq!(
        Smtp::connect(addr).send_message("bob@new.test", &message("unknown user")).0,
        550,
        "only listed recipients"
    );
    assert_eq!(maildir_messages(&data, "alice@new.test").len(), 1);

    // Invalid settings are refused with the field named, and nothing is stored.
    let bad = d(&["set", "bad.test", "--sending-server", "10.0.0.0/99"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("domains.bad.test.sending_servers"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Export, remove, import: the same settings come back.
    let exported = String::from_utf8(d(&["export"]).stdout).unwrap();
    assert!(exported.contains("name = \"new.test\"") && exported.contains("numeric_ip_in_url = \"on\""), "{exported}");
    assert!(!exported.contains("bad.test"));
    assert!(d(&["rm", "new.test"]).status.success());
    assert_eq!(d(&["show", "new.test"]).status.code(), Some(2));
    let file = data.join("domains.toml");
    std::fs::write(&file, &exported).unwrap();
    assert!(d(&["import", file.to_str().unwrap()]).status.success());
    assert_eq!(String::from_utf8(d(&["export"]).stdout).unwrap(), exported);
}

/// A listener reachable from elsewhere with DNS evidence off is the production mistake that hides every
/// sender check: `serve` says so at start; on loopback (a trial) it stays quiet.
#[test]
fn serve_warns_when_a_public_listener_runs_with_dns_off() {
    let stderr_of = |listen: &str, name: &str| {
        let data = temp_dir(name);
        let mut child = bin()
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", listen, "--http-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The HTTP line is the last one printed at start; the warning comes right after it.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 && !line.contains("HTTP listening") {}
        std::thread::sleep(Duration::from_millis(300));
        let _ = child.kill();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let _ = child.wait();
        err
    };
    let public = stderr_of("0.0.0.0:0", "public-dns-off");
    assert!(public.contains("DNS evidence off") && public.contains("[dns] enabled = true"), "{public}");
    let loopback = stderr_of("127.0.0.1:0", "loopback-dns-off");
    assert!(!loopback.contains("DNS evidence off"), "{loopback}");
}

/// A fresh gateway has learned nothing: the day-one model shipped in the binary stands in for its classifiers,
/// with a quarter of the points. Turned off, the classifiers stay silent.
#[test]
fn a_fresh_gateway_judges_with_the_day_one_model() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages/sa_spam_001.eml");
    let spam = String::from_utf8_lossy(&std::fs::read(&fixture).unwrap()).replace("\r\n", "\n").replace('\n', "\r\n");
    let spam = spam.replace("\r\n.", "\r\n..");
    let show = |data: &Path, config: Option<&Path>| {
        let (mut gw, addr) = serve(data, config);
        let mut c = Smtp::connect(addr);
        let (code, text) = c.send_message("bob@localhost", &spam);
        assert!(code == 250 || code == 550, "{code} {text}");
        assert_eq!(c.cmd("QUIT").0, 221);
        assert!(Command::new("kill").args(["-TERM", &gw.0.id().to_string()]).status().unwrap().success());
        gw.0.wait().unwrap();
        let list = bin().arg("--data-dir").arg(data).args(["log", "list", "--json"]).output().unwrap();
        let row: serde_json::Value = serde_json::from_slice(&list.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&list.stdout)));
        let id = row["id"].as_str().unwrap().to_string();
        let out = bin().arg("--data-dir").arg(data).args(["log", "show", &id]).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // The log lists each symbol's points: the classifiers' are there, and at most a quarter of their 4.
    let classifier_points = |log: &str| -> Vec<f64> {
        log.lines()
            .filter(|l| l.contains("BAYES_") || l.contains("LINEAR_"))
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect()
    };
    let fresh = show(&temp_dir("day-one"), None);
    let points = classifier_points(&fresh);
    assert!(!points.is_empty() && points.iter().all(|p| *p > 0.0 && *p <= 1.0), "{fresh}");

    let off_dir = temp_dir("day-one-off");
    let config = off_dir.join("mailsift.toml");
    std::fs::write(&config, "[classifier]\nday_one_say = 0.0\n").unwrap();
    let off = show(&off_dir.join("data"), Some(&config));
    assert!(classifier_points(&off).is_empty(), "{off}");
}
