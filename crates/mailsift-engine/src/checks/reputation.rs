//! Sender reputation from DNS lists (blocklists and allowlists configured by the administrator) and the
//! open-proxy probe. Local reputation (our own history of each sender) joins here when the store keeps it.
//!
//! A list's error and policy answers (127.255.255.x: query refused, over quota; anything outside 127/8) are
//! never a listing: the evidence stage reports them and backs off the zone, and `DNSBL_ERROR_ANSWER` says so.

use super::Ctx;
use crate::config::DnsListConfig;
use crate::symbols::{Group, Group::Reputation, Hits, Registry, SymbolDef, SymbolSpec};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        REPUTATION_IP_BAD,
        REPUTATION_IP_GOOD,
        REPUTATION_NET_BAD,
        REPUTATION_DOMAIN_BAD,
        REPUTATION_DOMAIN_GOOD,
        REPUTATION_ADDRESS_BAD,
        REPUTATION_ADDRESS_GOOD,
        DNSBL_ERROR_ANSWER,
        OPEN_PROXY,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(
        sym::REPUTATION_IP_BAD,
        Reputation,
        3.0,
        "This IP address has sent us mostly spam recently (local reputation).",
        "If this sender is legitimate, report its mail as false positives (or reset: `mailsift reputation reset IP`).",
    ),
    SymbolSpec::of(
        sym::REPUTATION_IP_GOOD,
        Reputation,
        -1.0,
        "This IP address has sent us mostly good mail recently.",
        "Nothing to fix.",
    ),
    SymbolSpec::of(
        sym::REPUTATION_NET_BAD,
        Reputation,
        1.5,
        "This IP's network (/24 or /64) has sent us mostly spam recently.",
        "Shared hosting neighbours spoil a network's reputation; the sender may need a cleaner provider.",
    ),
    SymbolSpec::of(
        sym::REPUTATION_DOMAIN_BAD,
        Reputation,
        2.0,
        "This sender domain has sent us mostly spam recently.",
        "If the domain is legitimate, report its mail as false positives, or `mailsift reputation reset DOMAIN`.",
    ),
    SymbolSpec::of(
        sym::REPUTATION_DOMAIN_GOOD,
        Reputation,
        -1.0,
        "This sender domain has sent us mostly good mail recently.",
        "Nothing to fix.",
    ),
    SymbolSpec::of(
        sym::REPUTATION_ADDRESS_BAD,
        Reputation,
        2.0,
        "This sender address has sent us mostly spam recently.",
        "If the sender is legitimate, report its mail as false positives, or `mailsift reputation reset ADDRESS`.",
    ),
    SymbolSpec::of(
        sym::REPUTATION_ADDRESS_GOOD,
        Reputation,
        -1.5,
        "This sender address has sent us mostly good mail recently.",
        "Nothing to fix.",
    ),
    SymbolSpec::of(
        sym::DNSBL_ERROR_ANSWER,
        Reputation,
        0.0,
        "A DNS list answered with an error or policy code (refused or over quota); it was not counted and is paused.",
        "Check your access to the list (many require a subscription or their own resolver).",
    ),
    SymbolSpec::of(
        sym::OPEN_PROXY,
        Reputation,
        5.0,
        "The sending client runs an open proxy that relays connections for anyone.",
        "The sender's administrator must close the proxy; hijacked proxies send most of the world's spam.",
    ),
];

/// Registers the symbols the configured lists report.
pub fn register_lists(lists: &[DnsListConfig], registry: &mut Registry) -> Result<(), String> {
    for l in lists {
        let valid =
            |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        if l.zone.trim().is_empty() || !l.zone.contains('.') {
            return Err(format!("dnsbl {}: zone {:?} is not a DNS zone", l.symbol, l.zone));
        }
        let desc = l.description.clone().unwrap_or_else(|| format!("Listed in the DNS list {}.", l.zone));
        let remedy = if l.weight < 0.0 {
            format!("{} is an allowlist you configured; remove it from [[dnsbl]] to stop trusting it.", l.zone)
        } else {
            format!("The sender must ask {} to delist them (see the list's web site); meanwhile allow the sender if legitimate.", l.zone)
        };
        let mut add = |name: &str, weight: f64| -> Result<(), String> {
            if !valid(name) {
                return Err(format!("dnsbl {}: symbol {name:?} must be UPPER_SNAKE_CASE", l.zone));
            }
            if registry.id(name).is_some() {
                return Ok(()); // Two lists may share a symbol; the first weight stands.
            }
            registry.add(SymbolDef {
                name: name.to_string(),
                group: Group::Reputation,
                weight,
                default_weight: weight,
                description: desc.clone(),
                remedy: remedy.clone(),
                asf: None,
            })?;
            Ok(())
        };
        add(&l.symbol, l.weight)?;
        for r in &l.returns {
            if r.code.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(format!("dnsbl {}: return code {:?} is not an IPv4 address", l.zone, r.code));
            }
            add(&r.symbol, r.weight)?;
        }
    }
    Ok(())
}

/// Evidence needed before a reputation speaks, and how one-sided it must be. One user report weighs 3 and
/// decays from the moment it is recorded, so the bar sits below 3: a single report counts for about four days
/// (half-life 14 days), not only within the second it was made.
pub const MIN_EVIDENCE: f64 = 2.5;
pub const ONE_SIDED: f64 = 0.8;

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    if let Some(rep) = &ctx.evidence.reputation {
        for e in &rep.entries {
            let total = e.spam + e.ham;
            if total < MIN_EVIDENCE {
                continue;
            }
            let detail = format!("{} ({:.1} bad, {:.1} good)", e.key, e.spam, e.ham);
            // (bad, good) for each kind; a network has no good mark (its neighbours' mail says little).
            let (bad, good) = {
                use crate::evidence::ReputationKind as K;
                match e.kind {
                    K::Ip => (sym::REPUTATION_IP_BAD, Some(sym::REPUTATION_IP_GOOD)),
                    K::Net => (sym::REPUTATION_NET_BAD, None),
                    K::Domain => (sym::REPUTATION_DOMAIN_BAD, Some(sym::REPUTATION_DOMAIN_GOOD)),
                    K::Address => (sym::REPUTATION_ADDRESS_BAD, Some(sym::REPUTATION_ADDRESS_GOOD)),
                }
            };
            if e.spam / total >= ONE_SIDED {
                hits.hit(bad, detail);
            } else if let Some(good) = good.filter(|_| e.ham / total >= ONE_SIDED) {
                hits.hit(good, detail);
            }
        }
    }
    let Some(facts) = ctx.evidence.sender.as_ref() else { return };
    for h in &facts.dns_lists {
        // The list's symbol comes from configuration ([[dnsbl]]), registered at start.
        hits.hit_named(&h.symbol, format!("{} in {} ({})", h.queried, h.zone, h.code));
    }
    if !facts.dns_list_errors.is_empty() {
        hits.hit(sym::DNSBL_ERROR_ANSWER, facts.dns_list_errors.join("; "));
    }
    if let Some(port) = facts.open_proxy {
        let ip = ctx.envelope.client_ip.map(|i| i.to_string()).unwrap_or_default();
        hits.hit(sym::OPEN_PROXY, format!("{ip}:{port}"));
    }
}
