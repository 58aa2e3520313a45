//! Composites (`[[composites]]` and the built-in ones): configuration errors that name what is wrong, the
//! policies on the matched symbols' weights, and the built-in composites on real messages from
//! `../shared/testdata` with their DNS served by a loopback DNS server:
//! - a real IETF mailing-list message (arc/mail-auth/001.txt: the list re-signed it with ietf.org after
//!   tagging the subject and adding a footer, which broke the author's stalw.art signature, so DMARC of
//!   stalw.art fails);
//! - a real GitHub message (dkim/mail-auth/006.txt) forwarded by a server outside github.com's SPF record,
//!   its DKIM signature intact (DMARC passes, SPF fails);
//! - a real newsletter (messages/rspamd_newsletter.eml) given an RFC 8058 one-click unsubscribe and signed
//!   for its From: domain with a test key, from a domain with good history (KNOWN_BULK_SENDER);
//! and the forgeries each must still catch.

use std::path::PathBuf;

use mailsift_engine::config::DnsConfig;
use mailsift_engine::evidence::SpfResult;
use mailsift_engine::{Action, Engine, EngineConfig, Envelope, Evidence, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_testkit::dns::{TestDns, Zone};
use proptest::prelude::*;

fn engine(toml: &str) -> Result<Engine, String> {
    let config = EngineConfig::from_toml(toml)?;
    Engine::new(config).map_err(|e| e.to_string())
}

fn sym<'v>(v: &'v Verdict, name: &str) -> Option<&'v mailsift_engine::verdict::SymbolResult> {
    v.symbols.iter().find(|s| s.name == name)
}

fn show(v: &Verdict) -> String {
    let syms: Vec<String> = v.symbols.iter().map(|s| format!("{}({:.2}; {})", s.name, s.score, s.detail)).collect();
    format!("{:?} score {:.2}: {}", v.action, v.score, syms.join(", "))
}

const PLAIN: &str = "From: Dana <dana@example.test>\r\nTo: someone@customer.test\r\nSubject: Minutes\r\n\
                     Date: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n\r\n\
                     The minutes of Monday's meeting.\r\n";

fn spf_fail() -> Evidence {
    Evidence { spf: Some(SpfResult::Fail), ..Evidence::default() }
}

// ----- configuration errors -----

