//! Sender evidence through real DNS on loopback: the scenarios a mail administrator meets. Each test starts
//! its own DNS server with the zone it needs; nothing leaves the machine.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mailsift_engine::config::{DnsConfig, OrganisationConfig, ProtectedDomain};
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::auth::{authenticator, TestKey};
use mailsift_testkit::dns::{TestDns, Zone};

fn message(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: staff@ourcorp.example\r\nSubject: {subject}\r\nDate: Mon, 6 Jan 2025 10:00:00 +0000\r\n\
         Message-ID: <{}@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}\r\n",
        subject.len() * 7919 + body.len()
    )
}

fn envelope(ip: &str, helo: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some(helo.into()),
        mail_from: Some(mail_from.into()),
        rcpt_to: vec!["staff@ourcorp.example".into()],
        ..Envelope::default()
    }
}

fn config(dns: &TestDns, org: OrganisationConfig) -> EngineConfig {
    EngineConfig {
        organisation: org,
        dns: DnsConfig {
            enabled: true,
            nameservers: vec![dns.addr().to_string()],
            timeout_ms: 400,
            deadline_ms: 1500,
            ..DnsConfig::default()
        },
        ..EngineConfig::default()
    }
}

fn ourcorp(servers: &[&str], relays: &[&str]) -> OrganisationConfig {
    OrganisationConfig {
        domains: vec!["ourcorp.example".into()],
        protected: vec![ProtectedDomain {
            domain: "ourcorp.example".into(),
            sending_servers: servers.iter().map(|s| s.to_string()).collect(),
            trusted_relays: relays.iter().map(|s| s.to_string()).collect(),
        }],
        ..OrganisationConfig::default()
    }
}

async fn judge(config: EngineConfig, raw: &str, env: &Envelope) -> Verdict {
    let gatherer = SenderGatherer::new(&config.dns).unwrap();
    let engine = Engine::new(config).unwrap();
    let facts = gatherer.gather(raw.as_bytes(), env).await;
    engine.scan(raw.as_bytes(), env, &Evidence::from_sender(facts))
}

fn has(v: &Verdict, name: &str) -> bool {
    v.symbols.iter().any(|s| s.name == name)
}

fn names(v: &Verdict) -> Vec<String> {
    v.symbols.iter().map(|s| format!("{}({})", s.name, s.detail)).collect()
}

/// A well-run sender: PTR confirmed, HELO matching, SPF pass.
fn good_sender_zone() -> Zone {
    let mut z = Zone::new();
    z.ptr("192.0.2.10", "mail.partner.example")
        .a("mail.partner.example", "192.0.2.10")
        .txt("partner.example", "v=spf1 ip4:192.0.2.0/24 -all");
    z
}

#[tokio::test]
async fn a_well_run_sender_shows_only_good_evidence() {
    let dns = TestDns::start(good_sender_zone());
    let raw = message("Pat <pat@partner.example>", "Quarterly figures", "Hello, the figures are attached.");
    let v = judge(
        config(&dns, ourcorp(&[], &[])),
        &raw,
        &envelope("192.0.2.10", "mail.partner.example", "pat@partner.example"),
    )
    .await;
    assert!(has(&v, "SPF_PASS"), "{:?}", names(&v));
    assert!(!v.symbols.iter().any(|s| s.group == mailsift_engine::Group::Connection), "{:?}", names(&v));
    let ar = v.authentication_results.as_deref().expect("Authentication-Results");
    assert!(ar.starts_with("mailsift.local") && ar.contains("spf=pass") && ar.contains("iprev=pass"), "{ar}");
    assert!(v.engines.contains(&"sender"));
    assert!(dns.queries() > 0);
}

#[tokio::test]
async fn a_sender_with_no_ptr() {
    let mut z = good_sender_zone();
    z.a("mail.nopointer.example", "192.0.2.77").txt("nopointer.example", "v=spf1 ip4:192.0.2.77 -all");
    let dns = TestDns::start(z);
    let raw = message("Sam <sam@nopointer.example>", "Hello", "Just checking in about the meeting.");
    let v = judge(
        config(&dns, ourcorp(&[], &[])),
        &raw,
        &envelope("192.0.2.77", "mail.nopointer.example", "sam@nopointer.example"),
    )
    .await;
    assert!(has(&v, "RDNS_NONE"), "{:?}", names(&v));
    assert!(v.symbols.iter().find(|s| s.name == "RDNS_NONE").unwrap().detail.contains("192.0.2.77"));
    assert!(!has(&v, "RDNS_NOT_CONFIRMED"));
}

