//! The listeners: the SMTP ports (inbound MX, outbound submission) and the milter and spamd sockets. Each
//! accepted connection takes a slot of the core's connection admission ([`Gateway::take_slot`]) and runs
//! its protocol; shutdown stops accepting, lets sessions finish the transaction in flight (idle ones are
//! told 421), and gives up after the grace period ([`Gateway::drain`]).
//!
//! The listener functions are an extension of the core's [`Gateway`] ([`Listen`]), so a caller writes
//! `gateway.bind()`, `gateway.clone().serve(listeners)`, `gateway.start_side_listeners()` with `Listen` in scope.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub use crate::door::{Conn, Listener};
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

async fn refuse(mut tcp: TcpStream, peer: SocketAddr) {
    tracing::info!(client = %peer, "too many connections; refused");
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tcp.write_all(b"421 4.7.0 Too many connections, try again later\r\n"),
    )
    .await;
}
