//! The gateway's configuration: the `[smtp]` table of mailsift's TOML file (the engine reads the rest).
//!
//! Every field has a default, so `mailsift serve` with no file is a working gateway on loopback: SMTP on
//! 127.0.0.1:2525, mail for `localhost` accepted and stored in a Maildir per recipient under the data
//! directory. Unknown keys are refused, so a typo does not silently leave a setting at its default.

use std::net::SocketAddr;

use mailsift_engine::cidr::IpRange;
use serde::{Deserialize, Serialize};

pub use crate::config_error::ConfigError;

/// The file as the gateway sees it: only `[smtp]`; the engine checks every other table.
#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    smtp: SmtpConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Addresses the inbound (MX) listener binds.
    pub listen: Vec<SocketAddr>,
    /// Expect the PROXY protocol (HAProxy's, version 1 or 2) on the inbound listeners, for a TCP load
    /// balancer in front of several gateway nodes: each connection must begin with the header naming the
    /// real client, which then stands for the client everywhere (door checks, SPF, reputation, per-address
    /// limits, the message log, `Received:`). Only connections from `trusted_proxies` are accepted; any other
    /// is closed at once, since a header from anyone else would let them claim any address. Off by default.
    /// The outbound (submission) listeners never expect it.
    pub proxy_protocol: bool,
    /// The load balancers allowed to send the PROXY header: addresses or CIDR ranges (`10.0.0.0/8`).
    /// Required when `proxy_protocol` is on.
    pub trusted_proxies: Vec<String>,
    /// The name the gateway gives itself in its greeting, EHLO answer and `Received:` headers.
    pub hostname: String,
    /// Largest message accepted, in bytes (announced with SIZE; larger ones get 552).
    pub max_message_bytes: u64,
    /// Recipients per transaction; more get 452 and are sent by the client in another transaction.
    pub max_recipients: usize,
    /// Simultaneous connections in total; more get 421 at connect.
    pub max_connections: usize,
    /// Simultaneous connections from one client IP.
    pub max_connections_per_ip: usize,
    /// Bad commands in one session before it is closed.
    pub max_errors: u32,
    /// Seconds to wait for each command (RFC 5321 §4.5.3.2 asks a server for at least 5 minutes). It is a
    /// deadline for the whole command line, not for each read: a client that trickles a byte at a time
    /// cannot stretch it.
    pub command_timeout_secs: u64,
    /// Seconds to wait for the client's first command after the greeting (at most `command_timeout_secs`).
    /// Real MTAs speak at once; a connection that stays silent is usually a bot holding a slot, so it is
    /// given back sooner than the 5 minutes a client in the middle of a session gets.
    pub first_command_timeout_secs: u64,
    /// Percentage of `max_connections` in use above which the gateway is under stress (like Postfix's
    /// `smtpd_timeout` stress mode): every wait for a command, a block of data or a reply being read by the
    /// client is cut to `stress_timeout_secs`, so slots held by silent or trickling clients are reclaimed
    /// within seconds instead of minutes. 100 turns stress mode off.
    pub stress_percent: u8,
    /// The timeout, in seconds, for every wait while under stress (see `stress_percent`). Waits already in
    /// progress when stress begins are shortened too.
    pub stress_timeout_secs: u64,
    /// Seconds to wait for each block of message data.
    pub data_timeout_secs: u64,
    /// Most seconds one DATA or BDAT transfer may take in total, so a trickling client cannot hold a
    /// connection forever.
    pub data_total_secs: u64,
    /// Received: headers a message may already carry; more means a mail loop (554 5.4.6).
    pub max_hops: usize,
    /// Longest line of a message, in octets without its CRLF. RFC 5322 §2.1.1 says 998, and conforming MTAs
    /// (Postfix's `smtp_line_length_limit`, sendmail, Exchange) fold or encode longer lines before sending,
    /// so a longer line comes from broken software or from someone testing how the next hop splits it
    /// (a header line cut in two by the next hop becomes a header we never judged). Such a message is
    /// refused with `550 5.6.0`, after it was read to its end; the limit is checked while reading, so no
    /// line is ever buffered beyond it. Raise it for a known broken sender.
    pub max_line_octets: usize,
    /// What to do with a bare CR or bare LF (one not part of CRLF) in DATA or BDAT, and with NUL:
    /// `"normalize"` (the default) turns every bare CR and bare LF into CRLF and drops NUL before the message
    /// is judged and relayed; `"reject"` refuses the message with `550 5.6.11`. Either way only CRLF.CRLF
    /// ends DATA, and the next hop sees only CRLF lines, dot-stuffed, so no second message can be smuggled
    /// past us (the 2023 "SMTP smuggling" reports). Normalize is the default because old scripts and
    /// clients still send LF-only lines and refusing them loses real mail; a bare CR has no legitimate use,
    /// but turning it into a line end is just as safe for the next hop. Choose `"reject"` to be strict, as
    /// sendmail 8.18 is.
    pub bare_line_endings: BareLineEndings,
    /// Where `RCPT TO:<postmaster>` (no domain, which RFC 5321 §4.5.1 requires us to accept) is delivered:
    /// the recipient is rewritten to this address. Empty (the default) means `postmaster@` the first of the
    /// gateway's domains. It should be an address in one of those domains: it is routed like any other
    /// recipient, so a foreign address is refused to clients that may not relay.
    pub postmaster: String,
    /// Failed AUTH attempts from one client address (IPv6: its /64) within `auth_failure_window_secs`
    /// after which every AUTH from it is answered `454 4.7.0` without checking the password.
    pub auth_failures_per_address: u32,
    /// Failed AUTH attempts for one account name, from any address, within `auth_failure_window_secs`
    /// after which each attempt on that account waits 3 more seconds before its password is checked, except
    /// from addresses that logged in as that account before. The account is never locked: a guessing attack
    /// from elsewhere must not lock its real user out. Failures from a single address stop at
    /// `auth_failures_per_address`, so only attacks from several addresses reach this limit.
    pub auth_failures_per_account: u32,
    /// The sliding window, in seconds, over which AUTH failures are counted.
    pub auth_failure_window_secs: u64,
    /// Prefix added to the Subject of tagged mail; empty leaves the subject alone.
    pub subject_tag: String,
    /// Recipients of a second domain in one transaction get 452 4.5.3 (the client sends them separately),
    /// so every transaction has one domain's policy and next hop. See the README, "Several recipients".
    pub split_domains: bool,
    /// Seconds to finish sessions in flight at shutdown before they are cut.
    pub shutdown_grace_secs: u64,
    /// Quarantined messages older than this many days are deleted (checked hourly; 0 keeps them forever).
    pub quarantine_retention_days: u64,
    /// Message-log rows older than this many days are deleted (checked hourly; 0 keeps them forever).
    pub log_retention_days: u64,
    /// STARTTLS on both listeners.
    pub tls: TlsConfig,
    /// The domains the gateway receives mail for. Empty means the organisation's domains
    /// (`[organisation] domains`), and `localhost` when that is empty too.
    pub domains: Vec<DomainConfig>,
    /// Relay to other domains: who may, and how the mail leaves.
    pub outbound: OutboundConfig,
    /// Accounts that may authenticate (AUTH PLAIN/LOGIN, only over TLS) to send outbound mail.
    pub users: Vec<UserConfig>,
    /// Next-hop connections (inbound delivery, outbound relay).
    pub relay: RelayConfig,
    /// Addresses users send false-positive and false-negative reports to.
    pub reports: ReportsConfig,
    /// The milter listener, for Postfix and Sendmail (see `milter.rs`); off unless `listen` is set.
    pub milter: MilterConfig,
    /// The spamd-protocol listener, for spamc and SpamAssassin clients (see `spamd.rs`); off unless `listen` is set.
    pub spamd: SpamdConfig,
    /// Virus scanning through clamd (see `virus.rs`).
    pub virus: crate::virus::VirusConfig,
    /// Token-bucket rate limits by client, sender, recipient and user (see `limits.rs`).
    pub rate_limits: crate::limits::RateLimitsConfig,
    /// Greylisting, off by default (see `greylist.rs`).
    pub greylisting: crate::greylist::GreylistConfig,
    /// Compromised-account protection for outbound users (see `guard.rs`).
    pub account_guard: crate::guard::AccountGuardConfig,
    /// DKIM signing of outbound mail and ARC sealing of inbound mail we change (see `signing.rs`).
    pub dkim: crate::signing::DkimConfig,
    /// DMARC aggregate reports: collected, sent to other domains, received for ours (see `dmarc.rs`).
    pub dmarc_reports: crate::dmarc::DmarcReportsConfig,
}

