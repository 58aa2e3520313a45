//! `[smtp] proxy_protocol`: a `mailsift serve` process behind a (simulated) TCP load balancer on
//! 127.0.0.1. The client the PROXY header names is the client in the message log and in our `Received:`
//! line; a connection from an address not in `trusted_proxies` is closed without a greeting; a garbage or
//! truncated header costs only its own connection, closed within the header deadline, while good
//! connections are served. Loopback only; every wait bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailsift_testkit::Proc;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env("MAILSIFT_LOG", "warn");
    c
}

/// Starts `serve` with `config`; returns it and its SMTP and HTTP addresses.
fn serve(data: &Path, config: &str) -> (Proc, SocketAddr, SocketAddr) {
    let file = data.join("mailsift.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(data).arg("--config").arg(&file);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    let mut child = Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let (mut smtp, mut http) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (smtp.is_none() || http.is_none()) && Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let addr = || line.trim().rsplit(' ').next().unwrap().parse::<SocketAddr>().ok();
        if line.starts_with("mailsift: SMTP inbound") {
            smtp = addr();
        } else if line.starts_with("mailsift: HTTP") {
            http = addr();
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (child, smtp.expect("SMTP address announced"), http.expect("HTTP address announced"))
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-proxy", name)
}

const CONFIG: &str = "[smtp]\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\n[smtp.tls]\nenabled = false\n";

/// An SMTP client that starts with a PROXY header, as a load balancer's connection does.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn from(tcp: TcpStream, header: &[u8]) -> Client {
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = tcp.try_clone().unwrap();
        w.write_all(header).unwrap();
        Client { r: BufReader::new(tcp), w }
    }
    fn connect(addr: SocketAddr, header: &[u8]) -> Client {
        Client::from(TcpStream::connect(addr).unwrap(), header)
    }
    /// One reply; code 0 when the connection is closed.
    fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return (0, all);
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap_or(0), all);
            }
        }
    }
    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }
    /// Greeting, then one message to bob@localhost with `subject`; the answer to the end of data.
    fn send(mut self, subject: &str) -> (u16, String) {
        let (code, text) = self.reply();
        assert_eq!(code, 220, "greeting: {text}");
        assert_eq!(self.cmd("EHLO client.sender.example").0, 250);
        assert_eq!(self.cmd("MAIL FROM:<alice@sender.example>").0, 250);
        assert_eq!(self.cmd("RCPT TO:<bob@localhost>").0, 250);
        assert_eq!(self.cmd("DATA").0, 354);
        let msg = format!(
            "From: alice@sender.example\r\nTo: bob@localhost\r\nSubject: {subject}\r\n\
             Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@sender.example>\r\n\r\nHello.\r\n.\r\n"
        );
        self.w.write_all(msg.as_bytes()).unwrap();
        let answer = self.reply();
        self.cmd("QUIT");
        answer
    }
}

/// A v2 header: `command` (0 LOCAL, 1 PROXY), family byte, address block.
fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

/// The delivered copy whose subject is `subject`.
fn delivered(data: &Path, subject: &str) -> String {
    let dir = data.join("maildir").join("bob@localhost").join("new");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|m| m.contains(&format!("Subject: {subject}\r\n")))
        .unwrap_or_else(|| panic!("no delivered message with subject {subject}"))
}

/// The client address of the message-log row of the message with `subject`.
fn logged_client(data: &Path, subject: &str) -> String {
    let out = bin().arg("--data-dir").arg(data).args(["log", "list", "--subject", subject, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    row["client_ip"].as_str().unwrap_or_default().to_string()
}

/// Reads until the gateway closes the connection (or `limit` passes): what it said, and how long it took.
fn until_closed(tcp: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let mut said = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => return (said, started.elapsed()),
            Ok(n) => said.extend_from_slice(&buf[..n]),
        }
        if started.elapsed() > limit {
            return (said, started.elapsed());
        }
    }
}

fn refused_connections(http: SocketAddr) -> u64 {
    let mut c = mailsift_testkit::clients::HttpClient::new(http);
    let text = c.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("mailsift_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refused counter in {text}"))
}

