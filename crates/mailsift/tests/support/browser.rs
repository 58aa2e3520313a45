//! What every browser test needs: Chromium and playwright-core (or why they are missing), a scenario run of
//! `tests/browser/console.mjs`, and the stack it runs against (the gateway as a process, its next hop, an
//! administrator's account and API token). Included by `browser*.rs` with `#[path]`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailsift_testkit::clients::{encode, smtp_send, HttpClient};
use mailsift_testkit::postfix::Postfix;

pub const REQUIRE_ENV: &str = "MAILSIFT_REQUIRE_BROWSER";
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// Rules that quarantine by a subject word (as in the gateway's own tests); content caps off so it counts.
/// The schedule is off: these tests send the digest on demand.
pub fn config(next_hop: SocketAddr) -> String {
    format!(
        r#"[group_caps]
content = 1000.0

[[rules]]
name = "TEST_QUARANTINE_WORD"
target = "subject"
phrase = "quarantineme"
score = 11.0

[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.mailsift.test"

[[smtp.domains]]
name = "example.com"
next_hop = "{next_hop}"

[web.digest]
enabled = false
"#
    )
}

// ---------------------------------------------------------------------------------------------------------
// What the browser needs

/// Chromium, Node.js and playwright-core, or why they are not there.
pub struct Browser {
    pub chromium: PathBuf,
    pub scripts: PathBuf,
}

pub fn browser() -> Option<Browser> {
    let chromium =
        std::env::var_os("MAILSIFT_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!("Chromium ({} does not exist; `apt-get install chromium`)", chromium.display()));
    }
    if !Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        missing.push("Node.js (`node` is not on PATH; `apt-get install nodejs npm`)".into());
    }
    if !scripts.join("node_modules/playwright-core/package.json").is_file() {
        missing.push(format!("playwright-core (run `npm ci` in {})", scripts.display()));
    }
    if missing.is_empty() {
        return Some(Browser { chromium, scripts });
    }
    let why = format!("the browser test needs {}", missing.join(", "));
    if std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1") || mailsift_testkit::in_ci() {
        panic!("{why}; {REQUIRE_ENV}=1 makes that a failure (.ci/run installs them)");
    }
    eprintln!("SKIPPED: {why}. Set {REQUIRE_ENV}=1 to fail instead.");
    None
}

pub fn screenshots(scenario: &str) -> PathBuf {
    let base = match std::env::var_os("MAILSIFT_SCREENSHOTS") {
        Some(d) => PathBuf::from(d),
        // CARGO_TARGET_TMPDIR is <target>/tmp.
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("browser-screenshots"),
    };
    let dir = base.join(scenario);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs one scenario of console.mjs; returns what the browser reported (its last line of output, JSON).
pub fn run_browser(b: &Browser, scenario: &str, vars: &[(&str, String)]) -> serde_json::Value {
    let shots = screenshots(scenario);
    let mut cmd = Command::new("node");
    cmd.arg(b.scripts.join("console.mjs"))
        .current_dir(&b.scripts)
        .env("SCENARIO", scenario)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &b.chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = Proc(cmd.spawn().expect("start node"));
    let mut out = child.0.stdout.take().unwrap();
    let mut err = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the browser scenario {scenario} took over 90 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (reader.join().unwrap(), err_reader.join().unwrap());
    assert!(
        status.success(),
        "browser scenario {scenario} failed ({status}); screenshots in {}:\n{stderr}\n{stdout}",
        shots.display()
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("the browser's report is not JSON ({e}): {stdout}"))
}

// ---------------------------------------------------------------------------------------------------------
// The stack: next hop, gateway, accounts

/// A child process killed when the test ends, whatever happens.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the gateway delivers: a real Postfix when it can run here, else mailsift's own sink.
pub enum NextHop {
    Postfix(Postfix),
    Sink { _proc: Proc, addr: SocketAddr, dir: PathBuf },
}

impl NextHop {
    pub fn start(work: &Path) -> NextHop {
        if Postfix::available_or_skip() {
            return NextHop::Postfix(Postfix::start(&["example.com"]).expect("start Postfix"));
        }
        let dir = work.join("sink");
        let mut cmd = bin();
        cmd.args(["smtp-sink", "--listen", "127.0.0.1:0", "--keep"]).arg(&dir);
        let (proc, lines) = spawn_listening(cmd, 1);
        NextHop::Sink { _proc: proc, addr: address(&lines, "SMTP sink listening on"), dir }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            NextHop::Postfix(p) => p.smtp_addr(),
            NextHop::Sink { addr, .. } => *addr,
        }
    }

    /// Every message received so far, as text.
    pub fn delivered(&self) -> Vec<String> {
        let raw = match self {
            NextHop::Postfix(p) => p.delivered(),
            NextHop::Sink { dir, .. } => {
                let mut files = Vec::new();
                let mut stack = vec![dir.clone()];
                while let Some(d) = stack.pop() {
                    for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else if p.parent().is_some_and(|parent| parent.ends_with("new")) {
                            files.push(std::fs::read(p).unwrap());
                        }
                    }
                }
                files
            }
        };
        raw.into_iter().map(|m| String::from_utf8_lossy(&m).replace("\r\n", "\n")).collect()
    }

    /// Waits until at least `n` messages arrived (up to 20 s), then a little longer to see that no more
    /// come (a release must deliver exactly once); returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.delivered().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(700));
        self.delivered()
    }

    pub fn log(&self) -> String {
        match self {
            NextHop::Postfix(p) => p.log(),
            NextHop::Sink { .. } => String::new(),
        }
    }
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("MAILSIFT_DATA_DIR").env("MAILSIFT_LOG", "warn");
    c
}

