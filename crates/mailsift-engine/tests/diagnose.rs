//! Diagnosis scenarios: one per case of issue 9. Each is a real message judged by the real engine (with
//! sender evidence from a real DNS server on loopback for the cases where the sender's side matters);
//! the test checks the category and cause, the facts in the wording, and that the first proposed fix,
//! once in place, lets the message through while a spoofed (or genuinely bad) variant is still caught.

use mailsift_engine::config::DnsConfig;
use mailsift_engine::diagnose::{self, Category, Cause, Change, Diagnosis, Observed, PastMessage, Source, Subject};
use mailsift_engine::policy::{Policy, PolicyConfig};
use mailsift_engine::{Action, Engine, EngineConfig, Envelope, Evidence, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::auth::TestKey;
use mailsift_testkit::dns::{TestDns, Zone};

const ORG: &str = r#"
[organisation]
domains = ["ourdomain.example"]
[[organisation.protected]]
domain = "ourdomain.example"
sending_servers = ["192.0.2.0/24"]
"#;

/// Our own domain's DNS: SPF for our servers, a DMARC policy that only monitors.
fn our_zone() -> Zone {
    let mut z = Zone::new();
    z.txt("ourdomain.example", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("_dmarc.ourdomain.example", "v=DMARC1; p=none")
        .ptr("192.0.2.10", "mail.ourdomain.example")
        .a("mail.ourdomain.example", "192.0.2.10");
    z
}

fn engine_with(extra: &str, dns: Option<&TestDns>) -> Engine {
    let mut config = EngineConfig::from_toml(&format!("{ORG}\n{extra}")).unwrap_or_else(|e| panic!("{e}"));
    if let Some(dns) = dns {
        config.dns = DnsConfig {
            enabled: true,
            nameservers: vec![dns.addr().to_string()],
            timeout_ms: 400,
            deadline_ms: 1500,
            ..DnsConfig::default()
        };
    }
    Engine::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn message(from: &str, subject: &str, extra: &[&str], body: &str) -> String {
    let mut m = String::new();
    for h in extra {
        m.push_str(h);
        m.push_str("\r\n");
    }
    m.push_str(&format!(
        "From: {from}\r\nTo: Staff <staff@ourdomain.example>\r\nSubject: {subject}\r\n\
         Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <{}.{}@diagnose.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len(),
        body.len()
    ));
    m
}

fn envelope(ip: &str, helo: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some(helo.into()),
        mail_from: Some(mail_from.into()),
        rcpt_to: vec!["staff@ourdomain.example".into()],
        ..Envelope::default()
    }
}

/// One message through the real pipeline: sender evidence (when the engine has DNS), the checks, the
/// policy, then the diagnosis of that verdict.
struct Case {
    raw: String,
    env: Envelope,
    evidence: Evidence,
    verdict: Verdict,
    diagnosis: Diagnosis,
}

async fn evidence(engine: &Engine, raw: &str, env: &Envelope) -> Evidence {
    if !engine.config().dns.enabled {
        return Evidence::default();
    }
    let g = SenderGatherer::new(&engine.config().dns).unwrap();
    Evidence::from_sender(g.gather(raw.as_bytes(), env).await)
}

async fn run(engine: &Engine, policy: &PolicyConfig, raw: &str, env: Envelope) -> Case {
    let evidence = evidence(engine, raw, &env).await;
    let msg = engine.parse(raw.as_bytes());
    let verdict = engine.judge_with_policy(&msg, &env, &evidence, &Policy::new(policy).unwrap());
    let observed = Observed::from_verdict(&verdict);
    let subject = Subject {
        message: &msg,
        envelope: &env,
        evidence: &evidence,
        observed: &observed,
        source: Source::File("message.eml".into()),
    };
    let diagnosis = diagnose::diagnose(engine, policy, &subject);
    Case { raw: raw.to_string(), env, evidence, verdict, diagnosis }
}

/// Judges a message (its own evidence gathered) as if `change` had been made.
async fn with_fix(engine: &Engine, policy: &PolicyConfig, change: &Change, raw: &str, env: &Envelope) -> Verdict {
    let ev = evidence(engine, raw, env).await;
    let msg = engine.parse(raw.as_bytes());
    diagnose::try_fix(engine, policy, change, &msg, env, &ev).unwrap_or_else(|e| panic!("{e}"))
}

fn show(v: &Verdict) -> String {
    let syms: Vec<String> = v.symbols.iter().map(|s| format!("{}({:.1}; {})", s.name, s.score, s.detail)).collect();
    format!("{:?} score {} by {:?}: {}", v.action, v.score, v.decided_by, syms.join(", "))
}

fn text(d: &Diagnosis) -> String {
    diagnose::render(d)
}

fn assert_mentions(d: &Diagnosis, facts: &[&str]) {
    let t = text(d);
    for f in facts {
        assert!(t.contains(f), "the diagnosis does not mention {f:?}:\n{t}");
    }
}

// ----- Our own domain sent from elsewhere -----

const WEB_FORM_RECEIVED: &str = "Received: from web01.hosting.example (web01.hosting.example [203.0.113.5]) by mx.ourdomain.example with ESMTP id 1; Mon, 6 Jan 2025 10:00:01 +0000";

fn web_form_zone() -> Zone {
    let mut z = our_zone();
    z.ptr("203.0.113.5", "web01.hosting.example").a("web01.hosting.example", "203.0.113.5");
    z
}

#[tokio::test]
async fn a_web_form_sending_as_our_domain_gets_its_server_added_or_a_rule_on_sender_and_host() {
    let dns = TestDns::start(web_form_zone());
    let e = engine_with("", Some(&dns));
    let policy = PolicyConfig::default();
    let raw = message(
        "Contact form <forms@ourdomain.example>",
        "New enquiry from the web site",
        &[WEB_FORM_RECEIVED],
        "Name: Carol\r\nMessage: Please call me back about the quote.",
    );
    let c = run(&e, &policy, &raw, envelope("203.0.113.5", "web01.hosting.example", "forms@ourdomain.example")).await;
    assert!(c.verdict.action.is_spam(), "{}", show(&c.verdict));
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Policy, Cause::WebApplication), "{}", text(d));
    assert_mentions(
        d,
        &["forms@ourdomain.example", "203.0.113.5", "web01.hosting.example", "ourdomain.example", "SPOOF_OWN_DOMAIN"],
    );
    // Our own SPF record does not list the server either: our configuration, with the DNS change named.
    assert_mentions(
        d,
        &[
            "your SPF record for ourdomain.example does not list 203.0.113.5",
            "add ip4:203.0.113.5 to the SPF record of ourdomain.example",
        ],
    );

    // Narrowest first. Fix 3: the server's address joins the domain's sending servers (every address of
    // ours from it).
    let fix = &d.fixes[2];
    assert_eq!(
        fix.change,
        Change::AddSendingServer { domain: "ourdomain.example".into(), server: "203.0.113.5".into() }
    );
    assert_eq!(fix.command, "mailsift domains set ourdomain.example --sending-server 203.0.113.5");
    let v = with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await;
    assert_eq!(v.action, Action::Deliver, "{}", show(&v));
    assert!(!v.symbols.iter().any(|s| s.name == "SPOOF_OWN_DOMAIN"));
    // A forger sending the same form from elsewhere is still caught.
    let forged = raw.replace(
        "web01.hosting.example (web01.hosting.example [203.0.113.5])",
        "web01.hosting.example (mail.elsewhere.example [198.51.100.9])",
    );
    let v = with_fix(
        &e,
        &policy,
        &fix.change,
        &forged,
        &envelope("198.51.100.9", "web01.hosting.example", "forms@ourdomain.example"),
    )
    .await;
    assert!(v.action.is_spam() && v.symbols.iter().any(|s| s.name == "SPOOF_OWN_DOMAIN"), "{}", show(&v));

    // Fix 1: the sender address, only from that server's address: a fact of the connection, never a
    // Received line (a forger writes those).
    let fix = &d.fixes[0];
    let Change::AddRule { rule } = &fix.change else { panic!("{fix:?}") };
    assert!(fix.command.starts_with("mailsift rules add --at 1 --name "), "{}", fix.command);
    assert!(fix.command.contains("--if-from forms@ourdomain.example"), "{}", fix.command);
    assert!(fix.command.contains("--if client_ip:is:203.0.113.5"), "{}", fix.command);
    assert!(!fix.command.contains("Received"), "{}", fix.command);
    assert_eq!(rule.conditions.len(), 2);
    assert!(fix.risk.contains("other users of that host"), "{}", fix.risk);
    let v = with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await;
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));
    let other_host = raw.replace(
        "web01.hosting.example (web01.hosting.example [203.0.113.5])",
        "mail.elsewhere.example (mail.elsewhere.example [198.51.100.9])",
    );
    // Even with the web server's own Received line kept, from elsewhere it is caught.
    for forged in [&other_host, &raw] {
        let v = with_fix(
            &e,
            &policy,
            &fix.change,
            forged,
            &envelope("198.51.100.9", "web01.hosting.example", "forms@ourdomain.example"),
        )
        .await;
        assert!(v.action.is_spam(), "{}", show(&v));
    }
    let other_sender = raw.replace("forms@", "ceo@");
    let v = with_fix(
        &e,
        &policy,
        &fix.change,
        &other_sender,
        &envelope("203.0.113.5", "web01.hosting.example", "ceo@ourdomain.example"),
    )
    .await;
    assert!(v.action.is_spam(), "another address of ours through the same host: {}", show(&v));
    // Fix 2, for when its address changes: the verified host name (PTR confirmed), not a header.
    let fix = &d.fixes[1];
    assert!(fix.command.contains("--if client_ptr:is:web01.hosting.example"), "{}", fix.command);
    let v = with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await;
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));

    // Replayed over past messages: the same form's earlier mail would have been let through, a forgery
    // from elsewhere not.
    let past = vec![
        past_row("R1", "203.0.113.5", "forms@ourdomain.example", "tag", 8.3, &[("SPOOF_OWN_DOMAIN", 8.0)]),
        past_row("R2", "198.51.100.9", "forms@ourdomain.example", "tag", 11.5, &[("SPOOF_OWN_DOMAIN", 8.0)]),
        past_row("R3", "192.0.2.10", "dana@ourdomain.example", "deliver", 0.0, &[]),
    ];
    let r = diagnose::replay(&e, &d.fixes[2].change, &past);
    assert_eq!((r.examined, r.let_through), (3, 1), "{r:?}");
    assert_eq!(r.were_spam.iter().map(|m| m.reference_id.as_str()).collect::<Vec<_>>(), ["R1"]);
    // The rule is on the From: address and the client IP, both of which the log keeps: decided on every
    // row, with or without a quarantined copy.
    let mut past = past;
    past[0].raw = Some(raw.clone().into_bytes());
    past.push(past_row("R4", "203.0.113.5", "forms@ourdomain.example", "tag", 8.3, &[("SPOOF_OWN_DOMAIN", 8.0)]));
    let r = diagnose::replay(&e, &d.fixes[0].change, &past);
    assert_eq!((r.examined, r.let_through, r.undecidable), (4, 2, 0), "{r:?}");
    assert_eq!(r.were_spam.iter().map(|m| m.reference_id.as_str()).collect::<Vec<_>>(), ["R1", "R4"]);
}