#[tokio::test]
async fn ptr_that_does_not_confirm_and_dynamic_names() {
    let mut z = Zone::new();
    z.ptr("203.0.113.45", "203-0-113-45.dsl.isp.example").a("203-0-113-45.dsl.isp.example", "198.51.100.1");
    let dns = TestDns::start(z);
    let raw = message("someone@isp.example", "hi", "hello there friend");
    let v = judge(
        config(&dns, ourcorp(&[], &[])),
        &raw,
        &envelope("203.0.113.45", "203-0-113-45.dsl.isp.example", "someone@isp.example"),
    )
    .await;
    assert!(has(&v, "RDNS_NOT_CONFIRMED") && has(&v, "RDNS_DYNAMIC"), "{:?}", names(&v));
}

#[tokio::test]
async fn helo_names_that_lie() {
    let dns = TestDns::start(good_sender_zone());
    let raw = message("Pat <pat@partner.example>", "Figures", "Hello, the figures are attached.");
    let cases = [
        ("localhost", "HELO_NOT_FQDN"),
        ("192.0.2.10", "HELO_BARE_IP"),
        ("[198.51.100.99]", "HELO_IP_LITERAL_MISMATCH"),
        ("mx.ourcorp.example", "HELO_CLAIMS_OUR_DOMAIN"),
        ("smtp.other.example", "HELO_NOT_PTR_DOMAIN"),
    ];
    for (helo, symbol) in cases {
        let v =
            judge(config(&dns, ourcorp(&[], &[])), &raw, &envelope("192.0.2.10", helo, "pat@partner.example")).await;
        assert!(has(&v, symbol), "HELO {helo}: expected {symbol}, got {:?}", names(&v));
    }
    let v =
        judge(config(&dns, ourcorp(&[], &[])), &raw, &envelope("192.0.2.10", "[192.0.2.10]", "pat@partner.example"))
            .await;
    assert!(!v.symbols.iter().any(|s| s.name.starts_with("HELO_")), "{:?}", names(&v));
}

#[tokio::test]
async fn spf_results_are_graded() {
    let mut z = good_sender_zone();
    z.txt("soft.example", "v=spf1 ip4:198.51.100.0/24 ~all")
        .txt("hard.example", "v=spf1 ip4:198.51.100.0/24 -all")
        .txt("broken.example", "v=spf1 ip4:not-an-ip -all");
    let dns = TestDns::start(z);
    for (domain, symbol) in [
        ("soft.example", "SPF_SOFTFAIL"),
        ("hard.example", "SPF_FAIL"),
        ("broken.example", "SPF_PERMERROR"),
        ("none.example", "SPF_NONE"),
    ] {
        let raw = message(&format!("x@{domain}"), "Note", "A short note for you.");
        let v = judge(
            config(&dns, ourcorp(&[], &[])),
            &raw,
            &envelope("192.0.2.10", "mail.partner.example", &format!("x@{domain}")),
        )
        .await;
        assert!(has(&v, symbol), "{domain}: expected {symbol}, got {:?}", names(&v));
    }
}

#[tokio::test]
async fn web_form_spoofing_our_domain_then_fixed_by_adding_the_server() {
    // Our web server 198.51.100.20 sends form mail as forms@ourcorp.example; our SPF does not list it.
    let mut z = Zone::new();
    z.ptr("198.51.100.20", "web1.hosting.example")
        .a("web1.hosting.example", "198.51.100.20")
        .txt("ourcorp.example", "v=spf1 ip4:192.0.2.200 -all")
        .txt("_dmarc.ourcorp.example", "v=DMARC1; p=none");
    let dns = TestDns::start(z);
    let raw = message("Web form <forms@ourcorp.example>", "New contact request", "Name: Ann\nMessage: please call me");
    let env = envelope("198.51.100.20", "web1.hosting.example", "forms@ourcorp.example");
    let v = judge(config(&dns, ourcorp(&["192.0.2.200"], &[])), &raw, &env).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "{:?}", names(&v));
    assert!(v.action.is_spam(), "a spoof of our domain is flagged: {} {:?}", v.score, names(&v));
    let detail = &v.symbols.iter().find(|s| s.name == "SPOOF_OWN_DOMAIN").unwrap().detail;
    assert!(detail.contains("198.51.100.20"), "the symbol names the server to authorise: {detail}");

    // The fix: add the web server to the domain's sending servers.
    let v = judge(config(&dns, ourcorp(&["192.0.2.200", "198.51.100.16/29"], &[])), &raw, &env).await;
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{:?}", names(&v));
    // The same message from elsewhere is still caught.
    let v = judge(
        config(&dns, ourcorp(&["192.0.2.200", "198.51.100.16/29"], &[])),
        &raw,
        &envelope("203.0.113.9", "evil.example", "forms@ourcorp.example"),
    )
    .await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN"));
}

