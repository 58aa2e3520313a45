//! Authentication of our own domain in the production configuration (DNS on, against a loopback DNS server
//! that publishes acme.test's SPF `-all` and DMARC `p=reject` and the third parties' own records), and the
//! forgeries each fix must still catch (issue 15):
//! - a DKIM signature is "body modified" only when its signed headers verify: a signature header copied
//!   onto another message is invalid, never a sign of our domain;
//! - a server added locally as one of acme.test's sending servers makes our own SPF/DMARC failure not count
//!   (`OWN_SERVER_NOT_IN_DNS` names the DNS change), and only for that server sending as acme.test;
//! - ARC vouches only for chains of sealers we trust; our own mail coming back through trusted platforms
//!   (Office 365, then a signature service) is not a spoof, and a chain sealed by anyone else changes
//!   nothing;
//! - trusted relays are recognised by the connecting server's verified name, never by a Received line.

use std::net::IpAddr;

use mailsift_engine::config::DnsConfig;
use mailsift_engine::evidence::DkimVerdict;
use mailsift_engine::{Action, Engine, EngineConfig, Envelope, Evidence, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::auth::{authenticator, TestKey};
use mailsift_testkit::dns::{TestDns, Zone};

/// acme.test as a real organisation configures it; `extra` adds lines to its protected-domain entry, or
/// organisation keys before it.
fn config(dns: &TestDns, org_extra: &str, protected_extra: &str) -> EngineConfig {
    let text = format!(
        r#"
[organisation]
domains = ["acme.test"]
{org_extra}
[[organisation.protected]]
domain = "acme.test"
sending_servers = ["192.0.2.10/32"{protected_extra}]
"#
    );
    let mut config = EngineConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.dns = DnsConfig {
        enabled: true,
        nameservers: vec![dns.addr().to_string()],
        timeout_ms: 400,
        deadline_ms: 2000,
        ..DnsConfig::default()
    };
    config
}

/// Our published records, the web host's, a spoofer's, and the platforms' (keys published by the caller).
fn zone() -> Zone {
    let mut z = Zone::new();
    z.txt("acme.test", "v=spf1 ip4:192.0.2.10 -all")
        .txt("_dmarc.acme.test", "v=DMARC1; p=reject")
        .ptr("192.0.2.10", "mail.acme.test")
        .a("mail.acme.test", "192.0.2.10")
        .ptr("203.0.113.50", "web01.hoster.test")
        .a("web01.hoster.test", "203.0.113.50")
        .txt("other.test", "v=spf1 ip4:192.0.2.99 -all")
        .txt("_dmarc.other.test", "v=DMARC1; p=reject")
        .ptr("198.18.0.9", "host9.spoofer.test")
        .a("host9.spoofer.test", "198.18.0.9")
        .txt("spoofer.test", "v=spf1 ip4:198.18.0.0/24 -all")
        .ptr("198.51.100.7", "out.sigservice.test")
        .a("out.sigservice.test", "198.51.100.7")
        .txt("sigservice.test", "v=spf1 ip4:198.51.100.0/24 -all");
    z
}

fn message(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: Customer <someone@customer.test>\r\nSubject: {subject}\r\n\
         Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <{}.{}@acme.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len(),
        body.len()
    )
}

fn envelope(ip: &str, helo: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some(helo.into()),
        mail_from: Some(mail_from.into()),
        rcpt_to: vec!["someone@customer.test".into()],
        ..Envelope::default()
    }
}

async fn judge(config: &EngineConfig, raw: &str, env: &Envelope) -> Verdict {
    let gatherer = SenderGatherer::from_config(config).unwrap();
    let engine = Engine::new(config.clone()).unwrap();
    let facts = gatherer.gather(raw.as_bytes(), env).await;
    engine.scan(raw.as_bytes(), env, &Evidence::from_sender(facts))
}