fn past_row(id: &str, ip: &str, from: &str, action: &str, score: f64, symbols: &[(&str, f64)]) -> PastMessage {
    PastMessage {
        reference_id: id.into(),
        client_ip: Some(ip.parse().unwrap()),
        mail_from: Some(from.into()),
        recipients: vec!["staff@ourdomain.example".into()],
        from_header: Some(from.into()),
        subject: Some("New enquiry from the web site".into()),
        score: Some(score),
        symbols: symbols.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        action: action.into(),
        ..PastMessage::default()
    }
}

#[tokio::test]
async fn a_marketing_service_sending_as_us_gets_a_rule_on_the_exact_address_its_authentication_and_its_network() {
    let mut z = our_zone();
    z.txt("mktsvc.example", "v=spf1 ip4:198.51.100.0/24 -all")
        .ptr("198.51.100.77", "mta17.mktsvc.example")
        .a("mta17.mktsvc.example", "198.51.100.77");
    let dns = TestDns::start(z);
    let e = engine_with("", Some(&dns));
    let policy = PolicyConfig::default();
    let headers = [
        "Received: from mta17.mktsvc.example (mta17.mktsvc.example [198.51.100.77]) by mx.ourdomain.example; Mon, 6 Jan 2025 10:00:01 +0000",
        "X-Mktsvc-Campaign: 4411",
        "List-Unsubscribe: <https://mktsvc.example/u/4411>",
    ];
    let raw = message("Our Company News <news@ourdomain.example>", "January news", &headers, "Our news this month.");
    let env = envelope("198.51.100.77", "mta17.mktsvc.example", "bounce-4411@mktsvc.example");
    let c = run(&e, &policy, &raw, env.clone()).await;
    assert!(c.verdict.action.is_spam(), "{}", show(&c.verdict));
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Policy, Cause::SendingService), "{}", text(d));
    assert_mentions(
        d,
        &["mktsvc.example", "news@ourdomain.example", "bounce-4411@mktsvc.example", "X-Mktsvc-Campaign"],
    );
    let fix = &d.fixes[0];
    let Change::AddRule { rule } = &fix.change else { panic!("{fix:?}") };
    let fields: Vec<&str> = rule.conditions.iter().map(|c| c.field.as_str()).collect();
    // The exact address seen, what authenticated the service, its network; its header mark only on top.
    assert_eq!(fields, ["from", "auth_domain", "client_ip", "header"], "{rule:?}");
    assert!(fix.command.contains("--if-from news@ourdomain.example"), "{}", fix.command);
    assert!(fix.command.contains("--if-header X-Mktsvc-Campaign:exists"), "{}", fix.command);
    assert!(fix.command.contains("--if auth_domain:is:mktsvc.example"), "{}", fix.command);
    assert!(fix.command.contains("--if client_ip:in_cidr:198.51.100.0/24"), "{}", fix.command);
    assert!(fix.risk.contains("another customer of mktsvc.example could still send as news@ourdomain.example"));
    let v = with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await;
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));

    // A forger copies the service's header and bounce address, but sends from its own server: SPF fails.
    let forged = raw.replace(
        "mta17.mktsvc.example (mta17.mktsvc.example [198.51.100.77])",
        "mta17.mktsvc.example (host.evil.example [203.0.113.66])",
    );
    let v = with_fix(
        &e,
        &policy,
        &fix.change,
        &forged,
        &envelope("203.0.113.66", "mta17.mktsvc.example", "bounce-4411@mktsvc.example"),
    )
    .await;
    assert!(v.action.is_spam() && v.scl != -1, "{}", show(&v));
    // The same service carrying another company's newsletter in our name is not covered either way:
    // the rule is about our domain, and someone else's mail is judged as always.
    let theirs = message("Deals <deals@other.example>", "January news", &headers, "Our news this month.");
    let v = with_fix(&e, &policy, &fix.change, &theirs, &env).await;
    assert_ne!(v.scl, -1, "{}", show(&v));
}

