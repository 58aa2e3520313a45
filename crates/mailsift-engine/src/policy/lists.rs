//! Allowed and blocked senders, per recipient.
//!
//! An entry names a sender (an address, or a domain that covers its subdomains) and whose list it is on
//! (a recipient address, a recipient domain of ours, or the organisation). For one recipient the levels are
//! tried in order, user, domain, organisation, and the first level with a matching entry decides; at one
//! level a block beats an allow. The sender is both the envelope sender and the From: address: a block on
//! either catches the message, and an allow on either can let it through, which is why allows are guarded.
//!
//! The guard, the lesson of every hosted filter: an allow entry is not honoured when the message spoofs one
//! of our protected domains (`SPOOF_OWN_DOMAIN` fired) or fails the From: domain's DMARC with a quarantine
//! or reject policy (`DMARC_POLICY_QUARANTINE`/`_REJECT` fired, so ARC-vouched forwarding is not held
//! against it), unless the entry says `allow_spoofed`. An entry may also demand authentication
//! (`require_auth`) or a sending infrastructure (`from_network`, `from_ptr_domain`). An entry that matched
//! but was passed over is reported ([`PassedOver`]) and the next level is tried, so a refused user allow
//! does not hide the organisation's block.
//!
//! Entries are indexed by (level, whose list, sender key), so a lookup costs a few hash probes per recipient
//! whatever the number of entries. Expired entries are skipped at lookup, not at load, so one compiled
//! policy stays right as time passes.

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{normal_domain, org_domain, PolicyError, PolicyInput};
use crate::cidr::IpRange;
use crate::config::policy::{BlockAction, Level, PolicyConfig};
use crate::evidence::Outcome;
use crate::verdict::{EntryRef, ListKind};

/// What a recipient's lists decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListDecision {
    Allow,
    Block(BlockAction),
}

/// Why a matching allow entry was not honoured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassedOver {
    /// The message spoofs one of our protected domains (the detail of `SPOOF_OWN_DOMAIN`).
    Spoof(String),
    /// The message fails the From: domain's DMARC, which asks for quarantine or rejection.
    Dmarc(String),
    /// The entry's own condition (authentication, network, host) was not met.
    ConditionUnmet(String),
}

/// The lists' result for one recipient.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListOutcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<ListDecision>,
    /// The entry that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryRef>,
    /// Allow entries that matched the sender but were not honoured, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passed_over: Vec<(EntryRef, PassedOver)>,
}

#[derive(Clone)]
enum Kind {
    Allow { require_auth: bool, from_ptr_domain: Option<String>, from_network: Option<IpRange>, allow_spoofed: bool },
    Block(BlockAction),
}

#[derive(Clone)]
struct Entry {
    r: EntryRef,
    kind: Kind,
    expires: Option<i64>,
}

#[derive(Clone, Default)]
pub(crate) struct CompiledLists {
    entries: Vec<Entry>,
    /// "level\0whose\0sender" to entries, in the order given (allows first, then blocks).
    index: FxHashMap<String, Vec<u32>>,
}

fn key(level: Level, whose: &str, sender: &str) -> String {
    format!("{}\0{whose}\0{sender}", level.as_str())
}

/// Checks a domain as an entry names it: lower case, no trailing dot, at least two labels.
fn check_domain(d: &str) -> Result<String, String> {
    check_domain_labels(d, true)
}

/// As [`check_domain`]; `two_labels` off for recipients, whose domains are ours and may be a single label
/// (`localhost`, an internal name), while a sender entry for a bare label would cover a whole TLD.
fn check_domain_labels(d: &str, two_labels: bool) -> Result<String, String> {
    let n = normal_domain(d);
    if n.starts_with('@') || n.starts_with("*.") {
        return Err(format!(
            "{d:?}: write the domain alone ({}); it covers its subdomains",
            n.trim_start_matches(['@', '*', '.'])
        ));
    }
    let label_ok = |l: &str| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    if (two_labels && !n.contains('.')) || !n.split('.').all(label_ok) {
        return Err(format!("{d:?} is not a domain name with at least two labels"));
    }
    Ok(n)
}

/// An address or a domain, normalised (the domain part lower-cased; local parts compare ignoring case too,
/// as every large mail system treats them).
fn check_sender(s: &str) -> Result<String, String> {
    check_address(s, true)
}

/// A recipient address or domain: ours, so a single-label domain is fine.
fn check_recipient(s: &str) -> Result<String, String> {
    check_address(s, false)
}