#[test]
fn configuration_errors_name_the_composite_and_the_problem() {
    let cases: &[(&str, &[&str])] = &[
        ("name = \"C1\"\nexpression = \"SPF_FAIL & NO_SUCH_SYMBOL\"", &["C1", "no such symbol NO_SUCH_SYMBOL"]),
        ("name = \"C1\"\nexpression = \"group:nonsense | SPF_FAIL\"", &["C1", "no such group \"nonsense\""]),
        ("name = \"C1\"\nexpression = \"SPF_FAIL &\"", &["C1", "ends where a symbol is expected"]),
        ("name = \"C1\"\nexpression = \"(SPF_FAIL\"", &["C1", "not closed"]),
        ("name = \"C1\"\nexpression = \"SPF_FAIL SPF_PASS\"", &["C1", "expected `&`, `|` or `)` at byte 9"]),
        ("name = \"C1\"", &["C1", "no expression"]),
        ("name = \"c1\"\nexpression = \"SPF_FAIL\"", &["\"c1\"", "UPPER_SNAKE"]),
        ("name = \"SPF_PASS\"\nexpression = \"SPF_FAIL\"", &["SPF_PASS", "exists already"]),
        ("name = \"C1\"\nexpression = \"SPF_FAIL\"\npolicy = \"scale_weight\"", &["C1", "needs a factor"]),
        ("name = \"C1\"\nexpression = \"SPF_FAIL\"\nfactor = 1.5", &["C1", "between 0 and 1"]),
        ("name = \"C1\"\nexpression = \"*SPF_FAIL\"", &["C1", "`*SPF_FAIL` scales by `factor`"]),
        ("name = \"C1\"\nexpression = \"SPF_FAIL & FORWARDED_AUTHOR_SIGNED\"", &["C1", "names the composite"]),
        ("name = \"FORWARDED_AUTHOR_SIGNED\"\nscore = 1.0", &["FORWARDED_AUTHOR_SIGNED", "whole definition"]),
        ("name = \"C1\"\nexpression = \"SPF_FAIL\"\ngroup = \"nonsense\"", &["C1", "group"]),
    ];
    for (entry, wants) in cases {
        let err = engine(&format!("[[composites]]\n{entry}\n")).err().unwrap_or_else(|| panic!("accepted: {entry}"));
        assert!(err.contains("[[composites]]"), "{entry}: {err}");
        for w in *wants {
            assert!(err.contains(w), "{entry}: {err:?} does not say {w:?}");
        }
    }
    let err = engine("[[composites]]\nname = \"C1\"\nexpression = \"SPF_FAIL\"\n[[composites]]\nname = \"C1\"\nexpression = \"SPF_PASS\"\n")
        .err()
        .unwrap();
    assert!(err.contains("C1: defined twice"), "{err}");
    // Unknown keys are refused as everywhere in the configuration (a typo does not silently do nothing).
    let err = EngineConfig::from_toml("[[composites]]\nname = \"C1\"\nexpresion = \"SPF_FAIL\"\n").unwrap_err();
    assert!(err.contains("expresion"), "{err}");
    // A deep or long expression is refused, not recursed into.
    let deep = format!("{}SPF_FAIL{}", "(".repeat(40), ")".repeat(40));
    let err = engine(&format!("[[composites]]\nname = \"C1\"\nexpression = \"{deep}\"\n")).err().unwrap();
    assert!(err.contains("nested deeper"), "{err}");
    // The weights table may set a composite's score, like any symbol's.
    let e = engine("[weights]\nFORWARDED_AUTHOR_SIGNED = -0.5\n").unwrap();
    assert_eq!(e.registry().by_name("FORWARDED_AUTHOR_SIGNED").unwrap().weight, -0.5);
}

#[test]
fn the_built_ins_are_on_and_switchable_by_name() {
    let e = engine("").unwrap();
    let names: Vec<&str> = e.composites().iter().filter(|c| c.enabled).map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["KNOWN_BULK_SENDER", "FORWARDED_AUTHOR_SIGNED", "MAILING_LIST_BROKEN_SIGNATURE", "MAILING_LIST_DMARC"]
    );
    for n in &names {
        let d = e.registry().by_name(n).unwrap();
        assert!(!d.description.is_empty() && !d.remedy.is_empty(), "{n}");
    }
    let e = engine("[[composites]]\nname = \"MAILING_LIST_DMARC\"\nenabled = false\n").unwrap();
    let off: Vec<&str> = e.composites().iter().filter(|c| !c.enabled).map(|c| c.name.as_str()).collect();
    assert_eq!(off, ["MAILING_LIST_DMARC"]);
    // Replaced: the administrator's expression under the built-in's name.
    let e = engine("[[composites]]\nname = \"FORWARDED_AUTHOR_SIGNED\"\nexpression = \"SPF_FAIL & -DMARC_PASS\"\n")
        .unwrap();
    let c = e.composites().iter().find(|c| c.name == "FORWARDED_AUTHOR_SIGNED").unwrap();
    assert_eq!(c.expression, "SPF_FAIL & -DMARC_PASS");
}

// ----- the policies -----