#[tokio::test]
async fn our_own_unsigned_mail_back_through_a_signature_service_gets_a_rule_on_the_address_and_the_services_server() {
    let mut z = our_zone();
    z.ptr("203.0.113.20", "relay2.eu.sigstamp.example").a("relay2.eu.sigstamp.example", "203.0.113.20");
    let dns = TestDns::start(z);
    let e = engine_with("", Some(&dns));
    let policy = PolicyConfig::default();
    let raw = message(
        "Dana <dana@ourdomain.example>",
        "Re: contract",
        &[
            "Received: from relay2.eu.sigstamp.example (relay2.eu.sigstamp.example [203.0.113.20]) by mx.ourdomain.example; Mon, 6 Jan 2025 10:00:03 +0000",
            "X-SigStamp-Processed: 1; v=3",
            "Received: from mail.ourdomain.example (mail.ourdomain.example [192.0.2.10]) by relay2.eu.sigstamp.example; Mon, 6 Jan 2025 10:00:02 +0000",
        ],
        "Please find the signed contract attached.\r\n\r\nDana\r\n--\r\nOurdomain Ltd",
    );
    let c =
        run(&e, &policy, &raw, envelope("203.0.113.20", "relay2.eu.sigstamp.example", "dana@ourdomain.example")).await;
    assert!(c.verdict.action.is_spam(), "{}", show(&c.verdict));
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Policy, Cause::OwnMailThroughRelay), "{}", text(d));
    // Only the Received lines tell it, and a forger writes those: said, and no fix rests on them.
    assert_mentions(d, &["sigstamp.example", "203.0.113.20", "Only the Received lines say", "Sign your outgoing mail"]);
    let fix = &d.fixes[0];
    assert!(fix.command.contains("--if-from dana@ourdomain.example"), "{}", fix.command);
    assert!(fix.command.contains("--if client_ip:is:203.0.113.20"), "{}", fix.command);
    assert!(!fix.command.contains("--if-header"), "{}", fix.command);
    assert!(d.fixes[1].command.contains("--if client_ptr:ends_with:.sigstamp.example"), "{}", d.fixes[1].command);
    let v = with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await;
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));

    // A forger who copies the service's header, and even claims its name in HELO, but cannot route
    // through it: the name the receiving server wrote is the forger's own.
    let forged = message(
        "Dana <dana@ourdomain.example>",
        "Re: contract",
        &[
            "Received: from relay2.eu.sigstamp.example (mail.evil.example [198.51.100.66]) by mx.ourdomain.example; Mon, 6 Jan 2025 10:00:03 +0000",
            "X-SigStamp-Processed: 1; v=3",
        ],
        "Please pay the attached invoice today.",
    );
    let v = with_fix(
        &e,
        &policy,
        &fix.change,
        &forged,
        &envelope("198.51.100.66", "relay2.eu.sigstamp.example", "dana@ourdomain.example"),
    )
    .await;
    assert!(v.action.is_spam() && v.scl != -1, "{}", show(&v));
}

