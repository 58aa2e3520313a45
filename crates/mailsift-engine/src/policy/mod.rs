//! The policy stage: the administrator's filter rules and allowed/blocked senders, after the checks and
//! before the thresholds.
//!
//! Order, as administrators expect it (and as the hosted services taught them):
//! 1. **Filter rules**, in order, for the message's direction. Every matching rule's `add_score`,
//!    `add_header`, `copy` and `redirect` apply; the first rule that decides (allow, quarantine, reject)
//!    ends the rule stage and its decision is final, as does `stop` (without a decision).
//! 2. **Blocked and allowed senders**, inbound only and per recipient: the recipient's own list, then its
//!    domain's, then the organisation's; the first level with a matching entry decides, and at one level a
//!    block beats an allow. An allow entry is never honoured for mail that spoofs our protected domains or
//!    fails the sender's DMARC (quarantine or reject policy) unless it says `allow_spoofed`; it may also
//!    require authentication or a sending infrastructure. An entry passed over is reported, not silent.
//! 3. **The score** (the checks' plus the rules' `add_score`) against the thresholds; a `tag` action raises
//!    the result to tag at least.
//!
//! Everything is compiled once by [`Policy::new`] (per field: hash maps for exact values, one
//! Aho-Corasick automaton for the literal texts and the literals the regular expressions require, CIDR
//! ranges by prefix length), so a message costs one pass over each field it is tested on, whatever the
//! number of rules; only the rules that one of those passes could have satisfied are then evaluated (see
//! `rules.rs`). Measured (`benches/policy.rs`, 6,046 SpamAssassin corpus messages): 1,000 or 10,000 rules,
//! with or without 10,000 list entries, cost 8-10% of scan throughput.
//!
//! Multiple recipients: the rules are evaluated once per message (a `recipient` condition holds when any
//! recipient matches, and a rule's decision applies to all); the lists once per recipient. A caller that
//! acts per recipient uses [`Policy::rules`] once and [`Policy::lists`] for each, or reads
//! `Verdict::recipient_actions`, filled by the engine when the recipients' outcomes differ (`action` is
//! then the strictest, safe for a caller that cannot split the transaction).
//!
//! This module does no I/O: the store and the configuration give it [`PolicyConfig`]; the engine gives it
//! the message, its envelope, its evidence and the checks' symbols ([`PolicyInput`]). It does not decide
//! how the gateway carries out a redirect or a copy, nor how several recipients with different decisions
//! are split into transactions: it reports per recipient ([`Policy::lists`]) and the engine folds that into
//! the verdict (`Verdict::recipient_actions`).

pub mod lists;
pub mod rules;

use serde::Serialize;

pub use crate::config::policy::{
    AllowEntry, BlockAction, BlockEntry, Condition, Field, FilterRule, Level, MatchMode, Operator, PolicyConfig,
    RuleAction, RuleDirection, Value,
};
pub use lists::{ListDecision, ListOutcome, PassedOver};
pub use rules::{RuleDecision, RuleMatch, RuleOutcome};

use crate::envelope::{Direction, Envelope};
use crate::evidence::{DkimVerdict, Evidence, Outcome, SpfResult};
use crate::message::urls::registrable_domain;
use crate::message::Message;
use crate::symbols::{FixKind, Group, SymbolSpec};
use crate::verdict::SymbolResult;

const RULE_REMEDY: &str = "This is one of your own filter rules (the detail names it and the conditions that held): \
change, move or disable it with `mailsift rules`, or in [policy] of the configuration.";

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        POLICY_RULE,
        POLICY_ALLOWED_SENDER,
        POLICY_BLOCKED_SENDER,
        POLICY_ALLOW_REFUSED_SPOOF,
        POLICY_ALLOW_REFUSED_DMARC,
        POLICY_ALLOW_CONDITION_UNMET,
    ];
}

