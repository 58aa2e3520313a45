//! What a verdict means for one transaction's recipients, decided once and for every front end: try again
//! later, refuse, or accept and then quarantine some recipients and deliver to the others (tagged or not,
//! redirected, with copies). Pure: no I/O, no clock; [`crate::effects`] carries it out, and the milter and
//! spamd translate it to their own answers.
//!
//! The rule for mixed outcomes: the verdict is per message, but recipients' own allowed/blocked lists may
//! give them different actions. One answer cannot be both 250 and 550, and a 250 must never lose mail, so a
//! recipient whose own action is reject, among recipients that accept the message, is quarantined instead.

use mailsift_engine::{Action, Verdict};

use crate::text::sanitize;

/// The reply to the end of a message, in SMTP terms (the milter and spamd translate it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

/// An [`Answer`].
pub fn answer(code: u16, enhanced: &str, text: impl Into<String>) -> Answer {
    Answer { code, enhanced: enhanced.into(), text: text.into() }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Answer 4xx: sender checks failed temporarily and the policy says to defer (`reason` for the log).
    Defer { reason: String, answer: Answer },
    /// Refuse the message for every recipient.
    Reject { answer: Answer },
    /// Take the message.
    Accept(Accepted),
}

/// Who gets an accepted message, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Recipients whose copy goes to the quarantine (the redirect address when a redirect applies).
    pub quarantine: Vec<String>,
    /// Recipients the message is delivered to (the redirect address when a redirect applies).
    pub deliver: Vec<String>,
    /// Whether the delivered copy gets the subject tag (some delivered recipient's action is tag).
    pub tag: bool,
    /// A filter rule's redirect: the address that replaces every envelope recipient.
    pub redirect: Option<String>,
    /// Filter rules' copies: more addresses that get the message (as delivered, untagged when nobody gets it
    /// delivered), owed by the gateway once it has answered. A milter can add them only to a delivered message.
    pub copies: Vec<String>,
}

impl Disposition {
    /// The disposition of `verdict` for a transaction to `recipients`.
    pub fn of(verdict: &Verdict, recipients: &[String]) -> Disposition {
        let per_recipient: Vec<(String, Action)> =
            verdict.recipient_actions.iter().map(|r| (r.recipient.clone(), r.action)).collect();
        let effects = &verdict.policy_effects;
        decide(&Decision {
            id: &verdict.id,
            defer: verdict.defer.as_deref(),
            action: verdict.action,
            per_recipient: &per_recipient,
            recipients,
            redirect: effects.redirect.as_deref(),
            copies: &effects.copy,
            reject_message: effects.reject_message.as_deref(),
            virus: verdict.virus.as_ref().and_then(|v| v.found.as_deref()),
        })
    }

    /// Whether some recipient does not get the message as it is (tagged, quarantined or refused): what a
    /// spam/not-spam answer (spamd) says. `None` for a defer, which says nothing about the content.
    pub fn is_spam(&self) -> Option<bool> {
        match self {
            Disposition::Defer { .. } => None,
            Disposition::Reject { .. } => Some(true),
            Disposition::Accept(a) => Some(a.tag || !a.quarantine.is_empty()),
        }
    }

    /// The log's name of the outcome before delivery is tried: `tempfail`, `reject`, `quarantine` (nobody
    /// gets it delivered), `tag` or `deliver`.
    pub fn action_name(&self) -> &'static str {
        match self {
            Disposition::Defer { .. } => "tempfail",
            Disposition::Reject { .. } => "reject",
            Disposition::Accept(a) if a.deliver.is_empty() => "quarantine",
            Disposition::Accept(a) if a.tag => "tag",
            Disposition::Accept(_) => "deliver",
        }
    }
}

/// What [`decide`] reads from a verdict: the narrow inputs, so the rules can be tested as a table.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub id: &'a str,
    pub defer: Option<&'a str>,
    pub action: Action,
    /// Each recipient's own action, when their lists made them differ (empty: all have `action`).
    pub per_recipient: &'a [(String, Action)],
    pub recipients: &'a [String],
    pub redirect: Option<&'a str>,
    pub copies: &'a [String],
    pub reject_message: Option<&'a str>,
    /// The signature of a virus found in the message: its refusal is `554 5.7.0` and names it.
    pub virus: Option<&'a str>,
}

