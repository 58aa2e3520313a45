//! Authentication: SPF, DKIM, DMARC and ARC results as graded symbols, and anti-spoofing of our own domains.
//!
//! DKIM is diagnosed finely because it is where most false positives hide: a signature whose headers verify
//! but whose body hash does not (`DKIM_BODY_MODIFIED`) almost always means a footer or disclaimer was added
//! after signing, which is not the same as a forged signature or a missing key. Forwarded mail breaks SPF;
//! when a valid ARC chain shows the first forwarder saw SPF, DKIM or DMARC pass, the SPF and DMARC failures
//! are not held against the message (RFC 8617 §7.2) and `ARC_FORWARDED` says so.
//!
//! Anti-spoofing is separate from DMARC: mail whose From: is one of our protected domains must come from one
//! of that domain's sending servers, through a trusted relay, or carry SPF or DKIM aligned with the domain;
//! otherwise it is `SPOOF_OWN_DOMAIN`, whatever the sender's own SPF says.

use regex::RegexSet;

use super::Ctx;
use crate::cidr::IpRange;
use crate::config::OrganisationConfig;
use crate::evidence::SpfResult;
use crate::message::urls::registrable_domain;
use crate::sender::{DkimVerdict, DmarcPolicy, Outcome};
use crate::symbols::{Group::Auth, Hits, SymbolSpec};

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::new("SPF_PASS", Auth, -0.2, "The sending server is authorised by the sender domain's SPF record.",
        "Nothing to fix."),
    SymbolSpec::new("SPF_FAIL", Auth, 2.0, "The sender domain's SPF record says this server may not send for it (hard fail).",
        "The sender's administrator must add this server to their SPF record. If it is forwarded mail, add the forwarder to trusted relays or rely on ARC."),
    SymbolSpec::new("SPF_SOFTFAIL", Auth, 0.8, "The sender domain's SPF record says this server is probably not authorised (~all).",
        "The sender's administrator should add this server to their SPF record."),
    SymbolSpec::new("SPF_NEUTRAL", Auth, 0.2, "The sender domain's SPF record makes no statement about this server (?all).",
        "The sender should list their servers in SPF."),
    SymbolSpec::new("SPF_NONE", Auth, 0.3, "The sender domain publishes no SPF record.",
        "The sender's administrator should publish an SPF record."),
    SymbolSpec::new("SPF_PERMERROR", Auth, 0.5, "The sender domain's SPF record is broken (syntax, too many lookups).",
        "The sender's administrator must fix their SPF record (a validator shows the error)."),
    SymbolSpec::new("SPF_TEMPERROR", Auth, 0.0, "SPF could not be checked because of a temporary DNS failure.",
        "A DNS problem; nothing to fix in policy."),
    SymbolSpec::new("DKIM_VALID", Auth, -0.5, "A DKIM signature verified.", "Nothing to fix."),
    SymbolSpec::new("DKIM_BODY_MODIFIED", Auth, 1.0,
        "A DKIM signature's headers verify but the body changed after signing (typically a footer or disclaimer added later).",
        "Sign after the footer or disclaimer is added (move the signing step last), or add the disclaimer service as a trusted relay."),
    SymbolSpec::new("DKIM_INVALID", Auth, 1.5, "A DKIM signature does not verify.",
        "The sender's administrator must check their signing key and selector."),
    SymbolSpec::new("DKIM_KEY_MISSING", Auth, 1.0, "A DKIM signature names a key that is not published in DNS.",
        "The sender must publish the key at selector._domainkey.domain, or stop signing with that selector."),
    SymbolSpec::new("DKIM_EXPIRED", Auth, 0.5, "A DKIM signature has expired (x= tag in the past).",
        "The sender should sign with a longer expiry; old resent mail shows this."),
    SymbolSpec::new("DKIM_TEMPERROR", Auth, 0.0, "A DKIM key could not be fetched because of a temporary DNS failure.",
        "A DNS problem; nothing to fix in policy."),
    SymbolSpec::new("DMARC_PASS", Auth, -1.0, "The From: domain's DMARC check passed (SPF or DKIM aligned).", "Nothing to fix."),
    SymbolSpec::new("DMARC_POLICY_REJECT", Auth, 5.0,
        "DMARC failed and the From: domain asks receivers to reject such mail (p=reject).",
        "The From: domain's owner must authorise this sender (SPF) or sign with their domain (DKIM); if it is a mailing list, it should rewrite From."),
    SymbolSpec::new("DMARC_POLICY_QUARANTINE", Auth, 3.0,
        "DMARC failed and the From: domain asks receivers to quarantine such mail (p=quarantine).",
        "The From: domain's owner must authorise this sender (SPF) or sign with their domain (DKIM)."),
    SymbolSpec::new("DMARC_POLICY_NONE", Auth, 0.5, "DMARC failed; the From: domain only monitors (p=none).",
        "The From: domain's owner should authorise this sender before tightening their policy."),
    SymbolSpec::new("DMARC_TEMPERROR", Auth, 0.0, "DMARC could not be checked because of a temporary DNS failure.",
        "A DNS problem; nothing to fix in policy."),
    SymbolSpec::new("ARC_VALID", Auth, -0.2, "The message carries a valid ARC chain from the servers that forwarded it.",
        "Nothing to fix."),
    SymbolSpec::new("ARC_INVALID", Auth, 1.0, "The message's ARC chain does not validate.",
        "A forwarder altered the message after sealing, or the chain is forged."),
    SymbolSpec::new("ARC_FORWARDED", Auth, 0.0,
        "Forwarded mail: SPF or DMARC failed here, but a valid ARC chain shows authentication passed before forwarding, so those failures were not scored.",
        "Nothing to fix; list the forwarder in organisation.trusted_arc_sealers to trust only known forwarders."),
    SymbolSpec::new("SPOOF_OWN_DOMAIN", Auth, 8.0,
        "The From: address is one of our protected domains, but the message came from a server that is not authorised for it and carries no aligned SPF or DKIM.",
        "If this sender is legitimate (a web form, an application, a newsletter service), add its IP to the domain's sending_servers, or its Received host pattern to trusted_relays."),
    SymbolSpec::new("DNS_DEADLINE", Auth, 0.0, "Some sender checks did not finish before the DNS deadline and count as temporary errors.",
        "Check the gateway's DNS resolver; the gateway can be set to defer such mail."),
];

