//! No secret reaches the log: every event the web crate (and the gateway under it) emits while logins
//! succeed and fail, sessions and API tokens are used, a password is typed into the name field, and a
//! request fails on the server side, is captured by a subscriber installed for this test binary, and none
//! of the passwords, session ids, CSRF tokens or API tokens may appear in it.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::{Gateway, GatewayState, SmtpConfig};
use mailsift_store::{Database, Role};
use mailsift_testkit::clients::HttpClient;
use mailsift_web::{Web, WebConfig};
use serde_json::json;
use tracing::field::{Field, Visit};

/// Every event and span field, as text.
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut out = self.0.lock().unwrap();
        span.record(&mut Fields(&mut out));
        out.push('\n');
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut out = self.0.lock().unwrap();
        values.record(&mut Fields(&mut out));
        out.push('\n');
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut out = self.0.lock().unwrap();
        let _ = write!(out, "{} {}:", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut out));
        out.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

const ADMIN_PW: &str = "Adm1n-s3cret-passphrase";
const WRONG_PW: &str = "wr0ng-guess-passphrase";
const PASSWORD_AS_NAME: &str = "typed-into-the-name-field-9f3";

#[test]
fn passwords_sessions_and_tokens_never_reach_the_log() {
    let log = Arc::new(Mutex::new(String::new()));
    tracing::subscriber::set_global_default(Capture(log.clone())).expect("the only subscriber of this binary");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = rt.block_on(async {
        let text = "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n\n[web]\nlisten = \"127.0.0.1:0\"\n\
                    login_attempts = 10\n\n[web.digest]\nenabled = false\n";
        let engine = Engine::new(EngineConfig::from_toml(text).unwrap()).unwrap();
        let state = GatewayState::new(engine, SmtpConfig::from_toml(text).unwrap(), dir.path()).unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let hash = mailsift_web::auth::hash_password(ADMIN_PW).unwrap();
        db.account_add("admin", Role::Admin, &[], &hash, mailsift_engine::unix_now()).unwrap();
        let gateway = Gateway::new(state, db, dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let web = Web::new(gateway, WebConfig::from_toml(text).unwrap(), http).unwrap();
        tokio::spawn(mailsift_web::serve(web, listener));
        http
    });

    // Failures: a wrong password, a password typed as the name, then the address refused.
    let mut c = HttpClient::new(http);
    assert_eq!(c.post_json("/api/v1/login", &json!({ "name": "admin", "password": WRONG_PW })).status, 401);
    assert_eq!(c.post_json("/api/v1/login", &json!({ "name": PASSWORD_AS_NAME, "password": "x" })).status, 401);
    let r = c.post_form("/login", &[("name", "admin"), ("password", WRONG_PW), ("next", "/console/log")]);
    assert_eq!(r.status, 401);
    assert!(!r.text().contains(WRONG_PW), "the login page does not echo the password");

    // A session, its CSRF token, an API token; a wrong CSRF token; a tampered API token.
    let mut admin = HttpClient::new(http);
    let r = admin.post_json("/api/v1/login", &json!({ "name": "admin", "password": ADMIN_PW }));
    assert_eq!(r.status, 200, "{}", r.text());
    let csrf = r.json()["csrf"].as_str().unwrap().to_string();
    let session = admin.cookies.iter().find(|(k, _)| k == "mailsift_session").unwrap().1.clone();
    admin.set_header("X-CSRF-Token", "not-the-token");
    assert_eq!(admin.post_json("/api/v1/token", &json!({ "days": 1 })).status, 403);
    admin.set_header("X-CSRF-Token", &csrf);
    let r = admin.post_json("/api/v1/token", &json!({ "days": 1 }));
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let mut bearer = HttpClient::new(http).with_header("Authorization", &format!("Bearer {token}"));
    assert_eq!(bearer.get("/api/v1/me").status, 200);
    let tampered = format!("{}x", token);
    let mut forged = HttpClient::new(http).with_header("Authorization", &format!("Bearer {tampered}"));
    assert_eq!(forged.get("/api/v1/me").status, 401);
    // A server-side failure while the session cookie and the token are on the request.
    let raw = rusqlite::Connection::open(dir.path().join("mailsift.sqlite")).unwrap();
    raw.execute_batch("ALTER TABLE message_log RENAME TO message_log_gone;").unwrap();
    drop(raw);
    assert_eq!(admin.get("/api/v1/log").status, 500);
    assert_eq!(bearer.get("/api/v1/log").status, 500);
    assert_eq!(admin.get("/console/log").status, 500);
    assert_eq!(admin.post_json("/api/v1/logout", &json!({})).status, 204);

    let log_text = log.lock().unwrap().clone();
    assert!(log_text.contains("failed console login"), "the capture works: {log_text}");
    assert!(log_text.contains("HTTP request failed"), "the failure is logged: {log_text}");
    for secret in [ADMIN_PW, WRONG_PW, PASSWORD_AS_NAME, &csrf, &session, &token, &tampered] {
        assert!(!log_text.contains(secret), "{secret:?} is in the log:\n{log_text}");
    }
}
