//! The trust boundary for trace headers: which facts about a message's way here a forger cannot write.
//!
//! Anyone can put any `Received:` line into a message before sending it. What the gateway can believe:
//! - the connection it (or, as a milter, its MTA) saw itself: the client's IP address, its
//!   forward-confirmed reverse DNS name (our own DNS evidence, or the name the MTA verified and gave the
//!   milter), and its HELO name (chosen by the client, but a fact about this connection);
//! - the lines written by `[organisation] trusted_relay_networks`, the MTAs in front of the gateway: when
//!   one of them connects, the newest Received line is its own, and the client it records is a fact; when
//!   that client is a trusted relay too, the next older line is that relay's, and so on.
//!
//! Everything below the first untrusted client is that client's claim. The walk starts at the newest line
//! and stops at the first line written by an untrusted server, so a line "from" a trusted relay's address
//! written below an untrusted hop is never believed: the untrusted server wrote it.
//!
//! The "origin" is the first untrusted client a trusted relay recorded: the server that handed the message
//! to our side. Rule conditions on the connecting server (`client_ip`, `client_ptr`) look at the origin when
//! the direct client is a trusted relay (otherwise every message would come "from" the relay); with no
//! trusted relays configured, or mail straight from the Internet, they look at the direct client.
//!
//! Where the gateway's own line is: the SMTP gateway judges the message before it prepends its Received
//! line (`mailsift-smtp` `deliver.rs` adds it at delivery), so the newest line of the scanned message is
//! the client's or older. Postfix and Sendmail hand a milter the message with their own Received line on
//! top. Either way, a newest line that records the connecting IP itself is the record of this very
//! connection (the MTA's, or the client's claim about itself): it is skipped, and never taken as a trusted
//! hop, because in SMTP mode the client may have written it.
//!
//! Pure: no I/O. Computed once per message from the envelope, the evidence, the parsed message and the
//! configuration ([`TrustBoundary::facts`]).

use std::net::IpAddr;

use serde::Serialize;

use crate::cidr::IpRange;
use crate::config::OrganisationConfig;
use crate::envelope::Envelope;
use crate::evidence::{Evidence, Outcome};
use crate::message::received::{is_host_name, recorded_client, RecordedName};
use crate::message::{Hop, Message};

/// At most this many Received lines are believed, however many trusted relays there are: a real chain of
/// our own relays is a handful; the limit bounds the work a message with thousands of lines can cause.
pub const MAX_TRUSTED_HOPS: usize = 16;

/// The configured trusted relays, parsed once (at start and on reload).
#[derive(Debug, Clone, Default)]
pub struct TrustBoundary {
    relays: Vec<IpRange>,
}

impl TrustBoundary {
    /// From `[organisation] trusted_relay_networks`; the error names the bad entry.
    pub fn new(org: &OrganisationConfig) -> Result<TrustBoundary, String> {
        Ok(TrustBoundary { relays: org.trusted_relays()? })
    }

    /// From ranges already parsed.
    pub fn from_ranges(relays: Vec<IpRange>) -> TrustBoundary {
        TrustBoundary { relays }
    }

    /// No trusted relays: only the direct connection is a fact.
    pub fn none() -> TrustBoundary {
        TrustBoundary::default()
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = plain(ip);
        self.relays.iter().any(|r| r.contains(ip))
    }

    /// The connection facts of one message.
    pub fn facts(&self, envelope: &Envelope, evidence: &Evidence, message: &Message<'_>) -> ConnectionFacts {
        ConnectionFacts::compute(self, envelope, evidence, &message.hops)
    }
}

/// One Received line written on our side of the boundary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustedHop {
    /// The relay that wrote the line (the client that connected to the next newer hop).
    pub written_by: IpAddr,
    /// The line's text, unfolded.
    pub text: String,
    /// The client the relay recorded.
    pub from_ip: Option<IpAddr>,
    /// The client's name as the relay verified it (`(name [ip])`), when it wrote one.
    pub from_name: Option<String>,
}

/// The first server outside our trusted relays, as the relay it connected to recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    pub ip: IpAddr,
    /// Its reverse DNS name as the trusted relay verified it; empty when it wrote none.
    pub names: Vec<String>,
}