#[tokio::test]
async fn our_mail_through_a_trusted_relay_is_not_spoofing() {
    // The relay is recognised by the connecting server's forward-confirmed name, a fact of the connection.
    let mut z = Zone::new();
    z.ptr("203.0.113.50", "out.sigservice.example")
        .a("out.sigservice.example", "203.0.113.50")
        .ptr("198.18.0.9", "host9.spoofer.example")
        .a("host9.spoofer.example", "198.18.0.9")
        // A spoofer runs his own reverse zone: a second PTR naming the relay, which does not resolve back.
        .ptr("198.18.0.10", "host10.spoofer.example")
        .ptr("198.18.0.10", "out.sigservice.example")
        .a("host10.spoofer.example", "198.18.0.10");
    let dns = TestDns::start(z);
    let received = "Received: from out.sigservice.example (out.sigservice.example [203.0.113.50]) by mx.ourcorp.example; Mon, 6 Jan 2025 10:00:00 +0000\r\n";
    let raw = format!("{received}{}", message("Boss <boss@ourcorp.example>", "Plan", "Here is the plan."));
    let env = envelope("203.0.113.50", "out.sigservice.example", "boss@ourcorp.example");
    let v = judge(config(&dns, ourcorp(&["192.0.2.200"], &[])), &raw, &env).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN"));
    let relay = || config(&dns, ourcorp(&["192.0.2.200"], &[r"\bsigservice\.example\b"]));
    let v = judge(relay(), &raw, &env).await;
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{:?}", names(&v));

    // Forged: the same message, with the same Received line naming the relay, from a spoofer's server.
    let v = judge(relay(), &raw, &envelope("198.18.0.9", "out.sigservice.example", "boss@ourcorp.example")).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "a Received line is the sender's claim: {:?}", names(&v));
    // Forged: a PTR record naming the relay that does not resolve back to the spoofer's address.
    let v = judge(relay(), &raw, &envelope("198.18.0.10", "out.sigservice.example", "boss@ourcorp.example")).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "an unconfirmed PTR name is a claim: {:?}", names(&v));

    // Without DNS evidence (milter mode with the gateway's DNS off), the MTA's verified client name counts,
    // and a Received line still does not.
    let engine = Engine::new(relay()).unwrap();
    let milter = Envelope { client_name: Some("out.sigservice.example".into()), ..env.clone() };
    let v = engine.scan(raw.as_bytes(), &milter, &Evidence::default());
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{:?}", names(&v));
    let forged = envelope("198.18.0.9", "out.sigservice.example", "boss@ourcorp.example");
    let v = engine.scan(raw.as_bytes(), &forged, &Evidence::default());
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "{:?}", names(&v));
}

#[tokio::test]
async fn newsletter_service_sending_as_us_with_its_own_spf_and_our_dkim() {
    // The service sends from its own servers with its own bounce domain (SPF pass, not aligned) and signs
    // with a key we published for it at esp._domainkey.ourcorp.example (DKIM aligned).
    let key = TestKey::new("ourcorp.example", "esp");
    let mut z = Zone::new();
    z.ptr("192.0.2.150", "o1.esp.example")
        .a("o1.esp.example", "192.0.2.150")
        .txt("bounces.esp.example", "v=spf1 ip4:192.0.2.128/25 -all");
    z.txt("_dmarc.ourcorp.example", "v=DMARC1; p=reject");
    key.publish(&mut z);
    let dns = TestDns::start(z);
    let raw = key.sign(&message(
        "Ourcorp News <news@ourcorp.example>",
        "Our March newsletter",
        "Dear reader, this month we opened a new office.",
    ));
    let env = envelope("192.0.2.150", "o1.esp.example", "b123@bounces.esp.example");
    let v = judge(config(&dns, ourcorp(&["192.0.2.200"], &[])), &raw, &env).await;
    assert!(has(&v, "DKIM_VALID") && has(&v, "DMARC_PASS") && has(&v, "SPF_PASS"), "{:?}", names(&v));
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{:?}", names(&v));
    assert!(!v.action.is_spam());

    // Without the signature, the same mail is a spoof, and DMARC p=reject says so too.
    let unsigned = message(
        "Ourcorp News <news@ourcorp.example>",
        "Our March newsletter",
        "Dear reader, this month we opened a new office.",
    );
    let v = judge(config(&dns, ourcorp(&["192.0.2.200"], &[])), &unsigned, &env).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && has(&v, "DMARC_POLICY_REJECT"), "{:?}", names(&v));
    assert!(v.decided_by.is_none(), "DMARC is evidence only by default");

    // Honouring DMARC makes p=reject an action, named in the verdict; without the anti-spoofing entry the
    // score alone would not have rejected it.
    let mut c = config(&dns, OrganisationConfig::default());
    c.auth.dmarc = mailsift_engine::config::DmarcEnforcement::Honor;
    let v = judge(c, &unsigned, &env).await;
    assert_eq!(v.action, mailsift_engine::Action::Reject, "{} {:?}", v.score, names(&v));
    assert!(v.decided_by.as_deref().is_some_and(|d| d.contains("p=reject of ourcorp.example")), "{:?}", v.decided_by);
}