// ----- The sender's side -----

#[tokio::test]
async fn an_outside_sender_with_broken_dns_and_signatures_is_told_what_to_fix_and_allowed_narrowly() {
    let key = TestKey::new("partner.example", "s2025");
    let mut z = our_zone();
    // No PTR for 198.51.100.7; an SPF record that includes a name that does not exist (permerror); a
    // DMARC policy that asks for quarantine.
    z.txt("partner.example", "v=spf1 include:spf.gone.partner.example ip4:198.51.100.7 -all")
        .txt("_dmarc.partner.example", "v=DMARC1; p=quarantine");
    key.publish(&mut z);
    let dns = TestDns::start(z);
    let e = engine_with("", Some(&dns));
    let policy = PolicyConfig::default();
    let signed = key.sign(&message("Alice <alice@partner.example>", "Order 7781", &[], "Please confirm the order."));
    // Their outbound gateway adds a disclaimer after signing.
    let raw = format!("{signed}--\r\nThis e-mail is confidential.\r\n");
    let env = envelope("198.51.100.7", "partner-gw", "alice@partner.example");
    let c = run(&e, &policy, &raw, env.clone()).await;
    assert!(c.verdict.action.is_spam(), "{}", show(&c.verdict));
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Sender, Cause::SenderPractices), "{}", text(d));
    assert_mentions(
        d,
        &[
            "Their PTR record is missing for 198.51.100.7",
            "partner.example (s=s2025)",
            "sign after the footer",
            "\"partner-gw\"",
            "SPF record for partner.example is broken",
        ],
    );
    let fix = &d.fixes[0];
    // A rule exact on From:, envelope sender and recipient, tied to the signed headers of partner.example
    // (its footer broke the body hash) and its network; never an allowed-senders entry, which matches the
    // envelope sender or the From: and so lets the same server send in another name.
    let Change::AddRule { rule } = &fix.change else { panic!("{fix:?}") };
    let conds: Vec<String> = rule
        .conditions
        .iter()
        .map(|c| format!("{} {} {}", c.field.as_str(), c.op.as_str(), c.value.as_ref().unwrap().texts().join(",")))
        .collect();
    assert_eq!(
        conds,
        [
            "from is alice@partner.example",
            "envelope_from is alice@partner.example",
            "recipient is staff@ourdomain.example",
            "dkim_headers_domain is partner.example",
            "client_ip in_cidr 198.51.100.0/24"
        ]
    );
    assert!(fix.command.starts_with("mailsift rules add --at 1 --name "), "{}", fix.command);
    assert!(diagnose::forgery_warning_of(&fix.change).is_none());
    let v = with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await;
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));
    // The same From from somewhere else is still judged, and caught.
    let forged = message("Alice <alice@partner.example>", "Order 7781", &[], "Please pay to the new account.");
    let v =
        with_fix(&e, &policy, &fix.change, &forged, &envelope("203.0.113.66", "partner-gw", "alice@partner.example"))
            .await;
    assert!(v.action.is_spam() && v.scl != -1, "{}", show(&v));
    // Another recipient is not covered.
    let mut other = env.clone();
    other.rcpt_to = vec!["ceo@ourdomain.example".into()];
    assert_ne!(with_fix(&e, &policy, &fix.change, &c.raw, &other).await.scl, -1);
    // Their own server, their envelope sender, another From: is not covered either.
    let other_from = c.raw.replace("From: Alice <alice@partner.example>", "From: CEO <ceo@partner.example>");
    assert_ne!(with_fix(&e, &policy, &fix.change, &other_from, &env).await.scl, -1);
}

