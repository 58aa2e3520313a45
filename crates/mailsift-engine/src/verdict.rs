//! The verdict: score, SCL, action, the symbols that fired, and the headers that carry all of it.
//!
//! SCL (spam confidence level) maps the verdict onto Microsoft's scale so administrators and mail clients that
//! know it can use it:
//!
//! | SCL | meaning | mailsift |
//! |---|---|---|
//! | -1 | filtering skipped by policy | an allow rule or list entry decided |
//! | 0 | not spam | score below half the tag threshold |
//! | 1 | not spam | score below the tag threshold |
//! | 5 | spam | tag threshold reached, below the midpoint to quarantine |
//! | 6 | spam | up to the quarantine threshold |
//! | 7 | high-confidence spam | quarantine threshold reached |
//! | 8 | high-confidence spam | reject threshold reached |
//! | 9 | high-confidence spam | an ASF option that marks high-confidence spam is On, or the score is twice the reject threshold (GTUBE) |

use serde::Serialize;

use crate::config::policy::Level;
use crate::config::Thresholds;
use crate::symbols::{AsfEffect, Group};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deliver,
    Tag,
    Quarantine,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }

    /// Whether the message is judged spam (anything but plain delivery).
    pub fn is_spam(self) -> bool {
        self != Action::Deliver
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SymbolResult {
    pub name: String,
    pub group: Group,
    /// What the symbol added to the score (0 for an ASF option in test mode).
    pub score: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// For ASF symbols: "on" or "test".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asf_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asf_effect: Option<AsfEffect>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Reference id tying the verdict to the message log and the 550 text.
    pub id: String,
    pub score: f64,
    pub thresholds: Thresholds,
    pub scl: i8,
    pub action: Action,
    /// An ASF option that marks high-confidence spam fired in On mode.
    pub high_confidence: bool,
    /// Strongest first.
    pub symbols: Vec<SymbolResult>,
    /// The engines that ran, in order.
    pub engines: Vec<&'static str>,
    /// The rule or list entry that decided, when policy decided rather than the score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// RFC 8601 Authentication-Results value, when sender evidence was gathered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_results: Option<String>,
    /// Set when sender checks failed temporarily and `dns.defer_on_temperror` is on: the gateway answers 4xx
    /// so the sender retries, instead of acting on a half-checked message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defer: Option<String>,
    /// Groups whose total was capped (`group_caps` in the configuration).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<GroupCap>,
    /// What the filter rules ask the gateway to do besides the action: headers to add (written by
    /// [`Verdict::apply_headers`]), a redirect, copies, the reject text.
    #[serde(skip_serializing_if = "PolicyEffects::is_empty")]
    pub policy_effects: PolicyEffects,
    /// Each recipient's own outcome, filled only when the recipients' allowed/blocked senders lists make
    /// them differ. `action`, `scl` and `decided_by` are then the strictest recipient's, so a caller that
    /// cannot split the transaction loses no protection; one that can delivers, quarantines or refuses per
    /// recipient from this list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recipient_actions: Vec<RecipientAction>,
    /// Every filter rule and list entry that matched (including allow entries passed over), so the store
    /// can record when each last matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_matches: Vec<PolicyMatch>,
    /// What the virus scan said, when the gateway asked for one (the engine never fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virus: Option<VirusNote>,
}

/// The outcome of the gateway's virus scan as the verdict carries it: the `X-Mailsift-Virus` value, and what
/// the disposition needs (the signature of a virus found).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirusNote {
    /// The signature's name when a virus was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// Why the message could not be scanned (or the engine was out of date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// The `X-Mailsift-Virus` value: `clean | found NAME | failed REASON | not scanned`, then the engine.
    pub header: String,
}

/// One recipient's outcome when the recipients' outcomes differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipientAction {
    pub recipient: String,
    pub action: Action,
    pub scl: i8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// A group of evidence counted at its cap rather than its total.
#[derive(Debug, Clone, Serialize)]
pub struct GroupCap {
    pub group: String,
    pub total: f64,
    pub cap: f64,
}

pub const HEADER_PREFIX: &str = "X-Mailsift-";

impl Verdict {
    pub(crate) fn decide(thresholds: &Thresholds, score: f64, high_confidence: bool) -> (Action, i8) {
        let t = thresholds;
        let mut action = if score >= t.reject {
            Action::Reject
        } else if score >= t.quarantine {
            Action::Quarantine
        } else if score >= t.tag {
            Action::Tag
        } else {
            Action::Deliver
        };
        if high_confidence && action < Action::Quarantine {
            action = Action::Quarantine;
        }
        let scl = if high_confidence || score >= 2.0 * t.reject {
            9
        } else if score >= t.reject {
            8
        } else if score >= t.quarantine {
            7
        } else if score >= (t.tag + t.quarantine) / 2.0 {
            6
        } else if score >= t.tag {
            5
        } else if score >= t.tag / 2.0 {
            1
        } else {
            0
        };
        (action, scl)
    }