#[tokio::test]
async fn dkim_signed_message_with_a_footer_added_after_signing() {
    let key = TestKey::new("partner.example", "s1");
    let mut z = good_sender_zone();
    key.publish(&mut z);
    let dns = TestDns::start(z);
    let signed = key.sign(&message("Pat <pat@partner.example>", "Contract", "Please find the contract terms below."));
    let footer = format!("{signed}--\r\nThis email and any attachments are confidential.\r\n");
    let env = envelope("192.0.2.10", "mail.partner.example", "pat@partner.example");
    let v = judge(config(&dns, ourcorp(&[], &[])), &signed, &env).await;
    assert!(has(&v, "DKIM_VALID"), "{:?}", names(&v));
    let v = judge(config(&dns, ourcorp(&[], &[])), &footer, &env).await;
    assert!(has(&v, "DKIM_BODY_MODIFIED") && !has(&v, "DKIM_INVALID"), "{:?}", names(&v));
    assert!(v.symbols.iter().find(|s| s.name == "DKIM_BODY_MODIFIED").unwrap().detail.contains("partner.example"));
    let explained = mailsift_engine::explain::render(&v, Engine::new(EngineConfig::default()).unwrap().registry());
    assert!(explained.contains("Sign after the footer"), "{explained}");

    // The same DKIM-Signature header pasted onto another message: its headers do not verify, so it is not
    // "body modified" (which would say partner.example signed it) but invalid.
    let header_end = signed.find("\r\nFrom:").expect("signature first") + 2;
    let pasted = format!(
        "{}{}",
        &signed[..header_end],
        message("Pat <pat@partner.example>", "Updated bank details", "Please pay to the new account below.")
    );
    let v = judge(config(&dns, ourcorp(&[], &[])), &pasted, &env).await;
    assert!(has(&v, "DKIM_INVALID") && !has(&v, "DKIM_BODY_MODIFIED"), "{:?}", names(&v));

    // A signature with no published key.
    let orphan = TestKey::new("partner.example", "gone").sign(&message("Pat <pat@partner.example>", "X", "Y z."));
    let v = judge(config(&dns, ourcorp(&[], &[])), &orphan, &env).await;
    assert!(has(&v, "DKIM_KEY_MISSING"), "{:?}", names(&v));
}

