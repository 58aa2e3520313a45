//! DKIM signing of outbound mail and ARC sealing of inbound mail we changed, end to end: real gateways over
//! SMTP on loopback, relaying to a sink, keys made by `mailsift_gateway::signing` and published on the
//! loopback DNS server. What arrives is verified as receivers would: with mail-auth, and with Debian's
//! `opendkim-testmsg` (libopendkim), which is pointed at the loopback DNS server through a private
//! `/etc/resolv.conf` in a mount namespace (`unshare -m`) and a UDP relay on 127.0.53.x:53 (libopendkim uses
//! the libc resolver, port 53 only). That needs root, as the CI container has.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::{AuthenticatedMessage, DkimResult, Parameters};
use mailsift_engine::{Engine, EngineConfig};
use mailsift_gateway::signing::{self, KeyAlgorithm};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::Database;
use mailsift_testkit::clients::smtp_send;
use mailsift_testkit::dns::{TestDns, Zone};

struct Key {
    domain: String,
    selector: String,
    path: PathBuf,
    record: String,
}

fn make_key(dir: &Path, domain: &str, selector: &str, algorithm: KeyAlgorithm) -> Key {
    let key = signing::generate_key(algorithm, 2048).expect("key");
    let path = dir.join(format!("{domain}.{selector}.pem"));
    signing::write_key_file(&path, &key.pem, false).expect("write key");
    Key {
        domain: domain.into(),
        selector: selector.into(),
        path,
        record: signing::dns_record(key.algorithm, &key.public_key),
    }
}

fn publish(zone: &mut Zone, k: &Key) {
    zone.txt(&format!("{}._domainkey.{}", k.selector, k.domain), &k.record);
}

fn keys_toml(keys: &[&Key]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "[[smtp.dkim.keys]]\ndomain = \"{}\"\nselector = \"{}\"\nkey_file = \"{}\"\n",
                k.domain,
                k.selector,
                k.path.display()
            )
        })
        .collect()
}

struct Running {
    gateway: Arc<Gateway>,
    addr: SocketAddr,
    sink: Sink,
    _dir: tempfile::TempDir,
}

/// A gateway for `hostname` with DNS on the test server, relaying everything to a fresh sink; `extra` is
/// more configuration (keys, trusted networks, thresholds).
async fn gateway(dns: &TestDns, hostname: &str, extra: &str, sink: Option<Sink>) -> Running {
    let sink = match sink {
        Some(s) => s,
        None => Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[dns]\nenabled = true\nnameservers = [\"{dns}\"]\ntimeout_ms = 500\ndeadline_ms = 3000\nhostname = \"{hostname}\"\n\
         {extra}\n\
         [smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{hostname}\"\n\
         [smtp.outbound]\nsmarthost = \"{sink}\"\nqueue = false\n{trusted}\n\
         [[smtp.domains]]\nname = \"ours.test\"\nnext_hop = \"{sink}\"\n\
         [[smtp.domains]]\nname = \"next.test\"\nnext_hop = \"{sink}\"\n",
        dns = dns.addr(),
        sink = sink.addr(),
        trusted = if extra.contains("#outbound") { "trusted_networks = [\"127.0.0.1/32\"]" } else { "" },
    );
    // The [smtp.*] tables of `extra` must come after [smtp]: split them out.
    let (engine_part, smtp_part) = split_smtp(&text);
    let text = format!("{engine_part}\n{smtp_part}");
    let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap();
    let g = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
    let listeners = g.bind().await.unwrap();
    let addr = listeners[0].0.local_addr().unwrap();
    tokio::spawn(g.clone().serve(listeners));
    Running { gateway: g, addr, sink, _dir: dir }
}

/// Moves every `[smtp...]` table after the others, keeping each table whole and `[smtp]` first among them.
fn split_smtp(text: &str) -> (String, String) {
    let mut tables: Vec<(String, String)> = Vec::new();
    let mut head = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            tables.push((t.to_string(), String::new()));
        }
        match tables.last_mut() {
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {
                head.push_str(line);
                head.push('\n');
            }
        }
    }
    let is_smtp = |name: &str| name.trim_start_matches('[').starts_with("smtp");
    let mut engine = head;
    let mut smtp_main = String::new();
    let mut smtp_rest = String::new();
    for (name, body) in tables {
        if name == "[smtp]" {
            smtp_main.push_str(&body);
        } else if is_smtp(&name) {
            smtp_rest.push_str(&body);
        } else {
            engine.push_str(&body);
        }
    }
    (engine, format!("{smtp_main}{smtp_rest}"))
}

