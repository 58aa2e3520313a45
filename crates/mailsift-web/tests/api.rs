//! The HTTP API and console over real HTTP on loopback, in front of a real gateway: mail goes in over SMTP,
//! lands in the real SQLite message log and quarantine, and releases and digests come out at a real SMTP
//! next hop (our sink). Every endpoint is called, and so is every refusal: no session, no CSRF token,
//! another domain, an end user reaching for someone else's mail, tampered and expired tokens, bad input.

use std::net::SocketAddr;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::{Database, PolicyStore, Role};
use mailsift_testkit::clients::{smtp_send, HttpClient};
use mailsift_web::tokens::{Claims, Purpose, Signer};
use mailsift_web::{AppState, Web, WebConfig};
use serde_json::json;

struct Stack {
    _rt: tokio::runtime::Runtime,
    smtp: SocketAddr,
    http: SocketAddr,
    sink: Sink,
    web: AppState,
    dir: tempfile::TempDir,
}

const ADMIN_PW: &str = "admin-password-1";
const DA_PW: &str = "domain-admin-pw-2";
const BOB_PW: &str = "bob-password-333";

fn start() -> Stack {
    start_with("")
}

fn start_with(web_extra: &str) -> Stack {
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

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[[smtp.domains]]
name = "other.test"
next_hop = "{hop}"

[web]
listen = "127.0.0.1:0"
login_attempts = 3
{web_extra}

[web.digest]
enabled = false
"#
        );
        let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
        let config = SmtpConfig::from_toml(&text).unwrap();
        let web_config = WebConfig::from_toml(&text).unwrap();
        // The classifiers' learner and local reputation, as `mailsift serve` builds them.
        let learner =
            mailsift_store::Learner::open(mailsift_store::SqliteStore::open_dir(dir.path()).unwrap()).unwrap();
        let engine = engine.with_model(learner.model());
        let reputation = mailsift_store::SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
        let state =
            GatewayState::new(engine, config, dir.path()).unwrap().with_learner(learner).with_reputation(reputation);
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
    Stack { _rt: rt, smtp, http, sink, web, dir }
}

fn message(to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@sender.example>\r\nTo: {to}\r\nSubject: {subject}\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}.{}@sender.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.replace(' ', "."),
        to.replace('@', ".")
    )
    .into_bytes()
}

impl Stack {
    fn client(&self) -> HttpClient {
        HttpClient::new(self.http)
    }

    /// A logged-in client with its CSRF header set.
    fn login(&self, name: &str, password: &str) -> HttpClient {
        let mut c = self.client();
        let r = c.post_json("/api/v1/login", &json!({ "name": name, "password": password }));
        assert_eq!(r.status, 200, "{}", r.text());
        let csrf = r.json()["csrf"].as_str().unwrap().to_string();
        c.set_header("X-CSRF-Token", &csrf);
        c
    }

    fn send(&self, to: &str, subject: &str) -> (u16, String) {
        smtp_send(self.smtp, "alice@sender.example", &[to], &message(to, subject, "Hello there, see you at lunch."))
            .unwrap()
    }

    /// Waits for the log writer's batch to land.
    fn flush(&self) {
        self.web.db.flush().unwrap();
    }

    fn quarantined(&self) -> Vec<mailsift_store::QuarantineItem> {
        self.web.db.quarantine_list(&Default::default()).unwrap()
    }

    fn delivered_to(&self, rcpt: &str) -> Vec<Vec<u8>> {
        self.sink.messages().into_iter().filter(|m| m.rcpts.iter().any(|r| r == rcpt)).map(|m| m.data).collect()
    }
}

#[test]
fn without_a_session_or_with_bad_credentials_nothing_is_served() {
    let s = start();
    let mut c = s.client();
    for path in ["/api/v1/log", "/api/v1/quarantine", "/api/v1/rules", "/api/v1/stats", "/api/v1/me"] {
        assert_eq!(c.get(path).status, 401, "{path}");
    }
    assert_eq!(c.post_json("/api/v1/quarantine/1/release", &json!({})).status, 401);
    // The console sends people to the login page instead.
    let r = c.get("/console/log");
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().starts_with("/login?next="), "{:?}", r.header("location"));
    // A wrong password, an unknown account: the same answer.
    let wrong = c.post_json("/api/v1/login", &json!({ "name": "admin", "password": "nope" }));
    let unknown = c.post_json("/api/v1/login", &json!({ "name": "nobody", "password": "nope" }));
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.json(), unknown.json());
    // A third failure for the name uses up the attempts: even the right password waits now.
    c.post_json("/api/v1/login", &json!({ "name": "admin", "password": "nope again" }));
    let r = c.post_json("/api/v1/login", &json!({ "name": "admin", "password": ADMIN_PW }));
    assert_eq!(r.status, 429, "{}", r.text());
    // A forged session cookie is not a session.
    let mut forged = s.client();
    forged.cookies.push(("mailsift_session".into(), "made-up".into()));
    assert_eq!(forged.get("/api/v1/me").status, 401);
    // Bad JSON is a clear 4xx, not a crash.
    let r = s.client().request("POST", "/api/v1/login", Some("application/json"), b"{not json");
    assert!(r.status == 400 || r.status == 422, "{}", r.status);
}

