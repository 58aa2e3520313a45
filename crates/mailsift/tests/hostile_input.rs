//! One crafted message must cost at most that message, never the process: the nested-MIME bombs that once
//! overflowed a worker's stack (and took SMTP, HTTP, spamd and the milter down together) go through every
//! front end of one real `mailsift serve` process, which must answer each and keep serving normal mail.
//!
//! The milter leg needs Postfix (CI installs it; outside CI, `MAILSIFT_SKIP_POSTFIX=1` skips that leg).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailsift_testkit::clients::{smtp_send, HttpClient};
use mailsift_testkit::postfix::Postfix;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "warn");
    c
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
    fn assert_alive(&mut self, after: &str) {
        if let Some(status) = self.0.try_wait().unwrap() {
            panic!("mailsift serve died after {after}: {status:?}");
        }
    }
}

/// The listeners `mailsift serve` announced, by kind ("SMTP inbound", "spamd", "milter", "HTTP").
struct Listeners(Vec<(String, String)>);

impl Listeners {
    fn addr(&self, kind: &str) -> SocketAddr {
        let (_, a) = self.0.iter().find(|(k, _)| k == kind).unwrap_or_else(|| panic!("no {kind} in {:?}", self.0));
        a.trim_start_matches("inet:").parse().unwrap_or_else(|_| panic!("{kind}: {a}"))
    }
}

fn serve(data: &Path, config: &Path) -> (Proc, Listeners) {
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(data).arg("--config").arg(config);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !found.iter().any(|(k, _): &(String, String)| k == "HTTP") && Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // "mailsift: KIND listening on ADDR"
        if let Some((kind, addr)) = line.trim().strip_prefix("mailsift: ").and_then(|l| l.split_once(" listening on "))
        {
            found.push((kind.to_string(), addr.to_string()));
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (Proc(child), Listeners(found))
}

const INNER: &str = "From: inner@sender.example\r\nSubject: inner\r\n\r\nthe innermost text\r\n";

/// `depth` nested message/rfc822 headers, as the body of a message/rfc822 part in `encoding`.
fn nested_bomb(depth: usize, encoding: &str) -> Vec<u8> {
    let mut nested = "Content-Type: message/rfc822\r\n\r\n".repeat(depth);
    nested.push_str(INNER);
    let (cte, body) = match encoding {
        "base64" => ("Content-Transfer-Encoding: base64\r\n", base64_lines(nested.as_bytes())),
        // Only CRLF and ASCII: the quoted-printable form is the text itself.
        "quoted-printable" => ("Content-Transfer-Encoding: quoted-printable\r\n", nested),
        _ => ("", nested),
    };
    format!(
        "From: attacker@sender.example\r\nTo: bob@localhost\r\nSubject: nested {depth} {encoding}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bomb-{depth}-{encoding}@sender.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n{cte}\r\n{body}"
    )
    .into_bytes()
}

fn base64_lines(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("\r\n");
    out
}

fn bombs() -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for (depth, enc) in [(2_500, "quoted-printable"), (2_500, "base64"), (20_000, "none"), (4_000, "quoted-printable")]
    {
        all.push((format!("{depth} levels, {enc}"), nested_bomb(depth, enc)));
    }
    all
}