/// The policy's symbols. They carry no weight of their own: a rule's `add_score` is its `POLICY_RULE`
/// score, and list entries decide directly rather than through the score.
pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(sym::POLICY_RULE, Group::Policy, 0.0,
        "One of your filter rules matched; its score is the rule's add_score.", RULE_REMEDY).fix(FixKind::EditRule),
    SymbolSpec::of(sym::POLICY_ALLOWED_SENDER, Group::Policy, 0.0,
        "The sender is on an allowed-senders list for the recipient, so spam filtering was skipped (SCL -1).",
        "If this sender should be filtered again, remove the entry with `mailsift lists`.").fix(FixKind::AllowEntry),
    SymbolSpec::of(sym::POLICY_BLOCKED_SENDER, Group::Policy, 0.0,
        "The sender is on a blocked-senders list for the recipient.",
        "If this sender's mail is wanted, remove the entry with `mailsift lists` (the recipient's own allow entry also beats a domain or organisation block).").fix(FixKind::RemoveBlock),
    SymbolSpec::of(sym::POLICY_ALLOW_REFUSED_SPOOF, Group::Policy, 0.0,
        "An allowed-senders entry matched, but was not honoured: the message claims to come from one of our protected domains without coming from its servers (SPOOF_OWN_DOMAIN).",
        "If this service legitimately sends as your domain, add its servers to organisation.protected sending_servers or trusted_relays; only set allow_spoofed = true on the entry if you accept forged mail from it."),
    SymbolSpec::of(sym::POLICY_ALLOW_REFUSED_DMARC, Group::Policy, 0.0,
        "An allowed-senders entry matched, but was not honoured: the message fails the From: domain's DMARC check and that domain asks for quarantine or rejection.",
        "The sender's domain owner must authorise the sending server (SPF) or sign (DKIM); only set allow_spoofed = true on the entry if you accept forged mail in that domain's name."),
    SymbolSpec::of(sym::POLICY_ALLOW_CONDITION_UNMET, Group::Policy, 0.0,
        "An allowed-senders entry named this sender, but the message did not meet the entry's condition (authentication, sending network or host), so it was not honoured.",
        "If the sender changed its infrastructure, update the entry's require_auth, from_network or from_ptr_domain."),
];

/// An invalid rule or list entry, with the rule or entry, the field and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("rule {rule:?} (rules[{index}]): {field}: {reason}")]
    Rule { index: usize, rule: String, field: String, reason: String },
    #[error("{list}[{index}] (sender {sender:?}): {field}: {reason}")]
    Entry { list: &'static str, index: usize, sender: String, field: String, reason: String },
    /// The rules together exceed a compilation limit (too many or too large regular expressions on one field).
    #[error("rules on {field}: {reason}")]
    Limit { field: String, reason: String },
}

/// A decision policy makes, overriding the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Skip spam filtering: deliver, SCL -1.
    Allow,
    Quarantine,
    Reject,
}

/// What the policy reads: the message, how it arrived, what was found out about it, and what the checks
/// made of it.
pub struct PolicyInput<'a, 'm> {
    pub envelope: &'a Envelope,
    pub message: &'a Message<'m>,
    pub evidence: &'a Evidence,
    /// The symbols the checks fired: the allow-list guard reads `SPOOF_OWN_DOMAIN` and `DMARC_POLICY_*`.
    pub symbols: &'a [SymbolResult],
    /// The checks' score (rules with a `score` condition see it, plus earlier rules' `add_score`).
    pub score: f64,
    /// Unix seconds, for the entries' expiry.
    pub now: i64,
}

impl PolicyInput<'_, '_> {
    fn fired(&self, name: &str) -> Option<&SymbolResult> {
        self.symbols.iter().find(|s| s.name == name)
    }

    /// The envelope sender, without brackets; None for the null sender.
    fn envelope_from(&self) -> Option<&str> {
        self.envelope.mail_from.as_deref().map(|a| a.trim().trim_matches(['<', '>'])).filter(|a| !a.is_empty())
    }

    fn spf(&self) -> Option<SpfResult> {
        self.evidence.spf.or(self.evidence.sender.as_ref().and_then(|f| f.spf))
    }