fn check_address(s: &str, two_labels: bool) -> Result<String, String> {
    let s = s.trim();
    match s.rsplit_once('@') {
        Some(("", _)) => check_domain_labels(s, two_labels),
        Some((local, domain)) => {
            if local.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>') {
                return Err(format!("{s:?} is not an email address"));
            }
            Ok(format!("{}@{}", local.to_lowercase(), check_domain_labels(domain, two_labels)?))
        }
        None => check_domain_labels(s, two_labels),
    }
}

impl CompiledLists {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn compile(config: &PolicyConfig) -> Result<CompiledLists, PolicyError> {
        let mut out = CompiledLists::default();
        let allows = config.allow.iter().map(|e| (ListKind::Allow, &e.id, &e.sender, &e.recipient, e.expires));
        let blocks = config.block.iter().map(|e| (ListKind::Block, &e.id, &e.sender, &e.recipient, e.expires));
        let (mut ai, mut bi) = (0usize, 0usize);
        for (list, id, sender, recipient, expires) in allows.chain(blocks) {
            let index = match list {
                ListKind::Allow => post_inc(&mut ai),
                ListKind::Block => post_inc(&mut bi),
            };
            let err = |field: &str, reason: String| PolicyError::Entry {
                list: if list == ListKind::Allow { "allow" } else { "block" },
                index,
                sender: sender.clone(),
                field: field.into(),
                reason,
            };
            let sender_n = check_sender(sender).map_err(|r| err("sender", r))?;
            let recipient_n = match recipient.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
                None => None,
                Some(r) => Some(check_recipient(r).map_err(|e| err("recipient", e))?),
            };
            let level = Level::of(recipient_n.as_deref());
            let kind = match list {
                ListKind::Allow => {
                    let e = &config.allow[index];
                    let from_network = match &e.from_network {
                        Some(n) => Some(IpRange::parse(n).map_err(|r| err("from_network", r))?),
                        None => None,
                    };
                    let from_ptr_domain = match &e.from_ptr_domain {
                        Some(d) => Some(check_domain(d).map_err(|r| err("from_ptr_domain", r))?),
                        None => None,
                    };
                    Kind::Allow {
                        require_auth: e.require_auth,
                        from_ptr_domain,
                        from_network,
                        allow_spoofed: e.allow_spoofed,
                    }
                }
                ListKind::Block => Kind::Block(config.block[index].action),
            };
            let r = EntryRef {
                list,
                index,
                id: id.clone(),
                level,
                sender: sender_n.clone(),
                recipient: recipient_n.clone(),
            };
            let n = out.entries.len() as u32;
            out.index.entry(key(level, recipient_n.as_deref().unwrap_or(""), &sender_n)).or_default().push(n);
            out.entries.push(Entry { r, kind, expires });
        }
        Ok(out)
    }

    pub(crate) fn evaluate(&self, input: &PolicyInput<'_, '_>, recipient: Option<&str>) -> ListOutcome {
        let mut out = ListOutcome::default();
        if self.entries.is_empty() {
            return out;
        }
        let senders = sender_keys(input);
        if senders.is_empty() {
            return out;
        }
        let recipient = recipient.map(|r| r.trim().trim_matches(['<', '>'])).filter(|r| !r.is_empty());
        let rcpt = recipient.and_then(|r| check_recipient(r).ok());
        let rcpt_domain = rcpt.as_deref().and_then(|r| r.rsplit_once('@')).map(|(_, d)| d.to_string());
        let levels =
            [(Level::User, rcpt.as_deref()), (Level::Domain, rcpt_domain.as_deref()), (Level::Organisation, Some(""))];
        for (level, whose) in levels {
            let Some(whose) = whose else { continue };
            let mut found: Vec<u32> = Vec::new();
            for s in &senders {
                if let Some(ids) = self.index.get(&key(level, whose, s)) {
                    found.extend(ids);
                }
            }
            found.sort_unstable();
            found.dedup();
            let live = found
                .iter()
                .map(|&i| &self.entries[i as usize])
                .filter(|e| e.expires.is_none_or(|t| t > input.now))
                .collect::<Vec<_>>();
            if let Some(block) = live.iter().find(|e| matches!(e.kind, Kind::Block(_))) {
                if let Kind::Block(action) = block.kind {
                    out.decision = Some(ListDecision::Block(action));
                    out.entry = Some(block.r.clone());
                    return out;
                }
            }
            for e in live {
                let Kind::Allow { require_auth, from_ptr_domain, from_network, allow_spoofed } = &e.kind else {
                    continue;
                };
                if let Some(unmet) = unmet_condition(input, &e.r.sender, *require_auth, from_ptr_domain, from_network) {
                    out.passed_over.push((e.r.clone(), PassedOver::ConditionUnmet(unmet)));
                    continue;
                }
                if !allow_spoofed {
                    if let Some(s) = input.fired("SPOOF_OWN_DOMAIN") {
                        out.passed_over.push((e.r.clone(), PassedOver::Spoof(s.detail.clone())));
                        continue;
                    }
                    let dmarc = input
                        .fired("DMARC_POLICY_REJECT")
                        .map(|s| ("reject", s))
                        .or_else(|| input.fired("DMARC_POLICY_QUARANTINE").map(|s| ("quarantine", s)));
                    if let Some((p, s)) = dmarc {
                        out.passed_over.push((e.r.clone(), PassedOver::Dmarc(format!("{} (p={p})", s.detail))));
                        continue;
                    }
                }
                out.decision = Some(ListDecision::Allow);
                out.entry = Some(e.r.clone());
                return out;
            }
        }
        out
    }
}