#[test]
fn the_three_policies_and_scaling_on_the_matched_symbols() {
    let base = engine("").unwrap().scan(PLAIN.as_bytes(), &Envelope::default(), &spf_fail());
    let spf = sym(&base, "SPF_FAIL").unwrap_or_else(|| panic!("{}", show(&base))).score;
    assert_eq!(spf, 2.0);

    let with = |policy: &str| {
        let e = engine(&format!("[[composites]]\nname = \"C1\"\nexpression = \"SPF_FAIL\"\nscore = 0.3\n{policy}\n"))
            .unwrap();
        e.scan(PLAIN.as_bytes(), &Envelope::default(), &spf_fail())
    };
    // remove_weight (the default): still shown, 0 points; the composite names what it neutralised.
    let v = with("");
    assert_eq!(sym(&v, "SPF_FAIL").map(|s| s.score), Some(0.0), "{}", show(&v));
    let c = sym(&v, "C1").unwrap();
    assert_eq!(c.score, 0.3);
    assert_eq!(c.detail, "SPF_FAIL 2.00 -> 0", "{}", show(&v));
    assert!((v.score - (base.score - spf + 0.3)).abs() < 1e-9, "{} vs {}", show(&v), show(&base));
    // remove_symbol: gone from the verdict, named in the composite's detail.
    let v = with("policy = \"remove_symbol\"");
    assert!(sym(&v, "SPF_FAIL").is_none(), "{}", show(&v));
    assert_eq!(sym(&v, "C1").unwrap().detail, "SPF_FAIL (2.00) removed");
    assert!((v.score - (base.score - spf + 0.3)).abs() < 1e-9);
    // leave: the symbol keeps its weight, the composite adds its own.
    let v = with("policy = \"leave\"");
    assert_eq!(sym(&v, "SPF_FAIL").unwrap().score, 2.0);
    assert_eq!(sym(&v, "C1").unwrap().detail, "changed nothing; with SPF_FAIL");
    assert!((v.score - (base.score + 0.3)).abs() < 1e-9);
    // scale_weight: a share of the weight.
    let v = with("policy = \"scale_weight\"\nfactor = 0.25");
    assert_eq!(sym(&v, "SPF_FAIL").unwrap().score, 0.5);
    assert_eq!(sym(&v, "C1").unwrap().detail, "SPF_FAIL 2.00 -> 0.50");

    // An expression that does not hold changes nothing and adds nothing.
    let e = engine("[[composites]]\nname = \"C1\"\nexpression = \"SPF_FAIL & !SPF_FAIL\"\n").unwrap();
    let v = e.scan(PLAIN.as_bytes(), &Envelope::default(), &spf_fail());
    assert!(sym(&v, "C1").is_none() && sym(&v, "SPF_FAIL").unwrap().score == 2.0, "{}", show(&v));
    // Negated atoms are conditions, never matched: `!SPF_PASS` holds and SPF_FAIL alone is changed.
    let e = engine("[[composites]]\nname = \"C1\"\nexpression = \"SPF_FAIL & !SPF_PASS\"\n").unwrap();
    let v = e.scan(PLAIN.as_bytes(), &Envelope::default(), &spf_fail());
    assert_eq!(sym(&v, "C1").unwrap().detail, "SPF_FAIL 2.00 -> 0");
    // Per-atom prefixes override the composite's policy; a group atom matches its present symbols.
    let e =
        engine("[[composites]]\nname = \"C1\"\nexpression = \"^SPF_FAIL & -group:auth\"\npolicy = \"remove_weight\"\n")
            .unwrap();
    let v = e.scan(PLAIN.as_bytes(), &Envelope::default(), &spf_fail());
    assert!(sym(&v, "SPF_FAIL").is_none(), "{}", show(&v));
    assert_eq!(sym(&v, "C1").unwrap().detail, "SPF_FAIL (2.00) removed");
    assert_eq!(sym(&v, "C1").unwrap().group, mailsift_engine::Group::Auth);
    // Two composites on one symbol: the strongest change wins, and each says what it asked for.
    let e = engine(
        "[[composites]]\nname = \"C1\"\nexpression = \"SPF_FAIL\"\npolicy = \"scale_weight\"\nfactor = 0.5\n\
         [[composites]]\nname = \"C2\"\nexpression = \"SPF_FAIL\"\npolicy = \"remove_weight\"\n",
    )
    .unwrap();
    let v = e.scan(PLAIN.as_bytes(), &Envelope::default(), &spf_fail());
    assert_eq!(sym(&v, "SPF_FAIL").unwrap().score, 0.0, "{}", show(&v));
    assert!(sym(&v, "C1").is_some() && sym(&v, "C2").is_some());
    // A composite's score moves the action like any symbol's (the thresholds come after composites).
    let e =
        engine("[[composites]]\nname = \"C1\"\nexpression = \"SPF_FAIL\"\nscore = 20.0\npolicy = \"leave\"\n").unwrap();
    let v = e.scan(PLAIN.as_bytes(), &Envelope::default(), &spf_fail());
    assert_eq!(v.action, Action::Reject, "{}", show(&v));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
    /// Any text as an expression: an error or a composite, never a panic, and within the bounds.
    #[test]
    fn any_expression_parses_or_is_refused(expr in "[A-Z_!&|()~^*: -]{0,80}|\\PC{0,200}") {
        let _ = mailsift_engine::composites::parse(&expr);
    }
}