fn has(v: &Verdict, name: &str) -> bool {
    v.symbols.iter().any(|s| s.name == name)
}

fn detail<'v>(v: &'v Verdict, name: &str) -> &'v str {
    v.symbols.iter().find(|s| s.name == name).map(|s| s.detail.as_str()).unwrap_or("")
}

fn show(v: &Verdict) -> String {
    let syms: Vec<String> = v.symbols.iter().map(|s| format!("{}({:.1}; {})", s.name, s.score, s.detail)).collect();
    format!("{:?} score {:.2}: {}", v.action, v.score, syms.join(", "))
}

// ----- DKIM: body modified only when the signed headers verify -----

#[tokio::test]
async fn body_modified_needs_signed_headers_that_verify_and_a_copied_signature_is_invalid() {
    let key = TestKey::new("acme.test", "s1");
    let mut z = zone();
    key.publish(&mut z);
    let dns = TestDns::start(z);
    let c = config(&dns, "", "");
    let signed = key.sign(&message("Dana <dana@acme.test>", "Contract", "The contract terms are below."));
    let env = envelope("192.0.2.10", "mail.acme.test", "dana@acme.test");

    // A footer appended after signing: the headers verify, the body hash does not.
    let footer = format!("{signed}--\r\nThis email is confidential.\r\n");
    let facts = SenderGatherer::new(&c.dns).unwrap().gather(footer.as_bytes(), &env).await;
    assert_eq!(facts.dkim.len(), 1, "{:?}", facts.dkim);
    assert_eq!(facts.dkim[0].verdict, DkimVerdict::BodyModified, "{:?}", facts.dkim);
    let v = judge(&c, &footer, &env).await;
    assert!(has(&v, "DKIM_BODY_MODIFIED") && !has(&v, "DKIM_INVALID"), "{}", show(&v));
    assert!(detail(&v, "DKIM_BODY_MODIFIED").contains("acme.test"), "{}", show(&v));

    // The same DKIM-Signature header pasted onto a forged message (other From, Subject and body), sent
    // from a spoofer: the signed headers do not verify, so it is invalid, and not a sign of acme.test.
    let cut = signed.find("\r\nFrom:").expect("the signature comes first") + 2;
    for forged_from in ["Dana <dana@acme.test>", "Accounts <accounts@acme.test>"] {
        let forged = format!(
            "{}{}",
            &signed[..cut],
            message(forged_from, "Change of bank details", "Please pay our invoices to the new account.")
        );
        let spoof_env = envelope("198.18.0.9", "host9.spoofer.test", "dana@acme.test");
        let facts = SenderGatherer::new(&c.dns).unwrap().gather(forged.as_bytes(), &spoof_env).await;
        assert_eq!(facts.dkim.len(), 1, "{:?}", facts.dkim);
        assert_eq!(facts.dkim[0].verdict, DkimVerdict::Fail, "{forged_from}: {:?}", facts.dkim);
        let v = judge(&c, &forged, &spoof_env).await;
        assert!(has(&v, "DKIM_INVALID") && !has(&v, "DKIM_BODY_MODIFIED"), "{forged_from}: {}", show(&v));
        assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action.is_spam(), "{forged_from}: {}", show(&v));
    }

    // The original, unchanged, verifies.
    let v = judge(&c, &signed, &env).await;
    assert!(has(&v, "DKIM_VALID") && !has(&v, "DKIM_BODY_MODIFIED"), "{}", show(&v));
}

