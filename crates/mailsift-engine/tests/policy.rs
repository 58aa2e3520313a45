//! The policy stage through the engine: the filter rules administrators actually write, and the allowed and
//! blocked senders with their precedence and the spoofing guard. Each test is a real message with its
//! envelope, judged by an engine configured from TOML (the path a gateway without a database takes) or with
//! a policy compiled separately (the store's path), asserting the action, the SCL and what decided.

use mailsift_engine::evidence::{
    DkimFacts, DkimVerdict, DmarcFacts, DmarcPolicy, Outcome, PtrFacts, SenderFacts, SpfResult,
};
use mailsift_engine::policy::{Policy, PolicyConfig};
use mailsift_engine::verdict::PolicyMatch;
use mailsift_engine::{Action, Direction, Engine, EngineConfig, Envelope, Evidence, Verdict};

/// Our organisation: ourdomain.example, sent only from 192.0.2.0/24.
const ORG: &str = r#"
[organisation]
domains = ["ourdomain.example"]
[[organisation.protected]]
domain = "ourdomain.example"
sending_servers = ["192.0.2.0/24"]
"#;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn engine(policy: &str) -> Engine {
    let config = EngineConfig::from_toml(&format!("{ORG}\n{policy}")).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(config).unwrap_or_else(|e| panic!("{e}"))
}

/// A message with the given extra headers (Received lines first, as a real trace), From and Subject.
fn message(from: &str, subject: &str, extra: &[&str], body: &str) -> String {
    let mut m = String::new();
    for h in extra {
        m.push_str(h);
        m.push_str("\r\n");
    }
    m.push_str(&format!(
        "From: {from}\r\nTo: Staff <staff@ourdomain.example>\r\nSubject: {subject}\r\n\
         Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <{}.{}@policy.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len(),
        body.len()
    ));
    m
}

fn envelope(ip: &str, mail_from: &str, rcpt: &[&str]) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some("mail.sender.example".into()),
        mail_from: Some(mail_from.into()),
        rcpt_to: rcpt.iter().map(|r| r.to_string()).collect(),
        ..Envelope::default()
    }
}

fn scan(e: &Engine, raw: &str, env: &Envelope) -> Verdict {
    e.scan(raw.as_bytes(), env, &Evidence::default())
}

fn has(v: &Verdict, name: &str) -> bool {
    v.symbols.iter().any(|s| s.name == name)
}

fn detail<'v>(v: &'v Verdict, name: &str) -> &'v str {
    v.symbols.iter().find(|s| s.name == name).map(|s| s.detail.as_str()).unwrap_or("")
}

fn show(v: &Verdict) -> String {
    let syms: Vec<String> = v.symbols.iter().map(|s| format!("{}({:.1}; {})", s.name, s.score, s.detail)).collect();
    format!("{:?} scl {} score {} by {:?}: {}", v.action, v.scl, v.score, v.decided_by, syms.join(", "))
}

fn assert_allowed_by(v: &Verdict, rule: &str) {
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(v));
    assert_eq!(v.decided_by.as_deref(), Some(format!("rule {rule:?}").as_str()), "{}", show(v));
    assert!(detail(v, "POLICY_RULE").contains(rule), "{}", show(v));
    assert!(v.engines.contains(&"policy"));
}

fn assert_not_decided_by_policy(v: &Verdict) {
    assert_ne!(v.scl, -1, "{}", show(v));
    assert!(v.decided_by.is_none(), "{}", show(v));
}

// ----- The four cases of issue 6 -----

const WEB_FORMS: &str = r#"
[[policy.rules]]
name = "web forms"
comment = "the contact form on our web host sends as forms@"
conditions = [
  { field = "envelope_from", op = "is", value = "forms@ourdomain.example" },
  { field = "header", header = "Received", op = "contains", value = "web01.hosting.example" },
]
actions = [{ action = "allow" }]
"#;

#[test]
fn web_forms_from_our_web_host_are_allowed_and_the_same_form_from_elsewhere_is_not() {
    let e = engine(WEB_FORMS);
    let raw = message(
        "Contact form <forms@ourdomain.example>",
        "New enquiry from the web site",
        &["Received: from web01.hosting.example (web01.hosting.example [203.0.113.5]) by mx.ourdomain.example with ESMTP id 1; Mon, 6 Jan 2025 10:00:01 +0000"],
        "Name: Carol\r\nMessage: Please call me back about the quote.",
    );
    let env = envelope("203.0.113.5", "forms@ourdomain.example", &["staff@ourdomain.example"]);
    let v = scan(&e, &raw, &env);
    assert_allowed_by(&v, "web forms");
    // Allowed, but still scanned: the spoofing evidence is in the verdict for whoever reads it.
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    assert!(v.headers().iter().any(|(n, val)| n == "X-Mailsift-Rule" && val == "rule \"web forms\""));
    assert_eq!(v.policy_matches, vec![PolicyMatch::Rule { name: "web forms".into(), index: 0 }]);

    // The same form sent from some other host: the Received header names that host, not ours.
    let elsewhere = raw.replace(
        "web01.hosting.example (web01.hosting.example [203.0.113.5])",
        "mail.elsewhere.example (mail.elsewhere.example [198.51.100.9])",
    );
    let v = scan(&e, &elsewhere, &envelope("198.51.100.9", "forms@ourdomain.example", &["staff@ourdomain.example"]));
    assert_not_decided_by_policy(&v);
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action >= Action::Tag, "{}", show(&v));
    assert!(!has(&v, "POLICY_RULE"));

    // Our web host, but another envelope sender: not this rule's business either.
    let v = scan(
        &e,
        &raw.replace("forms@", "ceo@"),
        &envelope("203.0.113.5", "ceo@ourdomain.example", &["staff@ourdomain.example"]),
    );
    assert_not_decided_by_policy(&v);
    assert!(v.action >= Action::Tag, "{}", show(&v));
}

#[test]
fn a_marketing_service_sending_as_our_domain_is_allowed_by_its_received_header() {
    let e = engine(
        r#"
[[policy.rules]]
name = "newsletter via mktsvc"
conditions = [
  { field = "from_domain", op = "is", value = "ourdomain.example" },
  { field = "header", header = "Received", op = "matches", value = '^from mta\d+\.mktsvc\.example ' },
]
actions = [{ action = "allow" }]
"#,
    );
    let received = "Received: from mta17.mktsvc.example (mta17.mktsvc.example [198.51.100.77]) by mx.ourdomain.example; Mon, 6 Jan 2025 10:00:01 +0000";
    let raw = message("Our Company News <news@ourdomain.example>", "January news", &[received], "Our news this month.");
    let env = envelope("198.51.100.77", "bounce-123@mktsvc.example", &["staff@ourdomain.example"]);
    let v = scan(&e, &raw, &env);
    assert_allowed_by(&v, "newsletter via mktsvc");
    assert!(has(&v, "SPOOF_OWN_DOMAIN"));

    // The same service carrying someone else's newsletter: the rule is about our domain only.
    let other = message("Deals <deals@other.example>", "January news", &[received], "Our news this month.");
    let v = scan(&e, &other, &env);
    assert!(!has(&v, "POLICY_RULE") && v.scl != -1, "{}", show(&v));

    // Our domain from a host that only mentions the service name elsewhere in the line: the regex is anchored.
    let forged = raw.replace(
        "from mta17.mktsvc.example (mta17.mktsvc.example [198.51.100.77])",
        "from evil.example (helo=mta1.mktsvc.example [203.0.113.66])",
    );
    let v = scan(&e, &forged, &envelope("203.0.113.66", "x@evil.example", &["staff@ourdomain.example"]));
    assert_not_decided_by_policy(&v);
}