fn normal(subject: &str, rcpt: &str) -> Vec<u8> {
    format!(
        "From: alice@sender.example\r\nTo: {rcpt}\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@sender.example>\r\n\r\nHello,\r\nthis is {subject}.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

fn maildir_count(data: &Path, rcpt: &str) -> usize {
    std::fs::read_dir(data.join("maildir").join(rcpt).join("new")).map(|d| d.count()).unwrap_or(0)
}

/// An API token for a new administrator, made with the CLI as an operator would.
fn api_token(data: &Path) -> String {
    // Only serve, init and `store create` make a gateway database; the account is stored in one.
    let made = bin().arg("--data-dir").arg(data).args(["store", "create"]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut add = bin()
        .arg("--data-dir")
        .arg(data)
        .args(["accounts", "add", "admin", "--role", "admin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"a long enough password\n").unwrap();
    assert!(add.wait().unwrap().success());
    let out = bin().arg("--data-dir").arg(data).args(["accounts", "token", "admin"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A spamd CHECK over a raw socket; the status line, or "" when the connection closed without one.
fn spamd_check(addr: SocketAddr, msg: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("CHECK SPAMC/1.5\r\nContent-length: {}\r\nUser: bob\r\n\r\n", msg.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(msg).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or("").to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-hostile", name)
}

#[test]
fn nested_mime_bombs_cost_one_message_on_every_front_end() {
    let data = temp_dir("bombs");
    let config = data.join("mailsift.toml");
    std::fs::write(&config, "[smtp.milter]\nlisten = [\"127.0.0.1:0\"]\n\n[smtp.spamd]\nlisten = [\"127.0.0.1:0\"]\n")
        .unwrap();
    let token = api_token(&data);
    let (mut gw, listeners) = serve(&data, &config);
    let smtp = listeners.addr("SMTP inbound");
    let http = listeners.addr("HTTP");
    let spamd = listeners.addr("spamd");
    let milter = listeners.addr("milter");

    for (name, bomb) in bombs() {
        // SMTP: an answer (accepted and judged on what was parsed, or refused), never a dead connection.
        let reply = smtp_send(smtp, "attacker@sender.example", &["bob@localhost"], &bomb)
            .unwrap_or_else(|e| panic!("{name}: SMTP session broke: {e}"));
        assert!(matches!(reply.0 / 100, 2 | 4 | 5), "{name}: {reply:?}");
        gw.assert_alive(&format!("SMTP {name}"));

        // HTTP scan: a verdict that says what the limit cut.
        let mut client = HttpClient::new(http).with_header("Authorization", &format!("Bearer {token}"));
        let answer = client.post_bytes("/api/v1/scan", "message/rfc822", &bomb);
        assert_eq!(answer.status, 200, "{name}: {}", answer.text());
        gw.assert_alive(&format!("HTTP scan {name}"));

        // spamd: a SPAMD/1.x answer.
        let status = spamd_check(spamd, &bomb);
        assert!(status.starts_with("SPAMD/1."), "{name}: spamd answered {status:?}");
        gw.assert_alive(&format!("spamd {name}"));
    }

    // The milter, behind a real Postfix, when it is there.
    if Postfix::available_or_skip() {
        let milter = format!("inet:{milter}");
        let postfix = Postfix::start_with(
            &["example.com"],
            &[("smtpd_milters", &milter), ("milter_default_action", "tempfail"), ("milter_protocol", "6")],
        )
        .unwrap();
        for (name, bomb) in bombs() {
            let bomb = String::from_utf8(bomb).unwrap().replace("bob@localhost", "bob@example.com");
            let reply =
                smtp_send(postfix.smtp_addr(), "attacker@sender.example", &["bob@example.com"], bomb.as_bytes())
                    .unwrap_or_else(|e| panic!("{name}: Postfix session broke: {e}"));
            assert!(matches!(reply.0 / 100, 2 | 4 | 5), "{name}: {reply:?}");
            gw.assert_alive(&format!("milter {name}"));
        }
        // And the milter still judges normal mail.
        let reply = smtp_send(
            postfix.smtp_addr(),
            "alice@sender.example",
            &["bob@example.com"],
            &normal("after", "bob@example.com"),
        )
        .unwrap();
        assert_eq!(reply.0, 250, "{reply:?}\n{}", postfix.log());
        assert!(!postfix.wait_for_messages(1, Duration::from_secs(30)).is_empty(), "{}", postfix.log());
    }

    // Every listener still serves a normal message.
    let before = maildir_count(&data, "bob@localhost");
    let reply =
        smtp_send(smtp, "alice@sender.example", &["bob@localhost"], &normal("still here", "bob@localhost")).unwrap();
    assert_eq!(reply.0, 250, "{reply:?}");
    assert_eq!(maildir_count(&data, "bob@localhost"), before + 1);
    let status = spamd_check(spamd, &normal("spamd after", "bob@localhost"));
    assert!(status.starts_with("SPAMD/1.") && status.contains(" 0 EX_OK"), "{status}");
    gw.assert_alive("everything");
}
