//! Authentication: SPF, DKIM, DMARC and ARC results as graded symbols, and anti-spoofing of our own domains.
//!
//! DKIM is diagnosed finely because it is where most false positives hide: a signature whose headers verify
//! but whose body hash does not (`DKIM_BODY_MODIFIED`) almost always means a footer or disclaimer was added
//! after signing, which is not the same as a forged signature or a missing key (the `mailsift-evidence`
//! gatherer gives that verdict only when the signed headers verify with the published key, so a copied
//! signature never earns it). Forwarded mail breaks SPF; when a valid ARC chain whose newest seal is from a
//! sealer we trust (`[organisation] trusted_arc_sealers`; none when the list is empty, since anyone can seal
//! his own forgery) shows the first forwarder saw SPF, DKIM or DMARC pass, the SPF and DMARC failures are not
//! held against the message (RFC 8617 §7.2) and `ARC_FORWARDED` says so.
//!
//! Anti-spoofing is separate from DMARC: mail whose From: is one of our protected domains must come from one
//! of that domain's sending servers, from a trusted relay (recognised by the connecting server's
//! forward-confirmed name, never by a Received line the sender can write), through a chain of trusted ARC
//! sealers whose first hop saw our domain pass, or carry SPF or DKIM aligned with the domain; otherwise it
//! is `SPOOF_OWN_DOMAIN`, whatever the sender's own SPF says.
//!
//! Our own domain's SPF and DMARC are our configuration: when a server listed locally as one of its sending
//! servers sends as it and our published SPF or DMARC fails, the failure is not scored and
//! `OWN_SERVER_NOT_IN_DNS` names the DNS change still to make.

use regex::RegexSet;