/// What a rule may believe about how the message reached us.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConnectionFacts {
    /// The address that connected to the gateway (or to its MTA, as a milter).
    pub client_ip: Option<IpAddr>,
    /// That client's verified names: the PTR names our DNS evidence confirmed forward, else (no PTR
    /// evidence gathered) the name the MTA verified and gave the milter.
    pub client_names: Vec<String>,
    /// The HELO name of this connection.
    pub helo: Option<String>,
    /// The direct client is one of the trusted relays.
    pub via_trusted_relay: bool,
    /// The lines the trusted relays wrote, newest first (at most [`MAX_TRUSTED_HOPS`]).
    pub trusted_hops: Vec<TrustedHop>,
    /// The first untrusted client a trusted relay recorded; None when the direct client is not a trusted
    /// relay, or the trusted lines end without naming one (mail that began inside our relays).
    pub origin: Option<Origin>,
}

impl ConnectionFacts {
    /// Computes the facts. `hops` are the message's Received lines, newest first.
    pub fn compute(
        boundary: &TrustBoundary,
        envelope: &Envelope,
        evidence: &Evidence,
        hops: &[Hop],
    ) -> ConnectionFacts {
        let client_ip = envelope.client_ip.map(plain);
        let client_names = verified_names(envelope, evidence);
        let mut facts = ConnectionFacts {
            client_ip,
            client_names,
            helo: envelope.helo.as_deref().map(str::trim).filter(|h| !h.is_empty()).map(str::to_string),
            ..ConnectionFacts::default()
        };
        let Some(client) = client_ip else { return facts };
        if !boundary.is_trusted(client) {
            return facts;
        }
        facts.via_trusted_relay = true;
        // The record of this very connection, when the MTA (or the client) put one on top.
        let skip = usize::from(hops.first().and_then(|h| h.from_ip).map(plain) == Some(client));
        let mut writer = client;
        for hop in hops.iter().skip(skip).take(MAX_TRUSTED_HOPS) {
            let from_ip = hop.from_ip.map(plain);
            let from_name = recorded_name(&hop.raw);
            facts.trusted_hops.push(TrustedHop { written_by: writer, text: hop.raw.clone(), from_ip, from_name });
            match from_ip {
                Some(ip) if boundary.is_trusted(ip) => writer = ip,
                Some(ip) => {
                    let names = facts.trusted_hops.last().and_then(|h| h.from_name.clone()).into_iter().collect();
                    facts.origin = Some(Origin { ip, names });
                    break;
                }
                // A trusted relay that does not say who connected (local submission, a content filter's
                // re-injection): nothing older can be attributed to anyone we trust.
                None => break,
            }
        }
        facts
    }

    /// The server rules mean by "the connecting server": the origin when the message came through our
    /// trusted relays and they named one, else the direct client.
    pub fn sender_ip(&self) -> Option<IpAddr> {
        match &self.origin {
            Some(o) if self.via_trusted_relay => Some(o.ip),
            _ => self.client_ip,
        }
    }

    /// The verified names of [`ConnectionFacts::sender_ip`].
    pub fn sender_names(&self) -> &[String] {
        match &self.origin {
            Some(o) if self.via_trusted_relay => &o.names,
            _ => &self.client_names,
        }
    }
}

/// The direct client's forward-confirmed names. Our DNS evidence, when gathered, is the authority (a name
/// the MTA gave that our lookup did not confirm is not used); without it, the milter's client name, which
/// the MTA verified before passing it (Postfix gives "unknown" otherwise, which the milter drops).
fn verified_names(envelope: &Envelope, evidence: &Evidence) -> Vec<String> {
    let mut names: Vec<String> = match evidence.sender.as_ref().and_then(|s| s.ptr.as_ref()) {
        Some(ptr) if ptr.result == Outcome::Pass => ptr.names.iter().map(|n| normal_name(n)).collect(),
        Some(_) => Vec::new(),
        None => envelope.client_name.iter().map(|n| normal_name(n)).collect(),
    };
    names.retain(|n| is_host_name(n));
    names.sort();
    names.dedup();
    names
}

/// The verified client name a Received line records (see [`recorded_client`]).
fn recorded_name(raw: &str) -> Option<String> {
    match recorded_client(raw)? {
        RecordedName::Name(n) => Some(n),
        RecordedName::Unknown | RecordedName::Forged(_) => None,
    }
}