#[tokio::test]
async fn a_sender_that_authenticates_is_allowed_only_when_it_authenticates() {
    let mut z = our_zone();
    z.txt("partner.example", "v=spf1 ip4:198.51.100.7 -all");
    let dns = TestDns::start(z);
    // A strict domain: its own tag threshold is low, so a missing PTR and a bad HELO are enough.
    let e = engine_with("[thresholds]\ntag = 2.5\nquarantine = 10.0\nreject = 15.0\n", Some(&dns));
    let policy = PolicyConfig::default();
    let raw = message("Alice <alice@partner.example>", "Order 7781", &[], "Please confirm the order.");
    let c = run(&e, &policy, &raw, envelope("198.51.100.7", "partner-gw", "alice@partner.example")).await;
    assert!(c.verdict.action.is_spam(), "{}", show(&c.verdict));
    assert_eq!(c.diagnosis.category, Category::Sender, "{}", text(&c.diagnosis));
    let fix = &c.diagnosis.fixes[0];
    // SPF passes for it: the rule requires it, with its network.
    assert!(fix.command.contains("--if auth_domain:is:partner.example"), "{}", fix.command);
    assert!(fix.command.contains("--if client_ip:in_cidr:198.51.100.0/24"), "{}", fix.command);
    assert!(fix.command.contains("--if-from alice@partner.example"), "{}", fix.command);
    assert_eq!(with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await.scl, -1);
    let v = with_fix(&e, &policy, &fix.change, &raw, &envelope("203.0.113.66", "partner-gw", "alice@partner.example"))
        .await;
    assert!(v.action.is_spam() && v.scl != -1, "SPF fails from elsewhere: {}", show(&v));
}