use super::Ctx;
use crate::cidr::IpRange;
use crate::config::OrganisationConfig;
use crate::evidence::{DkimVerdict, DmarcPolicy, Outcome, SpfResult};
use crate::message::urls::registrable_domain;
use crate::symbols::{FixKind, Group::Auth, Hits, Side, SymbolSpec};
use crate::trust::ConnectionFacts;

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        SPF_PASS,
        SPF_FAIL,
        SPF_SOFTFAIL,
        SPF_NEUTRAL,
        SPF_NONE,
        SPF_PERMERROR,
        SPF_TEMPERROR,
        DKIM_VALID,
        DKIM_BODY_MODIFIED,
        DKIM_INVALID,
        DKIM_KEY_MISSING,
        DKIM_EXPIRED,
        DKIM_TEMPERROR,
        DMARC_PASS,
        DMARC_POLICY_REJECT,
        DMARC_POLICY_QUARANTINE,
        DMARC_POLICY_NONE,
        DMARC_TEMPERROR,
        ARC_VALID,
        ARC_INVALID,
        ARC_FORWARDED,
        ARC_OWN_DOMAIN,
        OWN_SERVER_NOT_IN_DNS,
        SPOOF_OWN_DOMAIN,
        DNS_DEADLINE,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(sym::SPF_PASS, Auth, -0.2, "The sending server is authorised by the sender domain's SPF record.",
        "Nothing to fix."),
    SymbolSpec::of(sym::SPF_FAIL, Auth, 2.0, "The sender domain's SPF record says this server may not send for it (hard fail).",
        "The sender's administrator must add this server to their SPF record. If it is forwarded mail, add the forwarder to trusted relays or rely on ARC.").fix(FixKind::SpfListServer),
    SymbolSpec::of(sym::SPF_SOFTFAIL, Auth, 0.8, "The sender domain's SPF record says this server is probably not authorised (~all).",
        "The sender's administrator should add this server to their SPF record.").fix(FixKind::SpfListServerSoft),
    SymbolSpec::of(sym::SPF_NEUTRAL, Auth, 0.2, "The sender domain's SPF record makes no statement about this server (?all).",
        "The sender should list their servers in SPF."),
    SymbolSpec::of(sym::SPF_NONE, Auth, 0.3, "The sender domain publishes no SPF record.",
        "The sender's administrator should publish an SPF record.").fix(FixKind::SpfPublish),
    SymbolSpec::of(sym::SPF_PERMERROR, Auth, 0.5, "The sender domain's SPF record is broken (syntax, too many lookups).",
        "The sender's administrator must fix their SPF record (a validator shows the error).").fix(FixKind::SpfRepair),
    SymbolSpec::of(sym::SPF_TEMPERROR, Auth, 0.0, "SPF could not be checked because of a temporary DNS failure.",
        "A DNS problem; nothing to fix in policy."),
    SymbolSpec::of(sym::DKIM_VALID, Auth, -0.5, "A DKIM signature verified.", "Nothing to fix."),
    SymbolSpec::of(sym::DKIM_BODY_MODIFIED, Auth, 1.0,
        "A DKIM signature's headers verify but the body changed after signing (typically a footer or disclaimer added later).",
        "Sign after the footer or disclaimer is added (move the signing step last), or add the disclaimer service as a trusted relay.").fix(FixKind::DkimSignAfterChanges),
    SymbolSpec::of(sym::DKIM_INVALID, Auth, 1.5, "A DKIM signature does not verify.",
        "The sender's administrator must check their signing key and selector.").fix(FixKind::DkimCheckKey),
    SymbolSpec::of(sym::DKIM_KEY_MISSING, Auth, 1.0, "A DKIM signature names a key that is not published in DNS.",
        "The sender must publish the key at selector._domainkey.domain, or stop signing with that selector.").fix(FixKind::DkimPublishKey),
    SymbolSpec::of(sym::DKIM_EXPIRED, Auth, 0.5, "A DKIM signature has expired (x= tag in the past).",
        "The sender should sign with a longer expiry; old resent mail shows this.").fix(FixKind::DkimRenew),
    SymbolSpec::of(sym::DKIM_TEMPERROR, Auth, 0.0, "A DKIM key could not be fetched because of a temporary DNS failure.",
        "A DNS problem; nothing to fix in policy."),
    SymbolSpec::of(sym::DMARC_PASS, Auth, -1.0, "The From: domain's DMARC check passed (SPF or DKIM aligned).", "Nothing to fix."),
    SymbolSpec::of(sym::DMARC_POLICY_REJECT, Auth, 5.0,
        "DMARC failed and the From: domain asks receivers to reject such mail (p=reject).",
        "The From: domain's owner must authorise this sender (SPF) or sign with their domain (DKIM); if it is a mailing list, it should rewrite From.").fix(FixKind::DmarcAlign),
    SymbolSpec::of(sym::DMARC_POLICY_QUARANTINE, Auth, 3.0,
        "DMARC failed and the From: domain asks receivers to quarantine such mail (p=quarantine).",
        "The From: domain's owner must authorise this sender (SPF) or sign with their domain (DKIM).").fix(FixKind::DmarcAlign),
    SymbolSpec::of(sym::DMARC_POLICY_NONE, Auth, 0.5, "DMARC failed; the From: domain only monitors (p=none).",
        "The From: domain's owner should authorise this sender before tightening their policy.").fix(FixKind::DmarcAlign),
    SymbolSpec::of(sym::DMARC_TEMPERROR, Auth, 0.0, "DMARC could not be checked because of a temporary DNS failure.",
        "A DNS problem; nothing to fix in policy."),
    SymbolSpec::of(sym::ARC_VALID, Auth, -0.2, "The message carries a valid ARC chain from the servers that forwarded it.",
        "Nothing to fix.").fix(FixKind::TrustArcSealers),
    SymbolSpec::of(sym::ARC_INVALID, Auth, 1.0, "The message's ARC chain does not validate.",
        "A forwarder altered the message after sealing, or the chain is forged.").fix(FixKind::TrustArcSealers),
    SymbolSpec::of(sym::ARC_FORWARDED, Auth, 0.0,
        "Forwarded mail: SPF or DMARC failed here, but a valid ARC chain sealed last by a trusted sealer shows authentication passed before forwarding, so those failures were not scored.",
        "Nothing to fix. Only sealers listed in organisation.trusted_arc_sealers vouch; remove a sealer there to stop trusting it.").fix(FixKind::TrustArcSealers),
    SymbolSpec::of(sym::ARC_OWN_DOMAIN, Auth, 0.0,
        "Our own mail came back through platforms we trust: every ARC sealer of a valid chain is in organisation.trusted_arc_sealers and the first one saw our domain's DKIM or DMARC pass, so it is not a spoof of our domain.",
        "Nothing to fix; remove a sealer from organisation.trusted_arc_sealers to stop trusting it."),
    SymbolSpec::of(sym::OWN_SERVER_NOT_IN_DNS, Auth, 0.0,
        "The From: domain is one of ours and the server is one of its locally listed sending servers, but our published SPF (or DMARC) fails for it; the failure was not scored here, other receivers will still see it.",
        "Add the server to the domain's SPF record (e.g. ip4:ADDRESS before the -all), or have it sign with the domain's DKIM key, so that mail to other receivers passes too.").side(Side::OwnConfiguration).fix(FixKind::OwnDns),
    SymbolSpec::of(sym::SPOOF_OWN_DOMAIN, Auth, 8.0,
        "The From: address is one of our protected domains, but the message came from a server that is not authorised for it and carries no aligned SPF or DKIM.",
        "If this sender is legitimate (a web form, an application, a newsletter service), add its IP to the domain's sending_servers, or a pattern for its verified host name (forward-confirmed reverse DNS) to trusted_relays; better, add it to the domain's SPF record or have it sign with the domain's DKIM key.").side(Side::OwnConfiguration).fix(FixKind::OwnDns),
    SymbolSpec::of(sym::DNS_DEADLINE, Auth, 0.0, "Some sender checks did not finish before the DNS deadline and count as temporary errors.",
        "Check the gateway's DNS resolver; the gateway can be set to defer such mail."),
];