/// What the gateway does with a bare CR or LF in message data (see `SmtpConfig::bare_line_endings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Bare CR and bare LF become CRLF; NUL is dropped.
    #[default]
    Normalize,
    /// A message with a bare CR, bare LF or NUL is refused with 550 5.6.11.
    Reject,
}

/// Where a milter or spamd listener binds: `127.0.0.1:8891` or `inet:127.0.0.1:8891` (TCP), or
/// `unix:/run/mailsift/milter.sock` (a Unix socket, replaced if a stale one is there).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

impl TryFrom<String> for ListenAddr {
    type Error = String;
    fn try_from(s: String) -> Result<ListenAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a Unix socket needs an absolute path (unix:/run/mailsift/milter.sock)"));
            }
            return Ok(ListenAddr::Unix(path.into()));
        }
        let addr = s.strip_prefix("inet:").unwrap_or(&s);
        addr.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("{s:?}: expected ip:port (inet:127.0.0.1:8891) or unix:/absolute/path"))
    }
}

impl From<ListenAddr> for String {
    fn from(a: ListenAddr) -> String {
        a.to_string()
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "inet:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What the milter tells the MTA about a message it put in mailsift's quarantine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterQuarantine {
    /// The MTA drops its copy (for those recipients): the message is only in mailsift's quarantine.
    #[default]
    Discard,
    /// The MTA also keeps the message in its own hold queue (Postfix: `postsuper -H` releases it).
    Hold,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// Where the milter listens; empty (the default) means no milter. Postfix: `smtpd_milters = inet:127.0.0.1:8891`.
    pub listen: Vec<ListenAddr>,
    /// What the MTA is told to do with a message mailsift quarantined: `discard` or `hold`.
    pub quarantine: MilterQuarantine,
    /// Permissions of a Unix socket (the MTA's user must be able to write to it).
    pub unix_socket_mode: u32,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig { listen: Vec::new(), quarantine: MilterQuarantine::Discard, unix_socket_mode: 0o660 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamdConfig {
    /// Where the spamd-protocol listener listens; empty (the default) means none. spamd's own port is 783.
    pub listen: Vec<ListenAddr>,
    /// Accept TELL (learn and forget), which retrains the classifiers: only for clients you trust.
    pub allow_tell: bool,
    /// Permissions of a Unix socket.
    pub unix_socket_mode: u32,
}

impl Default for SpamdConfig {
    fn default() -> Self {
        SpamdConfig { listen: Vec::new(), allow_tell: false, unix_socket_mode: 0o660 }
    }
}

/// Report addresses: mail to them is not delivered but learned from (see `reports.rs`). Accepted only from
/// clients that may relay (trusted networks, authenticated users), so outsiders cannot train the classifiers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// "This is not spam": the attached messages are learned as ham.
    pub false_positive: Vec<String>,
    /// "This is spam": the attached messages are learned as spam.
    pub false_negative: Vec<String>,
}

impl ReportsConfig {
    /// The side a report to `rcpt` teaches, if `rcpt` is a report address.
    pub fn side_for(&self, rcpt: &str) -> Option<mailsift_engine::classify::Side> {
        use mailsift_engine::classify::Side;
        let is = |list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(rcpt));
        if is(&self.false_positive) {
            Some(Side::Ham)
        } else if is(&self.false_negative) {
            Some(Side::Spam)
        } else {
            None
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            hostname: "mailsift.localhost".into(),
            max_message_bytes: 50 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_errors: 10,
            command_timeout_secs: 300,
            first_command_timeout_secs: 60,
            stress_percent: 80,
            stress_timeout_secs: 10,
            data_timeout_secs: 180,
            data_total_secs: 600,
            max_hops: 50,
            max_line_octets: 998,
            bare_line_endings: BareLineEndings::Normalize,
            postmaster: String::new(),
            auth_failures_per_address: 5,
            auth_failures_per_account: 20,
            auth_failure_window_secs: 900,
            subject_tag: "[SPAM]".into(),
            split_domains: true,
            shutdown_grace_secs: 30,
            quarantine_retention_days: 30,
            log_retention_days: 90,
            tls: TlsConfig::default(),
            domains: Vec::new(),
            outbound: OutboundConfig::default(),
            users: Vec::new(),
            relay: RelayConfig::default(),
            reports: ReportsConfig::default(),
            milter: MilterConfig::default(),
            spamd: SpamdConfig::default(),
            virus: Default::default(),
            rate_limits: Default::default(),
            greylisting: Default::default(),
            account_guard: Default::default(),
            dkim: Default::default(),
            dmarc_reports: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Offer STARTTLS.
    pub enabled: bool,
    /// PEM certificate chain. Without `cert` and `key`, a self-signed certificate for `hostname` is made
    /// once and kept in the data directory (`tls/`).
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key.
    pub key: Option<std::path::PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { enabled: true, cert: None, key: None }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainConfig {
    /// The domain, e.g. `example.com` (exact match, case-insensitive).
    pub name: String,
    /// Where accepted mail goes: `host:port` of the organisation's mail server. Without it, mail is stored
    /// in a Maildir per recipient under the data directory (`maildir/<recipient>/`).
    pub next_hop: Option<String>,
    /// When set, only these addresses are accepted (others get 550 5.1.1 at RCPT).
    pub recipients: Vec<String>,
    /// Score thresholds for mail to this domain, instead of `[thresholds]`.
    pub thresholds: Option<mailsift_engine::config::Thresholds>,
    /// ASF options set differently for this domain: `option = "on" | "off" | "test"`.
    pub asf: std::collections::BTreeMap<String, mailsift_engine::config::AsfMode>,
    /// Addresses of this domain that only spammers write to: mail to them is learned as spam and counts
    /// against the sender's reputation (added to `[classifier] spamtraps`).
    pub spamtraps: Vec<String>,
    /// Servers (IPs, CIDR ranges) allowed to send mail whose From: is this domain. Setting it (or
    /// `trusted_relays`) makes the domain protected against spoofing (added to `[organisation] protected`).
    pub sending_servers: Vec<String>,
    /// Hosted services that send for this domain, recognised by a pattern in a Received header.
    pub trusted_relays: Vec<String>,
    /// Accept recipients of this domain whose local part has `%`, `!`, `@`, `:`, a backslash or a quoted
    /// string. Off by default: those are the old routing syntaxes (`user%other.example@`, `other!user@`,
    /// `"user@other.example"@`), and a next hop that still honours one of them turns the gateway into an
    /// open relay, so they are refused at RCPT with `550 5.1.3`. Turn it on only when the domain's own
    /// server really has such mailboxes and does not route on them.
    pub allow_special_local_parts: bool,
    /// What a virus in mail of this domain gets, instead of `[smtp.virus] action`: `reject` | `quarantine`.
    pub virus_action: Option<crate::virus::VirusAction>,
    /// What a failed virus scan does to mail of this domain, instead of `[smtp.virus] on_failure`:
    /// `tempfail` | `deliver`.
    pub virus_on_failure: Option<crate::virus::OnFailure>,
}

impl DomainConfig {
    /// Checks one domain's settings as the gateway would, naming the field (for settings stored from the
    /// command line, the console or a diagnosis).
    pub fn validate(&self) -> Result<(), ConfigError> {
        SmtpConfig { domains: vec![self.clone()], ..Default::default() }.validate()
    }

    /// Whether the domain changes how mail to it is judged (it has settings of its own).
    pub fn has_engine_overrides(&self) -> bool {
        self.thresholds.is_some() || !self.asf.is_empty()
    }

    /// This domain's own thresholds and ASF options as per-message settings of the one engine (checked with
    /// `Engine::settings`, which names the domain in its errors). The gateway and the command-line tools
    /// both judge a domain's mail with them, so they cannot judge the same message differently.
    pub fn settings_config(&self) -> mailsift_engine::SettingsConfig {
        mailsift_engine::SettingsConfig {
            thresholds: self.thresholds.clone(),
            asf: self.asf.clone(),
            ..Default::default()
        }
    }
}

/// The domains the gateway has: the configured ones, each replaced by a stored domain of the same name
/// (names compare without case), then the stored ones in their order. The one place this rule is written;
/// the gateway's state, the judging tools and `config dump` all call it.
pub fn merge_domains(configured: &[DomainConfig], stored: &[DomainConfig]) -> Vec<DomainConfig> {
    let mut domains: Vec<DomainConfig> =
        configured.iter().filter(|c| !stored.iter().any(|s| s.name.eq_ignore_ascii_case(&c.name))).cloned().collect();
    domains.extend(stored.iter().cloned());
    domains
}

/// A domain as the store keeps it (its name, its settings as JSON), read back.
pub fn parse_stored_domain(name: &str, json: &str) -> Result<DomainConfig, ConfigError> {
    serde_json::from_str(json)
        .map_err(|e| ConfigError::Invalid { field: format!("domains.{name} (stored)"), reason: e.to_string() })
}

/// The organisation's own stored settings (the store's organisation row): the organisation-wide ASF modes
/// an administrator set from the console or `mailsift asf set`, over the configuration file's `[asf]`.
/// A domain's own ASF modes still win for its mail.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrganisationSettings {
    pub asf: std::collections::BTreeMap<String, mailsift_engine::config::AsfMode>,
}

impl OrganisationSettings {
    /// The stored row read back (none stored: nothing set).
    pub fn parse(json: Option<&str>) -> Result<OrganisationSettings, ConfigError> {
        match json {
            None => Ok(OrganisationSettings::default()),
            Some(j) => serde_json::from_str(j).map_err(|e| ConfigError::Invalid {
                field: "organisation settings (stored)".into(),
                reason: e.to_string(),
            }),
        }
    }

    /// Puts these settings over an engine configuration's; whether anything changed. An unknown option
    /// is named.
    pub fn fold(&self, config: &mut mailsift_engine::EngineConfig) -> Result<bool, ConfigError> {
        let mut changed = false;
        for (option, mode) in &self.asf {
            let before = config.asf.get(option);
            config.asf.set(option, *mode).map_err(|reason| invalid("organisation settings (stored)", reason))?;
            changed |= before != Some(*mode);
        }
        Ok(changed)
    }
}

/// Folds the organisation-wide facts of the gateway's domains into an engine configuration: a domain with
/// sending servers or trusted relays becomes protected against spoofing (and one of ours), and its
/// spamtraps join the classifier's. Returns whether anything changed. One function for the gateway and the
/// command-line tools (`scan`, `explain`, `rules test`, `diagnose`), so they agree on what is ours.
pub fn fold_domains(config: &mut mailsift_engine::EngineConfig, domains: &[DomainConfig]) -> bool {
    use mailsift_engine::config::ProtectedDomain;
    let mut changed = false;
    for d in domains {
        if !d.sending_servers.is_empty() || !d.trusted_relays.is_empty() {
            config.organisation.protected.retain(|p| !p.domain.eq_ignore_ascii_case(&d.name));
            config.organisation.protected.push(ProtectedDomain {
                domain: d.name.to_ascii_lowercase(),
                sending_servers: d.sending_servers.clone(),
                trusted_relays: d.trusted_relays.clone(),
            });
            if !config.organisation.domains.iter().any(|o| o.eq_ignore_ascii_case(&d.name)) {
                config.organisation.domains.push(d.name.to_ascii_lowercase());
            }
            changed = true;
        }
        for trap in &d.spamtraps {
            let trap = trap.to_ascii_lowercase();
            if !config.classifier.spamtraps.contains(&trap) {
                config.classifier.spamtraps.push(trap);
                changed = true;
            }
        }
    }
    changed
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Addresses of a listener for the organisation's own servers (submission). Empty: no such listener.
    pub listen: Vec<SocketAddr>,
    /// Clients in these networks may relay to any domain, on either listener (CIDR, e.g. `10.0.0.0/8`).
    /// Empty by default: nobody relays unless configured or authenticated.
    pub trusted_networks: Vec<String>,
    /// `host:port` every outbound message is handed to. Without it, the recipient domain's MX is looked up.
    pub smarthost: Option<String>,
    /// Port used for MX delivery (25; tests point it elsewhere).
    pub mx_port: u16,
    /// Outbound mail to other domains is accepted once it is durably queued, then delivered with retries
    /// (see `spool.rs`); `false` relays it before the answer, as inbound mail is.
    pub queue: bool,
    /// Hours an outbound message is retried before it is bounced to its sender (RFC 3464).
    pub queue_lifetime_hours: u64,
    /// Deliveries at once to one destination (a recipient domain, or the smarthost).
    pub max_per_destination: usize,
    /// Transport security towards the smarthost and MX hosts (TLS required and verified, AUTH, MTA-STS,
    /// DANE; see `transport.rs`).
    pub security: crate::transport::OutboundSecurity,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            listen: Vec::new(),
            trusted_networks: Vec::new(),
            smarthost: None,
            mx_port: 25,
            queue: true,
            queue_lifetime_hours: 120,
            max_per_destination: 8,
            security: Default::default(),
        }
    }
}

/// An account that may authenticate with AUTH PLAIN/LOGIN.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name the client gives (compared exactly).
    pub name: String,
    /// The password's Argon2id hash as a PHC string (`$argon2id$v=19$...`), as `mailsift auth-hash` prints
    /// it. Plain-text and `sha256:` entries of older versions are refused when the configuration is loaded.
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Seconds to connect to a next hop.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for each answer of the next hop (the final one after DATA included).
    pub reply_timeout_secs: u64,
    /// Use STARTTLS with the next hop when it offers it (certificates are not verified: opportunistic TLS).
    pub starttls: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig { connect_timeout_secs: 30, reply_timeout_secs: 120, starttls: true }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), reason: reason.into() }
}

