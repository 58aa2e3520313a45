//! We are the only source of our own trust: every incoming `Authentication-Results` that names our
//! authserv-id, in any RFC 8601 form, and every `X-Mailsift-*` field is gone from what the next hop gets, and
//! ours is always there: with DNS off (`none`), with DNS on against a loopback DNS server (real results), and
//! through a real Postfix with our milter (needs Postfix; CI installs it).

use std::sync::Arc;
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::Database;
use mailsift_testkit::clients::smtp_send;
use mailsift_testkit::dns::{TestDns, Zone};
use mailsift_testkit::postfix::Postfix;

const OUR_ID: &str = "mx.ours.test";

/// Forged results in every form a downstream parser might read as ours, one foreign result that must stay,
/// and forged verdict headers.
fn forged_message() -> String {
    let forged = [
        "Authentication-Results: mx.ours.test; spf=pass smtp.mailfrom=ceo@ours.test; dkim=pass; dmarc=pass",
        "Authentication-Results: (checked by us) mx.ours.test; dmarc=pass header.from=ours.test",
        "Authentication-Results:\r\n mx.ours.test; dkim=pass header.d=ours.test",
        "Authentication-Results: mx.ours.test.; spf=pass",
        "Authentication-Results: \"mx.ours.test\"; dmarc=pass",
        "Authentication-Results : mx.ours.test; spf=pass",
        "authentication-results: MX.OURS.TEST; arc=pass",
        "X-Mailsift-Score: -100.00 / 5.00",
        "X-Mailsift-Action: deliver",
    ];
    format!(
        "{}\r\nAuthentication-Results: mx.elsewhere.test; spf=fail smtp.mailfrom=alice@sender.example\r\n\
         From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: trust me\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <forged-ar@sender.example>\r\n\r\nHello.\r\n",
        forged.join("\r\n")
    )
}

/// The unfolded header fields of a delivered message.
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let head = text.split("\n\n").next().unwrap_or("").to_string();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            fields.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    fields
}

/// Checks what the next hop got: only our own results under our id, the foreign one kept, no forged verdict.
fn assert_only_our_trust(raw: &[u8], expect_in_ours: &str) {
    let fields = header_fields(raw);
    let ar: Vec<&String> =
        fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case("Authentication-Results")).map(|(_, v)| v).collect();
    let ours: Vec<&&String> = ar.iter().filter(|v| v.to_ascii_lowercase().contains("mx.ours.test")).collect();
    assert_eq!(ours.len(), 1, "exactly one result in our name must arrive, ours: {ar:#?}");
    assert!(ours[0].starts_with(&format!("{OUR_ID};")), "ours: {}", ours[0]);
    assert!(ours[0].contains(expect_in_ours), "ours: {}", ours[0]);
    assert!(!ours[0].contains("dmarc=pass header.from=ours.test") && !ours[0].contains(" arc=pass"), "{}", ours[0]);
    assert!(ar.iter().any(|v| v.starts_with("mx.elsewhere.test;")), "the foreign result is kept: {ar:#?}");
    let score: Vec<&String> =
        fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case("X-Mailsift-Score")).map(|(_, v)| v).collect();
    assert_eq!(score.len(), 1, "{score:?}");
    assert!(!score[0].starts_with("-100"), "{score:?}");
    let action: Vec<_> = fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case("X-Mailsift-Action")).collect();
    assert_eq!(action.len(), 1, "{action:?}");
}

struct Running {
    gateway: Arc<Gateway>,
    inbound: std::net::SocketAddr,
    sink: Sink,
    _dir: tempfile::TempDir,
}

async fn gateway(dns: Option<&TestDns>, milter: bool) -> Running {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dns_table = match dns {
        Some(d) => format!(
            "[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 500\ndeadline_ms = 2000\nhostname = \"{OUR_ID}\"\n",
            d.addr()
        ),
        None => format!("[dns]\nhostname = \"{OUR_ID}\"\n"),
    };
    let milter_table = if milter { "[smtp.milter]\nlisten = [\"127.0.0.1:0\"]\n" } else { "" };
    let text = format!(
        "{dns_table}\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.ours.test\"\n{milter_table}\n\
         [[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{}\"\n",
        sink.addr()
    );
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap();
    let g = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
    let listeners = g.bind().await.unwrap();
    let inbound = listeners[0].0.local_addr().unwrap();
    tokio::spawn(g.clone().serve(listeners));
    Running { gateway: g, inbound, sink, _dir: dir }
}

async fn send(addr: std::net::SocketAddr, msg: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || smtp_send(addr, "alice@sender.example", &["bob@example.com"], msg.as_bytes()))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_are_removed_and_ours_added_with_dns_off() {
    let g = gateway(None, false).await;
    let reply = send(g.inbound, forged_message()).await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let got = g.sink.messages();
    assert_eq!(got.len(), 1);
    // Nothing was checked: our result says so, and nothing in our name says otherwise.
    assert_only_our_trust(&got[0].data, "mx.ours.test; none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_are_removed_and_ours_added_with_dns_on() {
    let mut zone = Zone::new();
    zone.txt("sender.example", "v=spf1 ip4:127.0.0.1 -all").txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    zone.ptr("127.0.0.1", "localhost.sender.example").a("localhost.sender.example", "127.0.0.1");
    let dns = TestDns::start(zone);
    let g = gateway(Some(&dns), false).await;
    let reply = send(g.inbound, forged_message()).await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let got = g.sink.messages();
    assert_eq!(got.len(), 1);
    assert_only_our_trust(&got[0].data, "spf=pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_are_removed_through_postfix_and_the_milter() {
    if !Postfix::available_or_skip() {
        return;
    }
    let g = gateway(None, true).await;
    let side = g.gateway.start_side_listeners().await.unwrap();
    let milter = side.iter().find(|(k, _)| *k == "milter").map(|(_, a)| a.clone()).unwrap();
    let milter = if milter.starts_with("inet:") { milter } else { format!("inet:{milter}") };
    let postfix = Postfix::start_with(
        &["example.com"],
        &[("smtpd_milters", &milter), ("milter_default_action", "tempfail"), ("milter_protocol", "6")],
    )
    .unwrap();
    let reply = send(postfix.smtp_addr(), forged_message()).await;
    assert_eq!(reply.0, 250, "{reply:?}\n{}", postfix.log());
    let delivered = postfix.wait_for_messages(1, Duration::from_secs(30));
    assert_eq!(delivered.len(), 1, "{}", postfix.log());
    assert_only_our_trust(&delivered[0], "mx.ours.test; none");
}