/// Whether the gateway judged the message as our own outbound mail: it came from a trusted network or an
/// authenticated user (the SMTP session and the milter set the direction for both; a login alone counts
/// too, whatever the listener).
pub fn is_outbound(envelope: &crate::Envelope) -> bool {
    envelope.direction == crate::Direction::Outbound
        || envelope.authenticated_user.as_deref().is_some_and(|u| !u.trim().is_empty())
}

/// Our own sending infrastructure, compiled once from the configuration.
#[derive(Default)]
pub struct SpoofGuard {
    domains: Vec<Protected>,
    arc_sealers: Vec<String>,
}

struct Protected {
    domain: String,
    servers: Vec<IpRange>,
    relays: Option<RegexSet>,
}

impl SpoofGuard {
    pub fn compile(org: &OrganisationConfig) -> Result<SpoofGuard, String> {
        let mut domains = Vec::new();
        for p in &org.protected {
            let domain = p.domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty() || !domain.contains('.') {
                return Err(format!("organisation.protected: {:?} is not a domain", p.domain));
            }
            let servers = p
                .sending_servers
                .iter()
                .map(|s| {
                    IpRange::parse(s).map_err(|e| format!("organisation.protected {domain}: sending_servers: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let relays = if p.trusted_relays.is_empty() {
                None
            } else {
                let patterns: Vec<String> = p.trusted_relays.iter().map(|r| format!("(?i){r}")).collect();
                Some(
                    RegexSet::new(&patterns)
                        .map_err(|e| format!("organisation.protected {domain}: trusted_relays: {e}"))?,
                )
            };
            domains.push(Protected { domain, servers, relays });
        }
        let arc_sealers = org.trusted_arc_sealers.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        Ok(SpoofGuard { domains, arc_sealers })
    }

    /// Whether the IP is one of our sending servers for any protected domain.
    pub fn is_our_server(&self, ip: std::net::IpAddr) -> bool {
        self.domains.iter().any(|d| d.servers.iter().any(|r| r.contains(ip)))
    }
}

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let Some(facts) = ctx.evidence.sender.as_ref() else {
        // Without DNS facts: SPF may still come from elsewhere (an MTA's own check), and our own sending
        // servers are known by address.
        spf_symbol(ctx.evidence.spf, "", hits);
        check_spoofing(ctx, ctx.evidence.spf, hits);
        return;
    };
    let forwarded = arc_vouches(ctx, hits);
    let spf = ctx.evidence.spf.or(facts.spf);
    let spf_failed = matches!(spf, Some(SpfResult::Fail | SpfResult::SoftFail));
    if !(forwarded && spf_failed) {
        spf_symbol(spf, facts.spf_domain.as_deref().unwrap_or(""), hits);
    }
    for d in &facts.dkim {
        let who = format!("{} (s={})", d.domain, d.selector);
        match d.verdict {
            DkimVerdict::Pass => hits.hit("DKIM_VALID", d.domain.clone()),
            DkimVerdict::BodyModified => hits.hit("DKIM_BODY_MODIFIED", who),
            DkimVerdict::Fail | DkimVerdict::PermError => hits.hit("DKIM_INVALID", format!("{who}: {}", d.detail)),
            DkimVerdict::KeyMissing => hits.hit("DKIM_KEY_MISSING", format!("{}._domainkey.{}", d.selector, d.domain)),
            DkimVerdict::Expired => hits.hit("DKIM_EXPIRED", who),
            DkimVerdict::TempError => hits.hit("DKIM_TEMPERROR", who),
        }
    }
    if let Some(d) = &facts.dmarc {
        match (d.result, d.policy) {
            (Outcome::Pass, _) => hits.hit("DMARC_PASS", d.domain.clone()),
            (Outcome::Fail, _) if forwarded => {}
            (Outcome::Fail, DmarcPolicy::Reject) => hits.hit("DMARC_POLICY_REJECT", d.domain.clone()),
            (Outcome::Fail, DmarcPolicy::Quarantine) => hits.hit("DMARC_POLICY_QUARANTINE", d.domain.clone()),
            (Outcome::Fail, DmarcPolicy::None) => hits.hit("DMARC_POLICY_NONE", d.domain.clone()),
            (Outcome::TempError, _) => hits.hit("DMARC_TEMPERROR", d.domain.clone()),
            _ => {}
        }
    }
    if !facts.timed_out.is_empty() {
        hits.hit("DNS_DEADLINE", facts.timed_out.join(", "));
    }
    check_spoofing(ctx, spf, hits);
}

fn spf_symbol(spf: Option<SpfResult>, domain: &str, hits: &mut Hits<'_>) {
    let name = match spf {
        Some(SpfResult::Pass) => "SPF_PASS",
        Some(SpfResult::Fail) => "SPF_FAIL",
        Some(SpfResult::SoftFail) => "SPF_SOFTFAIL",
        Some(SpfResult::Neutral) => "SPF_NEUTRAL",
        Some(SpfResult::None) => "SPF_NONE",
        Some(SpfResult::PermError) => "SPF_PERMERROR",
        Some(SpfResult::TempError) => "SPF_TEMPERROR",
        None => return,
    };
    hits.hit(name, domain.to_string());
}

/// Reports the ARC result; true when a valid chain (from a trusted sealer, if any are configured) shows that
/// authentication passed before the message was forwarded.
fn arc_vouches(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) -> bool {
    let Some(arc) = ctx.evidence.sender.as_ref().and_then(|s| s.arc.as_ref()) else { return false };
    match arc.result {
        Outcome::Pass => hits.hit("ARC_VALID", format!("{} hops", arc.hops)),
        Outcome::Fail | Outcome::PermError => {
            hits.hit("ARC_INVALID", arc.problem.clone().unwrap_or_default());
            return false;
        }
        _ => return false,
    }
    let sealer_ok = ctx.spoof.arc_sealers.is_empty() || {
        let seal_domains: Vec<String> = ctx
            .message
            .headers_named("ARC-Seal")
            .filter_map(|v| {
                v.split(';').find_map(|t| t.trim().strip_prefix("d=").map(|d| d.trim().to_ascii_lowercase()))
            })
            .collect();
        seal_domains.iter().any(|d| ctx.spoof.arc_sealers.contains(d))
    };
    let saw_pass = arc.first_hop_results.as_deref().is_some_and(|r| {
        let r = r.to_ascii_lowercase();
        r.contains("dmarc=pass") || r.contains("spf=pass") || r.contains("dkim=pass")
    });
    let vouches = sealer_ok && saw_pass;
    let spf_failed = matches!(ctx.evidence.spf, Some(SpfResult::Fail | SpfResult::SoftFail));
    let dmarc_failed =
        ctx.evidence.sender.as_ref().and_then(|s| s.dmarc.as_ref()).is_some_and(|d| d.result == Outcome::Fail);
    if vouches && (spf_failed || dmarc_failed) {
        hits.hit("ARC_FORWARDED", arc.first_hop_results.clone().unwrap_or_default());
    }
    vouches
}

fn check_spoofing(ctx: &Ctx<'_, '_>, spf: Option<SpfResult>, hits: &mut Hits<'_>) {
    // Mail from our trusted networks or an authenticated user is our own outbound mail: the gateway already
    // decided, from facts the sender cannot forge (its address, its login), that it speaks for us. Whether
    // those networks are also listed as sending servers is beside the point.
    if is_outbound(ctx.envelope) {
        return;
    }
    let Some(from) = ctx.message.from.as_ref() else { return };
    let from_dom = registrable_domain(&from.domain);
    let Some(p) = ctx.spoof.domains.iter().find(|p| registrable_domain(&p.domain) == from_dom) else { return };
    if let Some(ip) = ctx.envelope.client_ip {
        if p.servers.iter().any(|r| r.contains(ip)) {
            return;
        }
    }
    if let Some(relays) = &p.relays {
        if ctx.message.hops.iter().any(|h| relays.is_match(&h.raw)) {
            return;
        }
    }
    let facts = ctx.evidence.sender.as_ref();
    let spf_aligned = spf == Some(SpfResult::Pass)
        && facts.and_then(|f| f.spf_domain.as_deref()).is_some_and(|d| registrable_domain(d) == from_dom);
    let dkim_aligned = facts.is_some_and(|f| {
        f.dkim.iter().any(|d| d.verdict == DkimVerdict::Pass && registrable_domain(&d.domain) == from_dom)
    });
    if spf_aligned || dkim_aligned {
        return;
    }
    let ip = ctx.envelope.client_ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown IP".into());
    hits.hit("SPOOF_OWN_DOMAIN", format!("From {} sent by {ip}", from.address));
}
