//! The `[web]` table of mailsift's TOML file: the HTTP listener, sessions, login limits and the quarantine
//! digest. Every key has a default, so `mailsift serve` with no file serves the console on 127.0.0.1:8025.
//! Unknown keys are refused, so a typo does not silently leave a setting at its default.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Files beyond one per connection that the HTTP side may hold at once (see
/// [`WebConfig::open_files_needed`]).
pub const HTTP_FILE_HEADROOM: u64 = 64;

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    web: WebConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Address of the HTTP listener (API, console, digest links, metrics).
    pub listen: SocketAddr,
    /// How the console is reached from users' mail clients: digest links start with it. Empty means
    /// `http(s)://<listen>`.
    pub public_url: String,
    /// Serve HTTPS instead of HTTP, with `[smtp.tls]`'s certificate (a self-signed one is made when none
    /// is given).
    pub tls: bool,
    /// Minutes a console session lasts after login.
    pub session_minutes: u64,
    /// Failed logins allowed from one client address (an IPv6 client's whole /64) within
    /// `login_window_secs`; its further attempts are answered 429 until the window passes. Other addresses
    /// are not affected, so guessing from one address cannot lock the real user out.
    pub login_attempts: u32,
    /// The window of `login_attempts`, in seconds, counted from an address's first failure.
    pub login_window_secs: u64,
    /// Milliseconds every login for an account name waits once that name has had `login_attempts`
    /// failures (from any addresses) within the window. A delay, not a refusal: guessing from many
    /// addresses is slowed, while the account's owner still gets in. 0 turns it off.
    pub login_account_delay_ms: u64,
    /// Largest request body (a message POSTed to /api/v1/scan), in bytes.
    pub max_body_bytes: usize,
    /// Seconds a client has to send a request's headers (and, for HTTPS, finish the TLS handshake),
    /// counted from the connection's start or the end of the previous answer; then the connection is
    /// closed. Keeps unfinished requests from holding connections (and open files) for long.
    pub header_read_timeout_secs: u64,
    /// Seconds one request may take in total: reading its body, handling it and sending the answer
    /// (a request still being handled then is answered 408); a connection on which no new request has
    /// started for this long plus `header_read_timeout_secs` is closed.
    pub request_timeout_secs: u64,
    /// Simultaneous HTTP connections in total. Beyond it a new connection is answered 503 (plain HTTP)
    /// or closed (HTTPS) at once, so the HTTP side can never take the open files the SMTP listeners need.
    pub max_connections: usize,
    /// Simultaneous HTTP connections from one client address (an IPv6 client's whole /64); beyond it
    /// the same as `max_connections`, so one client cannot take all of them.
    pub max_connections_per_ip: usize,
    /// The quarantine digest.
    pub digest: DigestConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Send digests at all.
    pub enabled: bool,
    /// Hours between digests (24: daily).
    pub interval_hours: u64,
    /// Days a digest's links keep working.
    pub link_days: u64,
    /// The digest's sender (envelope and From:). Empty means `postmaster@<smtp hostname>`.
    pub from: String,
    /// With several nodes, how long the node sending digests holds that job without renewing it: it renews
    /// every third of this, and if it dies another node takes the schedule over within this long (180).
    pub lease_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: "127.0.0.1:8025".parse().expect("a literal address"),
            public_url: String::new(),
            tls: false,
            session_minutes: 8 * 60,
            login_attempts: 5,
            login_window_secs: 300,
            login_account_delay_ms: 1000,
            max_body_bytes: 50 * 1024 * 1024,
            header_read_timeout_secs: 10,
            request_timeout_secs: 60,
            max_connections: 256,
            max_connections_per_ip: 32,
            digest: DigestConfig::default(),
        }
    }
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig { enabled: true, interval_hours: 24, link_days: 7, from: String::new(), lease_secs: 180 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("[web]: {0}")]
    Toml(String),
    #[error("[web] {field}: {reason}")]
    Invalid { field: &'static str, reason: &'static str },
}

impl WebConfig {
    /// Reads `[web]` from the whole configuration file's text (other tables are the engine's and gateway's).
    pub fn from_toml(text: &str) -> Result<WebConfig, WebConfigError> {
        let file: File = toml::from_str(text).map_err(|e| WebConfigError::Toml(e.to_string()))?;
        file.web.validate()?;
        Ok(file.web)
    }

    pub fn validate(&self) -> Result<(), WebConfigError> {
        let invalid = |field, reason| Err(WebConfigError::Invalid { field, reason });
        if self.session_minutes == 0 {
            return invalid("session_minutes", "must be at least 1");
        }
        if self.login_attempts == 0 || self.login_window_secs == 0 {
            return invalid("login_attempts", "login_attempts and login_window_secs must be at least 1");
        }
        if self.login_account_delay_ms > 60_000 {
            return invalid("login_account_delay_ms", "must be at most 60000 (a minute)");
        }
        if self.header_read_timeout_secs == 0 || self.request_timeout_secs == 0 {
            return invalid(
                "header_read_timeout_secs",
                "header_read_timeout_secs and request_timeout_secs must be at least 1",
            );
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return invalid("max_connections", "max_connections and max_connections_per_ip must be at least 1");
        }
        if self.digest.interval_hours == 0 || self.digest.link_days == 0 {
            return invalid("digest", "interval_hours and link_days must be at least 1");
        }
        if !(3..=3600).contains(&self.digest.lease_secs) {
            return invalid("digest", "lease_secs must be 3 to 3600");
        }
        if !self.public_url.is_empty()
            && !self.public_url.starts_with("http://")
            && !self.public_url.starts_with("https://")
        {
            return invalid("public_url", "must start with http:// or https://");
        }
        Ok(())
    }

    /// Open files the HTTP side may need at once: one per connection, plus headroom for what requests
    /// in flight open (database handles, quarantined copies, an onward SMTP connection for a release).
    pub fn open_files_needed(&self) -> u64 {
        self.max_connections as u64 + HTTP_FILE_HEADROOM
    }

    /// The base of links in digests, without a trailing slash.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        if self.public_url.is_empty() {
            format!("{}://{bound}", if self.tls { "https" } else { "http" })
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}