async fn send(addr: SocketAddr, mail_from: &str, rcpt: &str, msg: String) -> (u16, String) {
    let (from, to) = (mail_from.to_string(), rcpt.to_string());
    tokio::task::spawn_blocking(move || smtp_send(addr, &from, &[to.as_str()], msg.as_bytes())).await.unwrap().unwrap()
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: Alice <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{}.{}@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         The quarterly figures are attached to the next message.\r\n\r\nAlice\r\n",
        subject.len(),
        std::process::id()
    )
}

/// Each DKIM signature of `raw` with its d=, s= and mail-auth's result.
async fn verify(dns: &TestDns, raw: &[u8]) -> Vec<(String, String, DkimResult)> {
    let auth = mailsift_testkit::auth::authenticator(dns.addr());
    let m = AuthenticatedMessage::parse(raw).expect("parse");
    let out = auth.verify_dkim(Parameters::new(&m)).await;
    out.iter()
        .map(|o| {
            let s = o.signature().expect("a signature");
            (s.d.clone(), s.s.clone(), o.result().clone())
        })
        .collect()
}

fn header_count(raw: &[u8], name: &str) -> usize {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter(|l| l.len() > name.len() && l[..name.len() + 1].eq_ignore_ascii_case(&format!("{name}:")))
        .count()
}

/// The message with only its `n`th DKIM-Signature field (0: the topmost), the others removed.
fn only_signature(raw: &[u8], n: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().unwrap();
            last.push_str("\r\n");
            last.push_str(line);
        } else {
            fields.push(line.to_string());
        }
    }
    let mut seen = 0;
    let kept: Vec<String> = fields
        .into_iter()
        .filter(|f| {
            if f.to_ascii_lowercase().starts_with("dkim-signature:") {
                seen += 1;
                seen - 1 == n
            } else {
                true
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", kept.join("\r\n")).into_bytes()
}

// ---------------------------------------------------------------------------------------------------------
// opendkim-testmsg against the loopback DNS server

/// Relays DNS over UDP from `listen` (port 53) to the test server, until dropped.
struct DnsRelay {
    addr: std::net::Ipv4Addr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsRelay {
    fn start(upstream: SocketAddr) -> DnsRelay {
        let mut socket = None;
        for n in 0..200u32 {
            let ip = std::net::Ipv4Addr::new(127, 0, 53, ((std::process::id() + n) % 250 + 2) as u8);
            if let Ok(s) = UdpSocket::bind((ip, 53)) {
                socket = Some((ip, s));
                break;
            }
        }
        let (addr, socket) = socket.expect("bind a DNS relay on 127.0.53.x:53 (needs root)");
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, client)) = socket.recv_from(&mut buf) else { continue };
                let up = UdpSocket::bind("127.0.0.1:0").unwrap();
                up.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                if up.send_to(&buf[..n], upstream).is_err() {
                    continue;
                }
                let mut answer = [0u8; 4096];
                if let Ok((m, _)) = up.recv_from(&mut answer) {
                    let _ = socket.send_to(&answer[..m], client);
                }
            }
        });
        DnsRelay { addr, stop, thread: Some(thread) }
    }
}

impl Drop for DnsRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Verifies `raw` with opendkim-testmsg, its DNS pointed at `dns`. `Ok(())`: verified; `Err`: what it said.
/// `None`: the tool is not installed (outside CI only; in CI that fails the test).
fn opendkim_verify(dns: &TestDns, raw: &[u8]) -> Option<Result<(), String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !Path::new("/usr/sbin/opendkim-testmsg").exists() {
        mailsift_testkit::tool_missing("opendkim-testmsg is not installed (Debian package opendkim-tools)");
        return None;
    }
    let relay = DnsRelay::start(dns.addr());
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\noptions timeout:2 attempts:2\n", relay.addr)).unwrap();
    let mut child = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind \"$1\" /etc/resolv.conf && exec /usr/sbin/opendkim-testmsg", "sh"])
        .arg(&resolv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare");
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(relay);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some(if out.status.success() && said.trim().is_empty() { Ok(()) } else { Err(format!("{}: {said}", out.status)) })
}

