//! The SMTP gateway: mailsift as the MX front door (inbound) and as the relay for the organisation's own
//! servers (outbound), filtering before the queue.
//!
//! A session ([`session`]) speaks ESMTP to the client; at MAIL FROM the connection-stage verdict may refuse
//! at the door; at the end of DATA the engine judges the message ([`deliver`]) and the gateway relays it to
//! the next hop ([`relay`]), stores it in quarantine, or rejects it, and only then answers the client: a 250
//! means the message is at the next hop, in a synced Maildir file, or in the synced quarantine. Every
//! transaction, refused ones included, becomes a row of the message log.
//!
//! What it is not: a queueing MTA. It keeps no outgoing queue; when the next hop cannot take a message the
//! client is told 451 and retries. So that one answer can be true for every recipient, a transaction never
//! mixes recipients with different next hops (the others get 452 and come in their own transaction).

pub mod auth;
pub mod config;
pub mod deliver;
pub mod milter;
pub mod proto;
pub mod relay;
pub mod release;
pub mod reports;
pub mod server;
pub mod session;
pub mod sink;
pub mod spamd;
pub mod spool;
pub mod tls;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use config::SmtpConfig;
pub use server::{Gateway, GatewayState, Listener, SideListener};

/// A connection, before or after STARTTLS.
pub enum Stream {
    Plain(TcpStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A placeholder while the connection is being upgraded.
    Closed,
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::ServerTls(_) | Stream::ClientTls(_))
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr, $closed:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::ServerTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::ClientTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::Closed => $closed,
        }
    };
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf), Poll::Ready(Err(closed())))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf), Poll::Ready(Err(closed())))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx), Poll::Ready(Ok(())))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx), Poll::Ready(Ok(())))
    }
}

/// Counters for the metrics endpoint and the shutdown report. Monotonic; read with [`Counters::snapshot`].
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub connections_refused: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub messages_tagged: AtomicU64,
    pub messages_quarantined: AtomicU64,
    pub messages_rejected: AtomicU64,
    pub refused_at_door: AtomicU64,
    pub relay_denied: AtomicU64,
    pub tempfailed: AtomicU64,
    pub relay_failures: AtomicU64,
    pub timeouts: AtomicU64,
    /// Scan-to-answer latency histogram: counts per upper bound in milliseconds ([`LATENCY_BUCKETS_MS`]).
    pub latency: [AtomicU64; 12],
    pub latency_sum_us: AtomicU64,
}

pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, u64::MAX];

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_latency(&self, d: std::time::Duration) {
        let ms = d.as_millis() as u64;
        let i = LATENCY_BUCKETS_MS.iter().position(|&b| ms < b).unwrap_or(LATENCY_BUCKETS_MS.len() - 1);
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Name and value of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("connections", get(&self.connections)),
            ("connections_refused", get(&self.connections_refused)),
            ("messages_delivered", get(&self.messages_delivered)),
            ("messages_tagged", get(&self.messages_tagged)),
            ("messages_quarantined", get(&self.messages_quarantined)),
            ("messages_rejected", get(&self.messages_rejected)),
            ("refused_at_door", get(&self.refused_at_door)),
            ("relay_denied", get(&self.relay_denied)),
            ("tempfailed", get(&self.tempfailed)),
            ("relay_failures", get(&self.relay_failures)),
            ("timeouts", get(&self.timeouts)),
        ]
    }
}
