//! What a Received line says about the client it received from: the name its server verified, or that it
//! verified none. Read by the trust boundary (trusted relays' names), the connection checks (reverse DNS of
//! stored mail) and the envelope of stored mail (the organisation's own relays).

use std::net::IpAddr;

/// What a Received line records about its client's reverse DNS in its `from` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordedName {
    /// `(name [ip])`: the name the receiving server verified (Postfix, Sendmail and most MTAs write the
    /// forward-confirmed reverse DNS name there).
    Name(String),
    /// `(unknown [ip])`: Postfix's (and Sendmail's) word for a client whose reverse DNS did not verify.
    Unknown,
    /// Sendmail's "may be forged": a PTR name (kept when the line gives one) that does not resolve back.
    Forged(Option<String>),
}

/// The client name a Received line records in its `from` clause, when it writes one in the `(name [ip])`
/// form; None when the line has no such clause (Exchange's `(ip)`, Exim's `([ip] helo=...)`, qmail's forms:
/// no statement about reverse DNS).
///
/// Sendmail's `from HELO ([ip])`, the address without a name, is not read as "unknown" either. It should
/// mean no PTR name, and at TREC 2007's university server it marked 332 of a 2,500-spam sample and no ham of
/// 11,012; but the SpamAssassin corpus's Sendmail wrote it for most of its lists and correspondents (239 of
/// the 1,016 TEST ham against 133 of the 480 spam): a Sendmail that did not look up, or could not, writes
/// the same line. What it says depends on the receiving server's configuration, which the line does not show.
pub(crate) fn recorded_client(raw: &str) -> Option<RecordedName> {
    // Only the `from` clause: the text up to " by ", bounded so a huge line costs little.
    let head = &raw[..raw.floor_char_boundary(1024)];
    let lower = head.to_ascii_lowercase();
    let from = lower.find("from ")?;
    let end = lower[from..].find(" by ").map(|e| from + e).unwrap_or(lower.len());
    let clause = &lower[from..end];
    let open = clause.find('(')?;
    let close = clause[open..].find(')').map(|c| open + c)?;
    let comment = &clause[open + 1..close];
    // The address must be in the same parentheses: `(name [ip])`, or Sendmail's
    // `(name [ip] (may be forged))`, where the first closing parenthesis ends the comment early.
    let Some((name, _)) = comment.split_once('[').filter(|(_, rest)| rest.contains(']')) else {
        return comment.contains("forged").then_some(RecordedName::Forged(None));
    };
    let name = name.trim().trim_end_matches('.');
    if comment.contains("forged") {
        return Some(RecordedName::Forged(is_host_name(name).then(|| name.to_string())));
    }
    if name == "unknown" {
        return Some(RecordedName::Unknown);
    }
    is_host_name(name).then(|| RecordedName::Name(name.to_string()))
}

/// A dotted host name (not an address literal), as reverse DNS gives.
pub(crate) fn is_host_name(n: &str) -> bool {
    n.contains('.')
        && n.len() <= 253
        && n.parse::<IpAddr>().is_err()
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}