// ----- the built-ins on real messages -----

/// A testdata file: DNS records (`name record` a line), a blank line, the message (LF, made CRLF).
fn load(rel: &str) -> (Zone, String) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata").join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let (records, message) = text.split_once("\n\n").expect("records, blank line, message");
    let mut zone = Zone::new();
    for line in records.lines() {
        if let Some((name, record)) = line.split_once(' ') {
            zone.txt(name, record);
        }
    }
    (zone, message.replace("\r\n", "\n").replace('\n', "\r\n"))
}

fn dns_config(dns: &TestDns, extra: &str) -> EngineConfig {
    let mut c = EngineConfig::from_toml(extra).unwrap_or_else(|e| panic!("{e}\n{extra}"));
    c.dns = DnsConfig {
        enabled: true,
        nameservers: vec![dns.addr().to_string()],
        timeout_ms: 400,
        deadline_ms: 2000,
        ..DnsConfig::default()
    };
    c
}

async fn judge(config: &EngineConfig, raw: &str, env: &Envelope) -> Verdict {
    let facts = SenderGatherer::from_config(config).unwrap().gather(raw.as_bytes(), env).await;
    Engine::new(config.clone()).unwrap().scan(raw.as_bytes(), env, &Evidence::from_sender(facts))
}

/// The IETF list's server delivering the jmap list message to us.
fn list_envelope() -> Envelope {
    Envelope {
        client_ip: Some("50.223.129.194".parse().unwrap()),
        helo: Some("mail.ietf.org".into()),
        mail_from: Some("jmap-bounces@ietf.org".into()),
        rcpt_to: vec!["mauro@customer.test".into()],
        ..Envelope::default()
    }
}

fn list_zone() -> Zone {
    let (mut z, _) = load("arc/mail-auth/001.txt");
    // The author's domain with a strict DMARC policy (the real one monitors only), the list's SPF.
    z.txt("_dmarc.stalw.art", "v=DMARC1; p=reject")
        .txt("ietf.org", "v=spf1 ip4:50.223.129.194 -all")
        .ptr("50.223.129.194", "mail.ietf.org")
        .a("mail.ietf.org", "50.223.129.194");
    z
}