// ----- Our own policy -----

#[tokio::test]
async fn a_filter_rule_that_caught_a_good_sender_gets_an_exception_for_that_sender() {
    let e = engine_with("", None);
    let policy: PolicyConfig = toml::from_str(
        r#"
[[rules]]
name = "invoices"
conditions = [{ field = "subject", op = "contains", value = "invoice" }]
actions = [{ action = "quarantine" }]
"#,
    )
    .unwrap();
    let raw =
        message("Billing <billing@vendor.example>", "Your invoice 2291", &[], "The invoice for December is attached.");
    let c = run(&e, &policy, &raw, envelope("198.51.100.5", "mail.vendor.example", "billing@vendor.example")).await;
    assert_eq!(c.verdict.action, Action::Quarantine);
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Policy, Cause::FilterRule), "{}", text(d));
    assert_mentions(d, &["\"invoices\"", "subject"]);
    let fix = &d.fixes[0];
    assert!(fix.command.starts_with("mailsift rules replace invoices - <<'EOF'"), "{}", fix.command);
    assert_eq!(with_fix(&e, &policy, &fix.change, &c.raw, &c.env).await.action, Action::Deliver);
    let other = raw.replace("billing@vendor.example", "billing@other.example");
    let v = with_fix(
        &e,
        &policy,
        &fix.change,
        &other,
        &envelope("198.51.100.5", "mail.other.example", "billing@other.example"),
    )
    .await;
    assert_eq!(v.action, Action::Quarantine, "the rule still holds for everyone else: {}", show(&v));
}

#[tokio::test]
async fn a_blocked_sender_entry_is_named_with_its_id() {
    let e = engine_with("", None);
    let policy: PolicyConfig = toml::from_str(
        "[[block]]\nid = \"17\"\nsender = \"vendor.example\"\nrecipient = \"staff@ourdomain.example\"\n",
    )
    .unwrap();
    let raw = message("Billing <billing@vendor.example>", "Statement", &[], "Your statement.");
    let c = run(&e, &policy, &raw, envelope("198.51.100.5", "mail.vendor.example", "billing@vendor.example")).await;
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Policy, Cause::BlockedSender), "{}", text(d));
    assert_mentions(d, &["vendor.example", "entry 17"]);
    assert_eq!(d.fixes[0].command, "mailsift lists rm 17");
    assert_eq!(with_fix(&e, &policy, &d.fixes[0].change, &c.raw, &c.env).await.action, Action::Deliver);
}

