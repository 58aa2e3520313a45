//! The trust boundary for trace headers, in the production configuration: DNS on against a loopback DNS
//! server, real PTR records, real DKIM signatures and ARC seals. Rules on the connecting server, its verified
//! name, the signing domain, the ARC sealer and the trusted hops let the legitimate message through; the
//! forgeries an attacker can actually produce (another IP, forged Received lines naming the trusted host, a
//! PTR record that does not confirm, a pasted signature) stay caught. Rules a forger can satisfy are
//! flagged.

use std::net::IpAddr;

use mailsift_engine::config::{DnsConfig, OrganisationConfig, ProtectedDomain};
use mailsift_engine::policy::{Policy, PolicyConfig, PolicyInput};
use mailsift_engine::trust::TrustBoundary;
use mailsift_engine::{Action, Engine, EngineConfig, Envelope, Evidence, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::auth::{authenticator, TestKey};
use mailsift_testkit::dns::{TestDns, Zone};

fn message(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: staff@acme.test\r\nSubject: {subject}\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@trust.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}\r\n",
        subject.len() * 7919 + body.len()
    )
}

fn envelope(ip: &str, helo: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some(helo.into()),
        mail_from: Some(mail_from.into()),
        rcpt_to: vec!["staff@acme.test".into()],
        ..Envelope::default()
    }
}

/// Our organisation as a real one runs it: acme.test sent from 192.0.2.10, SPF -all, DMARC p=reject (in the
/// zones below), DNS on, and the rules given.
fn config(dns: &TestDns, rules: &str) -> EngineConfig {
    let policy: PolicyConfig = toml::from_str(rules).unwrap_or_else(|e| panic!("{e}"));
    EngineConfig {
        organisation: OrganisationConfig {
            domains: vec!["acme.test".into()],
            protected: vec![ProtectedDomain {
                domain: "acme.test".into(),
                sending_servers: vec!["192.0.2.10/32".into()],
                ..ProtectedDomain::default()
            }],
            trusted_relay_networks: vec!["10.1.0.0/16".into()],
            ..OrganisationConfig::default()
        },
        dns: DnsConfig {
            enabled: true,
            nameservers: vec![dns.addr().to_string()],
            timeout_ms: 400,
            deadline_ms: 1500,
            ..DnsConfig::default()
        },
        policy,
        ..EngineConfig::default()
    }
}

fn acme_zone() -> Zone {
    let mut z = Zone::new();
    z.txt("acme.test", "v=spf1 ip4:192.0.2.10 -all").txt("_dmarc.acme.test", "v=DMARC1; p=reject");
    // Our web form's server at a hoster, confirmed both ways.
    z.ptr("203.0.113.50", "web01.hoster.test").a("web01.hoster.test", "203.0.113.50");
    // A spoofer with honest reverse DNS, and one whose reverse zone also names our web server (which does
    // not resolve back to it).
    z.ptr("198.18.0.9", "host9.spoofer.test").a("host9.spoofer.test", "198.18.0.9");
    z.ptr("198.18.0.10", "web01.hoster.test").ptr("198.18.0.10", "host10.spoofer.test");
    z.a("host10.spoofer.test", "198.18.0.10");
    z
}

async fn evidence(config: &EngineConfig, raw: &str, env: &Envelope) -> Evidence {
    let gatherer = SenderGatherer::new(&config.dns).unwrap();
    Evidence::from_sender(gatherer.gather(raw.as_bytes(), env).await)
}

/// The gateway's path: gather evidence, judge with the configured policy.
async fn judge(config: &EngineConfig, raw: &str, env: &Envelope) -> Verdict {
    let ev = evidence(config, raw, env).await;
    Engine::new(config.clone()).unwrap().scan(raw.as_bytes(), env, &ev)
}

