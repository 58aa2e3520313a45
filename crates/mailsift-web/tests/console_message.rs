//! A message's page and a quarantined message's page as an administrator decides on them (issue 22), in the
//! configuration production runs: DNS on against a loopback DNS server publishing our SPF `-all` and DMARC
//! `p=reject`, our domain protected against spoofing. The page says what was done and why (rejects and
//! quarantines included), the score against the spam level, which group's points were capped, one voice for
//! the fix (the diagnosis, not a generic remedy beside it), what each fix still lets through, and the headers
//! exactly as received; an end user sees none of the administrator's diagnosis.

use mailsift_testkit::dns::{TestDns, Zone};

#[path = "support/stack.rs"]
mod support;
use support::*;

fn zone() -> Zone {
    let mut z = Zone::new();
    z.txt("example.com", "v=spf1 ip4:127.0.0.2 -all").txt("_dmarc.example.com", "v=DMARC1; p=reject");
    z.txt("partner.test", "v=spf1 -all").txt("_dmarc.partner.test", "v=DMARC1; p=none");
    z
}

fn stack(dns: &TestDns) -> Stack {
    let head = "[group_caps]\ncontent = 4.0\n\n[thresholds]\ntag = 4.0\nquarantine = 8.0\nreject = 30.0";
    let extra = format!(
        "[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 1000\ndeadline_ms = 3000\n\n\
         [organisation]\ndomains = [\"example.com\"]\n\n\
         [[organisation.protected]]\ndomain = \"example.com\"\nsending_servers = [\"127.0.0.2/32\"]\n",
        dns.addr()
    );
    start_full(head, &extra)
}

fn message(from: &str, subject: &str, id: &str, body: &str) -> String {
    let date = mailsift_gateway::text::rfc5322_date(mailsift_engine::unix_now());
    format!(
        "From: {from}\r\nTo: bob@example.com\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n\
         X-Folded: first part\r\n\tsecond part\r\n\r\n{body}\r\n"
    )
}

/// The reference of the newest log row whose subject is `subject`.
fn reference(s: &Stack, subject: &str) -> mailsift_store::LogEntry {
    s.web.db.flush().unwrap();
    let q = mailsift_store::LogQuery { subject: Some(subject.into()), limit: 1, ..Default::default() };
    s.web.db.log_search(&q).unwrap().into_iter().next().unwrap_or_else(|| panic!("no log row for {subject}"))
}

/// The inner HTML of the element with this id.
fn by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in:\n{html}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find("</").unwrap();
    &rest[start..end.max(start)]
}