    /// The headers mailsift adds, in order, then those the filter rules add. A message carrying them can be
    /// explained without the database.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            (format!("{HEADER_PREFIX}Id"), self.id.clone()),
            (format!("{HEADER_PREFIX}Score"), format!("{:.2} / {:.2}", self.score, self.thresholds.tag)),
            (format!("{HEADER_PREFIX}SCL"), self.scl.to_string()),
            (format!("{HEADER_PREFIX}Action"), self.action.as_str().to_string()),
            (format!("{HEADER_PREFIX}Scanned"), self.engines.join(", ")),
        ];
        if let Some(v) = &self.virus {
            h.push((format!("{HEADER_PREFIX}Virus"), v.header.clone()));
        }
        let syms: Vec<String> = self
            .symbols
            .iter()
            .filter(|s| s.asf_mode != Some("test"))
            .map(|s| format!("{}({:.2})", s.name, s.score))
            .collect();
        h.push((format!("{HEADER_PREFIX}Symbols"), fold_list(&syms)));
        let asf: Vec<String> =
            self.symbols.iter().filter_map(|s| s.asf_mode.map(|m| format!("{}={m}", s.name))).collect();
        if !asf.is_empty() {
            h.push((format!("{HEADER_PREFIX}ASF"), fold_list(&asf)));
        }
        if let Some(rule) = &self.decided_by {
            h.push((format!("{HEADER_PREFIX}Rule"), rule.clone()));
        }
        if let Some(ar) = &self.authentication_results {
            h.push(("Authentication-Results".to_string(), ar.clone()));
        }
        // The filter rules' own headers (add_header), after ours.
        h.extend(self.policy_effects.add_headers.iter().map(|a| (a.name.clone(), a.value.clone())));
        h
    }

    /// Our authserv-id, as written in our Authentication-Results.
    pub fn authserv_id(&self) -> Option<&str> {
        self.authentication_results.as_deref().and_then(|a| a.split(';').next()).map(str::trim)
    }

    /// The message with any incoming `X-Mailsift-*` headers removed (nobody may forge our verdict) and ours
    /// added at the top.
    pub fn apply_headers(&self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + 512);
        let crlf = raw.windows(2).take(4096).any(|w| w == b"\r\n");
        let nl: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        for (name, value) in self.headers() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(
                value.replace("\r\n", "\n").replace('\n', std::str::from_utf8(nl).unwrap_or("\n")).as_bytes(),
            );
            out.extend_from_slice(nl);
        }
        out.extend_from_slice(&strip_own_headers(raw, self.authserv_id()));
        out
    }
}

/// Removes every `X-Mailsift-*` field (with its continuation lines) from the top-level header block, and
/// every `Authentication-Results` field that claims our authserv-id in any RFC 8601 form (RFC 8601 §5: a
/// receiver removes results that pretend to be its own). A field is judged whole, continuation lines
/// included, so an id folded onto the next line is seen.
pub fn strip_own_headers(raw: &[u8], authserv_id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    // The current field: where it starts in `raw` and whether it is kept.
    let mut field_start: Option<usize> = None;
    let flush = |out: &mut Vec<u8>, start: usize, end: usize| {
        let field = &raw[start..end];
        if !is_own_field(field, authserv_id) {
            out.extend_from_slice(field);
        }
    };
    while i < raw.len() {
        let end = memchr::memchr(b'\n', &raw[i..]).map(|p| i + p + 1).unwrap_or(raw.len());
        let line = &raw[i..end];
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') && field_start.is_some() {
            // Continuation of the current field.
        } else {
            if let Some(start) = field_start.take() {
                flush(&mut out, start, i);
            }
            if line == b"\n" || line == b"\r\n" {
                out.extend_from_slice(&raw[i..]);
                return out;
            }
            field_start = Some(i);
        }
        i = end;
    }
    if let Some(start) = field_start {
        flush(&mut out, start, raw.len());
    }
    out
}

/// Whether one header field (name, colon, value, continuation lines) is ours to remove.
fn is_own_field(field: &[u8], authserv_id: Option<&str>) -> bool {
    let Some(colon) = memchr::memchr(b':', field) else {
        return false;
    };
    // RFC 5322's obsolete syntax allows white space between the name and the colon; readers accept it.
    let name = field[..colon].trim_ascii();
    if name.len() >= HEADER_PREFIX.len() && name[..HEADER_PREFIX.len()].eq_ignore_ascii_case(HEADER_PREFIX.as_bytes()) {
        return true;
    }
    if !name.eq_ignore_ascii_case(b"Authentication-Results") {
        return false;
    }
    let Some(id) = authserv_id else {
        return false;
    };
    claims_authserv_id(&String::from_utf8_lossy(&field[colon + 1..]), id)
}

