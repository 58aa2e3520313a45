//! Addresses and domains, parsed once: one meaning of "the domain of an address" for every crate.
//!
//! (Placeholder of the lead: helper T replaces this with the `Address`/`Domain` types; `domain_of` stays
//! as the convenience every caller can use meanwhile.)

/// The domain of an address, as every part of mailsift compares it: surrounding whitespace and angle brackets
/// removed, the text after the last `@`, without a trailing dot, lower-cased. Empty when there is no `@`
/// (the null sender, a bare local part).
pub fn domain_of(address: &str) -> String {
    let a = address.trim().trim_matches(['<', '>']).trim();
    match a.rsplit_once('@') {
        Some((_, d)) => d.trim().trim_end_matches('.').to_ascii_lowercase(),
        None => String::new(),
    }
}
