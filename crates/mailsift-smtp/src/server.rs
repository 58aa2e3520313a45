//! The listeners: the SMTP ports (inbound MX, outbound submission) and the milter and spamd sockets. Each
//! accepted connection takes a slot of the core's connection admission ([`Gateway::take_slot`]) and runs
//! its protocol; shutdown stops accepting, lets sessions finish the transaction in flight (idle ones are
//! told 421), and gives up after the grace period ([`Gateway::drain`]).
//!
//! With `[smtp] proxy_protocol` the inbound listeners sit behind a TCP load balancer: a connection from an
//! address outside `trusted_proxies` is closed unread, and one from a trusted proxy must begin with a
//! PROXY header ([`crate::proxy`]), read before the greeting within [`PROXY_HEADER_TIMEOUT`]; the client it
//! names is the session's client (and the per-address limit's) from then on.
//!
//! The listener functions are an extension of the core's [`Gateway`] ([`Listen`]), so a caller writes
//! `gateway.bind()`, `gateway.clone().serve(listeners)`, `gateway.start_side_listeners()` with `Listen` in scope.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use crate::door::{Conn, Listener};
use crate::proxy::{self, Parse, ProxyError, ProxyHeader};
pub use mailsift_gateway::state::{Gateway, GatewayError, GatewayState};
use mailsift_gateway::{Counters, Stream};