const SIGNATURE_SERVICE: &str = r#"
[[policy.rules]]
name = "signature service"
comment = "our outbound mail comes back in through the hosted signature service"
conditions = [
  { field = "from_domain", op = "is", value = "ourdomain.example" },
  { field = "header", header = "X-SigStamp-Processed", op = "exists" },
  { field = "header", header = "Received", op = "contains", value = ".sigstamp.example" },
]
actions = [{ action = "allow" }]
"#;

#[test]
fn our_mail_back_from_the_signature_service_is_allowed_despite_the_spoofing_check() {
    let e = engine(SIGNATURE_SERVICE);
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
    let env = envelope("203.0.113.20", "dana@ourdomain.example", &["partner@partner.example"]);
    let v = scan(&e, &raw, &env);
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "the spoofing check still fires and is shown: {}", show(&v));
    assert_allowed_by(&v, "signature service");

    // A forger who copies the service's header but cannot route through it.
    let forged = message(
        "Dana <dana@ourdomain.example>",
        "Re: contract",
        &[
            "Received: from mail.evil.example (mail.evil.example [198.51.100.66]) by mx.ourdomain.example; Mon, 6 Jan 2025 10:00:03 +0000",
            "X-SigStamp-Processed: 1; v=3",
        ],
        "Please pay the attached invoice today.",
    );
    let v = scan(&e, &forged, &envelope("198.51.100.66", "dana@ourdomain.example", &["staff@ourdomain.example"]));
    assert_not_decided_by_policy(&v);
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action >= Action::Tag, "{}", show(&v));
}

#[test]
fn open_sesame_allows_outbound_mail_with_the_signature_phrase_and_never_inbound() {
    let e = engine(
        r#"
[[policy.rules]]
name = "open sesame"
direction = "outbound"
comment = "anything carrying our signature's catch phrase goes out"
conditions = [{ field = "body", op = "contains", value = "Ourdomain: widgets that work" }]
actions = [{ action = "allow" }]
"#,
    );
    // A message every filter calls spam (GTUBE), signed with the company's catch phrase.
    let body = format!("Test of the filter: {GTUBE}\r\n\r\n--\r\nJo Bloggs\r\nOURDOMAIN: Widgets That Work");
    let raw = message("Jo <jo@ourdomain.example>", "test", &[], &body);
    let mut out = envelope("192.0.2.10", "jo@ourdomain.example", &["someone@customer.example"]);
    out.direction = Direction::Outbound;
    out.authenticated_user = Some("jo".into());
    let v = scan(&e, &raw, &out);
    assert!(has(&v, "GTUBE"));
    assert_allowed_by(&v, "open sesame");

    // The same message arriving from outside: the rule is outbound only.
    let v = scan(&e, &raw, &envelope("198.51.100.5", "jo@ourdomain.example", &["staff@ourdomain.example"]));
    assert_not_decided_by_policy(&v);
    assert_eq!(v.action, Action::Reject, "{}", show(&v));

    // Outbound without the phrase: filtered as usual.
    let plain = message("Jo <jo@ourdomain.example>", "test", &[], &format!("Test: {GTUBE}"));
    let v = scan(&e, &plain, &out);
    assert_eq!(v.action, Action::Reject, "{}", show(&v));
}

// ----- Actions and conditions -----

#[test]
fn reject_with_a_message_for_executables_in_invoices() {
    let e = engine(
        r#"
[[policy.rules]]
name = "no exe invoices"
conditions = [
  { field = "subject", op = "contains", value = "invoice" },
  { field = "attachment_type", op = "is", value = ["exe", "script"] },
]
actions = [{ action = "reject", message = "Executable attachments are not accepted here" }, { action = "add_header", name = "X-Policy", value = "exe" }]
"#,
    );
    let raw = "From: Billing <billing@vendor.example>\r\nTo: staff@ourdomain.example\r\nSubject: Your Invoice 2291\r\n\
        Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <inv2291@vendor.example>\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
        --b1\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA==\r\n--b1--\r\n";
    let env = envelope("198.51.100.5", "billing@vendor.example", &["staff@ourdomain.example"]);
    let v = scan(&e, raw, &env);
    assert_eq!(v.action, Action::Reject, "{}", show(&v));
    assert!(v.scl >= 8);
    assert_eq!(v.decided_by.as_deref(), Some("rule \"no exe invoices\""));
    assert_eq!(v.policy_effects.reject_message.as_deref(), Some("Executable attachments are not accepted here"));
    assert_eq!(v.policy_effects.add_headers[0].name, "X-Policy");
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["policy_effects"]["reject_message"], "Executable attachments are not accepted here");

    // The same invoice with a real PDF is not this rule's business.
    let pdf = raw.replace(
        "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA==",
        "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K",
    );
    let v = scan(&e, &pdf, &env);
    assert!(!has(&v, "POLICY_RULE") && v.policy_effects.is_empty(), "{}", show(&v));
}

#[test]
fn quarantine_by_attachment_name_and_by_size() {
    let e = engine(
        r#"
[[policy.rules]]
name = "disk images"
conditions = [{ field = "attachment_name", op = "ends_with", value = ".iso" }]
actions = [{ action = "quarantine" }]

[[policy.rules]]
name = "large mail"
conditions = [{ field = "size", op = "above", value = "2 kB" }]
actions = [{ action = "tag" }, { action = "add_header", name = "X-Large", value = "yes" }]
"#,
    );
    let env = envelope("198.51.100.5", "a@sender.example", &["staff@ourdomain.example"]);
    let iso = "From: a@sender.example\r\nTo: staff@ourdomain.example\r\nSubject: files\r\nDate: Mon, 6 Jan 2025 10:00:00 +0000\r\n\
        Message-ID: <iso@sender.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
        Content-Type: text/plain\r\n\r\nHere.\r\n--b\r\nContent-Type: application/octet-stream\r\n\
        Content-Disposition: attachment; filename=\"Setup.ISO\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAAAAAA\r\n--b--\r\n";
    let v = scan(&e, iso, &env);
    assert_eq!((v.action, v.decided_by.as_deref()), (Action::Quarantine, Some("rule \"disk images\"")), "{}", show(&v));
    assert!(v.scl >= 7);

    // A clean message over 2 kB is tagged by the second rule (tag is not a decision: the score still counts).
    let big = message("Ann <ann@sender.example>", "minutes", &[], &"The meeting notes follow. ".repeat(100));
    let v = scan(&e, &big, &env);
    assert_eq!((v.action, v.decided_by.as_deref()), (Action::Tag, Some("rule \"large mail\"")), "{}", show(&v));
    assert_eq!(v.policy_effects.add_headers.len(), 1);
    assert!(String::from_utf8(v.apply_headers(big.as_bytes())).unwrap().contains("X-Large: yes\r\n"));
    let small = message("Ann <ann@sender.example>", "minutes", &[], "Short.");
    let v = scan(&e, &small, &env);
    assert_eq!(v.action, Action::Deliver, "{}", show(&v));
    assert!(!has(&v, "POLICY_RULE"));
}

