//! Bad sender practices at the connection: missing or unconfirmed reverse DNS, dynamic-looking PTR names,
//! and HELO/EHLO names that are not real host names, are bare or wrong IP literals, claim to be us, or do
//! not belong with the client's PTR.
//!
//! RFC 5321 §4.1.1.1 asks for a fully-qualified HELO (or an address literal); RFC 1912 §2.1 and every large
//! receiver expect a PTR that resolves back (forward-confirmed reverse DNS). Each is weak evidence alone:
//! plenty of small legitimate servers get one of them wrong, so weights stay low and every symbol says what
//! the sender's administrator should fix. Low is not timid, though: a bot on a residential line is the commonest
//! spam sender there is, and at a second organisation (a development sample of the TREC 2007 public corpus)
//! a dynamic PTR marked 484 of 2,500 spam and 2 of 2,500 ham, a HELO that is no full name 353 and 4, a bare IP
//! 77 and none; so RDNS_DYNAMIC and HELO_NOT_FQDN weigh 2, HELO_BARE_IP 2.5 (1.5 each before 2026-12-06), and
//! still no two of them reach the tag threshold together. Deliberately not here: blocklists and reputation.

use std::net::IpAddr;

use super::Ctx;
use crate::evidence::Outcome;
use crate::message::received::RecordedName;
use crate::message::urls::registrable_domain;
use crate::symbols::{FixKind, Group::Connection, Hits, SymbolSpec};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        RDNS_NONE,
        RDNS_NOT_CONFIRMED,
        RDNS_DYNAMIC,
        RDNS_TEMPERROR,
        HELO_NOT_FQDN,
        HELO_BARE_IP,
        HELO_IP_LITERAL_MISMATCH,
        HELO_CLAIMS_OUR_DOMAIN,
        HELO_NOT_PTR_DOMAIN,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(sym::RDNS_NONE, Connection, 1.5, "The sending server's IP address has no reverse DNS (PTR) name.",
        "The sender's administrator (or their provider) must publish a PTR record for the IP. Meanwhile you can allow the sender.").fix(FixKind::PublishPtr),
    SymbolSpec::of(sym::RDNS_NOT_CONFIRMED, Connection, 1.0,
        "The sending server's PTR name does not resolve back to its IP address (no forward-confirmed reverse DNS).",
        "The sender must make the PTR name's A/AAAA record point at the sending IP.").fix(FixKind::ConfirmPtr),
    SymbolSpec::of(sym::RDNS_DYNAMIC, Connection, 2.0,
        "The sending server's PTR name looks like a dynamic or residential address (IP digits, dsl, dhcp, pool...).",
        "Mail servers should send from a static address with its own name; the sender should relay through their provider.").fix(FixKind::StaticServer),
    SymbolSpec::of(sym::RDNS_TEMPERROR, Connection, 0.0, "Reverse DNS could not be looked up in time.",
        "A DNS problem on either side; nothing to fix in policy. Check the gateway's resolver if it is frequent."),
    SymbolSpec::of(sym::HELO_NOT_FQDN, Connection, 2.0, "The HELO/EHLO name is not a fully-qualified host name.",
        "The sender's server must greet with its full host name (RFC 5321 §4.1.1.1).").fix(FixKind::HeloFullName),
    SymbolSpec::of(sym::HELO_BARE_IP, Connection, 2.5, "The HELO/EHLO name is a bare IP address instead of a name or [literal].",
        "The sender's server must greet with its host name, or an address literal in brackets.").fix(FixKind::HeloNotBareIp),
    SymbolSpec::of(sym::HELO_IP_LITERAL_MISMATCH, Connection, 2.5, "The HELO/EHLO address literal is not the client's IP address.",
        "The sender's server announces an address it does not connect from; its configuration is wrong or forged.").fix(FixKind::HeloLiteralMatch),
    SymbolSpec::of(sym::HELO_CLAIMS_OUR_DOMAIN, Connection, 3.5,
        "The HELO/EHLO name claims one of our own domains, but the client is not one of our servers.",
        "If this is really one of your servers, add its IP to the domain's sending_servers."),
    SymbolSpec::of(sym::HELO_NOT_PTR_DOMAIN, Connection, 0.5, "The HELO/EHLO name is not in the same domain as the client's PTR name.",
        "The sender's server should greet with the name its PTR record gives.").fix(FixKind::HeloInPtrDomain),
];

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let env = ctx.envelope;
    let Some(ip) = env.client_ip else { return };
    let ptr = ctx.evidence.sender.as_ref().and_then(|s| s.ptr.as_ref());
    if let Some(p) = ptr {
        match p.result {
            Outcome::None => hits.hit(sym::RDNS_NONE, ip.to_string()),
            Outcome::Fail => hits.hit(sym::RDNS_NOT_CONFIRMED, format!("{ip} → {}", p.names.join(", "))),
            Outcome::TempError => hits.hit(sym::RDNS_TEMPERROR, ip.to_string()),
            _ => {}
        }
        if let Some(n) = p.names.iter().find(|n| looks_dynamic(n, ip)) {
            hits.hit(sym::RDNS_DYNAMIC, n.clone());
        }
    } else {
        recorded_rdns(ctx, ip, hits);
    }
    let Some(helo) = env.helo.as_deref().map(str::trim).filter(|h| !h.is_empty()) else { return };
    let lower = helo.trim_end_matches('.').to_ascii_lowercase();
    if let Some(lit) = lower.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        let lit = lit.strip_prefix("ipv6:").unwrap_or(lit);
        match lit.parse::<IpAddr>() {
            Ok(claimed) if claimed != ip => hits.hit(sym::HELO_IP_LITERAL_MISMATCH, format!("{helo} from {ip}")),
            Ok(_) => {}
            Err(_) => hits.hit(sym::HELO_NOT_FQDN, helo.to_string()),
        }
        return;
    }
    if lower.parse::<IpAddr>().is_ok() {
        hits.hit(sym::HELO_BARE_IP, helo.to_string());
        return;
    }
    let labels: Vec<&str> = lower.split('.').collect();
    let fqdn = labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.len() <= 63)
        && lower.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
        && lower != "localhost.localdomain";
    if !fqdn {
        hits.hit(sym::HELO_NOT_FQDN, helo.to_string());
        return;
    }
    let helo_domain = registrable_domain(&lower);
    let ours =
        ctx.config.organisation.domains.iter().chain(ctx.config.organisation.protected.iter().map(|p| &p.domain));
    let claims_ours = ours.into_iter().any(|d| registrable_domain(d) == helo_domain);
    // Our own outbound mail (trusted networks, authenticated users) rightly names our domain in its HELO.
    if claims_ours && !ctx.spoof.is_our_server(ip) && !ctx.envelope.is_outbound() {
        hits.hit(sym::HELO_CLAIMS_OUR_DOMAIN, format!("{helo} from {ip}"));
    }
    if let Some(p) = ptr {
        if !p.names.is_empty() && !p.names.iter().any(|n| registrable_domain(n) == helo_domain) {
            hits.hit(sym::HELO_NOT_PTR_DOMAIN, format!("{helo} vs {}", p.names[0]));
        }
    }
}