/// Our own sending infrastructure, compiled once from the configuration.
#[derive(Default)]
pub struct SpoofGuard {
    domains: Vec<Protected>,
    arc_sealers: Vec<String>,
    /// `[organisation] trusted_relay_networks`: whose Received lines are facts.
    boundary: crate::trust::TrustBoundary,
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
        let boundary = crate::trust::TrustBoundary::new(org)?;
        Ok(SpoofGuard { domains, arc_sealers, boundary })
    }

    /// Whether the IP is one of our sending servers for any protected domain.
    pub fn is_our_server(&self, ip: std::net::IpAddr) -> bool {
        self.domains.iter().any(|d| d.servers.iter().any(|r| r.contains(ip)))
    }
}

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let local = local_sending_server(ctx);
    let Some(facts) = ctx.evidence.sender.as_ref() else {
        // Without DNS facts: SPF may still come from elsewhere (an MTA's own check), and our own sending
        // servers are known by address.
        let spf_domain = envelope_spf_domain(ctx.envelope);
        let own = local.filter(|l| own_spf_failed(ctx, l, ctx.evidence.spf, &spf_domain));
        match own {
            Some(l) => hits.hit(sym::OWN_SERVER_NOT_IN_DNS, own_server_detail(l, Some(&spf_domain), false)),
            None => spf_symbol(ctx.evidence.spf, "", hits),
        }
        check_spoofing(ctx, ctx.evidence.spf, hits);
        return;
    };
    let forwarded = arc_vouches(ctx, hits);
    let spf = ctx.evidence.spf.or(facts.spf);
    let spf_failed = matches!(spf, Some(SpfResult::Fail | SpfResult::SoftFail));
    let spf_domain = facts.spf_domain.clone().unwrap_or_else(|| envelope_spf_domain(ctx.envelope));
    // Our own domain's SPF and DMARC failing for a server we list locally as one of its sending servers is
    // our DNS not yet saying what our configuration says: not scored, but named (the local fix makes the
    // message pass; the DNS change is still to make for every other receiver).
    let own_spf = local.filter(|l| own_spf_failed(ctx, l, spf, &spf_domain));
    let own_dmarc = local.filter(|l| {
        facts.dmarc.as_ref().is_some_and(|d| {
            d.result == Outcome::Fail && registrable_domain(&d.domain) == registrable_domain(&l.protected.domain)
        })
    });
    if !(forwarded && spf_failed) && own_spf.is_none() {
        spf_symbol(spf, facts.spf_domain.as_deref().unwrap_or(""), hits);
    }
    for d in &facts.dkim {
        let who = format!("{} (s={})", d.domain, d.selector);
        match d.verdict {
            DkimVerdict::Pass => hits.hit(sym::DKIM_VALID, d.domain.clone()),
            DkimVerdict::BodyModified => hits.hit(sym::DKIM_BODY_MODIFIED, who),
            DkimVerdict::Fail | DkimVerdict::PermError => hits.hit(sym::DKIM_INVALID, format!("{who}: {}", d.detail)),
            DkimVerdict::KeyMissing => {
                hits.hit(sym::DKIM_KEY_MISSING, format!("{}._domainkey.{}", d.selector, d.domain))
            }
            DkimVerdict::Expired => hits.hit(sym::DKIM_EXPIRED, who),
            DkimVerdict::TempError => hits.hit(sym::DKIM_TEMPERROR, who),
        }
    }
    if let Some(d) = &facts.dmarc {
        match (d.result, d.policy) {
            (Outcome::Pass, _) => hits.hit(sym::DMARC_PASS, d.domain.clone()),
            (Outcome::Fail, _) if forwarded || own_dmarc.is_some() => {}
            (Outcome::Fail, DmarcPolicy::Reject) => hits.hit(sym::DMARC_POLICY_REJECT, d.domain.clone()),
            (Outcome::Fail, DmarcPolicy::Quarantine) => hits.hit(sym::DMARC_POLICY_QUARANTINE, d.domain.clone()),
            (Outcome::Fail, DmarcPolicy::None) => hits.hit(sym::DMARC_POLICY_NONE, d.domain.clone()),
            (Outcome::TempError, _) => hits.hit(sym::DMARC_TEMPERROR, d.domain.clone()),
            _ => {}
        }
    }
    if let Some(l) = own_spf.or(own_dmarc) {
        let spf_text = own_spf.is_some().then_some(spf_domain.as_str());
        hits.hit(sym::OWN_SERVER_NOT_IN_DNS, own_server_detail(l, spf_text, own_dmarc.is_some()));
    }
    if !facts.timed_out.is_empty() {
        hits.hit(sym::DNS_DEADLINE, facts.timed_out.join(", "));
    }
    check_spoofing(ctx, spf, hits);
}

