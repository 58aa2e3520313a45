//! Our own domain, in the production configuration (DNS on, against a loopback DNS server that publishes
//! our SPF `-all` and DMARC `p=reject`): outbound mail from our trusted networks or authenticated users is
//! never SPOOF_OWN_DOMAIN; spoofs of our domain count against the spoofer's IP and network, never against
//! our domain; and a diagnosis read from the message log names no blank names and does not count the
//! diagnosed message among the spam its fix would let in (issue 15, items 5, 6 and 8).

use std::collections::HashMap;

use mailsift_engine::config::DnsConfig;
use mailsift_engine::diagnose::{self, Change, Observed, PastMessage, Source, Subject};
use mailsift_engine::evidence::{
    reputation_keys, reputation_keys_for, ReputationEntry, ReputationFacts, ReputationKind,
};
use mailsift_engine::policy::PolicyConfig;
use mailsift_engine::{Direction, Engine, EngineConfig, Envelope, Evidence, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::dns::{TestDns, Zone};

const ORG: &str = r#"
[organisation]
domains = ["acme.test"]
[[organisation.protected]]
domain = "acme.test"
sending_servers = ["192.0.2.10/32"]
[reputation]
enabled = true
"#;

/// Our domain as a real organisation publishes it: SPF `-all` for our one server, DMARC `p=reject`.
fn zone() -> Zone {
    let mut z = Zone::new();
    z.txt("acme.test", "v=spf1 ip4:192.0.2.10 -all")
        .txt("_dmarc.acme.test", "v=DMARC1; p=reject")
        .ptr("192.0.2.10", "mail.acme.test")
        .a("mail.acme.test", "192.0.2.10")
        .ptr("198.18.0.9", "host9.spoofer.test")
        .a("host9.spoofer.test", "198.18.0.9");
    z
}

fn engine(dns: &TestDns) -> Engine {
    let mut config = EngineConfig::from_toml(ORG).unwrap_or_else(|e| panic!("{e}"));
    config.dns = DnsConfig {
        enabled: true,
        nameservers: vec![dns.addr().to_string()],
        timeout_ms: 400,
        deadline_ms: 1500,
        ..DnsConfig::default()
    };
    Engine::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: Customer <someone@customer.test>\r\nSubject: {subject}\r\n\
         Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <{}@acme.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nthe invoice you asked for is attached.\r\n",
        subject.len()
    )
}

fn envelope(ip: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some("client.acme.test".into()),
        mail_from: Some(mail_from.into()),
        rcpt_to: vec!["someone@customer.test".into()],
        ..Envelope::default()
    }
}

async fn gathered(engine: &Engine, raw: &str, env: &Envelope) -> Evidence {
    let g = SenderGatherer::new(&engine.config().dns).unwrap();
    Evidence::from_sender(g.gather(raw.as_bytes(), env).await)
}

fn has(v: &Verdict, name: &str) -> bool {
    v.symbols.iter().any(|s| s.name == name)
}

fn show(v: &Verdict) -> String {
    let syms: Vec<String> = v.symbols.iter().map(|s| format!("{}({:.1}; {})", s.name, s.score, s.detail)).collect();
    format!("{:?} score {:.2}: {}", v.action, v.score, syms.join(", "))
}

// ----- item 5: outbound mail is never SPOOF_OWN_DOMAIN -----