#[test]
fn the_client_named_by_the_proxy_header_is_the_client_everywhere() {
    let data = temp_dir("identity");
    let (_gw, smtp, _) = serve(&data, CONFIG);

    let v1 = Client::connect(smtp, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    let (code, text) = v1.send("proxied-v1");
    assert_eq!(code, 250, "{text}");
    assert_eq!(logged_client(&data, "proxied-v1"), "192.0.2.7");
    assert!(delivered(&data, "proxied-v1").contains("from client.sender.example ([192.0.2.7])"));

    let src: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let mut block = src.octets().to_vec();
    block.extend_from_slice(&"2001:db8::25".parse::<std::net::Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&[0x9c, 0x40, 0, 25]);
    block.extend_from_slice(&[0x05, 0, 3, b'i', b'd', b'1']); // a TLV (unique id), skipped
    let (code, text) = Client::connect(smtp, &v2(0x1, 0x21, &block)).send("proxied-v2");
    assert_eq!(code, 250, "{text}");
    assert_eq!(logged_client(&data, "proxied-v2"), "2001:db8::7");
    assert!(delivered(&data, "proxied-v2").contains("([IPv6:2001:db8::7])"));

    // A balancer's own connection (v2 LOCAL, its health check) keeps the connection's address.
    let (code, text) = Client::connect(smtp, &v2(0x0, 0x00, &[])).send("proxy-local");
    assert_eq!(code, 250, "{text}");
    assert_eq!(logged_client(&data, "proxy-local"), "127.0.0.1");
}

#[test]
fn only_trusted_proxies_with_a_valid_header_get_a_greeting() {
    let data = temp_dir("refusals");
    let (_gw, smtp, http) = serve(&data, CONFIG);
    let before = refused_connections(http);

    // 127.0.0.2 is loopback too, but not in trusted_proxies: closed before anything is said.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut stranger = rt
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind("127.0.0.2:0".parse().unwrap())?;
            s.connect(smtp).await?.into_std()
        })
        .unwrap();
    stranger.set_nonblocking(false).unwrap();
    let _ = stranger.write_all(b"PROXY TCP4 192.0.2.66 127.0.0.1 40000 25\r\nEHLO x\r\n");
    let (said, took) = until_closed(&mut stranger, Duration::from_secs(10));
    assert!(said.is_empty(), "nothing said to a stranger: {:?}", String::from_utf8_lossy(&said));
    assert!(took < Duration::from_secs(3), "closed at once, took {took:?}");

    // A trusted proxy that sends SMTP instead of a header: closed without a greeting.
    let mut garbage = TcpStream::connect(smtp).unwrap();
    garbage.write_all(b"EHLO client.sender.example\r\n").unwrap();
    let (said, took) = until_closed(&mut garbage, Duration::from_secs(10));
    assert!(said.is_empty(), "no greeting: {:?}", String::from_utf8_lossy(&said));
    assert!(took < Duration::from_secs(3), "closed at once, took {took:?}");

    // A header cut short, then silence: closed when the header deadline (5 s) passes, while a good
    // connection started meanwhile is served.
    let started = Instant::now();
    let mut truncated = TcpStream::connect(smtp).unwrap();
    truncated.write_all(b"PROXY TCP4 192.0.2.8 127.0").unwrap();
    let mut v2_truncated = TcpStream::connect(smtp).unwrap();
    v2_truncated.write_all(&v2(0x1, 0x11, &[192, 0, 2, 9, 127, 0, 0, 1, 0, 1, 0, 25])[..20]).unwrap();
    let (code, text) = Client::connect(smtp, b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n").send("meanwhile");
    assert_eq!(code, 250, "{text}");
    assert!(started.elapsed() < Duration::from_secs(4), "the good connection did not wait for the stalled ones");
    for stalled in [&mut truncated, &mut v2_truncated] {
        let (said, _) = until_closed(stalled, Duration::from_secs(15));
        assert!(said.is_empty(), "no greeting: {:?}", String::from_utf8_lossy(&said));
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(10), "closed after {took:?}");
    }
    assert_eq!(logged_client(&data, "meanwhile"), "192.0.2.10");

    // The stranger and the garbage header are counted as refused connections.
    assert!(refused_connections(http) >= before + 2);
}