// ---------------------------------------------------------------------------------------------------------
// Outbound signing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_mail_carries_rsa_and_ed25519_signatures_that_verify() {
    let keys = tempfile::tempdir().unwrap();
    let rsa = make_key(keys.path(), "ours.test", "r2026", KeyAlgorithm::Rsa);
    let ed = make_key(keys.path(), "ours.test", "e2026", KeyAlgorithm::Ed25519);
    let mut zone = Zone::new();
    publish(&mut zone, &rsa);
    publish(&mut zone, &ed);
    let dns = TestDns::start(zone);
    let g = gateway(&dns, "mx.ours.test", &format!("#outbound\n[smtp.dkim]\n{}", keys_toml(&[&rsa, &ed])), None).await;

    let reply =
        send(g.addr, "alice@ours.test", "bob@example.com", message("alice@ours.test", "bob@example.com", "figures"))
            .await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let got = g.sink.messages();
    assert_eq!(got.len(), 1);
    let signed = &got[0].data;
    assert_eq!(header_count(signed, "DKIM-Signature"), 2, "{}", String::from_utf8_lossy(signed));
    let counters = &g.gateway.counters;
    assert_eq!(counters.dkim_signed.load(Ordering::Relaxed), 1);
    assert_eq!(counters.signing_failed.load(Ordering::Relaxed), 0);

    let results = verify(&dns, signed).await;
    assert_eq!(results.len(), 2, "{results:?}");
    for selector in ["r2026", "e2026"] {
        let r = results.iter().find(|r| r.1 == selector).unwrap_or_else(|| panic!("no {selector}: {results:?}"));
        assert_eq!(r.0, "ours.test");
        assert_eq!(r.2, DkimResult::Pass, "{selector}: {results:?}");
    }
    // From is over-signed: listed twice in h=, so a second From: added later breaks the signature.
    let text = String::from_utf8_lossy(signed).replace("\r\n\t", " ").replace("\r\n ", " ");
    let h = text.lines().find(|l| l.starts_with("DKIM-Signature:")).unwrap();
    let h_tag = h.split(';').find(|t| t.trim().starts_with("h=")).unwrap().to_ascii_lowercase();
    assert_eq!(h_tag.matches("from").count(), 2, "{h_tag}");
    assert!(h_tag.contains("subject") && h_tag.contains("message-id") && h_tag.contains("content-type"), "{h_tag}");

    // The same signatures, one at a time, through libopendkim.
    for n in 0..2 {
        match opendkim_verify(&dns, &only_signature(signed, n)) {
            None => return,
            Some(r) => r.unwrap_or_else(|e| panic!("opendkim-testmsg refused signature {n}: {e}")),
        }
    }

    // Forgeries: a signed header or the body changed after signing fails, with mail-auth and opendkim.
    let subject_changed = String::from_utf8_lossy(signed).replace("Subject: figures", "Subject: figures, urgent");
    let body_changed = String::from_utf8_lossy(signed).replace("quarterly figures", "new bank details");
    assert_ne!(subject_changed.as_bytes(), &signed[..]);
    assert_ne!(body_changed.as_bytes(), &signed[..]);
    for forged in [subject_changed, body_changed] {
        let results = verify(&dns, forged.as_bytes()).await;
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.2 != DkimResult::Pass), "{results:?}");
        for n in 0..2 {
            let r = opendkim_verify(&dns, &only_signature(forged.as_bytes(), n)).unwrap();
            assert!(r.is_err(), "opendkim-testmsg accepted a forgery (signature {n})");
        }
    }
    // A second From: added below the signature breaks it too (over-signing).
    let second_from = String::from_utf8_lossy(signed).replace("To: <bob", "From: ceo@ours.test\r\nTo: <bob");
    let results = verify(&dns, second_from.as_bytes()).await;
    assert!(results.iter().all(|r| r.2 != DkimResult::Pass), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_mail_from_a_keyed_domain_is_signed_and_never_inbound_mail() {
    let keys = tempfile::tempdir().unwrap();
    let ed = make_key(keys.path(), "ours.test", "e2026", KeyAlgorithm::Ed25519);
    let mut zone = Zone::new();
    publish(&mut zone, &ed);
    let dns = TestDns::start(zone);
    let keys_cfg = format!("[smtp.dkim]\n{}", keys_toml(&[&ed]));
    let out = gateway(&dns, "mx.ours.test", &format!("#outbound\n{keys_cfg}"), None).await;

    // No key for the domain, a subdomain of ours (exact match only), another customer's From: with our
    // envelope sender: none is signed.
    for from in ["alice@other.test", "alice@sub.ours.test", "alice@customer.test"] {
        let reply = send(out.addr, "alice@ours.test", "bob@example.com", message(from, "bob@example.com", from)).await;
        assert_eq!(reply.0, 250, "{reply:?}");
    }
    // Ours is.
    let reply =
        send(out.addr, "alice@ours.test", "bob@example.com", message("alice@ours.test", "bob@example.com", "ours"))
            .await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let got = out.sink.messages();
    assert_eq!(got.len(), 4);
    for m in &got[..3] {
        assert_eq!(header_count(&m.data, "DKIM-Signature"), 0, "{}", String::from_utf8_lossy(&m.data));
    }
    assert_eq!(header_count(&got[3].data, "DKIM-Signature"), 1);
    let results = verify(&dns, &got[3].data).await;
    assert_eq!(results[0].2, DkimResult::Pass, "{results:?}");

    // Inbound (an untrusted client, mail for our domain): never DKIM-signed, even with a From: of ours.
    let inbound = gateway(
        &dns,
        "mx.ours.test",
        &format!("[thresholds]\ntag = 100.0\nquarantine = 200.0\nreject = 300.0\n{keys_cfg}"),
        None,
    )
    .await;
    let reply =
        send(inbound.addr, "alice@ours.test", "bob@ours.test", message("alice@ours.test", "bob@ours.test", "in")).await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let got = inbound.sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(header_count(&got[0].data, "DKIM-Signature"), 0, "{}", String::from_utf8_lossy(&got[0].data));
}

#[test]
fn a_key_readable_by_others_or_too_short_is_refused_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let k = make_key(dir.path(), "ours.test", "s1", KeyAlgorithm::Ed25519);
    std::fs::set_permissions(&k.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!("[smtp]\nlisten = [\"127.0.0.1:0\"]\n[smtp.dkim]\n{}", keys_toml(&[&k]));
    let err = SmtpConfig::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains(&k.path.display().to_string()) && err.contains("group or others"), "{err}");
    std::fs::set_permissions(&k.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    SmtpConfig::from_toml(&text).expect("a 0600 key is accepted");

    // A 1024-bit RSA key (made with the rsa crate, as an old setup might have one).
    let short = dir.path().join("short.pem");
    let old = rsa_1024_pem();
    signing::write_key_file(&short, &old, false).unwrap();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[smtp.dkim]\n[[smtp.dkim.keys]]\ndomain = \"ours.test\"\nselector = \"old\"\nkey_file = \"{}\"\n",
        short.display()
    );
    let err = SmtpConfig::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("short.pem") && err.contains("1024 bits"), "{err}");

    // Not a key at all.
    std::fs::write(&short, "hello\n").unwrap();
    let err = SmtpConfig::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("short.pem") && err.contains("PEM"), "{err}");
}