fn normal_name(n: &str) -> String {
    n.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// An IPv4 client seen through an IPv6 socket is that IPv4 client.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{PtrFacts, SenderFacts};

    fn boundary(nets: &[&str]) -> TrustBoundary {
        let org = OrganisationConfig {
            trusted_relay_networks: nets.iter().map(|s| s.to_string()).collect(),
            ..OrganisationConfig::default()
        };
        TrustBoundary::new(&org).unwrap()
    }

    fn message(headers: &str) -> Message<'static> {
        let raw = format!("{headers}From: a@example.test\r\nSubject: t\r\n\r\nbody\r\n");
        Message::parse(Box::leak(raw.into_bytes().into_boxed_slice()), 1 << 20)
    }

    fn env(ip: &str) -> Envelope {
        Envelope { client_ip: Some(ip.parse().unwrap()), helo: Some("relay.acme.test".into()), ..Envelope::default() }
    }

    #[test]
    fn lines_from_a_trusted_relay_are_walked_until_the_first_untrusted_client() {
        let m = message(concat!(
            "Received: from edge.acme.test (edge.acme.test [10.1.0.7]) by relay2.acme.test; Tue, 1 Dec 2026 10:00:02 +0000\r\n",
            "Received: from web01.hoster.test (web01.hoster.test [203.0.113.50]) by edge.acme.test; Tue, 1 Dec 2026 10:00:01 +0000\r\n",
            "Received: from x (forged.example [10.1.0.9]) by web01.hoster.test; Tue, 1 Dec 2026 10:00:00 +0000\r\n",
        ));
        let f = boundary(&["10.1.0.0/16"]).facts(&env("10.1.0.5"), &Evidence::default(), &m);
        assert!(f.via_trusted_relay);
        assert_eq!(f.trusted_hops.len(), 2, "{f:?}");
        assert_eq!(f.trusted_hops[0].written_by, "10.1.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(f.trusted_hops[1].written_by, "10.1.0.7".parse::<IpAddr>().unwrap());
        let origin = f.origin.as_ref().unwrap();
        assert_eq!(origin.ip, "203.0.113.50".parse::<IpAddr>().unwrap());
        assert_eq!(origin.names, vec!["web01.hoster.test".to_string()]);
        assert_eq!(f.sender_ip(), Some(origin.ip));
        assert_eq!(f.sender_names(), ["web01.hoster.test".to_string()]);
        // The third line claims a trusted address, but web01 wrote it: never a trusted hop.
        assert!(!f.trusted_hops.iter().any(|h| h.text.contains("forged.example")));
    }

    #[test]
    fn an_untrusted_client_makes_every_line_a_claim() {
        let m = message(
            "Received: from web01.hoster.test (web01.hoster.test [203.0.113.50]) by mx.acme.test; Tue, 1 Dec 2026 10:00:01 +0000\r\n",
        );
        let mut e = env("198.18.0.9");
        e.client_name = Some("spoofer.example".into());
        let f = boundary(&["10.1.0.0/16"]).facts(&e, &Evidence::default(), &m);
        assert!(!f.via_trusted_relay && f.trusted_hops.is_empty() && f.origin.is_none());
        assert_eq!(f.sender_ip(), Some("198.18.0.9".parse().unwrap()));
        assert_eq!(f.sender_names(), ["spoofer.example".to_string()], "the milter's verified name");
        // With no relays configured, the same.
        let f = TrustBoundary::none().facts(&env("10.1.0.5"), &Evidence::default(), &m);
        assert!(f.trusted_hops.is_empty() && f.sender_ip() == Some("10.1.0.5".parse().unwrap()));
    }

    #[test]
    fn the_record_of_this_connection_on_top_is_skipped() {
        // As a milter sees it: the MTA's own line about the relay, then the relay's line.
        let m = message(concat!(
            "Received: from relay.acme.test (relay.acme.test [10.1.0.5]) by mx.acme.test; Tue, 1 Dec 2026 10:00:02 +0000\r\n",
            "Received: from outbound.mcsv.test (outbound.mcsv.test [192.0.2.77]) by relay.acme.test; Tue, 1 Dec 2026 10:00:01 +0000\r\n",
        ));
        let f = boundary(&["10.1.0.5"]).facts(&env("::ffff:10.1.0.5"), &Evidence::default(), &m);
        assert_eq!(f.trusted_hops.len(), 1, "{f:?}");
        assert!(f.trusted_hops[0].text.contains("outbound.mcsv.test"));
        assert_eq!(f.sender_ip(), Some("192.0.2.77".parse().unwrap()));
    }

    #[test]
    fn what_a_received_line_records_about_reverse_dns() {
        let rec = |l: &str| recorded_client(l);
        // Postfix, verified and not.
        assert_eq!(
            rec("from mail.example.org (mail.example.org [192.0.2.10]) by mx.example.net (Postfix)"),
            Some(RecordedName::Name("mail.example.org".into()))
        );
        assert_eq!(
            rec("from spammer (unknown [203.0.113.9]) by mx.example.net (Postfix)"),
            Some(RecordedName::Unknown)
        );
        // Sendmail's doubt.
        assert_eq!(
            rec("from x (adsl.example [198.51.100.4] (may be forged)) by mx.example.net"),
            Some(RecordedName::Forged(Some("adsl.example".into())))
        );
        assert_eq!(rec("from x (may be forged) by mx.example.net"), Some(RecordedName::Forged(None)));
        // Forms that say nothing about reverse DNS: Exchange, Exim without a name, qmail, a bare IP.
        assert_eq!(rec("from mail.sender.example (198.51.100.4) by mx.example.net with Microsoft SMTP Server"), None);
        assert_eq!(rec("from [198.51.100.4] (helo=x) by mx.example.net with esmtp (Exim 4.96)"), None);
        assert_eq!(rec("from unknown (HELO x) (198.51.100.4) by mx.example.net with SMTP"), None);
        // Sendmail's bare address: its meaning depends on the server's configuration (see above).
        assert_eq!(
            rec("from sbcglobal.net ([82.129.193.206]) by mx.example.net (8.12.8/8.12.5) with SMTP id l3GF6U0I015088"),
            None
        );
        // The name must sit with the address in the same parentheses, and a clause after " by " is not read.
        assert_eq!(rec("from x (comment) by mx.example.net (mail.example.org [192.0.2.10])"), None);
    }

    #[test]
    fn our_dns_evidence_decides_the_client_names() {
        let mut e = env("203.0.113.50");
        e.client_name = Some("claimed.example".into());
        let pass = |result| {
            Evidence::from_sender(SenderFacts {
                ptr: Some(PtrFacts { result, names: vec!["Web01.Hoster.Test.".into()] }),
                ..SenderFacts::default()
            })
        };
        let m = message("");
        let f = TrustBoundary::none().facts(&e, &pass(Outcome::Pass), &m);
        assert_eq!(f.client_names, vec!["web01.hoster.test".to_string()]);
        let f = TrustBoundary::none().facts(&e, &pass(Outcome::Fail), &m);
        assert!(f.client_names.is_empty(), "a name our lookup did not confirm is not believed: {f:?}");
    }

    #[test]
    fn the_walk_is_bounded_and_stops_where_a_relay_names_no_client() {
        let mut headers = String::new();
        for i in 0..40 {
            headers.push_str(&format!(
                "Received: from r{i}.acme.test (r{i}.acme.test [10.1.0.{}]) by x; Tue, 1 Dec 2026 10:00:00 +0000\r\n",
                i + 10
            ));
        }
        let f = boundary(&["10.1.0.0/16"]).facts(&env("10.1.0.5"), &Evidence::default(), &message(&headers));
        assert_eq!(f.trusted_hops.len(), MAX_TRUSTED_HOPS);
        assert!(f.origin.is_none() && f.sender_ip() == Some("10.1.0.5".parse().unwrap()));

        let m = message(concat!(
            "Received: by relay.acme.test (Postfix, from userid 33); Tue, 1 Dec 2026 10:00:01 +0000\r\n",
            "Received: from evil.example (evil.example [198.18.0.9]) by relay.acme.test; Tue, 1 Dec 2026 10:00:00 +0000\r\n",
        ));
        let f = boundary(&["10.1.0.0/16"]).facts(&env("10.1.0.5"), &Evidence::default(), &m);
        assert_eq!(f.trusted_hops.len(), 1);
        assert!(f.origin.is_none());
    }

    #[test]
    fn recorded_names_are_only_verified_ones() {
        assert_eq!(recorded_name("from helo.x (mail.a.test [192.0.2.1]) by b"), Some("mail.a.test".into()));
        assert_eq!(recorded_name("from helo.x (unknown [192.0.2.1]) by b"), None);
        assert_eq!(recorded_name("from helo.x ([192.0.2.1]) by b"), None);
        assert_eq!(recorded_name("from helo.x (mail.a.test [192.0.2.1] (may be forged)) by b"), None);
        assert_eq!(recorded_name("by b (mail.a.test [192.0.2.1])"), None);
    }
}