fn post_inc(n: &mut usize) -> usize {
    *n += 1;
    *n - 1
}

/// The keys the sender is known by: the envelope sender's and the From: address, and each of their domains
/// with every parent domain of at least two labels (so an entry for partner.example covers
/// mail.partner.example).
fn sender_keys(input: &PolicyInput<'_, '_>) -> Vec<String> {
    let mut out = Vec::new();
    let from = input.message.from.as_ref().map(|f| f.address.as_str());
    for a in [input.envelope_from(), from].into_iter().flatten() {
        let Some((local, domain)) = a.rsplit_once('@') else { continue };
        let domain = normal_domain(domain);
        out.push(format!("{}@{domain}", local.to_lowercase()));
        let mut d = domain.as_str();
        while d.contains('.') {
            out.push(d.to_string());
            d = &d[d.find('.').map(|p| p + 1).unwrap_or(d.len())..];
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The first condition of an allow entry the message does not meet, in words.
fn unmet_condition(
    input: &PolicyInput<'_, '_>,
    sender: &str,
    require_auth: bool,
    from_ptr_domain: &Option<String>,
    from_network: &Option<IpRange>,
) -> Option<String> {
    if let Some(net) = from_network {
        match input.envelope.client_ip {
            Some(ip) if net.contains(ip) => {}
            Some(ip) => return Some(format!("client {ip} is not in from_network {}/{}", net.base(), net.prefix())),
            None => return Some("from_network is set but the client IP is unknown".into()),
        }
    }
    if let Some(want) = from_ptr_domain {
        // Only a forward-confirmed name counts: anyone can publish a PTR record naming mailgun.net.
        let ptr = input.evidence.sender.as_ref().and_then(|f| f.ptr.as_ref()).filter(|p| p.result == Outcome::Pass);
        let ok = ptr.is_some_and(|p| {
            p.names.iter().any(|n| {
                let n = normal_domain(n);
                n == *want || n.ends_with(&format!(".{want}"))
            })
        });
        if !ok {
            let seen = ptr.map(|p| p.names.join(", ")).unwrap_or_else(|| "no confirmed reverse DNS name".into());
            return Some(format!("the client's reverse DNS ({seen}) is not in from_ptr_domain {want}"));
        }
    }
    if require_auth {
        let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or(sender);
        let want = org_domain(domain);
        let authenticated = input.auth_domains();
        if !authenticated.iter().any(|d| org_domain(d) == want) {
            let seen = if authenticated.is_empty() { "nothing".to_string() } else { authenticated.join(", ") };
            return Some(format!("require_auth: {want} did not pass SPF or DKIM (authenticated: {seen})"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_and_domains_are_normalised_or_refused() {
        assert_eq!(check_sender("News@Partner.Example.").unwrap(), "news@partner.example");
        assert_eq!(check_sender("Partner.Example").unwrap(), "partner.example");
        assert!(check_sender("@partner.example").unwrap_err().contains("write the domain alone"));
        assert!(check_sender("*.partner.example").is_err());
        assert!(check_sender("com").is_err());
        assert!(check_sender("a b@partner.example").is_err());
        assert!(check_sender("").is_err());
    }
}