#[tokio::test]
async fn mailing_list_message_re_signed_by_the_list() {
    let (_, raw) = load("arc/mail-auth/001.txt");
    let dns = TestDns::start(list_zone());
    let on = dns_config(&dns, "");
    let v = judge(&on, &raw, &list_envelope()).await;
    for s in ["DKIM_VALID", "DKIM_INVALID", "MAILING_LIST_SIGNED", "DMARC_POLICY_REJECT"] {
        assert!(sym(&v, s).is_some(), "{s} missing: {}", show(&v));
    }
    // The list tagged the signed Subject ("[Jmap]"), so the author's signature is invalid, not only its body.
    assert!(sym(&v, "DKIM_INVALID").unwrap().detail.contains("stalw.art"), "{}", show(&v));
    assert!(sym(&v, "MAILING_LIST_SIGNED").unwrap().detail.contains("jmap.ietf.org, signed by ietf.org"));
    // The author's broken signature no longer counts; the DMARC failure counts half; both say so.
    assert_eq!(sym(&v, "DKIM_INVALID").unwrap().score, 0.0, "{}", show(&v));
    assert_eq!(sym(&v, "DMARC_POLICY_REJECT").unwrap().score, 2.5, "{}", show(&v));
    let broken = sym(&v, "MAILING_LIST_BROKEN_SIGNATURE").unwrap_or_else(|| panic!("{}", show(&v)));
    assert!(broken.detail.starts_with("DKIM_INVALID 1.50 -> 0"), "{}", broken.detail);
    assert!(broken.detail.contains("with MAILING_LIST_SIGNED"), "{}", broken.detail);
    let dmarc = sym(&v, "MAILING_LIST_DMARC").unwrap();
    assert!(dmarc.detail.contains("DMARC_POLICY_REJECT 5.00 -> 2.50"), "{}", dmarc.detail);

    // The same message with the built-ins switched off: the full points, 1.5 + 2.5 more.
    let off = dns_config(
        &dns,
        "[[composites]]\nname = \"MAILING_LIST_BROKEN_SIGNATURE\"\nenabled = false\n\
         [[composites]]\nname = \"MAILING_LIST_DMARC\"\nenabled = false\n",
    );
    let w = judge(&off, &raw, &list_envelope()).await;
    assert_eq!(sym(&w, "DMARC_POLICY_REJECT").unwrap().score, 5.0, "{}", show(&w));
    assert!(sym(&w, "MAILING_LIST_DMARC").is_none() && sym(&w, "MAILING_LIST_BROKEN_SIGNATURE").is_none());
    assert!((w.score - v.score - 4.0).abs() < 1e-9, "on {} / off {}", show(&v), show(&w));
    assert!(v.score < w.score);
}

/// A "list" run by a spoofer of one of our own protected domains: the same list message, but the author's
/// domain is ours and the list's server is not one of our sending servers. The list composites must not soften
/// anything: SPOOF_OWN_DOMAIN stands and so do the broken signature and the DMARC failure, in full.
#[tokio::test]
async fn a_list_never_softens_a_spoof_of_our_own_domain() {
    let (_, raw) = load("arc/mail-auth/001.txt");
    let dns = TestDns::start(list_zone());
    let ours = dns_config(
        &dns,
        "[organisation]\ndomains = [\"stalw.art\"]\n\
         [[organisation.protected]]\ndomain = \"stalw.art\"\nsending_servers = [\"192.0.2.0/24\"]\n",
    );
    let v = judge(&ours, &raw, &list_envelope()).await;
    assert!(sym(&v, "MAILING_LIST_SIGNED").is_some(), "the list's own signature still verifies: {}", show(&v));
    assert!(sym(&v, "SPOOF_OWN_DOMAIN").is_some_and(|s| s.score > 0.0), "{}", show(&v));
    assert!(sym(&v, "MAILING_LIST_BROKEN_SIGNATURE").is_none(), "{}", show(&v));
    assert!(sym(&v, "MAILING_LIST_DMARC").is_none(), "{}", show(&v));
    assert_eq!(sym(&v, "DKIM_INVALID").unwrap().score, 1.5, "{}", show(&v));
    assert_eq!(sym(&v, "DMARC_POLICY_REJECT").unwrap().score, 5.0, "{}", show(&v));
}

#[tokio::test]
async fn a_list_id_without_the_lists_own_signature_changes_nothing() {
    let (_, raw) = load("arc/mail-auth/001.txt");
    let dns = TestDns::start(list_zone());
    let c = dns_config(&dns, "");
    // A forger names a list of his own: the List-Id is signed by ietf.org, so the list's signature breaks
    // and no list vouches for the message.
    let forged = raw.replace("List-Id: JSON Message Access Protocol <jmap.ietf.org>", "List-Id: <news.spammer.test>");
    assert_ne!(forged, raw);
    let v = judge(&c, &forged, &list_envelope()).await;
    assert!(sym(&v, "MAILING_LIST_SIGNED").is_none(), "{}", show(&v));
    assert!(sym(&v, "MAILING_LIST_DMARC").is_none() && sym(&v, "MAILING_LIST_BROKEN_SIGNATURE").is_none());
    assert_eq!(sym(&v, "DMARC_POLICY_REJECT").map(|s| s.score), Some(5.0), "{}", show(&v));
    // A message with no List-Id at all, signed by ietf.org (DKIM_VALID) with a broken author signature:
    // not a list, nothing excused.
    let unlisted: String = raw.split_inclusive("\r\n").filter(|l| !l.starts_with("List-Id:")).collect();
    let v = judge(&c, &unlisted, &list_envelope()).await;
    assert!(sym(&v, "MAILING_LIST_SIGNED").is_none(), "{}", show(&v));
    assert_eq!(sym(&v, "DKIM_INVALID").map(|s| s.score), Some(1.5), "{}", show(&v));
    assert_eq!(sym(&v, "DMARC_POLICY_REJECT").map(|s| s.score), Some(5.0), "{}", show(&v));
}