#[tokio::test]
async fn forwarded_message_breaks_spf_but_carries_a_valid_arc_chain() {
    // The author's domain signs and publishes SPF and DMARC p=reject; a mailing list forwards the message,
    // adds a footer (breaking DKIM) and seals it with ARC; it reaches us from the list's server, which the
    // author's SPF does not list.
    let author = TestKey::new("author.example", "a1");
    let list = TestKey::new("lists.example", "arc");
    let mut z = Zone::new();
    z.txt("author.example", "v=spf1 ip4:192.0.2.10 -all").txt("_dmarc.author.example", "v=DMARC1; p=reject");
    z.ptr("198.51.100.60", "mx.lists.example").a("mx.lists.example", "198.51.100.60");
    author.publish(&mut z);
    list.publish(&mut z);
    let dns = TestDns::start(z);
    let original =
        author.sign(&message("Alex <alex@author.example>", "Meeting notes", "Notes from the meeting are below."));
    let auth = authenticator(dns.addr());
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let forwarded_body = format!("{original}-- \r\nYou are subscribed to the team list.\r\n");
    let sealed = list.arc_seal(&forwarded_body, &auth, ip, "mail.author.example", "alex@author.example").await;
    let env = envelope("198.51.100.60", "mx.lists.example", "alex@author.example");

    // The list is a sealer we trust.
    let trusting = || {
        let mut c = config(&dns, ourcorp(&[], &[]));
        c.organisation.trusted_arc_sealers = vec!["lists.example".into()];
        c
    };
    let v = judge(trusting(), &sealed, &env).await;
    assert!(has(&v, "ARC_VALID") && has(&v, "ARC_FORWARDED"), "{:?}", names(&v));
    assert!(!has(&v, "SPF_FAIL") && !has(&v, "DMARC_POLICY_REJECT"), "{:?}", names(&v));
    assert!(!v.action.is_spam(), "{} {:?}", v.score, names(&v));
    assert!(v.symbols.iter().find(|s| s.name == "ARC_VALID").unwrap().detail.contains("lists.example"));

    // With no trusted sealers configured, no chain vouches: anyone can seal his own forgery.
    let v = judge(config(&dns, ourcorp(&[], &[])), &sealed, &env).await;
    assert!(has(&v, "ARC_VALID") && !has(&v, "ARC_FORWARDED"), "{:?}", names(&v));
    assert!(has(&v, "SPF_FAIL") && has(&v, "DMARC_POLICY_REJECT"), "{:?}", names(&v));

    // Without the ARC seal the same forwarded message fails SPF and DMARC.
    let v = judge(config(&dns, ourcorp(&[], &[])), &forwarded_body, &env).await;
    assert!(has(&v, "SPF_FAIL") && has(&v, "DMARC_POLICY_REJECT"), "{:?}", names(&v));

    // Trusting only other sealers: the chain is reported valid but no longer vouches.
    let mut c = config(&dns, ourcorp(&[], &[]));
    c.organisation.trusted_arc_sealers = vec!["trusted-forwarder.example".into()];
    let v = judge(c, &sealed, &env).await;
    assert!(has(&v, "ARC_VALID") && has(&v, "SPF_FAIL"), "{:?}", names(&v));
}

#[tokio::test]
async fn dns_timeouts_are_temporary_errors_within_the_deadline() {
    let mut z = Zone::new();
    z.timeout("slow.example").timeout("45.113.0.203.in-addr.arpa");
    let dns = TestDns::start(z);
    let raw = message("x@slow.example", "hello", "hello there");
    let mut c = config(&dns, ourcorp(&[], &[]));
    c.dns.timeout_ms = 200;
    c.dns.deadline_ms = 600;
    let start = Instant::now();
    let v = judge(c, &raw, &envelope("203.0.113.45", "mail.slow.example", "x@slow.example")).await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "a message must not wait much past the deadline: {took:?}");
    assert!(has(&v, "SPF_TEMPERROR") || has(&v, "DNS_DEADLINE"), "{:?}", names(&v));
    assert!(!has(&v, "SPF_FAIL") && !has(&v, "SPF_PASS") && !has(&v, "RDNS_NONE"), "{:?}", names(&v));
    assert!(v.defer.is_none(), "deferring is off by default");
    // Configured to defer: the verdict asks the gateway for a 4xx.
    let mut c = config(&dns, ourcorp(&[], &[]));
    c.dns.timeout_ms = 200;
    c.dns.deadline_ms = 600;
    c.dns.defer_on_temperror = true;
    let v = judge(c, &raw, &envelope("203.0.113.45", "mail.slow.example", "x@slow.example")).await;
    assert!(v.defer.as_deref().is_some_and(|d| d.contains("spf")), "{:?}", v.defer);
}

#[tokio::test]
async fn cached_answers_are_not_asked_again() {
    let dns = TestDns::start(good_sender_zone());
    let mut c = config(&dns, ourcorp(&[], &[]));
    c.dns.enabled = true;
    let gatherer = SenderGatherer::new(&c.dns).unwrap();
    let raw = message("Pat <pat@partner.example>", "Figures", "Hello.");
    let env = envelope("192.0.2.10", "mail.partner.example", "pat@partner.example");
    gatherer.gather(raw.as_bytes(), &env).await;
    let first = dns.queries();
    for _ in 0..5 {
        gatherer.gather(raw.as_bytes(), &env).await;
    }
    assert!(first > 0);
    assert!(dns.queries() - first <= 2, "asked again: {:?}", &dns.log()[first..]);
}

