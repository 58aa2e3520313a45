//! `GET /api/v1/dmarc/received` over real HTTP in front of a real gateway and its SQLite database: what the
//! DMARC reports received for our domains say, per source; administrators see every domain, a domain
//! administrator only the account's, end users nothing.

use std::net::SocketAddr;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::{Gateway, GatewayState, SmtpConfig};
use mailsift_store::gateway::DmarcReceivedRow;
use mailsift_store::{Database, Role};
use mailsift_testkit::clients::HttpClient;
use mailsift_web::{Web, WebConfig};
use serde_json::json;

fn login(http: SocketAddr, name: &str, password: &str) -> HttpClient {
    let mut c = HttpClient::new(http);
    let r = c.post_json("/api/v1/login", &json!({ "name": name, "password": password }));
    assert_eq!(r.status, 200, "{}", r.text());
    let csrf = r.json()["csrf"].as_str().unwrap().to_string();
    c.set_header("X-CSRF-Token", &csrf);
    c
}

#[test]
fn received_reports_are_shown_to_whoever_manages_the_domain() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = "[smtp]\nhostname = \"mx.test\"\n[[smtp.domains]]\nname = \"example.com\"\n\
                [[smtp.domains]]\nname = \"other.test\"\n[web]\nlisten = \"127.0.0.1:0\"\n[web.digest]\nenabled = false\n";
    let http = rt.block_on(async {
        let engine = Engine::new(EngineConfig::from_toml(text).unwrap()).unwrap();
        let state = GatewayState::new(engine, SmtpConfig::from_toml(text).unwrap(), dir.path()).unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let now = mailsift_engine::unix_now();
        for (name, role, domains) in [
            ("admin", Role::Admin, vec![]),
            ("da", Role::DomainAdmin, vec!["other.test".to_string()]),
            ("bob@example.com", Role::User, vec![]),
        ] {
            let hash = mailsift_web::auth::hash_password("password-123456").unwrap();
            db.account_add(name, role, &domains, &hash, now).unwrap();
        }
        let row = |domain: &str, ip: &str, count: u64| DmarcReceivedRow {
            reporter: "google.com".into(),
            report_id: format!("r-{domain}-{ip}"),
            begin: now - 86_400,
            end: now - 1,
            domain: domain.into(),
            source_ip: ip.into(),
            count,
            disposition: "none".into(),
            dkim: "pass".into(),
            spf: "fail".into(),
            header_from: domain.into(),
            ..DmarcReceivedRow::default()
        };
        db.dmarc_received_put(vec![row("example.com", "192.0.2.1", 30)], now).unwrap();
        db.dmarc_received_put(vec![row("other.test", "192.0.2.2", 4)], now).unwrap();
        let gateway = Gateway::new(state, db, dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let web = Web::new(gateway, WebConfig::from_toml(text).unwrap(), http).unwrap();
        tokio::spawn(mailsift_web::serve(web, listener));
        http
    });

    assert_eq!(HttpClient::new(http).get("/api/v1/dmarc/received").status, 401);
    let mut bob = login(http, "bob@example.com", "password-123456");
    assert_eq!(bob.get("/api/v1/dmarc/received").status, 403);

    let mut admin = login(http, "admin", "password-123456");
    let all = admin.get("/api/v1/dmarc/received?days=7");
    assert_eq!(all.status, 200, "{}", all.text());
    let all = all.json();
    let domains: Vec<&str> = all.as_array().unwrap().iter().map(|r| r["domain"].as_str().unwrap()).collect();
    assert_eq!(domains, ["example.com", "other.test"], "{all}");
    assert_eq!(
        (all[0]["messages"].as_u64(), all[0]["dkim_pass"].as_u64(), all[0]["spf_pass"].as_u64()),
        (Some(30), Some(30), Some(0))
    );

    let mut da = login(http, "da", "password-123456");
    let mine = da.get("/api/v1/dmarc/received").json();
    let domains: Vec<&str> = mine.as_array().unwrap().iter().map(|r| r["domain"].as_str().unwrap()).collect();
    assert_eq!(domains, ["other.test"], "{mine}");
    assert_eq!(da.get("/api/v1/dmarc/received?domain=example.com").status, 403);
    assert_eq!(admin.get("/api/v1/dmarc/received?domain=other.test").json().as_array().unwrap().len(), 1);
}