/// A forwarder outside github.com's SPF record sending on GitHub's real message, envelope unchanged.
fn forwarded_envelope() -> Envelope {
    Envelope {
        client_ip: Some("198.51.100.25".parse().unwrap()),
        helo: Some("fwd.forwarder.test".into()),
        mail_from: Some("bounces@github.com".into()),
        rcpt_to: vec!["mauro@customer.test".into()],
        ..Envelope::default()
    }
}

fn github_zone() -> Zone {
    let (mut z, _) = load("dkim/mail-auth/006.txt");
    z.txt("github.com", "v=spf1 ip4:192.30.252.0/22 -all")
        .txt("_dmarc.github.com", "v=DMARC1; p=reject")
        .ptr("198.51.100.25", "fwd.forwarder.test")
        .a("fwd.forwarder.test", "198.51.100.25");
    z
}

#[tokio::test]
async fn forwarded_message_with_the_authors_signature_intact() {
    let (_, raw) = load("dkim/mail-auth/006.txt");
    let dns = TestDns::start(github_zone());
    let c = dns_config(&dns, "");
    let v = judge(&c, &raw, &forwarded_envelope()).await;
    for s in ["SPF_FAIL", "DKIM_VALID", "DMARC_PASS", "FORWARDED_AUTHOR_SIGNED"] {
        assert!(sym(&v, s).is_some(), "{s} missing: {}", show(&v));
    }
    assert_eq!(sym(&v, "SPF_FAIL").unwrap().score, 0.0, "{}", show(&v));
    assert_eq!(sym(&v, "FORWARDED_AUTHOR_SIGNED").unwrap().detail, "SPF_FAIL 2.00 -> 0; with DMARC_PASS");
    assert_eq!(sym(&v, "DMARC_PASS").unwrap().score, -1.0, "the author's pass keeps its weight");

    // With ASF's SPF hard fail on (high-confidence spam): forwarded mail is not quarantined for it.
    let asf = dns_config(&dns, "[asf]\nspf_hard_fail = \"on\"\n");
    let v = judge(&asf, &raw, &forwarded_envelope()).await;
    if let Some(s) = sym(&v, "ASF_SPF_HARD_FAIL") {
        assert_eq!(s.score, 0.0, "{}", show(&v));
        assert!(!v.high_confidence && v.action < Action::Quarantine, "{}", show(&v));
        assert!(sym(&v, "FORWARDED_AUTHOR_SIGNED").unwrap().detail.contains("ASF_SPF_HARD_FAIL"));
    }

    // Switched off, the SPF failure counts again.
    let off = dns_config(&dns, "[[composites]]\nname = \"FORWARDED_AUTHOR_SIGNED\"\nenabled = false\n");
    let w = judge(&off, &raw, &forwarded_envelope()).await;
    assert_eq!(sym(&w, "SPF_FAIL").unwrap().score, 2.0, "{}", show(&w));
    assert!((w.score - v.score).abs() > 0.0);
}