fn list(symbol: &str, zone: &str, weight: f64) -> mailsift_engine::config::DnsListConfig {
    mailsift_engine::config::DnsListConfig {
        symbol: symbol.into(),
        zone: zone.into(),
        kind: mailsift_engine::config::DnsListKind::Ip,
        weight,
        returns: vec![],
        reject_at_door: false,
        description: None,
    }
}

async fn judge_full(config: EngineConfig, raw: &str, env: &Envelope) -> (Verdict, mailsift_engine::ConnectionVerdict) {
    let gatherer = SenderGatherer::from_config(&config).unwrap();
    let engine = Engine::new(config).unwrap();
    let msg = engine.parse(raw.as_bytes());
    let domains: Vec<&str> = msg.urls.iter().map(|u| u.domain.as_str()).collect();
    let facts = gatherer.gather_with_urls(raw.as_bytes(), env, &domains, None).await;
    let evidence = Evidence::from_sender(facts);
    (engine.judge(&msg, env, &evidence), engine.judge_connection(env, &evidence))
}

#[tokio::test]
async fn dns_blocklists_allowlists_and_error_codes() {
    let mut z = good_sender_zone();
    // 192.0.2.10 is listed in the combined list with two codes, and in an allowlist.
    z.a("10.2.0.192.combined.bl.example", "127.0.0.2")
        .a("10.2.0.192.combined.bl.example", "127.0.0.10")
        .a("10.2.0.192.wl.example", "127.0.0.2")
        // The refusing list answers with its "query refused" code for everybody.
        .a("10.2.0.192.refusing.bl.example", "127.255.255.254")
        .a("bad-urls.example.dbl.example", "127.0.1.2");
    let dns = TestDns::start(z);
    let mut c = config(&dns, ourcorp(&[], &[]));
    let mut combined = list("COMBINED_LISTED", "combined.bl.example", 1.0);
    combined.returns = vec![
        mailsift_engine::config::DnsListReturn {
            code: "127.0.0.2".into(),
            symbol: "COMBINED_SPAM_SOURCE".into(),
            weight: 6.0,
        },
        mailsift_engine::config::DnsListReturn {
            code: "127.0.0.10".into(),
            symbol: "COMBINED_DYNAMIC".into(),
            weight: 1.5,
        },
    ];
    let mut dbl = list("URL_DOMAIN_LISTED", "dbl.example", 4.0);
    dbl.kind = mailsift_engine::config::DnsListKind::Url;
    c.dnsbl = vec![
        combined,
        list("ALLOWLISTED", "wl.example", -3.0),
        list("REFUSING_LISTED", "refusing.bl.example", 5.0),
        dbl,
    ];
    let raw = message("Pat <pat@partner.example>", "Offer", "See http://www.bad-urls.example/offer today.");
    let env = envelope("192.0.2.10", "mail.partner.example", "pat@partner.example");
    let (v, _) = judge_full(c.clone(), &raw, &env).await;
    for s in ["COMBINED_SPAM_SOURCE", "COMBINED_DYNAMIC", "ALLOWLISTED", "URL_DOMAIN_LISTED", "DNSBL_ERROR_ANSWER"] {
        assert!(has(&v, s), "{s} missing: {:?}", names(&v));
    }
    assert!(!has(&v, "REFUSING_LISTED"), "an error code is never a listing: {:?}", names(&v));
    let allow = v.symbols.iter().find(|s| s.name == "ALLOWLISTED").unwrap();
    assert_eq!(allow.score, -3.0);
    assert!(v.symbols.iter().find(|s| s.name == "COMBINED_SPAM_SOURCE").unwrap().detail.contains("192.0.2.10"));

    // The refusing list is backed off: a second message does not ask it again.
    let gatherer = SenderGatherer::from_config(&c).unwrap();
    gatherer.gather_with_urls(raw.as_bytes(), &env, &[], None).await;
    let before = dns.log().iter().filter(|q| q.contains("refusing")).count();
    gatherer.gather_with_urls(raw.as_bytes(), &env, &[], None).await;
    let after = dns.log().iter().filter(|q| q.contains("refusing")).count();
    assert_eq!(before, after, "the refusing zone is left alone after an error answer");
}

