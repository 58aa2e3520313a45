//! Weighted phrase and pattern rules on the subject, body, headers and URLs.
//!
//! The built-in set below covers the stock phrases of unsolicited bulk mail (removal instructions, "risk
//! free", advance-fee fraud, pharmacy and mortgage offers); administrators add their own in the
//! configuration. Everything is compiled once when the engine starts: one Aho-Corasick automaton of all
//! literal phrases per target and one `RegexSet` of all patterns per target, so a message costs one pass per
//! target whatever the number of rules. Phrases match case-insensitively on word boundaries.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder};

use super::Ctx;
use crate::config::{RuleConfig, RuleTarget};
use crate::symbols::{Group, Hits, Registry, SymbolDef, SymbolId, SymbolSpec};

/// The built-in rule set, in the configuration's own format.
const DEFAULT_RULES: &str = include_str!("default_rules.toml");

const REMEDY: &str = "A content rule fired on wording typical of spam. If the sender is legitimate, allow the sender \
or lower this rule's weight in [weights].";

#[derive(serde::Deserialize)]
struct DefaultRules {
    rules: Vec<RuleConfig>,
}

fn builtin() -> Vec<RuleConfig> {
    let parsed: DefaultRules = toml::from_str(DEFAULT_RULES).expect("default_rules.toml is valid (tested)");
    parsed.rules
}

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![SPAM_PHRASES_MANY, SPAM_PHRASES_LOTS,];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(
        sym::SPAM_PHRASES_MANY,
        Group::Content,
        1.5,
        "Four to seven different stock spam phrases appear.",
        "Each phrase is weak alone; many together are typical of spam. If the sender is legitimate, allow the sender.",
    ),
    SymbolSpec::of(
        sym::SPAM_PHRASES_LOTS,
        Group::Content,
        2.8,
        "Eight or more different stock spam phrases appear.",
        "Each phrase is weak alone; many together are typical of spam. If the sender is legitimate, allow the sender.",
    ),
];

/// Registers the built-in rule symbols (their remedy is shared).
pub fn builtin_symbols(registry: &mut Registry) -> Result<(), String> {
    for r in builtin() {
        registry.add(SymbolDef {
            default_weight: r.score,
            weight: r.score,
            name: r.name,
            group: Group::Content,
            description: r.description.unwrap_or_default(),
            remedy: REMEDY.to_string(),
            asf: None,
        })?;
    }
    Ok(())
}

/// The texts rules look at. A rule's target covers one or more views (`text` = subject and body), and each
/// view gets one automaton and one regex set holding every rule that covers it, so the body is scanned once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Subject,
    Body,
    Headers,
    Url,
    From,
}

fn views(target: RuleTarget) -> &'static [View] {
    match target {
        RuleTarget::Subject => &[View::Subject],
        RuleTarget::Body => &[View::Body],
        RuleTarget::Text => &[View::Subject, View::Body],
        RuleTarget::Headers => &[View::Headers],
        RuleTarget::Url => &[View::Url],
        RuleTarget::From => &[View::From],
    }
}

struct ViewRules {
    phrases: Option<AhoCorasick>,
    /// For each automaton pattern: the index of its item (phrase) in the rule set.
    phrase_item: Vec<usize>,
    regexes: Option<RegexSet>,
    regex_item: Vec<usize>,
    /// Kept to report what matched (only run for rules the set says matched).
    regex_list: Vec<Regex>,
}

struct Item {
    symbol: SymbolId,
    /// One of the built-in stock phrases (counted for SPAM_PHRASES_*).
    stock_phrase: bool,
}

/// One phrase or pattern before compiling: (target, symbol, phrase, regex, built-in).
type RuleItem = (RuleTarget, SymbolId, Option<String>, Option<String>, bool);

