//! Filter rules, compiled so that ten thousand of them cost about as much as ten.
//!
//! Each distinct condition becomes a *leaf*. Leaves are computed per message in bulk, field by field:
//! - `is`: one hash map per field from the lower-cased value to the leaves that want it;
//! - `contains`, `starts_with`, `ends_with`: one Aho-Corasick automaton per field holding every literal of
//!   every rule, run once over each value of the field (a DFA up to 4 MiB, else the compact NFA);
//! - `matches`: the literals each pattern requires join that automaton, so only the patterns whose literal
//!   occurs are run, each alone; patterns without such a literal share one `RegexSet`;
//! - `in_cidr`: a hash map per prefix length of the masked network;
//! - `size` thresholds: sorted, so the true ones are a prefix or a suffix.
//!
//! Headers are fed by walking the message's header list once and looking each name up, so a rule set that
//! tests a thousand different headers does not mean a thousand searches of the header list.
//!
//! Then only the rules a true leaf could have satisfied are evaluated, in rule order: a rule whose
//! conditions must all hold is filed under one of its (positive) leaves, a rule that needs any one of
//! them under each. Rules that can hold with no leaf true (a negated condition, a `score` condition, no
//! conditions) are evaluated for every message. `score` conditions are evaluated when their rule is,
//! because earlier rules' `add_score` changes the score they see.
//!
//! Not here: what the decisions do to the verdict (the engine) and the allowed/blocked senders
//! (`lists.rs`).

use std::borrow::Cow;
use std::net::IpAddr;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{PolicyAction, PolicyError, PolicyInput};
use crate::cidr::IpRange;
use crate::config::policy::{Condition, Field, FilterRule, MatchMode, Operator, RuleAction, RuleDirection, Value};
use crate::evidence::{DkimVerdict, Outcome};
use crate::trust::{ConnectionFacts, TrustBoundary};
use crate::verdict::{AddedHeader, PolicyEffects, HEADER_PREFIX};

/// Limits that keep one policy from exhausting memory: a compiled pattern (the regex crate refuses beyond),
/// and texts a person types.
const REGEX_SIZE_LIMIT: usize = 16 << 20;
/// The shared set of patterns without a usable literal holds many patterns, so it may grow larger.
const REGEX_SET_SIZE_LIMIT: usize = 256 << 20;
/// The largest Aho-Corasick DFA kept for one field; beyond, the slower, smaller NFA.
const MAX_DFA_BYTES: usize = 4 << 20;
const MAX_NAME: usize = 200;
const MAX_REJECT_TEXT: usize = 400;

type LeafId = u32;

/// Where a field's values come from. Headers are keyed by their lower-cased name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    EnvelopeFrom,
    EnvelopeFromDomain,
    From,
    FromDomain,
    Recipient,
    RecipientDomain,
    Header(String),
    AnyHeader,
    Subject,
    Body,
    Helo,
    Spf,
    Dkim,
    Dmarc,
    AuthDomain,
    AttachmentName,
    AttachmentType,
    /// The connecting server's verified names (see `crate::trust`).
    ClientPtr,
    DkimDomain,
    DkimHeadersDomain,
    ArcSealer,
    TrustedHop,
}

impl Source {
    /// Fields whose values are domain names: `ends_with` there matches whole labels, so "hoster.test" is
    /// not satisfied by "evilhoster.test" (a name anyone can register).
    fn is_domain(&self) -> bool {
        matches!(self, Source::ClientPtr | Source::DkimDomain | Source::DkimHeadersDomain | Source::ArcSealer)
    }

    /// Fields whose values are domain names or addresses, compared in the ASCII (IDNA) form of their
    /// domain whichever form the rule or the mail wrote it in (see [`super::normal_domain`]).
    fn names(&self) -> Names {
        match self {
            Source::EnvelopeFromDomain
            | Source::FromDomain
            | Source::RecipientDomain
            | Source::AuthDomain
            | Source::Helo
            | Source::ClientPtr
            | Source::DkimDomain
            | Source::DkimHeadersDomain
            | Source::ArcSealer => Names::Domain,
            Source::EnvelopeFrom | Source::From | Source::Recipient => Names::Address,
            _ => Names::Neither,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    Domain,
    Address,
    Neither,
}

impl Names {
    /// A value of such a field (from the mail, or a rule's whole value) in its ASCII form, or `None` when it
    /// has no other form: not a name field (nothing is scanned, a body included), or already ASCII.
    fn ascii_form(self, v: &str) -> Option<String> {
        if self == Names::Neither || v.is_ascii() {
            return None;
        }
        match self {
            Names::Domain => Some(match v.strip_prefix('.') {
                // A suffix written with its dot (".bücher.example") keeps it.
                Some(rest) => format!(".{}", super::normal_domain(rest)),
                None => super::normal_domain(v),
            }),
            _ => super::normal_address_domain(v),
        }
    }

    /// A rule's value in the form compared: [`Self::ascii_form`], else as written.
    fn normal<'a>(self, v: &'a str) -> Cow<'a, str> {
        self.ascii_form(v).map_or(Cow::Borrowed(v), Cow::Owned)
    }
}