/// A bound milter or spamd listener.
pub enum SideListener {
    Tcp(TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

impl SideListener {
    /// Binds `addr`; a Unix socket replaces a stale socket file and gets `mode` as its permissions.
    pub async fn bind(addr: &mailsift_gateway::config::ListenAddr, mode: u32) -> Result<SideListener, GatewayError> {
        use mailsift_gateway::config::ListenAddr;
        let err = |source| GatewayError::BindSide { addr: addr.clone(), source };
        match addr {
            ListenAddr::Tcp(a) => Ok(SideListener::Tcp(TcpListener::bind(a).await.map_err(err)?)),
            ListenAddr::Unix(path) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                // A socket file left by a previous run would make bind fail; anything else is not ours to delete.
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(path).map_err(err)?;
                }
                let l = tokio::net::UnixListener::bind(path).map_err(err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
                Ok(SideListener::Unix(l, path.clone()))
            }
        }
    }

    /// Where it listens, as configured (`inet:127.0.0.1:8891`, `unix:/path`), with the real port.
    pub fn local_addr(&self) -> String {
        match self {
            SideListener::Tcp(l) => l.local_addr().map(|a| format!("inet:{a}")).unwrap_or_default(),
            SideListener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    /// The next connection and, for TCP, the peer's address.
    async fn accept(&self) -> std::io::Result<(Box<dyn Conn>, Option<SocketAddr>)> {
        match self {
            SideListener::Tcp(l) => {
                let (tcp, peer) = l.accept().await?;
                let _ = tcp.set_nodelay(true);
                Ok((Box::new(tcp), Some(peer)))
            }
            SideListener::Unix(l, _) => Ok((Box::new(l.accept().await?.0), None)),
        }
    }
}

/// The listener functions of the gateway.
pub trait Listen {
    /// Binds the configured listeners (port 0 picks a free port; see `local_addr`).
    fn bind(&self) -> impl Future<Output = Result<Vec<(TcpListener, Listener)>, GatewayError>> + Send;

    /// Accepts connections until shutdown, then waits (up to the grace period) for sessions to finish.
    fn serve(self: Arc<Self>, listeners: Vec<(TcpListener, Listener)>) -> impl Future<Output = ()> + Send;

    /// Accepts connections on a milter or spamd listener until shutdown; each runs `handle` (with the peer's
    /// address, `None` on a Unix socket) under the same connection limits as SMTP sessions.
    fn serve_side<F, Fut>(self: Arc<Self>, listener: SideListener, handle: F) -> impl Future<Output = ()> + Send
    where
        F: Fn(Arc<Gateway>, Box<dyn Conn>, Option<SocketAddr>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static;

    /// Binds the configured milter and spamd listeners and serves them until shutdown (in the background).
    /// Returns each one's kind (`milter`, `spamd`) and address, for the caller to announce.
    fn start_side_listeners(
        self: &Arc<Self>,
    ) -> impl Future<Output = Result<Vec<(&'static str, String)>, GatewayError>> + Send;
}

impl Listen for Gateway {
    async fn bind(&self) -> Result<Vec<(TcpListener, Listener)>, GatewayError> {
        let state = self.state();
        let mut out = Vec::new();
        let all = state.config.listen.iter().map(|a| (*a, Listener::Inbound));
        for (addr, kind) in all.chain(state.config.outbound.listen.iter().map(|a| (*a, Listener::Outbound))) {
            let l = TcpListener::bind(addr).await.map_err(|source| GatewayError::Bind { addr, source })?;
            out.push((l, kind));
        }
        Ok(out)
    }

    async fn serve(self: Arc<Self>, listeners: Vec<(TcpListener, Listener)>) {
        let background = mailsift_gateway::background::start(&self);
        let mut tasks = Vec::new();
        for (listener, kind) in listeners {
            let g = self.clone();
            tasks.push(tokio::spawn(accept_loop(g, listener, kind)));
        }
        for t in tasks {
            let _ = t.await;
        }
        background.stop();
        self.drain().await;
    }

    async fn serve_side<F, Fut>(self: Arc<Self>, listener: SideListener, handle: F)
    where
        F: Fn(Arc<Gateway>, Box<dyn Conn>, Option<SocketAddr>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.shutdown_signal();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (conn, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            Counters::bump(&self.counters.connections);
            // The MTA is one client with many connections (Postfix: one per smtpd process), so only the
            // total limit applies here, not the per-IP one meant for SMTP clients.
            let ip = peer.map(|p| p.ip()).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            match self.take_slot_for(ip, false) {
                Some(slot) => {
                    let session = handle(self.clone(), conn, peer);
                    tokio::spawn(async move {
                        session.await;
                        drop(slot);
                    });
                }
                None => {
                    // Closing is the refusal: both protocols' clients report a failed connection.
                    Counters::bump(&self.counters.connections_refused);
                    tracing::info!(client = ?peer, "too many connections; refused");
                }
            }
        }
    }

    async fn start_side_listeners(self: &Arc<Self>) -> Result<Vec<(&'static str, String)>, GatewayError> {
        let config = self.state().config.clone();
        let mut bound = Vec::new();
        for addr in &config.milter.listen {
            bound.push(("milter", SideListener::bind(addr, config.milter.unix_socket_mode).await?));
        }
        for addr in &config.spamd.listen {
            bound.push(("spamd", SideListener::bind(addr, config.spamd.unix_socket_mode).await?));
        }
        let mut out = Vec::new();
        for (kind, listener) in bound {
            out.push((kind, listener.local_addr()));
            let g = self.clone();
            if kind == "milter" {
                tokio::spawn(g.serve_side(listener, crate::milter::run));
            } else {
                tokio::spawn(g.serve_side(listener, crate::spamd::run));
            }
        }
        Ok(out)
    }
}

async fn accept_loop(this: Arc<Gateway>, listener: TcpListener, kind: Listener) {
    let mut stop = this.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        Counters::bump(&this.counters.connections);
        let _ = tcp.set_nodelay(true);
        let state = this.state();
        if kind == Listener::Inbound && state.config.proxy_protocol {
            accept_proxied(&this, &state, tcp, peer);
            continue;
        }
        match this.take_slot(peer.ip()) {
            Some(slot) => {
                tokio::spawn(async move {
                    let g = slot.gateway.clone();
                    crate::session::run(g, Stream::Plain(tcp), peer, kind).await;
                    drop(slot);
                });
            }
            None => {
                Counters::bump(&this.counters.connections_refused);
                tokio::spawn(refuse(tcp, peer));
            }
        }
    }
}

/// How long a load balancer has to send the whole PROXY header after connecting. The spec asks for at least
/// 3 seconds (a TCP retransmission); a balancer sends it at once.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection on a listener that expects the PROXY protocol: only from a trusted proxy, and only with a
/// valid header, read before the greeting; the client the header names is the session's client from
/// there on. The slot is taken for the proxy without the per-address limit (one balancer carries many
/// clients) and moved to the client once its address is known.
fn accept_proxied(this: &Arc<Gateway>, state: &GatewayState, tcp: TcpStream, peer: SocketAddr) {
    if !state.is_trusted_proxy(peer.ip()) {
        // A header from anyone else would let them claim any address; without one the connection is not
        // what this listener speaks. Closing is the refusal, before a single byte is read.
        Counters::bump(&this.counters.connections_refused);
        tracing::info!(client = %peer, "connection from an address not in trusted_proxies; closed");
        return;
    }
    let Some(slot) = this.take_slot_for(peer.ip(), false) else {
        Counters::bump(&this.counters.connections_refused);
        tokio::spawn(refuse(tcp, peer));
        return;
    };
    let gateway = this.clone();
    tokio::spawn(async move {
        let mut tcp = tcp;
        let header = match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header(&mut tcp)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                Counters::bump(&gateway.counters.connections_refused);
                tracing::info!(proxy = %peer, error = %e, "PROXY header refused; closed without a greeting");
                return;
            }
            Err(_) => {
                Counters::bump(&gateway.counters.timeouts);
                tracing::info!(proxy = %peer, "no complete PROXY header within {PROXY_HEADER_TIMEOUT:?}; closed");
                return;
            }
        };
        let (client, local) = match header {
            ProxyHeader::Proxied { source, .. } => (source, false),
            ProxyHeader::Local => (peer, true),
        };
        let Some(slot) = slot.move_to_client(client.ip()) else {
            // The client's own connections are over `max_connections_per_ip`: told so, as without a proxy.
            Counters::bump(&gateway.counters.connections_refused);
            refuse(tcp, client).await;
            return;
        };
        tracing::debug!(proxy = %peer, client = %client, "PROXY header read");
        let g = slot.gateway.clone();
        if local {
            crate::session::run_proxy_local(g, Stream::Plain(tcp), client).await;
        } else {
            crate::session::run(g, Stream::Plain(tcp), client, Listener::Inbound).await;
        }
        drop(slot);
    });
}

/// Why a connection's PROXY header was not read.
#[derive(Debug, thiserror::Error)]
enum HeaderError {
    #[error("{0}")]
    Invalid(#[from] ProxyError),
    #[error("connection closed before the header was complete")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads a PROXY header, never a byte past its end (what follows is the SMTP client's), and never more
/// than the header's bound ([`proxy::parse`] says how much may still come).
async fn read_proxy_header(tcp: &mut TcpStream) -> Result<ProxyHeader, HeaderError> {
    let mut buf = [0u8; proxy::V2_FIXED + proxy::V2_MAX_ADDRESS_BLOCK];
    let mut have = 0;
    loop {
        match proxy::parse(&buf[..have]) {
            Parse::Done { header, .. } => return Ok(header),
            Parse::Invalid(e) => return Err(e.into()),
            Parse::Need(n) => {
                let end = (have + n).min(buf.len());
                let got = tcp.read(&mut buf[have..end]).await?;
                if got == 0 {
                    return Err(HeaderError::Closed);
                }
                have += got;
            }
        }
    }
}

async fn refuse(mut tcp: TcpStream, peer: SocketAddr) {
    tracing::info!(client = %peer, "too many connections; refused");
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tcp.write_all(b"421 4.7.0 Too many connections, try again later\r\n"),
    )
    .await;
}
