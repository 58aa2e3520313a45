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

/// Built-in rules: (symbol, target, phrases, regexes, weight, description).
struct Builtin {
    name: &'static str,
    target: RuleTarget,
    phrases: &'static [&'static str],
    regexes: &'static [&'static str],
    weight: f64,
    description: &'static str,
}

const fn b(
    name: &'static str,
    target: RuleTarget,
    phrases: &'static [&'static str],
    regexes: &'static [&'static str],
    weight: f64,
    description: &'static str,
) -> Builtin {
    Builtin {
        name,
        target,
        phrases,
        regexes,
        weight,
        description,
    }
}

use RuleTarget::{Body, Headers as Hdr, Subject, Text};

const REMEDY: &str = "A content rule fired on wording typical of spam. If the sender is legitimate, allow the sender \
or lower this rule's weight in [weights].";

const BUILTIN: &[Builtin] = &[
    b(
        "PHRASE_REMOVE_INSTRUCTIONS",
        Body,
        &[
            "to be removed from our",
            "to be removed from this",
            "to be taken off",
            "to remove yourself",
            "remove me from",
            "with remove in the subject",
            "with \"remove\" in the subject",
            "removal instructions",
            "to unsubscribe from this list",
            "to be removed, click",
            "to be removed please",
            "wish to be removed",
            "want to be removed",
            "like to be removed",
            "to opt-out",
            "to opt out",
            "remove in the subject line",
            "click here to remove",
            "you may unsubscribe",
            "reply with remove",
            "send a blank email to",
        ],
        &[r"(?i)\bremove\b[^.\n]{0,40}\b(?:subject|mailing list|list)\b"],
        1.5,
        "Instructions for being removed from a list the reader never joined.",
    ),
    b(
        "PHRASE_COMPLIANCE_CLAIM",
        Body,
        &[
            "this message is sent in compliance",
            "in compliance with the new email bill",
            "section 301",
            "s.1618",
            "s. 1618",
            "bill 1618",
            "this is not spam",
            "this is not a spam",
            "this email is not spam",
            "not unsolicited",
            "you are receiving this email because",
            "you received this email because you",
            "you have received this because",
            "cannot be considered spam",
            "this message is being sent to you",
            "this email was sent to you because",
            "you are receiving this message because",
            "our records indicate you",
        ],
        &[],
        2.5,
        "Claims to be legal or not spam, which only spam does.",
    ),
    b(
        "PHRASE_CLICK_HERE",
        Body,
        &[
            "click here",
            "click below",
            "click on the link below",
            "click the link below",
            "click now",
        ],
        &[],
        0.8,
        "Asks the reader to click.",
    ),
    b(
        "PHRASE_ACT_NOW",
        Text,
        &[
            "act now",
            "order now",
            "call now",
            "apply now",
            "buy now",
            "limited time",
            "offer expires",
            "don't delay",
            "do not delay",
            "hurry",
            "while supplies last",
            "for a limited time only",
            "order today",
            "call toll free",
            "call today",
            "respond now",
            "urgent response",
            "once in a lifetime",
            "special promotion",
            "exclusive offer",
        ],
        &[],
        1.0,
        "Urgency wording typical of marketing spam.",
    ),
    b(
        "PHRASE_GUARANTEE",
        Text,
        &[
            "100% free",
            "100% guaranteed",
            "100% satisfied",
            "risk free",
            "risk-free",
            "no risk",
            "money back guarantee",
            "money-back guarantee",
            "satisfaction guaranteed",
            "no obligation",
            "no cost",
            "no fees",
            "no hidden",
            "absolutely free",
            "free trial",
            "free gift",
            "free consultation",
            "free quote",
            "free info",
            "free instant",
            "free access",
            "free membership",
            "at no cost",
            "no strings attached",
            "guaranteed results",
        ],
        &[],
        1.2,
        "Promises of free, guaranteed or risk-free offers.",
    ),
    b(
        "PHRASE_MONEY_MAKING",
        Text,
        &[
            "make money",
            "earn money",
            "extra income",
            "extra cash",
            "financial freedom",
            "work from home",
            "home based business",
            "home-based business",
            "be your own boss",
            "earn $",
            "earn up to",
            "income opportunity",
            "business opportunity",
            "multi-level marketing",
            "multi level marketing",
            "network marketing",
            "get paid",
            "cash bonus",
            "make $",
            "residual income",
            "double your",
            "million dollars",
            "millions of dollars",
            "get rich",
            "financially independent",
            "increase your income",
            "weekly income",
            "monthly income",
        ],
        &[],
        1.3,
        "Money-making offers.",
    ),
    b(
        "PHRASE_FINANCE_OFFER",
        Text,
        &[
            "mortgage rates",
            "lowest rates",
            "lower your mortgage",
            "refinance",
            "debt consolidation",
            "consolidate your debt",
            "credit card offers",
            "bad credit",
            "eliminate debt",
            "eliminate your debt",
            "pre-approved",
            "preapproved",
            "low interest",
            "approved for a",
            "cash advance",
            "loan approved",
            "your credit",
            "credit report",
            "interest rates are",
            "home loan",
            "free credit",
        ],
        &[],
        1.2,
        "Loan, mortgage and credit offers.",
    ),
    b(
        "PHRASE_PHARMACY",
        Text,
        &[
            "viagra",
            "cialis",
            "levitra",
            "xanax",
            "valium",
            "vicodin",
            "phentermine",
            "online pharmacy",
            "prescription drugs",
            "no prescription",
            "without prescription",
            "weight loss",
            "lose weight",
            "burn fat",
            "diet pill",
            "herbal",
            "human growth hormone",
            "hgh",
            "anti-aging",
            "penis",
            "enlargement",
            "erection",
            "sexual performance",
            "generic drugs",
            "pain relief",
        ],
        &[],
        1.5,
        "Pharmacy, diet and enhancement products.",
    ),
    b(
        "PHRASE_ADVANCE_FEE",
        Body,
        &[
            "next of kin",
            "beneficiary",
            "late husband",
            "barrister",
            "foreign partner",
            "transfer the sum",
            "transfer of the sum",
            "strictly confidential",
            "utmost confidentiality",
            "bank account details",
            "account details",
            "government official",
            "central bank",
            "security company",
            "diplomatic",
            "crude oil",
            "contract sum",
            "over-invoiced",
            "over invoiced",
            "deceased",
            "in the sum of",
            "percent of the total",
            "% of the total",
            "your assistance",
            "god bless",
            "my late father",
            "compensation",
        ],
        &[
            r"(?i)\bus\s?\$\s?\d+(?:[.,]\d+)*\s*(?:million|m\b)",
            r"(?i)\b\d+(?:[.,]\d+)?\s*million\s+(?:united states |us |u\.s\. )?dollars",
        ],
        1.0,
        "Advance-fee (\"419\") fraud wording.",
    ),
    b(
        "PHRASE_PRIZE",
        Text,
        &[
            "you have been selected",
            "you have won",
            "you've won",
            "you are a winner",
            "congratulations! you",
            "claim your prize",
            "claim your",
            "lottery",
            "sweepstakes",
            "winning number",
            "cash prize",
            "you were selected",
            "selected to receive",
            "dear winner",
        ],
        &[],
        1.5,
        "Prize and lottery wording.",
    ),
    b(
        "PHRASE_DEAR_FRIEND",
        Body,
        &[
            "dear friend",
            "dear sir/madam",
            "dear sir or madam",
            "dear valued customer",
            "dear valued member",
            "dear account holder",
            "dear customer",
            "dear user",
            "dear member",
            "dear beneficiary",
        ],
        &[],
        0.8,
        "An impersonal greeting typical of bulk mail.",
    ),
    b(
        "PHRASE_MARKETING_LIST",
        Body,
        &[
            "opt-in",
            "opt in list",
            "email marketing",
            "bulk email",
            "mass email",
            "email addresses",
            "million email",
            "targeted email",
            "direct email",
            "fresh email",
            "email list",
            "mailing list for",
            "advertise your",
            "marketing campaign",
        ],
        &[],
        0.8,
        "Wording of bulk-mail vendors and marketing lists.",
    ),
    b(
        "PHRASE_PHISHING",
        Text,
        &[
            "verify your account",
            "confirm your account",
            "update your account",
            "account has been suspended",
            "account will be suspended",
            "account will be closed",
            "unusual activity",
            "suspicious activity",
            "confirm your identity",
            "verify your identity",
            "login credentials",
            "reset your password immediately",
            "your mailbox is full",
            "mailbox quota",
        ],
        &[],
        2.0,
        "Account-verification wording of credential phishing.",
    ),
    b(
        "PHRASE_EXTORTION",
        Body,
        &[
            "bitcoin wallet",
            "btc wallet",
            "i recorded you",
            "your webcam",
            "adult website",
            "within 48 hours",
            "send bitcoin",
            "in bitcoin",
        ],
        &[r"\b[13][a-km-zA-HJ-NP-Z1-9]{25,34}\b"],
        2.0,
        "Sextortion and cryptocurrency extortion wording.",
    ),
    b(
        "PHRASE_ADULT",
        Text,
        &[
            "adult",
            "xxx",
            "hot girls",
            "singles",
            "sexy",
            "teens",
            "nude",
            "live cam",
            "dating",
        ],
        &[],
        0.7,
        "Adult and dating wording.",
    ),
    b(
        "BODY_DOLLAR_AMOUNTS",
        Body,
        &[],
        &[r"\$\s?\d{1,3}(?:,\d{3})+(?:\.\d\d)?"],
        0.5,
        "The body quotes large dollar amounts.",
    ),
    b(
        "BODY_TOLL_FREE",
        Body,
        &[],
        &[r"\b1?[-. (]*8(?:00|88|77|66)\)?[-. ]*\d{3}[-. ]*\d{4}\b"],
        0.6,
        "A toll-free telephone number.",
    ),
    b(
        "BODY_PERCENT_OFF",
        Text,
        &[],
        &[
            r"(?i)\b\d{2}\s?%\s*(?:off|discount|savings)\b",
            r"(?i)\bsave (?:up to )?\d{2}\s?%",
        ],
        0.6,
        "Discount percentages.",
    ),
    b(
        "SUBJ_FREE",
        Subject,
        &["free"],
        &[],
        0.8,
        "The subject offers something free.",
    ),
    b(
        "SUBJ_MONEY",
        Subject,
        &[],
        &[
            r"\$\d",
            r"(?i)\b(?:cash|money|income|dollars|debt|loan|mortgage|credit)\b",
        ],
        0.8,
        "The subject is about money.",
    ),
    b(
        "SUBJ_ADV",
        Subject,
        &["adv:", "adv :", "[adv]", "(adv)", "advertisement"],
        &[],
        2.0,
        "The subject is marked as an advertisement.",
    ),
    b(
        "SUBJ_YOUR",
        Subject,
        &[],
        &[r"(?i)^\s*(?:re:\s*)?(?:your|you|get|attn|attention)\b"],
        0.3,
        "The subject addresses the reader directly.",
    ),
    b(
        "HDR_RATWARE",
        Hdr,
        &[],
        &[
            r"(?im)^x-mailer:.*\b(?:group mail|advanced mass sender|mailking|bulk mailer|floodgate|emailer platinum|send-safe|stealth mailer|extractor|mass mailer|aureate|dm mailer|worldmerge)\b",
            r"(?im)^x-mailer:\s*[a-z]{10,}\s*$",
        ],
        3.0,
        "Sent by a known bulk-mailing program.",
    ),
];