/// The rule stage's result for one message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleOutcome {
    /// Every rule that matched, in order (up to and including the one that decided or stopped).
    pub matched: Vec<RuleMatch>,
    /// The first allow, quarantine or reject.
    pub decision: Option<RuleDecision>,
    /// The first rule that asked for the message to be tagged.
    pub tag: Option<String>,
    /// The sum of the matching rules' `add_score`.
    pub add_score: f64,
    pub effects: PolicyEffects,
    /// The rule whose `stop` ended the rule stage.
    pub stopped_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    /// The rule's position in the configured list.
    pub index: usize,
    pub add_score: f64,
    /// The rule, the conditions that held and the actions, as the `POLICY_RULE` symbol shows them:
    /// `"web forms": envelope_from is "forms@ourdomain.example"; Received contains "web01" => allow`.
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleDecision {
    pub action: PolicyAction,
    pub rule: String,
    /// The reject text the rule gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone)]
enum Test {
    Leaf(LeafId),
    /// Evaluated late: the score grows as rules match.
    Score {
        above: bool,
        value: f64,
    },
}

#[derive(Clone)]
struct CompiledCondition {
    test: Test,
    not: bool,
    /// How the condition reads, for the explanation.
    text: String,
}

#[derive(Clone)]
struct CompiledRule {
    index: usize,
    name: String,
    direction: RuleDirection,
    mode: MatchMode,
    conditions: Vec<CompiledCondition>,
    actions: Vec<RuleAction>,
    /// The parts of the explanation that do not depend on the message: `"name": ` and ` => allow, stop`.
    quoted_name: String,
    actions_text: String,
    explanation_len: usize,
}

impl CompiledRule {
    fn holds(&self, c: &CompiledCondition, bits: &Bits, score: f64) -> bool {
        let v = match c.test {
            Test::Leaf(l) => bits.get(l),
            Test::Score { above: true, value } => score > value,
            Test::Score { above: false, value } => score < value,
        };
        v != c.not
    }

    fn matches(&self, bits: &Bits, score: f64) -> bool {
        if self.conditions.is_empty() {
            return true;
        }
        match self.mode {
            MatchMode::All => self.conditions.iter().all(|c| self.holds(c, bits, score)),
            MatchMode::Any => self.conditions.iter().any(|c| self.holds(c, bits, score)),
        }
    }
}

/// The per-field indexes, before and after building the automata.
#[derive(Default)]
struct SlotBuilder {
    exact: FxHashMap<String, Vec<LeafId>>,
    needles: Vec<(String, LeafId, Operator)>,
    /// Each pattern with its leaf and where it was written (rule index, condition index), for errors.
    regexes: Vec<(String, LeafId, (usize, usize))>,
    exists: Vec<LeafId>,
}

#[derive(Clone)]
struct Slot {
    source: Source,
    /// `ends_with` matches whole labels ([`Source::is_domain`]).
    domain: bool,
    exact: FxHashMap<String, Vec<LeafId>>,
    needles: Option<Needles>,
    regexes: Option<RegexIndex>,
    exists: Vec<LeafId>,
}

/// A field's regular expressions. Most patterns administrators write contain a literal every match must
/// start (or end) with: those literals join the field's Aho-Corasick automaton (the same pass that finds
/// the `contains` texts), and only the patterns whose literal occurs are run, each alone. The rest share
/// one `RegexSet`. Without this, thousands of patterns in one set over a non-ASCII body fall back to the
/// regex crate's slowest engine (Unicode `\b` defeats its lazy DFA), and a policy of ten thousand rules
/// costs most of the scan.
#[derive(Clone)]
struct RegexIndex {
    /// The patterns with literals, compiled alone, with their leaf.
    filtered: Vec<(Regex, LeafId)>,
    unfiltered: Option<(RegexSet, Vec<LeafId>)>,
}

/// Why a field's index could not be built: one pattern (rule index, condition index) or all of them.
enum SlotError {
    Pattern((usize, usize), String),
    Field(String),
}

/// More literals than this for one pattern, and it goes to the shared set instead.
const MAX_LITERALS_PER_PATTERN: usize = 32;

impl RegexIndex {
    /// The index, and the literals (with the filtered pattern each stands for) for the field's automaton.
    /// Each pattern is compiled here and only here (it was checked for syntax before): a compiled regex is
    /// hundreds of allocations, and compiling thousands twice would litter the heap the scans then use.
    fn build(patterns: &[(String, LeafId, (usize, usize))]) -> Result<(RegexIndex, Vec<(String, u32)>), SlotError> {
        let (mut literals, mut filtered, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (p, leaf, origin) in patterns {
            match required_literals(p) {
                Some(l) => {
                    let re = RegexBuilder::new(p)
                        .case_insensitive(true)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| SlotError::Pattern(*origin, format!("regular expression {p:?}: {e}")))?;
                    let n = filtered.len() as u32;
                    literals.extend(l.into_iter().map(|l| (l, n)));
                    filtered.push((re, *leaf));
                }
                None => rest.push((p, *leaf, *origin)),
            }
        }
        let unfiltered = if rest.is_empty() {
            None
        } else {
            let set = RegexSetBuilder::new(rest.iter().map(|(r, _, _)| r))
                .case_insensitive(true)
                .size_limit(REGEX_SET_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    // Name the pattern that is too large on its own, if one is; else they are, together.
                    let alone = |(p, _, o): &(&String, LeafId, (usize, usize))| {
                        let built = RegexBuilder::new(p).case_insensitive(true).size_limit(REGEX_SIZE_LIMIT).build();
                        built.err().map(|e| SlotError::Pattern(*o, format!("regular expression {p:?}: {e}")))
                    };
                    rest.iter().find_map(alone).unwrap_or_else(|| SlotError::Field(e.to_string()))
                })?;
            Some((set, rest.iter().map(|(_, l, _)| *l).collect()))
        };
        Ok((RegexIndex { filtered, unfiltered }, literals))
    }

    /// Runs a filtered pattern whose literal occurs in the value.
    fn try_pattern(&self, p: u32, value: &str, bits: &mut Bits) {
        let (re, leaf) = &self.filtered[p as usize];
        if !bits.get(*leaf) && re.is_match(value) {
            bits.set(*leaf);
        }
    }

    fn run_unfiltered(&self, value: &str, bits: &mut Bits) {
        if let Some((set, leaves)) = &self.unfiltered {
            for i in set.matches(value).iter() {
                bits.set(leaves[i]);
            }
        }
    }
}

/// Literals one of which every match of the pattern contains (its prefixes, else its suffixes), when there
/// are few and they are ASCII. The pattern is read case-sensitively and the literals are then matched
/// ignoring ASCII case: a superset of where the case-insensitive pattern can match, except for the few
/// Unicode letters that fold to ASCII ones (the Kelvin sign to k), which such a pattern would find and the
/// literal would not.
fn required_literals(pattern: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).ok()?;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let mut ex = Extractor::new();
        ex.kind(kind).limit_class(4).limit_total(MAX_LITERALS_PER_PATTERN);
        let seq = ex.extract(&hir);
        let Some(lits) = seq.literals() else { continue };
        let usable = !lits.is_empty()
            && lits.len() <= MAX_LITERALS_PER_PATTERN
            && lits.iter().all(|l| l.as_bytes().len() >= 2 && l.as_bytes().is_ascii());
        if usable {
            let mut out: Vec<String> =
                lits.iter().map(|l| String::from_utf8_lossy(l.as_bytes()).to_ascii_lowercase()).collect();
            out.sort();
            out.dedup();
            return Some(out);
        }
    }
    None
}

/// What a pattern of a field's automaton stands for.
#[derive(Clone, Copy)]
enum Literal {
    /// A `contains`, `starts_with` or `ends_with` text.
    Text(LeafId, Operator),
    /// A literal of a filtered regular expression.
    Pattern(u32),
}

#[derive(Clone)]
struct Needles {
    automaton: AhoCorasick,
    literals: Vec<Literal>,
    /// Some needle is not ASCII: the automaton's case folding is ASCII only, so the value is lower-cased
    /// (Unicode) first and the needles were too.
    lowercase_value: bool,
}

impl Slot {
    fn build(source: Source, sb: SlotBuilder) -> Result<Slot, SlotError> {
        let (regexes, pattern_literals) = if sb.regexes.is_empty() {
            (None, Vec::new())
        } else {
            let (index, literals) = RegexIndex::build(&sb.regexes)?;
            (Some(index), literals)
        };
        let mut pats: Vec<String> = Vec::new();
        let mut literals = Vec::new();
        for (n, leaf, op) in sb.needles {
            pats.push(n.to_lowercase());
            literals.push(Literal::Text(leaf, op));
        }
        for (l, p) in pattern_literals {
            pats.push(l);
            literals.push(Literal::Pattern(p));
        }
        let needles = if pats.is_empty() {
            None
        } else {
            let build = |kind| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(kind))
                    .build(&pats)
                    .map_err(|e| SlotError::Field(e.to_string()))
            };
            // A DFA walks a long body about twice as fast as the compact NFA the crate picks for more than a
            // hundred patterns, at several times the memory; worth it up to a few megabytes per field.
            let dfa = build(AhoCorasickKind::DFA)?;
            let automaton =
                if dfa.memory_usage() <= MAX_DFA_BYTES { dfa } else { build(AhoCorasickKind::ContiguousNFA)? };
            Some(Needles { automaton, literals, lowercase_value: pats.iter().any(|p| !p.is_ascii()) })
        };
        Ok(Slot { domain: source.is_domain(), source, exact: sb.exact, needles, regexes, exists: sb.exists })
    }

    fn feed(&self, value: &str, bits: &mut Bits) {
        for &l in &self.exists {
            bits.set(l);
        }
        if !self.exact.is_empty() {
            let key = value.trim();
            let lower: Cow<str> =
                if key.chars().any(|c| c.is_uppercase()) { Cow::Owned(key.to_lowercase()) } else { Cow::Borrowed(key) };
            if let Some(ls) = self.exact.get(lower.as_ref()) {
                for &l in ls {
                    bits.set(l);
                }
            }
        }
        if let Some(n) = &self.needles {
            let hay: Cow<str> = if n.lowercase_value { Cow::Owned(value.to_lowercase()) } else { Cow::Borrowed(value) };
            let mut tried: Vec<u32> = Vec::new();
            for m in n.automaton.find_overlapping_iter(hay.as_ref()) {
                match n.literals[m.pattern().as_usize()] {
                    Literal::Text(leaf, op) => {
                        let hit = match op {
                            Operator::StartsWith => m.start() == 0,
                            Operator::EndsWith => {
                                m.end() == hay.len()
                                    && (!self.domain
                                        || m.start() == 0
                                        || hay.as_bytes()[m.start() - 1] == b'.'
                                        || hay.as_bytes()[m.start()] == b'.')
                            }
                            _ => true,
                        };
                        if hit {
                            bits.set(leaf);
                        }
                    }
                    Literal::Pattern(p) => {
                        if let (false, Some(r)) = (tried.contains(&p), &self.regexes) {
                            tried.push(p);
                            r.try_pattern(p, value, bits);
                        }
                    }
                }
            }
        }
        if let Some(r) = &self.regexes {
            r.run_unfiltered(value, bits);
        }
    }
}