/// A 1024-bit RSA key: too short to be accepted.
fn rsa_1024_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// ARC

const SENDER_MSG_ID: &str = "arc-test@sender.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_inbound_message_is_sealed_and_the_next_hop_trusts_the_seal() {
    let keys = tempfile::tempdir().unwrap();
    let seal_key = make_key(keys.path(), "ours.test", "arc2026", KeyAlgorithm::Rsa);
    let sender = mailsift_testkit::auth::TestKey::new("sender.example", "s1");
    let mut zone = Zone::new();
    publish(&mut zone, &seal_key);
    sender.publish(&mut zone);
    // SPF fails from loopback and DMARC is p=reject: only the DKIM signature vouches for the message, and
    // the subject tag breaks it on the way to the next hop.
    zone.txt("sender.example", "v=spf1 ip4:192.0.2.1 -all").txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    let dns = TestDns::start(zone);

    // The next hop: another mailsift that trusts our seal (or not), delivering to a sink.
    let next_cfg = |trust: bool| {
        format!(
            "[organisation]\ndomains = [\"next.test\"]\n{}\n[thresholds]\ntag = 100.0\nquarantine = 200.0\nreject = 300.0\n",
            if trust { "trusted_arc_sealers = [\"ours.test\"]" } else { "" }
        )
    };
    let next = gateway(&dns, "mx.next.test", &next_cfg(true), None).await;
    let untrusting = gateway(&dns, "mx.next.test", &next_cfg(false), None).await;
    // We: everything is tagged (tag threshold below any score), sealed with the ours.test key, and sent
    // to the next hop (next.test's next_hop is a sink we read).
    let ours_cfg = format!(
        "[thresholds]\ntag = -100.0\nquarantine = 200.0\nreject = 300.0\n[smtp.dkim]\n{}[smtp.dkim.arc]\nenabled = true\n",
        keys_toml(&[&seal_key])
    );
    let ours = gateway(&dns, "mx.ours.test", &ours_cfg, None).await;

    let original = message("alice@sender.example", "bob@next.test", "contract").replace(
        &format!("Message-ID: <{}.{}@test>", "contract".len(), std::process::id()),
        &format!("Message-ID: <{SENDER_MSG_ID}>"),
    );
    let signed = sender.sign(&original);
    let reply = send(ours.addr, "alice@sender.example", "bob@next.test", signed.clone()).await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let got = ours.sink.messages();
    assert_eq!(got.len(), 1);
    let sealed = String::from_utf8_lossy(&got[0].data).to_string();
    assert!(sealed.contains("Subject: [SPAM] contract"), "tagged: {sealed}");
    assert_eq!(header_count(sealed.as_bytes(), "ARC-Seal"), 1, "{sealed}");
    assert_eq!(header_count(sealed.as_bytes(), "ARC-Message-Signature"), 1);
    assert_eq!(header_count(sealed.as_bytes(), "ARC-Authentication-Results"), 1);
    assert_eq!(ours.gateway.counters.arc_sealed.load(Ordering::Relaxed), 1);
    assert_eq!(ours.gateway.counters.dkim_signed.load(Ordering::Relaxed), 0, "inbound mail is not DKIM-signed");
    assert!(sealed.contains("i=1") && sealed.contains("cv=none"), "{sealed}");
    let aar = field(&sealed, "ARC-Authentication-Results");
    assert!(
        aar.starts_with("i=1; mx.ours.test;") && aar.contains("dkim=pass"),
        "our results saw the sender's signature pass: {aar}"
    );
    assert!(field(&sealed, "ARC-Seal").contains("cv=none"), "{sealed}");
    // The sender's own signature no longer verifies (the subject changed).
    let results = verify(&dns, sealed.as_bytes()).await;
    assert!(results.iter().all(|r| r.2 != DkimResult::Pass), "{results:?}");
    // mail-auth, as a receiver, validates the chain.
    let auth = mailsift_testkit::auth::authenticator(dns.addr());
    let m = AuthenticatedMessage::parse(sealed.as_bytes()).unwrap();
    let arc = auth.verify_arc(Parameters::new(&m)).await;
    assert_eq!(arc.result(), &DkimResult::Pass, "{arc:?}");

    // The next hop that trusts us: arc=pass, the forwarding is recognised, though DKIM and DMARC fail.
    let at_next = relay_to(&next, &sealed).await;
    let ar = our_results(&at_next, "mx.next.test");
    assert!(ar.contains("arc=pass"), "{ar}");
    let symbols = field(&at_next, "X-Mailsift-Symbols");
    assert!(symbols.contains("ARC_VALID") && symbols.contains("ARC_FORWARDED"), "{symbols}");

    // A next hop that does not trust our seal sees a valid chain but takes nothing from it.
    let at_untrusting = relay_to(&untrusting, &sealed).await;
    let symbols = field(&at_untrusting, "X-Mailsift-Symbols");
    assert!(symbols.contains("ARC_VALID") && !symbols.contains("ARC_FORWARDED"), "{symbols}");

    // A tampered seal (the body changed after sealing) does not validate and vouches for nothing.
    let tampered = sealed.replace("quarterly figures", "new bank details");
    let at_next = relay_to(&next, &tampered).await;
    let ar = our_results(&at_next, "mx.next.test");
    assert!(!ar.contains("arc=pass"), "{ar}");
    let symbols = field(&at_next, "X-Mailsift-Symbols");
    assert!(!symbols.contains("ARC_FORWARDED") && !symbols.contains("ARC_VALID"), "{symbols}");
}