/// The rules, in order: a defer wins; then each recipient's action (a redirect replaces the recipients by
/// its address with the message's action); all rejecting is a refusal; otherwise rejecting recipients are
/// quarantined, quarantining ones are quarantined, the others delivered, tagged if any of them tags.
pub fn decide(d: &Decision<'_>) -> Disposition {
    let id = d.id;
    if let Some(why) = d.defer {
        return Disposition::Defer {
            reason: why.to_string(),
            answer: answer(451, "4.7.1", format!("{} [ref {id}]", sanitize(why, 200))),
        };
    }
    let actions: Vec<(String, Action)> = match d.redirect {
        Some(to) => vec![(to.to_string(), d.action)],
        None if d.per_recipient.is_empty() => d.recipients.iter().map(|r| (r.clone(), d.action)).collect(),
        None => d.per_recipient.to_vec(),
    };
    if actions.iter().all(|(_, a)| *a == Action::Reject) {
        if let Some(name) = d.virus {
            let text = format!("Virus found: {} [ref {id}]", sanitize(name, 200));
            return Disposition::Reject { answer: answer(554, "5.7.0", text) };
        }
        let text = match d.reject_message {
            Some(m) => format!("{} [ref {id}]", sanitize(m, 200)),
            None => format!("Message rejected as spam [ref {id}]"),
        };
        return Disposition::Reject { answer: answer(550, "5.7.1", text) };
    }
    let mut accepted = Accepted { redirect: d.redirect.map(str::to_string), ..Accepted::default() };
    for (rcpt, action) in actions {
        match action {
            // One answer for all: rejecting among accepting recipients is quarantined (see the module doc).
            Action::Reject | Action::Quarantine => accepted.quarantine.push(rcpt),
            Action::Tag => {
                accepted.tag = true;
                accepted.deliver.push(rcpt);
            }
            _ => accepted.deliver.push(rcpt),
        }
    }
    accepted.copies = d.copies.to_vec();
    Disposition::Accept(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Deliver, Quarantine, Reject, Tag};

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    struct Row {
        name: &'static str,
        defer: Option<&'static str>,
        action: Action,
        per_recipient: &'static [(&'static str, Action)],
        redirect: Option<&'static str>,
        copies: &'static [&'static str],
        reject_message: Option<&'static str>,
        want: Disposition,
    }

    fn accept(
        quarantine: &[&str],
        deliver: &[&str],
        tag: bool,
        redirect: Option<&str>,
        copies: &[&str],
    ) -> Disposition {
        Disposition::Accept(Accepted {
            quarantine: v(quarantine),
            deliver: v(deliver),
            tag,
            redirect: redirect.map(str::to_string),
            copies: v(copies),
        })
    }

    #[test]
    fn the_rules_as_a_table() {
        let rcpts = v(&["a@x.example", "b@x.example"]);
        let rows = [
            Row {
                name: "clean mail is delivered to every recipient",
                defer: None,
                action: Deliver,
                per_recipient: &[],
                redirect: None,
                copies: &[],
                reject_message: None,
                want: accept(&[], &["a@x.example", "b@x.example"], false, None, &[]),
            },
            Row {
                name: "a defer wins over everything",
                defer: Some("DNS\r\nfailed"),
                action: Reject,
                per_recipient: &[],
                redirect: Some("r@x.example"),
                copies: &["c@x.example"],
                reject_message: None,
                want: Disposition::Defer {
                    reason: "DNS\r\nfailed".into(),
                    answer: answer(451, "4.7.1", "DNS  failed [ref ID1]"),
                },
            },
            Row {
                name: "spam is rejected with the default text",
                defer: None,
                action: Reject,
                per_recipient: &[],
                redirect: None,
                copies: &["c@x.example"],
                reject_message: None,
                want: Disposition::Reject { answer: answer(550, "5.7.1", "Message rejected as spam [ref ID1]") },
            },
            Row {
                name: "a rule's reject text is used, made safe",
                defer: None,
                action: Reject,
                per_recipient: &[],
                redirect: None,
                copies: &[],
                reject_message: Some("Go away\r\n250 ok"),
                want: Disposition::Reject { answer: answer(550, "5.7.1", "Go away  250 ok [ref ID1]") },
            },
            Row {
                name: "tagged mail is delivered tagged, with the rule's copies",
                defer: None,
                action: Tag,
                per_recipient: &[],
                redirect: None,
                copies: &["c@x.example"],
                reject_message: None,
                want: accept(&[], &["a@x.example", "b@x.example"], true, None, &["c@x.example"]),
            },
            Row {
                name: "quarantined mail keeps the rule's copies (a legal hold sees everything accepted)",
                defer: None,
                action: Quarantine,
                per_recipient: &[],
                redirect: None,
                copies: &["c@x.example"],
                reject_message: None,
                want: accept(&["a@x.example", "b@x.example"], &[], false, None, &["c@x.example"]),
            },
            Row {
                name: "a rejecting recipient among accepted ones is quarantined",
                defer: None,
                action: Reject,
                per_recipient: &[("a@x.example", Reject), ("b@x.example", Deliver)],
                redirect: None,
                copies: &[],
                reject_message: None,
                want: accept(&["a@x.example"], &["b@x.example"], false, None, &[]),
            },
            Row {
                name: "per-recipient outcomes: tag one, quarantine another",
                defer: None,
                action: Quarantine,
                per_recipient: &[("a@x.example", Tag), ("b@x.example", Quarantine)],
                redirect: None,
                copies: &["c@x.example"],
                reject_message: None,
                want: accept(&["b@x.example"], &["a@x.example"], true, None, &["c@x.example"]),
            },
            Row {
                name: "every recipient rejecting on its own list is a refusal",
                defer: None,
                action: Reject,
                per_recipient: &[("a@x.example", Reject), ("b@x.example", Reject)],
                redirect: None,
                copies: &[],
                reject_message: None,
                want: Disposition::Reject { answer: answer(550, "5.7.1", "Message rejected as spam [ref ID1]") },
            },
            Row {
                name: "a redirect replaces the recipients and takes the message's action",
                defer: None,
                action: Deliver,
                per_recipient: &[("a@x.example", Reject), ("b@x.example", Deliver)],
                redirect: Some("r@x.example"),
                copies: &[],
                reject_message: None,
                want: accept(&[], &["r@x.example"], false, Some("r@x.example"), &[]),
            },
            Row {
                name: "a redirected spam is quarantined for the redirect address",
                defer: None,
                action: Quarantine,
                per_recipient: &[],
                redirect: Some("r@x.example"),
                copies: &[],
                reject_message: None,
                want: accept(&["r@x.example"], &[], false, Some("r@x.example"), &[]),
            },
        ];
        for row in rows {
            let per: Vec<(String, Action)> = row.per_recipient.iter().map(|(r, a)| (r.to_string(), *a)).collect();
            let copies = v(row.copies);
            let got = decide(&Decision {
                id: "ID1",
                defer: row.defer,
                action: row.action,
                per_recipient: &per,
                recipients: &rcpts,
                redirect: row.redirect,
                copies: &copies,
                reject_message: row.reject_message,
                virus: None,
            });
            assert_eq!(got, row.want, "{}", row.name);
        }
    }

    #[test]
    fn a_virus_is_refused_with_554_naming_it_whatever_the_rules_reject_text() {
        let rcpts = v(&["a@x.example"]);
        let d = Decision {
            id: "ID1",
            defer: None,
            action: Reject,
            per_recipient: &[],
            recipients: &rcpts,
            redirect: None,
            copies: &[],
            reject_message: Some("rule text"),
            virus: Some("Eicar\r\n250 ok"),
        };
        assert_eq!(
            decide(&d),
            Disposition::Reject { answer: answer(554, "5.7.0", "Virus found: Eicar  250 ok [ref ID1]") }
        );
        // Quarantined instead (the domain's virus_action): accepted, held.
        assert_eq!(decide(&Decision { action: Quarantine, ..d }), accept(&["a@x.example"], &[], false, None, &[]));
    }

    #[test]
    fn action_names() {
        assert_eq!(accept(&["a"], &[], false, None, &[]).action_name(), "quarantine");
        assert_eq!(accept(&["a"], &["b"], true, None, &[]).action_name(), "tag");
        assert_eq!(accept(&[], &["b"], false, None, &[]).action_name(), "deliver");
        assert_eq!(Disposition::Reject { answer: answer(550, "5.7.1", "x") }.action_name(), "reject");
        assert_eq!(accept(&["a"], &["b"], false, None, &[]).is_spam(), Some(true));
        assert_eq!(accept(&[], &["b"], true, None, &[]).is_spam(), Some(true));
        assert_eq!(accept(&[], &["b"], false, None, &["c"]).is_spam(), Some(false));
    }
}
