//! A gateway with its HTTP console on loopback for the console's tests: real SMTP in, a real SQLite store,
//! a sink as next hop; three accounts (an administrator, a domain administrator of other.test, and
//! bob@example.com as an end user). Included with `#[path]`.

#![allow(dead_code)]

use std::net::SocketAddr;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::{Database, Role};
use mailsift_testkit::clients::{smtp_send, HttpClient};
use mailsift_web::{AppState, Web, WebConfig};

pub struct Stack {
    _rt: tokio::runtime::Runtime,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    _sink: Sink,
    pub web: AppState,
    _dir: tempfile::TempDir,
}

pub const ADMIN_PW: &str = "admin-password-1";
pub const DA_PW: &str = "domain-admin-pw-2";
pub const BOB_PW: &str = "bob-password-333";

/// A gateway with its console: example.com and other.test, a quarantining subject word, rejects only
/// above 500 points; `extra` is more TOML appended at the end.
pub fn start_with(extra: &str) -> Stack {
    start_full("[group_caps]\ncontent = 1000.0\n\n[thresholds]\ntag = 4.0\nquarantine = 8.0\nreject = 500.0", extra)
}

/// [`start_with`], with the `[group_caps]` and `[thresholds]` tables given (`head`).
pub fn start_full(head: &str, extra: &str) -> Stack {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (smtp, http, sink, web) = rt.block_on(async {
        let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
        let hop = sink.addr();
        let text = format!(
            r#"
{head}

[[rules]]
name = "TEST_QUARANTINE_WORD"
target = "subject"
phrase = "quarantineme"
score = 11.0

[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[[smtp.domains]]
name = "other.test"
next_hop = "{hop}"

[web]
listen = "127.0.0.1:0"

[web.digest]
enabled = false
{extra}
"#
        );
        let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
        let config = SmtpConfig::from_toml(&text).unwrap();
        let web_config = WebConfig::from_toml(&text).unwrap();
        let learner =
            mailsift_store::Learner::open(mailsift_store::SqliteStore::open_dir(dir.path()).unwrap()).unwrap();
        let engine = engine.with_model(learner.model());
        let state = GatewayState::new(engine, config, dir.path()).unwrap().with_learner(learner);
        let db = Database::open_in(dir.path()).unwrap();
        let now = mailsift_engine::unix_now();
        for (name, role, domains, pw) in [
            ("admin", Role::Admin, vec![], ADMIN_PW),
            ("da", Role::DomainAdmin, vec!["other.test".to_string()], DA_PW),
            ("bob@example.com", Role::User, vec![], BOB_PW),
        ] {
            db.account_add(name, role, &domains, &mailsift_web::auth::hash_password(pw).unwrap(), now).unwrap();
        }
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
    Stack { _rt: rt, smtp, http, _sink: sink, web, _dir: dir }
}

pub fn start() -> Stack {
    start_with("")
}

/// A console session (form login), its CSRF token read from a page.
pub fn login(s: &Stack, name: &str, password: &str) -> (HttpClient, String) {
    let mut c = HttpClient::new(s.http);
    let r = c.post_form("/login", &[("name", name), ("password", password)]);
    assert_eq!(r.status, 303, "{name} logs in: {}", r.text());
    let page = c.get("/console/quarantine").text();
    let csrf = page
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF field on the page")
        .to_string();
    (c, csrf)
}

/// Sends a message over SMTP; returns the reply code.
pub fn send(s: &Stack, from: &str, to: &str, message: &str) -> u16 {
    smtp_send(s.smtp, from, &[to], message.as_bytes()).unwrap().0
}