#[test]
fn message_pages_explain_rejects_quarantines_caps_and_fixes_with_dns_on() {
    let dns = TestDns::start(zone());
    let s = stack(&dns);
    let spoof = message(
        "\"The CEO\" <ceo@example.com>",
        "Wire transfer today",
        "spoof-1@example.com",
        "Please pay the invoice.",
    );
    let fraud = message(
        "barrister@partner.test",
        "Confidential proposal",
        "fraud-1@partner.test",
        "Dear friend, I am a barrister. The next of kin of my late client, a deceased government official, \
         left US$ 25 million in the central bank. Transfer the sum to your bank account details with utmost \
         confidentiality; you will receive 30 percent of the total. You have won; claim your prize. \
         Click here to verify your account. God bless.",
    );
    assert_eq!(send(&s, "ceo@example.com", "bob@example.com", &spoof), 250);
    assert_eq!(send(&s, "barrister@partner.test", "bob@example.com", &fraud), 250);
    let (mut admin, _) = login(&s, "admin", ADMIN_PW);
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };

    // The spoof of our own domain: held, and said why; the diagnosis is the one voice on the fix.
    let e = reference(&s, "Wire transfer today");
    let page = admin.get(&format!("/console/log/{}", e.reference_id)).text();
    check(e.action == "quarantine", format!("the spoof is quarantined: {e:?}"));
    check(e.symbols.iter().any(|(n, _)| n == "SPOOF_OWN_DOMAIN"), format!("SPOOF_OWN_DOMAIN fired: {e:?}"));
    let why = by_id(&page, "why");
    check(why.contains("reached the quarantine level 8.00"), format!("Why says the level reached: {why}"));
    check(!page.contains("acted on from"), "no 'acted on from'".into());
    let score = by_id(&page, "score");
    check(score.contains("at or over the spam level 4.00"), format!("the score against the spam level: {score}"));
    check(by_id(&page, "done").contains("Held in the quarantine"), "what was done".into());
    check(page.contains("id=\"diagnosis\""), "a diagnosis".into());
    check(
        !page.contains("add its IP to the domain&#x27;s sending_servers")
            && !page.contains("add its IP to the domain's sending_servers"),
        "the generic SPOOF_OWN_DOMAIN remedy does not contradict the diagnosis".into(),
    );
    check(page.contains("diagnosis above covers it"), "the covered symbol points to the diagnosis".into());
    let headers = by_id(&page, "headers");
    check(
        headers.contains("Message-ID: &lt;spoof-1@example.com&gt;"),
        format!("the headers as received (Message-ID with its <>): {headers}"),
    );
    check(headers.contains("X-Folded: first part\n\tsecond part"), format!("folding kept: {headers}"));
    check(!page.contains("\\\""), "no literal backslash-quote".into());

    // The advance-fee message: content capped, and the page says so.
    let e = reference(&s, "Confidential proposal");
    let page = admin.get(&format!("/console/log/{}", e.reference_id)).text();
    check(page.contains("counts at most 4.00"), "the content group's cap is shown".into());
    check(by_id(&page, "caps").contains("count at most 4.00 (group_caps.content)"), "the cap sentence".into());
    check(!page.contains("\\\""), "no literal backslash-quote in the 419 description".into());

    // The quarantined spoof's own page: the administrator decides there, with the diagnosis and each fix's
    // residual risk beside its Apply button; the end user sees plain words and no diagnosis.
    let item = s.web.db.quarantine_list(&Default::default()).unwrap();
    let spoof_item =
        item.iter().find(|i| i.subject.as_deref() == Some("Wire transfer today")).expect("the spoof is held");
    let page = admin.get(&format!("/console/quarantine/{}", spoof_item.id)).text();
    check(page.contains("id=\"diagnosis\""), "the admin's quarantine page has the diagnosis".into());
    check(page.contains("class=\"risk\">other users of that host"), "each fix says what it still lets through".into());
    check(page.contains("name=\"quarantine_id\""), "applying a fix there can release this item".into());
    check(
        by_id(&page, "headers").contains("Message-ID: &lt;spoof-1@example.com&gt;"),
        "raw headers on the item page".into(),
    );
    let (mut bob, _) = login(&s, "bob@example.com", BOB_PW);
    let page = bob.get(&format!("/console/quarantine/{}", spoof_item.id)).text();
    check(
        !page.contains("id=\"diagnosis\"") && !page.contains("/console/diagnosis/apply"),
        "no diagnosis for end users".into(),
    );
    let why = page.split("id=\"why\"").nth(1).unwrap_or("").split("</td>").next().unwrap_or("").to_string();
    check(why.contains("It pretends to come from your own organisation."), format!("plain words: {why}"));
    check(!why.contains("SPOOF_OWN_DOMAIN") && !why.contains("DMARC"), format!("no symbol or jargon for bob: {why}"));
    let fraud_item = item.iter().find(|i| i.subject.as_deref() == Some("Confidential proposal")).expect("held");
    let page = bob.get(&format!("/console/quarantine/{}", fraud_item.id)).text();
    check(
        page.contains("Its wording is common in spam") && page.contains("as phishing does"),
        "the fraud in plain words".into(),
    );
    let page = bob.get(&format!("/console/quarantine/{}", spoof_item.id)).text();
    check(
        by_id(&page, "auth").contains("Not verified"),
        format!("the end user reads that the sender is not verified: {}", by_id(&page, "auth")),
    );

    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
}