impl super::Policy {
    /// The rule stage, once per message, with the message's connection facts as the caller computed them
    /// with its trusted relays ([`crate::trust::TrustBoundary::facts`]): `client_ip` and `client_ptr` then
    /// look at the first server outside those relays, and `trusted_hop` sees the lines they wrote.
    /// [`super::Policy::rules`] is this with no trusted relays.
    pub fn rules_with_connection(&self, input: &PolicyInput<'_, '_>, facts: &ConnectionFacts) -> RuleOutcome {
        self.rules.evaluate_with(input, facts)
    }
}

/// One thread's working memory for evaluating rules, reused from message to message.
#[derive(Default)]
struct Scratch {
    bits: Bits,
    candidates: Vec<u32>,
    matched: Vec<RuleMatch>,
}

/// Which leaves are true for this message, as bits and as a list (to find the candidate rules).
#[derive(Default)]
struct Bits {
    words: Vec<u64>,
    set: Vec<LeafId>,
}

impl Bits {
    #[cfg(test)]
    fn new(n: usize) -> Bits {
        Bits { words: vec![0; n.div_ceil(64)], set: Vec::new() }
    }

    /// Ready for a message with `n` leaves, clearing only the words the last message set.
    fn reset(&mut self, n: usize) {
        for &l in &self.set {
            if let Some(w) = self.words.get_mut(l as usize / 64) {
                *w = 0;
            }
        }
        self.set.clear();
        if self.words.len() < n.div_ceil(64) {
            self.words.resize(n.div_ceil(64), 0);
        }
    }

    fn set(&mut self, l: LeafId) {
        let (w, b) = (l as usize / 64, 1u64 << (l % 64));
        if self.words[w] & b == 0 {
            self.words[w] |= b;
            self.set.push(l);
        }
    }

    fn get(&self, l: LeafId) -> bool {
        self.words[l as usize / 64] & (1u64 << (l % 64)) != 0
    }
}

/// CIDR ranges by prefix length: the client IP masked to each length present is one hash lookup.
#[derive(Clone, Default)]
struct CidrIndex {
    v4: FxHashMap<(u8, u32), Vec<LeafId>>,
    v4_prefixes: Vec<u8>,
    v6: FxHashMap<(u8, u128), Vec<LeafId>>,
    v6_prefixes: Vec<u8>,
    exists: Vec<LeafId>,
}

fn mask4(a: u32, p: u8) -> u32 {
    if p == 0 {
        0
    } else {
        a & (u32::MAX << (32 - p as u32))
    }
}

fn mask6(a: u128, p: u8) -> u128 {
    if p == 0 {
        0
    } else {
        a & (u128::MAX << (128 - p as u32))
    }
}

impl CidrIndex {
    fn add(&mut self, r: IpRange, leaf: LeafId) {
        match r.base() {
            IpAddr::V4(b) => {
                self.v4.entry((r.prefix(), mask4(u32::from(b), r.prefix()))).or_default().push(leaf);
                if !self.v4_prefixes.contains(&r.prefix()) {
                    self.v4_prefixes.push(r.prefix());
                }
            }
            IpAddr::V6(b) => {
                self.v6.entry((r.prefix(), mask6(u128::from(b), r.prefix()))).or_default().push(leaf);
                if !self.v6_prefixes.contains(&r.prefix()) {
                    self.v6_prefixes.push(r.prefix());
                }
            }
        }
    }

    fn feed(&self, ip: IpAddr, bits: &mut Bits) {
        for &l in &self.exists {
            bits.set(l);
        }
        // An IPv4 client seen through an IPv6 socket is still that IPv4 client.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                for &p in &self.v4_prefixes {
                    if let Some(ls) = self.v4.get(&(p, mask4(u32::from(a), p))) {
                        ls.iter().for_each(|&l| bits.set(l));
                    }
                }
            }
            IpAddr::V6(a) => {
                for &p in &self.v6_prefixes {
                    if let Some(ls) = self.v6.get(&(p, mask6(u128::from(a), p))) {
                        ls.iter().for_each(|&l| bits.set(l));
                    }
                }
            }
        }
    }
}

/// Size thresholds, sorted by value.
#[derive(Clone, Default)]
struct SizeIndex {
    above: Vec<(f64, LeafId)>,
    below: Vec<(f64, LeafId)>,
}

impl SizeIndex {
    fn feed(&self, size: f64, bits: &mut Bits) {
        let n = self.above.partition_point(|(v, _)| *v < size);
        self.above[..n].iter().for_each(|&(_, l)| bits.set(l));
        let n = self.below.partition_point(|(v, _)| *v <= size);
        self.below[n..].iter().for_each(|&(_, l)| bits.set(l));
    }
}

/// The enabled rules, compiled.
#[derive(Clone, Default)]
pub(crate) struct CompiledRules {
    rules: Vec<CompiledRule>,
    leaf_count: usize,
    slots: Vec<Slot>,
    /// Lower-cased header name to its slot.
    header_slots: FxHashMap<String, usize>,
    /// The name lengths (capped at 63) that some header slot has: most of a message's headers are skipped
    /// on their length alone, without lower-casing and hashing the name.
    header_lengths: u64,
    cidr: CidrIndex,
    sizes: SizeIndex,
    /// For each leaf, the rules it can make true on its own account (see the module docs).
    triggers: Vec<Vec<u32>>,
    /// Rules evaluated for every message.
    always: Vec<u32>,
    /// Some condition reads the connection facts beyond the envelope (`client_ptr`, `trusted_hop`).
    reads_trust: bool,
}

/// Collects leaves while rules are compiled; identical conditions share one leaf.
#[derive(Default)]
struct Builder {
    leaves: FxHashMap<String, LeafId>,
    /// Whether each leaf is an exact-value lookup (preferred when filing an all-conditions rule).
    exact_leaf: Vec<bool>,
    slots: Vec<(Source, SlotBuilder)>,
    cidr: CidrIndex,
    sizes: SizeIndex,
}

impl Builder {
    fn slot(&mut self, s: Source) -> &mut SlotBuilder {
        let i = match self.slots.iter().position(|(src, _)| *src == s) {
            Some(i) => i,
            None => {
                self.slots.push((s, SlotBuilder::default()));
                self.slots.len() - 1
            }
        };
        &mut self.slots[i].1
    }

    /// The leaf for a condition (without its negation), new or shared.
    fn leaf(&mut self, key: String, exact: bool) -> (LeafId, bool) {
        if let Some(&l) = self.leaves.get(&key) {
            return (l, false);
        }
        let l = self.exact_leaf.len() as LeafId;
        self.leaves.insert(key, l);
        self.exact_leaf.push(exact);
        (l, true)
    }
}