/// The rule stage with the connection facts of the configured trusted relays: the names of the rules that
/// decided or matched.
async fn rules_behind_relays(config: &EngineConfig, raw: &str, env: &Envelope) -> Vec<String> {
    let ev = evidence(config, raw, env).await;
    let engine = Engine::new(config.clone()).unwrap();
    let msg = engine.parse(raw.as_bytes());
    let facts = TrustBoundary::new(&config.organisation).unwrap().facts(env, &ev, &msg);
    let policy = Policy::new(&config.policy).unwrap();
    let input = PolicyInput { envelope: env, message: &msg, evidence: &ev, symbols: &[], score: 0.0, now: 0 };
    policy.rules_with_connection(&input, &facts).matched.into_iter().map(|m| m.rule).collect()
}

fn allowed_by(v: &Verdict, rule: &str) -> bool {
    v.decided_by.as_deref() == Some(&format!("rule {rule:?}")) && v.action == Action::Deliver && v.scl == -1
}

fn symbols(v: &Verdict) -> Vec<String> {
    v.symbols.iter().map(|s| format!("{}({})", s.name, s.detail)).collect()
}

const FORGED_RECEIVED: &str = "Received: from web01.hoster.test (web01.hoster.test [203.0.113.50]) by mx.acme.test \
                               (Postfix) with ESMTP id 4AbC; Tue, 1 Dec 2026 09:59:58 +0000\r\n";

#[tokio::test]
async fn a_rule_on_the_verified_name_lets_the_web_form_through_and_forgeries_stay_caught() {
    let dns = TestDns::start(acme_zone());
    let safe = r#"
[[rules]]
name = "web form"
conditions = [
  { field = "from", op = "is", value = "webform@acme.test" },
  { field = "client_ptr", op = "is", value = "web01.hoster.test" },
]
actions = [{ action = "allow" }]
"#;
    // The rule diagnose used to propose: the spoofer writes the Received line.
    let forgeable = r#"
[[rules]]
name = "web form by Received"
conditions = [
  { field = "from", op = "is", value = "webform@acme.test" },
  { field = "header", header = "Received", op = "contains", value = "web01.hoster.test" },
]
actions = [{ action = "allow" }]
"#;
    let c = config(&dns, safe);
    let raw = message("Web form <webform@acme.test>", "New contact request", "Name: Ann\nMessage: please call me");
    let legit = envelope("203.0.113.50", "web01.hoster.test", "webform@acme.test");
    let v = judge(&c, &raw, &legit).await;
    assert!(allowed_by(&v, "web form"), "{:?} {:?}", v.decided_by, symbols(&v));

    // The same message from another IP, with a Received line naming our web server and its HELO: one
    // spoofer with honest reverse DNS, one whose PTR names our web server without resolving back.
    let forged = format!("{FORGED_RECEIVED}{raw}");
    let weak = config(&dns, forgeable);
    for ip in ["198.18.0.9", "198.18.0.10"] {
        let env = envelope(ip, "web01.hoster.test", "webform@acme.test");
        let v = judge(&c, &forged, &env).await;
        assert!(v.decided_by.is_none(), "{ip}: {:?}", v.decided_by);
        assert!(v.action.is_spam(), "{ip}: the spoof of our domain stays caught: {} {:?}", v.score, symbols(&v));
        // What the forgeable rule does with it: lets it through. That is what its warning says.
        let v = judge(&weak, &forged, &env).await;
        assert!(allowed_by(&v, "web form by Received"), "{ip}: {:?}", v.decided_by);
    }
    let w = weak.policy.rules[0].forgery_warning().expect("a forger satisfies the Received rule");
    assert!(w.contains("a Received header can be written by the sender") && w.contains("client_ptr"), "{w}");
    assert_eq!(c.policy.rules[0].forgery_warning(), None);

    // In milter mode without our DNS evidence, the MTA's verified name counts; a HELO claiming it does not.
    let engine = Engine::new(EngineConfig { dns: DnsConfig::default(), ..c.clone() }).unwrap();
    let milter = Envelope { client_name: Some("web01.hoster.test".into()), ..legit.clone() };
    let v = engine.scan(raw.as_bytes(), &milter, &Evidence::default());
    assert!(allowed_by(&v, "web form"), "{:?}", v.decided_by);
    let spoofer = envelope("198.18.0.9", "web01.hoster.test", "webform@acme.test");
    let v = engine.scan(forged.as_bytes(), &spoofer, &Evidence::default());
    assert!(v.decided_by.is_none(), "{:?}", v.decided_by);
}