/// Whether an `Authentication-Results` value claims to come from `id`. Reads the authserv-id the way RFC
/// 8601 §2.2 writes it (comments and folding white space before it, a quoted string, a trailing dot, any
/// case); a value whose id cannot be read is checked by whether our id appears anywhere before the first
/// `;`, so an odd form errs towards removal. Comments are skipped with a depth counter, not recursion.
pub fn claims_authserv_id(value: &str, id: &str) -> bool {
    let want = normalise_id(id);
    if want.is_empty() {
        return false;
    }
    match authserv_id(value) {
        Some(found) if normalise_id(&found) == want => true,
        _ => {
            // The part before the first ';', comments included: a lenient reader downstream may take a word
            // there for the id, and removing someone else's results costs nothing.
            let head = value.split(';').next().unwrap_or(value);
            head.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\\' | '(' | ')'))
                .any(|w| !w.is_empty() && normalise_id(w) == want)
        }
    }
}

/// The authserv-id of an `Authentication-Results` value (RFC 8601 §2.2: a token or a quoted string after
/// optional comments and folding white space), or None when the value does not start with one.
pub fn authserv_id(value: &str) -> Option<String> {
    let mut chars = value.chars().peekable();
    let mut depth = 0usize;
    // Skip CFWS: white space and comments (nested, with quoted pairs).
    while let Some(&c) = chars.peek() {
        if depth > 0 {
            chars.next();
            match c {
                '\\' => {
                    chars.next();
                }
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
        } else if c == '(' {
            depth = 1;
            chars.next();
        } else if c.is_whitespace() {
            chars.next();
        } else {
            break;
        }
    }
    if depth > 0 {
        return None;
    }
    let mut id = String::new();
    if chars.peek() == Some(&'"') {
        chars.next();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => id.push(chars.next()?),
                c if c == '\r' || c == '\n' => {}
                c => id.push(c),
            }
        }
    } else {
        // RFC 2045 token: up to white space, a comment, or a separator.
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == ';' || c == '(' || c == '"' {
                break;
            }
            id.push(c);
            chars.next();
        }
    }
    Some(id).filter(|s| !s.is_empty())
}

fn normalise_id(id: &str) -> String {
    id.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Joins items, folding the header line every few items so no line grows past RFC 5322's 998 limit.
fn fold_list(items: &[String]) -> String {
    let mut s = String::new();
    let mut line_len = 0;
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
            if line_len + it.len() > 70 {
                s.push_str("\n\t");
                line_len = 0;
            } else {
                s.push(' ');
            }
        }
        s.push_str(it);
        line_len += it.len() + 2;
    }
    s
}

// What the policy stage did, as the verdict records it (the policy fills these in; the store, the log and
// the gateway read them).

/// A rule or list entry that matched a message, for the store's "last matched" and the message log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PolicyMatch {
    Rule {
        name: String,
        /// Position in the configured list.
        index: usize,
    },
    Entry {
        #[serde(flatten)]
        entry: EntryRef,
        /// False when an allow entry matched the sender but was passed over (spoofing, DMARC, its condition).
        honoured: bool,
    },
}

/// What the gateway carries out besides the action. `add_headers` are written by
/// [`crate::Verdict::apply_headers`]; `redirect` and `copy` are the gateway's to do; `reject_message` is
/// the text of the 550 when a rule rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyEffects {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_headers: Vec<AddedHeader>,
    /// Deliver to this address instead of the envelope recipients (the first matching rule's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    /// Also deliver a copy to each of these addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_message: Option<String>,
}

impl PolicyEffects {
    pub fn is_empty(&self) -> bool {
        self.add_headers.is_empty() && self.redirect.is_none() && self.copy.is_empty() && self.reject_message.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddedHeader {
    pub name: String,
    pub value: String,
}

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Allow,
    Block,
}

/// An entry as the verdict reports it: enough for the store to record that it matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryRef {
    pub list: ListKind,
    /// The entry's position in its list (`allow` or `block`) as given to [`crate::policy::Policy::new`].
    pub index: usize,
    /// The store's identifier, when the entry has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub level: Level,
    pub sender: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
}

