//! Transport security of outbound delivery: TLS required and verified towards the smarthost, SMTP AUTH
//! towards it, MTA-STS (RFC 8461) and DANE (RFC 7672) towards MX hosts. The settings (`[smtp.outbound.security]`).
//!
//! What they drive lives elsewhere: the SMTP client's STARTTLS and AUTH in `relay.rs`, the trust roots in
//! `trust.rs`, MTA-STS policies in `mta_sts.rs`, TLSA matching in `dane.rs`, and the choice per next hop in
//! `delivery.rs`. A leaf module: `config.rs` gathers these settings.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// TLS towards the smarthost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostTls {
    /// STARTTLS when the smarthost offers it (and `[smtp.relay] starttls` is on); the certificate is not
    /// verified (RFC 3207 as most MTAs practise it).
    #[default]
    Opportunistic,
    /// STARTTLS is mandatory (a smarthost that does not offer it is not used: the mail waits); the
    /// certificate is not verified.
    Required,
    /// STARTTLS is mandatory and the certificate must be valid for the smarthost's host name, signed by one
    /// of the system's trust roots or of `ca_file`.
    Verify,
}

/// A secret read from a file: never printed, never serialised.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSecurity {
    /// TLS towards the smarthost: `opportunistic` (default), `required` or `verify`.
    pub tls: SmarthostTls,
    /// Extra trust roots (PEM), beside the system's: for the smarthost's certificate (`tls = "verify"`), for
    /// the HTTPS server of MTA-STS policies and for the certificates of MX hosts under an MTA-STS policy.
    pub ca_file: Option<PathBuf>,
    /// User name for SMTP AUTH towards the smarthost (PLAIN or LOGIN, whichever it offers; only over TLS).
    /// Needs `auth_password_file`.
    pub auth_user: Option<String>,
    /// File whose first line is the AUTH password; read when the configuration is loaded, never logged.
    pub auth_password_file: Option<PathBuf>,
    /// Look up and enforce the MTA-STS policy (RFC 8461) of recipient domains delivered to by MX.
    pub mta_sts: bool,
    /// Port of the HTTPS server of MTA-STS policies (443; tests point it elsewhere).
    pub mta_sts_port: u16,
    /// Seconds to fetch an MTA-STS policy (connection, TLS, request and answer together).
    pub mta_sts_timeout_secs: u64,
    /// The password, read from `auth_password_file` at load (shared by clones of these settings).
    #[serde(skip)]
    password: Arc<OnceLock<Result<Secret, String>>>,
}

impl Default for OutboundSecurity {
    fn default() -> Self {
        OutboundSecurity {
            tls: SmarthostTls::Opportunistic,
            ca_file: None,
            auth_user: None,
            auth_password_file: None,
            mta_sts: true,
            mta_sts_port: 443,
            mta_sts_timeout_secs: 20,
            password: Arc::default(),
        }
    }
}

/// Longest password file read (the first line is used).
const MAX_PASSWORD_FILE: u64 = 4096;

impl OutboundSecurity {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid { field: field.into(), reason };
        match (&self.auth_user, &self.auth_password_file) {
            (Some(u), Some(_)) if u.is_empty() || u.chars().any(|c| c.is_control()) => {
                return Err(invalid(
                    "outbound.security.auth_user",
                    "must be a non-empty name without control characters".into(),
                ))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "outbound.security.auth_password_file",
                    "auth_user needs auth_password_file".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid("outbound.security.auth_user", "auth_password_file needs auth_user".into()))
            }
            _ => {}
        }
        if self.auth_password_file.is_some() {
            if let Err(reason) = self.password() {
                return Err(invalid("outbound.security.auth_password_file", reason));
            }
        }
        if let Some(ca) = &self.ca_file {
            if let Err(e) = std::fs::metadata(ca) {
                return Err(invalid("outbound.security.ca_file", format!("{}: {e}", ca.display())));
            }
        }
        if self.mta_sts_port == 0 {
            return Err(invalid("outbound.security.mta_sts_port", "must not be 0".into()));
        }
        if !(1..=300).contains(&self.mta_sts_timeout_secs) {
            return Err(invalid("outbound.security.mta_sts_timeout_secs", "must be 1..=300".into()));
        }
        Ok(())
    }

    /// The AUTH credentials, when configured: the user and the first line of the password file (read once,
    /// at load; the error names the file, never its content).
    pub fn credentials(&self) -> Option<Result<(String, Secret), String>> {
        let user = self.auth_user.clone()?;
        Some(self.password().map(|p| (user, p)))
    }

    fn password(&self) -> Result<Secret, String> {
        let Some(path) = &self.auth_password_file else {
            return Err("no auth_password_file".into());
        };
        self.password
            .get_or_init(|| {
                use std::io::Read;
                let mut text = String::new();
                std::fs::File::open(path)
                    .and_then(|f| f.take(MAX_PASSWORD_FILE).read_to_string(&mut text))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
                if line.is_empty() {
                    return Err(format!("{}: the first line (the password) is empty", path.display()));
                }
                Ok(Secret(Arc::from(line)))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2-secret\nsecond line\n").unwrap();
        let s =
            OutboundSecurity { auth_user: Some("relay".into()), auth_password_file: Some(file), ..Default::default() };
        s.validate().unwrap();
        let (user, pw) = s.credentials().unwrap().unwrap();
        assert_eq!((user.as_str(), pw.expose()), ("relay", "hunter2-secret"));
        assert!(!format!("{s:?} {pw:?}").contains("hunter2"));
    }

    #[test]
    fn auth_needs_both_halves_and_a_readable_file() {
        let only_user = OutboundSecurity { auth_user: Some("u".into()), ..Default::default() };
        assert!(only_user.validate().is_err());
        let missing = OutboundSecurity {
            auth_user: Some("u".into()),
            auth_password_file: Some("/nonexistent/pw".into()),
            ..Default::default()
        };
        assert!(missing.validate().unwrap_err().to_string().contains("auth_password_file"));
    }

    #[test]
    fn modes_parse() {
        let s: OutboundSecurity = toml::from_str("tls = \"verify\"\nmta_sts_port = 8443").unwrap();
        assert_eq!(s.tls, SmarthostTls::Verify);
        assert_eq!(s.mta_sts_port, 8443);
        assert!(s.mta_sts);
        assert!(toml::from_str::<OutboundSecurity>("tls = \"maybe\"").is_err());
    }
}
