//! The console port under attack, over real sockets on loopback in front of a real gateway (SMTP and
//! HTTP in one process, as `mailsift serve` runs them):
//! - a flood of unfinished HTTP requests from several addresses neither stops the SMTP listener nor
//!   keeps the console from answering once the slow ones time out; and a full SMTP side does not stop
//!   the console;
//! - logins: a guessing address is refused, the real user from elsewhere still gets in; after login,
//!   only pages of the console are redirect targets, however the target is disguised;
//! - a server-side failure answers with a reference, never with paths or database messages.

// Linux: any address of 127.0.0.0/8 can be bound without setup.
#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::{Database, Role};
use mailsift_testkit::clients::{encode, smtp_send, HttpClient};
use mailsift_web::{AppState, Web, WebConfig};

const ADMIN_PW: &str = "admin-password-1";

struct Stack {
    rt: tokio::runtime::Runtime,
    smtp: SocketAddr,
    http: SocketAddr,
    dir: tempfile::TempDir,
    web: AppState,
    _sink: Sink,
}

/// A gateway with one account (`admin`), `[web]` and `[smtp]` extended by the given lines.
fn start(web_extra: &str, smtp_extra: &str) -> Stack {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (smtp, http, sink, web) = rt.block_on(async {
        let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
        let hop = sink.addr();
        let text = format!(
            r#"
[group_caps]
content = 1000.0

[[rules]]
name = "TEST_QUARANTINE_WORD"
target = "subject"
phrase = "quarantineme"
score = 11.0

[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"
{smtp_extra}

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[web]
listen = "127.0.0.1:0"
{web_extra}

[web.digest]
enabled = false
"#
        );
        let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
        let config = SmtpConfig::from_toml(&text).unwrap();
        let web_config = WebConfig::from_toml(&text).unwrap();
        let state = GatewayState::new(engine, config, dir.path()).unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let hash = mailsift_web::auth::hash_password(ADMIN_PW).unwrap();
        db.account_add("admin", Role::Admin, &[], &hash, mailsift_engine::unix_now()).unwrap();
        let gateway = Gateway::new(state, db, dir.path());
        let listeners = gateway.bind().await.unwrap();
        let smtp = listeners.iter().find(|(_, l)| *l == Listener::Inbound).unwrap().0.local_addr().unwrap();
        tokio::spawn(gateway.clone().serve(listeners));
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let web = Web::new(gateway, web_config, http).unwrap();
        tokio::spawn(mailsift_web::serve(web.clone(), http_listener));
        (smtp, http, sink, web)
    });
    Stack { rt, smtp, http, dir, web, _sink: sink }
}

fn message(to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@sender.example>\r\nTo: {to}\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@sender.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nHello there, see you at lunch.\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

impl Stack {
    /// A TCP connection to `to` from the loopback address `from` (any of 127.0.0.0/8 works on Linux).
    fn connect_from(&self, from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
        let s = self.rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(from.into(), 0))?;
            tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
                .await
                .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect timed out"))?
        })?;
        let s = s.into_std()?;
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(s)
    }

    /// One whole HTTP request from `from`; the raw answer (empty when the connection was closed or reset
    /// without one).
    fn http_from(&self, from: Ipv4Addr, request: &str) -> Answer {
        let Ok(mut s) = self.connect_from(from, self.http) else { return Answer::default() };
        if s.write_all(request.as_bytes()).is_err() {
            return Answer::default();
        }
        Answer::read(&mut s)
    }

    fn login_from(&self, from: Ipv4Addr, name: &str, password: &str) -> Answer {
        let body = serde_json::json!({ "name": name, "password": password }).to_string();
        self.http_from(
            from,
            &format!(
                "POST /api/v1/login HTTP/1.1\r\nHost: console.test\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    fn get_from(&self, from: Ipv4Addr, path: &str) -> Answer {
        self.http_from(from, &format!("GET {path} HTTP/1.1\r\nHost: console.test\r\nConnection: close\r\n\r\n"))
    }
}

#[derive(Debug, Default)]
struct Answer {
    raw: String,
}

impl Answer {
    /// Reads until the peer closes (or resets, or 20 s pass).
    fn read(s: &mut TcpStream) -> Answer {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        Answer { raw: String::from_utf8_lossy(&raw).into_owned() }
    }
    fn status(&self) -> u16 {
        self.raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }
    fn header(&self, name: &str) -> Option<&str> {
        let head = self.raw.split("\r\n\r\n").next()?;
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
    fn body(&self) -> &str {
        self.raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
    }
}

/// Whether the server has closed (or reset) the connection, without waiting.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            // Some answer (a 503): the close follows it.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Waits (at most `limit`) for the server to close the connection; returns when it did.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> Option<Instant> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(Instant::now()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            Err(_) => return Some(Instant::now()),
        }
    }
}