#[tokio::test]
async fn a_forgery_from_the_same_forwarder_keeps_its_spf_failure() {
    let (_, raw) = load("dkim/mail-auth/006.txt");
    let dns = TestDns::start(github_zone());
    let c = dns_config(&dns, "");
    // The signed Subject changed: the signature no longer verifies, DMARC fails, nothing is forwarded.
    let forged = raw.replacen("Subject: Copilot", "Subject: Your account is suspended. Copilot", 1);
    assert_ne!(forged, raw);
    let v = judge(&c, &forged, &forwarded_envelope()).await;
    assert!(sym(&v, "DMARC_PASS").is_none() && sym(&v, "FORWARDED_AUTHOR_SIGNED").is_none(), "{}", show(&v));
    assert_eq!(sym(&v, "SPF_FAIL").map(|s| s.score), Some(2.0), "{}", show(&v));
    assert_eq!(sym(&v, "DMARC_POLICY_REJECT").map(|s| s.score), Some(5.0), "{}", show(&v));
}

// ----- legitimate bulk mail: KNOWN_BULK_SENDER -----

/// The real newsletter, with a one-click unsubscribe (RFC 8058), its From: line replaced when given and its
/// text changed by `edit`, signed by `key` over `signed` headers.
fn newsletter(
    key: &mailsift_testkit::auth::TestKey,
    signed: &[&str],
    from: Option<&str>,
    edit: impl Fn(String) -> String,
) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages/rspamd_newsletter.eml");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut text = text.replace("\r\n", "\n").replacen(
        "Precedence: bulk\n",
        "Precedence: bulk\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n",
        1,
    );
    if let Some(from) = from {
        text = text.replacen("From: \"Marketing Team\" <newsletter@example.com>", from, 1);
    }
    key.sign_headers(&edit(text).replace('\n', "\r\n"), signed)
}

const ONE_CLICK: &[&str] =
    &["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"];

fn bulk_zone(key: &mailsift_testkit::auth::TestKey) -> Zone {
    let mut z = Zone::new();
    key.publish(&mut z);
    z.txt("example.com", "v=spf1 ip4:198.51.100.20 -all").txt("_dmarc.example.com", "v=DMARC1; p=reject");
    z
}

fn bulk_envelope(ip: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: Some(ip.parse().unwrap()),
        helo: Some("mta.example.com".into()),
        mail_from: Some(mail_from.into()),
        rcpt_to: vec!["user@customer.test".into()],
        ..Envelope::default()
    }
}

/// Judges with sender evidence from DNS and, with `history`, good mail from the From: domain before.
async fn judge_bulk(config: &EngineConfig, raw: &str, env: &Envelope, history: Option<&str>) -> Verdict {
    use mailsift_engine::evidence::{ReputationEntry, ReputationFacts, ReputationKind};
    let facts = SenderGatherer::from_config(config).unwrap().gather(raw.as_bytes(), env).await;
    let mut evidence = Evidence::from_sender(facts);
    evidence.reputation = history.map(|domain| ReputationFacts {
        entries: vec![ReputationEntry { kind: ReputationKind::Domain, key: domain.into(), spam: 0.0, ham: 12.0 }],
    });
    Engine::new(config.clone()).unwrap().scan(raw.as_bytes(), env, &evidence)
}