#[tokio::test]
async fn many_copied_signatures_are_bounded_and_none_earns_body_modified() {
    let key = TestKey::new("acme.test", "s1");
    let mut z = zone();
    key.publish(&mut z);
    let dns = TestDns::start(z);
    let c = config(&dns, "", "");
    let signed = key.sign(&message("Dana <dana@acme.test>", "Contract", "The contract terms are below."));
    let cut = signed.find("\r\nFrom:").expect("the signature comes first") + 2;
    let forged_body = message("Dana <dana@acme.test>", "Bank details", "New account below.");
    let raw = format!("{}{forged_body}", signed[..cut].repeat(20));
    let env = envelope("198.18.0.9", "host9.spoofer.test", "dana@acme.test");
    let started = std::time::Instant::now();
    let facts = SenderGatherer::new(&c.dns).unwrap().gather(raw.as_bytes(), &env).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(facts.dkim.len(), 20, "{:?}", facts.dkim);
    assert!(facts.dkim.iter().all(|d| d.verdict == DkimVerdict::Fail), "{:?}", facts.dkim);
}

// ----- our own server, listed locally but not (yet) in our SPF record -----

#[tokio::test]
async fn a_local_sending_server_makes_our_own_spf_and_dmarc_failure_not_count() {
    let dns = TestDns::start(zone());
    let raw = message("Web form <webform@acme.test>", "New contact request", "Name: Ann. Please call me back.");
    let env = envelope("203.0.113.50", "web01.hoster.test", "webform@acme.test");

    // Before the fix: our own SPF -all and DMARC p=reject fail, and it is a spoof of our domain.
    let before = config(&dns, "", "");
    let v = judge(&before, &raw, &env).await;
    assert!(has(&v, "SPF_FAIL") && has(&v, "DMARC_POLICY_REJECT") && has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    assert!(v.action.is_spam());

    // The local fix: 203.0.113.50 is one of acme.test's sending servers.
    let fixed = config(&dns, "", r#", "203.0.113.50""#);
    let v = judge(&fixed, &raw, &env).await;
    for s in ["SPF_FAIL", "SPF_SOFTFAIL", "DMARC_POLICY_REJECT", "SPOOF_OWN_DOMAIN"] {
        assert!(!has(&v, s), "{s}: {}", show(&v));
    }
    assert!(!v.action.is_spam(), "{}", show(&v));
    let d = detail(&v, "OWN_SERVER_NOT_IN_DNS");
    assert!(d.contains("acme.test") && d.contains("203.0.113.50") && d.contains("SPF record"), "{}", show(&v));
    assert!(d.contains("DMARC"), "DMARC failed too, and the detail says so: {d}");
    assert_eq!(v.symbols.iter().find(|s| s.name == "OWN_SERVER_NOT_IN_DNS").unwrap().score, 0.0);
    // The Authentication-Results header stays the real DNS result.
    let ar = v.authentication_results.as_deref().expect("Authentication-Results");
    assert!(ar.contains("spf=fail") && ar.contains("dmarc=fail"), "{ar}");

    // Honouring DMARC p=reject: the local server's mail is still not rejected ...
    let mut honor = fixed.clone();
    honor.auth.dmarc = mailsift_engine::config::DmarcEnforcement::Honor;
    let v = judge(&honor, &raw, &env).await;
    assert_ne!(v.action, Action::Reject, "{}", show(&v));
    // ... and a bounce from it (null sender, SPF of its HELO name in our domain's name) neither.
    let bounce_env = envelope("203.0.113.50", "web01.hoster.test", "");
    let v = judge(&fixed, &raw, &bounce_env).await;
    assert!(has(&v, "OWN_SERVER_NOT_IN_DNS") && !has(&v, "DMARC_POLICY_REJECT"), "{}", show(&v));

    // Forgery: the same message from another IP is judged as before.
    let spoof_env = envelope("198.18.0.9", "web01.hoster.test", "webform@acme.test");
    let v = judge(&fixed, &raw, &spoof_env).await;
    assert!(has(&v, "SPF_FAIL") && has(&v, "DMARC_POLICY_REJECT") && has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    assert!(!has(&v, "OWN_SERVER_NOT_IN_DNS") && v.action.is_spam(), "{}", show(&v));
    let v = judge(&honor, &raw, &spoof_env).await;
    assert_eq!(v.action, Action::Reject, "{}", show(&v));
    // Forgery: with Received lines naming the web server, from another IP: the same.
    let traced = format!(
        "Received: from web01.hoster.test (web01.hoster.test [203.0.113.50]) by mx.acme.test; Mon, 6 Jan 2025 10:00:00 +0000\r\n{raw}"
    );
    let v = judge(&fixed, &traced, &spoof_env).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && has(&v, "DMARC_POLICY_REJECT"), "{}", show(&v));

    // The same server sending as ANOTHER domain is judged as before: its SPF and DMARC are theirs.
    let other = message("Billing <billing@other.test>", "Invoice", "Your invoice is attached.");
    let v = judge(&fixed, &other, &envelope("203.0.113.50", "web01.hoster.test", "billing@other.test")).await;
    assert!(has(&v, "SPF_FAIL") && has(&v, "DMARC_POLICY_REJECT"), "{}", show(&v));
    assert!(!has(&v, "OWN_SERVER_NOT_IN_DNS"), "{}", show(&v));
    // ... and From acme.test with another domain's envelope sender: the other domain's SPF failure counts,
    // only our own DMARC failure is ours.
    let v = judge(&fixed, &raw, &envelope("203.0.113.50", "web01.hoster.test", "bounce@other.test")).await;
    assert!(has(&v, "SPF_FAIL") && !has(&v, "DMARC_POLICY_REJECT"), "{}", show(&v));
    assert!(detail(&v, "OWN_SERVER_NOT_IN_DNS").contains("DMARC"), "{}", show(&v));
    assert!(!detail(&v, "OWN_SERVER_NOT_IN_DNS").contains("SPF record"), "{}", show(&v));
}

#[tokio::test]
async fn the_spf_hard_fail_option_leaves_our_own_locally_listed_server_alone() {
    let dns = TestDns::start(zone());
    let raw = message("Web form <webform@acme.test>", "New contact request", "Name: Ann. Please call me back.");
    let with_option = |extra: &str| {
        let mut c = config(&dns, "", extra);
        c.asf.spf_hard_fail = mailsift_engine::config::AsfMode::On;
        c
    };
    // Our own server, listed locally but not (yet) in our SPF record: the option does not fire.
    let fixed = with_option(r#", "203.0.113.50""#);
    let v = judge(&fixed, &raw, &envelope("203.0.113.50", "web01.hoster.test", "webform@acme.test")).await;
    assert!(has(&v, "OWN_SERVER_NOT_IN_DNS") && !has(&v, "ASF_SPF_HARD_FAIL"), "{}", show(&v));
    assert!(!v.action.is_spam(), "{}", show(&v));
    // The same message from another IP: it does.
    let v = judge(&fixed, &raw, &envelope("198.18.0.9", "web01.hoster.test", "webform@acme.test")).await;
    assert!(has(&v, "ASF_SPF_HARD_FAIL") && v.action.is_spam(), "{}", show(&v));
    // And the listed server sending as another domain whose SPF fails: it does too.
    let other = message("Billing <billing@other.test>", "Invoice", "Your invoice is attached.");
    let v = judge(&fixed, &other, &envelope("203.0.113.50", "web01.hoster.test", "billing@other.test")).await;
    assert!(has(&v, "ASF_SPF_HARD_FAIL"), "{}", show(&v));
}

#[tokio::test]
async fn our_listed_server_that_is_in_our_spf_record_needs_no_excuse() {
    let dns = TestDns::start(zone());
    let raw = message("Dana <dana@acme.test>", "Minutes", "The minutes of Monday.");
    let v = judge(&config(&dns, "", ""), &raw, &envelope("192.0.2.10", "mail.acme.test", "dana@acme.test")).await;
    assert!(has(&v, "SPF_PASS") && has(&v, "DMARC_PASS"), "{}", show(&v));
    assert!(!has(&v, "OWN_SERVER_NOT_IN_DNS"), "{}", show(&v));
}

// ----- trusted relays: the connecting server's verified name, never a Received line -----

#[tokio::test]
async fn a_trusted_relay_is_the_connecting_servers_verified_name_and_never_a_received_line() {
    let dns = TestDns::start(zone());
    let c = config(
        &dns,
        "",
        r#"]
trusted_relays = ['\.sigservice\.test$'"#,
    );
    let raw = message("Boss <boss@acme.test>", "Plan", "Here is the plan for next week.");
    // From the signature service's server (its PTR confirmed): not a spoof.
    let v = judge(&c, &raw, &envelope("198.51.100.7", "out.sigservice.test", "boss@acme.test")).await;
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    // Forged: Received lines naming the relay, sent from the spoofer's server.
    let forged = format!(
        "Received: from out.sigservice.test (out.sigservice.test [198.51.100.7]) by mx.acme.test; Mon, 6 Jan 2025 10:00:00 +0000\r\n\
         Received: from mail.acme.test ([192.0.2.10]) by out.sigservice.test; Mon, 6 Jan 2025 09:59:00 +0000\r\n{raw}"
    );
    let v = judge(&c, &forged, &envelope("198.18.0.9", "out.sigservice.test", "boss@acme.test")).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action.is_spam(), "{}", show(&v));
}

// ----- ARC: trusted sealers only; our own mail coming back through trusted platforms -----

/// Office 365 (o365.test) receives Dana's message, signed by acme.test, from our server and seals it; the
/// signature service (sigservice.test) validates the chain, adds a footer (breaking our body hash) and
/// seals again; it reaches us from the signature service's server, which our SPF does not list.
struct Platforms {
    dns: TestDns,
    /// The message after Office 365 sealed it.
    first: String,
    returned: String,
    original: String,
    env: Envelope,
    sig: TestKey,
}

const FOOTER: &str = "--\r\nDana Smith | Sales | ACME\r\n";

async fn platforms() -> Platforms {
    let acme = TestKey::new("acme.test", "s1");
    let o365 = TestKey::new("o365.test", "arc");
    let sig = TestKey::new("sigservice.test", "arc");
    let mut z = zone();
    acme.publish(&mut z);
    o365.publish(&mut z);
    sig.publish(&mut z);
    let dns = TestDns::start(z);
    let auth = authenticator(dns.addr());
    let original = acme.sign(&message("Dana <dana@acme.test>", "Quote 2025-114", "Our quote is below."));
    let ours: IpAddr = "192.0.2.10".parse().unwrap();
    let first = o365.arc_seal_modified(&original, &original, &auth, ours, "mail.acme.test", "dana@acme.test").await;
    let o365_ip: IpAddr = "198.51.100.99".parse().unwrap();
    let footer = format!("{first}{FOOTER}");
    let returned = sig.arc_seal_modified(&first, &footer, &auth, o365_ip, "out.o365.test", "dana@acme.test").await;
    let env = envelope("198.51.100.7", "out.sigservice.test", "dana@acme.test");
    Platforms { dns, first, returned, original, env, sig }
}

#[tokio::test]
async fn our_own_mail_back_through_trusted_sealers_is_not_a_spoof() {
    let p = platforms().await;
    let trusted = config(&p.dns, r#"trusted_arc_sealers = ["o365.test", "sigservice.test"]"#, "");
    let v = judge(&trusted, &p.returned, &p.env).await;
    assert!(has(&v, "ARC_VALID") && has(&v, "ARC_OWN_DOMAIN"), "{}", show(&v));
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    assert!(!has(&v, "SPF_FAIL") && !has(&v, "DMARC_POLICY_REJECT"), "{}", show(&v));
    assert!(!v.action.is_spam(), "{}", show(&v));
    let d = detail(&v, "ARC_OWN_DOMAIN");
    assert!(d.contains("acme.test") && d.contains("o365.test") && d.contains("sigservice.test"), "{d}");
    // Our signature's headers still verify under the footer.
    assert!(has(&v, "DKIM_BODY_MODIFIED"), "{}", show(&v));

    // No trusted sealers: nothing vouches, it is judged as a spoof.
    let v = judge(&config(&p.dns, "", ""), &p.returned, &p.env).await;
    assert!(has(&v, "ARC_VALID") && !has(&v, "ARC_OWN_DOMAIN") && !has(&v, "ARC_FORWARDED"), "{}", show(&v));
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && has(&v, "DMARC_POLICY_REJECT") && v.action.is_spam(), "{}", show(&v));

    // Only the newest sealer trusted: it may vouch for forwarded mail's SPF/DMARC, but an untrusted hop
    // before it could have rewritten our message, so our own domain is not vouched for.
    let newest = config(&p.dns, r#"trusted_arc_sealers = ["sigservice.test"]"#, "");
    let v = judge(&newest, &p.returned, &p.env).await;
    assert!(has(&v, "ARC_FORWARDED") && !has(&v, "ARC_OWN_DOMAIN"), "{}", show(&v));
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));

    // The platform connecting directly with our signed message and no chain is judged as before.
    let v = judge(&trusted, &p.original, &p.env).await;
    assert!(has(&v, "DKIM_VALID") && !has(&v, "SPOOF_OWN_DOMAIN"), "aligned DKIM: {}", show(&v));
}

#[tokio::test]
async fn a_chain_sealed_by_an_untrusted_domain_claiming_our_dmarc_pass_changes_nothing() {
    let p = platforms().await;
    // The forger signs his message with a key of his own for acme.test, published only in his own DNS,
    // and seals it: his sealer's verification (against his DNS) records dkim=pass and dmarc=pass for
    // acme.test. His sealing key is published where we look (evil.test is his domain), so the chain
    // validates here; only who sealed it differs.
    let fake_acme = TestKey::new("acme.test", "s1");
    let evil = TestKey::new("evil.test", "arc");
    let mut own = zone();
    fake_acme.publish(&mut own);
    let forger_dns = TestDns::start(own);
    p.dns.update(|z| {
        evil.publish(z);
    });
    let forged = fake_acme.sign(&message("Dana <dana@acme.test>", "Bank details", "Please pay to the new account."));
    let spoofer: IpAddr = "192.0.2.10".parse().unwrap();
    let forger_auth = authenticator(forger_dns.addr());
    let sealed =
        evil.arc_seal_modified(&forged, &forged, &forger_auth, spoofer, "mail.acme.test", "dana@acme.test").await;
    let aar = &sealed[sealed.find("ARC-Authentication-Results").expect("sealed")
        ..sealed.find("\r\nDKIM-Signature").expect("signed")];
    assert!(aar.contains("dmarc=pass") && aar.contains("acme.test"), "the forged first hop claims a pass: {aar}");
    let env = envelope("198.18.0.9", "host9.spoofer.test", "dana@acme.test");

    for org in ["", r#"trusted_arc_sealers = ["o365.test", "sigservice.test"]"#] {
        let v = judge(&config(&p.dns, org, ""), &sealed, &env).await;
        assert!(has(&v, "ARC_VALID"), "the forger's chain validates: {}", show(&v));
        assert!(!has(&v, "ARC_OWN_DOMAIN") && !has(&v, "ARC_FORWARDED"), "{org}: {}", show(&v));
        assert!(has(&v, "SPOOF_OWN_DOMAIN") && has(&v, "DMARC_POLICY_REJECT"), "{org}: {}", show(&v));
        assert!(v.action.is_spam(), "{org}: {}", show(&v));
    }
}

#[tokio::test]
async fn an_untrusted_hop_inside_a_chain_of_trusted_sealers_does_not_vouch_for_our_domain() {
    // A genuine message of ours, sealed by Office 365, reaches a forger; he replaces the body (ARC checks
    // only the newest message signature), seals it himself claiming the chain passed, and sends it on
    // through the signature service, which validates his seal and seals again.
    let p = platforms().await;
    let evil = TestKey::new("evil.test", "arc");
    p.dns.update(|z| {
        evil.publish(z);
    });
    let auth = authenticator(p.dns.addr());
    let cut = p.first.rfind("\r\n\r\n").expect("a body") + 4;
    let rewritten = format!("{}Please pay to our new account: XX00 1234.\r\n", &p.first[..cut]);
    let spoofer: IpAddr = "198.18.0.9".parse().unwrap();
    let by_forger =
        evil.arc_seal_modified(&p.first, &rewritten, &auth, spoofer, "host9.spoofer.test", "dana@acme.test").await;
    let onward = format!("{by_forger}{FOOTER}");
    let returned =
        p.sig.arc_seal_modified(&by_forger, &onward, &auth, spoofer, "host9.spoofer.test", "dana@acme.test").await;
    let trusted = config(&p.dns, r#"trusted_arc_sealers = ["o365.test", "sigservice.test"]"#, "");
    let v = judge(&trusted, &returned, &p.env).await;
    assert!(has(&v, "ARC_VALID"), "the chain validates: {}", show(&v));
    assert!(!has(&v, "ARC_OWN_DOMAIN"), "{}", show(&v));
    assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action.is_spam(), "{}", show(&v));
    // The genuine chain, for comparison, is vouched for.
    let v = judge(&trusted, &p.returned, &p.env).await;
    assert!(has(&v, "ARC_OWN_DOMAIN"), "{}", show(&v));
}

#[tokio::test]
async fn behind_our_trusted_relay_the_origin_it_recorded_is_the_sending_server() {
    // Our own MTA (10.1.0.5, in trusted_relay_networks) receives mail and hands it to the gateway; the
    // server that connected to it is what its Received line records.
    let dns = TestDns::start(zone());
    let c = config(
        &dns,
        r#"trusted_relay_networks = ["10.1.0.0/16"]"#,
        r#", "203.0.113.50"]
trusted_relays = ['\.sigservice\.test$'"#,
    );
    let raw = message("Boss <boss@acme.test>", "Plan", "Here is the plan for next week.");
    let line = |helo: &str, name: &str, ip: &str| {
        format!("Received: from {helo} ({name} [{ip}]) by mx1.acme.test with ESMTP id 4711; Mon, 6 Jan 2025 10:00:00 +0000\r\n{raw}")
    };
    let relay = envelope("10.1.0.5", "mx1.acme.test", "boss@acme.test");
    // The relay recorded the signature service's verified name: a trusted relay of acme.test.
    let v = judge(&c, &line("out.sigservice.test", "out.sigservice.test", "198.51.100.7"), &relay).await;
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    // The relay recorded one of acme.test's sending servers.
    let v = judge(&c, &line("web01.hoster.test", "web01.hoster.test", "203.0.113.50"), &relay).await;
    assert!(!has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    // Forged: the relay recorded a spoofer who said HELO out.sigservice.test: the HELO is his claim.
    let v = judge(&c, &line("out.sigservice.test", "host9.spoofer.test", "198.18.0.9"), &relay).await;
    assert!(has(&v, "SPOOF_OWN_DOMAIN"), "{}", show(&v));
    // Forged: the same lines, written by the spoofer himself and sent to us directly.
    let spoof = envelope("198.18.0.9", "host9.spoofer.test", "boss@acme.test");
    for forged in [
        line("out.sigservice.test", "out.sigservice.test", "198.51.100.7"),
        line("web01.hoster.test", "web01.hoster.test", "203.0.113.50"),
    ] {
        let v = judge(&c, &forged, &spoof).await;
        assert!(has(&v, "SPOOF_OWN_DOMAIN") && v.action.is_spam(), "{}", show(&v));
    }
}
