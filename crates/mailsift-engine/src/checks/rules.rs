//! Weighted phrase and pattern rules on the subject, body, headers and URLs.
//!
//! The built-in set below covers the stock phrases of unsolicited bulk mail (removal instructions, "risk
//! free", advance-fee fraud, pharmacy and mortgage offers); administrators add their own in the
//! configuration. Everything is compiled once when the engine starts: one Aho-Corasick automaton of all
//! literal phrases per target and one `RegexSet` of all patterns per target, so a message costs one pass per
//! target whatever the number of rules. Phrases match case-insensitively on word boundaries.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
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

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::new(
        "SPAM_PHRASES_MANY",
        Group::Content,
        1.5,
        "Four to seven different stock spam phrases appear.",
        "Each phrase is weak alone; many together are typical of spam. If the sender is legitimate, allow the sender.",
    ),
    SymbolSpec::new(
        "SPAM_PHRASES_LOTS",
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

struct TargetRules {
    phrases: Option<AhoCorasick>,
    phrase_rule: Vec<SymbolId>,
    /// Whether each phrase is one of the built-in stock phrases (counted for SPAM_PHRASES_*).
    phrase_builtin: Vec<bool>,
    regexes: Option<RegexSet>,
    regex_rule: Vec<SymbolId>,
    /// Kept to report what matched (only run for rules the set says matched).
    regex_list: Vec<Regex>,
}

/// All rules, compiled once.
pub struct RuleSet {
    targets: Vec<(RuleTarget, TargetRules)>,
    many: SymbolId,
    lots: SymbolId,
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
        let mut items: Vec<(RuleTarget, SymbolId, Option<String>, Option<String>, bool)> = Vec::new();
        for r in builtin() {
            let id = registry.id(&r.name).expect("builtin rule registered");
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
        }
        let mut targets = Vec::new();
        for target in [
            RuleTarget::Subject,
            RuleTarget::Body,
            RuleTarget::Headers,
            RuleTarget::Url,
            RuleTarget::Text,
            RuleTarget::From,
        ] {
            let mine: Vec<_> = items.iter().filter(|i| i.0 == target).collect();
            if mine.is_empty() {
                continue;
            }
            let (mut pats, mut phrase_rule, mut rx, mut regex_rule) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut phrase_builtin = Vec::new();
            for (_, id, p, x, is_builtin) in mine {
                if let Some(p) = p {
                    pats.push(p.to_ascii_lowercase());
                    phrase_rule.push(*id);
                    phrase_builtin.push(*is_builtin);
                }
                if let Some(x) = x {
                    rx.push(x.clone());
                    regex_rule.push(*id);
                }
            }
            let err = |e: String| RuleError::Invalid { name: format!("{target:?} rules"), reason: e };
            let phrases = if pats.is_empty() {
                None
            } else {
                Some(
                    AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::Standard)
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
            targets
                .push((target, TargetRules { phrases, phrase_rule, phrase_builtin, regexes, regex_rule, regex_list }));
        }
        let many = registry.id("SPAM_PHRASES_MANY").expect("registered");
        let lots = registry.id("SPAM_PHRASES_LOTS").expect("registered");
        Ok(RuleSet { targets, many, lots })
    }

    pub fn check(&self, ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
        let m = ctx.message;
        let mut headers_text = None;
        let mut url_text = None;
        let mut text_joined = None;
        // Distinct built-in phrases seen, as (target index, pattern index).
        let mut stock: Vec<(usize, usize)> = Vec::new();
        for (t_idx, (target, rules)) in self.targets.iter().enumerate() {
            let text: &str = match target {
                RuleTarget::Subject => m.subject_str(),
                RuleTarget::Body => &m.body_text,
                RuleTarget::Headers => headers_text.get_or_insert_with(|| {
                    let mut s = String::new();
                    for h in &m.headers {
                        s.push_str(&h.name);
                        s.push_str(": ");
                        s.push_str(&h.value);
                        s.push('\n');
                    }
                    s
                }),
                RuleTarget::Url => {
                    url_text.get_or_insert_with(|| m.urls.iter().map(|u| u.raw.as_str()).collect::<Vec<_>>().join("\n"))
                }
                RuleTarget::Text => text_joined.get_or_insert_with(|| format!("{}\n{}", m.subject_str(), m.body_text)),
                RuleTarget::From => m.header("From").unwrap_or(""),
            };
            if text.is_empty() {
                continue;
            }
            if let Some(ac) = &rules.phrases {
                for mat in ac.find_overlapping_iter(text) {
                    let p = mat.pattern().as_usize();
                    if on_word_boundary(text, mat.start(), mat.end()) {
                        hits.hit_id(rules.phrase_rule[p], text[mat.start()..mat.end()].to_lowercase());
                        if rules.phrase_builtin[p] && !stock.contains(&(t_idx, p)) {
                            stock.push((t_idx, p));
                        }
                    }
                }
            }
            if let Some(set) = &rules.regexes {
                for i in set.matches(text).iter() {
                    let detail = rules.regex_list[i]
                        .find(text)
                        .map(|m| m.as_str().chars().take(40).collect())
                        .unwrap_or_default();
                    hits.hit_id(rules.regex_rule[i], detail);
                }
            }
        }
        match stock.len() {
            0..=3 => {}
            4..=7 => hits.hit_id(self.many, format!("{} phrases", stock.len())),
            n => hits.hit_id(self.lots, format!("{n} phrases")),
        }
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