#[tokio::test]
async fn a_known_newsletter_with_a_signed_one_click_unsubscribe_counts_toward_ham() {
    let key = mailsift_testkit::auth::TestKey::new("example.com", "news1");
    let dns = TestDns::start(bulk_zone(&key));
    let config = dns_config(&dns, "");
    let env = bulk_envelope("198.51.100.20", "bounces@example.com");
    let raw = newsletter(&key, ONE_CLICK, None, |t| t);
    let v = judge_bulk(&config, &raw, &env, Some("example.com")).await;
    let fact = sym(&v, "BULK_ONE_CLICK_SIGNED").unwrap_or_else(|| panic!("{}", show(&v)));
    assert!(fact.detail.contains("example.com signs List-Unsubscribe"), "{}", fact.detail);
    let bulk = sym(&v, "KNOWN_BULK_SENDER").unwrap_or_else(|| panic!("{}", show(&v)));
    assert_eq!(bulk.score, -3.0, "{}", show(&v));
    assert!(sym(&v, "DMARC_PASS").is_some() && sym(&v, "REPUTATION_DOMAIN_GOOD").is_some(), "{}", show(&v));
    let known = v.score;

    // No history with the domain: the facts stand, the composite does not (a first newsletter is judged as
    // any message).
    let v = judge_bulk(&config, &raw, &env, None).await;
    assert!(sym(&v, "BULK_ONE_CLICK_SIGNED").is_some() && sym(&v, "KNOWN_BULK_SENDER").is_none(), "{}", show(&v));
    assert!(
        (v.score - known - 3.0 - 1.0).abs() < 0.01,
        "3 from the composite, 1 from the history: {} vs {known}",
        v.score
    );

    // The unsubscribe headers not covered by the signature: anyone on the way could have added them.
    let unsigned_post =
        newsletter(&key, &["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"], None, |t| t);
    let v = judge_bulk(&config, &unsigned_post, &env, Some("example.com")).await;
    assert!(sym(&v, "BULK_ONE_CLICK_SIGNED").is_none() && sym(&v, "KNOWN_BULK_SENDER").is_none(), "{}", show(&v));

    // The real signature covers List-Unsubscribe only; a second, made-up signature of the same domain and
    // selector claims to cover both headers. It does not verify, so it vouches for nothing.
    let claimed = format!(
        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; s=news1;\r\n \
         h=From:List-Unsubscribe:List-Unsubscribe-Post; bh=AAAA; b=AAAA\r\n{unsigned_post}"
    );
    let v = judge_bulk(&config, &claimed, &env, Some("example.com")).await;
    assert!(sym(&v, "DKIM_VALID").is_some(), "the real signature still verifies: {}", show(&v));
    assert!(sym(&v, "BULK_ONE_CLICK_SIGNED").is_none() && sym(&v, "KNOWN_BULK_SENDER").is_none(), "{}", show(&v));

    // Another From: (a brand the signer does not hold), signed by example.com: DMARC of the brand is not
    // example.com's to pass, and the signature is not the From: domain's.
    let other_from = newsletter(&key, ONE_CLICK, Some("From: \"Bank\" <alerts@bank.example>"), |t| t);
    let v =
        judge_bulk(&config, &other_from, &bulk_envelope("198.51.100.20", "bounces@example.com"), Some("example.com"))
            .await;
    assert!(sym(&v, "BULK_ONE_CLICK_SIGNED").is_none() && sym(&v, "KNOWN_BULK_SENDER").is_none(), "{}", show(&v));

    // A forger's copy: the same message re-signed with a key the domain never published.
    let forger = mailsift_testkit::auth::TestKey::new("example.com", "news1");
    let forged = newsletter(&forger, ONE_CLICK, None, |t| t);
    let v =
        judge_bulk(&config, &forged, &bulk_envelope("203.0.113.9", "bounces@example.com"), Some("example.com")).await;
    assert!(sym(&v, "KNOWN_BULK_SENDER").is_none(), "{}", show(&v));
    assert!(v.score > known + 5.0, "the forgery is judged as one: {}", show(&v));

    // The envelope sender of another domain (whose history is what the domain reputation would be).
    let v =
        judge_bulk(&config, &raw, &bulk_envelope("198.51.100.20", "x@elsewhere.example"), Some("elsewhere.example"))
            .await;
    assert!(sym(&v, "BULK_ONE_CLICK_SIGNED").is_none() && sym(&v, "KNOWN_BULK_SENDER").is_none(), "{}", show(&v));

    // A phish sent through the real account: a link that shows one address and goes to another.
    let phish = newsletter(&key, ONE_CLICK, None, |t| {
        t.replacen("<body>", "<body><a href=\"http://login.attacker.example/\">https://www.example.com/account</a>", 1)
    });
    let v = judge_bulk(&config, &phish, &env, Some("example.com")).await;
    assert!(sym(&v, "PHISHING_LINK_MISMATCH").is_some(), "{}", show(&v));
    assert!(sym(&v, "KNOWN_BULK_SENDER").is_none(), "{}", show(&v));
}
