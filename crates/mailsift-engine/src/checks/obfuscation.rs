//! Obfuscation: text written to be read by people but not matched by filters.
//!
//! Detects words mixing scripts ("pаypal" with a Cyrillic а), look-alikes of brand names after folding
//! confusable characters, zero-width and bidirectional control characters, l33t spellings of spam words
//! ("v1agr@"), letters spaced or punctuated apart ("F R E E", "v.i.a.g.r.a"), and plain text sent in base64
//! for no reason. The confusable table is a small hand-picked subset of Unicode's (UTS #39) covering the
//! Cyrillic and Greek letters spammers actually use; it is not a full skeleton algorithm. Deliberately not
//! here: hidden HTML text (`html.rs`).

use std::sync::OnceLock;

use regex::Regex;
use rustc_hash::FxHashSet;

use super::Ctx;
use crate::symbols::{Group::Obfuscation, Hits, SymbolSpec};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        OBFUSCATION_MIXED_SCRIPT,
        OBFUSCATION_HOMOGLYPH_BRAND,
        OBFUSCATION_ZERO_WIDTH,
        OBFUSCATION_BIDI,
        OBFUSCATION_LEET,
        OBFUSCATION_SPACED_LETTERS,
        OBFUSCATION_BASE64_TEXT,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(
        sym::OBFUSCATION_MIXED_SCRIPT,
        Obfuscation,
        3.1,
        "A word mixes Latin letters with Cyrillic or Greek look-alikes (\"pаypal\").",
        "Never done by accident in Latin-script text; if the sender writes Cyrillic or Greek, allow the sender.",
    ),
    SymbolSpec::of(
        sym::OBFUSCATION_HOMOGLYPH_BRAND,
        Obfuscation,
        4.0,
        "A brand name is spelled with look-alike characters to impersonate it.",
        "Impersonation; no legitimate sender does this.",
    ),
    SymbolSpec::of(
        sym::OBFUSCATION_ZERO_WIDTH,
        Obfuscation,
        2.0,
        "Invisible zero-width characters are placed inside words.",
        "Used to break words for filters; if the sender's tool inserts them, ask them to fix it.",
    ),
    SymbolSpec::of(
        sym::OBFUSCATION_BIDI,
        Obfuscation,
        2.5,
        "Bidirectional control characters reorder the text the reader sees.",
        "Used to disguise names and links; legitimate only in right-to-left languages.",
    ),
    SymbolSpec::of(
        sym::OBFUSCATION_LEET,
        Obfuscation,
        2.5,
        "A spam word is written with digits or symbols for letters (\"v1agr@\").",
        "Only used to evade filters.",
    ),
    SymbolSpec::of(
        sym::OBFUSCATION_SPACED_LETTERS,
        Obfuscation,
        2.0,
        "A spam word is written with its letters spaced or punctuated apart (\"F R E E\").",
        "Only used to evade filters.",
    ),
    SymbolSpec::of(
        sym::OBFUSCATION_BASE64_TEXT,
        Obfuscation,
        0.6,
        "Plain ASCII text was sent base64-encoded, which hides it from simple filters.",
        "Some mail programs do this; allow the sender if legitimate.",
    ),
];

/// Words spammers disguise. Kept short: each one is checked after l33t folding and letter joining.
const SPAM_WORDS: &[&str] = &[
    "viagra",
    "cialis",
    "levitra",
    "xanax",
    "valium",
    "vicodin",
    "phentermine",
    "pharmacy",
    "casino",
    "porn",
    "sex",
    "free",
    "money",
    "cash",
    "credit",
    "loan",
    "mortgage",
    "penis",
    "enlarge",
    "rolex",
    "replica",
    "bitcoin",
    "lottery",
    "winner",
    "prize",
    "viagara",
    "diet",
    "weight",
    "refinance",
    "investment",
    "password",
    "account",
    "verify",
    "paypal",
    "bank",
    "urgent",
    "click",
    "offer",
    "cheap",
    "discount",
    "sale",
];
/// Brands most impersonated in phishing.
const BRANDS: &[&str] = &[
    "paypal",
    "apple",
    "microsoft",
    "amazon",
    "netflix",
    "google",
    "facebook",
    "instagram",
    "linkedin",
    "dropbox",
    "docusign",
    "office365",
    "outlook",
    "wellsfargo",
    "chase",
    "citibank",
    "hsbc",
    "barclays",
    "santander",
    "dhl",
    "fedex",
    "ups",
    "usps",
    "ebay",
    "adobe",
    "coinbase",
    "binance",
    "whatsapp",
    "icloud",
    "visa",
    "mastercard",
];

fn spaced_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // Single letters separated by one repeated separator: "F R E E", "f.r.e.e", "V-I-A-G-R-A".
    RE.get_or_init(|| {
        Regex::new(r"(?:^|[^\p{L}\p{N}])((?:\p{L}[ .\-_*]{1,2}){3,}\p{L})(?:$|[^\p{L}\p{N}])").expect("spaced regex")
    })
}

