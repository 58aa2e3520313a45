//! `/healthz` and `/readyz` of a `mailsift serve` process, as a load balancer polls them: alive without a
//! login; ready while the database answers and the next hop (a `mailsift smtp-sink` on loopback) accepts
//! connections; 503 naming the next hop's domain, and no address, while the sink is down; ready again once
//! it is back. Loopback only; every wait bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailsift_testkit::clients::{HttpClient, HttpResponse};
use mailsift_testkit::Proc;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "warn");
    c
}

/// Starts `cmd` and waits (up to 60 s) for its "mailsift: <kind> listening on ADDR" line.
fn spawn_until(mut cmd: Command, kind: &str) -> (Proc, SocketAddr) {
    let mut child = Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.starts_with(&format!("mailsift: {kind} listening on ")) {
            found = line.trim().rsplit(' ').next().and_then(|a| a.parse().ok());
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (child, found.unwrap_or_else(|| panic!("{kind} address not announced")))
}

fn sink(addr: SocketAddr) -> Proc {
    let mut cmd = bin();
    cmd.args(["smtp-sink", "--listen", &addr.to_string()]);
    spawn_until(cmd, "SMTP sink").0
}

fn serve(data: &Path, config: &str) -> (Proc, SocketAddr) {
    let file = data.join("mailsift.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(data).arg("--config").arg(&file);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    spawn_until(cmd, "HTTP")
}

/// Polls `/readyz` until it answers `status` (up to 10 s: the result is cached for 2 s).
fn readyz_until(http: SocketAddr, status: u16) -> HttpResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let asked = Instant::now();
        let r = HttpClient::new(http).get("/readyz");
        assert!(asked.elapsed() < Duration::from_secs(3), "/readyz took {:?}", asked.elapsed());
        if r.status == status || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ready_follows_the_next_hop_and_alive_needs_no_login() {
    let data = mailsift_testkit::temp_dir("mailsift-health", "next-hop");
    let hop = mailsift_testkit::quiet_loopback_port();
    let mut next_hop = sink(hop);
    let config = format!(
        "[[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{hop}\"\n\
         [[smtp.domains]]\nname = \"example.net\"\nnext_hop = \"{hop}\"\n[smtp.tls]\nenabled = false\n"
    );
    let (_gw, http) = serve(&data, &config);

    let alive = HttpClient::new(http).get("/healthz");
    assert_eq!((alive.status, alive.text().trim()), (200, "ok"), "no login needed");

    let ready = readyz_until(http, 200);
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = ready.json();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["next_hop:example.com"], "ok");
    assert_eq!(body["checks"]["next_hop:example.net"], "ok");

    // The next hop goes away: not ready, and the answer says which check failed, by domain.
    drop(next_hop);
    let down = readyz_until(http, 503);
    assert_eq!(down.status, 503, "{}", down.text());
    let body = down.json();
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["next_hop:example.com"], "unreachable");
    assert_eq!(body["checks"]["next_hop:example.net"], "unreachable");
    assert!(!down.text().contains("127.0.0.1") && !down.text().contains(&hop.port().to_string()), "{}", down.text());
    assert_eq!(HttpClient::new(http).get("/healthz").status, 200, "alive while not ready");

    // Back again: ready again.
    next_hop = sink(hop);
    let back = readyz_until(http, 200);
    assert_eq!(back.status, 200, "{}", back.text());
    assert_eq!(back.json()["checks"]["next_hop:example.com"], "ok");
    drop(next_hop);
}

#[test]
fn a_gateway_delivering_to_maildir_is_ready_with_its_database() {
    let data = mailsift_testkit::temp_dir("mailsift-health", "maildir");
    let (_gw, http) = serve(&data, "[smtp.tls]\nenabled = false\n");
    let r = readyz_until(http, 200);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["checks"], serde_json::json!({ "database": "ok" }));
}