#[test]
fn a_session_needs_its_csrf_token_for_changes_and_logout_ends_it() {
    let s = start();
    let mut c = s.login("admin", ADMIN_PW);
    let me = c.get("/api/v1/me").json();
    assert_eq!(me["role"], "admin");
    let cookie = c.get("/api/v1/me");
    assert_eq!(cookie.status, 200);
    // Without the header (what a cross-site form would send), a change is refused.
    let mut no_csrf = c.clone();
    no_csrf.headers.clear();
    let r = no_csrf.post_json("/api/v1/lists", &json!({ "list": "block", "entry": { "sender": "x@spam.example" } }));
    assert_eq!(r.status, 403, "{}", r.text());
    let r = c.post_json("/api/v1/lists", &json!({ "list": "block", "entry": { "sender": "x@spam.example" } }));
    assert_eq!(r.status, 201, "{}", r.text());
    // The session cookie is HttpOnly and SameSite=Strict.
    let mut fresh = s.client();
    let r = fresh.post_json("/api/v1/login", &json!({ "name": "admin", "password": ADMIN_PW }));
    let set = r.header("set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    assert_eq!(c.post_json("/api/v1/logout", &json!({})).status, 204);
    assert_eq!(c.get("/api/v1/me").status, 401);
    // Pages carry the security headers.
    let r = s.client().get("/login");
    assert!(r.header("content-security-policy").unwrap().contains("default-src 'none'"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
}

#[test]
fn the_log_and_quarantine_are_searched_scoped_and_acted_on() {
    let s = start();
    assert_eq!(s.send("bob@example.com", "lunch plans").0, 250);
    assert_eq!(s.send("bob@example.com", "quarantineme offer").0, 250);
    assert_eq!(s.send("carol@example.com", "quarantineme again").0, 250);
    assert_eq!(s.send("dan@other.test", "quarantineme other").0, 250);
    s.flush();
    let mut admin = s.login("admin", ADMIN_PW);

    // Search with filters.
    let all = admin.get("/api/v1/log").json();
    assert_eq!(all["entries"].as_array().unwrap().len(), 4, "{all}");
    let q = admin.get("/api/v1/log?action=quarantine&recipient=example.com").json();
    let entries = q["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{q}");
    assert!(entries.iter().all(|e| e["action"] == "quarantine"));
    let by_symbol = admin.get("/api/v1/log?symbol=TEST_QUARANTINE_WORD&since=1h").json();
    assert_eq!(by_symbol["entries"].as_array().unwrap().len(), 3);
    assert_eq!(admin.get("/api/v1/log?since=yesterday").status, 400);
    let paged = admin.get("/api/v1/log?limit=1&offset=1").json();
    assert_eq!(paged["entries"].as_array().unwrap().len(), 1);
    assert_ne!(paged["entries"][0]["reference_id"], all["entries"][0]["reference_id"]);

    // Detail: symbols grouped by engine with description and remedy, and the quarantined copy.
    let reference = entries[0]["reference_id"].as_str().unwrap().to_string();
    let d = admin.get(&format!("/api/v1/log/{reference}")).json();
    let groups = d["groups"].as_array().unwrap();
    let sym =
        groups.iter().flat_map(|g| g["symbols"].as_array().unwrap()).find(|x| x["name"] == "TEST_QUARANTINE_WORD");
    assert!(sym.is_some(), "{d}");
    assert_eq!(d["quarantine"].as_array().unwrap().len(), 1, "{d}");
    assert!(d["entry"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "the log says why: {d}");
    assert_eq!(admin.get("/api/v1/log/no-such-ref").status, 404);

    // A domain administrator sees their domain only, and nothing of the others.
    let mut da = s.login("da", DA_PW);
    let theirs = da.get("/api/v1/log").json();
    let theirs = theirs["entries"].as_array().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["recipients"][0], "dan@other.test");
    assert_eq!(da.get(&format!("/api/v1/log/{reference}")).status, 404);
    let dq = da.get("/api/v1/quarantine").json();
    assert_eq!(dq.as_array().unwrap().len(), 1);
    let carol_item = s.quarantined().into_iter().find(|i| i.recipient == "carol@example.com").unwrap();
    assert_eq!(da.post_json(&format!("/api/v1/quarantine/{}/release", carol_item.id), &json!({})).status, 404);
    assert_eq!(da.get("/api/v1/rules").status, 403);

    // An end user: their own quarantine only, and no log.
    let mut bob = s.login("bob@example.com", BOB_PW);
    assert_eq!(bob.get("/api/v1/log").status, 403);
    let mine = bob.get("/api/v1/quarantine").json();
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["recipient"], "bob@example.com");
    assert_eq!(bob.get(&format!("/api/v1/quarantine/{}", carol_item.id)).status, 404);
    assert_eq!(bob.delete(&format!("/api/v1/quarantine/{}", carol_item.id)).status, 404);

    // Preview: text only.
    let bob_id = mine[0]["id"].as_i64().unwrap();
    let p = bob.get(&format!("/api/v1/quarantine/{bob_id}")).json();
    assert!(p["text"].as_str().unwrap().contains("see you at lunch"), "{p}");
    assert!(p["headers"].as_array().unwrap().iter().any(|h| h[0] == "Subject"));

    // Release: exactly once, and it arrives at the next hop.
    let before = s.delivered_to("bob@example.com").len();
    let r = bob.post_json(&format!("/api/v1/quarantine/{bob_id}/release"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let again = bob.post_json(&format!("/api/v1/quarantine/{bob_id}/release"), &json!({}));
    assert_eq!(again.status, 409, "{}", again.text());
    let arrived = s.delivered_to("bob@example.com");
    assert_eq!(arrived.len(), before + 1);
    assert!(String::from_utf8_lossy(arrived.last().unwrap()).contains("X-Mailsift-Released: from quarantine item"));

    // Approve: released, and the sender is now on carol's own allow list.
    let r = admin.post_json(&format!("/api/v1/quarantine/{}/approve", carol_item.id), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let lists = admin.get("/api/v1/lists").json();
    assert!(
        lists
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry"]["entry"]["recipient"] == "carol@example.com" && e["entry"]["list"] == "allow"),
        "{lists}"
    );
    assert_eq!(s.delivered_to("carol@example.com").len(), 1);

    // Bulk and delete: one unknown id fails on its own.
    let dan = s.quarantined().into_iter().find(|i| i.recipient == "dan@other.test").unwrap();
    let r = admin.post_json("/api/v1/quarantine/bulk", &json!({ "ids": [dan.id, 999_999], "action": "delete" })).json();
    assert_eq!(r["done"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["failed"].as_array().unwrap().len(), 1, "{r}");
    assert!(s.web.db.quarantine_get(dan.id).unwrap().is_none());
    assert_eq!(admin.post_json("/api/v1/quarantine/bulk", &json!({ "ids": [1], "action": "explode" })).status, 400);
}

#[test]
fn policy_domains_and_scans_through_the_api() {
    let s = start();
    let mut admin = s.login("admin", ADMIN_PW);
    // A rule, checked by the engine before it is stored.
    let bad = admin.post_json("/api/v1/rules", &json!({ "name": "broken", "conditions": [], "actions": [] }));
    assert_eq!(bad.status, 400, "{}", bad.text());
    let rule = json!({
        "name": "web forms",
        "conditions": [{ "field": "envelope_from", "op": "is", "value": "forms@example.com" }],
        "actions": [{ "action": "allow" }]
    });
    assert_eq!(admin.post_json("/api/v1/rules", &rule).status, 201);
    let second = json!({
        "name": "newsletter",
        "conditions": [{ "field": "header", "header": "X-Campaign", "op": "exists" }],
        "actions": [{ "action": "quarantine" }]
    });
    let r = admin.post_json("/api/v1/rules", &second);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(admin.get("/api/v1/rules/web%20forms").json()["position"], 0);
    assert_eq!(admin.post_json("/api/v1/rules/newsletter/move", &json!({ "to": 0 })).status, 200);
    let rules = admin.get("/api/v1/rules").json();
    assert_eq!(rules[0]["rule"]["name"], "newsletter");
    assert_eq!(admin.get("/api/v1/rules/nothing").status, 404);

    // Test a message against the policy.
    let msg = "From: forms@example.com\r\nTo: bob@example.com\r\nSubject: contact form\r\n\r\nHello\r\n";
    let r = admin.post_bytes(
        "/api/v1/rules/test?mail_from=forms%40example.com&rcpt=bob%40example.com&ip=127.0.0.9",
        "message/rfc822",
        msg.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json();
    assert_eq!(t["matched_rules"], json!(["web forms"]), "{t}");
    assert_eq!(admin.post_bytes("/api/v1/rules/test", "message/rfc822", b"").status, 400);
    // Replacing a rule with one named like another is refused; a rename is fine.
    assert_eq!(admin.put_json("/api/v1/rules/newsletter", &rule).status, 400);
    let mut renamed = second.clone();
    renamed["name"] = json!("newsletter v2");
    assert_eq!(admin.put_json("/api/v1/rules/newsletter", &renamed).status, 200);
    assert_eq!(admin.get("/api/v1/rules/newsletter%20v2").json()["position"], 0);
    assert_eq!(admin.delete("/api/v1/rules/web%20forms").status, 200);

    // Scan: the verdict with symbols, headers and explanation; GTUBE is spam.
    let gtube = "Subject: test\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";
    let r = admin.post_bytes("/api/v1/scan?rcpt=bob%40example.com", "message/rfc822", gtube.as_bytes()).json();
    assert_ne!(r["verdict"]["action"], "deliver", "{r}");
    assert!(r["explanation"].as_str().unwrap().contains("GTUBE"), "{r}");
    assert!(r["headers"].as_array().unwrap().iter().any(|h| h[0] == "X-Mailsift-Score"));
    assert_eq!(admin.post_bytes("/api/v1/scan?ip=not-an-ip", "message/rfc822", b"Subject: x\r\n\r\nx").status, 400);

    // Lists: a domain administrator adds for their domain, not for others or the organisation.
    let mut da = s.login("da", DA_PW);
    let ok = da.post_json(
        "/api/v1/lists",
        &json!({ "list": "allow", "entry": { "sender": "p@partner.example", "recipient": "other.test" } }),
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
    let org = da.post_json("/api/v1/lists", &json!({ "list": "allow", "entry": { "sender": "p@partner.example" } }));
    assert_eq!(org.status, 403);
    let foreign = da.post_json(
        "/api/v1/lists",
        &json!({ "list": "block", "entry": { "sender": "p@x.example", "recipient": "example.com" } }),
    );
    assert_eq!(foreign.status, 403);
    assert_eq!(da.post_json("/api/v1/lists", &json!({ "list": "maybe", "entry": {} })).status, 400);
    let id = ok.json()["id"].as_i64().unwrap();
    assert_eq!(da.get("/api/v1/lists").json().as_array().unwrap().len(), 1);
    assert_eq!(da.delete(&format!("/api/v1/lists/{id}")).status, 200);

    // Domains: sending servers and thresholds; invalid settings name the field.
    let r = da.put_json("/api/v1/domains/other.test", &json!({ "next_hop": s.sink.addr().to_string(), "sending_servers": ["192.0.2.10"], "thresholds": { "tag": 4.0, "quarantine": 8.0, "reject": 20.0 } }));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = da.get("/api/v1/domains/other.test").json();
    assert_eq!(got["settings"]["sending_servers"], json!(["192.0.2.10"]));
    assert_eq!(got["source"], "stored");
    assert_eq!(da.put_json("/api/v1/domains/example.com", &json!({})).status, 403);
    assert_eq!(da.get("/api/v1/domains/example.com").status, 404);
    let bad = admin.put_json("/api/v1/domains/third.test", &json!({ "sending_servers": ["not an address"] }));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(admin.get("/api/v1/domains").json().as_array().unwrap().len(), 2);
    assert_eq!(da.delete("/api/v1/domains/other.test").status, 403);

    // ASF options and the symbol registry.
    let asf = admin.get("/api/v1/asf").json();
    let asf = asf.as_array().unwrap();
    assert_eq!(asf.len(), 15, "every option, once: {asf:?}");
    assert!(asf.iter().all(|o| o["mode"] == "off" && !o["description"].as_str().unwrap().is_empty()), "{asf:?}");
    assert!(asf.iter().any(|o| o["name"] == "sensitive_word_list" && o["symbol"] == "ASF_SENSITIVE_WORDS"));
    let symbols = admin.get("/api/v1/symbols").json();
    assert!(symbols
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "GTUBE" && !x["remedy"].as_str().unwrap().is_empty()));
}

#[test]
fn reports_reputation_stats_metrics_accounts_and_the_openapi_document() {
    let s = start();
    assert_eq!(s.send("bob@example.com", "quarantineme please").0, 250);
    assert_eq!(s.send("bob@example.com", "hello").0, 250);
    s.flush();
    let mut admin = s.login("admin", ADMIN_PW);
    let item = s.quarantined()[0].clone();

    // A false-positive report of a quarantined copy by its recipient.
    let mut bob = s.login("bob@example.com", BOB_PW);
    let r = bob.post_json("/api/v1/reports", &json!({ "kind": "false_positive", "quarantine_id": item.id }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["result"].as_str().unwrap().contains("ham"), "{}", r.text());
    // End users cannot post arbitrary messages to train on.
    assert_eq!(
        bob.post_json("/api/v1/reports", &json!({ "kind": "false_negative", "message": "Subject: x\r\n\r\ny" })).status,
        403
    );
    assert_eq!(bob.post_json("/api/v1/reports", &json!({ "kind": "sideways", "quarantine_id": item.id })).status, 400);
    let summary = admin.get("/api/v1/reports/summary").json();
    assert!(summary["by_channel"]["web ham"].as_u64().unwrap() >= 1, "{summary}");

    // Reputation of the loopback client the mail came from.
    let rep = admin.get("/api/v1/reputation/127.0.0.1");
    assert_eq!(rep.status, 200, "{}", rep.text());

    // Statistics for the dashboard.
    let st = admin.get("/api/v1/stats").json();
    let hourly: u64 = st["hourly"].as_array().unwrap().iter().map(|h| h["count"].as_u64().unwrap()).sum();
    assert_eq!(hourly, 2, "{st}");
    assert_eq!(st["quarantine_held"], 1);
    assert!(st["top_symbols"].as_array().unwrap().iter().any(|t| t[0] == "TEST_QUARANTINE_WORD"), "{st}");

    // Metrics: from loopback, in Prometheus' text format.
    let m = s.client().get("/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(text.contains("mailsift_messages_total{action=\"quarantine\"} 1"), "{text}");
    assert!(text.contains("mailsift_messages_total{action=\"deliver\"} 1"), "{text}");
    assert!(text.contains("mailsift_scan_latency_seconds_count 2"), "{text}");
    // Where the time went, per stage: both messages were judged, carried out and logged; DNS is off here,
    // so no evidence stage was timed.
    for stage in ["judge_wait", "judge", "disposition", "log_commit"] {
        assert!(text.contains(&format!("mailsift_stage_seconds_count{{stage=\"{stage}\"}} 2")), "{stage}: {text}");
    }
    assert!(text.contains("mailsift_stage_seconds_count{stage=\"evidence\"} 0"), "{text}");
    assert!(text.contains("mailsift_quarantine_held 1"));
    assert!(text.contains("mailsift_dns_timeouts_total"));

    // Accounts and API tokens.
    assert_eq!(
        admin.post_json("/api/v1/accounts", &json!({ "name": "eve", "role": "admin", "password": "short" })).status,
        400
    );
    assert_eq!(
        admin
            .post_json("/api/v1/accounts", &json!({ "name": "eve", "role": "god", "password": "long enough pw" }))
            .status,
        400
    );
    let r = admin.post_json(
        "/api/v1/accounts",
        &json!({ "name": "carol", "role": "domain_admin", "domains": ["example.com"], "password": "carol-password-1" }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(bob.get("/api/v1/accounts").status, 403);
    let token = admin.post_json("/api/v1/token", &json!({ "days": 1 })).json()["token"].as_str().unwrap().to_string();
    let mut script = s.client().with_header("Authorization", &format!("Bearer {token}"));
    assert_eq!(script.get("/api/v1/me").json()["name"], "admin");
    // A bearer token needs no CSRF header (browsers never send it on their own).
    assert_eq!(
        script.post_json("/api/v1/lists", &json!({ "list": "block", "entry": { "sender": "z@spam.example" } })).status,
        201
    );
    let mut tampered = s.client().with_header("Authorization", &format!("Bearer {}x", token));
    assert_eq!(tampered.get("/api/v1/me").status, 401);
    // A digest link's token is not an API token.
    let link =
        s.web.signer.sign(&Claims { purpose: Purpose::Release, id: 1, subject: "admin".into(), expires: i64::MAX });
    assert_eq!(s.client().with_header("Authorization", &format!("Bearer {link}")).get("/api/v1/me").status, 401);
    assert_eq!(admin.delete("/api/v1/accounts/carol").status, 200);
    assert_eq!(admin.delete("/api/v1/accounts/carol").status, 404);

    // The OpenAPI document lists every API route the server answers.
    let doc = s.client().get("/api/v1/openapi.json").json();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/login",
        "/api/v1/scan",
        "/api/v1/log",
        "/api/v1/log/{reference}",
        "/api/v1/quarantine",
        "/api/v1/quarantine/{id}",
        "/api/v1/quarantine/{id}/release",
        "/api/v1/quarantine/{id}/approve",
        "/api/v1/quarantine/bulk",
        "/api/v1/rules",
        "/api/v1/rules/{name}",
        "/api/v1/rules/{name}/move",
        "/api/v1/rules/test",
        "/api/v1/rule-fields",
        "/api/v1/lists",
        "/api/v1/lists/{id}",
        "/api/v1/domains",
        "/api/v1/domains/{name}",
        "/api/v1/asf",
        "/api/v1/senders",
        "/api/v1/senders/{domain}",
        "/api/v1/symbols",
        "/api/v1/reports",
        "/api/v1/reports/summary",
        "/api/v1/reputation/{key}",
        "/api/v1/stats",
        "/api/v1/accounts",
        "/api/v1/token",
        "/api/v1/digest/send",
        "/api/v1/held-accounts",
        "/api/v1/held-accounts/{user}/release",
        "/api/v1/dkim",
        "/api/v1/dmarc/received",
        "/api/v1/queue",
        "/api/v1/queue/{id}",
        "/api/v1/queue/{id}/retry",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert_eq!(paths.len(), 43, "{:?}", paths.keys().collect::<Vec<_>>());
}

/// The links in the digest addressed to `rcpt` at the next hop, in order (release, approve, block per item,
/// then the quarantine link).
fn digest_links(s: &Stack, rcpt: &str) -> Vec<String> {
    use base64::Engine as _;
    let digests: Vec<Vec<u8>> = s
        .delivered_to(rcpt)
        .into_iter()
        .filter(|m| String::from_utf8_lossy(m).contains("Subject: Quarantine digest"))
        .collect();
    assert_eq!(digests.len(), 1, "one digest for {rcpt}");
    let text = String::from_utf8_lossy(&digests[0]).into_owned();
    let part = text.split("Content-Transfer-Encoding: base64\r\n\r\n").nth(1).unwrap();
    let b64: String = part.split("\r\n--").next().unwrap().split_whitespace().collect();
    let plain = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
    plain.split_whitespace().filter(|w| w.starts_with("http://")).map(|w| w.to_string()).collect()
}

#[test]
fn the_digest_lists_new_mail_and_its_links_act_once_and_only_as_signed() {
    let s = start();
    assert_eq!(s.send("bob@example.com", "quarantineme one").0, 250);
    assert_eq!(s.send("bob@example.com", "quarantineme two").0, 250);
    assert_eq!(s.send("carol@example.com", "quarantineme three").0, 250);
    s.flush();
    let mut admin = s.login("admin", ADMIN_PW);
    let run = admin.post_json("/api/v1/digest/send", &json!({})).json();
    assert_eq!(run["sent"].as_array().unwrap().len(), 2, "{run}");
    assert_eq!(run["items"], 3);
    // Nothing new: nobody gets a second digest.
    let again = admin.post_json("/api/v1/digest/send", &json!({})).json();
    assert_eq!(again["items"], 0, "{again}");

    let links = digest_links(&s, "bob@example.com");
    assert_eq!(links.len(), 2 * 3 + 1, "{links:?}");
    let path = |l: &str| l.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    let release = path(&links[0]);
    // Opening the link changes nothing; it asks.
    let mut browser = s.client();
    let page = browser.get(&release);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"confirm\""), "{}", page.text());
    let held_before = s.quarantined().iter().filter(|i| i.released_at.is_none()).count();
    assert_eq!(held_before, 3);
    // The button releases, once.
    let before = s.delivered_to("bob@example.com").len();
    let done = browser.post_form(&release, &[]);
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(s.delivered_to("bob@example.com").len(), before + 1);
    let twice = browser.post_form(&release, &[]);
    assert_eq!(twice.status, 409, "{}", twice.text());
    assert_eq!(s.delivered_to("bob@example.com").len(), before + 1);

    // Tampered: another item id in the payload with the old signature.
    let token = release.trim_start_matches("/d/");
    let mut parts: Vec<&str> = token.split('.').collect();
    use base64::Engine as _;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["i"] = json!(claims["i"].as_i64().unwrap() + 2);
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    parts[1] = &forged;
    let r = s.client().post_form(&format!("/d/{}", parts.join(".")), &[]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("changed"), "{}", r.text());
    // Expired: signed with the installation's key, but yesterday.
    let signer = Signer::load_or_create(s.dir.path()).unwrap();
    let item =
        s.quarantined().into_iter().find(|i| i.recipient == "bob@example.com" && i.released_at.is_none()).unwrap();
    let old = signer.sign(&Claims {
        purpose: Purpose::Release,
        id: item.id,
        subject: "bob@example.com".into(),
        expires: mailsift_engine::unix_now() - 86_400,
    });
    let r = s.client().post_form(&format!("/d/{old}"), &[]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("expired"), "{}", r.text());
    // Bob's valid link cannot act on carol's message.
    let carol = s.quarantined().into_iter().find(|i| i.recipient == "carol@example.com").unwrap();
    let cross = signer.sign(&Claims {
        purpose: Purpose::Release,
        id: carol.id,
        subject: "bob@example.com".into(),
        expires: i64::MAX,
    });
    assert_eq!(s.client().post_form(&format!("/d/{cross}"), &[]).status, 404);
    assert!(s.web.db.quarantine_get(carol.id).unwrap().unwrap().released_at.is_none());
    assert_eq!(s.client().get("/d/garbage").status, 403);

    // Block: the sender goes on bob's block list and the copy is deleted.
    let block = path(&links[5]);
    let blocked_id = item.id;
    let r = s.client().post_form(&block, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.web.db.quarantine_get(blocked_id).unwrap().is_none());
    let lists = admin.get("/api/v1/lists").json();
    assert!(
        lists
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry"]["list"] == "block" && e["entry"]["entry"]["recipient"] == "bob@example.com"),
        "{lists}"
    );

    // The quarantine link opens bob's own quarantine (a session limited to it): a page that sets the session
    // and moves on to the quarantine by itself (a redirect would lose the SameSite=Strict cookie when the
    // link is clicked in webmail on another site; browser.rs clicks it there).
    let mut user = s.client();
    let r = user.get(&path(links.last().unwrap()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("SameSite=Strict")), "no session cookie");
    let page = r.text().replace("&#x2f;", "/");
    assert!(page.contains(r#"<meta http-equiv="refresh" content="0; url=/console/quarantine">"#), "{page}");
    let page = user.get("/console/quarantine");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("bob@example.com") && !page.text().contains("carol@example.com"));
    assert_eq!(user.get("/console/log").status, 403);
    assert_eq!(user.get("/api/v1/log").status, 403);
}

#[test]
fn console_pages_render_and_forms_need_the_csrf_field() {
    let s = start();
    assert_eq!(s.send("bob@example.com", "quarantineme console").0, 250);
    assert_eq!(s.send("bob@example.com", "<script>alert(1)</script> hello").0, 250);
    s.flush();
    let mut c = s.client();
    let r = c.post_form("/login", &[("name", "admin"), ("password", ADMIN_PW), ("next", "/console/log")]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/console/log"));
    for path in ["/console", "/console/log", "/console/quarantine", "/console/policy", "/console/log?action=quarantine"]
    {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let log = c.get("/console/log").text();
    assert!(log.contains("&lt;script&gt;alert(1)&lt;"), "subjects are escaped");
    assert!(!log.contains("<script>alert"));
    let dash = c.get("/console").text();
    assert!(dash.contains("<svg") && dash.contains("Messages per hour"));
    let item = s.quarantined()[0].clone();
    let page = c.get(&format!("/console/quarantine/{}", item.id)).text();
    let csrf = page.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    // A form without the token (a cross-site post) is refused and changes nothing.
    let r = c.post_form(&format!("/console/quarantine/{}/release", item.id), &[]);
    assert_eq!(r.status, 403);
    assert!(s.web.db.quarantine_get(item.id).unwrap().unwrap().released_at.is_none());
    let r = c.post_form(&format!("/console/quarantine/{}/release", item.id), &[("_csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(s.web.db.quarantine_get(item.id).unwrap().unwrap().released_at.is_some());
    // The rule test box.
    let msg = "From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n";
    let r = c.post_form("/console/policy/test", &[("_csrf", &csrf), ("message", msg), ("rcpt", "bob@example.com")]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("id=\"test-result\""), "{}", r.text());
    // Adding a rule that does not read shows why.
    let r = c.post_form("/console/policy/rules/add", &[("_csrf", &csrf), ("rule", "name = ")]);
    assert!(r.text().contains("does not read"), "{}", r.text());
}

#[test]
fn the_console_can_be_served_over_https() {
    let s = start_with("tls = true");
    // A real TLS client (Python's ssl module; the certificate is the self-signed one made in the data dir).
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import ssl, sys, urllib.request\n\
             ctx = ssl._create_unverified_context()\n\
             r = urllib.request.urlopen('https://' + sys.argv[1] + '/login', context=ctx)\n\
             print(r.status, r.read().decode().count('id=\"login\"'))",
        )
        .arg(s.http.to_string())
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200 1", "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.dir.path().join("tls").exists(), "the self-signed pair is kept in the data directory");
    // Plain HTTP to the HTTPS port gets nothing served.
    let addr = s.http;
    let plain = std::panic::catch_unwind(move || HttpClient::new(addr).get("/login").status);
    assert!(plain.map(|st| st != 200).unwrap_or(true));
}

#[test]
fn diagnosis_of_a_web_form_proposes_the_sending_server_and_applying_it_lets_only_that_server_through() {
    let s = start();
    let mut admin = s.login("admin", ADMIN_PW);
    // Protect example.com: only 192.0.2.0/24 may send as it.
    let r = admin.put_json(
        "/api/v1/domains/example.com",
        &json!({ "next_hop": s.sink.addr().to_string(), "sending_servers": ["192.0.2.0/24"] }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let form = "From: forms@example.com\r\nTo: staff@example.com\r\nSubject: Contact form: new enquiry\r\n\
Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nMessage-ID: <f1@web01.hosting.example>\r\n\r\nName: Jo\r\nMessage: please call me back\r\n";
    let q = "?ip=203.0.113.5&helo=web01.hosting.example&mail_from=forms%40example.com&rcpt=staff%40example.com";
    let r = admin.post_bytes(&format!("/api/v1/diagnose{q}"), "message/rfc822", form.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    assert_eq!(d["diagnosis"]["category"], "policy", "{d}");
    assert_eq!(d["diagnosis"]["cause"], "web_application", "{d}");
    assert!(d["text"].as_str().unwrap().contains("203.0.113.5"), "{d}");
    // The narrowest fix (a rule on the address from that server) comes first; the sending server follows.
    let fix = d["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fix"]["change"]["kind"] == "add_sending_server")
        .unwrap_or_else(|| panic!("no sending-server fix: {d}"));
    assert_eq!(
        fix["fix"]["change"],
        json!({ "kind": "add_sending_server", "domain": "example.com", "server": "203.0.113.5" })
    );
    assert_eq!(fix["with_fix"]["action"], "deliver", "{d}");
    // Only administrators diagnose and apply.
    let mut bob = s.login("bob@example.com", BOB_PW);
    assert_eq!(bob.post_bytes(&format!("/api/v1/diagnose{q}"), "message/rfc822", form.as_bytes()).status, 403);
    assert_eq!(bob.post_json("/api/v1/diagnosis/apply", &json!({ "change": fix["fix"]["change"] })).status, 403);
    let r = admin.post_json("/api/v1/diagnosis/apply", &json!({ "change": fix["fix"]["change"] }));
    assert_eq!(r.status, 200, "{}", r.text());
    let dom = admin.get("/api/v1/domains/example.com").json();
    assert_eq!(dom["settings"]["sending_servers"], json!(["192.0.2.0/24", "203.0.113.5"]));
    assert!(dom["settings"]["next_hop"].is_string(), "the rest of the domain's settings are kept");
    // The form now passes; the same message from anywhere else is still caught as spoofing.
    let scan = |c: &mut HttpClient, ip: &str| {
        let q = format!("?ip={ip}&mail_from=forms%40example.com&rcpt=staff%40example.com");
        c.post_bytes(&format!("/api/v1/scan{q}"), "message/rfc822", form.as_bytes()).json()
    };
    let ok = scan(&mut admin, "203.0.113.5");
    assert_eq!(ok["verdict"]["action"], "deliver", "{ok}");
    let spoofed = scan(&mut admin, "198.51.100.9");
    assert!(
        spoofed["verdict"]["symbols"].as_array().unwrap().iter().any(|x| x["name"] == "SPOOF_OWN_DOMAIN"),
        "{spoofed}"
    );
    assert_ne!(spoofed["verdict"]["action"], "deliver");
}

#[test]
fn a_quarantined_message_is_diagnosed_on_its_page_and_over_the_api_with_a_replay() {
    let s = start();
    assert_eq!(s.send("bob@example.com", "quarantineme newsletter").0, 250);
    s.flush();
    let mut admin = s.login("admin", ADMIN_PW);
    let item = s.quarantined()[0].clone();
    let r = admin.get(&format!("/api/v1/quarantine/{}/diagnosis?replay_days=7", item.id));
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    // A configured phrase rule is content evidence. Retraining would not make this message pass (the
    // heuristics' score stays), so the report is advice, not a fix; every fix offered lets it through.
    assert_eq!(d["diagnosis"]["category"], "content", "{d}");
    assert!(d.to_string().to_lowercase().contains("report it"), "the report is advised: {d}");
    let fixes = d["fixes"].as_array().unwrap();
    assert!(fixes.iter().all(|f| f["fix"]["change"]["kind"] != "report"), "{d}");
    assert!(fixes.iter().all(|f| f["with_fix"]["action"] == "deliver"), "{d}");
    assert!(d["fixes"].as_array().unwrap().iter().all(|f| f["replay"].is_object()), "{d}");
    assert_eq!(admin.get(&format!("/api/v1/quarantine/{}/diagnosis?replay_days=0", item.id)).status, 400);
    let by_log = admin.get(&format!("/api/v1/log/{}/diagnosis", item.reference_id)).json();
    assert_eq!(by_log["diagnosis"]["category"], "content");
    // Our own configured rule added 11 of its points: the summary says so, not "the classifiers".
    let summary = by_log["diagnosis"]["summary"].as_str().unwrap();
    assert!(summary.contains("mostly by your own configured rules"), "{summary}");
    // The console's message page shows it.
    let mut c = s.client();
    c.post_form("/login", &[("name", "admin"), ("password", ADMIN_PW)]);
    let page = c.get(&format!("/console/log/{}", item.reference_id)).text();
    assert!(page.contains("id=\"diagnosis\""), "{page}");
    assert!(page.contains("TEST_QUARANTINE_WORD"));
    // Each fix says there what it still lets through, when the engine names a risk.
    let risks = by_log["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["fix"]["risk"].as_str().unwrap_or("").trim().is_empty())
        .count();
    let cells = page.matches("<td class=\"risk\">").count();
    assert_eq!(cells, by_log["fixes"].as_array().unwrap().len(), "a risk cell per fix: {page}");
    assert_eq!(cells - page.matches("<td class=\"risk\">nothing more than before</td>").count(), risks, "{page}");
}

#[test]
fn rules_a_forger_can_satisfy_carry_warnings_in_the_api_and_the_console() {
    let s = start();
    let mut admin = s.login("admin", ADMIN_PW);
    // The field list says which fields the sender writes.
    let fields = admin.get("/api/v1/rule-fields").json();
    let fields = fields.as_array().unwrap();
    assert_eq!(fields.len(), mailsift_engine::policy::Field::ALL.len());
    let forgeable =
        |n: &str| fields.iter().find(|f| f["name"] == n).unwrap_or_else(|| panic!("{n}"))["forgeable"].clone();
    for fact in
        ["client_ip", "client_ptr", "dkim_domain", "dkim_headers_domain", "arc_sealer", "trusted_hop", "auth_domain"]
    {
        assert_eq!(forgeable(fact), json!(false), "{fact}");
    }
    for written in ["header", "any_header", "from", "from_domain", "envelope_from", "helo", "subject"] {
        assert_eq!(forgeable(written), json!(true), "{written}");
    }
    assert!(fields.iter().all(|f| !f["description"].as_str().unwrap().is_empty()));

    // A rule that lets through whatever writes our web form's address and its host's Received line: stored,
    // with its warning in the answer, in the list and in a rule test.
    let spoofable = json!({
        "name": "web form by header",
        "conditions": [
            { "field": "from", "op": "is", "value": "webform@example.com" },
            { "field": "header", "header": "Received", "op": "contains", "value": "web01.hoster.test" }
        ],
        "actions": [{ "action": "allow" }]
    });
    let r = admin.post_json("/api/v1/rules", &spoofable);
    assert_eq!(r.status, 201, "{}", r.text());
    let added = r.json();
    assert_eq!(added["position"], 0);
    assert!(added["warnings"][0].as_str().unwrap().contains("web form by header"), "{added}");
    assert_eq!(added["forgeable_conditions"], json!([1, 2]));
    // Tied to the connecting server and its verified name: no warning.
    let safe = json!({
        "name": "web form by server",
        "conditions": [
            { "field": "from", "op": "is", "value": "webform@example.com" },
            { "field": "client_ip", "op": "in_cidr", "value": "203.0.113.50/32" },
            { "field": "client_ptr", "op": "is", "value": "web01.hoster.test" }
        ],
        "actions": [{ "action": "allow" }]
    });
    let r = admin.post_json("/api/v1/rules", &safe);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["warnings"], json!([]));
    assert_eq!(r.json()["forgeable_conditions"], json!([1]));
    let list = admin.get("/api/v1/rules").json();
    assert_eq!(list[0]["rule"]["name"], "web form by header");
    assert_eq!(list[0]["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(list[1]["warnings"], json!([]));
    assert_eq!(list[1]["rule"]["conditions"][2]["field"], "client_ptr");
    assert_eq!(admin.get("/api/v1/rules/web%20form%20by%20header").json()["forgeable_conditions"], json!([1, 2]));
    let mut renamed = spoofable.clone();
    renamed["actions"] = json!([{ "action": "quarantine" }]);
    let r = admin.put_json("/api/v1/rules/web%20form%20by%20header", &renamed);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["warnings"], json!([]), "a blocking rule on a header is legitimate");
    assert_eq!(admin.put_json("/api/v1/rules/web%20form%20by%20header", &spoofable).status, 200);

    // The spoof, from anywhere, writing both values: the rule matches, and the answer says why it could.
    let spoof = "Received: from web01.hoster.test (web01.hoster.test [203.0.113.50]) by mx.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
                 From: <webform@example.com>\r\nTo: bob@example.com\r\nSubject: contact form\r\n\r\nChange the bank details.\r\n";
    let t = admin
        .post_bytes("/api/v1/rules/test?rcpt=bob%40example.com&ip=198.18.0.9", "message/rfc822", spoof.as_bytes())
        .json();
    assert_eq!(t["matched_rules"], json!(["web form by header"]), "{t}");
    assert!(t["warnings"][0].as_str().unwrap().contains("web form by header"), "{t}");

    // The console: the rule list says it, the form offers the new fields with the forgeable ones marked.
    let mut c = s.client();
    let r = c.post_form("/login", &[("name", "admin"), ("password", ADMIN_PW), ("next", "/console/policy")]);
    assert_eq!(r.status, 303, "{}", r.text());
    let page = c.get("/console/policy").text();
    assert!(page.contains("id=\"rule-warnings\""), "{page}");
    assert!(page.contains("# WARNING: FORGEABLE: rule &quot;web form by header&quot;"), "{page}");
    assert!(page.contains("# condition 2 (header Received): (forgeable: the sender writes it)"), "{page}");
    assert!(page.contains("id=\"rule-builder\""), "{page}");
    for f in ["client_ptr", "dkim_domain", "arc_sealer", "trusted_hop", "client_ip"] {
        assert!(page.contains(&format!("<option value=\"{f}\">")), "{f}");
    }
    assert!(page.contains("(subject) (forgeable: the sender writes it)</option>"), "{page}");
    assert!(!page.contains("(client_ptr) (forgeable"), "{page}");
    // The form's rule tied to the verified name: added without a warning; one on the HELO alone: warned.
    let csrf = page.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = c.post_form(
        "/console/policy/rules/build",
        &[
            ("_csrf", &csrf),
            ("name", "hoster by name"),
            ("field1", "client_ptr"),
            ("op1", "ends_with"),
            ("value1", ".hoster.test"),
            ("field2", "dkim_domain"),
            ("op2", "is"),
            ("value2", "example.com"),
            ("action", "add_score"),
            ("score", "-2"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap().to_string();
    assert!(location.contains("added") && !location.contains("WARNING"), "{location}");
    let stored = s.web.db.rule_get("hoster by name").unwrap().unwrap().rule;
    assert_eq!(stored.conditions.len(), 2);
    assert_eq!(stored.conditions[0].field, mailsift_engine::policy::Field::ClientPtr);
    assert_eq!(stored.conditions[1].field, mailsift_engine::policy::Field::DkimDomain);
    assert_eq!(stored.actions, [mailsift_engine::policy::RuleAction::AddScore { score: -2.0 }]);
    let r = c.post_form(
        "/console/policy/rules/build",
        &[
            ("_csrf", &csrf),
            ("name", "by helo"),
            ("field1", "helo"),
            ("op1", "is"),
            ("value1", "web01.hoster.test"),
            ("action", "allow"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(r.header("location").unwrap().contains("WARNING%3A+FORGEABLE"), "{:?}", r.header("location"));
    let r = c.post_form(
        "/console/policy/rules/build",
        &[("_csrf", &csrf), ("name", "bad"), ("field1", "nonsense"), ("op1", "is"), ("action", "allow")],
    );
    assert!(r.text().contains("condition 1: field"), "{}", r.text());
    assert!(s.web.db.rule_get("bad").unwrap().is_none());
}

#[test]
fn administrators_list_held_accounts_and_release_a_hold() {
    use mailsift_gateway::guard::{AccountGuardConfig, Judgement};
    let s = start();
    let guard = &s.web.gateway.account_guard;
    let config = AccountGuardConfig::default();
    let now = mailsift_engine::unix_now();
    // Spam after spam from one authenticated sender: the guard holds it (as the gateway's effects would).
    let held =
        (0..config.spam_window).any(|_| matches!(guard.observe(&config, "app", true, now), Judgement::NewHold(_)));
    assert!(held, "the spam share holds the user");
    assert!(matches!(guard.observe(&config, "other", false, now), Judgement::Pass));

    let mut admin = s.login("admin", ADMIN_PW);
    let mut bob = s.login("bob@example.com", BOB_PW);
    // End users see no one's holds and lift none.
    assert_eq!(bob.get("/api/v1/held-accounts").status, 403);
    assert_eq!(bob.post_json("/api/v1/held-accounts/app/release", &json!({})).status, 403);
    let list = admin.get("/api/v1/held-accounts");
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    let users: Vec<&str> = list.as_array().unwrap().iter().map(|h| h["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["app"], "{list}");
    assert!(list[0]["reason"].as_str().unwrap().contains("spam"), "{list}");

    let r = admin.post_json("/api/v1/held-accounts/app/release", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(matches!(guard.observe(&config, "app", false, now), Judgement::Pass), "released: mail flows");
    assert_eq!(admin.post_json("/api/v1/held-accounts/app/release", &json!({})).status, 404);
    assert_eq!(admin.get("/api/v1/held-accounts").json(), json!([]));
}

#[test]
fn administrators_see_the_outbound_queue_retry_and_remove_items() {
    let s = start();
    let db = &s.web.gateway.db;
    // The gateway's spool runner makes one pass over what is due as it starts, then sleeps (up to its 30 s
    // poll) until something is spooled through the gateway; items put straight into the store during that
    // first pass would be claimed and bounced by it. A served request shows the gateway is up; the pause
    // lets the first pass end.
    assert_eq!(s.client().get("/healthz").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let item = |rcpt: &str| {
        let new = mailsift_store::NewSpoolItem {
            kind: "outbound".into(),
            reference_id: "MXAPIQUEUE00001".into(),
            mail_from: "alice@example.com".into(),
            recipient: rcpt.into(),
            outbound: true,
        };
        (new, format!("From: alice@example.com\r\nTo: {rcpt}\r\nSubject: figures\r\n\r\nfigures\r\n").into_bytes())
    };
    let ids = db
        .spool_put(vec![item("carol@remote.example"), item("dan@remote.example"), item("erin@remote.example")])
        .unwrap();
    // One waits an hour, one is being delivered (claimed, under its lease), one was given up.
    let now = mailsift_store::gateway::now_ms();
    db.spool_retry(ids[0], now + 3_600_000, "451 4.4.1 later").unwrap();
    assert_eq!(db.spool_claim(now, now + 600_000, 1, Some(ids[1])).unwrap().len(), 1);
    db.spool_fail(ids[2], now, "550 5.1.1 no such user").unwrap();

    let mut admin = s.login("admin", ADMIN_PW);
    let mut bob = s.login("bob@example.com", BOB_PW);
    assert_eq!(bob.get("/api/v1/queue").status, 403, "end users do not see everyone's outgoing mail");
    assert_eq!(bob.post_json(&format!("/api/v1/queue/{}/retry", ids[0]), &json!({})).status, 403);
    assert_eq!(bob.delete(&format!("/api/v1/queue/{}", ids[0])).status, 403);

    let q = admin.get("/api/v1/queue");
    assert_eq!(q.status, 200, "{}", q.text());
    let q = q.json();
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "pending only by default: {q}");
    assert_eq!(items[1]["sending"], true, "{q}");
    let totals = q["totals"].as_array().unwrap();
    assert!(totals.iter().any(|t| t["kind"] == "outbound" && t["state"] == "pending" && t["count"] == 2), "{q}");
    assert!(totals.iter().any(|t| t["state"] == "failed" && t["count"] == 1), "{q}");
    assert_eq!(admin.get("/api/v1/queue?state=failed").json()["items"][0]["recipient"], "erin@remote.example");
    assert_eq!(admin.get("/api/v1/queue?state=nonsense").status, 400);

    // The queue's size and age on /metrics, before a retry lets the gateway's runner try (and bounce) an item.
    let m = s.client().get("/metrics").text();
    assert!(m.contains("mailsift_queue_messages{kind=\"outbound\",state=\"pending\"} 2"), "{m}");
    assert!(m.contains("mailsift_queue_messages{kind=\"outbound\",state=\"failed\"} 1"), "{m}");
    assert!(m.contains("mailsift_queue_oldest_age_seconds{kind=\"outbound\"}"), "{m}");

    // Retry: the waiting one is due now; the one on its way is left to its attempt; the given-up one cannot.
    let r = admin.post_json(&format!("/api/v1/queue/{}/retry", ids[0]), &json!({}));
    assert_eq!((r.status, r.json()["result"].clone()), (200, json!("due now")));
    let r = admin.post_json(&format!("/api/v1/queue/{}/retry", ids[1]), &json!({}));
    assert_eq!((r.status, r.json()["result"].clone()), (200, json!("sending")));
    assert_eq!(admin.post_json(&format!("/api/v1/queue/{}/retry", ids[2]), &json!({})).status, 409);
    assert_eq!(admin.post_json("/api/v1/queue/999999/retry", &json!({})).status, 404);

    assert_eq!(admin.delete(&format!("/api/v1/queue/{}", ids[2])).status, 200);
    assert_eq!(admin.delete(&format!("/api/v1/queue/{}", ids[2])).status, 404);
    // (The retried item was tried by the gateway's runner meanwhile: it may have been bounced, so only the
    // removed item's absence is certain.)
    let all = admin.get("/api/v1/queue?state=all&kind=outbound").json();
    let left: Vec<i64> = all["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert!(!left.contains(&ids[2]) && left.contains(&ids[1]), "{all}");
}

#[test]
fn the_console_outbound_page_shows_the_queue_dkim_and_dmarc_to_administrators_only() {
    let s = start();
    let mut admin = s.login("admin", ADMIN_PW);
    let page = admin.get("/console/outbound");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("The queue is empty"), "{html}");
    assert!(html.contains("No DKIM key is configured"), "{html}");
    assert!(html.contains("No report received"), "{html}");
    // A queued outbound message appears with its totals and its age.
    let item = mailsift_store::NewSpoolItem {
        kind: "outbound".into(),
        reference_id: "MXCONSOLEQ00001".into(),
        mail_from: "alice@example.com".into(),
        recipient: "carol@far-away.example".into(),
        outbound: true,
    };
    let ids = s.web.gateway.db.spool_put(vec![(item, b"Subject: hi\r\n\r\nhi\r\n".to_vec())]).unwrap();
    s.web.gateway.db.spool_retry(ids[0], mailsift_store::gateway::now_ms() + 3_600_000, "451 4.4.1 try later").unwrap();
    let html = admin.get("/console/outbound").text();
    assert!(html.contains("carol@far-away.example") && html.contains("451 4.4.1 try later"), "{html}");
    assert!(html.contains("<td>outbound</td><td>pending</td><td class=\"num\">1</td>"), "{html}");
    assert!(html.contains("href=\"/console/outbound\""), "the menu links it for administrators");
    // Domain administrators and end users: not their business, and no menu entry.
    let mut da = s.login("da", DA_PW);
    assert_eq!(da.get("/console/outbound").status, 403);
    assert!(!da.get("/console/policy").text().contains("href=\"/console/outbound\""));
    let mut bob = s.login("bob@example.com", BOB_PW);
    assert_eq!(bob.get("/console/outbound").status, 403);
}