#[tokio::test]
async fn rules_on_the_connecting_address_and_its_domain() {
    let dns = TestDns::start(acme_zone());
    let rules = r#"
[[rules]]
name = "hoster network"
conditions = [
  { field = "from_domain", op = "is", value = "acme.test" },
  { field = "client_ip", op = "in_cidr", value = "203.0.113.48/29" },
]
actions = [{ action = "allow" }]

[[rules]]
name = "hoster names"
conditions = [{ field = "client_ptr", op = "ends_with", value = "hoster.test" }]
actions = [{ action = "add_header", name = "X-Hoster", value = "yes" }]
"#;
    let c = config(&dns, rules);
    let raw = message("Web form <webform@acme.test>", "Order 1234", "A customer ordered.");
    let v = judge(&c, &raw, &envelope("203.0.113.50", "web01.hoster.test", "webform@acme.test")).await;
    assert!(allowed_by(&v, "hoster network"), "{:?}", v.decided_by);
    assert_eq!(c.policy.rules[0].forgery_warning(), None);
    let v = judge(&c, &raw, &envelope("198.18.0.10", "web01.hoster.test", "webform@acme.test")).await;
    assert!(v.decided_by.is_none() && v.action.is_spam(), "{:?} {}", v.decided_by, v.score);
    assert!(!v.policy_matches.iter().any(|m| format!("{m:?}").contains("hoster names")), "unconfirmed PTR");
}

#[tokio::test]
async fn signing_domain_rules_tell_a_footer_from_a_pasted_signature() {
    let ours = TestKey::new("acme.test", "sig1");
    let mut z = acme_zone();
    ours.publish(&mut z);
    z.ptr("192.0.2.99", "out.sigservice.test").a("out.sigservice.test", "192.0.2.99");
    let dns = TestDns::start(z);
    let rules = r#"
[[rules]]
name = "fully signed by us"
conditions = [{ field = "dkim_domain", op = "is", value = "acme.test" }]
actions = [{ action = "add_header", name = "X-Intact", value = "yes" }]

[[rules]]
name = "signed by us"
conditions = [
  { field = "from_domain", op = "is", value = "acme.test" },
  { field = "dkim_headers_domain", op = "is", value = "acme.test" },
]
actions = [{ action = "allow" }]
"#;
    let c = config(&dns, rules);
    // Our own mail back through a signature service, which added a footer after our signature.
    let signed = ours.sign(&message("Boss <boss@acme.test>", "Plan", "Here is the plan."));
    let footer = format!("{signed}--\r\nBoss, CEO | acme | +1 555 0100\r\n");
    let env = envelope("192.0.2.99", "out.sigservice.test", "boss@acme.test");
    let v = judge(&c, &footer, &env).await;
    assert!(allowed_by(&v, "signed by us"), "{:?} {:?}", v.decided_by, symbols(&v));
    assert_eq!(v.policy_matches.len(), 1, "the body changed: dkim_domain does not hold: {:?}", v.policy_matches);
    let v = judge(&c, &signed, &env).await;
    assert!(allowed_by(&v, "signed by us") && v.policy_matches.len() == 2, "intact: both hold");

    // The signature header pasted onto another message: its signed headers do not verify.
    let header_end = signed.find("\r\nFrom:").expect("signature first") + 2;
    let pasted = format!(
        "{}{}",
        &signed[..header_end],
        message("Boss <boss@acme.test>", "Updated bank details", "Please pay to the new account below.")
    );
    let v = judge(&c, &pasted, &envelope("198.18.0.9", "host9.spoofer.test", "boss@acme.test")).await;
    assert!(v.decided_by.is_none() && v.action.is_spam(), "{:?} {} {:?}", v.decided_by, v.score, symbols(&v));
}

