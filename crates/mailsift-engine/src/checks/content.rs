//! Whole-message content facts: the GTUBE test string, empty messages, and the shape of the body.
//!
//! GTUBE (the Generic Test for Unsolicited Bulk Email) forces a spam verdict in every major filter, so an
//! administrator can test the whole pipeline with a harmless message; it is matched in every decoded part,
//! attachments included. The rest are weak shape signals that only add to other evidence.

use std::sync::OnceLock;

use regex::Regex;

use super::Ctx;
use crate::symbols::{Group::Content, Hits, SymbolSpec};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        GTUBE,
        EMPTY_BODY,
        MIME_HTML_ONLY,
        BODY_SHOUTING,
        BITCOIN_ADDRESS,
        MESSAGE_TRUNCATED_FOR_SCAN,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(
        sym::GTUBE,
        crate::symbols::Group::Test,
        1000.0,
        "The message contains the GTUBE anti-spam test string.",
        "GTUBE is a test: the verdict is spam on purpose. Remove the string to send a real message.",
    ),
    SymbolSpec::of(
        sym::EMPTY_BODY,
        Content,
        1.1,
        "The message has no text and no attachment.",
        "Empty messages are often address probes; if legitimate (a monitoring ping), allow the sender.",
    ),
    // 0.2, not 1.0: HTML-only separates the corpus's plain-text ham from its HTML spam (3% of TRAIN's ham, 44%
    // of its spam), which is the era, not intent; among mail that has HTML at all it is 59% of ham and 78% of
    // spam (a likelihood ratio of 1.3, about 0.2 points on the classifiers' scale). See checks/html.rs.
    SymbolSpec::of(
        sym::MIME_HTML_ONLY,
        Content,
        0.2,
        "The message has HTML but no plain-text alternative.",
        "Harmless alone; good mailers send a text part too.",
    ),
    SymbolSpec::of(
        sym::BODY_SHOUTING,
        Content,
        0.5,
        "Much of the body is written in capital letters.",
        "Ask the sender to write normally, or allow the sender.",
    ),
    SymbolSpec::of(
        sym::BITCOIN_ADDRESS,
        Content,
        2.1,
        "The body asks for payment to a Bitcoin address.",
        "Extortion and scam mail asks for Bitcoin; legitimate invoices rarely do. Allow the sender if expected.",
    ),
    SymbolSpec::of(
        sym::MESSAGE_TRUNCATED_FOR_SCAN,
        Content,
        0.0,
        "The message is larger than the scan limit; only its first part was examined.",
        "Raise scan.max_scan_bytes if large messages must be examined whole.",
    ),
];

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let m = ctx.message;
    if m.has_gtube {
        hits.hit(sym::GTUBE, "");
    }
    if m.problems.truncated_for_scan {
        hits.hit(sym::MESSAGE_TRUNCATED_FOR_SCAN, format!("{} bytes", m.raw.len()));
    }
    if m.body_text.trim().is_empty() && m.attachments.is_empty() && m.html.iter().all(|h| h.images.is_empty()) {
        hits.hit(sym::EMPTY_BODY, "");
    }
    if !m.html.is_empty() && !m.text_parts.iter().any(|p| !p.is_html) {
        hits.hit(sym::MIME_HTML_ONLY, "");
    }
    if let Some(addr) = bitcoin_address(&m.body_text) {
        hits.hit(sym::BITCOIN_ADDRESS, addr);
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
        hits.hit(sym::BODY_SHOUTING, format!("{}% capitals", upper * 100 / (upper + lower)));
    }
}

/// A Bitcoin address whose checksum is valid: Base58Check for legacy addresses, Bech32 for `bc1` ones. The
/// shape alone matches too many random tokens (tracking ids, hashes); the checksum does not.
fn bitcoin_address(text: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"\b(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[02-9ac-hj-np-z]{11,71})\b").expect("bitcoin regex")
    });
    re.find_iter(text)
        .take(20)
        .map(|m| m.as_str())
        .find(|a| if a.starts_with("bc1") { bech32_valid(a) } else { base58check_valid(a) })
        .map(str::to_string)
}

fn base58check_valid(addr: &str) -> bool {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    // Decode into a 25-byte big-endian number.
    let mut bytes = [0u8; 25];
    for c in addr.bytes() {
        let Some(mut carry) = ALPHABET.iter().position(|&a| a == c).map(|v| v as u32) else { return false };
        for b in bytes.iter_mut().rev() {
            carry += 58 * (*b as u32);
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        if carry != 0 {
            return false;
        }
    }
    let check = Sha256::digest(Sha256::digest(&bytes[..21]));
    check[..4] == bytes[21..]
}

fn bech32_valid(addr: &str) -> bool {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let Some((hrp, data)) = addr.rsplit_once('1') else { return false };
    let mut values: Vec<u32> = hrp.bytes().map(|b| (b >> 5) as u32).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|b| (b & 31) as u32));
    for c in data.bytes() {
        match CHARSET.iter().position(|&x| x == c) {
            Some(v) => values.push(v as u32),
            None => return false,
        }
    }
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ff_ffff) << 5) ^ v;
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    // Bech32 (segwit v0) or Bech32m (v1+).
    chk == 1 || chk == 0x2bc8_30a3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitcoin_addresses_need_a_valid_checksum() {
        assert!(bitcoin_address("pay 0.5 BTC to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT now").is_some());
        assert!(bitcoin_address("segwit bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq").is_some());
        assert!(bitcoin_address("one typo 1BoatSLRHtKNngkdXEeobR76b53LETtpyU").is_none());
        assert!(bitcoin_address("tracking id 3aouzKr6RGL1qjtct6wKrYAq6gViidRR").is_none());
    }
}
