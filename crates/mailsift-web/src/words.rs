//! Plain words for people who are not mail administrators: why a message was held, what its authentication
//! says ("this message claims to come from acme.test but was not sent by acme.test's servers"), shown in the
//! quarantine, the digest and the sender pages. Symbols stay for administrators; these sentences are read
//! from the same symbols, so the two cannot disagree.

use serde::Serialize;

/// What the authentication of a message says about its From: domain, in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthWords {
    /// "verified", "not verified" or "unknown".
    pub state: &'static str,
    pub sentence: String,
}

fn has(symbols: &[(String, f64)], name: &str) -> bool {
    symbols.iter().any(|(s, _)| s == name)
}

/// The domain of the address in a From: field (`"Name" <a@b>` or `a@b`), as every part of mailsift reads a
/// domain ([`mailsift_engine::address::domain_of`]); `None` when there is none.
pub fn domain_of(from: &str) -> Option<String> {
    let addr = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from,
    };
    Some(mailsift_engine::address::domain_of(addr)).filter(|d| !d.is_empty() && !d.starts_with('['))
}

/// The authentication of a message with these symbols and this From: domain, in one sentence.
pub fn auth(symbols: &[(String, f64)], from_domain: Option<&str>) -> AuthWords {
    let d = from_domain.unwrap_or("its sender");
    let not = |sentence: String| AuthWords { state: "not verified", sentence };
    if has(symbols, "SPOOF_OWN_DOMAIN") {
        return not(format!(
            "This message claims to come from {d}, your own organisation, but was not sent by {d}'s servers."
        ));
    }
    if ["DMARC_POLICY_REJECT", "DMARC_POLICY_QUARANTINE", "DMARC_POLICY_NONE"].iter().any(|s| has(symbols, s)) {
        return not(format!("This message claims to come from {d} but was not sent by {d}'s servers."));
    }
    if has(symbols, "DMARC_PASS") {
        return AuthWords { state: "verified", sentence: format!("Verified: sent by {d}'s own servers.") };
    }
    if has(symbols, "SPF_FAIL") {
        return not(format!("The server that sent it is not on {d}'s list of servers allowed to send its mail."));
    }
    if has(symbols, "DKIM_INVALID") || has(symbols, "DKIM_BODY_MODIFIED") {
        return not(format!("Its signature does not match: it was changed after {d} signed it, or forged."));
    }
    AuthWords { state: "unknown", sentence: format!("Whether {d} really sent it could not be verified.") }
}

/// What a check means for someone who is not a mail administrator, in one sentence: by the family of evidence
/// (the symbol's group), with a few common kinds named on their own. Several checks of one family read as one
/// sentence, which [`why`] then gives once.
pub fn plain(name: &str, group: mailsift_engine::Group) -> &'static str {
    use mailsift_engine::Group;
    // By exact name: a configured rule that happens to contain "PHISH" is the organisation's rule, not these.
    match name {
        "SPOOF_OWN_DOMAIN" => return "It pretends to come from your own organisation.",
        "PHRASE_PHISHING" => return "It asks you to confirm an account, a password or a payment, as phishing does.",
        "PHISHING_LINK_MISMATCH" => return "Its links show one address and lead to another, as phishing does.",
        "PHRASE_ADVANCE_FEE" => {
            return "It offers a large sum of money in exchange for your help, as advance-fee fraud does.";
        }
        "PHRASE_PRIZE" => return "It says you have won a prize or a lottery.",
        "PHRASE_EXTORTION" => return "It threatens you or demands a payment, as extortion mail does.",
        _ => {}
    }
    match group {
        Group::Auth => "Its sender could not be verified: the servers that sent it are not the sender's own.",
        Group::Reputation => "The server that sent it is known for sending spam.",
        Group::Connection => "The server that sent it is not set up the way proper mail servers are.",
        Group::Headers => "Its headers are put together the way spam software writes them.",
        Group::Content => "Its wording is common in spam (offers, money, urgency).",
        Group::Obfuscation => "It hides its text or its links, as spam does to slip past filters.",
        Group::Urls => "Its links lead to places spam often links to.",
        Group::Html => "Its layout is typical of spam (mostly images, hidden or tiny text).",
        Group::Attachments => "It carries a kind of attachment often used to spread malware.",
        Group::Classifier => "It reads like spam your organisation has received before.",
        Group::Asf => {
            "It contains something your organisation treats as spam (such as hidden tracking images or forms)."
        }
        Group::Policy => "One of your organisation's filter rules scores messages like this one.",
        Group::Test => "It is a test message that every spam filter catches.",
    }
}

