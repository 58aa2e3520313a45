//! `mailsift serve` as a service manager sees it: readiness, reload and stop told over `NOTIFY_SOCKET`
//! (systemd's `Type=notify`), the log file reopened on SIGUSR1, the JSON log carrying every message's
//! reference; and the manual pages and shell completions generated from the command line's definition.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("NOTIFY_SOCKET").env("MAILSIFT_LOG", "info");
    c
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-service", name)
}

/// A child process killed when the test ends, whatever happens.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn signal(&self, name: &str) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
    }
}

/// Starts `serve` on the given SMTP and HTTP addresses; stdout is drained, stderr goes to `stderr`.
fn serve(
    data: &Path,
    config: &Path,
    smtp: SocketAddr,
    http: SocketAddr,
    extra: &[&str],
    env: &[(&str, &Path)],
) -> Proc {
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(data).arg("--config").arg(config);
    cmd.args(["serve", "--listen", &smtp.to_string(), "--http-listen", &http.to_string()]);
    cmd.args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The first stdout line comes once the SMTP listener is bound (tests that do not watch NOTIFY_SOCKET
    // wait for it); the rest is drained so the child never blocks on a full pipe.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("listening on"), "{first:?}");
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    Proc(child)
}

/// The SMTP greeting at `addr`, on the first try (no retries): the port must already answer.
fn greeting(addr: SocketAddr) -> String {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("SMTP {addr} does not answer: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    BufReader::new(tcp).read_line(&mut line).unwrap();
    line
}

/// The next datagram on the notification socket, as text.
fn next_notification(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| panic!("no notification from the gateway: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@sender.example\r\nTo: bob@localhost\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <{}@sender.example>\r\n\r\nHello,\r\nthis is {subject}.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

#[test]
fn the_service_manager_is_told_ready_after_the_ports_answer_and_about_reloads_and_the_stop() {
    let data = temp_dir("notify");
    let config = data.join("mailsift.toml");
    std::fs::write(&config, "[[smtp.domains]]\nname = \"a.test\"\n").unwrap();
    let socket_path = data.join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (smtp, http) = (mailsift_testkit::quiet_loopback_port(), mailsift_testkit::quiet_loopback_port());
    let gw = serve(&data, &config, smtp, http, &[], &[("NOTIFY_SOCKET", &socket_path)]);

    // The first word from the gateway is READY=1, and at that moment both ports answer at the first try.
    let ready = next_notification(&sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains(&format!("STATUS=accepting mail on {smtp}")), "{ready:?}");
    assert!(greeting(smtp).starts_with("220 "));
    TcpStream::connect_timeout(&http, Duration::from_secs(2)).unwrap_or_else(|e| panic!("HTTP {http}: {e}"));

    // A good reload: RELOADING=1 (with the monotonic time newer systemd wants), then READY=1 again.
    gw.signal("HUP");
    let reloading = next_notification(&sock);
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading:?}");
    assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    let done = next_notification(&sock);
    assert!(done.lines().any(|l| l == "READY=1") && done.contains("STATUS=configuration reloaded"), "{done:?}");

    // A broken file: the manager's status says why, without the file's lines (a password may be on one),
    // and the gateway keeps serving with what it had.
    std::fs::write(&config, "[[smtp.domains]]\nname = \"a.test\"\nsecret = \"hunter2\" [\n").unwrap();
    gw.signal("HUP");
    assert!(next_notification(&sock).contains("RELOADING=1"));
    let failed = next_notification(&sock);
    assert!(failed.lines().any(|l| l == "READY=1"), "{failed:?}");
    let status = failed.lines().find(|l| l.starts_with("STATUS=")).unwrap_or_default();
    assert!(status.starts_with("STATUS=reload failed: ") && status.contains("mailsift.toml"), "{failed:?}");
    assert!(!failed.contains("hunter2"), "the status quotes the file: {failed:?}");
    assert!(greeting(smtp).starts_with("220 "));

    // SIGTERM: STOPPING=1 while it drains, then the process ends.
    gw.signal("TERM");
    let stopping = next_notification(&sock);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let mut gw = gw;
    let started = Instant::now();
    let status = gw.0.wait().unwrap();
    assert!(status.success() && started.elapsed() < Duration::from_secs(30), "{status:?}");
    let mut stderr = String::new();
    gw.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(
        stderr.contains("reload failed") && !stderr.contains("hunter2"),
        "the log says it too, no secret: {stderr}"
    );
}

#[test]
fn the_log_file_is_reopened_on_sigusr1_after_a_rotation() {
    let data = temp_dir("logfile");
    let config = data.join("mailsift.toml");
    std::fs::write(&config, "").unwrap();
    let log = data.join("mailsift.log");
    let (smtp, http) = (mailsift_testkit::quiet_loopback_port(), mailsift_testkit::quiet_loopback_port());
    let gw = serve(&data, &config, smtp, http, &["--log-file", log.to_str().unwrap()], &[]);
    let wait_for = |path: &Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "{} never got {needle:?}: {text}", path.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let _ = mailsift_testkit::clients::smtp_send(
        smtp,
        "alice@sender.example",
        &["bob@localhost"],
        &message("before rotation"),
    );
    let first = wait_for(&log, "message");
    assert!(first.contains("action"), "{first}");

    // logrotate's way: rename, then signal; the new lines go to a new file at the old name.
    let rotated = data.join("mailsift.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal("USR1");
    wait_for(&log, "log file reopened");
    gw.signal("HUP");
    let new = wait_for(&log, "configuration reloaded");
    assert!(!new.contains("before rotation"));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("configuration reloaded") && !old.contains("log file reopened"), "{old}");

    // Nothing of the log on standard error.
    gw.signal("TERM");
    let mut gw = gw;
    gw.0.wait().unwrap();
    let mut stderr = String::new();
    gw.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!stderr.contains("configuration reloaded"), "{stderr}");
    assert!(wait_for(&log, "stopped").contains("counters"));
}

#[test]
fn the_json_log_carries_the_reference_of_the_250_reply() {
    let data = temp_dir("json");
    let config = data.join("mailsift.toml");
    std::fs::write(&config, "").unwrap();
    let log = data.join("mailsift.json");
    let (smtp, http) = (mailsift_testkit::quiet_loopback_port(), mailsift_testkit::quiet_loopback_port());
    let gw = serve(&data, &config, smtp, http, &["--log-format", "json", "--log-file", log.to_str().unwrap()], &[]);
    let reply =
        mailsift_testkit::clients::smtp_send(smtp, "alice@sender.example", &["bob@localhost"], &message("json log"))
            .unwrap_or_else(|e| panic!("SMTP {smtp}: {e}"));
    assert_eq!(reply.0, 250, "{reply:?}");
    let reference =
        reply.1.split("[ref ").nth(1).and_then(|r| r.split(']').next()).unwrap_or_else(|| panic!("{reply:?}"));
    gw.signal("TERM");
    let mut gw = gw;
    gw.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let of_message: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["fields"]["reference"].as_str() == Some(reference)).collect();
    assert!(
        of_message.iter().any(|v| v["fields"]["message"] == "message" && v["fields"]["action"].is_string()),
        "no JSON line with reference {reference}:\n{text}"
    );
}

#[test]
fn manual_pages_and_completions_come_from_the_command_line_definition() {
    let dir = temp_dir("generate");
    let out = bin().args(["generate", "man"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let main = std::fs::read_to_string(dir.join("mailsift.1")).unwrap();
    // Every subcommand of --help has its page and is named on the main page.
    let help = String::from_utf8(bin().arg("--help").output().unwrap().stdout).unwrap();
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("  ").and_then(|l| l.split_whitespace().next()))
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 20 && commands.contains(&"serve") && !commands.contains(&"generate"), "{commands:?}");
    for c in &commands {
        assert!(main.contains(&format!("mailsift\\-{}", c.replace('-', "\\-"))), "mailsift.1 lacks {c}");
        let page = dir.join(format!("mailsift-{c}.1"));
        assert!(page.is_file(), "{} missing", page.display());
    }
    let serve = std::fs::read_to_string(dir.join("mailsift-serve.1")).unwrap();
    assert!(serve.contains(".TH") && serve.contains("log\\-file"), "{serve}");
    // Nested subcommands have pages too.
    assert!(dir.join("mailsift-log-list.1").is_file());

    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["generate", "completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("serve") && script.contains("smtp-sink") && script.contains("log-file"), "{shell}");
    }
    let bad = bin().args(["generate", "completions", "tcsh"]).output().unwrap();
    assert!(!bad.status.success());
}