fn spam_words() -> &'static FxHashSet<&'static str> {
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| SPAM_WORDS.iter().copied().collect())
}

/// Folds the Cyrillic and Greek letters that look like Latin ones; None when `c` has no Latin look-alike.
pub(super) fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ι' | 'ї' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'п' | 'η' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ս' => 'u',
        'ν' => 'v',
        'ԝ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'А' | 'Α' => 'a',
        'В' | 'Β' => 'b',
        'С' => 'c',
        'Е' | 'Ε' => 'e',
        'Н' | 'Η' => 'h',
        'І' | 'Ι' => 'i',
        'Ј' => 'j',
        'К' | 'Κ' => 'k',
        'М' | 'Μ' => 'm',
        'О' | 'Ο' => 'o',
        'Р' | 'Ρ' => 'p',
        'Ѕ' => 's',
        'Т' | 'Τ' => 't',
        'Х' | 'Χ' => 'x',
        'У' | 'Υ' => 'y',
        'Ζ' => 'z',
        _ => return None,
    })
}

/// The digit or sign a spammer writes for a letter (`v1agra`, `fr33`); None when `c` is not one.
pub(super) fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        _ => return None,
    })
}

fn is_cyrillic_or_greek(c: char) -> bool {
    matches!(c as u32, 0x0370..=0x052F)
}

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let m = ctx.message;
    let subject = m.subject_str();
    let mut texts: Vec<&str> = vec![subject, &m.body_text];
    for v in &m.html {
        for l in &v.links {
            texts.push(&l.text);
        }
    }
    if let Some(f) = &m.from {
        if let Some(n) = &f.name {
            texts.push(n);
        }
    }
    for text in &texts {
        scan_words(text, hits);
        scan_controls(text, hits);
    }
    for u in &m.urls {
        if !u.host.is_ascii() {
            scan_words(&u.host.replace('.', " "), hits);
        }
    }
    for text in [subject, m.body_text.as_str()] {
        for cap in spaced_regex().captures_iter(text).take(50) {
            let run = &cap[1];
            let joined: String = run.chars().filter(|c| c.is_alphabetic()).flat_map(char::to_lowercase).collect();
            if spam_words().contains(joined.as_str()) {
                hits.hit(sym::OBFUSCATION_SPACED_LETTERS, run.to_string());
            }
        }
    }
    for p in &m.text_parts {
        if p.base64 && !p.is_html && p.text.len() > 200 && p.text.is_ascii() {
            hits.hit(sym::OBFUSCATION_BASE64_TEXT, "");
        }
    }
}

fn scan_words(text: &str, hits: &mut Hits<'_>) {
    // Most text is plain ASCII letters: skip the per-word work unless the text has the raw material.
    let has_foreign = text.chars().any(is_cyrillic_or_greek);
    for word in
        text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '(' | ')' | '"' | '<' | '>' | '/'))
    {
        let word = word.trim_matches(|c: char| matches!(c, '.' | '?' | '\'' | '*' | '-'));
        if word.len() < 3 || word.len() > 40 {
            continue;
        }
        if has_foreign {
            let latin = word.chars().filter(|c| c.is_ascii_alphabetic()).count();
            let foreign = word.chars().filter(|&c| is_cyrillic_or_greek(c)).count();
            if latin > 0 && foreign > 0 {
                hits.hit(sym::OBFUSCATION_MIXED_SCRIPT, word.to_string());
            }
            if foreign > 0 {
                let folded: Option<String> = word
                    .chars()
                    .map(|c| if c.is_ascii() { Some(c.to_ascii_lowercase()) } else { confusable(c) })
                    .collect();
                if let Some(f) = folded {
                    let f = f.trim_end_matches(|c: char| !c.is_alphanumeric());
                    if BRANDS.iter().any(|b| f == *b || f.strip_suffix(".com") == Some(b)) {
                        hits.hit(sym::OBFUSCATION_HOMOGLYPH_BRAND, word.to_string());
                    }
                }
            }
        }
        let has_letter = word.bytes().any(|b| b.is_ascii_alphabetic());
        let has_sub = word.chars().any(|c| leet(c).is_some());
        if has_letter && has_sub && word.is_ascii() {
            let folded: String = word.chars().map(|c| leet(c).unwrap_or(c.to_ascii_lowercase())).collect();
            if spam_words().contains(folded.as_str()) && folded.len() >= 4 {
                hits.hit(sym::OBFUSCATION_LEET, word.to_string());
            }
        }
    }
}

fn scan_controls(text: &str, hits: &mut Hits<'_>) {
    let mut zw = 0;
    let mut prev_letter = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => {
                if prev_letter && chars.peek().is_some_and(|n| n.is_alphabetic()) {
                    zw += 1;
                }
            }
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
                hits.hit(sym::OBFUSCATION_BIDI, format!("U+{:04X}", c as u32))
            }
            _ => prev_letter = c.is_alphabetic(),
        }
    }
    if zw >= 2 {
        hits.hit(sym::OBFUSCATION_ZERO_WIDTH, format!("{zw} inside words"));
    }
}