impl CompiledRules {
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn compile(rules: &[FilterRule]) -> Result<CompiledRules, PolicyError> {
        let mut seen: FxHashMap<String, usize> = FxHashMap::default();
        let mut b = Builder::default();
        let mut compiled = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let err = |field: &str, reason: String| PolicyError::Rule {
                index,
                rule: rule.name.clone(),
                field: field.to_string(),
                reason,
            };
            check_name(&rule.name).map_err(|r| err("name", r))?;
            if let Some(first) = seen.insert(rule.name.trim().to_lowercase(), index) {
                return Err(err("name", format!("rules[{first}] has the same name (names are unique, ignoring case)")));
            }
            check_actions(&rule.actions).map_err(|(i, r)| err(&format!("actions[{i}]"), r))?;
            // Validate every condition, enabled or not; only enabled rules get leaves.
            let mut conditions = Vec::new();
            for (i, c) in rule.conditions.iter().enumerate() {
                let checked = check_condition(c).map_err(|(f, r)| err(&format!("conditions[{i}].{f}"), r))?;
                if rule.enabled {
                    let compiled = b.add(c, checked, (index, i));
                    conditions.push(compiled.map_err(|(f, r)| err(&format!("conditions[{i}].{f}"), r))?);
                }
            }
            if rule.enabled {
                let name = rule.name.trim().to_string();
                let quoted_name = format!("{name:?}: ");
                let actions: Vec<&str> = rule.actions.iter().map(RuleAction::as_str).collect();
                let actions_text = format!(" => {}", actions.join(", "));
                let explanation_len = quoted_name.len()
                    + actions_text.len()
                    + conditions.iter().map(|c: &CompiledCondition| c.text.len() + 2).sum::<usize>().max(30);
                compiled.push(CompiledRule {
                    index,
                    quoted_name,
                    actions_text,
                    explanation_len,
                    name,
                    direction: rule.direction,
                    mode: rule.match_mode,
                    conditions,
                    actions: rule.actions.clone(),
                });
            }
        }
        let leaf_count = b.exact_leaf.len();
        let mut triggers: Vec<Vec<u32>> = vec![Vec::new(); leaf_count];
        let mut always = Vec::new();
        for (ri, r) in compiled.iter().enumerate() {
            let positive = |c: &CompiledCondition| match (c.not, &c.test) {
                (false, Test::Leaf(l)) => Some(*l),
                _ => None,
            };
            let ri = ri as u32;
            match r.mode {
                _ if r.conditions.is_empty() => always.push(ri),
                MatchMode::All => {
                    // Any one positive leaf must be true: file the rule under one, an exact-value one if
                    // there is one (they are rarely true, so the rule is rarely a candidate).
                    let leaves: Vec<LeafId> = r.conditions.iter().filter_map(positive).collect();
                    match leaves.iter().find(|&&l| b.exact_leaf[l as usize]).or(leaves.first()) {
                        Some(&l) => triggers[l as usize].push(ri),
                        None => always.push(ri),
                    }
                }
                MatchMode::Any => {
                    if r.conditions.iter().all(|c| positive(c).is_some()) {
                        for c in &r.conditions {
                            if let Some(l) = positive(c) {
                                triggers[l as usize].push(ri);
                            }
                        }
                    } else {
                        always.push(ri);
                    }
                }
            }
        }
        let mut slots = Vec::new();
        let mut header_slots = FxHashMap::default();
        for (source, sb) in b.slots {
            let field = source_name(&source);
            let limit = |reason: String| PolicyError::Limit { field: field.clone(), reason };
            if let Source::Header(name) = &source {
                header_slots.insert(name.clone(), slots.len());
            }
            slots.push(Slot::build(source, sb).map_err(|e| match e {
                SlotError::Field(reason) => limit(reason),
                SlotError::Pattern((index, condition), reason) => PolicyError::Rule {
                    index,
                    rule: rules[index].name.clone(),
                    field: format!("conditions[{condition}].value"),
                    reason,
                },
            })?);
        }
        let mut sizes = b.sizes;
        sizes.above.sort_by(|a, b| a.0.total_cmp(&b.0));
        sizes.below.sort_by(|a, b| a.0.total_cmp(&b.0));
        let header_lengths = header_slots.keys().fold(0u64, |m, k| m | 1 << k.len().min(63));
        let reads_trust = slots.iter().any(|s| matches!(s.source, Source::ClientPtr | Source::TrustedHop));
        Ok(CompiledRules {
            rules: compiled,
            leaf_count,
            slots,
            header_slots,
            header_lengths,
            cidr: b.cidr,
            sizes,
            triggers,
            always,
            reads_trust,
        })
    }

    /// Runs the rules over one message, with no trusted relays: only the direct connection is a fact.
    pub(crate) fn evaluate(&self, input: &PolicyInput<'_, '_>) -> RuleOutcome {
        if self.rules.is_empty() {
            return RuleOutcome::default();
        }
        // Computed only when a condition needs more than the envelope's client IP.
        let facts = if self.reads_trust {
            ConnectionFacts::compute(&TrustBoundary::none(), input.envelope, input.evidence, &input.message.hops)
        } else {
            ConnectionFacts { client_ip: input.envelope.client_ip, ..ConnectionFacts::default() }
        };
        self.evaluate_with(input, &facts)
    }

    /// Runs the rules over one message with its connection facts (computed with the trusted relays).
    pub(crate) fn evaluate_with(&self, input: &PolicyInput<'_, '_>, facts: &ConnectionFacts) -> RuleOutcome {
        let mut out = RuleOutcome::default();
        if self.rules.is_empty() {
            return out;
        }
        // The working memory is kept per thread and reused: for ten thousand rules the leaves' bits are over a
        // kilobyte, and allocating that (or growing the list of matches past it) per message makes glibc's
        // malloc consolidate its small free chunks on every scan.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = Default::default();
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.run(input, facts, &mut scratch, &mut out),
            // Only if evaluation were ever re-entered on this thread.
            Err(_) => self.run(input, facts, &mut Scratch::default(), &mut out),
        });
        out
    }

    fn run(&self, input: &PolicyInput<'_, '_>, facts: &ConnectionFacts, scratch: &mut Scratch, out: &mut RuleOutcome) {
        let Scratch { bits, candidates, matched } = scratch;
        bits.reset(self.leaf_count);
        self.compute_leaves(input, facts, bits);
        candidates.clear();
        candidates.extend_from_slice(&self.always);
        for &l in &bits.set {
            candidates.extend_from_slice(&self.triggers[l as usize]);
        }
        candidates.sort_unstable();
        candidates.dedup();
        matched.clear();
        let bits = &*bits;
        let mut score = input.score;
        for &ri in candidates.iter() {
            let r = &self.rules[ri as usize];
            if !r.direction.applies_to(input.envelope.direction) || !r.matches(bits, score) {
                continue;
            }
            // The explanation, in one allocation (this runs for every match), with the score this rule saw.
            let mut explanation = String::with_capacity(r.explanation_len);
            explanation.push_str(&r.quoted_name);
            if r.conditions.is_empty() {
                explanation.push_str("no conditions: every message");
            }
            for c in r.conditions.iter().filter(|c| r.holds(c, bits, score)) {
                if explanation.len() > r.quoted_name.len() {
                    explanation.push_str("; ");
                }
                explanation.push_str(&c.text);
            }
            explanation.push_str(&r.actions_text);
            let mut add = 0.0;
            let mut stop = false;
            for a in &r.actions {
                match a {
                    RuleAction::Allow {} | RuleAction::Quarantine {} | RuleAction::Reject { .. } => {
                        let (action, message) = match a {
                            RuleAction::Allow {} => (PolicyAction::Allow, None),
                            RuleAction::Quarantine {} => (PolicyAction::Quarantine, None),
                            RuleAction::Reject { message } => (PolicyAction::Reject, message.clone()),
                            _ => unreachable!("matched above"),
                        };
                        if out.decision.is_none() {
                            out.effects.reject_message = message.clone();
                            out.decision = Some(RuleDecision { action, rule: r.name.clone(), message });
                        }
                        stop = true;
                    }
                    RuleAction::Tag {} => {
                        out.tag.get_or_insert_with(|| r.name.clone());
                    }
                    RuleAction::AddScore { score: s } => add += s,
                    RuleAction::AddHeader { name, value } => {
                        out.effects.add_headers.push(AddedHeader { name: name.clone(), value: value.clone() })
                    }
                    RuleAction::Redirect { to } => {
                        out.effects.redirect.get_or_insert_with(|| to.clone());
                    }
                    RuleAction::Copy { to } => {
                        if !out.effects.copy.iter().any(|c| c.eq_ignore_ascii_case(to)) {
                            out.effects.copy.push(to.clone());
                        }
                    }
                    RuleAction::Stop {} => {
                        out.stopped_by.get_or_insert_with(|| r.name.clone());
                        stop = true;
                    }
                }
            }
            score += add;
            out.add_score += add;
            matched.push(RuleMatch { rule: r.name.clone(), index: r.index, add_score: add, explanation });
            if stop {
                break;
            }
        }
        // Allocated at its final size, once; the scratch keeps its capacity for the next message.
        out.matched = Vec::with_capacity(matched.len());
        out.matched.append(matched);
    }

    fn compute_leaves(&self, input: &PolicyInput<'_, '_>, facts: &ConnectionFacts, bits: &mut Bits) {
        let msg = input.message;
        for slot in &self.slots {
            match &slot.source {
                // Fed below, in one walk over the headers.
                Source::Header(_) => {}
                Source::AnyHeader => {
                    let mut line = String::new();
                    for h in &msg.headers {
                        line.clear();
                        line.push_str(&h.name);
                        line.push_str(": ");
                        line.push_str(&h.value);
                        slot.feed(&line, bits);
                    }
                }
                source => for_each_value(source, input, facts, |v| {
                    if !v.is_empty() {
                        slot.feed(v, bits);
                    }
                }),
            }
        }
        if !self.header_slots.is_empty() {
            let mut name = String::new();
            for h in &msg.headers {
                if self.header_lengths & (1 << h.name.len().min(63)) == 0 {
                    continue;
                }
                name.clear();
                name.push_str(&h.name);
                name.make_ascii_lowercase();
                if let Some(&i) = self.header_slots.get(&name) {
                    self.slots[i].feed(&h.value, bits);
                }
            }
        }
        // The connecting server: the first one outside our trusted relays when the message came through them.
        if let Some(ip) = facts.sender_ip() {
            self.cidr.feed(ip, bits);
        }
        self.sizes.feed(msg.raw.len() as f64, bits);
    }
}

