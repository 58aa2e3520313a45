//! The `[web]` table of mailsift's TOML file: the HTTP listener, sessions, login limits and the quarantine
//! digest. Every key has a default, so `mailsift serve` with no file serves the console on 127.0.0.1:8025.
//! Unknown keys are refused, so a typo does not silently leave a setting at its default.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

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
    /// Failed logins allowed per client address (and per account name) within `login_window_secs`;
    /// more are answered 429 until the window passes.
    pub login_attempts: u32,
    pub login_window_secs: u64,
    /// Largest request body (a message POSTed to /api/v1/scan), in bytes.
    pub max_body_bytes: usize,
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
            max_body_bytes: 50 * 1024 * 1024,
            digest: DigestConfig::default(),
        }
    }
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig { enabled: true, interval_hours: 24, link_days: 7, from: String::new() }
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
        if self.digest.interval_hours == 0 || self.digest.link_days == 0 {
            return invalid("digest", "interval_hours and link_days must be at least 1");
        }
        if !self.public_url.is_empty()
            && !self.public_url.starts_with("http://")
            && !self.public_url.starts_with("https://")
        {
            return invalid("public_url", "must start with http:// or https://");
        }
        Ok(())
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