/// The client, when it is one of the locally listed sending servers of the protected domain the From:
/// address is in. The address is a fact (the connection's, or the MTA's in milter mode); the From: domain
/// alone is a claim, which is why both must hold.
#[derive(Clone, Copy)]
struct LocalServer<'g> {
    protected: &'g Protected,
    ip: std::net::IpAddr,
}

fn local_sending_server<'e>(ctx: &Ctx<'e, '_>) -> Option<LocalServer<'e>> {
    let ip = ctx.envelope.client_ip?;
    let from = ctx.message.from.as_ref()?;
    let from_dom = registrable_domain(&from.domain);
    let protected = ctx.spoof.domains.iter().find(|p| registrable_domain(&p.domain) == from_dom)?;
    protected.servers.iter().any(|r| r.contains(ip)).then_some(LocalServer { protected, ip })
}

/// Whether SPF failed for our own domain: the envelope sender is in it, or is the null sender (whose SPF
/// identity is the HELO name: a bounce from our own server).
fn own_spf_failed(ctx: &Ctx<'_, '_>, l: &LocalServer<'_>, spf: Option<SpfResult>, spf_domain: &str) -> bool {
    if !matches!(spf, Some(SpfResult::Fail | SpfResult::SoftFail)) {
        return false;
    }
    let null_sender = ctx.envelope.mail_from.as_deref().is_some_and(|m| m.trim().trim_matches(['<', '>']).is_empty());
    null_sender || (!spf_domain.is_empty() && registrable_domain(spf_domain) == registrable_domain(&l.protected.domain))
}

