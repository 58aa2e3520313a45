//! A small SMTP server that accepts mail and keeps (or just counts) it: the next hop in tests and in the load
//! test (`mailsift smtp-load`), and a quick stand-in for an organisation's mail server when trying mailsift.
//!
//! It can be told to misbehave the ways real next hops do: refuse some recipients, refuse or defer the message,
//! or be down (stop listening). It speaks plain ESMTP with PIPELINING; no TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// The message, dot-stuffing undone.
    pub data: Vec<u8>,
}

/// How the sink answers.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Recipients refused with 550 at RCPT.
    pub refuse_rcpts: Vec<String>,
    /// The reply to the end of data instead of 250 (e.g. `(550, "5.7.1 no")` or `(451, "4.3.0 later")`).
    pub data_reply: Option<(u16, String)>,
    /// Close the connection after answering the end of data, as a next hop with a short idle timeout does to
    /// a client that keeps connections open.
    pub hang_up_after_message: bool,
}

pub struct Sink {
    addr: SocketAddr,
    keep: bool,
    messages: Arc<Mutex<Vec<SinkMessage>>>,
    count: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    behaviour: Arc<Mutex<Behaviour>>,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Listens on `addr` (port 0 for any free port). With `keep`, every message is kept for inspection;
    /// otherwise only counted (load tests).
    pub async fn start(addr: SocketAddr, keep: bool) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let connections = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (m, c, b, n, d) = (messages.clone(), count.clone(), behaviour.clone(), connections.clone(), down.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::Relaxed);
                let _ = tcp.set_nodelay(true);
                let (m, c, b, d) = (m.clone(), c.clone(), b.clone(), d.clone());
                tokio::spawn(async move {
                    let _ = session(tcp, keep, m, c, b, d).await;
                });
            }
        });
        Ok(Sink { addr, keep, messages, count, connections, behaviour, down, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The messages kept so far (empty unless started with `keep`).
    pub fn messages(&self) -> Vec<SinkMessage> {
        debug_assert!(self.keep || self.messages.lock().unwrap().is_empty());
        self.messages.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = b;
    }

    /// Stops listening (the next hop is "down"); sessions in progress end at their next command (a
    /// connection a client keeps open is closed, not served).
    pub fn stop(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(
    tcp: tokio::net::TcpStream,
    keep: bool,
    messages: Arc<Mutex<Vec<SinkMessage>>>,
    count: Arc<AtomicU64>,
    behaviour: Arc<Mutex<Behaviour>>,
    down: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut out = Vec::new();
    out.extend_from_slice(b"220 sink ESMTP\r\n");
    let mut line = Vec::new();
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        if r.buffer().is_empty() && !out.is_empty() {
            w.write_all(&out).await?;
            out.clear();
        }
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 || down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let addr = |t: &str| t.find('<').and_then(|a| t[a + 1..].find('>').map(|b| t[a + 1..a + 1 + b].to_string()));
        if upper.starts_with("EHLO") {
            out.extend_from_slice(
                b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 104857600\r\n",
            );
        } else if upper.starts_with("HELO") {
            out.extend_from_slice(b"250 sink\r\n");
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&text).unwrap_or_default();
            rcpts.clear();
            out.extend_from_slice(b"250 2.1.0 OK\r\n");
        } else if upper.starts_with("RCPT TO:") {
            let to = addr(&text).unwrap_or_default();
            let refused = behaviour
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .refuse_rcpts
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&to));
            if refused {
                out.extend_from_slice(b"550 5.1.1 No such user here\r\n");
            } else {
                rcpts.push(to);
                out.extend_from_slice(b"250 2.1.5 OK\r\n");
            }
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                out.extend_from_slice(b"554 5.5.1 No valid recipients\r\n");
                continue;
            }
            out.extend_from_slice(b"354 go ahead\r\n");
            w.write_all(&out).await?;
            out.clear();
            let mut data = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                let l = if line.starts_with(b".") { &line[1..] } else { &line[..] };
                if keep {
                    data.extend_from_slice(l);
                }
            }
            let reply = behaviour.lock().unwrap_or_else(|e| e.into_inner()).data_reply.clone();
            match reply {
                Some((code, text)) => out.extend_from_slice(format!("{code} {text}\r\n").as_bytes()),
                None => {
                    count.fetch_add(1, Ordering::Relaxed);
                    if keep {
                        let m = SinkMessage { mail_from: from.clone(), rcpts: rcpts.clone(), data };
                        messages.lock().unwrap_or_else(|e| e.into_inner()).push(m);
                    }
                    out.extend_from_slice(b"250 2.0.0 queued\r\n");
                }
            }
            rcpts.clear();
            if behaviour.lock().unwrap_or_else(|e| e.into_inner()).hang_up_after_message {
                w.write_all(&out).await?;
                return Ok(());
            }
        } else if upper == "RSET" {
            rcpts.clear();
            out.extend_from_slice(b"250 2.0.0 OK\r\n");
        } else if upper == "QUIT" {
            out.extend_from_slice(b"221 2.0.0 bye\r\n");
            w.write_all(&out).await?;
            return Ok(());
        } else if upper == "NOOP" {
            out.extend_from_slice(b"250 2.0.0 OK\r\n");
        } else {
            out.extend_from_slice(b"502 5.5.1 not implemented\r\n");
        }
    }
}