#[test]
fn add_score_accumulates_and_score_conditions_see_it() {
    let e = engine(
        r#"
[[policy.rules]]
name = "trusted partner"
conditions = [{ field = "from_domain", op = "is", value = "partner.example" }]
actions = [{ action = "add_score", score = -3 }]

[[policy.rules]]
name = "from the bad network"
conditions = [{ field = "client_ip", op = "in_cidr", value = "203.0.113.0/24" }]
actions = [{ action = "add_score", score = 6.5 }]

[[policy.rules]]
name = "too spammy now"
conditions = [{ field = "score", op = "above", value = 9 }]
actions = [{ action = "quarantine" }]
"#,
    );
    let base = message("Pat <pat@partner.example>", "Quarterly figures", &[], "Figures attached as discussed.");
    let v0 = scan(&engine(""), &base, &envelope("198.51.100.5", "pat@partner.example", &["staff@ourdomain.example"]));

    let v = scan(&e, &base, &envelope("198.51.100.5", "pat@partner.example", &["staff@ourdomain.example"]));
    assert!((v.score - (v0.score - 3.0)).abs() < 0.001, "{} vs {}", show(&v), show(&v0));
    let rule = v.symbols.iter().find(|s| s.name == "POLICY_RULE").unwrap();
    assert_eq!(rule.score, -3.0);
    assert!(rule.detail.contains("trusted partner") && rule.detail.contains("from_domain is \"partner.example\""));
    assert_not_decided_by_policy(&v);

    // From the bad network, someone else: +6.5 on top of the checks; the score rule then sees more than 9 only
    // when the checks had given more than 2.5, so with a GTUBE-free clean message it stays under.
    let other = message("Sam <sam@elsewhere.example>", "hello", &[], "Hello there.");
    let v = scan(&e, &other, &envelope("203.0.113.9", "sam@elsewhere.example", &["staff@ourdomain.example"]));
    let rules: Vec<&str> = v.symbols.iter().filter(|s| s.name == "POLICY_RULE").map(|s| s.detail.as_str()).collect();
    assert_eq!(rules.len(), 1, "{}", show(&v));
    assert!(v.score >= 6.5 && v.action == Action::Tag, "{}", show(&v));

    // Spoofing our domain from the bad network: SPOOF_OWN_DOMAIN (8) + 6.5 crosses 9, and the score rule,
    // evaluated after the add_score, quarantines.
    let spoof = message("CEO <ceo@ourdomain.example>", "urgent", &[], "Wire the money.");
    let v = scan(&e, &spoof, &envelope("203.0.113.9", "ceo@ourdomain.example", &["staff@ourdomain.example"]));
    assert_eq!(
        (v.action, v.decided_by.as_deref()),
        (Action::Quarantine, Some("rule \"too spammy now\"")),
        "{}",
        show(&v)
    );
    assert_eq!(v.symbols.iter().filter(|s| s.name == "POLICY_RULE").count(), 2);
}

#[test]
fn stop_ends_the_rules_and_later_rules_do_not_apply() {
    let e = engine(
        r#"
[[policy.rules]]
name = "internal relay"
conditions = [{ field = "header", header = "X-Internal-Route", op = "exists" }, { field = "client_ip", op = "in_cidr", value = "192.0.2.0/24" }]
actions = [{ action = "add_header", name = "X-Route", value = "internal" }, { action = "stop" }]

[[policy.rules]]
name = "quarantine external bulk"
conditions = [{ field = "header", header = "Precedence", op = "is", value = "bulk" }]
actions = [{ action = "quarantine" }]
"#,
    );
    let raw = message(
        "Ops <ops@partner.example>",
        "report",
        &["X-Internal-Route: yes", "Precedence: bulk"],
        "Nightly report.",
    );
    let v = scan(&e, &raw, &envelope("192.0.2.44", "ops@partner.example", &["staff@ourdomain.example"]));
    assert_eq!(v.action, Action::Deliver, "{}", show(&v));
    assert!(v.decided_by.is_none());
    assert_eq!(v.policy_effects.add_headers[0].value, "internal");
    assert_eq!(v.symbols.iter().filter(|s| s.name == "POLICY_RULE").count(), 1);

    // From outside our network the first rule does not match, so the second one quarantines.
    let v = scan(&e, &raw, &envelope("198.51.100.1", "ops@partner.example", &["staff@ourdomain.example"]));
    assert_eq!((v.action, v.decided_by.as_deref()), (Action::Quarantine, Some("rule \"quarantine external bulk\"")));
    assert!(v.policy_effects.is_empty());
}