/// Calls `f` with each value of a field for this message (several for recipients, authenticated domains,
/// attachments), borrowed where it can be: this runs for every message.
fn for_each_value(source: &Source, input: &PolicyInput<'_, '_>, facts: &ConnectionFacts, mut f: impl FnMut(&str)) {
    // A name in Unicode is offered in both forms: its ASCII form meets `is`/`ends_with` values (which are
    // stored in that form), the text as written still meets `contains`, `starts_with` and patterns.
    let names = source.names();
    let mut f = |v: &str| {
        f(v);
        if let Some(ascii) = names.ascii_form(v) {
            f(&ascii);
        }
    };
    let (env, msg) = (input.envelope, input.message);
    // Domains compare lower-case; `Slot::feed` folds case itself, so only the trailing dot goes here.
    fn domain_of(a: &str) -> Option<&str> {
        a.rsplit_once('@').map(|(_, d)| d.trim().trim_end_matches('.'))
    }
    let recipients = || env.rcpt_to.iter().map(|r| r.trim().trim_matches(['<', '>']));
    match source {
        Source::EnvelopeFrom => input.envelope_from().into_iter().for_each(f),
        Source::EnvelopeFromDomain => input.envelope_from().and_then(domain_of).into_iter().for_each(f),
        Source::From => msg.from.iter().for_each(|m| f(&m.address)),
        Source::FromDomain => msg.from.iter().for_each(|m| f(&m.domain)),
        Source::Recipient => recipients().for_each(f),
        Source::RecipientDomain => recipients().filter_map(domain_of).for_each(f),
        Source::Subject => msg.subject.as_deref().into_iter().for_each(f),
        Source::Body => f(&msg.body_text),
        Source::Helo => env.helo.as_deref().into_iter().for_each(f),
        Source::Spf => input.spf().map(super::spf_str).into_iter().for_each(f),
        Source::Dkim => input.dkim().into_iter().for_each(f),
        Source::Dmarc => input.dmarc().into_iter().for_each(f),
        Source::AuthDomain => input.auth_domains().iter().for_each(|d| f(d)),
        Source::AttachmentName => msg.attachments.iter().filter_map(|a| a.name.as_deref()).for_each(f),
        Source::AttachmentType => msg.attachments.iter().for_each(|a| f(a.real_type.as_str())),
        Source::ClientPtr => facts.sender_names().iter().for_each(|n| f(n)),
        Source::TrustedHop => facts.trusted_hops.iter().for_each(|h| f(&h.text)),
        Source::DkimDomain | Source::DkimHeadersDomain => {
            let headers_only = *source == Source::DkimHeadersDomain;
            let sigs = input.evidence.sender.as_ref().map(|s| s.dkim.as_slice()).unwrap_or_default();
            sigs.iter()
                .filter(|d| d.verdict == DkimVerdict::Pass || (headers_only && d.verdict == DkimVerdict::BodyModified))
                .for_each(|d| f(d.domain.trim().trim_end_matches('.')))
        }
        Source::ArcSealer => {
            let arc = input.evidence.sender.as_ref().and_then(|s| s.arc.as_ref());
            if arc.is_some_and(|a| a.result == Outcome::Pass) {
                msg.headers_named("ARC-Seal").filter_map(seal_domain).for_each(f)
            }
        }
        Source::Header(_) | Source::AnyHeader => {}
    }
}

fn source_name(s: &Source) -> String {
    match s {
        Source::Header(h) => format!("header {h}"),
        Source::EnvelopeFrom => Field::EnvelopeFrom.as_str().into(),
        Source::EnvelopeFromDomain => Field::EnvelopeFromDomain.as_str().into(),
        Source::From => Field::From.as_str().into(),
        Source::FromDomain => Field::FromDomain.as_str().into(),
        Source::Recipient => Field::Recipient.as_str().into(),
        Source::RecipientDomain => Field::RecipientDomain.as_str().into(),
        Source::AnyHeader => Field::AnyHeader.as_str().into(),
        Source::Subject => Field::Subject.as_str().into(),
        Source::Body => Field::Body.as_str().into(),
        Source::Helo => Field::Helo.as_str().into(),
        Source::Spf => Field::Spf.as_str().into(),
        Source::Dkim => Field::Dkim.as_str().into(),
        Source::Dmarc => Field::Dmarc.as_str().into(),
        Source::AuthDomain => Field::AuthDomain.as_str().into(),
        Source::AttachmentName => Field::AttachmentName.as_str().into(),
        Source::AttachmentType => Field::AttachmentType.as_str().into(),
        Source::ClientPtr => Field::ClientPtr.as_str().into(),
        Source::DkimDomain => Field::DkimDomain.as_str().into(),
        Source::DkimHeadersDomain => Field::DkimHeadersDomain.as_str().into(),
        Source::ArcSealer => Field::ArcSealer.as_str().into(),
        Source::TrustedHop => Field::TrustedHop.as_str().into(),
    }
}

/// The d= tag of an ARC-Seal header.
fn seal_domain(v: &str) -> Option<&str> {
    v.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("d")).then(|| v.trim().trim_end_matches('.')).filter(|d| !d.is_empty())
    })
}