    /// Domains that authenticated: each DKIM d= that verified, and the MAIL FROM domain when SPF passed.
    fn auth_domains(&self) -> Vec<String> {
        let mut out = Vec::new();
        let facts = self.evidence.sender.as_ref();
        if self.spf() == Some(SpfResult::Pass) {
            // The SPF domain the evidence stage checked; it is the HELO name for the null sender, which
            // authenticates a host, not a sender domain.
            let mail_from_domain = self.envelope_from().and_then(|a| a.rsplit_once('@')).map(|(_, d)| d);
            let checked = facts.and_then(|f| f.spf_domain.as_deref()).or(mail_from_domain);
            if let (Some(d), Some(_)) = (checked, mail_from_domain) {
                out.push(normal_domain(d));
            }
        }
        for d in facts.map(|f| f.dkim.as_slice()).unwrap_or_default() {
            if d.verdict == DkimVerdict::Pass {
                out.push(normal_domain(&d.domain));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The DKIM result summed up as DMARC sees it: pass if any signature verified.
    fn dkim(&self) -> Option<&'static str> {
        let facts = self.evidence.sender.as_ref()?;
        if facts.dkim.is_empty() {
            return Some("none");
        }
        if facts.dkim.iter().any(|d| d.verdict == DkimVerdict::Pass) {
            return Some("pass");
        }
        if facts.dkim.iter().all(|d| d.verdict == DkimVerdict::TempError) {
            return Some("temperror");
        }
        Some("fail")
    }

    fn dmarc(&self) -> Option<&'static str> {
        let facts = self.evidence.sender.as_ref()?;
        Some(match facts.dmarc.as_ref().map(|d| d.result) {
            Some(Outcome::Pass) => "pass",
            Some(Outcome::Fail) => "fail",
            Some(Outcome::None) | None => "none",
            Some(Outcome::TempError) => "temperror",
            Some(Outcome::PermError) => "permerror",
        })
    }
}

fn spf_str(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::None => "none",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
    }
}

/// A domain as policy compares it: trimmed, without the trailing dot, lower case, and a Unicode name as its
/// ASCII (IDNA) form, so an entry or rule written `bücher.example` and mail from `xn--bcher-kva.example` (or
/// the other way round) are one domain: a block is not escaped by writing the other form.
pub(crate) fn normal_domain(d: &str) -> String {
    let t = d.trim().trim_end_matches('.');
    if t.is_ascii() {
        return t.to_ascii_lowercase();
    }
    match crate::address::Domain::parse(t) {
        Ok(domain) => domain.as_str().to_string(),
        Err(_) => t.to_lowercase(),
    }
}

/// An address whose domain is Unicode, with that domain as [`normal_domain`] reads it (the local part as it
/// was); `None` when the domain is ASCII already or there is no `@`.
pub(crate) fn normal_address_domain(a: &str) -> Option<String> {
    let (local, domain) = a.rsplit_once('@')?;
    (!domain.is_ascii()).then(|| format!("{local}@{}", normal_domain(domain)))
}

/// The registrable domain, for "aligned" comparisons (relaxed alignment, as DMARC's default).
fn org_domain(d: &str) -> String {
    registrable_domain(&normal_domain(d))
}

/// What policy decided for one recipient: the rules' outcome (the same for every recipient) and the
/// lists' (this recipient's).
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// The decision, or None when the score decides (raised to tag when `rules.tag` is set).
    pub action: Option<PolicyAction>,
    /// The rule or entry that decided, for `Verdict::decided_by` and `X-Mailsift-Rule`.
    pub decided_by: Option<String>,
    pub rules: RuleOutcome,
    pub list: ListOutcome,
}

impl Decision {
    /// Combines the rules' outcome with one recipient's list outcome: a rule's decision is final; then the
    /// list's.
    pub fn combine(rules: RuleOutcome, list: ListOutcome) -> Decision {
        let (action, decided_by) = decision_of(&rules, &list);
        Decision { action, decided_by, rules, list }
    }
}