/// Whether our own SPF or DMARC failure for a local sending server is excused (not scored): for other
/// checks that read SPF themselves (an ASF option on SPF hard fail, for instance).
pub fn own_spf_excused(ctx: &Ctx<'_, '_>) -> bool {
    let Some(l) = local_sending_server(ctx) else { return false };
    let facts = ctx.evidence.sender.as_ref();
    let spf = ctx.evidence.spf.or(facts.and_then(|f| f.spf));
    let spf_domain = facts.and_then(|f| f.spf_domain.clone()).unwrap_or_else(|| envelope_spf_domain(ctx.envelope));
    own_spf_failed(ctx, &l, spf, &spf_domain)
}

/// The domain SPF is checked for: the envelope sender's, or the HELO name for the null sender.
fn envelope_spf_domain(envelope: &crate::Envelope) -> String {
    match envelope.mail_from.as_deref().and_then(|m| m.rsplit_once('@')) {
        Some((_, d)) => d.trim_end_matches('>').to_ascii_lowercase(),
        None => envelope.helo.as_deref().unwrap_or("").to_ascii_lowercase(),
    }
}

fn own_server_detail(l: LocalServer<'_>, spf_domain: Option<&str>, dmarc_failed: bool) -> String {
    let (domain, ip) = (&l.protected.domain, l.ip);
    let mut text = format!("{domain}: {ip} is a local sending server");
    match spf_domain {
        Some(spf) if !spf.is_empty() => text.push_str(&format!(", not in {spf}'s SPF record")),
        Some(_) => text.push_str(", not in the SPF record"),
        None => {}
    }
    if dmarc_failed {
        text.push_str(&format!("; DMARC of {domain} failed (no SPF or DKIM aligned with {domain})"));
    }
    text
}

fn spf_symbol(spf: Option<SpfResult>, domain: &str, hits: &mut Hits<'_>) {
    let name = match spf {
        Some(SpfResult::Pass) => sym::SPF_PASS,
        Some(SpfResult::Fail) => sym::SPF_FAIL,
        Some(SpfResult::SoftFail) => sym::SPF_SOFTFAIL,
        Some(SpfResult::Neutral) => sym::SPF_NEUTRAL,
        Some(SpfResult::None) => sym::SPF_NONE,
        Some(SpfResult::PermError) => sym::SPF_PERMERROR,
        Some(SpfResult::TempError) => sym::SPF_TEMPERROR,
        None => return,
    };
    hits.hit(name, domain.to_string());
}

/// The (instance, d=) of every ARC-Seal of the message, in the order found. A seal without i= or d= is
/// left out (the chain did not validate then anyway).
fn arc_seals(ctx: &Ctx<'_, '_>) -> Vec<(u32, String)> {
    ctx.message
        .headers_named("ARC-Seal")
        .filter_map(|v| {
            let (mut instance, mut domain) = (None, None);
            for tag in v.split(';') {
                let Some((k, val)) = tag.split_once('=') else { continue };
                let val: String = val.chars().filter(|c| !c.is_whitespace()).collect();
                match k.trim() {
                    "i" => instance = val.parse::<u32>().ok(),
                    "d" => domain = Some(val.trim_end_matches('.').to_ascii_lowercase()),
                    _ => {}
                }
            }
            Some((instance?, domain?))
        })
        .collect()
}

