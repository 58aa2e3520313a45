//! Outbound transport security over loopback: a gateway with DNS on (the loopback DNS server) delivering
//! by MX to SMTP servers the test runs, with certificates a test CA signs for the MX names (one server, the
//! certificate chosen by SNI); MTA-STS policies served by a local HTTPS server; smarthosts that want TLS,
//! a verified certificate, and AUTH.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use mailsift_engine::{Engine, EngineConfig};
use mailsift_gateway::relay::RelayError;
use mailsift_gateway::route::Route;
use mailsift_smtp::{Gateway, GatewayState, SmtpConfig};
use mailsift_store::Database;
use mailsift_testkit::dns::{TestDns, Zone};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

// ---------------------------------------------------------------------------------------------------------
// Certificates

/// A certificate authority made by the test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { der: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `names`, signed by this CA, with the chain (leaf, CA).
    fn leaf(&self, names: &[&str]) -> Arc<CertifiedKey> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        certified(vec![cert.der().clone(), self.der.clone()], &key)
    }
}

/// A self-signed server certificate for `names` (no CA vouches for it).
fn self_signed(names: &[&str]) -> Arc<CertifiedKey> {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    certified(vec![cert.der().clone()], &key)
}

fn certified(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> Arc<CertifiedKey> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Arc::new(CertifiedKey::new(chain, rustls::crypto::ring::sign::any_supported_type(&der).unwrap()))
}

/// Picks the certificate by the name the client asked for (SNI); `default` without a match.
#[derive(Debug)]
struct BySni {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello.server_name().and_then(|n| self.by_name.get(n)).cloned().or_else(|| self.default.clone())
    }
}

fn server_tls(
    by_name: Vec<(&str, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
) -> Arc<rustls::ServerConfig> {
    let by_name = by_name.into_iter().map(|(n, k)| (n.to_string(), k)).collect();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { by_name, default }));
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------------------------
// A small SMTP server: STARTTLS (certificate by SNI), AUTH PLAIN/LOGIN, records what it receives

#[derive(Clone, Default)]
struct SmtpOptions {
    tls: Option<Arc<rustls::ServerConfig>>,
    /// AUTH required with these credentials, and the mechanisms offered ("PLAIN LOGIN", "LOGIN").
    auth: Option<(String, String, &'static str)>,
}

#[derive(Debug, Clone)]
struct Received {
    /// The name the client asked for in the TLS handshake; `None` without TLS.
    sni: Option<String>,
    tls: bool,
    auth_user: Option<String>,
    rcpts: Vec<String>,
}

#[derive(Default)]
struct Seen {
    messages: Vec<Received>,
    /// Every AUTH attempt: (user, password, accepted).
    auth: Vec<(String, String, bool)>,
    /// TLS handshakes that failed (the client refused our certificate).
    failed_handshakes: usize,
}

struct SmtpServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl SmtpServer {
    async fn start(options: SmtpOptions) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (options, seen) = (options.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), session(tcp, options, seen)).await;
                });
            }
        });
        SmtpServer { addr, seen }
    }

    fn messages(&self) -> Vec<Received> {
        self.seen.lock().unwrap().messages.clone()
    }
}

#[derive(Default)]
struct SessionState {
    sni: Option<String>,
    tls: bool,
    auth_user: Option<String>,
    rcpts: Vec<String>,
}

enum Next {
    StartTls,
    Done,
}

async fn session(tcp: TcpStream, options: SmtpOptions, seen: Arc<Mutex<Seen>>) {
    let mut state = SessionState::default();
    let mut io = BufReader::new(tcp);
    let _ = io.get_mut().write_all(b"220 test.example ESMTP\r\n").await;
    match commands(&mut io, &options, &mut state, &seen).await {
        Next::Done => {}
        Next::StartTls => {
            let acceptor = tokio_rustls::TlsAcceptor::from(options.tls.clone().expect("STARTTLS only with TLS"));
            match acceptor.accept(io.into_inner()).await {
                Ok(tls) => {
                    state.sni = tls.get_ref().1.server_name().map(str::to_string);
                    state.tls = true;
                    let mut io = BufReader::new(tls);
                    commands(&mut io, &options, &mut state, &seen).await;
                }
                Err(_) => seen.lock().unwrap().failed_handshakes += 1,
            }
        }
    }
}

async fn read_line<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    match io.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