#[tokio::test]
async fn mail_from_a_trusted_network_or_an_authenticated_user_is_outbound_and_never_spoof_own_domain() {
    let dns = TestDns::start(zone());
    let e = engine(&dns);
    // 10.20.0.5 is in the gateway's trusted networks (the session decides that and sets the direction),
    // but it is not one of acme.test's sending servers.
    let raw = message("Dana <dana@acme.test>", "Invoice 4711");
    let inbound = envelope("10.20.0.5", "dana@acme.test");

    // The same message arriving from outside is a spoof: the check works in this configuration.
    let ev = gathered(&e, &raw, &inbound).await;
    let v = e.judge(&e.parse(raw.as_bytes()), &inbound, &ev);
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action.is_spam(), "inbound: {}", show(&v));
    // ... and a stranger naming our domain in its HELO (client.acme.test) is suspect.
    assert!(has(&v, "HELO_CLAIMS_OUR_DOMAIN"), "inbound: {}", show(&v));

    // From a trusted network: the session judges it outbound, and gathers no sender evidence for it.
    let trusted = Envelope { direction: Direction::Outbound, ..inbound.clone() };
    let v = e.judge(&e.parse(raw.as_bytes()), &trusted, &Evidence::default());
    assert!(!has(&v, "SPOOF_OWN_DOMAIN") && !v.action.is_spam(), "trusted network: {}", show(&v));
    // Even if sender evidence were gathered for it, our own outbound mail is not a spoof of us.
    let v = e.judge(&e.parse(raw.as_bytes()), &trusted, &ev);
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "trusted network with evidence: {}", show(&v));
    // Our own server rightly names our domain in its HELO.
    assert!(!has(&v, "HELO_CLAIMS_OUR_DOMAIN"), "trusted network with evidence: {}", show(&v));

    // An authenticated user, from anywhere: outbound too, whatever direction a caller forgot to set.
    let user = Envelope {
        client_ip: Some("198.18.0.9".parse().unwrap()),
        authenticated_user: Some("dana".into()),
        ..inbound.clone()
    };
    let v = e.judge(&e.parse(raw.as_bytes()), &user, &Evidence::default());
    assert!(!has(&v, "SPOOF_OWN_DOMAIN") && !v.action.is_spam(), "authenticated: {}", show(&v));
    assert!(!has(&v, "HELO_CLAIMS_OUR_DOMAIN"), "authenticated: {}", show(&v));
    // A blank login name is no login.
    let blank = Envelope { authenticated_user: Some("  ".into()), ..user.clone() };
    let v = e.judge(&e.parse(raw.as_bytes()), &blank, &Evidence::default());
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "a blank user is not authenticated: {}", show(&v));
}

// ----- item 6: spoofs of our domain never count against it -----

/// A minimal reputation store with the gateway's arithmetic (an SCL-9 verdict is one unit of bad
/// evidence, a clean one one unit of good), for the keys the caller chooses.
#[derive(Default)]
struct Memory(HashMap<(ReputationKind, String), (f64, f64)>);

impl Memory {
    fn record(&mut self, keys: &[(ReputationKind, String)], spam: bool) {
        for k in keys {
            let e = self.0.entry(k.clone()).or_default();
            if spam {
                e.0 += 1.0;
            } else {
                e.1 += 1.0;
            }
        }
    }

    fn lookup(&self, keys: &[(ReputationKind, String)]) -> ReputationFacts {
        ReputationFacts {
            entries: keys
                .iter()
                .filter_map(|k| {
                    let (spam, ham) = *self.0.get(k)?;
                    Some(ReputationEntry { kind: k.0, key: k.1.clone(), spam, ham })
                })
                .collect(),
        }
    }
}