impl SmtpConfig {
    /// Reads `[smtp]` from the whole configuration text and validates it.
    pub fn from_toml(text: &str) -> Result<SmtpConfig, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        file.smtp.validate()?;
        Ok(file.smtp)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(invalid("listen", "at least one address is needed"));
        }
        for p in &self.trusted_proxies {
            IpRange::parse(p).map_err(|e| invalid("trusted_proxies", e))?;
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err(invalid(
                "proxy_protocol",
                "needs trusted_proxies: the addresses or CIDR ranges of the load balancers that send the PROXY \
                 header (e.g. trusted_proxies = [\"10.0.0.0/8\"]); without them every connection would be refused",
            ));
        }
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err(invalid("hostname", "must be a host name"));
        }
        if self.max_message_bytes < 1024 {
            return Err(invalid("max_message_bytes", "must be at least 1024"));
        }
        for (field, v) in [
            ("max_recipients", self.max_recipients as u64),
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("command_timeout_secs", self.command_timeout_secs),
            ("first_command_timeout_secs", self.first_command_timeout_secs),
            ("stress_timeout_secs", self.stress_timeout_secs),
            ("auth_failures_per_address", self.auth_failures_per_address as u64),
            ("auth_failures_per_account", self.auth_failures_per_account as u64),
            ("auth_failure_window_secs", self.auth_failure_window_secs),
            ("data_timeout_secs", self.data_timeout_secs),
            ("data_total_secs", self.data_total_secs),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if self.stress_percent == 0 || self.stress_percent > 100 {
            return Err(invalid("stress_percent", "must be between 1 and 100 (100 turns stress mode off)"));
        }
        if self.max_line_octets < 78 {
            return Err(invalid("max_line_octets", "must be at least 78 (RFC 5322 §2.1.1 allows 998)"));
        }
        if !self.postmaster.is_empty() {
            let ok = self.postmaster.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !self.postmaster.contains(char::is_whitespace)
            });
            if !ok {
                return Err(invalid("postmaster", format!("{:?} is not an address (user@domain)", self.postmaster)));
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid("tls", "give both `cert` and `key`, or neither"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.domains {
            let name = d.name.to_ascii_lowercase();
            // Letters (IDN included), digits, dots, hyphens and underscores; `*` is the store's organisation row.
            let domain_char = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-' | '_');
            if name.is_empty() || !name.chars().all(domain_char) || name.starts_with('.') {
                return Err(invalid("domains", format!("{:?} is not a domain name", d.name)));
            }
            if !seen.insert(name) {
                return Err(invalid("domains", format!("{} is listed twice", d.name)));
            }
            if let Some(hop) = &d.next_hop {
                check_host_port(hop).map_err(|r| invalid(&format!("domains.{}.next_hop", d.name), r))?;
            }
            for server in &d.sending_servers {
                IpRange::parse(server).map_err(|e| invalid(&format!("domains.{}.sending_servers", d.name), e))?;
            }
            if let Some(t) = &d.thresholds {
                if !(t.tag <= t.quarantine && t.quarantine <= t.reject) {
                    return Err(invalid(
                        &format!("domains.{}.thresholds", d.name),
                        "must satisfy tag <= quarantine <= reject",
                    ));
                }
            }
            let known = mailsift_engine::config::AsfConfig::default();
            let known = toml::Value::try_from(&known).map_err(|e| invalid("asf", e.to_string()))?;
            for option in d.asf.keys() {
                if known.get(option).is_none() || option == "sensitive_words" {
                    return Err(invalid(&format!("domains.{}.asf", d.name), format!("{option}: no such ASF option")));
                }
            }
            for trap in &d.spamtraps {
                if !crate::text::domain_of(trap).eq_ignore_ascii_case(&d.name) {
                    return Err(invalid(
                        &format!("domains.{}.spamtraps", d.name),
                        format!("{trap} is not an address of {}", d.name),
                    ));
                }
            }
        }
        for n in &self.outbound.trusted_networks {
            IpRange::parse(n).map_err(|e| invalid("outbound.trusted_networks", e))?;
        }
        if let Some(h) = &self.outbound.smarthost {
            check_host_port(h).map_err(|r| invalid("outbound.smarthost", r))?;
        }
        self.virus.validate()?;
        self.rate_limits.validate()?;
        self.greylisting.validate()?;
        self.account_guard.validate()?;
        self.dkim.validate()?;
        self.dmarc_reports.validate()?;
        self.outbound.security.validate()?;
        for (field, mode) in [
            ("milter.unix_socket_mode", self.milter.unix_socket_mode),
            ("spamd.unix_socket_mode", self.spamd.unix_socket_mode),
        ] {
            if mode > 0o777 {
                return Err(invalid(field, format!("{mode:o} is not a permission mode (write it as 0o660)")));
            }
        }
        for u in &self.users {
            if u.name.is_empty() || u.password.is_empty() {
                return Err(invalid("users", "each user needs a name and a password"));
            }
            if !crate::passwords::is_argon2id_hash(&u.password) {
                return Err(invalid(
                    &format!("users.{}.password", u.name),
                    "must be an Argon2id hash ($argon2id$...); plain-text and sha256: passwords are no longer \
                     accepted: run `mailsift auth-hash` and put the line it prints here",
                ));
            }
        }
        Ok(())
    }

    pub fn trusted_networks(&self) -> Vec<IpRange> {
        self.outbound.trusted_networks.iter().filter_map(|n| IpRange::parse(n).ok()).collect()
    }

    /// The load balancers that may send the PROXY header (`trusted_proxies`, validated).
    pub fn trusted_proxies(&self) -> Vec<IpRange> {
        self.trusted_proxies.iter().filter_map(|n| IpRange::parse(n).ok()).collect()
    }
}