/// A condition after validation, before it becomes a leaf.
enum Checked {
    Texts(Vec<String>),
    Number(f64),
    Cidr(IpRange),
    Exists,
}

type FieldError = (&'static str, String);

const SPF_VALUES: &[&str] = &["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"];
const DKIM_VALUES: &[&str] = &["pass", "fail", "none", "temperror"];
const DMARC_VALUES: &[&str] = &["pass", "fail", "none", "temperror", "permerror"];
const TYPE_VALUES: &[&str] = &[
    "exe", "elf", "zip", "rar", "7z", "gzip", "pdf", "ole", "rtf", "png", "jpeg", "gif", "html", "script", "iso",
    "text", "unknown",
];

fn check_condition(c: &Condition) -> Result<Checked, FieldError> {
    use Field as F;
    use Operator as O;
    match (c.field, &c.header) {
        (F::Header, None) => return Err(("header", "give the header's name (header = \"Received\")".into())),
        (F::Header, Some(h)) => check_header_name(h).map_err(|r| ("header", r))?,
        (_, Some(_)) => return Err(("header", "only for field = \"header\"".into())),
        _ => {}
    }
    let allowed: &[Operator] = match c.field {
        F::Size | F::Score => &[O::Above, O::Below],
        F::ClientIp => &[O::Is, O::InCidr, O::Exists],
        F::Spf | F::Dkim | F::Dmarc => &[O::Is, O::Exists],
        F::ClientPtr | F::DkimDomain | F::DkimHeadersDomain | F::ArcSealer => {
            &[O::Is, O::EndsWith, O::Contains, O::Matches, O::Exists]
        }
        _ => &[O::Is, O::Contains, O::StartsWith, O::EndsWith, O::Matches, O::Exists],
    };
    if !allowed.contains(&c.op) {
        let names: Vec<&str> = allowed.iter().map(|o| o.as_str()).collect();
        return Err((
            "op",
            format!("{} does not apply to {}; use {}", c.op.as_str(), c.field.as_str(), names.join(", ")),
        ));
    }
    if c.op == O::Exists {
        return match c.value {
            Some(_) => Err(("value", "exists takes no value".into())),
            None => Ok(Checked::Exists),
        };
    }
    let Some(value) = &c.value else { return Err(("value", format!("{} needs a value", c.op.as_str()))) };
    match c.op {
        O::Above | O::Below => {
            let n = match value {
                Value::Number(n) => *n,
                Value::Text(t) if c.field == F::Size => parse_size(t).map_err(|r| ("value", r))?,
                _ => return Err(("value", format!("{} compares with a number", c.field.as_str()))),
            };
            if !n.is_finite() {
                return Err(("value", "the number must be finite".into()));
            }
            Ok(Checked::Number(n))
        }
        O::InCidr | O::Is if c.field == F::ClientIp => {
            let Value::Text(t) = value else { return Err(("value", "give one address or CIDR range as text".into())) };
            if c.op == O::Is && t.contains('/') {
                return Err(("value", format!("{t:?} is a range: use in_cidr")));
            }
            IpRange::parse(t).map(Checked::Cidr).map_err(|r| ("value", r))
        }
        _ => {
            let texts = value.texts();
            if texts.is_empty() {
                return Err(("value", "the list is empty".into()));
            }
            if texts.iter().any(|t| t.trim().is_empty()) {
                return Err((
                    "value",
                    "an empty text would match everything (or nothing); to test for an absent field use exists with not = true".into(),
                ));
            }
            let known = match c.field {
                F::Spf => Some(SPF_VALUES),
                F::Dkim => Some(DKIM_VALUES),
                F::Dmarc => Some(DMARC_VALUES),
                F::AttachmentType if c.op == O::Is => Some(TYPE_VALUES),
                _ => None,
            };
            if let Some(known) = known {
                if let Some(bad) = texts.iter().find(|t| !known.contains(&t.trim().to_lowercase().as_str())) {
                    return Err((
                        "value",
                        format!("{bad:?} is not a {} result; use one of {}", c.field.as_str(), known.join(", ")),
                    ));
                }
            }
            if c.op == O::Matches {
                for t in &texts {
                    // Syntax only, here, so a bad pattern names its rule; compiling (and its size limit) comes
                    // once, when the field's index is built (which still names the rule).
                    regex_syntax::ParserBuilder::new()
                        .case_insensitive(true)
                        .build()
                        .parse(t)
                        .map_err(|e| ("value", format!("bad regular expression {t:?}: {e}")))?;
                }
            }
            Ok(Checked::Texts(texts))
        }
    }
}

/// "10 MB", "500k", "1000000": bytes, with decimal (kB, MB, GB) or binary (KiB, MiB, GiB) units.
fn parse_size(t: &str) -> Result<f64, String> {
    let s = t.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{t:?} is not a size (e.g. 1000000, \"500 kB\", \"10 MB\")"))?;
    let mult = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("{t:?}: unknown unit {u:?} (B, kB, MB, GB, KiB, MiB, GiB)")),
    };
    Ok(n * mult)
}