/// Sends `raw` to a next hop from the sender's envelope and returns what its sink got.
async fn relay_to(next: &Running, raw: &str) -> String {
    let before = next.sink.messages().len();
    let reply = send(next.addr, "alice@sender.example", "bob@next.test", raw.to_string()).await;
    assert_eq!(reply.0, 250, "{reply:?}");
    let got = next.sink.messages();
    assert_eq!(got.len(), before + 1);
    String::from_utf8_lossy(&got[before].data).to_string()
}

/// An unfolded header field's value (the first one).
fn field(raw: &str, name: &str) -> String {
    let unfolded = raw.replace("\r\n\t", " ").replace("\r\n ", " ");
    let head = unfolded.split("\r\n\r\n").next().unwrap_or("").to_string();
    head.lines()
        .find(|l| l.len() > name.len() && l[..name.len() + 1].eq_ignore_ascii_case(&format!("{name}:")))
        .map(|l| l[name.len() + 1..].trim().to_string())
        .unwrap_or_default()
}

/// The Authentication-Results field of `authserv_id`.
fn our_results(raw: &str, authserv_id: &str) -> String {
    let unfolded = raw.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .lines()
        .find(|l| l.starts_with("Authentication-Results:") && l.contains(authserv_id))
        .unwrap_or("")
        .to_string()
}