/// Without reverse-DNS evidence of our own (DNS off, or mail judged after the fact: spamd, `scan
/// --from-trace`, a milter without lookups), what the server that received the message from `ip` recorded
/// about it: the newest Received line naming that client, `(unknown [ip])` or a dynamic-looking
/// `(name [ip])`. The line is believed only against the sender: whoever wrote it, a forger gains nothing by
/// writing "unknown" or a residential name for his own address, and a name recorded there never counts in
/// the sender's favour (it does not reach the verified names that allow rules read; see `trust.rs`).
/// Sendmail's "may be forged" is not counted as a missing name: it marks many legitimate servers whose PTR
/// and A records merely disagree (on the SpamAssassin corpus, counted by a script that reads the newest
/// Received line with a public client the same way: 68 ham against 95 spam). The PTR name it records is
/// still judged for a residential or dynamic look, as the live check judges the PTR names whatever the
/// forward lookup found: the address's owner wrote that name.
fn recorded_rdns(ctx: &Ctx<'_, '_>, ip: IpAddr, hits: &mut Hits<'_>) {
    let Some(hop) = ctx.message.hops.iter().take(crate::trust::MAX_TRUSTED_HOPS).find(|h| h.from_ip == Some(ip)) else {
        return;
    };
    match crate::message::received::recorded_client(&hop.raw) {
        Some(RecordedName::Unknown) => hits.hit(
            sym::RDNS_NONE,
            format!(
                "{ip} (recorded as unknown by the receiving server: no PTR name, or one that does not resolve back)"
            ),
        ),
        Some(RecordedName::Name(n)) if looks_dynamic(&n, ip) => {
            hits.hit(sym::RDNS_DYNAMIC, format!("{n} (as the receiving server recorded it)"))
        }
        // A PTR name that does not resolve back still says what the address's owner calls it, as it does
        // live (the live check above reads the PTR names whatever the forward lookup found).
        Some(RecordedName::Forged(Some(n))) if looks_dynamic(&n, ip) => hits.hit(
            sym::RDNS_DYNAMIC,
            format!("{n} (as the receiving server recorded it: the PTR name, which does not resolve back)"),
        ),
        _ => {}
    }
}

/// PTR names that embed the IP address or carry access-network words are residential or dynamic.
fn looks_dynamic(name: &str, ip: IpAddr) -> bool {
    let n = name.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "dynamic",
        "dyn.",
        "dhcp",
        "dsl",
        "pppoe",
        "ppp",
        "dialup",
        "dial-up",
        "pool",
        "cable",
        "broadband",
        "customer",
        "dyn-",
        "-dyn",
        "client",
        "host-",
        "ip-",
    ];
    let first_label = n.split('.').next().unwrap_or("");
    if WORDS.iter().any(|w| first_label.contains(w.trim_matches('.')) || n.contains(w)) && n.split('.').count() > 3 {
        return true;
    }
    if let IpAddr::V4(v4) = ip {
        let o = v4.octets();
        let digits: Vec<String> = o.iter().map(|b| b.to_string()).collect();
        let dashed = digits.join("-");
        let dotted_rev = format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0]);
        let hex = format!("{:02x}{:02x}{:02x}{:02x}", o[0], o[1], o[2], o[3]);
        if n.contains(&dashed) || n.starts_with(&dotted_rev) || n.contains(&hex) || n.contains(&digits.join(".")) {
            return true;
        }
        // Three or four of the octets appear as separate labels or parts.
        let parts: Vec<&str> = n.split(['.', '-']).collect();
        let found = digits.iter().filter(|d| parts.contains(&d.as_str())).count();
        if found >= 3 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_names() {
        let ip: IpAddr = "203.0.113.45".parse().unwrap();
        assert!(looks_dynamic("203-0-113-45.dsl.example.net", ip));
        assert!(looks_dynamic("45.113.0.203.in-addr.isp.example", ip));
        assert!(looks_dynamic("cpe-203-0-113-45.cable.isp.example", ip));
        assert!(looks_dynamic("dhcp-45.pool.isp.example.net", ip));
        assert!(!looks_dynamic("mail.example.com", ip));
        assert!(!looks_dynamic("mx1.mailhost.example.org", ip));
    }
}