impl Builder {
    /// Files a checked condition under its leaf and returns it compiled.
    fn add(
        &mut self,
        c: &Condition,
        checked: Checked,
        origin: (usize, usize),
    ) -> Result<CompiledCondition, FieldError> {
        let header = c.header.as_deref().map(|h| h.trim().to_ascii_lowercase());
        let field_text = match (&c.field, &c.header) {
            (Field::Header, Some(h)) => h.trim().to_string(),
            (f, _) => f.as_str().to_string(),
        };
        let text = match (&c.value, c.op) {
            (_, Operator::Exists) => format!("{}{field_text} exists", if c.not { "not " } else { "" }),
            (Some(v), op) => format!("{}{field_text} {} {v}", if c.not { "not " } else { "" }, op.as_str()),
            (None, op) => format!("{field_text} {}", op.as_str()),
        };
        let test = match (c.field, checked) {
            (Field::Score, Checked::Number(value)) => Test::Score { above: c.op == Operator::Above, value },
            (Field::Size, Checked::Number(value)) => {
                let (leaf, new) = self.leaf(format!("size\0{}\0{value}", c.op.as_str()), false);
                if new {
                    let list = if c.op == Operator::Above { &mut self.sizes.above } else { &mut self.sizes.below };
                    list.push((value, leaf));
                }
                Test::Leaf(leaf)
            }
            (Field::ClientIp, Checked::Cidr(r)) => {
                let (leaf, new) = self.leaf(format!("ip\0{}/{}", r.base(), r.prefix()), true);
                if new {
                    self.cidr.add(r, leaf);
                }
                Test::Leaf(leaf)
            }
            (Field::ClientIp, Checked::Exists) => {
                let (leaf, new) = self.leaf("ip\0exists".into(), false);
                if new {
                    self.cidr.exists.push(leaf);
                }
                Test::Leaf(leaf)
            }
            (field, checked) => {
                let source = match field {
                    Field::EnvelopeFrom => Source::EnvelopeFrom,
                    Field::EnvelopeFromDomain => Source::EnvelopeFromDomain,
                    Field::From => Source::From,
                    Field::FromDomain => Source::FromDomain,
                    Field::Recipient => Source::Recipient,
                    Field::RecipientDomain => Source::RecipientDomain,
                    Field::Header => Source::Header(header.clone().unwrap_or_default()),
                    Field::AnyHeader => Source::AnyHeader,
                    Field::Subject => Source::Subject,
                    Field::Body => Source::Body,
                    Field::Helo => Source::Helo,
                    Field::Spf => Source::Spf,
                    Field::Dkim => Source::Dkim,
                    Field::Dmarc => Source::Dmarc,
                    Field::AuthDomain => Source::AuthDomain,
                    Field::AttachmentName => Source::AttachmentName,
                    Field::AttachmentType => Source::AttachmentType,
                    Field::ClientPtr => Source::ClientPtr,
                    Field::DkimDomain => Source::DkimDomain,
                    Field::DkimHeadersDomain => Source::DkimHeadersDomain,
                    Field::ArcSealer => Source::ArcSealer,
                    Field::TrustedHop => Source::TrustedHop,
                    Field::ClientIp | Field::Size | Field::Score => {
                        return Err(("op", format!("{} does not apply to {}", c.op.as_str(), field.as_str())))
                    }
                };
                let texts: Vec<String> = match checked {
                    // Exact values compare trimmed; literals keep their inner and outer spaces ("open sesame ");
                    // regular expressions are left alone (lower-casing `\S` would change its meaning).
                    Checked::Texts(t) => match c.op {
                        Operator::Is => t.into_iter().map(|t| source.names().normal(t.trim()).to_lowercase()).collect(),
                        Operator::EndsWith => t.into_iter().map(|t| source.names().normal(&t).to_lowercase()).collect(),
                        Operator::Matches => t,
                        _ => t.into_iter().map(|t| t.to_lowercase()).collect(),
                    },
                    Checked::Exists => Vec::new(),
                    Checked::Number(_) | Checked::Cidr(_) => {
                        return Err(("value", format!("{} compares with text", field.as_str())))
                    }
                };
                let mut sorted = texts.clone();
                sorted.sort();
                let key = format!("{}\0{}\0{}", source_name(&source), c.op.as_str(), sorted.join("\0"));
                let (leaf, new) = self.leaf(key, c.op == Operator::Is);
                if new {
                    let op = c.op;
                    let slot = self.slot(source);
                    match op {
                        Operator::Exists => slot.exists.push(leaf),
                        Operator::Is => {
                            for t in texts {
                                slot.exact.entry(t).or_default().push(leaf);
                            }
                        }
                        Operator::Matches => slot.regexes.extend(texts.into_iter().map(|t| (t, leaf, origin))),
                        _ => slot.needles.extend(texts.into_iter().map(|t| (t, leaf, op))),
                    }
                }
                Test::Leaf(leaf)
            }
        };
        Ok(CompiledCondition { test, not: c.not, text })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let n = name.trim();
    if n.is_empty() {
        return Err("a rule needs a name".into());
    }
    if n.chars().count() > MAX_NAME {
        return Err(format!("at most {MAX_NAME} characters"));
    }
    if n.chars().any(char::is_control) {
        return Err("no control characters (it is written into a header)".into());
    }
    Ok(())
}

fn check_header_name(h: &str) -> Result<(), String> {
    let h = h.trim();
    if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(format!("{h:?} is not a header name (printable ASCII, no colon or space)"));
    }
    Ok(())
}

fn check_address(a: &str) -> Result<(), String> {
    let ok = match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !a.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{a:?} is not an email address"))
    }
}

