//! Whole-message content facts: the GTUBE test string, empty messages, and the shape of the body.
//!
//! GTUBE (the Generic Test for Unsolicited Bulk Email) forces a spam verdict in every major filter, so an
//! administrator can test the whole pipeline with a harmless message; it is matched in every decoded part,
//! attachments included. The rest are weak shape signals that only add to other evidence.

use std::sync::OnceLock;

use regex::Regex;

use super::Ctx;
use crate::symbols::{Group::Content, Hits, SymbolSpec};

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::new(
        "GTUBE",
        Content,
        1000.0,
        "The message contains the GTUBE anti-spam test string.",
        "GTUBE is a test: the verdict is spam on purpose. Remove the string to send a real message.",
    ),
    SymbolSpec::new(
        "EMPTY_BODY",
        Content,
        1.1,
        "The message has no text and no attachment.",
        "Empty messages are often address probes; if legitimate (a monitoring ping), allow the sender.",
    ),
    SymbolSpec::new(
        "MIME_HTML_ONLY",
        Content,
        1.0,
        "The message has HTML but no plain-text alternative.",
        "Harmless alone; good mailers send a text part too.",
    ),
    SymbolSpec::new(
        "BODY_SHOUTING",
        Content,
        0.9,
        "Much of the body is written in capital letters.",
        "Ask the sender to write normally, or allow the sender.",
    ),
    SymbolSpec::new(
        "BITCOIN_ADDRESS",
        Content,
        2.1,
        "The body asks for payment to a Bitcoin address.",
        "Extortion and scam mail asks for Bitcoin; legitimate invoices rarely do. Allow the sender if expected.",
    ),
    SymbolSpec::new(
        "MESSAGE_TRUNCATED_FOR_SCAN",
        Content,
        0.0,
        "The message is larger than the scan limit; only its first part was examined.",
        "Raise scan.max_scan_bytes if large messages must be examined whole.",
    ),
];

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let m = ctx.message;
    if m.has_gtube {
        hits.hit("GTUBE", "");
    }
    if m.problems.truncated_for_scan {
        hits.hit("MESSAGE_TRUNCATED_FOR_SCAN", format!("{} bytes", m.raw.len()));
    }
    if m.body_text.trim().is_empty() && m.attachments.is_empty() && m.html.iter().all(|h| h.images.is_empty()) {
        hits.hit("EMPTY_BODY", "");
    }
    if !m.html.is_empty() && !m.text_parts.iter().any(|p| !p.is_html) {
        hits.hit("MIME_HTML_ONLY", "");
    }
    if let Some(addr) = bitcoin_address(&m.body_text) {
        hits.hit("BITCOIN_ADDRESS", addr);
    }
    let (mut upper, mut lower) = (0usize, 0usize);
    for c in m.body_text.chars().take(20_000) {
        if c.is_uppercase() {
            upper += 1;
        } else if c.is_lowercase() {
            lower += 1;
        }
    }
    if upper + lower >= 200 && upper * 100 / (upper + lower) >= 50 {
        hits.hit("BODY_SHOUTING", format!("{}% capitals", upper * 100 / (upper + lower)));
    }
}

/// A Bitcoin address in a text that talks about Bitcoin; the address shape alone matches too many random
/// tokens (tracking ids, hashes) to count by itself.
fn bitcoin_address(text: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"\b(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[02-9ac-hj-np-z]{11,71})\b").expect("bitcoin regex")
    });
    let lower_mentions = text.len() < 200_000 && {
        let l = text.to_ascii_lowercase();
        l.contains("bitcoin") || l.contains("btc")
    };
    if !lower_mentions {
        return None;
    }
    re.find(text).map(|m| m.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitcoin_needs_context() {
        assert!(bitcoin_address("pay 0.5 BTC to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT now").is_some());
        assert!(bitcoin_address("tracking id 3aouzKr6RGL1qjtct6wKrYAq6gViidRR").is_none());
    }
}