#[tokio::test]
async fn very_bad_senders_are_refused_at_the_door() {
    let mut z = Zone::new();
    z.a("66.113.0.203.zen.bl.example", "127.0.0.2");
    let dns = TestDns::start(z);
    let mut c = config(&dns, ourcorp(&[], &[]));
    let mut zen = list("ZEN_LISTED", "zen.bl.example", 8.0);
    zen.reject_at_door = true;
    c.dnsbl = vec![zen];
    let env = envelope("203.0.113.66", "localhost", "x@spam.example");
    let (_, door) = judge_full(c.clone(), "", &env).await;
    assert!(door.reject, "{door:?}");
    assert!(door.reason.as_deref().unwrap().contains("zen.bl.example"));
    // A clean sender passes the door.
    let (_, door) =
        judge_full(c.clone(), "", &envelope("192.0.2.10", "mail.partner.example", "pat@partner.example")).await;
    assert!(!door.reject, "{door:?}");
    // Without reject_at_door, only the score threshold refuses.
    c.connection.reject_at_door = false;
    let (_, door) = judge_full(c, "", &env).await;
    assert!(!door.reject, "score {} is below the reject score", door.score);
}

#[tokio::test]
async fn open_proxy_probe_on_loopback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A fake open proxy on 127.0.0.1: it agrees to CONNECT anywhere.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = proxy.accept().await {
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.0 200 Connection established\r\n\r\n").await;
        }
    });
    // A port that is closed: bind then drop to get one.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dns = TestDns::start(Zone::new());
    let mut c = config(&dns, ourcorp(&[], &[]));
    c.connection.open_proxy_probe = true;
    c.connection.open_proxy_ports = vec![closed, port];
    c.connection.open_proxy_timeout_ms = 500;
    let env = envelope("127.0.0.1", "proxy.example.net", "x@example.net");
    let (v, _) = judge_full(c.clone(), &message("x@example.net", "hi", "hello"), &env).await;
    assert!(has(&v, "OPEN_PROXY"), "{:?}", names(&v));
    assert!(v.symbols.iter().find(|s| s.name == "OPEN_PROXY").unwrap().detail.ends_with(&format!(":{port}")));
    // Off by default.
    c.connection.open_proxy_probe = false;
    let (v, _) = judge_full(c, &message("x@example.net", "hi", "hello"), &env).await;
    assert!(!has(&v, "OPEN_PROXY"));
}

/// The door check at MAIL FROM asks about the client (PTR, SPF, its lists); its message is then judged on
/// those answers and only what depends on the message is asked: nothing twice, the same facts.
#[tokio::test]
async fn the_door_facts_serve_the_message_and_nothing_is_asked_twice() {
    let mut z = good_sender_zone();
    z.a("10.2.0.192.combined.bl.example", "127.0.0.2").a("bad-urls.example.dbl.example", "127.0.1.2");
    let dns = TestDns::start(z);
    let mut c = config(&dns, ourcorp(&[], &[]));
    let mut dbl = list("URL_DOMAIN_LISTED", "dbl.example", 4.0);
    dbl.kind = mailsift_engine::config::DnsListKind::Url;
    c.dnsbl = vec![list("COMBINED_LISTED", "combined.bl.example", 3.0), dbl];
    let raw = message("Pat <pat@partner.example>", "Offer", "See http://www.bad-urls.example/offer today.");
    let env = envelope("192.0.2.10", "mail.partner.example", "pat@partner.example");
    let domains = ["bad-urls.example"];

    // The reference: a gatherer of its own, no door.
    let alone = SenderGatherer::from_config(&c).unwrap().gather_with_urls(raw.as_bytes(), &env, &domains, None).await;

    // The door, then the message on a gatherer with empty caches: whatever it asked would reach the server.
    let door = SenderGatherer::from_config(&c).unwrap().gather_at_door(&env).await;
    assert_eq!(door.facts().spf, Some(mailsift_engine::evidence::SpfResult::Pass));
    let before = dns.log().len();
    let with_door =
        SenderGatherer::from_config(&c).unwrap().gather_with_urls(raw.as_bytes(), &env, &domains, Some(&door)).await;
    let asked = dns.log()[before..].to_vec();
    for client_name in ["10.2.0.192.in-addr.arpa", "partner.example TXT", "mail.partner.example", "combined.bl.example"]
    {
        assert!(!asked.iter().any(|q| q.contains(client_name)), "{client_name} asked again: {asked:?}");
    }
    assert!(asked.iter().any(|q| q.contains("dbl.example")), "the URL lists are the message's own: {asked:?}");

    assert_eq!(with_door.spf, alone.spf);
    assert_eq!(with_door.spf_domain, alone.spf_domain);
    assert_eq!(format!("{:?}", with_door.ptr), format!("{:?}", alone.ptr));
    assert_eq!(format!("{:?}", with_door.dmarc), format!("{:?}", alone.dmarc));
    let mut lists_alone: Vec<String> = alone.dns_lists.iter().map(|h| h.symbol.clone()).collect();
    let mut lists_door: Vec<String> = with_door.dns_lists.iter().map(|h| h.symbol.clone()).collect();
    lists_alone.sort();
    lists_door.sort();
    assert_eq!(lists_door, ["COMBINED_LISTED", "URL_DOMAIN_LISTED"]);
    assert_eq!(lists_door, lists_alone);
    assert_eq!(with_door.authentication_results, alone.authentication_results);
    assert!(with_door.timed_out.is_empty(), "{:?}", with_door.timed_out);
}