#[test]
fn any_all_negation_and_regex() {
    let e = engine(
        r#"
[[policy.rules]]
name = "payroll only from inside"
conditions = [
  { field = "subject", op = "matches", value = '\b(payroll|salary)\b' },
  { field = "client_ip", op = "in_cidr", value = "192.0.2.0/24", not = true },
]
actions = [{ action = "quarantine" }]

[[policy.rules]]
name = "external marker"
match = "any"
conditions = [
  { field = "subject", op = "starts_with", value = "[EXT]" },
  { field = "header", header = "X-External", op = "is", value = "true" },
]
actions = [{ action = "add_score", score = 1 }, { action = "copy", to = "audit@ourdomain.example" }]

[[policy.rules]]
name = "redirect the old mailbox"
conditions = [{ field = "recipient", op = "is", value = "old-sales@ourdomain.example" }]
actions = [{ action = "redirect", to = "sales@ourdomain.example" }]
"#,
    );
    let payroll = message("HR <hr@ourdomain.example>", "Salary review", &[], "See the new figures.");
    let outside = envelope("198.51.100.3", "hr@ourdomain.example", &["staff@ourdomain.example"]);
    let v = scan(&e, &payroll, &outside);
    assert_eq!(v.decided_by.as_deref(), Some("rule \"payroll only from inside\""), "{}", show(&v));
    assert!(detail(&v, "POLICY_RULE").contains("not client_ip in_cidr"), "{}", show(&v));
    let inside = envelope("192.0.2.10", "hr@ourdomain.example", &["staff@ourdomain.example"]);
    let v = scan(&e, &payroll, &inside);
    assert!(v.decided_by.is_none() && v.action == Action::Deliver, "{}", show(&v));
    // The regex is case-insensitive by default and bounded by words.
    let v = scan(&e, &message("HR <hr@ourdomain.example>", "PAYROLL run", &[], "x"), &outside);
    assert_eq!(v.action, Action::Quarantine);
    let v = scan(&e, &message("HR <hr@ourdomain.example>", "payrolls", &[], "x"), &inside);
    assert!(v.decided_by.is_none());

    // Any: either marker is enough; the copy and the score accumulate.
    let env = envelope("198.51.100.3", "a@sender.example", &["staff@ourdomain.example"]);
    for raw in [
        message("a@sender.example", "[ext] hello", &[], "hi"),
        message("a@sender.example", "hello", &["X-External: TRUE"], "hi"),
    ] {
        let v = scan(&e, &raw, &env);
        assert_eq!(v.policy_effects.copy, vec!["audit@ourdomain.example".to_string()], "{}", show(&v));
        assert!(detail(&v, "POLICY_RULE").contains("external marker"));
    }
    let v = scan(&e, &message("a@sender.example", "hello [EXT]", &[], "hi"), &env);
    assert!(v.policy_effects.copy.is_empty(), "starts_with is anchored: {}", show(&v));

    // Redirect: for the gateway to carry out.
    let v = scan(
        &e,
        &message("a@sender.example", "order", &[], "hi"),
        &envelope("198.51.100.3", "a@sender.example", &["someone@ourdomain.example", "Old-Sales@ourdomain.example"]),
    );
    assert_eq!(v.policy_effects.redirect.as_deref(), Some("sales@ourdomain.example"), "{}", show(&v));
}

#[test]
fn authentication_results_and_the_authenticated_domain_as_conditions() {
    let e = engine(
        r#"
[[policy.rules]]
name = "signed by our payroll provider"
conditions = [{ field = "auth_domain", op = "is", value = "payroll-provider.example" }, { field = "dmarc", op = "is", value = "pass" }]
actions = [{ action = "allow" }]

[[policy.rules]]
name = "spf fail from a lookalike"
conditions = [{ field = "spf", op = "is", value = ["fail", "softfail"] }, { field = "from_domain", op = "ends_with", value = "-payroll.example" }]
actions = [{ action = "reject" }]
"#,
    );
    let raw = message("Payroll <noreply@payroll-provider.example>", "Your payslip", &[], "Your payslip is ready.");
    let env = envelope("198.51.100.40", "bounces@payroll-provider.example", &["staff@ourdomain.example"]);
    let facts = SenderFacts {
        spf: Some(SpfResult::Pass),
        spf_domain: Some("payroll-provider.example".into()),
        dkim: vec![DkimFacts {
            domain: "payroll-provider.example".into(),
            selector: "s1".into(),
            verdict: DkimVerdict::Pass,
            detail: String::new(),
            signed_headers: Vec::new(),
        }],
        dmarc: Some(DmarcFacts {
            domain: "payroll-provider.example".into(),
            result: Outcome::Pass,
            policy: DmarcPolicy::Reject,
            spf_aligned: true,
            dkim_aligned: true,
        }),
        ..SenderFacts::default()
    };
    let v = e.scan(raw.as_bytes(), &env, &Evidence::from_sender(facts.clone()));
    assert_allowed_by(&v, "signed by our payroll provider");
    // Without the evidence, the authenticated domain is unknown and the rule does not match.
    let v = scan(&e, &raw, &env);
    assert!(v.decided_by.is_none(), "{}", show(&v));

    let lookalike = message("Payroll <noreply@acme-payroll.example>", "Your payslip", &[], "Log in to see it.");
    let failed = SenderFacts {
        spf: Some(SpfResult::SoftFail),
        spf_domain: Some("acme-payroll.example".into()),
        ..SenderFacts::default()
    };
    let v = e.scan(lookalike.as_bytes(), &env, &Evidence::from_sender(failed));
    assert_eq!((v.action, v.decided_by.as_deref()), (Action::Reject, Some("rule \"spf fail from a lookalike\"")));
}

#[test]
fn disabled_rules_and_inbound_rules_on_outbound_mail_do_nothing() {
    let e = engine(
        r#"
[[policy.rules]]
name = "off"
enabled = false
actions = [{ action = "reject" }]

[[policy.rules]]
name = "inbound only"
actions = [{ action = "quarantine" }]
"#,
    );
    let raw = message("Jo <jo@ourdomain.example>", "hi", &[], "hello");
    let mut out = envelope("192.0.2.10", "jo@ourdomain.example", &["x@customer.example"]);
    out.direction = Direction::Outbound;
    let v = scan(&e, &raw, &out);
    assert_eq!(v.action, Action::Deliver, "{}", show(&v));
    assert!(v.policy_matches.is_empty());
    // A rule without conditions matches every inbound message.
    let v =
        scan(&e, &raw.replace("jo@", "x@"), &envelope("198.51.100.1", "x@customer.example", &["jo@ourdomain.example"]));
    assert_eq!(v.decided_by.as_deref(), Some("rule \"inbound only\""));
    assert!(detail(&v, "POLICY_RULE").contains("every message"));
    assert_eq!(e.policy().rule_count(), 1);
}

// ----- Allowed and blocked senders -----

/// A message from partner.example with enough evidence to be tagged on its own (a few spam phrases).
fn partner_offer(from: &str) -> String {
    message(
        from,
        "Special offer",
        &[],
        "Act now! Limited time offer, 100% free, risk free, no obligation. Click here to unsubscribe. \
         Satisfaction guaranteed, order now, call now, once in a lifetime.",
    )
}

fn lists(toml: &str) -> Policy {
    let config: PolicyConfig = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}"));
    Policy::new(&config).unwrap_or_else(|e| panic!("{e}"))
}

fn judge(e: &Engine, p: &Policy, raw: &str, env: &Envelope, ev: &Evidence) -> Verdict {
    e.judge_with_policy(&e.parse(raw.as_bytes()), env, ev, p)
}

#[test]
fn blocked_senders_quarantine_by_default_or_reject_when_the_entry_says() {
    let e = engine("");
    let p = lists(
        r#"
[[block]]
sender = "spam.example"
[[block]]
id = "42"
sender = "boss@scam.example"
action = "reject"
"#,
    );
    let env = envelope("198.51.100.1", "x@mail.spam.example", &["staff@ourdomain.example"]);
    let v = judge(&e, &p, &message("x@mail.spam.example", "hello", &[], "hi"), &env, &Evidence::default());
    assert_eq!(v.action, Action::Quarantine, "{}", show(&v));
    assert_eq!(v.decided_by.as_deref(), Some("blocked sender \"spam.example\" (the organisation's list)"));
    assert!(has(&v, "POLICY_BLOCKED_SENDER"));

    // Blocked by the From: address even when the envelope sender is clean.
    let env = envelope("198.51.100.1", "bounce@mailer.example", &["staff@ourdomain.example"]);
    let v = judge(&e, &p, &message("The Boss <Boss@Scam.example>", "urgent", &[], "hi"), &env, &Evidence::default());
    assert_eq!(v.action, Action::Reject, "{}", show(&v));
    let m = v.policy_matches.iter().find_map(|m| match m {
        PolicyMatch::Entry { entry, honoured } => Some((entry.id.clone(), *honoured)),
        _ => None,
    });
    assert_eq!(m, Some((Some("42".to_string()), true)));
    assert!(v.decided_by.unwrap().contains("entry 42"));
}

