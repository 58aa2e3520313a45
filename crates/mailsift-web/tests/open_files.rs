//! The attack as it was reported: the gateway process at the usual limit of 1024 open files, and 1,100
//! unfinished HTTP requests from another process (Python, so the flood's sockets do not count against
//! our limit) from 44 loopback addresses. Before the HTTP caps, that stopped the SMTP listener from
//! accepting at all; now the HTTP side holds at most `max_connections` of them and the mail goes on.
//! Alone in its own test binary because it lowers the whole process's open-file limit.

// Linux: any address of 127.0.0.0/8 can be bound without setup.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::sink::Sink;
use mailsift_smtp::{Gateway, GatewayState, Listen, Listener, SmtpConfig};
use mailsift_store::Database;
use mailsift_web::{Web, WebConfig};

/// Opens `count` unfinished requests to `port`, spread over 127.0.0.2.., prints how many connected,
/// then holds them until stdin closes (or 60 s pass).
const FLOOD: &str = r#"
import resource, socket, sys, select
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
port, count, sources = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
held = []
for i in range(count):
    s = socket.socket()
    s.bind(("127.0.0.%d" % (2 + i % sources), 0))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /login HTTP/1.1\r\nHost: console.test\r\nX-Slow: ")
    except OSError:
        pass
    held.append(s)
print("flooding %d" % len(held), flush=True)
select.select([sys.stdin], [], [], 60)
"#;

/// Waits for a line on stdin, then sends one message over SMTP to 127.0.0.1:PORT and prints `sent` or
/// why not; started before the flood, since starting a process needs open files of our own.
const SEND: &str = r#"
import smtplib, sys
sys.stdin.readline()
try:
    s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.test", timeout=5)
    s.sendmail("a@sender.example", ["bob@example.com"],
               b"From: a@sender.example\r\nTo: bob@example.com\r\nSubject: during the flood\r\n\r\nhello\r\n")
    s.quit()
    print("sent", flush=True)
except Exception as e:
    print("failed: %r" % e, flush=True)
"#;

fn set_open_file_limit(soft: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write only the struct given, on this stack frame.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// The status of a GET, 0 when the connection was refused or reset (as a connection beyond the caps may
/// be).
fn http_status(http: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = std::net::TcpStream::connect(http) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: console.test\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn eleven_hundred_unfinished_http_requests_at_1024_open_files_do_not_stop_the_mail() {
    set_open_file_limit(1024);
    assert_eq!(mailsift_web::server::open_file_limit(), Some(1024));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (smtp, http, _sink) = rt.block_on(async {
        let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
        // The defaults of [web]: 256 connections, 32 per address, a 10 s header timeout.
        let text = format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n\n[[smtp.domains]]\nname = \"example.com\"\n\
             next_hop = \"{}\"\n\n[web]\nlisten = \"127.0.0.1:0\"\n\n\
             [web.digest]\nenabled = false\n",
            sink.addr()
        );
        let engine = Engine::new(EngineConfig::from_toml(&text).unwrap()).unwrap();
        let state = GatewayState::new(engine, SmtpConfig::from_toml(&text).unwrap(), dir.path()).unwrap();
        let gateway = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
        let listeners = gateway.bind().await.unwrap();
        let smtp = listeners.iter().find(|(_, l)| *l == Listener::Inbound).unwrap().0.local_addr().unwrap();
        tokio::spawn(gateway.clone().serve(listeners));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http: SocketAddr = listener.local_addr().unwrap();
        let web = Web::new(gateway, WebConfig::from_toml(&text).unwrap(), http).unwrap();
        tokio::spawn(mailsift_web::serve(web, listener));
        (smtp, http, sink)
    });

    let mut sender = Command::new("python3")
        .args(["-c", SEND, &smtp.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the SMTP client");
    let started = Instant::now();
    let mut flood = Command::new("python3")
        .args(["-c", FLOOD, &http.port().to_string(), "1100", "44"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the flood");
    let mut line = String::new();
    BufReader::new(flood.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "flooding 1100");
    let flooded_in = started.elapsed();

    // The mail goes on while the flood holds its connections: a client in another process (so that only
    // the gateway's open files are in question) gets its 220 and sends a message.
    let t = Instant::now();
    sender.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut said = String::new();
    BufReader::new(sender.stdout.take().unwrap()).read_line(&mut said).unwrap();
    let smtp_took = t.elapsed();
    let _ = sender.wait();
    assert_eq!(said.trim(), "sent", "SMTP during the flood");
    assert!(smtp_took < Duration::from_secs(5), "{smtp_took:?}");

    // Once the header timeout has closed the unfinished requests, the console answers again.
    let deadline = Instant::now() + Duration::from_secs(25);
    let console_back = loop {
        if http_status(http, "/login") == 200 {
            break started.elapsed();
        }
        assert!(Instant::now() < deadline, "the console answers again after the header timeout");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "flood of 1100 opened in {flooded_in:?}; a message went through SMTP in {smtp_took:?} during it; \
         the console answered again {console_back:?} after the flood began"
    );
    if let Some(mut stdin) = flood.stdin.take() {
        let _ = stdin.write_all(b"done\n");
    }
    drop(flood.stdin.take());
    let _ = flood.kill();
    let _ = flood.wait();
}
