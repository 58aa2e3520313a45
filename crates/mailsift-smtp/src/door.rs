//! Which door a connection came through, and what a side-protocol connection is. A leaf: the session, the
//! milter, spamd and the listeners all use it.

/// Which door a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The MX: mail for the organisation's domains (and relaying for trusted or authenticated clients).
    Inbound,
    /// Submission from the organisation's own servers: only trusted networks or authenticated users.
    Outbound,
}

/// A connection on a milter or spamd listener, TCP or Unix socket.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}