#[test]
fn user_beats_domain_beats_organisation_and_block_beats_allow_at_one_level() {
    let e = engine("");
    let p = lists(
        r#"
[[block]]
sender = "partner.example"

[[allow]]
sender = "partner.example"
recipient = "ourdomain.example"

[[block]]
sender = "partner.example"
recipient = "bob@ourdomain.example"

[[allow]]
sender = "news@partner.example"
recipient = "carol@ourdomain.example"
[[block]]
sender = "partner.example"
recipient = "carol@ourdomain.example"
"#,
    );
    let raw = partner_offer("Partner News <news@partner.example>");
    let ev = Evidence::default();
    let to = |r: &str| envelope("198.51.100.1", "news@partner.example", &[r]);
    // alice: no list of her own; the domain's allow beats the organisation's block.
    let v = judge(&e, &p, &raw, &to("alice@ourdomain.example"), &ev);
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));
    assert_eq!(
        v.decided_by.as_deref(),
        Some("allowed sender \"partner.example\" (the list of domain ourdomain.example)")
    );
    // bob blocked the partner himself: his list beats the domain's allow.
    let v = judge(&e, &p, &raw, &to("bob@ourdomain.example"), &ev);
    assert_eq!(v.action, Action::Quarantine, "{}", show(&v));
    assert!(v.decided_by.as_deref().unwrap().contains("the list of bob@ourdomain.example"));
    // carol allows the address and blocks the domain at the same level: the block wins.
    let v = judge(&e, &p, &raw, &to("carol@ourdomain.example"), &ev);
    assert_eq!(v.action, Action::Quarantine, "{}", show(&v));
    // Someone at another domain of ours: only the organisation's block applies.
    let v = judge(&e, &p, &raw, &to("dan@other-ours.example"), &ev);
    assert_eq!(v.action, Action::Quarantine, "{}", show(&v));
    assert!(v.decided_by.as_deref().unwrap().contains("the organisation's list"));
}

#[test]
fn recipients_with_different_lists_get_their_own_actions_and_the_envelope_gets_the_strictest() {
    let e = engine("");
    let p = lists(
        r#"
[[allow]]
sender = "partner.example"
recipient = "alice@ourdomain.example"
[[block]]
sender = "partner.example"
recipient = "bob@ourdomain.example"
action = "reject"
"#,
    );
    let raw = partner_offer("news@partner.example");
    let env = envelope(
        "198.51.100.1",
        "news@partner.example",
        &["alice@ourdomain.example", "bob@ourdomain.example", "carol@ourdomain.example"],
    );
    let v = judge(&e, &p, &raw, &env, &Evidence::default());
    let per: Vec<(&str, Action, i8)> =
        v.recipient_actions.iter().map(|r| (r.recipient.as_str(), r.action, r.scl)).collect();
    assert_eq!(per[0], ("alice@ourdomain.example", Action::Deliver, -1), "{}", show(&v));
    assert_eq!((per[1].0, per[1].1), ("bob@ourdomain.example", Action::Reject));
    assert_eq!(per[2].0, "carol@ourdomain.example");
    assert!(v.recipient_actions[2].decided_by.is_none(), "carol's is the score's");
    assert_eq!(v.action, Action::Reject, "the strictest, for a caller that cannot split");
    assert!(v.decided_by.as_deref().unwrap().contains("bob@ourdomain.example"));
    assert!(has(&v, "POLICY_ALLOWED_SENDER") && has(&v, "POLICY_BLOCKED_SENDER"));

    // When every recipient ends the same way, there is no per-recipient list.
    let env = envelope("198.51.100.1", "news@partner.example", &["carol@ourdomain.example", "dan@ourdomain.example"]);
    let v = judge(&e, &p, &raw, &env, &Evidence::default());
    assert!(v.recipient_actions.is_empty(), "{:?}", v.recipient_actions);

    // The per-recipient API a caller can use directly.
    let msg = e.parse(raw.as_bytes());
    let env = envelope("198.51.100.1", "news@partner.example", &["alice@ourdomain.example"]);
    let ev = Evidence::default();
    let input = mailsift_engine::policy::PolicyInput {
        envelope: &env,
        message: &msg,
        evidence: &ev,
        symbols: &[],
        score: 0.0,
        now: mailsift_engine::unix_now(),
    };
    let d = p.decide(&input, Some("Alice@ourdomain.example"));
    assert_eq!(d.action, Some(mailsift_engine::policy::PolicyAction::Allow));
    assert_eq!(d.list.entry.unwrap().index, 0);
    let d = p.decide(&input, Some("bob@ourdomain.example"));
    assert_eq!(d.action, Some(mailsift_engine::policy::PolicyAction::Reject));
}

#[test]
fn an_allow_entry_never_lets_through_mail_that_spoofs_our_domain_unless_it_says_so() {
    let e = engine("");
    let raw = partner_offer("Payroll <payroll@ourdomain.example>");
    let env = envelope("203.0.113.99", "payroll@ourdomain.example", &["staff@ourdomain.example"]);
    let p = lists("[[allow]]\nsender = \"ourdomain.example\"\ncomment = \"colleagues\"\n");
    let v = judge(&e, &p, &raw, &env, &Evidence::default());
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    assert_ne!(v.scl, -1, "{}", show(&v));
    assert!(v.action >= Action::Tag);
    let refused = detail(&v, "POLICY_ALLOW_REFUSED_SPOOF");
    assert!(refused.contains("allowed sender \"ourdomain.example\"") && refused.contains("203.0.113.99"), "{refused}");
    assert!(matches!(&v.policy_matches[..], [PolicyMatch::Entry { honoured: false, .. }]), "{:?}", v.policy_matches);
    let explained = mailsift_engine::explain::render(&v, e.registry());
    assert!(explained.contains("POLICY_ALLOW_REFUSED_SPOOF") && explained.contains("allow_spoofed"), "{explained}");

    // From our own sending servers the same entry is honoured: no spoofing.
    let v = judge(
        &e,
        &p,
        &raw,
        &envelope("192.0.2.10", "payroll@ourdomain.example", &["staff@ourdomain.example"]),
        &Evidence::default(),
    );
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));

    // The administrator can insist.
    let p = lists("[[allow]]\nsender = \"ourdomain.example\"\nallow_spoofed = true\n");
    let v = judge(&e, &p, &raw, &env, &Evidence::default());
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));
    assert!(has(&v, "SPOOF_OWN_DOMAIN"));

    // A refused user-level allow does not hide the organisation's block.
    let p = lists("[[allow]]\nsender = \"ourdomain.example\"\nrecipient = \"staff@ourdomain.example\"\n[[block]]\nsender = \"payroll@ourdomain.example\"\n");
    let v = judge(&e, &p, &raw, &env, &Evidence::default());
    assert_eq!(v.action, Action::Quarantine, "{}", show(&v));
    assert!(has(&v, "POLICY_ALLOW_REFUSED_SPOOF") && has(&v, "POLICY_BLOCKED_SENDER"));
}

