//! Compromised-account protection over real SMTP on loopback: an authenticated user who bursts above the
//! hourly floor is held, its outbound mail goes to the quarantine (250, never relayed), the hold survives a
//! restart, and a release lets mail out again.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::{Database, QuarantineQuery};

struct G {
    gateway: Arc<Gateway>,
    outbound: SocketAddr,
    inbound: SocketAddr,
    sink: Sink,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path) -> G {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let hop = sink.addr();
    let hash = mailsift_smtp::auth::hash_password("s3cret-pass");
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "mx.test"
postmaster = "postmaster@local.test"

[smtp.account_guard]
hourly_floor = 2
baseline_factor = 1.0

[smtp.outbound]
listen = ["127.0.0.1:0"]
smarthost = "{hop}"

[[smtp.domains]]
name = "example.com"
next_hop = "{hop}"

[[smtp.domains]]
name = "local.test"
next_hop = "{hop}"

[[smtp.users]]
name = "app"
password = "{hash}"

[[smtp.users]]
name = "other"
password = "{hash}"
"#
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let config = SmtpConfig::from_toml(&text).unwrap();
    let state = GatewayState::new(engine, config, dir).unwrap();
    let db = Database::open_in(dir).unwrap();
    let gateway = Gateway::new(state, db, dir);
    let listeners = gateway.bind().await.unwrap();
    let addr_of = |k: Listener| listeners.iter().find(|(_, l)| *l == k).map(|(t, _)| t.local_addr().unwrap());
    let (inbound, outbound) = (addr_of(Listener::Inbound).unwrap(), addr_of(Listener::Outbound).unwrap());
    let task = tokio::spawn(gateway.clone().serve(listeners));
    G { gateway, outbound, inbound, sink, task }
}

/// Sends `n` messages as `user` over STARTTLS + AUTH; prints one line per message (OK or ERR code).
fn send_as(g: &G, user: &str, n: usize, tag: &str) -> String {
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', {port}); s.ehlo('app.example.com'); s.starttls(context=ctx); s.ehlo('app.example.com')
s.login('{user}', 's3cret-pass')
for i in range({n}):
    m = ("From: {user}@example.com\r\nTo: customer@elsewhere.example\r\nSubject: invoice {tag} %d\r\n"
         "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{tag}.%d.{user}@example.com>\r\n\r\nYour invoice is ready.\r\n") % (i, i)
    try:
        print('OK', s.sendmail('{user}@example.com', ['customer@elsewhere.example'], m))
    except smtplib.SMTPResponseException as e:
        print('ERR', e.smtp_code)
s.quit()
"#,
        port = g.outbound.port()
    );
    let out = std::process::Command::new("python3").arg("-c").arg(script).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn to_customer(g: &G) -> usize {
    g.sink.messages().iter().filter(|m| m.rcpts.iter().any(|r| r == "customer@elsewhere.example")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_holds_the_user_its_mail_is_quarantined_the_hold_survives_a_restart_and_release_lifts_it() {
    let dir = tempfile::tempdir().unwrap();
    let g = start(dir.path()).await;
    let _ = g.inbound;
    // Floor 2: the first two go out, the third trips the hold and is itself held, the fourth too.
    let out = send_as(&g, "app", 4, "a");
    assert_eq!(out.lines().filter(|l| *l == "OK {}").count(), 4, "held mail is answered 250: {out}");
    assert_eq!(to_customer(&g), 2, "only the mail before the hold went out");
    let held = g.gateway.account_guard.held();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].user, "app");
    assert!(held[0].reason.contains("this hour"), "{held:?}");
    assert_eq!(g.gateway.counters.accounts_held.load(Ordering::Relaxed), 1);
    g.gateway.db.flush().unwrap();
    let q = g.gateway.db.quarantine_list(&QuarantineQuery::default()).unwrap();
    assert_eq!(q.len(), 2, "the tripping message and the next one are in the quarantine: {q:?}");
    // The administrators' notice reaches the postmaster through the spool.
    let mut noticed = false;
    for _ in 0..100 {
        noticed = g.sink.messages().iter().any(|m| {
            m.rcpts.iter().any(|r| r == "postmaster@local.test")
                && String::from_utf8_lossy(&m.data).contains("Subject: Account held: app")
        });
        if noticed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(noticed, "the postmaster got the notice: {:?}", g.sink.messages().len());
    // Another user is unaffected.
    let out = send_as(&g, "other", 1, "o");
    assert!(out.contains("OK {}"), "{out}");
    assert_eq!(to_customer(&g), 3);
    g.task.abort();
    drop(g);

    // Restart on the same data directory: the hold is still there.
    let g = start(dir.path()).await;
    let out = send_as(&g, "app", 1, "b");
    assert!(out.contains("OK {}"), "{out}");
    assert_eq!(to_customer(&g), 0, "a held user's mail is not relayed after a restart");
    assert_eq!(g.gateway.account_guard.held().len(), 1);
    // Release lifts the hold.
    assert!(g.gateway.account_guard.release("app"));
    let out = send_as(&g, "app", 1, "c");
    assert!(out.contains("OK {}"), "{out}");
    assert_eq!(to_customer(&g), 1, "released: mail goes out again");
    g.task.abort();
}