#[tokio::test]
async fn spoofs_of_our_domain_count_against_the_spoofer_and_never_against_our_domain() {
    let dns = TestDns::start(zone());
    let e = engine(&dns);
    let org = &e.config().organisation;
    let spoof = message("Accounts <accounts@acme.test>", "Change of bank details");
    let spoof_env = envelope("198.18.0.9", "accounts@acme.test");
    let legit = message("Dana <dana@acme.test>", "Minutes of Monday");
    let legit_env = envelope("192.0.2.10", "dana@acme.test");

    // Five spoofs, each judged spam and recorded as the gateway records verdicts.
    let (mut fixed, mut old) = (Memory::default(), Memory::default());
    for _ in 0..5 {
        let msg = e.parse(spoof.as_bytes());
        let ev = gathered(&e, &spoof, &spoof_env).await;
        let v = e.judge(&msg, &spoof_env, &ev);
        assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action.is_spam(), "{}", show(&v));
        let keys = reputation_keys_for(&spoof_env, &msg, org);
        assert!(
            keys.iter().all(|(k, _)| matches!(k, ReputationKind::Ip | ReputationKind::Net)),
            "a spoof of acme.test is remembered against its IP and network only: {keys:?}"
        );
        fixed.record(&keys, true);
        old.record(&reputation_keys(&spoof_env, &msg), true);
    }

    // The spoofer's IP now has a bad name ...
    let msg = e.parse(spoof.as_bytes());
    let mut ev = gathered(&e, &spoof, &spoof_env).await;
    ev.reputation = Some(fixed.lookup(&reputation_keys_for(&spoof_env, &msg, org)));
    let v = e.judge(&msg, &spoof_env, &ev);
    assert!(has(&v, "REPUTATION_IP_BAD"), "{}", show(&v));

    // ... and our own legitimate mail, from our sending server, does not pay for it.
    let msg = e.parse(legit.as_bytes());
    let keys = reputation_keys_for(&legit_env, &msg, org);
    assert!(keys.iter().any(|(k, d)| *k == ReputationKind::Domain && d == "acme.test"), "{keys:?}");
    let mut ev = gathered(&e, &legit, &legit_env).await;
    ev.reputation = Some(fixed.lookup(&keys));
    let v = e.judge(&msg, &legit_env, &ev);
    assert!(!has(&v, "REPUTATION_DOMAIN_BAD") && !has(&v, "REPUTATION_ADDRESS_BAD"), "{}", show(&v));
    assert!(!v.action.is_spam(), "{}", show(&v));

    // Without knowing our domains (the old keys), the same history makes our own mail pay: the test above
    // would fail if the spoofs still counted against acme.test.
    let mut ev = gathered(&e, &legit, &legit_env).await;
    ev.reputation = Some(old.lookup(&reputation_keys(&legit_env, &msg)));
    let v = e.judge(&msg, &legit_env, &ev);
    assert!(has(&v, "REPUTATION_DOMAIN_BAD"), "{}", show(&v));
}

#[test]
fn reputation_keys_keep_other_domains_outbound_mail_and_subdomains_apart() {
    let config = EngineConfig::from_toml(ORG).unwrap();
    let org = &config.organisation;
    let kinds =
        |keys: &[(ReputationKind, String)]| keys.iter().map(|(k, v)| format!("{}={v}", k.as_str())).collect::<Vec<_>>();
    let raw = message("Someone <someone@partner.test>", "Hello");
    let msg = mailsift_engine::Message::parse(raw.as_bytes(), usize::MAX);

    // Somebody else's domain is remembered as before.
    let env = envelope("198.18.0.9", "someone@partner.test");
    assert_eq!(reputation_keys_for(&env, &msg, org), reputation_keys(&env, &msg));

    // Our domain claimed by a subdomain of ours, in MAIL FROM, from elsewhere: not remembered for us.
    let env = envelope("198.18.0.9", "bounce@mail.acme.test");
    assert_eq!(kinds(&reputation_keys_for(&env, &msg, org)), ["ip=198.18.0.9", "net=198.18.0.0/24"]);

    // Our domain in From: with a null sender from elsewhere: the From: address is ours, not remembered.
    let ours = message("Dana <dana@acme.test>", "Hello");
    let ours_msg = mailsift_engine::Message::parse(ours.as_bytes(), usize::MAX);
    let env = envelope("198.18.0.9", "");
    assert_eq!(kinds(&reputation_keys_for(&env, &ours_msg, org)), ["ip=198.18.0.9", "net=198.18.0.0/24"]);

    // A foreign bounce address with our From: is the foreign sender's: remembered against it.
    let env = envelope("198.18.0.9", "bounces@mailer.test");
    let keys = kinds(&reputation_keys_for(&env, &ours_msg, org));
    assert!(keys.contains(&"domain=mailer.test".to_string()), "{keys:?}");

    // Our own outbound mail (a trusted network, or a login) counts for our domain.
    let env = Envelope { direction: Direction::Outbound, ..envelope("10.20.0.5", "dana@acme.test") };
    let keys = kinds(&reputation_keys_for(&env, &ours_msg, org));
    assert!(keys.contains(&"domain=acme.test".to_string()), "{keys:?}");
    let env = Envelope { authenticated_user: Some("dana".into()), ..envelope("198.18.0.9", "dana@acme.test") };
    let keys = kinds(&reputation_keys_for(&env, &ours_msg, org));
    assert!(keys.contains(&"address=dana@acme.test".to_string()), "{keys:?}");

    // A domain of ours that lists no sending servers is never remembered from inbound mail.
    let config = EngineConfig::from_toml("[organisation]\ndomains = [\"other.test\"]\n").unwrap();
    let env = envelope("192.0.2.10", "x@other.test");
    assert_eq!(kinds(&reputation_keys_for(&env, &msg, &config.organisation)), ["ip=192.0.2.10", "net=192.0.2.0/24"]);
}

