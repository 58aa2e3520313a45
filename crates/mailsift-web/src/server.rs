//! The HTTP listener: accepts connections, keeps them within limits, and hands requests to the router.
//!
//! The console port faces the same internet as the SMTP port and shares the process's open files with
//! it, so nothing a client does here may use up what the mail needs:
//! - a connection cap in total and per client address (`max_connections`, `max_connections_per_ip`):
//!   beyond them a connection gets a 503 written without waiting (HTTPS: is closed) and is dropped at
//!   once, so refusing costs no task and no timer;
//! - a header timeout (`header_read_timeout_secs`, for the TLS handshake and each request's head,
//!   including the wait for the next request on a kept-alive connection);
//! - a request timeout (`request_timeout_secs`, for the body, the handling and the answer), enforced
//!   twice: the handler is abandoned with a 408, and a watchdog closes a connection on which no request
//!   has started for the request timeout plus the header timeout (a client that never reads its answer).
//!
//! What it does not do: HTTP/2, or limits per request rate (logins have their own, in `auth.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use rustc_hash::FxHashMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::app::{AppState, Peer};
use crate::config::WebConfig;

/// Open connections, in total and per client address ([`crate::auth::client_key`]).
pub struct ConnectionLimits {
    total: usize,
    per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: FxHashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerAddress,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

impl ConnectionLimits {
    pub fn new(total: usize, per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits { total, per_ip, open: Mutex::new(Open::default()) })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = crate::auth::client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.total {
            return Err(Refusal::Total);
        }
        let n = open.by_ip.entry(key).or_insert(0);
        if *n >= self.per_ip {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        open.total += 1;
        Ok(Slot { limits: self.clone(), key })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        // Addresses with nothing open leave the map, so it is as large as the open connections.
        if let Some(n) = open.by_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.key);
            }
        }
    }
}

/// The answer to a connection beyond the limits. Small enough to fit a fresh socket's send buffer, so
/// it is written without waiting.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\
Retry-After: 10\r\nConnection: close\r\n\r\ntoo many connections; try again shortly.\r\n";

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    request: Duration,
}

/// Serves HTTP (or HTTPS) until the gateway shuts down. One task per admitted connection; the peer's
/// address is attached to each request for login limits and logs.
pub async fn serve(web: AppState, listener: TcpListener) {
    let app = crate::routes::router(web.clone());
    let tls = if web.config.tls {
        let state = web.gateway.state();
        match mailsift_gateway::tls::server_config(&state.config.tls, &state.config.hostname, &web.data_dir) {
            Ok(c) => Some(tokio_rustls::TlsAcceptor::from(c)),
            Err(e) => {
                tracing::error!(error = %e, "HTTPS not available; the HTTP listener is not started");
                return;
            }
        }
    } else {
        None
    };
    warn_if_few_open_files(&web.config);
    let limits = ConnectionLimits::new(web.config.max_connections, web.config.max_connections_per_ip);
    let timeouts = Timeouts {
        header: Duration::from_secs(web.config.header_read_timeout_secs),
        request: Duration::from_secs(web.config.request_timeout_secs),
    };
    let mut shutdown = web.gateway.shutdown_signal();
    crate::digest::spawn_scheduler(web.clone());
    let mut last_refusal_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of open files, most likely: wait for some to close instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let slot = match limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                if tls.is_none() {
                    let _ = stream.try_write(BUSY);
                }
                drop(stream);
                web.metrics.http_connections_refused.fetch_add(1, Ordering::Relaxed);
                // One line a minute at most: a flood must not become a flood of log lines.
                if last_refusal_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_refusal_warning = Some(Instant::now());
                    tracing::warn!(?why, %peer, open = limits.open(), "HTTP connection refused: connection limit reached");
                }
                continue;
            }
        };
        tokio::spawn(connection(app.clone(), web.clone(), tls.clone(), stream, peer, slot, timeouts));
    }
}

async fn connection(
    app: Router,
    web: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    t: Timeouts,
) {
    let base = Instant::now();
    let millis = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
    // The watchdog's deadline, in milliseconds after `base`: first the handshake and the first head
    // (hyper's own header timeout normally ends that earlier), then moved on as each request starts.
    let deadline = Arc::new(AtomicU64::new(millis(t.header + Duration::from_secs(1))));
    let service = {
        let deadline = deadline.clone();
        let web = web.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            deadline.store(millis(base.elapsed() + t.request + t.header), Ordering::Relaxed);
            let app = app.clone();
            let web = web.clone();
            async move {
                let handled = tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new));
                match tokio::time::timeout(t.request, handled).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        web.metrics.http_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "HTTP request took longer than request_timeout_secs");
                        Ok((
                            StatusCode::REQUEST_TIMEOUT,
                            [(header::CONNECTION, "close")],
                            "the request took too long\n",
                        )
                            .into_response())
                    }
                }
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(t.header);
    let served = async {
        match tls {
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(s) => builder.serve_connection(hyper_util::rt::TokioIo::new(s), service).await,
                Err(_) => Ok(()),
            },
            None => builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await,
        }
    };
    tokio::pin!(served);
    // Bounded: each turn either ends the connection or waits until a deadline that was moved later,
    // which only a new request does.
    loop {
        let until = base + Duration::from_millis(deadline.load(Ordering::Relaxed));
        tokio::select! {
            result = &mut served => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        web.metrics.http_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(until) => {
                let now_due = base + Duration::from_millis(deadline.load(Ordering::Relaxed));
                if now_due <= Instant::now() {
                    web.metrics.http_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "HTTP connection closed: no request started within the timeouts");
                    return;
                }
            }
        }
    }
}

/// The process's soft limit on open files (`RLIMIT_NOFILE`), when the platform says.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            // rlim_t is u64 on Linux but not on every Unix.
            #[allow(clippy::unnecessary_cast)]
            return Some(lim.rlim_cur as u64);
        }
        None
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Says at start when the open-file limit is below what a full HTTP side needs: then a flood of
/// connections could take files the SMTP side needs before the HTTP caps are reached.
fn warn_if_few_open_files(config: &WebConfig) {
    let need = config.open_files_needed();
    if let Some(limit) = open_file_limit() {
        if limit < need {
            tracing::warn!(
                limit,
                need,
                "the open-file limit (RLIMIT_NOFILE) is below what [web] max_connections needs; raise it \
                 (LimitNOFILE= in the systemd unit, ulimit -n) or lower max_connections"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_address_and_in_total_and_free_on_drop() {
        let l = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refusal::PerAddress));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(l.open(), 2);
        let _b2 = l.admit(b).unwrap();
        assert_eq!(l.admit("127.0.0.4".parse().unwrap()).err(), Some(Refusal::Total));
    }

    #[test]
    fn the_busy_answer_says_its_length_right() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    }
}
