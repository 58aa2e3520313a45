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

use crate::config::Thresholds;
use crate::policy::{PolicyEffects, PolicyMatch};
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
        let authserv_id = self.authentication_results.as_deref().and_then(|a| a.split(';').next()).map(str::trim);
        out.extend_from_slice(&strip_own_headers(raw, authserv_id));
        out
    }
}

/// Removes every `X-Mailsift-*` field (with its continuation lines) from the top-level header block, and
/// every `Authentication-Results` field that claims our authserv-id (RFC 8601 §5: a receiver removes
/// results that pretend to be its own).
pub fn strip_own_headers(raw: &[u8], authserv_id: Option<&str>) -> Vec<u8> {
    const AR: &[u8] = b"Authentication-Results:";
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    let mut skipping = false;
    let mut in_headers = true;
    while i < raw.len() {
        let end = raw[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1).unwrap_or(raw.len());
        let line = &raw[i..end];
        if in_headers {
            if line == b"\n" || line == b"\r\n" {
                in_headers = false;
                skipping = false;
            } else if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                // Continuation of the previous field.
            } else {
                let ours = line.len() >= HEADER_PREFIX.len()
                    && line[..HEADER_PREFIX.len()].eq_ignore_ascii_case(HEADER_PREFIX.as_bytes());
                let forged_results = authserv_id.is_some_and(|id| {
                    line.len() > AR.len() && line[..AR.len()].eq_ignore_ascii_case(AR) && {
                        let value = String::from_utf8_lossy(&line[AR.len()..]);
                        value
                            .trim_start()
                            .split([';', ' ', '\t', '\r', '\n'])
                            .next()
                            .is_some_and(|v| v.eq_ignore_ascii_case(id))
                    }
                });
                skipping = ours || forged_results;
            }
            if !skipping {
                out.extend_from_slice(line);
            }
        } else {
            out.extend_from_slice(&raw[i..]);
            break;
        }
        i = end;
    }
    out
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
    fn strips_forged_headers_only_from_the_header_block() {
        let raw = b"X-Mailsift-Score: -100\r\n\tcontinued\r\nSubject: hi\r\nx-mailsift-action: deliver\r\n\r\nX-Mailsift-Score: body text stays\r\n";
        let out = strip_own_headers(raw, None);
        assert_eq!(out, b"Subject: hi\r\n\r\nX-Mailsift-Score: body text stays\r\n");
    }
}