fn dmarc_failing(domain: &str, policy: DmarcPolicy) -> Evidence {
    Evidence::from_sender(SenderFacts {
        spf: Some(SpfResult::Fail),
        spf_domain: Some("forger.example".into()),
        dmarc: Some(DmarcFacts {
            domain: domain.into(),
            result: Outcome::Fail,
            policy,
            spf_aligned: false,
            dkim_aligned: false,
        }),
        ..SenderFacts::default()
    })
}

#[test]
fn an_allow_entry_is_not_honoured_for_mail_failing_the_senders_dmarc() {
    let e = engine("");
    let p = lists("[[allow]]\nsender = \"bank.example\"\n");
    let raw = message("Bank <alerts@bank.example>", "Verify your account", &[], "Log in at the link.");
    let env = envelope("203.0.113.7", "alerts@forger.example", &["staff@ourdomain.example"]);
    let v = judge(&e, &p, &raw, &env, &dmarc_failing("bank.example", DmarcPolicy::Reject));
    assert!(has(&v, "DMARC_POLICY_REJECT"));
    assert_ne!(v.scl, -1, "{}", show(&v));
    assert!(detail(&v, "POLICY_ALLOW_REFUSED_DMARC").contains("p=reject"), "{}", show(&v));
    // p=none asks nothing of receivers: the entry is honoured.
    let v = judge(&e, &p, &raw, &env, &dmarc_failing("bank.example", DmarcPolicy::None));
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "{}", show(&v));
    // With auth.dmarc = "honor", a refused allow leaves the DMARC policy to decide.
    let honor = engine("[auth]\ndmarc = \"honor\"\n");
    let v = judge(&honor, &p, &raw, &env, &dmarc_failing("bank.example", DmarcPolicy::Quarantine));
    assert_eq!(v.action, Action::Quarantine, "{}", show(&v));
    assert!(v.decided_by.as_deref().unwrap().contains("DMARC policy p=quarantine"));
    // And without any policy at all, as before the policy stage existed.
    let v = judge(&honor, &Policy::empty(), &raw, &env, &dmarc_failing("bank.example", DmarcPolicy::Reject));
    assert_eq!(
        (v.action, v.decided_by.as_deref()),
        (Action::Reject, Some("DMARC policy p=reject of bank.example (auth.dmarc = \"honor\")")),
        "{}",
        show(&v)
    );
    assert!(v.scl >= 8 && !v.engines.contains(&"policy"));
}

#[test]
fn allow_entries_tied_to_authentication_or_infrastructure() {
    let e = engine("");
    let raw = partner_offer("Partner <news@partner.example>");
    let env = envelope("198.51.100.20", "bounce@mail.partner.example", &["staff@ourdomain.example"]);
    let authenticated = Evidence::from_sender(SenderFacts {
        spf: Some(SpfResult::Pass),
        spf_domain: Some("mail.partner.example".into()),
        ..SenderFacts::default()
    });
    let p = lists("[[allow]]\nsender = \"partner.example\"\nrequire_auth = true\n");
    let v = judge(&e, &p, &raw, &env, &authenticated);
    assert_eq!((v.action, v.scl), (Action::Deliver, -1), "SPF for a subdomain is aligned: {}", show(&v));
    let v = judge(&e, &p, &raw, &env, &Evidence::default());
    assert_ne!(v.scl, -1);
    assert!(detail(&v, "POLICY_ALLOW_CONDITION_UNMET").contains("require_auth"), "{}", show(&v));
    // DKIM of the partner's domain is as good as SPF.
    let signed = Evidence::from_sender(SenderFacts {
        dkim: vec![DkimFacts {
            domain: "partner.example".into(),
            selector: "k".into(),
            verdict: DkimVerdict::Pass,
            detail: String::new(),
            signed_headers: Vec::new(),
        }],
        ..SenderFacts::default()
    });
    assert_eq!(judge(&e, &p, &raw, &env, &signed).scl, -1);

    // Sending infrastructure: a confirmed PTR in the ESP's domain, or the network.
    let p = lists("[[allow]]\nsender = \"partner.example\"\nfrom_ptr_domain = \"mailgun.net\"\n");
    let ptr = |result, name: &str| {
        Evidence::from_sender(SenderFacts {
            ptr: Some(PtrFacts { result, names: vec![name.into()] }),
            ..SenderFacts::default()
        })
    };
    assert_eq!(judge(&e, &p, &raw, &env, &ptr(Outcome::Pass, "so-42.mailgun.net")).scl, -1);
    let v = judge(&e, &p, &raw, &env, &ptr(Outcome::Fail, "so-42.mailgun.net"));
    assert!(v.scl != -1 && has(&v, "POLICY_ALLOW_CONDITION_UNMET"), "an unconfirmed PTR is anyone's claim");
    assert_ne!(judge(&e, &p, &raw, &env, &ptr(Outcome::Pass, "notmailgun.net.evil.example")).scl, -1);

    let p = lists("[[allow]]\nsender = \"partner.example\"\nfrom_network = \"198.51.100.0/24\"\n");
    assert_eq!(judge(&e, &p, &raw, &env, &Evidence::default()).scl, -1);
    let v = judge(
        &e,
        &p,
        &raw,
        &envelope("203.0.113.1", "bounce@mail.partner.example", &["staff@ourdomain.example"]),
        &Evidence::default(),
    );
    assert!(detail(&v, "POLICY_ALLOW_CONDITION_UNMET").contains("from_network"), "{}", show(&v));
}

#[test]
fn expired_entries_are_ignored_and_outbound_mail_has_no_lists() {
    let e = engine("");
    let raw = partner_offer("news@partner.example");
    let env = envelope("198.51.100.1", "news@partner.example", &["staff@ourdomain.example"]);
    let p = lists("[[allow]]\nsender = \"partner.example\"\nexpires = 1000\n");
    let v = judge(&e, &p, &raw, &env, &Evidence::default());
    assert!(v.policy_matches.is_empty() && v.scl != -1, "{}", show(&v));
    let p =
        lists(&format!("[[allow]]\nsender = \"partner.example\"\nexpires = {}\n", mailsift_engine::unix_now() + 3600));
    assert_eq!(judge(&e, &p, &raw, &env, &Evidence::default()).scl, -1);

    let p = lists("[[block]]\nsender = \"partner.example\"\naction = \"reject\"\n");
    let mut out = env.clone();
    out.direction = Direction::Outbound;
    assert_ne!(judge(&e, &p, &raw, &out, &Evidence::default()).action, Action::Reject);
}