#[tokio::test]
async fn an_asf_option_that_marks_a_newsletter_high_confidence_spam_is_put_in_test_mode() {
    let e = engine_with("[asf]\nframe_or_iframe_tags = \"on\"\n", None);
    let policy = PolicyConfig::default();
    let raw = "From: Museum <news@museum.example>\r\nTo: staff@ourdomain.example\r\nSubject: Exhibition opening\r\n\
        Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <expo@museum.example>\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Our new exhibition opens on Friday.</p>\
        <iframe src=\"https://museum.example/map\"></iframe></body></html>\r\n";
    let c = run(&e, &policy, raw, envelope("198.51.100.5", "mail.museum.example", "news@museum.example")).await;
    assert!(c.verdict.action.is_spam(), "{}", show(&c.verdict));
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Policy, Cause::AsfOption), "{}", text(d));
    assert_mentions(d, &["frame_or_iframe_tags", "ASF_FRAME_IFRAME", "high-confidence"]);
    // Narrowest first: this sender, to this recipient, from its server (DNS is off: nothing else proves
    // it); then the option in test mode for the whole domain.
    assert_eq!(
        d.fixes[0].command,
        "mailsift rules add --at 1 --name 'news@museum.example to staff@ourdomain.example' --if-from news@museum.example \
         --if-sender news@museum.example --if recipient:is:staff@ourdomain.example --if client_ip:is:198.51.100.5 \
         --then allow --comment 'diagnosis ".to_string()
            + c.verdict.id.as_str()
            + ": frame_or_iframe_tags caught a good message of this sender'"
    );
    let v = with_fix(&e, &policy, &d.fixes[0].change, &c.raw, &c.env).await;
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));
    let elsewhere = envelope("203.0.113.66", "mail.museum.example", "news@museum.example");
    assert!(with_fix(&e, &policy, &d.fixes[0].change, raw, &elsewhere).await.action.is_spam());
    let other_from = raw.replace("news@museum.example>", "ceo@museum.example>");
    assert!(with_fix(&e, &policy, &d.fixes[0].change, &other_from, &c.env).await.action.is_spam());
    // Test mode for the whole domain lets this sender's forgeries through too: advice with its command, not a
    // fix, since the rule holds. Applied, it does what the advice says.
    assert_eq!(d.fixes.len(), 1, "{}", text(d));
    assert_mentions(d, &["mailsift domains set ourdomain.example --asf frame_or_iframe_tags=test", "domain-wide"]);
    let test_mode = Change::SetAsf {
        domain: "ourdomain.example".into(),
        option: "frame_or_iframe_tags".into(),
        mode: mailsift_engine::config::AsfMode::Test,
    };
    let v = with_fix(&e, &policy, &test_mode, &c.raw, &c.env).await;
    assert_eq!(v.action, Action::Deliver, "{}", show(&v));
    assert!(v.symbols.iter().any(|s| s.name == "ASF_FRAME_IFRAME" && s.asf_mode == Some("test")), "still reported");
}

// ----- The content -----

fn corpus_message(i: usize, spam: bool) -> String {
    let (subject, body) = if spam {
        (
            format!("Cheap meds winner {i}"),
            format!("Winner! Claim your prize now. Cheap pills, viagra discount, casino bonus, crypto profit {i}. Click here to unsubscribe never."),
        )
    } else {
        (
            format!("Minutes of meeting {i}"),
            format!("Hello team, the minutes of the project meeting {i} are below. Action items: review the schedule, update the budget spreadsheet, agenda for next week."),
        )
    };
    message(if spam { "Promo <promo@bulk.example>" } else { "Colleague <pat@partner.example>" }, &subject, &[], &body)
}

#[tokio::test]
async fn a_content_false_positive_is_reported_and_scores_as_ham_after_retraining() {
    let e = engine_with("[classifier]\nmin_ham = 20\nmin_spam = 20\n", None);
    let mut model = mailsift_engine::classify::Model::default();
    for i in 0..60 {
        for spam in [true, false] {
            let raw = corpus_message(i, spam);
            let f = mailsift_engine::classify::features(&e.parse(raw.as_bytes()));
            let side = if spam { mailsift_engine::classify::Side::Spam } else { mailsift_engine::classify::Side::Ham };
            model.learn(&f, side, None);
        }
    }
    let e = e.with_model(std::sync::Arc::new(std::sync::RwLock::new(model)));
    let policy = PolicyConfig::default();
    // A colleague's genuine note about the office casino night prize draw: spammy words, good mail.
    let raw = message(
        "Colleague <pat@partner.example>",
        "Casino night: prize winner",
        &[],
        "Winner! Claim your prize now: casino bonus night, viagra discount and crypto profit jokes included (click here to unsubscribe never). \
         Cheap pills discount for Sam from accounting, \
         the raffle trophy goes to Priya; collect the hamper at reception on Friday.",
    );
    let c = run(&e, &policy, &raw, envelope("198.51.100.5", "mail.partner.example", "pat@partner.example")).await;
    assert!(c.verdict.action.is_spam(), "{}", show(&c.verdict));
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Content, Cause::ContentScore), "{}", text(d));
    assert_mentions(d, &["statistical classifiers", "mailsift report --false-positive message.eml"]);
    assert_eq!(d.fixes[0].change, Change::Report { spam: false });
    let after = with_fix(&e, &policy, &d.fixes[0].change, &c.raw, &c.env).await;
    assert_eq!(after.action, Action::Deliver, "{}", show(&after));
    assert!(after.score < c.verdict.score);
    // Retraining a copy: the engine's own model is unchanged, and real spam is still caught after it.
    assert!(run(&e, &policy, &raw, c.env.clone()).await.verdict.action.is_spam());
    let spam = corpus_message(999, true);
    assert!(with_fix(&e, &policy, &d.fixes[0].change, &spam, &c.env).await.action.is_spam());
}