// ----- item 8: diagnoses from the message log -----

#[test]
fn a_diagnosis_from_the_message_log_prints_no_blank_names() {
    let config = EngineConfig::from_toml(ORG).unwrap();
    let e = Engine::new(config).unwrap();
    // What the log keeps of a transaction without a copy: a few headers, symbol names and scores.
    let rebuilt = "From: Billing <billing@supplier.test>\r\nSubject: Your invoice\r\n\r\n";
    let msg = e.parse(rebuilt.as_bytes());
    let env = Envelope {
        client_ip: Some("198.18.0.9".parse().unwrap()),
        mail_from: Some("billing@supplier.test".into()),
        rcpt_to: vec!["dana@acme.test".into()],
        ..Envelope::default()
    };
    let symbols: Vec<(String, f64)> = [
        ("DKIM_BODY_MODIFIED", 1.0),
        ("DKIM_INVALID", 1.5),
        ("DKIM_EXPIRED", 0.5),
        ("DMARC_POLICY_QUARANTINE", 3.0),
        ("RDNS_NOT_CONFIRMED", 1.0),
        ("HELO_NOT_FQDN", 0.5),
        ("HELO_BARE_IP", 0.5),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), *s))
    .collect();
    let observed = Observed::from_log("R-LOG-1", 8.0, "tag", &symbols, None);
    let subject = Subject {
        message: &msg,
        envelope: &env,
        evidence: &Evidence::default(),
        observed: &observed,
        source: Source::Log("R-LOG-1".into()),
    };
    let d = diagnose::diagnose(&e, &PolicyConfig::default(), &subject);
    let text = diagnose::render(&d);
    assert!(text.contains("DKIM signature"), "the sender's findings are there:\n{text}");
    for blank in ["()", "(\"\")", "\"\"", "domain  "] {
        assert!(!text.contains(blank), "blank name {blank:?} in:\n{text}");
    }
    assert!(text.contains("The From: domain supplier.test fails"), "the From: domain is named:\n{text}");

    // With the message's own DKIM-Signature at hand (a quarantined copy), the signer is named.
    let signed = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=supplier.test; s=sel1;\r\n h=from:subject; bh=AAAA; b=BBBB\r\n{rebuilt}"
    );
    let msg = e.parse(signed.as_bytes());
    let subject = Subject { message: &msg, ..subject };
    let text = diagnose::render(&diagnose::diagnose(&e, &PolicyConfig::default(), &subject));
    assert!(text.contains("Their DKIM signature (supplier.test (s=sel1)) covered the body"), "{text}");
}