#[tokio::test]
async fn arc_sealer_rules_need_a_chain_that_validates() {
    let author = TestKey::new("acme.test", "a1");
    let sealer = TestKey::new("sigservice.test", "arc");
    let mut z = acme_zone();
    author.publish(&mut z);
    sealer.publish(&mut z);
    z.ptr("192.0.2.99", "out.sigservice.test").a("out.sigservice.test", "192.0.2.99");
    let dns = TestDns::start(z);
    let rules = r#"
[[rules]]
name = "sealed by the signature service"
conditions = [
  { field = "from_domain", op = "is", value = "acme.test" },
  { field = "arc_sealer", op = "is", value = "sigservice.test" },
]
actions = [{ action = "allow" }]
"#;
    let c = config(&dns, rules);
    let original = author.sign(&message("Boss <boss@acme.test>", "Plan", "Here is the plan."));
    let with_footer = format!("{original}--\r\nBoss, CEO\r\n");
    let auth = authenticator(dns.addr());
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let sealed = sealer.arc_seal(&with_footer, &auth, ip, "mail.acme.test", "boss@acme.test").await;
    let env = envelope("192.0.2.99", "out.sigservice.test", "boss@acme.test");
    let v = judge(&c, &sealed, &env).await;
    assert!(allowed_by(&v, "sealed by the signature service"), "{:?} {:?}", v.decided_by, symbols(&v));

    // A seal whose message was changed after sealing does not validate: the sealer is not a fact.
    let tampered = sealed.replace("Here is the plan.", "Here is the new bank account.");
    let v = judge(&c, &tampered, &env).await;
    assert!(v.decided_by.is_none(), "{:?} {:?}", v.decided_by, symbols(&v));
    // A forger's own valid seal names the forger's domain, not the service.
    let forger = TestKey::new("spoofer.test", "arc");
    dns.update(|z| forger.publish(z));
    let forged = forger.arc_seal(&with_footer, &auth, ip, "mail.acme.test", "boss@acme.test").await;
    let v = judge(&c, &forged, &envelope("198.18.0.9", "host9.spoofer.test", "boss@acme.test")).await;
    assert!(v.decided_by.is_none(), "{:?}", v.decided_by);
}

