//! Two `mailsift serve` nodes on one private PostgreSQL (`[store] backend = "postgres"`), as two console
//! hosts behind one name: a login through A's form is a login on B (the session is in the database), a
//! logout at B ends it at A, a password changed through A's CLI ends the account's sessions on B, a
//! session survives A's restart; an API token minted at A, a token from A's CLI and a digest link signed
//! with the installation's key all work at B; failed logins spread over A and B are refused as one count.
//! Real processes, real HTTP over TCP. Without PostgreSQL installed the test is skipped; under CI=true it
//! fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailsift_testkit::clients::{HttpClient, HttpResponse};
use mailsift_testkit::postgres::Postgres;
use mailsift_testkit::Proc;
use mailsift_web::tokens::{Claims, Purpose, Signer};

const PASSWORD: &str = "a long enough passphrase";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "warn");
    c
}

/// One node: its data directory and configuration, the serve process and its HTTP address.
struct Node {
    data: PathBuf,
    config: PathBuf,
    http: SocketAddr,
    _serve: Proc,
}

impl Node {
    fn start(name: &str, url: &str) -> Node {
        let data = mailsift_testkit::temp_dir("mailsift-nodes-console", name);
        let config = data.join("mailsift.toml");
        std::fs::write(
            &config,
            format!(
                "[web]\nlogin_attempts = 3\nlogin_window_secs = 600\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n"
            ),
        )
        .unwrap();
        Node::serve(data, config)
    }

    /// Starts `mailsift serve` on this data directory and configuration; waits (up to 60 s) for its HTTP
    /// address.
    fn serve(data: PathBuf, config: PathBuf) -> Node {
        let mut cmd = bin();
        cmd.arg("--data-dir").arg(&data).arg("--config").arg(&config);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
        let mut child = Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut http = None;
        while http.is_none() && Instant::now() < deadline {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(addr) = line.trim().strip_prefix("mailsift: HTTP listening on ") {
                http = addr.parse().ok();
            }
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        Node { data, config, http: http.expect("HTTP address announced"), _serve: child }
    }

    /// Stops the serve process and starts it again on the same data directory and configuration.
    fn restart(self) -> Node {
        let Node { data, config, _serve, .. } = self;
        drop(_serve);
        Node::serve(data, config)
    }

    /// A CLI command run as this node, with `stdin` as its standard input.
    fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = bin()
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn client(&self) -> HttpClient {
        HttpClient::new(self.http)
    }
}

/// Logs in through the console's form; the answer (a redirect with the session cookie on success).
fn login(c: &mut HttpClient, name: &str, password: &str) -> HttpResponse {
    c.post_form("/login", &[("name", name), ("password", password)])
}

/// The same cookie jar, pointed at another node.
fn at(c: &HttpClient, node: &Node) -> HttpClient {
    HttpClient { addr: node.http, ..c.clone() }
}

/// A console page that needs a login answers 200; without one it sends the browser to /login.
fn logged_in(c: &mut HttpClient) -> bool {
    let r = c.get("/console");
    match r.status {
        200 => true,
        303 | 302 | 307 => {
            assert!(r.header("location").unwrap_or("").starts_with("/login"), "{:?}", r.header("location"));
            false
        }
        other => panic!("/console answered {other}: {}", r.text()),
    }
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"_csrf\" value=\"").nth(1).expect("a form with _csrf").split('"').next().unwrap().to_string()
}