/// Facts the door gathered for one client are not another's: a message whose envelope differs (another
/// address, another HELO, another sender) is asked about afresh, so a pass at the door cannot be carried.
#[tokio::test]
async fn the_door_facts_of_one_client_are_not_used_for_another() {
    let dns = TestDns::start(good_sender_zone());
    let c = config(&dns, ourcorp(&[], &[]));
    let raw = message("Pat <pat@partner.example>", "Figures", "Hello.");
    let good = envelope("192.0.2.10", "mail.partner.example", "pat@partner.example");
    let door = SenderGatherer::from_config(&c).unwrap().gather_at_door(&good).await;
    assert_eq!(door.facts().spf, Some(mailsift_engine::evidence::SpfResult::Pass));
    let elsewhere = [
        envelope("198.51.100.77", "mail.partner.example", "pat@partner.example"),
        envelope("192.0.2.10", "other.example", "pat@partner.example"),
        envelope("192.0.2.10", "mail.partner.example", "pat@elsewhere.example"),
    ];
    for env in &elsewhere {
        let g = SenderGatherer::from_config(&c).unwrap();
        let facts = g.gather_with_urls(raw.as_bytes(), env, &[], Some(&door)).await;
        let fresh = SenderGatherer::from_config(&c).unwrap().gather(raw.as_bytes(), env).await;
        assert_eq!(facts.spf, fresh.spf, "{env:?}");
        assert_eq!(format!("{:?}", facts.ptr), format!("{:?}", fresh.ptr), "{env:?}");
    }
    let forged = SenderGatherer::from_config(&c)
        .unwrap()
        .gather_with_urls(raw.as_bytes(), &elsewhere[0], &[], Some(&door))
        .await;
    assert_eq!(
        forged.spf,
        Some(mailsift_engine::evidence::SpfResult::Fail),
        "another address is not in the SPF record"
    );
}

/// During a resolver outage the door waits out its deadline once; the message does not wait for the same
/// lookups again, and still says they failed (temporary errors, never a pass).
#[tokio::test]
async fn a_lookup_that_timed_out_at_the_door_is_not_waited_for_again() {
    let mut z = Zone::new();
    z.timeout("slow.example").timeout("45.113.0.203.in-addr.arpa");
    let dns = TestDns::start(z);
    let mut c = config(&dns, ourcorp(&[], &[]));
    c.dns.timeout_ms = 200;
    c.dns.deadline_ms = 600;
    let env = envelope("203.0.113.45", "mail.slow.example", "x@slow.example");
    let door = SenderGatherer::from_config(&c).unwrap().gather_at_door(&env).await;
    assert!(door.facts().temporary_failures().iter().any(|t| t == "spf"), "{:?}", door.facts());
    let raw = message("x@quick.example", "hello", "hello there");
    let before = dns.log().len();
    let facts = SenderGatherer::from_config(&c).unwrap().gather_with_urls(raw.as_bytes(), &env, &[], Some(&door)).await;
    let asked = dns.log()[before..].to_vec();
    assert!(!asked.iter().any(|q| q.contains("slow.example") || q.contains("in-addr")), "{asked:?}");
    assert_eq!(facts.spf, Some(mailsift_engine::evidence::SpfResult::TempError));
    assert!(facts.temporary_failures().iter().any(|t| t == "spf"), "{:?}", facts.temporary_failures());
    assert_eq!(facts.ptr.as_ref().map(|p| p.result), Some(mailsift_engine::evidence::Outcome::TempError));
}