#[test]
fn details_missing_from_the_log_are_taken_from_the_message_judged_again() {
    let e = Engine::new(EngineConfig::from_toml(ORG).unwrap()).unwrap();
    let raw = message("Accounts <accounts@acme.test>", "Change of bank details");
    let env = envelope("198.18.0.9", "accounts@acme.test");
    let fresh = e.judge(&e.parse(raw.as_bytes()), &env, &Evidence::default());
    let spoof = fresh.symbols.iter().find(|s| s.name == "SPOOF_OWN_DOMAIN").expect("a spoof").clone();
    assert!(!spoof.detail.is_empty());
    let mut observed = Observed::from_log("R-2", fresh.score, "tag", &[("SPOOF_OWN_DOMAIN".into(), spoof.score)], None);
    assert!(observed.symbols[0].detail.is_empty());
    observed.fill_details(&fresh);
    assert_eq!(observed.symbols[0].detail, spoof.detail);
}

#[test]
fn a_replay_does_not_count_the_diagnosed_message_as_spam_it_would_let_through() {
    let e = Engine::new(EngineConfig::from_toml(ORG).unwrap()).unwrap();
    let row = |id: &str, ip: &str| PastMessage {
        reference_id: id.into(),
        client_ip: Some(ip.parse().unwrap()),
        mail_from: Some("webform@acme.test".into()),
        recipients: vec!["sales@acme.test".into()],
        from_header: Some("webform@acme.test".into()),
        subject: Some("Enquiry".into()),
        score: Some(9.0),
        symbols: vec![("SPOOF_OWN_DOMAIN".into(), 8.0)],
        action: "tag".into(),
        ..PastMessage::default()
    };
    // The diagnosed message (R-SELF), an earlier one from the same web server, a forgery from elsewhere.
    let past = vec![row("R-SELF", "203.0.113.50"), row("R-EARLIER", "203.0.113.50"), row("R-FORGED", "198.18.0.9")];
    let change = Change::AddSendingServer { domain: "acme.test".into(), server: "203.0.113.50".into() };

    let all = diagnose::replay(&e, &change, &past);
    assert_eq!((all.examined, all.let_through, all.were_spam.len()), (3, 2, 2), "{all:?}");

    let r = diagnose::replay_excluding(&e, &change, &past, Some("R-SELF"));
    assert_eq!((r.examined, r.let_through), (2, 1), "{r:?}");
    assert_eq!(r.were_spam.iter().map(|m| m.reference_id.as_str()).collect::<Vec<_>>(), ["R-EARLIER"]);
    // Without a reference (a message scanned afresh), nothing is left out.
    let r = diagnose::replay_excluding(&e, &change, &past, None);
    assert_eq!(r.examined, 3);
}

// ----- a From hidden from the parser -----

/// A spoof of our domain whose From follows a Date the parser reads on into the next line ("UT" zone, bare
/// LF line ends, as spamc or a milter may hand over): before the fix the From was lost to the Date, so the
/// anti-spoofing check saw no From at all (MISSING_FROM instead of SPOOF_OWN_DOMAIN) while a mail client
/// shows "ceo@acme.test". The same message with a well-formed Date is the control.
#[tokio::test]
async fn a_from_hidden_behind_a_malformed_date_is_still_our_domain_spoofed() {
    let dns = TestDns::start(zone());
    let e = engine(&dns);
    let spoofer = envelope("198.18.0.9", "bounce@spoofer.test");
    for date in ["Mon, 6 Jan 2025 10:00:00 +0000", "Mon, 6 Jan 2025 10:00:00 UT", "6 Jan 25 10:00:00 AM"] {
        let raw = format!(
            "Date: {date}\nFrom: \"The CEO\" <ceo@acme.test>\nTo: someone@customer.test\nSubject: wire today\n\
             Message-ID: <x1@spoofer.test>\n\nPlease wire the money today.\n"
        );
        let ev = gathered(&e, &raw, &spoofer).await;
        let v = e.judge(&e.parse(raw.as_bytes()), &spoofer, &ev);
        assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action.is_spam(), "Date: {date}: {}", show(&v));
        assert!(!has(&v, "MISSING_FROM"), "Date: {date}: {}", show(&v));
    }
}