/// The sealers of a chain that validated, newest first; empty when there is no valid chain.
fn valid_chain_sealers(ctx: &Ctx<'_, '_>) -> Vec<String> {
    let valid = ctx.evidence.sender.as_ref().and_then(|s| s.arc.as_ref()).is_some_and(|a| a.result == Outcome::Pass);
    if !valid {
        return Vec::new();
    }
    let mut seals = arc_seals(ctx);
    seals.sort_by_key(|s| std::cmp::Reverse(s.0));
    seals.into_iter().map(|(_, d)| d).collect()
}

/// Reports the ARC result; true when a valid chain whose newest seal is from a trusted sealer shows that
/// authentication passed before the message was forwarded. An empty list of trusted sealers trusts none:
/// anyone can seal a forgery of his own with a first hop claiming dmarc=pass.
fn arc_vouches(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) -> bool {
    let Some(arc) = ctx.evidence.sender.as_ref().and_then(|s| s.arc.as_ref()) else { return false };
    let sealers = match arc.result {
        Outcome::Pass => {
            let sealers = valid_chain_sealers(ctx);
            hits.hit(sym::ARC_VALID, format!("{} hops, sealed by {}", arc.hops, sealers.join(", ")));
            sealers
        }
        Outcome::Fail | Outcome::PermError => {
            hits.hit(sym::ARC_INVALID, arc.problem.clone().unwrap_or_default());
            return false;
        }
        _ => return false,
    };
    let sealer_ok = sealers.first().is_some_and(|newest| ctx.spoof.arc_sealers.contains(newest));
    let saw_pass = arc.first_hop_results.as_deref().is_some_and(|r| {
        let r = r.to_ascii_lowercase();
        r.contains("dmarc=pass") || r.contains("spf=pass") || r.contains("dkim=pass")
    });
    let vouches = sealer_ok && saw_pass;
    let spf_failed = matches!(ctx.evidence.spf, Some(SpfResult::Fail | SpfResult::SoftFail));
    let dmarc_failed =
        ctx.evidence.sender.as_ref().and_then(|s| s.dmarc.as_ref()).is_some_and(|d| d.result == Outcome::Fail);
    if vouches && (spf_failed || dmarc_failed) {
        hits.hit(sym::ARC_FORWARDED, arc.first_hop_results.clone().unwrap_or_default());
    }
    vouches
}

/// When our own mail came back through platforms we trust (Office 365, then a signature service, then us):
/// the ARC chain validates, EVERY sealer in it is a trusted sealer, and the first one recorded our domain's
/// DKIM (header.d=) or DMARC (header.from=) passing. Returns the sealers, oldest first, and what the first
/// hop saw. Every sealer, not only the newest: ARC checks only the newest message signature, so an
/// untrusted hop in the middle could have replaced the body of a genuine message of ours and sealed it
/// again, and a trusted sealer after it would vouch for the result.
fn arc_own_domain(ctx: &Ctx<'_, '_>, domain: &str) -> Option<(Vec<String>, String)> {
    let arc = ctx.evidence.sender.as_ref()?.arc.as_ref()?;
    let mut sealers = valid_chain_sealers(ctx);
    if sealers.is_empty() || !sealers.iter().all(|s| ctx.spoof.arc_sealers.contains(s)) {
        return None;
    }
    let seen = first_hop_passes(arc.first_hop_results.as_deref()?, domain)?;
    sealers.reverse();
    sealers.dedup();
    Some((sealers, seen))
}