pub(crate) fn decision_of(rules: &RuleOutcome, list: &ListOutcome) -> (Option<PolicyAction>, Option<String>) {
    if let Some(d) = &rules.decision {
        return (Some(d.action), Some(format!("rule {:?}", d.rule)));
    }
    if let (Some(d), Some(e)) = (list.decision, list.entry.as_ref()) {
        let action = match d {
            ListDecision::Allow => PolicyAction::Allow,
            ListDecision::Block(BlockAction::Quarantine) => PolicyAction::Quarantine,
            ListDecision::Block(BlockAction::Reject) => PolicyAction::Reject,
        };
        return (Some(action), Some(e.describe()));
    }
    (None, None)
}

/// The compiled policy. Build once (at start, on reload, when the store's rules change); share across
/// threads; evaluate per message.
#[derive(Clone)]
pub struct Policy {
    rules: rules::CompiledRules,
    lists: lists::CompiledLists,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::empty()
    }
}

impl Policy {
    /// Checks and compiles the policy; the first invalid rule or entry is refused with its name, the field
    /// and the reason. Disabled rules are checked too, so that enabling one later cannot fail.
    ///
    /// Compile where the configuration is loaded, not on a thread that scans: a large policy (and the TOML
    /// it came from) is hundreds of thousands of small allocations, and with glibc's malloc they slow down
    /// every later allocation in that thread's arena. Measured with 10,000 rules: scans about 30% slower
    /// on the thread that compiled them, against about 10% on another (`benches/policy.rs`).
    pub fn new(config: &PolicyConfig) -> Result<Policy, PolicyError> {
        Ok(Policy {
            rules: rules::CompiledRules::compile(&config.rules)?,
            lists: lists::CompiledLists::compile(config)?,
        })
    }

    /// No rules, no lists: the score decides.
    pub fn empty() -> Policy {
        Policy { rules: rules::CompiledRules::default(), lists: lists::CompiledLists::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.lists.is_empty()
    }

    /// Enabled rules compiled.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Allow and block entries compiled.
    pub fn entry_count(&self) -> usize {
        self.lists.len()
    }

    /// The rule stage, once per message: the same for every recipient.
    pub fn rules(&self, input: &PolicyInput<'_, '_>) -> RuleOutcome {
        self.rules.evaluate(input)
    }

    /// The list stage for one recipient (`None`: the organisation's list only, for a message without
    /// recipients). Inbound mail only: outbound mail gets an empty outcome.
    pub fn lists(&self, input: &PolicyInput<'_, '_>, recipient: Option<&str>) -> ListOutcome {
        if input.envelope.direction != Direction::Inbound {
            return ListOutcome::default();
        }
        self.lists.evaluate(input, recipient)
    }

    /// Rules, then this recipient's lists (not consulted when a rule decided).
    ///
    /// A caller with several recipients calls [`Policy::rules`] once and [`Policy::lists`] per recipient,
    /// then [`Decision::combine`] for each, rather than this per recipient, which would run the rules
    /// again each time; [`crate::Engine::judge_with_policy`] does exactly that and folds the result into
    /// the verdict.
    pub fn decide(&self, input: &PolicyInput<'_, '_>, recipient: Option<&str>) -> Decision {
        let rules = self.rules(input);
        let list = if rules.decision.is_some() { ListOutcome::default() } else { self.lists(input, recipient) };
        Decision::combine(rules, list)
    }
}

/// A policy symbol for the verdict. Built here rather than through `Hits`, which keeps one hit per
/// symbol: every matching rule and every entry deserves its own line.
pub(crate) fn symbol(name: &'static str, score: f64, detail: String) -> SymbolResult {
    debug_assert!(SYMBOLS.iter().any(|s| s.name == name), "{name} is not a policy symbol");
    let mut detail = detail;
    crate::symbols::truncate_at_char(&mut detail, 300);
    SymbolResult { name: name.to_string(), group: Group::Policy, score, detail, asf_mode: None, asf_effect: None }
}