#[tokio::test]
async fn behind_trusted_relays_only_their_lines_are_facts() {
    let dns = TestDns::start(acme_zone());
    // The header rules first: the allow ends the rule stage.
    let rules = r#"
[[rules]]
name = "web server address"
conditions = [{ field = "client_ip", op = "is", value = "203.0.113.50" }]
actions = [{ action = "add_header", name = "X-Web", value = "1" }]

[[rules]]
name = "web server name"
conditions = [{ field = "client_ptr", op = "is", value = "web01.hoster.test" }]
actions = [{ action = "add_header", name = "X-Web-Name", value = "1" }]

[[rules]]
name = "web form via our relay"
conditions = [
  { field = "from", op = "is", value = "webform@acme.test" },
  # The part of the line the relay verified (the name before the address), not the HELO the client gave.
  { field = "trusted_hop", op = "contains", value = "(web01.hoster.test [203.0.113.50])" },
]
actions = [{ action = "allow" }]
"#;
    let c = config(&dns, rules);
    let raw = message("Web form <webform@acme.test>", "New contact request", "Name: Ann");
    let line = |from: &str, ip: &str, by: &str| {
        format!("Received: from {from} ({from} [{ip}]) by {by} (Postfix) with ESMTP id 1; Tue, 1 Dec 2026 10:00:01 +0000\r\n")
    };
    let all: Vec<String> = ["web server address", "web server name", "web form via our relay"].map(String::from).into();
    let via_relay = envelope("10.1.0.5", "edge.acme.test", "webform@acme.test");

    // Our edge relay 10.1.0.5 received it from web01 and passed it on to us.
    let relayed = format!("{}{raw}", line("web01.hoster.test", "203.0.113.50", "edge.acme.test"));
    assert_eq!(rules_behind_relays(&c, &relayed, &via_relay).await, all);
    // The gateway's own path (Engine::scan) believes the same lines: the rule on the trusted hop decides.
    let v = judge(&c, &relayed, &via_relay).await;
    assert!(allowed_by(&v, "web form via our relay"), "{:?} {:?}: {:?}", v.action, v.decided_by, symbols(&v));
    let v = judge(&c, &relayed, &envelope("198.18.0.9", "web01.hoster.test", "webform@acme.test")).await;
    assert!(!allowed_by(&v, "web form via our relay"), "a spoofer's copy of the line: {:?}", v.decided_by);
    // Through two of our relays, and as a milter sees it (the MTA's own line about the relay on top).
    let two = format!(
        "{}{}{}{raw}",
        line("edge.acme.test", "10.1.0.5", "mx.acme.test"),
        line("inner.acme.test", "10.1.0.7", "edge.acme.test"),
        line("web01.hoster.test", "203.0.113.50", "inner.acme.test")
    );
    assert_eq!(rules_behind_relays(&c, &two, &via_relay).await, all);

    // The same lines, sent by the spoofer straight to us: claims.
    let spoofer = envelope("198.18.0.9", "web01.hoster.test", "webform@acme.test");
    assert!(rules_behind_relays(&c, &relayed, &spoofer).await.is_empty());
    assert!(rules_behind_relays(&c, &two, &spoofer).await.is_empty());
    // Through our relay, but the relay says the spoofer handed it the message; the lines below, which name
    // our relay network and the web server, are the spoofer's.
    let below = format!(
        "{}{}{}{raw}",
        line("host9.spoofer.test", "198.18.0.9", "edge.acme.test"),
        line("inner.acme.test", "10.1.0.7", "host9.spoofer.test"),
        line("web01.hoster.test", "203.0.113.50", "inner.acme.test")
    );
    assert!(rules_behind_relays(&c, &below, &via_relay).await.is_empty());
    // A relay line that records "unknown" for its client's name vouches for the address only.
    let unverified = format!(
        "Received: from web01.hoster.test (unknown [203.0.113.50]) by edge.acme.test; Tue, 1 Dec 2026 10:00:01 +0000\r\n{raw}"
    );
    assert_eq!(rules_behind_relays(&c, &unverified, &via_relay).await, ["web server address"]);
}

#[test]
fn trusted_relay_networks_are_checked_when_the_configuration_is_read() {
    let ok = EngineConfig::from_toml("[organisation]\ntrusted_relay_networks = [\"10.1.0.0/16\", \"2001:db8::1\"]\n");
    assert_eq!(ok.unwrap().organisation.trusted_relays().unwrap().len(), 2);
    for (bad, says) in [
        ("[\"10.1.0.0/16\", \"10.1.0.0/33\"]", "trusted_relay_networks[1]"),
        ("[\"relay.acme.test\"]", "trusted_relay_networks[0]"),
        ("[\"0.0.0.0/0\"]", "covers every address"),
    ] {
        let e = EngineConfig::from_toml(&format!("[organisation]\ntrusted_relay_networks = {bad}\n")).unwrap_err();
        assert!(e.contains(says) && e.contains("line 2"), "{bad}: {e}");
    }
    // Built in code, the same check.
    let org = OrganisationConfig { trusted_relay_networks: vec!["10.1.0.0/x".into()], ..OrganisationConfig::default() };
    assert!(TrustBoundary::new(&org).unwrap_err().contains("trusted_relay_networks[0]"));
}