// ----- Spam that got through -----

#[tokio::test]
async fn a_missed_spam_says_what_evidence_was_missing_and_offers_a_report_and_a_block() {
    let e = engine_with("", None);
    let policy = PolicyConfig::default();
    let raw = message(
        "Lottery <claims@lotto.example>",
        "Claim your winnings",
        &[],
        "You have won. Reply with your bank details.",
    );
    let c = run(&e, &policy, &raw, envelope("203.0.113.99", "mx.lotto.example", "claims@lotto.example")).await;
    assert_eq!(c.verdict.action, Action::Deliver, "{}", show(&c.verdict));
    let d = &c.diagnosis;
    assert_eq!((d.category, d.cause), (Category::Missed, Cause::MissedSpam), "{}", text(d));
    assert_mentions(
        d,
        &[
            "DNS checks are off",
            "classifiers said nothing",
            "No DNS blocklists",
            "mailsift report --false-negative message.eml",
        ],
    );
    let block = d.fixes.iter().find(|f| matches!(f.change, Change::AddBlock { .. })).expect("a block");
    assert_eq!(block.command, "mailsift lists add block claims@lotto.example --recipient staff@ourdomain.example");
    assert_eq!(with_fix(&e, &policy, &block.change, &c.raw, &c.env).await.action, Action::Quarantine);
    let _ = &c.evidence;
}

#[test]
fn our_headers_carry_the_verdict_for_a_diagnosis_without_the_database() {
    let e = engine_with("", None);
    let raw = message("Contact form <forms@ourdomain.example>", "Enquiry", &[WEB_FORM_RECEIVED], "Call me.");
    let env = envelope("203.0.113.5", "web01.hosting.example", "forms@ourdomain.example");
    let v = e.scan(raw.as_bytes(), &env, &Evidence::default());
    let stamped = v.apply_headers(raw.as_bytes());
    let msg = e.parse(&stamped);
    let obs = Observed::from_headers(&msg).expect("our headers");
    assert_eq!((obs.action, obs.score, obs.reference.as_deref()), (v.action, v.score, Some(v.id.as_str())));
    assert!(obs.symbols.iter().any(|s| s.name == "SPOOF_OWN_DOMAIN" && s.score == 8.0));
    // The envelope from the trace headers, as `diagnose --from-trace` does.
    let mut env = Envelope::default();
    env.fill_from_trace(&msg);
    let subject = Subject {
        message: &msg,
        envelope: &env,
        evidence: &Evidence::default(),
        observed: &obs,
        source: Source::File("x.eml".into()),
    };
    let d = diagnose::diagnose(&e, &PolicyConfig::default(), &subject);
    assert_eq!(d.cause, Cause::WebApplication, "{}", text(&d));
    assert!(matches!(d.fixes[0].change, Change::AddRule { .. }), "narrowest first: {:?}", d.fixes[0]);
    assert_eq!(
        d.fixes.last().unwrap().change,
        Change::AddSendingServer { domain: "ourdomain.example".into(), server: "203.0.113.5".into() }
    );
    assert!(Observed::from_headers(&e.parse(raw.as_bytes())).is_none());
    // The diagnosis serialises for the web console and the API.
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["category"], "policy");
    assert_eq!(json["fixes"][0]["change"]["kind"], "add_rule");
    assert_eq!(json["fixes"][1]["change"]["kind"], "add_sending_server");
    assert!(json["fixes"][0]["risk"].as_str().is_some_and(|r| r.contains("203.0.113.5")), "{json}");
}