/// All rules, compiled once.
pub struct RuleSet {
    items: Vec<Item>,
    views: Vec<(View, ViewRules)>,
    many: SymbolId,
    lots: SymbolId,
    /// The rules that need more than one different phrase or pattern to fire (`min_matches`).
    minimums: Vec<(SymbolId, usize)>,
    /// The rules that stay silent when the message links into its From: domain (`unless_links_to_sender`).
    unless_sender: Vec<SymbolId>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl RuleSet {
    /// Compiles the built-in rules and the configured ones; configured rules become symbols in the registry.
    pub fn compile(configured: &[RuleConfig], registry: &mut Registry) -> Result<RuleSet, RuleError> {
        // (target, symbol, phrase, regex, built-in)
        let mut items: Vec<RuleItem> = Vec::new();
        let mut minimums = Vec::new();
        let mut unless_sender = Vec::new();
        for r in builtin() {
            let id = registry.id(&r.name).expect("builtin rule registered");
            if r.unless_links_to_sender {
                unless_sender.push(id);
            }
            if let Some(n) = minimum(&r).map_err(|reason| RuleError::Invalid { name: r.name.clone(), reason })? {
                minimums.push((id, n));
            }
            items.extend(r.all_phrases().map(|p| (r.target, id, Some(p.to_string()), None, true)));
            items.extend(r.all_regexes().map(|x| (r.target, id, None, Some(x.to_string()), true)));
        }
        for r in configured {
            let invalid = |reason: &str| RuleError::Invalid { name: r.name.clone(), reason: reason.to_string() };
            if r.name.is_empty() || !r.name.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_') {
                return Err(invalid("the name must be UPPER_SNAKE_CASE"));
            }
            if r.all_phrases().count() + r.all_regexes().count() == 0 {
                return Err(invalid("give a `phrase`, `phrases`, `regex` or `regexes`"));
            }
            for x in r.all_regexes() {
                Regex::new(x).map_err(|e| invalid(&format!("bad regex {x:?}: {e}")))?;
            }
            if r.all_phrases().any(|p| p.trim().is_empty()) {
                return Err(invalid("a phrase is empty"));
            }
            if !r.score.is_finite() {
                return Err(invalid("the score must be a number"));
            }
            let min = minimum(r).map_err(|reason| invalid(&reason))?;
            let id = match registry.id(&r.name) {
                Some(id) if registry.get(id).group == Group::Policy => id,
                Some(_) => return Err(invalid("the name is already a built-in symbol")),
                None => registry
                    .add(SymbolDef {
                        name: r.name.clone(),
                        group: Group::Policy,
                        weight: r.score,
                        default_weight: r.score,
                        description: r.description.clone().unwrap_or_else(|| format!("Configured rule {}.", r.name)),
                        remedy: format!(
                            "This is your own rule {} in the configuration: change its score or remove it.",
                            r.name
                        ),
                        asf: None,
                    })
                    .map_err(|e| invalid(&e))?,
            };
            items.extend(r.all_phrases().map(|p| (r.target, id, Some(p.to_string()), None, false)));
            items.extend(r.all_regexes().map(|x| (r.target, id, None, Some(x.to_string()), false)));
            if let Some(n) = min {
                // Two configured rules of one name are one symbol: the later minimum counts.
                minimums.retain(|(s, _)| *s != id);
                minimums.push((id, n));
            }
            if r.unless_links_to_sender {
                unless_sender.push(id);
            }
        }
        let mut compiled = Vec::new();
        for view in [View::Subject, View::Body, View::Headers, View::Url, View::From] {
            let (mut pats, mut phrase_item, mut rx, mut regex_item) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (n, (target, _, p, x, is_builtin)) in items.iter().enumerate() {
                if !views(*target).contains(&view) {
                    continue;
                }
                if let Some(p) = p {
                    pats.push(p.to_ascii_lowercase());
                    phrase_item.push(n);
                }
                if let Some(x) = x {
                    // Built-in patterns use ASCII word boundaries: Unicode ones force the slow NFA engine on
                    // non-ASCII text, and the built-in patterns are English.
                    rx.push(if *is_builtin { x.replace(r"\b", r"(?-u:\b)") } else { x.clone() });
                    regex_item.push(n);
                }
            }
            if pats.is_empty() && rx.is_empty() {
                continue;
            }
            let err = |e: String| RuleError::Invalid { name: format!("{view:?} rules"), reason: e };
            let phrases = if pats.is_empty() {
                None
            } else {
                Some(
                    AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::Standard)
                        .kind(Some(AhoCorasickKind::DFA))
                        .build(&pats)
                        .map_err(|e| err(e.to_string()))?,
                )
            };
            let regexes = if rx.is_empty() {
                None
            } else {
                Some(RegexSetBuilder::new(&rx).size_limit(64 << 20).build().map_err(|e| err(e.to_string()))?)
            };
            let regex_list =
                rx.iter().map(|x| Regex::new(x).map_err(|e| err(e.to_string()))).collect::<Result<_, _>>()?;
            compiled.push((view, ViewRules { phrases, phrase_item, regexes, regex_item, regex_list }));
        }
        let many = registry.id("SPAM_PHRASES_MANY").expect("registered");
        let lots = registry.id("SPAM_PHRASES_LOTS").expect("registered");
        let items =
            items.into_iter().map(|(_, symbol, p, _, b)| Item { symbol, stock_phrase: b && p.is_some() }).collect();
        Ok(RuleSet { items, views: compiled, many, lots, minimums, unless_sender })
    }

    pub fn check(&self, ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
        let m = ctx.message;
        // The rules that are silent for this message: it links into its own From: domain.
        let silent: &[SymbolId] =
            if !self.unless_sender.is_empty() && links_to_sender(m) { &self.unless_sender } else { &[] };
        // Items already reported: one hit per phrase or pattern, and the distinct stock phrases counted.
        let mut seen: Vec<usize> = Vec::new();
        let mut stock = 0usize;
        // Matches of rules with a minimum wait here until the count is known (few: only those rules').
        let mut pending: Vec<(SymbolId, String)> = Vec::new();
        let mut hit = |hits: &mut Hits<'_>, symbol: SymbolId, detail: String| {
            if self.minimums.iter().any(|(s, _)| *s == symbol) {
                pending.push((symbol, detail));
            } else {
                hits.hit_id(symbol, detail);
            }
        };
        for (view, rules) in &self.views {
            let owned;
            let text: &str = match view {
                View::Subject => m.subject_str(),
                View::Body => &m.body_text,
                View::Headers => {
                    let mut s = String::new();
                    for h in &m.headers {
                        s.push_str(&h.name);
                        s.push_str(": ");
                        s.push_str(&h.value);
                        s.push('\n');
                    }
                    owned = s;
                    &owned
                }
                View::Url => {
                    owned = m.urls.iter().map(|u| u.raw.as_str()).collect::<Vec<_>>().join("\n");
                    &owned
                }
                View::From => m.header("From").unwrap_or(""),
            };
            if text.is_empty() {
                continue;
            }
            if let Some(ac) = &rules.phrases {
                for mat in ac.find_overlapping_iter(text) {
                    let item = rules.phrase_item[mat.pattern().as_usize()];
                    if seen.contains(&item)
                        || silent.contains(&self.items[item].symbol)
                        || !on_word_boundary(text, mat.start(), mat.end())
                    {
                        continue;
                    }
                    seen.push(item);
                    let it = &self.items[item];
                    hit(hits, it.symbol, text[mat.start()..mat.end()].to_lowercase());
                    stock += it.stock_phrase as usize;
                }
            }
            if let Some(set) = &rules.regexes {
                for i in set.matches(text).iter() {
                    let item = rules.regex_item[i];
                    if seen.contains(&item) || silent.contains(&self.items[item].symbol) {
                        continue;
                    }
                    seen.push(item);
                    let detail = rules.regex_list[i]
                        .find(text)
                        .map(|m| m.as_str().chars().take(40).collect())
                        .unwrap_or_default();
                    hit(hits, self.items[item].symbol, detail);
                }
            }
        }
        // Each item is seen once, so the pending matches of a symbol are its different phrases and patterns.
        for &(symbol, min) in &self.minimums {
            if pending.iter().filter(|(s, _)| *s == symbol).count() >= min {
                for (_, detail) in pending.iter().filter(|(s, _)| *s == symbol) {
                    hits.hit_id(symbol, detail.clone());
                }
            }
        }
        match stock {
            0..=3 => {}
            4..=7 => hits.hit_id(self.many, format!("{stock} phrases")),
            n => hits.hit_id(self.lots, format!("{n} phrases")),
        }
    }
}