pub const SYMBOLS: &[SymbolSpec] = &[];

/// Registers the built-in rule symbols (their remedy is shared).
pub fn builtin_symbols(registry: &mut Registry) -> Result<(), String> {
    for r in BUILTIN {
        registry.add(SymbolDef {
            name: r.name.to_string(),
            group: Group::Content,
            weight: r.weight,
            default_weight: r.weight,
            description: r.description.to_string(),
            remedy: REMEDY.to_string(),
            asf: None,
        })?;
    }
    Ok(())
}

struct TargetRules {
    phrases: Option<AhoCorasick>,
    phrase_rule: Vec<SymbolId>,
    regexes: Option<RegexSet>,
    regex_rule: Vec<SymbolId>,
    /// Kept to report what matched (only run for rules the set says matched).
    regex_list: Vec<Regex>,
}

/// All rules, compiled once.
pub struct RuleSet {
    targets: Vec<(RuleTarget, TargetRules)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl RuleSet {
    /// Compiles the built-in rules and the configured ones; configured rules become symbols in the registry.
    pub fn compile(
        configured: &[RuleConfig],
        registry: &mut Registry,
    ) -> Result<RuleSet, RuleError> {
        let mut items: Vec<(RuleTarget, SymbolId, Option<String>, Option<String>)> = Vec::new();
        for r in BUILTIN {
            let id = registry.id(r.name).expect("builtin rule registered");
            for p in r.phrases {
                items.push((r.target, id, Some(p.to_string()), None));
            }
            for x in r.regexes {
                items.push((r.target, id, None, Some(x.to_string())));
            }
        }
        for r in configured {
            let invalid = |reason: &str| RuleError::Invalid {
                name: r.name.clone(),
                reason: reason.to_string(),
            };
            if r.name.is_empty()
                || !r
                    .name
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
            {
                return Err(invalid("the name must be UPPER_SNAKE_CASE"));
            }
            if r.phrase.is_none() == r.regex.is_none() {
                return Err(invalid("give exactly one of `phrase` or `regex`"));
            }
            if let Some(x) = &r.regex {
                Regex::new(x).map_err(|e| invalid(&format!("bad regex: {e}")))?;
            }
            if r.phrase.as_deref().is_some_and(|p| p.trim().is_empty()) {
                return Err(invalid("the phrase is empty"));
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
                        remedy: format!("This is your own rule {} in the configuration: change its score or remove it.", r.name),
                        asf: None,
                    })
                    .map_err(|e| invalid(&e))?,
            };
            items.push((r.target, id, r.phrase.clone(), r.regex.clone()));
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
            let (mut pats, mut phrase_rule, mut rx, mut regex_rule) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (_, id, p, x) in mine {
                if let Some(p) = p {
                    pats.push(p.to_ascii_lowercase());
                    phrase_rule.push(*id);
                }
                if let Some(x) = x {
                    rx.push(x.clone());
                    regex_rule.push(*id);
                }
            }
            let err = |e: String| RuleError::Invalid {
                name: format!("{target:?} rules"),
                reason: e,
            };
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
                Some(
                    RegexSetBuilder::new(&rx)
                        .size_limit(64 << 20)
                        .build()
                        .map_err(|e| err(e.to_string()))?,
                )
            };
            let regex_list = rx
                .iter()
                .map(|x| Regex::new(x).map_err(|e| err(e.to_string())))
                .collect::<Result<_, _>>()?;
            targets.push((
                target,
                TargetRules {
                    phrases,
                    phrase_rule,
                    regexes,
                    regex_rule,
                    regex_list,
                },
            ));
        }
        Ok(RuleSet { targets })
    }

    pub fn check(&self, ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
        let m = ctx.message;
        let mut headers_text = None;
        let mut url_text = None;
        let mut text_joined = None;
        for (target, rules) in &self.targets {
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
                RuleTarget::Url => url_text.get_or_insert_with(|| {
                    m.urls
                        .iter()
                        .map(|u| u.raw.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                }),
                RuleTarget::Text => text_joined
                    .get_or_insert_with(|| format!("{}\n{}", m.subject_str(), m.body_text)),
                RuleTarget::From => m.header("From").unwrap_or(""),
            };
            if text.is_empty() {
                continue;
            }
            if let Some(ac) = &rules.phrases {
                for mat in ac.find_overlapping_iter(text) {
                    let id = rules.phrase_rule[mat.pattern().as_usize()];
                    if on_word_boundary(text, mat.start(), mat.end()) {
                        hits.hit_id(id, text[mat.start()..mat.end()].to_lowercase());
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
    }
}

fn on_word_boundary(text: &str, start: usize, end: usize) -> bool {
    let first = text[start..].chars().next();
    let last = text[..end].chars().next_back();
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    // Only demand a boundary where the phrase itself begins or ends with a word character.
    let before_ok =
        !first.is_some_and(word_char) || !text[..start].chars().next_back().is_some_and(word_char);
    let after_ok =
        !last.is_some_and(word_char) || !text[end..].chars().next().is_some_and(word_char);
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
    fn builtin_regexes_compile() {
        let mut reg = Registry::default();
        builtin_symbols(&mut reg).unwrap();
        RuleSet::compile(&[], &mut reg).unwrap();
    }
}