fn check_host_port(s: &str) -> Result<(), String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(()),
        _ => Err(format!("{s:?} must be host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_domain_replaces_the_configured_one_of_the_same_name() {
        let d = |name: &str, trap: &str| DomainConfig {
            name: name.into(),
            spamtraps: vec![trap.into()],
            ..DomainConfig::default()
        };
        let merged = merge_domains(&[d("a.example", "c"), d("B.example", "c")], &[d("b.EXAMPLE", "s")]);
        let got: Vec<(&str, &str)> = merged.iter().map(|d| (d.name.as_str(), d.spamtraps[0].as_str())).collect();
        assert_eq!(got, [("a.example", "c"), ("b.EXAMPLE", "s")]);
    }

    #[test]
    fn empty_file_is_the_loopback_default() {
        let c = SmtpConfig::from_toml("").unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert!(c.outbound.trusted_networks.is_empty());
    }

    #[test]
    fn engine_tables_are_left_to_the_engine() {
        assert!(SmtpConfig::from_toml("[thresholds]\ntag = 5.0\n[smtp]\nmax_recipients = 5\n").is_ok());
    }

    #[test]
    fn mistakes_are_named() {
        let e = SmtpConfig::from_toml("[smtp]\nmax_recipent = 5\n").unwrap_err().to_string();
        assert!(e.contains("max_recipent"), "{e}");
        let e = SmtpConfig::from_toml("[[smtp.domains]]\nname = \"a.example\"\nnext_hop = \"nohost\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("domains.a.example.next_hop"), "{e}");
        let e = SmtpConfig::from_toml("[smtp.outbound]\ntrusted_networks = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert!(e.to_string().contains("trusted_networks"), "{e}");
        let e = SmtpConfig::from_toml("[smtp.milter]\nlisten = [\"localhost\"]\n").unwrap_err().to_string();
        assert!(e.contains("unix:/absolute/path") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_in_every_table_with_the_key_and_line() {
        // SIGHUP and start both read the file with from_toml: an unknown key anywhere in [smtp] is an error.
        for (text, key, line) in [
            ("[smtp]\nlisten = [\"127.0.0.1:25\"]\nmax_conections = 5\n", "max_conections", 3),
            ("[smtp.tls]\nenabled = true\ncertfile = \"x\"\n", "certfile", 3),
            ("[[smtp.domains]]\nname = \"a.example\"\nnexthop = \"h:25\"\n", "nexthop", 3),
            ("[[smtp.domains]]\nname = \"a.example\"\nthresholds = { tag = 1.0, qurantine = 2.0 }\n", "qurantine", 3),
            ("[smtp.outbound]\ntrusted_network = []\n", "trusted_network", 2),
            ("[[smtp.users]]\nname = \"app\"\npasword = \"x\"\n", "pasword", 3),
            ("[smtp.relay]\nconnect_timeout = 5\n", "connect_timeout", 2),
            ("[smtp.reports]\nfalse_positives = []\n", "false_positives", 2),
            ("[smtp.milter]\nlistn = []\n", "listn", 2),
            ("[smtp.spamd]\nallow_tel = true\n", "allow_tel", 2),
        ] {
            let e = SmtpConfig::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
            assert!(e.contains(&format!("line {line}")), "{text}: {e}");
        }
        // The store keeps domains as JSON: the same refusal there.
        let e = serde_json::from_str::<DomainConfig>(r#"{"name":"a.example","nexthop":"h:25"}"#).unwrap_err();
        assert!(e.to_string().contains("nexthop"), "{e}");
    }

    #[test]
    fn hardening_keys_have_safe_defaults_and_are_checked() {
        let c = SmtpConfig::from_toml("").unwrap();
        assert_eq!(c.bare_line_endings, BareLineEndings::Normalize);
        assert_eq!(c.max_line_octets, 998);
        assert!(c.first_command_timeout_secs < c.command_timeout_secs);
        assert_eq!((c.stress_percent, c.stress_timeout_secs), (80, 10));
        assert!(c.postmaster.is_empty());
        let c = SmtpConfig::from_toml(
            "[smtp]\nbare_line_endings = \"reject\"\nmax_line_octets = 2000\npostmaster = \"abuse@example.com\"\n",
        )
        .unwrap();
        assert_eq!(c.bare_line_endings, BareLineEndings::Reject);
        for (text, field) in [
            ("[smtp]\nbare_line_endings = \"strip\"\n", "bare_line_endings"),
            ("[smtp]\nmax_line_octets = 10\n", "max_line_octets"),
            ("[smtp]\npostmaster = \"nobody\"\n", "postmaster"),
            ("[smtp]\nstress_percent = 0\n", "stress_percent"),
            ("[smtp]\nfirst_command_timeout_secs = 0\n", "first_command_timeout_secs"),
            ("[smtp]\nauth_failures_per_address = 0\n", "auth_failures_per_address"),
        ] {
            let e = SmtpConfig::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn special_local_parts_are_a_per_domain_choice_that_round_trips() {
        let c = SmtpConfig::from_toml("[[smtp.domains]]\nname = \"a.example\"\n").unwrap();
        assert!(!c.domains[0].allow_special_local_parts, "off by default");
        let c = SmtpConfig::from_toml("[[smtp.domains]]\nname = \"a.example\"\nallow_special_local_parts = true\n")
            .unwrap();
        let d = &c.domains[0];
        assert!(d.allow_special_local_parts);
        d.validate().unwrap();
        // What the CLI and the console store (JSON) reads back the same, and old rows without the key are off.
        let json = serde_json::to_string(d).unwrap();
        let back: DomainConfig = serde_json::from_str(&json).unwrap();
        assert!(back.allow_special_local_parts);
        back.validate().unwrap();
        let old: DomainConfig = serde_json::from_str(r#"{"name":"a.example"}"#).unwrap();
        assert!(!old.allow_special_local_parts);
    }

    #[test]
    fn legacy_passwords_are_refused_naming_the_command() {
        for password in ["s3cret-pass", "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"] {
            let text = format!("[[smtp.users]]\nname = \"app\"\npassword = \"{password}\"\n");
            let e = SmtpConfig::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains("users.app.password") && e.contains("mailsift auth-hash"), "{e}");
        }
        let hash = crate::auth::hash_password("s3cret-pass");
        let c = SmtpConfig::from_toml(&format!("[[smtp.users]]\nname = \"app\"\npassword = \"{hash}\"\n")).unwrap();
        assert!(crate::auth::verify_user(&c.users, "app", "s3cret-pass"));
    }

    #[test]
    fn the_proxy_protocol_needs_its_trusted_proxies() {
        let c = SmtpConfig::from_toml("").unwrap();
        assert!(!c.proxy_protocol && c.trusted_proxies.is_empty(), "off by default");
        let c = SmtpConfig::from_toml(
            "[smtp]\nproxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"2001:db8::/32\"]\n",
        )
        .unwrap();
        assert_eq!(c.trusted_proxies().len(), 3);
        let e = SmtpConfig::from_toml("[smtp]\nproxy_protocol = true\n").unwrap_err().to_string();
        assert!(e.contains("proxy_protocol") && e.contains("trusted_proxies"), "{e}");
        let e = SmtpConfig::from_toml("[smtp]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trusted_proxies") && e.contains("10.0.0.0/33"), "{e}");
        let e = SmtpConfig::from_toml("[smtp]\ntrusted_proxies = [\"lb.example\"]\n").unwrap_err().to_string();
        assert!(e.contains("trusted_proxies") && e.contains("lb.example"), "{e}");
    }

    #[test]
    fn milter_and_spamd_listeners() {
        let c = SmtpConfig::from_toml(
            "[smtp.milter]\nlisten = [\"inet:127.0.0.1:8891\", \"unix:/run/m.sock\"]\nquarantine = \"hold\"\n\
[smtp.spamd]\nlisten = [\"127.0.0.1:783\"]\n",
        )
        .unwrap();
        assert_eq!(c.milter.listen[0], ListenAddr::Tcp("127.0.0.1:8891".parse().unwrap()));
        assert_eq!(c.milter.listen[1], ListenAddr::Unix("/run/m.sock".into()));
        assert_eq!(c.milter.quarantine, MilterQuarantine::Hold);
        assert!(!c.spamd.allow_tell);
        assert!(SmtpConfig::from_toml("").unwrap().milter.listen.is_empty());
    }
}