#[test]
fn a_rule_decision_comes_before_the_lists() {
    let e = engine("");
    let p = lists(
        r#"
[[rules]]
name = "quarantine iso"
conditions = [{ field = "subject", op = "contains", value = "disk image" }]
actions = [{ action = "quarantine" }]
[[allow]]
sender = "partner.example"
"#,
    );
    let env = envelope("198.51.100.1", "news@partner.example", &["staff@ourdomain.example"]);
    let v = judge(&e, &p, &message("news@partner.example", "your disk image", &[], "x"), &env, &Evidence::default());
    assert_eq!((v.action, v.decided_by.as_deref()), (Action::Quarantine, Some("rule \"quarantine iso\"")));
    assert!(!has(&v, "POLICY_ALLOWED_SENDER"));
    let v = judge(&e, &p, &message("news@partner.example", "hello", &[], "x"), &env, &Evidence::default());
    assert_eq!(v.scl, -1);
}

// ----- Bad input is refused with the rule, the field and the reason -----

#[test]
fn invalid_rules_and_entries_are_refused_with_the_rule_the_field_and_the_reason() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[[policy.rules]]\nname = \"bad regex\"\nconditions = [{ field = \"subject\", op = \"matches\", value = \"(unclosed\" }]\nactions = [{ action = \"tag\" }]\n",
            &["\"bad regex\"", "conditions[0].value", "bad regular expression"],
        ),
        (
            "[[policy.rules]]\nname = \"fine\"\nconditions = [{ field = \"body\", op = \"matches\", value = \"ok\" }]\nactions = [{ action = \"tag\" }]\n\
             [[policy.rules]]\nname = \"huge\"\nconditions = [{ field = \"subject\", op = \"exists\" }, { field = \"body\", op = \"matches\", value = '(?:\\w{500}){500}' }]\nactions = [{ action = \"tag\" }]\n",
            &["\"huge\" (rules[1])", "conditions[1].value", "size limit"],
        ),
        (
            "[[policy.rules]]\nname = \"bad cidr\"\nconditions = [{ field = \"client_ip\", op = \"in_cidr\", value = \"10.0.0.0/33\" }]\nactions = [{ action = \"tag\" }]\n",
            &["\"bad cidr\"", "conditions[0].value", "prefix"],
        ),
        ("[[policy.rules]]\nname = \"  \"\nactions = [{ action = \"tag\" }]\n", &["rules[0]", "name", "needs a name"]),
        (
            "[[policy.rules]]\nname = \"twice\"\nactions = [{ action = \"tag\" }]\n[[policy.rules]]\nname = \"Twice\"\nactions = [{ action = \"tag\" }]\n",
            &["\"Twice\" (rules[1])", "name", "rules[0] has the same name"],
        ),
        (
            "[[policy.rules]]\nname = \"typo\"\nconditons = []\nactions = [{ action = \"tag\" }]\n",
            &["\"typo\"", "conditons"],
        ),
        (
            "[[policy.rules]]\nname = \"two decisions\"\nactions = [{ action = \"allow\" }, { action = \"reject\" }]\n",
            &["\"two decisions\"", "actions[1]", "one decision"],
        ),
        (
            "[[policy.rules]]\nname = \"size as text\"\nconditions = [{ field = \"size\", op = \"contains\", value = \"big\" }]\nactions = [{ action = \"tag\" }]\n",
            &["\"size as text\"", "conditions[0].op", "above, below"],
        ),
        (
            "[[policy.rules]]\nname = \"no header name\"\nconditions = [{ field = \"header\", op = \"exists\" }]\nactions = [{ action = \"tag\" }]\n",
            &["conditions[0].header"],
        ),
        (
            "[[policy.rules]]\nname = \"ptr range\"\nconditions = [{ field = \"client_ptr\", op = \"in_cidr\", value = \"10.0.0.0/8\" }]\nactions = [{ action = \"tag\" }]\n",
            &["\"ptr range\"", "conditions[0].op", "in_cidr does not apply to client_ptr", "ends_with"],
        ),
        (
            "[[policy.rules]]\nname = \"empty sealer\"\nconditions = [{ field = \"arc_sealer\", op = \"is\", value = [] }]\nactions = [{ action = \"tag\" }]\n",
            &["\"empty sealer\"", "conditions[0].value", "the list is empty"],
        ),
        (
            "[[policy.rules]]\nname = \"spf typo\"\nconditions = [{ field = \"spf\", op = \"is\", value = \"passed\" }]\nactions = [{ action = \"tag\" }]\n",
            &["conditions[0].value", "\"passed\" is not a spf result"],
        ),
        (
            "[[policy.rules]]\nname = \"forge verdict\"\nactions = [{ action = \"add_header\", name = \"X-Mailsift-Action\", value = \"deliver\" }]\n",
            &["actions[0]", "gateway's own"],
        ),
        (
            "[[policy.rules]]\nname = \"bad copy\"\nactions = [{ action = \"copy\", to = \"not an address\" }]\n",
            &["actions[0]", "to:", "not an email address"],
        ),
        ("[[policy.rules]]\nname = \"nothing\"\nactions = []\n", &["\"nothing\"", "at least one action"]),
        ("[[policy.allow]]\nsender = \"@partner.example\"\n", &["allow[0]", "sender", "write the domain alone"]),
        (
            "[[policy.allow]]\nsender = \"partner.example\"\nfrom_network = \"198.51.100.0/24x\"\n",
            &["allow[0]", "from_network"],
        ),
        ("[[policy.block]]\nsender = \"x.example\"\nallow_spoofed = true\n", &["\"x.example\"", "allow_spoofed"]),
        ("[[policy.block]]\nsender = \"x.example\"\nrecipient = \"our domain\"\n", &["block[0]", "recipient", "not a domain"]),
        ("[[policy.block]]\nsender = \"com\"\n", &["block[0]", "sender", "two labels"]),
    ];
    for (toml, wanted) in cases {
        let err = match EngineConfig::from_toml(toml) {
            Err(e) => e,
            Ok(config) => match Engine::new(config) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted: {toml}"),
            },
        };
        for w in *wanted {
            assert!(err.contains(w), "{toml}\n=> {err}\n(missing {w:?})");
        }
    }
    // A disabled rule is checked too, so enabling it later cannot fail.
    let e = EngineConfig::from_toml("[[policy.rules]]\nname = \"off\"\nenabled = false\nconditions = [{ field = \"body\", op = \"matches\", value = \"[\" }]\nactions = [{ action = \"tag\" }]\n").unwrap();
    assert!(Engine::new(e).is_err());
    // Policy symbols carry no weight of their own.
    let e = EngineConfig::from_toml("[weights]\nPOLICY_RULE = 3\n").unwrap();
    assert!(Engine::new(e).err().unwrap().to_string().contains("add_score"));
}