fn check_actions(actions: &[RuleAction]) -> Result<(), (usize, String)> {
    if actions.is_empty() {
        return Err((0, "a rule needs at least one action".into()));
    }
    let mut decision: Option<(usize, &str)> = None;
    let mut redirect = None;
    for (i, a) in actions.iter().enumerate() {
        match a {
            RuleAction::Allow {} | RuleAction::Quarantine {} | RuleAction::Reject { .. } => {
                if let Some((j, first)) = decision {
                    return Err((i, format!("a rule makes one decision; actions[{j}] is already {first}")));
                }
                decision = Some((i, a.as_str()));
                if let RuleAction::Reject { message: Some(m) } = a {
                    if m.trim().is_empty()
                        || m.len() > MAX_REJECT_TEXT
                        || !m.bytes().all(|b| (b' '..=b'~').contains(&b))
                    {
                        return Err((
                            i,
                            format!("message: the SMTP reply text must be 1 to {MAX_REJECT_TEXT} printable ASCII characters on one line"),
                        ));
                    }
                }
            }
            RuleAction::AddScore { score } => {
                if !score.is_finite() {
                    return Err((i, "score: must be a finite number".into()));
                }
            }
            RuleAction::AddHeader { name, value } => {
                check_header_name(name).map_err(|r| (i, format!("name: {r}")))?;
                if name.trim().len() >= HEADER_PREFIX.len()
                    && name.trim()[..HEADER_PREFIX.len()].eq_ignore_ascii_case(HEADER_PREFIX)
                {
                    return Err((i, format!("name: {HEADER_PREFIX}* headers are the gateway's own verdict")));
                }
                if value.contains(['\r', '\n']) || value.len() > 900 {
                    return Err((i, "value: one line of at most 900 characters".into()));
                }
            }
            RuleAction::Redirect { to } => {
                check_address(to.trim()).map_err(|r| (i, format!("to: {r}")))?;
                if let Some(j) = redirect.replace(i) {
                    return Err((i, format!("to: actions[{j}] already redirects")));
                }
            }
            RuleAction::Copy { to } => check_address(to.trim()).map_err(|r| (i, format!("to: {r}")))?,
            RuleAction::Tag {} | RuleAction::Stop {} => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_filtered_by_their_required_literals() {
        assert_eq!(required_literals(r"\b(payroll|salary)\b"), Some(vec!["payroll".into(), "salary".into()]));
        assert_eq!(required_literals(r"^from mta\d+\.esp\.example "), Some(vec!["from mta".into()]));
        assert_eq!(required_literals(r".*\.zip$"), Some(vec![".zip".into()]), "suffixes when there is no prefix");
        assert_eq!(required_literals(r"\w+"), None);
        assert_eq!(required_literals(r"(?i)a.*b"), None, "literals shorter than two bytes filter nothing");
        assert_eq!(required_literals("caf\u{e9}"), None, "non-ASCII literals are not filtered ASCII-insensitively");

        let pats = vec![
            (r"\border-1-[0-9]{4}\b".to_string(), 0, (0, 0)),
            (r"(?-i)\bURGENT\b".to_string(), 1, (1, 0)),
            (r"\w{40,}".to_string(), 2, (2, 0)),
        ];
        let slot = Slot::build(Source::Body, SlotBuilder { regexes: pats, ..SlotBuilder::default() }).ok().unwrap();
        let idx = slot.regexes.as_ref().unwrap();
        assert!(idx.unfiltered.is_some() && idx.filtered.len() == 2);
        let mut bits = Bits::new(3);
        slot.feed("Ihre ORDER-1-2024 ist unterwegs, grüße, urgent", &mut bits);
        assert_eq!((bits.get(0), bits.get(1), bits.get(2)), (true, false, false));
        let mut bits = Bits::new(3);
        slot.feed(&format!("URGENT {}", "x".repeat(41)), &mut bits);
        assert_eq!((bits.get(0), bits.get(1), bits.get(2)), (false, true, true));
    }

    mod connection_fields {
        use crate::envelope::Envelope;
        use crate::evidence::Evidence;
        use crate::evidence::{ArcFacts, DkimFacts, DkimVerdict, Outcome, PtrFacts, SenderFacts};
        use crate::message::Message;
        use crate::policy::{Policy, PolicyConfig, PolicyError, PolicyInput};
        use crate::trust::TrustBoundary;

        fn policy(conditions: &str) -> Result<Policy, PolicyError> {
            let text =
                format!("[[rules]]\nname = \"r\"\nconditions = [{conditions}]\nactions = [{{ action = \"allow\" }}]\n");
            Policy::new(&toml::from_str::<PolicyConfig>(&text).unwrap())
        }

        fn sig(domain: &str, verdict: DkimVerdict) -> DkimFacts {
            DkimFacts {
                domain: domain.into(),
                selector: "s1".into(),
                verdict,
                detail: String::new(),
                signed_headers: Vec::new(),
            }
        }

        fn evidence() -> Evidence {
            Evidence::from_sender(SenderFacts {
                ptr: Some(PtrFacts { result: Outcome::Pass, names: vec!["web01.hoster.test.".into()] }),
                dkim: vec![
                    sig("acme.test", DkimVerdict::BodyModified),
                    sig("mcsv.test", DkimVerdict::Pass),
                    sig("evil.test", DkimVerdict::Fail),
                ],
                arc: Some(ArcFacts { result: Outcome::Pass, hops: 1, first_hop_results: None, problem: None }),
                ..SenderFacts::default()
            })
        }

        const RAW: &str = "Received: from web01.hoster.test (web01.hoster.test [203.0.113.50]) by relay.acme.test; Tue, 1 Dec 2026 10:00:00 +0000\r\n\
ARC-Seal: i=1; a=rsa-sha256; cv=none; d=Sig.Test; s=arc; b=AAAA\r\nFrom: webform@acme.test\r\nSubject: t\r\n\r\nhello\r\n";

        /// Whether the rule matched, with no trusted relays and with 10.1.0.0/16 trusted.
        fn matches(conditions: &str, client: &str, ev: &Evidence) -> (bool, bool) {
            let p = policy(conditions).unwrap();
            let m = Message::parse(RAW.as_bytes(), 1 << 20);
            let env = Envelope {
                client_ip: Some(client.parse().unwrap()),
                helo: Some("x.test".into()),
                ..Envelope::default()
            };
            let input = PolicyInput { envelope: &env, message: &m, evidence: ev, symbols: &[], score: 0.0, now: 0 };
            let plain = p.rules(&input).decision.is_some();
            let relays = TrustBoundary::new(&crate::config::OrganisationConfig {
                trusted_relay_networks: vec!["10.1.0.0/16".into()],
                ..Default::default()
            })
            .unwrap();
            let facts = relays.facts(&env, ev, &m);
            (plain, p.rules_with_connection(&input, &facts).decision.is_some())
        }

        #[test]
        fn each_new_field_reads_its_evidence() {
            let ev = evidence();
            let direct = "203.0.113.50";
            let yes = |c: &str| assert_eq!(matches(c, direct, &ev), (true, true), "{c}");
            let no = |c: &str| assert_eq!(matches(c, direct, &ev), (false, false), "{c}");
            yes(r#"{ field = "client_ptr", op = "is", value = "web01.hoster.test" }"#);
            yes(r#"{ field = "client_ptr", op = "ends_with", value = "hoster.test" }"#);
            yes(r#"{ field = "client_ptr", op = "ends_with", value = ".hoster.test" }"#);
            no(r#"{ field = "client_ptr", op = "ends_with", value = "oster.test" }"#);
            yes(r#"{ field = "dkim_domain", op = "is", value = "mcsv.test" }"#);
            no(r#"{ field = "dkim_domain", op = "is", value = "acme.test" }"#);
            yes(r#"{ field = "dkim_headers_domain", op = "is", value = "acme.test" }"#);
            yes(r#"{ field = "dkim_headers_domain", op = "is", value = "mcsv.test" }"#);
            no(r#"{ field = "dkim_headers_domain", op = "is", value = "evil.test" }"#);
            yes(r#"{ field = "arc_sealer", op = "is", value = "sig.test" }"#);
            // Without trusted relays, no line is a fact.
            no(r#"{ field = "trusted_hop", op = "contains", value = "web01" }"#);

            let mut failed = evidence();
            failed.sender.as_mut().unwrap().arc.as_mut().unwrap().result = Outcome::Fail;
            failed.sender.as_mut().unwrap().ptr.as_mut().unwrap().result = Outcome::Fail;
            for c in [r#"{ field = "arc_sealer", op = "exists" }"#, r#"{ field = "client_ptr", op = "exists" }"#] {
                assert_eq!(matches(c, direct, &failed), (false, false), "{c}");
            }
        }

        #[test]
        fn behind_a_trusted_relay_the_origin_is_the_connecting_server() {
            // The relay 10.1.0.5 connected; its line says web01 (203.0.113.50) handed it the message.
            let ev = Evidence::default();
            let relay = "10.1.0.5";
            let c = r#"{ field = "client_ip", op = "is", value = "203.0.113.50" }"#;
            assert_eq!(matches(c, relay, &ev), (false, true));
            let c = r#"{ field = "client_ptr", op = "is", value = "web01.hoster.test" }"#;
            assert_eq!(matches(c, relay, &ev), (false, true));
            let c = r#"{ field = "trusted_hop", op = "contains", value = "from web01.hoster.test" }"#;
            assert_eq!(matches(c, relay, &ev), (false, true));
            // The same line, sent by the spoofer itself (not a trusted relay): a claim.
            assert_eq!(matches(c, "198.18.0.9", &ev), (false, false));
            let c = r#"{ field = "client_ip", op = "in_cidr", value = "10.1.0.0/16" }"#;
            assert_eq!(matches(c, relay, &ev), (true, false), "the relay is not the sender");
        }

        #[test]
        fn operators_are_checked_for_the_new_fields() {
            for bad in [
                r#"{ field = "client_ptr", op = "in_cidr", value = "10.0.0.0/8" }"#,
                r#"{ field = "client_ptr", op = "starts_with", value = "web" }"#,
                r#"{ field = "dkim_domain", op = "above", value = 3 }"#,
                r#"{ field = "arc_sealer", op = "is", value = "" }"#,
                r#"{ field = "trusted_hop", op = "below", value = 1 }"#,
                r#"{ field = "dkim_headers_domain", op = "matches", value = "(" }"#,
                r#"{ field = "client_ptr", header = "Received", op = "exists" }"#,
            ] {
                let e = policy(bad).err().unwrap_or_else(|| panic!("accepted: {bad}")).to_string();
                assert!(e.contains("conditions[0]"), "{bad}: {e}");
            }
            for good in [
                r#"{ field = "trusted_hop", op = "starts_with", value = "from relay" }"#,
                r#"{ field = "dkim_domain", op = "matches", value = '^mcsv\.test$' }"#,
                r#"{ field = "arc_sealer", op = "exists", not = true }"#,
            ] {
                assert!(policy(good).is_ok(), "{good}");
            }
        }
    }

    #[test]
    fn sizes_read_with_units() {
        assert_eq!(parse_size("1000").unwrap(), 1000.0);
        assert_eq!(parse_size("10 MB").unwrap(), 10e6);
        assert_eq!(parse_size("2KiB").unwrap(), 2048.0);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn size_index_finds_the_true_thresholds() {
        let s = SizeIndex { above: vec![(100.0, 0), (1000.0, 1)], below: vec![(100.0, 2), (1000.0, 3)] };
        let mut bits = Bits::new(4);
        s.feed(500.0, &mut bits);
        assert_eq!((bits.get(0), bits.get(1), bits.get(2), bits.get(3)), (true, false, false, true));
    }

    #[test]
    fn cidr_index_masks_per_prefix() {
        let mut c = CidrIndex::default();
        c.add(IpRange::parse("198.51.100.0/24").unwrap(), 0);
        c.add(IpRange::parse("198.51.100.7").unwrap(), 1);
        c.add(IpRange::parse("2001:db8::/32").unwrap(), 2);
        let mut bits = Bits::new(3);
        c.feed("::ffff:198.51.100.9".parse().unwrap(), &mut bits);
        assert_eq!((bits.get(0), bits.get(1), bits.get(2)), (true, false, false));
        let mut bits = Bits::new(3);
        c.feed("2001:db8:5::1".parse().unwrap(), &mut bits);
        assert!(bits.get(2) && !bits.get(0));
    }
}