/// Whether one of the message's links (an address the reader is sent to, not an image) goes into the
/// registrable domain of its From: address.
fn links_to_sender(m: &crate::message::Message<'_>) -> bool {
    let Some(from) = m.from.as_ref().filter(|f| !f.domain.is_empty()) else {
        return false;
    };
    let own = crate::message::urls::registrable_domain(&from.domain);
    m.urls.iter().any(|u| u.source != crate::message::urls::UrlSource::Image && u.ip.is_none() && u.domain == own)
}

/// A rule's `min_matches` when it asks for more than one, checked: at least 1, and no more than the rule's
/// phrases and patterns (or it could never fire).
fn minimum(r: &RuleConfig) -> Result<Option<usize>, String> {
    let patterns = r.all_phrases().count() + r.all_regexes().count();
    match r.min_matches.map(|n| n as usize) {
        Some(0) => Err("min_matches must be at least 1".into()),
        Some(n) if n > patterns => Err(format!(
            "min_matches = {n}, but the rule has only {patterns} phrases and patterns: it could never fire"
        )),
        Some(n) if n > 1 => Ok(Some(n)),
        _ => Ok(None),
    }
}

fn on_word_boundary(text: &str, start: usize, end: usize) -> bool {
    let first = text[start..].chars().next();
    let last = text[..end].chars().next_back();
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    // Only demand a boundary where the phrase itself begins or ends with a word character.
    let before_ok = !first.is_some_and(word_char) || !text[..start].chars().next_back().is_some_and(word_char);
    let after_ok = !last.is_some_and(word_char) || !text[end..].chars().next().is_some_and(word_char);
    before_ok && after_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert!(on_word_boundary("please click here now", 7, 17));
        assert!(!on_word_boundary("freedom", 0, 4));
        assert!(on_word_boundary("earn $500", 0, 6));
    }

    #[test]
    fn builtin_rules_parse_and_compile() {
        assert!(builtin().len() >= 20);
        let mut reg = Registry::default();
        reg.add_specs(SYMBOLS).unwrap();
        builtin_symbols(&mut reg).unwrap();
        RuleSet::compile(&[], &mut reg).unwrap();
    }
}