impl EntryRef {
    /// For `decided_by` and the symbols' detail: `allowed sender "partner.example" (list of
    /// alice@ourdomain.example)`.
    pub fn describe(&self) -> String {
        let kind = match self.list {
            ListKind::Allow => "allowed sender",
            ListKind::Block => "blocked sender",
        };
        let whose = match (&self.level, &self.recipient) {
            (Level::Organisation, _) | (_, None) => "the organisation's list".to_string(),
            (Level::Domain, Some(r)) => format!("the list of domain {r}"),
            (Level::User, Some(r)) => format!("the list of {r}"),
        };
        let id = self.id.as_deref().map(|i| format!(", entry {i}")).unwrap_or_default();
        format!("{kind} {:?} ({whose}{id})", self.sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scl_and_action_follow_thresholds() {
        let t = Thresholds::default();
        assert_eq!(Verdict::decide(&t, 0.0, false), (Action::Deliver, 0));
        assert_eq!(Verdict::decide(&t, 4.0, false), (Action::Deliver, 1));
        assert_eq!(Verdict::decide(&t, 5.0, false), (Action::Tag, 5));
        assert_eq!(Verdict::decide(&t, 8.0, false), (Action::Tag, 6));
        assert_eq!(Verdict::decide(&t, 10.0, false), (Action::Quarantine, 7));
        assert_eq!(Verdict::decide(&t, 15.0, false), (Action::Reject, 8));
        assert_eq!(Verdict::decide(&t, 1000.0, false), (Action::Reject, 9));
        assert_eq!(Verdict::decide(&t, 1.0, true), (Action::Quarantine, 9));
    }

    #[test]
    fn strips_results_that_claim_to_be_ours() {
        let ar = b"Authentication-Results: mx.ours.example; spf=pass\r\nAuthentication-Results: mx.theirs.example; spf=fail\r\n\r\nbody";
        let out = strip_own_headers(ar, Some("mx.ours.example"));
        assert_eq!(out, b"Authentication-Results: mx.theirs.example; spf=fail\r\n\r\nbody");
    }

    #[test]
    fn strips_results_claiming_our_id_in_every_rfc_8601_form() {
        let id = "mx.ours.example";
        let forms: &[&[u8]] = &[
            b"Authentication-Results: mx.ours.example; spf=pass\r\n",
            b"Authentication-Results: (trust me) mx.ours.example; spf=pass\r\n",
            b"Authentication-Results: (nested (comment) here) mx.ours.example; spf=pass\r\n",
            b"Authentication-Results:\r\n mx.ours.example; spf=pass\r\n",
            b"Authentication-Results:\r\n\t(folded)\r\n mx.ours.example;\r\n spf=pass\r\n",
            b"Authentication-Results: mx.ours.example.; spf=pass\r\n",
            b"Authentication-Results: \"mx.ours.example\"; spf=pass\r\n",
            b"Authentication-Results: \"mx.ours\\.example\"; spf=pass\r\n",
            b"Authentication-Results : mx.ours.example; spf=pass\r\n",
            b"authentication-results:MX.OURS.EXAMPLE;spf=pass\r\n",
            b"Authentication-Results: mx.ours.example 1; spf=pass\r\n",
            b"Authentication-Results: mx.ours.example (comment); dkim=pass\r\n",
            b"Authentication-Results: mx.ours.example; none\r\n",
            b"Authentication-Results: (unclosed mx.ours.example; spf=pass\r\n",
            b"Authentication-Results: mx.ours.example\n",
        ];
        for form in forms {
            let mut raw = form.to_vec();
            raw.extend_from_slice(b"Subject: hi\r\n\r\nbody\r\n");
            let out = strip_own_headers(&raw, Some(id));
            assert_eq!(out, b"Subject: hi\r\n\r\nbody\r\n", "kept: {}", String::from_utf8_lossy(form));
        }
        // Others' results stay, including ones that merely mention our name in a property.
        let theirs = b"Authentication-Results: mx.theirs.example; spf=pass smtp.mailfrom=mx.ours.example\r\n\r\n";
        assert_eq!(strip_own_headers(theirs, Some(id)), theirs);
        let sub = b"Authentication-Results: sub.mx.ours.example; spf=pass\r\n\r\n";
        assert_eq!(strip_own_headers(sub, Some(id)), sub);
    }

    #[test]
    fn reads_the_authserv_id() {
        assert_eq!(authserv_id(" (c) \"a\\\"b\" ; x").as_deref(), Some("a\"b"));
        assert_eq!(authserv_id("mx.example;spf=pass").as_deref(), Some("mx.example"));
        assert_eq!(authserv_id("  ").as_deref(), None);
        // Deep comments cost a counter, not stack.
        let deep = format!("{}x{} mx.example; none", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(authserv_id(&deep).as_deref(), Some("mx.example"));
    }

    #[test]
    fn strips_forged_headers_only_from_the_header_block() {
        let raw = b"X-Mailsift-Score: -100\r\n\tcontinued\r\nSubject: hi\r\nx-mailsift-action: deliver\r\n\r\nX-Mailsift-Score: body text stays\r\n";
        let out = strip_own_headers(raw, None);
        assert_eq!(out, b"Subject: hi\r\n\r\nX-Mailsift-Score: body text stays\r\n");
    }
}