/// Which of our domain's checks an Authentication-Results value records as passing: "dkim=pass" with
/// header.d= (or header.i= in) the domain, or "dmarc=pass" with header.from= the domain. Comments are
/// dropped first (without recursion: a depth count), so "(dkim=pass header.d=ours)" inside a comment
/// does not count.
fn first_hop_passes(results: &str, domain: &str) -> Option<String> {
    let mut plain = String::with_capacity(results.len());
    let mut depth = 0usize;
    let mut escaped = false;
    for c in results.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let ours = registrable_domain(domain);
    let is_ours = |d: &str| {
        let d = d.trim_matches('"');
        let d = d.rsplit_once('@').map(|(_, d)| d).unwrap_or(d);
        !d.is_empty() && registrable_domain(d) == ours
    };
    // The first element is the authserv-id; each following one is "method=result property=value ...".
    for resinfo in plain.split(';').skip(1) {
        let mut tokens = resinfo.split_whitespace();
        let Some(method) = tokens.next() else { continue };
        let method = method.to_ascii_lowercase();
        let props: Vec<(String, &str)> =
            tokens.filter_map(|t| t.split_once('=')).map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        let ours_in = |names: &[&str]| props.iter().any(|(k, v)| names.contains(&k.as_str()) && is_ours(v));
        if method == "dkim=pass" && ours_in(&["header.d", "header.i"]) {
            return Some(format!("dkim=pass for {domain}"));
        }
        if method == "dmarc=pass" && ours_in(&["header.from"]) {
            return Some(format!("dmarc=pass for {domain}"));
        }
    }
    None
}

/// The names of the servers that handed us the message that a forger cannot write: the connecting
/// server's forward-confirmed reverse-DNS names from our own DNS evidence (without DNS evidence, the name
/// the MTA verified, in milter mode), and, when that server is one of `[organisation]
/// trusted_relay_networks`, the verified client names its (and its trusted peers') Received lines record.
/// Never an arbitrary Received line, whose text the sender writes; not even the whole text of a trusted
/// relay's line, whose HELO part ("from NAME (...)") the client chose.
fn verified_names(facts: &ConnectionFacts) -> Vec<String> {
    let mut names = facts.client_names.clone();
    names.extend(facts.trusted_hops.iter().filter_map(|h| h.from_name.clone()));
    if let Some(origin) = &facts.origin {
        names.extend(origin.names.iter().cloned());
    }
    names.iter_mut().for_each(|n| *n = n.trim().trim_end_matches('.').to_ascii_lowercase());
    names.sort();
    names.dedup();
    names
}

/// The connecting client, and the origin of the message when our trusted relays recorded one (the first
/// server outside them): the addresses a sending server is recognised by.
fn sender_ips(facts: &ConnectionFacts) -> Vec<std::net::IpAddr> {
    facts.client_ip.into_iter().chain(facts.sender_ip()).collect()
}

fn check_spoofing(ctx: &Ctx<'_, '_>, spf: Option<SpfResult>, hits: &mut Hits<'_>) {
    // Mail from our trusted networks or an authenticated user is our own outbound mail: the gateway already
    // decided, from facts the sender cannot forge (its address, its login), that it speaks for us. Whether
    // those networks are also listed as sending servers is beside the point.
    if ctx.envelope.is_outbound() {
        return;
    }
    let Some(from) = ctx.message.from.as_ref() else { return };
    let from_dom = registrable_domain(&from.domain);
    let Some(p) = ctx.spoof.domains.iter().find(|p| registrable_domain(&p.domain) == from_dom) else { return };
    let connection = ctx.spoof.boundary.facts(ctx.envelope, ctx.evidence, ctx.message);
    if sender_ips(&connection).into_iter().any(|ip| p.servers.iter().any(|r| r.contains(ip))) {
        return;
    }
    // Trusted relays are recognised by what the sender cannot write: the connecting server's verified
    // name (or one our trusted relays recorded). A Received line naming the relay proves nothing; a
    // spoofer writes it himself.
    if let Some(relays) = &p.relays {
        if verified_names(&connection).iter().any(|n| relays.is_match(n)) {
            return;
        }
    }
    if let Some((sealers, seen)) = arc_own_domain(ctx, &p.domain) {
        hits.hit(
            sym::ARC_OWN_DOMAIN,
            format!("{}: our own mail came back through {} ({seen} at the first hop)", p.domain, sealers.join(" → ")),
        );
        return;
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
    hits.hit(sym::SPOOF_OWN_DOMAIN, format!("From {} sent by {ip}", from.address));
}