const FLOOD_LIMITS: &str = "max_connections = 64\nmax_connections_per_ip = 20\nheader_read_timeout_secs = 2\n\
                            request_timeout_secs = 4";

#[test]
fn a_flood_of_unfinished_http_requests_stops_neither_the_mail_nor_the_console() {
    let s = start(FLOOD_LIMITS, "");
    let sources: Vec<Ipv4Addr> = (2..=5).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    // 200 requests that never finish their headers, 50 from each of four addresses.
    let opened = Instant::now();
    let mut slow = Vec::new();
    for i in 0..200 {
        let from = sources[i % sources.len()];
        let mut c = s.connect_from(from, s.http).expect("loopback connect");
        let _ = c.write_all(b"GET /login HTTP/1.1\r\nHost: console.test\r\nX-Slow: ");
        slow.push((from, c));
    }
    assert!(opened.elapsed() < Duration::from_millis(1500), "the flood must be open before the header timeout");
    std::thread::sleep(Duration::from_millis(300));
    let mut held = 0;
    let mut held_per_source = std::collections::HashMap::new();
    for (from, c) in slow.iter_mut() {
        if !closed_by_server(c) {
            held += 1;
            *held_per_source.entry(*from).or_insert(0) += 1;
        }
    }
    assert!(held <= 64, "the total cap holds: {held} connections open");
    assert!(held >= 40, "the cap is reached, not something smaller: {held}");
    assert!(held_per_source.values().all(|&n| n <= 20), "the per-address cap holds: {held_per_source:?}");

    // (b, refused) A new client while the console is full: answered 503 at once, not left waiting.
    let t = Instant::now();
    let busy = s.connect_from(Ipv4Addr::new(127, 0, 0, 9), s.http).map(|mut c| Answer::read(&mut c)).unwrap();
    assert_eq!(busy.status(), 503, "{busy:?}");
    assert!(busy.header("retry-after").is_some());
    assert!(t.elapsed() < Duration::from_secs(1), "refused promptly: {:?}", t.elapsed());

    // (a) The SMTP listener of the same process still greets and takes mail.
    let t = Instant::now();
    let reply = smtp_send(s.smtp, "alice@sender.example", &["bob@example.com"], &message("bob@example.com", "flood"));
    assert_eq!(reply.unwrap().0, 250, "mail goes through while HTTP is saturated");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // (c) The unfinished requests are closed once the header timeout (2 s) passes.
    for (_, c) in slow.iter_mut() {
        let closed = wait_closed(c, Duration::from_secs(6));
        let at = closed.expect("an unfinished request is closed by the server");
        assert!(at.duration_since(opened) < Duration::from_secs(6), "closed after {:?}", at.duration_since(opened));
    }
    drop(slow);

    // (b) A fresh request from another address is answered now.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.get_from(Ipv4Addr::new(127, 0, 0, 9), "/login");
        if r.status() == 200 {
            assert!(r.body().contains("<form"), "{}", r.body());
            break;
        }
        assert!(Instant::now() < deadline, "the console answers again after the flood: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The refusals are counted for the operator.
    let metrics = s.get_from(Ipv4Addr::LOCALHOST, "/metrics");
    let refused: u64 = metrics
        .body()
        .lines()
        .find_map(|l| l.strip_prefix("mailsift_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the refusal counter is exported");
    assert!(refused >= 136, "{refused}");
}

#[test]
fn a_trickled_header_or_body_and_an_idle_keepalive_are_cut_at_their_timeouts() {
    let s = start(FLOOD_LIMITS, "");
    let from = Ipv4Addr::new(127, 0, 0, 6);
    // Headers sent a byte every 300 ms: still closed at the header timeout (counted from the start).
    let mut trickle = s.connect_from(from, s.http).unwrap();
    let start = Instant::now();
    let request = b"GET /login HTTP/1.1\r\nHost: console.test\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    trickle.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut closed_after = None;
    for b in request.iter() {
        if trickle.write_all(&[*b]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match trickle.read(&mut buf) {
            Ok(_) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed_after = Some(start.elapsed());
                break;
            }
        }
    }
    let closed_after = closed_after.expect("the trickling client is cut off before it finishes");
    assert!(closed_after >= Duration::from_millis(1500), "not before the header timeout: {closed_after:?}");
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");

    // A body that never comes: the request is abandoned at the request timeout (4 s) with 408 or a close.
    let mut c = s.connect_from(from, s.http).unwrap();
    let start = Instant::now();
    c.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: console.test\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"name\":",
    )
    .unwrap();
    let answer = Answer::read(&mut c);
    let took = start.elapsed();
    assert!(answer.raw.is_empty() || answer.status() == 408, "{answer:?}");
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(8), "{took:?}");

    // A kept-alive connection that sends nothing after its answer is closed at the header timeout.
    let mut c = s.connect_from(from, s.http).unwrap();
    c.write_all(b"GET /login HTTP/1.1\r\nHost: console.test\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    c.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let start = Instant::now();
    let at = wait_closed(&mut c, Duration::from_secs(8)).expect("the idle connection is closed");
    assert!(at.duration_since(start) < Duration::from_secs(4), "{:?}", at.duration_since(start));
}

#[test]
fn the_console_answers_while_the_smtp_listener_is_full() {
    let s = start("", "max_connections = 20\nmax_connections_per_ip = 50");
    let from = Ipv4Addr::new(127, 0, 0, 7);
    let mut smtp = Vec::new();
    for _ in 0..30 {
        smtp.push(s.connect_from(from, s.smtp).expect("connect to SMTP"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut greeted = 0;
    for c in smtp.iter_mut() {
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = [0u8; 3];
        if c.read_exact(&mut buf).is_ok() && &buf == b"220" {
            greeted += 1;
        }
    }
    assert!(greeted <= 20, "the SMTP cap holds ({greeted} greeted), so the SMTP side is full");
    let t = Instant::now();
    let r = s.get_from(Ipv4Addr::new(127, 0, 0, 8), "/login");
    assert_eq!(r.status(), 200, "{r:?}");
    let r = s.login_from(Ipv4Addr::new(127, 0, 0, 8), "admin", ADMIN_PW);
    assert_eq!(r.status(), 200, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn failed_logins_refuse_the_guessing_address_but_not_the_owner_elsewhere() {
    let s = start("login_attempts = 5\nlogin_account_delay_ms = 400", "");
    let guesser = Ipv4Addr::new(127, 0, 0, 2);
    let mut statuses = Vec::new();
    for i in 0..50 {
        statuses.push(s.login_from(guesser, "admin", &format!("guess-{i}")).status());
    }
    assert!(statuses[..5].iter().all(|&c| c == 401), "{statuses:?}");
    assert!(statuses[5..].iter().all(|&c| c == 429), "{statuses:?}");
    // The guessing address is refused even with the right password, and told when to come back.
    let r = s.login_from(guesser, "admin", ADMIN_PW);
    assert_eq!(r.status(), 429, "{r:?}");
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("a Retry-After header");
    assert!((1..=300).contains(&retry), "{retry}");
    assert!(!r.raw.contains(ADMIN_PW));

    // The administrator from another address gets in, after the account's small delay.
    let t = Instant::now();
    let r = s.login_from(Ipv4Addr::new(127, 0, 0, 3), "admin", ADMIN_PW);
    assert_eq!(r.status(), 200, "{r:?}");
    assert!(r.header("set-cookie").is_some_and(|c| c.starts_with("mailsift_session=")));
    assert!(t.elapsed() >= Duration::from_millis(400), "the guessed account is slowed: {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Guessing spread over many addresses (two tries each, at once) locks nobody out either.
    let handles: Vec<_> = (10..30u8)
        .map(|i| {
            let http = s.http;
            std::thread::spawn(move || {
                let from = Ipv4Addr::new(127, 0, 0, i);
                (0..2)
                    .map(|n| {
                        let body = serde_json::json!({ "name": "admin", "password": format!("spread-{i}-{n}") });
                        raw_login(from, http, &body.to_string())
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for h in handles {
        let codes = h.join().unwrap();
        assert!(codes.iter().all(|&c| c == 401), "{codes:?}");
    }
    let r = s.login_from(Ipv4Addr::new(127, 0, 0, 4), "admin", ADMIN_PW);
    assert_eq!(r.status(), 200, "{r:?}");
    // The console's form login, from yet another address, too.
    let form = format!("name=admin&password={}", encode(ADMIN_PW));
    let r = s.http_from(
        Ipv4Addr::new(127, 0, 0, 5),
        &format!(
            "POST /login HTTP/1.1\r\nHost: console.test\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(r.status(), 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/console"));
}

/// A JSON login from a loopback source address, without the runtime (for threads).
fn raw_login(from: Ipv4Addr, http: SocketAddr, body: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
        socket.connect(http).await.unwrap()
    });
    let mut s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: console.test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    Answer::read(&mut s).status()
}

/// Redirect targets that browsers would read as another site, or that are not pages of the console.
const OFF_SITE: &[&str] = &[
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r\n/evil.example/",
    "/ /evil.example/",
    "https://evil.example/",
    "http:evil.example",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/%5Cevil.example",
    "/%5cevil.example",
    "/%2F%2Fevil.example",
    "%2F%2Fevil.example",
    "/%09/evil.example",
    "/\u{ff0f}evil.example",
    "/\u{3000}/evil.example",
    "/console\\..\\..\\\\evil.example",
    "/console/..//evil.example",
    "/console//evil.example",
    "/console/%2e%2e/%2e%2e//evil.example",
    "/console/%2F%2Fevil.example",
    "/console@evil.example",
    "/console.evil.example",
    "/consolex",
    "/console#@evil.example",
    "/console/\tlog",
    "/console/log\u{0}",
    "/login",
    "/api/v1/me",
    "/d/some-token",
    "",
    "evil.example",
];

const ON_SITE: &[&str] =
    &["/console", "/console/log", "/console/log?action=quarantine&since=1h", "/console/quarantine/12", "/console?x=1"];

#[test]
fn after_login_only_console_pages_are_redirect_targets() {
    let s = start("", "");
    let from = Ipv4Addr::new(127, 0, 0, 11);
    for next in OFF_SITE.iter().chain(ON_SITE) {
        let form = format!("name=admin&password={}&next={}", encode(ADMIN_PW), encode(next));
        let r = s.http_from(
            from,
            &format!(
                "POST /login HTTP/1.1\r\nHost: console.test\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            ),
        );
        assert_eq!(r.status(), 303, "{next:?}: {r:?}");
        let location = r.header("location").unwrap_or("");
        let expected = if ON_SITE.contains(next) { *next } else { "/console" };
        assert_eq!(location, expected, "next={next:?}");
        // And as a browser reads it: the same site, a console page.
        let base = url::Url::parse("http://console.test/login").unwrap();
        let resolved = base.join(location).unwrap();
        assert_eq!(resolved.host_str(), Some("console.test"), "{next:?}");
        assert!(resolved.path().starts_with("/console"), "{next:?}");
    }

    // Console forms' `back` field is held to the same rule.
    assert_eq!(
        smtp_send(s.smtp, "alice@sender.example", &["bob@example.com"], &message("bob@example.com", "quarantineme x"))
            .unwrap()
            .0,
        250
    );
    s.web.db.flush().unwrap();
    let item = s.web.db.quarantine_list(&Default::default()).unwrap()[0].clone();
    let mut c = HttpClient::new(s.http);
    assert_eq!(c.post_form("/login", &[("name", "admin"), ("password", ADMIN_PW)]).status, 303);
    let page = c.get(&format!("/console/quarantine/{}", item.id)).text();
    let csrf = page.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = c.post_form(
        &format!("/console/quarantine/{}/delete", item.id),
        &[("_csrf", &csrf), ("back", "/\\evil.example/")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap();
    assert!(location.starts_with("/console?flash="), "{location}");
}

#[test]
fn a_server_side_failure_answers_with_a_reference_and_no_internals() {
    let s = start("", "");
    let mut c = HttpClient::new(s.http);
    let r = c.post_json("/api/v1/login", &serde_json::json!({ "name": "admin", "password": ADMIN_PW }));
    assert_eq!(r.status, 200, "{}", r.text());
    let csrf = r.json()["csrf"].as_str().unwrap().to_string();
    c.set_header("X-CSRF-Token", &csrf);
    assert_eq!(c.get("/api/v1/log").status, 200);
    assert_eq!(c.post_form("/login", &[("name", "admin"), ("password", ADMIN_PW)]).status, 303);
    // Break the database under the running gateway: the message log's table goes away.
    let path = s.dir.path().join("mailsift.sqlite");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("ALTER TABLE message_log RENAME TO message_log_gone;").unwrap();
    drop(raw);

    let dir = s.dir.path().display().to_string();
    let leaks = |body: &str| {
        let lower = body.to_ascii_lowercase();
        ["sqlite", "no such table", "message_log", "rusqlite", "/tmp", ".rs:", "panicked"]
            .iter()
            .find(|w| lower.contains(*w))
            .map(|w| w.to_string())
            .or_else(|| body.contains(&dir).then(|| dir.clone()))
    };
    let r = c.get("/api/v1/log");
    assert_eq!(r.status, 500, "{}", r.text());
    let body = r.text();
    assert_eq!(leaks(&body), None, "{body}");
    let message = r.json()["error"].as_str().unwrap().to_string();
    let reference = message
        .strip_prefix("internal error (reference ")
        .and_then(|m| m.split(';').next())
        .unwrap_or_else(|| panic!("a reference: {message}"));
    assert_eq!(reference.len(), 12, "{message}");
    assert!(reference.bytes().all(|b| b.is_ascii_hexdigit()), "{message}");
    // Each failure gets its own reference.
    let again = c.get("/api/v1/log").json()["error"].as_str().unwrap().to_string();
    assert_ne!(again, message);

    // The console's page for the same failure says as little.
    let r = c.get("/console/log");
    assert_eq!(r.status, 500);
    let body = r.text();
    assert_eq!(leaks(&body), None, "{body}");
    assert!(body.contains("internal error (reference "), "{body}");
}