async fn commands<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    options: &SmtpOptions,
    state: &mut SessionState,
    seen: &Arc<Mutex<Seen>>,
) -> Next {
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: &str| String::from_utf8_lossy(&b64.decode(s.trim()).unwrap_or_default()).into_owned();
    while let Some(line) = read_line(io).await {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut caps = vec!["test.example".to_string()];
            if options.tls.is_some() && !state.tls {
                caps.push("STARTTLS".into());
            }
            if let (Some((_, _, mechanisms)), true) = (&options.auth, state.tls) {
                caps.push(format!("AUTH {mechanisms}"));
            }
            caps.push("8BITMIME".into());
            let n = caps.len();
            caps.iter().enumerate().map(|(i, c)| format!("250{}{c}\r\n", if i + 1 < n { "-" } else { " " })).collect()
        } else if upper == "STARTTLS" && options.tls.is_some() && !state.tls {
            let _ = io.get_mut().write_all(b"220 go ahead\r\n").await;
            return Next::StartTls;
        } else if upper.starts_with("AUTH ") {
            let Some((user, password, _)) = &options.auth else {
                let _ = io.get_mut().write_all(b"502 no AUTH here\r\n").await;
                continue;
            };
            let words: Vec<&str> = line.split(' ').collect();
            let given = if words[1].eq_ignore_ascii_case("PLAIN") {
                let token = match words.get(2) {
                    Some(t) => decode(t),
                    None => {
                        let _ = io.get_mut().write_all(b"334 \r\n").await;
                        decode(&read_line(io).await.unwrap_or_default())
                    }
                };
                let parts: Vec<&str> = token.split('\0').collect();
                (parts.get(1).unwrap_or(&"").to_string(), parts.get(2).unwrap_or(&"").to_string())
            } else {
                let _ = io.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await;
                let u = decode(&read_line(io).await.unwrap_or_default());
                let _ = io.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await;
                let p = decode(&read_line(io).await.unwrap_or_default());
                (u, p)
            };
            let ok = given.0 == *user && given.1 == *password;
            seen.lock().unwrap().auth.push((given.0.clone(), given.1, ok));
            if ok {
                state.auth_user = Some(given.0);
                "235 2.7.0 accepted\r\n".into()
            } else {
                "535 5.7.8 credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM") {
            if options.auth.is_some() && state.auth_user.is_none() {
                "530 5.7.0 authentication required\r\n".into()
            } else {
                state.rcpts.clear();
                "250 ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO") {
            let r = line[8..].trim().trim_start_matches('<').trim_end_matches('>').to_string();
            state.rcpts.push(r);
            "250 ok\r\n".into()
        } else if upper == "DATA" {
            let _ = io.get_mut().write_all(b"354 go\r\n").await;
            while let Some(l) = read_line(io).await {
                if l == "." {
                    break;
                }
            }
            seen.lock().unwrap().messages.push(Received {
                sni: state.sni.clone(),
                tls: state.tls,
                auth_user: state.auth_user.clone(),
                rcpts: std::mem::take(&mut state.rcpts),
            });
            "250 queued\r\n".into()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok\r\n".into()
        } else if upper == "QUIT" {
            let _ = io.get_mut().write_all(b"221 bye\r\n").await;
            return Next::Done;
        } else {
            "502 not here\r\n".into()
        };
        if io.get_mut().write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    Next::Done
}

// ---------------------------------------------------------------------------------------------------------
// A small HTTPS server for MTA-STS policies (certificate by SNI, policy by Host)

async fn start_policy_server(tls: Arc<rustls::ServerConfig>, policies: HashMap<String, String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let policies = Arc::new(policies);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, policies) = (tls.clone(), policies.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let host = request
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: "))
                    .map(|h| h.split(':').next().unwrap_or("").to_string())
                    .unwrap_or_default();
                let path_ok = request.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n");
                let answer = match policies.get(&host) {
                    Some(body) if path_ok => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                };
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------------------
// Gateways

struct TestGateway {
    gateway: Arc<Gateway>,
    _dir: tempfile::TempDir,
}

fn gateway(text: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig::from_toml(text).unwrap()).unwrap();
    let state = GatewayState::new(engine, SmtpConfig::from_toml(text).unwrap(), dir.path()).unwrap();
    let gateway = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
    TestGateway { gateway, _dir: dir }
}

impl TestGateway {
    async fn deliver(&self, route: Route, rcpt: &str) -> Result<(), RelayError> {
        let state = self.gateway.state();
        let message = format!("From: app@sender.test\r\nTo: {rcpt}\r\nSubject: hello\r\n\r\nA message.\r\n");
        let rcpts = [rcpt.to_string()];
        let delivery = mailsift_gateway::delivery::deliver(
            &self.gateway,
            &state,
            &route,
            "app@sender.test",
            &rcpts,
            message.as_bytes(),
        );
        tokio::time::timeout(Duration::from_secs(60), delivery).await.expect("delivery ends").map(|_| ())
    }

    fn policy_failures(&self) -> u64 {
        self.gateway.counters.tls_policy_failures.load(Ordering::Relaxed)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn temporary(r: Result<(), RelayError>) -> String {
    match r {
        Err(RelayError::Temporary(text)) => text,
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// MTA-STS towards MX hosts

const ENFORCE_GOOD: &str = "version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 86400\n";

/// One SMTP server for every MX (the certificate chosen by SNI), one HTTPS server for every policy, the
/// DNS that ties them together, and a gateway delivering by MX.
struct MtaSts {
    smtp: SmtpServer,
    gw: TestGateway,
    _dns: TestDns,
    _files: tempfile::TempDir,
}

async fn mta_sts_world() -> MtaSts {
    let ca = Ca::new("Test CA");
    let rogue_ca = Ca::new("Rogue CA");
    let files = tempfile::tempdir().unwrap();
    let ca_file = write(files.path(), "ca.pem", &ca.pem);
    // MX certificates: valid for their names, or for another name (mismatched).
    let smtp_tls = server_tls(
        vec![
            ("mx.good.test", ca.leaf(&["mx.good.test"])),
            ("mx.bad.test", ca.leaf(&["wrong.example"])),
            ("mx1.two.test", ca.leaf(&["wrong.example"])),
            ("mx2.two.test", ca.leaf(&["*.two.test"])),
            ("rogue.notlisted.test", ca.leaf(&["rogue.notlisted.test"])),
            ("mx.notlisted.test", ca.leaf(&["mx.notlisted.test"])),
            ("mx.testing.test", ca.leaf(&["wrong.example"])),
            ("mx.untrusted.test", ca.leaf(&["wrong.example"])),
            ("mx.txtmode.test", ca.leaf(&["wrong.example"])),
            ("a.b.wild.test", ca.leaf(&["a.b.wild.test"])),
            ("wild.test", ca.leaf(&["wild.test"])),
        ],
        // MX hosts without MTA-STS get some certificate (opportunistic TLS takes any).
        Some(ca.leaf(&["default.example"])),
    );
    let smtp = SmtpServer::start(SmtpOptions { tls: Some(smtp_tls), auth: None }).await;
    let policy = |mode: &str, mx: &[&str]| {
        let mx: String = mx.iter().map(|m| format!("mx: {m}\n")).collect();
        format!("version: STSv1\nmode: {mode}\n{mx}max_age: 86400\n")
    };
    let mut policies = HashMap::new();
    policies.insert("mta-sts.good.test".to_string(), ENFORCE_GOOD.to_string());
    policies.insert("mta-sts.bad.test".to_string(), policy("enforce", &["mx.bad.test"]));
    policies.insert("mta-sts.two.test".to_string(), policy("enforce", &["*.two.test"]));
    policies.insert("mta-sts.notlisted.test".to_string(), policy("enforce", &["mx.notlisted.test"]));
    policies.insert("mta-sts.testing.test".to_string(), policy("testing", &["mx.testing.test"]));
    policies.insert("mta-sts.untrusted.test".to_string(), policy("enforce", &["mx.untrusted.test"]));
    policies.insert("mta-sts.txtmode.test".to_string(), policy("enforce", &["mx.txtmode.test"]));
    policies.insert("mta-sts.wild.test".to_string(), policy("enforce", &["*.wild.test"]));
    let mut by_name: Vec<(&str, Arc<CertifiedKey>)> = Vec::new();
    let names = ["good", "bad", "two", "notlisted", "testing", "txtmode", "wild"].map(|d| format!("mta-sts.{d}.test"));
    for n in &names {
        by_name.push((n.as_str(), ca.leaf(&[n.as_str()])));
    }
    // This domain's policy server has a certificate no trusted CA signed: its policy is not a policy.
    by_name.push(("mta-sts.untrusted.test", rogue_ca.leaf(&["mta-sts.untrusted.test"])));
    let https = start_policy_server(server_tls(by_name, None), policies).await;

    let mut zone = Zone::new();
    for d in ["good", "bad", "notlisted", "testing", "untrusted", "txtmode", "wild", "two"] {
        let domain = format!("{d}.test");
        zone.a(&format!("mta-sts.{domain}"), "127.0.0.1");
        let txt = if d == "txtmode" { "v=STSv1; id=1; mode=none" } else { "v=STSv1; id=1" };
        zone.txt(&format!("_mta-sts.{domain}"), txt);
    }
    zone.mx("good.test", 10, "mx.good.test").a("mx.good.test", "127.0.0.1");
    zone.mx("bad.test", 10, "mx.bad.test").a("mx.bad.test", "127.0.0.1");
    zone.mx("two.test", 10, "mx1.two.test").a("mx1.two.test", "127.0.0.1");
    zone.mx("two.test", 20, "mx2.two.test").a("mx2.two.test", "127.0.0.1");
    zone.mx("notlisted.test", 10, "rogue.notlisted.test").a("rogue.notlisted.test", "127.0.0.1");
    zone.mx("notlisted.test", 20, "mx.notlisted.test").a("mx.notlisted.test", "127.0.0.1");
    zone.mx("testing.test", 10, "mx.testing.test").a("mx.testing.test", "127.0.0.1");
    zone.mx("untrusted.test", 10, "mx.untrusted.test").a("mx.untrusted.test", "127.0.0.1");
    zone.mx("txtmode.test", 10, "mx.txtmode.test").a("mx.txtmode.test", "127.0.0.1");
    zone.mx("wild.test", 10, "a.b.wild.test").a("a.b.wild.test", "127.0.0.1");
    zone.mx("wild.test", 20, "wild.test").a("wild.test", "127.0.0.1");
    // No MTA-STS at all: delivered as before, opportunistic TLS.
    zone.mx("plain.test", 10, "mx.plain.test").a("mx.plain.test", "127.0.0.1");
    let dns = TestDns::start(zone);
    let text = format!(
        "[dns]\nnameservers = [\"{}\"]\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"gw.sender.test\"\n\
         [smtp.outbound]\ntrusted_networks = [\"127.0.0.0/8\"]\nmx_port = {}\nqueue = false\n\
         [smtp.outbound.security]\nca_file = \"{}\"\nmta_sts_port = {}\nmta_sts_timeout_secs = 5\n",
        dns.addr(),
        smtp.addr.port(),
        ca_file.display(),
        https.port()
    );
    MtaSts { smtp, gw: gateway(&text), _dns: dns, _files: files }
}

fn delivered_to(world: &MtaSts, rcpt: &str) -> Vec<Received> {
    world.smtp.messages().into_iter().filter(|m| m.rcpts.iter().any(|r| r == rcpt)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_enforce_delivers_only_over_verified_tls_to_listed_mx_hosts() {
    let w = mta_sts_world().await;

    // The listed MX with a certificate for its name: delivered over TLS, the MX name asked for.
    w.gw.deliver(Route::Mx("good.test".into()), "a@good.test").await.unwrap();
    let got = delivered_to(&w, "a@good.test");
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
    assert_eq!(got[0].sni.as_deref(), Some("mx.good.test"));
    assert_eq!(w.gw.policy_failures(), 0);
    assert_eq!(w.gw.gateway.mta_sts.len(), 1, "the policy is kept");

    // The only MX presents a certificate for another name: not delivered, deferred, the reason names
    // MTA-STS, counted.
    let reason = temporary(w.gw.deliver(Route::Mx("bad.test".into()), "b@bad.test").await);
    assert!(reason.contains("MTA-STS"), "{reason}");
    assert!(reason.contains("mx.bad.test"), "{reason}");
    assert!(delivered_to(&w, "b@bad.test").is_empty());
    assert_eq!(w.gw.policy_failures(), 1);

    // The first MX fails its certificate, the second (a wildcard certificate, allowed by §4.1) is used.
    w.gw.deliver(Route::Mx("two.test".into()), "c@two.test").await.unwrap();
    let got = delivered_to(&w, "c@two.test");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sni.as_deref(), Some("mx2.two.test"));

    // An MX not in the policy is never contacted, even though it is preferred and its certificate is
    // valid for its name.
    let before = w.smtp.seen.lock().unwrap().failed_handshakes;
    w.gw.deliver(Route::Mx("notlisted.test".into()), "d@notlisted.test").await.unwrap();
    let got = delivered_to(&w, "d@notlisted.test");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sni.as_deref(), Some("mx.notlisted.test"));
    assert_eq!(w.smtp.seen.lock().unwrap().failed_handshakes, before);

    // `mx: *.wild.test` covers neither `a.b.wild.test` nor `wild.test`: nothing is used.
    let reason = temporary(w.gw.deliver(Route::Mx("wild.test".into()), "e@wild.test").await);
    assert!(reason.contains("MTA-STS") && reason.contains("a.b.wild.test") && reason.contains("wild.test"), "{reason}");
    assert!(delivered_to(&w, "e@wild.test").is_empty());

    // A domain without MTA-STS: delivered as before (opportunistic TLS).
    w.gw.deliver(Route::Mx("plain.test".into()), "f@plain.test").await.unwrap();
    assert_eq!(delivered_to(&w, "f@plain.test").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_testing_delivers_and_counts() {
    let w = mta_sts_world().await;
    w.gw.deliver(Route::Mx("testing.test".into()), "a@testing.test").await.unwrap();
    let got = delivered_to(&w, "a@testing.test");
    assert_eq!(got.len(), 1, "testing mode delivers despite the mismatched certificate");
    assert!(got[0].tls);
    assert_eq!(w.gw.policy_failures(), 1, "and counts the failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_untrusted_policies_change_nothing() {
    let w = mta_sts_world().await;
    // A policy served over a certificate no trusted CA signed is not a policy: the domain is treated as
    // having none (RFC 8461 §5.1), and the mail goes out as before.
    w.gw.deliver(Route::Mx("untrusted.test".into()), "a@untrusted.test").await.unwrap();
    assert_eq!(delivered_to(&w, "a@untrusted.test").len(), 1);
    assert_eq!(w.gw.gateway.mta_sts.len(), 0, "nothing kept");
    // `mode=none` in the TXT record means nothing (the mode is only in the HTTPS policy): enforced.
    let reason = temporary(w.gw.deliver(Route::Mx("txtmode.test".into()), "b@txtmode.test").await);
    assert!(reason.contains("MTA-STS"), "{reason}");
    assert!(delivered_to(&w, "b@txtmode.test").is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// Smarthost: TLS required or verified, AUTH

struct Smarthost {
    server: SmtpServer,
    gw: TestGateway,
    _files: tempfile::TempDir,
}

/// A smarthost on `localhost:<port>` with `options`, and a gateway relaying to it with `security` (lines
/// of `[smtp.outbound.security]`; `{ca}` and `{pw}` stand for the CA file and a password file).
async fn smarthost(ca: &Ca, options: SmtpOptions, security: &str, password: &str) -> Smarthost {
    let server = SmtpServer::start(options).await;
    let files = tempfile::tempdir().unwrap();
    let ca_file = write(files.path(), "ca.pem", &ca.pem);
    let pw_file = write(files.path(), "password", &format!("{password}\n"));
    let security =
        security.replace("{ca}", &ca_file.display().to_string()).replace("{pw}", &pw_file.display().to_string());
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"gw.sender.test\"\n\
         [smtp.outbound]\nsmarthost = \"localhost:{}\"\nqueue = false\n[smtp.outbound.security]\n{security}\n",
        server.addr.port()
    );
    Smarthost { server, gw: gateway(&text), _files: files }
}

impl Smarthost {
    async fn send(&self, rcpt: &str) -> Result<(), RelayError> {
        let target = format!("localhost:{}", self.server.addr.port());
        self.gw.deliver(Route::Smarthost(target), rcpt).await
    }
}

fn tls_with(cert: Arc<CertifiedKey>) -> Option<Arc<rustls::ServerConfig>> {
    Some(server_tls(vec![], Some(cert)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_tls_verify_takes_only_a_certificate_for_its_name_from_a_trusted_ca() {
    let ca = Ca::new("Test CA");
    let verify = "tls = \"verify\"\nca_file = \"{ca}\"";
    // The right name, signed by the configured CA: delivered over TLS.
    let good = smarthost(&ca, SmtpOptions { tls: tls_with(ca.leaf(&["localhost"])), auth: None }, verify, "x").await;
    good.send("a@remote.test").await.unwrap();
    let got = good.server.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
    assert_eq!(got[0].sni.as_deref(), Some("localhost"));
    // A second message reuses the verified connection (same settings).
    good.send("b@remote.test").await.unwrap();
    assert_eq!(good.server.messages().len(), 2);

    // Another name: deferred, with the reason, counted; nothing delivered.
    let wrong = smarthost(&ca, SmtpOptions { tls: tls_with(ca.leaf(&["other.test"])), auth: None }, verify, "x").await;
    let reason = temporary(wrong.send("a@remote.test").await);
    assert!(reason.contains("verify"), "{reason}");
    assert!(wrong.server.messages().is_empty());
    assert_eq!(wrong.gw.policy_failures(), 1);

    // Self-signed for the right name: deferred.
    let selfsigned =
        smarthost(&ca, SmtpOptions { tls: tls_with(self_signed(&["localhost"])), auth: None }, verify, "x").await;
    temporary(selfsigned.send("a@remote.test").await);
    assert!(selfsigned.server.messages().is_empty());

    // The same self-signed smarthost under opportunistic TLS: delivered (certificates not verified).
    let opportunistic =
        smarthost(&ca, SmtpOptions { tls: tls_with(self_signed(&["localhost"])), auth: None }, "", "x").await;
    opportunistic.send("a@remote.test").await.unwrap();
    assert!(opportunistic.server.messages()[0].tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_tls_required_without_starttls_defers() {
    let ca = Ca::new("Test CA");
    let plain = smarthost(&ca, SmtpOptions::default(), "tls = \"required\"", "x").await;
    let reason = temporary(plain.send("a@remote.test").await);
    assert!(reason.contains("STARTTLS"), "{reason}");
    assert!(plain.server.messages().is_empty());
    assert_eq!(plain.gw.policy_failures(), 1);
    // Required (not verified) takes a self-signed certificate.
    let tls =
        smarthost(&ca, SmtpOptions { tls: tls_with(self_signed(&["x.test"])), auth: None }, "tls = \"required\"", "x")
            .await;
    tls.send("a@remote.test").await.unwrap();
    assert!(tls.server.messages()[0].tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_auth_sends_the_credentials_only_over_tls_and_never_shows_the_password() {
    let ca = Ca::new("Test CA");
    let security = "tls = \"verify\"\nca_file = \"{ca}\"\nauth_user = \"relay-user\"\nauth_password_file = \"{pw}\"";
    let password = "Correct-Horse-7";
    for mechanisms in ["PLAIN LOGIN", "LOGIN"] {
        let options = SmtpOptions {
            tls: tls_with(ca.leaf(&["localhost"])),
            auth: Some(("relay-user".into(), password.into(), mechanisms)),
        };
        let ok = smarthost(&ca, options.clone(), security, password).await;
        ok.send("a@remote.test").await.unwrap();
        let got = ok.server.messages();
        assert_eq!(got[0].auth_user.as_deref(), Some("relay-user"), "{mechanisms}");
        assert!(got[0].tls);

        // A wrong password: refused by the smarthost, the mail waits (temporary), and neither the
        // password nor its encoding appears in the error.
        let wrong_password = "Wrong-Battery-9";
        let bad = smarthost(&ca, options, security, wrong_password).await;
        let reason = temporary(bad.send("a@remote.test").await);
        assert!(reason.contains("AUTH") && reason.contains("535"), "{reason}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(wrong_password);
        assert!(!reason.contains(wrong_password) && !reason.contains(&encoded), "{reason}");
        assert!(!format!("{:?}", bad.gw.gateway.state().config).contains(wrong_password));
        let attempts = bad.server.seen.lock().unwrap().auth.clone();
        assert_eq!(
            attempts,
            vec![("relay-user".to_string(), wrong_password.to_string(), false)],
            "sent once, as configured"
        );
        assert!(bad.server.messages().is_empty());
    }

    // A smarthost without STARTTLS never sees the credentials.
    let plain = SmtpOptions { tls: None, auth: Some(("relay-user".into(), password.into(), "PLAIN LOGIN")) };
    let cleartext = smarthost(&ca, plain, "auth_user = \"relay-user\"\nauth_password_file = \"{pw}\"", password).await;
    let reason = temporary(cleartext.send("a@remote.test").await);
    assert!(reason.contains("TLS"), "{reason}");
    assert!(cleartext.server.seen.lock().unwrap().auth.is_empty());
}

/// One SMTP command line and the gateway's (last) reply line.
async fn command(io: &mut BufReader<TcpStream>, line: &str) -> String {
    if !line.is_empty() {
        io.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    }
    loop {
        let mut reply = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), io.read_line(&mut reply)).await.unwrap().unwrap();
        assert!(n > 0, "the gateway closed the connection after {line:?}");
        if reply.as_bytes().get(3) != Some(&b'-') {
            return reply.trim_end().to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_gateway_a_refused_mx_is_a_451_and_the_log_names_mta_sts() {
    use mailsift_smtp::Listen;
    let w = mta_sts_world().await;
    let gateway = w.gw.gateway.clone();
    let listeners = gateway.bind().await.unwrap();
    let addr = listeners[0].0.local_addr().unwrap();
    let task = tokio::spawn(gateway.clone().serve(listeners));
    let mut io = BufReader::new(TcpStream::connect(addr).await.unwrap());
    assert!(command(&mut io, "").await.starts_with("220"));
    command(&mut io, "EHLO app.internal.test").await;
    for (rcpt, expected) in [("x@bad.test", "451"), ("y@good.test", "250")] {
        assert!(command(&mut io, "MAIL FROM:<app@sender.test>").await.starts_with("250"));
        assert!(command(&mut io, &format!("RCPT TO:<{rcpt}>")).await.starts_with("250"));
        assert!(command(&mut io, "DATA").await.starts_with("354"));
        let body = format!("From: app@sender.test\r\nTo: {rcpt}\r\nSubject: invoice\r\n\r\nHello.\r\n.");
        let reply = command(&mut io, &body).await;
        assert!(reply.starts_with(expected), "{rcpt}: {reply}");
    }
    assert!(delivered_to(&w, "x@bad.test").is_empty());
    assert_eq!(delivered_to(&w, "y@good.test").len(), 1);
    // The message log says why the first one waits.
    let mut found = None;
    for _ in 0..50 {
        let log = gateway.db.log_search(&mailsift_store::LogQuery::default()).unwrap();
        found = log.into_iter().find(|e| e.recipients == ["x@bad.test"]);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = found.expect("a log entry for the deferred message");
    assert_eq!(entry.action, "tempfail");
    assert!(entry.reason.as_deref().unwrap_or("").contains("MTA-STS"), "{entry:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_kept_from_an_unverified_session_never_carries_a_verified_delivery() {
    use mailsift_gateway::relay::{ConnectionCache, HopSecurity, HopTls, RelayClient, SecuredError};
    let ca = Ca::new("Test CA");
    let server = SmtpServer::start(SmtpOptions { tls: tls_with(self_signed(&["localhost"])), auth: None }).await;
    let files = tempfile::tempdir().unwrap();
    let ca_file = write(files.path(), "ca.pem", &ca.pem);
    let cache = Arc::new(ConnectionCache::default());
    let client = RelayClient {
        helo: "gw.sender.test".into(),
        connect_timeout: Duration::from_secs(10),
        reply_timeout: Duration::from_secs(10),
        tls: Some(mailsift_gateway::tls::client_config()),
        cache: cache.clone(),
    };
    let target = format!("localhost:{}", server.addr.port());
    let rcpts = vec!["a@remote.test".to_string()];
    let message = b"Subject: x\r\n\r\nx\r\n";
    client.deliver(&target, "app@sender.test", &rcpts, message).await.unwrap();
    assert_eq!(cache.idle_connections(), 1, "the opportunistic connection is kept");
    let verify = HopSecurity {
        tls: HopTls::Verify(mailsift_gateway::trust::verifying_config(Some(&ca_file)).unwrap(), "test CA".into()),
        server_name: Some("localhost".into()),
        auth: None,
        required_by: "this test".into(),
    };
    let e = client.deliver_secured(&target, &verify, "app@sender.test", &rcpts, message).await.unwrap_err();
    assert!(matches!(&e, SecuredError::Policy(reason) if reason.contains("this test")), "{e:?}");
    assert_eq!(server.messages().len(), 1, "not delivered over the kept unverified connection");
    // The kept connection still serves opportunistic deliveries.
    client.deliver(&target, "app@sender.test", &rcpts, message).await.unwrap();
    assert_eq!(server.messages().len(), 2);
}