/// Why a message was held, as sentences a person can read: the descriptions of the checks that added the most
/// points (at most `max`), most points first; a decision by a rule or a list says so first.
pub fn why(
    symbols: &[(String, f64)],
    reason: &str,
    describe: impl Fn(&str) -> Option<String>,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let lower = reason.to_ascii_lowercase();
    if lower.contains("block") && (lower.contains("list") || lower.contains("sender")) {
        out.push("Its sender is on a list of blocked senders.".to_string());
    } else if lower.starts_with("virus") {
        out.push("It carries a virus; only an administrator can release it.".to_string());
    } else if lower.contains("rule") {
        out.push("One of your organisation's filter rules holds messages like this one.".to_string());
    }
    let mut scored: Vec<&(String, f64)> = symbols.iter().filter(|(_, s)| *s > 0.0).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, _) in scored {
        if out.len() >= max {
            break;
        }
        if let Some(d) = describe(name) {
            let d = d.trim().to_string();
            if !d.is_empty() && !out.contains(&d) {
                out.push(d);
            }
        }
    }
    if out.is_empty() {
        out.push("Several small signs together made it look like spam.".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms(names: &[&str]) -> Vec<(String, f64)> {
        names.iter().map(|n| (n.to_string(), 1.0)).collect()
    }

    #[test]
    fn a_spoof_and_the_real_newsletter_read_differently() {
        let spoof = auth(&syms(&["DMARC_POLICY_REJECT", "SPF_FAIL"]), Some("acme.test"));
        let real = auth(&syms(&["DMARC_PASS", "DKIM_VALID", "SPF_PASS"]), Some("acme.test"));
        assert_eq!(spoof.state, "not verified");
        assert_eq!(
            spoof.sentence,
            "This message claims to come from acme.test but was not sent by acme.test's servers."
        );
        assert_eq!(real.state, "verified");
        assert!(auth(&syms(&["SPOOF_OWN_DOMAIN"]), Some("ours.test")).sentence.contains("your own organisation"));
        assert_eq!(auth(&[], None).state, "unknown");
    }

    #[test]
    fn plain_words_name_the_family_and_never_a_symbol() {
        use mailsift_engine::Group;
        assert_eq!(
            plain("BAYES_SPAM_99", Group::Classifier),
            "It reads like spam your organisation has received before."
        );
        assert!(plain("PHRASE_PHISHING", Group::Content).contains("phishing"));
        assert!(plain("SPOOF_OWN_DOMAIN", Group::Auth).contains("your own organisation"));
        assert!(plain("PHISHING_LINK_MISMATCH", Group::Urls).contains("lead to another"));
        assert!(plain("NO_PHISH_TANK", Group::Policy).contains("filter rules"), "a configured rule is ours");
        let registry = mailsift_engine::Engine::new(mailsift_engine::EngineConfig::default()).unwrap();
        for def in registry.registry().iter() {
            let s = plain(&def.name, def.group);
            assert!(!s.contains('_') && s.ends_with('.'), "{}: {s}", def.name);
        }
    }

    #[test]
    fn domains_of_from_fields() {
        assert_eq!(domain_of("\"Acme\" <news@Acme.Test>").as_deref(), Some("acme.test"));
        assert_eq!(domain_of("a@b.example").as_deref(), Some("b.example"));
        assert_eq!(domain_of("<script>@x"), None);
        assert_eq!(domain_of("no address"), None);
    }

    #[test]
    fn why_reads_descriptions_biggest_first() {
        let s = vec![("A".to_string(), 1.0), ("B".to_string(), 5.0), ("C".to_string(), -2.0)];
        let w = why(&s, "score", |n| Some(format!("check {n}.")), 3);
        assert_eq!(w, vec!["check B.", "check A."]);
        assert_eq!(why(&[], "blocked sender list", |_| None, 3)[0], "Its sender is on a list of blocked senders.");
    }
}