#[test]
fn without_proxy_protocol_nothing_changes() {
    let data = temp_dir("off");
    let (_gw, smtp, _) = serve(&data, "[smtp.tls]\nenabled = false\n");
    // The default: no header expected, the greeting comes first, the peer is the client.
    let (code, text) = Client::connect(smtp, b"").send("plain");
    assert_eq!(code, 250, "{text}");
    assert_eq!(logged_client(&data, "plain"), "127.0.0.1");
}

#[test]
fn proxy_protocol_without_trusted_proxies_is_refused_at_start() {
    let data = temp_dir("config");
    let file = data.join("mailsift.toml");
    std::fs::write(&file, "[smtp]\nproxy_protocol = true\n").unwrap();
    let out = bin().arg("--data-dir").arg(&data).arg("--config").arg(&file).args(["config", "check"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("proxy_protocol") && err.contains("trusted_proxies"), "{err}");
}

#[test]
fn the_per_address_limit_counts_the_clients_behind_the_proxy() {
    let data = temp_dir("per-ip");
    let config = CONFIG.replace("[smtp]\n", "[smtp]\nmax_connections_per_ip = 2\n");
    let (_gw, smtp, _) = serve(&data, &config);
    let header = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 40000 25\r\n").into_bytes();
    // Two connections of one client behind the balancer are its limit; a third is told so...
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(smtp, &header("192.0.2.50"));
        assert_eq!(c.reply().0, 220);
        held.push(c);
    }
    let mut third = Client::connect(smtp, &header("192.0.2.50"));
    let (code, text) = third.reply();
    assert_eq!(code, 421, "{text}");
    // ...while another client through the same balancer is served, and so is the first once one closes.
    let mut other = Client::connect(smtp, &header("192.0.2.51"));
    assert_eq!(other.reply().0, 220);
    held.pop().unwrap().cmd("QUIT");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Client::connect(smtp, &header("192.0.2.50"));
        let code = again.reply().0;
        if code == 220 {
            break;
        }
        assert!(Instant::now() < deadline, "the client's slot did not come back (got {code})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A balancer in `trusted_networks` (a common set-up: it sits in the same network as the organisation's own
/// servers) may relay for clients it names, but its own connections (v2 LOCAL, v1 UNKNOWN) are not trusted:
/// what comes through a header the balancer could not fill is a stranger's mail, and must not relay.
#[test]
fn a_balancers_own_connection_never_relays_even_when_its_network_is_trusted() {
    let data = temp_dir("local-relay");
    let config = "[smtp]\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\n\
                  [smtp.outbound]\ntrusted_networks = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n[smtp.tls]\nenabled = false\n";
    let (_gw, smtp, _) = serve(&data, config);
    let relay_attempt = |header: &[u8]| {
        let mut c = Client::connect(smtp, header);
        assert_eq!(c.reply().0, 220);
        assert_eq!(c.cmd("EHLO client.sender.example").0, 250);
        assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").0, 250);
        let (code, text) = c.cmd("RCPT TO:<victim@elsewhere.example>");
        c.cmd("QUIT");
        (code, text)
    };
    // The control: a client the balancer names inside a trusted network relays.
    let (code, text) = relay_attempt(b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 25\r\n");
    assert_eq!(code, 250, "a trusted client behind the balancer relays: {text}");
    // A client outside it does not.
    let (code, text) = relay_attempt(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    assert_eq!(code, 550, "{text}");
    // The balancer's own connections, though its address is in trusted_networks, do not.
    for header in [v2(0x0, 0x00, &[]), b"PROXY UNKNOWN\r\n".to_vec()] {
        let (code, text) = relay_attempt(&header);
        assert_eq!(code, 550, "relaying refused on the balancer's own connection: {text}");
        assert!(text.contains("5.7.1"), "{text}");
    }
    // They may still hand in mail for our own domains (a health check that goes as far as DATA).
    let (code, text) = Client::connect(smtp, b"PROXY UNKNOWN\r\n").send("local-inbound");
    assert_eq!(code, 250, "{text}");
    assert_eq!(logged_client(&data, "local-inbound"), "127.0.0.1");
}
