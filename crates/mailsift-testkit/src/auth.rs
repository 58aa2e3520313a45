//! Signing helpers for authentication tests: fresh Ed25519 keys, DKIM signatures and ARC seals, so tests
//! never depend on keys or signatures that expire.

use std::net::IpAddr;

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, MessageAuthenticator, Parameters};

use crate::dns::Zone;

/// An Ed25519 key pair for one selector of one domain.
pub struct TestKey {
    pkcs8: Vec<u8>,
    pub domain: String,
    pub selector: String,
}

impl TestKey {
    pub fn new(domain: &str, selector: &str) -> TestKey {
        TestKey { pkcs8: Ed25519Key::generate_pkcs8().expect("key"), domain: domain.into(), selector: selector.into() }
    }

    fn key(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.pkcs8).expect("key")
    }

    /// Publishes the public key at selector._domainkey.domain.
    pub fn publish(&self, zone: &mut Zone) {
        let record = format!("v=DKIM1; k=ed25519; p={}", base64(&self.key().public_key()));
        zone.txt(&format!("{}._domainkey.{}", self.selector, self.domain), &record);
    }

    /// Returns the message with a DKIM-Signature added (relaxed/relaxed, the usual header set).
    pub fn sign(&self, raw: &str) -> String {
        self.sign_headers(raw, &["From", "To", "Subject", "Date", "Message-ID"])
    }

    /// Returns the message with a DKIM-Signature added over the named headers (relaxed/relaxed).
    pub fn sign_headers(&self, raw: &str, headers: &[&str]) -> String {
        let sig = DkimSigner::from_key(self.key())
            .domain(&self.domain)
            .selector(&self.selector)
            .headers(headers.iter().copied())
            .header_canonicalization(mail_auth::dkim::Canonicalization::Relaxed)
            .body_canonicalization(mail_auth::dkim::Canonicalization::Relaxed)
            .sign(raw.as_bytes())
            .expect("sign");
        format!("{}{raw}", sig.to_header())
    }

    /// Seals the message as a forwarder would: verifies what arrived from `client_ip` (with `auth`, a
    /// resolver pointed at the test DNS), records SPF, DKIM and DMARC results, and adds an ARC set.
    pub async fn arc_seal(
        &self,
        raw: &str,
        auth: &MessageAuthenticator,
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> String {
        self.arc_seal_modified(raw, raw, auth, client_ip, helo, mail_from).await
    }

    /// Seals as a forwarder that changes the message (a signature service adding a footer): the results it
    /// records are those of the message as `received`; the seal and its message signature cover the
    /// message as `modified` and sent on (the same header fields, another body).
    pub async fn arc_seal_modified(
        &self,
        received: &str,
        modified: &str,
        auth: &MessageAuthenticator,
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> String {
        let msg = AuthenticatedMessage::parse(received.as_bytes()).expect("parse");
        let out = AuthenticatedMessage::parse(modified.as_bytes()).expect("parse");
        let dkim = auth.verify_dkim(Parameters::new(&msg)).await;
        let spf = auth
            .verify_spf(Parameters::new(SpfParameters::verify_mail_from(client_ip, helo, &self.domain, mail_from)))
            .await;
        let from_domain = mail_from.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo);
        let dmarc = auth
            .verify_dmarc(Parameters::new(DmarcParameters {
                message: &msg,
                dkim_output: &dkim,
                dkim2_output: None,
                rfc5321_mail_from_domain: from_domain,
                spf_output: &spf,
            }))
            .await;
        let arc = auth.verify_arc(Parameters::new(&msg)).await;
        let header_from = msg.from.first().cloned().unwrap_or_default();
        let ar = AuthenticationResults::new(&self.domain)
            .with_dkim_results(&dkim, &header_from)
            .with_spf_mailfrom_result(&spf, client_ip, mail_from, helo)
            .with_dmarc_result(&dmarc);
        let set = ArcSealer::from_key(self.key())
            .domain(&self.domain)
            .selector(&self.selector)
            .headers(["From", "To", "Subject", "Date", "Message-ID", "DKIM-Signature"])
            .seal(&out, &ar, &arc)
            .expect("seal");
        format!("{}{modified}", set.to_header())
    }
}

/// A resolver that asks only the given test DNS server.
pub fn authenticator(dns: std::net::SocketAddr) -> MessageAuthenticator {
    use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut opts = ResolverOpts::default();
    opts.timeout = std::time::Duration::from_millis(500);
    opts.attempts = 1;
    MessageAuthenticator::new(
        ResolverConfig::from_parts(None, vec![], vec![NameServerConfig::new(dns.ip(), true, vec![udp])]),
        opts,
    )
    .expect("resolver")
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