#[test]
fn every_policy_symbol_is_registered_and_documented() {
    let e = engine("");
    for s in mailsift_engine::policy::SYMBOLS {
        let d = e.registry().by_name(s.name).unwrap();
        assert_eq!(d.group.as_str(), "policy");
        assert!(!d.description.is_empty() && !d.remedy.is_empty());
    }
    let src = include_str!("../src/lib.rs");
    let re = regex::Regex::new(r#""(POLICY_[A-Z_]+)""#).unwrap();
    for cap in re.captures_iter(src) {
        assert!(e.registry().id(&cap[1]).is_some(), "lib.rs emits unregistered {}", &cap[1]);
    }
}

/// A domain written in Unicode and the same domain in its ASCII (IDNA) form are one domain to policy: a block
/// entry or a rule written either way catches mail written the other way (a spoofer cannot escape a block by
/// spelling the domain as `xn--…`, or as Unicode under SMTPUTF8), for the envelope, the From: address and
/// their domains. A look-alike domain that merely resembles it is another domain.
#[test]
fn unicode_and_ascii_forms_of_a_domain_are_one_domain_to_blocks_and_rules() {
    let e = engine("");
    let (unicode, ascii) = ("bücher.example", "xn--bcher-kva.example");
    let blocked_by = |entry: &str, envelope_from: &str, from: &str| {
        let p = lists(&format!("[[block]]\nsender = \"{entry}\"\naction = \"reject\"\n"));
        let env = envelope("198.51.100.1", envelope_from, &["staff@ourdomain.example"]);
        let v = judge(&e, &p, &message(from, "hello", &[], "hi"), &env, &Evidence::default());
        (v.action == Action::Reject && has(&v, "POLICY_BLOCKED_SENDER"), show(&v))
    };
    for (entry, other) in [(unicode, ascii), (ascii, unicode), ("BÜCHER.Example.", ascii)] {
        let (hit, why) = blocked_by(entry, &format!("news@mail.{other}"), "clean@mailer.example");
        assert!(hit, "entry {entry}, envelope in {other}: {why}");
        let (hit, why) = blocked_by(entry, "bounce@mailer.example", &format!("Shop <shop@{other}>"));
        assert!(hit, "entry {entry}, From in {other}: {why}");
        let (hit, why) = blocked_by(&format!("shop@{entry}"), "bounce@mailer.example", &format!("shop@{other}"));
        assert!(hit, "address entry in {entry}, From in {other}: {why}");
    }
    let (hit, why) = blocked_by(unicode, "news@bucher.example", "shop@bucher.example");
    assert!(!hit, "a look-alike is another domain: {why}");

    for (rule_domain, mail_domain) in [(unicode, ascii), (ascii, unicode)] {
        let e = engine(&format!(
            r#"
[[policy.rules]]
name = "no books"
match = "any"
conditions = [
  {{ field = "from_domain", op = "is", value = "{rule_domain}" }},
  {{ field = "envelope_from_domain", op = "ends_with", value = "{rule_domain}" }},
  {{ field = "from", op = "is", value = "shop@{rule_domain}" }},
]
actions = [{{ action = "reject" }}]
"#
        ));
        for (env_from, from) in [
            (format!("news@mail.{mail_domain}"), "clean@mailer.example".to_string()),
            ("bounce@mailer.example".to_string(), format!("Shop <shop@{mail_domain}>")),
        ] {
            let env = envelope("198.51.100.1", &env_from, &["staff@ourdomain.example"]);
            let v = scan(&e, &message(&from, "hello", &[], "hi"), &env);
            assert_eq!(v.action, Action::Reject, "rule in {rule_domain}, mail {env_from} / {from}: {}", show(&v));
        }
        let env = envelope("198.51.100.1", "bounce@mailer.example", &["staff@ourdomain.example"]);
        let v = scan(&e, &message("shop@bucher.example", "hello", &[], "hi"), &env);
        assert_ne!(v.action, Action::Reject, "{}", show(&v));
    }

    // A part of a Unicode name (`contains`) still meets the name as the mail wrote it.
    let e = engine(
        r#"
[[policy.rules]]
name = "books anywhere"
conditions = [{ field = "from_domain", op = "contains", value = "bücher" }]
actions = [{ action = "reject" }]
"#,
    );
    let env = envelope("198.51.100.1", "bounce@mailer.example", &["staff@ourdomain.example"]);
    let v = scan(&e, &message(&format!("shop@{unicode}"), "hello", &[], "hi"), &env);
    assert_eq!(v.action, Action::Reject, "{}", show(&v));
}

/// Stored mail judged without DNS (spamd, `scan --from-trace`, `eval`) fills its connection from the trace,
/// and the connection checks read the name the receiving server recorded, against the sender only. A
/// recorded name, whoever wrote the line, is never a verified name: neither a rule on `client_ptr` nor an
/// allow asking for a confirmed PTR in the sender's service is met by it, while a recorded "unknown" still
/// counts against the message.
#[test]
fn a_name_recorded_in_a_received_line_never_satisfies_an_allow() {
    let e = engine(
        "[[policy.rules]]\nname = \"our provider\"\n\
         conditions = [{ field = \"client_ptr\", op = \"ends_with\", value = \".mailgun.net\" }]\n\
         actions = [{ action = \"allow\" }]\n",
    );
    let p = lists("[[allow]]\nsender = \"partner.example\"\nfrom_ptr_domain = \"mailgun.net\"\n");
    let offer = |received: &str| {
        let raw = partner_offer("news@partner.example");
        format!("Received: {received}\r\n{raw}")
    };
    let forged = offer(
        "from so-42.mailgun.net (so-42.mailgun.net [203.0.113.7]) by mx.ourdomain.example; Mon, 6 Jan 2025 10:00:01 +0000",
    );
    let msg = e.parse(forged.as_bytes());
    let mut env = Envelope::default();
    env.fill_from_trace(&msg);
    assert_eq!(env.client_ip, Some("203.0.113.7".parse().unwrap()), "the trace gives the client");
    let v = e.judge(&msg, &env, &Evidence::default());
    assert!(v.decided_by.is_none() && v.scl != -1, "the rule on client_ptr: {}", show(&v));
    let v = e.judge_with_policy(&msg, &env, &Evidence::default(), &p);
    assert!(v.scl != -1 && has(&v, "POLICY_ALLOW_CONDITION_UNMET"), "{}", show(&v));
    let unknown =
        offer("from so-42.mailgun.net (unknown [203.0.113.7]) by mx.ourdomain.example; Mon, 6 Jan 2025 10:00:01 +0000");
    let msg = e.parse(unknown.as_bytes());
    let v = e.judge(&msg, &env, &Evidence::default());
    assert!(has(&v, "RDNS_NONE") && v.scl != -1, "{}", show(&v));
}
