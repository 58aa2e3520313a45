//! Greylisting (`[smtp.greylisting]`, off by default): the first mail of an unknown (network, sender, recipient) triplet is deferred.
//!
//! The idea (RFC 6647): a real mail server queues a deferred message and tries again; much bulk-sending
//! software does not. The first attempt of a triplet (the client's /24 or /64, the envelope sender, the
//! recipient) is answered `451 4.7.1` at RCPT TO; a retry after `delay_secs` and within `window_secs` of
//! the first is accepted, and the triplet is remembered for `pass_ttl_days` after its last message, so
//! mail that keeps coming is never delayed again. The cost is real: legitimate first mail arrives late
//! (by the sender's retry schedule, often 15 minutes or more), which is why it is off by default.
//!
//! Skipped: outbound mail (authenticated users and trusted networks), clients with a good local reputation
//! (`skip_good_reputation`: enough good evidence and little bad), and senders of the domains in
//! `skip_authenticated_domains` when SPF passes for them. It is decided at RCPT TO, as Postfix policy
//! servers do, so the deferred client has sent no data: DKIM is known only after DATA, so a domain on the
//! list is skipped on SPF (which needs `[dns] enabled`) and not on DKIM. Deferring after DATA instead
//! (as Rspamd does) would let DKIM count, at the cost of receiving every first message whole, twice.
//!
//! The triplets live where rate-limit buckets do ([`crate::limits::Limiter`]): memory with a snapshot (one
//! node, kept over restarts) or Redis (shared by the nodes). When the store does not answer, the mail is
//! accepted (fail open, counted): a broken store must not defer all new mail.

use std::net::IpAddr;

use mailsift_store::limits::GreyTimes;
use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;
use crate::limits::{network_of, push_key_part};

/// `[smtp.greylisting]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreylistConfig {
    /// Off by default: it delays every legitimate first message from a new sender.
    pub enabled: bool,
    /// How long after the first attempt a retry is accepted (seconds).
    pub delay_secs: u64,
    /// How long after the first attempt a retry still counts (seconds); later, it starts again.
    pub window_secs: u64,
    /// How long a passed triplet is remembered after its last message (days).
    pub pass_ttl_days: u64,
    /// The client network of a triplet: its IPv4 /prefix (senders retry from other addresses of their pool).
    pub ipv4_prefix: u8,
    /// The same for IPv6.
    pub ipv6_prefix: u8,
    /// Sender domains never greylisted when SPF passes for them (needs `[dns] enabled`).
    pub skip_authenticated_domains: Vec<String>,
    /// Whether a client address with a good local reputation (`[reputation]`) is skipped.
    pub skip_good_reputation: bool,
    /// The good evidence (decayed count of clean messages) that makes a reputation good, with at most a
    /// tenth as much bad evidence.
    pub good_reputation_ham: f64,
}

impl Default for GreylistConfig {
    fn default() -> Self {
        GreylistConfig {
            enabled: false,
            delay_secs: 300,
            window_secs: 4 * 3_600,
            pass_ttl_days: 36,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            skip_authenticated_domains: Vec::new(),
            skip_good_reputation: true,
            good_reputation_ham: 5.0,
        }
    }
}

impl GreylistConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &str, reason: String| ConfigError::Invalid { field: format!("greylisting.{field}"), reason };
        if self.delay_secs > 86_400 {
            return Err(invalid("delay_secs", format!("{} is more than a day", self.delay_secs)));
        }
        if self.window_secs <= self.delay_secs || self.window_secs > 7 * 86_400 {
            return Err(invalid(
                "window_secs",
                format!("{} must be longer than delay_secs ({}) and at most a week", self.window_secs, self.delay_secs),
            ));
        }
        if !(1..=366).contains(&self.pass_ttl_days) {
            return Err(invalid("pass_ttl_days", format!("{} is not between 1 and 366", self.pass_ttl_days)));
        }
        if !(8..=32).contains(&self.ipv4_prefix) {
            return Err(invalid("ipv4_prefix", format!("{} is not between 8 and 32", self.ipv4_prefix)));
        }
        if !(16..=128).contains(&self.ipv6_prefix) {
            return Err(invalid("ipv6_prefix", format!("{} is not between 16 and 128", self.ipv6_prefix)));
        }
        if !(self.good_reputation_ham.is_finite() && self.good_reputation_ham > 0.0) {
            return Err(invalid("good_reputation_ham", "must be a positive number".into()));
        }
        Ok(())
    }

    pub fn times(&self) -> GreyTimes {
        GreyTimes {
            delay_ms: self.delay_secs * 1000,
            window_ms: self.window_secs * 1000,
            pass_ttl_ms: self.pass_ttl_days * 86_400_000,
        }
    }

    /// The triplet's key: `g:<network>|<sender>|<recipient>` (lower case, each part bounded).
    pub fn triplet_key(&self, ip: IpAddr, sender: &str, recipient: &str) -> String {
        let mut key = String::with_capacity(160);
        key.push_str("g:");
        key.push_str(&network_of(ip, self.ipv4_prefix, self.ipv6_prefix));
        key.push('|');
        push_key_part(&mut key, sender);
        key.push('|');
        push_key_part(&mut key, recipient);
        key
    }

    /// Whether `domain` (the sender's, SPF passed for it) is on the skip list.
    pub fn skips_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        self.skip_authenticated_domains.iter().any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(domain))
    }
}

/// The answer the client gets for a deferred triplet.
pub fn deferral_text(wait_secs: u64) -> String {
    format!(
        "Greylisted: first mail from this network for this sender and recipient; please retry in {} \
         (see RFC 6647)",
        crate::limits::human_secs(wait_secs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_with_the_documented_times() {
        let c: GreylistConfig = toml::from_str("").unwrap();
        assert!(!c.enabled);
        assert_eq!((c.delay_secs, c.window_secs, c.pass_ttl_days), (300, 14_400, 36));
        c.validate().unwrap();
        let bad: GreylistConfig = toml::from_str("delay_secs = 600\nwindow_secs = 300").unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("greylisting.window_secs"));
    }

    #[test]
    fn a_triplet_is_its_network_sender_and_recipient() {
        let c = GreylistConfig::default();
        let k = c.triplet_key("192.0.2.77".parse().unwrap(), "Alice@Sender.Example", "bob@example.com");
        assert_eq!(k, "g:192.0.2.0/24|alice@sender.example|bob@example.com");
        let k6 = c.triplet_key("2001:db8::1".parse().unwrap(), "", "bob@example.com");
        assert_eq!(k6, "g:2001:db8::/64||bob@example.com");
        assert!(c.triplet_key("192.0.2.1".parse().unwrap(), "a b|c", "x").starts_with("g:192.0.2.0/24|a_b_c|"));
        let with = GreylistConfig { skip_authenticated_domains: vec!["Bank.Example".into()], ..c };
        assert!(with.skips_domain("bank.example.") && !with.skips_domain("evil.example"));
    }
}