/// Starts a command and reads its first `n` lines of standard output (the "listening on" lines).
pub fn spawn_listening(mut cmd: Command, n: usize) -> (Proc, Vec<String>) {
    let mut child = Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the process ended before saying where it listens; lines so far: {lines:?}");
        lines.push(line.trim_end().to_string());
    }
    // Keep draining standard output so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    (child, lines)
}

pub fn address(lines: &[String], prefix: &str) -> SocketAddr {
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("mailsift: {prefix}")))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {lines:?}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The whole stack for one test, stopped when dropped: the gateway (or two nodes of it), then the next hop,
/// then the files (fields drop in this order).
pub struct Stack {
    _gateway: Proc,
    _other_node: Option<Proc>,
    pub next_hop: NextHop,
    pub work: tempfile::TempDir,
    /// Where mail enters (node A's SMTP listener).
    pub smtp: SocketAddr,
    /// Where the console and the API answer (node B's, when there are two).
    pub http: SocketAddr,
    /// An administrator's API token.
    pub token: String,
    /// The configuration file and node B's data directory, for the CLI's view of the same state.
    pub config: PathBuf,
    pub data_dir: PathBuf,
}

impl Stack {
    pub fn start() -> Stack {
        Stack::start_nodes(None)
    }

    /// With a PostgreSQL URL: two nodes sharing it, each with its own data directory; mail enters through
    /// node A and everything the browser and the API do goes to node B.
    pub fn start_nodes(postgres: Option<&str>) -> Stack {
        Stack::start_with(postgres, "")
    }

    /// With more configuration appended to the test's own (TOML tables not already in it).
    pub fn start_with(postgres: Option<&str>, extra: &str) -> Stack {
        let work = tempfile::Builder::new().prefix("mailsift-browser-").tempdir().unwrap();
        let next_hop = NextHop::start(work.path());
        let config = work.path().join("mailsift.toml");
        let mut text = self::config(next_hop.addr());
        text.push_str(extra);
        if let Some(url) = postgres {
            text.push_str(&format!("\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"));
        }
        std::fs::write(&config, text).unwrap();
        let data_a = work.path().join("data");
        let data_b = work.path().join(if postgres.is_some() { "data-b" } else { "data" });

        // The account is made through node A's installation; the token (below) is node B's, signed with its key.
        if postgres.is_none() {
            // Only serve, init and `store create` make a gateway database; the account is stored in one.
            let mut made = bin();
            made.arg("--config").arg(&config).arg("--data-dir").arg(&data_a).args(["store", "create"]);
            assert!(made.output().unwrap().status.success(), "store create");
        }
        let mut add = bin();
        add.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_a)
            .args(["accounts", "add", ADMIN, "--role", "admin"]);
        let mut child = add.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        writeln!(child.stdin.take().unwrap(), "{ADMIN_PASSWORD}").unwrap();
        assert!(child.wait().unwrap().success(), "mailsift accounts add failed");