/// The installation's signing key as node A stored it in the shared database.
fn stored_key(pg: &Postgres, database: &str) -> [u8; 32] {
    let hex = pg.psql_in(database, "SELECT encode(value, 'hex') FROM web_secrets WHERE name = 'signing key'").unwrap();
    let hex = hex.trim();
    assert_eq!(hex.len(), 64, "{hex:?}");
    let mut key = [0; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    key
}

#[test]
fn two_nodes_on_one_postgres_share_console_sessions_tokens_and_login_limits() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("console");
    let a = Node::start("a", &url);
    let b = Node::start("b", &url);
    a.cli(&["accounts", "add", "root", "--role", "admin"], &format!("{PASSWORD}\n"));
    // Neither node made a key file: the key is the database's.
    for n in [&a, &b] {
        assert!(!n.data.join("web.key").exists(), "{} has a web.key", n.data.display());
    }

    // Logged in through A's form; the same cookie is a login at B.
    let mut at_a = a.client();
    let r = login(&mut at_a, "root", PASSWORD);
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(at_a.cookies.iter().any(|(k, _)| k == "mailsift_session"));
    assert!(logged_in(&mut at_a));
    let mut at_b = at(&at_a, &b);
    assert!(logged_in(&mut at_b), "A's session is not known at B");
    let stranger = &mut b.client();
    assert!(!logged_in(stranger), "B lets anyone in");

    // The session survives A's restart.
    let a = a.restart();
    let mut at_a = at(&at_a, &a);
    assert!(logged_in(&mut at_a), "the session did not survive A's restart");

    // Logged out at B (the console's form, with its CSRF field): A refuses the cookie at once.
    let page = at_b.get("/console").text();
    let cookies_before = at_b.cookies.clone();
    let r = at_b.post_form("/logout", &[("_csrf", &csrf_of(&page))]);
    assert_eq!(r.status, 303, "{}", r.text());
    let mut old_cookie_at_a = HttpClient { addr: a.http, cookies: cookies_before, headers: Vec::new() };
    assert!(!logged_in(&mut old_cookie_at_a), "logged out at B, still in at A");

    // A password changed through A's CLI ends the account's sessions on B.
    let mut at_b = b.client();
    assert_eq!(login(&mut at_b, "root", PASSWORD).status, 303);
    assert!(logged_in(&mut at_b));
    a.cli(&["accounts", "password", "root"], &format!("{PASSWORD} two\n"));
    assert!(!logged_in(&mut at_b), "the password changed, the session at B goes on");
    let password = format!("{PASSWORD} two");

    // An API token minted at A works at B; so does one from A's CLI.
    let mut api = a.client();
    let r = api.post_json("/api/v1/login", &serde_json::json!({ "name": "root", "password": password }));
    assert_eq!(r.status, 200, "{}", r.text());
    api.set_header("X-CSRF-Token", r.json()["csrf"].as_str().unwrap());
    let r = api.post_json("/api/v1/token", &serde_json::json!({ "days": 1 }));
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let me = b.client().with_header("Authorization", &format!("Bearer {token}")).get("/api/v1/me");
    assert_eq!((me.status, me.json()["name"].as_str()), (200, Some("root")), "{}", me.text());
    let cli_token = String::from_utf8(a.cli(&["accounts", "token", "root", "--days", "1"], "").stdout).unwrap();
    let me = b.client().with_header("Authorization", &format!("Bearer {}", cli_token.trim())).get("/api/v1/me");
    assert_eq!(me.status, 200, "a token from A's CLI at B: {}", me.text());
    assert!(!a.data.join("web.key").exists(), "the CLI made a key file of its own");

    // A digest link signed with the installation's key opens the recipient's quarantine at B; one signed
    // with another key does not.
    let digest = |key: [u8; 32]| {
        Signer::new(key).sign(&Claims {
            purpose: Purpose::Digest,
            id: 0,
            subject: "bob@example.com".into(),
            expires: mailsift_engine::unix_now() + 3600,
        })
    };
    let mut reader = b.client();
    let r = reader.get(&format!("/d/{}", digest(stored_key(&pg, "console"))));
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text().replace("&#x2f;", "/");
    assert!(page.contains("url=/console/quarantine"), "the link's page leads to the quarantine: {page}");
    assert_eq!(at(&reader, &a).get("/console/quarantine").status, 200, "the link's session is A's too");
    let r = b.client().get(&format!("/d/{}", digest([7; 32])));
    assert_eq!(r.status, 403, "a link signed with another key was taken: {}", r.text());

    // Failed logins spread over both nodes count as one: the limit is 3 per address.
    let (mut guess_a, mut guess_b) = (a.client(), b.client());
    assert_eq!(login(&mut guess_a, "root", "wrong one").status, 401);
    assert_eq!(login(&mut guess_b, "root", "wrong two").status, 401);
    assert_eq!(login(&mut guess_a, "root", "wrong three").status, 401);
    let r = login(&mut guess_b, "root", "wrong four");
    assert_eq!(r.status, 429, "B did not count A's failures: {}", r.text());
    assert_eq!(login(&mut guess_a, "root", &password).status, 429, "A forgot the failures it counted");
}