        let serve = |data: &Path| {
            let mut serve = bin();
            serve.arg("--config").arg(&config).arg("--data-dir").arg(data);
            serve.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
            spawn_listening(serve, 2)
        };
        let (gateway, lines) = serve(&data_a);
        let smtp = address(&lines, "SMTP inbound listening on");
        let (other_node, http) = if postgres.is_some() {
            let (b, lines_b) = serve(&data_b);
            (Some(b), address(&lines_b, "HTTP listening on"))
        } else {
            (None, address(&lines, "HTTP listening on"))
        };
        // After the nodes started: node B made its key.
        let out = bin()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_b)
            .args(["accounts", "token", ADMIN])
            .output()
            .unwrap();
        assert!(out.status.success(), "mailsift accounts token: {}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Stack {
            smtp,
            http,
            config,
            data_dir: data_b,
            work,
            next_hop,
            _gateway: gateway,
            _other_node: other_node,
            token,
        }
    }

    /// Runs the CLI on this installation (node B's data directory) and returns its standard output;
    /// `stdin` is written to it first. Panics, with what it said, when it fails.
    pub fn cli(&self, args: &[&str], stdin: &str) -> String {
        let mut cmd = bin();
        cmd.arg("--config").arg(&self.config).arg("--data-dir").arg(&self.data_dir).args(args);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "mailsift {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Adds a console account (`role` admin, domain_admin or user; `domains` for a domain administrator).
    pub fn add_account(&self, name: &str, role: &str, password: &str, domains: &[&str]) {
        let mut args = vec!["accounts", "add", name, "--role", role];
        for d in domains {
            args.extend(["--domain", d]);
        }
        self.cli(&args, &format!("{password}\n"));
    }

    /// Sends a whole message (CRLF line ends) over SMTP and insists it is accepted.
    pub fn send_raw(&self, mail_from: &str, rcpts: &[&str], message: &str) {
        let (code, text) = smtp_send(self.smtp, mail_from, rcpts, message.as_bytes()).unwrap();
        assert_eq!(code, 250, "{text}");
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn api(&self) -> HttpClient {
        HttpClient::new(self.http).with_header("Authorization", &format!("Bearer {}", self.token))
    }

    /// Sends one message over SMTP and insists it is accepted (quarantined mail is accepted too).
    pub fn send(&self, rcpt: &str, subject: &str, body: &str) {
        let message = format!(
            "From: Alice Sender <alice@sender.example>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\
             Date: {}\r\nMessage-ID: <{}@sender.example>\r\n\r\n{body}\r\n",
            mailsift_smtp::proto::rfc5322_date(mailsift_engine::unix_now()),
            subject.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let (code, text) = smtp_send(self.smtp, "alice@sender.example", &[rcpt], message.as_bytes()).unwrap();
        assert_eq!(code, 250, "{subject}: {text}");
    }

    /// The message log entry for a subject, once it is written (the log is written in batches).
    pub fn logged(&self, subject: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.api().get(&format!("/api/v1/log?subject={}", encode(subject)));
            assert_eq!(page.status, 200, "{}", page.text());
            if let Some(e) = page.json()["entries"].as_array().and_then(|a| a.first()).cloned() {
                return e;
            }
            assert!(Instant::now() < deadline, "{subject:?} never appeared in the message log");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Quarantine items (held and released) whose subject contains `subject`.
    pub fn quarantined(&self, subject: &str) -> Vec<serde_json::Value> {
        let r = self.api().get(&format!("/api/v1/quarantine?all=true&subject={}", encode(subject)));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().as_array().unwrap().clone()
    }
}

pub fn subject_of(message: &str) -> &str {
    message.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("")
}

pub fn has_header(message: &str, name: &str) -> bool {
    let head = message.split("\n\n").next().unwrap_or("");
    head.lines()
        .any(|l| l.get(..name.len()).is_some_and(|n| n.eq_ignore_ascii_case(name)) && l[name.len()..].starts_with(':'))
}

// ---------------------------------------------------------------------------------------------------------
// The digest: its text part and links

/// Standard base64 (RFC 4648), line breaks ignored.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The decoded text/plain part of the digest.
pub fn digest_text(digest: &str) -> String {
    let start = digest.find("Content-Type: text/plain").expect("the digest has a text part");
    let body = &digest[start..];
    let body = &body[body.find("\n\n").unwrap() + 2..];
    let body = &body[..body.find("\n--").unwrap()];
    String::from_utf8(base64_decode(body)).unwrap()
}

/// The link on the line `label:` in the digest entry for `subject`.
pub fn digest_link(text: &str, subject: &str, label: &str) -> String {
    let entry =
        text.split("\r\n\r\n").find(|e| e.contains(&format!("Subject: {subject}"))).expect("an entry for the subject");
    let line = entry.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} line in {entry}"));
    line.rsplit(' ').next().unwrap().to_string()
}
